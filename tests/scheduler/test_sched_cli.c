/*
 * netkv bench sched as a user calls it: bad flags are usage errors (exit 2)
 * that name the flag, before any trace is read or any cluster is built.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "sched_cli.h"
#include "nkv_util.h"

#define BENCH(...) call((char *[]){ "bench sched", __VA_ARGS__, NULL })

static int call(char **argv)
{
	int argc = 0;

	while (argv[argc])
		argc++;
	return nkv_cmd_bench_sched(argc, argv);
}

static void bad_flags(void **st)
{
	char longlist[400];

	(void)st;
	assert_int_equal(BENCH("--sizes", "0"), 2);
	assert_int_equal(BENCH("--sizes", ","), 2);
	/* 16384 decode instances took 4 GB and 90 s, 65536 would not fit: capped */
	assert_int_equal(BENCH("--sizes", "16384"), 2);
	assert_non_null(strstr(nkv_last_error(), "1..4096"));
	/* a list longer than the parse buffer used to be cut silently ("...,1024" -> "...,10") */
	memset(longlist, 0, sizeof(longlist));
	for (int i = 0; i < 16; i++)
		strcat(longlist, "0000000000000016,");
	strcat(longlist, "1024");
	assert_int_equal(BENCH("--sizes", longlist), 2);
	assert_non_null(strstr(nkv_last_error(), "longer than"));
	assert_int_equal(BENCH("--policy", "nope"), 2);
	assert_int_equal(BENCH("--policy", ""), 2);
	assert_int_equal(BENCH("--decisions", "0"), 2);
	assert_int_equal(BENCH("--rounds", "101"), 2);
	assert_int_equal(BENCH("--warm", "-1"), 2);
	assert_int_equal(BENCH("--warm", "\t5"), 2);
	assert_int_equal(BENCH("--seed", "18446744073709551616"), 2);
	assert_int_equal(BENCH("--model", "nope"), 2);
	assert_int_equal(BENCH("extra"), 2);
	assert_int_equal(BENCH("--help"), 0);
	/* a trace that is a directory: failure (1) with its name, not a usage error */
	assert_int_equal(BENCH("--trace", "/tmp", "--sizes", "16"), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(bad_flags),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
