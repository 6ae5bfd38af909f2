/*
 * This host's GPUs, RDMA NICs and NUMA nodes with hwloc, and for each GPU
 * (and NUMA node) the nearest NIC in NCCL's distance classes:
 *   PIX  the two PCI devices sit under one PCIe switch, at most one bridge
 *        below the switch on each side
 *   PXB  they share a PCIe switch further up (several bridges)
 *   PHB  they meet at the PCIe host bridge
 *   NODE they meet at a CPU object but are local to the same NUMA node
 *   SYS  across NUMA nodes / sockets
 * GPUs are PCI display/3D controllers from NVIDIA or AMD, so a BMC's VGA
 * chip does not count; NICs are hwloc's OpenFabrics OS devices (the verbs
 * names, "mlx5_0", "rxe0"). hwloc honours HWLOC_XMLFILE, which is how the
 * tests feed it a machine with GPUs and NICs.
 */
#include "netkv_topo.h"
#include "nkv_util.h"

#include <errno.h>
#include <hwloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>

const char *nkv_pci_class_name(int cls)
{
	static const char *const n[] = { "PIX", "PXB", "PHB", "NODE", "SYS" };
	return cls >= 0 && cls <= NKV_PCI_SYS ? n[cls] : "?";
}

static void pci_name(hwloc_obj_t pci, char *buf, size_t len)
{
	snprintf(buf, len, "%04x:%02x:%02x.%01x", pci->attr->pcidev.domain, pci->attr->pcidev.bus,
		 pci->attr->pcidev.dev, pci->attr->pcidev.func);
}

static int numa_of(hwloc_topology_t topo, hwloc_obj_t obj)
{
	hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(topo, obj);

	if (!anc || !anc->nodeset || hwloc_bitmap_weight(anc->nodeset) != 1)
		return -1;
	return hwloc_bitmap_first(anc->nodeset);
}

static bool is_bridge(hwloc_obj_t o)
{
	return o && o->type == HWLOC_OBJ_BRIDGE;
}

static bool is_host_bridge(hwloc_obj_t o)
{
	return is_bridge(o) && o->attr->bridge.upstream_type == HWLOC_OBJ_BRIDGE_HOST;
}

/* Bridges strictly between obj and its ancestor anc. */
static int bridges_between(hwloc_obj_t obj, hwloc_obj_t anc)
{
	int n = 0;

	for (hwloc_obj_t o = obj->parent; o && o != anc; o = o->parent)
		n += is_bridge(o);
	return n;
}

/* hwloc_get_common_ancestor_obj() compares depths, which I/O objects do not
 * have: walk the parent chains instead. */
static hwloc_obj_t common_ancestor(hwloc_obj_t a, hwloc_obj_t b)
{
	for (hwloc_obj_t x = a; x; x = x->parent)
		for (hwloc_obj_t y = b; y; y = y->parent)
			if (x == y)
				return x;
	return NULL;
}

static int pci_class(hwloc_topology_t topo, hwloc_obj_t a, hwloc_obj_t b)
{
	hwloc_obj_t anc = common_ancestor(a, b);

	if (!anc)
		return NKV_PCI_UNKNOWN;
	if (is_host_bridge(anc))
		return NKV_PCI_PHB;
	if (is_bridge(anc))
		return bridges_between(a, anc) <= 1 && bridges_between(b, anc) <= 1 ? NKV_PCI_PIX : NKV_PCI_PXB;
	if (anc->type == HWLOC_OBJ_PCI_DEVICE)
		return NKV_PCI_PIX;
	/* Met at a CPU-side object: same NUMA node or not. */
	int na = numa_of(topo, a), nb = numa_of(topo, b);
	return na >= 0 && na == nb ? NKV_PCI_NODE : NKV_PCI_SYS;
}

static bool is_gpu(hwloc_obj_t pci)
{
	unsigned vendor = pci->attr->pcidev.vendor_id, base = pci->attr->pcidev.class_id >> 8;

	return base == 0x03 && (vendor == 0x10de || vendor == 0x1002);
}

static hwloc_obj_t pci_parent(hwloc_obj_t osdev)
{
	hwloc_obj_t p = osdev->parent;
	return p && p->type == HWLOC_OBJ_PCI_DEVICE ? p : NULL;
}

void nkv_host_free(struct nkv_host_info *h)
{
	if (!h)
		return;
	free(h->gpus);
	free(h->nics);
	free(h->numa);
	free(h);
}

int nkv_host_discover(struct nkv_host_info **out)
{
	hwloc_topology_t topo;
	struct nkv_host_info *h;
	hwloc_obj_t o;
	hwloc_obj_t *gpu_obj = NULL, *nic_obj = NULL;
	int rc = 0;

	*out = NULL;
	if (hwloc_topology_init(&topo))
		return nkv_err(ENOMEM, "hwloc: cannot initialise");
	hwloc_topology_set_io_types_filter(topo, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
	/* The Linux backend reads PCI from sysfs itself; the libpciaccess plugin
	 * only adds vendor names and leaks its ID database (found under ASan). */
	hwloc_topology_set_components(topo, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST, "pci");
	if (hwloc_topology_load(topo)) {
		hwloc_topology_destroy(topo);
		return nkv_err(EIO, "hwloc: cannot load this machine's topology: %s", strerror(errno));
	}
	h = calloc(1, sizeof(*h));
	int npci = 0, nos = 0, nnuma = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_NUMANODE);
	for (o = NULL; (o = hwloc_get_next_pcidev(topo, o));)
		npci++;
	for (o = NULL; (o = hwloc_get_next_osdev(topo, o));)
		nos++;
	if (h) {
		h->gpus = calloc((size_t)npci + 1, sizeof(*h->gpus));
		h->nics = calloc((size_t)nos + 1, sizeof(*h->nics));
		h->numa = calloc((size_t)(nnuma > 0 ? nnuma : 1), sizeof(*h->numa));
	}
	gpu_obj = calloc((size_t)npci + 1, sizeof(*gpu_obj));
	nic_obj = calloc((size_t)nos + 1, sizeof(*nic_obj));
	if (!h || !h->gpus || !h->nics || !h->numa || !gpu_obj || !nic_obj) {
		rc = nkv_err(ENOMEM, "host discovery: out of memory");
		goto out;
	}

	for (o = NULL; (o = hwloc_get_next_pcidev(topo, o));) {
		if (!is_gpu(o))
			continue;
		struct nkv_host_gpu *g = &h->gpus[h->ngpus];
		const char *name = NULL;
		/* Prefer the CUDA/NVML/DRM OS device name when hwloc has one. */
		for (hwloc_obj_t c = o->io_first_child; c; c = c->next_sibling)
			if (c->type == HWLOC_OBJ_OS_DEVICE &&
			    (c->attr->osdev.type == HWLOC_OBJ_OSDEV_COPROC || c->attr->osdev.type == HWLOC_OBJ_OSDEV_GPU) &&
			    c->name && (!name || !strncmp(c->name, "cuda", 4)))
				name = c->name;
		if (name)
			snprintf(g->name, sizeof(g->name), "%s", name);
		else
			snprintf(g->name, sizeof(g->name), "gpu%u", h->ngpus);
		pci_name(o, g->pci, sizeof(g->pci));
		g->numa = numa_of(topo, o);
		g->nic = -1;
		g->nic_class = NKV_PCI_UNKNOWN;
		gpu_obj[h->ngpus++] = o;
	}
	for (o = NULL; (o = hwloc_get_next_osdev(topo, o));) {
		if (o->attr->osdev.type != HWLOC_OBJ_OSDEV_OPENFABRICS || !o->name)
			continue;
		struct nkv_host_nic *n = &h->nics[h->nnics];
		hwloc_obj_t pci = pci_parent(o);
		snprintf(n->name, sizeof(n->name), "%s", o->name);
		n->numa = numa_of(topo, o);
		if (pci) {
			pci_name(pci, n->pci, sizeof(n->pci));
			for (hwloc_obj_t c = pci->io_first_child; c; c = c->next_sibling)
				if (c->type == HWLOC_OBJ_OS_DEVICE && c->attr->osdev.type == HWLOC_OBJ_OSDEV_NETWORK && c->name) {
					snprintf(n->netdev, sizeof(n->netdev), "%s", c->name);
					break;
				}
		}
		nic_obj[h->nnics++] = pci ? pci : o;
	}
	for (int i = 0; i < nnuma; i++) {
		hwloc_obj_t node = hwloc_get_obj_by_type(topo, HWLOC_OBJ_NUMANODE, (unsigned)i);
		struct nkv_host_numa *m = &h->numa[h->nnuma++];
		m->os_index = (int)node->os_index;
		m->memory = node->attr->numanode.local_memory;
		m->nic = -1;
		m->nic_class = NKV_PCI_UNKNOWN;
		for (uint32_t k = 0; k < h->nnics; k++) {
			int cls = h->nics[k].numa == m->os_index ? NKV_PCI_NODE : NKV_PCI_SYS;
			if (m->nic < 0 || cls < m->nic_class) {
				m->nic = (int)k;
				m->nic_class = cls;
			}
		}
	}
	for (uint32_t gi = 0; gi < h->ngpus; gi++)
		for (uint32_t k = 0; k < h->nnics; k++) {
			int cls = pci_class(topo, gpu_obj[gi], nic_obj[k]);
			if (h->gpus[gi].nic < 0 || cls < h->gpus[gi].nic_class) {
				h->gpus[gi].nic = (int)k;
				h->gpus[gi].nic_class = cls;
			}
		}
out:
	free(gpu_obj);
	free(nic_obj);
	hwloc_topology_destroy(topo);
	if (rc) {
		nkv_host_free(h);
		return rc;
	}
	*out = h;
	return 0;
}

int nkv_host_nearest_nic(const struct nkv_host_info *h, uint32_t gpu, char *name, size_t len)
{
	if (gpu >= h->ngpus)
		return nkv_err(ENOENT, "no GPU %u on this host (%u found)", gpu, h->ngpus);
	if (h->gpus[gpu].nic < 0)
		return nkv_err(ENOENT, "GPU %u (%s): no RDMA NIC on this host", gpu, h->gpus[gpu].pci);
	snprintf(name, len, "%s", h->nics[h->gpus[gpu].nic].name);
	return 0;
}

int nkv_host_nearest_nic_pci(const struct nkv_host_info *h, const char *pci, char *name, size_t len)
{
	/* CUDA prints "00000000:17:00.0" (8-digit domain); hwloc "0000:17:00.0": compare from the bus on. */
	const char *want = strchr(pci, ':');

	for (uint32_t i = 0; want && i < h->ngpus; i++) {
		const char *have = strchr(h->gpus[i].pci, ':');
		if (have && !strcasecmp(have, want))
			return nkv_host_nearest_nic(h, i, name, len);
	}
	return nkv_err(ENOENT, "no GPU with PCI bus id %s on this host", pci);
}
