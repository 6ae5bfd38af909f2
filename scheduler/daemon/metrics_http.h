/*
 * The scheduler's /metrics endpoint, served from the daemon's epoll loop
 * without ever blocking it: each scrape connection accumulates its request
 * head, gets its whole response rendered at once and written as the socket
 * takes it, and is closed at a deadline whatever it does. So a silent or
 * slow scraper costs one slot, never the loop's time (issue #16).
 */
#ifndef NKV_METRICS_HTTP_H
#define NKV_METRICS_HTTP_H

#include <stdint.h>
#include <stdio.h>

#define NKV__MHTTP_SLOTS 64        /* scrapes served at once; more are closed at accept */
#define NKV__MHTTP_HEAD 4096       /* request head bound */
#define NKV__MHTTP_DEADLINE_S 2.0  /* a scrape's whole life */

struct nkv__mhttp_conn {
	int fd;                    /* -1: free */
	double deadline;
	size_t rl;
	char req[NKV__MHTTP_HEAD];
	char *resp;                /* header + body once the head is in */
	size_t rlen, off;
};

struct nkv__mhttp {
	int epfd, lfd;
	uint64_t tag;              /* epoll data of slot k: tag + k */
	void (*write)(void *arg, FILE *f);
	void *arg;
	uint64_t refused;          /* closed at accept: every slot busy */
	struct nkv__mhttp_conn c[NKV__MHTTP_SLOTS];
};

void nkv__mhttp_init(struct nkv__mhttp *m, int epfd, int lfd, uint64_t tag, void (*write)(void *, FILE *),
		     void *arg);
/* The listener is readable: take what is waiting. */
void nkv__mhttp_accept(struct nkv__mhttp *m, double now);
/* Events for slot k (epoll data - tag). */
void nkv__mhttp_event(struct nkv__mhttp *m, uint32_t k, uint32_t events);
/* Close scrapes past their deadline. */
void nkv__mhttp_expire(struct nkv__mhttp *m, double now);
void nkv__mhttp_close_all(struct nkv__mhttp *m);

#endif
