/*
 * Probe planner: which paths to measure next, within a bandwidth budget.
 * Oldest data first (a path never measured is the oldest), cheapest tier
 * first among equals; each link carries at most budget * capacity *
 * window_s probe bytes per plan. Probes are sized to measure throughput:
 * long enough that the path's base latency is under 1/latency_factor of
 * the probe's time at the tier figure.
 */
#include "sched_internal.h"

#include "nkv_util.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void nkv_probe_defaults(const struct nkv_oracle *o, struct nkv_probe_params *p)
{
	memset(p, 0, sizeof(*p));
	p->window_s = o ? o->p.refresh_s : 1.0;
	p->budget = 0.01;
	p->min_age_s = p->window_s;
	p->latency_factor = 100;
	p->min_bytes = 4u << 20;
}

struct cand {
	double age;
	uint32_t idx;
	uint8_t tier;
};

static int by_age_then_tier(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;

	if (x->age != y->age)
		return x->age > y->age ? -1 : 1;
	if (x->tier != y->tier)
		return x->tier < y->tier ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static uint64_t probe_size(const struct nkv_probe_params *pp, double lat, double bw)
{
	double want = pp->latency_factor * lat * bw;
	uint64_t b = want > (double)pp->min_bytes ? (want < 0x1p62 ? (uint64_t)ceil(want) : (uint64_t)1 << 62)
						  : pp->min_bytes;

	/* min_bytes near UINT64_MAX must not wrap to a tiny probe. */
	return b > ((uint64_t)1 << 62) ? (uint64_t)1 << 62 : (b + 65535) & ~(uint64_t)65535;
}

int nkv_probe_plan(struct nkv_oracle *o, const struct nkv_probe_params *pp, double now, struct nkv_probe *out,
		   uint32_t max)
{
	size_t npaths = (size_t)o->nsrc * o->ndst, nc = 0;
	struct cand *c;
	double *used;
	uint32_t n = 0;

	if (!(pp->window_s > 0 && isfinite(pp->window_s)) || !(pp->budget > 0 && pp->budget <= 1) ||
	    !(pp->min_age_s >= 0) || !(pp->latency_factor >= 1 && isfinite(pp->latency_factor)) || !isfinite(now))
		return nkv_err(EINVAL, "probe plan: window %g s, budget %g, min age %g s, latency factor %g: "
				       "need finite window > 0, 0 < budget <= 1, age >= 0, finite factor >= 1",
			       pp->window_s, pp->budget, pp->min_age_s, pp->latency_factor);
	if (!max)
		return 0;
	c = malloc((npaths ? npaths : 1) * sizeof(*c));
	used = calloc(o->nlinks ? o->nlinks : 1, sizeof(*used));
	if (!c || !used) {
		free(c);
		free(used);
		return nkv_err(ENOMEM, "probe plan: out of memory for %zu paths", npaths);
	}
	for (size_t i = 0; i < npaths; i++) {
		const struct opath_cold *q = &o->cold[i];
		uint32_t si = (uint32_t)(i / o->ndst), di = (uint32_t)(i % o->ndst);
		double age;

		if (o->src[si].inst == o->dst[di].inst || q->probe_until > now)
			continue;
		age = isfinite(q->sh_t) ? now - q->sh_t : INFINITY;
		if (age < pp->min_age_s)
			continue;
		c[nc].age = age;
		c[nc].idx = (uint32_t)i;
		c[nc].tier = (uint8_t)oracle_tier_idx(o, si, di);
		nc++;
	}
	qsort(c, nc, sizeof(*c), by_age_then_tier);
	for (size_t i = 0; i < nc && n < max; i++) {
		uint32_t si = c[i].idx / o->ndst, di = c[i].idx % o->ndst, links[NKV_MAX_PATH];
		int nl = end_path(&o->src[si], &o->dst[di], c[i].tier, links);
		double lat = o->paths[c[i].idx].lat, inv = o->tier_inv[c[i].tier];
		uint64_t bytes = probe_size(pp, lat, 1.0 / inv);
		bool fits = true;

		for (int k = 0; k < nl; k++)
			if (used[links[k]] + (double)bytes > pp->budget * o->cap[links[k]] * pp->window_s)
				fits = false;
		if (!fits)
			continue;
		for (int k = 0; k < nl; k++)
			used[links[k]] += (double)bytes;
		out[n].src = o->src[si].inst;
		out[n].dst = o->dst[di].inst;
		out[n].bytes = bytes;
		out[n].tier = c[i].tier;
		/* Expected completion at the tier figure, at least one window: not planned again before. */
		o->cold[c[i].idx].probe_until = now + fmax(pp->window_s, lat + (double)bytes * inv);
		n++;
	}
	free(c);
	free(used);
	return (int)n;
}
