/*
 * Verbs backend: connections with librdmacm. One rdma_cm id (and RC QP) per
 * stream; the QPs of a connection share a CQ and are grouped on the passive
 * side by the token in the connect private data.
 *
 * Every QP proves the engines' shared data-plane secret both ways before the
 * listener tells anything (version 3; the secret never crosses the wire, no
 * secret = the empty secret, as over TCP):
 *   connect request  private data carries Na (32 random bytes);
 *   accept           carries Np and MACp = HMAC-SHA256(secret,
 *                    VB_LABEL_LISTENER || T), and no region descriptors;
 *   AUTH             connector -> listener, the QP's first SEND, once MACp
 *                    checked out: MACa = HMAC-SHA256(secret, VB_LABEL_CONNECTOR
 *                    || T) cut to 24 bytes (it must fit the 32-byte receive
 *                    buffers; 192 bits leave nothing to guess);
 *   ADVERT           listener -> connector, only after a good AUTH: one SEND per
 *                    region (id, addr, len, rkey), so no rkey reaches a peer
 *                    that has not proved the secret;
 *   ERROR            either way instead: status and a reason code, then the
 *                    close (nkv_connect returns the reason, the listener logs it).
 *   T = Na || Np || token (8 LE) || QP index (4 LE) || QP count (4 LE), the
 *   MACs of nkv__tcp_auth_mac with the verbs labels.
 * The listener closes a connection not up (every QP authenticated) within
 * opts.handshake_ms, and keeps at most 4 x opts.max_conns QPs pending.
 */
#include "verbs.h"
#include "nkv_util.h"
#include "tcp.h" /* nkv__tcp_auth_mac: the same transcript, other labels */

#include <nettle/memops.h>

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define HANDSHAKE_DEFAULT_MS 10000
#define MAX_PENDING_DEFAULT 256
#define REFUSE_GRACE_NS 1000000000ull /* an ERROR's time to leave before the close */

static uint64_t handshake_ns(const struct nkv_engine *e)
{
	return (uint64_t)(e->opts.handshake_ms ? e->opts.handshake_ms : HANDSHAKE_DEFAULT_MS) * 1000000;
}

static void conn_param_init(struct rdma_conn_param *p, const void *pd, uint8_t pdlen)
{
	memset(p, 0, sizeof(*p));
	p->private_data = pd;
	p->private_data_len = pdlen;
	p->responder_resources = 0; /* we never RDMA READ */
	p->initiator_depth = 0;
	p->retry_count = 7;
	p->rnr_retry_count = 7;     /* infinite: a busy receiver slows us, never fails us */
}

int nkv__vb_qp_create(struct vb_conn *vc, struct vb_qp *q, bool passive)
{
	struct vb_engine *ve = VE(vc->e);
	struct ibv_qp_init_attr a = {
		.send_cq = vc->cq,
		.recv_cq = vc->cq,
		.qp_type = IBV_QPT_RC,
		.sq_sig_all = 0,
		.cap = {
			/* The receiving side sends only credits (receiver staging),
			 * which the sending side takes in a small ring. */
			.max_send_wr = passive ? VB_CREDIT_RING + VB_CTRL_SENDS : q->sq_depth + 2, /* + AUTH, ERROR */
			.max_recv_wr = passive ? VB_RECV_RING : VB_CREDIT_RING,
			.max_send_sge = passive ? 1 : ve->dev.max_sge,
			.max_recv_sge = 1,
			.max_inline_data = sizeof(struct vb_hdr),
		},
	};

	if (rdma_create_qp(q->id, ve->dev.pd, &a))
		return nkv_err(errno, "%s: creating an RC QP (%u send WRs, %u SGEs, %zu inline) failed: %s", ve->dev.name,
			       a.cap.max_send_wr, a.cap.max_send_sge, sizeof(struct vb_hdr), strerror(errno));
	q->qpn = q->id->qp->qp_num;
	return nkv__vb_post_recvs(q, passive ? VB_RECV_RING : VB_CREDIT_RING);
}

static void qp_destroy(struct vb_qp *q)
{
	if (q->id) {
		if (q->id->qp)
			rdma_destroy_qp(q->id);
		rdma_destroy_id(q->id);
		q->id = NULL;
	}
	if (q->rmr)
		ibv_dereg_mr(q->rmr);
	q->rmr = NULL;
	free(q->rbuf);
	q->rbuf = NULL;
}

static struct vb_conn *conn_alloc(struct nkv_engine *e, struct nkv_conn *c, uint32_t nqps)
{
	struct vb_conn *vc = calloc(1, sizeof(*vc));

	if (!vc)
		return NULL;
	vc->qps = calloc(nqps, sizeof(*vc->qps));
	if (!vc->qps) {
		free(vc);
		return NULL;
	}
	vc->c = c;
	vc->e = e;
	vc->nqps = nqps;
	vc->next_seq = 1;
	for (uint32_t i = 0; i < nqps; i++) {
		vc->qps[i].vc = vc;
		vc->qps[i].idx = i;
		vc->qps[i].sq_depth = VB_SQ_DEPTH + 2 <= VE(e)->dev.attr.max_qp_wr ? VB_SQ_DEPTH
										    : (uint32_t)VE(e)->dev.attr.max_qp_wr - 2;
	}
	c->be = vc;
	return vc;
}

static void conn_free(struct vb_conn *vc)
{
	for (uint32_t i = 0; i < vc->nqps; i++)
		qp_destroy(&vc->qps[i]);
	nkv__vb_lend_free(vc); /* after the QPs: the peer can no longer write the slots */
	if (vc->descmr)
		ibv_dereg_mr(vc->descmr);
	free(vc->descbuf);
	if (vc->cq && ibv_destroy_cq(vc->cq))
		nkv__log("%s: ibv_destroy_cq failed: %s", VE(vc->e)->dev.name, strerror(errno));
	while (vc->reqs)
		nkv__vb_req_free(vc, vc->reqs);
	free(vc->rslots);
	free(vc->qps);
	if (vc->c)
		vc->c->be = NULL;
	free(vc);
}

void nkv__vb_conn_fail(struct vb_conn *vc, int status, const char *fmt, ...)
{
	struct nkv_engine *e = vc->e;
	char why[160];
	va_list ap;

	if (vc->failed)
		return;
	vc->failed = true;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (vc->refusing) { /* the refusal's reason, not what its close caused */
		status = vc->fail_status;
		snprintf(why, sizeof(why), "%s", vc->why);
	}
	vc->fail_status = status;
	snprintf(vc->why, sizeof(vc->why), "%s", why);
	/* Every request in flight fails once, then the connection goes down. */
	while (vc->reqs) {
		struct vb_req *r = vc->reqs;
		struct nkv_event ev = { .type = NKV_EV_PUSH_DONE, .status = status, .req_id = r->req_id, .conn = vc->c };
		snprintf(ev.reason, sizeof(ev.reason), "%s", why);
		nkv__emit(e, &ev);
		nkv__vb_req_free(vc, r);
	}
	for (uint32_t i = 0; vc->rslots && i < VB_RSLOTS; i++) {
		struct vb_rslot *s = &vc->rslots[i];
		if (!s->used)
			continue;
		nkv__emitf(e, NKV_EV_RECV, vc->c, s->req_id, status, "request dropped: %u of %u parts arrived before: %s",
			   s->seen, s->nparts, why);
		s->used = false;
	}
	if (vc->c && !vc->c->down && (vc->up_emitted || !vc->c->passive)) {
		vc->c->down = true;
		nkv__emitf(e, NKV_EV_CONN_DOWN, vc->c, 0, status, "%s", why);
	}
	if (vc->c)
		vc->c->down = true;
	for (uint32_t i = 0; i < vc->nqps; i++) {
		vc->qps[i].sig_count = 0; /* their parts are gone */
		vc->qps[i].qhead = vc->qps[i].qtail = NULL;
		vc->qps[i].dhead = vc->qps[i].dtail = NULL;
		vc->qps[i].ends = 0;
	}
	if (status != -ECANCELED)
		nkv__log("%s", why);
	for (uint32_t i = 0; i < vc->nqps; i++)
		if (vc->qps[i].id && vc->qps[i].established)
			rdma_disconnect(vc->qps[i].id);
}

static const char *why_str(uint32_t code)
{
	switch (code) {
	case VB_WHY_PROOF: return "the proof of the data-plane secret did not check out (the two engines hold different "
				  "secrets, or only one of them has one)";
	case VB_WHY_PROTO: return "a malformed handshake message";
	case VB_WHY_REGIONS: return "more regions are registered than a connection advertises (7)";
	case VB_WHY_TIMEOUT: return "the handshake did not finish in time";
	case VB_WHY_BUSY: return "too many connections are still proving the secret";
	case VB_WHY_REQUEST: return "not a netkv verbs version 3 connect request, or one that does not match its "
				    "connection's other QPs";
	case VB_WHY_RESOURCES: return "out of memory, or QP or CQ creation failed";
	default: return "no reason given";
	}
}

/* ---- active side ------------------------------------------------------------ */

static int wait_event(struct rdma_event_channel *ch, struct rdma_cm_id *id, enum rdma_cm_event_type want,
		      uint64_t deadline, struct rdma_cm_event **out)
{
	struct rdma_cm_event *ev;

	for (;;) {
		uint64_t now = nkv_now_ns();
		struct pollfd p = { .fd = ch->fd, .events = POLLIN };
		int ms = now >= deadline ? 0 : (int)((deadline - now) / 1000000) + 1;

		if (poll(&p, 1, ms) <= 0)
			return nkv_err(ETIMEDOUT, "timed out waiting for %s", rdma_event_str(want));
		if (rdma_get_cm_event(ch, &ev))
			return nkv_err(errno, "rdma_get_cm_event: %s", strerror(errno));
		if (ev->id != id) {
			rdma_ack_cm_event(ev);
			continue;
		}
		if (ev->event == want) {
			*out = ev;
			return 0;
		}
		int status = ev->status;
		enum rdma_cm_event_type got = ev->event;
		struct vb_error m = { 0 };
		if (got == RDMA_CM_EVENT_REJECTED && ev->param.conn.private_data && ev->param.conn.private_data_len >= sizeof(m))
			memcpy(&m, ev->param.conn.private_data, sizeof(m));
		uint32_t why = le32toh(m.magic) == VB_ERR_MAGIC ? le32toh(m.code) : 0;
		rdma_ack_cm_event(ev);
		if (got == RDMA_CM_EVENT_REJECTED && why)
			return nkv_err(ECONNREFUSED, "connection rejected by the listener: %s", why_str(why));
		if (got == RDMA_CM_EVENT_REJECTED)
			return nkv_err(ECONNREFUSED, "connection rejected by the peer (status %d: no netkv verbs listener "
				       "there, or it refused the request; its log says why)", status);
		return nkv_err(status < 0 ? -status : EIO, "%s (status %d) while waiting for %s", rdma_event_str(got),
			       status, rdma_event_str(want));
	}
}

static void qp_mac(const struct vb_conn *vc, const struct vb_qp *q, const char *label, uint8_t *out)
{
	nkv__tcp_auth_mac(vc->e, label, q->na, q->np, vc->token, q->idx, vc->nqps, out);
}

static const char *peer_str(const struct vb_qp *q, char *buf, size_t len)
{
	struct sockaddr *sa = q->id ? rdma_get_peer_addr(q->id) : NULL;

	if (!sa || sa->sa_family != AF_INET ||
	    !inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, buf, (socklen_t)len))
		snprintf(buf, len, "?");
	return buf;
}

/* Refuse the connection: tell the peer why on QP q (an ERROR SEND), fail
 * the connection once that left (nkv__vb_ctrl_sent), or after a grace. */
void nkv__vb_refuse(struct vb_conn *vc, struct vb_qp *q, int status, uint32_t code, const char *fmt, ...)
{
	struct vb_error m = { .magic = htole32(VB_ERR_MAGIC), .status = (int32_t)htole32((uint32_t)status),
			      .code = htole32(code) };
	va_list ap;

	if (vc->failed || vc->refusing)
		return;
	va_start(ap, fmt);
	vsnprintf(vc->why, sizeof(vc->why), fmt, ap);
	va_end(ap);
	vc->fail_status = status;
	vc->refusing = true;
	vc->auth_deadline = nkv_now_ns() + REFUSE_GRACE_NS;
	if (!q->id || !q->id->qp || nkv__vb_send_ctrl(q, &m))
		nkv__vb_conn_fail(vc, status, "%s", vc->why);
}

void nkv__vb_ctrl_sent(struct vb_conn *vc, struct vb_qp *q)
{
	if (q->ctrl_out)
		q->ctrl_out--;
	if (vc->refusing && !q->ctrl_out)
		nkv__vb_conn_fail(vc, vc->fail_status, "%s", vc->why);
}

static void conn_up(struct nkv_engine *e, struct vb_conn *vc)
{
	vc->up_emitted = true;
	nkv__vb_describe(e, vc);
	nkv__emitf(e, NKV_EV_CONN_UP, vc->c, 0, 0, "%s, %u QPs", e->desc, vc->nqps);
	nkv__vb_lend_slots(vc); /* after UP: a failure here reads as a DOWN that follows it */
}

/* Listener: q's AUTH checked out; send it the regions, one ADVERT each. */
static void send_adverts(struct vb_conn *vc, struct vb_qp *q)
{
	struct nkv_engine *e = vc->e;
	struct nkv_remote_region *adv = NULL;
	size_t nadv = 0;

	if (nkv__region_adverts(e, &adv, &nadv) || nadv > VB_REP_REGIONS) {
		free(adv);
		return nkv__vb_refuse(vc, q, -E2BIG, VB_WHY_REGIONS, "verbs %s: refused a connection: %zu regions are "
				      "registered, one connection advertises at most %d", VE(e)->dev.name, nadv, VB_REP_REGIONS);
	}
	for (size_t i = 0; i < (nadv ? nadv : 1); i++) {
		struct vb_advert m = { .magic = htole32(VB_ADV_MAGIC), .index = (uint8_t)i, .count = (uint8_t)nadv };
		if (nadv)
			m = (struct vb_advert){ htole32(VB_ADV_MAGIC), htole32(adv[i].id), htole64(adv[i].addr),
						htole64(adv[i].len), htole32(adv[i].rkey), (uint8_t)i, (uint8_t)nadv, 0 };
		if (nkv__vb_send_ctrl(q, &m)) {
			free(adv);
			return nkv__vb_conn_fail(vc, -EIO, "%s", nkv_last_error());
		}
	}
	free(adv);
	q->authed = true;
	if (++vc->nauth == vc->nqps && !vc->up_emitted)
		conn_up(e, vc);
}

/* Connector: an ADVERT on q (QP 0's are the ones kept). */
static int advert_arrived(struct vb_conn *vc, struct vb_qp *q, const struct vb_advert *m)
{
	struct nkv_conn *c = vc->c;

	if (m->index != q->nadv || m->count > VB_REP_REGIONS || (m->count && m->index >= m->count) ||
	    (q->nadv && m->count != q->adv_count))
		return nkv_err(EPROTO, "an ADVERT out of order (%u of %u after %u)", m->index, m->count, q->nadv);
	q->adv_count = m->count;
	if (q->idx == 0 && m->count) {
		if (!c->remote && !(c->remote = calloc(m->count, sizeof(*c->remote))))
			return nkv_err(ENOMEM, "out of memory");
		struct nkv_remote_region *r = &c->remote[m->index];
		*r = (struct nkv_remote_region){ .id = le32toh(m->id), .rkey = le32toh(m->rkey), .addr = le64toh(m->addr),
						 .len = le64toh(m->len) };
		if (!r->len || r->addr + r->len < r->addr)
			return nkv_err(EPROTO, "the peer advertised region %u with a bad range (addr 0x%llx len %llu)", r->id,
				       (unsigned long long)r->addr, (unsigned long long)r->len);
		c->nremote = m->index + 1u;
	}
	if (++q->nadv >= (m->count ? m->count : 1u)) {
		q->authed = true;
		vc->nauth++;
	}
	return 0;
}

/* A handshake message on q (a QP not authenticated yet, or an ERROR). */
void nkv__vb_auth_recv(struct vb_conn *vc, struct vb_qp *q, const void *msg)
{
	const char *dev = VE(vc->e)->dev.name;
	bool passive = vc->c->passive;
	uint32_t magic;
	char peer[64];

	memcpy(&magic, msg, sizeof(magic));
	magic = le32toh(magic);
	if (magic == VB_ERR_MAGIC) {
		const struct vb_error *m = msg;
		int st = (int32_t)le32toh((uint32_t)m->status);
		if (st >= 0 || st < -4095)
			st = -ECONNREFUSED;
		return nkv__vb_conn_fail(vc, st, "verbs %s: refused by the %s %s (QP %u of %u): %s", dev,
					 passive ? "connecting peer" : "listener", peer_str(q, peer, sizeof(peer)),
					 q->idx + 1, vc->nqps, why_str(le32toh(m->code)));
	}
	if (passive) {
		const struct vb_auth *m = msg;
		uint8_t want[VB_MAC];
		if (magic != VB_AUTH_MAGIC)
			return nkv__vb_refuse(vc, q, -EPROTO, VB_WHY_PROTO, "verbs %s: refused a connection from %s (QP %u of "
					      "%u): a message before its proof of the secret", dev,
					      peer_str(q, peer, sizeof(peer)), q->idx + 1, vc->nqps);
		qp_mac(vc, q, VB_LABEL_CONNECTOR, want);
		bool ok = memeql_sec(want, m->mac, VB_AUTH_MAC);
		explicit_bzero(want, sizeof(want));
		if (!ok)
			return nkv__vb_refuse(vc, q, -EACCES, VB_WHY_PROOF, "verbs %s: refused a connection from %s (QP %u of "
					      "%u): its proof of the data-plane secret does not match this engine's (the two "
					      "sides hold different secrets, or only one has one)", dev,
					      peer_str(q, peer, sizeof(peer)), q->idx + 1, vc->nqps);
		return send_adverts(vc, q);
	}
	int rc = magic == VB_ADV_MAGIC ? advert_arrived(vc, q, msg)
				       : nkv_err(EPROTO, "a message (magic 0x%08x) before its regions", magic);
	if (rc)
		nkv__vb_refuse(vc, q, -EPROTO, VB_WHY_PROTO, "verbs %s: the listener %s (QP %u of %u): %s", dev,
			       peer_str(q, peer, sizeof(peer)), q->idx + 1, vc->nqps, nkv_last_error());
}

/* Connector: the accept's private data, the listener's proof. A good one
 * is answered with our AUTH, anything else with an ERROR (the refusal). */
static void check_listener(struct vb_conn *vc, struct vb_qp *q, const void *data, uint8_t len)
{
	const char *dev = VE(vc->e)->dev.name;
	struct vb_rep_pd rep;
	struct vb_auth auth = { .magic = htole32(VB_AUTH_MAGIC) };
	uint8_t mac[VB_MAC];
	char peer[64];

	memset(&rep, 0, sizeof(rep));
	if (!data || len < sizeof(rep))
		return nkv__vb_refuse(vc, q, -EPROTO, VB_WHY_PROTO, "verbs %s: the peer %s accepted without netkv verbs "
				      "version %d private data (%u bytes: an older netkv?)", dev, peer_str(q, peer, sizeof(peer)),
				      VB_VERSION, len);
	memcpy(&rep, data, sizeof(rep));
	if (le32toh(rep.magic) != VB_REP_MAGIC || rep.version != VB_VERSION)
		return nkv__vb_refuse(vc, q, -EPROTO, VB_WHY_PROTO, "verbs %s: the peer %s is not netkv verbs version %d "
				      "(magic 0x%08x version %u)", dev, peer_str(q, peer, sizeof(peer)), VB_VERSION,
				      le32toh(rep.magic), rep.version);
	vc->peer_mtu = le32toh(rep.mtu);
	memcpy(q->np, rep.np, sizeof(q->np));
	qp_mac(vc, q, VB_LABEL_LISTENER, mac);
	bool ok = memeql_sec(mac, rep.mac, VB_MAC);
	if (!ok) {
		explicit_bzero(mac, sizeof(mac));
		return nkv__vb_refuse(vc, q, -EACCES, VB_WHY_PROOF, "verbs %s: the listener %s failed to prove the "
				      "data-plane secret (its MAC does not match: the two sides hold different secrets, or "
				      "only one has one)", dev, peer_str(q, peer, sizeof(peer)));
	}
	qp_mac(vc, q, VB_LABEL_CONNECTOR, mac);
	memcpy(auth.mac, mac, VB_AUTH_MAC);
	explicit_bzero(mac, sizeof(mac));
	if (nkv__vb_send_ctrl(q, &auth))
		nkv__vb_conn_fail(vc, -EIO, "%s", nkv_last_error());
	explicit_bzero(&auth, sizeof(auth));
}

/* Connector: wait (to the deadline) until q has the listener's regions, or
 * the connection failed (a refusal either way, the listener gone). */
static int wait_adverts(struct vb_conn *vc, struct vb_qp *q, struct rdma_event_channel *ch, uint64_t deadline)
{
	char peer[64];

	while (!q->authed && !vc->failed) {
		struct pollfd p = { .fd = ch->fd, .events = POLLIN };
		struct rdma_cm_event *ev;
		uint64_t now = nkv_now_ns();
		if (now >= deadline || (vc->refusing && now >= vc->auth_deadline)) {
			nkv__vb_conn_fail(vc, -ETIMEDOUT, "verbs %s: the listener %s did not answer the handshake of QP %u "
					  "of %u in time", VE(vc->e)->dev.name, peer_str(q, peer, sizeof(peer)), q->idx + 1,
					  vc->nqps);
			break;
		}
		nkv__vb_poll_cq(vc);
		if (vc->failed || q->authed || poll(&p, 1, 1) <= 0 || rdma_get_cm_event(ch, &ev))
			continue;
		enum rdma_cm_event_type t = ev->event;
		rdma_ack_cm_event(ev);
		nkv__vb_poll_cq(vc); /* an ERROR sent before the close comes first */
		nkv__vb_conn_fail(vc, -ECONNRESET, "verbs %s: the listener %s closed QP %u of %u during the handshake "
				  "(%s; its log says why)", VE(vc->e)->dev.name, peer_str(q, peer, sizeof(peer)), q->idx + 1,
				  vc->nqps, rdma_event_str(t));
	}
	return vc->failed ? nkv_err(-vc->fail_status, "%s", vc->why) : 0;
}

static int resolve(const char *host, uint16_t port, struct sockaddr_storage *ss)
{
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *ai;
	char ps[8];
	int rc;

	snprintf(ps, sizeof(ps), "%u", port);
	if ((rc = getaddrinfo(host, ps, &hints, &ai)))
		return nkv_err(EINVAL, "cannot resolve %s: %s (the verbs backend uses IPv4 addresses for RoCE v2)", host,
			       gai_strerror(rc));
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
	return 0;
}

static int connect_qp(struct nkv_engine *e, struct vb_conn *vc, struct vb_qp *q, struct sockaddr_storage *dst,
		      uint64_t deadline)
{
	struct vb_engine *ve = VE(e);
	struct rdma_event_channel *ch;
	struct rdma_cm_event *ev;
	struct sockaddr_in src = { .sin_family = AF_INET };
	struct rdma_conn_param cp;
	struct vb_req_pd req = {
		.magic = htole32(VB_REQ_MAGIC), .version = VB_VERSION, .qp_index = (uint8_t)q->idx,
		.nqps = (uint8_t)vc->nqps, .token = htole64(vc->token),
		.mtu = htole32(nkv__vb_mtu_bytes(ve->dev.port.active_mtu)),
	};
	int rc;

	if (getrandom(q->na, sizeof(q->na), 0) != sizeof(q->na))
		return nkv_err(EIO, "getrandom: no nonce for the handshake");
	memcpy(req.na, q->na, sizeof(req.na));
	if (!(ch = rdma_create_event_channel()))
		return nkv_err(errno, "rdma_create_event_channel: %s", strerror(errno));
	if (rdma_create_id(ch, &q->id, q, RDMA_PS_TCP)) {
		rc = nkv_err(errno, "rdma_create_id: %s", strerror(errno));
		q->id = NULL;
		goto out;
	}
	if (ve->dev.gid_asked)
		inet_pton(AF_INET, ve->dev.gid_ip, &src.sin_addr);
	if (rdma_resolve_addr(q->id, ve->dev.gid_asked ? (struct sockaddr *)&src : NULL, (struct sockaddr *)dst, 2000)) {
		rc = nkv_err(errno, "rdma_resolve_addr: %s", strerror(errno));
		goto out;
	}
	if ((rc = wait_event(ch, q->id, RDMA_CM_EVENT_ADDR_RESOLVED, deadline, &ev)))
		goto out;
	rdma_ack_cm_event(ev);
	if (q->id->verbs != ve->dev.ctx) {
		rc = nkv_err(ENODEV, "the route to the peer goes through %s, but this engine opened %s (pass --device %s)",
			     q->id->verbs ? ibv_get_device_name(q->id->verbs->device) : "no RDMA device", ve->dev.name,
			     q->id->verbs ? ibv_get_device_name(q->id->verbs->device) : "DEV");
		goto out;
	}
	if (rdma_resolve_route(q->id, 2000)) {
		rc = nkv_err(errno, "rdma_resolve_route: %s", strerror(errno));
		goto out;
	}
	if ((rc = wait_event(ch, q->id, RDMA_CM_EVENT_ROUTE_RESOLVED, deadline, &ev)))
		goto out;
	rdma_ack_cm_event(ev);
	if ((rc = nkv__vb_qp_create(vc, q, false)))
		goto out;
	conn_param_init(&cp, &req, sizeof(req));
	if (rdma_connect(q->id, &cp)) {
		rc = nkv_err(errno, "rdma_connect: %s", strerror(errno));
		goto out;
	}
	if ((rc = wait_event(ch, q->id, RDMA_CM_EVENT_ESTABLISHED, deadline, &ev)))
		goto out;
	q->established = true;
	vc->nup++;
	check_listener(vc, q, ev->param.conn.private_data, ev->param.conn.private_data_len);
	rdma_ack_cm_event(ev);
	if ((rc = wait_adverts(vc, q, ch, deadline)))
		goto out;
	/* From here on its events come through the engine's channel. */
	if (rdma_migrate_id(q->id, ve->cm_ch))
		rc = nkv_err(errno, "rdma_migrate_id: %s", strerror(errno));
out:
	if (rc && q->id) {
		if (q->id->qp)
			rdma_destroy_qp(q->id);
		rdma_destroy_id(q->id);
		q->id = NULL;
	}
	rdma_destroy_event_channel(ch);
	return rc ? nkv_err_wrap(rc, "%s QP %u of %u", ve->dev.name, q->idx + 1, vc->nqps) : 0;
}

int nkv__vb_connect(struct nkv_engine *e, const char *host, uint16_t port, struct nkv_conn *c)
{
	struct sockaddr_storage dst;
	struct vb_conn *vc;
	uint64_t deadline = nkv_now_ns() + handshake_ns(e);
	int rc;

	if (e->opts.streams > VB_MAX_QPS)
		return nkv_err(EINVAL, "at most %d QPs per connection", VB_MAX_QPS);
	if ((rc = resolve(host, port, &dst)))
		return rc;
	if (!(vc = conn_alloc(e, c, e->opts.streams)))
		return nkv_err(ENOMEM, "out of memory");
	if (getrandom(&vc->token, sizeof(vc->token), 0) != sizeof(vc->token))
		vc->token = nkv_now_ns() ^ ((uint64_t)getpid() << 32);
	if ((rc = nkv__vb_cq_create(e, vc)))
		goto fail;
	c->down = true; /* until it is up: a failure on the way is nkv_connect's error, not an event */
	for (uint32_t i = 0; i < vc->nqps; i++)
		if ((rc = connect_qp(e, vc, &vc->qps[i], &dst, deadline)))
			goto fail;
	c->down = false;
	nkv__vb_describe(e, vc);
	if (vc->peer_mtu && vc->mtu > vc->peer_mtu)
		nkv__log("path MTU %u is above the peer's port MTU %u", vc->mtu, vc->peer_mtu);
	return 0;
fail:
	for (uint32_t i = 0; i < vc->nqps; i++)
		if (vc->qps[i].id && vc->qps[i].established)
			rdma_disconnect(vc->qps[i].id);
	vc->c = NULL;
	c->be = NULL;
	conn_free(vc);
	return rc;
}

/* ---- passive side -------------------------------------------------------- */

int nkv__vb_listen(struct nkv_engine *e, const char *host, uint16_t port, uint16_t *port_out)
{
	struct vb_engine *ve = VE(e);
	struct sockaddr_storage ss;
	int rc;

	if (ve->listen_id)
		return nkv_err(EBUSY, "this engine is already listening");
	if ((rc = resolve(host, port, &ss)))
		return rc;
	if (rdma_create_id(ve->cm_ch, &ve->listen_id, NULL, RDMA_PS_TCP))
		return nkv_err(errno, "rdma_create_id: %s", strerror(errno));
	if (rdma_bind_addr(ve->listen_id, (struct sockaddr *)&ss)) {
		rc = nkv_err(errno, "rdma_bind_addr %s:%u: %s%s", host, port, strerror(errno),
			     errno == EADDRNOTAVAIL ? " (no RDMA device carries that address)" : "");
		goto fail;
	}
	if (rdma_listen(ve->listen_id, 64)) {
		rc = nkv_err(errno, "rdma_listen: %s", strerror(errno));
		goto fail;
	}
	if (port_out)
		*port_out = ntohs(rdma_get_src_port(ve->listen_id));
	return 0;
fail:
	rdma_destroy_id(ve->listen_id);
	ve->listen_id = NULL;
	return rc;
}

static struct vb_conn *find_pending(struct nkv_engine *e, uint64_t token)
{
	for (struct nkv_conn *c = e->conns; c; c = c->next) {
		struct vb_conn *vc = c->be;
		if (c->passive && vc && !vc->up_emitted && !vc->failed && vc->token == token)
			return vc;
	}
	return NULL;
}

/* QPs of the connections still authenticating: what an unauthenticated
 * peer can make this engine hold (a CQ sized for them, rings per QP). */
static unsigned pending_qps(struct nkv_engine *e)
{
	unsigned n = 0;

	for (struct nkv_conn *c = e->conns; c; c = c->next) {
		struct vb_conn *vc = c->be;
		if (c->passive && vc && !vc->up_emitted && !vc->failed)
			n += vc->nqps;
	}
	return n;
}

/* A QP asks to join: accept it with our proof (Np, MACp) and no regions;
 * they go out once its AUTH checked out (nkv__vb_auth_recv). */
static void on_connect_request(struct nkv_engine *e, struct rdma_cm_event *ev)
{
	struct vb_engine *ve = VE(e);
	struct rdma_cm_id *id = ev->id;
	struct vb_req_pd req;
	struct vb_rep_pd rep = { .magic = htole32(VB_REP_MAGIC), .version = VB_VERSION };
	struct vb_error rej = { .magic = htole32(VB_ERR_MAGIC), .status = (int32_t)htole32((uint32_t)-ECONNREFUSED) };
	unsigned max = e->opts.max_conns ? e->opts.max_conns : MAX_PENDING_DEFAULT;
	struct rdma_conn_param cp;
	struct vb_conn *vc;
	struct nkv_conn *c;
	struct vb_qp *q;
	const char *why;

	memset(&req, 0, sizeof(req));
	if (ev->param.conn.private_data_len >= sizeof(req))
		memcpy(&req, ev->param.conn.private_data, sizeof(req));
	rej.code = htole32(VB_WHY_REQUEST);
	if (le32toh(req.magic) != VB_REQ_MAGIC || req.version != VB_VERSION) {
		why = "a connect request without netkv verbs version 3 private data";
		goto reject;
	}
	if (!req.nqps || req.nqps > VB_MAX_QPS || req.qp_index >= req.nqps) {
		why = "a connect request with a bad QP index or count (at most 64 QPs)";
		goto reject;
	}
	if (id->verbs != ve->dev.ctx) {
		why = "a connect request that arrived on another RDMA device than this engine's";
		goto reject;
	}
	if (!(vc = find_pending(e, le64toh(req.token)))) {
		if (pending_qps(e) + req.nqps > 4 * max) {
			rej.code = htole32(VB_WHY_BUSY);
			why = "a connect request: too many QPs are still proving the secret (4 x opts.max_conns)";
			goto reject;
		}
		rej.code = htole32(VB_WHY_RESOURCES);
		if (!(c = nkv__conn_new(e, true))) {
			why = "a connect request (out of memory)";
			goto reject;
		}
		if (!(vc = conn_alloc(e, c, req.nqps)) || !(vc->rslots = calloc(VB_RSLOTS, sizeof(*vc->rslots))) ||
		    nkv__vb_cq_create(e, vc)) {
			if (vc)
				vc->failed = true; /* freed with the connection by nkv__vb_auth_sweep */
			why = "a connect request: out of memory or CQ creation failed";
			goto reject;
		}
		vc->token = le64toh(req.token);
		vc->peer_mtu = le32toh(req.mtu);
		vc->auth_deadline = nkv_now_ns() + handshake_ns(e);
	}
	if (req.nqps != vc->nqps || vc->qps[req.qp_index].id) {
		rej.code = htole32(VB_WHY_REQUEST);
		why = "a connect request that does not match its connection's other QPs";
		goto reject;
	}
	q = &vc->qps[req.qp_index];
	q->id = id;
	id->context = q;
	if (nkv__vb_qp_create(vc, q, true)) {
		nkv__log("refused a connection: %s", nkv_last_error());
		q->id = NULL;
		rej.code = htole32(VB_WHY_RESOURCES);
		why = "a connect request: QP creation failed";
		goto reject;
	}
	memcpy(q->na, req.na, sizeof(q->na));
	if (getrandom(q->np, sizeof(q->np), 0) != sizeof(q->np)) {
		rdma_destroy_qp(id);
		q->id = NULL;
		why = "a connect request: getrandom gave no nonce";
		goto reject;
	}
	memcpy(rep.np, q->np, sizeof(rep.np));
	qp_mac(vc, q, VB_LABEL_LISTENER, rep.mac);
	rep.mtu = htole32(nkv__vb_mtu_bytes(ve->dev.port.active_mtu));
	conn_param_init(&cp, &rep, sizeof(rep));
	if (rdma_accept(id, &cp)) {
		nkv__log("%s: rdma_accept failed: %s", ve->dev.name, strerror(errno));
		rdma_destroy_qp(id);
		q->id = NULL;
		nkv__vb_conn_fail(vc, -EIO, "%s: rdma_accept failed", ve->dev.name);
		rdma_reject(id, NULL, 0);
		rdma_ack_cm_event(ev);
		rdma_destroy_id(id);
		return;
	}
	rdma_ack_cm_event(ev);
	return;
reject:
	nkv__log("%s: refused %s", ve->dev.name, why);
	rdma_reject(id, &rej, sizeof(rej));
	rdma_ack_cm_event(ev);
	rdma_destroy_id(id);
}

/* Listener: close connections that did not prove the secret in time (an
 * ERROR first, then the close after a grace) and free the ones that failed
 * before they were ever reported up. */
void nkv__vb_auth_sweep(struct nkv_engine *e)
{
	struct vb_engine *ve = VE(e);
	uint64_t now = nkv_now_ns();
	struct nkv_conn *c, *next;

	if (!ve->listen_id || now < ve->next_sweep)
		return;
	ve->next_sweep = now + 50000000; /* 50 ms */
	for (c = e->conns; c; c = next) {
		struct vb_conn *vc = c->be;
		next = c->next;
		if (!c->passive || !vc || vc->up_emitted)
			continue;
		if (!vc->failed && now >= vc->auth_deadline) {
			struct vb_qp *q = NULL;
			char peer[64] = "?";
			for (uint32_t i = 0; i < vc->nqps && !q; i++)
				if (vc->qps[i].id && vc->qps[i].id->qp)
					q = &vc->qps[i];
			if (vc->refusing || !q)
				nkv__vb_conn_fail(vc, -ETIMEDOUT, "verbs %s: closed a connection that did not finish its "
						  "handshake in time", ve->dev.name);
			else
				nkv__vb_refuse(vc, q, -ETIMEDOUT, VB_WHY_TIMEOUT, "verbs %s: refused a connection from %s: "
					       "%u of %u QPs proved the data-plane secret within %llu ms", ve->dev.name,
					       peer_str(q, peer, sizeof(peer)), vc->nauth, vc->nqps,
					       (unsigned long long)(handshake_ns(e) / 1000000));
		}
		if (vc->failed)
			nkv_conn_close(c);
	}
}

/* Drain the engine's rdma_cm channel (non-blocking). */
int nkv__vb_cm_events(struct nkv_engine *e)
{
	struct vb_engine *ve = VE(e);
	struct rdma_cm_event *ev;
	int n = 0;

	for (;;) {
		struct pollfd p = { .fd = ve->cm_ch->fd, .events = POLLIN };
		if (poll(&p, 1, 0) <= 0)
			return n;
		if (rdma_get_cm_event(ve->cm_ch, &ev))
			return n;
		n++;
		if (ev->event == RDMA_CM_EVENT_CONNECT_REQUEST) {
			on_connect_request(e, ev);
			continue;
		}
		struct vb_qp *q = ev->id ? ev->id->context : NULL;
		struct vb_conn *vc = q ? q->vc : NULL;
		enum rdma_cm_event_type t = ev->event;
		int status = ev->status;
		rdma_ack_cm_event(ev);
		if (!vc)
			continue;
		switch (t) {
		case RDMA_CM_EVENT_ESTABLISHED: /* up once every QP is authenticated (nkv__vb_auth_recv) */
			q->established = true;
			vc->nup++;
			break;
		case RDMA_CM_EVENT_DISCONNECTED:
			/* What the peer wrote before it left may still sit in the CQ:
			 * deliver it first, then fail what is really incomplete. */
			nkv__vb_poll_cq(vc);
			nkv__vb_conn_fail(vc, -ECONNRESET, "verbs %s QP 0x%x: the peer disconnected", ve->dev.name, q->qpn);
			break;
		case RDMA_CM_EVENT_DEVICE_REMOVAL:
			nkv__vb_conn_fail(vc, -ENODEV, "verbs %s: device removed", ve->dev.name);
			break;
		case RDMA_CM_EVENT_TIMEWAIT_EXIT:
			break;
		default:
			nkv__vb_conn_fail(vc, status < 0 ? status : -EIO, "verbs %s QP 0x%x: %s (status %d)", ve->dev.name,
				     q->qpn, rdma_event_str(t), status);
			break;
		}
	}
}

void nkv__vb_close(struct nkv_conn *c)
{
	struct vb_conn *vc = c->be;

	if (!vc)
		return;
	if (!vc->failed) {
		/* A local close: requests still in flight fail, no CONN_DOWN. */
		c->down = true;
		nkv__vb_conn_fail(vc, -ECANCELED, "verbs %s: connection closed locally", VE(c->e)->dev.name);
	}
	conn_free(vc);
}
