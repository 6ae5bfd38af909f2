/* The demo's calibration trace (demo_calib.c): pushes that measure the
 * testbed's per-push overhead for `netkv sim validate`. */
#ifndef NKV_DEMO_CALIB_H
#define NKV_DEMO_CALIB_H

#define CALIB_WARMUP 16u
#define CALIB_REQUESTS (CALIB_WARMUP + 96u)

/* Write the calibration trace for ndecodes decodes under round robin. */
int nkv__demo_calib_trace(const char *path, unsigned ndecodes);

#endif
