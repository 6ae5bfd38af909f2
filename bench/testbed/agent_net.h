/*
 * Where a testbed agent is reached and which GPU it uses, on real hosts.
 *
 * A decode listening on a wildcard address (--data 0.0.0.0:P) must not tell
 * the scheduler "0.0.0.0" or "127.0.0.1": prefills on other hosts push to
 * what it advertises. It advertises the local address of the interface
 * the kernel routes to the scheduler through (the one its peers share with
 * it), unless --advertise names one. A GPU pool's default device is the GPU
 * hwloc puts next to the RDMA NIC in use, as `netkv bench gpu` picks it.
 */
#ifndef NKV_AGENT_NET_H
#define NKV_AGENT_NET_H

#include <stddef.h>
#include <stdint.h>

/* The data address to advertise for a listener on host:port (port the one
 * bound): host itself unless it is a wildcard, else the local address the
 * route to the scheduler (sched, "host:port") leaves from. */
int agent_advertise_addr(const char *host, uint16_t port, const char *sched, char *out, size_t len);

/* The GPU for a pool: gpu >= 0 as given, else the one nearest nic by hwloc
 * (nic NULL or no such pairing: 0). why says which. */
int agent_pick_gpu(int gpu, const char *nic, char *why, size_t len);

#endif
