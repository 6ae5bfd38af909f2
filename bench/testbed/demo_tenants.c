/*
 * `netkv demo --tenant TIER:UTIL`: real tenant flows on the emulated fabric's
 * pod and core tiers while a policy replays (the flows are tenant_flows.c).
 * Here: which switches exchange them (siblings under one parent, so each
 * loaded uplink carries one tenant flow each way and no NIC carries any),
 * starting them as children of the policy's cluster, and reading back what
 * they carried, so the table states the utilisation achieved, not only the
 * one asked for.
 */
#include "demo_tenants.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "fabric.h"
#include "nkv_util.h"
#include "tenant_flows.h"

int nkv__demo_tenants_plan(struct demo_tenants *dt, const char *topo, const char *prefix)
{
	struct nkv_topo *t;
	int rc;

	dt->n = 0;
	if ((rc = nkv_topo_load(topo, &t)))
		return rc;
	for (uint32_t l = 0; l < nkv_topo_links(t) && !rc; l++) {
		struct nkv_link_info li;
		char a[32], b[32], addr[16], up[32];
		const char *gt;

		if (nkv_topo_link(t, l, &li) < 0 || li.tier < NKV_TIER_POD || !(dt->util[li.tier] > 0) ||
		    nkv_topo_link_bundle(t, l) != (int)l || !(gt = strchr(li.name, '>')) ||
		    (size_t)(gt - li.name) >= sizeof(a) || strlen(gt + 1) >= sizeof(b))
			continue;
		snprintf(a, sizeof(a), "%.*s", (int)(gt - li.name), li.name);
		snprintf(b, sizeof(b), "%s", gt + 1);
		/* the up direction: a's uplink ends at b */
		if (nkv_fabric_link_addr(prefix, a, addr, sizeof(addr), up, sizeof(up)) || strcmp(up, b))
			continue;
		if (dt->n == DEMO_MAX_TENANTS) {
			rc = nkv_err(E2BIG, "tenants: more than %d switches to load", DEMO_MAX_TENANTS);
			break;
		}
		snprintf(dt->ep[dt->n].sw, sizeof(dt->ep[0].sw), "%s", a);
		snprintf(dt->ep[dt->n].self, sizeof(dt->ep[0].self), "%s", addr);
		snprintf(dt->ep[dt->n].parent, sizeof(dt->ep[0].parent), "%s", b);
		dt->ep[dt->n].tier = li.tier;
		dt->ep[dt->n].link_Bps = li.bytes_per_s;
		dt->n++;
	}
	nkv_topo_free(t);
	for (int i = 0; i < dt->n && !rc; i++) {
		int j = (i + 1) % dt->n;
		while (j != i && strcmp(dt->ep[j].parent, dt->ep[i].parent))
			j = (j + 1) % dt->n;
		if (j == i)
			rc = nkv_err(EINVAL, "tenants: %s has no sibling under %s to exchange %s-tier traffic with",
				     dt->ep[i].sw, dt->ep[i].parent, nkv_tier_name(dt->ep[i].tier));
		else
			snprintf(dt->ep[i].peer, sizeof(dt->ep[0].peer), "%s", dt->ep[j].self),
			snprintf(dt->ep[i].peer_sw, sizeof(dt->ep[0].peer_sw), "%s", dt->ep[j].sw);
	}
	for (int k = NKV_TIER_POD; k < NKV_TIERS && !rc; k++) {
		bool seen = false;
		for (int i = 0; i < dt->n; i++)
			seen |= dt->ep[i].tier == k;
		if (dt->util[k] > 0 && !seen)
			rc = nkv_err(EINVAL, "tenants: the fabric has no %s-tier switch links to load", nkv_tier_name(k));
	}
	return rc;
}

int nkv__demo_tenants_start(struct demo_tenants *dt, struct cluster *c, const char *prefix, const char *logdir,
			    uint64_t seed, double max_s)
{
	for (int i = 0; i < dt->n; i++) {
		char util[32], on[32], sd[32], mx[32], log[320];
		snprintf(util, sizeof(util), "%g", dt->util[dt->ep[i].tier]);
		snprintf(on, sizeof(on), "%g", dt->on_s);
		snprintf(sd, sizeof(sd), "%llu", (unsigned long long)(seed + 7919u * (unsigned)i));
		snprintf(mx, sizeof(mx), "%g", max_s);
		snprintf(dt->ep[i].result, sizeof(dt->ep[0].result), "%s/tenant-%s.txt", logdir, dt->ep[i].sw);
		snprintf(log, sizeof(log), "%s/tenant-%s.log", logdir, dt->ep[i].sw);
		remove(dt->ep[i].result);
		char *argv[] = { "", "tenant", dt->ep[i].self, dt->ep[i].peer, util, on, sd, mx, dt->ep[i].result, NULL };
		int rc = nkv__cluster_spawn(c, dt->ep[i].sw, log, prefix, dt->ep[i].sw, argv, nkv__tenant_flow_main);
		if (rc)
			return nkv_err_wrap(-rc, "tenant flow from %s", dt->ep[i].sw);
	}
	return 0;
}

void nkv__demo_tenants_measured(const struct demo_tenants *dt, double util[NKV_TIERS], double on[NKV_TIERS])
{
	double cap[NKV_TIERS] = { 0 };
	int n[NKV_TIERS] = { 0 };
	for (int k = 0; k < NKV_TIERS; k++)
		util[k] = on[k] = 0;
	for (int i = 0; i < dt->n; i++) {
		FILE *f = fopen(dt->ep[i].result, "r");
		unsigned long long bytes;
		double el, on_s;
		int k = dt->ep[i].tier;
		char line[128];
		bool got = false;
		while (f && fgets(line, sizeof(line), f))
			got = sscanf(line, "total %llu %lf %lf", &bytes, &el, &on_s) == 3 && el > 0;
		if (got) {
			util[k] += (double)bytes / el;
			on[k] += on_s / el;
			cap[k] += dt->ep[i].link_Bps;
			n[k]++;
		}
		if (f)
			fclose(f);
	}
	for (int k = 0; k < NKV_TIERS; k++) {
		util[k] = n[k] ? util[k] / cap[k] : -1;
		on[k] = n[k] ? on[k] / n[k] : -1;
	}
}

int nkv__demo_tenants_schedule(const struct demo_tenants *dt, double t0, const char *csv)
{
	FILE *out = fopen(csv, "w");
	int rc = 0;

	if (!out)
		return nkv_err(errno, "%s: %s", csv, strerror(errno));
	fprintf(out, "link,start_s,end_s\n");
	for (int i = 0; i < dt->n; i++) {
		FILE *f = fopen(dt->ep[i].result, "r");
		char line[128];
		double a, b;
		if (!f) {
			rc = nkv_err(ENOENT, "%s: no tenant result", dt->ep[i].result);
			continue;
		}
		/* the flow from sw to its peer crosses sw's uplink up and the peer's down */
		while (fgets(line, sizeof(line), f))
			if (sscanf(line, "on %lf %lf", &a, &b) == 2 && b > a)
				fprintf(out, "%s>%s,%.6f,%.6f\n%s>%s,%.6f,%.6f\n", dt->ep[i].sw, dt->ep[i].parent, a - t0,
					b - t0, dt->ep[i].parent, dt->ep[i].peer_sw, a - t0, b - t0);
		fclose(f);
	}
	if (fclose(out))
		rc = nkv_err(EIO, "%s: write failed", csv);
	return rc;
}
