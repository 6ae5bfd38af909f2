/*
 * Time and capacity models shared by agents, simulator and scheduler.
 * The presets are derived from model shape and GPU datasheet figures (the
 * one model table, tools/util/models.c; netkv_perf.h has the formulas and
 * why), not fitted here.
 */
#include "netkv_perf.h"

#include "nkv_models.h"
#include "nkv_util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define MFU_PREFILL 0.4
#define MFU_DECODE 0.4
#define BW_EFF 0.7
#define MEM_UTIL 0.9
#define PREFILL_OVERHEAD_S 0.005
#define DECODE_OVERHEAD_S 0.002

const char *nkv_perf_models(void)
{
	return nkv_model_names(",", true);
}

const char *nkv_perf_gpus(void)
{
	return nkv_gpu_names(",");
}

/* A config.json fixes no tensor-parallel width: the smallest power of two
 * whose GPUs hold the weights in half their HBM (so KV gets the rest), the
 * rule the presets follow (llama3-8b: 1, llama3-70b: 4 on an H100). */
static uint32_t pick_tp(double weight_bytes, uint64_t hbm_bytes)
{
	uint32_t tp = 1;

	while (tp < 64 && weight_bytes > 0.5 * (double)hbm_bytes * tp)
		tp *= 2;
	return tp;
}

int nkv_perf_preset(const char *model, const char *gpu, struct nkv_perf *out)
{
	const struct nkv_gpu_spec *g = nkv_gpu_spec(gpu ? gpu : NKV_GPU_DEFAULT);
	struct nkv_model_desc m;
	double flops, bw, dtype_bytes;
	uint64_t kv_bytes_per_token;
	int rc;

	if ((rc = nkv_model_find(model, &m)))
		return rc;
	if (!m.params)
		return nkv_err(ENOENT, "no perf model for '%s': %s", model, m.no_perf);
	if (!g)
		return nkv_err(ENOENT, "unknown GPU preset '%s' (known: %s)", gpu, nkv_perf_gpus());

	dtype_bytes = !strcmp(m.dtype, "fp32") ? 4 : !strcmp(m.dtype, "fp8") ? 1 : 2;
	kv_bytes_per_token = (uint64_t)m.layers * (m.mla ? 1 : 2) * m.kv_heads * m.head_dim * (uint64_t)dtype_bytes;
	memset(out, 0, sizeof(*out));
	snprintf(out->model, sizeof(out->model), "%s", m.name);
	snprintf(out->gpu, sizeof(out->gpu), "%s", g->name);
	out->weight_bytes = (uint64_t)(dtype_bytes * m.params);
	out->gpus = m.tp_gpus ? m.tp_gpus : pick_tp((double)out->weight_bytes, g->hbm_bytes);
	flops = g->flops * out->gpus;
	bw = g->hbm_Bps * out->gpus * BW_EFF;
	out->hbm_bytes = g->hbm_bytes * out->gpus;
	out->mem_util = MEM_UTIL;
	out->kv_bytes_per_token = kv_bytes_per_token;
	out->max_batch = 256; /* vLLM's default max_num_seqs */
	out->prefill_a = PREFILL_OVERHEAD_S;
	out->prefill_b = 2.0 * m.params / (flops * MFU_PREFILL);
	out->prefill_c = 2.0 * m.layers * m.hidden / (flops * MFU_PREFILL);
	out->decode_a = (double)out->weight_bytes / bw + DECODE_OVERHEAD_S;
	out->decode_b = (double)kv_bytes_per_token / bw;
	out->decode_c = 2.0 * m.params / (flops * MFU_DECODE);
	out->source = "roofline from model shape and the GPU preset's datasheet figures (tools/util/models.c; "
		      "MFU 0.4, HBM efficiency 0.7), not fitted; see netkv_perf.h";
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
