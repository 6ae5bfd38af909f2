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

/* ---- tenant traffic (tenant.c): on/off sources loading tiers to a target
 * mean utilisation. util[tier] in [0, 1), 0 = none; host tier refused. */
struct sim_tenants;
struct nkv_sim_tenant_on;
struct nkv_topo;
struct nkv_flownet;
int nkv__sim_tenants_create(const struct nkv_topo *t, bool ecmp, const double util[4], double on_s, uint64_t seed,
			    struct sim_tenants **out);
/* Scheduled sources: one per on period (a demo run's tenants, replayed). */
int nkv__sim_tenants_sched(const struct nkv_topo *t, const struct nkv_sim_tenant_on *on, size_t n,
			   struct sim_tenants **out);
/* When source i first changes state: its on time if scheduled, else now. */
double nkv__sim_tenant_first(const struct sim_tenants *ts, uint32_t i, double now);
uint32_t nkv__sim_tenants_count(const struct sim_tenants *ts);
/* Source i's next state change at time now (the first call picks its
 * stationary state): *flow is its flow id (-1 while off), *next the time
 * of its next change. */
int nkv__sim_tenant_toggle(struct sim_tenants *ts, uint32_t i, struct nkv_flownet *net, double now, int *flow,
			   double *next);
void nkv__sim_tenants_free(struct sim_tenants *ts);

#endif
