/*
 * netkv errors, for users of libnetkv: every function returns 0 (or a count)
 * on success and a negative errno on failure, and leaves a human-readable
 * detail in a thread-local string that nkv_last_error() returns, in the
 * spirit of dlerror(). (Inside netkv, nkv_util.h adds nkv_err() to set it.)
 */
#ifndef NETKV_ERROR_H
#define NETKV_ERROR_H

#pragma GCC visibility push(default)

/* The detail of this thread's last failure ("no error recorded" if none, or since nkv_clear_error()). */
const char *nkv_last_error(void);
void nkv_clear_error(void);

#pragma GCC visibility pop

#endif
