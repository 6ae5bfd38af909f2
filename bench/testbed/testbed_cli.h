/*
 * The testbed's commands for the `netkv` table (tools/commands.c):
 * `netkv agent` (agent.c), `netkv replay` (replay.c), `netkv demo` (demo.c),
 * `netkv bench testbed-soak` (soak.c), `netkv launch ...` (launch.h: launch_*.c).
 * Each gets argv[0] = its name and returns the exit status.
 */
#ifndef NKV_TESTBED_CLI_H
#define NKV_TESTBED_CLI_H

int nkv_cmd_agent(int argc, char **argv);
int nkv_cmd_replay(int argc, char **argv);
int nkv_cmd_demo(int argc, char **argv);
int nkv_cmd_bench_testbed_soak(int argc, char **argv); /* soak.c */
#include "launch.h"

#endif
