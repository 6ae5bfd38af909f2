/*
 * Verbs backend: connections with librdmacm. One rdma_cm id (and RC QP) per
 * stream; the QPs of a connection share a CQ and are grouped on the passive
 * side by the token in the connect private data. The accept's private data
 * carries the decode side's region descriptors (id, addr, len, rkey).
 */
#include "verbs.h"
#include "nkv_util.h"

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

#define CONNECT_TIMEOUT_MS 10000

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
			.max_send_wr = passive ? VB_CREDIT_RING : q->sq_depth,
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
		vc->qps[i].sq_depth = VB_SQ_DEPTH < VE(e)->dev.attr.max_qp_wr ? VB_SQ_DEPTH
									: (uint32_t)VE(e)->dev.attr.max_qp_wr;
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
		rdma_ack_cm_event(ev);
		if (got == RDMA_CM_EVENT_REJECTED)
			return nkv_err(ECONNREFUSED, "connection rejected by the peer (status %d: no netkv verbs listener "
				       "there, or it refused the request; its log says why)", status);
		return nkv_err(status < 0 ? -status : EIO, "%s (status %d) while waiting for %s", rdma_event_str(got),
			       status, rdma_event_str(want));
	}
}

static int parse_rep(struct vb_conn *vc, const void *data, uint8_t len)
{
	struct vb_rep_pd rep;
	struct nkv_conn *c = vc->c;

	memset(&rep, 0, sizeof(rep));
	if (!data || len < offsetof(struct vb_rep_pd, r))
		return nkv_err(EPROTO, "the peer's accept carries no netkv private data (%u bytes)", len);
	memcpy(&rep, data, len < sizeof(rep) ? len : sizeof(rep));
	if (le32toh(rep.magic) != VB_REP_MAGIC || rep.version != VB_VERSION)
		return nkv_err(EPROTO, "the peer's accept is not netkv verbs version %d (magic 0x%08x version %u)",
			       VB_VERSION, le32toh(rep.magic), rep.version);
	if (rep.nregions > VB_REP_REGIONS || len < offsetof(struct vb_rep_pd, r) + rep.nregions * sizeof(rep.r[0]))
		return nkv_err(EPROTO, "the peer's accept names %u regions in %u bytes", rep.nregions, len);
	vc->peer_mtu = le32toh(rep.mtu);
	if (c->remote)
		return 0; /* QP 0's copy is the one kept */
	c->remote = calloc(rep.nregions ? rep.nregions : 1, sizeof(*c->remote));
	if (!c->remote)
		return nkv_err(ENOMEM, "out of memory");
	for (unsigned i = 0; i < rep.nregions; i++) {
		struct nkv_remote_region *r = &c->remote[i];
		r->id = le32toh(rep.r[i].id);
		r->rkey = le32toh(rep.r[i].rkey);
		r->addr = le64toh(rep.r[i].addr);
		r->len = le64toh(rep.r[i].len);
		if (!r->len || r->addr + r->len < r->addr)
			return nkv_err(EPROTO, "the peer advertised region %u with a bad range (addr 0x%llx len %llu)", r->id,
				       (unsigned long long)r->addr, (unsigned long long)r->len);
	}
	c->nremote = rep.nregions;
	return 0;
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
	rc = parse_rep(vc, ev->param.conn.private_data, ev->param.conn.private_data_len);
	rdma_ack_cm_event(ev);
	if (rc)
		goto out;
	q->established = true;
	vc->nup++;
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
	uint64_t deadline = nkv_now_ns() + (uint64_t)CONNECT_TIMEOUT_MS * 1000000;
	int rc;

	if (e->opts.streams > 255)
		return nkv_err(EINVAL, "at most 255 QPs per connection");
	if ((rc = resolve(host, port, &dst)))
		return rc;
	if (!(vc = conn_alloc(e, c, e->opts.streams)))
		return nkv_err(ENOMEM, "out of memory");
	if (getrandom(&vc->token, sizeof(vc->token), 0) != sizeof(vc->token))
		vc->token = nkv_now_ns() ^ ((uint64_t)getpid() << 32);
	if ((rc = nkv__vb_cq_create(e, vc)))
		goto fail;
	for (uint32_t i = 0; i < vc->nqps; i++)
		if ((rc = connect_qp(e, vc, &vc->qps[i], &dst, deadline)))
			goto fail;
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

static void on_connect_request(struct nkv_engine *e, struct rdma_cm_event *ev)
{
	struct vb_engine *ve = VE(e);
	struct rdma_cm_id *id = ev->id;
	struct vb_req_pd req;
	struct vb_rep_pd rep = { .magic = htole32(VB_REP_MAGIC), .version = VB_VERSION };
	struct nkv_remote_region *adv = NULL;
	struct rdma_conn_param cp;
	struct vb_conn *vc;
	struct nkv_conn *c;
	struct vb_qp *q;
	size_t nadv = 0;
	const char *why;

	memset(&req, 0, sizeof(req));
	if (ev->param.conn.private_data_len >= sizeof(req))
		memcpy(&req, ev->param.conn.private_data, sizeof(req));
	if (le32toh(req.magic) != VB_REQ_MAGIC || req.version != VB_VERSION) {
		why = "a connect request without netkv verbs private data";
		goto reject;
	}
	if (!req.nqps || req.qp_index >= req.nqps) {
		why = "a connect request with a bad QP index";
		goto reject;
	}
	if (id->verbs != ve->dev.ctx) {
		why = "a connect request that arrived on another RDMA device than this engine's";
		goto reject;
	}
	if (nkv__region_adverts(e, &adv, &nadv) || nadv > VB_REP_REGIONS) {
		why = "a connect request while more regions are registered than one accept can carry (7)";
		goto reject;
	}
	if (!(vc = find_pending(e, le64toh(req.token)))) {
		if (!(c = nkv__conn_new(e, true))) {
			why = "a connect request (out of memory)";
			goto reject;
		}
		if (!(vc = conn_alloc(e, c, req.nqps)) || !(vc->rslots = calloc(VB_RSLOTS, sizeof(*vc->rslots))) ||
		    nkv__vb_cq_create(e, vc)) {
			if (vc)
				vc->failed = true; /* freed with the connection by nkv_conn_close */
			why = "a connect request: out of memory or CQ creation failed";
			goto reject;
		}
		vc->token = le64toh(req.token);
		vc->peer_mtu = le32toh(req.mtu);
	}
	if (req.nqps != vc->nqps || vc->qps[req.qp_index].id) {
		why = "a connect request that does not match its connection's other QPs";
		goto reject;
	}
	q = &vc->qps[req.qp_index];
	q->id = id;
	id->context = q;
	if (nkv__vb_qp_create(vc, q, true)) {
		nkv__log("refused a connection: %s", nkv_last_error());
		q->id = NULL;
		why = "a connect request: QP creation failed";
		goto reject;
	}
	rep.nregions = (uint8_t)nadv;
	rep.mtu = htole32(nkv__vb_mtu_bytes(ve->dev.port.active_mtu));
	for (size_t i = 0; i < nadv; i++)
		rep.r[i] = (struct vb_wire_region){ htole32(adv[i].id), htole32(adv[i].rkey), htole64(adv[i].addr),
						    htole64(adv[i].len) };
	free(adv);
	conn_param_init(&cp, &rep, sizeof(rep));
	if (rdma_accept(id, &cp)) {
		nkv__log("%s: rdma_accept failed: %s", ve->dev.name, strerror(errno));
		rdma_destroy_qp(id);
		q->id = NULL;
		nkv__vb_conn_fail(vc, -EIO, "%s: rdma_accept failed", ve->dev.name);
		/* The id is destroyed by the caller via the reject path. */
		rdma_reject(id, NULL, 0);
		rdma_ack_cm_event(ev);
		rdma_destroy_id(id);
		return;
	}
	rdma_ack_cm_event(ev);
	return;
reject:
	free(adv);
	nkv__log("%s: refused %s", ve->dev.name, why);
	rdma_reject(id, NULL, 0);
	rdma_ack_cm_event(ev);
	rdma_destroy_id(id);
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
		case RDMA_CM_EVENT_ESTABLISHED:
			q->established = true;
			if (++vc->nup == vc->nqps && !vc->up_emitted && !vc->failed) {
				vc->up_emitted = true;
				nkv__vb_describe(e, vc);
				nkv__emitf(e, NKV_EV_CONN_UP, vc->c, 0, 0, "%s, %u QPs", e->desc, vc->nqps);
				if (vc->c->passive)
					nkv__vb_lend_slots(vc); /* after UP: a failure here reads as a DOWN that follows it */
			}
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
