/*
 * `netkv replay`: submit a Mooncake trace to the scheduler at the trace's
 * (scaled) times and collect one record per request.
 *
 * Per request (seconds of wall time on this box, from the agents' and the
 * scheduler's monotonic clocks, all on one host):
 *   queue       = prefill start - submit (decision + prefill FIFO)
 *   prefill     = prefill end - prefill start (emulated compute)
 *   transfer    = last byte placed - prefill end (decode's block list,
 *                 the push, tier pacing)
 *   decode_wait = admitted into the batch - last byte placed
 *   first step  = first token - admitted
 *   TTFT        = first token - submit = the sum of the five above
 * SLO met: TTFT <= --slo-ttft and mean TBT <= --slo-tbt (both multiplied
 * by --time-scale; defaults 2 s and 0.1 s, in the range DistServe uses).
 * --csv writes the shared record format (bench/sim/netkv_sim.h) with what
 * `netkv sim validate` needs besides: arrival_s (this client's submit time
 * from the start), prefill and decode (instance names: the RECORD's agent
 * ids resolved through the scheduler's STATUS).
 */
#include "replay.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "testbed_cli.h"
#include "netkv_proto.h"
#include "netkv_sched.h"
#include "netkv_sim.h"
#include "nkv_cli.h"
#include "nkv_json_out.h"
#include "nkv_util.h"

static void on_bad(void *ctx, uint64_t line, const char *why)
{
	size_t *n = ctx;
	(*n)++;
	fprintf(stderr, "replay: skipping bad line %llu: %s\n", (unsigned long long)line, why);
}

void nkv_replay_why_add(struct replay_why *w, size_t *n, const char *reason, size_t count)
{
	for (size_t i = 0; i < *n; i++)
		if (!strcmp(w[i].reason, reason)) {
			w[i].n += count;
			return;
		}
	if (*n > REPLAY_WHY_MAX) {
		w[REPLAY_WHY_MAX].n += count;
		return;
	}
	snprintf(w[*n].reason, sizeof(w[*n].reason), "%s", *n == REPLAY_WHY_MAX ? "(other reasons)" : reason);
	w[(*n)++].n = count;
}

static void summarise(const struct replay_opts *o, struct replay_result *res)
{
	double *tt = calloc(res->n + 1, sizeof(double));
	size_t nt = 0;
	double sum = 0, tbt = 0, p99 = 0;
	for (size_t i = 0; i < res->n; i++) {
		struct replay_rec *r = &res->recs[i];
		if (!r->done) {
			res->lost++;
			res->unsent += !r->sent;
			nkv_replay_why_add(res->lost_why, &res->nlost_why, r->reason, 1);
			continue;
		}
		if (r->status) {
			res->failed++;
			nkv_replay_why_add(res->failed_why, &res->nfailed_why, r->reason[0] ? r->reason : "(no reason given)", 1);
			continue;
		}
		res->finished++;
		res->blocks_ok += r->blocks_ok;
		res->blocks_bad += r->blocks_bad;
		r->slo = r->ttft <= o->ttft_slo && r->tbt_mean <= o->tbt_slo;
		res->slo_met += r->slo;
		tt[nt++] = r->ttft;
		sum += r->ttft;
		tbt += r->tbt_mean;
		if (r->tbt_p99 > p99)
			p99 = r->tbt_p99;
		res->gb += (double)r->bytes / 1e9;
		res->gb_tier[r->tier & 3] += (double)r->bytes / 1e9;
		res->n_tier[r->tier & 3]++;
	}
	nkv_sort_doubles(tt, nt);
	res->ttft[0] = nt ? sum / (double)nt : 0;
	res->ttft[1] = nkv_percentile(tt, nt, 0.5);
	res->ttft[2] = nkv_percentile(tt, nt, 0.9);
	res->ttft[3] = nkv_percentile(tt, nt, 0.99);
	res->tbt_mean = nt ? tbt / (double)nt : 0;
	res->tbt_p99 = p99;
	free(tt);
}

/* Ask the scheduler which agent id is which instance (STATUS is answered to
 * any registered peer). Other messages met while waiting are dropped: call
 * it only when no records are due. Best effort: on failure names stay empty. */
static void query_agents(struct nkv_pconn *c, struct replay_result *res)
{
	struct nkv_msg m;

	nkv_msg_init(&m, NKV_MSG_STATUS_REQ);
	if (nkv_pconn_send(c, &m))
		return;
	double end = nkv_now_s() + 5;
	while (nkv_pconn_pending(c) && nkv_now_s() < end) {
		struct pollfd pf = { .fd = c->fd, .events = POLLOUT };
		poll(&pf, 1, 100);
		if (nkv_pconn_flush(c))
			return;
	}
	while (nkv_now_s() < end && !nkv_pconn_recv_wait(c, &m, end - nkv_now_s())) {
		bool st = m.type == NKV_MSG_STATUS;
		json_t *root = st && m.text ? json_loads(m.text, 0, NULL) : NULL, *agents = json_object_get(root, "agents"), *a;
		size_t i;
		json_array_foreach(agents, i, a) {
			json_t *id = json_object_get(a, "id"), *name = json_object_get(a, "name");
			if (!json_is_integer(id) || !json_is_string(name) || json_integer_value(id) < 0 ||
			    json_integer_value(id) > UINT32_MAX)
				continue;
			size_t k;
			for (k = 0; k < res->nagents && res->agents[k].id != (uint32_t)json_integer_value(id); k++)
				;
			if (k == res->nagents) {
				if (k == sizeof(res->agents) / sizeof(res->agents[0]))
					continue;
				res->nagents++;
			}
			res->agents[k].id = (uint32_t)json_integer_value(id);
			snprintf(res->agents[k].name, sizeof(res->agents[k].name), "%s", json_string_value(name));
		}
		json_decref(root);
		nkv_msg_clear(&m);
		if (st)
			return;
	}
}

static const char *agent_name(const struct replay_result *res, uint32_t id)
{
	for (size_t k = 0; id && k < res->nagents; k++)
		if (res->agents[k].id == id)
			return res->agents[k].name;
	return NULL;
}

/* Names for the records that came so far, before a new scheduler's ids replace the map. */
static void pin_names(struct replay_result *res)
{
	for (size_t i = 0; i < res->n; i++) {
		struct replay_rec *r = &res->recs[i];
		const char *pn = agent_name(res, r->prefill_id), *dn = agent_name(res, r->decode_id);
		if (r->done && !r->pname[0] && pn)
			snprintf(r->pname, sizeof(r->pname), "%s", pn);
		if (r->done && !r->dname[0] && dn)
			snprintf(r->dname, sizeof(r->dname), "%s", dn);
	}
}

/* Connect (retrying a refused connect for connect_s), register as a client
 * and learn the agents' names. On failure c is closed; -EACCES: refused. */
static int sched_join(const struct replay_opts *o, struct nkv_pconn *c, double connect_s, struct replay_result *res)
{
	int fd = nkv_proto_connect(o->sched, connect_s);
	if (fd < 0)
		return fd; /* c untouched */
	nkv_pconn_init(c, fd);
	struct nkv_msg m;
	nkv_msg_init(&m, NKV_MSG_REGISTER);
	m.role = NKV_ROLE_CLIENT;
	snprintf(m.token, sizeof(m.token), "%s", o->token ? o->token : "");
	snprintf(m.name, sizeof(m.name), "replay");
	int rc = nkv_pconn_send_wait(c, &m);
	if (!rc)
		rc = nkv_pconn_recv_wait(c, &m, 10);
	if (!rc && m.type != NKV_MSG_REGISTER_OK)
		rc = nkv_err(EACCES, "scheduler refused the client: %s", m.text ? m.text : nkv_msg_type_name(m.type));
	nkv_msg_clear(&m);
	if (rc) {
		nkv_pconn_close(c);
		return rc;
	}
	pin_names(res);
	res->nagents = 0;
	query_agents(c, res);
	return 0;
}

static int submit(struct nkv_pconn *c, const struct nkv_trace *t, size_t i, const struct replay_rec *r)
{
	struct nkv_msg m;
	nkv_msg_init(&m, NKV_MSG_SUBMIT);
	m.req = i;
	m.input_len = r->input;
	m.output_len = r->output;
	nkv_msg_set_ids(&m, t->reqs[i].hash_ids, t->reqs[i].nblocks);
	int rc = nkv_pconn_send(c, &m);
	nkv_msg_clear(&m);
	return rc;
}

static void take_record(struct replay_rec *r, const struct nkv_msg *m)
{
	const double *x = m->t;
	r->done = true;
	r->status = m->status;
	r->ntokens = m->ntokens;
	r->blocks_ok = m->blocks_ok;
	r->blocks_bad = m->blocks_bad;
	r->tier = m->tier;
	r->bytes = m->bytes;
	r->prefill_id = m->agent_id;
	r->decode_id = m->peer;
	snprintf(r->reason, sizeof(r->reason), "%s", m->text ? m->text : "");
	if (m->status)
		return;
	/* The scheduler's times count from the last submit; what passed since
	 * the first (a scheduler outage, --resubmit) is the client's wait too. */
	double late = r->last_s - r->first_s;
	r->queue = x[NKV_REC_PREFILL_T0] - x[NKV_REC_SUBMIT] + late;
	r->prefill = x[NKV_REC_PREFILL_T1] - x[NKV_REC_PREFILL_T0];
	r->transfer = x[NKV_REC_XFER_END] - x[NKV_REC_PREFILL_T1];
	r->xfer_s = x[NKV_REC_XFER_S];
	r->decode_wait = x[NKV_REC_ADMIT] - x[NKV_REC_XFER_END];
	r->step = x[NKV_REC_STEP_S];
	r->ttft = x[NKV_REC_FIRST] - x[NKV_REC_SUBMIT] + late;
	r->tbt_mean = x[NKV_REC_TBT_MEAN];
	r->tbt_p99 = x[NKV_REC_TBT_P99];
	r->e2e = x[NKV_REC_END] - x[NKV_REC_SUBMIT] + late;
}

int nkv_replay_run(const struct replay_opts *o, struct replay_result *res)
{
	memset(res, 0, sizeof(*res));
	struct nkv_trace *t = NULL;
	struct nkv_trace_opts to = { .skip_bad = !o->abort_on_bad, .limit = o->limit, .on_bad = on_bad,
				     .ctx = &res->bad_lines };
	int rc = nkv_trace_load(o->trace, &to, &t);
	if (rc)
		return rc;
	res->n = t->n;
	res->recs = calloc(t->n + 1, sizeof(*res->recs));
	struct nkv_pconn c = { .fd = -1 };
	rc = sched_join(o, &c, 10, res);
	struct nkv_msg m;
	double start = nkv_now_s(), last_submit = start, last_progress = 0;
	/* --resubmit: while the scheduler is away (up false), when it went and
	 * when to try again (backoff 0.1 s doubling to 2 s). It must be back
	 * within --timeout of the first loss since the last record (stuck_at),
	 * so a scheduler that dies again at each return cannot keep us forever. */
	bool up = !rc;
	double down_at = 0, stuck_at = 0, retry_at = 0, backoff = 0.1, back_at = 0;
	size_t next = 0, got = 0;
	char lost_why[160] = "", down_why[128] = "";
	res->start_s = start;
	while (!rc) {
		double now = nkv_now_s();
		if (!up) {
			if (now - stuck_at > o->timeout_s) {
				rc = nkv_err(ETIMEDOUT, "scheduler not back within %g s (--timeout): %s", o->timeout_s,
					     down_why);
				snprintf(lost_why, sizeof(lost_why),
					 "scheduler connection lost after %.1f s, not back within %g s (--timeout): %.60s",
					 down_at - start, o->timeout_s, down_why);
				break;
			}
			if (now < retry_at) {
				struct timespec ts = { 0, 20 * 1000 * 1000 };
				nanosleep(&ts, NULL);
				continue;
			}
			int jr = sched_join(o, &c, 0.2, res);
			if (jr == -EACCES) { /* refused: it would be refused again */
				rc = jr;
				snprintf(lost_why, sizeof(lost_why), "scheduler connection lost after %.1f s, then: %.100s",
					 down_at - start, nkv_last_error());
				break;
			}
			if (jr) {
				snprintf(down_why, sizeof(down_why), "%s", nkv_last_error());
				retry_at = nkv_now_s() + backoff;
				backoff = backoff * 2 > 2 ? 2 : backoff * 2;
				continue;
			}
			up = true;
			back_at = now = nkv_now_s();
			res->reconnects++;
			size_t again = 0;
			for (size_t i = 0; i < next && !rc; i++) {
				struct replay_rec *r = &res->recs[i];
				if (!r->sent || r->done)
					continue;
				r->resubmits++;
				res->resubmitted += r->resubmits == 1;
				r->last_s = now;
				again++;
				rc = submit(&c, t, i, r);
			}
			fprintf(stderr, "%sscheduler back after %.1f s: %zu requests without a record submitted again\n",
				o->label ? o->label : "", now - down_at, again);
			last_submit = now;
			if (rc)
				goto lost;
		}
		while (next < t->n && now - start >= (double)t->reqs[next].timestamp_ms / 1000.0 / o->speed) {
			const struct nkv_trace_req *tr = &t->reqs[next];
			struct replay_rec *r = &res->recs[next];
			double due = start + (double)tr->timestamp_ms / 1000.0 / o->speed;
			r->line = tr->line;
			r->input = tr->input_len;
			r->output = o->max_output && tr->output_len > o->max_output ? o->max_output : tr->output_len;
			/* Due while the scheduler was away: its wait counts from when it was due. */
			r->first_s = due < back_at ? due : now;
			r->last_s = now;
			r->arrival = r->first_s - start;
			r->sent = true; /* a failed send is a lost connection: resubmitted or lost */
			next++;
			last_submit = now;
			if ((rc = submit(&c, t, next - 1, r)))
				break;
		}
		if (rc)
			goto lost;
		if (got == t->n)
			break;
		if (next == t->n && now - last_submit > o->timeout_s) {
			rc = nkv_err(ETIMEDOUT, "%zu requests without a record %.0f s after the last submit", t->n - got,
				     o->timeout_s);
			snprintf(lost_why, sizeof(lost_why), "no record within %g s of the last submit (--timeout)",
				 o->timeout_s);
			break;
		}
		if (o->progress && now - last_progress > 0.5) { /* a terminal only; the last line below for logs */
			nkv_cli_progress("%s%zu/%zu submitted, %zu done", o->label ? o->label : "", next, t->n, got);
			last_progress = now;
		}
		double wait = next < t->n ? (double)t->reqs[next].timestamp_ms / 1000.0 / o->speed - (now - start) : 0.1;
		if (wait > 0.1)
			wait = 0.1;
		struct pollfd pf = { .fd = c.fd, .events = (short)(POLLIN | (nkv_pconn_pending(&c) ? POLLOUT : 0)) };
		poll(&pf, 1, wait > 0 ? (int)(wait * 1000) + 1 : 0);
		if (pf.revents & POLLOUT)
			nkv_pconn_flush(&c);
		if (!(pf.revents & (POLLIN | POLLHUP | POLLERR)))
			continue;
		rc = nkv_pconn_read(&c);
		int drc, said = 0;
		while ((drc = nkv_pconn_next(&c, &m)) == 1) {
			if (m.type == NKV_MSG_RECORD && m.req < t->n && !res->recs[m.req].done) {
				take_record(&res->recs[m.req], &m);
				got++;
				stuck_at = 0;
			} else if (m.type == NKV_MSG_ERROR) {
				said = nkv_err(EPROTO, "scheduler: %s", m.text ? m.text : "");
			}
			nkv_msg_clear(&m);
		}
		if (said || drc < 0) { /* the scheduler's ERROR or a bad frame: not a connection to try again */
			rc = said ? said : nkv_err_wrap(drc, "from the scheduler");
			snprintf(lost_why, sizeof(lost_why), "scheduler connection lost after %.1f s: %.100s",
				 nkv_now_s() - start, nkv_last_error());
			break;
		}
		if (!rc)
			continue;
	lost: /* the connection failed (rc) */
		if (o->resubmit) {
			snprintf(down_why, sizeof(down_why), "%s", nkv_last_error());
			fprintf(stderr, "%sscheduler connection lost (%s): reconnecting for up to %g s (--resubmit)\n",
				o->label ? o->label : "", down_why, o->timeout_s);
			nkv_pconn_close(&c);
			up = false;
			down_at = retry_at = nkv_now_s();
			stuck_at = stuck_at ? stuck_at : down_at;
			backoff = 0.1;
			rc = 0;
			continue;
		}
		rc = nkv_err_wrap(rc, "scheduler connection");
		snprintf(lost_why, sizeof(lost_why), "scheduler connection lost after %.1f s: %.100s", nkv_now_s() - start,
			 nkv_last_error());
	}
	/* Every request without a record says why: the connection lost, the
	 * timeout, or (not submitted) the run stopped before its time came. */
	if (rc && !lost_why[0])
		snprintf(lost_why, sizeof(lost_why), "replay stopped after %.1f s: %.100s", nkv_now_s() - start,
			 nkv_last_error());
	for (size_t i = 0; i < t->n; i++) {
		struct replay_rec *r = &res->recs[i];
		if (r->done)
			continue;
		if (r->sent)
			snprintf(r->reason, sizeof(r->reason), "%s", lost_why);
		else
			snprintf(r->reason, sizeof(r->reason), "not submitted: %.140s", lost_why);
	}
	if (o->progress) {
		nkv_cli_progress_end();
		fprintf(stderr, "%s%zu/%zu submitted, %zu done\n", o->label ? o->label : "", next, t->n, got);
	}
	res->wall_s = nkv_now_s() - start;
	/* Agents that registered during the run (restarts) get new ids. */
	bool unknown = false;
	for (size_t i = 0; i < next && up && !rc; i++)
		unknown |= (res->recs[i].prefill_id && !agent_name(res, res->recs[i].prefill_id)) ||
			   (res->recs[i].decode_id && !agent_name(res, res->recs[i].decode_id));
	if (unknown)
		query_agents(&c, res);
	pin_names(res);
	nkv_pconn_close(&c);
	nkv_trace_free(t);
	summarise(o, res);
	return rc;
}

/* Uniform in [0, 1). */
static double unit(uint64_t *s)
{
	return (double)(nkv_xorshift64(s) >> 11) / 9007199254740992.0;
}

int nkv_replay_gen_trace(const char *path, unsigned n, double rate, uint64_t seed, unsigned skip)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return nkv_err(errno, "%s: %s", path, strerror(errno));
	uint64_t s = seed ? seed : 1, next_id = 1000;
	double t = 0, t_skip = 0;
	uint64_t conv_ids[8][64];
	unsigned conv_len[8] = { 0 };
	for (unsigned i = 0; i < n; i++) {
		t += -log(1 - unit(&s)) / rate;
		if (!(t * 1000 <= 9e15)) { /* what the trace reader takes */
			fclose(f);
			return nkv_err(EINVAL, "--rate %g: too low for %u requests, timestamps overflow", rate, n);
		}
		unsigned c = (unsigned)(unit(&s) * 8);
		if (conv_len[c] == 0 || conv_len[c] > 40 || unit(&s) < 0.2) {
			/* new conversation: 4 blocks of shared system prompt (ids 0..3) */
			conv_len[c] = 4;
			for (unsigned k = 0; k < 4; k++)
				conv_ids[c][k] = k;
		}
		unsigned grow = 1 + (unsigned)(unit(&s) * 6);
		for (unsigned k = 0; k < grow && conv_len[c] < 64; k++)
			conv_ids[c][conv_len[c]++] = next_id++;
		unsigned input = conv_len[c] * 512 - (unsigned)(unit(&s) * 500);
		double u1 = unit(&s), u2 = unit(&s); /* two draws, in this order */
		unsigned output = 32 + (unsigned)(u1 * u2 * 480);
		if (i < skip) {
			t_skip = t;
			continue;
		}
		fprintf(f, "{\"timestamp\": %llu, \"input_length\": %u, \"output_length\": %u, \"hash_ids\": [",
			(unsigned long long)((t - t_skip) * 1000), input, output);
		for (unsigned k = 0; k < conv_len[c]; k++)
			fprintf(f, "%s%llu", k ? ", " : "", (unsigned long long)conv_ids[c][k]);
		fprintf(f, "]}\n");
	}
	return fclose(f) ? nkv_err(EIO, "%s: write failed", path) : 0;
}

void nkv_replay_free(struct replay_result *r)
{
	free(r->recs);
	memset(r, 0, sizeof(*r));
}

void nkv_replay_print(FILE *f, const struct replay_result *r)
{
	fprintf(f, "requests %zu: finished %zu, failed %zu, lost %zu (without record; %zu never submitted); bad trace lines %zu\n",
		r->n, r->finished, r->failed, r->lost, r->unsent, r->bad_lines);
	for (size_t i = 0; i < r->nfailed_why; i++)
		fprintf(f, "  failed %5zu: %s\n", r->failed_why[i].n, r->failed_why[i].reason);
	for (size_t i = 0; i < r->nlost_why; i++)
		fprintf(f, "  lost   %5zu: %s\n", r->lost_why[i].n, r->lost_why[i].reason);
	if (r->reconnects)
		fprintf(f, "resubmitted %zu (without a record when the scheduler connection was lost; %zu reconnects)\n",
			r->resubmitted, r->reconnects);
	fprintf(f, "TTFT ms   mean %8.2f  p50 %8.2f  p90 %8.2f  p99 %8.2f\n", r->ttft[0] * 1e3, r->ttft[1] * 1e3,
		r->ttft[2] * 1e3, r->ttft[3] * 1e3);
	fprintf(f, "TBT ms    mean %8.3f  max p99 %8.3f\n", r->tbt_mean * 1e3, r->tbt_p99 * 1e3);
	fprintf(f, "SLO met   %.1f%% (%zu of %zu finished)\n", r->finished ? 100.0 * r->slo_met / r->finished : 0,
		r->slo_met, r->finished);
	fprintf(f, "KV moved  %.3f GB; per tier (host/leaf/pod/core): %.3f/%.3f/%.3f/%.3f GB, requests %zu/%zu/%zu/%zu\n",
		r->gb, r->gb_tier[0], r->gb_tier[1], r->gb_tier[2], r->gb_tier[3], r->n_tier[0], r->n_tier[1],
		r->n_tier[2], r->n_tier[3]);
	fprintf(f, "blocks verified %zu, bad %zu; wall %.1f s\n", r->blocks_ok, r->blocks_bad, r->wall_s);
}

int nkv_replay_csv(const struct replay_result *r, const char *path)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return nkv_err(errno, "%s: %s", path, strerror(errno));
	nkv_rec_write_header(f);
	for (size_t i = 0; i < r->n; i++) {
		const struct replay_rec *x = &r->recs[i];
		struct nkv_rec_row w;

		nkv_rec_row_init(&w);
		w.req = i;
		w.line = x->line;
		w.input = x->input;
		w.output = x->output;
		w.status = !x->done ? NKV_REC_ST_LOST : x->status ? NKV_REC_ST_FAILED : NKV_REC_ST_OK;
		w.tier = (int)(x->tier & 3);
		w.bytes = x->bytes;
		w.queue_s = x->queue;
		w.prefill_s = x->prefill;
		w.transfer_s = x->transfer;
		w.xfer_s = x->xfer_s;
		w.decode_wait_s = x->decode_wait;
		w.first_step_s = x->step;
		w.ttft_s = x->ttft;
		w.tbt_mean_s = x->tbt_mean;
		w.tbt_p99_s = x->tbt_p99;
		w.e2e_s = x->e2e;
		w.tokens = x->ntokens;
		w.blocks_ok = x->blocks_ok;
		w.blocks_bad = x->blocks_bad;
		w.slo_met = x->slo;
		w.arrival_s = x->line ? x->arrival : NAN; /* line 0: never submitted */
		snprintf(w.prefill, sizeof(w.prefill), "%s", x->pname);
		snprintf(w.decode, sizeof(w.decode), "%s", x->dname);
		w.resubmits = x->resubmits;
		snprintf(w.reason, sizeof(w.reason), "%s", x->reason);
		nkv_rec_write_row(f, &w);
	}
	if (fclose(f))
		return nkv_err(EIO, "%s: write failed", path);
	return 0;
}

static json_t *result_json(const struct replay_result *r)
{
	json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:I, s:f}",
			      "requests", (json_int_t)r->n, "finished", (json_int_t)r->finished, "failed",
			      (json_int_t)r->failed, "lost", (json_int_t)r->lost, "bad_lines", (json_int_t)r->bad_lines,
			      "ttft_mean_s", r->ttft[0], "ttft_p50_s", r->ttft[1], "ttft_p90_s", r->ttft[2], "ttft_p99_s",
			      r->ttft[3], "tbt_mean_s", r->tbt_mean, "tbt_p99_s", r->tbt_p99, "slo_attainment",
			      r->finished ? (double)r->slo_met / (double)r->finished : 0.0, "blocks_ok",
			      (json_int_t)r->blocks_ok, "blocks_bad", (json_int_t)r->blocks_bad, "kv_gb", r->gb);
	json_t *tiers = json_array();
	for (int i = 0; i < 4; i++)
		json_array_append_new(tiers, json_pack("{s:s, s:f, s:I}", "tier", nkv_tier_name(i), "gb", r->gb_tier[i],
						       "requests", (json_int_t)r->n_tier[i]));
	json_object_set_new(o, "tiers", tiers);
	json_object_set_new(o, "not_submitted", json_integer((json_int_t)r->unsent));
	json_object_set_new(o, "resubmitted", json_integer((json_int_t)r->resubmitted));
	json_object_set_new(o, "reconnects", json_integer((json_int_t)r->reconnects));
	for (int k = 0; k < 2; k++) {
		const struct replay_why *w = k ? r->lost_why : r->failed_why;
		json_t *a = json_array();
		for (size_t i = 0; i < (k ? r->nlost_why : r->nfailed_why); i++)
			json_array_append_new(a, json_pack("{s:s, s:I}", "reason", w[i].reason, "requests", (json_int_t)w[i].n));
		json_object_set_new(o, k ? "lost_reasons" : "failed_reasons", a);
	}
	return o;
}

char *nkv_replay_json(const struct replay_result *r);
char *nkv_replay_json(const struct replay_result *r)
{
	json_t *o = nkv_json_with_meta(result_json(r));
	char *s = json_dumps(o, NKV_JSON_FLAGS);
	json_decref(o);
	return s;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: netkv replay --scheduler ADDR --trace FILE [options]\n"
		"Submits a Mooncake JSONL trace at its (scaled) times; one record per request.\n"
		"  --rate-scale X     arrival rate x X: trace time / X (default 1)\n"
		"  --limit N          first N requests\n"
		"  --token T          shared token (default $NKV_TOKEN)\n"
		"  --token-file FILE  the token from FILE's first line (keeps it off the command line)\n"
		"  --abort-on-bad     stop at the first bad trace line (default: report and skip)\n"
		"  --slo-ttft S       TTFT target, seconds (default 2)\n"
		"  --slo-tbt S        mean TBT target, seconds (default 0.1)\n"
		"  --time-scale X     the agents' time compression: targets are multiplied by it (default 1)\n"
		"  --max-output N     clamp output tokens (default: as in the trace)\n"
		"  --csv FILE         per-request records\n"
		"  --timeout S        wait for records after the last submit (default 120)\n"
		"  --resubmit         when the scheduler connection is lost, reconnect (backoff, for up to\n"
		"                     --timeout), register again and submit again every request without a\n"
		"                     record (at least once; TTFT still counts from the first submit)\n"
		"  --json             summary as JSON on stdout\n");
}

int nkv_cmd_replay(int argc, char **argv)
{
	struct replay_opts o = { .speed = 1, .ttft_slo = 2, .tbt_slo = 0.1, .timeout_s = 120, .progress = true,
				 .token = getenv("NKV_TOKEN") };
	const char *csv = NULL;
	bool json = false;
	double scale = 1;
	static const struct option opts[] = {
		{ "scheduler", 1, 0, 's' }, { "trace", 1, 0, 'f' }, { "rate-scale", 1, 0, 'x' }, { "limit", 1, 0, 'n' },
		{ "token", 1, 0, 't' }, { "abort-on-bad", 0, 0, 'a' }, { "slo-ttft", 1, 0, 'T' }, { "slo-tbt", 1, 0, 'B' },
		{ "time-scale", 1, 0, 'S' }, { "csv", 1, 0, 'c' }, { "timeout", 1, 0, 'w' }, { "json", 0, 0, 'j' },
		{ "max-output", 1, 0, 'o' }, { "help", 0, 0, 'h' }, { "token-file", 1, 0, 'F' }, { "resubmit", 0, 0, 'r' },
		/* hidden aliases for one release (errors and "did you mean" name the entries above) */
		{ "ttft-slo", 1, 0, 'T' }, { "tbt-slo", 1, 0, 'B' }, { "speed", 1, 0, 'x' }, { 0, 0, 0, 0 } };
	int c;
	optind = 1;
	while ((c = nkv_cli_getopt(argc, argv, "h", opts, NULL)) != -1) {
		double *dp = NULL;
		uint64_t u;
		switch (c) {
		case 's': o.sched = optarg; break;
		case 'f': o.trace = optarg; break;
		case 't': o.token = optarg; break;
		case 'F': {
			static char buf[NKV_PROTO_MAX_TOKEN + 1];
			if (nkv_secret_load(optarg, buf, sizeof(buf)) < 0) {
				fprintf(stderr, "netkv replay: --token-file: %s\n", nkv_last_error());
				return 2;
			}
			o.token = buf;
			break;
		}
		case 'a': o.abort_on_bad = true; break;
		case 'r': o.resubmit = true; break;
		case 'c': csv = optarg; break;
		case 'j': json = true; break;
		case 'x': dp = &o.speed; break;
		case 'T': dp = &o.ttft_slo; break;
		case 'B': dp = &o.tbt_slo; break;
		case 'S': dp = &scale; break;
		case 'w': dp = &o.timeout_s; break;
		case 'n':
		case 'o':
			if (nkv_cli_u64("replay", c == 'n' ? "--limit" : "--max-output", optarg, 1, UINT32_MAX, &u))
				return 2;
			if (c == 'n')
				o.limit = (size_t)u;
			else
				o.max_output = (uint32_t)u;
			break;
		case 'h': usage(stdout); return 0;
		default: return 2; /* nkv_cli_getopt said what is wrong */
		}
		if (dp && nkv_cli_positive("replay", nkv_cli_opt_typed(), optarg, INFINITY, dp))
			return 2;
		/* A slower replay than 1000x would wait for days on any real trace. */
		if (c == 'x' && nkv_cli_double("replay", nkv_cli_opt_typed(), optarg, 1e-3, 1e6, &o.speed))
			return 2;
	}
	if (optind < argc) {
		fprintf(stderr, "netkv replay: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (!o.sched || !o.trace) {
		fprintf(stderr, "netkv replay: --scheduler and --trace are required\n");
		usage(stderr);
		return 2;
	}
	o.ttft_slo *= scale;
	o.tbt_slo *= scale;
	o.progress = !json;
	struct replay_result r;
	int rc = nkv_replay_run(&o, &r);
	if (rc)
		fprintf(stderr, "netkv replay: %s\n", nkv_last_error());
	if (r.recs) {
		if (json) {
			char *s = nkv_replay_json(&r);
			printf("%s\n", s);
			free(s);
		} else {
			nkv_replay_print(stdout, &r);
		}
		if (csv && nkv_replay_csv(&r, csv)) {
			fprintf(stderr, "netkv replay: %s\n", nkv_last_error());
			rc = -EIO;
		}
	}
	nkv_replay_free(&r);
	return rc ? 1 : 0;
}
