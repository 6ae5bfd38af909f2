/* libFuzzer target for the control-protocol decoder (clang, -DNKV_FUZZ=ON).
 * Seeds: run with -seed_corpus from `test_proto`'s messages, or start empty. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "netkv_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;
	for (;;) {
		struct nkv_msg m;
		size_t used;
		int rc = nkv_msg_decode(data + off, size - off, &m, &used);
		if (rc <= 0)
			return 0;
		struct nkv_buf b = { 0 };
		if (nkv_msg_encode(&m, &b) != 0 || b.len != used)
			abort(); /* what decodes must encode back */
		nkv_buf_free(&b);
		nkv_msg_clear(&m);
		off += used;
	}
}
