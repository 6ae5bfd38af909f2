/* netkv: one entry point, `netkv <command> [args]`, like git or ip. */
#include "commands.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
	nkv_cli_print_table(f, nkv_commands);
	fprintf(f, "  %-18s %s\n", "version", "print the version");
}

int main(int argc, char **argv)
{
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
		printf("netkv %s\n", NKV_VERSION);
		return 0;
	}
	return nkv_cli_dispatch(nkv_commands, argc, argv);
}
