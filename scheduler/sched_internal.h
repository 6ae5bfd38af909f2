/*
 * Internals shared by the scheduler's files (oracle, planner, policies).
 * Not part of the contract: callers use netkv_sched.h.
 */
#ifndef NKV_SCHED_INTERNAL_H
#define NKV_SCHED_INTERNAL_H

#include "netkv_sched.h"
#include "netkv_policy.h"

#include <math.h>

#define NO_IDX UINT32_MAX

/*
 * Paths are kept as src[i] -> dst[j]. The decision loop reads, per
 * candidate, one 24-byte hot record (row i is contiguous) and the
 * destination's 32-byte record (shared by every source, stays in cache);
 * everything else is cold. Tier and links come from the endpoints: the
 * topology is a tree (netkv_topo.h), so a tier-t path is the source's
 * first t uplinks then the destination's last t downlinks (tier 0: NVLink
 * out, NVLink in). oracle_create checks this against nkv_topo_path for
 * every kept path.
 */
struct opath {          /* hot */
	double lat;         /* base latency, s */
	double inv;         /* published 1 / throughput, s/B; 0 = none */
	double fresh_until; /* published estimate usable while now <= this */
};

struct opath_cold {
	double sh_bw, sh_t;  /* shadow: samples received, not yet published */
	double pub_t;        /* time of the published estimate's newest sample */
	double probe_until;  /* planner: a probe is out until then */
	uint8_t dirty;
};

struct oend {           /* one endpoint (source or destination) */
	uint32_t inst, host, leaf, pod;
	uint32_t link[4];   /* src: nvl out, NIC up, leaf up, spine up; dst: nvl in, NIC down, leaf down, spine down */
};

struct nkv_oracle {
	const struct nkv_topo *topo;
	struct nkv_oracle_params p;
	uint32_t nsrc, ndst, ninst, nlinks;
	struct oend *src, *dst;
	uint32_t *src_map, *dst_map; /* topology instance -> oracle index or NO_IDX */
	struct opath *paths;         /* nsrc * ndst, hot */
	struct opath_cold *cold;     /* nsrc * ndst */
	double tier_inv[NKV_TIERS];  /* 1 / nominal tier figure */
	uint64_t *inflight;          /* per link */
	double *inv_cap;             /* per link */
	double *cong;                /* per link: inflight * inv_cap, kept by flow add / remove */
	double *dcong;               /* ndst * NKV_TIERS: a destination's side of a tier-t path's
	                              * congestion (max over its down links of levels 1..t; level 0
	                              * for t = 0), kept by flow add / remove */
	uint32_t *ldst_off, *ldst;   /* per link: the destinations with it as a down link (CSR) */
	double *cap;
	uint32_t *dirty;             /* paths with unpublished samples */
	size_t ndirty;
	double next_tick;
};

static inline struct opath *oracle_path(const struct nkv_oracle *o, uint32_t si, uint32_t di)
{
	return &o->paths[(size_t)si * o->ndst + di];
}

static inline int end_tier(const struct oend *a, const struct oend *b)
{
	return a->host == b->host ? 0 : a->leaf == b->leaf ? 1 : a->pod == b->pod ? 2 : 3;
}

static inline int oracle_tier_idx(const struct nkv_oracle *o, uint32_t si, uint32_t di)
{
	return end_tier(&o->src[si], &o->dst[di]);
}

/* Links of a tier-t path from a to b, in path order; returns the count. */
static inline int end_path(const struct oend *a, const struct oend *b, int t, uint32_t *links)
{
	int n = 0;

	if (a->inst == b->inst)
		return 0;
	if (t == 0) {
		links[0] = a->link[0];
		links[1] = b->link[0];
		return 2;
	}
	for (int k = 1; k <= t; k++)
		links[n++] = a->link[k];
	for (int k = t; k >= 1; k--)
		links[n++] = b->link[k];
	return n;
}

/* One endpoint's side of a tier-t path's congestion, per tier: its link of
 * level 0 for t = 0, the max over its links of levels 1..t otherwise. A
 * level no kept path uses stays NO_IDX (e.g. no decode on the same host). */
static inline void oracle_end_cong(const struct nkv_oracle *o, const struct oend *e, double c[NKV_TIERS])
{
	double m = 0;

	c[0] = e->link[0] != NO_IDX ? o->cong[e->link[0]] : 0;
	for (int k = 1; k < NKV_TIERS; k++) {
		if (e->link[k] != NO_IDX) {
			double x = o->cong[e->link[k]];

			m = x > m ? x : m;
		}
		c[k] = m;
	}
}

/* What every candidate of one source shares, taken once per decision (a
 * local copy, so the per-candidate loop keeps it in registers): the source
 * side's congestion per tier, the tier figures, the congestion weight. */
struct oracle_src {
	double srcc[NKV_TIERS], tinv[NKV_TIERS], wc;
	const double *dcong;
};

static inline void oracle_src_init(const struct nkv_oracle *o, uint32_t si, struct oracle_src *k)
{
	oracle_end_cong(o, &o->src[si], k->srcc);
	for (int t = 0; t < NKV_TIERS; t++)
		k->tinv[t] = o->tier_inv[t];
	k->wc = o->p.w_cong;
	k->dcong = o->dcong;
}

/* Seconds for bytes over the tier-t path q from k's source to destination
 * di (not to itself): the formula in netkv_sched.h. The one per-candidate
 * cost, shared by the scalar and the row forms. */
static inline double oracle_cost_at(const struct oracle_src *k, const struct opath *q, uint32_t di, int t,
				    uint64_t bytes, double now)
{
	double inv = q->inv > 0 && now <= q->fresh_until ? q->inv : k->tinv[t];
	double y = k->dcong[(size_t)di * NKV_TIERS + t], cong = y > k->srcc[t] ? y : k->srcc[t];

	return q->lat + (double)(int64_t)bytes * inv + k->wc * cong;
}

/* Seconds for bytes over path (si, di), given oracle_src_init(si). */
static inline double oracle_cost_pre(const struct nkv_oracle *o, const struct oracle_src *k, uint32_t si,
				     uint32_t di, uint64_t bytes, double now)
{
	const struct oend *a = &o->src[si], *b = &o->dst[di];

	if (a->inst == b->inst)
		return 0;
	return oracle_cost_at(k, oracle_path(o, si, di), di, end_tier(a, b), bytes, now);
}

static inline double oracle_cost_idx(const struct nkv_oracle *o, uint32_t si, uint32_t di, uint64_t bytes,
				     double now)
{
	struct oracle_src k;

	oracle_src_init(o, si, &k);
	return oracle_cost_pre(o, &k, si, di, bytes, now);
}

static inline double oracle_cost_nominal_idx(const struct nkv_oracle *o, uint32_t si, uint32_t di, uint64_t bytes)
{
	const struct oend *a = &o->src[si], *b = &o->dst[di];

	if (a->inst == b->inst)
		return 0;
	return oracle_path(o, si, di)->lat + (double)bytes * o->tier_inv[end_tier(a, b)];
}

struct nkv_sched {
	const struct nkv_topo *topo;
	struct nkv_perf perf;
	struct nkv_sched_params p;
	char policy_name[NKV_POLICY_NAME_MAX];
	const struct nkv_policy_ops *ops;
	void *pstate;
	uint32_t np, nd;
	struct nkv_prefill_state *pre;
	struct nkv_decode_state *dec;
	uint32_t *pre_inst, *dec_inst;
	struct nkv_oracle *oracle;    /* src = prefill list, dst = decode list: path (p, d) */
	struct nkv_prefix_index *dindex, *pindex;
	uint32_t *held_d, *held_p;    /* scratch for the decision */
	uint8_t *tier;                /* np * nd: tier of path (p, d), for the view */
	struct nkv_sched_view view;   /* what policies see (policy.h) */
	uint32_t prefill_rr;
};

/* Bytes d must receive, given the leading blocks it holds. */
static inline uint64_t sched_missing_bytes(const struct nkv_sched *s, const struct nkv_request *r, uint32_t held)
{
	return nkv_policy_missing_bytes(&s->p, r, held);
}

void nkv__oracle_publish(struct nkv_oracle *o, size_t idx);
void nkv__prefix_match_pair(const struct nkv_prefix_index *a, uint32_t *da, const struct nkv_prefix_index *b,
		       uint32_t *db, const uint64_t *ids, uint32_t n);

/* load(d) and wait(d): the formulas in netkv_sched.h, shared with policies (policy.h). */
static inline double sched_load(const struct nkv_sched *s, const struct nkv_decode_state *d)
{
	return nkv_policy_load(&s->p, &s->perf, d);
}

static inline double sched_wait(const struct nkv_sched *s, const struct nkv_decode_state *d, const struct nkv_request *r)
{
	return nkv_policy_wait(&s->p, &s->perf, d, r);
}

#endif
