/*
 * Model and GPU presets, one row each, so the KV bytes the engine moves and
 * the times the perf model predicts come from the same shape; and the one
 * lookup (nkv_model_find) every --model goes through: a preset name or a
 * config file.
 */
#include "nkv_models.h"

#include "nkv_util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* Shapes from the models' published configs (num_hidden_layers,
 * num_key_value_heads, head_dim; DeepSeek-V3: kv_lora_rank 512 + rope 64);
 * parameter counts and hidden sizes from the same configs. KV per token in
 * fp16 = 2 * layers * kv_heads * head_dim * 2 bytes. */
static const struct nkv_model_spec models[] = {
	{ "llama3-8b",   32, 8,  128, false, 8.03e9, 4096, 1 }, /* 128 KiB/token in fp16 */
	{ "llama3-70b",  80, 8,  128, false, 70.6e9, 8192, 4 }, /* 320 KiB/token */
	{ "qwen2.5-7b",  28, 4,  128, false, 7.62e9, 3584, 1 }, /* 56 KiB/token */
	{ "llama2-7b",   32, 32, 128, false, 6.74e9, 4096, 1 }, /* 512 KiB/token, no GQA */
	{ "deepseek-v3", 61, 1,  576, true,  0, 0, 0 },         /* MLA latent: 68.6 KiB/token; MoE: shape only */
};

/* SXM parts, dense (not 2:4 sparse) BF16 tensor FLOP/s. "80 GB" parts hold
 * 80 GiB of HBM (five 16 GiB stacks), kept as 2^30 units so today's results
 * stay; the others in the datasheet's decimal GB. */
static const struct nkv_gpu_spec gpus[] = {
	{ "a100", 312e12, 2.039e12, 80ull << 30,
	  "NVIDIA A100 datasheet (A100 80GB SXM): 312 TFLOP/s dense BF16, 2,039 GB/s HBM2e, 80 GB" },
	{ "h100", 989e12, 3.35e12, 80ull << 30,
	  "NVIDIA H100 SXM datasheet: 989 TFLOP/s dense BF16, 3.35 TB/s HBM3, 80 GB" },
	{ "h200", 989e12, 4.8e12, 141000000000ull,
	  "NVIDIA H200 SXM datasheet: 989 TFLOP/s dense BF16 (1,979 sparse), 4.8 TB/s HBM3e, 141 GB" },
	{ "b200", 2.25e15, 8e12, 180000000000ull,
	  "NVIDIA HGX B200 / DGX B200 datasheets, per GPU: 2.25 PFLOP/s dense BF16 (4.5 sparse), 8 TB/s HBM3e, "
	  "180 GB (DGX B200: 64 TB/s and 1,440 GB for 8 GPUs)" },
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

const struct nkv_gpu_spec *nkv_gpu_spec_at(size_t i)
{
	return i < sizeof(gpus) / sizeof(gpus[0]) ? &gpus[i] : NULL;
}

const char *nkv_gpu_names(const char *sep)
{
	static _Thread_local char b[128];
	size_t n = 0;

	b[0] = 0;
	for (size_t i = 0; i < sizeof(gpus) / sizeof(gpus[0]); i++)
		n += (size_t)snprintf(b + n, sizeof(b) - n, "%s%s", n ? sep : "", gpus[i].name);
	return b;
}

int nkv_model_find(const char *arg, struct nkv_model_desc *out)
{
	const struct nkv_model_spec *m = nkv_model_spec(arg);
	struct stat st;

	if (!arg || !*arg)
		return nkv_err(EINVAL, "empty model (a preset: %s; or a config.json path)", nkv_model_names(", ", false));
	if (m) {
		memset(out, 0, sizeof(*out));
		snprintf(out->name, sizeof(out->name), "%s", m->name);
		out->layers = m->layers, out->kv_heads = m->kv_heads, out->head_dim = m->head_dim, out->mla = m->mla;
		snprintf(out->dtype, sizeof(out->dtype), "fp16");
		out->params = m->params, out->hidden = m->hidden, out->tp_gpus = m->tp_gpus;
		if (!m->params)
			snprintf(out->no_perf, sizeof(out->no_perf), "preset '%s' has a KV shape only (perf presets: %s)",
				 m->name, nkv_model_names(", ", true));
		return 0;
	}
	/* Not a name: a file if one is there, or anything that reads as a path. */
	if (!stat(arg, &st) || strchr(arg, '/') || strstr(arg, ".json"))
		return nkv_model_config_load(arg, out);
	return nkv_err(ENOENT, "unknown model '%s' (a preset: %s; or a path to a Hugging Face config.json)", arg,
		       nkv_model_names(", ", false));
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
