/*
 * Tenant traffic: other tenants' flows that load a tier of the fabric to a
 * target mean utilisation, switching on and off, instead of elephants that
 * never end (--bg). Why: a fabric shared with other jobs is busy in bursts;
 * a scheduler that reads stale telemetry should meet that, and the load
 * should be a stated utilisation, not whatever N infinite flows get.
 *
 * Model: one source per link of the tier (each direction; in ECMP mode the
 * member links, else the aggregated ones). A source alternates on and off
 * periods drawn from exponentials of means on_s and on_s x (1 - U) / U, so
 * it is on a share U of the time; while on it is one flow over that link
 * alone, capped at the link's capacity: alone it fills the link, beside KV
 * flows it takes its max-min share. Its traffic enters and leaves the link
 * from outside the modelled GPUs, so loading one tier does not load the
 * others. Each source starts in its stationary state (on with probability
 * U, the period left drawn afresh: exponentials are memoryless), from a
 * generator seeded with the run's seed, so runs repeat exactly.
 *
 * Or scheduled (nkv__sim_tenants_sched): one source per given (link, on
 * period), on from start to end and never again: the tenant flows a demo
 * run measured, replayed as they were by `netkv sim validate`.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "netkv_sim.h"
#include "nkv_util.h"
#include "sim_internal.h"

struct tenant_src {
	uint32_t link;
	double cap, util;
	int flow;               /* -1 while off */
	bool started;
	double t_on, t_off;     /* scheduled: the one on period (t_on < 0: random source) */
};

struct sim_tenants {
	struct tenant_src *src;
	uint32_t n;
	double on_s;
	uint64_t rng;
};

int nkv_sim_tenant_parse(const char *s, int *tier, double *util)
{
	const char *colon = strchr(s, ':');
	int k;

	if (!colon || colon == s)
		return nkv_err(EINVAL, "want TIER:UTIL, such as core:0.5");
	for (k = 1; k < NKV_TIERS; k++) {
		const char *n = nkv_tier_name(k);
		if (strlen(n) == (size_t)(colon - s) && !strncmp(s, n, strlen(n)))
			break;
	}
	if (k == NKV_TIERS)
		return nkv_err(EINVAL, "tier must be leaf, pod or core");
	if (nkv_parse_double(colon + 1, util) || !(*util > 0 && *util < 1))
		return nkv_err(EINVAL, "utilisation must be a number in (0, 1)");
	*tier = k;
	return 0;
}

static double expo(uint64_t *s, double mean)
{
	return -mean * log(nkv_unit01(s));
}

int nkv__sim_tenants_create(const struct nkv_topo *t, bool ecmp, const double util[NKV_TIERS], double on_s,
			    uint64_t seed, struct sim_tenants **out)
{
	struct sim_tenants *ts;
	uint32_t nl = nkv_topo_links(t), n = 0, per_tier[NKV_TIERS] = { 0 };

	*out = NULL;
	if (!(on_s >= 1e-4 && on_s <= 3600))
		return nkv_err(EINVAL, "tenants: mean on period %g s outside 1e-4 .. 3600 s", on_s);
	if (util[NKV_TIER_HOST] != 0)
		return nkv_err(EINVAL, "tenants: no tenant traffic on NVLink (tier host); use leaf, pod or core");
	for (int k = 0; k < NKV_TIERS; k++)
		if (!(util[k] >= 0 && util[k] < 1))
			return nkv_err(EINVAL, "tenants: %s utilisation %g outside [0, 1)", nkv_tier_name(k), util[k]);
	if (!(ts = calloc(1, sizeof(*ts))) || !(ts->src = calloc(nl ? nl : 1, sizeof(*ts->src)))) {
		free(ts);
		return nkv_err(ENOMEM, "tenants: out of memory");
	}
	for (uint32_t l = 0; l < nl; l++) {
		struct nkv_link_info li;
		int b = nkv_topo_link_bundle(t, l);

		if (nkv_topo_link(t, l, &li) < 0 || b < 0 || li.tier < 1 || li.tier >= NKV_TIERS || !(util[li.tier] > 0))
			continue;
		/* NIC links are their own bundle in both modes; above, ECMP uses the members. */
		bool member = (uint32_t)b != l;
		if (li.tier >= NKV_TIER_POD && member != ecmp)
			continue;
		ts->src[n++] = (struct tenant_src){ .link = l, .cap = li.bytes_per_s, .util = util[li.tier], .flow = -1,
						    .t_on = -1 };
		per_tier[li.tier]++;
	}
	for (int k = 1; k < NKV_TIERS; k++) {
		if (util[k] > 0 && !per_tier[k]) {
			nkv__sim_tenants_free(ts);
			return nkv_err(EINVAL, "tenants: the topology has no %s-tier links to load", nkv_tier_name(k));
		}
	}
	ts->n = n;
	ts->on_s = on_s;
	ts->rng = seed ^ 0x74656e616e747321ull; /* its own stream: other draws stay as they were */
	if (!ts->rng)
		ts->rng = 1;
	*out = ts;
	return 0;
}

int nkv__sim_tenants_sched(const struct nkv_topo *t, const struct nkv_sim_tenant_on *on, size_t n,
			   struct sim_tenants **out)
{
	struct sim_tenants *ts;

	*out = NULL;
	if (n > UINT32_MAX)
		return nkv_err(E2BIG, "tenants: %zu on periods", n);
	if (!(ts = calloc(1, sizeof(*ts))) || !(ts->src = calloc(n ? n : 1, sizeof(*ts->src)))) {
		free(ts);
		return nkv_err(ENOMEM, "tenants: out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		struct nkv_link_info li;
		if (nkv_topo_link(t, on[i].link, &li) < 0 || !(on[i].start_s >= 0) || !(on[i].end_s > on[i].start_s) ||
		    !isfinite(on[i].end_s)) {
			nkv__sim_tenants_free(ts);
			return nkv_err(EINVAL, "tenants: on period %zu: link %u, %g .. %g s", i, on[i].link, on[i].start_s,
				       on[i].end_s);
		}
		ts->src[i] = (struct tenant_src){ .link = on[i].link, .cap = li.bytes_per_s, .flow = -1,
						  .t_on = on[i].start_s, .t_off = on[i].end_s };
	}
	ts->n = (uint32_t)n;
	*out = ts;
	return 0;
}

double nkv__sim_tenant_first(const struct sim_tenants *ts, uint32_t i, double now)
{
	return i < ts->n && ts->src[i].t_on >= 0 ? fmax(now, ts->src[i].t_on) : now;
}

uint32_t nkv__sim_tenants_count(const struct sim_tenants *ts)
{
	return ts ? ts->n : 0;
}

int nkv__sim_tenant_toggle(struct sim_tenants *ts, uint32_t i, struct nkv_flownet *net, double now, int *flow,
			   double *next)
{
	struct tenant_src *s;
	bool on;
	int ret;

	if (i >= ts->n)
		return nkv_err(EINVAL, "tenants: source %u of %u", i, ts->n);
	s = &ts->src[i];
	if (s->t_on >= 0)
		on = !s->started; /* scheduled: on once, then off for good */
	else
		on = s->started ? s->flow < 0 : nkv_unit01(&ts->rng) < s->util;
	s->started = true;
	if (s->flow >= 0) {
		if ((ret = nkv_flownet_remove(net, s->flow, now)))
			return ret;
		s->flow = -1;
	}
	if (on) {
		int f = nkv_flownet_add_links(net, &s->link, 1, UINT64_MAX, 0, now);
		if (f < 0)
			return f;
		if ((ret = nkv_flownet_set_cap(net, f, s->cap, now))) {
			nkv_flownet_remove(net, f, now);
			return ret;
		}
		s->flow = f;
	}
	*flow = s->flow;
	if (s->t_on >= 0)
		*next = on ? fmax(now, s->t_off) : INFINITY;
	else
		*next = now + expo(&ts->rng, on ? ts->on_s : ts->on_s * (1 - s->util) / s->util);
	return 0;
}

void nkv__sim_tenants_free(struct sim_tenants *ts)
{
	if (!ts)
		return;
	free(ts->src);
	free(ts);
}
