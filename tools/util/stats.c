#include "nkv_util.h"

#include <stdlib.h>

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

void nkv_sort_doubles(double *a, size_t n)
{
	if (n > 1)
		qsort(a, n, sizeof(*a), cmp_double);
}

double nkv_percentile(const double *sorted, size_t n, double p)
{
	if (!n)
		return 0;
	double r = p * (double)(n - 1);
	size_t i = (size_t)r;
	if (i + 1 >= n)
		return sorted[n - 1];
	return sorted[i] + (r - (double)i) * (sorted[i + 1] - sorted[i]);
}
