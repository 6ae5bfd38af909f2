#include "netkv_commands.h"

#include <stddef.h>

/* One line per command; each part keeps its lines together. */
const struct nkv_command nkv_commands[] = {
	/* transfer/ + bench/ */
	{ "demo", nkv_cmd_demo, "loopback demo: paged KV pushes with per-block checks, results table" },
	{ "bench transfer", nkv_cmd_bench_transfer, "push bandwidth like ib_write_bw: size sweep or paged KV (--loopback/--server/--client)" },

	/* topo/ */

	/* scheduler/ */

	/* simulator */

	/* end-to-end testbed */

	{ NULL, NULL, NULL },
};
