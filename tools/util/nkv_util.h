/*
 * Small helpers every part of netkv shares: the error string, clocks and
 * strict parsing of numbers and sizes from flags and files, percentiles.
 *
 * Error convention (the whole project): a function returns 0 (or a count)
 * on success and a negative errno on failure, and leaves a human-readable
 * detail in a thread-local string that nkv_last_error() returns, in the
 * spirit of dlerror(). nkv_err() sets it and hands back -err so a failure
 * path is one line:   return nkv_err(EINVAL, "block id %u beyond pool", id);
 */
#ifndef NKV_UTIL_H
#define NKV_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netkv_error.h" /* nkv_last_error(), nkv_clear_error(): public */

#define NKV_ERRSTR_MAX 512

__attribute__((format(printf, 2, 3)))
int nkv_err(int err, const char *fmt, ...);
/* Prefix the current error string with more context: "connect 10.0.0.2: <old>". */
__attribute__((format(printf, 2, 3)))
int nkv_err_wrap(int err, const char *fmt, ...);
/* Control characters (< 0x20, DEL) become '?' in place. nkv_err() does this
 * to every message, since messages quote input and are printed on a terminal. */
void nkv_str_printable(char *s);

/* Monotonic clock. */
uint64_t nkv_now_ns(void);
static inline double nkv_now_s(void) { return (double)nkv_now_ns() * 1e-9; }

/* Strict parsers: the whole string must be consumed, no sign surprises,
 * overflow rejected. Errors name the offending text. */
int nkv_parse_u64(const char *s, uint64_t *out);
int nkv_parse_u32(const char *s, uint32_t *out);
int nkv_parse_double(const char *s, double *out);
/* Sizes with optional binary suffix: 4096, 64K, 1M, 2G (K = 1024). */
int nkv_parse_size(const char *s, uint64_t *out);
/* "host:port" -> host (copied, brackets stripped for [v6]) and port. */
int nkv_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port);

/* Whole file (or pipe) into a malloc'ed, NUL-terminated buffer of at most
 * max bytes. Errors name the path: missing, a directory, too large. */
int nkv_read_file(const char *path, size_t max, char **buf, size_t *len);

/* Make room for need entries of elem bytes in *p (capacity *cap, doubled
 * as needed); 0 or -ENOMEM with the reason. *p is untouched on failure. */
int nkv_grow(void **p, size_t *cap, size_t need, size_t elem);

/* Ascending sort, and the p-quantile (0..1) of sorted values by linear
 * interpolation between closest ranks (numpy's default), 0 when n is 0: the
 * replay, the simulator and the validation report percentiles alike. */
void nkv_sort_doubles(double *a, size_t n);
double nkv_percentile(const double *sorted, size_t n, double p);

/* xorshift64 (Marsaglia): the project's one cheap, seeded, reproducible
 * generator for test data, block ids and synthetic traces. *s must be non-zero. */
static inline uint64_t nkv_xorshift64(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* A uniform draw in the open interval (0, 1) from nkv_xorshift64 (53 bits). */
static inline double nkv_unit01(uint64_t *s)
{
	return ((double)(nkv_xorshift64(s) >> 11) + 0.5) * 0x1.0p-53;
}

/* ids[] = a uniformly shuffled 0..n-1 (Fisher-Yates on nkv_xorshift64):
 * the block tables of benchmarks and tests with random placement. */
static inline void nkv_permutation(uint32_t *ids, uint32_t n, uint64_t *s)
{
	for (uint32_t i = 0; i < n; i++)
		ids[i] = i;
	for (uint32_t i = n; i > 1; i--) {
		uint32_t j = (uint32_t)(nkv_xorshift64(s) % i), t = ids[i - 1];

		ids[i - 1] = ids[j];
		ids[j] = t;
	}
}

/* Human formatting into caller buffers, e.g. "1.50 GiB", "12.3 ms". */
const char *nkv_fmt_bytes(uint64_t bytes, char *buf, size_t len);
const char *nkv_fmt_seconds(double s, char *buf, size_t len);

/* A shared secret (the scheduler token, the data plane's secret) from a
 * file (its first line, trailing newline and CR dropped) or, with path
 * NULL, from $NKV_TOKEN; into buf. 0 when found, 1 when neither was given
 * (buf = ""), negative errno with the detail otherwise (unreadable file,
 * empty, longer than len - 1). Keeps secrets off argv. */
int nkv_secret_load(const char *path, char *buf, size_t len);

#endif
