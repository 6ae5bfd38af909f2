/*
 * `netkv bench testbed-soak`: the testbed under sustained load and faults.
 *
 * One testbed on 127.0.0.1 (cluster.c: a scheduler, prefill and decode
 * agents as processes) is fed a generated chatbot-like trace for --step
 * seconds at each of --rates (requests per second, rising), and in every
 * step the faults of --faults are injected one after the other while the
 * load runs: a decode agent killed (SIGKILL) and started again, a decode
 * agent stopped (SIGSTOP) for --stop-for seconds and continued, the
 * scheduler killed and started again on the same port. The replay runs
 * with --resubmit: it reconnects to the restarted scheduler and submits
 * again what had no record, so nothing should be lost. With --no-resubmit
 * (the comparison) the replay that was connected to a killed scheduler
 * reports what it had in flight as lost (with the reason); once the agents
 * are back, the rest of the step's trace is replayed on the new scheduler,
 * so the load goes on.
 *
 * Per step it prints the offered and held request rate (finished / the
 * step's wall time), p99 TTFT of the finished requests, faults survived
 * (the cluster whole again, every agent registered, within --rejoin-deadline
 * of the fault), requests finished, failed (with their reasons) and lost
 * (with theirs); and the scheduler's RSS at the start and the end. Figures
 * are this box's, under whatever else runs on it.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cluster.h"
#include "nkv_cli.h"
#include "nkv_json_out.h"
#include "nkv_util.h"
#include "replay.h"
#include "testbed_cli.h"

enum { F_KILL = 1, F_STOP = 2, F_SCHED = 4 };

struct soak {
	struct cluster cl;
	struct cluster_opts co;
	char addr[32], token[40], dir[256];
	int nagents;
	char decodes[CLUSTER_MAX][32];
	int ndecodes;
	double rejoin_s;
	bool resubmit;
};

struct step {
	double rate, wall_s, held, ttft_p99, rejoin_s;
	size_t n, finished, failed, lost, resubmitted, blocks_ok, blocks_bad;
	int injected, survived;
	long rss_kib, rss_kill_kib; /* the scheduler's at the end of the step, and just before it was killed */
	struct replay_why failed_why[REPLAY_WHY_MAX + 1], lost_why[REPLAY_WHY_MAX + 1];
	size_t nfailed_why, nlost_why;
};

/* A replay in a thread, so faults can be injected beside it. */
struct rjob {
	struct replay_opts o;
	struct replay_result r;
	int rc;
	char err[NKV_ERRSTR_MAX];
	pthread_t th;
};

static void *rjob_main(void *arg)
{
	struct rjob *j = arg;
	j->rc = nkv_replay_run(&j->o, &j->r);
	snprintf(j->err, sizeof(j->err), "%s", j->rc ? nkv_last_error() : "");
	return NULL;
}

static void nap_until(double t)
{
	for (double now; (now = nkv_now_s()) < t;) {
		double s = t - now;
		struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
		nanosleep(&ts, NULL);
	}
}

static void remove_dir(const char *dir)
{
	char cmd[320];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "soak: could not remove %s\n", dir);
}

static long rss_kib(pid_t pid)
{
	char path[64], line[256];
	long kib = -1;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = pid > 0 ? fopen(path, "r") : NULL;
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib;
}

static pid_t sched_pid(const struct soak *s)
{
	for (int i = 0; i < s->cl.n; i++)
		if (!strcmp(s->cl.name[i], "scheduler"))
			return s->cl.pid[i];
	return 0;
}

/* The cluster whole again: every agent registered within the deadline. */
static bool rejoined(struct soak *s, const char *what, double *took)
{
	double t0 = nkv_now_s();
	int rc = nkv__cluster_wait_agents(&s->cl, s->addr, s->token, s->nagents, s->rejoin_s);
	*took = nkv_now_s() - t0;
	if (rc)
		fprintf(stderr, "soak: after %s: %s\n", what, nkv_last_error());
	return !rc;
}

/* Add a replay's outcome to the step; ttft collects the finished requests' TTFT. */
static void step_add(struct step *st, const struct replay_result *r, bool count_unsent, double *ttft, size_t *nt)
{
	st->finished += r->finished;
	st->failed += r->failed;
	st->lost += r->lost - (count_unsent ? 0 : r->unsent);
	st->resubmitted += r->resubmitted;
	st->blocks_ok += r->blocks_ok;
	st->blocks_bad += r->blocks_bad;
	for (size_t k = 0; k < r->nfailed_why; k++) {
		nkv_replay_why_add(st->failed_why, &st->nfailed_why, r->failed_why[k].reason, r->failed_why[k].n);
		/* a block that failed verification fails its request at the decode: a bad block too */
		if (strstr(r->failed_why[k].reason, "checksum mismatch"))
			st->blocks_bad += r->failed_why[k].n;
	}
	for (size_t i = 0; i < r->n; i++) {
		const struct replay_rec *x = &r->recs[i];
		if (x->done && !x->status)
			ttft[(*nt)++] = x->ttft;
		else if (!x->done && (x->sent || count_unsent))
			nkv_replay_why_add(st->lost_why, &st->nlost_why, x->reason, 1);
	}
}

static int run_step(struct soak *s, int idx, double rate, double step_s, int faults, double stop_s,
		    uint32_t max_output, struct step *st)
{
	memset(st, 0, sizeof(*st));
	st->rate = rate;
	unsigned n = (unsigned)ceil(rate * step_s);
	st->n = n;
	char trace[320], tail[320];
	snprintf(trace, sizeof(trace), "%s/trace-%d.jsonl", s->dir, idx);
	snprintf(tail, sizeof(tail), "%s/trace-%d-rest.jsonl", s->dir, idx);
	int rc = nkv_replay_gen_trace(trace, n, rate, 42 + (uint64_t)idx, 0);
	if (rc)
		return rc;
	double *ttft = calloc((size_t)n + 1, sizeof(double));
	if (!ttft)
		return nkv_err(ENOMEM, "out of memory");
	size_t nt = 0;
	char label[64], plabel[72];
	snprintf(label, sizeof(label), "rate %g/s", rate);
	snprintf(plabel, sizeof(plabel), "%s: ", label);
	struct rjob a = { .o = { .sched = s->addr, .token = s->token, .trace = trace, .speed = 1, .ttft_slo = 1e9,
				 .tbt_slo = 1e9, .timeout_s = 30, .max_output = max_output, .label = plabel,
				 .resubmit = s->resubmit } };
	double t0 = nkv_now_s(), took;
	pthread_create(&a.th, NULL, rjob_main, &a);
	bool sched_restarted = false;
	if (faults & F_KILL) {
		const char *v = s->decodes[idx % s->ndecodes];
		nap_until(t0 + 0.2 * step_s);
		fprintf(stderr, "soak: %s: killing decode agent %s\n", label, v);
		st->injected++;
		if (!nkv__cluster_kill(&s->cl, v)) {
			nap_until(nkv_now_s() + 1);
			if (!nkv__cluster_restart(&s->cl, v) && rejoined(s, "a decode kill", &took))
				st->survived++;
		}
	}
	if (faults & F_STOP) {
		const char *v = s->decodes[(idx + 1) % s->ndecodes];
		nap_until(t0 + 0.45 * step_s);
		fprintf(stderr, "soak: %s: stopping decode agent %s for %g s\n", label, v, stop_s);
		st->injected++;
		if (!nkv__cluster_signal(&s->cl, v, SIGSTOP)) {
			nap_until(nkv_now_s() + stop_s);
			if (!nkv__cluster_signal(&s->cl, v, SIGCONT) && rejoined(s, "a stop", &took))
				st->survived++;
		}
	}
	if (faults & F_SCHED) {
		nap_until(t0 + 0.7 * step_s);
		st->rss_kill_kib = rss_kib(sched_pid(s));
		fprintf(stderr, "soak: %s: killing the scheduler (RSS %ld KiB)\n", label, st->rss_kill_kib);
		st->injected++;
		if (!nkv__cluster_kill(&s->cl, "scheduler")) {
			nap_until(nkv_now_s() + 1);
			sched_restarted = !nkv__cluster_restart(&s->cl, "scheduler");
			if (sched_restarted && rejoined(s, "a scheduler restart", &st->rejoin_s))
				st->survived++;
		}
	}
	pthread_join(a.th, NULL);
	if (a.rc && !sched_restarted)
		fprintf(stderr, "soak: %s: replay: %s\n", label, a.err);
	size_t sent = 0;
	for (size_t i = 0; i < a.r.n; i++)
		sent += a.r.recs[i].sent;
	/* the rest of the step's trace on the restarted scheduler */
	bool rest = sched_restarted && sent < n && !s->resubmit;
	step_add(st, &a.r, !rest, ttft, &nt);
	nkv_replay_free(&a.r);
	if (rest) {
		struct rjob b = a;
		b.o.trace = tail;
		rc = nkv_replay_gen_trace(tail, n, rate, 42 + (uint64_t)idx, (unsigned)sent);
		if (!rc) {
			rjob_main(&b);
			if (b.rc)
				fprintf(stderr, "soak: %s: replay of the rest: %s\n", label, b.err);
			step_add(st, &b.r, true, ttft, &nt);
			nkv_replay_free(&b.r);
		}
	}
	st->wall_s = nkv_now_s() - t0;
	st->held = st->wall_s > 0 ? (double)st->finished / st->wall_s : 0;
	nkv_sort_doubles(ttft, nt);
	st->ttft_p99 = nkv_percentile(ttft, nt, 0.99);
	st->rss_kib = rss_kib(sched_pid(s));
	free(ttft);
	return rc;
}

static int parse_rates(const char *arg, double *rates, int max)
{
	char buf[256], *save = NULL;
	int n = 0;
	if (strlen(arg) >= sizeof(buf))
		return nkv_err(EINVAL, "--rates: longer than %zu characters", sizeof(buf) - 1);
	snprintf(buf, sizeof(buf), "%s", arg);
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		double r;
		if (n == max || nkv_parse_double(t, &r) || !(r > 0 && r <= 10000))
			return nkv_err(EINVAL, "--rates '%s': expected up to %d rates in (0, 10000] requests/s", arg, max);
		rates[n++] = r;
	}
	return n ? n : nkv_err(EINVAL, "--rates '%s': no rate", arg);
}

static int parse_faults(const char *arg, int *out)
{
	char buf[64], *save = NULL;
	*out = 0;
	if (strlen(arg) >= sizeof(buf))
		return nkv_err(EINVAL, "--faults '%.20s...': expected none or a list of kill, stop, sched", arg);
	snprintf(buf, sizeof(buf), "%s", arg);
	if (!strcmp(arg, "none"))
		return 0;
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (!strcmp(t, "kill"))
			*out |= F_KILL;
		else if (!strcmp(t, "stop"))
			*out |= F_STOP;
		else if (!strcmp(t, "sched"))
			*out |= F_SCHED;
		else
			return nkv_err(EINVAL, "--faults '%s': expected none or a list of kill, stop, sched", arg);
	}
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: netkv bench testbed-soak [options]\n"
		"The testbed on 127.0.0.1 under a generated chatbot-like load at rising rates, with faults\n"
		"injected in every step; prints requests/s held, p99 TTFT, faults survived, requests\n"
		"finished / failed (with reasons) / lost (with reasons), and the scheduler's RSS.\n"
		"  --rates R,R,...    offered load per step, requests/s (default 4,8,16,32)\n"
		"  --step S           seconds of trace per step (default 30)\n"
		"  --faults LIST      kill,stop,sched (default all three) or none: a decode agent SIGKILLed\n"
		"                     and restarted, one SIGSTOPped for --stop-for s, the scheduler SIGKILLed\n"
		"                     and restarted, at 20%%, 45%% and 70%% of each step\n"
		"  --stop-for S       how long a stopped agent stays stopped (default 2)\n"
		"  --no-resubmit      the replay without --resubmit: what a killed scheduler had in flight\n"
		"                     is lost (and counted so); the rest of the step is replayed after it\n"
		"  --rejoin-deadline S  the cluster must be whole again within S after a fault (default 30)\n"
		"  --prefill LIST     prefill instances of the 16-GPU tree (default h0g0,h0g1)\n"
		"  --decode LIST      decode instances (default h1g0,h2g0,h4g0,h5g0)\n"
		"  --blocks N         pool blocks per agent (default 512)\n"
		"  --time-scale X     emulated compute x X (default 0.05)\n"
		"  --max-output N     clamp output tokens (default 200)\n"
		"  --policy P         scheduler policy (default netkv)\n"
		"  -o, --output DIR   work dir: logs, traces (default /tmp/netkv-soak-PID, removed after a\n"
		"                     run that passed)\n"
		"  --json             the figures as JSON on stdout\n"
		"Exits 1 when a fault was not survived, a request was lost (with --no-resubmit: other than\n"
		"to a scheduler's death; those are reported, with their reason), or a block failed verification.\n");
}

static json_t *why_json(const struct replay_why *w, size_t n)
{
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(a, json_pack("{s:s, s:I}", "reason", w[i].reason, "requests", (json_int_t)w[i].n));
	return a;
}

int nkv_cmd_bench_testbed_soak(int argc, char **argv)
{
	double rates[16] = { 4, 8, 16, 32 }, step_s = 30, stop_s = 2, scale = 0.05;
	int nrates = 4, faults = F_KILL | F_STOP | F_SCHED, c;
	uint32_t blocks = 512, max_output = 200;
	const char *prefill = "h0g0,h0g1", *decode = "h1g0,h2g0,h4g0,h5g0", *policy = "netkv", *out = NULL;
	bool json = false;
	struct soak *s = calloc(1, sizeof(*s));
	if (!s)
		return 1;
	s->rejoin_s = 30;
	s->resubmit = true;
	static const struct option opts[] = {
		{ "rates", 1, 0, 'r' }, { "step", 1, 0, 's' }, { "faults", 1, 0, 'f' }, { "stop-for", 1, 0, 'S' },
		{ "rejoin-deadline", 1, 0, 'R' }, { "prefill", 1, 0, 'P' }, { "decode", 1, 0, 'D' },
		{ "blocks", 1, 0, 'b' }, { "time-scale", 1, 0, 'T' }, { "max-output", 1, 0, 'm' },
		{ "policy", 1, 0, 'p' }, { "output", 1, 0, 'o' }, { "json", 0, 0, 'j' }, { "help", 0, 0, 'h' },
		{ "no-resubmit", 0, 0, 'N' }, { 0, 0, 0, 0 } };
	int bad = 0;
	optind = 1;
	while (!bad && (c = nkv_cli_getopt(argc, argv, "ho:", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			if ((nrates = parse_rates(optarg, rates, 16)) < 0)
				bad = fprintf(stderr, "netkv bench testbed-soak: %s\n", nkv_last_error());
			break;
		case 'f':
			if (parse_faults(optarg, &faults))
				bad = fprintf(stderr, "netkv bench testbed-soak: %s\n", nkv_last_error());
			break;
		case 's': bad = nkv_cli_double("bench testbed-soak", "--step", optarg, 5, 86400, &step_s); break;
		case 'S': bad = nkv_cli_double("bench testbed-soak", "--stop-for", optarg, 0.1, 600, &stop_s); break;
		case 'R': bad = nkv_cli_double("bench testbed-soak", "--rejoin-deadline", optarg, 1, 3600, &s->rejoin_s); break;
		case 'T': bad = nkv_cli_time_scale("bench testbed-soak", optarg, &scale); break;
		case 'b': bad = nkv_cli_u32("bench testbed-soak", "--blocks", optarg, 16, 1u << 20, &blocks); break;
		case 'm': bad = nkv_cli_u32("bench testbed-soak", "--max-output", optarg, 1, 1u << 20, &max_output); break;
		case 'P': prefill = optarg; break;
		case 'D': decode = optarg; break;
		case 'p': policy = optarg; break;
		case 'o': out = optarg; break;
		case 'j': json = true; break;
		case 'N': s->resubmit = false; break;
		case 'h': usage(stdout); free(s); return 0;
		default: free(s); return 2;
		}
	}
	if (bad || optind < argc) {
		if (optind < argc)
			fprintf(stderr, "netkv bench testbed-soak: unexpected argument '%s'\n", argv[optind]);
		free(s);
		return 2;
	}
	char self[512];
	ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (sl <= 0) {
		fprintf(stderr, "netkv bench testbed-soak: cannot find the netkv binary: %s\n", strerror(errno));
		free(s);
		return 1;
	}
	self[sl] = 0;
	snprintf(s->dir, sizeof(s->dir), "%s", out ? out : "");
	if (!out)
		snprintf(s->dir, sizeof(s->dir), "/tmp/netkv-soak-%d", (int)getpid());
	mkdir(s->dir, 0755);
	snprintf(s->addr, sizeof(s->addr), "127.0.0.1:%d", 20000 + (int)(getpid() % 20000));
	unsigned char rnd[16];
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		fprintf(stderr, "netkv bench testbed-soak: getrandom: %s\n", strerror(errno));
		free(s);
		return 1;
	}
	for (int i = 0; i < 16; i++)
		snprintf(s->token + 2 * i, 3, "%02x", rnd[i]);
	char list[256], *save = NULL;
	if (strlen(prefill) >= sizeof(list) || strlen(decode) >= sizeof(list)) {
		fprintf(stderr, "netkv bench testbed-soak: --prefill / --decode: longer than %zu characters\n",
			sizeof(list) - 1);
		free(s);
		return 2;
	}
	snprintf(list, sizeof(list), "%s", decode);
	for (char *t = strtok_r(list, ",", &save); t && s->ndecodes < CLUSTER_MAX; t = strtok_r(NULL, ",", &save))
		snprintf(s->decodes[s->ndecodes++], sizeof(s->decodes[0]), "%s", t);
	snprintf(list, sizeof(list), "%s", prefill);
	int nprefill = 0;
	for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save))
		nprefill++;
	s->nagents = nprefill + s->ndecodes;
	if (!nprefill || !s->ndecodes) {
		fprintf(stderr, "netkv bench testbed-soak: --prefill and --decode each need an instance\n");
		free(s);
		return 2;
	}
	s->co = (struct cluster_opts){ .netkv = self, .dir = s->dir, .addr = s->addr, .token = s->token,
				      .policy = policy, .prefill = prefill, .decode = decode, .time_scale = scale,
				      .prefill_blocks = blocks, .decode_blocks = blocks, .verify = true };
	fprintf(stderr, "soak: testbed on %s (%d prefill + %d decode agents), logs in %s/\n", s->addr, nprefill,
		s->ndecodes, s->dir);
	if (nkv__cluster_start(&s->co, &s->cl)) {
		fprintf(stderr, "netkv bench testbed-soak: testbed did not start: %s\n", nkv_last_error());
		nkv__cluster_stop(&s->cl);
		free(s);
		return 1;
	}
	long rss0 = rss_kib(sched_pid(s));
	struct step st[16];
	int rc = 0, done = 0;
	for (int i = 0; i < nrates && !rc; i++, done++)
		rc = run_step(s, i, rates[i], step_s, faults, stop_s, max_output, &st[i]);
	long rss1 = rss_kib(sched_pid(s));
	nkv__cluster_stop(&s->cl);
	if (rc)
		fprintf(stderr, "netkv bench testbed-soak: %s\n", nkv_last_error());

	size_t lost = 0, failed = 0;
	int inj = 0, surv = 0;
	for (int i = 0; i < done; i++)
		lost += st[i].lost, failed += st[i].failed, inj += st[i].injected, surv += st[i].survived;
	if (json) {
		json_t *steps = json_array();
		for (int i = 0; i < done; i++)
			json_array_append_new(steps, json_pack(
				"{s:f, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:i, s:i, s:f, s:I, s:I, s:I, s:I, s:o, s:o}", "rate", st[i].rate,
				"requests", (json_int_t)st[i].n, "finished", (json_int_t)st[i].finished, "failed",
				(json_int_t)st[i].failed, "lost", (json_int_t)st[i].lost, "resubmitted",
				(json_int_t)st[i].resubmitted, "wall_s", st[i].wall_s,
				"held_rps", st[i].held, "ttft_p99_s", st[i].ttft_p99, "faults_injected", st[i].injected,
				"faults_survived", st[i].survived, "sched_rejoin_s", st[i].rejoin_s, "blocks_ok",
				(json_int_t)st[i].blocks_ok, "blocks_bad", (json_int_t)st[i].blocks_bad, "sched_rss_kib",
				(json_int_t)st[i].rss_kib, "sched_rss_before_kill_kib", (json_int_t)st[i].rss_kill_kib, "failed_reasons", why_json(st[i].failed_why, st[i].nfailed_why),
				"lost_reasons", why_json(st[i].lost_why, st[i].nlost_why)));
		json_t *o = nkv_json_with_meta(json_pack("{s:o, s:b, s:I, s:I, s:i, s:i, s:I, s:I}", "steps", steps,
							 "resubmit", s->resubmit, "lost",
							 (json_int_t)lost, "failed", (json_int_t)failed, "faults_injected",
							 inj, "faults_survived", surv, "sched_rss_start_kib",
							 (json_int_t)rss0, "sched_rss_end_kib", (json_int_t)rss1));
		char *js = json_dumps(o, NKV_JSON_FLAGS);
		printf("%s\n", js);
		free(js);
		json_decref(o);
	} else {
		printf("%-7s %8s %8s %6s %5s %5s %8s %11s %7s %8s %8s %13s %11s\n", "rate/s", "requests", "finished",
		       "failed", "lost", "resub", "held/s", "p99 TTFT", "faults", "rejoin s", "blk bad", "RSS@kill KiB", "RSS@end KiB");
		for (int i = 0; i < done; i++)
			printf("%-7g %8zu %8zu %6zu %5zu %5zu %8.2f %9.1fms %4d/%-2d %8.2f %8zu %13ld %11ld\n", st[i].rate,
			       st[i].n, st[i].finished, st[i].failed, st[i].lost, st[i].resubmitted, st[i].held, st[i].ttft_p99 * 1e3, st[i].survived,
			       st[i].injected, st[i].rejoin_s, st[i].blocks_bad, st[i].rss_kill_kib, st[i].rss_kib);
		for (int i = 0; i < done; i++) {
			for (size_t k = 0; k < st[i].nfailed_why; k++)
				printf("  rate %g: failed %zu: %s\n", st[i].rate, st[i].failed_why[k].n, st[i].failed_why[k].reason);
			for (size_t k = 0; k < st[i].nlost_why; k++)
				printf("  rate %g: lost %zu: %s\n", st[i].rate, st[i].lost_why[k].n, st[i].lost_why[k].reason);
		}
	}
	/* The verdict: lost requests are expected only where a scheduler died
	 * with them in flight and the replay did not resubmit; anything else
	 * lost, a fault not survived or a block that failed verification fails
	 * the soak. */
	size_t bad_lost = 0, blocks_bad = 0, resub = 0;
	for (int i = 0; i < done; i++) {
		blocks_bad += st[i].blocks_bad;
		resub += st[i].resubmitted;
		for (size_t k = 0; k < st[i].nlost_why; k++)
			if (s->resubmit || !strstr(st[i].lost_why[k].reason, "scheduler connection lost after "))
				bad_lost += st[i].lost_why[k].n;
	}
	if (!json)
		printf("faults survived %d of %d; requests lost %zu (%zu of them failing the run), resubmitted %zu%s,"
		       " failed %zu; scheduler RSS %ld KiB at start, %ld KiB at end (the last scheduler started)\n",
		       surv, inj, lost, bad_lost, resub, s->resubmit ? "" : " (--no-resubmit)", failed, rss0, rss1);
	bool ok = !rc && surv == inj && !bad_lost && !blocks_bad;
	if (!ok)
		fprintf(stderr, "soak: FAILED: %d of %d faults survived, %zu requests lost%s,"
				" %zu blocks failed verification%s; logs in %s/\n", surv, inj, bad_lost,
			s->resubmit ? "" : " other than to a scheduler's death", blocks_bad,
			rc ? ", the run stopped early" : "", s->dir);
	else if (out)
		fprintf(stderr, "soak: logs in %s/\n", s->dir);
	else
		remove_dir(s->dir);
	free(s);
	return ok ? 0 : 1;
}
