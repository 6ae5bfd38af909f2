/*
 * TCP backend: the engine. One io_uring per engine; every socket operation
 * of every connection completes here, and handle_cqe() hands it to the
 * connection (tcp_conn.c), sender (tcp_send.c) or receiver (tcp_recv.c).
 * The design is described in tcp.h.
 */
#include "tcp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct io_uring_sqe *nkv__tcp_sqe(struct tcp_engine *te)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&te->ring);

	while (!sqe) {
		io_uring_submit(&te->ring);
		sqe = io_uring_get_sqe(&te->ring);
	}
	return sqe;
}

static void handle_cqe(struct tcp_engine *te, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	void *p = (void *)(uintptr_t)(ud & ~(uint64_t)3);

	if ((ud & 3) == OP_IGNORE)
		return; /* a cancel request's own completion */
	te->inflight--;
	switch (ud & 3) {
	case OP_ACCEPT:
		nkv__tcp_on_accept(te, p, cqe->res);
		break;
	case OP_RECV: {
		struct tstream *s = p;
		nkv__tcp_on_recv(s, cqe->res);
		nkv__tcp_stream_kick(s);
		break;
	}
	case OP_SEND: {
		struct tstream *s = p;
		nkv__tcp_on_send(s, cqe->res);
		nkv__tcp_stream_kick(s);
		break;
	}
	}
}

/* Handle one completion, waiting for it (teardown) until deadline_ns
 * (UINT64_MAX: none). False if the wait failed or the deadline passed. */
bool nkv__tcp_wait_one(struct tcp_engine *te, uint64_t deadline_ns)
{
	struct io_uring_cqe *cqe;
	uint64_t now = nkv_now_ns();

	io_uring_submit(&te->ring);
	if (deadline_ns == UINT64_MAX) {
		if (io_uring_wait_cqe(&te->ring, &cqe))
			return false;
	} else {
		uint64_t left = deadline_ns > now ? deadline_ns - now : 0;
		struct __kernel_timespec ts = { .tv_sec = (long long)(left / 1000000000u),
						.tv_nsec = (long long)(left % 1000000000u) };
		if (io_uring_wait_cqe_timeout(&te->ring, &cqe, &ts))
			return false;
	}
	handle_cqe(te, cqe);
	io_uring_cqe_seen(&te->ring, cqe);
	return true;
}

static int tcp_init(struct nkv_engine *e)
{
	struct tcp_engine *te = calloc(1, sizeof(*te));
	struct io_uring_params p = { .flags = IORING_SETUP_COOP_TASKRUN };
	int rc;

	if (!te)
		return nkv_err(ENOMEM, "tcp engine: out of memory");
	rc = io_uring_queue_init_params(RING_ENTRIES, &te->ring, &p);
	if (rc == -EINVAL) {
		memset(&p, 0, sizeof(p));
		rc = io_uring_queue_init_params(RING_ENTRIES, &te->ring, &p);
	}
	if (rc < 0) {
		free(te);
		return nkv_err(rc, "io_uring_queue_init: %s (io_uring disabled? see /proc/sys/kernel/io_uring_disabled)",
			       strerror(-rc));
	}
	te->e = e;
	te->handshake_ns = (uint64_t)(e->opts.handshake_ms ? e->opts.handshake_ms : HANDSHAKE_DEFAULT_MS) * 1000000;
	te->max_conns = e->opts.max_conns ? e->opts.max_conns : MAX_CONNS_DEFAULT;
	e->be = te;
	snprintf(e->desc, sizeof(e->desc), "tcp (io_uring), %u stream%s per connection%s%s", e->opts.streams,
		 e->opts.streams > 1 ? "s" : "", e->opts.verify ? ", per-block xxhash64 verify" : "",
		 e->secret_len ? ", authenticated" : ", no data-plane secret");
	return 0;
}

/* Process completions until no operation is in flight (teardown). */
static void drain(struct tcp_engine *te)
{
	while (te->inflight && nkv__tcp_wait_one(te, UINT64_MAX))
		;
}

static void tcp_fini(struct nkv_engine *e)
{
	struct tcp_engine *te = e->be;

	for (struct tlistener *l = te->listeners; l; l = l->next) {
		l->dead = true;
		shutdown(l->fd, SHUT_RDWR);
		if (l->busy) {
			struct io_uring_sqe *sqe = nkv__tcp_sqe(te);
			io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)l | OP_ACCEPT, 0);
			io_uring_sqe_set_data64(sqe, OP_IGNORE);
		}
	}
	for (struct tstream *s = te->pending; s; s = s->pnext) {
		s->dead = true;
		shutdown(s->fd, SHUT_RDWR);
	}
	drain(te);
	while (te->listeners) {
		struct tlistener *l = te->listeners;
		te->listeners = l->next;
		close(l->fd);
		free(l);
	}
	while (te->pending) {
		struct tstream *s = te->pending;
		te->pending = s->pnext;
		nkv__tcp_stream_free(s);
	}
	io_uring_queue_exit(&te->ring);
	free(te->skip);
	free(te);
}

static int tcp_reg(struct nkv_engine *e, struct nkv_region *r)
{
	(void)e;
	(void)r; /* TCP reads and writes plain memory: nothing to pin, no rkey */
	return 0;
}

static void tcp_dereg(struct nkv_engine *e, struct nkv_region *r)
{
	(void)e;
	(void)r;
}

/* Post whatever this stream can do next. */
void nkv__tcp_stream_kick(struct tstream *s)
{
	if (s->dead)
		return;
	nkv__tcp_recv_kick(s);
	nkv__tcp_try_send(s);
}

/* GPU copies finished or staged chunks became ready: let every stream
 * look again (receive into a freed slot, send a ready chunk, an ACK). */
static void gpu_kick(struct tcp_engine *te)
{
	uint64_t gen = nkv__gpu_ready_gen(te->e);
	int n = nkv__gpu_in_reap(te->e, nkv__tcp_gpu_in_done);

	if (!n && gen == te->gpu_gen)
		return;
	te->gpu_gen = gen;
	for (struct nkv_conn *c = te->e->conns; c; c = c->next) {
		struct tconn *tc = c->be;
		for (unsigned i = 0; tc && !tc->failed && i < tc->nstreams; i++)
			if (tc->s[i])
				nkv__tcp_stream_kick(tc->s[i]);
	}
}

static int tcp_progress(struct nkv_engine *e, int timeout_ms)
{
	struct tcp_engine *te = e->be;
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts;
	unsigned head, n = 0;
	int rc;

	if (e->gpu)
		gpu_kick(te);
	/* Wake up in time to enforce a pending handshake's deadline. */
	if (nkv__tcp_expire_handshakes(te) && (timeout_ms < 0 || timeout_ms > 100))
		timeout_ms = 100;
	if (timeout_ms == 0) {
		rc = io_uring_submit(&te->ring);
	} else if (timeout_ms < 0) {
		rc = io_uring_submit_and_wait(&te->ring, 1);
	} else {
		ts.tv_sec = timeout_ms / 1000;
		ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
		rc = io_uring_submit_and_wait_timeout(&te->ring, &cqe, 1, &ts, NULL);
	}
	if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN)
		return nkv_err(rc, "io_uring: %s", strerror(-rc));
	for (;;) {
		unsigned batch = 0;

		io_uring_for_each_cqe(&te->ring, head, cqe) {
			handle_cqe(te, cqe);
			batch++;
		}
		if (!batch)
			break;
		io_uring_cq_advance(&te->ring, batch);
		n += batch;
		io_uring_submit(&te->ring);
	}
	nkv__tcp_reap(te);
	return (int)n;
}

const struct nkv_backend_ops nkv_tcp_ops = {
	.name = "tcp",
	.init = tcp_init,
	.fini = tcp_fini,
	.reg = tcp_reg,
	.dereg = tcp_dereg,
	.listen = nkv__tcp_listen,
	.connect = nkv__tcp_connect,
	.push = nkv__tcp_push,
	.progress = tcp_progress,
	.close = nkv__tcp_close,
	.grants = true,
};
