/*
 * Paged-mode helpers for `netkv bench transfer`: where a request's blocks
 * sit in the pools (--pattern) and what they hold, so that each end can
 * check every block after the run on its own. The content of a block is a
 * function of its index in the request (not of its id or layout), so the
 * receiver knows what each destination block must hold without being told
 * by the sender - across two hosts, with either side in GPU memory.
 */
#ifndef NKV_BENCH_PAGES_H
#define NKV_BENCH_PAGES_H

#include "netkv_transfer.h"

enum nkv__bench_pattern {
	NKV_BP_CONTIG,    /* blocks 0..n-1 on both sides: coalesces the most */
	NKV_BP_RANDOM,    /* a shuffle of 0..n-1 on each side */
	NKV_BP_SCATTERED, /* a shuffle of the even blocks of a 2n pool on each side: no two neighbours */
};

int nkv__bench_pattern_parse(const char *s, enum nkv__bench_pattern *out);
const char *nkv__bench_pattern_name(enum nkv__bench_pattern p);
/* Pool size, in blocks, that a request of n blocks needs. */
uint32_t nkv__bench_pool_blocks(enum nkv__bench_pattern p, uint32_t n);
/* The request's block ids on the sending (dst false) or receiving side; malloc'd. */
uint32_t *nkv__bench_block_ids(enum nkv__bench_pattern p, uint32_t n, bool dst);

/* Write request block i's content into block ids[i] of a pool, for every
 * i < n. kind NKV_MEM_CUDA: the pool is on GPU gpu, written through a host
 * copy of the whole pool. */
int nkv__bench_fill_blocks(const struct nkv_layout *l, void *pool, enum nkv_mem_kind kind, int gpu,
			   const uint32_t *ids, uint32_t n);
/* Check every block ids[i] holds request block i's content: 0, or
 * -EBADMSG naming the first block that differs (nkv_last_error). */
int nkv__bench_check_blocks(const struct nkv_layout *l, const void *pool, enum nkv_mem_kind kind, int gpu,
			    const uint32_t *ids, uint32_t n);

#endif
