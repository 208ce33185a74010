/* Settings files for the programs' option tables: one `name = value` per
 * line, names being the program's flag names without the dashes; blank
 * lines and lines starting with '#' are skipped; blanks around the name and
 * the value are dropped, and a value in double quotes keeps what is inside
 * them as is (no escapes). A program lays a file's settings over its
 * defaults and under its environment and flags.
 *
 * The file is read whole here and kept; nothing is printed: errors carry a
 * detail naming PATH:LINE and what is wrong there. */
#ifndef DP_UTIL_CONF_H
#define DP_UTIL_CONF_H

#include <stddef.h>

#include "util/err.h"

#define DP_CONF_MAX_BYTES (1u << 20) /* a larger file is refused */
#define DP_CONF_MAX_LINE  4096

typedef struct dp_conf dp_conf_t;

/* Reads and checks the file at path into *out (caller destroys). Errors:
 * DP_ERR_IO (cannot open or read it), DP_ERR_RANGE (larger than
 * DP_CONF_MAX_BYTES, or a line longer than DP_CONF_MAX_LINE), DP_ERR_FORMAT
 * (a line that is not `name = value`, a name not of [a-z0-9-], a control
 * character or a NUL byte, an unclosed quote, a name set twice: the detail
 * says which and where), DP_ERR_NOMEM. */
dp_err_t dp_conf_load(const char *path, dp_conf_t **out);
/* The same from len bytes of text (copied); path names it in messages. */
dp_err_t dp_conf_parse(const char *text, size_t len, const char *path, dp_conf_t **out);

/* The settings in file order: name, value, and "PATH:LINE" where it was
 * set (for messages). Borrowed until dp_conf_destroy. */
size_t dp_conf_count(const dp_conf_t *c);
const char *dp_conf_name(const dp_conf_t *c, size_t i);
const char *dp_conf_value(const dp_conf_t *c, size_t i);
const char *dp_conf_where(const dp_conf_t *c, size_t i);

/* Gives each setting, in file order, to take (name, value, where: borrowed
 * from c), which returns 0 when the program has that setting and -1 when it
 * has not: then DP_ERR_NOTFOUND, "PATH:LINE: no setting 'NAME' (see
 * --help)", and the settings after it are not given. */
typedef int (*dp_conf_take_fn)(void *ctx, const char *name, const char *value, const char *where);
dp_err_t dp_conf_each(const dp_conf_t *c, dp_conf_take_fn take, void *ctx);

void dp_conf_destroy(dp_conf_t **c);

#endif
