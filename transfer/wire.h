/*
 * The TCP backend's wire format. Every message is a 48-byte header followed
 * by len payload bytes. Little-endian hosts only (x86-64, arm64): headers
 * travel as the structs below.
 *
 *   HELLO   active -> passive, first message on each stream.
 *           offset = connection token (random; groups a connection's
 *           streams), total = stream index << 32 | stream count.
 *   ADVERT  passive -> active, reply to HELLO: payload is an array of
 *           struct nkv_remote_region (24 bytes each).
 *   DATA    active -> passive: payload is written at region[offset, +len).
 *           req_id names the request, total is its byte count over all
 *           ranges and streams; flags: LAST on the request's final range,
 *           VERIFY if a SUMS message belongs to the request.
 *   DATAV   active -> passive: several small ranges of one request in one
 *           message (blocks that do not coalesce): offset = entry count n
 *           (1..NKV_WIRE_MAX_VEC), len = payload bytes; then n struct
 *           nkv_wire_vent {offset, len} (16 bytes each), then the payloads in
 *           entry order. The receiver checks every entry, then receives the
 *           payloads scattered straight into the region (one readv).
 *   SUMS    active -> passive: payload is struct nkv_block_sum[len / 16],
 *           the request's per-block xxhash64s (--verify).
 *   ACK     passive -> active: request req_id is placed (and verified);
 *           offset carries the status (0 or a negative errno) as int64.
 */
#ifndef NKV_TRANSFER_WIRE_H
#define NKV_TRANSFER_WIRE_H

#include <stdint.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "netkv's TCP wire format assumes a little-endian host"
#endif

#define NKV_WIRE_MAGIC   0x544b564eu /* "NVKT" in memory order */
#define NKV_WIRE_VERSION 1

enum nkv_wire_type {
	NKV_W_HELLO = 1,
	NKV_W_ADVERT = 2,
	NKV_W_DATA = 3,
	NKV_W_SUMS = 4,
	NKV_W_ACK = 5,
	NKV_W_DATAV = 6,
};

#define NKV_WIRE_MAX_VEC 64

struct nkv_wire_vent {
	uint64_t offset;
	uint64_t len;
};

#define NKV_WF_LAST   1u
#define NKV_WF_VERIFY 2u

struct nkv_wire_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t type;
	uint32_t region;
	uint32_t flags;
	uint64_t offset;
	uint64_t len;
	uint64_t req_id;
	uint64_t total;
};

_Static_assert(sizeof(struct nkv_wire_hdr) == 48, "wire header is 48 bytes");

#endif
