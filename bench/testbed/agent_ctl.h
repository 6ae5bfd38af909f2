/*
 * An agent's way to the scheduler: joining it (connect, REGISTER, wait for
 * REGISTER_OK) and joining it again after the connection is lost, with
 * exponential backoff and jitter, until a deadline.
 *
 * A scheduler that dies or restarts must not take the agents with it: an
 * agent that loses the connection keeps its pool and tries again, from
 * AGENT_CTL_BACKOFF0 doubling to AGENT_CTL_BACKOFF_MAX (each wait drawn in
 * [half, whole] so agents that lost the same scheduler do not come back in
 * step), until --reconnect-for seconds have passed without a scheduler. A
 * failed attempt is logged when its reason changes, else every few seconds.
 *
 * Refusals: the scheduler says why in an ERROR before it closes. A bad
 * token, an instance it does not run, a KV shape that differs or a protocol
 * mismatch will be the same on the next try, so they end the agent at once
 * with the reason. "Instance already has an agent" ends it at start (two
 * agents configured with one name), but is retried when joining again: the
 * scheduler may not have noticed yet that this agent's old connection died.
 * Everything else (no listener, a full peer table, no answer in time) is
 * retried.
 */
#ifndef NKV_AGENT_CTL_H
#define NKV_AGENT_CTL_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

#include "netkv_proto.h"
#include "nkv_util.h"

#define AGENT_CTL_BACKOFF0 0.1     /* first wait, seconds */
#define AGENT_CTL_BACKOFF_MAX 2.0  /* longest wait */
#define AGENT_CTL_REPLY_S 5.0      /* REGISTER_OK due within */
#define AGENT_CTL_LOG_EVERY_S 5.0  /* the same failure is logged at most this often */

struct agent_ctl {
	/* what REGISTER says, kept to say it again */
	const char *sched, *token;
	uint8_t role;
	char name[NKV_PROTO_MAX_NAME + 1], addr[NKV_PROTO_MAX_ADDR + 1], path[512];
	uint32_t kv_blocks;
	uint64_t kv_bpt;
	double give_up_s;          /* --reconnect-for */
	/* state */
	bool joined_once;
	double since, next_try, backoff, last_log;
	uint32_t attempts;
	unsigned seed;
	char last_why[NKV_ERRSTR_MAX];
	void (*log)(void *arg, const char *msg);
	void *log_arg;
};

/* Fill the REGISTER fields and the deadline first; this sets the state for the first join. */
void agent_ctl_init(struct agent_ctl *c, double now);
/* The connection was lost (why): joining again starts now. */
void agent_ctl_lost(struct agent_ctl *c, const char *why, double now);
/* One attempt when its time has come (now >= c->next_try). 0: joined, *pc
 * is the new connection (REGISTER_OK read); -EAGAIN: not now or failed,
 * try again at c->next_try; any other: give up, nkv_last_error() says why
 * (a refusal that will not change, or no scheduler for --reconnect-for).
 * Returns -EINTR soon after *stop is set. */
int agent_ctl_join(struct agent_ctl *c, struct nkv_pconn *pc, double now, volatile sig_atomic_t *stop);

#endif
