#ifndef WGMESH_CSPAWN_H
#define WGMESH_CSPAWN_H
#include <spawn.h>

/* posix_spawn_file_actions_addclosefrom_np (glibc 2.34), which needs _GNU_SOURCE: the child gets
   only the file descriptors below `from`. */
int wgmesh_spawn_close_from(posix_spawn_file_actions_t *actions, int from);
#endif
