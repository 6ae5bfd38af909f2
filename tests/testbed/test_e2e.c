/*
 * End to end, real processes over loopback: scheduler + 2 prefill + 4
 * decode agents, 300 requests of the Mooncake conversation trace with time
 * compressed. Every request must finish, every block verify, and each
 * record must add up and be causal. Then: garbage and unauthenticated
 * control connections are cut off while the testbed goes on, and a trace
 * with malformed lines is replayed (skip: reported and skipped; abort:
 * fails naming the line).
 */
#include <errno.h>
#include <math.h>
#include <sys/socket.h>

#include "e2e_common.h"
#include "netkv_perf.h"
#include "netkv_proto.h"
#include "testbed_cli.h"

#define SCALE 0.05
#define BLOCK_BYTES (128u * 1024) /* tiny model: 256 B/token x 512 tokens */

static int fails;
#define CHECK(c, ...) do { if (!(c)) { fails++; fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
	fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

static const char *TOKEN = "e2e-token";

#define REPLAY(...) nkv_cmd_replay(sizeof((char *[]){ "replay", __VA_ARGS__ }) / sizeof(char *), \
				   (char *[]){ "replay", __VA_ARGS__, NULL })
#define DEMO(...) nkv_cmd_demo(sizeof((char *[]){ "demo", __VA_ARGS__ }) / sizeof(char *), (char *[]){ "demo", __VA_ARGS__, NULL })

/* Bytes on a raw socket; returns whether the scheduler closed it (within 10 s). */
static bool closed_after(const char *addr, const void *buf, size_t len)
{
	int fd = nkv_proto_connect(addr, 2);
	if (fd < 0)
		return false;
	(void)!send(fd, buf, len, MSG_NOSIGNAL);
	struct timeval tv = { 10, 0 }; /* generous: the box is shared */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char tmp[4096];
	ssize_t n;
	while ((n = recv(fd, tmp, sizeof(tmp), 0)) > 0)
		;
	close(fd);
	return n == 0;
}

static char *status_text(const char *addr)
{
	return e2e_status_text(addr, TOKEN);
}

static void garbage(const char *addr)
{
	/* 1: random bytes. 2: a valid SUBMIT before REGISTER. 3: a wrong token.
	 * 4: a frame with a bad field (input_len 0). */
	uint8_t junk[256];
	for (size_t i = 0; i < sizeof(junk); i++)
		junk[i] = (uint8_t)(i * 37 + 11);
	CHECK(closed_after(addr, junk, sizeof(junk)), "garbage bytes did not get the peer disconnected");

	struct nkv_buf b = { 0 };
	struct nkv_msg m;
	uint64_t ids[1] = { 7 };
	nkv_msg_init(&m, NKV_MSG_SUBMIT);
	m.req = 1, m.input_len = 100, m.output_len = 10;
	nkv_msg_set_ids(&m, ids, 1);
	nkv_msg_encode(&m, &b);
	CHECK(closed_after(addr, b.p, b.len), "SUBMIT before REGISTER was accepted");
	nkv_msg_clear(&m);

	b.len = 0;
	nkv_msg_init(&m, NKV_MSG_REGISTER);
	m.role = NKV_ROLE_CLIENT;
	strcpy(m.token, "wrong");
	nkv_msg_encode(&m, &b);
	CHECK(closed_after(addr, b.p, b.len), "a wrong token was accepted");

	b.len = 0;
	nkv_msg_init(&m, NKV_MSG_REGISTER);
	m.role = NKV_ROLE_CLIENT;
	strcpy(m.token, TOKEN);
	nkv_msg_encode(&m, &b);
	size_t reg = b.len;
	nkv_msg_init(&m, NKV_MSG_SUBMIT);
	m.req = 1, m.input_len = 100, m.output_len = 10;
	nkv_msg_encode(&m, &b);
	b.p[reg + NKV_PROTO_HDR + 8] = 0; /* input_len = 0 */
	CHECK(closed_after(addr, b.p, b.len), "a SUBMIT with input_len 0 was accepted");
	nkv_buf_free(&b);

	char *st = status_text(addr);
	CHECK(st && strstr(st, "\"bad_peers\":"), "no status after garbage: %s", st ? st : "(none)");
	if (st) {
		const char *p = strstr(st, "\"bad_peers\":");
		long bad = p ? strtol(p + 12, NULL, 10) : 0;
		CHECK(bad >= 3, "bad_peers = %ld, expected >= 3 (garbage, early SUBMIT, bad field)", bad);
	}
	free(st);
}

static void check_records(const struct replay_result *r, const struct nkv_perf *perf)
{
	CHECK(r->n == 300, "%zu requests loaded, expected 300", r->n);
	fails += e2e_check_records(r, 300, perf->decode_a * SCALE, BLOCK_BYTES);
}

static void malformed_trace(const char *dir, const char *trace, const char *addr)
{
	char path[600];
	snprintf(path, sizeof(path), "%s/bad.jsonl", dir);
	FILE *in = fopen(trace, "r"), *out = fopen(path, "w");
	char line[1 << 16];
	for (int i = 0; i < 20 && fgets(line, sizeof(line), in); i++) {
		fputs(line, out);
		if (i == 4)
			fputs("{\"timestamp\": 1, \"input_length\": \"many\", \"output_length\": 3, \"hash_ids\": [1]}\n", out);
		if (i == 9)
			fputs("this is not json\n", out);
		if (i == 14)
			fputs("{\"timestamp\": 5, \"input_length\": 600, \"output_length\": 3, \"hash_ids\": [1]}\n", out);
	}
	fclose(in);
	fclose(out);
	struct replay_opts o = { .sched = addr, .token = TOKEN, .trace = path, .speed = 20, .ttft_slo = 1, .tbt_slo = 1,
				 .timeout_s = 30, .max_output = 64 };
	struct replay_result r;
	int rc = nkv_replay_run(&o, &r);
	CHECK(rc == 0, "replay of a trace with bad lines (skip): %s", nkv_last_error());
	CHECK(r.bad_lines == 3 && r.n == 20 && r.finished == 20, "bad lines %zu (want 3), requests %zu/%zu finished",
	      r.bad_lines, r.finished, r.n);
	nkv_replay_free(&r);
	o.abort_on_bad = true;
	rc = nkv_replay_run(&o, &r);
	CHECK(rc < 0 && strstr(nkv_last_error(), ":6:"), "abort on bad line: rc %d, error '%s' should name line 6", rc,
	      nkv_last_error());
	nkv_replay_free(&r);
}

int main(void)
{
	char netkv[512], trace[512], dir[256], addr[32];
	int rc = e2e_paths(netkv, sizeof(netkv), trace, sizeof(trace), dir, sizeof(dir));
	if (rc)
		return rc;
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", e2e_port());
	/* netkv demo: bad flags stop it before anything starts. An unknown policy
	 * used to be found only when its scheduler refused it, fabric already up. */
	CHECK(DEMO("--fabric", "off", "--dir", dir, "--requests", "1", "--policies", "nope,rr") == 2, "demo: unknown policy accepted");
	CHECK(DEMO("--fabric", "off", "--dir", dir, "--requests", "1", "--policies", ",") == 2, "demo: empty policy list accepted");
	CHECK(DEMO("--fabric", "off", "--dir", dir, "--policies",
		   "rr,rr,rr,rr,rr,rr,rr,rr,rr,rr,rr,rr,rr,rr,rr,rr,rr") == 2, "demo: 17 policies accepted (16 run)");
	CHECK(DEMO("--fabric", "off", "--dir", dir, "--policies", "rr", "--rate", "1e-300") == 1 &&
	      strstr(nkv_last_error(), "timestamps overflow"), "demo: --rate 1e-300: %s", nkv_last_error());
	/* netkv replay: a stray argument is a usage error, not ignored (port 1: nothing listens) */
	CHECK(REPLAY("--scheduler", "127.0.0.1:1", "--trace", trace, "extra") == 2, "replay: stray argument accepted");
	CHECK(REPLAY("--scheduler", "127.0.0.1:1", "--trace", trace, "--speed", "0") == 2, "replay: --speed 0 accepted");
	CHECK(REPLAY("--scheduler", "127.0.0.1:1", "--trace", trace, "--speed", "1e-300") == 2,
	      "replay: --speed 1e-300 accepted (it would wait for ever)");
	CHECK(DEMO("--fabric", "off", "--speed", "1e-9") == 2, "demo: --speed 1e-9 accepted");
	/* netkv agent: flag errors exit 2 without leaking its state (LeakSanitizer turned them into exit 1) */
	CHECK(nkv_cmd_agent(3, (char *[]){ "agent", "--time-scale", "0", NULL }) == 2, "agent: --time-scale 0");
	CHECK(nkv_cmd_agent(3, (char *[]){ "agent", "--blocks", "0", NULL }) == 2, "agent: --blocks 0");
	CHECK(nkv_cmd_agent(3, (char *[]){ "agent", "--tier-gbps", "a", NULL }) == 2, "agent: --tier-gbps a");
	CHECK(nkv_cmd_agent(3, (char *[]){ "agent", "--page-tokens", "24", NULL }) == 2, "agent: --page-tokens 24");
	CHECK(nkv_cmd_agent(3, (char *[]){ "agent", "--backend", "ib", NULL }) == 2, "agent: --backend ib");
	CHECK(nkv_cmd_agent(3, (char *[]){ "agent", "--mem", "gpu", NULL }) == 2, "agent: --mem gpu");
	CHECK(nkv_cmd_agent(3, (char *[]){ "agent", "--layout", "x", NULL }) == 2, "agent: --layout x");
	CHECK(nkv_cmd_agent(3, (char *[]){ "agent", "--streams", "0", NULL }) == 2, "agent: --streams 0");
	CHECK(nkv_cmd_agent(9, (char *[]){ "agent", "--role", "prefill", "--scheduler", "127.0.0.1:1", "--name", "x",
					   "--advertise", "1.2.3.4:5", NULL }) == 2, "agent: --advertise on a prefill");
	CHECK(nkv_cmd_agent(9, (char *[]){ "agent", "--role", "decode", "--scheduler", "127.0.0.1:1", "--name", "x",
					   "--device", "rxe0", NULL }) == 2, "agent: --device without verbs");
	/* A GPU pool on a box without a usable GPU: a clear reason and exit 1
	 * (with one: no scheduler at port 1, exit 1 all the same). */
	CHECK(nkv_cmd_agent(11, (char *[]){ "agent", "--role", "decode", "--scheduler", "127.0.0.1:1", "--name", "x",
					    "--mem", "cuda", "--blocks", "1", NULL }) == 1 &&
	      (strstr(nkv_last_error(), "GPU memory (--mem cuda") || strstr(nkv_last_error(), "127.0.0.1:1")),
	      "agent: --mem cuda without a GPU: %s", nkv_last_error());
	struct nkv_perf perf;
	nkv_perf_preset("llama3-8b", "h100", &perf);
	struct cluster cl;
	struct cluster_opts co = { .netkv = netkv, .dir = dir, .addr = addr, .token = TOKEN, .policy = "netkv",
				   .prefill = "h0g0,h0g1", .decode = "h1g0,h2g0,h4g0,h5g0", .time_scale = SCALE,
				   .prefill_blocks = 512, .decode_blocks = 512, .tier_gbps = NULL, .verify = true,
				   .page_tokens = 16 };
	if (nkv__cluster_start(&co, &cl)) {
		fprintf(stderr, "FAIL: testbed did not start: %s\n", nkv_last_error());
		nkv__cluster_stop(&cl);
		return 1;
	}
	garbage(addr);
	struct replay_opts o = { .sched = addr, .token = TOKEN, .trace = trace, .speed = 15, .limit = 300,
				 .ttft_slo = 2 * SCALE, .tbt_slo = 0.1 * SCALE, .timeout_s = 60, .max_output = 200,
				 .progress = true, .label = "e2e " };
	struct replay_result r;
	rc = nkv_replay_run(&o, &r);
	CHECK(rc == 0, "replay: %s", nkv_last_error());
	nkv_replay_print(stderr, &r);
	check_records(&r, &perf);
	nkv_replay_free(&r);
	/* Active probes ran and reported (the planner probes paths without fresh data). */
	char *st = status_text(addr);
	const char *pd = st ? strstr(st, "\"probes_done\":") : NULL;
	long probes = pd ? strtol(pd + 14, NULL, 10) : 0;
	CHECK(probes > 0, "no probe results reached the scheduler: %s", st ? st : "(no status)");
	/* each agent's transfer path, as it registered it */
	int paths = 0;
	for (const char *q = st; q && (q = strstr(q, "\"path\":\"tcp")); q++)
		paths++;
	CHECK(paths == 6 && strstr(st, "pool host; 16-token pages, layer-major"),
	      "status does not show the 6 agents' paths (tcp, host pool, 16-token pages): %s", st ? st : "(no status)");
	free(st);
	malformed_trace(dir, trace, addr);
	nkv__cluster_stop(&cl);
	/* 16-token pages after churn: pushes are scattered ranges, not one
	 * coalesced run per (layer, K/V) tensor (2 x 2 for the tiny model). */
	unsigned long long pushes, pages, ranges;
	int found = e2e_push_stats(dir, co.prefill, &pushes, &pages, &ranges);
	fprintf(stderr, "pushes %llu: %llu pages of 16 tokens in %llu ranges\n", pushes, pages, ranges);
	CHECK(found == 2 && pushes > 0, "no push statistics in the prefill logs (%d found)", found);
	CHECK(ranges > 4 * pushes * 4, "pushes not scattered: %llu ranges for %llu pushes of %llu pages", ranges, pushes,
	      pages);
	if (fails)
		fprintf(stderr, "%d checks failed; logs in %s/\n", fails, dir);
	else
		e2e_cleanup(dir);
	return fails ? 1 : 0;
}
