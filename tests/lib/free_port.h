/* A TCP port free on 127.0.0.1 for a server a test starts and later starts
 * again on the same port. Chosen below the kernel's ephemeral range where it
 * leaves room: a port inside it (what binding port 0 gives) can be taken by
 * any outgoing connection while the server is down, and then the server's
 * bind fails with EADDRINUSE. tests/lib/free-port.py is the shell tests'
 * twin. */
#ifndef DP_TESTS_FREE_PORT_H
#define DP_TESTS_FREE_PORT_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* binds 127.0.0.1:port (0: any); returns the port bound, or -1 */
static int free_port_try(int port)
{
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int got = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        got = ntohs(a.sin_port);
    close(fd);
    return got;
}

static int free_port(void)
{
    enum { LOW = 10000 }; /* below: well-known and registered services */
    int top = 0;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f) {
        if (fscanf(f, "%d", &top) != 1) top = 0;
        fclose(f);
    }
    if (top - LOW >= 1000) {
        unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid() << 8;
        for (int i = 0; i < 200; i++) {
            const int p = free_port_try(LOW + (int)(rand_r(&seed) % (unsigned)(top - LOW)));
            if (p > 0) return p;
        }
    }
    return free_port_try(0);
}

#endif
