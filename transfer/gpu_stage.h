/*
 * GPU regions and the staging pipeline, for the engine and its backends
 * (internal). CUDA-free: everything goes through nkv__gpu()'s ops.
 *
 * Sender (a push from a GPU region over a backend that cannot read GPU
 * memory): the request's ranges are cut into chunks (nkv__chunk_plan).
 * Chunk by chunk, on one CUDA stream, a kernel gathers the chunk's ranges
 * into a contiguous device buffer and one copy moves it to a pinned host
 * slot; an event marks it ready. The backend sends a chunk as soon as
 * nkv__stage_ptr() gives its slot, and hands the slot back with
 * nkv__stage_sent() once every byte has left, which lets the next chunk be
 * copied in. While chunk i is on the wire, chunks i+1.. are being copied:
 * nothing blocks the transfer thread; nkv_poll() polls the events.
 *
 * Receiver (bytes for a GPU region): the backend receives each payload into
 * a pinned host slot (nkv__gpu_in_acquire), then nkv__gpu_in_commit() copies
 * it to the device (one copy, or copy + scatter kernel for a DATAV list) on
 * a second stream; nkv__gpu_in_reap() reports copies that finished, and only
 * then do their bytes count towards the request's completion.
 */
#ifndef NKV_TRANSFER_GPU_STAGE_H
#define NKV_TRANSFER_GPU_STAGE_H

#include "backend.h"
#include "gpu.h"

#define NKV_GPU_CHUNK (4u << 20)      /* staged bytes per chunk (sender) */
#define NKV_GPU_CHUNK_RANGES 4096u    /* ranges per chunk (descriptor slots) */
#define NKV_GPU_OUT_SLOTS 4u          /* chunks in flight per engine (sender) */
#define NKV_GPU_IN_BYTES (1u << 20)   /* largest payload a receive slot takes */
#define NKV_GPU_IN_RANGES 1024u       /* >= NKV_WIRE_MAX_VEC */
#define NKV_GPU_IN_SLOTS 16u          /* receive slots per engine */

struct nkv_gpu_ctx;
struct nkv_stage;
struct nkv_gpu_in;

/* The engine's GPU context, opened on first use (device e->opts.gpu). */
int nkv__gpu_ctx(struct nkv_engine *e, struct nkv_gpu_ctx **out);
void nkv__gpu_ctx_free(struct nkv_engine *e);
/* Wait for the staging streams (engine teardown, before regions go). */
void nkv__gpu_drain(struct nkv_engine *e);
/* "cuda0 NVIDIA H100 ... (0000:17:00.0)" once opened, else "". */
const char *nkv__gpu_desc(const struct nkv_engine *e);
int nkv__gpu_dev(const struct nkv_engine *e);

int nkv__gpu_region_alloc(struct nkv_engine *e, uint64_t len, void **p);
void nkv__gpu_region_free(struct nkv_engine *e, void *p);
/* nkv_block_hash() of a block in any region (GPU: copied to the host first;
 * a blocking copy, used by --verify only). */
int nkv__region_block_hash(struct nkv_engine *e, const struct nkv_region *r, const struct nkv_layout *l,
			   uint32_t block, uint64_t *hash);

/* Poll the copies in flight and start the next ones. Returns 1 while GPU
 * copies are running (callers then poll the network without sleeping), 0
 * otherwise, or a negative errno. */
int nkv__gpu_progress(struct nkv_engine *e);
/* Bumped whenever a staged chunk becomes ready: backends waiting on one
 * look again when it changes. */
uint64_t nkv__gpu_ready_gen(const struct nkv_engine *e);

/* ---- sender ---- */
/* A request's staging pipeline, in chunks of at most chunk_bytes /
 * chunk_ranges (at most NKV_GPU_CHUNK / _RANGES). Gated, it copies out no
 * chunk until nkv__stage_allow() lets it: a backend that can send a chunk
 * only at some point (its turn on a queue pair, a slot at the peer, its
 * connection's share of the slots) lets chunks go then, so they do not sit
 * in the shared slots while other requests wait for them. */
int nkv__stage_new_cut(struct nkv_engine *e, void *src, const struct nkv_plan *plan, uint64_t chunk_bytes,
		       uint32_t chunk_ranges, bool gated, struct nkv_stage **out);
/* Let chunks [0, nchunks) be copied out (never lowers what was allowed). */
void nkv__stage_allow(struct nkv_stage *st, uint32_t nchunks);
const struct nkv_chunk_plan *nkv__stage_plan(const struct nkv_stage *st);
/* 1 and *base = the chunk's pinned host bytes once copied, 0 not yet, <0
 * failed (the reason names the CUDA call). */
int nkv__stage_ptr(struct nkv_stage *st, uint32_t chunk, const uint8_t **base);
/* bytes of the chunk have left host memory (sent); frees the slot when all
 * have, and returns true then (the chunk is done). */
bool nkv__stage_sent(struct nkv_stage *st, uint32_t chunk, uint64_t bytes);
void nkv__stage_free(struct nkv_stage *st);

/* ---- receiver ---- */
/* A free receive slot, or -EAGAIN when all are busy (try after a reap). */
int nkv__gpu_in_acquire(struct nkv_engine *e, void *owner, struct nkv_gpu_in **slot);
uint8_t *nkv__gpu_in_buf(struct nkv_gpu_in *slot);
/* The slot holds a payload: copy it into the device region at dev. Ranges:
 * src_off into the slot, dst_off into the region (checked by the caller). */
int nkv__gpu_in_commit(struct nkv_engine *e, struct nkv_gpu_in *slot, void *dev, const struct nkv_range *ranges,
		       uint32_t n, uint64_t req_id);
/* The slot stays its owner's after each reap (a bounce slot a peer writes
 * into): only nkv__gpu_in_drop_owner frees it. */
void nkv__gpu_in_keep(struct nkv_gpu_in *slot);
/* Give a slot back unused (a failed receive). */
void nkv__gpu_in_release(struct nkv_engine *e, struct nkv_gpu_in *slot);
/* Report finished copies: fn(owner, req_id, bytes, status) for each, slot freed first. */
int nkv__gpu_in_reap(struct nkv_engine *e, void (*fn)(void *owner, uint64_t req_id, uint64_t bytes, int status));
/* The owner goes away: wait for its copies, free its slots, no callbacks. */
void nkv__gpu_in_drop_owner(struct nkv_engine *e, void *owner);

#endif
