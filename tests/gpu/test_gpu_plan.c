/*
 * The GPU path's decisions, which need no GPU: the GPUDirect registration
 * order for a given set of host capabilities, the nvidia-peermem check,
 * and the staging chunk plan (hand-computed cases and invariants over
 * random range lists).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gpu.h"
#include "nkv_util.h"

static void expect_modes(const struct nkv_gpu_caps *caps, unsigned n, const enum nkv_gpu_reg_mode *modes)
{
	struct nkv_gpu_reg_plan p;

	assert_int_equal(nkv__gpu_reg_plan(caps, &p), 0);
	assert_int_equal(p.n, n);
	for (unsigned i = 0; i < n; i++)
		assert_int_equal(p.try[i], modes[i]);
}

static void test_reg_order(void **state)
{
	struct nkv_gpu_reg_plan p;
	struct nkv_gpu_caps all = { .rdma = true, .ibv_dmabuf = true, .cuda_dmabuf = true, .peermem = true };
	struct nkv_gpu_caps c;

	/* Everything available: dma-buf, then peermem, then staging. */
	expect_modes(&all, 3, (enum nkv_gpu_reg_mode[]){ NKV_GPU_REG_DMABUF, NKV_GPU_REG_PEERMEM, NKV_GPU_REG_STAGING });
	assert_string_equal(nkv_gpu_reg_mode_name(NKV_GPU_REG_DMABUF), "dma-buf");

	/* No dma-buf in libibverbs / the RDMA driver: peermem first, reason kept. */
	c = all;
	c.ibv_dmabuf = false;
	expect_modes(&c, 2, (enum nkv_gpu_reg_mode[]){ NKV_GPU_REG_PEERMEM, NKV_GPU_REG_STAGING });
	nkv__gpu_reg_plan(&c, &p);
	assert_non_null(strstr(p.why, "ibv_reg_dmabuf_mr"));

	/* The GPU driver does not export dma-buf (proprietary modules). */
	c = all;
	c.cuda_dmabuf = false;
	nkv__gpu_reg_plan(&c, &p);
	assert_int_equal(p.try[0], NKV_GPU_REG_PEERMEM);
	assert_non_null(strstr(p.why, "open kernel modules"));

	/* dma-buf but no peermem module. */
	c = all;
	c.peermem = false;
	expect_modes(&c, 2, (enum nkv_gpu_reg_mode[]){ NKV_GPU_REG_DMABUF, NKV_GPU_REG_STAGING });
	nkv__gpu_reg_plan(&c, &p);
	assert_non_null(strstr(p.why, "nvidia_peermem"));

	/* Neither: staging only, both reasons given. */
	c = (struct nkv_gpu_caps){ .rdma = true };
	expect_modes(&c, 1, (enum nkv_gpu_reg_mode[]){ NKV_GPU_REG_STAGING });
	nkv__gpu_reg_plan(&c, &p);
	assert_non_null(strstr(p.why, "dma-buf"));
	assert_non_null(strstr(p.why, "peermem"));

	/* Soft RDMA (rxe/siw) never reaches GPU memory, whatever else says yes. */
	c = all;
	c.soft_rdma = true;
	expect_modes(&c, 1, (enum nkv_gpu_reg_mode[]){ NKV_GPU_REG_STAGING });
	nkv__gpu_reg_plan(&c, &p);
	assert_non_null(strstr(p.why, "software RDMA"));

	/* TCP always stages. */
	c = all;
	c.rdma = false;
	expect_modes(&c, 1, (enum nkv_gpu_reg_mode[]){ NKV_GPU_REG_STAGING });
}

static void test_reg_force(void **state)
{
	struct nkv_gpu_reg_plan p;
	struct nkv_gpu_caps c = { .rdma = true, .force = "peermem" };

	/* Forced: exactly that mode, even when the probe says no (the user
	 * wants to see that mechanism's own error). */
	expect_modes(&c, 1, (enum nkv_gpu_reg_mode[]){ NKV_GPU_REG_PEERMEM });
	c.force = "dmabuf";
	expect_modes(&c, 1, (enum nkv_gpu_reg_mode[]){ NKV_GPU_REG_DMABUF });
	c.force = "staging";
	expect_modes(&c, 1, (enum nkv_gpu_reg_mode[]){ NKV_GPU_REG_STAGING });
	c.force = "";
	expect_modes(&c, 1, (enum nkv_gpu_reg_mode[]){ NKV_GPU_REG_STAGING });
	c.force = "rdma-please";
	assert_int_equal(nkv__gpu_reg_plan(&c, &p), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "NKV_GPUDIRECT=rdma-please"));
	c.rdma = false;
	c.force = "dmabuf";
	assert_int_equal(nkv__gpu_reg_plan(&c, &p), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "TCP always stages"));
}

static void test_peermem_sysfs(void **state)
{
	char root[] = "/tmp/nkv-sysmod-XXXXXX", path[128];

	assert_non_null(mkdtemp(root));
	assert_false(nkv__gpu_peermem_loaded(root));
	snprintf(path, sizeof(path), "%s/nv_peer_mem", root);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_true(nkv__gpu_peermem_loaded(root));
	rmdir(path);
	snprintf(path, sizeof(path), "%s/nvidia_peermem", root);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_true(nkv__gpu_peermem_loaded(root));
	rmdir(path);
	rmdir(root);
}

static void test_chunk_hand(void **state)
{
	/* 3 ranges: 6, 3, 5 bytes; chunks of 4 bytes, at most 2 ranges each. */
	const struct nkv_range r[] = { { 100, 1000, 6 }, { 200, 2000, 3 }, { 300, 3000, 5 } };
	struct nkv_chunk_plan p;
	/* Expected pieces (src, dst, len, soff, chunk):
	 * c0: 100/1000/4/0     c1: 104/1004/2/0, 200/2000/2/2
	 * c2: 202/2002/1/0, 300/3000/3/1    c3: 303/3003/2/0 */
	const struct nkv_srange want[] = {
		{ 100, 1000, 4, 0, 0 }, { 104, 1004, 2, 0, 1 }, { 200, 2000, 2, 2, 1 },
		{ 202, 2002, 1, 0, 2 }, { 300, 3000, 3, 1, 2 }, { 303, 3003, 2, 0, 3 },
	};

	assert_int_equal(nkv__chunk_plan(r, 3, 4, 2, &p), 0);
	assert_int_equal(p.nr, 6);
	assert_int_equal(p.nc, 4);
	assert_int_equal(p.bytes, 14);
	for (size_t i = 0; i < 6; i++) {
		assert_int_equal(p.r[i].src_off, want[i].src_off);
		assert_int_equal(p.r[i].dst_off, want[i].dst_off);
		assert_int_equal(p.r[i].len, want[i].len);
		assert_int_equal(p.r[i].soff, want[i].soff);
		assert_int_equal(p.r[i].chunk, want[i].chunk);
	}
	assert_int_equal(p.c[1].first, 1);
	assert_int_equal(p.c[1].n, 2);
	assert_int_equal(p.c[1].bytes, 4);
	assert_int_equal(p.c[3].bytes, 2);
	nkv__chunk_plan_free(&p);

	/* The range limit alone cuts: 5 ranges of 1 byte, 2 per chunk. */
	const struct nkv_range small[] = { { 0, 0, 1 }, { 2, 2, 1 }, { 4, 4, 1 }, { 6, 6, 1 }, { 8, 8, 1 } };
	assert_int_equal(nkv__chunk_plan(small, 5, 1 << 20, 2, &p), 0);
	assert_int_equal(p.nc, 3);
	assert_int_equal(p.c[2].n, 1);
	assert_int_equal(p.r[4].soff, 0);
	assert_int_equal(p.r[3].soff, 1);
	nkv__chunk_plan_free(&p);

	/* Bad input. */
	assert_int_equal(nkv__chunk_plan(r, 0, 4, 2, &p), -EINVAL);
	assert_int_equal(nkv__chunk_plan(r, 3, 0, 2, &p), -EINVAL);
	const struct nkv_range empty[] = { { 0, 0, 4 }, { 8, 8, 0 } };
	assert_int_equal(nkv__chunk_plan(empty, 2, 4, 2, &p), -EINVAL);
	const struct nkv_range huge[] = { { 0, 0, UINT64_MAX }, { 0, 0, 2 } };
	assert_int_equal(nkv__chunk_plan(huge, 2, 1ull << 40, 2, &p), -EOVERFLOW);
}

/* Random range lists: the plan covers every byte once, in order, within
 * limits, packed from offset 0 in each chunk. */
static void test_chunk_random(void **state)
{
	uint64_t x = 12345;

	for (int round = 0; round < 200; round++) {
		size_t n = 1 + nkv_xorshift64(&x) % 300;
		uint64_t chunk = 1 + nkv_xorshift64(&x) % 100000, maxr = 1 + nkv_xorshift64(&x) % 50, total = 0;
		struct nkv_range *r = malloc(n * sizeof(*r));
		struct nkv_chunk_plan p;
		size_t k = 0;

		assert_non_null(r);
		for (size_t i = 0; i < n; i++) {
			r[i] = (struct nkv_range){ nkv_xorshift64(&x) % (1u << 30), nkv_xorshift64(&x) % (1u << 30),
						   1 + nkv_xorshift64(&x) % 200000 };
			total += r[i].len;
		}
		assert_int_equal(nkv__chunk_plan(r, n, chunk, (uint32_t)maxr, &p), 0);
		assert_int_equal(p.bytes, total);
		/* Pieces in order reassemble each range exactly. */
		for (size_t i = 0; i < n; i++) {
			uint64_t done = 0;
			while (done < r[i].len) {
				assert_true(k < p.nr);
				assert_int_equal(p.r[k].src_off, r[i].src_off + done);
				assert_int_equal(p.r[k].dst_off, r[i].dst_off + done);
				done += p.r[k].len;
				k++;
			}
			assert_int_equal(done, r[i].len);
		}
		assert_int_equal(k, p.nr);
		/* Chunks: consecutive, within limits, packed. */
		size_t next = 0;
		for (size_t c = 0; c < p.nc; c++) {
			uint64_t fill = 0;
			assert_int_equal(p.c[c].first, next);
			assert_true(p.c[c].n >= 1 && p.c[c].n <= maxr);
			for (size_t i = p.c[c].first; i < p.c[c].first + p.c[c].n; i++) {
				assert_int_equal(p.r[i].chunk, c);
				assert_int_equal(p.r[i].soff, fill);
				fill += p.r[i].len;
			}
			assert_int_equal(fill, p.c[c].bytes);
			assert_true(fill <= chunk);
			next += p.c[c].n;
		}
		assert_int_equal(next, p.nr);
		nkv__chunk_plan_free(&p);
		free(r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reg_order),   cmocka_unit_test(test_reg_force),
		cmocka_unit_test(test_peermem_sysfs), cmocka_unit_test(test_chunk_hand),
		cmocka_unit_test(test_chunk_random),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
