/*
 * GPU memory over verbs, where a GPU and an RDMA device exist (exits 77
 * with the reason otherwise): each registration mode forced in turn
 * (NKV_GPUDIRECT=dmabuf, peermem) reports success or a reason naming the
 * failing call; the automatic order registers with the first mode that
 * works and says which (staging where there is no GPUDirect RDMA); then a
 * GPU->GPU push over the RDMA device's address, every block compared on the
 * host.
 */
#include "../verbs/vtest.h"
#include "gpu.h"
#include "need_gpu.h"

#include <errno.h>

static const struct nkv_layout L = {
	.model = { .name = "tiny", .layers = 4, .kv_heads = 2, .head_dim = 64, .dtype = NKV_FP16 },
	.block_tokens = 16, .num_blocks = 64, .kind = NKV_LAYOUT_LAYER_MAJOR,
};

static int try_mode(const char *mode, char *desc, size_t len)
{
	struct nkv_engine *e = vt_engine(1);
	uint32_t id;
	void *p;
	int rc;

	if (mode)
		setenv("NKV_GPUDIRECT", mode, 1);
	else
		unsetenv("NKV_GPUDIRECT");
	rc = nkv_region_alloc(e, NKV_MEM_CUDA, 8u << 20, NULL, &id, &p);
	if (rc)
		snprintf(desc, len, "error %d: %s", rc, nkv_last_error());
	else
		nkv_region_describe(e, id, desc, len);
	fprintf(stderr, "mode %-8s -> %s\n", mode ? mode : "auto", desc);
	nkv_engine_destroy(e);
	return rc;
}

int main(void)
{
	const struct nkv_gpu_ops *g = nkv__gpu();
	char ip[64], addr[96], desc[512];
	struct vt_rx rx = { 0 };
	uint64_t pool = nkv_layout_pool_bytes(&L), x = 9;
	uint32_t sid, rid, sb[16], db[16];
	struct nkv_engine *tx;
	struct nkv_conn *c;
	struct nkv_plan *plan;
	uint8_t *sh, *dh;
	void *sp, *dp;
	int rc, st = -1;
	bool staged;
	char why[160] = "";

	setenv("NKV_QUIET", "1", 1);
	if (g->open(0, desc, sizeof(desc))) {
		return gpu_unusable();
	}
	vt_need_rdma(ip, sizeof(ip));
	fprintf(stderr, "device: %s, RDMA address %s\n", desc, ip);
	/* Forced modes: each either works or names why. */
	rc = try_mode("dmabuf", desc, sizeof(desc));
	VT_CHECK(rc == 0 || strstr(desc, "dma") || strstr(desc, "cuMemGetHandleForAddressRange"), "dma-buf: %s", desc);
	rc = try_mode("peermem", desc, sizeof(desc));
	VT_CHECK(rc == 0 || strstr(desc, "peermem"), "peermem: %s", desc);
	rc = try_mode(NULL, desc, sizeof(desc));
	VT_CHECK(rc == 0, "automatic registration failed: %s", desc);
	staged = strstr(desc, "staging") != NULL;
	VT_CHECK(staged || strstr(desc, "dma-buf") || strstr(desc, "peermem"), "mode not named: %s", desc);

	/* GPU -> GPU over RDMA WRITE (staged: through pinned slots on both sides). */
	rx.e = vt_engine(1);
	VT_CHECK(nkv_region_alloc(rx.e, NKV_MEM_CUDA, pool, &L, &rid, &dp) == 0, "rx GPU pool");
	vt_rx_start(&rx, ip);
	tx = vt_engine(2);
	VT_CHECK(nkv_region_alloc(tx, NKV_MEM_CUDA, pool, &L, &sid, &sp) == 0, "tx GPU pool");
	sh = malloc(pool);
	dh = malloc(pool);
	VT_CHECK(sh && dh, "malloc");
	for (uint64_t i = 0; i < pool; i++)
		sh[i] = (uint8_t)nkv_xorshift64(&x);
	VT_CHECK(g->copy(0, sp, sh, pool) == 0 && g->memset(0, dp, 0, pool) == 0, "fill");
	for (uint32_t i = 0; i < 16; i++) {
		sb[i] = (uint32_t)(nkv_xorshift64(&x) % L.num_blocks);
		db[i] = (i * 5 + 2) % L.num_blocks;
	}
	VT_CHECK(nkv_plan_build(&L, &L, sb, db, 16, &plan) == 0, "plan");
	snprintf(addr, sizeof(addr), "%s:%u", ip, rx.port);
	VT_CHECK(nkv_connect(tx, addr, &c) == 0, "connect");
	VT_CHECK(nkv_push(c, &(struct nkv_push){ .req_id = 1, .src_region = sid, .dst_region = rid, .plan = plan }) == 0,
		 "push");
	VT_CHECK(vt_wait_done(tx, 1, 20, &st, NULL, why, sizeof(why)) == 1 && st == 0, "push done: %d %s", st, why);
	VT_CHECK(vt_rx_wait(&rx, 1, 10), "no receive report");
	VT_CHECK(g->copy(0, dh, dp, pool) == 0, "copy back");
	for (uint32_t i = 0; i < 16; i++)
		VT_CHECK(nkv_block_hash(&L, sh, sb[i]) == nkv_block_hash(&L, dh, db[i]), "block %u -> %u differs", sb[i],
			 db[i]);
	nkv_conn_close(c);
	nkv_plan_free(plan);
	nkv_engine_destroy(tx);
	vt_rx_stop(&rx);
	nkv_engine_destroy(rx.e);
	free(sh);
	free(dh);
	fprintf(stderr, "ok: GPU->GPU over verbs (%s), 16 blocks verified\n", staged ? "staged" : "GPUDirect");
	return 0;
}
