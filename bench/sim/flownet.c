/*
 * Flow-level network: max-min fair rates by progressive filling over the
 * directional links, recomputed whenever the set of flows sharing links
 * changes (a flow arrives, drains its last byte, or is removed).
 *
 * A flow goes through two stages: draining (its bytes leave at its rate,
 * it holds a share of every link on its path) and then the tail (the last
 * byte crosses the path's base latency; no bandwidth held). It completes
 * at drain end + latency.
 *
 * Optional token buckets (nkv_flownet_set_buckets), as tc tbf shapes the
 * emulated fabric's links: a link whose bucket holds tokens carries up to
 * the peak rate, the bucket draining at (load - rate); an empty bucket
 * leaves the link at its rate, refilling while the load is below it. The
 * switch back to the peak happens at the next recompute (a flow arriving or
 * leaving) once the bucket is 1% full, so a saturated link does not flap.
 *
 * ECMP (nkv_flownet_set_ecmp): a flow between instances takes the path the
 * topology's per-flow hash gives (nkv_topo_path_ecmp), its flow id the
 * order of arrival (or the caller's key), so two flows may collide on one
 * spine or core uplink while another stays idle, as on a real fabric.
 *
 * Every link counts the bytes it carried (background flows included) and
 * the highest load it saw at any moment, for utilisation reports.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "netkv_sim.h"
#include "nkv_util.h"

enum flow_state { F_FREE, F_DRAIN, F_TAIL };

struct flow {
	uint32_t links[NKV_MAX_PATH];
	uint8_t nl;
	uint8_t state;
	bool bg;
	bool frozen;
	int tier;
	uint64_t bytes;
	double remaining;   /* bytes left to drain */
	double rate;        /* B/s */
	double cap;         /* the most it may drain at, B/s (INFINITY: none; nkv_flownet_set_cap) */
	double latency_s;
	double min_s;       /* completes no sooner than start + min_s (setup floor) */
	double start_s;
	double done_s;      /* completion time once in the tail */
};

struct nkv_flownet {
	const struct nkv_topo *topo;
	uint32_t nlinks;
	double *cap;
	/* per-link scratch for progressive filling */
	double *resid;
	uint32_t *count;
	uint64_t *stamp;
	uint32_t *touched;
	uint64_t gen;

	struct flow *f;
	uint32_t nf, capf;
	uint32_t *freel;    /* free flow slots */
	uint32_t nfree;
	uint32_t *act;      /* active (drain or tail) flow ids */
	uint32_t nact;

	double now;
	double next;        /* cached: next drain end or completion */
	bool isolated;      /* each flow at its path's bottleneck, no sharing */
	bool buckets;       /* token buckets on (nkv_flownet_set_buckets) */
	double *bucket, *tokens, *load; /* per link: bucket size (0 = none), tokens, carried B/s */
	double peak;        /* what a link with tokens carries, B/s */
	double setup_s, floor_s; /* per-flow overheads (nkv_flownet_set_overhead) */
	uint64_t done_bytes[NKV_TIERS];
	uint64_t recomputes;
	bool ecmp;          /* paths by per-flow hash (nkv_flownet_set_ecmp) */
	uint64_t seq;       /* flows added: the ECMP key of nkv_flownet_add */
	double *carried;    /* per link: bytes carried so far */
	double *lload;      /* per link: load at the last recompute (valid where lstamp == gen) */
	double *peak_load;  /* per link: the highest load seen, B/s */
	uint64_t *lstamp;
	uint32_t ncapped;   /* active flows with a finite cap (the cap scan runs only then) */
};

static int net_alloc(struct nkv_flownet **out, uint32_t nlinks)
{
	struct nkv_flownet *n = calloc(1, sizeof(*n));

	if (!n)
		return nkv_err(ENOMEM, "flownet: out of memory");
	n->nlinks = nlinks;
	n->cap = calloc(nlinks ? nlinks : 1, sizeof(double));
	n->resid = calloc(nlinks ? nlinks : 1, sizeof(double));
	n->count = calloc(nlinks ? nlinks : 1, sizeof(uint32_t));
	n->stamp = calloc(nlinks ? nlinks : 1, sizeof(uint64_t));
	n->touched = calloc(nlinks ? nlinks : 1, sizeof(uint32_t));
	n->carried = calloc(nlinks ? nlinks : 1, sizeof(double));
	n->lload = calloc(nlinks ? nlinks : 1, sizeof(double));
	n->peak_load = calloc(nlinks ? nlinks : 1, sizeof(double));
	n->lstamp = calloc(nlinks ? nlinks : 1, sizeof(uint64_t));
	if (!n->cap || !n->resid || !n->count || !n->stamp || !n->touched || !n->carried || !n->lload ||
	    !n->peak_load || !n->lstamp) {
		nkv_flownet_free(n);
		return nkv_err(ENOMEM, "flownet: out of memory for %u links", nlinks);
	}
	n->next = INFINITY;
	*out = n;
	return 0;
}

int nkv_flownet_create(const struct nkv_topo *t, struct nkv_flownet **out)
{
	uint32_t nl = nkv_topo_links(t);
	struct nkv_link_info li;
	int ret = net_alloc(out, nl);

	if (ret)
		return ret;
	(*out)->topo = t;
	for (uint32_t i = 0; i < nl; i++) {
		if ((ret = nkv_topo_link(t, i, &li)) < 0) {
			nkv_flownet_free(*out);
			*out = NULL;
			return nkv_err_wrap(ret, "flownet: link %u", i);
		}
		(*out)->cap[i] = li.bytes_per_s;
	}
	return 0;
}

int nkv_flownet_create_links(const double *capacity, uint32_t nlinks, struct nkv_flownet **out)
{
	int ret;

	for (uint32_t i = 0; i < nlinks; i++)
		if (!(capacity[i] > 0) || !isfinite(capacity[i]))
			return nkv_err(EINVAL, "flownet: link %u capacity %g must be a positive number", i, capacity[i]);
	if ((ret = net_alloc(out, nlinks)))
		return ret;
	memcpy((*out)->cap, capacity, nlinks * sizeof(double));
	return 0;
}

void nkv_flownet_free(struct nkv_flownet *n)
{
	if (!n)
		return;
	free(n->cap);
	free(n->resid);
	free(n->count);
	free(n->stamp);
	free(n->touched);
	free(n->carried);
	free(n->lload);
	free(n->peak_load);
	free(n->lstamp);
	free(n->bucket);
	free(n->tokens);
	free(n->load);
	free(n->f);
	free(n->freel);
	free(n->act);
	free(n);
}

/* A link's capacity now: the peak while its bucket holds tokens. */
static double link_cap(const struct nkv_flownet *n, uint32_t l)
{
	if (n->buckets && n->bucket[l] > 0 && n->tokens[l] > 0.01 * n->bucket[l])
		return fmax(n->peak, n->cap[l]);
	return n->cap[l];
}

/* The bucket that empties first at the current loads: its link (or
 * UINT32_MAX) and the time. */
static uint32_t next_empty(const struct nkv_flownet *n, double *when)
{
	uint32_t best = UINT32_MAX;

	*when = INFINITY;
	if (!n->buckets)
		return best;
	for (uint32_t l = 0; l < n->nlinks; l++) {
		if (!(n->bucket[l] > 0) || n->tokens[l] <= 0 || n->load[l] <= n->cap[l])
			continue;
		double t = n->now + n->tokens[l] / (n->load[l] - n->cap[l]);
		if (t < *when) {
			*when = t;
			best = l;
		}
	}
	return best;
}

/* Move the draining flows' bytes forward to time t at their current rates. */
static void drain_to(struct nkv_flownet *n, double t)
{
	double dt = t - n->now;

	if (dt > 0 && n->buckets) {
		for (uint32_t l = 0; l < n->nlinks; l++) {
			if (!(n->bucket[l] > 0))
				continue;
			n->tokens[l] += (n->cap[l] - n->load[l]) * dt;
			n->tokens[l] = fmin(fmax(n->tokens[l], 0), n->bucket[l]);
		}
	}
	if (dt > 0) {
		for (uint32_t i = 0; i < n->nact; i++) {
			struct flow *f = &n->f[n->act[i]];

			if (f->state == F_DRAIN && isfinite(f->rate))
				for (uint32_t k = 0; k < f->nl; k++)
					n->carried[f->links[k]] += f->rate * dt;
			if (f->state == F_DRAIN && !f->bg) {
				f->remaining -= f->rate * dt;
				if (f->remaining < 0)
					f->remaining = 0;
			}
		}
	}
	if (t > n->now)
		n->now = t;
}

static double drain_end(const struct nkv_flownet *n, const struct flow *f)
{
	if (f->bg)
		return INFINITY;
	if (f->remaining <= 0)
		return n->now;
	return f->rate > 0 ? n->now + f->remaining / f->rate : INFINITY;
}

static void update_next(struct nkv_flownet *n)
{
	double best = INFINITY;

	for (uint32_t i = 0; i < n->nact; i++) {
		const struct flow *f = &n->f[n->act[i]];
		double t = f->state == F_TAIL ? f->done_s : drain_end(n, f);

		if (t < best)
			best = t;
	}
	double te;
	if (next_empty(n, &te) != UINT32_MAX && te < best)
		best = te;
	n->next = best;
}

/* Progressive filling: raise every unfrozen flow's rate together; the link
 * whose residual / unfrozen-flows is smallest saturates first, freezing its
 * flows at that share; repeat. Gives the max-min fair allocation. */
static void recompute(struct nkv_flownet *n)
{
	uint32_t ntouched = 0, unfrozen = 0;

	n->recomputes++;
	n->gen++;
	if (n->isolated) {
		/* Per-path pacing (the loopback testbed's --tier-gbps): a flow gets
		 * its path's narrowest link whatever else is running. */
		for (uint32_t i = 0; i < n->nact; i++) {
			struct flow *f = &n->f[n->act[i]];

			if (f->state != F_DRAIN)
				continue;
			f->rate = f->cap;
			for (uint32_t k = 0; k < f->nl; k++)
				if (link_cap(n, f->links[k]) < f->rate)
					f->rate = link_cap(n, f->links[k]);
			f->frozen = true;
		}
		goto loads;
	}
	for (uint32_t i = 0; i < n->nact; i++) {
		struct flow *f = &n->f[n->act[i]];

		if (f->state != F_DRAIN)
			continue;
		f->frozen = false;
		f->rate = 0;
		if (!f->nl) { /* no links: unlimited; only happens for a == b flows, which skip draining */
			f->frozen = true;
			f->rate = INFINITY;
			continue;
		}
		unfrozen++;
		for (uint32_t k = 0; k < f->nl; k++) {
			uint32_t l = f->links[k];

			if (n->stamp[l] != n->gen) {
				n->stamp[l] = n->gen;
				n->resid[l] = link_cap(n, l);
				n->count[l] = 0;
				n->touched[ntouched++] = l;
			}
			n->count[l]++;
		}
	}
	while (unfrozen) {
		double share = INFINITY;
		uint32_t bl = UINT32_MAX;

		for (uint32_t j = 0; j < ntouched; j++) {
			uint32_t l = n->touched[j];
			double s;

			if (!n->count[l])
				continue;
			s = n->resid[l] / n->count[l];
			if (s < share || (s == share && l < bl)) {
				share = s;
				bl = l;
			}
		}
		/* A capped flow whose cap is below the next link share stops there,
		 * handing the rest of its links' capacity to the others. */
		struct flow *cf = NULL;
		for (uint32_t i = 0; n->ncapped && i < n->nact; i++) {
			struct flow *f = &n->f[n->act[i]];

			if (f->state == F_DRAIN && !f->frozen && f->cap < share && (!cf || f->cap < cf->cap))
				cf = f;
		}
		if (cf) {
			cf->rate = cf->cap;
			cf->frozen = true;
			unfrozen--;
			for (uint32_t k = 0; k < cf->nl; k++) {
				n->resid[cf->links[k]] -= cf->cap;
				n->count[cf->links[k]]--;
			}
			continue;
		}
		if (bl == UINT32_MAX)
			break;
		if (share < 0)
			share = 0;
		for (uint32_t i = 0; i < n->nact; i++) {
			struct flow *f = &n->f[n->act[i]];
			bool on = false;

			if (f->state != F_DRAIN || f->frozen)
				continue;
			for (uint32_t k = 0; k < f->nl && !on; k++)
				on = f->links[k] == bl;
			if (!on)
				continue;
			f->rate = share;
			f->frozen = true;
			unfrozen--;
			for (uint32_t k = 0; k < f->nl; k++) {
				n->resid[f->links[k]] -= share;
				n->count[f->links[k]]--;
			}
		}
		n->count[bl] = 0;
	}
loads:
	/* Each link's load now, and its peak. */
	for (uint32_t i = 0; i < n->nact; i++) {
		const struct flow *f = &n->f[n->act[i]];

		if (f->state != F_DRAIN || !isfinite(f->rate))
			continue;
		for (uint32_t k = 0; k < f->nl; k++) {
			uint32_t l = f->links[k];

			if (n->lstamp[l] != n->gen) {
				n->lstamp[l] = n->gen;
				n->lload[l] = 0;
			}
			n->lload[l] += f->rate;
			if (n->lload[l] > n->peak_load[l])
				n->peak_load[l] = n->lload[l];
		}
	}
	if (!n->buckets)
		return;
	/* What each link carries, for its bucket. */
	memset(n->load, 0, n->nlinks * sizeof(double));
	for (uint32_t i = 0; i < n->nact; i++) {
		const struct flow *f = &n->f[n->act[i]];
		if (f->state == F_DRAIN && isfinite(f->rate))
			for (uint32_t k = 0; k < f->nl; k++)
				n->load[f->links[k]] += f->rate;
	}
}

static int new_flow(struct nkv_flownet *n, struct flow **fp)
{
	uint32_t id;

	if (n->nfree) {
		id = n->freel[--n->nfree];
	} else {
		if (n->nf == n->capf) {
			uint32_t c = n->capf ? n->capf * 2 : 64;
			struct flow *f = realloc(n->f, c * sizeof(*f));
			uint32_t *fl, *ac;

			if (!f)
				return nkv_err(ENOMEM, "flownet: out of memory for %u flows", c);
			n->f = f;
			fl = realloc(n->freel, c * sizeof(*fl));
			if (!fl)
				return nkv_err(ENOMEM, "flownet: out of memory for %u flows", c);
			n->freel = fl;
			ac = realloc(n->act, c * sizeof(*ac));
			if (!ac)
				return nkv_err(ENOMEM, "flownet: out of memory for %u flows", c);
			n->act = ac;
			n->capf = c;
		}
		id = n->nf++;
	}
	memset(&n->f[id], 0, sizeof(n->f[id]));
	n->act[n->nact++] = id;
	*fp = &n->f[id];
	return (int)id;
}

static int start(struct nkv_flownet *n, const uint32_t *links, uint32_t nl, uint64_t bytes, double lat, int tier,
		 double now)
{
	struct flow *f = NULL;
	int id;

	if (nl > NKV_MAX_PATH)
		return nkv_err(EINVAL, "flownet: path of %u links (max %d)", nl, NKV_MAX_PATH);
	for (uint32_t k = 0; k < nl; k++)
		if (links[k] >= n->nlinks)
			return nkv_err(EINVAL, "flownet: link %u beyond %u", links[k], n->nlinks);
	if (!(lat >= 0) || !isfinite(lat))
		return nkv_err(EINVAL, "flownet: latency %g", lat);
	if (!bytes)
		return nkv_err(EINVAL, "flownet: empty flow");
	if (now < n->now)
		now = n->now; /* never go back in time */
	drain_to(n, now);
	if ((id = new_flow(n, &f)) < 0)
		return id;
	memcpy(f->links, links, nl * sizeof(*links));
	f->nl = (uint8_t)nl;
	f->bytes = bytes;
	f->bg = bytes == UINT64_MAX;
	f->remaining = f->bg ? INFINITY : (double)bytes;
	f->cap = INFINITY;
	f->latency_s = lat + n->setup_s;
	f->min_s = n->floor_s;
	f->start_s = now;
	f->tier = tier;
	if (!nl && !f->bg) {
		f->state = F_TAIL; /* nothing to cross */
		f->remaining = 0;
		f->done_s = now + fmax(f->latency_s, f->min_s);
	} else {
		f->state = F_DRAIN;
		recompute(n);
	}
	update_next(n);
	return id;
}

int nkv_flownet_add(struct nkv_flownet *n, uint32_t a, uint32_t b, uint64_t bytes, double now)
{
	return nkv_flownet_add_keyed(n, a, b, bytes, n->seq, now);
}

int nkv_flownet_add_keyed(struct nkv_flownet *n, uint32_t a, uint32_t b, uint64_t bytes, uint64_t key, double now)
{
	uint32_t links[NKV_MAX_PATH];
	int nl, tier;
	double lat;

	if (!n->topo)
		return nkv_err(EINVAL, "flownet: no topology (built from bare links)");
	if ((tier = nkv_topo_tier(n->topo, a, b)) < 0)
		return nkv_err_wrap(tier, "flownet: flow %u -> %u", a, b);
	nl = n->ecmp ? nkv_topo_path_ecmp(n->topo, a, b, key, links) : nkv_topo_path(n->topo, a, b, links);
	if (nl < 0)
		return nkv_err_wrap(nl, "flownet: flow %u -> %u", a, b);
	n->seq++;
	lat = a == b ? 0 : nkv_topo_path_latency(n->topo, a, b);
	if (lat < 0)
		lat = 0;
	return start(n, links, (uint32_t)nl, bytes, lat, tier, now);
}

int nkv_flownet_add_links(struct nkv_flownet *n, const uint32_t *links, uint32_t nlinks, uint64_t bytes,
			  double latency_s, double now)
{
	return start(n, links, nlinks, bytes, latency_s, 0, now);
}

static void release(struct nkv_flownet *n, uint32_t idx_in_act)
{
	uint32_t id = n->act[idx_in_act];

	if (isfinite(n->f[id].cap))
		n->ncapped--;
	n->f[id].state = F_FREE;
	n->act[idx_in_act] = n->act[--n->nact];
	n->freel[n->nfree++] = id;
}

int nkv_flownet_remove(struct nkv_flownet *n, int flow, double now)
{
	for (uint32_t i = 0; i < n->nact; i++) {
		if ((int)n->act[i] != flow)
			continue;
		drain_to(n, now);
		bool was_drain = n->f[flow].state == F_DRAIN;
		release(n, i);
		if (was_drain)
			recompute(n);
		update_next(n);
		return 0;
	}
	return nkv_err(ENOENT, "flownet: no active flow %d", flow);
}

double nkv_flownet_next(const struct nkv_flownet *n)
{
	return n->next;
}

int nkv_flownet_pop(struct nkv_flownet *n, double now, uint64_t *bytes, double *started_s)
{
	/* Process drain ends up to now, each at its own time (rates change there). */
	for (;;) {
		double best = INFINITY;
		uint32_t bi = UINT32_MAX;

		for (uint32_t i = 0; i < n->nact; i++) {
			const struct flow *f = &n->f[n->act[i]];

			if (f->state != F_DRAIN)
				continue;
			double t = drain_end(n, f);
			if (t < best || (bi != UINT32_MAX && t == best && n->act[i] < n->act[bi])) {
				best = t;
				bi = i;
			}
		}
		double te;
		uint32_t el = next_empty(n, &te);
		if (el != UINT32_MAX && te <= now && (bi == UINT32_MAX || te < best)) {
			/* a bucket runs dry: its link falls back to its rate */
			drain_to(n, te);
			n->tokens[el] = 0;
			recompute(n);
			continue;
		}
		if (bi == UINT32_MAX || best > now)
			break;
		drain_to(n, best);
		struct flow *f = &n->f[n->act[bi]];
		f->remaining = 0;
		f->state = F_TAIL;
		f->done_s = fmax(best + f->latency_s, f->start_s + f->min_s);
		recompute(n);
	}
	drain_to(n, now);
	/* The earliest completion at or before now (ties: lowest id). */
	uint32_t bi = UINT32_MAX;
	for (uint32_t i = 0; i < n->nact; i++) {
		const struct flow *f = &n->f[n->act[i]];

		if (f->state != F_TAIL || f->done_s > now)
			continue;
		if (bi == UINT32_MAX || f->done_s < n->f[n->act[bi]].done_s ||
		    (f->done_s == n->f[n->act[bi]].done_s && n->act[i] < n->act[bi]))
			bi = i;
	}
	if (bi == UINT32_MAX) {
		update_next(n);
		return -ENOENT;
	}
	int id = (int)n->act[bi];
	struct flow *f = &n->f[id];
	if (bytes)
		*bytes = f->bytes;
	if (started_s)
		*started_s = f->start_s;
	n->done_bytes[f->tier >= 0 && f->tier < NKV_TIERS ? f->tier : 0] += f->bytes;
	release(n, bi);
	update_next(n);
	return id;
}

double nkv_flownet_rate(const struct nkv_flownet *n, int flow)
{
	if (flow < 0 || (uint32_t)flow >= n->nf || n->f[flow].state != F_DRAIN)
		return 0;
	return n->f[flow].rate;
}

uint32_t nkv_flownet_active(const struct nkv_flownet *n)
{
	return n->nact;
}

uint64_t nkv_flownet_bytes_done(const struct nkv_flownet *n, int tier)
{
	return tier >= 0 && tier < NKV_TIERS ? n->done_bytes[tier] : 0;
}

uint64_t nkv_flownet_recomputes(const struct nkv_flownet *n)
{
	return n->recomputes;
}

void nkv_flownet_set_isolated(struct nkv_flownet *n, bool on)
{
	n->isolated = on;
	recompute(n);
	update_next(n);
}

void nkv_flownet_set_overhead(struct nkv_flownet *n, double setup_s, double floor_s)
{
	n->setup_s = setup_s > 0 && isfinite(setup_s) ? setup_s : 0;
	n->floor_s = floor_s > 0 && isfinite(floor_s) ? floor_s : 0;
}

int nkv_flownet_set_buckets(struct nkv_flownet *n, double burst_s, double min_bytes, double peak_Bps, int min_tier)
{
	if (!(burst_s >= 0) || !(min_bytes >= 0) || !isfinite(burst_s) || !isfinite(min_bytes) || !(peak_Bps > 0) ||
	    !isfinite(peak_Bps))
		return nkv_err(EINVAL, "flownet: bucket %g s / %g B at peak %g B/s", burst_s, min_bytes, peak_Bps);
	if (!n->bucket) {
		n->bucket = calloc(n->nlinks ? n->nlinks : 1, sizeof(double));
		n->tokens = calloc(n->nlinks ? n->nlinks : 1, sizeof(double));
		n->load = calloc(n->nlinks ? n->nlinks : 1, sizeof(double));
		if (!n->bucket || !n->tokens || !n->load)
			return nkv_err(ENOMEM, "flownet: out of memory for buckets");
	}
	for (uint32_t l = 0; l < n->nlinks; l++) {
		struct nkv_link_info li;
		if (n->topo && (nkv_topo_link(n->topo, l, &li) < 0 || li.tier < min_tier))
			continue;
		n->bucket[l] = n->tokens[l] = fmax(n->cap[l] * burst_s, min_bytes);
	}
	n->peak = peak_Bps;
	n->buckets = burst_s > 0 || min_bytes > 0;
	recompute(n);
	update_next(n);
	return 0;
}

int nkv_flownet_set_ecmp(struct nkv_flownet *n, bool on)
{
	if (on && (!n->topo || !nkv_topo_ecmp(n->topo, NULL, NULL)))
		return nkv_err(EINVAL, "flownet: ECMP needs a topology that declares spines per pod and cores per "
				       "spine (netkv topo gen --spines N --cores N, or \"ecmp\" in the file)");
	n->ecmp = on;
	return 0;
}

double nkv_flownet_link_carried(const struct nkv_flownet *n, uint32_t link)
{
	return link < n->nlinks ? n->carried[link] : 0;
}

double nkv_flownet_link_carried_at(const struct nkv_flownet *n, uint32_t link, double t)
{
	if (link >= n->nlinks)
		return 0;
	double load = n->lstamp[link] == n->gen ? n->lload[link] : 0;
	return n->carried[link] + (t > n->now ? load * (t - n->now) : 0);
}

double nkv_flownet_link_peak(const struct nkv_flownet *n, uint32_t link)
{
	return link < n->nlinks ? n->peak_load[link] : 0;
}

int nkv_flownet_set_cap(struct nkv_flownet *n, int flow, double cap_Bps, double now)
{
	if (!(cap_Bps > 0))
		return nkv_err(EINVAL, "flownet: flow cap %g B/s must be > 0 (INFINITY: none)", cap_Bps);
	if (flow < 0 || (uint32_t)flow >= n->nf || n->f[flow].state == F_FREE)
		return nkv_err(ENOENT, "flownet: no active flow %d", flow);
	if (now < n->now)
		now = n->now;
	drain_to(n, now);
	if (isfinite(n->f[flow].cap))
		n->ncapped--;
	if (isfinite(cap_Bps))
		n->ncapped++;
	n->f[flow].cap = cap_Bps;
	if (n->f[flow].state == F_DRAIN)
		recompute(n);
	update_next(n);
	return 0;
}
