/* The daemon's peer slots, epoll registration and pre-registration deadline (peers.h). */
#include "peers.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

int nkv__peers_init(struct nkv__peers *t, int max, int epfd, uint64_t tag, double auth_s)
{
	memset(t, 0, sizeof(*t));
	t->p = calloc((size_t)max, sizeof(*t->p));
	t->free = malloc((size_t)max * sizeof(*t->free));
	if (!t->p || !t->free) {
		free(t->p);
		free(t->free);
		return -ENOMEM;
	}
	t->max = max;
	for (int i = 0; i < max; i++) {
		t->p[i].c.fd = -1;
		t->free[i] = max - 1 - i; /* slot 0 first */
	}
	t->nfree = max;
	t->ahead = t->atail = -1;
	t->epfd = epfd;
	t->tag = tag;
	t->auth_s = auth_s;
	return 0;
}

void nkv__peers_free(struct nkv__peers *t)
{
	for (int i = 0; i < t->max; i++)
		if (t->p[i].used)
			nkv_pconn_close(&t->p[i].c);
	free(t->p);
	free(t->free);
	memset(t, 0, sizeof(*t));
}

static void fifo_unlink(struct nkv__peers *t, int i)
{
	struct nkv__peer *p = &t->p[i];
	if (p->aprev >= 0)
		t->p[p->aprev].anext = p->anext;
	else
		t->ahead = p->anext;
	if (p->anext >= 0)
		t->p[p->anext].aprev = p->aprev;
	else
		t->atail = p->aprev;
	p->aprev = p->anext = -1;
	t->nauth--;
}

/* One ERROR frame on a socket we keep no state for (the table is full). */
static void refuse_raw(int fd, int code, const char *text)
{
	struct nkv_msg m;
	struct nkv_buf b = { 0 };
	nkv_msg_init(&m, NKV_MSG_ERROR);
	m.code = (uint32_t)code;
	if (!nkv_msg_set_text(&m, text) && !nkv_msg_encode(&m, &b))
		(void)!send(fd, b.p, b.len, MSG_NOSIGNAL | MSG_DONTWAIT);
	nkv_msg_clear(&m);
	nkv_buf_free(&b);
	close(fd);
}

void nkv__peers_accept(struct nkv__peers *t, int lfd, double now)
{
	int fd;
	while ((fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
		if (!t->nfree) {
			char why[96];
			snprintf(why, sizeof(why), "too many peers: this scheduler takes %d connections", t->max);
			refuse_raw(fd, EMFILE, why);
			if (!t->refused_full++ || now - t->last_full_log >= 1) {
				fprintf(stderr, "scheduler: refusing connections: %s (%llu so far)\n", why,
					(unsigned long long)t->refused_full);
				t->last_full_log = now;
			}
			continue;
		}
		int i = t->free[--t->nfree];
		struct nkv__peer *p = &t->p[i];
		memset(p, 0, sizeof(*p));
		nkv_pconn_init(&p->c, fd);
		p->c.inmax = NKV__PREAUTH_BYTES;
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = t->tag + (uint64_t)i };
		if (epoll_ctl(t->epfd, EPOLL_CTL_ADD, fd, &ev)) {
			close(fd);
			p->c.fd = -1;
			t->free[t->nfree++] = i;
			continue;
		}
		p->used = true;
		t->n++;
		p->deadline = now + t->auth_s;
		p->anext = -1;
		p->aprev = t->atail;
		if (t->atail >= 0)
			t->p[t->atail].anext = i;
		else
			t->ahead = i;
		t->atail = i;
		t->nauth++;
	}
}

void nkv__peers_registered(struct nkv__peers *t, int i)
{
	struct nkv__peer *p = &t->p[i];
	if (p->registered)
		return;
	fifo_unlink(t, i);
	p->registered = true;
	p->c.inmax = 0; /* one largest frame */
}

void nkv__peers_arm(struct nkv__peers *t, int i)
{
	struct nkv__peer *p = &t->p[i];
	bool want = nkv_pconn_pending(&p->c);
	if (!p->used || want == p->out_armed)
		return;
	struct epoll_event ev = { .events = EPOLLIN | (want ? EPOLLOUT : 0), .data.u64 = t->tag + (uint64_t)i };
	if (!epoll_ctl(t->epfd, EPOLL_CTL_MOD, p->c.fd, &ev))
		p->out_armed = want;
}

void nkv__peers_tell(struct nkv__peers *t, int i, int code, const char *text)
{
	struct nkv__peer *p = &t->p[i];
	struct nkv_msg m;
	nkv_msg_init(&m, NKV_MSG_ERROR);
	m.code = (uint32_t)(code < 0 ? -code : code);
	if (!nkv_msg_set_text(&m, text))
		nkv_pconn_send(&p->c, &m);
	nkv_msg_clear(&m);
}

void nkv__peers_release(struct nkv__peers *t, int i)
{
	struct nkv__peer *p = &t->p[i];
	if (!p->used)
		return;
	if (!p->registered)
		fifo_unlink(t, i);
	epoll_ctl(t->epfd, EPOLL_CTL_DEL, p->c.fd, NULL);
	/* Read what the peer sent that we will not use, so the close is a FIN
	 * that lets a queued ERROR arrive, not a reset that discards it. */
	char junk[4096];
	for (int k = 0; k < 16 && recv(p->c.fd, junk, sizeof(junk), MSG_DONTWAIT) > 0; k++)
		;
	shutdown(p->c.fd, SHUT_WR);
	nkv_pconn_close(&p->c);
	memset(p, 0, sizeof(*p));
	p->c.fd = -1;
	t->free[t->nfree++] = i;
	t->n--;
}

int nkv__peers_expired(const struct nkv__peers *t, double now)
{
	return t->ahead >= 0 && now >= t->p[t->ahead].deadline ? t->ahead : -1;
}
