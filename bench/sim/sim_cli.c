/*
 * netkv sim run | experiment | tune: the simulator's commands.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nkv_models.h"
#include "nkv_traces.h"
#include "nkv_cli.h"
#include "nkv_json_out.h"
#include "nkv_util.h"
#include "sim_cli.h"

enum {
	O_TOPO = 1000, O_GPUS, O_OVL, O_OVS, O_NIC, O_TRACE, O_PROFILE, O_REQS, O_RATE, O_MODEL, O_GPU, O_POLICY,
	O_SLO_TTFT, O_SLO_TBT, O_SEED, O_SCALE, O_REFRESH, O_LAYOUT, O_BG, O_LIMIT, O_WC, O_WL, O_NOPROBE,
	O_PREFIX, O_CTX, O_CSV, O_JSON, O_PPOL, O_BGP, O_FABRIC, O_SPINES, O_CORES, O_LINKS, O_LAYERWISE, O_TENANT, O_TENANT_ON,
	O_WTBT, /* netkv's pack weight */
};

const struct option nkv_sim_common_opts[] = {
	{ "topo", required_argument, 0, O_TOPO },        { "gpus", required_argument, 0, O_GPUS },
	{ "oversub-leaf", required_argument, 0, O_OVL }, { "oversub-spine", required_argument, 0, O_OVS },
	{ "nic-gbps", required_argument, 0, O_NIC },     { "trace", required_argument, 0, O_TRACE },
	{ "profile", required_argument, 0, O_PROFILE },  { "requests", required_argument, 0, O_REQS },
	{ "rate", required_argument, 0, O_RATE },        { "model", required_argument, 0, O_MODEL },
	{ "policy", required_argument, 0, O_POLICY },    { "slo-ttft", required_argument, 0, O_SLO_TTFT },
	{ "slo-tbt", required_argument, 0, O_SLO_TBT },  { "seed", required_argument, 0, O_SEED },
	{ "rate-scale", required_argument, 0, O_SCALE }, { "refresh", required_argument, 0, O_REFRESH },
	{ "layout", required_argument, 0, O_LAYOUT },    { "bg", required_argument, 0, O_BG },
	{ "limit", required_argument, 0, O_LIMIT },      { "w-cache", required_argument, 0, O_WC },
	{ "w-load", required_argument, 0, O_WL },        { "no-probes", no_argument, 0, O_NOPROBE },
	{ "prefix-share", required_argument, 0, O_PREFIX }, { "context-scale", required_argument, 0, O_CTX },
	{ "csv", required_argument, 0, O_CSV },          { "json", no_argument, 0, O_JSON },
	{ "prefill-policy", required_argument, 0, O_PPOL }, { "bg-period", required_argument, 0, O_BGP },
	/* hidden alias for one release (--help and "did you mean" show the entry above) */
	{ "gen-rate", required_argument, 0, O_RATE },
	{ "gpu-model", required_argument, 0, O_GPU },
	{ "fabric", required_argument, 0, O_FABRIC },    { "spines", required_argument, 0, O_SPINES },
	{ "cores", required_argument, 0, O_CORES },      { "link-gbps", required_argument, 0, O_LINKS },
	{ "layerwise", no_argument, 0, O_LAYERWISE },    { "tenant", required_argument, 0, O_TENANT },
	{ "tenant-on", required_argument, 0, O_TENANT_ON },
	{ "w-tbt", required_argument, 0, O_WTBT },
};

_Static_assert(sizeof(nkv_sim_common_opts) / sizeof(nkv_sim_common_opts[0]) == NKV_SIM_COMMON_NOPTS,
	       "NKV_SIM_COMMON_NOPTS must count nkv_sim_common_opts");

void nkv__sim_opts_help(FILE *f)
{
	fprintf(f,
		"cluster and fabric:\n"
		"  --topo FILE            topology JSON (netkv topo gen); default the fat-tree preset below\n"
		"  --gpus N               fat-tree preset GPUs, default 64 (8/host, 2 hosts/leaf, 2 leaves/pod)\n"
		"  --oversub-leaf X       leaf->spine oversubscription, default 2 (2:1)\n"
		"  --oversub-spine X      spine->core oversubscription, default 4 (4:1)\n"
		"  --nic-gbps X           NIC Gb/s, default 400\n"
		"  --fabric F             aggregate: one aggregated spine per pod and one core, a flow's path is the\n"
		"                         tree's; ecmp: real spines and cores, each flow hashed (src, dst, flow id)\n"
		"                         onto one spine and one core uplink, so flows collide as on a real fabric;\n"
		"                         auto (default): ecmp when the topology declares it (\"ecmp\" in a --topo\n"
		"                         file, or --spines/--cores on the preset), else aggregate\n"
		"  --spines N --cores N   ecmp preset: N spines per pod (default 4), N cores per spine plane (2)\n"
		"  --link-gbps N,L,S      preset link speeds, Gb/s: NIC, one leaf->spine link, one spine->core link\n"
		"                         (L, S default: from the oversubscription, split over the spines/cores)\n"
		"  --layout split|alt     split: each host half prefill, half decode (default); alt: whole hosts alternate\n"
		"  --tenant TIER:UTIL     other tenants load every link of TIER (leaf|pod|core) to a mean utilisation\n"
		"                         UTIL in (0, 1) with on/off flows (exponential periods, seeded); repeatable.\n"
		"                         The recommended way to load tiers (--bg flows never end)\n"
		"  --tenant-on S          mean on period of a tenant source, default 0.1 s\n"
		"  --bg TIER:N            N background flows on TIER (host|leaf|pod|core), repeatable\n"
		"  --bg-period S          move the background flows to new random pairs every S s (default static)\n"
		"  --model M              perf + KV model: a preset (%s), default llama3-8b,\n"
		"                         or a dense model's Hugging Face config.json;\n"
		"                         MoE and MLA configs have a KV shape but no perf model here\n"
		"  --gpu-model G          GPU preset for the perf model (%s), default " NKV_GPU_DEFAULT "\n"
		"  --layerwise            stream KV layer by layer: a request's transfer starts when its batch's\n"
		"                         first layer is done and overlaps the rest of prefill (default: after it)\n"
		"workload:\n"
		"  --trace FILE           Mooncake JSONL; default $NKV_SHARED/traces/mooncake/conversation_trace.jsonl,\n"
		"                         else the ../shared beside the source tree the build came from\n"
		"  --profile P            generate instead: chatbot|rag|agent (--requests N, --rate R/s,\n"
		"                         --prefix-share X, --context-scale X)\n"
		"  --rate-scale X         arrival rate x X (timestamps / X), default 1\n"
		"  --limit N              first N requests\n"
		"scheduler:\n"
		"  --policy NAME          rr random load cache cla cla* netkv-topo netkv-static netkv (default netkv)\n"
		"  --w-cache X --w-load X cla*/netkv-topo weights (default: from `netkv sim tune`, 1 and 1)\n"
		"  --w-tbt X              netkv/netkv-static: s of TTFT per s of mean TBT (pack), default 16\n"
		"  --refresh S            telemetry refresh interval (staleness), default 1 s\n"
		"  --no-probes            no active probes (passive samples only)\n"
		"  --prefill-policy P     cache (default) or rr; shared by every decode policy\n"
		"  --seed N               default 1\n"
		"SLO and output:\n"
		"  --slo-ttft S           default 2 s;  --slo-tbt S  mean TBT per request, default 0.1 s\n"
		"  --csv FILE             per-request records ('-' = stdout);  --json  summary as JSON\n",
		nkv_perf_models(), nkv_perf_gpus());
}

void nkv__sim_opts_init(struct sim_opts *o)
{
	memset(o, 0, sizeof(*o));
	nkv_sim_defaults(&o->cfg);
	nkv_fat_tree_defaults(&o->ft);
	o->ft.oversub_leaf = 2;
	o->ft.oversub_spine = 4;
	nkv_tracegen_defaults(&o->gen);
	o->model = "llama3-8b";
	o->gpu = NKV_GPU_DEFAULT;
	o->cfg.sched.policy = "netkv";
	o->cfg.sched.prefill_policy = NKV_PREFILL_CACHE;
}

static const char *opt_name(int c)
{
	for (int i = 0; i < NKV_SIM_COMMON_NOPTS; i++)
		if (nkv_sim_common_opts[i].val == c)
			return nkv_sim_common_opts[i].name;
	return "?";
}

/* why: the range the value missed, or NULL when the parser said what is wrong.
 * The option as the user spelt it (an alias too), else its --help name. */
static int bad(const char *cmd, int c, const char *arg, const char *why)
{
	const char *typed = nkv_cli_opt_typed();

	if (typed[0] == '-' && typed[1] == '-')
		fprintf(stderr, "netkv %s: %s '%s': %s\n", cmd, typed, arg, why ? why : nkv_last_error());
	else
		fprintf(stderr, "netkv %s: --%s '%s': %s\n", cmd, opt_name(c), arg, why ? why : nkv_last_error());
	return -EINVAL;
}

int nkv__sim_opts_parse(struct sim_opts *o, const char *cmd, int c, const char *arg)
{
	uint32_t u;
	uint64_t v;
	double d;

	switch (c) {
	case O_TOPO: o->topo_file = arg; return 1;
	case O_GPUS:
		if (nkv_parse_u32(arg, &u))
			return bad(cmd, c, arg, NULL);
		if (!u)
			return bad(cmd, c, arg, "must be at least 1");
		o->ft.gpus = u;
		return 1;
	case O_OVL:
	case O_OVS:
	case O_NIC:
		if (nkv_parse_double(arg, &d))
			return bad(cmd, c, arg, NULL);
		if (!(d >= (c == O_NIC ? 1e-3 : 1)))
			return bad(cmd, c, arg, c == O_NIC ? "must be at least 0.001" : "must be at least 1");
		*(c == O_OVL ? &o->ft.oversub_leaf : c == O_OVS ? &o->ft.oversub_spine : &o->ft.nic_gbps) = d;
		return 1;
	case O_TRACE: o->trace_file = arg; return 1;
	case O_PROFILE:
		if (nkv_profile_parse(arg, &o->gen.profile))
			return bad(cmd, c, arg, NULL);
		o->gen_set = true;
		return 1;
	case O_REQS:
		if (nkv_parse_u32(arg, &u))
			return bad(cmd, c, arg, NULL);
		if (!u)
			return bad(cmd, c, arg, "must be at least 1");
		o->gen.requests = u;
		return 1;
	case O_RATE:
	case O_PREFIX:
	case O_CTX:
	case O_SLO_TTFT:
	case O_SLO_TBT:
	case O_SCALE:
	case O_REFRESH:
	case O_WC:
	case O_WL:
	case O_BGP:
	case O_WTBT:
		if (nkv_parse_double(arg, &d))
			return bad(cmd, c, arg, NULL);
		if ((c == O_RATE || c == O_SCALE || c == O_REFRESH || c == O_CTX || c == O_SLO_TTFT ||
		     c == O_SLO_TBT) && !(d > 0))
			return bad(cmd, c, arg, "must be > 0");
		if (!(d >= 0) || (c == O_PREFIX && d > 1))
			return bad(cmd, c, arg, c == O_PREFIX ? "must be in 0..1" : "must be >= 0");
		switch (c) {
		case O_RATE: o->gen.rate = d; break;
		case O_PREFIX: o->gen.prefix_share = d; break;
		case O_CTX: o->gen.context_scale = d; break;
		case O_SLO_TTFT: o->cfg.slo_ttft_s = d; break;
		case O_SLO_TBT: o->cfg.slo_tbt_s = d; break;
		case O_SCALE: o->cfg.rate_scale = d; break;
		case O_REFRESH: o->cfg.sched.oracle.refresh_s = d; break;
		case O_WC: o->cfg.sched.w_cache = d; break;
		case O_WL: o->cfg.sched.w_load = d; break;
		case O_BGP: o->cfg.bg_period_s = d; break;
		case O_WTBT: o->cfg.sched.w_tbt = d; break;
		}
		return 1;
	case O_MODEL: o->model = arg; return 1;
	case O_GPU: o->gpu = arg; return 1;
	case O_POLICY:
		if (!nkv_policy_find(arg)) {
			fprintf(stderr, "netkv %s: --policy '%s': unknown (rr random load cache cla cla* netkv-topo "
					"netkv-static netkv)\n", cmd, arg);
			return -EINVAL;
		}
		o->cfg.sched.policy = arg;
		return 1;
	case O_SEED:
		if (nkv_parse_u64(arg, &v))
			return bad(cmd, c, arg, NULL);
		o->cfg.seed = v;
		o->cfg.sched.seed = v;
		o->gen.seed = v;
		return 1;
	case O_LAYOUT:
		if (!strcmp(arg, "split"))
			o->cfg.layout = NKV_LAYOUT_HOST_SPLIT;
		else if (!strcmp(arg, "alt"))
			o->cfg.layout = NKV_LAYOUT_HOST_ALT;
		else {
			fprintf(stderr, "netkv %s: --layout '%s': split or alt\n", cmd, arg);
			return -EINVAL;
		}
		return 1;
	case O_BG: {
		const char *colon = strchr(arg, ':');
		int tier = -1;

		for (int t = 0; colon && t < NKV_TIERS; t++)
			if (strlen(nkv_tier_name(t)) == (size_t)(colon - arg) && !strncmp(arg, nkv_tier_name(t), (size_t)(colon - arg)))
				tier = t;
		if (tier < 0 || nkv_parse_u32(colon + 1, &u)) {
			fprintf(stderr, "netkv %s: --bg '%s': want TIER:N with TIER host|leaf|pod|core\n", cmd, arg);
			return -EINVAL;
		}
		o->cfg.bg_flows[tier] = u;
		return 1;
	}
	case O_LIMIT:
		if (nkv_parse_u64(arg, &v))
			return bad(cmd, c, arg, NULL);
		o->cfg.limit = v;
		return 1;
	case O_NOPROBE: o->cfg.probes = false; return 1;
	case O_CSV: o->csv = arg; return 1;
	case O_PPOL:
		if (!strcmp(arg, "rr"))
			o->cfg.sched.prefill_policy = NKV_PREFILL_RR;
		else if (!strcmp(arg, "cache"))
			o->cfg.sched.prefill_policy = NKV_PREFILL_CACHE;
		else {
			fprintf(stderr, "netkv %s: --prefill-policy '%s': rr or cache\n", cmd, arg);
			return -EINVAL;
		}
		return 1;
	case O_JSON: o->json = true; return 1;
	case '?': return -EINVAL; /* nkv_cli_getopt said what is wrong */
	case O_LAYERWISE: o->layerwise = true; return 1;
	case O_TENANT: {
		int k;
		if (nkv_sim_tenant_parse(arg, &k, &d))
			return bad(cmd, c, arg, NULL);
		o->cfg.tenant_util[k] = d;
		return 1;
	}
	case O_TENANT_ON:
		if (nkv_parse_double(arg, &d) || !(d >= 1e-4 && d <= 3600))
			return bad(cmd, c, arg, "want seconds in 1e-4 .. 3600");
		o->cfg.tenant_on_s = d;
		return 1;
	case O_FABRIC:
		if (nkv_sim_fabric_parse(arg, &o->cfg.fabric))
			return bad(cmd, c, arg, NULL);
		return 1;
	case O_SPINES:
	case O_CORES:
		if (nkv_parse_u32(arg, &u))
			return bad(cmd, c, arg, NULL);
		if (u < 1 || u > 64)
			return bad(cmd, c, arg, "must be 1..64");
		*(c == O_SPINES ? &o->ft.spines_per_pod : &o->ft.cores_per_spine) = u;
		return 1;
	case O_LINKS: {
		double g[3];
		char *end = NULL;
		const char *p = arg;
		int k;

		for (k = 0; k < 3; k++) {
			errno = 0;
			g[k] = strtod(p, &end);
			if (end == p || errno || !(g[k] >= 1e-3 && g[k] <= 1e6))
				return bad(cmd, c, arg, "want NIC,LEAF,SPINE Gb/s, each 0.001 .. 1e6");
			if (k < 2 && *end != ',')
				return bad(cmd, c, arg, "want three speeds: NIC,LEAF,SPINE (Gb/s)");
			p = end + 1;
		}
		if (*end)
			return bad(cmd, c, arg, "want three speeds: NIC,LEAF,SPINE (Gb/s)");
		o->ft.nic_gbps = g[0];
		o->ft.leaf_link_gbps = g[1];
		o->ft.spine_link_gbps = g[2];
		return 1;
	}
	}
	return 0;
}

int nkv__sim_opts_finish(struct sim_opts *o, const char *cmd)
{
	int ret;
	char buf[1024];

	if ((ret = nkv_perf_preset(o->model, o->gpu, &o->cfg.perf))) {
		fprintf(stderr, "netkv %s: --model/--gpu-model: %s\n", cmd, nkv_last_error());
		return 2; /* a usage error (it was -errno, which exited 254) */
	}
	if (o->layerwise) {
		struct nkv_model_desc md;
		if (nkv_model_find(o->model, &md) || !md.layers) {
			fprintf(stderr, "netkv %s: --layerwise: no layer count for model '%s'\n", cmd, o->model);
			return 2;
		}
		o->cfg.layerwise_layers = md.layers;
	}
	if (o->topo_file && (o->ft.spines_per_pod || o->ft.cores_per_spine || o->ft.leaf_link_gbps)) {
		fprintf(stderr, "netkv %s: --spines, --cores and --link-gbps shape the preset, not a --topo file\n", cmd);
		return 2;
	}
	if (o->ft.cores_per_spine && !o->ft.spines_per_pod)
		o->ft.spines_per_pod = 4;
	if (!o->topo_file && o->cfg.fabric == NKV_FABRIC_ECMP && !o->ft.spines_per_pod)
		o->ft.spines_per_pod = 4;
	if (o->ft.spines_per_pod && !o->ft.cores_per_spine)
		o->ft.cores_per_spine = 2;
	if (o->topo_file)
		ret = nkv_topo_load(o->topo_file, &o->topo);
	else
		ret = nkv_topo_fat_tree(&o->ft, &o->topo);
	if (ret) {
		fprintf(stderr, "netkv %s: topology: %s\n", cmd, nkv_last_error());
		return 1;
	}
	o->cfg.topo = o->topo;
	if (o->gen_set && !o->trace_file) {
		ret = nkv_tracegen(&o->gen, &o->trace);
	} else if (!o->trace_file && (ret = nkv_shared_trace("conversation_trace.jsonl", buf, sizeof(buf)))) {
		fprintf(stderr, "netkv %s: %s (or generate one: --profile chatbot|rag|agent)\n", cmd, nkv_last_error());
		return 2;
	} else {
		ret = nkv_trace_load(o->trace_file ? o->trace_file : buf, NULL, &o->trace);
	}
	if (ret) {
		fprintf(stderr, "netkv %s: %s\n", cmd, nkv_last_error());
		return 1;
	}
	return 0;
}

void nkv__sim_opts_free(struct sim_opts *o)
{
	nkv_trace_free(o->trace);
	nkv_topo_free(o->topo);
	o->trace = NULL;
	o->topo = NULL;
}

/* ---- netkv sim run ---------------------------------------------------------- */

int nkv_cmd_sim_run(int argc, char **argv)
{
	struct sim_opts o;
	struct nkv_sim_result *res = NULL;
	struct option lo[NKV_SIM_COMMON_NOPTS + 2];
	int c, ret;

	memcpy(lo, nkv_sim_common_opts, sizeof(struct option) * NKV_SIM_COMMON_NOPTS);
	lo[NKV_SIM_COMMON_NOPTS] = (struct option){ "help", no_argument, 0, 'h' };
	lo[NKV_SIM_COMMON_NOPTS + 1] = (struct option){ 0 };
	nkv__sim_opts_init(&o);
	optind = 1;
	while ((c = nkv_cli_getopt(argc, argv, "h", lo, NULL)) != -1) {
		if (c == 'h') {
			printf("usage: netkv sim run [options]\nSimulate a trace on a cluster; prints the summary.\n\n");
			nkv__sim_opts_help(stdout);
			return 0;
		}
		if ((ret = nkv__sim_opts_parse(&o, "sim run", c, optarg)) < 0)
			return 2;
		if (!ret) {
			fprintf(stderr, "netkv sim run: unknown option (see --help)\n");
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "netkv sim run: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if ((ret = nkv__sim_opts_finish(&o, "sim run"))) {
		nkv__sim_opts_free(&o);
		return ret;
	}
	o.cfg.progress = !o.json;
	if ((ret = nkv_sim_run(&o.cfg, o.trace, &res))) {
		fprintf(stderr, "netkv sim run: %s\n", nkv_last_error());
		nkv__sim_opts_free(&o);
		return 1;
	}
	if (o.json) {
		json_t *j = nkv_sim_summary_json(&res->sum);
		json_object_set_new(j, "policy", json_string(o.cfg.sched.policy));
		json_object_set_new(j, "model", json_string(o.cfg.perf.model));
		json_object_set_new(j, "gpu", json_string(o.cfg.perf.gpu));
		json_object_set_new(j, "topology", json_string(nkv_topo_name(o.topo)));
		nkv_json_print(stdout, j);
	} else {
		char label[128];
		snprintf(label, sizeof(label), "%s on %s (%s)", o.cfg.sched.policy, nkv_topo_name(o.topo), o.cfg.perf.model);
		nkv_sim_print_summary(stdout, label, &res->sum);
	}
	ret = 0;
	if (o.csv && nkv_sim_write_csv(res, o.topo, o.csv)) {
		fprintf(stderr, "netkv sim run: %s\n", nkv_last_error());
		ret = 1;
	}
	nkv_sim_result_free(res);
	nkv__sim_opts_free(&o);
	return ret;
}
