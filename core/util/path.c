#define _GNU_SOURCE /* nftw */
#include "util/path.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

dp_err_t dp_path_parent_writable(const char *path)
{
    char *copy = strdup(path);
    if (!copy) return dp_err_set(DP_ERR_NOMEM, "out of memory checking %s", path);
    const char *dir = dirname(copy);
    struct stat st;
    dp_err_t err = DP_OK;
    if (stat(dir, &st) != 0)
        err = dp_err_set(DP_ERR_NOTFOUND, "the directory %s does not exist", dir);
    else if (!S_ISDIR(st.st_mode))
        err = dp_err_set(DP_ERR_INVALID, "%s is not a directory", dir);
    else if (access(dir, W_OK | X_OK) != 0)
        err = dp_err_set(DP_ERR_IO, "the directory %s is not writable: %s", dir, strerror(errno));
    free(copy);
    return err;
}

dp_err_t dp_path_file_writable(const char *path)
{
    size_t n = strlen(path);
    struct stat st;
    if (n == 0) return dp_err_set(DP_ERR_INVALID, "an empty path");
    if (path[n - 1] == '/') return dp_err_set(DP_ERR_INVALID, "no file name after the last '/'");
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return dp_err_set(DP_ERR_INVALID, "it is a directory");
    return dp_path_parent_writable(path);
}

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

void dp_path_remove_tree(const char *path)
{
    if (path && *path) nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}
