/*
 * Per-request record files: the one CSV format `netkv replay`, `netkv demo`
 * and `netkv sim run` write and `netkv sim validate` reads (netkv_sim.h).
 * A column table drives both the writer and the reader, so the two cannot
 * drift apart.
 */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "records.h"
#include "nkv_util.h"

enum col_type { C_U64, C_U32, C_I64, C_TIER, C_DBL, C_STATUS, C_SLO, C_NAME, C_TEXT };

struct col {
	const char *name;
	enum col_type type;
	size_t off;
	bool required;      /* the header must have it */
	bool need_ok;       /* and an ok row must fill it */
	uint32_t max;       /* integers: largest taken, 0 = what the type holds
			     * (token counts are a trace's, NKV_TRACE_MAX_TOKENS) */
};

#define F(x) offsetof(struct nkv_rec_row, x)
static const struct col cols[] = {
	{ "req", C_U64, F(req), true, true, 0 },
	{ "line", C_U64, F(line), true, false, 0 },
	{ "input", C_U32, F(input), true, true, NKV_TRACE_MAX_TOKENS },
	{ "output", C_U32, F(output), true, true, NKV_TRACE_MAX_TOKENS },
	{ "status", C_STATUS, F(status), true, true, 0 },
	{ "tier", C_TIER, F(tier), false, false, 0 },
	{ "bytes", C_U64, F(bytes), true, true, 0 },
	{ "queue_s", C_DBL, F(queue_s), false, false, 0 },
	{ "prefill_s", C_DBL, F(prefill_s), false, false, 0 },
	{ "transfer_s", C_DBL, F(transfer_s), true, true, 0 },
	{ "xfer_s", C_DBL, F(xfer_s), true, true, 0 },
	{ "decode_wait_s", C_DBL, F(decode_wait_s), false, false, 0 },
	{ "first_step_s", C_DBL, F(first_step_s), false, false, 0 },
	{ "ttft_s", C_DBL, F(ttft_s), true, true, 0 },
	{ "tbt_mean_s", C_DBL, F(tbt_mean_s), false, false, 0 },
	{ "tbt_p99_s", C_DBL, F(tbt_p99_s), false, false, 0 },
	{ "e2e_s", C_DBL, F(e2e_s), false, false, 0 },
	{ "tokens", C_U32, F(tokens), false, false, NKV_TRACE_MAX_TOKENS },
	{ "blocks_ok", C_I64, F(blocks_ok), false, false, 0 },
	{ "blocks_bad", C_I64, F(blocks_bad), false, false, 0 },
	{ "slo_met", C_SLO, F(slo_met), false, false, 0 },
	{ "arrival_s", C_DBL, F(arrival_s), true, true, 0 },
	{ "prefill", C_NAME, F(prefill), true, true, 0 },
	{ "decode", C_NAME, F(decode), true, true, 0 },
	{ "held_blocks", C_I64, F(held_blocks), false, false, 0 },
	{ "est_transfer_s", C_DBL, F(est_transfer_s), false, false, 0 },
	{ "tbt_max_s", C_DBL, F(tbt_max_s), false, false, 0 },
	{ "resubmits", C_I64, F(resubmits), false, false, 0 },
	{ "reason", C_TEXT, F(reason), false, false, 0 },
};
#undef F
#define NCOLS (sizeof(cols) / sizeof(cols[0]))

/* Read whole: a record is ~250 bytes, so this is millions of requests. */
#define MAX_REC_FILE ((size_t)4 << 30)

static const char *status_name[] = { "ok", "failed", "lost" };

void nkv_rec_row_init(struct nkv_rec_row *r)
{
	memset(r, 0, sizeof(*r));
	r->tier = -1;
	r->queue_s = r->prefill_s = r->transfer_s = r->xfer_s = r->decode_wait_s = r->first_step_s = NAN;
	r->ttft_s = r->tbt_mean_s = r->tbt_p99_s = r->e2e_s = r->arrival_s = NAN;
	r->est_transfer_s = r->tbt_max_s = NAN;
	r->blocks_ok = r->blocks_bad = r->held_blocks = r->resubmits = -1;
}

void nkv_rec_write_header(FILE *f)
{
	for (size_t c = 0; c < NCOLS; c++)
		fprintf(f, "%s%s", c ? "," : "", cols[c].name);
	fputc('\n', f);
}

void nkv_rec_write_row(FILE *f, const struct nkv_rec_row *r)
{
	for (size_t c = 0; c < NCOLS; c++) {
		const void *p = (const char *)r + cols[c].off;

		if (c)
			fputc(',', f);
		switch (cols[c].type) {
		case C_U64: fprintf(f, "%llu", (unsigned long long)*(const uint64_t *)p); break;
		case C_U32: fprintf(f, "%u", *(const uint32_t *)p); break;
		case C_I64:
			if (*(const int64_t *)p >= 0)
				fprintf(f, "%lld", (long long)*(const int64_t *)p);
			break;
		case C_TIER:
			if (*(const int *)p >= 0)
				fprintf(f, "%d", *(const int *)p);
			break;
		case C_DBL:
			if (isfinite(*(const double *)p))
				fprintf(f, "%.9f", *(const double *)p);
			break;
		case C_STATUS: {
			int st = *(const int *)p;
			fputs(st >= 0 && st <= NKV_REC_ST_LOST ? status_name[st] : "failed", f);
			break;
		}
		case C_SLO: fprintf(f, "%d", *(const int *)p ? 1 : 0); break;
		case C_NAME: fputs((const char *)p, f); break;
		case C_TEXT:
			/* Quoted; "" for a quote; control characters become spaces so one record is one line. */
			fputc('"', f);
			for (const char *s = p; *s; s++) {
				if (*s == '"')
					fputs("\"\"", f);
				else
					fputc((unsigned char)*s < 0x20 ? ' ' : *s, f);
			}
			fputc('"', f);
			break;
		}
	}
	fputc('\n', f);
}

/* ---- reading ---------------------------------------------------------------- */

/* Split one line in place into fields (quotes as the writer makes them).
 * Returns the count, or -1 for an unterminated quote. */
static int split(char *s, char **fld, int max)
{
	int n = 0;

	for (;;) {
		if (n == max)
			return max + 1;
		if (*s == '"') {
			char *w = ++s;
			fld[n++] = w;
			for (;;) {
				if (!*s)
					return -1;
				if (*s == '"' && s[1] == '"') {
					*w++ = '"';
					s += 2;
				} else if (*s == '"') {
					s++;
					break;
				} else {
					*w++ = *s++;
				}
			}
			*w = 0;
			if (*s && *s != ',')
				return -1;
		} else {
			fld[n++] = s;
			s += strcspn(s, ",");
		}
		if (!*s)
			return n;
		*s++ = 0;
	}
}

static bool name_ok(const char *s)
{
	if (!*s || strlen(s) >= sizeof(((struct nkv_rec_row *)0)->prefill))
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '.' ||
		      *s == '_' || *s == '-'))
			return false;
	return true;
}

/* One field into the row; 0 or an error naming the column. */
static int parse_field(const struct col *c, const char *v, struct nkv_rec_row *r, const struct nkv_topo *topo,
		       const char *path, uint64_t ln)
{
	void *p = (char *)r + c->off;
	uint64_t u;
	double d;

	if (!*v && c->type != C_TEXT && c->type != C_STATUS)
		return 0; /* unknown on this side; need_ok is checked once the status is known */
	switch (c->type) {
	case C_U64:
	case C_U32:
	case C_I64:
	case C_TIER:
		if (nkv_parse_u64(v, &u) || (c->type == C_U32 && u > UINT32_MAX) || (c->type == C_I64 && u > INT64_MAX) ||
		    (c->type == C_TIER && u >= NKV_TIERS))
			return nkv_err(EINVAL, "%s:%llu: column %s: '%.40s' is not %s", path, (unsigned long long)ln, c->name,
				       v, c->type == C_TIER ? "a tier 0..3" : "an integer >= 0");
		if (c->max && u > c->max)
			return nkv_err(EINVAL, "%s:%llu: column %s: %llu is more than %u", path, (unsigned long long)ln,
				       c->name, (unsigned long long)u, c->max);
		if (c->type == C_U64)
			*(uint64_t *)p = u;
		else if (c->type == C_U32)
			*(uint32_t *)p = (uint32_t)u;
		else if (c->type == C_I64)
			*(int64_t *)p = (int64_t)u;
		else
			*(int *)p = (int)u;
		return 0;
	case C_DBL:
		if (nkv_parse_double(v, &d) || !isfinite(d) || d < 0)
			return nkv_err(EINVAL, "%s:%llu: column %s: '%.40s' is not a number >= 0", path,
				       (unsigned long long)ln, c->name, v);
		*(double *)p = d;
		return 0;
	case C_STATUS:
		for (int i = 0; i <= NKV_REC_ST_LOST; i++)
			if (!strcmp(v, status_name[i])) {
				*(int *)p = i;
				return 0;
			}
		return nkv_err(EINVAL, "%s:%llu: column %s: '%.40s' is not ok, failed or lost", path,
			       (unsigned long long)ln, c->name, v);
	case C_SLO:
		if (strcmp(v, "0") && strcmp(v, "1"))
			return nkv_err(EINVAL, "%s:%llu: column %s: '%.40s' is not 0 or 1", path, (unsigned long long)ln,
				       c->name, v);
		*(int *)p = v[0] == '1';
		return 0;
	case C_NAME:
		if (!name_ok(v))
			return nkv_err(EINVAL, "%s:%llu: column %s: '%.40s' is not an instance name", path,
				       (unsigned long long)ln, c->name, v);
		if (topo && nkv_topo_find(topo, v) < 0)
			return nkv_err(EINVAL, "%s:%llu: column %s: instance '%s' is not in topology %s", path,
				       (unsigned long long)ln, c->name, v, nkv_topo_name(topo));
		snprintf((char *)p, sizeof(r->prefill), "%s", v);
		return 0;
	case C_TEXT:
		snprintf((char *)p, sizeof(r->reason), "%s", v);
		return 0;
	}
	return 0;
}

static bool field_known(const struct col *c, const struct nkv_rec_row *r)
{
	const void *p = (const char *)r + c->off;

	switch (c->type) {
	case C_DBL: return !isnan(*(const double *)p);
	case C_NAME: return *(const char *)p != 0;
	case C_I64: return *(const int64_t *)p >= 0;
	case C_TIER: return *(const int *)p >= 0;
	default: return true;
	}
}

static int cmp_req(const void *a, const void *b)
{
	const struct nkv_rec_row *x = *(const struct nkv_rec_row *const *)a, *y = *(const struct nkv_rec_row *const *)b;

	if (x->req != y->req)
		return x->req < y->req ? -1 : 1;
	return x->file_line < y->file_line ? -1 : x->file_line > y->file_line;
}

/* One record per request id (sorted copy: O(n log n) for big files). */
static int check_unique(const struct nkv_rec_row *rows, size_t n, const char *path)
{
	const struct nkv_rec_row **p = malloc(n * sizeof(*p));
	int ret = 0;

	if (!p)
		return nkv_err(ENOMEM, "%s: out of memory", path);
	for (size_t i = 0; i < n; i++)
		p[i] = &rows[i];
	qsort(p, n, sizeof(*p), cmp_req);
	for (size_t i = 1; i < n && !ret; i++)
		if (p[i]->req == p[i - 1]->req)
			ret = nkv_err(EINVAL, "%s:%llu: column req: request %llu already at line %llu", path,
				      (unsigned long long)p[i]->file_line, (unsigned long long)p[i]->req,
				      (unsigned long long)p[i - 1]->file_line);
	free(p);
	return ret;
}

int nkv_rec_parse(const char *buf, size_t len, const char *path, const struct nkv_topo *topo,
		  struct nkv_rec_row **rows_out, size_t *n_out)
{
	const char *p = buf, *end = buf + len;
	char *line = NULL, *fld[NCOLS + 64];
	size_t cap = 0, n = 0, capr = 0;
	int where[NCOLS + 64];  /* header position -> column, -1 ignored */
	int nh = 0, ret = 0;
	uint64_t ln = 0;
	struct nkv_rec_row *rows = NULL;

	*rows_out = NULL;
	*n_out = 0;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);

		ln++;
		if (memchr(p, '\0', l)) {
			ret = nkv_err(EINVAL, "%s:%llu: a NUL byte in the line", path, (unsigned long long)ln);
			goto out;
		}
		/* split() cuts the line in place: a copy, the input stays const */
		if (l + 1 > cap) {
			char *nb = realloc(line, l + 1);
			if (!nb) {
				ret = nkv_err(ENOMEM, "%s: out of memory at line %llu", path, (unsigned long long)ln);
				goto out;
			}
			line = nb;
			cap = l + 1;
		}
		memcpy(line, p, l);
		line[l] = 0;
		p += l + (nl ? 1 : 0);
		while (l && line[l - 1] == '\r')
			line[--l] = 0;
		if (ln == 1) {
			bool seen[NCOLS] = { 0 };

			nh = split(line, fld, (int)(sizeof(fld) / sizeof(fld[0])));
			if (nh < 0 || nh > (int)(sizeof(fld) / sizeof(fld[0]))) {
				ret = nkv_err(EINVAL, "%s:1: not a record header (bad quoting or too many columns)", path);
				goto out;
			}
			for (int h = 0; h < nh; h++) {
				where[h] = -1;
				for (size_t c = 0; c < NCOLS; c++)
					if (!strcmp(fld[h], cols[c].name)) {
						if (seen[c]) {
							ret = nkv_err(EINVAL, "%s:1: column %s appears twice", path, cols[c].name);
							goto out;
						}
						seen[c] = true;
						where[h] = (int)c;
					}
			}
			for (size_t c = 0; c < NCOLS; c++)
				if (cols[c].required && !seen[c]) {
					ret = nkv_err(EINVAL,
						      "%s:1: the header has no column %s (not a netkv record file, or one "
						      "written before the format had it)", path, cols[c].name);
					goto out;
				}
			continue;
		}
		if (!l)
			continue;
		int nf = split(line, fld, (int)(sizeof(fld) / sizeof(fld[0])));
		if (nf < 0) {
			ret = nkv_err(EINVAL, "%s:%llu: unterminated or misplaced quote", path, (unsigned long long)ln);
			goto out;
		}
		if (nf != nh) {
			ret = nkv_err(EINVAL, "%s:%llu: %d fields, the header has %d", path, (unsigned long long)ln, nf, nh);
			goto out;
		}
		if (n == capr) {
			size_t c = capr ? capr * 2 : 256;
			struct nkv_rec_row *nr = realloc(rows, c * sizeof(*nr));
			if (!nr) {
				ret = nkv_err(ENOMEM, "%s: out of memory at line %llu", path, (unsigned long long)ln);
				goto out;
			}
			rows = nr;
			capr = c;
		}
		struct nkv_rec_row *r = &rows[n];
		nkv_rec_row_init(r);
		r->file_line = ln;
		for (int h = 0; h < nh; h++)
			if (where[h] >= 0 && (ret = parse_field(&cols[where[h]], fld[h], r, topo, path, ln)))
				goto out;
		for (size_t c = 0; c < NCOLS; c++)
			if (cols[c].need_ok && r->status == NKV_REC_ST_OK && !field_known(&cols[c], r)) {
				ret = nkv_err(EINVAL, "%s:%llu: column %s: empty in a finished (ok) record", path,
					      (unsigned long long)ln, cols[c].name);
				goto out;
			}
		n++;
	}
	if (ln == 0)
		ret = nkv_err(EINVAL, "%s: empty file (no header line)", path);
	else if (!n)
		ret = nkv_err(EINVAL, "%s: no records after the header", path);
	else
		ret = check_unique(rows, n, path);
out:
	free(line);
	if (ret) {
		free(rows);
		return ret;
	}
	*rows_out = rows;
	*n_out = n;
	return 0;
}

int nkv_rec_read(const char *path, const struct nkv_topo *topo, struct nkv_rec_row **rows, size_t *n)
{
	char *buf;
	size_t len;
	int ret;

	*rows = NULL;
	*n = 0;
	if ((ret = nkv_read_file(path, MAX_REC_FILE, &buf, &len)))
		return ret;
	ret = nkv_rec_parse(buf, len, path, topo, rows, n);
	free(buf);
	return ret;
}
