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

#include <dirent.h>
#include <sched.h>

#include "fabric.h"
#include "netkv_proto.h"
#include "netkv_topo.h"
#include "nkv_util.h"

static void free_argv(char **argv)
{
	for (int i = 0; argv && argv[i]; i++)
		free(argv[i]);
	free(argv);
}

static char **copy_argv(char *const argv[])
{
	int n = 0;
	while (argv[n])
		n++;
	char **v = calloc((size_t)n + 1, sizeof(*v));
	for (int i = 0; v && i < n; i++)
		if (!(v[i] = strdup(argv[i]))) {
			free_argv(v);
			return NULL;
		}
	return v;
}

/* Start process slot i from what it keeps (a first start truncates the log, a restart appends). */
static int spawn_slot(struct cluster *c, int i, bool append)
{
	struct cluster_proc *p = &c->proc[i];
	const char *log = p->log, *prefix = p->prefix[0] ? p->prefix : NULL, *host = p->host;
	char *const *argv = p->argv;
	int (*fn)(int, char **) = p->fn;
	pid_t pid = fork();
	if (pid < 0)
		return nkv_err(errno, "fork: %s", strerror(errno));
	if (pid == 0) {
		int fd = open(log, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			close(fd);
		}
		/* Die with the parent, whatever kills it; Ctrl-C is the parent's to handle. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		signal(SIGINT, SIG_IGN);
		if (prefix && nkv_fabric_enter(prefix, host)) {
			fprintf(stderr, "cannot enter the namespace of %s: %s\n", host, nkv_last_error());
			_exit(126);
		}
		if (fn) {
			/* argv[1] is the command word ("agent"): the command sees argv from there */
			int n = 0;
			while (argv[n + 1])
				n++;
			fflush(NULL);
			_exit(fn(n, (char **)argv + 1));
		}
		execv(argv[0], argv);
		_exit(127);
	}
	c->pid[i] = pid;
	return 0;
}

/* netns: NULL, or a fabric prefix and host whose namespace the child enters. */
static int spawn_in(struct cluster *c, const char *name, const char *log, const char *prefix, const char *host,
		    char *const argv[], int (*fn)(int, char **))
{
	if (c->n >= CLUSTER_MAX)
		return nkv_err(ENOSPC, "too many processes");
	struct cluster_proc *p = &c->proc[c->n];
	free_argv(p->argv);
	memset(p, 0, sizeof(*p));
	if (!(p->argv = copy_argv(argv)))
		return nkv_err(ENOMEM, "out of memory");
	snprintf(p->log, sizeof(p->log), "%s", log);
	snprintf(p->prefix, sizeof(p->prefix), "%s", prefix ? prefix : "");
	snprintf(p->host, sizeof(p->host), "%s", host ? host : "");
	p->fn = fn;
	snprintf(c->name[c->n], sizeof(c->name[0]), "%s", name);
	int rc = spawn_slot(c, c->n, false);
	if (!rc)
		c->n++;
	return rc;
}

int nkv__cluster_spawn(struct cluster *c, const char *name, const char *log, const char *prefix, const char *ns,
		       char *const argv[], int (*fn)(int, char **))
{
	return spawn_in(c, name, log, prefix, ns, argv, fn);
}

static int spawn(struct cluster *c, const char *name, const char *log, char *const argv[])
{
	return spawn_in(c, name, log, NULL, NULL, argv, NULL);
}

int nkv__cluster_registered(const char *addr, const char *token)
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

int nkv__cluster_start(const struct cluster_opts *o, struct cluster *c)
{
	memset(c, 0, sizeof(*c));
	/* The children (scheduler, agents) take the token from the environment:
	 * never on argv, where every user of the host could read it. */
	if (setenv("NKV_TOKEN", o->token, 1))
		return nkv_err(errno, "setenv NKV_TOKEN: %s", strerror(errno));
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
	int rc, st;
	if (o->topo) {
		snprintf(topo, sizeof(topo), "%s", o->topo);
	} else {
		snprintf(log, sizeof(log), "%s/topo.log", o->dir);
		char *gen[] = { (char *)o->netkv, "topo", "gen", "--preset", "fat-tree", "--gpus", "16", "--gpus-per-host",
				"2", "--nics-per-host", "2", "--hosts-per-leaf", "2", "--leaves-per-pod", "2", "-o", topo,
				NULL };
		if ((rc = spawn(c, "topo", log, gen)))
			return rc;
		waitpid(c->pid[0], &st, 0);
		c->n = 0;
		if (!WIFEXITED(st) || WEXITSTATUS(st))
			return nkv_err(EIO, "netkv topo gen failed (see %s)", log);
	}
	/* On the fabric: where each instance lives (host namespace, NIC address). */
	struct nkv_topo *tp = NULL;
	if (o->fabric && (rc = nkv_topo_load(topo, &tp)))
		return rc;
	snprintf(scale, sizeof(scale), "%g", o->time_scale);
	snprintf(log, sizeof(log), "%s/scheduler.log", o->dir);
	char wc[32], wl[32];
	snprintf(wc, sizeof(wc), "%g", o->w_cache);
	snprintf(wl, sizeof(wl), "%g", o->w_load);
	char refresh[32];
	snprintf(refresh, sizeof(refresh), "%g", o->sched_refresh);
	char *sched[32] = { (char *)o->netkv, "scheduler", "--listen", (char *)o->addr, "--topo", topo, "--prefill",
			    (char *)o->prefill, "--decode", (char *)o->decode, "--policy", (char *)o->policy,
			    "--time-scale", scale };
	int ks = 14;
	if (o->w_cache > 0 || o->w_load > 0)
		sched[ks++] = "--w-cache", sched[ks++] = wc, sched[ks++] = "--w-load", sched[ks++] = wl;
	if (o->sched_refresh > 0)
		sched[ks++] = "--refresh", sched[ks++] = refresh;
	sched[ks] = NULL;
	if ((rc = spawn(c, "scheduler", log, sched))) {
		nkv_topo_free(tp);
		return rc;
	}
	int nagents = 0;
	for (int role = 0; role < 2; role++) {
		char *list = strdup(role ? o->decode : o->prefill), *save = NULL;
		for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			snprintf(log, sizeof(log), "%s/agent-%s.log", o->dir, t);
			snprintf(blocks, sizeof(blocks), "%u", role ? o->decode_blocks : o->prefill_blocks);
			char *argv[48], pt[16];
			int k = 0;
			argv[k++] = (char *)o->netkv, argv[k++] = "agent", argv[k++] = "--role";
			argv[k++] = role ? "decode" : "prefill";
			argv[k++] = "--scheduler", argv[k++] = (char *)o->addr;
			argv[k++] = "--name", argv[k++] = t, argv[k++] = "--model", argv[k++] = model;
			argv[k++] = "--blocks", argv[k++] = blocks, argv[k++] = "--time-scale", argv[k++] = scale;
			if (o->verify)
				argv[k++] = "--verify";
			if (o->tier_gbps && !role)
				argv[k++] = "--tier-gbps", argv[k++] = (char *)o->tier_gbps;
			if (o->backend)
				argv[k++] = "--backend", argv[k++] = (char *)o->backend;
			if (o->mem)
				argv[k++] = "--mem", argv[k++] = (char *)o->mem;
			if (o->layout)
				argv[k++] = "--layout", argv[k++] = (char *)o->layout;
			if (o->page_tokens) {
				snprintf(pt, sizeof(pt), "%u", o->page_tokens);
				argv[k++] = "--page-tokens", argv[k++] = pt;
			}
			if (o->decode_data && role && !tp)
				argv[k++] = "--data", argv[k++] = (char *)o->decode_data;
			char nic[64] = "", data[80];
			struct nkv_instance_info ii = { 0 };
			if (tp) {
				int idx = nkv_topo_find(tp, t);
				rc = idx < 0 ? idx : nkv_topo_instance(tp, (uint32_t)idx, &ii);
				if (!rc)
					rc = nkv_fabric_nic_addr(o->fabric, ii.host_name, ii.nic, nic, sizeof(nic));
				if (rc) {
					free(list);
					nkv_topo_free(tp);
					return nkv_err_wrap(-rc, "%s on the fabric", t);
				}
				snprintf(data, sizeof(data), "%s:0", nic);
				if (role)
					argv[k++] = "--data", argv[k++] = data;
				else
					argv[k++] = "--src", argv[k++] = nic;
			}
			argv[k] = NULL;
			if ((rc = spawn_in(c, t, log, tp ? o->fabric : NULL, ii.host_name, argv, o->agent_main))) {
				free(list);
				nkv_topo_free(tp);
				return rc;
			}
			nagents++;
		}
		free(list);
	}
	nkv_topo_free(tp);
	rc = nkv__cluster_wait_agents(c, o->addr, o->token, nagents, 30);
	return rc ? nkv_err_wrap(-rc, "logs in %s/", o->dir) : 0;
}

int nkv__cluster_wait_agents(struct cluster *c, const char *addr, const char *token, int n, double timeout_s)
{
	double end = nkv_now_s() + timeout_s;
	int st, got = -1;
	while (nkv_now_s() < end) {
		if ((got = nkv__cluster_registered(addr, token)) == n)
			return 0;
		for (int i = 0; i < c->n; i++)
			if (c->pid[i] > 0 && waitpid(c->pid[i], &st, WNOHANG) == c->pid[i]) {
				c->pid[i] = 0;
				return nkv_err(EIO, "%s exited while agents were joining", c->name[i]);
			}
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
	return nkv_err(ETIMEDOUT, "%d of %d agents registered after %g s", got < 0 ? 0 : got, n, timeout_s);
}

static int find_proc(struct cluster *c, const char *name)
{
	for (int i = 0; i < c->n; i++)
		if (strcmp(c->name[i], name) == 0)
			return i;
	return -1;
}

int nkv__cluster_restart(struct cluster *c, const char *name)
{
	int i = find_proc(c, name);
	if (i < 0)
		return nkv_err(ENOENT, "no process %s", name);
	if (c->pid[i] > 0)
		return nkv_err(EBUSY, "%s is running (pid %d)", name, (int)c->pid[i]);
	return spawn_slot(c, i, true);
}

int nkv__cluster_signal(struct cluster *c, const char *name, int sig)
{
	int i = find_proc(c, name);
	if (i < 0 || c->pid[i] <= 0)
		return nkv_err(ENOENT, "no running process %s", name);
	if (kill(c->pid[i], sig))
		return nkv_err(errno, "kill %s: %s", name, strerror(errno));
	return 0;
}

int nkv__cluster_kill(struct cluster *c, const char *name)
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

void nkv__cluster_stop(struct cluster *c)
{
	for (int i = c->n - 1; i >= 0; i--)
		if (c->pid[i] > 0) {
			kill(c->pid[i], SIGTERM);
			kill(c->pid[i], SIGCONT); /* a stopped child handles the SIGTERM */
		}
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
	for (int i = 0; i < CLUSTER_MAX; i++) {
		free_argv(c->proc[i].argv);
		c->proc[i].argv = NULL;
	}
	c->n = 0;
}

int nkv__cluster_write_topo(const char *path, double nic_gbps, double leaf_up_gbps, double spine_up_gbps)
{
	struct nkv_fat_tree_params p;
	struct nkv_topo *t;
	int rc;

	if (!(nic_gbps > 0 && leaf_up_gbps > 0 && spine_up_gbps > 0))
		return nkv_err(EINVAL, "link rates must be > 0 Gb/s (%g, %g, %g)", nic_gbps, leaf_up_gbps, spine_up_gbps);
	nkv_fat_tree_defaults(&p);
	p.gpus = 16, p.gpus_per_host = 2, p.nics_per_host = 2, p.hosts_per_leaf = 2, p.leaves_per_pod = 2;
	p.nic_gbps = nic_gbps;
	/* uplink = sum below / oversubscription: 4 NICs under a leaf, 2 leaves under a spine */
	p.oversub_leaf = 4 * nic_gbps / leaf_up_gbps;
	p.oversub_spine = 2 * leaf_up_gbps / spine_up_gbps;
	if ((rc = nkv_topo_fat_tree(&p, &t)))
		return rc;
	rc = nkv_topo_write_json(t, path);
	nkv_topo_free(t);
	return rc;
}

/* ---- the emulated fabric ---------------------------------------------------- */

int nkv__cluster_fabric_check(void)
{
	return nkv_fabric_check("nkv-");
}

/* Remove namespaces "nkv<kind><pid>-..." whose process is gone. */
static void reap_stale(char kind)
{
	DIR *d = opendir("/run/netns");
	struct dirent *e;
	char done[64][32];
	int ndone = 0;

	if (!d)
		return;
	while ((e = readdir(d))) {
		const char *n = e->d_name;
		char *end;
		if (strncmp(n, "nkv", 3) || n[3] != kind || n[4] < '0' || n[4] > '9')
			continue;
		long pid = strtol(n + 4, &end, 10);
		if (*end != '-' || pid <= 0 || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue; /* its process is alive (or not ours to judge) */
		char prefix[32];
		snprintf(prefix, sizeof(prefix), "nkv%c%ld-", kind, pid);
		bool seen = false;
		for (int i = 0; i < ndone; i++)
			seen |= !strcmp(done[i], prefix);
		if (!seen && ndone < 64)
			snprintf(done[ndone++], sizeof(done[0]), "%s", prefix);
	}
	closedir(d);
	for (int i = 0; i < ndone; i++)
		if (nkv_fabric_down(done[i]) > 0)
			fprintf(stderr, "removed namespaces %s* left by a process that no longer exists\n", done[i]);
}

int nkv__cluster_fabric_up(char kind, const char *topo, double scale, struct cluster_fabric *f)
{
	struct nkv_topo *t;
	int rc;

	memset(f, 0, sizeof(*f));
	f->home_fd = -1;
	snprintf(f->prefix, sizeof(f->prefix), "nkv%c%d-", kind, (int)getpid());
	reap_stale(kind);
	if ((rc = nkv_topo_load(topo, &t)))
		return rc;
	struct nkv_fabric_opts fo = { .prefix = f->prefix, .scale = scale, .latency_scale = 0, .mtu = 9000, .mgmt = true };
	rc = nkv_fabric_up(t, &fo);
	nkv_topo_free(t);
	if (rc)
		return rc;
	f->up = true;
	f->home_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
	if (f->home_fd < 0 || (rc = nkv_fabric_enter(f->prefix, NKV_FABRIC_MGMT_NS))) {
		rc = f->home_fd < 0 ? nkv_err(errno, "/proc/self/ns/net: %s", strerror(errno)) : rc;
		nkv__cluster_fabric_down(f);
		return rc;
	}
	return 0;
}

void nkv__cluster_fabric_down(struct cluster_fabric *f)
{
	if (f->home_fd >= 0) {
		if (setns(f->home_fd, CLONE_NEWNET))
			fprintf(stderr, "cannot return to the original network namespace: %s\n", strerror(errno));
		close(f->home_fd);
		f->home_fd = -1;
	}
	if (f->up && nkv_fabric_down(f->prefix) < 0)
		fprintf(stderr, "fabric %s: %s\n", f->prefix, nkv_last_error());
	f->up = false;
}
