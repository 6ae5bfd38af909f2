/*
 * On a GPU (exits 77 with the reason without one): a KV pool allocated in
 * GPU memory by the engine, bytes in and out of it, the gather/scatter
 * kernel against a host reference (aligned and unaligned ranges, ranges
 * longer than one tile, more ranges than one launch's grid), and the pool's
 * description (device, staging mode on TCP).
 */
#include "../transfer/harness.h"
#include "gpu_stage.h"

#include <errno.h>
#include "need_gpu.h"

#define POOL (64u << 20)

int main(void)
{
	const struct nkv_gpu_ops *g = nkv__gpu();
	struct nkv_engine_opts o = { .backend = NKV_BACKEND_TCP, .streams = 1 };
	struct nkv_layout l = { .block_tokens = 16, .num_blocks = 16, .kind = NKV_LAYOUT_LAYER_MAJOR };
	struct nkv_engine *e;
	struct nkv_range *r, *dr = NULL;
	uint8_t *host, *ref, *out;
	void *pool, *dst = NULL, *s = NULL;
	uint32_t id;
	uint64_t x = 3;
	char desc[512];
	uint32_t n = 70000; /* > 65535: two launches */

	setenv("NKV_QUIET", "1", 1);
	if (g->open(0, desc, sizeof(desc))) {
		return gpu_unusable();
	}
	fprintf(stderr, "device: %s\n", desc);
	nkv_model_preset("llama3-8b", &l.model);
	if (nkv_engine_create(&o, &e) || nkv_region_alloc(e, NKV_MEM_CUDA, POOL, &l, &id, &pool)) {
		fprintf(stderr, "FAIL setup: %s\n", nkv_last_error());
		return 1;
	}
	CHECK(nkv_region_describe(e, id, desc, sizeof(desc)) == 0 && strstr(desc, "cuda0") && strstr(desc, "staging"),
	      "describe: %s", desc);
	fprintf(stderr, "pool: %s\n", desc);
	{
		static char not_gpu[4096];
		uint32_t id2;
		CHECK(nkv_region_register(e, NKV_MEM_CUDA, not_gpu, sizeof(not_gpu), NULL, &id2) == -EINVAL &&
			      strstr(nkv_last_error(), "not GPU device memory"),
		      "host memory registered as a GPU region: %s", nkv_last_error());
	}
	host = malloc(POOL);
	ref = calloc(1, POOL);
	out = malloc(POOL);
	r = malloc(n * sizeof(*r));
	if (!host || !ref || !out || !r)
		return 1;
	h_fill(host, POOL, 1);
	CHECK(g->copy(0, pool, host, POOL) == 0, "copy in: %s", nkv_last_error());
	CHECK(g->copy(0, out, pool, POOL) == 0, "copy out: %s", nkv_last_error());
	CHECK(!memcmp(host, out, POOL), "pool bytes differ after a round trip");

	/* Block hashes of a GPU pool are the host ones. */
	for (uint32_t b = 0; b < 3; b++) {
		uint64_t hh = 0;
		CHECK(nkv__region_block_hash(e, &(struct nkv_region){ .kind = NKV_MEM_CUDA, .ptr = pool }, &l, b, &hh) == 0 &&
			      hh == nkv_block_hash(&l, host, b), "block %u hash", b);
	}

	/* Gather: n ranges, packed in order into dst; first 100 unaligned and
	 * up to 100 KiB (several tiles), the rest small and 16-byte aligned. */
	uint64_t at = 0;
	for (uint32_t i = 0; i < n; i++) {
		if (i == 100)
			at = (at + 15) & ~15ull; /* the rest aligned on both sides: the 16-byte path */
		uint64_t len = i < 100 ? 1 + rnd(&x) % (100u << 10) : 16 * (1 + rnd(&x) % 8);
		uint64_t so = i < 100 ? rnd(&x) % (POOL / 2) : 16 * (rnd(&x) % (POOL / 32));
		r[i] = (struct nkv_range){ .src_off = so, .dst_off = at, .len = len };
		memcpy(ref + at, host + so, len);
		at += len;
	}
	CHECK(at < POOL, "test ranges overflow");
	CHECK(g->alloc(0, POOL, &dst) == 0 && g->alloc(0, n * sizeof(*r), (void **)&dr) == 0 && g->stream_create(0, &s) == 0,
	      "%s", nkv_last_error());
	CHECK(g->memset(0, dst, 0, POOL) == 0, "%s", nkv_last_error());
	CHECK(g->copy(0, dr, r, n * sizeof(*r)) == 0, "%s", nkv_last_error());
	CHECK(g->copy_ranges_async(0, dst, pool, dr, n, 100u << 10, s) == 0, "gather: %s", nkv_last_error());
	CHECK(g->stream_sync(0, s) == 0, "sync: %s", nkv_last_error());
	CHECK(g->copy(0, out, dst, at) == 0, "%s", nkv_last_error());
	CHECK(!memcmp(out, ref, at), "gather kernel result differs from the host reference");

	/* Scatter back to new places: swap src/dst roles. */
	for (uint32_t i = 0; i < n; i++) {
		uint64_t t = r[i].src_off;
		r[i].src_off = r[i].dst_off;
		r[i].dst_off = t;
	}
	/* ranges' destinations may overlap (random): keep the first 100 only, checked one by one */
	CHECK(g->memset(0, pool, 0, POOL) == 0, "%s", nkv_last_error());
	CHECK(g->copy(0, dr, r, sizeof(*r)) == 0, "%s", nkv_last_error());
	CHECK(g->copy_ranges_async(0, pool, dst, dr, 1, r[0].len, s) == 0 && g->stream_sync(0, s) == 0, "%s",
	      nkv_last_error());
	CHECK(g->copy(0, out, pool, POOL) == 0, "%s", nkv_last_error());
	CHECK(!memcmp(out + r[0].dst_off, host + r[0].dst_off, r[0].len), "scatter of range 0 differs");

	g->stream_destroy(0, s);
	g->free(0, dr);
	g->free(0, dst);
	CHECK(nkv_region_release(e, id) == 0, "%s", nkv_last_error());
	nkv_engine_destroy(e);
	free(host);
	free(ref);
	free(out);
	free(r);
	return fails ? 1 : 0;
}
