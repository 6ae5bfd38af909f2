/*
 * The per-candidate queries. Everything is precomputed by nkv__topo_finish();
 * these only index arrays, walk at most three switch levels and allocate
 * nothing.
 */
#include "topo_model.h"
#include "nkv_util.h"

#include <errno.h>
#include <math.h>
#include <string.h>

const char *nkv_tier_name(int tier)
{
	static const char *const names[NKV_TIERS] = { "host", "leaf", "pod", "core" };
	return tier >= 0 && tier < NKV_TIERS ? names[tier] : "?";
}

const char *nkv_topo_name(const struct nkv_topo *t)
{
	return t->name;
}

uint32_t nkv_topo_instances(const struct nkv_topo *t)
{
	return t->ninsts;
}

uint32_t nkv_topo_hosts(const struct nkv_topo *t)
{
	return t->nhosts;
}

int nkv_topo_instance(const struct nkv_topo *t, uint32_t inst, struct nkv_instance_info *out)
{
	if (inst >= t->ninsts)
		return nkv_err(EINVAL, "instance %u beyond topology of %u", inst, t->ninsts);
	const struct topo_inst *in = &t->insts[inst];
	const struct topo_host *h = &t->hosts[in->host];
	out->name = in->name;
	out->host_name = h->name;
	out->nic_name = t->nics[in->nic].name;
	out->host = in->host;
	out->gpu = in->gpu;
	out->nic = in->nic - h->first_nic;
	out->leaf = t->switches[in->leaf].ord;
	out->pod = in->spine == TOPO_NONE ? 0 : t->switches[in->spine].ord;
	return 0;
}

int nkv_topo_find(const struct nkv_topo *t, const char *name)
{
	for (uint32_t i = 0; i < t->ninsts; i++)
		if (!strcmp(t->insts[i].name, name))
			return (int)i;
	return nkv_err(ENOENT, "no instance named '%s'", name);
}

int nkv_topo_tier(const struct nkv_topo *t, uint32_t a, uint32_t b)
{
	if (a >= t->ninsts || b >= t->ninsts)
		return nkv_err(EINVAL, "instance %u beyond topology of %u", a >= t->ninsts ? a : b, t->ninsts);
	const struct topo_inst *x = &t->insts[a], *y = &t->insts[b];
	if (x->host == y->host)
		return NKV_TIER_HOST;
	if (x->leaf == y->leaf)
		return NKV_TIER_LEAF;
	if (x->spine == y->spine)
		return NKV_TIER_POD;
	return NKV_TIER_CORE;
}

uint32_t nkv_topo_links(const struct nkv_topo *t)
{
	return t->nlinks;
}

int nkv_topo_link(const struct nkv_topo *t, uint32_t link, struct nkv_link_info *out)
{
	if (link >= t->nlinks)
		return nkv_err(EINVAL, "link %u beyond topology of %u links", link, t->nlinks);
	const struct topo_link *l = &t->links[link];
	out->name = l->name;
	out->tier = l->tier;
	out->bytes_per_s = l->Bps;
	out->share_bytes_per_s = l->share_Bps;
	out->latency_s = l->latency_s;
	return 0;
}

int nkv_topo_path(const struct nkv_topo *t, uint32_t a, uint32_t b, uint32_t links[NKV_MAX_PATH])
{
	int tier = nkv_topo_tier(t, a, b), n = 0;

	if (tier < 0)
		return tier;
	if (a == b)
		return 0;
	const struct topo_inst *x = &t->insts[a], *y = &t->insts[b];
	if (tier == NKV_TIER_HOST) {
		links[n++] = x->nvl_out;
		links[n++] = y->nvl_in;
		return n;
	}
	links[n++] = t->nics[x->nic].link_up;
	if (tier >= NKV_TIER_POD)
		links[n++] = t->switches[x->leaf].link_up;
	if (tier == NKV_TIER_CORE) {
		links[n++] = t->switches[x->spine].link_up;
		links[n++] = t->switches[y->spine].link_down;
	}
	if (tier >= NKV_TIER_POD)
		links[n++] = t->switches[y->leaf].link_down;
	links[n++] = t->nics[y->nic].link_down;
	return n;
}

/* which: 0 capacity, 1 loaded share, 2 latency sum */
static double fold(const struct nkv_topo *t, uint32_t a, uint32_t b, int which)
{
	uint32_t p[NKV_MAX_PATH];
	int n = nkv_topo_path(t, a, b, p);
	double v = which == 2 ? 0 : INFINITY;

	if (n < 0)
		return n;
	for (int i = 0; i < n; i++) {
		const struct topo_link *l = &t->links[p[i]];
		if (which == 0)
			v = fmin(v, l->Bps);
		else if (which == 1)
			v = fmin(v, l->share_Bps);
		else
			v += l->latency_s;
	}
	return v;
}

double nkv_topo_path_bw(const struct nkv_topo *t, uint32_t a, uint32_t b)
{
	return fold(t, a, b, 0);
}

double nkv_topo_path_bw_loaded(const struct nkv_topo *t, uint32_t a, uint32_t b)
{
	return fold(t, a, b, 1);
}

double nkv_topo_path_latency(const struct nkv_topo *t, uint32_t a, uint32_t b)
{
	return fold(t, a, b, 2);
}

double nkv_topo_tier_bw(const struct nkv_topo *t, int tier)
{
	if (tier < 0 || tier >= NKV_TIERS)
		return nkv_err(EINVAL, "tier %d out of range", tier);
	return t->tier_bw[tier];
}

double nkv_topo_tier_latency(const struct nkv_topo *t, int tier)
{
	if (tier < 0 || tier >= NKV_TIERS)
		return nkv_err(EINVAL, "tier %d out of range", tier);
	return t->tier_lat[tier];
}

int nkv_topo_ecmp(const struct nkv_topo *t, uint32_t *spines_per_pod, uint32_t *cores_per_spine)
{
	if (!t->ecmp_spines)
		return 0;
	if (spines_per_pod)
		*spines_per_pod = t->ecmp_spines;
	if (cores_per_spine)
		*cores_per_spine = t->ecmp_cores;
	return 1;
}

uint64_t nkv_topo_ecmp_hash(uint32_t a, uint32_t b, uint64_t flow, int stage)
{
	/* splitmix64 over the identity, as a switch hashes the 5-tuple with a
	 * per-stage seed: flows between the same pair with other ids spread. */
	uint64_t z = ((uint64_t)a << 32 | b) ^ (flow * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)(unsigned)stage << 56);

	z += 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	z ^= z >> 31;
	z = (z ^ (z >> 33)) * 0xff51afd7ed558ccdull; /* a second round: nearby ids differ in every bit */
	return z ^ (z >> 33);
}

int nkv_topo_path_ecmp(const struct nkv_topo *t, uint32_t a, uint32_t b, uint64_t flow, uint32_t links[NKV_MAX_PATH])
{
	int tier = nkv_topo_tier(t, a, b), n = 0;

	if (tier < 0)
		return tier;
	if (!t->ecmp_spines)
		return nkv_err(EINVAL, "topology %s declares no ECMP fabric (spines per pod, cores per spine)", t->name);
	if (tier < NKV_TIER_POD)
		return nkv_topo_path(t, a, b, links);
	const struct topo_inst *x = &t->insts[a], *y = &t->insts[b];
	uint32_t S = t->ecmp_spines, C = t->ecmp_cores;
	uint32_t j = (uint32_t)(nkv_topo_ecmp_hash(a, b, flow, 1) % S);

	links[n++] = t->nics[x->nic].link_up;
	links[n++] = t->switches[x->leaf].ecmp_first + 2 * j;
	if (tier == NKV_TIER_CORE) {
		uint32_t m = j * C + (uint32_t)(nkv_topo_ecmp_hash(a, b, flow, 2) % C);
		links[n++] = t->switches[x->spine].ecmp_first + 2 * m;
		links[n++] = t->switches[y->spine].ecmp_first + 2 * m + 1;
	}
	links[n++] = t->switches[y->leaf].ecmp_first + 2 * j + 1;
	links[n++] = t->nics[y->nic].link_down;
	return n;
}

int nkv_topo_link_bundle(const struct nkv_topo *t, uint32_t link)
{
	if (link >= t->nlinks)
		return nkv_err(EINVAL, "link %u beyond topology of %u links", link, t->nlinks);
	return t->bundle ? (int)t->bundle[link] : (int)link;
}
