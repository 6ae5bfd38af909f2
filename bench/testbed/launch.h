/*
 * `netkv launch`: the testbed on a Slurm allocation. launch_nodes.c: the
 * allocation's nodes and what each has (`launch discover`, hosts files);
 * launch_plan.c: a topology's agents placed on them (`launch plan`);
 * launch_agent.c: one rank's agent started from the plan (`launch agent`);
 * launch_slurm.c: the sbatch script that runs it all (`launch slurm`);
 * launch_finish.c: its last step, the run's folder checked (`launch finish`). The plan is a JSON file (format
 * netkv-launch-plan/1), read back by `launch agent` on every rank.
 */
#ifndef NKV_LAUNCH_H
#define NKV_LAUNCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LAUNCH_NAME_MAX 64   /* node, netdev, device names */
#define LAUNCH_MAX_NICS 64   /* per node */
#define LAUNCH_MAX_NODES 4096
#define LAUNCH_MAX_AGENTS 4096

struct launch_agent {
	bool decode;
	char name[40], host[40];          /* topology instance and host */
	char node[LAUNCH_NAME_MAX];       /* the allocated node it runs on */
	uint32_t gpu, nic;                /* local GPU index (topology GPU index in its host), NIC index */
	char device[LAUNCH_NAME_MAX];     /* RDMA device, "" when the NIC has none */
	char netdev[LAUNCH_NAME_MAX];     /* "" when unknown */
	char addr[64];                    /* the NIC's IPv4 address */
	char netns[LAUNCH_NAME_MAX];      /* fabric: the host's namespace name, else "" */
};

struct launch_plan {
	char topo[1024];                  /* topology file */
	char scheduler[96];               /* ADDR:PORT the agents reach the scheduler at */
	char fabric[24];                  /* fabric prefix, "" = real nodes */
	char backend[8], mem[8];          /* tcp|verbs, host|cuda */
	uint32_t per_node;                /* topology hosts per node */
	size_t nnodes, nagents;
	char (*nodes)[LAUNCH_NAME_MAX];   /* the nodes used, in order */
	struct launch_agent *agents;      /* rank order */
};

/* What `launch plan` needs; the roles are comma-separated instances
 * ("h0g0") or hosts ("h0" = every GPU of it). */
struct launch_plan_opts {
	const char *topo, *prefill, *decode;
	const char *nodes;      /* comma-separated; NULL = $SLURM_JOB_NODELIST through scontrol */
	const char *hosts;      /* hosts file or a folder of them; NULL = discover this node */
	const char *fabric;     /* running fabric's prefix, NULL = none */
	const char *backend, *mem;
	uint32_t per_node, port;
};

/* The number of nodes the topology's roles need at per_node hosts a node
 * (checks the topology and the roles). */
int nkv__launch_nodes_needed(const char *topo, const char *prefill, const char *decode, uint32_t per_node,
			     size_t *nodes, size_t *agents, uint32_t *max_per_node);
int nkv__launch_plan_make(const struct launch_plan_opts *o, struct launch_plan *p);
int nkv__launch_plan_write(const struct launch_plan *p, const char *path);
int nkv__launch_plan_load(const char *path, struct launch_plan *p);
void nkv__launch_plan_free(struct launch_plan *p);
/* A word that is safe on a generated shell or multi-prog line unquoted:
 * letters, digits and . _ - + / : , = @ % (and not empty). */
bool nkv__launch_word_ok(const char *s);
/* s (NULL = "") into dst when it is such a word that fits (or empty, when
 * allowed); else an error naming what. */
int nkv__launch_copy_word(char *dst, size_t size, const char *s, bool may_be_empty, const char *what);

/* What a node has (launch_nodes.c): its NICs in the order the plan uses. */
struct launch_nic {
	char device[LAUNCH_NAME_MAX], netdev[LAUNCH_NAME_MAX], addr[64]; /* "" = none */
};
struct launch_node {
	char name[LAUNCH_NAME_MAX];
	uint32_t gpus, nnics;
	struct launch_nic nics[LAUNCH_MAX_NICS];
};
/* This node ($SLURMD_NODENAME, else the short host name): RDMA devices with
 * their netdev's IPv4 address, else the netdevs that are up with one. */
int nkv__launch_node_discover(struct launch_node *n);
/* A hosts file, or every *.json of a folder (`launch discover` per node);
 * *v is malloc'ed. */
int nkv__launch_hosts_load(const char *path, struct launch_node **v, size_t *n);
/* given (comma-separated), or $SLURM_JOB_NODELIST through `scontrol show
 * hostnames` when NULL; *nodes is malloc'ed. */
int nkv__launch_nodes_list(const char *given, char (**nodes)[LAUNCH_NAME_MAX], size_t *n);

/* The commands (tools/commands.c through testbed_cli.h). */
int nkv_cmd_launch_plan(int argc, char **argv);
int nkv_cmd_launch_discover(int argc, char **argv);
int nkv_cmd_launch_agent(int argc, char **argv);
int nkv_cmd_launch_slurm(int argc, char **argv);
int nkv_cmd_launch_finish(int argc, char **argv);

#endif
