/*
 * Verbs backend: the data path. A push becomes, per QP part, an inline
 * header SEND, RDMA WRITEs whose scatter-gather lists come from the plan's
 * coalesced ranges (cut to the device's max_sge and max message size), and a
 * final WRITE_WITH_IMM. The work requests are built once per push and posted
 * in chains as send-queue room frees up; only every VB_SIG_EVERY-th WR and
 * each part's last write ask for a completion. Staged GPU sources: see
 * verbs.h.
 */
#include "verbs.h"
#include "nkv_util.h"

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { WR_HDR = 1, WR_WRITE = 2, WR_IMM = 3 };
#define VB_RECV_TAG (1ull << 63)

int vb_cq_create(struct nkv_engine *e, struct vb_conn *vc)
{
	struct vb_engine *ve = VE(e);
	int cqe = (int)vc->nqps * (VB_SQ_DEPTH + VB_RECV_RING + 8);

	if (cqe > ve->dev.attr.max_cqe)
		cqe = ve->dev.attr.max_cqe;
	vc->cq = ibv_create_cq(ve->dev.ctx, cqe, vc, ve->comp_ch, 0);
	if (!vc->cq)
		return nkv_err(errno, "%s: ibv_create_cq(%d) failed: %s", ve->dev.name, cqe, strerror(errno));
	return 0;
}

static int post_recv(struct vb_qp *q, uint32_t i)
{
	struct ibv_sge sge = { .addr = (uintptr_t)&q->rbuf[i], .length = sizeof(q->rbuf[i]), .lkey = q->rmr->lkey };
	struct ibv_recv_wr wr = { .wr_id = VB_RECV_TAG | i, .sg_list = &sge, .num_sge = 1 }, *bad;

	return ibv_post_recv(q->id->qp, &wr, &bad) ? errno : 0;
}

/* The receive ring takes the headers (SEND) and the immediates. */
int vb_post_recvs(struct vb_qp *q)
{
	struct vb_dev *d = &VE(q->vc->e)->dev;

	q->rbuf = calloc(VB_RECV_RING, sizeof(*q->rbuf));
	if (!q->rbuf)
		return nkv_err(ENOMEM, "out of memory");
	q->rmr = ibv_reg_mr(d->pd, q->rbuf, VB_RECV_RING * sizeof(*q->rbuf), IBV_ACCESS_LOCAL_WRITE);
	if (!q->rmr)
		return nkv_err(errno, "%s: registering the receive ring: %s", d->name, strerror(errno));
	for (uint32_t i = 0; i < VB_RECV_RING; i++) {
		int err = post_recv(q, i);
		if (err)
			return nkv_err(err, "%s QP 0x%x: ibv_post_recv: %s", d->name, q->qpn, strerror(err));
	}
	return 0;
}

void vb_req_free(struct vb_conn *vc, struct vb_req *r)
{
	/* Unlink from the QP queues (parts not yet fully posted). */
	for (uint32_t i = 0; i < r->nparts; i++) {
		struct vb_part *p = &r->parts[i];
		struct vb_qp *q = p->qp;
		for (struct vb_part **pp = &q->qhead; *pp; pp = &(*pp)->qnext)
			if (*pp == p) {
				*pp = p->qnext;
				if (q->qtail == p) {
					q->qtail = NULL;
					for (struct vb_part *t = q->qhead; t; t = t->qnext)
						q->qtail = t;
				}
				break;
			}
	}
	if (r->prev)
		r->prev->next = r->next;
	else
		vc->reqs = r->next;
	if (r->next)
		r->next->prev = r->prev;
	vc->inflight--;
	nkv__stage_free(r->stage);
	free(r->sge);
	free(r->ops);
	free(r->parts);
	free(r);
}

static int grow(void **arr, size_t *cap, size_t elem)
{
	size_t n = *cap ? *cap * 2 : 64;
	void *p = realloc(*arr, n * elem);

	if (!p)
		return nkv_err(ENOMEM, "out of memory building work requests");
	*arr = p;
	*cap = n;
	return 0;
}

/* Append a piece to the request's WRITE ops. A WRITE covers one contiguous
 * destination span within one staging chunk and gathers up to max_sge
 * source pieces, never more than max_msg bytes. */
static int add_piece(struct vb_dev *d, struct vb_req *r, uint64_t src, uint64_t dst, uint64_t left, uint32_t chunk)
{
	struct vb_op *op = r->nops ? &r->ops[r->nops - 1] : NULL;

	while (left) {
		if (!op || op->raddr + op->len != dst || op->chunk != chunk || op->nsge == d->max_sge ||
		    op->len == d->max_msg) {
			if (r->nops == r->cap_ops && grow((void **)&r->ops, &r->cap_ops, sizeof(*r->ops)))
				return -ENOMEM;
			op = &r->ops[r->nops++];
			*op = (struct vb_op){ .raddr = dst, .sge_first = (uint32_t)r->nsge, .chunk = chunk };
		}
		uint64_t k = d->max_msg - op->len;
		if (k > left)
			k = left;
		struct ibv_sge *last = op->nsge ? &r->sge[op->sge_first + op->nsge - 1] : NULL;
		if (last && last->addr + last->length == src) {
			last->length += (uint32_t)k;
		} else {
			if (r->nsge == r->cap_sge && grow((void **)&r->sge, &r->cap_sge, sizeof(*r->sge)))
				return -ENOMEM;
			r->sge[r->nsge++] = (struct ibv_sge){ .addr = src, .length = (uint32_t)k };
			op->nsge++;
		}
		op->len += k;
		src += k;
		dst += k;
		left -= k;
	}
	return 0;
}

/* The plan's ranges -> WRITE ops: straight from the source region's MR, or,
 * staged, from chunk offsets that get their slot's address at post time. */
static int build_ops(struct nkv_engine *e, struct vb_req *r, const struct nkv_push_req *req)
{
	struct vb_dev *d = &VE(e)->dev;
	int rc;

	if (!r->stage) {
		const struct nkv_range *rg = nkv_plan_ranges(req->plan);
		uint64_t src_base = (uintptr_t)req->src->ptr;
		uint32_t lkey = ((struct ibv_mr *)req->src->be)->lkey;
		for (size_t i = 0; i < nkv_plan_count(req->plan); i++)
			if ((rc = add_piece(d, r, src_base + rg[i].src_off, req->dst->addr + rg[i].dst_off, rg[i].len,
					    VB_NO_CHUNK)))
				return rc;
		for (size_t i = 0; i < r->nsge; i++)
			r->sge[i].lkey = lkey;
		return 0;
	}
	const struct nkv_chunk_plan *cp = nkv__stage_plan(r->stage);
	for (size_t i = 0; i < cp->nr; i++)
		if ((rc = add_piece(d, r, cp->r[i].soff, req->dst->addr + cp->r[i].dst_off, cp->r[i].len, cp->r[i].chunk)))
			return rc;
	for (size_t i = 0; i < r->nops; i++)
		r->ops[i].chunk_end = i + 1 == r->nops || r->ops[i + 1].chunk != r->ops[i].chunk;
	return 0;
}

/* A staged WRITE's chunk: 0 not copied out yet, 1 ready (its SGEs now point
 * into the slot), <0 failed. */
static int stage_ready(struct vb_conn *vc, struct vb_req *r, struct vb_op *o)
{
	const uint8_t *base;
	struct ibv_mr *mr;
	int rc;

	if ((rc = nkv__stage_ptr(r->stage, o->chunk, &base)) <= 0)
		return rc;
	if (!(mr = vb_stage_mr(vc->e, base)))
		return -EIO;
	for (uint32_t s = 0; s < o->nsge; s++) {
		r->sge[o->sge_first + s].addr += (uintptr_t)base;
		r->sge[o->sge_first + s].lkey = mr->lkey;
	}
	return 1;
}

static void queue_part(struct vb_qp *q, struct vb_part *p)
{
	p->qp = q;
	p->qnext = NULL;
	if (q->qtail)
		q->qtail->qnext = p;
	else
		q->qhead = p;
	q->qtail = p;
}

int vb_push(struct nkv_conn *c, struct nkv_push_req *req)
{
	struct vb_conn *vc = c->be;
	struct vb_req *r;
	int rc;

	free(req->sums);
	if (req->nsums)
		return nkv_err(ENOTSUP, "--verify is not carried by the verbs backend yet: check blocks on the receiver "
			       "with nkv_block_hash");
	if (!vc || vc->failed)
		return nkv_err(ENOTCONN, "connection is down");
	if (!req->dst->addr && !req->dst->rkey)
		return nkv_err(ENOTSUP, "push %llu: the peer's region %u is GPU memory its NIC cannot reach (no GPUDirect "
			       "RDMA there) and verbs cannot stage into GPU memory: use --backend tcp, or enable "
			       "GPUDirect on the peer (HARDWARE.md)", (unsigned long long)req->req_id, req->dst->id);
	if (vc->inflight >= VB_MAX_INFLIGHT)
		return nkv_err(EAGAIN, "%u requests already in flight on this connection; poll for completions",
			       vc->inflight);
	if (!(r = calloc(1, sizeof(*r))))
		return nkv_err(ENOMEM, "out of memory");
	r->req_id = req->req_id;
	r->seq = vc->next_seq++;
	if (!vc->next_seq)
		vc->next_seq = 1;
	r->bytes = nkv_plan_bytes(req->plan);
	r->rkey = req->dst->rkey;
	r->region = req->dst->id;
	/* Link first so vb_req_free can undo everything below. */
	r->next = vc->reqs;
	if (vc->reqs)
		vc->reqs->prev = r;
	vc->reqs = r;
	vc->inflight++;
	if (req->src->kind == NKV_MEM_CUDA && !req->src->be &&
	    (rc = nkv__stage_new(c->e, req->src->ptr, req->plan, &r->stage))) {
		vb_req_free(vc, r);
		return nkv_err_wrap(rc, "push %llu", (unsigned long long)req->req_id);
	}
	if ((rc = build_ops(c->e, r, req))) {
		vb_req_free(vc, r);
		return rc;
	}
	uint32_t nops = (uint32_t)r->nops;
	/* Stripe big requests over the QPs, keep small ones whole. A staged
	 * one stays on one QP: its chunks are copied out in order anyway. */
	r->nparts = 1;
	if (vc->nqps > 1 && r->bytes >= (256u << 10) && !r->stage)
		r->nparts = vc->nqps < nops ? vc->nqps : nops;
	if (!(r->parts = calloc(r->nparts, sizeof(*r->parts)))) {
		vb_req_free(vc, r);
		return nkv_err(ENOMEM, "out of memory");
	}
	uint64_t acc = 0;
	uint32_t op = 0;
	for (uint32_t k = 0; k < r->nparts; k++) {
		struct vb_part *p = &r->parts[k];
		uint64_t goal = r->bytes * (k + 1) / r->nparts;
		p->req = r;
		p->op_first = op;
		/* Leave at least one op for each later part. */
		while (op < nops - (r->nparts - 1 - k) && (acc < goal || op == p->op_first)) {
			acc += r->ops[op].len;
			op++;
		}
		if (k == r->nparts - 1)
			op = nops;
		p->nops = op - p->op_first;
	}
	r->hdr = (struct vb_hdr){ .magic = htole32(VB_HDR_MAGIC), .seq = htole32(r->seq), .req_id = htole64(r->req_id),
				  .bytes = htole64(r->bytes), .region = htole32(r->region),
				  .nparts = htole16((uint16_t)r->nparts) };
	for (uint32_t k = 0; k < r->nparts; k++)
		queue_part(&vc->qps[(vc->rr + k) % vc->nqps], &r->parts[k]);
	vc->rr = (vc->rr + r->nparts) % vc->nqps;
	for (uint32_t k = 0; k < r->nparts; k++)
		vb_post_pending(r->parts[k].qp);
	return 0;
}

/* Post what the QP's send queue has room for, in chains of VB_POST_BATCH. */
void vb_post_pending(struct vb_qp *q)
{
	struct vb_conn *vc = q->vc;
	struct ibv_send_wr wrs[VB_POST_BATCH], *bad;
	struct ibv_sge hsge[VB_POST_BATCH];
	int n;

	while (q->qhead && !vc->failed) {
		n = 0;
		while (q->qhead && n < VB_POST_BATCH && q->sq_out + n + 1 < q->sq_depth && q->sig_count < VB_SQ_DEPTH - 1) {
			struct vb_part *p = q->qhead;
			struct vb_req *r = p->req;
			struct ibv_send_wr *w = &wrs[n];
			bool last = false, staged_end = false;
			uint32_t chunk = 0;

			memset(w, 0, sizeof(*w));
			if (!p->hdr_posted) {
				if (q->parts_open >= VB_PARTS_OPEN)
					break;
				hsge[n] = (struct ibv_sge){ .addr = (uintptr_t)&r->hdr, .length = sizeof(r->hdr) };
				w->opcode = IBV_WR_SEND;
				w->send_flags = IBV_SEND_INLINE;
				w->sg_list = &hsge[n];
				w->num_sge = 1;
				w->wr_id = (uint64_t)r->seq << 8 | WR_HDR;
				p->hdr_posted = true;
				q->parts_open++;
			} else {
				struct vb_op *o = &r->ops[p->op_first + p->next];
				if (r->stage) {
					int rc = stage_ready(vc, r, o);
					if (rc < 0) {
						vb_conn_fail(vc, rc, "verbs push %llu: %s", (unsigned long long)r->req_id,
							     nkv_last_error());
						return;
					}
					if (!rc)
						break; /* progress posts it once the chunk is out */
				}
				staged_end = r->stage && o->chunk_end;
				chunk = o->chunk;
				last = ++p->next == p->nops;
				w->opcode = last ? IBV_WR_RDMA_WRITE_WITH_IMM : IBV_WR_RDMA_WRITE;
				w->sg_list = &r->sge[o->sge_first];
				w->num_sge = (int)o->nsge;
				w->wr.rdma.remote_addr = o->raddr;
				w->wr.rdma.rkey = r->rkey;
				w->wr_id = (uint64_t)r->seq << 8 | (last ? WR_IMM : WR_WRITE);
				if (last)
					w->imm_data = htonl(r->seq);
			}
			q->since_sig++;
			if (last || staged_end || q->since_sig >= VB_SIG_EVERY) {
				w->send_flags |= IBV_SEND_SIGNALED;
				q->sig[(q->sig_head + q->sig_count) % VB_SQ_DEPTH] =
					(struct vb_sig){ .nwr = q->since_sig, .part = last ? p : NULL,
							 .staged = staged_end ? r : NULL, .chunk = chunk };
				q->sig_count++;
				q->since_sig = 0;
			}
			if (last) {
				q->qhead = p->qnext;
				if (!q->qhead)
					q->qtail = NULL;
			}
			if (n)
				wrs[n - 1].next = w;
			n++;
		}
		if (!n)
			return;
		if (q->since_sig) {
			/* The chain's tail asks for a completion so the SQ accounting never stalls. */
			wrs[n - 1].send_flags |= IBV_SEND_SIGNALED;
			q->sig[(q->sig_head + q->sig_count) % VB_SQ_DEPTH] = (struct vb_sig){ .nwr = q->since_sig };
			q->sig_count++;
			q->since_sig = 0;
		}
		q->sq_out += (uint32_t)n;
		int err = ibv_post_send(q->id->qp, wrs, &bad);
		if (err) {
			vb_conn_fail(vc, -EIO, "verbs %s QP 0x%x: ibv_post_send failed: %s", VE(vc->e)->dev.name, q->qpn,
				     strerror(err));
			return;
		}
		if (n < VB_POST_BATCH)
			return;
	}
}

static struct vb_qp *qp_by_num(struct vb_conn *vc, uint32_t qpn)
{
	for (uint32_t i = 0; i < vc->nqps; i++)
		if (vc->qps[i].id && vc->qps[i].qpn == qpn)
			return &vc->qps[i];
	return NULL;
}

static const char *wr_kind(uint64_t wr_id, bool recv)
{
	if (recv)
		return "receive";
	switch (wr_id & 0xff) {
	case WR_HDR: return "header SEND";
	case WR_WRITE: return "RDMA WRITE";
	case WR_IMM: return "RDMA WRITE_WITH_IMM";
	default: return "work request";
	}
}

static void send_done(struct vb_conn *vc, struct vb_qp *q)
{
	struct vb_sig s;

	if (!q->sig_count)
		return;
	s = q->sig[q->sig_head];
	q->sig_head = (q->sig_head + 1) % VB_SQ_DEPTH;
	q->sig_count--;
	q->sq_out -= s.nwr;
	if (s.staged) /* the NIC has read the chunk: its slot can take the next one */
		nkv__stage_sent(s.staged->stage, s.chunk, nkv__stage_plan(s.staged->stage)->c[s.chunk].bytes);
	if (!s.part)
		return;
	q->parts_open--;
	struct vb_req *r = s.part->req;
	if (++r->parts_done == r->nparts) {
		struct nkv_event ev = { .type = NKV_EV_PUSH_DONE, .req_id = r->req_id, .bytes = r->bytes, .conn = vc->c };
		nkv__emit(vc->e, &ev);
		vb_req_free(vc, r);
	}
}

static void recv_done(struct vb_conn *vc, struct vb_qp *q, struct ibv_wc *wc)
{
	struct nkv_engine *e = vc->e;
	const char *dev = VE(e)->dev.name;
	uint32_t slot = (uint32_t)wc->wr_id;


	if (slot >= VB_RECV_RING)
		return vb_conn_fail(vc, -EPROTO, "verbs %s QP 0x%x: completion for unknown receive %u", dev, q->qpn, slot);
	if (wc->opcode == IBV_WC_RECV) {
		struct vb_hdr h = q->rbuf[slot];
		uint32_t seq = le32toh(h.seq);
		struct vb_rslot *s = &vc->rslots[seq % VB_RSLOTS];
		if (wc->byte_len != sizeof(h) || le32toh(h.magic) != VB_HDR_MAGIC || !h.nparts ||
		    le16toh(h.nparts) > vc->nqps)
			return vb_conn_fail(vc, -EPROTO, "verbs %s QP 0x%x: malformed request header (%u bytes)", dev,
					    q->qpn, wc->byte_len);
		if (s->used && s->seq != seq)
			return vb_conn_fail(vc, -EPROTO, "verbs %s QP 0x%x: request slot %u reused while in flight", dev,
					    q->qpn, seq % VB_RSLOTS);
		if (!s->used)
			*s = (struct vb_rslot){ .used = true, .seq = seq, .req_id = le64toh(h.req_id),
						.bytes = le64toh(h.bytes), .region = le32toh(h.region),
						.nparts = le16toh(h.nparts) };
	} else if (wc->opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
		uint32_t seq = ntohl(wc->imm_data);
		struct vb_rslot *s = &vc->rslots[seq % VB_RSLOTS];
		if (!s->used || s->seq != seq)
			return vb_conn_fail(vc, -EPROTO, "verbs %s QP 0x%x: immediate for request slot %u without its header",
					    dev, q->qpn, seq);
		if (++s->seen == s->nparts) {
			s->used = false;
			nkv__recv_done(e, vc->c, s->req_id, s->bytes, s->region, NULL, 0);
		}
	} else {
		return vb_conn_fail(vc, -EPROTO, "verbs %s QP 0x%x: unexpected receive opcode %d", dev, q->qpn, wc->opcode);
	}
	int err = post_recv(q, slot);
	if (err)
		vb_conn_fail(vc, -EIO, "verbs %s QP 0x%x: ibv_post_recv: %s", dev, q->qpn, strerror(err));
}

/* Drain the connection's CQ; returns the completions handled. */
int vb_poll_cq(struct vb_conn *vc)
{
	struct ibv_wc wc[32];
	int n, total = 0;

	while (vc->cq && (n = ibv_poll_cq(vc->cq, 32, wc)) > 0) {
		total += n;
		for (int i = 0; i < n; i++) {
			struct vb_qp *q = qp_by_num(vc, wc[i].qp_num);
			bool recv = wc[i].wr_id & VB_RECV_TAG;
			if (!q || vc->failed)
				continue; /* after the first error: flushes, and nothing left to account */
			if (wc[i].status != IBV_WC_SUCCESS) {
				vb_conn_fail(vc, wc[i].status == IBV_WC_REM_ACCESS_ERR ? -EACCES : -EIO,
					     "verbs %s QP 0x%x: %s (seq %u) failed: %s (status %d, vendor error 0x%x)",
					     VE(vc->e)->dev.name, q->qpn, wr_kind(wc[i].wr_id, recv),
					     (uint32_t)(wc[i].wr_id >> 8), ibv_wc_status_str(wc[i].status), wc[i].status,
					     wc[i].vendor_err);
				continue;
			}
			if (recv)
				recv_done(vc, q, &wc[i]);
			else
				send_done(vc, q);
		}
		if (n < 32)
			break;
	}
	if (!vc->failed)
		for (uint32_t i = 0; i < vc->nqps; i++)
			if (vc->qps[i].qhead)
				vb_post_pending(&vc->qps[i]);
	return total;
}

static int poll_all(struct nkv_engine *e)
{
	int n = 0;

	/* Completions before connection events, so a disconnect never
	 * overtakes data that already arrived. */
	for (struct nkv_conn *c = e->conns; c; c = c->next)
		if (c->be)
			n += vb_poll_cq(c->be);
	return n + vb_cm_events(e);
}

/* Arm every CQ; then wait on the CM and completion channels. */
static int block_wait(struct nkv_engine *e, int ms)
{
	struct vb_engine *ve = VE(e);
	struct pollfd p[2] = { { .fd = ve->cm_ch->fd, .events = POLLIN }, { .fd = ve->comp_ch->fd, .events = POLLIN } };
	int n;

	for (struct nkv_conn *c = e->conns; c; c = c->next) {
		struct vb_conn *vc = c->be;
		if (vc && vc->cq)
			ibv_req_notify_cq(vc->cq, 0);
	}
	if ((n = poll_all(e)))
		return n; /* something slipped in before the arm */
	if (poll(p, 2, ms) < 0 && errno != EINTR)
		return nkv_err(errno, "poll: %s", strerror(errno));
	if (p[1].revents & POLLIN) {
		struct ibv_cq *cq;
		void *ctx;
		if (!ibv_get_cq_event(ve->comp_ch, &cq, &ctx))
			ibv_ack_cq_events(cq, 1);
	}
	return poll_all(e);
}

int vb_progress(struct nkv_engine *e, int timeout_ms)
{
	struct vb_engine *ve = VE(e);
	uint64_t start = nkv_now_ns(), deadline = timeout_ms < 0 ? UINT64_MAX : start + (uint64_t)timeout_ms * 1000000;
	int n;

	if ((n = poll_all(e)) || timeout_ms == 0)
		return n;
	/* Adaptive busy-poll: spin for a budget that grows when work turns up
	 * while spinning and shrinks when it doesn't, then sleep on the channels. */
	if (!ve->event_mode) {
		uint64_t spin_end = start + ve->spin_ns;
		while (nkv_now_ns() < spin_end && nkv_now_ns() < deadline)
			if ((n = poll_all(e))) {
				ve->spin_ns = ve->spin_ns < 400000 ? ve->spin_ns * 2 : 800000;
				return n;
			}
		ve->spin_ns = ve->spin_ns > 4000 ? ve->spin_ns / 2 : 2000;
	}
	for (;;) {
		uint64_t now = nkv_now_ns();
		int ms;
		if (now >= deadline)
			return 0;
		ms = deadline == UINT64_MAX ? 1000 : (int)((deadline - now + 999999) / 1000000);
		if (ms > 1000)
			ms = 1000;
		if ((n = block_wait(e, ms)))
			return n;
	}
}
