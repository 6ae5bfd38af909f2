/*
 * netkv bench sched: how long one scheduling decision takes.
 *
 * For each cluster size |D| it builds a fat tree holding |D| decode and
 * |D|/4 prefill instances (2:1 leaf, 4:1 spine), fills the scheduler's
 * state from a Mooncake trace (the first --warm requests are placed on
 * decode instances and their prefix blocks indexed; loads, some measured
 * paths and some in-flight bytes are set), then times nkv_sched_decide on
 * the following requests, single-threaded, one clock read per decision.
 */
#include "sched_cli.h"
#include "netkv_sched.h"
#include "nkv_traces.h"
#include "nkv_cli.h"
#include "nkv_json_out.h"
#include "nkv_util.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SIZES 16
#define MAX_POLICIES 16
/* The oracle keeps |D|/4 x |D| paths: 4096 is ~300 MB; 16384 took 4 GB and 90 s. */
#define MAX_DECODE 4096

struct opts {
	uint32_t sizes[MAX_SIZES];
	int nsizes;
	const char *policies[MAX_POLICIES];
	int npolicies;
	const char *trace;
	const char *model, *gpu;   /* gpu NULL: the default (h100) */
	uint32_t decisions, warm, rounds;
	uint64_t seed;
	bool json;
};

struct result {
	uint32_t nd, np;
	const char *policy;
	double per_s, p50, p99, p999, max, mean;
	double min_p50, min_p99, min_p999; /* per decision, the fastest of the rounds */
	size_t blocks;
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: netkv bench sched [options]\n"
		"Time the scheduler's decision (prefill + decode choice) for several cluster sizes.\n\n"
		"  --sizes LIST       decode instances per run, default 16,64,256,1024\n"
		"  --policies LIST    decode policies, default netkv; 'all' for every policy\n"
		"  --trace FILE       Mooncake JSONL (default $NKV_SHARED/traces/mooncake/conversation_trace.jsonl,\n"
		"                     else the ../shared beside the source tree the build came from)\n"
		"  --warm N           trace requests used to fill the state, default 6000\n"
		"  --decisions N      timed decisions per round, default 20000\n"
		"  --rounds N         rounds over the same decisions (same state), default 3; the min-of-rounds\n"
		"                     columns take each decision's fastest round, which filters out interrupts\n"
		"                     and preemption on a shared box (the plain columns keep every sample)\n"
		"  --model M          perf/KV model: a preset (%s), default llama3-8b,\n"
		"                     or a dense model's Hugging Face config.json\n"
		"  --gpu-model G      GPU preset for the perf model (%s), default h100\n"
		"  --seed N           default 1\n"
		"  --json             one JSON document on stdout\n"
		"  -h, --help\n",
		nkv_perf_models(), nkv_perf_gpus());
}

static int parse_sizes(const char *s, struct opts *o)
{
	char buf[256], *save = NULL, *tok;

	if (strlen(s) >= sizeof(buf))
		return nkv_err(EINVAL, "list longer than %zu characters", sizeof(buf) - 1);
	snprintf(buf, sizeof(buf), "%s", s);
	o->nsizes = 0;
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		uint32_t v;

		if (o->nsizes == MAX_SIZES)
			return nkv_err(EINVAL, "at most %d sizes", MAX_SIZES);
		if (nkv_parse_u32(tok, &v) || v < 1 || v > MAX_DECODE)
			return nkv_err(EINVAL, "'%s' is not a count in 1..%u", tok, MAX_DECODE);
		o->sizes[o->nsizes++] = v;
	}
	return o->nsizes ? 0 : nkv_err(EINVAL, "empty list");
}

static int parse_policies(char *s, struct opts *o)
{
	char *save = NULL, *tok;

	o->npolicies = 0;
	if (!strcmp(s, "all")) {
		const struct nkv_policy_ops *const *all = nkv_policies();

		for (int i = 0; all[i] && i < MAX_POLICIES; i++)
			o->policies[o->npolicies++] = all[i]->name;
		return 0;
	}
	for (tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		const struct nkv_policy_ops *p = nkv_policy_find(tok);

		if (!p)
			return nkv_err(EINVAL, "unknown policy '%s'", tok);
		if (o->npolicies == MAX_POLICIES)
			return nkv_err(EINVAL, "too many");
		o->policies[o->npolicies++] = p->name;
	}
	return o->npolicies ? 0 : nkv_err(EINVAL, "empty list");
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static inline uint64_t xs(uint64_t *s)
{
	return nkv_xorshift64(s);
}

/* Cluster of nd decode + np prefill instances spread over a fat tree. */
static int build(uint32_t nd, struct nkv_topo **t, uint32_t **pre, uint32_t *np_out, uint32_t **dec)
{
	struct nkv_fat_tree_params fp;
	uint32_t np = nd / 4 ? nd / 4 : 1, total, stride, a = 0, b = 0;
	int ret;

	nkv_fat_tree_defaults(&fp);
	fp.oversub_leaf = 2;
	fp.oversub_spine = 4;
	total = nd + np;
	total = (total + 31) / 32 * 32; /* 8 GPUs/host x 2 hosts/leaf x 2 leaves/pod */
	fp.gpus = total;
	ret = nkv_topo_fat_tree(&fp, t);
	if (ret)
		return ret;
	*pre = malloc(np * sizeof(uint32_t));
	*dec = malloc(nd * sizeof(uint32_t));
	if (!*pre || !*dec)
		return nkv_err(ENOMEM, "bench sched: out of memory");
	stride = total / np;
	for (uint32_t i = 0; i < total; i++) {
		if (a < np && i % stride == 0)
			(*pre)[a++] = i;
		else if (b < nd)
			(*dec)[b++] = i;
	}
	*np_out = np;
	return 0;
}

/* State as a running cluster would have it, from the first warm requests. */
static int fill(struct nkv_sched *s, const struct nkv_trace *tr, uint32_t warm, uint64_t bpt, uint64_t seed)
{
	uint32_t nd = nkv_sched_ndecode(s), np = nkv_sched_nprefill(s);
	const struct nkv_perf *pf = nkv_sched_perf(s);
	struct nkv_oracle *o = nkv_sched_oracle(s);
	uint64_t rng = seed * 0x9E3779B97F4A7C15ull + 1;
	int ret;

	for (uint32_t i = 0; i < warm && i < tr->n; i++) {
		const struct nkv_trace_req *q = &tr->reqs[i];
		uint32_t d = (uint32_t)(xs(&rng) % nd), p = (uint32_t)(xs(&rng) % np);

		if ((ret = nkv_prefix_add(nkv_sched_decode_index(s), d, q->hash_ids, q->nblocks)) ||
		    (ret = nkv_prefix_add(nkv_sched_prefill_index(s), p, q->hash_ids, q->nblocks)))
			return ret;
	}
	for (uint32_t d = 0; d < nd; d++) {
		struct nkv_decode_state *ds = nkv_sched_decode(s, d);

		ds->running = (uint32_t)(xs(&rng) % (pf->max_batch / 2));
		ds->running_tokens = (uint64_t)ds->running * (2000 + xs(&rng) % 12000);
		ds->queued = (uint32_t)(xs(&rng) % 4);
		ds->queued_tokens = (uint64_t)ds->queued * 8000;
		ds->kv_blocks_used = ds->running_tokens / 16;
		if (ds->kv_blocks_used > ds->kv_blocks_total)
			ds->kv_blocks_used = ds->kv_blocks_total;
	}
	/* A measured figure for one path in eight, a flow in flight on one in sixteen. */
	for (uint32_t p = 0; p < np; p++) {
		for (uint32_t d = 0; d < nd; d++) {
			uint32_t pi = nkv_sched_prefill(s, p)->inst, di = nkv_sched_decode(s, d)->inst;
			uint64_t r = xs(&rng);

			if (r % 8 == 0 &&
			    (ret = nkv_oracle_sample(o, pi, di, 1ull << 30, 0.05 + (double)(r % 100) * 1e-3, 0.5,
						     NKV_SAMPLE_PASSIVE)) < 0)
				return ret;
			if (r % 16 == 1 && (ret = nkv_oracle_flow_add(o, pi, di, (uint64_t)(r % 64 + 1) * 8000 * bpt)))
				return ret;
		}
	}
	nkv_oracle_refresh(o, 1.0);
	return 0;
}

static void pct(uint64_t *v, size_t n, double *p50, double *p99, double *p999)
{
	qsort(v, n, sizeof(uint64_t), cmp_u64);
	*p50 = (double)v[(size_t)(n * 0.5)] * 1e-3;
	*p99 = (double)v[(size_t)(n * 0.99)] * 1e-3;
	*p999 = (double)v[(size_t)(n * 0.999)] * 1e-3;
}

static int run_one(const struct opts *o, const struct nkv_trace *tr, const struct nkv_perf *perf, uint32_t nd,
		   const char *policy, uint64_t *lat, uint64_t *minlat, struct result *res)
{
	struct nkv_topo *t = NULL;
	struct nkv_sched *s = NULL;
	struct nkv_sched_params sp;
	uint32_t *pre = NULL, *dec = NULL, np = 0;
	uint64_t t0, t1, sum = 0;
	size_t total = (size_t)o->decisions * o->rounds;
	uint64_t sink = 0;
	int ret;

	ret = build(nd, &t, &pre, &np, &dec);
	if (ret)
		goto out;
	nkv_sched_defaults(&sp);
	sp.policy = policy;
	sp.prefill_policy = NKV_PREFILL_CACHE;
	sp.seed = o->seed;
	ret = nkv_sched_create(t, perf, &sp, pre, np, dec, nd, &s);
	if (ret)
		goto out;
	ret = fill(s, tr, o->warm, perf->kv_bytes_per_token, o->seed);
	if (ret)
		goto out;
	for (uint32_t i = 0; i < o->decisions; i++)
		minlat[i] = UINT64_MAX;
	t0 = nkv_now_ns();
	for (uint32_t round = 0; round < o->rounds; round++) {
		for (uint32_t i = 0; i < o->decisions; i++) {
			size_t k = o->warm + i % (tr->n - o->warm);
			struct nkv_request r;
			struct nkv_decision d;
			uint64_t a, b;

			nkv_trace_request(tr, k, 1.0, perf->kv_bytes_per_token, &r);
			a = nkv_now_ns();
			ret = nkv_sched_decide(s, &r, 1.0, &d);
			b = nkv_now_ns();
			if (ret)
				goto out;
			lat[(size_t)round * o->decisions + i] = b - a;
			if (b - a < minlat[i])
				minlat[i] = b - a;
			sum += b - a;
			sink += d.decode;
		}
	}
	t1 = nkv_now_ns();
	res->nd = nd;
	res->np = np;
	res->policy = policy;
	res->per_s = (double)total / ((double)(t1 - t0) * 1e-9);
	res->mean = (double)sum / (double)total * 1e-3;
	pct(lat, total, &res->p50, &res->p99, &res->p999);
	res->max = (double)lat[total - 1] * 1e-3;
	pct(minlat, o->decisions, &res->min_p50, &res->min_p99, &res->min_p999);
	res->blocks = nkv_prefix_blocks(nkv_sched_decode_index(s));
	if (sink == UINT64_MAX)
		fprintf(stderr, "(unreachable)\n");
out:
	nkv_sched_free(s);
	nkv_topo_free(t);
	free(pre);
	free(dec);
	return ret;
}

/* The same two clock reads around nothing: the floor under every figure,
 * and how much of the tail is the machine (preemption, interrupts). */
static void clock_floor(uint32_t n, uint32_t rounds, uint64_t *lat, uint64_t *minlat, struct result *res)
{
	uint64_t t0 = nkv_now_ns(), sum = 0;
	size_t total = (size_t)n * rounds;

	for (uint32_t i = 0; i < n; i++)
		minlat[i] = UINT64_MAX;
	for (size_t j = 0; j < total; j++) {
		uint64_t a = nkv_now_ns(), b;

		__asm__ __volatile__("" ::: "memory");
		b = nkv_now_ns();
		lat[j] = b - a;
		if (b - a < minlat[j % n])
			minlat[j % n] = b - a;
		sum += b - a;
	}
	memset(res, 0, sizeof(*res));
	res->policy = "(clock only)";
	res->per_s = (double)total / ((double)(nkv_now_ns() - t0) * 1e-9);
	res->mean = (double)sum / (double)total * 1e-3;
	pct(lat, total, &res->p50, &res->p99, &res->p999);
	res->max = (double)lat[total - 1] * 1e-3;
	pct(minlat, n, &res->min_p50, &res->min_p99, &res->min_p999);
}

int nkv_cmd_bench_sched(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "sizes", required_argument, NULL, 's' },   { "policies", required_argument, NULL, 'p' },
		{ "trace", required_argument, NULL, 't' },   { "warm", required_argument, NULL, 'w' },
		{ "decisions", required_argument, NULL, 'n' }, { "model", required_argument, NULL, 'm' },
		{ "seed", required_argument, NULL, 'S' },    { "json", no_argument, NULL, 'j' },
		{ "rounds", required_argument, NULL, 'r' },
		{ "gpu-model", required_argument, NULL, 'g' },
		{ "help", no_argument, NULL, 'h' },
		{ "policy", required_argument, NULL, 'p' }, /* hidden alias for one release */
		{ NULL, 0, NULL, 0 },
	};
	struct opts o = { .sizes = { 16, 64, 256, 1024 }, .nsizes = 4, .policies = { "netkv" }, .npolicies = 1,
			  .model = "llama3-8b", .decisions = 20000, .warm = 6000, .seed = 1,
			  .rounds = 3 };
	char tracebuf[1024];
	struct nkv_trace *tr = NULL;
	struct nkv_perf perf;
	struct result *res = NULL;
	uint64_t *lat = NULL, *minlat = NULL;
	int c, li = 0, nres = 0, rc = 1;

	optind = 1;
	while ((c = nkv_cli_getopt(argc, argv, "h", lo, &li)) != -1) {
		int ret = 0;

		switch (c) {
		case 's': ret = parse_sizes(optarg, &o); break;
		case 'p': ret = parse_policies(optarg, &o); break;
		case 't': o.trace = optarg; break;
		case 'w': ret = nkv_parse_u32(optarg, &o.warm); break;
		case 'n':
			ret = nkv_parse_u32(optarg, &o.decisions);
			if (!ret && (o.decisions < 1000 || o.decisions > 10000000))
				ret = nkv_err(EINVAL, "%u: need 1000 .. 10000000", o.decisions);
			break;
		case 'm': o.model = optarg; break;
		case 'g': o.gpu = optarg; break;
		case 'r':
			ret = nkv_parse_u32(optarg, &o.rounds);
			if (!ret && (o.rounds < 1 || o.rounds > 100))
				ret = nkv_err(EINVAL, "%u: need 1 .. 100", o.rounds);
			break;
		case 'S': ret = nkv_parse_u64(optarg, &o.seed); break;
		case 'j': o.json = true; break;
		case 'h': usage(stdout); return 0;
		default: return 2; /* nkv_cli_getopt said what is wrong */
		}
		if (ret) {
			fprintf(stderr, "netkv bench sched: --%s: %s\n", lo[li].name, nkv_last_error());
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "netkv bench sched: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (nkv_perf_preset(o.model, o.gpu, &perf)) {
		fprintf(stderr, "netkv bench sched: %s\n", nkv_last_error());
		return 2;
	}
	if (!o.trace) {
		if (nkv_shared_trace("conversation_trace.jsonl", tracebuf, sizeof(tracebuf))) {
			fprintf(stderr, "netkv bench sched: %s\n", nkv_last_error());
			return 2;
		}
		o.trace = tracebuf;
	}
	if (nkv_trace_load(o.trace, NULL, &tr)) {
		fprintf(stderr, "netkv bench sched: %s\n", nkv_last_error());
		return 1;
	}
	if (tr->n < 2 || o.warm >= tr->n) {
		fprintf(stderr, "netkv bench sched: trace %s has %zu requests, need more than --warm %u\n", o.trace,
			tr->n, o.warm);
		goto out;
	}
	res = calloc((size_t)o.nsizes * o.npolicies + 1, sizeof(*res));
	lat = malloc((size_t)o.decisions * o.rounds * sizeof(uint64_t));
	minlat = malloc((size_t)o.decisions * sizeof(uint64_t));
	if (!res || !lat || !minlat) {
		fprintf(stderr, "netkv bench sched: out of memory\n");
		goto out;
	}
	clock_floor(o.decisions, o.rounds, lat, minlat, &res[nres++]);
	for (int i = 0; i < o.nsizes; i++) {
		for (int j = 0; j < o.npolicies; j++) {
			fprintf(stderr, "bench sched: |D| = %u, %s ...\n", o.sizes[i], o.policies[j]);
			if (run_one(&o, tr, &perf, o.sizes[i], o.policies[j], lat, minlat, &res[nres])) {
				fprintf(stderr, "netkv bench sched: |D| = %u %s: %s\n", o.sizes[i], o.policies[j],
					nkv_last_error());
				goto out;
			}
			nres++;
		}
	}
	if (o.json) {
		json_t *root = json_object(), *arr = json_array();

		json_object_set_new(root, "trace", json_string(o.trace));
		json_object_set_new(root, "model", json_string(perf.model));
		json_object_set_new(root, "gpu", json_string(perf.gpu));
		json_object_set_new(root, "warm_requests", json_integer(o.warm));
		json_object_set_new(root, "decisions", json_integer(o.decisions));
		json_object_set_new(root, "rounds", json_integer(o.rounds));
		json_object_set_new(root, "threads", json_integer(1));
		for (int i = 0; i < nres; i++) {
			json_t *e = json_object();

			json_object_set_new(e, "decode", json_integer(res[i].nd));
			json_object_set_new(e, "prefill", json_integer(res[i].np));
			json_object_set_new(e, "policy", json_string(res[i].policy));
			json_object_set_new(e, "indexed_blocks", json_integer((json_int_t)res[i].blocks));
			json_object_set_new(e, "decisions_per_s", json_real(res[i].per_s));
			json_object_set_new(e, "mean_us", json_real(res[i].mean));
			json_object_set_new(e, "p50_us", json_real(res[i].p50));
			json_object_set_new(e, "p99_us", json_real(res[i].p99));
			json_object_set_new(e, "p999_us", json_real(res[i].p999));
			json_object_set_new(e, "max_us", json_real(res[i].max));
			json_object_set_new(e, "min_of_rounds_p50_us", json_real(res[i].min_p50));
			json_object_set_new(e, "min_of_rounds_p99_us", json_real(res[i].min_p99));
			json_object_set_new(e, "min_of_rounds_p999_us", json_real(res[i].min_p999));
			json_array_append_new(arr, e);
		}
		json_object_set_new(root, "results", arr);
		nkv_json_print(stdout, root);
	} else {
		printf("scheduler decision latency: %u decisions x %u rounds per run after %u warm-up requests of %s\n",
		       o.decisions, o.rounds, o.warm, o.trace);
		printf("(single thread; includes prefill choice, prefix walk and decode choice; the first row times\n"
		       " the two clock reads alone; 'min' columns: each decision's fastest round, machine noise removed)\n\n");
		printf("%6s %6s %-13s %11s %8s %8s %8s %8s %8s | %8s %8s %8s\n", "|D|", "|P|", "policy", "decisions/s",
		       "mean us", "p50 us", "p99 us", "p999 us", "max us", "min p50", "min p99", "min p999");
		for (int i = 0; i < nres; i++)
			printf("%6u %6u %-13s %11.0f %8.2f %8.2f %8.2f %8.2f %8.1f | %8.2f %8.2f %8.2f\n", res[i].nd,
			       res[i].np, res[i].policy, res[i].per_s, res[i].mean, res[i].p50, res[i].p99, res[i].p999,
			       res[i].max, res[i].min_p50, res[i].min_p99, res[i].min_p999);
	}
	rc = 0;
out:
	free(res);
	free(lat);
	free(minlat);
	nkv_trace_free(tr);
	return rc;
}
