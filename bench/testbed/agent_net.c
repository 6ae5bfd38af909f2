/* Advertised data address and GPU choice of a testbed agent (agent_net.h). */
#include "agent_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gpu.h"
#include "netkv_topo.h"
#include "nkv_util.h"

int agent_advertise_addr(const char *host, uint16_t port, const char *sched, char *out, size_t len)
{
	if (strcmp(host, "0.0.0.0") && strcmp(host, "*") && host[0]) {
		snprintf(out, len, "%s:%u", host, port);
		return 0;
	}
	char sh[64];
	uint16_t sp;
	int rc = nkv_parse_hostport(sched, sh, sizeof(sh), &sp);
	if (rc)
		return nkv_err_wrap(-rc, "--scheduler");
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_DGRAM }, *ai = NULL;
	int g = getaddrinfo(sh, NULL, &hints, &ai);
	if (g || !ai)
		return nkv_err(EHOSTUNREACH, "--data %s: cannot resolve the scheduler host '%s' to find the route: %s",
			       host, sh, gai_strerror(g));
	struct sockaddr_in sin = *(struct sockaddr_in *)ai->ai_addr, me;
	freeaddrinfo(ai);
	sin.sin_port = htons(sp ? sp : 9);
	socklen_t ml = sizeof(me);
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	/* connect() on UDP sends nothing: it only asks the kernel for the route */
	if (fd < 0 || connect(fd, (struct sockaddr *)&sin, sizeof(sin)) || getsockname(fd, (struct sockaddr *)&me, &ml)) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return nkv_err(e, "--data %s: no route to the scheduler %s to advertise an address (%s); give --advertise IP:PORT",
			       host, sched, strerror(e));
	}
	close(fd);
	char ip[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &me.sin_addr, ip, sizeof(ip));
	snprintf(out, len, "%s:%u", ip, port);
	return 0;
}

int agent_pick_gpu(int gpu, const char *nic, char *why, size_t len)
{
	struct nkv_host_info *h = NULL;
	int dev = 0;

	if (gpu >= 0) {
		snprintf(why, len, "--gpu %d", gpu);
		return gpu;
	}
	snprintf(why, len, "default GPU 0 (no --device NIC to pair with)");
	if (!nic || nkv_host_discover(&h))
		return 0;
	snprintf(why, len, "default GPU 0 (hwloc finds no GPU next to %s)", nic);
	for (uint32_t i = 0; i < h->ngpus; i++) {
		int ni = h->gpus[i].nic;
		if (ni >= 0 && (uint32_t)ni < h->nnics && !strcmp(h->nics[ni].name, nic) &&
		    !nkv__gpu()->device_by_pci(h->gpus[i].pci, &dev)) {
			snprintf(why, len, "nearest to %s by hwloc (%s, %s)", nic, h->gpus[i].pci,
				 nkv_pci_class_name(h->gpus[i].nic_class));
			break;
		}
	}
	nkv_host_free(h);
	return dev;
}
