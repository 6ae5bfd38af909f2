/* Test helper: a raw socket speaking the TCP backend's handshake (wire.h),
 * written from the wire-format description with nettle's HMAC-SHA256, so a
 * test can play a hostile or broken peer after (or instead of) a valid
 * handshake. */
#ifndef NKV_TEST_RAW_PEER_H
#define NKV_TEST_RAW_PEER_H

#include "harness.h"
#include "../../transfer/wire.h"

#include <errno.h>
#include <nettle/hmac.h>
#include <sys/random.h>

static inline void raw_mac(const char *secret, const char *label, const uint8_t *na, const uint8_t *np, uint64_t token,
			   uint32_t idx, uint32_t n, uint8_t *out)
{
	struct hmac_sha256_ctx ctx;
	uint8_t tail[16];

	memcpy(tail, &token, 8);
	memcpy(tail + 8, &idx, 4);
	memcpy(tail + 12, &n, 4);
	hmac_sha256_set_key(&ctx, strlen(secret), (const uint8_t *)secret);
	hmac_sha256_update(&ctx, strlen(label), (const uint8_t *)label);
	hmac_sha256_update(&ctx, NKV_WIRE_NONCE, na);
	hmac_sha256_update(&ctx, NKV_WIRE_NONCE, np);
	hmac_sha256_update(&ctx, sizeof(tail), tail);
	hmac_sha256_digest(&ctx, NKV_WIRE_MAC, out);
}

/* recv(MSG_WAITALL) that goes on after a signal: len bytes, or what came before EOF/error. */
static inline ssize_t raw_recv_all(int fd, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = recv(fd, (char *)buf + got, len - got, MSG_WAITALL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return got ? (ssize_t)got : n;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

static inline struct nkv_wire_hdr raw_hdr(uint16_t type)
{
	struct nkv_wire_hdr h = { .magic = NKV_WIRE_MAGIC, .version = NKV_WIRE_VERSION, .type = type };
	return h;
}

/* Reads the engine's answer after a HELLO or AUTH: an ERROR's reason into
 * why (returns its status), else 0 with the header in *h (payload unread). */
static inline int raw_answer(int fd, struct nkv_wire_hdr *h, char *why, size_t wlen)
{
	ssize_t got;

	why[0] = 0;
	if ((got = raw_recv_all(fd, h, sizeof(*h))) != sizeof(*h)) {
		snprintf(why, wlen, "no answer (recv %zd: %s)", got, got < 0 ? strerror(errno) : "closed");
		return -ECONNRESET;
	}
	if (h->type == NKV_W_ERROR) {
		size_t n = h->len < wlen - 1 ? h->len : wlen - 1;
		if (raw_recv_all(fd, why, n) != (ssize_t)n)
			n = 0;
		why[n] = 0;
		return (int)(int64_t)h->offset;
	}
	return 0;
}

/* After a refusal: the engine's ERROR (its status, the reason in why), then
 * the close. */
static inline int raw_refused(int fd, char *why, size_t wlen)
{
	struct nkv_wire_hdr h;
	int rc = raw_answer(fd, &h, why, wlen);
	char b[64];

	if (!rc)
		snprintf(why, wlen, "(no error, message type %u)", h.type);
	CHECK(recv(fd, b, sizeof(b), 0) <= 0, "not closed after the error");
	return rc;
}

/* The whole handshake for stream idx of n with the given secret; on
 * success the region list is read and 0 returned. Otherwise the ERROR's
 * status (<0) with its reason in why, or -EBADMSG if the engine's own
 * proof was wrong (why says so). */
static inline int raw_handshake(int fd, const char *secret, uint64_t token, uint32_t idx, uint32_t n, char *why,
				size_t wlen)
{
	struct nkv_wire_hdr h = raw_hdr(NKV_W_HELLO);
	uint8_t na[NKV_WIRE_NONCE], pay[NKV_WIRE_NONCE + NKV_WIRE_MAC], want[NKV_WIRE_MAC], mac[NKV_WIRE_MAC];
	char adv[4096 * 24];
	int rc;

	if (getrandom(na, sizeof(na), 0) != sizeof(na))
		return -EIO;
	h.offset = token;
	h.total = (uint64_t)idx << 32 | n;
	h.len = NKV_WIRE_NONCE;
	if (send(fd, &h, sizeof(h), MSG_NOSIGNAL) != sizeof(h) || send(fd, na, sizeof(na), MSG_NOSIGNAL) != sizeof(na))
		return -EPIPE;
	if ((rc = raw_answer(fd, &h, why, wlen)))
		return rc;
	if (h.type != NKV_W_CHALLENGE || h.len != sizeof(pay) || raw_recv_all(fd, pay, sizeof(pay)) != sizeof(pay)) {
		snprintf(why, wlen, "no challenge (type %u)", h.type);
		return -EPROTO;
	}
	raw_mac(secret, NKV_WIRE_LABEL_LISTENER, na, pay, token, idx, n, want);
	if (memcmp(want, pay + NKV_WIRE_NONCE, NKV_WIRE_MAC)) {
		snprintf(why, wlen, "the engine's proof does not match");
		return -EBADMSG;
	}
	raw_mac(secret, NKV_WIRE_LABEL_CONNECTOR, na, pay, token, idx, n, mac);
	h = raw_hdr(NKV_W_AUTH);
	h.offset = token;
	h.total = (uint64_t)idx << 32 | n;
	h.len = NKV_WIRE_MAC;
	if (send(fd, &h, sizeof(h), MSG_NOSIGNAL) != sizeof(h) || send(fd, mac, sizeof(mac), MSG_NOSIGNAL) != sizeof(mac))
		return -EPIPE;
	if ((rc = raw_answer(fd, &h, why, wlen)))
		return rc;
	if (h.type != NKV_W_ADVERT || h.len > sizeof(adv) || raw_recv_all(fd, adv, h.len) != (ssize_t)h.len) {
		snprintf(why, wlen, "no region list (type %u)", h.type);
		return -EPROTO;
	}
	return 0;
}

#endif
