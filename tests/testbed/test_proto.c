/* Control protocol: round trips of every message, one clear error per bad
 * input, and seeds + mutations + random garbage through the decoder (the
 * same corpus the libFuzzer target starts from). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "netkv_proto.h"
#include "nkv_util.h"
#include "proto_seeds.h"

static void encode(const struct nkv_msg *m, struct nkv_buf *b)
{
	b->len = 0;
	int rc = nkv_msg_encode(m, b);
	if (rc)
		fail_msg("encode %s: %s", nkv_msg_type_name(m->type), nkv_last_error());
}

static void test_round_trip(void **st)
{
	(void)st;
	for (int t = 1; t < NKV_MSG__COUNT; t++) {
		struct nkv_msg m, d;
		struct nkv_buf b = { 0 };
		seed_msg(t, &m);
		encode(&m, &b);
		size_t used;
		/* Every strict prefix asks for more bytes, never errors. */
		for (size_t n = 0; n < b.len; n++) {
			assert_int_equal(nkv_msg_decode(b.p, n, &d, &used), 0);
		}
		assert_int_equal(nkv_msg_decode(b.p, b.len, &d, &used), 1);
		assert_int_equal(used, b.len);
		assert_int_equal(d.type, t);
		assert_int_equal(d.req, m.req);
		assert_int_equal(d.nids, m.nids);
		if (m.nids)
			assert_memory_equal(d.ids, m.ids, m.nids * 8);
		assert_int_equal(d.nblocks, m.nblocks);
		if (m.nblocks)
			assert_memory_equal(d.blocks, m.blocks, m.nblocks * 4);
		assert_string_equal(d.name, m.name);
		assert_string_equal(d.addr, m.addr);
		assert_string_equal(d.text ? d.text : "", m.text ? m.text : "");
		assert_memory_equal(d.t, m.t, sizeof(m.t));
		assert_int_equal(d.status, m.status);
		assert_int_equal(d.kv_bpt, m.kv_bpt);
		nkv_msg_clear(&d);
		nkv_msg_clear(&m);
		nkv_buf_free(&b);
	}
}

/* Decode b and expect an error whose text contains `want`. */
static void expect_bad(const struct nkv_buf *b, const char *want)
{
	struct nkv_msg d;
	size_t used;
	int rc = nkv_msg_decode(b->p, b->len, &d, &used);
	if (rc >= 0)
		fail_msg("decoded (rc %d), expected an error with '%s'", rc, want);
	if (!strstr(nkv_last_error(), want))
		fail_msg("error '%s' does not mention '%s'", nkv_last_error(), want);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void test_bad_frames(void **st)
{
	(void)st;
	struct nkv_msg m;
	struct nkv_buf b = { 0 };
	seed_msg(NKV_MSG_SUBMIT, &m);

	encode(&m, &b);
	b.p[0] = 'X';
	expect_bad(&b, "bad magic");

	encode(&m, &b);
	b.p[4] = 9;
	expect_bad(&b, "protocol version 9");

	encode(&m, &b);
	b.p[6] = 99;
	expect_bad(&b, "unknown message type 99");

	encode(&m, &b);
	put32(b.p + 8, NKV_PROTO_MAX_PAYLOAD + 1);
	expect_bad(&b, "exceeds");

	/* Length one short of the fields: the last id is cut. */
	encode(&m, &b);
	put32(b.p + 8, (uint32_t)(b.len - NKV_PROTO_HDR - 1));
	b.len--;
	expect_bad(&b, "payload ends inside field ids");

	/* Trailing bytes. */
	encode(&m, &b);
	b.p[b.len++] = 0;
	put32(b.p + 8, (uint32_t)(b.len - NKV_PROTO_HDR));
	expect_bad(&b, "1 trailing bytes");

	/* Semantic checks: input_len 0, too many ids, an id count beyond the limit. */
	encode(&m, &b);
	put32(b.p + NKV_PROTO_HDR + 8, 0);
	expect_bad(&b, "input_len 0");
	encode(&m, &b);
	put32(b.p + NKV_PROTO_HDR + 8, 512); /* 1 block, 5 ids */
	expect_bad(&b, "5 hash ids for 512 input tokens");
	encode(&m, &b);
	put32(b.p + NKV_PROTO_HDR + 16, 0xfffffff0u);
	expect_bad(&b, "ids count 4294967280 exceeds");
	nkv_msg_clear(&m);

	/* REGISTER: bad role, string with a control byte, oversize string. */
	seed_msg(NKV_MSG_REGISTER, &m);
	encode(&m, &b);
	b.p[NKV_PROTO_HDR] = 7;
	expect_bad(&b, "role 7");
	encode(&m, &b);
	b.p[NKV_PROTO_HDR + 3] = '\n'; /* first byte of the token */
	expect_bad(&b, "token has a non-printable byte 0x0a");
	encode(&m, &b);
	b.p[NKV_PROTO_HDR + 1] = 200; /* token length 200 */
	expect_bad(&b, "token is 200 bytes, at most 64");
	m.kv_blocks = 0;
	assert_int_equal(nkv_msg_encode(&m, &b), -EINVAL); /* never sent either */
	nkv_msg_clear(&m);

	/* Times must be finite and >= 0; heartbeat counts consistent. */
	seed_msg(NKV_MSG_PREFILL_DONE, &m);
	encode(&m, &b);
	memset(b.p + NKV_PROTO_HDR + 12, 0xff, 8); /* t[0] = NaN */
	expect_bad(&b, "t[0]");
	nkv_msg_clear(&m);
	seed_msg(NKV_MSG_HEARTBEAT, &m);
	m.nadd = 6;
	assert_true(nkv_msg_encode(&m, &b) < 0);
	assert_non_null(strstr(nkv_last_error(), "nadd 6 exceeds the 5"));
	nkv_msg_clear(&m);
	seed_msg(NKV_MSG_ERROR, &m);
	m.code = 0;
	assert_true(nkv_msg_encode(&m, &b) < 0);
	nkv_msg_clear(&m);
	nkv_buf_free(&b);
}

/* Two frames in one buffer, decoded one after the other. */
static void test_stream(void **st)
{
	(void)st;
	struct nkv_msg a, c, d;
	struct nkv_buf b = { 0 };
	seed_msg(NKV_MSG_HEARTBEAT, &a);
	seed_msg(NKV_MSG_RECORD, &c);
	assert_int_equal(nkv_msg_encode(&a, &b), 0);
	assert_int_equal(nkv_msg_encode(&c, &b), 0);
	size_t used, off = 0;
	assert_int_equal(nkv_msg_decode(b.p, b.len, &d, &used), 1);
	assert_int_equal(d.type, NKV_MSG_HEARTBEAT);
	assert_int_equal(d.nadd, 3);
	off += used;
	nkv_msg_clear(&d);
	assert_int_equal(nkv_msg_decode(b.p + off, b.len - off, &d, &used), 1);
	assert_int_equal(d.type, NKV_MSG_RECORD);
	assert_string_equal(d.text, "decode agent h0g1 lost");
	assert_int_equal(off + used, b.len);
	nkv_msg_clear(&d);
	nkv_msg_clear(&a);
	nkv_msg_clear(&c);
	nkv_buf_free(&b);
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* Run the decoder the way a connection does: frame after frame until error or need-more. */
static int drain(const uint8_t *p, size_t len)
{
	size_t off = 0;
	int frames = 0;
	for (;;) {
		struct nkv_msg d;
		size_t used;
		int rc = nkv_msg_decode(p + off, len - off, &d, &used);
		if (rc <= 0) {
			if (rc < 0)
				assert_true(nkv_last_error()[0] != 0);
			return frames;
		}
		assert_true(used >= NKV_PROTO_HDR && used <= len - off);
		/* Whatever decodes must encode again to the same bytes. */
		struct nkv_buf b = { 0 };
		assert_int_equal(nkv_msg_encode(&d, &b), 0);
		assert_int_equal(b.len, used);
		assert_memory_equal(b.p, p + off, used);
		nkv_buf_free(&b);
		nkv_msg_clear(&d);
		off += used;
		frames++;
	}
}

static void test_garbage(void **st)
{
	(void)st;
	uint8_t buf[4096];
	int decoded = 0;
	/* Mutations of each seed: flipped bytes, truncations, spliced lengths. */
	for (int t = 1; t < NKV_MSG__COUNT; t++) {
		struct nkv_msg m;
		struct nkv_buf b = { 0 };
		seed_msg(t, &m);
		encode(&m, &b);
		for (int i = 0; i < 3000; i++) {
			size_t n = b.len;
			memcpy(buf, b.p, n);
			int flips = 1 + (int)(next_rand() % 4);
			for (int f = 0; f < flips; f++)
				buf[next_rand() % n] ^= (uint8_t)(1u << (next_rand() % 8));
			if (next_rand() % 4 == 0)
				n = next_rand() % (n + 1);
			decoded += drain(buf, n);
		}
		nkv_msg_clear(&m);
		nkv_buf_free(&b);
	}
	/* Pure random bytes, with and without a valid header in front. */
	for (int i = 0; i < 20000; i++) {
		size_t n = next_rand() % sizeof(buf);
		for (size_t k = 0; k < n; k++)
			buf[k] = (uint8_t)next_rand();
		if (i % 2 && n >= NKV_PROTO_HDR) {
			put32(buf, NKV_PROTO_MAGIC);
			buf[4] = 1, buf[5] = 0;
			buf[6] = (uint8_t)(1 + next_rand() % (NKV_MSG__COUNT - 1)), buf[7] = 0;
			put32(buf + 8, (uint32_t)(next_rand() % (n - NKV_PROTO_HDR + 1)));
		}
		decoded += drain(buf, n);
	}
	/* Some mutations keep a frame valid (a flipped id, a changed time); most do not. */
	assert_true(decoded > 0);
	print_message("garbage: %d frames decoded and re-encoded identically\n", decoded);
}

/* A connection's input buffer stops at inmax (the daemon's 4 KiB before REGISTER). */
static void test_conn_inmax(void **st)
{
	(void)st;
	int sv[2];
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct nkv_pconn c;
	nkv_pconn_init(&c, sv[0]);
	c.inmax = 4096;
	static uint8_t junk[10000];
	assert_int_equal(write(sv[1], junk, sizeof(junk)), (ssize_t)sizeof(junk));
	assert_int_equal(nkv_pconn_read(&c), 0);
	assert_int_equal(c.inlen, 4096);
	assert_true(c.incap <= 4096);
	assert_int_equal(nkv_pconn_read(&c), 0); /* full: nothing more read */
	assert_int_equal(c.inlen, 4096);
	nkv_pconn_close(&c);
	close(sv[1]);
}

/* An ERROR sent just before the close reaches the other side ahead of the close,
 * through recv_wait and through a send_wait that fails on the closed socket. */
static void test_conn_error_before_close(void **st)
{
	(void)st;
	for (int via_send = 0; via_send < 2; via_send++) {
		int sv[2];
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
		struct nkv_pconn c;
		nkv_pconn_init(&c, sv[0]);
		struct nkv_msg e, m;
		nkv_msg_init(&e, NKV_MSG_ERROR);
		e.code = EACCES;
		assert_int_equal(nkv_msg_set_text(&e, "bad token"), 0);
		struct nkv_buf b = { 0 };
		encode(&e, &b);
		nkv_msg_clear(&e);
		assert_int_equal(write(sv[1], b.p, b.len), (ssize_t)b.len);
		nkv_buf_free(&b);
		close(sv[1]);
		if (via_send) {
			nkv_msg_init(&m, NKV_MSG_STATUS_REQ);
			int rc = nkv_pconn_send_wait(&c, &m);
			assert_int_equal(rc, -EACCES);
			assert_non_null(strstr(nkv_last_error(), "refused: bad token"));
		} else {
			assert_int_equal(nkv_pconn_recv_wait(&c, &m, 2), 0);
			assert_int_equal(m.type, NKV_MSG_ERROR);
			assert_string_equal(m.text, "bad token");
			nkv_msg_clear(&m);
			assert_int_equal(nkv_pconn_recv_wait(&c, &m, 2), -ECONNRESET);
		}
		nkv_pconn_close(&c);
	}
}

static int sockopt(int fd, int level, int name)
{
	int v = -1;
	socklen_t l = sizeof(v);
	assert_int_equal(getsockopt(fd, level, name, &v, &l), 0);
	return v;
}

/* Both ends of a control connection get keepalive and TCP_USER_TIMEOUT from
 * the dead-peer deadline (the default, then the one a scheduler sets). */
static void test_conn_keepalive(void **st)
{
	(void)st;
	for (int k = 0; k < 2; k++) {
		double dead = k ? 3 : NKV_PROTO_DEAD_S;
		if (k)
			nkv_proto_set_dead_s(dead);
		uint16_t port = 0;
		int lfd = nkv_proto_listen("127.0.0.1:0", &port);
		assert_true(lfd >= 0);
		char addr[32];
		snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
		int cfd = nkv_proto_connect(addr, 2), afd = -1;
		assert_true(cfd >= 0);
		for (int i = 0; i < 200 && afd < 0; i++, usleep(10000))
			afd = accept(lfd, NULL, NULL);
		assert_true(afd >= 0);
		struct nkv_pconn a, c;
		nkv_pconn_init(&c, cfd);
		nkv_pconn_init(&a, afd);
		for (int fd = cfd, n = 0; n < 2; n++, fd = afd) {
			assert_int_equal(sockopt(fd, SOL_SOCKET, SO_KEEPALIVE), 1);
			assert_int_equal(sockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE), (int)(dead / 2));
			assert_int_equal(sockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL), dead / 6 >= 1 ? (int)(dead / 6) : 1);
			assert_int_equal(sockopt(fd, IPPROTO_TCP, TCP_KEEPCNT), 3);
			assert_int_equal(sockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT), (int)(dead * 1000));
		}
		nkv_pconn_close(&a);
		nkv_pconn_close(&c);
		close(lfd);
	}
	nkv_proto_set_dead_s(0); /* back to the default */
}

/* A listener that never accepts, its backlog full: the kernel drops further
 * SYNs, and a blocking connect would wait minutes. nkv_proto_connect gives up
 * at its deadline (at least 1 s) with ETIMEDOUT. */
static void test_connect_deadline(void **st)
{
	(void)st;
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	assert_true(lfd >= 0);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sl), 0);
	assert_int_equal(listen(lfd, 0), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
	int fill[8];
	for (int i = 0; i < 8; i++) { /* more than the queue holds */
		fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		connect(fill[i], (struct sockaddr *)&sa, sizeof(sa));
	}
	usleep(100000);
	char addr[32];
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(sa.sin_port));
	double t0 = nkv_now_s();
	int fd = nkv_proto_connect(addr, 0.2);
	double dt = nkv_now_s() - t0;
	if (fd >= 0)
		close(fd); /* this kernel queued it after all: only the time is checked */
	else
		assert_int_equal(fd, -ETIMEDOUT);
	assert_true(dt < 3.0);
	for (int i = 0; i < 8; i++)
		close(fill[i]);
	close(lfd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_bad_frames),
		cmocka_unit_test(test_stream),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_conn_inmax),
		cmocka_unit_test(test_conn_error_before_close),
		cmocka_unit_test(test_conn_keepalive),
		cmocka_unit_test(test_connect_deadline),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
