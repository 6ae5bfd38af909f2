/*
 * The GPU ops on the CUDA runtime. Linked against the static cudart, which
 * loads libcuda.so.1 itself when first called: a netkv binary starts on
 * hosts without the driver and says so on first GPU use. Driver entry
 * points netkv needs beyond the runtime (dma-buf export) are looked up with
 * cudaGetDriverEntryPointByVersion, so libcuda is never linked either.
 *
 * Every CUDA call is checked, and the error names the call:
 *   "cudaGetDeviceCount: cudaErrorNoDevice: no CUDA-capable device is detected"
 */
#include "gpu.h"
#include "nkv_util.h"

#include <cuda.h>
#include <cuda_runtime_api.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* transfer/cuda/copy_ranges.cu */
int nkv__cuda_copy_ranges(void *dst, const void *src, const void *ranges, uint32_t n, uint64_t max_len,
			  cudaStream_t stream);

static int cuda_errno(cudaError_t e)
{
	switch (e) {
	case cudaErrorNoDevice:
	case cudaErrorInsufficientDriver:
	case cudaErrorInvalidDevice:
	case cudaErrorDevicesUnavailable:
		return ENODEV;
	case cudaErrorMemoryAllocation:
		return ENOMEM;
	case cudaErrorInvalidValue:
		return EINVAL;
	case cudaErrorNotSupported:
		return ENOTSUP;
	default:
		return EIO;
	}
}

static int cuda_fail(cudaError_t e, const char *call)
{
	return nkv_err(cuda_errno(e), "%s: %s: %s", call, cudaGetErrorName(e), cudaGetErrorString(e));
}

/* CK(fn, args...): call fn; unless cudaSuccess, return the failure naming fn. */
#define CK(fn, ...)                                       \
	do {                                              \
		cudaError_t ck_e = fn(__VA_ARGS__);       \
		if (ck_e != cudaSuccess)                  \
			return cuda_fail(ck_e, #fn);      \
	} while (0)

/* For void paths (free, destroy): log, since there is no caller to tell. */
#define CK_LOG(fn, ...)                                                                            \
	do {                                                                                       \
		cudaError_t ck_e = fn(__VA_ARGS__);                                                \
		if (ck_e != cudaSuccess)                                                           \
			fprintf(stderr, "netkv: %s: %s: %s\n", #fn, cudaGetErrorName(ck_e),         \
				cudaGetErrorString(ck_e));                                         \
	} while (0)

static int set_dev(int dev)
{
	cudaError_t e = cudaSetDevice(dev);

	if (e != cudaSuccess)
		return nkv_err(cuda_errno(e), "cudaSetDevice(%d): %s: %s", dev, cudaGetErrorName(e), cudaGetErrorString(e));
	return 0;
}

static int c_count(int *n)
{
	*n = 0;
	CK(cudaGetDeviceCount, n);
	return 0;
}

static int c_open(int dev, char *desc, size_t len)
{
	struct cudaDeviceProp prop;
	char pci[32];
	int n, rc;

	if ((rc = c_count(&n)))
		return rc;
	if (dev < 0 || dev >= n)
		return nkv_err(ENODEV, "GPU %d asked for, and this host has %d (CUDA_VISIBLE_DEVICES applies)", dev, n);
	if ((rc = set_dev(dev)))
		return rc;
	CK(cudaGetDeviceProperties, &prop, dev);
	CK(cudaDeviceGetPCIBusId, pci, sizeof(pci), dev);
	if (!prop.unifiedAddressing)
		return nkv_err(ENOTSUP, "GPU %d (%s) has no unified addressing, which netkv's copies rely on", dev,
			       prop.name);
	if (desc)
		snprintf(desc, len, "cuda%d %s (%s)", dev, prop.name, pci);
	return 0;
}

static int c_by_pci(const char *pci, int *dev)
{
	CK(cudaDeviceGetByPCIBusId, dev, pci);
	return 0;
}

static int c_alloc(int dev, uint64_t len, void **p)
{
	int rc;

	*p = NULL;
	if ((rc = set_dev(dev)))
		return rc;
	cudaError_t e = cudaMalloc(p, len);
	if (e != cudaSuccess) {
		*p = NULL;
		return nkv_err(cuda_errno(e), "cudaMalloc(%llu bytes) on GPU %d: %s: %s", (unsigned long long)len, dev,
			       cudaGetErrorName(e), cudaGetErrorString(e));
	}
	return 0;
}

static int c_check_ptr(int dev, const void *p)
{
	struct cudaPointerAttributes a;

	CK(cudaPointerGetAttributes, &a, p);
	if (a.type != cudaMemoryTypeDevice)
		return nkv_err(EINVAL, "pointer %p is not GPU device memory (cudaPointerGetAttributes: type %d)", p,
			       (int)a.type);
	if (a.device != dev)
		return nkv_err(EINVAL, "pointer %p is memory of GPU %d, and the engine uses GPU %d (opts.gpu)", p,
			       a.device, dev);
	return 0;
}

static void c_free(int dev, void *p)
{
	if (!p || set_dev(dev))
		return;
	CK_LOG(cudaFree, p);
}

static int c_host_alloc(int dev, uint64_t len, void **p)
{
	int rc;

	*p = NULL;
	if ((rc = set_dev(dev)))
		return rc;
	/* Portable: usable by copies on any device's stream. */
	cudaError_t e = cudaHostAlloc(p, len, cudaHostAllocPortable);
	if (e != cudaSuccess) {
		*p = NULL;
		return nkv_err(cuda_errno(e), "cudaHostAlloc(%llu bytes, portable): %s: %s (pinned memory counts "
			       "against `ulimit -l` on some systems)", (unsigned long long)len, cudaGetErrorName(e),
			       cudaGetErrorString(e));
	}
	return 0;
}

static void c_host_free(int dev, void *p)
{
	if (!p || set_dev(dev))
		return;
	CK_LOG(cudaFreeHost, p);
}

static int c_stream_create(int dev, void **s)
{
	cudaStream_t st;
	int rc;

	*s = NULL;
	if ((rc = set_dev(dev)))
		return rc;
	/* Non-blocking: no implicit sync with the legacy default stream. */
	CK(cudaStreamCreateWithFlags, &st, cudaStreamNonBlocking);
	*s = st;
	return 0;
}

static void c_stream_destroy(int dev, void *s)
{
	if (!s || set_dev(dev))
		return;
	CK_LOG(cudaStreamDestroy, (cudaStream_t)s);
}

static int c_stream_sync(int dev, void *s)
{
	int rc;

	if ((rc = set_dev(dev)))
		return rc;
	CK(cudaStreamSynchronize, (cudaStream_t)s);
	return 0;
}

static int c_event_create(int dev, void **ev)
{
	cudaEvent_t e;
	int rc;

	*ev = NULL;
	if ((rc = set_dev(dev)))
		return rc;
	CK(cudaEventCreateWithFlags, &e, cudaEventDisableTiming);
	*ev = e;
	return 0;
}

static void c_event_destroy(int dev, void *ev)
{
	if (!ev || set_dev(dev))
		return;
	CK_LOG(cudaEventDestroy, (cudaEvent_t)ev);
}

static int c_event_record(int dev, void *ev, void *s)
{
	int rc;

	if ((rc = set_dev(dev)))
		return rc;
	CK(cudaEventRecord, (cudaEvent_t)ev, (cudaStream_t)s);
	return 0;
}

static int c_event_done(int dev, void *ev)
{
	cudaError_t e;
	int rc;

	if ((rc = set_dev(dev)))
		return rc;
	e = cudaEventQuery((cudaEvent_t)ev);
	if (e == cudaSuccess)
		return 1;
	if (e == cudaErrorNotReady) {
		(void)cudaGetLastError(); /* "not yet" is no error: keep it out of the last-error slot */
		return 0;
	}
	return cuda_fail(e, "cudaEventQuery");
}

static int c_copy_async(int dev, void *dst, const void *src, uint64_t len, void *s)
{
	int rc;

	if ((rc = set_dev(dev)))
		return rc;
	CK(cudaMemcpyAsync, dst, src, len, cudaMemcpyDefault, (cudaStream_t)s);
	return 0;
}

static int c_copy(int dev, void *dst, const void *src, uint64_t len)
{
	int rc;

	if ((rc = set_dev(dev)))
		return rc;
	CK(cudaMemcpy, dst, src, len, cudaMemcpyDefault);
	/* From pageable memory cudaMemcpy returns once the bytes are in the
	 * driver's bounce buffer, DMA still running on the legacy stream, which
	 * our non-blocking streams do not wait for: wait here, so "copy" means
	 * the bytes are on the device. */
	CK(cudaStreamSynchronize, cudaStreamLegacy);
	return 0;
}

static int c_memset(int dev, void *p, int v, uint64_t len)
{
	int rc;

	if ((rc = set_dev(dev)))
		return rc;
	CK(cudaMemset, p, v, len);
	cudaError_t e = cudaDeviceSynchronize();
	if (e != cudaSuccess)
		return cuda_fail(e, "cudaDeviceSynchronize (after cudaMemset)");
	return 0;
}

static int c_copy_ranges(int dev, void *dst, const void *src, const struct nkv_range *ranges, uint32_t n,
			 uint64_t max_len, void *s)
{
	cudaError_t e;
	int rc;

	if ((rc = set_dev(dev)))
		return rc;
	e = (cudaError_t)nkv__cuda_copy_ranges(dst, src, ranges, n, max_len, (cudaStream_t)s);
	if (e != cudaSuccess)
		return nkv_err(cuda_errno(e), "launch of the gather/scatter kernel (%u ranges, longest %llu bytes): %s: %s "
			       "(was netkv built for this GPU's architecture? see CMAKE_CUDA_ARCHITECTURES)", n,
			       (unsigned long long)max_len, cudaGetErrorName(e), cudaGetErrorString(e));
	return 0;
}

/* ---- driver entry points (no libcuda link) -------------------------------- */

/* The driver API version whose ABI we call these with (unchanged since 11.7). */
#define ENTRY_VERSION 12000

static int driver_entry(const char *sym, void **fn)
{
	enum cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;

	*fn = NULL;
	cudaError_t e = cudaGetDriverEntryPointByVersion(sym, fn, ENTRY_VERSION, cudaEnableDefault, &q);
	if (e != cudaSuccess)
		return nkv_err(cuda_errno(e), "cudaGetDriverEntryPointByVersion(%s): %s: %s", sym, cudaGetErrorName(e),
			       cudaGetErrorString(e));
	if (q != cudaDriverEntryPointSuccess || !*fn)
		return nkv_err(ENOTSUP, "cudaGetDriverEntryPointByVersion(%s): %s", sym,
			       q == cudaDriverEntryPointVersionNotSufficent ? "the driver is too old for this symbol"
									    : "symbol not found in the driver");
	return 0;
}

typedef CUresult (*pfn_get_error_string)(CUresult, const char **);
typedef CUresult (*pfn_mem_get_handle)(void *, CUdeviceptr, size_t, CUmemRangeHandleType, unsigned long long);
typedef CUresult (*pfn_device_get_attribute)(int *, CUdevice_attribute, CUdevice);
typedef CUresult (*pfn_device_get)(CUdevice *, int);

static const char *cu_str(CUresult r)
{
	void *fn;
	const char *s = NULL;

	if (driver_entry("cuGetErrorString", &fn) || ((pfn_get_error_string)fn)(r, &s) != CUDA_SUCCESS || !s)
		return "unknown driver error";
	return s;
}

static int c_dmabuf_fd(int dev, void *p, uint64_t len, int *fd, uint64_t *offset, uint64_t *buf_len)
{
	long pg = sysconf(_SC_PAGESIZE);
	uintptr_t base, end;
	CUresult r;
	void *fn;
	int rc;

	*fd = -1;
	if (pg <= 0)
		pg = 4096;
	if ((rc = set_dev(dev)))
		return rc;
	/* Runtime and driver share the primary context once a runtime call
	 * made it current: cudaFree(0) does exactly that. */
	CK(cudaFree, 0);
	if ((rc = driver_entry("cuMemGetHandleForAddressRange", &fn)))
		return rc;
	/* The driver wants the range aligned to the host page size. */
	base = (uintptr_t)p & ~(uintptr_t)(pg - 1);
	end = ((uintptr_t)p + len + (uintptr_t)pg - 1) & ~(uintptr_t)(pg - 1);
	r = ((pfn_mem_get_handle)fn)(fd, (CUdeviceptr)base, end - base, CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD, 0);
	if (r != CUDA_SUCCESS) {
		*fd = -1;
		return nkv_err(r == CUDA_ERROR_NOT_SUPPORTED ? ENOTSUP : EIO,
			       "cuMemGetHandleForAddressRange(DMA_BUF_FD, %llu bytes): error %d: %s",
			       (unsigned long long)(end - base), (int)r, cu_str(r));
	}
	*offset = (uintptr_t)p - base;
	*buf_len = end - base;
	return 0;
}

static int c_dmabuf_supported(int dev, bool *yes)
{
	void *get, *attr;
	int v = 0, rc;
	CUdevice cud;

	*yes = true; /* unknown: let the registration try and tell */
	if ((rc = set_dev(dev)))
		return rc;
	CK(cudaFree, 0);
	/* The attribute is deprecated in CUDA 13 (dma-buf is assumed where the
	 * open modules run); when it cannot be read, registration finds out. */
	if (driver_entry("cuDeviceGet", &get) || driver_entry("cuDeviceGetAttribute", &attr))
		return 0;
	if (((pfn_device_get)get)(&cud, dev) != CUDA_SUCCESS)
		return 0;
	if (((pfn_device_get_attribute)attr)(&v, CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED, cud) == CUDA_SUCCESS)
		*yes = v != 0;
	return 0;
}

const struct nkv_gpu_ops nkv__gpu_builtin = {
	.name = "cuda",
	.open = c_open,
	.device_count = c_count,
	.device_by_pci = c_by_pci,
	.alloc = c_alloc,
	.check_ptr = c_check_ptr,
	.free = c_free,
	.host_alloc = c_host_alloc,
	.host_free = c_host_free,
	.stream_create = c_stream_create,
	.stream_destroy = c_stream_destroy,
	.stream_sync = c_stream_sync,
	.event_create = c_event_create,
	.event_destroy = c_event_destroy,
	.event_record = c_event_record,
	.event_done = c_event_done,
	.copy_async = c_copy_async,
	.copy = c_copy,
	.memset = c_memset,
	.copy_ranges_async = c_copy_ranges,
	.dmabuf_fd = c_dmabuf_fd,
	.dmabuf_supported = c_dmabuf_supported,
};
