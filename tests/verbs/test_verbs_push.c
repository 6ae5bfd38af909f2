/*
 * Multi-QP, multi-request push of random paged blocks, verified block by
 * block; immediates (RECV events) complete and, on one QP, in order; a raw
 * request over 8 MiB (split to rxe's message size) lands intact; the event
 * channel completion mode moves the same bytes.
 */
#include "vtest.h"

#include <errno.h>

#define POOL 192
#define NREQ 24

static struct nkv_layout layout(enum nkv_layout_kind k)
{
	/* Small model so TCG-emulated soft-RoCE moves it in seconds:
	 * 4 layers x K,V x 2 heads x 64 x fp16, 16-token blocks = 32 KiB/block. */
	struct nkv_layout l = { .model = { .name = "tiny", .layers = 4, .kv_heads = 2, .head_dim = 64, .dtype = NKV_FP16 },
				.block_tokens = 16, .num_blocks = POOL, .kind = k };
	return l;
}

static void paged_push(unsigned qps, uint64_t seed)
{
	char ip[64], addr[96];
	struct vt_rx rx = { 0 };
	struct nkv_layout sl = layout(NKV_LAYOUT_LAYER_MAJOR), dl = layout(NKV_LAYOUT_BLOCK_MAJOR);
	uint64_t bb = nkv_layout_block_bytes(&sl), pool = nkv_layout_pool_bytes(&sl), s = seed;
	uint32_t perm[POOL], src_of[POOL], rid, sid, *sb, *db;
	struct nkv_plan *plans[NREQ];
	uint64_t want_bytes[NREQ];
	uint8_t *rbuf, *sbuf;
	struct nkv_engine *tx;
	struct nkv_conn *c;
	size_t used = 0;

	vt_need_rdma(ip, sizeof(ip));
	rx.e = vt_engine(1);
	VT_CHECK(nkv_region_alloc(rx.e, NKV_MEM_HOST, pool, &dl, &rid, (void **)&rbuf) == 0, "rx pool");
	vt_rx_start(&rx, ip);
	tx = vt_engine(qps);
	VT_CHECK(nkv_region_alloc(tx, NKV_MEM_HOST, pool, &sl, &sid, (void **)&sbuf) == 0, "tx pool");
	vt_fill(sbuf, pool, seed);
	snprintf(addr, sizeof(addr), "%s:%u", ip, rx.port);
	VT_CHECK(nkv_connect(tx, addr, &c) == 0, "connect");

	/* Destinations: a random permutation cut into requests of 1..16 blocks;
	 * sources: random blocks. Unused destination blocks must stay zero. */
	nkv_permutation(perm, POOL, &s);
	for (uint32_t i = 0; i < POOL; i++)
		src_of[i] = UINT32_MAX;
	sb = malloc(POOL * sizeof(*sb));
	db = malloc(POOL * sizeof(*db));
	for (int r = 0; r < NREQ; r++) {
		size_t n = 1 + nkv_xorshift64(&s) % 16;
		if (used + n > POOL - 8)
			n = 1;
		for (size_t k = 0; k < n; k++) {
			db[k] = perm[used + k];
			sb[k] = (uint32_t)(nkv_xorshift64(&s) % POOL);
			src_of[db[k]] = sb[k];
		}
		used += n;
		VT_CHECK(nkv_plan_build(&sl, &dl, sb, db, n, &plans[r]) == 0, "plan %d", r);
		want_bytes[r] = n * bb;
		VT_CHECK(nkv_plan_bytes(plans[r]) == want_bytes[r], "plan bytes");
	}
	double t0 = nkv_now_s();
	for (int r = 0; r < NREQ; r++)
		VT_CHECK(nkv_push(c, &(struct nkv_push){ .req_id = 1000 + r, .src_region = sid, .dst_region = rid,
							  .plan = plans[r] }) == 0, "push %d", r);
	int st[NREQ];
	uint64_t ids[NREQ];
	char why[160] = "";
	int got = vt_wait_done(tx, NREQ, 120, st, ids, why, sizeof(why));
	VT_CHECK(got == NREQ, "%d of %d pushes completed", got, NREQ);
	for (int r = 0; r < NREQ; r++)
		VT_CHECK(st[r] == 0, "push %llu status %d: %s", (unsigned long long)ids[r], st[r], why);
	VT_CHECK(vt_rx_wait(&rx, NREQ, 30), "receiver got %zu of %d notifications", vt_rx_count(&rx), NREQ);
	double dt = nkv_now_s() - t0;
	nkv_poll(rx.e, (struct nkv_event[1]){ 0 }, 1, 0); /* nothing more may come */
	pthread_mutex_lock(&rx.mu);
	VT_CHECK(rx.nev == NREQ, "exactly one notification per request (%zu)", rx.nev);
	bool seen[NREQ] = { false };
	for (size_t i = 0; i < rx.nev; i++) {
		int r = (int)(rx.ev[i].req_id - 1000);
		VT_CHECK(r >= 0 && r < NREQ && !seen[r], "notification for request %llu is unknown or repeated",
			 (unsigned long long)rx.ev[i].req_id);
		seen[r] = true;
		VT_CHECK(rx.ev[i].bytes == want_bytes[r] && rx.ev[i].status == 0, "request %d: %llu bytes status %d", r,
			 (unsigned long long)rx.ev[i].bytes, rx.ev[i].status);
		if (qps == 1)
			VT_CHECK(r == (int)i, "single QP: notification %zu is request %d (in order)", i, r);
	}
	pthread_mutex_unlock(&rx.mu);
	/* Every block, by its layout-independent hash; untouched blocks all zero. */
	size_t nb = 0;
	for (uint32_t d = 0; d < POOL; d++) {
		if (src_of[d] != UINT32_MAX) {
			VT_CHECK(nkv_block_hash(&dl, rbuf, d) == nkv_block_hash(&sl, sbuf, src_of[d]),
				 "block %u (from source block %u) differs", d, src_of[d]);
			nb++;
		} else {
			for (uint32_t l = 0; l < sl.model.layers; l++)
				for (uint32_t kv = 0; kv < 2; kv++) {
					const uint8_t *p = rbuf + nkv_layout_chunk_offset(&dl, d, l, kv);
					for (uint64_t i = 0; i < nkv_layout_chunk_bytes(&dl); i++)
						VT_CHECK(!p[i], "untouched block %u was written", d);
				}
		}
	}
	printf("%u QPs (%s): %d requests, %zu blocks verified, %.1f MB in %.2f s\n", qps,
	       getenv("NKV_VERBS_COMPLETION") ? getenv("NKV_VERBS_COMPLETION") : "poll", NREQ, nb, nb * bb / 1e6, dt);
	for (int r = 0; r < NREQ; r++)
		nkv_plan_free(plans[r]);
	free(sb);
	free(db);
	nkv_engine_destroy(tx);
	vt_rx_stop(&rx);
	nkv_engine_destroy(rx.e);
}

/* One raw range of 9.5 MiB: more than rxe's 8 MiB message, so split. */
static void big_push(void)
{
	char ip[64], addr[96];
	struct vt_rx rx = { 0 };
	uint64_t len = 9u << 20 | 512u << 10;
	struct nkv_range r = { .src_off = 4096, .dst_off = 12288, .len = len };
	struct nkv_plan *plan;
	struct nkv_engine *tx;
	struct nkv_conn *c;
	uint32_t rid, sid;
	uint8_t *rbuf, *sbuf;
	int st = -1;
	char why[160] = "";

	vt_need_rdma(ip, sizeof(ip));
	rx.e = vt_engine(1);
	VT_CHECK(nkv_region_alloc(rx.e, NKV_MEM_HOST, len + 65536, NULL, &rid, (void **)&rbuf) == 0, "rx");
	vt_rx_start(&rx, ip);
	tx = vt_engine(1);
	VT_CHECK(nkv_region_alloc(tx, NKV_MEM_HOST, len + 65536, NULL, &sid, (void **)&sbuf) == 0, "tx");
	vt_fill(sbuf, len + 65536, 99);
	snprintf(addr, sizeof(addr), "%s:%u", ip, rx.port);
	VT_CHECK(nkv_connect(tx, addr, &c) == 0, "connect");
	VT_CHECK(nkv_plan_build_raw(&r, 1, &plan) == 0, "plan");
	VT_CHECK(nkv_push(c, &(struct nkv_push){ .req_id = 5, .src_region = sid, .dst_region = rid, .plan = plan }) == 0,
		 "push");
	VT_CHECK(vt_wait_done(tx, 1, 120, &st, NULL, why, sizeof(why)) == 1 && st == 0, "9.5 MiB push: %d %s", st, why);
	VT_CHECK(vt_rx_wait(&rx, 1, 30) && rx.ev[0].bytes == len, "receiver notified of %llu bytes",
		 (unsigned long long)len);
	VT_CHECK(!memcmp(rbuf + 12288, sbuf + 4096, len), "9.5 MiB placed intact");
	VT_CHECK(rbuf[12287] == 0 && rbuf[12288 + len] == 0, "edges untouched");
	printf("9.5 MiB single range: ok\n");
	nkv_plan_free(plan);
	nkv_engine_destroy(tx);
	vt_rx_stop(&rx);
	nkv_engine_destroy(rx.e);
}

int main(void)
{
	paged_push(1, 0x1234);
	paged_push(4, 0xfeed);
	big_push();
	setenv("NKV_VERBS_COMPLETION", "event", 1);
	paged_push(2, 0xbeef);
	printf("ok\n");
	return 0;
}
