#include "netkv_commands.h"

#include <stddef.h>

/* One line per command; each part keeps its lines together. */
const struct nkv_command nkv_commands[] = {
	/* transfer/ + bench/ */

	/* topo/ */

	/* scheduler/ */
	{ "bench sched", nkv_cmd_bench_sched, "scheduler decision latency per cluster size (decisions/s, p50/p99/p999)" },

	/* simulator */

	/* end-to-end testbed */

	{ NULL, NULL, NULL },
};
