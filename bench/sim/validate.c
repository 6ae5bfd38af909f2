/*
 * Check the simulator against measured records: simulate the finished
 * requests of a run again with their own arrivals, assignments and bytes
 * (forced assignments, netkv_sim.h) and compare per request.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "netkv_sim.h"
#include "nkv_util.h"

static const char *vq_names[NKV_VQ_N] = { "transfer", "ttft", "handoff" };

const char *nkv_vq_name(int q)
{
	return q >= 0 && q < NKV_VQ_N ? vq_names[q] : "?";
}

void nkv_validation_pair(const struct nkv_validation *v, int q, size_t i, double *pred, double *meas)
{
	const struct nkv_sim_record *s = &v->sim->recs[i];
	const struct nkv_rec_row *m = v->meas[i];

	switch (q) {
	case NKV_VQ_TTFT:
		*pred = s->ttft_s;
		*meas = m->ttft_s;
		break;
	case NKV_VQ_HANDOFF:
		*pred = s->transfer_s;
		*meas = m->transfer_s;
		break;
	default:
		*pred = s->transfer_s;
		*meas = m->xfer_s;
		break;
	}
}

static int stats(struct nkv_validation *v, int q)
{
	size_t n = v->compared;
	double *abs_e = malloc((n + 1) * sizeof(double)), *pm = malloc((n + 1) * sizeof(double));
	double *pp = malloc((n + 1) * sizeof(double)), sum = 0;
	struct nkv_err_stats *st = &v->q[q];
	size_t k = 0;

	if (!abs_e || !pm || !pp) {
		free(abs_e), free(pm), free(pp);
		return nkv_err(ENOMEM, "validate: out of memory");
	}
	memset(st, 0, sizeof(*st));
	for (size_t i = 0; i < n; i++) {
		double pred, meas;

		nkv_validation_pair(v, q, i, &pred, &meas);
		if (!(meas > 0)) {
			st->zero++;
			continue;
		}
		double e = (pred - meas) / meas;
		abs_e[k] = fabs(e);
		pm[k] = meas;
		pp[k++] = pred;
		sum += e;
	}
	nkv_sort_doubles(abs_e, k);
	nkv_sort_doubles(pm, k);
	nkv_sort_doubles(pp, k);
	st->n = k;
	st->median_abs = nkv_percentile(abs_e, k, 0.5);
	st->p90_abs = nkv_percentile(abs_e, k, 0.9);
	st->mean_signed = k ? sum / (double)k : 0;
	st->meas_p50_s = nkv_percentile(pm, k, 0.5);
	st->pred_p50_s = nkv_percentile(pp, k, 0.5);
	free(abs_e), free(pm), free(pp);
	return 0;
}

static int cmp_row_arrival(const void *a, const void *b)
{
	const struct nkv_rec_row *x = *(const struct nkv_rec_row *const *)a, *y = *(const struct nkv_rec_row *const *)b;

	if (x->arrival_s != y->arrival_s)
		return x->arrival_s < y->arrival_s ? -1 : 1;
	return x->req < y->req ? -1 : x->req > y->req;
}

/* Trace entry with this file line (trace entries are in line order). */
static const struct nkv_trace_req *trace_line(const struct nkv_trace *t, uint64_t line)
{
	size_t lo = 0, hi = t->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (t->reqs[mid].line < line)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < t->n && t->reqs[lo].line == line ? &t->reqs[lo] : NULL;
}

int nkv_sim_validate(const struct nkv_sim_config *base, const struct nkv_rec_row *rows, size_t n,
		     const struct nkv_trace *trace, const char *name, struct nkv_validation **out)
{
	struct nkv_validation *v = calloc(1, sizeof(*v));
	struct nkv_sim_assign *as = NULL;
	struct nkv_trace sub = { 0 };
	struct nkv_sim_config c = *base;
	size_t k = 0;
	int ret;

	*out = NULL;
	if (!v)
		return nkv_err(ENOMEM, "validate: out of memory");
	v->records = n;
	if (!(v->meas = calloc(n + 1, sizeof(*v->meas)))) {
		ret = nkv_err(ENOMEM, "validate: out of memory");
		goto fail;
	}
	for (size_t i = 0; i < n; i++)
		if (rows[i].status == NKV_REC_ST_OK)
			v->meas[k++] = &rows[i];
	if (!k) {
		ret = nkv_err(EINVAL, "%s: none of its %zu records finished (status ok): nothing to compare", name, n);
		goto fail;
	}
	v->compared = k;
	/* Simulated in arrival order (a replay submits in order, but be sure). */
	qsort(v->meas, k, sizeof(*v->meas), cmp_row_arrival);
	as = calloc(k, sizeof(*as));
	sub.reqs = calloc(k, sizeof(*sub.reqs));
	if (!as || !sub.reqs) {
		ret = nkv_err(ENOMEM, "validate: out of memory for %zu requests", k);
		goto fail;
	}
	sub.n = k;
	/* Arrivals counted from the earliest: a trace's absolute times (sim run
	 * --csv writes them; epoch milliseconds are 1.7e9 s) would leave a
	 * double too coarse for the microseconds of a transfer. */
	const double t0 = v->meas[0]->arrival_s;
	for (size_t i = 0; i < k; i++) {
		const struct nkv_rec_row *r = v->meas[i];
		struct nkv_trace_req *q = &sub.reqs[i];
		int p = nkv_topo_find(base->topo, r->prefill), d = nkv_topo_find(base->topo, r->decode);

		if (p < 0 || d < 0) {
			ret = nkv_err(EINVAL, "%s:%llu: instance '%s' is not in topology %s", name,
				      (unsigned long long)r->file_line, p < 0 ? r->prefill : r->decode,
				      nkv_topo_name(base->topo));
			goto fail;
		}
		if (!r->input || !r->output) {
			ret = nkv_err(EINVAL, "%s:%llu: column %s: a finished request with 0 %s tokens", name,
				      (unsigned long long)r->file_line, r->input ? "output" : "input",
				      r->input ? "output" : "input");
			goto fail;
		}
		/* UINT64_MAX in a forced assignment means "the model's bytes": a
		 * measured figure must not be taken for it. */
		if (r->bytes == UINT64_MAX) {
			ret = nkv_err(EINVAL, "%s:%llu: column bytes: %llu is not a transfer size", name,
				      (unsigned long long)r->file_line, (unsigned long long)r->bytes);
			goto fail;
		}
		q->input_len = r->input;
		q->output_len = r->output;
		q->line = r->line;
		if (trace) {
			const struct nkv_trace_req *t = trace_line(trace, r->line);
			if (!t) {
				ret = nkv_err(EINVAL, "%s:%llu: column line: the trace has no request at line %llu (wrong --trace?)",
					      name, (unsigned long long)r->file_line, (unsigned long long)r->line);
				goto fail;
			}
			if (t->input_len != r->input) {
				ret = nkv_err(EINVAL, "%s:%llu: column input: %u tokens, the trace's line %llu has %u (wrong --trace?)",
					      name, (unsigned long long)r->file_line, r->input, (unsigned long long)r->line,
					      t->input_len);
				goto fail;
			}
			q->hash_ids = t->hash_ids;
			q->nblocks = t->nblocks;
		}
		as[i] = (struct nkv_sim_assign){ .prefill = (uint32_t)p, .decode = (uint32_t)d, .bytes = r->bytes,
						 .arrival_s = r->arrival_s - t0 };
	}
	c.assign = as;
	c.nassign = k;
	c.limit = 0;
	c.rate_scale = 1;
	if ((ret = nkv_sim_run(&c, &sub, &v->sim)))
		goto fail;
	for (int q = 0; q < NKV_VQ_N; q++)
		if ((ret = stats(v, q)))
			goto fail;
	free(as);
	free(sub.reqs);
	*out = v;
	return 0;
fail:
	free(as);
	free(sub.reqs);
	nkv_validation_free(v);
	return ret;
}

void nkv_validation_free(struct nkv_validation *v)
{
	if (!v)
		return;
	free(v->meas);
	nkv_sim_result_free(v->sim);
	free(v);
}
