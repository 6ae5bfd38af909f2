#include "netkv_commands.h"

#include <stddef.h>

/* One line per command; each part keeps its lines together. */
const struct nkv_command nkv_commands[] = {
	/* transfer/ + bench/ */
	{ "bench transfer", nkv_cmd_bench_transfer, "push bandwidth like ib_write_bw: size sweep or paged KV (--loopback/--server/--client)" },
	{ "bench gpu", nkv_cmd_bench_gpu, "GPU KV staging: gather/scatter vs one contiguous copy, GPU->TCP->GPU push (needs a GPU)" },

	/* topo/ */
	{ "topo gen", nkv_cmd_topo_gen, "write a fat-tree topology file (JSON)" },
	{ "topo show", nkv_cmd_topo_show, "tiers, switches, links and bandwidths of a topology file" },
	{ "topo host", nkv_cmd_topo_host, "this host's GPUs, RDMA NICs, NUMA nodes and nearest NICs (hwloc)" },
	{ "fabric", nkv_cmd_fabric, "emulated fabric on this box: up, down, status, exec" },

	/* scheduler/ */
	{ "bench sched", nkv_cmd_bench_sched, "scheduler decision latency per cluster size (decisions/s, p50/p99/p999)" },

	/* simulator */
	{ "sim", nkv_cmd_sim, "simulate a trace on a cluster: run, experiment NAME, tune" },
	{ "trace", nkv_cmd_trace, "synthetic Mooncake traces and trace figures: gen, stats" },

	/* end-to-end testbed */
	{ "scheduler status", nkv_cmd_scheduler_status, "a running scheduler's counters and agents (JSON)" },
	{ "scheduler", nkv_cmd_scheduler, "testbed scheduler daemon: agents register, clients submit" },
	{ "agent", nkv_cmd_agent, "testbed prefill or decode agent (KV pool, transfer engine, emulated compute)" },
	{ "demo transfer", nkv_cmd_demo_transfer, "loopback transfer demo: paged KV pushes with per-block checks, results table" },
	{ "demo", nkv_cmd_demo, "the testbed on this box: scheduler + agents over loopback, one replay per policy, comparison table" },
	{ "replay", nkv_cmd_replay, "replay a Mooncake trace against a scheduler: TTFT, TBT, SLO per request" },

	{ NULL, NULL, NULL },
};
