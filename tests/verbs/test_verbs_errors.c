/*
 * What the NIC refuses: a push with a wrong rkey and one past the end of the
 * peer's memory region (the advert's length inflated, so our own bounds
 * check passes and only the device's can stop it). Both must fail with a
 * clear error (device, QP, status string), leave the peer's bytes untouched,
 * take the connection down, and a new connection must work afterwards.
 */
#include "vtest.h"

#include <errno.h>

static struct nkv_engine *tx;
static struct vt_rx rx;
static uint32_t rid, sid;
static uint8_t *rbuf, *sbuf;
static char addr[96];
#define RLEN (1u << 20)

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* Push one range through a connection whose advert was tampered with. */
static void refused(const char *what, uint32_t rkey_xor, uint64_t len_add, uint64_t dst_off, uint64_t len)
{
	struct nkv_conn *c;
	struct nkv_plan *plan;
	struct nkv_range r = { .src_off = 0, .dst_off = dst_off, .len = len };
	struct nkv_event ev[16];
	int st = 0, downs = 0, dones = 0;
	char why[160] = "";
	size_t nev0 = vt_rx_count(&rx);

	VT_CHECK(nkv_connect(tx, addr, &c) == 0, "%s: connect", what);
	struct nkv_remote_region *rr = (struct nkv_remote_region *)nkv_conn_remote(c, 0);
	rr->rkey ^= rkey_xor;
	rr->len += len_add;
	VT_CHECK(nkv_plan_build_raw(&r, 1, &plan) == 0, "plan");
	VT_CHECK(nkv_push(c, &(struct nkv_push){ .req_id = 77, .src_region = sid, .dst_region = rid, .plan = plan }) == 0,
		 "%s: push accepted locally (the peer's NIC is what must refuse it)", what);
	double end = nkv_now_s() + 30;
	while ((dones < 1 || downs < 1) && nkv_now_s() < end) {
		int n = nkv_poll(tx, ev, 16, 100);
		for (int i = 0; i < n; i++) {
			if (ev[i].type == NKV_EV_PUSH_DONE) {
				dones++;
				st = ev[i].status;
				snprintf(why, sizeof(why), "%s", ev[i].reason);
			} else if (ev[i].type == NKV_EV_CONN_DOWN) {
				downs++;
			}
		}
	}
	printf("%s: status %d: %s\n", what, st, why);
	VT_CHECK(dones == 1 && st < 0, "%s: the push failed (done %d status %d)", what, dones, st);
	VT_CHECK(downs == 1, "%s: the connection went down once (%d)", what, downs);
	VT_CHECK(strstr(why, "rxe") || strstr(why, "mlx") || strstr(why, "verbs "), "%s: reason names the device: %s",
		 what, why);
	VT_CHECK(strstr(why, "QP 0x"), "%s: reason names the QP: %s", what, why);
	VT_CHECK(strstr(why, "remote access error") || strstr(why, "remote invalid request") ||
			 strstr(why, "retry exceeded"),
		 "%s: reason carries the WC status string: %s", what, why);
	VT_CHECK(all_zero(rbuf, RLEN), "%s: the peer's region is untouched", what);
	nkv_conn_close(c);
	nkv_plan_free(plan);
	for (int i = 0; i < 100; i++)
		nanosleep(&(struct timespec){ 0, 10000000 }, NULL);
	pthread_mutex_lock(&rx.mu);
	for (size_t i = nev0; i < rx.nev; i++)
		VT_CHECK(rx.ev[i].status != 0, "%s: receiver reported request %llu as received", what,
			 (unsigned long long)rx.ev[i].req_id);
	pthread_mutex_unlock(&rx.mu);
}

int main(void)
{
	char ip[64];
	struct nkv_conn *c;
	struct nkv_plan *plan;
	struct nkv_range r = { .src_off = 0, .dst_off = 0, .len = 4096 };
	int st = -1;
	char why[160] = "";

	vt_need_rdma(ip, sizeof(ip));
	rx.e = vt_engine(1);
	VT_CHECK(nkv_region_alloc(rx.e, NKV_MEM_HOST, RLEN, NULL, &rid, (void **)&rbuf) == 0, "rx region");
	vt_rx_start(&rx, ip);
	tx = vt_engine(1);
	VT_CHECK(nkv_region_alloc(tx, NKV_MEM_HOST, 2 * RLEN, NULL, &sid, (void **)&sbuf) == 0, "tx region");
	vt_fill(sbuf, 2 * RLEN, 3);
	snprintf(addr, sizeof(addr), "%s:%u", ip, rx.port);

	refused("wrong rkey", 0x5a5a00, 0, 0, 65536);
	refused("past the region's end", 0, 1u << 20, RLEN - 4096, 65536);

	/* Our own bounds check stops an honest advert before anything is sent. */
	VT_CHECK(nkv_connect(tx, addr, &c) == 0, "connect after the failures");
	struct nkv_range oob = { .src_off = 0, .dst_off = RLEN - 4096, .len = 65536 };
	VT_CHECK(nkv_plan_build_raw(&oob, 1, &plan) == 0, "plan");
	VT_CHECK(nkv_push(c, &(struct nkv_push){ .req_id = 1, .src_region = sid, .dst_region = rid, .plan = plan }) ==
			 -ERANGE,
		 "out-of-bounds push refused locally: %s", nkv_last_error());
	nkv_plan_free(plan);

	/* And the connection made after the failures works. */
	VT_CHECK(nkv_plan_build_raw(&r, 1, &plan) == 0, "plan");
	size_t nev0 = vt_rx_count(&rx);
	VT_CHECK(nkv_push(c, &(struct nkv_push){ .req_id = 2, .src_region = sid, .dst_region = rid, .plan = plan }) == 0,
		 "push");
	VT_CHECK(vt_wait_done(tx, 1, 30, &st, NULL, why, sizeof(why)) == 1 && st == 0, "push after failures: %d %s", st,
		 why);
	VT_CHECK(vt_rx_wait(&rx, nev0 + 1, 10) && rx.ev[nev0].status == 0 && rx.ev[nev0].req_id == 2,
		 "receiver notified");
	VT_CHECK(!memcmp(rbuf, sbuf, 4096), "bytes placed");
	nkv_plan_free(plan);
	nkv_conn_close(c);
	nkv_engine_destroy(tx);
	vt_rx_stop(&rx);
	nkv_engine_destroy(rx.e);
	printf("ok\n");
	return 0;
}
