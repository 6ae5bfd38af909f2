/*
 * The topo part's commands for the `netkv` table (tools/commands.c):
 * `netkv topo gen|show|host` (topo_cli.c), `netkv fabric up|down|status|exec`
 * (fabric.c). Each gets argv[0] = its full name and returns the exit status.
 */
#ifndef NKV_TOPO_CLI_H
#define NKV_TOPO_CLI_H

int nkv_cmd_topo_gen(int argc, char **argv);
int nkv_cmd_topo_show(int argc, char **argv);
int nkv_cmd_topo_host(int argc, char **argv);
int nkv_cmd_fabric_up(int argc, char **argv);
int nkv_cmd_fabric_down(int argc, char **argv);
int nkv_cmd_fabric_status(int argc, char **argv);
int nkv_cmd_fabric_exec(int argc, char **argv);

#endif
