/* cla* grid search: finds the known minimum of a synthetic objective, in grid order, and stops on errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <string.h>

#include "netkv_sched.h"

struct ctx {
	int calls;
	int fail_at;
};

/* Minimum at (2, 0.5): (wc - 2)^2 + (wl - 0.5)^2 + 1. */
static int eval(void *c, const struct nkv_sched_params *p, double *obj)
{
	struct ctx *x = c;

	assert_string_equal(p->policy, "cla*");
	if (++x->calls == x->fail_at)
		return -EIO;
	*obj = (p->w_cache - 2) * (p->w_cache - 2) + (p->w_load - 0.5) * (p->w_load - 0.5) + 1;
	return 0;
}

static void test_tune(void **st)
{
	struct ctx c = { 0, 0 };
	struct nkv_tune_result r;
	const double g[3] = { 1, 2, 3 };

	(void)st;
	assert_int_equal(nkv_cla_tune(NULL, NULL, 0, NULL, 0, eval, &c, &r), 0);
	assert_int_equal(r.evaluated, 36); /* 6 x 6, no zero weights */
	assert_true(r.w_cache == 2 && r.w_load == 0.5);
	assert_true(fabs(r.objective - 1) < 1e-12);
	/* Custom grid without the true minimum: nearest is (2, 1): 1.25. */
	c.calls = 0;
	assert_int_equal(nkv_cla_tune(NULL, g, 3, g, 3, eval, &c, &r), 0);
	assert_int_equal(r.evaluated, 9);
	assert_true(r.w_cache == 2 && r.w_load == 1);
	c.calls = 0;
	c.fail_at = 4;
	assert_int_equal(nkv_cla_tune(NULL, g, 3, g, 3, eval, &c, &r), -EIO);
	{
		const double bad[1] = { -1 };

		assert_int_equal(nkv_cla_tune(NULL, bad, 1, g, 3, eval, &c, &r), -EINVAL);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = { cmocka_unit_test(test_tune) };
	return cmocka_run_group_tests(tests, NULL, NULL);
}
