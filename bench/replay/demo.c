/*
 * `netkv demo`: the testbed on this box in one command. For each policy it
 * starts a scheduler, 2 prefill and 4 decode agents over loopback (tiers
 * emulated by per-path pacing: the decodes sit one per tier from the
 * prefills' host: same leaf, same pod, and two across pods), replays the
 * trace with --verify on, stops everything, and prints one comparison
 * table. Ctrl-C stops every child too.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "cluster.h"
#include "netkv_commands.h"
#include "nkv_util.h"
#include "replay.h"

static struct cluster *g_cluster;

static void on_sigint(int sig)
{
	(void)sig;
	/* Async-signal-safe: kill the children and leave. */
	if (g_cluster)
		for (int i = 0; i < g_cluster->n; i++)
			if (g_cluster->pid[i] > 0)
				kill(g_cluster->pid[i], SIGKILL);
	static const char msg[] = "\nnetkv demo: interrupted, children stopped\n";
	(void)!write(2, msg, sizeof(msg) - 1);
	_exit(130);
}

/* A chatbot-like Mooncake trace: Poisson arrivals, conversations that grow
 * on a shared system prompt (prefix sharing), lognormal-ish lengths. */
static int gen_trace(const char *path, unsigned n, double rate, uint64_t seed)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return nkv_err(errno, "%s: %s", path, strerror(errno));
	uint64_t s = seed ? seed : 1, next_id = 1000;
	double t = 0;
#define RND() (s ^= s << 13, s ^= s >> 7, s ^= s << 17, (double)(s >> 11) / 9007199254740992.0)
	uint64_t conv_ids[8][64];
	unsigned conv_len[8] = { 0 };
	for (unsigned i = 0; i < n; i++) {
		t += -log(1 - RND()) / rate;
		unsigned c = (unsigned)(RND() * 8);
		if (conv_len[c] == 0 || conv_len[c] > 40 || RND() < 0.2) {
			/* new conversation: 4 blocks of shared system prompt (ids 0..3) */
			conv_len[c] = 4;
			for (unsigned k = 0; k < 4; k++)
				conv_ids[c][k] = k;
		}
		unsigned grow = 1 + (unsigned)(RND() * 6);
		for (unsigned k = 0; k < grow && conv_len[c] < 64; k++)
			conv_ids[c][conv_len[c]++] = next_id++;
		unsigned input = conv_len[c] * 512 - (unsigned)(RND() * 500);
		unsigned output = 32 + (unsigned)(RND() * RND() * 480);
		fprintf(f, "{\"timestamp\": %llu, \"input_length\": %u, \"output_length\": %u, \"hash_ids\": [",
			(unsigned long long)(t * 1000), input, output);
		for (unsigned k = 0; k < conv_len[c]; k++)
			fprintf(f, "%s%llu", k ? ", " : "", (unsigned long long)conv_ids[c][k]);
		fprintf(f, "]}\n");
	}
#undef RND
	return fclose(f) ? nkv_err(EIO, "%s: write failed", path) : 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: netkv demo [options]\n"
		"Starts a scheduler + 2 prefill + 4 decode agents over loopback for each policy,\n"
		"replays a trace with --verify, and prints TTFT / TBT / SLO per policy.\n"
		"  --trace FILE       Mooncake JSONL (default: a generated chatbot-like trace)\n"
		"  --requests N       requests to replay (default 150)\n"
		"  --rate R           generated trace: arrivals per second (default 8)\n"
		"  --speed X          trace time / X (default 1)\n"
		"  --policies LIST    comma-separated (default rr,cla*,netkv)\n"
		"  --time-scale X     emulated compute time x X (default 0.1)\n"
		"  --tier-gbps LIST   pacing per tier host,leaf,pod,core in Gb/s (default 0,8,2,0.5)\n"
		"  --dir DIR          work dir for logs and files (default /tmp/netkv-demo-PID)\n"
		"  --json             results as JSON on stdout\n");
}

int nkv_cmd_demo(int argc, char **argv)
{
	const char *trace = NULL, *policies = "rr,cla*,netkv", *tiers = "0,8,2,0.5", *dir_arg = NULL;
	unsigned requests = 150;
	double speed = 1, scale = 0.1, rate = 8;
	bool json = false;
	static const struct option opts[] = {
		{ "trace", 1, 0, 'f' }, { "requests", 1, 0, 'n' }, { "speed", 1, 0, 'x' }, { "policies", 1, 0, 'p' },
		{ "time-scale", 1, 0, 'S' }, { "tier-gbps", 1, 0, 'T' }, { "dir", 1, 0, 'd' }, { "json", 0, 0, 'j' },
		{ "rate", 1, 0, 'r' }, { "help", 0, 0, 'h' }, { 0, 0, 0, 0 } };
	int c;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		double *dp = NULL;
		switch (c) {
		case 'f': trace = optarg; break;
		case 'p': policies = optarg; break;
		case 'T': tiers = optarg; break;
		case 'd': dir_arg = optarg; break;
		case 'j': json = true; break;
		case 'x': dp = &speed; break;
		case 'S': dp = &scale; break;
		case 'r': dp = &rate; break;
		case 'n':
			if (nkv_parse_u32(optarg, &requests) || requests == 0) {
				fprintf(stderr, "netkv demo: --requests '%s': expected a count >= 1\n", optarg);
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
		if (dp && (nkv_parse_double(optarg, dp) || !(*dp > 0) || !isfinite(*dp))) {
			fprintf(stderr, "netkv demo: '%s': expected a number > 0\n", optarg);
			return 2;
		}
	}
	char dir[256], path[512], self[512];
	if (dir_arg)
		snprintf(dir, sizeof(dir), "%s", dir_arg);
	else
		snprintf(dir, sizeof(dir), "/tmp/netkv-demo-%d", (int)getpid());
	mkdir(dir, 0755);
	ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (sl <= 0) {
		fprintf(stderr, "netkv demo: cannot find my own binary\n");
		return 1;
	}
	self[sl] = 0;
	if (!trace) {
		snprintf(path, sizeof(path), "%s/trace.jsonl", dir);
		if (gen_trace(path, requests, rate, 42)) {
			fprintf(stderr, "netkv demo: %s\n", nkv_last_error());
			return 1;
		}
		trace = path;
	}
	signal(SIGINT, on_sigint);
	signal(SIGTERM, on_sigint);
	fprintf(stderr, "netkv demo: 2 prefill (h0g0, h0g1) + 4 decode agents (h1g0 leaf, h2g0 pod, h4g0 and h5g0 core)\n"
			"  over loopback, tiers paced at %s Gb/s (host,leaf,pod,core), compute x %g, --verify on;\n"
			"  trace %s (%u requests), logs in %s/\n", tiers, scale, trace, requests, dir);
	char token[32], addr[32];
	snprintf(token, sizeof(token), "demo-%d", (int)getpid());
	char *list = strdup(policies), *save = NULL;
	struct { char name[32]; struct replay_result r; int rc; } res[16];
	int np = 0, failures = 0;
	for (char *pol = strtok_r(list, ",", &save); pol && np < 16; pol = strtok_r(NULL, ",", &save)) {
		struct cluster cl;
		snprintf(addr, sizeof(addr), "127.0.0.1:%d", 17400 + (int)(getpid() % 2000) + np);
		struct cluster_opts co = { .netkv = self, .dir = dir, .addr = addr, .token = token, .policy = pol,
					   .prefill = "h0g0,h0g1", .decode = "h1g0,h2g0,h4g0,h5g0", .time_scale = scale,
					   .prefill_blocks = 512, .decode_blocks = 512, .tier_gbps = tiers, .verify = true };
		snprintf(res[np].name, sizeof(res[np].name), "%s", pol);
		g_cluster = &cl;
		int rc = cluster_start(&co, &cl);
		if (rc) {
			fprintf(stderr, "netkv demo: %s: %s\n", pol, nkv_last_error());
			cluster_stop(&cl);
			res[np].rc = rc;
			memset(&res[np].r, 0, sizeof(res[np].r));
			np++;
			failures++;
			continue;
		}
		char label[48];
		snprintf(label, sizeof(label), "  %-6s ", pol);
		struct replay_opts ro = { .sched = addr, .token = token, .trace = trace, .speed = speed, .limit = requests,
					  .ttft_slo = 2 * scale, .tbt_slo = 0.1 * scale, .timeout_s = 60, .progress = true,
					  .label = label };
		res[np].rc = nkv_replay_run(&ro, &res[np].r);
		if (res[np].rc) {
			fprintf(stderr, "netkv demo: %s: %s\n", pol, nkv_last_error());
			failures++;
		}
		char csv[600];
		snprintf(csv, sizeof(csv), "%s/replay-%s.csv", dir, pol);
		if (res[np].r.recs && nkv_replay_csv(&res[np].r, csv))
			fprintf(stderr, "netkv demo: %s\n", nkv_last_error());
		cluster_stop(&cl);
		g_cluster = NULL;
		np++;
	}
	free(list);
	if (json) {
		json_t *arr = json_array();
		for (int i = 0; i < np; i++) {
			const struct replay_result *r = &res[i].r;
			json_array_append_new(arr, json_pack("{s:s, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:f}", "policy",
						       res[i].name, "finished", (json_int_t)r->finished, "failed",
						       (json_int_t)r->failed, "ttft_mean_s", r->ttft[0], "ttft_p50_s", r->ttft[1],
						       "ttft_p90_s", r->ttft[2], "ttft_p99_s", r->ttft[3], "tbt_mean_s",
						       r->tbt_mean, "slo_attainment",
						       r->finished ? (double)r->slo_met / (double)r->finished : 0.0,
						       "blocks_bad", (json_int_t)r->blocks_bad, "kv_gb", r->gb));
		}
		char *s = json_dumps(arr, JSON_INDENT(2));
		printf("%s\n", s);
		free(s);
		json_decref(arr);
	} else {
		printf("\n%-7s %5s %5s | %9s %9s %9s %9s | %8s | %6s | %8s | %-23s | %s\n", "policy", "done", "fail",
		       "TTFT mean", "p50", "p90", "p99", "TBT mean", "SLO", "KV GB", "requests leaf/pod/core", "blocks ok/bad");
		for (int i = 0; i < np; i++) {
			const struct replay_result *r = &res[i].r;
			char tiers_s[32];
			snprintf(tiers_s, sizeof(tiers_s), "%zu/%zu/%zu", r->n_tier[1], r->n_tier[2], r->n_tier[3]);
			printf("%-7s %5zu %5zu | %7.1fms %7.1fms %7.1fms %7.1fms | %6.2fms | %5.1f%% | %8.3f | %-23s | %zu/%zu\n",
			       res[i].name, r->finished, r->failed, r->ttft[0] * 1e3, r->ttft[1] * 1e3, r->ttft[2] * 1e3,
			       r->ttft[3] * 1e3, r->tbt_mean * 1e3,
			       r->finished ? 100.0 * (double)r->slo_met / (double)r->finished : 0, r->gb, tiers_s,
			       r->blocks_ok, r->blocks_bad);
		}
		printf("per-request records: %s/replay-POLICY.csv (plots: tools/plot-replay %s)\n", dir, dir);
		printf("(times are wall times of this compressed run: compute x %g; SLO = TTFT <= %g ms and mean TBT <= %g ms;\n"
		       " measured on a shared 2-core box, so expect noise)\n", scale, 2000 * scale, 100 * scale);
	}
	for (int i = 0; i < np; i++) {
		if (res[i].r.blocks_bad)
			failures++;
		nkv_replay_free(&res[i].r);
	}
	return failures ? 1 : 0;
}
