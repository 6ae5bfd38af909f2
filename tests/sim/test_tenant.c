/*
 * Tenant traffic (bench/sim/tenant.c): on/off sources load every link of a
 * tier to a target mean utilisation. Over 60 simulated seconds the tier's
 * measured mean utilisation is within 0.03 of the target, per mode, the
 * same for the same seed; bad targets are refused with a clear error.
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
#include "sim_internal.h"

#define SPAN_S 60.0
#define MAX_SRC 512

static struct nkv_topo *ecmp_tree(void)
{
	struct nkv_fat_tree_params p;
	struct nkv_topo *t;

	nkv_fat_tree_defaults(&p);
	p.oversub_leaf = 2;
	p.oversub_spine = 4;
	p.spines_per_pod = 4;
	p.cores_per_spine = 2;
	assert_int_equal(nkv_topo_fat_tree(&p, &t), 0);
	return t;
}

/* Run the sources alone for SPAN_S; return each tier's mean utilisation
 * over the links they load (carried / capacity x span). */
static void run(const struct nkv_topo *t, bool ecmp, const double util[NKV_TIERS], uint64_t seed,
		double mean[NKV_TIERS])
{
	struct nkv_flownet *n;
	struct sim_tenants *ts;
	double next[MAX_SRC], sum[NKV_TIERS] = { 0 };
	uint32_t cnt[NKV_TIERS] = { 0 };
	int f;

	assert_int_equal(nkv_flownet_create(t, &n), 0);
	if (ecmp)
		assert_int_equal(nkv_flownet_set_ecmp(n, true), 0);
	assert_int_equal(nkv__sim_tenants_create(t, ecmp, util, 0.05, seed, &ts), 0);
	uint32_t ns = nkv__sim_tenants_count(ts);
	assert_true(ns > 0 && ns <= MAX_SRC);
	for (uint32_t i = 0; i < ns; i++)
		assert_int_equal(nkv__sim_tenant_toggle(ts, i, n, 0, &f, &next[i]), 0);
	for (;;) {
		uint32_t b = 0;
		for (uint32_t i = 1; i < ns; i++)
			if (next[i] < next[b])
				b = i;
		if (next[b] >= SPAN_S)
			break;
		assert_int_equal(nkv__sim_tenant_toggle(ts, b, n, next[b], &f, &next[b]), 0);
	}
	assert_int_equal(nkv_flownet_pop(n, SPAN_S, NULL, NULL), -ENOENT); /* advances to SPAN_S */
	for (uint32_t l = 0; l < nkv_topo_links(t); l++) {
		struct nkv_link_info li;
		assert_int_equal(nkv_topo_link(t, l, &li), 0);
		bool member = nkv_topo_link_bundle(t, l) != (int)l;
		if (li.tier < 1 || !(util[li.tier] > 0) || (li.tier >= 2 && member != ecmp))
			continue;
		sum[li.tier] += nkv_flownet_link_carried(n, l) / (li.bytes_per_s * SPAN_S);
		cnt[li.tier]++;
	}
	for (int k = 0; k < NKV_TIERS; k++)
		mean[k] = cnt[k] ? sum[k] / cnt[k] : 0;
	nkv__sim_tenants_free(ts);
	nkv_flownet_free(n);
}

static void tier_utilisation(void **st)
{
	struct nkv_topo *t = ecmp_tree();
	double u[NKV_TIERS] = { 0, 0, 0.6, 0.3 }, m[NKV_TIERS], m2[NKV_TIERS];

	(void)st;
	run(t, true, u, 7, m);
	print_message("ecmp: pod %.4f (target 0.6), core %.4f (target 0.3)\n", m[2], m[3]);
	assert_true(fabs(m[2] - 0.6) < 0.03);
	assert_true(fabs(m[3] - 0.3) < 0.03);
	run(t, true, u, 7, m2);
	assert_memory_equal(m, m2, sizeof(m)); /* same seed, same run */
	double u1[NKV_TIERS] = { 0, 0.2, 0, 0 };
	run(t, false, u1, 3, m); /* NIC links, aggregated mode */
	print_message("aggregate: leaf %.4f (target 0.2)\n", m[1]);
	assert_true(fabs(m[1] - 0.2) < 0.03);
	double u3[NKV_TIERS] = { 0, 0, 0, 0.5 };
	run(t, false, u3, 3, m); /* the aggregated spine uplinks */
	assert_true(fabs(m[3] - 0.5) < 0.03);
	nkv_topo_free(t);
}

static void bad_targets(void **st)
{
	struct nkv_topo *t = ecmp_tree(), *one;
	struct nkv_fat_tree_params p;
	struct sim_tenants *ts;
	double host[NKV_TIERS] = { 0.5, 0, 0, 0 }, full[NKV_TIERS] = { 0, 0, 0, 1 }, nan_u[NKV_TIERS] = { 0, NAN, 0, 0 };
	double core[NKV_TIERS] = { 0, 0, 0, 0.5 };

	(void)st;
	assert_int_equal(nkv__sim_tenants_create(t, true, host, 0.1, 1, &ts), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "NVLink"));
	assert_int_equal(nkv__sim_tenants_create(t, true, full, 0.1, 1, &ts), -EINVAL);
	assert_int_equal(nkv__sim_tenants_create(t, true, nan_u, 0.1, 1, &ts), -EINVAL);
	assert_int_equal(nkv__sim_tenants_create(t, true, core, 0, 1, &ts), -EINVAL);
	assert_null(ts);
	nkv_fat_tree_defaults(&p);
	p.gpus = 32; /* one pod: no core */
	assert_int_equal(nkv_topo_fat_tree(&p, &one), 0);
	assert_int_equal(nkv__sim_tenants_create(one, false, core, 0.1, 1, &ts), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "no core-tier links"));
	nkv_topo_free(one);
	nkv_topo_free(t);
}

/* Scheduled sources (a demo run's tenants replayed): on exactly over their
 * periods, then never again; a bad period is refused. A link on over
 * [1, 3) and [5, 6) of 10 s carries 0.3 of its capacity x 10 s. */
static void scheduled(void **st)
{
	(void)st;
	struct nkv_fat_tree_params p;
	struct nkv_topo *t;
	struct nkv_flownet *n;
	struct sim_tenants *ts;
	struct nkv_link_info li;
	uint32_t l = 0;
	int f;
	double next;

	nkv_fat_tree_defaults(&p);
	assert_int_equal(nkv_topo_fat_tree(&p, &t), 0);
	while (nkv_topo_link(t, l, &li) == 0 && li.tier != NKV_TIER_POD)
		l++;
	assert_int_equal(li.tier, NKV_TIER_POD);
	struct nkv_sim_tenant_on on[2] = { { .link = l, .start_s = 1, .end_s = 3 }, { .link = l, .start_s = 5, .end_s = 6 } };
	assert_int_equal(nkv_flownet_create(t, &n), 0);
	assert_int_equal(nkv__sim_tenants_sched(t, on, 2, &ts), 0);
	assert_int_equal(nkv__sim_tenants_count(ts), 2);
	for (uint32_t i = 0; i < 2; i++) {
		double at = nkv__sim_tenant_first(ts, i, 0);
		assert_true(at == on[i].start_s);
		assert_int_equal(nkv__sim_tenant_toggle(ts, i, n, at, &f, &next), 0);
		assert_true(f >= 0 && next == on[i].end_s);
		assert_int_equal(nkv__sim_tenant_toggle(ts, i, n, next, &f, &next), 0);
		assert_true(f < 0 && isinf(next));
	}
	assert_int_equal(nkv_flownet_pop(n, 10, NULL, NULL), -ENOENT);
	assert_true(fabs(nkv_flownet_link_carried(n, l) / (li.bytes_per_s * 10) - 0.3) < 1e-6);
	nkv__sim_tenants_free(ts);
	on[1].end_s = 5;
	assert_int_equal(nkv__sim_tenants_sched(t, on, 2, &ts), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "on period 1"));
	nkv_flownet_free(n);
	nkv_topo_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(tier_utilisation),
		cmocka_unit_test(bad_targets),
		cmocka_unit_test(scheduled),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
