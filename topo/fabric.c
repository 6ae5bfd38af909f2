/*
 * netkv fabric up | down | status | exec: a topology built on one Linux box.
 *
 * One network namespace per host and per switch (named PREFIX + name,
 * PREFIX "nkv-" by default), one veth pair per link (NIC <-> leaf,
 * leaf <-> spine, spine <-> core), a /30 per pair from 10.77.0.0/16, static
 * routes so traffic follows the tree (up to the lowest common switch, then
 * down), and on each veth end, for the direction leaving it, a tbf at the
 * link's rate divided by --scale with a netem child for the link's latency
 * times --latency-scale. Addresses exist only inside namespaces we create;
 * nothing is configured in the caller's namespace, so nothing leaves the box.
 *
 * `down` deletes every namespace whose name starts with the prefix (which
 * takes the veths with it) and the state file, so it also cleans up after
 * a crash and is idempotent. Everything is done with ip(8) and tc(8).
 *
 * --mgmt adds an unshaped management network (fabric.h): a namespace
 * PREFIX"mgmt" with a bridge, one isolated bridge port per host, so a
 * scheduler there is reachable from every host without touching the
 * caller's namespace and without a shortcut between hosts.
 */
#include "netkv_topo.h"
#include "topo_cli.h"
#include "nkv_cli.h"
#include "nkv_json_out.h"
#include "nkv_util.h"
#include "topo_model.h"
#include "fabric.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NETNS_DIR "/run/netns"
#define STATE_DIR "/run/netkv"
#define MAX_PAIRS 16384
#define MIN_RATE_BPS 8e3   /* tbf below 1 kB/s: nothing useful gets through */
#define MAX_DELAY_US 1e7

/* Run a command given as one printf-formatted line; words split on spaces
 * (every name that reaches here was validated to [A-Za-z0-9._-]). */
__attribute__((format(printf, 2, 3)))
static int run(bool quiet, const char *fmt, ...)
{
	char line[1024], *argv[64], *save = NULL;
	int argc = 0, status;
	va_list ap;
	pid_t pid;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	char copy[sizeof(line)];
	memcpy(copy, line, sizeof(line));
	for (char *w = strtok_r(copy, " ", &save); w && argc < 63; w = strtok_r(NULL, " ", &save))
		argv[argc++] = w;
	argv[argc] = NULL;
	if (!argc)
		return nkv_err(EINVAL, "empty command");
	pid = fork();
	if (pid < 0)
		return nkv_err(errno, "fork: %s", strerror(errno));
	if (pid == 0) {
		if (quiet) {
			int fd = open("/dev/null", O_WRONLY);
			if (fd >= 0) {
				dup2(fd, 1);
				dup2(fd, 2);
			}
		}
		execvp(argv[0], argv);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return nkv_err(errno, "waitpid: %s", strerror(errno));
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		return nkv_err(EIO, "'%s' failed (%s %d)", line, WIFEXITED(status) ? "exit" : "signal",
			       WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
	return 0;
}

static bool valid_prefix(const char *p)
{
	if (strncmp(p, "nkv", 3) || strlen(p) > 20)
		return false;
	for (; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
			return false;
	return true;
}

int nkv_fabric_check(const char *prefix)
{
	char ns[64];

	if (geteuid() != 0)
		return nkv_err(EPERM, "the emulated fabric needs root (network namespaces, tc)");
	snprintf(ns, sizeof(ns), "%sprobe%d", prefix, (int)getpid());
	if (run(true, "ip netns add %s", ns))
		return nkv_err(EPERM, "cannot create a network namespace (ip netns add): no iproute2 or no CAP_SYS_ADMIN");
	int rc = run(true, "tc -n %s qdisc add dev lo root tbf rate 1mbit burst 32k latency 10ms", ns);
	run(true, "ip netns del %s", ns);
	if (rc)
		return nkv_err(EPERM, "tc cannot shape inside a namespace (sch_tbf missing?)");
	return 0;
}

static void state_path(const char *prefix, char *buf, size_t len)
{
	snprintf(buf, len, STATE_DIR "/%sfabric.json", prefix);
}

/* Namespaces present with our prefix. Calls fn for each; returns the count. */
static int each_ns(const char *prefix, void (*fn)(const char *name, void *arg), void *arg)
{
	DIR *d = opendir(NETNS_DIR);
	struct dirent *e;
	int n = 0;

	if (!d)
		return 0;
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, prefix, strlen(prefix))) {
			n++;
			if (fn)
				fn(e->d_name, arg);
		}
	closedir(d);
	return n;
}

static void del_ns(const char *name, void *arg)
{
	int *failed = arg;
	if (run(true, "ip netns del %s", name))
		(*failed)++;
}

int nkv_fabric_down(const char *prefix)
{
	char path[256];
	int failed = 0, n;

	if (!valid_prefix(prefix))
		return nkv_err(EINVAL, "fabric prefix '%s': must start with nkv, [a-z0-9-], at most 20 chars", prefix);
	n = each_ns(prefix, del_ns, &failed);
	state_path(prefix, path, sizeof(path));
	unlink(path);
	if (failed)
		return nkv_err(EIO, "could not delete %d of %d namespaces with prefix %s", failed, n, prefix);
	return n;
}

struct pair {
	char child_ns[80], parent_ns[80];
	char child_dev[16], parent_dev[16];
	uint32_t child_addr, parent_addr; /* host order */
	double gbps, latency_us;
	const char *name; /* of the up link */
};

static const char *ip4(uint32_t a, char *buf)
{
	snprintf(buf, 16, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255);
	return buf;
}

/* netem is optional: some kernels (this project's CI VM among them) build
 * without CONFIG_NET_SCH_NETEM. Without it the rate is still shaped and the
 * latency is what the extra hops really cost; status says so. */
static bool have_netem(const char *prefix)
{
	char ns[64];
	int rc;

	snprintf(ns, sizeof(ns), "%snetem%d", prefix, (int)getpid());
	if (run(true, "ip netns add %s", ns))
		return false;
	rc = run(true, "tc -n %s qdisc add dev lo root netem delay 1us", ns);
	run(true, "ip netns del %s", ns);
	return rc == 0;
}

static int shape(const char *ns, const char *dev, double rate_bps, double delay_us)
{
	double burst = rate_bps / 8 * 0.004;
	int rc;

	if (burst < 65536)
		burst = 65536;
	rc = run(false, "tc -n %s qdisc add dev %s root handle 1: tbf rate %.0fbit burst %.0f latency 200ms", ns, dev,
		 rate_bps, burst);
	if (!rc && delay_us >= 1)
		rc = run(false, "tc -n %s qdisc add dev %s parent 1:1 handle 10: netem delay %.0fus limit 100000", ns, dev,
			 delay_us);
	return rc;
}

/* The management network (see fabric.h); host i at 10.78.0.0 + i + 2. */
static uint32_t mgmt_addr(uint32_t host)
{
	return (10u << 24) | (78u << 16) | (host + 2);
}

static int mgmt_up(const struct nkv_topo *t, const struct nkv_fabric_opts *o)
{
	const char *p = o->prefix;
	char a[16];
	int rc;

	rc = run(false, "ip netns add %s" NKV_FABRIC_MGMT_NS, p);
	if (!rc)
		rc = run(false, "ip -n %s" NKV_FABRIC_MGMT_NS " link set lo up", p);
	if (!rc)
		rc = run(false, "ip -n %s" NKV_FABRIC_MGMT_NS " link add br0 type bridge", p);
	if (!rc)
		rc = run(false, "ip -n %s" NKV_FABRIC_MGMT_NS " addr add " NKV_FABRIC_MGMT_ADDR "/16 dev br0", p);
	if (!rc)
		rc = run(false, "ip -n %s" NKV_FABRIC_MGMT_NS " link set br0 up", p);
	for (uint32_t h = 0; h < t->nhosts && !rc; h++) {
		const char *hn = t->hosts[h].name;
		rc = run(false, "ip -n %s%s link add mg0 type veth peer name m%u netns %s" NKV_FABRIC_MGMT_NS, p, hn, h, p);
		if (!rc)
			rc = run(false, "ip -n %s%s addr add %s/16 dev mg0", p, hn, ip4(mgmt_addr(h), a));
		if (!rc)
			rc = run(false, "ip -n %s%s link set mg0 up", p, hn);
		if (!rc)
			rc = run(false, "ip -n %s" NKV_FABRIC_MGMT_NS " link set m%u master br0", p, h);
		if (!rc)
			rc = run(false, "bridge -n %s" NKV_FABRIC_MGMT_NS " link set dev m%u isolated on", p, h);
		if (!rc)
			rc = run(false, "ip -n %s" NKV_FABRIC_MGMT_NS " link set m%u up", p, h);
	}
	return rc;
}

int nkv_fabric_up(const struct nkv_topo *t, const struct nkv_fabric_opts *o)
{
	uint32_t npairs = t->nnics + t->nswitches;
	struct pair *pr = NULL;
	uint32_t *ndown = NULL;
	json_t *state = NULL, *hosts, *links;
	char a1[16], a2[16], path[256];
	int rc = 0;

	if (!valid_prefix(o->prefix))
		return nkv_err(EINVAL, "fabric prefix '%s': must start with nkv, [a-z0-9-], at most 20 chars", o->prefix);
	if (!(o->scale >= 1) || !(o->latency_scale >= 0))
		return nkv_err(EINVAL, "--scale must be >= 1 and --latency-scale >= 0");
	if (npairs > MAX_PAIRS)
		return nkv_err(EINVAL, "topology has %u links, the 10.77/16 plan holds %u", npairs, MAX_PAIRS);
	/* Shaped figures tc can take, checked before anything is made. */
	for (uint32_t k = 0; k < npairs; k++) {
		const char *name = k < t->nnics ? t->nics[k].name : t->switches[k - t->nnics].name;
		double gbps = k < t->nnics ? t->nics[k].gbps : t->switches[k - t->nnics].up_gbps;
		double us = k < t->nnics ? t->nics[k].latency_us : t->switches[k - t->nnics].latency_us;

		if (k >= t->nnics && t->switches[k - t->nnics].up == TOPO_NONE)
			continue;
		if (!(gbps * 1e9 / o->scale >= MIN_RATE_BPS))
			return nkv_err(EINVAL, "link %s: %g Gb/s / scale %g = %g bit/s, below the %g bit/s tc can shape",
				       name, gbps, o->scale, gbps * 1e9 / o->scale, MIN_RATE_BPS);
		if (!(us * o->latency_scale <= MAX_DELAY_US))
			return nkv_err(EINVAL, "link %s: %g us x latency scale %g is more than %g s of delay", name, us,
				       o->latency_scale, MAX_DELAY_US * 1e-6);
	}
	if (o->mgmt)
		for (uint32_t k = 0; k < t->nhosts + t->nswitches; k++) {
			const char *n = k < t->nhosts ? t->hosts[k].name : t->switches[k - t->nhosts].name;
			if (!strcmp(n, NKV_FABRIC_MGMT_NS))
				return nkv_err(EINVAL, "--mgmt: the topology has a node named %s, the management namespace's name", n);
		}
	if (each_ns(o->prefix, NULL, NULL))
		return nkv_err(EEXIST, "a fabric with prefix %s is already up (netkv fabric down first)", o->prefix);
	rc = nkv_fabric_check(o->prefix);
	if (rc)
		return rc;
	bool netem = have_netem(o->prefix);
	double lscale = netem ? o->latency_scale : 0;
	if (!netem && o->verbose)
		fprintf(stderr, "fabric: this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM): rates are shaped, "
				"per-hop latency is not emulated\n");
	if (nkv_topo_ecmp(t, NULL, NULL))
		/* Said always: the emulated tree has one veth per aggregated uplink, not the members. */
		fprintf(stderr, "fabric: the topology declares ECMP spines and cores; the emulated fabric builds the "
				"aggregated tree (one shaped link per switch uplink), the members exist only in the "
				"simulator\n");
	pr = calloc(npairs, sizeof(*pr));
	ndown = calloc(t->nswitches ? t->nswitches : 1, sizeof(*ndown));
	if (!pr || !ndown) {
		rc = nkv_err(ENOMEM, "out of memory");
		goto out;
	}

	/* Plan: pair k < nnics is NIC k, then one per switch uplink (pair nnics+i). */
	for (uint32_t k = 0; k < npairs; k++) {
		struct pair *p = &pr[k];
		uint32_t base = (10u << 24) | (77u << 16) | (4 * k);
		uint32_t parent_sw;

		if (k < t->nnics) {
			const struct topo_nic *n = &t->nics[k];
			const struct topo_host *h = &t->hosts[n->host];
			parent_sw = h->leaf;
			snprintf(p->child_ns, sizeof(p->child_ns), "%s%s", o->prefix, h->name);
			snprintf(p->child_dev, sizeof(p->child_dev), "n%u", k - h->first_nic);
			p->gbps = n->gbps;
			p->latency_us = n->latency_us;
		} else {
			const struct topo_switch *s = &t->switches[k - t->nnics];
			if (s->up == TOPO_NONE)
				continue;
			parent_sw = s->up;
			snprintf(p->child_ns, sizeof(p->child_ns), "%s%s", o->prefix, s->name);
			snprintf(p->child_dev, sizeof(p->child_dev), "upl");
			p->gbps = s->up_gbps;
			p->latency_us = s->latency_us;
		}
		snprintf(p->parent_ns, sizeof(p->parent_ns), "%s%s", o->prefix, t->switches[parent_sw].name);
		snprintf(p->parent_dev, sizeof(p->parent_dev), "d%u", ndown[parent_sw]++);
		p->child_addr = base + 1;
		p->parent_addr = base + 2;
		p->name = k < t->nnics ? t->nics[k].name : t->switches[k - t->nnics].name;
	}

	if (o->verbose)
		fprintf(stderr, "fabric: %u namespaces, %u links\n", t->nhosts + t->nswitches, npairs);
	for (uint32_t h = 0; h < t->nhosts && !rc; h++)
		rc = run(false, "ip netns add %s%s", o->prefix, t->hosts[h].name);
	for (uint32_t s = 0; s < t->nswitches && !rc; s++) {
		rc = run(false, "ip netns add %s%s", o->prefix, t->switches[s].name);
		if (!rc)
			rc = run(true, "ip netns exec %s%s sysctl -qw net.ipv4.ip_forward=1", o->prefix, t->switches[s].name);
	}
	for (uint32_t h = 0; h < t->nhosts && !rc; h++)
		rc = run(false, "ip -n %s%s link set lo up", o->prefix, t->hosts[h].name);
	for (uint32_t s = 0; s < t->nswitches && !rc; s++)
		rc = run(false, "ip -n %s%s link set lo up", o->prefix, t->switches[s].name);

	for (uint32_t k = 0; k < npairs && !rc; k++) {
		struct pair *p = &pr[k];
		if (!p->child_ns[0])
			continue;
		rc = run(false, "ip -n %s link add %s mtu %u type veth peer name %s mtu %u netns %s", p->child_ns,
			 p->child_dev, o->mtu, p->parent_dev, o->mtu, p->parent_ns);
		if (!rc)
			rc = run(false, "ip -n %s addr add %s/30 dev %s", p->child_ns, ip4(p->child_addr, a1), p->child_dev);
		if (!rc)
			rc = run(false, "ip -n %s addr add %s/30 dev %s", p->parent_ns, ip4(p->parent_addr, a1), p->parent_dev);
		if (!rc)
			rc = run(false, "ip -n %s link set %s up", p->child_ns, p->child_dev);
		if (!rc)
			rc = run(false, "ip -n %s link set %s up", p->parent_ns, p->parent_dev);
		/* child end carries the up direction, parent end the down direction */
		if (!rc)
			rc = shape(p->child_ns, p->child_dev, p->gbps * 1e9 / o->scale, p->latency_us * lscale);
		if (!rc)
			rc = shape(p->parent_ns, p->parent_dev, p->gbps * 1e9 / o->scale, p->latency_us * lscale);
	}

	/* Hosts: default route out of NIC 0; other NICs answer from their own address (policy routing). */
	for (uint32_t k = 0; k < t->nnics && !rc; k++) {
		const struct pair *p = &pr[k];
		uint32_t local = k - t->hosts[t->nics[k].host].first_nic;
		if (local == 0) {
			rc = run(false, "ip -n %s route add default via %s dev %s", p->child_ns, ip4(p->parent_addr, a1),
				 p->child_dev);
		} else {
			rc = run(false, "ip -n %s rule add from %s table %u", p->child_ns, ip4(p->child_addr, a1), 100 + local);
			if (!rc)
				rc = run(false, "ip -n %s route add default via %s dev %s table %u", p->child_ns,
					 ip4(p->parent_addr, a1), p->child_dev, 100 + local);
		}
		/* Every switch above the leaf routes this NIC's address down toward it. */
		for (uint32_t cur = t->hosts[t->nics[k].host].leaf; !rc && t->switches[cur].up != TOPO_NONE;
		     cur = t->switches[cur].up) {
			const struct pair *up = &pr[t->nnics + cur];
			rc = run(false, "ip -n %s route add %s/32 via %s dev %s", up->parent_ns, ip4(p->child_addr, a1),
				 ip4(up->child_addr, a2), up->parent_dev);
		}
	}
	/* Switches: everything not below goes up. */
	for (uint32_t s = 0; s < t->nswitches && !rc; s++) {
		const struct pair *p = &pr[t->nnics + s];
		if (t->switches[s].up != TOPO_NONE)
			rc = run(false, "ip -n %s route add default via %s dev upl", p->child_ns, ip4(p->parent_addr, a1));
	}
	if (!rc && o->mgmt)
		rc = mgmt_up(t, o);
	if (rc)
		goto out;

	/* State for status/exec and for scripts: which address is which host. */
	state = json_pack("{s:s,s:s,s:f,s:f,s:b,s:i}", "topology", t->name, "prefix", o->prefix, "scale", o->scale,
			  "latency_scale", o->latency_scale, "latency_emulated", netem, "mtu", (int)o->mtu);
	hosts = json_array();
	links = json_array();
	for (uint32_t h = 0; h < t->nhosts; h++) {
		json_t *addrs = json_array();
		for (uint32_t k = t->hosts[h].first_nic; k < t->hosts[h].first_nic + t->hosts[h].nnics; k++)
			json_array_append_new(addrs, json_string(ip4(pr[k].child_addr, a1)));
		json_t *hj = json_pack("{s:s,s:s+,s:o}", "name", t->hosts[h].name, "netns", o->prefix, t->hosts[h].name,
				       "addrs", addrs);
		if (o->mgmt)
			json_object_set_new(hj, "mgmt_addr", json_string(ip4(mgmt_addr(h), a1)));
		json_array_append_new(hosts, hj);
	}
	if (o->mgmt)
		json_object_set_new(state, "mgmt", json_pack("{s:s+,s:s}", "netns", o->prefix, NKV_FABRIC_MGMT_NS, "addr",
							     NKV_FABRIC_MGMT_ADDR));
	for (uint32_t k = 0; k < npairs; k++) {
		const struct pair *p = &pr[k];
		if (!p->child_ns[0])
			continue;
		json_array_append_new(links, json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:f,s:f}", "link", p->name, "child_ns",
						       p->child_ns, "child_dev", p->child_dev, "child_addr",
						       ip4(p->child_addr, a1), "parent_ns", p->parent_ns, "parent_dev",
						       p->parent_dev, "rate_bps", p->gbps * 1e9 / o->scale, "delay_us",
						       p->latency_us * lscale));
	}
	json_object_set_new(state, "hosts", hosts);
	json_object_set_new(state, "links", links);
	mkdir(STATE_DIR, 0755);
	state_path(o->prefix, path, sizeof(path));
	if (json_dump_file(state, path, JSON_INDENT(1) | JSON_PRESERVE_ORDER))
		rc = nkv_err(EIO, "cannot write %s", path);
out:
	json_decref(state);
	free(pr);
	free(ndown);
	if (rc) {
		char keep[NKV_ERRSTR_MAX];
		snprintf(keep, sizeof(keep), "%s", nkv_last_error());
		nkv_fabric_down(o->prefix);
		return nkv_err(rc, "fabric up: %s (everything made was removed)", keep);
	}
	return 0;
}

int nkv_fabric_host_addr(const char *prefix, const char *host, char *addr, size_t len)
{
	return nkv_fabric_nic_addr(prefix, host, 0, addr, len);
}

int nkv_fabric_nic_addr(const char *prefix, const char *host, uint32_t nic, char *addr, size_t len)
{
	char path[256];
	json_error_t jerr;
	json_t *st, *hosts, *h;
	size_t i;

	state_path(prefix, path, sizeof(path));
	st = json_load_file(path, 0, &jerr);
	if (!st)
		return nkv_err(ENOENT, "no fabric with prefix %s is up (%s: %s)", prefix, path, jerr.text);
	hosts = json_object_get(st, "hosts");
	json_array_foreach(hosts, i, h) {
		const char *name = json_string_value(json_object_get(h, "name"));
		const char *a = json_string_value(json_array_get(json_object_get(h, "addrs"), nic));
		if (name && !strcmp(name, host) && !a) {
			json_decref(st);
			return nkv_err(ENOENT, "fabric %s: host %s has no NIC %u", prefix, host, nic);
		}
		if (name && a && !strcmp(name, host)) {
			snprintf(addr, len, "%s", a);
			json_decref(st);
			return 0;
		}
	}
	json_decref(st);
	return nkv_err(ENOENT, "fabric %s has no host %s", prefix, host);
}

int nkv_fabric_link_addr(const char *prefix, const char *link, char *addr, size_t len, char *parent, size_t plen)
{
	char path[256];
	json_error_t jerr;
	json_t *st, *l;
	size_t i;

	state_path(prefix, path, sizeof(path));
	st = json_load_file(path, 0, &jerr);
	if (!st)
		return nkv_err(ENOENT, "no fabric with prefix %s is up (%s: %s)", prefix, path, jerr.text);
	json_array_foreach(json_object_get(st, "links"), i, l) {
		const char *name = json_string_value(json_object_get(l, "link"));
		const char *a = json_string_value(json_object_get(l, "child_addr"));
		const char *pns = json_string_value(json_object_get(l, "parent_ns"));
		if (name && a && pns && !strcmp(name, link)) {
			snprintf(addr, len, "%s", a);
			if (parent)
				snprintf(parent, plen, "%s", pns + strnlen(prefix, strlen(pns)));
			json_decref(st);
			return 0;
		}
	}
	json_decref(st);
	return nkv_err(ENOENT, "fabric %s has no link %s", prefix, link);
}

int nkv_fabric_enter(const char *prefix, const char *name)
{
	char path[256];
	int fd, rc;

	if (!valid_prefix(prefix) || !nkv__topo_valid_name(name))
		return nkv_err(EINVAL, "bad fabric prefix or host name");
	snprintf(path, sizeof(path), NETNS_DIR "/%s%s", prefix, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return nkv_err(errno, "%s: %s (is the fabric up?)", path, strerror(errno));
	rc = setns(fd, CLONE_NEWNET);
	close(fd);
	if (rc)
		return nkv_err(errno, "setns %s: %s", path, strerror(errno));
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: netkv fabric up --topo FILE [--scale F] [--latency-scale F] [--mtu N] [--prefix P] [--mgmt]\n"
		"       netkv fabric down [--prefix P]\n"
		"       netkv fabric status [--prefix P] [--json]\n"
		"       netkv fabric exec HOST [--prefix P] -- COMMAND [ARGS...]\n"
		"Builds the topology on this box: a network namespace per host and switch (PREFIX+name,\n"
		"PREFIX nkv- by default), veth links with tbf at rate/F (default F 400: 400 Gb/s -> 1 Gbit/s)\n"
		"and netem at latency x latency-scale (default 1), addresses from 10.77.0.0/16 inside them only.\n"
		"Needs root and iproute2. `down` removes every namespace with the prefix (also after a crash).\n"
		"--mgmt adds an unshaped management network: namespace PREFIXmgmt with a bridge at\n"
		"10.78.0.1/16, each host on it as mg0 (10.78.0.2 + host index), hosts isolated from each other.\n"
		"Equivalent of exec: ip netns exec nkv-HOST COMMAND.\n");
}

static void print_ns(const char *name, void *arg)
{
	(void)arg;
	printf("  %s\n", name);
}

static int status(const char *prefix, bool json)
{
	char path[256];
	json_error_t jerr;
	json_t *st;
	int n = each_ns(prefix, NULL, NULL);

	state_path(prefix, path, sizeof(path));
	st = json_load_file(path, 0, &jerr);
	if (json) {
		json_t *o = st ? st : json_object();
		json_object_set_new(o, "up", json_boolean(st && n > 0));
		json_object_set_new(o, "namespaces", json_integer(n));
		nkv_json_print(stdout, o);
		return 0;
	}
	if (!st && !n) {
		printf("no fabric with prefix %s\n", prefix);
		return 0;
	}
	if (st) {
		json_t *h, *l;
		size_t i;
		printf("fabric %s: topology %s, scale 1/%g, latency x%g%s, %d namespaces\n\n", prefix,
		       json_string_value(json_object_get(st, "topology")), json_number_value(json_object_get(st, "scale")),
		       json_number_value(json_object_get(st, "latency_scale")),
		       json_is_true(json_object_get(st, "latency_emulated")) ? "" : " (not emulated: no netem)", n);
		json_t *mg = json_object_get(st, "mgmt");
		if (mg)
			printf("management network: netns %s, scheduler address %s (hosts: mg0, unshaped)\n\n",
			       json_string_value(json_object_get(mg, "netns")), json_string_value(json_object_get(mg, "addr")));
		printf("%-16s %-20s %s\n", "host", "netns", "addresses");
		json_array_foreach(json_object_get(st, "hosts"), i, h) {
			json_t *a;
			size_t j;
			printf("%-16s %-20s", json_string_value(json_object_get(h, "name")),
			       json_string_value(json_object_get(h, "netns")));
			json_array_foreach(json_object_get(h, "addrs"), j, a)
				printf(" %s", json_string_value(a));
			putchar('\n');
		}
		printf("\n%-16s %-26s %-26s %12s %10s\n", "link (up end)", "child", "parent", "Mbit/s", "delay us");
		json_array_foreach(json_object_get(st, "links"), i, l) {
			char c[64], p[64];
			snprintf(c, sizeof(c), "%s:%s", json_string_value(json_object_get(l, "child_ns")),
				 json_string_value(json_object_get(l, "child_dev")));
			snprintf(p, sizeof(p), "%s:%s", json_string_value(json_object_get(l, "parent_ns")),
				 json_string_value(json_object_get(l, "parent_dev")));
			printf("%-16s %-26s %-26s %12.1f %10.1f\n", json_string_value(json_object_get(l, "link")), c, p,
			       json_number_value(json_object_get(l, "rate_bps")) / 1e6,
			       json_number_value(json_object_get(l, "delay_us")));
		}
		json_decref(st);
	} else {
		printf("namespaces with prefix %s but no state file (crashed run?): netkv fabric down cleans up\n", prefix);
		each_ns(prefix, print_ns, NULL);
	}
	return 0;
}

/* One option parser for the four subcommands (they share most options);
 * argv[0] is the subcommand's full name, "fabric up". */
static int fabric_cmd(const char *sub, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "topo", required_argument, NULL, 't' },   { "scale", required_argument, NULL, 's' },
		{ "latency-scale", required_argument, NULL, 'l' }, { "mtu", required_argument, NULL, 'm' },
		{ "prefix", required_argument, NULL, 'p' }, { "json", no_argument, NULL, 'j' },
		{ "mgmt", no_argument, NULL, 'M' },         { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct nkv_fabric_opts o = { .prefix = "nkv-", .scale = 400, .latency_scale = 1, .mtu = 9000, .verbose = true };
	const char *topo = NULL;
	bool json = false;
	int c, li = 0, rc = 0;

	optind = 1;
	/* "+": stop at the first non-option so `exec HOST -- cmd -x` keeps cmd's flags. */
	while ((c = nkv_cli_getopt(argc, argv, "+h", opts, &li)) != -1) {
		switch (c) {
		case 't': topo = optarg; break;
		case 's': rc = nkv_parse_double(optarg, &o.scale); break;
		case 'l': rc = nkv_parse_double(optarg, &o.latency_scale); break;
		case 'm': rc = nkv_parse_u32(optarg, &o.mtu); break;
		case 'p': o.prefix = optarg; break;
		case 'j': json = true; break;
		case 'M': o.mgmt = true; break;
		case 'h': usage(stdout); return 0;
		default: return 2; /* nkv_cli_getopt said what is wrong */
		}
		if (rc) {
			fprintf(stderr, "netkv fabric: --%s: %s\n", opts[li].name, nkv_last_error());
			return 2;
		}
	}
	if (!valid_prefix(o.prefix)) {
		fprintf(stderr, "netkv fabric: prefix '%s' must start with nkv ([a-z0-9-], <= 20 chars)\n", o.prefix);
		return 2;
	}
	if (o.mtu < 576 || o.mtu > 65535) {
		fprintf(stderr, "netkv fabric: --mtu %u out of 576..65535\n", o.mtu);
		return 2;
	}
	if (!strcmp(sub, "up")) {
		struct nkv_topo *t;
		if (!topo || optind != argc) {
			if (topo)
				fprintf(stderr, "netkv fabric up: unexpected argument '%s'\n", argv[optind]);
			else
				fprintf(stderr, "netkv fabric up: --topo FILE is required\n");
			return 2;
		}
		if (nkv_topo_load(topo, &t)) {
			fprintf(stderr, "netkv fabric up: %s\n", nkv_last_error());
			return 1;
		}
		rc = nkv_fabric_up(t, &o);
		nkv_topo_free(t);
		if (rc) {
			fprintf(stderr, "netkv fabric up: %s\n", nkv_last_error());
			return 1;
		}
		return status(o.prefix, json);
	}
	if (!strcmp(sub, "down")) {
		if (optind != argc) {
			usage(stderr);
			return 2;
		}
		rc = nkv_fabric_down(o.prefix);
		if (rc < 0) {
			fprintf(stderr, "netkv fabric down: %s\n", nkv_last_error());
			return 1;
		}
		fprintf(stderr, "fabric %s: removed %d namespaces\n", o.prefix, rc);
		return 0;
	}
	if (!strcmp(sub, "status"))
		return optind == argc ? status(o.prefix, json) : (usage(stderr), 2);
	if (!strcmp(sub, "exec")) {
		/* exec HOST [--prefix P] -- cmd: getopt stopped at HOST; options may follow it. */
		if (optind >= argc) {
			usage(stderr);
			return 2;
		}
		const char *host = argv[optind];
		int rest = optind + 1;
		while (rest < argc && strcmp(argv[rest], "--")) {
			if (!strcmp(argv[rest], "--prefix") && rest + 1 < argc) {
				o.prefix = argv[rest + 1];
				rest += 2;
				continue;
			}
			break;
		}
		if (rest < argc && !strcmp(argv[rest], "--"))
			rest++;
		if (rest >= argc) {
			fprintf(stderr, "netkv fabric exec: no command (netkv fabric exec HOST -- CMD ...)\n");
			return 2;
		}
		if (nkv_fabric_enter(o.prefix, host)) {
			fprintf(stderr, "netkv fabric exec: %s\n", nkv_last_error());
			return 1;
		}
		execvp(argv[rest], argv + rest);
		fprintf(stderr, "netkv fabric exec: %s: %s\n", argv[rest], strerror(errno));
		return 1;
	}
	return 2; /* not reached: the command table names only the four */
}

int nkv_cmd_fabric_up(int argc, char **argv) { return fabric_cmd("up", argc, argv); }
int nkv_cmd_fabric_down(int argc, char **argv) { return fabric_cmd("down", argc, argv); }
int nkv_cmd_fabric_status(int argc, char **argv) { return fabric_cmd("status", argc, argv); }
int nkv_cmd_fabric_exec(int argc, char **argv) { return fabric_cmd("exec", argc, argv); }
