/*
 * cla* for the demo is the tuned one: a grid search (nkv_cla_tune, the grid
 * of `netkv sim tune`) minimising the simulated mean TTFT of a trace drawn
 * like the demo's (another seed: out of sample) on the demo's topology as emulated, with the testbed's time models
 * (llama3-8b/H100 compute x --time-scale, as the agents and the scheduler
 * use them; the tiny model's KV bytes per token; each decode's pool as its
 * KV capacity). A few milliseconds per grid point.
 *
 * The simulator places instances by layout, not by name, so it cannot hold
 * the demo's 2 prefill + 4 decode placement exactly. HOST_ALT on the same
 * 16-GPU tree comes closest: prefill on h0, h2, h4, h6, decode on the odd
 * hosts, so each prefill host sees the demo's tier mix (one decode host
 * in its leaf, one in its pod, two across pods). It has twice the demo's
 * decodes, so arrivals are doubled to give each decode the demo's load.
 */
#include "demo_tune.h"

#include <errno.h>
#include <math.h>

#include "netkv_perf.h"
#include "nkv_models.h" /* NKV_GPU_DEFAULT */
#include "netkv_sched.h"
#include "netkv_sim.h"
#include "netkv_topo.h"
#include "nkv_util.h"

struct ctx {
	struct nkv_sim_config cfg;
	const struct nkv_trace *trace;
};

static int eval(void *arg, const struct nkv_sched_params *p, double *obj)
{
	struct ctx *x = arg;
	struct nkv_sim_config c = x->cfg;
	struct nkv_sim_result *r;
	int rc;

	c.sched = *p;
	if ((rc = nkv_sim_run(&c, x->trace, &r)))
		return rc;
	*obj = r->sum.finished ? r->sum.ttft_mean : INFINITY;
	nkv_sim_result_free(r);
	return 0;
}

int nkv__demo_tune_cla(const struct demo_tune *t, struct demo_tune_result *out)
{
	static const double grid[] = { 0.25, 0.5, 1, 2, 4 }; /* no w = 0: it drops a term */
	struct nkv_trace_opts to = { .skip_bad = true, .limit = t->limit };
	struct nkv_trace *trace = NULL;
	struct nkv_topo *topo = NULL;
	struct nkv_tune_result tr;
	struct ctx x;
	double t0 = nkv_now_s();
	int rc;

	if ((rc = nkv_topo_load(t->topo, &topo)) || (rc = nkv_trace_load(t->trace, &to, &trace)))
		goto out;
	nkv_sim_defaults(&x.cfg);
	x.cfg.topo = topo;
	if ((rc = nkv_perf_preset("llama3-8b", NKV_GPU_DEFAULT, &x.cfg.perf)))
		goto out;
	struct nkv_perf *pf = &x.cfg.perf;
	pf->prefill_a *= t->time_scale, pf->prefill_b *= t->time_scale, pf->prefill_c *= t->time_scale;
	pf->decode_a *= t->time_scale, pf->decode_b *= t->time_scale, pf->decode_c *= t->time_scale;
	pf->kv_bytes_per_token = t->kv_bytes_per_token;
	pf->weight_bytes = 0, pf->mem_util = 1;
	pf->hbm_bytes = (uint64_t)t->decode_blocks * NKV_PREFIX_BLOCK_TOKENS * t->kv_bytes_per_token;
	nkv_sched_defaults(&x.cfg.sched); /* the daemon's defaults (prefill choice included) */
	x.cfg.sched.kv_block_tokens = NKV_PREFIX_BLOCK_TOKENS;
	x.cfg.layout = NKV_LAYOUT_HOST_ALT;
	x.cfg.rate_scale = 2 * t->speed;
	x.cfg.prefill_cache_blocks = t->decode_blocks;
	x.cfg.decode_cache_blocks = t->decode_blocks;
	x.cfg.slo_ttft_s = 2 * t->time_scale;
	x.cfg.slo_tbt_s = 0.1 * t->time_scale;
	x.cfg.limit = t->limit;
	x.cfg.progress = false;
	x.trace = trace;
	if ((rc = nkv_cla_tune(&x.cfg.sched, grid, 5, grid, 5, eval, &x, &tr)))
		goto out;
	out->w_cache = tr.w_cache;
	out->w_load = tr.w_load;
	out->ttft_mean_s = tr.objective;
	out->evaluated = tr.evaluated;
	out->wall_s = nkv_now_s() - t0;
out:
	nkv_trace_free(trace);
	nkv_topo_free(topo);
	return rc;
}
