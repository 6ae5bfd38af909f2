/*
 * TCP backend: the receiver. Each stream runs a small state machine (header,
 * payload, checksum list, DATAV entries, DATAV payload) and checks every
 * header against the registered regions before a byte lands: a peer can
 * never write outside a region, overrun a request, or open unbounded state.
 * Payloads for GPU regions arrive in a pinned slot and count once copied to
 * the device (gpu_unit.c). The sender's side of the ACK is handled here too.
 */
#include "tcp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static struct rreq **rreq_slot(struct tconn *tc, uint64_t req_id)
{
	struct rreq **pp = &tc->rbuckets[(req_id * 0x9E3779B97F4A7C15ull) >> 54];

	while (*pp && (*pp)->req_id != req_id)
		pp = &(*pp)->hnext;
	return pp;
}

void nkv__tcp_rreq_remove(struct tconn *tc, struct rreq *rq)
{
	struct rreq **pp = rreq_slot(tc, rq->req_id);

	if (*pp == rq) {
		*pp = rq->hnext;
		tc->nrreqs--;
	}
	tc->nranges -= rq->caprg;
	tc->te->nranges -= rq->caprg;
	free(rq->rg);
	if (rq->sums) {
		tc->sums_bytes -= rq->nsums * sizeof(struct nkv_block_sum);
		tc->te->sums_bytes -= rq->nsums * sizeof(struct nkv_block_sum);
	}
	free(rq->sums);
	free(rq);
}

static void post_recv(struct tstream *s)
{
	struct io_uring_sqe *sqe = nkv__tcp_sqe(s->te);
	int flags = 0;

	memset(&s->rmsg, 0, sizeof(s->rmsg));
	s->rmsg.msg_iov = s->riov;
	if (s->rs == R_HDR) {
		s->riov[0] = (struct iovec){ (char *)&s->h + s->hgot, HDR - s->hgot };
		s->rmsg.msg_iovlen = 1;
	} else if (s->rs == R_SKIP) {
		s->riov[0] = (struct iovec){ s->te->skip, s->dlen - s->dgot < SKIP_BUF ? s->dlen - s->dgot : SKIP_BUF };
		s->rmsg.msg_iovlen = 1;
	} else if (s->rs == R_VENT || s->rs == R_CTL) {
		s->riov[0] = (struct iovec){ s->dst + s->dgot, s->dlen - s->dgot };
		s->rmsg.msg_iovlen = 1;
		flags = MSG_WAITALL;
	} else if (s->rs == R_VDATA) {
		/* Scattered straight into the region, from where we are (GPU
		 * region: packed into the pinned slot, scattered on the GPU). */
		uint64_t skip = s->dgot;
		unsigned n = 0;
		bool packed = nkv__rx_packed(&s->rx);

		if (packed)
			s->riov[n++] = (struct iovec){ nkv__rx_buf(&s->rx) + s->dgot, s->dlen - s->dgot };
		for (unsigned i = 0; i < s->nvent && !packed; i++) {
			if (skip >= s->vent[i].len) {
				skip -= s->vent[i].len;
				continue;
			}
			s->riov[n++] = (struct iovec){ s->vbase + s->vent[i].offset + skip, s->vent[i].len - skip };
			skip = 0;
		}
		if (s->dlen - s->dgot >= WAITALL_MIN) {
			flags = MSG_WAITALL;
		} else {
			s->riov[n++] = (struct iovec){ &s->h, HDR };
			s->hgot = 0;
		}
		s->rmsg.msg_iovlen = n;
	} else {
		/* The payload, and with it (if already there) the next header.
		 * A large remainder is received whole instead (MSG_WAITALL: the
		 * kernel retries, one completion; ~10% less CPU per byte). */
		s->riov[0] = (struct iovec){ s->dst + s->dgot, s->dlen - s->dgot };
		s->riov[1] = (struct iovec){ &s->h, HDR };
		s->hgot = 0;
		s->rmsg.msg_iovlen = 2;
		if (s->dlen - s->dgot >= WAITALL_MIN) {
			s->rmsg.msg_iovlen = 1;
			flags = MSG_WAITALL;
		}
	}
	io_uring_prep_recvmsg(sqe, s->fd, &s->rmsg, flags);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)s | OP_RECV);
	s->recv_busy = true;
	s->te->inflight++;
}

/* Record a destination range of rq. 0, or -1 after failing the connection. */
static int rreq_note(struct tstream *s, struct rreq *rq, uint64_t off, uint64_t len)
{
	struct tconn *tc = s->tc;
	struct nkv_wire_vent *last = rq->nrg ? &rq->rg[rq->nrg - 1] : NULL;

	if (last && last->offset + last->len == off) {
		last->len += len;
		return 0;
	}
	if (last && off < last->offset + last->len)
		rq->unsorted = true; /* only then does completion sort */
	if (rq->nrg == rq->caprg) {
		size_t room_conn = RANGES_CONN - tc->nranges, room_eng = RANGES_ENGINE - tc->te->nranges;
		size_t more = rq->caprg ? rq->caprg : 8;
		struct nkv_wire_vent *n;

		/* Grow by doubling, but never past the budget: the last step takes
		 * what is left, so one large request does not reserve it all. */
		if (more > room_conn)
			more = room_conn;
		if (more > room_eng)
			more = room_eng;
		if (!more) {
			nkv__tcp_conn_fail(tc, -ENOBUFS, "stream %u: request %llu: more than %u separate ranges held per %s",
					   s->idx, (unsigned long long)rq->req_id, room_conn ? RANGES_ENGINE : RANGES_CONN,
					   room_conn ? "engine" : "connection");
			return -1;
		}
		if (!(n = realloc(rq->rg, (rq->caprg + more) * sizeof(*n)))) {
			nkv__tcp_conn_fail(tc, -ENOMEM, "out of memory for request %llu's ranges", (unsigned long long)rq->req_id);
			return -1;
		}
		rq->rg = n;
		rq->caprg += more;
		tc->nranges += more;
		tc->te->nranges += more;
	}
	rq->rg[rq->nrg++] = (struct nkv_wire_vent){ off, len };
	return 0;
}

static int cmp_vent(const void *a, const void *b)
{
	const struct nkv_wire_vent *x = a, *y = b;

	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static void rreq_complete(struct tstream *s, struct rreq *rq)
{
	struct tconn *tc = s->tc;
	int st;

	if (rq->discard) {
		nkv__emitf(tc->te->e, NKV_EV_RECV, tc->c, rq->req_id, -ECANCELED, "request %llu: its grant was revoked; "
			   "%llu of its %llu bytes came after and were dropped", (unsigned long long)rq->req_id,
			   (unsigned long long)rq->skipped, (unsigned long long)rq->total);
		nkv__tcp_queue_ctrl(s, NKV_W_ACK, rq->req_id, (uint64_t)(int64_t)-ECANCELED, NULL, 0);
		nkv__tcp_rreq_remove(tc, rq);
		return;
	}
	/* Every byte counted once: no two ranges may overlap. Ranges that came
	 * in ascending order need no sort (the check below is then linear). */
	if (rq->unsorted)
		qsort(rq->rg, rq->nrg, sizeof(*rq->rg), cmp_vent);
	for (size_t i = 1; i < rq->nrg; i++)
		if (rq->rg[i].offset < rq->rg[i - 1].offset + rq->rg[i - 1].len) {
			nkv__tcp_conn_fail(tc, -EPROTO, "stream %u: request %llu: ranges [%llu, +%llu) and [%llu, +%llu) "
					   "overlap", s->idx, (unsigned long long)rq->req_id,
					   (unsigned long long)rq->rg[i - 1].offset, (unsigned long long)rq->rg[i - 1].len,
					   (unsigned long long)rq->rg[i].offset, (unsigned long long)rq->rg[i].len);
			return;
		}
	st = nkv__recv_done(tc->te->e, tc->c, rq->req_id, rq->got, rq->region, rq->sums, rq->nsums);

	nkv__tcp_queue_ctrl(s, NKV_W_ACK, rq->req_id, (uint64_t)(int64_t)st, NULL, 0);
	nkv__tcp_rreq_remove(tc, rq);
}

static void maybe_complete(struct tstream *s, struct rreq *rq)
{
	if (rq->got == rq->total && (!rq->want_sums || rq->have_sums))
		rreq_complete(s, rq);
}

/* A revoked request's payload: read into scratch and dropped (R_SKIP).
 * Returns 0, or -1 after failing the connection. */
static int skip_payload(struct tstream *s, struct rreq *rq, uint64_t len)
{
	if (!s->te->skip && !(s->te->skip = malloc(SKIP_BUF))) {
		nkv__tcp_conn_fail(s->tc, -ENOMEM, "out of memory for a revoked request's bytes");
		return -1;
	}
	rq->discard = true;
	s->rs = R_SKIP;
	s->cur = rq;
	s->dlen = len;
	s->dgot = 0;
	return 0;
}

/* A header has fully arrived on an attached stream: check it and set up
 * the payload. Returns 0, or -1 after failing the connection. */
static int on_header(struct tstream *s)
{
	struct tconn *tc = s->tc;
	struct nkv_engine *e = s->te->e;
	struct nkv_wire_hdr *h = &s->h;
	struct nkv_region *r;
	struct rreq **slot, *rq;
	bool sums = h->type == NKV_W_SUMS, vec = h->type == NKV_W_DATAV, fresh = false;

	if (h->magic != NKV_WIRE_MAGIC) {
		nkv__tcp_conn_fail(tc, -EPROTO, "stream %u: bad header magic 0x%08x", s->idx, h->magic);
		return -1;
	}
	if (h->version != NKV_WIRE_VERSION) {
		nkv__tcp_conn_fail(tc, -EPROTO, "stream %u: protocol version %u, expected %u", s->idx, h->version, NKV_WIRE_VERSION);
		return -1;
	}
	if (h->type == NKV_W_ERROR) {
		if (h->len > NKV_WIRE_MAX_ERROR) {
			nkv__tcp_conn_fail(tc, -EPROTO, "stream %u: error message of %llu bytes (at most %u)", s->idx,
					   (unsigned long long)h->len, NKV_WIRE_MAX_ERROR);
			return -1;
		}
		s->dst = (uint8_t *)s->emsg;
		s->dlen = h->len;
		s->dgot = 0;
		s->rs = R_CTL;
		if (!h->len)
			nkv__tcp_on_ctl(s);
		return 0;
	}
	if (!tc->c->passive) {
		struct sreq *sr;

		if (h->type != NKV_W_ACK || h->len) {
			nkv__tcp_conn_fail(tc, -EPROTO, "stream %u: unexpected message type %u from the receiver", s->idx, h->type);
			return -1;
		}
		for (sr = tc->oldest; sr && sr->req_id != h->req_id; sr = sr->next)
			;
		if (!sr || sr->acked) {
			nkv__tcp_conn_fail(tc, -EPROTO, "stream %u: acknowledgement for request %llu, which is not in flight",
				  s->idx, (unsigned long long)h->req_id);
			return -1;
		}
		sr->acked = true;
		sr->ack_status = (int)(int64_t)h->offset;
		if (!sr->unsent)
			nkv__tcp_sreq_finish(tc, sr);
		return 0;
	}
	if (h->type != NKV_W_DATA && h->type != NKV_W_SUMS && h->type != NKV_W_DATAV) {
		nkv__tcp_conn_fail(tc, -EPROTO, "stream %u: unexpected message type %u", s->idx, h->type);
		return -1;
	}
	if (!(r = nkv__region(e, h->region))) {
		nkv__tcp_conn_fail(tc, -EPROTO, "stream %u: request %llu names region %u, which is not registered", s->idx,
			  (unsigned long long)h->req_id, h->region);
		return -1;
	}
	if (!h->total || !h->len) {
		nkv__tcp_conn_fail(tc, -EPROTO, "stream %u: request %llu: zero-length %s", s->idx, (unsigned long long)h->req_id,
			  h->total ? "range" : "request");
		return -1;
	}
	if (vec && (!h->offset || h->offset > NKV_WIRE_MAX_VEC)) {
		nkv__tcp_conn_fail(tc, -EPROTO, "stream %u: request %llu: vector of %llu ranges (1..%u allowed)", s->idx,
			  (unsigned long long)h->req_id, (unsigned long long)h->offset, NKV_WIRE_MAX_VEC);
		return -1;
	}
	if (!sums && !vec && (h->offset > r->len || h->len > r->len - h->offset)) {
		nkv__tcp_conn_fail(tc, -EPROTO, "stream %u: request %llu: range [%llu, +%llu) outside region %u of %llu bytes",
			  s->idx, (unsigned long long)h->req_id, (unsigned long long)h->offset,
			  (unsigned long long)h->len, h->region, (unsigned long long)r->len);
		return -1;
	}
	if (!sums && r->kind == NKV_MEM_CUDA && h->len > NKV_GPU_IN_BYTES) {
		nkv__tcp_conn_fail(tc, -EPROTO, "stream %u: request %llu: payload of %llu bytes for GPU region %u exceeds the "
				       "%u-byte staging slot (netkv senders cut ranges to %u bytes)", s->idx,
			  (unsigned long long)h->req_id, (unsigned long long)h->len, h->region, NKV_GPU_IN_BYTES,
			  MAX_PIECE);
		return -1;
	}
	if (sums && (h->len % sizeof(struct nkv_block_sum) || h->len / sizeof(struct nkv_block_sum) > MAX_SUMS)) {
		nkv__tcp_conn_fail(tc, -EPROTO, "stream %u: request %llu: checksum list of %llu bytes is malformed "
				       "(a whole number of %zu-byte sums, at most %u)", s->idx,
			  (unsigned long long)h->req_id, (unsigned long long)h->len, sizeof(struct nkv_block_sum), MAX_SUMS);
		return -1;
	}
	/* A region that requires grants: the request must hold one for it, and
	 * (DATA) this range must lie inside it; DATAV entries are checked in
	 * vent_done(). Refused before any state is made or byte written. */
	bool drop = false;
	if (r->granted) {
		char why[160];
		const struct nkv_grant *g = NULL;
		/* A grant revoked lately (the request ended on the receiver while its
		 * sender still pushed): read the rest and drop it, answer -ECANCELED,
		 * and leave the connection's other requests be. */
		if (!nkv__grant_find(e, h->req_id) && nkv__grant_revoked(e, h->req_id, h->region))
			drop = true;
		else if (!(g = nkv__grant_for(e, r, tc->c, h->req_id, h->total, why, sizeof(why)))) {
			nkv__tcp_conn_fail(tc, -EACCES, "stream %u: refused: %s", s->idx, why);
			return -1;
		}
		if (g && !sums && !vec && !nkv__grant_covers(g, h->offset, h->len)) {
			nkv__tcp_conn_fail(tc, -EACCES, "stream %u: refused: request %llu: range [%llu, +%llu) of region %u "
					   "is outside its grant", s->idx, (unsigned long long)h->req_id,
					   (unsigned long long)h->offset, (unsigned long long)h->len, h->region);
			return -1;
		}
	}
	slot = rreq_slot(tc, h->req_id);
	/* A request the peer never sent a valid byte for is not reported as
	 * dropped: a rejected first header removes the entry it made. */
	if (!(rq = *slot)) {
		fresh = true;
		if (tc->nrreqs >= MAX_RREQS) {
			nkv__tcp_conn_fail(tc, -EPROTO, "more than %u requests open at once", MAX_RREQS);
			return -1;
		}
		if (!(rq = calloc(1, sizeof(*rq)))) {
			nkv__tcp_conn_fail(tc, -ENOMEM, "out of memory for request %llu", (unsigned long long)h->req_id);
			return -1;
		}
		rq->req_id = h->req_id;
		rq->total = h->total;
		rq->region = h->region;
		rq->want_sums = h->flags & NKV_WF_VERIFY;
		*slot = rq;
		tc->nrreqs++;
	}
	if (rq->total != h->total || rq->region != h->region || rq->want_sums != !!(h->flags & NKV_WF_VERIFY)) {
		if (fresh)
			nkv__tcp_rreq_remove(tc, rq);
		nkv__tcp_conn_fail(tc, -EPROTO, "stream %u: request %llu: header disagrees with the request's earlier ones "
				       "(size, region or verify flag)", s->idx, (unsigned long long)h->req_id);
		return -1;
	}
	if (drop)
		rq->discard = true; /* bytes that landed before the revoke stay where they are */
	if (sums) {
		if (!rq->want_sums || rq->have_sums || rq->sums) {
			uint64_t id = h->req_id;
			if (fresh)
				nkv__tcp_rreq_remove(tc, rq);
			nkv__tcp_conn_fail(tc, -EPROTO, "stream %u: request %llu: unexpected checksum list", s->idx,
				  (unsigned long long)id);
			return -1;
		}
		if (rq->discard)
			return skip_payload(s, rq, h->len);
		if (tc->sums_bytes + h->len > SUMS_CONN_BYTES || s->te->sums_bytes + h->len > SUMS_ENGINE_BYTES) {
			bool conn = tc->sums_bytes + h->len > SUMS_CONN_BYTES;
			uint64_t id = h->req_id;
			if (fresh)
				nkv__tcp_rreq_remove(tc, rq);
			nkv__tcp_conn_fail(tc, -ENOBUFS, "stream %u: request %llu: checksum list of %llu bytes would hold more "
					   "than the %u MiB of checksums allowed per %s", s->idx, (unsigned long long)id,
					   (unsigned long long)h->len, (conn ? SUMS_CONN_BYTES : SUMS_ENGINE_BYTES) >> 20,
					   conn ? "connection" : "engine");
			return -1;
		}
		if (!(rq->sums = malloc(h->len))) {
			nkv__tcp_conn_fail(tc, -ENOMEM, "out of memory for checksums");
			return -1;
		}
		rq->nsums = h->len / sizeof(struct nkv_block_sum);
		tc->sums_bytes += h->len;
		s->te->sums_bytes += h->len;
		s->dst = (uint8_t *)rq->sums;
		s->rs = R_SUMS;
	} else {
		if (h->len > rq->total - rq->claimed) {
			uint64_t total = rq->total;
			if (fresh)
				nkv__tcp_rreq_remove(tc, rq);
			nkv__tcp_conn_fail(tc, -EPROTO, "stream %u: request %llu: more bytes than its announced %llu", s->idx,
				  (unsigned long long)h->req_id, (unsigned long long)total);
			return -1;
		}
		/* Claimed now so concurrent streams cannot overrun the request;
		 * it completes only once every payload is in. */
		rq->claimed += h->len;
		if (vec) {
			/* First the entries; vent_done() checks them. */
			s->nvent = (unsigned)h->offset;
			s->vbase = r->ptr;
			s->vrlen = r->len;
			s->vpay = h->len;
			if (!rq->discard)
				nkv__rx_begin(&s->rx, r, 0); /* GPU: payload into a slot, see rx_ready() */
			s->dst = (uint8_t *)s->vent;
			s->rs = R_VENT;
			s->cur = rq;
			s->dlen = s->nvent * sizeof(struct nkv_wire_vent);
			s->dgot = 0;
			return 0;
		}
		if (rq->discard)
			return skip_payload(s, rq, h->len);
		if (rreq_note(s, rq, h->offset, h->len))
			return -1;
		s->rs = R_DATA;
		s->doff = h->offset;
		nkv__rx_begin(&s->rx, r, h->offset); /* s->dst set by rx_ready() */
		s->dst = NULL;
	}
	s->cur = rq;
	s->dlen = h->len;
	s->dgot = 0;
	return 0;
}

/* A DATAV's entries are in: each must lie inside the region (and its
 * grant, where the region requires them) and together they must add up to
 * the payload the header announced. */
static int vent_done(struct tstream *s)
{
	const struct nkv_region *r = nkv__region(s->te->e, s->h.region);
	const struct nkv_grant *g = NULL;
	uint64_t sum = 0;
	char why[200], gwhy[160];
	int st = 0;

	if (s->cur->discard)
		return skip_payload(s, s->cur, s->vpay);
	why[0] = 0;
	/* Looked up again: the application may have revoked it since the header
	 * (then dropped like bytes that come after a revoke, see on_header()). */
	if (r && r->granted && !nkv__grant_find(s->te->e, s->h.req_id) &&
	    nkv__grant_revoked(s->te->e, s->h.req_id, s->h.region))
		return skip_payload(s, s->cur, s->vpay);
	if (r && r->granted &&
	    !(g = nkv__grant_for(s->te->e, r, s->tc->c, s->h.req_id, s->h.total, gwhy, sizeof(gwhy)))) {
		st = -EACCES;
		snprintf(why, sizeof(why), "refused: %s", gwhy);
	}
	for (unsigned i = 0; i < s->nvent && !why[0]; i++) {
		const struct nkv_wire_vent *v = &s->vent[i];

		if (!v->len || v->offset > s->vrlen || v->len > s->vrlen - v->offset) {
			st = -EPROTO;
			snprintf(why, sizeof(why), "vector entry %u [%llu, +%llu) outside region %u of %llu bytes", i,
				 (unsigned long long)v->offset, (unsigned long long)v->len, s->h.region,
				 (unsigned long long)s->vrlen);
		} else if (g && !nkv__grant_covers(g, v->offset, v->len)) {
			st = -EACCES;
			snprintf(why, sizeof(why), "refused: vector entry %u: range [%llu, +%llu) of region %u is outside "
				 "its grant", i, (unsigned long long)v->offset, (unsigned long long)v->len, s->h.region);
		} else {
			sum += v->len;
		}
	}
	if (!why[0] && sum != s->vpay) {
		st = -EPROTO;
		snprintf(why, sizeof(why), "vector entries add up to %llu bytes, header says %llu",
			 (unsigned long long)sum, (unsigned long long)s->vpay);
	}
	if (why[0]) {
		/* A request this message opened is forgotten, not reported dropped:
		 * nothing of it was accepted. */
		if (s->cur->claimed == s->vpay) {
			nkv__tcp_rreq_remove(s->tc, s->cur);
			s->cur = NULL;
		}
		nkv__tcp_conn_fail(s->tc, st, "stream %u: request %llu: %s", s->idx, (unsigned long long)s->h.req_id, why);
		return -1;
	}
	for (unsigned i = 0; i < s->nvent; i++)
		if (rreq_note(s, s->cur, s->vent[i].offset, s->vent[i].len))
			return -1;
	s->rs = R_VDATA;
	s->dlen = s->vpay;
	s->dgot = 0;
	return 0;
}

/* A payload is in: in place already (host), or in the pinned slot, to be
 * copied to the device (GPU; its bytes count once that copy is done, see
 * gpu_in_done). 1: in place, 0: copying, <0: failed the connection. */
static int deliver(struct tstream *s, struct rreq *rq)
{
	struct nkv_range r[NKV_WIRE_MAX_VEC];
	uint32_t n = 0;
	uint64_t off = 0;
	int rc;

	if (s->rs == R_DATA) {
		r[n++] = (struct nkv_range){ .src_off = 0, .dst_off = s->doff, .len = s->dlen };
	} else {
		for (unsigned i = 0; i < s->nvent; i++) {
			r[n++] = (struct nkv_range){ .src_off = off, .dst_off = s->vent[i].offset, .len = s->vent[i].len };
			off += s->vent[i].len;
		}
	}
	rc = nkv__rx_deliver(s->te->e, &s->rx, r, n, rq->req_id);
	if (rc < 0) {
		nkv__rx_drop(s->te->e, &s->rx);
		nkv__tcp_conn_fail(s->tc, rc, "stream %u: request %llu: copy into GPU memory: %s", s->idx,
			  (unsigned long long)rq->req_id, nkv_last_error());
	}
	return rc;
}

static void payload_done(struct tstream *s)
{
	struct rreq *rq = s->cur;
	int rc = 1;

	if (s->rs == R_SUMS || (s->rs == R_SKIP && s->h.type == NKV_W_SUMS)) {
		rq->have_sums = true;
	} else if (s->rs == R_SKIP) {
		rq->got += s->dlen;
		rq->skipped += s->dlen;
	} else if ((rc = deliver(s, rq)) > 0) {
		rq->got += s->dlen;
	}
	s->cur = NULL;
	s->rs = R_HDR;
	if (rc > 0)
		maybe_complete(s, rq);
}

void nkv__tcp_on_recv(struct tstream *s, int res)
{
	struct tconn *tc = s->tc;

	s->recv_busy = false;
	if (s->dead || res == -ECANCELED) /* canceled: nkv__tcp_stream_kick() posts it again */
		return;
	if (res <= 0) {
		const char *what = res == 0 ? "peer closed the connection" : strerror(-res);
		char why[128];

		if (s->rs != R_HDR)
			snprintf(why, sizeof(why), "%s mid-range (%llu of %llu payload bytes)", what,
				 (unsigned long long)s->dgot, (unsigned long long)s->dlen);
		else if (s->hgot)
			snprintf(why, sizeof(why), "%s: truncated header (%llu of %llu bytes)", what,
				 (unsigned long long)s->hgot, (unsigned long long)HDR);
		else
			snprintf(why, sizeof(why), "%s", what);
		if (!tc) {
			nkv__tcp_pending_drop(s, why);
			return;
		}
		tc->clean_close = res == 0 && s->rs == R_HDR && !s->hgot && !tc->nrreqs && !tc->oldest;
		nkv__tcp_conn_fail(tc, res == 0 ? -ECONNRESET : res, "stream %u: %s", s->idx, why);
		return;
	}
	if (s->rs == R_HDR) {
		s->hgot += (uint64_t)res;
	} else {
		uint64_t n = (uint64_t)res, want = s->dlen - s->dgot;

		if (n < want) {
			s->dgot += n;
			return;
		}
		s->dgot = s->dlen;
		if (s->rs == R_VENT) { /* entries in; the payloads follow */
			vent_done(s);
			return;
		}
		if (s->rs == R_CTL) { /* a handshake payload or an ERROR's reason */
			nkv__tcp_on_ctl(s);
			return;
		}
		s->hgot = n - want; /* bytes of the next header that came along */
		payload_done(s);
		if (s->dead || (tc && tc->failed))
			return;
	}
	if (s->hgot < HDR)
		return;
	/* A whole header. */
	s->hgot = 0;
	if (!tc) {
		nkv__tcp_on_pending_hdr(s);
		return;
	}
	on_header(s);
}

/* Somewhere to receive the payload into: the region (host), or a pinned
 * slot (GPU). False while no slot is free: a finished copy frees one, and
 * tcp_progress kicks the streams again. */
static bool rx_ready(struct tstream *s)
{
	int rc;

	if (s->rs != R_DATA && s->rs != R_VDATA)
		return true;
	rc = nkv__rx_slot(s->te->e, s, &s->rx);
	if (rc < 0)
		nkv__tcp_conn_fail(s->tc, rc, "stream %u: receive buffer for GPU memory: %s", s->idx, nkv_last_error());
	if (rc <= 0)
		return false;
	if (s->rs == R_DATA)
		s->dst = nkv__rx_buf(&s->rx);
	return true;
}

/* A copy into GPU memory finished: its bytes are in place. */
void nkv__tcp_gpu_in_done(void *owner, uint64_t req_id, uint64_t bytes, int status)
{
	struct tstream *s = owner;
	struct tconn *tc = s->tc;
	struct rreq *rq;

	if (!tc || tc->failed)
		return;
	if (status < 0) {
		nkv__tcp_conn_fail(tc, status, "stream %u: request %llu: copy into GPU memory: %s", s->idx,
			  (unsigned long long)req_id, nkv_last_error());
		return;
	}
	if (!(rq = *rreq_slot(tc, req_id)))
		return;
	rq->got += bytes;
	maybe_complete(s, rq);
}

/* Post a receive if the stream has none in flight and somewhere to put it. */
void nkv__tcp_recv_kick(struct tstream *s)
{
	if (!s->recv_busy && !s->refused && rx_ready(s))
		post_recv(s);
}
