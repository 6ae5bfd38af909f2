/*
 * The authenticated data-plane handshake (wire.h): engines with the same
 * secret connect and push; a peer without it (no handshake at all, the wrong
 * secret, a forged proof, an engine with another secret) is refused with a
 * reason it receives on the wire, and the receiver's pool is unchanged and
 * no connection is reported. The listener's own proof is checked by the
 * connecting engine (a listener with another secret is refused by the
 * connector). Too many connections are refused with a reason, and so are
 * checksum lists past the per-connection cap, and a request whose ranges
 * overlap. TCP peers get no region
 * addresses. 127.0.0.1 only; every wait has a deadline.
 */
#include "raw_peer.h"

#include <errno.h>

#define REGION (1u << 16)
#define SECRET "s3cret-for-the-auth-test"
#define MAX_CONNS 4

static struct h_peer rp;
static uint16_t port;
static uint8_t *pool;

static void pool_unchanged(const char *what)
{
	for (uint32_t i = 0; i < REGION; i++)
		if (pool[i] != 0x5A) {
			CHECK(0, "%s: byte %u of the pool changed", what, i);
			return;
		}
}

static void no_conn_events(const char *what)
{
	CHECK(h_wait(&rp, NKV_EV_CONN_UP, 2, 0.2) == 1, "%s: a refused peer was reported up", what);
}

int main(void)
{
	struct nkv_engine_opts o;
	struct nkv_engine *se, *bad, *none;
	struct nkv_conn *good, *c;
	struct nkv_plan *plan;
	struct nkv_event got[8];
	uint32_t rid, sid;
	uint8_t *src;
	char addr[64], why[400];
	int fd, rc, ngot = 0;

	setenv("NKV_QUIET", "1", 1);
	{ /* secrets off argv: a file's first line, else $NKV_TOKEN */
		char path[] = "/tmp/nkv-auth-XXXXXX", buf[64];
		int tf = mkstemp(path);
		CHECK(tf >= 0 && write(tf, "abc\r\nrest\n", 10) == 10, "temp file");
		close(tf);
		CHECK(nkv_secret_load(path, buf, sizeof(buf)) == 0 && !strcmp(buf, "abc"), "token file: '%s'", buf);
		CHECK(nkv_secret_load(path, buf, 3) == -EINVAL, "token longer than the buffer accepted");
		unlink(path);
		CHECK(nkv_secret_load(path, buf, sizeof(buf)) == -ENOENT, "missing token file");
		unsetenv("NKV_TOKEN");
		CHECK(nkv_secret_load(NULL, buf, sizeof(buf)) == 1 && !buf[0], "no token");
		setenv("NKV_TOKEN", "from-env", 1);
		CHECK(nkv_secret_load(NULL, buf, sizeof(buf)) == 0 && !strcmp(buf, "from-env"), "token from env: '%s'", buf);
		unsetenv("NKV_TOKEN");
	}
	nkv_engine_opts_init(&o);
	o.backend = NKV_BACKEND_VERBS;
	o.secret = SECRET;
	/* Verbs authenticates too (tests/verbs/test_verbs_auth.c): a secret is no reason to refuse it. */
	if (nkv_engine_create(&o, &se) == 0)
		nkv_engine_destroy(se);
	else
		CHECK(!strstr(nkv_last_error(), "secret"), "verbs with a secret: %s", nkv_last_error());
	nkv_engine_opts_init(&o);
	o.secret = SECRET;
	o.handshake_ms = 1500;
	o.max_conns = MAX_CONNS;
	if (nkv_engine_create(&o, &rp.e) || nkv_engine_create(&o, &se) ||
	    nkv_region_alloc(rp.e, NKV_MEM_HOST, REGION, NULL, &rid, (void **)&pool) ||
	    nkv_region_alloc(se, NKV_MEM_HOST, REGION, NULL, &sid, (void **)&src) ||
	    nkv_listen(rp.e, "127.0.0.1:0", &port)) {
		fprintf(stderr, "setup: %s\n", nkv_last_error());
		return 1;
	}
	o.secret = "another-secret";
	if (nkv_engine_create(&o, &bad)) {
		fprintf(stderr, "setup: %s\n", nkv_last_error());
		return 1;
	}
	o.secret = NULL;
	if (nkv_engine_create(&o, &none)) {
		fprintf(stderr, "setup: %s\n", nkv_last_error());
		return 1;
	}
	CHECK(strstr(nkv_engine_describe(rp.e), "authenticated"), "describe: %s", nkv_engine_describe(rp.e));
	memset(pool, 0x5A, REGION);
	h_fill(src, REGION, 7);
	h_start(&rp);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);

	/* The same secret: up, and no region address crosses TCP. */
	CHECK(nkv_connect(se, addr, &good) == 0, "good connect: %s", nkv_last_error());
	CHECK(h_wait(&rp, NKV_EV_CONN_UP, 1, 5) == 1, "good connection not up");
	CHECK(nkv_conn_remote_count(good) == 1 && nkv_conn_remote(good, 0)->addr == 0 &&
	      nkv_conn_remote(good, 0)->len == REGION, "advert: addresses must not be sent over TCP");

	/* An engine with another secret: refused, the connector prints why. */
	rc = nkv_connect(bad, addr, &c);
	CHECK(rc == -EACCES, "wrong-secret engine: connect %d (%s)", rc, nkv_last_error());
	CHECK(strstr(nkv_last_error(), "failed to prove the data-plane secret"), "wrong secret: '%s'", nkv_last_error());
	/* An engine with no secret at all. */
	rc = nkv_connect(none, addr, &c);
	CHECK(rc == -EACCES, "no-secret engine: connect %d (%s)", rc, nkv_last_error());

	/* A raw peer with the wrong secret that ignores the listener's proof. */
	fd = h_raw_connect(port);
	rc = raw_handshake(fd, "guess", 77, 0, 1, why, sizeof(why));
	CHECK(rc == -EBADMSG, "a wrong secret verified the listener's proof (%d %s)", rc, why);
	{ /* send a forged proof anyway */
		struct nkv_wire_hdr h = raw_hdr(NKV_W_AUTH);
		uint8_t mac[NKV_WIRE_MAC] = { 1, 2, 3 };
		h.offset = 77;
		h.total = 1;
		h.len = NKV_WIRE_MAC;
		send(fd, &h, sizeof(h), MSG_NOSIGNAL);
		send(fd, mac, sizeof(mac), MSG_NOSIGNAL);
	}
	rc = raw_refused(fd, why, sizeof(why));
	CHECK(rc == -EACCES && strstr(why, "authentication failed"), "forged proof: %d '%s'", rc, why);
	close(fd);

	/* No handshake at all: straight to a DATA header into the pool. */
	fd = h_raw_connect(port);
	{
		struct nkv_wire_hdr h = raw_hdr(NKV_W_DATA);
		char payload[4096];
		h.region = rid;
		h.len = h.total = sizeof(payload);
		memset(payload, 0xEE, sizeof(payload));
		send(fd, &h, sizeof(h), MSG_NOSIGNAL);
		send(fd, payload, sizeof(payload), MSG_NOSIGNAL);
	}
	rc = raw_refused(fd, why, sizeof(why));
	CHECK(rc == -EPROTO && strstr(why, "not a hello"), "data without a handshake: %d '%s'", rc, why);
	close(fd);

	/* A hello, then DATA instead of the proof. */
	fd = h_raw_connect(port);
	{
		struct nkv_wire_hdr h = raw_hdr(NKV_W_HELLO), ch;
		uint8_t na[NKV_WIRE_NONCE] = { 0 }, pay[NKV_WIRE_NONCE + NKV_WIRE_MAC];
		h.offset = 78;
		h.total = 1;
		h.len = NKV_WIRE_NONCE;
		send(fd, &h, sizeof(h), MSG_NOSIGNAL);
		send(fd, na, sizeof(na), MSG_NOSIGNAL);
		CHECK(raw_answer(fd, &ch, why, sizeof(why)) == 0 && ch.type == NKV_W_CHALLENGE, "no challenge");
		CHECK(recv(fd, pay, sizeof(pay), MSG_WAITALL) == sizeof(pay), "challenge body");
		h = raw_hdr(NKV_W_DATA);
		h.region = rid;
		h.len = h.total = 64;
		send(fd, &h, sizeof(h), MSG_NOSIGNAL);
		send(fd, pay, 64, MSG_NOSIGNAL);
	}
	rc = raw_refused(fd, why, sizeof(why));
	CHECK(rc == -EPROTO && strstr(why, "expected the proof"), "data instead of the proof: %d '%s'", rc, why);
	close(fd);

	/* Silent after connecting: refused when the handshake time is up. */
	fd = h_raw_connect(port);
	rc = raw_refused(fd, why, sizeof(why));
	CHECK(rc == -ETIMEDOUT && strstr(why, "handshake not finished within 1500 ms"), "silent peer: %d '%s'", rc, why);
	close(fd);

	no_conn_events("refused peers");
	pool_unchanged("refused peers");

	/* A raw peer with the right secret gets in (the format as written in wire.h). */
	fd = h_raw_connect(port);
	rc = raw_handshake(fd, SECRET, 79, 0, 1, why, sizeof(why));
	CHECK(rc == 0, "raw peer with the secret: %d %s", rc, why);
	CHECK(h_wait(&rp, NKV_EV_CONN_UP, 2, 5) == 2, "raw authenticated peer not up");
	/* ... and a refusal after the handshake reaches it too. */
	{
		struct nkv_wire_hdr h = raw_hdr(NKV_W_DATA);
		h.region = 99;
		h.len = h.total = 16;
		send(fd, &h, sizeof(h), MSG_NOSIGNAL);
	}
	rc = raw_refused(fd, why, sizeof(why));
	CHECK(rc == -EPROTO && strstr(why, "region 99, which is not registered"), "bad region: %d '%s'", rc, why);
	close(fd);
	CHECK(h_wait(&rp, NKV_EV_CONN_DOWN, 1, 5) == 1, "no CONN_DOWN for the bad-region peer");

	/* Checksum lists are bounded per connection (and engine), not only per request. */
	fd = h_raw_connect(port);
	rc = raw_handshake(fd, SECRET, 80, 0, 1, why, sizeof(why));
	CHECK(rc == 0, "raw peer for checksum lists: %d %s", rc, why);
	CHECK(h_wait(&rp, NKV_EV_CONN_UP, 3, 5) == 3, "checksum-list peer not up");
	{
		const size_t big = 12u << 20; /* 12 MiB each: one fits the 16 MiB per connection, two do not */
		uint8_t *junk = calloc(1, big);
		struct nkv_wire_hdr h = raw_hdr(NKV_W_SUMS);
		h.region = rid;
		h.flags = NKV_WF_VERIFY;
		h.total = 4096;
		h.len = big;
		h.req_id = 1;
		CHECK(junk && send(fd, &h, sizeof(h), MSG_NOSIGNAL) == sizeof(h), "send sums header");
		for (size_t off = 0; junk && off < big;) {
			ssize_t n = send(fd, junk + off, big - off, MSG_NOSIGNAL);
			if (n <= 0)
				break;
			off += (size_t)n;
		}
		h.req_id = 2;
		send(fd, &h, sizeof(h), MSG_NOSIGNAL);
		free(junk);
	}
	rc = raw_refused(fd, why, sizeof(why));
	CHECK(rc == -ENOBUFS && strstr(why, "checksums allowed per connection"), "checksum lists: %d '%s'", rc, why);
	close(fd);
	CHECK(h_wait(&rp, NKV_EV_CONN_DOWN, 2, 5) == 2, "no CONN_DOWN for the checksum-list peer");

	/* Connection cap: good + MAX_CONNS - 1 more are fine, the next is refused with the reason. */
	{
		int fds[MAX_CONNS];
		for (int i = 0; i < MAX_CONNS - 1; i++) {
			fds[i] = h_raw_connect(port);
			rc = raw_handshake(fds[i], SECRET, 100 + (uint64_t)i, 0, 1, why, sizeof(why));
			CHECK(rc == 0, "connection %d under the cap: %d %s", i, rc, why);
		}
		CHECK(h_wait(&rp, NKV_EV_CONN_UP, 3 + MAX_CONNS - 1, 5) == 3 + MAX_CONNS - 1, "connections under the cap not up");
		fds[MAX_CONNS - 1] = h_raw_connect(port);
		rc = raw_handshake(fds[MAX_CONNS - 1], SECRET, 200, 0, 1, why, sizeof(why));
		CHECK(rc == -EBUSY && strstr(why, "too many connections"), "connection over the cap: %d '%s'", rc, why);
		for (int i = 0; i < MAX_CONNS; i++)
			close(fds[i]);
		CHECK(h_wait(&rp, NKV_EV_CONN_DOWN, 2 + MAX_CONNS - 1, 5) == 2 + MAX_CONNS - 1, "capped connections not down");
	}
	pool_unchanged("hostile peers");

	/* Two ranges of one request over the same bytes: the request is not
	 * reported, the peer is told why (payload = the pool's own bytes, so the
	 * pool check below still holds). */
	fd = h_raw_connect(port);
	rc = raw_handshake(fd, SECRET, 81, 0, 1, why, sizeof(why));
	CHECK(rc == 0, "raw peer for overlaps: %d %s", rc, why);
	{
		struct nkv_wire_hdr h = raw_hdr(NKV_W_DATA);
		uint8_t same[4096];
		memset(same, 0x5A, sizeof(same));
		h.region = rid;
		h.req_id = 3;
		h.total = 8192;
		h.len = 4096;
		h.offset = 1024;
		send(fd, &h, sizeof(h), MSG_NOSIGNAL);
		send(fd, same, sizeof(same), MSG_NOSIGNAL);
		h.offset = 0; /* [0, 4096) overlaps [1024, 5120) */
		send(fd, &h, sizeof(h), MSG_NOSIGNAL);
		send(fd, same, sizeof(same), MSG_NOSIGNAL);
	}
	rc = raw_refused(fd, why, sizeof(why));
	CHECK(rc == -EPROTO && strstr(why, "request 3: ranges [0, +4096) and [1024, +4096) overlap"), "overlap: %d '%s'",
	      rc, why);
	close(fd);
	{
		struct nkv_event ev;
		bool ok = false;
		for (int i = 0; h_find(&rp, NKV_EV_RECV, i, &ev); i++)
			if (ev.req_id == 3 && ev.status == 0)
				ok = true;
		CHECK(!ok, "a request with overlapping ranges was reported received");
	}
	pool_unchanged("overlapping ranges");

	/* The good connection still works after all that. */
	CHECK(nkv_plan_build_raw(&(struct nkv_range){ .src_off = 0, .dst_off = 0, .len = REGION }, 1, &plan) == 0, "plan");
	CHECK(nkv_push(good, &(struct nkv_push){ .req_id = 5, .src_region = sid, .dst_region = rid, .plan = plan }) == 0,
	      "push: %s", nkv_last_error());
	CHECK(h_poll_until(se, NKV_EV_PUSH_DONE, 1, 10, got, 8, &ngot) == 1, "good push did not complete");
	CHECK(ngot >= 1 && got[0].status == 0, "good push failed: %s", got[0].reason);
	CHECK(!memcmp(pool, src, REGION), "good push bytes differ");

	/* A listener with another secret: the connector refuses it and says so. */
	{
		struct nkv_conn *c2;
		o.secret = "another-secret";
		nkv_plan_free(plan);
		nkv_conn_close(good);
		h_stop(&rp);
		nkv_engine_destroy(rp.e);
		memset(&rp, 0, sizeof(rp));
		rp.e = bad;
		CHECK(nkv_listen(bad, "127.0.0.1:0", &port) == 0, "listen: %s", nkv_last_error());
		h_start(&rp);
		snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
		rc = nkv_connect(se, addr, &c2);
		CHECK(rc == -EACCES && strstr(nkv_last_error(), "failed to prove"), "impostor listener: %d %s", rc,
		      nkv_last_error());
		CHECK(h_wait(&rp, NKV_EV_CONN_UP, 1, 0.3) == 0, "the impostor listener got a connection");
		h_stop(&rp);
	}
	nkv_engine_destroy(se);
	nkv_engine_destroy(bad);
	nkv_engine_destroy(none);
	if (fails)
		fprintf(stderr, "%d check(s) failed\n", fails);
	return fails ? 1 : 0;
}
