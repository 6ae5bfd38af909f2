/*
 * The demo's calibration: before the policies run, one short replay on the
 * fabric under rr whose requests each push 1 to 8 fresh blocks, one at a
 * time (50 ms apart: no overlap, the tbf buckets full again), so each decode,
 * and so each tier, sees every size; before them one-block pushes that open
 * the agents' connections (what a first push costs more is measured on them).
 * Each request then decodes 100 tokens, so the decodes iterate while later
 * pushes land, as in a replay (an idle agent answers sooner than a busy one). Its records (replay-calibration.csv,
 * named in run.json) are what `netkv sim validate` measures the testbed's
 * per-push overhead on: the agents' loop, the engine's header and ACK, the
 * rate a push gets while the buckets hold tokens, measured on pushes of
 * their own instead of fitted to the run being validated.
 */
#include "demo_calib.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "nkv_util.h"

int nkv__demo_calib_trace(const char *path, unsigned ndecodes)
{
	static const unsigned blocks[] = { 1, 2, 3, 4, 6, 8 };
	FILE *f = fopen(path, "w");

	if (!f)
		return nkv_err(errno, "%s: %s", path, strerror(errno));
	if (!ndecodes)
		ndecodes = 1;
	for (unsigned i = 0; i < CALIB_REQUESTS; i++) {
		/* first CALIB_WARMUP one-block pushes (they open the connections), then
		 * round robin sends request i to decode i % ndecodes: step the size once per round */
		unsigned j = i < CALIB_WARMUP ? 0 : i - CALIB_WARMUP;
		unsigned k = i < CALIB_WARMUP ? 1 : blocks[(j / ndecodes) % (sizeof(blocks) / sizeof(blocks[0]))];
		fprintf(f, "{\"timestamp\": %u, \"input_length\": %u, \"output_length\": 100, \"hash_ids\": [", i * 50, k * 512);
		for (unsigned b = 0; b < k; b++)
			fprintf(f, "%s%u", b ? ", " : "", 2000000000u + i * 8 + b);
		fprintf(f, "]}\n");
	}
	return fclose(f) ? nkv_err(EIO, "%s: write failed", path) : 0;
}
