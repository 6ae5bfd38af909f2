#include "netkv_commands.h"

#include <stddef.h>

/* One line per command; each part keeps its lines together. */
const struct nkv_command nkv_commands[] = {
	/* transfer/ + bench/ */
	{ "demo", nkv_cmd_demo, "loopback demo: paged KV pushes with per-block checks, results table" },
	{ "bench transfer", nkv_cmd_bench_transfer, "push bandwidth like ib_write_bw: size sweep or paged KV (--loopback/--server/--client)" },

	/* topo/ */
	{ "topo gen", nkv_cmd_topo_gen, "write a fat-tree topology file (JSON)" },
	{ "topo show", nkv_cmd_topo_show, "tiers, switches, links and bandwidths of a topology file" },
	{ "topo host", nkv_cmd_topo_host, "this host's GPUs, RDMA NICs, NUMA nodes and nearest NICs (hwloc)" },
	{ "fabric", nkv_cmd_fabric, "emulated fabric on this box: up, down, status, exec" },

	/* scheduler/ */
	{ "bench sched", nkv_cmd_bench_sched, "scheduler decision latency per cluster size (decisions/s, p50/p99/p999)" },

	/* simulator */

	/* end-to-end testbed */

	{ NULL, NULL, NULL },
};
