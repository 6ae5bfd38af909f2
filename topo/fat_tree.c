/*
 * Fat-tree preset: hosts of G GPUs and N NICs, H hosts per leaf, L leaves
 * per pod (one aggregated spine per pod), one aggregated core when there is
 * more than one pod. Uplink capacities come from the oversubscription at
 * the leaf and spine tiers, or from per-link speeds. With spines_per_pod
 * the tree is also a multipath (ECMP) fat tree: S real spines per pod and
 * C cores per spine plane, each aggregated uplink split into its members
 * (nkv__topo_finish builds them).
 */
#include "topo_model.h"
#include "nkv_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

void nkv_fat_tree_defaults(struct nkv_fat_tree_params *p)
{
	*p = (struct nkv_fat_tree_params){
		.gpus = 64,
		.gpus_per_host = 8,
		.nics_per_host = 8,
		.hosts_per_leaf = 2,
		.leaves_per_pod = 2,
		.nic_gbps = 400,
		.intra_host_GBps = 450,
		.intra_host_latency_us = 1,
		.oversub_leaf = 1,
		.oversub_spine = 1,
		.hop_latency_us = 0.5,
	};
}

int nkv_topo_fat_tree(const struct nkv_fat_tree_params *p, struct nkv_topo **out)
{
	uint32_t gph = p->gpus_per_host, nph = p->nics_per_host;

	if (!gph || !nph || !p->hosts_per_leaf || !p->leaves_per_pod || !p->gpus)
		return nkv_err(EINVAL, "fat tree: GPU, NIC, host and leaf counts must be > 0");
	if (gph > TOPO_MAX_GPUS_PER_HOST || nph > gph || nph > TOPO_MAX_NICS_PER_HOST)
		return nkv_err(EINVAL, "fat tree: %u GPUs and %u NICs per host (need 1..%u GPUs, 1..%u NICs, NICs <= GPUs)",
			       gph, nph, TOPO_MAX_GPUS_PER_HOST, TOPO_MAX_NICS_PER_HOST);
	/* Before allocating: the limits every topology file has (nkv__topo_finish checks them again). */
	if (p->gpus > TOPO_MAX_INSTANCES || p->gpus / gph > TOPO_MAX_HOSTS)
		return nkv_err(EINVAL, "fat tree: %u GPUs at %u per host make %u hosts; a topology holds at most %u GPUs "
			       "and %u hosts", p->gpus, gph, p->gpus / gph, TOPO_MAX_INSTANCES, TOPO_MAX_HOSTS);
	if (gph % nph)
		return nkv_err(EINVAL, "fat tree: %u NICs per host do not divide %u GPUs per host", nph, gph);
	uint32_t per_pod = gph * p->hosts_per_leaf * p->leaves_per_pod;
	if (p->gpus % gph || (p->gpus / gph > p->hosts_per_leaf && p->gpus % (gph * p->hosts_per_leaf)) ||
	    (p->gpus / gph / p->hosts_per_leaf > p->leaves_per_pod && p->gpus % per_pod))
		return nkv_err(EINVAL, "fat tree: %u GPUs do not fill whole hosts/leaves/pods "
			       "(%u per host, %u per leaf, %u per pod)", p->gpus, gph, gph * p->hosts_per_leaf, per_pod);
	if (!(p->oversub_leaf >= 1) || !(p->oversub_spine >= 1))
		return nkv_err(EINVAL, "fat tree: oversubscription below 1:1 (%g, %g)", p->oversub_leaf, p->oversub_spine);

	if (p->spines_per_pod > TOPO_MAX_ECMP || p->cores_per_spine > TOPO_MAX_ECMP ||
	    (p->cores_per_spine && !p->spines_per_pod))
		return nkv_err(EINVAL, "fat tree: %u spines per pod, %u cores per spine plane (need 1..%u, cores only "
			       "with spines)", p->spines_per_pod, p->cores_per_spine, TOPO_MAX_ECMP);
	if (!(p->leaf_link_gbps == 0 || (p->leaf_link_gbps >= TOPO_MIN_GBPS && p->leaf_link_gbps <= TOPO_MAX_GBPS)) ||
	    !(p->spine_link_gbps == 0 || (p->spine_link_gbps >= TOPO_MIN_GBPS && p->spine_link_gbps <= TOPO_MAX_GBPS)))
		return nkv_err(EINVAL, "fat tree: leaf/spine link speeds %g, %g Gb/s outside %g .. %g (0 = from the "
			       "oversubscription)", p->leaf_link_gbps, p->spine_link_gbps, TOPO_MIN_GBPS, TOPO_MAX_GBPS);

	uint32_t hosts = p->gpus / gph;
	uint32_t S = p->spines_per_pod ? p->spines_per_pod : 1, C = p->cores_per_spine ? p->cores_per_spine : 1;
	uint32_t leaves = hosts < p->hosts_per_leaf ? 1 : hosts / p->hosts_per_leaf;
	uint32_t pods = leaves < p->leaves_per_pod ? 1 : leaves / p->leaves_per_pod;
	uint32_t spines = leaves > 1 ? pods : 0, cores = pods > 1 ? 1 : 0;
	uint32_t nsw = leaves + spines + cores;
	struct nkv_topo *t = nkv__topo_alloc(hosts, hosts * nph, nsw, p->gpus);
	uint32_t *gpu_nic = malloc(sizeof(*gpu_nic) * p->gpus);
	int rc;

	if (!t || !gpu_nic) {
		nkv_topo_free(t);
		free(gpu_nic);
		return nkv_err(ENOMEM, "fat tree: out of memory");
	}
	snprintf(t->name, sizeof(t->name), "fat-tree-%u", p->gpus);
	t->intra_GBps = p->intra_host_GBps;
	t->intra_latency_us = p->intra_host_latency_us;
	t->ecmp_spines = p->spines_per_pod;
	t->ecmp_cores = p->spines_per_pod ? C : 0;
	/* Switch order: core, spines, leaves. */
	uint32_t first_spine = cores, first_leaf = cores + spines;
	if (cores) {
		snprintf(t->switches[0].name, TOPO_NAME_MAX, "core0");
		t->switches[0].tier = SW_CORE;
		t->switches[0].up = TOPO_NONE;
	}
	for (uint32_t s = 0; s < spines; s++) {
		struct topo_switch *sw = &t->switches[first_spine + s];
		snprintf(sw->name, TOPO_NAME_MAX, "spine%u", s);
		sw->tier = SW_SPINE;
		sw->up = cores ? 0 : TOPO_NONE;
		sw->oversub = cores && !p->spine_link_gbps ? p->oversub_spine : 0;
		sw->up_gbps = cores && p->spine_link_gbps ? S * C * p->spine_link_gbps : 0;
		sw->latency_us = p->hop_latency_us;
	}
	for (uint32_t l = 0; l < leaves; l++) {
		struct topo_switch *sw = &t->switches[first_leaf + l];
		snprintf(sw->name, TOPO_NAME_MAX, "leaf%u", l);
		sw->tier = SW_LEAF;
		sw->up = spines ? first_spine + l / p->leaves_per_pod : TOPO_NONE;
		sw->oversub = spines && !p->leaf_link_gbps ? p->oversub_leaf : 0;
		sw->up_gbps = spines && p->leaf_link_gbps ? S * p->leaf_link_gbps : 0;
		sw->latency_us = p->hop_latency_us;
	}
	for (uint32_t h = 0; h < hosts; h++) {
		struct topo_host *hs = &t->hosts[h];
		snprintf(hs->name, TOPO_NAME_MAX, "h%u", h);
		hs->leaf = first_leaf + h / p->hosts_per_leaf;
		hs->ngpus = gph;
		hs->first_inst = h * gph;
		hs->first_nic = h * nph;
		hs->nnics = nph;
		for (uint32_t n = 0; n < nph; n++) {
			struct topo_nic *nic = &t->nics[h * nph + n];
			snprintf(nic->name, TOPO_NAME_MAX, "h%un%u", h, n);
			nic->host = h;
			nic->gbps = p->nic_gbps;
			nic->latency_us = p->hop_latency_us;
		}
		for (uint32_t g = 0; g < gph; g++)
			gpu_nic[h * gph + g] = h * nph + g / (gph / nph);
	}
	rc = nkv__topo_finish(t, gpu_nic);
	free(gpu_nic);
	if (rc) {
		nkv_topo_free(t);
		return nkv_err_wrap(rc, "fat tree");
	}
	*out = t;
	return 0;
}
