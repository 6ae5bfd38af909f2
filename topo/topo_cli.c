/*
 * netkv topo gen | show | host
 */
#include "netkv_topo.h"
#include "topo_cli.h"
#include "nkv_cli.h"
#include "nkv_json_out.h"
#include "nkv_util.h"
#include "topo_model.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "2:1", "4:1", "2" or "1.5" -> ratio >= 1. */
static int parse_ratio(const char *s, double *out)
{
	int rc = nkv__topo_parse_ratio(s, out);

	if (!rc && !(*out >= 1))
		rc = nkv_err(EINVAL, "oversubscription '%s' is below 1:1", s);
	return rc;
}

static void gen_usage(FILE *f)
{
	fprintf(f,
		"usage: netkv topo gen --preset fat-tree [options]\n"
		"Writes a topology file (JSON) for a fat tree.\n"
		"  --preset NAME         fat-tree (fat-tree-64 = the defaults)\n"
		"  --gpus N              total GPUs (64; 128..1024 for scale runs)\n"
		"  --gpus-per-host N     8        --nics-per-host N   8\n"
		"  --hosts-per-leaf N    2        --leaves-per-pod N  2\n"
		"  --nic-gbps G          400      --nvlink-GBps G     450\n"
		"  --oversub R           leaf and spine oversubscription, e.g. 2:1\n"
		"  --oversub-leaf R      leaf->spine only   --oversub-spine R  spine->core only\n"
		"  --hop-us U            per-link latency (0.5)\n"
		"  --spines N            multipath (ECMP) fat tree: N real spines per pod (default: aggregated tree)\n"
		"  --cores N             with --spines: N cores per spine plane (1)\n"
		"  --leaf-link-gbps G    one leaf->spine link (default: from --oversub-leaf)\n"
		"  --spine-link-gbps G   one spine->core link (default: from --oversub-spine)\n"
		"  -o, --output FILE     (default: stdout)\n");
}

int nkv_cmd_topo_gen(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "preset", required_argument, NULL, 'p' },     { "gpus", required_argument, NULL, 'g' },
		{ "gpus-per-host", required_argument, NULL, 'G' }, { "nics-per-host", required_argument, NULL, 'N' },
		{ "hosts-per-leaf", required_argument, NULL, 'H' }, { "leaves-per-pod", required_argument, NULL, 'L' },
		{ "nic-gbps", required_argument, NULL, 'b' },   { "nvlink-GBps", required_argument, NULL, 'B' },
		{ "oversub", required_argument, NULL, 'r' },    { "oversub-leaf", required_argument, NULL, 'l' },
		{ "oversub-spine", required_argument, NULL, 's' }, { "hop-us", required_argument, NULL, 'u' },
		{ "output", required_argument, NULL, 'o' },     { "help", no_argument, NULL, 'h' },
		{ "spines", required_argument, NULL, 'S' },     { "cores", required_argument, NULL, 'C' },
		{ "leaf-link-gbps", required_argument, NULL, 'x' }, { "spine-link-gbps", required_argument, NULL, 'y' },
		{ NULL, 0, NULL, 0 },
	};
	struct nkv_fat_tree_params p;
	const char *output = "-", *preset = NULL;
	struct nkv_topo *t = NULL;
	int c, li = -1, rc = 0;

	nkv_fat_tree_defaults(&p);
	optind = 1;
	while ((c = nkv_cli_getopt(argc, argv, "o:h", opts, &li)) != -1) {
		switch (c) {
		case 'p': preset = optarg; break;
		case 'g': rc = nkv_parse_u32(optarg, &p.gpus); break;
		case 'G': rc = nkv_parse_u32(optarg, &p.gpus_per_host); break;
		case 'N': rc = nkv_parse_u32(optarg, &p.nics_per_host); break;
		case 'H': rc = nkv_parse_u32(optarg, &p.hosts_per_leaf); break;
		case 'L': rc = nkv_parse_u32(optarg, &p.leaves_per_pod); break;
		case 'b': rc = nkv_parse_double(optarg, &p.nic_gbps); break;
		case 'B': rc = nkv_parse_double(optarg, &p.intra_host_GBps); break;
		case 'r':
			rc = parse_ratio(optarg, &p.oversub_leaf);
			p.oversub_spine = p.oversub_leaf;
			break;
		case 'l': rc = parse_ratio(optarg, &p.oversub_leaf); break;
		case 's': rc = parse_ratio(optarg, &p.oversub_spine); break;
		case 'u': rc = nkv_parse_double(optarg, &p.hop_latency_us); break;
		case 'S': rc = nkv_parse_u32(optarg, &p.spines_per_pod); break;
		case 'C': rc = nkv_parse_u32(optarg, &p.cores_per_spine); break;
		case 'x': rc = nkv_parse_double(optarg, &p.leaf_link_gbps); break;
		case 'y': rc = nkv_parse_double(optarg, &p.spine_link_gbps); break;
		case 'o': output = optarg; break;
		case 'h': gen_usage(stdout); return 0;
		default: return 2; /* nkv_cli_getopt said what is wrong */
		}
		if (rc) {
			fprintf(stderr, "netkv topo gen: --%s: %s\n", opts[li].name, nkv_last_error());
			return 2;
		}
	}
	if (optind != argc || !preset) {
		fprintf(stderr, "netkv topo gen: %s\n", preset ? "unexpected argument" : "--preset is required");
		gen_usage(stderr);
		return 2;
	}
	if (strcmp(preset, "fat-tree") && strcmp(preset, "fat-tree-64")) {
		fprintf(stderr, "netkv topo gen: unknown preset '%s' (known: fat-tree, fat-tree-64)\n", preset);
		return 2;
	}
	if (!(p.nic_gbps > 0) || !(p.intra_host_GBps > 0) || !(p.hop_latency_us >= 0)) {
		fprintf(stderr, "netkv topo gen: bandwidths must be > 0 and latency >= 0\n");
		return 2;
	}
	rc = nkv_topo_fat_tree(&p, &t);
	if (rc) {
		fprintf(stderr, "netkv topo gen: %s\n", nkv_last_error());
		return 1;
	}
	rc = nkv_topo_write_json(t, output);
	if (rc)
		fprintf(stderr, "netkv topo gen: %s\n", nkv_last_error());
	else if (strcmp(output, "-"))
		fprintf(stderr, "wrote %s: %u GPUs, %u hosts, %u links\n", output, nkv_topo_instances(t),
			nkv_topo_hosts(t), nkv_topo_links(t));
	nkv_topo_free(t);
	return rc ? 1 : 0;
}

/* A pair of instances at each tier, for the per-tier table: first found. */
static void tier_examples(const struct nkv_topo *t, int64_t ex[NKV_TIERS][2])
{
	uint32_t n = nkv_topo_instances(t);

	for (int k = 0; k < NKV_TIERS; k++)
		ex[k][0] = ex[k][1] = -1;
	for (uint32_t b = 1; b < n; b++) {
		int k = nkv_topo_tier(t, 0, b);
		if (k >= 0 && ex[k][0] < 0) {
			ex[k][0] = 0;
			ex[k][1] = b;
		}
	}
}

static void show_usage(FILE *f)
{
	fprintf(f, "usage: netkv topo show FILE [--links] [--json]\n"
		   "Tiers with bandwidths and latencies, switches, and (--links or --json) every directional link.\n");
}

int nkv_cmd_topo_show(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' }, { "links", no_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	bool json = false, links = false;
	struct nkv_topo *t = NULL;
	int64_t ex[NKV_TIERS][2];
	int c;

	optind = 1;
	while ((c = nkv_cli_getopt(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 'l': links = true; break;
		case 'h': show_usage(stdout); return 0;
		default: return 2; /* nkv_cli_getopt said what is wrong */
		}
	}
	if (optind != argc - 1) {
		show_usage(stderr);
		return 2;
	}
	if (nkv_topo_load(argv[optind], &t)) {
		fprintf(stderr, "netkv topo show: %s\n", nkv_last_error());
		return 1;
	}
	tier_examples(t, ex);
	if (json) {
		json_t *root = json_object(), *tiers = json_array(), *ls = json_array(), *sws = json_array();
		json_object_set_new(root, "name", json_string(nkv_topo_name(t)));
		json_object_set_new(root, "hosts", json_integer(nkv_topo_hosts(t)));
		json_object_set_new(root, "instances", json_integer(nkv_topo_instances(t)));
		for (int k = 0; k < NKV_TIERS; k++) {
			json_t *o = json_pack("{s:i,s:s,s:f,s:f}", "tier", k, "name", nkv_tier_name(k), "nominal_Bps",
					      nkv_topo_tier_bw(t, k), "latency_s", nkv_topo_tier_latency(t, k));
			if (ex[k][0] >= 0) {
				uint32_t a = (uint32_t)ex[k][0], b = (uint32_t)ex[k][1];
				uint32_t p[NKV_MAX_PATH];
				json_object_set_new(o, "example", json_pack("[s,s]", t->insts[a].name, t->insts[b].name));
				json_object_set_new(o, "path_links", json_integer(nkv_topo_path(t, a, b, p)));
				json_object_set_new(o, "idle_Bps", json_real(nkv_topo_path_bw(t, a, b)));
				json_object_set_new(o, "loaded_Bps", json_real(nkv_topo_path_bw_loaded(t, a, b)));
			}
			json_array_append_new(tiers, o);
		}
		for (uint32_t i = 0; i < t->nswitches; i++) {
			const struct topo_switch *s = &t->switches[i];
			json_t *o = json_pack("{s:s,s:s,s:f}", "name", s->name, "tier",
					      nkv__topo_switch_tier_name(s->tier), "down_gbps", s->down_gbps);
			if (s->up != TOPO_NONE) {
				json_object_set_new(o, "uplink", json_string(t->switches[s->up].name));
				json_object_set_new(o, "uplink_gbps", json_real(s->up_gbps));
				json_object_set_new(o, "oversub", json_real(s->oversub));
			}
			json_array_append_new(sws, o);
		}
		for (uint32_t i = 0; i < nkv_topo_links(t); i++) {
			struct nkv_link_info li;
			nkv_topo_link(t, i, &li);
			json_array_append_new(ls, json_pack("{s:i,s:s,s:i,s:f,s:f,s:f}", "id", (int)i, "name", li.name, "tier",
							    li.tier, "Bps", li.bytes_per_s, "share_Bps", li.share_bytes_per_s,
							    "latency_s", li.latency_s));
		}
		json_object_set_new(root, "tiers", tiers);
		json_object_set_new(root, "switches", sws);
		json_object_set_new(root, "links", ls);
		nkv_json_print(stdout, root);
		nkv_topo_free(t);
		return 0;
	}
	printf("topology %s: %u hosts, %u GPUs, %u switches, %u directional links\n\n", nkv_topo_name(t),
	       nkv_topo_hosts(t), nkv_topo_instances(t), t->nswitches, nkv_topo_links(t));
	printf("%-5s %-5s %-13s %6s %12s %14s %12s\n", "tier", "name", "example", "links", "idle GB/s", "loaded GB/s",
	       "latency us");
	for (int k = 0; k < NKV_TIERS; k++) {
		if (ex[k][0] < 0) {
			printf("%-5d %-5s %-13s\n", k, nkv_tier_name(k), "(none)");
			continue;
		}
		uint32_t a = (uint32_t)ex[k][0], b = (uint32_t)ex[k][1], p[NKV_MAX_PATH];
		char pair[160];
		snprintf(pair, sizeof(pair), "%s>%s", t->insts[a].name, t->insts[b].name);
		printf("%-5d %-5s %-13s %6d %12.2f %14.2f %12.2f\n", k, nkv_tier_name(k), pair, nkv_topo_path(t, a, b, p),
		       nkv_topo_path_bw(t, a, b) / 1e9, nkv_topo_path_bw_loaded(t, a, b) / 1e9,
		       nkv_topo_path_latency(t, a, b) * 1e6);
	}
	uint32_t S, C;
	if (nkv_topo_ecmp(t, &S, &C)) {
		/* The idle figure above is the aggregated tree's; one ECMP flow is held by its member links. */
		printf("ECMP: %u spines per pod, %u cores per spine plane; one flow, idle fabric:", S, C);
		for (int k = NKV_TIER_POD; k < NKV_TIERS; k++) {
			uint32_t p[NKV_MAX_PATH];
			struct nkv_link_info li;
			double bw = INFINITY;
			int n = ex[k][0] < 0 ? -1 : nkv_topo_path_ecmp(t, (uint32_t)ex[k][0], (uint32_t)ex[k][1], 0, p);
			for (int i = 0; i < n; i++)
				if (nkv_topo_link(t, p[i], &li) == 0 && li.bytes_per_s < bw)
					bw = li.bytes_per_s;
			if (n > 0)
				printf("  %s %.2f GB/s", nkv_tier_name(k), bw / 1e9);
		}
		printf("\n");
	}
	printf("\n%-16s %-6s %-16s %12s %12s %8s\n", "switch", "tier", "uplink", "down Gb/s", "up Gb/s", "oversub");
	for (uint32_t i = 0; i < t->nswitches; i++) {
		const struct topo_switch *s = &t->switches[i];
		printf("%-16s %-6s %-16s %12.0f ", s->name, nkv__topo_switch_tier_name(s->tier),
		       s->up != TOPO_NONE ? t->switches[s->up].name : "-", s->down_gbps);
		if (s->up != TOPO_NONE)
			printf("%12.0f %7.2f:1\n", s->up_gbps, s->oversub);
		else
			printf("%12s %8s\n", "-", "-");
	}
	if (links) {
		printf("\n%-6s %-28s %4s %12s %12s %10s\n", "id", "link", "tier", "GB/s", "share GB/s", "lat us");
		for (uint32_t i = 0; i < nkv_topo_links(t); i++) {
			struct nkv_link_info li;
			nkv_topo_link(t, i, &li);
			printf("%-6u %-28s %4d %12.2f %12.2f %10.2f\n", i, li.name, li.tier, li.bytes_per_s / 1e9,
			       li.share_bytes_per_s / 1e9, li.latency_s * 1e6);
		}
	}
	nkv_topo_free(t);
	return 0;
}

static void host_usage(FILE *f)
{
	fprintf(f, "usage: netkv topo host [--json]\n"
		   "This host's GPUs, RDMA NICs and NUMA nodes (hwloc) and the nearest NIC for each GPU and\n"
		   "NUMA node, in PCIe distance classes PIX < PXB < PHB < NODE < SYS.\n"
		   "Set HWLOC_XMLFILE to inspect a saved machine (lstopo --of xml).\n");
}

int nkv_cmd_topo_host(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' }, { "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 },
	};
	struct nkv_host_info *h;
	bool json = false;
	int c;

	optind = 1;
	while ((c = nkv_cli_getopt(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 'h': host_usage(stdout); return 0;
		default: return 2; /* nkv_cli_getopt said what is wrong */
		}
	}
	if (optind != argc) {
		host_usage(stderr);
		return 2;
	}
	if (nkv_host_discover(&h)) {
		fprintf(stderr, "netkv topo host: %s\n", nkv_last_error());
		return 1;
	}
	if (json) {
		json_t *g = json_array(), *n = json_array(), *m = json_array();
		for (uint32_t i = 0; i < h->ngpus; i++) {
			const struct nkv_host_gpu *x = &h->gpus[i];
			json_array_append_new(g, json_pack("{s:s,s:s,s:i,s:s?,s:s}", "name", x->name, "pci", x->pci, "numa",
							   x->numa, "nearest_nic", x->nic >= 0 ? h->nics[x->nic].name : NULL,
							   "class", nkv_pci_class_name(x->nic_class)));
		}
		for (uint32_t i = 0; i < h->nnics; i++) {
			const struct nkv_host_nic *x = &h->nics[i];
			json_array_append_new(n, json_pack("{s:s,s:s,s:s,s:i}", "name", x->name, "netdev", x->netdev, "pci",
							   x->pci, "numa", x->numa));
		}
		for (uint32_t i = 0; i < h->nnuma; i++) {
			const struct nkv_host_numa *x = &h->numa[i];
			json_array_append_new(m, json_pack("{s:i,s:I,s:s?,s:s}", "node", x->os_index, "memory",
							   (json_int_t)x->memory, "nearest_nic",
							   x->nic >= 0 ? h->nics[x->nic].name : NULL, "class",
							   nkv_pci_class_name(x->nic_class)));
		}
		nkv_json_print(stdout, json_pack("{s:o,s:o,s:o}", "gpus", g, "nics", n, "numa_nodes", m));
		nkv_host_free(h);
		return 0;
	}
	printf("%u GPU(s), %u RDMA NIC(s), %u NUMA node(s)\n", h->ngpus, h->nnics, h->nnuma);
	printf("\n%-4s %-10s %-14s %5s %-12s %s\n", "gpu", "name", "pci", "numa", "nearest nic", "class");
	for (uint32_t i = 0; i < h->ngpus; i++) {
		const struct nkv_host_gpu *x = &h->gpus[i];
		printf("%-4u %-10s %-14s %5d %-12s %s\n", i, x->name, x->pci, x->numa,
		       x->nic >= 0 ? h->nics[x->nic].name : "-", x->nic >= 0 ? nkv_pci_class_name(x->nic_class) : "-");
	}
	if (!h->ngpus)
		printf("(no GPU found)\n");
	printf("\n%-12s %-12s %-14s %5s\n", "nic", "netdev", "pci", "numa");
	for (uint32_t i = 0; i < h->nnics; i++)
		printf("%-12s %-12s %-14s %5d\n", h->nics[i].name, h->nics[i].netdev[0] ? h->nics[i].netdev : "-",
		       h->nics[i].pci[0] ? h->nics[i].pci : "-", h->nics[i].numa);
	if (!h->nnics)
		printf("(no OpenFabrics/RDMA NIC found)\n");
	printf("\n%-5s %10s %-12s %s\n", "numa", "memory MiB", "nearest nic", "class");
	for (uint32_t i = 0; i < h->nnuma; i++) {
		const struct nkv_host_numa *x = &h->numa[i];
		printf("%-5d %10llu %-12s %s\n", x->os_index, (unsigned long long)(x->memory >> 20),
		       x->nic >= 0 ? h->nics[x->nic].name : "-", x->nic >= 0 ? nkv_pci_class_name(x->nic_class) : "-");
	}
	nkv_host_free(h);
	return 0;
}
