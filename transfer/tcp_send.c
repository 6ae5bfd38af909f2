/*
 * TCP backend: the sender. A push becomes items (a header and its payload:
 * a piece of a large range, or a DATAV group of small ones) on the
 * connection's queue; each stream takes a batch off it into one sendmsg.
 * Pushes from GPU memory send from pinned staging chunks, let go by the
 * per-connection gate below. The peer's ACK ends a push (tcp_recv.c).
 */
#include "tcp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t item_size(const struct titem *it)
{
	return HDR + it->len;
}

/*
 * The staging gate. The engine's NKV_GPU_OUT_SLOTS chunk slots are shared
 * by every connection, and a chunk keeps its slot until its last byte is
 * sent: without a limit, a peer that stops reading would end up holding
 * all of them and stall pushes to every other peer. So a connection lets
 * at most STAGED_PER_CONN of its chunks be copied out and not yet wholly
 * sent, in the order its queue sends them, and lets the next one go as
 * one finishes. Two keep a healthy connection's pipeline full (the next
 * chunk is copied while one is on the wire).
 *
 * Guarantee: one stalled peer holds at most STAGED_PER_CONN slots, and
 * pushes to other peers go on through the rest. Limit: SLOTS /
 * STAGED_PER_CONN stalled peers (two) can still hold every slot.
 *
 * No deadlock within a connection: what was let go is the oldest unsent
 * chunks of its queue, so either the queue's head is among them or all of
 * them are already taken by streams' sends, which need only the network.
 * Across connections: the pipeline gives slots only to chunks let go, and
 * passes over requests held back, so a free slot always goes to a chunk
 * whose connection can take it.
 */
static void conn_gate(struct tconn *tc)
{
	while (tc->gate && tc->staged_out < STAGED_PER_CONN) {
		struct sreq *sr = tc->gate;
		uint32_t nc = nkv__src_nunits(&sr->src), n;

		if (sr->allowed == nc) {
			tc->gate = sr->next;
			continue;
		}
		n = STAGED_PER_CONN - tc->staged_out;
		if (n > nc - sr->allowed)
			n = nc - sr->allowed;
		sr->allowed += n;
		tc->staged_out += n;
		nkv__src_allow(&sr->src, sr->allowed);
	}
}

static void item_sent(struct tstream *s, struct titem *it)
{
	/* A chunk wholly sent: its connection may let the next one go. */
	if (it->req && nkv__src_sent(&it->req->src, it->unit, it->hdr.len) && s->tc) {
		s->tc->staged_out--;
		if (!s->tc->failed)
			conn_gate(s->tc);
	}
	if (it->heap) { /* control message */
		free(it->owned);
		free(it);
	} else if (it->req && --it->req->unsent == 0 && it->req->acked && s->tc && !s->tc->failed) {
		nkv__tcp_sreq_finish(s->tc, it->req); /* frees it, which lives in req->items */
	}
}

/* An item's pieces in wire order: header, then payload (DATAV: entries, payloads). */
static unsigned item_segments(const struct titem *it, struct iovec *v)
{
	unsigned n = 0;

	v[n++] = (struct iovec){ (void *)&it->hdr, HDR };
	if (it->vec) {
		v[n++] = (struct iovec){ it->vec, it->nvec * sizeof(*it->vec) };
		for (unsigned i = 0; i < it->nvec; i++)
			v[n++] = (struct iovec){ (void *)it->vdata[i], it->vec[i].len };
	} else if (it->len) {
		v[n++] = (struct iovec){ (void *)it->data, it->len };
	}
	return n;
}

static unsigned item_niov(const struct titem *it)
{
	return it->vec ? 2 + it->nvec : it->len ? 2 : 1;
}

/* Fill the iovecs from the batch, starting first_off bytes into batch[0]. */
static unsigned batch_iov(struct tstream *s)
{
	struct iovec seg[NKV_WIRE_MAX_VEC + 2];
	unsigned n = 0;

	for (unsigned i = 0; i < s->nbatch; i++) {
		unsigned k = item_segments(s->batch[i], seg);
		uint64_t skip = i == 0 ? s->first_off : 0;

		for (unsigned j = 0; j < k; j++) {
			if (skip >= seg[j].iov_len) {
				skip -= seg[j].iov_len;
				continue;
			}
			s->siov[n].iov_base = (char *)seg[j].iov_base + skip;
			s->siov[n++].iov_len = seg[j].iov_len - skip;
			skip = 0;
		}
	}
	return n;
}

static void post_send(struct tstream *s)
{
	struct io_uring_sqe *sqe = nkv__tcp_sqe(s->te);

	memset(&s->smsg, 0, sizeof(s->smsg));
	s->smsg.msg_iov = s->siov;
	s->smsg.msg_iovlen = batch_iov(s);
	io_uring_prep_sendmsg(sqe, s->fd, &s->smsg, MSG_NOSIGNAL | MSG_WAITALL);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)s | OP_SEND);
	s->send_busy = true;
	s->te->inflight++;
}

/* An item's unit is ready (host memory always; a staged chunk once copied
 * out): point its payload there. False while the copy is running (or after
 * a failure, which fails the connection: the receiver holds part of the
 * request). */
static bool item_ready(struct tconn *tc, struct titem *it)
{
	uint64_t base;
	int rc;

	if (it->resolved)
		return true;
	if ((rc = nkv__src_ready(&it->req->src, it->unit, &base)) <= 0) {
		if (rc < 0)
			nkv__tcp_conn_fail(tc, rc, "request %llu: %s", (unsigned long long)it->req->req_id, nkv_last_error());
		return false;
	}
	if (it->vec) /* each entry's source was put in vdata when it was built */
		for (unsigned i = 0; i < it->nvec; i++)
			it->vdata[i] = (const void *)(uintptr_t)(base + (uintptr_t)it->vdata[i]);
	else
		it->data = (const void *)(uintptr_t)(base + it->src);
	it->resolved = true;
	return true;
}

void nkv__tcp_try_send(struct tstream *s)
{
	struct tconn *tc = s->tc;
	uint64_t bytes = 0;
	struct titem *it;

	if (s->send_busy || s->dead)
		return;
	s->nbatch = 0;
	s->first_off = 0;
	s->niov = 0;
	/* Control messages first: ACKs unblock the peer's completions. */
	while (s->nbatch < MAX_BATCH_ITEMS && s->niov + 2 <= MAX_BATCH_IOV && (it = q_pop(&s->ctrl))) {
		s->batch[s->nbatch++] = it;
		s->niov += item_niov(it);
		bytes += item_size(it);
	}
	/* Then pieces off the connection's shared queue, while the batch has
	 * room and (GPU sources) while their staging chunk is in host memory. */
	if (tc && tc->up && !tc->failed)
		while (s->nbatch < MAX_BATCH_ITEMS && bytes < MAX_BATCH_BYTES && tc->fifo.head &&
		       s->niov + item_niov(tc->fifo.head) <= MAX_BATCH_IOV && item_ready(tc, tc->fifo.head)) {
			it = q_pop(&tc->fifo);
			s->batch[s->nbatch++] = it;
			s->niov += item_niov(it);
			bytes += item_size(it);
		}
	if (s->nbatch)
		post_send(s);
}

void nkv__tcp_on_send(struct tstream *s, int res)
{
	uint64_t done;

	s->send_busy = false;
	if (res == -ECANCELED && !s->dead) {
		/* The thread that submitted it exited: nothing was sent, go again. */
		post_send(s);
		return;
	}
	if (res < 0) {
		if (s->tc)
			nkv__tcp_conn_fail(s->tc, res, "send on stream %u: %s", s->idx, strerror(-res));
		s->dead = true;
		s->te->reap = true;
		return;
	}
	done = (uint64_t)res;
	while (s->nbatch) {
		uint64_t left = item_size(s->batch[0]) - s->first_off;
		if (done < left) {
			s->first_off += done;
			break;
		}
		done -= left;
		item_sent(s, s->batch[0]);
		memmove(s->batch, s->batch + 1, (s->nbatch - 1) * sizeof(s->batch[0]));
		s->nbatch--;
		s->first_off = 0;
	}
	if (s->nbatch && !s->dead)
		post_send(s); /* a short send: the rest of the batch */
	else if (!s->nbatch && !s->ctrl.head && s->refused && !s->tc)
		nkv__tcp_pending_drop(s, "refused"); /* its ERROR is out: close */
}

void nkv__tcp_queue_ctrl(struct tstream *s, uint16_t type, uint64_t req_id, uint64_t offset, void *payload,
		       uint64_t len)
{
	struct titem *it = calloc(1, sizeof(*it));

	if (!it) {
		free(payload);
		if (s->tc)
			nkv__tcp_conn_fail(s->tc, -ENOMEM, "out of memory queueing a reply");
		return;
	}
	hdr_init(&it->hdr, type);
	it->hdr.req_id = req_id;
	it->hdr.offset = offset;
	it->hdr.len = len;
	it->data = payload;
	it->len = len;
	it->owned = payload;
	it->heap = true;
	it->resolved = true;
	q_push(&s->ctrl, it);
}

int nkv__tcp_push(struct nkv_conn *c, struct nkv_push_req *req)
{
	struct tconn *tc = c->be;
	size_t nr, k = 0;
	uint64_t total = nkv_plan_bytes(req->plan), piece;
	struct nkv_send_src src;
	struct sreq *sr;
	int rc;

	if (!tc || tc->failed) {
		free(req->sums);
		return nkv_err(ENOTCONN, "push %llu: connection is down%s%s", (unsigned long long)req->req_id,
			       tc ? ": " : "", tc ? tc->fail_reason : "");
	}
	for (sr = tc->oldest; sr; sr = sr->next)
		if (sr->req_id == req->req_id) {
			free(req->sums);
			return nkv_err(EEXIST, "push %llu: a request with this id is already in flight",
				       (unsigned long long)req->req_id);
		}
	/* Cut ranges so one request spreads over all streams, but never into
	 * pieces so small that headers and syscalls dominate. */
	piece = (total + tc->nstreams - 1) / tc->nstreams;
	piece = piece < MIN_PIECE ? MIN_PIECE : piece > MAX_PIECE ? MAX_PIECE : piece;
	/* A GPU source sends the staging plan's ranges (the plan's, cut at
	 * chunk boundaries) from pinned chunks as they are copied; a host
	 * source its plan's ranges as they are. */
	if ((rc = nkv__src_open(c->e, req->src, req->plan, req->src->kind == NKV_MEM_CUDA, NKV_GPU_CHUNK,
				NKV_GPU_CHUNK_RANGES, false, &src))) {
		free(req->sums);
		return nkv_err_wrap(rc, "push %llu from GPU region %u", (unsigned long long)req->req_id, req->src->id);
	}
	nr = nkv__src_count(&src);
	if (!(sr = calloc(1, sizeof(*sr)))) {
		nkv__src_close(&src);
		free(req->sums);
		return nkv_err(ENOMEM, "push: out of memory");
	}
	sr->src = src;
	/* Upper bounds: large ranges cut into pieces, small ones one item each
	 * at most (they are grouped into DATAV messages below). */
	size_t nsmall = 0, cap = 0;
	for (size_t i = 0; i < nr; i++) {
		uint64_t len = nkv__src_range(&src, i).len;
		if (len < VEC_RANGE_MAX)
			nsmall++;
		else
			cap += (len + piece - 1) / piece;
	}
	cap += nsmall + (req->sums ? 1 : 0);
	sr->items = calloc(cap, sizeof(*sr->items));
	sr->vents = nsmall ? malloc(nsmall * sizeof(*sr->vents)) : NULL;
	sr->vdata = nsmall ? malloc(nsmall * sizeof(*sr->vdata)) : NULL;
	if (!sr->items || (nsmall && (!sr->vents || !sr->vdata))) {
		free(sr->items);
		free(sr->vents);
		free(sr->vdata);
		free(sr);
		nkv__src_close(&src);
		free(req->sums);
		return nkv_err(ENOMEM, "push: out of memory for %zu pieces", cap);
	}
	sr->req_id = req->req_id;
	sr->total = total;
	sr->sums = req->sums;
	size_t nv = 0;
	struct titem *group = NULL; /* open DATAV group */
	uint64_t gbytes = 0;
	for (size_t i = 0; i < nr; i++) {
		/* This range: from the plan, or a staged piece of it. */
		struct nkv_send_range g = nkv__src_range(&src, i);
		uint64_t rlen = g.len;

		if (rlen < VEC_RANGE_MAX) {
			/* Blocks that did not coalesce: many ranges, one message,
			 * one scattered receive on the other side. A group never
			 * spans two staging chunks. */
			if (!group || group->nvec == NKV_WIRE_MAX_VEC || gbytes + rlen > piece || group->unit != g.unit) {
				group = &sr->items[k++];
				hdr_init(&group->hdr, NKV_W_DATAV);
				group->hdr.region = req->dst->id;
				group->hdr.flags = req->sums ? NKV_WF_VERIFY : 0;
				group->hdr.req_id = req->req_id;
				group->hdr.total = total;
				group->vec = &sr->vents[nv];
				group->vdata = &sr->vdata[nv];
				group->req = sr;
				group->unit = g.unit;
				gbytes = 0;
			}
			sr->vents[nv] = (struct nkv_wire_vent){ .offset = g.dst_off, .len = rlen };
			sr->vdata[nv++] = (const void *)(uintptr_t)g.src; /* item_ready() adds the unit's base */
			group->nvec++;
			group->hdr.offset = group->nvec;
			group->hdr.len += rlen;
			group->len = group->nvec * sizeof(struct nkv_wire_vent) + group->hdr.len;
			gbytes += rlen;
			continue;
		}
		group = NULL;
		for (uint64_t off = 0; off < rlen; off += piece) {
			struct titem *it = &sr->items[k++];
			uint64_t len = rlen - off < piece ? rlen - off : piece;

			hdr_init(&it->hdr, NKV_W_DATA);
			it->hdr.region = req->dst->id;
			it->hdr.flags = req->sums ? NKV_WF_VERIFY : 0;
			it->hdr.offset = g.dst_off + off;
			it->hdr.len = len;
			it->hdr.req_id = req->req_id;
			it->hdr.total = total;
			it->len = len;
			it->req = sr;
			it->unit = g.unit;
			it->src = g.src + off;
		}
	}
	sr->items[k - 1].hdr.flags |= NKV_WF_LAST;
	if (req->sums) {
		struct titem *it = &sr->items[k++];

		hdr_init(&it->hdr, NKV_W_SUMS);
		it->hdr.region = req->dst->id;
		it->hdr.flags = NKV_WF_VERIFY;
		it->hdr.len = req->nsums * sizeof(struct nkv_block_sum);
		it->hdr.req_id = req->req_id;
		it->hdr.total = total;
		it->data = req->sums;
		it->len = it->hdr.len;
		it->req = sr;
		it->unit = NKV_NO_UNIT;
		it->resolved = true;
	}
	sr->nitems = k;
	sr->unsent = sr->nitems;
	for (size_t i = 0; i < sr->nitems; i++)
		q_push(&tc->fifo, &sr->items[i]);
	sr->prev = tc->newest;
	if (tc->newest)
		tc->newest->next = sr;
	else
		tc->oldest = sr;
	tc->newest = sr;
	if (nkv__src_staged(&sr->src) && !tc->gate)
		tc->gate = sr;
	conn_gate(tc);
	/* Queued for the ring; the next nkv_poll() submits, so a burst of
	 * pushes costs one system call. */
	for (unsigned i = 0; i < tc->nstreams; i++)
		nkv__tcp_try_send(tc->s[i]);
	return 0;
}

void nkv__tcp_sreq_free(struct tconn *tc, struct sreq *sr)
{
	if (tc->gate == sr)
		tc->gate = sr->next;
	if (sr->prev)
		sr->prev->next = sr->next;
	else
		tc->oldest = sr->next;
	if (sr->next)
		sr->next->prev = sr->prev;
	else
		tc->newest = sr->prev;
	free(sr->items);
	free(sr->vents);
	free(sr->vdata);
	free(sr->sums);
	nkv__src_close(&sr->src);
	free(sr);
}

void nkv__tcp_sreq_finish(struct tconn *tc, struct sreq *sr)
{
	struct nkv_event ev = { .type = NKV_EV_PUSH_DONE, .status = sr->ack_status, .req_id = sr->req_id,
				.bytes = sr->total, .conn = tc->c };

	if (ev.status > 0 || ev.status < -4095)
		ev.status = -EPROTO;
	if (ev.status)
		snprintf(ev.reason, sizeof(ev.reason), "the receiver reported: %s%s", strerror(-ev.status),
			 ev.status == -EBADMSG ? " (block checksum mismatch)" :
			 ev.status == -ECANCELED ? " (it revoked the request's grant; nothing of it was written after)" : "");
	nkv__emit(tc->te->e, &ev);
	nkv__tcp_sreq_free(tc, sr);
}
