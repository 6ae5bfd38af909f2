/*
 * Several connections per endpoint: two prefill engines (2 and 4 streams
 * per connection), each in its own thread with three connections to one
 * decode engine, all pushing interleaved requests into disjoint blocks of
 * one pool at once; every block is verified (engine and test).
 */
#include "harness.h"

#include <errno.h>

#define CONNS 3
#define REQS 12 /* per connection */
#define BPR 4   /* blocks per request */

static struct nkv_layout sl, dl;
static char addr[64];

struct sender {
	unsigned streams;
	uint32_t first_dst; /* this sender's window of destination blocks */
	int done, bad;
	void *src;
};

static void *sender_main(void *arg)
{
	struct sender *s = arg;
	struct nkv_engine_opts o = { .backend = NKV_BACKEND_TCP, .streams = s->streams, .verify = true };
	struct nkv_engine *e;
	struct nkv_conn *c[CONNS];
	struct nkv_plan *p[CONNS][REQS];
	struct nkv_event got[256];
	uint32_t sid;
	int ngot = 0;

	if (nkv_engine_create(&o, &e) || nkv_region_alloc(e, NKV_MEM_HOST, nkv_layout_pool_bytes(&sl), &sl, &sid, &s->src)) {
		fprintf(stderr, "sender: %s\n", nkv_last_error());
		s->bad = 1;
		return NULL;
	}
	h_fill(s->src, nkv_layout_pool_bytes(&sl), s->first_dst + 1);
	for (int k = 0; k < CONNS; k++)
		if (nkv_connect(e, addr, &c[k])) {
			fprintf(stderr, "connect: %s\n", nkv_last_error());
			s->bad = 1;
			return NULL;
		}
	for (int r = 0; r < REQS; r++)
		for (int k = 0; k < CONNS; k++) {
			uint32_t sb[BPR], db[BPR];
			for (int b = 0; b < BPR; b++) {
				sb[b] = (uint32_t)((r * 7 + k * 3 + b * 5) % (int)sl.num_blocks);
				db[b] = s->first_dst + (uint32_t)((k * REQS + r) * BPR + b);
			}
			if (nkv_plan_build(&sl, &dl, sb, db, BPR, &p[k][r]) ||
			    nkv_push(c[k], &(struct nkv_push){ .req_id = (uint64_t)r, .src_region = sid, .dst_region = 0,
							       .plan = p[k][r] })) {
				fprintf(stderr, "push: %s\n", nkv_last_error());
				s->bad++;
			}
		}
	h_poll_until(e, NKV_EV_PUSH_DONE, CONNS * REQS, 30, got, 256, &ngot);
	for (int i = 0; i < ngot; i++)
		if (got[i].type == NKV_EV_PUSH_DONE) {
			if (got[i].status)
				s->bad++;
			else
				s->done++;
		}
	for (int k = 0; k < CONNS; k++) {
		for (int r = 0; r < REQS; r++)
			nkv_plan_free(p[k][r]);
		nkv_conn_close(c[k]);
	}
	/* keep s->src readable for the caller's check: leak the engine until exit */
	return e;
}

int main(void)
{
	struct nkv_engine_opts o = { .backend = NKV_BACKEND_TCP, .streams = 1 };
	struct nkv_engine *re;
	struct h_peer rp = { 0 };
	struct sender s[2] = { { .streams = 2, .first_dst = 0 }, { .streams = 4, .first_dst = CONNS * REQS * BPR } };
	pthread_t th[2];
	void *eng[2];
	uint32_t did;
	void *dst;
	uint16_t port;

	setenv("NKV_QUIET", "1", 1);
	sl = (struct nkv_layout){ .block_tokens = 16, .num_blocks = 40, .kind = NKV_LAYOUT_LAYER_MAJOR };
	nkv_model_preset("deepseek-v3", &sl.model);
	dl = sl;
	dl.kind = NKV_LAYOUT_BLOCK_MAJOR;
	dl.num_blocks = 2 * CONNS * REQS * BPR;
	if (nkv_engine_create(&o, &re) || nkv_region_alloc(re, NKV_MEM_HOST, nkv_layout_pool_bytes(&dl), &dl, &did, &dst) ||
	    nkv_listen(re, "127.0.0.1:0", &port)) {
		fprintf(stderr, "setup: %s\n", nkv_last_error());
		return 1;
	}
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	rp.e = re;
	h_start(&rp);
	for (int i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, sender_main, &s[i]);
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], &eng[i]);
	for (int i = 0; i < 2; i++)
		CHECK(s[i].done == CONNS * REQS && !s[i].bad, "sender %d: %d done, %d failed", i, s[i].done, s[i].bad);
	CHECK(h_wait(&rp, NKV_EV_CONN_UP, 2 * CONNS, 5) == 2 * CONNS, "connections");
	CHECK(h_wait(&rp, NKV_EV_RECV, 2 * CONNS * REQS, 5) == 2 * CONNS * REQS, "receive reports");
	for (int i = 0; i < 2 * CONNS * REQS; i++) {
		struct nkv_event ev;
		if (h_find(&rp, NKV_EV_RECV, i, &ev))
			CHECK(ev.status == 0, "recv %d: %s", i, ev.reason);
	}
	/* Every destination block equals its source, checked here too. */
	for (int i = 0; i < 2; i++)
		for (int k = 0; k < CONNS; k++)
			for (int r = 0; r < REQS; r++)
				for (int b = 0; b < BPR; b++) {
					uint32_t sbk = (uint32_t)((r * 7 + k * 3 + b * 5) % (int)sl.num_blocks);
					uint32_t dbk = s[i].first_dst + (uint32_t)((k * REQS + r) * BPR + b);
					CHECK(nkv_block_hash(&sl, s[i].src, sbk) == nkv_block_hash(&dl, dst, dbk),
					      "sender %d conn %d req %d block %d", i, k, r, b);
				}
	h_stop(&rp);
	for (int i = 0; i < 2; i++)
		nkv_engine_destroy(eng[i]);
	nkv_engine_destroy(re);
	if (fails)
		fprintf(stderr, "%d check(s) failed\n", fails);
	return fails ? 1 : 0;
}
