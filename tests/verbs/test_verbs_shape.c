/*
 * Descriptors per push as the verbs backend would post them
 * (nkv__push_shape, push_shape.h; `netkv bench transfer --describe`):
 * checked against counts known from the plan's shape, so the figure the
 * bench prints for issue 15 is the WR builder's, not a guess.
 *  - one raw range: 1 SGE, a header SEND + one WRITE_WITH_IMM;
 *  - sources scattered into one contiguous destination: one WRITE gathers
 *    up to max_sge of them;
 *  - scattered 16-token pages, layer-major: one WRITE per page, layer and K/V;
 *  - contiguous pages: one WRITE per layer and K/V;
 *  - 4 QPs: a big push striped over 4 parts, one header each.
 */
#include "push_shape.h"
#include "vtest.h"

static struct nkv__push_shape shape(struct nkv_engine *e, const struct nkv_plan *p)
{
	struct nkv__push_shape s;
	VT_CHECK(!nkv__push_shape(e, p, &s), "push shape");
	return s;
}

static struct nkv_plan *paged(const struct nkv_layout *l, uint32_t n, bool scattered)
{
	uint32_t *sb = malloc(n * sizeof(*sb)), *db = malloc(n * sizeof(*db));
	uint64_t x = 7;
	struct nkv_plan *p = NULL;

	VT_CHECK(sb && db, "out of memory");
	nkv_permutation(sb, n, &x);
	nkv_permutation(db, n, &x);
	for (uint32_t i = 0; i < n; i++) {
		if (scattered) {
			sb[i] *= 2;
			db[i] *= 2;
		} else {
			sb[i] = db[i] = i;
		}
	}
	VT_CHECK(!nkv_plan_build(l, l, sb, db, n, &p), "plan of %u blocks", n);
	free(sb);
	free(db);
	return p;
}

int main(void)
{
	char ip[64];
	struct nkv_engine_opts o;
	struct nkv_engine *e, *e4;
	struct nkv_plan *p;
	struct nkv__push_shape s;

	vt_need_rdma(ip, sizeof(ip));
	nkv_engine_opts_init(&o);
	o.backend = NKV_BACKEND_VERBS;
	VT_CHECK(!nkv_engine_create(&o, &e), "verbs engine");
	o.streams = 4;
	VT_CHECK(!nkv_engine_create(&o, &e4), "verbs engine, 4 QPs");

	/* One range. */
	VT_CHECK(!nkv_plan_build_raw(&(struct nkv_range){ .len = 65536 }, 1, &p), "raw plan");
	s = shape(e, p);
	VT_CHECK(s.ranges == 1 && s.sges == 1 && s.wrs == 2 && s.parts == 1, "64 KiB: %llu ranges %llu SGEs %llu WRs %u parts",
		 (unsigned long long)s.ranges, (unsigned long long)s.sges, (unsigned long long)s.wrs, s.parts);
	VT_CHECK(s.max_sge >= 1, "max_sge %u", s.max_sge);
	nkv_plan_free(p);

	/* 3 x max_sge + 1 sources gathered into one contiguous destination. */
	uint32_t k = 3 * s.max_sge + 1;
	struct nkv_range *rg = calloc(k, sizeof(*rg));
	VT_CHECK(rg, "out of memory");
	for (uint32_t i = 0; i < k; i++)
		rg[i] = (struct nkv_range){ .src_off = (uint64_t)i * 8192, .dst_off = (uint64_t)i * 4096, .len = 4096 };
	VT_CHECK(!nkv_plan_build_raw(rg, k, &p), "gather plan");
	s = shape(e, p);
	VT_CHECK(s.ranges == k && s.sges == k && s.wrs == 4 + 1, "gather of %u: %llu ranges %llu SGEs %llu WRs", k,
		 (unsigned long long)s.ranges, (unsigned long long)s.sges, (unsigned long long)s.wrs);
	nkv_plan_free(p);
	free(rg);

	/* Paged llama3-8b, 16-token pages, layer-major, 64 blocks. */
	struct nkv_layout l = { .block_tokens = 16, .kind = NKV_LAYOUT_LAYER_MAJOR, .num_blocks = 128 };
	VT_CHECK(!nkv_model_preset("llama3-8b", &l.model), "preset");
	uint64_t chunks = 64ull * l.model.layers * 2;
	p = paged(&l, 64, true);
	s = shape(e, p);
	VT_CHECK(s.ranges == chunks && s.sges == chunks && s.wrs == chunks + 1,
		 "scattered: %llu ranges %llu SGEs %llu WRs, want %llu, %llu, %llu + 1", (unsigned long long)s.ranges,
		 (unsigned long long)s.sges, (unsigned long long)s.wrs, (unsigned long long)chunks,
		 (unsigned long long)chunks, (unsigned long long)chunks);
	s = shape(e4, p);
	VT_CHECK(s.parts == 4 && s.wrs == chunks + 4, "scattered over 4 QPs: %u parts %llu WRs", s.parts,
		 (unsigned long long)s.wrs);
	nkv_plan_free(p);
	p = paged(&l, 64, false);
	s = shape(e, p);
	VT_CHECK(s.ranges == 2ull * l.model.layers && s.wrs == 2ull * l.model.layers + 1,
		 "contiguous: %llu ranges %llu WRs, want %u", (unsigned long long)s.ranges, (unsigned long long)s.wrs,
		 2 * l.model.layers);
	nkv_plan_free(p);

	nkv_engine_destroy(e);
	nkv_engine_destroy(e4);
	printf("ok\n");
	return 0;
}
