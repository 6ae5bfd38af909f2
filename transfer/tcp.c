/* TCP backend on liburing: being written (issue 2). Until it lands, creating
 * a TCP engine fails with a clear error rather than pretending. */
#include "backend.h"
#include "nkv_util.h"

#include <errno.h>

static int tcp_init(struct nkv_engine *e)
{
	(void)e;
	return nkv_err(ENOTSUP, "the TCP backend is not built yet in this commit");
}

const struct nkv_backend_ops nkv_tcp_ops = { .name = "tcp", .init = tcp_init };
