/*
 * A decode agent is killed (SIGKILL) mid-run: every request must still end
 * with a record, finished (elsewhere, or before the kill) or failed with a
 * reason naming the lost agent; none lost. Requests submitted after the
 * kill must finish on the remaining decodes.
 */
#include <pthread.h>
#include <time.h>

#include "e2e_common.h"

static int fails;
#define CHECK(c, ...) do { if (!(c)) { fails++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
	fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

static struct cluster cl;
static double kill_at;

static void *killer(void *arg)
{
	(void)arg;
	struct timespec ts = { 3, 0 };
	nanosleep(&ts, NULL);
	kill_at = nkv_now_s();
	if (nkv__cluster_kill(&cl, "h1g0"))
		fprintf(stderr, "kill: %s\n", nkv_last_error());
	else
		fprintf(stderr, "killed decode agent h1g0\n");
	return NULL;
}

int main(void)
{
	char netkv[512], trace[512], dir[256], addr[32];
	int rc = e2e_paths(netkv, sizeof(netkv), trace, sizeof(trace), dir, sizeof(dir));
	if (rc)
		return rc;
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", e2e_port());
	struct cluster_opts co = { .netkv = netkv, .dir = dir, .addr = addr, .token = "kill-token", .policy = "rr",
				   .prefill = "h0g0,h0g1", .decode = "h1g0,h2g0,h4g0,h5g0", .time_scale = 0.05,
				   .prefill_blocks = 512, .decode_blocks = 512, .verify = true };
	if (nkv__cluster_start(&co, &cl)) {
		fprintf(stderr, "FAIL: testbed did not start: %s\n", nkv_last_error());
		nkv__cluster_stop(&cl);
		return 1;
	}
	pthread_t th;
	pthread_create(&th, NULL, killer, NULL);
	struct replay_opts o = { .sched = addr, .token = "kill-token", .trace = trace, .speed = 15, .limit = 150,
				 .ttft_slo = 1, .tbt_slo = 1, .timeout_s = 60, .max_output = 200, .progress = true,
				 .label = "kill " };
	struct replay_result r;
	rc = nkv_replay_run(&o, &r);
	pthread_join(th, NULL);
	CHECK(rc == 0, "replay: %s", nkv_last_error());
	CHECK(r.lost == 0, "%zu requests without a terminal record", r.lost);
	CHECK(r.finished + r.failed == r.n, "finished %zu + failed %zu != %zu", r.finished, r.failed, r.n);
	CHECK(r.blocks_bad == 0, "%zu blocks failed verification", r.blocks_bad);
	for (size_t i = 0; i < r.n; i++)
		if (r.recs[i].done && r.recs[i].status)
			CHECK(strstr(r.recs[i].reason, "h1g0"), "request %zu failed without naming the lost agent: '%s'", i,
			      r.recs[i].reason);
	/* rr still picks the dead decode's turn: those are rerouted, so the tail finishes. */
	CHECK(r.finished >= r.n / 2, "only %zu of %zu finished after losing one of four decodes", r.finished, r.n);
	fprintf(stderr, "kill: %zu finished, %zu failed with a reason, %zu lost\n", r.finished, r.failed, r.lost);
	nkv_replay_free(&r);
	nkv__cluster_stop(&cl);
	if (fails)
		fprintf(stderr, "logs in %s/\n", dir);
	else
		e2e_cleanup(dir);
	return fails ? 1 : 0;
}
