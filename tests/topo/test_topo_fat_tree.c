/*
 * Tier, path, bandwidth and latency queries on the 64-GPU fat tree against
 * hand-worked figures. Layout of the preset (see fat_tree.c):
 *   hosts h0..h7, 8 GPUs and 8 NICs each (GPU i -> NIC i), instance h*8+g
 *   leaf0 {h0,h1} leaf1 {h2,h3} leaf2 {h4,h5} leaf3 {h6,h7}
 *   spine0 {leaf0,leaf1} spine1 {leaf2,leaf3}, core0 {spine0,spine1}
 * Link numbering: NVLink out/in of instance i = 2i, 2i+1; NIC n up/down =
 * 128+2n, 129+2n; then per switch with an uplink, in order spine0, spine1,
 * leaf0..leaf3: up, down = 256.. 267.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <math.h>
#include <string.h>

#include "netkv_topo.h"
#include "nkv_util.h"

#define GB 1e9

static struct nkv_topo *make(double leaf, double spine)
{
	struct nkv_fat_tree_params p;
	struct nkv_topo *t = NULL;

	nkv_fat_tree_defaults(&p);
	p.oversub_leaf = leaf;
	p.oversub_spine = spine;
	assert_int_equal(nkv_topo_fat_tree(&p, &t), 0);
	return t;
}

static void assert_close(double got, double want)
{
	if (fabs(got - want) > 1e-9 * fabs(want) + 1e-15)
		fail_msg("got %.12g, want %.12g", got, want);
}

static void shape_and_names(void **state)
{
	struct nkv_topo *t = make(1, 1);
	struct nkv_instance_info in;

	assert_int_equal(nkv_topo_instances(t), 64);
	assert_int_equal(nkv_topo_hosts(t), 8);
	assert_int_equal(nkv_topo_links(t), 268);
	assert_int_equal(nkv_topo_instance(t, 45, &in), 0);
	assert_string_equal(in.name, "h5g5");
	assert_string_equal(in.host_name, "h5");
	assert_string_equal(in.nic_name, "h5n5");
	assert_int_equal(in.host, 5);
	assert_int_equal(in.gpu, 5);
	assert_int_equal(in.nic, 5);
	assert_int_equal(in.leaf, 2);
	assert_int_equal(in.pod, 1);
	assert_int_equal(nkv_topo_find(t, "h5g5"), 45);
	assert_int_equal(nkv_topo_find(t, "h9g0"), -ENOENT);
	assert_int_equal(nkv_topo_instance(t, 64, &in), -EINVAL);
	assert_string_equal(nkv_topo_name(t), "fat-tree-64");
	nkv_topo_free(t);
}

static void tiers(void **state)
{
	struct nkv_topo *t = make(1, 1);

	assert_int_equal(nkv_topo_tier(t, 0, 0), NKV_TIER_HOST);
	assert_int_equal(nkv_topo_tier(t, 0, 7), NKV_TIER_HOST);   /* h0g0 - h0g7 */
	assert_int_equal(nkv_topo_tier(t, 0, 8), NKV_TIER_LEAF);   /* h0 - h1 */
	assert_int_equal(nkv_topo_tier(t, 15, 16), NKV_TIER_POD);  /* h1 - h2 */
	assert_int_equal(nkv_topo_tier(t, 0, 31), NKV_TIER_POD);   /* h0 - h3 */
	assert_int_equal(nkv_topo_tier(t, 31, 32), NKV_TIER_CORE); /* h3 - h4 */
	assert_int_equal(nkv_topo_tier(t, 63, 0), NKV_TIER_CORE);
	assert_int_equal(nkv_topo_tier(t, 48, 63), NKV_TIER_LEAF); /* h6 - h7 */
	assert_int_equal(nkv_topo_tier(t, 0, 64), -EINVAL);
	assert_string_equal(nkv_tier_name(2), "pod");
	assert_string_equal(nkv_tier_name(7), "?");
	nkv_topo_free(t);
}

static void expect_path(struct nkv_topo *t, uint32_t a, uint32_t b, const char *const *names, int n)
{
	uint32_t p[NKV_MAX_PATH];
	struct nkv_link_info li;

	assert_int_equal(nkv_topo_path(t, a, b, p), n);
	for (int i = 0; i < n; i++) {
		assert_int_equal(nkv_topo_link(t, p[i], &li), 0);
		assert_string_equal(li.name, names[i]);
	}
}

static void paths(void **state)
{
	struct nkv_topo *t = make(2, 4);
	uint32_t p[NKV_MAX_PATH];

	assert_int_equal(nkv_topo_path(t, 3, 3, p), 0);
	assert_int_equal(nkv_topo_path(t, 3, 5, p), 2);
	assert_int_equal(p[0], 6);
	assert_int_equal(p[1], 11);
	expect_path(t, 3, 5, (const char *const[]){ "h0g3>nvl", "nvl>h0g5" }, 2);
	expect_path(t, 1, 10, (const char *const[]){ "h0n1>leaf0", "leaf0>h1n2" }, 2);
	/* h0g0 -> h2g0: same pod */
	assert_int_equal(nkv_topo_path(t, 0, 16, p), 4);
	assert_int_equal(p[0], 128);
	assert_int_equal(p[1], 260);
	assert_int_equal(p[2], 263);
	assert_int_equal(p[3], 161);
	expect_path(t, 0, 16, (const char *const[]){ "h0n0>leaf0", "leaf0>spine0", "spine0>leaf1", "leaf1>h2n0" }, 4);
	/* h0g0 -> h4g0: across the core */
	assert_int_equal(nkv_topo_path(t, 0, 32, p), 6);
	assert_int_equal(p[0], 128);
	assert_int_equal(p[1], 260);
	assert_int_equal(p[2], 256);
	assert_int_equal(p[3], 259);
	assert_int_equal(p[4], 265);
	assert_int_equal(p[5], 193);
	expect_path(t, 0, 32, (const char *const[]){ "h0n0>leaf0", "leaf0>spine0", "spine0>core0", "core0>spine1",
						       "spine1>leaf2", "leaf2>h4n0" }, 6);
	/* the reverse direction uses the other half of each duplex link */
	expect_path(t, 63, 0, (const char *const[]){ "h7n7>leaf3", "leaf3>spine1", "spine1>core0", "core0>spine0",
						       "spine0>leaf0", "leaf0>h0n0" }, 6);
	assert_int_equal(nkv_topo_path(t, 64, 0, p), -EINVAL);
	nkv_topo_free(t);
}

/* Leaf 2:1: 16 NICs x 400 Gb/s = 6400 Gb/s below, 3200 Gb/s = 400 GB/s up,
 * 16 GPUs behind it -> 25 GB/s each. Spine 4:1: 2 x 3200 below, 1600 Gb/s =
 * 200 GB/s up, 32 GPUs -> 6.25 GB/s each. */
static void bandwidth_2_1_and_4_1(void **state)
{
	struct nkv_topo *t = make(2, 4);
	struct nkv_link_info li;

	assert_int_equal(nkv_topo_link(t, 260, &li), 0); /* leaf0>spine0 */
	assert_close(li.bytes_per_s, 400 * GB);
	assert_close(li.share_bytes_per_s, 25 * GB);
	assert_int_equal(li.tier, 2);
	assert_int_equal(nkv_topo_link(t, 256, &li), 0); /* spine0>core0 */
	assert_close(li.bytes_per_s, 200 * GB);
	assert_close(li.share_bytes_per_s, 6.25 * GB);
	assert_int_equal(li.tier, 3);
	assert_int_equal(nkv_topo_link(t, 128, &li), 0); /* h0n0>leaf0 */
	assert_close(li.bytes_per_s, 50 * GB);
	assert_close(li.latency_s, 0.5e-6);

	/* idle bottleneck: the NIC everywhere off-host */
	assert_close(nkv_topo_path_bw(t, 0, 1), 450 * GB);
	assert_close(nkv_topo_path_bw(t, 0, 8), 50 * GB);
	assert_close(nkv_topo_path_bw(t, 0, 16), 50 * GB);
	assert_close(nkv_topo_path_bw(t, 0, 32), 50 * GB);
	/* loaded share: oversubscription shows */
	assert_close(nkv_topo_path_bw_loaded(t, 0, 8), 50 * GB);
	assert_close(nkv_topo_path_bw_loaded(t, 0, 16), 25 * GB);
	assert_close(nkv_topo_path_bw_loaded(t, 0, 32), 6.25 * GB);
	assert_close(nkv_topo_tier_bw(t, 0), 450 * GB);
	assert_close(nkv_topo_tier_bw(t, 1), 50 * GB);
	assert_close(nkv_topo_tier_bw(t, 2), 25 * GB);
	assert_close(nkv_topo_tier_bw(t, 3), 6.25 * GB);
	assert_true(nkv_topo_tier_bw(t, 4) < 0);
	/* latency: 0.5 us per link, NVLink 1 us each way */
	assert_close(nkv_topo_path_latency(t, 0, 0), 0);
	assert_close(nkv_topo_path_latency(t, 0, 1), 2e-6);
	assert_close(nkv_topo_path_latency(t, 0, 8), 1e-6);
	assert_close(nkv_topo_path_latency(t, 0, 16), 2e-6);
	assert_close(nkv_topo_path_latency(t, 0, 32), 3e-6);
	assert_close(nkv_topo_tier_latency(t, 3), 3e-6);
	assert_true(nkv_topo_path_bw(t, 0, 99) < 0);
	nkv_topo_free(t);
}

/* Leaf 4:1, spine 1:1: 6400/4 = 1600 Gb/s = 200 GB/s over 16 GPUs = 12.5 GB/s,
 * the "through a 4:1 spine" figure of the facts note; core 1:1 keeps it. */
static void bandwidth_4_1_leaf(void **state)
{
	struct nkv_topo *t = make(4, 1);

	assert_close(nkv_topo_path_bw_loaded(t, 0, 16), 12.5 * GB);
	assert_close(nkv_topo_path_bw_loaded(t, 0, 32), 12.5 * GB);
	assert_close(nkv_topo_tier_bw(t, 2), 12.5 * GB);
	nkv_topo_free(t);
	/* 1:1 control: every off-host tier at NIC rate */
	t = make(1, 1);
	for (int tier = 1; tier < NKV_TIERS; tier++)
		assert_close(nkv_topo_tier_bw(t, tier), 50 * GB);
	assert_close(nkv_topo_path_bw_loaded(t, 5, 60), 50 * GB);
	nkv_topo_free(t);
}

static void shared_nics_and_scale(void **state)
{
	struct nkv_fat_tree_params p;
	struct nkv_topo *t = NULL;
	struct nkv_instance_info in;

	nkv_fat_tree_defaults(&p);
	p.nics_per_host = 2; /* GPUs 0-3 -> NIC 0, 4-7 -> NIC 1 */
	assert_int_equal(nkv_topo_fat_tree(&p, &t), 0);
	assert_int_equal(nkv_topo_instance(t, 13, &in), 0);
	assert_int_equal(in.nic, 1);
	assert_string_equal(in.nic_name, "h1n1");
	assert_close(nkv_topo_path_bw_loaded(t, 0, 8), 12.5 * GB); /* 50 GB/s over 4 GPUs */
	assert_close(nkv_topo_path_bw(t, 0, 8), 50 * GB);
	nkv_topo_free(t);

	for (uint32_t g = 128; g <= 1024; g *= 2) {
		nkv_fat_tree_defaults(&p);
		p.gpus = g;
		assert_int_equal(nkv_topo_fat_tree(&p, &t), 0);
		assert_int_equal(nkv_topo_instances(t), g);
		assert_int_equal(nkv_topo_hosts(t), g / 8);
		assert_int_equal(nkv_topo_tier(t, 0, g - 1), NKV_TIER_CORE);
		assert_int_equal(nkv_topo_tier(t, g - 32, g - 1), NKV_TIER_POD);
		nkv_topo_free(t);
	}
	/* small: one leaf, no spine: only tiers 0 and 1 exist */
	nkv_fat_tree_defaults(&p);
	p.gpus = 16;
	assert_int_equal(nkv_topo_fat_tree(&p, &t), 0);
	assert_int_equal(nkv_topo_tier(t, 0, 15), NKV_TIER_LEAF);
	assert_close(nkv_topo_tier_bw(t, 2), 0);
	nkv_topo_free(t);

	nkv_fat_tree_defaults(&p);
	p.gpus = 60;
	assert_int_equal(nkv_topo_fat_tree(&p, &t), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "60 GPUs"));
	p.gpus = 96; /* 12 hosts = 6 leaves = 3 pods: fine */
	assert_int_equal(nkv_topo_fat_tree(&p, &t), 0);
	nkv_topo_free(t);
	p.gpus = 80; /* 10 hosts = 5 leaves: not whole pods */
	assert_int_equal(nkv_topo_fat_tree(&p, &t), -EINVAL);
	nkv_fat_tree_defaults(&p);
	p.oversub_leaf = 0.5;
	assert_int_equal(nkv_topo_fat_tree(&p, &t), -EINVAL);
	p.oversub_leaf = 1;
	p.nics_per_host = 3;
	assert_int_equal(nkv_topo_fat_tree(&p, &t), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(shape_and_names),
		cmocka_unit_test(tiers),
		cmocka_unit_test(paths),
		cmocka_unit_test(bandwidth_2_1_and_4_1),
		cmocka_unit_test(bandwidth_4_1_leaf),
		cmocka_unit_test(shared_nics_and_scale),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
