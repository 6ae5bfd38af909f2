/*
 * What a command writes besides its results: the command line it was run
 * with (recorded once by dispatch, for the meta of JSON results) and
 * progress that only a terminal sees, so a log or a CI file gets no '\r'
 * redraws.
 */
#include "nkv_cli.h"

#include <stdarg.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

static char cmdline[4096];

void nkv_cli_set_cmdline(int argc, char **argv)
{
	size_t n = 0;

	cmdline[0] = '\0';
	for (int i = 0; i < argc && n + 4 < sizeof(cmdline); i++) {
		const char *a = argv[i];
		/* Quote words a shell would split or expand ('cla*', spaces, empty). */
		bool quote = !*a || strpbrk(a, " \t\n'\"\\$*?[]{}()<>|&;`~#!") != NULL;
		int w;

		if (!quote) {
			w = snprintf(cmdline + n, sizeof(cmdline) - n, "%s%s", i ? " " : "", a);
		} else {
			w = snprintf(cmdline + n, sizeof(cmdline) - n, "%s'", i ? " " : "");
			for (const char *p = a; *p && w > 0 && n + (size_t)w + 5 < sizeof(cmdline); p++)
				w += *p == '\'' ? snprintf(cmdline + n + w, sizeof(cmdline) - n - w, "'\\''")
						: snprintf(cmdline + n + w, sizeof(cmdline) - n - w, "%c", *p);
			if (w > 0 && n + (size_t)w + 1 < sizeof(cmdline))
				w += snprintf(cmdline + n + w, sizeof(cmdline) - n - w, "'");
		}
		if (w < 0 || n + (size_t)w >= sizeof(cmdline))
			break; /* truncated: what fit is still the start of the line */
		n += (size_t)w;
	}
}

const char *nkv_cli_cmdline(void)
{
	return cmdline;
}

int nkv_cli_progress_on(void)
{
	static int on = -1;

	if (on < 0)
		on = isatty(STDERR_FILENO) == 1;
	return on;
}

static bool drawn;

void nkv_cli_progress(const char *fmt, ...)
{
	va_list ap;

	if (!nkv_cli_progress_on())
		return;
	fputc('\r', stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\033[K", stderr); /* erase what a longer line left */
	fflush(stderr);
	drawn = true;
}

void nkv_cli_progress_end(void)
{
	if (!drawn)
		return;
	fputs("\r\033[K", stderr);
	fflush(stderr);
	drawn = false;
}
