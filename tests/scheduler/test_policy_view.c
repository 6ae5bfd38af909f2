/*
 * A policy written from outside the scheduler: it includes netkv_policy.h only
 * (no sched_internal.h), registers its ops table, and decides through
 * nkv_sched_decide like the built-in ones. Also: what nkv_policy_register
 * refuses, and that a built-in policy called through its ops table on the
 * scheduler's view picks what nkv_sched_decide picks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "netkv_policy.h"
#include "nkv_util.h"

#define BPT (128 * 1024)

/* "most-loaded": the opposite of `load`, so its pick differs from every built-in. */
static int init_calls;
static int most_init(const struct nkv_sched_view *v, void **state)
{
	init_calls++;
	*state = NULL;
	return nkv_view_ndecode(v) ? 0 : -EINVAL;
}

static int most_pick(const struct nkv_sched_view *v, void *state, const struct nkv_request *r, uint32_t p,
		     double now, struct nkv_decision *out)
{
	(void)state, (void)r, (void)p, (void)now;
	out->decode = 0;
	out->score = -nkv_view_load(v, 0);
	for (uint32_t d = 1; d < nkv_view_ndecode(v); d++)
		if (-nkv_view_load(v, d) < out->score) {
			out->decode = d;
			out->score = -nkv_view_load(v, d);
		}
	return 0;
}

static const struct nkv_policy_ops most = { "most-loaded", "the busiest decode (a test policy)", most_init, NULL,
					    most_pick };

static struct nkv_topo *topo16(void)
{
	struct nkv_fat_tree_params p;
	struct nkv_topo *t;

	nkv_fat_tree_defaults(&p);
	p.gpus = 16;
	assert_int_equal(nkv_topo_fat_tree(&p, &t), 0);
	return t;
}

static struct nkv_sched *mk(struct nkv_topo *t, const char *policy)
{
	struct nkv_perf perf;
	struct nkv_sched_params p;
	struct nkv_sched *s;
	uint32_t pre[1] = { 0 }, dec[3] = { 2, 4, 8 };

	assert_int_equal(nkv_perf_preset("llama3-8b", "h100", &perf), 0);
	nkv_sched_defaults(&p);
	p.policy = policy;
	if (nkv_sched_create(t, &perf, &p, pre, 1, dec, 3, &s))
		fail_msg("create: %s", nkv_last_error());
	return s;
}

static void req(struct nkv_request *r, uint64_t *ids, uint32_t nb)
{
	memset(r, 0, sizeof(*r));
	for (uint32_t i = 0; i < nb; i++)
		ids[i] = 100 + i;
	r->input_len = nb * 512;
	r->output_len = 10;
	r->hash_ids = ids;
	r->nblocks = nb;
	r->kv_bytes_per_token = BPT;
}

static void test_register_and_decide(void **st)
{
	struct nkv_topo *t = topo16();
	struct nkv_sched *s;
	struct nkv_request r;
	struct nkv_decision d;
	uint64_t ids[2];

	(void)st;
	assert_int_equal(nkv_policy_register(&most), 0);
	assert_ptr_equal(nkv_policy_find("most-loaded"), &most);
	s = mk(t, "most-loaded");
	assert_true(init_calls >= 1);
	nkv_sched_decode(s, 1)->running = 200; /* decode 1 is the busiest */
	req(&r, ids, 2);
	assert_int_equal(nkv_sched_decide(s, &r, 0, &d), 0);
	assert_int_equal(d.decode, 1);
	assert_true(d.score < 0);
	/* The built-in `load` picks another one on the same state. */
	assert_int_equal(nkv_sched_set_policy(s, "load"), 0);
	assert_int_equal(nkv_sched_decide(s, &r, 0, &d), 0);
	assert_int_not_equal(d.decode, 1);
	nkv_sched_free(s);
	nkv_topo_free(t);
}

static void test_register_refuses(void **st)
{
	struct nkv_policy_ops noname = most, nopick = most, dup = most, longname = most;
	static char big[NKV_POLICY_NAME_MAX + 8];

	(void)st;
	noname.name = NULL;
	nopick.name = "no-pick";
	nopick.pick = NULL;
	memset(big, 'x', sizeof(big) - 1);
	longname.name = big;
	dup.name = "netkv";
	assert_int_equal(nkv_policy_register(&noname), -EINVAL);
	assert_int_equal(nkv_policy_register(&nopick), -EINVAL);
	assert_int_equal(nkv_policy_register(&longname), -EINVAL);
	assert_int_equal(nkv_policy_register(&dup), -EEXIST);
	assert_non_null(strstr(nkv_last_error(), "netkv"));
	assert_null(nkv_policy_find("no-pick"));
}

/* Every built-in, called through its ops table on the scheduler's view, picks what decide picks. */
static void test_builtins_through_ops(void **st)
{
	struct nkv_topo *t = topo16();
	struct nkv_request r;
	uint64_t ids[3];

	(void)st;
	req(&r, ids, 3);
	for (const struct nkv_policy_ops *const *o = nkv_policies(); *o; o++) {
		if (!strcmp((*o)->name, "rr") || !strcmp((*o)->name, "random"))
			continue; /* they move a cursor per call */
		struct nkv_sched *s = mk(t, (*o)->name);
		struct nkv_decision d, e;
		void *state = NULL;

		nkv_sched_decode(s, 0)->running = 50;
		assert_int_equal(nkv_sched_decide(s, &r, 0, &d), 0);
		const struct nkv_sched_view *v = nkv_sched_view(s); /* held[] of that decision */
		if ((*o)->init)
			assert_int_equal((*o)->init(v, &state), 0);
		memset(&e, 0, sizeof(e));
		assert_int_equal((*o)->pick(v, state, &r, d.prefill, 0, &e), 0);
		if ((*o)->fini)
			(*o)->fini(state);
		assert_int_equal(e.decode, d.decode);
		nkv_sched_free(s);
	}
	nkv_topo_free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_register_and_decide),
		cmocka_unit_test(test_register_refuses),
		cmocka_unit_test(test_builtins_through_ops),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
