/*
 * Block placement patterns and per-block content for `netkv bench transfer`'s
 * paged mode (see bench_pages.h): each end fills or checks its own pool, so a
 * two-host run is checked block by block on both sides.
 */
#include "bench_pages.h"
#include "gpu.h"
#include "nkv_util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int nkv__bench_pattern_parse(const char *s, enum nkv__bench_pattern *out)
{
	if (!strcmp(s, "contig"))
		*out = NKV_BP_CONTIG;
	else if (!strcmp(s, "random"))
		*out = NKV_BP_RANDOM;
	else if (!strcmp(s, "scattered"))
		*out = NKV_BP_SCATTERED;
	else
		return nkv_err(EINVAL, "'%s' is not contig, random or scattered", s);
	return 0;
}

const char *nkv__bench_pattern_name(enum nkv__bench_pattern p)
{
	return p == NKV_BP_CONTIG ? "contig" : p == NKV_BP_RANDOM ? "random" : "scattered";
}

uint32_t nkv__bench_pool_blocks(enum nkv__bench_pattern p, uint32_t n)
{
	return p == NKV_BP_SCATTERED ? 2 * n : n;
}

uint32_t *nkv__bench_block_ids(enum nkv__bench_pattern p, uint32_t n, bool dst)
{
	uint32_t *ids = malloc((n ? n : 1) * sizeof(uint32_t));
	uint64_t x = (dst ? 2 : 1) * 0x9E3779B97F4A7C15ull + 1;

	if (!ids)
		return NULL;
	if (p == NKV_BP_CONTIG) {
		for (uint32_t i = 0; i < n; i++)
			ids[i] = i;
		return ids;
	}
	nkv_permutation(ids, n, &x);
	if (p == NKV_BP_SCATTERED) /* even blocks only: an odd one between any two */
		for (uint32_t i = 0; i < n; i++)
			ids[i] *= 2;
	return ids;
}

/* Request block i, tensor (layer, kv): a xorshift stream of its own. */
static uint64_t chunk_seed(uint32_t i, uint32_t layer, uint32_t kv)
{
	return ((uint64_t)(i + 1) * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)(layer * 2 + kv + 1) * 0xC2B2AE3D27D4EB4Full) ^ 1;
}

/* check false: write the chunk; true: compare, 0 when equal. */
static int chunk_io(uint8_t *p, uint64_t len, uint64_t seed, bool check)
{
	uint64_t x = seed ? seed : 1, w;

	for (uint64_t off = 0; off < len; off += 8) {
		w = nkv_xorshift64(&x);
		uint64_t k = len - off < 8 ? len - off : 8;
		if (!check)
			memcpy(p + off, &w, k);
		else if (memcmp(p + off, &w, k))
			return 1;
	}
	return 0;
}

static int blocks_io(const struct nkv_layout *l, uint8_t *pool, const uint32_t *ids, uint32_t n, bool check)
{
	uint64_t cb = nkv_layout_chunk_bytes(l);
	uint32_t tensors = nkv_layout_tensors(l);

	for (uint32_t i = 0; i < n; i++) {
		if (ids[i] >= l->num_blocks)
			return nkv_err(ERANGE, "block %u is outside the %u-block pool", ids[i], l->num_blocks);
		for (uint32_t layer = 0; layer < l->model.layers; layer++)
			for (uint32_t kv = 0; kv < tensors; kv++)
				if (chunk_io(pool + nkv_layout_chunk_offset(l, ids[i], layer, kv), cb, chunk_seed(i, layer, kv),
					     check))
					return nkv_err(EBADMSG, "block %u (request block %u of %u) differs at layer %u %s", ids[i],
						       i, n, layer, tensors == 1 ? "latent" : kv ? "V" : "K");
	}
	return 0;
}

/* GPU pools go through a host copy of the whole pool. */
static int with_host_copy(const struct nkv_layout *l, void *pool, enum nkv_mem_kind kind, int gpu, const uint32_t *ids,
			  uint32_t n, bool check)
{
	const struct nkv_gpu_ops *g = nkv__gpu();
	uint64_t len = nkv_layout_pool_bytes(l);
	uint8_t *h;
	int rc;

	if (kind != NKV_MEM_CUDA)
		return blocks_io(l, pool, ids, n, check);
	if (!(h = calloc(1, len)))
		return nkv_err(ENOMEM, "out of memory for a host copy of the %llu-byte GPU pool", (unsigned long long)len);
	if (check) {
		if (!(rc = g->copy(gpu, h, pool, len)))
			rc = blocks_io(l, h, ids, n, true);
	} else if (!(rc = blocks_io(l, h, ids, n, false))) {
		rc = g->copy(gpu, pool, h, len);
	}
	free(h);
	return rc;
}

int nkv__bench_fill_blocks(const struct nkv_layout *l, void *pool, enum nkv_mem_kind kind, int gpu,
			   const uint32_t *ids, uint32_t n)
{
	return with_host_copy(l, pool, kind, gpu, ids, n, false);
}

int nkv__bench_check_blocks(const struct nkv_layout *l, const void *pool, enum nkv_mem_kind kind, int gpu,
			    const uint32_t *ids, uint32_t n)
{
	return with_host_copy(l, (void *)pool, kind, gpu, ids, n, true);
}
