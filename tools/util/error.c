#include "nkv_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char errbuf[NKV_ERRSTR_MAX];

void nkv_str_printable(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = '?';
}

int nkv_err(int err, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
	va_end(ap);
	/* Messages quote input (a field, jansson's token): keep them one plain line. */
	nkv_str_printable(errbuf);
	return err > 0 ? -err : err;
}

int nkv_err_wrap(int err, const char *fmt, ...)
{
	char old[NKV_ERRSTR_MAX];
	va_list ap;
	int n;

	memcpy(old, errbuf, sizeof(old));
	if (!old[0])
		snprintf(old, sizeof(old), "%s", strerror(err > 0 ? err : -err));
	va_start(ap, fmt);
	n = vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
	va_end(ap);
	/* Append ": old" to whatever of the prefix fit; truncation is fine. */
	if (n >= 0 && (size_t)n < sizeof(errbuf) - 2) {
		size_t room = sizeof(errbuf) - (size_t)n;
		errbuf[n] = ':';
		errbuf[n + 1] = ' ';
		memcpy(errbuf + n + 2, old, room - 2);
		errbuf[sizeof(errbuf) - 1] = '\0';
	}
	nkv_str_printable(errbuf);
	return err > 0 ? -err : err;
}

const char *nkv_last_error(void)
{
	return errbuf[0] ? errbuf : "no error recorded";
}

void nkv_clear_error(void)
{
	errbuf[0] = '\0';
}
