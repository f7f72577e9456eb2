// libedge_not_pkcs11.so: a loadable library without C_GetFunctionList, for "not a module" tests.
extern "C" __attribute__((visibility("default"))) int edge_not_pkcs11(void) { return 42; }
