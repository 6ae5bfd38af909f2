/*
 * Decode policies, one ops table each. Formulas: netkv_sched.h. Every
 * policy is one pass over the decode instances; ties go to the lower tier
 * from the chosen prefill, then the lower load, then the lower index.
 */
#include "sched_internal.h"

#include "nkv_util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Is candidate (score sc, index d) better than the current best? */
static inline bool better(const struct nkv_sched *s, uint32_t p, double sc, uint32_t d, double best_sc,
			  uint32_t best)
{
	double m = fabs(sc) > fabs(best_sc) ? fabs(sc) : fabs(best_sc);
	double eps = 1e-12 * m;
	int td, tb;
	double ld, lb;

	if (sc < best_sc - eps)
		return true;
	if (sc > best_sc + eps)
		return false;
	td = oracle_tier_idx(s->oracle, p, d);
	tb = oracle_tier_idx(s->oracle, p, best);
	if (td != tb)
		return td < tb;
	ld = sched_load(s, &s->dec[d]);
	lb = sched_load(s, &s->dec[best]);
	if (ld != lb)
		return ld < lb;
	return d < best;
}

/* Minimise score(d) over all d: the shared loop. */
#define ARGMIN(SCORE_EXPR)                                                                                             \
	do {                                                                                                           \
		uint32_t best_ = 0;                                                                                    \
		double bsc_ = 0;                                                                                       \
		for (uint32_t d = 0; d < s->nd; d++) {                                                                 \
			double sc_ = (SCORE_EXPR);                                                                     \
			if (d == 0 || better(s, p, sc_, d, bsc_, best_)) {                                            \
				best_ = d;                                                                             \
				bsc_ = sc_;                                                                            \
			}                                                                                              \
		}                                                                                                      \
		out->decode = best_;                                                                                   \
		out->score = bsc_;                                                                                     \
	} while (0)

static inline double hit(const struct nkv_request *r, uint32_t held)
{
	return r->nblocks ? (double)held / r->nblocks : 0;
}

/* ---- rr ---- */
struct cursor {
	uint64_t v;
};

static int cursor_init(struct nkv_sched *s, void **state)
{
	struct cursor *c = calloc(1, sizeof(*c));

	if (!c)
		return nkv_err(ENOMEM, "policy: out of memory");
	c->v = s->p.seed ? s->p.seed : 1;
	*state = c;
	return 0;
}

static void cursor_fini(void *state)
{
	free(state);
}

static int rr_init(struct nkv_sched *s, void **state)
{
	int ret = cursor_init(s, state);

	if (!ret)
		((struct cursor *)*state)->v = 0;
	return ret;
}

static int pick_rr(struct nkv_sched *s, void *state, const struct nkv_request *r, uint32_t p, const uint32_t *held,
		   double now, struct nkv_decision *out)
{
	struct cursor *c = state;

	out->decode = (uint32_t)(c->v++ % s->nd);
	out->score = 0;
	return 0;
}

/* ---- random: xorshift64* ---- */
static int pick_random(struct nkv_sched *s, void *state, const struct nkv_request *r, uint32_t p,
		       const uint32_t *held, double now, struct nkv_decision *out)
{
	struct cursor *c = state;
	uint64_t x = c->v;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	c->v = x;
	out->decode = (uint32_t)(((x * 0x2545F4914F6CDD1Dull) >> 11) % s->nd);
	out->score = 0;
	return 0;
}

static int pick_load(struct nkv_sched *s, void *state, const struct nkv_request *r, uint32_t p, const uint32_t *held,
		     double now, struct nkv_decision *out)
{
	ARGMIN(sched_load(s, &s->dec[d]));
	return 0;
}

/* cache: max held; the tie-break then prefers low tier and low load. */
static int pick_cache(struct nkv_sched *s, void *state, const struct nkv_request *r, uint32_t p,
		      const uint32_t *held, double now, struct nkv_decision *out)
{
	ARGMIN(-(double)held[d]);
	return 0;
}

/* cla with weights: cla is (1, 1), cla* and netkv-topo take params' (x 1.0 is exact). */
static inline double cla_score(const struct nkv_sched *s, const struct nkv_request *r, uint32_t held, uint32_t d,
			       double wc, double wl)
{
	return wc * (1.0 - hit(r, held)) + wl * sched_load(s, &s->dec[d]);
}

static int pick_cla(struct nkv_sched *s, void *state, const struct nkv_request *r, uint32_t p, const uint32_t *held,
		    double now, struct nkv_decision *out)
{
	ARGMIN(cla_score(s, r, held[d], d, 1.0, 1.0));
	return 0;
}

static int pick_cla_star(struct nkv_sched *s, void *state, const struct nkv_request *r, uint32_t p,
			 const uint32_t *held, double now, struct nkv_decision *out)
{
	ARGMIN(cla_score(s, r, held[d], d, s->p.w_cache, s->p.w_load));
	return 0;
}

static int pick_netkv_topo(struct nkv_sched *s, void *state, const struct nkv_request *r, uint32_t p,
			   const uint32_t *held, double now, struct nkv_decision *out)
{
	const double wt = s->p.w_tier / 3.0;

	ARGMIN(cla_score(s, r, held[d], d, s->p.w_cache, s->p.w_load) + wt * oracle_tier_idx(s->oracle, p, d));
	return 0;
}

static int pick_netkv_static(struct nkv_sched *s, void *state, const struct nkv_request *r, uint32_t p,
			     const uint32_t *held, double now, struct nkv_decision *out)
{
	const double ww = s->p.w_wait, wx = s->p.w_xfer;

	ARGMIN(ww * sched_wait(s, &s->dec[d], r) +
	       wx * oracle_cost_nominal_idx(s->oracle, p, d, sched_missing_bytes(s, r, held[d])));
	return 0;
}

static int pick_netkv(struct nkv_sched *s, void *state, const struct nkv_request *r, uint32_t p,
		      const uint32_t *held, double now, struct nkv_decision *out)
{
	const double ww = s->p.w_wait, wx = s->p.w_xfer;
	double srcc[NKV_TIERS];

	oracle_src_cong(s->oracle, p, srcc);
	ARGMIN(ww * sched_wait(s, &s->dec[d], r) +
	       wx * oracle_cost_pre(s->oracle, srcc, p, d, sched_missing_bytes(s, r, held[d]), now));
	return 0;
}

static const struct nkv_policy_ops ops_rr = { "rr", "round-robin", rr_init, cursor_fini, pick_rr };
static const struct nkv_policy_ops ops_random = { "random", "uniform random (seeded)", cursor_init, cursor_fini,
						  pick_random };
static const struct nkv_policy_ops ops_load = { "load", "least loaded", NULL, NULL, pick_load };
static const struct nkv_policy_ops ops_cache = { "cache", "most leading prefix blocks held", NULL, NULL,
						 pick_cache };
static const struct nkv_policy_ops ops_cla = { "cla", "cache + load, equal weights", NULL, NULL, pick_cla };
static const struct nkv_policy_ops ops_cla_star = { "cla*", "cache + load, tuned weights (w_cache, w_load)", NULL,
						    NULL, pick_cla_star };
static const struct nkv_policy_ops ops_netkv_topo = { "netkv-topo", "cla* + tier penalty (w_tier)", NULL, NULL,
						      pick_netkv_topo };
static const struct nkv_policy_ops ops_netkv_static = { "netkv-static",
							"est. TTFT with nominal tier bandwidths, no congestion", NULL,
							NULL, pick_netkv_static };
static const struct nkv_policy_ops ops_netkv = { "netkv", "est. TTFT with measured throughput and congestion", NULL,
						 NULL, pick_netkv };

static const struct nkv_policy_ops *const all[] = {
	&ops_rr,  &ops_random,     &ops_load,         &ops_cache, &ops_cla,
	&ops_cla_star, &ops_netkv_topo, &ops_netkv_static, &ops_netkv, NULL,
};

const struct nkv_policy_ops *const *nkv_policies(void)
{
	return all;
}

const struct nkv_policy_ops *nkv_policy_find(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; all[i]; i++)
		if (!strcmp(all[i]->name, name))
			return all[i];
	return NULL;
}
