/*
 * The daemon's table of requests in flight: an intrusive hash by request id
 * that grows and shrinks with what is in flight, so memory and lookups
 * depend on the live requests, not on how many the scheduler has seen.
 *
 * It also hands out the ids. They are random (getrandom), because an id is
 * what a decode's data plane lets a prefill write under (a grant, see
 * transfer/netkv_transfer.h): one that counts from 0 after each start
 * could be guessed by any holder of the data-plane secret. The ids of the
 * last NKV__RQ_RETIRED retired requests are kept, so a late report for a
 * settled request is told from one for an id never issued, and no such id
 * is issued again while remembered.
 */
#ifndef NKV_RQTAB_H
#define NKV_RQTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NKV__RQ_RETIRED 4096

struct nkv__rqnode {
	uint64_t id;
	struct nkv__rqnode *hnext;
};

struct nkv__rqtab {
	struct nkv__rqnode **b; /* buckets, a power of two (or NULL while empty) */
	size_t nb, n;
	uint64_t retired[NKV__RQ_RETIRED]; /* ring of the last retired ids */
	size_t nretired;                   /* retired ever; the ring holds the last ones */
};

/* A fresh id: 63 random bits, not 0, not in flight, not recently retired.
 * 0, or a negative errno (getrandom failed) with the detail in nkv_last_error(). */
int nkv__rqtab_new_id(const struct nkv__rqtab *t, uint64_t *id);
/* Was id one of the last NKV__RQ_RETIRED requests deleted? */
bool nkv__rqtab_was_retired(const struct nkv__rqtab *t, uint64_t id);

/* 0, or -ENOMEM (the node is then not in the table). */
int nkv__rqtab_add(struct nkv__rqtab *t, struct nkv__rqnode *node);
struct nkv__rqnode *nkv__rqtab_find(const struct nkv__rqtab *t, uint64_t id);
void nkv__rqtab_del(struct nkv__rqtab *t, struct nkv__rqnode *node); /* and remembers its id as retired */
void nkv__rqtab_free(struct nkv__rqtab *t); /* the buckets; the nodes are the caller's */

#endif
