/*
 * netkv bench gpu: the GPU staging path against the copies it stands in for.
 *
 *   D2H contiguous   one cudaMemcpyAsync of the request's bytes into pinned host memory
 *   D2H gather       the request's scattered paged blocks into the same pinned buffer:
 *                    per chunk, the gather kernel packs the pieces on the GPU, then one
 *                    copy crosses PCIe; two streams, so chunk i+1's gather overlaps
 *                    chunk i's copy (descriptors uploaded once: prepare once, post many)
 *   H2D contiguous / H2D scatter   the same, the other way
 *   push GPU->GPU    end to end through the engine: GPU pool -> staging -> TCP loopback ->
 *                    staging -> GPU pool, every pushed block then compared (xxhash64)
 *   push host->host  the same plan between host pools: what the network alone gives
 *
 * The goal (issue 8): gather and scatter >= 0.9x the contiguous copy, and the
 * GPU push limited by the network (close to host->host), not by the copies.
 * GB/s is 1e9 bytes/s. Without a usable GPU it says why and exits 1.
 */
#include "gpu.h"
#include "gpu_stage.h"
#include "bench_cli.h"
#include "netkv_topo.h"
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

struct gopts {
	int gpu;              /* -1: nearest to --device, else 0 */
	const char *nic;
	const char *model;
	uint64_t tokens;
	uint32_t block_tokens;
	enum nkv_layout_kind kind;
	uint64_t iters, push_iters;
	uint64_t chunk;
	bool no_push, json;
	struct nkv_engine_opts eo;
	const char *loopback_addr;
};

struct result {
	const char *name;
	uint64_t bytes, iters;
	double avg_s, best_s;
	double vs;            /* against the reference row, 0 = none */
	char note[96];
	char region[320];     /* push rows: how the source region is reached (nkv_region_describe) */
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: netkv bench gpu [options]\n"
		"\n"
		"Gather/scatter of a request's paged KV blocks between GPU memory and pinned host\n"
		"memory against one contiguous copy of the same bytes, and an end-to-end push\n"
		"GPU -> network -> GPU over loopback with every block verified.\n"
		"\n"
		"  --gpu N               CUDA device (default: the GPU nearest --device by hwloc, else 0)\n"
		"  --device NIC          RDMA NIC the GPU should sit next to (and the verbs device)\n"
		"  --model M             a preset (%s; default llama3-8b)\n"
		"                        or a Hugging Face config.json path\n"
		"  --tokens N            context length of the request (default 32768)\n"
		"  --block-tokens N      tokens per block (default 16)\n"
		"  --layout K            layer | block (default layer: one piece per block, layer and K/V)\n"
		"  --chunk BYTES         gather/scatter chunk (default 4M, the engine's staging chunk)\n"
		"  -n, --iters N         copies per test (default 5)\n"
		"  --push-iters N        end-to-end pushes (default 2)\n"
		"  --no-push             copies only\n"
		"  --backend tcp|verbs   backend of the push (default tcp)\n"
		"  --streams N           TCP streams / QPs (default 4)\n"
		"  --loopback-addr IP    address the receiving engine listens on (default 127.0.0.1)\n"
		"  --json                JSON on stdout instead of the table\n"
		"  -h, --help            this text\n"
		"\n"
		"Environment: NKV_GPUDIRECT=dmabuf|peermem|staging forces the verbs registration mode.\n",
		nkv_model_preset_names());
}

enum { O_GPU = 256, O_DEVICE, O_MODEL, O_TOKENS, O_BT, O_LAYOUT, O_CHUNK, O_PUSH_ITERS, O_NO_PUSH, O_BACKEND,
       O_STREAMS, O_LADDR, O_JSON };

static int parse(int argc, char **argv, struct gopts *o)
{
	static const struct option lo[] = {
		{ "gpu", required_argument, 0, O_GPU }, { "device", required_argument, 0, O_DEVICE },
		{ "model", required_argument, 0, O_MODEL }, { "tokens", required_argument, 0, O_TOKENS },
		{ "block-tokens", required_argument, 0, O_BT }, { "layout", required_argument, 0, O_LAYOUT },
		{ "chunk", required_argument, 0, O_CHUNK }, { "iters", required_argument, 0, 'n' },
		{ "push-iters", required_argument, 0, O_PUSH_ITERS }, { "no-push", no_argument, 0, O_NO_PUSH },
		{ "backend", required_argument, 0, O_BACKEND }, { "streams", required_argument, 0, O_STREAMS },
		{ "loopback-addr", required_argument, 0, O_LADDR }, { "json", no_argument, 0, O_JSON },
		{ "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
	};
	uint32_t u32;
	int opt;

	*o = (struct gopts){ .gpu = -1, .model = "llama3-8b", .tokens = 32768, .block_tokens = 16,
			     .kind = NKV_LAYOUT_LAYER_MAJOR, .iters = 5, .push_iters = 2, .chunk = NKV_GPU_CHUNK,
			     .loopback_addr = "127.0.0.1" };
	nkv_engine_opts_init(&o->eo);
	o->eo.streams = 4;
	optind = 1;
	while ((opt = nkv_cli_getopt(argc, argv, "hn:", lo, NULL)) != -1) {
		switch (opt) {
		case 'h':
			usage(stdout);
			return 1;
		case O_GPU:
			if (nkv_parse_u32(optarg, &u32) || u32 > 1024)
				return nkv_err(EINVAL, "--gpu: '%s' is not a device number", optarg);
			o->gpu = (int)u32;
			break;
		case O_DEVICE:
			o->nic = optarg;
			o->eo.device = optarg;
			break;
		case O_MODEL:
			o->model = optarg;
			break;
		case O_TOKENS:
			if (nkv_parse_u64(optarg, &o->tokens) || !o->tokens || o->tokens > (1u << 24))
				return nkv_err(EINVAL, "--tokens: '%s' is not in 1..16M", optarg);
			break;
		case O_BT:
			if (nkv_parse_u32(optarg, &o->block_tokens) || !o->block_tokens || o->block_tokens > 4096)
				return nkv_err(EINVAL, "--block-tokens: '%s' is not in 1..4096", optarg);
			break;
		case O_LAYOUT:
			if (nkv_layout_parse_kind(optarg, &o->kind))
				return nkv_err(EINVAL, "--layout: '%s' is not layer or block", optarg);
			break;
		case O_CHUNK:
			if (nkv_parse_size(optarg, &o->chunk) || o->chunk < 4096 || o->chunk > (1u << 30))
				return nkv_err(EINVAL, "--chunk: '%s' is not in 4K..1G", optarg);
			break;
		case 'n':
			if (nkv_parse_u64(optarg, &o->iters) || !o->iters || o->iters > 100000)
				return nkv_err(EINVAL, "--iters: '%s' is not in 1..100000", optarg);
			break;
		case O_PUSH_ITERS:
			if (nkv_parse_u64(optarg, &o->push_iters) || !o->push_iters || o->push_iters > 10000)
				return nkv_err(EINVAL, "--push-iters: '%s' is not in 1..10000", optarg);
			break;
		case O_NO_PUSH:
			o->no_push = true;
			break;
		case O_BACKEND:
			if (!strcmp(optarg, "tcp"))
				o->eo.backend = NKV_BACKEND_TCP;
			else if (!strcmp(optarg, "verbs"))
				o->eo.backend = NKV_BACKEND_VERBS;
			else
				return nkv_err(EINVAL, "--backend: '%s' is not tcp or verbs", optarg);
			break;
		case O_STREAMS:
			if (nkv_parse_u32(optarg, &u32) || !u32 || u32 > 64)
				return nkv_err(EINVAL, "--streams: '%s' is not in 1..64", optarg);
			o->eo.streams = u32;
			break;
		case O_LADDR:
			o->loopback_addr = optarg;
			break;
		case O_JSON:
			o->json = true;
			break;
		default:
			return 2; /* nkv_cli_getopt said what is wrong */
		}
	}
	if (optind < argc)
		return nkv_err(EINVAL, "unexpected argument '%s'", argv[optind]);
	return 0;
}

/* The GPU hwloc puts next to the NIC, as the issue asks; 0 when there is
 * no NIC to pair with or hwloc sees no GPU. why says which. */
static int pick_gpu(const struct gopts *o, char *why, size_t len)
{
	const struct nkv_gpu_ops *g = nkv__gpu();
	struct nkv_host_info *h = NULL;
	int dev = 0;

	if (o->gpu >= 0) {
		snprintf(why, len, "--gpu %d", o->gpu);
		return o->gpu;
	}
	snprintf(why, len, "default device 0 (no --device NIC to pair with)");
	if (!o->nic || nkv_host_discover(&h))
		return 0;
	snprintf(why, len, "default device 0 (hwloc finds no GPU next to %s)", o->nic);
	for (uint32_t i = 0; i < h->ngpus; i++) {
		int ni = h->gpus[i].nic;
		if (ni >= 0 && (uint32_t)ni < h->nnics && !strcmp(h->nics[ni].name, o->nic) &&
		    !g->device_by_pci(h->gpus[i].pci, &dev)) {
			snprintf(why, len, "nearest to %s by hwloc (%s, %s)", o->nic, h->gpus[i].pci,
				 nkv_pci_class_name(h->gpus[i].nic_class));
			break;
		}
	}
	nkv_host_free(h);
	return dev;
}

/* ---- copies ----------------------------------------------------------------- */

struct copy_bench {
	const struct nkv_gpu_ops *g;
	int dev;
	void *pool;            /* GPU: the paged pool */
	uint8_t *host;         /* pinned: the request's bytes, contiguous */
	void *slot[2];         /* GPU: staging chunks */
	void *st[2], *done;
	struct nkv_chunk_plan cp;
	struct nkv_range *ddesc; /* GPU: every chunk's ranges (src = pool, dst = chunk) */
	uint64_t *desc_first;    /* chunk -> first descriptor */
	uint64_t *max_len;
	uint64_t *chunk_off;     /* chunk -> offset in the contiguous request */
};

/* One gather (d2h) or scatter (h2d) of the whole request, chunk by chunk,
 * alternating two streams; returns when all copies are done. */
static int staged(struct copy_bench *b, bool d2h)
{
	const struct nkv_gpu_ops *g = b->g;
	int rc;

	for (size_t c = 0; c < b->cp.nc; c++) {
		void *s = b->st[c & 1], *slot = b->slot[c & 1];
		const struct nkv_chunk *ch = &b->cp.c[c];
		const struct nkv_range *d = b->ddesc + b->desc_first[c];

		if (d2h) {
			if ((rc = g->copy_ranges_async(b->dev, slot, b->pool, d, (uint32_t)ch->n, b->max_len[c], s)) ||
			    (rc = g->copy_async(b->dev, b->host + b->chunk_off[c], slot, ch->bytes, s)))
				return rc;
		} else {
			/* Scatter: the same descriptors read the other way need
			 * swapped offsets; kept as a second list (after the first). */
			const struct nkv_range *sd = b->ddesc + b->cp.nr + b->desc_first[c];
			if ((rc = g->copy_async(b->dev, slot, b->host + b->chunk_off[c], ch->bytes, s)) ||
			    (rc = g->copy_ranges_async(b->dev, b->pool, slot, sd, (uint32_t)ch->n, b->max_len[c], s)))
				return rc;
		}
	}
	if ((rc = g->stream_sync(b->dev, b->st[0])) || (rc = g->stream_sync(b->dev, b->st[1])))
		return rc;
	return 0;
}

/* The pinned buffer holds the request's blocks, in plan order. */
static int check_gathered(const struct copy_bench *b, const uint8_t *src_host, const char *what)
{
	for (size_t i = 0; i < b->cp.nr; i++) {
		const struct nkv_srange *s = &b->cp.r[i];
		if (memcmp(b->host + b->chunk_off[s->chunk] + s->soff, src_host + s->src_off, s->len))
			return nkv_err(EBADMSG, "%s: range %zu (pool offset %llu, %llu bytes) differs from the source", what,
				       i, (unsigned long long)s->src_off, (unsigned long long)s->len);
	}
	return 0;
}

static int contiguous(struct copy_bench *b, bool d2h, uint64_t bytes)
{
	int rc;

	if (d2h)
		rc = b->g->copy_async(b->dev, b->host, b->pool, bytes, b->st[0]);
	else
		rc = b->g->copy_async(b->dev, b->pool, b->host, bytes, b->st[0]);
	return rc ? rc : b->g->stream_sync(b->dev, b->st[0]);
}

static int timed(struct copy_bench *b, int which, uint64_t bytes, uint64_t iters, struct result *r)
{
	double sum = 0, best = 1e30;
	int rc;

	/* One warm-up, untimed. */
	for (uint64_t i = 0; i <= iters; i++) {
		uint64_t t0 = nkv_now_ns();
		rc = which == 0 ? contiguous(b, true, bytes) : which == 1 ? staged(b, true)
			   : which == 2 ? contiguous(b, false, bytes) : staged(b, false);
		double s = (double)(nkv_now_ns() - t0) * 1e-9;
		if (rc)
			return rc;
		if (i) {
			sum += s;
			best = s < best ? s : best;
		}
	}
	r->bytes = bytes;
	r->iters = iters;
	r->avg_s = sum / (double)iters;
	r->best_s = best;
	return 0;
}

/* ---- end to end --------------------------------------------------------------- */

struct rx {
	struct nkv_engine *e;
	pthread_t th;
	atomic_bool stop;
	atomic_int recvs, bad;
	char why[160];
};

static void *rx_loop(void *arg)
{
	struct rx *r = arg;
	struct nkv_event ev[32];

	while (!atomic_load(&r->stop)) {
		int n = nkv_poll(r->e, ev, 32, 10);
		for (int i = 0; i < n; i++)
			if (ev[i].type == NKV_EV_RECV) {
				if (ev[i].status && !atomic_load(&r->bad)) {
					snprintf(r->why, sizeof(r->why), "%s", ev[i].reason);
					atomic_store(&r->bad, 1);
				}
				atomic_fetch_add(&r->recvs, 1);
			}
		if (n < 0)
			break;
	}
	return NULL;
}

/* Pushes of the request between two engines' pools of `kind`; every
 * pushed block checked afterwards. */
static int push_bench(const struct gopts *o, int dev, enum nkv_mem_kind kind, const struct nkv_layout *l,
		      const uint32_t *sb, const uint32_t *db, size_t nb, const uint8_t *src_host, struct result *r)
{
	const struct nkv_gpu_ops *g = nkv__gpu();
	struct nkv_engine_opts eo = o->eo;
	struct nkv_engine *tx = NULL;
	struct rx rx = { 0 };
	struct nkv_conn *c = NULL;
	struct nkv_plan *plan = NULL;
	uint64_t pool = nkv_layout_pool_bytes(l);
	uint32_t sid, rid;
	void *sp, *dp;
	uint8_t *check = NULL;
	char addr[96];
	uint16_t port;
	double sum = 0, best = 1e30;
	int rc;

	eo.gpu = dev;
	if ((rc = nkv_engine_create(&eo, &tx)) || (rc = nkv_engine_create(&eo, &rx.e)) ||
	    (rc = nkv_region_alloc(tx, kind, pool, l, &sid, &sp)) || (rc = nkv_region_alloc(rx.e, kind, pool, l, &rid, &dp)))
		goto out;
	if (kind == NKV_MEM_CUDA) {
		if ((rc = g->copy(dev, sp, src_host, pool)) || (rc = g->memset(dev, dp, 0, pool)))
			goto out;
		nkv_region_describe(tx, sid, r->region, sizeof(r->region));
	} else {
		memcpy(sp, src_host, pool);
		memset(dp, 0, pool);
	}
	snprintf(addr, sizeof(addr), "%s:0", o->loopback_addr);
	if ((rc = nkv_listen(rx.e, addr, &port)))
		goto out;
	pthread_create(&rx.th, NULL, rx_loop, &rx);
	snprintf(addr, sizeof(addr), "%s:%u", o->loopback_addr, port);
	if ((rc = nkv_connect(tx, addr, &c)) || (rc = nkv_plan_build(l, l, sb, db, nb, &plan)))
		goto stop;
	/* Push 0 is a warm-up, untimed: the first GPU push sets up the
	 * staging slots (pinned allocations) on both sides. */
	for (uint64_t i = 0; i <= o->push_iters; i++) {
		struct nkv_event ev;
		uint64_t t0 = nkv_now_ns();
		int n = 0;

		if ((rc = nkv_push(c, &(struct nkv_push){ .req_id = i + 1, .src_region = sid, .dst_region = rid,
							   .plan = plan })))
			goto stop;
		while (n == 0) {
			n = nkv_poll(tx, &ev, 1, 100);
			if (n < 0) {
				rc = n;
				goto stop;
			}
			if (n == 1 && ev.type != NKV_EV_PUSH_DONE)
				n = 0;
		}
		if (ev.status) {
			rc = nkv_err(-ev.status, "push %llu: %s", (unsigned long long)ev.req_id, ev.reason);
			goto stop;
		}
		double s = (double)(nkv_now_ns() - t0) * 1e-9;
		if (i) {
			sum += s;
			best = s < best ? s : best;
		}
		fprintf(stderr, "  push %llu/%llu: %.3f s%s\n", (unsigned long long)i, (unsigned long long)o->push_iters, s,
			i ? "" : " (warm-up)");
	}
	for (double end = nkv_now_s() + 10; atomic_load(&rx.recvs) < (int)o->push_iters + 1 && nkv_now_s() < end;)
		;
stop:
	atomic_store(&rx.stop, true);
	pthread_join(rx.th, NULL);
	if (!rc && atomic_load(&rx.bad))
		rc = nkv_err(EBADMSG, "receiver: %s", rx.why);
	if (!rc) {
		/* Every pushed block, on the host. */
		const uint8_t *dv = dp;
		if (kind == NKV_MEM_CUDA) {
			if (!(check = malloc(pool)))
				rc = nkv_err(ENOMEM, "verify buffer");
			else
				rc = g->copy(dev, check, dp, pool);
			dv = check;
		}
		for (size_t i = 0; !rc && i < nb; i++)
			if (nkv_block_hash(l, src_host, sb[i]) != nkv_block_hash(l, dv, db[i]))
				rc = nkv_err(EBADMSG, "block %u -> %u differs after the push", sb[i], db[i]);
		if (!rc)
			snprintf(r->note, sizeof(r->note), "%zu blocks verified", nb);
	}
out:
	if (c)
		nkv_conn_close(c);
	nkv_plan_free(plan);
	nkv_engine_destroy(tx);
	nkv_engine_destroy(rx.e);
	free(check);
	if (!rc) {
		r->bytes = nb * nkv_layout_block_bytes(l);
		r->iters = o->push_iters;
		r->avg_s = sum / (double)o->push_iters;
		r->best_s = best;
	}
	return rc;
}

/* ---- output -------------------------------------------------------------------- */

static void print(const struct gopts *o, const char *head[], size_t nhead, const struct result *r, size_t n)
{
	if (o->json) {
		json_t *root = json_object(), *rows = json_array();
		for (size_t i = 0; i < nhead; i += 2)
			json_object_set_new(root, head[i], json_string(head[i + 1]));
		for (size_t i = 0; i < n; i++) {
			json_t *x = json_object();
			json_object_set_new(x, "test", json_string(r[i].name));
			json_object_set_new(x, "bytes", json_integer((json_int_t)r[i].bytes));
			json_object_set_new(x, "iters", json_integer((json_int_t)r[i].iters));
			json_object_set_new(x, "gbps_avg", json_real((double)r[i].bytes / r[i].avg_s / 1e9));
			json_object_set_new(x, "gbps_best", json_real((double)r[i].bytes / r[i].best_s / 1e9));
			json_object_set_new(x, "ms_avg", json_real(r[i].avg_s * 1e3));
			if (r[i].vs > 0)
				json_object_set_new(x, "vs_reference", json_real(r[i].vs));
			json_object_set_new(x, "note", json_string(r[i].note));
			json_array_append_new(rows, x);
		}
		json_object_set_new(root, "results", rows);
		nkv_json_print(stdout, root);
		return;
	}
	printf("---------------------------------------------------------------------------------------------\n");
	for (size_t i = 0; i < nhead; i += 2)
		printf(" %-12s %s\n", head[i], head[i + 1]);
	printf("---------------------------------------------------------------------------------------------\n");
	printf(" %-18s %14s %6s %10s %10s %10s %8s  %s\n", "test", "#bytes", "iters", "GB/s avg", "GB/s best", "ms avg",
	       "vs ref", "note");
	for (size_t i = 0; i < n; i++) {
		char vs[16] = "";
		if (r[i].vs > 0)
			snprintf(vs, sizeof(vs), "%.2fx", r[i].vs);
		printf(" %-18s %14llu %6llu %10.2f %10.2f %10.3f %8s  %s\n", r[i].name, (unsigned long long)r[i].bytes,
		       (unsigned long long)r[i].iters, (double)r[i].bytes / r[i].avg_s / 1e9,
		       (double)r[i].bytes / r[i].best_s / 1e9, r[i].avg_s * 1e3, vs, r[i].note);
	}
	printf("---------------------------------------------------------------------------------------------\n");
}

int nkv_cmd_bench_gpu(int argc, char **argv)
{
	const struct nkv_gpu_ops *g = nkv__gpu();
	struct gopts o;
	struct nkv_layout l = { 0 };
	struct copy_bench b = { .g = g };
	struct result res[6] = { { 0 } };
	size_t nres = 0, nb;
	uint32_t *sb = NULL, *db = NULL;
	uint8_t *src_host = NULL;
	struct nkv_range *hd = NULL;
	char desc[256], why[160], shape[192], gpuline[480];
	uint64_t x = 0x5eed, req_bytes, pool;
	int rc, ret = 1;

	if ((rc = parse(argc, argv, &o))) {
		if (rc > 0)
			return rc == 1 ? 0 : 2;
		fprintf(stderr, "netkv bench gpu: %s\n", nkv_last_error());
		return 2;
	}
	if ((rc = nkv_model_lookup(o.model, &l.model))) {
		fprintf(stderr, "netkv bench gpu: %s\n", nkv_last_error());
		return 2;
	}
	l.block_tokens = o.block_tokens;
	l.kind = o.kind;
	nb = (size_t)((o.tokens + o.block_tokens - 1) / o.block_tokens);
	/* The request's blocks are scattered over a pool 1.25x its size. */
	l.num_blocks = (uint32_t)(nb + nb / 4 + 1);
	if ((rc = nkv_layout_check(&l))) {
		fprintf(stderr, "netkv bench gpu: %s\n", nkv_last_error());
		return 2;
	}
	b.dev = pick_gpu(&o, why, sizeof(why));
	if (g->open(b.dev, desc, sizeof(desc))) {
		fprintf(stderr, "netkv bench gpu: no usable GPU: %s\n", nkv_last_error());
		return 1;
	}
	pool = nkv_layout_pool_bytes(&l);
	req_bytes = nb * nkv_layout_block_bytes(&l);

	/* Source blocks: a random choice of distinct blocks of the pool
	 * (shuffled ids); destination blocks: another. */
	sb = malloc(l.num_blocks * sizeof(*sb));
	db = malloc(l.num_blocks * sizeof(*db));
	if (!sb || !db)
		goto nomem;
	for (uint32_t i = 0; i < l.num_blocks; i++)
		sb[i] = db[i] = i;
	for (uint32_t i = l.num_blocks - 1; i > 0; i--) {
		uint32_t j = (uint32_t)(nkv_xorshift64(&x) % (i + 1)), t = sb[i];
		sb[i] = sb[j], sb[j] = t;
		j = (uint32_t)(nkv_xorshift64(&x) % (i + 1)), t = db[i];
		db[i] = db[j], db[j] = t;
	}
	{
		struct nkv_plan *p;
		if ((rc = nkv_plan_build(&l, &l, sb, sb, nb, &p)))
			goto fail;
		/* The request, packed in plan order: what a chunk plan of the
		 * plan's ranges gives. */
		rc = nkv__chunk_plan(nkv_plan_ranges(p), nkv_plan_count(p), o.chunk, 1u << 20, &b.cp);
		snprintf(shape, sizeof(shape), "%s, %llu tokens = %zu blocks x %u tokens, %s-major, %zu ranges, %llu bytes",
			 l.model.name, (unsigned long long)o.tokens, nb, l.block_tokens, nkv_layout_kind_name(l.kind),
			 nkv_plan_count(p), (unsigned long long)req_bytes);
		nkv_plan_free(p);
		if (rc)
			goto fail;
	}
	fprintf(stderr, "netkv bench gpu: %s; %s\n", desc, shape);
	/* GPU pool, pinned request buffer, two chunk slots, two streams. */
	if ((rc = g->alloc(b.dev, pool, &b.pool)) || (rc = g->host_alloc(b.dev, req_bytes, (void **)&b.host)) ||
	    (rc = g->alloc(b.dev, o.chunk, &b.slot[0])) || (rc = g->alloc(b.dev, o.chunk, &b.slot[1])) ||
	    (rc = g->stream_create(b.dev, &b.st[0])) || (rc = g->stream_create(b.dev, &b.st[1])))
		goto fail;
	/* Descriptors once: gather (pool -> chunk) then scatter (chunk -> pool). */
	hd = malloc(2 * b.cp.nr * sizeof(*hd));
	b.desc_first = malloc(b.cp.nc * sizeof(*b.desc_first));
	b.max_len = calloc(b.cp.nc, sizeof(*b.max_len));
	b.chunk_off = malloc(b.cp.nc * sizeof(*b.chunk_off));
	if (!hd || !b.desc_first || !b.max_len || !b.chunk_off)
		goto nomem;
	{
		uint64_t off = 0;
		for (size_t c = 0; c < b.cp.nc; c++) {
			b.desc_first[c] = b.cp.c[c].first;
			b.chunk_off[c] = off;
			off += b.cp.c[c].bytes;
		}
	}
	for (size_t i = 0; i < b.cp.nr; i++) {
		const struct nkv_srange *s = &b.cp.r[i];
		hd[i] = (struct nkv_range){ .src_off = s->src_off, .dst_off = s->soff, .len = s->len };
		hd[b.cp.nr + i] = (struct nkv_range){ .src_off = s->soff, .dst_off = s->src_off, .len = s->len };
		if (s->len > b.max_len[s->chunk])
			b.max_len[s->chunk] = s->len;
	}
	if ((rc = g->alloc(b.dev, 2 * b.cp.nr * sizeof(*hd), (void **)&b.ddesc)) ||
	    (rc = g->copy(b.dev, b.ddesc, hd, 2 * b.cp.nr * sizeof(*hd))))
		goto fail;
	if (!(src_host = malloc(pool)))
		goto nomem;
	for (uint64_t i = 0; i < pool / 8; i++)
		((uint64_t *)src_host)[i] = nkv_xorshift64(&x);
	if ((rc = g->copy(b.dev, b.pool, src_host, pool)))
		goto fail;

	fprintf(stderr, "netkv bench gpu: copies (%llu iterations each)...\n", (unsigned long long)o.iters);
	res[0].name = "D2H contiguous";
	snprintf(res[0].note, sizeof(res[0].note), "one cudaMemcpyAsync (reference)");
	if ((rc = timed(&b, 0, req_bytes, o.iters, &res[0])))
		goto fail;
	res[1].name = "D2H gather";
	if ((rc = timed(&b, 1, req_bytes, o.iters, &res[1])))
		goto fail;
	if ((rc = check_gathered(&b, src_host, "gather")))
		goto fail;
	snprintf(res[1].note, sizeof(res[1].note), "%zu chunks of <= %llu B, kernel + copy, checked", b.cp.nc,
		 (unsigned long long)o.chunk);
	res[2].name = "H2D contiguous";
	snprintf(res[2].note, sizeof(res[2].note), "one cudaMemcpyAsync (reference)");
	if ((rc = timed(&b, 2, req_bytes, o.iters, &res[2])))
		goto fail;
	res[3].name = "H2D scatter";
	snprintf(res[3].note, sizeof(res[3].note), "%zu chunks, copy + kernel", b.cp.nc);
	if ((rc = timed(&b, 3, req_bytes, o.iters, &res[3])))
		goto fail;
	/* The contiguous H2D wrote over the start of the pool; the scatter
	 * must have put every block of the request back: gather and check. */
	if ((rc = staged(&b, true)) || (rc = check_gathered(&b, src_host, "scatter")))
		goto fail;
	snprintf(res[3].note, sizeof(res[3].note), "%zu chunks, copy + kernel, checked", b.cp.nc);
	res[1].vs = res[0].avg_s / res[1].avg_s;
	res[3].vs = res[2].avg_s / res[3].avg_s;
	nres = 4;
	/* Free the copy buffers before the pushes allocate their pools. */
	g->free(b.dev, b.ddesc);
	b.ddesc = NULL;
	g->free(b.dev, b.pool);
	b.pool = NULL;
	g->host_free(b.dev, b.host);
	b.host = NULL;

	if (!o.no_push) {
		fprintf(stderr, "netkv bench gpu: end-to-end pushes over %s...\n",
			o.eo.backend == NKV_BACKEND_TCP ? "TCP loopback" : "verbs");
		res[4].name = "push host->host";
		if ((rc = push_bench(&o, b.dev, NKV_MEM_HOST, &l, sb, db, nb, src_host, &res[4])))
			goto fail;
		res[5].name = "push GPU->GPU";
		if ((rc = push_bench(&o, b.dev, NKV_MEM_CUDA, &l, sb, db, nb, src_host, &res[5])))
			goto fail;
		res[5].vs = res[4].avg_s / res[5].avg_s;
		nres = 6;
	}
	snprintf(gpuline, sizeof(gpuline), "%s, %s", desc, why);
	{
		char streams[16];
		snprintf(streams, sizeof(streams), "%u", o.eo.streams);
		const char *head[] = { "gpu", gpuline, "request", shape, "backend",
				       o.eo.backend == NKV_BACKEND_TCP ? "tcp" : "verbs", "streams", streams,
				       "gpu region", nres > 5 ? res[5].region : "(no push)" };
		print(&o, head, sizeof(head) / sizeof(head[0]), res, nres);
	}
	ret = 0;
	goto out;
nomem:
	rc = nkv_err(ENOMEM, "out of memory");
fail:
	fprintf(stderr, "netkv bench gpu: %s\n", nkv_last_error());
out:
	g->free(b.dev, b.ddesc);
	g->free(b.dev, b.pool);
	g->host_free(b.dev, b.host);
	g->free(b.dev, b.slot[0]);
	g->free(b.dev, b.slot[1]);
	g->stream_destroy(b.dev, b.st[0]);
	g->stream_destroy(b.dev, b.st[1]);
	nkv__chunk_plan_free(&b.cp);
	free(b.desc_first);
	free(b.max_len);
	free(b.chunk_off);
	free(hd);
	free(sb);
	free(db);
	free(src_host);
	return ret;
}
