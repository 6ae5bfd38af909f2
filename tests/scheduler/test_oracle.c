/*
 * The oracle alone: EWMA with age, refresh ticks, staleness fallback to
 * the tier figure, congestion accounting, the operator's figures file, the
 * probe planner's budget and order, and the staleness property test.
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
#include <unistd.h>

#include "netkv_sched.h"
#include "nkv_util.h"

static void near(double got, double want, double rel)
{
	if (fabs(got - want) > rel * fabs(want) + 1e-15)
		fail_msg("got %.9g want %.9g", got, want);
}

/* 64 GPUs, leaf 2:1, spine 4:1: tier figures 450, 50, 25, 6.25 GB/s. */
static struct nkv_topo *tree(void)
{
	struct nkv_fat_tree_params p;
	struct nkv_topo *t;

	nkv_fat_tree_defaults(&p);
	p.oversub_leaf = 2;
	p.oversub_spine = 4;
	assert_int_equal(nkv_topo_fat_tree(&p, &t), 0);
	return t;
}

static void test_ewma_refresh_stale(void **st)
{
	struct nkv_topo *t = tree();
	struct nkv_oracle_params p;
	struct nkv_oracle *o;
	bool fresh;
	double want;

	(void)st;
	nkv_oracle_defaults(&p);
	p.refresh_s = 0.5; /* staleness 2.5 s, tau 0.5 s */
	assert_int_equal(nkv_oracle_create(t, &p, NULL, 0, NULL, 0, &o), 0);
	near(nkv_oracle_get_params(o)->staleness_s, 2.5, 1e-12);
	/* No data: tier figure (tier 1 = 50 GB/s), lat 1 us. */
	near(nkv_oracle_bw(o, 0, 8, 0, &fresh), 50e9, 1e-12);
	assert_false(fresh);
	near(nkv_oracle_cost(o, 0, 8, 1000000000, 0), 1e-6 + 0.02, 1e-9);
	/* Same host: nothing moves over a network path... but NVLink: tier 0, 450 GB/s, 2 us. */
	near(nkv_oracle_cost(o, 0, 1, 450000000, 0), 2e-6 + 1e-3, 1e-9);
	near(nkv_oracle_cost(o, 3, 3, 1 << 30, 0), 0, 0);

	nkv_oracle_refresh(o, 0); /* next tick at 0.5 */
	/* 2 GB in 0.1 s + 1 us: 20 GB/s. Ignored: a 4 KiB transfer. */
	assert_int_equal(nkv_oracle_sample(o, 0, 8, 4096, 0.001, 0.1, NKV_SAMPLE_PASSIVE), 0);
	assert_int_equal(nkv_oracle_sample(o, 0, 8, 2000000000, 0.1 + 1e-6, 0.1, NKV_SAMPLE_PASSIVE), 1);
	assert_int_equal(nkv_oracle_tick(o, 0.4), 0);
	near(nkv_oracle_bw(o, 0, 8, 0.4, &fresh), 50e9, 1e-12);
	assert_false(fresh);
	assert_int_equal(nkv_oracle_tick(o, 0.5), 1);
	near(nkv_oracle_bw(o, 0, 8, 0.5, &fresh), 20e9, 1e-9);
	assert_true(fresh);
	/* Second sample 10 GB/s, 0.2 s later: w = 1 - 0.7 * exp(-0.2/0.5). */
	assert_int_equal(nkv_oracle_sample(o, 0, 8, 1000000000, 0.1 + 1e-6, 0.3, NKV_SAMPLE_PROBE), 1);
	assert_int_equal(nkv_oracle_refresh(o, 0.6), 1);
	want = 20e9 + (1 - 0.7 * exp(-0.4)) * (10e9 - 20e9);
	near(nkv_oracle_bw(o, 0, 8, 0.6, &fresh), want, 1e-9);
	near(nkv_oracle_cost(o, 0, 8, 1000000000, 0.6), 1e-6 + 1e9 / want, 1e-9);
	/* Newest sample at 0.3; stale beyond 0.3 + 2.5. */
	near(nkv_oracle_bw(o, 0, 8, 2.8, &fresh), want, 1e-9);
	assert_true(fresh);
	near(nkv_oracle_bw(o, 0, 8, 2.81, &fresh), 50e9, 1e-12);
	assert_false(fresh);
	near(nkv_oracle_cost(o, 0, 8, 1000000000, 2.8), 1e-6 + 1e9 / want, 1e-9);
	near(nkv_oracle_cost(o, 0, 8, 1000000000, 2.81), 1e-6 + 0.02, 1e-9); /* tier figure */
	/* After a stale gap a sample replaces the estimate outright. */
	assert_int_equal(nkv_oracle_sample(o, 0, 8, 3000000000, 0.1 + 1e-6, 10.0, NKV_SAMPLE_PASSIVE), 1);
	nkv_oracle_refresh(o, 10.0);
	near(nkv_oracle_bw(o, 0, 8, 10.0, &fresh), 30e9, 1e-9);
	/* Bad samples. */
	assert_int_equal(nkv_oracle_sample(o, 0, 8, 1 << 30, 0, 1, NKV_SAMPLE_PASSIVE), -EINVAL);
	assert_int_equal(nkv_oracle_sample(o, 0, 8, 1 << 30, NAN, 1, NKV_SAMPLE_PASSIVE), -EINVAL);
	assert_int_equal(nkv_oracle_sample(o, 0, 99, 1 << 30, 1, 1, NKV_SAMPLE_PASSIVE), -ENOENT);
	nkv_oracle_free(o);
	p.refresh_s = 61;
	assert_int_equal(nkv_oracle_create(t, &p, NULL, 0, NULL, 0, &o), -EINVAL);
	nkv_topo_free(t);
}

/* 100000 GPUs split in half: 2.5e9 paths (~170 GB) used to reach calloc;
 * the oracle must refuse before allocating. */
static void test_too_many_paths(void **st)
{
	struct nkv_fat_tree_params p;
	struct nkv_topo *t;
	struct nkv_oracle *o = NULL;
	uint32_t n = 100000, *src = malloc(n / 2 * sizeof(uint32_t)), *dst = malloc(n / 2 * sizeof(uint32_t));

	assert_non_null(src);
	assert_non_null(dst);
	for (uint32_t i = 0; i < n / 2; i++) {
		src[i] = i;
		dst[i] = n / 2 + i;
	}
	nkv_fat_tree_defaults(&p);
	p.gpus = n;
	assert_int_equal(nkv_topo_fat_tree(&p, &t), 0);
	assert_int_equal(nkv_oracle_create(t, NULL, src, n / 2, dst, n / 2, &o), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "50000 x 50000 paths"));
	assert_null(o);
	nkv_topo_free(t);
	free(src);
	free(dst);
}

static void test_congestion(void **st)
{
	struct nkv_topo *t = tree();
	uint32_t src[2] = { 0, 1 }, dst[3] = { 8, 16, 40 };
	struct nkv_oracle *o;
	uint32_t links[NKV_MAX_PATH];
	int n;

	(void)st;
	assert_int_equal(nkv_oracle_create(t, NULL, src, 2, dst, 3, &o), 0);
	assert_int_equal(nkv_oracle_cost(o, 8, 0, 1, 0), -ENOENT); /* not a kept direction */
	/* Random adds and removes over all paths; everything finishes -> zero. */
	{
		uint64_t inflight[2][3] = { { 0 } };
		unsigned seed = 7;

		for (int i = 0; i < 2000; i++) {
			uint32_t a = (uint32_t)rand_r(&seed) % 2, b = (uint32_t)rand_r(&seed) % 3;
			uint64_t bytes = (uint64_t)(rand_r(&seed) % 1000) << 20;

			if (rand_r(&seed) % 2 || inflight[a][b] < bytes) {
				assert_int_equal(nkv_oracle_flow_add(o, src[a], dst[b], bytes), 0);
				inflight[a][b] += bytes;
			} else {
				assert_int_equal(nkv_oracle_flow_remove(o, src[a], dst[b], bytes), 0);
				inflight[a][b] -= bytes;
			}
		}
		for (int a = 0; a < 2; a++)
			for (int b = 0; b < 3; b++)
				assert_int_equal(nkv_oracle_flow_remove(o, src[a], dst[b], inflight[a][b]), 0);
	}
	assert_int_equal(nkv_oracle_inflight_total(o), 0);
	/* One flow: each of its links carries it, the cost adds the bottleneck's drain time. */
	assert_int_equal(nkv_oracle_flow_add(o, 0, 40, 1000000000), 0);
	n = nkv_topo_path(t, 0, 40, links);
	assert_int_equal(n, 6);
	for (int k = 0; k < n; k++)
		assert_int_equal(nkv_oracle_link_inflight(o, links[k]), 1000000000);
	/* 1 GB on the 50 GB/s NIC uplink: + 20 ms on 0 -> 8 (shares that uplink). */
	near(nkv_oracle_cost(o, 0, 8, 0, 0), 1e-6 + 0.02, 1e-9);
	/* Removing more than is in flight is refused and changes nothing. */
	assert_int_equal(nkv_oracle_flow_remove(o, 0, 40, 2000000000), -EINVAL);
	assert_int_equal(nkv_oracle_inflight_total(o), 6 * 1000000000ull);
	assert_int_equal(nkv_oracle_flow_remove(o, 0, 40, 1000000000), 0);
	assert_int_equal(nkv_oracle_inflight_total(o), 0);
	near(nkv_oracle_cost(o, 0, 8, 0, 0), 1e-6, 1e-9);
	nkv_oracle_free(o);
	nkv_topo_free(t);
}

static void test_figures(void **st)
{
	struct nkv_topo *t = tree();
	struct nkv_oracle *o;
	bool fresh;
	const char *good = "{\"paths\": [{\"src\": \"h0g0\", \"dst\": \"h1g0\", \"bytes_per_s\": 3e10, \"latency_s\": 5e-6},"
			   " {\"src\": 0, \"dst\": 40, \"bytes_per_s\": 1e9, \"age_s\": 4}]}";
	struct {
		const char *doc, *msg;
	} bad[] = {
		{ "nope", "not JSON" },
		{ "{\"path\": []}", "expected" },
		{ "{\"paths\": [{\"src\": \"h0g0\", \"dst\": \"zz\", \"bytes_per_s\": 1}]}", "paths[0].dst: no instance" },
		{ "{\"paths\": [{\"src\": 0, \"dst\": 8, \"bytes_per_s\": 1}, {\"src\": 0, \"dst\": 9, \"bytes_per_s\": -1}]}",
		  "paths[1].bytes_per_s" },
		{ "{\"paths\": [{\"src\": 0, \"dst\": 0, \"bytes_per_s\": 1}]}", "not a path" },
		{ "{\"paths\": [{\"src\": 0, \"dst\": 64, \"bytes_per_s\": 1}]}", "index below 64" },
		{ "{\"paths\": [{\"src\": 0, \"dst\": 8, \"bytes_per_s\": 1, \"age_s\": -2}]}", "age_s" },
		{ "{\"paths\": [{\"src\": 0, \"dst\": 8, \"bytes_per_s\": 1, \"latency_s\": \"x\"}]}", "latency_s" },
	};
	char path[] = "/tmp/nkv_figXXXXXX";
	int fd;

	(void)st;
	assert_int_equal(nkv_oracle_create(t, NULL, NULL, 0, NULL, 0, &o), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (nkv_oracle_parse_figures(o, bad[i].doc, strlen(bad[i].doc), 0) != -EINVAL ||
		    !strstr(nkv_last_error(), bad[i].msg))
			fail_msg("case %zu: '%s' lacks '%s'", i, nkv_last_error(), bad[i].msg);
	}
	/* A rejected document changed nothing (case 3's first entry was valid). */
	near(nkv_oracle_bw(o, 0, 8, 0, &fresh), 50e9, 1e-12);
	assert_false(fresh);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, good, strlen(good)), (ssize_t)strlen(good));
	close(fd);
	assert_int_equal(nkv_oracle_load_figures(o, path, 100.0), 2);
	unlink(path);
	near(nkv_oracle_bw(o, 0, 8, 100, &fresh), 3e10, 1e-12);
	assert_true(fresh);
	near(nkv_oracle_cost(o, 0, 8, 3000000000ull, 100), 5e-6 + 0.1, 1e-9);
	/* Measured 4 s ago: stale after 1 more second (staleness 5 s). */
	near(nkv_oracle_bw(o, 0, 40, 100.9, &fresh), 1e9, 1e-12);
	near(nkv_oracle_bw(o, 0, 40, 101.1, &fresh), 6.25e9, 1e-12);
	assert_int_equal(nkv_oracle_load_figures(o, "/nonexistent.json", 0), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "/nonexistent.json"));
	assert_int_equal(nkv_oracle_load_figures(o, "/tmp", 0), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "directory"));
	/* A file is held to the same rules as a string: a repeated key is an error, not "last wins". */
	{
		const char *dup = "{\"paths\": [{\"src\": 0, \"dst\": 8, \"bytes_per_s\": 1e9, \"bytes_per_s\": 2e9}]}";
		char p2[] = "/tmp/nkv_figXXXXXX";
		int fd2 = mkstemp(p2);

		assert_true(fd2 >= 0);
		assert_int_equal(write(fd2, dup, strlen(dup)), (ssize_t)strlen(dup));
		close(fd2);
		assert_int_equal(nkv_oracle_load_figures(o, p2, 0), -EINVAL);
		assert_non_null(strstr(nkv_last_error(), "duplicate"));
		unlink(p2);
	}
	nkv_oracle_free(o);
	nkv_topo_free(t);
}

/* The planner never exceeds budget * capacity * window on any link, and picks oldest, then cheapest tier. */
static void test_probe_budget(void **st)
{
	struct nkv_topo *t = tree();
	struct nkv_oracle *o;
	struct nkv_probe_params pp;
	struct nkv_probe pr[4096];
	uint32_t nl = nkv_topo_links(t);
	double *used = calloc(nl, sizeof(double));
	int n, n2;

	(void)st;
	assert_int_equal(nkv_oracle_create(t, NULL, NULL, 0, NULL, 0, &o), 0);
	nkv_probe_defaults(o, &pp);
	n = nkv_probe_plan(o, &pp, 0, pr, 4096);
	assert_true(n > 0);
	for (int i = 0; i < n; i++) {
		uint32_t links[NKV_MAX_PATH];
		int k = nkv_topo_path(t, pr[i].src, pr[i].dst, links);
		double bw = nkv_topo_tier_bw(t, pr[i].tier);

		assert_int_equal(pr[i].tier, nkv_topo_tier(t, pr[i].src, pr[i].dst));
		assert_true(pr[i].src != pr[i].dst);
		/* Big enough: >= 4 MiB and >= 100 x the base latency at the tier figure. */
		assert_true(pr[i].bytes >= 4u << 20);
		assert_true((double)pr[i].bytes / bw >= 100 * nkv_topo_path_latency(t, pr[i].src, pr[i].dst));
		for (int j = 0; j < k; j++)
			used[links[j]] += (double)pr[i].bytes;
		/* Never measured: all equally old, so tiers come in order. */
		if (i)
			assert_true(pr[i].tier >= pr[i - 1].tier);
	}
	for (uint32_t l = 0; l < nl; l++) {
		struct nkv_link_info li;

		nkv_topo_link(t, l, &li);
		if (used[l] > 0.01 * li.bytes_per_s * pp.window_s)
			fail_msg("link %s: %.0f probe bytes > 1%% of %.0f B/s", li.name, used[l], li.bytes_per_s);
	}
	/* Planned paths are not planned again while their probe is out. */
	{
		static struct nkv_probe first[4096];
		int nfirst = n;

		memcpy(first, pr, (size_t)n * sizeof(pr[0]));
		n2 = nkv_probe_plan(o, &pp, 0.5, pr, 4096);
		assert_true(n2 > 0); /* what the budget left out at 0 comes now */
		for (int i = 0; i < n2; i++)
			for (int j = 0; j < nfirst; j++)
				if (pr[i].src == first[j].src && pr[i].dst == first[j].dst)
					fail_msg("path %u -> %u planned at 0 and again at 0.5", pr[i].src, pr[i].dst);
	}
	/* Oldest first: give every path a fresh sample except 0 -> 40. */
	nkv_oracle_free(o);
	{
		uint32_t src[1] = { 0 }, dst[3] = { 8, 16, 40 };

		assert_int_equal(nkv_oracle_create(t, NULL, src, 1, dst, 3, &o), 0);
		nkv_oracle_sample(o, 0, 8, 1 << 30, 0.1, 5.0, NKV_SAMPLE_PASSIVE);
		nkv_oracle_sample(o, 0, 16, 1 << 30, 0.1, 2.0, NKV_SAMPLE_PASSIVE);
		n = nkv_probe_plan(o, &pp, 10.0, pr, 3);
		assert_int_equal(n, 3);
		assert_int_equal(pr[0].dst, 40); /* never measured */
		assert_int_equal(pr[1].dst, 16); /* 8 s old */
		assert_int_equal(pr[2].dst, 8);  /* 5 s old */
		/* min_age: a path measured 0.5 s ago is left alone. */
		nkv_oracle_free(o);
		assert_int_equal(nkv_oracle_create(t, NULL, src, 1, dst, 3, &o), 0);
		nkv_oracle_sample(o, 0, 8, 1 << 30, 0.1, 9.5, NKV_SAMPLE_PASSIVE);
		n = nkv_probe_plan(o, &pp, 10.0, pr, 3);
		assert_int_equal(n, 2);
		/* A tiny budget fits nothing: 4 MiB > 1e-6 * 50 GB/s * 1 s. */
		pp.budget = 1e-6;
		nkv_oracle_free(o);
		assert_int_equal(nkv_oracle_create(t, NULL, src, 1, dst, 3, &o), 0);
		assert_int_equal(nkv_probe_plan(o, &pp, 10.0, pr, 3), 0);
		pp.budget = 2;
		assert_int_equal(nkv_probe_plan(o, &pp, 10.0, pr, 3), -EINVAL);
		/* Parameters that would overflow the probe size or skip the age test are refused. */
		nkv_probe_defaults(o, &pp);
		pp.latency_factor = INFINITY;
		assert_int_equal(nkv_probe_plan(o, &pp, 10.0, pr, 3), -EINVAL);
		nkv_probe_defaults(o, &pp);
		pp.min_age_s = NAN;
		assert_int_equal(nkv_probe_plan(o, &pp, 10.0, pr, 3), -EINVAL);
		/* A huge minimum size is capped, not wrapped to a tiny probe. */
		nkv_probe_defaults(o, &pp);
		pp.min_bytes = UINT64_MAX;
		pp.budget = 1;
		pp.window_s = 1e300;
		assert_int_equal(nkv_probe_plan(o, &pp, 10.0, pr, 3), 3);
		assert_true(pr[0].bytes >= (uint64_t)1 << 62);
	}
	free(used);
	nkv_oracle_free(o);
	nkv_topo_free(t);
}

/*
 * Property: for refresh intervals 100 ms .. 60 s (staleness bound 5x),
 * paths of tiers 1, 2, 3 sampled with throughput noise bounded to +-30% of
 * their tier's true figure (50, 25, 6.25 GB/s: neighbours differ by >= 2x,
 * so +-30% cannot overlap), at random times with random gaps (some longer
 * than the staleness bound, so some paths fall back to the tier figure
 * while others are measured), the oracle's cost ranks tier 1 < tier 2 <
 * tier 3 at every check, for several transfer sizes.
 */
static void test_property_tier_ranking_under_staleness(void **st)
{
	struct nkv_topo *t = tree();
	const double refresh[] = { 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60 };
	const uint32_t dst[3] = { 8, 16, 40 }; /* tiers 1, 2, 3 from 0 */
	const double truth[3] = { 50e9, 25e9, 6.25e9 };
	const uint64_t sizes[3] = { 64ull << 20, 512ull << 20, 4ull << 30 };
	unsigned seed = 12345;
	long checks = 0, fallback = 0, measured = 0;

	(void)st;
	for (size_t ri = 0; ri < sizeof(refresh) / sizeof(refresh[0]); ri++) {
		struct nkv_oracle_params p;
		struct nkv_oracle *o;
		uint32_t src[1] = { 0 };
		double now = 0, next[3] = { 0, 0, 0 };

		nkv_oracle_defaults(&p);
		p.refresh_s = refresh[ri];
		assert_int_equal(nkv_oracle_create(t, &p, src, 1, dst, 3, &o), 0);
		for (int step = 0; step < 2000; step++) {
			now += refresh[ri] * (0.05 + 0.5 * rand_r(&seed) / (double)RAND_MAX);
			for (int k = 0; k < 3; k++) {
				if (now >= next[k]) {
					double noise = 1 + 0.6 * (rand_r(&seed) / (double)RAND_MAX - 0.5); /* +-30% */
					uint64_t bytes = (64ull << 20) + (uint64_t)(rand_r(&seed) % 1024) * (1 << 20);
					double secs = (double)bytes / (truth[k] * noise) +
						      nkv_topo_path_latency(t, 0, dst[k]);

					assert_true(nkv_oracle_sample(o, 0, dst[k], bytes, secs, now,
								      NKV_SAMPLE_PASSIVE) >= 0);
					/* Gaps from 0.1 to 20 refresh intervals: some beyond the 5x bound. */
					next[k] = now + refresh[ri] * (0.1 + 20.0 * rand_r(&seed) / (double)RAND_MAX);
				}
			}
			nkv_oracle_tick(o, now);
			for (int k = 0; k < 3; k++) {
				bool fresh;

				nkv_oracle_bw(o, 0, dst[k], now, &fresh);
				fresh ? measured++ : fallback++;
			}
			for (int z = 0; z < 3; z++) {
				double c1 = nkv_oracle_cost(o, 0, dst[0], sizes[z], now);
				double c2 = nkv_oracle_cost(o, 0, dst[1], sizes[z], now);
				double c3 = nkv_oracle_cost(o, 0, dst[2], sizes[z], now);

				if (!(c1 < c2 && c2 < c3))
					fail_msg("refresh %g s, t=%g, %llu bytes: costs %g %g %g not ranked by tier",
						 refresh[ri], now, (unsigned long long)sizes[z], c1, c2, c3);
				checks++;
			}
		}
		nkv_oracle_free(o);
	}
	/* Both regimes were exercised, not just one. */
	assert_true(measured > 1000 && fallback > 1000);
	print_message("property: %ld checks, %ld measured / %ld fallback path states\n", checks, measured, fallback);
	nkv_topo_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ewma_refresh_stale),
		cmocka_unit_test(test_too_many_paths),
		cmocka_unit_test(test_congestion),
		cmocka_unit_test(test_figures),
		cmocka_unit_test(test_probe_budget),
		cmocka_unit_test(test_property_tier_ranking_under_staleness),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
