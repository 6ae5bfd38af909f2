/*
 * TCP backend: connections. Listening and accepting, the active side's
 * blocking handshake (one HELLO per stream, the peer's region list back),
 * the passive side's HELLO that gathers a connection's streams, and what
 * ends a connection: failure (every request in flight fails once, one
 * CONN_DOWN), the application's close, and reaping what has nothing left
 * in flight. A peer that never finishes its handshake is dropped after the
 * handshake timeout.
 *
 * The handshake (wire.h) is a mutual challenge-response over the engines'
 * shared secret: HELLO (Na) -> CHALLENGE (Np, MACp) -> AUTH (MACa) -> ADVERT.
 * The passive side keeps a stream on its pending list, outside any
 * connection, until its AUTH checks out; a refusal (bad MAC, malformed
 * message, too many connections) is sent as an ERROR with the reason, then
 * the stream is closed, having changed nothing.
 */
#include "tcp.h"

#include <arpa/inet.h>
#include <nettle/hmac.h>
#include <nettle/memops.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
#include <unistd.h>

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

static void post_accept(struct tcp_engine *te, struct tlistener *l)
{
	struct io_uring_sqe *sqe;

	if (l->busy || l->dead)
		return;
	sqe = nkv__tcp_sqe(te);
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

int nkv__tcp_listen(struct nkv_engine *e, const char *host, uint16_t port, uint16_t *port_out)
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

void nkv__tcp_stream_free(struct tstream *s)
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

void nkv__tcp_on_accept(struct tcp_engine *te, struct tlistener *l, int res)
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
		te->npending++;
		if (te->npending > te->max_conns)
			nkv__tcp_pending_refuse(s, -EBUSY, "too many connections in their handshake (%u, at most %u)",
						te->npending - 1, te->max_conns);
		else
			nkv__tcp_stream_kick(s);
	}
	post_accept(te, l);
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
			nkv__tcp_stream_free(tc->s[i]);
	while (tc->oldest)
		nkv__tcp_sreq_free(tc, tc->oldest);
	for (size_t b = 0; b < sizeof(tc->rbuckets) / sizeof(tc->rbuckets[0]); b++)
		while (tc->rbuckets[b])
			nkv__tcp_rreq_remove(tc, tc->rbuckets[b]);
	free(tc->s);
	free(tc);
}

/* ---- the handshake's MACs ----------------------------------------------------- */

void nkv__tcp_auth_mac(const struct nkv_engine *e, const char *label, const uint8_t *na, const uint8_t *np,
		       uint64_t token, uint32_t idx, uint32_t n, uint8_t *out)
{
	struct hmac_sha256_ctx ctx;
	uint8_t tail[16];

	memcpy(tail, &token, 8); /* little-endian host (wire.h) */
	memcpy(tail + 8, &idx, 4);
	memcpy(tail + 12, &n, 4);
	hmac_sha256_set_key(&ctx, e->secret_len, e->secret);
	hmac_sha256_update(&ctx, strlen(label), (const uint8_t *)label);
	hmac_sha256_update(&ctx, NKV_WIRE_NONCE, na);
	hmac_sha256_update(&ctx, NKV_WIRE_NONCE, np);
	hmac_sha256_update(&ctx, sizeof(tail), tail);
	hmac_sha256_digest(&ctx, NKV_WIRE_MAC, out);
	explicit_bzero(&ctx, sizeof(ctx));
}

static int fill_random(void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = getrandom(p, len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return nkv_err(errno, "getrandom: %s", strerror(errno));
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
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

/* An ERROR frame: the header (status in offset) and the reason, cut to
 * NKV_WIRE_MAX_ERROR bytes. Returns the bytes to send. */
struct error_frame {
	struct nkv_wire_hdr h;
	char why[NKV_WIRE_MAX_ERROR];
};

static size_t error_frame(struct error_frame *m, int status, const char *reason)
{
	size_t n = strlen(reason);

	if (n > NKV_WIRE_MAX_ERROR)
		n = NKV_WIRE_MAX_ERROR;
	hdr_init(&m->h, NKV_W_ERROR);
	m->h.offset = (uint64_t)(int64_t)status;
	m->h.len = n;
	memcpy(m->why, reason, n);
	return sizeof(m->h) + n;
}

/* A received ERROR: its status as an errno (ECONNREFUSED when it is none)
 * and its reason made printable in place. */
static int error_received(int64_t status, char *why)
{
	for (char *p = why; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			*p = '?';
	return status < 0 && status > -4096 ? (int)status : -ECONNREFUSED;
}

/* Tell the peer why we give up (best effort: blocking socket with a timeout). */
static void send_error(int fd, int status, const char *reason)
{
	struct error_frame m;

	write_full(fd, &m, error_frame(&m, status, reason));
}

/* h is an ERROR header: read its reason and fail with it. */
static int peer_refused(int fd, unsigned i, const struct nkv_wire_hdr *h, const char *peer)
{
	char why[NKV_WIRE_MAX_ERROR + 1] = "";

	if (h->len > NKV_WIRE_MAX_ERROR || read_full(fd, why, h->len))
		snprintf(why, sizeof(why), "(no readable reason)");
	else
		why[h->len] = 0;
	return nkv_err(error_received((int64_t)h->offset, why), "stream %u: refused by %s: %s", i, peer, why);
}

/* Read the next handshake header on stream i; an ERROR ends it. */
static int read_hs_hdr(int fd, unsigned i, struct nkv_wire_hdr *h, const char *peer, const char *what)
{
	int rc = read_full(fd, h, sizeof(*h));

	if (rc)
		return nkv_err(rc, "stream %u: waiting for the peer's %s: %s%s", i, what, strerror(-rc),
			       rc == -ETIMEDOUT ? " (is the peer's engine being polled?)" : "");
	if (h->magic != NKV_WIRE_MAGIC || h->version != NKV_WIRE_VERSION)
		return nkv_err(EPROTO, "stream %u: the peer answered with no valid %s (not a netkv engine, or "
				       "another protocol version than %u)", i, what, NKV_WIRE_VERSION);
	if (h->type == NKV_W_ERROR)
		return peer_refused(fd, i, h, peer);
	return 0;
}

int nkv__tcp_connect(struct nkv_engine *e, const char *host, uint16_t port, struct nkv_conn *c)
{
	struct tcp_engine *te = e->be;
	unsigned n = e->opts.streams;
	struct tconn *tc = calloc(1, sizeof(*tc));
	int timeout_ms = (int)(te->handshake_ns / 1000000);
	struct timeval tv = { .tv_sec = timeout_ms / 1000, .tv_usec = timeout_ms % 1000 * 1000 }, tv0 = { 0 };
	struct addrinfo *res = NULL, *src = NULL, *ai;
	char peer[64];
	int rc = 0;

	snprintf(peer, sizeof(peer), "%s:%u", host, port);
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
		h.len = NKV_WIRE_NONCE;
		if ((rc = fill_random(tc->s[i]->na, NKV_WIRE_NONCE)))
			goto fail;
		if ((rc = write_full(fd, &h, sizeof(h))) || (rc = write_full(fd, tc->s[i]->na, NKV_WIRE_NONCE))) {
			nkv_err(rc, "stream %u: sending hello: %s", i, strerror(-rc));
			goto fail;
		}
	}
	/* The peer proves the secret first (over our fresh nonce), then we do. */
	for (unsigned i = 0; i < n; i++) {
		struct tstream *s = tc->s[i];
		struct nkv_wire_hdr h;
		uint8_t want[NKV_WIRE_MAC], mine[NKV_WIRE_MAC];

		if ((rc = read_hs_hdr(s->fd, i, &h, peer, "challenge")))
			goto fail;
		if (h.type != NKV_W_CHALLENGE || h.len != NKV_WIRE_NONCE + NKV_WIRE_MAC) {
			rc = nkv_err(EPROTO, "stream %u: the peer answered the hello with message type %u of %llu bytes, "
					     "not a challenge", i, h.type, (unsigned long long)h.len);
			send_error(s->fd, rc, "expected a challenge");
			goto fail;
		}
		if ((rc = read_full(s->fd, s->np, NKV_WIRE_NONCE)) || (rc = read_full(s->fd, s->mac, NKV_WIRE_MAC))) {
			nkv_err(rc, "stream %u: reading the peer's challenge: %s", i, strerror(-rc));
			goto fail;
		}
		nkv__tcp_auth_mac(e, NKV_WIRE_LABEL_LISTENER, s->na, s->np, tc->token, i, n, want);
		if (!memeql_sec(want, s->mac, NKV_WIRE_MAC)) {
			rc = nkv_err(EACCES, "stream %u: %s failed to prove the data-plane secret (its MAC does not "
					     "match: the two sides hold different secrets)", i, peer);
			send_error(s->fd, rc, "authentication failed: the listening side's MAC does not match this "
					       "side's secret");
			goto fail;
		}
		nkv__tcp_auth_mac(e, NKV_WIRE_LABEL_CONNECTOR, s->na, s->np, tc->token, i, n, mine);
		hdr_init(&h, NKV_W_AUTH);
		h.offset = tc->token;
		h.total = (uint64_t)i << 32 | n;
		h.len = NKV_WIRE_MAC;
		if ((rc = write_full(s->fd, &h, sizeof(h))) || (rc = write_full(s->fd, mine, NKV_WIRE_MAC))) {
			nkv_err(rc, "stream %u: sending the proof: %s", i, strerror(-rc));
			goto fail;
		}
	}
	/* Every stream gets the peer's regions back; keep the first copy. */
	for (unsigned i = 0; i < n; i++) {
		struct nkv_wire_hdr h;
		struct nkv_remote_region *rr;
		size_t cnt;

		if ((rc = read_hs_hdr(tc->s[i]->fd, i, &h, peer, "region list")))
			goto fail;
		if (h.type != NKV_W_ADVERT || h.len % sizeof(*rr) || h.len > 4096 * sizeof(*rr)) {
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
		nkv__tcp_stream_kick(tc->s[i]);
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

/* Passive stream closed before its handshake finished: no connection to report to. */
void nkv__tcp_pending_drop(struct tstream *s, const char *why)
{
	if (s->dead)
		return;
	if (!s->refused)
		nkv__log("connection from %s closed before its handshake: %s", s->peer, why);
	s->dead = true;
	shutdown(s->fd, SHUT_RDWR);
	s->te->reap = true;
}

void nkv__tcp_pending_refuse(struct tstream *s, int status, const char *fmt, ...)
{
	va_list ap;
	char *why;
	int n;

	if (s->dead || s->refused)
		return;
	va_start(ap, fmt);
	n = vsnprintf(s->emsg, sizeof(s->emsg), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n > NKV_WIRE_MAX_ERROR)
		n = NKV_WIRE_MAX_ERROR;
	nkv__log("connection from %s refused: %s", s->peer, s->emsg);
	s->refused = true;
	/* Sent behind anything queued (a challenge), then the stream closes
	 * (nkv__tcp_on_send); the handshake deadline still bounds it. */
	if (!(why = malloc((size_t)n + 1))) {
		nkv__tcp_pending_drop(s, "out of memory");
		return;
	}
	memcpy(why, s->emsg, (size_t)n);
	nkv__tcp_queue_ctrl(s, NKV_W_ERROR, 0, (uint64_t)(int64_t)status, why, (uint64_t)n);
	nkv__tcp_try_send(s);
}

static bool live_passive_over(struct tcp_engine *te)
{
	unsigned n = 0;

	for (struct nkv_conn *c = te->e->conns; c; c = c->next) {
		struct tconn *t = c->be;
		if (c->passive && t && !t->failed)
			n++;
	}
	return n >= te->max_conns;
}

/* The stream proved the secret: join (or start) its connection and send the regions. */
static void stream_join(struct tstream *s)
{
	struct tcp_engine *te = s->te;
	unsigned idx = s->hidx, n = s->hn;
	struct tconn *tc = NULL;
	struct nkv_remote_region *adv;
	size_t nadv;

	for (struct nkv_conn *c = te->e->conns; c; c = c->next) {
		struct tconn *t = c->be;
		if (c->passive && t && !t->up && !t->failed && t->token == s->htoken) {
			tc = t;
			break;
		}
	}
	if (tc && (tc->nstreams != n || tc->s[idx])) {
		nkv__tcp_pending_refuse(s, -EPROTO, "hello does not match its connection's other streams (%u streams, "
						    "stream %u)", n, idx);
		return;
	}
	if (!tc && live_passive_over(te)) {
		nkv__tcp_pending_refuse(s, -EBUSY, "too many connections (at most %u)", te->max_conns);
		return;
	}
	if (!tc) {
		struct nkv_conn *c = nkv__conn_new(te->e, true);
		tc = calloc(1, sizeof(*tc));
		if (!c || !tc || !(tc->s = calloc(n, sizeof(*tc->s)))) {
			free(tc);
			nkv__tcp_pending_refuse(s, -ENOMEM, "out of memory");
			return; /* c stays on the list, harmless and freed with the engine */
		}
		tc->c = c;
		tc->te = te;
		tc->token = s->htoken;
		tc->born_ns = s->born_ns;
		tc->nstreams = n;
		snprintf(tc->peer, sizeof(tc->peer), "%s", s->peer);
		c->be = tc;
	}
	/* Move the stream from pending into the connection. */
	for (struct tstream **pp = &te->pending; *pp; pp = &(*pp)->pnext)
		if (*pp == s) {
			*pp = s->pnext;
			te->npending--;
			break;
		}
	s->tc = tc;
	s->idx = idx;
	s->as = A_DONE;
	tc->s[idx] = s;
	tc->nattached++;
	if (nkv__region_adverts(te->e, &adv, &nadv)) {
		nkv__tcp_conn_fail(tc, -ENOMEM, "out of memory for the region list");
		return;
	}
	/* TCP peers name regions by id and length: no addresses leave. */
	for (size_t i = 0; i < nadv; i++)
		adv[i].addr = 0, adv[i].rkey = 0;
	nkv__tcp_queue_ctrl(s, NKV_W_ADVERT, 0, 0, adv, nadv * sizeof(*adv));
	if (tc->nattached == tc->nstreams) {
		tc->up = true;
		nkv__emitf(te->e, NKV_EV_CONN_UP, tc->c, 0, 0, "%s, %u stream%s", tc->peer, n, n > 1 ? "s" : "");
		for (unsigned i = 0; i < n; i++)
			nkv__tcp_stream_kick(tc->s[i]);
	}
}

static void expect_payload(struct tstream *s, void *dst, uint64_t len, enum astate next)
{
	s->as = next;
	s->dst = dst;
	s->dlen = len;
	s->dgot = 0;
	s->rs = R_CTL;
	if (!len) /* an ERROR without a reason: nothing to receive */
		nkv__tcp_on_ctl(s);
}

/* A whole header on a stream in its handshake (HELLO, then AUTH). */
void nkv__tcp_on_pending_hdr(struct tstream *s)
{
	struct nkv_wire_hdr *h = &s->h;
	unsigned idx = (unsigned)(h->total >> 32), n = (unsigned)(h->total & 0xffffffffu);

	if (h->magic != NKV_WIRE_MAGIC) {
		nkv__tcp_pending_refuse(s, -EPROTO, "bad header magic 0x%08x (not a netkv peer?)", h->magic);
		return;
	}
	if (h->version != NKV_WIRE_VERSION) {
		nkv__tcp_pending_refuse(s, -EPROTO, "protocol version %u, this engine speaks %u", h->version,
					NKV_WIRE_VERSION);
		return;
	}
	if (h->type == NKV_W_ERROR && h->len <= NKV_WIRE_MAX_ERROR) {
		expect_payload(s, s->emsg, h->len, s->as);
		return;
	}
	if (s->as == A_HELLO) {
		if (h->type != NKV_W_HELLO) {
			nkv__tcp_pending_refuse(s, -EPROTO, "first message is type %u, not a hello", h->type);
			return;
		}
		if (h->len != NKV_WIRE_NONCE || n < 1 || n > 64 || idx >= n) {
			nkv__tcp_pending_refuse(s, -EPROTO, "malformed hello (nonce of %llu bytes, want %u; stream %u of %u, "
						"1..64 streams)", (unsigned long long)h->len, NKV_WIRE_NONCE, idx, n);
			return;
		}
		s->htoken = h->offset;
		s->hidx = idx;
		s->hn = n;
		expect_payload(s, s->na, NKV_WIRE_NONCE, A_NONCE);
		return;
	}
	/* A_AUTH */
	if (h->type != NKV_W_AUTH || h->len != NKV_WIRE_MAC || h->offset != s->htoken || idx != s->hidx || n != s->hn) {
		nkv__tcp_pending_refuse(s, -EPROTO, "expected the proof (auth, %u bytes) for this stream's hello; got "
					"type %u of %llu bytes", NKV_WIRE_MAC, h->type, (unsigned long long)h->len);
		return;
	}
	expect_payload(s, s->mac, NKV_WIRE_MAC, A_MAC);
}

/* A handshake payload, or an ERROR's reason, is in (either side). */
void nkv__tcp_on_ctl(struct tstream *s)
{
	struct tconn *tc = s->tc;

	s->rs = R_HDR;
	if (s->h.type == NKV_W_ERROR) {
		int rc;

		s->emsg[s->h.len] = 0;
		rc = error_received((int64_t)s->h.offset, s->emsg);
		if (tc) {
			tc->peer_refused = true;
			nkv__tcp_conn_fail(tc, rc, "stream %u: refused by %s: %s", s->idx, tc->peer, s->emsg);
		} else {
			nkv__tcp_pending_drop(s, s->emsg);
		}
		return;
	}
	if (s->as == A_NONCE) {
		struct tcp_engine *te = s->te;
		uint8_t *p = malloc(NKV_WIRE_NONCE + NKV_WIRE_MAC);

		if (!p || fill_random(s->np, NKV_WIRE_NONCE)) {
			free(p);
			nkv__tcp_pending_refuse(s, -ENOMEM, "no memory or randomness for a challenge");
			return;
		}
		memcpy(p, s->np, NKV_WIRE_NONCE);
		nkv__tcp_auth_mac(te->e, NKV_WIRE_LABEL_LISTENER, s->na, s->np, s->htoken, s->hidx, s->hn,
				  p + NKV_WIRE_NONCE);
		nkv__tcp_queue_ctrl(s, NKV_W_CHALLENGE, 0, 0, p, NKV_WIRE_NONCE + NKV_WIRE_MAC);
		s->as = A_AUTH;
		return;
	}
	if (s->as == A_MAC) {
		uint8_t want[NKV_WIRE_MAC];

		nkv__tcp_auth_mac(s->te->e, NKV_WIRE_LABEL_CONNECTOR, s->na, s->np, s->htoken, s->hidx, s->hn, want);
		if (!memeql_sec(want, s->mac, NKV_WIRE_MAC)) {
			nkv__tcp_pending_refuse(s, -EACCES, "authentication failed: the connecting side's MAC does not "
						"match this engine's data-plane secret");
			return;
		}
		stream_join(s);
	}
}

/* ---- failure and teardown ---------------------------------------------------- */

/* An ERROR without blocking: the socket takes it whole or not at all (it is
 * small, and the send buffer of a stream with nothing in flight is empty). */
static void send_error_now(int fd, int status, const char *reason)
{
	struct error_frame m;

	/* the peer gone or not reading learns nothing more */
	(void)!send(fd, &m, error_frame(&m, status, reason), MSG_DONTWAIT | MSG_NOSIGNAL);
}

void nkv__tcp_conn_fail(struct tconn *tc, int status, const char *fmt, ...)
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
	/* Tell the peer why (best effort, and only on streams with no send of
	 * ours in flight, which the ERROR could cut into). */
	if (status != -ECANCELED && !tc->clean_close && !tc->peer_refused)
		for (unsigned i = 0; i < tc->nstreams; i++) {
			struct tstream *s = tc->s[i];
			if (s && !s->dead && !s->send_busy && !s->nbatch)
				send_error_now(s->fd, status, tc->fail_reason);
		}
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
	nkv__grants_conn_gone(e, tc->c);
	nkv__emitf(e, NKV_EV_CONN_DOWN, tc->c, 0, status, "%s", tc->fail_reason);
	tc->te->reap = true;
}

/* Free what failed and has nothing in flight any more. */
void nkv__tcp_reap(struct tcp_engine *te)
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
			te->npending--;
			nkv__tcp_stream_free(s);
		} else {
			if (s->dead)
				te->reap = true;
			pp = &s->pnext;
		}
	}
}

/* The close's wait: the shutdown in nkv__tcp_conn_fail completes the streams'
 * operations at once, even with a peer that is stopped (measured: under a
 * millisecond); past this deadline they are cancelled outright. */
#define CLOSE_WAIT_NS 1000000000ull

void nkv__tcp_close(struct nkv_conn *c)
{
	struct tconn *tc = c->be;

	if (!tc)
		return;
	nkv__tcp_conn_fail(tc, -ECANCELED, "closed by the application");
	uint64_t deadline = nkv_now_ns() + CLOSE_WAIT_NS;
	while (!conn_idle(tc) && nkv__tcp_wait_one(tc->te, deadline))
		;
	if (!conn_idle(tc)) {
		nkv__log("connection %s %s: operations still in the kernel %llu ms after the shutdown; cancelling them",
			 c->passive ? "from" : "to", tc->peer, CLOSE_WAIT_NS / 1000000);
		for (unsigned i = 0; i < tc->nstreams; i++)
			if (tc->s[i] && (tc->s[i]->send_busy || tc->s[i]->recv_busy)) {
				struct io_uring_sqe *sqe = nkv__tcp_sqe(tc->te);
				io_uring_prep_cancel_fd(sqe, tc->s[i]->fd, IORING_ASYNC_CANCEL_ALL);
				io_uring_sqe_set_data64(sqe, OP_IGNORE);
			}
		/* A cancelled socket operation completes at once (-ECANCELED). */
		while (!conn_idle(tc) && nkv__tcp_wait_one(tc->te, UINT64_MAX))
			;
	}
	conn_free_be(tc);
	c->be = NULL;
}

/* A peer that opens a stream and never says HELLO, or opens some of a
 * connection's streams and never the rest, must not hold sockets (and the
 * memory behind them) forever. True while some handshake is still in time. */
bool nkv__tcp_expire_handshakes(struct tcp_engine *te)
{
	uint64_t now = nkv_now_ns();
	bool waiting = false;

	for (struct tstream *s = te->pending; s; s = s->pnext) {
		if (s->dead)
			continue;
		if (s->refused && now - s->born_ns > 2 * te->handshake_ns)
			nkv__tcp_pending_drop(s, "refused, and its error message not taken in time");
		else if (!s->refused && now - s->born_ns > te->handshake_ns)
			nkv__tcp_pending_refuse(s, -ETIMEDOUT, "handshake not finished within %llu ms",
						(unsigned long long)(te->handshake_ns / 1000000));
		else
			waiting = true;
	}
	for (struct nkv_conn *c = te->e->conns; c; c = c->next) {
		struct tconn *tc = c->be;

		if (!c->passive || !tc || tc->up || tc->failed)
			continue;
		if (now - tc->born_ns > te->handshake_ns)
			nkv__tcp_conn_fail(tc, -ETIMEDOUT, "only %u of its %u streams arrived within %llu ms", tc->nattached,
				  tc->nstreams, (unsigned long long)(te->handshake_ns / 1000000));
		else
			waiting = true;
	}
	return waiting;
}
