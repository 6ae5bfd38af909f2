/* netkv sim validate: forced assignments against a hand-computed case,
 * the record format round trip (simulated records validated against
 * themselves give ~0 error; a perturbed column shows up), malformed record
 * files rejected with file, line and column, and the CLI round trip
 * (`netkv sim run --csv` fed to `netkv sim validate`). */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "netkv_sim.h"
#include "nkv_util.h"
#include "sim_cli.h"

static char tmpdir[64];

static void near(double got, double want, double tol)
{
	if (fabs(got - want) > tol)
		fail_msg("got %.9g, want %.9g (+- %g)", got, want, tol);
}

static const char *tmp(const char *name)
{
	static char buf[16][256];
	static int k;
	k = (k + 1) % 16;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", tmpdir, name);
	return buf[k];
}

/* 4 GPUs, 2 per host, ONE 8 Gb/s NIC per host (so h0's two GPUs share its
 * uplink), one leaf, 0.5 us per hop. */
static struct nkv_topo *small_tree(void)
{
	const char *doc = "{\"format\": \"netkv-topology/1\", \"name\": \"small\","
			  " \"intra_host\": {\"GBps\": 450, \"latency_us\": 1},"
			  " \"switches\": [{\"name\": \"leaf0\", \"tier\": \"leaf\"}],"
			  " \"hosts\": ["
			  "  {\"name\": \"h0\", \"leaf\": \"leaf0\", \"gpus\": 2, \"nics\": [{\"name\": \"h0n0\", \"gbps\": 8, \"latency_us\": 0.5, \"gpus\": [0, 1]}]},"
			  "  {\"name\": \"h1\", \"leaf\": \"leaf0\", \"gpus\": 2, \"nics\": [{\"name\": \"h1n0\", \"gbps\": 8, \"latency_us\": 0.5, \"gpus\": [0, 1]}]}]}";
	struct nkv_topo *t;
	assert_int_equal(nkv_topo_parse(doc, strlen(doc), &t), 0);
	return t;
}

static int inst(const struct nkv_topo *t, const char *name)
{
	int i = nkv_topo_find(t, name);
	assert_true(i >= 0);
	return i;
}

/* Two requests at t = 0, 100 input tokens, 1 output token, prefill 1e-4
 * s/token (10 ms), decode iteration 5 ms, 1 MB each forced from h0's two
 * GPUs to h1's, crossed over (h0g0 -> h1g1, h0g1 -> h1g0).
 *   shared: both flows on h0n0 up and on different NIC downs: 0.5 GB/s
 *           each -> 2 ms + 2 hops x 0.5 us; first token at 10 + 2.001 + 5.
 *   paced:  each alone at 1 GB/s: 1.001 ms.
 *   setup 3 ms is added (5.001 / 4.001 ms); a floor of 3 ms shows only
 *   where the flow is quicker (paced: 3 ms; shared: 2.001 ms stays). */
/* The small runs' simulator: prefill 1e-4 s/token, decode 5 ms, two forced requests. */
static void small_config(struct nkv_sim_config *c, const struct nkv_topo *t, const struct nkv_sim_assign *as)
{
	nkv_sim_defaults(c);
	c->topo = t;
	c->perf.prefill_a = 0, c->perf.prefill_b = 1e-4, c->perf.prefill_c = 0;
	c->perf.decode_a = 5e-3, c->perf.decode_b = 0, c->perf.decode_c = 0;
	c->probes = false;
	c->assign = as;
	c->nassign = 2;
}

static void run_small_conn(bool paced, double setup, double floor_s, double conn, double want_xfer)
{
	struct nkv_topo *t = small_tree();
	const char *tr_doc = "{\"timestamp\": 0, \"input_length\": 100, \"output_length\": 1, \"hash_ids\": [11]}\n"
			     "{\"timestamp\": 0, \"input_length\": 100, \"output_length\": 1, \"hash_ids\": [22]}\n";
	struct nkv_trace *tr;
	struct nkv_sim_config c;
	struct nkv_sim_result *r;
	struct nkv_sim_assign as[2] = {
		{ .prefill = (uint32_t)inst(t, "h0g0"), .decode = (uint32_t)inst(t, "h1g1"), .bytes = 1000000, .arrival_s = 0 },
		{ .prefill = (uint32_t)inst(t, "h0g1"), .decode = (uint32_t)inst(t, "h1g0"), .bytes = 1000000, .arrival_s = -1 },
	};

	assert_int_equal(nkv_trace_parse(tr_doc, strlen(tr_doc), "small", NULL, &tr), 0);
	small_config(&c, t, as);
	c.isolated_flows = paced;
	c.xfer_setup_s = setup;
	c.xfer_floor_s = floor_s;
	c.xfer_conn_s = conn;
	assert_int_equal(nkv_sim_run(&c, tr, &r), 0);
	assert_int_equal(r->n, 2);
	for (int i = 0; i < 2; i++) {
		const struct nkv_sim_record *x = &r->recs[i];
		assert_int_equal(x->prefill, as[i].prefill);
		assert_int_equal(x->decode, as[i].decode);
		assert_int_equal(x->kv_bytes, 1000000);
		assert_int_equal(x->tier, NKV_TIER_LEAF);
		near(x->prefill_s, 0.010, 1e-9);
		near(x->transfer_s, want_xfer, 1e-9);
		near(x->ttft_s, 0.010 + want_xfer + 0.005, 1e-9);
	}
	nkv_sim_result_free(r);
	nkv_trace_free(tr);
	nkv_topo_free(t);
}

static void run_small(bool paced, double setup, double floor_s, double want_xfer)
{
	run_small_conn(paced, setup, floor_s, 0, want_xfer);
}

/* A connection's first push waits xfer_conn_s before its bytes leave; a later
 * push on the same pair does not. Two requests h0g0 -> h1g0, 100 ms apart,
 * each alone at 1 GB/s: 2 ms + 1.001 ms, then 1.001 ms. */
static void conn_first_push(void **st)
{
	(void)st;
	struct nkv_topo *t = small_tree();
	const char *tr_doc = "{\"timestamp\": 0, \"input_length\": 100, \"output_length\": 1, \"hash_ids\": [11]}\n"
			     "{\"timestamp\": 100, \"input_length\": 100, \"output_length\": 1, \"hash_ids\": [22]}\n";
	struct nkv_trace *tr;
	struct nkv_sim_config c;
	struct nkv_sim_result *r;
	struct nkv_sim_assign as[2] = {
		{ .prefill = (uint32_t)inst(t, "h0g0"), .decode = (uint32_t)inst(t, "h1g0"), .bytes = 1000000, .arrival_s = -1 },
		{ .prefill = (uint32_t)inst(t, "h0g0"), .decode = (uint32_t)inst(t, "h1g0"), .bytes = 1000000, .arrival_s = -1 },
	};

	assert_int_equal(nkv_trace_parse(tr_doc, strlen(tr_doc), "small", NULL, &tr), 0);
	small_config(&c, t, as);
	c.xfer_conn_s = 2e-3;
	assert_int_equal(nkv_sim_run(&c, tr, &r), 0);
	assert_int_equal(r->n, 2);
	near(r->recs[0].transfer_s, 2e-3 + 1e-3 + 1e-6, 1e-9);
	near(r->recs[1].transfer_s, 1e-3 + 1e-6, 1e-9);
	nkv_sim_result_free(r);
	nkv_trace_free(tr);
	nkv_topo_free(t);
}

static void forced_small(void **st)
{
	(void)st;
	run_small_conn(false, 0, 0, 1e-3, 1e-3 + 2e-3 + 1e-6); /* both pushes first on their pair */
	run_small(false, 0, 0, 2e-3 + 1e-6);
	run_small(true, 0, 0, 1e-3 + 1e-6);
	run_small(false, 3e-3, 0, 2e-3 + 1e-6 + 3e-3);
	run_small(true, 3e-3, 0, 1e-3 + 1e-6 + 3e-3);
	run_small(true, 0, 3e-3, 3e-3);
	run_small(false, 0, 1.5e-3, 2e-3 + 1e-6);
	run_small(false, 1e-3, 3.5e-3, 3.5e-3);
}

/* A forced instance that is both prefill and decode, or beyond the topology: clear errors. */
static void forced_bad(void **st)
{
	(void)st;
	struct nkv_topo *t = small_tree();
	const char *tr_doc = "{\"timestamp\": 0, \"input_length\": 100, \"output_length\": 1, \"hash_ids\": [1]}\n"
			     "{\"timestamp\": 0, \"input_length\": 100, \"output_length\": 1, \"hash_ids\": [2]}\n";
	struct nkv_trace *tr;
	struct nkv_sim_config c;
	struct nkv_sim_result *r = NULL;
	struct nkv_sim_assign as[2] = { { 0, 2, UINT64_MAX, -1 }, { 2, 3, UINT64_MAX, -1 } };

	assert_int_equal(nkv_trace_parse(tr_doc, strlen(tr_doc), "bad", NULL, &tr), 0);
	nkv_sim_defaults(&c);
	c.topo = t;
	c.assign = as;
	c.nassign = 2;
	assert_int_equal(nkv_sim_run(&c, tr, &r), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "both prefill and decode"));
	as[1] = (struct nkv_sim_assign){ 1, 9, UINT64_MAX, -1 };
	assert_int_equal(nkv_sim_run(&c, tr, &r), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "beyond the topology"));
	as[1] = (struct nkv_sim_assign){ 1, 3, UINT64_MAX, -1 };
	c.nassign = 1;
	assert_int_equal(nkv_sim_run(&c, tr, &r), -EINVAL);
	assert_null(r);
	nkv_trace_free(tr);
	nkv_topo_free(t);
}

static struct nkv_topo *tree16(void)
{
	struct nkv_fat_tree_params p;
	struct nkv_topo *t;

	nkv_fat_tree_defaults(&p);
	p.gpus = 16;
	p.gpus_per_host = 4;
	p.nics_per_host = 4;
	p.oversub_leaf = 2;
	p.oversub_spine = 4;
	p.nic_gbps = 100;
	assert_int_equal(nkv_topo_fat_tree(&p, &t), 0);
	return t;
}

/* Simulated records written in the record format, read back and validated
 * against themselves with the same configuration: ~0 error. Perturbing a
 * measured column (xfer_s x 1.25) gives -20% on transfer; perturbing an
 * input column (bytes x 2) makes the prediction move. */
static void round_trip(void **st)
{
	(void)st;
	struct nkv_topo *t = tree16();
	struct nkv_tracegen_params g;
	struct nkv_trace *tr;
	struct nkv_sim_config c;
	struct nkv_sim_result *r;
	struct nkv_rec_row *rows;
	struct nkv_validation *v;
	size_t n;

	nkv_tracegen_defaults(&g);
	g.requests = 300;
	g.rate = 10;
	g.seed = 3;
	assert_int_equal(nkv_tracegen(&g, &tr), 0);
	nkv_sim_defaults(&c);
	c.topo = t;
	c.sched.policy = "netkv";
	assert_int_equal(nkv_sim_run(&c, tr, &r), 0);
	assert_int_equal(nkv_sim_write_csv(r, t, tmp("sim.csv")), 0);
	assert_int_equal(nkv_rec_read(tmp("sim.csv"), t, &rows, &n), 0);
	assert_int_equal(n, 300);
	assert_int_equal(nkv_topo_find(t, rows[5].decode), (int)r->recs[5].decode);
	assert_int_equal(nkv_topo_find(t, rows[5].prefill), (int)r->recs[5].prefill);
	assert_int_equal(rows[5].bytes, r->recs[5].kv_bytes);

	assert_int_equal(nkv_sim_validate(&c, rows, n, tr, "sim.csv", &v), 0);
	assert_int_equal(v->compared, 300);
	for (int q = 0; q < NKV_VQ_N; q++) {
		assert_true(v->q[q].n > 250);
		if (v->q[q].median_abs > 1e-3 || v->q[q].p90_abs > 1e-3)
			fail_msg("%s: median %g p90 %g, want ~0", nkv_vq_name(q), v->q[q].median_abs, v->q[q].p90_abs);
	}
	nkv_validation_free(v);

	/* measured transfer 25% longer: every request under-predicted by 20% */
	for (size_t i = 0; i < n; i++)
		rows[i].xfer_s *= 1.25;
	assert_int_equal(nkv_sim_validate(&c, rows, n, tr, "sim.csv", &v), 0);
	near(v->q[NKV_VQ_TRANSFER].median_abs, 0.2, 2e-3);
	near(v->q[NKV_VQ_TRANSFER].mean_signed, -0.2, 2e-3);
	assert_true(v->q[NKV_VQ_TTFT].median_abs < 1e-3); /* TTFT column untouched */
	nkv_validation_free(v);
	for (size_t i = 0; i < n; i++)
		rows[i].xfer_s /= 1.25;

	/* twice the bytes in: the simulated transfers take longer */
	for (size_t i = 0; i < n; i++)
		rows[i].bytes *= 2;
	assert_int_equal(nkv_sim_validate(&c, rows, n, tr, "sim.csv", &v), 0);
	assert_true(v->q[NKV_VQ_TRANSFER].mean_signed > 0.5);
	assert_true(v->q[NKV_VQ_TTFT].mean_signed > 0);
	nkv_validation_free(v);

	/* a trace whose lengths differ: refused */
	rows[0].bytes /= 2;
	rows[0].input += 1;
	assert_int_equal(nkv_sim_validate(&c, rows, n, tr, "sim.csv", &v), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "wrong --trace"));

	free(rows);
	nkv_sim_result_free(r);
	nkv_trace_free(tr);
	nkv_topo_free(t);
}

/* ---- malformed record files ----------------------------------------------- */

static char header[1024], good[1024];

static void make_rows(void)
{
	struct nkv_rec_row w;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	nkv_rec_write_header(f);
	nkv_rec_row_init(&w);
	w.req = 0, w.line = 1, w.input = 600, w.output = 4, w.status = NKV_REC_ST_OK, w.tier = 1, w.bytes = 131072;
	w.transfer_s = 0.002, w.xfer_s = 0.0015, w.ttft_s = 0.02, w.arrival_s = 0;
	snprintf(w.prefill, sizeof(w.prefill), "h0g0");
	snprintf(w.decode, sizeof(w.decode), "h1g0");
	snprintf(w.reason, sizeof(w.reason), "said \"hi\", twice");
	nkv_rec_write_row(f, &w);
	fclose(f);
	char *nl = strchr(buf, '\n');
	snprintf(header, sizeof(header), "%.*s", (int)(nl - buf), buf);
	snprintf(good, sizeof(good), "%.*s", (int)(strlen(nl + 1) - 1), nl + 1);
	free(buf);
}

/* good row with field `col` (0-based) replaced by val */
static const char *row_with(const char *with, int col)
{
	static char out[1024];
	char *p = good;
	int k = 0;

	out[0] = 0;
	while (k < col) {
		p = strchr(p, ',') + 1;
		k++;
	}
	char *end = strchr(p, ',');
	snprintf(out, sizeof(out), "%.*s%s%s", (int)(p - good), good, with, end ? end : "");
	return out;
}

static int col_of(const char *name)
{
	char h[1024], *save = NULL;
	int k = 0;
	snprintf(h, sizeof(h), "%s", header);
	for (char *tok = strtok_r(h, ",", &save); tok; tok = strtok_r(NULL, ",", &save), k++)
		if (!strcmp(tok, name))
			return k;
	fail_msg("no column %s", name);
	return -1;
}

static void expect_bad(const struct nkv_topo *t, const char *content, const char *want1, const char *want2)
{
	const char *path = tmp("bad.csv");
	FILE *f = fopen(path, "w");
	struct nkv_rec_row *rows = NULL;
	size_t n = 0;

	assert_non_null(f);
	fputs(content, f);
	fclose(f);
	int rc = nkv_rec_read(path, t, &rows, &n);
	if (rc != -EINVAL)
		fail_msg("accepted (%d) a file that should fail with '%s':\n%s", rc, want1, content);
	assert_null(rows);
	if (!strstr(nkv_last_error(), want1) || (want2 && !strstr(nkv_last_error(), want2)))
		fail_msg("error '%s' lacks '%s' / '%s'", nkv_last_error(), want1, want2 ? want2 : "");
}

static void malformed(void **st)
{
	(void)st;
	struct nkv_topo *t = tree16();
	char doc[4096];
	struct nkv_rec_row *rows;
	size_t n;

	make_rows();
	/* the good one reads, quotes and all */
	snprintf(doc, sizeof(doc), "%s\n%s\n", header, good);
	FILE *f = fopen(tmp("good.csv"), "w");
	fputs(doc, f);
	fclose(f);
	if (nkv_rec_read(tmp("good.csv"), t, &rows, &n))
		fail_msg("%s", nkv_last_error());
	assert_int_equal(n, 1);
	assert_string_equal(rows[0].reason, "said \"hi\", twice");
	assert_string_equal(rows[0].decode, "h1g0");
	near(rows[0].xfer_s, 0.0015, 1e-12);
	assert_true(isnan(rows[0].tbt_p99_s)); /* empty = unknown */
	free(rows);

	expect_bad(t, "", "empty file", NULL);
	snprintf(doc, sizeof(doc), "%s\n", header);
	expect_bad(t, doc, "no records", NULL);
	/* a header without the decode column */
	char h2[1024];
	snprintf(h2, sizeof(h2), "%s", header);
	char *d = strstr(h2, ",decode,");
	memmove(d, d + 7, strlen(d + 7) + 1);
	snprintf(doc, sizeof(doc), "%s\n%s\n", h2, good);
	expect_bad(t, doc, ":1:", "no column decode");
	/* a bad number on line 3 */
	snprintf(doc, sizeof(doc), "%s\n%s\n%s\n", header, good, row_with("1.5x", col_of("ttft_s")));
	expect_bad(t, doc, "bad.csv:3:", "column ttft_s");
	snprintf(doc, sizeof(doc), "%s\n%s\n", header, row_with("-0.1", col_of("xfer_s")));
	expect_bad(t, doc, "bad.csv:2:", "column xfer_s");
	/* an instance the topology does not have */
	snprintf(doc, sizeof(doc), "%s\n%s\n", header, row_with("h99g0", col_of("decode")));
	expect_bad(t, doc, "bad.csv:2:", "h99g0");
	/* an empty required field in an ok record; a bad status; too few fields; a duplicate */
	snprintf(doc, sizeof(doc), "%s\n%s\n", header, row_with("", col_of("arrival_s")));
	expect_bad(t, doc, "bad.csv:2:", "column arrival_s");
	snprintf(doc, sizeof(doc), "%s\n%s\n", header, row_with("done", col_of("status")));
	expect_bad(t, doc, "bad.csv:2:", "column status");
	snprintf(doc, sizeof(doc), "%s\n1,2,3\n", header);
	expect_bad(t, doc, "bad.csv:2:", "fields");
	snprintf(doc, sizeof(doc), "%s\n%s\n%s\n", header, good, good);
	expect_bad(t, doc, "bad.csv:3:", "already at line 2");
	snprintf(doc, sizeof(doc), "%s\n%.*s\n", header, (int)strlen(good) - 1, good); /* reason's closing quote gone */
	expect_bad(t, doc, "bad.csv:2:", "quote");
	/* lengths past a trace's; a control character in a field stays out of the message */
	snprintf(doc, sizeof(doc), "%s\n%s\n", header, row_with("4294967295", col_of("input")));
	expect_bad(t, doc, "bad.csv:2:", "column input: 4294967295 is more than 16777216");
	snprintf(doc, sizeof(doc), "%s\n%s\n", header, row_with("16777217", col_of("output")));
	expect_bad(t, doc, "bad.csv:2:", "column output");
	snprintf(doc, sizeof(doc), "%s\n%s\n", header, row_with("h1\x1b[2Jg0", col_of("decode")));
	expect_bad(t, doc, "bad.csv:2:", "column decode: 'h1?[2Jg0' is not an instance name");
	nkv_topo_free(t);
}

/* `netkv sim run --csv` writes a trace's own times (timestamp / 1000 / rate
 * scale, up to 2^53 ms): epoch milliseconds slowed ten times are 1.7e10 s.
 * Such a file validates, to the predictions of the same arrivals from 0
 * (and 1e300, one row, is no longer every predicted time 0). */
static void absolute_arrivals(void **st)
{
	(void)st;
	static const char *const t0s[] = { "20000000000", "1e300" };
	struct nkv_topo *t = tree16();
	struct nkv_sim_config c;
	struct nkv_validation *v0 = NULL, *v = NULL;
	struct nkv_rec_row *rows;
	char doc[4096];
	size_t n;

	make_rows();
	nkv_sim_defaults(&c);
	c.topo = t;
	snprintf(doc, sizeof(doc), "%s\n%s\n", header, good);
	assert_int_equal(nkv_rec_parse(doc, strlen(doc), "r.csv", t, &rows, &n), 0);
	assert_int_equal(nkv_sim_validate(&c, rows, n, NULL, "r.csv", &v0), 0);
	free(rows);
	for (size_t i = 0; i < sizeof(t0s) / sizeof(t0s[0]); i++) {
		snprintf(doc, sizeof(doc), "%s\n%s\n", header, row_with(t0s[i], col_of("arrival_s")));
		if (nkv_rec_parse(doc, strlen(doc), "r.csv", t, &rows, &n))
			fail_msg("arrival_s %s refused: %s", t0s[i], nkv_last_error());
		assert_int_equal(nkv_sim_validate(&c, rows, n, NULL, "r.csv", &v), 0);
		for (int q = 0; q < NKV_VQ_N; q++)
			assert_true(v->q[q].pred_p50_s == v0->q[q].pred_p50_s && v->q[q].pred_p50_s > 0);
		nkv_validation_free(v);
		free(rows);
	}
	nkv_validation_free(v0);
	nkv_topo_free(t);
}

/* Records the reader takes but the validation must not: an ok request with
 * no input, and UINT64_MAX bytes, which a forced assignment reads as "the
 * model's bytes" (the measured figure was silently replaced). */
static void validate_refuses(void **st)
{
	(void)st;
	struct nkv_topo *t = tree16();
	struct nkv_sim_config c;
	struct nkv_validation *v = NULL;
	struct nkv_rec_row *rows;
	char doc[4096];
	size_t n;

	make_rows();
	nkv_sim_defaults(&c);
	c.topo = t;
	snprintf(doc, sizeof(doc), "%s\n%s\n", header, good);
	assert_int_equal(nkv_rec_parse(doc, strlen(doc), "r.csv", t, &rows, &n), 0);
	assert_int_equal(nkv_sim_validate(&c, rows, n, NULL, "r.csv", &v), 0);
	nkv_validation_free(v);
	rows[0].bytes = UINT64_MAX;
	assert_int_equal(nkv_sim_validate(&c, rows, n, NULL, "r.csv", &v), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "r.csv:2: column bytes"));
	rows[0].bytes = 131072;
	rows[0].input = 0;
	assert_int_equal(nkv_sim_validate(&c, rows, n, NULL, "r.csv", &v), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "r.csv:2: column input: a finished request with 0 input tokens"));
	assert_null(v);
	free(rows);
	nkv_topo_free(t);
}

/* ---- the CLI: netkv sim run --csv fed to netkv sim validate ------------------ */

static int sh(const char *cmd)
{
	int rc = system(cmd);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void cli_round_trip(void **st)
{
	(void)st;
	const char *b = getenv("NKV_BUILD");
	char cmd[4096], nk[600];
	json_error_t je;

	if (!b)
		skip();
	snprintf(nk, sizeof(nk), "%s/netkv", b);
	if (access(nk, X_OK))
		skip();
	snprintf(cmd, sizeof(cmd),
		 "%s topo gen --preset fat-tree --gpus 16 -o %s >/dev/null && "
		 "%s trace gen --profile chatbot --requests 200 --rate 10 --seed 5 -o %s >/dev/null && "
		 "%s sim run --topo %s --trace %s --csv %s --json >/dev/null",
		 nk, tmp("t.json"), nk, tmp("tr.jsonl"), nk, tmp("t.json"), tmp("tr.jsonl"), tmp("run.csv"));
	assert_int_equal(sh(cmd), 0);
	/* the simulator's own defaults: batched prefill, its cache sizes and KV capacity */
	const char *same = "--prefill-batch-tokens 16384 --prefill-cache-blocks 2048 --decode-cache-blocks 0 "
			   "--decode-kv-tokens 0";
	snprintf(cmd, sizeof(cmd), "%s sim validate --replay %s --topo %s --trace %s %s --json > %s", nk,
		 tmp("run.csv"), tmp("t.json"), tmp("tr.jsonl"), same, tmp("v.json"));
	assert_int_equal(sh(cmd), 0);
	json_t *j = json_load_file(tmp("v.json"), 0, &je);
	assert_non_null(j);
	json_t *q = json_object_get(json_object_get(j, "quantities"), "transfer");
	assert_int_equal(json_integer_value(json_object_get(q, "n")), 200);
	assert_true(json_real_value(json_object_get(q, "median_abs_rel_err")) < 1e-3);
	assert_true(json_real_value(json_object_get(q, "p90_abs_rel_err")) < 1e-3);
	q = json_object_get(json_object_get(j, "quantities"), "ttft");
	assert_true(json_real_value(json_object_get(q, "median_abs_rel_err")) < 1e-3);
	assert_true(json_is_true(json_object_get(j, "transfer_goal_met")));
	json_decref(j);

	/* compute twice as slow as the run had it: TTFT is over-predicted, transfers are not */
	snprintf(cmd, sizeof(cmd), "%s sim validate --replay %s --topo %s --trace %s %s --time-scale 2 --json > %s", nk,
		 tmp("run.csv"), tmp("t.json"), tmp("tr.jsonl"), same, tmp("v.json"));
	assert_int_equal(sh(cmd), 0);
	j = json_load_file(tmp("v.json"), 0, &je);
	assert_non_null(j);
	q = json_object_get(json_object_get(j, "quantities"), "ttft");
	assert_true(json_real_value(json_object_get(q, "median_abs_rel_err")) > 0.2);
	assert_true(json_real_value(json_object_get(q, "mean_rel_err")) > 0.2);
	q = json_object_get(json_object_get(j, "quantities"), "transfer");
	assert_true(json_real_value(json_object_get(q, "median_abs_rel_err")) < 1e-3);
	json_decref(j);

	/* the same through a run description as `netkv demo` writes it */
	FILE *f = fopen(tmp("run.json"), "w");
	assert_non_null(f);
	fprintf(f, "{\"format\": \"netkv-demo-run/1\", \"links_shared\": true, \"topology\": \"%s\", \"trace\": \"%s\","
		   " \"time_scale\": 1, \"perf_model\": \"llama3-8b/h100\", \"policies\": {\"sim\": {\"csv\": \"%s\"}}}\n",
		tmp("t.json"), tmp("tr.jsonl"), tmp("run.csv"));
	fclose(f);
	/* (a shared-links run gets the fabric's tbf buckets by default; this one had none) */
	snprintf(cmd, sizeof(cmd), "%s sim validate --run %s --policy sim %s --tbf-burst-ms 0 --tbf-burst-min 0 --json > %s",
		 nk, tmp("run.json"), same, tmp("v.json"));
	assert_int_equal(sh(cmd), 0);
	j = json_load_file(tmp("v.json"), 0, &je);
	assert_non_null(j);
	q = json_object_get(json_object_get(j, "quantities"), "transfer");
	assert_int_equal(json_integer_value(json_object_get(q, "n")), 200);
	assert_true(json_real_value(json_object_get(q, "median_abs_rel_err")) < 1e-3);
	assert_string_equal(json_string_value(json_object_get(j, "flows")), "shared");
	json_decref(j);
	snprintf(cmd, sizeof(cmd), "%s sim validate --run %s --policy nope 2> %s", nk, tmp("run.json"), tmp("err.txt"));
	assert_int_equal(sh(cmd), 2);
	snprintf(cmd, sizeof(cmd), "grep -q \"no policy 'nope'.*sim\" %s", tmp("err.txt"));
	assert_int_equal(sh(cmd), 0);

	/* bad input: exit 1 and the line named; usage errors exit 2 */
	snprintf(cmd, sizeof(cmd), "sed '3s/,ok,/,okay,/' %s > %s && %s sim validate --replay %s --topo %s 2> %s",
		 tmp("run.csv"), tmp("bad.csv"), nk, tmp("bad.csv"), tmp("t.json"), tmp("err.txt"));
	assert_int_equal(sh(cmd), 1);
	snprintf(cmd, sizeof(cmd), "grep -q 'bad.csv:3: column status' %s", tmp("err.txt"));
	assert_int_equal(sh(cmd), 0);
	snprintf(cmd, sizeof(cmd), "%s sim validate --replay %s 2>/dev/null", nk, tmp("run.csv"));
	assert_int_equal(sh(cmd), 2);
	snprintf(cmd, sizeof(cmd), "%s sim validate --replay %s --topo %s --tier-gbps 1,2,3,4 2>/dev/null", nk,
		 tmp("run.csv"), tmp("t.json"));
	assert_int_equal(sh(cmd), 2);
}

/* A value out of range names its flag and the range (it used to say
 * "--value '1.5': no error recorded"). */
static void expect_exit(const char *nk, const char *args, int rc, const char *msg)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "%s %s >/dev/null 2> %s", nk, args, tmp("err.txt"));
	assert_int_equal(sh(cmd), rc);
	snprintf(cmd, sizeof(cmd), "grep -qF -- \"%s\" %s", msg, tmp("err.txt"));
	if (sh(cmd))
		fail_msg("netkv %s: stderr lacks \"%s\"", args, msg);
}

static void expect_usage(const char *nk, const char *args, const char *msg)
{
	expect_exit(nk, args, 2, msg);
}

static void cli_flag_messages(void **st)
{
	(void)st;
	const char *b = getenv("NKV_BUILD");
	char nk[600], args0[700], cmd0[800];

	if (!b)
		skip();
	snprintf(nk, sizeof(nk), "%s/netkv", b);
	if (access(nk, X_OK))
		skip();
	expect_usage(nk, "sim run --prefix-share 1.5", "--prefix-share '1.5': must be in 0..1");
	expect_usage(nk, "sim run --gen-rate 0", "--gen-rate '0': must be > 0");
	expect_usage(nk, "sim run --requests 0", "--requests '0': must be at least 1");
	expect_usage(nk, "sim run --oversub-spine 0.5", "--oversub-spine '0.5': must be at least 1");
	expect_usage(nk, "sim run --w-load -1", "--w-load '-1': must be >= 0");
	expect_usage(nk, "sim run --gpus 10x", "--gpus '10x': '10x' is not an unsigned integer");
	/* a zero SLO target made every request miss it */
	expect_usage(nk, "sim run --slo-ttft 0", "--slo-ttft '0': must be > 0");
	expect_usage(nk, "sim run --slo-tbt 0", "--slo-tbt '0': must be > 0");
	/* input errors exit 1, named once (it said "trace: trace: ...") */
	snprintf(args0, sizeof(args0), "sim run --trace %s", tmp("none.jsonl"));
	expect_exit(nk, args0, 1, "netkv sim run: trace: ");
	snprintf(cmd0, sizeof(cmd0), "grep -q 'trace: trace' %s", tmp("err.txt"));
	assert_int_not_equal(sh(cmd0), 0);
	/* an empty trace has no statistics to give: an error, not a table of zeros */
	snprintf(cmd0, sizeof(cmd0), ": > %s", tmp("empty.jsonl"));
	assert_int_equal(sh(cmd0), 0);
	snprintf(args0, sizeof(args0), "trace stats %s", tmp("empty.jsonl"));
	expect_exit(nk, args0, 1, "empty.jsonl: no requests in it");
	expect_usage(nk, "trace gen --requests 0", "--requests '0': must be at least 1");
	expect_usage(nk, "trace gen --prefix-share 2", "--prefix-share '2': must be in 0..1");
	expect_usage(nk, "trace gen --rate nan", "--rate 'nan': 'nan' is not a finite number");
	expect_usage(nk, "sim tune --tune-limit 0", "--tune-limit '0': must be at least 1");
	/* a stray argument used to be ignored and the whole default grid run */
	expect_usage(nk, "sim tune extra", "unexpected argument 'extra'");
	/* values that left the simulated requests unfinished for (practically) ever */
	expect_usage(nk, "sim validate --time-scale 1e100", "--time-scale '1e100': want a number > 0 and <= 1000");
	expect_usage(nk, "sim validate --setup-ms 1e300", "--setup-ms '1e300': want a number >= 0 and <= 60000");
	expect_usage(nk, "sim validate --floor-ms 1e9", "--floor-ms '1e9': want a number >= 0 and <= 60000");
	/* the same through a run description; a pool past UINT32_MAX was truncated, or spun the LRU sizing */
	static const char *const runs[][2] = {
		{ "\"time_scale\": 1e308", "time_scale: want a number > 0 and <= 1000" },
		{ "\"pool_blocks\": {\"prefill\": 4294967296}", "pool_blocks.prefill: want an integer in 1..4294967295" },
		{ "\"pool_blocks\": {\"decode\": 9000000000000000000}", "pool_blocks.decode: want an integer in 1..4294967295" },
		{ "\"block_tokens\": 4294967295", "block_tokens: want an integer in 1..1024" },
		/* values that were dropped without a word: pools not an object, a second time_scale,
		 * the GPU of perf_model, an empty path */
		{ "\"pool_blocks\": 64", "pool_blocks: want an object" },
		{ "\"time_scale\": 1, \"time_scale\": 2", "duplicate object key" },
		{ "\"perf_model\": \"llama3-8b/tpu\"", "unknown GPU preset 'tpu'" },
		{ "\"trace\": \"\"", "trace: want a non-empty string" },
	};
	for (size_t i = 0; i < sizeof(runs) / sizeof(runs[0]); i++) {
		char args[700];
		FILE *f = fopen(tmp("big.json"), "w");

		assert_non_null(f);
		fprintf(f, "{\"format\": \"netkv-demo-run/1\", %s, \"policies\": {\"sim\": {\"csv\": \"x.csv\"}}}\n",
			runs[i][0]);
		fclose(f);
		snprintf(args, sizeof(args), "sim validate --run %s --policy sim --topo /nonexistent", tmp("big.json"));
		expect_usage(nk, args, runs[i][1]);
	}
}

/* The run description from memory: a path too long for its buffer was cut
 * short (naming another file); model and GPU both kept. */
static void run_desc(void **st)
{
	(void)st;
	char doc[4096], path[1100];
	struct nkv_run_desc d;

	snprintf(doc, sizeof(doc), "{\"format\": \"netkv-demo-run/1\", \"perf_model\": \"llama3-8b/h100\", "
				   "\"links_shared\": false, \"pool_blocks\": {\"decode\": 64}, \"block_tokens\": 16, "
				   "\"policies\": {\"rr\": {\"csv\": \"d/replay-rr.csv\"}}}");
	assert_int_equal(nkv_run_desc_parse(doc, strlen(doc), "run.json", "rr", &d), 0);
	assert_string_equal(d.model, "llama3-8b");
	assert_string_equal(d.gpu, "h100");
	assert_string_equal(d.csv, "d/replay-rr.csv");
	assert_int_equal(d.shared, 0);
	assert_int_equal(d.pool_decode, 64);
	assert_int_equal(d.pool_prefill, 0);
	assert_int_equal(d.block_tokens, 16);
	assert_int_equal(nkv_run_desc_parse(doc, strlen(doc), "run.json", "sim", &d), -ENOENT);
	assert_non_null(strstr(nkv_last_error(), "no policy 'sim' with a CSV (it has: rr)"));
	memset(path, 'a', sizeof(path) - 1);
	path[sizeof(path) - 1] = 0;
	snprintf(doc, sizeof(doc), "{\"format\": \"netkv-demo-run/1\", \"topology\": \"%s\"}", path);
	assert_int_equal(nkv_run_desc_parse(doc, strlen(doc), "run.json", NULL, &d), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "run.json: topology: longer than 1023 characters"));
	snprintf(doc, sizeof(doc), "{\"format\": \"netkv-demo-run/1\", \"perf_model\": \"/h100\"}");
	assert_int_equal(nkv_run_desc_parse(doc, strlen(doc), "run.json", NULL, &d), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "perf_model: want MODEL or MODEL/GPU"));
}

/* What the demo writes, read back: the reader takes it, and it carries the
 * meta that traces an archived run back (version, host, time, command line). */
static void run_desc_written(void **st)
{
	(void)st;
	static const char *const pols[] = { "rr", "cla*" };
	static const bool ok[] = { true, true };
	struct nkv_run_info ri = { .mode = "loopback", .mode_reason = "test", .shaped_gbps = { 2, 1, 0.5 },
				   .tier_gbps = "0,8,2,0.5", .time_scale = 0.1, .trace = "t.jsonl", .requests = 5,
				   .speed = 1, .w_cache = 0.25, .w_load = 1, .dir = "d", .npolicies = 2,
				   .policies = pols, .policy_ok = ok };
	struct nkv_run_desc d;
	json_t *j, *meta;

	assert_int_equal(nkv_run_desc_write(tmp("written.json"), &ri), 0);
	assert_int_equal(nkv_run_desc_load(tmp("written.json"), "cla*", &d), 0);
	assert_string_equal(d.csv, "d/replay-cla*.csv");
	assert_true(fabs(d.time_scale - 0.1) < 1e-12);
	assert_true(d.tenant_on_s == 0 && !d.tenant_csv[0] && !d.calib_csv[0]);

	/* demo --tenant: a control and a tenant run, and the calibration pushes */
	static const char *const tpols[] = { "rr", "rr+tenants" };
	static const bool ten[] = { false, true };
	ri.policies = tpols, ri.policy_tenants = ten, ri.tenant_on_s = 0.05, ri.calibration = "calibration";
	ri.tenant_util[NKV_TIER_CORE] = 0.5;
	assert_int_equal(nkv_run_desc_write(tmp("written.json"), &ri), 0);
	assert_int_equal(nkv_run_desc_load(tmp("written.json"), "rr+tenants", &d), 0);
	assert_string_equal(d.csv, "d/replay-rr+tenants.csv");
	assert_string_equal(d.tenant_csv, "d/tenants-rr+tenants.csv");
	assert_true(d.tenant_on_s == 0.05 && d.tenant_util[NKV_TIER_CORE] == 0.5 && d.tenant_util[NKV_TIER_POD] == 0);
	assert_string_equal(d.calib_csv, "d/replay-calibration.csv");
	assert_string_equal(d.calib_trace, "d/calibration-trace.jsonl");
	assert_int_equal(nkv_run_desc_load(tmp("written.json"), "rr", &d), 0);
	assert_true(d.tenant_on_s == 0 && !d.tenant_csv[0]);
	assert_string_equal(d.topo, "d/topo.json");
	/* demo --control: the 1:1 run names its own topology, the others keep the run's */
	static const char *const cpols[] = { "rr", "rr@1:1" }, *const ctopo[] = { NULL, "d/topo-1to1.json" };
	static const bool noten[] = { false, false };
	ri.policies = cpols, ri.policy_tenants = noten, ri.policy_topo = ctopo;
	assert_int_equal(nkv_run_desc_write(tmp("written.json"), &ri), 0);
	assert_int_equal(nkv_run_desc_load(tmp("written.json"), "rr@1:1", &d), 0);
	assert_string_equal(d.topo, "d/topo-1to1.json");
	assert_string_equal(d.csv, "d/replay-rr@1:1.csv");
	assert_int_equal(nkv_run_desc_load(tmp("written.json"), "rr", &d), 0);
	assert_string_equal(d.topo, "d/topo.json");
	const char *badt = "{\"format\": \"netkv-demo-run/1\", \"policies\": {\"rr\": {\"csv\": \"x.csv\", "
			   "\"topology\": 7}}}";
	assert_int_equal(nkv_run_desc_parse(badt, strlen(badt), "run.json", "rr", &d), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "policies.rr.topology: want a non-empty string"));
	const char *bad = "{\"format\": \"netkv-demo-run/1\", \"policies\": {\"rr\": {\"csv\": \"x.csv\", "
			  "\"tenants\": {\"on_s\": 0.1, \"core\": 1.5}}}}";
	assert_int_equal(nkv_run_desc_parse(bad, strlen(bad), "run.json", "rr", &d), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "policies.rr.tenants.core: want a utilisation in [0, 1)"));
	j = json_load_file(tmp("written.json"), 0, NULL);
	assert_non_null(j);
	meta = json_object_get(j, "meta");
	assert_non_null(meta);
	assert_non_null(json_string_value(json_object_get(meta, "netkv_version")));
	assert_non_null(json_string_value(json_object_get(meta, "host")));
	assert_non_null(json_string_value(json_object_get(meta, "time")));
	assert_non_null(json_string_value(json_object_get(meta, "command_line")));
	json_decref(j);
}

static int setup(void **st)
{
	(void)st;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/nkv-validate-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **st)
{
	(void)st;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(forced_small), cmocka_unit_test(conn_first_push), cmocka_unit_test(forced_bad), cmocka_unit_test(round_trip),
		cmocka_unit_test(malformed), cmocka_unit_test(validate_refuses), cmocka_unit_test(absolute_arrivals),
		cmocka_unit_test(run_desc), cmocka_unit_test(run_desc_written),
		cmocka_unit_test(cli_round_trip), cmocka_unit_test(cli_flag_messages),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
