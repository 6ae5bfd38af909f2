/*
 * Replays files (or every file of directories) through LLVMFuzzerTestOneInput:
 * linked with a fuzz entry by nkv_add_fuzz() into the ctest that keeps a seed
 * corpus passing under any compiler. A crash, a sanitizer report or the
 * entry's own abort() fails the test.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Corpus files are small; a bigger one is a mistake, not something to truncate. */
#define MAX_CORPUS_FILE (8u << 20)

static int replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long n;

	if (!f) {
		fprintf(stderr, "replay: cannot open %s\n", path);
		return 1;
	}
	if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || n > (long)MAX_CORPUS_FILE || fseek(f, 0, SEEK_SET)) {
		fprintf(stderr, "replay: %s: unreadable or larger than %u bytes\n", path, MAX_CORPUS_FILE);
		fclose(f);
		return 1;
	}
	/* Exactly n bytes (one more so malloc(0) is never asked): ASan sees any overread. */
	buf = malloc((size_t)n + 1);
	if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		fprintf(stderr, "replay: %s: read failed\n", path);
		free(buf);
		fclose(f);
		return 1;
	}
	fclose(f);
	LLVMFuzzerTestOneInput(buf, (size_t)n);
	/* and prefix-truncations of it: cheap coverage of broken files */
	for (size_t cut = 0; cut < (size_t)n; cut += (size_t)n / 16 + 1) {
		uint8_t *p = malloc(cut + 1);

		if (!p)
			break;
		memcpy(p, buf, cut);
		LLVMFuzzerTestOneInput(p, cut);
		free(p);
	}
	free(buf);
	return 0;
}

int main(int argc, char **argv)
{
	int files = 0, rc = 0;

	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st)) {
			fprintf(stderr, "replay: %s: not found\n", argv[i]);
			return 1;
		}
		if (!S_ISDIR(st.st_mode)) {
			rc |= replay_file(argv[i]);
			files++;
			continue;
		}
		DIR *d = opendir(argv[i]);
		struct dirent *e;
		while (d && (e = readdir(d))) {
			char p[4096];
			if (e->d_name[0] == '.')
				continue;
			snprintf(p, sizeof(p), "%s/%s", argv[i], e->d_name);
			rc |= replay_file(p);
			files++;
		}
		if (d)
			closedir(d);
	}
	printf("replayed %d files\n", files);
	return rc || files == 0;
}
