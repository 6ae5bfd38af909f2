/* The model lookup every --model goes through: presets, Hugging Face
 * config.json files (tests/data/models and malformed ones written here), the
 * GPU presets and their named sources. */
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
#include <unistd.h>

#include "nkv_models.h"
#include "nkv_util.h"

static void data_path(char *out, size_t len, const char *rel)
{
	const char *d = getenv("NKV_TEST_DATA");

	assert_non_null(d);
	snprintf(out, len, "%s/%s", d, rel);
}

static uint64_t kv_bytes(const struct nkv_model_desc *m, uint32_t dtype_bytes)
{
	return (uint64_t)m->layers * (m->mla ? 1 : 2) * m->kv_heads * m->head_dim * dtype_bytes;
}

static void test_presets(void **st)
{
	struct nkv_model_desc m;

	(void)st;
	assert_int_equal(nkv_model_find("llama3-8b", &m), 0);
	assert_string_equal(m.name, "llama3-8b");
	assert_string_equal(m.dtype, "fp16");
	assert_int_equal(kv_bytes(&m, 2), 131072);
	assert_int_equal(m.tp_gpus, 1);
	assert_int_equal(nkv_model_find("deepseek-v3", &m), 0);
	assert_true(m.mla);
	assert_true(m.params == 0);
	assert_non_null(strstr(m.no_perf, "KV shape only"));
	assert_int_equal(nkv_model_find("gpt-9", &m), -ENOENT);
	assert_non_null(strstr(nkv_last_error(), "config.json"));
	assert_int_equal(nkv_model_find("", &m), -EINVAL);
}

static void test_hf_llama(void **st)
{
	struct nkv_model_desc m;
	char p[1024];

	(void)st;
	data_path(p, sizeof(p), "models/Meta-Llama-3-8B/config.json");
	assert_int_equal(nkv_model_find(p, &m), 0);
	assert_string_equal(m.name, "Meta-Llama-3-8B");
	assert_int_equal(m.layers, 32);
	assert_int_equal(m.kv_heads, 8);
	assert_int_equal(m.head_dim, 128); /* 4096 / 32 */
	assert_string_equal(m.dtype, "bf16");
	assert_false(m.mla);
	assert_int_equal(kv_bytes(&m, 2), 131072);
	/* Parameters from the shapes: Meta's published 8.03e9. */
	assert_true(fabs(m.params - 8.03e9) / 8.03e9 < 0.005);
	assert_int_equal(m.hidden, 4096);
	assert_int_equal(m.tp_gpus, 0);
}

static void test_hf_deepseek(void **st)
{
	struct nkv_model_desc m;
	char p[1024];

	(void)st;
	data_path(p, sizeof(p), "models/DeepSeek-V3/config.json");
	assert_int_equal(nkv_model_config_load(p, &m), 0);
	assert_true(m.mla);
	assert_int_equal(m.kv_heads, 1);
	assert_int_equal(m.head_dim, 576);
	assert_int_equal(kv_bytes(&m, 2), 70272); /* (512 + 64) x 61 x 2 */
	assert_true(m.params == 0);
	assert_non_null(strstr(m.no_perf, "mixture of experts"));
}

/* Writes doc to a temp file, loads it; returns the rc, the path in p. */
static int load_doc(const char *doc, struct nkv_model_desc *m, char *p, size_t plen)
{
	FILE *f;
	int fd, rc;

	snprintf(p, plen, "/tmp/nkv_hfcfg_XXXXXX");
	fd = mkstemp(p);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs(doc, f);
	fclose(f);
	rc = nkv_model_find(p, m);
	unlink(p);
	return rc;
}

static void expect_bad(const char *doc, const char *want)
{
	struct nkv_model_desc m;
	char p[64];

	assert_int_equal(load_doc(doc, &m, p, sizeof(p)), -EINVAL);
	if (!strstr(nkv_last_error(), want) || !strstr(nkv_last_error(), p))
		fail_msg("for %s: got '%s', want '%s' and the path", doc, nkv_last_error(), want);
}

static void test_hf_forms(void **st)
{
	struct nkv_model_desc m;
	char p[64];

	(void)st;
	/* No num_key_value_heads: multi-head attention (kv = heads); head_dim given, null dtype. */
	assert_int_equal(load_doc("{\"num_hidden_layers\":2,\"num_attention_heads\":4,\"head_dim\":64,"
				  "\"hidden_size\":200,\"torch_dtype\":\"float32\"}",
				  &m, p, sizeof(p)),
			 0);
	assert_int_equal(m.kv_heads, 4);
	assert_int_equal(m.head_dim, 64);
	assert_string_equal(m.dtype, "fp16"); /* a float32 checkpoint serves in fp16 (vLLM's --dtype auto) */
	assert_non_null(strstr(m.no_perf, "vocab_size")); /* no perf figures without them */
	/* head_dim null: hidden / heads; "dtype" (newer transformers); multimodal text_config. */
	assert_int_equal(load_doc("{\"model_type\":\"x\",\"dtype\":\"float16\",\"text_config\":{\"num_hidden_layers\":3,"
				  "\"num_attention_heads\":8,\"num_key_value_heads\":2,\"hidden_size\":1024,"
				  "\"head_dim\":null}}",
				  &m, p, sizeof(p)),
			 0);
	assert_int_equal(m.layers, 3);
	assert_int_equal(m.kv_heads, 2);
	assert_int_equal(m.head_dim, 128);
	assert_string_equal(m.dtype, "fp16");
	/* netkv's own shape still reads. */
	assert_int_equal(load_doc("{\"name\":\"tiny\",\"layers\":3,\"kv_heads\":2,\"head_dim\":64,\"dtype\":\"fp8\"}", &m,
				  p, sizeof(p)),
			 0);
	assert_string_equal(m.name, "tiny");
	assert_string_equal(m.dtype, "fp8");
}

static void test_hf_malformed(void **st)
{
	(void)st;
	expect_bad("{\"hidden_size\":4096}", "neither a Hugging Face config.json");
	expect_bad("{\"num_hidden_layers\":0,\"num_attention_heads\":8,\"hidden_size\":64}", "num_hidden_layers");
	expect_bad("{\"num_hidden_layers\":\"32\"}", "num_hidden_layers");
	expect_bad("{\"num_hidden_layers\":32,\"hidden_size\":4096}", "num_key_value_heads");
	expect_bad("{\"num_hidden_layers\":32,\"num_attention_heads\":3,\"hidden_size\":4096}", "not a multiple");
	expect_bad("{\"num_hidden_layers\":32,\"num_key_value_heads\":8}", "head_dim");
	expect_bad("{\"num_hidden_layers\":32,\"num_key_value_heads\":8,\"head_dim\":128,\"torch_dtype\":\"int4\"}",
		   "int4");
	expect_bad("{\"num_hidden_layers\":61,\"kv_lora_rank\":512}", "qk_rope_head_dim");
	expect_bad("{\"num_hidden_layers\":32,\n\"num_key_value_heads\":8,,}", ":2:");
	expect_bad("[1,2]", "expected a JSON object");
	expect_bad("{\"num_hidden_layers\":99999,\"num_key_value_heads\":1,\"head_dim\":1}", "num_hidden_layers");
}

static void test_gpus(void **st)
{
	static const char *const want[] = { "a100", "h100", "h200", "b200" };
	const struct nkv_gpu_spec *g;

	(void)st;
	for (size_t i = 0; i < 4; i++) {
		assert_non_null(g = nkv_gpu_spec(want[i]));
		assert_true(g->flops > 1e14 && g->hbm_Bps > 1e12 && g->hbm_bytes >= 80ull * 1000000000);
		assert_non_null(strstr(g->source, "datasheet"));
	}
	assert_null(nkv_gpu_spec_at(4));
	assert_non_null(nkv_gpu_spec(NKV_GPU_DEFAULT));
	assert_int_equal(nkv_gpu_spec("h100")->hbm_bytes, 80ull << 30); /* today's results */
	assert_string_equal(nkv_gpu_names(","), "a100,h100,h200,b200");
	assert_null(nkv_gpu_spec("tpu"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_presets),    cmocka_unit_test(test_hf_llama),     cmocka_unit_test(test_hf_deepseek),
		cmocka_unit_test(test_hf_forms),   cmocka_unit_test(test_hf_malformed), cmocka_unit_test(test_gpus),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
