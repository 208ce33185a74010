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

static dp_err_t encode(const uint8_t *pixels, int w, int h, int channels, const uint8_t *rgb,
                       int ncolors, uint8_t **out, size_t *len);

dp_err_t dp_report_png(const uint8_t *pixels, int w, int h, int channels, uint8_t **out,
                       size_t *len)
{
    *out = NULL, *len = 0;
    if (w < 1 || h < 1 || w > 16384 || h > 16384 || (channels != 1 && channels != 3))
        return dp_err_set(DP_ERR_INVALID, "png: %dx%d with %d channels is not an image", w, h,
                          channels);
    return encode(pixels, w, h, channels, NULL, 0, out, len);
}

dp_err_t dp_report_png_palette(const uint8_t *index, int w, int h, const uint8_t *rgb, int ncolors,
                               uint8_t **out, size_t *len)
{
    *out = NULL, *len = 0;
    if (w < 1 || h < 1 || w > 16384 || h > 16384 || ncolors < 1 || ncolors > 256)
        return dp_err_set(DP_ERR_INVALID, "png: %dx%d with %d colours is not an image", w, h,
                          ncolors);
    for (size_t i = 0; i < (size_t)w * h; i++)
        if (index[i] >= ncolors)
            return dp_err_set(DP_ERR_INVALID, "png: pixel %zu is colour %d of %d", i, index[i],
                              ncolors);
    return encode(index, w, h, 1, rgb, ncolors, out, len);
}

static dp_err_t encode(const uint8_t *pixels, int w, int h, int channels, const uint8_t *rgb,
                       int ncolors, uint8_t **out, size_t *len)
{
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
                 rgb             ? PNG_COLOR_TYPE_PALETTE
                 : channels == 1 ? PNG_COLOR_TYPE_GRAY
                                 : PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (rgb) {
        png_color pal[256];
        for (int i = 0; i < ncolors; i++)
            pal[i] = (png_color){rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2]};
        png_set_PLTE(png, info, pal, ncolors);
    }
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
