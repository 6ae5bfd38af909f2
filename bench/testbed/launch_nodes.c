/*
 * What the nodes of an allocation are and what each has, for `netkv launch
 * plan`: the node list (--nodes, or $SLURM_JOB_NODELIST expanded by
 * `scontrol show hostnames`), each node's GPUs and NICs as `netkv launch
 * discover` finds them on the node (RDMA devices with their netdev's IPv4
 * address, else the netdevs that are up with one) or as a hosts file names
 * them. Every name and address read is checked: what lands on a generated
 * command line is a plain word.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "launch.h"
#include "netkv_topo.h" /* nkv_host_discover */
#include "nkv_cli.h"
#include "nkv_json_out.h"
#include "nkv_util.h"

bool nkv__launch_word_ok(const char *s)
{
	if (!s || !*s)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      strchr("._-+/:,=@%", *s)))
			return false;
	return true;
}

/* ---- what a node has: discovered on it, or from a hosts file ----------------- */

int nkv__launch_copy_word(char *dst, size_t size, const char *s, bool may_be_empty, const char *what)
{
	if (!s)
		s = "";
	if ((!*s && !may_be_empty) || strlen(s) >= size || (*s && !nkv__launch_word_ok(s)))
		return nkv_err(EINVAL, "%s '%.80s': want 1..%zu letters, digits or . _ - + / : , = @ %%", what, s, size - 1);
	snprintf(dst, size, "%s", s);
	return 0;
}

/* This node: RDMA NICs (with their netdev's address), else the netdevs
 * that are up and have an IPv4 address, loopback left out. */
int nkv__launch_node_discover(struct launch_node *n)
{
	struct nkv_host_info *h;
	struct ifaddrs *ifa0, *ifa;
	const char *slurm = getenv("SLURMD_NODENAME");
	int rc;

	memset(n, 0, sizeof(*n));
	if (slurm && *slurm) {
		if ((rc = nkv__launch_copy_word(n->name, sizeof(n->name), slurm, false, "$SLURMD_NODENAME")))
			return rc;
	} else {
		char host[256];
		if (gethostname(host, sizeof(host)))
			return nkv_err(errno, "gethostname: %s", strerror(errno));
		host[strcspn(host, ".")] = 0;
		if ((rc = nkv__launch_copy_word(n->name, sizeof(n->name), host, false, "host name")))
			return rc;
	}
	if ((rc = nkv_host_discover(&h)))
		return rc;
	if (getifaddrs(&ifa0)) {
		nkv_host_free(h);
		return nkv_err(errno, "getifaddrs: %s", strerror(errno));
	}
	n->gpus = h->ngpus;
	for (uint32_t i = 0; i < h->nnics && n->nnics < LAUNCH_MAX_NICS; i++) {
		struct launch_nic *x = &n->nics[n->nnics++];
		snprintf(x->device, sizeof(x->device), "%s", h->nics[i].name);
		snprintf(x->netdev, sizeof(x->netdev), "%s", h->nics[i].netdev);
	}
	nkv_host_free(h);
	bool rdma = n->nnics > 0;
	for (ifa = ifa0; ifa; ifa = ifa->ifa_next) {
		if (!ifa->ifa_addr || ifa->ifa_addr->sa_family != AF_INET || (ifa->ifa_flags & IFF_LOOPBACK) ||
		    !(ifa->ifa_flags & IFF_UP))
			continue;
		char a[64];
		inet_ntop(AF_INET, &((struct sockaddr_in *)ifa->ifa_addr)->sin_addr, a, sizeof(a));
		if (rdma) {
			for (uint32_t i = 0; i < n->nnics; i++)
				if (!strcmp(n->nics[i].netdev, ifa->ifa_name) && !n->nics[i].addr[0])
					snprintf(n->nics[i].addr, sizeof(n->nics[i].addr), "%s", a);
			continue;
		}
		bool seen = false;
		for (uint32_t i = 0; i < n->nnics; i++)
			seen |= !strcmp(n->nics[i].netdev, ifa->ifa_name);
		if (!seen && n->nnics < LAUNCH_MAX_NICS) {
			struct launch_nic *x = &n->nics[n->nnics++];
			snprintf(x->netdev, sizeof(x->netdev), "%s", ifa->ifa_name);
			snprintf(x->addr, sizeof(x->addr), "%s", a);
		}
	}
	freeifaddrs(ifa0);
	return 0;
}

static json_t *node_json(const struct launch_node *n)
{
	json_t *nics = json_array();
	for (uint32_t i = 0; i < n->nnics; i++)
		json_array_append_new(nics, json_pack("{s:s,s:s,s:s}", "device", n->nics[i].device, "netdev",
						      n->nics[i].netdev, "addr", n->nics[i].addr));
	return json_pack("{s:i,s:o}", "gpus", (int)n->gpus, "nics", nics);
}

/* One node of a hosts file: {"gpus": N, "nics": [{"device", "netdev", "addr"}, ...]}. */
static int node_parse(const char *file, const char *name, json_t *j, struct launch_node *n)
{
	json_t *nics = json_object_get(j, "nics"), *g = json_object_get(j, "gpus"), *x;
	size_t i;
	int rc;

	memset(n, 0, sizeof(*n));
	if ((rc = nkv__launch_copy_word(n->name, sizeof(n->name), name, false, "node name")))
		return nkv_err_wrap(-rc, "%s", file);
	if (!json_is_object(j) || !json_is_array(nics) || (g && (!json_is_integer(g) || json_integer_value(g) < 0 ||
								   json_integer_value(g) > 1024)))
		return nkv_err(EINVAL, "%s: node %s: want {\"gpus\": 0..1024, \"nics\": [{\"device\", \"netdev\", \"addr\"}]}",
			       file, name);
	n->gpus = g ? (uint32_t)json_integer_value(g) : 0;
	if (json_array_size(nics) > LAUNCH_MAX_NICS)
		return nkv_err(EINVAL, "%s: node %s: more than %d NICs", file, name, LAUNCH_MAX_NICS);
	json_array_foreach(nics, i, x) {
		struct launch_nic *c = &n->nics[n->nnics++];
		struct in_addr ia;
		const char *addr = json_string_value(json_object_get(x, "addr"));
		if (!json_is_object(x) ||
		    (rc = nkv__launch_copy_word(c->device, sizeof(c->device), json_string_value(json_object_get(x, "device")), true,
				    "device")) ||
		    (rc = nkv__launch_copy_word(c->netdev, sizeof(c->netdev), json_string_value(json_object_get(x, "netdev")), true,
				    "netdev")))
			return nkv_err(EINVAL, "%s: node %s, NIC %zu: %s", file, name, i,
				       json_is_object(x) ? nkv_last_error() : "want an object");
		if (addr && *addr && inet_pton(AF_INET, addr, &ia) != 1)
			return nkv_err(EINVAL, "%s: node %s, NIC %zu: addr '%.64s' is no IPv4 address", file, name, i, addr);
		snprintf(c->addr, sizeof(c->addr), "%s", addr ? addr : "");
	}
	return 0;
}

/* Add the nodes of one hosts file ({"nodes": {NAME: {...}}}) to *v. */
static int hosts_file(const char *path, struct launch_node **v, size_t *n, size_t *cap)
{
	json_error_t je;
	json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &je), *x;
	const char *name;
	int rc = 0;

	if (!j)
		return nkv_err(EINVAL, "%s: %s (line %d)", path, je.text, je.line);
	if (!json_is_object(json_object_get(j, "nodes")))
		rc = nkv_err(EINVAL, "%s: want {\"nodes\": {\"NODE\": {\"gpus\": N, \"nics\": [...]}}} (netkv launch discover "
				     "writes one)", path);
	json_object_foreach(json_object_get(j, "nodes"), name, x) {
		if (rc)
			break;
		for (size_t i = 0; i < *n && !rc; i++)
			if (!strcmp((*v)[i].name, name))
				rc = nkv_err(EINVAL, "%s: node %s is described twice", path, name);
		if (!rc && *n >= LAUNCH_MAX_NODES)
			rc = nkv_err(E2BIG, "%s: more than %d nodes", path, LAUNCH_MAX_NODES);
		if (!rc && !(rc = nkv_grow((void **)v, cap, *n + 1, sizeof(**v))))
			if (!(rc = node_parse(path, name, x, &(*v)[*n])))
				(*n)++;
	}
	json_decref(j);
	return rc;
}

/* A hosts file, or every *.json of a folder (`launch discover` output per node). */
int nkv__launch_hosts_load(const char *path, struct launch_node **v, size_t *n)
{
	size_t cap = 0;
	DIR *d = opendir(path);
	int rc = 0;

	*v = NULL, *n = 0;
	if (!d)
		return errno == ENOTDIR ? hosts_file(path, v, n, &cap) : nkv_err(errno, "%s: %s", path, strerror(errno));
	struct dirent *e;
	while (!rc && (e = readdir(d))) {
		size_t len = strlen(e->d_name);
		char file[4096];
		if (len < 6 || strcmp(e->d_name + len - 5, ".json"))
			continue;
		snprintf(file, sizeof(file), "%s/%s", path, e->d_name);
		rc = hosts_file(file, v, n, &cap);
	}
	closedir(d);
	if (!rc && !*n)
		rc = nkv_err(ENOENT, "%s: no node described (no *.json from netkv launch discover)", path);
	return rc;
}

/* ---- the allocation's nodes ------------------------------------------------ */

/* stdout of argv (at most max bytes, within 20 s), NUL-terminated. */
static int capture(char *const argv[], char *out, size_t max)
{
	int pfd[2];
	if (pipe(pfd))
		return nkv_err(errno, "pipe: %s", strerror(errno));
	pid_t pid = fork();
	if (pid < 0) {
		close(pfd[0]), close(pfd[1]);
		return nkv_err(errno, "fork: %s", strerror(errno));
	}
	if (pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]), close(pfd[1]);
		execvp(argv[0], argv);
		fprintf(stderr, "%s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(pfd[1]);
	size_t len = 0;
	double end = nkv_now_s() + 20;
	int rc = 0;
	for (;;) {
		struct pollfd p = { pfd[0], POLLIN, 0 };
		int left = (int)((end - nkv_now_s()) * 1000);
		if (left <= 0 || poll(&p, 1, left) <= 0) {
			rc = nkv_err(ETIMEDOUT, "%s did not answer within 20 s", argv[0]);
			kill(pid, SIGKILL);
			break;
		}
		ssize_t r = read(pfd[0], out + len, max - 1 - len);
		if (r <= 0)
			break;
		len += (size_t)r;
		if (len >= max - 1) {
			rc = nkv_err(E2BIG, "%s: output longer than %zu bytes", argv[0], max - 1);
			kill(pid, SIGKILL);
			break;
		}
	}
	out[len] = 0;
	close(pfd[0]);
	int st;
	waitpid(pid, &st, 0);
	if (!rc && (!WIFEXITED(st) || WEXITSTATUS(st)))
		rc = nkv_err(EIO, "%s %s failed (exit %d)", argv[0], argv[1], WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	return rc;
}

/* --nodes, or $SLURM_JOB_NODELIST expanded by `scontrol show hostnames`. */
int nkv__launch_nodes_list(const char *given, char (**nodes)[LAUNCH_NAME_MAX], size_t *n)
{
	static char buf[1 << 20];
	const char *src = given;
	size_t cap = 0;
	int rc = 0;

	*nodes = NULL, *n = 0;
	if (!given) {
		const char *nl = getenv("SLURM_JOB_NODELIST");
		if (!nl || !*nl)
			return nkv_err(EINVAL, "no allocation: $SLURM_JOB_NODELIST is not set (run inside a Slurm job, or give "
					       "--nodes a,b,...)");
		char *argv[] = { "scontrol", "show", "hostnames", (char *)nl, NULL };
		if ((rc = capture(argv, buf, sizeof(buf))))
			return nkv_err_wrap(-rc, "expanding $SLURM_JOB_NODELIST '%.200s'", nl);
		src = buf;
	}
	char *copy = strdup(src), *save = NULL;
	if (!copy)
		return nkv_err(ENOMEM, "out of memory");
	for (char *w = strtok_r(copy, ", \t\r\n", &save); w && !rc; w = strtok_r(NULL, ", \t\r\n", &save)) {
		if (*n >= LAUNCH_MAX_NODES)
			rc = nkv_err(E2BIG, "more than %d nodes", LAUNCH_MAX_NODES);
		else if (!(rc = nkv_grow((void **)nodes, &cap, *n + 1, sizeof(**nodes))))
			rc = nkv__launch_copy_word((*nodes)[(*n)++], LAUNCH_NAME_MAX, w, false, "node name");
	}
	free(copy);
	if (!rc && !*n)
		rc = nkv_err(EINVAL, "the allocation has no node");
	return rc;
}

int nkv_cmd_launch_discover(int argc, char **argv)
{
	static const struct option opts[] = { { "output", 1, 0, 'o' }, { "help", 0, 0, 'h' }, { 0, 0, 0, 0 } };
	const char *out = NULL;
	int c;

	optind = 1;
	while ((c = nkv_cli_getopt(argc, argv, "ho:", opts, NULL)) != -1) {
		if (c == 'o')
			out = optarg;
		else if (c == 'h') {
			printf("usage: netkv launch discover [-o FILE]\n"
			       "This node's GPUs and NICs as a hosts file for `netkv launch plan --hosts`: its RDMA devices\n"
			       "(hwloc) with their netdev and IPv4 address, else the netdevs that are up with an IPv4\n"
			       "address (loopback left out), in that order. The node is named $SLURMD_NODENAME, else the\n"
			       "short host name. -o FILE writes it there instead of stdout.\n");
			return 0;
		} else
			return 2;
	}
	if (optind != argc) {
		fprintf(stderr, "netkv launch discover: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	struct launch_node *n = calloc(1, sizeof(*n));
	if (!n || nkv__launch_node_discover(n)) {
		fprintf(stderr, "netkv launch discover: %s\n", n ? nkv_last_error() : "out of memory");
		free(n);
		return 1;
	}
	json_t *j = json_pack("{s:s,s:{s:o}}", "format", "netkv-launch-hosts/1", "nodes", n->name, node_json(n));
	free(n);
	int rc = json_dump_file(j, out ? out : "/dev/stdout", NKV_JSON_FLAGS);
	json_decref(j);
	if (rc)
		fprintf(stderr, "netkv launch discover: cannot write %s\n", out ? out : "stdout");
	return rc ? 1 : 0;
}

