/* The seed corpora of fuzz_journal and fuzz_wire, built from the messages
 * themselves so they follow the .proto files:
 *
 *   DP_WRITE_FUZZ_SEEDS=1 build/tests/coordinator/test_fuzz_seeds
 *
 * writes fuzz/corpus/journal and fuzz/corpus/wire. Without it the test checks
 * that the committed seeds still mean what they meant: every wire seed decodes
 * and validates, every whole journal seed replays. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "journal.h"
#include "wire/envelope.h"

struct buf {
    uint8_t *p;
    size_t n;
};

static void add(struct buf *b, const void *p, size_t n)
{
    b->p = realloc(b->p, b->n + n);
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void add_record(struct buf *b, Dp__V1__JournalRecord *r, uint64_t lsn)
{
    r->lsn = lsn;
    size_t n = dp__v1__journal_record__get_packed_size(r);
    uint8_t *p = malloc(n + 8);
    dp__v1__journal_record__pack(r, p + 8);
    uint32_t len = (uint32_t)n, crc = dp_journal_frame_crc(p + 8, len);
    memcpy(p, &len, 4); /* little-endian host */
    memcpy(p + 4, &crc, 4);
    add(b, p, n + 8);
    free(p);
}

static void write_seed(const char *sub, const char *name, uint8_t mode, const uint8_t *p, size_t n)
{
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/fuzz/corpus/%s", DP_SOURCE_DIR, sub);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    if (strcmp(sub, "journal") == 0) fputc(mode, f);
    cr_assert_eq(fwrite(p, 1, n, f), n);
    fclose(f);
}

static int writing(void) { return getenv("DP_WRITE_FUZZ_SEEDS") != NULL; }

/* ---- a campaign and its tasks ---- */

static Dp__V1__Model model = DP__V1__MODEL__INIT, *models[1] = {&model};
static Dp__V1__Dataset dataset = DP__V1__DATASET__INIT, *datasets[1] = {&dataset};
static Dp__V1__IndexRange test_range = DP__V1__INDEX_RANGE__INIT;
static float eps[2] = {0.03f, 0.09f};
static Dp__V1__Budget budget = DP__V1__BUDGET__INIT, *budgets[1] = {&budget};
static Dp__V1__Baseline baseline = DP__V1__BASELINE__INIT, *baselines[1] = {&baseline};
static Dp__V1__DeviceClass device = DP__V1__DEVICE_CLASS__INIT, *devices[1] = {&device};
static Dp__V1__Campaign campaign = DP__V1__CAMPAIGN__INIT;
static Dp__V1__Task tasks[3], *taskp[3];
static char *input_keys[1] = {"c1/skipnet/linf-0.03/deepperform/generator"};
static char *deps[1] = {"c1/train/skipnet/linf-0.03"};

static void build_campaign(void)
{
    model.name = "skipnet";
    model.family = DP__V1__MODEL_FAMILY__MODEL_FAMILY_SKIPNET;
    model.spec_uri = "file:///srv/models/skipnet.spec.pb";
    model.weights_uri = "file:///srv/models/skipnet.safetensors";
    dataset.name = "fashion";
    dataset.format = DP__V1__DATASET_FORMAT__DATASET_FORMAT_IDX;
    dataset.test_images_uri = "file:///srv/data/t10k-images-idx3-ubyte.gz";
    test_range.end = 500;
    dataset.test_range = &test_range;
    dataset.shard_size = 250;
    budget.norm = DP__V1__NORM__NORM_LINF;
    budget.eps = eps;
    budget.n_eps = 2;
    baseline.method = DP__V1__BASELINE_METHOD__BASELINE_METHOD_ILFO;
    device.name = "x86";
    device.probe = DP__V1__ENERGY_PROBE__ENERGY_PROBE_RAPL;
    campaign.name = "quickstart";
    campaign.models = models;
    campaign.n_models = 1;
    campaign.datasets = datasets;
    campaign.n_datasets = 1;
    campaign.budgets = budgets;
    campaign.n_budgets = 1;
    campaign.baselines = baselines;
    campaign.n_baselines = 1;
    campaign.device_classes = devices;
    campaign.n_device_classes = 1;
    campaign.store_uri = "file:///srv/store";
    const Dp__V1__TaskKind kinds[3] = {DP__V1__TASK_KIND__TASK_KIND_TRAIN,
                                       DP__V1__TASK_KIND__TASK_KIND_GENERATE,
                                       DP__V1__TASK_KIND__TASK_KIND_MEASURE};
    static const char *ids[3] = {"c1/train/skipnet/linf-0.03", "c1/generate/skipnet/linf-0.03/s0",
                                 "c1/measure/x86/skipnet/linf-0.03/deepperform/s0"};
    for (int i = 0; i < 3; i++) {
        Dp__V1__Task *t = &tasks[i];
        dp__v1__task__init(t);
        t->id = (char *)ids[i];
        t->campaign = "c1";
        t->kind = kinds[i];
        t->model = &model;
        t->dataset = &dataset;
        t->norm = DP__V1__NORM__NORM_LINF;
        t->eps = 0.03f;
        t->method = DP__V1__METHOD__METHOD_DEEPPERFORM;
        t->shard_end = i ? 250 : 0;
        t->output_prefix = "c1/skipnet/linf-0.03/deepperform";
        t->store_uri = "file:///srv/store";
        t->max_attempts = 3;
        if (i) {
            t->input_keys = input_keys;
            t->n_input_keys = 1;
            t->depends_on = deps;
            t->n_depends_on = 1;
        }
        if (i == 2) {
            t->device_class = "x86";
            t->device = &device;
        }
        taskp[i] = t;
    }
}

/* ---- journal seeds ---- */

static void journal_records(struct buf *b)
{
    Dp__V1__JournalRecord r = DP__V1__JOURNAL_RECORD__INIT;
    Dp__V1__CampaignAccepted ca = DP__V1__CAMPAIGN_ACCEPTED__INIT;
    ca.campaign_id = "c1";
    ca.campaign = &campaign;
    ca.tasks = taskp;
    ca.n_tasks = 2;
    ca.tasks_total = 3;
    ca.client_token = "tok";
    r.body_case = DP__V1__JOURNAL_RECORD__BODY_CAMPAIGN_ACCEPTED;
    r.campaign_accepted = &ca;
    add_record(b, &r, 1);
    Dp__V1__TasksAdded ta = DP__V1__TASKS_ADDED__INIT;
    ta.campaign_id = "c1";
    ta.tasks = taskp + 2;
    ta.n_tasks = 1;
    r.body_case = DP__V1__JOURNAL_RECORD__BODY_TASKS_ADDED;
    r.tasks_added = &ta;
    add_record(b, &r, 2);
    Dp__V1__TaskAssigned as = DP__V1__TASK_ASSIGNED__INIT;
    as.task_id = tasks[0].id;
    as.attempt = 1;
    as.worker_id = "trainer-1";
    as.lease_deadline_unix_ms = 1765000003000ull;
    r.body_case = DP__V1__JOURNAL_RECORD__BODY_TASK_ASSIGNED;
    r.task_assigned = &as;
    add_record(b, &r, 3);
    Dp__V1__TaskFailed tf = DP__V1__TASK_FAILED__INIT;
    tf.task_id = tasks[0].id;
    tf.attempt = 1;
    tf.reason = "worker trainer-1 lost";
    r.body_case = DP__V1__JOURNAL_RECORD__BODY_TASK_FAILED;
    r.task_failed = &tf;
    add_record(b, &r, 4);
    as.attempt = 2;
    r.body_case = DP__V1__JOURNAL_RECORD__BODY_TASK_ASSIGNED;
    r.task_assigned = &as;
    add_record(b, &r, 5);
    char *keys[1] = {"c1/skipnet/linf-0.03/deepperform/generator"};
    Dp__V1__Metric m = DP__V1__METRIC__INIT, *mp = &m;
    m.name = "epochs";
    m.value = 20;
    Dp__V1__TaskResult res = DP__V1__TASK_RESULT__INIT;
    res.artifact_keys = keys;
    res.n_artifact_keys = 1;
    res.summary = &mp;
    res.n_summary = 1;
    res.summary_json = "{\"epochs\":20}";
    res.seconds = 61.5;
    Dp__V1__TaskDone td = DP__V1__TASK_DONE__INIT;
    td.task_id = tasks[0].id;
    td.attempt = 2;
    td.result = &res;
    r.body_case = DP__V1__JOURNAL_RECORD__BODY_TASK_DONE;
    r.task_done = &td;
    add_record(b, &r, 6);
    Dp__V1__CampaignCancelled cc = DP__V1__CAMPAIGN_CANCELLED__INIT;
    cc.campaign_id = "c1";
    cc.reason = "by dp-submit --cancel";
    r.body_case = DP__V1__JOURNAL_RECORD__BODY_CAMPAIGN_CANCELLED;
    r.campaign_cancelled = &cc;
    add_record(b, &r, 7);
}

static void journal_snapshot(struct buf *b)
{
    Dp__V1__CampaignSnapshot cs = DP__V1__CAMPAIGN_SNAPSHOT__INIT, *csp = &cs;
    cs.campaign_id = "c1";
    cs.campaign = &campaign;
    cs.state = DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_RUNNING;
    cs.tasks_total = 3;
    Dp__V1__TaskSnapshot ts[3], *tsp[3];
    for (int i = 0; i < 3; i++) {
        dp__v1__task_snapshot__init(&ts[i]);
        ts[i].task = taskp[i];
        ts[i].state =
            i ? DP__V1__TASK_STATE__TASK_STATE_BLOCKED : DP__V1__TASK_STATE__TASK_STATE_LEASED;
        ts[i].worker_id = i ? "" : "trainer-2";
        tsp[i] = &ts[i];
    }
    Dp__V1__Snapshot s = DP__V1__SNAPSHOT__INIT;
    s.part = 1;
    s.parts = 2;
    s.covers_lsn = 40;
    s.campaigns = &csp;
    s.n_campaigns = 1;
    s.tasks = tsp;
    s.n_tasks = 1;
    Dp__V1__JournalRecord r = DP__V1__JOURNAL_RECORD__INIT;
    r.body_case = DP__V1__JOURNAL_RECORD__BODY_SNAPSHOT;
    r.snapshot = &s;
    add_record(b, &r, 41);
    s.part = 2;
    s.n_campaigns = 0;
    s.tasks = tsp + 1;
    s.n_tasks = 2;
    add_record(b, &r, 42);
    Dp__V1__TaskAssigned as = DP__V1__TASK_ASSIGNED__INIT;
    as.task_id = tasks[1].id;
    as.attempt = 1;
    as.worker_id = "trainer-3";
    r.body_case = DP__V1__JOURNAL_RECORD__BODY_TASK_ASSIGNED;
    r.task_assigned = &as;
    add_record(b, &r, 43);
}

Test(fuzz_seeds, journal)
{
    build_campaign();
    uint8_t hdr[DP_JOURNAL_HEADER_SIZE];
    dp_journal_header(hdr);
    struct buf recs = {0}, snap = {0};
    add(&recs, hdr, sizeof hdr);
    journal_records(&recs);
    add(&snap, hdr, sizeof hdr);
    journal_snapshot(&snap);
    dp_journal_replay_info_t info;
    cr_assert_eq(dp_journal_scan(recs.p, recs.n, NULL, NULL, NULL, &info), DP_OK, "%s",
                 dp_err_detail());
    cr_assert_eq(info.records, 7);
    cr_assert_eq(dp_journal_scan(snap.p, snap.n, NULL, NULL, NULL, &info), DP_OK);
    cr_assert_eq(info.records, 3);
    if (writing()) {
        /* mode 0: a whole file; mode 3: frames only, the harness adds the
         * header and fixes CRCs */
        write_seed("journal", "records", 0, recs.p, recs.n);
        write_seed("journal", "records_frames", 3, recs.p + 16, recs.n - 16);
        write_seed("journal", "snapshot", 0, snap.p, snap.n);
        write_seed("journal", "snapshot_frames", 3, snap.p + 16, snap.n - 16);
        write_seed("journal", "torn_tail", 0, recs.p, recs.n - 5);
        uint8_t *c = malloc(recs.n);
        memcpy(c, recs.p, recs.n);
        c[16 + 8 + 20] ^= 0x40; /* inside the first record: corrupt, valid ones follow */
        write_seed("journal", "corrupt_middle", 0, c, recs.n);
        free(c);
        write_seed("journal", "header_only", 0, hdr, sizeof hdr);
    }
    free(recs.p);
    free(snap.p);

    /* the committed seeds of mode 0 that are whole journals still replay */
    const char *whole[] = {"records", "snapshot", "header_only"};
    for (size_t i = 0; i < sizeof whole / sizeof *whole; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s/fuzz/corpus/journal/%s", DP_SOURCE_DIR, whole[i]);
        FILE *f = fopen(path, "rb");
        cr_assert_not_null(f, "%s: run with DP_WRITE_FUZZ_SEEDS=1", path);
        uint8_t b[8192];
        size_t n = fread(b, 1, sizeof b, f);
        fclose(f);
        cr_assert_gt(n, 1);
        cr_assert_eq(b[0], 0);
        cr_assert_eq(dp_journal_scan(b + 1, n - 1, NULL, NULL, NULL, &info), DP_OK, "%s: %s", path,
                     dp_err_detail());
        cr_assert_eq(info.dropped_bytes, 0);
    }
}

/* ---- wire seeds: one envelope per body ---- */

static const char *wire_names[32];
static int n_wire_names;

static void seed_env(Dp__V1__Envelope *e, const char *name)
{
    wire_names[n_wire_names++] = name;
    e->version = 1;
    e->seq = 7;
    e->sender_id = "seed";
    size_t n = dp__v1__envelope__get_packed_size(e);
    uint8_t *b = malloc(n ? n : 1);
    dp__v1__envelope__pack(e, b);
    Dp__V1__Envelope *d = NULL;
    cr_assert_eq(dp_wire_decode(b, n, 0, &d), DP_OK, "%s: %s", name, dp_err_detail());
    dp_wire_free(&d);
    if (writing()) write_seed("wire", name, 0, b, n);
    free(b);
}

Test(fuzz_seeds, wire)
{
    build_campaign();
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;
#define BODY(field, CASE, value)                                                                   \
    do {                                                                                           \
        e.body_case = DP__V1__ENVELOPE__BODY_##CASE;                                               \
        e.field = (value);                                                                         \
        seed_env(&e, #field);                                                                      \
    } while (0)

    Dp__V1__TaskKind kinds[1] = {DP__V1__TASK_KIND__TASK_KIND_MEASURE};
    Dp__V1__Hello h = DP__V1__HELLO__INIT;
    h.role = DP__V1__ROLE__ROLE_MEASURER;
    h.worker_id = "measurer-1";
    h.device_class = "x86";
    h.energy_probe = DP__V1__ENERGY_PROBE__ENERGY_PROBE_RAPL;
    h.capacity = 1;
    h.software_version = "0.1.0";
    h.protocol_min = h.protocol_max = 1;
    h.kinds = kinds;
    h.n_kinds = 1;
    h.threads = 4;
    BODY(hello, HELLO, &h);
    Dp__V1__Welcome w = DP__V1__WELCOME__INIT;
    w.protocol_version = 1;
    w.heartbeat_ms = 1000;
    w.liveness = 3;
    w.coordinator_id = "coord-0";
    w.session = 99;
    BODY(welcome, WELCOME, &w);
    Dp__V1__Ready rd = DP__V1__READY__INIT;
    rd.slots = 2;
    BODY(ready, READY, &rd);
    tasks[2].attempt = 1;
    Dp__V1__Assign as = DP__V1__ASSIGN__INIT;
    as.task = &tasks[2];
    as.lease_ms = 3000;
    BODY(assign, ASSIGN, &as);
    Dp__V1__TaskRef ref = DP__V1__TASK_REF__INIT, *refp = &ref;
    ref.task_id = tasks[2].id;
    ref.attempt = 1;
    Dp__V1__Heartbeat hb = DP__V1__HEARTBEAT__INIT;
    hb.running = &refp;
    hb.n_running = 1;
    BODY(heartbeat, HEARTBEAT, &hb);
    Dp__V1__Progress pr = DP__V1__PROGRESS__INIT;
    pr.task_id = tasks[2].id;
    pr.attempt = 1;
    pr.done = 100;
    pr.total = 250;
    pr.message = "inputs measured";
    BODY(progress, PROGRESS, &pr);
    char *keys[1] = {"c1/skipnet/linf-0.03/deepperform/s0/measure-x86"};
    Dp__V1__Metric m = DP__V1__METRIC__INIT, *mp = &m;
    m.name = "latency_p99_ms";
    m.value = 4.25;
    Dp__V1__TaskResult tr = DP__V1__TASK_RESULT__INIT;
    tr.artifact_keys = keys;
    tr.n_artifact_keys = 1;
    tr.summary = &mp;
    tr.n_summary = 1;
    tr.summary_json = "{\"p99_ms\":4.25}";
    tr.seconds = 8;
    tr.worker_id = "measurer-1";
    Dp__V1__Result res = DP__V1__RESULT__INIT;
    res.task_id = tasks[2].id;
    res.attempt = 1;
    res.result = &tr;
    BODY(result, RESULT, &res);
    Dp__V1__Failure fl = DP__V1__FAILURE__INIT;
    fl.task_id = tasks[2].id;
    fl.attempt = 1;
    fl.reason = "store: connection refused";
    fl.retryable = 1;
    fl.code = 11;
    BODY(failure, FAILURE, &fl);
    Dp__V1__Submit sb = DP__V1__SUBMIT__INIT;
    sb.campaign = &campaign;
    sb.client_token = "tok-1";
    BODY(submit, SUBMIT, &sb);
    Dp__V1__SubmitReply sr = DP__V1__SUBMIT_REPLY__INIT;
    sr.campaign_id = "c1";
    sr.tasks = 3;
    BODY(submit_reply, SUBMIT_REPLY, &sr);
    Dp__V1__StatusRequest sq = DP__V1__STATUS_REQUEST__INIT;
    sq.campaign_id = "c1";
    sq.tasks = 1;
    sq.workers = 1;
    BODY(status_request, STATUS_REQUEST, &sq);
    Dp__V1__TaskCounts counts = DP__V1__TASK_COUNTS__INIT;
    counts.done = 1;
    counts.queued = 1;
    counts.blocked = 1;
    Dp__V1__TaskStatus ts = DP__V1__TASK_STATUS__INIT, *tsp = &ts;
    ts.task_id = tasks[0].id;
    ts.kind = DP__V1__TASK_KIND__TASK_KIND_TRAIN;
    ts.state = DP__V1__TASK_STATE__TASK_STATE_DONE;
    ts.attempt = 2;
    Dp__V1__CampaignStatus cs = DP__V1__CAMPAIGN_STATUS__INIT, *csp = &cs;
    cs.campaign_id = "c1";
    cs.name = "quickstart";
    cs.state = DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_RUNNING;
    cs.counts = &counts;
    cs.tasks = &tsp;
    cs.n_tasks = 1;
    Dp__V1__WorkerStatus ws = DP__V1__WORKER_STATUS__INIT, *wsp = &ws;
    ws.worker_id = "trainer-2";
    ws.role = DP__V1__ROLE__ROLE_TRAINER;
    ws.capacity = 1;
    ws.alive = 1;
    Dp__V1__DeviceClassStatus dc = DP__V1__DEVICE_CLASS_STATUS__INIT, *dcp = &dc;
    dc.name = "jetson-nano";
    dc.waiting_tasks = 4;
    Dp__V1__StatusReply st = DP__V1__STATUS_REPLY__INIT;
    st.campaigns = &csp;
    st.n_campaigns = 1;
    st.workers = &wsp;
    st.n_workers = 1;
    st.device_classes = &dcp;
    st.n_device_classes = 1;
    st.totals = &counts;
    st.journal_lsn = 43;
    BODY(status_reply, STATUS_REPLY, &st);
    Dp__V1__Cancel cn = DP__V1__CANCEL__INIT;
    cn.campaign_id = "c1";
    cn.reason = "superseded";
    BODY(cancel, CANCEL, &cn);
    Dp__V1__CancelReply cr = DP__V1__CANCEL_REPLY__INIT;
    cr.campaign_id = "c1";
    cr.tasks_cancelled = 2;
    BODY(cancel_reply, CANCEL_REPLY, &cr);
    Dp__V1__Disconnect dx = DP__V1__DISCONNECT__INIT;
    dx.reason = "shutting down";
    BODY(disconnect, DISCONNECT, &dx);
    Dp__V1__Error er = DP__V1__ERROR__INIT;
    er.code = DP__V1__ERROR_CODE__ERROR_CODE_NOT_REGISTERED;
    er.message = "hello first";
    BODY(error, ERROR, &er);
#undef BODY

    /* the committed seeds still decode and validate */
    cr_assert_eq(n_wire_names, 16);
    for (int i = 0; i < n_wire_names; i++) {
        char path[800];
        snprintf(path, sizeof path, "%s/fuzz/corpus/wire/%s", DP_SOURCE_DIR, wire_names[i]);
        FILE *f = fopen(path, "rb");
        cr_assert_not_null(f, "%s: run with DP_WRITE_FUZZ_SEEDS=1", path);
        uint8_t b[8192];
        size_t n = fread(b, 1, sizeof b, f);
        fclose(f);
        Dp__V1__Envelope *env = NULL;
        cr_assert_eq(dp_wire_decode(b, n, 0, &env), DP_OK, "%s: %s", path, dp_err_detail());
        cr_assert_str_eq(dp_wire_body_name(env), wire_names[i]);
        dp_wire_free(&env);
    }
}
