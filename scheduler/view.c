/*
 * The out-of-line part of the policies' read-only view (policy.h): the
 * oracle's transfer cost, whose path records only the scheduler sees. The
 * row forms keep the per-candidate loop inside this file, where the cost
 * is inline.
 */
#include "sched_internal.h"

double nkv_view_xfer(const struct nkv_sched_view *v, uint32_t p, uint32_t d, uint64_t bytes, double now)
{
	return oracle_cost_idx(v->oracle, p, d, bytes, now);
}

double nkv_view_xfer_nominal(const struct nkv_sched_view *v, uint32_t p, uint32_t d, uint64_t bytes)
{
	return oracle_cost_nominal_idx(v->oracle, p, d, bytes);
}

void nkv_view_xfer_row(const struct nkv_sched_view *v, uint32_t p, const struct nkv_request *r, double now,
		       double *out)
{
	const struct nkv_oracle *o = v->oracle;
	double srcc[NKV_TIERS];

	/* Every candidate shares the prefill's uplinks: their congestion once. */
	oracle_src_cong(o, p, srcc);
	for (uint32_t d = 0; d < v->ndecode; d++)
		out[d] = oracle_cost_pre(o, srcc, p, d, nkv_view_missing(v, r, d), now);
}

void nkv_view_xfer_nominal_row(const struct nkv_sched_view *v, uint32_t p, const struct nkv_request *r,
			       double *out)
{
	for (uint32_t d = 0; d < v->ndecode; d++)
		out[d] = oracle_cost_nominal_idx(v->oracle, p, d, nkv_view_missing(v, r, d));
}
