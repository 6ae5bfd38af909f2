/*
 * The verbs backend's GPU registration on soft RDMA (rxe, inside
 * tools/rxe-vm in CI), with the fake GPU: rxe cannot reach GPU memory, and
 * verbs has no staging path yet, so registering a GPU region must fail
 * with both reasons and the way out (--backend tcp), never silently fall
 * back or register something else. On a hardware NIC the fake's "device
 * memory" is host memory a NIC could register, which proves nothing: skip
 * (test_gpu_verbs covers real GPUs there).
 */
#include "../verbs/vtest.h"
#include "fake_gpu.h"

#include <errno.h>

int main(void)
{
	char ip[64];
	struct nkv_engine *e;
	const char *desc;
	uint32_t id;
	void *p;
	int rc;

	setenv("NKV_QUIET", "1", 1);
	unsetenv("NKV_GPUDIRECT");
	vt_need_rdma(ip, sizeof(ip));
	nkv__gpu_override(&fake_gpu_ops);
	e = vt_engine(1);
	desc = nkv_engine_describe(e);
	if (!strstr(desc, "rxe") && !strstr(desc, "siw")) {
		fprintf(stderr, "SKIP: %s is a hardware device; the fake GPU proves nothing there\n", desc);
		return 77;
	}
	rc = nkv_region_alloc(e, NKV_MEM_CUDA, 1u << 20, NULL, &id, &p);
	fprintf(stderr, "%s: GPU region: %d %s\n", desc, rc, nkv_last_error());
	VT_CHECK(rc == -ENOTSUP, "expected -ENOTSUP, got %d", rc);
	VT_CHECK(strstr(nkv_last_error(), "software RDMA device") && strstr(nkv_last_error(), "use --backend tcp"),
		 "reason lacks the cause or the way out");
	/* Host regions on the same engine are unaffected. */
	VT_CHECK(nkv_region_alloc(e, NKV_MEM_HOST, 1u << 20, NULL, &id, &p) == 0, "host region");
	nkv_engine_destroy(e);
	fprintf(stderr, "ok\n");
	return 0;
}
