/*
 * `netkv launch agent`: what srun --multi-prog starts on every rank of a
 * launch job. It reads its line of the plan (rank = $SLURM_PROCID) and execs
 * `netkv agent` with it: role, instance name, scheduler, GPU, RDMA device and
 * NIC address, inside its fabric namespace when the plan has one. The agent
 * is used only through its command line.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fabric.h"
#include "launch.h"
#include "nkv_cli.h"
#include "nkv_util.h"

int nkv_cmd_launch_agent(int argc, char **argv)
{
	static const struct option opts[] = { { "plan", 1, 0, 'p' }, { "rank", 1, 0, 'r' }, { "log", 1, 0, 'l' },
					      { "help", 0, 0, 'h' }, { 0, 0, 0, 0 } };
	const char *plan = NULL, *logdir = NULL, *rank_s = getenv("SLURM_PROCID");
	uint32_t rank;
	int c;

	optind = 1;
	while ((c = nkv_cli_getopt(argc, argv, "+h", opts, NULL)) != -1) {
		if (c == 'p')
			plan = optarg;
		else if (c == 'r')
			rank_s = optarg;
		else if (c == 'l')
			logdir = optarg;
		else if (c == 'h') {
			printf("usage: netkv launch agent --plan FILE [--rank N] [--log DIR] [-- AGENT FLAGS...]\n"
			       "Starts the agent of one rank of a plan (netkv launch plan): execs `netkv agent` with its\n"
			       "role, instance name, scheduler address, GPU (--mem cuda), RDMA device (--backend verbs)\n"
			       "and NIC address (decode --data ADDR:0, prefill --src ADDR), inside its fabric namespace\n"
			       "when the plan has one, followed by the AGENT FLAGS given (--model, --blocks, --verify, ...).\n"
			       "The token comes from $NKV_TOKEN (or --token-file among the flags), never the plan.\n"
			       "  --rank N    the plan's agent N (default $SLURM_PROCID, as srun --multi-prog sets it)\n"
			       "  --log DIR   stdout and stderr to DIR/agent-NAME.log\n");
			return 0;
		} else
			return 2;
	}
	if (!plan || !rank_s) {
		fprintf(stderr, "netkv launch agent: --plan and --rank (or $SLURM_PROCID) are required\n");
		return 2;
	}
	if (nkv_cli_u32("launch agent", "--rank", rank_s, 0, LAUNCH_MAX_AGENTS, &rank))
		return 2;
	struct launch_plan p;
	if (nkv__launch_plan_load(plan, &p)) {
		fprintf(stderr, "netkv launch agent: %s\n", nkv_last_error());
		return 1;
	}
	if (rank >= p.nagents) {
		fprintf(stderr, "netkv launch agent: rank %u: the plan %s has %zu agents (0..%zu)\n", rank, plan, p.nagents,
			p.nagents - 1);
		nkv__launch_plan_free(&p);
		return 1;
	}
	const struct launch_agent *a = &p.agents[rank];
	if (logdir) {
		char log[4096];
		snprintf(log, sizeof(log), "%s/agent-%s.log", logdir, a->name);
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0) {
			fprintf(stderr, "netkv launch agent: %s: %s\n", log, strerror(errno));
			nkv__launch_plan_free(&p);
			return 1;
		}
		dup2(fd, 1);
		dup2(fd, 2);
		close(fd);
	}
	if (a->netns[0] && nkv_fabric_enter(p.fabric, a->host)) {
		fprintf(stderr, "netkv launch agent: %s: %s\n", a->name, nkv_last_error());
		nkv__launch_plan_free(&p);
		return 1;
	}
	char self[4096], gpu[16], data[80];
	ssize_t sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (sl <= 0) {
		fprintf(stderr, "netkv launch agent: cannot find my own binary\n");
		nkv__launch_plan_free(&p);
		return 1;
	}
	self[sl] = 0;
	char **av = calloc((size_t)(argc - optind) + 24, sizeof(char *));
	int k = 0;
	if (!av) {
		nkv__launch_plan_free(&p);
		return 1;
	}
	av[k++] = self, av[k++] = "agent", av[k++] = "--role", av[k++] = a->decode ? "decode" : "prefill";
	av[k++] = "--name", av[k++] = (char *)a->name, av[k++] = "--scheduler", av[k++] = p.scheduler;
	av[k++] = "--backend", av[k++] = p.backend, av[k++] = "--mem", av[k++] = p.mem;
	if (!strcmp(p.mem, "cuda")) {
		snprintf(gpu, sizeof(gpu), "%u", a->gpu);
		av[k++] = "--gpu", av[k++] = gpu;
	}
	if (!strcmp(p.backend, "verbs") && a->device[0])
		av[k++] = "--device", av[k++] = (char *)a->device;
	if (a->decode) {
		snprintf(data, sizeof(data), "%s:0", a->addr);
		av[k++] = "--data", av[k++] = data;
	} else if (!strcmp(p.backend, "tcp")) {
		av[k++] = "--src", av[k++] = (char *)a->addr; /* leave through this NIC */
	}
	for (int i = optind; i < argc; i++)
		av[k++] = argv[i];
	av[k] = NULL;
	fprintf(stderr, "netkv launch agent: rank %u = %s %s on %s (%s%s%s)\n", rank, a->decode ? "decode" : "prefill",
		a->name, a->node, a->addr, a->netns[0] ? ", namespace " : "", a->netns);
	fflush(NULL);
	execv(self, av);
	fprintf(stderr, "netkv launch agent: exec %s: %s\n", self, strerror(errno));
	free(av);
	nkv__launch_plan_free(&p);
	return 127;
}

