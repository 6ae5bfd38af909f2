/*
 * sched_decide: the scheduler library on its own, as a user of libnetkv
 * sees it (public headers only). Builds a 16-GPU fat tree, a NetKV
 * scheduler with one prefill and four decode instances (one per tier from
 * the prefill), gives the same-leaf one a busy batch and the cross-pod one
 * the request's prefix, makes one decision and prints the choice and its
 * estimated cost.
 *
 *   cc $(pkg-config --cflags --libs netkv) sched_decide.c -o sched_decide
 *   ./sched_decide [policy]          (default netkv; rr, load, cache, cla, ...)
 */
#include <stdio.h>
#include <stdlib.h>

#include "netkv_sched.h"
#include "netkv_transfer.h"

static int fail(const char *what, int rc)
{
	fprintf(stderr, "sched_decide: %s: %s (%d)\n", what, nkv_last_error(), rc);
	return 1;
}

int main(int argc, char **argv)
{
	const char *policy = argc > 1 ? argv[1] : "netkv";
	struct nkv_fat_tree_params ft;
	struct nkv_topo *topo = NULL;
	struct nkv_sched *s = NULL;
	struct nkv_sched_params sp;
	struct nkv_perf perf;
	struct nkv_model model;
	struct nkv_decision dec;
	int rc, ret = 1;

	/* 16 GPUs: 2 per host, 2 hosts per leaf, 2 leaves per pod, 2 pods. */
	nkv_fat_tree_defaults(&ft);
	ft.gpus = 16;
	ft.gpus_per_host = 2;
	ft.nics_per_host = 2;
	ft.oversub_leaf = 2;
	if ((rc = nkv_topo_fat_tree(&ft, &topo)))
		return fail("fat tree", rc);
	if ((rc = nkv_perf_preset("llama3-8b", "h100", &perf)) || (rc = nkv_model_preset("llama3-8b", &model))) {
		fail("presets", rc);
		goto out;
	}

	/* Prefill h0g0; decodes h0g1 (host), h1g0 (leaf), h2g0 (pod), h4g0 (core). */
	const char *pname = "h0g0", *dnames[] = { "h0g1", "h1g0", "h2g0", "h4g0" };
	uint32_t pre[1], dec_inst[4];
	int idx = nkv_topo_find(topo, pname);
	if (idx < 0) {
		fail(pname, idx);
		goto out;
	}
	pre[0] = (uint32_t)idx;
	for (int i = 0; i < 4; i++) {
		if ((idx = nkv_topo_find(topo, dnames[i])) < 0) {
			fail(dnames[i], idx);
			goto out;
		}
		dec_inst[i] = (uint32_t)idx;
	}

	nkv_sched_defaults(&sp);
	sp.policy = policy;
	if ((rc = nkv_sched_create(topo, &perf, &sp, pre, 1, dec_inst, 4, &s))) {
		fail("scheduler", rc);
		goto out;
	}

	/* The same-host decode is busy (a full batch); the cross-pod one holds the prefix. */
	struct nkv_decode_state *busy = nkv_sched_decode(s, 0);
	busy->running = perf.max_batch;
	busy->running_tokens = (uint64_t)perf.max_batch * 4096;
	busy->kv_blocks_used = busy->kv_blocks_total * 9 / 10;
	uint64_t ids[8];
	for (int i = 0; i < 8; i++)
		ids[i] = 1000 + (uint64_t)i;
	if ((rc = nkv_prefix_add(nkv_sched_decode_index(s), 3, ids, 8)) < 0) {
		fail("prefix", rc);
		goto out;
	}

	/* One request: 8 prefix blocks of 512 tokens (4096), then 1024 new tokens. */
	struct nkv_request req = {
		.id = 1, .arrival_s = 0, .input_len = 5120, .output_len = 256,
		.hash_ids = ids, .nblocks = 8, .kv_bytes_per_token = nkv_model_bytes_per_token(&model),
	};
	if ((rc = nkv_sched_decide(s, &req, 0.0, &dec))) {
		fail("decide", rc);
		goto out;
	}

	struct nkv_instance_info pi, di;
	nkv_topo_instance(topo, dec.prefill_inst, &pi);
	nkv_topo_instance(topo, dec.decode_inst, &di);
	printf("topology  %s: %u GPUs, %u hosts, %u links\n", nkv_topo_name(topo), nkv_topo_instances(topo),
	       nkv_topo_hosts(topo), nkv_topo_links(topo));
	printf("policy    %s (prefill %s; decodes", nkv_sched_policy_name(s), pname);
	for (int i = 0; i < 4; i++)
		printf(" %s/%s", dnames[i], nkv_tier_name(nkv_topo_tier(topo, pre[0], dec_inst[i])));
	printf(")\n");
	printf("request   %u input tokens (%u prefix blocks), %u output, %s: %llu KV bytes/token\n",
	       req.input_len, req.nblocks, req.output_len, model.name, (unsigned long long)req.kv_bytes_per_token);
	printf("decision  prefill %s -> decode %s, tier %s\n", pi.name, di.name, nkv_tier_name(dec.tier));
	printf("cost      %u prefix blocks held, %.2f MiB to move, est. wait %.3f ms + transfer %.3f ms"
	       " = TTFT %.3f ms (score %.6g)\n",
	       dec.held_blocks, (double)dec.bytes / (1 << 20), dec.est_wait_s * 1e3, dec.est_xfer_s * 1e3,
	       dec.est_ttft_s * 1e3, dec.score);
	if ((rc = nkv_sched_assign(s, &req, &dec))) {
		fail("assign", rc);
		goto out;
	}
	ret = 0;
out:
	nkv_sched_free(s);
	nkv_topo_free(topo);
	return ret;
}
