/*
 * What a real-GPU test does when the GPU cannot be opened: skip (77) where
 * there is none, but fail where the host has one (/dev/nvidia0) and only its
 * driver is too old for the CUDA runtime netkv was built with, so a first
 * run on a GPU host cannot go green having tested nothing.
 */
#ifndef NKV_TESTS_NEED_GPU_H
#define NKV_TESTS_NEED_GPU_H

#include "nkv_util.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static inline int gpu_unusable(void)
{
	const char *why = nkv_last_error();

	if (!access("/dev/nvidia0", F_OK) && strstr(why, "InsufficientDriver")) {
		fprintf(stderr, "FAIL: this host has a GPU but its driver is older than the CUDA runtime netkv was "
			"built with needs (CUDA 13: R580+; or build with an older toolkit): %s\n", why);
		return 1;
	}
	fprintf(stderr, "SKIP: no usable GPU: %s\n", why);
	return 77;
}

#endif
