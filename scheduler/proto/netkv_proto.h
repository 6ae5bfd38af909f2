/*
 * netkv control protocol: the messages the scheduler daemon, the agents and
 * the replay client exchange over TCP.
 *
 * Frame (all integers little-endian):
 *   u32 magic 0x43564B4E ("NKVC")  u16 version (1)  u16 type  u32 payload length
 *   payload: the message's fields in a fixed order (below); strings are u16
 *   length + bytes (printable ASCII, no NUL); arrays are u32 count + items.
 *
 * Every field is checked on decode: the magic, version and type; the payload
 * length against NKV_PROTO_MAX_PAYLOAD and against what the fields use
 * (short or trailing bytes are errors); string lengths and characters;
 * counts against their limits; enum values; times finite and >= 0. A
 * decode error names the message type and the field. A peer that sends
 * anything that fails here is sent an ERROR with that reason, then disconnected.
 *
 * Messages (-> direction, fields):
 *   REGISTER      any -> sched   role, token, name, addr (data address), kv_blocks,
 *                                block_tokens, kv_bpt (KV bytes per token), text (agents:
 *                                the transfer path of their KV pool, for `scheduler status`)
 *   REGISTER_OK   sched -> any   agent_id
 *   ERROR         either         code (errno), text
 *   HEARTBEAT     agent -> sched running, queued, running_tokens, queued_tokens,
 *                                kv_used, kv_total, ids = prefix blocks added
 *                                [0, nadd) then evicted [nadd, nids)
 *   SUBMIT        client -> sched req, input_len, output_len, ids (hash ids)
 *   DECODE_TASK   sched -> decode req, input_len, output_len, ids
 *   PREFILL_TASK  sched -> prefill req, input_len, output_len, peer (decode agent id),
 *                                tier (of the path), addr (decode data address), ids;
 *                                sent only once the decode's BLOCKS arrived, and followed by it
 *   BLOCKS        decode -> sched -> prefill   req, first (leading blocks the decode
 *                                already holds), blocks (its pool blocks for ids[first..]):
 *                                the decode's grant of room
 *   PREFILL_DONE  prefill -> sched req, first (prefix blocks it had cached), t[0] start, t[1] end
 *   XFER_DONE     prefill -> sched (-> decode) req, peer, status, bytes, t[0] seconds, t[1] end, text
 *   TOKENS        decode -> sched req, status, ntokens, blocks_ok, blocks_bad,
 *                                t[0] admit, t[1] first token, t[2] first step seconds,
 *                                t[3] end, t[4] mean TBT, t[5] p99 TBT, text
 *   PROBE         sched -> prefill req (probe id), peer, tier, addr, bytes
 *   PROBE_RESULT  prefill -> sched req, peer, status, bytes, t[0] seconds
 *   RECORD        sched -> client  req, status, peer (decode agent), agent_id (prefill
 *                                agent), tier, ntokens, blocks_ok, blocks_bad, bytes,
 *                                t[0..NKV_REC_T) (enum nkv_rec_time), text
 *   STATUS_REQ    admin -> sched  (empty)
 *   STATUS        sched -> admin  text (JSON)
 *   CANCEL        sched -> agent  req, status, text: the request failed elsewhere or timed
 *                                out; drop it and its pins (a prefill aborts a push in flight)
 *
 * A request's order (the reservation protocol): DECODE_TASK; the decode
 * reserves room and sends BLOCKS; then PREFILL_TASK + BLOCKS to the prefill,
 * which computes, pushes and reports XFER_DONE (forwarded to the decode);
 * the decode reports TOKENS; the client gets a RECORD. No agent holds pool
 * room while waiting for room at the other, so full pools cannot deadlock.
 */
#ifndef NETKV_PROTO_H
#define NETKV_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netkv_error.h" /* nkv_last_error() */

/* The API libnetkv exports; the rest of the library is hidden. */
#pragma GCC visibility push(default)

#define NKV_PROTO_MAGIC 0x43564B4Eu
#define NKV_PROTO_VERSION 1
#define NKV_PROTO_HDR 12
#define NKV_PROTO_MAX_PAYLOAD (1u << 20)
#define NKV_PROTO_MAX_IDS 65536u     /* hash ids per message (32M tokens at 512) */
#define NKV_PROTO_MAX_TOKEN 64
#define NKV_PROTO_MAX_NAME 32
#define NKV_PROTO_MAX_ADDR 64
#define NKV_PROTO_MAX_TEXT 65535
#define NKV_PROTO_MAX_INPUT (16u << 20)
#define NKV_PROTO_MAX_OUTPUT (1u << 20)
#define NKV_PROTO_NT 12
/* Never set in a request id (the scheduler's are 63 random bits): a prefill
 * sets it in the transfer request id of a probe push, so the decode tells
 * probe bytes (its open probe region) from a request's. */
#define NKV_PROTO_PROBE_BIT (1ull << 63)

enum nkv_msg_type {
	NKV_MSG_REGISTER = 1,
	NKV_MSG_REGISTER_OK,
	NKV_MSG_ERROR,
	NKV_MSG_HEARTBEAT,
	NKV_MSG_SUBMIT,
	NKV_MSG_DECODE_TASK,
	NKV_MSG_PREFILL_TASK,
	NKV_MSG_BLOCKS,
	NKV_MSG_PREFILL_DONE,
	NKV_MSG_XFER_DONE,
	NKV_MSG_TOKENS,
	NKV_MSG_PROBE,
	NKV_MSG_PROBE_RESULT,
	NKV_MSG_RECORD,
	NKV_MSG_STATUS_REQ,
	NKV_MSG_STATUS,
	NKV_MSG_CANCEL,
	NKV_MSG__COUNT
};

enum nkv_role { NKV_ROLE_PREFILL = 1, NKV_ROLE_DECODE, NKV_ROLE_CLIENT, NKV_ROLE_ADMIN };

/* RECORD times, seconds on the testbed's monotonic clock (one box) unless noted. */
enum nkv_rec_time {
	NKV_REC_SUBMIT,      /* scheduler got SUBMIT */
	NKV_REC_ASSIGN,      /* decision made */
	NKV_REC_PREFILL_T0,  /* prefill compute started */
	NKV_REC_PREFILL_T1,  /* prefill compute ended */
	NKV_REC_XFER_S,      /* transfer seconds (duration) */
	NKV_REC_XFER_END,    /* last byte placed */
	NKV_REC_ADMIT,       /* decode admitted into its batch */
	NKV_REC_FIRST,       /* first token */
	NKV_REC_STEP_S,      /* first decode step (duration) */
	NKV_REC_END,         /* last token */
	NKV_REC_TBT_MEAN,    /* seconds */
	NKV_REC_TBT_P99,     /* seconds */
	NKV_REC_T
};

struct nkv_msg {
	enum nkv_msg_type type;
	uint8_t role;
	int32_t status;                /* 0 or negative errno */
	uint32_t code, agent_id, peer, tier;
	uint32_t input_len, output_len, first;
	uint32_t kv_blocks, block_tokens, kv_used, kv_total;
	uint32_t running, queued, ntokens, blocks_ok, blocks_bad;
	uint64_t req, bytes, running_tokens, queued_tokens, kv_bpt;
	double t[NKV_PROTO_NT];
	char token[NKV_PROTO_MAX_TOKEN + 1];
	char name[NKV_PROTO_MAX_NAME + 1];
	char addr[NKV_PROTO_MAX_ADDR + 1];
	char *text;                    /* owned (malloc) or NULL; NUL-terminated */
	uint64_t *ids;                 /* owned (malloc) or NULL */
	uint32_t nids, nadd;
	uint32_t *blocks;              /* owned (malloc) or NULL */
	uint32_t nblocks;
};

const char *nkv_msg_type_name(int type); /* "SUBMIT", "?" */
const char *nkv_role_name(int role);      /* "prefill", "decode", "client", "admin", "?" */
int nkv_role_parse(const char *s, enum nkv_role *out);

/* Zero a message (type set); nkv_msg_clear frees what it owns and zeroes it. */
void nkv_msg_init(struct nkv_msg *m, enum nkv_msg_type type);
void nkv_msg_clear(struct nkv_msg *m);
/* Owned copies into m (replacing what was there). */
int nkv_msg_set_text(struct nkv_msg *m, const char *text);
int nkv_msg_set_ids(struct nkv_msg *m, const uint64_t *ids, uint32_t n);
int nkv_msg_set_blocks(struct nkv_msg *m, const uint32_t *blocks, uint32_t n);

/* A growable byte buffer for outgoing frames. */
struct nkv_buf {
	uint8_t *p;
	size_t len, cap, off;          /* off: bytes already sent (connection helpers) */
};
void nkv_buf_free(struct nkv_buf *b);
void nkv_buf_consume(struct nkv_buf *b, size_t n);

/* Append one frame for m. Checks m as decode would (a bad message is never sent). */
int nkv_msg_encode(const struct nkv_msg *m, struct nkv_buf *out);

/*
 * Decode the frame at the start of buf[0..len). Returns 1 with *m filled
 * (caller clears it) and *used set to the frame length; 0 when more bytes
 * are needed (*used = total frame length when the header is known, else
 * 0); negative errno with the reason in nkv_last_error() for a bad frame.
 */
int nkv_msg_decode(const uint8_t *buf, size_t len, struct nkv_msg *m, size_t *used);

/* ---- connections: a socket with an input buffer and an output queue ---- */

struct nkv_pconn {
	int fd;
	uint8_t *in;
	size_t inoff, inlen, incap;    /* unread input: in[inoff .. inoff + inlen) */
	size_t inmax;                  /* input buffer bound; 0 = one largest frame */
	struct nkv_buf out;
};

/* Listening socket on host:port ("0.0.0.0:0" picks a port); *port_out may be NULL. */
int nkv_proto_listen(const char *addr, uint16_t *port_out);
/* Connect to host:port (retries for up to timeout_s while refused), TCP_NODELAY; returns a blocking
 * socket. An attempt that neither completes nor is refused ends at the deadline (at least 1 s). */
int nkv_proto_connect(const char *addr, double timeout_s);
/* Wrap a connected socket (made non-blocking, TCP_NODELAY, keepalive for the dead-peer deadline). */
void nkv_pconn_init(struct nkv_pconn *c, int fd);
/* Dead-peer deadline of control connections: a peer that acknowledges
 * nothing for this long (keepalive probes or data) is a connection error
 * (ETIMEDOUT). NKV_PROTO_DEAD_S unless set; the scheduler sets its
 * --agent-timeout. Applies to connections wrapped after the call. */
#define NKV_PROTO_DEAD_S 10.0
void nkv_proto_set_dead_s(double dead_s);
/* SO_KEEPALIVE with idle dead_s/2, interval dead_s/6, 3 probes, and
 * TCP_USER_TIMEOUT dead_s (whole seconds, at least 1 for the keepalive ones). */
int nkv_proto_keepalive(int fd, double dead_s);
void nkv_pconn_close(struct nkv_pconn *c);
/* Read what is available, up to inmax buffered. 0 ok (maybe nothing), -ECONNRESET on EOF,
 * other negative errno. The caller decodes after an error too: the peer's last frames
 * (an ERROR before its close) are in the buffer. */
int nkv_pconn_read(struct nkv_pconn *c);
/* Next complete message from the input: 1 (m filled), 0 none yet, negative: bad frame. */
int nkv_pconn_next(struct nkv_pconn *c, struct nkv_msg *m);
/* Queue m and try to send; the rest goes out on nkv_pconn_flush. */
int nkv_pconn_send(struct nkv_pconn *c, const struct nkv_msg *m);
/* Send what is queued; 0 when done or would block, negative errno on error. */
int nkv_pconn_flush(struct nkv_pconn *c);
static inline bool nkv_pconn_pending(const struct nkv_pconn *c) { return c->out.len > 0; }
/* Blocking helpers for simple clients: send everything / wait for one message (timeout_s < 0 = forever).
 * recv_wait returns a frame that arrived just before the peer closed (its ERROR) before the close;
 * send_wait, failing because the peer closed, returns its ERROR's reason ("refused: ...") if one came. */
int nkv_pconn_send_wait(struct nkv_pconn *c, const struct nkv_msg *m);
int nkv_pconn_recv_wait(struct nkv_pconn *c, struct nkv_msg *m, double timeout_s);

#pragma GCC visibility pop

#endif
