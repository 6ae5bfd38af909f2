/*
 * Layer-wise KV streaming (nkv_sim_config.layerwise_layers): the transfer
 * overlaps prefill, and TTFT on an idle fabric is prefill + the last
 * layer's transfer + the first decode step, worked out by hand.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "netkv_sim.h"
#include "nkv_util.h"

static void near(double got, double want, double rel)
{
	if (fabs(got - want) > rel * fmax(1e-12, fabs(want)))
		fail_msg("got %.12g, want %.12g", got, want);
}

/* One request of 2048 tokens, 32-GPU tree (1:1), 'alt' layout: prefill h0g0
 * (instance 0), decode h1g0 (instance 8), same leaf: one 400 Gb/s NIC pair,
 * R = 50 GB/s. KV B = 2048 x 131072 bytes. Prefill takes P; the flow starts
 * at P/32 capped at B/P (well below R), so by P it has moved 31/32 of B and
 * the last layer, B/32, goes at R: transfer ends at P + B/32/R + latency.
 * TTFT = P + B/(32 R) + latency + first step. Without streaming the whole B
 * goes after P: TTFT = P + B/R + latency + first step. */
static void idle_fabric_ttft(void **st)
{
	static const char line[] = "{\"timestamp\": 0, \"input_length\": 2048, \"output_length\": 2, \"hash_ids\": [1, 2, 3, 4]}\n";
	struct nkv_fat_tree_params p;
	struct nkv_topo *t;
	struct nkv_trace *tr;
	struct nkv_sim_config c;
	struct nkv_sim_result *r;

	(void)st;
	nkv_fat_tree_defaults(&p);
	p.gpus = 32;
	assert_int_equal(nkv_topo_fat_tree(&p, &t), 0);
	assert_int_equal(nkv_trace_parse(line, sizeof(line) - 1, "one", NULL, &tr), 0);
	nkv_sim_defaults(&c);
	c.topo = t;
	c.layout = NKV_LAYOUT_HOST_ALT;
	c.sched.policy = "netkv-static";
	c.sched.prefill_policy = NKV_PREFILL_RR;
	c.probes = false;
	const struct nkv_perf *pf = &c.perf;
	double P = pf->prefill_a + pf->prefill_b * 2048 + pf->prefill_c * 2048.0 * 2048.0;
	double B = 2048.0 * 131072, R = 50e9, lat = nkv_topo_path_latency(t, 0, 8);
	double it1 = pf->decode_a + pf->decode_b * 2048 + pf->decode_c;
	assert_true(B / P < R); /* the premise: prefill makes bytes slower than the NIC moves them */

	for (int lw = 0; lw < 2; lw++) {
		c.layerwise_layers = lw ? 32 : 0;
		assert_int_equal(nkv_sim_run(&c, tr, &r), 0);
		const struct nkv_sim_record *x = &r->recs[0];
		assert_int_equal(x->prefill, 0);
		assert_int_equal(x->decode, 8);
		assert_int_equal(x->kv_bytes, (uint64_t)B);
		near(x->prefill_s, P, 1e-9);
		if (lw) {
			near(x->ttft_s, P + B / 32 / R + lat + it1, 1e-9);
			near(x->transfer_s, P * 31 / 32 + B / 32 / R + lat, 1e-9);
		} else {
			near(x->ttft_s, P + B / R + lat + it1, 1e-9);
			near(x->transfer_s, B / R + lat, 1e-9);
		}
		nkv_sim_result_free(r);
	}
	c.layerwise_layers = NKV_SIM_MAX_LAYERS + 1;
	assert_int_equal(nkv_sim_run(&c, tr, &r), -EINVAL);
	nkv_trace_free(tr);
	nkv_topo_free(t);
}

/* Many requests, streaming on and off, on the ECMP fabric: every request
 * finishes, KV bytes are conserved, runs repeat exactly, and no streamed
 * transfer lands before its prefill ended (TTFT >= queue + prefill). */
static void busy_fabric(void **st)
{
	struct nkv_fat_tree_params p;
	struct nkv_tracegen_params g;
	struct nkv_topo *t;
	struct nkv_trace *tr;
	struct nkv_sim_config c;
	struct nkv_sim_result *r, *r2;

	(void)st;
	nkv_fat_tree_defaults(&p);
	p.spines_per_pod = 4;
	p.cores_per_spine = 2;
	p.oversub_leaf = 2;
	p.oversub_spine = 4;
	assert_int_equal(nkv_topo_fat_tree(&p, &t), 0);
	nkv_tracegen_defaults(&g);
	g.requests = 300;
	g.rate = 40;
	assert_int_equal(nkv_tracegen(&g, &tr), 0);
	nkv_sim_defaults(&c);
	c.topo = t;
	c.layout = NKV_LAYOUT_HOST_ALT;
	c.layerwise_layers = 32;
	assert_int_equal(nkv_sim_run(&c, tr, &r), 0);
	assert_true(r->sum.ecmp); /* auto: the topology declares ECMP */
	assert_int_equal(r->sum.finished, r->n);
	assert_int_equal(r->sum.bytes_moved, r->sum.bytes_scheduled);
	for (size_t i = 0; i < r->n; i++)
		assert_true(r->recs[i].ttft_s >= r->recs[i].queue_wait_s + r->recs[i].prefill_s - 1e-12);
	assert_int_equal(nkv_sim_run(&c, tr, &r2), 0);
	for (size_t i = 0; i < r->n; i++)
		assert_true(r->recs[i].ttft_s == r2->recs[i].ttft_s && r->recs[i].decode == r2->recs[i].decode);
	for (int k = 1; k < NKV_TIERS; k++)
		assert_true(r->sum.util_peak[k] <= 1 + 1e-9 && r->sum.util_mean[k] <= r->sum.util_peak[k] + 1e-9);
	nkv_sim_result_free(r2);
	nkv_sim_result_free(r);
	c.fabric = NKV_FABRIC_AGGREGATE;
	assert_int_equal(nkv_sim_run(&c, tr, &r), 0);
	assert_false(r->sum.ecmp);
	nkv_sim_result_free(r);
	nkv_trace_free(tr);
	nkv_topo_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(idle_fabric_ttft),
		cmocka_unit_test(busy_fabric),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
