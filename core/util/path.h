/* File-system paths. */
#ifndef DP_UTIL_PATH_H
#define DP_UTIL_PATH_H

#include "util/err.h"

/* DP_OK when a file could be created at path: the directory it would be in
 * exists, is a directory, and is writable. Otherwise an error whose detail
 * names that directory ("the directory D does not exist", "D is not a
 * directory", "the directory D is not writable: REASON"); the caller adds
 * the path and what it is for. Tools call it before long work, so a bad
 * output path fails at once, not after the work. */
dp_err_t dp_path_parent_writable(const char *path);

#endif
