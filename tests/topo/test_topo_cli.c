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
#include <fcntl.h>
#include <jansson.h>
#include <unistd.h>

#include "netkv_topo.h"
#include "topo_cli.h"

#define CALL(fn, ...) call(fn, (char *[]){ __VA_ARGS__, NULL })

static int call(int (*fn)(int, char **), char **argv)
{
	int argc = 0;
	while (argv[argc])
		argc++;
	fflush(stdout);
	return fn(argc, argv);
}

/* Run a command with stdout into a file; returns its exit code, *out the text (caller frees). */
static int capture(int (*fn)(int, char **), char **argv, char **out)
{
	char path[] = "/tmp/nkv-topo-out-XXXXXX";
	int fd = mkstemp(path), saved, rc;
	FILE *f;
	long n;

	assert_true(fd >= 0);
	fflush(stdout);
	saved = dup(1);
	dup2(fd, 1);
	rc = call(fn, argv);
	fflush(stdout);
	dup2(saved, 1);
	close(saved);
	close(fd);
	f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	*out = calloc(1, (size_t)n + 1);
	assert_int_equal(fread(*out, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	unlink(path);
	return rc;
}

static uint32_t nkv_topo_links_of_file(const char *path)
{
	struct nkv_topo *t = NULL;
	uint32_t n;

	assert_int_equal(nkv_topo_load(path, &t), 0);
	n = nkv_topo_links(t);
	nkv_topo_free(t);
	return n;
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
	/* What show prints is the topology's figures, not only exit 0. */
	char *text;
	json_t *doc, *tier;
	assert_int_equal(capture(nkv_cmd_topo_show, (char *[]){ "topo show", path, NULL }, &text), 0);
	assert_non_null(strstr(text, "topology fat-tree-128: 16 hosts, 128 GPUs"));
	free(text);
	assert_int_equal(capture(nkv_cmd_topo_show, (char *[]){ "topo show", "--json", "--links", path, NULL }, &text), 0);
	doc = json_loads(text, 0, NULL);
	assert_non_null(doc);
	assert_string_equal(json_string_value(json_object_get(doc, "name")), "fat-tree-128");
	assert_int_equal(json_integer_value(json_object_get(doc, "instances")), 128);
	tier = json_array_get(json_object_get(doc, "tiers"), 3);
	assert_int_equal(json_integer_value(json_object_get(tier, "path_links")), 6);
	assert_true(fabs(json_number_value(json_object_get(tier, "nominal_Bps")) - 6.25e9) < 1);
	assert_true(fabs(json_number_value(json_object_get(tier, "loaded_Bps")) - 6.25e9) < 1);
	assert_true(fabs(json_number_value(json_object_get(tier, "idle_Bps")) - 50e9) < 1);
	assert_int_equal(json_array_size(json_object_get(doc, "links")), nkv_topo_links_of_file(path));
	json_decref(doc);
	free(text);

	/* The rate check of fabric up comes before anything is made (so this needs no root):
	 * 400 Gb/s / 1e308 is no rate tc can shape. */
	assert_int_equal(CALL(nkv_cmd_fabric_up, "fabric up", "--topo", path, "--scale", "1e308", "--prefix", "nkvclitest-"), 1);
	assert_int_equal(CALL(nkv_cmd_fabric_up, "fabric up", "--topo", path, "extra"), 2);
	unlink(path);

	/* Inputs that used to slip through or take minutes: */
	assert_int_equal(CALL(nkv_cmd_topo_gen, "topo gen", "--preset", "fat-tree", "--gpus", "\t64"), 2);
	assert_int_equal(CALL(nkv_cmd_topo_gen, "topo gen", "--preset", "fat-tree", "--gpus", " 64"), 2);
	/* 131072 hosts: more than a topology file may hold (the reader refused what gen wrote) */
	assert_int_equal(CALL(nkv_cmd_topo_gen, "topo gen", "--preset", "fat-tree", "--gpus", "1048576"), 1);
	assert_int_equal(CALL(nkv_cmd_topo_gen, "topo gen", "--preset", "fat-tree", "--gpus", "128", "--gpus-per-host",
			      "128", "--nics-per-host", "128"), 1);
	/* 1e308 Gb/s is inf B/s */
	assert_int_equal(CALL(nkv_cmd_topo_gen, "topo gen", "--preset", "fat-tree", "--nic-gbps", "1e308", "-o", "/dev/null"), 1);
	assert_int_equal(CALL(nkv_cmd_topo_gen, "topo gen", "--preset", "fat-tree", "--hop-us", "1e300", "-o", "/dev/null"), 1);
	assert_int_equal(CALL(nkv_cmd_topo_gen, "topo gen", "--preset", "fat-tree", "--oversub", "nan"), 2);
	assert_int_equal(CALL(nkv_cmd_topo_show, "topo show", "/tmp"), 1);

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
	assert_int_equal(CALL(nkv_cmd_fabric_up, "fabric up", "--help"), 0);
	/* `netkv fabric sideways`: the command table, tests/CMakeLists.txt (test_cli_*). */
	assert_int_equal(CALL(nkv_cmd_fabric_up, "fabric up"), 2);
	assert_int_equal(CALL(nkv_cmd_fabric_down, "fabric down", "--prefix", "../etc"), 2);
	assert_int_equal(CALL(nkv_cmd_fabric_exec, "fabric exec", "h0"), 2);
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
