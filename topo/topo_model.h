/*
 * Internal representation of a topology, shared by the builder, the JSON
 * reader/writer, the queries, the CLI and the emulated fabric.
 * Everything a query needs is precomputed at build time.
 */
#ifndef NKV_TOPO_MODEL_H
#define NKV_TOPO_MODEL_H

#include "netkv_topo.h"

#include <stdbool.h>

#define TOPO_NAME_MAX 64
#define TOPO_NONE UINT32_MAX

enum { SW_LEAF = 1, SW_SPINE = 2, SW_CORE = 3 };

/* What a topology may hold, checked by nkv__topo_finish() so that the generator
 * can never write a file the reader rejects. Rates and latencies outside
 * these are unit mistakes (and overflow to inf once turned into B/s). */
#define TOPO_MAX_HOSTS 65536u
#define TOPO_MAX_SWITCHES 65536u
#define TOPO_MAX_GPUS_PER_HOST 1024u
#define TOPO_MAX_NICS_PER_HOST 64u
#define TOPO_MAX_INSTANCES (1u << 20)
#define TOPO_MIN_GBPS 1e-3        /* 1 Mb/s */
#define TOPO_MAX_GBPS 1e6         /* 1 Pb/s per NIC (and NVLink, GB/s) */
#define TOPO_MAX_UPLINK_GBPS 1e12 /* an aggregated switch uplink sums many NICs */
#define TOPO_MAX_LATENCY_US 1e6   /* 1 s per link */

struct topo_switch {
	char name[TOPO_NAME_MAX];
	int tier;             /* SW_LEAF, SW_SPINE, SW_CORE */
	uint32_t up;          /* parent switch or TOPO_NONE */
	double up_gbps;       /* aggregated uplink capacity (0 when no uplink) */
	double oversub;       /* downlink sum / up_gbps (as given or derived) */
	double latency_us;    /* of the uplink, each direction */
	/* derived */
	uint32_t ord;         /* index among the switches of its tier */
	double down_gbps;     /* sum of the capacities of the links below */
	uint32_t gpus_below;
	uint32_t link_up, link_down; /* this switch -> parent, parent -> this */
	/* ECMP members of the uplink bundle (when the topology declares ECMP):
	 * a leaf has S (one per spine of its pod), a spine (= a pod's spine
	 * layer) S x C (spine j to core c of plane j); member m's up link is
	 * ecmp_first + 2m, its down link ecmp_first + 2m + 1. */
	uint32_t ecmp_first;
};

struct topo_nic {
	char name[TOPO_NAME_MAX];
	uint32_t host;
	double gbps;
	double latency_us;
	uint32_t ngpus;       /* GPUs it serves */
	uint32_t link_up, link_down;
};

struct topo_host {
	char name[TOPO_NAME_MAX];
	uint32_t leaf;        /* switch index */
	uint32_t ngpus;
	uint32_t first_inst;
	uint32_t first_nic, nnics;
};

struct topo_inst {
	char name[TOPO_NAME_MAX + 8];
	uint32_t host, gpu;
	uint32_t nic;         /* global NIC index */
	uint32_t leaf, spine, core; /* switch indexes, TOPO_NONE when absent */
	uint32_t nvl_out, nvl_in;   /* link indexes */
};

struct topo_link {
	char name[2 * TOPO_NAME_MAX + 8];
	int tier;
	double Bps, share_Bps, latency_s;
};

struct nkv_topo {
	char name[TOPO_NAME_MAX];
	double intra_GBps, intra_latency_us;
	uint32_t nhosts, nnics, nswitches, ninsts, nlinks;
	struct topo_host *hosts;
	struct topo_nic *nics;
	struct topo_switch *switches;
	struct topo_inst *insts;
	struct topo_link *links;
	double tier_bw[NKV_TIERS], tier_lat[NKV_TIERS];
	/* Multipath: S real spines per pod, C real cores per spine plane (a
	 * k-ary style fat tree). 0 = not declared: only the aggregated links. */
	uint32_t ecmp_spines, ecmp_cores;
	uint32_t *bundle;     /* per link: the aggregated link it is a member of (itself if aggregated) */
};

#define TOPO_MAX_ECMP 64u /* spines per pod, cores per plane */

/*
 * Building: fill name/intra/hosts/nics/switches (plus, per NIC, the GPUs it
 * serves in gpu_nic[host's first_inst + gpu] = global NIC index), then call
 * nkv__topo_finish() which validates the structure, derives the uplink
 * capacities from oversubscription where up_gbps == 0, and builds the
 * instances and links. On failure the caller frees with nkv_topo_free().
 */
struct nkv_topo *nkv__topo_alloc(uint32_t nhosts, uint32_t nnics, uint32_t nswitches, uint32_t ninsts);
int nkv__topo_finish(struct nkv_topo *t, const uint32_t *gpu_nic);
bool nkv__topo_valid_name(const char *s);
/* "leaf", "spine", "core" for SW_*. */
const char *nkv__topo_switch_tier_name(int tier);
/* Oversubscription "N:M" or "N" (N, M finite, > 0) -> N / M > 0. */
int nkv__topo_parse_ratio(const char *s, double *out);

#endif
