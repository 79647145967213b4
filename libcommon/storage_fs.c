/*
 * storage_fs.c - the filesystem storage backend (cb_storage_fs_ops).
 *
 * DESIGN: a key maps to <root>/<key>. put() writes "<dir>/.<name>.tmp-<rand>"
 * with O_EXCL, fsyncs it, renames it over the target and fsyncs the
 * directory, so a crash leaves either the old or the new object. Leftover
 * temporary files (from a crash mid-write) are skipped by list() and never
 * visible under a key. Parent directories are created on demand.
 */
#include "storage.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

/* root + '/' + key (+ a temporary suffix) always fits in PATH_MAX */
#define ROOT_MAX 2048

typedef struct fs_state {
    char root[ROOT_MAX];
    bool fsync;
} fs_state_t;

static int fs_open(const char *location, bool fsync_writes, void **state, char *err, size_t errlen)
{
    fs_state_t *fs;
    struct stat st;
    size_t n;

    if (!location[0] || location[0] != '/') {
        snprintf(err, errlen, "CASTBUS_STORAGE_URL: '%s' is not an absolute path", location);
        return -EINVAL;
    }
    fs = calloc(1, sizeof(*fs));
    if (!fs)
        return -ENOMEM;
    n = strlen(location);
    if (n >= sizeof(fs->root)) {
        free(fs);
        snprintf(err, errlen, "CASTBUS_STORAGE_URL: path too long");
        return -EINVAL;
    }
    memcpy(fs->root, location, n + 1);
    fs->fsync = fsync_writes;
    while (n > 1 && fs->root[n - 1] == '/')
        fs->root[--n] = '\0';
    if (mkdir(fs->root, 0755) && errno != EEXIST) {
        snprintf(err, errlen, "storage: cannot create '%s': %s", fs->root, strerror(errno));
        free(fs);
        return -errno;
    }
    if (stat(fs->root, &st) || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "storage: '%s' is not a directory", fs->root);
        free(fs);
        return -ENOTDIR;
    }
    *state = fs;
    return 0;
}

static void fs_close(void *state)
{
    free(state);
}

static void path_of(const fs_state_t *fs, const char *key, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s/%s", fs->root, key);
}

/* mkdir -p for the parent of path. */
static int make_parents(const char *final)
{
    char path[PATH_MAX];
    char *p;

    snprintf(path, sizeof(path), "%s", final);
    for (p = strchr(path + 1, '/'); p; p = strchr(p + 1, '/')) {
        *p = '\0';
        if (mkdir(path, 0755) && errno != EEXIST) {
            int e = errno;
            *p = '/';
            return -e;
        }
        *p = '/';
    }
    return 0;
}

static int fsync_parent(const char *path)
{
    char dir[PATH_MAX];
    char *slash;
    int fd, rc = 0;

    snprintf(dir, sizeof(dir), "%s", path);
    slash = strrchr(dir, '/');
    if (!slash)
        return 0;
    *slash = '\0';
    fd = open(dir[0] ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fsync(fd))
        rc = -errno;
    close(fd);
    return rc;
}

/*
 * Open a fresh temporary file next to `final`; its name goes into tmp. The
 * directory usually exists: its parents are created only when it does not.
 */
static int open_temp(const char *final, char *tmp, size_t tmplen)
{
    const char *slash = strrchr(final, '/');
    unsigned int rnd = 0;
    int fd, rc;

    if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t) sizeof(rnd))
        rnd = (unsigned int) getpid();
    snprintf(tmp, tmplen, "%.*s/.%s.tmp-%08x", (int) (slash - final), final, slash + 1, rnd);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno == ENOENT) {
        rc = make_parents(final);
        if (rc)
            return rc;
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    }
    return fd < 0 ? -errno : fd;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;

    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t) n;
    }
    return 0;
}

/* fsync the temp file, rename it into place, fsync the directory (when asked to). */
static int commit_temp(const fs_state_t *fs, int fd, const char *tmp, const char *final)
{
    int rc = 0;

    if (fs->fsync && fsync(fd))
        rc = -errno;
    if (close(fd) && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, final))
        rc = -errno;
    if (rc) {
        unlink(tmp);
        return rc;
    }
    return fs->fsync ? fsync_parent(final) : 0;
}

static int fs_put(void *state, const char *key, const void *data, size_t len)
{
    char final[PATH_MAX], tmp[PATH_MAX + 32];
    int fd, rc;

    path_of(state, key, final, sizeof(final));
    fd = open_temp(final, tmp, sizeof(tmp));
    if (fd < 0)
        return fd;
    rc = write_all(fd, data, len);
    if (rc) {
        close(fd);
        unlink(tmp);
        return rc;
    }
    return commit_temp(state, fd, tmp, final);
}

/* In place: no temporary, no rename, so no inode churn for state rewritten often. */
static int fs_overwrite(void *state, const char *key, const void *data, size_t len)
{
    const fs_state_t *fs = state;
    char final[PATH_MAX];
    bool created = false;
    int fd, rc;

    path_of(fs, key, final, sizeof(final));
    fd = open(final, O_WRONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        created = true;
        fd = open(final, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0 && errno == ENOENT) {
            rc = make_parents(final);
            if (rc)
                return rc;
            fd = open(final, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        }
    }
    if (fd < 0)
        return -errno;
    rc = write_all(fd, data, len); /* from offset 0: the file was just opened */
    if (rc == 0 && ftruncate(fd, (off_t) len))
        rc = -errno;
    if (rc == 0 && fs->fsync && fdatasync(fd))
        rc = -errno;
    if (close(fd) && rc == 0)
        rc = -errno;
    if (rc == 0 && created && fs->fsync)
        rc = fsync_parent(final);
    return rc;
}

static int fs_put_file(void *state, const char *key, const char *path)
{
    const fs_state_t *fs = state;
    char final[PATH_MAX], tmp[PATH_MAX + 32], buf[65536];
    int in, fd, rc;
    ssize_t n;

    path_of(fs, key, final, sizeof(final));
    in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return -errno;
    /* same filesystem: fsync the file and rename it in (parents only when missing) */
    rc = fs->fsync && fsync(in) ? -errno : 0;
    if (rc == 0 && rename(path, final))
        rc = -errno;
    if (rc == -ENOENT) {
        rc = make_parents(final);
        if (rc == 0 && rename(path, final))
            rc = -errno;
    }
    if (rc == 0) {
        close(in);
        return fs->fsync ? fsync_parent(final) : 0;
    }
    if (rc != -EXDEV) {
        close(in);
        return rc;
    }
    fd = open_temp(final, tmp, sizeof(tmp));
    if (fd < 0) {
        close(in);
        return fd;
    }
    while ((n = read(in, buf, sizeof(buf))) > 0) {
        rc = write_all(fd, buf, (size_t) n);
        if (rc)
            break;
    }
    if (n < 0)
        rc = -errno;
    close(in);
    if (rc) {
        close(fd);
        unlink(tmp);
        return rc;
    }
    rc = commit_temp(state, fd, tmp, final);
    if (rc == 0)
        unlink(path);
    return rc;
}

static int fs_get(void *state, const char *key, cb_buf_t *out)
{
    char path[PATH_MAX], chunk[65536];
    int fd, rc = 0;
    ssize_t n;

    path_of(state, key, path, sizeof(path));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            break;
        }
        rc = cb_buf_append(out, chunk, (size_t) n);
        if (rc)
            break;
    }
    close(fd);
    return rc;
}

static int fs_stat(void *state, const char *key, cb_storage_stat_t *st)
{
    char path[PATH_MAX];
    struct stat sb;

    path_of(state, key, path, sizeof(path));
    if (stat(path, &sb))
        return -errno;
    if (!S_ISREG(sb.st_mode))
        return -ENOENT;
    st->size = (uint64_t) sb.st_size;
    st->mtime_ms = (int64_t) sb.st_mtim.tv_sec * 1000 + sb.st_mtim.tv_nsec / 1000000;
    return 0;
}

static int fs_remove(void *state, const char *key)
{
    char path[PATH_MAX];

    path_of(state, key, path, sizeof(path));
    if (unlink(path))
        return -errno;
    return 0;
}

/* Walk dir (root-relative `rel`) depth first. */
static int walk(const fs_state_t *fs, char *rel, size_t rel_len, size_t rel_cap,
                cb_storage_list_fn fn, void *arg)
{
    char path[PATH_MAX];
    struct dirent *de;
    DIR *d;
    int rc = 0;

    snprintf(path, sizeof(path), "%s%s%s", fs->root, rel_len ? "/" : "", rel);
    d = opendir(path);
    if (!d)
        return errno == ENOENT ? 0 : -errno;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        size_t nlen = strlen(de->d_name);
        struct stat sb;
        char full[PATH_MAX + 2 + sizeof(de->d_name)];

        if (de->d_name[0] == '.') /* ., .. and temporary files */
            continue;
        if (rel_len + nlen + 2 > rel_cap)
            continue;
        snprintf(full, sizeof(full), "%s/%s", path, de->d_name);
        if (lstat(full, &sb))
            continue;
        if (rel_len)
            rel[rel_len] = '/';
        memcpy(rel + rel_len + (rel_len ? 1 : 0), de->d_name, nlen + 1);
        if (S_ISDIR(sb.st_mode)) {
            rc = walk(fs, rel, rel_len + (rel_len ? 1 : 0) + nlen, rel_cap, fn, arg);
        } else if (S_ISREG(sb.st_mode) && cb_storage_key_valid(rel)) {
            cb_storage_stat_t st = {
                .size = (uint64_t) sb.st_size,
                .mtime_ms = (int64_t) sb.st_mtim.tv_sec * 1000 + sb.st_mtim.tv_nsec / 1000000,
            };
            rc = fn(arg, rel, &st) ? 1 : 0;
        }
        rel[rel_len] = '\0';
    }
    closedir(d);
    return rc < 0 ? rc : 0;
}

static int fs_list(void *state, const char *prefix, cb_storage_list_fn fn, void *arg)
{
    char rel[CB_STORAGE_KEY_MAX + 2];
    size_t n = strlen(prefix);

    /* list under the prefix's directory; a partial last segment filters names */
    memcpy(rel, prefix, n + 1);
    while (n && rel[n - 1] == '/')
        rel[--n] = '\0';
    return walk(state, rel, n, sizeof(rel), fn, arg);
}

static int fs_check(void *state, char *err, size_t errlen)
{
    fs_state_t *fs = state;
    char probe[PATH_MAX];
    int fd;

    snprintf(probe, sizeof(probe), "%s/.castbus-probe-%d", fs->root, (int) getpid());
    fd = open(probe, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "storage root '%s' is not writable: %s", fs->root, strerror(errno));
        return -errno;
    }
    close(fd);
    unlink(probe);
    return 0;
}

static int fs_local_path(void *state, const char *key, char *out, size_t outlen)
{
    path_of(state, key, out, outlen);
    return 0;
}

const cb_storage_ops_t cb_storage_fs_ops = {
    .scheme = "file",
    .open = fs_open,
    .close = fs_close,
    .put = fs_put,
    .put_file = fs_put_file,
    .overwrite = fs_overwrite,
    .get = fs_get,
    .stat = fs_stat,
    .remove = fs_remove,
    .list = fs_list,
    .check = fs_check,
    .local_path = fs_local_path,
};
