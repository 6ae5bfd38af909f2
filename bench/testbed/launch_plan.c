/*
 * `netkv launch plan`: where each agent of a testbed run goes on a Slurm
 * allocation. The topology hosts the roles use go to the allocated nodes in
 * order (--per-node of them on each), each GPU instance to the local GPU of
 * the same index, each NIC to the node's NIC of the same index (launch_nodes.c
 * says what a node has). It refuses, naming the problem, what cannot run: an
 * unknown host or instance, too few nodes, a node without the NICs (or, with
 * --mem cuda, the GPUs) the topology needs. The plan is written as JSON for
 * `launch agent` (launch_agent.c) on every rank.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fabric.h"
#include "launch.h"
#include "netkv_topo.h"
#include "nkv_cli.h"
#include "nkv_json_out.h"
#include "nkv_util.h"

/* ---- roles: which topology instances run, and as what ---------------------- */

/* role[i]: 0 unused, 1 prefill, 2 decode. An item is an instance or a host. */
static int mark_roles(const struct nkv_topo *t, const char *list, int role, int *roles)
{
	char *copy = strdup(list), *save = NULL;
	int rc = 0, n = 0;

	if (!copy)
		return nkv_err(ENOMEM, "out of memory");
	for (char *w = strtok_r(copy, ",", &save); w && !rc; w = strtok_r(NULL, ",", &save)) {
		int idx = nkv_topo_find(t, w), hit = 0;
		for (uint32_t i = 0; i < nkv_topo_instances(t); i++) {
			struct nkv_instance_info ii;
			nkv_topo_instance(t, i, &ii);
			if (idx >= 0 ? (uint32_t)idx != i : strcmp(ii.host_name, w))
				continue;
			hit++;
			if (roles[i] && roles[i] != role)
				rc = nkv_err(EINVAL, "instance %s is in both --prefill and --decode", ii.name);
			roles[i] = role;
		}
		if (!hit && !rc) {
			struct nkv_instance_info last;
			nkv_topo_instance(t, nkv_topo_instances(t) - 1, &last);
			rc = nkv_err(ENOENT, "--%s: '%s' is no host or instance of topology %s (hosts h0..%s, "
					     "instances like h0g0)", role == 1 ? "prefill" : "decode", w, nkv_topo_name(t),
				     last.host_name);
		}
		n += hit;
	}
	free(copy);
	if (!rc && !n)
		rc = nkv_err(EINVAL, "--%s: no instance", role == 1 ? "prefill" : "decode");
	return rc;
}

/* Load the topology and mark the roles; *hostslot[h] = index of topology
 * host h among the hosts used (-1 unused). */
static int roles_load(const char *topo, const char *prefill, const char *decode, struct nkv_topo **tp, int **roles,
		      int **hostslot, size_t *nhosts)
{
	int rc;

	*roles = NULL, *hostslot = NULL, *nhosts = 0;
	if (!topo || !prefill || !decode)
		return nkv_err(EINVAL, "--topo, --prefill and --decode are required");
	if ((rc = nkv_topo_load(topo, tp)))
		return rc;
	uint32_t n = nkv_topo_instances(*tp), nh = nkv_topo_hosts(*tp);
	*roles = calloc(n, sizeof(int));
	*hostslot = calloc(nh ? nh : 1, sizeof(int));
	if (!*roles || !*hostslot)
		return nkv_err(ENOMEM, "out of memory");
	if ((rc = mark_roles(*tp, prefill, 1, *roles)) || (rc = mark_roles(*tp, decode, 2, *roles)))
		return rc;
	for (uint32_t h = 0; h < nh; h++)
		(*hostslot)[h] = -1;
	for (uint32_t i = 0; i < n; i++) {
		struct nkv_instance_info ii;
		nkv_topo_instance(*tp, i, &ii);
		if ((*roles)[i] && (*hostslot)[ii.host] < 0)
			(*hostslot)[ii.host] = 1;
	}
	for (uint32_t h = 0; h < nh; h++) /* in topology order */
		if ((*hostslot)[h] > 0)
			(*hostslot)[h] = (int)(*nhosts)++;
	return 0;
}

int nkv__launch_nodes_needed(const char *topo, const char *prefill, const char *decode, uint32_t per_node,
			     size_t *nodes, size_t *agents, uint32_t *max_per_node)
{
	struct nkv_topo *t = NULL;
	int *roles, *slot, rc;
	size_t nh;

	rc = roles_load(topo, prefill, decode, &t, &roles, &slot, &nh);
	if (!rc) {
		uint32_t *count = calloc(nh, sizeof(uint32_t));
		*agents = 0, *max_per_node = 0;
		*nodes = (nh + per_node - 1) / per_node;
		for (uint32_t i = 0; count && i < nkv_topo_instances(t); i++) {
			struct nkv_instance_info ii;
			nkv_topo_instance(t, i, &ii);
			if (!roles[i])
				continue;
			uint32_t node = (uint32_t)slot[ii.host] / per_node;
			if (++count[node] > *max_per_node)
				*max_per_node = count[node];
			(*agents)++;
		}
		rc = count ? 0 : nkv_err(ENOMEM, "out of memory");
		free(count);
	}
	free(roles);
	free(slot);
	nkv_topo_free(t);
	return rc;
}

/* ---- the plan ---------------------------------------------------------------- */

static int resolve4(const char *node, char *addr, size_t len)
{
	struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM }, *res;
	int e = getaddrinfo(node, NULL, &hints, &res);
	if (e)
		return nkv_err(EHOSTUNREACH, "node %s: no IPv4 address (%s)", node, gai_strerror(e));
	inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, addr, (socklen_t)len);
	freeaddrinfo(res);
	return 0;
}

int nkv__launch_plan_make(const struct launch_plan_opts *o, struct launch_plan *p)
{
	struct nkv_topo *t = NULL;
	struct launch_node *info = NULL;
	size_t ninfo = 0, nh = 0;
	int *roles = NULL, *slot = NULL, rc;
	bool verbs = o->backend && !strcmp(o->backend, "verbs"), cuda = o->mem && !strcmp(o->mem, "cuda");

	memset(p, 0, sizeof(*p));
	p->per_node = o->per_node ? o->per_node : 1;
	snprintf(p->backend, sizeof(p->backend), "%s", verbs ? "verbs" : "tcp");
	snprintf(p->mem, sizeof(p->mem), "%s", cuda ? "cuda" : "host");
	if (o->topo && (!nkv__launch_word_ok(o->topo) || strlen(o->topo) >= sizeof(p->topo)))
		return nkv_err(EINVAL, "--topo '%.100s': want a path of letters, digits and . _ - + / (no spaces)", o->topo);
	if (o->fabric && (strlen(o->fabric) >= sizeof(p->fabric) || !nkv__launch_word_ok(o->fabric)))
		return nkv_err(EINVAL, "--prefix '%.40s': not a fabric prefix", o->fabric);
	if ((rc = roles_load(o->topo, o->prefill, o->decode, &t, &roles, &slot, &nh)))
		goto out;
	snprintf(p->topo, sizeof(p->topo), "%s", o->topo);
	if ((rc = nkv__launch_nodes_list(o->nodes, &p->nodes, &p->nnodes)))
		goto out;
	size_t need = (nh + p->per_node - 1) / p->per_node;
	if (o->fabric && need > 1) {
		rc = nkv_err(EINVAL, "--prefix (an emulated fabric) is on one node: %zu hosts need --per-node %zu", nh, nh);
		goto out;
	}
	if (p->nnodes < need) {
		rc = nkv_err(ENOSPC, "allocation too small: the roles use %zu topology hosts, %u per node, so %zu nodes; "
				     "the allocation has %zu (%s%s)", nh, p->per_node, need, p->nnodes, p->nodes[0],
			     p->nnodes > 1 ? ", ..." : "");
		goto out;
	}
	p->nnodes = need; /* extra nodes stay idle */
	if (!o->fabric && (rc = o->hosts ? nkv__launch_hosts_load(o->hosts, &info, &ninfo) : 0))
		goto out;
	if (!o->fabric && !o->hosts) {
		if (!(info = calloc(1, sizeof(*info))))
			rc = nkv_err(ENOMEM, "out of memory");
		else if (!(rc = nkv__launch_node_discover(info)))
			ninfo = 1;
		if (rc)
			goto out;
	}
	if (o->fabric)
		snprintf(p->scheduler, sizeof(p->scheduler), "%s:%u", NKV_FABRIC_MGMT_ADDR, o->port);
	else {
		/* the first node's name as the cluster resolves it (its management
		 * address), else the first address its NICs have; a loopback address
		 * (Debian's 127.0.1.1 for the host's own name) only when one node runs all */
		char a[64] = "";
		if (resolve4(p->nodes[0], a, sizeof(a)) || (need > 1 && !strncmp(a, "127.", 4)))
			a[0] = 0;
		if (!a[0])
			for (size_t j = 0; j < ninfo && !a[0]; j++)
				for (uint32_t k = 0; !strcmp(info[j].name, p->nodes[0]) && k < info[j].nnics && !a[0]; k++)
					snprintf(a, sizeof(a), "%s", info[j].nics[k].addr);
		if (!a[0]) {
			rc = nkv_err(EHOSTUNREACH, "node %s (the scheduler's): its name does not resolve to an IPv4 "
						   "address and no NIC of it has one", p->nodes[0]);
			goto out;
		}
		snprintf(p->scheduler, sizeof(p->scheduler), "%s:%u", a, o->port);
	}
	if (o->fabric)
		snprintf(p->fabric, sizeof(p->fabric), "%s", o->fabric);
	for (uint32_t i = 0; i < nkv_topo_instances(t); i++)
		p->nagents += roles[i] != 0;
	if (!(p->agents = calloc(p->nagents, sizeof(*p->agents)))) {
		rc = nkv_err(ENOMEM, "out of memory");
		goto out;
	}
	size_t k = 0;
	for (uint32_t i = 0; i < nkv_topo_instances(t) && !rc; i++) {
		struct nkv_instance_info ii;
		if (!roles[i])
			continue;
		nkv_topo_instance(t, i, &ii);
		struct launch_agent *a = &p->agents[k++];
		const char *node = p->nodes[(size_t)slot[ii.host] / p->per_node];
		a->decode = roles[i] == 2;
		snprintf(a->name, sizeof(a->name), "%s", ii.name);
		snprintf(a->host, sizeof(a->host), "%s", ii.host_name);
		snprintf(a->node, sizeof(a->node), "%s", node);
		a->gpu = ii.gpu, a->nic = ii.nic;
		if (o->fabric) {
			snprintf(a->netns, sizeof(a->netns), "%s%s", o->fabric, ii.host_name);
			if ((rc = nkv_fabric_nic_addr(o->fabric, ii.host_name, ii.nic, a->addr, sizeof(a->addr))))
				break;
			continue;
		}
		const struct launch_node *ni = NULL;
		for (size_t j = 0; j < ninfo; j++)
			if (!strcmp(info[j].name, node))
				ni = &info[j];
		if (!ni) {
			rc = nkv_err(ENOENT, "node %s: its NICs are unknown (%s names %s%s; run `netkv launch discover` on it, "
					     "or add it to a hosts file)", node, o->hosts ? o->hosts : "this node is",
				     ninfo ? info[0].name : "nothing", ninfo > 1 ? ", ..." : "");
			break;
		}
		if (ii.nic >= ni->nnics) {
			rc = nkv_err(ENODEV, "node %s lacks a NIC the topology needs: host %s uses NIC %u (%s, serving %s) "
					     "and the node has %u NIC%s", node, ii.host_name, ii.nic, ii.nic_name, ii.name,
				     ni->nnics, ni->nnics == 1 ? "" : "s");
			break;
		}
		const struct launch_nic *c = &ni->nics[ii.nic];
		if (verbs && !c->device[0])
			rc = nkv_err(ENODEV, "node %s, NIC %u (%s) for %s: no RDMA device, and --backend verbs needs one",
				     node, ii.nic, c->netdev, ii.name);
		else if (!verbs && !c->addr[0])
			rc = nkv_err(ENODEV, "node %s, NIC %u (%s) for %s: no IPv4 address, and --backend tcp needs one",
				     node, ii.nic, c->device[0] ? c->device : c->netdev, ii.name);
		else if (cuda && ii.gpu >= ni->gpus)
			rc = nkv_err(ENODEV, "node %s has %u GPUs; %s needs GPU %u (--mem cuda)", node, ni->gpus, ii.name,
				     ii.gpu);
		snprintf(a->device, sizeof(a->device), "%s", c->device);
		snprintf(a->netdev, sizeof(a->netdev), "%s", c->netdev);
		snprintf(a->addr, sizeof(a->addr), "%s", c->addr);
	}
out:
	free(info);
	free(roles);
	free(slot);
	nkv_topo_free(t);
	if (rc)
		nkv__launch_plan_free(p);
	return rc;
}

void nkv__launch_plan_free(struct launch_plan *p)
{
	free(p->nodes);
	free(p->agents);
	p->nodes = NULL, p->agents = NULL;
	p->nnodes = p->nagents = 0;
}

static json_t *plan_json(const struct launch_plan *p)
{
	json_t *nodes = json_array(), *agents = json_array();
	for (size_t i = 0; i < p->nnodes; i++)
		json_array_append_new(nodes, json_string(p->nodes[i]));
	for (size_t i = 0; i < p->nagents; i++) {
		const struct launch_agent *a = &p->agents[i];
		json_t *x = json_pack("{s:I,s:s,s:s,s:s,s:s,s:i,s:i,s:s,s:s,s:s}", "rank", (json_int_t)i, "role",
				      a->decode ? "decode" : "prefill", "name", a->name, "host", a->host, "node", a->node,
				      "gpu", (int)a->gpu, "nic", (int)a->nic, "device", a->device, "netdev", a->netdev,
				      "addr", a->addr);
		if (a->netns[0])
			json_object_set_new(x, "netns", json_string(a->netns));
		json_array_append_new(agents, x);
	}
	json_t *j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:i,s:o,s:o}", "format", "netkv-launch-plan/1", "topology", p->topo,
			      "scheduler", p->scheduler, "backend", p->backend, "mem", p->mem, "per_node", (int)p->per_node,
			      "nodes", nodes, "agents", agents);
	if (p->fabric[0])
		json_object_set_new(j, "fabric", json_string(p->fabric));
	return j;
}

int nkv__launch_plan_write(const struct launch_plan *p, const char *path)
{
	json_t *j = plan_json(p);
	json_object_set_new(j, "meta", nkv_json_meta());
	int rc = json_dump_file(j, path, NKV_JSON_FLAGS) ? nkv_err(EIO, "cannot write %s", path) : 0;
	json_decref(j);
	return rc;
}

static int get_word(json_t *j, const char *key, char *dst, size_t size, bool may_be_empty, const char *path)
{
	int rc = nkv__launch_copy_word(dst, size, json_string_value(json_object_get(j, key)), may_be_empty, key);
	return rc ? nkv_err_wrap(-rc, "%s", path) : 0;
}

int nkv__launch_plan_load(const char *path, struct launch_plan *p)
{
	json_error_t je;
	json_t *j, *x, *ags, *nodes;
	size_t i;
	int rc = 0;

	memset(p, 0, sizeof(*p));
	if (!(j = json_load_file(path, JSON_REJECT_DUPLICATES, &je)))
		return nkv_err(EINVAL, "%s: %s (line %d)", path, je.text, je.line);
	ags = json_object_get(j, "agents"), nodes = json_object_get(j, "nodes");
	x = json_object_get(j, "per_node");
	if (!json_is_string(json_object_get(j, "format")) ||
	    strcmp(json_string_value(json_object_get(j, "format")), "netkv-launch-plan/1") || !json_is_array(ags) ||
	    !json_is_array(nodes) || !json_array_size(ags) || json_array_size(ags) > LAUNCH_MAX_AGENTS ||
	    json_array_size(nodes) > LAUNCH_MAX_NODES || !json_is_integer(x) || json_integer_value(x) < 1 ||
	    json_integer_value(x) > 1 << 20) {
		json_decref(j);
		return nkv_err(EINVAL, "%s: not a netkv launch plan (format netkv-launch-plan/1, written by netkv launch plan)",
			       path);
	}
	p->per_node = (uint32_t)json_integer_value(x);
	if ((rc = get_word(j, "topology", p->topo, sizeof(p->topo), false, path)) ||
	    (rc = get_word(j, "scheduler", p->scheduler, sizeof(p->scheduler), false, path)) ||
	    (rc = get_word(j, "backend", p->backend, sizeof(p->backend), false, path)) ||
	    (rc = get_word(j, "mem", p->mem, sizeof(p->mem), false, path)) ||
	    (json_object_get(j, "fabric") && (rc = get_word(j, "fabric", p->fabric, sizeof(p->fabric), false, path))))
		goto out;
	p->nnodes = json_array_size(nodes), p->nagents = json_array_size(ags);
	p->nodes = calloc(p->nnodes + 1, sizeof(*p->nodes));
	p->agents = calloc(p->nagents, sizeof(*p->agents));
	if (!p->nodes || !p->agents) {
		rc = nkv_err(ENOMEM, "out of memory");
		goto out;
	}
	json_array_foreach(nodes, i, x)
		if ((rc = nkv__launch_copy_word(p->nodes[i], sizeof(p->nodes[i]), json_string_value(x), false, "node")))
			goto out;
	json_array_foreach(ags, i, x) {
		struct launch_agent *a = &p->agents[i];
		json_t *g = json_object_get(x, "gpu"), *n = json_object_get(x, "nic");
		const char *role = json_string_value(json_object_get(x, "role"));
		if (!role || (strcmp(role, "prefill") && strcmp(role, "decode")) || !json_is_integer(g) ||
		    !json_is_integer(n) || json_integer_value(g) < 0 || json_integer_value(g) > 1023 ||
		    json_integer_value(n) < 0 || json_integer_value(n) > 1023) {
			rc = nkv_err(EINVAL, "%s: agent %zu: want role prefill|decode, gpu and nic 0..1023", path, i);
			goto out;
		}
		a->decode = !strcmp(role, "decode");
		a->gpu = (uint32_t)json_integer_value(g), a->nic = (uint32_t)json_integer_value(n);
		if ((rc = get_word(x, "name", a->name, sizeof(a->name), false, path)) ||
		    (rc = get_word(x, "host", a->host, sizeof(a->host), false, path)) ||
		    (rc = get_word(x, "node", a->node, sizeof(a->node), false, path)) ||
		    (rc = get_word(x, "device", a->device, sizeof(a->device), true, path)) ||
		    (rc = get_word(x, "netdev", a->netdev, sizeof(a->netdev), true, path)) ||
		    (rc = get_word(x, "addr", a->addr, sizeof(a->addr), false, path)) ||
		    (json_object_get(x, "netns") && (rc = get_word(x, "netns", a->netns, sizeof(a->netns), false, path))))
			goto out;
	}
out:
	json_decref(j);
	if (rc)
		nkv__launch_plan_free(p);
	return rc;
}

/* ---- the commands ------------------------------------------------------------ */

static void plan_usage(FILE *f)
{
	fprintf(f,
		"usage: netkv launch plan --topo FILE --prefill LIST --decode LIST [options]\n"
		"Places a testbed run on a Slurm allocation: the topology hosts the roles use go to the\n"
		"allocated nodes in order (--per-node each), GPU instance hXgY to local GPU Y, the host's NIC i\n"
		"to the node's NIC i (RDMA device, netdev, IPv4 address). Refuses, saying why, an unknown host\n"
		"or instance, an allocation that is too small, a node without the NICs (or, --mem cuda, GPUs)\n"
		"the topology needs. Prints the plan; -o writes it for `netkv launch agent`.\n"
		"  --topo FILE        topology file (netkv topo gen)\n"
		"  --prefill LIST     prefill instances or hosts, comma-separated: h0g0,h0g1 or h0 (= all its GPUs)\n"
		"  --decode LIST      decode instances or hosts\n"
		"  --nodes LIST       the allocation's nodes, comma-separated (default: $SLURM_JOB_NODELIST,\n"
		"                     expanded by `scontrol show hostnames`)\n"
		"  --hosts PATH       the nodes' GPUs and NICs: a hosts file {\"nodes\": {NODE: {\"gpus\": N, \"nics\":\n"
		"                     [{\"device\": \"mlx5_0\", \"netdev\": \"ib0\", \"addr\": \"10.0.0.1\"}]}}}, or a folder\n"
		"                     of `netkv launch discover` outputs (default: discover this node only)\n"
		"  --per-node N       topology hosts per node (default 1)\n"
		"  --backend B        tcp (default; a NIC needs an IPv4 address) | verbs (needs an RDMA device)\n"
		"  --mem M            host (default) | cuda (a node needs the GPUs its instances name)\n"
		"  --prefix PREFIX    agents in the namespaces of the emulated fabric PREFIX that is up on this\n"
		"                     node (`netkv fabric up --mgmt --prefix PREFIX`), on their NICs' fabric addresses\n"
		"  --port P           the scheduler's port on the first node (default 7400)\n"
		"  -o, --output FILE  write the plan (JSON, netkv-launch-plan/1)\n"
		"  --hostfile FILE    write one node per rank, for SLURM_HOSTFILE with srun --distribution=arbitrary\n"
		"  --json             the plan as JSON on stdout\n");
}

static void plan_print(FILE *f, const struct launch_plan *p)
{
	fprintf(f, "plan: topology %s, %zu agents on %zu node%s (%u topology host%s each), scheduler %s, %s/%s%s%s\n",
		p->topo, p->nagents, p->nnodes, p->nnodes == 1 ? "" : "s", p->per_node, p->per_node == 1 ? "" : "s",
		p->scheduler, p->backend, p->mem, p->fabric[0] ? ", fabric " : "", p->fabric);
	fprintf(f, "%-5s %-8s %-8s %-6s %-16s %4s %4s %-10s %-12s %-16s%s\n", "rank", "role", "instance", "host", "node",
		"gpu", "nic", "device", "netdev", "addr", p->fabric[0] ? " netns" : "");
	for (size_t i = 0; i < p->nagents; i++) {
		const struct launch_agent *a = &p->agents[i];
		fprintf(f, "%-5zu %-8s %-8s %-6s %-16s %4u %4u %-10s %-12s %-16s%s%s\n", i, a->decode ? "decode" : "prefill",
			a->name, a->host, a->node, a->gpu, a->nic, a->device[0] ? a->device : "-",
			a->netdev[0] ? a->netdev : "-", a->addr, a->netns[0] ? " " : "", a->netns);
	}
}

int nkv_cmd_launch_plan(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "topo", 1, 0, 't' }, { "prefill", 1, 0, 'P' }, { "decode", 1, 0, 'D' }, { "nodes", 1, 0, 'n' },
		{ "hosts", 1, 0, 'H' }, { "per-node", 1, 0, 'k' }, { "backend", 1, 0, 'b' }, { "mem", 1, 0, 'm' },
		{ "prefix", 1, 0, 'F' }, { "port", 1, 0, 'p' }, { "output", 1, 0, 'o' }, { "hostfile", 1, 0, 'f' },
		{ "json", 0, 0, 'j' }, { "help", 0, 0, 'h' }, { 0, 0, 0, 0 } };
	struct launch_plan_opts o = { .backend = "tcp", .mem = "host", .per_node = 1, .port = 7400 };
	const char *out = NULL, *hostfile = NULL;
	bool json = false;
	int c, verbs;

	optind = 1;
	while ((c = nkv_cli_getopt(argc, argv, "ho:", opts, NULL)) != -1) {
		switch (c) {
		case 't': o.topo = optarg; break;
		case 'P': o.prefill = optarg; break;
		case 'D': o.decode = optarg; break;
		case 'n': o.nodes = optarg; break;
		case 'H': o.hosts = optarg; break;
		case 'F': o.fabric = optarg; break;
		case 'o': out = optarg; break;
		case 'f': hostfile = optarg; break;
		case 'j': json = true; break;
		case 'b':
			if (nkv_cli_backend("launch plan", optarg, &verbs))
				return 2;
			o.backend = verbs ? "verbs" : "tcp";
			break;
		case 'm':
			if (strcmp(optarg, "host") && strcmp(optarg, "cuda")) {
				fprintf(stderr, "netkv launch plan: --mem '%s': expected host or cuda\n", optarg);
				return 2;
			}
			o.mem = optarg;
			break;
		case 'k':
			if (nkv_cli_u32("launch plan", "--per-node", optarg, 1, 1 << 20, &o.per_node))
				return 2;
			break;
		case 'p':
			if (nkv_cli_u32("launch plan", "--port", optarg, 1, 65535, &o.port))
				return 2;
			break;
		case 'h': plan_usage(stdout); return 0;
		default: return 2;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "netkv launch plan: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (!o.topo || !o.prefill || !o.decode) {
		fprintf(stderr, "netkv launch plan: --topo, --prefill and --decode are required\n");
		return 2;
	}
	struct launch_plan p;
	if (nkv__launch_plan_make(&o, &p)) {
		fprintf(stderr, "netkv launch plan: %s\n", nkv_last_error());
		return 1;
	}
	int rc = 0;
	if (out && nkv__launch_plan_write(&p, out))
		rc = 1;
	if (!rc && hostfile) {
		FILE *f = fopen(hostfile, "w");
		for (size_t i = 0; f && i < p.nagents; i++)
			fprintf(f, "%s\n", p.agents[i].node);
		if (!f || fclose(f)) {
			nkv_err(EIO, "cannot write %s", hostfile);
			rc = 1;
		}
	}
	if (rc)
		fprintf(stderr, "netkv launch plan: %s\n", nkv_last_error());
	else if (json)
		nkv_json_print(stdout, plan_json(&p));
	else
		plan_print(stdout, &p);
	nkv__launch_plan_free(&p);
	return rc;
}

