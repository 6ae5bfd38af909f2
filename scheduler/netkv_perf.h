/*
 * netkv performance models: how long prefill and decode take and how many
 * KV tokens an instance can hold. Shared by the agents (to emulate
 * compute), the simulator (to model it) and the scheduler (to estimate the
 * decode-side wait), so the three agree by construction.
 *
 *   prefill of one batch:  t = a + b * sum(l) + c * sum(l^2)
 *                          l = the uncached (newly computed) tokens of each
 *                          request; DistServe's form. c carries attention's
 *                          quadratic cost, b the linear (GEMM) part.
 *   decode iteration:      t = a + b * sum(context) + c * batch
 *                          a = reading the weights once, b = reading each
 *                          context token's KV, c = per-sequence compute.
 *                          TBT = the iteration time.
 *   KV capacity (tokens):  (hbm_bytes * mem_util - weight_bytes) / kv_bytes_per_token
 *
 * Where the constants come from (netkv_perf.c, nkv_perf_derive): they are
 * NOT fitted to measurements taken here (this project has no GPU run to fit
 * against yet). They are derived from each model's shape and the GPU's
 * datasheet peak with stated efficiencies, the roofline way:
 *   prefill b = 2 * params / (peak_flops * mfu_prefill)
 *   prefill c = 2 * layers * hidden / (peak_flops * mfu_prefill)   (causal: half of 4*L^2*d per layer)
 *   prefill a = fixed launch/scheduling overhead (5 ms)
 *   decode  a = weight_bytes / (hbm_Bps * bw_eff) + 2 ms overhead
 *   decode  b = kv_bytes_per_token / (hbm_Bps * bw_eff)
 *   decode  c = 2 * params / (peak_flops * mfu_decode)
 * with the GPU preset's datasheet figures (tools/util/models.c, source named
 * beside each; a100, h100 (the default: 989e12 dense bf16 FLOP/s, 3.35e12
 * B/s HBM3, 80 GiB), h200, b200); mfu_prefill 0.4, mfu_decode 0.4, bw_eff 0.7, mem_util 0.9 (vLLM's
 * default gpu_memory_utilization). An instance of llama3-70b is a TP-4
 * group (its weights do not fit one GPU); its figures are for the group.
 * Sanity check against public numbers: llama3-8b prefill of 8k tokens comes
 * to ~0.4 s, decode TBT at batch 32 x 2k context ~ 13 ms, which is the range
 * vLLM reports on H100. Replace them with fitted constants (same struct)
 * when a GPU calibration run exists.
 *
 * Units: seconds, tokens, bytes.
 */
#ifndef NETKV_PERF_H
#define NETKV_PERF_H

#include <stdint.h>

/* The API libnetkv exports; the rest of the library is hidden. */
#pragma GCC visibility push(default)

struct nkv_perf {
	char model[32];            /* "llama3-8b" */
	char gpu[16];              /* "h100" */
	uint32_t gpus;             /* GPUs per instance (tensor parallel), >= 1 */
	double prefill_a, prefill_b, prefill_c; /* s, s/token, s/token^2 */
	double decode_a, decode_b, decode_c;    /* s, s/context token, s/sequence */
	uint64_t hbm_bytes;        /* per instance (all its GPUs) */
	uint64_t weight_bytes;     /* per instance */
	double mem_util;           /* share of HBM the engine may use, 0.9 */
	uint64_t kv_bytes_per_token;
	uint32_t max_batch;        /* running sequences per instance */
	const char *source;        /* one line: where the constants come from */
};

/* model: a preset ("llama3-8b", "llama3-70b", "qwen2.5-7b") or a path to a
 * dense model's Hugging Face config.json (parameters estimated from its
 * shapes; tensor-parallel width = the smallest power of two whose GPUs hold
 * the weights in half their HBM). gpu: "a100", "h100", "h200", "b200"; NULL
 * = "h100". -ENOENT with the known names in the error string otherwise,
 * -EINVAL for a bad config file. */
int nkv_perf_preset(const char *model, const char *gpu, struct nkv_perf *out);
/* Comma-separated preset names (models, GPUs), for --help. */
const char *nkv_perf_models(void);
const char *nkv_perf_gpus(void);

/* One request prefilled alone: a + b*l + c*l^2 (l = uncached tokens). */
double nkv_perf_prefill_s(const struct nkv_perf *p, uint64_t uncached_tokens);
/* A batch: a + b*sum(l) + c*sum(l^2). */
double nkv_perf_prefill_batch_s(const struct nkv_perf *p, const uint32_t *uncached, uint32_t n);
/* One decode iteration of a batch of `batch` sequences holding sum_context tokens. */
double nkv_perf_decode_iter_s(const struct nkv_perf *p, uint64_t sum_context, uint32_t batch);
/* Tokens of KV an instance can hold: (hbm*mem_util - weights) / bytes per token; 0 if none. */
uint64_t nkv_perf_kv_capacity_tokens(const struct nkv_perf *p);

#pragma GCC visibility pop

#endif
