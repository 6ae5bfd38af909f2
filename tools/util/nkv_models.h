/*
 * The one model table: for each preset, its KV-cache shape (what the
 * transfer engine lays out and moves) and the figures the perf model needs
 * (parameters, hidden size, tensor-parallel width), plus the GPU presets.
 * A model may also come from a file (model_config.c): a Hugging Face
 * config.json or netkv's own shape JSON. It sits in tools/util because both
 * transfer/ (layout.c) and scheduler/ (perf.c) read it and neither may
 * include the other, so engine, simulator and agents take the same models.
 */
#ifndef NKV_MODELS_H
#define NKV_MODELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nkv_model_spec {
	const char *name;
	uint32_t layers, kv_heads, head_dim; /* KV shape (MLA: one latent "head" of kv_lora_rank + rope) */
	bool mla;
	/* Perf model: 0 params = no perf preset for this model (shape only). */
	double params;
	uint32_t hidden;
	uint32_t tp_gpus;                    /* tensor-parallel group that forms one instance */
};

struct nkv_gpu_spec {
	const char *name;
	double flops;                        /* dense bf16 FLOP/s */
	double hbm_Bps;
	uint64_t hbm_bytes;
	const char *source;                  /* where the three figures come from */
};

/* The GPU when none is named: today's results and tests assume it. */
#define NKV_GPU_DEFAULT "h100"

/* A model found by name or read from a file, held by value. */
struct nkv_model_desc {
	char name[32];
	uint32_t layers, kv_heads, head_dim;
	bool mla;
	char dtype[8];                       /* "fp16", "bf16", "fp8", "fp32" (transfer's names) */
	/* Perf model figures; params 0 = none, and no_perf says why. tp_gpus 0 =
	 * not fixed (a config.json): the perf model picks it for the GPU. */
	double params;
	uint32_t hidden, tp_gpus;
	char no_perf[160];
};

/* NULL when unknown. */
const struct nkv_model_spec *nkv_model_spec(const char *name);
const struct nkv_gpu_spec *nkv_gpu_spec(const char *name);
/* The i-th GPU preset (NULL past the end), and their names joined by sep. */
const struct nkv_gpu_spec *nkv_gpu_spec_at(size_t i);
const char *nkv_gpu_names(const char *sep);
/* The i-th model preset (NULL past the end), for name lists. */
const struct nkv_model_spec *nkv_model_spec_at(size_t i);

/* The preset names joined by sep ("llama3-8b, llama3-70b, ..."), only those
 * with a perf preset when perf_only; a per-thread static string. */
const char *nkv_model_names(const char *sep, bool perf_only);

/*
 * arg is a preset name, or else a path to a JSON file (model_config.c): a
 * Hugging Face config.json (num_hidden_layers, ...) or netkv's shape
 * ({"layers","kv_heads","head_dim","dtype","mla"}). 0, or -ENOENT for an
 * unknown name that is no file, -EINVAL for a bad file (FILE:LINE or
 * FILE: "key" in the error).
 */
int nkv_model_find(const char *arg, struct nkv_model_desc *out);
/* Just the file reader, for callers that were given a path. */
int nkv_model_config_load(const char *path, struct nkv_model_desc *out);

#endif
