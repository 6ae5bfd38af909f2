/*
 * libFuzzer entry for the Mooncake trace reader (nkv_trace_parse). Each
 * input is read twice: with the default options (the first bad line aborts
 * the load) and with skip_bad, a request limit and a block size picked by
 * the first byte. Whatever loads must satisfy what the header promises, and
 * the two reads must agree with each other. Replayed over corpus_trace/ by
 * test_sched_trace_fuzz_replay (nkv_add_fuzz).
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "netkv_sched.h"
#include "nkv_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_bad(void *ctx, uint64_t line, const char *why)
{
	uint64_t *seen = ctx;

	/* reported in line order, each with a reason in printable text */
	if (line <= seen[1] || !why || !*why)
		abort();
	for (const char *s = why; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			abort();
	seen[0]++;
	seen[1] = line;
}

/* An error names the input and a line, in printable text on one line. */
static void check_error(int ret)
{
	const char *e = nkv_last_error();

	if (ret != -EINVAL && ret != -ENOMEM)
		abort();
	if (strncmp(e, "fuzz:", 5))
		abort();
	for (const char *s = e; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			abort();
}

static void check_trace(const struct nkv_trace *t, const struct nkv_trace_opts *o, uint64_t bad_seen)
{
	uint32_t bt = o->block_tokens ? o->block_tokens : NKV_PREFIX_BLOCK_TOKENS;
	size_t pool = 0;

	if ((o->limit && t->n > o->limit) || t->n + t->skipped > t->lines || t->skipped != bad_seen ||
	    (!o->skip_bad && t->skipped))
		abort();
	for (size_t i = 0; i < t->n; i++) {
		const struct nkv_trace_req *q = &t->reqs[i];
		struct nkv_request r;

		if (q->timestamp_ms > (1ull << 53) || q->input_len < 1 || q->input_len > NKV_TRACE_MAX_TOKENS ||
		    q->output_len < 1 || q->output_len > NKV_TRACE_MAX_TOKENS ||
		    q->nblocks != (q->input_len + bt - 1) / bt || q->line < 1 || q->line > t->lines)
			abort();
		if (i && (q->timestamp_ms < t->reqs[i - 1].timestamp_ms || q->line <= t->reqs[i - 1].line))
			abort();
		if (q->hash_ids != t->pool + pool)
			abort();
		pool += q->nblocks;
		nkv_trace_request(t, i, 1.0, 131072, &r);
		if (!isfinite(r.arrival_s) || r.arrival_s < 0)
			abort();
	}
	if (pool != t->pool_len)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint32_t bts[] = { 0, 1, 16, 512 };
	const char *buf = (const char *)data;
	struct nkv_trace *a = NULL, *b = NULL;
	struct nkv_trace_opts def = { 0 }, skip = { .skip_bad = true, .on_bad = on_bad };
	uint64_t seen[2] = { 0, 0 };
	int ra, rb;

	/* The first byte picks the second read's limit (0 = all) and block size;
	 * it stays part of the input. */
	if (size) {
		skip.limit = data[0] % 8;
		skip.block_tokens = bts[(data[0] >> 3) % 4];
	}
	skip.ctx = seen;

	ra = nkv_trace_parse(buf, size, "fuzz", &def, &a);
	if (ra)
		check_error(ra);
	else
		check_trace(a, &def, 0);

	rb = nkv_trace_parse(buf, size, "fuzz", &skip, &b);
	if (rb) {
		/* with skip_bad only running out of memory stops a load */
		if (rb != -ENOMEM)
			abort();
		check_error(rb);
	} else {
		check_trace(b, &skip, seen[0]);
	}

	/* Same block size: a clean load is the skip_bad load, up to the limit. */
	if (!ra && !rb && !skip.block_tokens) {
		size_t want = skip.limit && a->n > skip.limit ? skip.limit : a->n;

		if (b->n != want || b->skipped)
			abort();
		for (size_t i = 0; i < want; i++) {
			const struct nkv_trace_req *x = &a->reqs[i], *y = &b->reqs[i];

			if (x->timestamp_ms != y->timestamp_ms || x->input_len != y->input_len ||
			    x->output_len != y->output_len || x->line != y->line ||
			    memcmp(x->hash_ids, y->hash_ids, x->nblocks * sizeof(uint64_t)))
				abort();
		}
	}
	/* A load that stopped on a bad line has that line skipped in the other
	 * read, unless the limit was reached first. */
	if (ra == -EINVAL && !rb && !skip.block_tokens && !skip.limit && !b->skipped)
		abort();
	nkv_trace_free(a);
	nkv_trace_free(b);
	return 0;
}
