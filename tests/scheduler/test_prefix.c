/* Prefix-block index: leading-block matching against a brute-force model. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "netkv_sched.h"
#include "sched_internal.h" /* nkv__prefix_match_pair, the scheduler's two-index walk */

static void test_basic(void **st)
{
	struct nkv_prefix_index *x;
	uint64_t a[4] = { 10, 11, 12, 13 }, b[2] = { 10, 99 };
	uint32_t depth[3];
	const uint32_t *h;

	(void)st;
	assert_int_equal(nkv_prefix_create(0, &x), -EINVAL);
	assert_int_equal(nkv_prefix_create(3, &x), 0);
	assert_int_equal(nkv_prefix_add(x, 0, a, 4), 0);
	assert_int_equal(nkv_prefix_add(x, 1, a, 2), 0);
	assert_int_equal(nkv_prefix_add(x, 2, a + 1, 3), 0); /* holds 11..13 but not 10 */
	assert_int_equal(nkv_prefix_add(x, 2, a + 1, 3), 0); /* idempotent */
	assert_int_equal(nkv_prefix_add(x, 3, a, 1), -EINVAL);
	assert_int_equal(nkv_prefix_match(x, a, 4, depth), 4);
	assert_int_equal(depth[0], 4);
	assert_int_equal(depth[1], 2);
	assert_int_equal(depth[2], 0);
	assert_int_equal(nkv_prefix_holders(x, 11, &h), 3);
	assert_int_equal(nkv_prefix_match(x, b, 2, depth), 1);
	assert_int_equal(depth[0] + depth[1] + depth[2], 2);
	/* Evict the middle of 0's chain: it now matches 1 block. */
	assert_int_equal(nkv_prefix_remove(x, 0, a + 1, 1), 0);
	nkv_prefix_match(x, a, 4, depth);
	assert_int_equal(depth[0], 1);
	assert_int_equal(nkv_prefix_blocks(x), 4);
	nkv_prefix_clear_slot(x, 2);
	nkv_prefix_clear_slot(x, 1);
	assert_int_equal(nkv_prefix_holders(x, 11, &h), 0);
	assert_int_equal(nkv_prefix_blocks(x), 3); /* 10, 12, 13 held by 0 */
	nkv_prefix_clear_slot(x, 0);
	assert_int_equal(nkv_prefix_blocks(x), 0);
	assert_int_equal(nkv_prefix_match(x, a, 4, depth), 0);
	nkv_prefix_free(x);
}

/* Random adds/removes (table grows and shrinks through deletions) vs a dense bitmap model. */
#define NS 13
#define NK 3000
static void test_random_vs_model(void **st)
{
	struct nkv_prefix_index *x;
	static unsigned char held[NS][NK];
	uint32_t depth[NS];
	unsigned seed = 99;

	(void)st;
	memset(held, 0, sizeof(held));
	assert_int_equal(nkv_prefix_create(NS, &x), 0);
	for (int it = 0; it < 20000; it++) {
		uint32_t s = (uint32_t)rand_r(&seed) % NS;
		uint64_t k = (uint64_t)(rand_r(&seed) % NK);
		int op = rand_r(&seed) % 10;

		/* Keys spread over 64 bits to exercise hashing, mapped back for the model. */
		uint64_t key = k * 0x9E3779B97F4A7C15ull;

		if (op < 6) {
			assert_int_equal(nkv_prefix_add(x, s, &key, 1), 0);
			held[s][k] = 1;
		} else if (op < 9) {
			assert_int_equal(nkv_prefix_remove(x, s, &key, 1), 0);
			held[s][k] = 0;
		} else if (rand_r(&seed) % 50 == 0) {
			nkv_prefix_clear_slot(x, s);
			memset(held[s], 0, NK);
		}
		if (it % 50 == 0) {
			uint64_t req[8], raw[8];
			uint32_t n = 1 + (uint32_t)rand_r(&seed) % 8, best = 0;

			for (uint32_t i = 0; i < n; i++) {
				raw[i] = (uint64_t)((i * 7 + (uint32_t)rand_r(&seed) % 3) % NK);
				req[i] = raw[i] * 0x9E3779B97F4A7C15ull;
			}
			uint32_t got = nkv_prefix_match(x, req, n, depth);
			for (uint32_t sl = 0; sl < NS; sl++) {
				uint32_t d = 0;

				while (d < n && held[sl][raw[d]])
					d++;
				assert_int_equal(depth[sl], d);
				if (d > best)
					best = d;
			}
			assert_int_equal(got, best);
		}
	}
	{
		size_t distinct = 0;

		for (int k = 0; k < NK; k++) {
			int any = 0;

			for (int sl = 0; sl < NS; sl++)
				any |= held[sl][k];
			distinct += any;
		}
		assert_int_equal(nkv_prefix_blocks(x), distinct);
	}
	nkv_prefix_free(x);
}

/* The scheduler's two-index walk gives exactly what two separate walks give. */
static void test_pair_walk(void **st)
{
	struct nkv_prefix_index *a, *b;
	uint32_t da[5], db[3], sa[5], sb[3];
	unsigned seed = 5;

	(void)st;
	assert_int_equal(nkv_prefix_create(5, &a), 0);
	assert_int_equal(nkv_prefix_create(3, &b), 0);
	for (int i = 0; i < 400; i++) {
		uint64_t ids[6];
		uint32_t n = 1 + (uint32_t)rand_r(&seed) % 6;

		for (uint32_t k = 0; k < n; k++)
			ids[k] = (uint64_t)(rand_r(&seed) % 3) * 100 + k;
		nkv_prefix_add(a, (uint32_t)rand_r(&seed) % 5, ids, 1 + (uint32_t)rand_r(&seed) % n);
		nkv_prefix_add(b, (uint32_t)rand_r(&seed) % 3, ids, 1 + (uint32_t)rand_r(&seed) % n);
		if (rand_r(&seed) % 4 == 0)
			nkv_prefix_remove(a, (uint32_t)rand_r(&seed) % 5, ids + rand_r(&seed) % n, 1);
		nkv_prefix_match(a, ids, n, sa);
		nkv_prefix_match(b, ids, n, sb);
		nkv__prefix_match_pair(a, da, b, db, ids, n);
		assert_memory_equal(da, sa, sizeof(sa));
		assert_memory_equal(db, sb, sizeof(sb));
		nkv__prefix_match_pair(a, da, b, db, ids, 0);
		for (int k = 0; k < 5; k++)
			assert_int_equal(da[k], 0);
	}
	nkv_prefix_free(a);
	nkv_prefix_free(b);
}

/*
 * Long chained prefixes, as in Mooncake traces: slots receive whole leading
 * runs of a few prefix families, lose single blocks (holes) or tails, and
 * are cleared; requests walk up to 40 blocks, sometimes with a repeated or
 * foreign id. This is where consecutive blocks share their holder lists
 * (the walk's run shortcut) and where removals reorder those lists.
 * Checked against the brute-force model, single and two-index walks.
 */
#define RS 12
#define RF 4
#define RB 40
static void test_runs_vs_model(void **st)
{
	struct nkv_prefix_index *x, *y;
	static unsigned char held[RS][RF * RB + 1];
	uint32_t depth[RS], dy[RS], single[RS];
	unsigned seed = 7;

	(void)st;
	memset(held, 0, sizeof(held));
	assert_int_equal(nkv_prefix_create(RS, &x), 0);
	assert_int_equal(nkv_prefix_create(RS, &y), 0);
	for (int it = 0; it < 6000; it++) {
		uint32_t s = (uint32_t)rand_r(&seed) % RS, f = (uint32_t)rand_r(&seed) % RF;
		uint32_t len = 1 + (uint32_t)rand_r(&seed) % RB;
		uint64_t ids[RB + 1];
		int op = rand_r(&seed) % 10;

		for (uint32_t j = 0; j < RB; j++)
			ids[j] = 1000 * (uint64_t)(f + 1) + j;
		if (op < 6) {
			assert_int_equal(nkv_prefix_add(x, s, ids, len), 0);
			for (uint32_t j = 0; j < len; j++)
				held[s][f * RB + j] = 1;
		} else if (op < 8) {
			uint32_t j = (uint32_t)rand_r(&seed) % len;

			assert_int_equal(nkv_prefix_remove(x, s, &ids[j], 1), 0);
			held[s][f * RB + j] = 0;
		} else if (op < 9) {
			assert_int_equal(nkv_prefix_remove(x, s, ids + len - 1, RB - len + 1), 0);
			for (uint32_t j = len - 1; j < RB; j++)
				held[s][f * RB + j] = 0;
		} else if (rand_r(&seed) % 20 == 0) {
			nkv_prefix_clear_slot(x, s);
			memset(held[s], 0, sizeof(held[s]));
		}
		if (it % 3 == 0) {
			uint32_t n = 1 + (uint32_t)rand_r(&seed) % RB, best = 0, got;
			int model[RB + 1]; /* model index per id, -1 = held by nobody */

			for (uint32_t j = 0; j < n; j++)
				model[j] = (int)(f * RB + j);
			if (rand_r(&seed) % 4 == 0 && n > 2) { /* repeat a block */
				uint32_t j = 1 + (uint32_t)rand_r(&seed) % (n - 1);

				ids[j] = ids[j - 1];
				model[j] = model[j - 1];
			}
			if (rand_r(&seed) % 6 == 0) { /* a block nobody holds */
				uint32_t j = (uint32_t)rand_r(&seed) % n;

				ids[j] = 999999;
				model[j] = -1;
			}
			got = nkv_prefix_match(x, ids, n, depth);
			for (uint32_t sl = 0; sl < RS; sl++) {
				uint32_t d = 0;

				while (d < n && model[d] >= 0 && held[sl][model[d]])
					d++;
				if (depth[sl] != d)
					fail_msg("it %d slot %u: depth %u, model %u", it, sl, depth[sl], d);
				best = d > best ? d : best;
			}
			assert_int_equal(got, best);
			/* the two-index walk: x's answer, and y's (empty) all zero */
			nkv__prefix_match_pair(x, single, y, dy, ids, n);
			assert_memory_equal(single, depth, sizeof(depth));
			nkv__prefix_match_pair(y, dy, x, single, ids, n);
			assert_memory_equal(single, depth, sizeof(depth));
			for (uint32_t sl = 0; sl < RS; sl++)
				assert_int_equal(dy[sl], 0);
		}
	}
	nkv_prefix_free(x);
	nkv_prefix_free(y);
}

int main(void)
{
	const struct CMUnitTest tests[] = { cmocka_unit_test(test_basic), cmocka_unit_test(test_random_vs_model),
					    cmocka_unit_test(test_pair_walk), cmocka_unit_test(test_runs_vs_model) };
	return cmocka_run_group_tests(tests, NULL, NULL);
}
