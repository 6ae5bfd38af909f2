/*
 * libFuzzer entry for the topology parser. Built as a fuzzer with clang and
 * -DNKV_FUZZ=ON (target fuzz_topo_parse); under any compiler the same entry
 * is linked with fuzz_replay.c into test_topo_fuzz_replay, which replays the
 * seed corpus in tests/topo/corpus so the entry keeps working.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "netkv_topo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nkv_topo *t = NULL;

	if (nkv_topo_parse((const char *)data, size, &t) == 0) {
		uint32_t n = nkv_topo_instances(t), p[NKV_MAX_PATH];
		/* Exercise the queries on whatever parsed: they must hold for any valid file. */
		for (uint32_t a = 0; a < n && a < 64; a++)
			for (uint32_t b = 0; b < n && b < 64; b++) {
				int k = nkv_topo_path(t, a, b, p);
				if (k < 0 || k > NKV_MAX_PATH || nkv_topo_tier(t, a, b) < 0 ||
				    !(nkv_topo_path_bw(t, a, b) > 0))
					abort();
				for (int i = 0; i < k; i++)
					if (p[i] >= nkv_topo_links(t))
						abort();
			}
		char *s = nkv_topo_dump_json(t);
		struct nkv_topo *t2 = NULL;
		if (!s || nkv_topo_parse(s, strlen(s), &t2) != 0) /* what we write we must read */
			abort();
		free(s);
		nkv_topo_free(t2);
		nkv_topo_free(t);
	}
	return 0;
}
