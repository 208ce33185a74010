/* Campaign files for the client (client.h): binary or text format, the
 * latter encoded by protoc as a child process (stdin the file, stdout the
 * encoding, stderr its complaint), and relative file:// URIs made absolute
 * against the file's directory, since the store refuses relative ones and
 * the coordinator and workers run elsewhere. */
#include "client.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "campaign/campaign.h"
#include "wire/envelope.h"

#ifndef DP_PROTO_INSTALL_DIR
#define DP_PROTO_INSTALL_DIR "/usr/local/share/deepperform/proto"
#endif
#ifndef DP_SOURCE_DIR
#define DP_SOURCE_DIR "."
#endif

#define CAMPAIGN_FILE_MAX DP_WIRE_MAX_MESSAGE /* bytes of a campaign file or its encoding */
#define PROTO_FILE        "dp/v1/campaign.proto"
#define PROTO_TYPE        "dp.v1.Campaign"
#define ERR_MAX           2048 /* bytes of protoc's complaint kept */

extern char **environ;

void dp_client_load_opts_init(dp_client_load_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->text = -1;
}

static int holds_proto(const char *dir)
{
    char p[PATH_MAX];
    struct stat st;
    if ((size_t)snprintf(p, sizeof p, "%s/%s", dir, PROTO_FILE) >= sizeof p) return 0;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

dp_err_t dp_client_proto_dir(const char *want, char *buf, size_t size)
{
    if (want && *want) {
        if (!holds_proto(want))
            return dp_err_set(DP_ERR_NOTFOUND, "the proto directory %s has no %s", want,
                              PROTO_FILE);
        snprintf(buf, size, "%s", want);
        return DP_OK;
    }
    const char *cand[] = {DP_PROTO_INSTALL_DIR, DP_SOURCE_DIR "/proto"};
    for (size_t i = 0; i < sizeof cand / sizeof *cand; i++)
        if (holds_proto(cand[i])) {
            snprintf(buf, size, "%s", cand[i]);
            return DP_OK;
        }
    return dp_err_set(DP_ERR_UNSUPPORTED,
                      "cannot encode a text campaign: no %s in %s or %s (name the directory "
                      "holding it, or encode the campaign with protoc --encode=%s yourself)",
                      PROTO_FILE, cand[0], cand[1], PROTO_TYPE);
}

/* Reads a whole regular file of at most CAMPAIGN_FILE_MAX bytes. */
static dp_err_t read_file(const char *path, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dp_err_set(errno == ENOENT ? DP_ERR_NOTFOUND : DP_ERR_IO, "%s: %s", path,
                          errno == ENOENT ? "no such file" : strerror(errno));
    struct stat st;
    dp_err_t err = DP_OK;
    uint8_t *b = NULL;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        err = dp_err_set(DP_ERR_IO, "%s: not a regular file", path);
        goto done;
    }
    if ((uint64_t)st.st_size > CAMPAIGN_FILE_MAX) {
        err = dp_err_set(DP_ERR_RANGE, "%s: %lld bytes, more than a campaign may have (%u)", path,
                         (long long)st.st_size, CAMPAIGN_FILE_MAX);
        goto done;
    }
    if (!(b = malloc((size_t)st.st_size + 1))) {
        err = dp_err_set(DP_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    size_t n = 0;
    while (n < (size_t)st.st_size) {
        const ssize_t r = read(fd, b + n, (size_t)st.st_size - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            err = dp_err_set(DP_ERR_IO, "%s: %s", path, strerror(errno));
            goto done;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    *out = b;
    *len = n;
    b = NULL;
done:
    free(b);
    close(fd);
    return err;
}

/* protoc's stderr as one line: "input:L:C: ..." becomes "PATH:L:C: ...",
 * and its "Failed to parse input." goes. */
static void complaint(const char *path, const char *raw, char *buf, size_t size)
{
    size_t k = 0;
    buf[0] = '\0';
    for (const char *line = raw; *line && k + 1 < size;) {
        const char *end = strchr(line, '\n');
        const size_t n = end ? (size_t)(end - line) : strlen(line);
        if (n && strncmp(line, "Failed to parse input.", n)) {
            const int input = n > 6 && !strncmp(line, "input:", 6);
            k += (size_t)snprintf(buf + k, size - k, "%s%s%s%.*s", k ? "; " : "", input ? path : "",
                                  input ? ":" : "", (int)(n - (input ? 6 : 0)),
                                  line + (input ? 6 : 0));
        }
        if (!end) break;
        line = end + 1;
    }
    if (!buf[0]) snprintf(buf, size, "%s: protoc could not encode it", path);
}

/* Runs protoc --encode on the text file path: its stdout into *out. */
static dp_err_t encode_text(const char *path, const dp_client_load_opts_t *o, uint8_t **out,
                            size_t *len)
{
    *out = NULL;
    *len = 0;
    char dir[PATH_MAX];
    dp_err_t err = dp_client_proto_dir(o->proto_dir, dir, sizeof dir);
    if (err) return err;
    /* the file first: a missing campaign is that, not a protoc problem */
    const int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return dp_err_set(errno == ENOENT ? DP_ERR_NOTFOUND : DP_ERR_IO, "%s: %s", path,
                          errno == ENOENT ? "no such file" : strerror(errno));
    const char *protoc = o->protoc && *o->protoc ? o->protoc : "protoc";
    int po[2] = {-1, -1}, pe[2] = {-1, -1};
    uint8_t *b = NULL;
    char *e = NULL;
    size_t nb = 0, ne = 0, capb = 0;
    pid_t pid = -1;
    posix_spawn_file_actions_t fa;
    int fa_ok = 0;
    if (pipe(po) || pipe(pe)) {
        err = dp_err_set(DP_ERR_IO, "pipe: %s", strerror(errno));
        goto done;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(po[i], F_SETFD, FD_CLOEXEC);
        fcntl(pe[i], F_SETFD, FD_CLOEXEC);
    }
    if (posix_spawn_file_actions_init(&fa)) {
        err = dp_err_set(DP_ERR_NOMEM, "posix_spawn: out of memory");
        goto done;
    }
    fa_ok = 1;
    posix_spawn_file_actions_adddup2(&fa, in, 0);
    posix_spawn_file_actions_adddup2(&fa, po[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
    char enc[] = "--encode=" PROTO_TYPE, inc[] = "-I", file[] = PROTO_FILE;
    char *argv[] = {(char *)protoc, enc, inc, dir, file, NULL};
    int rc = posix_spawnp(&pid, protoc, &fa, NULL, argv, environ);
    if (rc) {
        pid = -1;
        if (rc == ENOENT)
            err = dp_err_set(DP_ERR_UNSUPPORTED,
                             "protoc not found: install protobuf-compiler, or encode the campaign "
                             "with protoc --encode=%s -I %s %s < %s > CAMPAIGN.pb yourself",
                             PROTO_TYPE, dir, PROTO_FILE, path);
        else
            err = dp_err_set(DP_ERR_IO, "cannot run %s: %s", protoc, strerror(rc));
        goto done;
    }
    close(po[1]);
    close(pe[1]);
    po[1] = pe[1] = -1;
    if (!(e = malloc(ERR_MAX + 1))) {
        err = dp_err_set(DP_ERR_NOMEM, "out of memory");
        goto done;
    }
    struct pollfd pf[2] = {{.fd = po[0], .events = POLLIN}, {.fd = pe[0], .events = POLLIN}};
    while (pf[0].fd >= 0 || pf[1].fd >= 0) {
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR) continue;
            err = dp_err_set(DP_ERR_IO, "poll: %s", strerror(errno));
            goto done;
        }
        if (pf[0].revents) {
            if (nb == capb) {
                const size_t cap = capb ? capb * 2 : 4096;
                uint8_t *nbuf = cap <= CAMPAIGN_FILE_MAX ? realloc(b, cap) : NULL;
                if (!nbuf) {
                    err = dp_err_set(DP_ERR_RANGE, "%s: its encoding is larger than %u bytes", path,
                                     CAMPAIGN_FILE_MAX);
                    goto done;
                }
                b = nbuf, capb = cap;
            }
            const ssize_t r = read(po[0], b + nb, capb - nb);
            if (r > 0) nb += (size_t)r;
            if (r == 0 || (r < 0 && errno != EINTR)) pf[0].fd = -1;
        }
        if (pf[1].revents) {
            char tmp[512];
            const ssize_t r = read(pe[0], tmp, sizeof tmp);
            if (r > 0) {
                const size_t keep = ERR_MAX - ne < (size_t)r ? ERR_MAX - ne : (size_t)r;
                memcpy(e + ne, tmp, keep);
                ne += keep;
            }
            if (r == 0 || (r < 0 && errno != EINTR)) pf[1].fd = -1;
        }
    }
    e[ne] = '\0';
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    pid = -1;
    if (!WIFEXITED(st) || WEXITSTATUS(st)) {
        char why[ERR_MAX + PATH_MAX];
        complaint(path, e, why, sizeof why);
        err = dp_err_set(DP_ERR_FORMAT, "%s", why);
        goto done;
    }
    *out = b;
    *len = nb;
    b = NULL;
done:
    if (pid > 0) {
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
        }
    }
    if (fa_ok) posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; i < 2; i++) {
        if (po[i] >= 0) close(po[i]);
        if (pe[i] >= 0) close(pe[i]);
    }
    close(in);
    free(b);
    free(e);
    return err;
}

static int is_text_name(const char *path)
{
    static const char *ext[] = {".txtpb", ".textproto", ".txt", ".pbtxt", ".textpb"};
    const size_t n = strlen(path);
    for (size_t i = 0; i < sizeof ext / sizeof *ext; i++) {
        const size_t k = strlen(ext[i]);
        if (n > k && !strcmp(path + n - k, ext[i])) return 1;
    }
    return 0;
}

/* One URI field: replaced by its absolute form when it is a relative file://. */
static dp_err_t resolve_one(char **uri, const char *field, const char *dir, dp_client_uri_fn fn,
                            void *arg)
{
    const char *u = *uri;
    if (!u || strncmp(u, "file://", 7) || u[7] == '/' || !u[7]) return DP_OK;
    const char *rest = u + 7;
    while (rest[0] == '.' && rest[1] == '/') {
        rest += 2;
        while (*rest == '/') rest++;
    }
    const int dot = !strcmp(rest, ".");
    const size_t n = 7 + strlen(dir) + 1 + strlen(rest) + 1;
    if (n > PATH_MAX + 8)
        return dp_err_set(DP_ERR_RANGE, "campaign: %s '%s' made absolute against %s is too long",
                          field, u, dir);
    char *abs = malloc(n);
    if (!abs) return dp_err_set(DP_ERR_NOMEM, "out of memory");
    if (dot || !*rest)
        snprintf(abs, n, "file://%s", dir);
    else
        snprintf(abs, n, "file://%s/%s", dir, rest);
    if (fn) fn(arg, field, u, abs);
    if (*uri != protobuf_c_empty_string) free(*uri);
    *uri = abs;
    return DP_OK;
}

dp_err_t dp_client_campaign_resolve(Dp__V1__Campaign *c, const char *dir, dp_client_uri_fn fn,
                                    void *arg)
{
    char f[96];
    dp_err_t err = resolve_one(&c->store_uri, "store_uri", dir, fn, arg);
    for (size_t i = 0; !err && i < c->n_models; i++) {
        Dp__V1__Model *m = c->models[i];
        snprintf(f, sizeof f, "models[%zu].spec_uri", i);
        if (!(err = resolve_one(&m->spec_uri, f, dir, fn, arg))) {
            snprintf(f, sizeof f, "models[%zu].weights_uri", i);
            err = resolve_one(&m->weights_uri, f, dir, fn, arg);
        }
    }
    for (size_t i = 0; !err && i < c->n_datasets; i++) {
        Dp__V1__Dataset *d = c->datasets[i];
        char **u[4] = {&d->train_images_uri, &d->train_labels_uri, &d->test_images_uri,
                       &d->test_labels_uri};
        static const char *nm[4] = {"train_images_uri", "train_labels_uri", "test_images_uri",
                                    "test_labels_uri"};
        for (int k = 0; !err && k < 4; k++) {
            snprintf(f, sizeof f, "datasets[%zu].%s", i, nm[k]);
            err = resolve_one(u[k], f, dir, fn, arg);
        }
    }
    return err;
}

/* The absolute directory of path, into buf. */
static dp_err_t dir_of(const char *path, char *buf, size_t size)
{
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s", path) >= sizeof tmp)
        return dp_err_set(DP_ERR_RANGE, "%s: path too long", path);
    char *slash = strrchr(tmp, '/');
    if (!slash)
        snprintf(tmp, sizeof tmp, ".");
    else if (slash == tmp)
        tmp[1] = '\0';
    else
        *slash = '\0';
    char *abs = realpath(tmp, NULL);
    if (!abs) return dp_err_set(DP_ERR_IO, "%s: %s", tmp, strerror(errno));
    const int fits = (size_t)snprintf(buf, size, "%s", abs) < size;
    free(abs);
    return fits ? DP_OK : dp_err_set(DP_ERR_RANGE, "%s: path too long", path);
}

dp_err_t dp_client_campaign_load(const char *path, const dp_client_load_opts_t *o,
                                 Dp__V1__Campaign **out)
{
    *out = NULL;
    dp_client_load_opts_t def;
    if (!o) {
        dp_client_load_opts_init(&def);
        o = &def;
    }
    const int text = o->text >= 0 ? o->text : is_text_name(path);
    uint8_t *buf = NULL;
    size_t len = 0;
    Dp__V1__Campaign *c = NULL;
    char dir[PATH_MAX];
    dp_err_t err = text ? encode_text(path, o, &buf, &len) : read_file(path, &buf, &len);
    if (err) return err;
    if (!len) {
        err = dp_err_set(DP_ERR_FORMAT, "%s: empty: not a campaign", path);
        goto done;
    }
    if ((err = campaign_decode(buf, len, path, &c))) goto done;
    if ((err = dir_of(path, dir, sizeof dir))) goto done;
    if ((err = dp_client_campaign_resolve(c, dir, o->on_uri, o->uri_arg))) goto done;
    if ((err = campaign_validate(c))) {
        char d[1024];
        snprintf(d, sizeof d, "%s", dp_err_detail());
        err = dp_err_set(err, "%s: %s", path, d);
        goto done;
    }
    *out = c;
    c = NULL;
done:
    campaign_free(&c);
    free(buf);
    return err;
}
