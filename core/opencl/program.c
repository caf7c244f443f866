/*
 * program.c - one program per device from the embedded kernels/ .cl files, built once per
 * context. Its binary is cached on disk in $XDG_CACHE_HOME/lunar (or ~/.cache/lunar) under
 * a hash of source, build options, device name and driver version, so later processes
 * skip the compiler (PoCL's LLVM takes seconds). A cache file is written to a temp name and
 * renamed, and ignored when it cannot be read or the driver refuses it.
 */
#include "opencl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* tunables: the kernels' #ifndef defaults are overridden here */
static const char *build_options = "-DLUNAR_WG=64";

/* FNV-1a, 64 bits: enough to tell cache entries apart, not a security measure */
static uint64_t fnv(uint64_t h, const char *s) {
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return (h ^ 0xff) * 0x100000001b3ull; /* a separator between fields */
}

static bool cache_path(const ocl_device *d, char *path, size_t n, char *dir, size_t ndir) {
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg) snprintf(dir, ndir, "%s/lunar", xdg);
    else if (home && *home) snprintf(dir, ndir, "%s/.cache/lunar", home);
    else return false;
    uint64_t h = 0xcbf29ce484222325ull;
    h = fnv(h, lunar_opencl_source);
    h = fnv(h, build_options);
    h = fnv(h, d->name);
    h = fnv(h, d->driver);
    h = fnv(h, d->platform_name);
    snprintf(path, n, "%s/opencl-%016llx.bin", dir, (unsigned long long)h);
    return true;
}

static unsigned char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long len = ftell(f);
        if (len > 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)len)) &&
            fread(buf, 1, (size_t)len, f) != (size_t)len) {
            free(buf);
            buf = NULL;
        }
        *n = len > 0 ? (size_t)len : 0;
    }
    fclose(f);
    return buf;
}

static void mkdirs(const char *dir) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(tmp, 0755);
            *p = '/';
        }
    mkdir(tmp, 0755);
}

/* Best effort: a cache that cannot be written only costs the next process a build. */
static void write_cache(const ocl_device *d, const char *path, const char *dir) {
    size_t n = 0;
    if (clGetProgramInfo(d->program, CL_PROGRAM_BINARY_SIZES, sizeof n, &n, NULL) !=
            CL_SUCCESS || n == 0)
        return;
    unsigned char *bin = malloc(n);
    if (!bin) return;
    if (clGetProgramInfo(d->program, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL) ==
        CL_SUCCESS) {
        mkdirs(dir);
        char tmp[1100];
        snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
        FILE *f = fopen(tmp, "wb");
        if (f) {
            bool ok = fwrite(bin, 1, n, f) == n;
            ok = fclose(f) == 0 && ok;
            if (!ok || rename(tmp, path) != 0) remove(tmp);
        }
    }
    free(bin);
}

static cl_int build(ocl_device *d) {
    return clBuildProgram(d->program, 1, &d->id, build_options, NULL, NULL);
}

lunar_status ocl_program_build(ocl_device *d) {
    char path[1024], dir[900];
    bool cached = cache_path(d, path, sizeof path, dir, sizeof dir);
    cl_int err;
    if (cached) {
        size_t n = 0;
        unsigned char *bin = read_file(path, &n);
        if (bin) {
            const unsigned char *bins[1] = {bin};
            cl_int bst;
            d->program = clCreateProgramWithBinary(d->ctx, 1, &d->id, &n, bins, &bst, &err);
            free(bin);
            if (err == CL_SUCCESS && bst == CL_SUCCESS && build(d) == CL_SUCCESS) return LUNAR_OK;
            if (d->program) clReleaseProgram(d->program); /* stale or broken: rebuild */
            d->program = NULL;
        }
    }
    const char *src = lunar_opencl_source;
    d->program = clCreateProgramWithSource(d->ctx, 1, &src, NULL, &err);
    if (err != CL_SUCCESS) {
        d->program = NULL;
        return ocl_fail("clCreateProgramWithSource", err);
    }
    err = build(d);
    if (err != CL_SUCCESS) {
        size_t n = 0;
        clGetProgramBuildInfo(d->program, d->id, CL_PROGRAM_BUILD_LOG, 0, NULL, &n);
        char *log = malloc(n + 1);
        if (log) {
            log[0] = 0;
            clGetProgramBuildInfo(d->program, d->id, CL_PROGRAM_BUILD_LOG, n, log, NULL);
            log[n] = 0;
        }
        lunar_fail(LUNAR_ERR_DEVICE,
                   "opencl: clBuildProgram failed on %s: %s (%d); build log:\n%.700s", d->name,
                   ocl_status_name(err), (int)err, log ? log : "(none)");
        free(log);
        clReleaseProgram(d->program);
        d->program = NULL;
        return LUNAR_ERR_DEVICE;
    }
    if (cached) write_cache(d, path, dir);
    return LUNAR_OK;
}
