/*
 * Internals shared by the scheduler's files (oracle, planner, policies).
 * Not part of the contract: callers use netkv_sched.h.
 */
#ifndef NKV_SCHED_INTERNAL_H
#define NKV_SCHED_INTERNAL_H

#include "netkv_sched.h"

#include <math.h>

#define NO_IDX UINT32_MAX
#define PATH_LINKS 6 /* the longest path in the topology model (tier 3) */

/* One kept path src[i] -> dst[j]; everything cost() needs, in one cache line or two. */
struct opath {
	double lat;          /* base latency, s */
	double nominal_inv;  /* 1 / tier figure, s/B */
	double pub_bw;       /* published estimate, B/s (0 = none) */
	double pub_t;        /* time of its newest sample */
	double sh_bw, sh_t;  /* shadow: samples received, not yet published */
	double probe_until;  /* planner: a probe is out until then */
	uint8_t tier, nlinks, dirty, pad;
	uint32_t links[PATH_LINKS];
};

struct nkv_oracle {
	const struct nkv_topo *topo;
	struct nkv_oracle_params p;
	uint32_t nsrc, ndst, ninst, nlinks;
	uint32_t *src, *dst;         /* oracle index -> topology instance */
	uint32_t *src_map, *dst_map; /* topology instance -> oracle index or NO_IDX */
	struct opath *paths;         /* nsrc * ndst */
	uint64_t *inflight;          /* per link */
	double *inv_cap;             /* per link */
	double *cap;
	uint32_t *dirty;             /* paths with unpublished samples */
	size_t ndirty;
	double next_tick;
};

static inline struct opath *oracle_path(const struct nkv_oracle *o, uint32_t si, uint32_t di)
{
	return &o->paths[(size_t)si * o->ndst + di];
}

/* Seconds for bytes over path (si, di): the formula in netkv_sched.h. */
static inline double oracle_cost_idx(const struct nkv_oracle *o, uint32_t si, uint32_t di, uint64_t bytes,
				     double now)
{
	const struct opath *q = oracle_path(o, si, di);
	double inv = q->nominal_inv, cong = 0;

	if (!q->nlinks)
		return 0;
	if (q->pub_bw > 0 && now - q->pub_t <= o->p.staleness_s)
		inv = 1.0 / q->pub_bw;
	for (uint32_t k = 0; k < q->nlinks; k++) {
		uint64_t f = o->inflight[q->links[k]];

		if (f) {
			double c = (double)f * o->inv_cap[q->links[k]];

			if (c > cong)
				cong = c;
		}
	}
	return q->lat + (double)bytes * inv + o->p.w_cong * cong;
}

static inline double oracle_cost_nominal_idx(const struct nkv_oracle *o, uint32_t si, uint32_t di, uint64_t bytes)
{
	const struct opath *q = oracle_path(o, si, di);

	return q->nlinks ? q->lat + (double)bytes * q->nominal_inv : 0;
}

struct nkv_sched {
	const struct nkv_topo *topo;
	struct nkv_perf perf;
	struct nkv_sched_params p;
	char policy_name[32];
	const struct nkv_policy_ops *ops;
	void *pstate;
	uint32_t np, nd;
	struct nkv_prefill_state *pre;
	struct nkv_decode_state *dec;
	uint32_t *pre_inst, *dec_inst;
	struct nkv_oracle *oracle;    /* src = prefill list, dst = decode list: path (p, d) */
	struct nkv_prefix_index *dindex, *pindex;
	uint32_t *held_d, *held_p;    /* scratch for the decision */
	uint32_t prefill_rr;
};

/* Bytes d must receive, given the leading blocks it holds. */
static inline uint64_t sched_missing_bytes(const struct nkv_sched *s, const struct nkv_request *r, uint32_t held)
{
	uint64_t held_tok = (uint64_t)held * s->p.prefix_block_tokens;

	if (held_tok > r->input_len)
		held_tok = r->input_len;
	return (r->input_len - held_tok) * r->kv_bytes_per_token;
}

double sched_load(const struct nkv_sched *s, const struct nkv_decode_state *d);
double sched_wait(const struct nkv_sched *s, const struct nkv_decode_state *d, const struct nkv_request *r);

#endif
