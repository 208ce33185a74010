/* The model object: tensor registration into one parameter block (plus
 * gradient and Adam blocks of the same size) and one buffer block, the
 * activation arena, safetensors save/load checked against the spec, and the
 * dispatch to the family implementations. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adnn/adnn_impl.h"

static const adnn_family_ops_t *family_ops(adnn_family_t f)
{
    switch (f) {
    case ADNN_FAMILY_SDN_RESNET:
        return &adnn_sdn_resnet_ops;
    case ADNN_FAMILY_SKIPNET:
        return &adnn_skipnet_ops;
    case ADNN_FAMILY_BLOCKDROP:
        return &adnn_blockdrop_ops;
    case ADNN_FAMILY_SDN_MOBILENET:
        return &adnn_sdn_mobilenet_ops;
    case ADNN_FAMILY_RANET:
        return &adnn_ranet_ops;
    default:
        return NULL;
    }
}

float *adnn_reg(adnn_model_t *m, const char *name, int trainable, adnn_init_t init, int fan_in,
                int ndim, int d0, int d1, int d2, int d3)
{
    if (m->pointing) {
        adnn_tensor_rec_t *t = &m->tensors[m->next_tensor++];
        return (t->trainable ? m->params : m->buffers) + t->offset;
    }
    if (m->ntensors == m->tcap) {
        size_t cap = m->tcap ? 2 * m->tcap : 64;
        adnn_tensor_rec_t *nt = realloc(m->tensors, cap * sizeof *nt);
        if (!nt) return NULL; /* detected after the pass: ntensors stops growing */
        m->tensors = nt;
        m->tcap = cap;
    }
    adnn_tensor_rec_t *t = &m->tensors[m->ntensors++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    int d[4] = {d0, d1, d2, d3};
    t->ndim = ndim;
    t->numel = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = d[i];
        t->numel *= (size_t)d[i];
    }
    t->trainable = trainable;
    t->init = init;
    t->fan_in = fan_in;
    if (trainable) {
        t->offset = m->nparams;
        m->nparams += t->numel;
    } else {
        t->offset = m->nbuffers;
        m->nbuffers += t->numel;
    }
    return NULL;
}

float *adnn_grad(adnn_model_t *m, const float *p)
{
    if (!m->want_param_grads) return NULL;
    return m->grads + (p - m->params);
}

void adnn_arena_reset(adnn_model_t *m)
{
    m->cur_chunk = 0;
    m->cur_off = 0;
}

float *adnn_arena_get(adnn_model_t *m, size_t n)
{
    n = (n + 15) & ~(size_t)15; /* 64-byte steps */
    while (m->cur_chunk < m->nchunks) {
        adnn_chunk_t *c = &m->chunks[m->cur_chunk];
        if (c->cap - m->cur_off >= n) {
            float *p = c->data + m->cur_off;
            m->cur_off += n;
            memset(p, 0, n * sizeof(float));
            return p;
        }
        m->cur_chunk++;
        m->cur_off = 0;
    }
    if (m->nchunks == (int)(sizeof m->chunks / sizeof m->chunks[0])) return NULL;
    size_t cap = n > ((size_t)1 << 22) ? n : ((size_t)1 << 22);
    float *d = calloc(cap, sizeof(float));
    if (!d) return NULL;
    m->chunks[m->nchunks].data = d;
    m->chunks[m->nchunks].cap = cap;
    m->cur_chunk = m->nchunks++;
    m->cur_off = n;
    return d;
}

float *adnn_ws(adnn_model_t *m, size_t n)
{
    if (n > m->ws_size) {
        float *w = realloc(m->ws, n * sizeof(float));
        if (!w) return NULL;
        m->ws = w;
        m->ws_size = n;
    }
    return m->ws;
}

static void init_tensors(adnn_model_t *m, uint64_t seed)
{
    dp_rng_t rng;
    dp_rng_seed(&rng, seed);
    for (size_t i = 0; i < m->ntensors; i++) {
        const adnn_tensor_rec_t *t = &m->tensors[i];
        float *d = (t->trainable ? m->params : m->buffers) + t->offset;
        switch (t->init) {
        case ADNN_INIT_ZERO:
            memset(d, 0, t->numel * sizeof(float));
            break;
        case ADNN_INIT_ONE:
            for (size_t j = 0; j < t->numel; j++) d[j] = 1.0f;
            break;
        case ADNN_INIT_KAIMING: { /* He normal, fan_in, for ReLU networks */
            float sd = sqrtf(2.0f / (float)t->fan_in);
            for (size_t j = 0; j < t->numel; j++) d[j] = sd * dp_rng_normal(&rng);
            break;
        }
        case ADNN_INIT_UNIFORM: { /* PyTorch Linear default */
            float b = 1.0f / sqrtf((float)t->fan_in);
            for (size_t j = 0; j < t->numel; j++) d[j] = (2.0f * dp_rng_uniform(&rng) - 1.0f) * b;
            break;
        }
        }
    }
}

/* A model of spec after the counting build pass: every tensor registered,
 * nparams and nbuffers known, no block allocated. */
static dp_err_t model_counted(const adnn_spec_t *spec, adnn_model_t **out)
{
    *out = NULL;
    dp_err_t err = adnn_spec_validate(spec);
    if (err) return err;
    const adnn_family_ops_t *ops = family_ops(spec->family);
    if (!ops)
        return dp_err_set(DP_ERR_UNSUPPORTED, "model family '%s' is not implemented yet",
                          adnn_family_name(spec->family));
    adnn_model_t *m = calloc(1, sizeof *m);
    if (!m) return dp_err_set(DP_ERR_NOMEM, "out of memory building a model");
    m->spec = *spec;
    m->ops = ops;
    if ((err = ops->build(m))) {
        adnn_model_destroy(&m);
        return err;
    }
    *out = m;
    return DP_OK;
}

/* A model of spec with every tensor registered and pointed, the blocks
 * zeroed and no weights initialised yet. */
static dp_err_t model_alloc(const adnn_spec_t *spec, adnn_model_t **out)
{
    *out = NULL;
    adnn_model_t *m = NULL;
    dp_err_t err = model_counted(spec, &m);
    if (err) return err;
    const adnn_family_ops_t *ops = m->ops;
    size_t counted = m->ntensors;
    m->params = calloc(4 * m->nparams + m->nbuffers + 1, sizeof(float));
    if (!m->params || m->ntensors == 0) {
        err = dp_err_set(DP_ERR_NOMEM, "out of memory for %zu parameters", m->nparams);
        goto fail;
    }
    m->grads = m->params + m->nparams;
    m->adam_m = m->params + 2 * m->nparams;
    m->adam_v = m->params + 3 * m->nparams;
    m->buffers = m->params + 4 * m->nparams;
    m->pointing = 1;
    m->next_tensor = 0;
    err = ops->build(m);
    if (err) goto fail;
    if (m->next_tensor != counted) {
        err = dp_err_set(DP_ERR_NOMEM, "out of memory registering tensors");
        goto fail;
    }
    m->want_param_grads = 1;
    *out = m;
    return DP_OK;
fail:
    adnn_model_destroy(&m);
    return err;
}

dp_err_t adnn_model_new(const adnn_spec_t *spec, uint64_t seed, adnn_model_t **out)
{
    dp_err_t err = model_alloc(spec, out);
    if (err) return err;
    init_tensors(*out, seed);
    (*out)->spec.seed = seed;
    return DP_OK;
}

dp_err_t adnn_model_clone(const adnn_model_t *m, adnn_model_t **out)
{
    adnn_model_t *c = NULL;
    dp_err_t err = model_alloc(&m->spec, &c);
    if (err) return err;
    if (c->ntensors != m->ntensors || c->nparams != m->nparams || c->nbuffers != m->nbuffers) {
        adnn_model_destroy(&c); /* a family whose build depends on more than the spec */
        return dp_err_set(DP_ERR_MISMATCH,
                          "adnn_model_clone: the %s copy has %zu tensors (%zu + %zu floats), the "
                          "original %zu (%zu + %zu)",
                          adnn_family_name(m->spec.family), c->ntensors, c->nparams, c->nbuffers,
                          m->ntensors, m->nparams, m->nbuffers);
    }
    /* parameters, gradients, Adam moments and buffers: one block */
    memcpy(c->params, m->params, (4 * m->nparams + m->nbuffers) * sizeof(float));
    c->adam_t = m->adam_t;
    *out = c;
    return DP_OK;
}

void adnn_model_destroy(adnn_model_t **pm)
{
    if (!pm || !*pm) return;
    adnn_model_t *m = *pm;
    if (m->ops && m->ops->destroy) m->ops->destroy(m);
    for (int i = 0; i < m->nchunks; i++) free(m->chunks[i].data);
    free(m->tensors);
    free(m->params);
    free(m->ws);
    free(m);
    *pm = NULL;
}

const adnn_spec_t *adnn_model_spec(const adnn_model_t *m) { return &m->spec; }

size_t adnn_tensor_count(const adnn_model_t *m) { return m->ntensors; }

size_t adnn_param_count(const adnn_model_t *m) { return m->nparams; }

void adnn_tensor_at(const adnn_model_t *m, size_t i, adnn_tensor_info_t *out)
{
    const adnn_tensor_rec_t *t = &m->tensors[i];
    out->name = t->name;
    out->ndim = t->ndim;
    for (int d = 0; d < ADNN_MAX_DIMS; d++) out->shape[d] = d < t->ndim ? t->shape[d] : 0;
    out->numel = t->numel;
    out->data = (t->trainable ? m->params : m->buffers) + t->offset;
    out->trainable = t->trainable;
}

float *adnn_tensor_grad(const adnn_model_t *m, size_t i)
{
    const adnn_tensor_rec_t *t = &m->tensors[i];
    return t->trainable ? m->grads + t->offset : NULL;
}

dp_err_t adnn_weights_save(const adnn_model_t *m, const char *path)
{
    st_writer_t *w = st_writer_new();
    if (!w) return dp_err_set(DP_ERR_NOMEM, "cannot allocate a safetensors writer");
    dp_err_t err = DP_OK;
    for (size_t i = 0; i < m->ntensors && !err; i++) {
        adnn_tensor_info_t t;
        adnn_tensor_at(m, i, &t);
        err = st_writer_add_f32(w, t.name, t.ndim, t.shape, t.data);
    }
    if (!err) err = st_writer_set_metadata(w, "family", adnn_family_name(m->spec.family));
    if (!err) err = st_writer_write(w, path);
    st_writer_destroy(&w);
    return err;
}

static dp_err_t weights_read(adnn_model_t *m, const st_file_t *f)
{
    dp_err_t err = DP_OK;
    const char *path = st_path(f);
    for (size_t i = 0; i < m->ntensors && !err; i++) {
        adnn_tensor_info_t t;
        adnn_tensor_at(m, i, &t);
        err = st_read_f32(f, t.name, t.ndim, t.shape, t.data);
    }
    if (!err && st_count(f) != m->ntensors) {
        /* every expected tensor is there, so some file tensor is unexpected */
        for (size_t i = 0; i < st_count(f); i++) {
            st_tensor_t ft;
            if (st_tensor_at(f, i, &ft)) continue;
            int known = 0;
            for (size_t j = 0; j < m->ntensors && !known; j++)
                known = strcmp(m->tensors[j].name, ft.name) == 0;
            if (!known) {
                err = dp_err_set(DP_ERR_MISMATCH,
                                 "%s: tensor '%s' is not part of a %s model with this spec", path,
                                 ft.name, adnn_family_name(m->spec.family));
                break;
            }
        }
    }
    return err;
}

dp_err_t adnn_weights_load(adnn_model_t *m, const char *path)
{
    st_file_t *f = NULL;
    dp_err_t err = st_open(path, &f);
    if (err) return err;
    err = weights_read(m, f);
    st_close(&f);
    return err;
}

static dp_err_t join(char *buf, size_t n, const char *prefix, const char *ext)
{
    if ((size_t)snprintf(buf, n, "%s%s", prefix, ext) >= n)
        return dp_err_set(DP_ERR_INVALID, "model path too long: %s", prefix);
    return DP_OK;
}

dp_err_t adnn_model_save(const adnn_model_t *m, const char *prefix)
{
    char p[4096];
    dp_err_t err = join(p, sizeof p, prefix, ".pb");
    if (!err) err = adnn_spec_write(&m->spec, p);
    if (!err) err = join(p, sizeof p, prefix, ".safetensors");
    if (!err) err = adnn_weights_save(m, p);
    return err;
}

/* The floats a spec's model holds (parameters and buffers), from the
 * counting build pass alone: no block is allocated. */
static dp_err_t spec_count_floats(const adnn_spec_t *spec, size_t *out)
{
    adnn_model_t *m = NULL;
    dp_err_t err = model_counted(spec, &m);
    if (err) return err;
    *out = m->nparams + m->nbuffers;
    adnn_model_destroy(&m);
    return DP_OK;
}

/* Before the model's blocks are allocated: the weights file must hold at
 * least as many floats as the spec needs, so a crafted spec (widths and
 * shapes within adnn_spec_validate's bounds can ask for gigabytes) beside a
 * small weights file is refused here, not after allocating and initialising
 * 4x its parameter count. */
static dp_err_t check_weights_cover(const adnn_spec_t *spec, const char *spec_path,
                                    const st_file_t *f)
{
    size_t need = 0;
    dp_err_t err = spec_count_floats(spec, &need);
    if (err) return err;
    size_t have = 0;
    for (size_t i = 0; i < st_count(f); i++) {
        st_tensor_t t;
        if (st_tensor_at(f, i, &t) == DP_OK && t.dtype == ST_F32) have += t.numel;
    }
    if (have < need)
        return dp_err_set(DP_ERR_MISMATCH,
                          "%s: the %s model of %s needs %zu weights, the file holds %zu",
                          st_path(f), adnn_family_name(spec->family), spec_path, need, have);
    return DP_OK;
}

dp_err_t adnn_model_load(const char *prefix, adnn_model_t **out)
{
    *out = NULL;
    char p[4096], wp[4096];
    dp_err_t err = join(p, sizeof p, prefix, ".pb");
    if (!err) err = join(wp, sizeof wp, prefix, ".safetensors");
    if (!err) err = adnn_model_load_files(p, wp, out);
    return err;
}

dp_err_t adnn_model_load_files(const char *spec_path, const char *weights_path, adnn_model_t **out)
{
    *out = NULL;
    adnn_spec_t spec;
    adnn_model_t *m = NULL;
    st_file_t *f = NULL;
    dp_err_t err = adnn_spec_read(spec_path, &spec);
    if (!err) err = st_open(weights_path, &f);
    if (!err) err = check_weights_cover(&spec, spec_path, f);
    if (!err) err = adnn_model_new(&spec, spec.seed, &m);
    if (!err) err = weights_read(m, f);
    st_close(&f);
    if (err) {
        adnn_model_destroy(&m);
        return err;
    }
    *out = m;
    return DP_OK;
}

void adnn_forward_adaptive(adnn_model_t *m, const float *x, adnn_trace_t *trace)
{
    memset(trace, 0, sizeof *trace);
    trace->exit_taken = -1;
    m->ops->forward_adaptive(m, x, trace);
}

int adnn_trace_decisions(const adnn_model_t *m, const adnn_trace_t *t, float *p, float *threshold)
{
    const adnn_spec_t *s = &m->spec;
    if (s->family == ADNN_FAMILY_SKIPNET || s->family == ADNN_FAMILY_BLOCKDROP) {
        *threshold = s->gate_threshold;
        int n = t->ngates < ADNN_MAX_BLOCKS ? t->ngates : ADNN_MAX_BLOCKS;
        memcpy(p, t->gate_p, (size_t)n * sizeof *p);
        return n;
    }
    *threshold = s->exit_tau;
    /* internal exits reached: up to the one taken, or all when none was */
    int last = t->exit_taken >= 0 && t->exit_taken < t->nexits ? t->exit_taken : t->nexits - 1;
    int n = 0;
    for (int k = 0; k <= last && k < ADNN_MAX_EXITS && n < ADNN_MAX_BLOCKS; k++)
        p[n++] = t->conf[k];
    return n;
}

double adnn_flops_full(const adnn_model_t *m, int exact) { return m->ops->flops_full(m, exact); }

dp_err_t adnn_eval_batch(adnn_model_t *m, const float *x, int n, float *out)
{
    return m->ops->eval_batch(m, x, n, out);
}

dp_err_t adnn_train_step(adnn_model_t *m, const float *x, const int32_t *y, int n, double *loss,
                         int *correct)
{
    memset(m->grads, 0, m->nparams * sizeof(float));
    m->want_param_grads = 1;
    int c = 0;
    dp_err_t err = m->ops->train_step(m, x, y, n, loss, &c);
    if (correct) *correct = c;
    return err;
}

void adnn_adam_step(adnn_model_t *m, float lr)
{
    nn_adam_t opt = nn_adam_default(lr);
    opt.t = m->adam_t;
    nn_adam_step(&opt, m->params, m->grads, m->adam_m, m->adam_v, m->nparams);
    m->adam_t = opt.t;
}

int adnn_pk_count(const adnn_model_t *m) { return m->ops->pk_count(m); }

dp_err_t adnn_pk_grad(adnn_model_t *m, const float *x, int n, float *p, double *loss, float *dx)
{
    m->want_param_grads = 0;
    dp_err_t err = m->ops->pk_grad(m, x, n, p, loss, dx);
    m->want_param_grads = 1;
    return err;
}

dp_err_t adnn_exits_backward(adnn_model_t *m, const float *dlogits, int n, float *dx)
{
    if (!m->ops->exits_backward)
        return dp_err_set(DP_ERR_UNSUPPORTED, "adnn_exits_backward: family '%s' has no exits",
                          adnn_family_name(m->spec.family));
    m->want_param_grads = 0;
    dp_err_t err = m->ops->exits_backward(m, dlogits, n, dx);
    m->want_param_grads = 1;
    return err;
}

dp_err_t adnn_pk_vjp(adnn_model_t *m, const float *x, int n, adnn_pk_dloss_fn fn, void *arg,
                     float *p, float *dx)
{
    if (!m->ops->pk_vjp)
        return dp_err_set(DP_ERR_UNSUPPORTED, "adnn_pk_vjp: not implemented for family '%s'",
                          adnn_family_name(m->spec.family));
    m->want_param_grads = 0;
    dp_err_t err = m->ops->pk_vjp(m, x, n, fn, arg, p, dx);
    m->want_param_grads = 1;
    return err;
}
