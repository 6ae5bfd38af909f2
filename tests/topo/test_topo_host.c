/*
 * Host discovery: a smoke test on this machine (which may have no GPU and no
 * RDMA NIC: it must still work) and the PCIe distance classes on a made-up
 * three-socket machine fed to hwloc as XML (hwloc/three_sockets.xml):
 *   socket 0: GPU 03:00.0 and 05:00.0 and mlx5_0 behind one PCIe switch (PIX),
 *             GPU 10:00.0 on another host bridge (NODE), a BMC VGA (not a GPU)
 *   socket 1: GPU 84:00.0 two switches below the one mlx5_1 hangs off (PXB),
 *             GPU 86:00.0 on mlx5_1's host bridge (PHB)
 *   socket 2: an AMD GPU with no NIC on its socket (SYS)
 * The XML holds no comments: without libhwloc-plugins hwloc reads it with
 * its minimal parser, which refuses them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "netkv_topo.h"
#include "nkv_util.h"

static void this_machine(void **state)
{
	struct nkv_host_info *h = NULL;
	char nic[32];

	unsetenv("HWLOC_XMLFILE");
	assert_int_equal(nkv_host_discover(&h), 0);
	assert_true(h->nnuma >= 1);
	for (uint32_t i = 0; i < h->ngpus; i++)
		assert_true(h->gpus[i].nic < (int)h->nnics);
	if (h->ngpus == 0)
		assert_int_equal(nkv_host_nearest_nic(h, 0, nic, sizeof(nic)), -ENOENT);
	else if (h->nnics == 0)
		assert_int_equal(nkv_host_nearest_nic(h, 0, nic, sizeof(nic)), -ENOENT);
	printf("this machine: %u GPUs, %u RDMA NICs, %u NUMA nodes\n", h->ngpus, h->nnics, h->nnuma);
	nkv_host_free(h);
}

static void three_sockets(void **state)
{
	static const struct {
		const char *pci, *nic;
		int cls, numa;
	} want[] = {
		{ "0000:03:00.0", "mlx5_0", NKV_PCI_PIX, 0 }, { "0000:05:00.0", "mlx5_0", NKV_PCI_PIX, 0 },
		{ "0000:10:00.0", "mlx5_0", NKV_PCI_NODE, 0 }, { "0000:84:00.0", "mlx5_1", NKV_PCI_PXB, 1 },
		{ "0000:86:00.0", "mlx5_1", NKV_PCI_PHB, 1 }, { "0000:c0:00.0", "mlx5_0", NKV_PCI_SYS, 2 },
	};
	struct nkv_host_info *h = NULL;
	char nic[32];

	setenv("HWLOC_XMLFILE", NKV_TEST_DIR "/hwloc/three_sockets.xml", 1);
	assert_int_equal(nkv_host_discover(&h), 0);
	unsetenv("HWLOC_XMLFILE");
	assert_int_equal(h->ngpus, 6); /* the VGA BMC chip is not a GPU */
	assert_int_equal(h->nnics, 2);
	assert_int_equal(h->nnuma, 3);
	for (uint32_t i = 0; i < 6; i++) {
		assert_string_equal(h->gpus[i].pci, want[i].pci);
		assert_int_equal(h->gpus[i].numa, want[i].numa);
		assert_int_equal(h->gpus[i].nic_class, want[i].cls);
		assert_int_equal(nkv_host_nearest_nic(h, i, nic, sizeof(nic)), 0);
		assert_string_equal(nic, want[i].nic);
	}
	assert_string_equal(h->nics[0].netdev, "ens1f0");
	assert_string_equal(h->nics[1].pci, "0000:85:00.0");
	assert_int_equal(h->nics[1].numa, 1);
	/* CUDA's bus id form, upper case hex */
	assert_int_equal(nkv_host_nearest_nic_pci(h, "00000000:84:00.0", nic, sizeof(nic)), 0);
	assert_string_equal(nic, "mlx5_1");
	assert_int_equal(nkv_host_nearest_nic_pci(h, "0000:C0:00.0", nic, sizeof(nic)), 0);
	assert_string_equal(nic, "mlx5_0");
	assert_int_equal(nkv_host_nearest_nic_pci(h, "0000:11:00.0", nic, sizeof(nic)), -ENOENT);
	assert_int_equal(nkv_host_nearest_nic(h, 6, nic, sizeof(nic)), -ENOENT);
	assert_int_equal(h->numa[0].nic, 0);
	assert_int_equal(h->numa[0].nic_class, NKV_PCI_NODE);
	assert_int_equal(h->numa[1].nic, 1);
	assert_int_equal(h->numa[2].nic_class, NKV_PCI_SYS);
	assert_int_equal(h->numa[2].memory, 3ull << 30);
	assert_string_equal(nkv_pci_class_name(NKV_PCI_PXB), "PXB");
	nkv_host_free(h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(this_machine),
		cmocka_unit_test(three_sockets),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
