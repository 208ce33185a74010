/* core/nn/safetensors: reading a file made the way the Python `safetensors`
 * library makes it, writer round trips (byte-identical to the reference
 * layout), and a table of malformed files, each of which must fail with a
 * specific code and a detail naming the file and the problem. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/safetensors.h"
#include "util/err.h"

/* The Python `safetensors` package is not installable here (no PyPI), so the
 * fixture was made with python3-torch and a 15-line re-implementation of the
 * reference serializer (safetensors/src/tensor.rs: serde_json compact output,
 * "__metadata__" first, tensors sorted by dtype descending then name, header
 * padded with spaces to a multiple of 8):
 *
 *   ORDER = ["BOOL","U8","I8","F8_E5M2","F8_E4M3","I16","U16","F16","BF16",
 *            "I32","U32","F32","F64","I64","U64"]
 *   NAMES = {torch.float32:"F32", torch.float16:"F16", torch.int64:"I64",
 *            torch.int32:"I32"}
 *   def raw(t): return bytes(t.contiguous().reshape(-1).view(torch.uint8).tolist())
 *   def save(tensors, metadata):
 *       items = sorted(tensors.items(),
 *                      key=lambda kv: (-ORDER.index(NAMES[kv[1].dtype]), kv[0]))
 *       hdr, data = {"__metadata__": metadata}, b""
 *       for name, t in items:
 *           b = raw(t)
 *           hdr[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape),
 *                        "data_offsets": [len(data), len(data) + len(b)]}
 *           data += b
 *       h = json.dumps(hdr, separators=(",", ":")).encode()
 *       h += b" " * ((8 - len(h) % 8) % 8)
 *       return struct.pack("<Q", len(h)) + h + data
 *   save({"conv1.weight": torch.arange(8.).reshape(2, 1, 2, 2) * 0.5 - 1,
 *         "conv1.bias": torch.tensor([0.25, -0.125]),
 *         "step": torch.tensor(1234567890123, dtype=torch.int64),
 *         "idx": torch.tensor([[1, -2], [3, -4]], dtype=torch.int32),
 *         "half": torch.tensor([1.0, -2.0, 0.5], dtype=torch.float16),
 *         "empty": torch.zeros(0, 3)}, {"format": "pt"})
 */
static const uint8_t fixture[] = {
    0x90, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x7b, 0x22, 0x5f, 0x5f, 0x6d, 0x65, 0x74, 0x61,
    0x64, 0x61, 0x74, 0x61, 0x5f, 0x5f, 0x22, 0x3a, 0x7b, 0x22, 0x66, 0x6f, 0x72, 0x6d, 0x61, 0x74,
    0x22, 0x3a, 0x22, 0x70, 0x74, 0x22, 0x7d, 0x2c, 0x22, 0x73, 0x74, 0x65, 0x70, 0x22, 0x3a, 0x7b,
    0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x49, 0x36, 0x34, 0x22, 0x2c, 0x22, 0x73,
    0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f,
    0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x30, 0x2c, 0x38, 0x5d, 0x7d, 0x2c, 0x22,
    0x63, 0x6f, 0x6e, 0x76, 0x31, 0x2e, 0x62, 0x69, 0x61, 0x73, 0x22, 0x3a, 0x7b, 0x22, 0x64, 0x74,
    0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x46, 0x33, 0x32, 0x22, 0x2c, 0x22, 0x73, 0x68, 0x61, 0x70,
    0x65, 0x22, 0x3a, 0x5b, 0x32, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66,
    0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x38, 0x2c, 0x31, 0x36, 0x5d, 0x7d, 0x2c, 0x22, 0x63,
    0x6f, 0x6e, 0x76, 0x31, 0x2e, 0x77, 0x65, 0x69, 0x67, 0x68, 0x74, 0x22, 0x3a, 0x7b, 0x22, 0x64,
    0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x46, 0x33, 0x32, 0x22, 0x2c, 0x22, 0x73, 0x68, 0x61,
    0x70, 0x65, 0x22, 0x3a, 0x5b, 0x32, 0x2c, 0x31, 0x2c, 0x32, 0x2c, 0x32, 0x5d, 0x2c, 0x22, 0x64,
    0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x31, 0x36,
    0x2c, 0x34, 0x38, 0x5d, 0x7d, 0x2c, 0x22, 0x65, 0x6d, 0x70, 0x74, 0x79, 0x22, 0x3a, 0x7b, 0x22,
    0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x46, 0x33, 0x32, 0x22, 0x2c, 0x22, 0x73, 0x68,
    0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b, 0x30, 0x2c, 0x33, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61,
    0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x34, 0x38, 0x2c, 0x34, 0x38,
    0x5d, 0x7d, 0x2c, 0x22, 0x69, 0x64, 0x78, 0x22, 0x3a, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65,
    0x22, 0x3a, 0x22, 0x49, 0x33, 0x32, 0x22, 0x2c, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a,
    0x5b, 0x32, 0x2c, 0x32, 0x5d, 0x2c, 0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73,
    0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b, 0x34, 0x38, 0x2c, 0x36, 0x34, 0x5d, 0x7d, 0x2c, 0x22, 0x68,
    0x61, 0x6c, 0x66, 0x22, 0x3a, 0x7b, 0x22, 0x64, 0x74, 0x79, 0x70, 0x65, 0x22, 0x3a, 0x22, 0x46,
    0x31, 0x36, 0x22, 0x2c, 0x22, 0x73, 0x68, 0x61, 0x70, 0x65, 0x22, 0x3a, 0x5b, 0x33, 0x5d, 0x2c,
    0x22, 0x64, 0x61, 0x74, 0x61, 0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0x22, 0x3a, 0x5b,
    0x36, 0x34, 0x2c, 0x37, 0x30, 0x5d, 0x7d, 0x7d, 0xcb, 0x04, 0xfb, 0x71, 0x1f, 0x01, 0x00, 0x00,
    0x00, 0x00, 0x80, 0x3e, 0x00, 0x00, 0x00, 0xbe, 0x00, 0x00, 0x80, 0xbf, 0x00, 0x00, 0x00, 0xbf,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3f, 0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0xc0, 0x3f,
    0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x20, 0x40, 0x01, 0x00, 0x00, 0x00, 0xfe, 0xff, 0xff, 0xff,
    0x03, 0x00, 0x00, 0x00, 0xfc, 0xff, 0xff, 0xff, 0x00, 0x3c, 0x00, 0xc0, 0x00, 0x38,
};

static const float w_expect[8] = {-1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 2.5f};
static const float b_expect[2] = {0.25f, -0.125f};
static const int32_t idx_expect[4] = {1, -2, 3, -4};
static const uint16_t half_expect[3] = {0x3c00, 0xc000, 0x3800};

static void check_fixture_contents(const st_file_t *f)
{
    st_tensor_t t;
    cr_assert_eq(st_count(f), 6);
    /* data-offset order; "empty" [48,48] sorts before "idx" [48,64] */
    static const char *const order[] = {"step",  "conv1.bias", "conv1.weight",
                                        "empty", "idx",        "half"};
    for (size_t i = 0; i < 6; i++) {
        cr_assert_eq(st_tensor_at(f, i, &t), DP_OK);
        cr_assert_str_eq(t.name, order[i]);
    }
    cr_assert_eq(st_tensor_at(f, 6, &t), DP_ERR_RANGE);

    cr_assert_eq(st_find(f, "conv1.weight", &t), DP_OK);
    cr_assert_eq(t.dtype, ST_F32);
    cr_assert_eq(t.ndim, 4);
    cr_assert(t.shape[0] == 2 && t.shape[1] == 1 && t.shape[2] == 2 && t.shape[3] == 2);
    cr_assert_eq(t.numel, 8);
    cr_assert_eq(t.nbytes, 32);
    cr_assert_eq((uintptr_t)t.data % sizeof(float), 0);
    cr_assert_eq(memcmp(t.data, w_expect, sizeof w_expect), 0);

    float w[8], b[2];
    cr_assert_eq(st_read_f32(f, "conv1.weight", 4, (const int64_t[]){2, 1, 2, 2}, w), DP_OK);
    cr_assert_eq(memcmp(w, w_expect, sizeof w), 0);
    cr_assert_eq(st_read_f32(f, "conv1.bias", 1, (const int64_t[]){2}, b), DP_OK);
    cr_assert_eq(memcmp(b, b_expect, sizeof b), 0);

    int64_t step = 0;
    cr_assert_eq(st_read_i64(f, "step", 0, NULL, &step), DP_OK);
    cr_assert_eq(step, 1234567890123LL);
    cr_assert_eq(st_find(f, "step", &t), DP_OK);
    cr_assert_eq(t.ndim, 0);
    cr_assert_eq(t.numel, 1);

    int32_t idx[4];
    cr_assert_eq(st_read_i32(f, "idx", 2, (const int64_t[]){2, 2}, idx), DP_OK);
    cr_assert_eq(memcmp(idx, idx_expect, sizeof idx), 0);

    cr_assert_eq(st_find(f, "half", &t), DP_OK);
    cr_assert_eq(t.dtype, ST_F16);
    cr_assert_eq(t.nbytes, 6);
    cr_assert_eq(memcmp(t.data, half_expect, 6), 0);

    cr_assert_eq(st_find(f, "empty", &t), DP_OK);
    cr_assert_eq(t.ndim, 2);
    cr_assert(t.shape[0] == 0 && t.shape[1] == 3);
    cr_assert_eq(t.numel, 0);
    cr_assert_eq(t.nbytes, 0);
    float none[1] = {42.0f};
    cr_assert_eq(st_read_f32(f, "empty", 2, (const int64_t[]){0, 3}, none), DP_OK);
    cr_assert_eq(none[0], 42.0f);

    cr_assert_str_eq(st_metadata(f, "format"), "pt");
    cr_assert_null(st_metadata(f, "missing"));
    cr_assert_eq(st_metadata_count(f), 1);
}

Test(safetensors, reads_python_fixture)
{
    st_file_t *f = NULL;
    cr_assert_eq(st_open_memory(fixture, sizeof fixture, "fixture.st", &f), DP_OK, "%s",
                 dp_err_detail());
    check_fixture_contents(f);
    cr_assert_str_eq(st_path(f), "fixture.st");
    st_close(&f);
    cr_assert_null(f);
    st_close(&f); /* NULL is fine */
    st_close(NULL);
}

Test(safetensors, open_memory_copies)
{
    uint8_t *copy = malloc(sizeof fixture);
    memcpy(copy, fixture, sizeof fixture);
    st_file_t *f = NULL;
    cr_assert_eq(st_open_memory(copy, sizeof fixture, NULL, &f), DP_OK);
    memset(copy, 0xee, sizeof fixture);
    free(copy);
    check_fixture_contents(f);
    cr_assert_str_eq(st_path(f), "<memory>");
    st_close(&f);
}

static st_writer_t *fixture_writer(void)
{
    static const int64_t step = 1234567890123LL;
    st_writer_t *w = st_writer_new();
    cr_assert_not_null(w);
    /* added in an order unlike the file's: the writer sorts */
    cr_assert_eq(st_writer_add(w, "half", ST_F16, 1, (const int64_t[]){3}, half_expect), DP_OK);
    cr_assert_eq(st_writer_add_f32(w, "conv1.weight", 4, (const int64_t[]){2, 1, 2, 2}, w_expect),
                 DP_OK);
    cr_assert_eq(st_writer_add_f32(w, "empty", 2, (const int64_t[]){0, 3}, NULL), DP_OK);
    cr_assert_eq(st_writer_add(w, "idx", ST_I32, 2, (const int64_t[]){2, 2}, idx_expect), DP_OK);
    cr_assert_eq(st_writer_add_i64(w, "step", 0, NULL, &step), DP_OK);
    cr_assert_eq(st_writer_add_f32(w, "conv1.bias", 1, (const int64_t[]){2}, b_expect), DP_OK);
    cr_assert_eq(st_writer_set_metadata(w, "format", "pt"), DP_OK);
    return w;
}

Test(safetensors, writer_matches_reference_bytes)
{
    st_writer_t *w = fixture_writer();
    uint8_t *buf = NULL;
    size_t len = 0;
    cr_assert_eq(st_writer_to_memory(w, &buf, &len), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(len, sizeof fixture);
    cr_assert_eq(memcmp(buf, fixture, len), 0);
    free(buf);
    st_writer_destroy(&w);
    cr_assert_null(w);
    st_writer_destroy(&w);
}

static char tmpdir[64];

static void mk_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_st_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void rm_tmpdir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    (void)system(cmd);
}

Test(safetensors, file_round_trip, .init = mk_tmpdir, .fini = rm_tmpdir)
{
    char path[128], tmp[140];
    snprintf(path, sizeof path, "%s/model.st", tmpdir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    float big[3 * 5 * 7];
    for (int i = 0; i < 105; i++) big[i] = (float)i * 0.25f - 3.0f;
    const float scalar = 7.5f;
    const char *odd = "we\"ird\\name\n\t\x01 caf\xc3\xa9";

    st_writer_t *w = st_writer_new();
    cr_assert_eq(st_writer_add_f32(w, "layer.2.w", 3, (const int64_t[]){3, 5, 7}, big), DP_OK);
    cr_assert_eq(st_writer_add_f32(w, "scale", 0, NULL, &scalar), DP_OK);
    cr_assert_eq(st_writer_add_f32(w, "nothing", 3, (const int64_t[]){4, 0, 2}, NULL), DP_OK);
    cr_assert_eq(st_writer_add_f32(w, odd, 1, (const int64_t[]){2}, b_expect), DP_OK);
    cr_assert_eq(st_writer_set_metadata(w, "arch", "resnet8"), DP_OK);
    cr_assert_eq(st_writer_set_metadata(w, "epoch", "3"), DP_OK);
    cr_assert_eq(st_writer_set_metadata(w, "epoch", "4"), DP_OK); /* replaces */
    cr_assert_eq(st_writer_set_metadata(w, "note", "quote \" and \\ and \n"), DP_OK);
    cr_assert_eq(st_writer_write(w, path), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(access(tmp, F_OK), -1, "temporary file left behind");
    st_writer_destroy(&w);

    /* header: padded with spaces to a multiple of 8, tensors sorted by name */
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp);
    uint8_t len8[8];
    cr_assert_eq(fread(len8, 1, 8, fp), 8);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | len8[i];
    cr_assert_eq(n % 8, 0);
    char *hdr = calloc(1, n + 1);
    cr_assert_eq(fread(hdr, 1, n, fp), n);
    fclose(fp);
    char *end = strrchr(hdr, '}');
    for (char *c = end + 1; *c; c++) cr_assert_eq(*c, ' ');
    char *a = strstr(hdr, "\"layer.2.w\""), *b = strstr(hdr, "\"nothing\""),
         *c = strstr(hdr, "\"scale\""), *d = strstr(hdr, "\"we\\\"ird\\\\name\\n\\t\\u0001 caf");
    cr_assert(a && b && c && d, "%s", hdr);
    cr_assert(a < b && b < c && c < d);
    cr_assert_eq(strncmp(hdr, "{\"__metadata__\":{\"arch\":\"resnet8\",\"epoch\":\"4\",", 46), 0,
                 "%s", hdr);
    free(hdr);

    st_file_t *f = NULL;
    cr_assert_eq(st_open(path, &f), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(st_count(f), 4);
    float got[105];
    cr_assert_eq(st_read_f32(f, "layer.2.w", 3, (const int64_t[]){3, 5, 7}, got), DP_OK);
    cr_assert_eq(memcmp(got, big, sizeof big), 0);
    float s = 0;
    cr_assert_eq(st_read_f32(f, "scale", 0, NULL, &s), DP_OK);
    cr_assert_eq(s, 7.5f);
    st_tensor_t t;
    cr_assert_eq(st_find(f, "nothing", &t), DP_OK);
    cr_assert_eq(t.ndim, 3);
    cr_assert_eq(t.nbytes, 0);
    cr_assert_eq(st_find(f, odd, &t), DP_OK);
    cr_assert_eq(memcmp(t.data, b_expect, 8), 0);
    cr_assert_str_eq(st_metadata(f, "epoch"), "4");
    cr_assert_str_eq(st_metadata(f, "note"), "quote \" and \\ and \n");
    const char *k, *v;
    cr_assert_eq(st_metadata_at(f, 0, &k, &v), DP_OK);
    cr_assert_str_eq(k, "arch");
    cr_assert_eq(st_metadata_at(f, 3, &k, &v), DP_ERR_RANGE);
    st_close(&f);

    /* overwriting keeps the file valid and replaces it */
    w = st_writer_new();
    cr_assert_eq(st_writer_write(w, path), DP_OK);
    st_writer_destroy(&w);
    cr_assert_eq(st_open(path, &f), DP_OK, "%s", dp_err_detail());
    cr_assert_eq(st_count(f), 0);
    cr_assert_eq(st_metadata_count(f), 0);
    st_close(&f);
}

Test(safetensors, empty_writer_layout)
{
    st_writer_t *w = st_writer_new();
    uint8_t *buf;
    size_t len;
    cr_assert_eq(st_writer_to_memory(w, &buf, &len), DP_OK);
    cr_assert_eq(len, 16);
    cr_assert_eq(memcmp(buf, "\x08\0\0\0\0\0\0\0{}      ", 16), 0);
    free(buf);
    st_writer_destroy(&w);
}

Test(safetensors, writer_rejects_bad_input)
{
    st_writer_t *w = st_writer_new();
    float x[2] = {1, 2};
    cr_assert_eq(st_writer_add_f32(w, "a", 1, (const int64_t[]){2}, x), DP_OK);
    cr_assert_eq(st_writer_add_f32(w, "a", 1, (const int64_t[]){2}, x), DP_ERR_EXISTS);
    cr_assert_eq(st_writer_add_f32(w, "__metadata__", 1, (const int64_t[]){2}, x), DP_ERR_INVALID);
    cr_assert_eq(st_writer_add_f32(w, "bad\xff", 1, (const int64_t[]){2}, x), DP_ERR_INVALID);
    cr_assert_eq(st_writer_add_f32(w, "neg", 1, (const int64_t[]){-2}, x), DP_ERR_INVALID);
    cr_assert_eq(st_writer_add_f32(w, "null", 1, (const int64_t[]){2}, NULL), DP_ERR_INVALID);
    cr_assert_eq(st_writer_add_f32(w, "huge", 2, (const int64_t[]){INT64_MAX, 4}, x), DP_ERR_RANGE);
    cr_assert_eq(st_writer_set_metadata(w, "k", "\xc0\x80"), DP_ERR_INVALID);
    cr_assert_eq(st_writer_write(w, "/nonexistent-dir/x.st"), DP_ERR_IO);
    cr_assert(strstr(dp_err_detail(), "/nonexistent-dir/x.st.tmp"), "%s", dp_err_detail());
    st_writer_destroy(&w);
}

Test(safetensors, read_reports_mismatch)
{
    st_file_t *f = NULL;
    cr_assert_eq(st_open_memory(fixture, sizeof fixture, "model.st", &f), DP_OK);
    float w[64];
    cr_assert_eq(st_read_f32(f, "conv1.weight", 4, (const int64_t[]){2, 3, 2, 2}, w),
                 DP_ERR_MISMATCH);
    cr_assert_str_eq(dp_err_detail(),
                     "model.st: tensor 'conv1.weight' has shape [2,1,2,2], expected [2,3,2,2]");
    cr_assert_eq(st_read_f32(f, "conv1.weight", 2, (const int64_t[]){2, 4}, w), DP_ERR_MISMATCH);
    cr_assert_str_eq(dp_err_detail(),
                     "model.st: tensor 'conv1.weight' has shape [2,1,2,2], expected [2,4]");
    cr_assert_eq(st_read_f32(f, "step", 0, NULL, w), DP_ERR_MISMATCH);
    cr_assert_str_eq(dp_err_detail(), "model.st: tensor 'step' has dtype I64, expected F32");
    cr_assert_eq(st_read_f32(f, "conv2.weight", 1, (const int64_t[]){1}, w), DP_ERR_NOTFOUND);
    cr_assert_str_eq(dp_err_detail(), "model.st: no tensor 'conv2.weight'");
    st_tensor_t t;
    cr_assert_eq(st_find(f, "conv1", &t), DP_ERR_NOTFOUND);
    st_close(&f);
}

Test(safetensors, open_missing_file)
{
    st_file_t *f = NULL;
    cr_assert_eq(st_open("/nonexistent/model.st", &f), DP_ERR_NOTFOUND);
    cr_assert(strstr(dp_err_detail(), "/nonexistent/model.st"));
    cr_assert_null(f);
}

Test(safetensors, truncated_file_on_disk, .init = mk_tmpdir, .fini = rm_tmpdir)
{
    char path[128];
    snprintf(path, sizeof path, "%s/cut.st", tmpdir);
    size_t cuts[] = {0, 5, 8, 100, sizeof fixture - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        FILE *fp = fopen(path, "wb");
        cr_assert_not_null(fp);
        if (cuts[i]) cr_assert_eq(fwrite(fixture, 1, cuts[i], fp), cuts[i]);
        fclose(fp);
        st_file_t *f = NULL;
        cr_assert_eq(st_open(path, &f), DP_ERR_TRUNCATED, "cut %zu: %s", cuts[i], dp_err_detail());
        cr_assert(strstr(dp_err_detail(), path), "%s", dp_err_detail());
        cr_assert_null(f);
    }
}

/* Text accepted in the header: escapes, unknown keys, whitespace, padding. */
Test(safetensors, lenient_where_the_format_is)
{
    const char *json = " {\n \"caf\\u00e9 \\ud83d\\ude00\\/\" : { \"shape\" : [ 1 ] , "
                       "\"extra\": {\"x\": [1.5e3, -2, true, false, null, \"s\", [[[]]]]}, "
                       "\"data_offsets\":[0,4],\"dtype\":\"F32\"},\"__metadata__\":null}   ";
    size_t n = strlen(json);
    uint8_t buf[512];
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(n >> (8 * i));
    memcpy(buf + 8, json, n);
    memcpy(buf + 8 + n, "\x00\x00\x80\x3f", 4);
    st_file_t *f = NULL;
    cr_assert_eq(st_open_memory(buf, 8 + n + 4, "ok.st", &f), DP_OK, "%s", dp_err_detail());
    float v = 0;
    cr_assert_eq(st_read_f32(f, "caf\xc3\xa9 \xf0\x9f\x98\x80/", 1, (const int64_t[]){1}, &v),
                 DP_OK, "%s", dp_err_detail());
    cr_assert_eq(v, 1.0f);
    cr_assert_eq(st_metadata_count(f), 0);
    st_close(&f);
}

/* ------------------------------------------------------------ bad files */

/* Arrays, not pointers: Criterion runs each case in a re-executed child where
 * the addresses of string literals may differ. */
struct bad_case {
    char label[32];
    char json[400];  /* header text, unless is_raw */
    size_t data_len; /* zero bytes appended after the header */
    dp_err_t code;
    char what[96]; /* must appear in dp_err_detail() */
    char raw[16];  /* with is_raw: the whole file */
    size_t raw_len;
    int is_raw;
};

#define T_(name, dt, shape, off)                                                                   \
    "\"" name "\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":" off "}"

static struct bad_case bad_cases[] = {
    {"empty file", "", 0, DP_ERR_TRUNCATED, "too short", "", 0, 1},
    {"cut in header length", "", 0, DP_ERR_TRUNCATED, "too short", "\x10\0\0", 3, 1},
    {"length larger than file", "", 0, DP_ERR_TRUNCATED, "header length 4096",
     "\x00\x10\0\0\0\0\0\0{}", 10, 1},
    {"absurd header length", "", 0, DP_ERR_RANGE, "limit", "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10,
     1},
    {"header length just over cap", "", 0, DP_ERR_RANGE, "100000001", "\x01\xe1\xf5\x05\0\0\0\0{}",
     10, 1},
    {"zero header length", "", 0, DP_ERR_TRUNCATED, "ends", "", 0, 0},
    {"json cut mid-value", "{\"a\":{\"dtype\":\"F3", 0, DP_ERR_TRUNCATED, "ends", "", 0, 0},
    {"json cut after key", "{\"a\"", 0, DP_ERR_TRUNCATED, "ends", "", 0, 0},
    {"not an object", "[]", 0, DP_ERR_FORMAT, "'{'", "", 0, 0},
    {"trailing comma", "{" T_("a", "F32", "[1]", "[0,4]") ",}", 4, DP_ERR_FORMAT, "byte", "", 0, 0},
    {"missing colon", "{\"a\" {}}", 0, DP_ERR_FORMAT, "expected ':'", "", 0, 0},
    {"missing comma", "{" T_("a", "F32", "[1]", "[0,4]") T_("b", "F32", "[1]", "[4,8]") "}", 8,
     DP_ERR_FORMAT, "expected ','", "", 0, 0},
    {"trailing garbage", "{} x", 0, DP_ERR_FORMAT, "trailing", "", 0, 0},
    {"two objects", "{}{}", 0, DP_ERR_FORMAT, "trailing", "", 0, 0},
    {"unquoted key", "{a:1}", 0, DP_ERR_FORMAT, "expected a string", "", 0, 0},
    {"single quotes", "{'a':1}", 0, DP_ERR_FORMAT, "expected a string", "", 0, 0},
    {"invalid utf-8", "{\"\xff\":{}}", 0, DP_ERR_FORMAT, "UTF-8", "", 0, 0},
    {"overlong utf-8", "{\"\xc0\xaf\":{}}", 0, DP_ERR_FORMAT, "UTF-8", "", 0, 0},
    {"utf-8 surrogate", "{\"\xed\xa0\x80\":{}}", 0, DP_ERR_FORMAT, "UTF-8", "", 0, 0},
    {"control char in string", "{\"a\tb\":{}}", 0, DP_ERR_FORMAT, "control character", "", 0, 0},
    {"bad escape", "{\"a\\qb\":{}}", 0, DP_ERR_FORMAT, "unknown escape", "", 0, 0},
    {"bad hex escape", "{\"a\\u12g4\":{}}", 0, DP_ERR_FORMAT, "\\u escape", "", 0, 0},
    {"lone high surrogate", "{\"\\ud800x\":{}}", 0, DP_ERR_FORMAT, "surrogate", "", 0, 0},
    {"lone low surrogate", "{\"\\udc00\":{}}", 0, DP_ERR_FORMAT, "surrogate", "", 0, 0},
    {"bad literal", "{\"a\":{\"dtype\":\"F32\",\"x\":nul,\"shape\":[],\"data_offsets\":[0,4]}}", 4,
     DP_ERR_FORMAT, "unexpected character", "", 0, 0},
    {"nul in name", "{" T_("a\\u0000b", "F32", "[1]", "[0,4]") "}", 4, DP_ERR_UNSUPPORTED, "NUL",
     "", 0, 0},
    {"wrong dtype", "{" T_("w", "F33", "[1]", "[0,4]") "}", 4, DP_ERR_UNSUPPORTED,
     "tensor 'w': unknown dtype \"F33\"", "", 0, 0},
    {"lowercase dtype", "{" T_("w", "f32", "[1]", "[0,4]") "}", 4, DP_ERR_UNSUPPORTED,
     "unknown dtype", "", 0, 0},
    {"dtype not a string", "{\"w\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     DP_ERR_FORMAT, "dtype is not a string", "", 0, 0},
    {"missing shape", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, DP_ERR_FORMAT,
     "tensor 'w': missing \"shape\"", "", 0, 0},
    {"missing dtype", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, DP_ERR_FORMAT,
     "missing \"dtype\"", "", 0, 0},
    {"missing offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, DP_ERR_FORMAT,
     "missing \"data_offsets\"", "", 0, 0},
    {"repeated key",
     "{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     DP_ERR_FORMAT, "given twice", "", 0, 0},
    {"entry not an object", "{\"w\":[1]}", 0, DP_ERR_FORMAT, "not an object", "", 0, 0},
    {"shape not an array", "{" T_("w", "F32", "1", "[0,4]") "}", 4, DP_ERR_FORMAT,
     "shape is not an array", "", 0, 0},
    {"float in shape", "{" T_("w", "F32", "[1.0]", "[0,4]") "}", 4, DP_ERR_FORMAT, "not an integer",
     "", 0, 0},
    {"exponent in offsets", "{" T_("w", "F32", "[1]", "[0,4e0]") "}", 4, DP_ERR_FORMAT,
     "not an integer", "", 0, 0},
    {"string in shape", "{" T_("w", "F32", "[\"1\"]", "[0,4]") "}", 4, DP_ERR_FORMAT,
     "not an integer", "", 0, 0},
    {"leading zero", "{" T_("w", "F32", "[01]", "[0,4]") "}", 4, DP_ERR_FORMAT, "leading zero", "",
     0, 0},
    {"negative dim", "{" T_("w", "F32", "[-1]", "[0,4]") "}", 4, DP_ERR_RANGE,
     "tensor 'w': negative shape entry -1", "", 0, 0},
    {"negative offset", "{" T_("w", "F32", "[1]", "[-4,0]") "}", 4, DP_ERR_RANGE,
     "negative data offset", "", 0, 0},
    {"dim over 63 bits", "{" T_("w", "F32", "[9223372036854775808]", "[0,4]") "}", 4, DP_ERR_RANGE,
     "63 bits", "", 0, 0},
    {"offset over 64 bits", "{" T_("w", "F32", "[1]", "[0,99999999999999999999999]") "}", 4,
     DP_ERR_RANGE, "63 bits", "", 0, 0},
    {"shape product overflow", "{" T_("w", "F32", "[4611686018427387904,4]", "[0,4]") "}", 4,
     DP_ERR_RANGE, "tensor 'w': shape [4611686018427387904,4] of F32 overflows", "", 0, 0},
    {"bytes overflow", "{" T_("w", "F64", "[2305843009213693952]", "[0,8]") "}", 8, DP_ERR_RANGE,
     "overflows", "", 0, 0},
    {"one offset", "{" T_("w", "F32", "[1]", "[4]") "}", 4, DP_ERR_FORMAT, "has 1 entries", "", 0,
     0},
    {"three offsets", "{" T_("w", "F32", "[1]", "[0,4,8]") "}", 4, DP_ERR_FORMAT, "more than 2", "",
     0, 0},
    {"begin after end", "{" T_("w", "F32", "[0]", "[8,4]") "}", 4, DP_ERR_RANGE,
     "tensor 'w': data_offsets [8,4] begin after end", "", 0, 0},
    {"size disagreement", "{" T_("w", "F32", "[3]", "[0,8]") "}", 8, DP_ERR_FORMAT,
     "tensor 'w': data_offsets [0,8] hold 8 bytes but shape [3] of F32 needs 12", "", 0, 0},
    {"offsets past the data", "{" T_("w", "F32", "[100]", "[0,400]") "}", 16, DP_ERR_TRUNCATED,
     "tensor 'w' [0,400] runs past the end of the 16-byte data buffer", "", 0, 0},
    {"offsets far out of range", "{" T_("w", "U8", "[4]", "[1000000,1000004]") "}", 4,
     DP_ERR_FORMAT, "hole", "", 0, 0},
    {"overlap", "{" T_("a", "F32", "[4]", "[0,16]") "," T_("b", "F32", "[4]", "[8,24]") "}", 24,
     DP_ERR_FORMAT, "tensor 'b' [8,24] overlaps tensor 'a'", "", 0, 0},
    {"same offsets", "{" T_("a", "F32", "[4]", "[0,16]") "," T_("b", "F32", "[4]", "[0,16]") "}",
     16, DP_ERR_FORMAT, "overlaps", "", 0, 0},
    {"hole between", "{" T_("a", "F32", "[2]", "[0,8]") "," T_("b", "F32", "[2]", "[12,20]") "}",
     20, DP_ERR_FORMAT, "hole in the data buffer: bytes [8,12) before tensor 'b'", "", 0, 0},
    {"hole at start", "{" T_("a", "F32", "[2]", "[4,12]") "}", 12, DP_ERR_FORMAT, "bytes [0,4)", "",
     0, 0},
    {"uncovered tail", "{" T_("a", "F32", "[2]", "[0,8]") "}", 12, DP_ERR_FORMAT,
     "the last 4 bytes (from offset 8) belong to no tensor", "", 0, 0},
    {"data without tensors", "{}", 3, DP_ERR_FORMAT, "last 3 bytes", "", 0, 0},
    {"duplicate names", "{" T_("a", "F32", "[1]", "[0,4]") "," T_("a", "F32", "[1]", "[4,8]") "}",
     8, DP_ERR_FORMAT, "duplicate tensor name 'a'", "", 0, 0},
    {"duplicate via escape",
     "{" T_("a", "F32", "[1]", "[0,4]") "," T_("\\u0061", "F32", "[1]", "[4,8]") "}", 8,
     DP_ERR_FORMAT, "duplicate tensor name 'a'", "", 0, 0},
    {"metadata twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, DP_ERR_FORMAT,
     "\"__metadata__\" given twice", "", 0, 0},
    {"metadata not object", "{\"__metadata__\":[]}", 0, DP_ERR_FORMAT, "not an object", "", 0, 0},
    {"metadata value not string", "{\"__metadata__\":{\"k\":1}}", 0, DP_ERR_FORMAT,
     "metadata 'k' is not a string", "", 0, 0},
    {"metadata duplicate key", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, DP_ERR_FORMAT,
     "duplicate metadata key 'k'", "", 0, 0},
    {"too many dims",
     "{" T_("w", "F32",
            "[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,"
            "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]",
            "[0,4]") "}",
     4, DP_ERR_UNSUPPORTED, "more than 64 dimensions", "", 0, 0},
};

ParameterizedTestParameters(safetensors_bad, rejects)
{
    return cr_make_param_array(struct bad_case, bad_cases, sizeof bad_cases / sizeof *bad_cases);
}

ParameterizedTest(struct bad_case *c, safetensors_bad, rejects)
{
    uint8_t *buf;
    size_t len;
    if (!c->is_raw) {
        size_t n = strlen(c->json);
        len = 8 + n + c->data_len;
        buf = calloc(1, len);
        for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)n >> (8 * i));
        memcpy(buf + 8, c->json, n);
    } else {
        len = c->raw_len;
        buf = malloc(len ? len : 1);
        memcpy(buf, c->raw, len);
    }
    st_file_t *f = (st_file_t *)&len; /* must be reset to NULL */
    dp_err_clear();
    dp_err_t err = st_open_memory(buf, len, "bad.st", &f);
    free(buf);
    cr_assert_eq(err, c->code, "%s: got %s, want %s (%s)", c->label, dp_strerror(err),
                 dp_strerror(c->code), dp_err_detail());
    cr_assert_null(f, "%s", c->label);
    cr_assert_eq(strncmp(dp_err_detail(), "bad.st: ", 8), 0, "%s: %s", c->label, dp_err_detail());
    cr_assert(strstr(dp_err_detail(), c->what), "%s: detail '%s' lacks '%s'", c->label,
              dp_err_detail(), c->what);
}

/* Deep nesting inside an ignored value is refused, not a stack overflow. */
Test(safetensors, depth_limit)
{
    char json[4096];
    size_t n = 0;
    n += (size_t)sprintf(json + n, "{\"w\":{\"x\":");
    for (int i = 0; i < 1000; i++) json[n++] = '[';
    for (int i = 0; i < 1000; i++) json[n++] = ']';
    n += (size_t)sprintf(json + n, ",\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}");
    uint8_t *buf = calloc(1, 8 + n + 4);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, json, n);
    st_file_t *f = NULL;
    cr_assert_eq(st_open_memory(buf, 8 + n + 4, "deep.st", &f), DP_ERR_FORMAT);
    cr_assert(strstr(dp_err_detail(), "deep.st: JSON header nests deeper than 64"), "%s",
              dp_err_detail());
    free(buf);
}

/* Every prefix of a valid file fails cleanly (no crash, a detail). */
Test(safetensors, every_prefix_fails)
{
    for (size_t cut = 0; cut < sizeof fixture; cut++) {
        st_file_t *f = NULL;
        dp_err_t err = st_open_memory(fixture, cut, "cut.st", &f);
        cr_assert_neq(err, DP_OK, "cut %zu", cut);
        cr_assert_null(f);
        cr_assert_eq(strncmp(dp_err_detail(), "cut.st: ", 8), 0);
    }
}

/* Flipping any single byte never crashes and never yields a bad object. */
Test(safetensors, byte_flips)
{
    uint8_t buf[sizeof fixture];
    for (size_t i = 0; i < sizeof fixture; i++) {
        memcpy(buf, fixture, sizeof buf);
        buf[i] ^= 0x5a;
        st_file_t *f = NULL;
        dp_err_t err = st_open_memory(buf, sizeof buf, "flip.st", &f);
        if (err == DP_OK) {
            for (size_t k = 0; k < st_count(f); k++) {
                st_tensor_t t;
                cr_assert_eq(st_tensor_at(f, k, &t), DP_OK);
                cr_assert((const uint8_t *)t.data >= (const uint8_t *)0);
            }
            st_close(&f);
        } else {
            cr_assert_null(f);
        }
    }
}

/* Many tensors: lookups stay correct and memory stays proportional (each
 * name is allocated at its own length, not at the rest of the header). */
Test(safetensors, many_tensors)
{
    enum { N = 20000 };
    static float vals[N];
    char name[32];
    st_writer_t *w = st_writer_new();
    for (int i = 0; i < N; i++) {
        vals[i] = (float)i;
        snprintf(name, sizeof name, "layer%05d.w", (i * 7919) % N);
        cr_assert_eq(st_writer_add_f32(w, name, 1, (const int64_t[]){1}, &vals[i]), DP_OK);
    }
    uint8_t *buf;
    size_t len;
    cr_assert_eq(st_writer_to_memory(w, &buf, &len), DP_OK);
    st_writer_destroy(&w);
    st_file_t *f = NULL;
    cr_assert_eq(st_open_memory(buf, len, "many.st", &f), DP_OK, "%s", dp_err_detail());
    free(buf);
    cr_assert_eq(st_count(f), N);
    for (int i = 0; i < N; i++) {
        float v = -1;
        snprintf(name, sizeof name, "layer%05d.w", (i * 7919) % N);
        cr_assert_eq(st_read_f32(f, name, 1, (const int64_t[]){1}, &v), DP_OK);
        cr_assert_eq(v, (float)i);
    }
    st_close(&f);
}

static void *open_fixture(void *arg)
{
    (void)arg;
    for (int k = 0; k < 200; k++) {
        st_file_t *f = NULL;
        if (st_open_memory(fixture, sizeof fixture, "t.st", &f) != DP_OK) return (void *)1;
        st_tensor_t t;
        if (st_find(f, "conv1.weight", &t) != DP_OK || t.numel != 8) return (void *)1;
        st_close(&f);
    }
    return NULL;
}

/* Opening files from several threads at once is safe (no shared state). */
Test(safetensors, concurrent_open)
{
    pthread_t th[4];
    for (int i = 0; i < 4; i++) cr_assert_eq(pthread_create(&th[i], NULL, open_fixture, NULL), 0);
    for (int i = 0; i < 4; i++) {
        void *rc;
        pthread_join(th[i], &rc);
        cr_assert_null(rc);
    }
}
