/*
 * The cluster simulation: requests arrive from the trace, the scheduler
 * (scheduler/, the live daemon's code) picks (prefill, decode), the
 * prefill instance computes the uncached tokens, the KV moves as flows in
 * the flow-level network, the decode instance admits the request into its
 * continuous batch and emits tokens at the perf model's iteration time.
 *
 * What the scheduler sees, as the live one would:
 *  - its own assignments at once (nkv_sched_assign), admissions and
 *    finishes as they happen (the response stream passes the router);
 *  - decode heartbeats (running tokens, KV use) every refresh_s;
 *  - path throughput from completed transfers and probes, published by the
 *    oracle at refresh ticks (refresh_s = the staleness knob);
 *  - prefix blocks held: added when the transfer lands, removed on LRU
 *    eviction.
 * Simplifications (documented, deliberate): the decision's held blocks and
 * byte count are fixed at decision time even if an eviction happens before
 * the transfer; a request's running KV footprint is input + output tokens
 * from admission (no sharing of prefix pages between running sequences).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "netkv_sim.h"
#include "nkv_cli.h"
#include "nkv_models.h" /* NKV_GPU_DEFAULT */
#include "nkv_util.h"
#include "sim_internal.h"

enum { EV_ARRIVAL = 1, EV_PREFILL_DONE, EV_DECODE_ITER, EV_REFRESH, EV_BG, EV_XSTART, EV_TENANT, EV_XCONN };

#define MAX_TENANT_EVENTS 2e7

#define OWNER_PROBE UINT32_MAX
#define MIN_BG_PERIOD_S 1e-3
#define MAX_TICKS 1e6
#define MAX_BG_FLOWS 4096u
#define OWNER_BG (UINT32_MAX - 1)

struct req {
	struct nkv_request r;
	uint64_t line;
	struct nkv_decision dec;
	double t_pstart, t_pend, t_xstart, t_xend, t_admit, t_first, t_last;
	double tbt_sum, tbt_max;
	uint32_t generated;
	uint32_t subflows;     /* KV subflows still in flight */
	uint64_t moved;
	bool done;
	/* layer-wise streaming: the batch's prefill time, flows started at the
	 * first layer, prefill over, all bytes in before prefill ended */
	double batch_s;
	bool streaming, pend_done, landed_early;
};

struct fifo {
	uint32_t *v;
	size_t head, n, cap;
};

struct pinst {
	uint32_t inst;         /* topology index (first GPU of the group) */
	struct fifo q;
	uint32_t *batch;
	uint32_t nbatch, capbatch;
	bool busy;
	struct sim_lru *cache;
};

struct dinst {
	uint32_t inst;
	struct fifo wait;      /* KV in place, waiting for admission */
	uint32_t *run;
	uint32_t nrun, caprun;
	uint64_t run_context;  /* sum of input + generated over the running batch */
	uint64_t blocks_used, blocks_total;
	uint32_t assigned;     /* assigned, not yet admitted (true queue as the agent sees it) */
	uint64_t assigned_tokens;
	bool iterating;
	double iter_start;
	struct sim_lru *cache;
};

struct sim {
	const struct nkv_sim_config *c;
	struct nkv_sched *s;
	struct nkv_flownet *net;
	struct sim_heap heap;
	struct req *rq;
	size_t n, next_arrival, finished;
	struct pinst *P;
	struct dinst *D;
	uint32_t np, nd, group;
	uint32_t *owner;       /* flow id -> request index / OWNER_* */
	uint32_t capowner;
	double *decide_us;
	uint64_t events, probes, probe_bytes;
	uint64_t ticks;        /* refresh and background events so far */
	uint64_t moved_tier[NKV_TIERS];
	uint64_t rng;
	int *bg;               /* background flow ids */
	uint32_t nbg;
	double now;
	/* eviction callback context */
	struct nkv_prefix_index *evict_index;
	uint32_t evict_slot;
	/* forced assignments: topology instance -> P / D index (-1: none) */
	int32_t *pidx_of, *didx_of;
	uint32_t *depth;       /* prefix match scratch, max(np, nd) */
	bool ecmp;             /* flows take ECMP paths */
	int *xf;               /* layer-wise: request x group -> its KV flow ids (-1 done or none) */
	struct sim_tenants *tenants;
	uint64_t tenant_events;
	/* per-interval link utilisation: carried bytes at the last tick, the
	 * tick's time, each tier's highest interval mean */
	double *link_snap, snap_t, util_window[NKV_TIERS];
	/* xfer_conn_s: instance pairs that have pushed once (a bit per a x b) */
	uint8_t *conn_seen;
	uint32_t ninst;
};

void nkv_sim_defaults(struct nkv_sim_config *c)
{
	memset(c, 0, sizeof(*c));
	nkv_perf_preset("llama3-8b", NKV_GPU_DEFAULT, &c->perf);
	nkv_sched_defaults(&c->sched);
	c->sched.prefill_policy = NKV_PREFILL_CACHE;
	c->layout = NKV_LAYOUT_HOST_SPLIT;
	c->prefill_share = 0.5;
	c->prefill_max_tokens = 16384;
	c->prefill_cache_blocks = 0; /* from HBM: nkv_sim_prefill_cache_blocks() */
	c->probes = true;
	c->slo_ttft_s = 2.0;
	c->slo_tbt_s = 0.1;
	c->rate_scale = 1;
	c->seed = 1;
	c->tenant_on_s = 0.1;
}

static int fifo_push(struct fifo *f, uint32_t x)
{
	if (f->n == f->cap) {
		size_t c = f->cap ? f->cap * 2 : 16;
		uint32_t *v = malloc(c * sizeof(*v));

		if (!v)
			return nkv_err(ENOMEM, "sim: out of memory");
		for (size_t i = 0; i < f->n; i++)
			v[i] = f->v[(f->head + i) % f->cap];
		free(f->v);
		f->v = v;
		f->head = 0;
		f->cap = c;
	}
	f->v[(f->head + f->n++) % f->cap] = x;
	return 0;
}

static uint32_t fifo_peek(const struct fifo *f)
{
	return f->v[f->head];
}

static uint32_t fifo_pop(struct fifo *f)
{
	uint32_t x = f->v[f->head];

	f->head = (f->head + 1) % f->cap;
	f->n--;
	return x;
}

static int grow_u32(uint32_t **v, uint32_t *cap, uint32_t need)
{
	if (need <= *cap)
		return 0;
	uint32_t c = *cap ? *cap : 16;
	while (c < need)
		c *= 2;
	uint32_t *nv = realloc(*v, c * sizeof(**v));
	if (!nv)
		return nkv_err(ENOMEM, "sim: out of memory");
	*v = nv;
	*cap = c;
	return 0;
}

static inline uint64_t xorshift(uint64_t *s)
{
	return nkv_xorshift64(s);
}

static void on_evict(void *ctx, uint64_t key)
{
	struct sim *m = ctx;

	nkv_prefix_remove(m->evict_index, m->evict_slot, &key, 1);
}

static int set_owner(struct sim *m, int flow, uint32_t who)
{
	int ret = grow_u32(&m->owner, &m->capowner, (uint32_t)flow + 1);

	if (ret)
		return ret;
	m->owner[flow] = who;
	return 0;
}

/* ---- layout ---------------------------------------------------------------- */

/* Forced assignments: the prefill and decode instances are the distinct
 * ones the assignments name, in topology order. */
static int place_forced(struct sim *m)
{
	const struct nkv_topo *t = m->c->topo;
	uint32_t ni = nkv_topo_instances(t), g = m->c->perf.gpus ? m->c->perf.gpus : 1;

	m->group = g;
	m->pidx_of = malloc(ni * sizeof(int32_t));
	m->didx_of = malloc(ni * sizeof(int32_t));
	m->P = calloc(ni, sizeof(*m->P));
	m->D = calloc(ni, sizeof(*m->D));
	if (!m->pidx_of || !m->didx_of || !m->P || !m->D)
		return nkv_err(ENOMEM, "sim: out of memory");
	for (uint32_t i = 0; i < ni; i++)
		m->pidx_of[i] = m->didx_of[i] = -1;
	for (size_t i = 0; i < m->c->nassign; i++) {
		const struct nkv_sim_assign *a = &m->c->assign[i];
		struct nkv_instance_info x, y;

		if (a->prefill >= ni || a->decode >= ni)
			return nkv_err(EINVAL, "sim: request %zu: instance %u beyond the topology's %u", i,
				       a->prefill >= ni ? a->prefill : a->decode, ni);
		for (int role = 0; role < 2; role++) {
			uint32_t inst = role ? a->decode : a->prefill;

			if (inst % g || inst + g > ni)
				return nkv_err(EINVAL, "sim: request %zu: instance %u does not start a %u-GPU group", i, inst, g);
			nkv_topo_instance(t, inst, &x);
			nkv_topo_instance(t, inst + g - 1, &y);
			if (x.host != y.host)
				return nkv_err(EINVAL, "sim: a %u-GPU instance at %s would span hosts", g, x.name);
		}
		m->pidx_of[a->prefill] = 0;
		m->didx_of[a->decode] = 0;
	}
	for (uint32_t i = 0; i < ni; i++) {
		if (m->pidx_of[i] >= 0 && m->didx_of[i] >= 0) {
			struct nkv_instance_info x;
			nkv_topo_instance(t, i, &x);
			return nkv_err(EINVAL, "sim: instance %s is assigned both prefill and decode work", x.name);
		}
		if (m->pidx_of[i] >= 0) {
			m->pidx_of[i] = (int32_t)m->np;
			m->P[m->np++].inst = i;
		}
		if (m->didx_of[i] >= 0) {
			m->didx_of[i] = (int32_t)m->nd;
			m->D[m->nd++].inst = i;
		}
	}
	return 0;
}

/* The layout: prefill and decode instances from the topology (split or alt). */
static int place_layout(struct sim *m)
{
	const struct nkv_topo *t = m->c->topo;
	uint32_t ni = nkv_topo_instances(t), g = m->c->perf.gpus ? m->c->perf.gpus : 1;
	struct nkv_instance_info a, b;
	uint32_t ngroups = ni / g, hosts = nkv_topo_hosts(t);
	uint32_t *per_host_seen;
	int ret = 0;

	if (!ngroups)
		return nkv_err(EINVAL, "sim: %u GPUs cannot hold one %u-GPU instance", ni, g);
	m->group = g;
	m->P = calloc(ngroups, sizeof(*m->P));
	m->D = calloc(ngroups, sizeof(*m->D));
	per_host_seen = calloc(hosts ? hosts : 1, sizeof(uint32_t));
	if (!m->P || !m->D || !per_host_seen) {
		free(per_host_seen);
		return nkv_err(ENOMEM, "sim: out of memory");
	}
	/* groups per host, to split each host by share */
	uint32_t *groups_in_host = calloc(hosts ? hosts : 1, sizeof(uint32_t));
	if (!groups_in_host) {
		free(per_host_seen);
		return nkv_err(ENOMEM, "sim: out of memory");
	}
	for (uint32_t k = 0; k < ngroups; k++) {
		if ((ret = nkv_topo_instance(t, k * g, &a)) < 0)
			goto out;
		for (uint32_t i = 1; i < g; i++) {
			if ((ret = nkv_topo_instance(t, k * g + i, &b)) < 0)
				goto out;
			if (b.host != a.host) {
				ret = nkv_err(EINVAL, "sim: a %u-GPU instance at GPU %u would span hosts %s and %s", g,
					      k * g, a.host_name, b.host_name);
				goto out;
			}
		}
		groups_in_host[a.host]++;
	}
	for (uint32_t k = 0; k < ngroups; k++) {
		bool pre;

		nkv_topo_instance(t, k * g, &a);
		if (m->c->layout == NKV_LAYOUT_HOST_ALT) {
			pre = a.host % 2 == 0;
		} else {
			uint32_t np_host = (uint32_t)lround(m->c->prefill_share * groups_in_host[a.host]);
			if (groups_in_host[a.host] >= 2 && np_host == 0)
				np_host = 1;
			if (groups_in_host[a.host] >= 2 && np_host >= groups_in_host[a.host])
				np_host = groups_in_host[a.host] - 1;
			pre = per_host_seen[a.host] < np_host;
			per_host_seen[a.host]++;
		}
		if (pre)
			m->P[m->np++].inst = k * g;
		else
			m->D[m->nd++].inst = k * g;
	}
	if (!m->np || !m->nd)
		ret = nkv_err(EINVAL, "sim: layout gives %u prefill and %u decode instances; need both", m->np, m->nd);
out:
	free(per_host_seen);
	free(groups_in_host);
	return ret < 0 ? ret : 0;
}

static int place(struct sim *m)
{
	return m->c->assign ? place_forced(m) : place_layout(m);
}

/* ---- prefill ---------------------------------------------------------------- */

static uint32_t uncached(const struct sim *m, const struct req *q)
{
	uint64_t held = (uint64_t)q->dec.prefill_held_blocks * m->c->sched.prefix_block_tokens;

	return held >= q->r.input_len ? 1 : (uint32_t)(q->r.input_len - held);
}

static int prefill_start(struct sim *m, uint32_t p)
{
	struct pinst *P = &m->P[p];
	uint64_t tokens = 0;
	uint32_t lens[256];
	int ret;

	if (P->busy || !P->q.n)
		return 0;
	P->nbatch = 0;
	while (P->q.n && P->nbatch < 256) {
		struct req *q = &m->rq[fifo_peek(&P->q)];
		uint32_t l = uncached(m, q);

		if (P->nbatch && tokens + l > m->c->prefill_max_tokens)
			break;
		if ((ret = grow_u32(&P->batch, &P->capbatch, P->nbatch + 1)))
			return ret;
		lens[P->nbatch] = l;
		P->batch[P->nbatch++] = fifo_pop(&P->q);
		tokens += l;
		q->t_pstart = m->now;
	}
	P->busy = true;
	double dt = nkv_perf_prefill_batch_s(&m->c->perf, lens, P->nbatch);
	/* Layer-wise: every request's KV starts moving once the batch's first
	 * layer is done (pushed first: at equal times it runs before the end). */
	for (uint32_t i = 0; m->c->layerwise_layers && i < P->nbatch; i++) {
		m->rq[P->batch[i]].batch_s = dt;
		if ((ret = nkv__sim_heap_push(&m->heap, m->now + dt / m->c->layerwise_layers, EV_XSTART, P->batch[i], 0)))
			return ret;
	}
	return nkv__sim_heap_push(&m->heap, m->now + dt, EV_PREFILL_DONE, p, 0);
}

/* ---- decode ------------------------------------------------------------------ */

static uint64_t need_blocks(const struct sim *m, const struct req *q)
{
	uint64_t bt = m->c->sched.kv_block_tokens;

	return ((uint64_t)q->r.input_len + q->r.output_len + bt - 1) / bt;
}

static int decode_admit(struct sim *m, uint32_t d)
{
	struct dinst *D = &m->D[d];
	int ret;

	/* KV that lands while an iteration runs waits for its end: requests
	 * join the batch at iteration boundaries (as the testbed's decode
	 * agent and continuous batching engines do), so the first token comes
	 * one full iteration after admission. */
	if (D->iterating)
		return 0;
	while (D->wait.n) {
		struct req *q = &m->rq[fifo_peek(&D->wait)];
		uint64_t nb = need_blocks(m, q);

		if (D->nrun >= m->c->perf.max_batch || (D->blocks_used + nb > D->blocks_total && D->nrun))
			break; /* an empty instance admits even an oversized request, so nothing hangs */
		fifo_pop(&D->wait);
		if ((ret = grow_u32(&D->run, &D->caprun, D->nrun + 1)))
			return ret;
		D->run[D->nrun++] = (uint32_t)(q - m->rq);
		D->run_context += q->r.input_len;
		D->blocks_used += nb;
		D->assigned--;
		D->assigned_tokens -= (uint64_t)q->r.input_len + q->r.output_len;
		q->t_admit = m->now;
		if ((ret = nkv_sched_admit(m->s, &q->r, &q->dec)))
			return ret;
	}
	if (!D->iterating && D->nrun) {
		D->iterating = true;
		D->iter_start = m->now;
		return nkv__sim_heap_push(&m->heap, m->now + nkv_perf_decode_iter_s(&m->c->perf, D->run_context, D->nrun),
				     EV_DECODE_ITER, d, 0);
	}
	return 0;
}

static int decode_iter_done(struct sim *m, uint32_t d)
{
	struct dinst *D = &m->D[d];
	uint32_t keep = 0;
	int ret;

	D->iterating = false;
	for (uint32_t i = 0; i < D->nrun; i++) {
		struct req *q = &m->rq[D->run[i]];

		q->generated++;
		D->run_context++;
		if (q->generated == 1) {
			q->t_first = m->now;
		} else {
			double gap = m->now - q->t_last;
			q->tbt_sum += gap;
			if (gap > q->tbt_max)
				q->tbt_max = gap;
		}
		q->t_last = m->now;
		if (q->generated >= q->r.output_len) {
			q->done = true;
			m->finished++;
			D->run_context -= (uint64_t)q->r.input_len + q->generated;
			D->blocks_used -= need_blocks(m, q);
			if ((ret = nkv_sched_finish(m->s, &q->r, &q->dec)))
				return ret;
			continue;
		}
		D->run[keep++] = D->run[i];
	}
	D->nrun = keep;
	return decode_admit(m, d);
}

/* ---- transfers ------------------------------------------------------------------ */

static int transfer_landed(struct sim *m, uint32_t qi)
{
	struct req *q = &m->rq[qi];
	uint32_t d = q->dec.decode, p = q->dec.prefill;
	int ret;

	q->t_xend = m->now;
	double took = q->t_xend - q->t_xstart;
	/* A streamed transfer drained no faster than prefill made its layers:
	 * the network's own figure is the last layer's time x layers when that
	 * is shorter (the path kept up), else the whole time (it fell behind). */
	if (q->streaming && m->c->layerwise_layers * (q->t_xend - q->t_pend) < took)
		took = m->c->layerwise_layers * (q->t_xend - q->t_pend);
	if ((ret = nkv_sched_transfer_done(m->s, &q->r, &q->dec, took, m->now)))
		return ret;
	/* Both caches now hold the request's prefix (the scheduler indexed them). */
	m->evict_index = nkv_sched_decode_index(m->s);
	m->evict_slot = d;
	for (uint32_t b = 0; b < q->r.nblocks; b++)
		nkv__sim_lru_touch(m->D[d].cache, q->r.hash_ids[b], on_evict, m);
	m->evict_index = nkv_sched_prefill_index(m->s);
	m->evict_slot = p;
	for (uint32_t b = 0; b < q->r.nblocks; b++)
		nkv__sim_lru_touch(m->P[p].cache, q->r.hash_ids[b], on_evict, m);
	if ((ret = fifo_push(&m->D[d].wait, qi)))
		return ret;
	return decode_admit(m, d);
}

/* A request's KV as m->group parallel flows GPU i -> GPU i (a TP-k
 * instance), each capped at the rate prefill makes its share over the
 * batch's time when streaming (layer-wise), else uncapped. */
static int add_flows(struct sim *m, uint32_t qi, bool capped)
{
	struct req *q = &m->rq[qi];
	uint32_t g = m->group;
	int ret;

	q->subflows = g;
	for (uint32_t i = 0; i < g; i++) {
		uint64_t part = q->dec.bytes / g + (i < q->dec.bytes % g ? 1 : 0);
		int f;

		if (capped)
			m->xf[(size_t)qi * g + i] = -1;
		if (!part) {
			q->subflows--;
			continue;
		}
		if ((f = nkv_flownet_add(m->net, q->dec.prefill_inst + i, q->dec.decode_inst + i, part, m->now)) < 0)
			return f;
		if ((ret = set_owner(m, f, qi)))
			return ret;
		if (!capped)
			continue;
		m->xf[(size_t)qi * g + i] = f;
		if (q->batch_s > 0 && (ret = nkv_flownet_set_cap(m->net, f, (double)part / q->batch_s, m->now)))
			return ret;
	}
	return 0;
}

static int transfer_flows(struct sim *m, uint32_t qi)
{
	struct req *q = &m->rq[qi];
	int ret;

	if ((ret = add_flows(m, qi, false)))
		return ret;
	return q->subflows ? 0 : transfer_landed(m, qi);
}

static int transfer_start(struct sim *m, uint32_t qi)
{
	struct req *q = &m->rq[qi];

	q->t_xstart = m->now;
	if (!q->dec.bytes)
		return transfer_landed(m, qi);
	if (m->conn_seen) {
		/* the first push between two instances opens the connection first (EV_XCONN) */
		size_t bit = (size_t)q->dec.prefill_inst * m->ninst + q->dec.decode_inst;
		if (!(m->conn_seen[bit / 8] & (1u << (bit % 8)))) {
			m->conn_seen[bit / 8] |= (uint8_t)(1u << (bit % 8));
			return nkv__sim_heap_push(&m->heap, m->now + m->c->xfer_conn_s, EV_XCONN, qi, 0);
		}
	}
	return transfer_flows(m, qi);
}

/* Layer-wise streaming (EV_XSTART, the batch's first layer done): the
 * request's flows start, each capped at the rate prefill makes its bytes
 * (its share / the batch's prefill time), so no byte leaves before its
 * layer exists; the caps go at prefill end (prefill_done_req). Nothing
 * to move: the request lands at prefill end as usual. */
static int transfer_stream(struct sim *m, uint32_t qi)
{
	struct req *q = &m->rq[qi];

	if (!q->dec.bytes)
		return 0;
	q->t_xstart = m->now;
	q->streaming = true;
	return add_flows(m, qi, true);
}

/* Prefill end of a request: start its transfer, or (streaming) lift its caps. */
static int prefill_done_req(struct sim *m, uint32_t qi)
{
	struct req *q = &m->rq[qi];
	int ret;

	q->t_pend = m->now;
	if (!q->streaming)
		return transfer_start(m, qi);
	q->pend_done = true;
	for (uint32_t i = 0; i < m->group; i++) {
		int f = m->xf[(size_t)qi * m->group + i];
		if (f >= 0 && (ret = nkv_flownet_set_cap(m->net, f, INFINITY, m->now)))
			return ret;
	}
	return q->landed_early ? transfer_landed(m, qi) : 0;
}

static int flow_done(struct sim *m, int f, uint64_t bytes, double started)
{
	uint32_t who = m->owner[f];

	if (who == OWNER_PROBE) {
		/* probes: owner[f] marks the kind; the path is kept in arg via owner of pair arrays */
		return 0;
	}
	struct req *q = &m->rq[who];
	int tier = q->dec.tier >= 0 && q->dec.tier < NKV_TIERS ? q->dec.tier : 0;
	q->moved += bytes;
	m->moved_tier[tier] += bytes;
	(void)started;
	for (uint32_t i = 0; q->streaming && i < m->group; i++)
		if (m->xf[(size_t)who * m->group + i] == f)
			m->xf[(size_t)who * m->group + i] = -1;
	if (--q->subflows == 0) {
		if (q->streaming && !q->pend_done) {
			q->landed_early = true; /* not with caps in place; kept for safety */
			return 0;
		}
		return transfer_landed(m, who);
	}
	return 0;
}

/* ---- telemetry --------------------------------------------------------------- */

struct probe_track {
	uint32_t src, dst;
	uint64_t bytes;
	double start;
};

/* Each link's mean utilisation since the last tick; the busiest per tier is kept. */
static void sample_links(struct sim *m)
{
	uint32_t nl = nkv_topo_links(m->c->topo);
	double dt = m->now - m->snap_t;

	for (uint32_t l = 0; l < nl; l++) {
		struct nkv_link_info li;
		double now = nkv_flownet_link_carried_at(m->net, l, m->now);

		if (dt > 0 && nkv_topo_link(m->c->topo, l, &li) == 0 && li.tier >= 1 && li.tier < NKV_TIERS &&
		    li.bytes_per_s > 0) {
			double u = (now - m->link_snap[l]) / (li.bytes_per_s * dt);
			if (u > m->util_window[li.tier])
				m->util_window[li.tier] = u;
		}
		m->link_snap[l] = now;
	}
	m->snap_t = m->now;
}

static int refresh(struct sim *m, struct probe_track **pt, uint32_t *npt, uint32_t *cappt)
{
	sample_links(m);
	/* Decode heartbeats: the agent's own figures replace the scheduler's. */
	for (uint32_t d = 0; d < m->nd; d++) {
		struct nkv_decode_state *st = nkv_sched_decode(m->s, d);
		struct dinst *D = &m->D[d];

		st->running = D->nrun;
		st->running_tokens = D->run_context;
		st->queued = D->assigned;
		st->queued_tokens = D->assigned_tokens;
		st->kv_blocks_used = D->blocks_used;
		st->refreshed_s = m->now;
	}
	if (!m->c->probes)
		return 0;
	struct nkv_probe_params pp;
	struct nkv_probe pr[64];
	nkv_probe_defaults(nkv_sched_oracle(m->s), &pp);
	int n = nkv_probe_plan(nkv_sched_oracle(m->s), &pp, m->now, pr, 64);
	if (n < 0)
		return n;
	for (int i = 0; i < n; i++) {
		int f = nkv_flownet_add(m->net, pr[i].src, pr[i].dst, pr[i].bytes, m->now), ret;

		if (f < 0)
			return f;
		if ((ret = set_owner(m, f, OWNER_PROBE)))
			return ret;
		if ((uint32_t)f >= *cappt) {
			uint32_t c = *cappt ? *cappt : 64;
			while (c <= (uint32_t)f)
				c *= 2;
			struct probe_track *np = realloc(*pt, c * sizeof(**pt));
			if (!np)
				return nkv_err(ENOMEM, "sim: out of memory");
			*pt = np;
			*cappt = c;
		}
		(*pt)[f] = (struct probe_track){ pr[i].src, pr[i].dst, pr[i].bytes, m->now };
		if ((uint32_t)f >= *npt)
			*npt = (uint32_t)f + 1;
		m->probes++;
		m->probe_bytes += pr[i].bytes;
	}
	return 0;
}

/* ---- main loop ----------------------------------------------------------------- */

/* The decision a forced assignment stands for: what the scheduler would
 * have filled in for that (p, d), from the same state (its prefix indexes,
 * its oracle, ticked as nkv_sched_decide would). */
static int forced_decision(struct sim *m, struct req *q, const struct nkv_sim_assign *a)
{
	struct nkv_decision *d = &q->dec;
	struct nkv_oracle *o = nkv_sched_oracle(m->s);
	uint64_t pbt = m->c->sched.prefix_block_tokens ? m->c->sched.prefix_block_tokens : NKV_PREFIX_BLOCK_TOKENS;
	int ret;

	memset(d, 0, sizeof(*d));
	if ((ret = nkv_oracle_tick(o, m->now)) < 0)
		return ret;
	d->prefill = (uint32_t)m->pidx_of[a->prefill];
	d->decode = (uint32_t)m->didx_of[a->decode];
	d->prefill_inst = a->prefill;
	d->decode_inst = a->decode;
	d->tier = nkv_topo_tier(m->c->topo, a->prefill, a->decode);
	if (q->r.nblocks) {
		nkv_prefix_match(nkv_sched_decode_index(m->s), q->r.hash_ids, q->r.nblocks, m->depth);
		d->held_blocks = m->depth[d->decode];
		nkv_prefix_match(nkv_sched_prefill_index(m->s), q->r.hash_ids, q->r.nblocks, m->depth);
		d->prefill_held_blocks = m->depth[d->prefill];
	}
	if (a->bytes != UINT64_MAX) {
		d->bytes = a->bytes;
	} else {
		uint64_t held = (uint64_t)d->held_blocks * pbt;
		d->bytes = (q->r.input_len - (held < q->r.input_len ? held : q->r.input_len)) * q->r.kv_bytes_per_token;
	}
	double est = nkv_oracle_cost(o, a->prefill, a->decode, d->bytes, m->now);
	d->est_xfer_s = est > 0 ? est : 0;
	return 0;
}

static int arrival(struct sim *m, uint32_t qi)
{
	struct req *q = &m->rq[qi];
	uint64_t t0 = nkv_now_ns();
	int ret = m->c->assign ? forced_decision(m, q, &m->c->assign[qi]) : nkv_sched_decide(m->s, &q->r, m->now, &q->dec);

	m->decide_us[qi] = (double)(nkv_now_ns() - t0) * 1e-3;
	if (ret)
		return nkv_err_wrap(ret, "request %zu", (size_t)qi);
	if ((ret = nkv_sched_assign(m->s, &q->r, &q->dec)))
		return ret;
	m->D[q->dec.decode].assigned++;
	m->D[q->dec.decode].assigned_tokens += (uint64_t)q->r.input_len + q->r.output_len;
	if ((ret = fifo_push(&m->P[q->dec.prefill].q, qi)))
		return ret;
	return prefill_start(m, q->dec.prefill);
}

/* The busiest link's mean and peak utilisation per tier (netkv_sim.h). */
static void link_utilisation(const struct sim *m, struct nkv_sim_summary *s)
{
	double span = m->now - m->rq[0].r.arrival_s;
	uint32_t nl = nkv_topo_links(m->c->topo);

	s->ecmp = m->ecmp;
	memcpy(s->util_window, m->util_window, sizeof(s->util_window));
	for (uint32_t l = 0; l < nl; l++) {
		struct nkv_link_info li;

		if (nkv_topo_link(m->c->topo, l, &li) < 0 || li.tier < 1 || li.tier >= NKV_TIERS || !(li.bytes_per_s > 0))
			continue;
		double mean = span > 0 ? nkv_flownet_link_carried(m->net, l) / (li.bytes_per_s * span) : 0;
		double peak = nkv_flownet_link_peak(m->net, l) / li.bytes_per_s;
		if (mean > s->util_mean[li.tier])
			s->util_mean[li.tier] = mean;
		if (peak > s->util_peak[li.tier])
			s->util_peak[li.tier] = peak;
	}
}

uint64_t nkv_sim_prefill_cache_blocks(const struct nkv_sim_config *c)
{
	if (c->prefill_cache_blocks)
		return c->prefill_cache_blocks;
	uint64_t cap = nkv_perf_kv_capacity_tokens(&c->perf), bt = c->sched.prefix_block_tokens;
	if (!bt || cap <= c->prefill_max_tokens)
		return 0;
	return (cap - c->prefill_max_tokens) / bt;
}

int nkv_sim_fabric_parse(const char *s, enum nkv_sim_fabric *out)
{
	if (!strcmp(s, "auto"))
		*out = NKV_FABRIC_AUTO;
	else if (!strcmp(s, "aggregate"))
		*out = NKV_FABRIC_AGGREGATE;
	else if (!strcmp(s, "ecmp"))
		*out = NKV_FABRIC_ECMP;
	else
		return nkv_err(EINVAL, "fabric '%s': auto, aggregate or ecmp", s);
	return 0;
}

static int summarise(struct sim *m, struct nkv_sim_result *res)
{
	size_t n = m->n, k = 0, kt = 0, met = 0;
	double *a = malloc((n ? n : 1) * sizeof(double)), *b = malloc((n ? n : 1) * sizeof(double));
	double *x = malloc((n ? n : 1) * sizeof(double));
	struct nkv_sim_summary *s = &res->sum;
	double st = 0, sb = 0, sx = 0;

	if (!a || !b || !x) {
		free(a), free(b), free(x);
		return nkv_err(ENOMEM, "sim: out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		const struct req *q = &m->rq[i];
		struct nkv_sim_record *r = &res->recs[i];

		*r = (struct nkv_sim_record){
			.id = q->r.id, .line = q->line, .arrival_s = q->r.arrival_s, .input_len = q->r.input_len,
			.output_len = q->r.output_len, .prefill = q->dec.prefill_inst, .decode = q->dec.decode_inst,
			.tier = q->dec.tier, .held_blocks = q->dec.held_blocks, .kv_bytes = q->moved,
			.queue_wait_s = q->t_pstart - q->r.arrival_s, .prefill_s = q->t_pend - q->t_pstart,
			.transfer_s = q->t_xend - q->t_xstart, .est_transfer_s = q->dec.est_xfer_s,
			.decode_wait_s = q->t_admit - q->t_xend, .first_step_s = q->t_first - q->t_admit,
			.tokens = q->generated, .ttft_s = q->t_first - q->r.arrival_s,
			.tbt_mean_s = q->generated > 1 ? q->tbt_sum / (q->generated - 1) : 0, .tbt_max_s = q->tbt_max,
			.finish_s = q->t_last,
		};
		if (!q->done)
			continue;
		r->slo_met = r->ttft_s <= m->c->slo_ttft_s && r->tbt_mean_s <= m->c->slo_tbt_s;
		met += r->slo_met;
		a[k] = r->ttft_s;
		x[k++] = r->transfer_s;
		st += r->ttft_s;
		sx += r->transfer_s;
		if (q->generated > 1) {
			b[kt++] = r->tbt_mean_s;
			sb += r->tbt_mean_s;
		}
		s->bytes_scheduled += q->dec.bytes;
		s->bytes_moved += q->moved;
	}
	nkv_sort_doubles(a, k);
	nkv_sort_doubles(b, kt);
	nkv_sort_doubles(x, k);
	s->requests = n;
	s->finished = k;
	s->ttft_mean = k ? st / (double)k : 0;
	s->ttft_p50 = nkv_percentile(a, k, 0.5);
	s->ttft_p90 = nkv_percentile(a, k, 0.9);
	s->ttft_p99 = nkv_percentile(a, k, 0.99);
	s->tbt_mean = kt ? sb / (double)kt : 0;
	s->tbt_p50 = nkv_percentile(b, kt, 0.5);
	s->tbt_p90 = nkv_percentile(b, kt, 0.9);
	s->tbt_p99 = nkv_percentile(b, kt, 0.99);
	s->transfer_mean = k ? sx / (double)k : 0;
	s->transfer_p99 = nkv_percentile(x, k, 0.99);
	s->slo_attainment = n ? (double)met / (double)n : 0;
	for (int t = 0; t < NKV_TIERS; t++)
		s->gb_tier[t] = (double)m->moved_tier[t] * 1e-9;
	double sd = 0;
	for (size_t i = 0; i < n; i++)
		sd += m->decide_us[i];
	memcpy(a, m->decide_us, n * sizeof(double));
	nkv_sort_doubles(a, n);
	s->decide_mean_us = n ? sd / (double)n : 0;
	s->decide_p99_us = nkv_percentile(a, n, 0.99);
	s->makespan_s = m->now;
	s->events = m->events;
	s->net_recomputes = nkv_flownet_recomputes(m->net);
	s->probes = m->probes;
	s->probe_bytes = m->probe_bytes;
	link_utilisation(m, s);
	free(a), free(b), free(x);
	return 0;
}

static void sim_free(struct sim *m)
{
	for (uint32_t p = 0; p < m->np; p++) {
		free(m->P[p].q.v);
		free(m->P[p].batch);
		nkv__sim_lru_free(m->P[p].cache);
	}
	for (uint32_t d = 0; d < m->nd; d++) {
		free(m->D[d].wait.v);
		free(m->D[d].run);
		nkv__sim_lru_free(m->D[d].cache);
	}
	free(m->P);
	free(m->D);
	free(m->rq);
	free(m->xf);
	free(m->conn_seen);
	free(m->link_snap);
	nkv__sim_tenants_free(m->tenants);
	free(m->owner);
	free(m->decide_us);
	free(m->bg);
	free(m->pidx_of);
	free(m->didx_of);
	free(m->depth);
	nkv__sim_heap_free(&m->heap);
	nkv_flownet_free(m->net);
	nkv_sched_free(m->s);
}

/* Other tenants' flows: random pairs whose path is of the chosen tier.
 * Called again every bg_period_s: the old ones leave, new ones start, so
 * the congestion moves and telemetry can go stale. */
static int add_background(struct sim *m)
{
	uint32_t ni = nkv_topo_instances(m->c->topo), total = 0;
	int ret;

	for (uint32_t i = 0; i < m->nbg; i++)
		if ((ret = nkv_flownet_remove(m->net, m->bg[i], m->now)))
			return ret;
	m->nbg = 0;
	for (int tier = 0; tier < NKV_TIERS; tier++)
		total += m->c->bg_flows[tier];
	if (!total)
		return 0;
	if (!m->bg && !(m->bg = calloc(total, sizeof(int))))
		return nkv_err(ENOMEM, "sim: out of memory");

	for (int tier = 0; tier < NKV_TIERS; tier++) {
		for (uint32_t k = 0; k < m->c->bg_flows[tier]; k++) {
			uint32_t a = 0, b = 0, tries;
			int f;

			for (tries = 0; tries < 100000; tries++) {
				a = (uint32_t)(xorshift(&m->rng) % ni);
				b = (uint32_t)(xorshift(&m->rng) % ni);
				if (a != b && nkv_topo_tier(m->c->topo, a, b) == tier)
					break;
			}
			if (tries == 100000)
				return nkv_err(EINVAL, "sim: no pair of GPUs is %s-tier apart for background flows",
					       nkv_tier_name(tier));
			if ((f = nkv_flownet_add(m->net, a, b, UINT64_MAX, m->now)) < 0)
				return f;
			if ((ret = set_owner(m, f, OWNER_BG)))
				return ret;
			m->bg[m->nbg++] = f;
		}
	}
	return 0;
}

static double thread_cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Each background flow takes part in every rate recompute: bound their number
 * (a sum of per-tier counts near UINT32_MAX also wrapped the flow array). */
static int check_background(const struct nkv_sim_config *c)
{
	uint64_t total = 0;

	for (int tier = 0; tier < NKV_TIERS; tier++)
		total += c->bg_flows[tier];
	if (total > MAX_BG_FLOWS)
		return nkv_err(EINVAL, "sim: %llu background flows, at most %u", (unsigned long long)total, MAX_BG_FLOWS);
	return 0;
}

/* Refresh and background ticks run through idle gaps too: a trace whose
 * span is years of simulated time would keep the loop busy for hours. */
static int check_span(const struct sim *m, double refresh_s)
{
	double span = m->rq[m->n - 1].r.arrival_s - m->rq[0].r.arrival_s;
	double ticks = span / refresh_s + (m->c->bg_period_s > 0 ? span / m->c->bg_period_s : 0);

	if (ticks > MAX_TICKS)
		return nkv_err(EINVAL, "sim: the trace spans %.3g s, %.3g refresh/background ticks (max %g): "
				       "raise the rate scale or limit the requests", span, ticks, MAX_TICKS);
	return 0;
}

/* The same bound while running: durations out of range (a huge compute time
 * scale, transfer setup or floor) leave requests unfinished for ages of
 * simulated time, ticked through at every refresh. */
/* Tenant source i changes state (tenant.c); its next change is queued while requests remain. */
static int tenant_toggle(struct sim *m, uint32_t i)
{
	double next;
	int f, ret;

	if (++m->tenant_events > MAX_TENANT_EVENTS)
		return nkv_err(ERANGE, "sim: more than %g tenant on/off events: lengthen --tenant-on or shorten the run",
			       MAX_TENANT_EVENTS);
	if ((ret = nkv__sim_tenant_toggle(m->tenants, i, m->net, m->now, &f, &next)))
		return ret;
	if (f >= 0 && (ret = set_owner(m, f, OWNER_BG)))
		return ret;
	if (m->finished < m->n && isfinite(next) && (ret = nkv__sim_heap_push(&m->heap, next, EV_TENANT, i, 0)))
		return ret;
	return 0;
}

/* Tenant sources and their expected on/off events over the trace's span, bounded up front. */
static int start_tenants(struct sim *m)
{
	const struct nkv_sim_config *c = m->c;
	bool any = false;
	int ret;

	for (int k = 0; k < NKV_TIERS; k++)
		any |= c->tenant_util[k] != 0;
	if (c->n_tenant_on) {
		/* as measured: each period's source switches on at its start */
		if (c->n_tenant_on > MAX_TENANT_EVENTS / 2)
			return nkv_err(EINVAL, "sim: %zu tenant on periods (max %g)", c->n_tenant_on, MAX_TENANT_EVENTS / 2);
		if ((ret = nkv__sim_tenants_sched(c->topo, c->tenant_on, c->n_tenant_on, &m->tenants)))
			return ret;
		for (uint32_t i = 0; i < nkv__sim_tenants_count(m->tenants); i++)
			if ((ret = nkv__sim_heap_push(&m->heap, nkv__sim_tenant_first(m->tenants, i, m->now), EV_TENANT, i, 0)))
				return ret;
		return 0;
	}
	if (!any)
		return 0;
	if ((ret = nkv__sim_tenants_create(c->topo, m->ecmp, c->tenant_util, c->tenant_on_s, c->seed, &m->tenants)))
		return ret;
	double span = m->rq[m->n - 1].r.arrival_s - m->rq[0].r.arrival_s + 60, rate = 0;
	for (int k = 1; k < NKV_TIERS; k++)
		rate = fmax(rate, 2 * c->tenant_util[k] / c->tenant_on_s); /* two switches per on/off cycle of on_s / U */
	double expect = rate * span * nkv__sim_tenants_count(m->tenants);
	if (expect > MAX_TENANT_EVENTS)
		return nkv_err(EINVAL, "sim: %u tenant sources switching every %.3g s on average make ~%.3g events over "
				       "the trace's span (max %g): lengthen the on period or limit the requests",
			       nkv__sim_tenants_count(m->tenants), 1 / rate, expect, MAX_TENANT_EVENTS);
	for (uint32_t i = 0; i < nkv__sim_tenants_count(m->tenants); i++)
		if ((ret = tenant_toggle(m, i)))
			return ret;
	return 0;
}

static int count_tick(struct sim *m)
{
	if (++m->ticks <= MAX_TICKS)
		return 0;
	return nkv_err(ERANGE, "sim: %zu of %zu requests unfinished after %.3g s simulated (%g refresh/background "
			       "ticks): a duration is out of range (compute time scale, transfer setup or floor, output length?)",
		       m->n - m->finished, m->n, m->now, MAX_TICKS);
}

int nkv_sim_run(const struct nkv_sim_config *c, const struct nkv_trace *trace, struct nkv_sim_result **out)
{
	struct sim m = { .c = c, .rng = c->seed * 0x9e3779b97f4a7c15ULL + 1 };
	struct nkv_sim_result *res = NULL;
	struct probe_track *pt = NULL;
	uint32_t npt = 0, cappt = 0;
	uint32_t *pre = NULL, *dec = NULL;
	uint64_t kvbpt = c->perf.kv_bytes_per_token;
	uint64_t t0 = nkv_now_ns();
	double cpu0 = thread_cpu_s();
	double refresh_s = c->sched.oracle.refresh_s > 0 ? c->sched.oracle.refresh_s : 1;
	int ret;

	*out = NULL;
	if (!c->topo)
		return nkv_err(EINVAL, "sim: no topology");
	if (!(c->rate_scale > 0) || !isfinite(c->rate_scale))
		return nkv_err(EINVAL, "sim: rate scale %g must be > 0", c->rate_scale);
	if (!kvbpt)
		return nkv_err(EINVAL, "sim: model %s has no KV bytes per token", c->perf.model);
	if ((ret = check_background(c)))
		return ret;
	if (c->prefill_cache_blocks > SIM_LRU_MAX_BLOCKS || c->decode_cache_blocks > SIM_LRU_MAX_BLOCKS)
		return nkv_err(EINVAL, "sim: prefill cache of %llu blocks, decode cache of %llu: at most %u each",
			       (unsigned long long)c->prefill_cache_blocks, (unsigned long long)c->decode_cache_blocks,
			       SIM_LRU_MAX_BLOCKS);
	if (!(c->bg_period_s == 0 || (c->bg_period_s >= MIN_BG_PERIOD_S && isfinite(c->bg_period_s))))
		return nkv_err(EINVAL, "sim: background period %g s must be 0 (static) or at least %g s", c->bg_period_s,
			       MIN_BG_PERIOD_S);
	m.n = c->limit && c->limit < trace->n ? c->limit : trace->n;
	if (!m.n)
		return nkv_err(EINVAL, "sim: empty trace");
	if (c->assign && c->nassign != m.n)
		return nkv_err(EINVAL, "sim: %zu forced assignments for %zu requests", c->nassign, m.n);
	if ((ret = place(&m)))
		goto fail;
	m.rq = calloc(m.n, sizeof(*m.rq));
	if (c->layerwise_layers > NKV_SIM_MAX_LAYERS) {
		ret = nkv_err(EINVAL, "sim: layer-wise streaming over %u layers, at most %u", c->layerwise_layers,
			      NKV_SIM_MAX_LAYERS);
		goto fail;
	}
	m.ninst = nkv_topo_instances(c->topo);
	if (c->xfer_conn_s > 0 && !c->layerwise_layers &&
	    !(m.conn_seen = calloc((size_t)m.ninst * m.ninst / 8 + 1, 1))) {
		ret = nkv_err(ENOMEM, "sim: out of memory");
		goto fail;
	}
	if (c->layerwise_layers && !(m.xf = malloc(m.n * m.group * sizeof(*m.xf)))) {
		ret = nkv_err(ENOMEM, "sim: out of memory");
		goto fail;
	}
	m.decide_us = calloc(m.n, sizeof(double));
	pre = malloc(m.np * sizeof(uint32_t));
	dec = malloc(m.nd * sizeof(uint32_t));
	if (!m.rq || !m.decide_us || !pre || !dec) {
		ret = nkv_err(ENOMEM, "sim: out of memory for %zu requests", m.n);
		goto fail;
	}
	for (uint32_t p = 0; p < m.np; p++)
		pre[p] = m.P[p].inst;
	for (uint32_t d = 0; d < m.nd; d++)
		dec[d] = m.D[d].inst;
	if ((ret = nkv_sched_create(c->topo, &c->perf, &c->sched, pre, m.np, dec, m.nd, &m.s)))
		goto fail;
	if ((ret = nkv_flownet_create(c->topo, &m.net)))
		goto fail;
	if (c->isolated_flows)
		nkv_flownet_set_isolated(m.net, true);
	if (c->fabric != NKV_FABRIC_AUTO && c->fabric != NKV_FABRIC_AGGREGATE && c->fabric != NKV_FABRIC_ECMP) {
		ret = nkv_err(EINVAL, "sim: fabric %d unknown", (int)c->fabric);
		goto fail;
	}
	m.ecmp = c->fabric == NKV_FABRIC_ECMP || (c->fabric == NKV_FABRIC_AUTO && nkv_topo_ecmp(c->topo, NULL, NULL));
	if (m.ecmp && (ret = nkv_flownet_set_ecmp(m.net, true)))
		goto fail;
	nkv_flownet_set_overhead(m.net, c->xfer_setup_s, c->xfer_floor_s);
	if ((c->link_burst_s > 0 || c->link_burst_min > 0) &&
	    (ret = nkv_flownet_set_buckets(m.net, c->link_burst_s, c->link_burst_min, c->link_peak_Bps, 1)))
		goto fail;
	if (!(m.depth = calloc((m.np > m.nd ? m.np : m.nd) + 1, sizeof(uint32_t)))) {
		ret = nkv_err(ENOMEM, "sim: out of memory");
		goto fail;
	}
	uint64_t cap_tok = nkv_perf_kv_capacity_tokens(&c->perf);
	uint64_t dblocks = c->decode_cache_blocks ? c->decode_cache_blocks : cap_tok / 4 / c->sched.prefix_block_tokens;
	if (!dblocks)
		dblocks = 1;
	uint64_t pblocks = nkv_sim_prefill_cache_blocks(c);
	if (!pblocks) {
		ret = nkv_err(EINVAL, "sim: no room for a prefill prefix cache: %.1f GB HBM x %.2f holds %.1f GB of "
				      "weights and a %u-token batch, nothing more (give prefill_cache_blocks)",
			      (double)c->perf.hbm_bytes * 1e-9, c->perf.mem_util, (double)c->perf.weight_bytes * 1e-9,
			      c->prefill_max_tokens);
		goto fail;
	}
	if (pblocks > SIM_LRU_MAX_BLOCKS)
		pblocks = SIM_LRU_MAX_BLOCKS;
	for (uint32_t p = 0; p < m.np; p++)
		if ((ret = nkv__sim_lru_create((uint32_t)pblocks, &m.P[p].cache)))
			goto fail;
	for (uint32_t d = 0; d < m.nd; d++) {
		if ((ret = nkv__sim_lru_create((uint32_t)dblocks, &m.D[d].cache)))
			goto fail;
		if (c->decode_kv_tokens) {
			uint32_t kbt = c->sched.kv_block_tokens ? c->sched.kv_block_tokens : 16;
			nkv_sched_decode(m.s, d)->kv_blocks_total = c->decode_kv_tokens / kbt;
		}
		m.D[d].blocks_total = nkv_sched_decode(m.s, d)->kv_blocks_total;
	}
	for (size_t i = 0; i < m.n; i++) {
		nkv_trace_request(trace, i, c->rate_scale, kvbpt, &m.rq[i].r);
		m.rq[i].r.id = i;
		m.rq[i].line = trace->reqs[i].line;
		if (c->assign && c->assign[i].arrival_s >= 0)
			m.rq[i].r.arrival_s = c->assign[i].arrival_s;
		if (!isfinite(m.rq[i].r.arrival_s)) {
			ret = nkv_err(EINVAL, "sim: request %zu (line %llu) arrives at %g s", i,
				      (unsigned long long)m.rq[i].line, m.rq[i].r.arrival_s);
			goto fail;
		}
		if (i && m.rq[i].r.arrival_s < m.rq[i - 1].r.arrival_s) {
			ret = nkv_err(EINVAL, "sim: request %zu arrives at %.6f s, before request %zu (%.6f s)", i,
				      m.rq[i].r.arrival_s, i - 1, m.rq[i - 1].r.arrival_s);
			goto fail;
		}
	}
	if ((ret = check_span(&m, refresh_s)))
		goto fail;
	m.now = m.rq[0].r.arrival_s; /* background and tenant flows start with the trace */
	m.snap_t = m.now;
	if (!(m.link_snap = calloc(nkv_topo_links(c->topo) + 1, sizeof(double)))) {
		ret = nkv_err(ENOMEM, "sim: out of memory");
		goto fail;
	}
	if ((ret = add_background(&m)))
		goto fail;
	if ((ret = start_tenants(&m)))
		goto fail;
	if (c->bg_period_s > 0 && (ret = nkv__sim_heap_push(&m.heap, m.rq[0].r.arrival_s + c->bg_period_s, EV_BG, 0, 0)))
		goto fail;
	if ((ret = nkv__sim_heap_push(&m.heap, m.rq[0].r.arrival_s, EV_ARRIVAL, 0, 0)) ||
	    (ret = nkv__sim_heap_push(&m.heap, m.rq[0].r.arrival_s, EV_REFRESH, 0, 0)))
		goto fail;

	for (;;) {
		double tn = nkv_flownet_next(m.net), th = sim_heap_top(&m.heap);
		struct sim_event e;

		if (isinf(tn) && isinf(th))
			break;
		m.events++;
		if (tn <= th) {
			uint64_t bytes;
			double started;
			int f;

			m.now = tn;
			while ((f = nkv_flownet_pop(m.net, tn, &bytes, &started)) >= 0) {
				if (m.owner[f] == OWNER_PROBE) {
					struct probe_track *p = &pt[f];
					nkv_oracle_sample(nkv_sched_oracle(m.s), p->src, p->dst, p->bytes, tn - p->start, tn,
							  NKV_SAMPLE_PROBE);
					continue;
				}
				if ((ret = flow_done(&m, f, bytes, started)))
					goto fail;
			}
			continue;
		}
		nkv__sim_heap_pop(&m.heap, &e);
		m.now = e.t;
		switch (e.type) {
		case EV_ARRIVAL:
			if ((ret = arrival(&m, e.who)))
				goto fail;
			if (++m.next_arrival < m.n &&
			    (ret = nkv__sim_heap_push(&m.heap, m.rq[m.next_arrival].r.arrival_s, EV_ARRIVAL,
						 (uint32_t)m.next_arrival, 0)))
				goto fail;
			if (c->progress && m.next_arrival % 2000 == 0)
				nkv_cli_progress("sim: %zu/%zu requests arrived", m.next_arrival, m.n);
			break;
		case EV_PREFILL_DONE: {
			struct pinst *P = &m.P[e.who];
			P->busy = false;
			for (uint32_t i = 0; i < P->nbatch; i++)
				if ((ret = prefill_done_req(&m, P->batch[i])))
					goto fail;
			P->nbatch = 0;
			if ((ret = prefill_start(&m, e.who)))
				goto fail;
			break;
		}
		case EV_TENANT:
			if ((ret = tenant_toggle(&m, e.who)))
				goto fail;
			break;
		case EV_XSTART:
			if ((ret = transfer_stream(&m, e.who)))
				goto fail;
			break;
		case EV_XCONN:
			if ((ret = transfer_flows(&m, e.who)))
				goto fail;
			break;
		case EV_DECODE_ITER:
			if ((ret = decode_iter_done(&m, e.who)))
				goto fail;
			break;
		case EV_BG:
			if ((ret = count_tick(&m)) || (ret = add_background(&m)))
				goto fail;
			if (m.finished < m.n &&
			    (ret = nkv__sim_heap_push(&m.heap, m.now + c->bg_period_s, EV_BG, 0, 0)))
				goto fail;
			break;
		case EV_REFRESH:
			if ((ret = count_tick(&m)) || (ret = refresh(&m, &pt, &npt, &cappt)))
				goto fail;
			if (m.finished < m.n &&
			    (ret = nkv__sim_heap_push(&m.heap, m.now + refresh_s, EV_REFRESH, 0, 0)))
				goto fail;
			break;
		}
	}
	if (c->progress)
		nkv_cli_progress_end();
	if (m.finished != m.n) {
		ret = nkv_err(EPROTO, "sim: %zu of %zu requests never finished (model bug)", m.n - m.finished, m.n);
		goto fail;
	}
	res = calloc(1, sizeof(*res));
	if (!res || !(res->recs = calloc(m.n, sizeof(*res->recs)))) {
		free(res);
		res = NULL;
		ret = nkv_err(ENOMEM, "sim: out of memory");
		goto fail;
	}
	res->n = m.n;
	if ((ret = summarise(&m, res)))
		goto fail;
	res->sum.wall_s = (double)(nkv_now_ns() - t0) * 1e-9;
	res->sum.cpu_s = thread_cpu_s() - cpu0;
	*out = res;
	ret = 0;
fail:
	if (ret && res) {
		nkv_sim_result_free(res);
		*out = NULL;
	}
	free(pre);
	free(dec);
	free(pt);
	sim_free(&m);
	return ret;
}

void nkv_sim_result_free(struct nkv_sim_result *r)
{
	if (!r)
		return;
	free(r->recs);
	free(r);
}
