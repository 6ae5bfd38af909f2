/*
 * netkv topology: the cluster as the scheduler and simulator see it.
 *
 * An instance is one GPU (a prefill or decode worker). Tiers between two
 * instances, as in the NetKV paper's four-tier fat tree:
 *   0 same host (NVLink/PCIe), 1 same leaf (ToR), 2 same pod (spine),
 *   3 across pods (core).
 * Links are directional (full duplex = two links) so flow-level sharing in
 * the simulator and congestion accounting in the oracle count each
 * direction separately. Queries are O(1) or O(depth): the scheduler calls
 * them per candidate per request.
 *
 * Draft contract written before the implementation: the topo owner refines
 * it, keeping the shape (opaque handle, negative errno + nkv_last_error()).
 */
#ifndef NETKV_TOPO_H
#define NETKV_TOPO_H

#include <stddef.h>
#include <stdint.h>

#define NKV_TIERS 4
enum nkv_tier { NKV_TIER_HOST = 0, NKV_TIER_LEAF = 1, NKV_TIER_POD = 2, NKV_TIER_CORE = 3 };
const char *nkv_tier_name(int tier); /* "host", "leaf", "pod", "core" */

struct nkv_topo;

struct nkv_fat_tree_params {
	uint32_t gpus;            /* total, multiple of gpus_per_host */
	uint32_t gpus_per_host;   /* 8 */
	uint32_t hosts_per_leaf;  /* 2 */
	uint32_t leaves_per_pod;  /* 2 */
	double nic_gbps;          /* per GPU NIC, Gb/s (decimal), 400 */
	double intra_host_GBps;   /* NVLink per GPU, GB/s, 450 */
	double oversub_leaf;      /* leaf->spine oversubscription, 1 = 1:1 */
	double oversub_spine;     /* spine->core oversubscription */
	double hop_latency_us;    /* per switch hop, 0.5 */
};
void nkv_fat_tree_defaults(struct nkv_fat_tree_params *p);
int nkv_topo_fat_tree(const struct nkv_fat_tree_params *p, struct nkv_topo **out);
int nkv_topo_load(const char *path, struct nkv_topo **out);     /* JSON */
int nkv_topo_parse(const char *json, size_t len, struct nkv_topo **out);
int nkv_topo_write_json(const struct nkv_topo *t, const char *path); /* "-" = stdout */
void nkv_topo_free(struct nkv_topo *t);

struct nkv_instance_info {
	const char *name;   /* "h3g5" */
	uint32_t host;      /* host index */
	uint32_t gpu;       /* GPU index within the host */
	uint32_t nic;       /* NIC index within the host serving this GPU */
	uint32_t leaf, pod;
};
uint32_t nkv_topo_instances(const struct nkv_topo *t);
uint32_t nkv_topo_hosts(const struct nkv_topo *t);
int nkv_topo_instance(const struct nkv_topo *t, uint32_t inst, struct nkv_instance_info *out);
int nkv_topo_find(const struct nkv_topo *t, const char *name); /* index or -ENOENT */

int nkv_topo_tier(const struct nkv_topo *t, uint32_t a, uint32_t b);

struct nkv_link_info {
	const char *name;      /* "h0g1->leaf0", "leaf0->spine0", ... */
	int tier;              /* the tier whose traffic first uses this link */
	double bytes_per_s;    /* capacity, after oversubscription */
	double latency_s;      /* per-hop latency */
};
uint32_t nkv_topo_links(const struct nkv_topo *t);
int nkv_topo_link(const struct nkv_topo *t, uint32_t link, struct nkv_link_info *out);

#define NKV_MAX_PATH 8
/* Directional links a transfer a -> b crosses; returns the count (<= NKV_MAX_PATH). */
int nkv_topo_path(const struct nkv_topo *t, uint32_t a, uint32_t b, uint32_t links[NKV_MAX_PATH]);
double nkv_topo_path_bw(const struct nkv_topo *t, uint32_t a, uint32_t b);      /* bottleneck B/s */
double nkv_topo_path_latency(const struct nkv_topo *t, uint32_t a, uint32_t b); /* seconds */
/* The nominal per-tier figure the oracle falls back to with stale telemetry. */
double nkv_topo_tier_bw(const struct nkv_topo *t, int tier);

#endif
