/*
 * The TCP backend's wire format. Every message is a 48-byte header followed
 * by len payload bytes. Little-endian hosts only (x86-64, arm64): headers
 * travel as the structs below.
 *
 * The handshake, on every stream of a connection (version 2): a mutual
 * challenge-response over the engines' shared data-plane secret (opts.secret;
 * none is the empty secret, which authenticates nothing). The secret never
 * crosses the wire; each side proves it with HMAC-SHA256 (nettle) over both
 * sides' fresh nonces, the connection token and the stream index and count:
 *
 *   HELLO     active -> passive, first message on each stream.
 *             offset = connection token (random; groups a connection's
 *             streams), total = stream index << 32 | stream count,
 *             payload = Na, 32 random bytes (len 32).
 *   CHALLENGE passive -> active: payload = Np (32 random bytes) || MACp
 *             (len 64), MACp = HMAC(secret, "netkv-tcp-v2 listener" || T).
 *   AUTH      active -> passive: payload = MACa (len 32), checked only after
 *             the active side has checked MACp;
 *             MACa = HMAC(secret, "netkv-tcp-v2 connector" || T).
 *             T = Na || Np || token (8 bytes LE) || index (4 LE) || count
 *             (4 LE); the labels are their ASCII bytes without a NUL.
 *   ADVERT    passive -> active, only after a good AUTH: payload is an array
 *             of struct nkv_remote_region (24 bytes each); over TCP addr and
 *             rkey are 0 (the peer names regions by id and length only).
 *   A stream joins its connection (and the passive engine reports anything)
 *   only once its AUTH checked out: a peer without the secret changes nothing.
 *
 *   ERROR   either way, at any time: the sender refuses the connection and
 *           closes it. offset = the status (a negative errno, as int64),
 *           payload = the reason, len <= NKV_WIRE_MAX_ERROR bytes of text
 *           (no NUL). The receiver reports it ("refused by the peer: ...").
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
 *           offset carries the status (0 or a negative errno) as int64;
 *           -ECANCELED: the receiver revoked the request's grant and dropped
 *           the bytes that came after (netkv_transfer.h, grants).
 *   Into a region that requires grants, a DATA, DATAV or SUMS whose request
 *   has no grant there, or a range outside it, is answered with an ERROR
 *   (-EACCES, the request and the reason) and the close.
 */
#ifndef NKV_TRANSFER_WIRE_H
#define NKV_TRANSFER_WIRE_H

#include <stdint.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "netkv's TCP wire format assumes a little-endian host"
#endif

#define NKV_WIRE_MAGIC   0x544b564eu /* "NVKT" in memory order */
#define NKV_WIRE_VERSION 2 /* 2: authenticated handshake, ERROR */

enum nkv_wire_type {
	NKV_W_HELLO = 1,
	NKV_W_ADVERT = 2,
	NKV_W_DATA = 3,
	NKV_W_SUMS = 4,
	NKV_W_ACK = 5,
	NKV_W_DATAV = 6,
	NKV_W_CHALLENGE = 7,
	NKV_W_AUTH = 8,
	NKV_W_ERROR = 9,
};

#define NKV_WIRE_NONCE     32  /* HELLO's and CHALLENGE's nonces */
#define NKV_WIRE_MAC       32  /* HMAC-SHA256 */
#define NKV_WIRE_MAX_ERROR 256 /* an ERROR's reason text */
#define NKV_WIRE_LABEL_LISTENER  "netkv-tcp-v2 listener"
#define NKV_WIRE_LABEL_CONNECTOR "netkv-tcp-v2 connector"

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
