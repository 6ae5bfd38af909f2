/*
 * Verbs backend: device, port and GID choice, protection domain, memory
 * registration, and the engine's init/fini.
 *
 * GID choice is where other engines trip: picking index 0 (the IPv6
 * link-local GID) or a RoCE v1 entry gives a QP that never connects. netkv
 * reads the GID table from sysfs (gids/N, gid_attrs/types/N) and wants a
 * RoCE v2 GID holding an IPv4 address; with no --gid-index, rdma_cm picks the
 * GID of the netdev that carries the route to the peer, and the choice is
 * reported after the connection is made.
 */
#include "verbs.h"
#include "gpu_stage.h"
#include "nkv_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

uint32_t nkv__vb_mtu_bytes(enum ibv_mtu m)
{
	return m >= IBV_MTU_256 && m <= IBV_MTU_4096 ? 128u << m : 0;
}

const char *nkv__vb_mtu_str(uint32_t bytes)
{
	switch (bytes) {
	case 256: return "256";
	case 512: return "512";
	case 1024: return "1024";
	case 2048: return "2048";
	case 4096: return "4096";
	default: return "?";
	}
}

static int read_sysfs(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return -errno;
	n = fread(buf, 1, len - 1, f);
	fclose(f);
	buf[n] = 0;
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = 0;
	return 0;
}

/* GID idx of the device's port: type ("RoCE v2", "IB/RoCE v1"), the IPv4
 * address it holds (or ""), and the GID text. -ENOENT when the entry is empty. */
int nkv__vb_gid_info(struct vb_dev *d, int idx, char *type, size_t tlen, char *ip, size_t iplen, char *gid, size_t glen)
{
	char path[256];
	union ibv_gid g;

	ip[0] = 0;
	snprintf(path, sizeof(path), "/sys/class/infiniband/%s/ports/%u/gid_attrs/types/%d", d->name, d->port_num, idx);
	if (read_sysfs(path, type, tlen))
		snprintf(type, tlen, "%s", d->port.link_layer == IBV_LINK_LAYER_INFINIBAND ? "IB" : "unknown");
	if (ibv_query_gid(d->ctx, d->port_num, idx, &g))
		return -ENOENT;
	inet_ntop(AF_INET6, g.raw, gid, glen);
	static const uint8_t zero[16];
	if (!memcmp(g.raw, zero, 16))
		return -ENOENT;
	/* IPv4-mapped: ::ffff:a.b.c.d */
	static const uint8_t v4pfx[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	if (!memcmp(g.raw, v4pfx, 12))
		inet_ntop(AF_INET, g.raw + 12, ip, iplen);
	return 0;
}

static int choose_gid(struct vb_dev *d, int asked)
{
	char type[32], ip[64], gid[64];
	int n = d->port.gid_tbl_len > 256 ? 256 : d->port.gid_tbl_len;

	if (d->port.link_layer == IBV_LINK_LAYER_INFINIBAND) {
		d->gid_index = asked >= 0 ? asked : 0;
		return 0;
	}
	if (asked >= 0) {
		if (asked >= n || nkv__vb_gid_info(d, asked, type, sizeof(type), ip, sizeof(ip), gid, sizeof(gid)))
			return nkv_err(EINVAL, "%s port %u has no GID at index %d (table of %d)", d->name, d->port_num, asked, n);
		if (strcmp(type, "RoCE v2"))
			return nkv_err(EINVAL, "%s GID index %d (%s) is %s; netkv uses RoCE v2 GIDs with an IPv4 address",
				       d->name, asked, gid, type);
		if (!ip[0])
			return nkv_err(EINVAL, "%s GID index %d is %s, an IPv6%s GID; use the RoCE v2 GID of an IPv4 address (see %s)",
				       d->name, asked, gid, strncmp(gid, "fe80", 4) ? "" : " link-local",
				       "/sys/class/infiniband/DEV/ports/1/gids");
		d->gid_index = asked;
		d->gid_asked = true;
		snprintf(d->gid_ip, sizeof(d->gid_ip), "%s", ip);
		return 0;
	}
	for (int i = 0; i < n; i++) {
		if (nkv__vb_gid_info(d, i, type, sizeof(type), ip, sizeof(ip), gid, sizeof(gid)))
			continue;
		if (!strcmp(type, "RoCE v2") && ip[0]) {
			d->gid_index = i;
			snprintf(d->gid_ip, sizeof(d->gid_ip), "%s", ip);
			return 0;
		}
	}
	return nkv_err(ENODEV, "%s port %u has no RoCE v2 GID with an IPv4 address: give its netdev an IPv4 address "
		       "(ip addr add ...) or pick a device with --device", d->name, d->port_num);
}

int nkv__vb_dev_open(struct nkv_engine *e, const char *device, int gid_index)
{
	struct vb_dev *d = &VE(e)->dev;
	int n = 0, rc;
	char names[256] = "";

	d->list = rdma_get_devices(&n);
	if (!d->list || n == 0) {
		if (d->list)
			rdma_free_devices(d->list);
		d->list = NULL;
		return nkv_err(ENODEV, "no RDMA device found (/sys/class/infiniband is empty): load a NIC driver, "
			       "or add soft-RoCE with `rdma link add rxe0 type rxe netdev IFACE`");
	}
	for (int i = 0; i < n; i++) {
		struct ibv_port_attr pa;
		const char *nm = ibv_get_device_name(d->list[i]->device);

		snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s", i ? ", " : "", nm);
		if (device && strcmp(device, nm))
			continue;
		if (!device && (ibv_query_port(d->list[i], 1, &pa) || pa.state != IBV_PORT_ACTIVE))
			continue;
		d->ctx = d->list[i];
		break;
	}
	if (!d->ctx) {
		rc = device ? nkv_err(ENODEV, "no RDMA device named %s (have: %s)", device, names)
			    : nkv_err(ENODEV, "no RDMA device with an ACTIVE port 1 (have: %s)", names);
		goto fail;
	}
	snprintf(d->name, sizeof(d->name), "%s", ibv_get_device_name(d->ctx->device));
	d->port_num = 1;
	if (ibv_query_device(d->ctx, &d->attr) || ibv_query_port(d->ctx, d->port_num, &d->port)) {
		rc = nkv_err(EIO, "%s: ibv_query_device/port failed: %s", d->name, strerror(errno));
		goto fail;
	}
	if (d->port.state != IBV_PORT_ACTIVE) {
		rc = nkv_err(ENETDOWN, "%s port %u is %s, not ACTIVE (check the cable / netdev: `rdma link`)", d->name,
			     d->port_num, ibv_port_state_str(d->port.state));
		goto fail;
	}
	if ((rc = choose_gid(d, gid_index)))
		goto fail;
	d->max_msg = d->port.max_msg_sz > (1u << 30) ? 1u << 30 : d->port.max_msg_sz;
	/* rxe on older kernels refuses messages over 8 MiB whatever it reports. */
	if (!strncmp(d->name, "rxe", 3) && d->max_msg > (8u << 20))
		d->max_msg = 8u << 20;
	d->max_sge = d->attr.max_sge > 30 ? 30 : (uint32_t)d->attr.max_sge;
	if (!(d->pd = ibv_alloc_pd(d->ctx))) {
		rc = nkv_err(errno ? errno : ENOMEM, "%s: ibv_alloc_pd failed: %s", d->name, strerror(errno));
		goto fail;
	}
	/* dma-buf hook for GPU memory (later): fd -1 gives EBADF where supported. */
	{
		struct ibv_mr *mr = ibv_reg_dmabuf_mr(d->pd, 0, 4096, 0, -1, IBV_ACCESS_LOCAL_WRITE);
		if (mr)
			ibv_dereg_mr(mr);
		else
			d->dmabuf = errno == EBADF;
	}
	return 0;
fail:
	rdma_free_devices(d->list);
	d->list = NULL;
	d->ctx = NULL;
	return rc;
}

bool nkv__vb_dev_is_soft(const struct vb_dev *d)
{
	char path[256];

	if (!strncmp(d->name, "rxe", 3) || !strncmp(d->name, "siw", 3))
		return true;
	/* Hardware devices have a parent (PCI) device in sysfs. */
	snprintf(path, sizeof(path), "/sys/class/infiniband/%s/device", d->name);
	return access(path, F_OK) != 0;
}

void nkv__vb_dev_close(struct vb_dev *d)
{
	if (d->pd)
		ibv_dealloc_pd(d->pd);
	if (d->list)
		rdma_free_devices(d->list);
	memset(d, 0, sizeof(*d));
}

void nkv__vb_describe(struct nkv_engine *e, struct vb_conn *vc)
{
	struct vb_engine *ve = VE(e);
	struct vb_dev *d = &ve->dev;
	char type[32] = "", ip[64] = "", gid[64] = "";
	int idx = d->gid_index;
	char mtu[32];

	if (vc && vc->nqps && vc->qps[0].id && vc->qps[0].id->qp) {
		struct ibv_qp_attr a;
		struct ibv_qp_init_attr ia;
		if (!ibv_query_qp(vc->qps[0].id->qp, &a, IBV_QP_AV | IBV_QP_PATH_MTU, &ia)) {
			if (a.ah_attr.is_global)
				idx = a.ah_attr.grh.sgid_index;
			vc->mtu = nkv__vb_mtu_bytes(a.path_mtu);
		}
	}
	nkv__vb_gid_info(d, idx, type, sizeof(type), ip, sizeof(ip), gid, sizeof(gid));
	if (vc && vc->mtu)
		snprintf(mtu, sizeof(mtu), "path mtu %u", vc->mtu);
	else
		snprintf(mtu, sizeof(mtu), "port mtu %u", nkv__vb_mtu_bytes(d->port.active_mtu));
	char buf[320];
	size_t n = (size_t)snprintf(buf, sizeof(buf), "verbs %s port %u gid %d (%s%s%s) %s, %s%s", d->name, d->port_num,
				    idx, type, ip[0] ? " " : "", ip, mtu,
				    ve->event_mode ? "event channel" : "adaptive busy-poll",
				    e->secret_len ? ", authenticated" : ", no data-plane secret");
	if (n >= sizeof(e->desc))
		n = sizeof(e->desc) - 1;
	memcpy(e->desc, buf, n);
	e->desc[n] = 0;
}

/* ---- engine ops ------------------------------------------------------------ */

/* The MR of a staging slot (its pinned host bytes), registered on first use
 * and kept until the engine goes: the slots live as long as the engine. */
struct ibv_mr *nkv__vb_stage_mr(struct nkv_engine *e, const void *base)
{
	struct vb_engine *ve = VE(e);
	unsigned i;

	for (i = 0; i < NKV_GPU_OUT_SLOTS && ve->smr[i].base; i++)
		if (ve->smr[i].base == base)
			return ve->smr[i].mr;
	if (i == NKV_GPU_OUT_SLOTS) {
		nkv_err(ENOSPC, "%s: more GPU staging slots than the %u expected", ve->dev.name, NKV_GPU_OUT_SLOTS);
		return NULL;
	}
	ve->smr[i].mr = ibv_reg_mr(ve->dev.pd, (void *)base, NKV_GPU_CHUNK, IBV_ACCESS_LOCAL_WRITE);
	if (!ve->smr[i].mr) {
		nkv_err(errno, "%s: registering a GPU staging slot (%u MiB pinned): %s", ve->dev.name,
			NKV_GPU_CHUNK >> 20, strerror(errno));
		return NULL;
	}
	ve->smr[i].base = base;
	return ve->smr[i].mr;
}

static void vb_fini(struct nkv_engine *e)
{
	struct vb_engine *ve = VE(e);

	if (!ve)
		return;
	for (unsigned i = 0; i < NKV_GPU_OUT_SLOTS; i++)
		if (ve->smr[i].mr)
			ibv_dereg_mr(ve->smr[i].mr);
	if (ve->listen_id)
		rdma_destroy_id(ve->listen_id);
	if (ve->comp_ch)
		ibv_destroy_comp_channel(ve->comp_ch);
	if (ve->cm_ch)
		rdma_destroy_event_channel(ve->cm_ch);
	nkv__vb_dev_close(&ve->dev);
	free(ve);
	e->be = NULL;
}

static int vb_init(struct nkv_engine *e)
{
	struct vb_engine *ve = calloc(1, sizeof(*ve));
	const char *mode = getenv("NKV_VERBS_COMPLETION");
	int rc;

	if (!ve)
		return nkv_err(ENOMEM, "verbs: out of memory");
	e->be = ve;
	if (mode && strcmp(mode, "event") && strcmp(mode, "poll")) {
		rc = nkv_err(EINVAL, "NKV_VERBS_COMPLETION=%s: use poll or event", mode);
		goto fail;
	}
	ve->spin_ns = 20000;
	if ((rc = nkv__vb_dev_open(e, e->opts.device, e->opts.gid_index)))
		goto fail;
	/* Soft devices (rxe, siw) move the bytes with this host's CPU: a
	 * busy-polling thread takes the cycles they need, so they default to
	 * sleeping on the completion channel. NICs default to busy-polling. */
	if (mode)
		ve->event_mode = !strcmp(mode, "event");
	else
		ve->event_mode = nkv__vb_dev_is_soft(&ve->dev);
	if (!(ve->cm_ch = rdma_create_event_channel())) {
		rc = nkv_err(errno, "rdma_create_event_channel: %s (is rdma_ucm loaded? /dev/infiniband/rdma_cm)",
			     strerror(errno));
		goto fail;
	}
	if (!(ve->comp_ch = ibv_create_comp_channel(ve->dev.ctx))) {
		rc = nkv_err(errno, "%s: ibv_create_comp_channel: %s", ve->dev.name, strerror(errno));
		goto fail;
	}
	nkv__vb_describe(e, NULL);
	return 0;
fail:
	vb_fini(e);
	return rc;
}

/*
 * GPU memory: GPUDirect RDMA in the order nkv__gpu_reg_plan() gives
 * (dma-buf, then nvidia-peermem), each failure kept in the reason. The
 * verbs data path is the same afterwards: the MR's lkey/rkey cover device
 * memory and the NIC reads and writes it over PCIe.
 */
static int vb_reg_gpu(struct nkv_engine *e, struct nkv_region *r)
{
	const int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE;
	const struct nkv_gpu_ops *g = nkv__gpu();
	struct vb_dev *d = &VE(e)->dev;
	int dev = nkv__gpu_dev(e), rc;
	struct nkv_gpu_caps caps = {
		.rdma = true,
		.soft_rdma = nkv__vb_dev_is_soft(d),
		.ibv_dmabuf = d->dmabuf,
		.peermem = nkv__gpu_peermem_loaded(NULL),
		.force = getenv("NKV_GPUDIRECT"),
	};
	struct nkv_gpu_reg_plan plan;
	struct ibv_mr *mr = NULL;
	char why[sizeof(r->gpu_why)];
	size_t wl;

	if (g->dmabuf_supported(dev, &caps.cuda_dmabuf))
		caps.cuda_dmabuf = false;
	if ((rc = nkv__gpu_reg_plan(&caps, &plan)))
		return rc;
	snprintf(why, sizeof(why), "%s", plan.why);
	for (unsigned i = 0; i < plan.n && !mr; i++) {
		const char *fail = NULL;
		int fd = -1;
		uint64_t off = 0, blen = 0;

		switch (plan.try[i]) {
		case NKV_GPU_REG_DMABUF:
			if ((rc = g->dmabuf_fd(dev, r->ptr, r->len, &fd, &off, &blen))) {
				fail = nkv_last_error();
				break;
			}
			mr = ibv_reg_dmabuf_mr(d->pd, off, r->len, (uint64_t)(uintptr_t)r->ptr, fd, access);
			if (!mr)
				fail = strerror(errno);
			close(fd); /* the MR holds its own reference to the dma-buf */
			if (fail) {
				wl = strlen(why);
				snprintf(why + wl, sizeof(why) - wl, "%sdma-buf: ibv_reg_dmabuf_mr: %s", wl ? "; " : "",
					 fail);
				fail = NULL;
				continue;
			}
			break;
		case NKV_GPU_REG_PEERMEM:
			mr = ibv_reg_mr(d->pd, r->ptr, r->len, access);
			if (!mr)
				fail = strerror(errno);
			break;
		case NKV_GPU_REG_STAGING:
			/* No MR: pushes from it are staged through the chunk slots,
			 * pushes into it through lent bounce slots (verbs.h); peers
			 * learn addr 0 / rkey 0. */
			r->gpu_mode = "staging";
			memcpy(r->gpu_why, why, sizeof(why));
			r->be = NULL;
			r->desc.rkey = 0;
			r->desc.addr = 0;
			nkv__log("%s: GPU region %u staged through pinned host memory (%s)", d->name, r->id, r->gpu_why);
			return 0;
		}
		if (fail) {
			wl = strlen(why);
			snprintf(why + wl, sizeof(why) - wl, "%s%s: %s", wl ? "; " : "",
				 nkv_gpu_reg_mode_name(plan.try[i]), fail);
		}
		if (mr)
			r->gpu_mode = nkv_gpu_reg_mode_name(plan.try[i]);
	}
	if (!mr)
		return nkv_err(EIO, "%s: GPU region %u: GPUDirect registration failed: %s", d->name, r->id, why);
	snprintf(r->gpu_why, sizeof(r->gpu_why), "%s", why);
	r->be = mr;
	r->desc.rkey = mr->rkey;
	r->desc.addr = (uint64_t)(uintptr_t)r->ptr;
	nkv__log("%s: GPU region %u registered by %s%s%s%s", d->name, r->id, r->gpu_mode, why[0] ? " (" : "", why,
		 why[0] ? ")" : "");
	return 0;
}

static int vb_reg(struct nkv_engine *e, struct nkv_region *r)
{
	struct vb_dev *d = &VE(e)->dev;
	struct ibv_mr *mr;

	if (r->kind == NKV_MEM_CUDA)
		return vb_reg_gpu(e, r);
	mr = ibv_reg_mr(d->pd, r->ptr, r->len, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	if (!mr) {
		int err = errno ? errno : ENOMEM;
		if (err == ENOMEM || err == EPERM || err == EFAULT)
			return nkv_err(err, "%s: ibv_reg_mr of %llu bytes failed: %s (locked-memory limit: raise `ulimit -l`, "
				       "see HARDWARE.md)", d->name, (unsigned long long)r->len, strerror(err));
		return nkv_err(err, "%s: ibv_reg_mr of %llu bytes failed: %s", d->name, (unsigned long long)r->len,
			       strerror(err));
	}
	r->be = mr;
	r->desc.rkey = mr->rkey;
	r->desc.addr = (uint64_t)(uintptr_t)r->ptr;
	return 0;
}

static void vb_dereg(struct nkv_engine *e, struct nkv_region *r)
{
	if (r->be && ibv_dereg_mr(r->be))
		nkv__log("%s: ibv_dereg_mr of region %u failed: %s", VE(e)->dev.name, r->id, strerror(errno));
	r->be = NULL;
}

int nkv__vb_listen(struct nkv_engine *e, const char *host, uint16_t port, uint16_t *port_out);
int nkv__vb_connect(struct nkv_engine *e, const char *host, uint16_t port, struct nkv_conn *c);
int nkv__vb_push(struct nkv_conn *c, struct nkv_push_req *req);
int nkv__vb_progress(struct nkv_engine *e, int timeout_ms);
void nkv__vb_close(struct nkv_conn *c);

const struct nkv_backend_ops nkv_verbs_ops = {
	.name = "verbs",
	.init = vb_init,
	.fini = vb_fini,
	.reg = vb_reg,
	.dereg = vb_dereg,
	.listen = nkv__vb_listen,
	.connect = nkv__vb_connect,
	.push = nkv__vb_push,
	.progress = nkv__vb_progress,
	.close = nkv__vb_close,
	.shape = nkv__vb_shape,
};
