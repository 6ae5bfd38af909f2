/*
 * netkv bench transfer: push bandwidth in the style of ib_write_bw.
 *
 *   netkv bench transfer --loopback -a             size sweep 2 B .. 8 MiB, both ends here
 *   netkv bench transfer --server [-l ADDR] ...    receiving end (same size/model flags as the client)
 *   netkv bench transfer --client HOST:PORT ...    pushing end
 *   netkv bench transfer --loopback --model llama3-8b --tokens 32768 --layout layer
 *                                                 paged KV blocks of one request per push
 *
 * Figures follow perftest: Gb/s is 1e9 bits/s; BW average is all bytes over
 * first post -> last completion; BW peak is the best window of a tenth of the
 * iterations or 2 x depth, whichever is more (completion to completion);
 * MsgRate is pushes per second.
 * Paged mode reports GB/s (1e9 bytes/s) and time per request, post to
 * completion, where completion means the receiver acknowledged every byte.
 */
#include "bench_cli.h"
#include "bench_pages.h"
#include "gpu.h"
#include "netkv_transfer.h"
#include "nkv_cli.h"
#include "nkv_json_out.h"
#include "nkv_util.h"
#include "push_shape.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REGION_CAP (1ull << 30) /* raw mode: largest region the slots span */
#define MAX_SLOTS 1024

struct bopts {
	enum { ROLE_LOOPBACK, ROLE_SERVER, ROLE_CLIENT } role;
	const char *addr;
	const char *listen;
	const char *loopback_addr;
	struct nkv_engine_opts eo;
	uint64_t size;
	bool all;
	uint64_t iters;
	bool iters_set;
	unsigned depth;
	uint64_t region; /* raw mode: bytes the pushes cycle over (0 = depth x size) */
	bool json;
	/* paged mode */
	bool paged;
	struct nkv_layout src, dst;
	uint64_t tokens;
	enum nkv__bench_pattern pattern;
	/* memory: this end's region (loopback: the sender's; dst_mem the receiver's) */
	enum nkv_mem_kind mem, dst_mem;
	bool describe;
	bool grants; /* the receiver's region requires grants (server_grant) */
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: netkv bench transfer (--loopback | --server [-l HOST:PORT] | --client HOST:PORT) [options]\n"
		"\n"
		"Push bandwidth between two netkv engines, printed like ib_write_bw.\n"
		"Raw mode (default): pushes of -s bytes; -a sweeps 2 B .. 8 MiB.\n"
		"Paged mode (--model): each push is one request's KV blocks.\n"
		"\n"
		"  --loopback            run the receiver in a thread of this process (127.0.0.1)\n"
		"  --server              be the receiving end; exits when the client disconnects\n"
		"  -l, --listen ADDR     server address (default 0.0.0.0:18515)\n"
		"  --client ADDR         be the pushing end, connecting to ADDR (HOST:PORT, or HOST with -p)\n"
		"  -p, --port N          server: port to listen on; client: port of --client HOST (ib_write_bw -p)\n"
		"  --backend tcp|verbs   transfer backend (default tcp)\n"
		"  --streams N           TCP streams / verbs QPs per connection (default 1)\n"
		"  -q, --qps N           the same as --streams (ib_write_bw -q)\n"
		"  -d, --device NAME     verbs: RDMA device (default: the first with an ACTIVE port) (ib_write_bw -d)\n"
		"  -x, --gid-index N     verbs: GID index (default: the RoCE v2 IPv4 GID of the routed netdev) (-x)\n"
		"  --completion MODE     verbs: poll (adaptive busy-poll, default) | event (completion channel)\n"
		"  --loopback-addr IP    address the loopback receiver listens on (default 127.0.0.1;\n"
		"                        verbs: an address of the RDMA netdev, e.g. 10.0.2.15 on rxe)\n"
		"  -s, --size BYTES      push size (default 65536; K/M/G suffixes)\n"
		"  -a, --all             sweep sizes 2 B .. 8 MiB\n"
		"  -n, --iters N         pushes per size (default 1000; paged: 8)\n"
		"  -D, --duration S      push for S seconds per size instead of -n times (ib_write_bw -D;\n"
		"                        at most 10M pushes)\n"
		"  -t, --depth N         pushes in flight (default 32; paged: 2)\n"
		"  --region BYTES        raw mode: cycle pushes over this much memory (default depth x size,\n"
		"                        cache-warm like ib_write_bw and iperf3; e.g. 1G for cold memory)\n"
		"  --mem host|cuda       memory of this end's region (loopback: both ends; default host);\n"
		"                        cuda without a usable GPU fails with the reason (exit 1)\n"
		"  --dst-mem host|cuda   loopback: the receiver's memory if different from --mem\n"
		"  --gpu N               CUDA device of cuda regions (default 0)\n"
		"  --verify              per-block xxhash64 sent along and checked by the receiver (paged mode, tcp)\n"
		"  --grants              the receiver's region takes only granted requests (tcp): it grants\n"
		"                        each request id ahead of the sender (paged: the request's blocks;\n"
		"                        raw: the whole region), so every range header is checked\n"
		"  --describe            print the descriptors one push posts (ranges; verbs: SGEs, WRs) and exit:\n"
		"                        no memory, no peer (verbs needs the device for its limits)\n"
		"  --json                JSON on stdout instead of the table\n"
		"paged mode (server and client need the same flags):\n"
		"  --model M             a preset (%s)\n"
		"                        or a Hugging Face config.json path\n"
		"  --model-json FILE     the same file forms: a config.json or netkv's shape\n"
		"                        {\"layers\",\"kv_heads\",\"head_dim\",\"dtype\",\"mla\"}\n"
		"  --dtype T             fp16, bf16, fp8, fp32 (default: the model's)\n"
		"  --tokens N            context length of a request (default 32768)\n"
		"  --block-tokens N      tokens per block (default 16)\n"
		"  --layout K            layer | block, both sides (default layer)\n"
		"  --dst-layout K        receiver's layout if different\n"
		"  --pattern P           contig (blocks 0..n-1 both sides, default) | random (shuffled ids) |\n"
		"                        scattered (shuffled even blocks of a pool twice the request: no two\n"
		"                        pages of a request adjacent, so nothing coalesces beyond a page)\n"
		"  Paged mode checks every block on both ends after the run: the sender its source\n"
		"  blocks, the receiver its destination blocks (content is a function of the block's\n"
		"  index in the request, so each end knows it without the other).\n",
		nkv_model_preset_names());
}

/* ---- the receiving end ------------------------------------------------------ */

struct server {
	struct nkv_engine *e;
	pthread_t th;
	atomic_bool stop;
	int err;
	char errmsg[NKV_ERRSTR_MAX];
	uint64_t recv_ok, recv_bad;
	void *pool;            /* the receiver's region */
	/* --grants: request ids below `granted` have been granted */
	uint32_t rid, *gblocks, ngblocks;
	uint64_t rlen, granted, window, limit; /* limit: the requests the sender makes (-n; -D: its cap) */
};

/* Region the receiver exposes: raw slots or the paged pool. */
static uint64_t region_bytes(const struct bopts *o, bool dst)
{
	if (o->paged)
		return nkv_layout_pool_bytes(dst ? &o->dst : &o->src);
	uint64_t max = o->all ? (8u << 20) : o->size;
	uint64_t slots = REGION_CAP / max ? REGION_CAP / max : 1;
	uint64_t want = o->region ? (o->region + max - 1) / max : o->depth;
	if (slots > want)
		slots = want;
	if (slots > MAX_SLOTS)
		slots = MAX_SLOTS;
	return slots * max;
}

/* --grants: the sender numbers requests from 0, so every id below
 * (requests received + window) is granted. The window covers the requests
 * in flight and those received whose events are not read yet (a progress
 * call may complete many): up to 65536 ids or 256 MiB of grants, at least
 * 2 x depth + 128, and never past the ids the sender will use. */
static int server_grant(struct server *s)
{
	while (s->granted < s->recv_ok + s->recv_bad + s->window && s->granted < s->limit) {
		int rc = s->gblocks ? nkv_grant_blocks(s->e, s->granted, s->rid, s->gblocks, s->ngblocks)
				    : nkv_grant(s->e, s->granted, s->rid, &(struct nkv_range){ .len = s->rlen }, 1);
		if (rc)
			return nkv_err_wrap(rc, "--grants");
		s->granted++;
	}
	return 0;
}

static int server_setup(struct server *s, const struct bopts *o, const char *addr, uint16_t *port)
{
	void *p;
	int rc;

	if ((rc = nkv_engine_create(&o->eo, &s->e)))
		return rc;
	s->rlen = region_bytes(o, true);
	if ((rc = nkv_region_alloc(s->e, o->dst_mem, s->rlen, o->paged ? &o->dst : NULL, &s->rid, &p)))
		return nkv_err_wrap(rc, "receiver region");
	s->pool = p;
	if (o->grants) {
		uint64_t per = 80; /* bytes a grant holds: raw, one range */
		if ((rc = nkv_region_set_access(s->e, s->rid, NKV_REGION_GRANTED)))
			return nkv_err_wrap(rc, "--grants");
		if (o->paged) {
			s->ngblocks = (uint32_t)(o->tokens / o->dst.block_tokens);
			if (!(s->gblocks = nkv__bench_block_ids(o->pattern, s->ngblocks, true)))
				return nkv_err(ENOMEM, "bench: out of memory");
			per += (uint64_t)s->ngblocks * o->dst.model.layers * nkv_layout_tensors(&o->dst) * 16;
		}
		s->window = (256ull << 20) / per < 65536 ? (256ull << 20) / per : 65536;
		if (s->window < 2ull * o->depth + 128)
			s->window = 2ull * o->depth + 128;
		s->limit = o->iters; /* -D: its cap, 10M */
		if ((rc = server_grant(s)))
			return rc;
	}
	return nkv_listen(s->e, addr, port);
}

/* Paged mode, after the run: every destination block holds what the
 * sender's matching block was filled with. Returns the blocks checked. */
static int64_t server_check(struct server *s, const struct bopts *o)
{
	uint32_t n = (uint32_t)(o->tokens / o->dst.block_tokens);
	uint32_t *ids = nkv__bench_block_ids(o->pattern, n, true);
	int rc;

	if (!ids)
		return nkv_err(ENOMEM, "bench: out of memory");
	rc = nkv__bench_check_blocks(&o->dst, s->pool, o->dst_mem, o->eo.gpu, ids, n);
	free(ids);
	return rc ? (int64_t)nkv_err_wrap(rc, "receiver") : (int64_t)n;
}

/* Poll until told to stop (loopback) or until the first peer leaves (server). */
static int server_loop(struct server *s, bool until_disconnect)
{
	struct nkv_event ev[64];
	int rc;

	while (!atomic_load(&s->stop)) {
		int n = nkv_poll(s->e, ev, 64, 50);
		if (n < 0) {
			s->err = n;
			snprintf(s->errmsg, sizeof(s->errmsg), "%s", nkv_last_error());
			return n;
		}
		for (int i = 0; i < n; i++) {
			if (ev[i].type == NKV_EV_RECV) {
				if (ev[i].status) {
					s->recv_bad++;
					fprintf(stderr, "receiver: request %llu: %s\n", (unsigned long long)ev[i].req_id,
						ev[i].reason);
				} else {
					s->recv_ok++;
				}
				if (s->window && (rc = server_grant(s))) {
					s->err = rc;
					snprintf(s->errmsg, sizeof(s->errmsg), "%s", nkv_last_error());
					return rc;
				}
			} else if (ev[i].type == NKV_EV_CONN_UP && until_disconnect) {
				fprintf(stderr, "receiver: peer connected (%s)\n", ev[i].reason);
			} else if (ev[i].type == NKV_EV_CONN_DOWN && until_disconnect) {
				fprintf(stderr, "receiver: peer left (%s); %llu requests received, %llu failed\n", ev[i].reason,
					(unsigned long long)s->recv_ok, (unsigned long long)s->recv_bad);
				return s->recv_bad ? -EIO : 0;
			}
		}
	}
	return 0;
}

static void server_free(struct server *s)
{
	nkv_engine_destroy(s->e);
	free(s->gblocks);
}

static void *server_thread(void *arg)
{
	server_loop(arg, false);
	return NULL;
}

/* ---- the pushing end -------------------------------------------------------- */

struct result {
	uint64_t bytes, iters, ranges;
	double secs, peak_gbps, avg_gbps, mpps;
	double lat_avg, lat_p50, lat_max; /* seconds, post -> completion */
};

/* -D SECONDS (ib_write_bw -D): run_pushes stops posting once this much time
 * has passed (iters is then only the cap); 0 = push iters times. */
static double push_for_s;
#define DURATION_MAX_PUSHES 10000000ull /* -D's cap: 160 MB of timestamps at most */

/* Push `iters` times, cycling over plans, up to depth in flight. */
static int run_pushes(struct nkv_engine *e, struct nkv_conn *c, struct nkv_plan **plans, unsigned nplans,
		      uint32_t src, uint32_t dst, uint64_t iters, unsigned depth, struct result *r)
{
	double *tpost = calloc(iters, sizeof(double)), *tdone = calloc(iters, sizeof(double));
	struct nkv_event ev[64];
	uint64_t posted = 0, done = 0, bytes = nkv_plan_bytes(plans[0]);
	double t0;
	int rc = 0;

	if (!tpost || !tdone) {
		free(tpost);
		free(tdone);
		return nkv_err(ENOMEM, "bench: out of memory");
	}
	t0 = nkv_now_s();
	while (done < iters) {
		if (push_for_s > 0 && posted < iters && nkv_now_s() - t0 >= push_for_s) {
			iters = posted; /* -D: time is up; what is in flight completes */
			if (done >= iters)
				break;
		}
		while (posted < iters && posted - done < depth) {
			tpost[posted] = nkv_now_s();
			rc = nkv_push(c, &(struct nkv_push){ .req_id = posted, .src_region = src, .dst_region = dst,
							     .plan = plans[posted % nplans] });
			if (rc)
				goto out;
			posted++;
		}
		int n = nkv_poll(e, ev, 64, 1000);
		if (n < 0) {
			rc = n;
			goto out;
		}
		for (int i = 0; i < n; i++) {
			if (ev[i].type == NKV_EV_CONN_DOWN) {
				rc = nkv_err(ECONNRESET, "connection lost: %s", ev[i].reason);
				goto out;
			}
			if (ev[i].type != NKV_EV_PUSH_DONE)
				continue;
			if (ev[i].status) {
				rc = nkv_err(-ev[i].status, "push %llu failed: %s", (unsigned long long)ev[i].req_id,
					     ev[i].reason);
				goto out;
			}
			if (ev[i].req_id < iters)
				tdone[ev[i].req_id] = nkv_now_s();
			done++;
		}
	}
	r->secs = nkv_now_s() - t0;
	r->bytes = bytes;
	r->iters = iters;
	r->ranges = nkv_plan_count(plans[0]);
	r->avg_gbps = (double)bytes * (double)iters * 8 / r->secs / 1e9;
	r->mpps = (double)iters / r->secs / 1e6;
	/* Peak: best window of max(iters/10, 2 x depth) completions, so one
	 * burst of acknowledgements read at once does not count as a window. */
	{
		uint64_t w = iters / 10 > 2ull * depth ? iters / 10 : 2ull * depth;
		if (w >= iters)
			w = iters > 1 ? iters - 1 : 1;
		double *td = malloc(iters * sizeof(double)), best = 0;

		if (td) {
			memcpy(td, tdone, iters * sizeof(double));
			nkv_sort_doubles(td, iters);
			for (uint64_t i = 0; i + w < iters; i++) {
				double dt = td[i + w] - td[i];
				if (dt > 0 && (double)bytes * (double)w * 8 / dt / 1e9 > best)
					best = (double)bytes * (double)w * 8 / dt / 1e9;
			}
			free(td);
		}
		r->peak_gbps = best > r->avg_gbps ? best : r->avg_gbps;
	}
	/* Time per request. */
	for (uint64_t i = 0; i < iters; i++)
		tdone[i] -= tpost[i];
	nkv_sort_doubles(tdone, iters);
	r->lat_avg = 0;
	for (uint64_t i = 0; i < iters; i++)
		r->lat_avg += tdone[i] / (double)iters;
	r->lat_p50 = tdone[iters / 2];
	r->lat_max = tdone[iters - 1];
out:
	free(tpost);
	free(tdone);
	return rc;
}

static void fill(void *p, uint64_t len)
{
	uint64_t x = 88172645463325252ull, *q = p;
	for (uint64_t i = 0; i < len / 8; i++) {
		q[i] = nkv_xorshift64(&x);
	}
}

/* Raw mode: any bytes will do; a GPU region gets them through a host copy. */
static int fill_raw(const struct bopts *o, void *src, uint64_t len)
{
	void *h;
	int rc;

	if (o->mem != NKV_MEM_CUDA) {
		fill(src, len);
		return 0;
	}
	if (!(h = malloc(len)))
		return nkv_err(ENOMEM, "out of memory for a host copy of the %llu-byte GPU region", (unsigned long long)len);
	fill(h, len);
	rc = nkv__gpu()->copy(o->eo.gpu, src, h, len);
	free(h);
	return rc;
}

/* The descriptors one push of plan p posts (push_shape.h), as a table line and JSON. */
static int describe_push(struct nkv_engine *e, const struct nkv_plan *p, json_t *out, FILE *tf)
{
	struct nkv__push_shape sh;
	int rc;

	if ((rc = nkv__push_shape(e, p, &sh)))
		return rc;
	json_t *j = json_object();
	json_object_set_new(j, "ranges", json_integer((json_int_t)sh.ranges));
	if (sh.wrs) {
		json_object_set_new(j, "sges", json_integer((json_int_t)sh.sges));
		json_object_set_new(j, "wrs", json_integer((json_int_t)sh.wrs));
		json_object_set_new(j, "qps", json_integer(sh.parts));
		json_object_set_new(j, "max_sge", json_integer(sh.max_sge));
	}
	json_object_set_new(out, "descriptors_per_push", j);
	if (tf) {
		if (sh.wrs)
			fprintf(tf, " descriptors per push: %llu ranges, %llu SGEs, %llu WRs (%llu header SEND%s + WRITEs, "
				    "over %u QP%s, max_sge %u)\n",
				(unsigned long long)sh.ranges, (unsigned long long)sh.sges, (unsigned long long)sh.wrs,
				(unsigned long long)sh.parts, sh.parts > 1 ? "s" : "", sh.parts, sh.parts > 1 ? "s" : "",
				sh.max_sge);
		else
			fprintf(tf, " descriptors per push: %llu ranges\n", (unsigned long long)sh.ranges);
		fflush(tf);
	}
	return 0;
}

/* What a paged request is (model, blocks, layouts, pattern, bytes): the
 * "paged" object of a run's and of --describe's JSON. */
static json_t *paged_json(const struct bopts *o, uint32_t n, uint64_t bytes, uint64_t chunks)
{
	json_t *j = json_object();

	json_object_set_new(j, "model", json_string(o->src.model.name));
	json_object_set_new(j, "dtype", json_string(nkv_dtype_name(o->src.model.dtype)));
	json_object_set_new(j, "tokens", json_integer((json_int_t)o->tokens));
	json_object_set_new(j, "block_tokens", json_integer(o->src.block_tokens));
	json_object_set_new(j, "blocks", json_integer(n));
	json_object_set_new(j, "src_layout", json_string(nkv_layout_kind_name(o->src.kind)));
	json_object_set_new(j, "dst_layout", json_string(nkv_layout_kind_name(o->dst.kind)));
	json_object_set_new(j, "pattern", json_string(nkv__bench_pattern_name(o->pattern)));
	json_object_set_new(j, "bytes_per_request", json_integer((json_int_t)bytes));
	json_object_set_new(j, "chunks_per_request", json_integer((json_int_t)chunks));
	return j;
}

static int client_run(const struct bopts *o, const char *addr, json_t *out, FILE *tf)
{
	struct nkv_engine *e = NULL;
	struct nkv_conn *c = NULL;
	struct nkv_plan *plans[MAX_SLOTS] = { 0 };
	unsigned nplans = 0;
	uint32_t sid;
	void *src;
	int rc;

	if ((rc = nkv_engine_create(&o->eo, &e)))
		return rc;
	if ((rc = nkv_region_alloc(e, o->mem, region_bytes(o, false), o->paged ? &o->src : NULL, &sid, &src))) {
		nkv_err_wrap(rc, "sender region");
		goto out;
	}
	if (!o->paged && (rc = fill_raw(o, src, region_bytes(o, false))))
		goto out;
	if ((rc = nkv_connect(e, addr, &c)))
		goto out;
	if (!nkv_conn_remote_count(c)) {
		rc = nkv_err(ENOENT, "the receiver has no region");
		goto out;
	}
	uint32_t dst = nkv_conn_remote(c, 0)->id;
	json_object_set_new(out, "engine", json_string(nkv_engine_describe(e)));
	if (tf) {
		fprintf(tf, "---------------------------------------------------------------------------------------\n");
		fprintf(tf, " netkv bench transfer: %s\n", nkv_engine_describe(e));
		fprintf(tf, " peer %s, %u push%s in flight\n", addr, o->depth, o->depth > 1 ? "es" : "");
	}

	if (o->paged) {
		uint32_t n = (uint32_t)(o->tokens / o->src.block_tokens);
		uint32_t *sb = nkv__bench_block_ids(o->pattern, n, false), *db = nkv__bench_block_ids(o->pattern, n, true);
		struct result r = { 0 };
		char b1[32], b2[32], b3[32], b4[32];

		if (!sb || !db) {
			free(sb);
			free(db);
			rc = nkv_err(ENOMEM, "bench: out of memory");
			goto out;
		}
		rc = nkv_plan_build(&o->src, &o->dst, sb, db, n, &plans[0]);
		free(db);
		if (!rc && (rc = nkv__bench_fill_blocks(&o->src, src, o->mem, o->eo.gpu, sb, n)))
			nkv_err_wrap(rc, "filling the sender's blocks");
		if (rc) {
			free(sb);
			goto out;
		}
		nplans = 1;
		uint64_t chunks = (uint64_t)n * o->src.model.layers * nkv_layout_tensors(&o->src);
		if (tf) {
			fprintf(tf, " model %s %s, %s/token, %llu tokens in %u blocks of %u, layout %s -> %s, pattern %s\n",
				o->src.model.name, nkv_dtype_name(o->src.model.dtype),
				nkv_fmt_bytes(nkv_model_bytes_per_token(&o->src.model), b1, sizeof(b1)),
				(unsigned long long)o->tokens, n, o->src.block_tokens, nkv_layout_kind_name(o->src.kind),
				nkv_layout_kind_name(o->dst.kind), nkv__bench_pattern_name(o->pattern));
			fprintf(tf, " one request: %s in %zu ranges after coalescing (%llu chunks of %s)\n",
				nkv_fmt_bytes(nkv_plan_bytes(plans[0]), b2, sizeof(b2)), nkv_plan_count(plans[0]),
				(unsigned long long)chunks, nkv_fmt_bytes(nkv_layout_chunk_bytes(&o->src), b3, sizeof(b3)));
			fflush(tf);
		}
		if ((rc = describe_push(e, plans[0], out, tf)) ||
		    (rc = run_pushes(e, c, plans, 1, sid, dst, o->iters, o->depth, &r))) {
			free(sb);
			goto out;
		}
		/* The sender's side of the per-block check: its blocks still hold what was pushed. */
		rc = nkv__bench_check_blocks(&o->src, src, o->mem, o->eo.gpu, sb, n);
		free(sb);
		if (rc) {
			nkv_err_wrap(rc, "sender");
			goto out;
		}
		json_object_set_new(out, "sender_blocks_checked", json_integer(n));
		if (tf && o->role == ROLE_CLIENT)
			fprintf(tf, " sender: %u blocks checked (the receiver checks its own and says so)\n", n);
		if (tf) {
			fprintf(tf, " %-12s %-10s %-10s %-10s %-14s %-14s %-14s\n", "#bytes", "#requests", "GB/s",
				"Gb/s", "t_avg/request", "t_p50", "t_max");
			fprintf(tf, " %-12llu %-10llu %-10.2f %-10.2f %-14s %-14s %-14s\n", (unsigned long long)r.bytes,
				(unsigned long long)r.iters, r.avg_gbps / 8, r.avg_gbps,
				nkv_fmt_seconds(r.lat_avg, b1, sizeof(b1)), nkv_fmt_seconds(r.lat_p50, b2, sizeof(b2)),
				nkv_fmt_seconds(r.lat_max, b4, sizeof(b4)));
			fprintf(tf, "---------------------------------------------------------------------------------------\n");
		}
		json_t *j = paged_json(o, n, r.bytes, chunks);
		json_object_set_new(j, "src_mem", json_string(o->mem == NKV_MEM_CUDA ? "cuda" : "host"));
		json_object_set_new(j, "ranges_per_request", json_integer((json_int_t)r.ranges));
		json_object_set_new(j, "requests", json_integer((json_int_t)r.iters));
		json_object_set_new(j, "depth", json_integer(o->depth));
		json_object_set_new(j, "verify", json_boolean(o->eo.verify));
		json_object_set_new(j, "bw_avg_GBps", json_real(r.avg_gbps / 8));
		json_object_set_new(j, "bw_avg_gbps", json_real(r.avg_gbps));
		json_object_set_new(j, "t_request_avg_s", json_real(r.lat_avg));
		json_object_set_new(j, "t_request_p50_s", json_real(r.lat_p50));
		json_object_set_new(j, "t_request_max_s", json_real(r.lat_max));
		json_object_set_new(out, "paged", j);
		goto out;
	}

	/* Raw sweep. */
	json_t *arr = json_array();
	json_object_set_new(out, "results", arr);
	if (tf) {
		fprintf(tf, " %-10s %-13s %-18s %-20s %-14s\n", "#bytes", "#iterations", "BW peak[Gb/sec]",
			"BW average[Gb/sec]", "MsgRate[Mpps]");
		fflush(tf);
	}
	uint64_t max = o->all ? (8u << 20) : o->size, cap = region_bytes(o, false);
	for (uint64_t size = o->all ? 2 : o->size; size <= max; size *= 2) {
		struct result r = { 0 };
		uint64_t iters = o->iters;

		/* Slots of `size` over the region: by default depth of them, the
		 * hot buffers perftest and iperf3 use; --region spreads them wider. */
		nplans = (unsigned)(cap / size);
		if (nplans > MAX_SLOTS)
			nplans = MAX_SLOTS;
		for (unsigned i = 0; i < nplans; i++)
			if ((rc = nkv_plan_build_raw(&(struct nkv_range){ .src_off = i * size, .dst_off = i * size, .len = size },
						     1, &plans[i])))
				goto out;
		/* A sweep keeps big sizes to about 4 GiB each unless -n was given. */
		if (o->all && !o->iters_set && iters * size > (4ull << 30))
			iters = (4ull << 30) / size;
		rc = run_pushes(e, c, plans, nplans, sid, dst, iters, o->depth, &r);
		for (unsigned i = 0; i < nplans; i++) {
			nkv_plan_free(plans[i]);
			plans[i] = NULL;
		}
		if (rc)
			goto out;
		if (tf) {
			fprintf(tf, " %-10llu %-13llu %-18.2f %-20.2f %-14.6f\n", (unsigned long long)size,
				(unsigned long long)r.iters, r.peak_gbps, r.avg_gbps, r.mpps);
			fflush(tf);
		}
		json_t *j = json_object();
		json_object_set_new(j, "bytes", json_integer((json_int_t)size));
		json_object_set_new(j, "iterations", json_integer((json_int_t)r.iters));
		json_object_set_new(j, "bw_peak_gbps", json_real(r.peak_gbps));
		json_object_set_new(j, "bw_avg_gbps", json_real(r.avg_gbps));
		json_object_set_new(j, "msg_rate_mpps", json_real(r.mpps));
		json_object_set_new(j, "t_avg_s", json_real(r.lat_avg));
		json_array_append_new(arr, j);
		if (!o->all)
			break;
	}
	if (tf)
		fprintf(tf, "---------------------------------------------------------------------------------------\n");
	nplans = 0;
out:
	for (unsigned i = 0; i < nplans; i++)
		nkv_plan_free(plans[i]);
	nkv_conn_close(c);
	nkv_engine_destroy(e);
	return rc;
}

/* ---- flags ---------------------------------------------------------------- */

enum {
	O_LOOPBACK = 256, O_SERVER, O_CLIENT, O_BACKEND, O_STREAMS, O_VERIFY, O_JSON, O_MODEL, O_MODEL_JSON, O_DTYPE,
	O_TOKENS, O_BLOCK_TOKENS, O_LAYOUT, O_DST_LAYOUT, O_PATTERN, O_REGION,
	O_DEVICE, O_GID_INDEX, O_COMPLETION, O_LOOPBACK_ADDR, /* verbs */
	O_MEM, O_DST_MEM, O_GPU, O_DESCRIBE, O_GRANTS,
};

/* -p PORT as ib_write_bw has it: the port the server listens on (on -l HOST,
 * or -l's default host), the one the client connects to when --client names
 * only a host. A port given both ways must agree. */
static int apply_port(struct bopts *o, uint32_t port, bool listen_set)
{
	static char buf[300]; /* one parse per process */
	const char *addr = o->role == ROLE_SERVER ? o->listen : o->addr;
	const char *opt = o->role == ROLE_SERVER ? "--listen" : "--client";
	char host[256];
	uint16_t p;

	if (o->role == ROLE_LOOPBACK)
		return nkv_err(EINVAL, "-p/--port is for --server and --client (--loopback picks a free port)");
	if (!nkv_parse_hostport(addr, host, sizeof(host), &p)) {
		if (p != port && (o->role == ROLE_CLIENT || listen_set))
			return nkv_err(EINVAL, "%s '%s' and -p %u name different ports", opt, addr, port);
	} else if (strchr(addr, ':') || !*addr || strlen(addr) >= sizeof(host)) {
		return nkv_err(EINVAL, "%s '%s': expected HOST or HOST:PORT", opt, addr);
	} else {
		snprintf(host, sizeof(host), "%s", addr);
	}
	snprintf(buf, sizeof(buf), strchr(host, ':') ? "[%s]:%u" : "%s:%u", host, port);
	if (o->role == ROLE_SERVER)
		o->listen = buf;
	else
		o->addr = buf;
	return 0;
}

static int parse_mem(const char *opt, const char *s, enum nkv_mem_kind *out)
{
	if (!strcmp(s, "host"))
		*out = NKV_MEM_HOST;
	else if (!strcmp(s, "cuda"))
		*out = NKV_MEM_CUDA;
	else
		return nkv_err(EINVAL, "%s: '%s' is not host or cuda", opt, s);
	return 0;
}

static int parse(int argc, char **argv, struct bopts *o)
{
	static const struct option lo[] = {
		{ "loopback", no_argument, 0, O_LOOPBACK }, { "server", no_argument, 0, O_SERVER },
		{ "client", required_argument, 0, O_CLIENT }, { "listen", required_argument, 0, 'l' },
		{ "backend", required_argument, 0, O_BACKEND }, { "streams", required_argument, 0, O_STREAMS },
		{ "size", required_argument, 0, 's' }, { "all", no_argument, 0, 'a' },
		{ "iters", required_argument, 0, 'n' }, { "depth", required_argument, 0, 't' },
		{ "verify", no_argument, 0, O_VERIFY }, { "json", no_argument, 0, O_JSON },
		{ "model", required_argument, 0, O_MODEL }, { "model-json", required_argument, 0, O_MODEL_JSON },
		{ "dtype", required_argument, 0, O_DTYPE }, { "tokens", required_argument, 0, O_TOKENS },
		{ "block-tokens", required_argument, 0, O_BLOCK_TOKENS }, { "layout", required_argument, 0, O_LAYOUT },
		{ "dst-layout", required_argument, 0, O_DST_LAYOUT }, { "pattern", required_argument, 0, O_PATTERN },
		{ "region", required_argument, 0, O_REGION },
		{ "qps", required_argument, 0, 'q' }, { "device", required_argument, 0, O_DEVICE },
		{ "gid-index", required_argument, 0, O_GID_INDEX }, { "completion", required_argument, 0, O_COMPLETION },
		{ "loopback-addr", required_argument, 0, O_LOOPBACK_ADDR }, { "port", required_argument, 0, 'p' },
		{ "duration", required_argument, 0, 'D' },
		{ "mem", required_argument, 0, O_MEM }, { "dst-mem", required_argument, 0, O_DST_MEM },
		{ "gpu", required_argument, 0, O_GPU }, { "describe", no_argument, 0, O_DESCRIBE },
		{ "grants", no_argument, 0, O_GRANTS },
		{ "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 },
	};
	const char *dtype = NULL, *dst_layout = NULL;
	bool role_set = false, depth_set = false, listen_set = false, dst_mem_set = false;
	uint32_t u32, port = 0;
	int opt, rc;

	memset(o, 0, sizeof(*o));
	push_for_s = 0;
	o->role = ROLE_LOOPBACK;
	o->listen = "0.0.0.0:18515";
	nkv_engine_opts_init(&o->eo);
	o->size = 65536;
	o->iters = 1000;
	o->depth = 32;
	o->tokens = 32768;
	o->src.block_tokens = 16;
	o->src.kind = NKV_LAYOUT_LAYER_MAJOR;
	optind = 1;
	while ((opt = nkv_cli_getopt(argc, argv, "hl:s:an:t:q:d:x:p:D:", lo, NULL)) != -1) {
		switch (opt) {
		case 'h':
			usage(stdout);
			return 1;
		case O_LOOPBACK:
		case O_SERVER:
		case O_CLIENT:
			if (role_set)
				return nkv_err(EINVAL, "pick one of --loopback, --server, --client");
			role_set = true;
			o->role = opt == O_LOOPBACK ? ROLE_LOOPBACK : opt == O_SERVER ? ROLE_SERVER : ROLE_CLIENT;
			o->addr = optarg;
			break;
		case 'l':
			o->listen = optarg;
			listen_set = true;
			break;
		case 'D': /* ib_write_bw -D */
			if (nkv_parse_double(optarg, &push_for_s) || !(push_for_s > 0 && push_for_s <= 86400))
				return nkv_err(EINVAL, "--duration: '%s' is not a number of seconds in (0, 86400]", optarg);
			break;
		case 'p': /* ib_write_bw -p */
			if (nkv_parse_u32(optarg, &port) || !port || port > 65535)
				return nkv_err(EINVAL, "--port: '%s' is not in 1..65535", optarg);
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
		case 'q':
			if ((rc = nkv_parse_u32(optarg, &u32)) || !u32 || u32 > 64)
				return nkv_err(EINVAL, "--streams/--qps: '%s' is not in 1..64", optarg);
			o->eo.streams = u32;
			break;
		case 's':
			if ((rc = nkv_parse_size(optarg, &o->size)) || o->size < 1 || o->size > (1ull << 32))
				return nkv_err(EINVAL, "--size: '%s' is not in 1 B .. 4 GiB", optarg);
			break;
		case 'a':
			o->all = true;
			break;
		case 'n':
			if ((rc = nkv_parse_u64(optarg, &o->iters)) || !o->iters || o->iters > 100000000)
				return nkv_err(EINVAL, "--iters: '%s' is not in 1..1e8", optarg);
			o->iters_set = true;
			break;
		case 't':
			if ((rc = nkv_parse_u32(optarg, &o->depth)) || !o->depth || o->depth > 4096)
				return nkv_err(EINVAL, "--depth: '%s' is not in 1..4096", optarg);
			depth_set = true;
			break;
		case O_REGION:
			if ((rc = nkv_parse_size(optarg, &o->region)) || !o->region || o->region > REGION_CAP)
				return nkv_err(EINVAL, "--region: '%s' is not in 1 B .. 1 GiB", optarg);
			break;
		case O_DEVICE:
		case 'd': /* ib_write_bw -d */
			o->eo.device = optarg;
			break;
		case O_GID_INDEX:
		case 'x': /* ib_write_bw -x */
			if ((rc = nkv_parse_u32(optarg, &u32)) || u32 > 65535)
				return nkv_err(EINVAL, "--gid-index: '%s' is not in 0..65535", optarg);
			o->eo.gid_index = (int)u32;
			break;
		case O_COMPLETION:
			if (strcmp(optarg, "poll") && strcmp(optarg, "event"))
				return nkv_err(EINVAL, "--completion: '%s' is not poll or event", optarg);
			setenv("NKV_VERBS_COMPLETION", optarg, 1); /* read by the verbs backend at engine creation */
			break;
		case O_LOOPBACK_ADDR:
			o->loopback_addr = optarg;
			break;
		case O_VERIFY:
			o->eo.verify = true;
			break;
		case O_GRANTS:
			o->grants = true;
			break;
		case O_JSON:
			o->json = true;
			break;
		case O_MODEL:
			if ((rc = nkv_model_lookup(optarg, &o->src.model)))
				return nkv_err_wrap(rc, "--model");
			o->paged = true;
			break;
		case O_MODEL_JSON:
			if ((rc = nkv_model_load_json(optarg, &o->src.model)))
				return nkv_err_wrap(rc, "--model-json");
			o->paged = true;
			break;
		case O_DTYPE:
			dtype = optarg;
			break;
		case O_TOKENS:
			if ((rc = nkv_parse_u64(optarg, &o->tokens)) || !o->tokens || o->tokens > (1ull << 24))
				return nkv_err(EINVAL, "--tokens: '%s' is not in 1..16777216", optarg);
			break;
		case O_BLOCK_TOKENS:
			if ((rc = nkv_parse_u32(optarg, &u32)) || !u32 || u32 > 65536)
				return nkv_err(EINVAL, "--block-tokens: '%s' is not in 1..65536", optarg);
			o->src.block_tokens = u32;
			break;
		case O_LAYOUT:
			if ((rc = nkv_layout_parse_kind(optarg, &o->src.kind)))
				return nkv_err_wrap(rc, "--layout");
			break;
		case O_DST_LAYOUT:
			dst_layout = optarg;
			break;
		case O_PATTERN:
			if ((rc = nkv__bench_pattern_parse(optarg, &o->pattern)))
				return nkv_err_wrap(rc, "--pattern");
			break;
		case O_MEM:
			if ((rc = parse_mem("--mem", optarg, &o->mem)))
				return rc;
			break;
		case O_DST_MEM:
			if ((rc = parse_mem("--dst-mem", optarg, &o->dst_mem)))
				return rc;
			dst_mem_set = true;
			break;
		case O_GPU:
			if ((rc = nkv_parse_u32(optarg, &u32)) || u32 > 1024)
				return nkv_err(EINVAL, "--gpu: '%s' is not a device number in 0..1024", optarg);
			o->eo.gpu = (int)u32;
			break;
		case O_DESCRIBE:
			o->describe = true;
			break;
		default:
			return 2; /* nkv_cli_getopt said what is wrong */
		}
	}
	if (optind < argc)
		return nkv_err(EINVAL, "unexpected argument '%s'", argv[optind]);
	if (port && (rc = apply_port(o, port, listen_set)))
		return rc;
	if (push_for_s > 0 && o->iters_set)
		return nkv_err(EINVAL, "-n and -D both say when to stop: pick one");
	if (o->all && o->paged)
		return nkv_err(EINVAL, "-a sweeps raw sizes; it does not combine with --model");
	if (o->all && o->grants)
		return nkv_err(EINVAL, "--grants follows one run's request ids, and -a starts them again per size: give -s");
	if (o->eo.verify && !o->paged)
		return nkv_err(EINVAL, "--verify checks KV blocks: use it with --model");
	if (o->describe && o->all)
		return nkv_err(EINVAL, "--describe describes one push: give -s or --model, not -a");
	if (dst_mem_set && o->role != ROLE_LOOPBACK)
		return nkv_err(EINVAL, "--dst-mem is for --loopback; the --server's memory is its --mem");
	if (!dst_mem_set)
		o->dst_mem = o->mem;
	if (o->describe && o->role == ROLE_SERVER)
		return nkv_err(EINVAL, "--describe tells what the pushing end posts: not with --server");
	if (o->paged) {
		if (dtype && (rc = nkv_dtype_parse(dtype, &o->src.model.dtype)))
			return nkv_err_wrap(rc, "--dtype");
		if (o->tokens % o->src.block_tokens)
			return nkv_err(EINVAL, "--tokens %llu is not a multiple of --block-tokens %u",
				       (unsigned long long)o->tokens, o->src.block_tokens);
		o->src.num_blocks = nkv__bench_pool_blocks(o->pattern, (uint32_t)(o->tokens / o->src.block_tokens));
		if ((rc = nkv_layout_check(&o->src)))
			return rc;
		o->dst = o->src;
		if (dst_layout && (rc = nkv_layout_parse_kind(dst_layout, &o->dst.kind)))
			return nkv_err_wrap(rc, "--dst-layout");
		if (!o->iters_set)
			o->iters = 8;
		if (!depth_set)
			o->depth = 2;
	} else if (dtype || dst_layout || o->pattern != NKV_BP_CONTIG) {
		return nkv_err(EINVAL, "--dtype, --dst-layout and --pattern need --model");
	}
	if (push_for_s > 0)
		o->iters = DURATION_MAX_PUSHES;
	return 0;
}

/* --describe: the descriptors one push posts, without memory or a peer. */
static int describe_run(const struct bopts *o, json_t *out, FILE *tf)
{
	struct nkv_engine *e = NULL;
	struct nkv_plan *p = NULL;
	char b1[32];
	int rc;

	if ((rc = nkv_engine_create(&o->eo, &e)))
		return rc;
	json_object_set_new(out, "engine", json_string(nkv_engine_describe(e)));
	if (o->paged) {
		uint32_t n = (uint32_t)(o->tokens / o->src.block_tokens);
		uint32_t *sb = nkv__bench_block_ids(o->pattern, n, false), *db = nkv__bench_block_ids(o->pattern, n, true);
		rc = sb && db ? nkv_plan_build(&o->src, &o->dst, sb, db, n, &p) : nkv_err(ENOMEM, "bench: out of memory");
		free(sb);
		free(db);
		if (!rc) {
			json_object_set_new(out, "paged", paged_json(o, n, nkv_plan_bytes(p),
								     (uint64_t)n * o->src.model.layers * nkv_layout_tensors(&o->src)));
			if (tf)
				fprintf(tf, " %s: model %s %s, %llu tokens in %u blocks of %u, layout %s -> %s, pattern %s, %s\n",
					nkv_engine_describe(e), o->src.model.name, nkv_dtype_name(o->src.model.dtype),
					(unsigned long long)o->tokens, n, o->src.block_tokens, nkv_layout_kind_name(o->src.kind),
					nkv_layout_kind_name(o->dst.kind), nkv__bench_pattern_name(o->pattern),
					nkv_fmt_bytes(nkv_plan_bytes(p), b1, sizeof(b1)));
		}
	} else {
		rc = nkv_plan_build_raw(&(struct nkv_range){ .len = o->size }, 1, &p);
		if (!rc && tf)
			fprintf(tf, " %s: one push of %llu bytes\n", nkv_engine_describe(e), (unsigned long long)o->size);
	}
	if (!rc)
		rc = describe_push(e, p, out, tf);
	nkv_plan_free(p);
	nkv_engine_destroy(e);
	return rc;
}

/* --mem cuda / --dst-mem cuda on a host without a usable GPU: the reason, before anything starts. */
static int gpu_usable(const struct bopts *o)
{
	char desc[160], why[NKV_ERRSTR_MAX];

	if (o->mem != NKV_MEM_CUDA && o->dst_mem != NKV_MEM_CUDA)
		return 0;
	if (nkv__gpu()->open(o->eo.gpu, desc, sizeof(desc))) {
		snprintf(why, sizeof(why), "%s", nkv_last_error());
		return nkv_err(ENODEV, "%s cuda: no usable GPU %d: %s", o->mem == NKV_MEM_CUDA ? "--mem" : "--dst-mem",
			       o->eo.gpu, why);
	}
	return 0;
}

static atomic_bool interrupted;
static void on_sigint(int sig)
{
	(void)sig;
	atomic_store(&interrupted, true);
}

int nkv_cmd_bench_transfer(int argc, char **argv)
{
	struct bopts o;
	struct server s = { 0 };
	json_t *out = json_object();
	char addr[300];
	uint16_t port;
	int rc;

	rc = parse(argc, argv, &o);
	if (rc) {
		json_decref(out);
		if (rc > 0)
			return rc == 1 ? 0 : 2;
		fprintf(stderr, "netkv bench transfer: %s\n", nkv_last_error());
		return 2;
	}
	json_object_set_new(out, "role", json_string(o.role == ROLE_LOOPBACK ? "loopback" : o.role == ROLE_SERVER ? "server" : "client"));
	json_object_set_new(out, "streams", json_integer(o.eo.streams));
	json_object_set_new(out, "depth", json_integer(o.depth));
	json_object_set_new(out, "grants", json_boolean(o.grants));
	json_object_set_new(out, "note", json_string("Gb/s = 1e9 bit/s, GB/s = 1e9 byte/s"));

	if (o.describe) {
		rc = describe_run(&o, out, o.json ? NULL : stdout);
		if (rc)
			fprintf(stderr, "netkv bench transfer: %s\n", nkv_last_error());
		else if (o.json)
			nkv_json_print(stdout, json_incref(out));
		json_decref(out);
		return rc ? 1 : 0;
	}
	if ((rc = gpu_usable(&o))) {
		fprintf(stderr, "netkv bench transfer: %s\n", nkv_last_error());
		json_decref(out);
		return 1;
	}

	if (o.role == ROLE_SERVER) {
		if ((rc = server_setup(&s, &o, o.listen, &port))) {
			fprintf(stderr, "netkv bench transfer: %s\n", nkv_last_error());
			server_free(&s);
			json_decref(out);
			return 1;
		}
		fprintf(stderr, "receiver: %s, listening on port %u\n", nkv_engine_describe(s.e), port);
		signal(SIGINT, on_sigint);
		signal(SIGTERM, on_sigint);
		for (;;) {
			rc = server_loop(&s, true);
			if (rc || !atomic_load(&interrupted))
				break;
		}
		if (rc)
			fprintf(stderr, "netkv bench transfer: %s\n", rc == -EIO ? "some requests failed" : s.errmsg);
		if (!rc && o.paged && s.recv_ok) {
			int64_t k = server_check(&s, &o);
			if (k < 0) {
				fprintf(stderr, "netkv bench transfer: %s\n", nkv_last_error());
				rc = (int)k;
			} else {
				fprintf(stderr, "receiver: %lld blocks checked\n", (long long)k);
			}
		}
		server_free(&s);
		json_decref(out);
		return rc ? 1 : 0;
	}

	if (o.role == ROLE_LOOPBACK) {
		const char *lip = o.loopback_addr ? o.loopback_addr : "127.0.0.1";
		snprintf(addr, sizeof(addr), "%s:0", lip);
		if ((rc = server_setup(&s, &o, addr, &port))) {
			fprintf(stderr, "netkv bench transfer: %s\n", nkv_last_error());
			server_free(&s);
			json_decref(out);
			return 1;
		}
		snprintf(addr, sizeof(addr), "%s:%u", lip, port);
		pthread_create(&s.th, NULL, server_thread, &s);
	} else {
		snprintf(addr, sizeof(addr), "%s", o.addr);
	}
	rc = client_run(&o, addr, out, o.json ? NULL : stdout);
	if (rc)
		fprintf(stderr, "netkv bench transfer: %s\n", nkv_last_error());
	if (o.role == ROLE_LOOPBACK) {
		atomic_store(&s.stop, true);
		pthread_join(s.th, NULL);
		if (s.err) {
			fprintf(stderr, "netkv bench transfer: receiver: %s\n", s.errmsg);
			rc = rc ? rc : s.err;
		}
		if (s.recv_bad) {
			fprintf(stderr, "netkv bench transfer: receiver: %llu requests failed\n", (unsigned long long)s.recv_bad);
			rc = rc ? rc : -EIO;
		}
		json_object_set_new(out, "receiver_requests_ok", json_integer((json_int_t)s.recv_ok));
		if (!rc && o.paged) {
			int64_t k = server_check(&s, &o);
			if (k < 0) {
				fprintf(stderr, "netkv bench transfer: %s\n", nkv_last_error());
				rc = (int)k;
			} else {
				json_object_set_new(out, "receiver_blocks_checked", json_integer((json_int_t)k));
				if (!o.json)
					printf(" every block checked: %u on the sender, %lld on the receiver\n",
					       (unsigned)(o.tokens / o.src.block_tokens), (long long)k);
			}
		}
		server_free(&s);
	}
	if (o.json && !rc)
		nkv_json_print(stdout, json_incref(out));
	json_decref(out);
	return rc ? 1 : 0;
}
