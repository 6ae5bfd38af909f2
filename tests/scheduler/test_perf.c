/* Perf model presets: formulas checked against hand-computed values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netkv_perf.h"
#include "nkv_util.h"

static void near(double got, double want, double rel)
{
	if (fabs(got - want) > rel * fabs(want))
		fail_msg("got %.6g want %.6g", got, want);
}

static void test_llama8b(void **st)
{
	struct nkv_perf p;
	uint32_t l[2] = { 1000, 3000 };

	(void)st;
	assert_int_equal(nkv_perf_preset("llama3-8b", "h100", &p), 0);
	assert_int_equal(p.kv_bytes_per_token, 131072); /* 128 KiB (reproduction facts) */
	/* b = 2 * 8.03e9 / (989e12 * 0.4) */
	near(p.prefill_b, 2 * 8.03e9 / (989e12 * 0.4), 1e-9);
	near(nkv_perf_prefill_s(&p, 8192), 0.005 + 8192 * p.prefill_b + 8192.0 * 8192 * p.prefill_c, 1e-12);
	/* 8k prompt: a few hundred ms on one H100. */
	assert_true(nkv_perf_prefill_s(&p, 8192) > 0.2 && nkv_perf_prefill_s(&p, 8192) < 0.8);
	near(nkv_perf_prefill_batch_s(&p, l, 2),
	     p.prefill_a + p.prefill_b * 4000 + p.prefill_c * (1e6 + 9e6), 1e-12);
	/* Decode: weights 16.06 GB at 0.7 * 3.35 TB/s + 2 ms = 8.85 ms. */
	near(p.decode_a, 16.06e9 / (3.35e12 * 0.7) + 0.002, 1e-3);
	near(nkv_perf_decode_iter_s(&p, 65536, 32), p.decode_a + p.decode_b * 65536 + p.decode_c * 32, 1e-12);
	/* KV capacity: (80 GiB * 0.9 - 16.06e9) / 131072 ~ 467k tokens. */
	near((double)nkv_perf_kv_capacity_tokens(&p), ((80.0 * (1 << 30)) * 0.9 - 16.06e9) / 131072, 1e-5);
}

static void test_others(void **st)
{
	struct nkv_perf p;

	(void)st;
	assert_int_equal(nkv_perf_preset("llama3-70b", "h100", &p), 0);
	assert_int_equal(p.kv_bytes_per_token, 327680);
	assert_int_equal(p.gpus, 4);
	assert_true(nkv_perf_kv_capacity_tokens(&p) > 100000);
	assert_int_equal(nkv_perf_preset("qwen2.5-7b", "h100", &p), 0);
	assert_int_equal(p.kv_bytes_per_token, 57344);
	assert_int_equal(nkv_perf_preset("gpt-9", "h100", &p), -ENOENT);
	assert_non_null(strstr(nkv_last_error(), "gpt-9"));
	assert_int_equal(nkv_perf_preset("llama3-8b", "tpu", &p), -ENOENT);
	assert_non_null(strstr(nkv_last_error(), "a100,h100,h200,b200"));
	/* A shape-only preset (MoE) says why it has no perf model. */
	assert_int_equal(nkv_perf_preset("deepseek-v3", NULL, &p), -ENOENT);
	assert_non_null(strstr(nkv_last_error(), "KV shape only"));
}

/* Every GPU preset: same model, the figures follow the datasheets. */
static void test_gpus(void **st)
{
	struct nkv_perf h100, a100, h200, b200, dflt;

	(void)st;
	assert_int_equal(nkv_perf_preset("llama3-8b", "h100", &h100), 0);
	assert_int_equal(nkv_perf_preset("llama3-8b", NULL, &dflt), 0);
	assert_string_equal(dflt.gpu, "h100");
	assert_true(dflt.decode_a == h100.decode_a);
	assert_int_equal(nkv_perf_preset("llama3-8b", "a100", &a100), 0);
	assert_int_equal(nkv_perf_preset("llama3-8b", "h200", &h200), 0);
	assert_int_equal(nkv_perf_preset("llama3-8b", "b200", &b200), 0);
	assert_string_equal(b200.gpu, "b200");
	near(a100.prefill_b / h100.prefill_b, 989.0 / 312.0, 1e-9);   /* compute-bound: peak FLOP/s */
	near(h200.prefill_b, h100.prefill_b, 1e-12);                  /* same tensor cores */
	near(h100.decode_b / h200.decode_b, 4.8 / 3.35, 1e-9);       /* KV reads: HBM bandwidth */
	assert_true(b200.decode_a < h200.decode_a && h200.decode_a < h100.decode_a && h100.decode_a < a100.decode_a);
	assert_true(nkv_perf_kv_capacity_tokens(&b200) > nkv_perf_kv_capacity_tokens(&h200));
	assert_true(nkv_perf_kv_capacity_tokens(&h200) > nkv_perf_kv_capacity_tokens(&h100));
}

/* A Hugging Face config.json gives the same model as the preset it matches. */
static void test_hf_config(void **st)
{
	const char *d = getenv("NKV_TEST_DATA");
	struct nkv_perf pre, hf;
	char path[1024];

	(void)st;
	assert_non_null(d);
	snprintf(path, sizeof(path), "%s/models/Meta-Llama-3-8B/config.json", d);
	assert_int_equal(nkv_perf_preset("llama3-8b", "h100", &pre), 0);
	assert_int_equal(nkv_perf_preset(path, "h100", &hf), 0);
	assert_string_equal(hf.model, "Meta-Llama-3-8B");
	assert_int_equal(hf.kv_bytes_per_token, 131072);
	assert_int_equal(hf.gpus, 1);                 /* 16 GB of weights: one H100 */
	near(hf.prefill_b, pre.prefill_b, 0.005);
	near(hf.decode_a, pre.decode_a, 0.005);
	near(hf.prefill_c, pre.prefill_c, 1e-9);
	snprintf(path, sizeof(path), "%s/models/DeepSeek-V3/config.json", d);
	assert_int_equal(nkv_perf_preset(path, "h100", &hf), -ENOENT);
	assert_non_null(strstr(nkv_last_error(), "mixture of experts"));
	assert_int_equal(nkv_perf_preset("/nonexistent/config.json", "h100", &hf), -ENOENT);
	assert_non_null(strstr(nkv_last_error(), "/nonexistent/config.json"));
}

int main(void)
{
	const struct CMUnitTest tests[] = { cmocka_unit_test(test_llama8b), cmocka_unit_test(test_others),
					    cmocka_unit_test(test_gpus), cmocka_unit_test(test_hf_config) };
	return cmocka_run_group_tests(tests, NULL, NULL);
}
