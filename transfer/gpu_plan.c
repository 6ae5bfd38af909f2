/*
 * The GPU path's decisions, kept free of CUDA and verbs calls so they are
 * tested on any box: which GPUDirect registration modes to try and in what
 * order, and how a request's ranges are cut into staging chunks.
 */
#include "gpu.h"
#include "nkv_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const struct nkv_gpu_ops *gpu_override;

const struct nkv_gpu_ops *nkv__gpu(void)
{
	return gpu_override ? gpu_override : &nkv__gpu_builtin;
}

void nkv__gpu_override(const struct nkv_gpu_ops *ops)
{
	gpu_override = ops;
}

const char *nkv_gpu_reg_mode_name(enum nkv_gpu_reg_mode m)
{
	switch (m) {
	case NKV_GPU_REG_DMABUF:
		return "dma-buf";
	case NKV_GPU_REG_PEERMEM:
		return "peermem";
	case NKV_GPU_REG_STAGING:
		return "staging";
	}
	return "?";
}

static void why_add(struct nkv_gpu_reg_plan *p, const char *s)
{
	size_t l = strlen(p->why);

	snprintf(p->why + l, sizeof(p->why) - l, "%s%s", l ? "; " : "", s);
}

/*
 * Order of preference, as the notes say: dma-buf (upstream kernel
 * interface, no out-of-tree module), then nvidia-peermem (plain
 * ibv_reg_mr on the device pointer), then staging through pinned host
 * memory, which always works.
 */
int nkv__gpu_reg_plan(const struct nkv_gpu_caps *caps, struct nkv_gpu_reg_plan *out)
{
	enum nkv_gpu_reg_mode forced = NKV_GPU_REG_STAGING;
	bool force = caps->force && *caps->force;

	memset(out, 0, sizeof(*out));
	if (force) {
		if (!strcmp(caps->force, "dmabuf") || !strcmp(caps->force, "dma-buf"))
			forced = NKV_GPU_REG_DMABUF;
		else if (!strcmp(caps->force, "peermem"))
			forced = NKV_GPU_REG_PEERMEM;
		else if (strcmp(caps->force, "staging"))
			return nkv_err(EINVAL, "NKV_GPUDIRECT=%s: expected dmabuf, peermem or staging", caps->force);
	}
	if (!caps->rdma) {
		if (force && forced != NKV_GPU_REG_STAGING)
			return nkv_err(EINVAL, "NKV_GPUDIRECT=%s needs the verbs backend; TCP always stages",
				       caps->force);
		out->try[out->n++] = NKV_GPU_REG_STAGING;
		why_add(out, "TCP backend: staged through pinned host memory");
		return 0;
	}
	if (force) {
		/* Forced: try exactly that mode, so a test or a user checking
		 * one mechanism never gets a silent fallback. */
		out->try[out->n++] = forced;
		why_add(out, "forced by NKV_GPUDIRECT");
		return 0;
	}
	if (caps->soft_rdma) {
		why_add(out, "software RDMA device (rxe/siw) cannot reach GPU memory");
	} else {
		if (!caps->ibv_dmabuf)
			why_add(out, "dma-buf: the RDMA driver or libibverbs lacks ibv_reg_dmabuf_mr (needs rdma-core >= 34, kernel >= 5.12)");
		else if (!caps->cuda_dmabuf)
			why_add(out, "dma-buf: the GPU driver does not export dma-buf (needs the open kernel modules)");
		else
			out->try[out->n++] = NKV_GPU_REG_DMABUF;
		if (!caps->peermem)
			why_add(out, "peermem: nvidia_peermem module not loaded");
		else
			out->try[out->n++] = NKV_GPU_REG_PEERMEM;
	}
	out->try[out->n++] = NKV_GPU_REG_STAGING;
	return 0;
}

bool nkv__gpu_peermem_loaded(const char *root)
{
	static const char *const mods[] = { "nvidia_peermem", "nv_peer_mem" };
	char path[512];
	struct stat st;

	if (!root)
		root = "/sys/module";
	for (size_t i = 0; i < sizeof(mods) / sizeof(mods[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", root, mods[i]);
		if (!stat(path, &st) && S_ISDIR(st.st_mode))
			return true;
	}
	return false;
}

void nkv__chunk_plan_free(struct nkv_chunk_plan *p)
{
	free(p->r);
	free(p->c);
	memset(p, 0, sizeof(*p));
}

int nkv__chunk_plan(const struct nkv_range *ranges, size_t n, uint64_t chunk_bytes, uint32_t max_ranges,
		    struct nkv_chunk_plan *out)
{
	size_t cap_r = 0, cap_c = 0;
	uint64_t total = 0, fill = 0;
	struct nkv_chunk *cur = NULL;

	memset(out, 0, sizeof(*out));
	if (!n)
		return nkv_err(EINVAL, "chunk plan: no ranges");
	if (!chunk_bytes || !max_ranges)
		return nkv_err(EINVAL, "chunk plan: zero chunk size or range limit");
	/* Upper bounds, to allocate once: a range adds at most len/chunk + 1
	 * pieces (cut at most at each chunk boundary it crosses). */
	for (size_t i = 0; i < n; i++) {
		if (!ranges[i].len)
			return nkv_err(EINVAL, "chunk plan: range %zu is empty", i);
		if (ranges[i].len > UINT64_MAX - total)
			return nkv_err(EOVERFLOW, "chunk plan: byte count overflows");
		total += ranges[i].len;
		cap_r += ranges[i].len / chunk_bytes + 2;
	}
	cap_c = cap_r; /* every chunk has at least one piece */
	if (total / chunk_bytes + 1 > UINT32_MAX)
		return nkv_err(EOVERFLOW, "chunk plan: more than 2^32 chunks");
	out->r = malloc(cap_r * sizeof(*out->r));
	out->c = malloc(cap_c * sizeof(*out->c));
	if (!out->r || !out->c) {
		nkv__chunk_plan_free(out);
		return nkv_err(ENOMEM, "chunk plan: out of memory for %zu pieces", cap_r);
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t done = 0;

		while (done < ranges[i].len) {
			uint64_t len = ranges[i].len - done;

			if (!cur || fill == chunk_bytes || cur->n == max_ranges) {
				cur = &out->c[out->nc++];
				*cur = (struct nkv_chunk){ .first = out->nr };
				fill = 0;
			}
			if (len > chunk_bytes - fill)
				len = chunk_bytes - fill;
			out->r[out->nr++] = (struct nkv_srange){
				.src_off = ranges[i].src_off + done,
				.dst_off = ranges[i].dst_off + done,
				.len = len,
				.soff = fill,
				.chunk = (uint32_t)(out->nc - 1),
			};
			cur->n++;
			cur->bytes += len;
			fill += len;
			done += len;
		}
	}
	out->bytes = total;
	return 0;
}
