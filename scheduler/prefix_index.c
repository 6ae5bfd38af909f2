/*
 * Prefix-block index: hash id -> slots holding that block.
 *
 * Each indexed block is a record (its id, its holders, a successor hint)
 * in an array that only grows: a block keeps its record until its last
 * holder goes, and a freed record is reused. A hash table (open
 * addressing, linear probing on the xxhash of the id, backward-shift
 * deletion, so it stays as small as what is held) maps an id to its
 * record. Each record keeps its holders in a small array.
 *
 * Matching walks the request's blocks in order and keeps, per slot, how
 * many leading blocks it has matched (depth[s] == i means s holds blocks
 * 0..i-1). Block i only advances slots whose depth is i, and the walk stops
 * at the first block no slot advances on. Cost: the request's blocks up to
 * that point plus the holders listed for them, plus clearing depth[]: with
 * chained hashes the holders of block i are (nearly) the holders of block
 * i-1, so that is O(blocks + matches + slots).
 *
 * Why records and hints: the walk is on every decision, and a long prompt
 * is a long chain of blocks. Looking each block up in the hash table reads
 * a cell at a random place per block (two with the scheduler's two
 * indexes): that was most of a long request's decision time. Adding a
 * chain gives its blocks consecutive records, and each record remembers
 * the record added right after it (`next`), so the walk goes from block i
 * to block i+1 by the hint, usually to the neighbouring record, and hashes
 * only where the hint names another block (a conversation that branched,
 * a freed record). A hint is checked against the id, so a stale one costs
 * a lookup, never a wrong answer.
 */
#include "netkv_sched.h"

#include "nkv_util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#define XXH_INLINE_ALL /* the hash runs per block on the decision path: inline it */
#include <xxhash.h>

/* Up to INL holders live in the record itself (32 bytes: two per cache
 * line), more on the heap (the pointer then sits in inl[0..1]). */
#define INL 3
#define NO_REC UINT32_MAX

struct rec {
	uint64_t key;
	uint32_t n, cap;   /* cap == 0: a free record; cap == INL: inline */
	uint32_t next;     /* hint: the record added right after this one; or, free, the next free one */
	uint32_t inl[INL];
};

struct cell {          /* hash table: id -> record */
	uint64_t key;
	uint32_t rec;      /* record + 1; 0 = empty cell */
};

_Static_assert(sizeof(((struct rec *)0)->inl) >= sizeof(uint32_t *), "a heap pointer fits in inl");

struct nkv_prefix_index {
	uint32_t nslots;
	size_t mask, used;   /* cells - 1; ids indexed */
	struct cell *tab;
	struct rec *recs;
	uint32_t nrec, caprec, free_rec; /* records handed out, allocated; free list head */
};

static inline uint32_t *heap_of(const struct rec *e)
{
	uint32_t *p;

	memcpy(&p, e->inl, sizeof(p));
	return p;
}

static inline void set_heap(struct rec *e, uint32_t *p)
{
	memcpy(e->inl, &p, sizeof(p));
}

static inline uint32_t *slots_of(struct rec *e)
{
	return e->cap > INL ? heap_of(e) : e->inl;
}

static inline const uint32_t *cslots_of(const struct rec *e)
{
	return e->cap > INL ? heap_of(e) : e->inl;
}

/*
 * Zeroed memory; a block of 2 MiB or more on 2 MiB-aligned memory marked
 * for transparent huge pages: the hash table is read at a random place
 * per lookup (with 4 KiB pages nearly every read also missed the TLB).
 */
#define HUGE_PAGE ((size_t)2 << 20)

static void *zalloc(size_t n, size_t size)
{
	size_t bytes = n * size;
	void *m;

	if (bytes < HUGE_PAGE)
		return calloc(n, size);
	bytes = (bytes + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
	if (posix_memalign(&m, HUGE_PAGE, bytes))
		return NULL;
#ifdef MADV_HUGEPAGE
	(void)madvise(m, bytes, MADV_HUGEPAGE); /* a hint: without it, plain pages */
#endif
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
	x->free_rec = NO_REC;
	x->tab = zalloc(x->mask + 1, sizeof(*x->tab));
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
	for (uint32_t i = 0; i < x->nrec; i++)
		if (x->recs[i].cap > INL)
			free(heap_of(&x->recs[i]));
	free(x->recs);
	free(x->tab);
	free(x);
}

/* The cell of key, or the empty cell ending its probe sequence. */
static inline size_t probe(const struct nkv_prefix_index *x, uint64_t key, uint64_t h)
{
	size_t i = (size_t)h & x->mask;

	while (x->tab[i].rec && x->tab[i].key != key)
		i = (i + 1) & x->mask;
	return i;
}

static inline uint32_t find_h(const struct nkv_prefix_index *x, uint64_t key, uint64_t h)
{
	return x->tab[probe(x, key, h)].rec - 1; /* empty: NO_REC */
}

static uint32_t find(const struct nkv_prefix_index *x, uint64_t key)
{
	return find_h(x, key, hash_key(key));
}

static int rehash(struct nkv_prefix_index *x)
{
	size_t nmask = x->mask * 2 + 1, omask = x->mask;
	struct cell *nt = zalloc(nmask + 1, sizeof(*nt)), *old = x->tab;

	if (!nt)
		return nkv_err(ENOMEM, "prefix index: out of memory growing to %zu cells", nmask + 1);
	x->tab = nt;
	x->mask = nmask;
	for (size_t i = 0; i <= omask; i++)
		if (old[i].rec)
			nt[probe(x, old[i].key, hash_key(old[i].key))] = old[i];
	free(old);
	return 0;
}

/* A record for a new key (from the free list, else the end). */
static int new_rec(struct nkv_prefix_index *x, uint64_t key, uint32_t *out)
{
	uint32_t r = x->free_rec;

	if (r != NO_REC) {
		x->free_rec = x->recs[r].next;
	} else {
		if (x->nrec == x->caprec) {
			uint32_t ncap = x->caprec ? x->caprec * 2 : 1024;
			struct rec *nr;

			if (x->caprec >= NO_REC / 2)
				return nkv_err(ENOSPC, "prefix index: more than %u blocks", NO_REC / 2);
			nr = zalloc(ncap, sizeof(*nr));
			if (!nr)
				return nkv_err(ENOMEM, "prefix index: out of memory growing to %u blocks", ncap);
			if (x->nrec)
				memcpy(nr, x->recs, (size_t)x->nrec * sizeof(*nr));
			free(x->recs);
			x->recs = nr;
			x->caprec = ncap;
		}
		r = x->nrec++;
	}
	x->recs[r] = (struct rec){ .key = key, .cap = INL, .next = NO_REC };
	*out = r;
	return 0;
}

/* The record of key, made if absent. */
static int get_rec(struct nkv_prefix_index *x, uint64_t key, uint32_t *out)
{
	uint64_t h = hash_key(key);
	size_t i = probe(x, key, h);
	int ret;

	if (x->tab[i].rec) {
		*out = x->tab[i].rec - 1;
		return 0;
	}
	if ((x->used + 1) * 2 > x->mask + 1) {
		if ((ret = rehash(x)))
			return ret;
		i = probe(x, key, h);
	}
	if ((ret = new_rec(x, key, out)))
		return ret;
	x->tab[i] = (struct cell){ .key = key, .rec = *out + 1 };
	x->used++;
	return 0;
}

static int add_slot(struct rec *e, uint32_t slot)
{
	uint32_t *sl = slots_of(e);

	for (uint32_t k = 0; k < e->n; k++)
		if (sl[k] == slot)
			return 0;
	if (e->n == e->cap) {
		uint32_t ncap = e->cap == INL ? 2 * (INL + 1) : e->cap * 2;
		uint32_t *ns = e->cap == INL ? malloc(ncap * sizeof(uint32_t)) :
					       realloc(sl, (size_t)ncap * sizeof(uint32_t));

		if (!ns)
			return nkv_err(ENOMEM, "prefix index: out of memory");
		if (e->cap == INL)
			memcpy(ns, e->inl, sizeof(e->inl));
		set_heap(e, ns);
		e->cap = ncap;
		sl = ns;
	}
	sl[e->n++] = slot;
	return 0;
}

/* Remove cell i and shift the following cluster back (no tombstones). */
static void delete_cell(struct nkv_prefix_index *x, size_t i)
{
	size_t j = i;

	memset(&x->tab[i], 0, sizeof(x->tab[i]));
	x->used--;
	for (;;) {
		size_t h;

		j = (j + 1) & x->mask;
		if (!x->tab[j].rec)
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

/* Drop slot from record r; the record and its cell go with the last holder. */
static void drop_slot(struct nkv_prefix_index *x, uint32_t r, uint32_t slot)
{
	struct rec *e = &x->recs[r];
	uint32_t *sl = slots_of(e);

	for (uint32_t k = 0; k < e->n; k++) {
		if (sl[k] == slot) {
			sl[k] = sl[--e->n];
			break;
		}
	}
	if (e->n)
		return;
	delete_cell(x, probe(x, e->key, hash_key(e->key)));
	if (e->cap > INL)
		free(sl);
	*e = (struct rec){ .next = x->free_rec }; /* cap 0: a hint naming it fails its check */
	x->free_rec = r;
}

int nkv_prefix_add(struct nkv_prefix_index *x, uint32_t slot, const uint64_t *ids, uint32_t n)
{
	uint32_t prev = NO_REC;

	if (slot >= x->nslots)
		return nkv_err(EINVAL, "prefix index: slot %u beyond %u slots", slot, x->nslots);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t r = NO_REC;
		int ret;

		if ((ret = get_rec(x, ids[i], &r)) || (ret = add_slot(&x->recs[r], slot)))
			return ret;
		if (prev != NO_REC)
			x->recs[prev].next = r;
		prev = r;
	}
	return 0;
}

int nkv_prefix_remove(struct nkv_prefix_index *x, uint32_t slot, const uint64_t *ids, uint32_t n)
{
	if (slot >= x->nslots)
		return nkv_err(EINVAL, "prefix index: slot %u beyond %u slots", slot, x->nslots);
	for (uint32_t i = 0; i < n; i++) {
		uint32_t r = find(x, ids[i]);

		if (r != NO_REC)
			drop_slot(x, r, slot);
	}
	return 0;
}

void nkv_prefix_clear_slot(struct nkv_prefix_index *x, uint32_t slot)
{
	for (uint32_t r = 0; r < x->nrec; r++)
		if (x->recs[r].cap)
			drop_slot(x, r, slot);
}

uint32_t nkv_prefix_holders(const struct nkv_prefix_index *x, uint64_t key, const uint32_t **holders)
{
	uint32_t r = find(x, key);

	*holders = r != NO_REC ? cslots_of(&x->recs[r]) : NULL;
	return r != NO_REC ? x->recs[r].n : 0;
}

/* Advance the slots at depth i that hold this block; how many advanced. */
static inline uint32_t advance(const struct rec *e, uint32_t i, uint32_t *depth)
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
	const struct rec *run; /* its holders are all live, at depth run_depth + extra */
	uint32_t prev;         /* the record of the block before, NO_REC: none */
	uint32_t extra;
	uint32_t best;
	bool live;
};

/* Same holder list, in the same order (short lists compared inline: a call costs more). */
static inline bool same_slots(const struct rec *a, const struct rec *b)
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

/* The record of block id: by the previous record's hint when it names
 * this id (checked: a freed record has cap 0), else by the hash table. */
static inline __attribute__((always_inline)) uint32_t walk_find(const struct walk *w, uint64_t id)
{
	const struct rec *recs = w->x->recs;

	if (w->prev != NO_REC) {
		uint32_t c = recs[w->prev].next;

		if (c != NO_REC && recs[c].key == id && recs[c].cap)
			return c;
	}
	return find(w->x, id);
}

static inline __attribute__((always_inline)) void walk_step(struct walk *w, uint64_t id, uint32_t i)
{
	uint32_t r = walk_find(w, id), adv;
	const struct rec *e;

	if (r == NO_REC) {
		w->live = false;
		return;
	}
	w->prev = r;
	e = &w->x->recs[r];
	if (e->next != NO_REC) /* the next block's likely record: usually the neighbour, not always */
		__builtin_prefetch(&w->x->recs[e->next]);
	if (i == 0 && e->n) { /* every depth is 0: all holders advance, as a run */
		w->run = e;
		w->extra = 1;
		w->best = 1;
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

/* Walk n ids over one or two indexes (b may be NULL), stopping when no
 * slot of either index can still advance. */
static inline __attribute__((always_inline)) void walk_ids(struct walk *wa, struct walk *wb, const uint64_t *ids,
							   uint32_t n)
{
	for (uint32_t i = 0; i < n && (wa->live || (wb && wb->live)); i++) {
		if (wa->live)
			walk_step(wa, ids[i], i);
		if (wb && wb->live)
			walk_step(wb, ids[i], i);
	}
	walk_flush(wa);
	if (wb)
		walk_flush(wb);
}

static void walk_init(struct walk *w, const struct nkv_prefix_index *x, uint32_t *depth)
{
	*w = (struct walk){ .x = x, .depth = depth, .prev = NO_REC, .live = true };
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
