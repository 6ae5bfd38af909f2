/*
 * Transfer plans: a request's block lists turned into byte ranges once,
 * coalesced wherever a run is contiguous on both sides, so the wire (or the
 * NIC) sees a few large writes instead of layers x 2 x blocks small ones.
 */
#include "netkv_transfer.h"
#include "nkv_util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct nkv_plan {
	struct nkv_range *r;
	size_t n;
	uint64_t bytes, src_extent, dst_extent;
	/* paged plans only */
	size_t nblocks;
	uint32_t *src_blocks, *dst_blocks;
	struct nkv_layout src_layout;
	bool paged;
};

static int cmp_src(const void *a, const void *b)
{
	const struct nkv_range *x = a, *y = b;
	return x->src_off < y->src_off ? -1 : x->src_off > y->src_off;
}

static int cmp_dst(const void *a, const void *b)
{
	const struct nkv_range *x = a, *y = b;
	return x->dst_off < y->dst_off ? -1 : x->dst_off > y->dst_off;
}

/* Sort by source offset, then merge neighbours contiguous on both sides.
 * Source order is the order the sender reads memory in, and for equal
 * layouts on both sides it is also the order that merges the most. */
static void coalesce(struct nkv_plan *p)
{
	size_t out = 0;

	qsort(p->r, p->n, sizeof(*p->r), cmp_src);
	for (size_t i = 0; i < p->n; i++) {
		struct nkv_range *last = out ? &p->r[out - 1] : NULL;

		if (last && last->src_off + last->len == p->r[i].src_off &&
		    last->dst_off + last->len == p->r[i].dst_off)
			last->len += p->r[i].len;
		else
			p->r[out++] = p->r[i];
	}
	p->n = out;
	p->bytes = p->src_extent = p->dst_extent = 0;
	for (size_t i = 0; i < p->n; i++) {
		p->bytes += p->r[i].len;
		if (p->r[i].src_off + p->r[i].len > p->src_extent)
			p->src_extent = p->r[i].src_off + p->r[i].len;
		if (p->r[i].dst_off + p->r[i].len > p->dst_extent)
			p->dst_extent = p->r[i].dst_off + p->r[i].len;
	}
}

static bool same_shape(const struct nkv_layout *a, const struct nkv_layout *b)
{
	return a->model.layers == b->model.layers && a->model.kv_heads == b->model.kv_heads &&
	       a->model.head_dim == b->model.head_dim && nkv_dtype_bytes(a->model.dtype) == nkv_dtype_bytes(b->model.dtype) &&
	       a->model.mla == b->model.mla && a->block_tokens == b->block_tokens;
}

int nkv_plan_build(const struct nkv_layout *src, const struct nkv_layout *dst, const uint32_t *src_blocks,
		   const uint32_t *dst_blocks, size_t nblocks, struct nkv_plan **out)
{
	struct nkv_plan *p;
	uint8_t *seen;
	uint64_t chunk;
	uint32_t nt;
	size_t k = 0;
	int rc;

	*out = NULL;
	if ((rc = nkv_layout_check(src)))
		return nkv_err_wrap(rc, "source layout");
	if ((rc = nkv_layout_check(dst)))
		return nkv_err_wrap(rc, "destination layout");
	if (!same_shape(src, dst))
		return nkv_err(EINVAL, "source and destination layouts differ in model shape or block size "
				       "(%u/%u tokens per block)", src->block_tokens, dst->block_tokens);
	if (!nblocks)
		return nkv_err(EINVAL, "empty block list: a request moves at least one block");
	if (!src_blocks || !dst_blocks)
		return nkv_err(EINVAL, "missing block list");
	nt = nkv_layout_tensors(src);
	if (nblocks > SIZE_MAX / sizeof(struct nkv_range) / src->model.layers / nt)
		return nkv_err(EOVERFLOW, "%zu blocks is too many for one request", nblocks);

	/* Bounds and duplicate destinations (two blocks written to one place:
	 * the later would silently overwrite the earlier). */
	seen = calloc((dst->num_blocks + 7) / 8, 1);
	if (!seen)
		return nkv_err(ENOMEM, "plan: out of memory");
	for (size_t i = 0; i < nblocks; i++) {
		if (src_blocks[i] >= src->num_blocks) {
			free(seen);
			return nkv_err(ERANGE, "source block id %u (entry %zu) beyond pool of %u blocks",
				       src_blocks[i], i, src->num_blocks);
		}
		if (dst_blocks[i] >= dst->num_blocks) {
			free(seen);
			return nkv_err(ERANGE, "destination block id %u (entry %zu) beyond pool of %u blocks",
				       dst_blocks[i], i, dst->num_blocks);
		}
		if (seen[dst_blocks[i] / 8] & (1u << (dst_blocks[i] % 8))) {
			free(seen);
			return nkv_err(EINVAL, "destination block %u named twice (entry %zu): overlapping destinations",
				       dst_blocks[i], i);
		}
		seen[dst_blocks[i] / 8] |= (uint8_t)(1u << (dst_blocks[i] % 8));
	}
	free(seen);

	p = calloc(1, sizeof(*p));
	if (!p)
		return nkv_err(ENOMEM, "plan: out of memory");
	p->n = nblocks * src->model.layers * nt;
	p->r = malloc(p->n * sizeof(*p->r));
	p->src_blocks = malloc(nblocks * sizeof(uint32_t));
	p->dst_blocks = malloc(nblocks * sizeof(uint32_t));
	if (!p->r || !p->src_blocks || !p->dst_blocks) {
		nkv_plan_free(p);
		return nkv_err(ENOMEM, "plan: out of memory for %zu ranges", nblocks * src->model.layers * nt);
	}
	memcpy(p->src_blocks, src_blocks, nblocks * sizeof(uint32_t));
	memcpy(p->dst_blocks, dst_blocks, nblocks * sizeof(uint32_t));
	p->nblocks = nblocks;
	p->src_layout = *src;
	p->paged = true;

	chunk = nkv_layout_chunk_bytes(src);
	for (size_t i = 0; i < nblocks; i++)
		for (uint32_t layer = 0; layer < src->model.layers; layer++)
			for (uint32_t kv = 0; kv < nt; kv++)
				p->r[k++] = (struct nkv_range){
					.src_off = nkv_layout_chunk_offset(src, src_blocks[i], layer, kv),
					.dst_off = nkv_layout_chunk_offset(dst, dst_blocks[i], layer, kv),
					.len = chunk,
				};
	coalesce(p);
	/* Shrink: coalescing often leaves a few ranges out of many thousands. */
	struct nkv_range *r = realloc(p->r, (p->n ? p->n : 1) * sizeof(*p->r));
	if (r)
		p->r = r;
	*out = p;
	return 0;
}

int nkv_plan_build_raw(const struct nkv_range *ranges, size_t n, struct nkv_plan **out)
{
	struct nkv_plan *p;
	struct nkv_range *byd;

	*out = NULL;
	if (!n || !ranges)
		return nkv_err(EINVAL, "empty range list: a request moves at least one range");
	for (size_t i = 0; i < n; i++) {
		if (!ranges[i].len)
			return nkv_err(EINVAL, "range %zu has zero length", i);
		if (ranges[i].src_off > UINT64_MAX - ranges[i].len || ranges[i].dst_off > UINT64_MAX - ranges[i].len)
			return nkv_err(EOVERFLOW, "range %zu: offset + length overflows", i);
	}
	p = calloc(1, sizeof(*p));
	if (!p || !(p->r = malloc(n * sizeof(*p->r)))) {
		free(p);
		return nkv_err(ENOMEM, "plan: out of memory");
	}
	memcpy(p->r, ranges, n * sizeof(*p->r));
	p->n = n;
	/* Overlapping destinations: sort a copy by dst and compare neighbours. */
	byd = malloc(n * sizeof(*byd));
	if (!byd) {
		nkv_plan_free(p);
		return nkv_err(ENOMEM, "plan: out of memory");
	}
	memcpy(byd, ranges, n * sizeof(*byd));
	qsort(byd, n, sizeof(*byd), cmp_dst);
	for (size_t i = 1; i < n; i++)
		if (byd[i - 1].dst_off + byd[i - 1].len > byd[i].dst_off) {
			int rc = nkv_err(EINVAL, "destination ranges overlap: [%llu, +%llu) and [%llu, +%llu)",
					 (unsigned long long)byd[i - 1].dst_off, (unsigned long long)byd[i - 1].len,
					 (unsigned long long)byd[i].dst_off, (unsigned long long)byd[i].len);
			free(byd);
			nkv_plan_free(p);
			return rc;
		}
	free(byd);
	coalesce(p);
	*out = p;
	return 0;
}

size_t nkv_plan_count(const struct nkv_plan *p) { return p->n; }
const struct nkv_range *nkv_plan_ranges(const struct nkv_plan *p) { return p->r; }
uint64_t nkv_plan_bytes(const struct nkv_plan *p) { return p->bytes; }
uint64_t nkv_plan_src_extent(const struct nkv_plan *p) { return p->src_extent; }
uint64_t nkv_plan_dst_extent(const struct nkv_plan *p) { return p->dst_extent; }
size_t nkv_plan_nblocks(const struct nkv_plan *p) { return p->paged ? p->nblocks : 0; }
const uint32_t *nkv_plan_src_blocks(const struct nkv_plan *p) { return p->paged ? p->src_blocks : NULL; }
const uint32_t *nkv_plan_dst_blocks(const struct nkv_plan *p) { return p->paged ? p->dst_blocks : NULL; }
const struct nkv_layout *nkv_plan_src_layout(const struct nkv_plan *p) { return p->paged ? &p->src_layout : NULL; }

void nkv_plan_free(struct nkv_plan *p)
{
	if (!p)
		return;
	free(p->r);
	free(p->src_blocks);
	free(p->dst_blocks);
	free(p);
}
