/*
 * Gather/scatter of byte ranges inside GPU memory, one launch per list.
 *
 * Why a kernel: a request's paged KV blocks are thousands of 16-64 KiB
 * pieces. One cudaMemcpyAsync each costs a few microseconds of launch and
 * DMA setup, about as long as the piece takes on PCIe, so the copy engine
 * idles half the time. cudaMemcpyBatchAsync exists only from CUDA 12.8 (and
 * changed signature in 13.0), and cudaMemcpy2DAsync only fits one stride.
 * This kernel packs the pieces device-to-device at HBM speed (tens of times
 * PCIe) into a contiguous staging buffer, which then crosses PCIe as one
 * copy-engine transfer: the gather costs a few percent of the PCIe time.
 *
 * Grid: y = range (batches of 65535), x = 16 KiB tile of that range; tiles
 * past a range's end exit at once. 16-byte loads/stores where the range is
 * 16-byte aligned on both sides (always for fp16/bf16 KV), bytes otherwise.
 */
#include <cuda_runtime.h>
#include <stdint.h>

struct nkv_range_dev { /* = struct nkv_range in netkv_transfer.h */
	uint64_t src_off, dst_off, len;
};

#define THREADS 256
#define TILE (16u << 10)

__global__ void nkv_copy_ranges_kernel(char *__restrict__ dst, const char *__restrict__ src,
				       const nkv_range_dev *__restrict__ ranges)
{
	const nkv_range_dev r = ranges[blockIdx.y];
	uint64_t start = (uint64_t)blockIdx.x * TILE;

	if (start >= r.len)
		return;
	uint64_t end = start + TILE < r.len ? start + TILE : r.len;
	const char *s = src + r.src_off;
	char *d = dst + r.dst_off;

	if ((((uintptr_t)s | (uintptr_t)d | r.len) & 15) == 0) {
		const uint4 *s4 = (const uint4 *)(s + start);
		uint4 *d4 = (uint4 *)(d + start);
		uint64_t n = (end - start) / 16;

		for (uint64_t i = threadIdx.x; i < n; i += THREADS)
			d4[i] = s4[i];
	} else {
		for (uint64_t i = start + threadIdx.x; i < end; i += THREADS)
			d[i] = s[i];
	}
}

extern "C" int nkv__cuda_copy_ranges(void *dst, const void *src, const void *ranges, uint32_t n, uint64_t max_len,
				     cudaStream_t stream)
{
	uint64_t tiles = (max_len + TILE - 1) / TILE;
	const nkv_range_dev *r = (const nkv_range_dev *)ranges;

	if (!n || !max_len)
		return (int)cudaSuccess;
	if (tiles > 0x7fffffffu)
		return (int)cudaErrorInvalidValue;
	/* cudaLaunchKernel returns this launch's own status; cudaGetLastError
	 * after <<<>>> would also return an older error another call already
	 * handled, failing a good launch. */
	for (uint32_t done = 0; done < n;) {
		uint32_t batch = n - done < 65535u ? n - done : 65535u;
		char *d = (char *)dst;
		const char *s = (const char *)src;
		const nkv_range_dev *rr = r + done;
		void *args[] = { &d, &s, &rr };
		cudaError_t e = cudaLaunchKernel((const void *)nkv_copy_ranges_kernel, dim3((unsigned)tiles, batch),
						 dim3(THREADS), args, 0, stream);
		if (e != cudaSuccess)
			return (int)e;
		done += batch;
	}
	return (int)cudaSuccess;
}
