/* The `netkv` command table (commands.c), for netkv.c and the CLI tests. */
#ifndef NKV_COMMANDS_H
#define NKV_COMMANDS_H

#include "nkv_cli.h"

extern const struct nkv_cli_cmd nkv_commands[];

#endif
