#include "cluster.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "netkv_proto.h"
#include "nkv_util.h"

static int spawn(struct cluster *c, const char *name, const char *log, char *const argv[])
{
	if (c->n >= CLUSTER_MAX)
		return nkv_err(ENOSPC, "too many processes");
	pid_t pid = fork();
	if (pid < 0)
		return nkv_err(errno, "fork: %s", strerror(errno));
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		/* Die with the parent, whatever kills it; Ctrl-C is the parent's to handle. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		signal(SIGINT, SIG_IGN);
		execv(argv[0], argv);
		_exit(127);
	}
	c->pid[c->n] = pid;
	snprintf(c->name[c->n], sizeof(c->name[0]), "%s", name);
	c->n++;
	return 0;
}

static int count_registered(const char *addr, const char *token)
{
	int fd = nkv_proto_connect(addr, 0.2);
	if (fd < 0)
		return -1;
	struct nkv_pconn pc;
	nkv_pconn_init(&pc, fd);
	struct nkv_msg m;
	nkv_msg_init(&m, NKV_MSG_REGISTER);
	m.role = NKV_ROLE_ADMIN;
	snprintf(m.token, sizeof(m.token), "%s", token);
	int n = -1;
	if (!nkv_pconn_send_wait(&pc, &m)) {
		nkv_msg_init(&m, NKV_MSG_STATUS_REQ);
		nkv_pconn_send_wait(&pc, &m);
		while (!nkv_pconn_recv_wait(&pc, &m, 2)) {
			bool st = m.type == NKV_MSG_STATUS;
			if (st) {
				n = 0;
				for (const char *p = m.text; (p = strstr(p, "\"role\"")); p++)
					n++;
			}
			nkv_msg_clear(&m);
			if (st)
				break;
		}
	}
	nkv_pconn_close(&pc);
	return n;
}

int cluster_start(const struct cluster_opts *o, struct cluster *c)
{
	memset(c, 0, sizeof(*c));
	char topo[512], model[512], log[600], scale[32], blocks[32];
	snprintf(topo, sizeof(topo), "%s/topo.json", o->dir);
	snprintf(model, sizeof(model), "%s/tiny-model.json", o->dir);
	FILE *f = fopen(model, "w");
	if (!f)
		return nkv_err(errno, "%s: %s", model, strerror(errno));
	/* 2 layers x K,V x 1 head x 32 x fp16 = 256 B/token, 128 KiB per 512-token block:
	 * real bytes moved and checked, small enough for loopback on a small box. */
	fprintf(f, "{\"name\": \"tiny\", \"layers\": 2, \"kv_heads\": 1, \"head_dim\": 32}\n");
	fclose(f);
	snprintf(log, sizeof(log), "%s/topo.log", o->dir);
	char *gen[] = { (char *)o->netkv, "topo", "gen", "--preset", "fat-tree", "--gpus", "16", "--gpus-per-host", "2",
			"--nics-per-host", "2", "--hosts-per-leaf", "2", "--leaves-per-pod", "2", "-o", topo, NULL };
	int rc = spawn(c, "topo", log, gen);
	if (rc)
		return rc;
	int st;
	waitpid(c->pid[0], &st, 0);
	c->n = 0;
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		return nkv_err(EIO, "netkv topo gen failed (see %s)", log);
	snprintf(scale, sizeof(scale), "%g", o->time_scale);
	snprintf(log, sizeof(log), "%s/scheduler.log", o->dir);
	char *sched[] = { (char *)o->netkv, "scheduler", "--listen", (char *)o->addr, "--topo", topo, "--prefill",
			  (char *)o->prefill, "--decode", (char *)o->decode, "--policy", (char *)o->policy, "--token",
			  (char *)o->token, "--time-scale", scale, NULL };
	if ((rc = spawn(c, "scheduler", log, sched)))
		return rc;
	int nagents = 0;
	for (int role = 0; role < 2; role++) {
		char *list = strdup(role ? o->decode : o->prefill), *save = NULL;
		for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			snprintf(log, sizeof(log), "%s/agent-%s.log", o->dir, t);
			snprintf(blocks, sizeof(blocks), "%u", role ? o->decode_blocks : o->prefill_blocks);
			char *argv[32];
			int k = 0;
			argv[k++] = (char *)o->netkv, argv[k++] = "agent", argv[k++] = "--role";
			argv[k++] = role ? "decode" : "prefill";
			argv[k++] = "--scheduler", argv[k++] = (char *)o->addr, argv[k++] = "--token", argv[k++] = (char *)o->token;
			argv[k++] = "--name", argv[k++] = t, argv[k++] = "--model", argv[k++] = model;
			argv[k++] = "--blocks", argv[k++] = blocks, argv[k++] = "--time-scale", argv[k++] = scale;
			if (o->verify)
				argv[k++] = "--verify";
			if (o->tier_gbps && !role)
				argv[k++] = "--tier-gbps", argv[k++] = (char *)o->tier_gbps;
			argv[k] = NULL;
			if ((rc = spawn(c, t, log, argv))) {
				free(list);
				return rc;
			}
			nagents++;
		}
		free(list);
	}
	double end = nkv_now_s() + 30;
	while (nkv_now_s() < end) {
		if (count_registered(o->addr, o->token) == nagents)
			return 0;
		for (int i = 0; i < c->n; i++)
			if (c->pid[i] > 0 && waitpid(c->pid[i], &st, WNOHANG) == c->pid[i]) {
				c->pid[i] = 0;
				return nkv_err(EIO, "%s exited during start-up (see %s/)", c->name[i], o->dir);
			}
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	return nkv_err(ETIMEDOUT, "agents did not all register within 30 s (logs in %s/)", o->dir);
}

int cluster_kill(struct cluster *c, const char *name)
{
	for (int i = 0; i < c->n; i++)
		if (c->pid[i] > 0 && strcmp(c->name[i], name) == 0) {
			kill(c->pid[i], SIGKILL);
			waitpid(c->pid[i], NULL, 0);
			c->pid[i] = 0;
			return 0;
		}
	return nkv_err(ENOENT, "no running process %s", name);
}

void cluster_stop(struct cluster *c)
{
	for (int i = c->n - 1; i >= 0; i--)
		if (c->pid[i] > 0)
			kill(c->pid[i], SIGTERM);
	double end = nkv_now_s() + 3;
	for (int i = 0; i < c->n; i++) {
		while (c->pid[i] > 0) {
			if (waitpid(c->pid[i], NULL, WNOHANG) == c->pid[i] || nkv_now_s() > end) {
				if (nkv_now_s() > end) {
					kill(c->pid[i], SIGKILL);
					waitpid(c->pid[i], NULL, 0);
				}
				c->pid[i] = 0;
				break;
			}
			struct timespec ts = { 0, 10 * 1000 * 1000 };
			nanosleep(&ts, NULL);
		}
	}
	c->n = 0;
}
