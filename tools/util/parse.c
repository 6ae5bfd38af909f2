#include "nkv_util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

uint64_t nkv_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int nkv_parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;

	/* strtoull would skip any leading white space and accept a sign. */
	if (!s || !*s || *s == '-' || *s == '+' || isspace((unsigned char)*s))
		return nkv_err(EINVAL, "'%s' is not an unsigned integer", s ? s : "(null)");
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return nkv_err(ERANGE, "'%s' is too large", s);
	if (*end)
		return nkv_err(EINVAL, "'%s' is not an unsigned integer", s);
	*out = v;
	return 0;
}

int nkv_parse_u32(const char *s, uint32_t *out)
{
	uint64_t v;
	int rc = nkv_parse_u64(s, &v);

	if (rc)
		return rc;
	if (v > UINT32_MAX)
		return nkv_err(ERANGE, "'%s' is too large (max %u)", s, UINT32_MAX);
	*out = (uint32_t)v;
	return 0;
}

int nkv_parse_double(const char *s, double *out)
{
	char *end;
	double v;

	if (!s || !*s)
		return nkv_err(EINVAL, "empty number");
	if (isspace((unsigned char)*s))
		return nkv_err(EINVAL, "'%s' is not a finite number", s);
	errno = 0;
	v = strtod(s, &end);
	if (errno == ERANGE || *end || !isfinite(v))
		return nkv_err(EINVAL, "'%s' is not a finite number", s);
	*out = v;
	return 0;
}

int nkv_parse_size(const char *s, uint64_t *out)
{
	char num[64];
	size_t n = s ? strlen(s) : 0;
	uint64_t mul = 1, v;
	int rc;

	if (n == 0 || n >= sizeof(num))
		return nkv_err(EINVAL, "'%s' is not a size", s ? s : "(null)");
	memcpy(num, s, n + 1);
	switch (num[n - 1]) {
	case 'k': case 'K': mul = 1ull << 10; break;
	case 'm': case 'M': mul = 1ull << 20; break;
	case 'g': case 'G': mul = 1ull << 30; break;
	case 't': case 'T': mul = 1ull << 40; break;
	}
	if (mul > 1)
		num[n - 1] = '\0';
	rc = nkv_parse_u64(num, &v);
	if (rc)
		return nkv_err(EINVAL, "'%s' is not a size (use e.g. 4096, 64K, 1M, 2G)", s);
	if (v > UINT64_MAX / mul)
		return nkv_err(ERANGE, "size '%s' overflows", s);
	*out = v * mul;
	return 0;
}

int nkv_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon, *h = s;
	size_t hl;
	uint32_t p = 0;

	if (!s || !*s)
		return nkv_err(EINVAL, "empty address (want host:port)");
	if (*s == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || rb[1] != ':')
			return nkv_err(EINVAL, "'%s' is not [v6addr]:port", s);
		h = s + 1;
		hl = (size_t)(rb - h);
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return nkv_err(EINVAL, "'%s' has no port (want host:port)", s);
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= hostlen)
		return nkv_err(EINVAL, "'%s': bad host part", s);
	if (nkv_parse_u32(colon + 1, &p) || p > 65535)
		return nkv_err(EINVAL, "'%s': port must be 0..65535", s);
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (uint16_t)p;
	return 0;
}

int nkv_read_file(const char *path, size_t max, char **buf, size_t *len)
{
	struct stat st;
	size_t n = 0, cap = 0;
	char *b = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC), err;

	if (fd < 0)
		return nkv_err(errno, "%s: %s", path, strerror(errno));
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
		close(fd);
		return nkv_err(EISDIR, "%s: is a directory", path);
	}
	/* Read to the end rather than trust st_size: pipes and /proc have none. */
	for (;;) {
		ssize_t got;

		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 65536;
			char *nb;

			if (cap > max) {
				free(b);
				close(fd);
				return nkv_err(EFBIG, "%s: larger than %zu MiB", path, max >> 20);
			}
			nb = realloc(b, ncap + 1);
			if (!nb) {
				free(b);
				close(fd);
				return nkv_err(ENOMEM, "%s: out of memory", path);
			}
			b = nb;
			cap = ncap;
		}
		got = read(fd, b + n, cap - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			err = errno;
			free(b);
			close(fd);
			return nkv_err(err, "%s: %s", path, strerror(err));
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	close(fd);
	if (n > max) {
		free(b);
		return nkv_err(EFBIG, "%s: larger than %zu MiB", path, max >> 20);
	}
	b[n] = '\0';
	*buf = b;
	*len = n;
	return 0;
}

const char *nkv_fmt_bytes(uint64_t b, char *buf, size_t len)
{
	static const char *unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	double v = (double)b;
	int u = 0;

	while (v >= 1024.0 && u < 4) {
		v /= 1024.0;
		u++;
	}
	snprintf(buf, len, u ? "%.2f %s" : "%.0f %s", v, unit[u]);
	return buf;
}

const char *nkv_fmt_seconds(double s, char *buf, size_t len)
{
	if (s < 1e-3)
		snprintf(buf, len, "%.1f us", s * 1e6);
	else if (s < 1.0)
		snprintf(buf, len, "%.2f ms", s * 1e3);
	else
		snprintf(buf, len, "%.2f s", s);
	return buf;
}
