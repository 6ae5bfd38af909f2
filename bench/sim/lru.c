/*
 * Fixed-capacity LRU set of 64-bit block ids: a doubly linked recency list
 * over slot arrays and a linear-probing table (backward-shift deletion, no
 * tombstones) from id to slot. O(1) per operation.
 */
#include <errno.h>
#include <stdlib.h>

#include "nkv_util.h"
#include "sim_internal.h"

#define NIL UINT32_MAX

struct sim_lru {
	uint32_t cap, n;
	uint64_t *key;
	uint32_t *prev, *next;
	uint32_t head, tail;    /* head = most recent */
	uint32_t *tab;          /* slot index or NIL */
	uint32_t mask;
};

static uint32_t hash(uint64_t k, uint32_t mask)
{
	k ^= k >> 33;
	k *= 0xff51afd7ed558ccdULL;
	k ^= k >> 33;
	return (uint32_t)k & mask;
}

int nkv__sim_lru_create(uint32_t capacity, struct sim_lru **out)
{
	struct sim_lru *c = calloc(1, sizeof(*c));
	uint32_t sz = 16;

	if (!capacity)
		capacity = 1;
	if (capacity > SIM_LRU_MAX_BLOCKS) { /* capacity * 2 would wrap and the loop below spin */
		free(c);
		return nkv_err(EINVAL, "lru: %u blocks, at most %u", capacity, SIM_LRU_MAX_BLOCKS);
	}
	while (sz < capacity * 2u)
		sz *= 2;
	if (!c)
		return nkv_err(ENOMEM, "lru: out of memory");
	c->cap = capacity;
	c->key = malloc(capacity * sizeof(*c->key));
	c->prev = malloc(capacity * sizeof(uint32_t));
	c->next = malloc(capacity * sizeof(uint32_t));
	c->tab = malloc(sz * sizeof(uint32_t));
	if (!c->key || !c->prev || !c->next || !c->tab) {
		nkv__sim_lru_free(c);
		return nkv_err(ENOMEM, "lru: out of memory for %u blocks", capacity);
	}
	for (uint32_t i = 0; i < sz; i++)
		c->tab[i] = NIL;
	c->mask = sz - 1;
	c->head = c->tail = NIL;
	*out = c;
	return 0;
}

void nkv__sim_lru_free(struct sim_lru *c)
{
	if (!c)
		return;
	free(c->key);
	free(c->prev);
	free(c->next);
	free(c->tab);
	free(c);
}

static uint32_t find_pos(const struct sim_lru *c, uint64_t key)
{
	for (uint32_t i = hash(key, c->mask);; i = (i + 1) & c->mask) {
		if (c->tab[i] == NIL || c->key[c->tab[i]] == key)
			return i;
	}
}

bool nkv__sim_lru_has(const struct sim_lru *c, uint64_t key)
{
	return c->tab[find_pos(c, key)] != NIL;
}

uint32_t nkv__sim_lru_size(const struct sim_lru *c)
{
	return c->n;
}

static void unlink_slot(struct sim_lru *c, uint32_t s)
{
	if (c->prev[s] != NIL)
		c->next[c->prev[s]] = c->next[s];
	else
		c->head = c->next[s];
	if (c->next[s] != NIL)
		c->prev[c->next[s]] = c->prev[s];
	else
		c->tail = c->prev[s];
}

static void push_front(struct sim_lru *c, uint32_t s)
{
	c->prev[s] = NIL;
	c->next[s] = c->head;
	if (c->head != NIL)
		c->prev[c->head] = s;
	c->head = s;
	if (c->tail == NIL)
		c->tail = s;
}

/* Remove table entry at position i, shifting later entries of the probe run back. */
static void tab_delete(struct sim_lru *c, uint32_t i)
{
	uint32_t j = i;

	for (;;) {
		j = (j + 1) & c->mask;
		if (c->tab[j] == NIL)
			break;
		uint32_t h = hash(c->key[c->tab[j]], c->mask);
		/* can the entry at j move to i? only if h is not cyclically in (i, j] */
		if ((j > i && (h <= i || h > j)) || (j < i && (h <= i && h > j))) {
			c->tab[i] = c->tab[j];
			i = j;
		}
	}
	c->tab[i] = NIL;
}

void nkv__sim_lru_touch(struct sim_lru *c, uint64_t key, void (*evict)(void *ctx, uint64_t key), void *ctx)
{
	uint32_t pos = find_pos(c, key), s;

	if (c->tab[pos] != NIL) {
		s = c->tab[pos];
		unlink_slot(c, s);
		push_front(c, s);
		return;
	}
	if (c->n < c->cap) {
		s = c->n++;
	} else {
		s = c->tail;
		uint64_t old = c->key[s];
		unlink_slot(c, s);
		tab_delete(c, find_pos(c, old));
		if (evict)
			evict(ctx, old);
		pos = find_pos(c, key); /* the table moved */
	}
	c->key[s] = key;
	c->tab[pos] = s;
	push_front(c, s);
}
