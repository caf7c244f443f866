/*
 * safetensors.c - reading and writing tensors in the safetensors format
 * (https://github.com/huggingface/safetensors, "Format"): an 8-byte little-endian header
 * length N, N bytes of JSON header padded with spaces to a multiple of 8, then the raw
 * little-endian bytes of every tensor.
 *
 * The writer produces the bytes of a PyTorch-side writer that sorts the keys and calls
 * json.dumps(header, separators=(",", ":")) (tests/fixtures/st.py), so that a file is
 * byte-identical whichever side wrote it. The reader trusts nothing in the file: every
 * length, offset and string is checked before it is used, and a failure names "load", the
 * path and what is wrong.
 */
#include "../lunar-impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The data section is raw little-endian bytes copied to and from memory as they are. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "lunar's safetensors reader and writer assume a little-endian host"
#endif

static bool host_is_little_endian(void) {
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

#define MAX_HEADER (100 * 1000 * 1000) /* the reference implementation's limit */
#define MAX_DEPTH 64                   /* JSON nesting; a safetensors header needs 3 */

static const char *const st_dtype_names[LUNAR_DTYPE_COUNT] = {
    [LUNAR_BOOL] = "BOOL", [LUNAR_U8] = "U8",   [LUNAR_I32] = "I32",
    [LUNAR_I64] = "I64",   [LUNAR_F32] = "F32", [LUNAR_F64] = "F64",
};

/* ---- a growable byte buffer ---- */

typedef struct buf {
    char *p;
    size_t n, cap;
    bool oom;
} buf;

static void buf_put(buf *b, const void *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void buf_str(buf *b, const char *s) { buf_put(b, s, strlen(s)); }

static void buf_int(buf *b, int64_t v) {
    char s[32];
    buf_put(b, s, (size_t)snprintf(s, sizeof s, "%lld", (long long)v));
}

/* ---- UTF-8 ---- */

/* Decodes one UTF-8 sequence at s (n bytes left) into *cp; returns its length, or 0 when
 * it is malformed (overlong, a surrogate, beyond U+10FFFF, truncated). */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t len;
    uint32_t c, min;
    if ((s[0] & 0xE0) == 0xC0) len = 2, c = s[0] & 0x1F, min = 0x80;
    else if ((s[0] & 0xF0) == 0xE0) len = 3, c = s[0] & 0x0F, min = 0x800;
    else if ((s[0] & 0xF8) == 0xF0) len = 4, c = s[0] & 0x07, min = 0x10000;
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    *cp = c;
    return len;
}

static bool utf8_valid(const char *s) {
    size_t n = strlen(s);
    uint32_t cp;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_decode((const unsigned char *)s + i, n - i, &cp);
        if (!k) return false;
        i += k;
    }
    return true;
}

static void utf8_encode(buf *b, uint32_t cp) {
    unsigned char s[4];
    size_t n;
    if (cp < 0x80) s[0] = (unsigned char)cp, n = 1;
    else if (cp < 0x800) s[0] = 0xC0 | (cp >> 6), s[1] = 0x80 | (cp & 0x3F), n = 2;
    else if (cp < 0x10000)
        s[0] = 0xE0 | (cp >> 12), s[1] = 0x80 | ((cp >> 6) & 0x3F), s[2] = 0x80 | (cp & 0x3F),
        n = 3;
    else
        s[0] = 0xF0 | (cp >> 18), s[1] = 0x80 | ((cp >> 12) & 0x3F),
        s[2] = 0x80 | ((cp >> 6) & 0x3F), s[3] = 0x80 | (cp & 0x3F), n = 4;
    buf_put(b, s, n);
}

/* ---- writing ---- */

/* A JSON string as Python's json.dumps writes it (ensure_ascii): printable ASCII stays,
 * '"' and '\\' and \b \f \n \r \t get short escapes, everything else \u00xx in lower-case
 * hex, with a surrogate pair above U+FFFF. s must be valid UTF-8 (checked by the caller). */
static void json_put_string(buf *b, const char *s) {
    size_t n = strlen(s);
    buf_put(b, "\"", 1);
    for (size_t i = 0; i < n;) {
        uint32_t cp = 0; /* utf8_decode sets it; the caller checked the encoding */
        size_t k = utf8_decode((const unsigned char *)s + i, n - i, &cp);
        i += k ? k : 1;
        char e[16];
        switch (cp) {
        case '"': buf_str(b, "\\\""); continue;
        case '\\': buf_str(b, "\\\\"); continue;
        case '\b': buf_str(b, "\\b"); continue;
        case '\f': buf_str(b, "\\f"); continue;
        case '\n': buf_str(b, "\\n"); continue;
        case '\r': buf_str(b, "\\r"); continue;
        case '\t': buf_str(b, "\\t"); continue;
        default: break;
        }
        if (cp >= 0x20 && cp <= 0x7E) {
            char c = (char)cp;
            buf_put(b, &c, 1);
        } else if (cp < 0x10000) {
            buf_put(b, e, (size_t)snprintf(e, sizeof e, "\\u%04x", (unsigned)cp));
        } else {
            uint32_t v = cp - 0x10000;
            buf_put(b, e, (size_t)snprintf(e, sizeof e, "\\u%04x\\u%04x",
                                           (unsigned)(0xD800 | (v >> 10)),
                                           (unsigned)(0xDC00 | (v & 0x3FF))));
        }
    }
    buf_put(b, "\"", 1);
}

typedef struct named {
    const char *name;
    int64_t idx;
} named;

static int named_cmp(const void *a, const void *b) {
    return strcmp(((const named *)a)->name, ((const named *)b)->name);
}

/* Sorts n names into out[] and checks them: present, valid UTF-8, distinct. */
static lunar_status sort_names(named *out, int64_t n, const char *const *names, const char *what,
                               const char *path) {
    for (int64_t i = 0; i < n; i++) {
        if (!names[i])
            return lunar_fail(LUNAR_ERR_ARG, "save: %s: %s %lld has no name", path, what,
                              (long long)i + 1);
        if (!utf8_valid(names[i]))
            return lunar_fail(LUNAR_ERR_ARG, "save: %s: %s name '%.64s' is not valid UTF-8",
                              path, what, names[i]);
        out[i] = (named){names[i], i};
    }
    if (n > 1) qsort(out, (size_t)n, sizeof *out, named_cmp);
    for (int64_t i = 1; i < n; i++)
        if (strcmp(out[i - 1].name, out[i].name) == 0)
            return lunar_fail(LUNAR_ERR_ARG, "save: %s: two %ss are named '%.64s'", path, what,
                              out[i].name);
    return LUNAR_OK;
}

static lunar_status write_all(int fd, const void *p, size_t n, const char *path) {
    const char *s = p;
    while (n > 0) {
        ssize_t k = write(fd, s, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0)
            return lunar_fail(LUNAR_ERR_IO, "save: %s: write failed (%s)", path,
                              k < 0 ? strerror(errno) : "no progress");
        s += k;
        n -= (size_t)k;
    }
    return LUNAR_OK;
}

/* Streams t's elements in row-major order through a bounded host buffer, so a tensor on
 * any backend is written without a second full-size copy. */
static lunar_status write_tensor(int fd, lunar_tensor *t, char *chunk, size_t chunk_size,
                                 const char *path) {
    lunar_tensor *c;
    LUNAR_CHECK(lunar_raw_contiguous(&c, t));
    lunar_status st = LUNAR_OK;
    size_t es = lunar_dtype_size(c->dtype);
    size_t total = (size_t)lunar_tensor_numel(c) * es, base = (size_t)c->offset * es;
    for (size_t done = 0; done < total && st == LUNAR_OK;) {
        size_t k = total - done < chunk_size ? total - done : chunk_size;
        st = c->storage->backend->read(chunk, c->storage, base + done, k);
        if (st == LUNAR_OK) st = write_all(fd, chunk, k, path);
        done += k;
    }
    lunar_tensor_release(c);
    return st;
}

/* fsync of the directory makes the rename itself durable; best effort, as some file
 * systems refuse to fsync a directory. */
static void sync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static lunar_status build_header(buf *h, int64_t n, const named *order,
                                 lunar_tensor *const *tensors, int64_t n_meta,
                                 const named *meta_order, const char *const *meta_values) {
    buf_put(h, "{", 1);
    if (n_meta > 0) {
        buf_str(h, "\"__metadata__\":{");
        for (int64_t i = 0; i < n_meta; i++) {
            if (i) buf_put(h, ",", 1);
            json_put_string(h, meta_order[i].name);
            buf_put(h, ":", 1);
            json_put_string(h, meta_values[meta_order[i].idx]);
        }
        buf_str(h, n > 0 ? "}," : "}");
    }
    int64_t offset = 0;
    for (int64_t i = 0; i < n; i++) {
        const lunar_tensor *t = tensors[order[i].idx];
        int64_t nbytes = lunar_tensor_numel(t) * (int64_t)lunar_dtype_size(t->dtype);
        if (i) buf_put(h, ",", 1);
        json_put_string(h, order[i].name);
        buf_str(h, ":{\"dtype\":\"");
        buf_str(h, st_dtype_names[t->dtype]);
        buf_str(h, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            if (d) buf_put(h, ",", 1);
            buf_int(h, t->shape[d]);
        }
        buf_str(h, "],\"data_offsets\":[");
        buf_int(h, offset);
        buf_put(h, ",", 1);
        buf_int(h, offset + nbytes);
        buf_str(h, "]}");
        offset += nbytes;
    }
    buf_put(h, "}", 1);
    while (h->n % 8) buf_put(h, " ", 1);
    return h->oom ? lunar_fail(LUNAR_ERR_MEMORY, "save: out of memory building the header")
                  : LUNAR_OK;
}

/* Creates a fresh temp file beside path; O_EXCL so that two writers never share one. */
static int open_temp(const char *path, char *tmp, size_t size) {
    static unsigned counter;
    for (int attempt = 0; attempt < 100; attempt++) {
        snprintf(tmp, size, "%s.tmp.%ld.%u", path, (long)getpid(), counter++);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST) return fd;
    }
    return -1;
}

lunar_status lunar_save_safetensors(const char *path, int64_t n, const char *const *names,
                                    lunar_tensor *const *tensors, int64_t n_meta,
                                    const char *const *meta_keys,
                                    const char *const *meta_values) {
    if (!host_is_little_endian())
        return lunar_fail(LUNAR_ERR_UNSUPPORTED, "save: %s: big-endian hosts are not supported",
                          path);
    if (n < 0 || n_meta < 0)
        return lunar_fail(LUNAR_ERR_ARG, "save: %s: negative count", path);
    for (int64_t i = 0; i < n; i++) {
        if (!tensors[i])
            return lunar_fail(LUNAR_ERR_ARG, "save: %s: tensor %lld is missing", path,
                              (long long)i + 1);
        if (names[i] && strcmp(names[i], "__metadata__") == 0)
            return lunar_fail(LUNAR_ERR_ARG,
                              "save: %s: '__metadata__' is reserved and cannot name a tensor",
                              path);
    }
    for (int64_t i = 0; i < n_meta; i++)
        if (!meta_values[i] || !utf8_valid(meta_values[i]))
            return lunar_fail(LUNAR_ERR_ARG, "save: %s: metadata '%.64s': the value is %s", path,
                              meta_keys[i] ? meta_keys[i] : "?",
                              meta_values[i] ? "not valid UTF-8" : "missing");

    lunar_status st = LUNAR_OK;
    named *order = malloc(sizeof *order * (size_t)(n + n_meta + 1));
    char *chunk = malloc(1 << 20);
    buf h = {0};
    char tmp[4096 + 64];
    int fd = -1;
    bool created = false;
    if (!order || !chunk) LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "save: out of memory"));
    named *meta_order = order + n;
    LUNAR_GOTO(sort_names(order, n, names, "tensor", path));
    LUNAR_GOTO(sort_names(meta_order, n_meta, meta_keys, "metadata key", path));
    LUNAR_GOTO(build_header(&h, n, order, tensors, n_meta, meta_order, meta_values));

    if (strlen(path) > 4096)
        LUNAR_GOTO(lunar_fail(LUNAR_ERR_IO, "save: %.64s...: path too long", path));
    fd = open_temp(path, tmp, sizeof tmp);
    if (fd < 0)
        LUNAR_GOTO(lunar_fail(LUNAR_ERR_IO, "save: %s: cannot create a temp file beside it (%s)",
                              path, strerror(errno)));
    created = true;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.n >> (8 * i));
    LUNAR_GOTO(write_all(fd, len8, 8, path));
    LUNAR_GOTO(write_all(fd, h.p, h.n, path));
    for (int64_t i = 0; i < n; i++)
        LUNAR_GOTO(write_tensor(fd, tensors[order[i].idx], chunk, 1 << 20, path));
    if (fsync(fd) != 0)
        LUNAR_GOTO(lunar_fail(LUNAR_ERR_IO, "save: %s: fsync failed (%s)", path,
                              strerror(errno)));
    int rc = close(fd);
    fd = -1;
    if (rc != 0)
        LUNAR_GOTO(lunar_fail(LUNAR_ERR_IO, "save: %s: close failed (%s)", path,
                              strerror(errno)));
    if (rename(tmp, path) != 0)
        LUNAR_GOTO(lunar_fail(LUNAR_ERR_IO, "save: %s: cannot rename the temp file onto it (%s)",
                              path, strerror(errno)));
    created = false;
    sync_parent_dir(path);
done:
    if (fd >= 0) close(fd);
    if (created) unlink(tmp);
    free(h.p);
    free(chunk);
    free(order);
    return st;
}

/* ---- a small JSON parser: objects, arrays, strings, integers, true/false/null ---- */

typedef enum jtype { J_NULL, J_TRUE, J_FALSE, J_INT, J_STR, J_ARR, J_OBJ } jtype;

typedef struct jval {
    jtype type;
    int64_t i;          /* J_INT */
    char *s;            /* J_STR: decoded UTF-8, NUL-terminated */
    int64_t n;          /* J_ARR, J_OBJ: number of items */
    struct jval *items; /* J_ARR, J_OBJ */
    char **keys;        /* J_OBJ */
} jval;

typedef struct jparser {
    const char *s;
    size_t n, pos;
    int depth;
    char err[200];
} jparser;

static void jfree(jval *v) {
    if (!v) return;
    free(v->s);
    for (int64_t k = 0; k < v->n; k++) {
        jfree(&v->items[k]);
        if (v->keys) free(v->keys[k]);
    }
    free(v->items);
    free(v->keys);
}

static bool jerr(jparser *p, const char *what) {
    if (!p->err[0]) snprintf(p->err, sizeof p->err, "bad header JSON at byte %zu: %s", p->pos,
                             what);
    return false;
}

static void jws(jparser *p) {
    while (p->pos < p->n && p->s[p->pos] && strchr(" \t\r\n", p->s[p->pos])) p->pos++;
}

static int jpeek(jparser *p) { return p->pos < p->n ? (unsigned char)p->s[p->pos] : -1; }

static bool jexpect(jparser *p, char c) {
    jws(p);
    if (jpeek(p) != (unsigned char)c) {
        char what[40];
        snprintf(what, sizeof what, "expected '%c'", c);
        return jerr(p, what);
    }
    p->pos++;
    return true;
}

static bool jhex4(jparser *p, uint32_t *out) {
    if (p->n - p->pos < 4) return jerr(p, "truncated \\u escape");
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p->s[p->pos + k];
        int d = c >= '0' && c <= '9' ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return jerr(p, "bad hex digit in a \\u escape");
        v = v * 16 + (uint32_t)d;
    }
    p->pos += 4;
    *out = v;
    return true;
}

static bool jstring(jparser *p, char **out) {
    jws(p);
    if (jpeek(p) != '"') return jerr(p, "expected a string");
    p->pos++;
    buf b = {0};
    buf_put(&b, "", 0);
    for (;;) {
        if (p->pos >= p->n) {
            free(b.p);
            return jerr(p, "unterminated string");
        }
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c < 0x20) {
            free(b.p);
            return jerr(p, "control character in a string");
        }
        if (c == '\\') {
            p->pos++;
            int e = jpeek(p);
            p->pos++;
            const char *simple = NULL;
            switch (e) {
            case '"': simple = "\""; break;
            case '\\': simple = "\\"; break;
            case '/': simple = "/"; break;
            case 'b': simple = "\b"; break;
            case 'f': simple = "\f"; break;
            case 'n': simple = "\n"; break;
            case 'r': simple = "\r"; break;
            case 't': simple = "\t"; break;
            default: break;
            }
            if (simple) {
                buf_put(&b, simple, 1);
                continue;
            }
            uint32_t cp, lo;
            bool ok = e == 'u' && jhex4(p, &cp);
            if (ok && cp >= 0xD800 && cp <= 0xDBFF) {
                ok = p->n - p->pos >= 2 && p->s[p->pos] == '\\' && p->s[p->pos + 1] == 'u';
                if (ok) p->pos += 2;
                ok = ok && jhex4(p, &lo) && lo >= 0xDC00 && lo <= 0xDFFF;
                if (ok) cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                else jerr(p, "unpaired surrogate in a \\u escape");
            } else if (ok && cp >= 0xDC00 && cp <= 0xDFFF) {
                ok = jerr(p, "unpaired surrogate in a \\u escape");
            } else if (ok && cp == 0) {
                ok = jerr(p, "\\u0000 (a NUL) in a string");
            }
            if (!ok) {
                free(b.p);
                if (e == 'u') return jerr(p, "bad \\u escape");
                p->pos--;
                return jerr(p, "unknown escape");
            }
            utf8_encode(&b, cp);
            continue;
        }
        uint32_t cp;
        size_t k = utf8_decode((const unsigned char *)p->s + p->pos, p->n - p->pos, &cp);
        if (!k) {
            free(b.p);
            return jerr(p, "invalid UTF-8 in a string");
        }
        buf_put(&b, p->s + p->pos, k);
        p->pos += k;
    }
    if (b.oom) {
        free(b.p);
        return jerr(p, "out of memory");
    }
    *out = b.p;
    return true;
}

static bool jint(jparser *p, int64_t *out) {
    bool neg = false;
    if (jpeek(p) == '-') neg = true, p->pos++;
    int c = jpeek(p);
    if (c < '0' || c > '9') return jerr(p, "expected a value");
    if (c == '0' && p->pos + 1 < p->n && p->s[p->pos + 1] >= '0' && p->s[p->pos + 1] <= '9')
        return jerr(p, "leading zero in a number");
    uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    while ((c = jpeek(p)) >= '0' && c <= '9') {
        uint64_t d = (uint64_t)(c - '0');
        if (v > (limit - d) / 10) return jerr(p, "integer out of range");
        v = v * 10 + d;
        p->pos++;
    }
    if (c == '.' || c == 'e' || c == 'E') return jerr(p, "numbers must be integers");
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

static bool jvalue(jparser *p, jval *v);

/* Arrays and objects: items grow by doubling; keys only for objects. */
static bool jcontainer(jparser *p, jval *v, bool is_obj) {
    if (++p->depth > MAX_DEPTH) return jerr(p, "nested too deeply");
    p->pos++;
    v->type = is_obj ? J_OBJ : J_ARR;
    int64_t cap = 0;
    jws(p);
    if (jpeek(p) == (is_obj ? '}' : ']')) {
        p->pos++;
        p->depth--;
        return true;
    }
    for (;;) {
        if (v->n == cap) {
            cap = cap ? 2 * cap : 4;
            jval *items = realloc(v->items, sizeof *items * (size_t)cap);
            if (items) v->items = items;
            char **keys = is_obj ? realloc(v->keys, sizeof *keys * (size_t)cap) : NULL;
            if (keys) v->keys = keys;
            if (!items || (is_obj && !keys)) return jerr(p, "out of memory");
        }
        jval *item = &v->items[v->n];
        memset(item, 0, sizeof *item);
        char *key = NULL;
        if (is_obj && !(jstring(p, &key) && jexpect(p, ':'))) {
            free(key);
            return false;
        }
        if (is_obj) v->keys[v->n] = key;
        v->n++; /* counted now, so that jfree releases a half-parsed item */
        if (!jvalue(p, item)) return false;
        jws(p);
        int c = jpeek(p);
        p->pos++;
        if (c == (is_obj ? '}' : ']')) break;
        if (c != ',') {
            p->pos--;
            return jerr(p, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    p->depth--;
    return true;
}

static bool jvalue(jparser *p, jval *v) {
    jws(p);
    int c = jpeek(p);
    if (c == '{' || c == '[') return jcontainer(p, v, c == '{');
    if (c == '"') {
        v->type = J_STR;
        return jstring(p, &v->s);
    }
    static const struct {
        const char *word;
        jtype type;
    } words[] = {{"true", J_TRUE}, {"false", J_FALSE}, {"null", J_NULL}};
    for (size_t k = 0; k < sizeof words / sizeof words[0]; k++) {
        size_t len = strlen(words[k].word);
        if (p->n - p->pos >= len && memcmp(p->s + p->pos, words[k].word, len) == 0) {
            p->pos += len;
            v->type = words[k].type;
            return true;
        }
    }
    if (c == -1) return jerr(p, "unexpected end of the header");
    v->type = J_INT;
    return jint(p, &v->i);
}

/* Parses the whole text: one value, then only whitespace (the format's padding). */
static bool jparse(jparser *p, jval *v) {
    memset(v, 0, sizeof *v);
    if (!jvalue(p, v)) return false;
    jws(p);
    if (p->pos != p->n) return jerr(p, "trailing characters after the header object");
    return true;
}

static const jval *jget(const jval *obj, const char *key) {
    for (int64_t k = 0; k < obj->n; k++)
        if (strcmp(obj->keys[k], key) == 0) return &obj->items[k];
    return NULL;
}

/* ---- reading ---- */

typedef struct entry {
    const char *name; /* borrowed from the parsed header */
    lunar_dtype dtype;
    int ndim;
    int64_t shape[LUNAR_MAX_DIMS];
    int64_t begin, end;
} entry;

static int entry_cmp(const void *a, const void *b) {
    const entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static lunar_status load_fail(const char *path, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static lunar_status load_fail(const char *path, const char *fmt, ...) {
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return lunar_fail(LUNAR_ERR_IO, "load: %s: %s", path, msg);
}

static const char *jtype_name(jtype t) {
    static const char *const names[] = {"null", "true", "false", "an integer", "a string",
                                        "an array", "an object"};
    return names[t];
}

/* Reads one tensor's description from the header into e. */
static lunar_status read_entry(const char *path, const char *name, const jval *v, entry *e,
                               int64_t data_size) {
    if (v->type != J_OBJ)
        return load_fail(path, "tensor '%.64s' is described by %s, not an object", name,
                         jtype_name(v->type));
    const jval *dt = jget(v, "dtype"), *shape = jget(v, "shape"), *off = jget(v, "data_offsets");
    if (!dt || !shape || !off)
        return load_fail(path, "tensor '%.64s' has no '%s'", name,
                         !dt ? "dtype" : !shape ? "shape" : "data_offsets");
    if (dt->type != J_STR)
        return load_fail(path, "tensor '%.64s': dtype is %s, not a string", name,
                         jtype_name(dt->type));
    e->name = name;
    e->dtype = LUNAR_DTYPE_COUNT;
    for (int k = 0; k < LUNAR_DTYPE_COUNT; k++)
        if (strcmp(dt->s, st_dtype_names[k]) == 0) e->dtype = (lunar_dtype)k;
    if (e->dtype == LUNAR_DTYPE_COUNT)
        return load_fail(path, "tensor '%.64s': unsupported dtype '%.32s' (lunar reads F32, "
                               "F64, I32, I64, U8 and BOOL)",
                         name, dt->s);
    if (shape->type != J_ARR)
        return load_fail(path, "tensor '%.64s': shape is %s, not an array", name,
                         jtype_name(shape->type));
    if (shape->n > LUNAR_MAX_DIMS)
        return load_fail(path, "tensor '%.64s' has %lld dims; lunar tensors have at most %d",
                         name, (long long)shape->n, LUNAR_MAX_DIMS);
    e->ndim = (int)shape->n;
    int64_t es = (int64_t)lunar_dtype_size(e->dtype), nbytes = es;
    bool too_big = false;
    for (int d = 0; d < e->ndim; d++) {
        const jval *s = &shape->items[d];
        if (s->type != J_INT || s->i < 0)
            return load_fail(path, "tensor '%.64s': size %d of its shape is not a "
                                   "non-negative integer",
                             name, d + 1);
        e->shape[d] = s->i;
        if (s->i > 0 && nbytes > INT64_MAX / s->i) too_big = true;
        else nbytes *= s->i;
    }
    if (off->type != J_ARR || off->n != 2 || off->items[0].type != J_INT ||
        off->items[1].type != J_INT)
        return load_fail(path, "tensor '%.64s': data_offsets is not an array of two integers",
                         name);
    e->begin = off->items[0].i;
    e->end = off->items[1].i;
    if (e->begin < 0 || e->end < e->begin)
        return load_fail(path, "tensor '%.64s': bad data_offsets [%lld, %lld]", name,
                         (long long)e->begin, (long long)e->end);
    if (e->end > data_size)
        return load_fail(path, "tensor '%.64s': data_offsets [%lld, %lld] lie outside the data "
                               "region (%lld bytes): the file is truncated or corrupt",
                         name, (long long)e->begin, (long long)e->end, (long long)data_size);
    if (too_big || e->end - e->begin != nbytes) {
        char s[128];
        return load_fail(path, "tensor '%.64s': shape %s of %s needs %s%lld bytes but "
                               "data_offsets [%lld, %lld] hold %lld",
                         name, lunar_shape_str(s, sizeof s, e->ndim, e->shape),
                         lunar_dtype_name(e->dtype), too_big ? "more than " : "",
                         (long long)(too_big ? INT64_MAX : nbytes), (long long)e->begin,
                         (long long)e->end, (long long)(e->end - e->begin));
    }
    return LUNAR_OK;
}

static int str_ptr_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* JSON allows repeated keys; a header must not have them. Sorting keeps this O(n log n)
 * for headers with many tensors. */
static lunar_status check_unique(const char *path, const jval *obj, const char *what) {
    if (obj->n < 2) return LUNAR_OK;
    char **keys = malloc(sizeof *keys * (size_t)obj->n);
    if (!keys) return lunar_fail(LUNAR_ERR_MEMORY, "load: %s: out of memory", path);
    memcpy(keys, obj->keys, sizeof *keys * (size_t)obj->n);
    qsort(keys, (size_t)obj->n, sizeof *keys, str_ptr_cmp);
    lunar_status st = LUNAR_OK;
    for (int64_t k = 1; k < obj->n && st == LUNAR_OK; k++)
        if (strcmp(keys[k - 1], keys[k]) == 0)
            st = load_fail(path, "%s names '%.64s' twice", what, keys[k]);
    free(keys);
    return st;
}

static lunar_status read_header(const char *path, const jval *root, int64_t data_size,
                                entry **entries, int64_t *n_entries, const jval **meta) {
    if (root->type != J_OBJ)
        return load_fail(path, "the header is %s, not a JSON object", jtype_name(root->type));
    LUNAR_CHECK(check_unique(path, root, "the header"));
    *meta = jget(root, "__metadata__");
    if (*meta) {
        if ((*meta)->type != J_OBJ)
            return load_fail(path, "__metadata__ is %s, not an object",
                             jtype_name((*meta)->type));
        LUNAR_CHECK(check_unique(path, *meta, "__metadata__"));
        for (int64_t k = 0; k < (*meta)->n; k++) {
            if ((*meta)->items[k].type != J_STR)
                return load_fail(path, "__metadata__ value '%.64s' is %s, not a string",
                                 (*meta)->keys[k], jtype_name((*meta)->items[k].type));
        }
    }
    int64_t n = root->n - (*meta ? 1 : 0);
    entry *es = calloc((size_t)n + 1, sizeof *es);
    if (!es) return lunar_fail(LUNAR_ERR_MEMORY, "load: %s: out of memory", path);
    *entries = es;
    *n_entries = 0;
    for (int64_t k = 0; k < root->n; k++) {
        if (strcmp(root->keys[k], "__metadata__") == 0) continue;
        LUNAR_CHECK(read_entry(path, root->keys[k], &root->items[k], &es[*n_entries],
                               data_size));
        (*n_entries)++;
    }
    /* the tensors must tile the data region: no gap, no overlap, nothing left over */
    qsort(es, (size_t)n, sizeof *es, entry_cmp);
    int64_t at = 0;
    for (int64_t k = 0; k < n; k++) {
        if (es[k].begin != at)
            return load_fail(path, "tensor '%.64s' starts at byte %lld of the data but %s at "
                                   "%lld: %s",
                             es[k].name, (long long)es[k].begin,
                             k ? "the previous tensor ends" : "the data starts",
                             (long long)at,
                             es[k].begin < at ? "overlapping data" : "a gap in the data");
        at = es[k].end;
    }
    if (at != data_size)
        return load_fail(path, "the tensors cover %lld bytes of data but the file holds %lld "
                               "after the header",
                         (long long)at, (long long)data_size);
    return LUNAR_OK;
}

static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static lunar_status read_tensors(const char *path, FILE *f, const entry *es, int64_t n,
                                 lunar_safetensors *out) {
    for (int64_t k = 0; k < n; k++) {
        const entry *e = &es[k];
        out->names[k] = dup_str(e->name);
        if (!out->names[k]) return lunar_fail(LUNAR_ERR_MEMORY, "load: %s: out of memory", path);
        LUNAR_CHECK(lunar_empty(&out->tensors[k], e->ndim, e->shape, e->dtype));
        out->n = k + 1;
        size_t nbytes = (size_t)(e->end - e->begin);
        unsigned char *p = lunar_tensor_data(out->tensors[k]);
        if (nbytes && fread(p, 1, nbytes, f) != nbytes)
            return load_fail(path, "the file ended while reading tensor '%.64s'", e->name);
        if (e->dtype == LUNAR_BOOL)
            for (size_t i = 0; i < nbytes; i++)
                if (p[i] > 1)
                    return load_fail(path, "bool tensor '%.64s' holds the byte %u at element "
                                           "%zu (only 0 and 1 are booleans)",
                                     e->name, p[i], i);
    }
    return LUNAR_OK;
}

lunar_status lunar_load_safetensors(lunar_safetensors **out, const char *path) {
    *out = NULL;
    if (!host_is_little_endian())
        return load_fail(path, "big-endian hosts are not supported");
    FILE *f = fopen(path, "rb");
    if (!f) return load_fail(path, "cannot open (%s)", strerror(errno));
    lunar_status st = LUNAR_OK;
    char *text = NULL;
    jval root = {0};
    entry *entries = NULL;
    int64_t n = 0;
    lunar_safetensors *r = NULL;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode))
        LUNAR_GOTO(load_fail(path, "not a regular file"));
    int64_t size = (int64_t)sb.st_size;
    unsigned char len8[8];
    if (size < 8)
        LUNAR_GOTO(load_fail(path, "the file has %lld bytes, fewer than the 8 of the header "
                                   "length: not a safetensors file",
                             (long long)size));
    if (fread(len8, 1, 8, f) != 8) LUNAR_GOTO(load_fail(path, "cannot read the header length"));
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
    if (hlen > MAX_HEADER)
        LUNAR_GOTO(load_fail(path, "header length %llu is absurd (more than 100 MB): not a "
                                   "safetensors file",
                             (unsigned long long)hlen));
    if ((int64_t)hlen > size - 8)
        LUNAR_GOTO(load_fail(path, "header length %llu is larger than the %lld bytes that "
                                   "follow it: the file is truncated or not safetensors",
                             (unsigned long long)hlen, (long long)(size - 8)));
    text = malloc(hlen + 1);
    if (!text) LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "load: %s: out of memory", path));
    if (fread(text, 1, hlen, f) != hlen) LUNAR_GOTO(load_fail(path, "cannot read the header"));
    text[hlen] = '\0';
    jparser p = {.s = text, .n = hlen};
    if (!jparse(&p, &root)) LUNAR_GOTO(load_fail(path, "%s", p.err));

    const jval *meta = NULL;
    LUNAR_GOTO(read_header(path, &root, size - 8 - (int64_t)hlen, &entries, &n, &meta));
    int64_t n_meta = meta ? meta->n : 0;
    r = calloc(1, sizeof *r);
    if (r) {
        r->names = calloc((size_t)n + 1, sizeof *r->names);
        r->tensors = calloc((size_t)n + 1, sizeof *r->tensors);
        r->meta_keys = calloc((size_t)n_meta + 1, sizeof *r->meta_keys);
        r->meta_values = calloc((size_t)n_meta + 1, sizeof *r->meta_values);
    }
    if (!r || !r->names || !r->tensors || !r->meta_keys || !r->meta_values)
        LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "load: %s: out of memory", path));
    for (int64_t k = 0; k < n_meta; k++) {
        r->meta_keys[k] = dup_str(meta->keys[k]);
        r->meta_values[k] = dup_str(meta->items[k].s);
        r->n_meta = k + 1;
        if (!r->meta_keys[k] || !r->meta_values[k])
            LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "load: %s: out of memory", path));
    }
    LUNAR_GOTO(read_tensors(path, f, entries, n, r));
done:
    fclose(f);
    free(text);
    free(entries);
    jfree(&root);
    if (st == LUNAR_OK) *out = r;
    else lunar_safetensors_free(r);
    return st;
}

void lunar_safetensors_free(lunar_safetensors *st) {
    if (!st) return;
    for (int64_t k = 0; k < st->n; k++) {
        free(st->names[k]);
        lunar_tensor_release(st->tensors[k]);
    }
    /* read_tensors counts a tensor once its name exists; the next slot may hold a name only */
    if (st->names) free(st->names[st->n]);
    for (int64_t k = 0; k < st->n_meta; k++) {
        free(st->meta_keys[k]);
        free(st->meta_values[k]);
    }
    if (st->meta_keys) free(st->meta_keys[st->n_meta]);
    if (st->meta_values) free(st->meta_values[st->n_meta]);
    free(st->names);
    free(st->tensors);
    free(st->meta_keys);
    free(st->meta_values);
    free(st);
}
