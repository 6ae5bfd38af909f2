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

/* ---- backends: one path for host and staged memory (gpu_unit.c) ----
 * A backend builds its sends and receives the same way whether the memory
 * is host memory it reads and writes itself or GPU memory staged through
 * the pinned slots above; these say, unit by unit, where the bytes are. */

#define NKV_NO_UNIT UINT32_MAX

/* A push's source as a backend sends it: the plan's ranges, cut into units
 * (staged: the pipeline's chunks; host: only when asked), read from the
 * region itself or from the chunk a unit was copied out into. */
struct nkv_send_src {
	struct nkv_stage *stage;   /* staged: the pipeline */
	struct nkv_chunk_plan cut; /* host source cut into units (cut.r NULL: not cut) */
	const struct nkv_range *r; /* host source, not cut: the plan's ranges (borrowed: read while the push is built) */
	size_t nr;
	uint64_t base;             /* host source: the region's address */
};

struct nkv_send_range {
	uint64_t src;     /* host: address; staged: offset in its chunk (add nkv__src_ready()'s base) */
	uint64_t uoff;    /* offset in its unit's packed payload (units only) */
	uint64_t dst_off, len;
	uint32_t unit;    /* NKV_NO_UNIT: a host source not cut */
};

/* staged: gather src from GPU memory (gated, see nkv__stage_new_cut) in units
 * of unit_bytes / unit_ranges; host: the plan's ranges, cut the same way
 * only if cut_host. */
int nkv__src_open(struct nkv_engine *e, const struct nkv_region *src, const struct nkv_plan *plan, bool staged,
		  uint64_t unit_bytes, uint32_t unit_ranges, bool cut_host, struct nkv_send_src *out);
void nkv__src_close(struct nkv_send_src *s);
bool nkv__src_staged(const struct nkv_send_src *s);
size_t nkv__src_count(const struct nkv_send_src *s);
struct nkv_send_range nkv__src_range(const struct nkv_send_src *s, size_t i);
/* The units (NULL for a host source not cut), and how many (0 then). */
const struct nkv_chunk_plan *nkv__src_units(const struct nkv_send_src *s);
uint32_t nkv__src_nunits(const struct nkv_send_src *s);
/* Let units [0, n) be copied out (staged; host: nothing to do). */
void nkv__src_allow(struct nkv_send_src *s, uint32_t n);
/* Where unit's bytes are: 1 and *base to add to a range's src (host: 0,
 * always ready), 0 not copied out yet, <0 failed. */
int nkv__src_ready(struct nkv_send_src *s, uint32_t unit, uint64_t *base);
/* bytes of unit have been sent: true once the whole unit has (staged: its
 * slot is free again; host: never, nothing to give back). */
bool nkv__src_sent(struct nkv_send_src *s, uint32_t unit, uint64_t bytes);

/* Where a received payload goes: straight into a host region, or (staged)
 * packed into a pinned slot that nkv__rx_deliver() copies and scatters to
 * the GPU. One per payload in flight. */
struct nkv_rx {
	void *dev;                 /* staged: the GPU region's device pointer */
	uint8_t *host;             /* host: where the payload goes */
	bool staged, ready;        /* ready: nkv__rx_slot() succeeded */
	struct nkv_gpu_in *slot;
};

/* A payload for region r begins, at offset off (a scattered one: 0). */
void nkv__rx_begin(struct nkv_rx *rx, const struct nkv_region *r, uint64_t off);
/* A payload of a lent bounce slot (already written by the peer) for r. */
void nkv__rx_lent(struct nkv_rx *rx, const struct nkv_region *r, struct nkv_gpu_in *slot);
/* Somewhere to receive into: 1 ready (host always), 0 no slot free yet (a
 * reap frees one), <0 failed. */
int nkv__rx_slot(struct nkv_engine *e, void *owner, struct nkv_rx *rx);
/* Where to receive into once ready: the region at the offset (host), or
 * the slot (staged). */
uint8_t *nkv__rx_buf(const struct nkv_rx *rx);
/* True when a scattered payload is received packed into the slot (staged),
 * false when it goes straight to its ranges in the region (host). */
bool nkv__rx_packed(const struct nkv_rx *rx);
/* The payload is in: ranges from src_off in the packed payload to dst_off
 * in the region (host: already there). 1: its bytes are in place now; 0:
 * being copied, nkv__gpu_in_reap() reports them under cookie; <0 failed
 * (the slot is still held: nkv__rx_drop()). Resets rx. */
int nkv__rx_deliver(struct nkv_engine *e, struct nkv_rx *rx, const struct nkv_range *ranges, uint32_t n,
		    uint64_t cookie);
/* Give the slot back unused (a failed receive). */
void nkv__rx_drop(struct nkv_engine *e, struct nkv_rx *rx);

#endif
