/*
 * netkv transfer engine: moves a request's paged KV blocks from a prefill
 * process's memory into a decode process's memory.
 *
 * Contract (all backends):
 *  - Regions are registered with an engine and named by a small id. The
 *    decode (listening) side advertises its regions to each peer when the
 *    connection is made; the prefill side then pushes into them by id.
 *  - nkv_push() is one-sided from the caller's point of view: the decode side
 *    posts nothing per block. The sender gets NKV_EV_PUSH_DONE when every byte
 *    is placed; the receiver gets exactly one NKV_EV_RECV per request (request
 *    id + byte count) after the last byte is in place, as RDMA WRITE_WITH_IMM
 *    gives. A failed request gives one event with a negative status instead.
 *  - A receiver never writes outside a registered region, whatever the peer
 *    sends; into a region that requires grants, only inside the grant of
 *    the request the bytes name (see "grants" below).
 *  - Functions return 0 (or a count) or a negative errno; nkv_last_error()
 *    (netkv_error.h) has the detail.
 *
 * This is a draft contract written before the backends: the transfer owners
 * refine it, but keep the shape (opaque handles, ops-table backends, events).
 */
#ifndef NETKV_TRANSFER_H
#define NETKV_TRANSFER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netkv_error.h" /* nkv_last_error() */

/* The API libnetkv exports; the rest of the library is hidden. */
#pragma GCC visibility push(default)

/* ---- KV layout model -------------------------------------------------- */

enum nkv_dtype { NKV_FP16, NKV_BF16, NKV_FP8, NKV_FP32 };

struct nkv_model {
	char name[48];
	uint32_t layers;
	uint32_t kv_heads;  /* MLA: 1 */
	uint32_t head_dim;  /* MLA: latent width, e.g. 576 */
	enum nkv_dtype dtype;
	bool mla;           /* one latent tensor per layer instead of K and V */
};

/* Presets: "llama3-8b", "llama3-70b", "qwen2.5-7b", "deepseek-v3", "llama2-7b".
 * The preset's dtype is fp16; change model.dtype afterwards for others. */
int nkv_model_preset(const char *name, struct nkv_model *out);
/* Comma-separated preset names, for --help texts. */
const char *nkv_model_preset_names(void);
/* A shape from a JSON file: a Hugging Face config.json (num_hidden_layers,
 * num_key_value_heads, head_dim or hidden_size/num_attention_heads,
 * torch_dtype; MLA through kv_lora_rank + qk_rope_head_dim), or netkv's
 * {"name","layers","kv_heads","head_dim","dtype","mla"} (dtype and mla
 * optional: fp16, false). -EINVAL naming the file and key otherwise. */
int nkv_model_load_json(const char *path, struct nkv_model *out);
/* What every --model takes: a preset name, else a path to either file
 * form above. -EINVAL (unknown name, bad file) with the detail. */
int nkv_model_lookup(const char *name_or_path, struct nkv_model *out);
/* Parse "fp16", "bf16", "fp8", "fp32". */
int nkv_dtype_parse(const char *s, enum nkv_dtype *out);
const char *nkv_dtype_name(enum nkv_dtype d);
uint32_t nkv_dtype_bytes(enum nkv_dtype d);
/* Checks a model is sane (nonzero dims, no overflow); nkv_model_* callers get EINVAL otherwise. */
int nkv_model_check(const struct nkv_model *m);
/* layers x (MLA ? 1 : 2) x kv_heads x head_dim x dtype bytes. */
uint64_t nkv_model_bytes_per_token(const struct nkv_model *m);

enum nkv_layout_kind {
	/* vLLM FlashAttention style: per layer a tensor [2][num_blocks][block_tokens][kv_heads][head_dim] */
	NKV_LAYOUT_LAYER_MAJOR,
	/* all layers (K and V) of one block contiguous: [num_blocks][layers][2][block_tokens][kv_heads][head_dim] */
	NKV_LAYOUT_BLOCK_MAJOR,
};

struct nkv_layout {
	struct nkv_model model;
	uint32_t block_tokens; /* default 16 */
	uint32_t num_blocks;   /* blocks in the pool */
	enum nkv_layout_kind kind;
};

int nkv_layout_parse_kind(const char *s, enum nkv_layout_kind *out); /* "layer" | "block" */
const char *nkv_layout_kind_name(enum nkv_layout_kind k);
int nkv_layout_check(const struct nkv_layout *l);
uint64_t nkv_layout_pool_bytes(const struct nkv_layout *l);
uint64_t nkv_layout_block_bytes(const struct nkv_layout *l); /* all layers, K and V */
/* One block's piece of one (layer, K/V) tensor: block_tokens x kv_heads x head_dim x dtype. */
uint64_t nkv_layout_chunk_bytes(const struct nkv_layout *l);
/* Tensors per layer: 2 (K, V) or 1 (MLA latent). */
uint32_t nkv_layout_tensors(const struct nkv_layout *l);
/* Byte offset of (block, layer, kv) in the pool; kv < nkv_layout_tensors(). */
uint64_t nkv_layout_chunk_offset(const struct nkv_layout *l, uint32_t block, uint32_t layer, uint32_t kv);
/* xxhash64 of one block's bytes taken in (layer, kv) order, so the value is
 * the same whatever the layout the block is stored in. */
uint64_t nkv_block_hash(const struct nkv_layout *l, const void *pool, uint32_t block);

struct nkv_range { uint64_t src_off, dst_off, len; };

/* A request's byte ranges, coalesced where contiguous on both sides. Built
 * once per request, posted many times. The two layouts must hold the same
 * model and block size; kind and pool size may differ. Rejected: an empty
 * list, a block id beyond either pool, a destination block named twice. */
struct nkv_plan;
int nkv_plan_build(const struct nkv_layout *src, const struct nkv_layout *dst,
		   const uint32_t *src_blocks, const uint32_t *dst_blocks, size_t nblocks,
		   struct nkv_plan **out);
/* A plan of raw byte ranges (no blocks; --verify needs a paged plan). Ranges
 * must be non-empty and must not overlap on the destination side. */
int nkv_plan_build_raw(const struct nkv_range *ranges, size_t n, struct nkv_plan **out);
size_t nkv_plan_count(const struct nkv_plan *p);
const struct nkv_range *nkv_plan_ranges(const struct nkv_plan *p);
uint64_t nkv_plan_bytes(const struct nkv_plan *p);
/* Highest src_off+len and dst_off+len: the region sizes the plan needs. */
uint64_t nkv_plan_src_extent(const struct nkv_plan *p);
uint64_t nkv_plan_dst_extent(const struct nkv_plan *p);
/* Paged plans: blocks and layouts (0 / NULL for raw plans). */
size_t nkv_plan_nblocks(const struct nkv_plan *p);
const uint32_t *nkv_plan_src_blocks(const struct nkv_plan *p);
const uint32_t *nkv_plan_dst_blocks(const struct nkv_plan *p);
const struct nkv_layout *nkv_plan_src_layout(const struct nkv_plan *p);
void nkv_plan_free(struct nkv_plan *p);

/* ---- engine, regions, connections ---------------------------------------- */

enum nkv_backend { NKV_BACKEND_TCP, NKV_BACKEND_VERBS };
enum nkv_mem_kind { NKV_MEM_HOST, NKV_MEM_HOST_HUGE, NKV_MEM_CUDA };

struct nkv_engine_opts {
	enum nkv_backend backend;
	const char *device;   /* verbs: device name, NULL = automatic */
	int gid_index;        /* verbs: -1 = automatic (RoCEv2 IPv4 GID on the routed netdev) */
	unsigned streams;     /* TCP streams / QPs per connection for striping (>= 1) */
	bool verify;          /* per-block xxhash64 computed by sender, checked by receiver */
	unsigned handshake_ms; /* how long connect waits for the peer, and how long an accepted
				  connection may take to open (and authenticate) all its streams
				  or QPs (0 = 10 s) */
	const char *src_addr; /* TCP: local IP that connections leave from (a host's NIC on a
			       * multi-NIC host), NULL = the route's choice; must outlive the engine */
	int gpu;              /* CUDA device (runtime ordinal) of NKV_MEM_CUDA regions; default 0 */
	/* The data-plane secret both ends of a connection must hold (up to
	 * NKV_SECRET_MAX bytes; copied at create). Each side proves it to the
	 * other by HMAC-SHA256 over fresh nonces of both (TCP: transfer/wire.h,
	 * verbs: transfer/verbs_cm.c, on every QP, before a verbs listener
	 * sends its rkeys); it never crosses the wire. NULL or "" = the empty
	 * secret: connections to and from engines with no secret only,
	 * authenticating nothing. */
	const char *secret;
	/* TCP: connections (accepted and handshaking) a listening engine keeps
	 * at once; verbs: 4x that many QPs of connections still authenticating.
	 * More are refused with a reason (0 = 256). */
	unsigned max_conns;
};

#define NKV_SECRET_MAX 256


struct nkv_engine;
struct nkv_conn;

/* The defaults: TCP, one stream, automatic verbs device and GID (gid_index
 * -1), no verify, GPU 0; callers set what they change after it. */
void nkv_engine_opts_init(struct nkv_engine_opts *o);
int nkv_engine_create(const struct nkv_engine_opts *o, struct nkv_engine **out);
void nkv_engine_destroy(struct nkv_engine *e);
const char *nkv_engine_describe(const struct nkv_engine *e); /* "tcp (io_uring)", "verbs rxe0 gid 1", ... */

/* Allocate and register a pool; *id names it on the wire. layout may be NULL
 * (raw bytes); with a layout, --verify checks per block. */
int nkv_region_alloc(struct nkv_engine *e, enum nkv_mem_kind kind, uint64_t len,
		     const struct nkv_layout *layout, uint32_t *id, void **ptr);
int nkv_region_register(struct nkv_engine *e, enum nkv_mem_kind kind, void *ptr, uint64_t len,
			const struct nkv_layout *layout, uint32_t *id);
int nkv_region_release(struct nkv_engine *e, uint32_t id);
/* How the backend reaches a region: "host", or for NKV_MEM_CUDA the GPU and
 * the registration mode with its reason, e.g. "cuda0 NVIDIA H100 ... :
 * dma-buf" or "...: staging (peermem: nvidia_peermem module not loaded)". */
int nkv_region_describe(const struct nkv_engine *e, uint32_t id, char *buf, size_t len);

/* Decode side: accept connections on host:port ("0.0.0.0:0" picks a port).
 * Connections are accepted and handshaken inside nkv_poll(). */
int nkv_listen(struct nkv_engine *e, const char *addr, uint16_t *port_out);
/* Prefill side: opens opts.streams streams to addr and learns the peer's
 * regions. Blocks (up to opts.handshake_ms) until the peer's engine, polled by another
 * thread or process, has answered. */
int nkv_connect(struct nkv_engine *e, const char *addr, struct nkv_conn **out);
/* Closes the connection: requests still in flight fail (their events are
 * queued first). Receiver-side connections, handed out in events, stay valid
 * until closed here or until the engine is destroyed. */
void nkv_conn_close(struct nkv_conn *c);

/* What a peer needs to write into a region: TCP uses id and len; verbs adds
 * the virtual address and rkey. */
struct nkv_remote_region {
	uint32_t id;
	uint32_t rkey;
	uint64_t addr;
	uint64_t len;
};
/* The peer's regions as advertised at connect time. */
size_t nkv_conn_remote_count(const struct nkv_conn *c);
const struct nkv_remote_region *nkv_conn_remote(const struct nkv_conn *c, size_t i);

struct nkv_push {
	uint64_t req_id;
	uint32_t src_region;       /* local */
	uint32_t dst_region;       /* the peer's, as advertised */
	const struct nkv_plan *plan;
};
/* Post a push; completion comes as an event. Many may be in flight; the
 * plan and the source bytes must stay untouched until NKV_EV_PUSH_DONE.
 * Checked here, before anything is sent: the regions exist and the plan
 * fits both; --verify needs a paged plan. GPU sources: the bytes must be
 * complete on the device when this is called (synchronize the stream that
 * wrote them): netkv's copies run on streams of their own, not ordered
 * after the application's work. */
int nkv_push(struct nkv_conn *c, const struct nkv_push *p);

enum nkv_event_type {
	NKV_EV_PUSH_DONE,   /* sender: all bytes placed (status 0) or failed (<0) */
	NKV_EV_RECV,        /* receiver: one per request, after its last byte */
	NKV_EV_CONN_UP,     /* receiver: a peer connected */
	NKV_EV_CONN_DOWN,   /* either side: a connection closed (status says why) */
};

struct nkv_event {
	enum nkv_event_type type;
	int status;          /* 0 or negative errno; nkv_event.reason has detail */
	uint64_t req_id;
	uint64_t bytes;
	struct nkv_conn *conn;
	char reason[160];
};

/* ---- grants: which request may write where (receiver side) ----------------
 *
 * A region is open by default: any peer that passed the connection's
 * authentication may write anywhere inside it (what `netkv bench transfer`,
 * the examples and the testbed's probe region use). A region set to
 * NKV_REGION_GRANTED accepts bytes only for a request id the receiving
 * application granted, and only inside that grant's byte ranges. A peer
 * that names a request with no grant in the region, announces more bytes
 * than the grant covers, or sends a range outside it is refused before a
 * byte of the payload is written: its connection gets an ERROR naming the
 * request and why, and closes (the requests it had in flight fail on both
 * sides; other connections go on).
 *
 * Grant the request's destination ranges once its pages are reserved, and
 * hand its id only to the peer that is to write them; make ids unguessable
 * (random 64-bit, e.g. the testbed scheduler's) so that knowing the secret
 * is not enough to write into a request that is not yours. A grant is used
 * up by the request's NKV_EV_RECV (every byte in place: an id writes once);
 * revoke it when the request ends otherwise (failed, cancelled). Bytes of
 * a lately revoked request (the last 1024 revokes) that arrive after the
 * revoke are read and dropped, not written: the request ends on the
 * receiver with NKV_EV_RECV -ECANCELED, its sender's push with -ECANCELED,
 * and the connection's other requests go on. A range whose header was
 * accepted before the revoke may still land (at most one in flight per
 * stream); check what arrives in pages reused soon after (--verify). The
 * first connection that writes under a grant holds it while it lives:
 * another connection naming the request is refused; once the holder fails
 * or closes, a prefill that reconnects may push the request again.
 *
 * TCP only: verbs' one-sided WRITE is checked by the NIC against the
 * region's rkey, not by this process, so setting NKV_REGION_GRANTED on a
 * verbs engine is refused (EOPNOTSUPP). */
enum nkv_region_access {
	NKV_REGION_OPEN,    /* any authenticated peer, anywhere in the region (the default) */
	NKV_REGION_GRANTED, /* only granted requests, only inside their grants */
};
/* Setting a region back to open drops its grants. */
int nkv_region_set_access(struct nkv_engine *e, uint32_t region, enum nkv_region_access access);
/* Request req_id may write the byte ranges [dst_off, +len) of ranges[0..n)
 * (src_off ignored) into granted region `region`. Ranges may come in any
 * order and touch or overlap (they are merged); each must be non-empty and
 * inside the region. One grant per request id: -EEXIST if it has one. */
int nkv_grant(struct nkv_engine *e, uint64_t req_id, uint32_t region, const struct nkv_range *ranges, size_t n);
/* The same for whole blocks (pages) of the region's layout: every (layer,
 * K/V) piece of each block. The region needs a layout. */
int nkv_grant_blocks(struct nkv_engine *e, uint64_t req_id, uint32_t region, const uint32_t *blocks, size_t n);
/* Removes req_id's grant: 1 if it had one, 0 if not (never granted, or used
 * up by its NKV_EV_RECV). */
int nkv_revoke(struct nkv_engine *e, uint64_t req_id);

/* Threads: an engine is not thread-safe; drive each from one thread at a
 * time. io_uring cancels operations when the thread that submitted them
 * exits; the TCP backend posts them again on the next nkv_poll(). */
/* Drive progress and collect up to max events; waits up to timeout_ms
 * (0 = poll, -1 = forever). Returns the number of events or a negative errno. */
int nkv_poll(struct nkv_engine *e, struct nkv_event *ev, int max, int timeout_ms);

#pragma GCC visibility pop

#endif
