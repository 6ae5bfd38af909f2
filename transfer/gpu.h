/*
 * GPU memory for the transfer engine, behind one small ops table.
 *
 * Two implementations, one linked in: gpu_cuda.c (CUDA runtime, static
 * cudart, built when CMake finds the toolkit) and gpu_none.c (every call
 * fails with "netkv was built without CUDA"). Callers use nkv__gpu() and
 * never test for CUDA themselves.
 *
 * Every function returns 0 (event_done: 1 or 0) or a negative errno, with
 * the failing CUDA call and its error name/string in nkv_last_error():
 *   "cudaSetDevice(0): cudaErrorInsufficientDriver: CUDA driver version is
 *    insufficient for CUDA runtime version"
 * Device numbers are CUDA runtime ordinals (CUDA_VISIBLE_DEVICES applies).
 * Each call selects its device itself (cudaSetDevice is per thread, and the
 * engine may be driven from another thread than the one that created it).
 */
#ifndef NKV_TRANSFER_GPU_H
#define NKV_TRANSFER_GPU_H

#include "netkv_transfer.h"

#include <stddef.h>
#include <stdint.h>

struct nkv_gpu_ops {
	const char *name; /* "cuda" or "none" */
	/* Check the device exists and works; desc gets e.g.
	 * "cuda0 NVIDIA H100 80GB HBM3 (0000:17:00.0)". */
	int (*open)(int dev, char *desc, size_t len);
	int (*device_count)(int *n);
	/* Runtime ordinal of the GPU with this PCI bus id ("0000:17:00.0"). */
	int (*device_by_pci)(const char *pci, int *dev);
	int (*alloc)(int dev, uint64_t len, void **p);      /* device memory (cudaMalloc) */
	/* nkv_region_register(NKV_MEM_CUDA): p is device memory of GPU dev. */
	int (*check_ptr)(int dev, const void *p);
	void (*free)(int dev, void *p);
	int (*host_alloc)(int dev, uint64_t len, void **p); /* pinned host memory (cudaHostAlloc) */
	void (*host_free)(int dev, void *p);
	int (*stream_create)(int dev, void **s);            /* non-blocking stream */
	void (*stream_destroy)(int dev, void *s);
	int (*stream_sync)(int dev, void *s);
	int (*event_create)(int dev, void **ev);            /* timing disabled: cheapest to query */
	void (*event_destroy)(int dev, void *ev);
	int (*event_record)(int dev, void *ev, void *s);
	int (*event_done)(int dev, void *ev);               /* 1 done, 0 not yet, <0 failed */
	/* cudaMemcpyAsync, direction inferred from the pointers (UVA). */
	int (*copy_async)(int dev, void *dst, const void *src, uint64_t len, void *s);
	/* Blocking copy, for setup, --verify and tests; never on the data path. */
	int (*copy)(int dev, void *dst, const void *src, uint64_t len);
	int (*memset)(int dev, void *p, int v, uint64_t len);
	/* Device-to-device gather/scatter kernel: for each of the n ranges,
	 * dst + r.dst_off <- src + r.src_off, r.len bytes. `ranges` is in device
	 * memory (copied there by the caller on the same stream). Ranges must
	 * not overlap on the destination. */
	int (*copy_ranges_async)(int dev, void *dst, const void *src, const struct nkv_range *ranges, uint32_t n,
				 uint64_t max_len, void *s);
	/* CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED; *yes = true when it cannot be told. */
	int (*dmabuf_supported)(int dev, bool *yes);
	/* dma-buf fd for the host-page-aligned range around [p, p+len) through
	 * cuMemGetHandleForAddressRange (reached with
	 * cudaGetDriverEntryPointByVersion: libcuda is never linked). *offset is
	 * p's offset in the dma-buf; the caller closes *fd. */
	int (*dmabuf_fd)(int dev, void *p, uint64_t len, int *fd, uint64_t *offset, uint64_t *buf_len);
};

const struct nkv_gpu_ops *nkv__gpu(void);
/* The implementation linked in (gpu_cuda.c or gpu_none.c). */
extern const struct nkv_gpu_ops nkv__gpu_builtin;
/* Tests: run the engine on a fake device (host memory, deferred copies);
 * NULL restores the built-in one. Set before creating engines. */
void nkv__gpu_override(const struct nkv_gpu_ops *ops);

/*
 * GPUDirect registration decision (pure, tested without hardware): given
 * what the host offers, which modes to try, in order. Registration tries
 * them and falls through on failure; the reason string keeps every step.
 */
enum nkv_gpu_reg_mode { NKV_GPU_REG_DMABUF, NKV_GPU_REG_PEERMEM, NKV_GPU_REG_STAGING };

struct nkv_gpu_caps {
	bool rdma;            /* the backend is verbs (TCP always stages) */
	bool soft_rdma;       /* rxe / siw: no GPU memory, ever */
	bool ibv_dmabuf;      /* ibv_reg_dmabuf_mr probe with fd -1 said EBADF (supported) */
	bool cuda_dmabuf;     /* the driver hands out dma-buf fds (or we could not tell) */
	bool peermem;         /* /sys/module/nvidia_peermem or nv_peer_mem loaded */
	/* NKV_GPUDIRECT=dmabuf|peermem|staging: try only that mode ("" = all). */
	const char *force;
};

#define NKV_GPU_REG_MAX 3
struct nkv_gpu_reg_plan {
	enum nkv_gpu_reg_mode try[NKV_GPU_REG_MAX];
	unsigned n;           /* >= 1; the last one is always staging unless forced */
	char why[256];        /* why modes were left out, e.g. "dma-buf: rxe0 is a software device; ..." */
};

const char *nkv_gpu_reg_mode_name(enum nkv_gpu_reg_mode m); /* "dma-buf", "peermem", "staging" */
int nkv__gpu_reg_plan(const struct nkv_gpu_caps *caps, struct nkv_gpu_reg_plan *out);
/* Fill caps->peermem from /sys/module (root lets tests point it elsewhere). */
bool nkv__gpu_peermem_loaded(const char *sysfs_module_root);

/*
 * The staging pipeline's chunk plan (pure): a request's ranges, in order,
 * cut so each chunk holds at most chunk_bytes of payload and max_ranges
 * ranges. Within a chunk the ranges' bytes are packed back to back from
 * offset 0 (soff), which is how they sit in the bounce buffer.
 */
struct nkv_srange {
	uint64_t src_off, dst_off, len;
	uint64_t soff;        /* offset in the chunk's bounce buffer */
	uint32_t chunk;
};
struct nkv_chunk {
	size_t first, n;      /* its ranges in the srange array */
	uint64_t bytes;
};
struct nkv_chunk_plan {
	struct nkv_srange *r;
	size_t nr;
	struct nkv_chunk *c;
	size_t nc;
	uint64_t bytes;
};
int nkv__chunk_plan(const struct nkv_range *ranges, size_t n, uint64_t chunk_bytes, uint32_t max_ranges,
		    struct nkv_chunk_plan *out);
void nkv__chunk_plan_free(struct nkv_chunk_plan *p);

#endif
