/*
 * What one push of a plan costs in descriptors, as the backend would post
 * it: the plan's coalesced ranges, and for verbs the scatter-gather entries
 * and work requests (header SENDs + RDMA WRITEs, the last one per part
 * WRITE_WITH_IMM) over the engine's QPs. Counted by the backend's own code
 * that builds a push's work requests, so `netkv bench transfer --describe`
 * prints measured figures (issue 15: descriptors per request beside the
 * ~100k vLLM's NIXL connector users report). Host memory on both sides;
 * staged GPU memory is cut further into chunks and is not described.
 * Internal (bench and tests), not installed.
 */
#ifndef NKV_TRANSFER_PUSH_SHAPE_H
#define NKV_TRANSFER_PUSH_SHAPE_H

#include "netkv_transfer.h"

struct nkv__push_shape {
	uint64_t ranges;  /* the plan's, after coalescing */
	uint64_t sges;    /* verbs: scatter-gather entries of the WRITEs; 0 where not applicable */
	uint64_t wrs;     /* verbs: work requests posted (headers included); 0 where not applicable */
	uint32_t parts;   /* verbs: QPs the push is striped over; TCP: 0 */
	uint32_t max_sge; /* verbs: the device's limit the WRITEs were cut to */
};

/* 0 or a negative errno; a backend without work requests (TCP) fills ranges only. */
int nkv__push_shape(struct nkv_engine *e, const struct nkv_plan *p, struct nkv__push_shape *out);

#endif
