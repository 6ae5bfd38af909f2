/*
 * The command table mechanism (tools/util/cli.c): lookup, dispatch into a
 * group's subcommand with argv[0] its full name, the default action of a
 * group, "did you mean" for typos, and the shared option parsers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <math.h>
#include <string.h>

#include "nkv_cli.h"

static char seen[64];
static int seen_argc;

static int record(int argc, char **argv)
{
	snprintf(seen, sizeof(seen), "%s", argv[0]);
	seen_argc = argc;
	return 7;
}

static const struct nkv_cli_cmd fabric[] = {
	{ "up", record, "up", NULL }, { "down", record, "down", NULL }, { "status", record, "status", NULL },
	{ NULL, NULL, NULL, NULL },
};
static const struct nkv_cli_cmd demo[] = { { "transfer", record, "t", NULL }, { NULL, NULL, NULL, NULL } };
static const struct nkv_cli_cmd table[] = {
	{ "fabric", NULL, "fabric", fabric },
	{ "demo", record, "demo", demo },
	{ "agent", record, "agent", NULL },
	{ NULL, NULL, NULL, NULL },
};

#define DISPATCH(...) dispatch((char *[]){ "netkv", __VA_ARGS__, NULL })

static int dispatch(char **argv)
{
	int argc = 0;

	while (argv[argc])
		argc++;
	seen[0] = '\0';
	seen_argc = -1;
	return nkv_cli_dispatch(table, argc, argv);
}

static void distance(void **state)
{
	assert_int_equal(nkv_cli_edit_distance("fabric", "fabric"), 0);
	assert_int_equal(nkv_cli_edit_distance("fabirc", "fabric"), 2);
	assert_int_equal(nkv_cli_edit_distance("", "sim"), 3);
	assert_int_equal(nkv_cli_edit_distance("kitten", "sitting"), 3);
	assert_int_equal(nkv_cli_edit_distance("trasnfer", "transfer"), 2);
}

static void suggest(void **state)
{
	assert_string_equal(nkv_cli_suggest(table, "fabirc"), "fabric");
	assert_string_equal(nkv_cli_suggest(table, "agnet"), "agent");
	assert_string_equal(nkv_cli_suggest(table, "dmo"), "demo");
	assert_string_equal(nkv_cli_suggest(fabric, "stauts"), "status");
	assert_null(nkv_cli_suggest(table, "replay"));
	assert_null(nkv_cli_suggest(table, "zz"));      /* the whole word wrong */
	assert_null(nkv_cli_suggest(fabric, "sideways"));
}

static void find(void **state)
{
	assert_ptr_equal(nkv_cli_find(table, "agent"), &table[2]);
	assert_ptr_equal(nkv_cli_find(fabric, "down"), &fabric[1]);
	assert_null(nkv_cli_find(table, "agen"));
	assert_null(nkv_cli_find(table, "up")); /* subcommands are not top-level names */
}

static void dispatching(void **state)
{
	/* A subcommand gets argv[0] = its full name and the arguments after it. */
	assert_int_equal(DISPATCH("fabric", "up", "--topo", "x"), 7);
	assert_string_equal(seen, "fabric up");
	assert_int_equal(seen_argc, 3);
	/* A leaf keeps its own name. */
	assert_int_equal(DISPATCH("agent", "--help"), 7);
	assert_string_equal(seen, "agent");
	assert_int_equal(seen_argc, 2);
	/* A group's default action: no word, or options, or its own --help. */
	assert_int_equal(DISPATCH("demo"), 7);
	assert_string_equal(seen, "demo");
	assert_int_equal(DISPATCH("demo", "--json"), 7);
	assert_string_equal(seen, "demo");
	assert_int_equal(DISPATCH("demo", "transfer", "-n", "2"), 7);
	assert_string_equal(seen, "demo transfer");
	assert_int_equal(seen_argc, 3);
	/* A typo of a subcommand is not handed to the default action. */
	assert_int_equal(DISPATCH("demo", "trasnfer"), 2);
	assert_string_equal(seen, "");
	/* Unknown words, a group without its needed subcommand, a group's --help. */
	assert_int_equal(DISPATCH("fabirc"), 2);
	assert_int_equal(DISPATCH("fabric"), 2);
	assert_int_equal(DISPATCH("fabric", "sideways"), 2);
	assert_int_equal(DISPATCH("fabric", "--help"), 0);
	assert_int_equal(DISPATCH("fabric", "-h"), 0);
	assert_string_equal(seen, "");
}

static void numbers(void **state)
{
	double d;
	uint32_t u;
	uint64_t v;

	assert_int_equal(nkv_cli_double("x", "--rate", "2.5", 0, 10, &d), 0);
	assert_true(d == 2.5);
	assert_int_equal(nkv_cli_double("x", "--rate", "0", 0, 10, &d), 0);
	assert_int_equal(nkv_cli_double("x", "--rate", "10.5", 0, 10, &d), -EINVAL);
	assert_int_equal(nkv_cli_double("x", "--rate", "nan", 0, INFINITY, &d), -EINVAL);
	assert_int_equal(nkv_cli_double("x", "--rate", "inf", 0, INFINITY, &d), -EINVAL);
	assert_int_equal(nkv_cli_double("x", "--rate", "1x", 0, 10, &d), -EINVAL);
	assert_int_equal(nkv_cli_positive("x", "--scale", "0", INFINITY, &d), -EINVAL);
	assert_int_equal(nkv_cli_positive("x", "--scale", "1e-9", INFINITY, &d), 0);
	assert_int_equal(nkv_cli_positive("x", "--scale", "3", 2, &d), -EINVAL);
	assert_int_equal(nkv_cli_u32("x", "-n", "5", 1, 10, &u), 0);
	assert_int_equal(u, 5);
	assert_int_equal(nkv_cli_u32("x", "-n", "0", 1, 10, &u), -EINVAL);
	assert_int_equal(nkv_cli_u32("x", "-n", "11", 1, 10, &u), -EINVAL);
	assert_int_equal(nkv_cli_u32("x", "-n", "-1", 0, UINT32_MAX, &u), -EINVAL);
	assert_int_equal(nkv_cli_u32("x", "-n", "4294967295", 0, UINT32_MAX, &u), 0);
	assert_int_equal(nkv_cli_u32("x", "-n", "4294967296", 0, UINT32_MAX, &u), -EINVAL);
	assert_int_equal(nkv_cli_u64("x", "-n", "18446744073709551615", 0, UINT64_MAX, &v), 0);
	assert_int_equal(nkv_cli_u64("x", "-n", " 1", 0, UINT64_MAX, &v), -EINVAL);
}

static void options(void **state)
{
	int verbs = -1;
	uint32_t q;
	double d;
	const char *s = NULL;

	assert_int_equal(nkv_cli_backend("x", "tcp", &verbs), 0);
	assert_int_equal(verbs, 0);
	assert_int_equal(nkv_cli_backend("x", "verbs", &verbs), 0);
	assert_int_equal(verbs, 1);
	assert_int_equal(nkv_cli_backend("x", "rdma", &verbs), -EINVAL);
	assert_int_equal(nkv_cli_streams("x", "64", &q), 0);
	assert_int_equal(q, 64);
	assert_int_equal(nkv_cli_streams("x", "0", &q), -EINVAL);
	assert_int_equal(nkv_cli_streams("x", "65", &q), -EINVAL);
	assert_int_equal(nkv_cli_time_scale("x", "0.1", &d), 0);
	assert_true(d == 0.1);
	assert_int_equal(nkv_cli_time_scale("x", "0", &d), -EINVAL);
	assert_int_equal(nkv_cli_slo("x", "--ttft-slo", "2", &d), 0);
	assert_int_equal(nkv_cli_slo("x", "--ttft-slo", "-1", &d), -EINVAL);
	assert_int_equal(nkv_cli_model("x", "qwen2.5-7b", &s), 0);
	assert_string_equal(s, "qwen2.5-7b");
	assert_int_equal(nkv_cli_model("x", "", &s), -EINVAL);
	assert_int_equal(nkv_cli_perf("x", "llama3-8b/h100", &s), 0);
	assert_int_equal(nkv_cli_perf("x", "llama3-8b", &s), 0);
	assert_int_equal(nkv_cli_perf("x", "llama3-8b/", &s), -EINVAL);
	assert_int_equal(nkv_cli_perf("x", "/h100", &s), -EINVAL);
	assert_int_equal(nkv_cli_perf("x", "a/b/c", &s), -EINVAL);
}

/* "did you mean" for options names the first spelling (the one --help shows), not a hidden alias. */
static void option_suggest(void **state)
{
	static const struct option lo[] = {
		{ "slo-ttft", required_argument, 0, 'T' }, { "slo-tbt", required_argument, 0, 'B' },
		{ "output", required_argument, 0, 'o' },   { "json", no_argument, 0, 'j' },
		{ "ttft-slo", required_argument, 0, 'T' }, { "dir", required_argument, 0, 'o' }, /* aliases */
		{ 0, 0, 0, 0 },
	};

	assert_string_equal(nkv_cli_suggest_option(lo, "slo-tfft"), "slo-ttft");
	assert_string_equal(nkv_cli_suggest_option(lo, "ttft-sol"), "slo-ttft"); /* nearest is the alias */
	assert_string_equal(nkv_cli_suggest_option(lo, "dri"), "output");
	assert_string_equal(nkv_cli_suggest_option(lo, "jsno"), "json");
	assert_null(nkv_cli_suggest_option(lo, "zz"));
	assert_null(nkv_cli_suggest_option(lo, "completely-else"));
}

/* getopt through the wrapper: options still parse, an unknown one is '?', a
 * missing value '?', with or without a leading '+' in shortopts. */
static void getopt_wrapper(void **state)
{
	static const struct option lo[] = { { "trace", required_argument, 0, 't' }, { "json", no_argument, 0, 'j' },
					    { 0, 0, 0, 0 } };
	char *ok[] = { "sim run", "--trace", "f", "-j", "x", NULL };
	char *bad[] = { "sim run", "--tarce", "f", NULL };
	char *novalue[] = { "sim run", "--trace", NULL };

	optind = 1;
	assert_int_equal(nkv_cli_getopt(5, ok, "ht:j", lo, NULL), 't');
	assert_string_equal(optarg, "f");
	assert_int_equal(nkv_cli_getopt(5, ok, "ht:j", lo, NULL), 'j');
	assert_int_equal(nkv_cli_getopt(5, ok, "ht:j", lo, NULL), -1);
	assert_string_equal(ok[optind], "x");
	optind = 1;
	assert_int_equal(nkv_cli_getopt(3, bad, "+h", lo, NULL), '?');
	optind = 1;
	assert_int_equal(nkv_cli_getopt(2, novalue, "h", lo, NULL), '?');
}

static void cmdline(void **state)
{
	char *argv[] = { "netkv", "demo", "--policies", "rr,cla*", "--trace", "a b", "it's", "", NULL };

	nkv_cli_set_cmdline(8, argv);
	assert_string_equal(nkv_cli_cmdline(), "netkv demo --policies 'rr,cla*' --trace 'a b' 'it'\\''s' ''");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(distance), cmocka_unit_test(suggest), cmocka_unit_test(find),
		cmocka_unit_test(dispatching), cmocka_unit_test(numbers), cmocka_unit_test(options),
		cmocka_unit_test(option_suggest), cmocka_unit_test(getopt_wrapper), cmocka_unit_test(cmdline),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
