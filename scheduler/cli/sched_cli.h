/*
 * The scheduler part's commands for the `netkv` table (tools/commands.c):
 * `netkv bench sched` (bench_sched.c). Each gets argv[0] = its full name and
 * returns the exit status.
 */
#ifndef NKV_SCHED_CLI_H
#define NKV_SCHED_CLI_H

int nkv_cmd_bench_sched(int argc, char **argv);

#endif
