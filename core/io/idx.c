/*
 * idx.c - reading IDX files, the format of the MNIST data set (LeCun et al.,
 * http://yann.lecun.com/exdb/mnist/, "FILE FORMATS FOR THE MNIST DATABASE"): a 4-byte magic
 * {0, 0, type, ndim}, ndim big-endian uint32 sizes, then the elements in row-major order,
 * big-endian. Files may be gzip-compressed (zlib's gzread reads plain files as they are).
 *
 * Nothing in the file is trusted: the sizes are checked for overflow and against the file's
 * length before anything large is allocated, and data past the declared end is an error.
 */
#include "../lunar-impl.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

/* deflate's best ratio is about 1032:1 (zlib's FAQ); a header that claims more than that
 * many bytes per compressed byte is corrupt, and must not make us allocate them */
#define MAX_DEFLATE_RATIO 1032

static const struct {
    uint8_t code;
    int size; /* bytes per element in the file */
    lunar_dtype dt;
} idx_types[] = {
    {0x08, 1, LUNAR_U8},  /* unsigned byte */
    {0x09, 1, LUNAR_I32}, /* signed byte: widened, lunar has no int8 */
    {0x0B, 2, LUNAR_I32}, /* short */
    {0x0C, 4, LUNAR_I32}, /* int */
    {0x0D, 4, LUNAR_F32}, /* float */
    {0x0E, 8, LUNAR_F64}, /* double */
};

/* Reads exactly n bytes; returns the number read (short at end of file), -1 on error. */
static int64_t read_full(gzFile f, void *p, int64_t n) {
    int64_t got = 0;
    while (got < n) {
        int64_t want = n - got > (1 << 30) ? (1 << 30) : n - got;
        int r = gzread(f, (char *)p + got, (unsigned)want);
        if (r < 0) return -1;
        if (r == 0) break;
        got += r;
    }
    return got;
}

static lunar_status gz_fail(gzFile f, const char *path, const char *what) {
    int err;
    const char *msg = gzerror(f, &err);
    return lunar_fail(LUNAR_ERR_IO, "read_idx: %s: %s (%s)", path, what,
                      err == Z_ERRNO ? strerror(errno) : msg);
}

static uint32_t be32(const uint8_t *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* Converts n big-endian elements of the file type in raw to dt in out. raw lies at the tail
 * of out's buffer: a widened element i lands at or before raw element i, so a front-to-back
 * pass reads every element before a write reaches it. */
static void convert(void *out, const uint8_t *raw, int64_t n, uint8_t code) {
    switch (code) {
    case 0x08: /* raw is out */
        break;
    case 0x09:
        for (int64_t i = 0; i < n; i++) ((int32_t *)out)[i] = (int8_t)raw[i];
        break;
    case 0x0B:
        for (int64_t i = 0; i < n; i++)
            ((int32_t *)out)[i] = (int16_t)(uint16_t)(raw[2 * i] << 8 | raw[2 * i + 1]);
        break;
    case 0x0C:
        for (int64_t i = 0; i < n; i++) ((int32_t *)out)[i] = (int32_t)be32(raw + 4 * i);
        break;
    case 0x0D:
        for (int64_t i = 0; i < n; i++) {
            uint32_t u = be32(raw + 4 * i);
            memcpy((float *)out + i, &u, 4);
        }
        break;
    case 0x0E:
        for (int64_t i = 0; i < n; i++) {
            uint64_t u = (uint64_t)be32(raw + 8 * i) << 32 | be32(raw + 8 * i + 4);
            memcpy((double *)out + i, &u, 8);
        }
        break;
    }
}

lunar_status lunar_read_idx(lunar_tensor **out, const char *path) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return lunar_fail(LUNAR_ERR_IO, "read_idx: %s: %s", path, strerror(errno));
    gzFile f = gzopen(path, "rb");
    if (!f) return lunar_fail(LUNAR_ERR_IO, "read_idx: %s: %s", path, strerror(errno));
    lunar_status st = LUNAR_OK;
    lunar_tensor *t = NULL;
    uint8_t head[4 + 4 * LUNAR_MAX_DIMS];
    int64_t got = read_full(f, head, 4);
    if (got < 0) LUNAR_GOTO(gz_fail(f, path, "cannot read"));
    if (got < 4)
        LUNAR_GOTO(lunar_fail(LUNAR_ERR_IO, "read_idx: %s: truncated: %lld bytes, no IDX header",
                              path, (long long)got));
    int ti = -1;
    for (size_t k = 0; k < sizeof idx_types / sizeof idx_types[0]; k++)
        if (idx_types[k].code == head[2]) ti = (int)k;
    if (head[0] != 0 || head[1] != 0 || ti < 0)
        LUNAR_GOTO(lunar_fail(LUNAR_ERR_IO,
                              "read_idx: %s: not an IDX file (magic %02x %02x %02x %02x; "
                              "expected 00 00 then a type 08, 09, 0b, 0c, 0d or 0e)",
                              path, head[0], head[1], head[2], head[3]));
    int ndim = head[3];
    if (ndim < 1 || ndim > LUNAR_MAX_DIMS)
        LUNAR_GOTO(lunar_fail(LUNAR_ERR_IO, "read_idx: %s: %d dims (lunar takes 1 to %d)", path,
                              ndim, LUNAR_MAX_DIMS));
    got = read_full(f, head + 4, 4 * ndim);
    if (got < 0) LUNAR_GOTO(gz_fail(f, path, "cannot read"));
    if (got < 4 * ndim)
        LUNAR_GOTO(lunar_fail(LUNAR_ERR_IO, "read_idx: %s: truncated in the header (%d dims "
                                            "declared)",
                              path, ndim));
    int64_t shape[LUNAR_MAX_DIMS], numel = 1, esize = idx_types[ti].size;
    for (int d = 0; d < ndim; d++) {
        shape[d] = be32(head + 4 + 4 * d);
        if (shape[d] != 0 && numel > INT64_MAX / 16 / shape[d])
            LUNAR_GOTO(lunar_fail(LUNAR_ERR_IO, "read_idx: %s: sizes overflow", path));
        numel *= shape[d];
    }
    char sh[128];
    lunar_shape_str(sh, sizeof sh, ndim, shape);
    int64_t expected = numel * esize, header = 4 + 4 * (int64_t)ndim;
    if (!gzdirect(f) ? expected > (int64_t)sb.st_size * MAX_DEFLATE_RATIO
                     : header + expected != (int64_t)sb.st_size)
        LUNAR_GOTO(lunar_fail(LUNAR_ERR_IO,
                              "read_idx: %s: the header says %s x %lld-byte elements (%lld "
                              "bytes) but the file has %lld bytes%s",
                              path, sh, (long long)esize, (long long)(header + expected),
                              (long long)sb.st_size, gzdirect(f) ? "" : " compressed"));
    /* the widened types are read into the tail of their own buffer, then spread forwards */
    lunar_dtype dt = idx_types[ti].dt;
    LUNAR_GOTO(lunar_empty(&t, ndim, shape, dt));
    int64_t out_bytes = numel * (int64_t)lunar_dtype_size(dt);
    uint8_t *data = lunar_tensor_data(t);
    uint8_t *raw = data + (out_bytes - expected);
    got = read_full(f, raw, expected);
    if (got < 0) LUNAR_GOTO(gz_fail(f, path, "cannot read the data"));
    if (got < expected)
        LUNAR_GOTO(lunar_fail(LUNAR_ERR_IO, "read_idx: %s: truncated: %s needs %lld data bytes, "
                                            "the file has %lld",
                              path, sh, (long long)expected, (long long)got));
    uint8_t extra;
    got = read_full(f, &extra, 1);
    if (got < 0) LUNAR_GOTO(gz_fail(f, path, "cannot read the data"));
    if (got > 0)
        LUNAR_GOTO(lunar_fail(LUNAR_ERR_IO, "read_idx: %s: data past the end of %s (corrupt "
                                            "header?)",
                              path, sh));
    convert(data, raw, numel, idx_types[ti].code);
done:
    gzclose(f);
    if (st != LUNAR_OK) lunar_tensor_release(t);
    else *out = t;
    return st;
}
