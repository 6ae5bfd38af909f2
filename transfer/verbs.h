/*
 * Verbs backend internals (rdma-core: libibverbs + librdmacm).
 *
 * Shape of a connection: nqps RC queue pairs (opts.streams, --qps), each one
 * rdma_cm connection, all sharing one completion queue. Each QP first
 * proves the data-plane secret both ways (verbs_cm.c); only then does the
 * decode side send its regions (addr, len, rkey) on it, one ADVERT each. A request is cut into at most nqps parts (big requests are striped,
 * small ones go to one QP round-robin); each part goes down its QP as
 *   SEND (inline 32-byte header: seq, req id, bytes, region, parts)
 *   RDMA WRITE ... (SGLs built from the coalesced ranges)
 *   RDMA WRITE_WITH_IMM (imm = request seq) on the part's last write
 * RC ordering on a QP makes the header arrive before that QP's immediate, and
 * the immediate only after every write before it is placed, so the receiver
 * raises NKV_EV_RECV when the immediates of all parts have arrived. The
 * sender's signalled completion of a WRITE_WITH_IMM means the peer's NIC
 * acknowledged it; when every part is acknowledged the push is done.
 *
 * GPU memory the NIC cannot reach (no GPUDirect) is staged on the sending
 * side: the push goes down one QP, its WRITEs read from the pinned chunk
 * slots of gpu_stage.h (registered here on first use), each WRITE is posted
 * only once its chunk has been copied out, and the chunk's last WRITE is
 * signalled so its slot is handed back as soon as the NIC has read it. The
 * receiving side cannot stage: such a region is advertised with addr 0 and
 * rkey 0. Pushes into such a region go through bounce slots the receiver
 * lends (see "receiver staging" below).
 *
 * Receiver staging: a receiver with staged GPU regions lends each
 * connection up to VB_CREDITS pinned receive slots of gpu_stage.h, each
 * registered for remote write and granted by a CREDIT SEND (slot, addr, len,
 * rkey). The sender cuts the push into units of at most VB_UNIT_PAYLOAD
 * bytes / VB_UNIT_RANGES ranges and, per unit, takes a credit, WRITEs the
 * payload behind a descriptor area, WRITEs the unit's range list (payload
 * offset, region offset, length) into that area, then SENDs a UNIT message.
 * The receiver copies the list out of the slot before checking it against
 * its region (the peer can still write the slot), starts the host-to-device
 * copy and scatter, and grants the slot again once that copy is done. The
 * request is received when its units' bytes are all on the device.
 *
 * No deadlock, no stalled peer holding up others: the sender's chunk slots
 * are shared by the engine, so a staged source's chunks are copied out only
 * when its request is at the head of its QP, and into bounce slots only for
 * units that already hold one. Every chunk in a slot can therefore leave.
 * A staged push sends nothing, not even its header, before its first slot;
 * a receiver with none to lend says so (a credit of length 0) and those
 * pushes fail with ENOSPC, the connection staying up.
 */
#ifndef NKV_TRANSFER_VERBS_H
#define NKV_TRANSFER_VERBS_H

#include "backend.h"
#include "gpu_stage.h"

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#define VB_VERSION 3 /* 2: receiver staging; 3: authenticated connections (see verbs_cm.c) */
#define VB_REQ_MAGIC 0x514b4e4eu /* "NNKQ" */
#define VB_REP_MAGIC 0x504b4e4eu /* "NNKP" */
#define VB_HDR_MAGIC 0x484b4e4eu /* "NNKH" */
#define VB_REP_REGIONS 7         /* regions a listener advertises (one ADVERT message each) */
#define VB_RECV_RING 512         /* receive WQEs per QP (headers + immediates) */
#define VB_PARTS_OPEN 200        /* parts in flight per QP: 2 receives each */
#define VB_SQ_DEPTH 512
#define VB_SIG_EVERY 32          /* selective signalling: one CQE per this many WRs */
#define VB_POST_BATCH 32         /* WRs chained per ibv_post_send (= VB_SIG_EVERY: one CQE a chain) */
#define VB_RSLOTS 4096           /* receiver request table; sender keeps fewer in flight */
#define VB_MAX_INFLIGHT 2048
#define VB_CREDIT_MAGIC 0x434b4e4eu /* "NNKC" */
#define VB_UNIT_MAGIC 0x554b4e4eu   /* "NNKU" */
#define VB_HDR_STAGED 1u            /* vb_hdr.flags: the data comes as units */
#define VB_CREDITS 4                /* bounce slots lent per connection */
#define VB_CREDIT_RING (2 * VB_CREDITS + 2) /* receives on the sender for credits */
#define VB_AUTH_MAGIC 0x414b4e4eu   /* "NNKA" */
#define VB_ADV_MAGIC 0x564b4e4eu    /* "NNKV" */
#define VB_ERR_MAGIC 0x454b4e4eu    /* "NNKE" */
#define VB_MAX_QPS 64               /* per connection (opts.streams' limit) */
#define VB_NONCE 32                 /* Na (connect request), Np (accept) */
#define VB_MAC 32                   /* HMAC-SHA256, in the accept */
#define VB_AUTH_MAC 24              /* AUTH's MAC: HMAC-SHA256 cut to 192 bits (32-byte receive buffers) */
#define VB_LABEL_LISTENER "netkv-verbs-v3 listener"
#define VB_LABEL_CONNECTOR "netkv-verbs-v3 connector"
#define VB_CTRL_SENDS (VB_REP_REGIONS + 1) /* ADVERTs or an ERROR a QP sends once */
#define VB_UNIT_RANGES 512u
#define VB_UNIT_DESC (VB_UNIT_RANGES * sizeof(struct vb_unit_range))
#define VB_UNIT_PAYLOAD (NKV_GPU_IN_BYTES - VB_UNIT_DESC)

/* Connection request private data (active -> passive, <= 56 bytes). */
struct vb_req_pd {
	uint32_t magic;
	uint8_t version, qp_index, nqps, pad;
	uint64_t token;  /* names the connection the QP belongs to */
	uint32_t mtu;    /* the sender port's active MTU in bytes */
	uint32_t pad2;
	uint8_t na[VB_NONCE]; /* the connector's fresh nonce */
};

/* Accept private data (passive -> active): the listener's proof, no regions. */
struct vb_rep_pd {
	uint32_t magic;
	uint8_t version, pad;
	uint16_t pad1;
	uint32_t mtu;
	uint32_t pad2;
	uint8_t np[VB_NONCE];
	uint8_t mac[VB_MAC]; /* HMAC(secret, VB_LABEL_LISTENER || T), see verbs_cm.c */
};

_Static_assert(sizeof(struct vb_req_pd) == 56, "connect private data holds 56 bytes");

/* Connector -> listener, the first SEND on each QP: its proof. */
struct vb_auth {
	uint32_t magic;
	uint32_t pad;
	uint8_t mac[VB_AUTH_MAC]; /* HMAC(secret, VB_LABEL_CONNECTOR || T), first 24 bytes */
};

/* Listener -> connector after a good AUTH, on that QP: region `index` of
 * `count` (count 0: one message, no region). */
struct vb_advert {
	uint32_t magic;
	uint32_t id;
	uint64_t addr;
	uint64_t len;
	uint32_t rkey;
	uint8_t index, count;
	uint16_t pad;
};

/* Either way during the handshake, and a reject's private data: a refusal;
 * its reason is `code` (VB_WHY_*). */
struct vb_error {
	uint32_t magic;
	int32_t status;  /* a negative errno */
	uint32_t code;
	uint8_t pad[20];
};

enum { VB_WHY_PROOF = 1, VB_WHY_PROTO, VB_WHY_REGIONS, VB_WHY_TIMEOUT, VB_WHY_BUSY, VB_WHY_REQUEST, VB_WHY_RESOURCES };

/* The per-part header, sent inline. */
struct vb_hdr {
	uint32_t magic;
	uint32_t seq;
	uint64_t req_id;
	uint64_t bytes;   /* the whole request's */
	uint32_t region;  /* destination region id */
	uint16_t nparts;
	uint16_t flags;   /* VB_HDR_STAGED */
};

/* Receiver -> sender: slot `slot` is yours to write (len 0: this receiver
 * has no slot to lend, staged pushes to it cannot go). Same size as vb_hdr. */
struct vb_credit {
	uint32_t magic;
	uint32_t slot;
	uint64_t addr;
	uint64_t len;
	uint32_t rkey;
	uint32_t pad;
};

/* Sender -> receiver: a unit of request `seq` sits in slot `slot`. */
struct vb_unit {
	uint32_t magic;
	uint32_t seq;
	uint64_t req_id;
	uint64_t bytes;   /* payload bytes (after the descriptor area) */
	uint32_t slot;
	uint16_t nranges;
	uint16_t pad;
};

struct vb_unit_range {     /* in the slot's descriptor area, little-endian */
	uint64_t off;      /* in the payload */
	uint64_t dst_off;  /* in the destination region */
	uint64_t len;
};

/* All share the receive ring's 32-byte buffers. */
_Static_assert(sizeof(struct vb_hdr) == 32, "vb_hdr is 32 bytes");
_Static_assert(sizeof(struct vb_auth) == 32, "vb_auth is 32 bytes");
_Static_assert(sizeof(struct vb_advert) == 32, "vb_advert is 32 bytes");
_Static_assert(sizeof(struct vb_error) == 32, "vb_error is 32 bytes");
_Static_assert(sizeof(struct vb_credit) == 32, "vb_credit is 32 bytes");
_Static_assert(sizeof(struct vb_unit) == 32, "vb_unit is 32 bytes");

struct vb_dev {
	struct ibv_context *ctx;  /* owned by librdmacm's device list */
	struct ibv_context **list;
	struct ibv_pd *pd;
	struct ibv_device_attr attr;
	struct ibv_port_attr port;
	uint8_t port_num;
	char name[64];
	int gid_index;            /* chosen or asked for */
	bool gid_asked;
	char gid_ip[64];          /* the IPv4 address of that GID ("" for IB) */
	uint32_t max_msg, max_sge, max_inline;
	bool dmabuf;              /* ibv_reg_dmabuf_mr probe said supported */
};

struct vb_conn;
struct vb_req;

#define VB_NO_CHUNK UINT32_MAX

struct vb_op {            /* one RDMA WRITE */
	uint64_t raddr;
	uint32_t sge_first, nsge;
	uint64_t len;
	uint32_t chunk;           /* staged source: the chunk its sources sit in (sge addr = offset in
				   * it); staged destination: the unit (= chunk) it belongs to */
	bool chunk_end;           /* staged source: the chunk's last WRITE */
	bool ready;               /* staged source: SGEs point into the chunk's slot */
	uint8_t kind;             /* VB_OP_* */
};

enum { VB_OP_WRITE, VB_OP_DESC, VB_OP_UNIT }; /* data, unit range list, unit SEND */

struct vb_bind {                  /* a unit's slot at the receiver */
	bool bound;
	uint32_t slot, rkey;
	uint64_t addr;
	size_t first_op;          /* the unit's first WRITE */
};

struct vb_part {
	struct vb_req *req;
	struct vb_qp *qp;
	uint32_t op_first, nops, next; /* next op to post */
	bool hdr_posted;
	bool ended;                    /* its last WR is posted: in the QP's ended list */
	struct vb_part *qnext;         /* the QP's queue of parts to post */
	struct vb_part *dnext;         /* the QP's list of ended parts, oldest first */
};

struct vb_req {
	uint64_t req_id;
	uint32_t seq;
	uint64_t bytes;
	uint32_t rkey;
	uint32_t region;
	uint32_t nparts, parts_done;
	struct ibv_sge *sge;
	struct vb_op *ops;
	size_t nops, nsge, cap_ops, cap_sge;
	struct nkv_stage *stage;       /* GPU source without GPUDirect */
	bool dst_staged;               /* into the peer's bounce slots, unit by unit */
	struct nkv_chunk_plan units;   /* dst_staged: the units (= stage's chunks when staged) */
	struct vb_bind *bind;          /* per unit */
	uint32_t nbound;               /* units 0..nbound-1 have a slot */
	struct vb_unit *umsg;          /* per unit: its SEND */
	struct vb_part *parts;
	struct vb_hdr hdr;
	struct vb_req *next, *prev;    /* the connection's requests in flight */
};

struct vb_sig {                    /* a signalled WR and what its CQE retires */
	uint32_t nwr;
	uint32_t nparts;               /* parts that ended in those WRs: the oldest of the ended list */
	struct vb_req *staged;         /* non-NULL: the last write of chunk `chunk` */
	uint32_t chunk;
};

struct vb_qp {
	struct vb_conn *vc;
	struct rdma_cm_id *id;
	uint32_t idx, qpn;
	bool established;
	/* the handshake */
	bool authed;                   /* passive: its AUTH checked out; active: its ADVERTs all came */
	uint8_t na[VB_NONCE], np[VB_NONCE];
	uint32_t nadv, adv_count;      /* active: ADVERTs received, of how many */
	uint32_t ctrl_out;             /* ADVERT / AUTH / ERROR SENDs not yet completed */
	/* send side */
	uint32_t sq_depth, sq_out, since_sig, parts_open;
	struct vb_sig sig[VB_SQ_DEPTH];
	uint32_t sig_head, sig_count;
	struct vb_part *qhead, *qtail;
	struct vb_part *dhead, *dtail; /* ended parts, retired in order by signalled completions */
	uint32_t ends;                 /* parts ended since the last signalled WR */
	/* receive side */
	struct vb_hdr *rbuf;           /* headers, units, credits: all 32 bytes */
	struct ibv_mr *rmr;
	uint32_t nrecv;
};

struct vb_rslot {
	bool used, staged;
	uint32_t seq;
	uint64_t req_id, bytes;
	uint64_t queued, landed;       /* staged: bytes announced by units, bytes on the device */
	uint32_t region;
	uint16_t nparts, seen;
};

struct vb_lend {                   /* receiver: a bounce slot lent to the peer */
	struct nkv_gpu_in *slot;
	struct ibv_mr *mr;
	bool granted;                  /* the peer may write it */
};

struct vb_conn {
	struct nkv_conn *c;
	struct nkv_engine *e;
	struct ibv_cq *cq;
	struct vb_qp *qps;
	uint32_t nqps, nup, nauth;     /* QPs established, QPs authenticated */
	uint64_t token;
	bool failed, up_emitted;
	bool refusing;                 /* an ERROR is on its way: fail with `why` once it left */
	int fail_status;               /* the first failure's status and reason */
	char why[160];
	uint64_t auth_deadline;        /* passive: up (every QP authenticated) by then, or closed */
	uint32_t next_seq, rr, inflight;
	struct vb_req *reqs;
	struct vb_rslot *rslots;       /* passive side */
	uint32_t mtu;                  /* path MTU in bytes, from the QP */
	uint32_t peer_mtu;
	bool armed;                    /* CQ armed, its event not read yet: no new ibv_req_notify_cq */
	/* receiver staging, receiving side */
	struct vb_lend lend[VB_CREDITS];
	uint32_t nlend, credit_out;    /* slots lent; credit SENDs not yet completed */
	bool lend_done;
	struct nkv_range *uranges;     /* a unit's checked range list */
	/* receiver staging, sending side */
	struct vb_credit credits[VB_CREDITS * 2];
	uint32_t ncredits;
	bool no_credit;                /* the peer lends nothing */
	uint8_t *descbuf;              /* VB_CREDITS unit range lists, by peer slot */
	struct ibv_mr *descmr;
};

struct vb_engine {
	struct vb_dev dev;
	struct rdma_event_channel *cm_ch;
	struct ibv_comp_channel *comp_ch;
	struct rdma_cm_id *listen_id;
	bool event_mode;               /* NKV_VERBS_COMPLETION=event */
	uint32_t spin_ns;              /* adaptive busy-poll budget */
	uint32_t cm_skip;              /* polls since the CM channel was last looked at */
	uint64_t next_sweep;           /* nkv__vb_auth_sweep's next look at pending connections */
	struct {                       /* staging slots registered so far */
		const void *base;
		struct ibv_mr *mr;
	} smr[NKV_GPU_OUT_SLOTS];
};

static inline struct vb_engine *VE(struct nkv_engine *e) { return e->be; }

/* verbs_dev.c */
int nkv__vb_dev_open(struct nkv_engine *e, const char *device, int gid_index);
void nkv__vb_dev_close(struct vb_dev *d);
bool nkv__vb_dev_is_soft(const struct vb_dev *d);
void nkv__vb_describe(struct nkv_engine *e, struct vb_conn *vc);
int nkv__vb_gid_info(struct vb_dev *d, int idx, char *type, size_t tlen, char *ip, size_t iplen, char *gid, size_t glen);
const char *nkv__vb_mtu_str(uint32_t bytes);
struct ibv_mr *nkv__vb_stage_mr(struct nkv_engine *e, const void *base);
uint32_t nkv__vb_mtu_bytes(enum ibv_mtu m);

/* verbs_cm.c */
int nkv__vb_cm_events(struct nkv_engine *e);
void nkv__vb_auth_sweep(struct nkv_engine *e);
void nkv__vb_auth_recv(struct vb_conn *vc, struct vb_qp *q, const void *msg);
void nkv__vb_ctrl_sent(struct vb_conn *vc, struct vb_qp *q);
__attribute__((format(printf, 5, 6)))
void nkv__vb_refuse(struct vb_conn *vc, struct vb_qp *q, int status, uint32_t code, const char *fmt, ...);
__attribute__((format(printf, 3, 4)))
void nkv__vb_conn_fail(struct vb_conn *vc, int status, const char *fmt, ...);
int nkv__vb_qp_create(struct vb_conn *vc, struct vb_qp *q, bool passive);

/* verbs_data.c */
int nkv__vb_cq_create(struct nkv_engine *e, struct vb_conn *vc);
int nkv__vb_post_recvs(struct vb_qp *q, uint32_t n);
int nkv__vb_send_ctrl(struct vb_qp *q, const void *msg);
void nkv__vb_lend_slots(struct vb_conn *vc);
void nkv__vb_lend_free(struct vb_conn *vc);
void nkv__vb_post_pending(struct vb_qp *q);
int nkv__vb_poll_cq(struct vb_conn *vc);
void nkv__vb_req_free(struct vb_conn *vc, struct vb_req *r);
int nkv__vb_shape(struct nkv_engine *e, const struct nkv_plan *p, struct nkv__push_shape *out);

extern const struct nkv_backend_ops nkv_verbs_ops;

#endif
