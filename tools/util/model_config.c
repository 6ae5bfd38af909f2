/*
 * A model from a file, so --model takes what users already have: a Hugging
 * Face config.json (what vLLM and SGLang load) or netkv's own shape JSON
 * ({"layers","kv_heads","head_dim","dtype","mla"}). Both give the KV shape;
 * a dense config.json also gives the perf model's figures (parameters
 * estimated from the shapes, see hf_params), an MoE or MLA one the KV shape
 * only, with the reason in no_perf.
 *
 * Hugging Face keys read (a multimodal config's "text_config" when the top
 * level has no num_hidden_layers):
 *   num_hidden_layers                                       layers
 *   num_key_value_heads (default num_attention_heads)       kv_heads
 *   head_dim, else hidden_size / num_attention_heads        head_dim
 *   kv_lora_rank + qk_rope_head_dim (MLA, e.g. DeepSeek-V3)  one latent head
 *   torch_dtype or dtype (default bfloat16; float32 -> fp16 as vLLM's --dtype auto)  dtype
 */
#include "nkv_models.h"

#include "nkv_util.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CONFIG_FILE ((size_t)4 << 20)
#define MAX_DIM 65536u
#define MAX_LAYERS 4096u

/* key: absent or null = 0 (when optional), else an integer in 1..max. */
static int get_u32(json_t *o, const char *key, bool required, uint32_t max, const char *path, uint32_t *out)
{
	json_t *v = json_object_get(o, key);

	*out = 0;
	if (!v || json_is_null(v)) {
		if (required)
			return nkv_err(EINVAL, "%s: missing \"%s\"", path, key);
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > max)
		return nkv_err(EINVAL, "%s: \"%s\" must be an integer in 1..%u", path, key, max);
	*out = (uint32_t)json_integer_value(v);
	return 0;
}

/* The KV cache's dtype as vLLM's default (--dtype auto) picks it: the
 * config's bf16 or fp16, and fp16 for a float32 checkpoint. */
static int hf_dtype(json_t *cfg, json_t *top, const char *path, char *out, size_t outlen)
{
	static const char *const map[][2] = { { "bfloat16", "bf16" }, { "float16", "fp16" }, { "half", "fp16" },
					      { "float32", "fp16" },  { "float", "fp16" } };
	json_t *v = json_object_get(cfg, "torch_dtype");

	if (!v || json_is_null(v))
		v = json_object_get(cfg, "dtype");
	if ((!v || json_is_null(v)) && cfg != top) {
		v = json_object_get(top, "torch_dtype");
		if (!v || json_is_null(v))
			v = json_object_get(top, "dtype");
	}
	if (!v || json_is_null(v)) {
		snprintf(out, outlen, "bf16");
		return 0;
	}
	if (!json_is_string(v))
		return nkv_err(EINVAL, "%s: \"torch_dtype\" must be a string", path);
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (!strcmp(json_string_value(v), map[i][0])) {
			snprintf(out, outlen, "%s", map[i][1]);
			return 0;
		}
	return nkv_err(EINVAL, "%s: torch_dtype '%s' not supported (bfloat16, float16, float32)", path,
		       json_string_value(v));
}

/* The model's name: its folder ("/models/Meta-Llama-3-8B/config.json" gives
 * "Meta-Llama-3-8B"), else the file name without ".json". */
static void name_from_path(const char *path, char *out, size_t outlen)
{
	const char *base = strrchr(path, '/'), *dir = NULL;
	size_t n;

	base = base ? base + 1 : path;
	if (!strcmp(base, "config.json") && base > path + 1) {
		dir = base - 2;
		while (dir > path && dir[-1] != '/')
			dir--;
		n = (size_t)(base - 1 - dir);
		base = dir;
	} else {
		n = strlen(base);
		if (n > 5 && !strcmp(base + n - 5, ".json"))
			n -= 5;
	}
	if (!n)
		base = "config", n = 6;
	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, base, n);
	out[n] = 0;
}

/*
 * Parameters of a dense decoder from its shapes (norms and biases left out,
 * under 0.1%): embeddings vocab*hidden (twice unless tie_word_embeddings),
 * per layer attention hidden*(heads + 2*kv_heads)*head_dim + heads*head_dim*hidden
 * and a gated MLP 3*hidden*intermediate_size (Llama, Qwen, Mistral). The
 * Llama-3-8B config gives 8.03e9, its published count.
 */
static void hf_perf(json_t *cfg, const char *path, struct nkv_model_desc *m, uint32_t heads, uint32_t hidden)
{
	static const char *const moe_keys[] = { "num_local_experts", "n_routed_experts", "num_experts" };
	uint32_t vocab = 0, inter = 0;
	json_t *tie = json_object_get(cfg, "tie_word_embeddings");
	double per_layer;

	for (size_t i = 0; i < sizeof(moe_keys) / sizeof(moe_keys[0]); i++) {
		json_t *v = json_object_get(cfg, moe_keys[i]);

		if (v && json_is_integer(v) && json_integer_value(v) > 0) {
			snprintf(m->no_perf, sizeof(m->no_perf),
				 "%s is a mixture of experts (\"%s\"): the perf model covers dense models only", m->name,
				 moe_keys[i]);
			return;
		}
	}
	if (m->mla) {
		snprintf(m->no_perf, sizeof(m->no_perf), "%s uses MLA: the perf model covers dense GQA models only",
			 m->name);
		return;
	}
	if (get_u32(cfg, "vocab_size", false, 1u << 24, path, &vocab) ||
	    get_u32(cfg, "intermediate_size", false, 1u << 24, path, &inter) || !vocab || !inter || !hidden ||
	    !heads) {
		snprintf(m->no_perf, sizeof(m->no_perf),
			 "%s: a perf model needs vocab_size, intermediate_size, hidden_size, num_attention_heads", path);
		nkv_clear_error();
		return;
	}
	per_layer = (double)hidden * ((double)heads + 2.0 * m->kv_heads) * m->head_dim +
		    (double)heads * m->head_dim * hidden + 3.0 * hidden * (double)inter;
	m->params = (double)vocab * hidden * (tie && json_is_true(tie) ? 1 : 2) + per_layer * m->layers;
	m->hidden = hidden;
	m->tp_gpus = 0; /* the perf model picks it for the GPU */
}

static int hf_load(json_t *top, const char *path, struct nkv_model_desc *m)
{
	json_t *cfg = top, *tc = json_object_get(top, "text_config");
	uint32_t heads, hidden, lora, rope;
	int rc;

	if (!json_object_get(top, "num_hidden_layers") && tc && json_is_object(tc))
		cfg = tc;
	name_from_path(path, m->name, sizeof(m->name));
	if ((rc = get_u32(cfg, "num_hidden_layers", true, MAX_LAYERS, path, &m->layers)) ||
	    (rc = get_u32(cfg, "num_attention_heads", false, MAX_DIM, path, &heads)) ||
	    (rc = get_u32(cfg, "hidden_size", false, 1u << 20, path, &hidden)) ||
	    (rc = get_u32(cfg, "kv_lora_rank", false, MAX_DIM, path, &lora)) ||
	    (rc = hf_dtype(cfg, top, path, m->dtype, sizeof(m->dtype))))
		return rc;
	if (lora) {
		/* MLA caches one latent vector per token and layer: the compressed
		 * KV (kv_lora_rank) and the shared rope key (qk_rope_head_dim). */
		if ((rc = get_u32(cfg, "qk_rope_head_dim", true, MAX_DIM, path, &rope)))
			return nkv_err_wrap(rc, "MLA (kv_lora_rank given)");
		m->mla = true;
		m->kv_heads = 1;
		m->head_dim = lora + rope;
	} else {
		if ((rc = get_u32(cfg, "num_key_value_heads", false, MAX_DIM, path, &m->kv_heads)) ||
		    (rc = get_u32(cfg, "head_dim", false, MAX_DIM, path, &m->head_dim)))
			return rc;
		if (!m->kv_heads && !(m->kv_heads = heads))
			return nkv_err(EINVAL, "%s: missing \"num_key_value_heads\" (or \"num_attention_heads\")", path);
		if (!m->head_dim) {
			if (!heads || !hidden)
				return nkv_err(EINVAL, "%s: missing \"head_dim\" (or \"hidden_size\" and \"num_attention_heads\")",
					       path);
			if (hidden % heads)
				return nkv_err(EINVAL, "%s: hidden_size %u is not a multiple of num_attention_heads %u", path,
					       hidden, heads);
			m->head_dim = hidden / heads;
			if (m->head_dim > MAX_DIM)
				return nkv_err(EINVAL, "%s: head_dim %u too large", path, m->head_dim);
		}
	}
	hf_perf(cfg, path, m, heads, hidden);
	return 0;
}

/* netkv's shape JSON: {"name","layers","kv_heads","head_dim","dtype","mla"}. */
static int netkv_load(json_t *root, const char *path, struct nkv_model_desc *m)
{
	json_t *v = json_object_get(root, "name");
	int rc;

	if (v && (!json_is_string(v) || json_string_length(v) >= sizeof(m->name)))
		return nkv_err(EINVAL, "%s: \"name\" must be a string under %zu characters", path, sizeof(m->name));
	snprintf(m->name, sizeof(m->name), "%s", v ? json_string_value(v) : "custom");
	if ((rc = get_u32(root, "layers", true, MAX_LAYERS, path, &m->layers)) ||
	    (rc = get_u32(root, "kv_heads", true, MAX_DIM, path, &m->kv_heads)) ||
	    (rc = get_u32(root, "head_dim", true, MAX_DIM, path, &m->head_dim)))
		return rc;
	v = json_object_get(root, "dtype");
	if (v && (!json_is_string(v) || json_string_length(v) >= sizeof(m->dtype)))
		return nkv_err(EINVAL, "%s: \"dtype\" must be one of fp16, bf16, fp8, fp32", path);
	snprintf(m->dtype, sizeof(m->dtype), "%s", v ? json_string_value(v) : "fp16");
	v = json_object_get(root, "mla");
	if (v) {
		if (!json_is_boolean(v))
			return nkv_err(EINVAL, "%s: \"mla\" must be true or false", path);
		m->mla = json_is_true(v);
	}
	snprintf(m->no_perf, sizeof(m->no_perf), "%s: a netkv shape file has no perf figures (use a config.json)", path);
	return 0;
}

int nkv_model_config_load(const char *path, struct nkv_model_desc *out)
{
	struct nkv_model_desc m = { 0 };
	json_error_t jerr;
	json_t *root;
	char *buf;
	size_t len;
	int rc = nkv_read_file(path, MAX_CONFIG_FILE, &buf, &len);

	if (rc)
		return nkv_err_wrap(rc, "model");
	root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	free(buf);
	if (!root)
		return nkv_err(EINVAL, "%s:%d: %s", path, jerr.line, jerr.text);
	if (!json_is_object(root))
		rc = nkv_err(EINVAL, "%s: expected a JSON object", path);
	else if (json_object_get(root, "num_hidden_layers") || json_object_get(root, "text_config"))
		rc = hf_load(root, path, &m);
	else if (json_object_get(root, "layers"))
		rc = netkv_load(root, path, &m);
	else
		rc = nkv_err(EINVAL,
			     "%s: neither a Hugging Face config.json (no \"num_hidden_layers\") nor a netkv shape "
			     "(no \"layers\")", path);
	json_decref(root);
	if (!rc)
		*out = m;
	return rc;
}
