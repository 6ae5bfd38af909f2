/*
 * The `netkv` command table's lookup and dispatch, "did you mean" for typos,
 * the help listings (nkv_cli.h), and the option parsers commands share, so
 * that one bad value reads the same in every command.
 */
#include "nkv_cli.h"
#include "nkv_util.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

const struct nkv_cli_cmd *nkv_cli_find(const struct nkv_cli_cmd *table, const char *name)
{
	for (const struct nkv_cli_cmd *c = table; c && c->name; c++)
		if (!strcmp(c->name, name))
			return c;
	return NULL;
}

unsigned nkv_cli_edit_distance(const char *a, const char *b)
{
	/* Two rows of the dynamic-programming table; command words are short. */
	size_t la = strlen(a), lb = strlen(b);
	unsigned row[2][65], *prev = row[0], *cur = row[1];

	if (la > 64 || lb > 64)
		return la > lb ? (unsigned)la : (unsigned)lb; /* no command is that long */
	for (size_t j = 0; j <= lb; j++)
		prev[j] = (unsigned)j;
	for (size_t i = 1; i <= la; i++) {
		unsigned *t;

		cur[0] = (unsigned)i;
		for (size_t j = 1; j <= lb; j++) {
			unsigned del = prev[j] + 1, ins = cur[j - 1] + 1, sub = prev[j - 1] + (a[i - 1] != b[j - 1]);

			cur[j] = del < ins ? del : ins;
			if (sub < cur[j])
				cur[j] = sub;
		}
		t = prev, prev = cur, cur = t;
	}
	return prev[lb];
}

const char *nkv_cli_suggest(const struct nkv_cli_cmd *table, const char *word)
{
	size_t len = strlen(word);
	unsigned best = ~0u, limit = len / 3 > 2 ? (unsigned)(len / 3) : 2;
	const char *name = NULL;

	for (const struct nkv_cli_cmd *c = table; c && c->name; c++) {
		unsigned d = nkv_cli_edit_distance(word, c->name);

		if (d < best)
			best = d, name = c->name;
	}
	/* Not a suggestion when the typo is most of the word ("ab" for "sim"). */
	return best <= limit && best < len ? name : NULL;
}

static void print_entry(FILE *f, const char *group, const char *name, const char *summary)
{
	char full[64];

	snprintf(full, sizeof(full), "%s%s%s", group ? group : "", group ? " " : "", name);
	fprintf(f, "  %-18s %s\n", full, summary ? summary : "");
}

void nkv_cli_print_group(FILE *f, const struct nkv_cli_cmd *g)
{
	fprintf(f, "usage: netkv %s <", g->name);
	for (const struct nkv_cli_cmd *s = g->subs; s && s->name; s++)
		fprintf(f, "%s%s", s == g->subs ? "" : "|", s->name);
	fprintf(f, "> [options]   (each takes --help)\n");
	if (g->run)
		print_entry(f, NULL, g->name, g->summary);
	for (const struct nkv_cli_cmd *s = g->subs; s && s->name; s++)
		print_entry(f, g->name, s->name, s->summary);
}

void nkv_cli_print_table(FILE *f, const struct nkv_cli_cmd *table)
{
	fprintf(f, "usage: netkv <command> [options]   (netkv <command> --help for details)\n\ncommands:\n");
	for (const struct nkv_cli_cmd *c = table; c && c->name; c++) {
		if (c->run || !c->subs)
			print_entry(f, NULL, c->name, c->summary);
		for (const struct nkv_cli_cmd *s = c->subs; s && s->name; s++)
			print_entry(f, c->name, s->name, s->summary);
	}
}

static int unknown(const char *group, const char *word, const struct nkv_cli_cmd *table)
{
	const char *near = nkv_cli_suggest(table, word);
	const char *sp = group ? " " : "";

	if (!group)
		group = "";
	if (near)
		fprintf(stderr, "netkv: unknown command '%s%s%s'; did you mean '%s%s%s'?\n", group, sp, word, group, sp,
			near);
	else
		fprintf(stderr, "netkv: unknown command '%s%s%s' (netkv %s%s--help lists them)\n", group, sp, word, group,
			sp);
	return 2;
}

static bool is_help(const char *s)
{
	return !strcmp(s, "--help") || !strcmp(s, "-h");
}

int nkv_cli_dispatch(const struct nkv_cli_cmd *table, int argc, char **argv)
{
	/* The name a subcommand sees as argv[0]: "bench transfer". One dispatch
	 * per call chain, so one buffer does. */
	static char full[128];
	const struct nkv_cli_cmd *c, *s;

	if (argc < 2)
		return 2;
	nkv_cli_set_cmdline(argc, argv); /* before argv[2] becomes "GROUP SUB" */
	c = nkv_cli_find(table, argv[1]);
	if (!c)
		return unknown(NULL, argv[1], table);
	if (!c->subs || (argc < 3 && c->run))
		return c->run(argc - 1, argv + 1);
	if (argc < 3) {
		fprintf(stderr, "netkv %s: needs a subcommand:\n", c->name);
		nkv_cli_print_group(stderr, c);
		return 2;
	}
	s = nkv_cli_find(c->subs, argv[2]);
	if (s) {
		snprintf(full, sizeof(full), "%s %s", c->name, s->name);
		argv[2] = full;
		return s->run(argc - 2, argv + 2);
	}
	/* A group with a default action takes its options (`netkv demo --json`)
	 * and its own --help; a word close to a subcommand is still a typo. */
	if (c->run && (argv[2][0] == '-' || !nkv_cli_suggest(c->subs, argv[2])))
		return c->run(argc - 1, argv + 1);
	if (is_help(argv[2])) {
		nkv_cli_print_group(stdout, c);
		return 0;
	}
	return unknown(c->name, argv[2], c->subs);
}

/* --- shared option parsers --- */

static int bad(const char *cmd, const char *opt, const char *arg, const char *want)
{
	fprintf(stderr, "netkv %s: %s '%s': expected %s\n", cmd, opt, arg, want);
	return -EINVAL;
}

int nkv_cli_double(const char *cmd, const char *opt, const char *arg, double lo, double hi, double *out)
{
	char want[96];
	double v;

	if (nkv_parse_double(arg, &v) || !(v >= lo && v <= hi)) {
		if (isinf(hi))
			snprintf(want, sizeof(want), "a number >= %g", lo);
		else
			snprintf(want, sizeof(want), "a number in %g .. %g", lo, hi);
		return bad(cmd, opt, arg, want);
	}
	*out = v;
	return 0;
}

int nkv_cli_positive(const char *cmd, const char *opt, const char *arg, double hi, double *out)
{
	char want[96];
	double v;

	if (nkv_parse_double(arg, &v) || !(v > 0 && v <= hi)) {
		if (isinf(hi))
			snprintf(want, sizeof(want), "a number > 0");
		else
			snprintf(want, sizeof(want), "a number > 0 and <= %g", hi);
		return bad(cmd, opt, arg, want);
	}
	*out = v;
	return 0;
}

int nkv_cli_u64(const char *cmd, const char *opt, const char *arg, uint64_t lo, uint64_t hi, uint64_t *out)
{
	char want[96];
	uint64_t v;

	if (nkv_parse_u64(arg, &v) || v < lo || v > hi) {
		if (hi == UINT64_MAX)
			snprintf(want, sizeof(want), "an integer >= %llu", (unsigned long long)lo);
		else
			snprintf(want, sizeof(want), "an integer in %llu .. %llu", (unsigned long long)lo,
				 (unsigned long long)hi);
		return bad(cmd, opt, arg, want);
	}
	*out = v;
	return 0;
}

int nkv_cli_u32(const char *cmd, const char *opt, const char *arg, uint32_t lo, uint32_t hi, uint32_t *out)
{
	uint64_t v;
	int rc = nkv_cli_u64(cmd, opt, arg, lo, hi == UINT32_MAX ? UINT64_MAX : hi, &v);

	if (!rc && v > UINT32_MAX)
		rc = bad(cmd, opt, arg, "an integer that fits 32 bits");
	if (!rc)
		*out = (uint32_t)v;
	return rc;
}

int nkv_cli_backend(const char *cmd, const char *arg, int *verbs)
{
	if (!strcmp(arg, "tcp"))
		*verbs = 0;
	else if (!strcmp(arg, "verbs"))
		*verbs = 1;
	else
		return bad(cmd, "--backend", arg, "tcp or verbs");
	return 0;
}

int nkv_cli_streams(const char *cmd, const char *arg, uint32_t *out)
{
	return nkv_cli_u32(cmd, "--streams", arg, 1, NKV_CLI_MAX_STREAMS, out);
}

int nkv_cli_time_scale(const char *cmd, const char *arg, double *out)
{
	return nkv_cli_positive(cmd, "--time-scale", arg, INFINITY, out);
}

int nkv_cli_slo(const char *cmd, const char *opt, const char *arg, double *out)
{
	return nkv_cli_positive(cmd, opt, arg, INFINITY, out);
}

int nkv_cli_model(const char *cmd, const char *arg, const char **out)
{
	if (!*arg)
		return bad(cmd, "--model", arg, "a model preset name or a path to a config.json");
	*out = arg;
	return 0;
}

int nkv_cli_perf(const char *cmd, const char *arg, const char **out)
{
	const char *sl = strchr(arg, '/');

	if (!*arg || sl == arg || (sl && (!sl[1] || strchr(sl + 1, '/'))))
		return bad(cmd, "--perf", arg, "MODEL or MODEL/GPU");
	*out = arg;
	return 0;
}
