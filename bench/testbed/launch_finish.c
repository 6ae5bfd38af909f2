/*
 * `netkv launch finish`: the last step of a `netkv launch slurm` job, also
 * when it is interrupted: reads every policy's replay-POLICY.csv, tells per
 * policy what finished, what failed and the first failure's reason, and
 * writes run.json (the format `netkv demo` writes, run_desc.h) so `netkv sim
 * validate --run` and tools/plot-replay take the folder as it is.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster.h" /* nkv__testbed_check_policies */
#include "launch.h"
#include "netkv_topo.h"
#include "nkv_cli.h"
#include "nkv_util.h"
#include "records.h"
#include "run_desc.h"

static void finish_usage(FILE *f)
{
	fprintf(f,
		"usage: netkv launch finish -o DIR --topo FILE --prefill LIST --decode LIST --policies LIST [options]\n"
		"The last step of a `netkv launch slurm` job (it runs it, also when the job is interrupted):\n"
		"reads DIR/replay-POLICY.csv of every policy, prints requests done / failed / lost, blocks\n"
		"verified ok / bad and TTFT per policy with the first failure's reason, and writes DIR/run.json\n"
		"for `netkv sim validate --run`. Exit 1 when a policy has no records, a request that did not\n"
		"finish or a bad block.\n"
		"  --requests N --rate-scale X --time-scale X --model M --blocks N   as the job ran them\n"
		"  --mode M       slurm | fabric (run.json's mode)\n"
		"  --note TEXT    why the job ended early (kept in run.json)\n");
}

int nkv_cmd_launch_finish(int argc, char **argv)
{
	enum { O_TOPO = 256, O_PREFILL, O_DECODE, O_POLICIES, O_REQUESTS, O_RATE, O_TS, O_MODEL, O_BLOCKS, O_MODE,
	       O_NOTE };
	static const struct option opts[] = {
		{ "output", 1, 0, 'o' }, { "topo", 1, 0, O_TOPO }, { "prefill", 1, 0, O_PREFILL },
		{ "decode", 1, 0, O_DECODE }, { "policies", 1, 0, O_POLICIES }, { "requests", 1, 0, O_REQUESTS },
		{ "rate-scale", 1, 0, O_RATE }, { "time-scale", 1, 0, O_TS }, { "model", 1, 0, O_MODEL },
		{ "blocks", 1, 0, O_BLOCKS }, { "mode", 1, 0, O_MODE }, { "note", 1, 0, O_NOTE }, { "help", 0, 0, 'h' },
		{ 0, 0, 0, 0 } };
	const char *dir = NULL, *topo = NULL, *prefill = NULL, *decode = NULL, *policies = NULL, *model = "llama3-8b";
	const char *mode = "slurm", *note = NULL;
	uint32_t requests = 0, blocks = 64;
	double rate = 1, ts = 1;
	static const char cmd[] = "launch finish";
	int c, bad = 0;

	optind = 1;
	while ((c = nkv_cli_getopt(argc, argv, "ho:", opts, NULL)) != -1) {
		switch (c) {
		case 'o': dir = optarg; break;
		case O_TOPO: topo = optarg; break;
		case O_PREFILL: prefill = optarg; break;
		case O_DECODE: decode = optarg; break;
		case O_POLICIES: policies = optarg; break;
		case O_MODEL: model = optarg; break;
		case O_MODE: mode = optarg; break;
		case O_NOTE: note = optarg; break;
		case O_REQUESTS: bad = nkv_cli_u32(cmd, "--requests", optarg, 1, UINT32_MAX, &requests); break;
		case O_BLOCKS: bad = nkv_cli_u32(cmd, "--blocks", optarg, 1, 1u << 20, &blocks); break;
		case O_RATE: bad = nkv_cli_double(cmd, "--rate-scale", optarg, 1e-3, 1e6, &rate); break;
		case O_TS: bad = nkv_cli_time_scale(cmd, optarg, &ts); break;
		case 'h': finish_usage(stdout); return 0;
		default: return 2;
		}
		if (bad)
			return 2;
	}
	if (optind != argc || !dir || !topo || !prefill || !decode || !policies) {
		fprintf(stderr, "netkv launch finish: -o, --topo, --prefill, --decode and --policies are required\n");
		return 2;
	}
	if (strcmp(mode, "slurm") && strcmp(mode, "fabric")) {
		fprintf(stderr, "netkv launch finish: --mode '%s': expected slurm or fabric\n", mode);
		return 2;
	}
	if (nkv__testbed_check_policies(policies, 16)) {
		fprintf(stderr, "netkv launch finish: --policies '%s': %s\n", policies, nkv_last_error());
		return 2;
	}
	struct nkv_topo *t = NULL;
	if (nkv_topo_load(topo, &t)) {
		fprintf(stderr, "netkv launch finish: %s\n", nkv_last_error());
		return 1;
	}
	const char *names[16];
	bool ok[16];
	int np = 0, failures = 0;
	char *list = strdup(policies), *sv = NULL;
	if (!list) {
		nkv_topo_free(t);
		fprintf(stderr, "netkv launch finish: out of memory\n");
		return 1;
	}
	printf("%-8s %5s %6s %5s | %13s | %9s %9s | %s\n", "policy", "done", "failed", "lost", "blocks ok/bad", "TTFT mean",
	       "p99", "records");
	for (char *pol = strtok_r(list, ",", &sv); pol && np < 16; pol = strtok_r(NULL, ",", &sv)) {
		char csv[PATH_MAX];
		struct nkv_rec_row *rows = NULL;
		size_t n = 0, done = 0, failed = 0, lost = 0;
		int64_t bok = 0, bbad = 0;
		const char *why = NULL;
		snprintf(csv, sizeof(csv), "%s/replay-%s.csv", dir, pol);
		names[np] = pol;
		if (access(csv, F_OK)) {
			char part[PATH_MAX + 8];
			snprintf(part, sizeof(part), "%s.part", csv);
			printf("%-8s %5s %6s %5s | %13s | %9s %9s | none: %s%s%s\n", pol, "-", "-", "-", "-", "-", "-",
			       access(part, F_OK) ? "the policy did not run to its replay's end"
						  : "its replay was stopped by a signal (what it wrote: ",
			       access(part, F_OK) ? "" : part, access(part, F_OK) ? "" : ")");
			ok[np++] = false;
			failures++;
			continue;
		}
		if (nkv_rec_read(csv, t, &rows, &n)) {
			printf("%-8s %5s %6s %5s | %13s | %9s %9s | unreadable: %s\n", pol, "-", "-", "-", "-", "-", "-",
			       nkv_last_error());
			ok[np++] = false;
			failures++;
			continue;
		}
		double *ttft = malloc((n + 1) * sizeof(double));
		for (size_t i = 0; i < n; i++) {
			const struct nkv_rec_row *r = &rows[i];
			if (r->status == NKV_REC_ST_OK && ttft)
				ttft[done++] = r->ttft_s;
			else if (r->status == NKV_REC_ST_LOST)
				lost++;
			else
				failed++;
			if (r->status != NKV_REC_ST_OK && !why)
				why = r->reason[0]		    ? r->reason
				      : r->status == NKV_REC_ST_LOST ? "lost: no record came within the replay's --timeout"
								    : "no reason given";
			bok += r->blocks_ok > 0 ? r->blocks_ok : 0;
			bbad += r->blocks_bad > 0 ? r->blocks_bad : 0;
		}
		double mean = 0;
		for (size_t i = 0; i < done; i++)
			mean += ttft[i] / (double)done;
		if (ttft)
			nkv_sort_doubles(ttft, done);
		char bl[48];
		snprintf(bl, sizeof(bl), "%lld/%lld", (long long)bok, (long long)bbad);
		bool good = n > 0 && done == n && bbad == 0;
		printf("%-8s %5zu %6zu %5zu | %13s | %7.1fms %7.1fms | %s%s%s\n", pol, done, failed, lost, bl, mean * 1e3,
		       done ? nkv_percentile(ttft, done, 0.99) * 1e3 : 0.0, csv, why ? "; first failure: " : "",
		       why ? why : "");
		ok[np++] = good;
		failures += !good;
		free(ttft);
		free(rows);
	}
	nkv_topo_free(t);
	char runjson[PATH_MAX], trace[PATH_MAX], reason[512];
	snprintf(runjson, sizeof(runjson), "%s/run.json", dir);
	snprintf(trace, sizeof(trace), "%s/trace.jsonl", dir);
	snprintf(reason, sizeof(reason), "netkv launch on a Slurm allocation%s%s%s",
		 !strcmp(mode, "fabric") ? ", agents in the emulated fabric's host namespaces" : "",
		 note ? "; ended early: " : "", note ? note : "");
	struct nkv_run_info info = { .mode = mode, .mode_reason = reason, .scale = 1, .time_scale = ts, .trace = trace,
				     .requests = requests, .speed = rate, .dir = dir, .npolicies = np, .policies = names,
				     .policy_ok = ok, .prefill = prefill, .decode = decode, .kv_model = model,
				     .topo = topo, .pool_blocks = blocks };
	int rc = nkv_run_desc_write(runjson, &info);
	free(list);
	if (rc) {
		fprintf(stderr, "netkv launch finish: %s\n", nkv_last_error());
		return 1;
	}
	printf("wrote %s (netkv sim validate --run %s --policy POLICY; tools/plot-replay %s)%s%s\n", runjson, runjson, dir,
	       note ? "; the job ended early: " : "", note ? note : "");
	return failures || note ? 1 : 0;
}
