/* Helpers shared by the multi-process testbed tests. */
#ifndef E2E_COMMON_H
#define E2E_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster.h"
#include "nkv_util.h"
#include "replay.h"

#define SKIP 77

static inline int e2e_paths(char *netkv, size_t nl, char *trace, size_t tl, char *dir, size_t dl)
{
	const char *b = getenv("NKV_BUILD"), *s = getenv("NKV_SHARED");
	if (!b || !s) {
		fprintf(stderr, "NKV_BUILD / NKV_SHARED not set (run through ctest)\n");
		return SKIP;
	}
	snprintf(netkv, nl, "%s/netkv", b);
	snprintf(trace, tl, "%s/traces/mooncake/conversation_trace.jsonl", s);
	if (access(netkv, X_OK) || access(trace, R_OK)) {
		fprintf(stderr, "skip: %s or %s missing\n", netkv, trace);
		return SKIP;
	}
	snprintf(dir, dl, "/tmp/netkv-e2e-%d", (int)getpid());
	mkdir(dir, 0755);
	return 0;
}

/* Remove the work dir of a passing run (a failing one keeps its logs). */
static inline void e2e_cleanup(const char *dir)
{
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

#endif
