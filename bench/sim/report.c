/* Simulator output: summary table, per-request CSV, JSON summary. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "netkv_sim.h"
#include "nkv_util.h"

void nkv_sim_print_summary(FILE *f, const char *label, const struct nkv_sim_summary *s)
{
	fprintf(f, "%s: %zu requests, %zu finished, virtual time %.1f s, wall %.3f s (CPU %.3f s)\n",
		label ? label : "sim", s->requests, s->finished, s->makespan_s, s->wall_s, s->cpu_s);
	fprintf(f, "  %-10s %10s %10s %10s %10s\n", "", "mean", "p50", "p90", "p99");
	fprintf(f, "  %-10s %10.1f %10.1f %10.1f %10.1f   ms\n", "TTFT", s->ttft_mean * 1e3, s->ttft_p50 * 1e3,
		s->ttft_p90 * 1e3, s->ttft_p99 * 1e3);
	fprintf(f, "  %-10s %10.2f %10.2f %10.2f %10.2f   ms (per-request mean TBT)\n", "TBT", s->tbt_mean * 1e3,
		s->tbt_p50 * 1e3, s->tbt_p90 * 1e3, s->tbt_p99 * 1e3);
	fprintf(f, "  %-10s %10.2f %10s %10s %10.2f   ms\n", "transfer", s->transfer_mean * 1e3, "", "",
		s->transfer_p99 * 1e3);
	fprintf(f, "  SLO attainment %.1f%%   KV GB moved: host %.1f  leaf %.1f  pod %.1f  core %.1f\n",
		s->slo_attainment * 100, s->gb_tier[0], s->gb_tier[1], s->gb_tier[2], s->gb_tier[3]);
	fprintf(f, "  decision %.2f us mean, %.2f us p99; %lu events, %lu rate recomputes, %lu probes\n",
		s->decide_mean_us, s->decide_p99_us, (unsigned long)s->events, (unsigned long)s->net_recomputes,
		(unsigned long)s->probes);
	fprintf(f, "  fabric %s; busiest link utilisation, run mean / busiest interval / instant peak: leaf "
		"%.1f/%.0f/%.0f%%  pod %.1f/%.0f/%.0f%%  core %.1f/%.0f/%.0f%%\n", s->ecmp ? "ecmp" : "aggregate",
		s->util_mean[1] * 100, s->util_window[1] * 100, s->util_peak[1] * 100, s->util_mean[2] * 100,
		s->util_window[2] * 100, s->util_peak[2] * 100, s->util_mean[3] * 100, s->util_window[3] * 100,
		s->util_peak[3] * 100);
}

/* The simulated records in the shared record format (netkv_sim.h). */
int nkv_sim_write_csv(const struct nkv_sim_result *r, const struct nkv_topo *t, const char *path)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "w") : stdout;
	struct nkv_instance_info pi, di;

	if (!f)
		return nkv_err(errno, "%s: %s", path, strerror(errno));
	nkv_rec_write_header(f);
	for (size_t i = 0; i < r->n; i++) {
		const struct nkv_sim_record *x = &r->recs[i];
		struct nkv_rec_row w;

		nkv_rec_row_init(&w);
		w.req = x->id;
		w.line = x->line;
		w.input = x->input_len;
		w.output = x->output_len;
		w.status = NKV_REC_ST_OK;
		w.tier = x->tier;
		w.bytes = x->kv_bytes;
		w.queue_s = x->queue_wait_s;
		w.prefill_s = x->prefill_s;
		w.transfer_s = x->transfer_s;
		w.xfer_s = x->transfer_s; /* no control-plane gap before the push in the model */
		w.decode_wait_s = x->decode_wait_s;
		w.first_step_s = x->first_step_s;
		w.ttft_s = x->ttft_s;
		w.tbt_mean_s = x->tbt_mean_s;
		w.e2e_s = x->finish_s - x->arrival_s;
		w.tokens = x->tokens;
		w.slo_met = x->slo_met;
		w.arrival_s = x->arrival_s;
		if (nkv_topo_instance(t, x->prefill, &pi) == 0 && nkv_topo_instance(t, x->decode, &di) == 0) {
			snprintf(w.prefill, sizeof(w.prefill), "%s", pi.name);
			snprintf(w.decode, sizeof(w.decode), "%s", di.name);
		}
		w.held_blocks = x->held_blocks;
		w.est_transfer_s = x->est_transfer_s;
		w.tbt_max_s = x->tbt_max_s;
		nkv_rec_write_row(f, &w);
	}
	if (f != stdout && fclose(f))
		return nkv_err(errno, "%s: %s", path, strerror(errno));
	if (f == stdout)
		fflush(stdout);
	return 0;
}

void *nkv_sim_summary_json(const struct nkv_sim_summary *s)
{
	json_t *o = json_object(), *gb = json_object();

	json_object_set_new(o, "requests", json_integer((json_int_t)s->requests));
	json_object_set_new(o, "finished", json_integer((json_int_t)s->finished));
	json_object_set_new(o, "ttft_mean_s", json_real(s->ttft_mean));
	json_object_set_new(o, "ttft_p50_s", json_real(s->ttft_p50));
	json_object_set_new(o, "ttft_p90_s", json_real(s->ttft_p90));
	json_object_set_new(o, "ttft_p99_s", json_real(s->ttft_p99));
	json_object_set_new(o, "tbt_mean_s", json_real(s->tbt_mean));
	json_object_set_new(o, "tbt_p50_s", json_real(s->tbt_p50));
	json_object_set_new(o, "tbt_p90_s", json_real(s->tbt_p90));
	json_object_set_new(o, "tbt_p99_s", json_real(s->tbt_p99));
	json_object_set_new(o, "transfer_mean_s", json_real(s->transfer_mean));
	json_object_set_new(o, "transfer_p99_s", json_real(s->transfer_p99));
	json_object_set_new(o, "slo_attainment", json_real(s->slo_attainment));
	for (int t = 0; t < NKV_TIERS; t++)
		json_object_set_new(gb, nkv_tier_name(t), json_real(s->gb_tier[t]));
	json_object_set_new(o, "kv_gb_per_tier", gb);
	json_object_set_new(o, "bytes_scheduled", json_integer((json_int_t)s->bytes_scheduled));
	json_object_set_new(o, "bytes_moved", json_integer((json_int_t)s->bytes_moved));
	json_object_set_new(o, "decide_mean_us", json_real(s->decide_mean_us));
	json_object_set_new(o, "decide_p99_us", json_real(s->decide_p99_us));
	json_object_set_new(o, "virtual_s", json_real(s->makespan_s));
	json_object_set_new(o, "wall_s", json_real(s->wall_s));
	json_object_set_new(o, "cpu_s", json_real(s->cpu_s));
	json_object_set_new(o, "events", json_integer((json_int_t)s->events));
	json_object_set_new(o, "probes", json_integer((json_int_t)s->probes));
	json_object_set_new(o, "fabric", json_string(s->ecmp ? "ecmp" : "aggregate"));
	json_t *um = json_object(), *up = json_object(), *uw = json_object();
	for (int t = 1; t < NKV_TIERS; t++) {
		json_object_set_new(um, nkv_tier_name(t), json_real(s->util_mean[t]));
		json_object_set_new(up, nkv_tier_name(t), json_real(s->util_peak[t]));
		json_object_set_new(uw, nkv_tier_name(t), json_real(s->util_window[t]));
	}
	json_object_set_new(o, "link_util_mean", um);
	json_object_set_new(o, "link_util_interval", uw);
	json_object_set_new(o, "link_util_peak", up);
	return o;
}
