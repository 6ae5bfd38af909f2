/*
 * The run description `netkv demo` writes (DIR/run.json, format
 * netkv-demo-run/1), as `netkv sim validate --run` reads it. Every key it
 * uses is checked; a value that cannot be used as given is an error, never
 * cut short or dropped.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nkv_util.h"
#include "sim_cli.h"

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
