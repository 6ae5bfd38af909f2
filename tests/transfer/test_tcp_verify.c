/*
 * --verify must be able to fail: the sender plans for a layer-major
 * destination while the receiver's pool is block-major, so every byte
 * arrives but in the wrong places for the receiver's layout. The receiver
 * must report a checksum mismatch naming a block, the sender must see the
 * request fail, and a correctly planned request right after must pass.
 */
#include "harness.h"

#include <errno.h>

int main(void)
{
	struct nkv_engine_opts o = { .backend = NKV_BACKEND_TCP, .streams = 3, .verify = true };
	struct nkv_layout sl = { .block_tokens = 16, .num_blocks = 8, .kind = NKV_LAYOUT_LAYER_MAJOR }, dl, wrong;
	struct nkv_engine *se, *re;
	struct nkv_conn *c;
	struct nkv_plan *bad, *good;
	struct nkv_event got[16], ev;
	struct h_peer rp = { 0 };
	uint32_t sid, did, sb[4] = { 1, 2, 5, 6 }, db[4] = { 0, 3, 4, 7 };
	void *src, *dst;
	uint16_t port;
	char addr[64];
	int ngot = 0;

	setenv("NKV_QUIET", "1", 1);
	nkv_model_preset("qwen2.5-7b", &sl.model);
	dl = sl;
	dl.kind = NKV_LAYOUT_BLOCK_MAJOR;
	wrong = dl;
	wrong.kind = NKV_LAYOUT_LAYER_MAJOR;
	if (nkv_engine_create(&o, &se) || nkv_engine_create(&o, &re) ||
	    nkv_region_alloc(se, NKV_MEM_HOST, nkv_layout_pool_bytes(&sl), &sl, &sid, &src) ||
	    nkv_region_alloc(re, NKV_MEM_HOST, nkv_layout_pool_bytes(&dl), &dl, &did, &dst) ||
	    nkv_listen(re, "127.0.0.1:0", &port)) {
		fprintf(stderr, "setup: %s\n", nkv_last_error());
		return 1;
	}
	h_fill(src, nkv_layout_pool_bytes(&sl), 5);
	rp.e = re;
	h_start(&rp);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	if (nkv_connect(se, addr, &c)) {
		fprintf(stderr, "connect: %s\n", nkv_last_error());
		return 1;
	}
	CHECK(nkv_plan_build(&sl, &wrong, sb, db, 4, &bad) == 0, "%s", nkv_last_error());
	CHECK(nkv_plan_build(&sl, &dl, sb, db, 4, &good) == 0, "%s", nkv_last_error());

	CHECK(nkv_push(c, &(struct nkv_push){ .req_id = 1, .src_region = sid, .dst_region = did, .plan = bad }) == 0, "%s",
	      nkv_last_error());
	CHECK(h_poll_until(se, NKV_EV_PUSH_DONE, 1, 10, got, 16, &ngot) == 1, "no completion");
	CHECK(ngot == 1 && got[0].req_id == 1 && got[0].status == -EBADMSG, "status %d: %s", got[0].status, got[0].reason);
	CHECK(strstr(got[0].reason, "checksum") != NULL, "sender reason: %s", got[0].reason);
	CHECK(h_wait(&rp, NKV_EV_RECV, 1, 5) == 1, "no receive report");
	if (h_find(&rp, NKV_EV_RECV, 0, &ev))
		CHECK(ev.status == -EBADMSG && strstr(ev.reason, "block 0 (entry 0 of 4) checksum mismatch"), "%d %s",
		      ev.status, ev.reason);

	ngot = 0;
	CHECK(nkv_push(c, &(struct nkv_push){ .req_id = 2, .src_region = sid, .dst_region = did, .plan = good }) == 0, "%s",
	      nkv_last_error());
	CHECK(h_poll_until(se, NKV_EV_PUSH_DONE, 1, 10, got, 16, &ngot) == 1, "no completion");
	CHECK(ngot == 1 && got[0].req_id == 2 && got[0].status == 0, "status %d: %s", got[0].status, got[0].reason);
	CHECK(h_wait(&rp, NKV_EV_RECV, 2, 5) == 2, "no receive report");
	if (h_find(&rp, NKV_EV_RECV, 1, &ev))
		CHECK(ev.status == 0 && strstr(ev.reason, "4 blocks verified"), "%d %s", ev.status, ev.reason);
	for (int i = 0; i < 4; i++)
		CHECK(nkv_block_hash(&sl, src, sb[i]) == nkv_block_hash(&dl, dst, db[i]), "block %d", i);

	/* A raw plan cannot be verified: refused before anything is sent. */
	struct nkv_plan *raw;
	CHECK(nkv_plan_build_raw(&(struct nkv_range){ 0, 0, 4096 }, 1, &raw) == 0, "raw");
	CHECK(nkv_push(c, &(struct nkv_push){ .req_id = 3, .src_region = sid, .dst_region = did, .plan = raw }) == -EINVAL,
	      "raw plan with verify");
	/* Nor can a plan reaching past the peer's region. */
	struct nkv_plan *big;
	CHECK(nkv_plan_build_raw(&(struct nkv_range){ 0, nkv_layout_pool_bytes(&dl) - 10, 4096 }, 1, &big) == 0, "big");
	CHECK(nkv_push(c, &(struct nkv_push){ .req_id = 4, .src_region = sid, .dst_region = did, .plan = big }) == -ERANGE,
	      "plan past the peer's region");
	nkv_plan_free(raw);
	nkv_plan_free(big);
	nkv_plan_free(bad);
	nkv_plan_free(good);
	nkv_conn_close(c);
	h_stop(&rp);
	nkv_engine_destroy(se);
	nkv_engine_destroy(re);
	if (fails)
		fprintf(stderr, "%d check(s) failed\n", fails);
	return fails ? 1 : 0;
}
