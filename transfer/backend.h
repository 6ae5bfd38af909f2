/*
 * Internal contract between the common engine (engine.c) and a backend
 * (tcp*.c, verbs*.c). Not installed; callers see netkv_transfer.h.
 *
 * Split of work:
 *  - engine.c owns the engine object, the region table, connection objects,
 *    the event queue, argument checks and the --verify checksums (computed
 *    at push time on the sender, checked after the last byte on the receiver).
 *  - a backend moves bytes. It registers memory (filling the region's remote
 *    descriptor: addr, len, rkey), listens, connects (learning the peer's
 *    descriptors), posts pushes, and in progress() turns completions into
 *    events with nkv__emit()/nkv__recv_done().
 *
 * Semantics every backend keeps:
 *  - The receiver gets one NKV_EV_RECV per request, only after every byte of
 *    it is in place (verbs: RDMA WRITE_WITH_IMM on the request's last write,
 *    the immediate naming the request; the receiver's RECV completion for the
 *    immediate is the notification). Never before.
 *  - The sender gets one NKV_EV_PUSH_DONE per push: status 0 once the peer
 *    has reported the bytes placed, or a negative errno with a reason.
 *  - A remote peer can never make us write outside a registered region: for
 *    TCP the receiver checks each range header, for verbs the NIC checks the
 *    rkey and bounds of the memory region.
 *  - Connection loss fails each request in flight on that connection once
 *    (both sides), emits one NKV_EV_CONN_DOWN, and affects nothing else.
 */
#ifndef NKV_TRANSFER_BACKEND_H
#define NKV_TRANSFER_BACKEND_H

#include "netkv_transfer.h"
#include "push_shape.h"

#include <stdarg.h>

struct nkv_region {
	bool used;
	uint32_t id;
	enum nkv_mem_kind kind;
	void *ptr;
	uint64_t len;
	bool owned;           /* allocated by nkv_region_alloc: unmapped on release */
	uint64_t map_len;     /* owned: the mmap length */
	bool has_layout;
	struct nkv_layout layout;
	struct nkv_remote_region desc; /* what the peer learns; backend fills addr/rkey */
	void *be;             /* backend state, e.g. struct ibv_mr * */
	/* NKV_MEM_CUDA: how the backend reaches the memory and why. */
	const char *gpu_mode; /* "dma-buf", "peermem", "staging" */
	char gpu_why[320];
	bool granted;         /* NKV_REGION_GRANTED: writes only inside a request's grant (grant.c) */
};

/* A request's permission to write into one granted region (grant.c):
 * sorted, merged byte ranges. */
struct nkv__span { uint64_t off, len; };
#define NKV__REVOKED_KEEP 1024
struct nkv_grant {
	uint64_t req_id;
	uint32_t region;
	size_t n;
	uint64_t bytes;               /* sum of the ranges */
	struct nkv_conn *writer;      /* the connection that wrote to it first; NULL until then or once it is gone */
	struct nkv__span *rg;
	struct nkv_grant *hnext;
};

/* One block checksum as pushed with a --verify request (little-endian on the wire). */
struct nkv_block_sum {
	uint32_t block;   /* destination block id */
	uint32_t pad;
	uint64_t hash;    /* nkv_block_hash() over the source block */
};

struct nkv_conn {
	struct nkv_engine *e;
	bool passive;                     /* accepted by nkv_listen (receiver side) */
	bool down;                        /* CONN_DOWN emitted */
	struct nkv_remote_region *remote; /* the peer's regions (malloc'd, backend fills) */
	size_t nremote;
	void *be;                         /* backend state */
	struct nkv_conn *next;            /* engine's list */
};

/* What a backend gets for one push, after engine.c checked it. */
struct nkv_push_req {
	uint64_t req_id;
	struct nkv_region *src;
	const struct nkv_remote_region *dst;
	const struct nkv_plan *plan;
	/* --verify: one checksum per block, malloc'd; the backend owns it from
	 * here (free() it when the request ends, also on failure). */
	struct nkv_block_sum *sums;
	size_t nsums;
};

struct nkv_backend_ops {
	const char *name;
	int (*init)(struct nkv_engine *e);   /* set e->be; fill e->desc */
	void (*fini)(struct nkv_engine *e);  /* connections are closed before this */
	int (*reg)(struct nkv_engine *e, struct nkv_region *r);
	void (*dereg)(struct nkv_engine *e, struct nkv_region *r);
	int (*listen)(struct nkv_engine *e, const char *host, uint16_t port, uint16_t *port_out);
	/* Active side: fill c->be, c->remote/nremote; blocking is fine. */
	int (*connect)(struct nkv_engine *e, const char *host, uint16_t port, struct nkv_conn *c);
	int (*push)(struct nkv_conn *c, struct nkv_push_req *req);
	/* Make progress for up to timeout_ms (0 = don't wait, -1 = until
	 * something happens); returns >= 0 or a negative errno. */
	int (*progress)(struct nkv_engine *e, int timeout_ms);
	/* Tear down: fail what is in flight (events), release c->be. The
	 * common struct is freed by engine.c afterwards. */
	void (*close)(struct nkv_conn *c);
	/* The receiver checks every range against a region's grants
	 * (NKV_REGION_GRANTED can be set); false where the NIC writes without
	 * asking the receiving process (verbs' one-sided WRITE). */
	bool grants;
	/* Optional (push_shape.h): the descriptors one push of the plan posts. */
	int (*shape)(struct nkv_engine *e, const struct nkv_plan *p, struct nkv__push_shape *out);
};

extern const struct nkv_backend_ops nkv_tcp_ops;
extern const struct nkv_backend_ops nkv_verbs_ops;

struct nkv_evq {
	struct nkv_event *ev;
	size_t head, count, cap;
};

struct nkv_engine {
	const struct nkv_backend_ops *ops;
	struct nkv_engine_opts opts;
	struct nkv_region *regions; /* indexed by id; ids are reused after release */
	uint32_t nregions;
	struct nkv_conn *conns;
	struct nkv_evq evq;
	void *be;
	char desc[128];
	struct nkv_gpu_ctx *gpu; /* gpu_stage.c: opened on the first GPU region */
	uint8_t secret[NKV_SECRET_MAX]; /* opts.secret, copied (opts.secret is NULL after create) */
	size_t secret_len;
	struct nkv_grant **grants;  /* grant.c: hash by request id, nb a power of two */
	size_t grant_nb, ngrants;
	struct { uint64_t req_id; uint32_t region; } revoked[NKV__REVOKED_KEEP]; /* ring */
	size_t nrevoked;            /* revokes ever; the ring holds the last ones */
};

/* For backends. */
struct nkv_region *nkv__region(struct nkv_engine *e, uint32_t id);
/* Descriptors of all local regions, for the peer at connect time (malloc'd). */
int nkv__region_adverts(struct nkv_engine *e, struct nkv_remote_region **out, size_t *n);
struct nkv_conn *nkv__conn_new(struct nkv_engine *e, bool passive);
void nkv__emit(struct nkv_engine *e, const struct nkv_event *ev);
__attribute__((format(printf, 6, 7)))
void nkv__emitf(struct nkv_engine *e, enum nkv_event_type t, struct nkv_conn *c, uint64_t req_id, int status,
		const char *fmt, ...);
/* Receiver: the last byte of req_id is in place. Checks the block sums if
 * any (sums are the sender's, in wire form), emits NKV_EV_RECV, returns the
 * status to report back to the sender (0 or -EBADMSG). */
int nkv__recv_done(struct nkv_engine *e, struct nkv_conn *c, uint64_t req_id, uint64_t bytes, uint32_t region,
		   const struct nkv_block_sum *sums, size_t nsums);
/* grant.c, for receivers. The request's grant, or NULL. */
struct nkv_grant *nkv__grant_find(const struct nkv_engine *e, uint64_t req_id);
/* The grant under which req_id may write granted region r over connection
 * c, as a request of total bytes; NULL with the reason (for the peer) in
 * why if there is none, it is for another region, it covers fewer bytes,
 * or another connection is writing it (the first to write holds it while
 * it lives). */
const struct nkv_grant *nkv__grant_for(struct nkv_engine *e, const struct nkv_region *r, struct nkv_conn *c,
				       uint64_t req_id, uint64_t total, char *why, size_t wlen);
/* Connection c failed or closed: the grants it held may be written again. */
void nkv__grants_conn_gone(struct nkv_engine *e, struct nkv_conn *c);
/* Does the grant hold all of [off, +len)? */
bool nkv__grant_covers(const struct nkv_grant *g, uint64_t off, uint64_t len);
/* The request's bytes are in (its NKV_EV_RECV): its grant is used up. */
void nkv__grant_consume(struct nkv_engine *e, uint64_t req_id, uint32_t region);
void nkv__grants_drop_region(struct nkv_engine *e, uint32_t region);
/* Was req_id's grant in region revoked lately (the last NKV__REVOKED_KEEP
 * revokes)? Its late bytes are then dropped, not refused (grant.c). */
bool nkv__grant_revoked(const struct nkv_engine *e, uint64_t req_id, uint32_t region);
void nkv__grants_free(struct nkv_engine *e);
/* Logged reasons (stderr, one line, "netkv: ..."), for things no event covers. */
__attribute__((format(printf, 1, 2)))
void nkv__log(const char *fmt, ...);

#endif
