/*
 * Control-protocol sockets: non-blocking, buffered both ways, one frame at
 * a time. Every control connection also has TCP keepalive and
 * TCP_USER_TIMEOUT (nkv_proto_keepalive), so a peer whose host vanished
 * without a RST (power loss, a cable, a partition) shows as a connection
 * error within the dead-peer deadline instead of never: an agent then
 * rejoins, the replay (--resubmit) reconnects.
 */
#include "netkv_proto.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "nkv_util.h"

static int resolve(const char *addr, struct sockaddr_storage *ss, socklen_t *sl)
{
	char host[256];
	uint16_t port;
	int rc = nkv_parse_hostport(addr, host, sizeof(host), &port);
	if (rc)
		return rc;
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai = NULL;
	char ps[8];
	snprintf(ps, sizeof(ps), "%u", port);
	int g = getaddrinfo(host[0] ? host : NULL, ps, &hints, &ai);
	if (g || !ai)
		return nkv_err(EHOSTUNREACH, "cannot resolve '%s': %s", addr, gai_strerror(g));
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*sl = ai->ai_addrlen;
	freeaddrinfo(ai);
	return 0;
}

int nkv_proto_listen(const char *addr, uint16_t *port_out)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int rc = resolve(addr, &ss, &sl);
	if (rc)
		return rc;
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return nkv_err(errno, "socket: %s", strerror(errno));
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) || listen(fd, 128)) {
		int e = errno;
		close(fd);
		return nkv_err(e, "listen on %s: %s", addr, strerror(e));
	}
	if (port_out) {
		sl = sizeof(ss);
		getsockname(fd, (struct sockaddr *)&ss, &sl);
		*port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
							  : ((struct sockaddr_in *)&ss)->sin_port);
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

#define CONNECT_MIN_S 1.0 /* the least a connect attempt is given to complete */

int nkv_proto_connect(const char *addr, double timeout_s)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int rc = resolve(addr, &ss, &sl);
	if (rc)
		return rc;
	double end = nkv_now_s() + timeout_s;
	for (;;) {
		/* Non-blocking, so a peer that neither accepts nor refuses (a host
		 * that drops SYNs, a full listen backlog) costs at most the deadline
		 * (at least CONNECT_MIN_S), not the kernel's minutes of SYN retries. */
		int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (fd < 0)
			return nkv_err(errno, "socket: %s", strerror(errno));
		int e = connect(fd, (struct sockaddr *)&ss, sl) == 0 ? 0 : errno;
		if (e == EINPROGRESS) {
			double now = nkv_now_s(), until = end > now + CONNECT_MIN_S ? end : now + CONNECT_MIN_S;
			struct pollfd pf = { .fd = fd, .events = POLLOUT };
			int n;
			while ((n = poll(&pf, 1, (int)((until - nkv_now_s()) * 1000) + 1)) < 0 && errno == EINTR)
				;
			socklen_t el = sizeof(e);
			if (n <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el))
				e = n < 0 ? errno : ETIMEDOUT;
		}
		if (e == 0) {
			int one = 1;
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK); /* callers get a blocking socket, as before */
			return fd;
		}
		close(fd);
		if ((e != ECONNREFUSED && e != EAGAIN) || nkv_now_s() >= end)
			return nkv_err(e, "connect to %s: %s", addr, strerror(e));
		struct timespec ts = { 0, 50 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}

static double g_dead_s = NKV_PROTO_DEAD_S;

void nkv_proto_set_dead_s(double dead_s)
{
	g_dead_s = dead_s > 0 ? dead_s : NKV_PROTO_DEAD_S;
}

int nkv_proto_keepalive(int fd, double dead_s)
{
	/* Silent for dead_s/2: probe every dead_s/6, 3 probes; data unacknowledged
	 * for dead_s: the kernel gives up (ETIMEDOUT) either way. Whole seconds,
	 * at least 1 (what TCP_KEEPIDLE and TCP_KEEPINTVL take). */
	int idle = dead_s / 2 >= 1 ? (int)(dead_s / 2) : 1, intvl = dead_s / 6 >= 1 ? (int)(dead_s / 6) : 1, cnt = 3;
	int one = 1;
	unsigned ms = dead_s * 1000 < 1 ? 1 : dead_s * 1000 < 1e9 ? (unsigned)(dead_s * 1000) : 1000000000u; /* 0 = off */
	if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one)) ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl)) ||
	    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt)) ||
	    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms)))
		return nkv_err(errno, "keepalive: %s", strerror(errno));
	return 0;
}

void nkv_pconn_init(struct nkv_pconn *c, int fd)
{
	memset(c, 0, sizeof(*c));
	c->fd = fd;
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	nkv_proto_keepalive(fd, g_dead_s); /* best effort: not a TCP socket (a test's socketpair) */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

void nkv_pconn_close(struct nkv_pconn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->in);
	nkv_buf_free(&c->out);
	memset(c, 0, sizeof(*c));
	c->fd = -1;
}

int nkv_pconn_read(struct nkv_pconn *c)
{
	/* At most one largest frame, or c->inmax bytes (a peer that has not
	 * registered yet gets a small buffer from the daemon). */
	size_t lim = c->inmax ? c->inmax : NKV_PROTO_MAX_PAYLOAD + NKV_PROTO_HDR;
	if (c->inoff) { /* what nkv_pconn_next consumed goes here, once per read, not once per frame */
		memmove(c->in, c->in + c->inoff, c->inlen);
		c->inoff = 0;
	}
	for (;;) {
		/* Full: let the caller decode first (or refuse a frame that cannot fit). */
		if (c->inlen >= lim)
			return 0;
		if (c->incap - c->inlen < 65536 && c->incap < lim) {
			size_t cap = c->incap ? c->incap * 2 : 131072;
			if (cap > lim)
				cap = lim;
			uint8_t *p = realloc(c->in, cap);
			if (!p)
				return nkv_err(ENOMEM, "out of memory for the input buffer");
			c->in = p;
			c->incap = cap;
		}
		size_t room = (c->incap < lim ? c->incap : lim) - c->inlen;
		ssize_t n = recv(c->fd, c->in + c->inlen, room, 0);
		if (n > 0) {
			c->inlen += (size_t)n;
			continue;
		}
		if (n == 0)
			return nkv_err(ECONNRESET, "peer closed the connection");
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		return nkv_err(errno, "recv: %s", strerror(errno));
	}
}

int nkv_pconn_next(struct nkv_pconn *c, struct nkv_msg *m)
{
	size_t used = 0;
	int rc = nkv_msg_decode(c->inlen ? c->in + c->inoff : c->in, c->inlen, m, &used);
	if (rc == 1) {
		c->inoff += used;
		c->inlen -= used;
		if (!c->inlen)
			c->inoff = 0;
	}
	return rc;
}

int nkv_pconn_flush(struct nkv_pconn *c)
{
	while (c->out.len) {
		ssize_t n = send(c->fd, c->out.p, c->out.len, MSG_NOSIGNAL);
		if (n > 0) {
			nkv_buf_consume(&c->out, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		return nkv_err(errno ? errno : EPIPE, "send: %s", strerror(errno ? errno : EPIPE));
	}
	return 0;
}

int nkv_pconn_send(struct nkv_pconn *c, const struct nkv_msg *m)
{
	int rc = nkv_msg_encode(m, &c->out);
	if (rc)
		return rc;
	return nkv_pconn_flush(c);
}

/* A send failed: if the peer said why before it closed (an ERROR frame), return that. */
static int said_why(struct nkv_pconn *c, int rc)
{
	char why[NKV_ERRSTR_MAX];
	snprintf(why, sizeof(why), "%s", nkv_last_error());
	nkv_pconn_read(c);
	struct nkv_msg e;
	if (nkv_pconn_next(c, &e) == 1) {
		if (e.type == NKV_MSG_ERROR) {
			int code = e.code && e.code < 4096 ? (int)e.code : ECONNRESET;
			rc = nkv_err(code, "refused: %s", e.text ? e.text : "");
			nkv_msg_clear(&e);
			return rc;
		}
		nkv_msg_clear(&e);
	}
	return nkv_err(-rc, "%s", why);
}

int nkv_pconn_send_wait(struct nkv_pconn *c, const struct nkv_msg *m)
{
	int rc = nkv_pconn_send(c, m);
	while (!rc && c->out.len) {
		struct pollfd p = { .fd = c->fd, .events = POLLOUT };
		poll(&p, 1, 1000);
		rc = nkv_pconn_flush(c);
	}
	return rc && rc != -ENOMEM && rc != -EINVAL ? said_why(c, rc) : rc;
}

int nkv_pconn_recv_wait(struct nkv_pconn *c, struct nkv_msg *m, double timeout_s)
{
	double end = nkv_now_s() + timeout_s;
	for (;;) {
		int rc = nkv_pconn_next(c, m);
		if (rc)
			return rc < 0 ? rc : 0;
		double left = end - nkv_now_s();
		if (timeout_s >= 0 && left <= 0)
			return nkv_err(ETIMEDOUT, "no reply within %.1f s", timeout_s);
		struct pollfd p = { .fd = c->fd, .events = POLLIN };
		poll(&p, 1, timeout_s < 0 ? 1000 : (int)(left * 1000) + 1);
		if ((rc = nkv_pconn_read(c))) {
			/* The peer may have said why before it closed (an ERROR frame): deliver that first. */
			char why[NKV_ERRSTR_MAX];
			snprintf(why, sizeof(why), "%s", nkv_last_error());
			int drc = nkv_pconn_next(c, m);
			if (drc)
				return drc < 0 ? drc : 0;
			return nkv_err(-rc, "%s", why);
		}
	}
}
