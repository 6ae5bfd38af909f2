/* Trace replay against a running scheduler (shared by `netkv replay` and `netkv demo`). */
#ifndef NKV_REPLAY_H
#define NKV_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct replay_opts {
	const char *sched, *token, *trace;
	double speed;          /* trace time / speed */
	size_t limit;
	bool abort_on_bad;
	double ttft_slo, tbt_slo; /* seconds, already scaled */
	double timeout_s;      /* wait for records after the last submit */
	uint32_t max_output;   /* clamp output tokens (0 = as in the trace) */
	bool progress;
	const char *label;     /* progress prefix */
};

struct replay_rec {
	uint64_t line;
	uint32_t input, output, ntokens, blocks_ok, blocks_bad, tier;
	int status;
	bool done, slo;
	uint64_t bytes;
	double queue, prefill, transfer, xfer_s, decode_wait, step, ttft, tbt_mean, tbt_p99, e2e;
	double arrival;        /* submit time (this client's clock) from the start of the run */
	uint32_t prefill_id, decode_id; /* agent ids from the RECORD (0 = none) */
	char reason[160];
};

/* Agent id -> topology instance name, from the scheduler's STATUS. */
struct replay_agent {
	uint32_t id;
	char name[40];
};

struct replay_result {
	size_t n, finished, failed, lost, bad_lines, blocks_ok, blocks_bad, slo_met;
	struct replay_rec *recs;
	double ttft[4], tbt_mean, tbt_p99;  /* ttft: mean p50 p90 p99 */
	double gb, gb_tier[4];
	size_t n_tier[4];
	double wall_s, start_s;           /* start_s: nkv_now_s() at arrival time 0 */
	struct replay_agent agents[64];
	size_t nagents;
};

int nkv_replay_run(const struct replay_opts *o, struct replay_result *out);
void nkv_replay_free(struct replay_result *r);
void nkv_replay_print(FILE *f, const struct replay_result *r);
/* Per-request records in the shared record format (bench/sim/netkv_sim.h,
 * the one `netkv sim run --csv` and `netkv sim validate` use). */
int nkv_replay_csv(const struct replay_result *r, const char *path);

#endif
