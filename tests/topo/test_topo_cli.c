/*
 * The topo commands as a user calls them: exit codes (0 ok, 1 failure,
 * 2 usage) and that `topo gen` writes what the generator computes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "netkv_commands.h"
#include "netkv_topo.h"

#define CALL(fn, ...) call(fn, (char *[]){ __VA_ARGS__, NULL })

static int call(int (*fn)(int, char **), char **argv)
{
	int argc = 0;
	while (argv[argc])
		argc++;
	fflush(stdout);
	return fn(argc, argv);
}

static void gen_and_show(void **state)
{
	char path[] = "/tmp/nkv-topo-cli-XXXXXX";
	int fd = mkstemp(path);
	struct nkv_topo *t = NULL;

	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(CALL(nkv_cmd_topo_gen, "topo gen", "--preset", "fat-tree", "--gpus", "128", "--oversub-leaf",
			      "4:1", "--oversub-spine", "2:1", "-o", path), 0);
	assert_int_equal(nkv_topo_load(path, &t), 0);
	assert_int_equal(nkv_topo_instances(t), 128);
	assert_true(fabs(nkv_topo_tier_bw(t, 2) - 12.5e9) < 1);   /* 50 GB/s / 4 */
	assert_true(fabs(nkv_topo_tier_bw(t, 3) - 6.25e9) < 1);   /* and / 2 more */
	nkv_topo_free(t);
	assert_int_equal(CALL(nkv_cmd_topo_show, "topo show", path), 0);
	assert_int_equal(CALL(nkv_cmd_topo_show, "topo show", "--json", "--links", path), 0);
	unlink(path);

	/* usage errors: 2; bad inputs: 1 */
	assert_int_equal(CALL(nkv_cmd_topo_gen, "topo gen", "--gpus", "64"), 2);             /* no preset */
	assert_int_equal(CALL(nkv_cmd_topo_gen, "topo gen", "--preset", "torus"), 2);
	assert_int_equal(CALL(nkv_cmd_topo_gen, "topo gen", "--preset", "fat-tree", "--oversub", "1:2"), 2);
	assert_int_equal(CALL(nkv_cmd_topo_gen, "topo gen", "--preset", "fat-tree", "--gpus", "6x"), 2);
	assert_int_equal(CALL(nkv_cmd_topo_gen, "topo gen", "--preset", "fat-tree", "--gpus", "60", "-o", "/dev/null"), 1);
	assert_int_equal(CALL(nkv_cmd_topo_show, "topo show"), 2);
	assert_int_equal(CALL(nkv_cmd_topo_show, "topo show", "/nonexistent.json"), 1);
	assert_int_equal(CALL(nkv_cmd_topo_gen, "topo gen", "--help"), 0);
	assert_int_equal(CALL(nkv_cmd_topo_show, "topo show", "--help"), 0);
	assert_int_equal(CALL(nkv_cmd_topo_host, "topo host", "--help"), 0);
	assert_int_equal(CALL(nkv_cmd_fabric, "fabric", "--help"), 0);
	assert_int_equal(CALL(nkv_cmd_fabric, "fabric", "sideways"), 2);
	assert_int_equal(CALL(nkv_cmd_fabric, "fabric", "up"), 2);
	assert_int_equal(CALL(nkv_cmd_fabric, "fabric", "down", "--prefix", "../etc"), 2);
	assert_int_equal(CALL(nkv_cmd_fabric, "fabric", "exec", "h0"), 2);
}

static void host(void **state)
{
	/* no GPU and no RDMA NIC on a CI box is fine: exit 0 */
	assert_int_equal(CALL(nkv_cmd_topo_host, "topo host"), 0);
	assert_int_equal(CALL(nkv_cmd_topo_host, "topo host", "--json"), 0);
	assert_int_equal(CALL(nkv_cmd_topo_host, "topo host", "extra"), 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(gen_and_show),
		cmocka_unit_test(host),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
