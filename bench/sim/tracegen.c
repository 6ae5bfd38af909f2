/*
 * Synthetic Mooncake-format traces for the three workload profiles of the
 * experiments. Arrivals are Poisson at `rate`. Hash ids follow Mooncake's
 * chaining: identical leading content gets identical ids, so prefix reuse
 * shows up exactly where the profile shares content.
 *   chatbot  multi-turn sessions: each turn resends the previous turns
 *            (prefix = the previous turn's full blocks) plus a new message;
 *            inputs grow 1-8k tokens, outputs 100-500.
 *   rag      a system prompt block, then (with probability prefix_share)
 *            one of 64 shared documents of 4-16k tokens, then a unique
 *            question; outputs 50-300.
 *   agent    long tool-using sessions: 8-32k contexts growing by tool
 *            output each step, short outputs (20-200).
 * context_scale multiplies every length (the `context` experiment).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "netkv_sim.h"
#include "nkv_util.h"

void nkv_tracegen_defaults(struct nkv_tracegen_params *p)
{
	*p = (struct nkv_tracegen_params){ .profile = NKV_PROFILE_CHATBOT, .requests = 2000, .rate = 20,
					   .prefix_share = 0.5, .context_scale = 1, .seed = 1 };
}

int nkv_profile_parse(const char *s, enum nkv_trace_profile *out)
{
	if (!strcmp(s, "chatbot"))
		*out = NKV_PROFILE_CHATBOT;
	else if (!strcmp(s, "rag"))
		*out = NKV_PROFILE_RAG;
	else if (!strcmp(s, "agent"))
		*out = NKV_PROFILE_AGENT;
	else
		return nkv_err(EINVAL, "unknown profile '%s' (chatbot, rag, agent)", s);
	return 0;
}

struct rng {
	uint64_t s;
};

static double unif(struct rng *r)
{
	return nkv_unit01(&r->s);
}

static uint32_t urange(struct rng *r, uint32_t lo, uint32_t hi)
{
	return lo + (uint32_t)(unif(r) * (double)(hi - lo + 1));
}

#define BT 512u
#define MAX_CONTEXT_SCALE 512
#define MAX_TIMESTAMP_MS 9.0e15 /* what the trace reader takes */

struct session {
	uint32_t len;        /* context tokens so far */
	uint64_t *ids;
	uint32_t nids, cap;
};

static int sess_extend(struct session *s, uint32_t newlen, uint64_t *next_id)
{
	uint32_t full = s->len / BT; /* only full blocks survive as shared prefix */
	uint32_t need = (newlen + BT - 1) / BT;

	if (need > s->cap) {
		uint32_t c = need * 2;
		uint64_t *v = realloc(s->ids, c * sizeof(*v));
		if (!v)
			return nkv_err(ENOMEM, "trace gen: out of memory");
		s->ids = v;
		s->cap = c;
	}
	for (uint32_t b = full; b < need; b++)
		s->ids[b] = (*next_id)++;
	s->nids = need;
	s->len = newlen;
	return 0;
}

static void write_req(FILE *f, uint64_t ts_ms, uint32_t in, uint32_t out, const uint64_t *ids, uint32_t n)
{
	fprintf(f, "{\"timestamp\": %lu, \"input_length\": %u, \"output_length\": %u, \"hash_ids\": [",
		(unsigned long)ts_ms, in, out);
	for (uint32_t i = 0; i < n; i++)
		fprintf(f, i ? ", %lu" : "%lu", (unsigned long)ids[i]);
	fputs("]}\n", f);
}

int nkv_tracegen_write(const struct nkv_tracegen_params *p, FILE *f)
{
	struct rng r = { p->seed * 0x9e3779b97f4a7c15ULL + 0x1234567 };
	uint64_t next_id = 1;
	double t = 0, cs = p->context_scale > 0 ? p->context_scale : 1;
	enum { NSESS = 64, NDOC = 64 };
	struct session sess[NSESS] = { 0 };
	uint32_t doc_len[NDOC];
	uint64_t doc_base[NDOC];
	uint64_t *ids = NULL;
	int ret = 0;

	if (!(p->rate > 0) || !p->requests)
		return nkv_err(EINVAL, "trace gen: rate %g and requests %u must be > 0", p->rate, p->requests);
	if (p->prefix_share < 0 || p->prefix_share > 1)
		return nkv_err(EINVAL, "trace gen: prefix share %g outside 0..1", p->prefix_share);
	/* The longest context (agent, 32k tokens) must stay within the trace reader's input_length limit. */
	if (cs > MAX_CONTEXT_SCALE)
		return nkv_err(EINVAL, "trace gen: context scale %g above %d (inputs would pass 16M tokens)",
			       p->context_scale, MAX_CONTEXT_SCALE);
	for (int d = 0; d < NDOC; d++) {
		doc_len[d] = (uint32_t)(urange(&r, 4096, 16384) * cs);
		doc_base[d] = next_id;
		next_id += doc_len[d] / BT + 2;
	}
	uint64_t sys_id = next_id++;
	ids = malloc(sizeof(uint64_t) * (size_t)(1 << 20));
	if (!ids)
		return nkv_err(ENOMEM, "trace gen: out of memory");
	for (uint32_t i = 0; i < p->requests; i++) {
		t += -log(unif(&r)) / p->rate;
		if (!(t * 1000 <= MAX_TIMESTAMP_MS)) {
			ret = nkv_err(EINVAL, "trace gen: rate %g too low, timestamps pass %.0e ms", p->rate, MAX_TIMESTAMP_MS);
			goto out;
		}
		uint64_t ts = (uint64_t)(t * 1000);
		uint32_t in, out, n;

		switch (p->profile) {
		case NKV_PROFILE_CHATBOT:
		case NKV_PROFILE_AGENT: {
			bool agent = p->profile == NKV_PROFILE_AGENT;
			struct session *s = &sess[urange(&r, 0, NSESS - 1)];
			uint32_t cap = (uint32_t)((agent ? 32768 : 8192) * cs);
			uint32_t add = agent ? (uint32_t)(urange(&r, 500, 3000) * cs) : (uint32_t)(urange(&r, 50, 600) * cs);
			if (s->len == 0 || s->len + add > cap) { /* new session */
				s->len = 0;
				s->nids = 0;
				add = agent ? (uint32_t)(urange(&r, 8192, 12288) * cs) : (uint32_t)(urange(&r, 600, 2048) * cs);
			}
			if ((ret = sess_extend(s, s->len + (add ? add : 1), &next_id)))
				goto out;
			in = s->len;
			out = agent ? urange(&r, 20, 200) : urange(&r, 100, 500);
			n = s->nids;
			memcpy(ids, s->ids, n * sizeof(uint64_t));
			/* the answer joins the context of the next turn */
			s->len += out;
			break;
		}
		case NKV_PROFILE_RAG:
		default: {
			uint32_t q = (uint32_t)(urange(&r, 64, 512) * cs);
			n = 0;
			ids[n++] = sys_id; /* 512-token system prompt */
			in = BT;
			if (unif(&r) < p->prefix_share) {
				uint32_t d = urange(&r, 0, NDOC - 1), full = doc_len[d] / BT;
				for (uint32_t b = 0; b < full; b++)
					ids[n++] = doc_base[d] + b;
				in += full * BT;
			} else {
				uint32_t l = (uint32_t)(urange(&r, 4096, 16384) * cs) / BT;
				for (uint32_t b = 0; b < l; b++)
					ids[n++] = next_id++;
				in += l * BT;
			}
			in += q;
			for (uint32_t b = n; b < (in + BT - 1) / BT; b++)
				ids[n++] = next_id++;
			out = urange(&r, 50, 300);
			break;
		}
		}
		if (n > (1u << 20)) {
			ret = nkv_err(EINVAL, "trace gen: context too long");
			goto out;
		}
		write_req(f, ts, in, out, ids, n);
	}
out:
	for (int k = 0; k < NSESS; k++)
		free(sess[k].ids);
	free(ids);
	return ret;
}

int nkv_tracegen(const struct nkv_tracegen_params *p, struct nkv_trace **out)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	int ret;

	if (!f)
		return nkv_err(ENOMEM, "trace gen: out of memory");
	ret = nkv_tracegen_write(p, f);
	fclose(f);
	if (!ret)
		ret = nkv_trace_parse(buf, len, "generated", NULL, out);
	free(buf);
	return ret;
}
