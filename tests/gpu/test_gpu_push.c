/*
 * Pushes to and from GPU regions over TCP loopback, every block checked:
 * GPU->GPU, GPU->host and host->GPU, with --verify on (the receiver checks
 * each block's xxhash64 after the last byte) and the test comparing each
 * destination block's hash with its source block's, computed on the host.
 *
 *   test_gpu_push cuda   a real GPU (exits 77 with the reason without one)
 *   test_gpu_push fake   the fake device of fake_gpu.h: same engine code,
 *                        host memory, copies deferred until their event
 *
 * Layouts: layer-major with shuffled block ids (16 KiB pieces: DATAV
 * messages, the gather and scatter kernels, many ranges per chunk) and
 * block-major with contiguous ids (large ranges: 1 MiB pieces crossing the
 * 4 MiB staging chunks). Two pushes in flight at once share the slots.
 */
#include "../transfer/harness.h"
#include "fake_gpu.h"

#include <errno.h>
#include "need_gpu.h"

static const struct nkv_gpu_ops *g;

/* A region of the given kind, filled (GPU: through a host buffer). */
static int make_region(struct nkv_engine *e, enum nkv_mem_kind kind, const struct nkv_layout *l, uint64_t seed,
		       uint32_t *id, void **ptr, void **host)
{
	uint64_t len = nkv_layout_pool_bytes(l);
	int rc;

	if ((rc = nkv_region_alloc(e, kind, len, l, id, ptr)))
		return rc;
	if (!(*host = malloc(len)))
		return -ENOMEM;
	h_fill(*host, len, seed);
	if (kind == NKV_MEM_CUDA)
		return g->copy(0, *ptr, *host, len);
	memcpy(*ptr, *host, len);
	return 0;
}

/* The region's current bytes, on the host. */
static const void *snapshot(enum nkv_mem_kind kind, void *ptr, void *host, uint64_t len)
{
	if (kind != NKV_MEM_CUDA)
		return ptr;
	if (g->copy(0, host, ptr, len))
		return NULL;
	return host;
}

static void run(const char *name, enum nkv_mem_kind sk, enum nkv_mem_kind dk, enum nkv_layout_kind lk, bool shuffle,
		unsigned streams)
{
	struct nkv_engine_opts o = { .backend = NKV_BACKEND_TCP, .streams = streams, .verify = true };
	struct nkv_layout sl = { .block_tokens = 16, .num_blocks = 24, .kind = lk }, dl;
	struct nkv_engine *se = NULL, *re = NULL;
	struct nkv_conn *c = NULL;
	struct nkv_plan *p[2] = { NULL, NULL };
	struct nkv_event got[16];
	struct h_peer rp = { 0 };
	uint32_t sid, did, sb[2][10], db[2][10];
	void *src, *dst, *shost = NULL, *dhost = NULL;
	uint64_t x = 42;
	uint16_t port;
	char addr[64], desc[512];
	int ngot = 0;

	nkv_model_preset("qwen2.5-7b", &sl.model); /* 28 layers, 4 KV heads: 16 KiB per piece */
	dl = sl;
	dl.num_blocks = 32;
	fprintf(stderr, "-- %s\n", name);
	if (nkv_engine_create(&o, &se) || nkv_engine_create(&o, &re) ||
	    make_region(se, sk, &sl, 7, &sid, &src, &shost) || make_region(re, dk, &dl, 9, &did, &dst, &dhost) ||
	    nkv_listen(re, "127.0.0.1:0", &port)) {
		CHECK(0, "%s setup: %s", name, nkv_last_error());
		goto out;
	}
	CHECK(nkv_region_describe(se, sid, desc, sizeof(desc)) == 0, "describe");
	fprintf(stderr, "   source: %s\n", desc);
	if (sk == NKV_MEM_CUDA)
		CHECK(strstr(desc, "staging") != NULL, "TCP source region should say staging: %s", desc);
	rp.e = re;
	h_start(&rp);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	if (nkv_connect(se, addr, &c)) {
		CHECK(0, "connect: %s", nkv_last_error());
		h_stop(&rp);
		goto out;
	}
	/* Two requests of 10 blocks each, disjoint destinations. */
	for (int k = 0; k < 2; k++) {
		for (int i = 0; i < 10; i++) {
			sb[k][i] = shuffle ? (uint32_t)(rnd(&x) % sl.num_blocks) : (uint32_t)(k * 10 + i);
			db[k][i] = shuffle ? (uint32_t)(k * 16 + (i * 7 + 3) % 16) : (uint32_t)(k * 10 + i + 1);
		}
		CHECK(nkv_plan_build(&sl, &dl, sb[k], db[k], 10, &p[k]) == 0, "plan: %s", nkv_last_error());
	}
	for (int k = 0; k < 2; k++)
		CHECK(nkv_push(c, &(struct nkv_push){ .req_id = 100 + k, .src_region = sid, .dst_region = did,
						       .plan = p[k] }) == 0,
		      "push %d: %s", k, nkv_last_error());
	CHECK(h_poll_until(se, NKV_EV_PUSH_DONE, 2, 30, got, 16, &ngot) == 2, "%s: completions missing", name);
	for (int i = 0; i < ngot; i++)
		CHECK(got[i].type != NKV_EV_PUSH_DONE || got[i].status == 0, "%s: push %llu: %d %s", name,
		      (unsigned long long)got[i].req_id, got[i].status, got[i].reason);
	CHECK(h_wait(&rp, NKV_EV_RECV, 2, 10) == 2, "%s: receive reports missing", name);
	h_stop(&rp);
	for (int i = 0; i < 2; i++) {
		struct nkv_event ev;
		if (h_find(&rp, NKV_EV_RECV, i, &ev))
			CHECK(ev.status == 0 && strstr(ev.reason, "10 blocks verified"), "%s: recv %d: %d %s", name, i,
			      ev.status, ev.reason);
	}
	/* Block by block, on the host: destination == source. */
	{
		uint64_t slen = nkv_layout_pool_bytes(&sl), dlen = nkv_layout_pool_bytes(&dl);
		void *sh = malloc(slen), *dh = malloc(dlen);
		const void *sv = sh ? snapshot(sk, src, sh, slen) : NULL;
		const void *dv = dh ? snapshot(dk, dst, dh, dlen) : NULL;

		CHECK(sv && dv, "snapshot: %s", nkv_last_error());
		for (int k = 0; sv && dv && k < 2; k++)
			for (int i = 0; i < 10; i++)
				CHECK(nkv_block_hash(&sl, sv, sb[k][i]) == nkv_block_hash(&dl, dv, db[k][i]),
				      "%s: request %d block %u -> %u differs", name, k, sb[k][i], db[k][i]);
		/* A block nobody wrote keeps its old bytes. */
		if (dv)
			CHECK(nkv_block_hash(&dl, dv, 0) == nkv_block_hash(&dl, dhost, 0),
			      "%s: untouched block 0 changed", name);
		free(sh);
		free(dh);
	}
out:
	if (c)
		nkv_conn_close(c);
	nkv_plan_free(p[0]);
	nkv_plan_free(p[1]);
	nkv_engine_destroy(se);
	nkv_engine_destroy(re);
	free(shost);
	free(dhost);
}

int main(int argc, char **argv)
{
	char desc[256];
	bool fake = argc > 1 && !strcmp(argv[1], "fake");

	setenv("NKV_QUIET", "1", 1);
	if (argc < 2 || (!fake && strcmp(argv[1], "cuda"))) {
		fprintf(stderr, "usage: test_gpu_push fake|cuda\n");
		return 2;
	}
	if (fake)
		nkv__gpu_override(&fake_gpu_ops);
	g = nkv__gpu();
	if (g->open(0, desc, sizeof(desc))) {
		return gpu_unusable();
	}
	fprintf(stderr, "device: %s\n", desc);
	run("GPU->GPU, layer-major, shuffled blocks", NKV_MEM_CUDA, NKV_MEM_CUDA, NKV_LAYOUT_LAYER_MAJOR, true, 3);
	run("GPU->GPU, block-major, contiguous blocks", NKV_MEM_CUDA, NKV_MEM_CUDA, NKV_LAYOUT_BLOCK_MAJOR, false, 2);
	run("GPU->host, layer-major, shuffled blocks", NKV_MEM_CUDA, NKV_MEM_HOST, NKV_LAYOUT_LAYER_MAJOR, true, 2);
	run("host->GPU, layer-major, shuffled blocks", NKV_MEM_HOST, NKV_MEM_CUDA, NKV_LAYOUT_LAYER_MAJOR, true, 1);
	run("host->GPU, block-major, contiguous blocks", NKV_MEM_HOST, NKV_MEM_CUDA, NKV_LAYOUT_BLOCK_MAJOR, false, 4);
	if (fake)
		fprintf(stderr, "fake device: %lu copies, %lu kernels, %lu not-ready polls\n",
			(unsigned long)atomic_load(&fake_copies), (unsigned long)atomic_load(&fake_kernels),
			(unsigned long)atomic_load(&fake_not_ready));
	if (fake)
		CHECK(atomic_load(&fake_kernels) > 0 && atomic_load(&fake_not_ready) > 0,
		      "the fake device saw no kernels or no waits: the staging path did not run");
	if (fails)
		fprintf(stderr, "%d check(s) failed\n", fails);
	return fails ? 1 : 0;
}
