/*
 * netkv scheduler: picks a (prefill, decode) pair for each request.
 * Linked by the live scheduler daemon and by the simulator, so both decide
 * with the same code.
 *
 * Pieces, each usable alone:
 *   - the Mooncake trace reader (nkv_trace_*)
 *   - the prefix-block index (nkv_prefix_*): hash id -> instances holding it
 *   - the network cost oracle (nkv_oracle_*): expected transfer time p -> d
 *   - the probe planner (nkv_probe_plan)
 *   - the scheduler (nkv_sched_*): cluster state + oracle + policies
 *
 * Intended use (daemon or simulator):
 *   nkv_sched_create(topo, perf, params, prefill[], np, decode[], nd, &s)
 *   per request:   nkv_sched_decide(s, &req, now, &dec); nkv_sched_assign(s, &req, &dec)
 *   KV pushed:     nkv_sched_transfer_done(s, &req, &dec, seconds, t)
 *   decode admits: nkv_sched_admit(...); finishes: nkv_sched_finish(...)
 *   heartbeats:    overwrite *nkv_sched_decode(s, d) / *nkv_sched_prefill(s, p);
 *                  evictions: nkv_prefix_remove(nkv_sched_decode_index(s), d, ids, n)
 *   probes:        nkv_probe_plan(nkv_sched_oracle(s), ...) every window, results
 *                  back through nkv_oracle_sample(..., NKV_SAMPLE_PROBE)
 *
 * Not thread-safe: one thread owns a scheduler (the daemon's event loop,
 * the simulator's). Deterministic for a given seed and call sequence.
 *
 * Time is in seconds (double) on the caller's clock (the simulator's
 * virtual clock or the daemon's monotonic clock); sizes are in bytes;
 * instance ids given to the oracle are topology instance indexes
 * (netkv_topo.h). Functions return 0 (or a count) or a negative errno with
 * the detail in nkv_last_error(). The decision path (nkv_sched_decide,
 * nkv_oracle_cost) allocates nothing and is O(|D|) per request, plus the
 * prefix walk, O(blocks + matches).
 *
 * ---------------------------------------------------------------------------
 * Decode policies (choose d, given the prefill p already chosen). Per
 * candidate d, with the request's n prefix blocks:
 *   held(d)   = leading prefix blocks of the request d already holds
 *               (prefix index walk; a block counts only if all blocks
 *               before it are held, since Mooncake hash ids are chained)
 *   hit(d)    = held(d) / n                                (0 when n = 0)
 *   missing(d)= bytes d must receive
 *             = (input_len - min(held(d) * prefix_block_tokens, input_len))
 *               * kv_bytes_per_token
 *   load(d)   = max((kv_used(d) * kv_block_tokens + queued_tokens(d))
 *                     / (kv_total(d) * kv_block_tokens),
 *                   (running + queued) / max_batch)         (may exceed 1)
 *   wait(d)   = decode-side wait estimate, seconds (below)
 *   xfer(d)   = oracle transfer time p -> d for missing(d) bytes, seconds
 *
 *   rr           next d in turn: each d once a round, the order shuffled
 *                anew every round (seeded), so it never locks step with
 *                the prefill round-robin.
 *   random       uniform d (xorshift, seeded by params.seed).
 *   load         min load(d).
 *   cache        max held(d).
 *   cla          min  (1 - hit(d)) + load(d)        (equal weights)
 *   cla*         min  w_cache * (1 - hit(d)) + w_load * load(d)
 *                (weights found by a grid search over a trace, given in
 *                params; w_cache weighs a full miss against w_load a
 *                full decode instance)
 *   netkv-topo   min  w_cache * (1 - hit(d)) + w_load * load(d)
 *                     + w_tier * tier(p, d) / 3
 *                (cla* plus a tier penalty; no bandwidth figures)
 *   netkv-static min  w_wait * wait(d) + w_xfer * xfer_nominal(d) + w_tbt * pack(d)
 *                xfer_nominal = path base latency + missing / tier_bw
 *                (topology figures only: no measurements, no congestion)
 *   netkv        min  est_ttft(d) + w_tbt * pack(d)
 *                est_ttft(d) = w_wait * wait(d) + w_xfer * xfer(d)
 *                xfer = oracle cost with measured throughput and live
 *                congestion (see the oracle below)
 *   pack(d)      what placing r on d adds to the sum over requests of
 *                their mean TBT (seconds): r's own TBT there plus the
 *                iteration growth r causes for every sequence it joins,
 *                for the share of their remaining output it overlaps:
 *                  B    = min(running + queued, max_batch)
 *                  own  = decode_iter_s(running_tokens + queued_tokens
 *                                       + input_len, B + 1)
 *                  slow = B * (decode_b * input_len + decode_c)
 *                  ov   = min(output_len, R) / R  (R = mean_remaining_output;
 *                         0 when R = 0)
 *                  pack = own + ov * slow
 *                w_tbt (s of TTFT per s of a request's mean TBT, default
 *                NKV_W_TBT_DEFAULT = 16) is the exchange rate: wait(d)
 *                counts one decode iteration, pack the batch's slowdown
 *                over the request's life. 16 comes from `netkv sim
 *                experiment tbt`, which also tunes it out of sample (on
 *                the samples cla* is tuned on: lowest mean TTFT with TBT
 *                over rr <= 0.5 ms everywhere): that picks 4, which held
 *                out gains 0.4 points of TTFT and crosses the bound
 *                (+0.51 ms, rag); 16 holds it (+0.27 ms). bench/sim/README.md.
 *   Ties (within 1e-12 relative, or exactly equal scores): netkv-topo,
 *   netkv-static and netkv take the lower tier(p, d), then lower load(d),
 *   then the lower decode index (netkv and netkv-static: among the
 *   candidates within 1e-12 of the row's minimum, nkv_view_argmin_row);
 *   the topology-oblivious load, cache, cla
 *   and cla* take the lower load(d), then a seeded random one of those
 *   still equal (they must not be topology-aware through their ties).
 *   In netkv / netkv-static the CLA terms are in seconds: the cache term
 *   is the transfer time saved by held blocks, the load term is wait(d).
 *
 * Decode-side wait (seconds), from d's telemetry and the perf model:
 *   iter      = decode_iter_s(running_tokens + input_len, running + 1)
 *   free_tok  = (kv_total - kv_used) * kv_block_tokens
 *   need_tok  = input_len + output_len (the request's full KV footprint)
 *   def_tok   = max(0, queued_tokens + need_tok - free_tok)
 *               tokens that must be freed (the queue ahead comes first)
 *   def_seq   = max(0, running + queued + 1 - max_batch)
 *   drain     = mean_remaining_output * iter       seconds until the
 *               running batch has turned over once
 *   admit     = drain * max(def_tok / max(running_tokens, 1),
 *                           def_seq / max(running, 1))
 *   wait      = admit + iter                       (the first decode step
 *               emits the first token)
 *   mean_remaining_output (params) is the expected remaining output of a
 *   running sequence; default 256 tokens.
 *
 * Prefill policies: rr, or cache: min over p of the tokens p must get
 * through before r's prefill is done = queued uncached tokens(p) +
 * input_len - min(held_p(p) * prefix_block_tokens, input_len) (cache hit
 * and queue in one figure, so a hit does not pile work on one instance);
 * ties go round from a rotating start. Shared by every decode policy so
 * experiments isolate the decode choice.
 * ---------------------------------------------------------------------------
 */
#ifndef NETKV_SCHED_H
#define NETKV_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netkv_perf.h"
#include "netkv_topo.h"
#include "netkv_error.h" /* nkv_last_error() */

/* The API libnetkv exports; the rest of the library is hidden. */
#pragma GCC visibility push(default)

#define NKV_PREFIX_BLOCK_TOKENS 512 /* Mooncake: one hash id per 512 tokens */
#define NKV_TRACE_MAX_TOKENS (1u << 24) /* a request's input or output length, at most */
#define NKV_W_TBT_DEFAULT 16.0 /* netkv's weight of pack(d), see the formulas above */

/* ===== requests and the Mooncake trace reader ============================ */

struct nkv_request {
	uint64_t id;
	double arrival_s;
	uint32_t input_len;        /* prompt tokens */
	uint32_t output_len;       /* tokens to generate */
	const uint64_t *hash_ids;  /* chained prefix hashes, one per prefix block */
	uint32_t nblocks;
	uint64_t kv_bytes_per_token; /* from the model preset (transfer/), e.g. 131072 */
};

struct nkv_trace_req {
	uint64_t timestamp_ms;     /* as in the file */
	uint32_t input_len, output_len;
	uint32_t nblocks;
	const uint64_t *hash_ids;  /* into the trace's pool */
	uint64_t line;             /* 1-based line number in the file */
};

struct nkv_trace {
	size_t n;
	struct nkv_trace_req *reqs;
	uint64_t *pool;            /* all hash ids */
	size_t pool_len;
	size_t lines;              /* lines read, blank ones included */
	size_t skipped;            /* bad lines skipped (skip_bad) */
};

struct nkv_trace_opts {
	bool skip_bad;             /* false: first bad line aborts the load */
	size_t limit;              /* stop after this many requests, 0 = all */
	uint32_t block_tokens;     /* hash id granularity, 0 = 512 */
	/* Called for each bad line when skip_bad (line number, reason). */
	void (*on_bad)(void *ctx, uint64_t line, const char *why);
	void *ctx;
};

/*
 * JSONL, one object per line: timestamp (ms, integer 0 .. 2^53, non-decreasing),
 * input_length and output_length (integers 1 .. 16M), hash_ids
 * (array of integers >= 0, exactly ceil(input_length / block_tokens) of
 * them). Other fields are ignored; blank lines are skipped. Errors read
 * "FILE:LINE: what is wrong". opts may be NULL (abort on the first bad line).
 */
int nkv_trace_load(const char *path, const struct nkv_trace_opts *o, struct nkv_trace **out);
/* Same from memory; name is used in error messages. */
int nkv_trace_parse(const char *buf, size_t len, const char *name, const struct nkv_trace_opts *o,
		    struct nkv_trace **out);
void nkv_trace_free(struct nkv_trace *t);
/* Fill a request from trace entry i (arrival = timestamp_ms / 1000 / speed). */
void nkv_trace_request(const struct nkv_trace *t, size_t i, double speed, uint64_t kv_bytes_per_token,
		       struct nkv_request *out);

/* ===== prefix-block index ================================================ */

/*
 * hash id -> the slots (instances) holding that block. Slots are small
 * integers 0 .. nslots-1 chosen by the owner (the scheduler uses decode
 * index for its decode index and prefill index for its prefill index).
 * Adding and removing may allocate; matching does not.
 */
struct nkv_prefix_index;
int nkv_prefix_create(uint32_t nslots, struct nkv_prefix_index **out);
void nkv_prefix_free(struct nkv_prefix_index *x);
/* slot now holds these blocks (idempotent per block). */
int nkv_prefix_add(struct nkv_prefix_index *x, uint32_t slot, const uint64_t *hash_ids, uint32_t n);
/* slot evicted these blocks (blocks it did not hold are ignored). */
int nkv_prefix_remove(struct nkv_prefix_index *x, uint32_t slot, const uint64_t *hash_ids, uint32_t n);
/* slot forgets everything (agent restart). O(index size). */
void nkv_prefix_clear_slot(struct nkv_prefix_index *x, uint32_t slot);
/* Holders of one block; *holders stays valid until the next add/remove. */
uint32_t nkv_prefix_holders(const struct nkv_prefix_index *x, uint64_t hash_id, const uint32_t **holders);
/* depth[s] = number of leading blocks of hash_ids[0..n) slot s holds, for
 * every slot (depth has nslots entries). O(n + matches + nslots), no
 * allocation. Returns the largest depth. */
uint32_t nkv_prefix_match(const struct nkv_prefix_index *x, const uint64_t *hash_ids, uint32_t n,
			  uint32_t *depth);
size_t nkv_prefix_blocks(const struct nkv_prefix_index *x); /* distinct hash ids indexed */

/* ===== network cost oracle ================================================ */

/*
 * Expected transfer time of `bytes` from instance p to instance d:
 *
 *   cost = lat(p,d) + bytes / bw(p,d) + w_cong * max over links l of path(p,d)
 *                                               of inflight(l) / capacity(l)
 *
 *   lat  base latency of the path (topology, or the operator's figure).
 *   bw   the path's throughput estimate: an EWMA of the samples, used while
 *        the newest sample is younger than staleness_s; otherwise the
 *        nominal figure of the path's tier (nkv_topo_tier_bw: the loaded
 *        per-GPU share at that tier) — "fall back to the tier figure".
 *   inflight(l) bytes the scheduler placed on link l (nkv_oracle_flow_add)
 *        and not yet finished (nkv_oracle_flow_remove): the time to drain
 *        what is ahead of us on the busiest link of the path.
 *
 * Samples (passive: each completed KV transfer; active: probe results;
 * external: the operator's figures) give throughput = bytes / (seconds -
 * lat), ignored below min_sample_bytes (those measure latency). They are
 * buffered and become visible at refresh ticks (every refresh_s, driven by
 * nkv_oracle_tick), as a telemetry pipeline polling every refresh_s would
 * show them; sweeping refresh_s sweeps staleness. EWMA with the sample's
 * age: a sample arriving dt after the previous one gets weight
 *   w = 1 - (1 - alpha) * exp(-dt / tau)
 * (alpha when samples come back to back, -> 1 after a long silence), and an
 * estimate older than staleness_s is replaced outright.
 *
 * The oracle knows nothing of policies or requests: an operator can feed
 * it from their own telemetry (nkv_oracle_load_figures) instead of
 * netkv's probes.
 */
struct nkv_oracle_params {
	double refresh_s;          /* telemetry refresh interval, 0.1 .. 60, default 1 */
	double staleness_s;        /* estimates older than this fall back; 0 (default) = 5 * refresh_s */
	double alpha;              /* EWMA weight of a back-to-back sample, default 0.3 */
	double tau_s;              /* age constant of the weight; 0 (default) = refresh_s */
	double w_cong;             /* weight of the congestion term, default 1 */
	uint64_t min_sample_bytes; /* default 1 MiB */
};
void nkv_oracle_defaults(struct nkv_oracle_params *p);

struct nkv_oracle;
/* Paths are kept for src[i] -> dst[j] (topology instance indexes; NULL and
 * 0 = every instance). The topology must outlive the oracle. params may be
 * NULL (defaults). The topology must be tree-shaped as netkv_topo.h
 * describes (checked for every kept path; -EINVAL otherwise). Memory:
 * about 70 bytes per kept path. */
int nkv_oracle_create(const struct nkv_topo *t, const struct nkv_oracle_params *params,
		      const uint32_t *src, uint32_t nsrc, const uint32_t *dst, uint32_t ndst,
		      struct nkv_oracle **out);
void nkv_oracle_free(struct nkv_oracle *o);
const struct nkv_oracle_params *nkv_oracle_get_params(const struct nkv_oracle *o);

/* Expected seconds (0 when p == d); negative errno for a path the oracle does not keep. */
double nkv_oracle_cost(const struct nkv_oracle *o, uint32_t p, uint32_t d, uint64_t bytes, double now);
/* The same with topology figures only (no samples, no congestion). */
double nkv_oracle_cost_nominal(const struct nkv_oracle *o, uint32_t p, uint32_t d, uint64_t bytes);

/* Throughput the oracle would use now (B/s), and whether it comes from
 * samples (fresh = true) or the tier figure. */
double nkv_oracle_bw(const struct nkv_oracle *o, uint32_t p, uint32_t d, double now, bool *fresh);

enum nkv_sample_kind { NKV_SAMPLE_PASSIVE, NKV_SAMPLE_PROBE, NKV_SAMPLE_EXTERNAL };
/* A finished transfer or probe: bytes moved in seconds, finished at t. */
int nkv_oracle_sample(struct nkv_oracle *o, uint32_t p, uint32_t d, uint64_t bytes, double seconds,
		      double t, enum nkv_sample_kind kind);
/* Publish buffered samples if a refresh tick has passed; cheap when not.
 * Returns the number of paths updated. */
int nkv_oracle_tick(struct nkv_oracle *o, double now);
/* Publish everything now, whatever the tick. */
int nkv_oracle_refresh(struct nkv_oracle *o, double now);

/* Congestion: bytes placed on the links of path p -> d / finished. */
int nkv_oracle_flow_add(struct nkv_oracle *o, uint32_t p, uint32_t d, uint64_t bytes);
int nkv_oracle_flow_remove(struct nkv_oracle *o, uint32_t p, uint32_t d, uint64_t bytes);
uint64_t nkv_oracle_link_inflight(const struct nkv_oracle *o, uint32_t link);
uint64_t nkv_oracle_inflight_total(const struct nkv_oracle *o); /* summed over links */

/*
 * The operator's own per-path figures, JSON:
 *   {"paths": [{"src": "h0g1", "dst": "h1g2", "bytes_per_s": 4.5e10,
 *               "latency_s": 3e-6, "age_s": 0.2}, ...]}
 * src/dst are topology instance names or indexes; latency_s and age_s are
 * optional. Each entry replaces the path's estimate as measured at
 * now - age_s (published at once, no refresh wait). Every entry is
 * validated; a bad one rejects the whole document with its index named.
 * Returns the number of paths set.
 */
int nkv_oracle_load_figures(struct nkv_oracle *o, const char *path, double now);
int nkv_oracle_parse_figures(struct nkv_oracle *o, const char *json, size_t len, double now);

/* ===== probe planner ====================================================== */

struct nkv_probe {
	uint32_t src, dst;         /* topology instance indexes */
	uint64_t bytes;
	int tier;
};

struct nkv_probe_params {
	double window_s;           /* the plan covers this much time, default refresh_s */
	double budget;             /* share of each link's capacity probes may use, default 0.01 */
	double min_age_s;          /* probe paths whose data is older than this, default refresh_s */
	/* Probe size: the smallest that takes >= latency_factor x the path's
	 * base latency at the tier figure (so it measures throughput, not
	 * latency), at least min_bytes, rounded up to 64 KiB. */
	double latency_factor;     /* default 100 */
	uint64_t min_bytes;        /* default 4 MiB */
};
void nkv_probe_defaults(const struct nkv_oracle *o, struct nkv_probe_params *p);

/*
 * Choose up to max probes: paths older than min_age_s, oldest first (never
 * sampled = oldest), then cheapest tier first, keeping each link's probe
 * bytes within budget * capacity * window_s. Pairs on the same instance are
 * never probed. A chosen path is not planned again until the later of its
 * expected completion (at the tier figure) and the end of the window.
 * Returns the count.
 */
int nkv_probe_plan(struct nkv_oracle *o, const struct nkv_probe_params *pp, double now, struct nkv_probe *out,
		   uint32_t max);

/* ===== cluster state and the scheduler ==================================== */

/* Per decode instance. Telemetry (heartbeats) overwrites these; the
 * scheduler also counts its own assignments in between (nkv_sched_assign,
 * nkv_sched_admit, nkv_sched_finish) as Dynamo's router does. */
struct nkv_decode_state {
	uint32_t inst;             /* topology instance index */
	uint32_t running;          /* sequences in the running batch */
	uint32_t queued;           /* assigned, not yet admitted */
	uint64_t running_tokens;   /* sum of the running sequences' context */
	uint64_t queued_tokens;    /* KV footprint of the queued ones */
	uint64_t kv_blocks_total;  /* KV pool, in kv_block_tokens blocks */
	uint64_t kv_blocks_used;
	double refreshed_s;        /* when its telemetry was last refreshed */
};

struct nkv_prefill_state {
	uint32_t inst;
	uint32_t queued;           /* requests waiting or running */
	uint64_t queued_tokens;    /* their uncached tokens */
	double refreshed_s;
};

enum nkv_prefill_policy { NKV_PREFILL_RR, NKV_PREFILL_CACHE };

struct nkv_sched_params {
	const char *policy;        /* decode policy name, default "netkv" */
	enum nkv_prefill_policy prefill_policy; /* default NKV_PREFILL_RR */
	double w_cache, w_load;    /* cla* and netkv-topo; default 1, 1 */
	double w_tier;             /* netkv-topo, default 0.5 */
	double w_wait, w_xfer;     /* netkv/netkv-static, default 1, 1 */
	double w_tbt;              /* netkv/netkv-static: s of TTFT per s of mean TBT (pack), default NKV_W_TBT_DEFAULT */
	double mean_remaining_output; /* tokens, default 256 */
	uint32_t prefix_block_tokens; /* default 512 */
	uint32_t kv_block_tokens;  /* KV page size for kv_blocks_*, default 16 */
	uint64_t seed;             /* random, default 1 */
	struct nkv_oracle_params oracle;
};
void nkv_sched_defaults(struct nkv_sched_params *p);

struct nkv_sched;

/* prefill[] and decode[] are topology instance indexes (disjoint or not).
 * Decode KV pools start at the perf model's capacity. The topology must
 * outlive the scheduler; perf is copied. */
int nkv_sched_create(const struct nkv_topo *t, const struct nkv_perf *perf, const struct nkv_sched_params *params,
		     const uint32_t *prefill, uint32_t nprefill, const uint32_t *decode, uint32_t ndecode,
		     struct nkv_sched **out);
void nkv_sched_free(struct nkv_sched *s);
/* Change the decode policy (weights from params stay). */
int nkv_sched_set_policy(struct nkv_sched *s, const char *name);
const char *nkv_sched_policy_name(const struct nkv_sched *s);

uint32_t nkv_sched_ndecode(const struct nkv_sched *s);
uint32_t nkv_sched_nprefill(const struct nkv_sched *s);
struct nkv_decode_state *nkv_sched_decode(struct nkv_sched *s, uint32_t d);
struct nkv_prefill_state *nkv_sched_prefill(struct nkv_sched *s, uint32_t p);
struct nkv_oracle *nkv_sched_oracle(struct nkv_sched *s);
struct nkv_prefix_index *nkv_sched_decode_index(struct nkv_sched *s);   /* slots = decode indexes */
struct nkv_prefix_index *nkv_sched_prefill_index(struct nkv_sched *s);  /* slots = prefill indexes */
const struct nkv_perf *nkv_sched_perf(const struct nkv_sched *s);
const struct nkv_sched_params *nkv_sched_get_params(const struct nkv_sched *s);

struct nkv_decision {
	uint32_t prefill, decode;          /* indexes into the scheduler's lists */
	uint32_t prefill_inst, decode_inst; /* topology instance indexes */
	int tier;
	uint32_t held_blocks;              /* leading prefix blocks d already holds */
	uint32_t prefill_held_blocks;      /* leading prefix blocks p already holds */
	uint64_t bytes;                    /* KV bytes to move p -> d */
	double est_wait_s, est_xfer_s, est_ttft_s; /* netkv's estimates (filled for every policy) */
	double score;                      /* the policy's own score of d (lower wins) */
	double est_pack_s;                 /* pack(d): the TBT the placement costs (filled for every policy) */
};

/* Choose (p, d) for r. Changes nothing but the policy's own cursor (rr,
 * random) and the oracle's published estimates (nkv_oracle_tick(now) runs
 * first). O(|D| + blocks + matches), no allocation. -EINVAL for a request
 * without KV bytes per token or with more blocks than its input needs. */
int nkv_sched_decide(struct nkv_sched *s, const struct nkv_request *r, double now, struct nkv_decision *out);
/* Record a decision: d's queue and KV use, p's queue, in-flight bytes on the path. */
int nkv_sched_assign(struct nkv_sched *s, const struct nkv_request *r, const struct nkv_decision *dec);
/* The transfer finished after `seconds` at time t: in-flight bytes come
 * off the path, a passive sample goes to the oracle, p's queue shrinks,
 * d now holds the request's prefix blocks. */
int nkv_sched_transfer_done(struct nkv_sched *s, const struct nkv_request *r, const struct nkv_decision *dec,
			    double seconds, double t);
/* d admitted the request into its running batch / finished it. */
int nkv_sched_admit(struct nkv_sched *s, const struct nkv_request *r, const struct nkv_decision *dec);
int nkv_sched_finish(struct nkv_sched *s, const struct nkv_request *r, const struct nkv_decision *dec);

/* Decode-side wait estimate for r on d (the formula above), seconds. */
double nkv_sched_decode_wait(const struct nkv_sched *s, uint32_t d, const struct nkv_request *r);
/* load(d) as defined above. */
double nkv_sched_decode_load(const struct nkv_sched *s, uint32_t d);

/* ===== policies =========================================================== */

/*
 * One ops table per decode policy, registered in one table (policy.c, or
 * nkv_policy_register). pick() sees the scheduler through a read-only view
 * (policy.h: counts, each decode's state, load, wait, tier from a prefill,
 * prefix blocks held, the oracle's cost, params), the request and the
 * chosen prefill index, and fills out->decode and out->score. The
 * framework fills the rest of the decision. state comes from init() (may
 * be NULL); it is the policy's own and pick() may change it.
 */
struct nkv_sched_view;
struct nkv_policy_ops {
	const char *name;
	const char *summary;
	int (*init)(const struct nkv_sched_view *v, void **state);
	void (*fini)(void *state);
	int (*pick)(const struct nkv_sched_view *v, void *state, const struct nkv_request *r, uint32_t prefill,
		    double now, struct nkv_decision *out);
};
/* NULL when unknown. Names: rr random load cache cla cla* netkv-topo netkv-static netkv */
const struct nkv_policy_ops *nkv_policy_find(const char *name);
/* NULL-terminated list of all policies, in the order above, then the registered ones. */
const struct nkv_policy_ops *const *nkv_policies(void);

/* ===== cla* tuning ========================================================= */

/*
 * cla*'s weights come from a grid search over a trace. Running the trace is
 * the simulator's job (or the testbed's), so the search takes the
 * evaluation as a callback: eval(ctx, params with policy "cla*" and the
 * candidate w_cache / w_load, &objective) returns 0 and the objective to
 * minimise (e.g. mean TTFT in seconds), or a negative errno that stops the
 * search. The grid is walked in order (w_cache outer, w_load inner), (0, 0)
 * is skipped, strictly better wins, so the result is reproducible for a
 * deterministic evaluator. NULL grids mean the default grid
 * {0.25, 0.5, 1, 2, 4, 8} for that weight (no 0: it drops a term). Tune on
 * requests the weights are then not evaluated on (netkv sim tune does).
 */
typedef int (*nkv_tune_eval_fn)(void *ctx, const struct nkv_sched_params *p, double *objective);
struct nkv_tune_result {
	double w_cache, w_load;
	double objective;
	uint32_t evaluated;
};
int nkv_cla_tune(const struct nkv_sched_params *base, const double *grid_cache, uint32_t ncache,
		 const double *grid_load, uint32_t nload, nkv_tune_eval_fn eval, void *ctx,
		 struct nkv_tune_result *out);

#pragma GCC visibility pop

#endif
