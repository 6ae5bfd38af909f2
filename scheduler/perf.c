/*
 * Time and capacity models shared by agents, simulator and scheduler.
 * The presets are derived from model shape and GPU datasheet figures (see
 * netkv_perf.h for the formulas and why), not fitted here.
 */
#include "netkv_perf.h"

#include "nkv_util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

struct model_shape {
	const char *name;
	double params;         /* parameters */
	uint32_t layers, hidden;
	uint64_t kv_bytes_per_token; /* fp16: 2 * layers * kv_heads * head_dim * 2 */
	uint32_t gpus;         /* tensor-parallel group that forms one instance */
};

struct gpu_spec {
	const char *name;
	double flops;          /* dense bf16 FLOP/s */
	double hbm_Bps;
	uint64_t hbm_bytes;
};

static const struct model_shape models[] = {
	{ "llama3-8b", 8.03e9, 32, 4096, 2ull * 32 * 8 * 128 * 2, 1 },
	{ "llama3-70b", 70.6e9, 80, 8192, 2ull * 80 * 8 * 128 * 2, 4 },
	{ "qwen2.5-7b", 7.62e9, 28, 3584, 2ull * 28 * 4 * 128 * 2, 1 },
};

static const struct gpu_spec gpus[] = {
	/* H100 SXM5 datasheet: 989 TFLOP/s dense bf16, 3.35 TB/s HBM3, 80 GiB. */
	{ "h100", 989e12, 3.35e12, 80ull << 30 },
};

#define MFU_PREFILL 0.4
#define MFU_DECODE 0.4
#define BW_EFF 0.7
#define MEM_UTIL 0.9
#define PREFILL_OVERHEAD_S 0.005
#define DECODE_OVERHEAD_S 0.002

const char *nkv_perf_models(void)
{
	return "llama3-8b,llama3-70b,qwen2.5-7b";
}

int nkv_perf_preset(const char *model, const char *gpu, struct nkv_perf *out)
{
	const struct model_shape *m = NULL;
	const struct gpu_spec *g = NULL;
	double flops, bw;

	for (size_t i = 0; i < sizeof(models) / sizeof(models[0]); i++)
		if (model && !strcmp(models[i].name, model))
			m = &models[i];
	if (!m)
		return nkv_err(ENOENT, "unknown model preset '%s' (known: %s)", model ? model : "(null)",
			       nkv_perf_models());
	for (size_t i = 0; i < sizeof(gpus) / sizeof(gpus[0]); i++)
		if (gpu && !strcmp(gpus[i].name, gpu))
			g = &gpus[i];
	if (!g)
		return nkv_err(ENOENT, "unknown GPU preset '%s' (known: h100)", gpu ? gpu : "(null)");

	memset(out, 0, sizeof(*out));
	snprintf(out->model, sizeof(out->model), "%s", m->name);
	snprintf(out->gpu, sizeof(out->gpu), "%s", g->name);
	out->gpus = m->gpus;
	flops = g->flops * m->gpus;
	bw = g->hbm_Bps * m->gpus * BW_EFF;
	out->weight_bytes = (uint64_t)(2.0 * m->params); /* bf16 */
	out->hbm_bytes = g->hbm_bytes * m->gpus;
	out->mem_util = MEM_UTIL;
	out->kv_bytes_per_token = m->kv_bytes_per_token;
	out->max_batch = 256; /* vLLM's default max_num_seqs */
	out->prefill_a = PREFILL_OVERHEAD_S;
	out->prefill_b = 2.0 * m->params / (flops * MFU_PREFILL);
	out->prefill_c = 2.0 * m->layers * m->hidden / (flops * MFU_PREFILL);
	out->decode_a = (double)out->weight_bytes / bw + DECODE_OVERHEAD_S;
	out->decode_b = (double)m->kv_bytes_per_token / bw;
	out->decode_c = 2.0 * m->params / (flops * MFU_DECODE);
	out->source = "roofline from model shape and H100 SXM datasheet (MFU 0.4, HBM efficiency 0.7), "
		      "not fitted; see netkv_perf.h";
	return 0;
}

double nkv_perf_prefill_s(const struct nkv_perf *p, uint64_t l)
{
	double x = (double)l;

	return p->prefill_a + p->prefill_b * x + p->prefill_c * x * x;
}

double nkv_perf_prefill_batch_s(const struct nkv_perf *p, const uint32_t *l, uint32_t n)
{
	double s1 = 0, s2 = 0;

	for (uint32_t i = 0; i < n; i++) {
		s1 += l[i];
		s2 += (double)l[i] * l[i];
	}
	return p->prefill_a + p->prefill_b * s1 + p->prefill_c * s2;
}

double nkv_perf_decode_iter_s(const struct nkv_perf *p, uint64_t sum_context, uint32_t batch)
{
	return p->decode_a + p->decode_b * (double)sum_context + p->decode_c * batch;
}

uint64_t nkv_perf_kv_capacity_tokens(const struct nkv_perf *p)
{
	double usable = (double)p->hbm_bytes * p->mem_util - (double)p->weight_bytes;

	if (usable <= 0 || !p->kv_bytes_per_token)
		return 0;
	return (uint64_t)(usable / (double)p->kv_bytes_per_token);
}
