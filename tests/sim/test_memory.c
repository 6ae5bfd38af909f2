/*
 * The prefill prefix cache fits the GPU: sized from HBM minus weights
 * minus one batch (nkv_sim_prefill_cache_blocks), not a fixed 2048 blocks
 * (2048 x 512 tokens x 128 KiB of Llama-3-8B KV = 128 GiB > 80 GB).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "netkv_sim.h"

/* llama3-8b on one H100: KV 2 x 32 layers x 8 heads x 128 x 2 B = 131072
 * B/token; the cache plus weights plus a 16384-token batch stay within
 * HBM x mem_util, and it is within one block of all that room. */
static void llama3_8b_on_h100_fits(void **st)
{
	struct nkv_sim_config c;

	(void)st;
	nkv_sim_defaults(&c);
	assert_int_equal(c.perf.kv_bytes_per_token, 131072);
	uint64_t blocks = nkv_sim_prefill_cache_blocks(&c), bt = c.sched.prefix_block_tokens;
	double used = (double)blocks * (double)bt * 131072.0 + (double)c.perf.weight_bytes +
		      (double)c.prefill_max_tokens * 131072.0;
	double room = (double)c.perf.hbm_bytes * c.perf.mem_util;
	assert_true(blocks > 0);
	assert_true(used <= room);
	assert_true(used + (double)bt * 131072.0 > room);
	assert_true(blocks < 2048);
	assert_true(2048.0 * 512 * 131072 > (double)c.perf.hbm_bytes); /* the old default did not fit */
	/* Given explicitly, it is kept. */
	c.prefill_cache_blocks = 100;
	assert_int_equal(nkv_sim_prefill_cache_blocks(&c), 100);
	/* Weights fill the GPU: nothing to cache. */
	c.prefill_cache_blocks = 0;
	c.perf.weight_bytes = c.perf.hbm_bytes;
	assert_int_equal(nkv_sim_prefill_cache_blocks(&c), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(llama3_8b_on_h100_fits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
