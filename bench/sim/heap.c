/* Binary min-heap of simulator events, ordered by (time, insertion seq). */
#include <errno.h>
#include <stdlib.h>

#include "nkv_util.h"
#include "sim_internal.h"

static bool before(const struct sim_event *a, const struct sim_event *b)
{
	return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

int nkv__sim_heap_push(struct sim_heap *h, double t, uint32_t type, uint32_t who, uint64_t arg)
{
	size_t i;

	if (h->n == h->cap) {
		size_t c = h->cap ? h->cap * 2 : 1024;
		struct sim_event *ev = realloc(h->ev, c * sizeof(*ev));

		if (!ev)
			return nkv_err(ENOMEM, "sim: out of memory for %zu events", c);
		h->ev = ev;
		h->cap = c;
	}
	struct sim_event e = { .t = t, .seq = h->seq++, .type = type, .who = who, .arg = arg };
	for (i = h->n++; i > 0; ) {
		size_t p = (i - 1) / 2;

		if (!before(&e, &h->ev[p]))
			break;
		h->ev[i] = h->ev[p];
		i = p;
	}
	h->ev[i] = e;
	return 0;
}

bool nkv__sim_heap_pop(struct sim_heap *h, struct sim_event *out)
{
	if (!h->n)
		return false;
	*out = h->ev[0];
	struct sim_event last = h->ev[--h->n];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= h->n)
			break;
		if (c + 1 < h->n && before(&h->ev[c + 1], &h->ev[c]))
			c++;
		if (!before(&h->ev[c], &last))
			break;
		h->ev[i] = h->ev[c];
		i = c;
	}
	if (h->n)
		h->ev[i] = last;
	return true;
}

void nkv__sim_heap_free(struct sim_heap *h)
{
	free(h->ev);
	h->ev = NULL;
	h->n = h->cap = 0;
}
