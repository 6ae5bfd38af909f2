/*
 * `netkv bench gpu` on the fake device: the benchmark's own code (chunk
 * plans, descriptor upload, two-stream gather/scatter, the gathered bytes
 * check, both pushes and their per-block verification, table and JSON)
 * runs here without a GPU. Its figures mean nothing (host memcpy); the
 * exit status and the rows do.
 */
#include "fake_gpu.h"
#include "bench_cli.h"

#include <stdio.h>
#include <string.h>

int main(void)
{
	char *table[] = { "bench gpu", "--tokens", "1000", "--layout", "layer", "-n", "2", "--chunk", "256K",
			  "--streams", "3", NULL };
	char *json[] = { "bench gpu", "--tokens", "512", "--layout", "block", "-n", "1", "--push-iters", "1", "--json",
			 NULL };
	int rc;

	setenv("NKV_QUIET", "1", 1);
	nkv__gpu_override(&fake_gpu_ops);
	rc = nkv_cmd_bench_gpu(11, table);
	if (rc) {
		fprintf(stderr, "FAIL: bench gpu (table) exited %d\n", rc);
		return 1;
	}
	rc = nkv_cmd_bench_gpu(10, json);
	if (rc) {
		fprintf(stderr, "FAIL: bench gpu (json) exited %d\n", rc);
		return 1;
	}
	if (atomic_load(&fake_kernels) == 0) {
		fprintf(stderr, "FAIL: no gather/scatter kernel ran\n");
		return 1;
	}
	return 0;
}
