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
