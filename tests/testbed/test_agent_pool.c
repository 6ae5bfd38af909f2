/* The agent's paged pool (bench/testbed/agent_pool.c) and advertised
 * address (agent_net.c): page ownership stays a partition of the pool
 * through churn, churn scatters a block's pages, the pattern round-trips
 * page by page in both layouts (and through a GPU pool's host mirror, on
 * the fake device of tests/gpu), bad page sizes are refused, and a
 * wildcard listener advertises the routed address. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent_net.h"
#include "agent_pool.h"
#include "fake_gpu.h"
#include "nkv_util.h"

static struct nkv_model tiny(void)
{
	struct nkv_model m = { .layers = 2, .kv_heads = 1, .head_dim = 32, .dtype = NKV_FP16 };
	snprintf(m.name, sizeof(m.name), "tiny");
	return m;
}

/* Every page is owned by at most one slot, and owned + free = all. */
static void check_partition(const struct agent_pool *p)
{
	uint32_t np = p->n * p->ppb, owned = 0;
	uint8_t *seen = calloc(np, 1);
	for (uint32_t b = 0; b < p->n; b++) {
		if (!p->has_pages[b])
			continue;
		for (uint32_t j = 0; j < p->ppb; j++) {
			uint32_t pg = p->pages[b * p->ppb + j];
			assert_true(pg < np);
			assert_int_equal(seen[pg], 0);
			seen[pg] = 1;
			owned++;
		}
	}
	for (uint32_t i = 0; i < p->fq_len; i++) {
		uint32_t pg = p->freeq[(p->fq_head + i) % np];
		assert_int_equal(seen[pg], 0);
		seen[pg] = 1;
	}
	assert_int_equal(owned + p->fq_len, np);
	free(seen);
}

static void test_bad_sizes(void **st)
{
	(void)st;
	struct agent_pool p;
	struct nkv_model m = tiny();
	assert_int_equal(agent_pool_init(&p, &m, 4, 24, NKV_LAYOUT_LAYER_MAJOR), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "--page-tokens 24"));
	assert_int_equal(agent_pool_init(&p, &m, 4, 0, NKV_LAYOUT_LAYER_MAJOR), -EINVAL);
	assert_int_equal(agent_pool_init(&p, &m, 4, 1024, NKV_LAYOUT_LAYER_MAJOR), -EINVAL);
	assert_int_equal(agent_pool_init(&p, &m, 1u << 20, 1, NKV_LAYOUT_LAYER_MAJOR), -EINVAL);
}

/* Churn: requests of 3 fresh blocks through a pool of 8; then a block's pages are not a run. */
static void churn(enum nkv_layout_kind kind)
{
	struct agent_pool p;
	struct nkv_model m = tiny();
	assert_int_equal(agent_pool_init(&p, &m, 8, 16, kind), 0);
	assert_int_equal(p.ppb, 32);
	p.mem = calloc(1, nkv_layout_pool_bytes(&p.layout));
	uint64_t next = 1;
	uint32_t slots[3], lead;
	bool fresh[3];
	for (int r = 0; r < 20; r++) {
		uint64_t ids[3] = { next, next + 1, next + 2 };
		next += 3;
		assert_true(agent_pool_reserve(&p, ids, 3, slots, &lead, fresh));
		assert_int_equal(lead, 0);
		for (int i = 0; i < 3; i++) {
			assert_true(fresh[i]);
			assert_int_equal(agent_pool_fill(&p, slots[i], ids[i]), 0);
		}
		for (int i = 0; i < 3; i++)
			assert_int_equal(agent_pool_check(&p, slots[i], ids[i]), 1);
		assert_int_equal(agent_pool_check(&p, slots[0], ids[1]), 0);
		check_partition(&p);
		agent_pool_unpin(&p, slots, 3);
	}
	/* the last request's blocks: pages scattered (not ascending by one) */
	uint32_t pages[3 * 32], runs = 1;
	agent_pool_pages(&p, slots, 3, pages);
	for (int i = 1; i < 3 * 32; i++)
		runs += pages[i] != pages[i - 1] + 1;
	assert_true(runs > 3 * 16);
	/* a held prefix is found again, pinned, not refilled */
	uint64_t again[2] = { next - 3, 999999 };
	assert_true(agent_pool_reserve(&p, again, 2, slots, &lead, fresh));
	assert_int_equal(lead, 1);
	assert_false(fresh[0]);
	assert_true(fresh[1]);
	assert_int_equal(agent_pool_used(&p), 2);
	check_partition(&p);
	/* all pinned: no room for 7 more */
	uint64_t many[7] = { 501, 502, 503, 504, 505, 506, 507 };
	uint32_t s7[7];
	bool f7[7];
	assert_false(agent_pool_reserve(&p, many, 7, s7, &lead, f7));
	free(p.mem);
	agent_pool_free(&p);
}

static void test_churn_layer(void **st)
{
	(void)st;
	churn(NKV_LAYOUT_LAYER_MAJOR);
}

static void test_churn_block(void **st)
{
	(void)st;
	churn(NKV_LAYOUT_BLOCK_MAJOR);
}

/* A GPU pool: the pattern reaches the device (the mirror is not what is
 * checked: it is read back first), and a corrupted device byte is found. */
static void test_gpu_mirror(void **st)
{
	(void)st;
	struct agent_pool p;
	struct nkv_model m = tiny();
	nkv__gpu_override(&fake_gpu_ops);
	assert_int_equal(agent_pool_init(&p, &m, 4, 16, NKV_LAYOUT_LAYER_MAJOR), 0);
	uint64_t len = nkv_layout_pool_bytes(&p.layout);
	p.mem = calloc(1, len);
	p.gpu = 0;
	assert_int_equal(fake_gpu_ops.alloc(0, len, &p.dev), 0);
	uint64_t next = 100;
	uint32_t slots[3], lead;
	bool fresh[3];
	for (int r = 0; r < 6; r++) { /* churn: 3 of 4 slots per request */
		uint64_t ids[3] = { next, next + 1, next + 2 };
		next += 3;
		assert_true(agent_pool_reserve(&p, ids, 3, slots, &lead, fresh));
		for (int i = 0; i < 3; i++)
			assert_int_equal(agent_pool_fill(&p, slots[i], ids[i]), 0);
		memset(p.mem, 0, len); /* the device must hold the bytes, not the mirror */
		for (int i = 0; i < 3; i++)
			assert_int_equal(agent_pool_check(&p, slots[i], ids[i]), 1);
		agent_pool_unpin(&p, slots, 3);
	}
	/* one byte of the last page of the last slot, on the device */
	uint64_t off = nkv_layout_chunk_offset(&p.layout, p.pages[slots[2] * p.ppb + p.ppb - 1], 1, 1);
	((uint8_t *)p.dev)[off + 5] ^= 1;
	assert_int_equal(agent_pool_check(&p, slots[2], next - 1), 0);
	assert_int_equal(agent_pool_check(&p, slots[1], next - 2), 1);
	fake_gpu_ops.free(0, p.dev);
	free(p.mem);
	agent_pool_free(&p);
	nkv__gpu_override(NULL);
}

static void test_advertise(void **st)
{
	(void)st;
	char out[96];
	assert_int_equal(agent_advertise_addr("0.0.0.0", 4711, "127.0.0.1:7400", out, sizeof(out)), 0);
	assert_string_equal(out, "127.0.0.1:4711");
	assert_int_equal(agent_advertise_addr("127.0.0.5", 4711, "127.0.0.1:7400", out, sizeof(out)), 0);
	assert_string_equal(out, "127.0.0.5:4711");
	/* a bad scheduler address fails before any lookup (tests resolve no names) */
	assert_true(agent_advertise_addr("0.0.0.0", 1, "nonsense", out, sizeof(out)) < 0);
	assert_non_null(strstr(nkv_last_error(), "--scheduler"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_sizes),
		cmocka_unit_test(test_churn_layer),
		cmocka_unit_test(test_churn_block),
		cmocka_unit_test(test_gpu_mirror),
		cmocka_unit_test(test_advertise),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
