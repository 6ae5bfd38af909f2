/*
 * The operator's own per-path figures (instead of, or beside, netkv's
 * probes): a JSON document of measured throughput per path. Validated as
 * a whole before anything is applied.
 */
#include "sched_internal.h"

#include "nkv_util.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct fig {
	uint32_t si, di;
	double bw, lat, t;
	bool has_lat;
};

static int endpoint(const struct nkv_oracle *o, json_t *v, size_t i, const char *key, uint32_t *inst)
{
	if (json_is_string(v)) {
		int r = nkv_topo_find(o->topo, json_string_value(v));

		if (r < 0)
			return nkv_err(EINVAL, "figures: paths[%zu].%s: no instance named '%s'", i, key,
				       json_string_value(v));
		*inst = (uint32_t)r;
		return 0;
	}
	if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) < (json_int_t)o->ninst) {
		*inst = (uint32_t)json_integer_value(v);
		return 0;
	}
	return nkv_err(EINVAL, "figures: paths[%zu].%s must be an instance name or an index below %u", i, key,
		       o->ninst);
}

static int number(json_t *v, double *out)
{
	if (!json_is_number(v))
		return -1;
	*out = json_number_value(v);
	return isfinite(*out) ? 0 : -1;
}

int nkv_oracle_parse_figures(struct nkv_oracle *o, const char *json, size_t len, double now)
{
	json_error_t je;
	json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je), *arr;
	struct fig *f = NULL;
	size_t n;
	int ret = 0;

	if (!root)
		return nkv_err(EINVAL, "figures: not JSON: %s (line %d column %d)", je.text, je.line, je.column);
	arr = json_object_get(root, "paths");
	if (!json_is_object(root) || !json_is_array(arr)) {
		ret = nkv_err(EINVAL, "figures: expected {\"paths\": [...]}");
		goto out;
	}
	n = json_array_size(arr);
	f = calloc(n ? n : 1, sizeof(*f));
	if (!f) {
		ret = nkv_err(ENOMEM, "figures: out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(arr, i), *v;
		uint32_t p, d;
		double age = 0;

		if (!json_is_object(e)) {
			ret = nkv_err(EINVAL, "figures: paths[%zu] is not an object", i);
			goto out;
		}
		if ((ret = endpoint(o, json_object_get(e, "src"), i, "src", &p)) ||
		    (ret = endpoint(o, json_object_get(e, "dst"), i, "dst", &d)))
			goto out;
		if (o->src_map[p] == NO_IDX || o->dst_map[d] == NO_IDX || p == d) {
			ret = nkv_err(EINVAL, "figures: paths[%zu]: %u -> %u is not a path the oracle keeps", i, p, d);
			goto out;
		}
		f[i].si = o->src_map[p];
		f[i].di = o->dst_map[d];
		if (number(json_object_get(e, "bytes_per_s"), &f[i].bw) || !(f[i].bw > 0)) {
			ret = nkv_err(EINVAL, "figures: paths[%zu].bytes_per_s must be a number > 0", i);
			goto out;
		}
		v = json_object_get(e, "latency_s");
		if (v) {
			if (number(v, &f[i].lat) || f[i].lat < 0 || f[i].lat > 10) {
				ret = nkv_err(EINVAL, "figures: paths[%zu].latency_s must be a number in 0 .. 10", i);
				goto out;
			}
			f[i].has_lat = true;
		}
		v = json_object_get(e, "age_s");
		if (v && (number(v, &age) || age < 0)) {
			ret = nkv_err(EINVAL, "figures: paths[%zu].age_s must be a number >= 0", i);
			goto out;
		}
		f[i].t = now - age;
	}
	for (size_t i = 0; i < n; i++) {
		size_t idx = (size_t)f[i].si * o->ndst + f[i].di;

		if (f[i].has_lat)
			o->paths[idx].lat = f[i].lat;
		o->cold[idx].sh_bw = f[i].bw;
		o->cold[idx].sh_t = f[i].t;
		nkv__oracle_publish(o, idx); /* at once, no refresh wait */
	}
	ret = (int)n;
out:
	free(f);
	json_decref(root);
	return ret;
}

int nkv_oracle_load_figures(struct nkv_oracle *o, const char *path, double now)
{
	char *buf;
	size_t len;
	int ret = nkv_read_file(path, (size_t)64 << 20, &buf, &len);

	if (ret)
		return nkv_err_wrap(EINVAL, "figures");
	ret = nkv_oracle_parse_figures(o, buf, len, now);
	free(buf);
	if (ret < 0)
		nkv_err_wrap(-ret, "%s", path);
	return ret;
}
