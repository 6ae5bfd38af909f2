/*
 * The one model table: for each preset, its KV-cache shape (what the
 * transfer engine lays out and moves) and the figures the perf model needs
 * (parameters, hidden size, tensor-parallel width), plus the GPU presets.
 * It sits in tools/util because both transfer/ (layout.c) and scheduler/
 * (perf.c) read it and neither may include the other.
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
};

/* NULL when unknown. */
const struct nkv_model_spec *nkv_model_spec(const char *name);
const struct nkv_gpu_spec *nkv_gpu_spec(const char *name);
/* The i-th model preset (NULL past the end), for name lists. */
const struct nkv_model_spec *nkv_model_spec_at(size_t i);

/* The preset names joined by sep ("llama3-8b, llama3-70b, ..."), only those
 * with a perf preset when perf_only; a per-thread static string. */
const char *nkv_model_names(const char *sep, bool perf_only);

#endif
