/*
 * A hostile data-plane peer against a live decode agent (issue #16): while
 * a replay runs (scheduler, 1 prefill, 1 decode on loopback), a process
 * that reaches the decode's data port tries, over and over, to write
 * in-bounds bytes into its KV pool: without the secret (refused at the
 * handshake), and with it under guessed request ids (ids a counting
 * scheduler would have issued, and random ones), each refused with the
 * reason "has no grant" on the wire. Every replayed request must still
 * finish with every block verified (a sprayed id once failed 71 of 100
 * requests), and no hostile push may succeed. Pools of 1024 blocks: smaller ones can deadlock under this load
 * without any fault (issue #16, the reservation protocol). Bounded: 60 requests, at
 * most 400 hostile tries, every wait with a deadline.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/random.h>

#include "e2e_common.h"
#include "netkv_transfer.h"

static int fails;
#define CHECK(c, ...) do { if (!(c)) { fails++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
	fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

#define TOKEN "hostile-token"

static char data_addr[32];
static atomic_bool stop;
static int tries, refused_auth, refused_grant, accepted, other;
static char first_other[200];

/* One push under req_id into the decode's pool (its first region) from an
 * engine with the given secret: 1 accepted, 0 refused as expected, -1 else. */
static void attempt(struct nkv_engine *e, uint32_t sid, uint64_t req_id, bool with_secret)
{
	struct nkv_conn *c;
	struct nkv_plan *plan = NULL;
	int rc = nkv_connect(e, data_addr, &c);

	tries++;
	if (!with_secret) {
		if (rc == -EACCES)
			refused_auth++;
		else if (other++ == 0)
			snprintf(first_other, sizeof(first_other), "no secret: connect %d %s", rc, rc ? nkv_last_error() : "");
		if (!rc)
			nkv_conn_close(c);
		return;
	}
	if (rc) {
		if (other++ == 0)
			snprintf(first_other, sizeof(first_other), "connect: %s", nkv_last_error());
		return;
	}
	const struct nkv_remote_region *pool = nkv_conn_remote(c, 0);
	uint64_t off = pool && pool->len > (64u << 10) ? (req_id * 4096) % (pool->len - (64u << 10)) : 0;
	struct nkv_range r = { .src_off = 0, .dst_off = off, .len = 64u << 10 };
	if (!pool || nkv_plan_build_raw(&r, 1, &plan) ||
	    nkv_push(c, &(struct nkv_push){ .req_id = req_id, .src_region = sid, .dst_region = pool->id, .plan = plan })) {
		if (other++ == 0)
			snprintf(first_other, sizeof(first_other), "push: %s", nkv_last_error());
	} else {
		struct nkv_event ev[8];
		double end = nkv_now_s() + 5;
		bool done = false;
		while (!done && nkv_now_s() < end) {
			int n = nkv_poll(e, ev, 8, 20);
			for (int i = 0; i < n; i++) {
				if (ev[i].type != NKV_EV_PUSH_DONE)
					continue;
				done = true;
				if (!ev[i].status)
					accepted++;
				else if (strstr(ev[i].reason, "has no grant"))
					refused_grant++;
				else if (other++ == 0)
					snprintf(first_other, sizeof(first_other), "push %llu: %s",
						 (unsigned long long)req_id, ev[i].reason);
			}
		}
		if (!done && other++ == 0)
			snprintf(first_other, sizeof(first_other), "push %llu: no answer in 5 s", (unsigned long long)req_id);
	}
	nkv_plan_free(plan);
	nkv_conn_close(c);
}

static void *hostile(void *arg)
{
	struct nkv_engine_opts o;
	struct nkv_engine *with, *without;
	uint32_t sid, sid2;
	void *mem;
	(void)arg;

	nkv_engine_opts_init(&o);
	o.secret = TOKEN;
	if (nkv_engine_create(&o, &with) || nkv_region_alloc(with, NKV_MEM_HOST, 64u << 10, NULL, &sid, &mem)) {
		snprintf(first_other, sizeof(first_other), "hostile engine: %s", nkv_last_error());
		other++;
		return NULL;
	}
	memset(mem, 0xEE, 64u << 10);
	o.secret = NULL;
	if (nkv_engine_create(&o, &without) || nkv_region_alloc(without, NKV_MEM_HOST, 64u << 10, NULL, &sid2, &mem)) {
		snprintf(first_other, sizeof(first_other), "hostile engine: %s", nkv_last_error());
		other++;
		nkv_engine_destroy(with);
		return NULL;
	}
	for (uint64_t k = 0; !atomic_load(&stop) && tries < 400; k++) {
		uint64_t id = k; /* what a scheduler counting from 0 issues */
		if (k % 4 == 3 && getrandom(&id, sizeof(id), 0) == sizeof(id))
			id &= ~NKV_PROTO_PROBE_BIT; /* a random guess */
		attempt(k % 8 == 7 ? without : with, k % 8 == 7 ? sid2 : sid, id, k % 8 != 7);
		usleep(20000);
	}
	nkv_engine_destroy(with);
	nkv_engine_destroy(without);
	return NULL;
}

int main(void)
{
	char netkv[512], trace[512], dir[256], addr[32];
	int rc = e2e_paths(netkv, sizeof(netkv), trace, sizeof(trace), dir, sizeof(dir));
	if (rc)
		return rc;
	setenv("NKV_QUIET", "1", 1); /* the hostile engines' own refusals */
	int base = e2e_port();
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", base);
	snprintf(data_addr, sizeof(data_addr), "127.0.0.1:%d", base + 1);
	struct cluster_opts co = { .netkv = netkv, .dir = dir, .addr = addr, .token = TOKEN, .policy = "rr",
				   .prefill = "h0g0", .decode = "h1g0", .decode_data = data_addr, .time_scale = 0.05,
				   .prefill_blocks = 1024, .decode_blocks = 1024, .verify = true };
	struct cluster cl;
	if (nkv__cluster_start(&co, &cl)) {
		fprintf(stderr, "FAIL: testbed did not start: %s\n", nkv_last_error());
		nkv__cluster_stop(&cl);
		return 1;
	}
	pthread_t th;
	pthread_create(&th, NULL, hostile, NULL);
	struct replay_opts o = { .sched = addr, .token = TOKEN, .trace = trace, .speed = 10, .limit = 60,
				 .ttft_slo = 1, .tbt_slo = 1, .timeout_s = 60, .max_output = 100, .label = "hostile " };
	struct replay_result r;
	rc = nkv_replay_run(&o, &r);
	atomic_store(&stop, true);
	pthread_join(th, NULL);
	CHECK(rc == 0, "replay: %s", nkv_last_error());
	CHECK(r.n == 60 && r.finished == r.n && r.blocks_bad == 0 && r.blocks_ok > 0,
	      "%zu requests: %zu finished, %zu failed, %zu lost; blocks %zu ok, %zu bad", r.n, r.finished, r.failed,
	      r.lost, r.blocks_ok, r.blocks_bad);
	for (size_t i = 0, shown = 0; i < r.n && shown < 3; i++)
		if (r.recs[i].status && ++shown)
			fprintf(stderr, "  request %zu failed: %s\n", i, r.recs[i].reason);
	fprintf(stderr, "hostile peer: %d tries: %d refused at the handshake, %d refused for no grant, %d accepted, "
			"%d otherwise%s%s\n", tries, refused_auth, refused_grant, accepted, other, other ? ": " : "",
		first_other);
	CHECK(accepted == 0, "%d hostile pushes were accepted into the pool", accepted);
	CHECK(other == 0, "hostile tries that ended otherwise: %s", first_other);
	CHECK(refused_grant >= 10 && refused_auth >= 1, "too few hostile tries ran (%d, %d)", refused_grant,
	      refused_auth);
	nkv_replay_free(&r);
	nkv__cluster_stop(&cl);
	if (fails) {
		e2e_dump_logs(dir);
		fprintf(stderr, "logs in %s/\n", dir);
	} else {
		e2e_cleanup(dir);
	}
	return fails ? 1 : 0;
}
