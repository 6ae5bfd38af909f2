/*
 * The verbs handshake proves the data-plane secret both ways before the
 * listener tells a peer anything: the same secret connects and moves data;
 * a wrong or missing secret on either side is refused with the reason on
 * both sides (nkv_connect's error, the listener's log); a peer that connects
 * and never sends AUTH, or sends a forged one, gets an ERROR and the close,
 * never a region descriptor. The raw peers speak librdmacm directly.
 */
#include "vtest.h"
#include "verbs.h"

#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/random.h>
#include <unistd.h>

#define HANDSHAKE_MS 1500
static char logpath[] = "/tmp/test_verbs_auth.XXXXXX";
static int errfd = -1;

/* The engines log to stderr, which goes to a file the test reads; it is
 * copied to the real stderr at exit (with any failure message). */
static void dump_log(void)
{
	char buf[4096];
	ssize_t n;
	int fd = open(logpath, O_RDONLY);

	fflush(stderr);
	while (fd >= 0 && (n = read(fd, buf, sizeof(buf))) > 0)
		if (write(errfd, buf, (size_t)n) < 0)
			break;
	if (fd >= 0)
		close(fd);
	unlink(logpath);
}

/* Wait (up to sec) until the listener's log holds `what`. */
static bool logged(const char *what, double sec)
{
	double end = nkv_now_s() + sec;
	char buf[65536];

	do {
		fflush(stderr);
		int fd = open(logpath, O_RDONLY);
		ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
		if (fd >= 0)
			close(fd);
		buf[n > 0 ? n : 0] = 0;
		if (strstr(buf, what))
			return true;
		nanosleep(&(struct timespec){ 0, 20000000 }, NULL);
	} while (nkv_now_s() < end);
	return false;
}

static struct nkv_engine *engine(const char *secret)
{
	struct nkv_engine_opts o;
	struct nkv_engine *e;

	nkv_engine_opts_init(&o);
	o.backend = NKV_BACKEND_VERBS;
	o.gid_index = -1;
	o.secret = secret;
	o.handshake_ms = HANDSHAKE_MS;
	VT_CHECK(nkv_engine_create(&o, &e) == 0, "verbs engine (secret %s)", secret ? "set" : "none");
	return e;
}

static void refused(struct nkv_engine *tx, const char *addr, const char *what, const char *listener_says)
{
	struct nkv_conn *c;
	int rc = nkv_connect(tx, addr, &c);

	printf("%s: %d %s\n", what, rc, nkv_last_error());
	VT_CHECK(rc == -EACCES && !c, "%s: connect refused with EACCES (%d)", what, rc);
	VT_CHECK(strstr(nkv_last_error(), "failed to prove the data-plane secret"), "%s: the reason: %s", what,
		 nkv_last_error());
	VT_CHECK(logged(listener_says, 5), "%s: the listener logged '%s'", what, listener_says);
}

/* ---- a raw peer ----------------------------------------------------------- */

struct raw {
	int adverts, errors;
	uint32_t code;
	bool down;
	double secs;       /* connect to the close */
	unsigned pdlen;    /* the accept's private data */
};

static struct rdma_cm_event *cm_wait(struct rdma_event_channel *ch, enum rdma_cm_event_type want)
{
	struct pollfd p = { .fd = ch->fd, .events = POLLIN };
	struct rdma_cm_event *ev;

	VT_CHECK(poll(&p, 1, 5000) == 1 && !rdma_get_cm_event(ch, &ev), "raw peer: waiting for %s", rdma_event_str(want));
	VT_CHECK(ev->event == want, "raw peer: got %s, wanted %s", rdma_event_str(ev->event), rdma_event_str(want));
	return ev;
}

/* Connect with a good version 3 request, then stay silent (forge false) or
 * send an AUTH with a made-up MAC; record what comes back for `sec`. */
static struct raw raw_peer(const char *ip, uint16_t port, bool forge, double sec)
{
	static uint8_t buf[16][32];
	struct raw out = { 0 };
	struct rdma_event_channel *ch = rdma_create_event_channel();
	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct rdma_cm_id *id;
	struct rdma_cm_event *ev;

	VT_CHECK(ch && !rdma_create_id(ch, &id, NULL, RDMA_PS_TCP), "raw peer: cm id");
	inet_pton(AF_INET, ip, &dst.sin_addr);
	VT_CHECK(!rdma_resolve_addr(id, NULL, (struct sockaddr *)&dst, 2000), "raw peer: resolve addr");
	rdma_ack_cm_event(cm_wait(ch, RDMA_CM_EVENT_ADDR_RESOLVED));
	VT_CHECK(!rdma_resolve_route(id, 2000), "raw peer: resolve route");
	rdma_ack_cm_event(cm_wait(ch, RDMA_CM_EVENT_ROUTE_RESOLVED));
	struct ibv_pd *pd = ibv_alloc_pd(id->verbs);
	struct ibv_cq *cq = pd ? ibv_create_cq(id->verbs, 64, NULL, NULL, 0) : NULL;
	struct ibv_qp_init_attr qa = { .send_cq = cq, .recv_cq = cq, .qp_type = IBV_QPT_RC,
				       .cap = { .max_send_wr = 4, .max_recv_wr = 16, .max_send_sge = 1, .max_recv_sge = 1,
						.max_inline_data = 32 } };
	VT_CHECK(cq && !rdma_create_qp(id, pd, &qa), "raw peer: QP");
	struct ibv_mr *mr = ibv_reg_mr(pd, buf, sizeof(buf), IBV_ACCESS_LOCAL_WRITE);
	VT_CHECK(mr, "raw peer: MR");
	for (uint32_t i = 0; i < 16; i++) {
		struct ibv_sge sge = { .addr = (uintptr_t)buf[i], .length = 32, .lkey = mr->lkey };
		struct ibv_recv_wr wr = { .wr_id = i, .sg_list = &sge, .num_sge = 1 }, *bad;
		VT_CHECK(!ibv_post_recv(id->qp, &wr, &bad), "raw peer: post recv");
	}
	struct vb_req_pd req = { .magic = htole32(VB_REQ_MAGIC), .version = VB_VERSION, .qp_index = 0, .nqps = 1,
				 .mtu = htole32(1024) };
	VT_CHECK(getrandom(&req.token, sizeof(req.token), 0) == sizeof(req.token) &&
			 getrandom(req.na, sizeof(req.na), 0) == sizeof(req.na), "raw peer: random");
	struct rdma_conn_param cp = { .private_data = &req, .private_data_len = sizeof(req), .retry_count = 7,
				      .rnr_retry_count = 7 };
	VT_CHECK(!rdma_connect(id, &cp), "raw peer: connect");
	double t0 = nkv_now_s();
	ev = cm_wait(ch, RDMA_CM_EVENT_ESTABLISHED);
	out.pdlen = ev->param.conn.private_data_len;
	rdma_ack_cm_event(ev);
	if (forge) {
		struct vb_auth a = { .magic = htole32(VB_AUTH_MAGIC) };
		memset(a.mac, 0x5a, sizeof(a.mac));
		struct ibv_sge sge = { .addr = (uintptr_t)&a, .length = sizeof(a) };
		struct ibv_send_wr w = { .sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_SEND,
					 .send_flags = IBV_SEND_INLINE | IBV_SEND_SIGNALED }, *bad;
		VT_CHECK(!ibv_post_send(id->qp, &w, &bad), "raw peer: forged AUTH");
	}
	while (nkv_now_s() < t0 + sec) {
		struct ibv_wc wc[8];
		bool was_down = out.down;
		int n = ibv_poll_cq(cq, 8, wc);
		for (int i = 0; i < n; i++) {
			if (wc[i].status != IBV_WC_SUCCESS || wc[i].opcode != IBV_WC_RECV)
				continue;
			uint32_t magic;
			memcpy(&magic, buf[wc[i].wr_id], 4);
			if (le32toh(magic) == VB_ADV_MAGIC)
				out.adverts++;
			if (le32toh(magic) == VB_ERR_MAGIC) {
				out.errors++;
				out.code = le32toh(((struct vb_error *)buf[wc[i].wr_id])->code);
			}
		}
		struct pollfd p = { .fd = ch->fd, .events = POLLIN };
		if (!out.down && poll(&p, 1, 5) == 1 && !rdma_get_cm_event(ch, &ev)) {
			if (ev->event == RDMA_CM_EVENT_DISCONNECTED) {
				out.down = true;
				out.secs = nkv_now_s() - t0;
			}
			rdma_ack_cm_event(ev);
		}
		if (was_down && !n)
			break; /* what came before the close is drained */
	}
	rdma_disconnect(id);
	rdma_destroy_qp(id);
	ibv_dereg_mr(mr);
	ibv_destroy_cq(cq);
	ibv_dealloc_pd(pd);
	rdma_destroy_id(id);
	rdma_destroy_event_channel(ch);
	return out;
}

int main(void)
{
	char ip[64], addr[96];
	struct vt_rx rx = { 0 }, open_rx = { 0 };
	struct nkv_engine *tx;
	struct nkv_conn *c;
	uint32_t rid, sid;
	uint8_t *rbuf, *sbuf;
	int st = -1;
	char why[160] = "";

	vt_need_rdma(ip, sizeof(ip));
	int fd = mkstemp(logpath);
	VT_CHECK(fd >= 0 && (errfd = dup(2)) >= 0 && dup2(fd, 2) == 2, "stderr to %s", logpath);
	close(fd);
	setvbuf(stderr, NULL, _IONBF, 0);
	atexit(dump_log);

	rx.e = engine("alpha-secret");
	VT_CHECK(strstr(nkv_engine_describe(rx.e), "authenticated"), "describe: %s", nkv_engine_describe(rx.e));
	VT_CHECK(nkv_region_alloc(rx.e, NKV_MEM_HOST, 1 << 20, NULL, &rid, (void **)&rbuf) == 0, "rx region");
	vt_rx_start(&rx, ip);
	snprintf(addr, sizeof(addr), "%s:%u", ip, rx.port);

	/* 1. The same secret: connected, the region advertised after the proof, data moves. */
	tx = engine("alpha-secret");
	VT_CHECK(nkv_region_alloc(tx, NKV_MEM_HOST, 1 << 20, NULL, &sid, (void **)&sbuf) == 0, "tx region");
	vt_fill(sbuf, 1 << 20, 3);
	double t0 = nkv_now_s();
	VT_CHECK(nkv_connect(tx, addr, &c) == 0, "same secret: connect %s", addr);
	printf("same secret: connected in %.1f ms: %s\n", (nkv_now_s() - t0) * 1e3, nkv_engine_describe(tx));
	VT_CHECK(nkv_conn_remote_count(c) == 1 && nkv_conn_remote(c, 0)->rkey && nkv_conn_remote(c, 0)->id == rid,
		 "same secret: the region advertised (%zu)", nkv_conn_remote_count(c));
	struct nkv_range r = { .src_off = 0, .dst_off = 4096, .len = 256 << 10 };
	struct nkv_plan *plan;
	VT_CHECK(nkv_plan_build_raw(&r, 1, &plan) == 0, "plan");
	VT_CHECK(nkv_push(c, &(struct nkv_push){ .req_id = 1, .src_region = sid, .dst_region = rid, .plan = plan }) == 0,
		 "push");
	VT_CHECK(vt_wait_done(tx, 1, 20, &st, NULL, why, sizeof(why)) == 1 && st == 0, "push done: %d %s", st, why);
	VT_CHECK(vt_rx_wait(&rx, 1, 10) && rx.ev[0].status == 0 && rx.ev[0].bytes == r.len, "received");
	VT_CHECK(!memcmp(rbuf + 4096, sbuf, r.len), "bytes placed");
	nkv_plan_free(plan);
	nkv_conn_close(c);
	nkv_engine_destroy(tx);

	/* 2. Another secret, and none, against a listener with one: refused, both sides say why. */
	tx = engine("beta-secret");
	refused(tx, addr, "another secret", "refused by the connecting peer");
	nkv_engine_destroy(tx);
	tx = engine(NULL);
	VT_CHECK(strstr(nkv_engine_describe(tx), "no data-plane secret"), "describe: %s", nkv_engine_describe(tx));
	refused(tx, addr, "no secret", "refused by the connecting peer");

	/* 3. No secret both sides: connected (the empty secret); a secret against no secret: refused. */
	open_rx.e = engine(NULL);
	VT_CHECK(nkv_region_alloc(open_rx.e, NKV_MEM_HOST, 1 << 20, NULL, &rid, (void **)&rbuf) == 0, "open rx region");
	vt_rx_start(&open_rx, ip);
	char open_addr[96];
	snprintf(open_addr, sizeof(open_addr), "%s:%u", ip, open_rx.port);
	VT_CHECK(nkv_connect(tx, open_addr, &c) == 0 && nkv_conn_remote_count(c) == 1, "no secret to no secret");
	nkv_conn_close(c);
	nkv_engine_destroy(tx);
	tx = engine("alpha-secret");
	refused(tx, open_addr, "a secret against none", "refused by the connecting peer");
	nkv_engine_destroy(tx);
	vt_rx_stop(&open_rx);
	nkv_engine_destroy(open_rx.e);

	/* 4. A peer that connects and never proves the secret: the ERROR and the close at the deadline, no region. */
	struct raw s = raw_peer(ip, rx.port, false, HANDSHAKE_MS / 1000.0 + 6);
	printf("silent peer: accept private data %u bytes, %d adverts, %d errors (code %u), closed after %.2f s\n",
	       s.pdlen, s.adverts, s.errors, s.code, s.secs);
	VT_CHECK(s.pdlen >= sizeof(struct vb_rep_pd) && s.adverts == 0, "silent peer: no region descriptor");
	VT_CHECK(s.down && s.secs > HANDSHAKE_MS / 1000.0 - 0.3 && s.secs < HANDSHAKE_MS / 1000.0 + 4,
		 "silent peer: closed at the deadline (%d, %.2f s)", s.down, s.secs);
	VT_CHECK(s.errors == 1 && s.code == VB_WHY_TIMEOUT, "silent peer: told why (%d, code %u)", s.errors, s.code);
	VT_CHECK(logged("proved the data-plane secret within", 3), "silent peer: the listener logged it");

	/* 5. A forged AUTH: refused at once, no region. */
	s = raw_peer(ip, rx.port, true, 5);
	printf("forged AUTH: %d adverts, %d errors (code %u), closed after %.2f s\n", s.adverts, s.errors, s.code, s.secs);
	VT_CHECK(s.adverts == 0 && s.errors == 1 && s.code == VB_WHY_PROOF && s.down, "forged AUTH refused");
	VT_CHECK(logged("does not match this engine's", 3), "forged AUTH: the listener logged it");

	/* 6. None of that was reported as a connection; a good peer still gets in. */
	VT_CHECK(rx.ups == 1, "the listener reported %d connections up (only the good one)", rx.ups);
	tx = engine("alpha-secret");
	VT_CHECK(nkv_connect(tx, addr, &c) == 0, "the same secret again");
	nkv_conn_close(c);
	nkv_engine_destroy(tx);
	vt_rx_stop(&rx);
	nkv_engine_destroy(rx.e);
	printf("PASS\n");
	return 0;
}
