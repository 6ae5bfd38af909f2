/* Prometheus text exposition writer (contract in prom.h). */
#include "prom.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int nkv_prom_hist_init(struct nkv_prom_hist *h, const double *le, int nb)
{
	memset(h, 0, sizeof(*h));
	if (nb < 1 || nb > NKV_PROM_MAX_BUCKETS)
		return -EINVAL;
	for (int i = 0; i < nb; i++)
		if (!isfinite(le[i]) || (i && le[i] <= le[i - 1]))
			return -EINVAL;
	h->le = le;
	h->nb = nb;
	return 0;
}

void nkv_prom_hist_observe(struct nkv_prom_hist *h, double v)
{
	if (isnan(v) || !h->le)
		return;
	int i = 0;
	while (i < h->nb && v > h->le[i])
		i++;
	h->n[i]++;
	h->count++;
	h->sum += v;
}

static void put_escaped(FILE *f, const char *s, int quotes)
{
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\\\", f);
		else if (*s == '\n')
			fputs("\\n", f);
		else if (quotes && *s == '"')
			fputs("\\\"", f);
		else
			fputc(*s, f);
	}
}

void nkv_prom_family(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s ", name);
	put_escaped(f, help, 0);
	fprintf(f, "\n# TYPE %s %s\n", name, type);
}

char *nkv_prom_escape(char *dst, size_t n, const char *src)
{
	size_t k = 0;
	if (!n)
		return dst;
	for (; *src; src++) {
		const char *rep = *src == '\\' ? "\\\\" : *src == '"' ? "\\\"" : *src == '\n' ? "\\n" : NULL;
		size_t len = rep ? 2 : 1;
		if (k + len > n - 1)
			break;
		if (rep)
			memcpy(dst + k, rep, 2);
		else
			dst[k] = *src;
		k += len;
	}
	dst[k] = 0;
	return dst;
}

void nkv_prom_double(FILE *f, double v)
{
	if (isnan(v)) {
		fputs("NaN", f);
		return;
	}
	if (isinf(v)) {
		fputs(v > 0 ? "+Inf" : "-Inf", f);
		return;
	}
	char buf[40];
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	fputs(buf, f);
}

static void put_name(FILE *f, const char *name, const char *labels)
{
	fputs(name, f);
	if (labels && labels[0])
		fprintf(f, "{%s}", labels);
}

void nkv_prom_sample(FILE *f, const char *name, const char *labels, double v)
{
	put_name(f, name, labels);
	fputc(' ', f);
	nkv_prom_double(f, v);
	fputc('\n', f);
}

void nkv_prom_sample_u64(FILE *f, const char *name, const char *labels, uint64_t v)
{
	put_name(f, name, labels);
	fprintf(f, " %llu\n", (unsigned long long)v);
}

void nkv_prom_hist_write(FILE *f, const char *name, const char *labels, const struct nkv_prom_hist *h)
{
	const char *sep = labels && labels[0] ? "," : "";
	uint64_t cum = 0;
	for (int i = 0; i <= h->nb; i++) {
		cum += h->n[i];
		fprintf(f, "%s_bucket{%s%sle=\"", name, labels ? labels : "", sep);
		if (i < h->nb)
			nkv_prom_double(f, h->le[i]);
		else
			fputs("+Inf", f);
		fprintf(f, "\"} %llu\n", (unsigned long long)cum);
	}
	fprintf(f, "%s_sum", name);
	if (labels && labels[0])
		fprintf(f, "{%s}", labels);
	fputc(' ', f);
	nkv_prom_double(f, h->sum);
	fprintf(f, "\n%s_count", name);
	if (labels && labels[0])
		fprintf(f, "{%s}", labels);
	fprintf(f, " %llu\n", (unsigned long long)h->count);
}
