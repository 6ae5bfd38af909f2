/* Start a testbed on this box: one scheduler and its agents as child
 * processes of `netkv`, over loopback. Shared by `netkv demo` and the e2e test. */
#ifndef NKV_CLUSTER_H
#define NKV_CLUSTER_H

#include <stdbool.h>
#include <sys/types.h>

#define CLUSTER_MAX 16

struct cluster_opts {
	const char *netkv;      /* path of the netkv binary */
	const char *dir;        /* work dir: topology, model and logs go here */
	const char *addr;       /* scheduler control address */
	const char *token, *policy;
	const char *prefill, *decode; /* comma-separated topology instances */
	double time_scale;
	unsigned prefill_blocks, decode_blocks;
	const char *tier_gbps;  /* NULL = no pacing */
	bool verify;
	const char *topo;       /* topology for the scheduler; NULL = write the default 16-GPU tree */
	/* Prefix of a running fabric with a management network (nkv__cluster_fabric_up):
	 * each agent runs in its host's namespace with its NIC's fabric address as
	 * data address (decode listens there, prefill pushes leave from there);
	 * the scheduler runs where the caller is (the mgmt namespace), so addr
	 * must be NKV_FABRIC_MGMT_ADDR:port. NULL = loopback. */
	const char *fabric;
	double w_cache, w_load; /* cla* weights for the scheduler; 0 and 0 = its defaults */
	/* Agent flags passed through when set (NULL / 0 = the agent's defaults):
	 * --backend, --mem, --page-tokens, --layout, and decode's --data
	 * (e.g. "0.0.0.0:0" or "IP:0"; ignored on the fabric, which sets it). */
	const char *backend, *mem, *layout, *decode_data;
	unsigned page_tokens;
	/* The scheduler's --refresh (oracle window, so also how often an idle
	 * path is probed); 0 = its default. A slow emulated NIC needs a long one. */
	double sched_refresh;
	/* Run agents as forked copies of this process calling agent_main(argc,
	 * argv) (nkv_cmd_agent, after the caller set what only a test can, such
	 * as the fake GPU) instead of exec'ing the netkv binary. NULL = exec. */
	int (*agent_main)(int argc, char **argv);
};

/* What a process was started with, so it can be started again. */
struct cluster_proc {
	char **argv;            /* a copy */
	char log[600], prefix[24], host[64];
	int (*fn)(int argc, char **argv);
};

struct cluster {
	pid_t pid[CLUSTER_MAX]; /* 0: not running */
	char name[CLUSTER_MAX][32];
	struct cluster_proc proc[CLUSTER_MAX];
	int n;
};

/* Writes the topology (unless o->topo: 16 GPUs, 2 per host, 2 hosts per
 * leaf, 2 leaves per pod: tiers leaf, pod and core all present) and a tiny
 * KV model into dir, starts everything and waits until every agent has
 * registered. */
int nkv__cluster_start(const struct cluster_opts *o, struct cluster *c);
/* The 16-GPU tree above with the given link rates (Gb/s): each NIC, each
 * leaf's uplink, each spine's uplink (so tiers leaf/pod/core get nic,
 * min(nic, leaf_up), min(.., spine_up) per flow). Written as JSON to path. */
int nkv__cluster_write_topo(const char *path, double nic_gbps, double leaf_up_gbps, double spine_up_gbps);

/* The emulated fabric for a testbed: built from a topology file with tbf at
 * rate / scale plus the management network, under a prefix unique to this
 * process ("nkvd<pid>-" for kind 'd', "nkvt<pid>-" for kind 't').
 * nkv__cluster_fabric_up also moves the calling process into the management
 * namespace (do it before starting threads); nkv__cluster_fabric_down moves it
 * back and removes every namespace made. Namespaces left by a process of
 * the same kind that no longer exists (killed with SIGKILL) are removed
 * first. */
struct cluster_fabric {
	char prefix[24];
	int home_fd;            /* the caller's network namespace, -1 when not moved */
	bool up;
};
int nkv__cluster_fabric_check(void);  /* 0 when root, netns and tbf work; -errno + reason otherwise */
int nkv__cluster_fabric_up(char kind, const char *topo, double scale, struct cluster_fabric *f);
void nkv__cluster_fabric_down(struct cluster_fabric *f);
/* A --policies list (demo, launch): every name known and at most max of
 * them, checked before anything starts, not when a scheduler refuses it. */
int nkv__testbed_check_policies(const char *list, int max);
/* One more child, stopped with the rest: in namespace prefix+ns when prefix
 * is not NULL; fn(argc, argv + 1) in a fork when fn is given, else exec argv. */
int nkv__cluster_spawn(struct cluster *c, const char *name, const char *log, const char *prefix, const char *ns,
		       char *const argv[], int (*fn)(int, char **));
/* SIGKILL one child by name ("h1g0" or "scheduler") and reap it; its pid is cleared. */
int nkv__cluster_kill(struct cluster *c, const char *name);
/* Start a killed child again with the same arguments (its log is appended to).
 * Children die with the thread that started them (PR_SET_PDEATHSIG): call
 * this, like nkv__cluster_start, from a thread that outlives them. */
int nkv__cluster_restart(struct cluster *c, const char *name);
/* Send a signal to a running child (SIGSTOP, SIGCONT). */
int nkv__cluster_signal(struct cluster *c, const char *name, int sig);
/* Agents (prefill + decode) registered with the scheduler at addr, or -1 when it does not answer. */
int nkv__cluster_registered(const char *addr, const char *token);
/* Wait until n agents are registered; fails when a child exits or after timeout_s. */
int nkv__cluster_wait_agents(struct cluster *c, const char *addr, const char *token, int n, double timeout_s);
/* SIGTERM (and SIGCONT) everything, wait, SIGKILL stragglers. Safe to call twice. */
void nkv__cluster_stop(struct cluster *c);

#endif
