/* netkv trace convert (Azure, BurstGPT, ShareGPT -> Mooncake JSONL) and
 * trace sort: small hand-made inputs written here, the output read back by
 * the Mooncake reader; malformed inputs name FILE:LINE; the commands exit 2
 * on bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "netkv_sched.h"
#include "nkv_util.h"
#include "trace_convert.h"

static char dir[] = "/tmp/nkv-conv-XXXXXX";

static const char *tmp(const char *name)
{
	static char p[4][256];
	static int k;

	k = (k + 1) % 4;
	snprintf(p[k], sizeof(p[k]), "%s/%s", dir, name);
	return p[k];
}

static void put(const char *name, const char *text)
{
	FILE *f = fopen(tmp(name), "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* Convert name with o; on success the output parsed back into *t. */
static int convert(const char *name, const struct nkv_conv_opts *o, struct nkv_conv_stats *st, struct nkv_trace **t)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	int rc;

	assert_non_null(f);
	rc = nkv_trace_convert(tmp(name), o, f, st);
	fclose(f);
	if (!rc && t)
		assert_int_equal(nkv_trace_parse(buf, len, name, NULL, t), 0);
	free(buf);
	return rc;
}

static void expect_bad(const char *name, const struct nkv_conv_opts *o, const char *want)
{
	char where[300];

	assert_int_equal(convert(name, o, NULL, NULL), -EINVAL);
	snprintf(where, sizeof(where), "%s", want);
	if (!strstr(nkv_last_error(), where))
		fail_msg("%s: got '%s', want '%s'", name, nkv_last_error(), want);
}

static void test_azure(void **st)
{
	struct nkv_conv_opts o;
	struct nkv_conv_stats s;
	struct nkv_trace *t;

	(void)st;
	nkv_conv_defaults(&o);
	/* CRLF, one row out of order, one with 0 generated tokens */
	put("az.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\r\n"
		      "2023-11-16 18:15:46.6805900,374,44\r\n"
		      "2023-11-16 18:15:50.9951690,1025,109\r\n"
		      "2023-11-16 18:15:47.0000000,600,0\r\n"
		      "2023-11-16 18:15:46.7000000,2048,7\r\n");
	assert_int_equal(convert("az.csv", &o, &s, &t), 0);
	assert_int_equal(s.rows, 4);
	assert_int_equal(s.written, 3);
	assert_int_equal(s.skipped_zero, 1);
	assert_int_equal(t->n, 3);
	assert_int_equal(t->reqs[0].timestamp_ms, 0);
	assert_int_equal(t->reqs[1].timestamp_ms, 20);   /* .700 - .680 (ms, cut) */
	assert_int_equal(t->reqs[1].input_len, 2048);
	assert_int_equal(t->reqs[2].timestamp_ms, 4315);
	assert_int_equal(t->reqs[2].nblocks, 3);
	/* prefix model none: no id appears twice */
	assert_int_equal(t->pool_len, 1 + 4 + 3);
	for (size_t i = 0; i < t->pool_len; i++)
		for (size_t j = i + 1; j < t->pool_len; j++)
			assert_true(t->pool[i] != t->pool[j]);
	nkv_trace_free(t);

	/* system:1024: the first two whole blocks shared where the input holds them */
	assert_int_equal(nkv_conv_prefix_parse("system:1024", &o), 0);
	assert_int_equal(convert("az.csv", &o, &s, &t), 0);
	assert_int_equal(t->reqs[0].hash_ids[0] == 0, 0); /* 374 tokens: no whole block */
	assert_int_equal(t->reqs[1].hash_ids[0], 0);
	assert_int_equal(t->reqs[1].hash_ids[1], 1);
	assert_int_equal(t->reqs[2].hash_ids[0], 0);      /* 1025 tokens: blocks 0, 1 shared, 2 fresh */
	assert_int_equal(t->reqs[2].hash_ids[1], 1);
	assert_true(t->reqs[2].hash_ids[2] >= 2);
	nkv_trace_free(t);

	/* a day and a leap day later: the date arithmetic */
	nkv_conv_defaults(&o);
	put("days.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2024-02-28 23:59:59,1,1\n2024-03-01 00:00:00.5,1,1\n");
	assert_int_equal(convert("days.csv", &o, &s, &t), 0);
	assert_int_equal(t->reqs[1].timestamp_ms, 86400000 + 1500);
	nkv_trace_free(t);
}

static void test_azure_bad(void **st)
{
	struct nkv_conv_opts o;
	char big[NKV_CONV_MAX_LINE + 100];

	(void)st;
	nkv_conv_defaults(&o);
	put("a.csv", "");
	expect_bad("a.csv", &o, "a.csv:1: empty file");
	put("a.csv", "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n");
	expect_bad("a.csv", &o, "a.csv:1: header");
	put("a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,10,5\n2023-11-16 18:15:46,x,5\n");
	expect_bad("a.csv", &o, "a.csv:3: ContextTokens 'x'");
	put("a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-02-29 18:15:46,10,5\n");
	expect_bad("a.csv", &o, "a.csv:2: TIMESTAMP '2023-02-29 18:15:46'");
	put("a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.,10,5\n");
	expect_bad("a.csv", &o, "a.csv:2: TIMESTAMP");
	put("a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,10\n");
	expect_bad("a.csv", &o, "a.csv:2: want 3 comma-separated fields");
	put("a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,10,5,1\n");
	expect_bad("a.csv", &o, "a.csv:2: want 3");
	put("a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,16777217,5\n");
	expect_bad("a.csv", &o, "a.csv:2: 16777217 input");
	put("a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n\"2023-11-16 18:15:46\",1,5\n");
	expect_bad("a.csv", &o, "a.csv:2: quoted");
	memset(big, '1', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	{
		FILE *f = fopen(tmp("a.csv"), "w");

		fprintf(f, "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,1,1\n%s\n", big);
		fclose(f);
	}
	expect_bad("a.csv", &o, "a.csv:3: line longer than 4096 bytes");
	put("a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,1,1\n");
	assert_int_equal(nkv_trace_convert(tmp("missing.csv"), &o, stdout, NULL), -ENOENT);
}

static void test_burstgpt(void **st)
{
	struct nkv_conv_opts o;
	struct nkv_conv_stats s;
	struct nkv_trace *t;

	(void)st;
	nkv_conv_defaults(&o);
	o.from = NKV_CONV_BURSTGPT;
	put("b.csv", "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
		     "5,ChatGPT,472,18,490,Conversation log\n"
		     "45,ChatGPT,1087,0,1087,Conversation log\n"
		     "118.25,GPT-4,417,276,693,API log\n"
		     "\n"
		     "7.5,ChatGPT,2000,3,2003,API log\n");
	assert_int_equal(convert("b.csv", &o, &s, &t), 0);
	assert_int_equal(s.rows, 4);
	assert_int_equal(s.skipped_zero, 1);
	assert_int_equal(t->n, 3);
	assert_int_equal(t->reqs[0].timestamp_ms, 0);
	assert_int_equal(t->reqs[1].timestamp_ms, 2500);
	assert_int_equal(t->reqs[1].nblocks, 4);
	assert_int_equal(t->reqs[2].timestamp_ms, 113250);
	assert_int_equal(t->reqs[2].output_len, 276);
	nkv_trace_free(t);
	o.limit = 1;
	assert_int_equal(convert("b.csv", &o, &s, &t), 0);
	assert_int_equal(t->n, 1);
	nkv_trace_free(t);
	o.limit = 0;

	put("b.csv", "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n5,ChatGPT,472,18,491,API log\n");
	expect_bad("b.csv", &o, "b.csv:2: Total tokens 491");
	put("b.csv", "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n-5,ChatGPT,1,1,2,API log\n");
	expect_bad("b.csv", &o, "b.csv:2: Timestamp '-5'");
	put("b.csv", "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\nnan,ChatGPT,1,1,2,API log\n");
	expect_bad("b.csv", &o, "b.csv:2: Timestamp 'nan'");
	put("b.csv", "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n1,,1,1,2,API log\n");
	expect_bad("b.csv", &o, "b.csv:2: empty Model");
	put("b.csv", "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n1,GPT-4,1,1.5,2,API log\n");
	expect_bad("b.csv", &o, "b.csv:2: Response tokens '1.5'");
	put("b.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n");
	expect_bad("b.csv", &o, "b.csv:1: header 'TIMESTAMP,ContextTokens,GeneratedTokens' is not BurstGPT's");
	/* content ids need text: refused for CSV sources */
	o.prefix = NKV_CONV_PREFIX_CONTENT;
	expect_bad("b.csv", &o, "sharegpt only");
}

static const char sharegpt[] =
	"[\n"
	"  {\"id\": \"a\", \"conversations\": [{\"from\": \"human\", \"value\": \"hello there, how are you?\"},\n"
	"                                  {\"from\": \"gpt\", \"value\": \"fine\"}]},\n"
	"  {\"id\": \"b\", \"conversations\": [{\"from\": \"human\", \"value\": \"only one turn\"}]},\n"
	"  {\"id\": \"c\", \"conversations\": [{\"from\": \"human\", \"value\": \"hello there, how are you?\"},\n"
	"                                  {\"from\": \"gpt\", \"value\": \"\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\"}]},\n"
	"  {\"id\": \"d\", \"conversations\": [{\"from\": \"human\", \"value\": \"a different question\"},\n"
	"                                  {\"from\": \"gpt\", \"value\": \"x\"}, {\"from\": \"human\", \"value\": \"more\"}]}\n"
	"]\n";

static void test_sharegpt(void **st)
{
	struct nkv_conv_opts o;
	struct nkv_conv_stats s;
	struct nkv_trace *t, *t2;

	(void)st;
	nkv_conv_defaults(&o);
	o.from = NKV_CONV_SHAREGPT;
	o.rate = 4;
	o.seed = 7;
	put("s.json", sharegpt);
	assert_int_equal(convert("s.json", &o, &s, &t), 0);
	assert_int_equal(s.rows, 4);
	assert_int_equal(s.skipped_short, 1);
	assert_int_equal(t->n, 3);
	assert_int_equal(t->reqs[0].timestamp_ms, 0);
	assert_int_equal(t->reqs[0].input_len, 7);  /* 25 characters / 4, up */
	assert_int_equal(t->reqs[0].output_len, 1);
	assert_int_equal(t->reqs[1].output_len, 2); /* five 2-byte characters: 5 / 4, up */
	assert_true(t->reqs[2].timestamp_ms > t->reqs[1].timestamp_ms);
	assert_true(t->reqs[0].hash_ids[0] != t->reqs[1].hash_ids[0]); /* none: fresh ids */
	/* same seed, same file; another seed, other times */
	assert_int_equal(convert("s.json", &o, &s, &t2), 0);
	assert_int_equal(t2->reqs[2].timestamp_ms, t->reqs[2].timestamp_ms);
	nkv_trace_free(t2);
	o.seed = 8;
	assert_int_equal(convert("s.json", &o, &s, &t2), 0);
	assert_true(t2->reqs[2].timestamp_ms != t->reqs[2].timestamp_ms);
	nkv_trace_free(t2);
	nkv_trace_free(t);

	/* content: the same prompt, the same ids; another prompt, others */
	assert_int_equal(nkv_conv_prefix_parse("content", &o), 0);
	assert_int_equal(convert("s.json", &o, &s, &t), 0);
	assert_true(t->reqs[0].hash_ids[0] == t->reqs[1].hash_ids[0]);
	assert_true(t->reqs[0].hash_ids[0] != t->reqs[2].hash_ids[0]);
	assert_true(t->reqs[0].hash_ids[0] < (UINT64_C(1) << 53));
	nkv_trace_free(t);
}

/* Two long prompts sharing their first 2048 characters share the first id only. */
static void test_sharegpt_blocks(void **st)
{
	struct nkv_conv_opts o;
	struct nkv_trace *t;
	size_t n = 2048 + 100;
	char *a = malloc(n + 1), *doc = malloc(2 * n + 512);

	(void)st;
	memset(a, 'q', n);
	a[n] = 0;
	a[2048 + 50] = 'r';
	snprintf(doc, 2 * n + 512, "[{\"conversations\":[{\"value\":\"%s\"},{\"value\":\"ok\"}]},\n", a);
	a[2048 + 50] = 's';
	snprintf(doc + strlen(doc), n + 256, "{\"conversations\":[{\"value\":\"%s\"},{\"value\":\"ok\"}]}]", a);
	put("long.json", doc);
	nkv_conv_defaults(&o);
	o.from = NKV_CONV_SHAREGPT;
	o.prefix = NKV_CONV_PREFIX_CONTENT;
	o.rate = 1000;
	assert_int_equal(convert("long.json", &o, NULL, &t), 0);
	assert_int_equal(t->reqs[0].input_len, 537); /* 2148 / 4 */
	assert_int_equal(t->reqs[0].nblocks, 2);
	assert_true(t->reqs[0].hash_ids[0] == t->reqs[1].hash_ids[0]);
	assert_true(t->reqs[0].hash_ids[1] != t->reqs[1].hash_ids[1]);
	nkv_trace_free(t);
	free(a);
	free(doc);
}

static void test_sharegpt_bad(void **st)
{
	struct nkv_conv_opts o;

	(void)st;
	nkv_conv_defaults(&o);
	o.from = NKV_CONV_SHAREGPT;
	put("x.json", "{\"id\": 1}");
	expect_bad("x.json", &o, "x.json:1: want a JSON array");
	put("x.json", "[{\"id\": \"a\", \"conversations\": []},\n\n{\"id\": \"b\", oops}]");
	expect_bad("x.json", &o, "x.json:3: entry 1:");
	put("x.json", "[\n{\"id\": \"a\"}]");
	expect_bad("x.json", &o, "x.json:2: entry 0: \"conversations\" missing");
	put("x.json", "[\n\n 7]");
	expect_bad("x.json", &o, "x.json:3: entry 0:"); /* a bare 7: jansson wants an object or array */
	put("x.json", "[{\"conversations\": [{\"value\": \"x\"}, {\"from\": \"gpt\"}]}]");
	expect_bad("x.json", &o, "x.json:1: entry 0: conversations[1] needs a string \"value\"");
	put("x.json", "[{\"conversations\": [{\"value\": \"x\"}, {\"value\": \"y\"}]}\n{\"conversations\": []}]");
	expect_bad("x.json", &o, "x.json:2: want ',' or ']' after entry 0");
	put("x.json", "[{\"conversations\": [{\"value\": \"x\"}, {\"value\": \"y\"}]}]\n]");
	expect_bad("x.json", &o, "x.json:2: text after the array");
	put("x.json", "[{\"conversations\": [{\"value\": \"x\"}, {\"value\": \"y\"}], \"id\": 1, \"id\": 2}]");
	expect_bad("x.json", &o, "x.json:1: entry 0: duplicate");
	o.rate = 0;
	expect_bad("x.json", &o, "rate 0");
}

static void test_sort(void **st)
{
	char *buf = NULL;
	size_t len = 0, n = 0;
	FILE *f;
	struct nkv_trace *t;

	(void)st;
	put("u.jsonl", "{\"timestamp\": 5, \"input_length\": 1, \"output_length\": 1, \"hash_ids\": [1]}\n"
		       "\n"
		       "{\"timestamp\": 2, \"input_length\": 1, \"output_length\": 2, \"hash_ids\": [2]}\r\n"
		       "{\"timestamp\": 5, \"input_length\": 1, \"output_length\": 3, \"hash_ids\": [3]}\n"
		       "{\"timestamp\": 1.0, \"input_length\": 1, \"output_length\": 4, \"hash_ids\": [4]}");
	/* unsorted: the reader refuses it and says how to fix it */
	assert_int_equal(nkv_trace_load(tmp("u.jsonl"), NULL, &t), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "netkv trace sort"));
	f = open_memstream(&buf, &len);
	assert_int_equal(nkv_trace_sort(tmp("u.jsonl"), f, &n), 0);
	fclose(f);
	assert_int_equal(n, 4);
	assert_int_equal(nkv_trace_parse(buf, len, "sorted", NULL, &t), 0);
	assert_int_equal(t->n, 4);
	assert_int_equal(t->reqs[0].output_len, 4);
	assert_int_equal(t->reqs[1].output_len, 2);
	assert_int_equal(t->reqs[2].output_len, 1); /* equal times keep their order */
	assert_int_equal(t->reqs[3].output_len, 3);
	nkv_trace_free(t);
	free(buf);

	f = fopen("/dev/null", "w");
	put("u.jsonl", "{\"timestamp\": 5}\n{\"timestamp\": -2}\n");
	assert_int_equal(nkv_trace_sort(tmp("u.jsonl"), f, &n), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "u.jsonl:2: timestamp must be"));
	put("u.jsonl", "{\"timestamp\": 5}\n\n[1]\n");
	assert_int_equal(nkv_trace_sort(tmp("u.jsonl"), f, &n), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "u.jsonl:3: not a JSON object"));
	put("u.jsonl", "{\"timestamp\": 5}\n{\"input_length\": 3}\n");
	assert_int_equal(nkv_trace_sort(tmp("u.jsonl"), f, &n), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "u.jsonl:2: timestamp missing"));
	put("u.jsonl", "{\"timestamp\": 5.5}\n");
	assert_int_equal(nkv_trace_sort(tmp("u.jsonl"), f, &n), -EINVAL);
	put("u.jsonl", "{\"timestamp\": 5\n");
	assert_int_equal(nkv_trace_sort(tmp("u.jsonl"), f, &n), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "u.jsonl:1: not JSON"));
	fclose(f);
}

/* The commands: exit 0 on success, 2 on bad input or usage, a file written. */
static int sh(const char *cmd)
{
	int s = system(cmd);

	return WIFEXITED(s) ? WEXITSTATUS(s) : -1;
}

static void test_cli(void **st)
{
	const char *b = getenv("NKV_BUILD");
	char cmd[2048];
	struct nkv_trace *t;

	(void)st;
	if (!b)
		skip();
	put("b.csv", "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
		     "5,ChatGPT,600,18,618,Conversation log\n3,GPT-4,1500,7,1507,API log\n");
	snprintf(cmd, sizeof(cmd), "%s/netkv trace convert --from burstgpt --prefix-model system:512 -o %s %s 2>%s", b,
		 tmp("b.jsonl"), tmp("b.csv"), tmp("err"));
	assert_int_equal(sh(cmd), 0);
	assert_int_equal(nkv_trace_load(tmp("b.jsonl"), NULL, &t), 0);
	assert_int_equal(t->n, 2);
	assert_int_equal(t->reqs[0].hash_ids[0], t->reqs[1].hash_ids[0]);
	nkv_trace_free(t);
	snprintf(cmd, sizeof(cmd), "grep -q '2 requests written of 2 read' %s", tmp("err"));
	assert_int_equal(sh(cmd), 0);
	/* bad input: exit 2, FILE:LINE, and no half-written output left */
	put("bad.csv", "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n5,ChatGPT,x,1,1,API log\n");
	snprintf(cmd, sizeof(cmd), "%s/netkv trace convert --from burstgpt -o %s %s 2>%s", b, tmp("bad.jsonl"),
		 tmp("bad.csv"), tmp("err"));
	assert_int_equal(sh(cmd), 2);
	assert_int_not_equal(access(tmp("bad.jsonl"), F_OK), 0);
	snprintf(cmd, sizeof(cmd), "grep -q 'bad.csv:2: Request tokens' %s", tmp("err"));
	assert_int_equal(sh(cmd), 0);
	static const char *const usage[] = {
		"trace convert x.csv",                              /* no --from */
		"trace convert --from parquet x.csv",
		"trace convert --from azure --prefix-model lru x.csv",
		"trace convert --from azure --prefix-model system:0 x.csv",
		"trace convert --from azure --prefix-model content x.csv",
		"trace convert --from sharegpt --rate 0 x.json",
		"trace convert --from sharegpt --seed 0 x.json",
		"trace convert --from azure a.csv b.csv",
		"trace sort",
	};
	for (size_t i = 0; i < sizeof(usage) / sizeof(usage[0]); i++) {
		snprintf(cmd, sizeof(cmd), "%s/netkv %s 2>/dev/null", b, usage[i]);
		if (sh(cmd) != 2)
			fail_msg("netkv %s: want exit 2", usage[i]);
	}
	put("u.jsonl", "{\"timestamp\": 9, \"input_length\": 1, \"output_length\": 1, \"hash_ids\": [1]}\n"
		       "{\"timestamp\": 3, \"input_length\": 1, \"output_length\": 1, \"hash_ids\": [2]}\n");
	snprintf(cmd, sizeof(cmd), "%s/netkv trace sort -o %s %s 2>/dev/null && %s/netkv trace stats %s >/dev/null", b,
		 tmp("s.jsonl"), tmp("u.jsonl"), b, tmp("s.jsonl"));
	assert_int_equal(sh(cmd), 0);
	snprintf(cmd, sizeof(cmd), "%s/netkv trace sort -o %s %s 2>/dev/null", b, tmp("u.jsonl"), tmp("u.jsonl"));
	assert_int_equal(sh(cmd), 2);
	snprintf(cmd, sizeof(cmd), "%s/netkv trace convert --help | grep -q 'prefix-model'", b);
	assert_int_equal(sh(cmd), 0);
}

static int setup(void **st)
{
	(void)st;
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **st)
{
	char cmd[300];

	(void)st;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_azure),    cmocka_unit_test(test_azure_bad),       cmocka_unit_test(test_burstgpt),
		cmocka_unit_test(test_sharegpt), cmocka_unit_test(test_sharegpt_blocks), cmocka_unit_test(test_sharegpt_bad),
		cmocka_unit_test(test_sort),     cmocka_unit_test(test_cli),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
