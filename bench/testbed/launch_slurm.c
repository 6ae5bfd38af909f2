/*
 * `netkv launch slurm`: the testbed on a Slurm allocation. `slurm`
 * copies the run's inputs (topology, trace, model file) into the output
 * folder, which must be on a filesystem every node sees, and writes an
 * sbatch script there (and submits it with --submit). The script, on the
 * first node: finds each node's NICs (`launch discover`, one task per node)
 * or takes the hosts file, makes the plan (`launch plan`), then for each
 * policy starts the scheduler, the agents as one `srun --multi-prog` step
 * (rank = plan line, `launch agent`), waits until all registered (polling
 * `netkv scheduler status`, with a deadline), replays the trace and stops
 * everything; at the end (also on SIGTERM) `launch finish` writes run.json
 * and checks every policy's records (launch_finish.c). Agents, scheduler and
 * replay are used only through their command lines.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cluster.h" /* nkv__testbed_check_policies */
#include "launch.h"
#include "nkv_models.h"
#include "nkv_cli.h"
#include "nkv_util.h"

#define MAX_SBATCH_ARGS 16

static int copy_file(const char *from, const char *to)
{
	char *buf;
	size_t len;
	int rc = nkv_read_file(from, (size_t)1 << 30, &buf, &len);
	if (rc)
		return rc;
	FILE *f = fopen(to, "w");
	if (!f || fwrite(buf, 1, len, f) != len || fclose(f))
		rc = nkv_err(EIO, "cannot write %s", to);
	free(buf);
	return rc;
}

static void slurm_usage(FILE *f)
{
	fprintf(f,
		"usage: netkv launch slurm --topo FILE --prefill LIST --decode LIST --trace FILE -o DIR [options]\n"
		"Writes DIR/job.sbatch, which runs the testbed on a Slurm allocation and collects one folder:\n"
		"the scheduler and the replay on the first node, one agent per instance through srun\n"
		"--multi-prog (its rank picks role, name, GPU, device and addresses from the plan made in the\n"
		"job: `netkv launch plan`), each policy in turn, every process stopped at the end. DIR (on a\n"
		"filesystem every node sees) then holds replay-POLICY.csv, run.json, topo.json, plan.json,\n"
		"trace.jsonl and logs/POLICY/ (scheduler, agents, replay): what `netkv sim validate --run\n"
		"DIR/run.json` and tools/plot-replay take. The token is random per job, in DIR/token (mode\n"
		"0600) and the environment, never on a command line.\n"
		"  --topo FILE          topology (netkv topo gen); --prefill/--decode LIST: instances (h0g0,...)\n"
		"                       or hosts (h0 = all its GPUs), as in `netkv launch plan`\n"
		"  --trace FILE         Mooncake JSONL to replay;  --requests N  first N (default 200)\n"
		"  --policies LIST      run one after another (default rr,netkv)\n"
		"  --rate-scale X       arrival rate x X (default 1);  --time-scale X  compute x X (default 1)\n"
		"  --timeout S          the replay's wait for records after the last submit (default 120)\n"
		"  --register-timeout S how long agents may take to register, per policy (default 120)\n"
		"  agents (same meaning as `netkv agent`; --verify is always on):\n"
		"  --backend tcp|verbs  --mem host|cuda  --model M  --blocks N (default 64)  --page-tokens N\n"
		"  --layout layer|block  --qps N  --gid-index N\n"
		"  placement (as `netkv launch plan`):\n"
		"  --hosts FILE         the nodes' NICs from a hosts file (default: discovered on every node)\n"
		"  --per-node N         topology hosts per node (default 1)\n"
		"  --fabric on|off      on: emulate the topology's links on one node (root, ip netns, tc tbf; `netkv\n"
		"                       fabric up --mgmt --scale 1`, so give it rates this node can shape) with\n"
		"                       each agent in its host's namespace; for testing the launch on one box.\n"
		"                       off (default): the allocation's real network\n"
		"  Slurm:\n"
		"  --time MIN           the job's time limit, minutes (default 30)\n"
		"  --partition P        --gpus-per-node N (default with --mem cuda: the GPUs a host uses; 0 = none)\n"
		"  --sbatch-arg ARG     one more #SBATCH line, e.g. --sbatch-arg=--account=abc (repeatable)\n"
		"  --netkv PATH         the netkv binary the nodes run (default: this one; on the shared filesystem)\n"
		"  --submit             submit it (sbatch);  --wait  and wait for the job to end (sbatch --wait)\n");
}

struct slurm_opts {
	const char *topo, *prefill, *decode, *trace, *dir, *policies, *model, *backend, *mem, *layout, *hosts;
	const char *partition, *netkv;
	const char *sbatch[MAX_SBATCH_ARGS];
	int nsbatch;
	uint32_t requests, blocks, page_tokens, qps, gid, per_node, minutes, gpus_per_node, gpn_set;
	double rate_scale, time_scale, timeout, reg_timeout;
	bool fabric, submit, wait;
};

/* model: the agents' --model (a preset or the folder's copy); extra: their other flags */
static void write_script(FILE *f, const struct slurm_opts *o, size_t nodes, size_t agents, uint32_t per_node_max,
			 const char *model, const char *extra)
{
	char pols[256];
	snprintf(pols, sizeof(pols), "%s", o->policies);
	for (char *c = pols; *c; c++)
		if (*c == ',')
			*c = ' ';
	fprintf(f, "#!/bin/bash\n"
		   "# The netkv testbed on a Slurm allocation, written by `netkv launch slurm` (%s).\n"
		   "# Submit with: sbatch %s/job.sbatch   (the job's folder is %s)\n"
		   "#SBATCH --job-name=netkv-testbed\n"
		   "#SBATCH --nodes=%zu\n"
		   "#SBATCH --ntasks-per-node=%u\n"
		   "#SBATCH --time=%u\n"
		   "#SBATCH --output=%s/slurm-%%j.out\n",
		nkv_cli_cmdline(), o->dir, o->dir, nodes, per_node_max, o->minutes, o->dir);
	if (o->partition)
		fprintf(f, "#SBATCH --partition=%s\n", o->partition);
	if (o->gpus_per_node)
		fprintf(f, "#SBATCH --gpus-per-node=%u\n", o->gpus_per_node);
	for (int i = 0; i < o->nsbatch; i++)
		fprintf(f, "#SBATCH %s\n", o->sbatch[i]);
	fprintf(f, "set -u -f   # no globbing: policy cla* is a name\n"
		   "NETKV=%s\n"
		   "OUT=%s\n"
		   "POLICIES=\"%s\"\n"
		   "NAGENTS=%zu\n"
		   "REGISTER_TIMEOUT=%g\n"
		   "PORT=$((20000 + ${SLURM_JOB_ID:-0} %% 20000))\n",
		o->netkv, o->dir, pols, agents, o->reg_timeout);
	if (o->fabric)
		fprintf(f, "FABRIC=nkvs$((${SLURM_JOB_ID:-$$} %% 100000000))-   # namespaces of the emulated fabric\n"
			   "WRAP=\"$NETKV fabric exec mgmt --prefix $FABRIC --\"   # scheduler and replay on its management net\n"
			   "LISTEN=10.78.0.1:$PORT; LOCAL=10.78.0.1:$PORT\n");
	else
		fprintf(f, "FABRIC=\n"
			   "WRAP=\n"
			   "LISTEN=0.0.0.0:$PORT; LOCAL=127.0.0.1:$PORT\n");
	fprintf(f, "cd \"$OUT\" || exit 1\n"
		   "say() { echo \"netkv launch: $*\" >&2; }\n"
		   "mkdir -p logs nodes || exit 1\n"
		   "# a random token per job: a 0600 file and the environment, never a command line\n"
		   "(umask 077; od -An -N16 -tx1 /dev/urandom | tr -d ' \\n' > token) || exit 1\n"
		   "export NKV_TOKEN=$(cat token)\n"
		   "SCHED_PID= AGENTS_PID= REPLAY_PID= POLICY= FINISHED=0 FAILED=0\n"
		   "\n"
		   "# stop PID: SIGTERM, SIGKILL after 10 s\n"
		   "stop() {\n"
		   "\t[ -n \"$1\" ] || return 0\n"
		   "\tkill -TERM \"$1\" 2>/dev/null\n"
		   "\tfor _ in $(seq 50); do kill -0 \"$1\" 2>/dev/null || break; sleep 0.2; done\n"
		   "\tkill -KILL \"$1\" 2>/dev/null\n"
		   "\twait \"$1\" 2>/dev/null\n"
		   "}\n"
		   "# the replay (it writes the records it has), the agents' step: SIGTERM to its tasks (srun\n"
		   "# itself would SIGKILL them), then srun, then the scheduler\n"
		   "stop_policy() {\n"
		   "\tlocal step=\n"
		   "\tstop \"$REPLAY_PID\"; REPLAY_PID=\n"
		   "\t[ -n \"$AGENTS_PID\" ] && step=$(squeue -h --steps -j \"$SLURM_JOB_ID\" -o '%%i %%j' 2>/dev/null |\n"
		   "\t\tawk -v n=\"agents-$POLICY\" '$2 == n { print $1 }')\n"
		   "\tif [ -n \"$step\" ] && scancel --signal=TERM \"$step\" 2>/dev/null; then\n"
		   "\t\tfor _ in $(seq 50); do kill -0 \"$AGENTS_PID\" 2>/dev/null || break; sleep 0.2; done\n"
		   "\tfi\n"
		   "\tstop \"$AGENTS_PID\"; stop \"$SCHED_PID\"; AGENTS_PID= SCHED_PID=\n"
		   "}\n"
		   "\n"
		   "# at the end, and on SIGTERM (scancel, time limit): stop everything, write run.json, check\n"
		   "finish() {\n"
		   "\t[ \"$FINISHED\" = 1 ] && return; FINISHED=1\n"
		   "\tstop_policy\n"
		   "\t[ -n \"$FABRIC\" ] && \"$NETKV\" fabric down --prefix \"$FABRIC\" >> logs/fabric.log 2>&1\n"
		   "\t\"$NETKV\" launch finish -o \"$OUT\" --topo \"$OUT/topo.json\" --prefill %s --decode %s \\\n"
		   "\t\t--policies %s --requests %u --rate-scale %g --time-scale %g --model %s --blocks %u \\\n"
		   "\t\t--mode %s ${1:+--note \"$1\"}\n"
		   "}\n"
		   "trap 'say \"interrupted during ${POLICY:-start-up}; stopping, $OUT keeps what was written\"; "
		   "finish \"interrupted during ${POLICY:-start-up}\"; exit 143' TERM INT\n"
		   "\n",
		o->prefill, o->decode, o->policies, o->requests, o->rate_scale, o->time_scale, model, o->blocks,
		o->fabric ? "fabric" : "slurm");
	/* the nodes' NICs, then the plan */
	if (o->hosts)
		fprintf(f, "HOSTS=\"$OUT/hosts.json\"\n");
	else
		fprintf(f, "# each node's GPUs and NICs, one task per node\n"
			   "HOSTS=\"$OUT/nodes\"\n"
			   "srun --nodes=$SLURM_JOB_NUM_NODES --ntasks=$SLURM_JOB_NUM_NODES --ntasks-per-node=1 --output=\"$OUT/nodes/%%N.json\" \\\n"
			   "\t--error=\"$OUT/logs/discover-%%N.log\" \"$NETKV\" launch discover ||\n"
			   "\t{ say \"discovering the nodes failed (logs/discover-*.log)\"; finish \"discovery failed\"; exit 1; }\n");
	if (o->fabric)
		fprintf(f, "\"$NETKV\" fabric up --topo \"$OUT/topo.json\" --prefix \"$FABRIC\" --mgmt --scale 1 > logs/fabric.log 2>&1 ||\n"
			   "\t{ say \"the emulated fabric did not come up (logs/fabric.log)\"; FABRIC=; finish \"no fabric\"; exit 1; }\n");
	fprintf(f, "\"$NETKV\" launch plan --topo \"$OUT/topo.json\" --prefill %s --decode %s --hosts \"$HOSTS\" \\\n"
		   "\t--per-node %u --backend %s --mem %s --port $PORT ${FABRIC:+--prefix $FABRIC} \\\n"
		   "\t-o \"$OUT/plan.json\" --hostfile \"$OUT/hostfile\" > plan.txt 2> logs/plan.log ||\n"
		   "\t{ say \"no plan: $(cat logs/plan.log)\"; finish \"no plan\"; exit 1; }\n"
		   "cat plan.txt >&2\n"
		   "\n",
		o->prefill, o->decode, o->per_node, o->backend, o->mem);
	/* one policy: scheduler, agents, registration, replay, stop */
	fprintf(f, "registered() { $WRAP \"$NETKV\" scheduler status --scheduler $LOCAL 2>/dev/null | grep -o '\"role\"' | wc -l; }\n"
		   "run_policy() {\n"
		   "\tPOLICY=$1; local log=logs/$1 n=0 end=$((SECONDS + ${REGISTER_TIMEOUT%%.*}))\n"
		   "\tmkdir -p \"$log\"\n"
		   "\t$WRAP \"$NETKV\" scheduler --listen $LISTEN --topo \"$OUT/topo.json\" --prefill %s --decode %s \\\n"
		   "\t\t--policy \"$1\" --time-scale %g > \"$log/scheduler.log\" 2>&1 &\n"
		   "\tSCHED_PID=$!\n"
		   "\techo \"0-$((NAGENTS - 1)) $NETKV launch agent --plan $OUT/plan.json --rank %%t --log $OUT/$log --\" \\\n"
		   "\t\t\"--model %s --blocks %u --time-scale %g --verify%s\" > \"$log/agents.conf\"\n"
		   "\tSLURM_HOSTFILE=\"$OUT/hostfile\" srun --distribution=arbitrary --ntasks=$NAGENTS --kill-on-bad-exit=0 \\\n"
		   "\t\t--job-name=\"agents-$1\" --multi-prog \"$log/agents.conf\" > \"$log/srun-agents.log\" 2>&1 &\n"
		   "\tAGENTS_PID=$!\n"
		   "\twhile n=$(registered); [ \"$n\" -lt $NAGENTS ]; do\n"
		   "\t\tif [ $SECONDS -ge $end ]; then say \"$1: $n of $NAGENTS agents registered within $REGISTER_TIMEOUT s ($log/)\"\n"
		   "\t\telif ! kill -0 $SCHED_PID 2>/dev/null; then say \"$1: the scheduler exited ($log/scheduler.log)\"\n"
		   "\t\telif ! kill -0 $AGENTS_PID 2>/dev/null; then say \"$1: the agents' step ended with $n of $NAGENTS registered ($log/)\"\n"
		   "\t\telse sleep 0.5; continue; fi\n"
		   "\t\tstop_policy; return 1\n"
		   "\tdone\n"
		   "\tsay \"$1: $NAGENTS agents registered, replaying\"\n"
		   "\t$WRAP \"$NETKV\" replay --scheduler $LOCAL --trace \"$OUT/trace.jsonl\" --limit %u --rate-scale %g \\\n"
		   "\t\t--time-scale %g --timeout %g --csv \"$OUT/replay-$1.csv.part\" > \"$log/replay.log\" 2>&1 &\n"
		   "\tREPLAY_PID=$!; wait $REPLAY_PID; local rc=$?; REPLAY_PID=\n"
		   "\t# records whole or not at all: a replay stopped by a signal leaves its .part\n"
		   "\t[ $rc -lt 128 ] && [ -f \"$OUT/replay-$1.csv.part\" ] && mv \"$OUT/replay-$1.csv.part\" \"$OUT/replay-$1.csv\"\n"
		   "\tstop_policy\n"
		   "\t[ $rc = 0 ] || say \"$1: the replay failed (exit $rc, $log/replay.log)\"\n"
		   "\treturn $rc\n"
		   "}\n"
		   "\n"
		   "for p in $POLICIES; do run_policy \"$p\" || FAILED=1; done\n"
		   "POLICY=\n"
		   "finish; rc=$?\n"
		   "[ $FAILED = 0 ] || rc=1\n"
		   "exit $rc\n",
		o->prefill, o->decode, o->time_scale, model, o->blocks, o->time_scale, extra, o->requests, o->rate_scale,
		o->time_scale, o->timeout);
}

int nkv_cmd_launch_slurm(int argc, char **argv)
{
	enum { O_TOPO = 256, O_PREFILL, O_DECODE, O_TRACE, O_POLICIES, O_REQUESTS, O_RATE, O_TS, O_TIMEOUT, O_REG,
	       O_BACKEND, O_MEM, O_MODEL, O_BLOCKS, O_PT, O_LAYOUT, O_QPS, O_GID, O_HOSTS, O_PERNODE, O_FABRIC,
	       O_TIME, O_PART, O_GPN, O_SBATCH, O_NETKV, O_SUBMIT, O_WAIT };
	static const struct option opts[] = {
		{ "topo", 1, 0, O_TOPO }, { "prefill", 1, 0, O_PREFILL }, { "decode", 1, 0, O_DECODE },
		{ "trace", 1, 0, O_TRACE }, { "output", 1, 0, 'o' }, { "policies", 1, 0, O_POLICIES },
		{ "requests", 1, 0, O_REQUESTS }, { "rate-scale", 1, 0, O_RATE }, { "time-scale", 1, 0, O_TS },
		{ "timeout", 1, 0, O_TIMEOUT }, { "register-timeout", 1, 0, O_REG }, { "backend", 1, 0, O_BACKEND },
		{ "mem", 1, 0, O_MEM }, { "model", 1, 0, O_MODEL }, { "blocks", 1, 0, O_BLOCKS },
		{ "page-tokens", 1, 0, O_PT }, { "layout", 1, 0, O_LAYOUT }, { "qps", 1, 0, O_QPS },
		{ "gid-index", 1, 0, O_GID }, { "hosts", 1, 0, O_HOSTS }, { "per-node", 1, 0, O_PERNODE },
		{ "fabric", 1, 0, O_FABRIC }, { "time", 1, 0, O_TIME }, { "partition", 1, 0, O_PART },
		{ "gpus-per-node", 1, 0, O_GPN }, { "sbatch-arg", 1, 0, O_SBATCH }, { "netkv", 1, 0, O_NETKV },
		{ "submit", 0, 0, O_SUBMIT }, { "wait", 0, 0, O_WAIT }, { "help", 0, 0, 'h' }, { 0, 0, 0, 0 } };
	struct slurm_opts o = { .policies = "rr,netkv", .model = "llama3-8b", .backend = "tcp", .mem = "host",
				.layout = NULL, .requests = 200, .blocks = 64, .per_node = 1, .minutes = 30,
				.rate_scale = 1, .time_scale = 1, .timeout = 120, .reg_timeout = 120 };
	static const char cmd[] = "launch slurm";
	int c, bad = 0, verbs;
	char self[PATH_MAX], dir[PATH_MAX];

	optind = 1;
	while ((c = nkv_cli_getopt(argc, argv, "ho:", opts, NULL)) != -1) {
		switch (c) {
		case O_TOPO: o.topo = optarg; break;
		case O_PREFILL: o.prefill = optarg; break;
		case O_DECODE: o.decode = optarg; break;
		case O_TRACE: o.trace = optarg; break;
		case 'o': o.dir = optarg; break;
		case O_POLICIES: o.policies = optarg; break;
		case O_MODEL: o.model = optarg; break;
		case O_LAYOUT: o.layout = optarg; break;
		case O_HOSTS: o.hosts = optarg; break;
		case O_PART: o.partition = optarg; break;
		case O_NETKV: o.netkv = optarg; break;
		case O_FABRIC:
			if (strcmp(optarg, "on") && strcmp(optarg, "off")) {
				fprintf(stderr, "netkv launch slurm: --fabric '%s': expected on or off\n", optarg);
				return 2;
			}
			o.fabric = !strcmp(optarg, "on");
			break;
		case O_SUBMIT: o.submit = true; break;
		case O_WAIT: o.wait = o.submit = true; break;
		case O_REQUESTS: bad = nkv_cli_u32(cmd, "--requests", optarg, 1, UINT32_MAX, &o.requests); break;
		case O_BLOCKS: bad = nkv_cli_u32(cmd, "--blocks", optarg, 1, 1u << 20, &o.blocks); break;
		case O_PT: bad = nkv_cli_u32(cmd, "--page-tokens", optarg, 1, 512, &o.page_tokens); break;
		case O_QPS: bad = nkv_cli_streams(cmd, optarg, &o.qps); break;
		case O_GID: bad = nkv_cli_u32(cmd, "--gid-index", optarg, 0, 65535, &o.gid), o.gid++; break;
		case O_PERNODE: bad = nkv_cli_u32(cmd, "--per-node", optarg, 1, 1 << 20, &o.per_node); break;
		case O_TIME: bad = nkv_cli_u32(cmd, "--time", optarg, 1, 525600, &o.minutes); break;
		case O_GPN: bad = nkv_cli_u32(cmd, "--gpus-per-node", optarg, 0, 1024, &o.gpus_per_node), o.gpn_set = 1; break;
		case O_RATE: bad = nkv_cli_double(cmd, "--rate-scale", optarg, 1e-3, 1e6, &o.rate_scale); break;
		case O_TS: bad = nkv_cli_time_scale(cmd, optarg, &o.time_scale); break;
		case O_TIMEOUT: bad = nkv_cli_positive(cmd, "--timeout", optarg, 86400, &o.timeout); break;
		case O_REG: bad = nkv_cli_double(cmd, "--register-timeout", optarg, 1, 86400, &o.reg_timeout); break;
		case O_BACKEND:
			bad = nkv_cli_backend(cmd, optarg, &verbs);
			o.backend = verbs ? "verbs" : "tcp";
			break;
		case O_MEM:
			if (strcmp(optarg, "host") && strcmp(optarg, "cuda")) {
				fprintf(stderr, "netkv launch slurm: --mem '%s': expected host or cuda\n", optarg);
				return 2;
			}
			o.mem = optarg;
			break;
		case O_SBATCH:
			if (o.nsbatch >= MAX_SBATCH_ARGS || !nkv__launch_word_ok(optarg) || optarg[0] != '-') {
				fprintf(stderr, "netkv launch slurm: --sbatch-arg '%s': want one sbatch option like "
						"--account=abc (no spaces), at most %d\n", optarg, MAX_SBATCH_ARGS);
				return 2;
			}
			o.sbatch[o.nsbatch++] = optarg;
			break;
		case 'h': slurm_usage(stdout); return 0;
		default: return 2;
		}
		if (bad)
			return 2;
	}
	if (optind != argc) {
		fprintf(stderr, "netkv launch slurm: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (!o.topo || !o.prefill || !o.decode || !o.trace || !o.dir) {
		fprintf(stderr, "netkv launch slurm: --topo, --prefill, --decode, --trace and -o DIR are required\n");
		return 2;
	}
	if (o.layout && strcmp(o.layout, "layer") && strcmp(o.layout, "block")) {
		fprintf(stderr, "netkv launch slurm: --layout '%s': expected layer or block\n", o.layout);
		return 2;
	}
	/* Everything that lands on a script or multi-prog line unquoted is a plain word. */
	const char *words[][2] = { { "--prefill", o.prefill }, { "--decode", o.decode }, { "--model", o.model },
				   { "--partition", o.partition }, { "--netkv", o.netkv }, { "-o", o.dir } };
	for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
		if (words[i][1] && !nkv__launch_word_ok(words[i][1])) {
			fprintf(stderr, "netkv launch slurm: %s '%s': want letters, digits and . _ - + / : , = @ %% only\n",
				words[i][0], words[i][1]);
			return 2;
		}
	/* what the agents would refuse on every node, refused here */
	struct nkv_model_desc md;
	if (nkv_model_find(o.model, &md)) {
		fprintf(stderr, "netkv launch slurm: --model: %s\n", nkv_last_error());
		return 2;
	}
	if (o.page_tokens && 512 % o.page_tokens) {
		fprintf(stderr, "netkv launch slurm: --page-tokens %u: want a divisor of 512\n", o.page_tokens);
		return 2;
	}
	if (nkv__testbed_check_policies(o.policies, 16)) {
		fprintf(stderr, "netkv launch slurm: --policies '%s': %s\n", o.policies, nkv_last_error());
		return 2;
	}
	size_t nodes, agents;
	uint32_t per_node_max;
	if (nkv__launch_nodes_needed(o.topo, o.prefill, o.decode, o.per_node, &nodes, &agents, &per_node_max)) {
		fprintf(stderr, "netkv launch slurm: %s\n", nkv_last_error());
		return 1;
	}
	if (o.fabric && nodes > 1) {
		fprintf(stderr, "netkv launch slurm: --fabric on emulates the topology on one node: give --per-node %zu\n",
			nodes * o.per_node);
		return 2;
	}
	if (!o.gpn_set && !strcmp(o.mem, "cuda"))
		o.gpus_per_node = per_node_max;
	if (!o.netkv) {
		ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (sl <= 0) {
			fprintf(stderr, "netkv launch slurm: cannot find my own binary (give --netkv)\n");
			return 1;
		}
		self[sl] = 0;
		o.netkv = self;
	}
	if (mkdir(o.dir, 0755) && errno != EEXIST) {
		fprintf(stderr, "netkv launch slurm: %s: %s\n", o.dir, strerror(errno));
		return 1;
	}
	if (!realpath(o.dir, dir) || !nkv__launch_word_ok(dir)) {
		fprintf(stderr, "netkv launch slurm: -o %s: %s\n", o.dir, errno ? strerror(errno) : "odd characters in its path");
		return 1;
	}
	o.dir = dir;
	/* The run's inputs, in the folder: every node reads them there, and the folder is the record. */
	char path[PATH_MAX + 32], model_arg[PATH_MAX + 32];
	struct stat st;
	int rc = 0;
	snprintf(path, sizeof(path), "%s/topo.json", dir);
	rc = copy_file(o.topo, path);
	snprintf(path, sizeof(path), "%s/trace.jsonl", dir);
	if (!rc)
		rc = copy_file(o.trace, path);
	snprintf(model_arg, sizeof(model_arg), "%s", o.model);
	if (!rc && stat(o.model, &st) == 0 && S_ISREG(st.st_mode)) {
		snprintf(model_arg, sizeof(model_arg), "%s/model.json", dir);
		rc = copy_file(o.model, model_arg);
	}
	snprintf(path, sizeof(path), "%s/hosts.json", dir);
	if (!rc && o.hosts)
		rc = copy_file(o.hosts, path);
	if (rc) {
		fprintf(stderr, "netkv launch slurm: %s\n", nkv_last_error());
		return 1;
	}
	/* the agents' pass-through flags besides model/blocks/time-scale/verify */
	char extra[256] = "";
	size_t el = 0;
	if (o.page_tokens)
		el += (size_t)snprintf(extra + el, sizeof(extra) - el, " --page-tokens %u", o.page_tokens);
	if (o.layout)
		el += (size_t)snprintf(extra + el, sizeof(extra) - el, " --layout %s", o.layout);
	if (o.qps)
		el += (size_t)snprintf(extra + el, sizeof(extra) - el, " --qps %u", o.qps);
	if (o.gid)
		el += (size_t)snprintf(extra + el, sizeof(extra) - el, " --gid-index %u", o.gid - 1);
	(void)el;
	snprintf(path, sizeof(path), "%s/job.sbatch", dir);
	FILE *f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "netkv launch slurm: %s: %s\n", path, strerror(errno));
		return 1;
	}
	write_script(f, &o, nodes, agents, per_node_max, model_arg, extra);
	if (fclose(f) || chmod(path, 0755)) {
		fprintf(stderr, "netkv launch slurm: cannot write %s\n", path);
		return 1;
	}
	printf("wrote %s: %zu agents on %zu node%s (%u per node at most), policies %s\n", path, agents, nodes,
	       nodes == 1 ? "" : "s", per_node_max, o.policies);
	if (!o.submit)
		return 0;
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		char *av[] = { "sbatch", o.wait ? "--wait" : path, o.wait ? path : NULL, NULL };
		execvp("sbatch", av);
		fprintf(stderr, "netkv launch slurm: sbatch: %s\n", strerror(errno));
		_exit(127);
	}
	if (pid < 0 || waitpid(pid, &rc, 0) != pid || !WIFEXITED(rc) || WEXITSTATUS(rc)) {
		fprintf(stderr, "netkv launch slurm: %s (exit %d); the job's folder is %s\n",
			o.wait ? "sbatch --wait: the job failed" : "sbatch failed", WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, dir);
		return 1;
	}
	return 0;
}
