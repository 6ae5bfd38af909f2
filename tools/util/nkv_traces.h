/*
 * Where the full Mooncake traces live. Commands that default to a full trace
 * (sim run/tune/experiment, bench sched) look here and nowhere relative to
 * the current directory: $NKV_SHARED/traces/mooncake/FILE, else the shared
 * folder the build was configured with (NKV_DEFAULT_SHARED, absolute). When
 * the file is not there the error says what to pass instead.
 */
#ifndef NKV_TRACES_H
#define NKV_TRACES_H

#include <stddef.h>

/* The full trace FILE (e.g. "conversation_trace.jsonl") into buf. 0 when it
 * is a readable file; -ENOENT (or -ENAMETOOLONG) otherwise, nkv_last_error()
 * naming where it looked and the ways out (--trace, NKV_SHARED,
 * tools/fetch-traces). Callers exit 2 on it: a usage problem, not a crash. */
int nkv_shared_trace(const char *file, char *buf, size_t len);

#endif
