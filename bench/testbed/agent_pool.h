/*
 * The testbed agent's KV pool: a paged cache as an inference engine keeps
 * one, with the prefix cache's bookkeeping on top.
 *
 * The scheduler and the traces speak Mooncake hash blocks (512 tokens); an
 * engine like vLLM pages its cache in much smaller pieces (16 tokens). So a
 * pool *slot* holds one hash block (hash id, pins, LRU stamp) and owns
 * 512 / page_tokens *pages* of the engine layout (layer- or block-major),
 * taken from a free list. A slot that is reused gives its pages back first,
 * in reverse order as vLLM's block pool does, and takes the free list's
 * head: after some churn a request's pages are scattered over the pool and
 * a push plan is many small ranges, not one coalesced run per layer.
 *
 * Block contents are a deterministic pattern of the hash id (the bytes of
 * the 512-token block's (layer, K/V) chunks, cut into its pages), so the
 * same prefix gives the same bytes on every agent and the decode checks
 * every byte. GPU pools (--mem cuda) keep a host mirror: fills are written
 * there and copied to the device, checks copy the block's pages back first
 * (blocking copies, one per run of adjacent pages).
 */
#ifndef NKV_AGENT_POOL_H
#define NKV_AGENT_POOL_H

#include <stdbool.h>
#include <stdint.h>

#include "netkv_transfer.h"

#define AGENT_HASH_TOKENS 512 /* a Mooncake prefix block: the scheduler's unit */

struct agent_pool {
	struct nkv_layout layout; /* the engine's view: pages of page_tokens, num_blocks = all pages */
	uint8_t *mem;             /* host pool, or the host mirror of a GPU pool */
	void *dev;                /* GPU pool (device memory), NULL for host pools */
	int gpu;
	uint32_t region, n, ppb;  /* slots, pages per slot */
	uint64_t *hash;
	bool *valid;
	uint32_t *pin;
	uint64_t *stamp, clock;
	uint32_t *pages;          /* slot b's pages: pages[b * ppb ..] */
	bool *has_pages;
	uint32_t *freeq, fq_head, fq_len; /* FIFO of free pages (ring of n * ppb) */
	/* prefix cache deltas since the last heartbeat: added then evicted */
	uint64_t *added, *evicted;
	uint32_t nadded, nevicted, capdelta;
	uint8_t *scratch;         /* one 512-token chunk of pattern */
	uint64_t released;        /* slots unpinned so far: waiters retry when it moves */
};

/* Slots of 512 tokens, pages of page_tokens (a divisor of 512) in layout
 * kind; the engine layout is filled in, memory is not allocated here. */
int agent_pool_init(struct agent_pool *p, const struct nkv_model *m, uint32_t slots, uint32_t page_tokens,
		    enum nkv_layout_kind kind);
void agent_pool_free(struct agent_pool *p);

int agent_pool_find(struct agent_pool *p, uint64_t h);
/* Reserve slots for ids[0..n): held ones (by hash) are pinned and reused;
 * *lead = leading slots already held. All or nothing: false when the pool
 * cannot give enough unpinned slots now. */
bool agent_pool_reserve(struct agent_pool *p, const uint64_t *ids, uint32_t n, uint32_t *slots, uint32_t *lead,
			bool *fresh);
void agent_pool_unpin(struct agent_pool *p, const uint32_t *slots, uint32_t n);
/* Forget slots whose contents never arrived (a failed request). */
void agent_pool_drop(struct agent_pool *p, const uint32_t *slots, const bool *fresh, uint32_t n);
uint32_t agent_pool_used(const struct agent_pool *p);

/* The pages of slots[0..n), in order, into out (n * ppb entries). */
void agent_pool_pages(const struct agent_pool *p, const uint32_t *slots, uint32_t n, uint32_t *out);

/* Write the pattern of hash h into slot b (and its device pages); check it. */
int agent_pool_fill(struct agent_pool *p, uint32_t b, uint64_t h);
/* 1 when slot b holds the pattern of h, 0 when not, <0 when a device copy failed. */
int agent_pool_check(struct agent_pool *p, uint32_t b, uint64_t h);

#endif
