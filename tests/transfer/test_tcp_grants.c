/*
 * Per-request grants on the TCP data plane (netkv_transfer.h "grants"): a
 * region that requires grants takes bytes only for a request the receiver
 * granted, only inside the grant. Hostile peers: no credentials; the secret
 * and a valid handshake but forged or guessed request ids; a granted id
 * with ranges (DATA or DATAV) outside its grant or more bytes than it
 * covers; a granted id aimed at another region; a second connection naming
 * a request another connection is writing. Each is refused with the
 * reason on the wire, and the pool is byte for byte what it was. Then an
 * engine pushes a granted request (it lands; the grant is used up, so a
 * second push of the id is refused); the bytes of a request whose grant
 * was revoked are dropped with -ECANCELED while the connection goes on; an
 * open region still takes any authenticated peer; and the API's own checks.
 * 127.0.0.1 only; every wait has a deadline.
 */
#include "raw_peer.h"

#include <errno.h>

#define SECRET "grants-test-secret"
#define NBLOCKS 32

static struct h_peer rp;
static uint16_t port;
static uint8_t *pool, *snap;
static uint64_t pool_len;
static struct nkv_layout L;

static void pool_unchanged(const char *what)
{
	CHECK(!memcmp(pool, snap, pool_len), "%s: the pool changed", what);
}

/* A raw peer that passed the handshake with the secret. */
static int authed(uint64_t token)
{
	char why[400];
	int fd = h_raw_connect(port);
	int rc = raw_handshake(fd, SECRET, token, 0, 1, why, sizeof(why));

	CHECK(rc == 0, "raw handshake: %d %s", rc, why);
	return fd;
}

static void send_data(int fd, uint32_t region, uint64_t req, uint64_t off, uint64_t len, uint64_t total)
{
	struct nkv_wire_hdr h = raw_hdr(NKV_W_DATA);
	uint8_t *pay = malloc(len);

	memset(pay, 0xEE, len);
	h.region = region;
	h.req_id = req;
	h.offset = off;
	h.len = len;
	h.total = total;
	send(fd, &h, sizeof(h), MSG_NOSIGNAL);
	send(fd, pay, len, MSG_NOSIGNAL);
	free(pay);
}

/* A DATAV of n entries (payload 0xEE); between its header and its entries
 * the test's `between` runs, when given. */
static void send_datav(int fd, uint32_t region, uint64_t req, const struct nkv_wire_vent *v, uint32_t n,
		       void (*between)(void))
{
	struct nkv_wire_hdr h = raw_hdr(NKV_W_DATAV);
	uint64_t len = 0;
	uint8_t *pay;

	for (uint32_t i = 0; i < n; i++)
		len += v[i].len;
	pay = malloc(len);
	memset(pay, 0xEE, len);
	h.region = region;
	h.req_id = req;
	h.offset = n;
	h.len = len;
	h.total = len;
	send(fd, &h, sizeof(h), MSG_NOSIGNAL);
	if (between)
		between();
	send(fd, v, n * sizeof(*v), MSG_NOSIGNAL);
	send(fd, pay, len, MSG_NOSIGNAL);
	free(pay);
}

/* The engine's ERROR (its status, reason in why) and then the close. */
static int refused(int fd, char *why, size_t wlen)
{
	int rc = raw_refused(fd, why, wlen);

	close(fd);
	return rc;
}

static bool recv_reported(uint64_t req)
{
	struct nkv_event ev;

	for (int i = 0; h_find(&rp, NKV_EV_RECV, i, &ev); i++)
		if (ev.req_id == req)
			return true;
	return false;
}

#define M 0x5eed1234abcd0004ull

/* After the DATAV header is checked (the grant held), before its entries come. */
static void revoke_m(void)
{
	usleep(100000);
	h_pause(&rp);
	CHECK(nkv_revoke(rp.e, M) == 1, "revoke M");
	h_resume(&rp);
}

static uint64_t block_off(uint32_t b) { return nkv_layout_chunk_offset(&L, b, 0, 0); }

int main(void)
{
	struct nkv_engine_opts o;
	struct nkv_engine *se;
	struct nkv_conn *good;
	struct nkv_plan *plan;
	struct nkv_event got[8];
	uint32_t rid, open_id, other_id, sid;
	uint8_t *src, *open_mem, *other_mem;
	const uint64_t G = 0x5eed1234abcd0001ull, H = 0x5eed1234abcd0002ull, K = 0x5eed1234abcd0003ull;
	const uint32_t gblocks[] = { 3, 7, 8 };
	uint64_t chunk;
	char addr[64], why[400];
	int fd, rc, ngot = 0, downs = 0;

	setenv("NKV_QUIET", "1", 1);
	L = (struct nkv_layout){ .model = { .name = "tiny", .layers = 2, .kv_heads = 1, .head_dim = 64,
					    .dtype = NKV_FP16 },
				 .block_tokens = 16, .num_blocks = NBLOCKS, .kind = NKV_LAYOUT_LAYER_MAJOR };
	pool_len = nkv_layout_pool_bytes(&L);
	chunk = nkv_layout_chunk_bytes(&L);
	nkv_engine_opts_init(&o);
	o.secret = SECRET;
	o.handshake_ms = 2000;
	if (nkv_engine_create(&o, &rp.e) || nkv_engine_create(&o, &se) ||
	    nkv_region_alloc(rp.e, NKV_MEM_HOST, pool_len, &L, &rid, (void **)&pool) ||
	    nkv_region_alloc(rp.e, NKV_MEM_HOST, pool_len, &L, &open_id, (void **)&open_mem) ||
	    nkv_region_alloc(rp.e, NKV_MEM_HOST, pool_len, &L, &other_id, (void **)&other_mem) ||
	    nkv_region_alloc(se, NKV_MEM_HOST, pool_len, &L, &sid, (void **)&src) ||
	    nkv_region_set_access(rp.e, rid, NKV_REGION_GRANTED) ||
	    nkv_region_set_access(rp.e, other_id, NKV_REGION_GRANTED) || nkv_listen(rp.e, "127.0.0.1:0", &port)) {
		fprintf(stderr, "setup: %s\n", nkv_last_error());
		return 1;
	}
	snap = malloc(pool_len);
	memset(pool, 0x5A, pool_len);
	memcpy(snap, pool, pool_len);
	h_fill(src, pool_len, 11);

	/* The API's own checks. */
	CHECK(nkv_grant_blocks(rp.e, G, open_id, gblocks, 3) == -EINVAL && strstr(nkv_last_error(), "open"),
	      "grant on an open region: %s", nkv_last_error());
	CHECK(nkv_grant_blocks(rp.e, G, rid, (uint32_t[]){ NBLOCKS }, 1) == -ERANGE, "block beyond the pool granted");
	CHECK(nkv_grant(rp.e, G, rid, &(struct nkv_range){ .dst_off = pool_len - 8, .len = 16 }, 1) == -ERANGE,
	      "range past the region granted");
	CHECK(nkv_grant(rp.e, G, rid, NULL, 0) == -EINVAL, "empty grant accepted");
	CHECK(nkv_grant_blocks(rp.e, G, rid, gblocks, 3) == 0, "grant: %s", nkv_last_error());
	CHECK(nkv_grant_blocks(rp.e, G, rid, gblocks, 1) == -EEXIST, "second grant for one id accepted");
	CHECK(nkv_grant_blocks(rp.e, H, rid, (uint32_t[]){ 20 }, 1) == 0, "grant H: %s", nkv_last_error());
	CHECK(nkv_revoke(rp.e, H) == 1 && nkv_revoke(rp.e, H) == 0, "revoke");
	CHECK(nkv_grant_blocks(rp.e, H, rid, (uint32_t[]){ 20 }, 1) == 0, "grant H again: %s", nkv_last_error());
	CHECK(nkv_revoke(rp.e, H) == 1, "revoke H again");
	h_start(&rp);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);

	/* No credentials: straight to DATA for the granted id, inside its grant. */
	fd = h_raw_connect(port);
	send_data(fd, rid, G, block_off(3), chunk, chunk);
	rc = refused(fd, why, sizeof(why));
	CHECK(rc == -EPROTO && strstr(why, "not a hello"), "no credentials: %d '%s'", rc, why);
	pool_unchanged("no credentials");

	/* The secret, but a forged id: in-bounds bytes for a request nobody granted. */
	fd = authed(1);
	send_data(fd, rid, 42, block_off(3), chunk, chunk);
	rc = refused(fd, why, sizeof(why));
	CHECK(rc == -EACCES && strstr(why, "request 42 has no grant to write region"), "forged id: %d '%s'", rc, why);
	downs++;
	pool_unchanged("forged id");

	/* Guessing: ids a counting scheduler would have issued, each on a fresh connection. */
	for (uint64_t id = 0; id < 8; id++) {
		fd = authed(10 + id);
		send_data(fd, rid, id, 0, chunk, chunk);
		rc = refused(fd, why, sizeof(why));
		CHECK(rc == -EACCES && strstr(why, "has no grant"), "guessed id %llu: %d '%s'", (unsigned long long)id, rc,
		      why);
		downs++;
	}
	pool_unchanged("guessed ids");

	/* A revoked id (the receiver ended the request while its sender still
	 * pushed): its bytes are read and dropped, the sender is told
	 * -ECANCELED, and the connection stays up. */
	fd = authed(20);
	send_data(fd, rid, H, block_off(20), chunk, 2 * chunk);
	send_data(fd, rid, H, block_off(21), chunk, 2 * chunk);
	{
		struct nkv_wire_hdr h;
		rc = raw_answer(fd, &h, why, sizeof(why));
		CHECK(rc == 0 && h.type == NKV_W_ACK && h.req_id == H && (int64_t)h.offset == -ECANCELED,
		      "revoked id: %d type %u status %lld '%s'", rc, h.type, (long long)(int64_t)h.offset, why);
	}
	send_data(fd, rid, 44, block_off(3), chunk, chunk); /* still up: a forged id after it is refused */
	rc = refused(fd, why, sizeof(why));
	CHECK(rc == -EACCES && strstr(why, "request 44 has no grant"), "after the revoked id: %d '%s'", rc, why);
	downs++;
	{
		struct nkv_event ev;
		bool seen = false;
		/* The ACK may reach us before the polling thread has recorded the event. */
		for (double end = nkv_now_s() + 5; !seen && nkv_now_s() < end; usleep(2000))
			for (int i = 0; h_find(&rp, NKV_EV_RECV, i, &ev); i++)
				if (ev.req_id == H)
					seen = ev.status == -ECANCELED && strstr(ev.reason, "revoked");
		CHECK(seen, "no RECV -ECANCELED for the revoked request");
	}
	pool_unchanged("revoked id");

	/* The granted id, a range outside its grant (block 4 is in bounds, not granted). */
	fd = authed(21);
	send_data(fd, rid, G, block_off(4), chunk, chunk);
	rc = refused(fd, why, sizeof(why));
	CHECK(rc == -EACCES && strstr(why, "is outside its grant"), "range outside the grant: %d '%s'", rc, why);
	downs++;
	/* ... straddling the end of a granted run (blocks 7-8 are adjacent in each layer: one run). */
	fd = authed(22);
	send_data(fd, rid, G, block_off(8), 2 * chunk, 2 * chunk);
	rc = refused(fd, why, sizeof(why));
	CHECK(rc == -EACCES && strstr(why, "is outside its grant"), "range past a granted run: %d '%s'", rc, why);
	downs++;
	/* ... announcing more bytes than the grant covers. */
	fd = authed(23);
	send_data(fd, rid, G, block_off(3), chunk, pool_len);
	rc = refused(fd, why, sizeof(why));
	CHECK(rc == -EACCES && strstr(why, "its grant in region"), "total over the grant: %d '%s'", rc, why);
	downs++;
	/* ... a DATAV whose second entry is outside: nothing of it is written. */
	fd = authed(24);
	send_datav(fd, rid, G, (struct nkv_wire_vent[]){ { block_off(3), chunk }, { block_off(5), chunk } }, 2, NULL);
	rc = refused(fd, why, sizeof(why));
	CHECK(rc == -EACCES && strstr(why, "vector entry 1") && strstr(why, "outside its grant"),
	      "vector entry outside the grant: %d '%s'", rc, why);
	downs++;
	/* ... its granted bytes aimed at another region that requires grants. */
	memset(other_mem, 0x5A, pool_len);
	fd = authed(25);
	send_data(fd, other_id, G, block_off(3), chunk, chunk);
	rc = refused(fd, why, sizeof(why));
	CHECK(rc == -EACCES && strstr(why, "has no grant to write region"), "other region: %d '%s'", rc, why);
	downs++;
	for (uint64_t i = 0; i < pool_len; i++)
		if (other_mem[i] != 0x5A) {
			CHECK(0, "other region: byte %llu changed", (unsigned long long)i);
			break;
		}
	/* ... and a checksum list for an id with no grant. */
	fd = authed(26);
	{
		struct nkv_wire_hdr h = raw_hdr(NKV_W_SUMS);
		struct nkv_block_sum_wire { uint32_t block, pad; uint64_t hash; } sum = { 3, 0, 0 };
		h.region = rid;
		h.req_id = 43;
		h.flags = NKV_WF_VERIFY;
		h.len = sizeof(sum);
		h.total = chunk;
		send(fd, &h, sizeof(h), MSG_NOSIGNAL);
		send(fd, &sum, sizeof(sum), MSG_NOSIGNAL);
	}
	rc = refused(fd, why, sizeof(why));
	CHECK(rc == -EACCES && strstr(why, "request 43 has no grant"), "checksums without a grant: %d '%s'", rc, why);
	downs++;

	/* A granted id is held by the first connection that writes under it:
	 * another connection naming it is refused; the holder finishes. */
	h_pause(&rp);
	CHECK(nkv_grant_blocks(rp.e, K, rid, (uint32_t[]){ 12 }, 1) == 0, "grant K: %s", nkv_last_error());
	h_resume(&rp);
	{
		int a = authed(27), b = authed(28);
		struct nkv_wire_hdr h;
		send_data(a, rid, K, block_off(12), chunk, 2 * chunk);
		usleep(100000); /* a's header first */
		send_data(b, rid, K, nkv_layout_chunk_offset(&L, 12, 1, 0), chunk, 2 * chunk);
		rc = refused(b, why, sizeof(why));
		CHECK(rc == -EACCES && strstr(why, "being written by another connection"), "second writer: %d '%s'", rc,
		      why);
		downs++;
		send_data(a, rid, K, nkv_layout_chunk_offset(&L, 12, 1, 0), chunk, 2 * chunk);
		rc = raw_answer(a, &h, why, sizeof(why));
		CHECK(rc == 0 && h.type == NKV_W_ACK && h.req_id == K && h.offset == 0, "holder: %d %u '%s'", rc,
		      h.type, why);
		close(a);
		downs++;
		for (uint32_t layer = 0; layer < 2; layer++) /* the holder's bytes, then the pool as it is now */
			CHECK(pool[nkv_layout_chunk_offset(&L, 12, layer, 0)] == 0xEE, "holder's bytes not placed");
		memcpy(snap, pool, pool_len);
	}
	/* A DATAV whose grant is revoked after its header was accepted, before
	 * its entries came: its bytes are dropped (-ECANCELED) and the
	 * connection goes on, as for a revoke before the header. */
	h_pause(&rp);
	CHECK(nkv_grant_blocks(rp.e, M, rid, (uint32_t[]){ 14 }, 1) == 0, "grant M: %s", nkv_last_error());
	h_resume(&rp);
	fd = authed(29);
	send_datav(fd, rid, M, (struct nkv_wire_vent[]){ { nkv_layout_chunk_offset(&L, 14, 0, 0), chunk },
						     { nkv_layout_chunk_offset(&L, 14, 1, 0), chunk } },
		   2, revoke_m);
	{
		struct nkv_wire_hdr h;
		rc = raw_answer(fd, &h, why, sizeof(why));
		CHECK(rc == 0 && h.type == NKV_W_ACK && h.req_id == M && (int64_t)h.offset == -ECANCELED,
		      "revoked between a DATAV's header and its entries: %d type %u status %lld '%s'", rc, h.type,
		      (long long)(int64_t)h.offset, why);
	}
	send_data(fd, rid, 45, block_off(3), chunk, chunk); /* still up: a forged id after it is refused */
	rc = refused(fd, why, sizeof(why));
	CHECK(rc == -EACCES && strstr(why, "request 45 has no grant"), "after the DATAV revoked mid-way: %d '%s'", rc,
	      why);
	downs++;
	pool_unchanged("hostile peers with the secret");
	CHECK(h_wait(&rp, NKV_EV_CONN_DOWN, downs, 5) == downs, "refused connections not all down");
	CHECK(!recv_reported(G) && !recv_reported(42) && !recv_reported(43),
	      "a refused request was reported (received or dropped)");

	/* An open region still takes any authenticated peer (probes). */
	fd = authed(30);
	send_data(fd, open_id, 77, 0, chunk, chunk);
	{
		struct nkv_wire_hdr h;
		rc = raw_answer(fd, &h, why, sizeof(why));
		CHECK(rc == 0 && h.type == NKV_W_ACK && h.req_id == 77 && h.offset == 0, "open region: %d %u '%s'", rc,
		      h.type, why);
	}
	close(fd);
	CHECK(open_mem[0] == 0xEE && open_mem[chunk - 1] == 0xEE, "open region: bytes not placed");

	/* The granted request from a real engine: lands, and uses the grant up. */
	CHECK(nkv_connect(se, addr, &good) == 0, "connect: %s", nkv_last_error());
	CHECK(nkv_plan_build(&L, &L, gblocks, gblocks, 3, &plan) == 0, "plan: %s", nkv_last_error());
	CHECK(nkv_push(good, &(struct nkv_push){ .req_id = G, .src_region = sid, .dst_region = rid, .plan = plan }) == 0,
	      "push: %s", nkv_last_error());
	CHECK(h_poll_until(se, NKV_EV_PUSH_DONE, 1, 10, got, 8, &ngot) == 1 && got[ngot - 1].status == 0,
	      "granted push failed: %s", ngot ? got[ngot - 1].reason : "(no event)");
	CHECK(h_wait(&rp, NKV_EV_RECV, 5, 5) == 5 && recv_reported(G), "granted request not reported");
	for (uint32_t b = 0; b < NBLOCKS; b++) {
		bool granted = b == 3 || b == 7 || b == 8;
		for (uint32_t layer = 0; layer < L.model.layers; layer++)
			for (uint32_t kv = 0; kv < 2; kv++) {
				uint64_t off = nkv_layout_chunk_offset(&L, b, layer, kv);
				CHECK(!memcmp(pool + off, granted ? src + off : snap + off, chunk),
				      "block %u layer %u kv %u: %s", b, layer, kv, granted ? "not placed" : "changed");
			}
	}
	memcpy(snap, pool, pool_len);
	h_pause(&rp);
	CHECK(nkv_revoke(rp.e, G) == 0, "the grant was not used up by its request");
	h_resume(&rp);
	ngot = 0;
	CHECK(nkv_push(good, &(struct nkv_push){ .req_id = G, .src_region = sid, .dst_region = rid, .plan = plan }) == 0,
	      "second push: %s", nkv_last_error());
	CHECK(h_poll_until(se, NKV_EV_PUSH_DONE, 1, 10, got, 8, &ngot) == 1 && got[ngot - 1].status < 0 &&
	      strstr(got[ngot - 1].reason, "has no grant"), "second push of a used grant: %s",
	      ngot ? got[ngot - 1].reason : "(no event)");
	pool_unchanged("second push of a used grant");

	/* A push whose grant the receiver revoked: dropped, -ECANCELED, and the
	 * same connection then carries a granted push. */
	nkv_conn_close(good);
	CHECK(nkv_connect(se, addr, &good) == 0, "reconnect: %s", nkv_last_error());
	h_pause(&rp);
	CHECK(nkv_grant_blocks(rp.e, H, rid, (uint32_t[]){ 20 }, 1) == 0 && nkv_revoke(rp.e, H) == 1 &&
	      nkv_grant_blocks(rp.e, G + 3, rid, gblocks, 3) == 0, "grants: %s", nkv_last_error());
	h_resume(&rp);
	{
		struct nkv_plan *p20;
		CHECK(nkv_plan_build(&L, &L, (uint32_t[]){ 20 }, (uint32_t[]){ 20 }, 1, &p20) == 0, "plan 20");
		ngot = 0;
		CHECK(nkv_push(good, &(struct nkv_push){ .req_id = H, .src_region = sid, .dst_region = rid, .plan = p20 }) == 0,
		      "push H: %s", nkv_last_error());
		CHECK(h_poll_until(se, NKV_EV_PUSH_DONE, 1, 10, got, 8, &ngot) == 1 && got[ngot - 1].status == -ECANCELED &&
		      strstr(got[ngot - 1].reason, "revoked"), "push of a revoked grant: %d %s",
		      ngot ? got[ngot - 1].status : 0, ngot ? got[ngot - 1].reason : "(no event)");
		pool_unchanged("push of a revoked grant");
		ngot = 0;
		CHECK(nkv_push(good, &(struct nkv_push){ .req_id = G + 3, .src_region = sid, .dst_region = rid,
							 .plan = plan }) == 0, "push G+3: %s", nkv_last_error());
		CHECK(h_poll_until(se, NKV_EV_PUSH_DONE, 1, 10, got, 8, &ngot) == 1 && got[ngot - 1].status == 0,
		      "granted push after a revoked one on the same connection: %s",
		      ngot ? got[ngot - 1].reason : "(no event)");
		nkv_plan_free(p20);
	}

	nkv_plan_free(plan);
	nkv_conn_close(good);
	h_stop(&rp);
	CHECK(nkv_region_set_access(rp.e, rid, NKV_REGION_OPEN) == 0, "back to open");
	nkv_engine_destroy(rp.e);
	nkv_engine_destroy(se);
	free(snap);
	if (fails)
		fprintf(stderr, "%d check(s) failed\n", fails);
	return fails ? 1 : 0;
}
