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
};

/* 0 when root, iproute2 and tc shaping in a namespace work here; -EPERM otherwise. */
int nkv_fabric_check(const char *prefix);
int nkv_fabric_up(const struct nkv_topo *t, const struct nkv_fabric_opts *o);
/* Removes every namespace with the prefix; returns how many, or -errno. */
int nkv_fabric_down(const char *prefix);
/* First address of a host in the running fabric. */
int nkv_fabric_host_addr(const char *prefix, const char *host, char *addr, size_t len);
/* Moves the calling thread into the network namespace of a host or switch. */
int nkv_fabric_enter(const char *prefix, const char *name);

#endif
