/*
 * The multipath (ECMP) fabric under the flow-level network, against
 * hand-computed cases: flows hashed onto one spine uplink share it, onto
 * different uplinks they do not, a lone flow across the core gets its
 * slowest link; the aggregated tree on the same topology never binds.
 *
 * Topology (all cases): 8 hosts of 1 GPU and one 400 Gb/s NIC (50 GB/s),
 * 2 hosts per leaf, 2 leaves per pod, 2 pods; 2 spines per pod, 2 cores
 * per spine plane; one leaf->spine link 200 Gb/s (25 GB/s), one
 * spine->core link 100 Gb/s (12.5 GB/s): the demo's 400,200,100.
 * Instances: h0 h1 on leaf0, h2 h3 on leaf1 (pod 0), h4..h7 in pod 1.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "netkv_sim.h"
#include "nkv_util.h"

#define GB 1e9

static void near(double got, double want)
{
	if (fabs(got - want) > 1e-9 * fmax(1, fabs(want)))
		fail_msg("got %.12g, want %.12g", got, want);
}

static struct nkv_topo *small_tree(void)
{
	struct nkv_fat_tree_params p;
	struct nkv_topo *t = NULL;

	nkv_fat_tree_defaults(&p);
	p.gpus = 8;
	p.gpus_per_host = 1;
	p.nics_per_host = 1;
	p.nic_gbps = 400;
	p.spines_per_pod = 2;
	p.cores_per_spine = 2;
	p.leaf_link_gbps = 200;
	p.spine_link_gbps = 100;
	if (nkv_topo_fat_tree(&p, &t))
		fail_msg("fat tree: %s", nkv_last_error());
	return t;
}

/* Link at position pos of flow (a, b, key)'s ECMP path. */
static uint32_t hop(const struct nkv_topo *t, uint32_t a, uint32_t b, uint64_t key, int pos)
{
	uint32_t l[NKV_MAX_PATH];
	int n = nkv_topo_path_ecmp(t, a, b, key, l);

	assert_true(n > pos);
	return l[pos];
}

/* The first key >= from whose flow a -> b leaves through (or avoids) the given link at pos. */
static uint64_t key_with(const struct nkv_topo *t, uint32_t a, uint32_t b, int pos, uint32_t link, bool same,
			 uint64_t from)
{
	for (uint64_t k = from; k < from + 1000; k++)
		if ((hop(t, a, b, k, pos) == link) == same)
			return k;
	fail_msg("no key in 1000 puts %u -> %u %s link %u", a, b, same ? "on" : "off", link);
	return 0;
}

/* h0 -> h2 and h1 -> h3 both leave leaf0 for leaf1 through a spine. Same
 * spine: they share one 25 GB/s leaf link, 12.5 GB/s each. Different
 * spines: 25 GB/s each (the leaf link, below the 50 GB/s NIC). The
 * aggregated tree has one 50 GB/s leaf uplink: 25 GB/s each either way. */
static void pod_collisions(void **st)
{
	struct nkv_topo *t = small_tree();
	struct nkv_flownet *n;
	uint64_t k0 = 0, k1;

	(void)st;
	k1 = key_with(t, 1, 3, 1, hop(t, 0, 2, k0, 1), true, 0);
	assert_int_equal(nkv_flownet_create(t, &n), 0);
	assert_int_equal(nkv_flownet_set_ecmp(n, true), 0);
	int a = nkv_flownet_add_keyed(n, 0, 2, 1u << 30, k0, 0);
	int b = nkv_flownet_add_keyed(n, 1, 3, 1u << 30, k1, 0);
	near(nkv_flownet_rate(n, a), 12.5 * GB);
	near(nkv_flownet_rate(n, b), 12.5 * GB);
	nkv_flownet_free(n);

	k1 = key_with(t, 1, 3, 1, hop(t, 0, 2, k0, 1), false, 0);
	assert_int_equal(nkv_flownet_create(t, &n), 0);
	assert_int_equal(nkv_flownet_set_ecmp(n, true), 0);
	a = nkv_flownet_add_keyed(n, 0, 2, 1u << 30, k0, 0);
	b = nkv_flownet_add_keyed(n, 1, 3, 1u << 30, k1, 0);
	near(nkv_flownet_rate(n, a), 25 * GB);
	near(nkv_flownet_rate(n, b), 25 * GB);
	nkv_flownet_free(n);

	assert_int_equal(nkv_flownet_create(t, &n), 0); /* aggregated */
	a = nkv_flownet_add(n, 0, 2, 1u << 30, 0);
	b = nkv_flownet_add(n, 1, 3, 1u << 30, 0);
	near(nkv_flownet_rate(n, a), 25 * GB);
	near(nkv_flownet_rate(n, b), 25 * GB);
	nkv_flownet_free(n);
	nkv_topo_free(t);
}

/* Across the core. A lone flow h0 -> h4: min(50, 25, 12.5, 12.5, 25, 50) =
 * 12.5 GB/s, its 1 GB drained in 0.08 s; its NIC link peaks at 12.5 of 50
 * GB/s, its core link at 12.5 of 12.5. The aggregated tree: spine uplink
 * 2 x 2 x 12.5 = 50 GB/s, so the lone flow gets its NIC's 50 GB/s.
 * Two flows h0 -> h4, h1 -> h5 on the same core link: 6.25 each; on the
 * same spine but different cores: 12.5 each (sharing the 25 GB/s leaf
 * link exactly). */
static void core_collisions(void **st)
{
	struct nkv_topo *t = small_tree();
	struct nkv_flownet *n;
	struct nkv_link_info li;
	uint64_t bytes;
	double started;

	(void)st;
	assert_int_equal(nkv_flownet_create(t, &n), 0);
	assert_int_equal(nkv_flownet_set_ecmp(n, true), 0);
	int a = nkv_flownet_add_keyed(n, 0, 4, (uint64_t)GB, 7, 0);
	near(nkv_flownet_rate(n, a), 12.5 * GB);
	double tn = nkv_flownet_next(n);
	near(tn, 0.08); /* the drain end, then 6 hops of 0.5 us */
	assert_int_equal(nkv_flownet_pop(n, tn, &bytes, &started), -ENOENT);
	tn = nkv_flownet_next(n);
	near(tn, 0.08 + 3e-6);
	assert_int_equal(nkv_flownet_pop(n, tn, &bytes, &started), a);
	uint32_t nic = hop(t, 0, 4, 7, 0), core = hop(t, 0, 4, 7, 2);
	near(nkv_flownet_link_peak(n, nic), 12.5 * GB);
	near(nkv_flownet_link_peak(n, core), 12.5 * GB);
	near(nkv_flownet_link_carried(n, core), GB);
	assert_int_equal(nkv_topo_link(t, core, &li), 0);
	assert_int_equal(li.tier, NKV_TIER_CORE);
	near(li.bytes_per_s, 12.5 * GB);
	nkv_flownet_free(n);

	assert_int_equal(nkv_flownet_create(t, &n), 0);
	a = nkv_flownet_add(n, 0, 4, (uint64_t)GB, 0);
	near(nkv_flownet_rate(n, a), 50 * GB);
	nkv_flownet_free(n);

	uint64_t k1 = key_with(t, 1, 5, 2, core, true, 0);
	assert_int_equal(nkv_flownet_create(t, &n), 0);
	assert_int_equal(nkv_flownet_set_ecmp(n, true), 0);
	a = nkv_flownet_add_keyed(n, 0, 4, (uint64_t)GB, 7, 0);
	int b = nkv_flownet_add_keyed(n, 1, 5, (uint64_t)GB, k1, 0);
	near(nkv_flownet_rate(n, a), 6.25 * GB);
	near(nkv_flownet_rate(n, b), 6.25 * GB);
	nkv_flownet_free(n);

	/* Same spine (leaf link at pos 1), other core. */
	uint64_t k2;
	for (k2 = 0; k2 < 1000; k2++)
		if (hop(t, 1, 5, k2, 1) == hop(t, 0, 4, 7, 1) && hop(t, 1, 5, k2, 2) != core)
			break;
	assert_true(k2 < 1000);
	assert_int_equal(nkv_flownet_create(t, &n), 0);
	assert_int_equal(nkv_flownet_set_ecmp(n, true), 0);
	a = nkv_flownet_add_keyed(n, 0, 4, (uint64_t)GB, 7, 0);
	b = nkv_flownet_add_keyed(n, 1, 5, (uint64_t)GB, k2, 0);
	near(nkv_flownet_rate(n, a), 12.5 * GB);
	near(nkv_flownet_rate(n, b), 12.5 * GB);
	nkv_flownet_free(n);
	nkv_topo_free(t);
}

/* The scheduler's oracle sees the aggregated tree (nkv_topo_path): every
 * ECMP path maps link by link onto it through the bundles, so the oracle's
 * in-flight bytes land on the bundle that holds the flow's member links.
 * The hash spreads: over 4000 keys each spine and core takes its share. */
static void paths_map_onto_tree(void **st)
{
	struct nkv_topo *t = small_tree();
	uint32_t agg[NKV_MAX_PATH], mp[NKV_MAX_PATH];
	uint32_t S = 0, C = 0, spine_hits[2] = { 0 }, core_hits[4] = { 0 };

	(void)st;
	assert_int_equal(nkv_topo_ecmp(t, &S, &C), 1);
	assert_int_equal(S, 2);
	assert_int_equal(C, 2);
	for (uint32_t a = 0; a < 8; a++)
		for (uint32_t b = 0; b < 8; b++)
			for (uint64_t k = 0; k < 50; k++) {
				int na = nkv_topo_path(t, a, b, agg), nm = nkv_topo_path_ecmp(t, a, b, k, mp);
				assert_int_equal(na, nm);
				for (int i = 0; i < na; i++)
					assert_int_equal(nkv_topo_link_bundle(t, mp[i]), (int)agg[i]);
			}
	for (uint64_t k = 0; k < 4000; k++) {
		struct nkv_link_info li;
		assert_int_equal(nkv_topo_link(t, hop(t, 0, 4, k, 2), &li), 0);
		/* "spine0.J>core0.J.C" */
		const char *dot = strchr(li.name, '.');
		assert_non_null(dot);
		unsigned j = (unsigned)(dot[1] - '0');
		const char *c2 = strrchr(li.name, '.');
		unsigned c = (unsigned)(c2[1] - '0');
		assert_true(j < 2 && c < 2);
		spine_hits[j]++;
		core_hits[j * 2 + c]++;
	}
	for (int j = 0; j < 2; j++)
		assert_true(spine_hits[j] > 1800 && spine_hits[j] < 2200);
	for (int m = 0; m < 4; m++)
		assert_true(core_hits[m] > 850 && core_hits[m] < 1150);
	/* Deterministic: the same key, the same path. */
	assert_int_equal(hop(t, 0, 4, 123, 2), hop(t, 0, 4, 123, 2));
	nkv_topo_free(t);
}

/* ECMP needs a topology that declares it. */
static void ecmp_needs_declared_fabric(void **st)
{
	struct nkv_fat_tree_params p;
	struct nkv_topo *t;
	struct nkv_flownet *n;
	uint32_t l[NKV_MAX_PATH];

	(void)st;
	nkv_fat_tree_defaults(&p);
	assert_int_equal(nkv_topo_fat_tree(&p, &t), 0);
	assert_int_equal(nkv_topo_ecmp(t, NULL, NULL), 0);
	assert_int_equal(nkv_topo_path_ecmp(t, 0, 40, 1, l), -EINVAL);
	assert_int_equal(nkv_flownet_create(t, &n), 0);
	assert_int_equal(nkv_flownet_set_ecmp(n, true), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "declares"));
	nkv_flownet_free(n);
	nkv_topo_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(pod_collisions),
		cmocka_unit_test(core_collisions),
		cmocka_unit_test(paths_map_onto_tree),
		cmocka_unit_test(ecmp_needs_declared_fabric),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
