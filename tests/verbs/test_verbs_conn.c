/*
 * Verbs connection setup and teardown: region adverts arrive with the
 * accept, a closed connection is seen by the peer, the same engine can
 * connect again, and bad device / GID / address choices fail clearly.
 */
#include "vtest.h"

#include <errno.h>

static void push_one(struct nkv_engine *tx, struct nkv_conn *c, uint32_t src, uint32_t dst, uint64_t id,
		     struct vt_rx *rx, size_t want_nev)
{
	struct nkv_range r = { .src_off = 4096, .dst_off = 8192, .len = 65536 };
	struct nkv_plan *plan;
	int st = -1;
	char why[160] = "";

	VT_CHECK(nkv_plan_build_raw(&r, 1, &plan) == 0, "raw plan");
	VT_CHECK(nkv_push(c, &(struct nkv_push){ .req_id = id, .src_region = src, .dst_region = dst, .plan = plan }) == 0,
		 "push %llu", (unsigned long long)id);
	VT_CHECK(vt_wait_done(tx, 1, 20, &st, NULL, why, sizeof(why)) == 1 && st == 0, "push %llu done: %d %s",
		 (unsigned long long)id, st, why);
	VT_CHECK(vt_rx_wait(rx, want_nev, 10), "receiver saw request %llu", (unsigned long long)id);
	VT_CHECK(rx->ev[want_nev - 1].req_id == id && rx->ev[want_nev - 1].bytes == 65536 &&
			 rx->ev[want_nev - 1].status == 0,
		 "RECV event: id %llu bytes %llu status %d", (unsigned long long)rx->ev[want_nev - 1].req_id,
		 (unsigned long long)rx->ev[want_nev - 1].bytes, rx->ev[want_nev - 1].status);
	nkv_plan_free(plan);
}

int main(void)
{
	char ip[64], addr[96];
	struct vt_rx rx = { 0 };
	struct nkv_engine *tx;
	struct nkv_conn *c;
	uint32_t rid, sid;
	uint8_t *rbuf, *sbuf;

	vt_need_rdma(ip, sizeof(ip));
	rx.e = vt_engine(1);
	printf("receiver: %s\n", nkv_engine_describe(rx.e));
	VT_CHECK(strstr(nkv_engine_describe(rx.e), "RoCE v2") || strstr(nkv_engine_describe(rx.e), "IB"),
		 "describe names the GID type: %s", nkv_engine_describe(rx.e));
	VT_CHECK(nkv_region_alloc(rx.e, NKV_MEM_HOST, 1 << 20, NULL, &rid, (void **)&rbuf) == 0, "rx region");
	vt_rx_start(&rx, ip);

	tx = vt_engine(2);
	VT_CHECK(nkv_region_alloc(tx, NKV_MEM_HOST, 1 << 20, NULL, &sid, (void **)&sbuf) == 0, "tx region");
	vt_fill(sbuf, 1 << 20, 7);
	snprintf(addr, sizeof(addr), "%s:%u", ip, rx.port);

	/* 1. connect: the accept carried the receiver's region. */
	double t0 = nkv_now_s();
	VT_CHECK(nkv_connect(tx, addr, &c) == 0, "connect %s", addr);
	printf("sender: %s (connect %.1f ms)\n", nkv_engine_describe(tx), (nkv_now_s() - t0) * 1e3);
	VT_CHECK(nkv_conn_remote_count(c) == 1, "one remote region, got %zu", nkv_conn_remote_count(c));
	const struct nkv_remote_region *rr = nkv_conn_remote(c, 0);
	VT_CHECK(rr->id == rid && rr->len == (1 << 20) && rr->addr == (uint64_t)(uintptr_t)rbuf && rr->rkey,
		 "advert: id %u len %llu addr %llx rkey %x", rr->id, (unsigned long long)rr->len,
		 (unsigned long long)rr->addr, rr->rkey);
	for (int i = 0; i < 500 && rx.ups < 1; i++)
		vt_rx_wait(&rx, 0, 0.01), nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
	VT_CHECK(rx.ups == 1, "receiver saw CONN_UP once, got %d", rx.ups);

	/* 2. a push lands where it should. */
	push_one(tx, c, sid, rid, 11, &rx, 1);
	VT_CHECK(!memcmp(rbuf + 8192, sbuf + 4096, 65536), "bytes placed");
	for (int i = 0; i < 8192; i++)
		VT_CHECK(rbuf[i] == 0, "byte %d before the range untouched", i);
	VT_CHECK(rbuf[8192 + 65536] == 0, "byte after the range untouched");

	/* 3. close: the receiver sees the connection go down. */
	nkv_conn_close(c);
	for (int i = 0; i < 500 && rx.downs < 1; i++)
		nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
	VT_CHECK(rx.downs == 1, "receiver saw CONN_DOWN after close (downs %d)", rx.downs);
	printf("receiver on close: %s\n", rx.last_down);

	/* 4. the same engine connects again and pushes. */
	VT_CHECK(nkv_connect(tx, addr, &c) == 0, "reconnect %s", addr);
	push_one(tx, c, sid, rid, 12, &rx, 2);
	nkv_conn_close(c);

	/* 5. nobody listening: a clear error, not a hang. */
	snprintf(addr, sizeof(addr), "%s:%u", ip, rx.port == 65535 ? 65534 : rx.port + 1);
	t0 = nkv_now_s();
	int rc = nkv_connect(tx, addr, &c);
	VT_CHECK(rc < 0 && c == NULL, "connect to a port with no listener fails");
	VT_CHECK(nkv_now_s() - t0 < 12, "and within the connect timeout (%.1f s)", nkv_now_s() - t0);
	printf("no listener: %s\n", nkv_last_error());
	VT_CHECK(strstr(nkv_last_error(), "connect ") != NULL, "error names the address: %s", nkv_last_error());

	/* 6. bad device and bad GID choices. */
	struct nkv_engine *bad;
	struct nkv_engine_opts o;

	nkv_engine_opts_init(&o);
	o.backend = NKV_BACKEND_VERBS;
	o.device = "nosuchdev0";
	VT_CHECK(nkv_engine_create(&o, &bad) == -ENODEV && strstr(nkv_last_error(), "nosuchdev0"),
		 "unknown device refused: %s", nkv_last_error());
	printf("bad device: %s\n", nkv_last_error());
	o.device = NULL;
	o.gid_index = 0; /* rxe: the IPv6 link-local GID */
	rc = nkv_engine_create(&o, &bad);
	if (rc == 0) {
		printf("GID 0 accepted here: %s\n", nkv_engine_describe(bad));
		nkv_engine_destroy(bad);
	} else {
		printf("GID 0: %s\n", nkv_last_error());
		VT_CHECK(strstr(nkv_last_error(), "GID index 0"), "GID error names the index: %s", nkv_last_error());
	}
	o.gid_index = 9999;
	VT_CHECK(nkv_engine_create(&o, &bad) == -EINVAL && strstr(nkv_last_error(), "9999"), "GID 9999 refused: %s",
		 nkv_last_error());

	nkv_engine_destroy(tx);
	vt_rx_stop(&rx);
	nkv_engine_destroy(rx.e);
	printf("ok\n");
	return 0;
}
