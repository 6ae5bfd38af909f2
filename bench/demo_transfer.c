/*
 * netkv demo transfer: a short loopback run of the transfer engine. A "decode"
 * engine in a thread, a "prefill" engine here; for a few model shapes and
 * layouts, push requests of paged KV blocks with per-block xxhash64 checks
 * and print what arrived. (The full testbed demo replaces this later.)
 */
#include "bench_cli.h"
#include "netkv_transfer.h"
#include "nkv_cli.h"
#include "nkv_json_out.h"
#include "nkv_util.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct scenario {
	const char *model;
	enum nkv_layout_kind src, dst;
	bool random;
};

static const struct scenario scenarios[] = {
	{ "llama3-8b", NKV_LAYOUT_LAYER_MAJOR, NKV_LAYOUT_LAYER_MAJOR, false },
	{ "llama3-8b", NKV_LAYOUT_LAYER_MAJOR, NKV_LAYOUT_LAYER_MAJOR, true },
	{ "qwen2.5-7b", NKV_LAYOUT_LAYER_MAJOR, NKV_LAYOUT_BLOCK_MAJOR, true },
	{ "deepseek-v3", NKV_LAYOUT_BLOCK_MAJOR, NKV_LAYOUT_BLOCK_MAJOR, true },
	{ "llama3-70b", NKV_LAYOUT_BLOCK_MAJOR, NKV_LAYOUT_LAYER_MAJOR, false },
};

struct receiver {
	struct nkv_engine *e;
	pthread_t th;
	atomic_bool stop;
	pthread_mutex_t mu;
	uint64_t ok, bad, bytes;
	char last_bad[160];
};

static void *receiver_loop(void *arg)
{
	struct receiver *r = arg;
	struct nkv_event ev[64];

	while (!atomic_load(&r->stop)) {
		int n = nkv_poll(r->e, ev, 64, 20);
		if (n < 0)
			break;
		pthread_mutex_lock(&r->mu);
		for (int i = 0; i < n; i++)
			if (ev[i].type == NKV_EV_RECV) {
				if (ev[i].status) {
					r->bad++;
					snprintf(r->last_bad, sizeof(r->last_bad), "%s", ev[i].reason);
				} else {
					r->ok++;
					r->bytes += ev[i].bytes;
				}
			}
		pthread_mutex_unlock(&r->mu);
	}
	return NULL;
}

struct row {
	char model[48], layout[24], pattern[8];
	uint32_t blocks;
	uint64_t bytes;
	size_t ranges, chunks;
	int requests, ok;
	double secs;
	char err[200];
};

static int run_scenario(const struct scenario *sc, unsigned streams, uint32_t tokens, int requests, struct row *row)
{
	struct nkv_engine_opts eo;
	struct nkv_layout sl = { .block_tokens = 16, .kind = sc->src }, dl;
	struct receiver r = { 0 };
	struct nkv_engine *se = NULL;
	struct nkv_conn *c = NULL;
	struct nkv_plan *plan = NULL;
	struct nkv_event ev[64];
	uint32_t nb = tokens / 16, sid, did, *sb = NULL, *db = NULL;
	uint64_t x = 12345, rbad, rok;
	void *src, *dst;
	uint16_t port;
	char addr[64];
	int rc, done = 0;
	double t0;

	nkv_engine_opts_init(&eo);
	eo.streams = streams;
	eo.verify = true;

	memset(row, 0, sizeof(*row));
	nkv_model_preset(sc->model, &sl.model);
	sl.num_blocks = nb * 2; /* pools twice a request: ids spread over the pool */
	dl = sl;
	dl.kind = sc->dst;
	snprintf(row->model, sizeof(row->model), "%s", sc->model);
	snprintf(row->layout, sizeof(row->layout), "%s -> %s", nkv_layout_kind_name(sc->src), nkv_layout_kind_name(sc->dst));
	snprintf(row->pattern, sizeof(row->pattern), "%s", sc->random ? "random" : "contig");
	row->blocks = nb;
	row->requests = requests;
	pthread_mutex_init(&r.mu, NULL);
	if ((rc = nkv_engine_create(&eo, &r.e)) || (rc = nkv_engine_create(&eo, &se)) ||
	    (rc = nkv_region_alloc(se, NKV_MEM_HOST, nkv_layout_pool_bytes(&sl), &sl, &sid, &src)) ||
	    (rc = nkv_region_alloc(r.e, NKV_MEM_HOST, nkv_layout_pool_bytes(&dl), &dl, &did, &dst)) ||
	    (rc = nkv_listen(r.e, "127.0.0.1:0", &port)))
		goto out;
	/* Prefill "computes" KV: pseudo-random bytes. */
	for (uint64_t i = 0, *q = src; i < nkv_layout_pool_bytes(&sl) / 8; i++) {
		q[i] = nkv_xorshift64(&x);
	}
	pthread_create(&r.th, NULL, receiver_loop, &r);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	if ((rc = nkv_connect(se, addr, &c)))
		goto stop;
	sb = malloc(sl.num_blocks * sizeof(uint32_t));
	db = malloc(sl.num_blocks * sizeof(uint32_t));
	if (!sb || !db) {
		rc = nkv_err(ENOMEM, "demo: out of memory");
		goto stop;
	}
	t0 = nkv_now_s();
	for (int q = 0; q < requests; q++) {
		/* Each request: its own blocks on both sides (a vLLM block table). */
		if (sc->random) {
			nkv_permutation(sb, sl.num_blocks, &x);
			nkv_permutation(db, sl.num_blocks, &x);
		} else {
			for (uint32_t i = 0; i < nb; i++)
				sb[i] = db[i] = (uint32_t)(q % 2) * nb + i;
		}
		nkv_plan_free(plan);
		if ((rc = nkv_plan_build(&sl, &dl, sb, db, nb, &plan)))
			goto stop;
		row->bytes = nkv_plan_bytes(plan);
		row->ranges = nkv_plan_count(plan);
		row->chunks = (size_t)nb * sl.model.layers * nkv_layout_tensors(&sl);
		if ((rc = nkv_push(c, &(struct nkv_push){ .req_id = (uint64_t)q, .src_region = sid, .dst_region = did, .plan = plan })))
			goto stop;
		/* One at a time: the next request reuses the pools. */
		for (int got = 0; !got;) {
			int n = nkv_poll(se, ev, 64, 1000);
			if (n < 0) {
				rc = n;
				goto stop;
			}
			for (int i = 0; i < n; i++)
				if (ev[i].type == NKV_EV_PUSH_DONE) {
					got = 1;
					if (ev[i].status) {
						rc = nkv_err(-ev[i].status, "request %d: %s", q, ev[i].reason);
						goto stop;
					}
					done++;
				} else if (ev[i].type == NKV_EV_CONN_DOWN) {
					rc = nkv_err(ECONNRESET, "connection lost: %s", ev[i].reason);
					goto stop;
				}
		}
	}
	row->secs = nkv_now_s() - t0;
stop:
	/* Wait (briefly) for the receiver's last notifications. */
	for (double end = nkv_now_s() + 2; nkv_now_s() < end;) {
		pthread_mutex_lock(&r.mu);
		rok = r.ok;
		rbad = r.bad;
		pthread_mutex_unlock(&r.mu);
		if ((int)(rok + rbad) >= done)
			break;
		struct timespec ts = { 0, 1000000 };
		nanosleep(&ts, NULL);
	}
	atomic_store(&r.stop, true);
	if (r.th)
		pthread_join(r.th, NULL);
	row->ok = (int)r.ok;
	if (r.bad && !rc)
		rc = nkv_err(EBADMSG, "%s", r.last_bad);
out:
	if (rc)
		snprintf(row->err, sizeof(row->err), "%s", nkv_last_error());
	free(sb);
	free(db);
	nkv_plan_free(plan);
	nkv_conn_close(c);
	nkv_engine_destroy(se);
	nkv_engine_destroy(r.e);
	pthread_mutex_destroy(&r.mu);
	return rc;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: netkv demo transfer [--tokens N] [--requests N] [--streams N] [--json]\n\n"
		   "Loopback demo of the transfer engine: for several models and KV layouts, push\n"
		   "requests of paged KV blocks from a prefill engine to a decode engine over TCP\n"
		   "(io_uring), every block checked with xxhash64 on arrival, and print a table.\n\n"
		   "  --tokens N     context length per request (default 2048, multiple of 16)\n"
		   "  --requests N   requests per scenario (default 4)\n"
		   "  --streams N    TCP streams per connection (default 2)\n"
		   "  --json         JSON on stdout\n");
}

int nkv_cmd_demo_transfer(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "tokens", required_argument, 0, 'k' }, { "requests", required_argument, 0, 'r' },
		{ "streams", required_argument, 0, 's' }, { "json", no_argument, 0, 'j' },
		{ "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
	};
	uint32_t tokens = 2048, requests = 4, streams = 2;
	bool json = false;
	int opt, failed = 0;
	size_t n = sizeof(scenarios) / sizeof(scenarios[0]);
	struct row rows[sizeof(scenarios) / sizeof(scenarios[0])];
	json_t *arr;

	optind = 1;
	while ((opt = nkv_cli_getopt(argc, argv, "h", lo, NULL)) != -1) {
		switch (opt) {
		case 'k':
			if (nkv_parse_u32(optarg, &tokens) || !tokens || tokens % 16 || tokens > 131072) {
				fprintf(stderr, "netkv demo transfer: --tokens '%s' must be a multiple of 16 up to 131072\n", optarg);
				return 2;
			}
			break;
		case 'r':
			if (nkv_parse_u32(optarg, &requests) || !requests || requests > 1000) {
				fprintf(stderr, "netkv demo transfer: --requests '%s' must be in 1..1000\n", optarg);
				return 2;
			}
			break;
		case 's':
			if (nkv_parse_u32(optarg, &streams) || !streams || streams > 64) {
				fprintf(stderr, "netkv demo transfer: --streams '%s' must be in 1..64\n", optarg);
				return 2;
			}
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			return 2; /* nkv_cli_getopt said what is wrong */
		}
	}
	if (optind < argc) {
		fprintf(stderr, "netkv demo transfer: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	for (size_t i = 0; i < n; i++) {
		fprintf(stderr, "demo: %s, %s, %s blocks ...\n", scenarios[i].model,
			nkv_layout_kind_name(scenarios[i].src), scenarios[i].random ? "random" : "contiguous");
		if (run_scenario(&scenarios[i], streams, tokens, (int)requests, &rows[i]))
			failed++;
	}
	if (json) {
		arr = json_array();
		for (size_t i = 0; i < n; i++) {
			json_t *j = json_object();
			json_object_set_new(j, "model", json_string(rows[i].model));
			json_object_set_new(j, "layout", json_string(rows[i].layout));
			json_object_set_new(j, "pattern", json_string(rows[i].pattern));
			json_object_set_new(j, "blocks_per_request", json_integer(rows[i].blocks));
			json_object_set_new(j, "bytes_per_request", json_integer((json_int_t)rows[i].bytes));
			json_object_set_new(j, "chunks", json_integer((json_int_t)rows[i].chunks));
			json_object_set_new(j, "ranges", json_integer((json_int_t)rows[i].ranges));
			json_object_set_new(j, "requests", json_integer(rows[i].requests));
			json_object_set_new(j, "verified", json_integer(rows[i].ok));
			json_object_set_new(j, "GBps", json_real(rows[i].secs > 0 ? (double)rows[i].bytes * rows[i].ok / rows[i].secs / 1e9 : 0));
			json_object_set_new(j, "error", rows[i].err[0] ? json_string(rows[i].err) : json_null());
			json_array_append_new(arr, j);
		}
		nkv_json_print(stdout, arr); /* {"meta", "results": [...]} */
		return failed ? 1 : 0;
	}
	printf("netkv demo transfer: loopback KV push, tcp (io_uring), %u streams, %u tokens/request, 16-token blocks, xxhash64 per block\n\n",
	       streams, tokens);
	printf("%-12s %-15s %-7s %8s %10s %16s %9s %9s  %s\n", "model", "layout", "blocks", "blocks/rq", "MiB/rq",
	       "ranges (chunks)", "GB/s", "verified", "status");
	for (size_t i = 0; i < n; i++) {
		char rc[32];
		snprintf(rc, sizeof(rc), "%zu (%zu)", rows[i].ranges, rows[i].chunks);
		printf("%-12s %-15s %-7s %8u %10.1f %16s %9.2f %5d/%-3d  %s\n", rows[i].model, rows[i].layout, rows[i].pattern,
		       rows[i].blocks, (double)rows[i].bytes / (1 << 20), rc,
		       rows[i].secs > 0 ? (double)rows[i].bytes * rows[i].ok / rows[i].secs / 1e9 : 0.0, rows[i].ok,
		       rows[i].requests, rows[i].err[0] ? rows[i].err : "ok");
	}
	printf("\nverified = requests whose every block matched its xxhash64 on the decode side.\n"
	       "Timings are for this machine as it is now (shared, noisy); see `netkv bench transfer`.\n");
	return failed ? 1 : 0;
}
