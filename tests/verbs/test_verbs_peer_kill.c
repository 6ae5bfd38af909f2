/*
 * The decode process is killed (SIGKILL) while pushes are in flight: every
 * push gets exactly one completion (done if the dying peer's NIC still
 * acknowledged it, else failed with a reason), the connection goes down
 * once, nothing hangs, further pushes are refused, and a new decode process
 * can be connected to by the same engine.
 */
#include "vtest.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define RLEN (8u << 20)

/* Child: a receiver that runs until killed. Writes its port to fd. */
static pid_t spawn_receiver(const char *ip, uint16_t *port)
{
	int p[2];
	pid_t pid;

	VT_CHECK(pipe(p) == 0, "pipe");
	if ((pid = fork()) == 0) {
		struct nkv_engine *e = vt_engine(1);
		struct nkv_event ev[64];
		char addr[80];
		uint16_t prt;
		uint32_t id;
		void *buf;
		close(p[0]);
		snprintf(addr, sizeof(addr), "%s:0", ip);
		if (nkv_region_alloc(e, NKV_MEM_HOST, RLEN, NULL, &id, &buf) || nkv_listen(e, addr, &prt))
			_exit(3);
		if (write(p[1], &prt, sizeof(prt)) != sizeof(prt))
			_exit(3);
		for (;;)
			nkv_poll(e, ev, 64, 100);
	}
	close(p[1]);
	VT_CHECK(pid > 0, "fork");
	VT_CHECK(read(p[0], port, sizeof(*port)) == sizeof(*port), "receiver started");
	close(p[0]);
	return pid;
}

static void run(struct nkv_engine *tx, uint32_t sid, const char *ip, pid_t pid, uint16_t port, bool kill_it)
{
	char addr[96];
	struct nkv_conn *c;
	struct nkv_plan *plan;
	struct nkv_range r = { .src_off = 0, .dst_off = 0, .len = 1u << 20 };
	struct nkv_event ev[64];
	uint64_t pushed = 0, ok = 0, failed = 0;
	int downs = 0;
	char why[160] = "";

	snprintf(addr, sizeof(addr), "%s:%u", ip, port);
	VT_CHECK(nkv_connect(tx, addr, &c) == 0, "connect to the child receiver");
	VT_CHECK(nkv_plan_build_raw(&r, 1, &plan) == 0, "plan");
	double t_kill = 0, end = nkv_now_s() + 60;
	while (nkv_now_s() < end) {
		while (!downs && pushed - ok - failed < 8)
			VT_CHECK(nkv_push(c, &(struct nkv_push){ .req_id = ++pushed, .src_region = sid, .dst_region = 0,
								  .plan = plan }) == 0,
				 "push %llu", (unsigned long long)pushed);
		int n = nkv_poll(tx, ev, 64, 50);
		for (int i = 0; i < n; i++) {
			if (ev[i].type == NKV_EV_PUSH_DONE) {
				if (ev[i].status == 0) {
					ok++;
				} else {
					failed++;
					if (!why[0])
						snprintf(why, sizeof(why), "%s", ev[i].reason);
				}
			} else if (ev[i].type == NKV_EV_CONN_DOWN) {
				downs++;
			}
		}
		if (!kill_it && ok >= 6)
			break;
		if (kill_it && !t_kill && ok >= 4) {
			kill(pid, SIGKILL);
			t_kill = nkv_now_s();
			/* Let it die before we look again: the pushes posted next
			 * meet a dead peer. */
			waitpid(pid, NULL, 0);
			pid = 0;
		}
		if (t_kill && downs && ok + failed == pushed)
			break;
	}
	if (kill_it) {
		double dt = nkv_now_s() - t_kill;
		printf("killed the peer after %llu pushes done: %llu failed, connection down after %.2f s: %s\n",
		       (unsigned long long)ok, (unsigned long long)failed, dt, why);
		VT_CHECK(t_kill > 0, "the receiver was killed");
		VT_CHECK(downs == 1, "one CONN_DOWN (%d)", downs);
		VT_CHECK(ok + failed == pushed, "every push got exactly one completion (%llu + %llu of %llu)",
			 (unsigned long long)ok, (unsigned long long)failed, (unsigned long long)pushed);
		/* Pushes the dying peer's NIC still acknowledged count as done (the
		 * bytes were placed); the rest must fail, each with a reason. */
		VT_CHECK(failed == 0 || why[0], "failed pushes carry a reason");
		VT_CHECK(nkv_push(c, &(struct nkv_push){ .req_id = 999, .src_region = sid, .dst_region = 0, .plan = plan }) ==
				 -ENOTCONN,
			 "push on the dead connection refused: %s", nkv_last_error());
	} else {
		VT_CHECK(ok >= 6, "pushes to the new receiver complete (%llu)", (unsigned long long)ok);
		printf("new receiver: %llu pushes ok\n", (unsigned long long)ok);
		kill(pid, SIGKILL);
	}
	if (pid)
		waitpid(pid, NULL, 0);
	nkv_conn_close(c);
	nkv_plan_free(plan);
}

int main(void)
{
	char ip[64];
	struct nkv_engine *tx;
	uint32_t sid;
	void *sbuf;

	vt_need_rdma(ip, sizeof(ip));
	/* Both receivers are forked before this process opens the device: a
	 * child would inherit librdmacm's device contexts, whose command fd the
	 * kernel refuses to another process (EACCES on the child's first SEND). */
	uint16_t port[2];
	pid_t pid[2] = { spawn_receiver(ip, &port[0]), spawn_receiver(ip, &port[1]) };
	tx = vt_engine(2);
	VT_CHECK(nkv_region_alloc(tx, NKV_MEM_HOST, RLEN, NULL, &sid, &sbuf) == 0, "tx region");
	vt_fill(sbuf, RLEN, 5);
	run(tx, sid, ip, pid[0], port[0], true);
	run(tx, sid, ip, pid[1], port[1], false);
	nkv_engine_destroy(tx);
	printf("ok\n");
	return 0;
}
