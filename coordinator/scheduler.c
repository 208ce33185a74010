/* The coordinator's state (scheduler.h): campaigns planned into compact task
 * arrays, per-campaign id hash tables and ready queues, dependents in CSR
 * form, the list of leased tasks, and the workers. About 100 bytes per task
 * beside the campaign itself. */
#include "scheduler.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NO_WORKER               (-1)
#define CAMPAIGN_LIST_MAX_LOCAL 256 /* campaign_validate's list bound */

typedef struct stask {
    dp_plan_task_t p;
    uint8_t state; /* Dp__V1__TaskState */
    uint8_t attempt;
    uint32_t nwait;    /* dependencies not yet done */
    uint64_t deadline; /* LEASED: lease end */
    uint64_t retry_at; /* QUEUED after a failure: not leased before (in c->held until then) */
    char *holder;      /* LEASED: worker id */
    char *reason;      /* the last failure's */
    char *result;      /* DONE: the task's summary JSON */
    double seconds;
} stask_t;

typedef struct queue {
    uint32_t *v;
    size_t head, len, cap;
} queue_t;

typedef struct scamp {
    char *id, *token, *reason;
    Dp__V1__Campaign *c; /* own copy */
    uint8_t state;       /* Dp__V1__CampaignState */
    int dirty;           /* derived state (queues, waits, leases) to rebuild */
    uint64_t accepted_ms, finished_ms;
    stask_t *t;
    uint32_t n, report, nterminal;
    uint32_t *slots, nslots; /* hash: task index + 1, 0 empty */
    uint32_t *dep_off, *dep; /* dependents of task i: dep[dep_off[i] .. dep_off[i+1]) */
    queue_t tq;              /* trainer tasks */
    queue_t held;            /* QUEUED tasks waiting for their retry_at, in no queue yet */
    queue_t *mq;             /* MEASURE tasks per device class */
    size_t ndev;
    char (*bword)[48]; /* "N-EPS" of each flattened budget, as in task ids */
    uint32_t nb;
} scamp_t;

typedef struct sworker {
    char *id, *cls, *host;
    Dp__V1__Role role;
    uint32_t capacity, running;
    uint64_t last_ms;
    int alive;
} sworker_t;

typedef struct lref {
    uint32_t c, t;
} lref_t;

struct dp_sched {
    dp_sched_opts_t o;
    scamp_t **camps;
    size_t ncamps, capcamps;
    sworker_t *w;
    size_t nw, capw;
    lref_t *leased;
    size_t nleased, capleased;
    size_t rr_train, rr_measure; /* round-robin positions over campaigns */
    uint64_t accepted;
};

void dp_sched_opts_init(dp_sched_opts_t *o)
{
    *o = (dp_sched_opts_t){
        .heartbeat_ms = 1000, .liveness = 3, .max_attempts = DP_PLAN_ATTEMPTS, .retry_ms = 1000};
}

static uint64_t period(const dp_sched_t *s) { return (uint64_t)s->o.heartbeat_ms * s->o.liveness; }

dp_sched_t *dp_sched_new(const dp_sched_opts_t *o)
{
    dp_sched_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    if (o)
        s->o = *o;
    else
        dp_sched_opts_init(&s->o);
    if (!s->o.heartbeat_ms) s->o.heartbeat_ms = 1000;
    if (!s->o.liveness) s->o.liveness = 3;
    if (!s->o.max_attempts) s->o.max_attempts = DP_PLAN_ATTEMPTS;
    if (s->o.max_attempts > 255) s->o.max_attempts = 255;
    return s;
}

static void camp_free(scamp_t *c)
{
    if (!c) return;
    for (uint32_t i = 0; i < c->n; i++) {
        free(c->t[i].holder);
        free(c->t[i].reason);
        free(c->t[i].result);
    }
    if (c->mq)
        for (size_t d = 0; d < c->ndev; d++) free(c->mq[d].v);
    if (c->c) dp__v1__campaign__free_unpacked(c->c, NULL);
    free(c->mq);
    free(c->tq.v);
    free(c->held.v);
    free(c->bword);
    free(c->t);
    free(c->slots);
    free(c->dep_off);
    free(c->dep);
    free(c->id);
    free(c->token);
    free(c->reason);
    free(c);
}

void dp_sched_destroy(dp_sched_t **ps)
{
    if (!ps || !*ps) return;
    dp_sched_t *s = *ps;
    for (size_t i = 0; i < s->ncamps; i++) camp_free(s->camps[i]);
    for (size_t i = 0; i < s->nw; i++) {
        free(s->w[i].id);
        free(s->w[i].cls);
        free(s->w[i].host);
    }
    free(s->camps);
    free(s->w);
    free(s->leased);
    free(s);
    *ps = NULL;
}

/* ---------------------------------------------------------------- helpers */

static char *dup_or_null(const char *v) { return v && *v ? strdup(v) : NULL; }

static void set_str(char **dst, const char *v)
{
    free(*dst);
    *dst = dup_or_null(v);
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return 0;
    size_t n = *cap ? *cap * 2 : 16;
    while (n < need) n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q) return -1;
    *p = q;
    *cap = n;
    return 0;
}

static int q_push(queue_t *q, uint32_t v)
{
    if (q->head && q->head == q->len) q->head = q->len = 0;
    if (q->len == q->cap && q->head > q->cap / 2) { /* slide the live part down */
        memmove(q->v, q->v + q->head, (q->len - q->head) * sizeof *q->v);
        q->len -= q->head;
        q->head = 0;
    }
    if (grow((void **)&q->v, &q->cap, q->len + 1, sizeof *q->v)) return -1;
    q->v[q->len++] = v;
    return 0;
}

/* Hash of a task's plan tuple: the id table is keyed by it, so planning and
 * lookups build no strings. */
static uint64_t tuple_hash(const dp_plan_task_t *t)
{
    uint64_t h = 1469598103934665603ULL;
    const uint32_t v[6] = {(uint32_t)t->kind, (uint32_t)t->method, t->model, t->budget, t->shard,
                           t->device};
    for (int i = 0; i < 6; i++) h = (h ^ v[i]) * 1099511628211ULL, h ^= h >> 29;
    return h;
}

static int tuple_eq(const dp_plan_task_t *a, const dp_plan_task_t *b)
{
    return a->kind == b->kind && a->method == b->method && a->model == b->model &&
           a->budget == b->budget && a->shard == b->shard && a->device == b->device;
}

static int task_id(const scamp_t *c, uint32_t i, char *buf, size_t size)
{
    return dp_plan_task_id(c->c, c->id, &c->t[i].p, buf, size);
}

static scamp_t *camp_find(const dp_sched_t *s, const char *cid)
{
    for (size_t i = 0; i < s->ncamps; i++)
        if (!strcmp(s->camps[i]->id, cid)) return s->camps[i];
    return NULL;
}

static size_t camp_index(const dp_sched_t *s, const scamp_t *c)
{
    for (size_t i = 0; i < s->ncamps; i++)
        if (s->camps[i] == c) return i;
    return 0;
}

void dp_sched_campaign_of(const char *task_id, char *buf, size_t size)
{
    const char *slash = strchr(task_id, '/');
    const size_t n = slash ? (size_t)(slash - task_id) : strlen(task_id);
    snprintf(buf, size, "%.*s", (int)n, task_id);
}

/* Task index of the tuple in c, or -1. */
static long tuple_find(const scamp_t *c, const dp_plan_task_t *p)
{
    if (!c->nslots) return -1;
    for (uint64_t h = tuple_hash(p) & (c->nslots - 1);; h = (h + 1) & (c->nslots - 1)) {
        const uint32_t v = c->slots[h];
        if (!v) return -1;
        if (tuple_eq(&c->t[v - 1].p, p)) return (long)(v - 1);
    }
}

/* Next '/'-separated field of *s into [*f, *f + *n); advances *s. */
static int field(const char **s, const char **f, size_t *n)
{
    if (!**s) return -1;
    *f = *s;
    const char *e = strchr(*s, '/');
    *n = e ? (size_t)(e - *s) : strlen(*s);
    *s = e ? e + 1 : *s + *n;
    return *n ? 0 : -1;
}

static int field_is(const char *f, size_t n, const char *w)
{
    return strlen(w) == n && !strncmp(f, w, n);
}

static uint32_t find_name(const char *f, size_t n, char *const *names, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (field_is(f, n, names[i])) return (uint32_t)i;
    return DP_PLAN_NONE;
}

/* The plan tuple of task id (plan.h's id forms, the campaign id already
 * matched); -1 when it is not one of c's. */
static int parse_id(const scamp_t *c, const char *id, dp_plan_task_t *t)
{
    const char *s = id, *f;
    size_t n;
    *t = (dp_plan_task_t){.model = DP_PLAN_NONE,
                          .budget = DP_PLAN_NONE,
                          .shard = DP_PLAN_NONE,
                          .device = DP_PLAN_NONE};
    if (field(&s, &f, &n) || field(&s, &f, &n)) return -1; /* campaign id, kind */
    if (field_is(f, n, "report")) {
        t->kind = DP__V1__TASK_KIND__TASK_KIND_REPORT;
        return *s ? -1 : 0;
    }
    const Dp__V1__Campaign *cp = c->c;
    char *models[CAMPAIGN_LIST_MAX_LOCAL];
    char *classes[CAMPAIGN_LIST_MAX_LOCAL];
    const size_t nm =
        cp->n_models < CAMPAIGN_LIST_MAX_LOCAL ? cp->n_models : CAMPAIGN_LIST_MAX_LOCAL;
    const size_t nd = c->ndev < CAMPAIGN_LIST_MAX_LOCAL ? c->ndev : CAMPAIGN_LIST_MAX_LOCAL;
    for (size_t i = 0; i < nm; i++) models[i] = cp->models[i]->name;
    for (size_t i = 0; i < nd; i++) classes[i] = cp->device_classes[i]->name;
    if (field_is(f, n, "train"))
        t->kind = DP__V1__TASK_KIND__TASK_KIND_TRAIN,
        t->method = DP__V1__METHOD__METHOD_DEEPPERFORM;
    else if (field_is(f, n, "generate"))
        t->kind = DP__V1__TASK_KIND__TASK_KIND_GENERATE,
        t->method = DP__V1__METHOD__METHOD_DEEPPERFORM;
    else if (field_is(f, n, "baseline"))
        t->kind = DP__V1__TASK_KIND__TASK_KIND_BASELINE;
    else if (field_is(f, n, "measure")) {
        t->kind = DP__V1__TASK_KIND__TASK_KIND_MEASURE;
        if (field(&s, &f, &n) || (t->device = find_name(f, n, classes, nd)) == DP_PLAN_NONE)
            return -1;
    } else
        return -1;
    if (field(&s, &f, &n) || (t->model = find_name(f, n, models, nm)) == DP_PLAN_NONE) return -1;
    if (field(&s, &f, &n)) return -1;
    if (t->kind == DP__V1__TASK_KIND__TASK_KIND_MEASURE && field_is(f, n, "seeds")) {
        t->method = DP__V1__METHOD__METHOD_SEEDS;
    } else {
        for (uint32_t b = 0; b < c->nb && t->budget == DP_PLAN_NONE; b++)
            if (field_is(f, n, c->bword[b])) t->budget = b;
        if (t->budget == DP_PLAN_NONE) return -1;
        if (t->kind == DP__V1__TASK_KIND__TASK_KIND_TRAIN) return *s ? -1 : 0;
        if (t->kind != DP__V1__TASK_KIND__TASK_KIND_GENERATE) {
            if (field(&s, &f, &n)) return -1;
            static const Dp__V1__Method ms[] = {
                DP__V1__METHOD__METHOD_DEEPPERFORM, DP__V1__METHOD__METHOD_RANDOM,
                DP__V1__METHOD__METHOD_ILFO, DP__V1__METHOD__METHOD_DEEPSLOTH};
            t->method = DP__V1__METHOD__METHOD_UNSPECIFIED;
            for (size_t k = 0; k < 4; k++)
                if (field_is(f, n, dp_plan_method_word(ms[k]))) t->method = ms[k];
            if (t->method == DP__V1__METHOD__METHOD_UNSPECIFIED) return -1;
        }
    }
    if (field(&s, &f, &n) || f[0] != 's' || n < 2 || n > 11 || *s) return -1;
    uint64_t k = 0;
    for (size_t i = 1; i < n; i++) {
        if (f[i] < '0' || f[i] > '9') return -1;
        k = k * 10 + (uint64_t)(f[i] - '0');
    }
    if (k >= UINT32_MAX) return -1;
    t->shard = (uint32_t)k;
    return 0;
}

/* Task index of id in c, or -1. */
static long task_find(const scamp_t *c, const char *id)
{
    dp_plan_task_t t;
    if (parse_id(c, id, &t)) return -1;
    return tuple_find(c, &t);
}

/* Campaign and task of a task id; 0, or -1 when unknown. */
static int locate(const dp_sched_t *s, const char *id, scamp_t **pc, uint32_t *pi)
{
    char cid[DP_PLAN_ID_MAX];
    dp_sched_campaign_of(id, cid, sizeof cid);
    scamp_t *c = camp_find(s, cid);
    if (!c) return -1;
    const long i = task_find(c, id);
    if (i < 0) return -1;
    *pc = c;
    *pi = (uint32_t)i;
    return 0;
}

static sworker_t *worker_find(const dp_sched_t *s, const char *id)
{
    if (!id) return NULL;
    for (size_t i = 0; i < s->nw; i++)
        if (!strcmp(s->w[i].id, id)) return &s->w[i];
    return NULL;
}

static int terminal(uint8_t st)
{
    return st == DP__V1__TASK_STATE__TASK_STATE_DONE ||
           st == DP__V1__TASK_STATE__TASK_STATE_FAILED ||
           st == DP__V1__TASK_STATE__TASK_STATE_CANCELLED;
}

static queue_t *queue_of(scamp_t *c, uint32_t i)
{
    const dp_plan_task_t *p = &c->t[i].p;
    return p->kind == DP__V1__TASK_KIND__TASK_KIND_MEASURE ? &c->mq[p->device] : &c->tq;
}

static int enqueue(scamp_t *c, uint32_t i)
{
    c->t[i].state = DP__V1__TASK_STATE__TASK_STATE_QUEUED;
    return q_push(queue_of(c, i), i);
}

/* Drops task i of c from the leased list and its holder's count. */
static void lease_end(dp_sched_t *s, scamp_t *c, uint32_t i)
{
    stask_t *t = &c->t[i];
    if (!t->holder) return;
    sworker_t *w = worker_find(s, t->holder);
    if (w && w->running) w->running--;
    const uint32_t ci = (uint32_t)camp_index(s, c);
    for (size_t k = 0; k < s->nleased; k++)
        if (s->leased[k].c == ci && s->leased[k].t == i) {
            s->leased[k] = s->leased[--s->nleased];
            break;
        }
    free(t->holder);
    t->holder = NULL;
    t->deadline = 0;
}

static void campaign_end_check(scamp_t *c, uint64_t now_ms)
{
    if (c->state != DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_RUNNING || c->nterminal < c->n) return;
    uint32_t failed = 0;
    for (uint32_t i = 0; i < c->n; i++)
        failed += c->t[i].state != DP__V1__TASK_STATE__TASK_STATE_DONE;
    c->finished_ms = now_ms;
    if (!failed) {
        c->state = DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_DONE;
        return;
    }
    c->state = DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_FAILED;
    char why[128];
    snprintf(why, sizeof why, "%u of %u tasks failed", failed, c->n);
    set_str(&c->reason, why);
}

/* Task i reached a terminal state: release what waited for it. */
static void on_terminal(scamp_t *c, uint32_t i, uint64_t now_ms)
{
    c->nterminal++;
    const int done = c->t[i].state == DP__V1__TASK_STATE__TASK_STATE_DONE;
    for (uint32_t k = c->dep_off[i]; k < c->dep_off[i + 1]; k++) {
        const uint32_t d = c->dep[k];
        stask_t *t = &c->t[d];
        if (terminal(t->state)) continue;
        if (done) {
            if (t->nwait) t->nwait--;
            if (!t->nwait && t->state == DP__V1__TASK_STATE__TASK_STATE_BLOCKED) enqueue(c, d);
        } else {
            char id[DP_PLAN_ID_MAX], why[DP_PLAN_ID_MAX + 64];
            task_id(c, i, id, sizeof id);
            snprintf(why, sizeof why, "its input task %s did not complete", id);
            t->state = DP__V1__TASK_STATE__TASK_STATE_FAILED;
            set_str(&t->reason, why);
            on_terminal(c, d, now_ms);
        }
    }
    if (i != c->report) {
        stask_t *r = &c->t[c->report];
        if (r->nwait) r->nwait--;
        if (!r->nwait && r->state == DP__V1__TASK_STATE__TASK_STATE_BLOCKED) enqueue(c, c->report);
    }
    campaign_end_check(c, now_ms);
}

/* Recomputes waits, queues, leases and counts of c from the task states
 * (after snapshot records set them directly). */
static int rebuild(dp_sched_t *s, scamp_t *c)
{
    c->tq.head = c->tq.len = 0;
    c->held.head = c->held.len = 0;
    for (size_t d = 0; d < c->ndev; d++) c->mq[d].head = c->mq[d].len = 0;
    c->nterminal = 0;
    for (uint32_t i = 0; i < c->n; i++) c->t[i].nwait = 0;
    for (uint32_t i = 0; i < c->n; i++) {
        c->nterminal += terminal(c->t[i].state);
        if (c->t[i].state == DP__V1__TASK_STATE__TASK_STATE_DONE) continue;
        for (uint32_t k = c->dep_off[i]; k < c->dep_off[i + 1]; k++) c->t[c->dep[k]].nwait++;
        if (i != c->report) c->t[c->report].nwait++;
    }
    const uint32_t ci = (uint32_t)camp_index(s, c);
    for (uint32_t i = 0; i < c->n; i++) {
        stask_t *t = &c->t[i];
        if (terminal(t->state)) continue;
        if (t->state == DP__V1__TASK_STATE__TASK_STATE_LEASED && t->holder) {
            if (grow((void **)&s->leased, &s->capleased, s->nleased + 1, sizeof *s->leased))
                return -1;
            s->leased[s->nleased++] = (lref_t){ci, i};
            continue;
        }
        t->state = t->nwait ? DP__V1__TASK_STATE__TASK_STATE_BLOCKED
                            : DP__V1__TASK_STATE__TASK_STATE_QUEUED;
        if (t->nwait) continue;
        if (t->retry_at ? q_push(&c->held, i) : enqueue(c, i)) return -1;
    }
    c->dirty = 0;
    return 0;
}

static void ensure(dp_sched_t *s)
{
    for (size_t i = 0; i < s->ncamps; i++)
        if (s->camps[i]->dirty) rebuild(s, s->camps[i]);
}

/* ---------------------------------------------------------------- planning */

typedef struct plan_fill {
    scamp_t *c;
    uint32_t k;
} plan_fill_t;

static int plan_one(void *ctx, const dp_plan_task_t *p)
{
    plan_fill_t *f = ctx;
    f->c->t[f->k].p = *p;
    if (p->kind == DP__V1__TASK_KIND__TASK_KIND_REPORT) f->c->report = f->k;
    f->k++;
    return 0;
}

/* Deep copy of a campaign through its wire form. */
static Dp__V1__Campaign *campaign_copy(const Dp__V1__Campaign *c)
{
    const size_t len = dp__v1__campaign__get_packed_size(c);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) return NULL;
    dp__v1__campaign__pack(c, buf);
    Dp__V1__Campaign *copy = dp__v1__campaign__unpack(NULL, len, buf);
    free(buf);
    return copy;
}

/* A planned campaign (tasks BLOCKED or QUEUED, nothing leased). */
static dp_err_t camp_new(dp_sched_t *s, const char *cid, const Dp__V1__Campaign *src,
                         const char *token, uint64_t accepted_ms, scamp_t **out)
{
    if (!cid || !*cid || strchr(cid, '/') || camp_find(s, cid))
        return dp_err_set(DP_ERR_FORMAT,
                          "journal: campaign id '%s' is empty, has a '/' or is "
                          "accepted twice",
                          cid ? cid : "");
    uint32_t n;
    dp_err_t err = dp_plan_count(src, &n);
    if (err) return err;
    scamp_t *c = calloc(1, sizeof *c);
    if (!c) return DP_ERR_NOMEM;
    c->id = strdup(cid);
    c->token = dup_or_null(token);
    c->c = campaign_copy(src);
    c->n = n;
    c->ndev = c->c ? c->c->n_device_classes : 0;
    c->t = calloc(n, sizeof *c->t);
    c->nslots = 16;
    while (c->nslots < 2 * (size_t)n) c->nslots *= 2;
    c->slots = calloc(c->nslots, sizeof *c->slots);
    c->dep_off = calloc((size_t)n + 1, sizeof *c->dep_off);
    c->mq = calloc(c->ndev ? c->ndev : 1, sizeof *c->mq);
    c->state = DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_RUNNING;
    c->accepted_ms = accepted_ms;
    if (!c->id || !c->c || !c->t || !c->slots || !c->dep_off || !c->mq) goto nomem;
    plan_fill_t f = {c, 0};
    dp_plan_each(c->c, plan_one, &f);
    c->nb = dp_plan_budgets(c->c);
    if (!(c->bword = calloc(c->nb ? c->nb : 1, sizeof *c->bword))) goto nomem;
    for (uint32_t b = 0; b < c->nb; b++) {
        const dp_plan_budget_t pb = dp_plan_budget_at(c->c, b);
        snprintf(c->bword[b], sizeof c->bword[b], "%s-%g", dp_plan_norm_word(&pb), (double)pb.eps);
    }
    if (c->c->n_models > CAMPAIGN_LIST_MAX_LOCAL || c->ndev > CAMPAIGN_LIST_MAX_LOCAL) {
        camp_free(c);
        return dp_err_set(DP_ERR_RANGE, "campaign: more than %d models or device classes",
                          CAMPAIGN_LIST_MAX_LOCAL);
    }
    char id[DP_PLAN_ID_MAX];
    for (uint32_t i = 0; i < n; i++) {
        if ((i == 0 || i == n - 1) && task_id(c, i, id, sizeof id)) { /* the longest ids */
            camp_free(c);
            return dp_err_set(DP_ERR_RANGE, "campaign: task ids longer than %d bytes",
                              DP_PLAN_ID_MAX - 1);
        }
        uint64_t h = tuple_hash(&c->t[i].p) & (c->nslots - 1);
        while (c->slots[h]) h = (h + 1) & (c->nslots - 1);
        c->slots[h] = i + 1;
    }
    /* dependents, CSR: count, offsets, fill */
    uint32_t *src_of = malloc((size_t)n * sizeof *src_of);
    if (!src_of) goto nomem;
    for (uint32_t i = 0; i < n; i++) {
        dp_plan_task_t d;
        src_of[i] = UINT32_MAX;
        if (dp_plan_deps(c->c, &c->t[i].p, &d) == 1) {
            const long j = tuple_find(c, &d);
            if (j >= 0) {
                src_of[i] = (uint32_t)j;
                c->dep_off[j + 1]++;
            }
        }
    }
    for (uint32_t i = 0; i < n; i++) c->dep_off[i + 1] += c->dep_off[i];
    c->dep = malloc(((size_t)c->dep_off[n] + 1) * sizeof *c->dep);
    uint32_t *fill = calloc((size_t)n + 1, sizeof *fill);
    if (!c->dep || !fill) {
        free(src_of);
        free(fill);
        goto nomem;
    }
    for (uint32_t i = 0; i < n; i++)
        if (src_of[i] != UINT32_MAX) c->dep[c->dep_off[src_of[i]] + fill[src_of[i]]++] = i;
    free(src_of);
    free(fill);
    c->dirty = 1;
    *out = c;
    return DP_OK;
nomem:
    camp_free(c);
    return dp_err_set(DP_ERR_NOMEM, "campaign %s: out of memory for %u tasks", cid, n);
}

static dp_err_t camp_add(dp_sched_t *s, scamp_t *c)
{
    if (grow((void **)&s->camps, &s->capcamps, s->ncamps + 1, sizeof *s->camps)) {
        camp_free(c);
        return DP_ERR_NOMEM;
    }
    s->camps[s->ncamps++] = c;
    s->accepted++;
    return rebuild(s, c) ? DP_ERR_NOMEM : DP_OK;
}

/* ---------------------------------------------------------------- apply */

static dp_err_t apply_accepted(dp_sched_t *s, const Dp__V1__CampaignAccepted *a)
{
    if (!a->campaign)
        return dp_err_set(DP_ERR_FORMAT, "journal: CampaignAccepted without a campaign");
    scamp_t *c;
    dp_err_t err =
        camp_new(s, a->campaign_id, a->campaign, a->client_token, a->accepted_unix_ms, &c);
    return err ? err : camp_add(s, c);
}

static dp_err_t unknown_task(const char *what, const char *id)
{
    return dp_err_set(DP_ERR_NOTFOUND, "journal: %s names unknown task '%s'", what, id ? id : "");
}

static dp_err_t apply_assigned(dp_sched_t *s, const Dp__V1__TaskAssigned *a)
{
    scamp_t *c;
    uint32_t i;
    if (!a->task_id || locate(s, a->task_id, &c, &i))
        return unknown_task("TaskAssigned", a->task_id);
    stask_t *t = &c->t[i];
    if (terminal(t->state)) return DP_OK;
    lease_end(s, c, i);
    t->state = DP__V1__TASK_STATE__TASK_STATE_LEASED;
    t->retry_at = 0;
    t->attempt = (uint8_t)(a->attempt > 255 ? 255 : a->attempt);
    t->holder = strdup(a->worker_id ? a->worker_id : "");
    t->deadline = a->lease_deadline_unix_ms;
    if (!t->holder) return DP_ERR_NOMEM;
    if (grow((void **)&s->leased, &s->capleased, s->nleased + 1, sizeof *s->leased))
        return DP_ERR_NOMEM;
    s->leased[s->nleased++] = (lref_t){(uint32_t)camp_index(s, c), i};
    sworker_t *w = worker_find(s, t->holder);
    if (w) w->running++;
    return DP_OK;
}

static dp_err_t apply_done(dp_sched_t *s, const Dp__V1__TaskDone *d, uint64_t now_ms)
{
    scamp_t *c;
    uint32_t i;
    if (!d->task_id || locate(s, d->task_id, &c, &i)) return unknown_task("TaskDone", d->task_id);
    stask_t *t = &c->t[i];
    if (terminal(t->state)) return DP_OK;
    lease_end(s, c, i);
    t->state = DP__V1__TASK_STATE__TASK_STATE_DONE;
    if (d->attempt && d->attempt < 256) t->attempt = (uint8_t)d->attempt;
    if (d->result) {
        set_str(&t->result, d->result->summary_json);
        t->seconds = d->result->seconds;
    }
    on_terminal(c, i, now_ms);
    return DP_OK;
}

/* How long a task waits after failing attempt: retry_ms doubled per
 * attempt after the first, at most 64 times retry_ms. */
uint64_t dp_sched_retry_wait(const dp_sched_t *s, uint32_t attempt)
{
    const uint32_t shift = attempt > 1 ? (attempt - 1 < 6 ? attempt - 1 : 6) : 0;
    return (uint64_t)s->o.retry_ms << shift;
}

static dp_err_t apply_failed(dp_sched_t *s, const Dp__V1__TaskFailed *f, uint64_t now_ms)
{
    scamp_t *c;
    uint32_t i;
    if (!f->task_id || locate(s, f->task_id, &c, &i)) return unknown_task("TaskFailed", f->task_id);
    stask_t *t = &c->t[i];
    if (terminal(t->state)) return DP_OK;
    lease_end(s, c, i);
    set_str(&t->reason, f->reason);
    if (f->final) {
        t->state = DP__V1__TASK_STATE__TASK_STATE_FAILED;
        on_terminal(c, i, now_ms);
        return DP_OK;
    }
    const uint64_t wait = dp_sched_retry_wait(s, f->attempt);
    if (!wait) return enqueue(c, i) ? DP_ERR_NOMEM : DP_OK;
    t->state = DP__V1__TASK_STATE__TASK_STATE_QUEUED;
    t->retry_at = now_ms + wait;
    return q_push(&c->held, i) ? DP_ERR_NOMEM : DP_OK;
}

/* Moves the held tasks of c whose wait has passed into their queues (at the
 * back); keeps the others, in order. Returns how many moved. */
static size_t release_due(scamp_t *c, uint64_t now_ms)
{
    queue_t *h = &c->held;
    size_t keep = 0, moved = 0;
    for (size_t k = h->head; k < h->len; k++) {
        const uint32_t i = h->v[k];
        stask_t *t = &c->t[i];
        if (t->state != DP__V1__TASK_STATE__TASK_STATE_QUEUED || !t->retry_at) continue;
        if (t->retry_at > now_ms || q_push(queue_of(c, i), i)) {
            h->v[keep++] = i;
            continue;
        }
        t->retry_at = 0;
        moved++;
    }
    h->head = 0;
    h->len = keep;
    return moved;
}

size_t dp_sched_retry_due(dp_sched_t *s, uint64_t now_ms)
{
    size_t moved = 0;
    for (size_t ci = 0; ci < s->ncamps; ci++)
        if (s->camps[ci]->held.len > s->camps[ci]->held.head)
            moved += release_due(s->camps[ci], now_ms);
    return moved;
}

uint64_t dp_sched_next_retry(const dp_sched_t *s)
{
    uint64_t next = 0;
    for (size_t ci = 0; ci < s->ncamps; ci++) {
        const scamp_t *c = s->camps[ci];
        for (size_t k = c->held.head; k < c->held.len; k++) {
            const stask_t *t = &c->t[c->held.v[k]];
            if (t->state == DP__V1__TASK_STATE__TASK_STATE_QUEUED && t->retry_at &&
                (!next || t->retry_at < next))
                next = t->retry_at;
        }
    }
    return next;
}

static dp_err_t apply_cancelled(dp_sched_t *s, const Dp__V1__CampaignCancelled *x, uint64_t now_ms)
{
    scamp_t *c = x->campaign_id ? camp_find(s, x->campaign_id) : NULL;
    if (!c)
        return dp_err_set(DP_ERR_NOTFOUND, "journal: CampaignCancelled names unknown campaign '%s'",
                          x->campaign_id ? x->campaign_id : "");
    if (c->state != DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_RUNNING) return DP_OK;
    for (uint32_t i = 0; i < c->n; i++) {
        if (terminal(c->t[i].state)) continue;
        lease_end(s, c, i);
        c->t[i].state = DP__V1__TASK_STATE__TASK_STATE_CANCELLED;
        c->nterminal++;
    }
    c->state = DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_CANCELLED;
    c->finished_ms = now_ms;
    set_str(&c->reason, x->reason && *x->reason ? x->reason : "cancelled");
    return DP_OK;
}

static dp_err_t apply_snapshot(dp_sched_t *s, const Dp__V1__Snapshot *sn)
{
    for (size_t k = 0; k < sn->n_campaigns; k++) {
        const Dp__V1__CampaignSnapshot *cs = sn->campaigns[k];
        if (!cs->campaign)
            return dp_err_set(DP_ERR_FORMAT, "journal: snapshot of a campaign without it");
        scamp_t *c;
        dp_err_t err =
            camp_new(s, cs->campaign_id, cs->campaign, cs->client_token, cs->accepted_unix_ms, &c);
        if (err) return err;
        c->state = (uint8_t)cs->state;
        c->finished_ms = cs->finished_unix_ms;
        c->reason = dup_or_null(cs->reason);
        if (grow((void **)&s->camps, &s->capcamps, s->ncamps + 1, sizeof *s->camps)) {
            camp_free(c);
            return DP_ERR_NOMEM;
        }
        s->camps[s->ncamps++] = c;
        s->accepted++;
    }
    for (size_t k = 0; k < sn->n_tasks; k++) {
        const Dp__V1__TaskSnapshot *ts = sn->tasks[k];
        scamp_t *c;
        uint32_t i;
        const char *id = ts->task ? ts->task->id : NULL;
        if (!id || locate(s, id, &c, &i)) return unknown_task("Snapshot", id);
        stask_t *t = &c->t[i];
        t->state = (uint8_t)ts->state;
        t->attempt = (uint8_t)(ts->task->attempt > 255 ? 255 : ts->task->attempt);
        set_str(&t->reason, ts->reason);
        set_str(&t->holder,
                t->state == DP__V1__TASK_STATE__TASK_STATE_LEASED ? ts->worker_id : NULL);
        if (t->state == DP__V1__TASK_STATE__TASK_STATE_LEASED && !t->holder) t->holder = strdup("");
        t->deadline = ts->lease_deadline_unix_ms;
        t->retry_at = t->state == DP__V1__TASK_STATE__TASK_STATE_QUEUED ? ts->retry_at_unix_ms : 0;
        if (ts->result) {
            set_str(&t->result, ts->result->summary_json);
            t->seconds = ts->result->seconds;
        }
        c->dirty = 1;
    }
    return DP_OK;
}

dp_err_t dp_sched_apply(dp_sched_t *s, const Dp__V1__JournalRecord *rec, uint64_t now_ms)
{
    if (rec->body_case != DP__V1__JOURNAL_RECORD__BODY_SNAPSHOT) ensure(s);
    switch (rec->body_case) {
    case DP__V1__JOURNAL_RECORD__BODY_CAMPAIGN_ACCEPTED:
        return apply_accepted(s, rec->campaign_accepted);
    case DP__V1__JOURNAL_RECORD__BODY_TASK_ASSIGNED:
        return apply_assigned(s, rec->task_assigned);
    case DP__V1__JOURNAL_RECORD__BODY_TASK_DONE:
        return apply_done(s, rec->task_done, now_ms);
    case DP__V1__JOURNAL_RECORD__BODY_TASK_FAILED:
        return apply_failed(s, rec->task_failed, now_ms);
    case DP__V1__JOURNAL_RECORD__BODY_CAMPAIGN_CANCELLED:
        return apply_cancelled(s, rec->campaign_cancelled, now_ms);
    case DP__V1__JOURNAL_RECORD__BODY_SNAPSHOT:
        return apply_snapshot(s, rec->snapshot);
    case DP__V1__JOURNAL_RECORD__BODY_TASKS_ADDED:
        return dp_err_set(DP_ERR_UNSUPPORTED, "journal: TasksAdded records are not used by this "
                                              "version");
    default:
        return dp_err_set(DP_ERR_FORMAT, "journal: record %llu has no known body",
                          (unsigned long long)rec->lsn);
    }
}

void dp_sched_after_replay(dp_sched_t *s, uint64_t now_ms)
{
    ensure(s);
    const uint64_t until = now_ms + period(s);
    for (size_t k = 0; k < s->nleased; k++) {
        stask_t *t = &s->camps[s->leased[k].c]->t[s->leased[k].t];
        if (t->deadline < until) t->deadline = until;
    }
}

/* ---------------------------------------------------------------- campaigns */

void dp_sched_next_campaign_id(const dp_sched_t *s, const char *name, char *buf, size_t size)
{
    unsigned long long k = s->accepted + 1;
    snprintf(buf, size, "%s-%llu", name && *name ? name : "campaign", k);
    while (camp_find(s, buf))
        snprintf(buf, size, "%s-%llu", name && *name ? name : "campaign", ++k);
}

const char *dp_sched_campaign_by_token(const dp_sched_t *s, const char *token)
{
    if (!token || !*token) return NULL;
    for (size_t i = 0; i < s->ncamps; i++)
        if (s->camps[i]->token && !strcmp(s->camps[i]->token, token)) return s->camps[i]->id;
    return NULL;
}

int dp_sched_campaign_exists(const dp_sched_t *s, const char *cid)
{
    return camp_find(s, cid) != NULL;
}

int dp_sched_campaign_running(const dp_sched_t *s, const char *cid)
{
    const scamp_t *c = camp_find(s, cid);
    return c && c->state == DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_RUNNING;
}

/* ---------------------------------------------------------------- workers */

int dp_sched_worker_hello(dp_sched_t *s, const dp_sched_hello_t *h, uint64_t now_ms)
{
    if (!h->worker_id || !*h->worker_id) return -1;
    if (h->role != DP__V1__ROLE__ROLE_TRAINER && h->role != DP__V1__ROLE__ROLE_MEASURER) return -1;
    sworker_t *w = worker_find(s, h->worker_id);
    if (!w) {
        if (grow((void **)&s->w, &s->capw, s->nw + 1, sizeof *s->w)) return -1;
        w = &s->w[s->nw];
        memset(w, 0, sizeof *w);
        if (!(w->id = strdup(h->worker_id))) return -1;
        s->nw++;
    }
    set_str(&w->cls, h->device_class);
    set_str(&w->host, h->host);
    w->role = h->role;
    w->capacity = h->capacity ? h->capacity : 1;
    w->last_ms = now_ms;
    w->alive = 1;
    w->running = 0;
    for (size_t k = 0; k < s->nleased; k++) {
        stask_t *t = &s->camps[s->leased[k].c]->t[s->leased[k].t];
        if (t->holder && !strcmp(t->holder, w->id)) w->running++;
    }
    return 0;
}

int dp_sched_worker_seen(dp_sched_t *s, const char *worker_id, uint64_t now_ms)
{
    sworker_t *w = worker_find(s, worker_id);
    if (!w || !w->alive) return -1;
    w->last_ms = now_ms;
    if (!w->running) return 0;
    const uint64_t until = now_ms + period(s);
    for (size_t k = 0; k < s->nleased; k++) {
        stask_t *t = &s->camps[s->leased[k].c]->t[s->leased[k].t];
        if (t->holder && !strcmp(t->holder, worker_id) && t->deadline < until) t->deadline = until;
    }
    return 0;
}

void dp_sched_worker_bye(dp_sched_t *s, const char *worker_id, uint64_t now_ms)
{
    sworker_t *w = worker_find(s, worker_id);
    if (!w) return;
    w->alive = 0;
    for (size_t k = 0; k < s->nleased; k++) {
        stask_t *t = &s->camps[s->leased[k].c]->t[s->leased[k].t];
        if (t->holder && !strcmp(t->holder, worker_id)) t->deadline = now_ms;
    }
}

int dp_sched_worker_known(const dp_sched_t *s, const char *worker_id)
{
    const sworker_t *w = worker_find(s, worker_id);
    return w && w->alive;
}

/* 1 when a worker of role r on host h holds a task. */
static int host_busy(const dp_sched_t *s, const char *host, Dp__V1__Role r)
{
    if (!host) return 0;
    for (size_t i = 0; i < s->nw; i++)
        if (s->w[i].alive && s->w[i].role == r && s->w[i].running && s->w[i].host &&
            !strcmp(s->w[i].host, host))
            return 1;
    return 0;
}

/* ---------------------------------------------------------------- decisions */

/* Pops the first QUEUED task of q that is not waiting for its retry, or -1.
 * Entries of tasks in any other state are stale (a task leased from a
 * queue stays in it until popped) and dropped. */
static long q_pop(scamp_t *c, queue_t *q)
{
    while (q->head < q->len) {
        const uint32_t i = q->v[q->head++];
        if (c->t[i].state == DP__V1__TASK_STATE__TASK_STATE_QUEUED && !c->t[i].retry_at)
            return (long)i;
    }
    return -1;
}

/* Device class index of name in c, or -1. */
static long class_index(const scamp_t *c, const char *name)
{
    if (!name) return -1;
    for (size_t d = 0; d < c->ndev; d++)
        if (!strcmp(c->c->device_classes[d]->name, name)) return (long)d;
    return -1;
}

int dp_sched_pick(dp_sched_t *s, const char *worker_id, uint64_t now_ms, char *id_buf, size_t size,
                  uint32_t *attempt)
{
    ensure(s);
    dp_sched_retry_due(s, now_ms);
    sworker_t *w = worker_find(s, worker_id);
    if (!w || !w->alive || w->running >= w->capacity || !s->ncamps) return 0;
    const int measurer = w->role == DP__V1__ROLE__ROLE_MEASURER;
    if (host_busy(s, w->host, measurer ? DP__V1__ROLE__ROLE_TRAINER : DP__V1__ROLE__ROLE_MEASURER))
        return 0;
    size_t *rr = measurer ? &s->rr_measure : &s->rr_train;
    for (size_t k = 0; k < s->ncamps; k++) {
        const size_t ci = (*rr + k) % s->ncamps;
        scamp_t *c = s->camps[ci];
        if (c->state != DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_RUNNING) continue;
        long i;
        if (measurer) {
            const long d = class_index(c, w->cls);
            if (d < 0) continue;
            i = q_pop(c, &c->mq[d]);
        } else {
            i = q_pop(c, &c->tq);
        }
        if (i < 0) continue;
        /* left at the queue's head until the TaskAssigned record is applied */
        queue_t *q = queue_of(c, (uint32_t)i);
        q->head--;
        *rr = (ci + 1) % s->ncamps;
        if (task_id(c, (uint32_t)i, id_buf, size)) return 0;
        *attempt = (uint32_t)c->t[i].attempt + 1;
        return 1;
    }
    return 0;
}

int dp_sched_task_msg(const dp_sched_t *s, const char *task_id_s, Dp__V1__Task *out,
                      dp_plan_strings_t *st)
{
    scamp_t *c;
    uint32_t i;
    if (locate(s, task_id_s, &c, &i)) return -1;
    dp_plan_fill(c->c, c->id, &c->t[i].p, out, st);
    out->attempt = c->t[i].attempt;
    out->max_attempts = s->o.max_attempts;
    return 0;
}

uint64_t dp_sched_lease_deadline(const dp_sched_t *s, uint64_t now_ms)
{
    return now_ms + period(s);
}

void dp_sched_expired(dp_sched_t *s, uint64_t now_ms, dp_sched_expired_fn fn, void *ctx)
{
    ensure(s);
    for (size_t i = 0; i < s->nw; i++)
        if (s->w[i].alive && now_ms > s->w[i].last_ms + period(s)) s->w[i].alive = 0;
    /* collect first: the caller's records change the leased list */
    size_t n = 0;
    lref_t *due = NULL;
    for (size_t k = 0; k < s->nleased; k++) {
        const stask_t *t = &s->camps[s->leased[k].c]->t[s->leased[k].t];
        if (t->deadline > now_ms) continue;
        lref_t *nd = realloc(due, (n + 1) * sizeof *due);
        if (!nd) break;
        due = nd;
        due[n++] = s->leased[k];
    }
    for (size_t k = 0; k < n; k++) {
        scamp_t *c = s->camps[due[k].c];
        const stask_t *t = &c->t[due[k].t];
        if (t->state != DP__V1__TASK_STATE__TASK_STATE_LEASED) continue;
        char id[DP_PLAN_ID_MAX], why[256], holder[128];
        task_id(c, due[k].t, id, sizeof id);
        snprintf(holder, sizeof holder, "%s", t->holder ? t->holder : "");
        const sworker_t *w = worker_find(s, holder);
        if (w && !w->alive && now_ms > w->last_ms + period(s))
            snprintf(why, sizeof why, "lease expired: worker %s silent for %llu ms", holder,
                     (unsigned long long)(now_ms - w->last_ms));
        else if (w && !w->alive)
            snprintf(why, sizeof why, "worker %s disconnected", holder);
        else
            snprintf(why, sizeof why, "lease expired: worker %s did not renew it", holder);
        fn(ctx, id, t->attempt, holder, why, t->attempt >= s->o.max_attempts);
    }
    free(due);
}

int dp_sched_result_new(const dp_sched_t *s, const char *task_id_s, uint32_t attempt)
{
    (void)attempt; /* a result of any attempt completes a task not yet ended */
    scamp_t *c;
    uint32_t i;
    if (locate(s, task_id_s, &c, &i)) return -1;
    return !terminal(c->t[i].state);
}

int dp_sched_failure_new(const dp_sched_t *s, const char *task_id_s, uint32_t attempt,
                         int retryable, int *final)
{
    scamp_t *c;
    uint32_t i;
    if (locate(s, task_id_s, &c, &i)) return -1;
    const stask_t *t = &c->t[i];
    if (t->state != DP__V1__TASK_STATE__TASK_STATE_LEASED || t->attempt != attempt) return 0;
    *final = !retryable || t->attempt >= s->o.max_attempts;
    return 1;
}

int dp_sched_task_stopped(const dp_sched_t *s, const char *task_id_s)
{
    scamp_t *c;
    uint32_t i;
    if (locate(s, task_id_s, &c, &i)) return 1;
    return terminal(c->t[i].state);
}

/* ---------------------------------------------------------------- status */

void dp_sched_counts(const dp_sched_t *s, dp_sched_counts_t *out)
{
    memset(out, 0, sizeof *out);
    out->campaigns_accepted = s->accepted;
    for (size_t ci = 0; ci < s->ncamps; ci++) {
        const scamp_t *c = s->camps[ci];
        if (c->state < 5) out->campaigns[c->state]++;
        for (uint32_t i = 0; i < c->n; i++) {
            const unsigned st = c->t[i].state < 8 ? c->t[i].state : 0;
            const unsigned k = c->t[i].p.kind < 6 ? (unsigned)c->t[i].p.kind : 0;
            out->by_state[st]++;
            out->by_kind[k][st]++;
        }
    }
    for (size_t i = 0; i < s->nw; i++)
        if (s->w[i].alive && s->w[i].role < 4) out->workers_alive[s->w[i].role]++;
}

void dp_sched_workers_alive(const dp_sched_t *s, dp_sched_worker_fn fn, void *ctx)
{
    for (size_t i = 0; i < s->nw; i++)
        if (s->w[i].alive) fn(ctx, s->w[i].role, s->w[i].cls ? s->w[i].cls : "");
}

static void counts_of(const scamp_t *c, Dp__V1__TaskCounts *tc)
{
    for (uint32_t i = 0; i < c->n; i++) switch (c->t[i].state) {
        case DP__V1__TASK_STATE__TASK_STATE_BLOCKED:
            tc->blocked++;
            break;
        case DP__V1__TASK_STATE__TASK_STATE_QUEUED:
            tc->queued++;
            break;
        case DP__V1__TASK_STATE__TASK_STATE_LEASED:
            tc->leased++;
            break;
        case DP__V1__TASK_STATE__TASK_STATE_DONE:
            tc->done++;
            break;
        case DP__V1__TASK_STATE__TASK_STATE_FAILED:
            tc->failed++;
            break;
        case DP__V1__TASK_STATE__TASK_STATE_CANCELLED:
            tc->cancelled++;
            break;
        default:
            break;
        }
}

static char *xstrdup(const char *v) { return strdup(v ? v : ""); }

static Dp__V1__CampaignStatus *campaign_status(const scamp_t *c, int with_tasks)
{
    Dp__V1__CampaignStatus *cs = calloc(1, sizeof *cs);
    Dp__V1__TaskCounts *tc = calloc(1, sizeof *tc);
    if (!cs || !tc) {
        free(cs);
        free(tc);
        return NULL;
    }
    dp__v1__campaign_status__init(cs);
    dp__v1__task_counts__init(tc);
    counts_of(c, tc);
    cs->counts = tc;
    cs->campaign_id = xstrdup(c->id);
    cs->name = xstrdup(c->c->name);
    cs->reason = xstrdup(c->reason);
    cs->state = (Dp__V1__CampaignState)c->state;
    cs->accepted_unix_ms = c->accepted_ms;
    cs->finished_unix_ms = c->finished_ms;
    if (!with_tasks) return cs;
    cs->tasks = calloc(c->n ? c->n : 1, sizeof *cs->tasks);
    if (!cs->tasks) return cs;
    for (uint32_t i = 0; i < c->n; i++) {
        Dp__V1__TaskStatus *ts = calloc(1, sizeof *ts);
        char id[DP_PLAN_ID_MAX];
        if (!ts) break;
        dp__v1__task_status__init(ts);
        task_id(c, i, id, sizeof id);
        ts->task_id = xstrdup(id);
        ts->kind = c->t[i].p.kind;
        ts->state = (Dp__V1__TaskState)c->t[i].state;
        ts->attempt = c->t[i].attempt;
        ts->worker_id = xstrdup(c->t[i].holder);
        ts->reason = xstrdup(c->t[i].reason);
        cs->tasks[cs->n_tasks++] = ts;
    }
    return cs;
}

Dp__V1__StatusReply *dp_sched_status(const dp_sched_t *s, const Dp__V1__StatusRequest *rq,
                                     uint64_t now_ms, dp_err_t *err)
{
    *err = DP_OK;
    const char *want = rq && rq->campaign_id && *rq->campaign_id ? rq->campaign_id : NULL;
    if (want && !camp_find(s, want)) {
        *err = dp_err_set(DP_ERR_NOTFOUND, "no campaign '%s'", want);
        return NULL;
    }
    Dp__V1__StatusReply *r = calloc(1, sizeof *r);
    Dp__V1__TaskCounts *tot = calloc(1, sizeof *tot);
    if (!r || !tot) goto nomem;
    dp__v1__status_reply__init(r);
    dp__v1__task_counts__init(tot);
    r->totals = tot;
    r->campaigns = calloc(s->ncamps ? s->ncamps : 1, sizeof *r->campaigns);
    if (!r->campaigns) goto nomem;
    for (size_t i = 0; i < s->ncamps; i++) {
        const scamp_t *c = s->camps[i];
        counts_of(c, tot);
        if (want && strcmp(c->id, want)) continue;
        Dp__V1__CampaignStatus *cs = campaign_status(c, rq && rq->tasks);
        if (!cs) goto nomem;
        r->campaigns[r->n_campaigns++] = cs;
    }
    if (rq && rq->workers) {
        r->workers = calloc(s->nw ? s->nw : 1, sizeof *r->workers);
        if (!r->workers) goto nomem;
        for (size_t i = 0; i < s->nw; i++) {
            Dp__V1__WorkerStatus *ws = calloc(1, sizeof *ws);
            if (!ws) goto nomem;
            dp__v1__worker_status__init(ws);
            ws->worker_id = xstrdup(s->w[i].id);
            ws->role = s->w[i].role;
            ws->device_class = xstrdup(s->w[i].cls);
            ws->capacity = s->w[i].capacity;
            ws->running = s->w[i].running;
            ws->silent_ms = now_ms > s->w[i].last_ms ? now_ms - s->w[i].last_ms : 0;
            ws->alive = s->w[i].alive;
            r->workers[r->n_workers++] = ws;
        }
    }
    /* every device class named by a running campaign, with its live measurers */
    size_t ncls = 0;
    for (size_t i = 0; i < s->ncamps; i++) ncls += s->camps[i]->ndev;
    r->device_classes = calloc(ncls ? ncls : 1, sizeof *r->device_classes);
    if (!r->device_classes) goto nomem;
    for (size_t i = 0; i < s->ncamps; i++) {
        const scamp_t *c = s->camps[i];
        if (c->state != DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_RUNNING) continue;
        if (want && strcmp(c->id, want)) continue;
        for (size_t d = 0; d < c->ndev; d++) {
            const char *name = c->c->device_classes[d]->name;
            Dp__V1__DeviceClassStatus *ds = NULL;
            for (size_t k = 0; k < r->n_device_classes; k++)
                if (!strcmp(r->device_classes[k]->name, name)) ds = r->device_classes[k];
            if (!ds) {
                if (!(ds = calloc(1, sizeof *ds))) goto nomem;
                dp__v1__device_class_status__init(ds);
                ds->name = xstrdup(name);
                for (size_t k = 0; k < s->nw; k++)
                    ds->live_measurers += s->w[k].alive &&
                                          s->w[k].role == DP__V1__ROLE__ROLE_MEASURER &&
                                          s->w[k].cls && !strcmp(s->w[k].cls, name);
                r->device_classes[r->n_device_classes++] = ds;
            }
            for (uint32_t t = 0; t < c->n; t++)
                ds->waiting_tasks += c->t[t].p.kind == DP__V1__TASK_KIND__TASK_KIND_MEASURE &&
                                     c->t[t].p.device == d &&
                                     (c->t[t].state == DP__V1__TASK_STATE__TASK_STATE_QUEUED ||
                                      c->t[t].state == DP__V1__TASK_STATE__TASK_STATE_BLOCKED);
        }
    }
    return r;
nomem:
    dp_sched_status_free(&r);
    *err = dp_err_set(DP_ERR_NOMEM, "status: out of memory");
    return NULL;
}

void dp_sched_status_free(Dp__V1__StatusReply **pr)
{
    if (!pr || !*pr) return;
    Dp__V1__StatusReply *r = *pr;
    for (size_t i = 0; i < r->n_campaigns; i++) {
        Dp__V1__CampaignStatus *cs = r->campaigns[i];
        for (size_t k = 0; k < cs->n_tasks; k++) {
            free(cs->tasks[k]->task_id);
            free(cs->tasks[k]->worker_id);
            free(cs->tasks[k]->reason);
            free(cs->tasks[k]);
        }
        free(cs->tasks);
        free(cs->counts);
        free(cs->campaign_id);
        free(cs->name);
        free(cs->reason);
        free(cs);
    }
    free(r->campaigns);
    for (size_t i = 0; i < r->n_workers; i++) {
        free(r->workers[i]->worker_id);
        free(r->workers[i]->device_class);
        free(r->workers[i]);
    }
    free(r->workers);
    for (size_t i = 0; i < r->n_device_classes; i++) {
        free(r->device_classes[i]->name);
        free(r->device_classes[i]);
    }
    free(r->device_classes);
    free(r->totals);
    free(r);
    *pr = NULL;
}

/* ---------------------------------------------------------------- summary */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf_t;

static void sb_put(sbuf_t *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (grow((void **)&b->p, &b->cap, b->len + n + 1, 1)) {
        b->oom = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_printf(sbuf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf_t *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* A JSON string literal of v (control characters escaped). */
static void sb_json_str(sbuf_t *b, const char *v)
{
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)(v ? v : ""); *p; p++) {
        if (*p == '"' || *p == '\\') {
            char e[2] = {'\\', (char)*p};
            sb_put(b, e, 2);
        } else if (*p < 0x20) {
            sb_printf(b, "\\u%04x", *p);
        } else {
            sb_put(b, (const char *)p, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static const char *state_word(uint8_t st)
{
    static const char *const w[] = {"unspecified", "blocked", "queued",   "leased",
                                    "done",        "failed",  "cancelled"};
    return st < 7 ? w[st] : "unknown";
}

static const char *campaign_word(uint8_t st)
{
    static const char *const w[] = {"unspecified", "running", "done", "failed", "cancelled"};
    return st < 5 ? w[st] : "unknown";
}

char *dp_sched_summary_json(const dp_sched_t *s, const char *cid)
{
    const scamp_t *c = camp_find(s, cid);
    if (!c) return NULL;
    Dp__V1__TaskCounts tc;
    dp__v1__task_counts__init(&tc);
    counts_of(c, &tc);
    sbuf_t b = {0};
    sb_put(&b, "{\"campaign\":", 12);
    sb_json_str(&b, c->id);
    sb_put(&b, ",\"name\":", 8);
    sb_json_str(&b, c->c->name);
    sb_printf(&b, ",\"state\":\"%s\",\"reason\":", campaign_word(c->state));
    sb_json_str(&b, c->reason);
    sb_printf(&b,
              ",\"accepted_unix_ms\":%llu,\"finished_unix_ms\":%llu,\"tasks\":%u,\"done\":%u,"
              "\"failed\":%u,\"cancelled\":%u,\"results\":[",
              (unsigned long long)c->accepted_ms, (unsigned long long)c->finished_ms, c->n, tc.done,
              tc.failed, tc.cancelled);
    int first = 1;
    for (uint32_t i = 0; i < c->n; i++) {
        const stask_t *t = &c->t[i];
        char id[DP_PLAN_ID_MAX], key[DP_PLAN_ID_MAX];
        task_id(c, i, id, sizeof id);
        dp_plan_task_key(c->c, c->id, &t->p, key, sizeof key);
        sb_put(&b, first ? "{\"task\":" : ",{\"task\":", first ? 8 : 9);
        first = 0;
        sb_json_str(&b, id);
        sb_printf(&b, ",\"state\":\"%s\",\"attempts\":%u,\"key\":", state_word(t->state),
                  t->attempt);
        sb_json_str(&b, key);
        if (t->reason) {
            sb_put(&b, ",\"reason\":", 10);
            sb_json_str(&b, t->reason);
        }
        if (t->state == DP__V1__TASK_STATE__TASK_STATE_DONE) {
            sb_printf(&b, ",\"seconds\":%.6g", t->seconds);
            if (t->result && *t->result) {
                sb_put(&b, ",\"summary\":", 11);
                sb_put(&b, t->result, strlen(t->result));
            }
        }
        sb_put(&b, "}", 1);
    }
    sb_put(&b, "]}\n", 3);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* ---------------------------------------------------------------- snapshot */

#define SNAP_TASKS_PER_RECORD 20000

dp_err_t dp_sched_snapshot(const dp_sched_t *s, dp_sched_record_fn fn, void *ctx)
{
    for (size_t ci = 0; ci < s->ncamps; ci++) {
        const scamp_t *c = s->camps[ci];
        uint32_t nlisted = 0;
        for (uint32_t i = 0; i < c->n; i++)
            nlisted += c->t[i].attempt || terminal(c->t[i].state) || c->t[i].reason;
        const uint32_t parts = 1 + nlisted / SNAP_TASKS_PER_RECORD;
        uint32_t next = 0;
        for (uint32_t part = 0; part < parts; part++) {
            Dp__V1__JournalRecord rec;
            Dp__V1__Snapshot sn;
            Dp__V1__CampaignSnapshot cs, *csp = &cs;
            dp__v1__journal_record__init(&rec);
            dp__v1__snapshot__init(&sn);
            rec.body_case = DP__V1__JOURNAL_RECORD__BODY_SNAPSHOT;
            rec.snapshot = &sn;
            sn.part = part + 1;
            sn.parts = parts;
            if (part == 0) {
                dp__v1__campaign_snapshot__init(&cs);
                cs.campaign_id = c->id;
                cs.campaign = c->c;
                cs.state = (Dp__V1__CampaignState)c->state;
                cs.client_token = c->token ? c->token : "";
                cs.accepted_unix_ms = c->accepted_ms;
                cs.finished_unix_ms = c->finished_ms;
                cs.tasks_total = c->n;
                cs.reason = c->reason ? c->reason : "";
                sn.n_campaigns = 1;
                sn.campaigns = &csp;
            }
            Dp__V1__TaskSnapshot *ts = calloc(SNAP_TASKS_PER_RECORD, sizeof *ts);
            Dp__V1__TaskSnapshot **tsp = calloc(SNAP_TASKS_PER_RECORD, sizeof *tsp);
            Dp__V1__Task *tk = calloc(SNAP_TASKS_PER_RECORD, sizeof *tk);
            Dp__V1__TaskResult *tr = calloc(SNAP_TASKS_PER_RECORD, sizeof *tr);
            char(*ids)[DP_PLAN_ID_MAX] = calloc(SNAP_TASKS_PER_RECORD, DP_PLAN_ID_MAX);
            dp_err_t err = DP_OK;
            if (!ts || !tsp || !tk || !tr || !ids) {
                err = DP_ERR_NOMEM;
                goto part_done;
            }
            size_t k = 0;
            for (; next < c->n && k < SNAP_TASKS_PER_RECORD; next++) {
                const stask_t *t = &c->t[next];
                if (!(t->attempt || terminal(t->state) || t->reason)) continue;
                dp__v1__task_snapshot__init(&ts[k]);
                dp__v1__task__init(&tk[k]);
                task_id(c, next, ids[k], DP_PLAN_ID_MAX);
                tk[k].id = ids[k];
                tk[k].attempt = t->attempt;
                ts[k].task = &tk[k];
                ts[k].state = (Dp__V1__TaskState)t->state;
                ts[k].worker_id = t->holder ? t->holder : "";
                ts[k].lease_deadline_unix_ms = t->deadline;
                ts[k].reason = t->reason ? t->reason : "";
                ts[k].retry_at_unix_ms =
                    t->state == DP__V1__TASK_STATE__TASK_STATE_QUEUED ? t->retry_at : 0;
                if (t->state == DP__V1__TASK_STATE__TASK_STATE_DONE) {
                    dp__v1__task_result__init(&tr[k]);
                    tr[k].summary_json = t->result ? t->result : "";
                    tr[k].seconds = t->seconds;
                    ts[k].result = &tr[k];
                }
                tsp[k] = &ts[k];
                k++;
            }
            sn.n_tasks = k;
            sn.tasks = tsp;
            err = fn(ctx, &rec);
        part_done:
            free(ts);
            free(tsp);
            free(tk);
            free(tr);
            free(ids);
            if (err) return err;
        }
    }
    return DP_OK;
}
