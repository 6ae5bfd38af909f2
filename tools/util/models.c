/*
 * Model and GPU presets, one row each, so the KV bytes the engine moves and
 * the times the perf model predicts come from the same shape.
 */
#include "nkv_models.h"

#include <stdio.h>
#include <string.h>

/* Shapes from the models' published configs (num_hidden_layers,
 * num_key_value_heads, head_dim; DeepSeek-V3: kv_lora_rank 512 + rope 64);
 * parameter counts and hidden sizes from the same configs. KV per token in
 * fp16 = 2 * layers * kv_heads * head_dim * 2 bytes. */
static const struct nkv_model_spec models[] = {
	{ "llama3-8b",   32, 8,  128, false, 8.03e9, 4096, 1 }, /* 128 KiB/token in fp16 */
	{ "llama3-70b",  80, 8,  128, false, 70.6e9, 8192, 4 }, /* 320 KiB/token */
	{ "qwen2.5-7b",  28, 4,  128, false, 7.62e9, 3584, 1 }, /* 56 KiB/token */
	{ "llama2-7b",   32, 32, 128, false, 0, 0, 0 },         /* 512 KiB/token, no GQA; shape only */
	{ "deepseek-v3", 61, 1,  576, true,  0, 0, 0 },         /* MLA latent: 68.6 KiB/token; shape only */
};

static const struct nkv_gpu_spec gpus[] = {
	/* H100 SXM5 datasheet: 989 TFLOP/s dense bf16, 3.35 TB/s HBM3, 80 GiB. */
	{ "h100", 989e12, 3.35e12, 80ull << 30 },
};

const struct nkv_model_spec *nkv_model_spec_at(size_t i)
{
	return i < sizeof(models) / sizeof(models[0]) ? &models[i] : NULL;
}

const struct nkv_model_spec *nkv_model_spec(const char *name)
{
	for (size_t i = 0; name && i < sizeof(models) / sizeof(models[0]); i++)
		if (!strcmp(models[i].name, name))
			return &models[i];
	return NULL;
}

const struct nkv_gpu_spec *nkv_gpu_spec(const char *name)
{
	for (size_t i = 0; name && i < sizeof(gpus) / sizeof(gpus[0]); i++)
		if (!strcmp(gpus[i].name, name))
			return &gpus[i];
	return NULL;
}

const char *nkv_model_names(const char *sep, bool perf_only)
{
	static _Thread_local char bufs[2][256];
	char *b = bufs[perf_only];
	size_t n = 0;

	b[0] = 0;
	for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++)
		if (!perf_only || models[i].params)
			n += (size_t)snprintf(b + n, sizeof(bufs[0]) - n, "%s%s", n ? sep : "", models[i].name);
	return b;
}
