/*
 * The one growable-array helper: readers that collect an unknown number of
 * entries (traces, converted traces) double their buffer through it, with
 * the overflow check done once.
 */
#include "nkv_util.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

int nkv_grow(void **p, size_t *cap, size_t need, size_t elem)
{
	size_t n = *cap ? *cap : 64;
	void *q;

	if (need <= *cap)
		return 0;
	while (n < need) {
		if (n > SIZE_MAX / 2)
			return nkv_err(ENOMEM, "out of memory for %zu entries", need);
		n *= 2;
	}
	if (n > SIZE_MAX / elem || !(q = realloc(*p, n * elem)))
		return nkv_err(ENOMEM, "out of memory for %zu entries", n);
	*p = q;
	*cap = n;
	return 0;
}
