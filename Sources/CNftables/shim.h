#ifndef WGMESH_CNFTABLES_SHIM_H
#define WGMESH_CNFTABLES_SHIM_H
#include <stdint.h>
#include <stdio.h>
#include <nftables/libnftables.h>
#endif
