/*
 * netkv trace convert | sort: the command side of trace_convert.c (options,
 * output file, exit codes: 0 done, 2 bad input or usage, 1 I/O), apart from
 * trace_cli.c so each file keeps one job.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "nkv_cli.h"
#include "nkv_util.h"
#include "sim_cli.h"
#include "trace_convert.h"

static void convert_usage(FILE *f)
{
	fprintf(f,
		"usage: netkv trace convert --from azure|burstgpt|sharegpt [options] FILE\n"
		"Write a public LLM trace as Mooncake JSONL (timestamp ms from 0, input_length, output_length,\n"
		"hash_ids of 512-token blocks), sorted by time, for netkv sim/replay.\n\n"
		"  --from SRC          azure:    Azure LLM inference trace CSV TIMESTAMP,ContextTokens,GeneratedTokens\n"
		"                                (TIMESTAMP a UTC date and time, '2023-11-16 18:15:46.6805900')\n"
		"                      burstgpt: BurstGPT CSV Timestamp,Model,Request tokens,Response tokens,\n"
		"                                Total tokens,Log Type (Timestamp in s)\n"
		"                      sharegpt: vLLM's benchmark dataset, a JSON array of {\"id\", \"conversations\":\n"
		"                                [{\"from\",\"value\"},...]}: first turn = prompt, second = completion\n"
		"                                (fewer than two turns: skipped). No tokenizer: tokens =\n"
		"                                ceil(UTF-8 characters / 4). No times: Poisson arrivals, --rate/--seed\n"
		"  --prefix-model M    how hash_ids are made (these traces record no prefix sharing):\n"
		"                      none      every block a fresh id: no shared prefixes (default)\n"
		"                      system:N  every request starts with the same N-token system prompt:\n"
		"                                its whole 512-token blocks share ids, the rest are fresh\n"
		"                      content   sharegpt: chained hash of each 2048-character block of the\n"
		"                                prompt, so identical leading text shares ids\n"
		"  --rate R            sharegpt: arrivals per second (Poisson), default 1\n"
		"  --seed N            sharegpt: default 1 (same seed, same file)\n"
		"  --limit N           the first N requests of the file only\n"
		"  -o, --output FILE   default stdout\n"
		"Rows with 0 input or output tokens are skipped and counted on stderr. Bad input (FILE:LINE\n"
		"named; lines at most %d bytes) exits 2, I/O errors 1.\n",
		NKV_CONV_MAX_LINE);
}

/* Output to FILE (removed again on failure) or stdout. */
static FILE *open_out(const char *cmd, const char *path)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "w") : stdout;

	if (!f)
		fprintf(stderr, "netkv %s: %s: %s\n", cmd, path, strerror(errno));
	return f;
}

static int close_out(FILE *f, const char *path, int rc)
{
	if (f != stdout) {
		if (fclose(f) && !rc)
			rc = nkv_err(errno, "%s: %s", path, strerror(errno));
		if (rc)
			unlink(path);
	}
	return rc;
}

int nkv_cmd_trace_convert(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "from", required_argument, 0, 'f' },  { "prefix-model", required_argument, 0, 'p' },
		{ "rate", required_argument, 0, 'r' },  { "seed", required_argument, 0, 'S' },
		{ "limit", required_argument, 0, 'n' }, { "output", required_argument, 0, 'o' },
		{ "help", no_argument, 0, 'h' },        { 0 },
	};
	struct nkv_conv_opts o;
	struct nkv_conv_stats st;
	const char *outp = "-";
	bool from_set = false;
	uint64_t limit;
	int c, li = 0, rc = 0;
	FILE *f;

	nkv_conv_defaults(&o);
	optind = 1;
	while ((c = nkv_cli_getopt(argc, argv, "o:h", lo, &li)) != -1) {
		switch (c) {
		case 'f': rc = nkv_conv_from_parse(optarg, &o.from), from_set = !rc; break;
		case 'p': rc = nkv_conv_prefix_parse(optarg, &o); break;
		case 'r':
			rc = nkv_cli_positive("trace convert", "--rate", optarg, NKV_CONV_MAX_RATE, &o.rate) ? -EINVAL : 0;
			if (rc)
				return 2; /* printed */
			break;
		case 'S':
			rc = nkv_parse_u64(optarg, &o.seed);
			if (!rc && !o.seed)
				rc = nkv_err(EINVAL, "must be non-zero");
			break;
		case 'n':
			rc = nkv_parse_u64(optarg, &limit);
			if (!rc && (!limit || limit > SIZE_MAX / 2))
				rc = nkv_err(EINVAL, "must be at least 1");
			o.limit = (size_t)limit;
			break;
		case 'o': outp = optarg; break;
		case 'h': convert_usage(stdout); return 0;
		default: return 2; /* nkv_cli_getopt said what is wrong */
		}
		if (rc) {
			fprintf(stderr, "netkv trace convert: --%s '%s': %s\n", c == 'o' ? "output" : lo[li].name, optarg,
				nkv_last_error());
			return 2;
		}
	}
	if (!from_set || optind + 1 != argc) {
		fprintf(stderr, "netkv trace convert: need --from SRC and exactly one FILE (see --help)\n");
		return 2;
	}
	if (o.prefix == NKV_CONV_PREFIX_CONTENT && o.from != NKV_CONV_SHAREGPT) {
		fprintf(stderr, "netkv trace convert: --prefix-model content needs the prompt text: --from sharegpt only\n");
		return 2;
	}
	if (!(f = open_out("trace convert", outp)))
		return 1;
	rc = close_out(f, outp, nkv_trace_convert(argv[optind], &o, f, &st));
	if (rc) {
		fprintf(stderr, "netkv trace convert: %s\n", nkv_last_error());
		return rc == -EINVAL ? 2 : 1;
	}
	fprintf(stderr, "netkv trace convert: %zu requests written of %zu read", st.written, st.rows);
	if (st.skipped_zero)
		fprintf(stderr, "; %zu skipped with 0 input or output tokens", st.skipped_zero);
	if (st.skipped_short)
		fprintf(stderr, "; %zu skipped with fewer than two turns", st.skipped_short);
	fputc('\n', stderr);
	return 0;
}

int nkv_cmd_trace_sort(int argc, char **argv)
{
	static const struct option lo[] = { { "output", required_argument, 0, 'o' }, { "help", no_argument, 0, 'h' },
					    { 0 } };
	const char *outp = "-";
	size_t n = 0;
	int c, rc;
	FILE *f;

	optind = 1;
	while ((c = nkv_cli_getopt(argc, argv, "o:h", lo, NULL)) != -1) {
		if (c == 'o')
			outp = optarg;
		else if (c == 'h') {
			printf("usage: netkv trace sort [-o FILE] FILE\n"
			       "Write a Mooncake JSONL trace's lines in timestamp order (the readers refuse a file whose\n"
			       "timestamps go back). Stable: equal timestamps keep their order; lines are copied byte for\n"
			       "byte, blank ones dropped. Only timestamps are checked (integer ms; FILE:LINE on error, exit 2).\n"
			       "  -o, --output FILE  default stdout; not FILE itself\n");
			return 0;
		} else {
			return 2;
		}
	}
	if (optind + 1 != argc) {
		fprintf(stderr, "netkv trace sort: need exactly one FILE (see --help)\n");
		return 2;
	}
	if (!strcmp(outp, argv[optind])) {
		fprintf(stderr, "netkv trace sort: -o %s is the input: write elsewhere, then move it\n", outp);
		return 2;
	}
	if (!(f = open_out("trace sort", outp)))
		return 1;
	rc = close_out(f, outp, nkv_trace_sort(argv[optind], f, &n));
	if (rc) {
		fprintf(stderr, "netkv trace sort: %s\n", nkv_last_error());
		return rc == -EINVAL ? 2 : 1;
	}
	fprintf(stderr, "netkv trace sort: %zu requests\n", n);
	return 0;
}
