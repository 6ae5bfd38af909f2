/*
 * The full Mooncake traces, where they are (NKV_SHARED or the build's
 * ../shared; not in the repository): their figures from the traces' README,
 * and the repository's excerpts are byte-for-byte their first 400 lines.
 * Exits 77 with the reason when the full traces are absent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netkv_sched.h"
#include "nkv_traces.h"
#include "nkv_util.h"

#define SKIP 77

static int fails;
#define CHECK(c, ...) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
	fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); fails++; } } while (0)

/* Is the excerpt file the first lines of the full file, byte for byte? */
static int is_prefix(const char *excerpt, const char *full)
{
	char *a, *b;
	size_t la, lb;
	int same;

	if (nkv_read_file(excerpt, 1 << 20, &a, &la))
		return 0;
	if (nkv_read_file(full, 64 << 20, &b, &lb)) {
		free(a);
		return 0;
	}
	same = la <= lb && memcmp(a, b, la) == 0 && la && a[la - 1] == '\n';
	free(a);
	free(b);
	return same;
}

static void check(const char *file, size_t n, uint64_t blocks, uint64_t last_ms)
{
	char path[1024], ex[1024];
	const char *x = getenv("NKV_TRACE_EXCERPTS");
	struct nkv_trace *t;
	uint64_t b = 0;

	if (nkv_shared_trace(file, path, sizeof(path))) {
		printf("skip: %s\n", nkv_last_error());
		exit(SKIP);
	}
	if (nkv_trace_load(path, NULL, &t)) {
		CHECK(0, "%s: %s", path, nkv_last_error());
		return;
	}
	for (size_t i = 0; i < t->n; i++)
		b += t->reqs[i].nblocks;
	CHECK(t->n == n, "%s: %zu requests, want %zu", file, t->n, n);
	CHECK(b == blocks, "%s: %llu block refs, want %llu", file, (unsigned long long)b, (unsigned long long)blocks);
	CHECK(t->reqs[t->n - 1].timestamp_ms == last_ms, "%s: last timestamp %llu", file,
	      (unsigned long long)t->reqs[t->n - 1].timestamp_ms);
	nkv_trace_free(t);
	snprintf(ex, sizeof(ex), "%s/%.*s-first400.jsonl", x ? x : ".", (int)(strlen(file) - 6), file);
	CHECK(is_prefix(ex, path), "%s is not the first lines of %s", ex, path);
}

int main(void)
{
	/* Figures from the traces' README (../shared/traces/mooncake/README.md). */
	check("conversation_trace.jsonl", 12031, 288500, 3536999);
	check("synthetic_trace.jsonl", 3993, 121877, 1022025);
	if (!fails)
		printf("full traces: figures as documented, excerpts are their first lines\n");
	return fails ? 1 : 0;
}
