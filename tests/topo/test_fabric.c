/*
 * Emulated fabric end to end (label "fabric"; needs root + iproute2 + tbf,
 * exits 77 otherwise): builds tests/topo/corpus/tree4.json (4 hosts, 2
 * leaves, 1 spine, 400 Gb/s NICs, 4:1 leaf uplinks = 200 Gb/s) at scale
 * 1/1000, so the shaped rates are 400 Mbit/s NIC and 200 Mbit/s leaf
 * uplink, then:
 *  - pushes h0 -> h1 (same leaf, bottleneck 400 Mbit/s) and h0 -> h2
 *    (across the spine, bottleneck 200 Mbit/s) and checks each measured
 *    throughput is within 10% of the shaped bottleneck;
 *  - checks from the spine's counters that only the cross-leaf push went
 *    through the spine (routes follow the tree);
 *  - measures TCP round trips h0 <-> h1 and h0 <-> h2 and reports the
 *    cross-leaf path's extra latency: the configured 4 x 250 us per round
 *    trip where the kernel has netem, otherwise what the two extra
 *    forwarding hops each way really cost (must be > 0).
 * The pusher is iperf3 (the reference tool) here; see the report below.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fabric.h"
#include "netkv_topo.h"
#include "nkv_util.h"

#define SCALE 1000.0
#define TOL 0.10

static char prefix[32];
static int failures;

#define CHECK(cond, ...)                                                                                               \
	do {                                                                                                           \
		if (!(cond)) {                                                                                         \
			fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                           \
			fprintf(stderr, __VA_ARGS__);                                                                  \
			fputc('\n', stderr);                                                                           \
			failures++;                                                                                    \
		}                                                                                                      \
	} while (0)

/* Runs argv inside a host's namespace; with out, captures stdout. Returns the pid (background) or exit status. */
static pid_t spawn_in(const char *host, char *const argv[], int *out_fd)
{
	int p[2] = { -1, -1 };
	pid_t pid;

	if (out_fd && pipe(p))
		return -1;
	pid = fork();
	if (pid == 0) {
		if (out_fd) {
			dup2(p[1], 1);
			close(p[0]);
			close(p[1]);
		} else {
			int null = open("/dev/null", O_WRONLY);
			if (null >= 0)
				dup2(null, 1);
		}
		if (nkv_fabric_enter(prefix, host)) {
			fprintf(stderr, "enter %s: %s\n", host, nkv_last_error());
			_exit(126);
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	if (out_fd) {
		close(p[1]);
		*out_fd = p[0];
	}
	return pid;
}

static int wait_status(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static char *read_all(int fd)
{
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	ssize_t r;

	while (buf && (r = read(fd, buf + n, cap - n - 1)) > 0) {
		n += (size_t)r;
		if (n + 1 == cap) {
			char *nb = realloc(buf, cap *= 2);
			if (!nb) {
				free(buf);
				return NULL;
			}
			buf = nb;
		}
	}
	close(fd);
	if (buf)
		buf[n] = '\0';
	return buf;
}

static uint64_t tx_bytes(const char *ns_suffix, const char *dev)
{
	char ns[64];
	snprintf(ns, sizeof(ns), "%s%s", prefix, ns_suffix);
	char *argv[] = { "ip", "-n", ns, "-j", "-s", "link", "show", "dev", (char *)dev, NULL };
	int fd[2];
	uint64_t v = 0;

	if (pipe(fd))
		return 0;
	pid_t pid = fork();
	if (pid == 0) {
		dup2(fd[1], 1);
		close(fd[0]);
		close(fd[1]);
		execvp("ip", argv);
		_exit(127);
	}
	close(fd[1]);
	char *s = read_all(fd[0]);
	wait_status(pid);
	json_t *j = s ? json_loads(s, 0, NULL) : NULL;
	json_t *b = json_object_get(json_object_get(json_object_get(json_array_get(j, 0), "stats64"), "tx"), "bytes");
	if (json_is_integer(b))
		v = (uint64_t)json_integer_value(b);
	json_decref(j);
	free(s);
	return v;
}

/* iperf3 push from h0 to dst for secs; returns receiver goodput in bit/s, < 0 on failure. */
static double iperf3_push(const char *dst_host, const char *dst_addr, int port, int secs)
{
	char p[16], t[16];
	snprintf(p, sizeof(p), "%d", port);
	snprintf(t, sizeof(t), "%d", secs);
	char *srv[] = { "iperf3", "-s", "-1", "-p", p, NULL };
	char *cli[] = { "iperf3", "-c", (char *)dst_addr, "-p", p, "-t", t, "-J", NULL };
	pid_t s = spawn_in(dst_host, srv, NULL), c;
	int fd, st;
	double bps = -1;

	usleep(300000);
	c = spawn_in("h0", cli, &fd);
	char *out = read_all(fd);
	st = wait_status(c);
	if (st) {
		kill(s, SIGTERM);
	}
	wait_status(s);
	json_t *j = out ? json_loads(out, 0, NULL) : NULL;
	json_t *v = json_object_get(json_object_get(json_object_get(j, "end"), "sum_received"), "bits_per_second");
	if (st == 0 && json_is_number(v))
		bps = json_number_value(v);
	else
		fprintf(stderr, "iperf3 to %s failed (status %d): %.300s\n", dst_addr, st, out ? out : "");
	json_decref(j);
	free(out);
	return bps;
}

/* ---- TCP round trips ------------------------------------------------------------------------- */

static double now_us(void)
{
	return (double)nkv_now_ns() / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void echo_server(const char *host, int port)
{
	if (nkv_fabric_enter(prefix, host))
		_exit(1);
	int ls = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(ls, (struct sockaddr *)&a, sizeof(a)) || listen(ls, 1))
		_exit(1);
	int c = accept(ls, NULL, NULL);
	setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	char b;
	while (read(c, &b, 1) == 1)
		if (write(c, &b, 1) != 1)
			break;
	_exit(0);
}

/* RTT percentiles (p10, p50) in us from h0 to addr over n round trips, measured in a child in h0. */
struct rtt {
	double p10, p50;
};

static struct rtt median_rtt(const char *addr, int port, int n)
{
	int fd[2];
	struct rtt med = { -1, -1 };

	if (pipe(fd))
		return med;
	pid_t pid = fork();
	if (pid == 0) {
		close(fd[0]);
		double *rtt = calloc((size_t)n, sizeof(double));
		struct rtt m = { -1, -1 };
		int s = -1, one = 1;
		if (!rtt || nkv_fabric_enter(prefix, "h0"))
			_exit(1);
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
		inet_pton(AF_INET, addr, &a.sin_addr);
		for (int tries = 0; tries < 50; tries++) {
			s = socket(AF_INET, SOCK_STREAM, 0);
			if (!connect(s, (struct sockaddr *)&a, sizeof(a)))
				break;
			close(s);
			s = -1;
			usleep(20000);
		}
		if (s >= 0) {
			setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			int i;
			for (i = 0; i < n; i++) {
				char b = 'x';
				double t0 = now_us();
				if (write(s, &b, 1) != 1 || read(s, &b, 1) != 1)
					break;
				rtt[i] = now_us() - t0;
			}
			if (i == n) {
				qsort(rtt, (size_t)n, sizeof(double), cmp_double);
				m.p10 = rtt[n / 10];
				m.p50 = rtt[n / 2];
			}
			close(s);
		}
		if (write(fd[1], &m, sizeof(m)) != sizeof(m))
			_exit(1);
		_exit(0);
	}
	close(fd[1]);
	if (read(fd[0], &med, sizeof(med)) != sizeof(med))
		med.p10 = med.p50 = -1;
	close(fd[0]);
	wait_status(pid);
	return med;
}

static struct rtt rtt_to(const char *host, const char *addr, int port, int n)
{
	pid_t srv = fork();
	if (srv == 0)
		echo_server(host, port);
	usleep(100000);
	struct rtt m = median_rtt(addr, port, n);
	kill(srv, SIGTERM);
	wait_status(srv);
	return m;
}

static void cleanup(void)
{
	if (prefix[0])
		nkv_fabric_down(prefix);
}

static void on_signal(int sig)
{
	cleanup();
	signal(sig, SIG_DFL);
	raise(sig);
}

int main(void)
{
	char path[512], h1[32], h2[32];
	struct nkv_topo *t = NULL;
	const char *src = getenv("NKV_TEST_DIR");

	snprintf(prefix, sizeof(prefix), "nkvt%d-", (int)getpid() % 100000);
	if (nkv_fabric_check(prefix)) {
		printf("SKIP: %s\n", nkv_last_error());
		return 77;
	}
	if (system("iperf3 --version >/dev/null 2>&1") != 0) {
		printf("SKIP: iperf3 not installed (tools/setup)\n");
		return 77;
	}
	snprintf(path, sizeof(path), "%s/corpus/tree4.json", src ? src : NKV_TEST_DIR);
	if (nkv_topo_load(path, &t)) {
		fprintf(stderr, "%s\n", nkv_last_error());
		return 1;
	}
	/* Shaped bottlenecks from the model itself: NIC for same leaf, leaf uplink across. */
	int a = nkv_topo_find(t, "h0g0"), b = nkv_topo_find(t, "h1g0"), c = nkv_topo_find(t, "h2g0");
	double same_bps = nkv_topo_path_bw(t, (uint32_t)a, (uint32_t)b) * 8 / SCALE;
	double cross_bps = nkv_topo_path_bw(t, (uint32_t)a, (uint32_t)c) * 8 / SCALE;
	double same_lat = nkv_topo_path_latency(t, (uint32_t)a, (uint32_t)b);
	double cross_lat = nkv_topo_path_latency(t, (uint32_t)a, (uint32_t)c);
	CHECK(fabs(same_bps - 400e6) < 1 && fabs(cross_bps - 200e6) < 1, "model: %g / %g bit/s", same_bps, cross_bps);

	struct nkv_fabric_opts o = { .prefix = prefix, .scale = SCALE, .latency_scale = 1, .mtu = 9000, .verbose = true };
	atexit(cleanup);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	if (nkv_fabric_up(t, &o)) {
		fprintf(stderr, "fabric up: %s\n", nkv_last_error());
		return 1;
	}
	if (nkv_fabric_host_addr(prefix, "h1", h1, sizeof(h1)) || nkv_fabric_host_addr(prefix, "h2", h2, sizeof(h2))) {
		fprintf(stderr, "%s\n", nkv_last_error());
		return 1;
	}

	uint64_t spine0 = tx_bytes("spine0", "d0") + tx_bytes("spine0", "d1");
	double m_same = iperf3_push("h1", h1, 5201, 3);
	uint64_t spine1 = tx_bytes("spine0", "d0") + tx_bytes("spine0", "d1");
	double m_cross = iperf3_push("h2", h2, 5202, 3);
	uint64_t spine2 = tx_bytes("spine0", "d0") + tx_bytes("spine0", "d1");

	printf("%-22s %14s %14s %8s\n", "path (iperf3 push)", "shaped Mbit/s", "measured", "ratio");
	printf("%-22s %14.1f %14.1f %8.3f\n", "h0->h1 same leaf", same_bps / 1e6, m_same / 1e6, m_same / same_bps);
	printf("%-22s %14.1f %14.1f %8.3f\n", "h0->h2 across spine", cross_bps / 1e6, m_cross / 1e6, m_cross / cross_bps);
	CHECK(fabs(m_same / same_bps - 1) <= TOL, "same leaf: %.1f Mbit/s vs shaped %.1f", m_same / 1e6, same_bps / 1e6);
	CHECK(fabs(m_cross / cross_bps - 1) <= TOL, "cross leaf: %.1f Mbit/s vs shaped %.1f", m_cross / 1e6,
	      cross_bps / 1e6);
	/* Same-leaf traffic must not touch the spine; cross-leaf must (3 s at 200 Mbit/s = 75 MB). */
	printf("spine0 downlink tx bytes: %llu during same-leaf push, %llu during cross-leaf push\n",
	       (unsigned long long)(spine1 - spine0), (unsigned long long)(spine2 - spine1));
	CHECK(spine1 - spine0 < 100000, "same-leaf push went through the spine (%llu bytes)",
	      (unsigned long long)(spine1 - spine0));
	CHECK(spine2 - spine1 > 0.8 * m_cross / 8 * 3, "cross-leaf push did not go through the spine");

	/* Round trips, alternating so that load changes on this shared box hit both alike. */
	char sp[256];
	snprintf(sp, sizeof(sp), "/run/netkv/%sfabric.json", prefix);
	json_t *st = json_load_file(sp, 0, NULL);
	bool emulated = json_is_true(json_object_get(st, "latency_emulated"));
	json_decref(st);
	double rs = 0, rc = 0, ps = 0, pc = 0;
	int rounds = 3;
	/* Without netem the difference is a few microseconds: a second batch if load on
	 * this shared box hid it in the first. */
	for (int batch = 0; batch < 2; batch++) {
		rs = rc = ps = pc = 0;
		for (int i = 0; i < rounds; i++) {
			int port = 6000 + 10 * batch + 2 * i;
			struct rtt x = rtt_to("h1", h1, port, 1500), y = rtt_to("h2", h2, port + 1, 1500);
			CHECK(x.p50 > 0 && y.p50 > 0, "round trip measurement failed");
			rs += x.p50 / rounds;
			rc += y.p50 / rounds;
			ps += x.p10 / rounds;
			pc += y.p10 / rounds;
		}
		if (emulated || rc > rs)
			break;
	}
	double model_extra = 2 * (cross_lat - same_lat) * 1e6;
	printf("TCP round trip p50 (p10): same leaf %.1f (%.1f) us, across spine %.1f (%.1f) us, extra %.1f (%.1f) us\n"
	       "  model one-way %.0f / %.0f us, configured extra per round trip %.0f us: %s\n",
	       rs, ps, rc, pc, rc - rs, pc - ps, same_lat * 1e6, cross_lat * 1e6, model_extra,
	       emulated ? "netem on" : "netem absent in this kernel, the extra is the real cost of 2 more hops each way");
	if (emulated)
		CHECK(fabs((rc - rs) - model_extra) < 0.3 * model_extra + 100, "extra latency %.1f us vs %.1f configured",
		      rc - rs, model_extra);
	else
		CHECK(rc > rs, "cross-leaf round trip (p50 %.1f us) not longer than same-leaf (%.1f us)", rc, rs);

	nkv_topo_free(t);
	CHECK(nkv_fabric_down(prefix) == 7, "down did not remove the 7 namespaces");
	CHECK(nkv_fabric_down(prefix) == 0, "down is not idempotent");
	prefix[0] = '\0';
	if (failures)
		fprintf(stderr, "%d check(s) failed\n", failures);
	return failures ? 1 : 0;
}
