/*
 * One decode agent is stopped (SIGSTOP) for 30 s in the middle of a replay,
 * then continued (issue #16, liveness). The scheduler must declare it dead
 * within its --agent-timeout (3 s) and fail or reroute its requests; the
 * prefill must abort its pushes to it (a CANCEL closes that connection) and
 * keep serving the healthy decode, which must finish requests while the
 * other is stopped. Every request ends with a record: finished, or failed
 * with a reason naming the stopped agent or a timeout; nothing stays in
 * flight at the scheduler afterwards.
 */
#include <pthread.h>
#include <signal.h>
#include <time.h>

#include "e2e_common.h"

static int fails;
#define CHECK(c, ...) do { if (!(c)) { fails++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
	fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

#define STOP_AT 4.0   /* seconds into the replay */
#define STOP_FOR 30.0
#define VICTIM "h1g0"
#define HEALTHY "h2g0"

static struct cluster cl;
static double t_start, t_stop, t_cont;

static pid_t pid_of(const char *name)
{
	for (int i = 0; i < cl.n; i++)
		if (cl.pid[i] > 0 && !strcmp(cl.name[i], name))
			return cl.pid[i];
	return 0;
}

static void sleep_until(double t)
{
	for (double now; (now = nkv_now_s()) < t;) {
		double dt = t - now;
		struct timespec ts = { (time_t)dt, (long)((dt - (double)(time_t)dt) * 1e9) };
		nanosleep(&ts, NULL);
	}
}

static void *stopper(void *arg)
{
	(void)arg;
	pid_t pid = pid_of(VICTIM);
	sleep_until(t_start + STOP_AT);
	t_stop = nkv_now_s();
	if (pid <= 0 || kill(pid, SIGSTOP)) {
		fprintf(stderr, "cannot stop %s\n", VICTIM);
		return NULL;
	}
	fprintf(stderr, "stopped decode agent %s (pid %d) for %.0f s\n", VICTIM, (int)pid, STOP_FOR);
	sleep_until(t_stop + STOP_FOR);
	kill(pid, SIGCONT);
	t_cont = nkv_now_s();
	fprintf(stderr, "continued %s\n", VICTIM);
	return NULL;
}

/* "silent for X s" from the scheduler's log line that dropped the victim; -1 if none. */
static double declared_after(const char *dir)
{
	char path[512], line[1024];
	snprintf(path, sizeof(path), "%s/scheduler.log", dir);
	FILE *f = fopen(path, "r");
	double s = -1;
	while (f && fgets(line, sizeof(line), f)) {
		const char *p = strstr(line, "decode agent " VICTIM " silent for ");
		if (p && strstr(line, "disconnecting") && sscanf(p, "decode agent " VICTIM " silent for %lf", &s) == 1)
			break;
	}
	if (f)
		fclose(f);
	return s;
}

/* Pushes the prefill aborted by closing its connection (a CANCEL while in flight). */
static int aborted(const char *dir)
{
	char path[512], line[1024];
	snprintf(path, sizeof(path), "%s/agent-h0g0.log", dir);
	FILE *f = fopen(path, "r");
	int n = 0;
	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, "): push aborted: connection to decode") && ++n <= 3)
			fprintf(stderr, "prefill: %s", line);
	if (f)
		fclose(f);
	return n;
}

static uint32_t agent_id(const struct replay_result *r, const char *name)
{
	for (size_t i = 0; i < r->nagents; i++)
		if (!strcmp(r->agents[i].name, name))
			return r->agents[i].id;
	return 0;
}

int main(void)
{
	char netkv[512], trace[512], dir[256], addr[32];
	int rc = e2e_paths(netkv, sizeof(netkv), trace, sizeof(trace), dir, sizeof(dir));
	if (rc)
		return rc;
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", e2e_port());
	struct cluster_opts co = { .netkv = netkv, .dir = dir, .addr = addr, .token = "stop-token", .policy = "rr",
				   .prefill = "h0g0", .decode = VICTIM "," HEALTHY, .time_scale = 0.2,
				   .prefill_blocks = 512, .decode_blocks = 512, .verify = true };
	if (nkv__cluster_start(&co, &cl)) {
		fprintf(stderr, "FAIL: testbed did not start: %s\n", nkv_last_error());
		nkv__cluster_stop(&cl);
		return 1;
	}
	/* 300 requests over ~42 s: the stop covers most of the replay. */
	struct replay_opts o = { .sched = addr, .token = "stop-token", .trace = trace, .speed = 2.5, .limit = 300,
				 .ttft_slo = 1, .tbt_slo = 1, .timeout_s = 90, .max_output = 200, .progress = true,
				 .label = "stop " };
	struct replay_result r;
	pthread_t th;
	t_start = nkv_now_s();
	pthread_create(&th, NULL, stopper, NULL);
	rc = nkv_replay_run(&o, &r);
	pthread_join(th, NULL);
	CHECK(t_cont > 0, "the decode was not stopped and continued");
	CHECK(rc == 0, "replay: %s", nkv_last_error());
	CHECK(r.lost == 0, "%zu requests without a terminal record", r.lost);
	CHECK(r.finished + r.failed == r.n, "finished %zu + failed %zu != %zu", r.finished, r.failed, r.n);
	CHECK(r.blocks_bad == 0, "%zu blocks failed verification", r.blocks_bad);
	size_t unnamed = 0;
	for (size_t i = 0; i < r.n; i++)
		if (r.recs[i].done && r.recs[i].status && !strstr(r.recs[i].reason, VICTIM) &&
		    !strstr(r.recs[i].reason, "timeout") && unnamed++ < 3)
			fprintf(stderr, "request %zu failed without naming %s or a timeout: '%s'\n", i, VICTIM,
				r.recs[i].reason);
	CHECK(unnamed == 0, "%zu requests failed without naming %s or a timeout", unnamed, VICTIM);
	/* Requests were in flight at the victim when it stopped (so the fail path ran). */
	CHECK(r.failed > 0, "no request failed: none was in flight at %s when it stopped", VICTIM);
	/* The healthy decode served while the other was stopped (past its detection). */
	double declared = declared_after(dir);
	CHECK(declared > 0, "the scheduler did not declare %s dead (no 'silent for' line in %s/scheduler.log)", VICTIM,
	      dir);
	uint32_t hid = agent_id(&r, HEALTHY);
	size_t during = 0;
	double from = t_stop - t_start + declared + 1, to = t_cont - t_start;
	for (size_t i = 0; i < r.n; i++) {
		const struct replay_rec *x = &r.recs[i];
		double end = x->arrival + x->e2e;
		during += x->done && !x->status && x->decode_id == hid && end > from && end < to;
	}
	CHECK(during >= 20, "only %zu requests finished on %s between %.1f s and %.1f s (while %s was stopped)", during,
	      HEALTHY, from, to, VICTIM);
	/* Nothing left in flight at the scheduler. */
	char *st = e2e_status_text(addr, "stop-token");
	CHECK(st && strstr(st, "\"requests_pending\":0") && strstr(st, "\"requests_running\":0"),
	      "requests left in flight: %s", st ? st : "(no status)");
	/* Tasks the stopped decode never answered (no BLOCKS, so not granted) were decided again. */
	const char *rr = st ? strstr(st, "\"rerouted\":") : NULL;
	long rerouted = rr ? strtol(rr + 11, NULL, 10) : 0;
	CHECK(rerouted > 0, "no request rerouted away from the stopped decode");
	fprintf(stderr, "stop: %zu finished, %zu failed with a reason, %zu lost; %s declared dead after %.1f s silent; "
			"%zu finished on %s while it was stopped; %ld rerouted; %d pushes to it aborted; wall %.1f s\n",
		r.finished, r.failed, r.lost, VICTIM, declared, during, HEALTHY, rerouted, aborted(dir), r.wall_s);
	free(st);
	nkv_replay_free(&r);
	nkv__cluster_stop(&cl);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "! grep -l -E 'Sanitizer|runtime error:' '%s'/*.log >&2", dir);
	CHECK(system(cmd) == 0, "sanitizer reports in the logs above");
	if (fails)
		fprintf(stderr, "logs in %s/\n", dir);
	else
		e2e_cleanup(dir);
	return fails ? 1 : 0;
}
