/* Internals of the simulator: the event heap and the LRU block cache. */
#ifndef NKV_SIM_INTERNAL_H
#define NKV_SIM_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- event heap: binary min-heap on (time, seq) so equal times pop in
 * insertion order, which keeps runs deterministic. */
struct sim_event {
	double t;
	uint64_t seq;
	uint32_t type;
	uint32_t who;   /* instance or request index */
	uint64_t arg;
};
struct sim_heap {
	struct sim_event *ev;
	size_t n, cap;
	uint64_t seq;
};
int nkv__sim_heap_push(struct sim_heap *h, double t, uint32_t type, uint32_t who, uint64_t arg);
bool nkv__sim_heap_pop(struct sim_heap *h, struct sim_event *out);
static inline double sim_heap_top(const struct sim_heap *h) { return h->n ? h->ev[0].t : __builtin_inf(); }
void nkv__sim_heap_free(struct sim_heap *h);

/* ---- LRU set of prefix block ids with a fixed capacity. Insert/touch
 * returns the evicted ids through a callback. */
struct sim_lru;
/* ~24 bytes a block: 2^24 blocks (8G tokens at 512) is 400 MB per cache. */
#define SIM_LRU_MAX_BLOCKS (1u << 24)
int nkv__sim_lru_create(uint32_t capacity, struct sim_lru **out);
void nkv__sim_lru_free(struct sim_lru *c);
bool nkv__sim_lru_has(const struct sim_lru *c, uint64_t key);
/* Insert or refresh key; when full, evicts the least recently used and
 * reports it via evict(ctx, key). */
void nkv__sim_lru_touch(struct sim_lru *c, uint64_t key, void (*evict)(void *ctx, uint64_t key), void *ctx);
uint32_t nkv__sim_lru_size(const struct sim_lru *c);

/* ---- headroom (headroom.c): KV transfer bytes per link per window, for
 * the summary's peak per-tier link utilisation. */
#define NKV__HEADROOM_WINDOW_S 1.0
#define NKV__HEADROOM_MAX_CELLS (1u << 24) /* link windows kept, at most */
struct nkv_topo;
struct sim_headroom {
	const struct nkv_topo *topo;
	uint32_t nlinks;
	double *cap;      /* [nlinks] B/s */
	uint8_t *tier;    /* [nlinks] */
	double **win;     /* [nlinks][capwin] bytes per window */
	size_t nwin, capwin;
	bool off;         /* the run outgrew NKV__HEADROOM_MAX_CELLS: peaks read -1 */
};
int nkv__sim_headroom_init(struct sim_headroom *h, const struct nkv_topo *t);
void nkv__sim_headroom_free(struct sim_headroom *h);
/* A finished flow a -> b (topology instances) of bytes over [start, end]. */
int nkv__sim_headroom_add(struct sim_headroom *h, uint32_t a, uint32_t b, uint64_t bytes, double start, double end);
void nkv__sim_headroom_peak(const struct sim_headroom *h, double peak[4]);

#endif
