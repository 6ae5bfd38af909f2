/* Joining the scheduler and joining it again with backoff (agent_ctl.h). */
#include "agent_ctl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agent_pool.h"
#include "nkv_util.h"

void agent_ctl_init(struct agent_ctl *c, double now)
{
	c->joined_once = false;
	c->since = c->next_try = now;
	c->backoff = AGENT_CTL_BACKOFF0;
	c->attempts = 0;
	c->last_log = -1;
	c->last_why[0] = 0;
	c->seed = (unsigned)getpid() ^ (unsigned)time(NULL);
}

void agent_ctl_lost(struct agent_ctl *c, const char *why, double now)
{
	char msg[NKV_ERRSTR_MAX + 128];
	snprintf(msg, sizeof(msg), "scheduler connection lost: %s; joining again (for up to %g s)", why,
		 c->give_up_s);
	c->log(c->log_arg, msg);
	c->since = c->next_try = now;
	c->backoff = AGENT_CTL_BACKOFF0;
	c->attempts = 0;
	c->last_log = -1;
	c->last_why[0] = 0;
}

/* A refusal that the next attempt would get again. */
static bool refusal_final(const struct agent_ctl *c, uint32_t code)
{
	return code == EACCES || code == ENOENT || code == EINVAL || code == EPROTO ||
	       (code == EEXIST && !c->joined_once);
}

/* One connect + REGISTER + answer. 0, or <0 with the reason; *code: the ERROR's code if refused. */
static int attempt(struct agent_ctl *c, struct nkv_pconn *pc, uint32_t *code, volatile sig_atomic_t *stop)
{
	*code = 0;
	int fd = nkv_proto_connect(c->sched, 0);
	if (fd < 0)
		return fd;
	nkv_pconn_init(pc, fd);
	struct nkv_msg m;
	nkv_msg_init(&m, NKV_MSG_REGISTER);
	m.role = c->role;
	snprintf(m.token, sizeof(m.token), "%s", c->token ? c->token : "");
	snprintf(m.name, sizeof(m.name), "%s", c->name);
	snprintf(m.addr, sizeof(m.addr), "%s", c->addr);
	m.kv_blocks = c->kv_blocks;
	m.block_tokens = AGENT_HASH_TOKENS;
	m.kv_bpt = c->kv_bpt;
	int rc = nkv_msg_set_text(&m, c->path);
	if (!rc)
		rc = nkv_pconn_send_wait(pc, &m);
	nkv_msg_clear(&m);
	/* short waits, so a SIGTERM is seen within 0.1 s */
	double end = nkv_now_s() + AGENT_CTL_REPLY_S;
	while (!rc) {
		rc = nkv_pconn_recv_wait(pc, &m, 0.1);
		if (rc != -ETIMEDOUT)
			break;
		if (*stop)
			rc = nkv_err(EINTR, "stopped");
		else if (nkv_now_s() >= end)
			rc = nkv_err(ETIMEDOUT, "no answer to REGISTER within %g s", AGENT_CTL_REPLY_S);
		else
			rc = 0;
	}
	if (!rc && m.type == NKV_MSG_ERROR) {
		*code = m.code;
		rc = nkv_err(m.code ? (int)m.code : EACCES, "scheduler refused: %s", m.text ? m.text : "(no reason)");
	} else if (!rc && m.type != NKV_MSG_REGISTER_OK) {
		rc = nkv_err(EPROTO, "scheduler answered REGISTER with %s", nkv_msg_type_name(m.type));
	}
	nkv_msg_clear(&m);
	if (rc)
		nkv_pconn_close(pc);
	return rc;
}

int agent_ctl_join(struct agent_ctl *c, struct nkv_pconn *pc, double now, volatile sig_atomic_t *stop)
{
	if (*stop)
		return nkv_err(EINTR, "stopped");
	if (now < c->next_try)
		return -EAGAIN;
	uint32_t code;
	c->attempts++;
	int rc = attempt(c, pc, &code, stop);
	char msg[NKV_ERRSTR_MAX + 160];
	now = nkv_now_s();
	if (!rc) {
		if (c->joined_once) {
			snprintf(msg, sizeof(msg), "joined the scheduler %s again after %.1f s (%u attempts)", c->sched,
				 now - c->since, c->attempts);
			c->log(c->log_arg, msg);
		}
		c->joined_once = true;
		return 0;
	}
	if (rc == -EINTR && *stop)
		return rc;
	char why[NKV_ERRSTR_MAX];
	snprintf(why, sizeof(why), "%s", nkv_last_error());
	if (code && refusal_final(c, code))
		return nkv_err(-rc, "%s (not retried: the same REGISTER would be refused again)", why);
	if (now - c->since >= c->give_up_s)
		return nkv_err(-rc, "no scheduler at %s for %.0f s (--reconnect-for), %u attempts; last: %s", c->sched,
			       now - c->since, c->attempts, why);
	double wait = c->backoff * (0.5 + 0.5 * (double)rand_r(&c->seed) / RAND_MAX);
	if (now + wait > c->since + c->give_up_s)
		wait = c->since + c->give_up_s - now; /* one last try at the deadline */
	c->next_try = now + wait;
	c->backoff = c->backoff * 2 > AGENT_CTL_BACKOFF_MAX ? AGENT_CTL_BACKOFF_MAX : c->backoff * 2;
	if (strcmp(why, c->last_why) || now - c->last_log >= AGENT_CTL_LOG_EVERY_S) {
		snprintf(msg, sizeof(msg), "joining the scheduler %s: %s (attempt %u, %.1f s of %g, next in %.2f s)",
			 c->sched, why, c->attempts, now - c->since, c->give_up_s, wait);
		c->log(c->log_arg, msg);
		snprintf(c->last_why, sizeof(c->last_why), "%s", why);
		c->last_log = now;
	}
	return -EAGAIN;
}
