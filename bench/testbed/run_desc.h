/*
 * The run description `netkv demo` (and `netkv launch finish`) writes beside its records (DIR/run.json,
 * format netkv-demo-run/1) and `netkv sim validate --run` reads: how the
 * run was emulated (mode, link rates, time scale, models, pools), so the
 * simulator can replay it. The writer and the reader live in run_desc.c.
 */
#ifndef NKV_RUN_DESC_H
#define NKV_RUN_DESC_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "netkv_topo.h"

/* A run.json time_scale (and sim validate --time-scale) above this leaves a
 * run's timeline far behind: compute x 1000. */
#define NKV_MAX_TIME_SCALE 1000.0

/* What the demo knows about one run, for nkv_run_desc_write. */
struct nkv_run_info {
	const char *mode, *mode_reason;  /* "fabric" | "loopback", and why */
	double scale;                    /* fabric: nominal / emulated */
	double link_gbps[3];             /* fabric: nominal nic, leaf_up, spine_up */
	double shaped_gbps[3];           /* emulated (shaped or paced) nic, leaf_up, spine_up */
	const char *tier_gbps;           /* loopback: --tier-gbps as given */
	double time_scale;
	const char *trace;
	unsigned requests;
	double speed;
	bool tuned;                      /* cla* weights from nkv_cla_tune */
	double w_cache, w_load;
	const char *dir;                 /* the work dir: replay-POLICY.csv, topo.json */
	int npolicies;
	const char *const *policies;     /* names, npolicies of them */
	const bool *policy_ok;           /* did each policy's run succeed */
	/* `netkv launch` (NULL / 0 = the demo's): the roles (comma-separated
	 * instances), the agents' --model and --blocks, the topology file */
	const char *prefill, *decode, *kv_model, *topo;
	unsigned pool_blocks;
	const char *calibration;         /* NULL, or the run name of the calibration pushes (demo_calib.c) */
	const bool *policy_tenants;      /* NULL, or: did each run meet tenant flows */
	const char *const *policy_topo;  /* NULL, or per run: its own topology file (NULL entry: "topology") */
	double tenant_util[NKV_TIERS], tenant_on_s; /* what they were asked to load (--tenant) */
};
/* Write DIR/run.json. 0 or -errno (nkv_last_error). */
int nkv_run_desc_write(const char *path, const struct nkv_run_info *r);

/* What `netkv demo` wrote about its run (DIR/run.json, format
 * netkv-demo-run/1), for `netkv sim validate --run`. Absent keys leave ""
 * or 0 (shared -1, block_tokens 512); policy (may be NULL) picks the CSV (and
 * the topology, where that run had its own: demo --control). */
struct nkv_run_desc {
	char topo[1024], trace[1024], csv[1024];
	char model[32], gpu[32];         /* perf_model "MODEL/GPU" */
	double time_scale;
	int shared;                      /* links_shared, -1 unknown */
	uint64_t pool_prefill, pool_decode, block_tokens;
	double tenant_util[NKV_TIERS], tenant_on_s; /* the policy's run met tenants (0: none) */
	char tenant_csv[1024];           /* their on periods as they were (demo_tenants.c), "" when none */
	char calib_csv[1024], calib_trace[1024]; /* the calibration pushes ("" when none) */
};
int nkv_run_desc_load(const char *path, const char *policy, struct nkv_run_desc *d);
/* The same from memory; name is used in error messages. */
int nkv_run_desc_parse(const char *buf, size_t len, const char *name, const char *policy, struct nkv_run_desc *d);

#endif
