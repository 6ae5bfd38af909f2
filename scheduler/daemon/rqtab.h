/*
 * The daemon's table of requests in flight: an intrusive hash by request id
 * (ids only grow, so a finished request's id is never reused) that grows
 * and shrinks with what is in flight, so memory and lookups depend on the
 * live requests, not on how many the scheduler has seen.
 */
#ifndef NKV_RQTAB_H
#define NKV_RQTAB_H

#include <stddef.h>
#include <stdint.h>

struct nkv__rqnode {
	uint64_t id;
	struct nkv__rqnode *hnext;
};

struct nkv__rqtab {
	struct nkv__rqnode **b; /* buckets, a power of two (or NULL while empty) */
	size_t nb, n;
};

/* 0, or -ENOMEM (the node is then not in the table). */
int nkv__rqtab_add(struct nkv__rqtab *t, struct nkv__rqnode *node);
struct nkv__rqnode *nkv__rqtab_find(const struct nkv__rqtab *t, uint64_t id);
void nkv__rqtab_del(struct nkv__rqtab *t, struct nkv__rqnode *node);
void nkv__rqtab_free(struct nkv__rqtab *t); /* the buckets; the nodes are the caller's */

#endif
