/* Shared option handling of the simulator commands (netkv sim ..., netkv trace ...). */
#ifndef NKV_SIM_CLI_H
#define NKV_SIM_CLI_H

#include <getopt.h>
#include <stdbool.h>

#include "netkv_sim.h"

struct sim_opts {
	struct nkv_sim_config cfg;
	struct nkv_fat_tree_params ft;
	const char *topo_file;
	const char *trace_file;      /* NULL: generate from gen */
	bool gen_set;
	struct nkv_tracegen_params gen;
	const char *model;
	const char *out_dir;
	const char *csv;
	bool json;
	bool quiet;
	/* owned */
	struct nkv_topo *topo;
	struct nkv_trace *trace;
};

/* Common long options; parse one; 1 = consumed, 0 = not ours, <0 usage error (message printed). */
extern const struct option nkv_sim_common_opts[];
#define NKV_SIM_COMMON_NOPTS 28
void sim_opts_init(struct sim_opts *o);
int sim_opts_parse(struct sim_opts *o, const char *cmd, int c, const char *arg);
/* Build topology and load (or generate) the trace. 0 or -errno (printed). */
int sim_opts_finish(struct sim_opts *o, const char *cmd);
void sim_opts_free(struct sim_opts *o);
void sim_opts_help(FILE *f);

/* netkv sim validate: compute x 1000 already leaves a run's timeline far behind. */
#define NKV_MAX_TIME_SCALE 1000.0

/* What `netkv demo` wrote about its run (DIR/run.json, format
 * netkv-demo-run/1), for `netkv sim validate --run`. Absent keys leave ""
 * or 0 (shared -1, block_tokens 512); policy (may be NULL) picks the CSV. */
struct nkv_run_desc {
	char topo[1024], trace[1024], csv[1024];
	char model[32], gpu[32];         /* perf_model "MODEL/GPU" */
	double time_scale;
	int shared;                      /* links_shared, -1 unknown */
	uint64_t pool_prefill, pool_decode, block_tokens;
};
int nkv_run_desc_load(const char *path, const char *policy, struct nkv_run_desc *d);
/* The same from memory; name is used in error messages. */
int nkv_run_desc_parse(const char *buf, size_t len, const char *name, const char *policy, struct nkv_run_desc *d);

int nkv_sim_experiment(int argc, char **argv);
int nkv_sim_tune_cmd(int argc, char **argv);
int nkv_sim_validate_cmd(int argc, char **argv);

#endif
