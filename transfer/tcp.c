/*
 * TCP backend on liburing.
 *
 * A connection is N TCP streams (--streams). The sender splits a request's
 * coalesced ranges into pieces and puts them on one per-connection queue;
 * each stream, whenever it has no send in flight, takes the next pieces off
 * that queue and sends them as one sendmsg (header + payload iovecs), so
 * fast streams take more and one request is striped over all of them.
 *
 * The receiver reads each 48-byte header, checks it against its registered
 * regions, and receives the payload straight into the region (no bounce
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
 * chunks copied out at a time (see conn_gate()).
 * Payloads for a GPU region are received into a pinned slot and copied to
 * the device; they count towards the request only once that copy is done.
 * Host regions take exactly the path they took before.
 *
 * Each stream has at most one send and one receive in flight, which keeps
 * byte order on the socket and makes teardown simple: shut the sockets down,
 * wait for the in-flight operations to come back, then free.
 */
#include "backend.h"
#include "gpu_stage.h"
#include "nkv_util.h"
#include "wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

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
#define MAX_SUMS (1u << 22)         /* checksums per request */
#define HANDSHAKE_DEFAULT_MS 10000
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
	struct nkv_block_sum *sums;
	size_t nsums;
	struct rreq *hnext;
};

enum rstate { R_HDR, R_DATA, R_SUMS, R_VENT, R_VDATA };

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
	bool reap;
	uint64_t gpu_gen;        /* nkv__gpu_ready_gen() last acted on */
};

static void stream_kick(struct tstream *s);
static void conn_fail(struct tconn *tc, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- small helpers -------------------------------------------------------- */

static struct io_uring_sqe *get_sqe(struct tcp_engine *te)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&te->ring);

	while (!sqe) {
		io_uring_submit(&te->ring);
		sqe = io_uring_get_sqe(&te->ring);
	}
	return sqe;
}

static void q_push(struct tqueue *q, struct titem *it)
{
	it->next = NULL;
	if (q->tail)
		q->tail->next = it;
	else
		q->head = it;
	q->tail = it;
}

static struct titem *q_pop(struct tqueue *q)
{
	struct titem *it = q->head;

	if (it) {
		q->head = it->next;
		if (!q->head)
			q->tail = NULL;
	}
	return it;
}

static void hdr_init(struct nkv_wire_hdr *h, uint16_t type)
{
	memset(h, 0, sizeof(*h));
	h->magic = NKV_WIRE_MAGIC;
	h->version = NKV_WIRE_VERSION;
	h->type = type;
}

static void addr_str(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	uint16_t port = 0;

	if (sa->sa_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, host, sizeof(host));
		port = ntohs(((const struct sockaddr_in *)sa)->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, host, sizeof(host));
		port = ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	}
	snprintf(buf, len, "%s:%u", host, port);
}

static void tune_socket(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* ---- engine ----------------------------------------------------------------- */

static int tcp_init(struct nkv_engine *e)
{
	struct tcp_engine *te = calloc(1, sizeof(*te));
	struct io_uring_params p = { .flags = IORING_SETUP_COOP_TASKRUN };
	int rc;

	if (!te)
		return nkv_err(ENOMEM, "tcp engine: out of memory");
	rc = io_uring_queue_init_params(RING_ENTRIES, &te->ring, &p);
	if (rc == -EINVAL) {
		memset(&p, 0, sizeof(p));
		rc = io_uring_queue_init_params(RING_ENTRIES, &te->ring, &p);
	}
	if (rc < 0) {
		free(te);
		return nkv_err(rc, "io_uring_queue_init: %s (io_uring disabled? see /proc/sys/kernel/io_uring_disabled)",
			       strerror(-rc));
	}
	te->e = e;
	te->handshake_ns = (uint64_t)(e->opts.handshake_ms ? e->opts.handshake_ms : HANDSHAKE_DEFAULT_MS) * 1000000;
	e->be = te;
	snprintf(e->desc, sizeof(e->desc), "tcp (io_uring), %u stream%s per connection%s", e->opts.streams,
		 e->opts.streams > 1 ? "s" : "", e->opts.verify ? ", per-block xxhash64 verify" : "");
	return 0;
}

static void handle_cqe(struct tcp_engine *te, struct io_uring_cqe *cqe);
static void reap(struct tcp_engine *te);

/* Process completions until no operation is in flight (teardown). */
static void drain(struct tcp_engine *te)
{
	struct io_uring_cqe *cqe;

	while (te->inflight) {
		io_uring_submit(&te->ring);
		if (io_uring_wait_cqe(&te->ring, &cqe))
			break;
		handle_cqe(te, cqe);
		io_uring_cqe_seen(&te->ring, cqe);
	}
}

static void stream_free(struct tstream *s)
{
	struct titem *it;

	nkv__gpu_in_drop_owner(s->te->e, s);
	while ((it = q_pop(&s->ctrl))) {
		free(it->owned);
		free(it);
	}
	for (unsigned i = 0; i < s->nbatch; i++)
		if (s->batch[i]->heap) {
			free(s->batch[i]->owned);
			free(s->batch[i]);
		}
	if (s->fd >= 0)
		close(s->fd);
	free(s);
}

static void tcp_fini(struct nkv_engine *e)
{
	struct tcp_engine *te = e->be;

	for (struct tlistener *l = te->listeners; l; l = l->next) {
		l->dead = true;
		shutdown(l->fd, SHUT_RDWR);
		if (l->busy) {
			struct io_uring_sqe *sqe = get_sqe(te);
			io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)l | OP_ACCEPT, 0);
			io_uring_sqe_set_data64(sqe, OP_IGNORE);
		}
	}
	for (struct tstream *s = te->pending; s; s = s->pnext) {
		s->dead = true;
		shutdown(s->fd, SHUT_RDWR);
	}
	drain(te);
	while (te->listeners) {
		struct tlistener *l = te->listeners;
		te->listeners = l->next;
		close(l->fd);
		free(l);
	}
	while (te->pending) {
		struct tstream *s = te->pending;
		te->pending = s->pnext;
		stream_free(s);
	}
	io_uring_queue_exit(&te->ring);
	free(te);
}

static int tcp_reg(struct nkv_engine *e, struct nkv_region *r)
{
	(void)e;
	(void)r; /* TCP reads and writes plain memory: nothing to pin, no rkey */
	return 0;
}

static void tcp_dereg(struct nkv_engine *e, struct nkv_region *r)
{
	(void)e;
	(void)r;
}

/* ---- listen / accept ---------------------------------------------------------- */

static void post_accept(struct tcp_engine *te, struct tlistener *l)
{
	struct io_uring_sqe *sqe;

	if (l->busy || l->dead)
		return;
	sqe = get_sqe(te);
	l->alen = sizeof(l->addr);
	io_uring_prep_accept(sqe, l->fd, (struct sockaddr *)&l->addr, &l->alen, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)l | OP_ACCEPT);
	l->busy = true;
	te->inflight++;
}

static int resolve(const char *host, uint16_t port, bool passive, struct addrinfo **res)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = passive ? AI_PASSIVE : 0 };
	char ps[8];
	int rc;

	snprintf(ps, sizeof(ps), "%u", port);
	rc = getaddrinfo(host[0] ? host : NULL, ps, &hints, res);
	if (rc)
		return nkv_err(EHOSTUNREACH, "resolve '%s': %s", host, gai_strerror(rc));
	return 0;
}

static int tcp_listen(struct nkv_engine *e, const char *host, uint16_t port, uint16_t *port_out)
{
	struct tcp_engine *te = e->be;
	struct addrinfo *res, *ai;
	struct tlistener *l;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int fd = -1, one = 1, rc;

	if ((rc = resolve(host, port, true, &res)))
		return rc;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (!bind(fd, ai->ai_addr, ai->ai_addrlen) && !listen(fd, 128))
			break;
		rc = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		return nkv_err(rc ? rc : EADDRNOTAVAIL, "listen on %s:%u: %s", host, port, strerror(rc ? rc : EADDRNOTAVAIL));
	if (!(l = calloc(1, sizeof(*l)))) {
		close(fd);
		return nkv_err(ENOMEM, "listener: out of memory");
	}
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	if (port_out)
		*port_out = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
						     : ntohs(((struct sockaddr_in *)&ss)->sin_port);
	l->fd = fd;
	l->next = te->listeners;
	te->listeners = l;
	/* Submitted by the next nkv_poll(): io_uring runs completion work on
	 * the submitting thread, which should be the one that polls. */
	post_accept(te, l);
	return 0;
}

static struct tstream *stream_new(struct tcp_engine *te, int fd)
{
	struct tstream *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->te = te;
	s->fd = fd;
	s->rs = R_HDR;
	s->born_ns = nkv_now_ns();
	return s;
}

static void on_accept(struct tcp_engine *te, struct tlistener *l, int res)
{
	struct tstream *s;

	l->busy = false;
	if (res < 0) {
		if (!l->dead && res != -ECANCELED && res != -EINVAL)
			nkv__log("accept: %s", strerror(-res));
		if (res == -EINVAL) /* listener shut down */
			l->dead = true;
		post_accept(te, l);
		return;
	}
	if (l->dead) {
		close(res);
		return;
	}
	tune_socket(res);
	if (!(s = stream_new(te, res))) {
		nkv__log("accept: out of memory, dropping connection");
		close(res);
	} else {
		addr_str((struct sockaddr *)&l->addr, s->peer, sizeof(s->peer));
		s->pnext = te->pending;
		te->pending = s;
		stream_kick(s);
	}
	post_accept(te, l);
}

/* ---- connect (active side, blocking handshake) ---------------------------------- */

static int write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int read_full(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = recv(fd, p, len, 0);
		if (n == 0)
			return -ECONNRESET;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void conn_free_be(struct tconn *tc);

/* connect(), finishing it with poll() if a signal interrupts it (the
 * connection goes on in the background then). Sets errno on failure. */
static int connect_wait(int fd, const struct sockaddr *sa, socklen_t len, int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	socklen_t sl = sizeof(int);
	int err = 0, n;

	if (!connect(fd, sa, len))
		return 0;
	if (errno != EINTR && errno != EINPROGRESS)
		return -1;
	do
		n = poll(&pfd, 1, timeout_ms);
	while (n < 0 && errno == EINTR);
	if (n == 0) {
		errno = ETIMEDOUT;
		return -1;
	}
	if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl))
		return -1;
	errno = err;
	return err ? -1 : 0;
}

static int tcp_connect(struct nkv_engine *e, const char *host, uint16_t port, struct nkv_conn *c)
{
	struct tcp_engine *te = e->be;
	unsigned n = e->opts.streams;
	struct tconn *tc = calloc(1, sizeof(*tc));
	int timeout_ms = (int)(te->handshake_ns / 1000000);
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = timeout_ms % 1000 * 1000 }, tv0 = { 0 };
	struct addrinfo *res = NULL, *src = NULL, *ai;
	int rc = 0;

	if (!tc || !(tc->s = calloc(n, sizeof(*tc->s)))) {
		free(tc);
		return nkv_err(ENOMEM, "connection: out of memory");
	}
	tc->c = c;
	tc->te = te;
	tc->nstreams = n;
	c->be = tc;
	if (getrandom(&tc->token, sizeof(tc->token), 0) != sizeof(tc->token))
		tc->token = nkv_now_ns() ^ ((uint64_t)getpid() << 32);
	if ((rc = resolve(host, port, false, &res)))
		goto fail;
	/* Leave from the given local address (port chosen by the kernel). */
	if (e->opts.src_addr && (rc = resolve(e->opts.src_addr, 0, true, &src)))
		goto fail;
	for (unsigned i = 0; i < n; i++) {
		struct nkv_wire_hdr h;
		int fd = -1;

		rc = -ECONNREFUSED;
		for (ai = res; ai; ai = ai->ai_next) {
			fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
			if (fd < 0)
				continue;
			setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
			setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
			if (src && (src->ai_family != ai->ai_family || bind(fd, src->ai_addr, src->ai_addrlen))) {
				rc = src->ai_family != ai->ai_family ? -EAFNOSUPPORT : -errno;
				close(fd);
				fd = -1;
				continue;
			}
			if (!connect_wait(fd, ai->ai_addr, ai->ai_addrlen, timeout_ms))
				break;
			rc = -errno;
			close(fd);
			fd = -1;
		}
		if (fd < 0) {
			nkv_err(rc, "stream %u: %s", i, strerror(-rc));
			goto fail;
		}
		tune_socket(fd);
		if (!(tc->s[i] = stream_new(te, fd))) {
			close(fd);
			rc = nkv_err(ENOMEM, "connection: out of memory");
			goto fail;
		}
		tc->s[i]->tc = tc;
		tc->s[i]->idx = i;
		snprintf(tc->s[i]->peer, sizeof(tc->s[i]->peer), "%s:%u", host, port);
		hdr_init(&h, NKV_W_HELLO);
		h.offset = tc->token;
		h.total = (uint64_t)i << 32 | n;
		if ((rc = write_full(fd, &h, sizeof(h)))) {
			nkv_err(rc, "stream %u: sending hello: %s", i, strerror(-rc));
			goto fail;
		}
	}
	/* Every stream gets the peer's regions back; keep the first copy. */
	for (unsigned i = 0; i < n; i++) {
		struct nkv_wire_hdr h;
		struct nkv_remote_region *rr;
		size_t cnt;

		if ((rc = read_full(tc->s[i]->fd, &h, sizeof(h)))) {
			nkv_err(rc, "stream %u: waiting for the peer's regions: %s%s", i, strerror(-rc),
				rc == -ETIMEDOUT ? " (is the peer's engine being polled?)" : "");
			goto fail;
		}
		if (h.magic != NKV_WIRE_MAGIC || h.version != NKV_WIRE_VERSION || h.type != NKV_W_ADVERT ||
		    h.len % sizeof(*rr) || h.len > 4096 * sizeof(*rr)) {
			rc = nkv_err(EPROTO, "stream %u: the peer answered with no valid region list (not a netkv "
					     "engine, or another protocol version)", i);
			goto fail;
		}
		cnt = h.len / sizeof(*rr);
		if (!(rr = malloc(h.len ? h.len : 1))) {
			rc = nkv_err(ENOMEM, "connection: out of memory");
			goto fail;
		}
		if ((rc = read_full(tc->s[i]->fd, rr, h.len))) {
			free(rr);
			nkv_err(rc, "stream %u: reading the peer's regions: %s", i, strerror(-rc));
			goto fail;
		}
		if (i == 0) {
			c->remote = rr;
			c->nremote = cnt;
		} else {
			free(rr);
		}
		setsockopt(tc->s[i]->fd, SOL_SOCKET, SO_RCVTIMEO, &tv0, sizeof(tv0));
		setsockopt(tc->s[i]->fd, SOL_SOCKET, SO_SNDTIMEO, &tv0, sizeof(tv0));
	}
	freeaddrinfo(res);
	if (src)
		freeaddrinfo(src);
	tc->nattached = n;
	tc->up = true;
	snprintf(tc->peer, sizeof(tc->peer), "%s:%u", host, port);
	for (unsigned i = 0; i < n; i++)
		stream_kick(tc->s[i]);
	io_uring_submit(&te->ring);
	return 0;
fail:
	if (res)
		freeaddrinfo(res);
	if (src)
		freeaddrinfo(src);
	conn_free_be(tc);
	c->be = NULL;
	return rc;
}

/* ---- sending ------------------------------------------------------------------- */

static uint64_t item_size(const struct titem *it)
{
	return HDR + it->len;
}

static void sreq_finish(struct tconn *tc, struct sreq *sr);

/*
 * The staging gate. The engine's NKV_GPU_OUT_SLOTS chunk slots are shared
 * by every connection, and a chunk keeps its slot until its last byte is
 * sent: without a limit, a peer that stops reading would end up holding
 * all of them and stall pushes to every other peer. So a connection lets
 * at most STAGED_PER_CONN of its chunks be copied out and not yet wholly
 * sent, in the order its queue sends them, and lets the next one go as
 * one finishes. Two keep a healthy connection's pipeline full (the next
 * chunk is copied while one is on the wire).
 *
 * Guarantee: one stalled peer holds at most STAGED_PER_CONN slots, and
 * pushes to other peers go on through the rest. Limit: SLOTS /
 * STAGED_PER_CONN stalled peers (two) can still hold every slot.
 *
 * No deadlock within a connection: what was let go is the oldest unsent
 * chunks of its queue, so either the queue's head is among them or all of
 * them are already taken by streams' sends, which need only the network.
 * Across connections: the pipeline gives slots only to chunks let go, and
 * passes over requests held back, so a free slot always goes to a chunk
 * whose connection can take it.
 */
static void conn_gate(struct tconn *tc)
{
	while (tc->gate && tc->staged_out < STAGED_PER_CONN) {
		struct sreq *sr = tc->gate;
		uint32_t nc = nkv__src_nunits(&sr->src), n;

		if (sr->allowed == nc) {
			tc->gate = sr->next;
			continue;
		}
		n = STAGED_PER_CONN - tc->staged_out;
		if (n > nc - sr->allowed)
			n = nc - sr->allowed;
		sr->allowed += n;
		tc->staged_out += n;
		nkv__src_allow(&sr->src, sr->allowed);
	}
}

static void item_sent(struct tstream *s, struct titem *it)
{
	/* A chunk wholly sent: its connection may let the next one go. */
	if (it->req && nkv__src_sent(&it->req->src, it->unit, it->hdr.len) && s->tc) {
		s->tc->staged_out--;
		if (!s->tc->failed)
			conn_gate(s->tc);
	}
	if (it->heap) { /* control message */
		free(it->owned);
		free(it);
	} else if (it->req && --it->req->unsent == 0 && it->req->acked && s->tc && !s->tc->failed) {
		sreq_finish(s->tc, it->req); /* frees it, which lives in req->items */
	}
}

/* An item's pieces in wire order: header, then payload (DATAV: entries, payloads). */
static unsigned item_segments(const struct titem *it, struct iovec *v)
{
	unsigned n = 0;

	v[n++] = (struct iovec){ (void *)&it->hdr, HDR };
	if (it->vec) {
		v[n++] = (struct iovec){ it->vec, it->nvec * sizeof(*it->vec) };
		for (unsigned i = 0; i < it->nvec; i++)
			v[n++] = (struct iovec){ (void *)it->vdata[i], it->vec[i].len };
	} else if (it->len) {
		v[n++] = (struct iovec){ (void *)it->data, it->len };
	}
	return n;
}

static unsigned item_niov(const struct titem *it)
{
	return it->vec ? 2 + it->nvec : it->len ? 2 : 1;
}

/* Fill the iovecs from the batch, starting first_off bytes into batch[0]. */
static unsigned batch_iov(struct tstream *s)
{
	struct iovec seg[NKV_WIRE_MAX_VEC + 2];
	unsigned n = 0;

	for (unsigned i = 0; i < s->nbatch; i++) {
		unsigned k = item_segments(s->batch[i], seg);
		uint64_t skip = i == 0 ? s->first_off : 0;

		for (unsigned j = 0; j < k; j++) {
			if (skip >= seg[j].iov_len) {
				skip -= seg[j].iov_len;
				continue;
			}
			s->siov[n].iov_base = (char *)seg[j].iov_base + skip;
			s->siov[n++].iov_len = seg[j].iov_len - skip;
			skip = 0;
		}
	}
	return n;
}

static void post_send(struct tstream *s)
{
	struct io_uring_sqe *sqe = get_sqe(s->te);

	memset(&s->smsg, 0, sizeof(s->smsg));
	s->smsg.msg_iov = s->siov;
	s->smsg.msg_iovlen = batch_iov(s);
	io_uring_prep_sendmsg(sqe, s->fd, &s->smsg, MSG_NOSIGNAL | MSG_WAITALL);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)s | OP_SEND);
	s->send_busy = true;
	s->te->inflight++;
}

/* An item's unit is ready (host memory always; a staged chunk once copied
 * out): point its payload there. False while the copy is running (or after
 * a failure, which fails the connection: the receiver holds part of the
 * request). */
static bool item_ready(struct tconn *tc, struct titem *it)
{
	uint64_t base;
	int rc;

	if (it->resolved)
		return true;
	if ((rc = nkv__src_ready(&it->req->src, it->unit, &base)) <= 0) {
		if (rc < 0)
			conn_fail(tc, rc, "request %llu: %s", (unsigned long long)it->req->req_id, nkv_last_error());
		return false;
	}
	if (it->vec) /* each entry's source was put in vdata when it was built */
		for (unsigned i = 0; i < it->nvec; i++)
			it->vdata[i] = (const void *)(uintptr_t)(base + (uintptr_t)it->vdata[i]);
	else
		it->data = (const void *)(uintptr_t)(base + it->src);
	it->resolved = true;
	return true;
}

static void try_send(struct tstream *s)
{
	struct tconn *tc = s->tc;
	uint64_t bytes = 0;
	struct titem *it;

	if (s->send_busy || s->dead)
		return;
	s->nbatch = 0;
	s->first_off = 0;
	s->niov = 0;
	/* Control messages first: ACKs unblock the peer's completions. */
	while (s->nbatch < MAX_BATCH_ITEMS && s->niov + 2 <= MAX_BATCH_IOV && (it = q_pop(&s->ctrl))) {
		s->batch[s->nbatch++] = it;
		s->niov += item_niov(it);
		bytes += item_size(it);
	}
	/* Then pieces off the connection's shared queue, while the batch has
	 * room and (GPU sources) while their staging chunk is in host memory. */
	if (tc && tc->up && !tc->failed)
		while (s->nbatch < MAX_BATCH_ITEMS && bytes < MAX_BATCH_BYTES && tc->fifo.head &&
		       s->niov + item_niov(tc->fifo.head) <= MAX_BATCH_IOV && item_ready(tc, tc->fifo.head)) {
			it = q_pop(&tc->fifo);
			s->batch[s->nbatch++] = it;
			s->niov += item_niov(it);
			bytes += item_size(it);
		}
	if (s->nbatch)
		post_send(s);
}

static void on_send(struct tstream *s, int res)
{
	uint64_t done;

	s->send_busy = false;
	if (res == -ECANCELED && !s->dead) {
		/* The thread that submitted it exited: nothing was sent, go again. */
		post_send(s);
		return;
	}
	if (res < 0) {
		if (s->tc)
			conn_fail(s->tc, res, "send on stream %u: %s", s->idx, strerror(-res));
		s->dead = true;
		s->te->reap = true;
		return;
	}
	done = (uint64_t)res;
	while (s->nbatch) {
		uint64_t left = item_size(s->batch[0]) - s->first_off;
		if (done < left) {
			s->first_off += done;
			break;
		}
		done -= left;
		item_sent(s, s->batch[0]);
		memmove(s->batch, s->batch + 1, (s->nbatch - 1) * sizeof(s->batch[0]));
		s->nbatch--;
		s->first_off = 0;
	}
	if (s->nbatch && !s->dead)
		post_send(s); /* a short send: the rest of the batch */
}

static void queue_ctrl(struct tstream *s, uint16_t type, uint64_t req_id, uint64_t offset, void *payload,
		       uint64_t len)
{
	struct titem *it = calloc(1, sizeof(*it));

	if (!it) {
		free(payload);
		if (s->tc)
			conn_fail(s->tc, -ENOMEM, "out of memory queueing a reply");
		return;
	}
	hdr_init(&it->hdr, type);
	it->hdr.req_id = req_id;
	it->hdr.offset = offset;
	it->hdr.len = len;
	it->data = payload;
	it->len = len;
	it->owned = payload;
	it->heap = true;
	it->resolved = true;
	q_push(&s->ctrl, it);
}

static int tcp_push(struct nkv_conn *c, struct nkv_push_req *req)
{
	struct tconn *tc = c->be;
	size_t nr, k = 0;
	uint64_t total = nkv_plan_bytes(req->plan), piece;
	struct nkv_send_src src;
	struct sreq *sr;
	int rc;

	if (!tc || tc->failed) {
		free(req->sums);
		return nkv_err(ENOTCONN, "push %llu: connection is down%s%s", (unsigned long long)req->req_id,
			       tc ? ": " : "", tc ? tc->fail_reason : "");
	}
	for (sr = tc->oldest; sr; sr = sr->next)
		if (sr->req_id == req->req_id) {
			free(req->sums);
			return nkv_err(EEXIST, "push %llu: a request with this id is already in flight",
				       (unsigned long long)req->req_id);
		}
	/* Cut ranges so one request spreads over all streams, but never into
	 * pieces so small that headers and syscalls dominate. */
	piece = (total + tc->nstreams - 1) / tc->nstreams;
	piece = piece < MIN_PIECE ? MIN_PIECE : piece > MAX_PIECE ? MAX_PIECE : piece;
	/* A GPU source sends the staging plan's ranges (the plan's, cut at
	 * chunk boundaries) from pinned chunks as they are copied; a host
	 * source its plan's ranges as they are. */
	if ((rc = nkv__src_open(c->e, req->src, req->plan, req->src->kind == NKV_MEM_CUDA, NKV_GPU_CHUNK,
				NKV_GPU_CHUNK_RANGES, false, &src))) {
		free(req->sums);
		return nkv_err_wrap(rc, "push %llu from GPU region %u", (unsigned long long)req->req_id, req->src->id);
	}
	nr = nkv__src_count(&src);
	if (!(sr = calloc(1, sizeof(*sr)))) {
		nkv__src_close(&src);
		free(req->sums);
		return nkv_err(ENOMEM, "push: out of memory");
	}
	sr->src = src;
	/* Upper bounds: large ranges cut into pieces, small ones one item each
	 * at most (they are grouped into DATAV messages below). */
	size_t nsmall = 0, cap = 0;
	for (size_t i = 0; i < nr; i++) {
		uint64_t len = nkv__src_range(&src, i).len;
		if (len < VEC_RANGE_MAX)
			nsmall++;
		else
			cap += (len + piece - 1) / piece;
	}
	cap += nsmall + (req->sums ? 1 : 0);
	sr->items = calloc(cap, sizeof(*sr->items));
	sr->vents = nsmall ? malloc(nsmall * sizeof(*sr->vents)) : NULL;
	sr->vdata = nsmall ? malloc(nsmall * sizeof(*sr->vdata)) : NULL;
	if (!sr->items || (nsmall && (!sr->vents || !sr->vdata))) {
		free(sr->items);
		free(sr->vents);
		free(sr->vdata);
		free(sr);
		nkv__src_close(&src);
		free(req->sums);
		return nkv_err(ENOMEM, "push: out of memory for %zu pieces", cap);
	}
	sr->req_id = req->req_id;
	sr->total = total;
	sr->sums = req->sums;
	size_t nv = 0;
	struct titem *group = NULL; /* open DATAV group */
	uint64_t gbytes = 0;
	for (size_t i = 0; i < nr; i++) {
		/* This range: from the plan, or a staged piece of it. */
		struct nkv_send_range g = nkv__src_range(&src, i);
		uint64_t rlen = g.len;

		if (rlen < VEC_RANGE_MAX) {
			/* Blocks that did not coalesce: many ranges, one message,
			 * one scattered receive on the other side. A group never
			 * spans two staging chunks. */
			if (!group || group->nvec == NKV_WIRE_MAX_VEC || gbytes + rlen > piece || group->unit != g.unit) {
				group = &sr->items[k++];
				hdr_init(&group->hdr, NKV_W_DATAV);
				group->hdr.region = req->dst->id;
				group->hdr.flags = req->sums ? NKV_WF_VERIFY : 0;
				group->hdr.req_id = req->req_id;
				group->hdr.total = total;
				group->vec = &sr->vents[nv];
				group->vdata = &sr->vdata[nv];
				group->req = sr;
				group->unit = g.unit;
				gbytes = 0;
			}
			sr->vents[nv] = (struct nkv_wire_vent){ .offset = g.dst_off, .len = rlen };
			sr->vdata[nv++] = (const void *)(uintptr_t)g.src; /* item_ready() adds the unit's base */
			group->nvec++;
			group->hdr.offset = group->nvec;
			group->hdr.len += rlen;
			group->len = group->nvec * sizeof(struct nkv_wire_vent) + group->hdr.len;
			gbytes += rlen;
			continue;
		}
		group = NULL;
		for (uint64_t off = 0; off < rlen; off += piece) {
			struct titem *it = &sr->items[k++];
			uint64_t len = rlen - off < piece ? rlen - off : piece;

			hdr_init(&it->hdr, NKV_W_DATA);
			it->hdr.region = req->dst->id;
			it->hdr.flags = req->sums ? NKV_WF_VERIFY : 0;
			it->hdr.offset = g.dst_off + off;
			it->hdr.len = len;
			it->hdr.req_id = req->req_id;
			it->hdr.total = total;
			it->len = len;
			it->req = sr;
			it->unit = g.unit;
			it->src = g.src + off;
		}
	}
	sr->items[k - 1].hdr.flags |= NKV_WF_LAST;
	if (req->sums) {
		struct titem *it = &sr->items[k++];

		hdr_init(&it->hdr, NKV_W_SUMS);
		it->hdr.region = req->dst->id;
		it->hdr.flags = NKV_WF_VERIFY;
		it->hdr.len = req->nsums * sizeof(struct nkv_block_sum);
		it->hdr.req_id = req->req_id;
		it->hdr.total = total;
		it->data = req->sums;
		it->len = it->hdr.len;
		it->req = sr;
		it->unit = NKV_NO_UNIT;
		it->resolved = true;
	}
	sr->nitems = k;
	sr->unsent = sr->nitems;
	for (size_t i = 0; i < sr->nitems; i++)
		q_push(&tc->fifo, &sr->items[i]);
	sr->prev = tc->newest;
	if (tc->newest)
		tc->newest->next = sr;
	else
		tc->oldest = sr;
	tc->newest = sr;
	if (nkv__src_staged(&sr->src) && !tc->gate)
		tc->gate = sr;
	conn_gate(tc);
	/* Queued for the ring; the next nkv_poll() submits, so a burst of
	 * pushes costs one system call. */
	for (unsigned i = 0; i < tc->nstreams; i++)
		try_send(tc->s[i]);
	return 0;
}

static void sreq_unlink_free(struct tconn *tc, struct sreq *sr)
{
	if (tc->gate == sr)
		tc->gate = sr->next;
	if (sr->prev)
		sr->prev->next = sr->next;
	else
		tc->oldest = sr->next;
	if (sr->next)
		sr->next->prev = sr->prev;
	else
		tc->newest = sr->prev;
	free(sr->items);
	free(sr->vents);
	free(sr->vdata);
	free(sr->sums);
	nkv__src_close(&sr->src);
	free(sr);
}

static void sreq_finish(struct tconn *tc, struct sreq *sr)
{
	struct nkv_event ev = { .type = NKV_EV_PUSH_DONE, .status = sr->ack_status, .req_id = sr->req_id,
				.bytes = sr->total, .conn = tc->c };

	if (ev.status > 0 || ev.status < -4095)
		ev.status = -EPROTO;
	if (ev.status)
		snprintf(ev.reason, sizeof(ev.reason), "the receiver reported: %s%s", strerror(-ev.status),
			 ev.status == -EBADMSG ? " (block checksum mismatch)" : "");
	nkv__emit(tc->te->e, &ev);
	sreq_unlink_free(tc, sr);
}

/* ---- receiving ------------------------------------------------------------------ */

static struct rreq **rreq_slot(struct tconn *tc, uint64_t req_id)
{
	struct rreq **pp = &tc->rbuckets[(req_id * 0x9E3779B97F4A7C15ull) >> 54];

	while (*pp && (*pp)->req_id != req_id)
		pp = &(*pp)->hnext;
	return pp;
}

static void rreq_remove(struct tconn *tc, struct rreq *rq)
{
	struct rreq **pp = rreq_slot(tc, rq->req_id);

	if (*pp == rq) {
		*pp = rq->hnext;
		tc->nrreqs--;
	}
	free(rq->sums);
	free(rq);
}

static void post_recv(struct tstream *s)
{
	struct io_uring_sqe *sqe = get_sqe(s->te);
	int flags = 0;

	memset(&s->rmsg, 0, sizeof(s->rmsg));
	s->rmsg.msg_iov = s->riov;
	if (s->rs == R_HDR) {
		s->riov[0] = (struct iovec){ (char *)&s->h + s->hgot, HDR - s->hgot };
		s->rmsg.msg_iovlen = 1;
	} else if (s->rs == R_VENT) {
		s->riov[0] = (struct iovec){ s->dst + s->dgot, s->dlen - s->dgot };
		s->rmsg.msg_iovlen = 1;
		flags = MSG_WAITALL;
	} else if (s->rs == R_VDATA) {
		/* Scattered straight into the region, from where we are (GPU
		 * region: packed into the pinned slot, scattered on the GPU). */
		uint64_t skip = s->dgot;
		unsigned n = 0;
		bool packed = nkv__rx_packed(&s->rx);

		if (packed)
			s->riov[n++] = (struct iovec){ nkv__rx_buf(&s->rx) + s->dgot, s->dlen - s->dgot };
		for (unsigned i = 0; i < s->nvent && !packed; i++) {
			if (skip >= s->vent[i].len) {
				skip -= s->vent[i].len;
				continue;
			}
			s->riov[n++] = (struct iovec){ s->vbase + s->vent[i].offset + skip, s->vent[i].len - skip };
			skip = 0;
		}
		if (s->dlen - s->dgot >= WAITALL_MIN) {
			flags = MSG_WAITALL;
		} else {
			s->riov[n++] = (struct iovec){ &s->h, HDR };
			s->hgot = 0;
		}
		s->rmsg.msg_iovlen = n;
	} else {
		/* The payload, and with it (if already there) the next header.
		 * A large remainder is received whole instead (MSG_WAITALL: the
		 * kernel retries, one completion; ~10% less CPU per byte). */
		s->riov[0] = (struct iovec){ s->dst + s->dgot, s->dlen - s->dgot };
		s->riov[1] = (struct iovec){ &s->h, HDR };
		s->hgot = 0;
		s->rmsg.msg_iovlen = 2;
		if (s->dlen - s->dgot >= WAITALL_MIN) {
			s->rmsg.msg_iovlen = 1;
			flags = MSG_WAITALL;
		}
	}
	io_uring_prep_recvmsg(sqe, s->fd, &s->rmsg, flags);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)s | OP_RECV);
	s->recv_busy = true;
	s->te->inflight++;
}

/* Passive stream closed before it said HELLO: no connection to report to. */
static void pending_drop(struct tstream *s, const char *why)
{
	nkv__log("connection from %s closed before its handshake: %s", s->peer, why);
	s->dead = true;
	shutdown(s->fd, SHUT_RDWR);
	s->te->reap = true;
}

static int on_hello(struct tstream *s)
{
	struct tcp_engine *te = s->te;
	struct nkv_wire_hdr *h = &s->h;
	unsigned idx = (unsigned)(h->total >> 32), n = (unsigned)(h->total & 0xffffffffu);
	struct tconn *tc = NULL;
	struct nkv_remote_region *adv;
	size_t nadv;

	if (h->len || n < 1 || n > 64 || idx >= n) {
		pending_drop(s, "malformed hello (bad stream index or count)");
		return -1;
	}
	for (struct nkv_conn *c = te->e->conns; c; c = c->next) {
		struct tconn *t = c->be;
		if (c->passive && t && !t->up && !t->failed && t->token == h->offset) {
			tc = t;
			break;
		}
	}
	if (tc && (tc->nstreams != n || tc->s[idx])) {
		pending_drop(s, "hello does not match its connection's other streams");
		return -1;
	}
	if (!tc) {
		struct nkv_conn *c = nkv__conn_new(te->e, true);
		tc = calloc(1, sizeof(*tc));
		if (!c || !tc || !(tc->s = calloc(n, sizeof(*tc->s)))) {
			free(tc);
			pending_drop(s, "out of memory");
			return -1; /* c stays on the list, harmless and freed with the engine */
		}
		tc->c = c;
		tc->te = te;
		tc->token = h->offset;
		tc->born_ns = s->born_ns;
		tc->nstreams = n;
		snprintf(tc->peer, sizeof(tc->peer), "%s", s->peer);
		c->be = tc;
	}
	/* Move the stream from pending into the connection. */
	for (struct tstream **pp = &te->pending; *pp; pp = &(*pp)->pnext)
		if (*pp == s) {
			*pp = s->pnext;
			break;
		}
	s->tc = tc;
	s->idx = idx;
	tc->s[idx] = s;
	tc->nattached++;
	if (nkv__region_adverts(te->e, &adv, &nadv)) {
		conn_fail(tc, -ENOMEM, "out of memory for the region list");
		return -1;
	}
	queue_ctrl(s, NKV_W_ADVERT, 0, 0, adv, nadv * sizeof(*adv));
	if (tc->nattached == tc->nstreams) {
		tc->up = true;
		nkv__emitf(te->e, NKV_EV_CONN_UP, tc->c, 0, 0, "%s, %u stream%s", tc->peer, n, n > 1 ? "s" : "");
		for (unsigned i = 0; i < n; i++)
			stream_kick(tc->s[i]);
	}
	return 0;
}

static void rreq_complete(struct tstream *s, struct rreq *rq)
{
	struct tconn *tc = s->tc;
	int st = nkv__recv_done(tc->te->e, tc->c, rq->req_id, rq->got, rq->region, rq->sums, rq->nsums);

	queue_ctrl(s, NKV_W_ACK, rq->req_id, (uint64_t)(int64_t)st, NULL, 0);
	rreq_remove(tc, rq);
}

static void maybe_complete(struct tstream *s, struct rreq *rq)
{
	if (rq->got == rq->total && (!rq->want_sums || rq->have_sums))
		rreq_complete(s, rq);
}

/* A header has fully arrived on an attached stream: check it and set up
 * the payload. Returns 0, or -1 after failing the connection. */
static int on_header(struct tstream *s)
{
	struct tconn *tc = s->tc;
	struct nkv_engine *e = s->te->e;
	struct nkv_wire_hdr *h = &s->h;
	struct nkv_region *r;
	struct rreq **slot, *rq;
	bool sums = h->type == NKV_W_SUMS, vec = h->type == NKV_W_DATAV, fresh = false;

	if (h->magic != NKV_WIRE_MAGIC) {
		conn_fail(tc, -EPROTO, "stream %u: bad header magic 0x%08x", s->idx, h->magic);
		return -1;
	}
	if (h->version != NKV_WIRE_VERSION) {
		conn_fail(tc, -EPROTO, "stream %u: protocol version %u, expected %u", s->idx, h->version, NKV_WIRE_VERSION);
		return -1;
	}
	if (!tc->c->passive) {
		struct sreq *sr;

		if (h->type != NKV_W_ACK || h->len) {
			conn_fail(tc, -EPROTO, "stream %u: unexpected message type %u from the receiver", s->idx, h->type);
			return -1;
		}
		for (sr = tc->oldest; sr && sr->req_id != h->req_id; sr = sr->next)
			;
		if (!sr || sr->acked) {
			conn_fail(tc, -EPROTO, "stream %u: acknowledgement for request %llu, which is not in flight",
				  s->idx, (unsigned long long)h->req_id);
			return -1;
		}
		sr->acked = true;
		sr->ack_status = (int)(int64_t)h->offset;
		if (!sr->unsent)
			sreq_finish(tc, sr);
		return 0;
	}
	if (h->type != NKV_W_DATA && h->type != NKV_W_SUMS && h->type != NKV_W_DATAV) {
		conn_fail(tc, -EPROTO, "stream %u: unexpected message type %u", s->idx, h->type);
		return -1;
	}
	if (!(r = nkv__region(e, h->region))) {
		conn_fail(tc, -EPROTO, "stream %u: request %llu names region %u, which is not registered", s->idx,
			  (unsigned long long)h->req_id, h->region);
		return -1;
	}
	if (!h->total || !h->len) {
		conn_fail(tc, -EPROTO, "stream %u: request %llu: zero-length %s", s->idx, (unsigned long long)h->req_id,
			  h->total ? "range" : "request");
		return -1;
	}
	if (vec && (!h->offset || h->offset > NKV_WIRE_MAX_VEC)) {
		conn_fail(tc, -EPROTO, "stream %u: request %llu: vector of %llu ranges (1..%u allowed)", s->idx,
			  (unsigned long long)h->req_id, (unsigned long long)h->offset, NKV_WIRE_MAX_VEC);
		return -1;
	}
	if (!sums && !vec && (h->offset > r->len || h->len > r->len - h->offset)) {
		conn_fail(tc, -EPROTO, "stream %u: request %llu: range [%llu, +%llu) outside region %u of %llu bytes",
			  s->idx, (unsigned long long)h->req_id, (unsigned long long)h->offset,
			  (unsigned long long)h->len, h->region, (unsigned long long)r->len);
		return -1;
	}
	if (!sums && r->kind == NKV_MEM_CUDA && h->len > NKV_GPU_IN_BYTES) {
		conn_fail(tc, -EPROTO, "stream %u: request %llu: payload of %llu bytes for GPU region %u exceeds the "
				       "%u-byte staging slot (netkv senders cut ranges to %u bytes)", s->idx,
			  (unsigned long long)h->req_id, (unsigned long long)h->len, h->region, NKV_GPU_IN_BYTES,
			  MAX_PIECE);
		return -1;
	}
	if (sums && (h->len % sizeof(struct nkv_block_sum) || h->len / sizeof(struct nkv_block_sum) > MAX_SUMS)) {
		conn_fail(tc, -EPROTO, "stream %u: request %llu: checksum list of %llu bytes is malformed", s->idx,
			  (unsigned long long)h->req_id, (unsigned long long)h->len);
		return -1;
	}
	slot = rreq_slot(tc, h->req_id);
	/* A request the peer never sent a valid byte for is not reported as
	 * dropped: a rejected first header removes the entry it made. */
	if (!(rq = *slot)) {
		fresh = true;
		if (tc->nrreqs >= MAX_RREQS) {
			conn_fail(tc, -EPROTO, "more than %u requests open at once", MAX_RREQS);
			return -1;
		}
		if (!(rq = calloc(1, sizeof(*rq)))) {
			conn_fail(tc, -ENOMEM, "out of memory for request %llu", (unsigned long long)h->req_id);
			return -1;
		}
		rq->req_id = h->req_id;
		rq->total = h->total;
		rq->region = h->region;
		rq->want_sums = h->flags & NKV_WF_VERIFY;
		*slot = rq;
		tc->nrreqs++;
	}
	if (rq->total != h->total || rq->region != h->region || rq->want_sums != !!(h->flags & NKV_WF_VERIFY)) {
		if (fresh)
			rreq_remove(tc, rq);
		conn_fail(tc, -EPROTO, "stream %u: request %llu: header disagrees with the request's earlier ones "
				       "(size, region or verify flag)", s->idx, (unsigned long long)h->req_id);
		return -1;
	}
	if (sums) {
		if (!rq->want_sums || rq->have_sums || rq->sums) {
			uint64_t id = h->req_id;
			if (fresh)
				rreq_remove(tc, rq);
			conn_fail(tc, -EPROTO, "stream %u: request %llu: unexpected checksum list", s->idx,
				  (unsigned long long)id);
			return -1;
		}
		if (!(rq->sums = malloc(h->len))) {
			conn_fail(tc, -ENOMEM, "out of memory for checksums");
			return -1;
		}
		rq->nsums = h->len / sizeof(struct nkv_block_sum);
		s->dst = (uint8_t *)rq->sums;
		s->rs = R_SUMS;
	} else {
		if (h->len > rq->total - rq->claimed) {
			uint64_t total = rq->total;
			if (fresh)
				rreq_remove(tc, rq);
			conn_fail(tc, -EPROTO, "stream %u: request %llu: more bytes than its announced %llu", s->idx,
				  (unsigned long long)h->req_id, (unsigned long long)total);
			return -1;
		}
		/* Claimed now so concurrent streams cannot overrun the request;
		 * it completes only once every payload is in. */
		rq->claimed += h->len;
		if (vec) {
			/* First the entries; vent_done() checks them. */
			s->nvent = (unsigned)h->offset;
			s->vbase = r->ptr;
			s->vrlen = r->len;
			s->vpay = h->len;
			nkv__rx_begin(&s->rx, r, 0); /* GPU: payload into a slot, see rx_ready() */
			s->dst = (uint8_t *)s->vent;
			s->rs = R_VENT;
			s->cur = rq;
			s->dlen = s->nvent * sizeof(struct nkv_wire_vent);
			s->dgot = 0;
			return 0;
		}
		s->rs = R_DATA;
		s->doff = h->offset;
		nkv__rx_begin(&s->rx, r, h->offset); /* s->dst set by rx_ready() */
		s->dst = NULL;
	}
	s->cur = rq;
	s->dlen = h->len;
	s->dgot = 0;
	return 0;
}

/* A DATAV's entries are in: each must lie inside the region and together
 * they must add up to the payload the header announced. */
static int vent_done(struct tstream *s)
{
	uint64_t sum = 0;

	for (unsigned i = 0; i < s->nvent; i++) {
		const struct nkv_wire_vent *v = &s->vent[i];

		if (!v->len || v->offset > s->vrlen || v->len > s->vrlen - v->offset) {
			conn_fail(s->tc, -EPROTO, "stream %u: request %llu: vector entry %u [%llu, +%llu) outside region %u of %llu bytes",
				  s->idx, (unsigned long long)s->h.req_id, i, (unsigned long long)v->offset,
				  (unsigned long long)v->len, s->h.region, (unsigned long long)s->vrlen);
			return -1;
		}
		sum += v->len;
	}
	if (sum != s->vpay) {
		conn_fail(s->tc, -EPROTO, "stream %u: request %llu: vector entries add up to %llu bytes, header says %llu",
			  s->idx, (unsigned long long)s->h.req_id, (unsigned long long)sum, (unsigned long long)s->vpay);
		return -1;
	}
	s->rs = R_VDATA;
	s->dlen = s->vpay;
	s->dgot = 0;
	return 0;
}

/* A payload is in: in place already (host), or in the pinned slot, to be
 * copied to the device (GPU; its bytes count once that copy is done, see
 * gpu_in_done). 1: in place, 0: copying, <0: failed the connection. */
static int deliver(struct tstream *s, struct rreq *rq)
{
	struct nkv_range r[NKV_WIRE_MAX_VEC];
	uint32_t n = 0;
	uint64_t off = 0;
	int rc;

	if (s->rs == R_DATA) {
		r[n++] = (struct nkv_range){ .src_off = 0, .dst_off = s->doff, .len = s->dlen };
	} else {
		for (unsigned i = 0; i < s->nvent; i++) {
			r[n++] = (struct nkv_range){ .src_off = off, .dst_off = s->vent[i].offset, .len = s->vent[i].len };
			off += s->vent[i].len;
		}
	}
	rc = nkv__rx_deliver(s->te->e, &s->rx, r, n, rq->req_id);
	if (rc < 0) {
		nkv__rx_drop(s->te->e, &s->rx);
		conn_fail(s->tc, rc, "stream %u: request %llu: copy into GPU memory: %s", s->idx,
			  (unsigned long long)rq->req_id, nkv_last_error());
	}
	return rc;
}

static void payload_done(struct tstream *s)
{
	struct rreq *rq = s->cur;
	int rc = 1;

	if (s->rs == R_SUMS)
		rq->have_sums = true;
	else if ((rc = deliver(s, rq)) > 0)
		rq->got += s->dlen;
	s->cur = NULL;
	s->rs = R_HDR;
	if (rc > 0)
		maybe_complete(s, rq);
}

static void on_recv(struct tstream *s, int res)
{
	struct tconn *tc = s->tc;

	s->recv_busy = false;
	if (s->dead || res == -ECANCELED) /* canceled: stream_kick() posts it again */
		return;
	if (res <= 0) {
		const char *what = res == 0 ? "peer closed the connection" : strerror(-res);
		char why[128];

		if (s->rs != R_HDR)
			snprintf(why, sizeof(why), "%s mid-range (%llu of %llu payload bytes)", what,
				 (unsigned long long)s->dgot, (unsigned long long)s->dlen);
		else if (s->hgot)
			snprintf(why, sizeof(why), "%s: truncated header (%llu of %llu bytes)", what,
				 (unsigned long long)s->hgot, (unsigned long long)HDR);
		else
			snprintf(why, sizeof(why), "%s", what);
		if (!tc) {
			pending_drop(s, why);
			return;
		}
		tc->clean_close = res == 0 && s->rs == R_HDR && !s->hgot && !tc->nrreqs && !tc->oldest;
		conn_fail(tc, res == 0 ? -ECONNRESET : res, "stream %u: %s", s->idx, why);
		return;
	}
	if (s->rs == R_HDR) {
		s->hgot += (uint64_t)res;
	} else {
		uint64_t n = (uint64_t)res, want = s->dlen - s->dgot;

		if (n < want) {
			s->dgot += n;
			return;
		}
		s->dgot = s->dlen;
		if (s->rs == R_VENT) { /* entries in; the payloads follow */
			vent_done(s);
			return;
		}
		s->hgot = n - want; /* bytes of the next header that came along */
		payload_done(s);
		if (s->dead || (tc && tc->failed))
			return;
	}
	if (s->hgot < HDR)
		return;
	/* A whole header. */
	s->hgot = 0;
	if (!tc) {
		if (s->h.magic != NKV_WIRE_MAGIC || s->h.version != NKV_WIRE_VERSION || s->h.type != NKV_W_HELLO)
			pending_drop(s, s->h.magic != NKV_WIRE_MAGIC ? "bad header magic (not a netkv peer?)"
					: s->h.version != NKV_WIRE_VERSION ? "unsupported protocol version"
									 : "first message is not a hello");
		else
			on_hello(s);
		return;
	}
	on_header(s);
}

/* Somewhere to receive the payload into: the region (host), or a pinned
 * slot (GPU). False while no slot is free: a finished copy frees one, and
 * tcp_progress kicks the streams again. */
static bool rx_ready(struct tstream *s)
{
	int rc;

	if (s->rs != R_DATA && s->rs != R_VDATA)
		return true;
	rc = nkv__rx_slot(s->te->e, s, &s->rx);
	if (rc < 0)
		conn_fail(s->tc, rc, "stream %u: receive buffer for GPU memory: %s", s->idx, nkv_last_error());
	if (rc <= 0)
		return false;
	if (s->rs == R_DATA)
		s->dst = nkv__rx_buf(&s->rx);
	return true;
}

/* Post whatever this stream can do next. */
static void stream_kick(struct tstream *s)
{
	if (s->dead)
		return;
	if (!s->recv_busy && rx_ready(s))
		post_recv(s);
	try_send(s);
}

/* A copy into GPU memory finished: its bytes are in place. */
static void gpu_in_done(void *owner, uint64_t req_id, uint64_t bytes, int status)
{
	struct tstream *s = owner;
	struct tconn *tc = s->tc;
	struct rreq *rq;

	if (!tc || tc->failed)
		return;
	if (status < 0) {
		conn_fail(tc, status, "stream %u: request %llu: copy into GPU memory: %s", s->idx,
			  (unsigned long long)req_id, nkv_last_error());
		return;
	}
	if (!(rq = *rreq_slot(tc, req_id)))
		return;
	rq->got += bytes;
	maybe_complete(s, rq);
}

/* GPU copies finished or staged chunks became ready: let every stream
 * look again (receive into a freed slot, send a ready chunk, an ACK). */
static void gpu_kick(struct tcp_engine *te)
{
	uint64_t gen = nkv__gpu_ready_gen(te->e);
	int n = nkv__gpu_in_reap(te->e, gpu_in_done);

	if (!n && gen == te->gpu_gen)
		return;
	te->gpu_gen = gen;
	for (struct nkv_conn *c = te->e->conns; c; c = c->next) {
		struct tconn *tc = c->be;
		for (unsigned i = 0; tc && !tc->failed && i < tc->nstreams; i++)
			if (tc->s[i])
				stream_kick(tc->s[i]);
	}
}

/* ---- failure and teardown ---------------------------------------------------- */

static void conn_fail(struct tconn *tc, int status, const char *fmt, ...)
{
	struct nkv_engine *e = tc->te->e;
	va_list ap;

	if (tc->failed)
		return;
	tc->failed = true;
	tc->fail_status = status;
	va_start(ap, fmt);
	vsnprintf(tc->fail_reason, sizeof(tc->fail_reason), fmt, ap);
	va_end(ap);
	/* The application closing, or the peer leaving cleanly between
	 * requests, is no news; anything else is logged with its reason. */
	if (status != -ECANCELED && !tc->clean_close)
		nkv__log("connection %s %s closed: %s", tc->c->passive ? "from" : "to", tc->peer, tc->fail_reason);
	for (unsigned i = 0; i < tc->nstreams; i++)
		if (tc->s[i]) {
			tc->s[i]->dead = true;
			shutdown(tc->s[i]->fd, SHUT_RDWR);
		}
	/* Sender: every push in flight fails once. */
	for (struct sreq *sr = tc->oldest; sr; sr = sr->next)
		nkv__emitf(e, NKV_EV_PUSH_DONE, tc->c, sr->req_id, status == -ECANCELED ? status : -ECONNRESET,
			   "request %llu failed: %s", (unsigned long long)sr->req_id, tc->fail_reason);
	/* Receiver: partial requests are dropped and reported. */
	for (size_t b = 0; b < sizeof(tc->rbuckets) / sizeof(tc->rbuckets[0]); b++)
		for (struct rreq *rq = tc->rbuckets[b]; rq; rq = rq->hnext)
			nkv__emitf(e, NKV_EV_RECV, tc->c, rq->req_id, -ECONNRESET,
				   "dropped partial request %llu: %llu of %llu bytes had arrived",
				   (unsigned long long)rq->req_id, (unsigned long long)rq->got,
				   (unsigned long long)rq->total);
	tc->c->down = true;
	nkv__emitf(e, NKV_EV_CONN_DOWN, tc->c, 0, status, "%s", tc->fail_reason);
	tc->te->reap = true;
}

static bool conn_idle(const struct tconn *tc)
{
	for (unsigned i = 0; i < tc->nstreams; i++)
		if (tc->s[i] && (tc->s[i]->send_busy || tc->s[i]->recv_busy))
			return false;
	return true;
}

static void conn_free_be(struct tconn *tc)
{
	if (!tc)
		return;
	for (unsigned i = 0; i < tc->nstreams; i++)
		if (tc->s[i])
			stream_free(tc->s[i]);
	while (tc->oldest)
		sreq_unlink_free(tc, tc->oldest);
	for (size_t b = 0; b < sizeof(tc->rbuckets) / sizeof(tc->rbuckets[0]); b++)
		while (tc->rbuckets[b])
			rreq_remove(tc, tc->rbuckets[b]);
	free(tc->s);
	free(tc);
}

/* Free what failed and has nothing in flight any more. */
static void reap(struct tcp_engine *te)
{
	if (!te->reap)
		return;
	te->reap = false;
	for (struct nkv_conn *c = te->e->conns; c; c = c->next) {
		struct tconn *tc = c->be;
		if (tc && tc->failed) {
			if (conn_idle(tc)) {
				conn_free_be(tc);
				c->be = NULL;
			} else {
				te->reap = true;
			}
		}
	}
	for (struct tstream **pp = &te->pending; *pp;) {
		struct tstream *s = *pp;
		if (s->dead && !s->recv_busy && !s->send_busy) {
			*pp = s->pnext;
			stream_free(s);
		} else {
			if (s->dead)
				te->reap = true;
			pp = &s->pnext;
		}
	}
}

static void tcp_close(struct nkv_conn *c)
{
	struct tconn *tc = c->be;

	if (!tc)
		return;
	conn_fail(tc, -ECANCELED, "closed by the application");
	while (!conn_idle(tc)) {
		struct io_uring_cqe *cqe;

		io_uring_submit(&tc->te->ring);
		if (io_uring_wait_cqe(&tc->te->ring, &cqe))
			break;
		handle_cqe(tc->te, cqe);
		io_uring_cqe_seen(&tc->te->ring, cqe);
	}
	conn_free_be(tc);
	c->be = NULL;
}

/* ---- progress --------------------------------------------------------------- */

static void handle_cqe(struct tcp_engine *te, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	void *p = (void *)(uintptr_t)(ud & ~(uint64_t)3);

	if ((ud & 3) == OP_IGNORE)
		return; /* a cancel request's own completion */
	te->inflight--;
	switch (ud & 3) {
	case OP_ACCEPT:
		on_accept(te, p, cqe->res);
		break;
	case OP_RECV: {
		struct tstream *s = p;
		on_recv(s, cqe->res);
		stream_kick(s);
		break;
	}
	case OP_SEND: {
		struct tstream *s = p;
		on_send(s, cqe->res);
		stream_kick(s);
		break;
	}
	}
}

/* A peer that opens a stream and never says HELLO, or opens some of a
 * connection's streams and never the rest, must not hold sockets (and the
 * memory behind them) forever. True while some handshake is still in time. */
static bool expire_handshakes(struct tcp_engine *te)
{
	uint64_t now = nkv_now_ns();
	bool waiting = false;

	for (struct tstream *s = te->pending; s; s = s->pnext) {
		if (s->dead)
			continue;
		if (now - s->born_ns > te->handshake_ns)
			pending_drop(s, "no hello before the handshake timeout");
		else
			waiting = true;
	}
	for (struct nkv_conn *c = te->e->conns; c; c = c->next) {
		struct tconn *tc = c->be;

		if (!c->passive || !tc || tc->up || tc->failed)
			continue;
		if (now - tc->born_ns > te->handshake_ns)
			conn_fail(tc, -ETIMEDOUT, "only %u of its %u streams arrived within %llu ms", tc->nattached,
				  tc->nstreams, (unsigned long long)(te->handshake_ns / 1000000));
		else
			waiting = true;
	}
	return waiting;
}

static int tcp_progress(struct nkv_engine *e, int timeout_ms)
{
	struct tcp_engine *te = e->be;
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts;
	unsigned head, n = 0;
	int rc;

	if (e->gpu)
		gpu_kick(te);
	/* Wake up in time to enforce a pending handshake's deadline. */
	if (expire_handshakes(te) && (timeout_ms < 0 || timeout_ms > 100))
		timeout_ms = 100;
	if (timeout_ms == 0) {
		rc = io_uring_submit(&te->ring);
	} else if (timeout_ms < 0) {
		rc = io_uring_submit_and_wait(&te->ring, 1);
	} else {
		ts.tv_sec = timeout_ms / 1000;
		ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
		rc = io_uring_submit_and_wait_timeout(&te->ring, &cqe, 1, &ts, NULL);
	}
	if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN)
		return nkv_err(rc, "io_uring: %s", strerror(-rc));
	for (;;) {
		unsigned batch = 0;

		io_uring_for_each_cqe(&te->ring, head, cqe) {
			handle_cqe(te, cqe);
			batch++;
		}
		if (!batch)
			break;
		io_uring_cq_advance(&te->ring, batch);
		n += batch;
		io_uring_submit(&te->ring);
	}
	reap(te);
	return (int)n;
}

const struct nkv_backend_ops nkv_tcp_ops = {
	.name = "tcp",
	.init = tcp_init,
	.fini = tcp_fini,
	.reg = tcp_reg,
	.dereg = tcp_dereg,
	.listen = tcp_listen,
	.connect = tcp_connect,
	.push = tcp_push,
	.progress = tcp_progress,
	.close = tcp_close,
};
