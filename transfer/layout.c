/*
 * KV-cache shapes: model presets, shapes from a file (a Hugging Face
 * config.json or netkv's shape JSON, read in tools/util), and the byte
 * offsets of paged blocks in the two layouts inference engines use.
 */
#include "netkv_transfer.h"
#include "nkv_models.h"
#include "nkv_util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY /* XXH64_state_t on the stack */
#include <xxhash.h>

/* The presets' shapes are rows of the one model table (tools/util/models.c). */
int nkv_model_preset(const char *name, struct nkv_model *out)
{
	const struct nkv_model_spec *m = nkv_model_spec(name);

	if (!m)
		return nkv_err(EINVAL, "unknown model preset '%s' (known: %s)", name, nkv_model_preset_names());
	memset(out, 0, sizeof(*out));
	snprintf(out->name, sizeof(out->name), "%s", m->name);
	out->layers = m->layers;
	out->kv_heads = m->kv_heads;
	out->head_dim = m->head_dim;
	out->dtype = NKV_FP16;
	out->mla = m->mla;
	return 0;
}

const char *nkv_model_preset_names(void)
{
	return nkv_model_names(", ", false);
}

static const char *const dtype_names[] = { "fp16", "bf16", "fp8", "fp32" };

int nkv_dtype_parse(const char *s, enum nkv_dtype *out)
{
	for (int i = 0; i < 4; i++)
		if (!strcmp(s, dtype_names[i])) {
			*out = (enum nkv_dtype)i;
			return 0;
		}
	return nkv_err(EINVAL, "unknown dtype '%s' (fp16, bf16, fp8, fp32)", s);
}

const char *nkv_dtype_name(enum nkv_dtype d)
{
	return (unsigned)d < 4 ? dtype_names[d] : "?";
}

uint32_t nkv_dtype_bytes(enum nkv_dtype d)
{
	switch (d) {
	case NKV_FP16:
	case NKV_BF16:
		return 2;
	case NKV_FP8:
		return 1;
	case NKV_FP32:
		return 4;
	}
	return 0;
}

uint64_t nkv_model_bytes_per_token(const struct nkv_model *m)
{
	return (uint64_t)m->layers * (m->mla ? 1 : 2) * m->kv_heads * m->head_dim * nkv_dtype_bytes(m->dtype);
}

/* Bounds keep every product in 64 bits and reject nonsense early. */
int nkv_model_check(const struct nkv_model *m)
{
	if (!m->layers || m->layers > 4096)
		return nkv_err(EINVAL, "model '%s': layers %u not in 1..4096", m->name, m->layers);
	if (!m->kv_heads || m->kv_heads > 4096)
		return nkv_err(EINVAL, "model '%s': kv_heads %u not in 1..4096", m->name, m->kv_heads);
	if (!m->head_dim || m->head_dim > 65536)
		return nkv_err(EINVAL, "model '%s': head_dim %u not in 1..65536", m->name, m->head_dim);
	if (!nkv_dtype_bytes(m->dtype))
		return nkv_err(EINVAL, "model '%s': bad dtype %d", m->name, (int)m->dtype);
	if (m->mla && m->kv_heads != 1)
		return nkv_err(EINVAL, "model '%s': an MLA model has one latent head, not %u", m->name, m->kv_heads);
	return 0;
}

static int from_desc(const struct nkv_model_desc *d, struct nkv_model *out)
{
	struct nkv_model m = { 0 };
	int rc;

	snprintf(m.name, sizeof(m.name), "%s", d->name);
	m.layers = d->layers;
	m.kv_heads = d->kv_heads;
	m.head_dim = d->head_dim;
	m.mla = d->mla;
	if ((rc = nkv_dtype_parse(d->dtype, &m.dtype)) || (rc = nkv_model_check(&m)))
		return rc;
	*out = m;
	return 0;
}

/* A file in either form (tools/util/model_config.c reads both). */
int nkv_model_load_json(const char *path, struct nkv_model *out)
{
	struct nkv_model_desc d;
	int rc = nkv_model_config_load(path, &d);

	if (!rc && (rc = from_desc(&d, out)))
		nkv_err_wrap(rc, "%s", path);
	return rc;
}

int nkv_model_lookup(const char *name_or_path, struct nkv_model *out)
{
	struct nkv_model_desc d;
	int rc = nkv_model_find(name_or_path, &d);

	if (!rc && (rc = from_desc(&d, out)))
		nkv_err_wrap(rc, "%s", name_or_path);
	return rc == -ENOENT ? -EINVAL : rc;
}

int nkv_layout_parse_kind(const char *s, enum nkv_layout_kind *out)
{
	if (!strcmp(s, "layer") || !strcmp(s, "layer-major"))
		*out = NKV_LAYOUT_LAYER_MAJOR;
	else if (!strcmp(s, "block") || !strcmp(s, "block-major"))
		*out = NKV_LAYOUT_BLOCK_MAJOR;
	else
		return nkv_err(EINVAL, "unknown layout '%s' (layer, block)", s);
	return 0;
}

const char *nkv_layout_kind_name(enum nkv_layout_kind k)
{
	return k == NKV_LAYOUT_LAYER_MAJOR ? "layer" : k == NKV_LAYOUT_BLOCK_MAJOR ? "block" : "?";
}

int nkv_layout_check(const struct nkv_layout *l)
{
	int rc = nkv_model_check(&l->model);

	if (rc)
		return rc;
	if (!l->block_tokens || l->block_tokens > 65536)
		return nkv_err(EINVAL, "block_tokens %u not in 1..65536", l->block_tokens);
	if (!l->num_blocks)
		return nkv_err(EINVAL, "a pool needs at least one block");
	if (l->kind != NKV_LAYOUT_LAYER_MAJOR && l->kind != NKV_LAYOUT_BLOCK_MAJOR)
		return nkv_err(EINVAL, "bad layout kind %d", (int)l->kind);
	/* chunk <= 2^16*2^12*2^16*4 = 2^46, block <= chunk*2^13: guard the pool product. */
	if (nkv_layout_block_bytes(l) > (UINT64_C(1) << 62) / l->num_blocks)
		return nkv_err(EOVERFLOW, "pool of %u blocks of %llu bytes is too large", l->num_blocks,
			       (unsigned long long)nkv_layout_block_bytes(l));
	return 0;
}

uint32_t nkv_layout_tensors(const struct nkv_layout *l)
{
	return l->model.mla ? 1 : 2;
}

uint64_t nkv_layout_chunk_bytes(const struct nkv_layout *l)
{
	return (uint64_t)l->block_tokens * l->model.kv_heads * l->model.head_dim * nkv_dtype_bytes(l->model.dtype);
}

uint64_t nkv_layout_block_bytes(const struct nkv_layout *l)
{
	return nkv_layout_chunk_bytes(l) * l->model.layers * nkv_layout_tensors(l);
}

uint64_t nkv_layout_pool_bytes(const struct nkv_layout *l)
{
	return nkv_layout_block_bytes(l) * l->num_blocks;
}

uint64_t nkv_layout_chunk_offset(const struct nkv_layout *l, uint32_t block, uint32_t layer, uint32_t kv)
{
	uint64_t chunk = nkv_layout_chunk_bytes(l);
	uint32_t nt = nkv_layout_tensors(l);

	if (l->kind == NKV_LAYOUT_LAYER_MAJOR)
		/* layer tensor = [nt][num_blocks][chunk] */
		return ((uint64_t)layer * nt + kv) * l->num_blocks * chunk + (uint64_t)block * chunk;
	/* block = [layers][nt][chunk] */
	return (uint64_t)block * nkv_layout_block_bytes(l) + ((uint64_t)layer * nt + kv) * chunk;
}

uint64_t nkv_block_hash(const struct nkv_layout *l, const void *pool, uint32_t block)
{
	XXH64_state_t st;
	uint64_t chunk = nkv_layout_chunk_bytes(l);
	uint32_t nt = nkv_layout_tensors(l);

	if (l->kind == NKV_LAYOUT_BLOCK_MAJOR)
		return XXH64((const char *)pool + nkv_layout_chunk_offset(l, block, 0, 0), nkv_layout_block_bytes(l), 0);
	XXH64_reset(&st, 0);
	for (uint32_t layer = 0; layer < l->model.layers; layer++)
		for (uint32_t kv = 0; kv < nt; kv++)
			XXH64_update(&st, (const char *)pool + nkv_layout_chunk_offset(l, block, layer, kv), chunk);
	return XXH64_digest(&st);
}
