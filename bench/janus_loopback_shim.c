/* For bench/janus.py only: lets Janus gather ICE candidates on 127.0.0.1.
 *
 * Janus leaves out every interface flagged IFF_LOOPBACK when it gathers host candidates, and
 * has no setting to keep them; the benchmark may only ever send to 127.0.0.0/8. Preloaded into
 * the Janus process (LD_PRELOAD), this getifaddrs() calls the real one and clears IFF_LOOPBACK
 * on IPv4 addresses in 127.0.0.0/8, so that ice_enforce_list = "127.0.0.1" finds its address.
 * Nothing else changes: other addresses, and the kernel's routing, are left as they are.
 *
 * Built at benchmark time: gcc -shared -fPIC -O2 -o shim.so janus_loopback_shim.c -ldl
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/socket.h>

int getifaddrs(struct ifaddrs **list)
{
    static int (*real_getifaddrs)(struct ifaddrs **);
    if (real_getifaddrs == NULL)
        real_getifaddrs = (int (*)(struct ifaddrs **))dlsym(RTLD_NEXT, "getifaddrs");
    if (real_getifaddrs == NULL)
        return -1;
    int result = real_getifaddrs(list);
    if (result != 0)
        return result;
    for (struct ifaddrs *entry = *list; entry != NULL; entry = entry->ifa_next) {
        if (entry->ifa_addr == NULL || entry->ifa_addr->sa_family != AF_INET)
            continue;
        const struct sockaddr_in *address = (const struct sockaddr_in *)entry->ifa_addr;
        if ((ntohl(address->sin_addr.s_addr) >> 24) == 127)
            entry->ifa_flags &= ~IFF_LOOPBACK;
    }
    return 0;
}
