/*
 * One sender engine, two TCP peers, GPU source (the fake device): the first
 * peer stops polling (a hung decode), so its sockets fill and the push to
 * it stops moving; a push to the second peer must still complete, byte for
 * byte. The sender's staging slots are shared by the engine (4 chunks of
 * 4 MiB): chunks for the stalled peer must not take all of them. Then the
 * first peer resumes and its push completes too (the gate lets its later
 * chunks go once the earlier ones left).
 */
#include "../transfer/harness.h"
#include "fake_gpu.h"

#define NBLK 64     /* 896 KiB blocks: 56 MiB, 14 chunks, far more than two sockets buffer */
#define NHEALTHY 12 /* 10.5 MiB: 3 chunks, slots handed back and refilled */

static struct h_peer stalled, healthy;

/* Poll the sender until the push req_id ends; its status, or 1 on timeout. */
static int wait_push(struct nkv_engine *e, uint64_t req_id, double timeout_s, char *why, size_t len)
{
	double end = nkv_now_s() + timeout_s;
	struct nkv_event ev[16];

	while (nkv_now_s() < end) {
		int n = nkv_poll(e, ev, 16, 20);

		if (n < 0) {
			snprintf(why, len, "poll: %s", nkv_last_error());
			return n;
		}
		for (int i = 0; i < n; i++) {
			if (ev[i].type != NKV_EV_PUSH_DONE || ev[i].req_id != req_id)
				continue;
			snprintf(why, len, "%s", ev[i].reason);
			return ev[i].status;
		}
	}
	snprintf(why, len, "did not complete in %.0f s", timeout_s);
	return 1;
}

/* Destination blocks d[] of the peer's host region hold source blocks s[]. */
static void check_blocks(const char *who, const struct nkv_layout *l, const void *src, const void *dst,
			 const uint32_t *s, const uint32_t *d, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		CHECK(nkv_block_hash(l, src, s[i]) == nkv_block_hash(l, dst, d[i]), "%s: block %u -> %u differs", who,
		      s[i], d[i]);
}

int main(void)
{
	struct nkv_engine_opts o = { .backend = NKV_BACKEND_TCP, .streams = 2, .verify = true };
	struct nkv_layout l = { .block_tokens = 16, .num_blocks = NBLK, .kind = NKV_LAYOUT_BLOCK_MAJOR };
	struct nkv_engine *se = NULL;
	struct nkv_conn *c1 = NULL, *c2 = NULL;
	struct nkv_plan *all = NULL, *some = NULL;
	uint32_t gid, r1, r2, sb[NBLK], db[NHEALTHY];
	void *dev, *host = NULL, *p1, *p2;
	uint64_t len;
	uint16_t port1, port2;
	char addr[64], why[256];
	int st;

	setenv("NKV_QUIET", "1", 1);
	nkv__gpu_override(&fake_gpu_ops);
	nkv_model_preset("qwen2.5-7b", &l.model);
	len = nkv_layout_pool_bytes(&l);
	if (nkv_engine_create(&o, &se) || nkv_engine_create(&o, &stalled.e) || nkv_engine_create(&o, &healthy.e) ||
	    nkv_region_alloc(se, NKV_MEM_CUDA, len, &l, &gid, &dev) ||
	    nkv_region_alloc(stalled.e, NKV_MEM_HOST, len, &l, &r1, &p1) ||
	    nkv_region_alloc(healthy.e, NKV_MEM_HOST, len, &l, &r2, &p2) ||
	    nkv_listen(stalled.e, "127.0.0.1:0", &port1) || nkv_listen(healthy.e, "127.0.0.1:0", &port2)) {
		fprintf(stderr, "setup: %s\n", nkv_last_error());
		return 1;
	}
	if (!(host = malloc(len)))
		return 1;
	h_fill(host, len, 3);
	if (fake_gpu_ops.copy(0, dev, host, len))
		return 1;
	for (uint32_t i = 0; i < NBLK; i++)
		sb[i] = i;
	for (uint32_t i = 0; i < NHEALTHY; i++)
		db[i] = (i * 5 + 1) % NBLK; /* scattered: several ranges per chunk */
	if (nkv_plan_build(&l, &l, sb, sb, NBLK, &all) || nkv_plan_build(&l, &l, sb, db, NHEALTHY, &some)) {
		fprintf(stderr, "plans: %s\n", nkv_last_error());
		return 1;
	}
	h_start(&stalled);
	h_start(&healthy);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port1);
	CHECK(nkv_connect(se, addr, &c1) == 0, "connect to the first peer: %s", nkv_last_error());
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port2);
	CHECK(nkv_connect(se, addr, &c2) == 0, "connect to the second peer: %s", nkv_last_error());
	if (fails)
		return 1;
	/* Let the first peer finish its handshake, then stall it. */
	for (int i = 0; i < 20; i++)
		nkv_poll(se, (struct nkv_event[8]){ 0 }, 8, 10);
	h_pause(&stalled);
	CHECK(nkv_push(c1, &(struct nkv_push){ .req_id = 1, .src_region = gid, .dst_region = r1, .plan = all }) == 0,
	      "push to the stalled peer: %s", nkv_last_error());
	/* Its chunks are copied out and fill its sockets; the rest wait. */
	for (int i = 0; i < 50; i++)
		nkv_poll(se, (struct nkv_event[8]){ 0 }, 8, 10);
	CHECK(nkv_push(c2, &(struct nkv_push){ .req_id = 2, .src_region = gid, .dst_region = r2, .plan = some }) == 0,
	      "push to the healthy peer: %s", nkv_last_error());
	st = wait_push(se, 2, 30, why, sizeof(why));
	fprintf(stderr, "-- a stalled peer: the healthy peer's push: %d %s\n", st, why);
	CHECK(st == 0, "a stalled peer holds up a push to another peer: %s", why);
	CHECK(h_wait(&healthy, NKV_EV_RECV, 1, 10) == 1, "the healthy peer's receive report");
	h_stop(&healthy);
	if (!st) {
		struct nkv_event ev;
		if (h_find(&healthy, NKV_EV_RECV, 0, &ev))
			CHECK(ev.status == 0 && strstr(ev.reason, "blocks verified"), "healthy receive: %d %s", ev.status,
			      ev.reason);
		check_blocks("healthy peer", &l, host, p2, sb, db, NHEALTHY);
	}
	/* The stalled peer comes back: its push, held back chunk by chunk,
	 * goes through whole. */
	h_resume(&stalled);
	st = wait_push(se, 1, 60, why, sizeof(why));
	fprintf(stderr, "-- the stalled peer resumed: its push: %d %s\n", st, why);
	CHECK(st == 0, "the stalled peer's push after it resumed: %s", why);
	CHECK(h_wait(&stalled, NKV_EV_RECV, 1, 10) == 1, "the resumed peer's receive report");
	h_stop(&stalled);
	if (!st)
		check_blocks("resumed peer", &l, host, p1, sb, sb, NBLK);
	if (c1)
		nkv_conn_close(c1);
	if (c2)
		nkv_conn_close(c2);
	nkv_engine_destroy(se);
	nkv_engine_destroy(stalled.e);
	nkv_engine_destroy(healthy.e);
	nkv_plan_free(all);
	nkv_plan_free(some);
	free(host);
	if (fails)
		fprintf(stderr, "%d check(s) failed\n", fails);
	else
		fprintf(stderr, "ok\n");
	return fails ? 1 : 0;
}
