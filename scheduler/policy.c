/*
 * Decode policies, one ops table each, and the table that registers them.
 * Formulas: netkv_sched.h. A policy reads the scheduler only through its
 * read-only view (policy.h). Every policy is O(|D|): one pass over the
 * decode instances (netkv and netkv-static: a transfer row, a score row
 * and a two-pass argmin). Ties: the topology-aware ones (netkv-topo, netkv-static,
 * netkv) prefer the lower tier from the chosen prefill, then the lower
 * load, then the lower index (nkv_view_better); the oblivious ones (load,
 * cache, cla, cla*) the lower load, then a seeded random draw
 * (NKV_VIEW_ARGMIN_BLIND), so no baseline is quietly topology-aware.
 */
#include "netkv_policy.h"

#include "nkv_util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- rr ---- */
struct cursor {
	uint64_t v;
};

static int cursor_init(const struct nkv_sched_view *v, void **state)
{
	struct cursor *c = calloc(1, sizeof(*c));

	if (!c)
		return nkv_err(ENOMEM, "policy: out of memory");
	c->v = nkv_view_params(v)->seed ? nkv_view_params(v)->seed : 1;
	*state = c;
	return 0;
}

static void cursor_fini(void *state)
{
	free(state);
}

/* rr: every decode once per round, in an order shuffled anew each round
 * (seeded). A fixed cyclic order would step in lock with the prefill
 * round-robin and pair prefill i with decode i + k for good (with split
 * hosts: the same host every time). */
struct rr_state {
	uint64_t rng;
	uint32_t pos, n;
	uint32_t order[];
};

static void rr_shuffle(struct rr_state *s)
{
	for (uint32_t i = s->n - 1; i > 0; i--) {
		uint32_t j = (uint32_t)(nkv_view_rand(&s->rng) % (i + 1)), x = s->order[i];

		s->order[i] = s->order[j];
		s->order[j] = x;
	}
	s->pos = 0;
}

static int rr_init(const struct nkv_sched_view *v, void **state)
{
	uint32_t n = nkv_view_ndecode(v);
	struct rr_state *s = calloc(1, sizeof(*s) + (size_t)n * sizeof(uint32_t));

	if (!s)
		return nkv_err(ENOMEM, "policy: out of memory");
	s->rng = nkv_view_params(v)->seed ? nkv_view_params(v)->seed : 1;
	s->n = n;
	for (uint32_t i = 0; i < n; i++)
		s->order[i] = i;
	rr_shuffle(s);
	*state = s;
	return 0;
}

static int pick_rr(const struct nkv_sched_view *v, void *state, const struct nkv_request *r, uint32_t p, double now,
		   struct nkv_decision *out)
{
	struct rr_state *s = state;

	if (s->pos == s->n)
		rr_shuffle(s);
	out->decode = s->order[s->pos++];
	out->score = 0;
	return 0;
}

/* ---- random ---- */
static int pick_random(const struct nkv_sched_view *v, void *state, const struct nkv_request *r, uint32_t p,
		       double now, struct nkv_decision *out)
{
	struct cursor *c = state;

	out->decode = (uint32_t)((nkv_view_rand(&c->v) >> 11) % nkv_view_ndecode(v));
	out->score = 0;
	return 0;
}

/* The oblivious baselines: their state is the tie-break's random draw. */
static int pick_load(const struct nkv_sched_view *v, void *state, const struct nkv_request *r, uint32_t p,
		     double now, struct nkv_decision *out)
{
	NKV_VIEW_ARGMIN_BLIND(v, &((struct cursor *)state)->v, out, d, nkv_view_load(v, d));
	return 0;
}

/* cache: max held; ties to the lower load, then at random. */
static int pick_cache(const struct nkv_sched_view *v, void *state, const struct nkv_request *r, uint32_t p,
		      double now, struct nkv_decision *out)
{
	NKV_VIEW_ARGMIN_BLIND(v, &((struct cursor *)state)->v, out, d, -(double)nkv_view_held(v, d));
	return 0;
}

/* cla with weights: cla is (1, 1), cla* and netkv-topo take params' (x 1.0 is exact). */
static inline double cla_score(const struct nkv_sched_view *v, const struct nkv_request *r, uint32_t d, double wc,
			       double wl)
{
	return wc * (1.0 - nkv_view_hit(v, r, d)) + wl * nkv_view_load(v, d);
}

static int pick_cla(const struct nkv_sched_view *v, void *state, const struct nkv_request *r, uint32_t p, double now,
		    struct nkv_decision *out)
{
	NKV_VIEW_ARGMIN_BLIND(v, &((struct cursor *)state)->v, out, d, cla_score(v, r, d, 1.0, 1.0));
	return 0;
}

static int pick_cla_star(const struct nkv_sched_view *v, void *state, const struct nkv_request *r, uint32_t p,
			 double now, struct nkv_decision *out)
{
	const struct nkv_sched_params *pp = nkv_view_params(v);

	NKV_VIEW_ARGMIN_BLIND(v, &((struct cursor *)state)->v, out, d, cla_score(v, r, d, pp->w_cache, pp->w_load));
	return 0;
}

static int pick_netkv_topo(const struct nkv_sched_view *v, void *state, const struct nkv_request *r, uint32_t p,
			   double now, struct nkv_decision *out)
{
	const struct nkv_sched_params *pp = nkv_view_params(v);
	const double wt = pp->w_tier / 3.0;

	NKV_VIEW_ARGMIN(v, p, out, d, cla_score(v, r, d, pp->w_cache, pp->w_load) + wt * nkv_view_tier(v, p, d));
	return 0;
}

/* netkv-static and netkv: the transfer times of every candidate in one row
 * (the oracle's side of the view), the scores in a second, then the
 * argmin (nkv_view_argmin_row). Score: w_wait * wait + w_xfer * xfer +
 * w_tbt * pack (netkv_sched.h). */
struct rows {
	double *xfer, *sc;
};

static int row_init(const struct nkv_sched_view *v, void **state)
{
	struct rows *w = calloc(1, sizeof(*w));

	if (!w || !(w->xfer = calloc(nkv_view_ndecode(v), sizeof(double))) ||
	    !(w->sc = calloc(nkv_view_ndecode(v), sizeof(double)))) {
		if (w)
			free(w->xfer);
		free(w);
		return nkv_err(ENOMEM, "policy: out of memory");
	}
	*state = w;
	return 0;
}

static void row_fini(void *state)
{
	struct rows *w = state;

	if (w) {
		free(w->xfer);
		free(w->sc);
	}
	free(w);
}

/* The score row, one pass: w_wait * wait + w_xfer * xfer + w_tbt * pack,
 * with the request's constants computed once (nkv_policy_req). */
static void score_row(const struct nkv_sched_view *v, const struct nkv_request *r, struct rows *w)
{
	const struct nkv_sched_params *pp = nkv_view_params(v);
	const double ww = pp->w_wait, wx = pp->w_xfer, wt = pp->w_tbt;
	const uint32_t n = nkv_view_ndecode(v);
	const struct nkv_decode_state *ds = v->decode;
	const double *restrict xfer = w->xfer;
	double *restrict sc = w->sc;
	struct nkv_policy_req k;

	nkv_policy_req_init(pp, nkv_view_perf(v), r, &k);
	for (uint32_t d = 0; d < n; d++)
		sc[d] = ww * nkv_policy_wait_k(&k, &ds[d]) + wx * xfer[d] + wt * nkv_policy_pack_k(&k, &ds[d]);
}

static int pick_netkv_static(const struct nkv_sched_view *v, void *state, const struct nkv_request *r, uint32_t p,
			     double now, struct nkv_decision *out)
{
	struct rows *w = state;

	nkv_view_xfer_nominal_row(v, p, r, w->xfer);
	score_row(v, r, w);
	nkv_view_argmin_row(v, p, w->sc, out);
	return 0;
}

static int pick_netkv(const struct nkv_sched_view *v, void *state, const struct nkv_request *r, uint32_t p,
		      double now, struct nkv_decision *out)
{
	struct rows *w = state;

	nkv_view_xfer_row(v, p, r, now, w->xfer);
	score_row(v, r, w);
	nkv_view_argmin_row(v, p, w->sc, out);
	return 0;
}

static const struct nkv_policy_ops ops_rr = { "rr", "round-robin (each decode once a round, shuffled rounds)",
					     rr_init, cursor_fini, pick_rr };
static const struct nkv_policy_ops ops_random = { "random", "uniform random (seeded)", cursor_init, cursor_fini,
						  pick_random };
static const struct nkv_policy_ops ops_load = { "load", "least loaded", cursor_init, cursor_fini, pick_load };
static const struct nkv_policy_ops ops_cache = { "cache", "most leading prefix blocks held", cursor_init,
						 cursor_fini, pick_cache };
static const struct nkv_policy_ops ops_cla = { "cla", "cache + load, equal weights", cursor_init, cursor_fini,
					       pick_cla };
static const struct nkv_policy_ops ops_cla_star = { "cla*", "cache + load, tuned weights (w_cache, w_load)",
						    cursor_init, cursor_fini, pick_cla_star };
static const struct nkv_policy_ops ops_netkv_topo = { "netkv-topo", "cla* + tier penalty (w_tier)", NULL, NULL,
						      pick_netkv_topo };
static const struct nkv_policy_ops ops_netkv_static = { "netkv-static",
							"est. TTFT with nominal tier bandwidths, no congestion",
							row_init, row_fini, pick_netkv_static };
static const struct nkv_policy_ops ops_netkv = { "netkv", "est. TTFT with measured throughput and congestion",
						 row_init, row_fini, pick_netkv };

#define NBUILTIN 9
#define NREGISTER 8

/* The built-in policies, then the registered ones, NULL-terminated. */
static const struct nkv_policy_ops *all[NBUILTIN + NREGISTER + 1] = {
	&ops_rr,  &ops_random,     &ops_load,         &ops_cache, &ops_cla,
	&ops_cla_star, &ops_netkv_topo, &ops_netkv_static, &ops_netkv,
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

int nkv_policy_register(const struct nkv_policy_ops *ops)
{
	size_t n = 0;

	if (!ops || !ops->name || !ops->name[0] || strlen(ops->name) >= NKV_POLICY_NAME_MAX || !ops->pick)
		return nkv_err(EINVAL, "policy: an ops table needs a name (under %d characters) and pick()",
			       NKV_POLICY_NAME_MAX);
	if (nkv_policy_find(ops->name))
		return nkv_err(EEXIST, "policy: '%s' is already registered", ops->name);
	while (all[n])
		n++;
	if (n == NBUILTIN + NREGISTER)
		return nkv_err(ENOSPC, "policy: cannot register '%s': at most %d added policies", ops->name,
			       NREGISTER);
	all[n] = ops;
	return 0;
}
