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
	double timeout_s;      /* wait for records after the last submit; with resubmit,
				* also how long to try to get the scheduler back */
	bool resubmit;         /* on a lost scheduler connection: reconnect, submit again what has no record */
	uint32_t max_output;   /* clamp output tokens (0 = as in the trace) */
	bool progress;
	const char *label;     /* progress prefix */
};

struct replay_rec {
	uint64_t line;
	uint32_t input, output, ntokens, blocks_ok, blocks_bad, tier;
	int status;
	bool sent, done, slo;
	uint32_t resubmits;    /* times submitted again after a lost scheduler connection */
	uint64_t bytes;
	double queue, prefill, transfer, xfer_s, decode_wait, step, ttft, tbt_mean, tbt_p99, e2e;
	double arrival;        /* first submit time (this client's clock) from the start of the run */
	double first_s, last_s; /* nkv_now_s() of the first submit (or when it was due, if the scheduler
				 * was away then) and of the last one; TTFT counts from first_s */
	uint32_t prefill_id, decode_id; /* agent ids from the RECORD (0 = none) */
	char pname[40], dname[40]; /* their names, once pinned (a restarted scheduler gives new ids) */
	char reason[256];      /* failed: the scheduler's reason; lost: why no record came */
};

/* Agent id -> topology instance name, from the scheduler's STATUS. */
struct replay_agent {
	uint32_t id;
	char name[40];
};

/* A reason and how many requests ended with it. */
struct replay_why {
	char reason[160];
	size_t n;
};
#define REPLAY_WHY_MAX 16 /* distinct reasons kept; the rest are counted under "(other reasons)" */

/* Every request ends as one of: finished; failed (the scheduler's RECORD
 * says why); lost (submitted, no RECORD came: the scheduler connection was
 * lost or the --timeout passed, and the reason says which); not submitted
 * (the run stopped first; counted in lost too, with that reason). */
struct replay_result {
	size_t n, finished, failed, lost, unsent, bad_lines, blocks_ok, blocks_bad, slo_met;
	size_t resubmitted, reconnects; /* requests submitted more than once; scheduler connections regained */
	struct replay_why failed_why[REPLAY_WHY_MAX + 1], lost_why[REPLAY_WHY_MAX + 1];
	size_t nfailed_why, nlost_why;
	struct replay_rec *recs;
	double ttft[4], tbt_mean, tbt_p99;  /* ttft: mean p50 p90 p99 */
	double gb, gb_tier[4];
	size_t n_tier[4];
	double wall_s, start_s;           /* start_s: nkv_now_s() at arrival time 0 */
	struct replay_agent agents[64];
	size_t nagents;
};

/* A chatbot-like Mooncake trace of n requests: Poisson arrivals at rate per
 * second, conversations that grow on a shared system prompt (prefix
 * sharing), lognormal-ish lengths. skip > 0 writes only the requests from
 * index skip on (the same draws), their times shifted to start at 0: the
 * rest of a run that stopped after skip requests. */
int nkv_replay_gen_trace(const char *path, unsigned n, double rate, uint64_t seed, unsigned skip);
int nkv_replay_run(const struct replay_opts *o, struct replay_result *out);
/* Count `count` requests under reason in w[0..*n) (REPLAY_WHY_MAX + 1 slots). */
void nkv_replay_why_add(struct replay_why *w, size_t *n, const char *reason, size_t count);
void nkv_replay_free(struct replay_result *r);
void nkv_replay_print(FILE *f, const struct replay_result *r);
/* Per-request records in the shared record format (bench/sim/netkv_sim.h,
 * the one `netkv sim run --csv` and `netkv sim validate` use). */
int nkv_replay_csv(const struct replay_result *r, const char *path);

#endif
