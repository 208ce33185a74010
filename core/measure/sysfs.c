/* Small-file readers for sysfs and procfs, with the messages every probe
 * shares: the file named, and for permission denied the probe's fix. Files
 * are opened for every read (sysfs attributes are regenerated on open, and a
 * fake tree in the tests is rewritten by rename). */
#include "measure/measure_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

dp_err_t msr_path(char *buf, size_t cap, const char *root, const char *rel)
{
    int n = snprintf(buf, cap, "%s%s", root ? root : "", rel);
    if (n < 0 || (size_t)n >= cap)
        return dp_err_set(DP_ERR_RANGE, "path too long: %s%s", root ? root : "", rel);
    return DP_OK;
}

dp_err_t msr_read_str(const char *path, char *buf, size_t cap, const char *perm_hint)
{
    /* O_NONBLOCK: a FIFO put where a file should be must not hang the reader. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR)
            return dp_err_set(DP_ERR_NOTFOUND, "%s: no such file", path);
        if ((e == EACCES || e == EPERM) && perm_hint)
            return dp_err_set(DP_ERR_IO, "%s: permission denied: %s", path, perm_hint);
        return dp_err_set(DP_ERR_IO, "%s: cannot open: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && !S_ISREG(st.st_mode)) {
        close(fd);
        return dp_err_set(DP_ERR_IO, "%s: is %s, not a file", path,
                          S_ISDIR(st.st_mode) ? "a directory" : "a special file");
    }
    size_t len = 0;
    for (;;) {
        if (len + 1 >= cap) break;
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            if ((e == EACCES || e == EPERM) && perm_hint)
                return dp_err_set(DP_ERR_IO, "%s: permission denied: %s", path, perm_hint);
            return dp_err_set(DP_ERR_IO, "%s: cannot read: %s", path, strerror(e));
        }
        if (r == 0) break;
        len += (size_t)r;
    }
    close(fd);
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' ' || buf[len - 1] == '\t' ||
                       buf[len - 1] == '\r'))
        len--;
    buf[len] = '\0';
    return DP_OK;
}

dp_err_t msr_read_i64(const char *path, int64_t *v, const char *perm_hint)
{
    char buf[64];
    dp_err_t err = msr_read_str(path, buf, sizeof buf, perm_hint);
    if (err) return err;
    if (buf[0] == '\0') return dp_err_set(DP_ERR_FORMAT, "%s: empty, expected a number", path);
    char *end;
    errno = 0;
    long long x = strtoll(buf, &end, 10);
    if (errno || *end != '\0')
        return dp_err_set(DP_ERR_FORMAT, "%s: '%s' is not a decimal number", path, buf);
    *v = (int64_t)x;
    return DP_OK;
}
