/* The in-flight request table (rqtab.h): chained buckets, resized by powers
 * of two; random request ids and a ring of the recently retired ones. */
#include "rqtab.h"
#include "netkv_proto.h"
#include "nkv_util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static size_t slot(uint64_t id, size_t nb)
{
	id *= 0x9E3779B97F4A7C15ull;
	return (size_t)(id >> 32) & (nb - 1);
}

static int rehash(struct nkv__rqtab *t, size_t nb)
{
	struct nkv__rqnode **b = calloc(nb, sizeof(*b));
	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < t->nb; i++)
		for (struct nkv__rqnode *x = t->b[i], *nx; x; x = nx) {
			nx = x->hnext;
			size_t k = slot(x->id, nb);
			x->hnext = b[k];
			b[k] = x;
		}
	free(t->b);
	t->b = b;
	t->nb = nb;
	return 0;
}

int nkv__rqtab_add(struct nkv__rqtab *t, struct nkv__rqnode *node)
{
	if (t->n + 1 > t->nb && rehash(t, t->nb ? t->nb * 2 : 64))
		return -ENOMEM;
	size_t k = slot(node->id, t->nb);
	node->hnext = t->b[k];
	t->b[k] = node;
	t->n++;
	return 0;
}

struct nkv__rqnode *nkv__rqtab_find(const struct nkv__rqtab *t, uint64_t id)
{
	if (!t->nb)
		return NULL;
	for (struct nkv__rqnode *x = t->b[slot(id, t->nb)]; x; x = x->hnext)
		if (x->id == id)
			return x;
	return NULL;
}

bool nkv__rqtab_was_retired(const struct nkv__rqtab *t, uint64_t id)
{
	size_t n = t->nretired < NKV__RQ_RETIRED ? t->nretired : NKV__RQ_RETIRED;

	for (size_t i = 0; i < n; i++)
		if (t->retired[i] == id)
			return true;
	return false;
}

int nkv__rqtab_new_id(const struct nkv__rqtab *t, uint64_t *id)
{
	/* A collision needs ~2^31 ids in flight or remembered; the loop is for correctness. */
	for (;;) {
		ssize_t n = getrandom(id, sizeof(*id), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n != (ssize_t)sizeof(*id))
			return nkv_err(n < 0 ? errno : EIO, "getrandom for a request id: %s",
				       n < 0 ? strerror(errno) : "short read");
		*id &= ~NKV_PROTO_PROBE_BIT;
		if (*id && !nkv__rqtab_find(t, *id) && !nkv__rqtab_was_retired(t, *id))
			return 0;
	}
}

void nkv__rqtab_del(struct nkv__rqtab *t, struct nkv__rqnode *node)
{
	t->retired[t->nretired++ % NKV__RQ_RETIRED] = node->id;
	if (!t->nb)
		return;
	for (struct nkv__rqnode **pp = &t->b[slot(node->id, t->nb)]; *pp; pp = &(*pp)->hnext)
		if (*pp == node) {
			*pp = node->hnext;
			t->n--;
			break;
		}
	/* Shrink when a burst has drained (a failed shrink keeps the larger table). */
	if (t->nb > 64 && t->n < t->nb / 8)
		rehash(t, t->nb / 4);
}

void nkv__rqtab_free(struct nkv__rqtab *t)
{
	free(t->b);
	t->b = NULL;
	t->nb = t->n = 0;
}
