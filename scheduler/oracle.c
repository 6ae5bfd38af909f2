/*
 * The network cost oracle: per-path throughput estimates (EWMA with the
 * sample's age, published at refresh ticks, falling back to the tier
 * figure when stale) plus congestion from bytes in flight on each link.
 * Formula and parameters: netkv_sched.h.
 */
#include "sched_internal.h"

#include "nkv_util.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void nkv_oracle_defaults(struct nkv_oracle_params *p)
{
	memset(p, 0, sizeof(*p));
	p->refresh_s = 1.0;
	p->staleness_s = 0; /* = 5 * refresh_s at create */
	p->alpha = 0.3;
	p->tau_s = 0; /* = refresh_s at create */
	p->w_cong = 1.0;
	p->min_sample_bytes = 1u << 20;
}

static int check_params(struct nkv_oracle_params *p)
{
	if (!(p->refresh_s >= 0.1 && p->refresh_s <= 60))
		return nkv_err(EINVAL, "oracle: refresh interval %g s outside 0.1 .. 60 s", p->refresh_s);
	if (p->staleness_s == 0)
		p->staleness_s = 5 * p->refresh_s;
	if (p->tau_s == 0)
		p->tau_s = p->refresh_s;
	if (!(p->staleness_s > 0 && isfinite(p->staleness_s)))
		return nkv_err(EINVAL, "oracle: staleness bound %g s must be > 0", p->staleness_s);
	if (!(p->alpha > 0 && p->alpha <= 1))
		return nkv_err(EINVAL, "oracle: EWMA alpha %g outside (0, 1]", p->alpha);
	if (!(p->tau_s > 0 && isfinite(p->tau_s)))
		return nkv_err(EINVAL, "oracle: tau %g s must be > 0", p->tau_s);
	if (!(p->w_cong >= 0 && isfinite(p->w_cong)))
		return nkv_err(EINVAL, "oracle: congestion weight %g must be >= 0", p->w_cong);
	return 0;
}

static int make_list(uint32_t ninst, const uint32_t *in, uint32_t n, const char *what, uint32_t **list,
		     uint32_t **map)
{
	uint32_t cnt = in ? n : ninst;

	if (in && n == 0)
		return nkv_err(EINVAL, "oracle: empty %s list", what);
	*list = malloc((size_t)cnt * sizeof(uint32_t));
	*map = malloc((size_t)ninst * sizeof(uint32_t));
	if (!*list || !*map)
		return nkv_err(ENOMEM, "oracle: out of memory");
	for (uint32_t i = 0; i < ninst; i++)
		(*map)[i] = NO_IDX;
	for (uint32_t i = 0; i < cnt; i++) {
		uint32_t v = in ? in[i] : i;

		if (v >= ninst)
			return nkv_err(EINVAL, "oracle: %s instance %u beyond the topology's %u", what, v, ninst);
		if ((*map)[v] != NO_IDX)
			return nkv_err(EINVAL, "oracle: %s instance %u listed twice", what, v);
		(*list)[i] = v;
		(*map)[v] = i;
	}
	return (int)cnt;
}

int nkv_oracle_create(const struct nkv_topo *t, const struct nkv_oracle_params *params, const uint32_t *src,
		      uint32_t nsrc, const uint32_t *dst, uint32_t ndst, struct nkv_oracle **out)
{
	struct nkv_oracle *o = calloc(1, sizeof(*o));
	int ret;

	if (!o)
		return nkv_err(ENOMEM, "oracle: out of memory");
	if (params)
		o->p = *params;
	else
		nkv_oracle_defaults(&o->p);
	ret = check_params(&o->p);
	if (ret)
		goto fail;
	o->topo = t;
	o->ninst = nkv_topo_instances(t);
	o->nlinks = nkv_topo_links(t);
	ret = make_list(o->ninst, src, nsrc, "source", &o->src, &o->src_map);
	if (ret < 0)
		goto fail;
	o->nsrc = (uint32_t)ret;
	ret = make_list(o->ninst, dst, ndst, "destination", &o->dst, &o->dst_map);
	if (ret < 0)
		goto fail;
	o->ndst = (uint32_t)ret;
	o->paths = calloc((size_t)o->nsrc * o->ndst, sizeof(*o->paths));
	o->dirty = malloc((size_t)o->nsrc * o->ndst * sizeof(uint32_t));
	o->inflight = calloc(o->nlinks ? o->nlinks : 1, sizeof(uint64_t));
	o->inv_cap = calloc(o->nlinks ? o->nlinks : 1, sizeof(double));
	o->cap = calloc(o->nlinks ? o->nlinks : 1, sizeof(double));
	if (!o->paths || !o->dirty || !o->inflight || !o->inv_cap || !o->cap) {
		ret = nkv_err(ENOMEM, "oracle: out of memory for %u x %u paths", o->nsrc, o->ndst);
		goto fail;
	}
	for (uint32_t l = 0; l < o->nlinks; l++) {
		struct nkv_link_info li;

		ret = nkv_topo_link(t, l, &li);
		if (ret < 0)
			goto fail;
		if (!(li.bytes_per_s > 0)) {
			ret = nkv_err(EINVAL, "oracle: link %s has no capacity", li.name);
			goto fail;
		}
		o->cap[l] = li.bytes_per_s;
		o->inv_cap[l] = 1.0 / li.bytes_per_s;
	}
	for (uint32_t i = 0; i < o->nsrc; i++) {
		for (uint32_t j = 0; j < o->ndst; j++) {
			struct opath *q = oracle_path(o, i, j);
			uint32_t links[NKV_MAX_PATH];
			int tier, n;
			double bw;

			q->pub_t = q->sh_t = -INFINITY;
			q->probe_until = -INFINITY;
			if (o->src[i] == o->dst[j])
				continue; /* no transfer: cost 0 */
			tier = nkv_topo_tier(t, o->src[i], o->dst[j]);
			n = nkv_topo_path(t, o->src[i], o->dst[j], links);
			if (tier < 0 || n < 0) {
				ret = tier < 0 ? tier : n;
				goto fail;
			}
			if (n > PATH_LINKS) {
				ret = nkv_err(EINVAL, "oracle: path %u -> %u has %d links, more than %d", o->src[i],
					      o->dst[j], n, PATH_LINKS);
				goto fail;
			}
			bw = nkv_topo_tier_bw(t, tier);
			if (!(bw > 0))
				bw = nkv_topo_path_bw_loaded(t, o->src[i], o->dst[j]);
			if (!(bw > 0)) {
				ret = nkv_err(EINVAL, "oracle: no bandwidth figure for tier %s", nkv_tier_name(tier));
				goto fail;
			}
			q->tier = (uint8_t)tier;
			q->nlinks = (uint8_t)n;
			memcpy(q->links, links, (size_t)n * sizeof(uint32_t));
			q->lat = nkv_topo_path_latency(t, o->src[i], o->dst[j]);
			q->nominal_inv = 1.0 / bw;
		}
	}
	o->next_tick = -INFINITY;
	*out = o;
	return 0;
fail:
	nkv_oracle_free(o);
	return ret;
}

void nkv_oracle_free(struct nkv_oracle *o)
{
	if (!o)
		return;
	free(o->src);
	free(o->dst);
	free(o->src_map);
	free(o->dst_map);
	free(o->paths);
	free(o->dirty);
	free(o->inflight);
	free(o->inv_cap);
	free(o->cap);
	free(o);
}

const struct nkv_oracle_params *nkv_oracle_get_params(const struct nkv_oracle *o)
{
	return &o->p;
}

static int lookup(const struct nkv_oracle *o, uint32_t p, uint32_t d, uint32_t *si, uint32_t *di)
{
	if (p >= o->ninst || d >= o->ninst || o->src_map[p] == NO_IDX || o->dst_map[d] == NO_IDX)
		return nkv_err(ENOENT, "oracle: path %u -> %u is not kept (not a listed source/destination)", p, d);
	*si = o->src_map[p];
	*di = o->dst_map[d];
	return 0;
}

double nkv_oracle_cost(const struct nkv_oracle *o, uint32_t p, uint32_t d, uint64_t bytes, double now)
{
	uint32_t si = 0, di = 0;
	int ret = lookup(o, p, d, &si, &di);

	return ret ? ret : oracle_cost_idx(o, si, di, bytes, now);
}

double nkv_oracle_cost_nominal(const struct nkv_oracle *o, uint32_t p, uint32_t d, uint64_t bytes)
{
	uint32_t si = 0, di = 0;
	int ret = lookup(o, p, d, &si, &di);

	return ret ? ret : oracle_cost_nominal_idx(o, si, di, bytes);
}

double nkv_oracle_bw(const struct nkv_oracle *o, uint32_t p, uint32_t d, double now, bool *fresh)
{
	uint32_t si = 0, di = 0;
	const struct opath *q;
	int ret = lookup(o, p, d, &si, &di);

	if (ret)
		return ret;
	q = oracle_path(o, si, di);
	if (q->pub_bw > 0 && now - q->pub_t <= o->p.staleness_s) {
		if (fresh)
			*fresh = true;
		return q->pub_bw;
	}
	if (fresh)
		*fresh = false;
	return q->nlinks ? 1.0 / q->nominal_inv : INFINITY;
}

static void mark_dirty(struct nkv_oracle *o, uint32_t si, uint32_t di)
{
	struct opath *q = oracle_path(o, si, di);

	if (!q->dirty) {
		q->dirty = 1;
		o->dirty[o->ndirty++] = si * o->ndst + di;
	}
}

int nkv_oracle_sample(struct nkv_oracle *o, uint32_t p, uint32_t d, uint64_t bytes, double seconds, double t,
		      enum nkv_sample_kind kind)
{
	uint32_t si = 0, di = 0;
	struct opath *q;
	double x, busy;
	int ret = lookup(o, p, d, &si, &di);

	if (ret)
		return ret;
	if (!(seconds > 0) || !isfinite(seconds) || !isfinite(t))
		return nkv_err(EINVAL, "oracle: sample %u -> %u: %g s at t=%g is not a valid duration", p, d, seconds,
			       t);
	q = oracle_path(o, si, di);
	if (!q->nlinks || (bytes < o->p.min_sample_bytes && kind != NKV_SAMPLE_EXTERNAL))
		return 0; /* too small to say anything about throughput */
	/* Take the path's base latency out so the figure is throughput. */
	busy = seconds - q->lat;
	if (busy < seconds * 0.01)
		busy = seconds * 0.01;
	x = (double)bytes / busy;
	if (!(q->sh_bw > 0) || t - q->sh_t > o->p.staleness_s) {
		q->sh_bw = x;
	} else {
		double dt = t - q->sh_t > 0 ? t - q->sh_t : 0;
		double w = 1.0 - (1.0 - o->p.alpha) * exp(-dt / o->p.tau_s);

		q->sh_bw += w * (x - q->sh_bw);
	}
	if (t > q->sh_t)
		q->sh_t = t;
	mark_dirty(o, si, di);
	return 1;
}

int nkv_oracle_refresh(struct nkv_oracle *o, double now)
{
	size_t n = o->ndirty;

	for (size_t i = 0; i < n; i++) {
		struct opath *q = &o->paths[o->dirty[i]];

		q->pub_bw = q->sh_bw;
		q->pub_t = q->sh_t;
		q->dirty = 0;
	}
	o->ndirty = 0;
	o->next_tick = (floor(now / o->p.refresh_s) + 1) * o->p.refresh_s;
	return (int)n;
}

int nkv_oracle_tick(struct nkv_oracle *o, double now)
{
	if (now < o->next_tick)
		return 0;
	return nkv_oracle_refresh(o, now);
}

static int flow(struct nkv_oracle *o, uint32_t p, uint32_t d, uint64_t bytes, int sign)
{
	uint32_t si = 0, di = 0;
	struct opath *q;
	int ret = lookup(o, p, d, &si, &di);

	if (ret)
		return ret;
	q = oracle_path(o, si, di);
	if (sign < 0) {
		for (uint32_t k = 0; k < q->nlinks; k++)
			if (o->inflight[q->links[k]] < bytes)
				return nkv_err(EINVAL, "oracle: removing %llu bytes from %u -> %u, only %llu in flight",
					       (unsigned long long)bytes, p, d,
					       (unsigned long long)o->inflight[q->links[k]]);
	}
	for (uint32_t k = 0; k < q->nlinks; k++) {
		if (sign > 0)
			o->inflight[q->links[k]] += bytes;
		else
			o->inflight[q->links[k]] -= bytes;
	}
	return 0;
}

int nkv_oracle_flow_add(struct nkv_oracle *o, uint32_t p, uint32_t d, uint64_t bytes)
{
	return flow(o, p, d, bytes, 1);
}

int nkv_oracle_flow_remove(struct nkv_oracle *o, uint32_t p, uint32_t d, uint64_t bytes)
{
	return flow(o, p, d, bytes, -1);
}

uint64_t nkv_oracle_link_inflight(const struct nkv_oracle *o, uint32_t link)
{
	return link < o->nlinks ? o->inflight[link] : 0;
}

uint64_t nkv_oracle_inflight_total(const struct nkv_oracle *o)
{
	uint64_t s = 0;

	for (uint32_t l = 0; l < o->nlinks; l++)
		s += o->inflight[l];
	return s;
}
