/* Layout math, coalescing and plan validation against hand-computed cases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "netkv_transfer.h"
#include "nkv_util.h"

static void test_presets(void **state)
{
	struct nkv_model m;
	(void)state;

	assert_int_equal(nkv_model_preset("llama3-8b", &m), 0);
	assert_int_equal(nkv_model_bytes_per_token(&m), 128 * 1024);   /* 32*2*8*128*2 */
	m.dtype = NKV_FP8;
	assert_int_equal(nkv_model_bytes_per_token(&m), 64 * 1024);
	m.dtype = NKV_FP32;
	assert_int_equal(nkv_model_bytes_per_token(&m), 256 * 1024);
	assert_int_equal(nkv_model_preset("llama3-70b", &m), 0);
	assert_int_equal(nkv_model_bytes_per_token(&m), 320 * 1024);  /* 80*2*8*128*2 */
	assert_int_equal(nkv_model_preset("qwen2.5-7b", &m), 0);
	assert_int_equal(nkv_model_bytes_per_token(&m), 56 * 1024);   /* 28*2*4*128*2 */
	assert_int_equal(nkv_model_preset("llama2-7b", &m), 0);
	assert_int_equal(nkv_model_bytes_per_token(&m), 512 * 1024);  /* 32*2*32*128*2 */
	assert_int_equal(nkv_model_preset("deepseek-v3", &m), 0);
	assert_true(m.mla);
	assert_int_equal(nkv_model_bytes_per_token(&m), 70272);       /* 61*1*576*2 */
	assert_int_equal(nkv_model_preset("gpt-5", &m), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "gpt-5"));
}

static void test_json(void **state)
{
	char path[] = "/tmp/nkv_model_XXXXXX";
	struct nkv_model m;
	int fd;
	(void)state;

	fd = mkstemp(path);
	assert_true(fd >= 0);
	dprintf(fd, "{\"name\":\"tiny\",\"layers\":3,\"kv_heads\":2,\"head_dim\":64,\"dtype\":\"fp8\"}");
	close(fd);
	assert_int_equal(nkv_model_load_json(path, &m), 0);
	assert_string_equal(m.name, "tiny");
	assert_int_equal(nkv_model_bytes_per_token(&m), 3 * 2 * 2 * 64 * 1);
	fd = open(path, O_WRONLY | O_TRUNC);
	dprintf(fd, "{\"layers\":3,\"kv_heads\":0,\"head_dim\":64}");
	close(fd);
	assert_int_equal(nkv_model_load_json(path, &m), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "kv_heads"));
	fd = open(path, O_WRONLY | O_TRUNC);
	dprintf(fd, "{\"layers\":3,");
	close(fd);
	assert_int_equal(nkv_model_load_json(path, &m), -EINVAL);
	fd = open(path, O_WRONLY | O_TRUNC);
	dprintf(fd, "{\"layers\":3,\"kv_heads\":1,\"head_dim\":8,\"dtype\":\"int3\"}");
	close(fd);
	assert_int_equal(nkv_model_load_json(path, &m), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "int3"));
	unlink(path);
}

/* --model takes a preset or a Hugging Face config.json (tests/data/models). */
static void test_hf_config(void **state)
{
	const char *d = getenv("NKV_TEST_DATA");
	char path[1024];
	struct nkv_model m;
	(void)state;

	assert_non_null(d);
	snprintf(path, sizeof(path), "%s/models/Meta-Llama-3-8B/config.json", d);
	assert_int_equal(nkv_model_lookup(path, &m), 0);
	assert_int_equal(nkv_model_bytes_per_token(&m), 131072); /* 2 x 32 x 8 x 128 x 2 B (bf16) */
	assert_int_equal(m.dtype, NKV_BF16);
	assert_string_equal(m.name, "Meta-Llama-3-8B");
	assert_int_equal(nkv_model_load_json(path, &m), 0);
	assert_int_equal(nkv_model_bytes_per_token(&m), 131072);
	snprintf(path, sizeof(path), "%s/models/DeepSeek-V3/config.json", d);
	assert_int_equal(nkv_model_lookup(path, &m), 0);
	assert_true(m.mla);
	assert_int_equal(nkv_model_bytes_per_token(&m), 70272); /* (512 + 64) x 61 x 2 B */
	assert_int_equal(nkv_model_lookup("llama3-70b", &m), 0);
	assert_int_equal(nkv_model_bytes_per_token(&m), 320 * 1024);
	assert_int_equal(nkv_model_lookup("gpt-5", &m), -EINVAL);
	assert_int_equal(nkv_model_lookup("/nonexistent/config.json", &m), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "/nonexistent/config.json"));
}

/* 2 layers, 1 head of 4, fp16, 2 tokens per block: a chunk is 16 bytes,
 * a block 64, a pool of 4 blocks 256. */
static struct nkv_layout tiny(enum nkv_layout_kind k, uint32_t nblocks)
{
	struct nkv_layout l = { .block_tokens = 2, .num_blocks = nblocks, .kind = k };
	snprintf(l.model.name, sizeof(l.model.name), "tiny");
	l.model.layers = 2;
	l.model.kv_heads = 1;
	l.model.head_dim = 4;
	l.model.dtype = NKV_FP16;
	return l;
}

static void test_offsets(void **state)
{
	struct nkv_layout lm = tiny(NKV_LAYOUT_LAYER_MAJOR, 4), bm = tiny(NKV_LAYOUT_BLOCK_MAJOR, 4), l8;
	(void)state;

	assert_int_equal(nkv_layout_chunk_bytes(&lm), 16);
	assert_int_equal(nkv_layout_block_bytes(&lm), 64);
	assert_int_equal(nkv_layout_pool_bytes(&lm), 256);
	/* layer-major: ((layer*2+kv)*num_blocks + block) * chunk */
	assert_int_equal(nkv_layout_chunk_offset(&lm, 3, 1, 0), 176);
	assert_int_equal(nkv_layout_chunk_offset(&lm, 1, 0, 1), 80);
	assert_int_equal(nkv_layout_chunk_offset(&lm, 0, 1, 1), 192);
	/* block-major: block*64 + (layer*2+kv)*16 */
	assert_int_equal(nkv_layout_chunk_offset(&bm, 3, 1, 0), 224);
	assert_int_equal(nkv_layout_chunk_offset(&bm, 1, 0, 1), 80);
	assert_int_equal(nkv_layout_chunk_offset(&bm, 2, 1, 1), 176);

	/* llama3-8b, 16-token blocks: chunk 16*8*128*2 = 32 KiB, block 2 MiB. */
	l8 = (struct nkv_layout){ .block_tokens = 16, .num_blocks = 100, .kind = NKV_LAYOUT_LAYER_MAJOR };
	nkv_model_preset("llama3-8b", &l8.model);
	assert_int_equal(nkv_layout_chunk_bytes(&l8), 32768);
	assert_int_equal(nkv_layout_block_bytes(&l8), 2 << 20);
	/* layer 5, V, block 7: (5*2+1)*100*32K + 7*32K */
	assert_int_equal(nkv_layout_chunk_offset(&l8, 7, 5, 1), (11ull * 100 + 7) * 32768);
	/* MLA: one tensor per layer, 16*576*2 = 18432-byte chunks */
	nkv_model_preset("deepseek-v3", &l8.model);
	assert_int_equal(nkv_layout_tensors(&l8), 1);
	assert_int_equal(nkv_layout_chunk_bytes(&l8), 18432);
	assert_int_equal(nkv_layout_chunk_offset(&l8, 7, 5, 0), (5ull * 100 + 7) * 18432);
}

static void expect_range(const struct nkv_range *r, uint64_t s, uint64_t d, uint64_t len)
{
	assert_int_equal(r->src_off, s);
	assert_int_equal(r->dst_off, d);
	assert_int_equal(r->len, len);
}

static void test_coalesce(void **state)
{
	struct nkv_layout lm = tiny(NKV_LAYOUT_LAYER_MAJOR, 4), bm = tiny(NKV_LAYOUT_BLOCK_MAJOR, 4);
	const struct nkv_range *r;
	struct nkv_plan *p;
	(void)state;

	/* Blocks 0..2 of each tensor are one 48-byte run; the tensors are 64 apart. */
	assert_int_equal(nkv_plan_build(&lm, &lm, (uint32_t[]){ 0, 1, 2 }, (uint32_t[]){ 0, 1, 2 }, 3, &p), 0);
	assert_int_equal(nkv_plan_count(p), 4);
	r = nkv_plan_ranges(p);
	expect_range(&r[0], 0, 0, 48);
	expect_range(&r[1], 64, 64, 48);
	expect_range(&r[2], 128, 128, 48);
	expect_range(&r[3], 192, 192, 48);
	assert_int_equal(nkv_plan_bytes(p), 192);
	assert_int_equal(nkv_plan_dst_extent(p), 240);
	nkv_plan_free(p);

	/* The whole pool, in order: one range. */
	assert_int_equal(nkv_plan_build(&lm, &lm, (uint32_t[]){ 0, 1, 2, 3 }, (uint32_t[]){ 0, 1, 2, 3 }, 4, &p), 0);
	assert_int_equal(nkv_plan_count(p), 1);
	expect_range(&nkv_plan_ranges(p)[0], 0, 0, 256);
	nkv_plan_free(p);

	/* Block-major, shifted by one block: one 128-byte range. */
	assert_int_equal(nkv_plan_build(&bm, &bm, (uint32_t[]){ 1, 2 }, (uint32_t[]){ 2, 3 }, 2, &p), 0);
	assert_int_equal(nkv_plan_count(p), 1);
	expect_range(&nkv_plan_ranges(p)[0], 64, 128, 128);
	nkv_plan_free(p);

	/* Swapped destinations: contiguous in source only, nothing merges. */
	assert_int_equal(nkv_plan_build(&lm, &lm, (uint32_t[]){ 0, 1 }, (uint32_t[]){ 1, 0 }, 2, &p), 0);
	assert_int_equal(nkv_plan_count(p), 8);
	r = nkv_plan_ranges(p);
	expect_range(&r[0], 0, 16, 16);
	expect_range(&r[1], 16, 0, 16);
	expect_range(&r[2], 64, 80, 16);
	expect_range(&r[7], 208, 192, 16);
	nkv_plan_free(p);

	/* Layer-major into block-major: (b1,l0,K) at 16 lands at 64. */
	assert_int_equal(nkv_plan_build(&lm, &bm, (uint32_t[]){ 0, 1 }, (uint32_t[]){ 0, 1 }, 2, &p), 0);
	assert_int_equal(nkv_plan_count(p), 8);
	assert_int_equal(nkv_plan_bytes(p), 128);
	expect_range(&nkv_plan_ranges(p)[1], 16, 64, 16);
	expect_range(&nkv_plan_ranges(p)[2], 64, 16, 16);
	nkv_plan_free(p);

	/* Block-major into layer-major with 3 contiguous blocks: per tensor
	 * run is not contiguous on the block-major side, so 3*4 = 12 ranges. */
	assert_int_equal(nkv_plan_build(&bm, &lm, (uint32_t[]){ 0, 1, 2 }, (uint32_t[]){ 0, 1, 2 }, 3, &p), 0);
	assert_int_equal(nkv_plan_count(p), 12);
	nkv_plan_free(p);
}

static void test_plan_errors(void **state)
{
	struct nkv_layout lm = tiny(NKV_LAYOUT_LAYER_MAJOR, 4), other = tiny(NKV_LAYOUT_LAYER_MAJOR, 4);
	struct nkv_plan *p = (struct nkv_plan *)1;
	(void)state;

	assert_int_equal(nkv_plan_build(&lm, &lm, (uint32_t[]){ 0, 4 }, (uint32_t[]){ 0, 1 }, 2, &p), -ERANGE);
	assert_null(p);
	assert_non_null(strstr(nkv_last_error(), "source block id 4"));
	assert_int_equal(nkv_plan_build(&lm, &lm, (uint32_t[]){ 0, 1 }, (uint32_t[]){ 0, 9 }, 2, &p), -ERANGE);
	assert_non_null(strstr(nkv_last_error(), "destination block id 9"));
	assert_int_equal(nkv_plan_build(&lm, &lm, (uint32_t[]){ 0, 1, 2 }, (uint32_t[]){ 3, 1, 3 }, 3, &p), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "block 3 named twice"));
	assert_int_equal(nkv_plan_build(&lm, &lm, (uint32_t[]){ 0 }, (uint32_t[]){ 0 }, 0, &p), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "empty"));
	other.block_tokens = 4;
	assert_int_equal(nkv_plan_build(&lm, &other, (uint32_t[]){ 0 }, (uint32_t[]){ 0 }, 1, &p), -EINVAL);
	other = lm;
	other.num_blocks = 0;
	assert_int_equal(nkv_plan_build(&lm, &other, (uint32_t[]){ 0 }, (uint32_t[]){ 0 }, 1, &p), -EINVAL);
	/* the same source block twice is fine (read twice) */
	assert_int_equal(nkv_plan_build(&lm, &lm, (uint32_t[]){ 2, 2 }, (uint32_t[]){ 0, 1 }, 2, &p), 0);
	assert_int_equal(nkv_plan_bytes(p), 128);
	nkv_plan_free(p);

	/* raw plans */
	assert_int_equal(nkv_plan_build_raw((struct nkv_range[]){ { 0, 100, 10 }, { 10, 110, 5 } }, 2, &p), 0);
	assert_int_equal(nkv_plan_count(p), 1);
	expect_range(&nkv_plan_ranges(p)[0], 0, 100, 15);
	nkv_plan_free(p);
	assert_int_equal(nkv_plan_build_raw((struct nkv_range[]){ { 0, 100, 10 }, { 50, 105, 5 } }, 2, &p), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "overlap"));
	assert_int_equal(nkv_plan_build_raw((struct nkv_range[]){ { 0, 100, 0 } }, 1, &p), -EINVAL);
	assert_int_equal(nkv_plan_build_raw(NULL, 0, &p), -EINVAL);
	assert_int_equal(nkv_plan_build_raw((struct nkv_range[]){ { UINT64_MAX - 1, 0, 5 } }, 1, &p), -EOVERFLOW);
}

static void test_block_hash(void **state)
{
	struct nkv_layout lm = tiny(NKV_LAYOUT_LAYER_MAJOR, 4), bm = tiny(NKV_LAYOUT_BLOCK_MAJOR, 4);
	uint8_t a[256], b[256], cat[64];
	(void)state;

	for (int i = 0; i < 256; i++)
		a[i] = (uint8_t)(i * 37 + 11);
	/* Copy layer-major a into block-major b chunk by chunk. */
	for (uint32_t blk = 0; blk < 4; blk++)
		for (uint32_t l = 0; l < 2; l++)
			for (uint32_t kv = 0; kv < 2; kv++)
				memcpy(b + nkv_layout_chunk_offset(&bm, blk, l, kv), a + nkv_layout_chunk_offset(&lm, blk, l, kv), 16);
	/* block 2 of the layer-major pool, concatenated by hand: chunks at 32, 96, 160, 224 */
	memcpy(cat, a + 32, 16);
	memcpy(cat + 16, a + 96, 16);
	memcpy(cat + 32, a + 160, 16);
	memcpy(cat + 48, a + 224, 16);
	assert_int_equal(nkv_block_hash(&lm, a, 2), XXH64(cat, 64, 0));
	assert_int_equal(nkv_block_hash(&bm, b, 2), XXH64(cat, 64, 0));
	assert_int_equal(nkv_block_hash(&bm, b, 2), XXH64(b + 128, 64, 0));
	assert_int_not_equal(nkv_block_hash(&lm, a, 1), nkv_block_hash(&lm, a, 2));
	b[128 + 63] ^= 1;
	assert_int_not_equal(nkv_block_hash(&bm, b, 2), XXH64(cat, 64, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_presets),     cmocka_unit_test(test_json), cmocka_unit_test(test_hf_config),        cmocka_unit_test(test_offsets),
		cmocka_unit_test(test_coalesce),    cmocka_unit_test(test_plan_errors), cmocka_unit_test(test_block_hash),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
