/*
 * One send path and one receive path for host and staged GPU memory.
 *
 * Both backends move bytes unit by unit. Whether a unit's bytes sit in a
 * host region the backend reads or writes itself, or in GPU memory staged
 * through the pinned slots of gpu_stage.c, is decided here, once per push
 * or payload, so the TCP and verbs code build their sends and receives
 * from one description instead of forking on "is this staged" inline.
 * Gating (which chunks may be copied out when) stays with the backends:
 * these only forward nkv__src_allow() to the pipeline.
 */
#include "gpu_stage.h"

#include <errno.h>
#include <string.h>

int nkv__src_open(struct nkv_engine *e, const struct nkv_region *src, const struct nkv_plan *plan, bool staged,
		  uint64_t unit_bytes, uint32_t unit_ranges, bool cut_host, struct nkv_send_src *out)
{
	memset(out, 0, sizeof(*out));
	if (staged)
		return nkv__stage_new_cut(e, src->ptr, plan, unit_bytes, unit_ranges, true, &out->stage);
	out->base = (uintptr_t)src->ptr;
	if (cut_host)
		return nkv__chunk_plan(nkv_plan_ranges(plan), nkv_plan_count(plan), unit_bytes, unit_ranges, &out->cut);
	out->r = nkv_plan_ranges(plan);
	out->nr = nkv_plan_count(plan);
	return 0;
}

void nkv__src_close(struct nkv_send_src *s)
{
	nkv__stage_free(s->stage);
	nkv__chunk_plan_free(&s->cut);
	memset(s, 0, sizeof(*s));
}

bool nkv__src_staged(const struct nkv_send_src *s)
{
	return s->stage != NULL;
}

const struct nkv_chunk_plan *nkv__src_units(const struct nkv_send_src *s)
{
	return s->stage ? nkv__stage_plan(s->stage) : s->cut.r ? &s->cut : NULL;
}

uint32_t nkv__src_nunits(const struct nkv_send_src *s)
{
	const struct nkv_chunk_plan *u = nkv__src_units(s);

	return u ? (uint32_t)u->nc : 0;
}

size_t nkv__src_count(const struct nkv_send_src *s)
{
	const struct nkv_chunk_plan *u = nkv__src_units(s);

	return u ? u->nr : s->nr;
}

struct nkv_send_range nkv__src_range(const struct nkv_send_src *s, size_t i)
{
	const struct nkv_chunk_plan *u = nkv__src_units(s);

	if (!u)
		return (struct nkv_send_range){ .src = s->base + s->r[i].src_off, .dst_off = s->r[i].dst_off,
						.len = s->r[i].len, .unit = NKV_NO_UNIT };
	/* Staged, a chunk holds its ranges packed: the source is the offset in it. */
	return (struct nkv_send_range){ .src = s->stage ? u->r[i].soff : s->base + u->r[i].src_off,
					.uoff = u->r[i].soff, .dst_off = u->r[i].dst_off, .len = u->r[i].len,
					.unit = u->r[i].chunk };
}

void nkv__src_allow(struct nkv_send_src *s, uint32_t n)
{
	if (s->stage)
		nkv__stage_allow(s->stage, n);
}

int nkv__src_ready(struct nkv_send_src *s, uint32_t unit, uint64_t *base)
{
	const uint8_t *p;
	int rc;

	*base = 0;
	if (!s->stage || unit == NKV_NO_UNIT)
		return 1;
	if ((rc = nkv__stage_ptr(s->stage, unit, &p)) > 0)
		*base = (uintptr_t)p;
	return rc;
}

bool nkv__src_sent(struct nkv_send_src *s, uint32_t unit, uint64_t bytes)
{
	return s->stage && unit != NKV_NO_UNIT && nkv__stage_sent(s->stage, unit, bytes);
}

void nkv__rx_begin(struct nkv_rx *rx, const struct nkv_region *r, uint64_t off)
{
	bool staged = r->kind == NKV_MEM_CUDA;

	*rx = (struct nkv_rx){ .staged = staged, .ready = !staged, .dev = r->ptr,
			       .host = staged ? NULL : (uint8_t *)r->ptr + off };
}

void nkv__rx_lent(struct nkv_rx *rx, const struct nkv_region *r, struct nkv_gpu_in *slot)
{
	*rx = (struct nkv_rx){ .staged = true, .ready = true, .dev = r->ptr, .slot = slot };
}

int nkv__rx_slot(struct nkv_engine *e, void *owner, struct nkv_rx *rx)
{
	int rc;

	if (rx->ready)
		return 1;
	rc = nkv__gpu_in_acquire(e, owner, &rx->slot);
	if (rc == -EAGAIN)
		return 0;
	if (rc)
		return rc;
	rx->ready = true;
	return 1;
}

uint8_t *nkv__rx_buf(const struct nkv_rx *rx)
{
	return rx->slot ? nkv__gpu_in_buf(rx->slot) : rx->host;
}

bool nkv__rx_packed(const struct nkv_rx *rx)
{
	return rx->staged;
}

int nkv__rx_deliver(struct nkv_engine *e, struct nkv_rx *rx, const struct nkv_range *ranges, uint32_t n,
		    uint64_t cookie)
{
	int rc;

	if (!rx->staged) {
		*rx = (struct nkv_rx){ 0 };
		return 1;
	}
	if ((rc = nkv__gpu_in_commit(e, rx->slot, rx->dev, ranges, n, cookie)))
		return rc;
	*rx = (struct nkv_rx){ 0 };
	return 0;
}

void nkv__rx_drop(struct nkv_engine *e, struct nkv_rx *rx)
{
	if (rx->slot)
		nkv__gpu_in_release(e, rx->slot);
	*rx = (struct nkv_rx){ 0 };
}
