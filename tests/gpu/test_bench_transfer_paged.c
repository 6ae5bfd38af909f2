/*
 * `netkv bench transfer`'s paged mode over TCP loopback, without a GPU:
 *  - --pattern scattered puts a request's blocks on even ids of a pool twice
 *    its size, so nothing coalesces beyond a page (ranges = blocks x layers x 2);
 *  - every block is checked on both ends after the run, and the check really
 *    catches one changed byte;
 *  - --describe counts the descriptors of one push without memory or a peer;
 *  - GPU memory on either side and both (--mem / --dst-mem cuda) runs the
 *    whole path on the fake device of fake_gpu.h.
 * The figures mean nothing here; the exit statuses and the checks do.
 */
#include "fake_gpu.h"
#include "bench_cli.h"
#include "bench_pages.h"

#include <stdio.h>
#include <string.h>

static int failures;

#define CHECK(cond, ...)                                                  \
	do {                                                              \
		if (!(cond)) {                                            \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
			fprintf(stderr, __VA_ARGS__);                     \
			fprintf(stderr, "\n");                            \
			failures++;                                       \
		}                                                         \
	} while (0)

static int bench(char **argv)
{
	int argc = 0;

	while (argv[argc])
		argc++;
	return nkv_cmd_bench_transfer(argc, argv);
}

/* Ids: distinct, even, inside the 2n pool, and the two sides differ. */
static void test_ids(void)
{
	uint32_t n = 300, *s = nkv__bench_block_ids(NKV_BP_SCATTERED, n, false),
		 *d = nkv__bench_block_ids(NKV_BP_SCATTERED, n, true);
	uint8_t *seen = calloc(2 * n, 1);
	bool differ = false;

	CHECK(s && d && seen, "out of memory");
	if (!s || !d || !seen)
		goto out;
	CHECK(nkv__bench_pool_blocks(NKV_BP_SCATTERED, n) == 2 * n, "scattered pool is not 2n blocks");
	for (uint32_t i = 0; i < n; i++) {
		CHECK(s[i] % 2 == 0 && s[i] < 2 * n, "source id %u at %u not an even block of the pool", s[i], i);
		if (s[i] < 2 * n) {
			CHECK(!seen[s[i]], "source id %u twice", s[i]);
			seen[s[i]] = 1;
		}
		differ |= s[i] != d[i];
	}
	CHECK(differ, "both sides got the same placement");
out:
	free(s);
	free(d);
	free(seen);
}

/* Fill, check, flip one byte of one block: the check names that block. */
static void test_check_catches(void)
{
	struct nkv_layout l = { .block_tokens = 16, .kind = NKV_LAYOUT_LAYER_MAJOR };
	uint32_t n = 8, *ids;
	uint8_t *pool;

	nkv_model_preset("llama3-8b", &l.model);
	l.num_blocks = nkv__bench_pool_blocks(NKV_BP_SCATTERED, n);
	ids = nkv__bench_block_ids(NKV_BP_SCATTERED, n, true);
	pool = calloc(1, nkv_layout_pool_bytes(&l));
	CHECK(ids && pool, "out of memory");
	if (ids && pool) {
		CHECK(nkv__bench_check_blocks(&l, pool, NKV_MEM_HOST, 0, ids, n) == -EBADMSG, "an empty pool passed");
		CHECK(!nkv__bench_fill_blocks(&l, pool, NKV_MEM_HOST, 0, ids, n), "fill: %s", nkv_last_error());
		CHECK(!nkv__bench_check_blocks(&l, pool, NKV_MEM_HOST, 0, ids, n), "check after fill: %s", nkv_last_error());
		pool[nkv_layout_chunk_offset(&l, ids[5], 31, 1) + 100] ^= 1;
		CHECK(nkv__bench_check_blocks(&l, pool, NKV_MEM_HOST, 0, ids, n) == -EBADMSG, "a changed byte passed");
		char want[64];
		snprintf(want, sizeof(want), "block %u (request block 5 of 8) differs at layer 31 V", ids[5]);
		CHECK(strstr(nkv_last_error(), want), "the error '%s' does not say '%s'", nkv_last_error(), want);
		/* The sender's side: the same content, another placement, passes. */
		uint32_t *sids = nkv__bench_block_ids(NKV_BP_SCATTERED, n, false);
		memset(pool, 0, nkv_layout_pool_bytes(&l));
		CHECK(sids && !nkv__bench_fill_blocks(&l, pool, NKV_MEM_HOST, 0, sids, n), "fill (sender ids)");
		CHECK(sids && !nkv__bench_check_blocks(&l, pool, NKV_MEM_HOST, 0, sids, n), "check (sender ids)");
		free(sids);
	}
	free(ids);
	free(pool);
}

int main(void)
{
	setenv("NKV_QUIET", "1", 1);
	test_ids();
	test_check_catches();

	/* Host memory, scattered pages, both layouts. */
	char *host_layer[] = { "bench transfer", "--loopback", "--model", "llama3-8b", "--tokens", "512", "--pattern",
			       "scattered", "-n", "3", NULL };
	CHECK(bench(host_layer) == 0, "scattered, layer-major, host: %s", nkv_last_error());
	char *host_block[] = { "bench transfer", "--loopback", "--model", "llama3-8b", "--tokens", "512", "--pattern",
			       "scattered", "--layout", "block", "--dst-layout", "layer", "-n", "2", "--json", NULL };
	CHECK(bench(host_block) == 0, "scattered, block -> layer, host: %s", nkv_last_error());
	char *describe[] = { "bench transfer", "--describe", "--model", "llama3-8b", "--tokens", "32768", "--pattern",
			     "scattered", NULL };
	CHECK(bench(describe) == 0, "--describe: %s", nkv_last_error());
	char *bad[] = { "bench transfer", "--loopback", "--model", "llama3-8b", "--pattern", "sparse", NULL };
	CHECK(bench(bad) == 2, "--pattern sparse was taken");
	CHECK(strstr(nkv_last_error(), "--pattern") && strstr(nkv_last_error(), "sparse"),
	      "the error '%s' does not name --pattern and the value", nkv_last_error());

	/* GPU memory on either side and on both, on the fake device. */
	nkv__gpu_override(&fake_gpu_ops);
	char *gpu_both[] = { "bench transfer", "--loopback", "--model", "llama3-8b", "--tokens", "256", "--pattern",
			     "scattered", "--mem", "cuda", "--gpu", "0", "-n", "2", NULL };
	CHECK(bench(gpu_both) == 0, "GPU -> GPU: %s", nkv_last_error());
	char *gpu_src[] = { "bench transfer", "--loopback", "--model", "llama3-8b", "--tokens", "256", "--pattern",
			    "scattered", "--mem", "cuda", "--dst-mem", "host", "-n", "2", NULL };
	CHECK(bench(gpu_src) == 0, "GPU -> host: %s", nkv_last_error());
	char *gpu_dst[] = { "bench transfer", "--loopback", "--model", "llama3-8b", "--tokens", "256", "--pattern",
			    "random", "--dst-mem", "cuda", "-n", "2", NULL };
	CHECK(bench(gpu_dst) == 0, "host -> GPU: %s", nkv_last_error());
	char *gpu_raw[] = { "bench transfer", "--loopback", "-s", "256K", "-n", "20", "--mem", "cuda", NULL };
	CHECK(bench(gpu_raw) == 0, "raw GPU -> GPU: %s", nkv_last_error());
	/* A GPU the (fake) runtime does not have: exit 1, the reason named. */
	char *gpu_absent[] = { "bench transfer", "--loopback", "--model", "llama3-8b", "--tokens", "256", "--mem",
			       "cuda", "--gpu", "3", NULL };
	CHECK(bench(gpu_absent) == 1, "--gpu 3 on a one-GPU fake did not fail with exit 1");
	CHECK(strstr(nkv_last_error(), "no usable GPU 3"), "the error '%s' does not say 'no usable GPU 3'",
	      nkv_last_error());
	CHECK(atomic_load(&fake_copies) > 0, "no copy ran on the fake device");

	if (failures)
		fprintf(stderr, "%d failure(s)\n", failures);
	return failures ? 1 : 0;
}
