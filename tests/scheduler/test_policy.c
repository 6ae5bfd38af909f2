/*
 * Each decode policy on small hand-built clusters where the right answer is
 * worked out by hand (64-GPU fat tree: instances 0..7 host 0, 8..15 host 1
 * on the same leaf, 16..31 the other leaf of pod 0, 32..63 pod 1).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <string.h>

#include "netkv_sched.h"
#include "nkv_util.h"

#define KIB 1024ull
#define BPT (128 * KIB) /* llama3-8b */

static void near(double got, double want, double rel)
{
	if (fabs(got - want) > rel * fabs(want) + 1e-15)
		fail_msg("got %.9g want %.9g", got, want);
}

static struct nkv_topo *tree(double oversub_leaf, double oversub_spine)
{
	struct nkv_fat_tree_params p;
	struct nkv_topo *t;

	nkv_fat_tree_defaults(&p);
	p.oversub_leaf = oversub_leaf;
	p.oversub_spine = oversub_spine;
	assert_int_equal(nkv_topo_fat_tree(&p, &t), 0);
	return t;
}

static struct nkv_sched *mk(struct nkv_topo *t, const char *policy, const uint32_t *dec, uint32_t nd,
			    struct nkv_sched_params *pp)
{
	struct nkv_perf perf;
	struct nkv_sched_params p;
	struct nkv_sched *s;
	uint32_t pre[1] = { 0 };

	assert_int_equal(nkv_perf_preset("llama3-8b", "h100", &perf), 0);
	if (pp)
		p = *pp;
	else
		nkv_sched_defaults(&p);
	p.policy = policy;
	if (nkv_sched_create(t, &perf, &p, pre, 1, dec, nd, &s))
		fail_msg("create: %s", nkv_last_error());
	return s;
}

/* A request of nb 512-token blocks with ids base, base+1, ... */
static void req(struct nkv_request *r, uint64_t *ids, uint32_t nb, uint64_t base)
{
	memset(r, 0, sizeof(*r));
	for (uint32_t i = 0; i < nb; i++)
		ids[i] = base + i;
	r->input_len = nb * 512;
	r->output_len = 100;
	r->hash_ids = ids;
	r->nblocks = nb;
	r->kv_bytes_per_token = BPT;
}

static int decide(struct nkv_sched *s, const struct nkv_request *r, double now)
{
	struct nkv_decision d;

	if (nkv_sched_decide(s, r, now, &d))
		fail_msg("decide: %s", nkv_last_error());
	return (int)d.decode;
}

/*
 * The headline case. Prefill on instance 0 (pod 0). Decode A = 32 (other
 * pod, holds 6 of the request's 8 blocks), decode B = 8 (same leaf, holds
 * 2). Spine->core 4:1, so a cross-pod GPU's share is 50 GB/s / 4 =
 * 12.5 GB/s; same leaf 50 GB/s.
 *   A: 2 blocks missing = 1024 tok * 128 KiB = 128 MiB: 3 us + 134217728 / 12.5e9 = 10.740 ms
 *   B: 6 blocks missing = 384 MiB: 1 us + 402653184 / 50e9 = 8.054 ms
 * netkv picks B; cache and cla pick A (more held, same load). On a 1:1
 * fabric (the control) A costs 3 us + 2.684 ms and netkv picks A too.
 */
static void test_cross_pod_cache_loses_to_same_leaf(void **st)
{
	struct nkv_topo *t = tree(1, 4);
	uint32_t dec[2] = { 32, 8 };
	uint64_t ids[8];
	struct nkv_request r;
	struct nkv_decision d;
	const char *pol[] = { "cache", "cla", "netkv", "netkv-static" };
	const int want[] = { 0, 0, 1, 1 };

	(void)st;
	near(nkv_topo_tier_bw(t, 3), 12.5e9, 1e-12);
	near(nkv_topo_tier_bw(t, 1), 50e9, 1e-12);
	req(&r, ids, 8, 100);
	for (int i = 0; i < 4; i++) {
		struct nkv_sched *s = mk(t, pol[i], dec, 2, NULL);

		assert_int_equal(nkv_prefix_add(nkv_sched_decode_index(s), 0, ids, 6), 0);
		assert_int_equal(nkv_prefix_add(nkv_sched_decode_index(s), 1, ids, 2), 0);
		assert_int_equal(nkv_sched_decide(s, &r, 10.0, &d), 0);
		if ((int)d.decode != want[i])
			fail_msg("%s chose %u, want %d", pol[i], d.decode, want[i]);
		if (!strcmp(pol[i], "netkv")) {
			assert_int_equal(d.tier, 1);
			assert_int_equal(d.held_blocks, 2);
			assert_int_equal(d.bytes, 6 * 512 * BPT);
			near(d.est_xfer_s, 1e-6 + 402653184.0 / 50e9, 1e-9);
			near(nkv_oracle_cost(nkv_sched_oracle(s), 0, 32, 2 * 512 * BPT, 10.0),
			     3e-6 + 134217728.0 / 12.5e9, 1e-9);
		}
		nkv_sched_free(s);
	}
	nkv_topo_free(t);

	/* Control: 1:1 everywhere, the gain must vanish (netkv agrees with cache). */
	t = tree(1, 1);
	{
		struct nkv_sched *s = mk(t, "netkv", dec, 2, NULL);

		nkv_prefix_add(nkv_sched_decode_index(s), 0, ids, 6);
		nkv_prefix_add(nkv_sched_decode_index(s), 1, ids, 2);
		assert_int_equal(decide(s, &r, 10.0), 0);
		nkv_sched_free(s);
	}
	nkv_topo_free(t);
}

static void test_rr_random(void **st)
{
	struct nkv_topo *t = tree(1, 1);
	uint32_t dec[3] = { 8, 16, 32 };
	uint64_t ids[2];
	struct nkv_request r;
	struct nkv_sched *s = mk(t, "rr", dec, 3, NULL);
	int seen[3] = { 0 }, orders = 0, first[3];

	(void)st;
	req(&r, ids, 2, 0);
	/* rr: every decode once a round; the order is reshuffled each round,
	 * so it cannot lock step with the prefill round-robin. */
	for (int round = 0; round < 20; round++) {
		int got[3] = { 0 }, o[3];
		for (int i = 0; i < 3; i++)
			got[o[i] = decide(s, &r, 0)]++;
		for (int i = 0; i < 3; i++)
			assert_int_equal(got[i], 1);
		if (round == 0)
			memcpy(first, o, sizeof(first));
		else if (memcmp(first, o, sizeof(first)))
			orders++;
	}
	assert_true(orders > 0);
	assert_int_equal(nkv_sched_set_policy(s, "random"), 0);
	for (int i = 0; i < 300; i++)
		seen[decide(s, &r, 0)]++;
	/* Uniform: each of 3 gets 100 +- a lot; 50 is > 7 sigma away. */
	for (int i = 0; i < 3; i++)
		assert_true(seen[i] > 50 && seen[i] < 150);
	assert_int_equal(nkv_sched_set_policy(s, "nope"), -ENOENT);
	assert_non_null(strstr(nkv_last_error(), "netkv-static"));
	assert_string_equal(nkv_sched_policy_name(s), "random");
	nkv_sched_free(s);
	nkv_topo_free(t);
}

static void test_load_and_cache(void **st)
{
	struct nkv_topo *t = tree(1, 1);
	uint32_t dec[3] = { 32, 16, 8 };
	uint64_t ids[4];
	struct nkv_request r;
	struct nkv_sched *s = mk(t, "load", dec, 3, NULL);

	(void)st;
	req(&r, ids, 4, 0);
	nkv_sched_decode(s, 0)->running = 10;
	nkv_sched_decode(s, 1)->running = 3;
	nkv_sched_decode(s, 2)->running = 7;
	/* load = max(kv share (0 here), running / 256): 3 is least. */
	assert_int_equal(decide(s, &r, 0), 1);
	near(nkv_sched_decode_load(s, 1), 3.0 / 256, 1e-12);
	/* KV use counts: 1 has 3 seqs but a nearly full pool. */
	nkv_sched_decode(s, 1)->kv_blocks_used = nkv_sched_decode(s, 1)->kv_blocks_total * 9 / 10;
	assert_int_equal(decide(s, &r, 0), 2);

	/* cache: most held wins; a tie goes to the lower load (never the tier:
	 * d1 is tier 2 from prefill 0, d0 tier 3, and d0 wins on load). */
	assert_int_equal(nkv_sched_set_policy(s, "cache"), 0);
	nkv_prefix_add(nkv_sched_decode_index(s), 0, ids, 3);
	nkv_prefix_add(nkv_sched_decode_index(s), 1, ids, 3);
	nkv_prefix_add(nkv_sched_decode_index(s), 2, ids + 1, 3); /* not leading: counts 0 */
	nkv_sched_decode(s, 1)->kv_blocks_used = 0;
	nkv_sched_decode(s, 1)->running = 11;
	assert_int_equal(decide(s, &r, 0), 0);
	nkv_prefix_add(nkv_sched_decode_index(s), 2, ids, 1);      /* now leading 4 */
	assert_int_equal(decide(s, &r, 0), 2);
	nkv_sched_free(s);
	nkv_topo_free(t);
}

/*
 * cla: (1 - hit) + load.  With running = 0.9/0.1/0.3 * 256 and hits 4/4, 0/4, 2/4:
 *   d0 0 + 0.9 = 0.9, d1 1 + 0.1 = 1.1, d2 0.5 + 0.3 = 0.8 -> d2
 * cla* with w_cache 3: d0 0.9, d1 3.1, d2 1.8 -> d0
 * netkv-topo (w_cache 1, w_load 1, w_tier 0.5): d0 (tier 3) 0.9 + 0.5 = 1.4,
 *   d1 (tier 2) 1.1 + 0.333 = 1.433, d2 (tier 1) 0.8 + 0.1667 = 0.967 -> d2;
 *   with w_tier 3: d0 3.9, d1 3.1, d2 1.8 -> d2; make d2 busy (load 1.3): d2 2.8+... see below.
 */
static void test_cla_family(void **st)
{
	struct nkv_topo *t = tree(1, 1);
	uint32_t dec[3] = { 32, 16, 8 };
	uint64_t ids[4];
	struct nkv_request r;
	struct nkv_sched_params p;
	struct nkv_sched *s;
	struct nkv_decision d;

	(void)st;
	req(&r, ids, 4, 50);
	nkv_sched_defaults(&p);
	p.w_cache = 3;
	p.w_load = 1;
	s = mk(t, "cla", dec, 3, &p);
	nkv_sched_decode(s, 0)->running = 230; /* 0.898 */
	nkv_sched_decode(s, 1)->running = 26;  /* 0.102 */
	nkv_sched_decode(s, 2)->running = 77;  /* 0.301 */
	nkv_prefix_add(nkv_sched_decode_index(s), 0, ids, 4);
	nkv_prefix_add(nkv_sched_decode_index(s), 2, ids, 2);
	assert_int_equal(nkv_sched_decide(s, &r, 0, &d), 0);
	assert_int_equal(d.decode, 2);
	near(d.score, 0.5 + 77.0 / 256, 1e-12);
	assert_int_equal(nkv_sched_set_policy(s, "cla*"), 0);
	assert_int_equal(nkv_sched_decide(s, &r, 0, &d), 0);
	assert_int_equal(d.decode, 0);
	near(d.score, 230.0 / 256, 1e-12);
	nkv_sched_free(s);

	/* netkv-topo: same cla* base with w_cache 1; the tier term decides between near-equals. */
	p.w_cache = 1;
	p.w_tier = 3;
	s = mk(t, "netkv-topo", dec, 3, &p);
	nkv_sched_decode(s, 0)->running = 0;   /* tier 3: 0 + 0 + 3 = 3 */
	nkv_sched_decode(s, 1)->running = 128; /* tier 2: 1 + 0.5 + 2 = 3.5 */
	nkv_sched_decode(s, 2)->running = 192; /* tier 1: 1 + 0.75 + 1 = 2.75 */
	nkv_prefix_add(nkv_sched_decode_index(s), 0, ids, 4);
	assert_int_equal(nkv_sched_decide(s, &r, 0, &d), 0);
	assert_int_equal(d.decode, 2);
	near(d.score, 2.75, 1e-12);
	/* Without the tier term it would be d0. */
	assert_int_equal(nkv_sched_set_policy(s, "cla*"), 0);
	assert_int_equal(decide(s, &r, 0), 0);
	nkv_sched_free(s);
	nkv_topo_free(t);
}

/*
 * netkv vs netkv-static: measurements and congestion. Two same-pod
 * candidates, equal tiers (d0 = 16, d1 = 24, both tier 2 from 0), nothing
 * cached, same load. Static and netkv agree (tie -> index 0) until the
 * oracle learns d0's path runs at 5 GB/s: netkv moves to d1, static stays.
 * Then congestion on d1's path (2 GB in flight on its NIC downlink: 40 ms
 * to drain at 50 GB/s) sends netkv back to d0:
 *   d0: 2 us + 4 blocks*64 MiB... computed below.
 */
static void test_netkv_measured_and_congestion(void **st)
{
	struct nkv_topo *t = tree(2, 4);
	uint32_t dec[2] = { 16, 24 };
	uint64_t ids[4], bytes = 4 * 512 * BPT; /* 256 MiB */
	struct nkv_request r;
	uint32_t pre[2] = { 0, 40 };
	struct nkv_perf perf;
	struct nkv_sched_params p;
	struct nkv_sched *s;
	struct nkv_oracle *o;
	struct nkv_decision d;
	double x0, x1;

	(void)st;
	/* Prefill 40 (pod 1) only carries the congesting flow; with nothing
	 * cached, the load-aware prefill choice picks prefill 0, whose queue
	 * is empty while 40's is long. */
	nkv_perf_preset("llama3-8b", "h100", &perf);
	nkv_sched_defaults(&p);
	p.prefill_policy = NKV_PREFILL_CACHE;
	assert_int_equal(nkv_sched_create(t, &perf, &p, pre, 2, dec, 2, &s), 0);
	nkv_sched_prefill(s, 1)->queued_tokens = 1u << 20;
	o = nkv_sched_oracle(s);
	req(&r, ids, 4, 7);
	assert_int_equal(decide(s, &r, 1.0), 0);
	/* A 1 GB transfer to d0 took 0.2 s: 5 GB/s (latency 2 us taken out). */
	assert_int_equal(nkv_oracle_sample(o, 0, 16, 1000000000, 0.2 + 2e-6, 1.0, NKV_SAMPLE_PASSIVE), 1);
	/* Not visible before the next refresh tick (refresh 1 s: ticks at 1, 2, ...). */
	assert_int_equal(nkv_sched_decide(s, &r, 1.5, &d), 0);
	assert_int_equal(d.decode, 0);
	assert_int_equal(decide(s, &r, 2.0), 1);
	assert_int_equal(nkv_sched_set_policy(s, "netkv-static"), 0);
	assert_int_equal(decide(s, &r, 2.0), 0);
	assert_int_equal(nkv_sched_set_policy(s, "netkv"), 0);
	/* d0 now: 2 us + 256 MiB / 5e9 = 53.69 ms; d1: 2 us + 256 MiB / 25e9 = 10.74 ms.
	 * A flow 40 -> 24 (cross-pod) of 2 GB: on d1's path it loads leaf1>h3n0
	 * (50 GB/s): + 40 ms -> 50.74 ms; on d0's path only spine0>leaf1
	 * (400 GB/s at 2:1): + 5 ms -> 58.69 ms. Still d1.
	 * 3 GB: d1 + 60 ms = 70.74 ms, d0 + 7.5 ms = 61.19 ms -> d0. */
	assert_int_equal(nkv_oracle_flow_add(o, 40, 24, 2000000000), 0);
	assert_int_equal(decide(s, &r, 2.0), 1);
	assert_int_equal(nkv_oracle_flow_add(o, 40, 24, 1000000000), 0);
	assert_int_equal(nkv_sched_decide(s, &r, 2.0, &d), 0);
	assert_int_equal(d.decode, 0);
	assert_int_equal(d.prefill_inst, 0);
	x0 = nkv_oracle_cost(o, 0, 16, bytes, 2.0);
	x1 = nkv_oracle_cost(o, 0, 24, bytes, 2.0);
	near(x0, 2e-6 + 268435456.0 / 5e9 + 3e9 / 400e9, 1e-9);
	near(x1, 2e-6 + 268435456.0 / 25e9 + 3e9 / 50e9, 1e-9);
	/* Stale after 5 s (5 * refresh): back to the tier figure, congestion still counts. */
	near(nkv_oracle_cost(o, 0, 16, bytes, 7.5), 2e-6 + 268435456.0 / 25e9 + 3e9 / 400e9, 1e-9);
	/* All transfers finish: congestion back to zero, costs back to bare. */
	assert_int_equal(nkv_oracle_flow_remove(o, 40, 24, 3000000000), 0);
	assert_int_equal(nkv_oracle_inflight_total(o), 0);
	near(nkv_oracle_cost(o, 0, 24, bytes, 2.0), 2e-6 + 268435456.0 / 25e9, 1e-9);
	nkv_sched_free(s);
	nkv_topo_free(t);
}

/* Ties: the topology-aware policies take the lower tier, then the lower
 * load; the oblivious ones never the tier: the lower load, then at random. */
static void test_ties(void **st)
{
	struct nkv_topo *t = tree(1, 1);
	uint32_t dec[3] = { 40, 24, 17 };
	uint64_t ids[1];
	struct nkv_request r;
	struct nkv_sched *s = mk(t, "netkv-static", dec, 3, NULL);
	static const char *const blind[] = { "load", "cache", "cla", "cla*" };
	int seen[3];

	(void)st;
	req(&r, ids, 1, 0);
	/* Nothing to move: equal scores; tiers 3, 2, 2 -> 24 or 17; equal load -> index 1. */
	assert_int_equal(decide(s, &r, 0), 1);
	nkv_sched_decode(s, 1)->running = 5;
	assert_int_equal(decide(s, &r, 0), 2);
	nkv_sched_decode(s, 1)->running = 0;
	for (size_t k = 0; k < sizeof(blind) / sizeof(blind[0]); k++) {
		assert_int_equal(nkv_sched_set_policy(s, blind[k]), 0);
		memset(seen, 0, sizeof(seen));
		for (int i = 0; i < 300; i++)
			seen[decide(s, &r, 0)]++;
		/* Uniform over the three (tier 3 included): > 7 sigma from 50. */
		for (int i = 0; i < 3; i++)
			assert_true(seen[i] > 50 && seen[i] < 150);
		/* A lower load still wins outright. */
		nkv_sched_decode(s, 1)->running = 5;
		nkv_sched_decode(s, 2)->running = 5;
		for (int i = 0; i < 10; i++)
			assert_int_equal(decide(s, &r, 0), 0);
		nkv_sched_decode(s, 1)->running = 0;
		nkv_sched_decode(s, 2)->running = 0;
	}
	nkv_sched_free(s);
	nkv_topo_free(t);
}

/* The prefill choice (cache): a prefix hit draws a request only while the
 * queue it costs is shorter than the work it saves; once the holder is
 * busy the others take requests, and ties do not favour an index. */
static void test_prefill_load_aware(void **st)
{
	struct nkv_topo *t = tree(1, 1);
	uint32_t pre[4] = { 0, 1, 2, 3 }, dec[2] = { 4, 5 }, used[4] = { 0 };
	uint64_t ids[8];
	struct nkv_perf perf;
	struct nkv_sched_params p;
	struct nkv_sched *s;
	struct nkv_request r;
	struct nkv_decision d;

	(void)st;
	nkv_perf_preset("llama3-8b", "h100", &perf);
	nkv_sched_defaults(&p);
	p.prefill_policy = NKV_PREFILL_CACHE;
	p.policy = "load";
	assert_int_equal(nkv_sched_create(t, &perf, &p, pre, 4, dec, 2, &s), 0);
	req(&r, ids, 8, 100);            /* 4096 tokens, 8 blocks */
	nkv_prefix_add(nkv_sched_prefill_index(s), 2, ids, 7); /* prefill 2 holds 7 of them */
	/* Idle cluster: the hit wins (512 tokens of work instead of 4096). */
	assert_int_equal(nkv_sched_decide(s, &r, 0, &d), 0);
	assert_int_equal(d.prefill, 2);
	assert_int_equal(d.prefill_held_blocks, 7);
	/* Assigned and never finished, 40 such requests queue up. Each costs
	 * prefill 2 512 tokens and any other 4096: prefill 2 takes them while
	 * its queue is the shorter by that measure, the others share the
	 * rest, and the queued work stays level (within one request's 4096
	 * tokens). Before, all 40 went to prefill 2 whatever its queue. */
	for (int i = 0; i < 40; i++) {
		assert_int_equal(nkv_sched_decide(s, &r, 0, &d), 0);
		assert_int_equal(nkv_sched_assign(s, &r, &d), 0);
		used[d.prefill]++;
	}
	uint64_t lo = UINT64_MAX, hi = 0;
	for (uint32_t i = 0; i < 4; i++) {
		uint64_t q = nkv_sched_prefill(s, i)->queued_tokens;
		lo = q < lo ? q : lo;
		hi = q > hi ? q : hi;
		assert_true(used[i] > 0);
	}
	assert_true(hi - lo <= 4096);
	assert_true(used[2] > used[0] && used[2] < 40);
	/* The three without the prefix got the same share, +-1. */
	assert_true(used[0] + 1 >= used[1] && used[1] + 1 >= used[0] && used[3] + 1 >= used[0] && used[0] + 1 >= used[3]);
	nkv_sched_free(s);
	nkv_topo_free(t);
}

/* Bookkeeping: assign / transfer done / admit / finish bring everything back. */
static void test_lifecycle(void **st)
{
	struct nkv_topo *t = tree(1, 1);
	uint32_t dec[2] = { 8, 40 };
	uint64_t ids[3];
	struct nkv_request r;
	struct nkv_sched *s = mk(t, "netkv", dec, 2, NULL);
	struct nkv_oracle *o = nkv_sched_oracle(s);
	struct nkv_decision d;
	struct nkv_decode_state *ds;

	(void)st;
	req(&r, ids, 3, 900);
	assert_int_equal(nkv_sched_decide(s, &r, 0, &d), 0);
	assert_int_equal(d.decode, 0); /* same leaf */
	assert_int_equal(d.bytes, 3 * 512 * BPT);
	assert_int_equal(nkv_sched_assign(s, &r, &d), 0);
	ds = nkv_sched_decode(s, 0);
	assert_int_equal(ds->queued, 1);
	assert_int_equal(ds->queued_tokens, 1536 + 100);
	assert_int_equal(nkv_sched_prefill(s, 0)->queued_tokens, 1536);
	assert_int_equal(nkv_oracle_inflight_total(o), 2 * d.bytes); /* NIC up + NIC down */
	assert_int_equal(nkv_sched_transfer_done(s, &r, &d, 0.01, 0.5), 0);
	assert_int_equal(nkv_oracle_inflight_total(o), 0);
	assert_int_equal(nkv_sched_prefill(s, 0)->queued, 0);
	assert_int_equal(nkv_sched_admit(s, &r, &d), 0);
	assert_int_equal(ds->running, 1);
	assert_int_equal(ds->kv_blocks_used, (1636 + 15) / 16);
	assert_int_equal(nkv_sched_finish(s, &r, &d), 0);
	assert_int_equal(ds->running + ds->queued + ds->kv_blocks_used + ds->running_tokens + ds->queued_tokens, 0);
	/* d0 now holds the prefix, and the prefill too: nothing to move next time. */
	assert_int_equal(nkv_sched_decide(s, &r, 1.0, &d), 0);
	assert_int_equal(d.decode, 0);
	assert_int_equal(d.held_blocks, 3);
	assert_int_equal(d.prefill_held_blocks, 3);
	assert_int_equal(d.bytes, 0);
	nkv_sched_free(s);
	nkv_topo_free(t);
}

/* Decode-side wait: hand-computed from the formula in netkv_sched.h. */
static void test_wait(void **st)
{
	struct nkv_topo *t = tree(1, 1);
	uint32_t dec[1] = { 8 };
	uint64_t ids[2];
	struct nkv_request r;
	struct nkv_sched *s = mk(t, "netkv", dec, 1, NULL);
	const struct nkv_perf *pf = nkv_sched_perf(s);
	struct nkv_decode_state *ds = nkv_sched_decode(s, 0);
	double iter;

	(void)st;
	req(&r, ids, 2, 0); /* 1024 in, 100 out */
	ds->running = 10;
	ds->running_tokens = 20000;
	iter = pf->decode_a + pf->decode_b * 21024 + pf->decode_c * 11;
	near(nkv_sched_decode_wait(s, 0, &r), iter, 1e-12);
	/* Pool nearly full: 500 free tokens, 1124 needed + 1000 queued -> 1624 short. */
	ds->kv_blocks_total = 10000;
	ds->kv_blocks_used = 10000 - 500 / 16; /* 31 blocks = 496 tokens free */
	ds->queued_tokens = 1000;
	near(nkv_sched_decode_wait(s, 0, &r), 256 * iter * (2124.0 - 496) / 20000 + iter, 1e-12);
	nkv_sched_free(s);
	nkv_topo_free(t);
}

/*
 * The TBT-aware objective (issue #18): the old netkv score (wait + xfer,
 * w_tbt = 0) packs a request onto the prefill's own host, whose running
 * batch it slows; the default (w_tbt = 16) sends it one hop away.
 * llama3-8b on H100: decode a = 8.8486 ms, b = 5.58942e-8 s/token,
 * c = 4.05966e-5 s/sequence. Prefill on instance 0 (host 0); d0 = instance
 * 4 (same host, NVLink), d1 = instance 8 (host 1, same leaf, 1:1 fabric).
 * Request: 2048 tokens in (4 blocks, 256 MiB of KV), 100 out.
 * d0 runs 8 sequences holding 32000 tokens; d1 is idle.
 *   xfer(d0) = 0.5985 ms, xfer(d1) = 5.3697 ms (oracle, tier figures)
 *   wait(d0) - wait(d1) = b * 32000 + c * 8 = 1.7886 + 0.3248 = 2.1134 ms
 *   old: score(d0) - score(d1) = 2.1134 - 4.7712 = -2.6578 ms -> d0 (packs)
 *   pack: own(d0) - own(d1) = 2.1134 ms (same iteration growth as wait);
 *         slow(d0) = 8 * (b * 2048 + c) = 8 * 0.155068 = 1.24054 ms,
 *         ov = 100 / 256 = 0.390625 -> 0.48459 ms; slow(d1) = 0
 *         pack(d0) - pack(d1) = 2.59798 ms
 *   new: -2.6578 + 16 * 2.59798 = +38.91 ms -> d1
 *   (the two agree again below w_tbt = 2.6578 / 2.59798 = 1.023)
 * pack(d1) = own(d1) = a + b * 2048 + c = 9.00368 ms.
 */
static void test_tbt_aware(void **st)
{
	struct nkv_topo *t = tree(1, 1);
	uint32_t dec[2] = { 4, 8 };
	uint64_t ids[4];
	struct nkv_request r;
	struct nkv_sched_params p;
	struct nkv_sched *s;
	struct nkv_decision d;

	(void)st;
	nkv_sched_defaults(&p);
	assert_true(p.w_tbt == NKV_W_TBT_DEFAULT && NKV_W_TBT_DEFAULT == 16.0);
	req(&r, ids, 4, 500);
	for (int k = 0; k < 4; k++) {
		static const double w[4] = { 0, 1.0, 1.05, 16 };
		static const int want[4] = { 0, 0, 1, 1 };

		p.w_tbt = w[k];
		s = mk(t, "netkv", dec, 2, &p);
		nkv_sched_decode(s, 0)->running = 8;
		nkv_sched_decode(s, 0)->running_tokens = 32000;
		assert_int_equal(nkv_sched_decide(s, &r, 0, &d), 0);
		if ((int)d.decode != want[k])
			fail_msg("w_tbt %g: decode %u, want %d", w[k], d.decode, want[k]);
		if (want[k] == 1) {
			near(d.est_pack_s, 8.84861407e-3 + 5.58942431e-8 * 2048 + 4.05965622e-5, 1e-8);
			near(d.score - d.est_ttft_s, w[k] * d.est_pack_s, 1e-12);
		}
		nkv_sched_set_policy(s, "netkv-static"); /* the same term */
		assert_int_equal(nkv_sched_decide(s, &r, 0, &d), 0);
		assert_int_equal((int)d.decode, want[k]);
		nkv_sched_free(s);
	}
	/* pack's parts on d0, by the formula. */
	p.w_tbt = 16;
	s = mk(t, "netkv", dec, 2, &p);
	nkv_sched_decode(s, 0)->running = 8;
	nkv_sched_decode(s, 0)->running_tokens = 32000;
	nkv_sched_set_policy(s, "load"); /* d1 (less loaded) */
	nkv_sched_decode(s, 1)->running = 9;
	assert_int_equal(nkv_sched_decide(s, &r, 0, &d), 0);
	assert_int_equal(d.decode, 0);
	near(d.est_pack_s, 8.84861407e-3 + 5.58942431e-8 * 34048 + 4.05965622e-5 * 9 +
				   (100.0 / 256) * 8 * (5.58942431e-8 * 2048 + 4.05965622e-5), 1e-8);
	nkv_sched_free(s);
	/* The folded score row (policy.c) equals w_wait * wait + w_xfer * xfer
	 * + w_tbt * pack by the formulas, with room and without (pool full,
	 * batch full), for seeded random states. */
	{
		uint64_t rng = 12345;

		p.w_tbt = 16;
		p.w_wait = 1.5;
		p.w_xfer = 0.75;
		s = mk(t, "netkv", dec, 1, &p);
		for (int i = 0; i < 200; i++) {
			struct nkv_decode_state *ds = nkv_sched_decode(s, 0);

			rng = rng * 6364136223846793005ull + 1442695040888963407ull;
			ds->running = (uint32_t)(rng >> 33) % 300;
			ds->queued = (uint32_t)(rng >> 20) % 8;
			ds->running_tokens = (uint64_t)ds->running * ((rng >> 40) % 8000);
			ds->queued_tokens = (uint64_t)ds->queued * ((rng >> 12) % 6000);
			ds->kv_blocks_total = 40000;
			ds->kv_blocks_used = i % 3 ? (rng >> 28) % 30000 : 39990;
			r.output_len = 1 + (uint32_t)((rng >> 7) % 600);
			assert_int_equal(nkv_sched_decide(s, &r, 0, &d), 0);
			near(d.score, 1.5 * d.est_wait_s + 0.75 * d.est_xfer_s + 16 * d.est_pack_s, 1e-12);
		}
		nkv_sched_free(s);
		r.output_len = 100;
		p.w_wait = p.w_xfer = 1;
	}
	/* A bad weight is refused. */
	p.w_tbt = -1;
	{
		struct nkv_perf perf;
		uint32_t pre[1] = { 0 };

		nkv_perf_preset("llama3-8b", "h100", &perf);
		assert_int_equal(nkv_sched_create(t, &perf, &p, pre, 1, dec, 2, &s), -EINVAL);
		p.w_tbt = NAN;
		assert_int_equal(nkv_sched_create(t, &perf, &p, pre, 1, dec, 2, &s), -EINVAL);
	}
	nkv_topo_free(t);
}

static void test_bad_input(void **st)
{
	struct nkv_topo *t = tree(1, 1);
	uint32_t dec[1] = { 8 }, pre[1] = { 0 };
	struct nkv_perf perf;
	struct nkv_sched_params p;
	struct nkv_sched *s;
	struct nkv_request r = { 0 };
	struct nkv_decision d;

	(void)st;
	nkv_perf_preset("llama3-8b", "h100", &perf);
	nkv_sched_defaults(&p);
	p.policy = "fastest";
	assert_int_equal(nkv_sched_create(t, &perf, &p, pre, 1, dec, 1, &s), -ENOENT);
	p.policy = "rr";
	p.oracle.refresh_s = 0.01;
	assert_int_equal(nkv_sched_create(t, &perf, &p, pre, 1, dec, 1, &s), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "0.1 .. 60"));
	p.oracle.refresh_s = 1;
	p.w_load = -1;
	assert_int_equal(nkv_sched_create(t, &perf, &p, pre, 1, dec, 1, &s), -EINVAL);
	p.w_load = 1;
	dec[0] = 9999;
	assert_int_equal(nkv_sched_create(t, &perf, &p, pre, 1, dec, 1, &s), -EINVAL);
	dec[0] = 8;
	assert_int_equal(nkv_sched_create(t, &perf, &p, pre, 1, dec, 1, &s), 0);
	r.input_len = 10;
	assert_int_equal(nkv_sched_decide(s, &r, 0, &d), -EINVAL); /* no bytes per token */
	{
		uint64_t ids[3] = { 1, 2, 3 };

		r.kv_bytes_per_token = 1;
		r.hash_ids = ids;
		r.nblocks = 2; /* 10 tokens need 1 block */
		assert_int_equal(nkv_sched_decide(s, &r, 0, &d), -EINVAL);
		assert_non_null(strstr(nkv_last_error(), "2 prefix blocks for 10 input tokens"));
		r.nblocks = 1;
		assert_int_equal(nkv_sched_decide(s, &r, 0, &d), 0);
		r.input_len = 1024;
		r.nblocks = 2;
		assert_int_equal(nkv_sched_decide(s, &r, 0, &d), 0);
		r.nblocks = 3;
		assert_int_equal(nkv_sched_decide(s, &r, 0, &d), -EINVAL);
	}
	d.decode = 7;
	assert_int_equal(nkv_sched_assign(s, &r, &d), -EINVAL);
	nkv_sched_free(s);
	nkv_topo_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cross_pod_cache_loses_to_same_leaf),
		cmocka_unit_test(test_rr_random),
		cmocka_unit_test(test_load_and_cache),
		cmocka_unit_test(test_cla_family),
		cmocka_unit_test(test_netkv_measured_and_congestion),
		cmocka_unit_test(test_ties),
		cmocka_unit_test(test_prefill_load_aware),
		cmocka_unit_test(test_lifecycle),
		cmocka_unit_test(test_wait),
		cmocka_unit_test(test_tbt_aware),
		cmocka_unit_test(test_bad_input),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
