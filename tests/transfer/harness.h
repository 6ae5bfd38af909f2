/* Test helpers: an engine driven by a thread that records every event, and
 * waiting for events with a deadline (a test must never hang). */
#ifndef NKV_TEST_HARNESS_H
#define NKV_TEST_HARNESS_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "netkv_transfer.h"
#include "nkv_util.h"

#define H_MAX_EVENTS 8192

/* Soft assertion: count the failure, keep going, report at the end. */
static int fails;
#define CHECK(c, ...)                                                                   \
	do {                                                                            \
		if (!(c)) {                                                             \
			fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #c);   \
			fprintf(stderr, __VA_ARGS__);                                   \
			fputc('\n', stderr);                                            \
			fails++;                                                        \
		}                                                                       \
	} while (0)

/* xorshift64: a seeded, reproducible source of block ids and bytes. */
static inline uint64_t rnd(uint64_t *x)
{
	return nkv_xorshift64(x);
}

struct h_peer {
	struct nkv_engine *e;
	pthread_t th;
	atomic_bool stop;
	pthread_mutex_t mu;
	struct nkv_event ev[H_MAX_EVENTS];
	int nev;
	int err;
};

static void *h_loop(void *arg)
{
	struct h_peer *p = arg;
	struct nkv_event ev[64];

	while (!atomic_load(&p->stop)) {
		int n = nkv_poll(p->e, ev, 64, 20);
		if (n < 0) {
			fprintf(stderr, "poll: %s\n", nkv_last_error());
			p->err = n;
			break;
		}
		pthread_mutex_lock(&p->mu);
		for (int i = 0; i < n && p->nev < H_MAX_EVENTS; i++)
			p->ev[p->nev++] = ev[i];
		pthread_mutex_unlock(&p->mu);
	}
	return NULL;
}

static inline void h_start(struct h_peer *p)
{
	pthread_mutex_init(&p->mu, NULL);
	atomic_store(&p->stop, false);
	pthread_create(&p->th, NULL, h_loop, p);
}

/* Stop polling for a while (the engine makes no progress meanwhile) and resume. */
static inline void h_pause(struct h_peer *p)
{
	atomic_store(&p->stop, true);
	pthread_join(p->th, NULL);
}

static inline void h_resume(struct h_peer *p)
{
	atomic_store(&p->stop, false);
	pthread_create(&p->th, NULL, h_loop, p);
}

static inline void h_stop(struct h_peer *p)
{
	atomic_store(&p->stop, true);
	pthread_join(p->th, NULL);
}

/* Waits until at least `count` events of `type` were recorded; returns how many were. */
static inline int h_wait(struct h_peer *p, enum nkv_event_type type, int count, double timeout_s)
{
	double end = nkv_now_s() + timeout_s;
	int n;

	for (;;) {
		n = 0;
		pthread_mutex_lock(&p->mu);
		for (int i = 0; i < p->nev; i++)
			n += p->ev[i].type == type;
		pthread_mutex_unlock(&p->mu);
		if (n >= count || nkv_now_s() > end)
			return n;
		usleep(2000);
	}
}

/* The i-th recorded event of a type (copy), or NULL. */
static inline const struct nkv_event *h_find(struct h_peer *p, enum nkv_event_type type, int i, struct nkv_event *out)
{
	const struct nkv_event *r = NULL;

	pthread_mutex_lock(&p->mu);
	for (int k = 0; k < p->nev; k++)
		if (p->ev[k].type == type && i-- == 0) {
			*out = p->ev[k];
			r = out;
			break;
		}
	pthread_mutex_unlock(&p->mu);
	return r;
}

/* Drive an engine from the calling thread until `count` events of `type` come (or timeout). */
static inline int h_poll_until(struct nkv_engine *e, enum nkv_event_type type, int count, double timeout_s,
			       struct nkv_event *got, int max_got, int *ngot)
{
	double end = nkv_now_s() + timeout_s;
	struct nkv_event ev[64];
	int seen = 0;

	while (seen < count && nkv_now_s() < end) {
		int n = nkv_poll(e, ev, 64, 20);
		if (n < 0)
			return n;
		for (int i = 0; i < n; i++) {
			if (ev[i].type == type)
				seen++;
			if (got && *ngot < max_got)
				got[(*ngot)++] = ev[i];
		}
	}
	return seen;
}

/* Fast deterministic fill. */
static inline void h_fill(void *buf, uint64_t len, uint64_t seed)
{
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1, *p = buf;

	for (uint64_t i = 0; i < len / 8; i++) {
		p[i] = nkv_xorshift64(&x);
	}
}

/* A plain TCP socket to 127.0.0.1:port with a 5 s receive timeout: for
 * playing a misbehaving peer byte by byte. */
static inline int h_raw_connect(uint16_t port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct timeval tv = { .tv_sec = 5 };
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		perror("connect");
		exit(1);
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

#endif
