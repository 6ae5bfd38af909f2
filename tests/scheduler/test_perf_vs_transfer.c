/* The scheduler takes KV bytes per token as a number; check its perf presets
 * agree with the transfer part's model presets for the same names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "netkv_perf.h"
#include "netkv_transfer.h"
#include "nkv_util.h"

static void test_same_bytes_per_token(void **st)
{
	const char *names[] = { "llama3-8b", "llama3-70b", "qwen2.5-7b" };

	(void)st;
	for (int i = 0; i < 3; i++) {
		struct nkv_perf p;
		struct nkv_model m;

		assert_int_equal(nkv_perf_preset(names[i], "h100", &p), 0);
		if (nkv_model_preset(names[i], &m))
			fail_msg("transfer has no preset %s: %s", names[i], nkv_last_error());
		assert_int_equal(p.kv_bytes_per_token, nkv_model_bytes_per_token(&m));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = { cmocka_unit_test(test_same_bytes_per_token) };
	return cmocka_run_group_tests(tests, NULL, NULL);
}
