/*
 * TCP backend internals (liburing). The backend is four files, split like
 * verbs: tcp.c (the engine: ring, progress, ops table), tcp_conn.c (listen,
 * accept, connect, the HELLO/ADVERT handshake, failure and teardown),
 * tcp_send.c (pushes, the send queue, the GPU staging gate) and tcp_recv.c
 * (the receive state machine and its checks of every header).
 *
 * Every stream starts with the authenticated handshake (tcp_conn.c, wire.h):
 * the passive side keeps a stream on its pending list, outside any
 * connection, until the peer has proved the shared secret.
 *
 * A connection is N TCP streams (--streams). The sender splits a request's
 * coalesced ranges into pieces and puts them on one per-connection queue;
 * each stream, whenever it has no send in flight, takes the next pieces off
 * that queue and sends them as one sendmsg (header + payload iovecs), so
 * fast streams take more and one request is striped over all of them.
 *
 * The receiver reads each 48-byte header, checks it against its registered
 * regions (and, for a region that requires grants, against the request's
 * grant: grant.c), and receives the payload straight into the region (no bounce
 * buffer); the recvmsg for a payload also asks for the next header, saving a
 * syscall per range. When a request's byte count (and its checksums, with
 * --verify) is complete it raises NKV_EV_RECV and sends an ACK, which the
 * sender turns into NKV_EV_PUSH_DONE.
 *
 * GPU regions (NKV_MEM_CUDA) are staged through pinned host memory
 * (gpu_stage.h): a push from GPU memory builds its items from the staging
 * chunk plan, and an item waits in the queue until its chunk has been
 * copied to the host (the queue is in chunk order, so the wire keeps the
 * order too); its slot goes back once the chunk's last byte is sent. The
 * chunk slots are the engine's, so each connection may have only a few
 * chunks copied out at a time (see conn_gate() in tcp_send.c).
 * Payloads for a GPU region are received into a pinned slot and copied to
 * the device; they count towards the request only once that copy is done.
 * Host regions take exactly the path they took before.
 *
 * Each stream has at most one send and one receive in flight, which keeps
 * byte order on the socket and makes teardown simple: shut the sockets down,
 * wait for the in-flight operations to come back, then free.
 */
#ifndef NKV_TRANSFER_TCP_H
#define NKV_TRANSFER_TCP_H

#include "backend.h"
#include "gpu_stage.h"
#include "nkv_util.h"
#include "wire.h"

#include <liburing.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define HDR ((uint64_t)sizeof(struct nkv_wire_hdr))
#define RING_ENTRIES 512
#define MAX_BATCH_ITEMS 256         /* items per sendmsg */
#define MAX_BATCH_IOV 1024          /* iovecs per sendmsg (IOV_MAX) */
#define VEC_RANGE_MAX (64u << 10)   /* ranges below this are grouped into DATAV messages */
#define MAX_BATCH_BYTES (4u << 20)  /* bytes per sendmsg */
#define MAX_PIECE (1u << 20)        /* largest piece a range is cut into */
#define MIN_PIECE (64u << 10)
#define WAITALL_MIN (64u << 10)     /* payloads received whole from this size */
#define MAX_RREQS 65536             /* partial requests a peer may have open */
#define MAX_SUMS (1u << 20)         /* checksums per request (16 MiB; a block each) */
#define SUMS_CONN_BYTES (16u << 20) /* checksum lists held per connection at once */
#define SUMS_ENGINE_BYTES (64u << 20) /* ... and per engine, over all its connections */
#define RANGES_CONN (2u << 20)      /* range records (16 bytes) of partial requests per connection */
#define RANGES_ENGINE (4u << 20)    /* ... and per engine */
#define HANDSHAKE_DEFAULT_MS 10000
#define MAX_CONNS_DEFAULT 256
#define SKIP_BUF (64u << 10)        /* scratch that a revoked request's payload is read into */
#define STAGED_PER_CONN (NKV_GPU_OUT_SLOTS / 2) /* chunks copied out, not yet sent, per connection */

enum { OP_ACCEPT = 0, OP_RECV = 1, OP_SEND = 2, OP_IGNORE = 3 };

struct tconn;
struct tcp_engine;

/* One message to send: a header and an optional payload. A DATAV item
 * (vec != NULL) sends its header, nvec entries, then nvec payloads. */
struct titem {
	struct nkv_wire_hdr hdr;
	const void *data;
	uint64_t len;       /* payload bytes (DATAV: entries + payloads) */
	struct nkv_wire_vent *vec;
	const void **vdata;
	unsigned nvec;
	struct sreq *req;   /* data/sums items of a push */
	/* Data items: the payload's source (nkv__src_range(): an address, or
	 * an offset in a staging chunk) in unit `unit`; the pointers are
	 * filled in once the unit is ready (item_ready()). */
	bool resolved;
	uint32_t unit;
	uint64_t src;
	void *owned;        /* control items: payload to free once sent */
	bool heap;          /* control items: the item itself is malloc'd */
	struct titem *next;
};

struct tqueue {
	struct titem *head, *tail;
};

/* Sender: one push in flight. */
struct sreq {
	uint64_t req_id, total;
	size_t nitems, unsent;
	struct titem *items;
	struct nkv_wire_vent *vents; /* DATAV entries of all groups */
	const void **vdata;          /* and their source pointers */
	struct nkv_block_sum *sums;
	struct nkv_send_src src;     /* host ranges, or staged from GPU memory */
	uint32_t allowed;            /* its chunks the connection's gate let go */
	/* The ACK can beat our own send completion (the receiver may have
	 * every byte while sendmsg is still returning): then it waits here. */
	bool acked;
	int ack_status;
	struct sreq *prev, *next;
};

/* Receiver: one request partly arrived. */
struct rreq {
	uint64_t req_id, total;
	uint64_t claimed; /* bytes announced by headers so far */
	uint64_t got;     /* bytes whose payload is in place */
	uint32_t region;
	bool want_sums, have_sums;
	bool discard;     /* its grant was revoked: the rest is read and dropped (R_SKIP) */
	uint64_t skipped; /* payload bytes dropped so */
	struct nkv_block_sum *sums;
	size_t nsums;
	/* Its destination ranges as they arrived (adjacent ones merged): checked
	 * for overlaps before the request is reported (an overlap would report
	 * it complete with bytes missing). */
	struct nkv_wire_vent *rg;
	size_t nrg, caprg;
	bool unsorted;           /* a range began below the previous one's end */
	struct rreq *hnext;
};

enum rstate { R_HDR, R_DATA, R_SUMS, R_VENT, R_VDATA, R_CTL /* a handshake or ERROR payload into s->dst */,
	      R_SKIP /* a revoked request's payload, read into te->skip and dropped */ };

/* A passive stream's handshake (tcp_conn.c). */
enum astate { A_HELLO, A_NONCE, A_AUTH, A_MAC, A_DONE };

struct tstream {
	struct tcp_engine *te;
	struct tconn *tc;       /* NULL until a passive stream's HELLO */
	int fd;
	unsigned idx;
	bool dead;              /* shut down; no new operations */
	bool send_busy, recv_busy;
	char peer[64];
	struct tstream *pnext;  /* tcp_engine.pending (passive, before HELLO) */
	uint64_t born_ns;       /* accepted at; the handshake deadline counts from here */
	/* handshake (passive until A_DONE; ERROR payloads on either side) */
	enum astate as;
	bool refused;           /* an ERROR is queued: close once it is sent */
	uint64_t htoken;
	unsigned hidx, hn;
	uint8_t na[NKV_WIRE_NONCE], np[NKV_WIRE_NONCE], mac[NKV_WIRE_MAC];
	char emsg[NKV_WIRE_MAX_ERROR + 1];

	/* send side */
	struct tqueue ctrl;     /* HELLO replies and ACKs, ahead of data */
	struct titem *batch[MAX_BATCH_ITEMS];
	unsigned nbatch, niov;
	uint64_t first_off;     /* bytes of batch[0] already sent */
	struct iovec siov[MAX_BATCH_IOV];
	struct msghdr smsg;

	/* receive side */
	enum rstate rs;
	struct nkv_wire_hdr h;
	uint64_t hgot;
	uint8_t *dst;           /* R_DATA / R_SUMS: where the payload goes */
	uint64_t dlen, dgot;
	struct rreq *cur;
	uint8_t *vbase;         /* R_VENT / R_VDATA: the region, its size, the payload size */
	uint64_t vrlen, vpay;
	uint64_t doff;          /* R_DATA: destination offset */
	struct nkv_wire_vent vent[NKV_WIRE_MAX_VEC];
	unsigned nvent;
	struct iovec riov[NKV_WIRE_MAX_VEC + 1];
	struct msghdr rmsg;
	struct nkv_rx rx;       /* R_DATA / R_VDATA: into the region, or a pinned slot (GPU) */
};

struct tconn {
	struct nkv_conn *c;
	struct tcp_engine *te;
	uint64_t token;
	uint64_t born_ns;       /* passive: when its first stream was accepted */
	unsigned nstreams, nattached;
	struct tstream **s;
	bool failed, up, clean_close;
	bool peer_refused;      /* the peer sent an ERROR: no ERROR back */
	int fail_status;
	char fail_reason[160];
	/* sender */
	struct tqueue fifo;
	struct sreq *oldest, *newest;
	struct sreq *gate;      /* first push with staged chunks not yet let go */
	unsigned staged_out;    /* chunks let go and not yet wholly sent */
	/* receiver */
	struct rreq *rbuckets[1024];
	size_t nrreqs;
	uint64_t sums_bytes;    /* checksum lists held for partial requests */
	uint64_t nranges;       /* range records held for partial requests */
	char peer[64];
};

struct tlistener {
	int fd;
	bool busy, dead;
	struct sockaddr_storage addr;
	socklen_t alen;
	struct tlistener *next;
};

struct tcp_engine {
	struct nkv_engine *e;
	struct io_uring ring;
	unsigned inflight;
	struct tlistener *listeners;
	struct tstream *pending;
	uint64_t handshake_ns;
	uint64_t sums_bytes;     /* checksum lists held, all connections */
	uint64_t nranges;        /* range records held, all connections */
	unsigned npending, max_conns; /* streams in handshake; cap on them and on passive connections */
	bool reap;
	uint64_t gpu_gen;        /* nkv__gpu_ready_gen() last acted on */
	uint8_t *skip;           /* SKIP_BUF bytes, made on first use */
};

static inline void q_push(struct tqueue *q, struct titem *it)
{
	it->next = NULL;
	if (q->tail)
		q->tail->next = it;
	else
		q->head = it;
	q->tail = it;
}

static inline struct titem *q_pop(struct tqueue *q)
{
	struct titem *it = q->head;

	if (it) {
		q->head = it->next;
		if (!q->head)
			q->tail = NULL;
	}
	return it;
}

static inline void hdr_init(struct nkv_wire_hdr *h, uint16_t type)
{
	memset(h, 0, sizeof(*h));
	h->magic = NKV_WIRE_MAGIC;
	h->version = NKV_WIRE_VERSION;
	h->type = type;
}

/* tcp.c: the engine */
struct io_uring_sqe *nkv__tcp_sqe(struct tcp_engine *te); /* never NULL: submits to make room */
bool nkv__tcp_wait_one(struct tcp_engine *te, uint64_t deadline_ns); /* handle one completion, waiting for it */
void nkv__tcp_stream_kick(struct tstream *s);             /* post whatever the stream can do next */

/* tcp_conn.c: connections and their streams */
int nkv__tcp_listen(struct nkv_engine *e, const char *host, uint16_t port, uint16_t *port_out);
int nkv__tcp_connect(struct nkv_engine *e, const char *host, uint16_t port, struct nkv_conn *c);
void nkv__tcp_close(struct nkv_conn *c);
void nkv__tcp_on_accept(struct tcp_engine *te, struct tlistener *l, int res);
void nkv__tcp_on_pending_hdr(struct tstream *s);          /* a header on a stream in its handshake */
void nkv__tcp_on_ctl(struct tstream *s);                  /* an R_CTL payload is in */
void nkv__tcp_pending_drop(struct tstream *s, const char *why);
/* Refuse a stream in its handshake: log, send an ERROR with the reason, close once sent. */
void nkv__tcp_pending_refuse(struct tstream *s, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The handshake's MAC (wire.h): label, nonces, token, stream index and count. */
void nkv__tcp_auth_mac(const struct nkv_engine *e, const char *label, const uint8_t *na, const uint8_t *np,
		       uint64_t token, uint32_t idx, uint32_t n, uint8_t *out);
void nkv__tcp_conn_fail(struct tconn *tc, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void nkv__tcp_stream_free(struct tstream *s);
void nkv__tcp_reap(struct tcp_engine *te);
bool nkv__tcp_expire_handshakes(struct tcp_engine *te);

/* tcp_send.c: the sender */
int nkv__tcp_push(struct nkv_conn *c, struct nkv_push_req *req);
void nkv__tcp_try_send(struct tstream *s);
void nkv__tcp_on_send(struct tstream *s, int res);
void nkv__tcp_queue_ctrl(struct tstream *s, uint16_t type, uint64_t req_id, uint64_t offset, void *payload,
			 uint64_t len);
void nkv__tcp_sreq_finish(struct tconn *tc, struct sreq *sr);
void nkv__tcp_sreq_free(struct tconn *tc, struct sreq *sr);

/* tcp_recv.c: the receiver */
void nkv__tcp_recv_kick(struct tstream *s);               /* post a receive if one can go */
void nkv__tcp_on_recv(struct tstream *s, int res);
void nkv__tcp_rreq_remove(struct tconn *tc, struct rreq *rq);
void nkv__tcp_gpu_in_done(void *owner, uint64_t req_id, uint64_t bytes, int status);

#endif
