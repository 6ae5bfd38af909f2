/*
 * TCP backend: connections. Listening and accepting, the active side's
 * blocking handshake (one HELLO per stream, the peer's region list back),
 * the passive side's HELLO that gathers a connection's streams, and what
 * ends a connection: failure (every request in flight fails once, one
 * CONN_DOWN), the application's close, and reaping what has nothing left
 * in flight. A peer that never finishes its handshake is dropped after the
 * handshake timeout.
 */
#include "tcp.h"

#include <arpa/inet.h>
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

int nkv__tcp_connect(struct nkv_engine *e, const char *host, uint16_t port, struct nkv_conn *c)
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

/* Passive stream closed before it said HELLO: no connection to report to. */
void nkv__tcp_pending_drop(struct tstream *s, const char *why)
{
	nkv__log("connection from %s closed before its handshake: %s", s->peer, why);
	s->dead = true;
	shutdown(s->fd, SHUT_RDWR);
	s->te->reap = true;
}

int nkv__tcp_on_hello(struct tstream *s)
{
	struct tcp_engine *te = s->te;
	struct nkv_wire_hdr *h = &s->h;
	unsigned idx = (unsigned)(h->total >> 32), n = (unsigned)(h->total & 0xffffffffu);
	struct tconn *tc = NULL;
	struct nkv_remote_region *adv;
	size_t nadv;

	if (h->len || n < 1 || n > 64 || idx >= n) {
		nkv__tcp_pending_drop(s, "malformed hello (bad stream index or count)");
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
		nkv__tcp_pending_drop(s, "hello does not match its connection's other streams");
		return -1;
	}
	if (!tc) {
		struct nkv_conn *c = nkv__conn_new(te->e, true);
		tc = calloc(1, sizeof(*tc));
		if (!c || !tc || !(tc->s = calloc(n, sizeof(*tc->s)))) {
			free(tc);
			nkv__tcp_pending_drop(s, "out of memory");
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
		nkv__tcp_conn_fail(tc, -ENOMEM, "out of memory for the region list");
		return -1;
	}
	nkv__tcp_queue_ctrl(s, NKV_W_ADVERT, 0, 0, adv, nadv * sizeof(*adv));
	if (tc->nattached == tc->nstreams) {
		tc->up = true;
		nkv__emitf(te->e, NKV_EV_CONN_UP, tc->c, 0, 0, "%s, %u stream%s", tc->peer, n, n > 1 ? "s" : "");
		for (unsigned i = 0; i < n; i++)
			nkv__tcp_stream_kick(tc->s[i]);
	}
	return 0;
}

/* ---- failure and teardown ---------------------------------------------------- */

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
			nkv__tcp_stream_free(s);
		} else {
			if (s->dead)
				te->reap = true;
			pp = &s->pnext;
		}
	}
}

void nkv__tcp_close(struct nkv_conn *c)
{
	struct tconn *tc = c->be;

	if (!tc)
		return;
	nkv__tcp_conn_fail(tc, -ECANCELED, "closed by the application");
	while (!conn_idle(tc) && nkv__tcp_wait_one(tc->te))
		;
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
		if (now - s->born_ns > te->handshake_ns)
			nkv__tcp_pending_drop(s, "no hello before the handshake timeout");
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
