/* cla* weights for `netkv demo`, tuned in the simulator before the runs. */
#ifndef NKV_DEMO_TUNE_H
#define NKV_DEMO_TUNE_H

#include <stddef.h>

struct demo_tune {
	const char *trace, *topo;  /* the demo's trace and topology as emulated */
	double time_scale, speed;  /* as given to the agents and to the replay */
	size_t limit;              /* first N requests */
	unsigned decode_blocks;    /* each decode's pool (its KV capacity) */
	unsigned kv_bytes_per_token;
};

struct demo_tune_result {
	double w_cache, w_load, ttft_mean_s;
	unsigned evaluated;
	double wall_s;
};

int nkv__demo_tune_cla(const struct demo_tune *t, struct demo_tune_result *out);

#endif
