/*
 * Option errors of every netkv command in one place: getopt_long with its
 * own messages off, one line per problem, and "did you mean" for a misspelt
 * long option by the same edit distance as commands (cli.c). Without this,
 * getopt printed its message and the command printed its own after it.
 */
#include "nkv_cli.h"

#include <stdbool.h>
#include <string.h>

/* The first entry of longopts that means the same as o: its --help spelling. */
static const struct option *canonical(const struct option *longopts, const struct option *o)
{
	for (const struct option *c = longopts; c->name; c++)
		if (c->val == o->val && c->flag == o->flag && c->has_arg == o->has_arg)
			return c;
	return o;
}

const char *nkv_cli_suggest_option(const struct option *longopts, const char *word)
{
	size_t len = strlen(word);
	unsigned best = ~0u, limit = len / 3 > 2 ? (unsigned)(len / 3) : 2;
	const struct option *near = NULL;

	for (const struct option *o = longopts; o && o->name; o++) {
		unsigned d = nkv_cli_edit_distance(word, o->name);

		if (d < best)
			best = d, near = o;
	}
	if (!near || best > limit || best >= len)
		return NULL;
	return canonical(longopts, near)->name;
}

static const struct option *by_val(const struct option *longopts, int val)
{
	for (const struct option *o = longopts; o && o->name; o++)
		if (!o->flag && o->val == val)
			return o;
	return NULL;
}

/* Long options that start with word (an abbreviation getopt found ambiguous). */
static void print_prefixed(FILE *f, const struct option *longopts, const char *word, size_t wl)
{
	const char *sep = "";

	for (const struct option *o = longopts; o && o->name; o++)
		if (!strncmp(o->name, word, wl) && canonical(longopts, o) == o) {
			fprintf(f, "%s--%s", sep, o->name);
			sep = ", ";
		}
}

static int complain(const char *cmd, const char *tok, int c, const struct option *longopts)
{
	if (tok && tok[0] == '-' && tok[1] == '-') {
		/* A long option: "--name" or "--name=value". */
		char word[64];
		const char *eq = strchr(tok + 2, '=');
		size_t wl = eq ? (size_t)(eq - tok - 2) : strlen(tok + 2);
		const struct option *o = optopt ? by_val(longopts, optopt) : NULL;
		const char *near;
		unsigned n = 0;

		if (wl >= sizeof(word))
			wl = sizeof(word) - 1;
		memcpy(word, tok + 2, wl);
		word[wl] = '\0';
		if (c == ':' || (o && o->has_arg == required_argument)) {
			fprintf(stderr, "netkv %s: option '--%s' needs a value\n", cmd, o ? o->name : word);
			return '?';
		}
		if (o) {
			fprintf(stderr, "netkv %s: option '--%s' takes no value\n", cmd, o->name);
			return '?';
		}
		for (const struct option *p = longopts; p && p->name; p++)
			n += !strncmp(p->name, word, wl) && canonical(longopts, p) == p;
		if (n > 1 && wl) {
			fprintf(stderr, "netkv %s: option '--%s' is ambiguous (", cmd, word);
			print_prefixed(stderr, longopts, word, wl);
			fprintf(stderr, ")\n");
			return '?';
		}
		near = nkv_cli_suggest_option(longopts, word);
		if (near)
			fprintf(stderr, "netkv %s: unknown option '--%s'; did you mean '--%s'?\n", cmd, word, near);
		else
			fprintf(stderr, "netkv %s: unknown option '--%s' (netkv %s --help lists them)\n", cmd, word, cmd);
		return '?';
	}
	if (c == ':')
		fprintf(stderr, "netkv %s: option '-%c' needs a value\n", cmd, optopt);
	else if (optopt > 0x20 && optopt < 0x7f)
		fprintf(stderr, "netkv %s: unknown option '-%c' (netkv %s --help lists them)\n", cmd, optopt, cmd);
	else
		fprintf(stderr, "netkv %s: unknown option '%s' (netkv %s --help lists them)\n", cmd, tok ? tok : "?",
			cmd);
	return '?';
}

static char typed[72];

const char *nkv_cli_opt_typed(void)
{
	return typed;
}

int nkv_cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts, int *longindex)
{
	/* ':' first (after a '+' or '-' mode) so a missing value returns ':'. */
	char so[128];
	size_t mode = shortopts[0] == '+' || shortopts[0] == '-';
	int before = optind, c, li = -1;

	if (strlen(shortopts) + 2 > sizeof(so))
		return '?';
	memcpy(so, shortopts, mode);
	so[mode] = ':';
	strcpy(so + mode + 1, shortopts + mode + (shortopts[mode] == ':'));
	opterr = 0;
	optopt = 0;
	c = getopt_long(argc, argv, so, longopts, &li);
	if (longindex)
		*longindex = li;
	if (c != '?' && c != ':') {
		/* The spelling given, for messages about its value: "--gen-rate", "-o". */
		if (li >= 0)
			snprintf(typed, sizeof(typed), "--%s", longopts[li].name);
		else
			snprintf(typed, sizeof(typed), "-%c", c > 0x20 && c < 0x7f ? c : '?');
		return c;
	}
	/* The token getopt stopped at: the one it just stepped over, or (a short
	 * option inside a cluster like -aZ) the one it is still in. */
	{
		int i = optind > before ? optind - 1 : optind;
		const char *tok = i > 0 && i < argc ? argv[i] : NULL;

		return complain(argv[0], tok, c, longopts);
	}
}
