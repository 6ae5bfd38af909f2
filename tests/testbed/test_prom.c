/* The scheduler's Prometheus text writer (scheduler/daemon/prom.c): label
 * and help escaping, floats Prometheus parses back, histogram buckets
 * (le inclusive, cumulative, +Inf last, _count == +Inf), bad bounds refused. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "prom.h"

struct cap {
	char *p;
	size_t n;
	FILE *f;
};

static void cap_open(struct cap *c)
{
	c->p = NULL;
	c->n = 0;
	c->f = open_memstream(&c->p, &c->n);
	assert_non_null(c->f);
}

static void cap_expect(struct cap *c, const char *want)
{
	fclose(c->f);
	assert_string_equal(c->p, want);
	free(c->p);
}

static void test_escape(void **st)
{
	(void)st;
	char b[64];
	assert_string_equal(nkv_prom_escape(b, sizeof(b), "h0g0"), "h0g0");
	assert_string_equal(nkv_prom_escape(b, sizeof(b), "a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
	assert_string_equal(nkv_prom_escape(b, sizeof(b), ""), "");
	/* Truncation never splits an escape: room for "ab" + 1 byte, the quote's escape needs 2. */
	assert_string_equal(nkv_prom_escape(b, 4, "ab\"c"), "ab");
	assert_string_equal(nkv_prom_escape(b, 5, "ab\"c"), "ab\\\"");

	struct cap c;
	cap_open(&c);
	nkv_prom_family(c.f, "x_total", "counter", "line one\nback\\slash \"quoted\"");
	cap_expect(&c, "# HELP x_total line one\\nback\\\\slash \"quoted\"\n# TYPE x_total counter\n");
}

static void test_double(void **st)
{
	(void)st;
	static const struct { double v; const char *s; } cases[] = {
		{ 0, "0" }, { 1, "1" }, { 0.1, "0.1" }, { 1e-6, "1e-06" }, { 2.5e-7, "2.5e-07" },
		{ 50e9, "50000000000" }, { -3.5, "-3.5" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cap c;
		cap_open(&c);
		nkv_prom_double(c.f, cases[i].v);
		cap_expect(&c, cases[i].s);
	}
	const double special[] = { NAN, INFINITY, -INFINITY };
	const char *names[] = { "NaN", "+Inf", "-Inf" };
	for (int i = 0; i < 3; i++) {
		struct cap c;
		cap_open(&c);
		nkv_prom_double(c.f, special[i]);
		cap_expect(&c, names[i]);
	}
	/* Round trip of values that need 17 digits. */
	const double hard[] = { 1.0 / 3, 0.1 + 0.2, 1.1695000125655497e-05, 5.977659363999692 };
	for (int i = 0; i < 4; i++) {
		char *p = NULL;
		size_t n = 0;
		FILE *f = open_memstream(&p, &n);
		nkv_prom_double(f, hard[i]);
		fclose(f);
		assert_true(strtod(p, NULL) == hard[i]);
		free(p);
	}
}

static void test_samples(void **st)
{
	(void)st;
	struct cap c;
	cap_open(&c);
	nkv_prom_sample_u64(c.f, "a_total", NULL, 18446744073709551615ull);
	nkv_prom_sample_u64(c.f, "b", "", 0);
	nkv_prom_sample(c.f, "c", "x=\"1\",y=\"2\"", 0.25);
	cap_expect(&c, "a_total 18446744073709551615\nb 0\nc{x=\"1\",y=\"2\"} 0.25\n");
}

static void test_hist(void **st)
{
	(void)st;
	static const double le[] = { 0.001, 0.01, 1 };
	struct nkv_prom_hist h;
	assert_int_equal(nkv_prom_hist_init(&h, le, 3), 0);
	const double obs[] = { 0.0005, 0.001 /* on the bound: that bucket */, 0.002, 0.5, 7, NAN /* ignored */ };
	for (size_t i = 0; i < sizeof(obs) / sizeof(obs[0]); i++)
		nkv_prom_hist_observe(&h, obs[i]);
	assert_int_equal(h.count, 5);
	struct cap c;
	cap_open(&c);
	nkv_prom_hist_write(c.f, "t_seconds", "policy=\"netkv\"", &h);
	cap_expect(&c, "t_seconds_bucket{policy=\"netkv\",le=\"0.001\"} 2\n"
		       "t_seconds_bucket{policy=\"netkv\",le=\"0.01\"} 3\n"
		       "t_seconds_bucket{policy=\"netkv\",le=\"1\"} 4\n"
		       "t_seconds_bucket{policy=\"netkv\",le=\"+Inf\"} 5\n"
		       "t_seconds_sum{policy=\"netkv\"} 7.5035\n"
		       "t_seconds_count{policy=\"netkv\"} 5\n");

	/* Without labels; empty. */
	assert_int_equal(nkv_prom_hist_init(&h, le, 1), 0);
	cap_open(&c);
	nkv_prom_hist_write(c.f, "e", NULL, &h);
	cap_expect(&c, "e_bucket{le=\"0.001\"} 0\ne_bucket{le=\"+Inf\"} 0\ne_sum 0\ne_count 0\n");

	/* Bad bounds. */
	static const double dup[] = { 1, 1 }, down[] = { 2, 1 }, inf[] = { 1, INFINITY }, nan_[] = { NAN };
	assert_int_equal(nkv_prom_hist_init(&h, dup, 2), -EINVAL);
	assert_int_equal(nkv_prom_hist_init(&h, down, 2), -EINVAL);
	assert_int_equal(nkv_prom_hist_init(&h, inf, 2), -EINVAL);
	assert_int_equal(nkv_prom_hist_init(&h, nan_, 1), -EINVAL);
	assert_int_equal(nkv_prom_hist_init(&h, le, 0), -EINVAL);
	assert_int_equal(nkv_prom_hist_init(&h, le, NKV_PROM_MAX_BUCKETS + 1), -EINVAL);
	/* A histogram whose init failed takes no samples (and writes a lone +Inf bucket). */
	nkv_prom_hist_observe(&h, 1);
	assert_int_equal(h.count, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_double),
		cmocka_unit_test(test_samples),
		cmocka_unit_test(test_hist),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
