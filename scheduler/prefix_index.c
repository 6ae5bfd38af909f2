/*
 * Prefix-block index: hash id -> slots holding that block.
 *
 * Open addressing with linear probing (xxhash of the id), backward-shift
 * deletion when a block's last holder goes, so the table stays as small as
 * what is held. Each entry keeps its holders in a small array.
 *
 * Matching walks the request's blocks in order and keeps, per slot, how
 * many leading blocks it has matched (depth[s] == i means s holds blocks
 * 0..i-1). Block i only advances slots whose depth is i, and the walk stops
 * at the first block no slot advances on. Cost: the request's blocks up to
 * that point plus the holders listed for them, plus clearing depth[]: with
 * chained hashes the holders of block i are (nearly) the holders of block
 * i-1, so that is O(blocks + matches + slots).
 */
#include "netkv_sched.h"

#include "nkv_util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#define XXH_INLINE_ALL /* the hash runs per block on the decision path: inline it */
#include <xxhash.h>

/* Up to INL holders live in the cell itself (one cache line holds two
 * cells), more on the heap. */
#define INL 4

struct entry {
	uint64_t key;
	uint32_t n, cap;   /* cap == 0: empty cell; cap == INL: inline */
	union {
		uint32_t inl[INL];
		uint32_t *heap;
	} u;
};

static inline uint32_t *slots_of(struct entry *e)
{
	return e->cap > INL ? e->u.heap : e->u.inl;
}

static inline const uint32_t *cslots_of(const struct entry *e)
{
	return e->cap > INL ? e->u.heap : e->u.inl;
}

static void free_entry(struct entry *e)
{
	if (e->cap > INL)
		free(e->u.heap);
}

struct nkv_prefix_index {
	uint32_t nslots;
	size_t mask, used;
	struct entry *tab;
};

/*
 * Cells are allocated zeroed; a table of 2 MiB or more on 2 MiB-aligned
 * memory marked for transparent huge pages. The decision walk reads one
 * cell per block at a random place in the table (8 MiB per index with
 * 100k blocks): with 4 KiB pages nearly every read also missed the TLB.
 */
#define HUGE_PAGE ((size_t)2 << 20)

static struct entry *cells_alloc(size_t n)
{
	size_t bytes = n * sizeof(struct entry);
	void *m;

	if (bytes < HUGE_PAGE)
		return calloc(n, sizeof(struct entry));
	bytes = (bytes + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
	if (posix_memalign(&m, HUGE_PAGE, bytes))
		return NULL;
	(void)madvise(m, bytes, MADV_HUGEPAGE); /* a hint: without it, plain pages */
	memset(m, 0, bytes);
	return m;
}

static inline uint64_t hash_key(uint64_t key)
{
	return XXH3_64bits(&key, sizeof(key));
}

static inline size_t home(const struct nkv_prefix_index *x, uint64_t key)
{
	return (size_t)hash_key(key) & x->mask;
}

int nkv_prefix_create(uint32_t nslots, struct nkv_prefix_index **out)
{
	struct nkv_prefix_index *x;

	if (nslots == 0)
		return nkv_err(EINVAL, "prefix index: needs at least one slot");
	x = calloc(1, sizeof(*x));
	if (!x)
		return nkv_err(ENOMEM, "prefix index: out of memory");
	x->nslots = nslots;
	x->mask = 1023;
	x->tab = cells_alloc(x->mask + 1);
	if (!x->tab) {
		free(x);
		return nkv_err(ENOMEM, "prefix index: out of memory");
	}
	*out = x;
	return 0;
}

void nkv_prefix_free(struct nkv_prefix_index *x)
{
	if (!x)
		return;
	for (size_t i = 0; i <= x->mask; i++)
		free_entry(&x->tab[i]);
	free(x->tab);
	free(x);
}

static struct entry *find_h(const struct nkv_prefix_index *x, uint64_t key, uint64_t h)
{
	for (size_t i = (size_t)h & x->mask;; i = (i + 1) & x->mask) {
		struct entry *e = &x->tab[i];

		if (!e->cap)
			return NULL;
		if (e->key == key)
			return e;
	}
}

static struct entry *find(const struct nkv_prefix_index *x, uint64_t key)
{
	return find_h(x, key, hash_key(key));
}

static int rehash(struct nkv_prefix_index *x)
{
	size_t nmask = x->mask * 2 + 1;
	struct entry *nt = cells_alloc(nmask + 1), *old = x->tab;
	size_t omask = x->mask;

	if (!nt)
		return nkv_err(ENOMEM, "prefix index: out of memory growing to %zu cells", nmask + 1);
	x->tab = nt;
	x->mask = nmask;
	for (size_t i = 0; i <= omask; i++) {
		size_t j;

		if (!old[i].cap)
			continue;
		for (j = home(x, old[i].key); nt[j].cap; j = (j + 1) & nmask)
			;
		nt[j] = old[i];
	}
	free(old);
	return 0;
}

static int add_one(struct nkv_prefix_index *x, uint32_t slot, uint64_t key)
{
	struct entry *e;
	uint32_t *sl;
	size_t i;

	e = find(x, key);
	if (!e) {
		if ((x->used + 1) * 2 > x->mask + 1) {
			int ret = rehash(x);

			if (ret)
				return ret;
		}
		for (i = home(x, key); x->tab[i].cap; i = (i + 1) & x->mask)
			;
		e = &x->tab[i];
		e->key = key;
		e->n = 0;
		e->cap = INL;
		x->used++;
	}
	sl = slots_of(e);
	for (uint32_t k = 0; k < e->n; k++)
		if (sl[k] == slot)
			return 0;
	if (e->n == e->cap) {
		uint32_t *ns;

		if (e->cap == INL) {
			ns = malloc(2 * INL * sizeof(uint32_t));
			if (ns)
				memcpy(ns, e->u.inl, sizeof(e->u.inl));
		} else {
			ns = realloc(e->u.heap, (size_t)e->cap * 2 * sizeof(uint32_t));
		}
		if (!ns)
			return nkv_err(ENOMEM, "prefix index: out of memory");
		e->u.heap = ns;
		e->cap *= 2;
		sl = ns;
	}
	sl[e->n++] = slot;
	return 0;
}

/* Remove cell i and shift the following cluster back (no tombstones). */
static void delete_cell(struct nkv_prefix_index *x, size_t i)
{
	size_t j = i;

	free_entry(&x->tab[i]);
	memset(&x->tab[i], 0, sizeof(x->tab[i]));
	x->used--;
	for (;;) {
		size_t h;

		j = (j + 1) & x->mask;
		if (!x->tab[j].cap)
			return;
		h = home(x, x->tab[j].key);
		/* Move j back to i if its home is not in (i, j] cyclically. */
		if ((j > i && (h <= i || h > j)) || (j < i && (h <= i && h > j))) {
			x->tab[i] = x->tab[j];
			memset(&x->tab[j], 0, sizeof(x->tab[j]));
			i = j;
		}
	}
}

static void remove_one(struct nkv_prefix_index *x, uint32_t slot, uint64_t key)
{
	struct entry *e = find(x, key);
	uint32_t *sl;

	if (!e)
		return;
	sl = slots_of(e);

	for (uint32_t k = 0; k < e->n; k++) {
		if (sl[k] == slot) {
			sl[k] = sl[--e->n];
			break;
		}
	}
	if (e->n == 0)
		delete_cell(x, (size_t)(e - x->tab));
}

int nkv_prefix_add(struct nkv_prefix_index *x, uint32_t slot, const uint64_t *ids, uint32_t n)
{
	if (slot >= x->nslots)
		return nkv_err(EINVAL, "prefix index: slot %u beyond %u slots", slot, x->nslots);
	for (uint32_t i = 0; i < n; i++) {
		int ret = add_one(x, slot, ids[i]);

		if (ret)
			return ret;
	}
	return 0;
}

int nkv_prefix_remove(struct nkv_prefix_index *x, uint32_t slot, const uint64_t *ids, uint32_t n)
{
	if (slot >= x->nslots)
		return nkv_err(EINVAL, "prefix index: slot %u beyond %u slots", slot, x->nslots);
	for (uint32_t i = 0; i < n; i++)
		remove_one(x, slot, ids[i]);
	return 0;
}

void nkv_prefix_clear_slot(struct nkv_prefix_index *x, uint32_t slot)
{
	size_t i = 0;

	/* Deleting shifts later cells back into i: re-examine i after a delete. */
	while (i <= x->mask) {
		struct entry *e = &x->tab[i];
		bool deleted = false;

		if (e->cap) {
			uint32_t *sl = slots_of(e);

			for (uint32_t k = 0; k < e->n; k++) {
				if (sl[k] == slot) {
					sl[k] = sl[--e->n];
					break;
				}
			}
			if (e->n == 0) {
				delete_cell(x, i);
				deleted = true;
			}
		}
		if (!deleted)
			i++;
	}
}

uint32_t nkv_prefix_holders(const struct nkv_prefix_index *x, uint64_t key, const uint32_t **holders)
{
	const struct entry *e = find(x, key);

	*holders = e ? cslots_of(e) : NULL;
	return e ? e->n : 0;
}

/* Advance the slots at depth i that hold this block; how many advanced. */
static inline uint32_t advance(const struct entry *e, uint32_t i, uint32_t *depth)
{
	const uint32_t *sl = cslots_of(e);
	uint32_t advanced = 0;

	for (uint32_t k = 0; k < e->n; k++) {
		uint32_t m = depth[sl[k]] == i;

		depth[sl[k]] += m;
		advanced += m;
	}
	return advanced;
}

/*
 * One index's side of a walk. Long shared prefixes are the expensive case:
 * block after block is held by the same slots, and advancing each of them
 * per block costs O(holders) scattered writes. When every holder of a
 * block advanced (so the live set is exactly its holder list) and the next
 * block's holder list is the same array, the live set cannot change: count
 * the block in `extra` and write the depths once when the run ends. The
 * comparison is a memcmp of the two lists; lists in another order simply
 * take the per-slot path, so the result is exact either way.
 */
struct walk {
	const struct nkv_prefix_index *x;
	uint32_t *depth;
	const struct entry *run; /* its holders are all live, at depth run_depth + extra */
	uint32_t extra;
	uint32_t best;
	bool live;
};

/* Same holder list, in the same order (short lists compared inline: a call costs more). */
static inline bool same_slots(const struct entry *a, const struct entry *b)
{
	const uint32_t *x = cslots_of(a), *y = cslots_of(b);

	if (a == b)
		return true;
	if (a->n > 16)
		return !memcmp(x, y, (size_t)a->n * sizeof(uint32_t));
	for (uint32_t k = 0; k < a->n; k++)
		if (x[k] != y[k])
			return false;
	return true;
}

static inline __attribute__((always_inline)) void walk_flush(struct walk *w)
{
	if (w->run && w->extra) {
		const uint32_t *sl = cslots_of(w->run);

		for (uint32_t k = 0; k < w->run->n; k++)
			w->depth[sl[k]] += w->extra;
	}
	w->run = NULL;
	w->extra = 0;
}

static inline __attribute__((always_inline)) void walk_step(struct walk *w, uint64_t id, uint64_t h, uint32_t i)
{
	const struct entry *e = find_h(w->x, id, h);
	uint32_t adv;

	if (!e) {
		w->live = false;
		return;
	}
	if (w->run && e->n == w->run->n && same_slots(e, w->run)) {
		w->extra++;
		w->best = i + 1;
		return;
	}
	walk_flush(w);
	adv = advance(e, i, w->depth);
	if (!adv) {
		w->live = false;
		return;
	}
	w->best = i + 1;
	w->run = adv == e->n ? e : NULL;
}

#define AHEAD 8 /* blocks whose cells are prefetched ahead of the walk */

/* Walk n ids over one or two indexes (b may be NULL): each id hashed once,
 * the cells AHEAD blocks on prefetched, stopping when no slot of either
 * index can still advance. */
static inline __attribute__((always_inline)) void walk_ids(struct walk *wa, struct walk *wb, const uint64_t *ids, uint32_t n)
{
	uint64_t hs[2 * AHEAD];

	for (uint32_t i = 0; i < n && i < AHEAD; i++)
		hs[i] = hash_key(ids[i]);
	for (uint32_t i = 0; i < n && (wa->live || (wb && wb->live)); i++) {
		uint64_t h = hs[i % (2 * AHEAD)];

		if (i + AHEAD < n) {
			uint64_t ha = hash_key(ids[i + AHEAD]);

			hs[(i + AHEAD) % (2 * AHEAD)] = ha;
			if (wa->live)
				__builtin_prefetch(&wa->x->tab[ha & wa->x->mask]);
			if (wb && wb->live)
				__builtin_prefetch(&wb->x->tab[ha & wb->x->mask]);
		}
		if (wa->live)
			walk_step(wa, ids[i], h, i);
		if (wb && wb->live)
			walk_step(wb, ids[i], h, i);
	}
	walk_flush(wa);
	if (wb)
		walk_flush(wb);
}

static void walk_init(struct walk *w, const struct nkv_prefix_index *x, uint32_t *depth)
{
	*w = (struct walk){ .x = x, .depth = depth, .live = true };
	memset(depth, 0, (size_t)x->nslots * sizeof(*depth));
}

uint32_t nkv_prefix_match(const struct nkv_prefix_index *x, const uint64_t *ids, uint32_t n, uint32_t *depth)
{
	struct walk w;

	walk_init(&w, x, depth);
	walk_ids(&w, NULL, ids, n);
	return w.best;
}

/* Both indexes in one walk (the scheduler's prefill and decode sides). */
void nkv__prefix_match_pair(const struct nkv_prefix_index *a, uint32_t *da, const struct nkv_prefix_index *b,
		       uint32_t *db, const uint64_t *ids, uint32_t n)
{
	struct walk wa, wb;

	walk_init(&wa, a, da);
	walk_init(&wb, b, db);
	walk_ids(&wa, &wb, ids, n);
}

size_t nkv_prefix_blocks(const struct nkv_prefix_index *x)
{
	return x->used;
}
