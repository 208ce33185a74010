/* core/wire/envelope: decode + validate. Every body that is whole passes; what
 * is missing, unknown, too large, not UTF-8 or of the wrong wire type is
 * refused with the field named; unknown fields are ignored. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "wire/envelope.h"

/* Packs e and decodes it again through dp_wire_decode. */
static dp_err_t roundtrip(const Dp__V1__Envelope *e)
{
    size_t n = dp__v1__envelope__get_packed_size(e);
    uint8_t *b = malloc(n ? n : 1);
    cr_assert_eq(dp__v1__envelope__pack(e, b), n);
    Dp__V1__Envelope *out = NULL;
    dp_err_t err = dp_wire_decode(b, n, 0, &out);
    if (err)
        cr_assert_null(out);
    else
        cr_assert_not_null(out);
    dp_wire_free(&out);
    cr_assert_null(out);
    free(b);
    return err;
}

#define ENV(e)                                                                                     \
    Dp__V1__Envelope e = DP__V1__ENVELOPE__INIT;                                                   \
    e.version = 1;                                                                                 \
    e.seq = 1

static void assert_refused(const Dp__V1__Envelope *e, dp_err_t want, const char *detail)
{
    dp_err_t err = roundtrip(e);
    cr_assert_eq(err, want, "got %d (%s), want %d", err, dp_err_detail(), want);
    cr_assert(strstr(dp_err_detail(), detail), "detail '%s' lacks '%s'", dp_err_detail(), detail);
}

Test(wire, hello_roles)
{
    ENV(e);
    Dp__V1__Hello h = DP__V1__HELLO__INIT;
    e.body_case = DP__V1__ENVELOPE__BODY_HELLO;
    e.hello = &h;
    h.role = DP__V1__ROLE__ROLE_TRAINER;
    h.worker_id = "trainer-1";
    h.capacity = 2;
    h.protocol_min = h.protocol_max = 1;
    cr_assert_eq(roundtrip(&e), DP_OK, "%s", dp_err_detail());
    cr_assert_str_eq(dp_wire_body_name(&e), "hello");

    h.capacity = 0;
    assert_refused(&e, DP_ERR_PROTOCOL, "hello.capacity 0");
    h.capacity = 1;
    h.role = DP__V1__ROLE__ROLE_MEASURER;
    assert_refused(&e, DP_ERR_PROTOCOL, "hello.device_class is empty");
    h.device_class = "jetson-nano";
    h.energy_probe = DP__V1__ENERGY_PROBE__ENERGY_PROBE_INA3221;
    cr_assert_eq(roundtrip(&e), DP_OK, "%s", dp_err_detail());
    h.role = DP__V1__ROLE__ROLE_UNSPECIFIED;
    assert_refused(&e, DP_ERR_PROTOCOL, "hello.role is unspecified");
    h.role = (Dp__V1__Role)9;
    assert_refused(&e, DP_ERR_PROTOCOL, "hello.role: unknown Role value 9");
    h.role = DP__V1__ROLE__ROLE_SUBMITTER;
    h.capacity = 0;
    cr_assert_eq(roundtrip(&e), DP_OK);
    h.worker_id = "";
    assert_refused(&e, DP_ERR_PROTOCOL, "hello.worker_id is empty");
    h.worker_id = "a\nb";
    assert_refused(&e, DP_ERR_PROTOCOL, "control character");
    char *long_id = malloc(DP_WIRE_MAX_ID + 2);
    memset(long_id, 'w', DP_WIRE_MAX_ID + 1);
    long_id[DP_WIRE_MAX_ID + 1] = '\0';
    h.worker_id = long_id;
    assert_refused(&e, DP_ERR_PROTOCOL, "hello.worker_id: 512 bytes");
    free(long_id);
    h.worker_id = "s";
    Dp__V1__TaskKind kinds[] = {DP__V1__TASK_KIND__TASK_KIND_TRAIN, (Dp__V1__TaskKind)77};
    h.kinds = kinds;
    h.n_kinds = 2;
    assert_refused(&e, DP_ERR_PROTOCOL, "hello.kinds[1]: unknown TaskKind value 77");
}

Test(wire, version_and_body)
{
    ENV(e);
    Dp__V1__Ready r = DP__V1__READY__INIT;
    e.body_case = DP__V1__ENVELOPE__BODY_READY;
    e.ready = &r;
    cr_assert_eq(roundtrip(&e), DP_OK);
    e.version = 0;
    assert_refused(&e, DP_ERR_UNSUPPORTED, "protocol version 0");
    e.version = DP_WIRE_VERSION + 1;
    assert_refused(&e, DP_ERR_UNSUPPORTED, "protocol version 2");
    e.version = 1;
    e.body_case = DP__V1__ENVELOPE__BODY__NOT_SET;
    assert_refused(&e, DP_ERR_PROTOCOL, "no body");
    cr_assert_str_eq(dp_wire_body_name(&e), "none");
}

static void fill_task(Dp__V1__Task *t)
{
    dp__v1__task__init(t);
    t->id = "c1/generate/skipnet/linf-0.03/s0";
    t->campaign = "c1";
    t->kind = DP__V1__TASK_KIND__TASK_KIND_GENERATE;
    t->attempt = 1;
    t->norm = DP__V1__NORM__NORM_LINF;
    t->eps = 0.03f;
    t->method = DP__V1__METHOD__METHOD_DEEPPERFORM;
    t->shard_begin = 0;
    t->shard_end = 250;
    t->output_prefix = "c1/skipnet/linf-0.03/deepperform/s0";
    t->store_uri = "file:///srv/store";
}

Test(wire, assign_task_fields)
{
    ENV(e);
    Dp__V1__Task t;
    fill_task(&t);
    Dp__V1__Model m = DP__V1__MODEL__INIT;
    m.name = "skipnet";
    m.family = DP__V1__MODEL_FAMILY__MODEL_FAMILY_SKIPNET;
    t.model = &m;
    Dp__V1__Assign a = DP__V1__ASSIGN__INIT;
    a.task = &t;
    a.lease_ms = 3000;
    e.body_case = DP__V1__ENVELOPE__BODY_ASSIGN;
    e.assign = &a;
    cr_assert_eq(roundtrip(&e), DP_OK, "%s", dp_err_detail());

    t.attempt = 0;
    assert_refused(&e, DP_ERR_PROTOCOL, "assign.task.attempt is 0");
    t.attempt = 2;
    t.shard_begin = 300;
    assert_refused(&e, DP_ERR_PROTOCOL, "shard_begin 300 after shard_end 250");
    t.shard_begin = 0;
    t.eps = -1;
    assert_refused(&e, DP_ERR_PROTOCOL, "assign.task.eps -1");
    t.eps = 0.03f;
    t.kind = DP__V1__TASK_KIND__TASK_KIND_MEASURE;
    assert_refused(&e, DP_ERR_PROTOCOL, "assign.task.device_class is empty");
    t.device_class = "x86";
    cr_assert_eq(roundtrip(&e), DP_OK, "%s", dp_err_detail());
    m.family = (Dp__V1__ModelFamily)42;
    assert_refused(&e, DP_ERR_PROTOCOL, "assign.task.model.family: unknown ModelFamily value 42");
    m.family = DP__V1__MODEL_FAMILY__MODEL_FAMILY_SKIPNET;
    char *keys[] = {"c1/skipnet/linf-0.03/deepperform/generator", ""};
    t.input_keys = keys;
    t.n_input_keys = 2;
    assert_refused(&e, DP_ERR_PROTOCOL, "assign.task.input_keys[1] is empty");
    t.n_input_keys = 1;
    a.task = NULL;
    assert_refused(&e, DP_ERR_PROTOCOL, "assign.task is missing");
}

Test(wire, worker_reports)
{
    ENV(e);
    Dp__V1__Progress p = DP__V1__PROGRESS__INIT;
    p.task_id = "t";
    p.attempt = 1;
    p.done = 3;
    p.total = 10;
    e.body_case = DP__V1__ENVELOPE__BODY_PROGRESS;
    e.progress = &p;
    cr_assert_eq(roundtrip(&e), DP_OK);
    p.done = 11;
    assert_refused(&e, DP_ERR_PROTOCOL, "done 11 above total 10");
    p.total = 0; /* unknown total */
    cr_assert_eq(roundtrip(&e), DP_OK);

    Dp__V1__TaskResult tr = DP__V1__TASK_RESULT__INIT;
    Dp__V1__Metric m = DP__V1__METRIC__INIT, *mp = &m;
    m.name = "latency_p99_ms";
    m.value = 12.5;
    tr.summary = &mp;
    tr.n_summary = 1;
    tr.seconds = 3.25;
    tr.summary_json = "{\"p99\":12.5}";
    Dp__V1__Result r = DP__V1__RESULT__INIT;
    r.task_id = "t";
    r.attempt = 1;
    r.result = &tr;
    e.body_case = DP__V1__ENVELOPE__BODY_RESULT;
    e.result = &r;
    cr_assert_eq(roundtrip(&e), DP_OK, "%s", dp_err_detail());
    m.value = 0.0 / 0.0; /* a figure the device could not give */
    cr_assert_eq(roundtrip(&e), DP_OK);
    tr.seconds = -1;
    assert_refused(&e, DP_ERR_PROTOCOL, "result.result.seconds -1");
    tr.seconds = 1;
    m.name = "";
    assert_refused(&e, DP_ERR_PROTOCOL, "result.result.summary[0].name is empty");
    m.name = "x";
    r.result = NULL;
    assert_refused(&e, DP_ERR_PROTOCOL, "result.result is missing");

    Dp__V1__Failure f = DP__V1__FAILURE__INIT;
    f.task_id = "t";
    f.attempt = 1;
    e.body_case = DP__V1__ENVELOPE__BODY_FAILURE;
    e.failure = &f;
    assert_refused(&e, DP_ERR_PROTOCOL, "failure.reason is empty");
    f.reason = "out of memory";
    f.retryable = 1;
    cr_assert_eq(roundtrip(&e), DP_OK);

    Dp__V1__TaskRef ref = DP__V1__TASK_REF__INIT, *refp = &ref;
    ref.task_id = "t";
    Dp__V1__Heartbeat hb = DP__V1__HEARTBEAT__INIT;
    hb.running = &refp;
    hb.n_running = 1;
    e.body_case = DP__V1__ENVELOPE__BODY_HEARTBEAT;
    e.heartbeat = &hb;
    assert_refused(&e, DP_ERR_PROTOCOL, "heartbeat.running.attempt is 0");
    ref.attempt = 4;
    cr_assert_eq(roundtrip(&e), DP_OK);
}

Test(wire, submitter_bodies)
{
    ENV(e);
    Dp__V1__Campaign c = DP__V1__CAMPAIGN__INIT;
    c.name = "nightly";
    Dp__V1__Model m = DP__V1__MODEL__INIT, *mp = &m;
    m.name = "skipnet";
    c.models = &mp;
    c.n_models = 1;
    Dp__V1__Submit s = DP__V1__SUBMIT__INIT;
    s.campaign = &c;
    s.client_token = "tok-1";
    e.body_case = DP__V1__ENVELOPE__BODY_SUBMIT;
    e.submit = &s;
    cr_assert_eq(roundtrip(&e), DP_OK, "%s", dp_err_detail());
    m.name = "sk\xc3\x28pnet"; /* a broken two-byte sequence */
    assert_refused(&e, DP_ERR_PROTOCOL, "submit.campaign.models[0].name: not valid UTF-8");
    m.name = "caf\xc3\xa9-\xe2\x82\xac-\xf0\x9f\x98\x80"; /* é € 😀 */
    cr_assert_eq(roundtrip(&e), DP_OK, "%s", dp_err_detail());
    const char *bad[] = {"\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82", "\xff"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        m.name = (char *)bad[i];
        assert_refused(&e, DP_ERR_PROTOCOL, "not valid UTF-8");
    }
    m.name = "skipnet";
    char *big = malloc(DP_WIRE_MAX_STRING + 2);
    memset(big, 'a', DP_WIRE_MAX_STRING + 1);
    big[DP_WIRE_MAX_STRING + 1] = '\0';
    c.store_uri = big;
    assert_refused(&e, DP_ERR_PROTOCOL, "submit.campaign.store_uri: 65537 bytes");
    free(big);
    c.store_uri = "";
    s.campaign = NULL;
    assert_refused(&e, DP_ERR_PROTOCOL, "submit.campaign is missing");

    Dp__V1__StatusRequest sr = DP__V1__STATUS_REQUEST__INIT;
    e.body_case = DP__V1__ENVELOPE__BODY_STATUS_REQUEST;
    e.status_request = &sr;
    cr_assert_eq(roundtrip(&e), DP_OK);

    Dp__V1__DeviceClassStatus dc = DP__V1__DEVICE_CLASS_STATUS__INIT, *dcp = &dc;
    dc.name = "rpi4";
    Dp__V1__CampaignStatus cs = DP__V1__CAMPAIGN_STATUS__INIT, *csp = &cs;
    cs.campaign_id = "c1";
    cs.state = DP__V1__CAMPAIGN_STATE__CAMPAIGN_STATE_RUNNING;
    Dp__V1__StatusReply rep = DP__V1__STATUS_REPLY__INIT;
    rep.campaigns = &csp;
    rep.n_campaigns = 1;
    rep.device_classes = &dcp;
    rep.n_device_classes = 1;
    e.body_case = DP__V1__ENVELOPE__BODY_STATUS_REPLY;
    e.status_reply = &rep;
    cr_assert_eq(roundtrip(&e), DP_OK);
    cs.state = (Dp__V1__CampaignState)12;
    assert_refused(&e, DP_ERR_PROTOCOL, "status_reply.campaigns[0].state: unknown CampaignState");

    Dp__V1__Cancel cn = DP__V1__CANCEL__INIT;
    e.body_case = DP__V1__ENVELOPE__BODY_CANCEL;
    e.cancel = &cn;
    assert_refused(&e, DP_ERR_PROTOCOL, "cancel.campaign_id is empty");
    cn.campaign_id = "c1";
    cr_assert_eq(roundtrip(&e), DP_OK);

    Dp__V1__Error er = DP__V1__ERROR__INIT;
    e.body_case = DP__V1__ENVELOPE__BODY_ERROR;
    e.error = &er;
    assert_refused(&e, DP_ERR_PROTOCOL, "error.code is unspecified");
    er.code = DP__V1__ERROR_CODE__ERROR_CODE_BAD_CAMPAIGN;
    er.message = "campaign: models[0].name is empty";
    cr_assert_eq(roundtrip(&e), DP_OK);
}

/* Bytes from the wire: unknown fields pass, a newer body is "no body", wrong
 * wire types and length claims past the end are not envelopes, and the size
 * limit is applied before decoding. */
Test(wire, raw_bytes)
{
    ENV(e);
    Dp__V1__Disconnect d = DP__V1__DISCONNECT__INIT;
    d.reason = "bye";
    e.body_case = DP__V1__ENVELOPE__BODY_DISCONNECT;
    e.disconnect = &d;
    uint8_t b[256];
    size_t n = dp__v1__envelope__pack(&e, b);
    Dp__V1__Envelope *out = NULL;
    cr_assert_eq(dp_wire_decode(b, n, 0, &out), DP_OK);
    cr_assert_str_eq(out->disconnect->reason, "bye");
    dp_wire_free(&out);

    /* unknown field 100 (varint 7) appended: ignored */
    uint8_t u[260];
    memcpy(u, b, n);
    u[n] = 0xa0; /* (100 << 3 | 0) = 800 = 0xa0 0x06 */
    u[n + 1] = 0x06;
    u[n + 2] = 7;
    cr_assert_eq(dp_wire_decode(u, n + 3, 0, &out), DP_OK, "%s", dp_err_detail());
    dp_wire_free(&out);

    /* only an unknown body (field 40, an empty message): no body */
    const uint8_t newer[] = {0x08, 0x01, 0xc2, 0x02, 0x00};
    cr_assert_eq(dp_wire_decode(newer, sizeof newer, 0, &out), DP_ERR_PROTOCOL);
    cr_assert(strstr(dp_err_detail(), "no body"), "%s", dp_err_detail());

    /* hello (field 16) sent as a varint: the wrong wire type */
    const uint8_t wrong[] = {0x08, 0x01, 0x80, 0x01, 0x05};
    cr_assert_eq(dp_wire_decode(wrong, sizeof wrong, 0, &out), DP_ERR_PROTOCOL);
    cr_assert_null(out);

    /* hello claiming 1 GiB of bytes */
    const uint8_t claim[] = {0x08, 0x01, 0x82, 0x01, 0x80, 0x80, 0x80, 0x80, 0x04, 0x00};
    cr_assert_eq(dp_wire_decode(claim, sizeof claim, 0, &out), DP_ERR_PROTOCOL);

    /* above the limit: refused before decoding */
    cr_assert_eq(dp_wire_decode(b, n, n - 1, &out), DP_ERR_RANGE);
    cr_assert(strstr(dp_err_detail(), "limit"), "%s", dp_err_detail());
    cr_assert_eq(dp_wire_decode(NULL, (size_t)1 << 30, 0, &out), DP_ERR_RANGE);
    /* garbage */
    const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff};
    cr_assert_eq(dp_wire_decode(junk, sizeof junk, 0, &out), DP_ERR_PROTOCOL);
    cr_assert_eq(dp_wire_decode(b, 0, 0, &out), DP_ERR_UNSUPPORTED, "empty: version 0");
}

Test(wire, task_from_a_journal)
{
    Dp__V1__Task t;
    fill_task(&t);
    t.attempt = 0; /* never leased: fine outside an Assign */
    cr_assert_eq(dp_wire_validate_task(&t, "journal task"), DP_OK);
    t.campaign = "";
    cr_assert_eq(dp_wire_validate_task(&t, "journal task"), DP_ERR_PROTOCOL);
    cr_assert_str_eq(dp_err_detail(), "journal task.campaign is empty");
    cr_assert_eq(dp_wire_validate_task(NULL, "journal task"), DP_ERR_PROTOCOL);
}
