#include <stdio.h>
#include "sim_cli.h"
int nkv_sim_experiment(int argc, char **argv) { fprintf(stderr, "netkv sim experiment: not built yet\n"); return 1; }
int nkv_sim_tune_cmd(int argc, char **argv) { fprintf(stderr, "netkv sim tune: not built yet\n"); return 1; }
