/* Envelopes over ZeroMQ, CURVE key files and the ZAP handler. libzmq's
 * errno values are translated here, once, into dp_err_t with the endpoint or
 * file in the detail. */
#include "wire/sock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "util/log.h"
#include "wire/envelope.h"

#define LOG_COMP      "wire"
#define KEY_FILE_MAX  (64u << 10) /* bytes of a key file */
#define AUTH_FILE_MAX (64u << 20) /* bytes of an authorized-keys file */
#define ZAP_FRAMES    8

void dp_wire_sock_opts_init(dp_wire_sock_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->linger_ms = -1;
}

static dp_err_t zmq_fail(const char *what, const char *where)
{
    const int e = errno;
    dp_err_t err = e == EINVAL || e == EPROTONOSUPPORT || e == ENOCOMPATPROTO ? DP_ERR_INVALID
                   : e == ETERM || e == ENOTSOCK                              ? DP_ERR_CLOSED
                   : e == ENOMEM                                              ? DP_ERR_NOMEM
                                                                              : DP_ERR_NETWORK;
    return dp_err_set(err, "%s %s: %s", what, where ? where : "", zmq_strerror(e));
}

static dp_err_t set_int(void *s, int opt, int v, const char *name)
{
    if (zmq_setsockopt(s, opt, &v, sizeof v)) return zmq_fail("zmq_setsockopt", name);
    return DP_OK;
}

static dp_err_t set_str(void *s, int opt, const char *v, const char *name)
{
    /* Z85 keys go with their NUL (41 bytes), other strings without */
    const int key =
        opt == ZMQ_CURVE_SECRETKEY || opt == ZMQ_CURVE_PUBLICKEY || opt == ZMQ_CURVE_SERVERKEY;
    if (zmq_setsockopt(s, opt, v, strlen(v) + (key ? 1 : 0)))
        return zmq_fail("zmq_setsockopt", name);
    return DP_OK;
}

/* 1 when ctx has a ZAP handler bound: binding its endpoint fails then. */
static int zap_present(void *ctx)
{
    void *probe = zmq_socket(ctx, ZMQ_REP);
    if (!probe) return 0;
    const int bound = zmq_bind(probe, DP_WIRE_ZAP_ENDPOINT) == 0;
    const int e = errno;
    zmq_close(probe);
    return !bound && e == EADDRINUSE;
}

dp_err_t dp_wire_socket(void *ctx, int type, const dp_wire_sock_opts_t *o, void **out)
{
    dp_wire_sock_opts_t def;
    if (!o) {
        dp_wire_sock_opts_init(&def);
        o = &def;
    }
    *out = NULL;
    if (type != ZMQ_ROUTER && type != ZMQ_DEALER)
        return dp_err_set(DP_ERR_INVALID, "wire: socket type %d is not ROUTER or DEALER", type);
    if ((o->curve_server || o->curve_client) && !zmq_has("curve"))
        return dp_err_set(DP_ERR_UNSUPPORTED, "wire: this libzmq has no CURVE");
    if (o->curve_client && (!o->curve_server_key || strlen(o->curve_server_key) != DP_WIRE_KEY_Z85))
        return dp_err_set(DP_ERR_INVALID, "wire: a CURVE client needs the server's public key");
    if (o->curve_server && type != ZMQ_ROUTER)
        return dp_err_set(DP_ERR_INVALID, "wire: a CURVE server must be a ROUTER");
    if (o->curve_server && !zap_present(ctx))
        return dp_err_set(DP_ERR_INVALID, "wire: a CURVE server needs the context's ZAP handler "
                                          "first (without it libzmq admits every client)");
    const size_t rid = o->routing_id ? strlen(o->routing_id) : 0;
    if (o->routing_id && (rid == 0 || rid > DP_WIRE_ROUTING_ID_MAX))
        return dp_err_set(DP_ERR_INVALID, "wire: routing id of %zu bytes (1..%d)", rid,
                          DP_WIRE_ROUTING_ID_MAX);
    void *s = zmq_socket(ctx, type);
    if (!s) return zmq_fail("zmq_socket", type == ZMQ_ROUTER ? "ROUTER" : "DEALER");
    dp_err_t err;
    const int64_t max = (int64_t)(o->max_message ? o->max_message : DP_WIRE_SOCK_MAX_MESSAGE);
    if (zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &max, sizeof max)) {
        err = zmq_fail("zmq_setsockopt", "ZMQ_MAXMSGSIZE");
        goto fail;
    }
    if (o->linger_ms >= 0 && (err = set_int(s, ZMQ_LINGER, o->linger_ms, "ZMQ_LINGER"))) goto fail;
    if (o->hwm > 0 && ((err = set_int(s, ZMQ_SNDHWM, o->hwm, "ZMQ_SNDHWM")) ||
                       (err = set_int(s, ZMQ_RCVHWM, o->hwm, "ZMQ_RCVHWM"))))
        goto fail;
    if (o->routing_id && (err = set_str(s, ZMQ_ROUTING_ID, o->routing_id, "ZMQ_ROUTING_ID")))
        goto fail;
    if (type == ZMQ_ROUTER && ((err = set_int(s, ZMQ_ROUTER_HANDOVER, 1, "ZMQ_ROUTER_HANDOVER")) ||
                               (err = set_int(s, ZMQ_ROUTER_MANDATORY, 1, "ZMQ_ROUTER_MANDATORY"))))
        goto fail;
    if (o->curve_server &&
        ((err = set_int(s, ZMQ_CURVE_SERVER, 1, "ZMQ_CURVE_SERVER")) ||
         (err = set_str(s, ZMQ_CURVE_SECRETKEY, o->curve_server->secret_key,
                        "ZMQ_CURVE_SECRETKEY")) ||
         (err = set_str(s, ZMQ_ZAP_DOMAIN, DP_WIRE_ZAP_DOMAIN, "ZMQ_ZAP_DOMAIN"))))
        goto fail;
    if (o->curve_client &&
        ((err = set_str(s, ZMQ_CURVE_SERVERKEY, o->curve_server_key, "ZMQ_CURVE_SERVERKEY")) ||
         (err = set_str(s, ZMQ_CURVE_PUBLICKEY, o->curve_client->public_key,
                        "ZMQ_CURVE_PUBLICKEY")) ||
         (err =
              set_str(s, ZMQ_CURVE_SECRETKEY, o->curve_client->secret_key, "ZMQ_CURVE_SECRETKEY"))))
        goto fail;
    *out = s;
    return DP_OK;
fail:
    zmq_close(s);
    return err;
}

dp_err_t dp_wire_bind(void *sock, const char *endpoint)
{
    if (zmq_bind(sock, endpoint)) return zmq_fail("bind", endpoint);
    return DP_OK;
}

dp_err_t dp_wire_connect(void *sock, const char *endpoint)
{
    if (zmq_connect(sock, endpoint)) return zmq_fail("connect", endpoint);
    return DP_OK;
}

dp_err_t dp_wire_last_endpoint(void *sock, char *buf, size_t size)
{
    size_t n = size;
    if (zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, buf, &n))
        return zmq_fail("zmq_getsockopt", "ZMQ_LAST_ENDPOINT");
    return DP_OK;
}

/* ---- envelopes ---- */

static uint64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

dp_err_t dp_wire_pack(Dp__V1__Envelope *env, uint64_t *seq, uint8_t **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    env->version = DP_WIRE_VERSION;
    env->seq = seq ? ++*seq : env->seq;
    env->sent_unix_ms = unix_ms();
    const size_t n = dp__v1__envelope__get_packed_size(env);
    uint8_t *b = malloc(n ? n : 1);
    if (!b) return dp_err_set(DP_ERR_NOMEM, "wire: %zu bytes for an envelope", n);
    dp__v1__envelope__pack(env, b);
    *buf = b;
    *len = n;
    return DP_OK;
}

static dp_err_t send_fail(const char *what)
{
    const int e = errno;
    if (e == EAGAIN) return dp_err_set(DP_ERR_TIMEOUT, "wire: %s: would block", what);
    if (e == EHOSTUNREACH) return dp_err_set(DP_ERR_CLOSED, "wire: %s: peer gone", what);
    if (e == ETERM || e == ENOTSOCK)
        return dp_err_set(DP_ERR_CLOSED, "wire: %s: %s", what, zmq_strerror(e));
    if (e == EINTR) return dp_err_set(DP_ERR_INTERRUPTED, "wire: %s: interrupted", what);
    return dp_err_set(DP_ERR_NETWORK, "wire: %s: %s", what, zmq_strerror(e));
}

dp_err_t dp_wire_send_bytes(void *sock, const dp_wire_peer_t *to, const uint8_t *buf, size_t len,
                            int flags)
{
    if (to && zmq_send(sock, to->id, to->len, flags | ZMQ_SNDMORE) < 0)
        return send_fail("send routing id");
    /* a ROUTER takes the rest of a message whose first frame it took */
    if (zmq_send(sock, buf, len, flags) < 0) return send_fail("send");
    return DP_OK;
}

dp_err_t dp_wire_send(void *sock, const dp_wire_peer_t *to, Dp__V1__Envelope *env, uint64_t *seq,
                      int flags)
{
    uint8_t *buf;
    size_t len;
    dp_err_t err = dp_wire_pack(env, seq, &buf, &len);
    if (err) return err;
    err = dp_wire_send_bytes(sock, to, buf, len, flags);
    free(buf);
    return err;
}

static dp_err_t recv_fail(void)
{
    const int e = errno;
    if (e == EAGAIN) return DP_ERR_TIMEOUT;
    if (e == EINTR) return DP_ERR_INTERRUPTED;
    if (e == ETERM || e == ENOTSOCK)
        return dp_err_set(DP_ERR_CLOSED, "wire: recv: %s", zmq_strerror(e));
    return dp_err_set(DP_ERR_NETWORK, "wire: recv: %s", zmq_strerror(e));
}

/* The next frame of a message whose first frame arrived (frames arrive
 * together: this does not wait, but a signal may still interrupt it). */
static int next_frame(void *sock, zmq_msg_t *m)
{
    zmq_msg_close(m);
    zmq_msg_init(m);
    int rc;
    while ((rc = zmq_msg_recv(m, sock, 0)) < 0 && errno == EINTR) {
    }
    return rc;
}

/* Receives and throws away the rest of a multi-frame message; their count. */
static size_t drain(void *sock, zmq_msg_t *m)
{
    size_t n = 0;
    while (zmq_msg_more(m)) {
        if (next_frame(sock, m) < 0) break;
        n++;
    }
    return n;
}

dp_err_t dp_wire_recv(void *sock, int flags, size_t max, dp_wire_peer_t *from,
                      Dp__V1__Envelope **out)
{
    *out = NULL;
    if (from) from->len = 0;
    int type = 0;
    size_t tl = sizeof type;
    if (zmq_getsockopt(sock, ZMQ_TYPE, &type, &tl)) return recv_fail();
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, sock, flags) < 0) {
        zmq_msg_close(&m);
        return recv_fail();
    }
    dp_err_t err = DP_OK;
    if (type == ZMQ_ROUTER) {
        if (from) {
            const size_t n = zmq_msg_size(&m);
            from->len = n < DP_WIRE_ROUTING_ID_MAX ? n : DP_WIRE_ROUTING_ID_MAX;
            memcpy(from->id, zmq_msg_data(&m), from->len);
        }
        if (!zmq_msg_more(&m)) {
            zmq_msg_close(&m);
            return dp_err_set(DP_ERR_PROTOCOL, "wire: a routing id with no envelope");
        }
        if (next_frame(sock, &m) < 0) {
            zmq_msg_close(&m);
            return recv_fail();
        }
    }
    if (zmq_msg_more(&m)) {
        const size_t extra = drain(sock, &m);
        err = dp_err_set(DP_ERR_PROTOCOL, "wire: a message of %zu frames (one envelope expected)",
                         extra + 1);
    } else {
        err = dp_wire_decode(zmq_msg_data(&m), zmq_msg_size(&m),
                             max ? max : DP_WIRE_SOCK_MAX_MESSAGE, out);
    }
    zmq_msg_close(&m);
    return err;
}

void dp_wire_peer_str(const dp_wire_peer_t *p, char *buf, size_t size)
{
    if (!size) return;
    int printable = p->len > 0;
    for (size_t i = 0; i < p->len && printable; i++) printable = p->id[i] > 0x20 && p->id[i] < 0x7f;
    if (printable) {
        snprintf(buf, size, "%.*s", (int)p->len, (const char *)p->id);
        return;
    }
    size_t k = (size_t)snprintf(buf, size, "0x");
    for (size_t i = 0; i < p->len && k + 3 <= size; i++)
        k += (size_t)snprintf(buf + k, size - k, "%02x", p->id[i]);
}

/* ---- keys ---- */

void dp_wire_keypair_wipe(dp_wire_keypair_t *kp)
{
    if (!kp) return;
    volatile char *p = kp->secret_key;
    for (size_t i = 0; i < sizeof kp->secret_key; i++) p[i] = 0;
}

/* Reads at most max bytes of path into a new NUL-terminated buffer. */
static dp_err_t read_small(const char *path, size_t max, int warn_shared, char **out)
{
    *out = NULL;
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dp_err_set(errno == ENOENT ? DP_ERR_NOTFOUND : DP_ERR_IO, "%s: %s", path,
                          strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (size_t)st.st_size > max) {
        close(fd);
        return dp_err_set(DP_ERR_FORMAT, "%s: not a regular file of at most %zu bytes", path, max);
    }
    if (warn_shared && (st.st_mode & 077))
        dp_warn(LOG_COMP, "%s: a secret key file that others can read (mode %03o)", path,
                (unsigned)(st.st_mode & 0777));
    char *b = malloc((size_t)st.st_size + 1);
    if (!b) {
        close(fd);
        return DP_ERR_NOMEM;
    }
    size_t n = 0;
    while (n < (size_t)st.st_size) {
        const ssize_t r = read(fd, b + n, (size_t)st.st_size - n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        n += (size_t)r;
    }
    close(fd);
    b[n] = '\0';
    *out = b;
    return DP_OK;
}

/* Next line of *p as [*tok, *tok + *toklen): its first token; 0 at the end.
 * Comment lines ("#...") and blank lines give toklen 0. */
static int next_line(char **p, char **tok, size_t *toklen, size_t *lineno)
{
    if (!**p) return 0;
    char *line = *p, *nl = strchr(line, '\n');
    *p = nl ? nl + 1 : line + strlen(line);
    (*lineno)++;
    const char *end = nl ? nl : *p;
    while (line < end && (*line == ' ' || *line == '\t')) line++;
    char *t = line;
    while (t < end && *t != ' ' && *t != '\t' && *t != '\r') t++;
    const int comment = line < end && line[0] == '#';
    *tok = line;
    *toklen = comment ? 0 : (size_t)(t - line);
    return 1;
}

static int z85_key(const char *tok, size_t n, uint8_t bin[32])
{
    char z[DP_WIRE_KEY_Z85 + 1];
    if (n != DP_WIRE_KEY_Z85) return -1;
    memcpy(z, tok, n);
    z[n] = '\0';
    return zmq_z85_decode(bin, z) ? 0 : -1;
}

static dp_err_t load_key(const char *path, int secret, char out[DP_WIRE_KEY_Z85 + 1])
{
    char *text, *p, *tok;
    size_t n, line = 0;
    dp_err_t err = read_small(path, KEY_FILE_MAX, secret, &text);
    if (err) return err;
    uint8_t bin[32];
    err = dp_err_set(DP_ERR_FORMAT, "%s: no Z85 key in it", path);
    p = text;
    while (next_line(&p, &tok, &n, &line)) {
        if (!n) continue;
        if (z85_key(tok, n, bin))
            err = dp_err_set(DP_ERR_FORMAT, "%s:%zu: not a %d-character Z85 key", path, line,
                             DP_WIRE_KEY_Z85);
        else {
            memcpy(out, tok, DP_WIRE_KEY_Z85);
            out[DP_WIRE_KEY_Z85] = '\0';
            err = DP_OK;
        }
        break;
    }
    memset(text, 0, strlen(text));
    memset(bin, 0, sizeof bin);
    free(text);
    return err;
}

dp_err_t dp_wire_key_load_secret(const char *path, dp_wire_keypair_t *out)
{
    dp_err_t err = load_key(path, 1, out->secret_key);
    if (err) return err;
    if (zmq_curve_public(out->public_key, out->secret_key)) {
        dp_wire_keypair_wipe(out);
        return dp_err_set(DP_ERR_UNSUPPORTED, "%s: zmq_curve_public: %s", path,
                          zmq_strerror(errno));
    }
    return DP_OK;
}

dp_err_t dp_wire_key_load_public(const char *path, char out[DP_WIRE_KEY_Z85 + 1])
{
    return load_key(path, 0, out);
}

static dp_err_t write_new(const char *path, const char *text, mode_t mode)
{
    const int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0)
        return dp_err_set(errno == EEXIST ? DP_ERR_EXISTS : DP_ERR_IO, "%s: %s", path,
                          strerror(errno));
    const size_t n = strlen(text);
    const int ok = write(fd, text, n) == (ssize_t)n && fsync(fd) == 0;
    const int e = errno;
    if (close(fd) || !ok) {
        unlink(path);
        return dp_err_set(DP_ERR_IO, "%s: %s", path, strerror(ok ? errno : e));
    }
    return DP_OK;
}

dp_err_t dp_wire_keygen(const char *dir, const char *name, dp_wire_keypair_t *kp)
{
    if (!name || !*name || strchr(name, '/'))
        return dp_err_set(DP_ERR_INVALID, "keygen: name '%s' is empty or has a '/'",
                          name ? name : "");
    if (!zmq_has("curve")) return dp_err_set(DP_ERR_UNSUPPORTED, "keygen: libzmq has no CURVE");
    char key_path[4096], pub_path[4096], text[256];
    if ((size_t)snprintf(key_path, sizeof key_path, "%s/%s.key", dir, name) >= sizeof key_path ||
        (size_t)snprintf(pub_path, sizeof pub_path, "%s/%s.pub", dir, name) >= sizeof pub_path)
        return dp_err_set(DP_ERR_INVALID, "keygen: directory path too long");
    dp_wire_keypair_t k;
    if (zmq_curve_keypair(k.public_key, k.secret_key))
        return dp_err_set(DP_ERR_UNSUPPORTED, "keygen: zmq_curve_keypair: %s", zmq_strerror(errno));
    if (access(pub_path, F_OK) == 0)
        return dp_err_set(DP_ERR_EXISTS, "%s: exists, not replaced", pub_path);
    snprintf(text, sizeof text, "# CURVE secret key of %s (Z85): keep it private\n%s\n", name,
             k.secret_key);
    dp_err_t err = write_new(key_path, text, 0600);
    memset(text, 0, sizeof text);
    if (err) goto done;
    snprintf(text, sizeof text, "# CURVE public key of %s (Z85)\n%s\n", name, k.public_key);
    if ((err = write_new(pub_path, text, 0644))) {
        unlink(key_path);
        goto done;
    }
    if (kp) *kp = k;
done:
    dp_wire_keypair_wipe(&k);
    return err;
}

/* ---- ZAP ---- */

struct dp_wire_zap {
    void *rep;
    uint8_t (*keys)[32]; /* sorted */
    size_t nkeys;
    dp_wire_zap_stats_t stats;
};

static int key_cmp(const void *a, const void *b) { return memcmp(a, b, 32); }

static dp_err_t load_authorized(dp_wire_zap_t *z, const char *path)
{
    char *text, *p, *tok;
    size_t n, line = 0, cap = 0;
    dp_err_t err = read_small(path, AUTH_FILE_MAX, 0, &text);
    if (err) return err;
    p = text;
    while (next_line(&p, &tok, &n, &line)) {
        if (!n) continue;
        if (z->nkeys == cap) {
            cap = cap ? 2 * cap : 16;
            void *nk = realloc(z->keys, cap * sizeof *z->keys);
            if (!nk) {
                err = DP_ERR_NOMEM;
                break;
            }
            z->keys = nk;
        }
        if (z85_key(tok, n, z->keys[z->nkeys])) {
            err = dp_err_set(DP_ERR_FORMAT, "%s:%zu: not a %d-character Z85 public key", path, line,
                             DP_WIRE_KEY_Z85);
            break;
        }
        z->nkeys++;
    }
    free(text);
    if (!err && z->nkeys) qsort(z->keys, z->nkeys, sizeof *z->keys, key_cmp);
    return err;
}

dp_err_t dp_wire_zap_new(void *ctx, const char *authorized_path, dp_wire_zap_t **out)
{
    *out = NULL;
    dp_wire_zap_t *z = calloc(1, sizeof *z);
    if (!z) return DP_ERR_NOMEM;
    dp_err_t err = load_authorized(z, authorized_path);
    if (err) goto fail;
    if (!(z->rep = zmq_socket(ctx, ZMQ_REP))) {
        err = zmq_fail("zmq_socket", "ZAP REP");
        goto fail;
    }
    int linger = 0;
    zmq_setsockopt(z->rep, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(z->rep, DP_WIRE_ZAP_ENDPOINT)) {
        err = errno == EADDRINUSE
                  ? dp_err_set(DP_ERR_EXISTS, "wire: the context has a ZAP handler already")
                  : zmq_fail("bind", DP_WIRE_ZAP_ENDPOINT);
        goto fail;
    }
    dp_info(LOG_COMP, "ZAP: %zu authorized keys from %s", z->nkeys, authorized_path);
    *out = z;
    return DP_OK;
fail:
    dp_wire_zap_destroy(&z);
    return err;
}

void *dp_wire_zap_socket(dp_wire_zap_t *z) { return z->rep; }

size_t dp_wire_zap_keys(const dp_wire_zap_t *z) { return z->nkeys; }

void dp_wire_zap_stats(const dp_wire_zap_t *z, dp_wire_zap_stats_t *out) { *out = z->stats; }

static void zap_reply(void *rep, const zmq_msg_t *rid, const char *code, const char *text,
                      const char *user)
{
    zmq_send(rep, "1.0", 3, ZMQ_SNDMORE);
    zmq_send(rep, rid ? zmq_msg_data((zmq_msg_t *)rid) : "",
             rid ? zmq_msg_size((zmq_msg_t *)rid) : 0, ZMQ_SNDMORE);
    zmq_send(rep, code, strlen(code), ZMQ_SNDMORE);
    zmq_send(rep, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(rep, user, strlen(user), ZMQ_SNDMORE);
    zmq_send(rep, "", 0, 0);
}

/* One request: version, request id, domain, address, identity, mechanism,
 * credentials (CURVE: the client's 32-byte public key). */
static int zap_one(dp_wire_zap_t *z)
{
    zmq_msg_t f[ZAP_FRAMES];
    size_t n = 0;
    int more = 1;
    zmq_msg_init(&f[0]);
    if (zmq_msg_recv(&f[0], z->rep, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&f[0]);
        return 0;
    }
    n = 1;
    more = zmq_msg_more(&f[0]);
    while (more) {
        zmq_msg_t extra;
        zmq_msg_t *m = n < ZAP_FRAMES ? &f[n] : &extra;
        zmq_msg_init(m);
        if (zmq_msg_recv(m, z->rep, 0) < 0) {
            zmq_msg_close(m);
            break;
        }
        more = zmq_msg_more(m);
        if (n < ZAP_FRAMES)
            n++;
        else
            zmq_msg_close(m);
    }
#define FRAME_IS(i, s)                                                                             \
    (n > (i) && zmq_msg_size(&f[i]) == strlen(s) && !memcmp(zmq_msg_data(&f[i]), s, strlen(s)))
    char addr[64] = "?", z85[DP_WIRE_KEY_Z85 + 1] = "";
    if (n > 3)
        snprintf(addr, sizeof addr, "%.*s",
                 (int)(zmq_msg_size(&f[3]) < 63 ? zmq_msg_size(&f[3]) : 63),
                 (const char *)zmq_msg_data(&f[3]));
    if (!FRAME_IS(0, "1.0") || n < 6) {
        zap_reply(z->rep, n > 1 ? &f[1] : NULL, "500", "malformed ZAP request", "");
        z->stats.refused++;
        dp_warn(LOG_COMP, "ZAP: a malformed request (%zu frames)", n);
    } else if (!FRAME_IS(5, "CURVE") || n < 7 || zmq_msg_size(&f[6]) != 32) {
        zap_reply(z->rep, &f[1], "400", "CURVE required", "");
        z->stats.refused++;
        dp_warn(LOG_COMP, "ZAP: refused a connection from %s: not CURVE", addr);
    } else {
        const uint8_t *key = zmq_msg_data(&f[6]);
        zmq_z85_encode(z85, key, 32);
        if (z->nkeys && bsearch(key, z->keys, z->nkeys, sizeof *z->keys, key_cmp)) {
            zap_reply(z->rep, &f[1], "200", "OK", z85);
            z->stats.admitted++;
            dp_debug(LOG_COMP, "ZAP: admitted key %s from %s", z85, addr);
        } else {
            zap_reply(z->rep, &f[1], "400", "key not authorized", "");
            z->stats.refused++;
            dp_warn(LOG_COMP, "ZAP: refused key %s from %s: not in the authorized keys", z85, addr);
        }
    }
#undef FRAME_IS
    for (size_t i = 0; i < n; i++) zmq_msg_close(&f[i]);
    return 1;
}

int dp_wire_zap_handle(dp_wire_zap_t *z)
{
    int n = 0;
    while (zap_one(z)) n++;
    return n;
}

void dp_wire_zap_destroy(dp_wire_zap_t **pz)
{
    if (!pz || !*pz) return;
    dp_wire_zap_t *z = *pz;
    if (z->rep) zmq_close(z->rep);
    free(z->keys);
    free(z);
    *pz = NULL;
}
