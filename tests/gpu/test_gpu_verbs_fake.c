/*
 * The verbs backend's GPU staging on soft RDMA (rxe, inside tools/rxe-vm in
 * CI), with the fake GPU: rxe cannot reach GPU memory, so GPU regions are
 * staged and say why. Pushes from, into and between them go through
 * pinned slots (the sender's chunk slots, the receiver's lent bounce
 * slots) and must land byte for byte: the fake runs a copy only when its
 * event is found done, so a WRITE posted before its chunk was copied out,
 * or bytes counted before their copy to the device ran, would show as a
 * block hash that differs. A receiver with no slot left to lend refuses
 * staged pushes by name instead of leaving them waiting. On a hardware NIC
 * the fake's "device memory" is host memory a NIC could register, which
 * proves nothing: skip (test_gpu_verbs covers real GPUs there).
 */
#include "../verbs/vtest.h"
#include "fake_gpu.h"

#include <errno.h>

#define NREQ 3

/* A GPU region filled through the fake's copy, and its bytes on the host. */
static void gpu_region(struct nkv_engine *e, const struct nkv_layout *l, uint64_t seed, uint32_t *id, void **host,
		       void **dev)
{
	uint64_t len = nkv_layout_pool_bytes(l);
	void *p;

	VT_CHECK(nkv_region_alloc(e, NKV_MEM_CUDA, len, l, id, &p) == 0, "GPU region of %llu bytes",
		 (unsigned long long)len);
	VT_CHECK((*host = malloc(len)), "malloc");
	vt_fill(*host, len, seed);
	VT_CHECK(fake_gpu_ops.copy(0, p, *host, len) == 0, "fill the GPU region");
	if (dev)
		*dev = p;
}

/* A region's bytes on the host (GPU: copied out). */
static const void *snapshot(enum nkv_mem_kind k, void *p, void *buf, uint64_t len)
{
	if (k != NKV_MEM_CUDA)
		return p;
	VT_CHECK(fake_gpu_ops.copy(0, buf, p, len) == 0, "copy the GPU region out");
	return buf;
}

/* NREQ pushes in flight, source and destination of the given kinds; every
 * block compared with its source, and a block nobody wrote unchanged. */
static void run(const char *ip, const char *name, enum nkv_mem_kind sk, enum nkv_mem_kind dk, enum nkv_layout_kind lk,
		uint32_t nblocks, bool shuffle)
{
	struct nkv_layout sl = { .block_tokens = 16, .num_blocks = nblocks * NREQ, .kind = lk }, dl;
	struct vt_rx rx = { 0 };
	struct nkv_engine *se = vt_engine(2);
	struct nkv_conn *c;
	struct nkv_plan *p[NREQ];
	uint32_t sid, did, *sb = calloc(NREQ * nblocks, 4), *db = calloc(NREQ * nblocks, 4);
	void *shost, *dst, *dhost = NULL;
	char addr[96], desc[512], why[256] = "";
	int status[NREQ];
	uint64_t x = 7, dlen;

	VT_CHECK(sb && db, "malloc");
	nkv_model_preset("qwen2.5-7b", &sl.model); /* layer-major: 16 KiB pieces; block-major: 896 KiB blocks */
	dl = sl;
	dl.num_blocks = sl.num_blocks + 8;
	dlen = nkv_layout_pool_bytes(&dl);
	fprintf(stderr, "-- %s: %u requests of %u blocks\n", name, NREQ, nblocks);
	if (sk == NKV_MEM_CUDA) {
		gpu_region(se, &sl, 11, &sid, &shost, NULL);
		VT_CHECK(nkv_region_describe(se, sid, desc, sizeof(desc)) == 0, "describe");
		fprintf(stderr, "   source: %s\n", desc);
		VT_CHECK(strstr(desc, "staging") && strstr(desc, "software RDMA device"),
			 "the source should say staging and why: %s", desc);
	} else {
		void *sp;
		VT_CHECK(nkv_region_alloc(se, NKV_MEM_HOST, nkv_layout_pool_bytes(&sl), &sl, &sid, &sp) == 0, "host source");
		vt_fill(sp, nkv_layout_pool_bytes(&sl), 11);
		VT_CHECK((shost = malloc(nkv_layout_pool_bytes(&sl))), "malloc");
		memcpy(shost, sp, nkv_layout_pool_bytes(&sl));
	}

	rx.e = vt_engine(2);
	if (dk == NKV_MEM_CUDA) {
		gpu_region(rx.e, &dl, 5, &did, &dhost, &dst);
		memset(dhost, 0x5a, dlen);
		VT_CHECK(fake_gpu_ops.copy(0, dst, dhost, dlen) == 0, "fill");
	} else {
		VT_CHECK(nkv_region_alloc(rx.e, NKV_MEM_HOST, dlen, &dl, &did, &dst) == 0, "host region");
		memset(dst, 0x5a, dlen);
		VT_CHECK((dhost = malloc(dlen)), "malloc");
	}
	vt_rx_start(&rx, ip);
	snprintf(addr, sizeof(addr), "%s:%u", ip, rx.port);
	VT_CHECK(nkv_connect(se, addr, &c) == 0, "connect %s", addr);
	for (int k = 0; k < NREQ; k++) {
		uint32_t *s = sb + k * nblocks, *d = db + k * nblocks;
		for (uint32_t i = 0; i < nblocks; i++) {
			s[i] = shuffle ? (uint32_t)(nkv_xorshift64(&x) % sl.num_blocks) : k * nblocks + i;
			d[i] = 1 + k * nblocks + (shuffle ? (i * 7 + 3) % nblocks : i);
		}
		VT_CHECK(nkv_plan_build(&sl, &dl, s, d, nblocks, &p[k]) == 0, "plan");
		VT_CHECK(nkv_push(c, &(struct nkv_push){ .req_id = 100 + k, .src_region = sid, .dst_region = did,
						          .plan = p[k] }) == 0, "push %d", k);
	}
	VT_CHECK(vt_wait_done(se, NREQ, 60, status, NULL, why, sizeof(why)) == NREQ, "%s: completions missing", name);
	for (int k = 0; k < NREQ; k++)
		VT_CHECK(status[k] == 0, "%s: a push failed: %s", name, why);
	VT_CHECK(vt_rx_wait(&rx, NREQ, 30), "%s: receive reports missing", name);
	pthread_mutex_lock(&rx.mu);
	for (size_t i = 0; i < rx.nev; i++)
		VT_CHECK(rx.ev[i].status == 0, "%s: a receive failed", name);
	pthread_mutex_unlock(&rx.mu);
	vt_rx_stop(&rx);
	const void *dv = snapshot(dk, dst, dhost, dlen);
	for (uint32_t i = 0; i < NREQ * nblocks; i++)
		VT_CHECK(nkv_block_hash(&sl, shost, sb[i]) == nkv_block_hash(&dl, dv, db[i]), "%s: block %u -> %u differs",
			 name, sb[i], db[i]);
	{
		/* Block 0 was never written: everything stayed inside its ranges. */
		uint8_t *z = malloc(dlen);
		VT_CHECK(z, "malloc");
		memset(z, 0x5a, dlen);
		VT_CHECK(nkv_block_hash(&dl, dv, 0) == nkv_block_hash(&dl, z, 0), "%s: untouched block 0 changed", name);
		free(z);
	}
	for (int k = 0; k < NREQ; k++)
		nkv_plan_free(p[k]);
	nkv_conn_close(c);
	nkv_engine_destroy(se);
	nkv_engine_destroy(rx.e);
	free(shost);
	free(dhost);
	free(sb);
	free(db);
}

/* A receiver lends each connection VB_CREDITS (4) of its 16 receive slots:
 * the fifth connection gets none, and its staged pushes fail with the
 * reason instead of waiting for a slot; the others still work. */
static void no_slot_left(const char *ip)
{
	struct nkv_layout l = { .block_tokens = 16, .num_blocks = 4, .kind = NKV_LAYOUT_BLOCK_MAJOR };
	struct vt_rx rx = { 0 };
	struct nkv_engine *se[5];
	struct nkv_conn *c[5];
	struct nkv_plan *p;
	uint32_t gid, hid, sid[5], b = 1;
	void *host, *hp, *sp;
	char addr[96], why[256] = "";
	int rc, st = -1;

	nkv_model_preset("qwen2.5-7b", &l.model);
	rx.e = vt_engine(1);
	gpu_region(rx.e, &l, 3, &gid, &host, NULL);
	VT_CHECK(nkv_region_alloc(rx.e, NKV_MEM_HOST, nkv_layout_pool_bytes(&l), &l, &hid, &hp) == 0, "host region");
	vt_rx_start(&rx, ip);
	snprintf(addr, sizeof(addr), "%s:%u", ip, rx.port);
	VT_CHECK(nkv_plan_build(&l, &l, &b, &b, 1, &p) == 0, "plan");
	for (int i = 0; i < 5; i++) {
		se[i] = vt_engine(1);
		VT_CHECK(nkv_region_alloc(se[i], NKV_MEM_HOST, nkv_layout_pool_bytes(&l), &l, &sid[i], &sp) == 0, "source");
		VT_CHECK(nkv_connect(se[i], addr, &c[i]) == 0, "connect %d", i);
	}
	/* The fifth: refused at push if the empty credit came first, else the
	 * push fails when it comes. */
	rc = nkv_push(c[4], &(struct nkv_push){ .req_id = 5, .src_region = sid[4], .dst_region = gid, .plan = p });
	if (rc == 0) {
		VT_CHECK(vt_wait_done(se[4], 1, 20, &st, NULL, why, sizeof(why)) == 1, "fifth push: no completion");
		rc = st;
	} else {
		snprintf(why, sizeof(why), "%s", nkv_last_error());
	}
	fprintf(stderr, "-- fifth connection, staged push: %d %s\n", rc, why);
	VT_CHECK(rc == -ENOSPC && strstr(why, "no bounce slot"), "expected -ENOSPC naming the cause, got %d", rc);
	/* The fifth connection itself stays up for host memory. */
	VT_CHECK(nkv_push(c[4], &(struct nkv_push){ .req_id = 6, .src_region = sid[4], .dst_region = hid, .plan = p }) == 0,
		 "fifth connection, host push");
	VT_CHECK(vt_wait_done(se[4], 1, 20, &st, NULL, why, sizeof(why)) == 1 && st == 0, "fifth host push: %d %s", st, why);
	/* The first still has its slots. */
	VT_CHECK(nkv_push(c[0], &(struct nkv_push){ .req_id = 1, .src_region = sid[0], .dst_region = gid, .plan = p }) == 0,
		 "first connection's push");
	VT_CHECK(vt_wait_done(se[0], 1, 20, &st, NULL, why, sizeof(why)) == 1 && st == 0, "first push: %d %s", st, why);
	VT_CHECK(vt_rx_wait(&rx, 2, 10), "the host push and the first connection's push arrive");
	vt_rx_stop(&rx);
	for (int i = 0; i < 5; i++) {
		nkv_conn_close(c[i]);
		nkv_engine_destroy(se[i]);
	}
	nkv_plan_free(p);
	nkv_engine_destroy(rx.e);
	free(host);
}

/* One sender engine, two peers: the first stops polling (a hung decode), so
 * it never lends its slots again; a push to the second must still go. The
 * sender's chunk slots are shared by the engine: chunks for the stalled
 * peer must not sit in them waiting for its slots. */
static void stalled_peer(const char *ip)
{
	struct nkv_layout l = { .block_tokens = 16, .num_blocks = 16, .kind = NKV_LAYOUT_BLOCK_MAJOR };
	struct vt_rx rx1 = { 0 }, rx2 = { 0 };
	struct nkv_engine *se = vt_engine(1);
	struct nkv_conn *c1, *c2;
	struct nkv_plan *all, *one;
	uint32_t gid, g1, h2, b[16];
	void *host, *host1, *p;
	char addr[96], why[256] = "";
	uint64_t ids[2] = { 0, 0 };
	int st[2] = { -1, -1 }, n;

	nkv_model_preset("qwen2.5-7b", &l.model);
	gpu_region(se, &l, 1, &gid, &host, NULL);
	rx1.e = vt_engine(1);
	rx2.e = vt_engine(1);
	gpu_region(rx1.e, &l, 2, &g1, &host1, NULL);
	VT_CHECK(nkv_region_alloc(rx2.e, NKV_MEM_HOST, nkv_layout_pool_bytes(&l), &l, &h2, &p) == 0, "host region");
	vt_rx_start(&rx1, ip);
	vt_rx_start(&rx2, ip);
	snprintf(addr, sizeof(addr), "%s:%u", ip, rx1.port);
	VT_CHECK(nkv_connect(se, addr, &c1) == 0, "connect 1");
	snprintf(addr, sizeof(addr), "%s:%u", ip, rx2.port);
	VT_CHECK(nkv_connect(se, addr, &c2) == 0, "connect 2");
	for (uint32_t i = 0; i < 16; i++)
		b[i] = i;
	VT_CHECK(nkv_plan_build(&l, &l, b, b, 16, &all) == 0 && nkv_plan_build(&l, &l, b, b, 1, &one) == 0, "plans");
	/* Let the first peer lend its slots, then stall it. */
	for (int i = 0; i < 50; i++)
		nkv_poll(se, (struct nkv_event[8]){ 0 }, 8, 10);
	rx1.stop = 1;
	pthread_join(rx1.th, NULL);
	VT_CHECK(nkv_push(c1, &(struct nkv_push){ .req_id = 1, .src_region = gid, .dst_region = g1, .plan = all }) == 0,
		 "push to the stalled peer");
	for (int i = 0; i < 50; i++) /* its first units go, the rest wait for slots that never come back */
		nkv_poll(se, (struct nkv_event[8]){ 0 }, 8, 10);
	VT_CHECK(nkv_push(c2, &(struct nkv_push){ .req_id = 2, .src_region = gid, .dst_region = h2, .plan = one }) == 0,
		 "push to the healthy peer");
	n = vt_wait_done(se, 1, 30, st, ids, why, sizeof(why));
	fprintf(stderr, "-- a stalled peer: the healthy peer's push %s (id %llu, status %d)\n",
		n == 1 ? "completed" : "did NOT complete in 30 s", (unsigned long long)ids[0], st[0]);
	VT_CHECK(n == 1 && ids[0] == 2 && st[0] == 0, "a stalled peer holds up pushes to another peer");
	VT_CHECK(vt_rx_wait(&rx2, 1, 10), "the healthy peer's receive");
	vt_rx_stop(&rx2);
	nkv_conn_close(c1);
	nkv_conn_close(c2);
	nkv_engine_destroy(se);
	free(rx1.ev);
	pthread_mutex_destroy(&rx1.mu);
	nkv_engine_destroy(rx1.e);
	nkv_engine_destroy(rx2.e);
	nkv_plan_free(all);
	nkv_plan_free(one);
	free(host);
	free(host1);
}

int main(void)
{
	char ip[64];
	struct nkv_engine *e;
	const char *desc;

	setenv("NKV_QUIET", "1", 1);
	unsetenv("NKV_GPUDIRECT");
	vt_need_rdma(ip, sizeof(ip));
	nkv__gpu_override(&fake_gpu_ops);
	e = vt_engine(1);
	desc = nkv_engine_describe(e);
	if (!strstr(desc, "rxe") && !strstr(desc, "siw")) {
		fprintf(stderr, "SKIP: %s is a hardware device; the fake GPU proves nothing there\n", desc);
		return 77;
	}
	nkv_engine_destroy(e);
	/* Many 16 KiB pieces per chunk or unit (scattered gathers and
	 * scatters), then 896 KiB blocks: 12 chunks for the sender's 4 slots,
	 * 48 units for the receiver's 4 lent slots, so every slot is handed
	 * back and refilled many times while transfers are in flight. */
	run(ip, "GPU -> host, layer-major, shuffled", NKV_MEM_CUDA, NKV_MEM_HOST, NKV_LAYOUT_LAYER_MAJOR, 12, true);
	run(ip, "GPU -> host, block-major", NKV_MEM_CUDA, NKV_MEM_HOST, NKV_LAYOUT_BLOCK_MAJOR, 16, false);
	run(ip, "host -> GPU, layer-major, shuffled", NKV_MEM_HOST, NKV_MEM_CUDA, NKV_LAYOUT_LAYER_MAJOR, 12, true);
	run(ip, "host -> GPU, block-major", NKV_MEM_HOST, NKV_MEM_CUDA, NKV_LAYOUT_BLOCK_MAJOR, 16, false);
	run(ip, "GPU -> GPU, layer-major, shuffled", NKV_MEM_CUDA, NKV_MEM_CUDA, NKV_LAYOUT_LAYER_MAJOR, 12, true);
	run(ip, "GPU -> GPU, block-major", NKV_MEM_CUDA, NKV_MEM_CUDA, NKV_LAYOUT_BLOCK_MAJOR, 16, false);
	no_slot_left(ip);
	stalled_peer(ip);
	fprintf(stderr, "ok\n");
	return 0;
}
