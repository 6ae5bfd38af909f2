#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "nkv_util.h"

static void sizes(void **state)
{
	uint64_t v;
	assert_int_equal(nkv_parse_size("4096", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(nkv_parse_size("64K", &v), 0);
	assert_int_equal(v, 65536);
	assert_int_equal(nkv_parse_size("1M", &v), 0);
	assert_int_equal(v, 1 << 20);
	assert_int_equal(nkv_parse_size("-1", &v), -EINVAL);
	assert_non_null(strstr(nkv_last_error(), "'-1'"));
	assert_int_equal(nkv_parse_size("12Q", &v), -EINVAL);
	assert_int_equal(nkv_parse_size("", &v), -EINVAL);
	assert_int_equal(nkv_parse_size("99999999999999999T", &v), -ERANGE);
}

static void integers(void **state)
{
	uint32_t u;
	assert_int_equal(nkv_parse_u32("4294967295", &u), 0);
	assert_int_equal(u, UINT32_MAX);
	assert_int_equal(nkv_parse_u32("4294967296", &u), -ERANGE);
	assert_int_equal(nkv_parse_u32("12abc", &u), -EINVAL);
	assert_int_equal(nkv_parse_u32(" 1", &u), -EINVAL);
}

static void hostport(void **state)
{
	char h[64];
	uint16_t p;
	assert_int_equal(nkv_parse_hostport("127.0.0.1:7000", h, sizeof(h), &p), 0);
	assert_string_equal(h, "127.0.0.1");
	assert_int_equal(p, 7000);
	assert_int_equal(nkv_parse_hostport("[::1]:80", h, sizeof(h), &p), 0);
	assert_string_equal(h, "::1");
	assert_int_equal(nkv_parse_hostport("host", h, sizeof(h), &p), -EINVAL);
	assert_int_equal(nkv_parse_hostport("host:70000", h, sizeof(h), &p), -EINVAL);
	assert_int_equal(nkv_parse_hostport(":80", h, sizeof(h), &p), -EINVAL);
}

static void error_wrap(void **state)
{
	assert_int_equal(nkv_err(ENOENT, "file %s missing", "x"), -ENOENT);
	assert_int_equal(nkv_err_wrap(ENOENT, "loading topo"), -ENOENT);
	assert_string_equal(nkv_last_error(), "loading topo: file x missing");
	/* input quoted in a message cannot move the cursor or split the line */
	nkv_err(EINVAL, "bad token '%s'", "\x1b[2J\r\nx\x7f");
	assert_string_equal(nkv_last_error(), "bad token '?[2J??x?'");
	nkv_err_wrap(EINVAL, "line\t2");
	assert_string_equal(nkv_last_error(), "line?2: bad token '?[2J??x?'");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(sizes),
		cmocka_unit_test(integers),
		cmocka_unit_test(hostport),
		cmocka_unit_test(error_wrap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
