/*
 * The scheduler daemon's commands for the `netkv` table (tools/commands.c):
 * `netkv scheduler` (the daemon) and `netkv scheduler status` (a running
 * one's counters), both in daemon.c. argv[0] is the full name; the return
 * value the exit status.
 */
#ifndef NKV_DAEMON_CLI_H
#define NKV_DAEMON_CLI_H

int nkv_cmd_scheduler(int argc, char **argv);
int nkv_cmd_scheduler_status(int argc, char **argv);

#endif
