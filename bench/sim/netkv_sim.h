/*
 * netkv simulator: a trace-driven, discrete-event model of a disaggregated
 * prefill/decode cluster on a tiered fabric, deciding with the scheduler's
 * own policy code (scheduler/netkv_sched.h) and time models
 * (scheduler/netkv_perf.h).
 *
 * Pieces:
 *   - nkv_flownet_*: the flow-level network. KV transfers are flows over the
 *     topology's directional links; rates are max-min fair (progressive
 *     filling), recomputed whenever a flow arrives or leaves. A flow's bytes
 *     drain at its rate; it completes when its last byte has drained plus
 *     the path's base latency (per-hop latencies summed by topo/).
 *     Background flows (other tenants) never finish and take their max-min
 *     share of every link they cross.
 *   - nkv_sim_*: the cluster. Prefill instances (FIFO queue, batched prefill
 *     with the perf model, prefix cache with LRU), decode instances
 *     (continuous batching, KV capacity, TBT = decode iteration time from the
 *     perf model, prefix cache with LRU), telemetry refreshed every
 *     refresh_s, the scheduler deciding each request on arrival.
 *
 * Single-threaded and deterministic: same inputs and seed, same output
 * (events at equal times are ordered by insertion sequence).
 * Functions return 0 (or a count) or a negative errno with the detail in
 * nkv_last_error().
 */
#ifndef NETKV_SIM_H
#define NETKV_SIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "netkv_perf.h"
#include "netkv_sched.h"
#include "netkv_topo.h"

/* ===== flow-level network ================================================ */

struct nkv_flownet;

/* Links and capacities come from the topology (which must outlive the net). */
int nkv_flownet_create(const struct nkv_topo *t, struct nkv_flownet **out);
/* A net over bare links with the given capacities (B/s) and no topology:
 * flows name their links directly (nkv_flownet_add_links). For tests. */
int nkv_flownet_create_links(const double *capacity, uint32_t nlinks, struct nkv_flownet **out);
void nkv_flownet_free(struct nkv_flownet *n);

/* Start a flow of `bytes` from instance a to b at time now (the net first
 * advances to now). Returns a flow id >= 0. bytes == UINT64_MAX: a
 * background flow that never finishes. a == b: a flow over no links that
 * completes after zero time. */
int nkv_flownet_add(struct nkv_flownet *n, uint32_t a, uint32_t b, uint64_t bytes, double now);
/* The same over explicit links, with a fixed extra latency (seconds). */
int nkv_flownet_add_links(struct nkv_flownet *n, const uint32_t *links, uint32_t nlinks, uint64_t bytes,
			  double latency_s, double now);
/* Remove a flow (e.g. a background flow) at time now. */
int nkv_flownet_remove(struct nkv_flownet *n, int flow, double now);
/* Time the next flow completes (drain + latency); INFINITY when none will. */
double nkv_flownet_next(const struct nkv_flownet *n);
/* Advance to `now` (<= nkv_flownet_next) and pop one flow completing at or
 * before now: returns its id and fills *bytes and *started_s; -ENOENT when
 * none completes by then. */
int nkv_flownet_pop(struct nkv_flownet *n, double now, uint64_t *bytes, double *started_s);
/* Current max-min rate of a flow, B/s (0 for a finished or unknown one). */
double nkv_flownet_rate(const struct nkv_flownet *n, int flow);
uint32_t nkv_flownet_active(const struct nkv_flownet *n); /* flows in the net, background included */
/* Bytes delivered by finished (non-background) flows, per tier of the
 * flow's path (tier of a links-only flow: 0). */
uint64_t nkv_flownet_bytes_done(const struct nkv_flownet *n, int tier);
uint64_t nkv_flownet_recomputes(const struct nkv_flownet *n);

/* ===== the cluster simulation ============================================ */

enum nkv_sim_layout {
	NKV_LAYOUT_HOST_SPLIT,  /* in each host, first half of the GPUs prefill, second half decode */
	NKV_LAYOUT_HOST_ALT,    /* whole hosts alternate: even hosts prefill, odd hosts decode */
};

struct nkv_sim_config {
	const struct nkv_topo *topo;
	struct nkv_perf perf;           /* model + GPU time models */
	struct nkv_sched_params sched;  /* policy, weights, oracle (refresh_s = staleness) */
	enum nkv_sim_layout layout;
	double prefill_share;           /* share of GPUs that prefill (HOST_SPLIT), default 0.5 */
	uint32_t prefill_max_tokens;    /* batch budget of a prefill step, default 16384 */
	uint64_t prefill_cache_blocks;  /* prefix blocks each prefill keeps (LRU), default 2048 */
	uint64_t decode_cache_blocks;   /* prefix blocks each decode keeps (LRU), 0 = a quarter of its KV */
	bool probes;                    /* run the probe planner every refresh, default true */
	uint32_t bg_flows[NKV_TIERS];   /* background flows whose path is of that tier */
	double bg_period_s;             /* re-place the background flows every period (0 = static) */
	double slo_ttft_s, slo_tbt_s;   /* default 2 s, 0.1 s (mean TBT per request) */
	double rate_scale;              /* arrival rate x this (timestamps / scale), default 1 */
	uint64_t seed;                  /* background flow placement; random policy via sched.seed */
	size_t limit;                   /* first N requests of the trace, 0 = all */
	bool progress;                  /* progress on stderr */
};
void nkv_sim_defaults(struct nkv_sim_config *c);

/* Per-request record, the same fields as `netkv replay` writes. */
struct nkv_sim_record {
	uint64_t id;
	double arrival_s;
	uint32_t input_len, output_len;
	uint32_t prefill, decode;       /* topology instance indexes */
	int tier;
	uint32_t held_blocks;           /* prefix blocks decode already held (not moved) */
	uint64_t kv_bytes;              /* bytes moved prefill -> decode */
	double queue_wait_s;            /* arrival -> prefill start */
	double prefill_s;               /* prefill compute */
	double transfer_s;              /* KV transfer (flow start -> last byte + latency) */
	double est_transfer_s;          /* the scheduler's estimate */
	double decode_wait_s;           /* KV in place -> admitted into the running batch */
	double ttft_s;                  /* arrival -> first token out of decode */
	double tbt_mean_s, tbt_max_s;   /* over this request's tokens after the first */
	double finish_s;
	bool slo_met;                   /* ttft <= slo_ttft && tbt_mean <= slo_tbt */
};

struct nkv_sim_summary {
	size_t requests, finished;
	double ttft_mean, ttft_p50, ttft_p90, ttft_p99;
	double tbt_mean, tbt_p50, tbt_p90, tbt_p99; /* over requests' mean TBT */
	double transfer_mean, transfer_p99;
	double slo_attainment;          /* share 0..1 */
	double gb_tier[NKV_TIERS];      /* KV GB (1e9 bytes) moved per tier */
	uint64_t bytes_scheduled, bytes_moved;
	double decide_mean_us, decide_p99_us; /* scheduler decision latency, measured */
	double makespan_s;              /* virtual time of the last event */
	double wall_s;                  /* wall-clock run time */
	double cpu_s;                   /* this thread's CPU time for the run (steadier than wall on a shared box) */
	uint64_t events, net_recomputes;
	uint64_t probes, probe_bytes;
};

struct nkv_sim_result {
	struct nkv_sim_summary sum;
	struct nkv_sim_record *recs;    /* one per request, trace order */
	size_t n;
};

/* Run the trace. On success *out is malloc'ed (nkv_sim_result_free). */
int nkv_sim_run(const struct nkv_sim_config *c, const struct nkv_trace *trace, struct nkv_sim_result **out);
void nkv_sim_result_free(struct nkv_sim_result *r);

/* Output: the summary as a table, CSV of records, JSON of both. */
void nkv_sim_print_summary(FILE *f, const char *label, const struct nkv_sim_summary *s);
int nkv_sim_write_csv(const struct nkv_sim_result *r, const char *path);
/* A jansson json_t * (returned as void * to keep jansson out of this header). */
void *nkv_sim_summary_json(const struct nkv_sim_summary *s);

/* ===== synthetic traces ================================================== */

enum nkv_trace_profile { NKV_PROFILE_CHATBOT, NKV_PROFILE_RAG, NKV_PROFILE_AGENT };
struct nkv_tracegen_params {
	enum nkv_trace_profile profile;
	uint32_t requests;              /* default 2000 */
	double rate;                    /* mean arrivals per second (Poisson), default 20 */
	double prefix_share;            /* RAG: share of requests reusing a shared document, default 0.5 */
	double context_scale;           /* multiply input lengths, default 1 */
	uint64_t seed;
};
void nkv_tracegen_defaults(struct nkv_tracegen_params *p);
int nkv_profile_parse(const char *s, enum nkv_trace_profile *out);
/* Mooncake JSONL to f. */
int nkv_tracegen_write(const struct nkv_tracegen_params *p, FILE *f);
/* The same into memory (for experiments). */
int nkv_tracegen(const struct nkv_tracegen_params *p, struct nkv_trace **out);

#endif
