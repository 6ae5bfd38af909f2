/*
 * The emulated fabric (fabric.c), for the CLI and for tests and benches
 * that build one and run things inside its host namespaces.
 */
#ifndef NKV_FABRIC_H
#define NKV_FABRIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nkv_topo;

struct nkv_fabric_opts {
	const char *prefix;    /* namespace prefix, "nkv-"; must start with "nkv" */
	double scale;          /* link rate divisor: 400 Gb/s / 400 = 1 Gbit/s */
	double latency_scale;  /* per-hop latency multiplier for netem */
	uint32_t mtu;          /* veth MTU, 9000 */
	bool verbose;
	/* An unshaped management network, like a real cluster's: namespace
	 * PREFIX"mgmt" holds a bridge at NKV_FABRIC_MGMT_ADDR/16 and every host
	 * gets a veth "mg0" on it (10.78.0.0/16, host i at 10.78.0.0 + i + 2).
	 * Ports are isolated: hosts reach the mgmt namespace (a scheduler runs
	 * there) but not each other, so data still crosses the shaped tree. */
	bool mgmt;
};

#define NKV_FABRIC_MGMT_NS "mgmt"
#define NKV_FABRIC_MGMT_ADDR "10.78.0.1"

/* 0 when root, iproute2 and tc shaping in a namespace work here; -EPERM otherwise. */
int nkv_fabric_check(const char *prefix);
int nkv_fabric_up(const struct nkv_topo *t, const struct nkv_fabric_opts *o);
/* Removes every namespace with the prefix; returns how many, or -errno. */
int nkv_fabric_down(const char *prefix);
/* First address of a host in the running fabric. */
int nkv_fabric_host_addr(const char *prefix, const char *host, char *addr, size_t len);
/* Address of the host's nic-th NIC (host-local index, in topology order). */
int nkv_fabric_nic_addr(const char *prefix, const char *host, uint32_t nic, char *addr, size_t len);
/* Address of the child end of a link (a NIC's name, or a switch's name for
 * its uplink: the switch's own address there) and, if parent is not NULL,
 * the name of the switch at its other end. */
int nkv_fabric_link_addr(const char *prefix, const char *link, char *addr, size_t len, char *parent, size_t plen);
/* Moves the calling thread into the network namespace of a host or switch. */
int nkv_fabric_enter(const char *prefix, const char *name);

#endif
