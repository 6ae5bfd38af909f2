/*
 * `netkv agent`: a prefill or decode worker of the testbed.
 *
 * Both roles own a host-memory KV pool (transfer engine region, layer-major
 * layout) whose block is one Mooncake prefix block (512 tokens), so a hash
 * id names exactly one pool block. Block contents are a deterministic
 * pattern of the hash id (pattern_fill), so identical prefixes give
 * identical bytes anywhere and the decode can check every byte it gets.
 *
 * Prefill: one FIFO compute server. A task's time is the perf model's
 * prefill time of its uncached tokens (leading blocks already in this
 * agent's pool are not recomputed), times --time-scale. When compute is
 * done and the decode has said which blocks it lacks (BLOCKS), the missing
 * blocks are pushed with the transfer engine over a connection made on
 * first use and kept. --tier-gbps paces completion per topology tier
 * (loopback has one speed; this emulates the fabric's tiers).
 *
 * Decode: reserves pool blocks for each task (prefix blocks it holds are
 * reused, LRU eviction of unpinned ones), tells the scheduler, receives the
 * push, verifies each block against the pattern, and then runs the request
 * in a continuous batch: iterations of perf decode_iter(sum context, batch)
 * x --time-scale, one token per running sequence per iteration. TOKENS
 * reports admission, first token, first step, end, mean and p99 TBT.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testbed_cli.h"
#include "netkv_perf.h"
#include "netkv_proto.h"
#include "netkv_transfer.h"
#include "nkv_cli.h"
#include "nkv_util.h"

#define BLOCK_TOKENS 512
#define PROBE_BLOCKS 64
#define PROBE_BIT (1ull << 63) /* request ids of probe pushes */

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { (void)sig; g_stop = 1; }

/* ---- the pattern ---------------------------------------------------------- */

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static void pattern_chunk(uint8_t *dst, uint64_t len, uint64_t hash, uint32_t layer, uint32_t kv)
{
	uint64_t s = hash * 0x100000001B3ull ^ ((uint64_t)layer << 8 | kv);
	uint64_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t v = splitmix(&s);
		memcpy(dst + i, &v, 8);
	}
	if (i < len) {
		uint64_t v = splitmix(&s);
		memcpy(dst + i, &v, len - i);
	}
}

static void pattern_fill(const struct nkv_layout *l, uint8_t *pool, uint32_t block, uint64_t hash)
{
	uint64_t cb = nkv_layout_chunk_bytes(l);
	for (uint32_t layer = 0; layer < l->model.layers; layer++)
		for (uint32_t kv = 0; kv < nkv_layout_tensors(l); kv++)
			pattern_chunk(pool + nkv_layout_chunk_offset(l, block, layer, kv), cb, hash, layer, kv);
}

static bool pattern_check(const struct nkv_layout *l, const uint8_t *pool, uint32_t block, uint64_t hash,
			  uint8_t *scratch)
{
	uint64_t cb = nkv_layout_chunk_bytes(l);
	for (uint32_t layer = 0; layer < l->model.layers; layer++)
		for (uint32_t kv = 0; kv < nkv_layout_tensors(l); kv++) {
			pattern_chunk(scratch, cb, hash, layer, kv);
			if (memcmp(scratch, pool + nkv_layout_chunk_offset(l, block, layer, kv), cb))
				return false;
		}
	return true;
}

/* ---- the pool: hash id per block, pins and LRU ------------------------------ */

struct pool {
	struct nkv_layout layout;
	uint8_t *mem;
	uint32_t region, n;
	uint64_t *hash;
	bool *valid;
	uint32_t *pin;
	uint64_t *stamp, clock;
	/* prefix cache deltas since the last heartbeat: added then evicted */
	uint64_t *added, *evicted;
	uint32_t nadded, nevicted, capdelta;
};

static void delta_push(struct pool *p, bool add, uint64_t h)
{
	uint64_t **arr = add ? &p->added : &p->evicted;
	uint32_t *cnt = add ? &p->nadded : &p->nevicted;
	if (*cnt >= p->capdelta)
		return; /* the next heartbeat full of deltas; the rest shows up later via reuse */
	(*arr)[(*cnt)++] = h;
}

static int pool_find(struct pool *p, uint64_t h)
{
	for (uint32_t b = 0; b < p->n; b++)
		if (p->valid[b] && p->hash[b] == h)
			return (int)b;
	return -1;
}

/* A block to overwrite: a never-used one, else the least recently used unpinned. */
static int pool_take(struct pool *p)
{
	int best = -1;
	for (uint32_t b = 0; b < p->n; b++) {
		if (p->pin[b])
			continue;
		if (!p->valid[b])
			return (int)b;
		if (best < 0 || p->stamp[b] < p->stamp[best])
			best = (int)b;
	}
	if (best >= 0) {
		delta_push(p, false, p->hash[best]);
		p->valid[best] = false;
	}
	return best;
}

/* Reserve blocks for ids[0..n): held ones (by hash) are pinned and reused;
 * *lead = leading blocks already held. All or nothing: false when the pool
 * cannot give enough unpinned blocks now. */
static bool pool_reserve(struct pool *p, const uint64_t *ids, uint32_t n, uint32_t *blocks, uint32_t *lead,
			 bool *fresh)
{
	uint32_t held = 0, need = 0;
	*lead = 0;
	bool leading = true;
	for (uint32_t i = 0; i < n; i++) {
		int b = pool_find(p, ids[i]);
		blocks[i] = b < 0 ? UINT32_MAX : (uint32_t)b;
		/* a duplicate id within the request shares the block */
		if (b < 0) {
			for (uint32_t j = 0; j < i; j++)
				if (ids[j] == ids[i])
					blocks[i] = blocks[j];
		}
		if (blocks[i] == UINT32_MAX) {
			need++;
			leading = false;
		} else {
			held++;
			if (leading)
				(*lead)++;
		}
	}
	(void)held;
	/* unpinned blocks not among the held ones */
	uint32_t avail = 0;
	for (uint32_t b = 0; b < p->n; b++)
		if (!p->pin[b]) {
			bool mine = false;
			for (uint32_t i = 0; i < n && !mine; i++)
				mine = blocks[i] == b;
			avail += !mine;
		}
	if (avail < need)
		return false;
	for (uint32_t i = 0; i < n; i++)
		if (blocks[i] != UINT32_MAX) {
			p->pin[blocks[i]]++;
			p->stamp[blocks[i]] = ++p->clock;
			fresh[i] = false;
		}
	for (uint32_t i = 0; i < n; i++) {
		if (blocks[i] != UINT32_MAX)
			continue;
		uint32_t b = (uint32_t)pool_take(p);
		p->hash[b] = ids[i];
		p->valid[b] = true; /* filled (prefill) or received (decode) before anyone reads it */
		p->pin[b]++;
		p->stamp[b] = ++p->clock;
		delta_push(p, true, ids[i]);
		blocks[i] = b;
		fresh[i] = true;
		for (uint32_t j = i + 1; j < n; j++)
			if (ids[j] == ids[i] && blocks[j] == UINT32_MAX) {
				blocks[j] = b;
				p->pin[b]++;
				fresh[j] = false;
			}
	}
	return true;
}

static void pool_unpin(struct pool *p, const uint32_t *blocks, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (blocks[i] < p->n && p->pin[blocks[i]])
			p->pin[blocks[i]]--;
}

/* Forget blocks whose contents never arrived (a failed request). */
static void pool_drop(struct pool *p, const uint32_t *blocks, const bool *fresh, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (fresh[i] && blocks[i] < p->n && p->valid[blocks[i]]) {
			p->valid[blocks[i]] = false;
			delta_push(p, false, p->hash[blocks[i]]);
		}
}

/* ---- requests ----------------------------------------------------------- */

enum rstate { R_WAIT_ROOM, R_WAIT, R_READY, R_RUNNING, R_FREE };

struct req {
	enum rstate st;
	uint64_t id;
	uint32_t input, output, n, first, peer, tier;
	uint64_t *ids;
	uint32_t *blocks;
	bool *fresh;
	char addr[NKV_PROTO_MAX_ADDR + 1];
	/* prefill */
	bool computed, have_dst, pushing;
	uint32_t *dst;
	uint32_t ndst;
	double t0, t1, push_t0, hold_until;
	struct nkv_plan *plan;
	uint64_t bytes;
	double xfer_s;
	/* decode */
	bool got_recv, got_xfer;
	uint32_t ok, bad, produced;
	double t_admit, t_first, step, t_last, t_ready;
	double *gaps;
};

struct agent {
	int role;
	struct nkv_pconn ctl;
	struct nkv_engine *eng;
	struct pool pool;
	struct nkv_perf perf;
	double scale;
	bool verify;
	double tier_Bps[4];
	struct req *r;
	size_t nr, capr;
	uint8_t *scratch;
	/* prefill */
	double busy_until;
	struct { uint32_t peer; struct nkv_conn *c; } conns[64];
	uint32_t nconns;
	/* probes: a separate region on both sides, so probe bytes never touch the KV pool */
	struct nkv_layout probe_l;
	uint32_t probe_region;
	struct { uint64_t id; uint32_t peer, tier; uint64_t bytes; double t0, hold; struct nkv_plan *plan; } probes[16];
	uint32_t nprobes;
	/* decode */
	bool iter_on;
	double iter_end, iter_start;
	uint32_t max_batch;
	char name[NKV_PROTO_MAX_NAME + 1];
};

static void alog(struct agent *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void alog(struct agent *a, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "agent %s (%s): ", a->name, a->role == NKV_ROLE_PREFILL ? "prefill" : "decode");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static struct req *req_new(struct agent *a)
{
	for (size_t i = 0; i < a->nr; i++)
		if (a->r[i].st == R_FREE)
			return &a->r[i];
	if (a->nr == a->capr) {
		size_t cap = a->capr ? a->capr * 2 : 64;
		struct req *n = realloc(a->r, cap * sizeof(*n));
		if (!n)
			return NULL;
		a->r = n;
		a->capr = cap;
	}
	return &a->r[a->nr++];
}

static struct req *req_find(struct agent *a, uint64_t id)
{
	for (size_t i = 0; i < a->nr; i++)
		if (a->r[i].st != R_FREE && a->r[i].id == id)
			return &a->r[i];
	return NULL;
}

static void req_free(struct req *r)
{
	free(r->ids), free(r->blocks), free(r->fresh), free(r->dst), free(r->gaps);
	if (r->plan)
		nkv_plan_free(r->plan);
	memset(r, 0, sizeof(*r));
	r->st = R_FREE;
}

static void send_ctl(struct agent *a, struct nkv_msg *m)
{
	if (nkv_pconn_send(&a->ctl, m))
		alog(a, "send %s: %s", nkv_msg_type_name(m->type), nkv_last_error());
	nkv_msg_clear(m);
}

/* ---- prefill ------------------------------------------------------------ */

static void xfer_report(struct agent *a, struct req *r, int status, const char *why, double end)
{
	struct nkv_msg m;
	nkv_msg_init(&m, NKV_MSG_XFER_DONE);
	m.req = r->id;
	m.peer = r->peer;
	m.status = status;
	m.bytes = status ? 0 : r->bytes;
	m.t[0] = status ? 0 : r->xfer_s;
	m.t[1] = end;
	nkv_msg_set_text(&m, why ? why : "");
	send_ctl(a, &m);
	pool_unpin(&a->pool, r->blocks, r->n);
	if (status)
		alog(a, "request %llu: transfer failed: %s", (unsigned long long)r->id, why);
	req_free(r);
}

static struct nkv_conn *conn_for(struct agent *a, struct req *r)
{
	for (uint32_t i = 0; i < a->nconns; i++)
		if (a->conns[i].peer == r->peer)
			return a->conns[i].c;
	struct nkv_conn *c = NULL;
	if (nkv_connect(a->eng, r->addr, &c))
		return NULL;
	if (a->nconns < 64)
		a->conns[a->nconns++].peer = r->peer, a->conns[a->nconns - 1].c = c;
	return c;
}

static void conn_forget(struct agent *a, struct nkv_conn *c)
{
	for (uint32_t i = 0; i < a->nconns; i++)
		if (a->conns[i].c == c) {
			a->conns[i] = a->conns[--a->nconns];
			return;
		}
}

static void try_push(struct agent *a, struct req *r)
{
	if (!r->computed || !r->have_dst || r->pushing)
		return;
	double now = nkv_now_s();
	if (r->ndst == 0) {
		r->bytes = 0;
		r->xfer_s = 0;
		xfer_report(a, r, 0, NULL, now);
		return;
	}
	struct nkv_conn *c = conn_for(a, r);
	char why[NKV_ERRSTR_MAX];
	if (!c) {
		snprintf(why, sizeof(why), "connect %s: %s", r->addr, nkv_last_error());
		xfer_report(a, r, -ECONNREFUSED, why, now);
		return;
	}
	const struct nkv_remote_region *rr = nkv_conn_remote_count(c) ? nkv_conn_remote(c, 0) : NULL;
	struct nkv_layout dl = a->pool.layout;
	int rc = -ENOENT;
	if (rr) {
		dl.num_blocks = (uint32_t)(rr->len / nkv_layout_block_bytes(&dl));
		rc = nkv_plan_build(&a->pool.layout, &dl, r->blocks + r->first, r->dst, r->ndst, &r->plan);
	} else {
		nkv_err(ENOENT, "decode %s advertises no region", r->addr);
	}
	if (!rc) {
		struct nkv_push p = { .req_id = r->id, .src_region = a->pool.region, .dst_region = rr->id,
				      .plan = r->plan };
		rc = nkv_push(c, &p);
	}
	if (rc) {
		snprintf(why, sizeof(why), "push to %s: %s", r->addr, nkv_last_error());
		xfer_report(a, r, rc, why, now);
		return;
	}
	r->pushing = true;
	r->bytes = nkv_plan_bytes(r->plan);
	r->push_t0 = now;
}

static bool prefill_start(struct agent *a, struct req *r);

static void prefill_task(struct agent *a, struct nkv_msg *m)
{
	struct req *r = req_new(a);
	if (!r)
		return;
	memset(r, 0, sizeof(*r));
	r->id = m->req, r->input = m->input_len, r->output = m->output_len, r->n = m->nids;
	r->peer = m->peer, r->tier = m->tier;
	snprintf(r->addr, sizeof(r->addr), "%s", m->addr);
	r->ids = m->ids;
	m->ids = NULL;
	r->blocks = calloc(r->n + 1, sizeof(uint32_t));
	r->fresh = calloc(r->n + 1, sizeof(bool));
	r->st = R_WAIT_ROOM;
	if (r->n > a->pool.n) {
		/* The prefill pool is the staging area: it must hold a whole request. */
		char why[160];
		snprintf(why, sizeof(why), "request needs %u blocks, prefill pool %s has %u", r->n, a->name, a->pool.n);
		r->n = 0;
		xfer_report(a, r, -ENOSPC, why, nkv_now_s());
		return;
	}
	prefill_start(a, r);
}

/* Stage the request's blocks and queue its compute; false while the pool is full. */
static bool prefill_start(struct agent *a, struct req *r)
{
	if (!pool_reserve(&a->pool, r->ids, r->n, r->blocks, &r->first, r->fresh))
		return false;
	r->st = R_WAIT;
	uint64_t cached = (uint64_t)r->first * BLOCK_TOKENS;
	uint64_t uncached = r->input > cached ? r->input - cached : 0;
	double now = nkv_now_s();
	r->t0 = a->busy_until > now ? a->busy_until : now;
	r->t1 = r->t0 + nkv_perf_prefill_s(&a->perf, uncached) * a->scale;
	a->busy_until = r->t1;
	return true;
}

static void prefill_timers(struct agent *a, double now)
{
	/* Requests that waited for staging room, in arrival order. */
	uint64_t oldest = UINT64_MAX;
	size_t oi = 0;
	for (size_t i = 0; i < a->nr; i++)
		if (a->r[i].st == R_WAIT_ROOM && a->r[i].id < oldest)
			oldest = a->r[i].id, oi = i;
	if (oldest != UINT64_MAX)
		prefill_start(a, &a->r[oi]);
	for (size_t i = 0; i < a->nr; i++) {
		struct req *r = &a->r[i];
		if (r->st != R_WAIT)
			continue;
		if (!r->computed && now >= r->t1) {
			for (uint32_t k = 0; k < r->n; k++)
				if (r->fresh[k])
					pattern_fill(&a->pool.layout, a->pool.mem, r->blocks[k], r->ids[k]);
			struct nkv_msg m;
			nkv_msg_init(&m, NKV_MSG_PREFILL_DONE);
			m.req = r->id;
			m.first = r->first;
			m.t[0] = r->t0;
			m.t[1] = r->t1;
			send_ctl(a, &m);
			r->computed = true;
			try_push(a, r);
			continue;
		}
		if (r->pushing && r->hold_until > 0 && now >= r->hold_until)
			xfer_report(a, r, 0, NULL, r->hold_until);
	}
}

static void prefill_blocks(struct agent *a, struct nkv_msg *m)
{
	struct req *r = req_find(a, m->req);
	if (!r || r->have_dst)
		return;
	if (m->first > r->n || m->first + m->nblocks != r->n) {
		char why[160];
		snprintf(why, sizeof(why), "decode sent %u blocks from %u for a %u-block request", m->nblocks, m->first,
			 r->n);
		xfer_report(a, r, -EPROTO, why, nkv_now_s());
		return;
	}
	r->first = m->first;
	r->dst = m->blocks;
	r->ndst = m->nblocks;
	m->blocks = NULL;
	r->have_dst = true;
	try_push(a, r);
}

static void probe_report(struct agent *a, uint32_t i, int status, double seconds)
{
	struct nkv_msg m;
	nkv_msg_init(&m, NKV_MSG_PROBE_RESULT);
	m.req = a->probes[i].id;
	m.peer = a->probes[i].peer;
	m.status = status;
	m.bytes = status ? 0 : a->probes[i].bytes;
	m.t[0] = status ? 0 : seconds;
	send_ctl(a, &m);
	if (a->probes[i].plan)
		nkv_plan_free(a->probes[i].plan);
	a->probes[i] = a->probes[--a->nprobes];
}

/* PROBE: push whole blocks of the probe region into the decode's probe region. */
static void probe_start(struct agent *a, struct nkv_msg *m)
{
	if (a->nprobes >= 16)
		return;
	uint32_t i = a->nprobes++;
	memset(&a->probes[i], 0, sizeof(a->probes[i]));
	a->probes[i].id = m->req;
	a->probes[i].peer = m->peer;
	a->probes[i].tier = m->tier < 4 ? m->tier : 3;
	struct req tmp = { .peer = m->peer };
	snprintf(tmp.addr, sizeof(tmp.addr), "%s", m->addr);
	struct nkv_conn *c = conn_for(a, &tmp);
	const struct nkv_remote_region *rr = c && nkv_conn_remote_count(c) > 1 ? nkv_conn_remote(c, 1) : NULL;
	uint64_t bb = nkv_layout_block_bytes(&a->probe_l);
	uint32_t k = (uint32_t)((m->bytes + bb - 1) / bb);
	if (k > a->probe_l.num_blocks)
		k = a->probe_l.num_blocks;
	if (k == 0)
		k = 1;
	uint32_t blocks[PROBE_BLOCKS];
	for (uint32_t b = 0; b < k; b++)
		blocks[b] = b;
	int rc = rr ? nkv_plan_build(&a->probe_l, &a->probe_l, blocks, blocks, k, &a->probes[i].plan)
		    : nkv_err(ENOENT, "no probe region at %s", m->addr);
	if (!rc) {
		struct nkv_push p = { .req_id = m->req | PROBE_BIT, .src_region = a->probe_region,
				      .dst_region = rr->id, .plan = a->probes[i].plan };
		rc = nkv_push(c, &p);
	}
	if (rc) {
		alog(a, "probe to %s: %s", m->addr, nkv_last_error());
		probe_report(a, i, rc, 0);
		return;
	}
	a->probes[i].bytes = (uint64_t)k * bb;
	a->probes[i].t0 = nkv_now_s();
}

static void probe_done(struct agent *a, const struct nkv_event *ev)
{
	for (uint32_t i = 0; i < a->nprobes; i++) {
		if ((a->probes[i].id | PROBE_BIT) != ev->req_id)
			continue;
		double s = nkv_now_s() - a->probes[i].t0;
		double bw = a->tier_Bps[a->probes[i].tier];
		if (!ev->status && bw > 0 && (double)a->probes[i].bytes / bw > s) {
			a->probes[i].hold = a->probes[i].t0 + (double)a->probes[i].bytes / bw;
			return;
		}
		probe_report(a, i, ev->status, s);
		return;
	}
}

static void probe_timers(struct agent *a, double now)
{
	for (uint32_t i = 0; i < a->nprobes; i++)
		if (a->probes[i].hold > 0 && now >= a->probes[i].hold) {
			probe_report(a, i, 0, a->probes[i].hold - a->probes[i].t0);
			i--;
		}
}

static void prefill_event(struct agent *a, const struct nkv_event *ev)
{
	if (ev->type == NKV_EV_CONN_DOWN) {
		conn_forget(a, ev->conn);
		return;
	}
	if (ev->type != NKV_EV_PUSH_DONE)
		return;
	if (ev->req_id & PROBE_BIT) {
		probe_done(a, ev);
		return;
	}
	struct req *r = req_find(a, ev->req_id);
	if (!r || !r->pushing)
		return;
	double now = nkv_now_s();
	if (ev->status) {
		xfer_report(a, r, ev->status, ev->reason, now);
		return;
	}
	r->xfer_s = now - r->push_t0;
	/* Emulated tier: the transfer takes at least bytes / tier bandwidth. */
	double bw = a->tier_Bps[r->tier < 4 ? r->tier : 3];
	if (bw > 0 && (double)r->bytes / bw > r->xfer_s) {
		r->xfer_s = (double)r->bytes / bw;
		r->hold_until = r->push_t0 + r->xfer_s;
		return;
	}
	xfer_report(a, r, 0, NULL, now);
}

/* ---- decode ------------------------------------------------------------- */

static void tokens_report(struct agent *a, struct req *r, int status, const char *why)
{
	struct nkv_msg m;
	nkv_msg_init(&m, NKV_MSG_TOKENS);
	m.req = r->id;
	m.status = status;
	m.ntokens = r->produced;
	m.blocks_ok = r->ok;
	m.blocks_bad = r->bad;
	if (!status) {
		m.t[0] = r->t_admit;
		m.t[1] = r->t_first;
		m.t[2] = r->step;
		m.t[3] = r->t_last;
		uint32_t ng = r->produced > 1 ? r->produced - 1 : 0;
		double sum = 0;
		for (uint32_t i = 0; i < ng; i++)
			sum += r->gaps[i];
		m.t[4] = ng ? sum / ng : 0;
		if (ng) {
			/* p99 by partial selection sort on the top 1% */
			uint32_t k = (uint32_t)ceil(0.99 * ng) - 1;
			for (uint32_t i = ng - 1; i > k; i--)
				for (uint32_t j = 0; j < i; j++)
					if (r->gaps[j] > r->gaps[j + 1]) {
						double t = r->gaps[j];
						r->gaps[j] = r->gaps[j + 1];
						r->gaps[j + 1] = t;
					}
			double mx = 0;
			for (uint32_t i = 0; i <= k; i++)
				if (r->gaps[i] > mx)
					mx = r->gaps[i];
			m.t[5] = mx;
		}
	}
	nkv_msg_set_text(&m, why ? why : "");
	send_ctl(a, &m);
	if (status) {
		pool_drop(&a->pool, r->blocks, r->fresh, r->n);
		alog(a, "request %llu failed: %s", (unsigned long long)r->id, why);
	}
	if (r->st != R_WAIT_ROOM)
		pool_unpin(&a->pool, r->blocks, r->n);
	req_free(r);
}

static bool decode_reserve(struct agent *a, struct req *r)
{
	if (!pool_reserve(&a->pool, r->ids, r->n, r->blocks, &r->first, r->fresh))
		return false;
	/* Blocks held past the leading run still get pushed: the prefill pushes
	 * ids[first..n) into them, same bytes, keeping the plan one range list. */
	struct nkv_msg m;
	nkv_msg_init(&m, NKV_MSG_BLOCKS);
	m.req = r->id;
	m.first = r->first;
	nkv_msg_set_blocks(&m, r->blocks + r->first, r->n - r->first);
	send_ctl(a, &m);
	r->st = R_WAIT;
	return true;
}

static void decode_task(struct agent *a, struct nkv_msg *m)
{
	struct req *r = req_new(a);
	if (!r)
		return;
	memset(r, 0, sizeof(*r));
	r->id = m->req, r->input = m->input_len, r->output = m->output_len, r->n = m->nids;
	r->ids = m->ids;
	m->ids = NULL;
	r->blocks = calloc(r->n + 1, sizeof(uint32_t));
	r->fresh = calloc(r->n + 1, sizeof(bool));
	r->gaps = calloc(r->output + 1, sizeof(double));
	r->st = R_WAIT_ROOM;
	if (r->n > a->pool.n) {
		char why[160];
		snprintf(why, sizeof(why), "needs %u KV blocks, decode pool %s has %u", r->n, a->name, a->pool.n);
		tokens_report(a, r, -ENOSPC, why);
		return;
	}
	decode_reserve(a, r);
}

static void decode_check_ready(struct req *r)
{
	if (r->st == R_WAIT && r->got_recv && r->got_xfer) {
		r->st = R_READY;
		r->t_ready = nkv_now_s();
	}
}

static void decode_xfer(struct agent *a, struct nkv_msg *m)
{
	struct req *r = req_find(a, m->req);
	if (!r || r->st != R_WAIT)
		return;
	r->got_xfer = true;
	if (m->bytes == 0 || r->first == r->n)
		r->got_recv = true;
	decode_check_ready(r);
}

static void decode_event(struct agent *a, const struct nkv_event *ev)
{
	if (ev->type != NKV_EV_RECV || (ev->req_id & PROBE_BIT))
		return; /* probe bytes land in the probe region and are not looked at */
	struct req *r = req_find(a, ev->req_id);
	if (!r || r->st != R_WAIT) {
		alog(a, "data for unknown request %llu (%llu bytes) ignored", (unsigned long long)ev->req_id,
		     (unsigned long long)ev->bytes);
		return;
	}
	if (ev->status) {
		tokens_report(a, r, ev->status, ev->reason);
		return;
	}
	for (uint32_t i = r->first; i < r->n; i++) {
		if (!a->verify || pattern_check(&a->pool.layout, a->pool.mem, r->blocks[i], r->ids[i], a->scratch))
			r->ok++;
		else
			r->bad++;
	}
	if (r->bad)
		alog(a, "request %llu: %u of %u blocks differ from their pattern", (unsigned long long)r->id, r->bad,
		     r->n - r->first);
	r->got_recv = true;
	decode_check_ready(r);
}

static void decode_step(struct agent *a, double now)
{
	if (a->iter_on && now < a->iter_end)
		return;
	if (a->iter_on) {
		/* The iteration ends: every running sequence gets one token. */
		a->iter_on = false;
		for (size_t i = 0; i < a->nr; i++) {
			struct req *r = &a->r[i];
			if (r->st != R_RUNNING)
				continue;
			if (r->produced == 0) {
				r->t_first = now;
				r->step = now - r->t_admit;
			} else {
				r->gaps[r->produced - 1] = now - r->t_last;
			}
			r->t_last = now;
			if (++r->produced >= r->output)
				tokens_report(a, r, 0, NULL);
		}
	}
	/* Retry reservations that waited for room. */
	for (size_t i = 0; i < a->nr; i++)
		if (a->r[i].st == R_WAIT_ROOM && !decode_reserve(a, &a->r[i]))
			break;
	/* Admit ready requests into the batch, then start the next iteration. */
	uint32_t batch = 0;
	uint64_t ctx = 0;
	for (size_t i = 0; i < a->nr; i++)
		if (a->r[i].st == R_RUNNING)
			batch++, ctx += a->r[i].input + a->r[i].produced;
	for (size_t i = 0; i < a->nr && batch < a->max_batch; i++) {
		struct req *r = &a->r[i];
		if (r->st != R_READY)
			continue;
		r->st = R_RUNNING;
		r->t_admit = now;
		batch++;
		ctx += r->input;
	}
	if (batch) {
		a->iter_on = true;
		a->iter_start = now;
		a->iter_end = now + nkv_perf_decode_iter_s(&a->perf, ctx, batch) * a->scale;
	}
}

/* ---- common ------------------------------------------------------------- */

/* The scheduler settled the request elsewhere (failed): drop it here. */
static void cancel(struct agent *a, const struct nkv_msg *m)
{
	struct req *r = req_find(a, m->req);
	if (!r)
		return;
	if (r->pushing)
		return; /* the push completes or fails on its own; xfer_report then frees it */
	if (r->st != R_WAIT_ROOM) {
		if (a->role == NKV_ROLE_DECODE && !r->got_recv)
			pool_drop(&a->pool, r->blocks, r->fresh, r->n);
		pool_unpin(&a->pool, r->blocks, r->n);
	}
	req_free(r);
}

static void heartbeat(struct agent *a)
{
	struct nkv_msg m;
	nkv_msg_init(&m, NKV_MSG_HEARTBEAT);
	uint32_t used = 0;
	for (uint32_t b = 0; b < a->pool.n; b++)
		used += a->pool.pin[b] > 0;
	for (size_t i = 0; i < a->nr; i++) {
		struct req *r = &a->r[i];
		if (r->st == R_RUNNING) {
			m.running++;
			m.running_tokens += r->input + r->produced;
		} else if (r->st != R_FREE) {
			m.queued++;
			m.queued_tokens += a->role == NKV_ROLE_DECODE ? r->input + r->output : r->input;
		}
	}
	m.kv_used = used;
	m.kv_total = a->pool.n;
	uint32_t n = a->pool.nadded + a->pool.nevicted;
	uint64_t *ids = malloc((n + 1) * sizeof(uint64_t));
	if (ids) {
		memcpy(ids, a->pool.added, a->pool.nadded * sizeof(uint64_t));
		memcpy(ids + a->pool.nadded, a->pool.evicted, a->pool.nevicted * sizeof(uint64_t));
		nkv_msg_set_ids(&m, ids, n);
		m.nadd = a->pool.nadded;
		free(ids);
		a->pool.nadded = a->pool.nevicted = 0;
	}
	send_ctl(a, &m);
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: netkv agent --role prefill|decode --scheduler ADDR --name INSTANCE [options]\n"
		"A testbed worker: a KV pool in host memory, the transfer engine, emulated compute.\n"
		"  --token T          shared token (default $NKV_TOKEN)\n"
		"  --data ADDR        decode: data listen address (default 127.0.0.1:0)\n"
		"  --src IP           prefill: local address pushes leave from (a host's NIC; default: route's choice)\n"
		"  --model M          KV shape: a preset (%s) or a Hugging Face config.json (default llama3-8b)\n"
		"  --perf M           perf model for compute times: a preset or a config.json (default llama3-8b)\n"
		"  --gpu-model G      GPU preset of the perf model: a100 h100 h200 b200 (default h100)\n"
		"  --blocks N         pool blocks of 512 tokens (default 64)\n"
		"  --time-scale X     multiply emulated compute times by X (default 1)\n"
		"  --tier-gbps A,B,C,D prefill: pace transfers per tier (Gb/s, 0 = unpaced; default off)\n"
		"  --verify           engine block sums + pattern check of every received block\n",
		nkv_model_preset_names());
}

static int parse_tiers(const char *s, double out[4])
{
	char *copy = strdup(s), *save = NULL;
	int n = 0;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		double g;
		if (n >= 4 || nkv_parse_double(t, &g) || g < 0 || !isfinite(g)) {
			free(copy);
			return nkv_err(EINVAL, "--tier-gbps '%s': expected up to 4 numbers >= 0", s);
		}
		out[n++] = g * 1e9 / 8;
	}
	free(copy);
	for (int i = n; i < 4 && n > 0; i++)
		out[i] = out[n - 1];
	return 0;
}

int nkv_cmd_agent(int argc, char **argv)
{
	const char *role_s = NULL, *sched = NULL, *token = getenv("NKV_TOKEN"), *name = NULL;
	const char *data = "127.0.0.1:0", *model = "llama3-8b", *perf_model = "llama3-8b", *src = NULL, *gpu = NULL;
	uint32_t blocks = 64;
	struct agent *a = calloc(1, sizeof(*a));
	if (!a) {
		fprintf(stderr, "netkv agent: out of memory\n");
		return 1;
	}
	a->scale = 1;
	static const struct option opts[] = {
		{ "role", 1, 0, 'r' }, { "scheduler", 1, 0, 's' }, { "token", 1, 0, 't' }, { "name", 1, 0, 'n' },
		{ "data", 1, 0, 'd' }, { "model", 1, 0, 'm' }, { "perf", 1, 0, 'p' }, { "blocks", 1, 0, 'b' },
		{ "time-scale", 1, 0, 'S' }, { "tier-gbps", 1, 0, 'T' }, { "verify", 0, 0, 'v' },
		{ "src", 1, 0, 'i' }, { "gpu-model", 1, 0, 'g' }, { "help", 0, 0, 'h' }, { 0, 0, 0, 0 } };
	int c;
	optind = 1;
	while ((c = nkv_cli_getopt(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'r': role_s = optarg; break;
		case 's': sched = optarg; break;
		case 't': token = optarg; break;
		case 'n': name = optarg; break;
		case 'd': data = optarg; break;
		case 'i': src = optarg; break;
		case 'm': model = optarg; break;
		case 'p': perf_model = optarg; break;
		case 'g': gpu = optarg; break;
		case 'v': a->verify = true; break;
		case 'b':
			if (nkv_cli_u32("agent", "--blocks", optarg, 1, 1u << 20, &blocks)) {
				free(a);
				return 2;
			}
			break;
		case 'S':
			if (nkv_cli_time_scale("agent", optarg, &a->scale)) {
				free(a);
				return 2;
			}
			break;
		case 'T':
			if (parse_tiers(optarg, a->tier_Bps)) {
				fprintf(stderr, "netkv agent: %s\n", nkv_last_error());
				free(a);
				return 2;
			}
			break;
		case 'h': usage(stdout); free(a); return 0;
		default: free(a); return 2; /* nkv_cli_getopt said what is wrong */
		}
	}
	enum nkv_role role;
	if (!role_s || nkv_role_parse(role_s, &role) || (role != NKV_ROLE_PREFILL && role != NKV_ROLE_DECODE) ||
	    !sched || !name) {
		fprintf(stderr, "netkv agent: --role prefill|decode, --scheduler and --name are required\n");
		usage(stderr);
		free(a);
		return 2;
	}
	a->role = role;
	snprintf(a->name, sizeof(a->name), "%s", name);
	struct nkv_model km;
	int rc = nkv_model_lookup(model, &km);
	if (!rc)
		rc = nkv_perf_preset(perf_model, gpu, &a->perf);
	if (rc) {
		fprintf(stderr, "netkv agent: %s\n", nkv_last_error());
		free(a);
		return 2;
	}
	a->max_batch = a->perf.max_batch ? a->perf.max_batch : 64;
	struct pool *p = &a->pool;
	p->layout = (struct nkv_layout){ .model = km, .block_tokens = BLOCK_TOKENS, .num_blocks = blocks,
					 .kind = NKV_LAYOUT_LAYER_MAJOR };
	p->n = blocks;
	p->hash = calloc(blocks, sizeof(uint64_t));
	p->valid = calloc(blocks, sizeof(bool));
	p->pin = calloc(blocks, sizeof(uint32_t));
	p->stamp = calloc(blocks, sizeof(uint64_t));
	p->capdelta = 8192;
	p->added = calloc(p->capdelta, sizeof(uint64_t));
	p->evicted = calloc(p->capdelta, sizeof(uint64_t));
	a->scratch = malloc(nkv_layout_chunk_bytes(&p->layout) + 8);
	struct nkv_engine_opts eo;
	void *mem = NULL;
	char addr[NKV_PROTO_MAX_ADDR + 1] = "-";

	nkv_engine_opts_init(&eo);
	eo.verify = a->verify;
	eo.src_addr = src;
	rc = nkv_layout_check(&p->layout);
	if (!rc)
		rc = nkv_engine_create(&eo, &a->eng);
	if (!rc)
		rc = nkv_region_alloc(a->eng, NKV_MEM_HOST, nkv_layout_pool_bytes(&p->layout), &p->layout, &p->region, &mem);
	p->mem = mem;
	a->probe_l = p->layout;
	/* about 8 MiB of whole blocks (at least one, at most PROBE_BLOCKS) */
	uint64_t pbb = nkv_layout_block_bytes(&p->layout);
	a->probe_l.num_blocks = pbb ? (uint32_t)((8u << 20) / pbb) : 1;
	if (a->probe_l.num_blocks < 1)
		a->probe_l.num_blocks = 1;
	if (a->probe_l.num_blocks > PROBE_BLOCKS)
		a->probe_l.num_blocks = PROBE_BLOCKS;
	if (!rc)
		rc = nkv_region_alloc(a->eng, NKV_MEM_HOST, nkv_layout_pool_bytes(&a->probe_l), &a->probe_l,
				      &a->probe_region, &mem);
	if (!rc && role == NKV_ROLE_DECODE) {
		uint16_t port;
		char host[48];
		rc = nkv_parse_hostport(data, host, sizeof(host), &port);
		if (!rc)
			rc = nkv_listen(a->eng, data, &port);
		snprintf(addr, sizeof(addr), "%s:%u", strcmp(host, "0.0.0.0") ? host : "127.0.0.1", port);
	}
	int fd = rc ? rc : nkv_proto_connect(sched, 10);
	if (fd < 0) {
		fprintf(stderr, "netkv agent: %s\n", nkv_last_error());
		return 1;
	}
	nkv_pconn_init(&a->ctl, fd);
	struct nkv_msg m;
	nkv_msg_init(&m, NKV_MSG_REGISTER);
	m.role = (uint8_t)role;
	snprintf(m.token, sizeof(m.token), "%s", token ? token : "");
	snprintf(m.name, sizeof(m.name), "%s", name);
	snprintf(m.addr, sizeof(m.addr), "%s", addr);
	m.kv_blocks = blocks;
	m.block_tokens = BLOCK_TOKENS;
	m.kv_bpt = nkv_model_bytes_per_token(&km);
	rc = nkv_pconn_send_wait(&a->ctl, &m);
	if (!rc)
		rc = nkv_pconn_recv_wait(&a->ctl, &m, 10);
	if (!rc && m.type != NKV_MSG_REGISTER_OK)
		rc = nkv_err(EACCES, "scheduler refused: %s", m.text ? m.text : nkv_msg_type_name(m.type));
	nkv_msg_clear(&m);
	if (rc) {
		fprintf(stderr, "netkv agent %s: %s\n", name, nkv_last_error());
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	char pb[32];
	alog(a, "up: %s, pool %u blocks x %s, data %s, scale %g%s", nkv_engine_describe(a->eng), blocks,
	     nkv_fmt_bytes(nkv_layout_block_bytes(&p->layout), pb, sizeof(pb)), addr, a->scale,
	     a->verify ? ", verify" : "");
	double next_hb = 0;
	int status = 0;
	while (!g_stop) {
		double now = nkv_now_s();
		/* Sleep until the next timer, at most 2 ms (engine events are polled
		 * after). While KV bytes are on the wire (a push not yet done, a
		 * decode waiting for its blocks), at most 0.25 ms: the engine's
		 * completions and acks are only seen here, and a 2 ms nap added
		 * ~4 ms to every push, more than a small push takes on the fabric. */
		double nap = 0.002;
		for (size_t i = 0; i < a->nr; i++) {
			const struct req *r = &a->r[i];
			if (r->st == R_WAIT && (role == NKV_ROLE_PREFILL ? r->pushing && r->xfer_s == 0 : !r->got_recv))
				nap = 0.00025;
		}
		double wake = now + nap;
		for (size_t i = 0; i < a->nr; i++) {
			struct req *r = &a->r[i];
			if (r->st == R_WAIT && role == NKV_ROLE_PREFILL) {
				if (!r->computed && r->t1 < wake)
					wake = r->t1;
				if (r->hold_until > 0 && r->hold_until < wake)
					wake = r->hold_until;
			}
		}
		for (uint32_t i = 0; i < a->nprobes; i++)
			if (a->probes[i].hold > 0 && a->probes[i].hold < wake)
				wake = a->probes[i].hold;
		if (a->iter_on && a->iter_end < wake)
			wake = a->iter_end;
		double dt = wake - now;
		struct timespec ts = { 0, dt > 0 ? (long)(dt * 1e9) : 0 };
		struct pollfd pf = { .fd = a->ctl.fd, .events = (short)(POLLIN | (nkv_pconn_pending(&a->ctl) ? POLLOUT : 0)) };
		if (ppoll(&pf, 1, &ts, NULL) < 0 && errno != EINTR)
			break;
		if (pf.revents & POLLOUT)
			nkv_pconn_flush(&a->ctl);
		if (pf.revents & (POLLIN | POLLHUP | POLLERR)) {
			int rrc = nkv_pconn_read(&a->ctl);
			for (;;) {
				int drc = nkv_pconn_next(&a->ctl, &m);
				if (drc < 0) {
					alog(a, "bad frame from the scheduler: %s", nkv_last_error());
					rrc = drc;
				}
				if (drc <= 0)
					break;
				if (role == NKV_ROLE_PREFILL && m.type == NKV_MSG_PREFILL_TASK)
					prefill_task(a, &m);
				else if (role == NKV_ROLE_PREFILL && m.type == NKV_MSG_PROBE)
					probe_start(a, &m);
				else if (role == NKV_ROLE_PREFILL && m.type == NKV_MSG_BLOCKS)
					prefill_blocks(a, &m);
				else if (role == NKV_ROLE_DECODE && m.type == NKV_MSG_DECODE_TASK)
					decode_task(a, &m);
				else if (role == NKV_ROLE_DECODE && m.type == NKV_MSG_XFER_DONE)
					decode_xfer(a, &m);
				else if (m.type == NKV_MSG_CANCEL)
					cancel(a, &m);
				else if (m.type == NKV_MSG_ERROR)
					alog(a, "scheduler error %u: %s", m.code, m.text ? m.text : "");
				else
					alog(a, "unexpected %s from the scheduler (ignored)", nkv_msg_type_name(m.type));
				nkv_msg_clear(&m);
			}
			if (rrc) {
				alog(a, "scheduler connection lost: %s", nkv_last_error());
				status = 1;
				break;
			}
		}
		struct nkv_event ev[32];
		struct nkv_conn *down[32];
		int ne = nkv_poll(a->eng, ev, 32, 0), ndown = 0;
		for (int i = 0; i < ne; i++) {
			if (ev[i].type == NKV_EV_CONN_DOWN && ev[i].conn)
				down[ndown++] = ev[i].conn;
			if (role == NKV_ROLE_PREFILL)
				prefill_event(a, &ev[i]);
			else
				decode_event(a, &ev[i]);
		}
		/* A connection that went down keeps its resources (verbs: queue
		 * pairs, the GPU bounce slots lent to the peer) until closed, and
		 * a peer that restarts comes back on a new one: close it, after
		 * the batch, whose events may still name it. */
		for (int i = 0; i < ndown; i++) {
			bool seen = false;
			for (int j = 0; j < i; j++)
				seen |= down[j] == down[i];
			if (!seen)
				nkv_conn_close(down[i]);
		}
		now = nkv_now_s();
		if (role == NKV_ROLE_PREFILL) {
			prefill_timers(a, now);
			probe_timers(a, now);
		}
		else
			decode_step(a, now);
		if (now >= next_hb) {
			heartbeat(a);
			next_hb = now + 0.05;
		}
	}
	for (size_t i = 0; i < a->nr; i++)
		if (a->r[i].st != R_FREE)
			req_free(&a->r[i]);
	free(a->r);
	for (uint32_t i = 0; i < a->nprobes; i++)
		if (a->probes[i].plan)
			nkv_plan_free(a->probes[i].plan);
	for (uint32_t i = 0; i < a->nconns; i++)
		nkv_conn_close(a->conns[i].c);
	nkv_engine_destroy(a->eng);
	nkv_pconn_close(&a->ctl);
	free(p->hash), free(p->valid), free(p->pin), free(p->stamp), free(p->added), free(p->evicted);
	free(a->scratch);
	free(a);
	return status;
}
