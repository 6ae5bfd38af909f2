/*
 * The "meta" of JSON results (nkv_json_out.h): enough to trace an archived
 * result back to the build, machine, time and command that made it.
 */
#include "nkv_json_out.h"
#include "nkv_cli.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#ifndef NKV_VERSION
#define NKV_VERSION "unknown"
#endif

json_t *nkv_json_meta(void)
{
	char host[256] = "", kernel[2 * 65 + 2] = "", when[32] = "";
	struct utsname u;
	struct tm tm;
	time_t now = time(NULL);

	if (gethostname(host, sizeof(host) - 1))
		host[0] = '\0';
	if (!uname(&u))
		snprintf(kernel, sizeof(kernel), "%s %s", u.sysname, u.release);
	if (gmtime_r(&now, &tm))
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return json_pack("{s:s, s:s, s:s, s:s, s:s}", "netkv_version", NKV_VERSION, "host", host, "kernel", kernel,
			 "time", when, "command_line", nkv_cli_cmdline());
}

json_t *nkv_json_with_meta(json_t *result)
{
	json_t *o = json_object();

	json_object_set_new(o, "meta", nkv_json_meta());
	if (json_is_object(result))
		json_object_update(o, result);
	else if (result)
		json_object_set(o, "results", result);
	json_decref(result);
	return o;
}

int nkv_json_print(FILE *f, json_t *result)
{
	json_t *o = nkv_json_with_meta(result);
	int rc = json_dumpf(o, f, NKV_JSON_FLAGS);

	json_decref(o);
	if (rc || fputc('\n', f) == EOF || fflush(f))
		return -EIO;
	return 0;
}
