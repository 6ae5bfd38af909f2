/*
 * The verbs backend's GPU staging on soft RDMA (rxe, inside tools/rxe-vm in
 * CI), with the fake GPU: rxe cannot reach GPU memory, so a GPU region is
 * registered for staging and says why. Pushes from it go through the pinned
 * chunk slots and must land byte for byte: the fake runs a copy only when
 * its event is found done, so a WRITE posted before its chunk was copied
 * out would carry stale bytes and the block hashes below would differ.
 * Pushing into a GPU region the peer can only stage is refused with the
 * reason. On a hardware NIC the fake's "device memory" is host memory a NIC
 * could register, which proves nothing: skip (test_gpu_verbs covers real
 * GPUs there).
 */
#include "../verbs/vtest.h"
#include "fake_gpu.h"

#include <errno.h>

#define NREQ 3

/* A GPU region filled through the fake's copy, and its bytes on the host. */
static void gpu_region(struct nkv_engine *e, const struct nkv_layout *l, uint64_t seed, uint32_t *id, void **host)
{
	uint64_t len = nkv_layout_pool_bytes(l);
	void *p;

	VT_CHECK(nkv_region_alloc(e, NKV_MEM_CUDA, len, l, id, &p) == 0, "GPU region of %llu bytes",
		 (unsigned long long)len);
	VT_CHECK((*host = malloc(len)), "malloc");
	vt_fill(*host, len, seed);
	VT_CHECK(fake_gpu_ops.copy(0, p, *host, len) == 0, "fill the GPU region");
}

/* NREQ pushes in flight from a staged GPU region into host memory; every
 * block compared with its source. */
static void run(const char *ip, const char *name, enum nkv_layout_kind lk, uint32_t nblocks, bool shuffle)
{
	struct nkv_layout sl = { .block_tokens = 16, .num_blocks = nblocks * NREQ, .kind = lk }, dl;
	struct vt_rx rx = { 0 };
	struct nkv_engine *se = vt_engine(2);
	struct nkv_conn *c;
	struct nkv_plan *p[NREQ];
	uint32_t sid, did, *sb = calloc(NREQ * nblocks, 4), *db = calloc(NREQ * nblocks, 4);
	void *shost, *dst;
	char addr[96], desc[512], why[256] = "";
	int status[NREQ];
	uint64_t x = 7;

	VT_CHECK(sb && db, "malloc");
	nkv_model_preset("qwen2.5-7b", &sl.model); /* layer-major: 16 KiB pieces; block-major: 896 KiB blocks */
	dl = sl;
	dl.num_blocks = sl.num_blocks + 8;
	fprintf(stderr, "-- %s: %u requests of %u blocks\n", name, NREQ, nblocks);
	gpu_region(se, &sl, 11, &sid, &shost);
	VT_CHECK(nkv_region_describe(se, sid, desc, sizeof(desc)) == 0, "describe");
	fprintf(stderr, "   source: %s\n", desc);
	VT_CHECK(strstr(desc, "staging") && strstr(desc, "software RDMA device") && strstr(desc, "sends only"),
		 "the source should say staging, why, and that it only sends: %s", desc);

	rx.e = vt_engine(2);
	VT_CHECK(nkv_region_alloc(rx.e, NKV_MEM_HOST, nkv_layout_pool_bytes(&dl), &dl, &did, &dst) == 0, "host region");
	memset(dst, 0x5a, nkv_layout_pool_bytes(&dl));
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
	VT_CHECK(vt_rx_wait(&rx, NREQ, 10), "%s: receive reports missing", name);
	vt_rx_stop(&rx);
	for (uint32_t i = 0; i < NREQ * nblocks; i++)
		VT_CHECK(nkv_block_hash(&sl, shost, sb[i]) == nkv_block_hash(&dl, dst, db[i]), "%s: block %u -> %u differs",
			 name, sb[i], db[i]);
	{
		/* Block 0 was never written: the WRITEs stayed inside their ranges. */
		uint8_t *z = malloc(nkv_layout_pool_bytes(&dl));
		VT_CHECK(z, "malloc");
		memset(z, 0x5a, nkv_layout_pool_bytes(&dl));
		VT_CHECK(nkv_block_hash(&dl, dst, 0) == nkv_block_hash(&dl, z, 0), "%s: untouched block 0 changed", name);
		free(z);
	}
	for (int k = 0; k < NREQ; k++)
		nkv_plan_free(p[k]);
	nkv_conn_close(c);
	nkv_engine_destroy(se);
	nkv_engine_destroy(rx.e);
	free(shost);
	free(sb);
	free(db);
}

/* The receiving side cannot stage: a push into its GPU region is refused at
 * the sender, by name, and nothing is sent. */
static void refused(const char *ip)
{
	struct nkv_layout l = { .block_tokens = 16, .num_blocks = 4, .kind = NKV_LAYOUT_BLOCK_MAJOR };
	struct vt_rx rx = { 0 };
	struct nkv_engine *se = vt_engine(1);
	struct nkv_conn *c;
	struct nkv_plan *p;
	uint32_t sid, gid, hid, b = 1;
	void *host, *sp, *hp;
	char addr[96];
	int rc;

	nkv_model_preset("qwen2.5-7b", &l.model);
	VT_CHECK(nkv_region_alloc(se, NKV_MEM_HOST, nkv_layout_pool_bytes(&l), &l, &sid, &sp) == 0, "host source");
	rx.e = vt_engine(1);
	gpu_region(rx.e, &l, 3, &gid, &host);
	VT_CHECK(nkv_region_alloc(rx.e, NKV_MEM_HOST, nkv_layout_pool_bytes(&l), &l, &hid, &hp) == 0, "host region");
	vt_rx_start(&rx, ip);
	snprintf(addr, sizeof(addr), "%s:%u", ip, rx.port);
	VT_CHECK(nkv_connect(se, addr, &c) == 0, "connect %s", addr);
	VT_CHECK(nkv_plan_build(&l, &l, &b, &b, 1, &p) == 0, "plan");
	rc = nkv_push(c, &(struct nkv_push){ .req_id = 1, .src_region = sid, .dst_region = gid, .plan = p });
	fprintf(stderr, "-- push into the peer's staged GPU region: %d %s\n", rc, nkv_last_error());
	VT_CHECK(rc == -ENOTSUP, "expected -ENOTSUP, got %d", rc);
	VT_CHECK(strstr(nkv_last_error(), "cannot stage into GPU memory") && strstr(nkv_last_error(), "--backend tcp"),
		 "reason lacks the cause or the way out");
	/* The connection still works for the peer's host region. */
	VT_CHECK(nkv_push(c, &(struct nkv_push){ .req_id = 2, .src_region = sid, .dst_region = hid, .plan = p }) == 0,
		 "push into the host region");
	VT_CHECK(vt_wait_done(se, 1, 10, NULL, NULL, NULL, 0) == 1, "host push completion");
	VT_CHECK(vt_rx_wait(&rx, 1, 10), "the host push arrives");
	pthread_mutex_lock(&rx.mu);
	uint64_t first = rx.ev[0].req_id;
	pthread_mutex_unlock(&rx.mu);
	vt_rx_stop(&rx);
	VT_CHECK(first == 2 && rx.nev == 1, "only the host push arrives (first %llu, %zu in all)",
		 (unsigned long long)first, rx.nev);
	nkv_plan_free(p);
	nkv_conn_close(c);
	nkv_engine_destroy(se);
	nkv_engine_destroy(rx.e);
	free(host);
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
	/* Many 16 KiB pieces per chunk (scattered gathers), then 896 KiB
	 * blocks across 4 MiB chunks: 12 chunks for 4 slots, so every slot is
	 * handed back and refilled many times while WRITEs are in flight. */
	run(ip, "layer-major, shuffled", NKV_LAYOUT_LAYER_MAJOR, 12, true);
	run(ip, "block-major, contiguous", NKV_LAYOUT_BLOCK_MAJOR, 16, false);
	refused(ip);
	fprintf(stderr, "ok\n");
	return 0;
}
