/* Tenant traffic on the emulated fabric (tenant_flows.c), for `netkv demo --tenant`. */
#ifndef NKV_TENANT_FLOWS_H
#define NKV_TENANT_FLOWS_H

#define NKV_TENANT_PORT 5301

/* One switch's tenant endpoint, run in its namespace (forked by the demo):
 * argv = tenant SELF_IP PEER_IP UTIL ON_S SEED MAX_S RESULT. Returns the exit status. */
int nkv__tenant_flow_main(int argc, char **argv);

#endif
