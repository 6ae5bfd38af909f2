/* Shared option handling of the simulator commands (netkv sim ..., netkv trace ...), and the commands. */
#ifndef NKV_SIM_CLI_H
#define NKV_SIM_CLI_H

#include <getopt.h>
#include <stdbool.h>

#include "netkv_sim.h"
#include "run_desc.h" /* run.json (bench/testbed) */

struct sim_opts {
	struct nkv_sim_config cfg;
	struct nkv_fat_tree_params ft;
	const char *topo_file;
	const char *trace_file;      /* NULL: generate from gen */
	bool gen_set;
	struct nkv_tracegen_params gen;
	const char *model;          /* preset or config.json path */
	const char *gpu;            /* --gpu-model preset */
	const char *out_dir;
	const char *csv;
	bool json;
	bool quiet;
	bool layerwise;              /* --layerwise: cfg.layerwise_layers from the model */
	/* owned */
	struct nkv_topo *topo;
	struct nkv_trace *trace;
};

/* Common long options; parse one; 1 = consumed, 0 = not ours, <0 usage error (message printed). */
extern const struct option nkv_sim_common_opts[];
#define NKV_SIM_COMMON_NOPTS 38
void nkv__sim_opts_init(struct sim_opts *o);
int nkv__sim_opts_parse(struct sim_opts *o, const char *cmd, int c, const char *arg);
/* Build topology and load (or generate) the trace. 0, else the exit status
 * (printed): 2 when no trace was given and the full one is absent, 1 otherwise. */
int nkv__sim_opts_finish(struct sim_opts *o, const char *cmd);
void nkv__sim_opts_free(struct sim_opts *o);
void nkv__sim_opts_help(FILE *f);


/* The commands for the `netkv` table (tools/commands.c); argv[0] is the
 * full name ("sim run"), the return value the exit status. */
int nkv_cmd_sim_run(int argc, char **argv);            /* sim_cli.c */
int nkv_sim_experiment(int argc, char **argv);         /* experiments.c */
int nkv_sim_tune_cmd(int argc, char **argv);           /* experiments.c */
int nkv_sim_validate_cmd(int argc, char **argv);       /* validate_cli.c */
int nkv_cmd_trace_gen(int argc, char **argv);          /* trace_cli.c */
int nkv_cmd_trace_stats(int argc, char **argv);        /* trace_cli.c */
int nkv_cmd_trace_convert(int argc, char **argv);      /* trace_convert_cli.c */
int nkv_cmd_trace_sort(int argc, char **argv);         /* trace_convert_cli.c */

#endif
