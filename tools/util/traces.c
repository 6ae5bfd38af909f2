/*
 * The full traces are data the repository does not carry (tests/data has
 * excerpts): find them without guessing from the current directory, and when
 * they are absent tell the user every way to get past it.
 */
#include "nkv_traces.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nkv_util.h"

#ifndef NKV_DEFAULT_SHARED
#define NKV_DEFAULT_SHARED ""
#endif

int nkv_shared_trace(const char *file, char *buf, size_t len)
{
	const char *sh = getenv("NKV_SHARED");
	const char *from = "$NKV_SHARED";
	struct stat st;

	if (!sh || !*sh) {
		sh = NKV_DEFAULT_SHARED;
		from = "the build's shared folder";
	}
	if (!*sh)
		return nkv_err(ENOENT, "full Mooncake trace %s: no shared folder known; pass --trace FILE, set "
			       "NKV_SHARED=DIR (with DIR/traces/mooncake/%s), or download it with tools/fetch-traces",
			       file, file);
	if ((size_t)snprintf(buf, len, "%s/traces/mooncake/%s", sh, file) >= len)
		return nkv_err(ENAMETOOLONG, "NKV_SHARED: path too long");
	if (stat(buf, &st) || !S_ISREG(st.st_mode) || access(buf, R_OK))
		return nkv_err(ENOENT, "full Mooncake trace %s not found (%s); pass --trace FILE, set NKV_SHARED=DIR "
			       "(with DIR/traces/mooncake/%s), or download it with tools/fetch-traces", buf, from, file);
	return 0;
}
