/*
 * Headroom: how busy the fabric was. Each finished KV transfer flow's bytes
 * are spread evenly over the time it ran ([start, end]) and added to every
 * link of its path (nkv_topo_path), in windows of NKV__HEADROOM_WINDOW_S;
 * the summary's peak_util[tier] is the largest bytes / (capacity x window)
 * over the links of that tier (nkv_link_info.tier) and the windows. KV
 * transfers only: background flows and probes are not counted. Each flow
 * is spread evenly over its life, not at its actual max-min rate, so a
 * window can read slightly above 1. At most NKV__HEADROOM_MAX_CELLS link
 * windows are kept (128 MB); a longer run reports -1 (not measured).
 */
#include "sim_internal.h"

#include "netkv_topo.h"
#include "nkv_util.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int nkv__sim_headroom_init(struct sim_headroom *h, const struct nkv_topo *t)
{
	memset(h, 0, sizeof(*h));
	h->topo = t;
	h->nlinks = nkv_topo_links(t);
	if (!h->nlinks)
		return 0;
	if (!(h->cap = calloc(h->nlinks, sizeof(*h->cap))) || !(h->tier = calloc(h->nlinks, sizeof(*h->tier))) ||
	    !(h->win = calloc(h->nlinks, sizeof(*h->win)))) {
		nkv__sim_headroom_free(h);
		return nkv_err(ENOMEM, "sim: out of memory for link windows");
	}
	for (uint32_t l = 0; l < h->nlinks; l++) {
		struct nkv_link_info li;

		if (nkv_topo_link(t, l, &li) == 0) {
			h->cap[l] = li.bytes_per_s;
			h->tier[l] = li.tier >= 0 && li.tier < NKV_TIERS ? (uint8_t)li.tier : 0;
		}
	}
	return 0;
}

void nkv__sim_headroom_free(struct sim_headroom *h)
{
	if (h->win)
		for (uint32_t l = 0; l < h->nlinks; l++)
			free(h->win[l]);
	free(h->win);
	free(h->cap);
	free(h->tier);
	memset(h, 0, sizeof(*h));
}

static int grow(struct sim_headroom *h, size_t nw)
{
	size_t c = h->capwin ? h->capwin : 64;

	if (nw <= h->capwin)
		return 0;
	if (nw > NKV__HEADROOM_MAX_CELLS / h->nlinks) {
		h->off = true; /* too long a run to keep: not measured */
		return 0;
	}
	if (c > NKV__HEADROOM_MAX_CELLS / h->nlinks)
		c = NKV__HEADROOM_MAX_CELLS / h->nlinks;
	while (c < nw)
		c = c * 2 < NKV__HEADROOM_MAX_CELLS / h->nlinks ? c * 2 : NKV__HEADROOM_MAX_CELLS / h->nlinks;
	for (uint32_t l = 0; l < h->nlinks; l++) {
		double *v = realloc(h->win[l], c * sizeof(double));

		if (!v)
			return nkv_err(ENOMEM, "sim: out of memory for link windows");
		memset(v + h->capwin, 0, (c - h->capwin) * sizeof(double));
		h->win[l] = v;
	}
	h->capwin = c;
	return 0;
}

int nkv__sim_headroom_add(struct sim_headroom *h, uint32_t a, uint32_t b, uint64_t bytes, double start, double end)
{
	const double W = NKV__HEADROOM_WINDOW_S;
	uint32_t links[NKV_MAX_PATH];
	int nl;
	size_t w0, w1;
	int ret;

	if (!h->nlinks || h->off || !bytes || a == b || !(start >= 0) || !(end >= start) || !isfinite(end))
		return 0;
	if ((nl = nkv_topo_path(h->topo, a, b, links)) <= 0)
		return 0;
	if (end / W >= (double)NKV__HEADROOM_MAX_CELLS) { /* also keeps the casts below defined */
		h->off = true;
		return 0;
	}
	w0 = (size_t)(start / W);
	w1 = (size_t)(end / W);
	if ((ret = grow(h, w1 + 1)) || h->off)
		return ret;
	if (w1 + 1 > h->nwin)
		h->nwin = w1 + 1;
	for (size_t w = w0; w <= w1; w++) {
		double lo = fmax(start, (double)w * W), hi = fmin(end, (double)(w + 1) * W);
		double part = end > start ? (double)bytes * (hi - lo) / (end - start) : (double)bytes;

		for (int k = 0; k < nl; k++)
			if (links[k] < h->nlinks)
				h->win[links[k]][w] += part;
	}
	return 0;
}

void nkv__sim_headroom_peak(const struct sim_headroom *h, double peak[NKV_TIERS])
{
	for (int t = 0; t < NKV_TIERS; t++)
		peak[t] = h->off ? -1 : 0;
	for (uint32_t l = 0; l < h->nlinks && !h->off; l++) {
		if (!(h->cap[l] > 0))
			continue;
		for (size_t w = 0; w < h->nwin; w++) {
			double u = h->win[l][w] / (h->cap[l] * NKV__HEADROOM_WINDOW_S);

			peak[h->tier[l]] = u > peak[h->tier[l]] ? u : peak[h->tier[l]];
		}
	}
}
