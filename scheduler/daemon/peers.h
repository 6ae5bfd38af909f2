/*
 * The scheduler daemon's peer table (issue #16, "bounded control plane"):
 * up to max peers (default 4096) in slots found through a free list, each
 * socket in the daemon's epoll set, and the peers that have not registered
 * yet on a FIFO in accept order with a deadline, so an idle or hostile
 * connection costs a slot and a small input buffer for a few seconds, never
 * more. The daemon decides what a peer means; this file owns slots,
 * sockets, buffers and the refusal (an ERROR frame, then the close).
 */
#ifndef NKV_PEERS_H
#define NKV_PEERS_H

#include <stdbool.h>
#include <stdint.h>

#include "netkv_proto.h"

#define NKV__PEERS_DEFAULT 4096
#define NKV__PREAUTH_BYTES 4096        /* input buffer before REGISTER (one REGISTER fits) */
#define NKV__OUT_MAX (64u << 20)       /* output queued to one peer before it is dropped */

struct nkv__peer {
	struct nkv_pconn c;
	bool used, registered, out_armed, doomed;
	uint8_t role;
	uint32_t id;         /* agent id handed out at REGISTER */
	int idx;             /* index in the scheduler's prefill or decode list */
	double deadline;     /* unregistered: REGISTER due by then */
	double seen_s;       /* registered: when its last message arrived (agents: --agent-timeout) */
	int aprev, anext;    /* unregistered FIFO links, -1 at the ends */
	char name[NKV_PROTO_MAX_NAME + 1];
	char addr[NKV_PROTO_MAX_ADDR + 1];
	char path[256];      /* agents: backend and pool memory as they registered them */
};

struct nkv__peers {
	struct nkv__peer *p;
	int max, n, nfree, *free;
	int ahead, atail, nauth;  /* unregistered FIFO and its length */
	int epfd;
	uint64_t tag;             /* epoll data of peer i: tag + i */
	double auth_s;            /* time to REGISTER */
	uint64_t refused_full, timed_out;
	double last_full_log;
};

int nkv__peers_init(struct nkv__peers *t, int max, int epfd, uint64_t tag, double auth_s);
void nkv__peers_free(struct nkv__peers *t);   /* closes every socket */
/* Accept what waits on lfd; beyond max each is told why (ERROR) and closed. */
void nkv__peers_accept(struct nkv__peers *t, int lfd, double now);
/* The peer registered: off the FIFO, full-size input buffer. */
void nkv__peers_registered(struct nkv__peers *t, int i);
/* Watch for writability while output is queued (call after queueing or flushing). */
void nkv__peers_arm(struct nkv__peers *t, int i);
/* Queue an ERROR (code, text) and push out what can go without blocking. */
void nkv__peers_tell(struct nkv__peers *t, int i, int code, const char *text);
/* Close and free the slot (after the daemon has forgotten the peer). */
void nkv__peers_release(struct nkv__peers *t, int i);
/* The oldest unregistered peer whose deadline has passed, or -1. */
int nkv__peers_expired(const struct nkv__peers *t, double now);

#endif
