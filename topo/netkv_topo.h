/*
 * netkv topology: the cluster as the scheduler and simulator see it.
 *
 * An instance is one GPU (a prefill or decode worker). Tiers between two
 * instances, as in the NetKV paper's four-tier fat tree:
 *   0 same host (NVLink/PCIe), 1 same leaf (ToR), 2 same pod (spine),
 *   3 across pods (core).
 *
 * The model is a tree of aggregated switches: each host hangs off one leaf
 * through its NICs, each leaf off one spine (its pod), each spine off the
 * core. Parallel spine/core switches of a real fat tree are folded into one
 * aggregated uplink per switch whose capacity is the sum of the downlinks
 * divided by the oversubscription ratio at that tier.
 *
 * Links are directional (full duplex = two links) so flow-level sharing in
 * the simulator and congestion accounting in the oracle count each
 * direction separately. Link kinds:
 *   "h0g1>nvl"  GPU -> NVLink fabric (egress), "nvl>h0g2" (ingress)
 *   "h0n1>leaf0", "leaf0>h0n1"   NIC up / down
 *   "leaf0>spine0", "spine0>leaf0", "spine0>core0", "core0>spine0"
 * A path a -> b:
 *   tier 0: [a's NVLink out, b's NVLink in]
 *   tier 1: [a's NIC up, b's NIC down]
 *   tier 2: [NIC up, leafA>spine, spine>leafB, NIC down]
 *   tier 3: [NIC up, leafA>spineA, spineA>core, core>spineB, spineB>leafB, NIC down]
 * Base latency of a path = sum of its links' latencies (the per-hop figure
 * is per link traversed).
 *
 * Queries (tier, path, bandwidths, latency) are O(1) or O(depth), allocate
 * nothing and never fail for valid instance indexes: the scheduler calls
 * them per candidate per request. Errors follow the project convention:
 * negative errno, detail in nkv_last_error().
 */
#ifndef NETKV_TOPO_H
#define NETKV_TOPO_H

#include <stddef.h>
#include <stdint.h>

#include "netkv_error.h" /* nkv_last_error() */

/* The API libnetkv exports; the rest of the library is hidden. */
#pragma GCC visibility push(default)

#define NKV_TIERS 4
enum nkv_tier { NKV_TIER_HOST = 0, NKV_TIER_LEAF = 1, NKV_TIER_POD = 2, NKV_TIER_CORE = 3 };
const char *nkv_tier_name(int tier); /* "host", "leaf", "pod", "core"; "?" otherwise */

struct nkv_topo;

struct nkv_fat_tree_params {
	uint32_t gpus;            /* total, multiple of gpus_per_host*hosts_per_leaf*leaves_per_pod */
	uint32_t gpus_per_host;   /* 8 */
	uint32_t nics_per_host;   /* 8: NIC i serves GPUs i*(gph/nph) .. ; must divide gpus_per_host */
	uint32_t hosts_per_leaf;  /* 2 */
	uint32_t leaves_per_pod;  /* 2 */
	double nic_gbps;          /* per NIC, Gb/s (decimal, 1e9 bit/s), 400 */
	double intra_host_GBps;   /* NVLink per GPU and direction, GB/s (1e9 byte/s), 450 */
	double intra_host_latency_us; /* 1 */
	double oversub_leaf;      /* leaf->spine oversubscription, 1 = 1:1, 2 = 2:1 */
	double oversub_spine;     /* spine->core oversubscription */
	double hop_latency_us;    /* per link traversed, 0.5 */
	/* Multipath (ECMP) fat tree: 0 = the aggregated tree only (default).
	 * With spines_per_pod S >= 1 each pod has S real spines, each leaf one
	 * uplink to each of them; with more than one pod each spine plane has
	 * cores_per_spine C real cores (S x C cores in all). */
	uint32_t spines_per_pod, cores_per_spine;
	/* Per-link uplink speeds, Gb/s (0 = from the oversubscription): a leaf's
	 * uplink to one spine, a spine's uplink to one core. */
	double leaf_link_gbps, spine_link_gbps;
};
/* 64 GPUs, 8 GPUs and 8 NICs per host, 2 hosts/leaf, 2 leaves/pod (so 2
 * pods), 400 Gb/s NICs, 450 GB/s NVLink, 1:1 everywhere, 0.5 us/hop. */
void nkv_fat_tree_defaults(struct nkv_fat_tree_params *p);
int nkv_topo_fat_tree(const struct nkv_fat_tree_params *p, struct nkv_topo **out);

/* JSON topology file (format described in topo/README.md). */
int nkv_topo_load(const char *path, struct nkv_topo **out);
int nkv_topo_parse(const char *json, size_t len, struct nkv_topo **out);
int nkv_topo_write_json(const struct nkv_topo *t, const char *path); /* "-" = stdout */
/* Same document as a malloc'ed string (caller frees). NULL on failure. */
char *nkv_topo_dump_json(const struct nkv_topo *t);
void nkv_topo_free(struct nkv_topo *t);

const char *nkv_topo_name(const struct nkv_topo *t);

struct nkv_instance_info {
	const char *name;      /* "h3g5" = host name + "g" + GPU index */
	const char *host_name; /* "h3" */
	const char *nic_name;  /* "h3n5" */
	uint32_t host;         /* host index */
	uint32_t gpu;          /* GPU index within the host */
	uint32_t nic;          /* NIC index within the host serving this GPU */
	uint32_t leaf, pod;    /* global leaf index; pod = spine index (0 when there is no spine) */
};
uint32_t nkv_topo_instances(const struct nkv_topo *t);
uint32_t nkv_topo_hosts(const struct nkv_topo *t);
int nkv_topo_instance(const struct nkv_topo *t, uint32_t inst, struct nkv_instance_info *out);
int nkv_topo_find(const struct nkv_topo *t, const char *name); /* index or -ENOENT */

/* 0..3, or -EINVAL for an instance index out of range. */
int nkv_topo_tier(const struct nkv_topo *t, uint32_t a, uint32_t b);

struct nkv_link_info {
	const char *name;      /* "h0n1>leaf0", "leaf0>spine0", ... */
	int tier;              /* the lowest tier whose traffic uses this link */
	double bytes_per_s;    /* capacity, after oversubscription */
	double share_bytes_per_s; /* capacity / GPUs that can send through it in this direction */
	double latency_s;      /* per-hop latency */
};
uint32_t nkv_topo_links(const struct nkv_topo *t);
int nkv_topo_link(const struct nkv_topo *t, uint32_t link, struct nkv_link_info *out);

#define NKV_MAX_PATH 8
/* Directional links a transfer a -> b crosses; returns the count
 * (2, 4 or 6; 0 when a == b) or -EINVAL for a bad index. */
int nkv_topo_path(const struct nkv_topo *t, uint32_t a, uint32_t b, uint32_t links[NKV_MAX_PATH]);
/* Bottleneck of one flow on an idle fabric: min link capacity, B/s.
 * Oversubscription rarely shows here (an aggregated uplink is wider than a NIC). */
double nkv_topo_path_bw(const struct nkv_topo *t, uint32_t a, uint32_t b);
/* Per-GPU fair share when every GPU below each link sends through it at once:
 * min over the path of capacity / GPUs behind it. This is where 2:1 / 4:1
 * oversubscription shows (NIC 50 GB/s through a 4:1 leaf uplink = 12.5 GB/s). */
double nkv_topo_path_bw_loaded(const struct nkv_topo *t, uint32_t a, uint32_t b);
double nkv_topo_path_latency(const struct nkv_topo *t, uint32_t a, uint32_t b); /* seconds */
/* (The three above return a negative value for a bad index; a == b gives
 * 0 links, infinite bandwidth and 0 latency.) */

/* The nominal per-tier figure the oracle falls back to with stale
 * telemetry: the loaded per-GPU share at that tier (min over the
 * topology), B/s. Tier 0 is NVLink. Negative for a bad tier; 0 for a tier
 * the topology does not have (e.g. tier 3 with one pod). */
/*
 * Multipath (ECMP). A topology may declare S spines per pod and C cores per
 * spine plane (fat-tree params, topology file "ecmp"): each aggregated
 * uplink is then also split into member links (leaf -> spine j: bundle / S;
 * spine j -> core (j, c): bundle / (S x C)), listed after the aggregated
 * links. nkv_topo_ecmp() returns 1 and fills S, C when declared, else 0.
 * nkv_topo_path_ecmp() is the path one flow takes: at the source leaf a
 * hash of (a, b, flow) picks spine j, at spine j another hash picks core c;
 * down through spine j of b's pod (the same plane) to b's leaf. Host and
 * leaf tier paths are the aggregated ones. Deterministic, allocates nothing;
 * -EINVAL when the topology declares no ECMP. nkv_topo_link_bundle() is the
 * aggregated link a member belongs to (a link itself when aggregated): the
 * aggregated path of a flow is its ECMP path mapped through it.
 */
int nkv_topo_ecmp(const struct nkv_topo *t, uint32_t *spines_per_pod, uint32_t *cores_per_spine);
int nkv_topo_path_ecmp(const struct nkv_topo *t, uint32_t a, uint32_t b, uint64_t flow, uint32_t links[NKV_MAX_PATH]);
int nkv_topo_link_bundle(const struct nkv_topo *t, uint32_t link);
/* The ECMP hash (splitmix64 of the flow identity and the stage: 1 = leaf
 * picks a spine, 2 = spine picks a core), exposed for tests. */
uint64_t nkv_topo_ecmp_hash(uint32_t a, uint32_t b, uint64_t flow, int stage);

double nkv_topo_tier_bw(const struct nkv_topo *t, int tier);
/* Base latency of a tier's path (max over the topology), seconds. */
double nkv_topo_tier_latency(const struct nkv_topo *t, int tier);

/*
 * Host discovery with hwloc: this machine's GPUs, OpenFabrics (RDMA) NICs
 * and NUMA nodes and the PCIe distance between them, in NCCL's classes.
 * Works on a box with none of them (zero counts).
 */
enum nkv_pci_class { NKV_PCI_PIX = 0, NKV_PCI_PXB, NKV_PCI_PHB, NKV_PCI_NODE, NKV_PCI_SYS, NKV_PCI_UNKNOWN };
const char *nkv_pci_class_name(int cls); /* "PIX","PXB","PHB","NODE","SYS","?" */

struct nkv_host_gpu {
	char name[32];       /* OS device name ("cuda0", "nvidia0") or "gpu<i>" */
	char pci[16];        /* "0000:17:00.0" */
	int numa;            /* NUMA node, -1 unknown */
	int nic;             /* nearest NIC index, -1 none */
	int nic_class;       /* enum nkv_pci_class of that NIC */
};
struct nkv_host_nic {
	char name[32];       /* "mlx5_0" */
	char netdev[32];     /* "ens1f0" or "" */
	char pci[16];
	int numa;
};
struct nkv_host_numa {
	int os_index;
	uint64_t memory;     /* bytes, 0 unknown */
	int nic;             /* nearest NIC, -1 none */
	int nic_class;       /* NODE when local, SYS otherwise */
};
struct nkv_host_info {
	uint32_t ngpus, nnics, nnuma;
	struct nkv_host_gpu *gpus;
	struct nkv_host_nic *nics;
	struct nkv_host_numa *numa;
};
int nkv_host_discover(struct nkv_host_info **out);
void nkv_host_free(struct nkv_host_info *h);
/* Nearest RDMA NIC for GPU i (index in h->gpus) or for a GPU by PCI bus
 * id ("0000:17:00.0", as cudaDeviceGetPCIBusId gives, case-insensitive):
 * copies its name into name. -ENOENT when there is no such GPU or no NIC. */
int nkv_host_nearest_nic(const struct nkv_host_info *h, uint32_t gpu, char *name, size_t len);
int nkv_host_nearest_nic_pci(const struct nkv_host_info *h, const char *pci, char *name, size_t len);

#pragma GCC visibility pop

#endif
