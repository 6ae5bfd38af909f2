/*
 * `netkv demo`: the testbed on this box in one command. For each policy it
 * starts a scheduler, 2 prefill and 4 decode agents (the decodes sit one
 * per tier from the prefills' host: same leaf, same pod, and two across
 * pods), replays the trace with --verify on, stops everything, and prints
 * one comparison table.
 *
 * Two modes. On the emulated fabric (root, netns and tbf work): the 16-GPU
 * tree is built with `netkv fabric` machinery under a prefix of its own
 * (nkvd<pid>-), each agent runs in its host's namespace on its NIC's
 * address, so KV bytes cross shaped veths and share links; the scheduler
 * and this process sit on the unshaped management network. Else over
 * loopback, tiers emulated by per-path pacing in the prefill agents.
 *
 * With --tenant TIER:UTIL (fabric only) each policy runs twice, without
 * tenants and then beside real tenant flows on the pod / core links
 * (demo_tenants.c). With --control each policy runs once more on the 1:1
 * control: the fabric rebuilt with every uplink at the sum of the NICs
 * below it, where placement cannot win bandwidth, so a gain netkv shows on
 * the oversubscribed fabric and not there is the network's doing.
 *
 * cla* runs with weights tuned in the simulator on the same trace and
 * topology (demo_tune.c). The work dir keeps per policy the per-request
 * CSV, the topology as emulated and run.json, for `netkv sim validate`.
 * Ctrl-C / SIGTERM stop every child and remove every namespace made.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "cluster.h"
#include "demo_calib.h"
#include "demo_tenants.h"
#include "demo_tune.h"
#include "fabric.h"
#include "testbed_cli.h"
#include "nkv_cli.h"
#include "nkv_json_out.h"
#include "nkv_util.h"
#include "netkv_sched.h"
#include "netkv_sim.h"
#include "netkv_topo.h"
#include "replay.h"
#include "run_desc.h"

#define MAX_POLICIES 16

static struct cluster *volatile g_cluster;
static volatile sig_atomic_t g_fabric_up;
static char g_self[512], g_prefix[32];

static void on_sigint(int sig)
{
	(void)sig;
	/* Async-signal-safe: kill the children, remove the namespaces with a
	 * `netkv fabric down` child (fork, execv, waitpid), and leave. */
	struct cluster *c = g_cluster;
	if (c)
		for (int i = 0; i < c->n; i++)
			if (c->pid[i] > 0)
				kill(c->pid[i], SIGKILL);
	if (g_fabric_up) {
		pid_t pid = fork();
		if (pid == 0) {
			char *argv[] = { g_self, "fabric", "down", "--prefix", g_prefix, NULL };
			execv(g_self, argv);
			_exit(127);
		}
		if (pid > 0)
			waitpid(pid, NULL, 0);
	}
	static const char msg[] = "\nnetkv demo: interrupted, children stopped, namespaces removed\n";
	(void)!write(2, msg, sizeof(msg) - 1);
	_exit(130);
}

/* (cluster.h) */
int nkv__testbed_check_policies(const char *list, int max)
{
	char *l = strdup(list), *sv = NULL;
	int n = 0, ret = 0;

	if (!l)
		return nkv_err(ENOMEM, "out of memory");
	for (char *t = strtok_r(l, ",", &sv); t && !ret; t = strtok_r(NULL, ",", &sv))
		if (!nkv_policy_find(t))
			ret = nkv_err(EINVAL, "unknown policy '%s' (rr random load cache cla cla* netkv-topo netkv-static netkv)", t);
		else if (++n > max)
			ret = nkv_err(EINVAL, "more than %d policies", max);
	if (!ret && !n)
		ret = nkv_err(EINVAL, "no policy");
	free(l);
	return ret;
}

/* --decode: 1..8 distinct GPUs of the tree, not the prefills' (h0g0, h0g1). */
static int check_decodes(const char *topo, const char *list)
{
	struct nkv_topo *t;
	char *l = strdup(list), *sv = NULL, seen[8][32];
	int n = 0, ret = l ? nkv_topo_load(topo, &t) : nkv_err(ENOMEM, "out of memory");

	if (ret) {
		free(l);
		return ret;
	}
	for (char *g = strtok_r(l, ",", &sv); g && !ret; g = strtok_r(NULL, ",", &sv)) {
		bool dup = false;
		for (int i = 0; i < n; i++)
			dup |= !strcmp(seen[i], g);
		if (nkv_topo_find(t, g) < 0)
			ret = nkv_err(EINVAL, "no GPU '%s' in the 16-GPU tree (h0g0 .. h7g1)", g);
		else if (!strcmp(g, "h0g0") || !strcmp(g, "h0g1") || dup)
			ret = nkv_err(EINVAL, "'%s' is a prefill or named twice", g);
		else if (n == 8)
			ret = nkv_err(EINVAL, "at most 8 decodes");
		else
			snprintf(seen[n++], sizeof(seen[0]), "%s", g);
	}
	if (!ret && !n)
		ret = nkv_err(EINVAL, "no decode");
	nkv_topo_free(t);
	free(l);
	return ret;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: netkv demo [options]\n"
		"Starts a scheduler + 2 prefill (h0g0, h0g1) + 4 decode agents (h1g0 same leaf, h2g0 same pod,\n"
		"h4g0 and h5g0 across pods) for each policy, replays a trace with --verify, and prints\n"
		"TTFT / TBT / SLO per policy.\n"
		"  --fabric MODE      auto (default): the emulated fabric when this box allows it (root, ip netns,\n"
		"                     tc tbf), else loopback; on: the fabric or fail; off: loopback\n"
		"    fabric: the 16-GPU tree in network namespaces (prefix nkvd<pid>-, removed at the end),\n"
		"    each agent in its host's namespace on its NIC's address, KV bytes crossing tbf-shaped\n"
		"    veths that flows share; scheduler on an unshaped management network (10.78.0.1).\n"
		"  --link-gbps N,L,S  fabric: nominal NIC, leaf uplink, spine uplink Gb/s (default 400,200,100:\n"
		"                     8:1 at the leaf, 4:1 at the spine)\n"
		"  --scale F          fabric: shaped rate = nominal / F (default 200: NIC 2, leaf up 1, spine up\n"
		"                     0.5 Gbit/s, so one flow gets 2 / 1 / 0.5 Gbit/s at tier leaf / pod / core;\n"
		"                     all KV traffic of the demo peaks near 3 Gbit/s, within what 2 cores shape)\n"
		"  --decode LIST      the decode GPUs (default h1g0,h2g0,h4g0,h5g0; e.g. h2g0,h3g0,h4g0,h5g0 leaves\n"
		"                     no decode under the prefills' leaf, so every KV byte crosses the pod or core)\n"
		"  --tier-gbps LIST   loopback: pacing per tier host,leaf,pod,core in Gb/s (default 0,8,2,0.5)\n"
		"  --trace FILE       Mooncake JSONL (default: a generated chatbot-like trace)\n"
		"  --requests N       requests to replay (default 150)\n"
		"  --rate R           generated trace: arrivals per second (default 8)\n"
		"  --seed N           generated trace: seed (default 42)\n"
		"  --rate-scale X     arrival rate x X: trace time / X (default 1)\n"
		"  --policies LIST    comma-separated (default rr,cla*,netkv)\n"
		"  --w-cache X --w-load Y  cla* weights (default: tuned first, in the simulator on this trace\n"
		"                     and topology: grid {0,.25,.5,1,2,4}^2, min mean TTFT)\n"
		"  --tenant TIER:UTIL fabric: other tenants' traffic on TIER (pod or core) at mean utilisation UTIL\n"
		"                     in (0, 1), repeatable (the spelling of netkv sim --tenant). Real TCP flows\n"
		"                     between sibling switches (leaf0 <-> leaf1 for pod, spine0 <-> spine1 for core)\n"
		"                     through the shaped links, on and off (exponential periods, seeded), so no NIC\n"
		"                     carries them and the scheduler learns of them only by measuring. Each policy\n"
		"                     then runs twice: POLICY (no tenants) and POLICY+tenants\n"
		"  --tenant-on S      mean on period of a tenant flow, default 0.1 s\n"
		"  --control          fabric: each policy also runs as POLICY@1:1 on the 1:1 control, the same tree\n"
		"                     rebuilt after the other runs with no oversubscription (leaf uplink 4 x NIC, spine\n"
		"                     uplink 8 x NIC: every tier gives a flow the NIC's rate), without tenants; the\n"
		"                     table then compares netkv with cla* and rr per fabric. (One fabric alone:\n"
		"                     --link-gbps 400,1600,3200 is the same 1:1 tree.)\n"
		"  --time-scale X     emulated compute time x X (default 0.1)\n"
		"  -o, --output DIR   work dir (default /tmp/netkv-demo-PID): logs, replay-POLICY.csv per policy,\n"
		"                     topo.json (the topology as emulated), run.json (mode, rates, weights, ...);\n"
		"                     on the fabric also replay-calibration.csv: 112 pushes of 1..8 blocks, one at\n"
		"                     a time, made first, on which netkv sim validate measures the per-push overhead\n"
		"  --json             results as JSON on stdout\n");
}

static int parse_list(const char *s, double *out, int n, const char *what)
{
	char *copy = strdup(s), *save = NULL;
	int k = 0;
	for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (k >= n || nkv_parse_double(t, &out[k]) || !(out[k] >= 0) || !isfinite(out[k])) {
			free(copy);
			return nkv_err(EINVAL, "%s '%s': expected %d comma-separated numbers >= 0", what, s, n);
		}
		k++;
	}
	free(copy);
	if (k != n)
		return nkv_err(EINVAL, "%s '%s': expected %d comma-separated numbers >= 0", what, s, n);
	return 0;
}

struct result {
	char name[48];
	struct replay_result r;
	int rc;
	bool tenants, control; /* met tenant flows; ran on the 1:1 control fabric */
	double tenant_util[NKV_TIERS], tenant_on[NKV_TIERS]; /* measured, -1 none */
};

/* One run: a cluster (and tenant flows when dt), a replay of trace,
 * DIR/replay-NAME.csv and logs in DIR/log-NAME/, everything stopped after.
 * co->policy etc. set by the caller; k numbers the run (its port). */
static int run_one(struct cluster_opts *co, const char *dir, const char *trace, double speed, unsigned requests,
		   double scale, int k, struct demo_tenants *dt, uint64_t seed, struct result *rs)
{
	char addr[48], logdir[300], label[64], csv[600];
	struct cluster cl;

	if (co->fabric)
		snprintf(addr, sizeof(addr), NKV_FABRIC_MGMT_ADDR ":%d", 17400 + k);
	else
		snprintf(addr, sizeof(addr), "127.0.0.1:%d", 17400 + (int)(getpid() % 2000) + k);
	/* logs per run: DIR/log-NAME, named like DIR/replay-NAME.csv (known
	 * policy names only, nkv__testbed_check_policies: no '/') */
	snprintf(logdir, sizeof(logdir), "%s/log-%s", dir, rs->name);
	mkdir(logdir, 0755);
	co->addr = addr;
	co->dir = logdir;
	g_cluster = &cl;
	int rc = nkv__cluster_start(co, &cl);
	if (!rc && dt)
		rc = nkv__demo_tenants_start(dt, &cl, co->fabric, logdir, seed, 3600);
	if (rc) {
		fprintf(stderr, "netkv demo: %s: %s\n", rs->name, nkv_last_error());
		nkv__cluster_stop(&cl);
		g_cluster = NULL;
		return rs->rc = rc;
	}
	snprintf(label, sizeof(label), "  %-14s ", rs->name);
	struct replay_opts ro = { .sched = addr, .token = co->token, .trace = trace, .speed = speed, .limit = requests,
				  .ttft_slo = 2 * scale, .tbt_slo = 0.1 * scale, .timeout_s = 60, .progress = true,
				  .label = label };
	rs->rc = nkv_replay_run(&ro, &rs->r);
	if (rs->rc)
		fprintf(stderr, "netkv demo: %s: %s\n", rs->name, nkv_last_error());
	snprintf(csv, sizeof(csv), "%s/replay-%s.csv", dir, rs->name);
	if (rs->r.recs && nkv_replay_csv(&rs->r, csv))
		fprintf(stderr, "netkv demo: %s\n", nkv_last_error());
	nkv__cluster_stop(&cl);
	g_cluster = NULL;
	if (dt) {
		nkv__demo_tenants_measured(dt, rs->tenant_util, rs->tenant_on);
		snprintf(csv, sizeof(csv), "%s/tenants-%s.csv", dir, rs->name);
		if (rs->r.recs && nkv__demo_tenants_schedule(dt, rs->r.start_s, csv))
			fprintf(stderr, "netkv demo: %s: %s\n", rs->name, nkv_last_error());
	}
	return rs->rc;
}

/* the policy of the next run; only cla* takes the weights */
static void set_policy(struct cluster_opts *co, const char *pol, double wc, double wl)
{
	bool cla = !strcmp(pol, "cla*");

	co->policy = pol;
	co->w_cache = cla ? wc : 0, co->w_load = cla ? wl : 0;
}

static const struct result *find(const struct result *res, int np, const char *pol, const char *suffix)
{
	char name[48];

	snprintf(name, sizeof(name), "%s%s", pol, suffix);
	for (int i = 0; i < np; i++)
		if (!strcmp(res[i].name, name) && !res[i].rc && res[i].r.finished)
			return &res[i];
	return NULL;
}

/* netkv's mean and p90 TTFT against cla*'s and rr's, per fabric and load:
 * the question the control answers (a gain on the oversubscribed fabric
 * that stays at 1:1 is not the network's). */
static void compare(const struct result *res, int np, bool oversub)
{
	static const char *const sfx[] = { "", "+tenants", "@1:1" };
	const char *what[] = { oversub ? "oversubscribed" : "1:1 (--link-gbps)",
			       oversub ? "oversubscribed + tenants" : "1:1 + tenants", "1:1 control" };
	bool head = false;

	for (int k = 0; k < 3; k++) {
		const struct result *n = find(res, np, "netkv", sfx[k]);
		const struct result *o[2] = { find(res, np, "cla*", sfx[k]), find(res, np, "rr", sfx[k]) };
		if (!n || (!o[0] && !o[1]))
			continue;
		if (!head)
			printf("\nnetkv vs cla* and vs rr, TTFT mean (p90), negative = netkv faster\n");
		head = true;
		printf("  %-26s", what[k]);
		for (int j = 0; j < 2; j++)
			if (o[j])
				printf(" | vs %-4s %+6.1f%% (%+6.1f%%)", j ? "rr" : "cla*", 100 * (n->r.ttft[0] / o[j]->r.ttft[0] - 1),
				       100 * (n->r.ttft[2] / o[j]->r.ttft[2] - 1));
			else
				printf(" | vs %-4s %17s", j ? "rr" : "cla*", "-");
		printf("\n");
	}
}

int nkv_cmd_demo(int argc, char **argv)
{
	const char *trace = NULL, *policies = "rr,cla*,netkv", *tiers = "0,8,2,0.5", *dir_arg = NULL;
	const char *fabric_arg = "auto", *links_arg = "400,200,100", *decodes = "h1g0,h2g0,h4g0,h5g0";
	unsigned requests = 150;
	uint64_t seed = 42;
	double speed = 1, scale = 0.1, rate = 8, fscale = 200, wc = -1, wl = -1;
	bool json = false, tenants = false, control = false;
	struct demo_tenants dten = { .on_s = 0.1 };
	static const struct option opts[] = {
		{ "trace", 1, 0, 'f' }, { "requests", 1, 0, 'n' }, { "rate-scale", 1, 0, 'x' }, { "policies", 1, 0, 'p' },
		{ "time-scale", 1, 0, 'S' }, { "tier-gbps", 1, 0, 'T' }, { "output", 1, 0, 'd' }, { "json", 0, 0, 'j' },
		{ "rate", 1, 0, 'r' }, { "fabric", 1, 0, 'F' }, { "link-gbps", 1, 0, 'L' }, { "scale", 1, 0, 'k' },
		{ "w-cache", 1, 0, 'c' }, { "w-load", 1, 0, 'l' }, { "seed", 1, 0, 's' }, { "help", 0, 0, 'h' },
		{ "tenant", 1, 0, 'U' }, { "tenant-on", 1, 0, 'O' }, { "decode", 1, 0, 'D' }, { "control", 0, 0, 'C' },
		{ "dir", 1, 0, 'd' }, { "speed", 1, 0, 'x' }, /* hidden aliases for one release */
		{ 0, 0, 0, 0 } };
	int c;
	optind = 1;
	while ((c = nkv_cli_getopt(argc, argv, "ho:", opts, NULL)) != -1) {
		double *dp = NULL;
		switch (c) {
		case 'f': trace = optarg; break;
		case 'p': policies = optarg; break;
		case 'T': tiers = optarg; break;
		case 'd':
		case 'o': dir_arg = optarg; break;
		case 'j': json = true; break;
		case 'C': control = true; break;
		case 'F': fabric_arg = optarg; break;
		case 'D': decodes = optarg; break;
		case 'L': links_arg = optarg; break;
		case 'x': dp = &speed; break;
		case 'S': dp = &scale; break;
		case 'r': dp = &rate; break;
		case 'k': dp = &fscale; break;
		case 'c':
		case 'l':
			if (nkv_cli_double("demo", c == 'c' ? "--w-cache" : "--w-load", optarg, 0, INFINITY, c == 'c' ? &wc : &wl))
				return 2;
			break;
		case 's':
			if (nkv_parse_u64(optarg, &seed)) {
				fprintf(stderr, "netkv demo: --seed '%s': %s\n", optarg, nkv_last_error());
				return 2;
			}
			break;
		case 'n':
			if (nkv_cli_u32("demo", "--requests", optarg, 1, UINT32_MAX, &requests))
				return 2;
			break;
		case 'U': {
			int k;
			double u;
			if (nkv_sim_tenant_parse(optarg, &k, &u) ||
			    (k == NKV_TIER_LEAF && nkv_err(EINVAL, "the demo loads pod and core (switch-to-switch "
								   "flows); a leaf-tier flow would share the agents' NICs"))) {
				fprintf(stderr, "netkv demo: --tenant '%s': %s\n", optarg, nkv_last_error());
				return 2;
			}
			dten.util[k] = u;
			tenants = true;
			break;
		}
		case 'O':
			if (nkv_cli_double("demo", "--tenant-on", optarg, 1e-4, 3600, &dten.on_s))
				return 2;
			break;
		case 'h': usage(stdout); return 0;
		default: return 2; /* nkv_cli_getopt said what is wrong */
		}
		/* A slower replay than 1000x would wait for days on any real trace. */
		if (dp && (c == 'x' ? nkv_cli_double("demo", nkv_cli_opt_typed(), optarg, 1e-3, 1e6, dp)
				    : nkv_cli_positive("demo", c == 'S' ? "--time-scale" : c == 'r' ? "--rate" : "--scale",
						       optarg, INFINITY, dp)))
			return 2;
	}
	if (optind != argc) {
		fprintf(stderr, "netkv demo: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if ((wc < 0) != (wl < 0) || (wc == 0 && wl == 0)) {
		fprintf(stderr, "netkv demo: give both --w-cache and --w-load (not both 0), or neither (tuned)\n");
		return 2;
	}
	if (strcmp(fabric_arg, "auto") && strcmp(fabric_arg, "on") && strcmp(fabric_arg, "off")) {
		fprintf(stderr, "netkv demo: --fabric '%s': expected auto, on or off\n", fabric_arg);
		return 2;
	}
	double link[3], tier_v[4], shaped[3];
	if (parse_list(links_arg, link, 3, "--link-gbps") || !(link[0] > 0 && link[1] > 0 && link[2] > 0)) {
		fprintf(stderr, "netkv demo: --link-gbps '%s': expected NIC,LEAF-UP,SPINE-UP Gb/s, each > 0\n", links_arg);
		return 2;
	}
	if (parse_list(tiers, tier_v, 4, "--tier-gbps")) {
		fprintf(stderr, "netkv demo: %s\n", nkv_last_error());
		return 2;
	}
	if (fscale < 1) {
		fprintf(stderr, "netkv demo: --scale %g: must be >= 1\n", fscale);
		return 2;
	}
	if (nkv__testbed_check_policies(policies, MAX_POLICIES)) {
		fprintf(stderr, "netkv demo: --policies '%s': %s\n", policies, nkv_last_error());
		return 2;
	}
	if (dir_arg && strlen(dir_arg) > 200) {
		fprintf(stderr, "netkv demo: --output: longer than 200 characters\n");
		return 2;
	}

	char dir[256], path[512], topo[512], topo_nominal[512], runjson[512], topo1[512], topo1_nominal[512];
	if (dir_arg)
		snprintf(dir, sizeof(dir), "%s", dir_arg);
	else
		snprintf(dir, sizeof(dir), "/tmp/netkv-demo-%d", (int)getpid());
	if (mkdir(dir, 0755) && errno != EEXIST) {
		fprintf(stderr, "netkv demo: %s: %s\n", dir, strerror(errno));
		return 1;
	}
	ssize_t sl = readlink("/proc/self/exe", g_self, sizeof(g_self) - 1);
	if (sl <= 0) {
		fprintf(stderr, "netkv demo: cannot find my own binary\n");
		return 1;
	}
	g_self[sl] = 0;
	/* cla* is tuned out of sample: on another draw of the generated trace
	 * (on a given --trace, on that trace itself, and the table says so). */
	char tune_path[sizeof(path)];
	const char *tune_trace = trace, *tune_what = "in sample, on the given --trace";
	if (!trace) {
		snprintf(path, sizeof(path), "%s/trace.jsonl", dir);
		snprintf(tune_path, sizeof(tune_path), "%s/trace-tune.jsonl", dir);
		if (nkv_replay_gen_trace(path, requests, rate, seed, 0) || nkv_replay_gen_trace(tune_path, requests, rate, seed + 1000003, 0)) {
			fprintf(stderr, "netkv demo: %s\n", nkv_last_error());
			return 1;
		}
		trace = path;
		tune_trace = tune_path;
		tune_what = "out of sample, on another draw of the trace";
	}

	/* The mode, and why. */
	bool fabric = false;
	char why[300];
	if (!strcmp(fabric_arg, "off")) {
		snprintf(why, sizeof(why), "--fabric off");
	} else if (nkv__cluster_fabric_check()) {
		if (!strcmp(fabric_arg, "on")) {
			fprintf(stderr, "netkv demo: --fabric on: %s\n", nkv_last_error());
			return 1;
		}
		snprintf(why, sizeof(why), "no emulated fabric here: %s", nkv_last_error());
	} else {
		fabric = true;
		snprintf(why, sizeof(why), "root, ip netns and tc tbf work here%s",
			 strcmp(fabric_arg, "on") ? "; --fabric off for loopback" : "");
	}

	if ((tenants || control) && !fabric) {
		fprintf(stderr, "netkv demo: %s needs the emulated fabric (%s)\n", tenants ? "--tenant" : "--control", why);
		return 1;
	}

	/* The topology as emulated: what the scheduler gets, and what the
	 * simulator should replay against (link capacities = what is shaped or paced). */
	snprintf(topo, sizeof(topo), "%s/topo.json", dir);
	snprintf(topo_nominal, sizeof(topo_nominal), "%s/topo-nominal.json", dir);
	snprintf(runjson, sizeof(runjson), "%s/run.json", dir);
	snprintf(topo1, sizeof(topo1), "%s/topo-1to1.json", dir);
	snprintf(topo1_nominal, sizeof(topo1_nominal), "%s/topo-1to1-nominal.json", dir);
	if (fabric) {
		for (int i = 0; i < 3; i++)
			shaped[i] = link[i] / fscale;
	} else {
		/* per-path pacing: one flow at tier 1/2/3 gets tier_v[1..3]; unpaced (0): loopback is fast */
		for (int i = 0; i < 3; i++)
			shaped[i] = tier_v[i + 1] > 0 ? tier_v[i + 1] : 40;
	}
	if (nkv__cluster_write_topo(topo, shaped[0], shaped[1], shaped[2]) ||
	    (fabric && nkv__cluster_write_topo(topo_nominal, link[0], link[1], link[2])) ||
	    /* the 1:1 control: each uplink carries all the NICs below it (4 under a leaf, 8 under a spine) */
	    (control && (nkv__cluster_write_topo(topo1, shaped[0], 4 * shaped[0], 8 * shaped[0]) ||
			 nkv__cluster_write_topo(topo1_nominal, link[0], 4 * link[0], 8 * link[0])))) {
		fprintf(stderr, "netkv demo: %s\n", nkv_last_error());
		return 1;
	}

	if (check_decodes(topo, decodes)) {
		fprintf(stderr, "netkv demo: --decode '%s': %s\n", decodes, nkv_last_error());
		return 2;
	}

	/* cla*: tuned unless the weights were given. */
	bool tuned = false, want_cla = false;
	{
		char *l = strdup(policies), *sv = NULL;
		for (char *t = strtok_r(l, ",", &sv); t; t = strtok_r(NULL, ",", &sv))
			want_cla |= !strcmp(t, "cla*");
		free(l);
	}
	char wdesc[300] = "";
	if (want_cla && wc < 0) {
		struct demo_tune dt = { .trace = tune_trace, .topo = topo, .time_scale = scale, .speed = speed, .limit = requests,
					.decode_blocks = 512, .kv_bytes_per_token = 256 };
		struct demo_tune_result tr;
		fprintf(stderr, "netkv demo: tuning cla* in the simulator on this trace and topology...\n");
		if (nkv__demo_tune_cla(&dt, &tr)) {
			fprintf(stderr, "netkv demo: cla* tuning: %s\n", nkv_last_error());
			return 1;
		}
		wc = tr.w_cache, wl = tr.w_load, tuned = true;
		snprintf(wdesc, sizeof(wdesc), "w_cache %g, w_load %g (tuned %s; %u grid points in the simulator, "
			 "%.1f s, simulated mean TTFT %.1f ms)", wc, wl, tune_what, tr.evaluated, tr.wall_s,
			 tr.ttft_mean_s * 1e3);
	} else if (want_cla) {
		snprintf(wdesc, sizeof(wdesc), "w_cache %g, w_load %g (given)", wc, wl);
	}

	signal(SIGINT, on_sigint);
	signal(SIGTERM, on_sigint);
	struct cluster_fabric fab = { .home_fd = -1 };
	if (fabric) {
		fprintf(stderr, "netkv demo: building the emulated fabric...\n");
		/* set before it exists: a signal during the build still removes what was made */
		snprintf(g_prefix, sizeof(g_prefix), "nkvd%d-", (int)getpid());
		g_fabric_up = 1;
		if (nkv__cluster_fabric_up('d', topo_nominal, fscale, &fab)) {
			fprintf(stderr, "netkv demo: fabric: %s\n", nkv_last_error());
			g_fabric_up = 0;
			return 1;
		}
	}
	/* 4 NICs under a leaf, 2 leaves under a spine (nkv__cluster_write_topo) */
	bool oversub = link[1] < 4 * link[0] || link[2] < 2 * link[1];
	if (tenants && nkv__demo_tenants_plan(&dten, topo, fab.prefix)) {
		fprintf(stderr, "netkv demo: %s\n", nkv_last_error());
		nkv__cluster_fabric_down(&fab);
		g_fabric_up = 0;
		return 1;
	}
	if (fabric)
		fprintf(stderr, "netkv demo: mode fabric (%s)\n"
				"  namespaces %s*: tbf per link at nominal / %g: NIC %g, leaf uplink %g, spine uplink %g Gbit/s\n"
				"  (one flow: leaf %g, pod %g, core %g Gbit/s; flows share links); scheduler on %s\n",
			why, fab.prefix, fscale, shaped[0], shaped[1], shaped[2], shaped[0], fmin(shaped[0], shaped[1]),
			fmin(fmin(shaped[0], shaped[1]), shaped[2]), NKV_FABRIC_MGMT_ADDR " (management network, unshaped)");
	else
		fprintf(stderr, "netkv demo: mode loopback (%s)\n  tiers paced per path at %s Gb/s (host,leaf,pod,core), "
				"links not shared\n", why, tiers);
	fprintf(stderr, "  2 prefill (h0g0, h0g1) + decode agents %s, compute x %g, --verify on;\n"
			"  trace %s (%u requests); work dir %s/\n", decodes, scale, trace, requests, dir);
	if (want_cla)
		fprintf(stderr, "  cla*: %s\n", wdesc);
	if (tenants) {
		fprintf(stderr, "  tenants: each policy runs as POLICY (no tenants) and POLICY+tenants:");
		for (int k = NKV_TIER_POD; k < NKV_TIERS; k++)
			if (dten.util[k] > 0)
				fprintf(stderr, " %s %g", nkv_tier_name(k), dten.util[k]);
		fprintf(stderr, ", on/off, mean on %g s; flows", dten.on_s);
		for (int i = 0; i < dten.n; i++)
			fprintf(stderr, " %s>%s", dten.ep[i].sw, dten.ep[i].peer_sw);
		fprintf(stderr, "\n");
	}
	if (control)
		fprintf(stderr, "  control: each policy also runs as POLICY@1:1 on the 1:1 fabric (leaf uplink %g, spine uplink %g "
				"Gbit/s shaped), rebuilt after the other runs\n", 4 * shaped[0], 8 * shaped[0]);

	char token[48];
	uint8_t rnd[16];
	/* A random token for this run: the scheduler's and the data plane's secret. */
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		fprintf(stderr, "netkv demo: getrandom: %s\n", strerror(errno));
		return 1;
	}
	for (size_t i = 0; i < sizeof(rnd); i++)
		snprintf(token + 2 * i, 3, "%02x", rnd[i]);
	/* Calibration (fabric): the per-push overhead of this testbed, measured
	 * on pushes of its own (demo_calib.c) that `netkv sim validate` models. */
	struct result calib = { .name = "calibration" };
	bool calib_ok = false;
	char calib_trace[600];
	snprintf(calib_trace, sizeof(calib_trace), "%s/calibration-trace.jsonl", dir);
	struct cluster_opts co = { .netkv = g_self, .token = token, .prefill = "h0g0,h0g1", .decode = decodes,
				   .time_scale = scale, .prefill_blocks = 512, .decode_blocks = 512,
				   .tier_gbps = fabric ? NULL : tiers, .verify = true, .topo = topo,
				   .fabric = fabric ? fab.prefix : NULL };
	if (fabric) {
		fprintf(stderr, "netkv demo: calibration: %u pushes of 1..8 blocks, one at a time, policy rr (for sim validate)\n",
			CALIB_REQUESTS);
		co.policy = "rr";
		unsigned nd = 1;
		for (const char *p = decodes; *p; p++)
			nd += *p == ',';
		if (nkv__demo_calib_trace(calib_trace, nd))
			fprintf(stderr, "netkv demo: calibration: %s\n", nkv_last_error());
		else
			calib_ok = run_one(&co, dir, calib_trace, 1, CALIB_REQUESTS, scale, 0, NULL, 0, &calib) == 0;
		if (!calib_ok)
			fprintf(stderr, "netkv demo: calibration failed (sim validate will have no measured overhead)\n");
		nkv_replay_free(&calib.r);
	}
	char *list = strdup(policies), *save = NULL;
	struct result res[3 * MAX_POLICIES];
	int np = 0, failures = 0;
	for (char *pol = strtok_r(list, ",", &save); pol; pol = strtok_r(NULL, ",", &save))
		for (int with = 0; with <= (int)tenants; with++) {
			/* with tenants: POLICY (the 1:1 control) then POLICY+tenants, back to back */
			struct result *rs = &res[np];
			memset(rs, 0, sizeof(*rs));
			snprintf(rs->name, sizeof(rs->name), "%s%s", pol, with ? "+tenants" : "");
			rs->tenants = with;
			set_policy(&co, pol, wc, wl);
			/* same seed for every policy: each meets the same tenant schedule */
			if (run_one(&co, dir, trace, speed, requests, scale, np + 1, with ? &dten : NULL,
				    seed ^ 0x74656e61ull, rs))
				failures++;
			np++;
		}
	free(list);
	/* The 1:1 control: the same tree without oversubscription, each policy
	 * once more (no tenants, same cla* weights), on a fabric built anew. */
	if (control) {
		fprintf(stderr, "netkv demo: the 1:1 control: rebuilding the fabric without oversubscription...\n");
		nkv__cluster_fabric_down(&fab);
		if (nkv__cluster_fabric_up('d', topo1_nominal, fscale, &fab)) {
			fprintf(stderr, "netkv demo: 1:1 fabric: %s\n", nkv_last_error());
			failures++;
		} else {
			co.topo = topo1;
			co.fabric = fab.prefix;
			int nmain = np;
			for (int i = 0; i < nmain; i++) {
				if (res[i].tenants)
					continue;
				struct result *rs = &res[np];
				memset(rs, 0, sizeof(*rs));
				snprintf(rs->name, sizeof(rs->name), "%.40s@1:1", res[i].name); /* policy names are short */
				rs->control = true;
				set_policy(&co, res[i].name, wc, wl);
				if (run_one(&co, dir, trace, speed, requests, scale, np + 1, NULL, 0, rs))
					failures++;
				np++;
			}
		}
	}
	if (fabric) {
		nkv__cluster_fabric_down(&fab);
		g_fabric_up = 0;
	}
	const char *pnames[3 * MAX_POLICIES], *ptopo[3 * MAX_POLICIES];
	bool pok[3 * MAX_POLICIES], pten[3 * MAX_POLICIES];
	for (int i = 0; i < np; i++) {
		pnames[i] = res[i].name;
		pok[i] = res[i].rc == 0;
		pten[i] = res[i].tenants;
		ptopo[i] = res[i].control ? topo1 : NULL;
	}
	struct nkv_run_info info = {
		.mode = fabric ? "fabric" : "loopback", .mode_reason = why, .scale = fscale,
		.link_gbps = { link[0], link[1], link[2] }, .shaped_gbps = { shaped[0], shaped[1], shaped[2] },
		.tier_gbps = tiers, .time_scale = scale, .trace = trace, .requests = requests, .speed = speed,
		.tuned = tuned, .w_cache = wc, .w_load = wl, .dir = dir, .npolicies = np, .policies = pnames,
		.policy_ok = pok, .decode = decodes, .calibration = calib_ok ? "calibration" : NULL,
		.policy_tenants = pten, .tenant_on_s = dten.on_s, .policy_topo = control ? ptopo : NULL,
	};
	memcpy(info.tenant_util, dten.util, sizeof(info.tenant_util));
	if (nkv_run_desc_write(runjson, &info)) {
		fprintf(stderr, "netkv demo: %s\n", nkv_last_error());
		failures++;
	}
	if (json) {
		json_t *arr = json_array();
		for (int i = 0; i < np; i++) {
			const struct replay_result *r = &res[i].r;
			json_array_append_new(arr, json_pack("{s:s, s:s, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:f}",
						       "policy", res[i].name, "mode", fabric ? "fabric" : "loopback",
						       "finished", (json_int_t)r->finished, "failed",
						       (json_int_t)r->failed, "ttft_mean_s", r->ttft[0], "ttft_p50_s", r->ttft[1],
						       "ttft_p90_s", r->ttft[2], "ttft_p99_s", r->ttft[3], "tbt_mean_s",
						       r->tbt_mean, "slo_attainment",
						       r->finished ? (double)r->slo_met / (double)r->finished : 0.0,
						       "blocks_bad", (json_int_t)r->blocks_bad, "kv_gb", r->gb));
			json_t *o = json_array_get(arr, json_array_size(arr) - 1);
			json_object_set_new(o, "tenants", json_boolean(res[i].tenants));
			const char *fab_kind = res[i].control || !oversub ? "1:1" : "oversubscribed";
			json_object_set_new(o, "fabric", json_string(fabric ? fab_kind : "loopback"));
			for (int k = NKV_TIER_POD; k < NKV_TIERS && res[i].tenants; k++)
				if (res[i].tenant_util[k] >= 0)
					json_object_set_new(o, k == NKV_TIER_POD ? "tenant_util_pod" : "tenant_util_core",
							    json_real(res[i].tenant_util[k]));
		}
		nkv_json_print(stdout, arr); /* {"meta", "results": [...]} */
	} else {
		if (fabric)
			printf("\nmode fabric: tbf-shaped links, one flow gets leaf %g, pod %g, core %g Gbit/s\n", shaped[0],
			       fmin(shaped[0], shaped[1]), fmin(fmin(shaped[0], shaped[1]), shaped[2]));
		else
			printf("\nmode loopback: per-path pacing %s Gb/s (host,leaf,pod,core)\n", tiers);
		if (control)
			printf("POLICY@1:1: the 1:1 control, leaf uplink %g, spine uplink %g Gbit/s: one flow gets %g at every tier\n",
			       4 * shaped[0], 8 * shaped[0], shaped[0]);
		if (want_cla)
			printf("cla*: %s\n", wdesc);
		printf("%-14s %5s %5s | %9s %9s %9s %9s | %8s | %6s | %8s | %-23s | %s\n", "policy", "done", "fail",
		       "TTFT mean", "p50", "p90", "p99", "TBT mean", "SLO", "KV GB", "requests leaf/pod/core", "blocks ok/bad");
		for (int i = 0; i < np; i++) {
			const struct replay_result *r = &res[i].r;
			char tiers_s[32];
			snprintf(tiers_s, sizeof(tiers_s), "%zu/%zu/%zu", r->n_tier[1], r->n_tier[2], r->n_tier[3]);
			printf("%-14s %5zu %5zu | %7.1fms %7.1fms %7.1fms %7.1fms | %6.2fms | %5.1f%% | %8.3f | %-23s | %zu/%zu\n",
			       res[i].name, r->finished, r->failed, r->ttft[0] * 1e3, r->ttft[1] * 1e3, r->ttft[2] * 1e3,
			       r->ttft[3] * 1e3, r->tbt_mean * 1e3,
			       r->finished ? 100.0 * (double)r->slo_met / (double)r->finished : 0, r->gb, tiers_s,
			       r->blocks_ok, r->blocks_bad);
		}
		/* What the bytes met on the way: per tier, pushes, mean push time and
		 * the rate they got (bytes / push time summed over the tier). */
		printf("\nKV pushes by tier: count, mean push time, rate they got (bytes / push time)\n%-14s", "policy");
		for (int t = 1; t < 4; t++)
			printf(" | %-27s", nkv_tier_name(t));
		printf("\n");
		for (int i = 0; i < np; i++) {
			const struct replay_result *r = &res[i].r;
			printf("%-14s", res[i].name);
			for (unsigned t = 1; t < 4; t++) {
				double bytes = 0, secs = 0;
				size_t n = 0;
				for (size_t k = 0; k < r->n; k++)
					if (!r->recs[k].status && r->recs[k].tier == t && r->recs[k].bytes) {
						n++;
						bytes += (double)r->recs[k].bytes;
						secs += r->recs[k].xfer_s;
					}
				if (n && secs > 0)
					printf(" | %4zu %7.1fms %7.0fMbit/s", n, secs / (double)n * 1e3, bytes * 8 / secs / 1e6);
				else
					printf(" | %-27s", "-");
			}
			printf("\n");
		}
		compare(res, np, oversub);
		if (tenants) {
			printf("\ntenant flows, asked:");
			for (int k = NKV_TIER_POD; k < NKV_TIERS; k++)
				if (dten.util[k] > 0)
					printf(" %s %.2f", nkv_tier_name(k), dten.util[k]);
			printf(" (on/off, mean on %g s); measured per run: utilisation of the links they load (share of time on)\n",
			       dten.on_s);
			for (int i = 0; i < np; i++) {
				if (!res[i].tenants)
					continue;
				printf("%-14s", res[i].name);
				for (int k = NKV_TIER_POD; k < NKV_TIERS; k++)
					if (dten.util[k] > 0 && res[i].tenant_util[k] >= 0)
						printf(" | %s %.2f (on %.2f)", nkv_tier_name(k), res[i].tenant_util[k],
						       res[i].tenant_on[k]);
					else if (dten.util[k] > 0)
						printf(" | %s -", nkv_tier_name(k));
				printf("\n");
			}
		}
		if (fabric)
			printf("(one flow is shaped to leaf %g, pod %g, core %g Gbit/s; a push smaller than a link's tbf\n"
			       " bucket, max(64 KiB, rate x 4 ms), leaves at line speed, so small pushes can beat those rates)\n",
			       shaped[0], fmin(shaped[0], shaped[1]), fmin(fmin(shaped[0], shaped[1]), shaped[2]));
		printf("per-request records: %s/replay-POLICY.csv (plots: tools/plot-replay %s), logs in %s/log-*/\n", dir,
		       dir, dir);
		printf("for netkv sim validate: topology as emulated %s, run description %s\n", topo, runjson);
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
