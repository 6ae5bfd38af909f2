/*
 * The testbed over verbs: scheduler + 1 prefill + 2 decode agents on this
 * host's RDMA device (in CI: soft-RoCE inside tools/rxe-vm, through
 * tests/verbs/run-suite), 36 requests of the conversation trace (those of
 * at most 12 blocks: soft-RoCE under qemu's TCG emulation moves a few
 * MB/s). Every request must finish, every block verify (the pattern check;
 * the verbs backend carries no block sums yet), and every record add up as
 * in test_tb_e2e.
 *
 * Pools are paged in 16-token pages and small (32 blocks per decode for
 * about 200 blocks of KV), so they churn and a push's pages are scattered:
 * vLLM's layer-major (host pools), block-major (GPU pools).
 *
 * Probes go over the same backend and memory as the KV: a path is probed
 * (4 MiB and more) when idle for a refresh window, 5 s here, since
 * probes every second would fill the emulated NIC.
 *
 * The scheduler listens on the RDMA netdev's address and the decodes on
 * 0.0.0.0: each must advertise the address of the interface routed to the
 * scheduler, the only one rdma_cm can reach it at (loopback cannot carry
 * RoCE).
 *
 * Built twice: test_tb_verbs (host pools) and test_tb_verbs_gpu
 * (NKV_FAKE_GPU: pools in "GPU memory" of the fake device of tests/gpu,
 * which soft-RoCE can only reach through the staging path; the agents run
 * as forked copies of this process, where the fake device is plugged in).
 * Exits 77 without an RDMA device.
 */
#include <errno.h>
#include <signal.h>

#include "../verbs/vtest.h"
#include "e2e_common.h"
#include "netkv_perf.h"
#include "netkv_proto.h"
#include "testbed_cli.h"
#ifdef NKV_FAKE_GPU
#include "fake_gpu.h"
#endif

#define SCALE 0.05
#define BLOCK_BYTES (128u * 1024) /* tiny model: 256 B/token x 512 tokens */
#define NREQ 36
#define MAX_BLOCKS 12 /* 36 such requests: 202 blocks, 25 MiB */

static int fails;
#define CHECK(c, ...) do { if (!(c)) { fails++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
	fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

/* The trace's first n requests of at most max_blocks hash blocks, into
 * path: real requests (ids, shared prefixes, timestamps), small enough for
 * an emulated NIC. Returns 0 when n were found. */
static int small_trace(const char *trace, const char *path, int n, int max_blocks)
{
	FILE *in = fopen(trace, "r"), *out = fopen(path, "w");
	static char line[1 << 16];
	int k = 0;
	while (in && out && k < n && fgets(line, sizeof(line), in)) {
		const char *h = strstr(line, "\"hash_ids\"");
		const char *open = h ? strchr(h, '[') : NULL, *close = open ? strchr(open, ']') : NULL;
		if (!close)
			continue;
		int blocks = 1;
		for (const char *c = open; c < close; c++)
			blocks += *c == ',';
		if (blocks <= max_blocks) {
			fputs(line, out);
			k++;
		}
	}
	if (in)
		fclose(in);
	if (out)
		fclose(out);
	return k == n ? 0 : -1;
}

/* How many of the instances' logs contain s. */
static int logs_with(const char *dir, const char *names, const char *s)
{
	char list[128], *save = NULL;
	int n = 0;
	snprintf(list, sizeof(list), "%s", names);
	for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		char path[512], line[1024];
		snprintf(path, sizeof(path), "%s/agent-%s.log", dir, t);
		FILE *f = fopen(path, "r");
		bool hit = false;
		while (f && !hit && fgets(line, sizeof(line), f))
			hit = strstr(line, s) != NULL;
		if (f)
			fclose(f);
		n += hit;
	}
	return n;
}

int main(void)
{
	char netkv[512], trace[512], dir[256], addr[96], ip[64];
	vt_need_rdma(ip, sizeof(ip));
	int rc = e2e_paths(netkv, sizeof(netkv), trace, sizeof(trace), dir, sizeof(dir));
	if (rc)
		return rc;
	signal(SIGPIPE, SIG_IGN);
	snprintf(addr, sizeof(addr), "%s:%d", ip, 20000 + (int)(getpid() % 20000));
#ifdef NKV_FAKE_GPU
	nkv__gpu_override(&fake_gpu_ops);
	const char *mem = "cuda", *layout = "block";
	int (*agent_main)(int, char **) = nkv_cmd_agent;
	const double speed = 4; /* staging on the fake device over soft-RoCE is the slowest path: queues less */
#else
	const double speed = 10;
	const char *mem = NULL, *layout = NULL;
	int (*agent_main)(int, char **) = NULL;
#endif
	const unsigned page_tokens = 16;
	struct nkv_perf perf;
	nkv_perf_preset("llama3-8b", "h100", &perf);
	const char *prefill = "h0g0", *decode = "h1g0,h2g0";
	struct cluster cl;
	struct cluster_opts co = { .netkv = netkv, .dir = dir, .addr = addr, .token = "verbs-e2e", .policy = "netkv",
				   .prefill = prefill, .decode = decode, .time_scale = SCALE, .prefill_blocks = 48,
				   .decode_blocks = 32, .verify = true, .backend = "verbs", .mem = mem, .layout = layout,
				   .page_tokens = page_tokens, .decode_data = "0.0.0.0:0", .agent_main = agent_main,
				   .sched_refresh = 5 };
	if (nkv__cluster_start(&co, &cl)) {
		fprintf(stderr, "FAIL: testbed did not start: %s\n", nkv_last_error());
		nkv__cluster_stop(&cl);
		e2e_dump_logs(dir);
		return 1;
	}
	char small[600];
	snprintf(small, sizeof(small), "%s/trace.jsonl", dir);
	if (small_trace(trace, small, NREQ, MAX_BLOCKS)) {
		fprintf(stderr, "FAIL: %s has no %d requests of at most %d blocks\n", trace, NREQ, MAX_BLOCKS);
		nkv__cluster_stop(&cl);
		return 1;
	}
	struct replay_opts o = { .sched = addr, .token = "verbs-e2e", .trace = small, .speed = speed, .limit = NREQ,
				 .ttft_slo = 2 * SCALE, .tbt_slo = 0.1 * SCALE, .timeout_s = 240, .max_output = 32,
				 .label = "verbs e2e " };
	struct replay_result r;
	rc = nkv_replay_run(&o, &r);
	CHECK(rc == 0, "replay: %s", nkv_last_error());
	nkv_replay_print(stderr, &r);
	CHECK(r.n == NREQ, "%zu requests loaded, expected %d", r.n, NREQ);
	fails += e2e_check_records(&r, NREQ, perf.decode_a * SCALE, BLOCK_BYTES);
	nkv_replay_free(&r);
	/* a probe result (the first ones go out a refresh window after start) */
	long probes = 0;
	char *st = NULL;
	for (double end = nkv_now_s() + 30; probes <= 0 && nkv_now_s() < end;) {
		free(st);
		st = e2e_status_text(addr, "verbs-e2e");
		const char *pd = st ? strstr(st, "\"probes_done\":") : NULL;
		probes = pd ? strtol(pd + 14, NULL, 10) : 0;
		if (probes <= 0)
			usleep(200 * 1000);
	}
	CHECK(probes > 0, "no probe results reached the scheduler within 30 s: %s", st ? st : "(no status)");
	/* scheduler status shows each agent's path: verbs, and for GPU pools the mode */
	int paths = 0;
	for (const char *q = st; q && (q = strstr(q, "\"path\":\"verbs")); q++)
		paths++;
	CHECK(paths == 3, "status does not show 3 agents on verbs: %s", st ? st : "(no status)");
#ifdef NKV_FAKE_GPU
	CHECK(st && strstr(st, "staging (software RDMA device"), "status does not show the GPU pools' staging: %s",
	      st ? st : "(no status)");
#endif
	free(st);
	nkv__cluster_stop(&cl);

	unsigned long long pushes, pages, ranges;
	e2e_push_stats(dir, prefill, &pushes, &pages, &ranges);
	fprintf(stderr, "pushes %llu: %llu pages of %u tokens in %llu ranges\n", pushes, pages, page_tokens, ranges);
	/* contiguous pages would coalesce into 4 (layer-major) or 1 (block-major) ranges per push */
	CHECK(pushes > 0 && ranges > pushes * 8, "pushes not scattered: %llu ranges for %llu pushes", ranges, pushes);
	CHECK(logs_with(dir, "h0g0,h1g0,h2g0", "up: verbs") == 3, "not every agent ran the verbs backend");
	char want[80];
	snprintf(want, sizeof(want), "data %s:", ip);
	CHECK(logs_with(dir, decode, want) == 2, "a decode on 0.0.0.0 did not advertise %s", ip);
#ifdef NKV_FAKE_GPU
	CHECK(logs_with(dir, "h0g0,h1g0,h2g0", "staging") == 3, "not every agent's GPU pool is on the staging path");
#endif
	if (fails) {
		e2e_dump_logs(dir);
		fprintf(stderr, "%d checks failed; logs in %s/\n", fails, dir);
	} else {
		e2e_cleanup(dir);
	}
	return fails ? 1 : 0;
}
