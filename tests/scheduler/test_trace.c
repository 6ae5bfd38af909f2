/* Mooncake trace reader: good lines, every kind of bad line, skip vs abort, the real trace. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netkv_sched.h"
#include "nkv_util.h"

static int parse(const char *s, bool skip, struct nkv_trace **t)
{
	struct nkv_trace_opts o = { .skip_bad = skip };

	return nkv_trace_parse(s, strlen(s), "t.jsonl", &o, t);
}

static void test_good(void **st)
{
	const char *s = "{\"timestamp\": 0, \"input_length\": 600, \"output_length\": 5, \"hash_ids\": [7, 9]}\n"
			"\n"
			"{\"timestamp\": 12, \"input_length\": 512, \"output_length\": 1, \"hash_ids\": [7], \"x\": 1}";
	struct nkv_trace *t;
	struct nkv_request r;

	(void)st;
	assert_int_equal(parse(s, false, &t), 0);
	assert_int_equal(t->n, 2);
	assert_int_equal(t->lines, 3);
	assert_int_equal(t->reqs[0].nblocks, 2);
	assert_int_equal(t->reqs[0].hash_ids[1], 9);
	assert_int_equal(t->reqs[1].line, 3);
	assert_int_equal(t->reqs[1].hash_ids[0], 7);
	nkv_trace_request(t, 1, 2.0, 131072, &r);
	assert_true(r.arrival_s > 0.0059 && r.arrival_s < 0.0061); /* 12 ms at speed 2 */
	assert_int_equal(r.input_len, 512);
	assert_int_equal(r.kv_bytes_per_token, 131072);
	nkv_trace_free(t);
}

struct bad_case {
	const char *line;
	const char *msg; /* must appear in the error */
};

static const struct bad_case bad[] = {
	{ "{\"timestamp\": 0, \"input_length\": 10", "not JSON" },
	{ "[1,2]", "not a JSON object" },
	{ "{\"input_length\": 10, \"output_length\": 1, \"hash_ids\": [1]}", "timestamp missing" },
	{ "{\"timestamp\": -1, \"input_length\": 10, \"output_length\": 1, \"hash_ids\": [1]}", "timestamp must" },
	{ "{\"timestamp\": 1, \"input_length\": 0, \"output_length\": 1, \"hash_ids\": []}", "input_length must" },
	{ "{\"timestamp\": 1, \"input_length\": \"9\", \"output_length\": 1, \"hash_ids\": [1]}", "input_length must" },
	{ "{\"timestamp\": 1, \"input_length\": 10, \"hash_ids\": [1]}", "output_length missing" },
	{ "{\"timestamp\": 1, \"input_length\": 10, \"output_length\": 1.5, \"hash_ids\": [1]}", "output_length must" },
	{ "{\"timestamp\": 1, \"input_length\": 10, \"output_length\": 1}", "hash_ids missing" },
	{ "{\"timestamp\": 1, \"input_length\": 10, \"output_length\": 1, \"hash_ids\": 3}", "must be an array" },
	{ "{\"timestamp\": 1, \"input_length\": 1000, \"output_length\": 1, \"hash_ids\": [1]}", "needs 2" },
	{ "{\"timestamp\": 1, \"input_length\": 10, \"output_length\": 1, \"hash_ids\": [-4]}", "hash_ids[0]" },
	{ "{\"timestamp\": 1, \"timestamp\": 2, \"input_length\": 10, \"output_length\": 1, \"hash_ids\": [1]}",
	  "not JSON" },
	/* past 2^53 ms two timestamps could become the same arrival (it was taken) */
	{ "{\"timestamp\": 9007199254740993, \"input_length\": 10, \"output_length\": 1, \"hash_ids\": [1]}",
	  "timestamp must be an integer in 0..2^53" },
	/* the same written as a real is read as 2^53 exactly: refused too */
	{ "{\"timestamp\": 9007199254740993.0, \"input_length\": 10, \"output_length\": 1, \"hash_ids\": [1]}",
	  "timestamp must be an integer in 0..2^53" },
	{ "{\"timestamp\": 1, \"input_length\": 10, \"output_length\": 16777217, \"hash_ids\": [1]}",
	  "output_length must" },
};

static void test_bad_lines_abort(void **st)
{
	(void)st;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char buf[512];
		struct nkv_trace *t = NULL;

		/* A good line first, so the bad one is line 2. */
		snprintf(buf, sizeof(buf),
			 "{\"timestamp\": 0, \"input_length\": 1, \"output_length\": 1, \"hash_ids\": [0]}\n%s\n",
			 bad[i].line);
		assert_int_equal(parse(buf, false, &t), -EINVAL);
		assert_null(t);
		if (!strstr(nkv_last_error(), "t.jsonl:2: ") || !strstr(nkv_last_error(), bad[i].msg))
			fail_msg("case %zu: error '%s' lacks 't.jsonl:2: ' or '%s'", i, nkv_last_error(), bad[i].msg);
	}
}

static void test_time_goes_back(void **st)
{
	const char *s = "{\"timestamp\": 5, \"input_length\": 1, \"output_length\": 1, \"hash_ids\": [0]}\n"
			"{\"timestamp\": 4, \"input_length\": 1, \"output_length\": 1, \"hash_ids\": [0]}\n";
	struct nkv_trace *t = NULL;

	(void)st;
	assert_int_equal(parse(s, false, &t), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "t.jsonl:2: timestamp 4 goes back"));
}

struct seen {
	int n;
	uint64_t lines[8];
};

static void on_bad(void *ctx, uint64_t line, const char *why)
{
	struct seen *s = ctx;

	(void)why;
	if (s->n < 8)
		s->lines[s->n] = line;
	s->n++;
}

static void test_skip(void **st)
{
	const char *s = "{\"timestamp\": 0, \"input_length\": 1, \"output_length\": 1, \"hash_ids\": [0]}\n"
			"garbage\n"
			"{\"timestamp\": 3, \"input_length\": 513, \"output_length\": 2, \"hash_ids\": [0, 1]}\n"
			"{\"timestamp\": 4, \"input_length\": 513, \"output_length\": 2, \"hash_ids\": [0]}\n"
			"{\"timestamp\": 5, \"input_length\": 2, \"output_length\": 3, \"hash_ids\": [8]}\n";
	struct seen seen = { 0 };
	struct nkv_trace_opts o = { .skip_bad = true, .on_bad = on_bad, .ctx = &seen };
	struct nkv_trace *t;

	(void)st;
	assert_int_equal(nkv_trace_parse(s, strlen(s), "t", &o, &t), 0);
	assert_int_equal(t->n, 3);
	assert_int_equal(t->skipped, 2);
	assert_int_equal(seen.n, 2);
	assert_int_equal(seen.lines[0], 2);
	assert_int_equal(seen.lines[1], 4);
	assert_int_equal(t->reqs[2].hash_ids[0], 8);
	assert_int_equal(t->reqs[1].hash_ids[1], 1);
	nkv_trace_free(t);
}

/* A message quotes the line (jansson's token): no control characters reach
 * the terminal, in the error or in what on_bad is given (found by fuzz_trace). */
static void keep_why(void *ctx, uint64_t line, const char *why)
{
	(void)line;
	snprintf(ctx, 256, "%s", why);
}

static void test_control_chars(void **st)
{
	const char *s = "\x1b[2J\x07\n";
	char why[256] = "";
	struct nkv_trace_opts o = { .skip_bad = true, .on_bad = keep_why, .ctx = why };
	struct nkv_trace *t = NULL;

	(void)st;
	assert_int_equal(parse(s, false, &t), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "t.jsonl:1: not JSON"));
	for (const char *c = nkv_last_error(); *c; c++)
		assert_true((unsigned char)*c >= 0x20 && *c != 0x7f);
	assert_int_equal(nkv_trace_parse(s, strlen(s), "t", &o, &t), 0);
	assert_int_equal(t->skipped, 1);
	assert_non_null(strstr(why, "not JSON"));
	for (const char *c = why; *c; c++)
		assert_true((unsigned char)*c >= 0x20 && *c != 0x7f);
	nkv_trace_free(t);
}

static void test_missing_file(void **st)
{
	struct nkv_trace *t;

	(void)st;
	assert_int_equal(nkv_trace_load("/nonexistent/x.jsonl", NULL, &t), -ENOENT);
	assert_non_null(strstr(nkv_last_error(), "/nonexistent/x.jsonl"));
	/* A directory is named as one (it used to read as "read error"). */
	assert_int_equal(nkv_trace_load("/tmp", NULL, &t), -EISDIR);
	assert_non_null(strstr(nkv_last_error(), "/tmp: is a directory"));
}

/* The repository's excerpt (tests/data/mooncake: the conversation trace's
 * first 400 lines, figures in its README). The full trace: test_trace_full.c. */
static void test_excerpt(void **st)
{
	const char *x = getenv("NKV_TRACE_EXCERPTS");
	char path[1024];
	struct nkv_trace *t;
	uint64_t blocks = 0;

	(void)st;
	assert_non_null(x);
	snprintf(path, sizeof(path), "%s/conversation_trace-first400.jsonl", x);
	assert_int_equal(nkv_trace_load(path, NULL, &t), 0);
	assert_int_equal(t->n, 400);
	for (size_t i = 0; i < t->n; i++)
		blocks += t->reqs[i].nblocks;
	assert_int_equal(blocks, 11349);
	assert_int_equal(t->reqs[t->n - 1].timestamp_ms, 141000);
	nkv_trace_free(t);
}

/* Mutated input never crashes (run under ASan in CI) and either loads or names a line. */
static void test_mutations(void **st)
{
	const char *base = "{\"timestamp\": 0, \"input_length\": 1000, \"output_length\": 5, \"hash_ids\": [7, 9]}\n"
			   "{\"timestamp\": 3, \"input_length\": 512, \"output_length\": 1, \"hash_ids\": [7]}\n";
	const char alphabet[] = "{}[]\":, 0123456789-.eE\n\\x";
	size_t len = strlen(base);
	unsigned seed = 4242;
	char buf[256];

	(void)st;
	for (int i = 0; i < 3000; i++) {
		struct nkv_trace *t = NULL;
		int ret, nmut = 1 + rand_r(&seed) % 4;
		struct nkv_trace_opts o = { .skip_bad = rand_r(&seed) % 2 };

		memcpy(buf, base, len);
		for (int k = 0; k < nmut; k++)
			buf[rand_r(&seed) % len] = alphabet[rand_r(&seed) % (sizeof(alphabet) - 1)];
		ret = nkv_trace_parse(buf, len, "m", &o, &t);
		if (ret == 0) {
			assert_true(t->n <= 2);
			for (size_t j = 0; j < t->n; j++)
				assert_int_equal(t->reqs[j].nblocks, (t->reqs[j].input_len + 511) / 512);
			nkv_trace_free(t);
		} else {
			assert_int_equal(ret, -EINVAL);
			assert_non_null(strstr(nkv_last_error(), "m:"));
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good),      cmocka_unit_test(test_bad_lines_abort),
		cmocka_unit_test(test_time_goes_back), cmocka_unit_test(test_skip),
		cmocka_unit_test(test_missing_file), cmocka_unit_test(test_excerpt),
		cmocka_unit_test(test_mutations), cmocka_unit_test(test_control_chars),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
