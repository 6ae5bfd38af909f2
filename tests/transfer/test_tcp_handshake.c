/*
 * Peers that start a handshake and never finish it: a stream that never says
 * HELLO, a HELLO cut in half, a connection that announces two streams and
 * opens one. Each is closed once the handshake timeout passes (the stalled
 * connection with a CONN_DOWN naming it), and a good connection made
 * afterwards still comes up.
 */
#include "raw_peer.h"

#include <errno.h>

#define HANDSHAKE_MS 300

static uint16_t port;
static struct h_peer rp;

/* Reads until the engine closes fd; returns how long that took, in ms. */
static double wait_closed(int fd, const char *what)
{
	double t0 = nkv_now_s();
	char b[4096];
	ssize_t n;

	while ((n = recv(fd, b, sizeof(b), 0)) > 0)
		; /* the region list of a half-open connection */
	CHECK(n == 0 || errno == ECONNRESET, "%s: not closed within 5 s (%s)", what, strerror(errno));
	close(fd);
	return (nkv_now_s() - t0) * 1e3;
}

int main(void)
{
	struct nkv_engine_opts o = { .backend = NKV_BACKEND_TCP, .streams = 1, .handshake_ms = HANDSHAKE_MS };
	struct nkv_wire_hdr h = { .magic = NKV_WIRE_MAGIC, .version = NKV_WIRE_VERSION, .type = NKV_W_HELLO };
	struct nkv_engine *re, *se;
	struct nkv_conn *good;
	struct nkv_event ev;

	char addr[64];
	uint32_t rid;
	void *region;
	double ms;
	int fd;

	setenv("NKV_QUIET", "1", 1);
	if (nkv_engine_create(&o, &re) || nkv_engine_create(&o, &se) ||
	    nkv_region_alloc(re, NKV_MEM_HOST, 1 << 16, NULL, &rid, &region) || nkv_listen(re, "127.0.0.1:0", &port)) {
		fprintf(stderr, "setup: %s\n", nkv_last_error());
		return 1;
	}
	rp.e = re;
	h_start(&rp);

	/* Connects and says nothing. */
	fd = h_raw_connect(port);
	ms = wait_closed(fd, "silent stream");
	CHECK(ms > HANDSHAKE_MS * 0.5 && ms < HANDSHAKE_MS + 1000, "silent stream closed after %.0f ms", ms);

	/* Half a HELLO, then silence. */
	fd = h_raw_connect(port);
	CHECK(send(fd, &h, sizeof(h) / 2, 0) == sizeof(h) / 2, "send half hello");
	ms = wait_closed(fd, "half hello");
	CHECK(ms > HANDSHAKE_MS * 0.5 && ms < HANDSHAKE_MS + 1000, "half hello closed after %.0f ms", ms);

	/* Stream 0 of 2, and stream 1 never comes: the connection is failed. */
	fd = h_raw_connect(port);
	{
		char why[300];
		int rc = raw_handshake(fd, "", 42, 0, 2, why, sizeof(why)); /* stream 0 of 2 */
		CHECK(rc == 0, "stream 0 of 2: handshake %d %s", rc, why);
	}
	ms = wait_closed(fd, "one of two streams");
	CHECK(ms < HANDSHAKE_MS + 1000, "half-open connection closed after %.0f ms", ms);
	CHECK(h_wait(&rp, NKV_EV_CONN_DOWN, 1, 5) == 1, "no CONN_DOWN for the half-open connection");
	if (h_find(&rp, NKV_EV_CONN_DOWN, 0, &ev))
		CHECK(ev.status == -ETIMEDOUT && strstr(ev.reason, "1 of its 2 streams"), "CONN_DOWN %d '%s'",
		      ev.status, ev.reason);
	CHECK(h_wait(&rp, NKV_EV_CONN_UP, 1, 0.2) == 0, "a half-open connection was reported up");

	/* The listener is still fine. */
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	CHECK(nkv_connect(se, addr, &good) == 0, "good connection after the stalled ones: %s", nkv_last_error());
	CHECK(h_wait(&rp, NKV_EV_CONN_UP, 1, 5) == 1, "good connection not up");

	h_stop(&rp);
	nkv_engine_destroy(se);
	nkv_engine_destroy(re);
	if (fails)
		fprintf(stderr, "%d check(s) failed\n", fails);
	return fails ? 1 : 0;
}
