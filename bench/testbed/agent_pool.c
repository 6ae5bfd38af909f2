/*
 * The agent's paged KV pool (agent_pool.h): slots of one hash block, pages
 * from a free list, the pattern written and checked page by page.
 */
#include "agent_pool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gpu.h"
#include "nkv_util.h"

/* ---- the pattern ------------------------------------------------------------ */

static uint64_t splitmix(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* The (layer, kv) chunk of the 512-token block of hash id `hash`. */
static void pattern_chunk(uint8_t *dst, uint64_t len, uint64_t hash, uint32_t layer, uint32_t kv)
{
	uint64_t s = hash * 0x100000001B3ull ^ ((uint64_t)layer << 8 | kv);
	uint64_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t v = splitmix(&s);
		memcpy(dst + i, &v, 8);
	}
	if (i < len) {
		uint64_t v = splitmix(&s);
		memcpy(dst + i, &v, len - i);
	}
}

/* ---- set-up ------------------------------------------------------------------ */

int agent_pool_init(struct agent_pool *p, const struct nkv_model *m, uint32_t slots, uint32_t page_tokens,
		    enum nkv_layout_kind kind)
{
	memset(p, 0, sizeof(*p));
	if (!page_tokens || page_tokens > AGENT_HASH_TOKENS || AGENT_HASH_TOKENS % page_tokens)
		return nkv_err(EINVAL, "--page-tokens %u: must divide %u (1, 2, 4, ... 512)", page_tokens,
			       AGENT_HASH_TOKENS);
	p->ppb = AGENT_HASH_TOKENS / page_tokens;
	if ((uint64_t)slots * p->ppb > (1u << 26))
		return nkv_err(EINVAL, "%u blocks of %u pages: more than %u pages", slots, p->ppb, 1u << 26);
	p->n = slots;
	p->layout = (struct nkv_layout){ .model = *m, .block_tokens = page_tokens, .num_blocks = slots * p->ppb,
					 .kind = kind };
	int rc = nkv_layout_check(&p->layout);
	if (rc)
		return rc;
	uint32_t np = slots * p->ppb;
	p->hash = calloc(slots, sizeof(uint64_t));
	p->valid = calloc(slots, sizeof(bool));
	p->pin = calloc(slots, sizeof(uint32_t));
	p->stamp = calloc(slots, sizeof(uint64_t));
	p->pages = calloc(np, sizeof(uint32_t));
	p->has_pages = calloc(slots, sizeof(bool));
	p->freeq = calloc(np, sizeof(uint32_t));
	p->capdelta = 8192;
	p->added = calloc(p->capdelta, sizeof(uint64_t));
	p->evicted = calloc(p->capdelta, sizeof(uint64_t));
	/* one 512-token chunk: the page size times pages per slot */
	p->scratch = malloc(nkv_layout_chunk_bytes(&p->layout) * p->ppb + 8);
	if (!p->hash || !p->valid || !p->pin || !p->stamp || !p->pages || !p->has_pages || !p->freeq || !p->added ||
	    !p->evicted || !p->scratch) {
		agent_pool_free(p);
		return nkv_err(ENOMEM, "out of memory for a pool of %u blocks", slots);
	}
	for (uint32_t i = 0; i < np; i++)
		p->freeq[i] = i;
	p->fq_len = np;
	p->gpu = -1;
	return 0;
}

void agent_pool_free(struct agent_pool *p)
{
	free(p->hash), free(p->valid), free(p->pin), free(p->stamp), free(p->pages), free(p->has_pages);
	free(p->freeq), free(p->added), free(p->evicted), free(p->scratch);
	p->hash = NULL, p->valid = NULL, p->pin = NULL, p->stamp = NULL, p->pages = NULL, p->has_pages = NULL;
	p->freeq = NULL, p->added = NULL, p->evicted = NULL, p->scratch = NULL;
}

/* ---- pages ------------------------------------------------------------------- */

/* Slot b gets fresh pages: its old ones go to the free list's tail in
 * reverse order (vLLM frees a request's blocks tail first), then it takes
 * ppb from the head. Every slot owns ppb pages or none, so there are always
 * enough. */
static void slot_repage(struct agent_pool *p, uint32_t b)
{
	uint32_t np = p->n * p->ppb, *pg = p->pages + (uint64_t)b * p->ppb;
	if (p->has_pages[b])
		for (uint32_t j = p->ppb; j-- > 0;)
			p->freeq[(p->fq_head + p->fq_len++) % np] = pg[j];
	for (uint32_t j = 0; j < p->ppb; j++) {
		pg[j] = p->freeq[p->fq_head];
		p->fq_head = (p->fq_head + 1) % np;
		p->fq_len--;
	}
	p->has_pages[b] = true;
}

void agent_pool_pages(const struct agent_pool *p, const uint32_t *slots, uint32_t n, uint32_t *out)
{
	for (uint32_t i = 0; i < n; i++)
		memcpy(out + (uint64_t)i * p->ppb, p->pages + (uint64_t)slots[i] * p->ppb, p->ppb * sizeof(uint32_t));
}

/* ---- the prefix cache: hash per slot, pins and LRU ---------------------------- */

static void delta_push(struct agent_pool *p, bool add, uint64_t h)
{
	uint64_t **arr = add ? &p->added : &p->evicted;
	uint32_t *cnt = add ? &p->nadded : &p->nevicted;
	if (*cnt >= p->capdelta)
		return; /* the next heartbeat full of deltas; the rest shows up later via reuse */
	(*arr)[(*cnt)++] = h;
}

int agent_pool_find(struct agent_pool *p, uint64_t h)
{
	for (uint32_t b = 0; b < p->n; b++)
		if (p->valid[b] && p->hash[b] == h)
			return (int)b;
	return -1;
}

/* A slot to overwrite: a never-used one, else the least recently used unpinned. */
static int pool_take(struct agent_pool *p)
{
	int best = -1;
	for (uint32_t b = 0; b < p->n; b++) {
		if (p->pin[b])
			continue;
		if (!p->valid[b]) {
			best = (int)b;
			break;
		}
		if (best < 0 || p->stamp[b] < p->stamp[best])
			best = (int)b;
	}
	if (best >= 0 && p->valid[best]) {
		delta_push(p, false, p->hash[best]);
		p->valid[best] = false;
	}
	if (best >= 0)
		slot_repage(p, (uint32_t)best);
	return best;
}

bool agent_pool_reserve(struct agent_pool *p, const uint64_t *ids, uint32_t n, uint32_t *blocks, uint32_t *lead,
			bool *fresh)
{
	uint32_t need = 0;
	*lead = 0;
	bool leading = true;
	for (uint32_t i = 0; i < n; i++) {
		int b = agent_pool_find(p, ids[i]);
		blocks[i] = b < 0 ? UINT32_MAX : (uint32_t)b;
		/* a duplicate id within the request shares the slot */
		if (b < 0) {
			for (uint32_t j = 0; j < i; j++)
				if (ids[j] == ids[i])
					blocks[i] = blocks[j];
		}
		if (blocks[i] == UINT32_MAX) {
			need++;
			leading = false;
		} else if (leading) {
			(*lead)++;
		}
	}
	/* unpinned slots not among the held ones */
	uint32_t avail = 0;
	for (uint32_t b = 0; b < p->n; b++)
		if (!p->pin[b]) {
			bool mine = false;
			for (uint32_t i = 0; i < n && !mine; i++)
				mine = blocks[i] == b;
			avail += !mine;
		}
	if (avail < need)
		return false;
	for (uint32_t i = 0; i < n; i++)
		if (blocks[i] != UINT32_MAX) {
			p->pin[blocks[i]]++;
			p->stamp[blocks[i]] = ++p->clock;
			fresh[i] = false;
		}
	for (uint32_t i = 0; i < n; i++) {
		if (blocks[i] != UINT32_MAX)
			continue;
		uint32_t b = (uint32_t)pool_take(p);
		p->hash[b] = ids[i];
		p->valid[b] = true; /* filled (prefill) or received (decode) before anyone reads it */
		p->pin[b]++;
		p->stamp[b] = ++p->clock;
		delta_push(p, true, ids[i]);
		blocks[i] = b;
		fresh[i] = true;
		for (uint32_t j = i + 1; j < n; j++)
			if (ids[j] == ids[i] && blocks[j] == UINT32_MAX) {
				blocks[j] = b;
				p->pin[b]++;
				fresh[j] = false;
			}
	}
	return true;
}

void agent_pool_unpin(struct agent_pool *p, const uint32_t *blocks, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (blocks[i] < p->n && p->pin[blocks[i]] && !--p->pin[blocks[i]])
			p->released++;
}

void agent_pool_drop(struct agent_pool *p, const uint32_t *blocks, const bool *fresh, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (fresh[i] && blocks[i] < p->n && p->valid[blocks[i]]) {
			p->valid[blocks[i]] = false;
			delta_push(p, false, p->hash[blocks[i]]);
		}
}

uint32_t agent_pool_used(const struct agent_pool *p)
{
	uint32_t used = 0;
	for (uint32_t b = 0; b < p->n; b++)
		used += p->pin[b] > 0;
	return used;
}

/* ---- contents ------------------------------------------------------------------ */

/* Page j of slot b, tensor (layer, kv): its offset in the pool. */
static uint64_t page_off(const struct agent_pool *p, uint32_t b, uint32_t j, uint32_t layer, uint32_t kv)
{
	return nkv_layout_chunk_offset(&p->layout, p->pages[(uint64_t)b * p->ppb + j], layer, kv);
}

static int by_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return a < b ? -1 : a > b;
}

/* GPU pools: copy slot b's page chunks between the host mirror and the
 * device (to_dev: mirror -> device), one blocking copy per run of adjacent
 * chunks. A slot's pages come off the free list in runs (often reversed),
 * so sorted they are few runs, not ppb x layers x 2 small copies. */
static int sync_slot(struct agent_pool *p, uint32_t b, bool to_dev)
{
	uint64_t pcb = nkv_layout_chunk_bytes(&p->layout);
	uint32_t nt = nkv_layout_tensors(&p->layout), n = 0;
	uint64_t *off = malloc((size_t)p->layout.model.layers * nt * p->ppb * sizeof(uint64_t));
	if (!off)
		return nkv_err(ENOMEM, "out of memory for the page list of a GPU pool block");
	for (uint32_t layer = 0; layer < p->layout.model.layers; layer++)
		for (uint32_t kv = 0; kv < nt; kv++)
			for (uint32_t j = 0; j < p->ppb; j++)
				off[n++] = page_off(p, b, j, layer, kv);
	qsort(off, n, sizeof(uint64_t), by_u64);
	int rc = 0;
	for (uint32_t i = 0; i < n && !rc;) {
		uint32_t k = i + 1;
		while (k < n && off[k] == off[k - 1] + pcb)
			k++;
		uint8_t *h = p->mem + off[i], *d = (uint8_t *)p->dev + off[i];
		uint64_t len = (uint64_t)(k - i) * pcb;
		rc = to_dev ? nkv__gpu()->copy(p->gpu, d, h, len) : nkv__gpu()->copy(p->gpu, h, d, len);
		i = k;
	}
	free(off);
	return rc;
}

int agent_pool_fill(struct agent_pool *p, uint32_t b, uint64_t h)
{
	uint64_t pcb = nkv_layout_chunk_bytes(&p->layout);
	for (uint32_t layer = 0; layer < p->layout.model.layers; layer++)
		for (uint32_t kv = 0; kv < nkv_layout_tensors(&p->layout); kv++) {
			pattern_chunk(p->scratch, pcb * p->ppb, h, layer, kv);
			for (uint32_t j = 0; j < p->ppb; j++)
				memcpy(p->mem + page_off(p, b, j, layer, kv), p->scratch + (uint64_t)j * pcb, pcb);
		}
	return p->dev ? sync_slot(p, b, true) : 0;
}

int agent_pool_check(struct agent_pool *p, uint32_t b, uint64_t h)
{
	uint64_t pcb = nkv_layout_chunk_bytes(&p->layout);
	int rc = p->dev ? sync_slot(p, b, false) : 0;
	if (rc)
		return rc;
	for (uint32_t layer = 0; layer < p->layout.model.layers; layer++)
		for (uint32_t kv = 0; kv < nkv_layout_tensors(&p->layout); kv++) {
			pattern_chunk(p->scratch, pcb * p->ppb, h, layer, kv);
			for (uint32_t j = 0; j < p->ppb; j++)
				if (memcmp(p->scratch + (uint64_t)j * pcb, p->mem + page_off(p, b, j, layer, kv), pcb))
					return 0;
		}
	return 1;
}
