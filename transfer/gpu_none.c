/*
 * The GPU ops of a build without the CUDA toolkit: every call says so.
 * Linked instead of gpu_cuda.c, so callers never test for CUDA.
 */
#include "gpu.h"
#include "nkv_util.h"

#include <errno.h>

#define NO_CUDA()                                                                              \
	nkv_err(ENOTSUP, "netkv was built without CUDA (no toolkit found at build time, or -DNKV_CUDA=OFF; " \
		"rebuild with the CUDA toolkit installed)")

static int none_open(int dev, char *desc, size_t len) { return NO_CUDA(); }
static int none_count(int *n) { *n = 0; return NO_CUDA(); }
static int none_by_pci(const char *pci, int *dev) { return NO_CUDA(); }
static int none_alloc(int dev, uint64_t len, void **p) { *p = NULL; return NO_CUDA(); }
static void none_free(int dev, void *p) { }
static int none_check_ptr(int dev, const void *p) { return NO_CUDA(); }
static int none_stream_create(int dev, void **s) { *s = NULL; return NO_CUDA(); }
static void none_destroy(int dev, void *s) { }
static int none_sync(int dev, void *s) { return NO_CUDA(); }
static int none_event_record(int dev, void *ev, void *s) { return NO_CUDA(); }
static int none_copy_async(int dev, void *dst, const void *src, uint64_t len, void *s) { return NO_CUDA(); }
static int none_copy(int dev, void *dst, const void *src, uint64_t len) { return NO_CUDA(); }
static int none_memset(int dev, void *p, int v, uint64_t len) { return NO_CUDA(); }
static int none_copy_ranges(int dev, void *dst, const void *src, const struct nkv_range *r, uint32_t n,
			    uint64_t max_len, void *s)
{
	return NO_CUDA();
}
static int none_dmabuf(int dev, void *p, uint64_t len, int *fd, uint64_t *off, uint64_t *buf_len)
{
	*fd = -1;
	return NO_CUDA();
}

static int none_dmabuf_supported(int dev, bool *yes)
{
	*yes = false;
	return NO_CUDA();
}

const struct nkv_gpu_ops nkv__gpu_builtin = {
	.name = "none",
	.open = none_open,
	.device_count = none_count,
	.device_by_pci = none_by_pci,
	.alloc = none_alloc,
	.check_ptr = none_check_ptr,
	.free = none_free,
	.host_alloc = none_alloc,
	.host_free = none_free,
	.stream_create = none_stream_create,
	.stream_destroy = none_destroy,
	.stream_sync = none_sync,
	.event_create = none_stream_create,
	.event_destroy = none_destroy,
	.event_record = none_event_record,
	.event_done = none_sync,
	.copy_async = none_copy_async,
	.copy = none_copy,
	.memset = none_memset,
	.copy_ranges_async = none_copy_ranges,
	.dmabuf_fd = none_dmabuf,
	.dmabuf_supported = none_dmabuf_supported,
};
