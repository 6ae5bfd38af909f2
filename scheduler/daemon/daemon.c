/*
 * `netkv scheduler`: the central scheduler daemon of the testbed.
 *
 * One epoll loop over: the control listener, every peer (agents, replay
 * clients, status queries; peers.c: up to --max-peers, a REGISTER deadline
 * and a small input buffer before it) and an optional Prometheus endpoint
 * (metrics_http.c, non-blocking, so a silent scraper never holds the loop).
 * Requests in flight live in an id table (rqtab.c) and a pending or running
 * list; a request is freed when it ends, so memory and per-pass work follow
 * what is in flight, not history.
 * Decisions are nkv_sched_decide() from the policy library, so the live
 * testbed and the simulator choose with the same code; agent telemetry
 * (heartbeats, transfer reports) feeds the library's state and oracle.
 *
 * A request's life (the reservation protocol): SUBMIT -> decide (p, d) ->
 * DECODE_TASK to d -> d reserves room and answers BLOCKS -> PREFILL_TASK to
 * p, then that BLOCKS (grant(): the prefill hears of a request only once
 * its destination has room, so its pool never waits on a decode's and full
 * pools cannot deadlock) -> p computes, pushes the blocks d lacks and
 * reports XFER_DONE, forwarded to d -> d decodes and reports TOKENS -> one
 * RECORD to the client. A peer that is refused (bad frame, bad token,
 * unknown or taken instance, no REGISTER in time, too many peers) is told
 * why in an ERROR frame before the close, and the reason is logged.
 *
 * Liveness: an agent silent for --agent-timeout is dropped with an ERROR
 * saying so; a lost agent's requests not yet granted are decided again
 * (rerouted), the others fail with a reason naming it. Every request ends
 * by submit + --request-timeout, failed with the stage it was stuck in
 * (the arrival list is in deadline order: only its head is looked at), and
 * a failure sends CANCEL to the agents so they release its pins. So every
 * request ends with a record.
 */
#include <errno.h>
#include <stddef.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <jansson.h>

#include "daemon_cli.h"
#include "netkv_proto.h"
#include "netkv_sched.h"
#include "netkv_topo.h"
#include "nkv_cli.h"
#include "nkv_util.h"
#include "prom.h"
#include "metrics_http.h"
#include "peers.h"
#include "rqtab.h"

#ifndef NKV_VERSION
#define NKV_VERSION "unknown"
#endif

enum rq_state { RQ_PENDING, RQ_RUNNING };

/* A request in flight: in the id table and on the list of its state (pending
 * in arrival order, or running); freed when it ends (finish_rq). */
struct rq {
	struct nkv__rqnode node; /* node.id: the id in task messages */
	struct rq *prev, *next;
	struct rq *aprev, *anext; /* every request in flight, in arrival (so deadline) order */
	double deadline;     /* submit + --request-timeout */
	int client;          /* peer index, -1 when the client left */
	uint64_t client_req;
	struct nkv_request r;
	uint64_t *ids;
	struct nkv_decision dec;
	int pp, dp;          /* peer indexes of the prefill and decode agents */
	enum rq_state state;
	bool granted;        /* the decode sent BLOCKS: PREFILL_TASK went to the prefill */
	bool xfer_done, admitted;
	double t[NKV_REC_T];
	uint64_t bytes;
	uint32_t ntokens, blocks_ok, blocks_bad;
};

struct daemon {
	struct nkv_topo *topo;
	struct nkv_sched *s;
	const char *token;
	struct nkv__peers pt;
	int lfd, mfd, epfd;
	struct nkv__mhttp mh;
	int *doomed, ndoomed;                  /* peers to drop after this pass (output over the cap) */
	uint32_t next_agent_id;
	uint32_t nprefill, ndecode;
	uint32_t *prefill_inst, *decode_inst;
	int *prefill_peer, *decode_peer; /* list index -> peer index or -1 */
	struct nkv__rqtab rqtab;               /* in flight, by id */
	struct rqlist { struct rq *head, *tail; size_t n; } pending, running;
	struct rq *ahead, *atail;              /* all in flight, oldest (first deadline) first */
	double agent_timeout, request_timeout; /* --agent-timeout, --request-timeout */
	size_t max_pending;                    /* --max-pending: requests in flight before SUBMITs are refused */
	double next_liveness;                  /* when agents' silence is checked next */
	uint64_t kv_bpt;
	/* counters */
	uint64_t decisions, finished, failed, rerouted, bad_peers, xfer_bytes;
	uint64_t requests_timed_out, agents_timed_out, requests_busy;
	double decide_s_sum, decide_s_max;
	struct nkv_prom_hist decide_h, ttft_h; /* decision time; TTFT of finished requests */
	uint64_t inflight_tier[NKV_TIERS];
	/* probes in flight: id -> path */
	struct { uint64_t id; uint32_t p, d; double t; } probes[64];
	uint32_t nprobes;
	uint64_t next_probe, probes_sent, probes_done;
	double next_plan;
	bool probe;
};

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { (void)sig; g_stop = 1; }

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "scheduler: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static const char *peer_label(const struct nkv__peer *p, char *buf, size_t n)
{
	if (p->registered)
		snprintf(buf, n, "%s %s (agent %u)", nkv_role_name(p->role), p->name[0] ? p->name : "-", p->id);
	else
		snprintf(buf, n, "unregistered peer fd %d", p->c.fd);
	return buf;
}

static void send_msg(struct daemon *d, int pi, const struct nkv_msg *m)
{
	struct nkv__peer *p = &d->pt.p[pi];
	if (!p->used || p->c.fd < 0)
		return;
	if (p->c.out.len > NKV__OUT_MAX) {
		/* Not reading: stop queueing, drop it after this pass. */
		if (!p->doomed) {
			p->doomed = true;
			d->doomed[d->ndoomed++] = pi;
		}
		return;
	}
	int rc = nkv_pconn_send(&p->c, m);
	nkv__peers_arm(&d->pt, pi);
	if (rc) {
		char lb[96];
		logf_("send %s to %s: %s", nkv_msg_type_name(m->type), peer_label(p, lb, sizeof(lb)),
		      nkv_last_error());
	}
}

/* ---- requests ----------------------------------------------------------- */

static void rql_push(struct rqlist *l, struct rq *q)
{
	q->next = NULL;
	q->prev = l->tail;
	if (l->tail)
		l->tail->next = q;
	else
		l->head = q;
	l->tail = q;
	l->n++;
}

static void rql_unlink(struct rqlist *l, struct rq *q)
{
	if (q->prev)
		q->prev->next = q->next;
	else
		l->head = q->next;
	if (q->next)
		q->next->prev = q->prev;
	else
		l->tail = q->prev;
	q->prev = q->next = NULL;
	l->n--;
}

static struct rqlist *rq_list(struct daemon *d, struct rq *q)
{
	return q->state == RQ_PENDING ? &d->pending : &d->running;
}

/* The arrival list: deadlines are submit + one timeout, so its head expires first. */
static void age_push(struct daemon *d, struct rq *q)
{
	q->anext = NULL;
	q->aprev = d->atail;
	if (d->atail)
		d->atail->anext = q;
	else
		d->ahead = q;
	d->atail = q;
}

static void age_unlink(struct daemon *d, struct rq *q)
{
	if (q->aprev)
		q->aprev->anext = q->anext;
	else
		d->ahead = q->anext;
	if (q->anext)
		q->anext->aprev = q->aprev;
	else
		d->atail = q->aprev;
}

/* A new id for q in the table: at SUBMIT, and when it is rerouted (so a late
 * message about its first assignment names an id no longer in flight). */
static int rq_take_id(struct daemon *d, struct rq *q)
{
	int rc = nkv__rqtab_new_id(&d->rqtab, &q->node.id);
	if (rc)
		return rc;
	if (nkv__rqtab_add(&d->rqtab, &q->node))
		return nkv_err(ENOMEM, "out of memory for the request table");
	q->r.id = q->node.id;
	return 0;
}

/* A request that ended leaves the table and the lists and is freed. */
static void retire_rq(struct daemon *d, struct rq *q)
{
	nkv__rqtab_del(&d->rqtab, &q->node);
	rql_unlink(rq_list(d, q), q);
	age_unlink(d, q);
	free(q->ids);
	free(q);
}

/* The transfer a running request no longer makes leaves the oracle and the counters. */
static void release_transfer(struct daemon *d, struct rq *q)
{
	if (q->xfer_done)
		return;
	nkv_oracle_flow_remove(nkv_sched_oracle(d->s), q->dec.prefill_inst, q->dec.decode_inst, q->dec.bytes);
	d->inflight_tier[q->dec.tier] -= q->dec.bytes;
	struct nkv_prefill_state *ps = nkv_sched_prefill(d->s, q->dec.prefill);
	if (ps->queued)
		ps->queued--;
}

/* Agents drop what they hold for the request (pins, reservations, a push in
 * flight); the prefill knows of it only once granted. */
static void send_cancel(struct daemon *d, struct rq *q, int status, const char *reason)
{
	struct nkv_msg c;
	nkv_msg_init(&c, NKV_MSG_CANCEL);
	c.req = q->node.id;
	c.status = status;
	nkv_msg_set_text(&c, reason ? reason : "");
	if (q->granted && q->pp >= 0 && d->pt.p[q->pp].used)
		send_msg(d, q->pp, &c);
	if (q->dp >= 0 && d->pt.p[q->dp].used)
		send_msg(d, q->dp, &c);
	nkv_msg_clear(&c);
}

static void finish_rq(struct daemon *d, struct rq *q, int status, const char *reason)
{
	if (q->state == RQ_RUNNING) {
		release_transfer(d, q);
		if (!status)
			nkv_sched_finish(d->s, &q->r, &q->dec);
		else
			send_cancel(d, q, status, reason);
	}
	if (status)
		d->failed++;
	else {
		d->finished++;
		/* TTFT as the replay computes it: first token - submit (monotonic clocks of one host). */
		double ttft = q->t[NKV_REC_FIRST] - q->t[NKV_REC_SUBMIT];
		if (q->t[NKV_REC_FIRST] > 0 && isfinite(ttft) && ttft >= 0)
			nkv_prom_hist_observe(&d->ttft_h, ttft);
	}
	if (q->client < 0) {
		retire_rq(d, q);
		return;
	}
	struct nkv_msg m;
	nkv_msg_init(&m, NKV_MSG_RECORD);
	m.req = q->client_req;
	m.status = status;
	m.peer = q->dp >= 0 ? d->pt.p[q->dp].id : 0;
	m.agent_id = q->pp >= 0 ? d->pt.p[q->pp].id : 0;
	m.tier = q->dec.tier >= 0 && q->dec.tier < NKV_TIERS ? (uint32_t)q->dec.tier : 0;
	m.ntokens = q->ntokens;
	m.blocks_ok = q->blocks_ok;
	m.blocks_bad = q->blocks_bad;
	m.bytes = q->bytes;
	memcpy(m.t, q->t, sizeof(q->t));
	nkv_msg_set_text(&m, reason ? reason : "");
	send_msg(d, q->client, &m);
	nkv_msg_clear(&m);
	retire_rq(d, q);
}

static struct rq *find_rq(struct daemon *d, uint64_t gid, int from, const char *what)
{
	struct nkv__rqnode *x = nkv__rqtab_find(&d->rqtab, gid);
	if (!x) {
		if (!nkv__rqtab_was_retired(&d->rqtab, gid)) { /* else a late report for a settled request */
			char lb[96];
			logf_("%s for unknown request %llu from %s (ignored)", what, (unsigned long long)gid,
			      peer_label(&d->pt.p[from], lb, sizeof(lb)));
		}
		return NULL;
	}
	struct rq *q = (struct rq *)((char *)x - offsetof(struct rq, node));
	if (q->state != RQ_RUNNING || (q->pp != from && q->dp != from))
		return NULL;
	return q;
}

static bool alive_decode(struct daemon *d, uint32_t di) { return d->decode_peer[di] >= 0; }
static bool alive_prefill(struct daemon *d, uint32_t pi) { return d->prefill_peer[pi] >= 0; }

/* Decide and dispatch one pending request; false when no agents are up yet. */
static bool dispatch(struct daemon *d, struct rq *q)
{
	bool anyp = false, anyd = false;
	for (uint32_t i = 0; i < d->nprefill; i++)
		anyp |= alive_prefill(d, i);
	for (uint32_t i = 0; i < d->ndecode; i++)
		anyd |= alive_decode(d, i);
	if (!anyp || !anyd || !d->kv_bpt)
		return false;
	q->r.kv_bytes_per_token = d->kv_bpt;
	double t0 = nkv_now_s();
	struct nkv_decision dec;
	int rc = nkv_sched_decide(d->s, &q->r, t0, &dec);
	double t1 = nkv_now_s();
	if (rc) {
		finish_rq(d, q, rc, nkv_last_error());
		return true;
	}
	d->decisions++;
	d->decide_s_sum += t1 - t0;
	nkv_prom_hist_observe(&d->decide_h, t1 - t0);
	if (t1 - t0 > d->decide_s_max)
		d->decide_s_max = t1 - t0;
	/* A policy may pick an instance whose agent is down: take the live one
	 * with the least load / queue instead (counted as rerouted). */
	if (!alive_decode(d, dec.decode)) {
		double best = INFINITY;
		for (uint32_t i = 0; i < d->ndecode; i++)
			if (alive_decode(d, i) && nkv_sched_decode_load(d->s, i) < best) {
				best = nkv_sched_decode_load(d->s, i);
				dec.decode = i;
			}
		dec.decode_inst = d->decode_inst[dec.decode];
		d->rerouted++;
	}
	if (!alive_prefill(d, dec.prefill)) {
		uint32_t best = UINT32_MAX;
		for (uint32_t i = 0; i < d->nprefill; i++)
			if (alive_prefill(d, i) && nkv_sched_prefill(d->s, i)->queued < best) {
				best = nkv_sched_prefill(d->s, i)->queued;
				dec.prefill = i;
			}
		dec.prefill_inst = d->prefill_inst[dec.prefill];
		d->rerouted++;
	}
	dec.tier = nkv_topo_tier(d->topo, dec.prefill_inst, dec.decode_inst);
	if (dec.tier < 0)
		dec.tier = 0;
	q->dec = dec;
	q->pp = d->prefill_peer[dec.prefill];
	q->dp = d->decode_peer[dec.decode];
	q->t[NKV_REC_ASSIGN] = t1;
	rql_unlink(&d->pending, q);
	q->state = RQ_RUNNING;
	rql_push(&d->running, q);
	nkv_sched_assign(d->s, &q->r, &dec);
	d->inflight_tier[dec.tier] += dec.bytes;

	/* The decode grants room first (BLOCKS); the prefill hears of the request then (grant). */
	struct nkv_msg m;
	nkv_msg_init(&m, NKV_MSG_DECODE_TASK);
	m.req = q->node.id;
	m.input_len = q->r.input_len;
	m.output_len = q->r.output_len;
	nkv_msg_set_ids(&m, q->ids, q->r.nblocks);
	send_msg(d, q->dp, &m);
	nkv_msg_clear(&m);
	return true;
}

/* The decode reserved room (its BLOCKS): only now does the prefill get the
 * task, followed by the block list, so a prefill's pool never holds a
 * request whose destination has no room. */
static void grant(struct daemon *d, struct rq *q, const struct nkv_msg *blocks)
{
	if (q->granted)
		return; /* one BLOCKS per assignment; a repeat is ignored */
	q->granted = true;
	struct nkv_msg m;
	nkv_msg_init(&m, NKV_MSG_PREFILL_TASK);
	m.req = q->node.id;
	m.input_len = q->r.input_len;
	m.output_len = q->r.output_len;
	m.peer = d->pt.p[q->dp].id;
	m.tier = (uint32_t)q->dec.tier;
	snprintf(m.addr, sizeof(m.addr), "%s", d->pt.p[q->dp].addr);
	nkv_msg_set_ids(&m, q->ids, q->r.nblocks);
	send_msg(d, q->pp, &m);
	nkv_msg_clear(&m);
	send_msg(d, q->pp, blocks);
}

/* An agent of a request not yet granted was lost: nothing was computed or
 * sent for it, so it goes back to pending (under a new id) and is decided again. */
static void reroute(struct daemon *d, struct rq *q, const char *reason)
{
	send_cancel(d, q, -ECONNRESET, reason);
	release_transfer(d, q);
	rql_unlink(&d->running, q);
	q->state = RQ_PENDING;
	q->pp = q->dp = -1;
	q->granted = false;
	q->t[NKV_REC_ASSIGN] = 0;
	/* Older than everything pending: it goes first. */
	q->prev = NULL;
	q->next = d->pending.head;
	if (d->pending.head)
		d->pending.head->prev = q;
	else
		d->pending.tail = q;
	d->pending.head = q;
	d->pending.n++;
	nkv__rqtab_del(&d->rqtab, &q->node);
	if (rq_take_id(d, q)) {
		finish_rq(d, q, -ENOMEM, nkv_last_error());
		return;
	}
	d->rerouted++;
}

static void dispatch_pending(struct daemon *d)
{
	/* Oldest first; dispatch moves a request to running (or ends it). */
	for (struct rq *q = d->pending.head, *nx; q; q = nx) {
		nx = q->next;
		if (!dispatch(d, q))
			return;
	}
}

/* ---- messages ----------------------------------------------------------- */

static int on_register(struct daemon *d, int pi, const struct nkv_msg *m)
{
	struct nkv__peer *p = &d->pt.p[pi];
	if (p->registered)
		return nkv_err(EPROTO, "REGISTER sent twice");
	if (strcmp(m->token, d->token) != 0)
		return nkv_err(EACCES, "bad token");
	p->role = m->role;
	snprintf(p->name, sizeof(p->name), "%s", m->name);
	snprintf(p->addr, sizeof(p->addr), "%s", m->addr);
	snprintf(p->path, sizeof(p->path), "%s", m->text ? m->text : "");
	if (m->role == NKV_ROLE_PREFILL || m->role == NKV_ROLE_DECODE) {
		int inst = nkv_topo_find(d->topo, m->name);
		uint32_t n = m->role == NKV_ROLE_PREFILL ? d->nprefill : d->ndecode;
		uint32_t *insts = m->role == NKV_ROLE_PREFILL ? d->prefill_inst : d->decode_inst;
		int *peers = m->role == NKV_ROLE_PREFILL ? d->prefill_peer : d->decode_peer;
		int idx = -1;
		for (uint32_t i = 0; inst >= 0 && i < n; i++)
			if (insts[i] == (uint32_t)inst)
				idx = (int)i;
		char why[160];
		if (idx < 0) {
			snprintf(why, sizeof(why), "instance '%s' is not a %s instance of this scheduler", m->name,
				 nkv_role_name(m->role));
			return nkv_err(ENOENT, "%s", why);
		}
		if (peers[idx] >= 0) {
			snprintf(why, sizeof(why), "instance '%s' already has an agent", m->name);
			return nkv_err(EEXIST, "%s", why);
		}
		if (m->block_tokens != NKV_PREFIX_BLOCK_TOKENS ||
		    (d->kv_bpt && d->kv_bpt != m->kv_bpt)) {
			snprintf(why, sizeof(why), "KV shape differs: block_tokens %u (want %u), %llu B/token (want %llu)",
				 m->block_tokens, NKV_PREFIX_BLOCK_TOKENS, (unsigned long long)m->kv_bpt,
				 (unsigned long long)d->kv_bpt);
			return nkv_err(EINVAL, "%s", why);
		}
		d->kv_bpt = m->kv_bpt;
		peers[idx] = pi;
		p->idx = idx;
		if (m->role == NKV_ROLE_DECODE) {
			struct nkv_decode_state *ds = nkv_sched_decode(d->s, (uint32_t)idx);
			ds->kv_blocks_total = m->kv_blocks;
			ds->kv_blocks_used = 0;
			ds->running = ds->queued = 0;
			ds->running_tokens = ds->queued_tokens = 0;
			ds->refreshed_s = nkv_now_s();
			nkv_prefix_clear_slot(nkv_sched_decode_index(d->s), (uint32_t)idx);
		} else {
			struct nkv_prefill_state *ps = nkv_sched_prefill(d->s, (uint32_t)idx);
			ps->queued = 0;
			ps->queued_tokens = 0;
			ps->refreshed_s = nkv_now_s();
			nkv_prefix_clear_slot(nkv_sched_prefill_index(d->s), (uint32_t)idx);
		}
		/* Its pool (prefix blocks held, use) comes in its first heartbeat:
		 * an agent that rejoins, after its connection or this scheduler
		 * died, sends everything it holds there, so the view is rebuilt. */
	}
	nkv__peers_registered(&d->pt, pi);
	p->seen_s = nkv_now_s();
	p->id = ++d->next_agent_id;
	char lb[96];
	logf_("registered %s at %s%s%s", peer_label(p, lb, sizeof(lb)), p->addr[0] ? p->addr : "-",
	      p->path[0] ? ": " : "", p->path);
	struct nkv_msg ok;
	nkv_msg_init(&ok, NKV_MSG_REGISTER_OK);
	ok.agent_id = p->id;
	send_msg(d, pi, &ok);
	dispatch_pending(d);
	return 0;
}

static char *status_json(struct daemon *d)
{
	json_t *o = json_object();
	json_object_set_new(o, "policy", json_string(nkv_sched_policy_name(d->s)));
	json_object_set_new(o, "decisions", json_integer((json_int_t)d->decisions));
	json_object_set_new(o, "finished", json_integer((json_int_t)d->finished));
	json_object_set_new(o, "failed", json_integer((json_int_t)d->failed));
	json_object_set_new(o, "rerouted", json_integer((json_int_t)d->rerouted));
	json_object_set_new(o, "bad_peers", json_integer((json_int_t)d->bad_peers));
	json_object_set_new(o, "requests_timed_out", json_integer((json_int_t)d->requests_timed_out));
	json_object_set_new(o, "requests_refused_busy", json_integer((json_int_t)d->requests_busy));
	json_object_set_new(o, "agents_timed_out", json_integer((json_int_t)d->agents_timed_out));
	json_object_set_new(o, "xfer_bytes", json_integer((json_int_t)d->xfer_bytes));
	json_object_set_new(o, "probes_sent", json_integer((json_int_t)d->probes_sent));
	json_object_set_new(o, "probes_done", json_integer((json_int_t)d->probes_done));
	json_object_set_new(o, "decide_mean_s", json_real(d->decisions ? d->decide_s_sum / d->decisions : 0));
	json_object_set_new(o, "decide_max_s", json_real(d->decide_s_max));
	json_object_set_new(o, "peers", json_integer(d->pt.n));
	json_object_set_new(o, "peers_max", json_integer(d->pt.max));
	json_object_set_new(o, "peers_unregistered", json_integer(d->pt.nauth));
	json_object_set_new(o, "peers_refused_full", json_integer((json_int_t)d->pt.refused_full));
	json_object_set_new(o, "peers_auth_timeouts", json_integer((json_int_t)d->pt.timed_out));
	json_object_set_new(o, "requests_pending", json_integer((json_int_t)d->pending.n));
	json_object_set_new(o, "requests_running", json_integer((json_int_t)d->running.n));
	json_object_set_new(o, "request_table_buckets", json_integer((json_int_t)d->rqtab.nb));
	json_t *agents = json_array();
	for (int i = 0; i < d->pt.max; i++) {
		struct nkv__peer *p = &d->pt.p[i];
		if (!p->used || !p->registered || (p->role != NKV_ROLE_PREFILL && p->role != NKV_ROLE_DECODE))
			continue;
		json_t *a = json_object();
		json_object_set_new(a, "id", json_integer(p->id));
		json_object_set_new(a, "role", json_string(nkv_role_name(p->role)));
		json_object_set_new(a, "name", json_string(p->name));
		json_object_set_new(a, "addr", json_string(p->addr));
		if (p->path[0])
			json_object_set_new(a, "path", json_string(p->path));
		if (p->role == NKV_ROLE_DECODE) {
			struct nkv_decode_state *ds = nkv_sched_decode(d->s, (uint32_t)p->idx);
			json_object_set_new(a, "running", json_integer(ds->running));
			json_object_set_new(a, "queued", json_integer(ds->queued));
			json_object_set_new(a, "kv_used", json_integer((json_int_t)ds->kv_blocks_used));
			json_object_set_new(a, "kv_total", json_integer((json_int_t)ds->kv_blocks_total));
		}
		json_array_append_new(agents, a);
	}
	json_object_set_new(o, "agents", agents);
	json_t *tiers = json_object();
	for (int t = 0; t < NKV_TIERS; t++)
		json_object_set_new(tiers, nkv_tier_name(t), json_integer((json_int_t)d->inflight_tier[t]));
	json_object_set_new(o, "inflight_bytes", tiers);
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return s;
}

static void on_probe_result(struct daemon *d, const struct nkv_msg *m, double now);

/* Returns 0, or a negative errno: the peer is then disconnected with nkv_last_error(). */
static int on_msg(struct daemon *d, int pi, struct nkv_msg *m)
{
	struct nkv__peer *p = &d->pt.p[pi];
	double now = nkv_now_s();
	if (m->type == NKV_MSG_REGISTER)
		return on_register(d, pi, m);
	if (!p->registered)
		return nkv_err(EPROTO, "%s before REGISTER", nkv_msg_type_name(m->type));
	p->seen_s = now;
	bool agent = p->role == NKV_ROLE_PREFILL || p->role == NKV_ROLE_DECODE;
	switch (m->type) {
	case NKV_MSG_HEARTBEAT:
		if (!agent)
			break;
		if (p->role == NKV_ROLE_DECODE) {
			struct nkv_decode_state *ds = nkv_sched_decode(d->s, (uint32_t)p->idx);
			ds->running = m->running;
			ds->queued = m->queued;
			ds->running_tokens = m->running_tokens;
			ds->queued_tokens = m->queued_tokens;
			ds->kv_blocks_used = m->kv_used;
			ds->kv_blocks_total = m->kv_total;
			ds->refreshed_s = now;
			nkv_prefix_add(nkv_sched_decode_index(d->s), (uint32_t)p->idx, m->ids, m->nadd);
			nkv_prefix_remove(nkv_sched_decode_index(d->s), (uint32_t)p->idx, m->ids + m->nadd,
					  m->nids - m->nadd);
		} else {
			struct nkv_prefill_state *ps = nkv_sched_prefill(d->s, (uint32_t)p->idx);
			ps->queued = m->queued;
			ps->queued_tokens = m->queued_tokens;
			ps->refreshed_s = now;
			nkv_prefix_add(nkv_sched_prefill_index(d->s), (uint32_t)p->idx, m->ids, m->nadd);
			nkv_prefix_remove(nkv_sched_prefill_index(d->s), (uint32_t)p->idx, m->ids + m->nadd,
					  m->nids - m->nadd);
		}
		return 0;
	case NKV_MSG_SUBMIT: {
		if (p->role != NKV_ROLE_CLIENT)
			break;
		if (d->rqtab.n >= d->max_pending) { /* refused at once, with a record: never dropped, never queued */
			char why[96];
			snprintf(why, sizeof(why), "scheduler busy: %zu requests pending (--max-pending)", d->rqtab.n);
			struct nkv_msg r;
			nkv_msg_init(&r, NKV_MSG_RECORD);
			r.req = m->req;
			r.status = -EBUSY;
			nkv_msg_set_text(&r, why);
			send_msg(d, pi, &r);
			nkv_msg_clear(&r);
			d->requests_busy++;
			d->failed++;
			return 0;
		}
		struct rq *q = calloc(1, sizeof(*q));
		if (!q)
			return nkv_err(ENOMEM, "out of memory for requests");
		int rc = rq_take_id(d, q);
		if (rc) {
			free(q);
			return rc;
		}
		q->state = RQ_PENDING;
		rql_push(&d->pending, q);
		q->deadline = now + d->request_timeout;
		age_push(d, q);
		q->client = pi;
		q->client_req = m->req;
		q->pp = q->dp = -1;
		q->ids = m->ids; /* take ownership */
		m->ids = NULL;
		q->r.arrival_s = now;
		q->r.input_len = m->input_len;
		q->r.output_len = m->output_len;
		q->r.hash_ids = q->ids;
		q->r.nblocks = m->nids;
		q->t[NKV_REC_SUBMIT] = now;
		dispatch(d, q);
		return 0;
	}
	case NKV_MSG_BLOCKS: {
		struct rq *q = find_rq(d, m->req, pi, "BLOCKS");
		if (q && pi == q->dp)
			grant(d, q, m);
		return 0;
	}
	case NKV_MSG_PREFILL_DONE: {
		struct rq *q = find_rq(d, m->req, pi, "PREFILL_DONE");
		if (q && pi == q->pp) {
			q->t[NKV_REC_PREFILL_T0] = m->t[0];
			q->t[NKV_REC_PREFILL_T1] = m->t[1];
		}
		return 0;
	}
	case NKV_MSG_XFER_DONE: {
		struct rq *q = find_rq(d, m->req, pi, "XFER_DONE");
		if (!q || pi != q->pp || q->xfer_done)
			return 0;
		if (m->status) {
			char why[NKV_ERRSTR_MAX];
			snprintf(why, sizeof(why), "transfer %s -> %s failed: %s", p->name, d->pt.p[q->dp].name,
				 m->text ? m->text : "");
			finish_rq(d, q, m->status, why);
			return 0;
		}
		q->xfer_done = true;
		q->bytes = m->bytes;
		q->t[NKV_REC_XFER_S] = m->t[0];
		q->t[NKV_REC_XFER_END] = m->t[1];
		d->xfer_bytes += m->bytes;
		d->inflight_tier[q->dec.tier] -= q->dec.bytes;
		nkv_sched_transfer_done(d->s, &q->r, &q->dec, m->t[0], now);
		send_msg(d, q->dp, m);
		return 0;
	}
	case NKV_MSG_TOKENS: {
		struct rq *q = find_rq(d, m->req, pi, "TOKENS");
		if (!q || pi != q->dp)
			return 0;
		q->ntokens = m->ntokens;
		q->blocks_ok = m->blocks_ok;
		q->blocks_bad = m->blocks_bad;
		q->t[NKV_REC_ADMIT] = m->t[0];
		q->t[NKV_REC_FIRST] = m->t[1];
		q->t[NKV_REC_STEP_S] = m->t[2];
		q->t[NKV_REC_END] = m->t[3];
		q->t[NKV_REC_TBT_MEAN] = m->t[4];
		q->t[NKV_REC_TBT_P99] = m->t[5];
		if (!m->status && q->xfer_done)
			nkv_sched_admit(d->s, &q->r, &q->dec);
		finish_rq(d, q, m->status, m->text);
		return 0;
	}
	case NKV_MSG_PROBE_RESULT:
		if (p->role == NKV_ROLE_PREFILL)
			on_probe_result(d, m, now);
		return 0;
	case NKV_MSG_STATUS_REQ: {
		char *s = status_json(d);
		struct nkv_msg r;
		nkv_msg_init(&r, NKV_MSG_STATUS);
		nkv_msg_set_text(&r, s);
		free(s);
		send_msg(d, pi, &r);
		nkv_msg_clear(&r);
		return 0;
	}
	case NKV_MSG_ERROR: {
		char lb[96];
		logf_("%s reports error %u: %s", peer_label(p, lb, sizeof(lb)), m->code, m->text ? m->text : "");
		return 0;
	}
	default:
		break;
	}
	return nkv_err(EPROTO, "%s is not a message a %s sends", nkv_msg_type_name(m->type), nkv_role_name(p->role));
}

/* Ask prefill agents to probe the paths the planner picks (oldest data
 * first, cheapest tier first, within the probe budget). */
static void plan_probes(struct daemon *d, double now)
{
	if (!d->probe || now < d->next_plan)
		return;
	struct nkv_oracle *o = nkv_sched_oracle(d->s);
	d->next_plan = now + nkv_oracle_get_params(o)->refresh_s / 2;
	struct nkv_probe_params pp;
	nkv_probe_defaults(o, &pp);
	struct nkv_probe pr[16];
	int n = nkv_probe_plan(o, &pp, now, pr, 16);
	for (int i = 0; i < n && d->nprobes < 64; i++) {
		int pi = -1, di = -1;
		for (uint32_t k = 0; k < d->nprefill; k++)
			if (d->prefill_inst[k] == pr[i].src)
				pi = d->prefill_peer[k];
		for (uint32_t k = 0; k < d->ndecode; k++)
			if (d->decode_inst[k] == pr[i].dst)
				di = d->decode_peer[k];
		if (pi < 0 || di < 0)
			continue; /* not a live prefill -> decode path */
		struct nkv_msg m;
		nkv_msg_init(&m, NKV_MSG_PROBE);
		m.req = ++d->next_probe;
		m.peer = d->pt.p[di].id;
		m.tier = pr[i].tier >= 0 && pr[i].tier < NKV_TIERS ? (uint32_t)pr[i].tier : 3;
		m.bytes = pr[i].bytes;
		snprintf(m.addr, sizeof(m.addr), "%s", d->pt.p[di].addr);
		send_msg(d, pi, &m);
		d->probes[d->nprobes].id = m.req;
		d->probes[d->nprobes].p = pr[i].src;
		d->probes[d->nprobes].d = pr[i].dst;
		d->probes[d->nprobes].t = now;
		d->nprobes++;
		d->probes_sent++;
	}
	/* forget probes that never came back */
	for (uint32_t i = 0; i < d->nprobes; i++)
		if (now - d->probes[i].t > 30)
			d->probes[i--] = d->probes[--d->nprobes];
}

static void on_probe_result(struct daemon *d, const struct nkv_msg *m, double now)
{
	for (uint32_t i = 0; i < d->nprobes; i++) {
		if (d->probes[i].id != m->req)
			continue;
		if (!m->status && m->t[0] > 0) {
			nkv_oracle_sample(nkv_sched_oracle(d->s), d->probes[i].p, d->probes[i].d, m->bytes, m->t[0], now,
					  NKV_SAMPLE_PROBE);
			d->probes_done++;
		}
		d->probes[i] = d->probes[--d->nprobes];
		return;
	}
}

/* Forget a peer; code != 0: it is refused, and told why (an ERROR frame) before the close. */
static void drop_peer(struct daemon *d, int pi, int code, const char *why)
{
	struct nkv__peer *p = &d->pt.p[pi];
	if (!p->used)
		return;
	char lb[96];
	logf_("disconnecting %s: %s", peer_label(p, lb, sizeof(lb)), why);
	if (code)
		nkv__peers_tell(&d->pt, pi, code, why);
	if (p->registered && (p->role == NKV_ROLE_PREFILL || p->role == NKV_ROLE_DECODE)) {
		if (p->role == NKV_ROLE_PREFILL)
			d->prefill_peer[p->idx] = -1;
		else {
			d->decode_peer[p->idx] = -1;
			nkv_prefix_clear_slot(nkv_sched_decode_index(d->s), (uint32_t)p->idx);
			/* Keep policies away from it until an agent comes back. */
			struct nkv_decode_state *ds = nkv_sched_decode(d->s, (uint32_t)p->idx);
			ds->kv_blocks_used = ds->kv_blocks_total;
		}
		char reason[200];
		if (strstr(why, p->name))
			snprintf(reason, sizeof(reason), "%.180s", why); /* it names the agent already */
		else
			snprintf(reason, sizeof(reason), "%s agent %s lost: %.120s", nkv_role_name(p->role), p->name, why);
		for (struct rq *q = d->running.head, *nx; q; q = nx) {
			nx = q->next;
			/* Not granted yet: decided again. A prefill's requests whose KV
			 * already arrived go on without it. */
			if ((q->dp == pi || q->pp == pi) && !q->granted)
				reroute(d, q, reason);
			else if (q->dp == pi || (q->pp == pi && !q->xfer_done))
				finish_rq(d, q, -ECONNRESET, reason);
		}
	}
	if (p->registered && p->role == NKV_ROLE_CLIENT)
		for (int l = 0; l < 2; l++)
			for (struct rq *q = (l ? d->running : d->pending).head; q; q = q->next)
				if (q->client == pi)
					q->client = -1;
	nkv__peers_release(&d->pt, pi);
}

/* ---- deadlines ---------------------------------------------------------- */

static const char *agent_name(struct daemon *d, int pi) { return pi >= 0 ? d->pt.p[pi].name : "-"; }

/* Where a request stands, for the reason it ends with at its deadline. */
static void rq_stage(struct daemon *d, const struct rq *q, char *buf, size_t n)
{
	if (q->state == RQ_PENDING)
		snprintf(buf, n, "pending: no live prefill and decode agents to assign it to");
	else if (!q->granted)
		snprintf(buf, n, "waiting for room at decode %s (for prefill %s)", agent_name(d, q->dp),
			 agent_name(d, q->pp));
	else if (!q->xfer_done)
		snprintf(buf, n, "at prefill %s: compute or KV push to decode %s", agent_name(d, q->pp),
			 agent_name(d, q->dp));
	else
		snprintf(buf, n, "decoding at %s (its KV had arrived)", agent_name(d, q->dp));
}

/* Requests past their deadline end (oldest first: the arrival list is in deadline order). */
static void expire_requests(struct daemon *d, double now)
{
	while (d->ahead && now >= d->ahead->deadline) {
		struct rq *q = d->ahead;
		char stage[200], why[300];
		rq_stage(d, q, stage, sizeof(stage));
		snprintf(why, sizeof(why), "request timeout (--request-timeout %g s): %s", d->request_timeout, stage);
		d->requests_timed_out++;
		finish_rq(d, q, -ETIMEDOUT, why);
	}
}

/* Agents silent past --agent-timeout (heartbeats come every 50 ms) are
 * declared dead: told why, dropped, their requests rerouted or failed. A
 * scan of the instance lists, ten times a second. */
static void check_agents(struct daemon *d, double now)
{
	if (now < d->next_liveness)
		return;
	d->next_liveness = now + 0.1;
	for (int role = 0; role < 2; role++) {
		uint32_t n = role ? d->ndecode : d->nprefill;
		int *peers = role ? d->decode_peer : d->prefill_peer;
		for (uint32_t i = 0; i < n; i++) {
			int pi = peers[i];
			if (pi < 0 || now - d->pt.p[pi].seen_s <= d->agent_timeout)
				continue;
			char why[160];
			snprintf(why, sizeof(why), "%s agent %s silent for %.1f s (--agent-timeout %g s)",
				 nkv_role_name(d->pt.p[pi].role), d->pt.p[pi].name, now - d->pt.p[pi].seen_s,
				 d->agent_timeout);
			d->agents_timed_out++;
			drop_peer(d, pi, ETIMEDOUT, why);
		}
	}
}

/* ---- the loop ----------------------------------------------------------- */

/* epoll data: the listeners, then metrics slots, then peers. */
#define TAG_LISTEN 1u
#define TAG_MLISTEN 2u
#define TAG_METRICS 16u
#define TAG_PEER 1024u

/* Readable or writable peer: flush, read, handle every whole frame. A
 * refusal (bad frame, bad token, unknown or taken instance, a frame too
 * large before REGISTER) is told to the peer before the close. */
static void peer_event(struct daemon *d, int pi, uint32_t ev)
{
	struct nkv__peer *p = &d->pt.p[pi];
	if (!p->used)
		return;
	if (ev & EPOLLOUT) {
		nkv_pconn_flush(&p->c);
		nkv__peers_arm(&d->pt, pi);
	}
	if (!(ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
		return;
	int rrc = nkv_pconn_read(&p->c), code = 0;
	char why[NKV_ERRSTR_MAX];
	snprintf(why, sizeof(why), "%s", rrc ? nkv_last_error() : "");
	for (;;) {
		struct nkv_msg m;
		int drc = nkv_pconn_next(&p->c, &m);
		if (drc == 0)
			break;
		if (drc < 0) {
			d->bad_peers++;
			snprintf(why, sizeof(why), "bad frame: %s", nkv_last_error());
			rrc = code = drc;
			break;
		}
		int mrc = on_msg(d, pi, &m);
		nkv_msg_clear(&m);
		if (mrc) {
			if (mrc != -EACCES)
				d->bad_peers++;
			snprintf(why, sizeof(why), "%s", nkv_last_error());
			rrc = code = mrc;
			break;
		}
	}
	if (!rrc && p->c.inlen >= (p->c.inmax ? p->c.inmax : NKV_PROTO_MAX_PAYLOAD + NKV_PROTO_HDR)) {
		/* The buffer is full and holds no whole frame: only possible before REGISTER. */
		d->bad_peers++;
		snprintf(why, sizeof(why), "a frame larger than %zu bytes before REGISTER", p->c.inmax);
		rrc = code = -EMSGSIZE;
	}
	if (rrc)
		drop_peer(d, pi, code, why);
}

/* ---- metrics ------------------------------------------------------------ */

/* Histogram bounds, seconds. A decision takes microseconds (a few tens with
 * many instances); a TTFT milliseconds (compressed runs) to seconds. */
static const double decide_le[] = { 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 0.1 };
static const double ttft_le[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60 };

/* The exposition (Prometheus text 0.0.4). Every series keeps its label set
 * for the daemon's life: the policy is fixed at start, the instances are
 * --prefill/--decode, tiers and request states are fixed lists. */
static void write_metrics(struct daemon *d, FILE *f)
{
	char pol[2 * 64], lb[512], a_esc[2 * 64], b_esc[2 * 64];
	nkv_prom_escape(pol, sizeof(pol), nkv_sched_policy_name(d->s));

	nkv_prom_family(f, "netkv_build_info", "gauge", "netkv build: version label, value always 1.");
	nkv_prom_escape(a_esc, sizeof(a_esc), NKV_VERSION);
	snprintf(lb, sizeof(lb), "version=\"%s\"", a_esc);
	nkv_prom_sample(f, "netkv_build_info", lb, 1);

	snprintf(lb, sizeof(lb), "policy=\"%s\"", pol);
	nkv_prom_family(f, "netkv_decisions_total", "counter", "Scheduling decisions made by the policy.");
	nkv_prom_sample_u64(f, "netkv_decisions_total", lb, d->decisions);
	nkv_prom_family(f, "netkv_decision_seconds", "histogram", "Time of one policy decision (nkv_sched_decide), seconds.");
	nkv_prom_hist_write(f, "netkv_decision_seconds", lb, &d->decide_h);
	nkv_prom_family(f, "netkv_ttft_seconds", "histogram",
			"Time to first token of finished requests (first token - submit), seconds of wall time.");
	nkv_prom_hist_write(f, "netkv_ttft_seconds", lb, &d->ttft_h);

	nkv_prom_family(f, "netkv_requests_total", "counter", "Requests ended, by outcome.");
	nkv_prom_sample_u64(f, "netkv_requests_total", "state=\"finished\"", d->finished);
	nkv_prom_sample_u64(f, "netkv_requests_total", "state=\"failed\"", d->failed);
	nkv_prom_family(f, "netkv_requests_rerouted_total", "counter",
			"Policy picks of an instance without a live agent, sent to a live one instead.");
	nkv_prom_sample_u64(f, "netkv_requests_rerouted_total", NULL, d->rerouted);
	uint64_t pending = d->pending.n, running = d->running.n;
	nkv_prom_family(f, "netkv_requests_in_flight", "gauge",
			"Requests not yet ended: pending (no decision yet) or running (assigned).");
	nkv_prom_sample_u64(f, "netkv_requests_in_flight", "state=\"pending\"", pending);
	nkv_prom_sample_u64(f, "netkv_requests_in_flight", "state=\"running\"", running);

	uint32_t up[2] = { 0, 0 };
	for (uint32_t i = 0; i < d->nprefill; i++)
		up[0] += alive_prefill(d, i);
	for (uint32_t i = 0; i < d->ndecode; i++)
		up[1] += alive_decode(d, i);
	nkv_prom_family(f, "netkv_agents_up", "gauge", "Registered agents, by role.");
	nkv_prom_sample_u64(f, "netkv_agents_up", "role=\"prefill\"", up[0]);
	nkv_prom_sample_u64(f, "netkv_agents_up", "role=\"decode\"", up[1]);
	nkv_prom_family(f, "netkv_agents_configured", "gauge", "Instances given with --prefill / --decode, by role.");
	nkv_prom_sample_u64(f, "netkv_agents_configured", "role=\"prefill\"", d->nprefill);
	nkv_prom_sample_u64(f, "netkv_agents_configured", "role=\"decode\"", d->ndecode);
	nkv_prom_family(f, "netkv_agent_up", "gauge", "1 while the instance's agent is registered, else 0.");
	for (int role = 0; role < 2; role++) {
		uint32_t n = role ? d->ndecode : d->nprefill;
		for (uint32_t i = 0; i < n; i++) {
			struct nkv_instance_info ii;
			nkv_topo_instance(d->topo, role ? d->decode_inst[i] : d->prefill_inst[i], &ii);
			snprintf(lb, sizeof(lb), "role=\"%s\",agent=\"%s\"", role ? "decode" : "prefill",
				 nkv_prom_escape(a_esc, sizeof(a_esc), ii.name));
			nkv_prom_sample_u64(f, "netkv_agent_up", lb, role ? alive_decode(d, i) : alive_prefill(d, i));
		}
	}

	nkv_prom_family(f, "netkv_kv_bytes_total", "counter", "KV-cache bytes moved prefill -> decode (completed transfers).");
	nkv_prom_sample_u64(f, "netkv_kv_bytes_total", NULL, d->xfer_bytes);
	nkv_prom_family(f, "netkv_inflight_bytes", "gauge", "KV bytes of transfers decided but not completed, by network tier.");
	for (int t = 0; t < NKV_TIERS; t++) {
		snprintf(lb, sizeof(lb), "tier=\"%s\"", nkv_prom_escape(a_esc, sizeof(a_esc), nkv_tier_name(t)));
		nkv_prom_sample_u64(f, "netkv_inflight_bytes", lb, d->inflight_tier[t]);
	}
	nkv_prom_family(f, "netkv_probes_total", "counter", "Active bandwidth probes: sent to agents, done (a sample taken).");
	nkv_prom_sample_u64(f, "netkv_probes_total", "state=\"sent\"", d->probes_sent);
	nkv_prom_sample_u64(f, "netkv_probes_total", "state=\"done\"", d->probes_done);
	nkv_prom_family(f, "netkv_bad_peers_total", "counter", "Peers disconnected for a bad frame or message.");
	nkv_prom_sample_u64(f, "netkv_bad_peers_total", NULL, d->bad_peers);

	/* One series per prefill -> decode path; whether the figure is measured
	 * is a separate gauge, so the throughput series never changes labels. */
	nkv_prom_family(f, "netkv_path_bytes_per_second", "gauge",
			"The oracle's throughput figure per prefill -> decode path, bytes per second.");
	double now = nkv_now_s();
	size_t npaths = (size_t)d->nprefill * d->ndecode;
	bool *fresh = calloc(npaths ? npaths : 1, sizeof(*fresh));
	for (int pass = 0; pass < 2; pass++) {
		if (pass)
			nkv_prom_family(f, "netkv_path_measured", "gauge",
					"1 while the path's throughput figure comes from fresh samples, 0 while it is the tier's nominal figure.");
		for (uint32_t p = 0; p < d->nprefill; p++)
			for (uint32_t q = 0; q < d->ndecode; q++) {
				size_t k = (size_t)p * d->ndecode + q;
				struct nkv_instance_info a, b;
				nkv_topo_instance(d->topo, d->prefill_inst[p], &a);
				nkv_topo_instance(d->topo, d->decode_inst[q], &b);
				snprintf(lb, sizeof(lb), "src=\"%s\",dst=\"%s\"", nkv_prom_escape(a_esc, sizeof(a_esc), a.name),
					 nkv_prom_escape(b_esc, sizeof(b_esc), b.name));
				if (!pass) {
					bool fr = false;
					double bw = nkv_oracle_bw(nkv_sched_oracle(d->s), d->prefill_inst[p], d->decode_inst[q], now, &fr);
					if (fresh)
						fresh[k] = fr;
					nkv_prom_sample(f, "netkv_path_bytes_per_second", lb, bw);
				} else {
					nkv_prom_sample_u64(f, "netkv_path_measured", lb, fresh && fresh[k]);
				}
			}
	}
	free(fresh);
}

static void metrics_write(void *arg, FILE *f) { write_metrics(arg, f); }

/* As many descriptors as the hard limit allows (peers + scrapes + a margin);
 * returns the soft limit now in force. */
static rlim_t raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl))
		return 1024;
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t want = rl.rlim_max;
		rl.rlim_cur = want;
		if (setrlimit(RLIMIT_NOFILE, &rl))
			getrlimit(RLIMIT_NOFILE, &rl);
	}
	return rl.rlim_cur;
}

static int parse_names(struct daemon *d, const char *list, uint32_t **out, uint32_t *n, const char *what)
{
	char *copy = strdup(list), *save = NULL;
	uint32_t cap = 8;
	*out = malloc(cap * sizeof(**out));
	*n = 0;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		int inst = nkv_topo_find(d->topo, t);
		if (inst < 0) {
			int rc = nkv_err(ENOENT, "--%s: instance '%s' is not in the topology", what, t); /* t is in copy */
			free(copy);
			return rc;
		}
		if (*n == cap)
			*out = realloc(*out, (cap *= 2) * sizeof(**out));
		(*out)[(*n)++] = (uint32_t)inst;
	}
	free(copy);
	if (!*n)
		return nkv_err(EINVAL, "--%s: no instances given", what);
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: netkv scheduler --topo FILE --prefill NAMES --decode NAMES [options]\n"
		"       netkv scheduler status --scheduler ADDR [--token T]\n"
		"Central scheduler daemon: agents register, heartbeat and report; clients submit\n"
		"requests and get (prefill, decode) assignments from the policy library.\n"
		"  --listen ADDR      control address (default 127.0.0.1:7400)\n"
		"  --topo FILE        topology JSON (netkv topo gen)\n"
		"  --prefill NAMES    comma-separated topology instances that run prefill agents\n"
		"  --decode NAMES     ... decode agents\n"
		"  --policy P         rr random load cache cla cla* netkv-topo netkv-static netkv (default netkv)\n"
		"  --token T          shared token agents and clients must present (default $NKV_TOKEN)\n"
		"  --token-file FILE  the token from FILE's first line (keeps it off the command line)\n"
		"  --perf MODEL       perf model for the decode-wait estimate: a preset or a config.json (default llama3-8b)\n"
		"  --gpu-model G      GPU preset of that perf model: a100 h100 h200 b200 (default h100)\n"
		"  --time-scale X     the agents' time compression (default 1)\n"
		"  --w-cache X --w-load X   cla* weights >= 0 (default 1, 1; `netkv sim tune` finds good ones)\n"
		"  --metrics ADDR     Prometheus text endpoint (HTTP), off by default\n"
		"  --max-peers N      connections at once: agents, clients, status queries (default 4096)\n"
		"  --auth-timeout S   a connection must REGISTER within S seconds (default 3)\n"
		"  --agent-timeout S  an agent silent for S seconds (heartbeats come every 50 ms) is declared\n"
		"                     dead: dropped, its requests rerouted or failed naming it (default 3)\n"
		"  --request-timeout S  every request ends within S seconds of its submission, failed with\n"
		"                     the stage it was stuck in if not finished (default 60; the replay's\n"
		"                     --timeout, 120, is longer, so it gets that record)\n"
		"  --max-pending N    requests in flight at most; a SUBMIT over it gets a failed record at once,\n"
		"                     \"scheduler busy: N requests pending\" (default 65536)\n"
		"  --refresh S        oracle telemetry refresh interval, seconds (default 1)\n"
		"  --no-probes        no active probes (passive samples from transfers only)\n");
}

static int cmd_status(int argc, char **argv)
{
	const char *addr = "127.0.0.1:7400", *token = getenv("NKV_TOKEN");
	static const struct option opts[] = { { "scheduler", 1, 0, 's' }, { "token", 1, 0, 't' },
					      { "help", 0, 0, 'h' }, { 0, 0, 0, 0 } };
	int c;
	optind = 1;
	while ((c = nkv_cli_getopt(argc, argv, "s:t:h", opts, NULL)) != -1) {
		if (c == 's')
			addr = optarg;
		else if (c == 't')
			token = optarg;
		else if (c == 'h') {
			printf("usage: netkv scheduler status --scheduler ADDR [--token T]\n"
			       "Prints the scheduler's counters and agents (JSON).\n");
			return 0;
		} else
			return 2;
	}
	int fd = nkv_proto_connect(addr, 2);
	if (fd < 0) {
		fprintf(stderr, "netkv scheduler status: %s\n", nkv_last_error());
		return 1;
	}
	struct nkv_pconn pc;
	nkv_pconn_init(&pc, fd);
	struct nkv_msg m;
	nkv_msg_init(&m, NKV_MSG_REGISTER);
	m.role = NKV_ROLE_ADMIN;
	snprintf(m.token, sizeof(m.token), "%s", token ? token : "");
	int rc = nkv_pconn_send_wait(&pc, &m);
	nkv_msg_init(&m, NKV_MSG_STATUS_REQ);
	if (!rc)
		rc = nkv_pconn_send_wait(&pc, &m);
	while (!rc && !(rc = nkv_pconn_recv_wait(&pc, &m, 5))) {
		if (m.type == NKV_MSG_STATUS) {
			printf("%s\n", m.text);
			nkv_msg_clear(&m);
			break;
		}
		if (m.type == NKV_MSG_ERROR)
			rc = nkv_err(EACCES, "scheduler: %s", m.text);
		nkv_msg_clear(&m);
	}
	nkv_pconn_close(&pc);
	if (rc) {
		fprintf(stderr, "netkv scheduler status: %s\n", nkv_last_error());
		return 1;
	}
	return 0;
}

int nkv_cmd_scheduler_status(int argc, char **argv) { return cmd_status(argc, argv); }

int nkv_cmd_scheduler(int argc, char **argv)
{
	const char *listen_addr = "127.0.0.1:7400", *topo = NULL, *policy = "netkv", *token = getenv("NKV_TOKEN");
	const char *prefill = NULL, *decode = NULL, *perf_model = "llama3-8b", *metrics = NULL, *gpu = NULL;
	double scale = 1, w_cache = 1, w_load = 1, refresh = 1, auth_s = 3, agent_s = 3, request_s = 60;
	uint32_t max_peers = NKV__PEERS_DEFAULT, max_pending = 65536;
	static const struct option opts[] = {
		{ "listen", 1, 0, 'l' }, { "topo", 1, 0, 'T' }, { "policy", 1, 0, 'p' }, { "token", 1, 0, 't' },
		{ "max-peers", 1, 0, 'X' }, { "auth-timeout", 1, 0, 'A' }, { "agent-timeout", 1, 0, 'G' },
		{ "request-timeout", 1, 0, 'R' },
		{ "prefill", 1, 0, 'P' }, { "decode", 1, 0, 'D' }, { "perf", 1, 0, 'm' }, { "time-scale", 1, 0, 's' },
		{ "w-cache", 1, 0, 'c' }, { "w-load", 1, 0, 'L' }, { "metrics", 1, 0, 'M' }, { "refresh", 1, 0, 'r' },
		{ "no-probes", 0, 0, 'N' }, { "gpu-model", 1, 0, 'g' }, { "help", 0, 0, 'h' }, { "token-file", 1, 0, 'F' },
		{ "max-pending", 1, 0, 'Q' }, { 0, 0, 0, 0 } };
	static char token_buf[NKV_PROTO_MAX_TOKEN + 1];
	int c;
	bool probes = true;
	optind = 1;
	while ((c = nkv_cli_getopt(argc, argv, "h", opts, NULL)) != -1) {
		double *dp = NULL;
		switch (c) {
		case 'N': probes = false; break;
		case 'l': listen_addr = optarg; break;
		case 'T': topo = optarg; break;
		case 'p': policy = optarg; break;
		case 't': token = optarg; break;
		case 'F':
			if (nkv_secret_load(optarg, token_buf, sizeof(token_buf)) < 0) {
				fprintf(stderr, "netkv scheduler: --token-file: %s\n", nkv_last_error());
				return 2;
			}
			token = token_buf;
			break;
		case 'P': prefill = optarg; break;
		case 'D': decode = optarg; break;
		case 'm': perf_model = optarg; break;
		case 'g': gpu = optarg; break;
		case 'M': metrics = optarg; break;
		case 's': dp = &scale; break;
		case 'c': dp = &w_cache; break;
		case 'L': dp = &w_load; break;
		case 'r': dp = &refresh; break;
		case 'A': dp = &auth_s; break;
		case 'G': dp = &agent_s; break;
		case 'R': dp = &request_s; break;
		case 'X':
			if (nkv_cli_u32("scheduler", "--max-peers", optarg, 1, 1u << 20, &max_peers))
				return 2;
			break;
		case 'Q':
			if (nkv_cli_u32("scheduler", "--max-pending", optarg, 1, 1u << 24, &max_pending))
				return 2;
			break;
		case 'h': usage(stdout); return 0;
		default: return 2; /* nkv_cli_getopt said what is wrong */
		}
		/* a cla* weight may be 0 (the tuning grid has 0: that term off); the rest must be > 0 */
		if (dp) {
			const char *name = c == 's' ? "--time-scale" : c == 'c' ? "--w-cache" : c == 'L' ? "--w-load"
					 : c == 'A' ? "--auth-timeout" : c == 'G' ? "--agent-timeout"
					 : c == 'R' ? "--request-timeout" : "--refresh";
			bool timeout = c == 'A' || c == 'G' || c == 'R';
			int bad = c == 'c' || c == 'L' ? nkv_cli_double("scheduler", name, optarg, 0, INFINITY, dp)
				  : timeout ? nkv_cli_positive("scheduler", name, optarg, c == 'R' ? 86400 : 3600, dp)
					    : nkv_cli_positive("scheduler", name, optarg, INFINITY, dp);
			if (bad)
				return 2;
		}
	}
	if (!topo || !prefill || !decode) {
		fprintf(stderr, "netkv scheduler: --topo, --prefill and --decode are required\n");
		usage(stderr);
		return 2;
	}
	if (!token || !token[0]) {
		fprintf(stderr, "netkv scheduler: a --token (or $NKV_TOKEN) is required\n");
		return 2;
	}
	if (!nkv_policy_find(policy)) {
		fprintf(stderr, "netkv scheduler: unknown policy '%s'\n", policy);
		return 2;
	}
	struct daemon *d = calloc(1, sizeof(*d));
	d->token = token;
	/* Request ids are random (rqtab.c), so a restarted scheduler does not reuse
	 * its predecessor's; probe ids count from this start's wall clock in
	 * microseconds for the same reason: an agent still finishing a push or
	 * probe of the old one (agent.c, orphans) can tell the two apart. Below
	 * bit 63, which agents keep for probes. */
	struct timeval tv;
	gettimeofday(&tv, NULL);
	d->next_probe = ((uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec) & ((1ull << 62) - 1);
	d->probe = probes;
	d->agent_timeout = agent_s;
	nkv_proto_set_dead_s(agent_s); /* control connections: a vanished host is an error within it */
	d->request_timeout = request_s;
	d->max_pending = max_pending;
	d->lfd = d->mfd = -1;
	int rc = nkv_topo_load(topo, &d->topo);
	struct nkv_perf perf;
	if (!rc)
		rc = nkv_perf_preset(perf_model, gpu, &perf);
	if (!rc)
		rc = parse_names(d, prefill, &d->prefill_inst, &d->nprefill, "prefill");
	if (!rc)
		rc = parse_names(d, decode, &d->decode_inst, &d->ndecode, "decode");
	if (rc) {
		fprintf(stderr, "netkv scheduler: %s\n", nkv_last_error());
		return 1;
	}
	perf.prefill_a *= scale, perf.prefill_b *= scale, perf.prefill_c *= scale;
	perf.decode_a *= scale, perf.decode_b *= scale, perf.decode_c *= scale;
	struct nkv_sched_params sp;
	nkv_sched_defaults(&sp);
	sp.policy = policy;
	sp.w_cache = w_cache;
	sp.w_load = w_load;
	sp.kv_block_tokens = NKV_PREFIX_BLOCK_TOKENS;
	sp.oracle.refresh_s = refresh;
	sp.oracle.min_sample_bytes = 64 * 1024;
	rc = nkv_sched_create(d->topo, &perf, &sp, d->prefill_inst, d->nprefill, d->decode_inst, d->ndecode, &d->s);
	if (rc) {
		fprintf(stderr, "netkv scheduler: %s\n", nkv_last_error());
		return 1;
	}
	d->prefill_peer = malloc(d->nprefill * sizeof(int));
	d->decode_peer = malloc(d->ndecode * sizeof(int));
	for (uint32_t i = 0; i < d->nprefill; i++)
		d->prefill_peer[i] = -1;
	for (uint32_t i = 0; i < d->ndecode; i++) {
		d->decode_peer[i] = -1;
		struct nkv_decode_state *ds = nkv_sched_decode(d->s, i);
		ds->kv_blocks_used = ds->kv_blocks_total; /* no agent yet */
	}
	nkv_prom_hist_init(&d->decide_h, decide_le, (int)(sizeof(decide_le) / sizeof(decide_le[0])));
	nkv_prom_hist_init(&d->ttft_h, ttft_le, (int)(sizeof(ttft_le) / sizeof(ttft_le[0])));
	uint16_t lport = 0, mport = 0;
	d->lfd = nkv_proto_listen(listen_addr, &lport);
	if (d->lfd < 0 || (metrics && (d->mfd = nkv_proto_listen(metrics, &mport)) < 0)) {
		fprintf(stderr, "netkv scheduler: %s\n", nkv_last_error());
		return 1;
	}
	/* Descriptors: peers + scrapes + listeners, epoll, logs and a margin. */
	rlim_t nofile = raise_nofile();
	if (nofile < (rlim_t)max_peers + NKV__MHTTP_SLOTS + 64) {
		uint32_t fit = nofile > NKV__MHTTP_SLOTS + 64 + 16 ? (uint32_t)(nofile - NKV__MHTTP_SLOTS - 64) : 16;
		logf_("RLIMIT_NOFILE is %llu: taking %u peers, not %u", (unsigned long long)nofile, fit, max_peers);
		max_peers = fit;
	}
	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	d->doomed = malloc(max_peers * sizeof(*d->doomed));
	if (d->epfd < 0 || !d->doomed || nkv__peers_init(&d->pt, (int)max_peers, d->epfd, TAG_PEER, auth_s)) {
		fprintf(stderr, "netkv scheduler: cannot set up the event loop: %s\n", strerror(errno ? errno : ENOMEM));
		return 1;
	}
	struct epoll_event lev = { .events = EPOLLIN, .data.u64 = TAG_LISTEN };
	epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->lfd, &lev);
	if (d->mfd >= 0) {
		nkv__mhttp_init(&d->mh, d->epfd, d->mfd, TAG_METRICS, metrics_write, d);
		lev.data.u64 = TAG_MLISTEN;
		epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->mfd, &lev);
	}
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	/* The bound ports (a ":0" address picks one; tests read them from this line). */
	char lbuf[NKV_PROTO_MAX_ADDR + 8], mbuf[NKV_PROTO_MAX_ADDR + 8] = "";
	const char *lc = strrchr(listen_addr, ':'), *mc = metrics ? strrchr(metrics, ':') : NULL;
	snprintf(lbuf, sizeof(lbuf), "%.*s:%u", lc ? (int)(lc - listen_addr) : 0, listen_addr, lport);
	if (metrics)
		snprintf(mbuf, sizeof(mbuf), "%.*s:%u", mc ? (int)(mc - metrics) : 0, metrics, mport);
	logf_("listening on %s, policy %s, %u prefill + %u decode instances%s%s, agent timeout %g s, request "
	      "timeout %g s", lbuf, policy, d->nprefill, d->ndecode, metrics ? ", metrics on " : "", mbuf, agent_s,
	      request_s);

	while (!g_stop) {
		struct epoll_event evs[256];
		int n = epoll_wait(d->epfd, evs, 256, 100);
		if (n < 0 && errno != EINTR)
			break;
		double now = nkv_now_s();
		for (int k = 0; k < n; k++) {
			uint64_t tag = evs[k].data.u64;
			uint32_t ev = evs[k].events;
			if (tag == TAG_LISTEN)
				nkv__peers_accept(&d->pt, d->lfd, now);
			else if (tag == TAG_MLISTEN)
				nkv__mhttp_accept(&d->mh, now);
			else if (tag >= TAG_METRICS && tag < TAG_METRICS + NKV__MHTTP_SLOTS)
				nkv__mhttp_event(&d->mh, (uint32_t)(tag - TAG_METRICS), ev);
			else if (tag >= TAG_PEER && tag < TAG_PEER + (uint64_t)d->pt.max)
				peer_event(d, (int)(tag - TAG_PEER), ev);
		}
		now = nkv_now_s();
		/* Peers that did not register in time, oldest first (a FIFO: no scan). */
		for (int pi; (pi = nkv__peers_expired(&d->pt, now)) >= 0;) {
			char why[96];
			snprintf(why, sizeof(why), "no REGISTER within %g s of connecting", d->pt.auth_s);
			d->pt.timed_out++;
			drop_peer(d, pi, ETIMEDOUT, why);
		}
		while (d->ndoomed) {
			int pi = d->doomed[--d->ndoomed];
			if (!d->pt.p[pi].doomed)
				continue; /* gone this pass already (its slot may be a new peer's) */
			char why[96];
			snprintf(why, sizeof(why), "not reading: over %u MiB of messages queued to it", NKV__OUT_MAX >> 20);
			drop_peer(d, pi, 0, why);
		}
		if (d->mfd >= 0)
			nkv__mhttp_expire(&d->mh, now);
		check_agents(d, now);
		expire_requests(d, now);
		dispatch_pending(d);
		nkv_oracle_tick(nkv_sched_oracle(d->s), nkv_now_s()); /* publish samples on time, decisions or not */
		plan_probes(d, nkv_now_s());
	}
	logf_("stopping: %llu decisions, %llu finished, %llu failed", (unsigned long long)d->decisions,
	      (unsigned long long)d->finished, (unsigned long long)d->failed);
	nkv__peers_free(&d->pt);
	if (d->mfd >= 0)
		nkv__mhttp_close_all(&d->mh);
	close(d->lfd);
	if (d->mfd >= 0)
		close(d->mfd);
	close(d->epfd);
	free(d->doomed);
	while (d->pending.head)
		retire_rq(d, d->pending.head);
	while (d->running.head)
		retire_rq(d, d->running.head);
	nkv__rqtab_free(&d->rqtab);
	nkv_sched_free(d->s);
	nkv_topo_free(d->topo);
	free(d->prefill_inst), free(d->decode_inst), free(d->prefill_peer), free(d->decode_peer);
	free(d);
	return 0;
}
