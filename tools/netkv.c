/* netkv: one entry point, `netkv <command> [args]`, like git or ip. */
#include "netkv_commands.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
	fprintf(f, "usage: netkv <command> [options]   (netkv <command> --help for details)\n\ncommands:\n");
	for (const struct nkv_command *c = nkv_commands; c->name; c++)
		fprintf(f, "  %-18s %s\n", c->name, c->summary);
	fprintf(f, "  %-18s %s\n", "version", "print the version");
}

/* "bench transfer" matches argv[1]="bench", argv[2]="transfer". */
static int matches(const char *name, int argc, char **argv, int *words)
{
	const char *sp = strchr(name, ' ');

	if (!sp) {
		*words = 1;
		return strcmp(name, argv[1]) == 0;
	}
	*words = 2;
	return argc > 2 && strlen(argv[1]) == (size_t)(sp - name) &&
	       strncmp(name, argv[1], (size_t)(sp - name)) == 0 && strcmp(sp + 1, argv[2]) == 0;
}

int main(int argc, char **argv)
{
	int words, prefix = 0;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
		printf("netkv %s\n", NKV_VERSION);
		return 0;
	}
	for (const struct nkv_command *c = nkv_commands; c->name; c++) {
		if (matches(c->name, argc, argv, &words)) {
			char *name = (char *)c->name;
			/* Hand the command an argv whose [0] is its own full name. */
			argv[words] = name;
			return c->run(argc - words, argv + words);
		}
		if (strchr(c->name, ' ') && !strncmp(c->name, argv[1], strlen(argv[1])) &&
		    c->name[strlen(argv[1])] == ' ')
			prefix = 1;
	}
	if (prefix) {
		fprintf(stderr, "netkv %s: needs a subcommand:\n", argv[1]);
		for (const struct nkv_command *c = nkv_commands; c->name; c++)
			if (!strncmp(c->name, argv[1], strlen(argv[1])) && c->name[strlen(argv[1])] == ' ')
				fprintf(stderr, "  netkv %-16s %s\n", c->name, c->summary);
		return 2;
	}
	fprintf(stderr, "netkv: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return 2;
}
