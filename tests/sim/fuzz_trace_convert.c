/*
 * libFuzzer entry for `netkv trace convert` and `trace sort`
 * (bench/sim/trace_convert.c). The first byte picks the source (azure,
 * burstgpt, sharegpt, or sort) and the prefix model; the rest is the file.
 * Whatever converts must load with the Mooncake reader (sorted, one id per
 * 512 tokens, lengths in range); whatever fails must fail with -EINVAL (or
 * -ENOMEM) and name the file, in printable text. Replayed over
 * corpus_trace_convert/ by test_sim_trace_convert_fuzz_replay (nkv_add_fuzz).
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "netkv_sched.h"
#include "nkv_util.h"
#include "trace_convert.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];

static void check_error(int ret)
{
	const char *e = nkv_last_error();

	if (ret != -EINVAL && ret != -ENOMEM)
		abort();
	if (ret == -EINVAL && !strstr(e, path) && !strstr(e, "rate"))
		abort();
	for (const char *s = e; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct nkv_conv_opts o;
	struct nkv_trace *t;
	char *buf = NULL;
	size_t len = 0, n;
	FILE *f;
	int ret;

	if (!size)
		return 0;
	if (!path[0]) {
		int fd;

		snprintf(path, sizeof(path), "/tmp/nkv-fuzz-conv-XXXXXX");
		if ((fd = mkstemp(path)) < 0)
			abort();
		close(fd);
	}
	if (!(f = fopen(path, "wb")))
		abort();
	fwrite(data + 1, 1, size - 1, f);
	fclose(f);
	nkv_conv_defaults(&o);
	o.from = (enum nkv_conv_from)(data[0] % 3);
	o.prefix = (enum nkv_conv_prefix)((data[0] >> 2) % 3);
	o.system_tokens = 1u + (data[0] >> 4) * 300u;
	o.rate = 1 + (data[0] >> 5);
	o.limit = data[0] & 0x80 ? 3 : 0;
	if (!(f = open_memstream(&buf, &len)))
		abort();
	ret = (data[0] % 4) == 3 ? nkv_trace_sort(path, f, &n) : nkv_trace_convert(path, &o, f, NULL);
	fclose(f);
	if (ret) {
		if (o.prefix == NKV_CONV_PREFIX_CONTENT && o.from != NKV_CONV_SHAREGPT && (data[0] % 4) != 3) {
			if (ret != -EINVAL)
				abort();
		} else {
			check_error(ret);
		}
	} else if ((data[0] % 4) != 3) {
		/* a converted trace is one the reader takes as it is */
		if (nkv_trace_parse(buf, len, "converted", NULL, &t))
			abort();
		nkv_trace_free(t);
	}
	free(buf);
	return 0;
}
