/* Decoded dataset splits kept across tasks (task.h, dp_task_cache_t).
 * Entries are keyed by the split's files as found on disk (format, path,
 * size and modification time of the images and the labels file), so a
 * replaced file is decoded again. A task borrows an entry (a reference)
 * for its run; entries nobody borrows are dropped, oldest use first, while
 * the cache holds more than its byte bound. Decoding happens outside the
 * lock: two tasks that miss the same split at once both decode it, and the
 * second copy is dropped. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "task/task_impl.h"

typedef struct entry {
    char *key;
    dp_dataset_t *d;
    size_t bytes;
    int refs;
    uint64_t used;
} entry_t;

struct dp_task_cache {
    pthread_mutex_t mu;
    entry_t *e;
    size_t n, cap;
    size_t bytes, max_bytes;
    uint64_t tick;
    dp_task_cache_stats_t st;
};

dp_err_t dp_task_cache_new(size_t max_bytes, dp_task_cache_t **out)
{
    *out = NULL;
    dp_task_cache_t *c = calloc(1, sizeof *c);
    if (!c) return dp_err_set(DP_ERR_NOMEM, "task cache: out of memory");
    if (pthread_mutex_init(&c->mu, NULL)) {
        free(c);
        return dp_err_set(DP_ERR_NOMEM, "task cache: cannot make a mutex");
    }
    c->max_bytes = max_bytes ? max_bytes : DP_TASK_CACHE_BYTES;
    *out = c;
    return DP_OK;
}

void dp_task_cache_destroy(dp_task_cache_t **pc)
{
    if (!pc || !*pc) return;
    dp_task_cache_t *c = *pc;
    for (size_t i = 0; i < c->n; i++) {
        free(c->e[i].key);
        dp_dataset_destroy(&c->e[i].d);
    }
    free(c->e);
    pthread_mutex_destroy(&c->mu);
    free(c);
    *pc = NULL;
}

void dp_task_cache_stats(dp_task_cache_t *c, dp_task_cache_stats_t *out)
{
    pthread_mutex_lock(&c->mu);
    *out = c->st;
    out->bytes = c->bytes;
    pthread_mutex_unlock(&c->mu);
}

static size_t bytes_of(const dp_dataset_t *d)
{
    return (size_t)d->n * (dp_dataset_sample_size(d) * sizeof(float) + sizeof(int32_t));
}

/* Drops unborrowed entries, least recently used first, while over the
 * bound. Under the lock. */
static void trim(dp_task_cache_t *c)
{
    while (c->bytes > c->max_bytes) {
        size_t victim = c->n;
        for (size_t i = 0; i < c->n; i++)
            if (!c->e[i].refs && (victim == c->n || c->e[i].used < c->e[victim].used)) victim = i;
        if (victim == c->n) return; /* everything is borrowed */
        c->bytes -= c->e[victim].bytes;
        free(c->e[victim].key);
        dp_dataset_destroy(&c->e[victim].d);
        c->e[victim] = c->e[--c->n];
        c->st.evictions++;
    }
}

/* "PATH SIZE MTIME" of a file, appended to key; 0, or -1 when it cannot
 * be stat'ed (then the split is not cached: the loader says why). */
static int key_add(char *key, size_t size, const char *path)
{
    struct stat sb;
    if (!path || stat(path, &sb) != 0) return -1;
    const size_t n = strlen(key);
    const int k = snprintf(key + n, size - n, "|%s|%lld|%lld.%09ld", path, (long long)sb.st_size,
                           (long long)sb.st_mtim.tv_sec, (long)sb.st_mtim.tv_nsec);
    return k < 0 || (size_t)k >= size - n ? -1 : 0;
}

dp_err_t task_cache_get(dp_task_cache_t *c, int format, const char *images, const char *labels,
                        task_split_load_fn load, void *arg, const dp_dataset_t **out)
{
    *out = NULL;
    char key[3 * 4096 + 128];
    snprintf(key, sizeof key, "%d", format);
    const int keyed =
        key_add(key, sizeof key, images) == 0 && (!labels || key_add(key, sizeof key, labels) == 0);
    if (keyed) {
        pthread_mutex_lock(&c->mu);
        for (size_t i = 0; i < c->n; i++)
            if (!strcmp(c->e[i].key, key)) {
                c->e[i].refs++;
                c->e[i].used = ++c->tick;
                c->st.hits++;
                *out = c->e[i].d;
                pthread_mutex_unlock(&c->mu);
                return DP_OK;
            }
        c->st.misses++;
        pthread_mutex_unlock(&c->mu);
    }
    dp_dataset_t *d = NULL;
    dp_err_t err = load(arg, &d);
    if (err) return err;
    pthread_mutex_lock(&c->mu);
    char *k = keyed ? strdup(key) : NULL;
    if (k && c->n == c->cap) {
        const size_t cap = c->cap ? 2 * c->cap : 8;
        entry_t *e = realloc(c->e, cap * sizeof *e);
        if (e) c->e = e, c->cap = cap;
    }
    if (k && c->n < c->cap) {
        for (size_t i = 0; i < c->n; i++) /* decoded meanwhile by another task */
            if (!strcmp(c->e[i].key, k)) {
                c->e[i].refs++;
                c->e[i].used = ++c->tick;
                *out = c->e[i].d;
                pthread_mutex_unlock(&c->mu);
                free(k);
                dp_dataset_destroy(&d);
                return DP_OK;
            }
        entry_t *slot = &c->e[c->n++];
        *slot = (entry_t){.key = k, .d = d, .bytes = bytes_of(d), .refs = 1, .used = ++c->tick};
        c->bytes += slot->bytes;
        trim(c);
    } else {
        free(k);
        c->st.uncached++;
    }
    pthread_mutex_unlock(&c->mu);
    /* kept or not (no key, no memory): task_cache_release destroys what the
       cache does not hold */
    *out = d;
    return DP_OK;
}

void task_cache_release(dp_task_cache_t *c, const dp_dataset_t **pd)
{
    if (!pd || !*pd) return;
    pthread_mutex_lock(&c->mu);
    for (size_t i = 0; i < c->n; i++)
        if (c->e[i].d == *pd) {
            if (c->e[i].refs > 0) c->e[i].refs--;
            trim(c);
            pthread_mutex_unlock(&c->mu);
            *pd = NULL;
            return;
        }
    pthread_mutex_unlock(&c->mu);
    dp_dataset_t *d = (dp_dataset_t *)*pd; /* one the cache did not keep: ours */
    dp_dataset_destroy(&d);
    *pd = NULL;
}
