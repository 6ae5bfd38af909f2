/*
 * A peer sending bad headers: each bad connection is closed with a reason,
 * nothing is written outside (or even inside) the region, and a good
 * connection made before them keeps working.
 */
#include "raw_peer.h"

#include <errno.h>

#define REGION (1u << 20)

static uint16_t port;
static struct h_peer rp;
static int downs;

static struct nkv_wire_hdr hdr(uint16_t type)
{
	struct nkv_wire_hdr h = { .magic = NKV_WIRE_MAGIC, .version = NKV_WIRE_VERSION, .type = type };
	return h;
}

/* Connects and says a valid hello for a one-stream connection; reads the region list. */
static int raw_hello(uint64_t token)
{
	int fd = h_raw_connect(port);
	char why[300];
	int rc = raw_handshake(fd, "", token, 0, 1, why, sizeof(why));

	CHECK(rc == 0, "handshake: %d %s", rc, why);
	CHECK(h_wait(&rp, NKV_EV_CONN_UP, 1 + (int)token, 5) >= 1 + (int)token, "no CONN_UP");
	return fd;
}

/* The engine must close fd (we see EOF) and report why. */
static void expect_closed(int fd, const char *reason_has, const char *what)
{
	char b[400];
	struct nkv_wire_hdr eh;
	ssize_t n = recv(fd, &eh, sizeof(eh), MSG_WAITALL);

	/* The reason comes first, as an ERROR, then the close. */
	if (n == sizeof(eh)) {
		CHECK(eh.type == NKV_W_ERROR && eh.len < sizeof(b), "%s: type %u instead of an error", what, eh.type);
		n = recv(fd, b, eh.len < sizeof(b) - 1 ? eh.len : sizeof(b) - 1, MSG_WAITALL);
		b[n > 0 ? n : 0] = 0;
		if (reason_has)
			CHECK(strstr(b, reason_has), "%s: the peer was told '%s', lacking '%s'", what, b, reason_has);
		n = recv(fd, b, sizeof(b), 0);
	}
	CHECK(n == 0 || (n < 0 && errno == ECONNRESET), "%s: connection not closed (recv %zd, %s)", what, n,
	      strerror(errno));
	close(fd);
	if (reason_has) {
		struct nkv_event ev;
		downs++;
		CHECK(h_wait(&rp, NKV_EV_CONN_DOWN, downs, 5) >= downs, "%s: no CONN_DOWN", what);
		if (h_find(&rp, NKV_EV_CONN_DOWN, downs - 1, &ev))
			CHECK(strstr(ev.reason, reason_has) && ev.status < 0, "%s: reason '%s' lacks '%s'", what,
			      ev.reason, reason_has);
	}
}

/* The receive report for request req_id, waiting up to 5 s. */
static bool find_recv(uint64_t req_id, struct nkv_event *out)
{
	for (double end = nkv_now_s() + 5; nkv_now_s() < end; usleep(2000))
		for (int i = 0; h_find(&rp, NKV_EV_RECV, i, out); i++)
			if (out->req_id == req_id)
				return true;
	return false;
}

static void send_bad(uint64_t token, struct nkv_wire_hdr h, size_t hdr_bytes, const char *reason_has, const char *what)
{
	int fd = raw_hello(token);
	char payload[4096];

	memset(payload, 0xEE, sizeof(payload));
	CHECK(send(fd, &h, hdr_bytes, MSG_NOSIGNAL) == (ssize_t)hdr_bytes, "send");
	if (hdr_bytes == sizeof(h))
		send(fd, payload, sizeof(payload), MSG_NOSIGNAL);
	else
		shutdown(fd, SHUT_WR); /* truncated header: the peer goes away */
	expect_closed(fd, reason_has, what);
}

int main(void)
{
	struct nkv_engine_opts o = { .backend = NKV_BACKEND_TCP, .streams = 2 };
	struct nkv_engine *se, *re;
	struct nkv_conn *good;
	struct nkv_plan *plan;
	struct nkv_event got[8];
	uint32_t rid, sid;
	uint8_t *region, *src;
	char addr[64];
	int ngot = 0, fd;
	uint64_t token = 0;

	setenv("NKV_QUIET", "1", 1);
	if (nkv_engine_create(&o, &re) || nkv_engine_create(&o, &se) ||
	    nkv_region_alloc(re, NKV_MEM_HOST, REGION, NULL, &rid, (void **)&region) ||
	    nkv_region_alloc(se, NKV_MEM_HOST, REGION, NULL, &sid, (void **)&src) || nkv_listen(re, "127.0.0.1:0", &port)) {
		fprintf(stderr, "setup: %s\n", nkv_last_error());
		return 1;
	}
	memset(region, 0x5A, REGION);
	h_fill(src, REGION, 3);
	rp.e = re;
	h_start(&rp);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	if (nkv_connect(se, addr, &good)) {
		fprintf(stderr, "connect: %s\n", nkv_last_error());
		return 1;
	}
	CHECK(h_wait(&rp, NKV_EV_CONN_UP, 1, 5) == 1, "good connection not up");
	token = 1;

	/* Not a netkv peer at all: dropped before any connection exists. */
	fd = h_raw_connect(port);
	CHECK(send(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n0123456789012345678901", 48, 0) == 48, "send");
	expect_closed(fd, NULL, "garbage first message");
	/* A hello with a stream count of 0. */
	fd = h_raw_connect(port);
	{
		struct nkv_wire_hdr h = hdr(NKV_W_HELLO);
		h.offset = 999;
		CHECK(send(fd, &h, sizeof(h), 0) == sizeof(h), "send");
	}
	expect_closed(fd, NULL, "hello with zero streams");

	struct nkv_wire_hdr h = hdr(NKV_W_DATA);
	h.region = rid;
	h.req_id = 1;
	h.len = 4096;
	h.total = 4096;
	h.offset = REGION - 100; /* 4096 bytes from here would run past the end */
	send_bad(token, h, sizeof(h), "outside region", "range past the end");
	token++;
	h.offset = UINT64_MAX - 10; /* offset + len wraps */
	send_bad(token, h, sizeof(h), "outside region", "wrapping offset");
	token++;
	h.offset = 0;
	h.region = 77;
	send_bad(token, h, sizeof(h), "not registered", "unknown region");
	token++;
	h.region = rid;
	h.magic = 0xdeadbeef;
	send_bad(token, h, sizeof(h), "bad header magic", "bad magic");
	token++;
	h.magic = NKV_WIRE_MAGIC;
	h.version = 9;
	send_bad(token, h, sizeof(h), "protocol version", "bad version");
	token++;
	h.version = NKV_WIRE_VERSION;
	h.total = 100; /* range longer than its request */
	send_bad(token, h, sizeof(h), "more bytes than", "range longer than request");
	token++;
	h.total = 4096;
	h.type = 42;
	send_bad(token, h, sizeof(h), "unexpected message type", "unknown type");
	token++;
	h.type = NKV_W_SUMS;
	h.len = 17; /* not a whole number of checksums */
	send_bad(token, h, sizeof(h), "malformed", "bad checksum list");
	token++;
	/* Scatter messages (DATAV): a bad count, an entry outside the region,
	 * entries that do not add up to the announced payload. */
	h = hdr(NKV_W_DATAV);
	h.region = rid;
	h.req_id = 2;
	h.total = 8192;
	h.len = 8192;
	h.offset = 0;
	send_bad(token, h, sizeof(h), "vector of 0 ranges", "empty vector");
	token++;
	h.offset = NKV_WIRE_MAX_VEC + 1;
	send_bad(token, h, sizeof(h), "vector of 65 ranges", "oversized vector");
	token++;
	{
		struct {
			struct nkv_wire_hdr h;
			struct nkv_wire_vent v[2];
		} m = { .h = hdr(NKV_W_DATAV) };
		m.h.region = rid;
		m.h.req_id = 3;
		m.h.total = m.h.len = 8192;
		m.h.offset = 2;
		m.v[0] = (struct nkv_wire_vent){ 0, 4096 };
		m.v[1] = (struct nkv_wire_vent){ REGION - 2048, 4096 }; /* runs 2 KiB past the end */
		int f = raw_hello(token++);
		CHECK(send(f, &m, sizeof(m), 0) == sizeof(m), "send");
		expect_closed(f, "vector entry 1 [1046528, +4096) outside region", "vector entry past the end");
		m.v[1] = (struct nkv_wire_vent){ 8192, 2048 }; /* 6 KiB, header says 8 KiB */
		f = raw_hello(token++);
		CHECK(send(f, &m, sizeof(m), 0) == sizeof(m), "send");
		expect_closed(f, "add up to 6144 bytes, header says 8192", "vector sum mismatch");
	}
	h = hdr(NKV_W_DATA);
	send_bad(token, h, 20, "truncated header (20 of 48", "truncated header");
	token++;
	h.len = 4096;
	h.total = 8192;
	h.region = rid;
	{ /* a valid range whose peer dies mid-payload: dropped and reported */
		int f = raw_hello(token);
		CHECK(send(f, &h, sizeof(h), 0) == sizeof(h), "send");
		CHECK(send(f, src, 1000, 0) == 1000, "send");
		shutdown(f, SHUT_WR);
		expect_closed(f, "mid-range (1000 of 4096", "peer gone mid-range");
		struct nkv_event ev;
		CHECK(find_recv(0, &ev), "no dropped-request report");
		CHECK(ev.status == -ECONNRESET && strstr(ev.reason, "dropped partial request 0: 0 of 8192"), "%d %s",
		      ev.status, ev.reason);
	}

	/* Nothing landed anywhere but that last, legitimate range's 1000 bytes. */
	CHECK(!memcmp(region, src, 1000), "the valid partial range was not placed");
	for (uint32_t i = 1000; i < REGION; i++)
		if (region[i] != 0x5A) {
			CHECK(0, "byte %u of the region was written by a rejected peer", i);
			break;
		}

	/* The good connection still works. */
	CHECK(nkv_plan_build_raw(&(struct nkv_range){ .src_off = 0, .dst_off = 0, .len = REGION }, 1, &plan) == 0, "plan");
	CHECK(nkv_push(good, &(struct nkv_push){ .req_id = 5, .src_region = sid, .dst_region = rid, .plan = plan }) == 0,
	      "push: %s", nkv_last_error());
	CHECK(h_poll_until(se, NKV_EV_PUSH_DONE, 1, 10, got, 8, &ngot) == 1, "good push did not complete");
	CHECK(ngot >= 1 && got[0].status == 0, "good push failed: %s", got[0].reason);
	CHECK(!memcmp(region, src, REGION), "good push bytes differ");
	struct nkv_event gev;
	CHECK(find_recv(5, &gev) && gev.status == 0 && gev.bytes == REGION, "no receive notification for the good push");
	nkv_plan_free(plan);
	nkv_conn_close(good);
	h_stop(&rp);
	nkv_engine_destroy(se);
	nkv_engine_destroy(re);
	if (fails)
		fprintf(stderr, "%d check(s) failed\n", fails);
	return fails ? 1 : 0;
}
