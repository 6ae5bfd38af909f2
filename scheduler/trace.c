/*
 * Mooncake JSONL trace reader. Every line is validated; an error names the
 * file and line. With skip_bad a bad line is reported (on_bad) and skipped,
 * otherwise the load stops there.
 */
#include "netkv_sched.h"

#include "nkv_util.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Timestamps become doubles (nkv_trace_request): past 2^53 ms a double no
 * longer holds every integer, so two timestamps could merge. */
#define MAX_TIMESTAMP_MS (1ull << 53)
#define MAX_TRACE_FILE ((size_t)4 << 30)

struct reader {
	struct nkv_trace *t;
	size_t cap, pool_cap;
	uint64_t last_ts;
	const char *name;
	struct nkv_trace_opts o;
};

/* Non-negative JSON integer (a real with no fraction is accepted too, up to
 * 2^53, where doubles stop holding every integer). */
static int get_uint(json_t *v, uint64_t *out)
{
	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);

		if (i < 0)
			return -1;
		*out = (uint64_t)i;
		return 0;
	}
	if (json_is_real(v)) {
		double d = json_real_value(v);

		/* A real at 2^53 may be a larger number rounded down: refused. */
		if (!isfinite(d) || d < 0 || d != floor(d) || d >= (double)MAX_TIMESTAMP_MS)
			return -1;
		*out = (uint64_t)d;
		return 0;
	}
	return -1;
}

/* Parse one non-blank line; on a bad line fill why and return -EINVAL. */
static int parse_line(struct reader *r, const char *s, size_t len, uint64_t lineno, char *why, size_t whylen)
{
	json_error_t je;
	json_t *root, *v, *ids;
	uint64_t ts, in, out, id;
	size_t n, want, bt = r->o.block_tokens ? r->o.block_tokens : NKV_PREFIX_BLOCK_TOKENS;
	struct nkv_trace_req *q;
	int ret = -EINVAL;

	root = json_loadb(s, len, JSON_REJECT_DUPLICATES, &je);
	if (!root) {
		snprintf(why, whylen, "not JSON: %s (column %d)", je.text, je.column);
		return -EINVAL;
	}
	if (!json_is_object(root)) {
		snprintf(why, whylen, "not a JSON object");
		goto out;
	}
	v = json_object_get(root, "timestamp");
	if (!v || get_uint(v, &ts) || ts > MAX_TIMESTAMP_MS) {
		snprintf(why, whylen, "timestamp %s", v ? "must be an integer in 0..2^53 (ms)" : "missing");
		goto out;
	}
	if (r->t->n && ts < r->last_ts) {
		snprintf(why, whylen, "timestamp %llu goes back (previous request at %llu; `netkv trace sort` orders a file)",
			 (unsigned long long)ts, (unsigned long long)r->last_ts);
		goto out;
	}
	v = json_object_get(root, "input_length");
	if (!v || get_uint(v, &in) || in < 1 || in > NKV_TRACE_MAX_TOKENS) {
		snprintf(why, whylen, "input_length %s", v ? "must be an integer in 1..16777216" : "missing");
		goto out;
	}
	v = json_object_get(root, "output_length");
	if (!v || get_uint(v, &out) || out < 1 || out > NKV_TRACE_MAX_TOKENS) {
		snprintf(why, whylen, "output_length %s", v ? "must be an integer in 1..16777216" : "missing");
		goto out;
	}
	ids = json_object_get(root, "hash_ids");
	if (!ids || !json_is_array(ids)) {
		snprintf(why, whylen, "hash_ids %s", ids ? "must be an array" : "missing");
		goto out;
	}
	n = json_array_size(ids);
	want = (in + bt - 1) / bt;
	if (n != want) {
		snprintf(why, whylen, "hash_ids has %zu entries, input_length %llu needs %zu (one per %zu tokens)", n,
			 (unsigned long long)in, want, bt);
		goto out;
	}
	if (nkv_grow((void **)&r->t->pool, &r->pool_cap, r->t->pool_len + n, sizeof(uint64_t)) ||
	    nkv_grow((void **)&r->t->reqs, &r->cap, r->t->n + 1, sizeof(*r->t->reqs))) {
		ret = -ENOMEM;
		snprintf(why, whylen, "%s", nkv_last_error());
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		if (get_uint(json_array_get(ids, i), &id)) {
			snprintf(why, whylen, "hash_ids[%zu] must be an integer >= 0", i);
			goto out;
		}
		r->t->pool[r->t->pool_len + i] = id;
	}
	q = &r->t->reqs[r->t->n++];
	q->timestamp_ms = ts;
	q->input_len = (uint32_t)in;
	q->output_len = (uint32_t)out;
	q->nblocks = (uint32_t)n;
	q->line = lineno;
	/* Keep the offset in the pointer slot's place until the end. */
	q->hash_ids = (const uint64_t *)(uintptr_t)r->t->pool_len;
	r->t->pool_len += n;
	r->last_ts = ts;
	ret = 0;
out:
	json_decref(root);
	return ret;
}

static bool blank(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
			return false;
	return true;
}

int nkv_trace_parse(const char *buf, size_t len, const char *name, const struct nkv_trace_opts *o,
		    struct nkv_trace **out)
{
	struct reader r = { .name = name ? name : "trace" };
	const char *p = buf, *end = buf + len;
	uint64_t lineno = 0;
	char why[256];
	int ret;

	if (o)
		r.o = *o;
	if (r.o.block_tokens > NKV_TRACE_MAX_TOKENS)
		return nkv_err(EINVAL, "trace: block_tokens %u too large", r.o.block_tokens);
	r.t = calloc(1, sizeof(*r.t));
	if (!r.t)
		return nkv_err(ENOMEM, "trace: out of memory");
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);

		lineno++;
		if (!blank(p, l)) {
			if (memchr(p, '\0', l)) {
				snprintf(why, sizeof(why), "NUL byte in line");
				ret = -EINVAL;
			} else {
				ret = parse_line(&r, p, l, lineno, why, sizeof(why));
			}
			if (ret == -ENOMEM || (ret && !r.o.skip_bad)) {
				nkv_trace_free(r.t);
				return nkv_err(-ret, "%s:%llu: %s", r.name, (unsigned long long)lineno, why);
			}
			if (ret) {
				r.t->skipped++;
				/* why may quote the line (jansson's token): as nkv_err() does */
				nkv_str_printable(why);
				if (r.o.on_bad)
					r.o.on_bad(r.o.ctx, lineno, why);
			}
		}
		p += l + (nl ? 1 : 0);
		if (r.o.limit && r.t->n >= r.o.limit)
			break;
	}
	r.t->lines = lineno;
	for (size_t i = 0; i < r.t->n; i++)
		r.t->reqs[i].hash_ids = r.t->pool + (uintptr_t)r.t->reqs[i].hash_ids;
	*out = r.t;
	return 0;
}

int nkv_trace_load(const char *path, const struct nkv_trace_opts *o, struct nkv_trace **out)
{
	char *buf;
	size_t len;
	int ret = nkv_read_file(path, MAX_TRACE_FILE, &buf, &len);

	if (ret)
		return nkv_err_wrap(ret, "trace");
	ret = nkv_trace_parse(buf, len, path, o, out);
	free(buf);
	return ret;
}

void nkv_trace_free(struct nkv_trace *t)
{
	if (!t)
		return;
	free(t->reqs);
	free(t->pool);
	free(t);
}

void nkv_trace_request(const struct nkv_trace *t, size_t i, double speed, uint64_t kv_bytes_per_token,
		       struct nkv_request *out)
{
	const struct nkv_trace_req *q = &t->reqs[i];

	if (!(speed > 0))
		speed = 1;
	memset(out, 0, sizeof(*out));
	out->id = i;
	out->arrival_s = (double)q->timestamp_ms / 1000.0 / speed;
	out->input_len = q->input_len;
	out->output_len = q->output_len;
	out->hash_ids = q->hash_ids;
	out->nblocks = q->nblocks;
	out->kv_bytes_per_token = kv_bytes_per_token;
}
