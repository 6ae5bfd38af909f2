/*
 * Topology files: JSON read and written with jansson. Format
 * ("netkv-topology/1", see topo/README.md):
 *
 * { "format": "netkv-topology/1", "name": "fat-tree-64",
 *   "intra_host": { "GBps": 450, "latency_us": 1 },
 *   "switches": [ { "name": "core0", "tier": "core" },
 *                 { "name": "spine0", "tier": "spine", "uplink": "core0",
 *                   "oversub": "2:1", "latency_us": 0.5 },     (or "uplink_gbps")
 *                 { "name": "leaf0", "tier": "leaf", "uplink": "spine0", ... } ],
 *   "hosts": [ { "name": "h0", "leaf": "leaf0", "gpus": 8,
 *                "nics": [ { "name": "h0n0", "gbps": 400, "latency_us": 0.5,
 *                            "gpus": [0] }, ... ] } ] }
 *
 * Everything read here is untrusted: every field is type- and range-checked,
 * unknown keys are rejected (a typo must not silently become a default),
 * and the structural rules are left to nkv__topo_finish().
 */
#include "topo_model.h"
#include "nkv_util.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FORMAT "netkv-topology/1"
#define MAX_HOSTS TOPO_MAX_HOSTS
#define MAX_SWITCHES TOPO_MAX_SWITCHES
#define MAX_GPUS_PER_HOST TOPO_MAX_GPUS_PER_HOST
#define MAX_NICS_PER_HOST TOPO_MAX_NICS_PER_HOST
#define MAX_INSTANCES TOPO_MAX_INSTANCES
#define MAX_FILE ((size_t)256 << 20)
#define DEFAULT_HOP_US 0.5

static int check_keys(json_t *obj, const char *where, const char *const *allowed)
{
	const char *key;
	json_t *v;

	if (!json_is_object(obj))
		return nkv_err(EINVAL, "%s: expected an object", where);
	json_object_foreach(obj, key, v) {
		const char *const *a = allowed;
		while (*a && strcmp(*a, key))
			a++;
		if (!*a)
			return nkv_err(EINVAL, "%s: unknown key \"%s\"", where, key);
	}
	return 0;
}

static int get_string(json_t *obj, const char *key, const char *where, bool required, const char **out)
{
	json_t *v = json_object_get(obj, key);

	*out = NULL;
	if (!v)
		return required ? nkv_err(EINVAL, "%s: missing \"%s\"", where, key) : 0;
	if (!json_is_string(v))
		return nkv_err(EINVAL, "%s: \"%s\" must be a string", where, key);
	*out = json_string_value(v);
	if (strlen(*out) != json_string_length(v))
		return nkv_err(EINVAL, "%s: \"%s\" contains a NUL byte", where, key);
	return 0;
}

/* The required "name" of a switch, host or NIC, checked and copied. */
static int get_name(json_t *obj, const char *where, char name[TOPO_NAME_MAX])
{
	const char *s;
	int rc = get_string(obj, "name", where, true, &s);

	if (rc)
		return rc;
	if (!nkv__topo_valid_name(s))
		return nkv_err(EINVAL, "%s: name \"%.60s\": use 1..55 of [A-Za-z0-9._-]", where, s);
	snprintf(name, TOPO_NAME_MAX, "%s", s);
	return 0;
}

/* A finite number >= 0; *out keeps dflt when the key is absent. */
static int get_number(json_t *obj, const char *key, const char *where, double *out)
{
	json_t *v = json_object_get(obj, key);

	if (!v)
		return 0;
	if (!json_is_number(v))
		return nkv_err(EINVAL, "%s: \"%s\" must be a number", where, key);
	*out = json_number_value(v);
	if (!isfinite(*out) || *out < 0)
		return nkv_err(EINVAL, "%s: \"%s\" must be a finite number >= 0 (got %g)", where, key, *out);
	return 0;
}

static int get_count(json_t *v, const char *what, const char *where, uint32_t max, uint32_t *out)
{
	if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > (json_int_t)max)
		return nkv_err(EINVAL, "%s: %s must be an integer in 0..%u", where, what, max);
	*out = (uint32_t)json_integer_value(v);
	return 0;
}

/* "2:1", "4" or a number. */
static int get_oversub(json_t *obj, const char *where, double *out)
{
	json_t *v = json_object_get(obj, "oversub");

	*out = 0;
	if (!v)
		return 0;
	if (json_is_number(v)) {
		*out = json_number_value(v);
	} else if (json_is_string(v)) {
		if (nkv__topo_parse_ratio(json_string_value(v), out))
			return nkv_err_wrap(EINVAL, "%s", where);
	} else {
		return nkv_err(EINVAL, "%s: \"oversub\" must be a number or \"N:M\"", where);
	}
	if (!isfinite(*out) || *out <= 0)
		return nkv_err(EINVAL, "%s: oversubscription must be > 0", where);
	return 0;
}

struct sw_index {
	const char *name;
	uint32_t idx;
};

static int cmp_sw(const void *a, const void *b)
{
	return strcmp(((const struct sw_index *)a)->name, ((const struct sw_index *)b)->name);
}

static uint32_t lookup(const struct sw_index *ix, uint32_t n, const char *name)
{
	struct sw_index key = { name, 0 };
	const struct sw_index *hit = bsearch(&key, ix, n, sizeof(*ix), cmp_sw);
	return hit ? hit->idx : TOPO_NONE;
}

static int tier_of(const char *s)
{
	if (!strcmp(s, "leaf"))
		return SW_LEAF;
	if (!strcmp(s, "spine"))
		return SW_SPINE;
	if (!strcmp(s, "core"))
		return SW_CORE;
	return 0;
}

static int parse_doc(json_t *root, struct nkv_topo **out)
{
	static const char *const root_keys[] = { "format", "name", "intra_host", "ecmp", "switches", "hosts", NULL };
	static const char *const ecmp_keys[] = { "spines_per_pod", "cores_per_spine", NULL };
	static const char *const intra_keys[] = { "GBps", "latency_us", NULL };
	static const char *const sw_keys[] = { "name", "tier", "uplink", "uplink_gbps", "oversub", "latency_us", NULL };
	static const char *const host_keys[] = { "name", "leaf", "gpus", "nics", NULL };
	static const char *const nic_keys[] = { "name", "gbps", "latency_us", "gpus", NULL };
	json_t *switches, *hosts, *v;
	const char *s;
	uint32_t nsw, nh, nnics = 0, ninst = 0;
	struct nkv_topo *t = NULL;
	struct sw_index *ix = NULL;
	uint32_t *gpu_nic = NULL;
	char where[160];
	int rc;

	rc = check_keys(root, "topology", root_keys);
	if (rc)
		return rc;
	rc = get_string(root, "format", "topology", false, &s);
	if (rc)
		return rc;
	if (s && strcmp(s, FORMAT))
		return nkv_err(EINVAL, "topology: format \"%.40s\" is not \"" FORMAT "\"", s);
	switches = json_object_get(root, "switches");
	hosts = json_object_get(root, "hosts");
	if (!json_is_array(switches))
		return nkv_err(EINVAL, "topology: \"switches\" must be an array");
	if (!json_is_array(hosts) || json_array_size(hosts) == 0)
		return nkv_err(EINVAL, "topology: \"hosts\" must be a non-empty array");
	if (json_array_size(switches) == 0)
		return nkv_err(EINVAL, "topology: \"switches\" needs at least one leaf switch");
	if (json_array_size(switches) > MAX_SWITCHES || json_array_size(hosts) > MAX_HOSTS)
		return nkv_err(EINVAL, "topology: more than %u switches or %u hosts", MAX_SWITCHES, MAX_HOSTS);
	nsw = (uint32_t)json_array_size(switches);
	nh = (uint32_t)json_array_size(hosts);

	/* First pass over hosts: sizes, so one allocation fits all. */
	for (uint32_t h = 0; h < nh; h++) {
		json_t *ho = json_array_get(hosts, h), *nics;
		uint32_t g;

		snprintf(where, sizeof(where), "hosts[%u]", h);
		rc = check_keys(ho, where, host_keys);
		if (rc)
			return rc;
		v = json_object_get(ho, "gpus");
		if (!v)
			return nkv_err(EINVAL, "%s: missing \"gpus\"", where);
		rc = get_count(v, "\"gpus\"", where, MAX_GPUS_PER_HOST, &g);
		if (rc)
			return rc;
		nics = json_object_get(ho, "nics");
		if (!json_is_array(nics))
			return nkv_err(EINVAL, "%s: \"nics\" must be an array", where);
		if (json_array_size(nics) > MAX_NICS_PER_HOST)
			return nkv_err(EINVAL, "%s: more than %u NICs", where, MAX_NICS_PER_HOST);
		nnics += (uint32_t)json_array_size(nics);
		ninst += g;
		if (ninst > MAX_INSTANCES)
			return nkv_err(EINVAL, "topology: more than %u GPUs in all", MAX_INSTANCES);
	}

	t = nkv__topo_alloc(nh, nnics, nsw, ninst);
	ix = calloc(nsw, sizeof(*ix));
	gpu_nic = malloc(sizeof(*gpu_nic) * (ninst ? ninst : 1));
	if (!t || !ix || !gpu_nic) {
		rc = nkv_err(ENOMEM, "topology: out of memory");
		goto fail;
	}
	for (uint32_t i = 0; i < ninst; i++)
		gpu_nic[i] = TOPO_NONE;

	rc = get_string(root, "name", "topology", false, &s);
	if (rc)
		goto fail;
	if (s) {
		/* Printed on terminals and written back: whole (no cut UTF-8) and no control characters. */
		size_t n = strlen(s);
		bool ctl = false;

		for (size_t i = 0; i < n; i++)
			ctl |= (unsigned char)s[i] < 0x20 || s[i] == 0x7f;
		if (n == 0 || n >= sizeof(t->name) || ctl) {
			rc = nkv_err(EINVAL, "topology: \"name\" must be 1..%zu bytes without control characters",
				     sizeof(t->name) - 1);
			goto fail;
		}
	}
	snprintf(t->name, sizeof(t->name), "%s", s ? s : "unnamed");
	t->intra_GBps = 450;
	t->intra_latency_us = 1;
	v = json_object_get(root, "intra_host");
	if (v) {
		rc = check_keys(v, "intra_host", intra_keys);
		if (!rc)
			rc = get_number(v, "GBps", "intra_host", &t->intra_GBps);
		if (!rc)
			rc = get_number(v, "latency_us", "intra_host", &t->intra_latency_us);
		if (rc)
			goto fail;
	}
	/* Multipath: "ecmp": { "spines_per_pod": S, "cores_per_spine": C }, both 1..64. */
	v = json_object_get(root, "ecmp");
	if (v) {
		json_t *sp = json_object_get(v, "spines_per_pod"), *cp = json_object_get(v, "cores_per_spine");

		rc = json_is_object(v) ? check_keys(v, "ecmp", ecmp_keys)
				       : nkv_err(EINVAL, "topology: \"ecmp\" must be an object");
		if (!rc && !sp)
			rc = nkv_err(EINVAL, "ecmp: missing \"spines_per_pod\"");
		if (!rc)
			rc = get_count(sp, "\"spines_per_pod\"", "ecmp", TOPO_MAX_ECMP, &t->ecmp_spines);
		t->ecmp_cores = 1;
		if (!rc && cp)
			rc = get_count(cp, "\"cores_per_spine\"", "ecmp", TOPO_MAX_ECMP, &t->ecmp_cores);
		if (!rc && (!t->ecmp_spines || !t->ecmp_cores))
			rc = nkv_err(EINVAL, "ecmp: spines_per_pod and cores_per_spine must be 1..%u", TOPO_MAX_ECMP);
		if (rc)
			goto fail;
	}

	/* Switches: names first (for references), then fields. */
	for (uint32_t i = 0; i < nsw; i++) {
		json_t *so = json_array_get(switches, i);
		snprintf(where, sizeof(where), "switches[%u]", i);
		rc = check_keys(so, where, sw_keys);
		if (!rc)
			rc = get_name(so, where, t->switches[i].name);
		if (rc)
			goto fail;
		ix[i] = (struct sw_index){ t->switches[i].name, i };
	}
	qsort(ix, nsw, sizeof(*ix), cmp_sw);
	for (uint32_t i = 1; i < nsw; i++)
		if (!strcmp(ix[i - 1].name, ix[i].name)) {
			rc = nkv_err(EINVAL, "duplicate switch name '%s'", ix[i].name);
			goto fail;
		}
	for (uint32_t i = 0; i < nsw; i++) {
		json_t *so = json_array_get(switches, i);
		struct topo_switch *sw = &t->switches[i];

		snprintf(where, sizeof(where), "switch %s", sw->name);
		rc = get_string(so, "tier", where, true, &s);
		if (rc)
			goto fail;
		sw->tier = tier_of(s);
		if (!sw->tier) {
			rc = nkv_err(EINVAL, "%s: tier \"%.20s\" is not leaf, spine or core", where, s);
			goto fail;
		}
		rc = get_string(so, "uplink", where, false, &s);
		if (rc)
			goto fail;
		sw->up = TOPO_NONE;
		if (s) {
			sw->up = lookup(ix, nsw, s);
			if (sw->up == TOPO_NONE) {
				rc = nkv_err(EINVAL, "%s: uplink \"%.60s\" is not a known switch", where, s);
				goto fail;
			}
		}
		sw->latency_us = DEFAULT_HOP_US;
		rc = get_number(so, "uplink_gbps", where, &sw->up_gbps);
		if (!rc)
			rc = get_oversub(so, where, &sw->oversub);
		if (!rc)
			rc = get_number(so, "latency_us", where, &sw->latency_us);
		if (rc)
			goto fail;
		if (json_object_get(so, "uplink_gbps") && sw->up_gbps == 0) {
			rc = nkv_err(EINVAL, "%s: zero uplink bandwidth", where);
			goto fail;
		}
		if (!s && (json_object_get(so, "uplink_gbps") || json_object_get(so, "oversub"))) {
			rc = nkv_err(EINVAL, "%s: uplink bandwidth/oversubscription given but no \"uplink\"", where);
			goto fail;
		}
	}

	/* Hosts and their NICs. */
	uint32_t nic = 0, inst = 0;
	for (uint32_t h = 0; h < nh; h++) {
		json_t *ho = json_array_get(hosts, h), *nics = json_object_get(ho, "nics");
		struct topo_host *hs = &t->hosts[h];

		snprintf(where, sizeof(where), "hosts[%u]", h);
		rc = get_name(ho, where, hs->name);
		if (rc)
			goto fail;
		snprintf(where, sizeof(where), "host %.60s", hs->name);
		rc = get_string(ho, "leaf", where, true, &s);
		if (rc)
			goto fail;
		hs->leaf = lookup(ix, nsw, s);
		if (hs->leaf == TOPO_NONE) {
			rc = nkv_err(EINVAL, "%s: leaf \"%.60s\" is not a known switch", where, s);
			goto fail;
		}
		hs->ngpus = (uint32_t)json_integer_value(json_object_get(ho, "gpus"));
		hs->first_inst = inst;
		hs->first_nic = nic;
		hs->nnics = (uint32_t)json_array_size(nics);
		for (uint32_t k = 0; k < hs->nnics; k++, nic++) {
			json_t *no = json_array_get(nics, k), *gl;
			struct topo_nic *n = &t->nics[nic];
			char nwhere[320];
			size_t gi;

			snprintf(nwhere, sizeof(nwhere), "%.160s nics[%u]", where, k);
			rc = check_keys(no, nwhere, nic_keys);
			if (!rc)
				rc = get_name(no, nwhere, n->name);
			if (rc)
				goto fail;
			snprintf(nwhere, sizeof(nwhere), "%.160s NIC %.63s", where, n->name);
			n->host = h;
			n->latency_us = DEFAULT_HOP_US;
			if (!json_object_get(no, "gbps")) {
				rc = nkv_err(EINVAL, "%s: missing \"gbps\"", nwhere);
				goto fail;
			}
			rc = get_number(no, "gbps", nwhere, &n->gbps);
			if (!rc)
				rc = get_number(no, "latency_us", nwhere, &n->latency_us);
			if (rc)
				goto fail;
			if (n->gbps == 0) {
				rc = nkv_err(EINVAL, "%s: zero bandwidth", nwhere);
				goto fail;
			}
			gl = json_object_get(no, "gpus");
			if (!json_is_array(gl)) {
				rc = nkv_err(EINVAL, "%s: \"gpus\" must be an array of GPU indexes", nwhere);
				goto fail;
			}
			json_array_foreach(gl, gi, v) {
				uint32_t g;
				rc = get_count(v, "a GPU index", nwhere, MAX_GPUS_PER_HOST, &g);
				if (rc)
					goto fail;
				if (g >= hs->ngpus) {
					rc = nkv_err(EINVAL, "%s: GPU %u does not exist (host has %u)", nwhere, g, hs->ngpus);
					goto fail;
				}
				if (gpu_nic[inst + g] != TOPO_NONE) {
					rc = nkv_err(EINVAL, "%s: GPU %u is already served by NIC %s", nwhere, g,
						     t->nics[gpu_nic[inst + g]].name);
					goto fail;
				}
				gpu_nic[inst + g] = nic;
			}
		}
		inst += hs->ngpus;
	}
	rc = nkv__topo_finish(t, gpu_nic);
	if (rc)
		goto fail;
	free(ix);
	free(gpu_nic);
	*out = t;
	return 0;
fail:
	free(ix);
	free(gpu_nic);
	nkv_topo_free(t);
	return rc;
}

int nkv_topo_parse(const char *json, size_t len, struct nkv_topo **out)
{
	json_error_t jerr;
	json_t *root;
	int rc;

	*out = NULL;
	root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root)
		return nkv_err(EINVAL, "not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
	rc = parse_doc(root, out);
	json_decref(root);
	return rc;
}

int nkv_topo_load(const char *path, struct nkv_topo **out)
{
	char *buf;
	size_t n;
	int rc;

	*out = NULL;
	rc = nkv_read_file(path, MAX_FILE, &buf, &n);
	if (rc)
		return rc;
	rc = nkv_topo_parse(buf, n, out);
	free(buf);
	return rc ? nkv_err_wrap(rc, "%s", path) : 0;
}

static json_t *to_json(const struct nkv_topo *t)
{
	json_t *root = json_object(), *sws = json_array(), *hosts = json_array();

	json_object_set_new(root, "format", json_string(FORMAT));
	json_object_set_new(root, "name", json_string(t->name));
	json_object_set_new(root, "intra_host",
			    json_pack("{s:f,s:f}", "GBps", t->intra_GBps, "latency_us", t->intra_latency_us));
	if (t->ecmp_spines)
		json_object_set_new(root, "ecmp", json_pack("{s:i,s:i}", "spines_per_pod", (int)t->ecmp_spines,
							     "cores_per_spine", (int)t->ecmp_cores));
	for (uint32_t i = 0; i < t->nswitches; i++) {
		const struct topo_switch *s = &t->switches[i];
		json_t *o = json_pack("{s:s,s:s}", "name", s->name, "tier", nkv__topo_switch_tier_name(s->tier));
		if (s->up != TOPO_NONE) {
			json_object_set_new(o, "uplink", json_string(t->switches[s->up].name));
			json_object_set_new(o, "uplink_gbps", json_real(s->up_gbps));
			json_object_set_new(o, "oversub", json_real(s->oversub));
			json_object_set_new(o, "latency_us", json_real(s->latency_us));
		}
		json_array_append_new(sws, o);
	}
	for (uint32_t h = 0; h < t->nhosts; h++) {
		const struct topo_host *hs = &t->hosts[h];
		json_t *nics = json_array();
		for (uint32_t n = hs->first_nic; n < hs->first_nic + hs->nnics; n++) {
			json_t *gl = json_array();
			for (uint32_t g = 0; g < hs->ngpus; g++)
				if (t->insts[hs->first_inst + g].nic == n)
					json_array_append_new(gl, json_integer(g));
			json_array_append_new(nics, json_pack("{s:s,s:f,s:f,s:o}", "name", t->nics[n].name, "gbps",
							      t->nics[n].gbps, "latency_us", t->nics[n].latency_us,
							      "gpus", gl));
		}
		json_array_append_new(hosts, json_pack("{s:s,s:s,s:i,s:o}", "name", hs->name, "leaf",
						       t->switches[hs->leaf].name, "gpus", (int)hs->ngpus, "nics", nics));
	}
	json_object_set_new(root, "switches", sws);
	json_object_set_new(root, "hosts", hosts);
	return root;
}

char *nkv_topo_dump_json(const struct nkv_topo *t)
{
	json_t *root = to_json(t);
	char *s = root ? json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12)) : NULL;

	json_decref(root);
	if (!s)
		nkv_err(ENOMEM, "cannot serialise topology");
	return s;
}

int nkv_topo_write_json(const struct nkv_topo *t, const char *path)
{
	char *s = nkv_topo_dump_json(t);
	FILE *f;
	int rc = 0;

	if (!s)
		return -ENOMEM;
	f = strcmp(path, "-") ? fopen(path, "w") : stdout;
	if (!f) {
		rc = nkv_err(errno, "%s: %s", path, strerror(errno));
	} else {
		if (fputs(s, f) < 0 || fputc('\n', f) < 0)
			rc = nkv_err(EIO, "%s: write failed", path);
		if (f != stdout ? fclose(f) : fflush(f))
			rc = rc ? rc : nkv_err(EIO, "%s: write failed", path);
	}
	free(s);
	return rc;
}
