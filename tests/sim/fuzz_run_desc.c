/*
 * libFuzzer entry for the demo's run description (nkv_run_desc_parse), what
 * `netkv sim validate --run FILE` reads. Each input is read without a
 * policy and asking for policy "sim"; what loads must hold values the CLI
 * can use as they are. Replayed over corpus_run_desc/ by
 * test_sim_run_desc_fuzz_replay (nkv_add_fuzz).
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nkv_util.h"
#include "sim_cli.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_error(int ret)
{
	const char *e = nkv_last_error();

	if (ret != -EINVAL && ret != -ENOENT)
		abort();
	if (strncmp(e, "fz:", 3))
		abort();
	for (const char *s = e; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			abort();
}

static void check_desc(const struct nkv_run_desc *d, bool policy)
{
	if (d->shared < -1 || d->shared > 1)
		abort();
	if (d->time_scale < 0 || d->time_scale > NKV_MAX_TIME_SCALE || !isfinite(d->time_scale))
		abort();
	if (d->pool_prefill > UINT32_MAX || d->pool_decode > UINT32_MAX || d->block_tokens < 1 || d->block_tokens > 1024)
		abort();
	if (policy != (d->csv[0] != 0))
		abort();
	/* a model part and a GPU part, neither with the separator */
	if (strchr(d->model, '/') || strchr(d->gpu, '/') || (d->gpu[0] && !d->model[0]))
		abort();
}

/* x (a string or absent) is s. */
static bool same_str(json_t *x, const char *s)
{
	return x ? json_is_string(x) && !strcmp(json_string_value(x), s) : !*s;
}

/* Every value taken is the file's, whole: compared with jansson's own
 * reading, and a key given twice is never taken. */
static void check_values(const uint8_t *data, size_t size, const struct nkv_run_desc *d)
{
	json_error_t je;
	json_t *j = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &je), *x;
	char model[80];

	if (!j)
		abort();
	snprintf(model, sizeof(model), "%s%s%s", d->model, d->gpu[0] ? "/" : "", d->gpu);
	if (!same_str(json_object_get(j, "topology"), d->topo) || !same_str(json_object_get(j, "trace"), d->trace) ||
	    !same_str(json_object_get(j, "perf_model"), model))
		abort();
	x = json_object_get(j, "time_scale");
	if (x ? json_number_value(x) != d->time_scale : d->time_scale != 0)
		abort();
	x = json_object_get(j, "pool_blocks");
	if (x && (!json_is_object(x) ||
		  (uint64_t)json_integer_value(json_object_get(x, "prefill")) != d->pool_prefill ||
		  (uint64_t)json_integer_value(json_object_get(x, "decode")) != d->pool_decode))
		abort();
	json_decref(j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nkv_run_desc a, b;
	int ra, rb;

	ra = nkv_run_desc_parse((const char *)data, size, "fz", NULL, &a);
	if (ra) {
		check_error(ra);
	} else {
		check_desc(&a, false);
		check_values(data, size, &a);
	}
	rb = nkv_run_desc_parse((const char *)data, size, "fz", "sim", &b);
	if (rb) {
		check_error(rb);
	} else {
		check_desc(&b, true);
		/* asking for a policy changes nothing else */
		if (ra)
			abort();
		memset(b.csv, 0, sizeof(b.csv));
		if (memcmp(&a, &b, sizeof(a)))
			abort();
	}
	return 0;
}
