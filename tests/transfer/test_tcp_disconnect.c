/*
 * Peer disconnect mid-request, both ways, with real processes dying:
 *  A) a forked sender pushes 256 MiB and exits mid-request: the receiver
 *     drops the partial request, reports it, and reports the connection down.
 *  B) a forked receiver exits while we push 256 MiB to it: our request fails
 *     with a clear error, and our other connection keeps working.
 *  C) a forked receiver is stopped (SIGSTOP) while we push 256 MiB to it: the
 *     push stalls for good, and closing the connection returns at once (not
 *     waiting on the stopped peer) with the push failed as cancelled.
 * "Mid-request" is made certain, not left to timing: the receiving side
 * stops polling before the push starts, so only what fits in the socket
 * buffers can move before the peer dies.
 */
#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>

#define BIG (256u << 20)

static const struct nkv_engine_opts opts = { .backend = NKV_BACKEND_TCP, .streams = 2 };

static _Noreturn void die(const char *what)
{
	fprintf(stderr, "%s: %s\n", what, nkv_last_error());
	_exit(1);
}

/* Child of A: connect, wait for the go, push BIG, poll ~30 ms, then vanish. */
static void sender_child(int rfd, int gofd)
{
	struct nkv_engine *e;
	struct nkv_conn *c;
	struct nkv_plan *p;
	struct nkv_event ev[16];
	uint16_t port;
	uint32_t sid;
	void *src;
	char addr[64];
	double end;

	if (read(rfd, &port, sizeof(port)) != sizeof(port))
		_exit(1);
	if (nkv_engine_create(&opts, &e) || nkv_region_alloc(e, NKV_MEM_HOST, BIG, NULL, &sid, &src))
		die("child engine");
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	if (nkv_connect(e, addr, &c))
		die("child connect");
	if (read(gofd, &port, 1) != 1)
		_exit(1);
	if (nkv_plan_build_raw(&(struct nkv_range){ 0, 0, BIG }, 1, &p) ||
	    nkv_push(c, &(struct nkv_push){ .req_id = 77, .src_region = sid, .dst_region = 0, .plan = p }))
		die("child push");
	end = nkv_now_s() + 0.03;
	while (nkv_now_s() < end)
		nkv_poll(e, ev, 16, 5);
	_exit(0); /* no goodbye: the kernel closes the sockets */
}

static void case_a(void)
{
	struct nkv_engine *re;
	struct h_peer rp = { 0 };
	struct nkv_event ev;
	uint32_t rid;
	void *dst;
	uint16_t port;
	int pfd[2], gfd[2], st;
	pid_t pid;

	if (pipe(pfd) || pipe(gfd))
		exit(1);
	if ((pid = fork()) == 0)
		sender_child(pfd[0], gfd[0]);
	if (nkv_engine_create(&opts, &re) || nkv_region_alloc(re, NKV_MEM_HOST, BIG, NULL, &rid, &dst) ||
	    nkv_listen(re, "127.0.0.1:0", &port))
		die("receiver");
	rp.e = re;
	h_start(&rp);
	CHECK(write(pfd[1], &port, sizeof(port)) == sizeof(port), "pipe");
	CHECK(h_wait(&rp, NKV_EV_CONN_UP, 1, 10) == 1, "sender never connected");
	h_pause(&rp);
	CHECK(write(gfd[1], "g", 1) == 1, "pipe");
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "sender child failed");
	h_resume(&rp);
	CHECK(h_wait(&rp, NKV_EV_CONN_DOWN, 1, 10) == 1, "receiver saw no disconnect");
	CHECK(h_wait(&rp, NKV_EV_RECV, 1, 1) == 1, "partial request not reported");
	if (h_find(&rp, NKV_EV_RECV, 0, &ev)) {
		CHECK(ev.req_id == 77 && ev.status == -ECONNRESET, "req %llu status %d", (unsigned long long)ev.req_id,
		      ev.status);
		CHECK(strstr(ev.reason, "dropped partial request 77") != NULL, "reason: %s", ev.reason);
		fprintf(stderr, "A: receiver reported: %s\n", ev.reason);
	}
	if (h_find(&rp, NKV_EV_CONN_DOWN, 0, &ev))
		CHECK(ev.status < 0 && strstr(ev.reason, "peer closed"), "conn down: %d %s", ev.status, ev.reason);
	h_stop(&rp);
	nkv_engine_destroy(re);
	close(pfd[0]);
	close(pfd[1]);
	close(gfd[0]);
	close(gfd[1]);
}

/* Child of B: listen, say the port, stop serving once the peer is up, vanish 50 ms
 * later. Of C (serve): go on serving until stopped and killed (30 s at most). */
static void receiver_child(int wfd, bool serve)
{
	struct nkv_engine *e;
	struct nkv_event ev[16];
	uint32_t rid;
	void *dst;
	uint16_t port;

	if (nkv_engine_create(&opts, &e) || nkv_region_alloc(e, NKV_MEM_HOST, BIG, NULL, &rid, &dst) ||
	    nkv_listen(e, "127.0.0.1:0", &port))
		die("child receiver");
	if (write(wfd, &port, sizeof(port)) != sizeof(port))
		_exit(1);
	for (double give_up = nkv_now_s() + (serve ? 30 : 20); nkv_now_s() < give_up;) {
		int n = nkv_poll(e, ev, 16, 5);
		for (int i = 0; i < n && !serve; i++)
			if (ev[i].type == NKV_EV_CONN_UP) {
				usleep(50000);
				_exit(0);
			}
	}
	_exit(1);
}

static void case_b(void)
{
	struct nkv_engine *se, *other;
	struct h_peer op = { 0 };
	struct nkv_conn *c, *c2;
	struct nkv_plan *p, *small;
	struct nkv_event got[32];
	uint32_t sid, oid;
	void *src, *odst;
	uint16_t port, oport;
	char addr[64];
	int pfd[2], st, ngot = 0, seen;
	pid_t pid;

	if (pipe(pfd))
		exit(1);
	if ((pid = fork()) == 0)
		receiver_child(pfd[1], false);
	if (read(pfd[0], &port, sizeof(port)) != sizeof(port))
		die("pipe");
	/* Our engine, plus a second, healthy peer in a thread. */
	if (nkv_engine_create(&opts, &se) || nkv_region_alloc(se, NKV_MEM_HOST, BIG, NULL, &sid, &src) ||
	    nkv_engine_create(&opts, &other) || nkv_region_alloc(other, NKV_MEM_HOST, 1 << 20, NULL, &oid, &odst) ||
	    nkv_listen(other, "127.0.0.1:0", &oport))
		die("sender");
	op.e = other;
	h_start(&op);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", oport);
	if (nkv_connect(se, addr, &c2))
		die("connect healthy peer");
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	if (nkv_connect(se, addr, &c))
		die("connect dying peer");
	CHECK(nkv_plan_build_raw(&(struct nkv_range){ 0, 0, BIG }, 1, &p) == 0, "plan");
	CHECK(nkv_push(c, &(struct nkv_push){ .req_id = 9, .src_region = sid, .dst_region = 0, .plan = p }) == 0, "push: %s",
	      nkv_last_error());
	seen = h_poll_until(se, NKV_EV_PUSH_DONE, 1, 20, got, 32, &ngot);
	CHECK(seen == 1, "push neither completed nor failed");
	for (int i = 0; i < ngot; i++)
		if (got[i].type == NKV_EV_PUSH_DONE) {
			CHECK(got[i].req_id == 9 && got[i].status == -ECONNRESET, "req %llu status %d",
			      (unsigned long long)got[i].req_id, got[i].status);
			CHECK(strstr(got[i].reason, "request 9 failed") != NULL, "reason: %s", got[i].reason);
			fprintf(stderr, "B: sender reported: %s\n", got[i].reason);
		}
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "receiver child failed");
	/* A push on the dead connection is refused with a reason. */
	CHECK(nkv_push(c, &(struct nkv_push){ .req_id = 10, .src_region = sid, .dst_region = 0, .plan = p }) == -ENOTCONN,
	      "push on a dead connection");
	/* The other connection is unaffected. */
	ngot = 0;
	CHECK(nkv_plan_build_raw(&(struct nkv_range){ 0, 0, 1 << 20 }, 1, &small) == 0, "plan");
	CHECK(nkv_push(c2, &(struct nkv_push){ .req_id = 11, .src_region = sid, .dst_region = oid, .plan = small }) == 0,
	      "push: %s", nkv_last_error());
	CHECK(h_poll_until(se, NKV_EV_PUSH_DONE, 1, 10, got, 32, &ngot) == 1, "healthy push did not complete");
	for (int i = 0; i < ngot; i++)
		if (got[i].type == NKV_EV_PUSH_DONE)
			CHECK(got[i].req_id == 11 && got[i].status == 0, "healthy push: %d %s", got[i].status, got[i].reason);
	CHECK(!memcmp(src, odst, 1 << 20), "healthy push bytes differ");
	nkv_plan_free(p);
	nkv_plan_free(small);
	nkv_conn_close(c);
	nkv_conn_close(c2);
	h_stop(&op);
	nkv_engine_destroy(other);
	nkv_engine_destroy(se);
	close(pfd[0]);
	close(pfd[1]);
}

static void case_c(void)
{
	struct nkv_engine *se;
	struct nkv_conn *c;
	struct nkv_plan *p;
	struct nkv_event got[32];
	uint32_t sid;
	void *src;
	uint16_t port;
	char addr[64];
	int pfd[2], ngot = 0;
	pid_t pid;

	if (pipe(pfd))
		exit(1);
	if ((pid = fork()) == 0)
		receiver_child(pfd[1], true);
	if (read(pfd[0], &port, sizeof(port)) != sizeof(port))
		die("pipe");
	if (nkv_engine_create(&opts, &se) || nkv_region_alloc(se, NKV_MEM_HOST, BIG, NULL, &sid, &src))
		die("sender");
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	if (nkv_connect(se, addr, &c))
		die("connect");
	kill(pid, SIGSTOP);
	CHECK(nkv_plan_build_raw(&(struct nkv_range){ 0, 0, BIG }, 1, &p) == 0, "plan");
	CHECK(nkv_push(c, &(struct nkv_push){ .req_id = 12, .src_region = sid, .dst_region = 0, .plan = p }) == 0,
	      "push: %s", nkv_last_error());
	/* Stalled: the socket buffers fill and the stopped peer never takes more. */
	CHECK(h_poll_until(se, NKV_EV_PUSH_DONE, 1, 1, got, 32, &ngot) == 0, "a push to a stopped peer completed");
	double t0 = nkv_now_s();
	nkv_conn_close(c);
	double took = nkv_now_s() - t0;
	CHECK(took < 1.5, "closing the connection to a stopped peer took %.3f s", took);
	ngot = 0;
	CHECK(h_poll_until(se, NKV_EV_PUSH_DONE, 1, 1, got, 32, &ngot) == 1, "the stalled push was not failed");
	for (int i = 0; i < ngot; i++)
		if (got[i].type == NKV_EV_PUSH_DONE) {
			CHECK(got[i].req_id == 12 && got[i].status == -ECANCELED, "req %llu status %d",
			      (unsigned long long)got[i].req_id, got[i].status);
			fprintf(stderr, "C: close took %.1f ms; sender reported: %s\n", took * 1e3, got[i].reason);
		}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	nkv_plan_free(p);
	nkv_engine_destroy(se);
	close(pfd[0]);
	close(pfd[1]);
}

int main(void)
{
	setenv("NKV_QUIET", "1", 1);
	case_a();
	case_b();
	case_c();
	if (fails)
		fprintf(stderr, "%d check(s) failed\n", fails);
	return fails ? 1 : 0;
}
