/*
 * Validating and deriving a topology: whoever fills a struct nkv_topo (the
 * fat-tree generator, the JSON reader) ends with nkv__topo_finish(), so every
 * structural rule lives here once.
 */
#include "topo_model.h"
#include "nkv_util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct nkv_topo *nkv__topo_alloc(uint32_t nhosts, uint32_t nnics, uint32_t nswitches, uint32_t ninsts)
{
	struct nkv_topo *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->nhosts = nhosts;
	t->nnics = nnics;
	t->nswitches = nswitches;
	t->ninsts = ninsts;
	t->hosts = calloc(nhosts ? nhosts : 1, sizeof(*t->hosts));
	t->nics = calloc(nnics ? nnics : 1, sizeof(*t->nics));
	t->switches = calloc(nswitches ? nswitches : 1, sizeof(*t->switches));
	t->insts = calloc(ninsts ? ninsts : 1, sizeof(*t->insts));
	/* 2 NVLink links per GPU, 2 per NIC, 2 per switch uplink at most. */
	t->links = calloc(2 * ((size_t)ninsts + nnics + nswitches) + 1, sizeof(*t->links));
	if (!t->hosts || !t->nics || !t->switches || !t->insts || !t->links) {
		nkv_topo_free(t);
		return NULL;
	}
	return t;
}

void nkv_topo_free(struct nkv_topo *t)
{
	if (!t)
		return;
	free(t->hosts);
	free(t->nics);
	free(t->switches);
	free(t->insts);
	free(t->links);
	free(t->bundle);
	free(t);
}

/* Names become namespace and file names in the emulated fabric: keep them plain. */
bool nkv__topo_valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n >= TOPO_NAME_MAX - 8)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      *s == '-' || *s == '_' || *s == '.'))
			return false;
	return true;
}

const char *nkv__topo_switch_tier_name(int tier)
{
	return tier == SW_LEAF ? "leaf" : tier == SW_SPINE ? "spine" : tier == SW_CORE ? "core" : "?";
}

int nkv__topo_parse_ratio(const char *s, double *out)
{
	char buf[64];
	const char *colon = strchr(s, ':');
	double num, den = 1;

	if (strlen(s) >= sizeof(buf))
		return nkv_err(EINVAL, "oversubscription '%.20s...' too long", s);
	snprintf(buf, sizeof(buf), "%s", s);
	if (colon)
		buf[colon - s] = '\0';
	if ((colon && (nkv_parse_double(colon + 1, &den) || !(den > 0))) || nkv_parse_double(buf, &num) ||
	    !(num / den > 0) || !isfinite(num / den))
		return nkv_err(EINVAL, "oversubscription '%s' is not N:M with N, M > 0 (such as 2:1)", s);
	*out = num / den;
	return 0;
}

static bool nonneg(double v)
{
	return isfinite(v) && v >= 0;
}

static bool latency_ok(double us)
{
	return nonneg(us) && us <= TOPO_MAX_LATENCY_US;
}

/* A link rate in Gb/s (or NVLink GB/s) within what a real link can be. */
static bool rate_ok(double gbps, double max)
{
	return isfinite(gbps) && gbps >= TOPO_MIN_GBPS && gbps <= max;
}

struct name_ref {
	const char *name;
	const char *kind;
};

static int cmp_ref(const void *a, const void *b)
{
	return strcmp(((const struct name_ref *)a)->name, ((const struct name_ref *)b)->name);
}

/* One namespace for hosts, NICs, switches and instances: sort and look for neighbours. */
static int check_unique(const struct nkv_topo *t)
{
	size_t n = (size_t)t->nhosts + t->nnics + t->nswitches + t->ninsts, k = 0;
	struct name_ref *r = malloc((n ? n : 1) * sizeof(*r));
	int rc = 0;

	if (!r)
		return nkv_err(ENOMEM, "out of memory");
	for (uint32_t i = 0; i < t->nhosts; i++)
		r[k++] = (struct name_ref){ t->hosts[i].name, "host" };
	for (uint32_t i = 0; i < t->nnics; i++)
		r[k++] = (struct name_ref){ t->nics[i].name, "NIC" };
	for (uint32_t i = 0; i < t->nswitches; i++)
		r[k++] = (struct name_ref){ t->switches[i].name, "switch" };
	for (uint32_t i = 0; i < t->ninsts; i++)
		r[k++] = (struct name_ref){ t->insts[i].name, "GPU instance" };
	qsort(r, n, sizeof(*r), cmp_ref);
	for (size_t i = 1; i < n; i++)
		if (!strcmp(r[i - 1].name, r[i].name)) {
			rc = nkv_err(EINVAL, "duplicate name '%s' (%s and %s)", r[i].name, r[i - 1].kind, r[i].kind);
			break;
		}
	free(r);
	return rc;
}

static int check_switches(struct nkv_topo *t)
{
	uint32_t ord[4] = { 0 };

	for (uint32_t i = 0; i < t->nswitches; i++) {
		struct topo_switch *s = &t->switches[i];

		if (!nkv__topo_valid_name(s->name))
			return nkv_err(EINVAL, "switch name '%s': use 1..55 of [A-Za-z0-9._-]", s->name);
		if (s->tier < SW_LEAF || s->tier > SW_CORE)
			return nkv_err(EINVAL, "switch %s: bad tier %d", s->name, s->tier);
		if (s->up != TOPO_NONE && s->up >= t->nswitches)
			return nkv_err(EINVAL, "switch %s: uplink index %u out of range", s->name, s->up);
		s->ord = ord[s->tier]++;
	}
	/* Cycles first, so that a loop is reported as a loop and not as a tier mistake. */
	for (uint32_t i = 0; i < t->nswitches; i++) {
		uint32_t cur = i, steps = 0;

		while (cur != TOPO_NONE) {
			cur = t->switches[cur].up;
			if (++steps > t->nswitches) {
				char chain[256];
				int off = 0;

				cur = i;
				for (uint32_t k = 0; k <= t->nswitches && off < (int)sizeof(chain) - 70; k++) {
					off += snprintf(chain + off, sizeof(chain) - (size_t)off, "%s%s",
							k ? " -> " : "", t->switches[cur].name);
					cur = t->switches[cur].up;
					if (cur == i) {
						snprintf(chain + off, sizeof(chain) - (size_t)off, " -> %s", t->switches[i].name);
						break;
					}
				}
				return nkv_err(EINVAL, "cycle in switch uplinks: %s", chain);
			}
		}
	}
	for (uint32_t i = 0; i < t->nswitches; i++) {
		struct topo_switch *s = &t->switches[i];

		if (s->up == TOPO_NONE)
			continue;
		if (t->switches[s->up].tier != s->tier + 1)
			return nkv_err(EINVAL, "switch %s (%s): uplink %s must be a %s switch, not a %s switch",
				       s->name, nkv_tier_name(s->tier), t->switches[s->up].name,
				       nkv__topo_switch_tier_name(s->tier + 1), nkv__topo_switch_tier_name(t->switches[s->up].tier));
		if (!nonneg(s->up_gbps) || !nonneg(s->oversub) || !nonneg(s->latency_us))
			return nkv_err(EINVAL, "switch %s: bandwidth, oversubscription and latency must be finite and >= 0",
				       s->name);
		if (!latency_ok(s->latency_us))
			return nkv_err(EINVAL, "switch %s: uplink latency %g us beyond %g us", s->name, s->latency_us,
				       TOPO_MAX_LATENCY_US);
		if (s->up_gbps == 0 && s->oversub == 0)
			return nkv_err(EINVAL, "switch %s: uplink needs a bandwidth (uplink_gbps) or an oversubscription",
				       s->name);
		if (s->oversub != 0 && s->oversub < 1e-6)
			return nkv_err(EINVAL, "switch %s: zero oversubscription", s->name);
	}
	return 0;
}

static uint32_t root_of(const struct nkv_topo *t, uint32_t sw)
{
	while (t->switches[sw].up != TOPO_NONE)
		sw = t->switches[sw].up;
	return sw;
}

static uint32_t add_link(struct nkv_topo *t, int tier, double gbps_or_Bps, bool is_gbps, uint32_t fanin,
			 double latency_us, const char *from, const char *to)
{
	struct topo_link *l = &t->links[t->nlinks];

	snprintf(l->name, sizeof(l->name), "%s>%s", from, to);
	l->tier = tier;
	l->Bps = is_gbps ? gbps_or_Bps * 1e9 / 8 : gbps_or_Bps;
	l->share_Bps = l->Bps / (fanin ? fanin : 1);
	l->latency_s = latency_us * 1e-6;
	return t->nlinks++;
}

static void tier_figures(struct nkv_topo *t)
{
	double nic_bw = INFINITY, leaf_bw = INFINITY, spine_bw = INFINITY;
	double nic_lat = 0, leaf_lat = 0, spine_lat = 0;
	bool multi_host_leaf = false, multi_leaf_spine = false, multi_spine_core = false;
	uint32_t *below = calloc(t->nswitches ? t->nswitches : 1, sizeof(*below));

	for (uint32_t i = 0; i < t->nnics; i++)
		if (t->nics[i].ngpus) {
			const struct topo_link *l = &t->links[t->nics[i].link_up];
			nic_bw = fmin(nic_bw, l->share_Bps);
			nic_lat = fmax(nic_lat, l->latency_s);
		}
	/* Count children per switch to know which tiers actually occur. */
	if (below) {
		for (uint32_t h = 0; h < t->nhosts; h++)
			below[t->hosts[h].leaf]++;
		for (uint32_t i = 0; i < t->nswitches; i++)
			if (t->switches[i].up != TOPO_NONE)
				below[t->switches[i].up]++;
		for (uint32_t i = 0; i < t->nswitches; i++) {
			if (below[i] < 2)
				continue;
			if (t->switches[i].tier == SW_LEAF)
				multi_host_leaf = true;
			else if (t->switches[i].tier == SW_SPINE)
				multi_leaf_spine = true;
			else
				multi_spine_core = true;
		}
		free(below);
	}
	for (uint32_t i = 0; i < t->nswitches; i++) {
		const struct topo_switch *s = &t->switches[i];
		if (s->up == TOPO_NONE)
			continue;
		const struct topo_link *l = &t->links[s->link_up];
		if (s->tier == SW_LEAF) {
			leaf_bw = fmin(leaf_bw, l->share_Bps);
			leaf_lat = fmax(leaf_lat, l->latency_s);
		} else {
			spine_bw = fmin(spine_bw, l->share_Bps);
			spine_lat = fmax(spine_lat, l->latency_s);
		}
	}
	t->tier_bw[0] = t->intra_GBps * 1e9;
	t->tier_lat[0] = 2 * t->intra_latency_us * 1e-6;
	t->tier_bw[1] = multi_host_leaf ? nic_bw : 0;
	t->tier_lat[1] = multi_host_leaf ? 2 * nic_lat : 0;
	t->tier_bw[2] = multi_leaf_spine ? fmin(nic_bw, leaf_bw) : 0;
	t->tier_lat[2] = multi_leaf_spine ? 2 * (nic_lat + leaf_lat) : 0;
	t->tier_bw[3] = multi_spine_core ? fmin(fmin(nic_bw, leaf_bw), spine_bw) : 0;
	t->tier_lat[3] = multi_spine_core ? 2 * (nic_lat + leaf_lat + spine_lat) : 0;
}

/* The ECMP member links after the aggregated ones (topo_model.h), and every
 * link's bundle. A spine switch of the model is a pod's spine layer: spine
 * j of the pod is named spine.j, core c of plane j core.j.c. */
static int ecmp_links(struct nkv_topo *t)
{
	uint32_t S = t->ecmp_spines, C = t->ecmp_cores, nagg = t->nlinks;
	size_t extra = 0;

	free(t->bundle);
	t->bundle = NULL;
	if (!S && !C) {
		if (!(t->bundle = malloc((nagg ? nagg : 1) * sizeof(*t->bundle))))
			return nkv_err(ENOMEM, "out of memory");
		for (uint32_t l = 0; l < nagg; l++)
			t->bundle[l] = l;
		return 0;
	}
	if (S < 1 || S > TOPO_MAX_ECMP || C < 1 || C > TOPO_MAX_ECMP)
		return nkv_err(EINVAL, "ECMP: %u spines per pod and %u cores per spine plane, need 1..%u each", S, C,
			       TOPO_MAX_ECMP);
	for (uint32_t i = 0; i < t->nswitches; i++)
		if (t->switches[i].up != TOPO_NONE)
			extra += 2 * (size_t)(t->switches[i].tier == SW_LEAF ? S : S * C);
	if (extra > (size_t)UINT32_MAX / 2 - nagg)
		return nkv_err(EINVAL, "ECMP: too many member links (%zu)", extra);
	struct topo_link *nl = realloc(t->links, (nagg + extra + 1) * sizeof(*nl));
	if (!nl)
		return nkv_err(ENOMEM, "ECMP: out of memory for %zu member links", extra);
	t->links = nl;
	if (!(t->bundle = malloc((nagg + extra + 1) * sizeof(*t->bundle))))
		return nkv_err(ENOMEM, "out of memory");
	for (uint32_t l = 0; l < nagg; l++)
		t->bundle[l] = l;
	for (uint32_t i = 0; i < t->nswitches; i++) {
		struct topo_switch *s = &t->switches[i];
		uint32_t m = s->tier == SW_LEAF ? S : S * C;
		char a[TOPO_NAME_MAX], b[TOPO_NAME_MAX];

		if (s->up == TOPO_NONE)
			continue;
		s->ecmp_first = t->nlinks;
		for (uint32_t k = 0; k < m; k++) {
			const char *up = t->switches[s->up].name;
			if (s->tier == SW_LEAF) {
				snprintf(a, sizeof(a), "%s", s->name);
				snprintf(b, sizeof(b), "%.50s.%u", up, k);
			} else {
				snprintf(a, sizeof(a), "%.50s.%u", s->name, k / C);
				snprintf(b, sizeof(b), "%.44s.%u.%u", up, k / C, k % C);
			}
			uint32_t fan = s->gpus_below / m ? s->gpus_below / m : 1;
			uint32_t u = add_link(t, s->tier + 1, s->up_gbps / m, true, fan, s->latency_us, a, b);
			uint32_t d = add_link(t, s->tier + 1, s->up_gbps / m, true, fan, s->latency_us, b, a);
			t->bundle[u] = s->link_up;
			t->bundle[d] = s->link_down;
		}
	}
	return 0;
}

int nkv__topo_finish(struct nkv_topo *t, const uint32_t *gpu_nic)
{
	uint32_t inst = 0, root = TOPO_NONE;
	int rc;

	if (t->nhosts == 0)
		return nkv_err(EINVAL, "topology has no hosts");
	if (t->nhosts > TOPO_MAX_HOSTS || t->nswitches > TOPO_MAX_SWITCHES || t->ninsts > TOPO_MAX_INSTANCES)
		return nkv_err(EINVAL, "topology of %u hosts, %u switches, %u GPUs: at most %u, %u, %u", t->nhosts,
			       t->nswitches, t->ninsts, TOPO_MAX_HOSTS, TOPO_MAX_SWITCHES, TOPO_MAX_INSTANCES);
	if (!(t->intra_GBps > 0))
		return nkv_err(EINVAL, "intra-host bandwidth must be > 0 (got %g GB/s)", t->intra_GBps);
	if (!rate_ok(t->intra_GBps, TOPO_MAX_GBPS))
		return nkv_err(EINVAL, "intra-host bandwidth %g GB/s outside %g .. %g", t->intra_GBps, TOPO_MIN_GBPS,
			       TOPO_MAX_GBPS);
	if (!latency_ok(t->intra_latency_us))
		return nkv_err(EINVAL, "intra-host latency must be in 0 .. %g us (got %g)", TOPO_MAX_LATENCY_US,
			       t->intra_latency_us);
	rc = check_switches(t);
	if (rc)
		return rc;

	for (uint32_t h = 0; h < t->nhosts; h++) {
		struct topo_host *hs = &t->hosts[h];

		if (!nkv__topo_valid_name(hs->name))
			return nkv_err(EINVAL, "host name '%s': use 1..55 of [A-Za-z0-9._-]", hs->name);
		if (hs->leaf >= t->nswitches || t->switches[hs->leaf].tier != SW_LEAF)
			return nkv_err(EINVAL, "host %s: must hang off a leaf switch", hs->name);
		if (hs->ngpus == 0)
			return nkv_err(EINVAL, "host %s: has no GPUs", hs->name);
		if (hs->nnics == 0)
			return nkv_err(EINVAL, "host %s: has no NICs", hs->name);
		if (hs->ngpus > TOPO_MAX_GPUS_PER_HOST || hs->nnics > TOPO_MAX_NICS_PER_HOST)
			return nkv_err(EINVAL, "host %s: %u GPUs and %u NICs, at most %u and %u", hs->name, hs->ngpus,
				       hs->nnics, TOPO_MAX_GPUS_PER_HOST, TOPO_MAX_NICS_PER_HOST);
		if (hs->first_inst != inst || hs->first_nic > t->nnics || hs->nnics > t->nnics - hs->first_nic)
			return nkv_err(EINVAL, "host %s: inconsistent GPU/NIC ranges", hs->name);
		inst += hs->ngpus;
		if (root == TOPO_NONE)
			root = root_of(t, hs->leaf);
		else if (root_of(t, hs->leaf) != root)
			return nkv_err(EINVAL, "host %s is not connected to host %s: their switches top out at %s and %s",
				       hs->name, t->hosts[0].name, t->switches[root_of(t, hs->leaf)].name,
				       t->switches[root].name);
		for (uint32_t n = hs->first_nic; n < hs->first_nic + hs->nnics; n++) {
			struct topo_nic *nic = &t->nics[n];

			if (nic->host != h)
				return nkv_err(EINVAL, "NIC %s: listed under host %s but belongs elsewhere", nic->name, hs->name);
			if (!nkv__topo_valid_name(nic->name))
				return nkv_err(EINVAL, "NIC name '%s': use 1..55 of [A-Za-z0-9._-]", nic->name);
			if (!(nic->gbps > 0))
				return nkv_err(EINVAL, "NIC %s: bandwidth must be > 0 (got %g Gb/s)", nic->name, nic->gbps);
			if (!rate_ok(nic->gbps, TOPO_MAX_GBPS))
				return nkv_err(EINVAL, "NIC %s: bandwidth %g Gb/s outside %g .. %g", nic->name, nic->gbps,
					       TOPO_MIN_GBPS, TOPO_MAX_GBPS);
			if (!latency_ok(nic->latency_us))
				return nkv_err(EINVAL, "NIC %s: latency must be in 0 .. %g us (got %g)", nic->name,
					       TOPO_MAX_LATENCY_US, nic->latency_us);
			nic->ngpus = 0;
		}
	}
	if (inst != t->ninsts)
		return nkv_err(EINVAL, "GPU count mismatch (%u listed, %u allocated)", inst, t->ninsts);
	/* Every switch must be in use and connected to the same tree. */
	for (uint32_t i = 0; i < t->nswitches; i++)
		if (root_of(t, i) != root)
			return nkv_err(EINVAL, "switch %s is not connected to the hosts' tree (its top is %s, theirs %s)",
				       t->switches[i].name, t->switches[root_of(t, i)].name, t->switches[root].name);

	/* Instances and the NIC serving each GPU. */
	for (uint32_t h = 0; h < t->nhosts; h++) {
		const struct topo_host *hs = &t->hosts[h];

		for (uint32_t g = 0; g < hs->ngpus; g++) {
			struct topo_inst *in = &t->insts[hs->first_inst + g];
			uint32_t nic = gpu_nic[hs->first_inst + g];

			if (nic == TOPO_NONE)
				return nkv_err(EINVAL, "host %s: GPU %u has no NIC (list it in a NIC's \"gpus\")", hs->name, g);
			if (nic < hs->first_nic || nic >= hs->first_nic + hs->nnics)
				return nkv_err(EINVAL, "host %s: GPU %u is served by a NIC of another host", hs->name, g);
			snprintf(in->name, sizeof(in->name), "%.55sg%u", hs->name, g);
			in->host = h;
			in->gpu = g;
			in->nic = nic;
			in->leaf = hs->leaf;
			in->spine = t->switches[hs->leaf].up;
			in->core = in->spine == TOPO_NONE ? TOPO_NONE : t->switches[in->spine].up;
			t->nics[nic].ngpus++;
		}
	}
	rc = check_unique(t);
	if (rc)
		return rc;

	/* Capacities bottom-up: leaves sum their NICs, spines their leaves' uplinks. */
	for (uint32_t i = 0; i < t->nswitches; i++) {
		t->switches[i].down_gbps = 0;
		t->switches[i].gpus_below = 0;
	}
	for (uint32_t n = 0; n < t->nnics; n++) {
		struct topo_switch *leaf = &t->switches[t->hosts[t->nics[n].host].leaf];
		leaf->down_gbps += t->nics[n].gbps;
		leaf->gpus_below += t->nics[n].ngpus;
	}
	for (int tier = SW_LEAF; tier <= SW_SPINE; tier++)
		for (uint32_t i = 0; i < t->nswitches; i++) {
			struct topo_switch *s = &t->switches[i];

			if (s->tier != tier || s->up == TOPO_NONE)
				continue;
			if (s->down_gbps <= 0)
				return nkv_err(EINVAL, "switch %s: nothing below it", s->name);
			if (s->up_gbps == 0) {
				s->up_gbps = s->down_gbps / s->oversub;
			} else if (s->oversub != 0) {
				double want = s->down_gbps / s->oversub;
				if (fabs(want - s->up_gbps) > 1e-3 * want)
					return nkv_err(EINVAL, "switch %s: uplink %g Gb/s disagrees with oversubscription %g:1 "
						       "of %g Gb/s below (%g Gb/s); give one of the two",
						       s->name, s->up_gbps, s->oversub, s->down_gbps, want);
			}
			if (!rate_ok(s->up_gbps, TOPO_MAX_UPLINK_GBPS))
				return nkv_err(EINVAL, "switch %s: uplink %g Gb/s outside %g .. %g (%g Gb/s below, "
					       "oversubscription %g)", s->name, s->up_gbps, TOPO_MIN_GBPS, TOPO_MAX_UPLINK_GBPS,
					       s->down_gbps, s->oversub);
			s->oversub = s->down_gbps / s->up_gbps;
			t->switches[s->up].down_gbps += s->up_gbps;
			t->switches[s->up].gpus_below += s->gpus_below;
		}
	for (uint32_t i = 0; i < t->nswitches; i++)
		if (t->switches[i].down_gbps <= 0)
			return nkv_err(EINVAL, "switch %s: nothing below it", t->switches[i].name);

	/* Links. */
	t->nlinks = 0;
	for (uint32_t i = 0; i < t->ninsts; i++) {
		struct topo_inst *in = &t->insts[i];
		in->nvl_out = add_link(t, 0, t->intra_GBps * 1e9, false, 1, t->intra_latency_us, in->name, "nvl");
		in->nvl_in = add_link(t, 0, t->intra_GBps * 1e9, false, 1, t->intra_latency_us, "nvl", in->name);
	}
	for (uint32_t n = 0; n < t->nnics; n++) {
		struct topo_nic *nic = &t->nics[n];
		const char *leaf = t->switches[t->hosts[nic->host].leaf].name;
		nic->link_up = add_link(t, 1, nic->gbps, true, nic->ngpus, nic->latency_us, nic->name, leaf);
		nic->link_down = add_link(t, 1, nic->gbps, true, nic->ngpus, nic->latency_us, leaf, nic->name);
	}
	for (uint32_t i = 0; i < t->nswitches; i++) {
		struct topo_switch *s = &t->switches[i];
		if (s->up == TOPO_NONE) {
			s->link_up = s->link_down = TOPO_NONE;
			continue;
		}
		const char *up = t->switches[s->up].name;
		s->link_up = add_link(t, s->tier + 1, s->up_gbps, true, s->gpus_below, s->latency_us, s->name, up);
		s->link_down = add_link(t, s->tier + 1, s->up_gbps, true, s->gpus_below, s->latency_us, up, s->name);
	}
	tier_figures(t);
	return ecmp_links(t);
}
