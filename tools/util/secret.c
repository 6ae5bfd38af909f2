/* Shared secrets off the command line: --token-file FILE or $NKV_TOKEN. */
#include "nkv_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int nkv_secret_load(const char *path, char *buf, size_t len)
{
	const char *env = getenv("NKV_TOKEN");
	size_t n;

	if (!buf || len < 2)
		return nkv_err(EINVAL, "secret buffer too small");
	buf[0] = 0;
	if (path) {
		FILE *f = fopen(path, "r");
		char *line = NULL;
		size_t cap = 0;
		ssize_t got;

		if (!f)
			return nkv_err(errno, "token file %s: %s", path, strerror(errno));
		got = getline(&line, &cap, f);
		fclose(f);
		while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
			line[--got] = 0;
		if (got <= 0 || (size_t)got >= len) {
			free(line);
			return nkv_err(EINVAL, "token file %s: %s", path,
				       got <= 0 ? "empty (the secret is its first line)" : "first line too long");
		}
		memcpy(buf, line, (size_t)got + 1);
		explicit_bzero(line, (size_t)got);
		free(line);
		return 0;
	}
	if (!env || !*env)
		return 1;
	if ((n = strlen(env)) >= len)
		return nkv_err(EINVAL, "$NKV_TOKEN: %zu bytes, at most %zu", n, len - 1);
	memcpy(buf, env, n + 1);
	return 0;
}
