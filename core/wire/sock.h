/* Envelopes over ZeroMQ sockets, CURVE keys and a ZAP handler: the part of
 * the wire every peer (coordinator, worker, measurer, dp-submit) shares.
 *
 * One Envelope is one ZeroMQ message: a single frame on a DEALER, a routing
 * id frame then the envelope on a ROUTER. Sockets are plain libzmq handles
 * (void *), so a loop can zmq_poll them with anything else; the functions
 * here set their options, pack and send, receive and validate.
 *
 * Limits: every socket made here has ZMQ_MAXMSGSIZE, so a peer announcing a
 * frame above it (a 1 GiB claim) is disconnected by libzmq before anything
 * is allocated; what arrives is then checked by dp_wire_decode. A message
 * that fails is consumed and reported with a reason; the caller logs it and
 * goes on. Nothing here prints or exits.
 *
 * CURVE: a key file holds one Z85 key (40 characters) on its first line
 * that is neither blank nor a comment (starting with "#", which no Z85
 * encoding of 32 bytes does). NAME.key holds the secret key (mode 0600), NAME.pub
 * the public one; the public key is derived from the secret one, so a peer
 * needs only its secret file plus, for a client, the server's public file.
 * An authorized-keys file lists one public key per line (anything after the
 * key and a space is a comment). The ZAP handler admits CURVE clients whose
 * key is listed and refuses every other connection to a socket that asks for
 * authentication. Heartbeats are application messages (Heartbeat bodies),
 * not ZMTP's. */
#ifndef DP_WIRE_SOCK_H
#define DP_WIRE_SOCK_H

#include <stddef.h>
#include <stdint.h>

#include "dp/v1/wire.pb-c.h"
#include "util/err.h"

#define DP_WIRE_SOCK_MAX_MESSAGE (16u << 20) /* default ZMQ_MAXMSGSIZE of a socket */
#define DP_WIRE_ROUTING_ID_MAX   255         /* bytes of a ZeroMQ routing id */
#define DP_WIRE_KEY_Z85          40          /* characters of a Z85 CURVE key */
#define DP_WIRE_ZAP_DOMAIN       "dp"
#define DP_WIRE_ZAP_ENDPOINT     "inproc://zeromq.zap.01"

/* A ROUTER peer: the routing id ZeroMQ gave (or the peer set). */
typedef struct dp_wire_peer {
    uint8_t id[DP_WIRE_ROUTING_ID_MAX];
    size_t len;
} dp_wire_peer_t;

/* A CURVE key pair, Z85 with a terminating NUL. Holds a secret: wipe with
 * dp_wire_keypair_wipe when done. */
typedef struct dp_wire_keypair {
    char public_key[DP_WIRE_KEY_Z85 + 1];
    char secret_key[DP_WIRE_KEY_Z85 + 1];
} dp_wire_keypair_t;

typedef struct dp_wire_sock_opts {
    size_t max_message;     /* ZMQ_MAXMSGSIZE; 0: DP_WIRE_SOCK_MAX_MESSAGE */
    const char *routing_id; /* DEALER: a stable routing id (the worker id), so that a
                               reconnect replaces the old connection; NULL: libzmq's */
    int linger_ms;          /* ZMQ_LINGER; -1: libzmq's default (wait forever) */
    int hwm;                /* ZMQ_SNDHWM and ZMQ_RCVHWM; 0: libzmq's (1000) */
    /* CURVE server (ROUTER): its key pair; the socket asks the ZAP handler
       (domain DP_WIRE_ZAP_DOMAIN, enforced) about every client. NULL: none */
    const dp_wire_keypair_t *curve_server;
    /* CURVE client (DEALER): its key pair and the server's public key (Z85).
       Both or neither */
    const dp_wire_keypair_t *curve_client;
    const char *curve_server_key;
} dp_wire_sock_opts_t;

/* Zero options: libzmq's linger and HWM, the default maximum, no CURVE. */
void dp_wire_sock_opts_init(dp_wire_sock_opts_t *o);

/* A new ZMQ_ROUTER or ZMQ_DEALER socket on ctx with the options set; a
 * ROUTER also gets ZMQ_ROUTER_HANDOVER (a peer reconnecting with the same
 * routing id replaces its old connection) and ZMQ_ROUTER_MANDATORY (a send
 * to a gone peer fails instead of vanishing). The caller binds or connects
 * it and closes it with zmq_close. DP_ERR_INVALID for a bad option,
 * DP_ERR_UNSUPPORTED for CURVE on a libzmq without it. On success *out is
 * the new socket; on failure NULL. */
dp_err_t dp_wire_socket(void *ctx, int type, const dp_wire_sock_opts_t *o, void **out);

/* zmq_bind / zmq_connect with the error translated (DP_ERR_NETWORK, or
 * DP_ERR_INVALID for a malformed endpoint); the detail names the endpoint. */
dp_err_t dp_wire_bind(void *sock, const char *endpoint);
dp_err_t dp_wire_connect(void *sock, const char *endpoint);

/* The endpoint a socket last bound (a tcp://host:* bind resolved to its
 * port), into buf. */
dp_err_t dp_wire_last_endpoint(void *sock, char *buf, size_t size);

/* Fills env->version (DP_WIRE_VERSION), seq (++*seq) and sent_unix_ms, then
 * packs it into *buf (a new buffer, caller frees) of *len bytes. env is
 * borrowed; its fields named here are overwritten. */
dp_err_t dp_wire_pack(Dp__V1__Envelope *env, uint64_t *seq, uint8_t **buf, size_t *len);

/* Sends len packed bytes as one message: to peer `to` on a ROUTER (a
 * routing id frame first), or to = NULL on a DEALER. flags as zmq_send's
 * (ZMQ_DONTWAIT). DP_ERR_TIMEOUT when it would block (EAGAIN), DP_ERR_CLOSED
 * when the peer is gone (EHOSTUNREACH) or the context terminated,
 * DP_ERR_NETWORK otherwise. buf is borrowed. */
dp_err_t dp_wire_send_bytes(void *sock, const dp_wire_peer_t *to, const uint8_t *buf, size_t len,
                            int flags);

/* dp_wire_pack then dp_wire_send_bytes. */
dp_err_t dp_wire_send(void *sock, const dp_wire_peer_t *to, Dp__V1__Envelope *env, uint64_t *seq,
                      int flags);

/* Receives one message: on a ROUTER its routing id into *from (from may be
 * NULL on a DEALER). flags as zmq_msg_recv's (ZMQ_DONTWAIT). Returns DP_OK
 * with *out a new, validated envelope (caller frees with dp_wire_free);
 * DP_ERR_TIMEOUT when nothing is there (EAGAIN, or the socket's ZMQ_RCVTIMEO
 * passed); DP_ERR_CLOSED when the context terminated; DP_ERR_INTERRUPTED on
 * EINTR. A message that was consumed and is not acted on gives
 * DP_ERR_PROTOCOL (not one frame after the routing id, no Envelope, or
 * invalid: dp_wire_decode's detail), DP_ERR_UNSUPPORTED (another protocol
 * version) or DP_ERR_RANGE (above max bytes; 0: DP_WIRE_SOCK_MAX_MESSAGE),
 * with *from filled where known. *out is NULL on every failure. */
dp_err_t dp_wire_recv(void *sock, int flags, size_t max, dp_wire_peer_t *from,
                      Dp__V1__Envelope **out);

/* Writes a printable form of the routing id into buf: the id itself when it
 * is printable ASCII, else "0x" and hex. */
void dp_wire_peer_str(const dp_wire_peer_t *p, char *buf, size_t size);

/* ---- keys ---- */

/* Makes a key pair with zmq_curve_keypair and writes DIR/NAME.key (the
 * secret key, mode 0600) and DIR/NAME.pub. Refuses to replace an existing
 * file (DP_ERR_EXISTS); DP_ERR_IO when the files cannot be written (a
 * half-written pair is removed). kp may be NULL, else it gets the pair. */
dp_err_t dp_wire_keygen(const char *dir, const char *name, dp_wire_keypair_t *kp);

/* Reads a secret key file and derives its public key. DP_ERR_NOTFOUND /
 * DP_ERR_IO for the file, DP_ERR_FORMAT when it holds no valid Z85 key. A
 * key file that others can read is logged (warning), not refused. */
dp_err_t dp_wire_key_load_secret(const char *path, dp_wire_keypair_t *out);

/* Reads a public key file: the Z85 key into out. */
dp_err_t dp_wire_key_load_public(const char *path, char out[DP_WIRE_KEY_Z85 + 1]);

/* Overwrites the secret key. */
void dp_wire_keypair_wipe(dp_wire_keypair_t *kp);

/* ---- ZAP ---- */

typedef struct dp_wire_zap dp_wire_zap_t;

typedef struct dp_wire_zap_stats {
    uint64_t admitted, refused;
} dp_wire_zap_stats_t;

/* Loads the authorized public keys from path (DP_ERR_FORMAT naming the line
 * of a bad one; an empty list is allowed and admits nobody) and binds a REP
 * socket to DP_WIRE_ZAP_ENDPOINT on ctx: the context's ZAP handler, which
 * must exist before a CURVE server socket binds. DP_ERR_EXISTS when ctx has
 * a handler already. The caller polls dp_wire_zap_socket and calls
 * dp_wire_zap_handle when it is readable. On success *out is a new object,
 * caller destroys (before terminating ctx). */
dp_err_t dp_wire_zap_new(void *ctx, const char *authorized_path, dp_wire_zap_t **out);

/* The REP socket to poll (ZMQ_POLLIN); borrowed, valid until destroy. */
void *dp_wire_zap_socket(dp_wire_zap_t *z);

/* Answers every pending ZAP request without blocking: 200 for a CURVE
 * client with a listed key, 400 otherwise (logged with the client's address
 * and key, which are not secret). Returns the number answered. */
int dp_wire_zap_handle(dp_wire_zap_t *z);

/* Number of keys listed. */
size_t dp_wire_zap_keys(const dp_wire_zap_t *z);

void dp_wire_zap_stats(const dp_wire_zap_t *z, dp_wire_zap_stats_t *out);

/* Closes the socket; accepts NULL and *z == NULL; sets *z = NULL. */
void dp_wire_zap_destroy(dp_wire_zap_t **z);

#endif
