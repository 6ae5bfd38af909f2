/*
 * The backend-independent half of the transfer engine: regions, connection
 * objects, the event queue, argument checks and --verify checksums.
 */
#include "backend.h"
#include "gpu_stage.h"
#include "nkv_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

void nkv__log(const char *fmt, ...)
{
	va_list ap;

	if (getenv("NKV_QUIET"))
		return;
	fputs("netkv: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void nkv_engine_opts_init(struct nkv_engine_opts *o)
{
	*o = (struct nkv_engine_opts){ .backend = NKV_BACKEND_TCP, .gid_index = -1, .streams = 1 };
}

int nkv_engine_create(const struct nkv_engine_opts *o, struct nkv_engine **out)
{
	struct nkv_engine *e;
	int rc;

	*out = NULL;
	if (!o)
		return nkv_err(EINVAL, "engine options missing");
	if (o->streams < 1 || o->streams > 64)
		return nkv_err(EINVAL, "streams %u not in 1..64", o->streams);
	e = calloc(1, sizeof(*e));
	if (!e)
		return nkv_err(ENOMEM, "engine: out of memory");
	e->opts = *o; /* opts.device is valid during init only: the caller's string may go away */
	if (o->secret) {
		size_t n = strlen(o->secret);
		if (n > NKV_SECRET_MAX) {
			free(e);
			return nkv_err(EINVAL, "data-plane secret of %zu bytes (at most %d)", n, NKV_SECRET_MAX);
		}
		memcpy(e->secret, o->secret, n);
		e->secret_len = n;
	}
	e->opts.secret = NULL; /* the copy above is the engine's */
	switch (o->backend) {
	case NKV_BACKEND_TCP:
		e->ops = &nkv_tcp_ops;
		break;
	case NKV_BACKEND_VERBS:
		e->ops = &nkv_verbs_ops;
		break;
	default:
		free(e);
		return nkv_err(EINVAL, "unknown backend %d", (int)o->backend);
	}
	rc = e->ops->init(e);
	e->opts.device = NULL;
	if (rc) {
		free(e);
		return rc;
	}
	*out = e;
	return 0;
}

void nkv_engine_destroy(struct nkv_engine *e)
{
	if (!e)
		return;
	while (e->conns)
		nkv_conn_close(e->conns);
	nkv__gpu_drain(e); /* no gather or scatter still touching a region freed below */
	for (uint32_t i = 0; i < e->nregions; i++)
		if (e->regions[i].used)
			nkv_region_release(e, i);
	e->ops->fini(e);
	nkv__grants_free(e);
	nkv__gpu_ctx_free(e);
	free(e->regions);
	free(e->evq.ev);
	explicit_bzero(e->secret, sizeof(e->secret));
	free(e);
}

const char *nkv_engine_describe(const struct nkv_engine *e)
{
	return e->desc;
}

/* ---- regions ---------------------------------------------------------- */

struct nkv_region *nkv__region(struct nkv_engine *e, uint32_t id)
{
	return id < e->nregions && e->regions[id].used ? &e->regions[id] : NULL;
}

static int region_add(struct nkv_engine *e, enum nkv_mem_kind kind, void *ptr, uint64_t len,
		      const struct nkv_layout *layout, uint32_t *id, struct nkv_region **rout)
{
	struct nkv_region *r = NULL;
	uint32_t i;
	int rc;

	if (!ptr || !len)
		return nkv_err(EINVAL, "region: null pointer or zero length");
	if (kind != NKV_MEM_HOST && kind != NKV_MEM_HOST_HUGE && kind != NKV_MEM_CUDA)
		return nkv_err(EINVAL, "region: unknown memory kind %d", (int)kind);
	if (kind == NKV_MEM_CUDA) {
		struct nkv_gpu_ctx *g;
		if ((rc = nkv__gpu_ctx(e, &g)))
			return nkv_err_wrap(rc, "GPU region");
		if ((rc = nkv__gpu()->check_ptr(nkv__gpu_dev(e), ptr)))
			return nkv_err_wrap(rc, "GPU region");
	}
	if (layout) {
		if ((rc = nkv_layout_check(layout)))
			return nkv_err_wrap(rc, "region layout");
		if (nkv_layout_pool_bytes(layout) > len)
			return nkv_err(EINVAL, "region of %llu bytes is smaller than its layout's pool (%llu bytes)",
				       (unsigned long long)len, (unsigned long long)nkv_layout_pool_bytes(layout));
	}
	for (i = 0; i < e->nregions; i++)
		if (!e->regions[i].used)
			break;
	if (i == e->nregions) {
		if (e->nregions >= 4096)
			return nkv_err(ENOSPC, "too many regions (4096)");
		r = realloc(e->regions, (e->nregions + 1) * sizeof(*r));
		if (!r)
			return nkv_err(ENOMEM, "region table: out of memory");
		e->regions = r;
		e->nregions++;
	}
	r = &e->regions[i];
	memset(r, 0, sizeof(*r));
	r->id = i;
	r->kind = kind;
	r->ptr = ptr;
	r->len = len;
	if (layout) {
		r->has_layout = true;
		r->layout = *layout;
	}
	r->desc = (struct nkv_remote_region){ .id = i, .addr = (uint64_t)(uintptr_t)ptr, .len = len };
	if ((rc = e->ops->reg(e, r)))
		return rc;
	if (kind == NKV_MEM_CUDA && !r->gpu_mode) {
		/* A backend that does not reach GPU memory itself: staged. */
		struct nkv_gpu_caps caps = { .rdma = false };
		struct nkv_gpu_reg_plan plan;
		if (!nkv__gpu_reg_plan(&caps, &plan)) {
			r->gpu_mode = nkv_gpu_reg_mode_name(plan.try[0]);
			snprintf(r->gpu_why, sizeof(r->gpu_why), "%s", plan.why);
		}
	}
	r->used = true;
	*id = i;
	if (rout)
		*rout = r;
	return 0;
}

int nkv_region_register(struct nkv_engine *e, enum nkv_mem_kind kind, void *ptr, uint64_t len,
			const struct nkv_layout *layout, uint32_t *id)
{
	return region_add(e, kind, ptr, len, layout, id, NULL);
}

int nkv_region_alloc(struct nkv_engine *e, enum nkv_mem_kind kind, uint64_t len, const struct nkv_layout *layout,
		     uint32_t *id, void **ptr)
{
	struct nkv_region *r;
	uint64_t map_len = len;
	void *p = MAP_FAILED;
	int rc;

	if (!len)
		return nkv_err(EINVAL, "region: zero length");
	if (kind == NKV_MEM_CUDA) {
		if ((rc = nkv__gpu_region_alloc(e, len, &p)))
			return nkv_err_wrap(rc, "GPU region of %llu bytes", (unsigned long long)len);
		if ((rc = region_add(e, kind, p, len, layout, id, &r))) {
			nkv__gpu_region_free(e, p);
			return rc;
		}
		r->owned = true;
		r->map_len = len;
		*ptr = p;
		return 0;
	}
	if (kind == NKV_MEM_HOST_HUGE) {
		map_len = (len + (2u << 20) - 1) & ~(uint64_t)((2u << 20) - 1);
		p = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
		if (p == MAP_FAILED)
			nkv__log("no free 2 MiB hugetlb pages for %llu bytes; using transparent huge pages",
				 (unsigned long long)len);
	}
	if (p == MAP_FAILED) {
		p = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return nkv_err(errno, "mmap %llu bytes: %s", (unsigned long long)map_len, strerror(errno));
		/* Transparent huge pages where the system allows them: fewer
		 * faults and TLB misses on multi-GiB pools. */
		madvise(p, map_len, MADV_HUGEPAGE);
	}
#ifdef MADV_POPULATE_WRITE
	/* Fault the pool in now, as registration pins it on RDMA: otherwise
	 * the first transfer into it pays a page fault per page. */
	madvise(p, map_len, MADV_POPULATE_WRITE);
#endif
	if ((rc = region_add(e, kind, p, len, layout, id, &r))) {
		munmap(p, map_len);
		return rc;
	}
	r->owned = true;
	r->map_len = map_len;
	*ptr = p;
	return 0;
}

int nkv_region_release(struct nkv_engine *e, uint32_t id)
{
	struct nkv_region *r = nkv__region(e, id);

	if (!r)
		return nkv_err(ENOENT, "no region %u", id);
	e->ops->dereg(e, r);
	nkv__grants_drop_region(e, id);
	if (r->owned && r->kind == NKV_MEM_CUDA)
		nkv__gpu_region_free(e, r->ptr);
	else if (r->owned)
		munmap(r->ptr, r->map_len);
	r->used = false;
	return 0;
}

int nkv_region_describe(const struct nkv_engine *e, uint32_t id, char *buf, size_t len)
{
	const struct nkv_region *r = id < e->nregions && e->regions[id].used ? &e->regions[id] : NULL;

	if (!r)
		return nkv_err(ENOENT, "no region %u", id);
	if (r->kind != NKV_MEM_CUDA)
		snprintf(buf, len, "host%s", r->kind == NKV_MEM_HOST_HUGE ? " (huge pages)" : "");
	else
		snprintf(buf, len, "%s: %s%s%s%s", nkv__gpu_desc(e), r->gpu_mode ? r->gpu_mode : "?",
			 r->gpu_why[0] ? " (" : "", r->gpu_why, r->gpu_why[0] ? ")" : "");
	return 0;
}

int nkv__region_adverts(struct nkv_engine *e, struct nkv_remote_region **out, size_t *n)
{
	size_t k = 0;

	*out = calloc(e->nregions ? e->nregions : 1, sizeof(**out));
	if (!*out)
		return nkv_err(ENOMEM, "adverts: out of memory");
	for (uint32_t i = 0; i < e->nregions; i++)
		if (e->regions[i].used)
			(*out)[k++] = e->regions[i].desc;
	*n = k;
	return 0;
}

/* ---- connections -------------------------------------------------------- */

struct nkv_conn *nkv__conn_new(struct nkv_engine *e, bool passive)
{
	struct nkv_conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	c->e = e;
	c->passive = passive;
	c->next = e->conns;
	e->conns = c;
	return c;
}

static void conn_unlink(struct nkv_conn *c)
{
	for (struct nkv_conn **pp = &c->e->conns; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			return;
		}
}

int nkv_listen(struct nkv_engine *e, const char *addr, uint16_t *port_out)
{
	char host[256];
	uint16_t port;
	int rc;

	if ((rc = nkv_parse_hostport(addr, host, sizeof(host), &port)))
		return rc;
	return e->ops->listen(e, host, port, port_out);
}

int nkv_connect(struct nkv_engine *e, const char *addr, struct nkv_conn **out)
{
	struct nkv_conn *c;
	char host[256];
	uint16_t port;
	int rc;

	*out = NULL;
	if ((rc = nkv_parse_hostport(addr, host, sizeof(host), &port)))
		return rc;
	if (!(c = nkv__conn_new(e, false)))
		return nkv_err(ENOMEM, "connection: out of memory");
	if ((rc = e->ops->connect(e, host, port, c))) {
		conn_unlink(c);
		free(c->remote);
		free(c);
		return nkv_err_wrap(rc, "connect %s", addr);
	}
	*out = c;
	return 0;
}

void nkv_conn_close(struct nkv_conn *c)
{
	struct nkv_engine *e;

	if (!c)
		return;
	e = c->e;
	e->ops->close(c);
	conn_unlink(c);
	nkv__grants_conn_gone(e, c);
	/* Events already queued may still name this connection: clear them. */
	for (size_t i = 0; i < e->evq.count; i++) {
		struct nkv_event *ev = &e->evq.ev[(e->evq.head + i) % e->evq.cap];
		if (ev->conn == c)
			ev->conn = NULL;
	}
	free(c->remote);
	free(c);
}

size_t nkv_conn_remote_count(const struct nkv_conn *c)
{
	return c->nremote;
}

const struct nkv_remote_region *nkv_conn_remote(const struct nkv_conn *c, size_t i)
{
	return i < c->nremote ? &c->remote[i] : NULL;
}

/* ---- push --------------------------------------------------------------- */

int nkv_push(struct nkv_conn *c, const struct nkv_push *p)
{
	struct nkv_engine *e = c->e;
	struct nkv_push_req req = { .req_id = p->req_id, .plan = p->plan };
	const struct nkv_layout *sl;
	int rc;

	if (c->down)
		return nkv_err(ENOTCONN, "connection is down");
	if (c->passive)
		return nkv_err(EINVAL, "push on a receiving connection: push from the side that connected");
	if (!p->plan || !nkv_plan_count(p->plan))
		return nkv_err(EINVAL, "push %llu: empty plan", (unsigned long long)p->req_id);
	if (!(req.src = nkv__region(e, p->src_region)))
		return nkv_err(ENOENT, "push %llu: no local region %u", (unsigned long long)p->req_id, p->src_region);
	for (size_t i = 0; i < c->nremote; i++)
		if (c->remote[i].id == p->dst_region)
			req.dst = &c->remote[i];
	if (!req.dst)
		return nkv_err(ENOENT, "push %llu: the peer advertised no region %u", (unsigned long long)p->req_id,
			       p->dst_region);
	if (nkv_plan_src_extent(p->plan) > req.src->len)
		return nkv_err(ERANGE, "push %llu: plan reads up to byte %llu of a %llu-byte source region",
			       (unsigned long long)p->req_id, (unsigned long long)nkv_plan_src_extent(p->plan),
			       (unsigned long long)req.src->len);
	if (nkv_plan_dst_extent(p->plan) > req.dst->len)
		return nkv_err(ERANGE, "push %llu: plan writes up to byte %llu of the peer's %llu-byte region %u",
			       (unsigned long long)p->req_id, (unsigned long long)nkv_plan_dst_extent(p->plan),
			       (unsigned long long)req.dst->len, req.dst->id);
	if (e->opts.verify) {
		if (!(sl = nkv_plan_src_layout(p->plan)))
			return nkv_err(EINVAL, "push %llu: --verify checks blocks, and this plan has raw ranges",
				       (unsigned long long)p->req_id);
		req.nsums = nkv_plan_nblocks(p->plan);
		if (!(req.sums = malloc(req.nsums * sizeof(*req.sums))))
			return nkv_err(ENOMEM, "push: out of memory for checksums");
		for (size_t i = 0; i < req.nsums; i++) {
			req.sums[i] = (struct nkv_block_sum){ .block = nkv_plan_dst_blocks(p->plan)[i] };
			if ((rc = nkv__region_block_hash(e, req.src, sl, nkv_plan_src_blocks(p->plan)[i],
							 &req.sums[i].hash))) {
				free(req.sums);
				return nkv_err_wrap(rc, "push %llu", (unsigned long long)p->req_id);
			}
		}
	}
	rc = e->ops->push(c, &req);
	return rc;
}

int nkv__push_shape(struct nkv_engine *e, const struct nkv_plan *p, struct nkv__push_shape *out)
{
	memset(out, 0, sizeof(*out));
	if (!p || !nkv_plan_count(p))
		return nkv_err(EINVAL, "push shape: empty plan");
	out->ranges = nkv_plan_count(p);
	if (!e->ops->shape)
		return 0;
	return e->ops->shape(e, p, out);
}

/* ---- events -------------------------------------------------------------- */

void nkv__emit(struct nkv_engine *e, const struct nkv_event *ev)
{
	struct nkv_evq *q = &e->evq;

	if (q->count == q->cap) {
		size_t ncap = q->cap ? q->cap * 2 : 256;
		struct nkv_event *n = malloc(ncap * sizeof(*n));
		if (!n) {
			nkv__log("event queue: out of memory, event for request %llu lost",
				 (unsigned long long)ev->req_id);
			return;
		}
		for (size_t i = 0; i < q->count; i++)
			n[i] = q->ev[(q->head + i) % q->cap];
		free(q->ev);
		q->ev = n;
		q->head = 0;
		q->cap = ncap;
	}
	q->ev[(q->head + q->count) % q->cap] = *ev;
	q->count++;
}

void nkv__emitf(struct nkv_engine *e, enum nkv_event_type t, struct nkv_conn *c, uint64_t req_id, int status,
		const char *fmt, ...)
{
	struct nkv_event ev = { .type = t, .status = status, .req_id = req_id, .conn = c };
	va_list ap;

	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(ev.reason, sizeof(ev.reason), fmt, ap);
		va_end(ap);
	}
	nkv__emit(e, &ev);
}

int nkv__recv_done(struct nkv_engine *e, struct nkv_conn *c, uint64_t req_id, uint64_t bytes, uint32_t region,
		   const struct nkv_block_sum *sums, size_t nsums)
{
	struct nkv_event ev = { .type = NKV_EV_RECV, .req_id = req_id, .bytes = bytes, .conn = c };
	struct nkv_region *r = nkv__region(e, region);

	if (nsums && (!r || !r->has_layout)) {
		ev.status = -EBADMSG;
		snprintf(ev.reason, sizeof(ev.reason), "request %llu carries checksums but region %u has no block layout",
			 (unsigned long long)req_id, region);
	}
	for (size_t i = 0; i < nsums && !ev.status; i++) {
		uint64_t h = 0;
		int rc;

		if (sums[i].block >= r->layout.num_blocks) {
			ev.status = -EBADMSG;
			snprintf(ev.reason, sizeof(ev.reason), "request %llu: checksum for block %u beyond pool of %u",
				 (unsigned long long)req_id, sums[i].block, r->layout.num_blocks);
		} else if ((rc = nkv__region_block_hash(e, r, &r->layout, sums[i].block, &h))) {
			ev.status = rc;
			snprintf(ev.reason, sizeof(ev.reason), "request %llu: %s", (unsigned long long)req_id,
				 nkv_last_error());
		} else if (h != sums[i].hash) {
			ev.status = -EBADMSG;
			snprintf(ev.reason, sizeof(ev.reason), "request %llu: block %u (entry %zu of %zu) checksum mismatch",
				 (unsigned long long)req_id, sums[i].block, i, nsums);
		}
	}
	if (!ev.status && nsums)
		snprintf(ev.reason, sizeof(ev.reason), "%zu blocks verified", nsums);
	if (r && r->granted)
		nkv__grant_consume(e, req_id, region); /* every byte is in: an id writes once */
	nkv__emit(e, &ev);
	return ev.status;
}

int nkv_poll(struct nkv_engine *e, struct nkv_event *ev, int max, int timeout_ms)
{
	struct nkv_evq *q = &e->evq;
	int n = 0, rc;

	if (max <= 0)
		return nkv_err(EINVAL, "nkv_poll: max must be positive");
	/* GPU copies in flight: poll their events, and the network without
	 * sleeping, since a sleep in io_uring would stall the pipeline. */
	if ((rc = nkv__gpu_progress(e)) < 0)
		return rc;
	if (rc > 0)
		timeout_ms = 0;
	if (!q->count) {
		if ((rc = e->ops->progress(e, timeout_ms)) < 0)
			return rc;
	} else {
		/* Keep the wire busy even when events are waiting. */
		if ((rc = e->ops->progress(e, 0)) < 0)
			return rc;
	}
	while (n < max && q->count) {
		ev[n++] = q->ev[q->head];
		q->head = (q->head + 1) % q->cap;
		q->count--;
	}
	return n;
}
