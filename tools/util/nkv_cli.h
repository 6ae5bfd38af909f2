/*
 * The one command-line mechanism of `netkv`: a nested table of commands
 * (group -> subcommand), its lookup with "did you mean" for typos, help
 * listings, and the option parsers many commands share, so every command
 * reports a bad value the same way:
 *
 *     netkv CMD: --opt 'VALUE': expected ...
 *
 * Each part of netkv declares its commands in a header of its own
 * (topo/topo_cli.h, bench/bench_cli.h, ...); tools/commands.c builds the
 * table from them.
 */
#ifndef NKV_CLI_H
#define NKV_CLI_H

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

/*
 * One entry. A leaf has run and no subs. A group has subs (ended by an entry
 * whose name is NULL) and, optionally, run: its default action when the word
 * after the group names none of its subcommands (`netkv demo`, `netkv
 * scheduler --topo F`). A command gets argv[0] set to its full name
 * ("bench transfer"), returns the process exit status (0 ok, 1 failure,
 * 2 usage).
 */
struct nkv_cli_cmd {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *summary; /* one line for the listings */
	const struct nkv_cli_cmd *subs;
};

/* Runs the command argv[1..] names in table (argv[0] is the program, "netkv"):
 * unknown words get "unknown command 'X'; did you mean 'Y'?" and 2, a group
 * without a default action and no subcommand its listing on stderr and 2,
 * `GROUP --help` its listing on stdout and 0. Handles no global options. */
int nkv_cli_dispatch(const struct nkv_cli_cmd *table, int argc, char **argv);

/* The entry called name in a NULL-name-terminated table, or NULL. */
const struct nkv_cli_cmd *nkv_cli_find(const struct nkv_cli_cmd *table, const char *name);
/* The name in table nearest to word by edit distance when it is close
 * (distance <= 2, or <= a third of word's length for longer words), else NULL. */
const char *nkv_cli_suggest(const struct nkv_cli_cmd *table, const char *word);
/* Levenshtein distance (insert, delete, substitute each cost 1). */
unsigned nkv_cli_edit_distance(const char *a, const char *b);

/*
 * getopt_long for a netkv command whose argv[0] is its full name (dispatch
 * sets it: "sim run"). getopt's own messages are off; each problem prints one
 * line and returns '?', which the caller turns into exit status 2 without
 * printing more:
 *     netkv sim run: unknown option '--slo-ttf'; did you mean '--slo-ttft'?
 *     netkv sim run: option '--trace' needs a value
 * A suggestion names the first entry of longopts with the same val, so
 * listing the spelling shown in --help before its hidden aliases makes
 * "did you mean" offer that one.
 */
int nkv_cli_getopt(int argc, char **argv, const char *shortopts, const struct option *longopts, int *longindex);
/* The spelling of the option nkv_cli_getopt() last returned, as given
 * ("--gen-rate", "--rate", "-o"), so a message about its value names what
 * the user typed, alias or not. */
const char *nkv_cli_opt_typed(void);
/* The long option of longopts nearest to word ("slo-ttf", no dashes) when it
 * is close (as nkv_cli_suggest), as its first spelling (same val), else NULL. */
const char *nkv_cli_suggest_option(const struct option *longopts, const char *word);

/* The command line as typed (argv joined, shell-quoted where needed);
 * nkv_cli_dispatch records it, JSON results carry it in their meta. "" when
 * nothing was recorded. */
void nkv_cli_set_cmdline(int argc, char **argv);
const char *nkv_cli_cmdline(void);

/*
 * Progress on stderr that only a terminal sees: nkv_cli_progress() rewrites
 * one line with '\r' when stderr is a terminal and writes nothing otherwise
 * (a log gets no '\r' noise); nkv_cli_progress_end() clears that line. A
 * command that reports progress this way prints a one-line summary when it
 * finishes, so a log sees the outcome.
 */
void nkv_cli_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void nkv_cli_progress_end(void);
/* Whether nkv_cli_progress() draws anything (stderr is a terminal). */
int nkv_cli_progress_on(void);

/* `netkv --help`: every group with its subcommands, one line each. */
void nkv_cli_print_table(FILE *f, const struct nkv_cli_cmd *table);
/* `netkv GROUP --help`: the group's subcommands. */
void nkv_cli_print_group(FILE *f, const struct nkv_cli_cmd *group);

/*
 * Shared option parsers. Each parses arg for option opt ("--streams") of
 * command cmd ("bench transfer"); on a bad value it prints
 *     netkv CMD: --opt 'VALUE': expected ...
 * to stderr and returns -EINVAL (callers exit 2), else 0.
 */
/* A finite double in [lo, hi]. */
int nkv_cli_double(const char *cmd, const char *opt, const char *arg, double lo, double hi, double *out);
/* A finite double in (0, hi] (hi may be INFINITY): rates, scales, SLOs. */
int nkv_cli_positive(const char *cmd, const char *opt, const char *arg, double hi, double *out);
/* An unsigned integer in [lo, hi]. */
int nkv_cli_u32(const char *cmd, const char *opt, const char *arg, uint32_t lo, uint32_t hi, uint32_t *out);
int nkv_cli_u64(const char *cmd, const char *opt, const char *arg, uint64_t lo, uint64_t hi, uint64_t *out);

/* --backend tcp|verbs: *verbs = 0 for tcp, 1 for verbs. */
int nkv_cli_backend(const char *cmd, const char *arg, int *verbs);
/* --streams/-q N: TCP streams per connection, 1..NKV_CLI_MAX_STREAMS. */
#define NKV_CLI_MAX_STREAMS 64
int nkv_cli_streams(const char *cmd, const char *arg, uint32_t *out);
/* --time-scale X: emulated compute times x X, X > 0. */
int nkv_cli_time_scale(const char *cmd, const char *arg, double *out);
/* An SLO in seconds, > 0 and finite; opt is the command's spelling
 * (--slo-ttft, --slo-tbt). */
int nkv_cli_slo(const char *cmd, const char *opt, const char *arg, double *out);
/* --model NAME|PATH (a preset or a config.json): non-empty; the lookup (nkv_model_find) stays with the caller. */
int nkv_cli_model(const char *cmd, const char *arg, const char **out);
/* --perf MODEL or MODEL/GPU ("llama3-8b/h100"): no empty part; the lookup stays with the caller. */
int nkv_cli_perf(const char *cmd, const char *arg, const char **out);

#endif
