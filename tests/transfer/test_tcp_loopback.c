/*
 * Multi-request, multi-stream loopback push of >= 1 GiB of random paged
 * blocks, checked block by block: by the engine (--verify, xxhash64 per
 * block) and again here by comparing every chunk with its source.
 */
#include "harness.h"

#include <errno.h>

#define STREAMS 4
#define REQS 32
#define BLOCKS_PER_REQ 16 /* 32 x 16 x 2 MiB = 1 GiB */

/* One run: src layout kind -> dst layout kind, `reqs` requests in flight. */
static void run(enum nkv_layout_kind sk, enum nkv_layout_kind dk, int reqs, uint64_t seed)
{
	struct nkv_engine_opts o = { .backend = NKV_BACKEND_TCP, .streams = STREAMS, .verify = true };
	struct nkv_layout sl = { .block_tokens = 16, .num_blocks = 64, .kind = sk }, dl = sl;
	struct nkv_engine *se, *re;
	struct nkv_conn *c;
	struct nkv_plan *plans[REQS];
	struct nkv_event got[REQS * 2];
	uint32_t sb[REQS][BLOCKS_PER_REQ], db[REQS][BLOCKS_PER_REQ], perm[REQS * BLOCKS_PER_REQ];
	struct h_peer rp = { 0 };
	uint32_t sid, did;
	void *src, *dst;
	uint16_t port;
	char addr[64];
	int ngot = 0, rc;
	uint64_t x = seed, total = 0, t0;

	nkv_model_preset("llama3-8b", &sl.model);
	dl.model = sl.model;
	dl.kind = dk;
	dl.num_blocks = (uint32_t)(reqs + 1) * BLOCKS_PER_REQ; /* the source pool is small: blocks repeat */
	if (nkv_engine_create(&o, &se) || nkv_engine_create(&o, &re)) {
		fprintf(stderr, "engine: %s\n", nkv_last_error());
		exit(1);
	}
	CHECK(nkv_region_alloc(se, NKV_MEM_HOST, nkv_layout_pool_bytes(&sl), &sl, &sid, &src) == 0, "%s", nkv_last_error());
	CHECK(nkv_region_alloc(re, NKV_MEM_HOST, nkv_layout_pool_bytes(&dl), &dl, &did, &dst) == 0, "%s", nkv_last_error());
	CHECK(nkv_listen(re, "127.0.0.1:0", &port) == 0, "%s", nkv_last_error());
	h_fill(src, nkv_layout_pool_bytes(&sl), seed);
	rp.e = re;
	h_start(&rp);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	rc = nkv_connect(se, addr, &c);
	CHECK(rc == 0, "%s", nkv_last_error());
	if (rc)
		exit(1);
	CHECK(h_wait(&rp, NKV_EV_CONN_UP, 1, 10) == 1, "receiver saw no connection");

	/* Random source blocks (repeats allowed); destinations a random
	 * permutation of [0, reqs*16). Request 0 is contiguous on both sides
	 * (src 0..15 -> dst reqs*16..) so coalesced ranges are exercised too,
	 * every 4th request contiguous on the source side only. */
	nkv_permutation(perm, (uint32_t)reqs * BLOCKS_PER_REQ, &x);
	for (int r = 0; r < reqs; r++)
		for (int b = 0; b < BLOCKS_PER_REQ; b++) {
			sb[r][b] = r % 4 == 0 ? (uint32_t)((r / 4 % 3) * 16 + b) : (uint32_t)(rnd(&x) % sl.num_blocks);
			db[r][b] = r == 0 ? (uint32_t)(reqs * BLOCKS_PER_REQ + b) : perm[r * BLOCKS_PER_REQ + b];
		}

	t0 = nkv_now_ns();
	for (int r = 0; r < reqs; r++) {
		CHECK(nkv_plan_build(&sl, &dl, sb[r], db[r], BLOCKS_PER_REQ, &plans[r]) == 0, "%s", nkv_last_error());
		total += nkv_plan_bytes(plans[r]);
		rc = nkv_push(c, &(struct nkv_push){ .req_id = 1000 + (uint64_t)r, .src_region = sid, .dst_region = did,
						     .plan = plans[r] });
		CHECK(rc == 0, "push %d: %s", r, nkv_last_error());
	}
	rc = h_poll_until(se, NKV_EV_PUSH_DONE, reqs, 50, got, REQS * 2, &ngot);
	CHECK(rc == reqs, "%d of %d pushes completed", rc, reqs);
	rc = h_wait(&rp, NKV_EV_RECV, reqs, 10);
	CHECK(rc == reqs, "receiver notifications: %d of %d", rc, reqs);
	fprintf(stderr, "%s -> %s: %d requests, %.2f GiB in %.2f s (with verify)\n", nkv_layout_kind_name(sk),
		nkv_layout_kind_name(dk), reqs, (double)total / (1 << 30), (double)(nkv_now_ns() - t0) * 1e-9);
	CHECK(reqs < REQS || total >= (1ull << 30), "only %llu bytes", (unsigned long long)total);
	for (int i = 0; i < ngot; i++) {
		CHECK(got[i].type == NKV_EV_PUSH_DONE && got[i].status == 0, "event %d: type %d status %d %s", i,
		      got[i].type, got[i].status, got[i].reason);
		CHECK(got[i].bytes == (uint64_t)BLOCKS_PER_REQ * nkv_layout_block_bytes(&sl), "bytes %llu",
		      (unsigned long long)got[i].bytes);
	}
	for (int i = 0; i < reqs; i++) {
		struct nkv_event ev;
		h_find(&rp, NKV_EV_RECV, i, &ev);
		CHECK(ev.status == 0 && ev.bytes == (uint64_t)BLOCKS_PER_REQ * nkv_layout_block_bytes(&dl) &&
			      ev.req_id >= 1000 && ev.req_id < 1000 + (uint64_t)reqs,
		      "recv %d: req %llu status %d bytes %llu %s", i, (unsigned long long)ev.req_id, ev.status,
		      (unsigned long long)ev.bytes, ev.reason);
	}
	/* Block by block, chunk by chunk, against the source. */
	for (int r = 0; r < reqs; r++)
		for (int b = 0; b < BLOCKS_PER_REQ; b++)
			for (uint32_t l = 0; l < sl.model.layers; l++)
				for (uint32_t kv = 0; kv < 2; kv++)
					if (memcmp((char *)src + nkv_layout_chunk_offset(&sl, sb[r][b], l, kv),
						   (char *)dst + nkv_layout_chunk_offset(&dl, db[r][b], l, kv),
						   nkv_layout_chunk_bytes(&sl))) {
						CHECK(0, "request %d block %d (src %u dst %u) layer %u kv %u differs", r, b,
						      sb[r][b], db[r][b], l, kv);
						goto out;
					}
out:
	for (int r = 0; r < reqs; r++)
		nkv_plan_free(plans[r]);
	nkv_conn_close(c);
	CHECK(h_wait(&rp, NKV_EV_CONN_DOWN, 1, 10) == 1, "receiver saw no disconnect");
	h_stop(&rp);
	nkv_engine_destroy(se);
	nkv_engine_destroy(re);
}

int main(void)
{
	setenv("NKV_QUIET", "1", 1);
	run(NKV_LAYOUT_LAYER_MAJOR, NKV_LAYOUT_LAYER_MAJOR, REQS, 7);
	run(NKV_LAYOUT_LAYER_MAJOR, NKV_LAYOUT_BLOCK_MAJOR, 8, 11);
	if (fails)
		fprintf(stderr, "%d check(s) failed\n", fails);
	return fails ? 1 : 0;
}
