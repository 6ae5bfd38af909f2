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
#include "records.h" /* the per-request record format (bench/testbed) */

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
/* The same with the flow's ECMP key given (nkv_flownet_add uses the number
 * of flows added before it); the key only matters in ECMP mode. */
int nkv_flownet_add_keyed(struct nkv_flownet *n, uint32_t a, uint32_t b, uint64_t bytes, uint64_t key, double now);
/* ECMP mode: flows between instances take nkv_topo_path_ecmp() paths
 * instead of the aggregated tree's. -EINVAL when the topology declares no
 * ECMP. Set before adding flows. */
int nkv_flownet_set_ecmp(struct nkv_flownet *n, bool on);
/* Per link: bytes carried so far (background flows included, up to the
 * net's current time) and the highest load seen at any moment, B/s. */
double nkv_flownet_link_carried(const struct nkv_flownet *n, uint32_t link);
double nkv_flownet_link_peak(const struct nkv_flownet *n, uint32_t link);
/* Bytes the link will have carried by time t >= the net's time at the
 * current rates (no state change: for sampling between events). */
double nkv_flownet_link_carried_at(const struct nkv_flownet *n, uint32_t link, double t);
/* The same over explicit links, with a fixed extra latency (seconds). */
int nkv_flownet_add_links(struct nkv_flownet *n, const uint32_t *links, uint32_t nlinks, uint64_t bytes,
			  double latency_s, double now);
/* Cap a flow's rate at cap_Bps from time now (INFINITY lifts it): it takes
 * min(cap, its max-min share) and leaves the rest to the others. Used for
 * layer-wise KV streaming, whose bytes exist only as fast as prefill makes
 * them. -ENOENT for an unknown or finished flow. */
int nkv_flownet_set_cap(struct nkv_flownet *n, int flow, double cap_Bps, double now);
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
/* Isolated mode: every flow drains at its path's narrowest link whatever
 * else runs (no sharing), as the loopback testbed's per-path pacing does.
 * Set it before adding flows. */
void nkv_flownet_set_isolated(struct nkv_flownet *n, bool on);
/* Per-flow overheads of a testbed's transfer path, for flows started
 * afterwards: setup_s is added to the path latency; floor_s is the least
 * time a flow takes (completion = max(start + floor, drain end + latency +
 * setup)). Both default 0. */
void nkv_flownet_set_overhead(struct nkv_flownet *n, double setup_s, double floor_s);
/* Token buckets on the links of tier >= min_tier (all links of a bare-link
 * net), as tc tbf shapes an emulated fabric: bucket = max(capacity x
 * burst_s, min_bytes), full at the start; a link with tokens carries up to
 * peak_Bps (what the unshaped path underneath moves), the bucket draining
 * at the excess; an empty one carries its capacity and refills below it.
 * Set before adding flows. */
int nkv_flownet_set_buckets(struct nkv_flownet *n, double burst_s, double min_bytes, double peak_Bps, int min_tier);

/* ===== the cluster simulation ============================================ */

enum nkv_sim_layout {
	NKV_LAYOUT_HOST_SPLIT,  /* in each host, first half of the GPUs prefill, second half decode */
	NKV_LAYOUT_HOST_ALT,    /* whole hosts alternate: even hosts prefill, odd hosts decode */
};

/* A forced assignment (netkv sim validate): request i goes to these
 * topology instances instead of where the policy would send it. */
struct nkv_sim_assign {
	uint32_t prefill, decode;       /* topology instance indexes (first GPU of the group) */
	uint64_t bytes;                 /* KV bytes to move; UINT64_MAX = what the model says */
	double arrival_s;               /* arrival time; < 0 = from the trace */
};

/* Which paths flows take: the aggregated tree's, or per-flow ECMP over the
 * real spines and cores the topology declares (nkv_topo_path_ecmp). AUTO:
 * ECMP when the topology declares it, else aggregated. */
enum nkv_sim_fabric { NKV_FABRIC_AUTO = 0, NKV_FABRIC_AGGREGATE, NKV_FABRIC_ECMP };
int nkv_sim_fabric_parse(const char *s, enum nkv_sim_fabric *out); /* "auto", "aggregate", "ecmp" */
/* "TIER:UTIL" (--tenant of sim and demo): tier leaf|pod|core, utilisation in (0, 1). */
int nkv_sim_tenant_parse(const char *s, int *tier, double *util);

struct nkv_sim_config {
	const struct nkv_topo *topo;
	enum nkv_sim_fabric fabric;     /* default AUTO */
	struct nkv_perf perf;           /* model + GPU time models */
	struct nkv_sched_params sched;  /* policy, weights, oracle (refresh_s = staleness) */
	enum nkv_sim_layout layout;
	double prefill_share;           /* share of GPUs that prefill (HOST_SPLIT), default 0.5 */
	uint32_t prefill_max_tokens;    /* batch budget of a prefill step, default 16384 */
	uint64_t prefill_cache_blocks;  /* prefix blocks each prefill keeps (LRU), 0 = what fits its HBM (default) */
	uint64_t decode_cache_blocks;   /* prefix blocks each decode keeps (LRU), 0 = a quarter of its KV */
	bool probes;                    /* run the probe planner every refresh, default true */
	uint32_t bg_flows[NKV_TIERS];   /* background flows whose path is of that tier */
	double bg_period_s;             /* re-place the background flows every period (0 = static) */
	double slo_ttft_s, slo_tbt_s;   /* default 2 s, 0.1 s (mean TBT per request) */
	double rate_scale;              /* arrival rate x this (timestamps / scale), default 1 */
	uint64_t seed;                  /* background flow placement; random policy via sched.seed */
	size_t limit;                   /* first N requests of the trace, 0 = all */
	bool progress;                  /* progress on stderr */
	/* Forced assignments, one per simulated request (NULL = the policy
	 * decides). The prefill and decode instances are then the distinct
	 * ones named here (layout and prefill_share are ignored); arrivals
	 * must not decrease. Everything else runs as usual. */
	const struct nkv_sim_assign *assign;
	size_t nassign;
	bool isolated_flows;            /* nkv_flownet_set_isolated: per-path pacing, no sharing */
	uint64_t decode_kv_tokens;      /* KV capacity of a decode instance, 0 = the perf model's */
	double xfer_setup_s, xfer_floor_s; /* nkv_flownet_set_overhead, default 0 */
	/* The first transfer between two instances waits this long first (its
	 * connection's handshake, as the testbed's agents connect on first use);
	 * 0 = none (default). Not with layer-wise streaming. */
	double xfer_conn_s;
	double link_burst_s, link_burst_min; /* nkv_flownet_set_buckets on tiers >= 1 (0, 0 = none) */
	double link_peak_Bps;           /* the buckets' peak rate */
	/* Layer-wise KV streaming over this many layers (0 = off, default: the
	 * transfer starts when the whole prefill is done). On: a request's
	 * transfer starts when its batch's first layer is done and drains no
	 * faster than prefill makes layers (flow cap = bytes / batch prefill
	 * time), the cap lifted at prefill end; so with an idle fabric TTFT =
	 * prefill + the last layer's transfer + first decode step. The record's
	 * transfer_s runs from the first layer done. */
	uint32_t layerwise_layers;
	/* Tenant traffic: per tier (leaf, pod, core; not host) a target mean
	 * utilisation in [0, 1) of each of its links, from on/off sources with
	 * exponential periods (mean on tenant_on_s, default 0.1 s), seeded by
	 * seed; 0 = none. See bench/sim/tenant.c. */
	double tenant_util[NKV_TIERS];
	double tenant_on_s;
	/* Or tenant traffic as it was (netkv sim validate of a demo run with
	 * --tenant): a flow on each given link over each given period (trace
	 * time), capped at the link's capacity, as the sources above; used
	 * instead of tenant_util when n_tenant_on > 0. */
	const struct nkv_sim_tenant_on *tenant_on;
	size_t n_tenant_on;
};
struct nkv_sim_tenant_on {
	uint32_t link;                  /* nkv_topo_link index */
	double start_s, end_s;
};
#define NKV_SIM_MAX_LAYERS 1024
void nkv_sim_defaults(struct nkv_sim_config *c);
/* Prefix blocks a prefill instance caches: prefill_cache_blocks when set,
 * else what its HBM holds beyond the weights and one full batch:
 * (hbm x mem_util - weights) / KV bytes per token - prefill_max_tokens,
 * in blocks of sched.prefix_block_tokens (0 when nothing fits). The old
 * fixed 2048 blocks of 512 tokens of Llama-3-8B were 128 GiB, more than
 * an 80 GB GPU. */
uint64_t nkv_sim_prefill_cache_blocks(const struct nkv_sim_config *c);

/* Per-request record, the same fields as `netkv replay` writes. */
struct nkv_sim_record {
	uint64_t id;
	uint64_t line;                  /* trace line (0 when unknown) */
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
	double first_step_s;            /* admitted -> first token */
	uint32_t tokens;                /* tokens generated */
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
	bool ecmp;                      /* flows took ECMP paths */
	/* Per tier (1 leaf: NIC links, 2 pod: leaf uplinks, 3 core: spine
	 * uplinks, each direction), the busiest link's: mean utilisation over
	 * the run (bytes carried / capacity x time from the first arrival to
	 * the end, background flows included) and peak (highest load / capacity
	 * at any moment). */
	double util_mean[NKV_TIERS], util_peak[NKV_TIERS];
	/* ... and its highest mean utilisation over one telemetry interval
	 * (refresh_s, default 1 s): how busy the tier got, where the
	 * instantaneous peak is 100% as soon as one flow is held by that link. */
	double util_window[NKV_TIERS];
};

struct nkv_sim_result {
	struct nkv_sim_summary sum;
	struct nkv_sim_record *recs;    /* one per request, trace order */
	size_t n;
};

/* Run the trace. On success *out is malloc'ed (nkv_sim_result_free). */
int nkv_sim_run(const struct nkv_sim_config *c, const struct nkv_trace *trace, struct nkv_sim_result **out);
void nkv_sim_result_free(struct nkv_sim_result *r);

/* Output: the summary as a table, CSV of records (the per-request record
 * format below, the same as `netkv replay --csv`), JSON of both. */
void nkv_sim_print_summary(FILE *f, const char *label, const struct nkv_sim_summary *s);
int nkv_sim_write_csv(const struct nkv_sim_result *r, const struct nkv_topo *t, const char *path);
/* A jansson json_t * (returned as void * to keep jansson out of this header). */
void *nkv_sim_summary_json(const struct nkv_sim_summary *s);

/* ===== validation against measured records (netkv sim validate) ==========
 *
 * The finished (ok) records of a testbed run are simulated again with
 * their own arrivals, (prefill, decode) assignments and KV bytes, and the
 * simulator's per-request figures compared with the measured ones:
 *   transfer  measured xfer_s (push start -> last byte placed, pacing
 *             included) vs the flow's time (start -> last byte drained +
 *             path latency);
 *   ttft      measured ttft_s vs simulated TTFT;
 *   handoff   measured transfer_s (prefill end -> last byte placed: adds
 *             the wait for the decode's block list and the agents' event
 *             loop) vs the same simulated flow time, to show that gap.
 * Relative error = (predicted - measured) / measured; requests whose
 * measured figure is 0 (nothing moved) are counted apart.
 */
enum { NKV_VQ_TRANSFER, NKV_VQ_TTFT, NKV_VQ_HANDOFF, NKV_VQ_N };
const char *nkv_vq_name(int q);   /* "transfer", "ttft", "handoff" */

struct nkv_err_stats {
	size_t n;                       /* requests compared */
	size_t zero;                    /* measured 0: left out */
	double median_abs, p90_abs;     /* |relative error|, shares (0.1 = 10%) */
	double mean_signed;             /* bias: mean relative error, + = over-predicts */
	double meas_p50_s, pred_p50_s;
};

struct nkv_validation {
	size_t records, compared;       /* records read; ok ones simulated */
	struct nkv_err_stats q[NKV_VQ_N];
	const struct nkv_rec_row **meas; /* the compared records, in simulated order */
	struct nkv_sim_result *sim;     /* simulated records, same order */
};

/* base: the simulator set up as the testbed was (topology with the
 * capacities it had, perf model with its time scale, pools); its assign
 * fields are filled here. trace (may be NULL: no prefix caching) gives the
 * hash ids of each record's trace line; its lengths must match. */
int nkv_sim_validate(const struct nkv_sim_config *base, const struct nkv_rec_row *rows, size_t n,
		     const struct nkv_trace *trace, const char *name, struct nkv_validation **out);
void nkv_validation_free(struct nkv_validation *v);
/* predicted / measured seconds of quantity q for compared request i. */
void nkv_validation_pair(const struct nkv_validation *v, int q, size_t i, double *pred, double *meas);

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
