/*
 * `netkv agent`: a prefill or decode worker of the testbed.
 *
 * Both roles own a paged KV pool (agent_pool.h: a slot per Mooncake prefix
 * block of 512 tokens, so a hash id names one slot, and 512/--page-tokens
 * pages of the engine layout per slot, from a free list) registered with
 * the transfer engine, in host or GPU memory (--mem), over TCP or verbs
 * (--backend, with the flags of `netkv bench transfer`). Block contents are
 * a deterministic pattern of the hash id, so identical prefixes give
 * identical bytes anywhere and the decode can check every byte it gets.
 * Probes use a region of their own in the same memory, over the same
 * engine, so they measure the path the KV takes.
 *
 * Progress: a task reaches the prefill only after its decode reserved room
 * (the scheduler sends PREFILL_TASK when the decode's BLOCKS arrives), so a
 * prefill's pool waits only on its own compute and pushes, never on a
 * decode's room, and no cycle of waits can form. Both roles admit tasks
 * that wait for pool room in arrival order, each that fits (never stopping
 * at the first misfit), except that a waiter older than ADMIT_STARVE_S that
 * does not fit stops the later ones (no starvation of large requests).
 *
 * Prefill: one FIFO compute server. A task's time is the perf model's
 * prefill time of its uncached tokens (leading blocks already in this
 * agent's pool are not recomputed), times --time-scale. When compute is
 * done, the blocks the decode lacks (BLOCKS, which follows the task) are
 * pushed with the transfer engine over a connection made on first use and
 * kept. --tier-gbps paces completion per topology tier (loopback has one
 * speed; this emulates the fabric's tiers). A CANCEL of a request whose
 * push is in flight closes the connection to that decode (a stopped decode
 * never completes it), failing the pushes on it, so the pool is freed.
 *
 * Decode: reserves pool blocks for each task (prefix blocks it holds are
 * reused, LRU eviction of unpinned ones), tells the scheduler their pages
 * (BLOCKS carries page ids: (n - first) x pages per block), receives the
 * push, verifies each block against the pattern, and then runs the request
 * in a continuous batch: iterations of perf decode_iter(sum context, batch)
 * x --time-scale, one token per running sequence per iteration. TOKENS
 * reports admission, first token, first step, end, mean and p99 TBT.
 *
 * Nothing here waits without a deadline: the one blocking call in the loop,
 * a prefill's connect to a decode, gives up after HANDSHAKE_MS over TCP,
 * under the scheduler's default --agent-timeout, so a stopped decode cannot
 * make a prefill look dead (verbs: the CM's 10 s, which that exceeds).
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

#include "agent_ctl.h"
#include "agent_net.h"
#include "agent_pool.h"
#include "testbed_cli.h"
#include "netkv_perf.h"
#include "netkv_proto.h"
#include "netkv_transfer.h"
#include "nkv_cli.h"
#include "nkv_util.h"

#define BLOCK_TOKENS AGENT_HASH_TOKENS
#define PROBE_PAGES 4096
#define PROBE_BIT NKV_PROTO_PROBE_BIT /* request ids of probe pushes */
#define ADMIT_STARVE_S 1.0     /* a waiter this old is not passed by later ones */
#define HANDSHAKE_MS 2000      /* a data connection's handshake (connect) deadline */
#define CANCEL_GRACE_S 1.0     /* a cancelled push the decode has not ended by then is aborted */
#define CANCEL_QUARANTINE_S 2.0 /* a cancelled request's decode pages stay pinned this long */

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { (void)sig; g_stop = 1; }

/* ---- requests ----------------------------------------------------------- */

enum rstate { R_WAIT_ROOM, R_WAIT, R_READY, R_RUNNING, R_FREE };

struct req {
	enum rstate st;
	uint64_t id;         /* the scheduler's: random, so arrival order is seq */
	uint64_t seq;        /* arrival order here */
	double t_arrive;
	bool waited;         /* did not get room at once */
	uint32_t input, output, n, first, peer, tier;
	uint64_t *ids;
	uint32_t *blocks;
	bool *fresh;
	char addr[NKV_PROTO_MAX_ADDR + 1];
	/* prefill; first (above) is the blocks this prefill already held, dst_first
	 * those the decode holds (its BLOCKS reply): the push starts there. Two
	 * fields, since BLOCKS may arrive while the request still waits for room
	 * here, before its own reserve sets first. */
	bool computed, have_dst, pushing;
	uint32_t *dst;
	uint32_t ndst, dst_first;
	double t0, t1, push_t0, hold_until;
	struct nkv_plan *plan;
	uint64_t bytes;
	double xfer_s;
	/* decode */
	bool got_recv, got_xfer;
	uint32_t ok, bad, produced;
	double t_admit, t_first, step, t_last, t_ready;
	double *gaps;
	/* The scheduler that sent it is gone (agent_ctl.c): nothing is reported;
	 * kept only while a push may still touch its pages (prefill: until the
	 * push ends; decode: until the bytes land or orphan_until). */
	bool orphan;
	double orphan_until;
	/* prefill: its push's connection was closed by another request's CANCEL
	 * (abort_pushes): the reason its -ECANCELED is reported with */
	char *abort_why;
	double abort_at;      /* cancelled while pushing: close its connection then (CANCEL_GRACE_S) */
	char *cancel_text;    /* the CANCEL's reason */
};

struct agent {
	int role;
	struct nkv_pconn ctl;      /* fd -1 while (re)joining */
	struct agent_ctl join;
	struct nkv_engine *eng;
	struct agent_pool pool;
	struct nkv_perf perf;
	double scale;
	bool verify;
	double tier_Bps[4];
	struct req *r;
	size_t nr, capr;
	/* admission of tasks waiting for room */
	uint64_t seq, room_waits, admit_seen; /* seq: tasks taken, for arrival order */
	bool admit_due;
	uint32_t peak_pinned;
	struct req **waiting;
	size_t capw;
	/* prefill */
	double busy_until;
	uint64_t st_pushes, st_pages, st_ranges, st_bytes; /* how scattered the pushes were */
	/* data connections by the decode's data address (agent ids change when the scheduler restarts) */
	struct dconn { char addr[NKV_PROTO_MAX_ADDR + 1]; struct nkv_conn *c; } *conns;
	uint32_t nconns, capconns;
	/* probes: a separate region on both sides, so probe bytes never touch the KV pool */
	struct nkv_layout probe_l;
	uint32_t probe_region;
	struct { uint64_t id; uint32_t peer, tier; uint64_t bytes; double t0, hold; struct nkv_plan *plan; bool orphan; } probes[16];
	uint32_t nprobes;
	/* decode */
	bool grants;    /* the KV pool takes pushes only into pages granted to the request (TCP) */
	bool iter_on;
	double iter_end, iter_start;
	uint32_t max_batch;
	char name[NKV_PROTO_MAX_NAME + 1];
};

static void alog(struct agent *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void alog(struct agent *a, const char *fmt, ...)
{
	va_list ap;
	struct timespec ts;
	struct tm tm;
	char when[40];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
	va_start(ap, fmt);
	fprintf(stderr, "%s.%03ldZ agent %s (%s): ", when, ts.tv_nsec / 1000000, a->name,
		a->role == NKV_ROLE_PREFILL ? "prefill" : "decode");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static struct req *req_slot(struct agent *a)
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

/* A task that arrived: a cleared slot waiting for room, in arrival order. */
static struct req *req_new(struct agent *a)
{
	struct req *r = req_slot(a);
	if (!r)
		return NULL;
	memset(r, 0, sizeof(*r));
	r->st = R_WAIT_ROOM;
	r->seq = ++a->seq;
	r->t_arrive = nkv_now_s();
	a->admit_due = true;
	return r;
}

static int by_seq(const void *x, const void *y)
{
	const struct req *a = *(struct req *const *)x, *b = *(struct req *const *)y;
	return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Give room to the tasks that wait for it, oldest first, each that fits;
 * a waiter older than ADMIT_STARVE_S that does not fit stops the later ones.
 * Runs when a task arrived or slots were unpinned since the last pass. */
static void admit_waiting(struct agent *a, double now, bool (*reserve)(struct agent *, struct req *))
{
	if (!a->admit_due && a->admit_seen == a->pool.released)
		return;
	a->admit_due = false;
	a->admit_seen = a->pool.released;
	size_t nw = 0;
	for (size_t i = 0; i < a->nr; i++) {
		if (a->r[i].st != R_WAIT_ROOM)
			continue;
		if (nw == a->capw) {
			size_t cap = a->capw ? a->capw * 2 : 64;
			struct req **w = realloc(a->waiting, cap * sizeof(*w));
			if (!w) {
				a->admit_due = true; /* try again next pass */
				break;
			}
			a->waiting = w;
			a->capw = cap;
		}
		a->waiting[nw++] = &a->r[i];
	}
	qsort(a->waiting, nw, sizeof(*a->waiting), by_seq);
	for (size_t i = 0; i < nw; i++) {
		struct req *r = a->waiting[i];
		if (reserve(a, r))
			continue;
		if (!r->waited)
			r->waited = true, a->room_waits++;
		if (now - r->t_arrive > ADMIT_STARVE_S)
			break;
	}
	uint32_t pinned = agent_pool_used(&a->pool);
	if (pinned > a->peak_pinned)
		a->peak_pinned = pinned;
}

/* A request of the scheduler now connected (orphans: only for engine events, data_too). */
static struct req *req_lookup(struct agent *a, uint64_t id, bool data_too)
{
	for (size_t i = 0; i < a->nr; i++)
		if (a->r[i].st != R_FREE && a->r[i].id == id && (data_too || !a->r[i].orphan))
			return &a->r[i];
	return NULL;
}
static struct req *req_find(struct agent *a, uint64_t id) { return req_lookup(a, id, false); }

static void req_free(struct req *r)
{
	free(r->ids), free(r->blocks), free(r->fresh), free(r->dst), free(r->gaps), free(r->abort_why), free(r->cancel_text);
	if (r->plan)
		nkv_plan_free(r->plan);
	memset(r, 0, sizeof(*r));
	r->st = R_FREE;
}

static void send_ctl(struct agent *a, struct nkv_msg *m)
{
	if (a->ctl.fd >= 0 && nkv_pconn_send(&a->ctl, m))
		alog(a, "send %s: %s", nkv_msg_type_name(m->type), nkv_last_error());
	nkv_msg_clear(m);
}

/* ---- prefill ------------------------------------------------------------ */

static void xfer_report(struct agent *a, struct req *r, int status, const char *why, double end)
{
	if (r->orphan) {
		agent_pool_unpin(&a->pool, r->blocks, r->n);
		req_free(r);
		return;
	}
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
	agent_pool_unpin(&a->pool, r->blocks, r->n);
	if (status)
		alog(a, "request %llu: transfer failed: %s", (unsigned long long)r->id, why);
	req_free(r);
}

static struct nkv_conn *conn_for(struct agent *a, const char *addr)
{
	for (uint32_t i = 0; i < a->nconns; i++)
		if (!strcmp(a->conns[i].addr, addr))
			return a->conns[i].c;
	if (a->nconns == a->capconns) {
		uint32_t cap = a->capconns ? a->capconns * 2 : 16;
		struct dconn *v = realloc(a->conns, cap * sizeof(*v));
		if (!v) {
			nkv_err(ENOMEM, "out of memory for a connection to %s", addr);
			return NULL;
		}
		a->conns = v;
		a->capconns = cap;
	}
	struct nkv_conn *c = NULL;
	if (nkv_connect(a->eng, addr, &c))
		return NULL;
	/* kept (and reused) until it goes down: one connection per decode */
	snprintf(a->conns[a->nconns].addr, sizeof(a->conns[0].addr), "%s", addr);
	a->conns[a->nconns++].c = c;
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
	struct nkv_conn *c = conn_for(a, r->addr);
	char why[NKV_ERRSTR_MAX];
	if (!c) {
		snprintf(why, sizeof(why), "connect %s: %s", r->addr, nkv_last_error());
		xfer_report(a, r, -ECONNREFUSED, why, now);
		return;
	}
	const struct nkv_remote_region *rr = nkv_conn_remote_count(c) ? nkv_conn_remote(c, 0) : NULL;
	struct nkv_layout dl = a->pool.layout;
	int rc = -ENOENT;
	uint32_t *src = malloc(((size_t)r->ndst + 1) * sizeof(uint32_t));
	if (!src) {
		rc = nkv_err(ENOMEM, "out of memory for %u pages", r->ndst);
	} else if (rr) {
		/* the decode's pool kind may differ (block- vs layer-major); the page size may not */
		dl.num_blocks = (uint32_t)(rr->len / nkv_layout_block_bytes(&dl));
		agent_pool_pages(&a->pool, r->blocks + r->dst_first, r->n - r->dst_first, src);
		rc = nkv_plan_build(&a->pool.layout, &dl, src, r->dst, r->ndst, &r->plan);
	} else {
		nkv_err(ENOENT, "decode %s advertises no region", r->addr);
	}
	free(src);
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
	a->st_pushes++;
	a->st_pages += r->ndst;
	a->st_ranges += nkv_plan_count(r->plan);
	a->st_bytes += r->bytes;
	r->push_t0 = now;
}

static void prefill_task(struct agent *a, struct nkv_msg *m)
{
	struct req *r = req_new(a);
	if (!r)
		return;
	r->id = m->req, r->input = m->input_len, r->output = m->output_len, r->n = m->nids;
	r->peer = m->peer, r->tier = m->tier;
	snprintf(r->addr, sizeof(r->addr), "%s", m->addr);
	r->ids = m->ids;
	m->ids = NULL;
	r->blocks = calloc(r->n + 1, sizeof(uint32_t));
	r->fresh = calloc(r->n + 1, sizeof(bool));
	if (r->n > a->pool.n) {
		/* The prefill pool is the staging area: it must hold a whole request. */
		char why[160];
		snprintf(why, sizeof(why), "request needs %u blocks, prefill pool %s has %u", r->n, a->name, a->pool.n);
		r->n = 0;
		xfer_report(a, r, -ENOSPC, why, nkv_now_s());
	}
}

/* Stage the request's blocks and queue its compute; false while the pool is full. */
static bool prefill_start(struct agent *a, struct req *r)
{
	if (!agent_pool_reserve(&a->pool, r->ids, r->n, r->blocks, &r->first, r->fresh))
		return false;
	r->st = R_WAIT;
	/* The blocks' bytes are written now, not when the emulated compute ends:
	 * a later request with the same prefix reuses these slots at once (as
	 * held), and may finish its compute and push them first. Filled at the
	 * compute's end, such a push read (and summed) slots still being written. */
	int frc = 0;
	for (uint32_t k = 0; k < r->n && !frc; k++)
		if (r->fresh[k])
			frc = agent_pool_fill(&a->pool, r->blocks[k], r->ids[k]);
	if (frc) {
		char why[NKV_ERRSTR_MAX];
		snprintf(why, sizeof(why), "filling the pool: %s", nkv_last_error());
		agent_pool_drop(&a->pool, r->blocks, r->fresh, r->n);
		xfer_report(a, r, frc, why, nkv_now_s());
		return true; /* settled: reported failed */
	}
	uint64_t cached = (uint64_t)r->first * BLOCK_TOKENS;
	uint64_t uncached = r->input > cached ? r->input - cached : 0;
	double now = nkv_now_s();
	r->t0 = a->busy_until > now ? a->busy_until : now;
	r->t1 = r->t0 + nkv_perf_prefill_s(&a->perf, uncached) * a->scale;
	a->busy_until = r->t1;
	return true;
}

static void abort_pushes(struct agent *a, struct req *r, const char *text);

static void prefill_timers(struct agent *a, double now)
{
	admit_waiting(a, now, prefill_start);
	for (size_t i = 0; i < a->nr; i++) {
		struct req *r = &a->r[i];
		if (r->st != R_WAIT)
			continue;
		if (!r->computed && now >= r->t1) {
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
		else if (r->pushing && r->abort_at > 0 && now >= r->abort_at) {
			r->abort_at = INFINITY; /* once: the close fails its push, and PUSH_DONE frees it */
			abort_pushes(a, r, r->cancel_text);
		}
	}
}

static void prefill_blocks(struct agent *a, struct nkv_msg *m)
{
	struct req *r = req_find(a, m->req);
	if (!r || r->have_dst)
		return;
	if (m->first > r->n || (uint64_t)m->nblocks != (uint64_t)(r->n - m->first) * a->pool.ppb) {
		char why[200];
		snprintf(why, sizeof(why),
			 "decode sent %u pages from block %u for a %u-block request; %u pages of %u tokens per block here"
			 " (do both agents have the same --page-tokens?)",
			 m->nblocks, m->first, r->n, a->pool.ppb, a->pool.layout.block_tokens);
		xfer_report(a, r, -EPROTO, why, nkv_now_s());
		return;
	}
	r->dst_first = m->first;
	r->dst = m->blocks;
	r->ndst = m->nblocks;
	m->blocks = NULL;
	r->have_dst = true;
	try_push(a, r);
}

static void probe_report(struct agent *a, uint32_t i, int status, double seconds)
{
	if (a->probes[i].orphan) {
		if (a->probes[i].plan)
			nkv_plan_free(a->probes[i].plan);
		a->probes[i] = a->probes[--a->nprobes];
		return;
	}
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
	struct nkv_conn *c = conn_for(a, m->addr);
	const struct nkv_remote_region *rr = c && nkv_conn_remote_count(c) > 1 ? nkv_conn_remote(c, 1) : NULL;
	uint64_t bb = nkv_layout_block_bytes(&a->probe_l);
	uint32_t k = (uint32_t)((m->bytes + bb - 1) / bb);
	if (k > a->probe_l.num_blocks)
		k = a->probe_l.num_blocks;
	if (k == 0)
		k = 1;
	uint32_t blocks[PROBE_PAGES];
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
	struct req *r = req_lookup(a, ev->req_id, true);
	if (!r || !r->pushing)
		return;
	double now = nkv_now_s();
	if (ev->status) {
		xfer_report(a, r, ev->status, ev->status == -ECANCELED && r->abort_why ? r->abort_why : ev->reason, now);
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
	nkv_revoke(a->eng, r->id); /* none left once its bytes came in */
	if (status) {
		agent_pool_drop(&a->pool, r->blocks, r->fresh, r->n);
		alog(a, "request %llu failed: %s", (unsigned long long)r->id, why);
	}
	if (r->st != R_WAIT_ROOM)
		agent_pool_unpin(&a->pool, r->blocks, r->n);
	req_free(r);
}

static bool decode_reserve(struct agent *a, struct req *r)
{
	if (!agent_pool_reserve(&a->pool, r->ids, r->n, r->blocks, &r->first, r->fresh))
		return false;
	/* Blocks held past the leading run still get pushed: the prefill pushes
	 * ids[first..n) into them, same bytes, keeping the plan one range list. */
	struct nkv_msg m;
	nkv_msg_init(&m, NKV_MSG_BLOCKS);
	m.req = r->id;
	m.first = r->first;
	uint64_t np64 = (uint64_t)(r->n - r->first) * a->pool.ppb;
	if (np64 > NKV_PROTO_MAX_IDS) {
		/* BLOCKS could not carry the page list: fail the request now, not
		 * leave it (and its prefill) waiting for ever. */
		char why[200];
		snprintf(why, sizeof(why), "%llu pages of %u tokens exceed the %u a block list carries (raise --page-tokens)",
			 (unsigned long long)np64, a->pool.layout.block_tokens, NKV_PROTO_MAX_IDS);
		r->st = R_WAIT; /* reserved: tokens_report drops and unpins it */
		tokens_report(a, r, -E2BIG, why);
		return true;
	}
	uint32_t np = (uint32_t)np64;
	uint32_t *pages = malloc(((size_t)np + 1) * sizeof(uint32_t));
	if (!pages) {
		agent_pool_drop(&a->pool, r->blocks, r->fresh, r->n);
		agent_pool_unpin(&a->pool, r->blocks, r->n);
		return false;
	}
	agent_pool_pages(&a->pool, r->blocks + r->first, r->n - r->first, pages);
	/* The pool takes this request's bytes into exactly these pages. */
	int grc = a->grants && np ? nkv_grant_blocks(a->eng, r->id, a->pool.region, pages, np) : 0;
	if (!grc)
		nkv_msg_set_blocks(&m, pages, np);
	free(pages);
	r->st = R_WAIT;
	if (grc) {
		char why[NKV_ERRSTR_MAX];
		snprintf(why, sizeof(why), "granting its pages: %s", nkv_last_error());
		nkv_msg_clear(&m);
		tokens_report(a, r, grc, why);
		return true;
	}
	send_ctl(a, &m);
	return true;
}

static void decode_task(struct agent *a, struct nkv_msg *m)
{
	struct req *r = req_new(a);
	if (!r)
		return;
	r->id = m->req, r->input = m->input_len, r->output = m->output_len, r->n = m->nids;
	r->ids = m->ids;
	m->ids = NULL;
	r->blocks = calloc(r->n + 1, sizeof(uint32_t));
	r->fresh = calloc(r->n + 1, sizeof(bool));
	r->gaps = calloc(r->output + 1, sizeof(double));
	if (r->n > a->pool.n) {
		char why[160];
		snprintf(why, sizeof(why), "needs %u KV blocks, decode pool %s has %u", r->n, a->name, a->pool.n);
		tokens_report(a, r, -ENOSPC, why);
	}
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
	struct req *r = req_lookup(a, ev->req_id, true);
	if (!r || r->st != R_WAIT) {
		alog(a, "data for unknown request %llu (%llu bytes) ignored", (unsigned long long)ev->req_id,
		     (unsigned long long)ev->bytes);
		return;
	}
	if (r->orphan) {
		/* the push its lost scheduler started has ended: the pages are free */
		agent_pool_unpin(&a->pool, r->blocks, r->n);
		req_free(r);
		return;
	}
	if (ev->status) {
		tokens_report(a, r, ev->status, ev->reason);
		return;
	}
	for (uint32_t i = r->first; i < r->n; i++) {
		int ok = a->verify ? agent_pool_check(&a->pool, r->blocks[i], r->ids[i]) : 1;
		if (ok < 0)
			alog(a, "request %llu: reading block %u back from the GPU: %s", (unsigned long long)r->id, i,
			     nkv_last_error());
		if (ok > 0)
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
	admit_waiting(a, now, decode_reserve);
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

/* A push in flight for a cancelled request: the decode may never take it
 * (stopped), so the connection to it is closed; every push on it fails
 * (PUSH_DONE events, each reported with the abort_why set here, not the
 * engine's bare -ECANCELED; a push that fails so for another reason later,
 * e.g. a decode's revoke, keeps its own) and frees its blocks. */
static void abort_pushes(struct agent *a, struct req *r, const char *text)
{
	for (uint32_t i = 0; i < a->nconns; i++) {
		if (strcmp(a->conns[i].addr, r->addr))
			continue;
		struct nkv_conn *c = a->conns[i].c;
		char why[NKV_ERRSTR_MAX];
		snprintf(why, sizeof(why),
			 "push aborted: connection to decode %s closed, a request on it was cancelled (%.300s)", r->addr,
			 text ? text : "");
		for (size_t k = 0; k < a->nr; k++) {
			struct req *o = &a->r[k];
			if (o->st != R_FREE && o->pushing && !strcmp(o->addr, r->addr)) {
				free(o->abort_why);
				o->abort_why = strdup(why); /* NULL: reported with the engine's reason */
			}
		}
		double t0 = nkv_now_s();
		conn_forget(a, c);
		nkv_conn_close(c);
		alog(a, "%s; closed in %.1f ms", why, (nkv_now_s() - t0) * 1e3);
		return;
	}
}

/* The scheduler settled the request elsewhere (failed, timed out): drop it here. */
static void cancel(struct agent *a, const struct nkv_msg *m)
{
	struct req *r = req_find(a, m->req);
	if (!r)
		return;
	if (r->pushing && r->hold_until == 0) {
		/* A live decode revokes the request's grant on its own CANCEL, and the
		 * push ends -ECANCELED; one that does not answer (stopped) leaves it on
		 * the wire: close the connection after CANCEL_GRACE_S (its PUSH_DONE
		 * then frees it, xfer_report), failing the others on it too. */
		if (r->abort_at == 0) {
			r->abort_at = nkv_now_s() + CANCEL_GRACE_S;
			r->cancel_text = m->text ? strdup(m->text) : NULL;
		}
		return;
	}
	if (a->role == NKV_ROLE_DECODE)
		nkv_revoke(a->eng, r->id);
	if (a->role == NKV_ROLE_DECODE && r->st == R_WAIT && !r->got_recv) {
		/* Its pages were handed to the prefill: a range already past the
		 * receiver's grant check (TCP), or a WRITE on the wire (verbs), may
		 * still land. Keep them pinned a while as an orphan (never reported,
		 * freed by orphan_timers), not given to the next request. */
		agent_pool_drop(&a->pool, r->blocks, r->fresh, r->n);
		r->orphan = true;
		r->orphan_until = nkv_now_s() + CANCEL_QUARANTINE_S;
		return;
	}
	if (r->st != R_WAIT_ROOM) {
		if (a->role == NKV_ROLE_DECODE && !r->got_recv)
			agent_pool_drop(&a->pool, r->blocks, r->fresh, r->n);
		agent_pool_unpin(&a->pool, r->blocks, r->n);
	}
	req_free(r);
}

/* Load, pool use and prefix ids: ids[0..nadd) added, the rest evicted. */
static void heartbeat_send(struct agent *a, const uint64_t *ids, uint32_t n, uint32_t nadd)
{
	struct nkv_msg m;
	nkv_msg_init(&m, NKV_MSG_HEARTBEAT);
	uint32_t used = agent_pool_used(&a->pool);
	if (used > a->peak_pinned)
		a->peak_pinned = used;
	for (size_t i = 0; i < a->nr; i++) {
		struct req *r = &a->r[i];
		if (r->st == R_FREE || r->orphan)
			continue;
		if (r->st == R_RUNNING) {
			m.running++;
			m.running_tokens += r->input + r->produced;
		} else {
			m.queued++;
			m.queued_tokens += a->role == NKV_ROLE_DECODE ? r->input + r->output : r->input;
		}
	}
	m.kv_used = agent_pool_used(&a->pool);
	m.kv_total = a->pool.n;
	if (n && !nkv_msg_set_ids(&m, ids, n))
		m.nadd = nadd;
	send_ctl(a, &m);
}

/* The prefix blocks added and evicted since the last heartbeat. */
static void heartbeat(struct agent *a)
{
	uint32_t n = a->pool.nadded + a->pool.nevicted;
	uint64_t *ids = malloc((n + 1) * sizeof(uint64_t));
	if (!ids)
		return;
	memcpy(ids, a->pool.added, a->pool.nadded * sizeof(uint64_t));
	memcpy(ids + a->pool.nadded, a->pool.evicted, a->pool.nevicted * sizeof(uint64_t));
	heartbeat_send(a, ids, n, a->pool.nadded);
	free(ids);
	a->pool.nadded = a->pool.nevicted = 0;
}

/* Just (re)joined: every prefix block the pool holds, as added (in as many
 * heartbeats as the id limit needs), so a restarted scheduler, which knows
 * nothing of this pool, rebuilds its view of it. Pending deltas are moot. */
static void heartbeat_full(struct agent *a)
{
	uint64_t *ids = malloc(((size_t)a->pool.n + 1) * sizeof(uint64_t));
	uint32_t n = 0;
	if (!ids) {
		alog(a, "out of memory for the prefix set: the scheduler learns it from later heartbeats");
		return;
	}
	for (uint32_t b = 0; b < a->pool.n; b++)
		if (a->pool.valid[b])
			ids[n++] = a->pool.hash[b];
	a->pool.nadded = a->pool.nevicted = 0;
	uint32_t sent = 0;
	do {
		uint32_t k = n - sent > NKV_PROTO_MAX_IDS ? NKV_PROTO_MAX_IDS : n - sent;
		heartbeat_send(a, ids + sent, k, k);
		sent += k;
	} while (sent < n);
	free(ids);
	alog(a, "told the scheduler the %u prefix blocks this pool holds (%u of %u slots pinned)", n,
	     agent_pool_used(&a->pool), a->pool.n);
}

/* The scheduler is gone: what it asked for will never be reported, and a
 * restarted one knows nothing of it. Drop every request (pins, staged or
 * reserved blocks whose bytes never came, plans); the pool's prefix cache
 * stays. A push in flight completes or fails on its own, so a prefill keeps
 * a pushing request (its plan is in use) and a decode keeps the pages a
 * push may still be writing (until the bytes land or ORPHAN_GRACE_S) as
 * orphans: never reported, never matched to the new scheduler's messages. */
#define ORPHAN_GRACE_S 10.0
static void ctl_lost(struct agent *a, const char *why)
{
	double now = nkv_now_s();
	uint32_t dropped = 0, kept = 0;
	nkv_pconn_close(&a->ctl);
	for (size_t i = 0; i < a->nr; i++) {
		struct req *r = &a->r[i];
		if (r->st == R_FREE || r->orphan)
			continue;
		bool decode = a->role == NKV_ROLE_DECODE;
		if (decode && r->st == R_WAIT && !r->got_recv) {
			agent_pool_drop(&a->pool, r->blocks, r->fresh, r->n);
			r->orphan = true;
			r->orphan_until = now + ORPHAN_GRACE_S;
			kept++;
			continue;
		}
		if (!decode && r->pushing) {
			r->orphan = true;
			kept++;
			continue;
		}
		if (r->st != R_WAIT_ROOM) {
			/* blocks not yet filled (prefill) or received (decode) hold nothing */
			if (decode ? !r->got_recv : !r->computed)
				agent_pool_drop(&a->pool, r->blocks, r->fresh, r->n);
			agent_pool_unpin(&a->pool, r->blocks, r->n);
		}
		req_free(r);
		dropped++;
	}
	for (uint32_t i = 0; i < a->nprobes; i++)
		a->probes[i].orphan = true;
	a->iter_on = false;
	a->busy_until = 0;
	agent_ctl_lost(&a->join, why, now);
	alog(a, "dropped %u requests of the lost scheduler, %u kept until their pushes end; %u of %u pool slots pinned",
	     dropped, kept, agent_pool_used(&a->pool), a->pool.n);
}

/* Decode orphans whose push never came. */
static void orphan_timers(struct agent *a, double now)
{
	for (size_t i = 0; i < a->nr; i++) {
		struct req *r = &a->r[i];
		if (r->st != R_FREE && r->orphan && r->orphan_until > 0 && now >= r->orphan_until) {
			nkv_revoke(a->eng, r->id); /* its push is given up: no late bytes into these pages */
			agent_pool_unpin(&a->pool, r->blocks, r->n);
			req_free(r);
		}
	}
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: netkv agent --role prefill|decode --scheduler ADDR --name INSTANCE [options]\n"
		"A testbed worker: a paged KV pool, the transfer engine, emulated compute.\n"
		"  --token T          shared token (default $NKV_TOKEN), also the data plane's secret\n"
		"                     (TCP: peers prove it by HMAC challenge-response; verbs: not yet)\n"
		"  --token-file FILE  the token from FILE's first line (keeps it off the command line)\n"
		"  --reconnect-for S  keep trying to reach the scheduler for S seconds, at start and after\n"
		"                     losing it (backoff 0.1 s doubling to 2 s, with jitter; default 300;\n"
		"                     0: exit when the connection is lost); the pool's prefix cache is kept\n"
		"                     and told to the scheduler on joining. A refusal that would repeat (bad\n"
		"                     token, unknown instance, KV shape) exits at once, as does a taken\n"
		"                     instance name at start\n"
		"  --data ADDR        decode: data listen address (default 127.0.0.1:0); on a wildcard\n"
		"                     (0.0.0.0:P) it advertises the address of the interface that routes\n"
		"                     to the scheduler\n"
		"  --advertise IP:PORT decode: the data address to tell the scheduler instead (PORT 0:\n"
		"                     the one bound)\n"
		"  --src IP           prefill: local address pushes leave from (a host's NIC; default: route's choice)\n"
		"  --backend B        tcp (default) | verbs: the transfer backend, for KV pushes and probes\n"
		"  --device NAME      verbs: RDMA device (default: the first with an ACTIVE port)\n"
		"  --gid-index N      verbs: GID index (default: the RoCE v2 IPv4 GID of the routed netdev)\n"
		"  --streams N, --qps N  TCP streams / verbs QPs per connection (1..%d, default 1)\n"
		"  --completion MODE  verbs: poll (adaptive busy-poll, default) | event (completion channel)\n"
		"  --mem KIND         host (default) | cuda: the KV pool (and the probe region) in GPU memory,\n"
		"                     reached by GPUDirect (dma-buf, then peermem) or staging, as the engine\n"
		"                     decides (logged at start)\n"
		"  --gpu N            --mem cuda: CUDA device (default: the GPU hwloc pairs with --device, else 0)\n"
		"  --model M          KV shape: a preset (%s) or a Hugging Face config.json (default llama3-8b)\n"
		"  --perf M           perf model for compute times: a preset or a config.json (default llama3-8b)\n"
		"  --gpu-model G      GPU preset of the perf model: a100 h100 h200 b200 (default h100)\n"
		"  --blocks N         pool size in prefix blocks of 512 tokens (default 64)\n"
		"  --page-tokens N    tokens per pool page, a divisor of 512 (default 16, like vLLM); a\n"
		"                     512-token block takes 512/N pages from a free list\n"
		"  --layout L         layer (vLLM's layer-major, default) | block (block-major)\n"
		"  --time-scale X     multiply emulated compute times by X (default 1)\n"
		"  --tier-gbps A,B,C,D prefill: pace transfers per tier (Gb/s, 0 = unpaced; default off)\n"
		"  --verify           pattern check of every received block, and the engine's block sums\n"
		"                     where the backend carries them (TCP)\n",
		NKV_CLI_MAX_STREAMS, nkv_model_preset_names());
}

static int parse_tiers(const char *s, double out[4])
{
	char *copy = strdup(s), *save = NULL;
	int n = 0;
	if (!copy)
		return nkv_err(ENOMEM, "out of memory");
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

/* Everything an agent holds; safe on a partly set-up agent. */
static void agent_free(struct agent *a)
{
	for (size_t i = 0; i < a->nr; i++)
		if (a->r[i].st != R_FREE)
			req_free(&a->r[i]);
	free(a->r);
	free(a->waiting);
	for (uint32_t i = 0; i < a->nprobes; i++)
		if (a->probes[i].plan)
			nkv_plan_free(a->probes[i].plan);
	for (uint32_t i = 0; i < a->nconns; i++)
		nkv_conn_close(a->conns[i].c);
	free(a->conns);
	if (a->eng)
		nkv_engine_destroy(a->eng);
	if (a->ctl.fd > 0)
		nkv_pconn_close(&a->ctl);
	if (a->pool.dev)
		free(a->pool.mem); /* the host mirror; a host pool's memory is the engine's */
	agent_pool_free(&a->pool);
	free(a);
}

enum { O_BACKEND = 256, O_DEVICE, O_GID, O_STREAMS, O_COMPLETION, O_MEM, O_GPU, O_PAGE_TOKENS, O_LAYOUT,
       O_ADVERTISE, O_TOKEN_FILE, O_RECONNECT };

static void join_log(void *arg, const char *msg) { alog(arg, "%s", msg); }

int nkv_cmd_agent(int argc, char **argv)
{
	const char *role_s = NULL, *sched = NULL, *token = getenv("NKV_TOKEN"), *name = NULL, *token_file = NULL;
	static char token_buf[NKV_PROTO_MAX_TOKEN + 1];
	const char *data = "127.0.0.1:0", *model = "llama3-8b", *perf_model = "llama3-8b", *src = NULL, *gpu_model = NULL;
	const char *advertise = NULL, *device = NULL, *completion = NULL, *mem_s = "host";
	uint32_t blocks = 64, page_tokens = 16, streams = 1, gid = UINT32_MAX, gpu = UINT32_MAX;
	double reconnect_s = 300;
	int verbs = 0;
	enum nkv_layout_kind kind = NKV_LAYOUT_LAYER_MAJOR;
	struct agent *a = calloc(1, sizeof(*a));
	if (!a) {
		fprintf(stderr, "netkv agent: out of memory\n");
		return 1;
	}
	a->scale = 1;
	a->ctl.fd = -1;
	static const struct option opts[] = {
		{ "role", 1, 0, 'r' }, { "scheduler", 1, 0, 's' }, { "token", 1, 0, 't' }, { "name", 1, 0, 'n' },
		{ "data", 1, 0, 'd' }, { "model", 1, 0, 'm' }, { "perf", 1, 0, 'p' }, { "blocks", 1, 0, 'b' },
		{ "time-scale", 1, 0, 'S' }, { "tier-gbps", 1, 0, 'T' }, { "verify", 0, 0, 'v' },
		{ "src", 1, 0, 'i' }, { "gpu-model", 1, 0, 'g' }, { "help", 0, 0, 'h' }, { "backend", 1, 0, O_BACKEND },
		{ "device", 1, 0, O_DEVICE }, { "gid-index", 1, 0, O_GID }, { "streams", 1, 0, O_STREAMS },
		{ "qps", 1, 0, O_STREAMS }, { "completion", 1, 0, O_COMPLETION }, { "mem", 1, 0, O_MEM },
		{ "gpu", 1, 0, O_GPU }, { "page-tokens", 1, 0, O_PAGE_TOKENS }, { "layout", 1, 0, O_LAYOUT },
		{ "advertise", 1, 0, O_ADVERTISE }, { "token-file", 1, 0, O_TOKEN_FILE },
		{ "reconnect-for", 1, 0, O_RECONNECT }, { 0, 0, 0, 0 } };
	int c, bad = 0;
	optind = 1;
	while (!bad && (c = nkv_cli_getopt(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'r': role_s = optarg; break;
		case 's': sched = optarg; break;
		case 't': token = optarg; break;
		case 'n': name = optarg; break;
		case 'd': data = optarg; break;
		case 'i': src = optarg; break;
		case 'm': model = optarg; break;
		case 'p': perf_model = optarg; break;
		case 'g': gpu_model = optarg; break;
		case 'v': a->verify = true; break;
		case O_DEVICE: device = optarg; break;
		case O_ADVERTISE: advertise = optarg; break;
		case O_TOKEN_FILE: token_file = optarg; break;
		case 'b': bad = nkv_cli_u32("agent", "--blocks", optarg, 1, 1u << 20, &blocks); break;
		case O_RECONNECT: bad = nkv_cli_double("agent", "--reconnect-for", optarg, 0, 86400 * 365, &reconnect_s); break;
		case 'S': bad = nkv_cli_time_scale("agent", optarg, &a->scale); break;
		case O_BACKEND: bad = nkv_cli_backend("agent", optarg, &verbs); break;
		case O_STREAMS: bad = nkv_cli_streams("agent", optarg, &streams); break;
		case O_GID: bad = nkv_cli_u32("agent", "--gid-index", optarg, 0, 65535, &gid); break;
		case O_GPU: bad = nkv_cli_u32("agent", "--gpu", optarg, 0, 1023, &gpu); break;
		case O_PAGE_TOKENS:
			bad = nkv_cli_u32("agent", "--page-tokens", optarg, 1, BLOCK_TOKENS, &page_tokens);
			if (!bad && BLOCK_TOKENS % page_tokens) {
				fprintf(stderr, "netkv agent: --page-tokens '%s': expected a divisor of %u (1, 2, 4, ... 512)\n",
					optarg, BLOCK_TOKENS);
				bad = -EINVAL;
			}
			break;
		case O_LAYOUT:
			if (nkv_layout_parse_kind(optarg, &kind)) {
				fprintf(stderr, "netkv agent: --layout '%s': expected layer or block\n", optarg);
				bad = -EINVAL;
			}
			break;
		case O_COMPLETION:
			/* the one spelling `netkv bench transfer` takes; the verbs backend reads it at engine creation */
			if (strcmp(optarg, "poll") && strcmp(optarg, "event")) {
				fprintf(stderr, "netkv agent: --completion '%s': expected poll or event\n", optarg);
				bad = -EINVAL;
			}
			completion = optarg;
			break;
		case O_MEM:
			if (strcmp(optarg, "host") && strcmp(optarg, "cuda")) {
				fprintf(stderr, "netkv agent: --mem '%s': expected host or cuda\n", optarg);
				bad = -EINVAL;
			}
			mem_s = optarg;
			break;
		case 'T':
			if ((bad = parse_tiers(optarg, a->tier_Bps)))
				fprintf(stderr, "netkv agent: %s\n", nkv_last_error());
			break;
		case 'h': usage(stdout); agent_free(a); return 0;
		default: agent_free(a); return 2; /* nkv_cli_getopt said what is wrong */
		}
	}
	if (!bad && token_file) {
		if (nkv_secret_load(token_file, token_buf, sizeof(token_buf)) < 0) {
			fprintf(stderr, "netkv agent: --token-file: %s\n", nkv_last_error());
			bad = -EINVAL;
		}
		token = token_buf;
	}
	if (bad) {
		agent_free(a);
		return 2;
	}
	bool cuda = !strcmp(mem_s, "cuda");
	enum nkv_role role;
	const char *why = NULL;
	if (!role_s || nkv_role_parse(role_s, &role) || (role != NKV_ROLE_PREFILL && role != NKV_ROLE_DECODE) ||
	    !sched || !name)
		why = "--role prefill|decode, --scheduler and --name are required";
	else if (optind < argc)
		why = "unexpected argument";
	else if (advertise && role != NKV_ROLE_DECODE)
		why = "--advertise is for decode agents (a prefill's pushes leave from --src)";
	else if (gpu != UINT32_MAX && !cuda)
		why = "--gpu needs --mem cuda";
	else if (!verbs && (device || gid != UINT32_MAX || completion))
		why = "--device, --gid-index and --completion need --backend verbs";
	if (why) {
		fprintf(stderr, "netkv agent: %s%s%s\n", why, optind < argc ? " " : "", optind < argc ? argv[optind] : "");
		usage(stderr);
		agent_free(a);
		return 2;
	}
	char adv_host[48];
	uint16_t adv_port = 0;
	if (advertise && nkv_parse_hostport(advertise, adv_host, sizeof(adv_host), &adv_port)) {
		fprintf(stderr, "netkv agent: --advertise '%s': expected IP:PORT (%s)\n", advertise, nkv_last_error());
		agent_free(a);
		return 2;
	}
	if (completion)
		setenv("NKV_VERBS_COMPLETION", completion, 1);
	a->role = role;
	snprintf(a->name, sizeof(a->name), "%s", name);
	struct nkv_model km;
	int rc = nkv_model_lookup(model, &km);
	if (!rc)
		rc = nkv_perf_preset(perf_model, gpu_model, &a->perf);
	struct agent_pool *p = &a->pool;
	if (!rc)
		rc = agent_pool_init(p, &km, blocks, page_tokens, kind);
	if (rc) {
		fprintf(stderr, "netkv agent: %s\n", nkv_last_error());
		agent_free(a);
		return 2;
	}
	a->max_batch = a->perf.max_batch ? a->perf.max_batch : 64;
	struct nkv_engine_opts eo;
	void *mem = NULL;
	char addr[NKV_PROTO_MAX_ADDR + 1] = "-", gpu_why[160] = "", mem_desc[320] = "host";
	enum nkv_mem_kind mk = cuda ? NKV_MEM_CUDA : NKV_MEM_HOST;

	nkv_engine_opts_init(&eo);
	eo.backend = verbs ? NKV_BACKEND_VERBS : NKV_BACKEND_TCP;
	eo.device = device;
	eo.gid_index = gid == UINT32_MAX ? -1 : (int)gid;
	eo.streams = streams;
	/* --verify: the engine's per-block sums where the backend carries them
	 * (TCP; verbs does not yet and refuses such pushes), and always the
	 * pattern check of every received block. */
	eo.verify = a->verify && !verbs;
	eo.src_addr = src;
	eo.handshake_ms = verbs ? 0 : HANDSHAKE_MS; /* verbs: the default 10 s (a slow rxe VM needs it) */
	/* The data plane's secret is the shared token (TCP and verbs). */
	eo.secret = token;
	if (cuda)
		eo.gpu = agent_pick_gpu(gpu == UINT32_MAX ? -1 : (int)gpu, device, gpu_why, sizeof(gpu_why));
	p->gpu = eo.gpu;
	uint64_t pool_bytes = nkv_layout_pool_bytes(&p->layout);
	rc = nkv_engine_create(&eo, &a->eng);
	if (!rc) {
		rc = nkv_region_alloc(a->eng, mk, pool_bytes, &p->layout, &p->region, &mem);
		if (rc && cuda)
			rc = nkv_err_wrap(-rc, "KV pool in GPU memory (--mem cuda, GPU %d: %s)", eo.gpu, gpu_why);
	}
	if (!rc && cuda) {
		/* the pattern is written on the host and copied page by page (agent_pool.h) */
		p->dev = mem;
		p->mem = calloc(1, pool_bytes);
		if (!p->mem)
			rc = nkv_err(ENOMEM, "out of memory for the host mirror of the GPU pool");
	} else if (!rc) {
		p->mem = mem;
	}
	/* A decode's pool takes pushes only for requests it granted pages to
	 * (decode_reserve); verbs peers write through the NIC, which cannot be
	 * asked. The probe region stays open to any authenticated peer: probe
	 * bytes land there and are never read. */
	a->grants = !rc && role == NKV_ROLE_DECODE && !verbs;
	if (a->grants)
		rc = nkv_region_set_access(a->eng, p->region, NKV_REGION_GRANTED);
	if (!rc)
		nkv_region_describe(a->eng, p->region, mem_desc, sizeof(mem_desc));
	a->probe_l = p->layout;
	/* Probes: about 8 MiB of whole pages in a region of their own, in the
	 * same memory as the pool and over the same engine, so they measure the
	 * path the KV takes. */
	uint64_t pbb = nkv_layout_block_bytes(&p->layout);
	a->probe_l.num_blocks = pbb ? (uint32_t)((8u << 20) / pbb) : 1;
	if (a->probe_l.num_blocks < 1)
		a->probe_l.num_blocks = 1;
	if (a->probe_l.num_blocks > PROBE_PAGES)
		a->probe_l.num_blocks = PROBE_PAGES;
	if (!rc)
		rc = nkv_region_alloc(a->eng, mk, nkv_layout_pool_bytes(&a->probe_l), &a->probe_l, &a->probe_region,
				      &mem);
	if (!rc && role == NKV_ROLE_DECODE) {
		uint16_t port;
		char host[48];
		rc = nkv_parse_hostport(data, host, sizeof(host), &port);
		if (!rc)
			rc = nkv_listen(a->eng, data, &port);
		if (!rc && advertise)
			snprintf(addr, sizeof(addr), "%s:%u", adv_host, adv_port ? adv_port : port);
		else if (!rc)
			rc = agent_advertise_addr(host, port, sched, addr, sizeof(addr));
	}
	if (rc) {
		fprintf(stderr, "netkv agent %s: %s\n", name, nkv_last_error());
		agent_free(a);
		return 1;
	}
	struct agent_ctl *jc = &a->join;
	jc->sched = sched;
	jc->token = token;
	jc->role = (uint8_t)role;
	snprintf(jc->name, sizeof(jc->name), "%s", name);
	snprintf(jc->addr, sizeof(jc->addr), "%s", addr);
	jc->kv_blocks = blocks;
	jc->kv_bpt = nkv_model_bytes_per_token(&km);
	jc->give_up_s = reconnect_s;
	jc->log = join_log;
	jc->log_arg = a;
	/* what `scheduler status` shows for this agent: the path its KV takes */
	snprintf(jc->path, sizeof(jc->path), "%s, streams %u; pool %s; %u-token pages, %s-major",
		 nkv_engine_describe(a->eng), streams, mem_desc, page_tokens, nkv_layout_kind_name(kind));
	nkv_str_printable(jc->path);
	/* No SA_RESTART: a SIGTERM interrupts a connect or a wait at once. */
	struct sigaction sa = { .sa_handler = on_signal };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	agent_ctl_init(jc, nkv_now_s());
	char pb[32], gb[32];
	alog(a, "up: %s, streams %u, pool %u blocks x %s in %u-token pages (%s, %s-major), data %s, scale %g%s",
	     nkv_engine_describe(a->eng), streams, blocks,
	     nkv_fmt_bytes(nkv_layout_block_bytes(&p->layout) * p->ppb, pb, sizeof(pb)), page_tokens,
	     nkv_fmt_bytes(nkv_layout_block_bytes(&p->layout), gb, sizeof(gb)), nkv_layout_kind_name(kind), addr,
	     a->scale, !a->verify ? "" : eo.verify ? ", verify (block sums + pattern)" : ", verify (pattern)");
	alog(a, "pool memory: %s%s%s", mem_desc, cuda ? "; GPU chosen: " : "", cuda ? gpu_why : "");
	double next_hb = 0;
	int status = 0;
	struct nkv_msg m;
	/* Just joined: what came behind REGISTER_OK (a task for a request that
	 * waited for this agent) is already in the buffer, and no POLLIN will
	 * say so: read the buffer once without waiting. */
	bool joined = false;
	while (!g_stop) {
		double now = nkv_now_s();
		if (a->ctl.fd < 0) {
			int jrc = agent_ctl_join(jc, &a->ctl, now, &g_stop);
			joined = jrc == 0;
			if (jrc == 0) {
				heartbeat_full(a);
				next_hb = nkv_now_s() + 0.05;
			} else if (jrc != -EAGAIN) {
				if (!g_stop) {
					alog(a, "giving up: %s", nkv_last_error());
					status = 1;
				}
				break;
			}
			now = nkv_now_s();
		}
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
		double dt = joined ? 0 : wake - now;
		struct timespec ts = { 0, dt > 0 ? (long)(dt * 1e9) : 0 };
		/* a negative fd (no scheduler now) is ignored by ppoll */
		struct pollfd pf = { .fd = a->ctl.fd, .events = (short)(POLLIN | (nkv_pconn_pending(&a->ctl) ? POLLOUT : 0)) };
		if (ppoll(&pf, 1, &ts, NULL) < 0 && errno != EINTR)
			break;
		if (pf.revents & POLLOUT)
			nkv_pconn_flush(&a->ctl);
		if ((pf.revents & (POLLIN | POLLHUP | POLLERR)) || joined) {
			joined = false;
			int rrc = nkv_pconn_read(&a->ctl);
			char lost[NKV_ERRSTR_MAX], drc_bad[NKV_ERRSTR_MAX + 32] = "";
			snprintf(lost, sizeof(lost), "%s", rrc ? nkv_last_error() : "");
			for (;;) {
				int drc = nkv_pconn_next(&a->ctl, &m);
				if (drc < 0) {
					snprintf(drc_bad, sizeof(drc_bad), "bad frame from the scheduler: %s", nkv_last_error());
					alog(a, "%s", drc_bad);
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
				else if (m.type == NKV_MSG_ERROR) {
					alog(a, "scheduler error %u: %s", m.code, m.text ? m.text : "");
					snprintf(lost, sizeof(lost), "scheduler said: %s", m.text ? m.text : "");
				}
				else
					alog(a, "unexpected %s from the scheduler (ignored)", nkv_msg_type_name(m.type));
				nkv_msg_clear(&m);
			}
			if (rrc) {
				if (drc_bad[0])
					snprintf(lost, sizeof(lost), "%s", drc_bad);
				if (jc->give_up_s <= 0) {
					alog(a, "scheduler connection lost: %s (--reconnect-for 0: exiting)", lost);
					status = 1;
					break;
				}
				ctl_lost(a, lost);
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
		orphan_timers(a, now);
		if (a->ctl.fd >= 0 && now >= next_hb) {
			heartbeat(a);
			next_hb = now + 0.05;
		}
	}
	alog(a, "pool: %u blocks, peak %u pinned, %llu tasks waited for room, %u pinned at exit", a->pool.n,
	     a->peak_pinned, (unsigned long long)a->room_waits, agent_pool_used(&a->pool));
	if (role == NKV_ROLE_PREFILL && a->st_pushes)
		alog(a, "pushed %llu requests: %llu pages in %llu ranges, %.0f B per range",
		     (unsigned long long)a->st_pushes, (unsigned long long)a->st_pages, (unsigned long long)a->st_ranges,
		     (double)a->st_bytes / (double)a->st_ranges);
	agent_free(a);
	return status;
}
