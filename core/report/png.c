/* PNG encoding through libpng, into memory (the page embeds the images as
 * data: URIs). libpng reports errors by longjmp; nothing else here uses
 * it, and every object that lives across the setjmp is volatile or owned
 * by the output buffer. */
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "report/report.h"

typedef struct buf {
    uint8_t *p;
    size_t len, cap;
    int nomem;
} buf_t;

static void on_write(png_structp png, png_bytep data, png_size_t n)
{
    buf_t *b = png_get_io_ptr(png);
    if (b->nomem) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->nomem = 1;
            return;
        }
        b->p = p, b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void on_flush(png_structp png) { (void)png; }

static void on_error(png_structp png, png_const_charp msg)
{
    (void)msg;
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

dp_err_t dp_report_png(const uint8_t *pixels, int w, int h, int channels, uint8_t **out,
                       size_t *len)
{
    *out = NULL, *len = 0;
    if (w < 1 || h < 1 || w > 16384 || h > 16384 || (channels != 1 && channels != 3))
        return dp_err_set(DP_ERR_INVALID, "png: %dx%d with %d channels is not an image", w, h,
                          channels);
    buf_t b = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    png_bytep *volatile rows = NULL;
    if (!png || !info) {
        png_destroy_write_struct(&png, &info);
        return dp_err_set(DP_ERR_NOMEM, "png: out of memory");
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(rows);
        free(b.p);
        return dp_err_set(DP_ERR_INVALID, "png: libpng failed to encode a %dx%d image", w, h);
    }
    rows = malloc((size_t)h * sizeof *rows);
    if (!rows) png_error(png, "out of memory");
    for (int y = 0; y < h; y++) rows[y] = (png_bytep)(pixels + (size_t)y * w * channels);
    png_set_write_fn(png, &b, on_write, on_flush);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8,
                 channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    if (b.nomem) {
        free(b.p);
        return dp_err_set(DP_ERR_NOMEM, "png: out of memory");
    }
    *out = b.p, *len = b.len;
    return DP_OK;
}
