/*
 * The `netkv` command table: groups and their subcommands, from the command
 * headers each part keeps beside its code. The mechanism (lookup, "did you
 * mean", listings) is tools/util/nkv_cli.h; order here is only the order of
 * `netkv --help`.
 */
#include "commands.h"

#include "bench_cli.h"     /* bench/ */
#include "daemon_cli.h"    /* scheduler/daemon/ */
#include "sched_cli.h"     /* scheduler/cli/ */
#include "sim_cli.h"       /* bench/sim/ */
#include "testbed_cli.h"   /* bench/testbed/ */
#include "topo_cli.h"      /* topo/ */

#include <stddef.h>

static const struct nkv_cli_cmd bench[] = {
	{ "transfer", nkv_cmd_bench_transfer, "push bandwidth like ib_write_bw: size sweep or paged KV (--loopback/--server/--client)", NULL },
	{ "gpu", nkv_cmd_bench_gpu, "GPU KV staging: gather/scatter vs one contiguous copy, GPU->TCP->GPU push (needs a GPU)", NULL },
	{ "sched", nkv_cmd_bench_sched, "scheduler decision latency per cluster size (decisions/s, p50/p99/p999)", NULL },
	{ "testbed-soak", nkv_cmd_bench_testbed_soak, "the testbed under rising load with agent kills, stops and scheduler restarts", NULL },
	{ NULL, NULL, NULL, NULL },
};

static const struct nkv_cli_cmd topo[] = {
	{ "gen", nkv_cmd_topo_gen, "write a fat-tree topology file (JSON)", NULL },
	{ "show", nkv_cmd_topo_show, "tiers, switches, links and bandwidths of a topology file", NULL },
	{ "host", nkv_cmd_topo_host, "this host's GPUs, RDMA NICs, NUMA nodes and nearest NICs (hwloc)", NULL },
	{ NULL, NULL, NULL, NULL },
};

static const struct nkv_cli_cmd fabric[] = {
	{ "up", nkv_cmd_fabric_up, "build a topology's emulated fabric on this box (namespaces, veths, tbf/netem)", NULL },
	{ "down", nkv_cmd_fabric_down, "remove every namespace with the prefix (also after a crash)", NULL },
	{ "status", nkv_cmd_fabric_status, "hosts, addresses and links of the fabric that is up", NULL },
	{ "exec", nkv_cmd_fabric_exec, "run a command in a host's namespace: exec HOST -- CMD ...", NULL },
	{ NULL, NULL, NULL, NULL },
};

static const struct nkv_cli_cmd sim[] = {
	{ "run", nkv_cmd_sim_run, "simulate one trace / topology / policy", NULL },
	{ "experiment", nkv_sim_experiment, "NAME: headline topology staleness prefix ablation scale context control", NULL },
	{ "tune", nkv_sim_tune_cmd, "cla* weight grid search over a trace (reproducible)", NULL },
	{ "validate", nkv_sim_validate_cmd, "replay a testbed run's assignments; predicted vs measured transfer and TTFT", NULL },
	{ NULL, NULL, NULL, NULL },
};

static const struct nkv_cli_cmd trace[] = {
	{ "gen", nkv_cmd_trace_gen, "write a synthetic Mooncake-style trace", NULL },
	{ "stats", nkv_cmd_trace_stats, "a trace's request rate, token percentiles and prefix reuse", NULL },
	{ "convert", nkv_cmd_trace_convert, "Azure, BurstGPT or ShareGPT (vLLM benchmark) trace -> Mooncake JSONL", NULL },
	{ "sort", nkv_cmd_trace_sort, "a Mooncake JSONL trace in timestamp order (stable)", NULL },
	{ NULL, NULL, NULL, NULL },
};

static const struct nkv_cli_cmd scheduler[] = {
	{ "status", nkv_cmd_scheduler_status, "a running scheduler's counters and agents (JSON)", NULL },
	{ NULL, NULL, NULL, NULL },
};

static const struct nkv_cli_cmd demo[] = {
	{ "transfer", nkv_cmd_demo_transfer, "loopback transfer demo: paged KV pushes with per-block checks, results table", NULL },
	{ NULL, NULL, NULL, NULL },
};

static const struct nkv_cli_cmd launch[] = {
	{ "plan", nkv_cmd_launch_plan, "place a topology's agents on a Slurm allocation: nodes, GPUs, NICs (refuses what cannot run)", NULL },
	{ "slurm", nkv_cmd_launch_slurm, "write (--submit: submit) the sbatch script that runs the testbed there and collects one folder", NULL },
	{ "discover", nkv_cmd_launch_discover, "this node's GPUs and NICs as a hosts file for launch plan --hosts", NULL },
	{ "agent", nkv_cmd_launch_agent, "start one rank's agent from a plan (what srun --multi-prog runs)", NULL },
	{ "finish", nkv_cmd_launch_finish, "a job's last step: check every policy's records, write run.json", NULL },
	{ NULL, NULL, NULL, NULL },
};

const struct nkv_cli_cmd nkv_commands[] = {
	/* transfer/ + bench/ + scheduler/cli */
	{ "bench", NULL, "benchmarks", bench },
	/* topo/ */
	{ "topo", NULL, "topology files and this host", topo },
	{ "fabric", NULL, "emulated fabric on this box", fabric },
	/* simulator */
	{ "sim", NULL, "simulate a trace on a cluster", sim },
	{ "trace", NULL, "Mooncake traces: synthetic, converted from other formats, sorted, their figures", trace },
	/* end-to-end testbed */
	{ "scheduler", nkv_cmd_scheduler, "testbed scheduler daemon: agents register, clients submit", scheduler },
	{ "agent", nkv_cmd_agent, "testbed prefill or decode agent (KV pool, transfer engine, emulated compute)", NULL },
	{ "demo", nkv_cmd_demo, "the testbed on this box: scheduler + agents on an emulated fabric (loopback without root), a replay per policy, one table", demo },
	{ "replay", nkv_cmd_replay, "replay a Mooncake trace against a scheduler: TTFT, TBT, SLO per request", NULL },
	{ "launch", NULL, "the testbed on a Slurm allocation: placement plan, sbatch script, one result folder", launch },
	{ NULL, NULL, NULL, NULL },
};
