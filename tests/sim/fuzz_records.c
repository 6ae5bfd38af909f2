/*
 * libFuzzer entry for the per-request record reader (nkv_rec_parse), what
 * `netkv sim validate --replay FILE` reads. Each input is read against a
 * small topology and without one; whatever loads must satisfy the reader's
 * promises, write back and read again to the same rows, and (a few rows at
 * most, to keep the rate up) go through the validation's simulation as the
 * CLI would run it. Replayed over corpus_records/ by
 * test_sim_records_fuzz_replay (nkv_add_fuzz).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netkv_sim.h"
#include "nkv_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 4 GPUs on 2 hosts under one leaf: h0g0 h0g1 h1g0 h1g1. */
static const char topo_doc[] =
	"{\"format\": \"netkv-topology/1\", \"name\": \"fz\", \"intra_host\": {\"GBps\": 450, \"latency_us\": 1},"
	" \"switches\": [{\"name\": \"leaf0\", \"tier\": \"leaf\"}], \"hosts\": ["
	"  {\"name\": \"h0\", \"leaf\": \"leaf0\", \"gpus\": 2, \"nics\": [{\"name\": \"h0n0\", \"gbps\": 8, \"gpus\": [0, 1]}]},"
	"  {\"name\": \"h1\", \"leaf\": \"leaf0\", \"gpus\": 2, \"nics\": [{\"name\": \"h1n0\", \"gbps\": 8, \"gpus\": [0, 1]}]}]}";

/* An error is one printable line; the reader's name the input first. */
static void check_error(int ret, const char *prefix)
{
	const char *e = nkv_last_error();

	if (ret != -EINVAL && ret != -ENOMEM && ret != -ERANGE)
		abort();
	if (prefix && strncmp(e, prefix, strlen(prefix)))
		abort();
	for (const char *s = e; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			abort();
}

static bool dbl_ok(double d)
{
	return isnan(d) || (isfinite(d) && d >= 0);
}

static bool name_ok(const char *s, size_t size)
{
	if (strnlen(s, size) >= size)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == ',' || *s == '"')
			return false;
	return true;
}

static void check_rows(const struct nkv_rec_row *rows, size_t n, const struct nkv_topo *t)
{
	if (!n)
		abort();
	for (size_t i = 0; i < n; i++) {
		const struct nkv_rec_row *r = &rows[i];
		const double d[] = { r->queue_s, r->prefill_s, r->transfer_s, r->xfer_s, r->decode_wait_s,
				     r->first_step_s, r->ttft_s, r->tbt_mean_s, r->tbt_p99_s, r->e2e_s,
				     r->arrival_s, r->est_transfer_s, r->tbt_max_s };

		if (r->input > NKV_TRACE_MAX_TOKENS || r->output > NKV_TRACE_MAX_TOKENS ||
		    r->tokens > NKV_TRACE_MAX_TOKENS)
			abort();
		if (r->status < NKV_REC_ST_OK || r->status > NKV_REC_ST_LOST || r->tier < -1 || r->tier >= NKV_TIERS ||
		    r->blocks_ok < -1 || r->blocks_bad < -1 || r->held_blocks < -1 || (r->slo_met != 0 && r->slo_met != 1))
			abort();
		for (size_t k = 0; k < sizeof(d) / sizeof(d[0]); k++)
			if (!dbl_ok(d[k]))
				abort();
		if (!name_ok(r->prefill, sizeof(r->prefill)) || !name_ok(r->decode, sizeof(r->decode)) ||
		    strnlen(r->reason, sizeof(r->reason)) >= sizeof(r->reason))
			abort();
		if (r->status == NKV_REC_ST_OK &&
		    (isnan(r->transfer_s) || isnan(r->xfer_s) || isnan(r->ttft_s) || isnan(r->arrival_s) ||
		     !r->prefill[0] || !r->decode[0]))
			abort();
		if (t && ((r->prefill[0] && nkv_topo_find(t, r->prefill) < 0) ||
			  (r->decode[0] && nkv_topo_find(t, r->decode) < 0)))
			abort();
		for (size_t j = 0; j < i && n <= 1000; j++)
			if (rows[j].req == r->req)
				abort();
	}
}

/* Rows as the writer puts them; malloc'ed text. */
static char *write_rows(const struct nkv_rec_row *rows, size_t n, size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);

	if (!f)
		abort();
	nkv_rec_write_header(f);
	for (size_t i = 0; i < n; i++)
		nkv_rec_write_row(f, &rows[i]);
	if (fclose(f))
		abort();
	return buf;
}

/* What the reader took, the writer writes so that it reads back the same. */
static void round_trip(const struct nkv_rec_row *rows, size_t n)
{
	struct nkv_rec_row *back;
	size_t len, len2, nb;
	char *a = write_rows(rows, n, &len), *b;

	if (nkv_rec_parse(a, len, "fz-written", NULL, &back, &nb) || nb != n) {
		fprintf(stderr, "written records do not read back: %s\n%s", nkv_last_error(), a);
		abort();
	}
	b = write_rows(back, nb, &len2);
	if (len != len2 || memcmp(a, b, len)) {
		fprintf(stderr, "records changed on a second round trip:\n%s---\n%s", a, b);
		abort();
	}
	free(a);
	free(b);
	free(back);
}

/* The rest of `netkv sim validate` on what the reader let through, as the
 * CLI sets it up. Records it must refuse go through it whatever their size;
 * the others only with small figures, as a simulation of hours of transfers
 * or decoding takes seconds (bounded by the simulator's ticks). */
static void simulate(const struct nkv_rec_row *rows, size_t n, const struct nkv_topo *t)
{
	struct nkv_sim_config c;
	struct nkv_validation *v = NULL;
	bool refuse = false, small = n <= 8;
	int ret;

	for (size_t i = 0; i < n; i++) {
		const struct nkv_rec_row *r = &rows[i];

		/* UINT64_MAX bytes would read as "the model's bytes" */
		if (r->status == NKV_REC_ST_OK && (!r->input || !r->output || r->bytes == UINT64_MAX))
			refuse = true;
		if (r->bytes > (1u << 30) || r->input > 16384 || r->output > 1024 || r->arrival_s > 100)
			small = false;
	}
	if (!refuse && !small)
		return;
	nkv_sim_defaults(&c);
	c.topo = t;
	c.prefill_max_tokens = 1;
	c.prefill_cache_blocks = 512;
	c.decode_cache_blocks = 512;
	c.decode_kv_tokens = 512 * 512;
	c.probes = false;
	if (nkv_perf_preset("llama3-8b", "h100", &c.perf))
		abort();
	ret = nkv_sim_validate(&c, rows, n, NULL, "fz", &v);
	if (ret) {
		check_error(ret, NULL);
		return;
	}
	if (refuse || v->compared < 1 || v->compared > n)
		abort();
	nkv_validation_free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct nkv_topo *t;
	struct nkv_rec_row *rt = NULL, *rn = NULL;
	size_t nt = 0, nn = 0;
	int ret_t, ret_n;

	if (!t && nkv_topo_parse(topo_doc, sizeof(topo_doc) - 1, &t))
		abort();
	ret_t = nkv_rec_parse((const char *)data, size, "fz", t, &rt, &nt);
	if (ret_t)
		check_error(ret_t, "fz:");
	ret_n = nkv_rec_parse((const char *)data, size, "fz", NULL, &rn, &nn);
	if (ret_n)
		check_error(ret_n, "fz:");
	/* the topology only adds a check */
	if (!ret_t && (ret_n || nn != nt))
		abort();
	if (!ret_t) {
		check_rows(rt, nt, t);
		simulate(rt, nt, t);
	}
	if (!ret_n) {
		check_rows(rn, nn, NULL);
		round_trip(rn, nn);
	}
	free(rt);
	free(rn);
	return 0;
}
