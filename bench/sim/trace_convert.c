/*
 * Public LLM traces (Azure, BurstGPT, ShareGPT) into Mooncake JSONL, and
 * `trace sort`: the simulator reads Mooncake only, and a trace the field
 * publishes should not need a script of its own to be run. What each source
 * holds, how tokens and prefix ids are made where it holds none:
 * trace_convert.h.
 */
#include "trace_convert.h"

#include "netkv_sched.h" /* NKV_TRACE_MAX_TOKENS, NKV_PREFIX_BLOCK_TOKENS */
#include "nkv_util.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define BT NKV_PREFIX_BLOCK_TOKENS
#define MAX_TS_MS 9.0e15                  /* under 2^53: what the trace reader takes */
#define MAX_SHAREGPT_FILE ((size_t)4 << 30)
#define MAX_SORT_FILE ((size_t)4 << 30)
#define MAX_SORT_LINE ((size_t)4 << 20)
#define ID_MASK ((UINT64_C(1) << 53) - 1)

static const char azure_header[] = "TIMESTAMP,ContextTokens,GeneratedTokens";
static const char burst_header[] = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type";

struct rec {
	uint64_t ts_ms;                   /* absolute, in the source's clock */
	uint32_t in, out;
	size_t ids;                       /* content: offset into the pool */
	size_t order;                     /* read order: equal times keep it */
};

struct conv {
	const char *path;
	const struct nkv_conv_opts *o;
	struct nkv_conv_stats *st;
	struct rec *r;
	size_t n, cap;
	uint64_t *pool;
	size_t pool_len, pool_cap;
};

void nkv_conv_defaults(struct nkv_conv_opts *o)
{
	*o = (struct nkv_conv_opts){ .from = NKV_CONV_AZURE, .prefix = NKV_CONV_PREFIX_NONE, .rate = 1, .seed = 1 };
}

int nkv_conv_from_parse(const char *s, enum nkv_conv_from *out)
{
	if (!strcmp(s, "azure"))
		*out = NKV_CONV_AZURE;
	else if (!strcmp(s, "burstgpt"))
		*out = NKV_CONV_BURSTGPT;
	else if (!strcmp(s, "sharegpt"))
		*out = NKV_CONV_SHAREGPT;
	else
		return nkv_err(EINVAL, "unknown source '%s' (azure, burstgpt, sharegpt)", s);
	return 0;
}

int nkv_conv_prefix_parse(const char *s, struct nkv_conv_opts *o)
{
	uint32_t n;

	if (!strcmp(s, "none")) {
		o->prefix = NKV_CONV_PREFIX_NONE;
	} else if (!strcmp(s, "content")) {
		o->prefix = NKV_CONV_PREFIX_CONTENT;
	} else if (!strncmp(s, "system:", 7)) {
		if (nkv_parse_u32(s + 7, &n) || n < 1 || n > NKV_TRACE_MAX_TOKENS)
			return nkv_err(EINVAL, "'%s': system:N wants N tokens in 1..%u", s, NKV_TRACE_MAX_TOKENS);
		o->prefix = NKV_CONV_PREFIX_SYSTEM;
		o->system_tokens = n;
	} else {
		return nkv_err(EINVAL, "unknown prefix model '%s' (none, system:N, content)", s);
	}
	return 0;
}

/* One record; tokens 0 are skipped (counted), over the reader's bound refused. */
static int add(struct conv *c, uint64_t line, uint64_t ts_ms, uint64_t in, uint64_t out, bool *added)
{
	*added = false;
	if (in > NKV_TRACE_MAX_TOKENS || out > NKV_TRACE_MAX_TOKENS)
		return nkv_err(EINVAL, "%s:%llu: %llu input / %llu output tokens: at most %u each", c->path,
			       (unsigned long long)line, (unsigned long long)in, (unsigned long long)out,
			       NKV_TRACE_MAX_TOKENS);
	if (!in || !out) {
		c->st->skipped_zero++;
		return 0;
	}
	if (nkv_grow((void **)&c->r, &c->cap, c->n + 1, sizeof(*c->r)))
		return -ENOMEM;
	c->r[c->n] = (struct rec){ .ts_ms = ts_ms, .in = (uint32_t)in, .out = (uint32_t)out, .order = c->n };
	c->n++;
	*added = true;
	return 0;
}

/* ---- CSV (azure, burstgpt) ---------------------------------------------- */

/* One line of at most NKV_CONV_MAX_LINE bytes into buf (no newline, no \r).
 * 1 = a line, 0 = end of file, <0 = error (named). */
static int read_line(FILE *f, struct conv *c, uint64_t line, char *buf, size_t *len)
{
	size_t n = 0;
	int ch;

	while ((ch = getc(f)) != EOF && ch != '\n') {
		if (!ch)
			return nkv_err(EINVAL, "%s:%llu: NUL byte in line", c->path, (unsigned long long)line);
		if (n == NKV_CONV_MAX_LINE)
			return nkv_err(EINVAL, "%s:%llu: line longer than %d bytes", c->path, (unsigned long long)line,
				       NKV_CONV_MAX_LINE);
		buf[n++] = (char)ch;
	}
	if (ferror(f))
		return nkv_err(EIO, "%s: read error", c->path);
	if (ch == EOF && !n)
		return 0;
	if (n && buf[n - 1] == '\r')
		n--;
	buf[n] = 0;
	*len = n;
	return 1;
}

/* Split on commas into exactly want fields (no quoting in these files). */
static int split(struct conv *c, uint64_t line, char *s, char **f, int want)
{
	int n = 0;

	if (strchr(s, '"'))
		return nkv_err(EINVAL, "%s:%llu: quoted CSV fields are not expected here", c->path,
			       (unsigned long long)line);
	for (;;) {
		char *comma = strchr(s, ',');

		if (n == want) { /* one field too many */
			n++;
			break;
		}
		f[n++] = s;
		if (!comma)
			break;
		*comma = 0;
		s = comma + 1;
	}
	if (n != want)
		return nkv_err(EINVAL, "%s:%llu: want %d comma-separated fields", c->path, (unsigned long long)line, want);
	return 0;
}

static int field_u64(struct conv *c, uint64_t line, const char *name, const char *s, uint64_t *out)
{
	if (nkv_parse_u64(s, out))
		return nkv_err(EINVAL, "%s:%llu: %s '%s' is not a non-negative integer", c->path,
			       (unsigned long long)line, name, s);
	return 0;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

/* "YYYY-MM-DD HH:MM:SS[.fraction]" (a 'T' allowed for the space), UTC, into
 * ms since 1970 (the fraction cut to ms). */
static int parse_datetime(const char *s, uint64_t *ms)
{
	static const unsigned mdays[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	unsigned v[6], frac_ms = 0;
	const char *p = s;
	static const char seps[] = "-- ::"; /* after year, month, day, hour, minute */

	for (int i = 0; i < 6; i++) {
		int digits = i ? 2 : 4;

		v[i] = 0;
		for (int k = 0; k < digits; k++, p++) {
			if (*p < '0' || *p > '9')
				return -1;
			v[i] = v[i] * 10 + (unsigned)(*p - '0');
		}
		if (i < 5) {
			if (*p != seps[i] && !(i == 2 && *p == 'T'))
				return -1;
			p++;
		}
	}
	if (*p == '.') {
		int k = 0;

		for (p++; *p >= '0' && *p <= '9'; p++, k++)
			if (k < 3)
				frac_ms = frac_ms * 10 + (unsigned)(*p - '0');
		if (!k || k > 9)
			return -1;
		for (; k < 3; k++)
			frac_ms *= 10;
	}
	if (*p)
		return -1;
	bool leap = (v[0] % 4 == 0 && v[0] % 100 != 0) || v[0] % 400 == 0;
	if (v[0] < 1970 || v[1] < 1 || v[1] > 12 || v[2] < 1 ||
	    v[2] > mdays[v[1] - 1] + (v[1] == 2 && leap) || v[3] > 23 || v[4] > 59 || v[5] > 60)
		return -1;
	*ms = ((uint64_t)days_from_civil(v[0], v[1], v[2]) * 86400 + v[3] * 3600u + v[4] * 60u + v[5]) * 1000 +
	      frac_ms;
	return 0;
}

static int csv_row(struct conv *c, uint64_t line, char *s, bool *added)
{
	char *f[6];
	uint64_t ts, in, out, total;
	double sec;
	int rc;

	if (c->o->from == NKV_CONV_AZURE) {
		if ((rc = split(c, line, s, f, 3)))
			return rc;
		if (parse_datetime(f[0], &ts))
			return nkv_err(EINVAL, "%s:%llu: TIMESTAMP '%s' is not a date and time like "
				       "'2023-11-16 18:15:46.6805900'", c->path, (unsigned long long)line, f[0]);
		if ((rc = field_u64(c, line, "ContextTokens", f[1], &in)) ||
		    (rc = field_u64(c, line, "GeneratedTokens", f[2], &out)))
			return rc;
		return add(c, line, ts, in, out, added);
	}
	if ((rc = split(c, line, s, f, 6)))
		return rc;
	if (nkv_parse_double(f[0], &sec) || !(sec >= 0) || sec * 1000 > MAX_TS_MS)
		return nkv_err(EINVAL, "%s:%llu: Timestamp '%s' is not a number of seconds in 0..9e12", c->path,
			       (unsigned long long)line, f[0]);
	if (!*f[1] || !*f[5])
		return nkv_err(EINVAL, "%s:%llu: empty %s", c->path, (unsigned long long)line, *f[1] ? "Log Type" : "Model");
	if ((rc = field_u64(c, line, "Request tokens", f[2], &in)) ||
	    (rc = field_u64(c, line, "Response tokens", f[3], &out)) ||
	    (rc = field_u64(c, line, "Total tokens", f[4], &total)))
		return rc;
	if (in > UINT32_MAX || out > UINT32_MAX || total != in + out)
		return nkv_err(EINVAL, "%s:%llu: Total tokens %llu is not Request + Response tokens (%llu + %llu)",
			       c->path, (unsigned long long)line, (unsigned long long)total, (unsigned long long)in,
			       (unsigned long long)out);
	return add(c, line, (uint64_t)llround(sec * 1000), in, out, added);
}

static int read_csv(struct conv *c)
{
	const char *want = c->o->from == NKV_CONV_AZURE ? azure_header : burst_header;
	char buf[NKV_CONV_MAX_LINE + 1];
	FILE *f = fopen(c->path, "r");
	uint64_t line = 0;
	size_t len = 0;
	int rc = 0;

	if (!f)
		return nkv_err(errno, "%s: %s", c->path, strerror(errno));
	while ((rc = read_line(f, c, line + 1, buf, &len)) > 0) {
		bool added;

		line++;
		if (line == 1) {
			if (len >= 3 && !memcmp(buf, "\xef\xbb\xbf", 3))
				memmove(buf, buf + 3, len - 2);
			if (strcmp(buf, want)) {
				nkv_str_printable(buf);
				rc = nkv_err(EINVAL, "%s:1: header '%.80s' is not %s's '%s'", c->path, buf,
					     c->o->from == NKV_CONV_AZURE ? "Azure" : "BurstGPT", want);
				break;
			}
			continue;
		}
		if (!len)
			continue;
		c->st->rows++;
		if ((rc = csv_row(c, line, buf, &added)))
			break;
		if (c->o->limit && c->n >= c->o->limit)
			break;
	}
	fclose(f);
	if (!rc && !line)
		rc = nkv_err(EINVAL, "%s:1: empty file (want the header '%s')", c->path, want);
	return rc < 0 ? rc : 0;
}

/* ---- ShareGPT (JSON array, one entry at a time for line numbers) -------- */

static uint64_t utf8_chars(const char *s, size_t len)
{
	uint64_t n = 0;

	for (size_t i = 0; i < len; i++)
		n += ((unsigned char)s[i] & 0xc0) != 0x80;
	return n;
}

static uint64_t tokens_of(uint64_t chars)
{
	return (chars + NKV_CONV_CHARS_PER_TOKEN - 1) / NKV_CONV_CHARS_PER_TOKEN;
}

/* Chained FNV-1a over blocks of BT * 4 characters: the content prefix model. */
static int content_ids(struct conv *c, const char *s, size_t len, uint32_t nblocks)
{
	uint64_t h = 0xcbf29ce484222325ull;
	size_t i = 0;

	if (nkv_grow((void **)&c->pool, &c->pool_cap, c->pool_len + nblocks, sizeof(uint64_t)))
		return -ENOMEM;
	for (uint32_t b = 0; b < nblocks; b++) {
		uint64_t chars = 0;

		/* the previous block's hash seeds this one: ids depend on the whole prefix */
		for (; i < len; i++) {
			if (((unsigned char)s[i] & 0xc0) != 0x80 && chars++ == (uint64_t)BT * NKV_CONV_CHARS_PER_TOKEN)
				break;
			h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
		}
		c->pool[c->pool_len + b] = h & ID_MASK;
		h = (h ^ 0xff) * 0x100000001b3ull; /* block boundary */
	}
	return 0;
}

static const char *turn_value(json_t *conv, size_t i)
{
	json_t *t = json_array_get(conv, i), *v = json_is_object(t) ? json_object_get(t, "value") : NULL;

	return json_is_string(v) ? json_string_value(v) : NULL;
}

static int sharegpt_entry(struct conv *c, json_t *e, size_t idx, uint64_t line, double *t, uint64_t *rng)
{
	json_t *conv = json_is_object(e) ? json_object_get(e, "conversations") : NULL;
	const char *p, *q;
	uint64_t in, out;
	bool added;
	int rc;

	if (!json_is_object(e))
		return nkv_err(EINVAL, "%s:%llu: entry %zu is not an object", c->path, (unsigned long long)line, idx);
	if (!json_is_array(conv))
		return nkv_err(EINVAL, "%s:%llu: entry %zu: \"conversations\" %s", c->path, (unsigned long long)line, idx,
			       conv ? "must be an array" : "missing");
	c->st->rows++;
	for (size_t i = 0; i < json_array_size(conv) && i < 2; i++)
		if (!turn_value(conv, i))
			return nkv_err(EINVAL, "%s:%llu: entry %zu: conversations[%zu] needs a string \"value\"", c->path,
				       (unsigned long long)line, idx, i);
	if (json_array_size(conv) < 2) {
		c->st->skipped_short++;
		return 0;
	}
	p = turn_value(conv, 0);
	q = turn_value(conv, 1);
	in = tokens_of(utf8_chars(p, strlen(p)));
	out = tokens_of(utf8_chars(q, strlen(q)));
	if ((rc = add(c, line, (uint64_t)(*t * 1000), in, out, &added)))
		return rc;
	if (!added)
		return 0;
	/* The next arrival: exponential gaps of mean 1/rate. */
	*t += -log(nkv_unit01(rng)) / c->o->rate;
	if (*t * 1000 > MAX_TS_MS)
		return nkv_err(EINVAL, "%s:%llu: arrival time past 9e12 s: raise --rate", c->path, (unsigned long long)line);
	if (c->o->prefix == NKV_CONV_PREFIX_CONTENT) {
		c->r[c->n - 1].ids = c->pool_len;
		if ((rc = content_ids(c, p, strlen(p), (uint32_t)((in + BT - 1) / BT))))
			return rc;
		c->pool_len += (in + BT - 1) / BT;
	}
	return 0;
}

static const char *skip_ws(const char *p, const char *end, uint64_t *line)
{
	for (; p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'); p++)
		*line += *p == '\n';
	return p;
}

static int read_sharegpt(struct conv *c)
{
	char *buf;
	size_t len, idx = 0;
	const char *p, *end;
	uint64_t line = 1, rng = c->o->seed ? c->o->seed : 1;
	double t = 0;
	int rc = nkv_read_file(c->path, MAX_SHAREGPT_FILE, &buf, &len);

	if (rc)
		return rc;
	p = buf, end = buf + len;
	if (len >= 3 && !memcmp(p, "\xef\xbb\xbf", 3))
		p += 3;
	p = skip_ws(p, end, &line);
	if (p == end || *p != '[') {
		rc = nkv_err(EINVAL, "%s:%llu: want a JSON array of {\"id\", \"conversations\"} (ShareGPT)", c->path,
			     (unsigned long long)line);
		goto out;
	}
	p = skip_ws(p + 1, end, &line);
	if (p < end && *p == ']')
		p++;
	else
		for (;;) {
			json_error_t je;
			uint64_t at = line;
			json_t *e = json_loadb(p, (size_t)(end - p), JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES, &je);

			if (!e) {
				rc = nkv_err(EINVAL, "%s:%llu: entry %zu: %s", c->path,
					     (unsigned long long)(at + (je.line > 0 ? (uint64_t)je.line - 1 : 0)), idx, je.text);
				goto out;
			}
			/* je.position: bytes the entry took; count its lines */
			for (size_t i = 0; i < (size_t)je.position && p + i < end; i++)
				line += p[i] == '\n';
			p += je.position;
			rc = sharegpt_entry(c, e, idx++, at, &t, &rng);
			json_decref(e);
			if (rc)
				goto out;
			if (c->o->limit && c->n >= c->o->limit)
				goto out;
			p = skip_ws(p, end, &line);
			if (p < end && *p == ']') {
				p++;
				break;
			}
			if (p == end || *p != ',') {
				rc = nkv_err(EINVAL, "%s:%llu: want ',' or ']' after entry %zu", c->path,
					     (unsigned long long)line, idx - 1);
				goto out;
			}
			p = skip_ws(p + 1, end, &line);
		}
	p = skip_ws(p, end, &line);
	if (p != end)
		rc = nkv_err(EINVAL, "%s:%llu: text after the array", c->path, (unsigned long long)line);
out:
	free(buf);
	return rc;
}

/* ---- sort and write --------------------------------------------------- */

static int cmp_rec(const void *a, const void *b)
{
	const struct rec *x = a, *y = b;

	if (x->ts_ms != y->ts_ms)
		return x->ts_ms < y->ts_ms ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

static int write_recs(struct conv *c, FILE *out)
{
	const struct nkv_conv_opts *o = c->o;
	uint64_t next = o->prefix == NKV_CONV_PREFIX_SYSTEM ? (o->system_tokens + BT - 1) / BT : 0;
	uint64_t t0 = c->n ? c->r[0].ts_ms : 0;

	for (size_t i = 0; i < c->n; i++) {
		const struct rec *r = &c->r[i];
		uint32_t nb = (r->in + BT - 1) / BT, shared = 0;

		if (o->prefix == NKV_CONV_PREFIX_SYSTEM)
			shared = (r->in < o->system_tokens ? r->in : o->system_tokens) / BT;
		fprintf(out, "{\"timestamp\": %llu, \"input_length\": %u, \"output_length\": %u, \"hash_ids\": [",
			(unsigned long long)(r->ts_ms - t0), r->in, r->out);
		for (uint32_t b = 0; b < nb; b++) {
			uint64_t id = o->prefix == NKV_CONV_PREFIX_CONTENT ? c->pool[r->ids + b] : b < shared ? b : next++;

			fprintf(out, b ? ", %llu" : "%llu", (unsigned long long)id);
		}
		fputs("]}\n", out);
	}
	c->st->written = c->n;
	if (fflush(out) || ferror(out))
		return nkv_err(EIO, "writing the converted trace: %s", strerror(errno ? errno : EIO));
	return 0;
}

int nkv_trace_convert(const char *in_path, const struct nkv_conv_opts *o, FILE *out, struct nkv_conv_stats *st)
{
	struct nkv_conv_stats dummy;
	struct conv c = { .path = in_path, .o = o, .st = st ? st : &dummy };
	int rc;

	memset(c.st, 0, sizeof(*c.st));
	if (o->prefix == NKV_CONV_PREFIX_CONTENT && o->from != NKV_CONV_SHAREGPT)
		return nkv_err(EINVAL, "prefix model 'content' needs the prompt text: sharegpt only");
	if (o->from == NKV_CONV_SHAREGPT && !(o->rate > 0 && o->rate <= NKV_CONV_MAX_RATE))
		return nkv_err(EINVAL, "rate %g not in (0, %g]", o->rate, NKV_CONV_MAX_RATE);
	rc = o->from == NKV_CONV_SHAREGPT ? read_sharegpt(&c) : read_csv(&c);
	if (!rc) {
		if (c.n)
			qsort(c.r, c.n, sizeof(*c.r), cmp_rec);
		if (c.n && c.r[c.n - 1].ts_ms - c.r[0].ts_ms > MAX_TS_MS)
			rc = nkv_err(EINVAL, "%s: spans more than 9e12 s", in_path);
		else
			rc = write_recs(&c, out);
	}
	free(c.r);
	free(c.pool);
	return rc;
}

/* ---- trace sort ------------------------------------------------------- */

struct line_ref {
	uint64_t ts;
	size_t off, len, order;
};

static int cmp_line(const void *a, const void *b)
{
	const struct line_ref *x = a, *y = b;

	if (x->ts != y->ts)
		return x->ts < y->ts ? -1 : 1;
	return x->order < y->order ? -1 : x->order > y->order;
}

static int line_ts(const char *path, uint64_t line, const char *s, size_t len, uint64_t *ts)
{
	json_error_t je;
	json_t *root, *v;
	int rc = 0;

	if (len > MAX_SORT_LINE)
		return nkv_err(EINVAL, "%s:%llu: line longer than %zu bytes", path, (unsigned long long)line, MAX_SORT_LINE);
	if (memchr(s, 0, len))
		return nkv_err(EINVAL, "%s:%llu: NUL byte in line", path, (unsigned long long)line);
	root = json_loadb(s, len, JSON_REJECT_DUPLICATES, &je);
	if (!root)
		return nkv_err(EINVAL, "%s:%llu: not JSON: %s (column %d)", path, (unsigned long long)line, je.text,
			       je.column);
	v = json_is_object(root) ? json_object_get(root, "timestamp") : NULL;
	if (json_is_integer(v) && json_integer_value(v) >= 0 && (double)json_integer_value(v) <= MAX_TS_MS)
		*ts = (uint64_t)json_integer_value(v);
	else if (json_is_real(v) && json_real_value(v) >= 0 && json_real_value(v) <= MAX_TS_MS &&
		 json_real_value(v) == floor(json_real_value(v)))
		*ts = (uint64_t)json_real_value(v);
	else
		rc = nkv_err(EINVAL, "%s:%llu: %s", path, (unsigned long long)line,
			     !json_is_object(root) ? "not a JSON object"
			     : v ? "timestamp must be an integer in 0..9e15 (ms)" : "timestamp missing");
	json_decref(root);
	return rc;
}

int nkv_trace_sort(const char *in_path, FILE *out, size_t *n_out)
{
	char *buf;
	size_t len, n = 0, cap = 0;
	struct line_ref *l = NULL;
	uint64_t line = 0;
	int rc = nkv_read_file(in_path, MAX_SORT_FILE, &buf, &len);

	if (rc)
		return rc;
	for (size_t off = 0; off < len;) {
		const char *s = buf + off, *nl = memchr(s, '\n', len - off);
		size_t ll = nl ? (size_t)(nl - s) : len - off, k = ll;
		bool blank = true;

		line++;
		while (k && s[k - 1] == '\r')
			k--;
		for (size_t i = 0; i < k && blank; i++)
			blank = s[i] == ' ' || s[i] == '\t';
		if (!blank) {
			if ((rc = nkv_grow((void **)&l, &cap, n + 1, sizeof(*l))) ||
			    (rc = line_ts(in_path, line, s, k, &l[n].ts)))
				goto out;
			l[n].off = off, l[n].len = k, l[n].order = n;
			n++;
		}
		off += ll + (nl ? 1 : 0);
	}
	if (n)
		qsort(l, n, sizeof(*l), cmp_line);
	for (size_t i = 0; i < n; i++) {
		fwrite(buf + l[i].off, 1, l[i].len, out);
		putc('\n', out);
	}
	if (fflush(out) || ferror(out))
		rc = nkv_err(EIO, "writing the sorted trace: %s", strerror(errno ? errno : EIO));
	if (n_out)
		*n_out = n;
out:
	free(l);
	free(buf);
	return rc;
}
