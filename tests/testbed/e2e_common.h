/* Helpers shared by the multi-process testbed tests. */
#ifndef E2E_COMMON_H
#define E2E_COMMON_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cluster.h"
#include "netkv_proto.h"
#include "nkv_util.h"
#include "replay.h"

#define SKIP 77

/* The netkv binary and the repository's own excerpt of the conversation
 * trace (tests/data/mooncake: its first 400 requests, enough for every run
 * here). Both ship with the tree, so a missing one is a failure, not a skip. */
static inline int e2e_paths(char *netkv, size_t nl, char *trace, size_t tl, char *dir, size_t dl)
{
	const char *b = getenv("NKV_BUILD"), *x = getenv("NKV_TRACE_EXCERPTS");
	if (!b || !x) {
		fprintf(stderr, "NKV_BUILD / NKV_TRACE_EXCERPTS not set (run through ctest)\n");
		return 1;
	}
	snprintf(netkv, nl, "%s/netkv", b);
	snprintf(trace, tl, "%s/conversation_trace-first400.jsonl", x);
	if (access(netkv, X_OK) || access(trace, R_OK)) {
		fprintf(stderr, "%s or %s missing\n", netkv, trace);
		return 1;
	}
	snprintf(dir, dl, "/tmp/netkv-e2e-%d", (int)getpid());
	mkdir(dir, 0755);
	return 0;
}

/* Remove the work dir of a passing run (a failing one keeps its logs). */
/* A scheduler port for this test process, even (port + 1 is free for a data
 * port too) and below the ephemeral range (32768..), which the testbed's own
 * connections draw from. */
static inline int e2e_port(void)
{
	return 20000 + (int)(getpid() % 6000) * 2;
}

static inline void e2e_cleanup(const char *dir)
{
	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
}

/* Every request finished, every block verified, and each record adds up
 * and is causal: TTFT = queue + prefill + transfer + decode wait + first
 * step, the first step at least the perf model's fixed part, every token
 * out, bytes = verified blocks x block size. Returns the failures. */
static inline int e2e_check_records(const struct replay_result *r, size_t n, double min_step, uint64_t block_bytes)
{
	int fails = 0;
	if (r->n != n || r->finished != r->n || r->blocks_bad || !r->blocks_ok) {
		fprintf(stderr, "FAIL: %zu requests (expected %zu), %zu finished, %zu failed, %zu without record; "
				"blocks %zu ok, %zu bad\n", r->n, n, r->finished, r->failed, r->lost, r->blocks_ok, r->blocks_bad);
		fails++;
	}
	size_t shown = 0;
	for (size_t i = 0; i < r->n; i++) {
		const struct replay_rec *x = &r->recs[i];
		if (x->status)
			continue;
		double sum = x->queue + x->prefill + x->transfer + x->decode_wait + x->step;
		bool ok = fabs(sum - x->ttft) < 1e-6 && x->queue >= 0 && x->prefill >= 0 && x->transfer >= 0 &&
			  x->decode_wait >= -1e-9 && x->step >= min_step * 0.99 && x->ntokens == x->output &&
			  x->bytes == (uint64_t)x->blocks_ok * block_bytes && x->xfer_s <= x->transfer + 1e-6 &&
			  x->ttft < 30;
		if (!ok && shown++ < 5)
			fprintf(stderr,
				"FAIL record %zu: ttft %.6f vs queue %.6f + prefill %.6f + transfer %.6f + wait %.6f + step %.6f"
				" (min step %.6f), tokens %u/%u, bytes %llu for %u blocks, xfer %.6f\n",
				i, x->ttft, x->queue, x->prefill, x->transfer, x->decode_wait, x->step, min_step, x->ntokens,
				x->output, (unsigned long long)x->bytes, x->blocks_ok, x->xfer_s);
		if (!ok)
			fails++;
	}
	return fails;
}

/* The scheduler's STATUS JSON (malloc'ed), or NULL. */
static inline char *e2e_status_text(const char *addr, const char *token)
{
	int fd = nkv_proto_connect(addr, 2);
	if (fd < 0)
		return NULL;
	struct nkv_pconn pc;
	nkv_pconn_init(&pc, fd);
	struct nkv_msg m;
	nkv_msg_init(&m, NKV_MSG_REGISTER);
	m.role = NKV_ROLE_ADMIN;
	snprintf(m.token, sizeof(m.token), "%s", token);
	nkv_pconn_send_wait(&pc, &m);
	nkv_msg_init(&m, NKV_MSG_STATUS_REQ);
	nkv_pconn_send_wait(&pc, &m);
	char *out = NULL;
	while (!out && !nkv_pconn_recv_wait(&pc, &m, 3)) {
		if (m.type == NKV_MSG_STATUS)
			out = strdup(m.text);
		nkv_msg_clear(&m);
	}
	nkv_pconn_close(&pc);
	return out;
}

/* The prefill agents' push statistics, from the line each logs at exit
 * ("pushed N requests: P pages in R ranges"), summed over the
 * comma-separated instances. Returns how many logs had the line. */
static inline int e2e_push_stats(const char *dir, const char *prefills, unsigned long long *pushes,
				 unsigned long long *pages, unsigned long long *ranges)
{
	char list[256], *save = NULL;
	int found = 0;
	*pushes = *pages = *ranges = 0;
	snprintf(list, sizeof(list), "%s", prefills);
	for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		char path[512], line[512];
		snprintf(path, sizeof(path), "%s/agent-%s.log", dir, t);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		while (fgets(line, sizeof(line), f)) {
			const char *p = strstr(line, "pushed ");
			unsigned long long a, b, c;
			if (p && sscanf(p, "pushed %llu requests: %llu pages in %llu ranges", &a, &b, &c) == 3) {
				*pushes += a, *pages += b, *ranges += c;
				found++;
			}
		}
		fclose(f);
	}
	return found;
}

/* Print the tail of every log in dir (a run inside a VM loses its files). */
static inline void e2e_dump_logs(const char *dir)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "for f in '%s'/*.log; do echo \"--- $f\"; tail -n 25 \"$f\"; done >&2", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not list the logs in %s\n", dir);
}

#endif
