/*
 * What a decode policy sees of the scheduler: a read-only view, with the
 * accessors a policy scores candidates by, and the way to register one.
 * A policy includes this header (and through it netkv_sched.h), never
 * sched_internal.h, so a new policy is one ops table and its pick():
 *
 *   static int pick_mine(const struct nkv_sched_view *v, void *state,
 *                        const struct nkv_request *r, uint32_t p, double now,
 *                        struct nkv_decision *out)
 *   {
 *           NKV_VIEW_ARGMIN(v, p, out, d, nkv_view_load(v, d) - nkv_view_hit(v, r, d));
 *           return 0;
 *   }
 *   static const struct nkv_policy_ops ops_mine = { "mine", "load - hit", NULL, NULL, pick_mine };
 *   nkv_policy_register(&ops_mine);   (or add it to the table in policy.c)
 *
 * The formulas (load, wait, missing bytes, the oracle's transfer cost) are
 * the ones netkv_sched.h states; the scheduler's own estimates use these
 * same functions, so a policy and the decision it fills agree bit for bit.
 * The per-candidate ones are inline: the decision loop is O(|D|) and runs
 * for every request. Indexes: p is a prefill index, d a decode index (the
 * scheduler's lists, not topology instances); they are not range-checked.
 */
#ifndef NETKV_POLICY_H
#define NETKV_POLICY_H

#include "netkv_sched.h"

#include <math.h>

#pragma GCC visibility push(default)

/*
 * Filled by the scheduler; every pointer is read-only to a policy. Read it
 * through the nkv_view_* accessors below (the fields are here so those can
 * be inline). A view is valid during the pick() or init() it is passed to.
 */
struct nkv_sched_view {
	uint32_t nprefill, ndecode;
	const struct nkv_prefill_state *prefill; /* [nprefill] */
	const struct nkv_decode_state *decode;   /* [ndecode] */
	const uint8_t *tier;                     /* [nprefill * ndecode]: tier of the path p -> d */
	const uint32_t *held;                    /* [ndecode], this decision: leading prefix blocks d holds */
	const struct nkv_sched_params *params;
	const struct nkv_perf *perf;
	const struct nkv_oracle *oracle;         /* paths p -> d; see nkv_view_xfer() */
};

/* The scheduler's view (its held[] is that of the last decision). */
const struct nkv_sched_view *nkv_sched_view(const struct nkv_sched *s);

#define NKV_POLICY_NAME_MAX 32 /* a policy's name, with its NUL */

/* Add a policy to the table nkv_policy_find() and nkv_policies() read, after
 * the built-in ones. ops must outlive every scheduler using it. Not
 * thread-safe: register before creating schedulers. -EINVAL without a name
 * (under NKV_POLICY_NAME_MAX) or pick(), -EEXIST for a taken name, -ENOSPC past 8 registrations. */
int nkv_policy_register(const struct nkv_policy_ops *ops);

/* ---- the formulas (netkv_sched.h), on plain state ---- */

/* load(d) = max(KV footprint / KV pool, sequences / max_batch). */
static inline double nkv_policy_load(const struct nkv_sched_params *p, const struct nkv_perf *pf,
				     const struct nkv_decode_state *d)
{
	double kv = 1.0, seq = (double)(d->running + d->queued) / pf->max_batch;
	double total = (double)d->kv_blocks_total * p->kv_block_tokens;

	if (total > 0)
		kv = ((double)d->kv_blocks_used * p->kv_block_tokens + (double)d->queued_tokens) / total;
	return kv > seq ? kv : seq;
}

/*
 * wait(d) and pack(d) (netkv_sched.h) as one per-request part and one
 * per-candidate part, so a policy scoring every candidate (netkv,
 * netkv-static) computes the request's constants once and the scheduler's
 * own estimates are the same numbers bit for bit:
 *   iter(d) = (a + b*in + c) + b * rt + c * run
 *   wait(d) = iter, or when r does not fit (tokens short A = queued + need
 *             - free > 0, or sequences over S = running + queued + 1 -
 *             max_batch > 0):
 *             iter * (1 + R * max(A * y, S * x) / (x * y)),
 *             x = max(rt, 1), y = max(run, 1) (one division)
 *   pack(d) = (a + b*in + c) + b * (rt + qt) + (c + ov * (b*in + c)) * B
 *             B = min(running + queued, max_batch)
 * (rt, qt running / queued tokens, run running sequences, in input_len,
 * R = mean_remaining_output, ov = nkv_policy_pack_ov).
 */
struct nkv_policy_req {
	double k0;        /* a + b*in + c */
	double kB;        /* c + ov * (b*in + c) */
	double b, c, R;
	uint64_t need;    /* input_len + output_len */
	uint64_t blk, maxb;
};

/* ov = min(output_len, R) / R (0 when R = 0): the share of the remaining
 * output of the sequences r joins that r overlaps. */
static inline double nkv_policy_pack_ov(const struct nkv_sched_params *p, const struct nkv_request *r)
{
	double R = p->mean_remaining_output;

	return R > 0 ? ((double)r->output_len < R ? (double)r->output_len : R) / R : 0;
}

static inline void nkv_policy_req_init(const struct nkv_sched_params *p, const struct nkv_perf *pf,
				       const struct nkv_request *r, struct nkv_policy_req *k)
{
	double b = pf->decode_b, c = pf->decode_c, in = (double)r->input_len;

	k->k0 = pf->decode_a + b * in + c;
	k->kB = c + nkv_policy_pack_ov(p, r) * (b * in + c);
	k->b = b;
	k->c = c;
	k->R = p->mean_remaining_output;
	k->need = (uint64_t)r->input_len + r->output_len;
	k->blk = p->kv_block_tokens;
	k->maxb = pf->max_batch;
}

/* wait(d): seconds until r's first decode step on d. */
static inline double nkv_policy_wait_k(const struct nkv_policy_req *k, const struct nkv_decode_state *e)
{
	uint64_t free_tok = e->kv_blocks_total > e->kv_blocks_used ? (e->kv_blocks_total - e->kv_blocks_used) * k->blk
								   : 0;
	uint64_t want = e->queued_tokens + k->need, seqs = (uint64_t)e->running + e->queued;
	double rt = (double)(int64_t)e->running_tokens, run = (double)e->running;
	double iter = k->k0 + k->b * rt + k->c * run;

	/* Integer test first: the common case (room for r) costs no division. */
	if (__builtin_expect(want > free_tok || seqs + 1 > k->maxb, 0)) {
		uint64_t short_tok = want > free_tok ? want - free_tok : 0;
		uint64_t over = seqs + 1 > k->maxb ? seqs + 1 - k->maxb : 0;
		double x = e->running_tokens ? rt : 1.0, y = e->running ? run : 1.0;
		double ay = (double)(int64_t)short_tok * y, sx = (double)(int64_t)over * x;

		return iter * (1 + k->R * ((ay > sx ? ay : sx) / (x * y)));
	}
	return iter;
}

/* pack(d): what placing r on d adds to the sum over requests of their mean TBT. */
static inline double nkv_policy_pack_k(const struct nkv_policy_req *k, const struct nkv_decode_state *e)
{
	uint64_t seqs = (uint64_t)e->running + e->queued, bb = seqs < k->maxb ? seqs : k->maxb;
	double rt = (double)(int64_t)e->running_tokens;

	return k->k0 + k->b * (rt + (double)(int64_t)e->queued_tokens) + k->kB * (double)(int64_t)bb;
}

static inline double nkv_policy_wait(const struct nkv_sched_params *p, const struct nkv_perf *pf,
				     const struct nkv_decode_state *d, const struct nkv_request *r)
{
	struct nkv_policy_req k;

	nkv_policy_req_init(p, pf, r, &k);
	return nkv_policy_wait_k(&k, d);
}

static inline double nkv_policy_pack(const struct nkv_sched_params *p, const struct nkv_perf *pf,
				     const struct nkv_decode_state *d, const struct nkv_request *r)
{
	struct nkv_policy_req k;

	nkv_policy_req_init(p, pf, r, &k);
	return nkv_policy_pack_k(&k, d);
}

/* missing(d): bytes a decode holding `held` leading blocks must receive. */
static inline uint64_t nkv_policy_missing_bytes(const struct nkv_sched_params *p, const struct nkv_request *r,
						uint32_t held)
{
	uint64_t held_tok = (uint64_t)held * p->prefix_block_tokens;

	if (held_tok > r->input_len)
		held_tok = r->input_len;
	return (r->input_len - held_tok) * r->kv_bytes_per_token;
}

/* ---- the view's accessors ---- */

static inline uint32_t nkv_view_ndecode(const struct nkv_sched_view *v) { return v->ndecode; }
static inline uint32_t nkv_view_nprefill(const struct nkv_sched_view *v) { return v->nprefill; }
static inline const struct nkv_sched_params *nkv_view_params(const struct nkv_sched_view *v) { return v->params; }
static inline const struct nkv_perf *nkv_view_perf(const struct nkv_sched_view *v) { return v->perf; }
static inline const struct nkv_oracle *nkv_view_oracle(const struct nkv_sched_view *v) { return v->oracle; }

static inline const struct nkv_decode_state *nkv_view_decode(const struct nkv_sched_view *v, uint32_t d)
{
	return &v->decode[d];
}

static inline const struct nkv_prefill_state *nkv_view_prefill(const struct nkv_sched_view *v, uint32_t p)
{
	return &v->prefill[p];
}

/* held(d): leading prefix blocks of this decision's request d holds. */
static inline uint32_t nkv_view_held(const struct nkv_sched_view *v, uint32_t d) { return v->held[d]; }

/* hit(d) = held(d) / n (0 for a request without blocks). */
static inline double nkv_view_hit(const struct nkv_sched_view *v, const struct nkv_request *r, uint32_t d)
{
	return r->nblocks ? (double)v->held[d] / r->nblocks : 0;
}

/* tier(p, d): 0 same host, 1 same leaf, 2 same pod, 3 across the core. */
static inline int nkv_view_tier(const struct nkv_sched_view *v, uint32_t p, uint32_t d)
{
	return v->tier[(size_t)p * v->ndecode + d];
}

static inline double nkv_view_load(const struct nkv_sched_view *v, uint32_t d)
{
	return nkv_policy_load(v->params, v->perf, &v->decode[d]);
}

static inline double nkv_view_wait(const struct nkv_sched_view *v, uint32_t d, const struct nkv_request *r)
{
	return nkv_policy_wait(v->params, v->perf, &v->decode[d], r);
}

/* pack(d): the TBT r's placement on d costs (nkv_policy_pack). */
static inline double nkv_view_pack(const struct nkv_sched_view *v, uint32_t d, const struct nkv_request *r)
{
	return nkv_policy_pack(v->params, v->perf, &v->decode[d], r);
}

/* missing(d) for this decision's held(d). */
static inline uint64_t nkv_view_missing(const struct nkv_sched_view *v, const struct nkv_request *r, uint32_t d)
{
	return nkv_policy_missing_bytes(v->params, r, v->held[d]);
}

/*
 * xfer(d): the oracle's transfer time p -> d for `bytes` (nkv_oracle_cost's
 * formula: measured throughput while fresh, else the tier figure, plus
 * live congestion), and xfer_nominal(d) with topology figures only (base
 * latency + bytes / tier figure, nkv_oracle_cost_nominal). The _row forms
 * fill out[d] for every decode d with bytes = missing(d) for r, in one
 * call: what a policy scoring every candidate by it wants (out has
 * ndecode entries, the policy's own, e.g. allocated in init()).
 */
double nkv_view_xfer(const struct nkv_sched_view *v, uint32_t p, uint32_t d, uint64_t bytes, double now);
double nkv_view_xfer_nominal(const struct nkv_sched_view *v, uint32_t p, uint32_t d, uint64_t bytes);
void nkv_view_xfer_row(const struct nkv_sched_view *v, uint32_t p, const struct nkv_request *r, double now,
		       double *out);
void nkv_view_xfer_nominal_row(const struct nkv_sched_view *v, uint32_t p, const struct nkv_request *r,
			       double *out);

/* ---- choosing ---- */

/* The tie-break of topology-aware policies: is candidate d (score sc)
 * better than best (score best_sc)? Lower score (beyond 1e-12 relative),
 * then lower tier from p, then lower load, then lower index. Policies that
 * do not claim to know the topology must not use it, even to break ties:
 * they use NKV_VIEW_ARGMIN_BLIND. */
static inline bool nkv_view_better(const struct nkv_sched_view *v, uint32_t p, double sc, uint32_t d,
				   double best_sc, uint32_t best)
{
	double m = fabs(sc) > fabs(best_sc) ? fabs(sc) : fabs(best_sc);
	double eps = 1e-12 * m;
	int td, tb;
	double ld, lb;

	if (sc < best_sc - eps)
		return true;
	if (sc > best_sc + eps)
		return false;
	td = nkv_view_tier(v, p, d);
	tb = nkv_view_tier(v, p, best);
	if (td != tb)
		return td < tb;
	ld = nkv_view_load(v, d);
	lb = nkv_view_load(v, best);
	if (ld != lb)
		return ld < lb;
	return d < best;
}

/* out->decode, out->score = argmin over decode index D of SCORE_EXPR (which
 * names the candidate D), with nkv_view_better's tie-break. A macro so the
 * score is inlined into the loop. */
#define NKV_VIEW_ARGMIN(V, P, OUT, D, SCORE_EXPR)                                                                      \
	do {                                                                                                           \
		uint32_t best_ = 0;                                                                                    \
		double bsc_ = 0;                                                                                       \
		for (uint32_t D = 0; D < (V)->ndecode; D++) {                                                          \
			double sc_ = (SCORE_EXPR);                                                                     \
			if (D == 0 || nkv_view_better((V), (P), sc_, D, bsc_, best_)) {                               \
				best_ = D;                                                                             \
				bsc_ = sc_;                                                                            \
			}                                                                                              \
		}                                                                                                      \
		(OUT)->decode = best_;                                                                                 \
		(OUT)->score = bsc_;                                                                                   \
	} while (0)

/* out->decode, out->score = argmin over d of sc[d] (ndecode entries), in
 * two passes: the minimum m (a plain reduction, no loop-carried branch),
 * then among the candidates within 1e-12 relative of m, nkv_view_better's
 * tie-break (lower tier from p, lower load, lower index). For a policy
 * that fills a score row first (netkv, netkv-static): the same choice as
 * NKV_VIEW_ARGMIN except where near-ties chain (a ~ b ~ c, a !~ c), where
 * this one ties against the true minimum. */
static inline void nkv_view_argmin_row(const struct nkv_sched_view *v, uint32_t p, const double *sc,
				       struct nkv_decision *out)
{
	uint32_t n = v->ndecode, best = 0, d = 0;
	double m0 = sc[0], m1 = sc[0], m2 = sc[0], m3 = sc[0], m, lim;

	/* Four independent minima: no chain of dependent compares. */
	for (; d + 4 <= n; d += 4) {
		m0 = sc[d] < m0 ? sc[d] : m0;
		m1 = sc[d + 1] < m1 ? sc[d + 1] : m1;
		m2 = sc[d + 2] < m2 ? sc[d + 2] : m2;
		m3 = sc[d + 3] < m3 ? sc[d + 3] : m3;
	}
	for (; d < n; d++)
		m0 = sc[d] < m0 ? sc[d] : m0;
	m0 = m1 < m0 ? m1 : m0;
	m2 = m3 < m2 ? m3 : m2;
	m = m2 < m0 ? m2 : m0;
	lim = m + 1e-12 * fabs(m);
	while (sc[best] > lim)
		best++;
	for (d = best + 1; d < n; d++) {
		if (sc[d] > lim)
			continue;
		int td = nkv_view_tier(v, p, d), tb = nkv_view_tier(v, p, best);

		if (td != tb) {
			if (td < tb)
				best = d;
			continue;
		}
		if (nkv_view_load(v, d) < nkv_view_load(v, best))
			best = d;
	}
	out->decode = best;
	out->score = sc[best];
}

/* A seeded xorshift64* step for a policy's own draws (state never 0). */
static inline uint64_t nkv_view_rand(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1Dull;
}

/* The argmin of a topology-oblivious policy: lower score (beyond 1e-12
 * relative), then lower load, then uniformly at random among those still
 * equal (reservoir sampling with the policy's seeded state *RNG), so no
 * tier and no index order decides for it. */
#define NKV_VIEW_ARGMIN_BLIND(V, RNG, OUT, D, SCORE_EXPR)                                                              \
	do {                                                                                                           \
		uint32_t best_ = 0, ties_ = 0;                                                                         \
		double bsc_ = 0, bld_ = 0;                                                                             \
		for (uint32_t D = 0; D < (V)->ndecode; D++) {                                                          \
			double sc_ = (SCORE_EXPR), m_ = fabs(sc_) > fabs(bsc_) ? fabs(sc_) : fabs(bsc_);               \
			double eps_ = 1e-12 * m_, ld_;                                                                 \
			if (D > 0 && sc_ > bsc_ + eps_)                                                                \
				continue;                                                                              \
			ld_ = nkv_view_load((V), D);                                                                   \
			if (D == 0 || sc_ < bsc_ - eps_ || ld_ < bld_) {                                               \
				best_ = D;                                                                             \
				bsc_ = sc_;                                                                            \
				bld_ = ld_;                                                                            \
				ties_ = 1;                                                                             \
			} else if (ld_ == bld_ && nkv_view_rand(RNG) % ++ties_ == 0) {                                 \
				best_ = D;                                                                             \
			}                                                                                              \
		}                                                                                                      \
		(OUT)->decode = best_;                                                                                 \
		(OUT)->score = bsc_;                                                                                   \
	} while (0)

#pragma GCC visibility pop

#endif
