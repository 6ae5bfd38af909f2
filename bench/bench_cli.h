/*
 * The bench part's commands for the `netkv` table (tools/commands.c):
 * `netkv bench transfer` (bench_transfer.c), `netkv bench gpu` (bench_gpu.c),
 * `netkv demo transfer` (demo_transfer.c). Each gets argv[0] = its full name
 * and returns the exit status.
 */
#ifndef NKV_BENCH_CLI_H
#define NKV_BENCH_CLI_H

int nkv_cmd_bench_transfer(int argc, char **argv);
int nkv_cmd_bench_gpu(int argc, char **argv);
int nkv_cmd_demo_transfer(int argc, char **argv);

#endif
