/*
 * The scheduler is killed (SIGKILL) mid-replay and started again with the
 * same flags on the same port (issue #16, restarts):
 *  - the replay running at the kill reports every request without a record
 *    as lost, each with a reason naming the lost connection (none with an
 *    empty reason), and counts finished + failed + lost = all;
 *  - every agent stays up, joins the restarted scheduler within a deadline
 *    (`scheduler status` lists each by name) and tells it its prefix set;
 *  - a second replay completes: every request finished, every block verified;
 *  - a third replay with --resubmit across another kill and restart loses
 *    nothing: it reconnects, submits again what had no record, and every
 *    request finishes with every block verified (TTFT counts the outage).
 */
#include <pthread.h>
#include <time.h>

#include "e2e_common.h"

static int fails;
#define CHECK(c, ...) do { if (!(c)) { fails++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
	fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

#define PREFILLS "h0g0,h0g1"
#define DECODES "h1g0,h2g0,h4g0,h5g0"
#define NAGENTS 6
#define REJOIN_S 20 /* agents back within this of the restart (backoff tops at 2 s) */

static struct cluster cl;
static int killed, restarted;

static void nap(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
	nanosleep(&ts, NULL);
}

struct rjob {
	struct replay_opts o;
	struct replay_result r;
	int rc;
	pthread_t th;
};

static void *replayer(void *arg)
{
	struct rjob *j = arg;
	j->rc = nkv_replay_run(&j->o, &j->r);
	return NULL;
}

static void *killer(void *arg)
{
	(void)arg;
	nap(3);
	killed = !nkv__cluster_kill(&cl, "scheduler");
	fprintf(stderr, killed ? "killed the scheduler\n" : "kill: %s\n", nkv_last_error());
	return NULL;
}

/* How many logs of the agents in list have `needle` after the first `after`
 * line; *blocks (if not NULL) sums the number that follows needle. */
static int logs_with(const char *dir, const char *agents, const char *after, const char *needle, unsigned *blocks)
{
	char list[128], *save = NULL;
	int n = 0;
	snprintf(list, sizeof(list), "%s", agents);
	for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		char path[512], line[1024];
		snprintf(path, sizeof(path), "%s/agent-%s.log", dir, t);
		FILE *f = fopen(path, "r");
		const char *hit = NULL;
		bool past = false;
		while (f && !hit && fgets(line, sizeof(line), f)) {
			past |= strstr(line, after) != NULL;
			hit = past ? strstr(line, needle) : NULL;
		}
		if (f)
			fclose(f);
		n += hit != NULL;
		if (hit && blocks)
			*blocks += (unsigned)strtoul(hit + strlen(needle), NULL, 10);
	}
	return n;
}

int main(void)
{
	char netkv[512], trace[512], dir[256], addr[32];
	int rc = e2e_paths(netkv, sizeof(netkv), trace, sizeof(trace), dir, sizeof(dir));
	if (rc)
		return rc;
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", e2e_port());
	struct cluster_opts co = { .netkv = netkv, .dir = dir, .addr = addr, .token = "restart-token", .policy = "netkv",
				   .prefill = PREFILLS, .decode = DECODES, .time_scale = 0.05, .prefill_blocks = 512,
				   .decode_blocks = 512, .verify = true };
	if (nkv__cluster_start(&co, &cl)) {
		fprintf(stderr, "FAIL: testbed did not start: %s\n", nkv_last_error());
		nkv__cluster_stop(&cl);
		return 1;
	}
	pthread_t th;
	pthread_create(&th, NULL, killer, NULL);
	struct replay_opts o = { .sched = addr, .token = "restart-token", .trace = trace, .speed = 15, .limit = 150,
				 .ttft_slo = 1, .tbt_slo = 1, .timeout_s = 60, .max_output = 200, .progress = true,
				 .label = "before the restart " };
	struct replay_result r;
	double t0 = nkv_now_s();
	rc = nkv_replay_run(&o, &r);
	pthread_join(th, NULL);
	/* Restarted from this thread: children die with the thread that forked them (PR_SET_PDEATHSIG). */
	nap(1); /* agents meet a closed port for a while, then the same port again */
	restarted = killed && !nkv__cluster_restart(&cl, "scheduler");
	fprintf(stderr, restarted ? "restarted the scheduler\n" : "restart: %s\n", nkv_last_error());
	double t_restart = nkv_now_s();
	CHECK(killed && restarted, "the scheduler was not killed and restarted");
	CHECK(rc != 0, "the first replay did not notice the scheduler's death");
	if (rc)
		fprintf(stderr, "first replay ended: %s (after %.1f s)\n", nkv_last_error(), t_restart - t0);
	CHECK(r.lost > 0, "no request lost: the kill came after the replay (raise --limit)");
	CHECK(r.finished + r.failed + r.lost == r.n, "finished %zu + failed %zu + lost %zu != %zu", r.finished,
	      r.failed, r.lost, r.n);
	size_t shown = 0;
	for (size_t i = 0; i < r.n; i++) {
		const struct replay_rec *x = &r.recs[i];
		if (x->done)
			continue;
		bool ok = strstr(x->reason, "scheduler connection lost after ") != NULL;
		if (!ok && shown++ < 5)
			CHECK(ok, "request %zu lost with reason '%s'", i, x->reason);
	}
	CHECK(r.nlost_why >= 1, "no lost reason counted");
	nkv_replay_print(stderr, &r);
	nkv_replay_free(&r);

	/* Every agent back, by name, within the deadline. */
	rc = nkv__cluster_wait_agents(&cl, addr, "restart-token", NAGENTS, REJOIN_S);
	CHECK(!rc, "agents did not rejoin: %s", nkv_last_error());
	fprintf(stderr, "all %d agents registered %.1f s after the restart\n", NAGENTS, nkv_now_s() - t_restart);
	char *st = e2e_status_text(addr, "restart-token");
	char names[] = PREFILLS "," DECODES, *save = NULL;
	for (char *t = strtok_r(names, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		char want[64];
		snprintf(want, sizeof(want), "\"name\":\"%s\"", t);
		CHECK(st && strstr(st, want), "scheduler status does not list %s: %s", t, st ? st : "(no answer)");
	}
	free(st);
	const char *all = PREFILLS "," DECODES;
	CHECK(logs_with(dir, all, "scheduler connection lost", "joined the scheduler", NULL) == NAGENTS,
	      "not every agent logged joining the scheduler again");
	/* Each told the new scheduler the prefix set its pool kept; the decodes
	 * held the blocks of the requests that finished before the kill. */
	unsigned held = 0;
	CHECK(logs_with(dir, all, "joined the scheduler", "told the scheduler the ", NULL) == NAGENTS,
	      "not every agent sent its prefix set after joining again");
	logs_with(dir, DECODES, "joined the scheduler", "told the scheduler the ", &held);
	CHECK(held > 0, "the decodes told the restarted scheduler of no prefix blocks: their pools were not kept");
	fprintf(stderr, "the decodes kept %u prefix blocks across the restart\n", held);

	/* A second replay on the restarted scheduler completes. */
	o.limit = 100;
	o.label = "after the restart ";
	rc = nkv_replay_run(&o, &r);
	CHECK(rc == 0, "second replay: %s", nkv_last_error());
	CHECK(r.finished == r.n && r.n == 100, "second replay: %zu of %zu finished, %zu failed, %zu lost", r.finished,
	      r.n, r.failed, r.lost);
	CHECK(r.blocks_ok > 0 && r.blocks_bad == 0, "second replay: blocks %zu ok, %zu bad", r.blocks_ok, r.blocks_bad);
	if (r.failed || r.lost)
		nkv_replay_print(stderr, &r);
	nkv_replay_free(&r);

	/* --resubmit across a kill: the replay in a thread, the kill and the
	 * restart from this one (see above). */
	struct rjob j = { .o = o };
	j.o.resubmit = true;
	j.o.limit = 150;
	j.o.label = "with --resubmit ";
	pthread_create(&j.th, NULL, replayer, &j);
	nap(3);
	killed = !nkv__cluster_kill(&cl, "scheduler");
	nap(1);
	restarted = killed && !nkv__cluster_restart(&cl, "scheduler");
	CHECK(killed && restarted, "the scheduler was not killed and restarted a second time: %s", nkv_last_error());
	pthread_join(j.th, NULL);
	nkv_replay_print(stderr, &j.r);
	CHECK(j.rc == 0, "replay with --resubmit failed");
	CHECK(j.r.reconnects == 1, "replay with --resubmit: %zu reconnects, not 1", j.r.reconnects);
	CHECK(j.r.resubmitted > 0, "nothing resubmitted: the kill came after the replay");
	CHECK(j.r.lost == 0 && j.r.failed == 0 && j.r.finished == j.r.n && j.r.n == 150,
	      "replay with --resubmit: %zu of %zu finished, %zu failed, %zu lost", j.r.finished, j.r.n, j.r.failed,
	      j.r.lost);
	CHECK(j.r.blocks_ok > 0 && j.r.blocks_bad == 0, "replay with --resubmit: blocks %zu ok, %zu bad",
	      j.r.blocks_ok, j.r.blocks_bad);
	/* A resubmitted request's TTFT counts from its first submit: at least the outage. */
	double worst = 0;
	for (size_t i = 0; i < j.r.n; i++)
		if (j.r.recs[i].resubmits && j.r.recs[i].ttft > worst)
			worst = j.r.recs[i].ttft;
	CHECK(worst >= 1, "a resubmitted request's TTFT (at most %.3f s) hides the >= 1 s outage", worst);
	nkv_replay_free(&j.r);
	nkv__cluster_stop(&cl);
	if (fails) {
		e2e_dump_logs(dir);
		fprintf(stderr, "logs in %s/\n", dir);
	} else {
		e2e_cleanup(dir);
	}
	return fails ? 1 : 0;
}
