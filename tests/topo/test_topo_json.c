/*
 * Topology files: round trip of the presets and the parser's error cases,
 * each checked for the message a user would need.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netkv_topo.h"
#include "nkv_util.h"

static void round_trip(void **state)
{
	struct nkv_fat_tree_params p;
	struct nkv_topo *a = NULL, *b = NULL;
	char *s, *s2;

	nkv_fat_tree_defaults(&p);
	p.oversub_leaf = 2;
	p.oversub_spine = 4;
	assert_int_equal(nkv_topo_fat_tree(&p, &a), 0);
	s = nkv_topo_dump_json(a);
	assert_non_null(s);
	assert_int_equal(nkv_topo_parse(s, strlen(s), &b), 0);
	assert_int_equal(nkv_topo_instances(b), 64);
	assert_int_equal(nkv_topo_links(b), nkv_topo_links(a));
	for (uint32_t i = 0; i < 64; i += 7)
		for (uint32_t j = 1; j < 64; j += 5) {
			if (i == j)
				continue;
			assert_int_equal(nkv_topo_tier(a, i, j), nkv_topo_tier(b, i, j));
			assert_true(fabs(nkv_topo_path_bw_loaded(a, i, j) - nkv_topo_path_bw_loaded(b, i, j)) < 1);
			assert_true(fabs(nkv_topo_path_latency(a, i, j) - nkv_topo_path_latency(b, i, j)) < 1e-12);
		}
	assert_true(fabs(nkv_topo_tier_bw(b, 3) - 6.25e9) < 1);
	s2 = nkv_topo_dump_json(b);
	assert_string_equal(s, s2); /* written form is stable */
	free(s);
	free(s2);
	nkv_topo_free(a);
	nkv_topo_free(b);
}

/* A multipath tree survives the file: the declaration, the member links
 * and every flow's ECMP path. Per-link speeds become the bundles' uplinks:
 * 4 spines x 200 Gb/s per leaf, 4 x 2 x 100 Gb/s per pod. */
static void round_trip_ecmp(void **state)
{
	struct nkv_fat_tree_params p;
	struct nkv_topo *a = NULL, *b = NULL;
	uint32_t la[NKV_MAX_PATH], lb[NKV_MAX_PATH], S, C;
	struct nkv_link_info li;
	char *s;

	(void)state;
	nkv_fat_tree_defaults(&p);
	p.spines_per_pod = 4;
	p.cores_per_spine = 2;
	p.leaf_link_gbps = 200;
	p.spine_link_gbps = 100;
	assert_int_equal(nkv_topo_fat_tree(&p, &a), 0);
	s = nkv_topo_dump_json(a);
	assert_non_null(strstr(s, "\"spines_per_pod\": 4"));
	assert_int_equal(nkv_topo_parse(s, strlen(s), &b), 0);
	assert_int_equal(nkv_topo_ecmp(b, &S, &C), 1);
	assert_int_equal(S, 4);
	assert_int_equal(C, 2);
	assert_int_equal(nkv_topo_links(b), nkv_topo_links(a));
	for (uint32_t i = 0; i < 64; i += 3)
		for (uint32_t j = 1; j < 64; j += 7)
			for (uint64_t k = 0; k < 4; k++) {
				int n = nkv_topo_path_ecmp(a, i, j, k, la);
				assert_int_equal(nkv_topo_path_ecmp(b, i, j, k, lb), n);
				assert_memory_equal(la, lb, (size_t)n * sizeof(la[0]));
			}
	/* h0g0 -> h4g0 crosses the core: NIC 50, leaf link 25, spine link 12.5 GB/s. */
	int n = nkv_topo_path_ecmp(b, 0, 32, 9, la);
	assert_int_equal(n, 6);
	double want[6] = { 50e9, 25e9, 12.5e9, 12.5e9, 25e9, 50e9 };
	for (int i = 0; i < n; i++) {
		assert_int_equal(nkv_topo_link(b, la[i], &li), 0);
		assert_true(fabs(li.bytes_per_s - want[i]) < 1);
	}
	free(s);
	nkv_topo_free(a);
	nkv_topo_free(b);
	/* cores without spines, spines beyond 64, a link speed below 1 Mb/s */
	nkv_fat_tree_defaults(&p);
	p.cores_per_spine = 2;
	assert_int_equal(nkv_topo_fat_tree(&p, &a), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "cores only with spines"));
	p.spines_per_pod = 65;
	assert_int_equal(nkv_topo_fat_tree(&p, &a), -EINVAL);
	nkv_fat_tree_defaults(&p);
	p.leaf_link_gbps = 1e-9;
	assert_int_equal(nkv_topo_fat_tree(&p, &a), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "link speeds"));
}

static void files(void **state)
{
	struct nkv_topo *t = NULL;
	char path[512];
	int h3;

	snprintf(path, sizeof(path), "%s/corpus/tree4.json", NKV_TEST_DIR);
	assert_int_equal(nkv_topo_load(path, &t), 0);
	assert_string_equal(nkv_topo_name(t), "tree4");
	h3 = nkv_topo_find(t, "h3g0");
	assert_int_equal(h3, 3);
	assert_int_equal(nkv_topo_tier(t, 0, 1), NKV_TIER_LEAF);
	assert_int_equal(nkv_topo_tier(t, 0, 3), NKV_TIER_POD);
	/* leaf uplink: 2 x 400 / 4 = 200 Gb/s = 25 GB/s, 2 GPUs behind it */
	assert_true(fabs(nkv_topo_path_bw(t, 0, 3) - 25e9) < 1);
	assert_true(fabs(nkv_topo_path_bw(t, 0, 1) - 50e9) < 1);
	assert_true(fabs(nkv_topo_path_bw_loaded(t, 0, 3) - 12.5e9) < 1);
	/* 250 us per link: 2 links same leaf, 4 across */
	assert_true(fabs(nkv_topo_path_latency(t, 0, 1) - 500e-6) < 1e-12);
	assert_true(fabs(nkv_topo_path_latency(t, 0, 2) - 1000e-6) < 1e-12);
	assert_true(fabs(nkv_topo_tier_bw(t, 3)) < 1e-9); /* no core */
	nkv_topo_free(t);

	snprintf(path, sizeof(path), "%s/corpus/two_nics.json", NKV_TEST_DIR);
	assert_int_equal(nkv_topo_load(path, &t), 0);
	struct nkv_instance_info in;
	assert_int_equal(nkv_topo_instance(t, 3, &in), 0);
	assert_string_equal(in.nic_name, "a-mlx1");
	assert_int_equal(in.nic, 1);
	assert_true(fabs(nkv_topo_path_bw(t, 0, 4) - 12.5e9) < 1); /* b's 100 Gb/s NIC */
	assert_true(fabs(nkv_topo_path_bw_loaded(t, 0, 4) - 6.25e9) < 1); /* shared by 2 GPUs */
	nkv_topo_free(t);

	assert_int_equal(nkv_topo_load("/nonexistent/topo.json", &t), -ENOENT);
	assert_non_null(strstr(nkv_last_error(), "/nonexistent/topo.json"));
	/* A directory is named as one (ftell used to make it "9223372036854775807 bytes"). */
	assert_int_equal(nkv_topo_load(NKV_TEST_DIR, &t), -EISDIR);
	assert_non_null(strstr(nkv_last_error(), "is a directory"));
	snprintf(path, sizeof(path), "%s/corpus/not_json.json", NKV_TEST_DIR);
	assert_int_equal(nkv_topo_load(path, &t), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "not valid JSON"));
}

struct bad {
	const char *json;
	const char *expect; /* substring of the error */
};

#define SW_LEAF "{\"name\":\"l\",\"tier\":\"leaf\"}"
#define NIC0 "{\"name\":\"n\",\"gbps\":100,\"gpus\":[0]}"
#define HOST(name, leaf) "{\"name\":\"" name "\",\"leaf\":\"" leaf "\",\"gpus\":1,\"nics\":[" NIC0 "]}"

static void errors(void **state)
{
	static const struct bad cases[] = {
		{ "", "not valid JSON" },
		{ "{\"hosts\": [", "not valid JSON" },
		{ "[]", "expected an object" },
		{ "{\"switches\":[" SW_LEAF "],\"hosts\":[" HOST("h", "l") "],\"colour\":1}", "unknown key \"colour\"" },
		{ "{\"switches\":[" SW_LEAF "],\"hosts\":[]}", "non-empty" },
		{ "{\"switches\":[" SW_LEAF "],\"hosts\":[" HOST("h", "nowhere") "]}", "leaf \"nowhere\" is not a known switch" },
		{ "{\"switches\":[" SW_LEAF ",{\"name\":\"m\",\"tier\":\"leaf\",\"uplink\":\"ghost\",\"oversub\":1}],"
		  "\"hosts\":[" HOST("h", "l") "]}", "uplink \"ghost\" is not a known switch" },
		{ "{\"switches\":[" SW_LEAF "],\"hosts\":[{\"name\":\"h\",\"leaf\":\"l\",\"gpus\":2,\"nics\":[" NIC0 "]}]}",
		  "GPU 1 has no NIC" },
		{ "{\"switches\":[" SW_LEAF "],\"hosts\":[{\"name\":\"h\",\"leaf\":\"l\",\"gpus\":1,\"nics\":"
		  "[{\"name\":\"n\",\"gbps\":0,\"gpus\":[0]}]}]}", "zero bandwidth" },
		{ "{\"switches\":[" SW_LEAF "],\"hosts\":[{\"name\":\"h\",\"leaf\":\"l\",\"gpus\":1,\"nics\":"
		  "[{\"name\":\"n\",\"gbps\":-5,\"gpus\":[0]}]}]}", ">= 0" },
		{ "{\"switches\":[" SW_LEAF "],\"hosts\":[{\"name\":\"h\",\"leaf\":\"l\",\"gpus\":1,\"nics\":"
		  "[{\"name\":\"n\",\"gbps\":\"fast\",\"gpus\":[0]}]}]}", "must be a number" },
		{ "{\"switches\":[" SW_LEAF "],\"hosts\":[{\"name\":\"h\",\"leaf\":\"l\",\"gpus\":1,\"nics\":"
		  "[{\"name\":\"n\",\"gbps\":1,\"gpus\":[3]}]}]}", "GPU 3 does not exist" },
		{ "{\"switches\":[" SW_LEAF "],\"hosts\":[{\"name\":\"h\",\"leaf\":\"l\",\"gpus\":1,\"nics\":"
		  "[" NIC0 ",{\"name\":\"n2\",\"gbps\":1,\"gpus\":[0]}]}]}", "already served by NIC n" },
		{ "{\"switches\":[" SW_LEAF "],\"hosts\":[" HOST("h", "l") "," HOST("h", "l") "]}", "duplicate name 'h'" },
		{ "{\"switches\":[" SW_LEAF "," SW_LEAF "],\"hosts\":[" HOST("h", "l") "]}", "duplicate switch name 'l'" },
		{ "{\"switches\":[" SW_LEAF "],\"hosts\":[" HOST("l", "l") "]}", "duplicate name 'l'" },
		{ "{\"switches\":[{\"name\":\"a\",\"tier\":\"spine\",\"uplink\":\"b\",\"oversub\":1},"
		  "{\"name\":\"b\",\"tier\":\"spine\",\"uplink\":\"a\",\"oversub\":1},"
		  "{\"name\":\"l\",\"tier\":\"leaf\",\"uplink\":\"a\",\"oversub\":1}],\"hosts\":[" HOST("h", "l") "]}",
		  "cycle in switch uplinks: a -> b -> a" },
		{ "{\"switches\":[{\"name\":\"s\",\"tier\":\"spine\",\"uplink\":\"s\",\"oversub\":1},"
		  "{\"name\":\"l\",\"tier\":\"leaf\",\"uplink\":\"s\",\"oversub\":1}],\"hosts\":[" HOST("h", "l") "]}",
		  "cycle in switch uplinks: s -> s" },
		{ "{\"switches\":[{\"name\":\"c\",\"tier\":\"core\"},"
		  "{\"name\":\"l\",\"tier\":\"leaf\",\"uplink\":\"c\",\"oversub\":1}],\"hosts\":[" HOST("h", "l") "]}",
		  "must be a spine switch" },
		{ "{\"switches\":[" SW_LEAF ",{\"name\":\"m\",\"tier\":\"leaf\"}],\"hosts\":["
		  HOST("h", "l") ",{\"name\":\"g\",\"leaf\":\"m\",\"gpus\":1,\"nics\":[{\"name\":\"x\",\"gbps\":1,\"gpus\":[0]}]}]}",
		  "not connected" },
		{ "{\"switches\":[{\"name\":\"s\",\"tier\":\"spine\"},"
		  "{\"name\":\"l\",\"tier\":\"leaf\",\"uplink\":\"s\",\"uplink_gbps\":0}],\"hosts\":[" HOST("h", "l") "]}",
		  "zero uplink bandwidth" },
		{ "{\"switches\":[{\"name\":\"s\",\"tier\":\"spine\"},"
		  "{\"name\":\"l\",\"tier\":\"leaf\",\"uplink\":\"s\"}],\"hosts\":[" HOST("h", "l") "]}",
		  "needs a bandwidth" },
		{ "{\"switches\":[{\"name\":\"s\",\"tier\":\"spine\"},"
		  "{\"name\":\"l\",\"tier\":\"leaf\",\"uplink\":\"s\",\"oversub\":\"2:0\"}],\"hosts\":[" HOST("h", "l") "]}",
		  "not N:M" },
		{ "{\"switches\":[{\"name\":\"s\",\"tier\":\"spine\"},"
		  "{\"name\":\"l\",\"tier\":\"leaf\",\"uplink\":\"s\",\"oversub\":2,\"uplink_gbps\":100}],\"hosts\":[" HOST("h", "l") "]}",
		  "disagrees with oversubscription" },
		{ "{\"switches\":[{\"name\":\"s\",\"tier\":\"spine\"}," SW_LEAF "],\"hosts\":[" HOST("h", "l") "]}",
		  "switch s is not connected" },
		{ "{\"switches\":[{\"name\":\"l\",\"tier\":\"tor\"}],\"hosts\":[" HOST("h", "l") "]}", "not leaf, spine or core" },
		{ "{\"switches\":[" SW_LEAF "],\"hosts\":[" HOST("bad name", "l") "]}", "use 1..55" },
		{ "{\"switches\":[" SW_LEAF "],\"hosts\":[{\"name\":\"h\",\"leaf\":\"l\",\"gpus\":0,\"nics\":[]}]}", "no GPUs" },
		{ "{\"switches\":[" SW_LEAF "],\"hosts\":[{\"name\":\"h\",\"leaf\":\"l\",\"gpus\":1.5,\"nics\":[]}]}", "integer" },
		{ "{\"switches\":[" SW_LEAF "],\"hosts\":[{\"name\":\"h\",\"leaf\":\"l\",\"gpus\":99999,\"nics\":[]}]}", "0..1024" },
		{ "{\"format\":\"other/2\",\"switches\":[" SW_LEAF "],\"hosts\":[" HOST("h", "l") "]}", "is not \"netkv-topology/1\"" },
		{ "{\"switches\":[" SW_LEAF "],\"hosts\":[" HOST("h", "l") "],\"intra_host\":{\"GBps\":0}}", "intra-host bandwidth" },
		{ "{\"switches\":[" SW_LEAF "," SW_LEAF "],\"switches\":[],\"hosts\":[" HOST("h", "l") "]}", "duplicate object key" },
		/* rates that overflow to inf B/s, or are far below any real link */
		{ "{\"switches\":[" SW_LEAF "],\"hosts\":[{\"name\":\"h\",\"leaf\":\"l\",\"gpus\":1,\"nics\":"
		  "[{\"name\":\"n\",\"gbps\":1e308,\"gpus\":[0]}]}]}", "NIC n: bandwidth 1e+308 Gb/s outside" },
		{ "{\"switches\":[{\"name\":\"s\",\"tier\":\"spine\"},"
		  "{\"name\":\"l\",\"tier\":\"leaf\",\"uplink\":\"s\",\"uplink_gbps\":1e-300}],\"hosts\":[" HOST("h", "l") "]}",
		  "switch l: uplink 1e-300 Gb/s outside" },
		{ "{\"switches\":[{\"name\":\"s\",\"tier\":\"spine\"},"
		  "{\"name\":\"l\",\"tier\":\"leaf\",\"uplink\":\"s\",\"oversub\":1e300}],\"hosts\":[" HOST("h", "l") "]}",
		  "switch l: uplink 1e-298 Gb/s outside" },
		{ "{\"switches\":[" SW_LEAF "],\"hosts\":[" HOST("h", "l") "],\"intra_host\":{\"GBps\":1e300}}",
		  "intra-host bandwidth 1e+300 GB/s outside" },
		{ "{\"switches\":[" SW_LEAF "],\"hosts\":[{\"name\":\"h\",\"leaf\":\"l\",\"gpus\":1,\"nics\":"
		  "[{\"name\":\"n\",\"gbps\":1,\"latency_us\":1e300,\"gpus\":[0]}]}]}", "NIC n: latency must be in 0 .. 1e+06 us" },
		/* multipath declaration */
		{ "{\"ecmp\":{\"spines_per_pod\":0},\"switches\":[" SW_LEAF "],\"hosts\":[" HOST("h", "l") "]}",
		  "spines_per_pod and cores_per_spine must be 1..64" },
		{ "{\"ecmp\":{\"spines_per_pod\":2,\"cores_per_spine\":65},\"switches\":[" SW_LEAF "],\"hosts\":["
		  HOST("h", "l") "]}", "\"cores_per_spine\" must be an integer in 0..64" },
		{ "{\"ecmp\":{\"cores_per_spine\":2},\"switches\":[" SW_LEAF "],\"hosts\":[" HOST("h", "l") "]}",
		  "missing \"spines_per_pod\"" },
		{ "{\"ecmp\":{\"spines\":2},\"switches\":[" SW_LEAF "],\"hosts\":[" HOST("h", "l") "]}",
		  "ecmp: unknown key \"spines\"" },
		{ "{\"ecmp\":4,\"switches\":[" SW_LEAF "],\"hosts\":[" HOST("h", "l") "]}", "\"ecmp\" must be an object" },
		/* the name is printed and written back: no escape sequences, no cut UTF-8 */
		{ "{\"name\":\"a\\u001b[31m\",\"switches\":[" SW_LEAF "],\"hosts\":[" HOST("h", "l") "]}",
		  "\"name\" must be 1..63 bytes without control characters" },
		{ "{\"name\":\"\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"
		  "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\",\"switches\":["
		  SW_LEAF "],\"hosts\":[" HOST("h", "l") "]}", "\"name\" must be 1..63 bytes" },
	};
	struct nkv_topo *t = NULL;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int rc = nkv_topo_parse(cases[i].json, strlen(cases[i].json), &t);
		if (rc != -EINVAL || !strstr(nkv_last_error(), cases[i].expect))
			fail_msg("case %zu: rc %d, error \"%s\", expected \"%s\"", i, rc, nkv_last_error(), cases[i].expect);
		assert_null(t);
	}
	/* the minimal valid document */
	const char *ok = "{\"switches\":[" SW_LEAF "],\"hosts\":[" HOST("h", "l") "]}";
	assert_int_equal(nkv_topo_parse(ok, strlen(ok), &t), 0);
	assert_int_equal(nkv_topo_instances(t), 1);
	nkv_topo_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(round_trip),
		cmocka_unit_test(round_trip_ecmp),
		cmocka_unit_test(files),
		cmocka_unit_test(errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
