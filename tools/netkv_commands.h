/*
 * The `netkv` command table. Each part of the system implements its
 * subcommands in its own folder as `int nkv_cmd_<name>(int argc, char **argv)`
 * (argv[0] is the command's own name, e.g. "bench transfer"), returning the
 * process exit status, and adds one line to the table in commands.c.
 */
#ifndef NKV_COMMANDS_H
#define NKV_COMMANDS_H

struct nkv_command {
	const char *name;    /* "demo" or "bench transfer" */
	int (*run)(int argc, char **argv);
	const char *summary; /* one line for `netkv --help` */
};

extern const struct nkv_command nkv_commands[];

/* transfer/ + bench/ */
int nkv_cmd_bench_transfer(int argc, char **argv);
int nkv_cmd_bench_gpu(int argc, char **argv);
int nkv_cmd_demo(int argc, char **argv);
int nkv_cmd_demo_transfer(int argc, char **argv);
/* topo/ */
int nkv_cmd_topo_gen(int argc, char **argv);
int nkv_cmd_topo_show(int argc, char **argv);
int nkv_cmd_topo_host(int argc, char **argv);
int nkv_cmd_fabric(int argc, char **argv);
/* scheduler/ */
int nkv_cmd_bench_sched(int argc, char **argv);
int nkv_cmd_sched_tune(int argc, char **argv);
/* simulator (bench/sim) */
int nkv_cmd_sim(int argc, char **argv);
int nkv_cmd_trace(int argc, char **argv);
/* end-to-end testbed */
int nkv_cmd_scheduler(int argc, char **argv);
int nkv_cmd_scheduler_status(int argc, char **argv);
int nkv_cmd_agent(int argc, char **argv);
int nkv_cmd_replay(int argc, char **argv);

#endif
