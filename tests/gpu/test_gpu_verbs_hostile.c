/*
 * A hostile sender against verbs receiver staging (rxe in tools/rxe-vm, the
 * fake GPU): the test speaks the unit protocol itself on a real connection's
 * QP, with a header, a range list written into a lent bounce slot and a
 * UNIT message that each break one rule. The receiver must drop the
 * connection with a reason naming the fault, and the GPU region must keep
 * every byte: nothing may be copied to the device from a list that points
 * outside the region, the slot or the request.
 */
#include "../verbs/vtest.h"
#include "fake_gpu.h"
#include "verbs.h"

#include <endian.h>
#include <errno.h>

static const char *ip;

struct unit_case {
	const char *name, *want;     /* want: in the receiver's reason */
	bool no_header, host_region;
	uint64_t hdr_bytes;          /* 0: the range's length */
	uint32_t slot;               /* UINT32_MAX: the credit's */
	uint16_t nranges;
	struct vb_unit_range r;
};

static void post(struct ibv_qp *qp, enum ibv_wr_opcode op, void *buf, uint32_t len, uint32_t lkey, uint64_t raddr,
		 uint32_t rkey)
{
	struct ibv_sge sge = { .addr = (uintptr_t)buf, .length = len, .lkey = lkey };
	struct ibv_send_wr w = { .wr_id = 0xfe, .sg_list = &sge, .num_sge = 1, .opcode = op }, *bad;

	if (op == IBV_WR_SEND)
		w.send_flags = IBV_SEND_INLINE;
	w.wr.rdma.remote_addr = raddr;
	w.wr.rdma.rkey = rkey;
	VT_CHECK(ibv_post_send(qp, &w, &bad) == 0, "ibv_post_send");
}

static void one(const struct unit_case *k)
{
	struct nkv_layout l = { .block_tokens = 16, .num_blocks = 4, .kind = NKV_LAYOUT_BLOCK_MAJOR };
	struct vt_rx rx = { 0 };
	struct nkv_engine *se = vt_engine(1);
	struct nkv_event ev[8];
	struct nkv_conn *c;
	uint32_t gid, hid, sid;
	uint8_t *host, *after, *sp;
	void *gp, *hp;
	char addr[96];
	uint64_t len;

	nkv_model_preset("qwen2.5-7b", &l.model);
	len = nkv_layout_pool_bytes(&l);
	rx.e = vt_engine(1);
	VT_CHECK(nkv_region_alloc(rx.e, NKV_MEM_CUDA, len, &l, &gid, &gp) == 0, "GPU region");
	VT_CHECK(nkv_region_alloc(rx.e, NKV_MEM_HOST, len, &l, &hid, &hp) == 0, "host region");
	VT_CHECK((host = malloc(len)) && (after = malloc(len)), "malloc");
	vt_fill(host, len, 1);
	VT_CHECK(fake_gpu_ops.copy(0, gp, host, len) == 0, "fill");
	vt_rx_start(&rx, ip);
	snprintf(addr, sizeof(addr), "%s:%u", ip, rx.port);
	VT_CHECK(nkv_region_alloc(se, NKV_MEM_HOST, 1u << 20, NULL, &sid, (void **)&sp) == 0, "source");
	VT_CHECK(nkv_connect(se, addr, &c) == 0, "connect");

	/* The receiver lends its slots once the connection is up. */
	struct vb_conn *vc = c->be;
	double end = nkv_now_s() + 10;
	while (vc->ncredits < VB_CREDITS && nkv_now_s() < end)
		VT_CHECK(nkv_poll(se, ev, 8, 10) >= 0, "poll");
	VT_CHECK(vc->ncredits == VB_CREDITS, "%u credits, want %u", vc->ncredits, VB_CREDITS);
	struct vb_credit cr = vc->credits[0];
	vc->ncredits = 0; /* ours now: the engine sends nothing on its own */

	struct ibv_qp *qp = vc->qps[0].id->qp;
	uint32_t lkey = ((struct ibv_mr *)nkv__region(se, sid)->be)->lkey;
	uint32_t seq = 77;
	struct vb_hdr *h = (struct vb_hdr *)sp;
	struct vb_unit *u = (struct vb_unit *)(sp + 64);
	struct vb_unit_range *list = (struct vb_unit_range *)(sp + 4096);
	uint64_t rlen = le64toh(k->r.len);

	*h = (struct vb_hdr){ .magic = htole32(VB_HDR_MAGIC), .seq = htole32(seq), .req_id = htole64(9),
			      .bytes = htole64(k->hdr_bytes ? k->hdr_bytes : rlen), .region = htole32(k->host_region ? hid : gid),
			      .nparts = htole16(1), .flags = htole16(VB_HDR_STAGED) };
	*list = k->r;
	*u = (struct vb_unit){ .magic = htole32(VB_UNIT_MAGIC), .seq = htole32(seq), .req_id = htole64(9),
			       .bytes = htole64(4096), .slot = htole32(k->slot == UINT32_MAX ? cr.slot : k->slot),
			       .nranges = htole16(k->nranges) };
	memset(sp + 8192, 0xee, 4096); /* the payload */
	if (!k->no_header)
		post(qp, IBV_WR_SEND, h, sizeof(*h), lkey, 0, 0);
	post(qp, IBV_WR_RDMA_WRITE, sp + 8192, 4096, lkey, cr.addr + VB_UNIT_DESC, cr.rkey);
	post(qp, IBV_WR_RDMA_WRITE, list, sizeof(*list), lkey, cr.addr, cr.rkey);
	post(qp, IBV_WR_SEND, u, sizeof(*u), lkey, 0, 0);

	end = nkv_now_s() + 10;
	while (nkv_now_s() < end) {
		pthread_mutex_lock(&rx.mu);
		int downs = rx.downs;
		pthread_mutex_unlock(&rx.mu);
		if (downs)
			break;
		nkv_poll(se, ev, 8, 10);
	}
	pthread_mutex_lock(&rx.mu);
	fprintf(stderr, "-- %s: %s\n", k->name, rx.downs ? rx.last_down : "(connection still up)");
	VT_CHECK(rx.downs == 1 && strstr(rx.last_down, k->want), "%s: want the connection dropped with \"%s\"", k->name,
		 k->want);
	for (size_t i = 0; i < rx.nev; i++) /* dropped, with the reason: fine; received: not */
		VT_CHECK(rx.ev[i].status != 0, "%s: a request was reported received", k->name);
	pthread_mutex_unlock(&rx.mu);
	vt_rx_stop(&rx);
	VT_CHECK(fake_gpu_ops.copy(0, after, gp, len) == 0 && !memcmp(after, host, len), "%s: the GPU region changed",
		 k->name);
	nkv_conn_close(c);
	nkv_engine_destroy(se);
	nkv_engine_destroy(rx.e);
	free(host);
	free(after);
}

int main(void)
{
	static char ipbuf[64];
	struct nkv_engine *e;
	const uint64_t region = 4 * 917504; /* 4 qwen2.5-7b blocks, block-major */
	const struct unit_case cases[] = {
		{ "range past the region's end", "outside", .slot = UINT32_MAX, .nranges = 1,
		  .r = { 0, htole64(region - 100), htole64(4096) } },
		{ "region offset that wraps", "outside", .slot = UINT32_MAX, .nranges = 1,
		  .r = { 0, htole64(UINT64_MAX - 10), htole64(4096) } },
		{ "range past the unit's payload", "outside", .slot = UINT32_MAX, .nranges = 1,
		  .r = { htole64(4000), 0, htole64(4096) } },
		{ "a slot not lent", "not lent", .slot = 9, .nranges = 1, .r = { 0, 0, htole64(4096) } },
		{ "no ranges", "0 ranges", .slot = UINT32_MAX, .nranges = 0, .r = { 0, 0, htole64(4096) } },
		{ "more ranges than a unit holds", "513 ranges", .slot = UINT32_MAX, .nranges = 513,
		  .r = { 0, 0, htole64(4096) } },
		{ "a unit without its header", "without its staged header", .no_header = true, .slot = UINT32_MAX,
		  .nranges = 1, .r = { 0, 0, htole64(4096) } },
		{ "more bytes than the request", "more than its", .hdr_bytes = 100, .slot = UINT32_MAX, .nranges = 1,
		  .r = { 0, 0, htole64(4096) } },
		{ "a staged header for a host region", "malformed request header", .host_region = true,
		  .slot = UINT32_MAX, .nranges = 1, .r = { 0, 0, htole64(4096) } },
	};

	setenv("NKV_QUIET", "1", 1);
	unsetenv("NKV_GPUDIRECT");
	vt_need_rdma(ipbuf, sizeof(ipbuf));
	ip = ipbuf;
	nkv__gpu_override(&fake_gpu_ops);
	e = vt_engine(1);
	if (!strstr(nkv_engine_describe(e), "rxe") && !strstr(nkv_engine_describe(e), "siw")) {
		fprintf(stderr, "SKIP: a hardware device; the fake GPU proves nothing there\n");
		return 77;
	}
	nkv_engine_destroy(e);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		one(&cases[i]);
	fprintf(stderr, "ok\n");
	return 0;
}
