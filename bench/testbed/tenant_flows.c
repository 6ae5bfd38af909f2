/*
 * Tenant traffic on the emulated fabric, for `netkv demo --tenant`: other
 * jobs' flows that load the pod or core tier while the demo replays, so the
 * scheduler's oracle meets congestion it did not cause and must measure.
 *
 * One process per switch endpoint, in that switch's namespace (the demo
 * forks it there): it accepts tenant flows on its uplink address and throws
 * the bytes away, and sends one TCP flow to its peer switch (leaf0 <-> leaf1
 * loads the two pod-tier links between them, spine0 <-> spine1 the two core
 * links). Sent from switch to switch, the flow loads that tier's links and
 * no NIC, as the simulator's tenant sources do (bench/sim/tenant.c). The
 * flow switches on and off: exponential periods of means on_s and
 * on_s x (1 - U) / U, starting on with probability U, from a seed, so every
 * policy of a demo meets the same schedule. While on it writes as fast as
 * TCP takes it (alone it fills the link; beside KV it takes its share);
 * a small send buffer makes the off edges sharp and the queue it leaves in
 * the tbf short (~1 ms). Its result file gets a line "on START END" per
 * on period (CLOCK_MONOTONIC seconds, as nkv_now_s: the demo turns them into
 * the replay's time for `netkv sim validate`) and, when it stops (SIGTERM or
 * after max_s), "total BYTES_SENT ELAPSED_S ON_S".
 */
#include "tenant_flows.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "nkv_util.h"

#define MAX_SINKS 8

static volatile sig_atomic_t g_stop;

static void on_term(int sig)
{
	(void)sig;
	g_stop = 1;
}

static int sock_addr(const char *ip, struct sockaddr_in *sa)
{
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons(NKV_TENANT_PORT);
	return inet_pton(AF_INET, ip, &sa->sin_addr) == 1 ? 0 : nkv_err(EINVAL, "bad address '%s'", ip);
}

static int start_connect(const struct sockaddr_in *peer, const struct sockaddr_in *self)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1, sndbuf = 64 << 10;
	if (fd < 0)
		return -1;
	struct sockaddr_in src = *self;
	src.sin_port = 0;
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&src, sizeof(src)) ||
	    (connect(fd, (const struct sockaddr *)peer, sizeof(*peer)) && errno != EINPROGRESS)) {
		close(fd);
		return -1;
	}
	return fd;
}

int nkv__tenant_flow_main(int argc, char **argv)
{
	/* argv: tenant SELF_IP PEER_IP UTIL ON_S SEED MAX_S RESULT */
	if (argc != 8) {
		fprintf(stderr, "tenant: usage: tenant SELF_IP PEER_IP UTIL ON_S SEED MAX_S RESULT\n");
		return 2;
	}
	struct sockaddr_in self, peer;
	double util, on_s, max_s;
	uint64_t seed;
	if (sock_addr(argv[1], &self) || sock_addr(argv[2], &peer) || nkv_parse_double(argv[3], &util) ||
	    !(util > 0 && util < 1) || nkv_parse_double(argv[4], &on_s) || !(on_s >= 1e-4 && on_s <= 3600) ||
	    nkv_parse_u64(argv[5], &seed) || nkv_parse_double(argv[6], &max_s) || !(max_s > 0 && max_s <= 86400)) {
		fprintf(stderr, "tenant: bad arguments (util in (0,1), on_s in 1e-4..3600, max_s in (0, 86400])\n");
		return 2;
	}
	signal(SIGTERM, on_term);
	signal(SIGPIPE, SIG_IGN);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(lfd, (struct sockaddr *)&self, sizeof(self)) || listen(lfd, MAX_SINKS)) {
		fprintf(stderr, "tenant: listen on %s:%d: %s\n", argv[1], NKV_TENANT_PORT, strerror(errno));
		return 1;
	}
	int sinks[MAX_SINKS], nsinks = 0, out = -1;
	bool connected = false;
	static char buf[256 << 10];
	uint64_t s = seed ? seed : 1, sent = 0;
	double t0 = nkv_now_s(), end = t0 + max_s, next_try = t0, on_total = 0;
	bool on = nkv_unit01(&s) < util;
	double toggle = t0 - on_s * (on ? 1 : (1 - util) / util) * log(nkv_unit01(&s)), on_since = t0;

	FILE *res = fopen(argv[7], "w");
	if (!res) {
		fprintf(stderr, "tenant: %s: %s\n", argv[7], strerror(errno));
		return 1;
	}
	memset(buf, 0x5a, sizeof(buf));
	while (!g_stop) {
		double now = nkv_now_s();
		if (now >= end)
			break;
		while (now >= toggle) {
			if (on) {
				on_total += toggle - on_since;
				fprintf(res, "on %.6f %.6f\n", on_since, toggle);
			}
			on = !on;
			on_since = toggle;
			toggle -= on_s * (on ? 1 : (1 - util) / util) * log(nkv_unit01(&s));
		}
		if (out < 0 && now >= next_try) {
			/* the peer's process may not listen yet: retry every 20 ms */
			out = start_connect(&peer, &self);
			connected = false;
			next_try = now + 0.02;
		}
		struct pollfd pf[MAX_SINKS + 2];
		int np = 0;
		pf[np++] = (struct pollfd){ .fd = lfd, .events = POLLIN };
		for (int i = 0; i < nsinks; i++)
			pf[np++] = (struct pollfd){ .fd = sinks[i], .events = POLLIN };
		int oi = -1;
		if (out >= 0 && (!connected || on)) {
			oi = np;
			pf[np++] = (struct pollfd){ .fd = out, .events = POLLOUT };
		}
		double wait = fmin(fmin(toggle, end), out < 0 ? next_try : end) - now;
		int ms = wait > 0 ? (int)ceil(wait * 1e3) : 0;
		if (poll(pf, (nfds_t)np, ms > 50 ? 50 : ms) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pf[0].revents & POLLIN) {
			int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (fd >= 0 && nsinks < MAX_SINKS)
				sinks[nsinks++] = fd;
			else if (fd >= 0)
				close(fd);
		}
		for (int i = 0; i < nsinks; i++)
			if (pf[1 + i].revents) {
				ssize_t r = read(sinks[i], buf, sizeof(buf));
				if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
					close(sinks[i]);
					sinks[i] = sinks[--nsinks];
					pf[1 + i] = pf[1 + nsinks]; /* keep the slots in step */
					i--;
				}
			}
		if (oi >= 0 && pf[oi].revents) {
			if (!connected) {
				int err = 0;
				socklen_t el = sizeof(err);
				getsockopt(out, SOL_SOCKET, SO_ERROR, &err, &el);
				if (err || (pf[oi].revents & (POLLERR | POLLHUP))) {
					close(out);
					out = -1;
					continue;
				}
				connected = true;
			}
			if (on) {
				ssize_t w = write(out, buf, sizeof(buf));
				if (w > 0)
					sent += (uint64_t)w;
				else if (w < 0 && errno != EAGAIN && errno != EINTR) {
					close(out);
					out = -1;
				}
			}
		}
	}
	double now = fmin(nkv_now_s(), end);
	if (on) {
		on_total += now - on_since;
		fprintf(res, "on %.6f %.6f\n", on_since, now);
	}
	for (int i = 0; i < nsinks; i++)
		close(sinks[i]);
	if (out >= 0)
		close(out);
	close(lfd);
	bool bad = fprintf(res, "total %llu %.6f %.6f\n", (unsigned long long)sent, now - t0, on_total) < 0;
	if (fclose(res) || bad) {
		fprintf(stderr, "tenant: %s: cannot write the result\n", argv[7]);
		return 1;
	}
	return 0;
}
