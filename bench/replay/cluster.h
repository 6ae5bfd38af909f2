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
};

struct cluster {
	pid_t pid[CLUSTER_MAX];
	char name[CLUSTER_MAX][32];
	int n;
};

/* Writes the topology (16 GPUs, 2 per host, 2 hosts per leaf, 2 leaves per
 * pod: tiers leaf, pod and core all present) and a tiny KV model into dir,
 * starts everything and waits until every agent has registered. */
int cluster_start(const struct cluster_opts *o, struct cluster *c);
/* SIGKILL one child by name ("h1g0"); its slot is cleared. */
int cluster_kill(struct cluster *c, const char *name);
/* SIGTERM everything, wait, SIGKILL stragglers. Safe to call twice. */
void cluster_stop(struct cluster *c);

#endif
