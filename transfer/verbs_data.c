/*
 * Verbs backend: the data path. A push becomes, per QP part, an inline
 * header SEND, RDMA WRITEs whose scatter-gather lists come from the plan's
 * coalesced ranges (cut to the device's max_sge and max message size), and a
 * final WRITE_WITH_IMM. The work requests are built once per push and posted
 * in chains as send-queue room frees up (on a busy QP, by the next progress
 * call, so pushes made meanwhile share ibv_post_send calls); only every
 * VB_SIG_EVERY-th WR, each chain's tail and each staged chunk's last write
 * ask for a completion, and a completion retires every part that ended at
 * or before it (RC completes in order). Staged GPU sources: see verbs.h.
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

#define NO_SLOT_MSG "the peer has no bounce slot to lend this connection for its staged GPU memory (all taken " \
		    "by other connections, or its registration failed: see the peer's log)"

enum { WR_HDR = 1, WR_WRITE = 2, WR_IMM = 3, WR_CREDIT = 4, WR_UNIT = 5, WR_CTRL = 6 };
#define VB_RECV_TAG (1ull << 63)

int nkv__vb_cq_create(struct nkv_engine *e, struct vb_conn *vc)
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

/* The receive ring: headers (SEND), units and immediates on the receiving
 * side, credits on the sending side. */
int nkv__vb_post_recvs(struct vb_qp *q, uint32_t n)
{
	struct vb_dev *d = &VE(q->vc->e)->dev;

	q->rbuf = calloc(n, sizeof(*q->rbuf));
	if (!q->rbuf)
		return nkv_err(ENOMEM, "out of memory");
	q->nrecv = n;
	q->rmr = ibv_reg_mr(d->pd, q->rbuf, n * sizeof(*q->rbuf), IBV_ACCESS_LOCAL_WRITE);
	if (!q->rmr)
		return nkv_err(errno, "%s: registering the receive ring: %s", d->name, strerror(errno));
	for (uint32_t i = 0; i < n; i++) {
		int err = post_recv(q, i);
		if (err)
			return nkv_err(err, "%s QP 0x%x: ibv_post_recv: %s", d->name, q->qpn, strerror(err));
	}
	return 0;
}

void nkv__vb_req_free(struct vb_conn *vc, struct vb_req *r)
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
		if (p->ended) /* a failing connection: ended, not yet retired */
			for (struct vb_part **pp = &q->dhead, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->dnext)
				if (*pp == p) {
					*pp = p->dnext;
					if (q->dtail == p)
						q->dtail = prev;
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
	nkv__chunk_plan_free(&r->units);
	free(r->bind);
	free(r->umsg);
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

static int add_op(struct vb_req *r, uint8_t kind, uint32_t unit)
{
	if (r->nops == r->cap_ops && grow((void **)&r->ops, &r->cap_ops, sizeof(*r->ops)))
		return -ENOMEM;
	r->ops[r->nops++] = (struct vb_op){ .kind = kind, .chunk = unit };
	return 0;
}

/* The plan's ranges -> WRITE ops: straight from the source region's MR, or,
 * staged, from chunk offsets that get their slot's address at post time.
 * Into the peer's bounce slots (dst_staged), unit by unit: the payload's
 * WRITEs (destination = offset in the payload until a slot is bound), the
 * range list's WRITE and the unit's SEND. */
static int build_ops(struct nkv_engine *e, struct vb_req *r, const struct nkv_push_req *req)
{
	struct vb_dev *d = &VE(e)->dev;
	const struct nkv_chunk_plan *cp = r->stage ? nkv__stage_plan(r->stage) : NULL;
	uint64_t src_base = r->stage ? 0 : (uintptr_t)req->src->ptr;
	int rc;

	if (r->dst_staged) {
		const struct nkv_chunk_plan *u = &r->units;
		if ((rc = nkv__chunk_plan(nkv_plan_ranges(req->plan), nkv_plan_count(req->plan), VB_UNIT_PAYLOAD,
					  VB_UNIT_RANGES, &r->units)))
			return rc;
		if (!(r->bind = calloc(u->nc, sizeof(*r->bind))) || !(r->umsg = calloc(u->nc, sizeof(*r->umsg))))
			return nkv_err(ENOMEM, "out of memory building work requests");
		for (size_t k = 0; k < u->nc; k++) {
			r->bind[k].first_op = r->nops;
			for (size_t i = u->c[k].first; i < u->c[k].first + u->c[k].n; i++) {
				/* A staged source packs its chunks exactly as the units are cut. */
				uint64_t src = r->stage ? cp->r[i].soff : src_base + u->r[i].src_off;
				if ((rc = add_piece(d, r, src, u->r[i].soff, u->r[i].len, (uint32_t)k)))
					return rc;
			}
			if ((rc = add_op(r, VB_OP_DESC, (uint32_t)k)) || (rc = add_op(r, VB_OP_UNIT, (uint32_t)k)))
				return rc;
		}
	} else if (!r->stage) {
		const struct nkv_range *rg = nkv_plan_ranges(req->plan);
		for (size_t i = 0; i < nkv_plan_count(req->plan); i++)
			if ((rc = add_piece(d, r, src_base + rg[i].src_off, req->dst->addr + rg[i].dst_off, rg[i].len,
					    VB_NO_CHUNK)))
				return rc;
	} else {
		for (size_t i = 0; i < cp->nr; i++)
			if ((rc = add_piece(d, r, cp->r[i].soff, req->dst->addr + cp->r[i].dst_off, cp->r[i].len,
					    cp->r[i].chunk)))
				return rc;
	}
	if (!r->stage) {
		uint32_t lkey = ((struct ibv_mr *)req->src->be)->lkey;
		for (size_t i = 0; i < r->nsge; i++)
			r->sge[i].lkey = lkey;
	}
	/* A chunk's last data WRITE hands its staging slot back. */
	for (size_t i = 0; r->stage && i < r->nops; i++)
		r->ops[i].chunk_end = r->ops[i].kind == VB_OP_WRITE &&
				      (i + 1 == r->nops || r->ops[i + 1].kind != VB_OP_WRITE || r->ops[i + 1].chunk != r->ops[i].chunk);
	return 0;
}

/* A staged WRITE's chunk: 0 not copied out yet, 1 ready (its SGEs now point
 * into the slot), <0 failed. */
static int stage_ready(struct vb_conn *vc, struct vb_req *r, struct vb_op *o)
{
	const uint8_t *base;
	struct ibv_mr *mr;
	int rc;

	if (o->ready)
		return 1;
	if ((rc = nkv__stage_ptr(r->stage, o->chunk, &base)) <= 0)
		return rc;
	if (!(mr = nkv__vb_stage_mr(vc->e, base)))
		return -EIO;
	for (uint32_t s = 0; s < o->nsge; s++) {
		r->sge[o->sge_first + s].addr += (uintptr_t)base;
		r->sge[o->sge_first + s].lkey = mr->lkey;
	}
	o->ready = true;
	return 1;
}

/* Give the request's next unit a bounce slot the peer lent: false while
 * none is free. The unit's WRITEs get the slot's address, its range list
 * and SEND are written out. */
static bool bind_unit(struct vb_conn *vc, struct vb_req *r)
{
	const struct nkv_chunk_plan *up = &r->units;
	uint32_t u = r->nbound;
	const struct nkv_chunk *ch = &up->c[u];
	struct vb_bind *b = &r->bind[u];
	struct vb_unit_range *list;
	size_t i = b->first_op;

	if (!vc->ncredits)
		return false;
	struct vb_credit cr = vc->credits[0];
	memmove(vc->credits, vc->credits + 1, --vc->ncredits * sizeof(vc->credits[0]));
	*b = (struct vb_bind){ .bound = true, .slot = cr.slot, .addr = cr.addr, .rkey = cr.rkey, .first_op = i };
	r->nbound++;
	for (; i < r->nops && r->ops[i].chunk == u && r->ops[i].kind == VB_OP_WRITE; i++)
		r->ops[i].raddr += b->addr + VB_UNIT_DESC;
	list = (struct vb_unit_range *)(vc->descbuf + (size_t)b->slot * VB_UNIT_DESC);
	for (size_t k = 0; k < ch->n; k++) {
		const struct nkv_srange *s = &up->r[ch->first + k];
		list[k] = (struct vb_unit_range){ htole64(s->soff), htole64(s->dst_off), htole64(s->len) };
	}
	r->umsg[u] = (struct vb_unit){ .magic = htole32(VB_UNIT_MAGIC), .seq = htole32(r->seq),
				       .req_id = htole64(r->req_id), .bytes = htole64(ch->bytes),
				       .slot = htole32(b->slot), .nranges = htole16((uint16_t)ch->n) };
	return true;
}

/* Stripe big requests over the QPs, keep small ones whole. A staged one
 * stays on one QP: its chunks are copied out in order anyway. */
static uint32_t part_count(uint32_t nqps, uint64_t bytes, uint32_t nops, bool staged)
{
	if (nqps > 1 && bytes >= (256u << 10) && !staged)
		return nqps < nops ? nqps : nops;
	return 1;
}

/* push_shape.h: the WRITEs add_piece cuts the plan into (addresses shifted
 * to 0 on both sides: contiguity, the only thing merging looks at, is the
 * same), plus one header SEND per part. */
int nkv__vb_shape(struct nkv_engine *e, const struct nkv_plan *p, struct nkv__push_shape *out)
{
	struct vb_dev *d = &VE(e)->dev;
	const struct nkv_range *rg = nkv_plan_ranges(p);
	struct vb_req r = { 0 };
	int rc = 0;

	for (size_t i = 0; i < nkv_plan_count(p) && !rc; i++)
		rc = add_piece(d, &r, rg[i].src_off, rg[i].dst_off, rg[i].len, VB_NO_CHUNK);
	if (!rc) {
		uint32_t qps = e->opts.streams ? e->opts.streams : 1;
		out->parts = part_count(qps, nkv_plan_bytes(p), (uint32_t)r.nops, false);
		out->sges = r.nsge;
		out->wrs = r.nops + out->parts;
		out->max_sge = d->max_sge;
	}
	free(r.sge);
	free(r.ops);
	return rc;
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

int nkv__vb_push(struct nkv_conn *c, struct nkv_push_req *req)
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
	bool dst_staged = !req->dst->addr && !req->dst->rkey; /* GPU memory the peer's NIC cannot reach */
	if (dst_staged && vc->no_credit)
		return nkv_err(ENOSPC, "push %llu into region %u: %s", (unsigned long long)req->req_id, req->dst->id,
			       NO_SLOT_MSG);
	if (dst_staged && !vc->descbuf) {
		struct vb_dev *d = &VE(c->e)->dev;
		if (!(vc->descbuf = calloc(VB_CREDITS, VB_UNIT_DESC)))
			return nkv_err(ENOMEM, "out of memory");
		if (!(vc->descmr = ibv_reg_mr(d->pd, vc->descbuf, VB_CREDITS * VB_UNIT_DESC, IBV_ACCESS_LOCAL_WRITE))) {
			free(vc->descbuf);
			vc->descbuf = NULL;
			return nkv_err(errno, "%s: registering the unit range lists: %s", d->name, strerror(errno));
		}
	}
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
	r->dst_staged = dst_staged;
	/* Link first so nkv__vb_req_free can undo everything below. */
	r->next = vc->reqs;
	if (vc->reqs)
		vc->reqs->prev = r;
	vc->reqs = r;
	vc->inflight++;
	if (req->src->kind == NKV_MEM_CUDA && !req->src->be &&
	    (rc = nkv__stage_new_cut(c->e, req->src->ptr, req->plan, dst_staged ? VB_UNIT_PAYLOAD : NKV_GPU_CHUNK,
				     dst_staged ? VB_UNIT_RANGES : NKV_GPU_CHUNK_RANGES, true, &r->stage))) {
		nkv__vb_req_free(vc, r);
		return nkv_err_wrap(rc, "push %llu", (unsigned long long)req->req_id);
	}
	if ((rc = build_ops(c->e, r, req))) {
		nkv__vb_req_free(vc, r);
		return rc;
	}
	uint32_t nops = (uint32_t)r->nops;
	r->nparts = part_count(vc->nqps, r->bytes, nops, r->stage || r->dst_staged);
	if (!(r->parts = calloc(r->nparts, sizeof(*r->parts)))) {
		nkv__vb_req_free(vc, r);
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
				  .nparts = htole16((uint16_t)r->nparts),
				  .flags = htole16(r->dst_staged ? VB_HDR_STAGED : 0) };
	uint32_t first = vc->rr, nparts = r->nparts;
	for (uint32_t k = 0; k < nparts; k++)
		queue_part(&vc->qps[(first + k) % vc->nqps], &r->parts[k]);
	vc->rr = (first + nparts) % vc->nqps;
	/* Post at once on a QP with little in flight (latency); on a busy one
	 * leave it queued for the next progress call, which chains every push
	 * queued meanwhile into a few ibv_post_send calls with one signalled
	 * completion each (the NIC has VB_POST_BATCH+ WRs to work on until then,
	 * and a sender polls for its completions anyway).
	 * Posting can fail the connection, which frees r: only locals below. */
	for (uint32_t k = 0; k < nparts && !vc->failed; k++) {
		struct vb_qp *q = &vc->qps[(first + k) % vc->nqps];
		if (q->sq_out < VB_POST_BATCH)
			nkv__vb_post_pending(q);
	}
	return 0;
}

/* Post what the QP's send queue has room for, in chains of VB_POST_BATCH. */
void nkv__vb_post_pending(struct vb_qp *q)
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
			/* This request is at the head of its QP: now its chunks may be
			 * copied out (gated, so they never wait in the shared slots
			 * behind a request that cannot move). Into the peer's bounce
			 * slots, a chunk goes only with a slot bound for it, so every
			 * chunk copied out can leave, and a stalled peer holds up only
			 * the pushes to it. */
			if (r->dst_staged) {
				while (r->nbound < r->units.nc && bind_unit(vc, r))
					;
				if (r->stage)
					nkv__stage_allow(r->stage, r->nbound);
				if (!r->nbound)
					break; /* nothing sent, not even the header, before a first slot */
			} else if (r->stage) {
				nkv__stage_allow(r->stage, r->ops[p->op_first + p->next].chunk + NKV_GPU_OUT_SLOTS);
			}
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
				if (r->dst_staged && !r->bind[o->chunk].bound)
					break; /* posted when the peer lends a slot (a credit arrives) */
				if (r->stage && o->kind == VB_OP_WRITE) {
					int rc = stage_ready(vc, r, o);
					if (rc < 0) {
						nkv__vb_conn_fail(vc, rc, "verbs push %llu: %s", (unsigned long long)r->req_id,
							     nkv_last_error());
						return;
					}
					if (!rc)
						break; /* progress posts it once the chunk is out */
				}
				staged_end = r->stage && o->chunk_end;
				chunk = o->chunk;
				last = ++p->next == p->nops;
				if (o->kind == VB_OP_UNIT) {
					hsge[n] = (struct ibv_sge){ .addr = (uintptr_t)&r->umsg[o->chunk], .length = sizeof(struct vb_unit) };
					w->opcode = IBV_WR_SEND;
					w->send_flags = IBV_SEND_INLINE;
					w->sg_list = &hsge[n];
					w->num_sge = 1;
					w->wr_id = (uint64_t)r->seq << 8 | WR_UNIT;
				} else if (o->kind == VB_OP_DESC) {
					const struct vb_bind *b = &r->bind[o->chunk];
					hsge[n] = (struct ibv_sge){
						.addr = (uintptr_t)vc->descbuf + (uintptr_t)b->slot * VB_UNIT_DESC,
						.length = (uint32_t)(r->units.c[o->chunk].n * sizeof(struct vb_unit_range)),
						.lkey = vc->descmr->lkey };
					w->opcode = IBV_WR_RDMA_WRITE;
					w->sg_list = &hsge[n];
					w->num_sge = 1;
					w->wr.rdma.remote_addr = b->addr;
					w->wr.rdma.rkey = b->rkey;
					w->wr_id = (uint64_t)r->seq << 8 | WR_WRITE;
				} else {
					bool imm = last && !r->dst_staged;
					w->opcode = imm ? IBV_WR_RDMA_WRITE_WITH_IMM : IBV_WR_RDMA_WRITE;
					w->sg_list = &r->sge[o->sge_first];
					w->num_sge = (int)o->nsge;
					w->wr.rdma.remote_addr = o->raddr;
					w->wr.rdma.rkey = r->dst_staged ? r->bind[o->chunk].rkey : r->rkey;
					w->wr_id = (uint64_t)r->seq << 8 | (imm ? WR_IMM : WR_WRITE);
					if (imm)
						w->imm_data = htonl(r->seq);
				}
			}
			q->since_sig++;
			if (last) {
				/* Ended: retired by the next signalled completion on this QP
				 * (RC completes in order), not necessarily its own. */
				q->qhead = p->qnext;
				if (!q->qhead)
					q->qtail = NULL;
				p->ended = true;
				p->dnext = NULL;
				if (q->dtail)
					q->dtail->dnext = p;
				else
					q->dhead = p;
				q->dtail = p;
				q->ends++;
			}
			if (staged_end || q->since_sig >= VB_SIG_EVERY) {
				w->send_flags |= IBV_SEND_SIGNALED;
				q->sig[(q->sig_head + q->sig_count) % VB_SQ_DEPTH] =
					(struct vb_sig){ .nwr = q->since_sig, .nparts = q->ends,
							 .staged = staged_end ? r : NULL, .chunk = chunk };
				q->sig_count++;
				q->since_sig = 0;
				q->ends = 0;
			}
			if (n)
				wrs[n - 1].next = w;
			n++;
		}
		if (!n)
			return;
		if (q->since_sig) {
			/* The chain's tail asks for a completion so the SQ accounting
			 * never stalls and the parts that ended in it are retired: one
			 * completion per chain, not per push. */
			wrs[n - 1].send_flags |= IBV_SEND_SIGNALED;
			q->sig[(q->sig_head + q->sig_count) % VB_SQ_DEPTH] = (struct vb_sig){ .nwr = q->since_sig,
												.nparts = q->ends };
			q->sig_count++;
			q->since_sig = 0;
			q->ends = 0;
		}
		q->sq_out += (uint32_t)n;
		int err = ibv_post_send(q->id->qp, wrs, &bad);
		if (err) {
			nkv__vb_conn_fail(vc, -EIO, "verbs %s QP 0x%x: ibv_post_send failed: %s", VE(vc->e)->dev.name, q->qpn,
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
	case WR_CREDIT: return "credit SEND";
	case WR_UNIT: return "unit SEND";
	case WR_CTRL: return "handshake SEND";
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
	/* Every WR up to this one is complete: so are the parts that ended in them. */
	for (uint32_t k = 0; k < s.nparts && q->dhead; k++) {
		struct vb_part *p = q->dhead;
		struct vb_req *r = p->req;
		q->dhead = p->dnext;
		if (!q->dhead)
			q->dtail = NULL;
		p->ended = false;
		q->parts_open--;
		if (++r->parts_done == r->nparts) {
			struct nkv_event ev = { .type = NKV_EV_PUSH_DONE, .req_id = r->req_id, .bytes = r->bytes,
						.conn = vc->c };
			nkv__emit(vc->e, &ev);
			nkv__vb_req_free(vc, r);
		}
	}
}

/* A handshake message (AUTH, ADVERT, ERROR: 32 bytes, inline, signalled). */
int nkv__vb_send_ctrl(struct vb_qp *q, const void *msg)
{
	struct ibv_sge sge = { .addr = (uintptr_t)msg, .length = 32 };
	struct ibv_send_wr w = { .wr_id = WR_CTRL, .sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_SEND,
				 .send_flags = IBV_SEND_INLINE | IBV_SEND_SIGNALED }, *bad;
	int err = ibv_post_send(q->id->qp, &w, &bad);

	if (err)
		return nkv_err(err, "verbs %s QP 0x%x: posting a handshake message: %s", VE(q->vc->e)->dev.name, q->qpn,
			       strerror(err));
	q->ctrl_out++;
	return 0;
}

/* ---- receiver staging ------------------------------------------------------ */


static bool region_staged(const struct nkv_region *r)
{
	return r && r->kind == NKV_MEM_CUDA && !r->be;
}

/* Lend bounce slot i to the peer (a credit SEND on QP 0). */
static void grant(struct vb_conn *vc, uint32_t i)
{
	struct vb_qp *q = &vc->qps[0];
	struct vb_credit cr = { .magic = htole32(VB_CREDIT_MAGIC), .slot = htole32(i) };
	struct ibv_sge sge = { .addr = (uintptr_t)&cr, .length = sizeof(cr) };
	struct ibv_send_wr w = { .wr_id = WR_CREDIT, .sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_SEND,
				 .send_flags = IBV_SEND_INLINE | IBV_SEND_SIGNALED }, *bad;
	int err;

	if (i < vc->nlend) {
		struct vb_lend *l = &vc->lend[i];
		cr.addr = htole64((uintptr_t)nkv__gpu_in_buf(l->slot));
		cr.len = htole64(NKV_GPU_IN_BYTES);
		cr.rkey = htole32(l->mr->rkey);
		l->granted = true;
	}
	if (vc->credit_out >= VB_CREDIT_RING)
		return nkv__vb_conn_fail(vc, -EIO, "verbs: more credits in flight than the send queue holds");
	if ((err = ibv_post_send(q->id->qp, &w, &bad)))
		return nkv__vb_conn_fail(vc, -EIO, "verbs %s QP 0x%x: posting a credit: %s", VE(vc->e)->dev.name, q->qpn,
				    strerror(err));
	vc->credit_out++;
}

/* Receiving side, connection up: when some region can only be reached by
 * staging, lend the peer up to VB_CREDITS receive slots (or tell it there
 * is none, a credit of length 0, so its staged pushes fail instead of
 * waiting forever). */
void nkv__vb_lend_slots(struct vb_conn *vc)
{
	struct nkv_engine *e = vc->e;
	struct vb_dev *d = &VE(e)->dev;
	bool any = false;

	for (uint32_t i = 0; i < e->nregions; i++)
		any |= e->regions[i].used && region_staged(&e->regions[i]);
	if (!any || vc->lend_done)
		return;
	vc->lend_done = true;
	if (!(vc->uranges = malloc(VB_UNIT_RANGES * sizeof(*vc->uranges))))
		return nkv__vb_conn_fail(vc, -ENOMEM, "out of memory");
	while (vc->nlend < VB_CREDITS) {
		struct vb_lend *l = &vc->lend[vc->nlend];
		if (nkv__gpu_in_acquire(e, vc, &l->slot))
			break;
		nkv__gpu_in_keep(l->slot);
		l->mr = ibv_reg_mr(d->pd, nkv__gpu_in_buf(l->slot), NKV_GPU_IN_BYTES,
				   IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
		if (!l->mr) {
			nkv_err(errno, "%s: registering a bounce slot: %s", d->name, strerror(errno));
			nkv__gpu_in_release(e, l->slot);
			l->slot = NULL;
			break;
		}
		vc->nlend++;
	}
	if (!vc->nlend) {
		nkv__log("verbs %s: no bounce slot to lend a new connection for staged GPU regions: %s", d->name,
			 nkv_last_error());
		return grant(vc, UINT32_MAX);
	}
	for (uint32_t i = 0; i < vc->nlend && !vc->failed; i++)
		grant(vc, i);
}

void nkv__vb_lend_free(struct vb_conn *vc)
{
	nkv__gpu_in_drop_owner(vc->e, vc); /* waits for copies still reading the slots */
	for (uint32_t i = 0; i < vc->nlend; i++)
		if (vc->lend[i].mr)
			ibv_dereg_mr(vc->lend[i].mr);
	memset(vc->lend, 0, sizeof(vc->lend));
	vc->nlend = 0;
	free(vc->uranges);
	vc->uranges = NULL;
}

/* A unit landed in a lent slot: check it, start its copy to the device.
 * The range list is copied out before it is checked: the peer can still
 * write the slot. */
static int unit_arrived(struct vb_conn *vc, const struct vb_unit *u)
{
	struct nkv_engine *e = vc->e;
	uint32_t seq = le32toh(u->seq), slot = le32toh(u->slot), n = le16toh(u->nranges);
	uint64_t bytes = le64toh(u->bytes), sum = 0;
	struct vb_rslot *s = &vc->rslots[seq % VB_RSLOTS];
	const struct nkv_region *r;
	struct vb_unit_range list[64];

	if (!s->used || s->seq != seq || !s->staged)
		return nkv_err(EPROTO, "a unit for request slot %u without its staged header", seq % VB_RSLOTS);
	if (slot >= vc->nlend || !vc->lend[slot].granted)
		return nkv_err(EPROTO, "a unit in bounce slot %u, which is not lent to the peer", slot);
	if (!n || n > VB_UNIT_RANGES || !bytes || bytes > VB_UNIT_PAYLOAD)
		return nkv_err(EPROTO, "a unit of %u ranges and %llu bytes (limits %u, %zu)", n, (unsigned long long)bytes,
			       VB_UNIT_RANGES, (size_t)VB_UNIT_PAYLOAD);
	r = nkv__region(e, s->region);
	if (!region_staged(r))
		return nkv_err(EPROTO, "a unit for region %u, which is not a staged GPU region here", s->region);
	const uint8_t *desc = nkv__gpu_in_buf(vc->lend[slot].slot);
	for (uint32_t i = 0; i < n; i++) {
		if (i % 64 == 0)
			memcpy(list, desc + i * sizeof(*list), (n - i < 64 ? n - i : 64) * sizeof(*list));
		uint64_t off = le64toh(list[i % 64].off), dst = le64toh(list[i % 64].dst_off), len = le64toh(list[i % 64].len);
		if (!len || off > bytes || len > bytes - off || dst > r->len || len > r->len - dst)
			return nkv_err(EPROTO, "unit range %u (%llu bytes, payload at %llu, region at %llu) outside the "
				       "%llu-byte payload or region %u", i, (unsigned long long)len, (unsigned long long)off,
				       (unsigned long long)dst, (unsigned long long)bytes, r->id);
		vc->uranges[i] = (struct nkv_range){ .src_off = VB_UNIT_DESC + off, .dst_off = dst, .len = len };
		sum += len;
	}
	if (sum > s->bytes - s->queued)
		return nkv_err(EPROTO, "units of request %llu carry more than its %llu bytes", (unsigned long long)s->req_id,
			       (unsigned long long)s->bytes);
	s->queued += sum;
	vc->lend[slot].granted = false;
	return nkv__gpu_in_commit(e, vc->lend[slot].slot, r->ptr, vc->uranges, n, (uint64_t)seq << 32 | slot);
}

/* A unit's copy to the device is done: count it, lend the slot again. */
static void unit_landed(void *owner, uint64_t cookie, uint64_t bytes, int status)
{
	struct vb_conn *vc = owner;
	uint32_t seq = (uint32_t)(cookie >> 32), slot = (uint32_t)cookie;
	struct vb_rslot *s = &vc->rslots[seq % VB_RSLOTS];

	if (vc->failed)
		return;
	if (status)
		return nkv__vb_conn_fail(vc, status, "verbs: copying a unit to the GPU: %s", nkv_last_error());
	if (s->used && s->seq == seq && s->staged && (s->landed += bytes) == s->bytes) {
		s->used = false;
		nkv__recv_done(vc->e, vc->c, s->req_id, s->bytes, s->region, NULL, 0);
	}
	grant(vc, slot);
}

/* Sending side: the peer lends a slot (or says it has none). */
static int credit_arrived(struct vb_conn *vc, const struct vb_credit *m)
{
	struct vb_credit cr = { .slot = le32toh(m->slot), .addr = le64toh(m->addr), .len = le64toh(m->len),
				.rkey = le32toh(m->rkey) };

	if (!cr.len) {
		/* Staged pushes waiting for a first slot sent nothing yet: fail
		 * them alone, the connection stays up for the rest. */
		vc->no_credit = true;
		for (struct vb_req *r = vc->reqs, *next; r; r = next) {
			next = r->next;
			if (!r->dst_staged)
				continue;
			nkv__emitf(vc->e, NKV_EV_PUSH_DONE, vc->c, r->req_id, -ENOSPC, "push %llu: %s",
				   (unsigned long long)r->req_id, NO_SLOT_MSG);
			nkv__vb_req_free(vc, r);
		}
		return 0;
	}
	if (cr.slot >= VB_CREDITS || cr.len < NKV_GPU_IN_BYTES || cr.addr + cr.len < cr.addr)
		return nkv_err(EPROTO, "the peer lent a bad bounce slot (%u: addr 0x%llx len %llu)", cr.slot,
			       (unsigned long long)cr.addr, (unsigned long long)cr.len);
	if (vc->ncredits == sizeof(vc->credits) / sizeof(vc->credits[0]))
		return nkv_err(EPROTO, "the peer lent more bounce slots than it may (%u)", VB_CREDITS);
	vc->credits[vc->ncredits++] = cr;
	return 0;
}

static void recv_done(struct vb_conn *vc, struct vb_qp *q, struct ibv_wc *wc)
{
	struct nkv_engine *e = vc->e;
	const char *dev = VE(e)->dev.name;
	uint32_t slot = (uint32_t)wc->wr_id;


	if (slot >= q->nrecv)
		return nkv__vb_conn_fail(vc, -EPROTO, "verbs %s QP 0x%x: completion for unknown receive %u", dev, q->qpn, slot);
	if (wc->opcode == IBV_WC_RECV) {
		struct vb_hdr h = q->rbuf[slot];
		uint32_t magic = le32toh(h.magic);
		if (wc->byte_len != sizeof(h))
			return nkv__vb_conn_fail(vc, -EPROTO, "verbs %s QP 0x%x: a %u-byte message", dev, q->qpn, wc->byte_len);
		if (vc->refusing)
			return; /* it is being closed */
		if (!q->authed || magic == VB_ERR_MAGIC) {
			nkv__vb_auth_recv(vc, q, &q->rbuf[slot]);
			if (vc->failed || vc->refusing)
				return;
		} else if (magic == VB_CREDIT_MAGIC && !vc->c->passive) {
			int rc = credit_arrived(vc, (const struct vb_credit *)&q->rbuf[slot]);
			if (rc)
				return nkv__vb_conn_fail(vc, rc, "verbs %s QP 0x%x: %s", dev, q->qpn, nkv_last_error());
		} else if (magic == VB_UNIT_MAGIC && vc->c->passive) {
			int rc = unit_arrived(vc, (const struct vb_unit *)&q->rbuf[slot]);
			if (rc)
				return nkv__vb_conn_fail(vc, rc == -EPROTO ? rc : -EIO, "verbs %s QP 0x%x: %s", dev, q->qpn,
						    nkv_last_error());
		} else {
			uint32_t seq = le32toh(h.seq);
			bool staged = le16toh(h.flags) & VB_HDR_STAGED;
			if (magic != VB_HDR_MAGIC || !vc->c->passive || !h.nparts || le16toh(h.nparts) > vc->nqps ||
			    (staged && (le16toh(h.nparts) != 1 || !h.bytes || !region_staged(nkv__region(e, le32toh(h.region))))))
				return nkv__vb_conn_fail(vc, -EPROTO, "verbs %s QP 0x%x: malformed request header", dev, q->qpn);
			struct vb_rslot *s = &vc->rslots[seq % VB_RSLOTS];
			if (s->used && s->seq != seq)
				return nkv__vb_conn_fail(vc, -EPROTO, "verbs %s QP 0x%x: request slot %u reused while in flight",
						    dev, q->qpn, seq % VB_RSLOTS);
			if (!s->used)
				*s = (struct vb_rslot){ .used = true, .staged = staged, .seq = seq, .req_id = le64toh(h.req_id),
							.bytes = le64toh(h.bytes), .region = le32toh(h.region),
							.nparts = le16toh(h.nparts) };
		}
	} else if (!q->authed) {
		return nkv__vb_refuse(vc, q, -EPROTO, VB_WHY_PROTO, "verbs %s QP 0x%x: an RDMA write before the handshake ended",
				      dev, q->qpn);
	} else if (wc->opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
		uint32_t seq = ntohl(wc->imm_data);
		struct vb_rslot *s = vc->c->passive ? &vc->rslots[seq % VB_RSLOTS] : NULL;
		if (!s || !s->used || s->seq != seq || s->staged)
			return nkv__vb_conn_fail(vc, -EPROTO, "verbs %s QP 0x%x: immediate for request slot %u without its header",
					    dev, q->qpn, seq);
		if (++s->seen == s->nparts) {
			s->used = false;
			nkv__recv_done(e, vc->c, s->req_id, s->bytes, s->region, NULL, 0);
		}
	} else {
		return nkv__vb_conn_fail(vc, -EPROTO, "verbs %s QP 0x%x: unexpected receive opcode %d", dev, q->qpn, wc->opcode);
	}
	int err = post_recv(q, slot);
	if (err)
		nkv__vb_conn_fail(vc, -EIO, "verbs %s QP 0x%x: ibv_post_recv: %s", dev, q->qpn, strerror(err));
}

/* Drain the connection's CQ; returns the completions handled. */
int nkv__vb_poll_cq(struct vb_conn *vc)
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
			if (!recv && (wc[i].wr_id & 0xff) == WR_CTRL) {
				nkv__vb_ctrl_sent(vc, q);
				continue;
			}
			if (wc[i].status != IBV_WC_SUCCESS) {
				nkv__vb_conn_fail(vc, wc[i].status == IBV_WC_REM_ACCESS_ERR ? -EACCES : -EIO,
					     "verbs %s QP 0x%x: %s (seq %u) failed: %s (status %d, vendor error 0x%x)",
					     VE(vc->e)->dev.name, q->qpn, wr_kind(wc[i].wr_id, recv),
					     (uint32_t)(wc[i].wr_id >> 8), ibv_wc_status_str(wc[i].status), wc[i].status,
					     wc[i].vendor_err);
				continue;
			}
			if (recv)
				recv_done(vc, q, &wc[i]);
			else if ((wc[i].wr_id & 0xff) == WR_CREDIT)
				vc->credit_out--;
			else
				send_done(vc, q);
		}
		if (n < 32)
			break;
	}
	if (!vc->failed)
		for (uint32_t i = 0; i < vc->nqps; i++)
			if (vc->qps[i].qhead)
				nkv__vb_post_pending(&vc->qps[i]);
	return total;
}

/* How often a busy poll looks at the CM channel (a poll() system call,
 * which under emulation costs as much as a push): every VB_CM_EVERY-th
 * time, and whenever a blocking wait saw the channel readable. */
#define VB_CM_EVERY 64

static int poll_all(struct nkv_engine *e, bool cm)
{
	struct vb_engine *ve = VE(e);
	int n = 0, rc;

	/* Completions before connection events, so a disconnect never
	 * overtakes data that already arrived. */
	for (struct nkv_conn *c = e->conns; c; c = c->next)
		if (c->be)
			n += nkv__vb_poll_cq(c->be);
	/* Units copied to GPU memory: count them, lend their slots again. */
	if ((rc = nkv__gpu_in_reap(e, unit_landed)) > 0)
		n += rc;
	if (!cm && ++ve->cm_skip < VB_CM_EVERY)
		return n;
	ve->cm_skip = 0;
	return n + nkv__vb_cm_events(e);
}

/* Arm every CQ not armed yet (an arm lasts until its event is read, so
 * a wait that returned early leaves it standing: one system call less per
 * wake-up); then wait on the CM and completion channels. */
static int block_wait(struct nkv_engine *e, int ms)
{
	struct vb_engine *ve = VE(e);
	struct pollfd p[2] = { { .fd = ve->cm_ch->fd, .events = POLLIN }, { .fd = ve->comp_ch->fd, .events = POLLIN } };
	int n;

	for (struct nkv_conn *c = e->conns; c; c = c->next) {
		struct vb_conn *vc = c->be;
		if (vc && vc->cq && !vc->armed && !ibv_req_notify_cq(vc->cq, 0))
			vc->armed = true;
	}
	if ((n = poll_all(e, false)))
		return n; /* something slipped in before the arm */
	if (poll(p, 2, ms) < 0 && errno != EINTR)
		return nkv_err(errno, "poll: %s", strerror(errno));
	if (p[1].revents & POLLIN) {
		struct ibv_cq *cq;
		void *ctx;
		if (!ibv_get_cq_event(ve->comp_ch, &cq, &ctx)) {
			((struct vb_conn *)ctx)->armed = false; /* cq_context: see nkv__vb_cq_create */
			ibv_ack_cq_events(cq, 1);
		}
	}
	return poll_all(e, p[0].revents & POLLIN);
}

int nkv__vb_progress(struct nkv_engine *e, int timeout_ms)
{
	struct vb_engine *ve = VE(e);
	uint64_t start = nkv_now_ns(), deadline = timeout_ms < 0 ? UINT64_MAX : start + (uint64_t)timeout_ms * 1000000;
	int n;

	nkv__vb_auth_sweep(e);
	if ((n = poll_all(e, false)) || timeout_ms == 0)
		return n;
	/* Adaptive busy-poll: spin for a budget that grows when work turns up
	 * while spinning and shrinks when it doesn't, then sleep on the channels. */
	if (!ve->event_mode) {
		uint64_t spin_end = start + ve->spin_ns;
		while (nkv_now_ns() < spin_end && nkv_now_ns() < deadline)
			if ((n = poll_all(e, false))) {
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
		nkv__vb_auth_sweep(e);
		ms = deadline == UINT64_MAX ? 1000 : (int)((deadline - now + 999999) / 1000000);
		if (ms > 1000)
			ms = 1000;
		if ((n = block_wait(e, ms)))
			return n;
	}
}
