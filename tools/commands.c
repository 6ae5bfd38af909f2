#include "netkv_commands.h"

#include <stddef.h>

/* One line per command; each part keeps its lines together. */
const struct nkv_command nkv_commands[] = {
	/* transfer/ + bench/ */

	/* topo/ */

	/* scheduler/ */

	/* simulator */

	/* end-to-end testbed */

	{ NULL, NULL, NULL },
};
