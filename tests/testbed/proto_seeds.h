/* Valid control messages of every type: the seed corpus shared by the gcc
 * replay test and the libFuzzer target. */
#ifndef PROTO_SEEDS_H
#define PROTO_SEEDS_H

#include <string.h>

#include "netkv_proto.h"

static inline void seed_msg(int type, struct nkv_msg *m)
{
	static const uint64_t ids[] = { 0, 14, 15, 16, 17 };
	static const uint32_t blocks[] = { 7, 8, 9 };
	nkv_msg_init(m, (enum nkv_msg_type)type);
	switch (type) {
	case NKV_MSG_REGISTER:
		m->role = NKV_ROLE_DECODE;
		strcpy(m->token, "secret");
		strcpy(m->name, "h0g1");
		strcpy(m->addr, "127.0.0.1:4000");
		m->kv_blocks = 64;
		m->block_tokens = 512;
		m->kv_bpt = 512;
		nkv_msg_set_text(m, "tcp (io_uring), streams 1; pool host; 16-token pages, layer-major");
		break;
	case NKV_MSG_REGISTER_OK: m->agent_id = 3; break;
	case NKV_MSG_ERROR: m->code = 22; nkv_msg_set_text(m, "bad token"); break;
	case NKV_MSG_HEARTBEAT:
		m->running = 2; m->queued = 1; m->running_tokens = 9000; m->queued_tokens = 100;
		m->kv_used = 10; m->kv_total = 64; m->nadd = 3;
		nkv_msg_set_ids(m, ids, 5);
		break;
	case NKV_MSG_SUBMIT:
	case NKV_MSG_DECODE_TASK:
	case NKV_MSG_PREFILL_TASK:
		m->req = 42; m->input_len = 2100; m->output_len = 100;
		nkv_msg_set_ids(m, ids, 5);
		if (type == NKV_MSG_PREFILL_TASK) {
			m->peer = 2;
			strcpy(m->addr, "127.0.0.1:4001");
		}
		break;
	case NKV_MSG_BLOCKS: m->req = 42; m->first = 2; nkv_msg_set_blocks(m, blocks, 3); break;
	case NKV_MSG_PREFILL_DONE: m->req = 42; m->first = 1; m->t[0] = 1.5; m->t[1] = 1.75; break;
	case NKV_MSG_XFER_DONE:
		m->req = 42; m->peer = 2; m->bytes = 1 << 20; m->t[0] = 0.01; m->t[1] = 1.8;
		nkv_msg_set_text(m, "");
		break;
	case NKV_MSG_TOKENS:
		m->req = 42; m->ntokens = 100; m->blocks_ok = 3;
		for (int i = 0; i < 6; i++) m->t[i] = 2.0 + i;
		break;
	case NKV_MSG_PROBE: m->req = 1; m->peer = 2; strcpy(m->addr, "127.0.0.1:4001"); m->bytes = 4 << 20; break;
	case NKV_MSG_PROBE_RESULT: m->req = 1; m->peer = 2; m->bytes = 4 << 20; m->t[0] = 0.002; break;
	case NKV_MSG_RECORD:
		m->req = 42; m->status = -110; m->peer = 2; m->agent_id = 1; m->tier = 1; m->ntokens = 100;
		m->bytes = 1 << 20;
		for (int i = 0; i < NKV_REC_T; i++) m->t[i] = 1.0 + i;
		nkv_msg_set_text(m, "decode agent h0g1 lost");
		break;
	case NKV_MSG_STATUS_REQ: break;
	case NKV_MSG_CANCEL: m->req = 42; m->status = -104; nkv_msg_set_text(m, "decode agent h1g0 lost"); break;
	case NKV_MSG_STATUS: nkv_msg_set_text(m, "{\"agents\": 3}"); break;
	}
}

#endif
