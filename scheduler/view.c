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
	const struct oend *a = &o->src[p], *dst = o->dst;
	const struct opath *row = oracle_path(o, p, 0);
	const uint8_t *tier = &v->tier[(size_t)p * v->ndecode];
	const uint64_t *infl = o->inflight;
	const double *icap = o->inv_cap, wc = o->p.w_cong;
	const uint32_t n = v->ndecode, src_inst = a->inst;
	const uint64_t full = (uint64_t)r->input_len * r->kv_bytes_per_token;
	double srcc[NKV_TIERS], tinv[NKV_TIERS];
	double *restrict o_ = out;

	/* oracle_cost_pre's formula, the same operations in the same order,
	 * with the per-decision parts (source congestion, tier figures, the
	 * tier row, a candidate holding nothing) out of the loop. */
	oracle_src_cong(o, p, srcc);
	for (int t = 0; t < NKV_TIERS; t++)
		tinv[t] = o->tier_inv[t];
	for (uint32_t d = 0; d < n; d++) {
		const struct opath *q = &row[d];
		const struct oend *b = &dst[d];
		int t = tier[d];
		uint64_t bytes = v->held[d] ? nkv_view_missing(v, r, d) : full;
		double inv = q->inv > 0 && now <= q->fresh_until ? q->inv : tinv[t];
		double cong = srcc[t];

		if (__builtin_expect(b->inst == src_inst, 0)) {
			o_[d] = 0;
			continue;
		}
		if (t == 0) {
			double y = (double)(int64_t)infl[b->link[0]] * icap[b->link[0]];

			cong = y > cong ? y : cong;
		} else {
			for (int k = 1; k <= t; k++) {
				uint64_t f = infl[b->link[k]];

				if (f) {
					double c = (double)(int64_t)f * icap[b->link[k]]; /* < 2^63 bytes */

					cong = c > cong ? c : cong;
				}
			}
		}
		o_[d] = q->lat + (double)(int64_t)bytes * inv + wc * cong;
	}
}

void nkv_view_xfer_nominal_row(const struct nkv_sched_view *v, uint32_t p, const struct nkv_request *r,
			       double *out)
{
	for (uint32_t d = 0; d < v->ndecode; d++)
		out[d] = oracle_cost_nominal_idx(v->oracle, p, d, nkv_view_missing(v, r, d));
}
