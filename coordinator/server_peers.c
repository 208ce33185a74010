/* The coordinator's peers: an open-addressing table keyed by ZeroMQ
 * routing id, and the leases each worker holds. */
#include <stdlib.h>
#include <string.h>

#include "server_impl.h"

int srv_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap : 8;
    while (n < need) n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q) return -1;
    *p = q;
    *cap = n;
    return 0;
}

/* ---------------------------------------------------------------- peers */

static uint64_t rid_hash(const dp_wire_peer_t *r)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < r->len; i++) h = (h ^ r->id[i]) * 1099511628211ULL;
    return h;
}

static int rid_eq(const dp_wire_peer_t *a, const dp_wire_peer_t *b)
{
    return a->len == b->len && !memcmp(a->id, b->id, a->len);
}

peer_t *srv_peer_find(const dp_coord_server_t *s, const dp_wire_peer_t *r)
{
    if (!s->nslots) return NULL;
    for (size_t h = rid_hash(r) & (s->nslots - 1);; h = (h + 1) & (s->nslots - 1)) {
        peer_t *p = s->slots[h];
        if (!p) return NULL;
        if (rid_eq(&p->rid, r)) return p;
    }
}

static void slot_put(peer_t **slots, size_t nslots, peer_t *p)
{
    size_t h = rid_hash(&p->rid) & (nslots - 1);
    while (slots[h]) h = (h + 1) & (nslots - 1);
    slots[h] = p;
}

peer_t *srv_peer_add(dp_coord_server_t *s, const dp_wire_peer_t *r)
{
    if (2 * (s->npeers + 1) > s->nslots) {
        const size_t n = s->nslots ? 2 * s->nslots : 64;
        peer_t **ns = calloc(n, sizeof *ns);
        if (!ns) return NULL;
        for (size_t i = 0; i < s->nslots; i++)
            if (s->slots[i]) slot_put(ns, n, s->slots[i]);
        free(s->slots);
        s->slots = ns;
        s->nslots = n;
    }
    peer_t *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->rid = *r;
    slot_put(s->slots, s->nslots, p);
    s->npeers++;
    return p;
}

void srv_leases_clear(peer_t *p)
{
    for (size_t i = 0; i < p->nleases; i++) free(p->leases[i].task_id);
    free(p->leases);
    p->leases = NULL;
    p->nleases = p->capleases = 0;
}

void srv_peer_free(peer_t *p)
{
    srv_leases_clear(p);
    free(p->worker_id);
    free(p);
}

/* Removes p from the table (backward-shift deletion) and frees it. */
void srv_peer_remove(dp_coord_server_t *s, peer_t *p)
{
    size_t i = rid_hash(&p->rid) & (s->nslots - 1);
    while (s->slots[i] != p) i = (i + 1) & (s->nslots - 1);
    s->slots[i] = NULL;
    for (size_t j = (i + 1) & (s->nslots - 1); s->slots[j]; j = (j + 1) & (s->nslots - 1)) {
        peer_t *q = s->slots[j];
        s->slots[j] = NULL;
        slot_put(s->slots, s->nslots, q);
    }
    s->npeers--;
    srv_peer_free(p);
}

int srv_is_worker(const peer_t *p)
{
    return p->worker_id &&
           (p->role == DP__V1__ROLE__ROLE_TRAINER || p->role == DP__V1__ROLE__ROLE_MEASURER);
}

peer_t *srv_peer_by_worker(const dp_coord_server_t *s, const char *worker_id)
{
    for (size_t i = 0; i < s->nslots; i++)
        if (s->slots[i] && srv_is_worker(s->slots[i]) && !strcmp(s->slots[i]->worker_id, worker_id))
            return s->slots[i];
    return NULL;
}

int srv_lease_add(peer_t *p, const char *task_id, uint32_t attempt, uint64_t since)
{
    for (size_t i = 0; i < p->nleases; i++)
        if (!strcmp(p->leases[i].task_id, task_id)) {
            p->leases[i].attempt = attempt;
            p->leases[i].since_ms = since;
            return 0;
        }
    if (srv_grow((void **)&p->leases, &p->capleases, p->nleases + 1, sizeof *p->leases)) return -1;
    char *id = strdup(task_id);
    if (!id) return -1;
    p->leases[p->nleases++] = (lease_t){id, attempt, since};
    return 0;
}

void srv_lease_drop(peer_t *p, size_t i)
{
    free(p->leases[i].task_id);
    p->leases[i] = p->leases[--p->nleases];
}

void srv_lease_forget(peer_t *p, const char *task_id)
{
    for (size_t i = 0; i < p->nleases; i++)
        if (!strcmp(p->leases[i].task_id, task_id)) {
            srv_lease_drop(p, i);
            return;
        }
}