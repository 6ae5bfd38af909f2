/*
 * netkv sim validate: simulate the finished requests of a testbed run with
 * the assignments the testbed made, on the topology as it was emulated, and
 * report per-request predicted vs measured transfer time and TTFT.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nkv_cli.h"
#include "nkv_json_out.h"
#include "nkv_models.h" /* NKV_GPU_DEFAULT */
#include "nkv_util.h"
#include "sim_cli.h"

/* Compute x 1000 (NKV_MAX_TIME_SCALE) or a minute per transfer already leave
 * the run's timeline far behind; beyond, requests take ages of simulated
 * time to finish. */
#define MAX_OVERHEAD_MS 60000.0

static void usage(FILE *f)
{
	fprintf(f,
		"usage: netkv sim validate --replay CSV --topo FILE [options]\n"
		"       netkv sim validate --run DIR/run.json --policy P [options]   (a `netkv demo` run)\n"
		"Simulates the finished requests of a testbed run (`netkv replay --csv`, `netkv demo`'s\n"
		"DIR/replay-POLICY.csv, or `netkv sim run --csv`) with their own arrival times, (prefill,\n"
		"decode) assignments and KV bytes, on the topology as the testbed had it, and compares\n"
		"per request predicted with measured:\n"
		"  transfer  measured xfer_s = push start -> last byte placed (the agent's pacing hold\n"
		"            included) vs the simulated flow: start -> last byte drained at its max-min\n"
		"            rate + the path's per-hop latency. Neither side counts the scheduler's\n"
		"            messages. This is the figure the <= 10%% goal is about.\n"
		"  ttft      measured ttft_s (submit -> first token) vs simulated TTFT (arrival -> first\n"
		"            token: prefill queue + prefill + transfer + decode wait + first step).\n"
		"  handoff   measured transfer_s = prefill end -> last byte placed (adds the wait for the\n"
		"            decode's block list and the agents' event-loop latency, which the model\n"
		"            does not have) vs the same simulated flow time: shows that gap.\n"
		"Relative error = (predicted - measured) / measured; reported: median and p90 of its\n"
		"absolute value, bias = its mean (+ = the simulator over-predicts), count.\n"
		"\n"
		"  --replay CSV          measured records (every field checked; errors name line and column)\n"
		"  --run FILE            `netkv demo`'s run.json: gives the topology as emulated, shared or\n"
		"                        paced flows, time scale, trace, pool sizes, perf model and each\n"
		"                        policy's CSV (--policy P picks one); explicit options win\n"
		"  --topo FILE           the topology as emulated (link capacities = what the testbed had)\n"
		"  --tier-gbps H,L,P,C   set the capacities from per-tier rates first (Gb/s; 0 = keep):\n"
		"                        NVLink = H, NICs = L, leaf uplinks = P, spine uplinks = C, so a\n"
		"                        tier's path bottleneck is its rate (as `netkv demo --tier-gbps`);\n"
		"                        implies --flows paced\n"
		"  --flows shared|paced  shared: max-min sharing over the links (a real or netns fabric;\n"
		"                        default); paced: each flow at its path's bottleneck alone (the\n"
		"                        loopback demo paces each transfer per path, without sharing)\n"
		"  --setup-ms X          the testbed's transfer-path overheads (default 0 and 0): each\n"
		"  --floor-ms Y          simulated transfer takes max(Y, bytes/rate + latency + X). The\n"
		"                        agents drive a push from an event loop that wakes every <= 0.25 ms\n"
		"                        while bytes are on the wire, on both ends, and the push completes\n"
		"                        on the decode's acknowledgement: each push pays a few wake-ups.\n"
		"                        With --run of a fabric run that has calibration pushes (netkv demo\n"
		"                        makes them before the policies: 48 pushes of 1..8 blocks, one at a\n"
		"                        time), setup and --peak-gbps default to what those pushes measure\n"
		"                        (best of a grid on them, not on the run validated); else --fit\n"
		"                        prints them for one run, to validate another with\n"
		"  --tbf-burst-ms X      token buckets on the fabric's links, as tc tbf shapes them: bucket =\n"
		"  --tbf-burst-min B     max(rate x X, B bytes), full at the start; while it holds tokens a\n"
		"  --peak-gbps P         link carries up to P Gb/s (what the unshaped veth + TCP path moves).\n"
		"                        Default off; with --run of a fabric run: 4 ms and 64 KiB (netkv\n"
		"                        fabric's tbf) at P = the calibration's, else 10, unless given. A\n"
		"                        short transfer then fits in the burst and takes far less than\n"
		"                        bytes/rate. A run beside tenants (demo --tenant) is simulated with\n"
		"                        the simulator's tenant sources at the utilisation it asked\n"
		"  --fit                 print the overheads this run shows (floor = median measured transfer\n"
		"                        of those the model puts under 1 ms; setup = median measured - model\n"
		"                        of those the model puts above 2 x floor)\n"
		"  --trace FILE          the trace the run replayed, for prefix caching (default: trace.jsonl\n"
		"                        beside the CSV if there is one; 'none' = no prefix caching)\n"
		"  --perf M              perf model the agents used (their --perf; default llama3-8b): a preset\n"
		"                        (%s) or a config.json\n"
		"  --gpu-model G         its GPU preset (%s; default h100, or the run's)\n"
		"  --time-scale X        the agents' --time-scale (compute times x X; default 1, demo: 0.1)\n"
		"  --prefill-batch-tokens N  prefill batch budget (default 1: the agent computes one\n"
		"                        request at a time)\n"
		"  --prefill-cache-blocks N  prefix blocks a prefill keeps (default 512, the demo's pool)\n"
		"  --decode-cache-blocks N   prefix blocks a decode keeps (default 512; 0 = a quarter of its KV)\n"
		"  --decode-kv-tokens N  KV capacity of a decode (default 262144 = 512 blocks x 512; 0 = the\n"
		"                        perf model's)\n"
		"  --refresh S           telemetry refresh (default 1);  --no-probes  no probe flows\n"
		"  --json                results as JSON;  --csv FILE  per-request predicted vs measured\n"
		"  --plot PREFIX         PREFIX-transfer.png, PREFIX-ttft.png, PREFIX-handoff.png: log-log\n"
		"                        scatter with y = x (gnuplot)\n"
		"Exit 0 when it ran (whatever the errors), 1 on failure, 2 on a usage error.\n",
		nkv_perf_models(), nkv_perf_gpus());
}

/* Rewrite the capacities so a tier's path bottleneck is its rate:
 * tier 1 = [NIC up, NIC down], tier 2 adds the leaf uplinks, tier 3 the
 * spine uplinks (netkv_topo.h), hence the rates must not grow with tier. */
static int paced_topo(const struct nkv_topo *t, const double gbps[NKV_TIERS], struct nkv_topo **out)
{
	char *doc = nkv_topo_dump_json(t), *back;
	json_error_t je;
	json_t *root, *a, *x;
	size_t i, j;
	int ret;

	if (!doc)
		return nkv_err(ENOMEM, "topology: cannot dump it");
	root = json_loads(doc, 0, &je);
	free(doc);
	if (!root)
		return nkv_err(EINVAL, "topology dump: %s", je.text);
	if (gbps[0] > 0)
		json_object_set_new(json_object_get(root, "intra_host"), "GBps", json_real(gbps[0] / 8));
	json_array_foreach(json_object_get(root, "switches"), i, a) {
		const char *tier = json_string_value(json_object_get(a, "tier"));
		double r = !tier ? 0 : !strcmp(tier, "leaf") ? gbps[2] : !strcmp(tier, "spine") ? gbps[3] : 0;

		if (r > 0 && json_object_get(a, "uplink")) {
			json_object_del(a, "oversub");
			json_object_set_new(a, "uplink_gbps", json_real(r));
		}
	}
	if (gbps[1] > 0)
		json_array_foreach(json_object_get(root, "hosts"), i, a)
			json_array_foreach(json_object_get(a, "nics"), j, x)
				json_object_set_new(x, "gbps", json_real(gbps[1]));
	back = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (!back)
		return nkv_err(ENOMEM, "topology: out of memory");
	ret = nkv_topo_parse(back, strlen(back), out);
	free(back);
	return ret ? nkv_err_wrap(ret, "topology with --tier-gbps") : 0;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static int parse_tiers(const char *s, double gbps[NKV_TIERS])
{
	char buf[128], *save = NULL, *tok;
	int n = 0;

	snprintf(buf, sizeof(buf), "%s", s);
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (n == NKV_TIERS || nkv_parse_double(tok, &gbps[n]) || !(gbps[n] >= 0) || !isfinite(gbps[n]))
			return nkv_err(EINVAL, "want 4 numbers >= 0 (host,leaf,pod,core Gb/s)");
		n++;
	}
	if (n != NKV_TIERS)
		return nkv_err(EINVAL, "want 4 numbers >= 0 (host,leaf,pod,core Gb/s), got %d", n);
	for (int a = 1; a < NKV_TIERS; a++)
		for (int b = a + 1; b < NKV_TIERS; b++)
			if (gbps[a] > 0 && gbps[b] > gbps[a])
				return nkv_err(EINVAL, "%s %g Gb/s above %s %g: a %s path crosses the %s links too, so "
						       "its bottleneck could not be its rate", nkv_tier_name(b), gbps[b],
					       nkv_tier_name(a), gbps[a], nkv_tier_name(b), nkv_tier_name(a));
	return 0;
}

static int plot(const struct nkv_validation *v, const char *prefix)
{
	char dat[1100], png[1100];
	int ret = 0;

	for (int q = 0; q < NKV_VQ_N && !ret; q++) {
		snprintf(dat, sizeof(dat), "%s-%s.dat", prefix, nkv_vq_name(q));
		snprintf(png, sizeof(png), "%s-%s.png", prefix, nkv_vq_name(q));
		FILE *f = fopen(dat, "w");
		if (!f)
			return nkv_err(errno, "%s: %s", dat, strerror(errno));
		double lo = INFINITY, hi = 0;
		fprintf(f, "# measured_ms predicted_ms (%s)\n", nkv_vq_name(q));
		for (size_t i = 0; i < v->compared; i++) {
			double p, m;
			nkv_validation_pair(v, q, i, &p, &m);
			if (!(p > 0) || !(m > 0))
				continue; /* no place on a log scale */
			fprintf(f, "%.6f %.6f\n", m * 1e3, p * 1e3);
			lo = fmin(lo, fmin(m, p) * 1e3);
			hi = fmax(hi, fmax(m, p) * 1e3);
		}
		if (fclose(f))
			return nkv_err(EIO, "%s: write failed", dat);
		if (!(hi > 0)) {
			fprintf(stderr, "netkv sim validate: %s: no positive pairs, no plot\n", nkv_vq_name(q));
			continue;
		}
		const struct nkv_err_stats *s = &v->q[q];
		FILE *g = popen("gnuplot", "w");
		if (!g)
			return nkv_err(errno, "gnuplot: %s (apt-get install gnuplot-nox)", strerror(errno));
		fprintf(g,
			"set terminal pngcairo size 700,640\nset output '%s'\nset logscale xy\nset grid\n"
			"set xrange [%g:%g]\nset yrange [%g:%g]\nset size square\n"
			"set xlabel 'measured %s (ms)'\nset ylabel 'predicted (ms)'\nset key top left\n"
			"set title '%s: median |err| %.1f%%, p90 %.1f%%, bias %+.1f%% (n=%zu)'\n"
			"plot '%s' using 1:2 with points pt 7 ps 0.6 title 'requests', x with lines lw 2 title 'y = x'\n",
			png, lo / 1.3, hi * 1.3, lo / 1.3, hi * 1.3, nkv_vq_name(q), nkv_vq_name(q), s->median_abs * 100,
			s->p90_abs * 100, s->mean_signed * 100, s->n, dat);
		int st = pclose(g);
		if (st)
			ret = nkv_err(EIO, "gnuplot failed for %s (is gnuplot installed?)", png);
	}
	return ret;
}

/* Mean of each TTFT component, measured and simulated: where the gap is. */
enum { B_QUEUE, B_PREFILL, B_XFER, B_DWAIT, B_STEP, B_N };
static const char *bname[B_N] = { "queue", "prefill", "transfer", "decode_wait", "first_step" };

static void breakdown(const struct nkv_validation *v, double meas[B_N], double pred[B_N])
{
	size_t nm[B_N] = { 0 };

	for (int b = 0; b < B_N; b++)
		meas[b] = pred[b] = 0;
	for (size_t i = 0; i < v->compared; i++) {
		const struct nkv_rec_row *m = v->meas[i];
		const struct nkv_sim_record *s = &v->sim->recs[i];
		double mv[B_N] = { m->queue_s, m->prefill_s, m->transfer_s, m->decode_wait_s, m->first_step_s };
		double pv[B_N] = { s->queue_wait_s, s->prefill_s, s->transfer_s, s->decode_wait_s, s->first_step_s };
		for (int b = 0; b < B_N; b++) {
			if (!isnan(mv[b])) {
				meas[b] += mv[b];
				nm[b]++;
			}
			pred[b] += pv[b];
		}
	}
	for (int b = 0; b < B_N; b++) {
		meas[b] = nm[b] ? meas[b] / (double)nm[b] : NAN;
		pred[b] = v->compared ? pred[b] / (double)v->compared : 0;
	}
}

/* Transfer error per tier of the path: median |err| and count (-1 when none). */
/* Transfer median |error| per group of compared requests (group < ng, or -1 to skip). */
static void by_group(const struct nkv_validation *v, int (*group)(const struct nkv_validation *, size_t), int ng,
		     double *med, size_t *cnt)
{
	double *e = malloc((v->compared + 1) * sizeof(double));

	for (int t = 0; t < ng; t++) {
		size_t k = 0;
		for (size_t i = 0; e && i < v->compared; i++) {
			double p, m;
			if (group(v, i) != t)
				continue;
			nkv_validation_pair(v, NKV_VQ_TRANSFER, i, &p, &m);
			if (m > 0)
				e[k++] = fabs(p - m) / m;
		}
		if (e)
			qsort(e, k, sizeof(double), cmp_dbl);
		cnt[t] = k;
		med[t] = k ? (k % 2 ? e[k / 2] : (e[k / 2 - 1] + e[k / 2]) / 2) : -1;
	}
	free(e);
}

static int tier_of(const struct nkv_validation *v, size_t i)
{
	return v->sim->recs[i].tier;
}

/* By measured push time: <= 1 ms, 1-10 ms, > 10 ms. */
#define SIZE_N 3
static const char *const size_name[SIZE_N] = { "<=1ms", "1-10ms", ">10ms" };
static int size_of(const struct nkv_validation *v, size_t i)
{
	double p, m;
	nkv_validation_pair(v, NKV_VQ_TRANSFER, i, &p, &m);
	return m <= 1e-3 ? 0 : m <= 10e-3 ? 1 : 2;
}

/* A demo run's tenant on periods (DIR/tenants-NAME.csv, bench/testbed/
 * demo_tenants.c): "link,start_s,end_s" per line, link a name of the
 * topology's; times in the replay's; periods before 0 clipped. */
static int read_tenants(const char *path, const struct nkv_topo *t, struct nkv_sim_tenant_on **out, size_t *n)
{
	FILE *f = fopen(path, "r");
	char line[256];
	size_t cap = 0, ln = 0;
	int rc = 0;

	*out = NULL, *n = 0;
	if (!f)
		return nkv_err(errno, "%s: %s", path, strerror(errno));
	while (!rc && fgets(line, sizeof(line), f)) {
		char name[64], *c1 = strchr(line, ','), *c2 = c1 ? strchr(c1 + 1, ',') : NULL, *nl = strchr(line, '\n');
		double a, b;
		int l = -1;
		ln++;
		if (nl)
			*nl = 0;
		if (ln == 1) {
			if (strcmp(line, "link,start_s,end_s"))
				rc = nkv_err(EINVAL, "%s:1: want the header link,start_s,end_s", path);
			continue;
		}
		if (!c1 || !c2 || (size_t)(c1 - line) >= sizeof(name)) {
			rc = nkv_err(EINVAL, "%s:%zu: want LINK,START_S,END_S", path, ln);
			break;
		}
		snprintf(name, sizeof(name), "%.*s", (int)(c1 - line), line);
		*c2 = 0;
		if (nkv_parse_double(c1 + 1, &a) || nkv_parse_double(c2 + 1, &b) || !isfinite(a) || !isfinite(b) || !(b > a)) {
			rc = nkv_err(EINVAL, "%s:%zu: want finite times, end after start", path, ln);
			break;
		}
		for (uint32_t k = 0; k < nkv_topo_links(t) && l < 0; k++) {
			struct nkv_link_info li;
			if (nkv_topo_link(t, k, &li) == 0 && !strcmp(li.name, name))
				l = (int)k;
		}
		if (l < 0) {
			rc = nkv_err(EINVAL, "%s:%zu: no link %s in the topology", path, ln, name);
			break;
		}
		if (b <= 0)
			continue;
		if (*n == cap) {
			struct nkv_sim_tenant_on *g = cap < 1000000 ? realloc(*out, (cap ? 2 * cap : 256) * sizeof(**out)) : NULL;
			if (!g) {
				rc = nkv_err(ENOMEM, "%s: more than %zu on periods, or out of memory", path, cap);
				break;
			}
			*out = g, cap = cap ? 2 * cap : 256;
		}
		(*out)[(*n)++] = (struct nkv_sim_tenant_on){ .link = (uint32_t)l, .start_s = fmax(a, 0), .end_s = b };
	}
	if (!rc && ferror(f))
		rc = nkv_err(EIO, "%s: read error", path);
	fclose(f);
	if (rc)
		free(*out), *out = NULL, *n = 0;
	return rc;
}

/* The topology with every shaped link's capacity x eff. */
static int scaled_topo(const struct nkv_topo *t, double eff, struct nkv_topo **out)
{
	double g[NKV_TIERS] = { 0 };
	struct nkv_link_info li;

	for (uint32_t l = 0; l < nkv_topo_links(t); l++)
		if (nkv_topo_link(t, l, &li) == 0 && li.tier >= 1 && li.tier < NKV_TIERS)
			g[li.tier] = fmax(g[li.tier], li.bytes_per_s * 8e-9 * eff);
	return paced_topo(t, g, out);
}

/* Median of x[0..n) (sorts it); 0 when n is 0. */
static double median_of(double *x, size_t n)
{
	if (!n)
		return 0;
	qsort(x, n, sizeof(double), cmp_dbl);
	return n % 2 ? x[n / 2] : (x[n / 2 - 1] + x[n / 2]) / 2;
}

/* The testbed's per-push overhead, measured on the demo's calibration
 * pushes (run.json "calibration", bench/testbed/demo_calib.c), not on the
 * run being validated. The model: each push takes setup + what the
 * simulator gives with the tbf buckets at peak rate and every shaped link
 * carrying a share eff of its rate. Those pushes run one at a time, so the
 * setup adds to each as it is: for each (peak, eff) of a grid they are
 * simulated once with no setup, and the setup is found on the simulated
 * times. Each (tier, size) group of pushes counts once: the objective is
 * the mean over groups of |median predicted - median measured| / median
 * measured, so a noisy push or a crowded tier does not steer it. The first
 * push between two agents also opens their connection: those are left out
 * of that fit, and conn = the median of what they took beyond it.
 * base: the validation's simulator as set up (topology, buckets), no tenants. */
#define CAL_GROUPS 64
static int calibrate(const struct nkv_sim_config *base, const char *csv, const char *trace_file, double *setup_s,
		     double *conn_s, double *peak_gbps, double *eff, double *err, size_t *npush)
{
	static const double peaks[] = { 1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 30 };
	static const double effs[] = { 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1 };
	const size_t np = sizeof(peaks) / sizeof(peaks[0]), ne = sizeof(effs) / sizeof(effs[0]);
	struct nkv_trace *trace = NULL;
	struct nkv_rec_row *rows = NULL;
	size_t nrows = 0;
	double *p = NULL, *m = NULL, *x = NULL, *pf = NULL, *mf = NULL, best = INFINITY;
	int *grp = NULL, rc;

	if ((rc = nkv_trace_load(trace_file, NULL, &trace)) || (rc = nkv_rec_read(csv, base->topo, &rows, &nrows)))
		goto out;
	p = malloc((nrows + 1) * sizeof(double)), m = malloc((nrows + 1) * sizeof(double));
	x = malloc((nrows + 1) * sizeof(double)), pf = malloc((nrows + 1) * sizeof(double));
	mf = malloc((nrows + 1) * sizeof(double)), grp = malloc((nrows + 1) * sizeof(int));
	if (!p || !m || !x || !pf || !mf || !grp) {
		rc = nkv_err(ENOMEM, "out of memory");
		goto out;
	}
	for (size_t g = 0; g < np * ne; g++) {
		struct nkv_sim_config c = *base;
		struct nkv_validation *v = NULL;
		struct nkv_topo *st = NULL;
		size_t k = 0, kf = 0, ip = g % np, ie = g / np;
		int ng = 0;
		struct { int tier; uint64_t bytes; } key[CAL_GROUPS];
		double mp[CAL_GROUPS], mm[CAL_GROUPS];

		c.link_peak_Bps = peaks[ip] * 1e9 / 8;
		c.link_burst_s = base->link_burst_s / effs[ie]; /* the buckets keep their size */
		c.xfer_setup_s = c.xfer_floor_s = c.xfer_conn_s = 0;
		if ((rc = scaled_topo(base->topo, effs[ie], &st)))
			goto out;
		c.topo = st;
		if ((rc = nkv_sim_validate(&c, rows, nrows, trace, csv, &v))) {
			nkv_topo_free(st);
			goto out;
		}
		for (size_t i = 0; i < v->compared; i++) {
			const struct nkv_rec_row *r = v->meas[i];
			bool first = true;
			for (size_t j = 0; j < v->compared && first; j++)
				first = !(v->meas[j]->arrival_s < r->arrival_s && !strcmp(v->meas[j]->prefill, r->prefill) &&
					  !strcmp(v->meas[j]->decode, r->decode));
			double pi, mi;
			nkv_validation_pair(v, NKV_VQ_TRANSFER, i, &pi, &mi);
			if (!(mi > 0))
				continue;
			if (first) {
				pf[kf] = pi, mf[kf++] = mi;
				continue;
			}
			int gi = 0;
			while (gi < ng && (key[gi].tier != r->tier || key[gi].bytes != r->bytes))
				gi++;
			if (gi == ng && ng < CAL_GROUPS)
				key[ng].tier = r->tier, key[ng++].bytes = r->bytes;
			if (gi < CAL_GROUPS)
				p[k] = pi, m[k] = mi, grp[k++] = gi;
		}
		nkv_validation_free(v);
		nkv_topo_free(st);
		for (int gi = 0; gi < ng; gi++) {
			size_t n = 0;
			for (size_t i = 0; i < k; i++)
				if (grp[i] == gi)
					x[n++] = p[i];
			mp[gi] = median_of(x, n);
			n = 0;
			for (size_t i = 0; i < k; i++)
				if (grp[i] == gi)
					x[n++] = m[i];
			mm[gi] = median_of(x, n);
		}
		for (double s = 0; s <= 3e-3 + 1e-9 && ng; s += 1e-5) {
			double obj = 0;
			for (int gi = 0; gi < ng; gi++)
				obj += fabs(mp[gi] + s - mm[gi]) / mm[gi];
			obj /= ng;
			if (obj < best - 1e-12) {
				best = obj, *setup_s = s, *peak_gbps = peaks[ip], *eff = effs[ie], *npush = k;
				for (size_t i = 0; i < k; i++)
					x[i] = fabs(p[i] + s - m[i]) / m[i];
				*err = median_of(x, k);
				/* what the first pushes took beyond the model with this setup */
				for (size_t i = 0; i < kf; i++)
					x[i] = mf[i] - pf[i] - s;
				*conn_s = fmax(0, median_of(x, kf));
			}
		}
	}
	if (!isfinite(best))
		rc = nkv_err(ENODATA, "%s: no calibration push with a measured time (after each pair's first)", csv);
out:
	free(p), free(m), free(x), free(pf), free(mf), free(grp);
	free(rows);
	nkv_trace_free(trace);
	return rc;
}

/* The overheads this run shows, against the model's own transfer time
 * (its current setup and floor taken back out first). */
static void print_fit(const struct nkv_validation *v, FILE *f)
{
	size_t n = v->compared, a = 0, b = 0;
	double *small = malloc((n + 1) * sizeof(double)), *big = malloc((n + 1) * sizeof(double));
	double floor_s = 0, setup_s = 0;

	if (!small || !big) {
		free(small), free(big);
		return;
	}
	for (size_t i = 0; i < n; i++) {
		double p, m;
		nkv_validation_pair(v, NKV_VQ_TRANSFER, i, &p, &m);
		if (m > 0 && p > 0 && p < 1e-3)
			small[a++] = m;
	}
	qsort(small, a, sizeof(double), cmp_dbl);
	floor_s = a ? small[a / 2] : 0;
	for (size_t i = 0; i < n; i++) {
		double p, m;
		nkv_validation_pair(v, NKV_VQ_TRANSFER, i, &p, &m);
		if (m > 0 && p > 2 * floor_s && p > 1e-3)
			big[b++] = m - p;
	}
	qsort(big, b, sizeof(double), cmp_dbl);
	setup_s = b ? big[b / 2] : 0;
	fprintf(f, "  fit (meaningful without --setup-ms/--floor-ms): floor %.3f ms from %zu transfers the model "
		   "puts under 1 ms; extra setup %+.3f ms from %zu above 2 x floor\n",
		floor_s * 1e3, a, setup_s * 1e3, b);
	free(small), free(big);
}

static int write_pairs(const struct nkv_validation *v, const char *path)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return nkv_err(errno, "%s: %s", path, strerror(errno));
	fprintf(f, "req,line,prefill,decode,tier,bytes,arrival_s,meas_transfer_s,pred_transfer_s,meas_ttft_s,pred_ttft_s,"
		   "meas_handoff_s,pred_handoff_s\n");
	for (size_t i = 0; i < v->compared; i++) {
		const struct nkv_rec_row *m = v->meas[i];
		double p[NKV_VQ_N], x[NKV_VQ_N];
		for (int q = 0; q < NKV_VQ_N; q++)
			nkv_validation_pair(v, q, i, &p[q], &x[q]);
		fprintf(f, "%llu,%llu,%s,%s,%d,%llu,%.9f,%.9f,%.9f,%.9f,%.9f,%.9f,%.9f\n", (unsigned long long)m->req,
			(unsigned long long)m->line, m->prefill, m->decode, v->sim->recs[i].tier,
			(unsigned long long)m->bytes, m->arrival_s, x[0], p[0], x[1], p[1], x[2], p[2]);
	}
	return fclose(f) ? nkv_err(EIO, "%s: write failed", path) : 0;
}

enum { V_REPLAY = 1, V_TOPO, V_TIERS, V_FLOWS, V_TRACE, V_MODEL, V_GPU, V_SCALE, V_PBT, V_PCB, V_DCB, V_DKV, V_REFRESH,
       V_NOPROBE, V_JSON, V_CSV, V_PLOT, V_SETUP, V_RUN, V_POLICY, V_FLOOR, V_FIT, V_BURST, V_BURST_MIN, V_PEAK };

int nkv_sim_validate_cmd(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "replay", 1, 0, V_REPLAY }, { "topo", 1, 0, V_TOPO }, { "tier-gbps", 1, 0, V_TIERS },
		{ "flows", 1, 0, V_FLOWS }, { "trace", 1, 0, V_TRACE }, { "perf", 1, 0, V_MODEL }, { "gpu-model", 1, 0, V_GPU },
		{ "time-scale", 1, 0, V_SCALE }, { "prefill-batch-tokens", 1, 0, V_PBT },
		{ "prefill-cache-blocks", 1, 0, V_PCB }, { "decode-cache-blocks", 1, 0, V_DCB },
		{ "decode-kv-tokens", 1, 0, V_DKV }, { "refresh", 1, 0, V_REFRESH }, { "no-probes", 0, 0, V_NOPROBE },
		{ "json", 0, 0, V_JSON }, { "csv", 1, 0, V_CSV }, { "plot", 1, 0, V_PLOT }, { "setup-ms", 1, 0, V_SETUP },
		{ "floor-ms", 1, 0, V_FLOOR }, { "fit", 0, 0, V_FIT }, { "run", 1, 0, V_RUN }, { "policy", 1, 0, V_POLICY },
		{ "tbf-burst-ms", 1, 0, V_BURST }, { "tbf-burst-min", 1, 0, V_BURST_MIN }, { "peak-gbps", 1, 0, V_PEAK },
		{ "help", 0, 0, 'h' },
		{ "model", 1, 0, V_MODEL }, /* hidden alias for one release: the agents' --perf */
		{ 0, 0, 0, 0 } };
	const char *replay = NULL, *topo_file = NULL, *trace_file = NULL, *model = "llama3-8b", *csv = NULL;
	const char *plot_prefix = NULL, *run_file = NULL, *policy = NULL, *gpu = NKV_GPU_DEFAULT;
	bool model_set = false, scale_set = false, pcb_set = false, dcb_set = false, dkv_set = false;
	bool burst_set = false, gpu_set = false, setup_set = false, peak_set = false, calibrated = false;
	double cal_err = 0, cal_eff = 1;
	size_t cal_n = 0;
	struct nkv_topo *cal_topo = NULL;
	struct nkv_sim_tenant_on *ten_on = NULL;
	char model_opt[16] = "perf model"; /* the spelling given, for the message */
	double peak_gbps = 10;
	struct nkv_run_desc rd;
	double gbps[NKV_TIERS] = { 0 }, scale = 1;
	bool tiers = false, json = false, flows_set = false, paced = false, fit = false;
	struct nkv_sim_config cfg;
	struct nkv_topo *topo = NULL, *emu = NULL;
	struct nkv_trace *trace = NULL;
	struct nkv_rec_row *rows = NULL;
	struct nkv_validation *v = NULL;
	size_t nrows = 0;
	char tbuf[1100];
	int c, rc = 1;
	uint64_t u;

	nkv_sim_defaults(&cfg);
	cfg.prefill_max_tokens = 1;
	cfg.prefill_cache_blocks = 512;
	cfg.decode_cache_blocks = 512;
	cfg.decode_kv_tokens = 512 * 512;
	optind = 1;
	while ((c = nkv_cli_getopt(argc, argv, "h", lo, NULL)) != -1) {
		const char *opt = NULL;
		switch (c) {
		case V_REPLAY: replay = optarg; break;
		case V_TOPO: topo_file = optarg; break;
		case V_TRACE: trace_file = optarg; break;
		case V_MODEL:
			model = optarg, model_set = true;
			snprintf(model_opt, sizeof(model_opt), "%s", nkv_cli_opt_typed());
			break;
		case V_GPU: gpu = optarg, gpu_set = true; break;
		case V_RUN: run_file = optarg; break;
		case V_POLICY: policy = optarg; break;
		case V_CSV: csv = optarg; break;
		case V_PLOT: plot_prefix = optarg; break;
		case V_JSON: json = true; break;
		case V_NOPROBE: cfg.probes = false; break;
		case V_TIERS:
			if (parse_tiers(optarg, gbps))
				opt = "tier-gbps";
			tiers = true;
			break;
		case V_FLOWS:
			flows_set = true;
			if (!strcmp(optarg, "paced"))
				paced = true;
			else if (!strcmp(optarg, "shared"))
				paced = false;
			else
				opt = "flows", nkv_err(EINVAL, "shared or paced");
			break;
		case V_FIT: fit = true; break;
		case V_BURST_MIN:
			if (nkv_parse_size(optarg, &u)) {
				opt = "tbf-burst-min";
				break;
			}
			cfg.link_burst_min = (double)u;
			burst_set = true;
			break;
		case V_BURST:
		case V_PEAK: {
			double d;
			if (nkv_parse_double(optarg, &d) || !(c == V_PEAK ? d > 0 : d >= 0) || !isfinite(d)) {
				opt = c == V_BURST ? "tbf-burst-ms" : "peak-gbps";
				nkv_err(EINVAL, "want a number %s 0", c == V_PEAK ? ">" : ">=");
				break;
			}
			if (c == V_BURST)
				cfg.link_burst_s = d * 1e-3, burst_set = true;
			else
				peak_gbps = d, peak_set = true;
			break;
		}
		case V_SCALE:
		case V_REFRESH:
		case V_SETUP:
		case V_FLOOR: {
			double d;
			bool zero_ok = c == V_SETUP || c == V_FLOOR;
			/* beyond these the simulated requests take ages to finish */
			double max = c == V_SCALE ? NKV_MAX_TIME_SCALE : zero_ok ? MAX_OVERHEAD_MS : INFINITY;
			if (nkv_parse_double(optarg, &d) || !(zero_ok ? d >= 0 : d > 0) || !(d <= max) || !isfinite(d)) {
				opt = c == V_SCALE ? "time-scale" : c == V_SETUP ? "setup-ms" : c == V_FLOOR ? "floor-ms" : "refresh";
				if (isfinite(max))
					nkv_err(EINVAL, "want a number %s 0 and <= %g", zero_ok ? ">=" : ">", max);
				else
					nkv_err(EINVAL, "want a number %s 0", zero_ok ? ">=" : ">");
				break;
			}
			if (c == V_SCALE)
				scale = d, scale_set = true;
			else if (c == V_SETUP)
				cfg.xfer_setup_s = d * 1e-3, setup_set = true;
			else if (c == V_FLOOR)
				cfg.xfer_floor_s = d * 1e-3;
			else
				cfg.sched.oracle.refresh_s = d;
			break;
		}
		case V_PBT:
		case V_PCB:
		case V_DCB:
		case V_DKV:
			if (nkv_parse_u64(optarg, &u) || u > UINT32_MAX * (c == V_DKV ? 1024ull : 1ull) ||
			    (c != V_DKV && c != V_DCB && !u)) {
				opt = c == V_PBT ? "prefill-batch-tokens" : c == V_PCB ? "prefill-cache-blocks" :
				      c == V_DCB ? "decode-cache-blocks" : "decode-kv-tokens";
				nkv_err(EINVAL, "want a count%s", c == V_DKV || c == V_DCB ? "" : " >= 1");
				break;
			}
			if (c == V_PBT)
				cfg.prefill_max_tokens = (uint32_t)u;
			else if (c == V_PCB)
				cfg.prefill_cache_blocks = u, pcb_set = true;
			else if (c == V_DCB)
				cfg.decode_cache_blocks = u, dcb_set = true;
			else
				cfg.decode_kv_tokens = u, dkv_set = true;
			break;
		case 'h': usage(stdout); return 0;
		default: return 2; /* nkv_cli_getopt said what is wrong */
		}
		if (opt) {
			fprintf(stderr, "netkv sim validate: --%s '%s': %s\n", opt, optarg, nkv_last_error());
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "netkv sim validate: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (policy && !run_file) {
		fprintf(stderr, "netkv sim validate: --policy picks a CSV from --run's run.json; give --run too\n");
		return 2;
	}
	if (run_file) {
		if (nkv_run_desc_load(run_file, replay ? NULL : policy, &rd)) {
			fprintf(stderr, "netkv sim validate: --run: %s\n", nkv_last_error());
			return 2;
		}
		if (!replay && rd.csv[0])
			replay = rd.csv;
		if (!topo_file && rd.topo[0])
			topo_file = rd.topo;
		if (!trace_file && rd.trace[0])
			trace_file = rd.trace;
		if (!model_set && rd.model[0])
			model = rd.model, gpu = rd.gpu[0] && !gpu_set ? rd.gpu : gpu;
		if (!scale_set && rd.time_scale > 0)
			scale = rd.time_scale;
		if (!flows_set && !tiers && rd.shared >= 0)
			flows_set = true, paced = !rd.shared;
		if (!burst_set && rd.shared == 1) {
			/* netkv fabric's tbf (topo/fabric.c): burst = max(4 ms at the rate, 64 KiB) */
			cfg.link_burst_s = 0.004;
			cfg.link_burst_min = 65536;
		}
		if (!pcb_set && rd.pool_prefill)
			cfg.prefill_cache_blocks = rd.pool_prefill;
		if (!dcb_set && rd.pool_decode)
			cfg.decode_cache_blocks = rd.pool_decode;
		if (!dkv_set && rd.pool_decode)
			cfg.decode_kv_tokens = rd.pool_decode * rd.block_tokens;
	}
	if (!replay || !topo_file) {
		fprintf(stderr, "netkv sim validate: --replay and --topo (or --run with --policy) are required (see --help)\n");
		return 2;
	}
	if (!flows_set)
		paced = tiers;
	if (nkv_perf_preset(model, gpu, &cfg.perf)) {
		fprintf(stderr, "netkv sim validate: %s%s: %s\n", model_opt, gpu_set ? "/--gpu-model" : "", nkv_last_error());
		return 2;
	}
	/* The agents multiply every compute time by their --time-scale. */
	cfg.perf.prefill_a *= scale, cfg.perf.prefill_b *= scale, cfg.perf.prefill_c *= scale;
	cfg.perf.decode_a *= scale, cfg.perf.decode_b *= scale, cfg.perf.decode_c *= scale;
	cfg.isolated_flows = paced;
	cfg.link_peak_Bps = peak_gbps * 1e9 / 8;

	if (nkv_topo_load(topo_file, &topo) || (tiers && paced_topo(topo, gbps, &emu))) {
		fprintf(stderr, "netkv sim validate: %s\n", nkv_last_error());
		goto out;
	}
	cfg.topo = emu ? emu : topo;
	if (!trace_file) {
		/* netkv demo writes its trace beside its records */
		const char *slash = strrchr(replay, '/');
		struct stat st;
		snprintf(tbuf, sizeof(tbuf), "%.*strace.jsonl", slash ? (int)(slash - replay + 1) : 0, replay);
		if (stat(tbuf, &st) == 0 && S_ISREG(st.st_mode))
			trace_file = tbuf;
	} else if (!strcmp(trace_file, "none")) {
		trace_file = NULL;
	}
	if (trace_file && nkv_trace_load(trace_file, NULL, &trace)) {
		fprintf(stderr, "netkv sim validate: %s\n", nkv_last_error());
		goto out;
	}
	/* the run's measured per-push overhead, unless given */
	if (run_file && rd.calib_csv[0] && !setup_set && !peak_set && !paced && cfg.link_peak_Bps > 0 &&
	    (cfg.link_burst_s > 0 || cfg.link_burst_min > 0)) {
		if (calibrate(&cfg, rd.calib_csv, rd.calib_trace, &cfg.xfer_setup_s, &cfg.xfer_conn_s, &peak_gbps, &cal_eff,
			      &cal_err, &cal_n) ||
		    scaled_topo(cfg.topo, cal_eff, &cal_topo)) {
			fprintf(stderr, "netkv sim validate: calibration: %s\n", nkv_last_error());
			goto out;
		}
		cfg.link_peak_Bps = peak_gbps * 1e9 / 8;
		cfg.link_burst_s /= cal_eff;
		cfg.topo = cal_topo;
		calibrated = true;
	}
	/* a run beside tenant flows: their on periods as measured, else the
	 * simulator's own on/off sources at the utilisation asked */
	if (run_file && rd.tenant_on_s > 0) {
		memcpy(cfg.tenant_util, rd.tenant_util, sizeof(cfg.tenant_util));
		cfg.tenant_on_s = rd.tenant_on_s;
		if (rd.tenant_csv[0] && read_tenants(rd.tenant_csv, cfg.topo, &ten_on, &cfg.n_tenant_on)) {
			fprintf(stderr, "netkv sim validate: tenants: %s\n", nkv_last_error());
			goto out;
		}
		cfg.tenant_on = ten_on;
	}
	if (nkv_rec_read(replay, cfg.topo, &rows, &nrows) ||
	    nkv_sim_validate(&cfg, rows, nrows, trace, replay, &v)) {
		fprintf(stderr, "netkv sim validate: %s\n", nkv_last_error());
		goto out;
	}
	if (json) {
		json_t *o = json_object(), *qs = json_object();
		json_object_set_new(o, "replay", json_string(replay));
		json_object_set_new(o, "topology", json_string(nkv_topo_name(cfg.topo)));
		json_object_set_new(o, "flows", json_string(paced ? "paced" : "shared"));
		json_object_set_new(o, "model", json_string(model));
		json_object_set_new(o, "time_scale", json_real(scale));
		json_object_set_new(o, "setup_s", json_real(cfg.xfer_setup_s));
		json_object_set_new(o, "floor_s", json_real(cfg.xfer_floor_s));
		json_object_set_new(o, "tbf", json_pack("{s:f, s:f, s:f}", "burst_s", cfg.link_burst_s, "burst_min_bytes",
							cfg.link_burst_min, "peak_gbps", peak_gbps));
		json_object_set_new(o, "trace", trace_file ? json_string(trace_file) : json_null());
		json_object_set_new(o, "records", json_integer((json_int_t)v->records));
		json_object_set_new(o, "compared", json_integer((json_int_t)v->compared));
		for (int q = 0; q < NKV_VQ_N; q++) {
			const struct nkv_err_stats *s = &v->q[q];
			json_object_set_new(qs, nkv_vq_name(q),
					    json_pack("{s:I, s:I, s:f, s:f, s:f, s:f, s:f}", "n", (json_int_t)s->n, "zero_measured",
						      (json_int_t)s->zero, "median_abs_rel_err", s->median_abs, "p90_abs_rel_err",
						      s->p90_abs, "mean_rel_err", s->mean_signed, "measured_p50_s",
						      s->meas_p50_s, "predicted_p50_s", s->pred_p50_s));
		}
		json_object_set_new(o, "quantities", qs);
		double bm[B_N], bp[B_N];
		json_t *bj = json_object();
		breakdown(v, bm, bp);
		for (int b = 0; b < B_N; b++)
			json_object_set_new(bj, bname[b], json_pack("{s:o, s:f}", "measured_mean_s",
								    isnan(bm[b]) ? json_null() : json_real(bm[b]),
								    "predicted_mean_s", bp[b]));
		json_object_set_new(o, "ttft_breakdown", bj);
		double tm[NKV_TIERS], sm[SIZE_N];
		size_t tc[NKV_TIERS], sc[SIZE_N];
		json_t *tj = json_object(), *sj = json_object();
		by_group(v, tier_of, NKV_TIERS, tm, tc);
		by_group(v, size_of, SIZE_N, sm, sc);
		for (int t = 0; t < NKV_TIERS; t++)
			if (tc[t])
				json_object_set_new(tj, nkv_tier_name(t), json_pack("{s:I, s:f}", "n", (json_int_t)tc[t],
										    "median_abs_rel_err", tm[t]));
		for (int t = 0; t < SIZE_N; t++)
			if (sc[t])
				json_object_set_new(sj, size_name[t], json_pack("{s:I, s:f}", "n", (json_int_t)sc[t],
										"median_abs_rel_err", sm[t]));
		json_object_set_new(o, "transfer_by_tier", tj);
		json_object_set_new(o, "transfer_by_measured_time", sj);
		if (calibrated)
			json_object_set_new(o, "calibration", json_pack("{s:s, s:f, s:f, s:f, s:f, s:I, s:f}", "csv", rd.calib_csv,
									"setup_s", cfg.xfer_setup_s, "conn_s", cfg.xfer_conn_s, "rate_share", cal_eff,
									"peak_gbps", peak_gbps, "pushes", (json_int_t)cal_n,
									"median_abs_rel_err", cal_err));
		if (cfg.tenant_util[NKV_TIER_POD] > 0 || cfg.tenant_util[NKV_TIER_CORE] > 0) /* the run met tenants */
			json_object_set_new(o, "tenants", json_pack("{s:f, s:f, s:f, s:I}", "pod", cfg.tenant_util[NKV_TIER_POD],
								    "core", cfg.tenant_util[NKV_TIER_CORE], "on_s",
								    cfg.tenant_on_s, "on_periods_replayed",
								    (json_int_t)cfg.n_tenant_on));
		json_object_set_new(o, "transfer_goal_met", json_boolean(v->q[NKV_VQ_TRANSFER].n &&
									  v->q[NKV_VQ_TRANSFER].median_abs <= 0.10));
		nkv_json_print(stdout, o);
	} else {
		printf("validate %s: %zu records, %zu finished and simulated\n", replay, v->records, v->compared);
		if (calibrated)
			printf("  per-push overhead measured on the run's calibration pushes (%zu, %s): setup %.3f ms, peak "
			       "%g Gb/s, shaped links carry %.0f%% of their rate (their median |err| %.1f%%); a connection's "
			       "first push + %.3f ms\n", cal_n, rd.calib_csv, cfg.xfer_setup_s * 1e3, peak_gbps, cal_eff * 100,
			       cal_err * 100, cfg.xfer_conn_s * 1e3);
		if (cfg.n_tenant_on)
			printf("  tenants: pod %g, core %g asked; their %zu link on periods replayed as measured (%s)\n",
			       cfg.tenant_util[NKV_TIER_POD], cfg.tenant_util[NKV_TIER_CORE], cfg.n_tenant_on, rd.tenant_csv);
		else if (cfg.tenant_util[NKV_TIER_POD] > 0 || cfg.tenant_util[NKV_TIER_CORE] > 0)
			printf("  tenants: pod %g, core %g, mean on %g s (simulated on/off sources at the utilisation asked; "
			       "the run recorded no schedule)\n", cfg.tenant_util[NKV_TIER_POD],
			       cfg.tenant_util[NKV_TIER_CORE], cfg.tenant_on_s);
		char tbf[96] = "";
		if (cfg.link_burst_s > 0 || cfg.link_burst_min > 0)
			snprintf(tbf, sizeof(tbf), ", tbf buckets max(%g ms, %.0f B) at peak %g Gb/s", cfg.link_burst_s * 1e3,
				 cfg.link_burst_min, peak_gbps);
		printf("  topology %s, flows %s%s%s, transfer setup %g ms, floor %g ms; model %s, compute x %g; trace %s\n",
		       nkv_topo_name(cfg.topo), paced ? "paced per path" : "max-min shared",
		       tiers ? " (capacities from --tier-gbps)" : "", tbf, cfg.xfer_setup_s * 1e3, cfg.xfer_floor_s * 1e3, model, scale,
		       trace_file ? trace_file : "none (no prefix caching)");
		printf("  %-9s %6s %12s %10s %10s %13s %13s\n", "quantity", "n", "median|err|", "p90|err|", "bias",
		       "measured p50", "predicted p50");
		for (int q = 0; q < NKV_VQ_N; q++) {
			const struct nkv_err_stats *s = &v->q[q];
			printf("  %-9s %6zu %11.1f%% %9.1f%% %+9.1f%% %10.3f ms %10.3f ms", nkv_vq_name(q), s->n,
			       s->median_abs * 100, s->p90_abs * 100, s->mean_signed * 100, s->meas_p50_s * 1e3,
			       s->pred_p50_s * 1e3);
			if (s->zero)
				printf("   (%zu with 0 measured left out)", s->zero);
			putchar('\n');
		}
		double bm[B_N], bp[B_N];
		breakdown(v, bm, bp);
		printf("  TTFT parts, mean ms  ");
		for (int b = 0; b < B_N; b++)
			printf(" %12s", bname[b]);
		printf("\n  %-21s", "    measured");
		for (int b = 0; b < B_N; b++)
			printf(" %12.3f", bm[b] * 1e3);
		printf("\n  %-21s", "    predicted");
		for (int b = 0; b < B_N; b++)
			printf(" %12.3f", bp[b] * 1e3);
		printf("\n");
		double tm[NKV_TIERS], sm[SIZE_N];
		size_t tc[NKV_TIERS], sc[SIZE_N];
		by_group(v, tier_of, NKV_TIERS, tm, tc);
		by_group(v, size_of, SIZE_N, sm, sc);
		printf("  transfer by tier, median |err|:");
		for (int t = 0; t < NKV_TIERS; t++)
			if (tc[t])
				printf("  %s %.1f%% (n=%zu)", nkv_tier_name(t), tm[t] * 100, tc[t]);
		printf("\n  transfer by measured push time, median |err|:");
		for (int t = 0; t < SIZE_N; t++)
			if (sc[t])
				printf("  %s %.1f%% (n=%zu)", size_name[t], sm[t] * 100, sc[t]);
		printf("\n");
		printf("  goal (transfer median |err| <= 10%%): %s\n",
		       v->q[NKV_VQ_TRANSFER].n && v->q[NKV_VQ_TRANSFER].median_abs <= 0.10 ? "met" : "NOT met");
	}
	if (fit)
		print_fit(v, json ? stderr : stdout);
	rc = 0;
	if (csv && write_pairs(v, csv)) {
		fprintf(stderr, "netkv sim validate: %s\n", nkv_last_error());
		rc = 1;
	}
	if (plot_prefix) {
		char pre[1024];
		size_t l = strlen(plot_prefix);
		snprintf(pre, sizeof(pre), "%.*s", (int)(l > 4 && !strcmp(plot_prefix + l - 4, ".png") ? l - 4 : l),
			 plot_prefix);
		if (plot(v, pre)) {
			fprintf(stderr, "netkv sim validate: %s\n", nkv_last_error());
			rc = 1;
		} else if (!json) {
			printf("  plots: %s-{transfer,ttft,handoff}.png\n", pre);
		}
	}
out:
	nkv_validation_free(v);
	free(rows);
	nkv_trace_free(trace);
	nkv_topo_free(cal_topo);
	free(ten_on);
	nkv_topo_free(emu);
	nkv_topo_free(topo);
	return rc;
}
