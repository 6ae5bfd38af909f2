/*
 * Helpers for the verbs tests: skip without an RDMA device, find the IPv4
 * address of the RoCE v2 GID to talk over, and a receiver engine polled by
 * its own thread that records what it sees.
 */
#ifndef NKV_TESTS_VTEST_H
#define NKV_TESTS_VTEST_H

#include "netkv_transfer.h"
#include "nkv_util.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VT_FAIL(...)                                                                     \
	do {                                                                             \
		fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                     \
		fprintf(stderr, __VA_ARGS__);                                            \
		fprintf(stderr, " (last error: %s)\n", nkv_last_error());                \
		exit(1);                                                                 \
	} while (0)
#define VT_CHECK(cond, ...)                                                              \
	do {                                                                             \
		if (!(cond))                                                             \
			VT_FAIL(__VA_ARGS__);                                            \
	} while (0)

/* Exit 77 (skip) where there is no RDMA device; else the IPv4 address of the
 * first RoCE v2 GID found (the one rdma_cm will route through). */
static inline void vt_need_rdma(char *ip, size_t iplen)
{
	DIR *d = opendir("/sys/class/infiniband");
	struct dirent *de;

	if (!d) {
		fprintf(stderr, "SKIP: no RDMA device (/sys/class/infiniband absent); ctest runs this inside tools/rxe-vm\n");
		exit(77);
	}
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		for (int i = 0; i < 16; i++) {
			char path[512], gid[64], type[32] = "";
			FILE *f;
			snprintf(path, sizeof(path), "/sys/class/infiniband/%s/ports/1/gid_attrs/types/%d", de->d_name, i);
			if ((f = fopen(path, "r"))) {
				if (!fgets(type, sizeof(type), f))
					type[0] = 0;
				fclose(f);
			}
			snprintf(path, sizeof(path), "/sys/class/infiniband/%s/ports/1/gids/%d", de->d_name, i);
			if (!(f = fopen(path, "r")))
				continue;
			if (!fgets(gid, sizeof(gid), f))
				gid[0] = 0;
			fclose(f);
			unsigned a, b, c, e;
			if (!strncmp(type, "RoCE v2", 7) &&
			    sscanf(gid, "0000:0000:0000:0000:0000:ffff:%4x:%4x", &a, &c) == 2) {
				b = a & 0xff;
				a >>= 8;
				e = c & 0xff;
				c >>= 8;
				snprintf(ip, iplen, "%u.%u.%u.%u", a, b, c, e);
				closedir(d);
				return;
			}
		}
	}
	closedir(d);
	fprintf(stderr, "SKIP: RDMA devices present but none has a RoCE v2 IPv4 GID\n");
	exit(77);
}

struct vt_recv_ev {
	uint64_t req_id, bytes;
	int status;
};

/* A receiving engine polled by its own thread. */
struct vt_rx {
	struct nkv_engine *e;
	pthread_t th;
	pthread_mutex_t mu;
	volatile int stop;
	uint16_t port;
	struct vt_recv_ev *ev;
	size_t nev, cap;
	int ups, downs;
	char last_down[160];
};

static inline void *vt_rx_loop(void *arg)
{
	struct vt_rx *rx = arg;
	struct nkv_event ev[64];

	while (!rx->stop) {
		int n = nkv_poll(rx->e, ev, 64, 50);
		if (n < 0) {
			fprintf(stderr, "receiver poll: %s\n", nkv_last_error());
			continue;
		}
		pthread_mutex_lock(&rx->mu);
		for (int i = 0; i < n; i++) {
			if (ev[i].type == NKV_EV_RECV) {
				if (rx->nev == rx->cap) {
					rx->cap = rx->cap ? rx->cap * 2 : 256;
					rx->ev = realloc(rx->ev, rx->cap * sizeof(*rx->ev));
				}
				rx->ev[rx->nev++] = (struct vt_recv_ev){ ev[i].req_id, ev[i].bytes, ev[i].status };
				if (ev[i].status)
					fprintf(stderr, "receiver: request %llu failed: %s\n",
						(unsigned long long)ev[i].req_id, ev[i].reason);
			} else if (ev[i].type == NKV_EV_CONN_UP) {
				rx->ups++;
			} else if (ev[i].type == NKV_EV_CONN_DOWN) {
				rx->downs++;
				snprintf(rx->last_down, sizeof(rx->last_down), "%s", ev[i].reason);
			}
		}
		pthread_mutex_unlock(&rx->mu);
	}
	return NULL;
}

static inline void vt_rx_start(struct vt_rx *rx, const char *ip)
{
	char addr[80];

	pthread_mutex_init(&rx->mu, NULL);
	snprintf(addr, sizeof(addr), "%s:0", ip);
	VT_CHECK(nkv_listen(rx->e, addr, &rx->port) == 0, "listen on %s", addr);
	VT_CHECK(pthread_create(&rx->th, NULL, vt_rx_loop, rx) == 0, "pthread_create");
}

static inline void vt_rx_stop(struct vt_rx *rx)
{
	rx->stop = 1;
	pthread_join(rx->th, NULL);
	free(rx->ev);
	pthread_mutex_destroy(&rx->mu);
}

static inline size_t vt_rx_count(struct vt_rx *rx)
{
	pthread_mutex_lock(&rx->mu);
	size_t n = rx->nev;
	pthread_mutex_unlock(&rx->mu);
	return n;
}

/* Wait (up to sec) until the receiver has seen n RECV events. */
static inline bool vt_rx_wait(struct vt_rx *rx, size_t n, double sec)
{
	double end = nkv_now_s() + sec;
	while (vt_rx_count(rx) < n && nkv_now_s() < end) {
		struct timespec ts = { 0, 2000000 };
		nanosleep(&ts, NULL);
	}
	return vt_rx_count(rx) >= n;
}

static inline struct nkv_engine *vt_engine(unsigned qps)
{
	struct nkv_engine_opts o = { .backend = NKV_BACKEND_VERBS, .gid_index = -1, .streams = qps };
	struct nkv_engine *e;
	VT_CHECK(nkv_engine_create(&o, &e) == 0, "verbs engine with %u QPs", qps);
	return e;
}

/* Sender: collect PUSH_DONE events until n arrived or sec passed. */
static inline int vt_wait_done(struct nkv_engine *e, size_t n, double sec, int *status, uint64_t *ids, char *why,
			       size_t whylen)
{
	struct nkv_event ev[64];
	double end = nkv_now_s() + sec;
	size_t got = 0;

	while (got < n && nkv_now_s() < end) {
		int k = nkv_poll(e, ev, 64, 100);
		VT_CHECK(k >= 0, "sender poll");
		for (int i = 0; i < k; i++) {
			if (ev[i].type != NKV_EV_PUSH_DONE)
				continue;
			if (status)
				status[got] = ev[i].status;
			if (ids)
				ids[got] = ev[i].req_id;
			if (ev[i].status && why && !why[0])
				snprintf(why, whylen, "%s", ev[i].reason);
			got++;
		}
	}
	return (int)got;
}

static inline void vt_fill(void *p, size_t len, uint64_t seed)
{
	uint64_t *q = p;
	for (size_t i = 0; i < len / 8; i++)
		q[i] = nkv_xorshift64(&seed);
}

#endif
