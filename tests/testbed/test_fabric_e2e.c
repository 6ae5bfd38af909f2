/*
 * End to end on the emulated fabric: the 16-GPU tree in network namespaces
 * (tbf at nominal / 200: NIC 2, leaf uplink 1, spine uplink 0.5 Gbit/s),
 * the scheduler on the management network, 2 prefill + 4 decode agents
 * each in its host's namespace on its NIC's address, 100 requests of the
 * Mooncake conversation trace, time compressed, policy rr (so a good share
 * of the KV crosses the core). Every request must finish, every block
 * verify, every record add up; and the bytes that crossed the core must
 * have taken the time the shaped rate says: each tier-3 push no faster
 * than 0.5 Gbit/s (less what the tbf buckets can lend), the fastest one
 * near that rate, and tier-1 pushes clearly faster than tier-3 ones.
 * Exits 77 when not root or without netns / tbf. Namespaces are removed on
 * every way out, a signal included; ones left by a SIGKILLed run are
 * removed by the next.
 */
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>

#include "e2e_common.h"
#include "fabric.h"
#include "netkv_perf.h"

#define SCALE 0.05
#define BLOCK_BYTES (128u * 1024) /* tiny model: 256 B/token x 512 tokens */
#define NREQ 100
#define FSCALE 200.0
#define NIC_GBPS 400.0
#define LEAF_UP_GBPS 200.0
#define SPINE_UP_GBPS 100.0

static int fails;
#define CHECK(c, ...) do { if (!(c)) { fails++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
	fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

static char g_netkv[512], g_prefix[32];
static struct cluster *volatile g_cl;

static void on_signal(int sig)
{
	struct cluster *c = g_cl;
	if (c)
		for (int i = 0; i < c->n; i++)
			if (c->pid[i] > 0)
				kill(c->pid[i], SIGKILL);
	pid_t pid = fork();
	if (pid == 0) {
		char *argv[] = { g_netkv, "fabric", "down", "--prefix", g_prefix, NULL };
		execv(g_netkv, argv);
		_exit(127);
	}
	if (pid > 0)
		waitpid(pid, NULL, 0);
	_exit(128 + sig);
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Effective rates (bit/s) of the pushes of one tier with at least min_bytes. */
static size_t rates(const struct replay_result *r, unsigned tier, uint64_t min_bytes, double *out)
{
	size_t n = 0;
	for (size_t i = 0; i < r->n; i++) {
		const struct replay_rec *x = &r->recs[i];
		if (!x->status && x->tier == tier && x->bytes >= min_bytes && x->xfer_s > 0)
			out[n++] = (double)x->bytes * 8 / x->xfer_s;
	}
	qsort(out, n, sizeof(double), cmp_dbl);
	return n;
}

/* The core's tbf: no tier-3 push may beat its rate by more than the
 * buckets lend (each tbf starts full: burst = max(64 KiB, rate x 4 ms);
 * two of them at the core rate on the path, spine up and core down). */
static void check_shaping(const struct replay_result *r)
{
	double core = SPINE_UP_GBPS * 1e9 / FSCALE, burst = fmax(65536, core / 8 * 0.004) * 2;
	size_t n3 = 0, shown = 0;
	for (size_t i = 0; i < r->n; i++) {
		const struct replay_rec *x = &r->recs[i];
		if (x->status || x->tier != 3 || !x->bytes)
			continue;
		n3++;
		double floor_s = fmax(0, ((double)x->bytes - burst) * 8 / core) * 0.95;
		if (x->xfer_s < floor_s) {
			fails++;
			if (shown++ < 5)
				fprintf(stderr, "FAIL: tier-3 push of %llu bytes took %.1f ms, the shaped %.0f Mbit/s allow no "
						"less than %.1f ms\n", (unsigned long long)x->bytes, x->xfer_s * 1e3, core / 1e6,
					floor_s * 1e3);
		}
	}
	CHECK(n3 >= 10, "only %zu tier-3 transfers: rr should send about half the requests across pods", n3);

	double *r1 = malloc(r->n * sizeof(double)), *r3 = malloc(r->n * sizeof(double));
	size_t k1 = rates(r, 1, 1 << 20, r1), k3 = rates(r, 3, 1 << 20, r3);
	if (k3) {
		/* The best tier-3 push ran near the shaped rate (the bucket may add a little). */
		double best = r3[k3 - 1];
		fprintf(stderr, "tier-3 pushes >= 1 MiB: %zu, effective rate median %.0f, best %.0f Mbit/s (shaped %.0f)\n", k3,
			r3[k3 / 2] / 1e6, best / 1e6, core / 1e6);
		CHECK(best > 0.5 * core && best < 2.0 * core, "best tier-3 rate %.0f Mbit/s: not near the shaped %.0f",
		      best / 1e6, core / 1e6);
	}
	if (k1 && k3) {
		fprintf(stderr, "tier-1 pushes >= 1 MiB: %zu, effective rate median %.0f Mbit/s (shaped %.0f)\n", k1,
			r1[k1 / 2] / 1e6, NIC_GBPS * 1e9 / FSCALE / 1e6);
		CHECK(r1[k1 / 2] > 1.5 * r3[k3 / 2], "tier-1 median %.0f Mbit/s is not clearly above tier-3's %.0f",
		      r1[k1 / 2] / 1e6, r3[k3 / 2] / 1e6);
	}
	CHECK(k3 > 0 && k1 > 0, "no tier-1 or tier-3 push of 1 MiB or more to judge the rates by (%zu, %zu)", k1, k3);
	free(r1);
	free(r3);
}

int main(void)
{
	char trace[512], dir[256], topo[600], nominal[600], addr[48];
	int rc = e2e_paths(g_netkv, sizeof(g_netkv), trace, sizeof(trace), dir, sizeof(dir));
	if (rc)
		return rc;
	if (nkv__cluster_fabric_check()) {
		fprintf(stderr, "skip: %s\n", nkv_last_error());
		e2e_cleanup(dir);
		return SKIP;
	}
	snprintf(topo, sizeof(topo), "%s/topo.json", dir);
	snprintf(nominal, sizeof(nominal), "%s/topo-nominal.json", dir);
	if (nkv__cluster_write_topo(nominal, NIC_GBPS, LEAF_UP_GBPS, SPINE_UP_GBPS) ||
	    nkv__cluster_write_topo(topo, NIC_GBPS / FSCALE, LEAF_UP_GBPS / FSCALE, SPINE_UP_GBPS / FSCALE)) {
		fprintf(stderr, "FAIL: topology: %s\n", nkv_last_error());
		return 1;
	}
	snprintf(g_prefix, sizeof(g_prefix), "nkve%d-", (int)getpid());
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	struct cluster_fabric fab;
	if (nkv__cluster_fabric_up('e', nominal, FSCALE, &fab)) {
		fprintf(stderr, "FAIL: fabric up: %s\n", nkv_last_error());
		return 1;
	}
	struct nkv_perf perf;
	nkv_perf_preset("llama3-8b", "h100", &perf);
	snprintf(addr, sizeof(addr), NKV_FABRIC_MGMT_ADDR ":%d", 17500);
	struct cluster cl;
	struct cluster_opts co = { .netkv = g_netkv, .dir = dir, .addr = addr, .token = "fabric-e2e", .policy = "rr",
				   .prefill = "h0g0,h0g1", .decode = "h1g0,h2g0,h4g0,h5g0", .time_scale = SCALE,
				   .prefill_blocks = 512, .decode_blocks = 512, .verify = true, .topo = topo,
				   .fabric = fab.prefix };
	g_cl = &cl;
	if (nkv__cluster_start(&co, &cl)) {
		fprintf(stderr, "FAIL: testbed did not start on the fabric: %s\n", nkv_last_error());
		fails++;
	} else {
		struct replay_opts o = { .sched = addr, .token = "fabric-e2e", .trace = trace, .speed = 3, .limit = NREQ,
					 .ttft_slo = 2 * SCALE, .tbt_slo = 0.1 * SCALE, .timeout_s = 40, .max_output = 200,
					 .progress = true, .label = "fabric e2e " };
		struct replay_result r;
		rc = nkv_replay_run(&o, &r);
		CHECK(rc == 0, "replay: %s", nkv_last_error());
		nkv_replay_print(stderr, &r);
		fails += e2e_check_records(&r, NREQ, perf.decode_a * SCALE, BLOCK_BYTES);
		check_shaping(&r);
		nkv_replay_free(&r);
	}
	nkv__cluster_stop(&cl);
	g_cl = NULL;
	nkv__cluster_fabric_down(&fab);
	/* Nothing of ours is left. */
	char ns[600];
	snprintf(ns, sizeof(ns), "/run/netns/%sh0", fab.prefix);
	CHECK(access(ns, F_OK) != 0, "%s still exists after the fabric went down", ns);
	if (fails)
		fprintf(stderr, "%d checks failed; logs in %s/\n", fails, dir);
	else
		e2e_cleanup(dir);
	return fails ? 1 : 0;
}
