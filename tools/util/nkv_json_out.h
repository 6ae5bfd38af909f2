/*
 * JSON results that can be traced back: every `--json` result of a netkv
 * command goes out through nkv_json_print(), which puts a "meta" object
 * first (netkv version, host, kernel, UTC time, the command line as typed)
 * and prints floats at NKV_JSON_PRECISION significant digits (25.412, not
 * 25.411999999999999).
 */
#ifndef NKV_JSON_OUT_H
#define NKV_JSON_OUT_H

#include <jansson.h>
#include <stdio.h>

#define NKV_JSON_PRECISION 9
/* The dump flags results use: 2-space indent, NKV_JSON_PRECISION digits. */
#define NKV_JSON_FLAGS (JSON_INDENT(2) | JSON_REAL_PRECISION(NKV_JSON_PRECISION))

/* {"netkv_version", "host", "kernel", "time" (UTC, ISO 8601), "command_line"}:
 * a new reference. */
json_t *nkv_json_meta(void);

/* A new object: "meta" first, then result's members when result is an
 * object, or "results": result otherwise (an array). Steals result. */
json_t *nkv_json_with_meta(json_t *result);

/* Writes nkv_json_with_meta(result) to f with NKV_JSON_FLAGS and a newline.
 * Steals result. 0, or -EIO when it could not be written. */
int nkv_json_print(FILE *f, json_t *result);

#endif
