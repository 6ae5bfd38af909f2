/*
 * paged_push: the transfer engine on its own, as a user of libnetkv sees it
 * (public headers only). Two engines in one process over TCP loopback: a
 * "decode" engine listens with a block-major KV pool and is polled by a
 * thread of its own (nkv_connect blocks until the peer's engine answers, so
 * the listener must make progress meanwhile); a "prefill" engine with a
 * layer-major pool connects and pushes a few requests' blocks into it, with
 * per-block verification on the wire. Then every pushed block is compared
 * on both sides (nkv_block_hash, layout-independent) and the run printed.
 *
 *   cc paged_push.c $(pkg-config --cflags --libs netkv) -o paged_push
 *   ./paged_push [model]             (default qwen2.5-7b)
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime under -std=c11 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "netkv_transfer.h"

#define REQUESTS 4
#define BLOCKS_PER_REQ 8
#define POOL_BLOCKS 64

struct receiver {
	struct nkv_engine *e;
	pthread_t th;
	atomic_bool stop;
	atomic_int recv_ok, recv_bad;
	atomic_ullong bytes;
	int err;
};

/* The decode side's thread: drives its engine and counts receive reports. */
static void *receiver_loop(void *arg)
{
	struct receiver *r = arg;
	struct nkv_event ev[16];

	while (!atomic_load(&r->stop)) {
		int n = nkv_poll(r->e, ev, 16, 20);
		if (n < 0) {
			fprintf(stderr, "paged_push: receiver poll: %s\n", nkv_last_error());
			r->err = n;
			break;
		}
		for (int i = 0; i < n; i++) {
			if (ev[i].type != NKV_EV_RECV)
				continue;
			if (ev[i].status) {
				fprintf(stderr, "paged_push: request %llu failed on the receiver: %s\n",
					(unsigned long long)ev[i].req_id, ev[i].reason);
				atomic_fetch_add(&r->recv_bad, 1);
			} else {
				atomic_fetch_add(&r->bytes, ev[i].bytes);
				atomic_fetch_add(&r->recv_ok, 1);
			}
		}
	}
	return NULL;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int fail(const char *what, int rc)
{
	fprintf(stderr, "paged_push: %s: %s (%d)\n", what, nkv_last_error(), rc);
	return 1;
}

int main(int argc, char **argv)
{
	const char *model_name = argc > 1 ? argv[1] : "qwen2.5-7b";
	struct nkv_engine_opts o = { .backend = NKV_BACKEND_TCP, .streams = 2, .verify = true, .gid_index = -1 };
	struct receiver rx = { 0 };
	struct nkv_engine *tx = NULL;
	struct nkv_conn *conn = NULL;
	struct nkv_plan *plans[REQUESTS] = { 0 };
	struct nkv_layout src_l = { 0 }, dst_l;
	uint32_t src_id, dst_id;
	void *src, *dst;
	uint16_t port;
	char addr[64];
	int rc, ret = 1, started = 0;

	if ((rc = nkv_model_preset(model_name, &src_l.model)))
		return fail("model", rc);
	src_l.block_tokens = 16;
	src_l.num_blocks = POOL_BLOCKS;
	src_l.kind = NKV_LAYOUT_LAYER_MAJOR; /* vLLM's layout on the prefill */
	dst_l = src_l;
	dst_l.kind = NKV_LAYOUT_BLOCK_MAJOR; /* a different one on the decode */

	/* Decode side: an engine, a pool, a listener, and a thread polling them. */
	if ((rc = nkv_engine_create(&o, &rx.e)))
		return fail("receiver engine", rc);
	if ((rc = nkv_region_alloc(rx.e, NKV_MEM_HOST, nkv_layout_pool_bytes(&dst_l), &dst_l, &dst_id, &dst)) ||
	    (rc = nkv_listen(rx.e, "127.0.0.1:0", &port))) {
		fail("receiver setup", rc);
		goto out;
	}
	if (pthread_create(&rx.th, NULL, receiver_loop, &rx)) {
		fprintf(stderr, "paged_push: pthread_create failed\n");
		goto out;
	}
	started = 1;

	/* Prefill side: an engine, a pool of patterned bytes, a connection. */
	if ((rc = nkv_engine_create(&o, &tx))) {
		fail("sender engine", rc);
		goto out;
	}
	if ((rc = nkv_region_alloc(tx, NKV_MEM_HOST, nkv_layout_pool_bytes(&src_l), &src_l, &src_id, &src))) {
		fail("sender pool", rc);
		goto out;
	}
	uint64_t x = 0x9e3779b97f4a7c15ull;
	uint64_t *w = src;
	for (uint64_t i = 0; i < nkv_layout_pool_bytes(&src_l) / 8; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		w[i] = x;
	}
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", (unsigned)port);
	if ((rc = nkv_connect(tx, addr, &conn))) {
		fail("connect", rc);
		goto out;
	}
	if (nkv_conn_remote_count(conn) < 1) {
		fprintf(stderr, "paged_push: the receiver advertised no region\n");
		goto out;
	}
	uint32_t remote = nkv_conn_remote(conn, 0)->id;

	/* Request r: source blocks 3r+i*5 (scattered), destination blocks r*8+i (together). */
	uint32_t sb[REQUESTS][BLOCKS_PER_REQ], db[REQUESTS][BLOCKS_PER_REQ];
	uint64_t total = 0;
	for (int r = 0; r < REQUESTS; r++) {
		for (int i = 0; i < BLOCKS_PER_REQ; i++) {
			sb[r][i] = (uint32_t)(3 * r + 5 * i) % POOL_BLOCKS;
			db[r][i] = (uint32_t)(r * BLOCKS_PER_REQ + i);
		}
		if ((rc = nkv_plan_build(&src_l, &dst_l, sb[r], db[r], BLOCKS_PER_REQ, &plans[r]))) {
			fail("plan", rc);
			goto out;
		}
		total += nkv_plan_bytes(plans[r]);
	}

	double t0 = now_s();
	for (int r = 0; r < REQUESTS; r++) {
		struct nkv_push p = { .req_id = 100 + (uint64_t)r, .src_region = src_id, .dst_region = remote,
				      .plan = plans[r] };
		if ((rc = nkv_push(conn, &p))) {
			fail("push", rc);
			goto out;
		}
	}
	/* The sender's own events: one PUSH_DONE per request. */
	int done = 0, bad = 0;
	struct nkv_event ev[16];
	while (done + bad < REQUESTS && now_s() - t0 < 30) {
		int n = nkv_poll(tx, ev, 16, 20);
		if (n < 0) {
			fail("sender poll", n);
			goto out;
		}
		for (int i = 0; i < n; i++) {
			if (ev[i].type != NKV_EV_PUSH_DONE)
				continue;
			if (ev[i].status) {
				fprintf(stderr, "paged_push: push %llu failed: %s\n", (unsigned long long)ev[i].req_id,
					ev[i].reason);
				bad++;
			} else {
				done++;
			}
		}
	}
	while (atomic_load(&rx.recv_ok) + atomic_load(&rx.recv_bad) < REQUESTS && now_s() - t0 < 30 && !rx.err)
		nkv_poll(tx, ev, 16, 5);
	double secs = now_s() - t0;

	/* Per-block check on both sides' memory (the wire check already ran). */
	int blocks_ok = 0, blocks_bad = 0;
	for (int r = 0; r < REQUESTS; r++)
		for (int i = 0; i < BLOCKS_PER_REQ; i++) {
			if (nkv_block_hash(&src_l, src, sb[r][i]) == nkv_block_hash(&dst_l, dst, db[r][i]))
				blocks_ok++;
			else
				blocks_bad++;
		}

	printf("engines   %s, 127.0.0.1:%u\n", nkv_engine_describe(tx), (unsigned)port);
	printf("model     %s: %u layers, %u KV heads x %u, %s; %u-token blocks of %llu bytes\n", src_l.model.name,
	       src_l.model.layers, src_l.model.kv_heads, src_l.model.head_dim, nkv_dtype_name(src_l.model.dtype),
	       src_l.block_tokens, (unsigned long long)nkv_layout_block_bytes(&src_l));
	printf("layouts   %s (sender) -> %s (receiver), %u blocks each\n", nkv_layout_kind_name(src_l.kind),
	       nkv_layout_kind_name(dst_l.kind), POOL_BLOCKS);
	printf("pushed    %d requests x %d blocks, %llu bytes (%zu ranges in request 0) in %.1f ms, %.2f Gb/s\n",
	       REQUESTS, BLOCKS_PER_REQ, (unsigned long long)total, nkv_plan_count(plans[0]), secs * 1e3,
	       secs > 0 ? (double)total * 8 / secs / 1e9 : 0.0);
	printf("results   sender %d/%d done, receiver %d/%d received (%llu bytes), blocks verified %d/%d\n", done,
	       REQUESTS, atomic_load(&rx.recv_ok), REQUESTS, (unsigned long long)atomic_load(&rx.bytes), blocks_ok,
	       blocks_ok + blocks_bad);
	ret = done == REQUESTS && atomic_load(&rx.recv_ok) == REQUESTS && blocks_bad == 0 && !rx.err ? 0 : 1;
	printf("%s\n", ret ? "FAILED" : "ok");
out:
	if (conn)
		nkv_conn_close(conn);
	nkv_engine_destroy(tx);
	if (started) {
		atomic_store(&rx.stop, true);
		pthread_join(rx.th, NULL);
	}
	for (int r = 0; r < REQUESTS; r++)
		nkv_plan_free(plans[r]);
	nkv_engine_destroy(rx.e);
	return ret;
}
