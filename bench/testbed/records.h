/*
 * Per-request record files (CSV): the format `netkv replay` and `netkv demo`
 * write for measured runs and `netkv sim run --csv` for simulated ones, and
 * `netkv sim validate` reads. Declared here, beside the testbed's writer;
 * records.c holds the one column table both the writer and the reader use.
 */
#ifndef NKV_RECORDS_H
#define NKV_RECORDS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "netkv_sched.h" /* NKV_TRACE_MAX_TOKENS, struct nkv_topo */

/* ===== per-request record files (CSV) =====================================
 *
 * One format for `netkv replay --csv` / `netkv demo` (measured) and
 * `netkv sim run --csv` (simulated), so plot scripts and `netkv sim
 * validate` read both. One header line, then one line per request:
 *
 *   req line input output status tier bytes queue_s prefill_s transfer_s
 *   xfer_s decode_wait_s first_step_s ttft_s tbt_mean_s tbt_p99_s e2e_s
 *   tokens blocks_ok blocks_bad slo_met arrival_s prefill decode
 *   held_blocks est_transfer_s tbt_max_s resubmits reason
 *
 * (the first 21 are the original replay columns, in their original
 * places; reason, free text in double quotes with "" for a quote, stays
 * last; a reader keeps its first 159 bytes). Times in seconds. status ok|failed|lost. arrival_s: submit time
 * from the start of the run. prefill/decode: topology instance names.
 * transfer_s: prefill end -> last byte placed; xfer_s: push start -> last
 * byte placed (the data movement alone; the simulator has no gap between
 * the two). resubmits: how often `netkv replay --resubmit` submitted the
 * request again after losing the scheduler. An empty field means "not
 * known on this side" (the simulator verifies no blocks and keeps no
 * per-token gaps; the testbed's records do not carry the scheduler's
 * estimate or the blocks held).
 */
enum nkv_rec_status { NKV_REC_ST_OK, NKV_REC_ST_FAILED, NKV_REC_ST_LOST };

struct nkv_rec_row {
	uint64_t req, line;
	uint32_t input, output;
	int status;                      /* enum nkv_rec_status */
	int tier;                        /* -1 unknown */
	uint64_t bytes;
	double queue_s, prefill_s, transfer_s, xfer_s, decode_wait_s, first_step_s;
	double ttft_s, tbt_mean_s, tbt_p99_s, e2e_s; /* NaN = unknown */
	uint32_t tokens;
	int64_t blocks_ok, blocks_bad;   /* -1 unknown */
	int slo_met;
	double arrival_s;                /* NaN unknown */
	char prefill[40], decode[40];    /* "" unknown */
	int64_t held_blocks;             /* -1 unknown */
	double est_transfer_s, tbt_max_s; /* NaN unknown */
	int64_t resubmits;               /* -1 unknown */
	char reason[256];
	uint64_t file_line;              /* reader: line in the file */
};
/* Every field unknown / zero. */
void nkv_rec_row_init(struct nkv_rec_row *r);
void nkv_rec_write_header(FILE *f);
void nkv_rec_write_row(FILE *f, const struct nkv_rec_row *r);
/* Read and check a record file: the header must name every column the
 * validation needs (others may be missing; unknown ones are ignored),
 * every field must parse (numbers >= 0, finite; input, output and tokens
 * at most NKV_TRACE_MAX_TOKENS), instance names
 * must exist in topo (when not NULL). Errors read "FILE:LINE: column NAME: what".
 * *rows is malloc'ed. */
int nkv_rec_read(const char *path, const struct nkv_topo *topo, struct nkv_rec_row **rows, size_t *n);
/* The same from memory; path names the input in error messages. */
int nkv_rec_parse(const char *buf, size_t len, const char *path, const struct nkv_topo *topo,
		  struct nkv_rec_row **rows, size_t *n);

#endif
