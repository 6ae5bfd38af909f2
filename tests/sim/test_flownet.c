/* Max-min fairness of the flow-level network against hand-computed cases. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "netkv_sim.h"
#include "nkv_util.h"

#define GB 1e9

static void near(double got, double want)
{
	if (fabs(got - want) > 1e-9 * fmax(1, fabs(want)))
		fail_msg("got %.12g, want %.12g", got, want);
}

/* Two flows on one 10 GB/s link: 5 each. The first (10 GB) would finish at
 * 1 s alone; sharing, the second (5 GB) drains at 1 s, then the first has
 * 5 GB left at 10 GB/s: done at 1.5 s. */
static void two_flows_share(void **st)
{
	double cap[1] = { 10 * GB };
	uint32_t l0[1] = { 0 };
	struct nkv_flownet *n;
	uint64_t bytes;
	double started;

	assert_int_equal(nkv_flownet_create_links(cap, 1, &n), 0);
	int a = nkv_flownet_add_links(n, l0, 1, (uint64_t)(10 * GB), 0, 0);
	int b = nkv_flownet_add_links(n, l0, 1, (uint64_t)(5 * GB), 0, 0);
	assert_true(a >= 0 && b >= 0);
	near(nkv_flownet_rate(n, a), 5 * GB);
	near(nkv_flownet_rate(n, b), 5 * GB);
	near(nkv_flownet_next(n), 1.0);
	assert_int_equal(nkv_flownet_pop(n, 1.0, &bytes, &started), b);
	assert_int_equal(bytes, (uint64_t)(5 * GB));
	near(nkv_flownet_rate(n, a), 10 * GB);
	near(nkv_flownet_next(n), 1.5);
	assert_int_equal(nkv_flownet_pop(n, 1.5, &bytes, &started), a);
	assert_true(isinf(nkv_flownet_next(n)));
	assert_int_equal(nkv_flownet_active(n), 0);
	nkv_flownet_free(n);
}

/* A capped flow (layer-wise streaming) takes its cap and leaves the rest:
 * A capped at 2 GB/s beside B on one 10 GB/s link: 2 and 8. Lifted at
 * 0.5 s: 5 and 5. Bad caps and unknown flows are refused. */
static void capped_flow(void **st)
{
	double cap[1] = { 10 * GB };
	uint32_t l0[1] = { 0 };
	struct nkv_flownet *n;

	(void)st;
	assert_int_equal(nkv_flownet_create_links(cap, 1, &n), 0);
	int a = nkv_flownet_add_links(n, l0, 1, (uint64_t)(10 * GB), 0, 0);
	int b = nkv_flownet_add_links(n, l0, 1, (uint64_t)(10 * GB), 0, 0);
	assert_int_equal(nkv_flownet_set_cap(n, a, 2 * GB, 0), 0);
	near(nkv_flownet_rate(n, a), 2 * GB);
	near(nkv_flownet_rate(n, b), 8 * GB);
	assert_int_equal(nkv_flownet_set_cap(n, a, INFINITY, 0.5), 0);
	near(nkv_flownet_rate(n, a), 5 * GB);
	near(nkv_flownet_rate(n, b), 5 * GB);
	/* B drained 4 GB by 0.5 s: 6 GB left at 5 GB/s, done at 1.7 s. */
	near(nkv_flownet_next(n), 1.7);
	assert_int_equal(nkv_flownet_set_cap(n, a, 0, 0.5), -EINVAL);
	assert_int_equal(nkv_flownet_set_cap(n, a, NAN, 0.5), -EINVAL);
	assert_int_equal(nkv_flownet_set_cap(n, 99, 1, 0.5), -ENOENT);
	nkv_flownet_free(n);
}

/* Isolated (paced) mode: the same two flows each drain at the link's full
 * 10 GB/s (0.5 s and 1 s); with B crossing a 2 GB/s link too, B gets 2.
 * Overheads: setup 0.1 s is added (A: 1.1 s), a floor of 0.7 s holds the
 * quicker B (0.5 s -> 0.7 s). */
static void isolated_and_overheads(void **st)
{
	double cap[2] = { 10 * GB, 2 * GB };
	uint32_t l0[1] = { 0 }, l01[2] = { 0, 1 };
	struct nkv_flownet *n;
	uint64_t bytes;
	double started;

	assert_int_equal(nkv_flownet_create_links(cap, 2, &n), 0);
	nkv_flownet_set_isolated(n, true);
	int a = nkv_flownet_add_links(n, l0, 1, (uint64_t)(10 * GB), 0, 0);
	int b = nkv_flownet_add_links(n, l0, 1, (uint64_t)(5 * GB), 0, 0);
	int c = nkv_flownet_add_links(n, l01, 2, (uint64_t)(1 * GB), 0, 0);
	near(nkv_flownet_rate(n, a), 10 * GB);
	near(nkv_flownet_rate(n, b), 10 * GB);
	near(nkv_flownet_rate(n, c), 2 * GB);
	assert_int_equal(nkv_flownet_pop(n, 0.5, &bytes, &started), b);
	assert_int_equal(nkv_flownet_pop(n, 0.5, &bytes, &started), c);
	near(nkv_flownet_next(n), 1.0);
	assert_int_equal(nkv_flownet_pop(n, 1.0, &bytes, &started), a);
	nkv_flownet_free(n);

	assert_int_equal(nkv_flownet_create_links(cap, 2, &n), 0);
	nkv_flownet_set_isolated(n, true);
	nkv_flownet_set_overhead(n, 0.1, 0.7);
	a = nkv_flownet_add_links(n, l0, 1, (uint64_t)(10 * GB), 0, 0);
	b = nkv_flownet_add_links(n, l0, 1, (uint64_t)(5 * GB), 0, 0);
	near(nkv_flownet_next(n), 0.5); /* B's last byte drains; it completes at the floor */
	assert_int_equal(nkv_flownet_pop(n, 0.5, &bytes, &started), -ENOENT);
	near(nkv_flownet_next(n), 0.7);
	assert_int_equal(nkv_flownet_pop(n, 0.7, &bytes, &started), b);
	near(nkv_flownet_next(n), 1.0); /* A drains, then its setup */
	assert_int_equal(nkv_flownet_pop(n, 1.0, &bytes, &started), -ENOENT);
	near(nkv_flownet_next(n), 1.1);
	assert_int_equal(nkv_flownet_pop(n, 1.1, &bytes, &started), a);
	nkv_flownet_free(n);
}

/* Token bucket (tbf): 1 GB/s link, 4 MB bucket, 10 GB/s peak. A 10 MB flow
 * runs at 10 GB/s until the bucket is dry (4 MB / 9 GB/s = 0.444 ms, 4.44 MB
 * sent), then at 1 GB/s: done at (10 - 4) MB / 1 GB/s = 6 ms. 2 ms later the
 * bucket has 2 MB again: a 1 MB flow goes at the peak, 0.1 ms. Two 10 MB
 * flows at once share the peak, then the rate. */
static void token_bucket(void **st)
{
	double cap[1] = { 1 * GB };
	uint32_t l0[1] = { 0 };
	struct nkv_flownet *n;
	uint64_t bytes;
	double started;

	assert_int_equal(nkv_flownet_create_links(cap, 1, &n), 0);
	assert_int_equal(nkv_flownet_set_buckets(n, 0.004, 0, 10 * GB, 0), 0);
	int a = nkv_flownet_add_links(n, l0, 1, (uint64_t)(10e6), 0, 0);
	near(nkv_flownet_rate(n, a), 10 * GB);
	near(nkv_flownet_next(n), 4e6 / 9e9);
	assert_int_equal(nkv_flownet_pop(n, 4e6 / 9e9, &bytes, &started), -ENOENT);
	near(nkv_flownet_rate(n, a), 1 * GB);
	near(nkv_flownet_next(n), 0.006);
	assert_int_equal(nkv_flownet_pop(n, 0.006, &bytes, &started), a);
	int b = nkv_flownet_add_links(n, l0, 1, (uint64_t)(1e6), 0, 0.008);
	near(nkv_flownet_rate(n, b), 10 * GB);
	near(nkv_flownet_next(n), 0.0081);
	assert_int_equal(nkv_flownet_pop(n, 0.0081, &bytes, &started), b);
	nkv_flownet_free(n);

	/* both at once: 5 GB/s each until dry (4 MB / 9 GB/s), then 0.5 GB/s each:
	 * each has 10 - 2.22 = 7.78 MB left -> done at 0.444 ms + 15.56 ms = 16 ms */
	assert_int_equal(nkv_flownet_create_links(cap, 1, &n), 0);
	assert_int_equal(nkv_flownet_set_buckets(n, 0.004, 0, 10 * GB, 0), 0);
	a = nkv_flownet_add_links(n, l0, 1, (uint64_t)(10e6), 0, 0);
	b = nkv_flownet_add_links(n, l0, 1, (uint64_t)(10e6), 0, 0);
	near(nkv_flownet_rate(n, a), 5 * GB);
	assert_int_equal(nkv_flownet_pop(n, 4e6 / 9e9, &bytes, &started), -ENOENT);
	near(nkv_flownet_rate(n, b), 0.5 * GB);
	near(nkv_flownet_next(n), 0.016);
	assert_true(nkv_flownet_pop(n, 0.016, &bytes, &started) >= 0);
	assert_true(nkv_flownet_pop(n, 0.016, &bytes, &started) >= 0);
	assert_true(isinf(nkv_flownet_next(n)));
	assert_true(nkv_flownet_set_buckets(n, -1, 0, 1, 0) < 0);
	nkv_flownet_free(n);
}

/* A flow limited elsewhere: link 0 (10) carries flows A and B; B also
 * crosses link 1 (2). B gets 2 (its bottleneck), A takes the rest: 8. */
static void limited_elsewhere(void **st)
{
	double cap[2] = { 10 * GB, 2 * GB };
	uint32_t pa[1] = { 0 }, pb[2] = { 0, 1 };
	struct nkv_flownet *n;

	assert_int_equal(nkv_flownet_create_links(cap, 2, &n), 0);
	int a = nkv_flownet_add_links(n, pa, 1, (uint64_t)(100 * GB), 0, 0);
	int b = nkv_flownet_add_links(n, pb, 2, (uint64_t)(100 * GB), 0, 0);
	near(nkv_flownet_rate(n, b), 2 * GB);
	near(nkv_flownet_rate(n, a), 8 * GB);
	nkv_flownet_free(n);
}

/* Three links in a line, L0 = 6, L1 = 9, L2 = 3. Flows: X over L0,L1,L2;
 * Y over L0,L1; Z over L1; W over L2.
 * L2: X and W -> 1.5 each (bottleneck first: 3/2 = 1.5 < 6/2, 9/3).
 * Then L0: 6 - 1.5 = 4.5 for Y alone -> but L1: 9 - 1.5 = 7.5 for Y,Z ->
 * 3.75 each; L0 share 4.5 > 3.75, so L1 saturates: Y = Z = 3.75. */
static void three_links(void **st)
{
	double cap[3] = { 6 * GB, 9 * GB, 3 * GB };
	uint32_t px[3] = { 0, 1, 2 }, py[2] = { 0, 1 }, pz[1] = { 1 }, pw[1] = { 2 };
	struct nkv_flownet *n;

	assert_int_equal(nkv_flownet_create_links(cap, 3, &n), 0);
	int x = nkv_flownet_add_links(n, px, 3, (uint64_t)(100 * GB), 0, 0);
	int y = nkv_flownet_add_links(n, py, 2, (uint64_t)(100 * GB), 0, 0);
	int z = nkv_flownet_add_links(n, pz, 1, (uint64_t)(100 * GB), 0, 0);
	int w = nkv_flownet_add_links(n, pw, 1, (uint64_t)(100 * GB), 0, 0);
	near(nkv_flownet_rate(n, x), 1.5 * GB);
	near(nkv_flownet_rate(n, w), 1.5 * GB);
	near(nkv_flownet_rate(n, y), 3.75 * GB);
	near(nkv_flownet_rate(n, z), 3.75 * GB);
	/* W leaves: X alone on L2 could take 3, but L1 = 9 over X, Y, Z -> 3
	 * each, L0 = 6 over X, Y -> 3 each: all three get 3. */
	assert_int_equal(nkv_flownet_remove(n, w, 0.5), 0);
	near(nkv_flownet_rate(n, x), 3 * GB);
	near(nkv_flownet_rate(n, y), 3 * GB);
	near(nkv_flownet_rate(n, z), 3 * GB);
	nkv_flownet_free(n);
}

/* Latency: a 1 GB flow at 10 GB/s with 2 ms of path latency completes at
 * 0.102 s; a background flow halves its rate: 0.202 s. */
static void latency_and_background(void **st)
{
	double cap[1] = { 10 * GB };
	uint32_t l0[1] = { 0 };
	struct nkv_flownet *n;

	assert_int_equal(nkv_flownet_create_links(cap, 1, &n), 0);
	int a = nkv_flownet_add_links(n, l0, 1, (uint64_t)GB, 0.002, 0);
	near(nkv_flownet_next(n), 0.1); /* drain end; completion comes with the latency */
	assert_int_equal(nkv_flownet_pop(n, 0.1, NULL, NULL), -ENOENT);
	near(nkv_flownet_next(n), 0.102);
	assert_int_equal(nkv_flownet_pop(n, nkv_flownet_next(n), NULL, NULL), a);
	int bg = nkv_flownet_add_links(n, l0, 1, UINT64_MAX, 0, 1.0);
	int c = nkv_flownet_add_links(n, l0, 1, (uint64_t)GB, 0.002, 1.0);
	near(nkv_flownet_rate(n, c), 5 * GB);
	near(nkv_flownet_next(n), 1.2);
	assert_int_equal(nkv_flownet_pop(n, 1.2, NULL, NULL), -ENOENT);
	assert_int_equal(nkv_flownet_pop(n, nkv_flownet_next(n), NULL, NULL), c);
	near(nkv_flownet_rate(n, bg), 10 * GB);
	assert_true(isinf(nkv_flownet_next(n)));
	nkv_flownet_free(n);
}

/* On the topology: two GPUs of one host sending to two GPUs of another
 * host under the same leaf share nothing (one NIC each, 50 GB/s); two GPUs
 * sending to one GPU share its NIC's downlink: 25 GB/s each. */
static void on_fat_tree(void **st)
{
	struct nkv_fat_tree_params p;
	struct nkv_topo *t;
	struct nkv_flownet *n;

	nkv_fat_tree_defaults(&p);
	assert_int_equal(nkv_topo_fat_tree(&p, &t), 0);
	assert_int_equal(nkv_flownet_create(t, &n), 0);
	int a = nkv_flownet_add(n, 0, 8, (uint64_t)(10 * GB), 0);
	int b = nkv_flownet_add(n, 1, 9, (uint64_t)(10 * GB), 0);
	near(nkv_flownet_rate(n, a), 50 * GB);
	near(nkv_flownet_rate(n, b), 50 * GB);
	int c = nkv_flownet_add(n, 2, 8, (uint64_t)(10 * GB), 0);
	near(nkv_flownet_rate(n, a), 25 * GB);
	near(nkv_flownet_rate(n, c), 25 * GB);
	near(nkv_flownet_rate(n, b), 50 * GB);
	nkv_flownet_free(n);
	nkv_topo_free(t);
}

static void bad_input(void **st)
{
	double cap[1] = { 1 }, bad[1] = { -1 };
	uint32_t l9[1] = { 9 };
	struct nkv_flownet *n;

	assert_true(nkv_flownet_create_links(bad, 1, &n) < 0);
	assert_int_equal(nkv_flownet_create_links(cap, 1, &n), 0);
	assert_true(nkv_flownet_add_links(n, l9, 1, 10, 0, 0) < 0);
	assert_true(nkv_flownet_add_links(n, l9, 0, 0, 0, 0) < 0);
	assert_true(nkv_flownet_remove(n, 3, 0) < 0);
	nkv_flownet_free(n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(capped_flow), cmocka_unit_test(two_flows_share),   cmocka_unit_test(limited_elsewhere),
		cmocka_unit_test(three_links),       cmocka_unit_test(latency_and_background),
		cmocka_unit_test(on_fat_tree),       cmocka_unit_test(bad_input),
		cmocka_unit_test(isolated_and_overheads), cmocka_unit_test(token_bucket),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
