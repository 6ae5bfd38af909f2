/*
 * GPU error paths, run on every box:
 *  1. The built-in GPU ops on this box. Without CUDA in the build: "netkv
 *     was built without CUDA". With CUDA but no GPU or driver: the error
 *     names the CUDA call and its error (cudaErrorNoDevice /
 *     cudaErrorInsufficientDriver), never a crash. With a GPU: a device
 *     number beyond the host's is refused by name.
 *  2. On the fake device: a peer announcing a payload larger than a GPU
 *     receive slot is cut off with a reason, and nothing lands in the region.
 */
#include "../transfer/raw_peer.h"
#include "fake_gpu.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>

static void builtin_errors(void)
{
	const struct nkv_gpu_ops *g = nkv__gpu();
	struct nkv_engine_opts o = { .backend = NKV_BACKEND_TCP, .streams = 1 };
	struct nkv_engine *e;
	uint32_t id;
	void *p = NULL;
	int n = 0, rc;

	CHECK(nkv_engine_create(&o, &e) == 0, "%s", nkv_last_error());
	if (!e)
		return;
	rc = g->device_count(&n);
	if (!strcmp(g->name, "none")) {
		rc = nkv_region_alloc(e, NKV_MEM_CUDA, 1 << 20, NULL, &id, &p);
		fprintf(stderr, "no-CUDA build: %s\n", nkv_last_error());
		CHECK(rc == -ENOTSUP && strstr(nkv_last_error(), "netkv was built without CUDA"), "rc %d: %s", rc,
		      nkv_last_error());
	} else if (rc || n == 0) {
		rc = nkv_region_alloc(e, NKV_MEM_CUDA, 1 << 20, NULL, &id, &p);
		fprintf(stderr, "CUDA build, no usable GPU: %s\n", nkv_last_error());
		CHECK(rc == -ENODEV, "rc %d, expected -ENODEV", rc);
		CHECK(strstr(nkv_last_error(), "cudaGetDeviceCount: cudaError") != NULL,
		      "the error should name the call and the CUDA error: %s", nkv_last_error());
		/* Registering a pointer fails the same way, before the backend sees it. */
		rc = nkv_region_register(e, NKV_MEM_CUDA, (void *)(uintptr_t)0x10000, 4096, NULL, &id);
		CHECK(rc == -ENODEV && strstr(nkv_last_error(), "cudaGetDeviceCount"), "register: %d %s", rc,
		      nkv_last_error());
	} else {
		struct nkv_engine *e2;
		o.gpu = 999;
		CHECK(nkv_engine_create(&o, &e2) == 0, "%s", nkv_last_error());
		rc = nkv_region_alloc(e2, NKV_MEM_CUDA, 1 << 20, NULL, &id, &p);
		fprintf(stderr, "GPU present (%d); device 999: %s\n", n, nkv_last_error());
		CHECK(rc == -ENODEV && strstr(nkv_last_error(), "GPU 999 asked for"), "rc %d: %s", rc, nkv_last_error());
		nkv_engine_destroy(e2);
	}
	/* Host regions are untouched by all this. */
	CHECK(nkv_region_alloc(e, NKV_MEM_HOST, 4096, NULL, &id, &p) == 0, "%s", nkv_last_error());
	{
		char d[64];
		CHECK(nkv_region_describe(e, id, d, sizeof(d)) == 0 && !strcmp(d, "host"), "describe: %s", d);
	}
	nkv_engine_destroy(e);
}

static void oversize_payload(void)
{
	struct nkv_engine_opts o = { .backend = NKV_BACKEND_TCP, .streams = 1 };
	struct h_peer rp = { 0 };
	struct nkv_wire_hdr h;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct timeval tv = { .tv_sec = 5 };
	const uint64_t len = 8u << 20;
	struct nkv_event ev;
	uint16_t port;
	uint32_t id;
	void *dev;
	char buf[4096], *check;
	int fd;

	nkv__gpu_override(&fake_gpu_ops);
	if (nkv_engine_create(&o, &rp.e) || nkv_region_alloc(rp.e, NKV_MEM_CUDA, len, NULL, &id, &dev) ||
	    nkv_listen(rp.e, "127.0.0.1:0", &port)) {
		CHECK(0, "setup: %s", nkv_last_error());
		return;
	}
	memset(dev, 0x11, len);
	h_start(&rp);
	sa.sin_port = htons(port);
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect");
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	{
		int rc = raw_handshake(fd, "", 1, 0, 1, buf, sizeof(buf));
		CHECK(rc == 0, "handshake: %d %s", rc, buf);
	}
	/* 2 MiB in one DATA range: inside the region, but bigger than a slot. */
	h = (struct nkv_wire_hdr){ .magic = NKV_WIRE_MAGIC, .version = NKV_WIRE_VERSION, .type = NKV_W_DATA,
				   .region = id, .req_id = 5, .offset = 0, .len = 2u << 20, .total = 2u << 20 };
	CHECK(send(fd, &h, sizeof(h), 0) == sizeof(h), "data header");
	memset(buf, 0x22, sizeof(buf));
	for (int i = 0; i < 16; i++)
		if (send(fd, buf, sizeof(buf), MSG_NOSIGNAL) < 0)
			break;
	CHECK(h_wait(&rp, NKV_EV_CONN_DOWN, 1, 5) == 1, "no CONN_DOWN");
	if (h_find(&rp, NKV_EV_CONN_DOWN, 0, &ev))
		CHECK(strstr(ev.reason, "exceeds the 1048576-byte staging slot") && ev.status == -EPROTO, "reason: %s",
		      ev.reason);
	close(fd);
	h_stop(&rp);
	check = dev;
	for (uint64_t i = 0; i < len; i++)
		if (check[i] != 0x11) {
			CHECK(0, "byte %llu of the GPU region changed", (unsigned long long)i);
			break;
		}
	nkv_engine_destroy(rp.e);
	nkv__gpu_override(NULL);
}

int main(void)
{
	if (!getenv("NKV_LOUD")) setenv("NKV_QUIET", "1", 1);
	builtin_errors();
	oversize_payload();
	if (fails)
		fprintf(stderr, "%d check(s) failed\n", fails);
	return fails ? 1 : 0;
}
