/*
 * GPU regions and the staging pipeline (see gpu_stage.h for the design).
 * All CUDA work goes through nkv__gpu()'s ops; in a build without CUDA the
 * first call fails with "netkv was built without CUDA".
 */
#include "gpu_stage.h"
#include "nkv_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH64_state_t on the stack */
#include <xxhash.h>

struct out_slot {
	uint8_t *host;             /* pinned bounce: what the backend sends */
	void *dev;                 /* device staging: where the kernel gathers */
	struct nkv_range *hdesc;   /* pinned range list ... */
	void *ddesc;               /* ... and its device copy, read by the kernel */
	void *ev;
	struct nkv_stage *st;      /* NULL: free (or orphaned until ev is done) */
	uint32_t chunk;
	bool busy, ready;
};

struct nkv_gpu_in {
	uint8_t *host;
	void *dev;
	struct nkv_range *hdesc;
	void *ddesc;
	void *ev;
	void *owner;               /* NULL: free */
	bool pending;              /* copy issued, event not yet seen */
	bool keep;                 /* stays the owner's after a reap */
	uint64_t req_id, bytes;
};

struct nkv_stage {
	struct nkv_gpu_ctx *g;
	void *src;
	struct nkv_chunk_plan cp;
	uint32_t next_issue;
	uint32_t allow;            /* chunks the backend lets us copy out so far */
	int32_t *slot;             /* chunk -> out slot, -1 none */
	uint64_t *sent;            /* chunk -> bytes sent */
	int err;                   /* first failure (reason kept in errmsg) */
	char errmsg[256];
	struct nkv_stage *qnext;   /* the context's queue of stages with chunks to issue */
	bool queued;
};

struct nkv_gpu_ctx {
	const struct nkv_gpu_ops *ops;
	int dev;
	char desc[160];
	void *sout, *sin;          /* streams: staging out (D2H), in (H2D) */
	struct out_slot out[NKV_GPU_OUT_SLOTS];
	struct nkv_gpu_in in[NKV_GPU_IN_SLOTS];
	bool out_made, in_made;
	struct nkv_stage *qhead, *qtail;
	uint64_t ready_gen;
	unsigned out_busy, in_pending;
};

static void out_slots_free(struct nkv_gpu_ctx *g)
{
	const struct nkv_gpu_ops *o = g->ops;

	for (unsigned i = 0; i < NKV_GPU_OUT_SLOTS; i++) {
		struct out_slot *s = &g->out[i];
		o->host_free(g->dev, s->host);
		o->free(g->dev, s->dev);
		o->host_free(g->dev, s->hdesc);
		o->free(g->dev, s->ddesc);
		o->event_destroy(g->dev, s->ev);
		memset(s, 0, sizeof(*s));
	}
	g->out_made = false;
}

static void in_slots_free(struct nkv_gpu_ctx *g)
{
	const struct nkv_gpu_ops *o = g->ops;

	for (unsigned i = 0; i < NKV_GPU_IN_SLOTS; i++) {
		struct nkv_gpu_in *s = &g->in[i];
		o->host_free(g->dev, s->host);
		o->free(g->dev, s->dev);
		o->host_free(g->dev, s->hdesc);
		o->free(g->dev, s->ddesc);
		o->event_destroy(g->dev, s->ev);
		memset(s, 0, sizeof(*s));
	}
	g->in_made = false;
}

/* Pinned bounce + device staging + range lists + event, for one slot. */
static int slot_make(struct nkv_gpu_ctx *g, uint64_t bytes, uint32_t nranges, uint8_t **host, void **dev,
		     struct nkv_range **hdesc, void **ddesc, void **ev)
{
	const struct nkv_gpu_ops *o = g->ops;
	void *h = NULL, *hd = NULL;
	int rc;

	rc = o->host_alloc(g->dev, bytes, &h);
	*host = h;
	if (rc || (rc = o->alloc(g->dev, bytes, dev)))
		return rc;
	rc = o->host_alloc(g->dev, nranges * sizeof(struct nkv_range), &hd);
	*hdesc = hd;
	if (rc || (rc = o->alloc(g->dev, nranges * sizeof(struct nkv_range), ddesc)))
		return rc;
	return o->event_create(g->dev, ev);
}

static int out_slots_make(struct nkv_gpu_ctx *g)
{
	int rc;

	if (g->out_made)
		return 0;
	for (unsigned i = 0; i < NKV_GPU_OUT_SLOTS; i++) {
		struct out_slot *s = &g->out[i];

		if ((rc = slot_make(g, NKV_GPU_CHUNK, NKV_GPU_CHUNK_RANGES, &s->host, &s->dev, &s->hdesc, &s->ddesc,
				    &s->ev))) {
			out_slots_free(g);
			return nkv_err_wrap(rc, "GPU staging buffers (%u x %u MiB pinned + device)", NKV_GPU_OUT_SLOTS,
					    NKV_GPU_CHUNK >> 20);
		}
	}
	g->out_made = true;
	return 0;
}

static int in_slots_make(struct nkv_gpu_ctx *g)
{
	int rc;

	if (g->in_made)
		return 0;
	for (unsigned i = 0; i < NKV_GPU_IN_SLOTS; i++) {
		struct nkv_gpu_in *s = &g->in[i];

		if ((rc = slot_make(g, NKV_GPU_IN_BYTES, NKV_GPU_IN_RANGES, &s->host, &s->dev, &s->hdesc, &s->ddesc,
				    &s->ev))) {
			in_slots_free(g);
			return nkv_err_wrap(rc, "GPU receive buffers (%u x %u MiB pinned + device)", NKV_GPU_IN_SLOTS,
					    NKV_GPU_IN_BYTES >> 20);
		}
	}
	g->in_made = true;
	return 0;
}

int nkv__gpu_ctx(struct nkv_engine *e, struct nkv_gpu_ctx **out)
{
	struct nkv_gpu_ctx *g;
	int rc;

	if (e->gpu) {
		*out = e->gpu;
		return 0;
	}
	*out = NULL;
	if (!(g = calloc(1, sizeof(*g))))
		return nkv_err(ENOMEM, "GPU context: out of memory");
	g->ops = nkv__gpu();
	g->dev = e->opts.gpu;
	if ((rc = g->ops->open(g->dev, g->desc, sizeof(g->desc))) ||
	    (rc = g->ops->stream_create(g->dev, &g->sout)) || (rc = g->ops->stream_create(g->dev, &g->sin))) {
		g->ops->stream_destroy(g->dev, g->sout);
		free(g);
		return nkv_err_wrap(rc, "GPU %d", e->opts.gpu);
	}
	e->gpu = g;
	*out = g;
	return 0;
}

void nkv__gpu_drain(struct nkv_engine *e)
{
	struct nkv_gpu_ctx *g = e->gpu;

	if (g && (g->ops->stream_sync(g->dev, g->sout) || g->ops->stream_sync(g->dev, g->sin)))
		nkv__log("GPU streams did not drain at engine teardown: %s", nkv_last_error());
}

void nkv__gpu_ctx_free(struct nkv_engine *e)
{
	struct nkv_gpu_ctx *g = e->gpu;

	if (!g)
		return;
	nkv__gpu_drain(e); /* nothing may still be copying into the buffers we free */
	out_slots_free(g);
	in_slots_free(g);
	g->ops->stream_destroy(g->dev, g->sout);
	g->ops->stream_destroy(g->dev, g->sin);
	free(g);
	e->gpu = NULL;
}

const char *nkv__gpu_desc(const struct nkv_engine *e)
{
	return e->gpu ? e->gpu->desc : "";
}

int nkv__gpu_dev(const struct nkv_engine *e)
{
	return e->gpu ? e->gpu->dev : e->opts.gpu;
}

int nkv__gpu_region_alloc(struct nkv_engine *e, uint64_t len, void **p)
{
	struct nkv_gpu_ctx *g;
	int rc;

	*p = NULL;
	if ((rc = nkv__gpu_ctx(e, &g)))
		return rc;
	if ((rc = g->ops->alloc(g->dev, len, p)))
		return rc;
	return 0;
}

void nkv__gpu_region_free(struct nkv_engine *e, void *p)
{
	if (e->gpu)
		e->gpu->ops->free(e->gpu->dev, p);
}

int nkv__region_block_hash(struct nkv_engine *e, const struct nkv_region *r, const struct nkv_layout *l,
			   uint32_t block, uint64_t *hash)
{
	uint64_t chunk = nkv_layout_chunk_bytes(l), bb = nkv_layout_block_bytes(l);
	uint32_t nt = nkv_layout_tensors(l);
	struct nkv_gpu_ctx *g;
	XXH64_state_t st;
	uint8_t *tmp;
	int rc = 0;

	if (r->kind != NKV_MEM_CUDA) {
		*hash = nkv_block_hash(l, r->ptr, block);
		return 0;
	}
	if ((rc = nkv__gpu_ctx(e, &g)))
		return rc;
	/* Same bytes, same order as nkv_block_hash(): the block, or its
	 * (layer, kv) pieces, copied to the host one at a time. */
	if (!(tmp = malloc(l->kind == NKV_LAYOUT_BLOCK_MAJOR ? bb : chunk)))
		return nkv_err(ENOMEM, "block hash: out of memory");
	if (l->kind == NKV_LAYOUT_BLOCK_MAJOR) {
		if (!(rc = g->ops->copy(g->dev, tmp, (const uint8_t *)r->ptr + nkv_layout_chunk_offset(l, block, 0, 0), bb)))
			*hash = XXH64(tmp, bb, 0);
	} else {
		XXH64_reset(&st, 0);
		for (uint32_t layer = 0; layer < l->model.layers && !rc; layer++)
			for (uint32_t kv = 0; kv < nt && !rc; kv++)
				if (!(rc = g->ops->copy(g->dev, tmp,
							(const uint8_t *)r->ptr + nkv_layout_chunk_offset(l, block, layer, kv),
							chunk)))
					XXH64_update(&st, tmp, chunk);
		if (!rc)
			*hash = XXH64_digest(&st);
	}
	free(tmp);
	return rc ? nkv_err_wrap(rc, "checksum of GPU block %u", block) : 0;
}

uint64_t nkv__gpu_ready_gen(const struct nkv_engine *e)
{
	return e->gpu ? e->gpu->ready_gen : 0;
}

/* ---- sender ------------------------------------------------------------------ */

static void stage_fail(struct nkv_stage *st, int rc)
{
	if (!st->err) {
		st->err = rc;
		snprintf(st->errmsg, sizeof(st->errmsg), "%s", nkv_last_error());
	}
}

/* Gather chunk c of st into slot s: descriptors up, kernel, one copy down, event. */
static int issue(struct nkv_gpu_ctx *g, struct nkv_stage *st, uint32_t c, struct out_slot *s)
{
	const struct nkv_gpu_ops *o = g->ops;
	const struct nkv_chunk *ch = &st->cp.c[c];
	const struct nkv_srange *r = &st->cp.r[ch->first];
	uint64_t max_len = 0;
	int rc;

	if (ch->n == 1) {
		/* One range: straight from the region, no kernel. */
		if ((rc = o->copy_async(g->dev, s->host, (const uint8_t *)st->src + r->src_off, r->len, g->sout)))
			return rc;
	} else {
		for (size_t i = 0; i < ch->n; i++) {
			s->hdesc[i] = (struct nkv_range){ .src_off = r[i].src_off, .dst_off = r[i].soff, .len = r[i].len };
			if (r[i].len > max_len)
				max_len = r[i].len;
		}
		if ((rc = o->copy_async(g->dev, s->ddesc, s->hdesc, ch->n * sizeof(*s->hdesc), g->sout)) ||
		    (rc = o->copy_ranges_async(g->dev, s->dev, st->src, s->ddesc, (uint32_t)ch->n, max_len, g->sout)) ||
		    (rc = o->copy_async(g->dev, s->host, s->dev, ch->bytes, g->sout)))
			return rc;
	}
	if ((rc = o->event_record(g->dev, s->ev, g->sout)))
		return rc;
	s->st = st;
	s->chunk = c;
	s->busy = true;
	s->ready = false;
	st->slot[c] = (int32_t)(s - g->out);
	g->out_busy++;
	return 0;
}

/* Take *pp (a link of the queue) out of the queue. */
static void queue_unlink(struct nkv_gpu_ctx *g, struct nkv_stage **pp)
{
	struct nkv_stage *st = *pp;

	*pp = st->qnext;
	if (g->qtail == st) {
		g->qtail = NULL;
		for (struct nkv_stage *t = g->qhead; t; t = t->qnext)
			g->qtail = t;
	}
	st->qnext = NULL;
	st->queued = false;
}

/* Start copies into free slots, oldest request first; a request held back
 * by its allowance is passed over, so it never holds slots others need. */
static void issue_more(struct nkv_gpu_ctx *g)
{
	struct nkv_stage **pp = &g->qhead;
	int rc;

	while (*pp && g->out_busy < NKV_GPU_OUT_SLOTS) {
		struct nkv_stage *st = *pp;
		struct out_slot *s = NULL;

		if (st->err || st->next_issue == st->cp.nc) {
			queue_unlink(g, pp);
			continue;
		}
		if (st->next_issue >= st->allow) {
			pp = &st->qnext;
			continue;
		}
		for (unsigned i = 0; i < NKV_GPU_OUT_SLOTS && !s; i++)
			if (!g->out[i].busy)
				s = &g->out[i];
		if (!s)
			return;
		if ((rc = issue(g, st, st->next_issue, s))) {
			stage_fail(st, rc);
			queue_unlink(g, pp);
			continue;
		}
		st->next_issue++;
	}
}

void nkv__stage_allow(struct nkv_stage *st, uint32_t nchunks)
{
	if (nchunks > st->cp.nc)
		nchunks = (uint32_t)st->cp.nc;
	if (nchunks <= st->allow)
		return;
	st->allow = nchunks;
	issue_more(st->g);
}

int nkv__stage_new_cut(struct nkv_engine *e, void *src, const struct nkv_plan *plan, uint64_t chunk_bytes,
		       uint32_t chunk_ranges, bool gated, struct nkv_stage **out)
{
	struct nkv_gpu_ctx *g;
	struct nkv_stage *st;
	int rc;

	*out = NULL;
	if ((rc = nkv__gpu_ctx(e, &g)) || (rc = out_slots_make(g)))
		return rc;
	if (!(st = calloc(1, sizeof(*st))))
		return nkv_err(ENOMEM, "staging: out of memory");
	st->g = g;
	st->src = src;
	if (chunk_bytes > NKV_GPU_CHUNK || chunk_ranges > NKV_GPU_CHUNK_RANGES)
		rc = nkv_err(EINVAL, "staging: chunks of %llu bytes / %u ranges exceed the slots", (unsigned long long)chunk_bytes,
			     chunk_ranges);
	else
		rc = nkv__chunk_plan(nkv_plan_ranges(plan), nkv_plan_count(plan), chunk_bytes, chunk_ranges, &st->cp);
	if (rc) {
		free(st);
		return rc;
	}
	st->slot = malloc(st->cp.nc * sizeof(*st->slot));
	st->sent = calloc(st->cp.nc, sizeof(*st->sent));
	if (!st->slot || !st->sent) {
		nkv__stage_free(st);
		return nkv_err(ENOMEM, "staging: out of memory for %zu chunks", st->cp.nc);
	}
	for (size_t i = 0; i < st->cp.nc; i++)
		st->slot[i] = -1;
	st->allow = gated ? 0 : (uint32_t)st->cp.nc;
	st->queued = true;
	if (g->qtail)
		g->qtail->qnext = st;
	else
		g->qhead = st;
	g->qtail = st;
	issue_more(g);
	*out = st;
	return 0;
}

const struct nkv_chunk_plan *nkv__stage_plan(const struct nkv_stage *st)
{
	return &st->cp;
}

int nkv__stage_ptr(struct nkv_stage *st, uint32_t chunk, const uint8_t **base)
{
	struct out_slot *s;

	*base = NULL;
	if (st->err)
		return nkv_err(-st->err, "GPU staging: %s", st->errmsg);
	if (chunk >= st->cp.nc || st->slot[chunk] < 0)
		return 0;
	s = &st->g->out[st->slot[chunk]];
	if (!s->ready)
		return 0;
	*base = s->host;
	return 1;
}

static void slot_release(struct nkv_gpu_ctx *g, struct out_slot *s)
{
	s->st = NULL;
	if (s->ready) {
		s->busy = false;
		g->out_busy--;
	}
	/* Not ready: the copy is still running; progress frees it when the
	 * event fires, so nothing is written over it while in flight. */
}

bool nkv__stage_sent(struct nkv_stage *st, uint32_t chunk, uint64_t bytes)
{
	struct nkv_gpu_ctx *g = st->g;

	if (chunk >= st->cp.nc || st->slot[chunk] < 0)
		return false;
	st->sent[chunk] += bytes;
	if (st->sent[chunk] < st->cp.c[chunk].bytes)
		return false;
	slot_release(g, &g->out[st->slot[chunk]]);
	st->slot[chunk] = -1;
	issue_more(g);
	return true;
}

void nkv__stage_free(struct nkv_stage *st)
{
	struct nkv_gpu_ctx *g;

	if (!st)
		return;
	g = st->g;
	for (unsigned i = 0; i < NKV_GPU_OUT_SLOTS; i++)
		if (g->out[i].st == st)
			slot_release(g, &g->out[i]);
	for (struct nkv_stage **pp = &g->qhead; st->queued && *pp; pp = &(*pp)->qnext)
		if (*pp == st) {
			queue_unlink(g, pp);
			break;
		}
	nkv__chunk_plan_free(&st->cp);
	free(st->slot);
	free(st->sent);
	free(st);
	issue_more(g);
}

int nkv__gpu_progress(struct nkv_engine *e)
{
	struct nkv_gpu_ctx *g = e->gpu;
	int rc;

	if (!g)
		return 0;
	for (unsigned i = 0; i < NKV_GPU_OUT_SLOTS; i++) {
		struct out_slot *s = &g->out[i];

		if (!s->busy || s->ready)
			continue;
		if ((rc = g->ops->event_done(g->dev, s->ev)) < 0) {
			if (s->st)
				stage_fail(s->st, rc);
			rc = 1; /* the slot is lost to a broken device; the request fails */
		}
		if (rc == 1) {
			s->ready = true;
			g->ready_gen++;
			if (!s->st) { /* orphaned by a request that ended */
				s->busy = false;
				g->out_busy--;
			}
		}
	}
	issue_more(g);
	/* Copies running: the caller polls without sleeping. Slots that are
	 * ready and waiting for the network need no spinning: the sends that
	 * free them come as io_uring completions. */
	for (unsigned i = 0; i < NKV_GPU_OUT_SLOTS; i++)
		if (g->out[i].busy && !g->out[i].ready)
			return 1;
	return g->in_pending ? 1 : 0;
}

/* ---- receiver ------------------------------------------------------------------ */

int nkv__gpu_in_acquire(struct nkv_engine *e, void *owner, struct nkv_gpu_in **slot)
{
	struct nkv_gpu_ctx *g;
	int rc;

	*slot = NULL;
	if ((rc = nkv__gpu_ctx(e, &g)) || (rc = in_slots_make(g)))
		return rc;
	for (unsigned i = 0; i < NKV_GPU_IN_SLOTS; i++)
		if (!g->in[i].owner) {
			g->in[i].owner = owner;
			g->in[i].pending = false;
			g->in[i].keep = false;
			*slot = &g->in[i];
			return 0;
		}
	return -EAGAIN;
}

uint8_t *nkv__gpu_in_buf(struct nkv_gpu_in *slot)
{
	return slot->host;
}

int nkv__gpu_in_commit(struct nkv_engine *e, struct nkv_gpu_in *s, void *dev, const struct nkv_range *ranges,
		       uint32_t n, uint64_t req_id)
{
	struct nkv_gpu_ctx *g = e->gpu;
	const struct nkv_gpu_ops *o = g->ops;
	uint64_t bytes = 0, max_len = 0, end = 0;
	int rc;

	if (!n || n > NKV_GPU_IN_RANGES)
		return nkv_err(EINVAL, "GPU receive: %u ranges (1..%u)", n, NKV_GPU_IN_RANGES);
	for (uint32_t i = 0; i < n; i++) {
		bytes += ranges[i].len;
		if (ranges[i].len > max_len)
			max_len = ranges[i].len;
		if (ranges[i].src_off + ranges[i].len > end)
			end = ranges[i].src_off + ranges[i].len;
	}
	if (end > NKV_GPU_IN_BYTES)
		return nkv_err(EINVAL, "GPU receive: %llu bytes exceed the %u-byte slot", (unsigned long long)end,
			       NKV_GPU_IN_BYTES);
	if (n == 1) {
		rc = o->copy_async(g->dev, (uint8_t *)dev + ranges[0].dst_off, s->host + ranges[0].src_off, ranges[0].len,
				   g->sin);
	} else {
		memcpy(s->hdesc, ranges, n * sizeof(*ranges));
		if (!(rc = o->copy_async(g->dev, s->dev, s->host, end, g->sin)) &&
		    !(rc = o->copy_async(g->dev, s->ddesc, s->hdesc, n * sizeof(*ranges), g->sin)))
			rc = o->copy_ranges_async(g->dev, dev, s->dev, s->ddesc, n, max_len, g->sin);
	}
	if (!rc)
		rc = o->event_record(g->dev, s->ev, g->sin);
	if (rc)
		return rc;
	s->pending = true;
	s->req_id = req_id;
	s->bytes = bytes;
	g->in_pending++;
	return 0;
}

void nkv__gpu_in_keep(struct nkv_gpu_in *s)
{
	s->keep = true;
}

void nkv__gpu_in_release(struct nkv_engine *e, struct nkv_gpu_in *s)
{
	if (s && !s->pending)
		s->owner = NULL;
}

int nkv__gpu_in_reap(struct nkv_engine *e, void (*fn)(void *owner, uint64_t req_id, uint64_t bytes, int status))
{
	struct nkv_gpu_ctx *g = e->gpu;
	int n = 0, rc;

	if (!g || !g->in_pending)
		return 0;
	for (unsigned i = 0; i < NKV_GPU_IN_SLOTS; i++) {
		struct nkv_gpu_in *s = &g->in[i];
		void *owner = s->owner;

		if (!s->pending)
			continue;
		if ((rc = g->ops->event_done(g->dev, s->ev)) == 0)
			continue;
		s->pending = false;
		if (!s->keep)
			s->owner = NULL;
		g->in_pending--;
		fn(owner, s->req_id, s->bytes, rc < 0 ? rc : 0);
		n++;
	}
	return n;
}

void nkv__gpu_in_drop_owner(struct nkv_engine *e, void *owner)
{
	struct nkv_gpu_ctx *g = e->gpu;
	bool synced = false;

	if (!g || !g->in_made)
		return;
	for (unsigned i = 0; i < NKV_GPU_IN_SLOTS; i++) {
		struct nkv_gpu_in *s = &g->in[i];

		if (s->owner != owner)
			continue;
		if (s->pending && !synced) {
			/* Teardown only: the copies must end before the slot is reused. */
			if (g->ops->stream_sync(g->dev, g->sin))
				nkv__log("GPU receive stream: %s", nkv_last_error());
			synced = true;
		}
		if (s->pending)
			g->in_pending--;
		s->pending = false;
		s->owner = NULL;
		s->keep = false;
	}
}
