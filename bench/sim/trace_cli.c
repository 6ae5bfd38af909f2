/* netkv trace gen | stats: synthetic Mooncake traces and a trace's figures. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nkv_cli.h"
#include "nkv_json_out.h"
#include "nkv_util.h"
#include "sim_cli.h"

int nkv_cmd_trace_gen(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "profile", required_argument, 0, 'p' }, { "requests", required_argument, 0, 'n' },
		{ "rate", required_argument, 0, 'r' },    { "prefix-share", required_argument, 0, 's' },
		{ "context-scale", required_argument, 0, 'c' }, { "seed", required_argument, 0, 'S' },
		{ "output", required_argument, 0, 'o' },  { "help", no_argument, 0, 'h' }, { 0 },
	};
	struct nkv_tracegen_params p;
	const char *outp = "-", *why = NULL;
	int c;
	double d;

	nkv_tracegen_defaults(&p);
	optind = 1;
	while ((c = nkv_cli_getopt(argc, argv, "o:h", lo, NULL)) != -1) {
		switch (c) {
		case 'p':
			if (nkv_profile_parse(optarg, &p.profile))
				goto bad;
			break;
		case 'n':
			if (nkv_parse_u32(optarg, &p.requests))
				goto bad;
			if (!p.requests) {
				why = "must be at least 1";
				goto bad;
			}
			break;
		case 'r':
		case 's':
		case 'c':
			if (nkv_parse_double(optarg, &d))
				goto bad;
			if (c != 's' && !(d > 0)) {
				why = "must be > 0";
				goto bad;
			}
			if (c == 's' && !(d >= 0 && d <= 1)) {
				why = "must be in 0..1";
				goto bad;
			}
			*(c == 'r' ? &p.rate : c == 's' ? &p.prefix_share : &p.context_scale) = d;
			break;
		case 'S':
			if (nkv_parse_u64(optarg, &p.seed))
				goto bad;
			break;
		case 'o': outp = optarg; break;
		case 'h':
			printf("usage: netkv trace gen --profile chatbot|rag|agent [options]\n"
			       "Write a synthetic trace in Mooncake JSONL (timestamp ms, input_length, output_length, hash_ids).\n\n"
			       "  --profile P        chatbot (multi-turn), rag (shared documents), agent (long growing contexts)\n"
			       "  --requests N       default 2000\n"
			       "  --rate R           Poisson arrivals per second, default 20\n"
			       "  --prefix-share X   rag: share of requests on a shared document, default 0.5\n"
			       "  --context-scale X  multiply lengths (up to 512), default 1\n"
			       "  --seed N           default 1 (same seed, same file)\n"
			       "  -o, --output FILE  default stdout\n");
			return 0;
		default:
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "netkv trace gen: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	FILE *f = strcmp(outp, "-") ? fopen(outp, "w") : stdout;
	if (!f) {
		fprintf(stderr, "netkv trace gen: %s: %s\n", outp, strerror(errno));
		return 1;
	}
	int ret = nkv_tracegen_write(&p, f);
	if (f != stdout && fclose(f) && !ret)
		ret = nkv_err(errno, "%s: %s", outp, strerror(errno));
	if (ret) {
		fprintf(stderr, "netkv trace gen: %s\n", nkv_last_error());
		return 1;
	}
	return 0;
bad:
	for (int i = 0; lo[i].name; i++)
		if (lo[i].val == c)
			fprintf(stderr, "netkv trace gen: --%s '%s': %s\n", lo[i].name, optarg, why ? why : nkv_last_error());
	return 2;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

int nkv_cmd_trace_stats(int argc, char **argv)
{
	static const struct option lo[] = { { "json", no_argument, 0, 'j' }, { "help", no_argument, 0, 'h' }, { 0 } };
	bool json = false;
	int c;

	optind = 1;
	while ((c = nkv_cli_getopt(argc, argv, "h", lo, NULL)) != -1) {
		if (c == 'j')
			json = true;
		else if (c == 'h') {
			printf("usage: netkv trace stats [--json] FILE\nRequests, duration, rate, input/output length "
			       "percentiles and prefix reuse of a Mooncake JSONL trace.\n");
			return 0;
		} else
			return 2;
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "netkv trace stats: need exactly one FILE (see --help)\n");
		return 2;
	}
	struct nkv_trace *t;
	if (nkv_trace_load(argv[optind], NULL, &t)) {
		fprintf(stderr, "netkv trace stats: %s\n", nkv_last_error());
		return 1;
	}
	if (!t->n) {
		fprintf(stderr, "netkv trace stats: %s: no requests in it\n", argv[optind]);
		nkv_trace_free(t);
		return 1;
	}
	size_t n = t->n;
	uint32_t *in = malloc((n ? n : 1) * sizeof(uint32_t)), *out = malloc((n ? n : 1) * sizeof(uint32_t));
	struct nkv_prefix_index *x = NULL;
	uint64_t blocks = 0, reused = 0;
	double sin = 0, sout = 0;
	if (!in || !out || nkv_prefix_create(1, &x)) {
		fprintf(stderr, "netkv trace stats: out of memory\n");
		free(in), free(out), nkv_trace_free(t);
		return 1;
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t depth;

		in[i] = t->reqs[i].input_len;
		out[i] = t->reqs[i].output_len;
		sin += in[i];
		sout += out[i];
		nkv_prefix_match(x, t->reqs[i].hash_ids, t->reqs[i].nblocks, &depth);
		reused += depth;
		blocks += t->reqs[i].nblocks;
		nkv_prefix_add(x, 0, t->reqs[i].hash_ids, t->reqs[i].nblocks);
	}
	qsort(in, n, sizeof(uint32_t), cmp_u32);
	qsort(out, n, sizeof(uint32_t), cmp_u32);
	double dur = n ? (double)(t->reqs[n - 1].timestamp_ms - t->reqs[0].timestamp_ms) / 1000 : 0;
#define P(a, q) (n ? a[(size_t)((double)(n - 1) * (q))] : 0)
	if (json) {
		json_t *j = json_pack("{s:s, s:I, s:f, s:f, s:f, s:I, s:I, s:I, s:f, s:I, s:I, s:I, s:f}", "file",
				      argv[optind], "requests", (json_int_t)n, "duration_s", dur, "rate_per_s",
				      dur > 0 ? (double)n / dur : 0.0, "input_mean", n ? sin / (double)n : 0.0, "input_p50",
				      (json_int_t)P(in, 0.5), "input_p90", (json_int_t)P(in, 0.9), "input_p99",
				      (json_int_t)P(in, 0.99), "output_mean", n ? sout / (double)n : 0.0, "output_p50",
				      (json_int_t)P(out, 0.5), "output_p90", (json_int_t)P(out, 0.9), "output_p99",
				      (json_int_t)P(out, 0.99), "prefix_reuse", blocks ? (double)reused / (double)blocks : 0.0);
		nkv_json_print(stdout, j);
	} else {
		printf("%s: %zu requests over %.1f s (%.2f req/s)\n", argv[optind], n, dur, dur > 0 ? (double)n / dur : 0);
		printf("  input tokens   mean %.0f  p50 %u  p90 %u  p99 %u\n", n ? sin / (double)n : 0, P(in, 0.5),
		       P(in, 0.9), P(in, 0.99));
		printf("  output tokens  mean %.0f  p50 %u  p90 %u  p99 %u\n", n ? sout / (double)n : 0, P(out, 0.5),
		       P(out, 0.9), P(out, 0.99));
		printf("  prefix reuse   %.1f%% of blocks seen before (leading-prefix match, unbounded cache)\n",
		       blocks ? 100.0 * (double)reused / (double)blocks : 0);
	}
#undef P
	nkv_prefix_free(x);
	free(in), free(out);
	nkv_trace_free(t);
	return 0;
}
