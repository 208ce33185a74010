/* dp_http (core/http): addresses refused with a reason, a port in use, and
 * real requests over loopback while the test's own loop drives the server
 * the way the coordinator's does (poll its descriptor, then dp_http_run). */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http.h"

static int calls;

static void handler(void *ctx, const char *path, dp_http_reply_t *out)
{
    (void)ctx;
    calls++;
    if (!strcmp(path, "/hello")) {
        char *b = NULL;
        size_t len = 0, cap = 0;
        for (int i = 0; i < 500; i++) /* past the first buffer: appendf grows */
            cr_assert_eq(dp_http_appendf(&b, &len, &cap, "line %d\n", i), 0);
        out->body = b;
    } else {
        out->status = 404;
        out->body = strdup("no such page\n");
    }
}

Test(http, bad_addresses_named)
{
    dp_http_t *h = (dp_http_t *)1;
    const char *bad[] = {"8080",    "127.0.0.1:", "127.0.0.1:99999", "127.0.0.1:-1",
                         "host:80", ":80",        "1.2.3.4.5:80",    "127.0.0.1:80x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(dp_http_new(bad[i], handler, NULL, &h), DP_ERR_INVALID, "%s", bad[i]);
        cr_assert_null(h);
        cr_assert(strstr(dp_err_detail(), bad[i]), "%s: %s", bad[i], dp_err_detail());
        h = (dp_http_t *)1;
    }
    cr_assert_eq(dp_http_new(NULL, handler, NULL, &h), DP_ERR_INVALID);
}

Test(http, port_in_use)
{
    dp_http_t *a = NULL, *b = NULL;
    cr_assert_eq(dp_http_new("127.0.0.1:0", handler, NULL, &a), DP_OK, "%s", dp_err_detail());
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", dp_http_port(a));
    cr_assert_eq(dp_http_new(addr, handler, NULL, &b), DP_ERR_NETWORK);
    cr_assert(strstr(dp_err_detail(), addr), "%s", dp_err_detail());
    dp_http_destroy(&a);
    cr_assert_null(a);
    dp_http_destroy(&a); /* twice is fine */
}

typedef struct client {
    int port;
    const char *request;
    char reply[16384];
    atomic_int done;
} client_t;

static void *client_main(void *arg)
{
    client_t *c = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    size_t n = 0;
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        write(fd, c->request, strlen(c->request)) == (ssize_t)strlen(c->request)) {
        ssize_t r;
        while (n + 1 < sizeof c->reply && (r = read(fd, c->reply + n, sizeof c->reply - 1 - n)) > 0)
            n += (size_t)r;
    }
    c->reply[n] = '\0';
    if (fd >= 0) close(fd);
    atomic_store(&c->done, 1);
    return NULL;
}

/* One request through a client thread, served by polling here. */
static void request(dp_http_t *h, const char *req, client_t *c)
{
    memset(c, 0, sizeof *c);
    c->port = dp_http_port(h);
    c->request = req;
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, client_main, c), 0);
    for (int i = 0; i < 5000 && !atomic_load(&c->done); i++) {
        struct pollfd p = {dp_http_fd(h), POLLIN, 0};
        long to = dp_http_timeout_ms(h);
        poll(&p, 1, to >= 0 && to < 10 ? (int)to : 10);
        dp_http_run(h);
    }
    pthread_join(t, NULL);
}

Test(http, serves_get_head_404_405)
{
    dp_http_t *h = NULL;
    cr_assert_eq(dp_http_new("127.0.0.1:0", handler, NULL, &h), DP_OK, "%s", dp_err_detail());
    cr_assert_gt(dp_http_port(h), 0);
    static client_t c;
    request(h, "GET /hello?x=1 HTTP/1.0\r\n\r\n", &c);
    cr_assert(!strncmp(c.reply, "HTTP/1.0 200", 12) || !strncmp(c.reply, "HTTP/1.1 200", 12), "%s",
              c.reply);
    cr_assert(strstr(c.reply, "text/plain; charset=utf-8"), "%s", c.reply);
    cr_assert(strstr(c.reply, "\r\n\r\nline 0\nline 1\n"), "%.200s", c.reply);
    cr_assert(strstr(c.reply, "line 499\n"), "the body is cut");
    request(h, "HEAD /hello HTTP/1.0\r\n\r\n", &c);
    cr_assert(strstr(c.reply, " 200 "), "%s", c.reply);
    cr_assert_null(strstr(c.reply, "line 0"), "HEAD has no body");
    request(h, "GET /other HTTP/1.0\r\n\r\n", &c);
    cr_assert(strstr(c.reply, " 404 "), "%s", c.reply);
    cr_assert(strstr(c.reply, "no such page"), "%s", c.reply);
    int before = calls;
    request(h, "DELETE /hello HTTP/1.0\r\n\r\n", &c);
    cr_assert(strstr(c.reply, " 405 "), "%s", c.reply);
    cr_assert(strstr(c.reply, "Allow: GET, HEAD"), "%s", c.reply);
    cr_assert_eq(calls, before, "the handler ran for DELETE");
    dp_http_destroy(&h);
}

Test(http, label_escaped)
{
    char out[16];
    dp_http_label(out, sizeof out, "a\"b\\c\nd");
    cr_assert_str_eq(out, "a\\\"b\\\\c\\nd");
    dp_http_label(out, 6, "\"\"\"\"");
    cr_assert_str_eq(out, "\\\"\\\""); /* two whole escapes fit, never half of one */
}
