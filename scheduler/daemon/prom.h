/*
 * A small writer of the Prometheus text exposition format (version 0.0.4),
 * used by the scheduler daemon's --metrics endpoint.
 *
 * Rules it keeps: every family gets "# HELP" and "# TYPE" before its
 * samples; label values and help text are escaped (backslash, double quote
 * in label values, newline); floats are written so Prometheus parses them
 * back (NaN, +Inf, -Inf spelled its way); a histogram is written as
 * cumulative _bucket{le="..."} samples ending with le="+Inf", then _sum and
 * _count, where _count equals the +Inf bucket.
 */
#ifndef NKV_PROM_H
#define NKV_PROM_H

#include <stdint.h>
#include <stdio.h>

#define NKV_PROM_MAX_BUCKETS 24

/* Bucket counts are kept per bucket (not cumulative) and summed on output. */
struct nkv_prom_hist {
	const double *le; /* upper bounds, strictly increasing, finite */
	int nb;           /* number of bounds (<= NKV_PROM_MAX_BUCKETS) */
	uint64_t n[NKV_PROM_MAX_BUCKETS + 1]; /* n[nb]: above the last bound */
	double sum;
	uint64_t count;
};

/* Returns 0, or -EINVAL when the bounds are not finite and strictly increasing or too many. */
int nkv_prom_hist_init(struct nkv_prom_hist *h, const double *le, int nb);
/* NaN is ignored (no sample); anything else lands in the first bucket whose bound is >= v. */
void nkv_prom_hist_observe(struct nkv_prom_hist *h, double v);

/* "# HELP name help\n# TYPE name type\n" (type: counter, gauge, histogram, ...). */
void nkv_prom_family(FILE *f, const char *name, const char *type, const char *help);
/* Escape a label value into dst (always NUL-terminated; truncates at n - 1 bytes without
 * splitting an escape). Returns dst. */
char *nkv_prom_escape(char *dst, size_t n, const char *src);
/* A float as Prometheus reads it: shortest round-trip digits, NaN, +Inf, -Inf. */
void nkv_prom_double(FILE *f, double v);
/* name{labels} value\n; labels are already-escaped pairs `a="x",b="y"` or NULL / "" for none. */
void nkv_prom_sample(FILE *f, const char *name, const char *labels, double v);
void nkv_prom_sample_u64(FILE *f, const char *name, const char *labels, uint64_t v);
/* The _bucket, _sum and _count samples of one histogram series (the family line is separate). */
void nkv_prom_hist_write(FILE *f, const char *name, const char *labels, const struct nkv_prom_hist *h);

#endif
