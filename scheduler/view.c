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
	const struct oend *dst = o->dst;
	const struct opath *row = oracle_path(o, p, 0);
	const uint8_t *tier = &v->tier[(size_t)p * v->ndecode];
	const uint32_t n = v->ndecode, src_inst = o->src[p].inst;
	const uint64_t full = (uint64_t)r->input_len * r->kv_bytes_per_token;
	double *restrict o_ = out;
	struct oracle_src k;

	/* oracle_cost_pre per candidate, with what the source shares, the
	 * tier row and the bytes of a candidate holding nothing taken out of
	 * the loop. */
	oracle_src_init(o, p, &k);
	for (uint32_t d = 0; d < n; d++) {
		int t = tier[d];
		uint64_t bytes = v->held[d] ? nkv_view_missing(v, r, d) : full;

		if (__builtin_expect(t == 0 && dst[d].inst == src_inst, 0))
			o_[d] = 0;
		else
			o_[d] = oracle_cost_at(&k, &row[d], d, t, bytes, now);
	}
}

void nkv_view_xfer_nominal_row(const struct nkv_sched_view *v, uint32_t p, const struct nkv_request *r,
			       double *out)
{
	for (uint32_t d = 0; d < v->ndecode; d++)
		out[d] = oracle_cost_nominal_idx(v->oracle, p, d, nkv_view_missing(v, r, d));
}
