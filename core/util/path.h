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

/* DP_OK when a file can be written (or replaced) at path: it names a file
 * (not empty, no trailing '/'), is not a directory, and its directory passes
 * dp_path_parent_writable. Otherwise an error whose detail says which ("an
 * empty path", "no file name after the last '/'", "it is a directory", or
 * dp_path_parent_writable's); the caller adds the path. For output files;
 * dp_path_parent_writable alone for a prefix that several files extend. */
dp_err_t dp_path_file_writable(const char *path);

/* Removes path and, when it is a directory, everything below it (symbolic
 * links are removed, not followed). Best effort: what cannot be removed
 * stays. For scratch directories. */
void dp_path_remove_tree(const char *path);

#endif
