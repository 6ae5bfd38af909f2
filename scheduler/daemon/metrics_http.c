/* Non-blocking /metrics over HTTP/1.0 (metrics_http.h): read head, render, write, close. */
#include "metrics_http.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

void nkv__mhttp_init(struct nkv__mhttp *m, int epfd, int lfd, uint64_t tag, void (*write)(void *, FILE *),
		     void *arg)
{
	memset(m, 0, sizeof(*m));
	m->epfd = epfd;
	m->lfd = lfd;
	m->tag = tag;
	m->write = write;
	m->arg = arg;
	for (int k = 0; k < NKV__MHTTP_SLOTS; k++)
		m->c[k].fd = -1;
}

static void conn_close(struct nkv__mhttp_conn *c)
{
	if (c->fd < 0)
		return;
	close(c->fd); /* also leaves the epoll set */
	free(c->resp);
	c->resp = NULL;
	c->fd = -1;
}

void nkv__mhttp_accept(struct nkv__mhttp *m, double now)
{
	int fd;
	while ((fd = accept4(m->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
		int k = 0;
		while (k < NKV__MHTTP_SLOTS && m->c[k].fd >= 0)
			k++;
		if (k == NKV__MHTTP_SLOTS) {
			m->refused++;
			close(fd);
			continue;
		}
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = m->tag + (uint64_t)k };
		if (epoll_ctl(m->epfd, EPOLL_CTL_ADD, fd, &ev)) {
			close(fd);
			continue;
		}
		struct nkv__mhttp_conn *c = &m->c[k];
		c->fd = fd;
		c->deadline = now + NKV__MHTTP_DEADLINE_S;
		c->rl = c->rlen = c->off = 0;
		c->resp = NULL;
	}
}

/* The head is in (or the peer stopped sending): render the whole answer. */
static bool respond(struct nkv__mhttp *m, struct nkv__mhttp_conn *c)
{
	c->req[c->rl] = 0;
	const char *req = c->req;
	bool head = strncmp(req, "HEAD ", 5) == 0, get = strncmp(req, "GET ", 4) == 0;
	const char *path = head ? req + 5 : get ? req + 4 : "";
	size_t plen = strcspn(path, " ?\r\n");
	bool ours = (plen == 8 && !strncmp(path, "/metrics", 8)) || (plen == 1 && path[0] == '/');
	const char *status = !get && !head ? "405 Method Not Allowed" : !ours ? "404 Not Found" : "200 OK";
	char *body = NULL;
	size_t blen = 0;
	FILE *f = open_memstream(&body, &blen);
	if (!f)
		return false;
	if (!strcmp(status, "200 OK"))
		m->write(m->arg, f);
	else
		fprintf(f, "%s: the metrics are at GET /metrics\n", status);
	fclose(f);
	char *all = NULL;
	size_t alen = 0;
	f = open_memstream(&all, &alen);
	if (!f) {
		free(body);
		return false;
	}
	fprintf(f,
		"HTTP/1.0 %s\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
		"Content-Length: %zu\r\nConnection: close\r\n\r\n", status, blen);
	if (!head)
		fwrite(body, 1, blen, f);
	fclose(f);
	free(body);
	c->resp = all;
	c->rlen = alen;
	c->off = 0;
	struct epoll_event ev = { .events = EPOLLOUT, .data.u64 = m->tag + (uint64_t)(c - m->c) };
	return epoll_ctl(m->epfd, EPOLL_CTL_MOD, c->fd, &ev) == 0;
}

void nkv__mhttp_event(struct nkv__mhttp *m, uint32_t k, uint32_t events)
{
	if (k >= NKV__MHTTP_SLOTS || m->c[k].fd < 0)
		return;
	struct nkv__mhttp_conn *c = &m->c[k];
	if (!c->resp && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
		bool done = false;
		for (;;) {
			ssize_t r = recv(c->fd, c->req + c->rl, sizeof(c->req) - 1 - c->rl, 0);
			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				break;
			if (r <= 0) {
				done = true; /* EOF or error: answer what came (a 405 for nothing) */
				break;
			}
			c->rl += (size_t)r;
			c->req[c->rl] = 0;
			if (strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n") || c->rl == sizeof(c->req) - 1) {
				done = true;
				break;
			}
		}
		if (done && !respond(m, c)) {
			conn_close(c);
			return;
		}
	}
	if (c->resp && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
		while (c->off < c->rlen) {
			ssize_t w = send(c->fd, c->resp + c->off, c->rlen - c->off, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				return;
			if (w <= 0)
				break;
			c->off += (size_t)w;
		}
		shutdown(c->fd, SHUT_WR);
		conn_close(c);
	}
}

void nkv__mhttp_expire(struct nkv__mhttp *m, double now)
{
	for (int k = 0; k < NKV__MHTTP_SLOTS; k++)
		if (m->c[k].fd >= 0 && now >= m->c[k].deadline)
			conn_close(&m->c[k]);
}

void nkv__mhttp_close_all(struct nkv__mhttp *m)
{
	for (int k = 0; k < NKV__MHTTP_SLOTS; k++)
		conn_close(&m->c[k]);
}
