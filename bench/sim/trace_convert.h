/*
 * Other public LLM traces into Mooncake JSONL, and sorting a Mooncake file,
 * so the simulator and replay (which read Mooncake only) can run the traces
 * the field publishes. Readers validate every row (bounded lines, numeric
 * ranges) and name FILE:LINE on error; bad input is -EINVAL.
 *
 *   azure     Azure LLM inference traces (2023/2024), CSV
 *             TIMESTAMP,ContextTokens,GeneratedTokens; TIMESTAMP a datetime
 *             "2023-11-16 18:15:46.6805900" (UTC, up to 9 fraction digits).
 *   burstgpt  BurstGPT, CSV Timestamp,Model,Request tokens,Response tokens,
 *             Total tokens,Log Type; Timestamp in seconds.
 *   sharegpt  the vLLM benchmark dataset (ShareGPT JSON): an array of
 *             {"id", "conversations": [{"from","value"}, ...]}. As vLLM's
 *             benchmark does, the first turn is the prompt and the second
 *             the completion; entries with fewer than two turns are skipped.
 *             No tokenizer here: tokens = ceil(UTF-8 characters / 4), at
 *             least 1 (OpenAI's rule of thumb for English). The file has no
 *             times: arrivals are a Poisson process of `rate` per second
 *             from `seed`, in file order, the first at 0.
 *
 * Rows with 0 input or 0 output tokens (failed requests in BurstGPT) are
 * skipped and counted: the Mooncake readers need at least 1 of each.
 * Output is sorted by time (stable), timestamps in integer ms from the first
 * request (0).
 *
 * hash_ids (one per 512-token block) are where a trace says which requests
 * share a prefix; these sources do not record it, so ids are synthesised
 * only as asked (prefix model):
 *   none      (default) every block gets a fresh id: no request shares a
 *             prefix with another, the one claim that needs no data.
 *   system:N  every request starts with the same N-token system prompt:
 *             its whole 512-token blocks (floor(min(N, input) / 512)) get
 *             the same ids in every request, the rest fresh ones.
 *   content   sharegpt only: ids from the prompt text itself, a chained
 *             FNV-1a hash of each 2048-character block (512 tokens at 4
 *             characters each), cut to 53 bits; identical leading text gets
 *             identical ids, as Mooncake's ids are made.
 */
#ifndef NKV_TRACE_CONVERT_H
#define NKV_TRACE_CONVERT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum nkv_conv_from { NKV_CONV_AZURE, NKV_CONV_BURSTGPT, NKV_CONV_SHAREGPT };
enum nkv_conv_prefix { NKV_CONV_PREFIX_NONE, NKV_CONV_PREFIX_SYSTEM, NKV_CONV_PREFIX_CONTENT };

#define NKV_CONV_MAX_LINE 4096        /* a CSV line, bytes */
#define NKV_CONV_CHARS_PER_TOKEN 4
#define NKV_CONV_MAX_RATE 1e6         /* sharegpt arrivals per second */

struct nkv_conv_opts {
	enum nkv_conv_from from;
	enum nkv_conv_prefix prefix;
	uint32_t system_tokens;       /* system:N */
	double rate;                  /* sharegpt: Poisson arrivals per second, > 0 */
	uint64_t seed;                /* sharegpt: non-zero */
	size_t limit;                 /* stop after this many requests read, 0 = all */
};

struct nkv_conv_stats {
	size_t rows;                  /* data rows / entries read */
	size_t written;
	size_t skipped_zero;          /* 0 input or output tokens */
	size_t skipped_short;         /* sharegpt: fewer than two turns */
};

void nkv_conv_defaults(struct nkv_conv_opts *o);
int nkv_conv_from_parse(const char *s, enum nkv_conv_from *out);
/* "none", "content", "system:N" (N in 1..16777216). */
int nkv_conv_prefix_parse(const char *s, struct nkv_conv_opts *o);
/* Reads in_path, writes Mooncake JSONL to out. 0, -EINVAL for bad input
 * (FILE:LINE in nkv_last_error()), other -errno for I/O. */
int nkv_trace_convert(const char *in_path, const struct nkv_conv_opts *o, FILE *out, struct nkv_conv_stats *st);
/* A Mooncake JSONL file's lines in timestamp order (stable: equal times keep
 * their order), copied byte for byte; blank lines dropped. Only timestamps
 * are checked (integer ms, 0..2^53; FILE:LINE on error), the rest is the
 * reader's job. *n = lines written. */
int nkv_trace_sort(const char *in_path, FILE *out, size_t *n);

#endif
