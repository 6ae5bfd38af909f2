/*
 * Control protocol codec. Each message type is a list of fields (specs[]);
 * one generic writer and one generic reader walk the list, so encoding and
 * decoding cannot disagree, and check_msg() applies the per-type rules on
 * both paths.
 */
#include "netkv_proto.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nkv_util.h"

enum field {
	F_END, F_ROLE, F_STATUS, F_CODE, F_AGENT, F_PEER, F_TIER, F_INPUT, F_OUTPUT, F_FIRST,
	F_KVBLOCKS, F_BLOCKTOK, F_KVUSED, F_KVTOTAL, F_RUNNING, F_QUEUED, F_NTOKENS, F_BOK, F_BBAD,
	F_REQ, F_BYTES, F_RTOK, F_QTOK, F_BPT, F_TOKEN, F_NAME, F_ADDR, F_TEXT, F_IDS, F_NADD,
	F_BLOCKS, F_T2, F_T6, F_T12,
};

static const char *const field_names[] = {
	"end", "role", "status", "code", "agent_id", "peer", "tier", "input_len", "output_len", "first",
	"kv_blocks", "block_tokens", "kv_used", "kv_total", "running", "queued", "ntokens", "blocks_ok",
	"blocks_bad", "req", "bytes", "running_tokens", "queued_tokens", "kv_bpt", "token", "name", "addr",
	"text", "ids", "nadd", "blocks", "t", "t", "t",
};

static const uint8_t specs[NKV_MSG__COUNT][24] = {
	[NKV_MSG_REGISTER] = { F_ROLE, F_TOKEN, F_NAME, F_ADDR, F_KVBLOCKS, F_BLOCKTOK, F_BPT, F_TEXT },
	[NKV_MSG_REGISTER_OK] = { F_AGENT },
	[NKV_MSG_ERROR] = { F_CODE, F_TEXT },
	[NKV_MSG_HEARTBEAT] = { F_RUNNING, F_QUEUED, F_RTOK, F_QTOK, F_KVUSED, F_KVTOTAL, F_NADD, F_IDS },
	[NKV_MSG_SUBMIT] = { F_REQ, F_INPUT, F_OUTPUT, F_IDS },
	[NKV_MSG_DECODE_TASK] = { F_REQ, F_INPUT, F_OUTPUT, F_IDS },
	[NKV_MSG_PREFILL_TASK] = { F_REQ, F_INPUT, F_OUTPUT, F_PEER, F_TIER, F_ADDR, F_IDS },
	[NKV_MSG_BLOCKS] = { F_REQ, F_FIRST, F_BLOCKS },
	[NKV_MSG_PREFILL_DONE] = { F_REQ, F_FIRST, F_T2 },
	[NKV_MSG_XFER_DONE] = { F_REQ, F_PEER, F_STATUS, F_BYTES, F_T2, F_TEXT },
	[NKV_MSG_TOKENS] = { F_REQ, F_STATUS, F_NTOKENS, F_BOK, F_BBAD, F_T6, F_TEXT },
	[NKV_MSG_PROBE] = { F_REQ, F_PEER, F_TIER, F_ADDR, F_BYTES },
	[NKV_MSG_PROBE_RESULT] = { F_REQ, F_PEER, F_STATUS, F_BYTES, F_T2 },
	[NKV_MSG_RECORD] = { F_REQ, F_STATUS, F_PEER, F_AGENT, F_TIER, F_NTOKENS, F_BOK, F_BBAD, F_BYTES,
			     F_T12, F_TEXT },
	[NKV_MSG_STATUS_REQ] = { F_END },
	[NKV_MSG_STATUS] = { F_TEXT },
	[NKV_MSG_CANCEL] = { F_REQ, F_STATUS, F_TEXT },
};

static const char *const type_names[NKV_MSG__COUNT] = {
	"?", "REGISTER", "REGISTER_OK", "ERROR", "HEARTBEAT", "SUBMIT", "DECODE_TASK", "PREFILL_TASK",
	"BLOCKS", "PREFILL_DONE", "XFER_DONE", "TOKENS", "PROBE", "PROBE_RESULT", "RECORD", "STATUS_REQ",
	"STATUS", "CANCEL",
};

const char *nkv_msg_type_name(int type)
{
	return type > 0 && type < NKV_MSG__COUNT ? type_names[type] : "?";
}

static const char *const role_names[] = { "?", "prefill", "decode", "client", "admin" };

const char *nkv_role_name(int role)
{
	return role >= NKV_ROLE_PREFILL && role <= NKV_ROLE_ADMIN ? role_names[role] : "?";
}

int nkv_role_parse(const char *s, enum nkv_role *out)
{
	for (int r = NKV_ROLE_PREFILL; r <= NKV_ROLE_ADMIN; r++)
		if (s && strcmp(s, role_names[r]) == 0) {
			*out = (enum nkv_role)r;
			return 0;
		}
	return nkv_err(EINVAL, "role '%s' is not one of prefill, decode, client, admin", s ? s : "");
}

void nkv_msg_init(struct nkv_msg *m, enum nkv_msg_type type)
{
	memset(m, 0, sizeof(*m));
	m->type = type;
}

void nkv_msg_clear(struct nkv_msg *m)
{
	free(m->text);
	free(m->ids);
	free(m->blocks);
	memset(m, 0, sizeof(*m));
}

int nkv_msg_set_text(struct nkv_msg *m, const char *text)
{
	char *t = strdup(text ? text : "");
	if (!t)
		return nkv_err(ENOMEM, "out of memory for message text");
	free(m->text);
	m->text = t;
	return 0;
}

int nkv_msg_set_ids(struct nkv_msg *m, const uint64_t *ids, uint32_t n)
{
	uint64_t *p = NULL;
	if (n) {
		p = malloc((size_t)n * sizeof(*p));
		if (!p)
			return nkv_err(ENOMEM, "out of memory for %u ids", n);
		memcpy(p, ids, (size_t)n * sizeof(*p));
	}
	free(m->ids);
	m->ids = p;
	m->nids = n;
	return 0;
}

int nkv_msg_set_blocks(struct nkv_msg *m, const uint32_t *blocks, uint32_t n)
{
	uint32_t *p = NULL;
	if (n) {
		p = malloc((size_t)n * sizeof(*p));
		if (!p)
			return nkv_err(ENOMEM, "out of memory for %u blocks", n);
		memcpy(p, blocks, (size_t)n * sizeof(*p));
	}
	free(m->blocks);
	m->blocks = p;
	m->nblocks = n;
	return 0;
}

void nkv_buf_free(struct nkv_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

void nkv_buf_consume(struct nkv_buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
	} else {
		memmove(b->p, b->p + n, b->len - n);
		b->len -= n;
	}
}

/* ---- writer ----------------------------------------------------------- */

static int buf_reserve(struct nkv_buf *b, size_t more)
{
	if (b->len + more <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + more)
		cap *= 2;
	uint8_t *p = realloc(b->p, cap);
	if (!p)
		return nkv_err(ENOMEM, "out of memory for a %zu-byte frame", b->len + more);
	b->p = p;
	b->cap = cap;
	return 0;
}

static void put(struct nkv_buf *b, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		b->p[b->len++] = (uint8_t)(v >> (8 * i));
}

static void put_f64(struct nkv_buf *b, double d)
{
	uint64_t v;
	memcpy(&v, &d, sizeof(v));
	put(b, v, 8);
}

static void put_str(struct nkv_buf *b, const char *s)
{
	size_t n = s ? strlen(s) : 0;
	put(b, n, 2);
	if (n)
		memcpy(b->p + b->len, s, n);
	b->len += n;
}

/* ---- checks shared by both directions ------------------------------------ */

static int check_str(const char *s, size_t max, enum nkv_msg_type t, const char *what)
{
	size_t n = s ? strlen(s) : 0;
	if (n > max)
		return nkv_err(EINVAL, "%s: %s is %zu bytes, at most %zu", nkv_msg_type_name(t), what, n, max);
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return nkv_err(EINVAL, "%s: %s has a non-printable byte 0x%02x at %zu", nkv_msg_type_name(t),
				       what, (unsigned char)s[i], i);
	return 0;
}

static uint32_t ceil_blocks(uint32_t tokens)
{
	return (tokens + 511) / 512;
}

/* Per-type rules beyond the field formats. */
static int check_msg(const struct nkv_msg *m)
{
	const char *tn = nkv_msg_type_name(m->type);
	for (int i = 0; i < NKV_PROTO_NT; i++)
		if (!isfinite(m->t[i]) || m->t[i] < 0)
			return nkv_err(EINVAL, "%s: time t[%d] = %g is not a finite value >= 0", tn, i, m->t[i]);
	if (m->status > 0 || m->status < -4095)
		return nkv_err(EINVAL, "%s: status %d is not 0 or a negative errno", tn, m->status);
	switch (m->type) {
	case NKV_MSG_REGISTER:
		if (m->role < NKV_ROLE_PREFILL || m->role > NKV_ROLE_ADMIN)
			return nkv_err(EINVAL, "REGISTER: role %u is not 1..4 (prefill, decode, client, admin)",
				       m->role);
		if (m->role == NKV_ROLE_PREFILL || m->role == NKV_ROLE_DECODE) {
			if (!m->name[0])
				return nkv_err(EINVAL, "REGISTER: an agent needs a name (its topology instance)");
			if (!m->addr[0])
				return nkv_err(EINVAL, "REGISTER: an agent needs a data address");
			if (!m->kv_blocks || !m->block_tokens || !m->kv_bpt)
				return nkv_err(EINVAL, "REGISTER: kv_blocks, block_tokens and kv_bpt must be > 0");
			if (m->block_tokens > (1u << 20) || m->kv_bpt > (1ull << 32))
				return nkv_err(EINVAL, "REGISTER: block_tokens %u or kv_bpt %llu out of range",
					       m->block_tokens, (unsigned long long)m->kv_bpt);
		}
		break;
	case NKV_MSG_ERROR:
		if (m->code == 0 || m->code > 4095)
			return nkv_err(EINVAL, "ERROR: code %u is not an errno 1..4095", m->code);
		break;
	case NKV_MSG_HEARTBEAT:
		if (m->nadd > m->nids)
			return nkv_err(EINVAL, "HEARTBEAT: nadd %u exceeds the %u ids sent", m->nadd, m->nids);
		if (m->kv_used > m->kv_total)
			return nkv_err(EINVAL, "HEARTBEAT: kv_used %u exceeds kv_total %u", m->kv_used, m->kv_total);
		break;
	case NKV_MSG_SUBMIT:
	case NKV_MSG_DECODE_TASK:
	case NKV_MSG_PREFILL_TASK:
		if (m->input_len == 0 || m->input_len > NKV_PROTO_MAX_INPUT)
			return nkv_err(EINVAL, "%s: input_len %u is not 1..%u", tn, m->input_len, NKV_PROTO_MAX_INPUT);
		if (m->output_len == 0 || m->output_len > NKV_PROTO_MAX_OUTPUT)
			return nkv_err(EINVAL, "%s: output_len %u is not 1..%u", tn, m->output_len,
				       NKV_PROTO_MAX_OUTPUT);
		if (m->nids > ceil_blocks(m->input_len))
			return nkv_err(EINVAL, "%s: %u hash ids for %u input tokens (at most %u at 512 tokens a block)",
				       tn, m->nids, m->input_len, ceil_blocks(m->input_len));
		if (m->type == NKV_MSG_PREFILL_TASK && !m->addr[0])
			return nkv_err(EINVAL, "PREFILL_TASK: no decode data address");
		break;
	case NKV_MSG_PROBE:
		if (!m->addr[0] || m->bytes == 0 || m->bytes > (1ull << 32))
			return nkv_err(EINVAL, "PROBE: needs an address and 1 B .. 4 GiB (got %llu)",
				       (unsigned long long)m->bytes);
		break;
	case NKV_MSG_RECORD:
	case NKV_MSG_REGISTER_OK:
		if (m->tier > 3)
			return nkv_err(EINVAL, "RECORD: tier %u is not 0..3", m->tier);
		break;
	default:
		break;
	}
	if (m->tier > 3)
		return nkv_err(EINVAL, "%s: tier %u is not 0..3", tn, m->tier);
	return 0;
}

int nkv_msg_encode(const struct nkv_msg *m, struct nkv_buf *out)
{
	if (m->type <= 0 || m->type >= NKV_MSG__COUNT)
		return nkv_err(EINVAL, "message type %d is not 1..%d", m->type, NKV_MSG__COUNT - 1);
	int rc = check_msg(m);
	if (rc)
		return rc;
	if (check_str(m->token, NKV_PROTO_MAX_TOKEN, m->type, "token") ||
	    check_str(m->name, NKV_PROTO_MAX_NAME, m->type, "name") ||
	    check_str(m->addr, NKV_PROTO_MAX_ADDR, m->type, "addr") ||
	    check_str(m->text, NKV_PROTO_MAX_TEXT, m->type, "text"))
		return -EINVAL;
	if (m->nids > NKV_PROTO_MAX_IDS || m->nblocks > NKV_PROTO_MAX_IDS)
		return nkv_err(EINVAL, "%s: %u ids / %u blocks, at most %u", nkv_msg_type_name(m->type), m->nids,
			       m->nblocks, NKV_PROTO_MAX_IDS);
	/* Upper bound of the payload: strings + arrays + fixed fields. */
	size_t cap = NKV_PROTO_HDR + 256 + NKV_PROTO_NT * 8 + (m->text ? strlen(m->text) : 0) +
		     (size_t)m->nids * 8 + (size_t)m->nblocks * 4 + 3 * 80;
	if ((rc = buf_reserve(out, cap)))
		return rc;
	size_t start = out->len;
	put(out, NKV_PROTO_MAGIC, 4);
	put(out, NKV_PROTO_VERSION, 2);
	put(out, (uint64_t)m->type, 2);
	put(out, 0, 4); /* length, patched below */
	for (const uint8_t *f = specs[m->type]; *f != F_END; f++) {
		switch (*f) {
		case F_ROLE: put(out, m->role, 1); break;
		case F_STATUS: put(out, (uint32_t)m->status, 4); break;
		case F_CODE: put(out, m->code, 4); break;
		case F_AGENT: put(out, m->agent_id, 4); break;
		case F_PEER: put(out, m->peer, 4); break;
		case F_TIER: put(out, m->tier, 1); break;
		case F_INPUT: put(out, m->input_len, 4); break;
		case F_OUTPUT: put(out, m->output_len, 4); break;
		case F_FIRST: put(out, m->first, 4); break;
		case F_KVBLOCKS: put(out, m->kv_blocks, 4); break;
		case F_BLOCKTOK: put(out, m->block_tokens, 4); break;
		case F_KVUSED: put(out, m->kv_used, 4); break;
		case F_KVTOTAL: put(out, m->kv_total, 4); break;
		case F_RUNNING: put(out, m->running, 4); break;
		case F_QUEUED: put(out, m->queued, 4); break;
		case F_NTOKENS: put(out, m->ntokens, 4); break;
		case F_BOK: put(out, m->blocks_ok, 4); break;
		case F_BBAD: put(out, m->blocks_bad, 4); break;
		case F_REQ: put(out, m->req, 8); break;
		case F_BYTES: put(out, m->bytes, 8); break;
		case F_RTOK: put(out, m->running_tokens, 8); break;
		case F_QTOK: put(out, m->queued_tokens, 8); break;
		case F_BPT: put(out, m->kv_bpt, 8); break;
		case F_TOKEN: put_str(out, m->token); break;
		case F_NAME: put_str(out, m->name); break;
		case F_ADDR: put_str(out, m->addr); break;
		case F_TEXT: put_str(out, m->text); break;
		case F_NADD: put(out, m->nadd, 4); break;
		case F_IDS:
			put(out, m->nids, 4);
			for (uint32_t i = 0; i < m->nids; i++)
				put(out, m->ids[i], 8);
			break;
		case F_BLOCKS:
			put(out, m->nblocks, 4);
			for (uint32_t i = 0; i < m->nblocks; i++)
				put(out, m->blocks[i], 4);
			break;
		case F_T2: for (int i = 0; i < 2; i++) put_f64(out, m->t[i]); break;
		case F_T6: for (int i = 0; i < 6; i++) put_f64(out, m->t[i]); break;
		case F_T12: for (int i = 0; i < 12; i++) put_f64(out, m->t[i]); break;
		}
	}
	size_t plen = out->len - start - NKV_PROTO_HDR;
	if (plen > NKV_PROTO_MAX_PAYLOAD) {
		out->len = start;
		return nkv_err(EMSGSIZE, "%s: payload of %zu bytes exceeds %u", nkv_msg_type_name(m->type), plen,
			       NKV_PROTO_MAX_PAYLOAD);
	}
	for (int i = 0; i < 4; i++)
		out->p[start + 8 + i] = (uint8_t)(plen >> (8 * i));
	return 0;
}

/* ---- reader ----------------------------------------------------------- */

struct rd {
	const uint8_t *p;
	size_t len, off;
	enum nkv_msg_type type;
};

static int need(struct rd *r, size_t n, int f)
{
	if (r->len - r->off < n)
		return nkv_err(EBADMSG, "%s: payload ends inside field %s (%zu of %zu bytes left)",
			       nkv_msg_type_name(r->type), field_names[f], r->len - r->off, n);
	return 0;
}

static uint64_t get(struct rd *r, int n)
{
	uint64_t v = 0;
	for (int i = 0; i < n; i++)
		v |= (uint64_t)r->p[r->off + i] << (8 * i);
	r->off += n;
	return v;
}

static int get_int(struct rd *r, int f, int n, uint64_t *v)
{
	int rc = need(r, n, f);
	if (rc)
		return rc;
	*v = get(r, n);
	return 0;
}

static int get_str(struct rd *r, int f, char *dst, size_t max, char **heap)
{
	uint64_t n;
	int rc = get_int(r, f, 2, &n);
	if (rc)
		return rc;
	if (n > max)
		return nkv_err(EBADMSG, "%s: %s is %llu bytes, at most %zu", nkv_msg_type_name(r->type),
			       field_names[f], (unsigned long long)n, max);
	if ((rc = need(r, n, f)))
		return rc;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = r->p[r->off + i];
		if (c < 0x20 || c > 0x7e)
			return nkv_err(EBADMSG, "%s: %s has a non-printable byte 0x%02x at %zu",
				       nkv_msg_type_name(r->type), field_names[f], c, i);
	}
	if (heap) {
		*heap = malloc(n + 1);
		if (!*heap)
			return nkv_err(ENOMEM, "out of memory for a %llu-byte text", (unsigned long long)n);
		dst = *heap;
	}
	memcpy(dst, r->p + r->off, n);
	dst[n] = 0;
	r->off += n;
	return 0;
}

static int get_count(struct rd *r, int f, size_t item, uint32_t *n)
{
	uint64_t v;
	int rc = get_int(r, f, 4, &v);
	if (rc)
		return rc;
	if (v > NKV_PROTO_MAX_IDS)
		return nkv_err(EBADMSG, "%s: %s count %llu exceeds %u", nkv_msg_type_name(r->type), field_names[f],
			       (unsigned long long)v, NKV_PROTO_MAX_IDS);
	if ((rc = need(r, v * item, f)))
		return rc;
	*n = (uint32_t)v;
	return 0;
}

static int get_f64(struct rd *r, double *d)
{
	int rc = need(r, 8, F_T2);
	if (rc)
		return rc;
	uint64_t v = get(r, 8);
	memcpy(d, &v, sizeof(*d));
	return 0;
}

static int decode_payload(struct rd *r, struct nkv_msg *m)
{
	uint64_t v = 0;
	int rc = 0;
	for (const uint8_t *f = specs[m->type]; *f != F_END && !rc; f++) {
		switch (*f) {
		case F_ROLE: rc = get_int(r, *f, 1, &v); m->role = (uint8_t)v; break;
		case F_STATUS: rc = get_int(r, *f, 4, &v); m->status = (int32_t)(uint32_t)v; break;
		case F_CODE: rc = get_int(r, *f, 4, &v); m->code = (uint32_t)v; break;
		case F_AGENT: rc = get_int(r, *f, 4, &v); m->agent_id = (uint32_t)v; break;
		case F_PEER: rc = get_int(r, *f, 4, &v); m->peer = (uint32_t)v; break;
		case F_TIER: rc = get_int(r, *f, 1, &v); m->tier = (uint32_t)v; break;
		case F_INPUT: rc = get_int(r, *f, 4, &v); m->input_len = (uint32_t)v; break;
		case F_OUTPUT: rc = get_int(r, *f, 4, &v); m->output_len = (uint32_t)v; break;
		case F_FIRST: rc = get_int(r, *f, 4, &v); m->first = (uint32_t)v; break;
		case F_KVBLOCKS: rc = get_int(r, *f, 4, &v); m->kv_blocks = (uint32_t)v; break;
		case F_BLOCKTOK: rc = get_int(r, *f, 4, &v); m->block_tokens = (uint32_t)v; break;
		case F_KVUSED: rc = get_int(r, *f, 4, &v); m->kv_used = (uint32_t)v; break;
		case F_KVTOTAL: rc = get_int(r, *f, 4, &v); m->kv_total = (uint32_t)v; break;
		case F_RUNNING: rc = get_int(r, *f, 4, &v); m->running = (uint32_t)v; break;
		case F_QUEUED: rc = get_int(r, *f, 4, &v); m->queued = (uint32_t)v; break;
		case F_NTOKENS: rc = get_int(r, *f, 4, &v); m->ntokens = (uint32_t)v; break;
		case F_BOK: rc = get_int(r, *f, 4, &v); m->blocks_ok = (uint32_t)v; break;
		case F_BBAD: rc = get_int(r, *f, 4, &v); m->blocks_bad = (uint32_t)v; break;
		case F_NADD: rc = get_int(r, *f, 4, &v); m->nadd = (uint32_t)v; break;
		case F_REQ: rc = get_int(r, *f, 8, &m->req); break;
		case F_BYTES: rc = get_int(r, *f, 8, &m->bytes); break;
		case F_RTOK: rc = get_int(r, *f, 8, &m->running_tokens); break;
		case F_QTOK: rc = get_int(r, *f, 8, &m->queued_tokens); break;
		case F_BPT: rc = get_int(r, *f, 8, &m->kv_bpt); break;
		case F_TOKEN: rc = get_str(r, *f, m->token, NKV_PROTO_MAX_TOKEN, NULL); break;
		case F_NAME: rc = get_str(r, *f, m->name, NKV_PROTO_MAX_NAME, NULL); break;
		case F_ADDR: rc = get_str(r, *f, m->addr, NKV_PROTO_MAX_ADDR, NULL); break;
		case F_TEXT: rc = get_str(r, *f, NULL, NKV_PROTO_MAX_TEXT, &m->text); break;
		case F_IDS:
			if ((rc = get_count(r, *f, 8, &m->nids)) || !m->nids)
				break;
			if (!(m->ids = malloc((size_t)m->nids * 8))) {
				rc = nkv_err(ENOMEM, "out of memory for %u ids", m->nids);
				break;
			}
			for (uint32_t i = 0; i < m->nids; i++)
				m->ids[i] = get(r, 8);
			break;
		case F_BLOCKS:
			if ((rc = get_count(r, *f, 4, &m->nblocks)) || !m->nblocks)
				break;
			if (!(m->blocks = malloc((size_t)m->nblocks * 4))) {
				rc = nkv_err(ENOMEM, "out of memory for %u blocks", m->nblocks);
				break;
			}
			for (uint32_t i = 0; i < m->nblocks; i++)
				m->blocks[i] = (uint32_t)get(r, 4);
			break;
		case F_T2: for (int i = 0; i < 2 && !rc; i++) rc = get_f64(r, &m->t[i]); break;
		case F_T6: for (int i = 0; i < 6 && !rc; i++) rc = get_f64(r, &m->t[i]); break;
		case F_T12: for (int i = 0; i < 12 && !rc; i++) rc = get_f64(r, &m->t[i]); break;
		}
	}
	if (rc)
		return rc;
	if (r->off != r->len)
		return nkv_err(EBADMSG, "%s: %zu trailing bytes after the last field", nkv_msg_type_name(m->type),
			       r->len - r->off);
	if ((rc = check_msg(m)))
		return -EBADMSG;
	return 0;
}

int nkv_msg_decode(const uint8_t *buf, size_t len, struct nkv_msg *m, size_t *used)
{
	memset(m, 0, sizeof(*m));
	*used = 0;
	if (len < NKV_PROTO_HDR) {
		/* Reject a wrong magic as early as its bytes arrive. */
		for (size_t i = 0; i < len && i < 4; i++)
			if (buf[i] != (uint8_t)(NKV_PROTO_MAGIC >> (8 * i)))
				return nkv_err(EBADMSG, "bad magic: not a netkv control frame");
		return 0;
	}
	struct rd r = { .p = buf, .len = len };
	uint32_t magic = (uint32_t)get(&r, 4);
	uint32_t ver = (uint32_t)get(&r, 2);
	uint32_t type = (uint32_t)get(&r, 2);
	uint32_t plen = (uint32_t)get(&r, 4);
	if (magic != NKV_PROTO_MAGIC)
		return nkv_err(EBADMSG, "bad magic 0x%08x: not a netkv control frame", magic);
	if (ver != NKV_PROTO_VERSION)
		return nkv_err(EPROTONOSUPPORT, "protocol version %u, this build speaks %u", ver, NKV_PROTO_VERSION);
	if (type == 0 || type >= NKV_MSG__COUNT)
		return nkv_err(EBADMSG, "unknown message type %u", type);
	if (plen > NKV_PROTO_MAX_PAYLOAD)
		return nkv_err(EMSGSIZE, "%s: payload length %u exceeds %u", nkv_msg_type_name((int)type), plen,
			       NKV_PROTO_MAX_PAYLOAD);
	if (len - NKV_PROTO_HDR < plen) {
		*used = NKV_PROTO_HDR + (size_t)plen;
		return 0;
	}
	m->type = (enum nkv_msg_type)type;
	r.len = NKV_PROTO_HDR + (size_t)plen;
	int rc = decode_payload(&r, m);
	if (rc) {
		nkv_msg_clear(m);
		return rc;
	}
	*used = r.len;
	return 1;
}
