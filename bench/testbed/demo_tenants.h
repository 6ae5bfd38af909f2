/* `netkv demo --tenant`: which switches exchange tenant traffic, starting
 * those flows beside a policy's cluster, and what they achieved (demo_tenants.c). */
#ifndef NKV_DEMO_TENANTS_H
#define NKV_DEMO_TENANTS_H

#include <stdint.h>

#include "cluster.h"
#include "netkv_topo.h"

#define DEMO_MAX_TENANTS 8

struct demo_tenants {
	double util[NKV_TIERS], on_s;  /* asked: per tier (pod, core), mean on period */
	int n;
	struct {
		char sw[32], peer_sw[32], parent[32], self[16], peer[16], result[320];
		int tier;
		double link_Bps;       /* shaped capacity of the links it loads */
	} ep[DEMO_MAX_TENANTS];
};

/* Every switch whose uplink is in a loaded tier sends to the next switch
 * under the same parent (a ring: leaf0 <-> leaf1 loads the pod links between
 * them both ways). topo is the topology as emulated; prefix the fabric's. */
int nkv__demo_tenants_plan(struct demo_tenants *dt, const char *topo, const char *prefix);
/* Fork one endpoint per switch into its namespace as children of c (stopped
 * with it); results go to logdir/tenant-SW.txt. Same seed, same schedule. */
int nkv__demo_tenants_start(struct demo_tenants *dt, struct cluster *c, const char *prefix, const char *logdir,
			    uint64_t seed, double max_s);
/* After the cluster stopped: per tier, what the tenants carried / (sources x
 * link capacity x time), and the share of time they were on; -1 where no
 * source of that tier reported. */
void nkv__demo_tenants_measured(const struct demo_tenants *dt, double util[NKV_TIERS], double on[NKV_TIERS]);
/* The on periods the tenants had, as CSV "link,start_s,end_s" (link names of
 * the topology, times from t0 = the replay's start, CLOCK_MONOTONIC), for
 * `netkv sim validate` to replay them. */
int nkv__demo_tenants_schedule(const struct demo_tenants *dt, double t0, const char *csv);

#endif
