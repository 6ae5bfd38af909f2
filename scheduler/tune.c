/* cla* weight tuning: a plain, ordered grid search around a caller's evaluator. */
#include "netkv_sched.h"

#include "nkv_util.h"

#include <errno.h>
#include <math.h>

/* No 0: a zero weight drops its term (w_load 0 is cache-only, a corner that
 * wins in sample and collapses out of it). */
static const double default_grid[] = { 0.25, 0.5, 1, 2, 4, 8 };

int nkv_cla_tune(const struct nkv_sched_params *base, const double *gc, uint32_t nc, const double *gl, uint32_t nl,
		 nkv_tune_eval_fn eval, void *ctx, struct nkv_tune_result *out)
{
	struct nkv_sched_params p;
	bool found = false;

	if (!eval || !out)
		return nkv_err(EINVAL, "cla* tuning needs an evaluator and a result");
	if (!gc) {
		gc = default_grid;
		nc = sizeof(default_grid) / sizeof(default_grid[0]);
	}
	if (!gl) {
		gl = default_grid;
		nl = sizeof(default_grid) / sizeof(default_grid[0]);
	}
	for (uint32_t i = 0; i < nc; i++)
		if (!(gc[i] >= 0 && isfinite(gc[i])))
			return nkv_err(EINVAL, "cla* tuning: w_cache grid value %g must be >= 0", gc[i]);
	for (uint32_t j = 0; j < nl; j++)
		if (!(gl[j] >= 0 && isfinite(gl[j])))
			return nkv_err(EINVAL, "cla* tuning: w_load grid value %g must be >= 0", gl[j]);
	if (base)
		p = *base;
	else
		nkv_sched_defaults(&p);
	p.policy = "cla*";
	out->evaluated = 0;
	for (uint32_t i = 0; i < nc; i++) {
		for (uint32_t j = 0; j < nl; j++) {
			double obj;
			int ret;

			if (gc[i] == 0 && gl[j] == 0)
				continue;
			p.w_cache = gc[i];
			p.w_load = gl[j];
			ret = eval(ctx, &p, &obj);
			if (ret < 0)
				return nkv_err_wrap(-ret, "cla* tuning at w_cache %g, w_load %g", gc[i], gl[j]);
			out->evaluated++;
			if (!isfinite(obj))
				continue;
			if (!found || obj < out->objective) {
				found = true;
				out->w_cache = gc[i];
				out->w_load = gl[j];
				out->objective = obj;
			}
		}
	}
	if (!found)
		return nkv_err(EINVAL, "cla* tuning: no grid point gave a finite objective");
	return 0;
}
