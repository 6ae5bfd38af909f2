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

/* Every kept path costs ~68 bytes: 2^26 paths is ~4.3 GB (8192 x 8192, a
 * 16384-GPU split cluster). Beyond that calloc succeeds on overcommit and
 * filling the table gets the process killed. */
#define ORACLE_MAX_PATHS (1u << 26)

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

static int make_list(const struct nkv_topo *t, uint32_t ninst, const uint32_t *in, uint32_t n, const char *what,
		     struct oend **list, uint32_t **map)
{
	uint32_t cnt = in ? n : ninst;

	if (in && n == 0)
		return nkv_err(EINVAL, "oracle: empty %s list", what);
	*list = calloc(cnt, sizeof(**list));
	*map = malloc((size_t)ninst * sizeof(uint32_t));
	if (!*list || !*map)
		return nkv_err(ENOMEM, "oracle: out of memory");
	for (uint32_t i = 0; i < ninst; i++)
		(*map)[i] = NO_IDX;
	for (uint32_t i = 0; i < cnt; i++) {
		uint32_t v = in ? in[i] : i;
		struct nkv_instance_info ii;
		int ret;

		if (v >= ninst)
			return nkv_err(EINVAL, "oracle: %s instance %u beyond the topology's %u", what, v, ninst);
		if ((*map)[v] != NO_IDX)
			return nkv_err(EINVAL, "oracle: %s instance %u listed twice", what, v);
		if ((ret = nkv_topo_instance(t, v, &ii)) < 0)
			return ret;
		(*list)[i].inst = v;
		(*list)[i].host = ii.host;
		(*list)[i].leaf = ii.leaf;
		(*list)[i].pod = ii.pod;
		for (int k = 0; k < 4; k++)
			(*list)[i].link[k] = NO_IDX;
		(*map)[v] = i;
	}
	return (int)cnt;
}

/* Record an endpoint's link at a level, or check it matches what other paths said. */
static int set_link(struct oend *e, int level, uint32_t link, const char *side)
{
	if (e->link[level] == NO_IDX)
		e->link[level] = link;
	else if (e->link[level] != link)
		return nkv_err(EINVAL, "oracle: instance %u has two %s links at level %d (%u, %u): topology is not "
				       "tree-shaped", e->inst, side, level, e->link[level], link);
	return 0;
}

/* Learn each endpoint's up/down links from the topology's paths and check
 * that tier and path follow from the endpoints alone. */
static int learn_path(struct nkv_oracle *o, uint32_t i, uint32_t j)
{
	struct oend *a = &o->src[i], *b = &o->dst[j];
	uint32_t links[NKV_MAX_PATH], mine[NKV_MAX_PATH];
	int tier = nkv_topo_tier(o->topo, a->inst, b->inst);
	int n = nkv_topo_path(o->topo, a->inst, b->inst, links), ret;

	if (tier < 0 || n < 0)
		return tier < 0 ? tier : n;
	if (tier != end_tier(a, b) || n != (tier ? 2 * tier : 2))
		return nkv_err(EINVAL, "oracle: path %u -> %u (tier %d, %d links) does not follow the host/leaf/pod "
				       "tree", a->inst, b->inst, tier, n);
	if (tier == 0) {
		if ((ret = set_link(a, 0, links[0], "up")) || (ret = set_link(b, 0, links[1], "down")))
			return ret;
	} else {
		for (int k = 1; k <= tier; k++)
			if ((ret = set_link(a, k, links[k - 1], "up")) || (ret = set_link(b, k, links[n - k], "down")))
				return ret;
	}
	end_path(a, b, tier, mine);
	if (memcmp(mine, links, (size_t)n * sizeof(uint32_t)))
		return nkv_err(EINVAL, "oracle: path %u -> %u is not the tree path", a->inst, b->inst);
	return 0;
}

/* Per link, the destinations it is a down link of (what a flow on it
 * changes in dcong), once every path's links are known. */
static void dst_links(struct nkv_oracle *o)
{
	uint32_t *off = o->ldst_off;

	for (uint32_t j = 0; j < o->ndst; j++)
		for (int k = 0; k < NKV_TIERS; k++)
			if (o->dst[j].link[k] != NO_IDX)
				off[o->dst[j].link[k] + 1]++;
	for (uint32_t l = 0; l < o->nlinks; l++)
		off[l + 1] += off[l];
	for (uint32_t j = 0; j < o->ndst; j++)
		for (int k = 0; k < NKV_TIERS; k++)
			if (o->dst[j].link[k] != NO_IDX)
				o->ldst[off[o->dst[j].link[k]]++] = j;
	for (uint32_t l = o->nlinks; l > 0; l--) /* the fill moved each start to the next one's */
		off[l] = off[l - 1];
	off[0] = 0;
}

int nkv_oracle_create(const struct nkv_topo *t, const struct nkv_oracle_params *params, const uint32_t *src,
		      uint32_t nsrc, const uint32_t *dst, uint32_t ndst, struct nkv_oracle **out)
{
	struct nkv_oracle *o = calloc(1, sizeof(*o));
	size_t npaths;
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
	ret = make_list(t, o->ninst, src, nsrc, "source", &o->src, &o->src_map);
	if (ret < 0)
		goto fail;
	o->nsrc = (uint32_t)ret;
	ret = make_list(t, o->ninst, dst, ndst, "destination", &o->dst, &o->dst_map);
	if (ret < 0)
		goto fail;
	o->ndst = (uint32_t)ret;
	npaths = (size_t)o->nsrc * o->ndst;
	if (npaths > ORACLE_MAX_PATHS) {
		ret = nkv_err(EINVAL, "oracle: %u x %u paths, at most %u (%zu bytes each)", o->nsrc, o->ndst,
			      ORACLE_MAX_PATHS, sizeof(struct opath) + sizeof(struct opath_cold) + sizeof(uint32_t));
		goto fail;
	}
	o->paths = calloc(npaths, sizeof(*o->paths));
	o->cold = calloc(npaths, sizeof(*o->cold));
	o->dirty = malloc(npaths * sizeof(uint32_t));
	o->inflight = calloc(o->nlinks ? o->nlinks : 1, sizeof(uint64_t));
	o->inv_cap = calloc(o->nlinks ? o->nlinks : 1, sizeof(double));
	o->cap = calloc(o->nlinks ? o->nlinks : 1, sizeof(double));
	o->cong = calloc(o->nlinks ? o->nlinks : 1, sizeof(double));
	o->dcong = calloc((size_t)o->ndst * NKV_TIERS + 1, sizeof(double));
	o->ldst_off = calloc((size_t)o->nlinks + 1, sizeof(uint32_t));
	o->ldst = malloc(((size_t)o->ndst * NKV_TIERS + 1) * sizeof(uint32_t));
	if (!o->paths || !o->cold || !o->dirty || !o->inflight || !o->inv_cap || !o->cap || !o->cong || !o->dcong ||
	    !o->ldst_off || !o->ldst) {
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
	for (int k = 0; k < NKV_TIERS; k++) {
		double bw = nkv_topo_tier_bw(t, k);

		o->tier_inv[k] = bw > 0 ? 1.0 / bw : 0; /* 0: the topology has no such tier */
	}
	for (uint32_t i = 0; i < o->nsrc; i++) {
		for (uint32_t j = 0; j < o->ndst; j++) {
			struct opath *q = oracle_path(o, i, j);
			struct opath_cold *c = &o->cold[(size_t)i * o->ndst + j];
			int tier;

			c->pub_t = c->sh_t = c->probe_until = -INFINITY;
			q->fresh_until = -INFINITY;
			if (o->src[i].inst == o->dst[j].inst)
				continue; /* no transfer: cost 0 */
			if ((ret = learn_path(o, i, j)))
				goto fail;
			tier = end_tier(&o->src[i], &o->dst[j]);
			if (!(o->tier_inv[tier] > 0)) {
				ret = nkv_err(EINVAL, "oracle: no bandwidth figure for tier %s", nkv_tier_name(tier));
				goto fail;
			}
			q->lat = nkv_topo_path_latency(t, o->src[i].inst, o->dst[j].inst);
		}
	}
	dst_links(o);
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
	free(o->cold);
	free(o->dirty);
	free(o->inflight);
	free(o->inv_cap);
	free(o->cap);
	free(o->cong);
	free(o->dcong);
	free(o->ldst_off);
	free(o->ldst);
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
	if (q->inv > 0 && now <= q->fresh_until) {
		if (fresh)
			*fresh = true;
		return 1.0 / q->inv;
	}
	if (fresh)
		*fresh = false;
	return p == d ? INFINITY : 1.0 / o->tier_inv[oracle_tier_idx(o, si, di)];
}

static void mark_dirty(struct nkv_oracle *o, size_t idx)
{
	if (!o->cold[idx].dirty) {
		o->cold[idx].dirty = 1;
		o->dirty[o->ndirty++] = (uint32_t)idx;
	}
}

int nkv_oracle_sample(struct nkv_oracle *o, uint32_t p, uint32_t d, uint64_t bytes, double seconds, double t,
		      enum nkv_sample_kind kind)
{
	uint32_t si = 0, di = 0;
	struct opath_cold *c;
	size_t idx;
	double x, busy;
	int ret = lookup(o, p, d, &si, &di);

	if (ret)
		return ret;
	if (!(seconds > 0) || !isfinite(seconds) || !isfinite(t))
		return nkv_err(EINVAL, "oracle: sample %u -> %u: %g s at t=%g is not a valid duration", p, d, seconds,
			       t);
	idx = (size_t)si * o->ndst + di;
	c = &o->cold[idx];
	if (p == d || (bytes < o->p.min_sample_bytes && kind != NKV_SAMPLE_EXTERNAL))
		return 0; /* too small to say anything about throughput */
	/* Take the path's base latency out so the figure is throughput. */
	busy = seconds - o->paths[idx].lat;
	if (busy < seconds * 0.01)
		busy = seconds * 0.01;
	x = (double)bytes / busy;
	if (!(c->sh_bw > 0) || t - c->sh_t > o->p.staleness_s) {
		c->sh_bw = x;
	} else {
		double dt = t - c->sh_t > 0 ? t - c->sh_t : 0;
		double w = 1.0 - (1.0 - o->p.alpha) * exp(-dt / o->p.tau_s);

		c->sh_bw += w * (x - c->sh_bw);
	}
	if (t > c->sh_t)
		c->sh_t = t;
	mark_dirty(o, idx);
	return 1;
}

/* Make a path's shadow estimate the one cost() uses. */
void nkv__oracle_publish(struct nkv_oracle *o, size_t idx)
{
	struct opath_cold *c = &o->cold[idx];
	struct opath *q = &o->paths[idx];

	c->pub_t = c->sh_t;
	q->inv = c->sh_bw > 0 ? 1.0 / c->sh_bw : 0;
	q->fresh_until = c->sh_t + o->p.staleness_s;
}

int nkv_oracle_refresh(struct nkv_oracle *o, double now)
{
	size_t n = o->ndirty;

	for (size_t i = 0; i < n; i++) {
		nkv__oracle_publish(o, o->dirty[i]);
		o->cold[o->dirty[i]].dirty = 0;
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
	uint32_t si = 0, di = 0, links[NKV_MAX_PATH];
	int n, ret = lookup(o, p, d, &si, &di);

	if (ret)
		return ret;
	n = end_path(&o->src[si], &o->dst[di], oracle_tier_idx(o, si, di), links);
	if (sign < 0) {
		for (int k = 0; k < n; k++)
			if (o->inflight[links[k]] < bytes)
				return nkv_err(EINVAL, "oracle: removing %llu bytes from %u -> %u, only %llu in flight",
					       (unsigned long long)bytes, p, d,
					       (unsigned long long)o->inflight[links[k]]);
	}
	for (int k = 0; k < n; k++) {
		uint32_t l = links[k];

		if (sign > 0)
			o->inflight[l] += bytes;
		else
			o->inflight[l] -= bytes;
		o->cong[l] = (double)o->inflight[l] * o->inv_cap[l];
		for (uint32_t x = o->ldst_off[l]; x < o->ldst_off[l + 1]; x++)
			oracle_end_cong(o, &o->dst[o->ldst[x]], &o->dcong[(size_t)o->ldst[x] * NKV_TIERS]);
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
