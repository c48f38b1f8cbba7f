#ifndef WGMESH_CMNL_SHIM_H
#define WGMESH_CMNL_SHIM_H
#include <libmnl/libmnl.h>
#include <linux/netlink.h>
#include <linux/genetlink.h>
#include <linux/rtnetlink.h>
#include <linux/if_link.h>
#include <linux/if_addr.h>
#include <linux/wireguard.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sched.h>
#include <unistd.h>
#include <fcntl.h>
#include <errno.h>
#include <string.h>

/* libmnl's buffer size is a macro over sysconf; Swift cannot import it. */
static inline size_t cmnl_socket_buffer_size(void) { return MNL_SOCKET_BUFFER_SIZE; }


/* setns(2) and CLONE_NEWNET need _GNU_SOURCE, which the Glibc module was not built with. */
extern int setns(int fd, int nstype);
static inline int cmnl_enter_net_namespace(int fd) { return setns(fd, 0x40000000 /* CLONE_NEWNET */); }
#endif
