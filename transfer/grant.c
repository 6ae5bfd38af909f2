/*
 * Grants (netkv_transfer.h): which request may write which bytes of a region
 * that requires them. The receiving application grants a request's pages
 * once it has reserved them; the backend's receiver asks nkv__grant_for()
 * (and nkv__grant_covers() for each range) on every header before a
 * payload byte lands. Held in a hash by request id that grows and shrinks
 * with the grants held; each grant's ranges are sorted and merged, so a
 * check is one lookup and a binary search. The first connection to write
 * under a grant holds it; the last revoked ids are remembered so that a
 * request's bytes still on the way after a revoke can be dropped quietly.
 */
#include "backend.h"
#include "nkv_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

static size_t slot(uint64_t id, size_t nb)
{
	return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 32) & (nb - 1);
}

static int rehash(struct nkv_engine *e, size_t nb)
{
	struct nkv_grant **b = calloc(nb, sizeof(*b));

	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < e->grant_nb; i++)
		for (struct nkv_grant *g = e->grants[i], *ng; g; g = ng) {
			size_t k = slot(g->req_id, nb);
			ng = g->hnext;
			g->hnext = b[k];
			b[k] = g;
		}
	free(e->grants);
	e->grants = b;
	e->grant_nb = nb;
	return 0;
}

static struct nkv_grant **grant_slot(const struct nkv_engine *e, uint64_t req_id)
{
	struct nkv_grant **pp = &e->grants[slot(req_id, e->grant_nb)];

	while (*pp && (*pp)->req_id != req_id)
		pp = &(*pp)->hnext;
	return pp;
}

struct nkv_grant *nkv__grant_find(const struct nkv_engine *e, uint64_t req_id)
{
	return e->ngrants ? *grant_slot(e, req_id) : NULL;
}

static void grant_unlink(struct nkv_engine *e, struct nkv_grant **pp)
{
	struct nkv_grant *g = *pp;

	*pp = g->hnext;
	free(g->rg);
	free(g);
	e->ngrants--;
	/* Shrink once a burst has drained (a failed shrink keeps the larger table). */
	if (e->grant_nb > 64 && e->ngrants < e->grant_nb / 8)
		rehash(e, e->grant_nb / 4);
}

int nkv_region_set_access(struct nkv_engine *e, uint32_t region, enum nkv_region_access access)
{
	struct nkv_region *r = nkv__region(e, region);

	if (!r)
		return nkv_err(ENOENT, "no region %u", region);
	if (access != NKV_REGION_OPEN && access != NKV_REGION_GRANTED)
		return nkv_err(EINVAL, "region %u: unknown access %d", region, (int)access);
	if (access == NKV_REGION_GRANTED && !e->ops->grants)
		return nkv_err(EOPNOTSUPP, "region %u: the %s backend cannot require grants (its peers write through "
					   "the NIC, which checks only the region's key)", region, e->ops->name);
	if (access == NKV_REGION_OPEN)
		nkv__grants_drop_region(e, region);
	r->granted = access == NKV_REGION_GRANTED;
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static int cmp_span(const void *a, const void *b)
{
	const struct nkv__span *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

/* Takes rg (malloc'd, n spans, checked against the region): sorts, merges, stores. */
static int grant_add(struct nkv_engine *e, uint64_t req_id, uint32_t region, struct nkv__span *rg, size_t n)
{
	struct nkv_grant *g;
	size_t k = 0;

	if (e->ngrants && *grant_slot(e, req_id)) {
		free(rg);
		return nkv_err(EEXIST, "request %llu already has a grant", (unsigned long long)req_id);
	}
	for (size_t i = 1; i < n; i++)
		if (rg[i].off < rg[i - 1].off) { /* nkv_grant_blocks() hands them over sorted */
			qsort(rg, n, sizeof(*rg), cmp_span);
			break;
		}
	for (size_t i = 1; i < n; i++) {
		if (rg[i].off <= rg[k].off + rg[k].len) {
			uint64_t end = rg[i].off + rg[i].len;
			if (end > rg[k].off + rg[k].len)
				rg[k].len = end - rg[k].off;
		} else {
			rg[++k] = rg[i];
		}
	}
	n = k + 1;
	if (!(g = calloc(1, sizeof(*g))) ||
	    (e->ngrants + 1 > e->grant_nb && rehash(e, e->grant_nb ? e->grant_nb * 2 : 64))) {
		free(g);
		free(rg);
		return nkv_err(ENOMEM, "out of memory for request %llu's grant", (unsigned long long)req_id);
	}
	g->req_id = req_id;
	g->region = region;
	g->rg = rg;
	g->n = n;
	for (size_t i = 0; i < n; i++)
		g->bytes += rg[i].len;
	g->hnext = e->grants[slot(req_id, e->grant_nb)];
	e->grants[slot(req_id, e->grant_nb)] = g;
	e->ngrants++;
	return 0;
}

static int granted_region(struct nkv_engine *e, uint64_t req_id, uint32_t region, size_t n, struct nkv_region **out)
{
	struct nkv_region *r = nkv__region(e, region);

	if (!r)
		return nkv_err(ENOENT, "grant for request %llu: no region %u", (unsigned long long)req_id, region);
	if (!r->granted)
		return nkv_err(EINVAL, "grant for request %llu: region %u is open to every authenticated peer (set "
				       "it to NKV_REGION_GRANTED first)", (unsigned long long)req_id, region);
	if (!n)
		return nkv_err(EINVAL, "grant for request %llu: no ranges", (unsigned long long)req_id);
	*out = r;
	return 0;
}

int nkv_grant(struct nkv_engine *e, uint64_t req_id, uint32_t region, const struct nkv_range *ranges, size_t n)
{
	struct nkv_region *r;
	struct nkv__span *rg;
	int rc;

	if ((rc = granted_region(e, req_id, region, n, &r)))
		return rc;
	if (!(rg = malloc(n * sizeof(*rg))))
		return nkv_err(ENOMEM, "out of memory for request %llu's grant", (unsigned long long)req_id);
	for (size_t i = 0; i < n; i++) {
		const struct nkv_range *x = &ranges[i];
		if (!x->len || x->dst_off > r->len || x->len > r->len - x->dst_off) {
			free(rg);
			return nkv_err(ERANGE, "grant for request %llu: range %zu [%llu, +%llu) is empty or outside "
					       "region %u of %llu bytes", (unsigned long long)req_id, i,
				       (unsigned long long)x->dst_off, (unsigned long long)x->len, region,
				       (unsigned long long)r->len);
		}
		rg[i] = (struct nkv__span){ x->dst_off, x->len };
	}
	return grant_add(e, req_id, region, rg, n);
}

int nkv_grant_blocks(struct nkv_engine *e, uint64_t req_id, uint32_t region, const uint32_t *blocks, size_t n)
{
	struct nkv_region *r;
	const struct nkv_layout *l;
	uint32_t per;
	uint64_t chunk;
	struct nkv__span *rg = NULL;
	uint32_t *sorted = NULL;
	size_t k = 0;
	int rc;

	if ((rc = granted_region(e, req_id, region, n, &r)))
		return rc;
	if (!r->has_layout)
		return nkv_err(EINVAL, "grant for request %llu: region %u has no block layout", (unsigned long long)req_id,
			       region);
	l = &r->layout;
	per = l->model.layers * nkv_layout_tensors(l);
	chunk = nkv_layout_chunk_bytes(l);
	if (n > SIZE_MAX / per / sizeof(*rg) || !(rg = malloc(n * per * sizeof(*rg))) ||
	    !(sorted = malloc(n * sizeof(*sorted)))) {
		free(rg);
		return nkv_err(ENOMEM, "out of memory for request %llu's grant", (unsigned long long)req_id);
	}
	for (size_t i = 0; i < n; i++)
		if ((sorted[i] = blocks[i]) >= l->num_blocks) {
			free(rg);
			free(sorted);
			return nkv_err(ERANGE, "grant for request %llu: block %u beyond region %u's %u blocks",
				       (unsigned long long)req_id, blocks[i], region, l->num_blocks);
		}
	/* Pieces in address order, so they need no sort: blocks ascending within
	 * each (layer, K/V) tensor (layer-major), or each block's pieces in turn. */
	qsort(sorted, n, sizeof(*sorted), cmp_u32);
	if (l->kind == NKV_LAYOUT_LAYER_MAJOR) {
		for (uint32_t layer = 0; layer < l->model.layers; layer++)
			for (uint32_t kv = 0; kv < nkv_layout_tensors(l); kv++)
				for (size_t i = 0; i < n; i++)
					rg[k++] = (struct nkv__span){ nkv_layout_chunk_offset(l, sorted[i], layer, kv), chunk };
	} else {
		for (size_t i = 0; i < n; i++)
			for (uint32_t layer = 0; layer < l->model.layers; layer++)
				for (uint32_t kv = 0; kv < nkv_layout_tensors(l); kv++)
					rg[k++] = (struct nkv__span){ nkv_layout_chunk_offset(l, sorted[i], layer, kv), chunk };
	}
	free(sorted);
	return grant_add(e, req_id, region, rg, k);
}

int nkv_revoke(struct nkv_engine *e, uint64_t req_id)
{
	struct nkv_grant **pp;
	size_t k;

	if (!e->ngrants || !*(pp = grant_slot(e, req_id)))
		return 0;
	k = e->nrevoked++ % NKV__REVOKED_KEEP;
	e->revoked[k].req_id = req_id;
	e->revoked[k].region = (*pp)->region;
	grant_unlink(e, pp);
	return 1;
}

bool nkv__grant_revoked(const struct nkv_engine *e, uint64_t req_id, uint32_t region)
{
	size_t n = e->nrevoked < NKV__REVOKED_KEEP ? e->nrevoked : NKV__REVOKED_KEEP;

	for (size_t i = 0; i < n; i++)
		if (e->revoked[i].req_id == req_id && e->revoked[i].region == region)
			return true;
	return false;
}

const struct nkv_grant *nkv__grant_for(struct nkv_engine *e, const struct nkv_region *r, struct nkv_conn *c,
				       uint64_t req_id, uint64_t total, char *why, size_t wlen)
{
	struct nkv_grant *g = nkv__grant_find(e, req_id);

	if (!g || g->region != r->id) {
		snprintf(why, wlen, "request %llu has no grant to write region %u", (unsigned long long)req_id, r->id);
		return NULL;
	}
	if (total > g->bytes) {
		snprintf(why, wlen, "request %llu announces %llu bytes, its grant in region %u covers %llu",
			 (unsigned long long)req_id, (unsigned long long)total, r->id, (unsigned long long)g->bytes);
		return NULL;
	}
	if (g->writer && g->writer != c) {
		snprintf(why, wlen, "request %llu is being written by another connection", (unsigned long long)req_id);
		return NULL;
	}
	g->writer = c;
	return g;
}

void nkv__grants_conn_gone(struct nkv_engine *e, struct nkv_conn *c)
{
	for (size_t i = 0; e->ngrants && i < e->grant_nb; i++)
		for (struct nkv_grant *g = e->grants[i]; g; g = g->hnext)
			if (g->writer == c)
				g->writer = NULL;
}

bool nkv__grant_covers(const struct nkv_grant *g, uint64_t off, uint64_t len)
{
	size_t lo = 0, hi = g->n;

	/* The last range starting at or before off must hold all of [off, +len). */
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (g->rg[mid].off <= off)
			lo = mid;
		else
			hi = mid;
	}
	return g->rg[lo].off <= off && off - g->rg[lo].off <= g->rg[lo].len &&
	       len <= g->rg[lo].len - (off - g->rg[lo].off);
}

void nkv__grant_consume(struct nkv_engine *e, uint64_t req_id, uint32_t region)
{
	struct nkv_grant **pp;

	if (e->ngrants && *(pp = grant_slot(e, req_id)) && (*pp)->region == region)
		grant_unlink(e, pp);
}

void nkv__grants_drop_region(struct nkv_engine *e, uint32_t region)
{
	for (size_t i = 0; i < e->grant_nb; i++)
		for (struct nkv_grant **pp = &e->grants[i]; *pp;) {
			if ((*pp)->region != region) {
				pp = &(*pp)->hnext;
				continue;
			}
			struct nkv_grant *g = *pp;
			*pp = g->hnext;
			free(g->rg);
			free(g);
			e->ngrants--;
		}
}

void nkv__grants_free(struct nkv_engine *e)
{
	for (size_t i = 0; i < e->grant_nb; i++)
		for (struct nkv_grant *g = e->grants[i], *ng; g; g = ng) {
			ng = g->hnext;
			free(g->rg);
			free(g);
		}
	free(e->grants);
	e->grants = NULL;
	e->grant_nb = e->ngrants = 0;
}
