/*
 * A fake GPU for the tests that run without one: "device" memory is host
 * memory, and streams really are asynchronous in the way that matters -
 * copies and kernels queued on a stream run only when an event recorded
 * after them is found done (not on the first query) or the stream is
 * synchronized. So a backend that read a staging slot before its event
 * fired, or counted bytes before their copy ran, sends or keeps stale
 * bytes, and the per-block checksums catch it.
 *
 * Plug in with nkv__gpu_override(&fake_gpu_ops) before creating engines.
 */
#ifndef NKV_TESTS_FAKE_GPU_H
#define NKV_TESTS_FAKE_GPU_H

#include "gpu.h"
#include "nkv_util.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fake_ev;

struct fake_op {
	enum { F_COPY, F_RANGES, F_MARK } type;
	void *dst;
	const void *src;
	uint64_t len;
	const struct nkv_range *ranges;
	uint32_t n;
	uint64_t max_len;
	struct fake_ev *ev;
};

struct fake_stream {
	pthread_mutex_t mu;
	struct fake_op *ops;
	size_t n, cap;
};

struct fake_ev {
	struct fake_stream *s;
	bool done;
	int polls_left;
};

static atomic_ulong fake_kernels, fake_copies, fake_not_ready;

static void fake_run(struct fake_stream *s, struct fake_ev *upto)
{
	size_t i;

	for (i = 0; i < s->n; i++) {
		struct fake_op *o = &s->ops[i];
		if (o->type == F_COPY) {
			memcpy(o->dst, o->src, o->len);
		} else if (o->type == F_RANGES) {
			for (uint32_t k = 0; k < o->n; k++) {
				/* The real kernel's grid covers max_len: a longer range
				 * would be cut short on a GPU. */
				if (o->ranges[k].len > o->max_len) {
					fprintf(stderr, "fake GPU: range %u is %llu bytes, over the launch's max_len %llu\n",
						k, (unsigned long long)o->ranges[k].len, (unsigned long long)o->max_len);
					abort();
				}
				memcpy((char *)o->dst + o->ranges[k].dst_off, (const char *)o->src + o->ranges[k].src_off,
				       o->ranges[k].len);
			}
		} else {
			o->ev->done = true;
			if (o->ev == upto) {
				i++;
				break;
			}
		}
	}
	if (i && s->n > i)
		memmove(s->ops, s->ops + i, (s->n - i) * sizeof(*s->ops));
	s->n -= i;
}

static int fake_push(struct fake_stream *s, struct fake_op op)
{
	pthread_mutex_lock(&s->mu);
	if (s->n == s->cap) {
		size_t nc = s->cap ? s->cap * 2 : 64;
		struct fake_op *p = realloc(s->ops, nc * sizeof(*p));
		if (!p) {
			pthread_mutex_unlock(&s->mu);
			return nkv_err(ENOMEM, "fake stream: out of memory");
		}
		s->ops = p;
		s->cap = nc;
	}
	s->ops[s->n++] = op;
	pthread_mutex_unlock(&s->mu);
	return 0;
}

static int f_open(int dev, char *desc, size_t len)
{
	if (dev != 0)
		return nkv_err(ENODEV, "GPU %d asked for, and the fake has 1", dev);
	if (desc)
		snprintf(desc, len, "fake0 (host memory, deferred copies)");
	return 0;
}
static int f_count(int *n) { *n = 1; return 0; }
static int f_by_pci(const char *pci, int *dev) { *dev = 0; return 0; }
static int f_alloc(int dev, uint64_t len, void **p)
{
	/* Poisoned, like uninitialised device memory is. */
	if (!(*p = malloc(len)))
		return nkv_err(ENOMEM, "fake alloc of %llu bytes", (unsigned long long)len);
	memset(*p, 0xa5, len);
	return 0;
}
static void f_free(int dev, void *p) { free(p); }
static int f_check_ptr(int dev, const void *p) { return p ? 0 : nkv_err(EINVAL, "fake: null pointer"); }
static int f_stream_create(int dev, void **s)
{
	struct fake_stream *fs = calloc(1, sizeof(*fs));
	if (!fs)
		return nkv_err(ENOMEM, "fake stream");
	pthread_mutex_init(&fs->mu, NULL);
	*s = fs;
	return 0;
}
static void f_stream_destroy(int dev, void *s)
{
	struct fake_stream *fs = s;
	if (!fs)
		return;
	free(fs->ops);
	pthread_mutex_destroy(&fs->mu);
	free(fs);
}
static int f_stream_sync(int dev, void *s)
{
	struct fake_stream *fs = s;
	pthread_mutex_lock(&fs->mu);
	fake_run(fs, NULL);
	pthread_mutex_unlock(&fs->mu);
	return 0;
}
static int f_event_create(int dev, void **ev)
{
	if (!(*ev = calloc(1, sizeof(struct fake_ev))))
		return nkv_err(ENOMEM, "fake event");
	return 0;
}
static void f_event_destroy(int dev, void *ev) { free(ev); }
static int f_event_record(int dev, void *ev, void *s)
{
	struct fake_ev *e = ev;
	e->s = s;
	e->done = false;
	e->polls_left = 2; /* "still copying" the first times it is asked */
	return fake_push(s, (struct fake_op){ .type = F_MARK, .ev = e });
}
static int f_event_done(int dev, void *ev)
{
	struct fake_ev *e = ev;
	if (e->done)
		return 1;
	if (e->polls_left-- > 0) {
		atomic_fetch_add(&fake_not_ready, 1);
		return 0;
	}
	pthread_mutex_lock(&e->s->mu);
	fake_run(e->s, e);
	pthread_mutex_unlock(&e->s->mu);
	return e->done ? 1 : 0;
}
static int f_copy_async(int dev, void *dst, const void *src, uint64_t len, void *s)
{
	atomic_fetch_add(&fake_copies, 1);
	return fake_push(s, (struct fake_op){ .type = F_COPY, .dst = dst, .src = src, .len = len });
}
static int f_copy(int dev, void *dst, const void *src, uint64_t len)
{
	memcpy(dst, src, len);
	return 0;
}
static int f_memset(int dev, void *p, int v, uint64_t len)
{
	memset(p, v, len);
	return 0;
}
static int f_copy_ranges(int dev, void *dst, const void *src, const struct nkv_range *r, uint32_t n, uint64_t max_len,
			 void *s)
{
	atomic_fetch_add(&fake_kernels, 1);
	return fake_push(s, (struct fake_op){ .type = F_RANGES, .dst = dst, .src = src, .ranges = r, .n = n,
					  .max_len = max_len });
}
static int f_dmabuf(int dev, void *p, uint64_t len, int *fd, uint64_t *off, uint64_t *blen)
{
	*fd = -1;
	return nkv_err(ENOTSUP, "fake GPU: no dma-buf");
}
static int f_dmabuf_supported(int dev, bool *yes)
{
	*yes = false;
	return 0;
}

static const struct nkv_gpu_ops fake_gpu_ops = {
	.name = "fake",
	.open = f_open,
	.device_count = f_count,
	.device_by_pci = f_by_pci,
	.alloc = f_alloc,
	.check_ptr = f_check_ptr,
	.free = f_free,
	.host_alloc = f_alloc,
	.host_free = f_free,
	.stream_create = f_stream_create,
	.stream_destroy = f_stream_destroy,
	.stream_sync = f_stream_sync,
	.event_create = f_event_create,
	.event_destroy = f_event_destroy,
	.event_record = f_event_record,
	.event_done = f_event_done,
	.copy_async = f_copy_async,
	.copy = f_copy,
	.memset = f_memset,
	.copy_ranges_async = f_copy_ranges,
	.dmabuf_fd = f_dmabuf,
	.dmabuf_supported = f_dmabuf_supported,
};

#endif
