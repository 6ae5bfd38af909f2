/*
 * The scheduler: cluster state, the two prefix indexes, the oracle and the
 * chosen policy, and the bookkeeping of its own decisions between
 * telemetry refreshes.
 */
#include "sched_internal.h"

#include "nkv_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void nkv_sched_defaults(struct nkv_sched_params *p)
{
	memset(p, 0, sizeof(*p));
	p->policy = "netkv";
	p->prefill_policy = NKV_PREFILL_RR;
	p->w_cache = 1;
	p->w_load = 1;
	p->w_tier = 0.5;
	p->w_wait = 1;
	p->w_xfer = 1;
	p->w_tbt = NKV_W_TBT_DEFAULT;
	p->mean_remaining_output = 256;
	p->prefix_block_tokens = NKV_PREFIX_BLOCK_TOKENS;
	p->kv_block_tokens = 16;
	p->seed = 1;
	nkv_oracle_defaults(&p->oracle);
}

static int check_weight(double w, const char *name)
{
	if (!(w >= 0 && isfinite(w)))
		return nkv_err(EINVAL, "scheduler: weight %s = %g must be a finite number >= 0", name, w);
	return 0;
}

int nkv_sched_set_policy(struct nkv_sched *s, const char *name)
{
	const struct nkv_policy_ops *ops = nkv_policy_find(name);
	void *st = NULL;
	int ret;

	if (!ops) {
		char known[256] = "";
		const struct nkv_policy_ops *const *all = nkv_policies();

		for (size_t i = 0; all[i]; i++)
			snprintf(known + strlen(known), sizeof(known) - strlen(known), "%s%s", i ? " " : "",
				 all[i]->name);
		return nkv_err(ENOENT, "scheduler: unknown policy '%s' (known: %s)", name ? name : "(null)", known);
	}
	if (ops->init && (ret = ops->init(&s->view, &st)))
		return ret;
	if (s->ops && s->ops->fini)
		s->ops->fini(s->pstate);
	s->ops = ops;
	s->pstate = st;
	snprintf(s->policy_name, sizeof(s->policy_name), "%s", ops->name);
	s->p.policy = s->policy_name;
	return 0;
}

int nkv_sched_create(const struct nkv_topo *t, const struct nkv_perf *perf, const struct nkv_sched_params *params,
		     const uint32_t *prefill, uint32_t nprefill, const uint32_t *decode, uint32_t ndecode,
		     struct nkv_sched **out)
{
	struct nkv_sched *s;
	uint64_t kv_blocks;
	int ret;

	if (!t || !perf || !prefill || !decode || !nprefill || !ndecode)
		return nkv_err(EINVAL, "scheduler: needs a topology, a perf model and at least one prefill and one "
				       "decode instance");
	s = calloc(1, sizeof(*s));
	if (!s)
		return nkv_err(ENOMEM, "scheduler: out of memory");
	if (params)
		s->p = *params;
	else
		nkv_sched_defaults(&s->p);
	if ((ret = check_weight(s->p.w_cache, "w_cache")) || (ret = check_weight(s->p.w_load, "w_load")) ||
	    (ret = check_weight(s->p.w_tier, "w_tier")) || (ret = check_weight(s->p.w_wait, "w_wait")) ||
	    (ret = check_weight(s->p.w_xfer, "w_xfer")) || (ret = check_weight(s->p.w_tbt, "w_tbt")))
		goto fail;
	if (!(s->p.mean_remaining_output >= 0 && isfinite(s->p.mean_remaining_output))) {
		ret = nkv_err(EINVAL, "scheduler: mean remaining output %g must be >= 0", s->p.mean_remaining_output);
		goto fail;
	}
	if (!s->p.prefix_block_tokens || !s->p.kv_block_tokens) {
		ret = nkv_err(EINVAL, "scheduler: block sizes must be > 0");
		goto fail;
	}
	if (!perf->max_batch || !perf->kv_bytes_per_token) {
		ret = nkv_err(EINVAL, "scheduler: perf model %s needs max_batch and KV bytes per token", perf->model);
		goto fail;
	}
	s->topo = t;
	s->perf = *perf;
	s->np = nprefill;
	s->nd = ndecode;
	s->pre = calloc(nprefill, sizeof(*s->pre));
	s->dec = calloc(ndecode, sizeof(*s->dec));
	s->held_p = calloc(nprefill, sizeof(uint32_t));
	s->held_d = calloc(ndecode, sizeof(uint32_t));
	s->tier = malloc((size_t)nprefill * ndecode);
	if (!s->pre || !s->dec || !s->held_p || !s->held_d || !s->tier) {
		ret = nkv_err(ENOMEM, "scheduler: out of memory");
		goto fail;
	}
	ret = nkv_oracle_create(t, &s->p.oracle, prefill, nprefill, decode, ndecode, &s->oracle);
	if (ret)
		goto fail;
	s->p.oracle = s->oracle->p; /* with defaults resolved */
	if ((ret = nkv_prefix_create(ndecode, &s->dindex)) || (ret = nkv_prefix_create(nprefill, &s->pindex)))
		goto fail;
	kv_blocks = nkv_perf_kv_capacity_tokens(perf) / s->p.kv_block_tokens;
	for (uint32_t i = 0; i < nprefill; i++)
		s->pre[i].inst = prefill[i];
	for (uint32_t i = 0; i < ndecode; i++) {
		s->dec[i].inst = decode[i];
		s->dec[i].kv_blocks_total = kv_blocks;
	}
	for (uint32_t i = 0; i < nprefill; i++)
		for (uint32_t j = 0; j < ndecode; j++)
			s->tier[(size_t)i * ndecode + j] = (uint8_t)oracle_tier_idx(s->oracle, i, j);
	s->view = (struct nkv_sched_view){
		.nprefill = nprefill,
		.ndecode = ndecode,
		.prefill = s->pre,
		.decode = s->dec,
		.tier = s->tier,
		.held = s->held_d,
		.params = &s->p,
		.perf = &s->perf,
		.oracle = s->oracle,
	};
	ret = nkv_sched_set_policy(s, s->p.policy ? s->p.policy : "netkv");
	if (ret)
		goto fail;
	*out = s;
	return 0;
fail:
	nkv_sched_free(s);
	return ret;
}

void nkv_sched_free(struct nkv_sched *s)
{
	if (!s)
		return;
	if (s->ops && s->ops->fini)
		s->ops->fini(s->pstate);
	nkv_oracle_free(s->oracle);
	nkv_prefix_free(s->dindex);
	nkv_prefix_free(s->pindex);
	free(s->pre);
	free(s->dec);
	free(s->held_p);
	free(s->held_d);
	free(s->tier);
	free(s);
}

const char *nkv_sched_policy_name(const struct nkv_sched *s) { return s->policy_name; }
uint32_t nkv_sched_ndecode(const struct nkv_sched *s) { return s->nd; }
uint32_t nkv_sched_nprefill(const struct nkv_sched *s) { return s->np; }
struct nkv_oracle *nkv_sched_oracle(struct nkv_sched *s) { return s->oracle; }
struct nkv_prefix_index *nkv_sched_decode_index(struct nkv_sched *s) { return s->dindex; }
struct nkv_prefix_index *nkv_sched_prefill_index(struct nkv_sched *s) { return s->pindex; }
const struct nkv_perf *nkv_sched_perf(const struct nkv_sched *s) { return &s->perf; }
const struct nkv_sched_params *nkv_sched_get_params(const struct nkv_sched *s) { return &s->p; }
const struct nkv_sched_view *nkv_sched_view(const struct nkv_sched *s) { return &s->view; }

struct nkv_decode_state *nkv_sched_decode(struct nkv_sched *s, uint32_t d)
{
	return d < s->nd ? &s->dec[d] : NULL;
}

struct nkv_prefill_state *nkv_sched_prefill(struct nkv_sched *s, uint32_t p)
{
	return p < s->np ? &s->pre[p] : NULL;
}

double nkv_sched_decode_wait(const struct nkv_sched *s, uint32_t d, const struct nkv_request *r)
{
	return d < s->nd ? sched_wait(s, &s->dec[d], r) : -nkv_err(EINVAL, "decode %u out of range", d);
}

double nkv_sched_decode_load(const struct nkv_sched *s, uint32_t d)
{
	return d < s->nd ? sched_load(s, &s->dec[d]) : -nkv_err(EINVAL, "decode %u out of range", d);
}

/*
 * The prefill choice, shared by every decode policy. NKV_PREFILL_CACHE
 * takes the instance that would finish r's prefill first by the token
 * count it has to get through: the uncached tokens already queued there
 * plus r's own after that instance's prefix hit. A long hit no longer
 * draws every request to one instance whatever its queue (that put a third
 * of the prefills on a few instances and added their queueing to TTFT);
 * a hit still wins while the queue it costs is shorter than the work it
 * saves. Ties go round the instances from a rotating start, so no index
 * is favoured. held_p[] must be filled (leading blocks per prefill).
 */
static uint32_t pick_prefill(struct nkv_sched *s, const struct nkv_request *r)
{
	uint32_t start = (uint32_t)(s->prefill_rr++ % s->np), best = start;
	uint64_t best_work = UINT64_MAX;

	if (s->p.prefill_policy != NKV_PREFILL_CACHE)
		return start;
	for (uint32_t k = 0; k < s->np; k++) {
		uint32_t i = start + k < s->np ? start + k : start + k - s->np;
		uint64_t held = (uint64_t)s->held_p[i] * s->p.prefix_block_tokens;
		uint64_t work = s->pre[i].queued_tokens + (held < r->input_len ? r->input_len - held : 0);

		if (work < best_work) {
			best_work = work;
			best = i;
		}
	}
	return best;
}

int nkv_sched_decide(struct nkv_sched *s, const struct nkv_request *r, double now, struct nkv_decision *out)
{
	uint32_t p, d, held_p;
	int ret;

	if (!r->kv_bytes_per_token || (r->nblocks && !r->hash_ids))
		return nkv_err(EINVAL, "scheduler: request %llu has %s", (unsigned long long)r->id,
			       r->kv_bytes_per_token ? "blocks but no hash ids" : "no KV bytes per token");
	if ((uint64_t)r->nblocks * s->p.prefix_block_tokens >= (uint64_t)r->input_len + s->p.prefix_block_tokens)
		return nkv_err(EINVAL, "scheduler: request %llu has %u prefix blocks for %u input tokens (%u per block)",
			       (unsigned long long)r->id, r->nblocks, r->input_len, s->p.prefix_block_tokens);
	nkv_oracle_tick(s->oracle, now);
	/* Both sides' leading blocks in one walk: the prefill choice uses its
	 * own, the decision reports what p holds (its queue counts the rest). */
	nkv__prefix_match_pair(s->pindex, s->held_p, s->dindex, s->held_d, r->hash_ids, r->nblocks);
	p = pick_prefill(s, r);
	held_p = s->held_p[p];
	memset(out, 0, sizeof(*out));
	out->prefill = p;
	ret = s->ops->pick(&s->view, s->pstate, r, p, now, out);
	if (ret < 0)
		return ret;
	d = out->decode;
	if (d >= s->nd)
		return nkv_err(EINVAL, "scheduler: policy %s chose decode %u of %u", s->ops->name, d, s->nd);
	out->prefill_inst = s->pre[p].inst;
	out->decode_inst = s->dec[d].inst;
	out->tier = oracle_tier_idx(s->oracle, p, d);
	out->held_blocks = s->held_d[d];
	out->prefill_held_blocks = held_p;
	out->bytes = sched_missing_bytes(s, r, s->held_d[d]);
	out->est_wait_s = sched_wait(s, &s->dec[d], r);
	out->est_xfer_s = oracle_cost_idx(s->oracle, p, d, out->bytes, now);
	out->est_ttft_s = out->est_wait_s + out->est_xfer_s;
	out->est_pack_s = nkv_policy_pack(&s->p, &s->perf, &s->dec[d], r);
	return 0;
}

static int check_dec(const struct nkv_sched *s, const struct nkv_decision *dec)
{
	if (dec->prefill >= s->np || dec->decode >= s->nd)
		return nkv_err(EINVAL, "scheduler: decision names prefill %u / decode %u of %u / %u", dec->prefill,
			       dec->decode, s->np, s->nd);
	return 0;
}

static uint64_t sat_sub(uint64_t a, uint64_t b)
{
	return a > b ? a - b : 0;
}

static uint64_t prefill_tokens(const struct nkv_sched *s, const struct nkv_request *r, const struct nkv_decision *dec)
{
	uint64_t held = (uint64_t)dec->prefill_held_blocks * s->p.prefix_block_tokens;

	return held >= r->input_len ? 0 : r->input_len - held;
}

int nkv_sched_assign(struct nkv_sched *s, const struct nkv_request *r, const struct nkv_decision *dec)
{
	struct nkv_decode_state *d;
	struct nkv_prefill_state *p;
	int ret = check_dec(s, dec);

	if (ret)
		return ret;
	d = &s->dec[dec->decode];
	p = &s->pre[dec->prefill];
	if (dec->bytes && (ret = nkv_oracle_flow_add(s->oracle, p->inst, d->inst, dec->bytes)))
		return ret;
	d->queued++;
	d->queued_tokens += (uint64_t)r->input_len + r->output_len;
	p->queued++;
	p->queued_tokens += prefill_tokens(s, r, dec);
	return 0;
}

int nkv_sched_transfer_done(struct nkv_sched *s, const struct nkv_request *r, const struct nkv_decision *dec,
			    double seconds, double t)
{
	struct nkv_prefill_state *p;
	struct nkv_decode_state *d;
	int ret = check_dec(s, dec);

	if (ret)
		return ret;
	d = &s->dec[dec->decode];
	p = &s->pre[dec->prefill];
	if (dec->bytes) {
		if ((ret = nkv_oracle_flow_remove(s->oracle, p->inst, d->inst, dec->bytes)))
			return ret;
		if (seconds > 0 && (ret = nkv_oracle_sample(s->oracle, p->inst, d->inst, dec->bytes, seconds, t,
							  NKV_SAMPLE_PASSIVE)) < 0)
			return ret;
	}
	p->queued = p->queued ? p->queued - 1 : 0;
	p->queued_tokens = sat_sub(p->queued_tokens, prefill_tokens(s, r, dec));
	if (r->nblocks) {
		if ((ret = nkv_prefix_add(s->dindex, dec->decode, r->hash_ids, r->nblocks)) ||
		    (ret = nkv_prefix_add(s->pindex, dec->prefill, r->hash_ids, r->nblocks)))
			return ret;
	}
	return 0;
}

static uint64_t kv_blocks(const struct nkv_sched *s, const struct nkv_request *r)
{
	uint64_t need = (uint64_t)r->input_len + r->output_len;

	return (need + s->p.kv_block_tokens - 1) / s->p.kv_block_tokens;
}

int nkv_sched_admit(struct nkv_sched *s, const struct nkv_request *r, const struct nkv_decision *dec)
{
	struct nkv_decode_state *d;
	int ret = check_dec(s, dec);

	if (ret)
		return ret;
	d = &s->dec[dec->decode];
	d->queued = d->queued ? d->queued - 1 : 0;
	d->queued_tokens = sat_sub(d->queued_tokens, (uint64_t)r->input_len + r->output_len);
	d->running++;
	d->running_tokens += r->input_len;
	d->kv_blocks_used += kv_blocks(s, r);
	return 0;
}

int nkv_sched_finish(struct nkv_sched *s, const struct nkv_request *r, const struct nkv_decision *dec)
{
	struct nkv_decode_state *d;
	int ret = check_dec(s, dec);

	if (ret)
		return ret;
	d = &s->dec[dec->decode];
	d->running = d->running ? d->running - 1 : 0;
	d->running_tokens = sat_sub(d->running_tokens, r->input_len);
	d->kv_blocks_used = sat_sub(d->kv_blocks_used, kv_blocks(s, r));
	return 0;
}
