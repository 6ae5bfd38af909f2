/*
 * The run description `netkv demo` writes (DIR/run.json, format
 * netkv-demo-run/1) and `netkv sim validate --run` reads: writer and reader
 * in one file, so they cannot drift. Every key the reader uses is checked; a
 * value that cannot be used as given is an error, never cut short or dropped.
 */
#include <errno.h>
#include <math.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nkv_json_out.h"
#include "nkv_models.h" /* NKV_GPU_DEFAULT */
#include "nkv_util.h"
#include "run_desc.h"

/* A string that fits dst whole: a path cut short would name another file. */
static int get_str(json_t *x, const char *key, char *dst, size_t size, const char *name)
{
	size_t len;

	if (!x)
		return 0;
	if (!json_is_string(x) || !(len = json_string_length(x)))
		return nkv_err(EINVAL, "%s: %s: want a non-empty string", name, key);
	if (len >= size)
		return nkv_err(EINVAL, "%s: %s: longer than %zu characters", name, key, size - 1);
	memcpy(dst, json_string_value(x), len + 1);
	return 0;
}

/* An integer in lo..hi, 0 when absent. */
static int get_count(json_t *x, const char *key, json_int_t lo, json_int_t hi, uint64_t *out, const char *name)
{
	if (!x)
		return 0;
	if (!json_is_integer(x) || json_integer_value(x) < lo || json_integer_value(x) > hi)
		return nkv_err(EINVAL, "%s: %s: want an integer in %lld..%lld", name, key, (long long)lo, (long long)hi);
	*out = (uint64_t)json_integer_value(x);
	return 0;
}

static int parse(json_t *j, const char *name, const char *policy, struct nkv_run_desc *d)
{
	json_t *x, *pb;
	char *slash;
	int ret;

	if (!json_is_string(json_object_get(j, "format")) ||
	    strcmp(json_string_value(json_object_get(j, "format")), "netkv-demo-run/1"))
		return nkv_err(EINVAL, "%s: not a netkv demo run description (format netkv-demo-run/1)", name);
	if ((ret = get_str(json_object_get(j, "topology"), "topology", d->topo, sizeof(d->topo), name)) ||
	    (ret = get_str(json_object_get(j, "trace"), "trace", d->trace, sizeof(d->trace), name)) ||
	    (ret = get_str(json_object_get(j, "perf_model"), "perf_model", d->model, sizeof(d->model), name)))
		return ret;
	/* "model/gpu", as `netkv replay --perf` takes it; both parts used */
	if ((slash = strchr(d->model, '/'))) {
		*slash = 0;
		memmove(d->gpu, slash + 1, strlen(slash + 1) + 1);
		if (!d->model[0] || !d->gpu[0] || strchr(d->gpu, '/'))
			return nkv_err(EINVAL, "%s: perf_model: want MODEL or MODEL/GPU", name);
	}
	if ((x = json_object_get(j, "links_shared")) && !json_is_boolean(x))
		return nkv_err(EINVAL, "%s: links_shared: want true or false", name);
	d->shared = x ? json_is_true(x) : -1;
	if ((x = json_object_get(j, "time_scale")) &&
	    (!json_is_number(x) || !(json_number_value(x) > 0) || !(json_number_value(x) <= NKV_MAX_TIME_SCALE)))
		return nkv_err(EINVAL, "%s: time_scale: want a number > 0 and <= %g", name, NKV_MAX_TIME_SCALE);
	d->time_scale = x ? json_number_value(x) : 0;
	pb = json_object_get(j, "pool_blocks");
	if (pb && !json_is_object(pb))
		return nkv_err(EINVAL, "%s: pool_blocks: want an object {\"prefill\": N, \"decode\": N}", name);
	/* the same ranges as --prefill-cache-blocks, --decode-cache-blocks and --decode-kv-tokens */
	if ((ret = get_count(json_object_get(pb, "prefill"), "pool_blocks.prefill", 1, UINT32_MAX, &d->pool_prefill,
			     name)) ||
	    (ret = get_count(json_object_get(pb, "decode"), "pool_blocks.decode", 1, UINT32_MAX, &d->pool_decode, name)) ||
	    (ret = get_count(json_object_get(j, "block_tokens"), "block_tokens", 1, 1024, &d->block_tokens, name)))
		return ret;
	if (!d->block_tokens)
		d->block_tokens = 512;
	if ((x = json_object_get(j, "calibration")) &&
	    ((ret = get_str(json_object_get(x, "csv"), "calibration.csv", d->calib_csv, sizeof(d->calib_csv), name)) ||
	     (ret = get_str(json_object_get(x, "trace"), "calibration.trace", d->calib_trace, sizeof(d->calib_trace), name))))
		return ret;
	if (policy) {
		json_t *pols = json_object_get(j, "policies"), *pol;
		json_t *csv = json_object_get(json_object_get(pols, policy), "csv");
		char key[96];
		const char *k;

		if (!csv) {
			char known[256] = "";
			json_object_foreach(pols, k, pol)
				snprintf(known + strlen(known), sizeof(known) - strlen(known), " %s", k);
			return nkv_err(ENOENT, "%s: no policy '%s' with a CSV (it has:%s)", name, policy, known);
		}
		snprintf(key, sizeof(key), "policies.%s.csv", policy);
		if ((ret = get_str(csv, key, d->csv, sizeof(d->csv), name)))
			return ret;
		/* a run on a fabric of its own (netkv demo --control): its topology */
		snprintf(key, sizeof(key), "policies.%s.topology", policy);
		if ((ret = get_str(json_object_get(json_object_get(pols, policy), "topology"), key, d->topo, sizeof(d->topo),
				   name)))
			return ret;
		/* a run beside tenant flows (netkv demo --tenant): what they were asked to load */
		json_t *tn = json_object_get(json_object_get(pols, policy), "tenants");
		if (tn) {
			x = json_object_get(tn, "on_s");
			if (!json_is_object(tn) || !json_is_number(x) || !(json_number_value(x) >= 1e-4) ||
			    !(json_number_value(x) <= 3600))
				return nkv_err(EINVAL, "%s: policies.%s.tenants: want {\"pod\": U, \"core\": U, \"on_s\": S}, "
						       "S in 1e-4..3600", name, policy);
			d->tenant_on_s = json_number_value(x);
			snprintf(key, sizeof(key), "policies.%s.tenants.csv", policy);
			if ((ret = get_str(json_object_get(tn, "csv"), key, d->tenant_csv, sizeof(d->tenant_csv), name)))
				return ret;
			for (int t = NKV_TIER_POD; t < NKV_TIERS; t++) {
				double u = 0;
				if ((x = json_object_get(tn, nkv_tier_name(t))) &&
				    (!json_is_number(x) || !((u = json_number_value(x)) >= 0 && u < 1)))
					return nkv_err(EINVAL, "%s: policies.%s.tenants.%s: want a utilisation in [0, 1)", name,
						       policy, nkv_tier_name(t));
				d->tenant_util[t] = u;
			}
		}
	}
	return 0;
}

int nkv_run_desc_parse(const char *buf, size_t len, const char *name, const char *policy, struct nkv_run_desc *d)
{
	json_error_t je;
	json_t *j;
	int ret;

	memset(d, 0, sizeof(*d));
	d->shared = -1;
	/* a key given twice would leave one of the two values unseen */
	j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	if (!j)
		return nkv_err(EINVAL, "%s: %s (line %d)", name, je.text, je.line);
	ret = parse(j, name, policy, d);
	json_decref(j);
	return ret;
}

int nkv_run_desc_load(const char *path, const char *policy, struct nkv_run_desc *d)
{
	char *buf;
	size_t len;
	int ret;

	/* a few hundred bytes as netkv demo writes it */
	if ((ret = nkv_read_file(path, 16u << 20, &buf, &len)))
		return ret;
	ret = nkv_run_desc_parse(buf, len, path, policy, d);
	free(buf);
	return ret;
}

/* The writer: what `netkv demo` knows about its run. */
int nkv_run_desc_write(const char *path, const struct nkv_run_info *r)
{
	const char *mode = r->mode, *dir = r->dir;
	const double *link = r->link_gbps, *shaped = r->shaped_gbps;
	json_t *pol = json_object();
	for (int i = 0; i < r->npolicies; i++) {
		json_t *o = json_pack("{s:o,s:b}", "csv", json_sprintf("%s/replay-%s.csv", dir, r->policies[i]), "ok",
				      r->policy_ok[i]);
		if (r->policy_topo && r->policy_topo[i]) /* netkv demo --control: the 1:1 tree */
			json_object_set_new(o, "topology", json_string(r->policy_topo[i]));
		if (r->policy_tenants && r->policy_tenants[i]) {
			json_t *tn = json_pack("{s:f,s:o}", "on_s", r->tenant_on_s, "csv",
					       json_sprintf("%s/tenants-%s.csv", dir, r->policies[i]));
			for (int t = NKV_TIER_POD; t < NKV_TIERS; t++)
				if (r->tenant_util[t] > 0)
					json_object_set_new(tn, nkv_tier_name(t), json_real(r->tenant_util[t]));
			json_object_set_new(o, "tenants", tn);
		}
		if (!strncmp(r->policies[i], "cla*", 4))
			json_object_set_new(o, "weights", json_pack("{s:f,s:f,s:b}", "w_cache", r->w_cache, "w_load",
								    r->w_load, "tuned", r->tuned));
		json_object_set_new(pol, r->policies[i], o);
	}
	/* links_shared: on the fabric (and a real one: launch's mode "slurm")
	 * flows share links; loopback paces each path alone. Per-hop latency is
	 * not emulated in either (no netem here): what there is comes from the
	 * veth hops and the agents' loops. */
	json_t *j = json_pack("{s:s,s:s,s:s,s:b,s:b}", "format", "netkv-demo-run/1", "mode", mode, "mode_reason", r->mode_reason,
			      "links_shared", strcmp(mode, "loopback") != 0, "latency_emulated", 0);
	if (!strcmp(mode, "fabric") && !r->topo) {
		json_object_set_new(j, "scale", json_real(r->scale));
		json_object_set_new(j, "link_gbps_nominal", json_pack("{s:f,s:f,s:f}", "nic", link[0], "leaf_up", link[1],
									"spine_up", link[2]));
	} else if (r->tier_gbps) {
		json_object_set_new(j, "tier_gbps_paced", json_string(r->tier_gbps));
	}
	if (!r->topo) { /* the demo's tree, at the rates it emulated */
		json_object_set_new(j, "link_gbps_emulated", json_pack("{s:f,s:f,s:f}", "nic", shaped[0], "leaf_up",
								       shaped[1], "spine_up", shaped[2]));
		json_object_set_new(j, "tier_gbps_one_flow", json_pack("[f,f,f]", shaped[0], fmin(shaped[0], shaped[1]),
									fmin(fmin(shaped[0], shaped[1]), shaped[2])));
	}
	json_object_set_new(j, "topology", r->topo ? json_string(r->topo) : json_sprintf("%s/topo.json", dir));
	json_object_set_new(j, "prefill", json_string(r->prefill ? r->prefill : "h0g0,h0g1"));
	json_object_set_new(j, "decode", json_string(r->decode ? r->decode : "h1g0,h2g0,h4g0,h5g0"));
	json_object_set_new(j, "perf_model", json_string("llama3-8b/" NKV_GPU_DEFAULT));
	if (r->kv_model)
		json_object_set_new(j, "kv_model", json_pack("{s:s}", "name", r->kv_model));
	else
		json_object_set_new(j, "kv_model", json_pack("{s:s,s:i,s:i,s:i,s:i}", "name", "tiny", "layers", 2, "kv_heads",
							     1, "head_dim", 32, "bytes_per_token", 256));
	json_object_set_new(j, "block_tokens", json_integer(512));
	unsigned pool = r->pool_blocks ? r->pool_blocks : 512;
	json_object_set_new(j, "pool_blocks", json_pack("{s:i,s:i}", "prefill", pool, "decode", pool));
	json_object_set_new(j, "time_scale", json_real(r->time_scale));
	json_object_set_new(j, "trace", json_string(r->trace));
	json_object_set_new(j, "requests", json_integer(r->requests));
	json_object_set_new(j, "speed", json_real(r->speed));
	json_object_set_new(j, "slo", json_pack("{s:f,s:f}", "ttft_s", 2 * r->time_scale, "tbt_mean_s", 0.1 * r->time_scale));
	json_object_set_new(j, "policies", pol);
	if (r->calibration)
		json_object_set_new(j, "calibration", json_pack("{s:o,s:o}", "csv", json_sprintf("%s/replay-%s.csv", dir,
							r->calibration), "trace", json_sprintf("%s/%s-trace.jsonl", dir, r->calibration)));
	json_object_set_new(j, "meta", nkv_json_meta()); /* version, host, time, command line; the reader skips it */
	int rc = json_dump_file(j, path, NKV_JSON_FLAGS) ? nkv_err(EIO, "cannot write %s", path) : 0;
	json_decref(j);
	return rc;
}
