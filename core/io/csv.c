/*
 * csv.c - reading numeric CSV files (RFC 4180: comma separated, a header row, fields may be
 * quoted with "" for a quote inside) into a [rows, cols] float tensor. Missing fields (empty,
 * NA, N/A, nan, null) become NaN. Text columns, declared by the caller, map each distinct
 * text to 1, 2, ... in order of first appearance; a column declared "auto" is numeric unless
 * some field is not a number, then text. Files may be gzip-compressed.
 *
 * Errors name read_csv, the file, the line and the column.
 */
#include "../lunar-impl.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static bool sbuf_put(sbuf *b, char c) {
    if (b->n + 2 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        char *p = realloc(b->p, cap);
        if (!p) return false;
        b->p = p;
        b->cap = cap;
    }
    b->p[b->n++] = c;
    b->p[b->n] = '\0';
    return true;
}

/* The distinct texts of one column, with an open-addressing hash of their positions so a
 * column of many distinct values stays linear. */
typedef struct levels {
    int64_t n, cap; /* cap: slots in the hash, a power of two > 2n */
    char **names;   /* n of them, in order of first appearance */
    int64_t *slots; /* -1 or a position in names */
} levels;

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* The 1-based code of s, adding it when new; 0 when memory runs out. */
static int64_t levels_code(levels *lv, const char *s) {
    if (2 * (lv->n + 1) >= lv->cap) {
        int64_t cap = lv->cap ? lv->cap * 2 : 16;
        int64_t *slots = malloc(sizeof *slots * (size_t)cap);
        char **names = realloc(lv->names, sizeof *names * (size_t)(cap / 2));
        if (!slots || !names) {
            free(slots);
            if (names) lv->names = names;
            return 0;
        }
        lv->names = names;
        for (int64_t k = 0; k < cap; k++) slots[k] = -1;
        for (int64_t k = 0; k < lv->n; k++) {
            uint64_t h = hash_str(names[k]) & (uint64_t)(cap - 1);
            while (slots[h] >= 0) h = (h + 1) & (uint64_t)(cap - 1);
            slots[h] = k;
        }
        free(lv->slots);
        lv->slots = slots;
        lv->cap = cap;
    }
    uint64_t h = hash_str(s) & (uint64_t)(lv->cap - 1);
    while (lv->slots[h] >= 0) {
        if (strcmp(lv->names[lv->slots[h]], s) == 0) return lv->slots[h] + 1;
        h = (h + 1) & (uint64_t)(lv->cap - 1);
    }
    char *copy = strdup(s);
    if (!copy) return 0;
    lv->names[lv->n] = copy;
    lv->slots[h] = lv->n;
    return ++lv->n;
}

static void levels_clear(levels *lv) {
    for (int64_t k = 0; k < lv->n; k++) free(lv->names[k]);
    free(lv->names);
    free(lv->slots);
    memset(lv, 0, sizeof *lv);
}

void lunar_csv_free(lunar_csv *c) {
    if (!c) return;
    for (int64_t j = 0; j < c->cols; j++) {
        if (c->names) free(c->names[j]);
        if (c->levels && c->levels[j]) {
            for (int64_t k = 0; k < c->n_levels[j]; k++) free(c->levels[j][k]);
            free(c->levels[j]);
        }
    }
    free(c->names);
    free(c->levels);
    free(c->n_levels);
    lunar_tensor_release(c->data);
    free(c);
}

/* The whole (decompressed) file as a NUL-terminated string. */
static lunar_status slurp(const char *path, char **text, size_t *len) {
    gzFile f = gzopen(path, "rb");
    if (!f) return lunar_fail(LUNAR_ERR_IO, "read_csv: %s: %s", path, strerror(errno));
    size_t n = 0, cap = 1 << 16;
    char *p = malloc(cap);
    for (;;) {
        if (!p) {
            gzclose(f);
            return lunar_fail(LUNAR_ERR_MEMORY, "read_csv: %s: out of memory", path);
        }
        int r = gzread(f, p + n, (unsigned)(cap - n - 1));
        if (r < 0) {
            int err;
            const char *msg = gzerror(f, &err);
            lunar_status st = lunar_fail(LUNAR_ERR_IO, "read_csv: %s: %s", path,
                                         err == Z_ERRNO ? strerror(errno) : msg);
            free(p);
            gzclose(f);
            return st;
        }
        n += (size_t)r;
        if (r == 0) break;
        if (n + 1 == cap) {
            char *q = realloc(p, cap * 2);
            if (!q) free(p);
            p = q;
            cap *= 2;
        }
    }
    gzclose(f);
    p[n] = '\0';
    if (strlen(p) != n) {
        free(p);
        return lunar_fail(LUNAR_ERR_IO, "read_csv: %s: a NUL byte (a binary file?)", path);
    }
    *text = p;
    *len = n;
    return LUNAR_OK;
}

/* Reads one field at *s into out (quotes removed); *s moves past it and its comma. Sets
 * *end_of_record at a newline or the end; counts newlines (quoted ones too) in *line.
 * Returns false for a quote that is never closed. */
static bool next_field(const char **s, sbuf *out, bool *end_of_record, int64_t *line,
                       bool *oom) {
    const char *p = *s;
    if (!out->p && !sbuf_put(out, '\0')) {
        *oom = true;
        return true;
    }
    out->n = 0;
    out->p[0] = '\0';
    while (*p == ' ' || *p == '\t') p++;
    if (*p == '"') {
        p++;
        for (;;) {
            if (!*p) return false;
            if (*p == '"') {
                if (p[1] != '"') {
                    p++;
                    break;
                }
                p++;
            }
            if (*p == '\n') (*line)++;
            if (!sbuf_put(out, *p++)) *oom = true;
        }
        while (*p == ' ' || *p == '\t') p++;
    }
    while (*p && *p != ',' && *p != '\n' && *p != '\r')
        if (!sbuf_put(out, *p++)) *oom = true;
    while (out->n > 0 && (out->p[out->n - 1] == ' ' || out->p[out->n - 1] == '\t'))
        out->p[--out->n] = '\0';
    *end_of_record = *p != ',';
    if (*p == ',') p++;
    else if (*p == '\r') p += p[1] == '\n' ? 2 : 1;
    else if (*p == '\n') p++;
    if (*end_of_record) (*line)++;
    *s = p;
    return true;
}

static bool is_missing(const char *s) {
    return !*s || strcasecmp(s, "na") == 0 || strcasecmp(s, "n/a") == 0 ||
           strcasecmp(s, "nan") == 0 || strcasecmp(s, "null") == 0;
}

/* Skips blank lines; returns false at the end of the text. */
static bool skip_blank(const char **s, int64_t *line) {
    const char *p = *s;
    for (;;) {
        const char *q = p;
        while (*q == ' ' || *q == '\t') q++;
        if (*q == '\r' && q[1] == '\n') q++;
        if (*q == '\n' || *q == '\r') {
            p = q + 1;
            (*line)++;
            continue;
        }
        if (!*q) {
            *s = q;
            return false;
        }
        *s = p;
        return true;
    }
}

lunar_status lunar_read_csv(lunar_csv **out, const char *path, int n_spec,
                            const lunar_csv_column *spec, lunar_dtype dt) {
    *out = NULL;
    if (!lunar_dtype_is_float(dt))
        return lunar_fail(LUNAR_ERR_DTYPE, "read_csv: %s: dtype %s (float32 or float64)", path,
                          lunar_dtype_name(dt));
    char *text = NULL;
    size_t len;
    LUNAR_CHECK(slurp(path, &text, &len));
    lunar_status st = LUNAR_OK;
    lunar_csv *c = calloc(1, sizeof *c);
    sbuf field = {0};
    double *vals = NULL;
    levels *lv = NULL;
    lunar_csv_kind *kind = NULL;
    bool oom = false, eor = false;
    if (!c) LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "read_csv: %s: out of memory", path));

    /* the header */
    const char *s = text;
    int64_t line = 1;
    if ((unsigned char)s[0] == 0xEF && (unsigned char)s[1] == 0xBB && (unsigned char)s[2] == 0xBF)
        s += 3; /* a UTF-8 byte order mark, as spreadsheets write */
    if (!skip_blank(&s, &line))
        LUNAR_GOTO(lunar_fail(LUNAR_ERR_IO, "read_csv: %s: empty file (no header row)", path));
    int64_t cap_names = 0;
    while (!eor) {
        int64_t at = line;
        if (!next_field(&s, &field, &eor, &line, &oom))
            LUNAR_GOTO(lunar_fail(LUNAR_ERR_IO, "read_csv: %s:%lld: a quote is never closed",
                                  path, (long long)at));
        if (c->cols == cap_names) {
            cap_names = cap_names ? 2 * cap_names : 16;
            char **names = realloc(c->names, sizeof *names * (size_t)cap_names);
            if (!names) LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "read_csv: out of memory"));
            c->names = names;
        }
        c->names[c->cols] = strdup(field.p ? field.p : "");
        if (!c->names[c->cols++] || oom)
            LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "read_csv: out of memory"));
    }
    int64_t cols = c->cols;
    const char *body = s;
    int64_t body_line = line;

    /* the caller's column kinds */
    kind = calloc((size_t)cols, sizeof *kind);
    lv = calloc((size_t)cols, sizeof *lv);
    if (!kind || !lv) LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "read_csv: out of memory"));
    for (int k = 0; k < n_spec; k++) {
        int64_t j = spec[k].index;
        if (spec[k].name) {
            for (j = 0; j < cols && strcmp(c->names[j], spec[k].name) != 0; j++) {}
            if (j == cols)
                LUNAR_GOTO(lunar_fail(LUNAR_ERR_ARG, "read_csv: %s: no column named '%s'",
                                      path, spec[k].name));
        } else {
            if (j < 0) j += cols;
            if (j < 0 || j >= cols)
                LUNAR_GOTO(lunar_fail(LUNAR_ERR_ARG, "read_csv: %s: column %lld out of range "
                                                     "for %lld columns",
                                      path, (long long)spec[k].index, (long long)cols));
        }
        kind[j] = spec[k].kind;
    }

    /* the rows; an auto column that meets text becomes a text column and we start over */
    int64_t rows, cap_vals;
restart:
    rows = 0;
    cap_vals = 0;
    s = body;
    line = body_line;
    for (int64_t j = 0; j < cols; j++) levels_clear(&lv[j]);
    while (skip_blank(&s, &line)) {
        int64_t at = line, j = 0;
        if (rows * cols + cols > cap_vals) {
            cap_vals = cap_vals ? 2 * cap_vals : 1024 * cols;
            double *v = realloc(vals, sizeof *v * (size_t)cap_vals);
            if (!v) LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "read_csv: %s: out of memory", path));
            vals = v;
        }
        double *row = vals + rows * cols;
        for (eor = false; !eor; j++) {
            if (!next_field(&s, &field, &eor, &line, &oom))
                LUNAR_GOTO(lunar_fail(LUNAR_ERR_IO, "read_csv: %s:%lld: a quote is never closed",
                                      path, (long long)at));
            if (oom) LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "read_csv: out of memory"));
            if (j >= cols) continue; /* counted, reported below */
            const char *f = field.p;
            if (is_missing(f)) {
                row[j] = NAN;
            } else if (kind[j] == LUNAR_CSV_TEXT) {
                int64_t code = levels_code(&lv[j], f);
                if (!code) LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "read_csv: out of memory"));
                row[j] = (double)code;
            } else {
                char *end;
                row[j] = strtod(f, &end);
                if (*end) {
                    if (kind[j] == LUNAR_CSV_AUTO) {
                        kind[j] = LUNAR_CSV_TEXT;
                        goto restart;
                    }
                    LUNAR_GOTO(lunar_fail(LUNAR_ERR_IO,
                                          "read_csv: %s:%lld: column %lld ('%s'): '%.40s' is not "
                                          "a number (declare the column as text to read labels)",
                                          path, (long long)at, (long long)j + 1, c->names[j], f));
                }
            }
        }
        if (j != cols)
            LUNAR_GOTO(lunar_fail(LUNAR_ERR_IO, "read_csv: %s:%lld: %lld fields, the header has "
                                                "%lld",
                                  path, (long long)at, (long long)j, (long long)cols));
        rows++;
    }

    /* hand over */
    c->rows = rows;
    int64_t shape[2] = {rows, cols};
    lunar_tensor *t64 = NULL;
    LUNAR_GOTO(lunar_from_data(&t64, 2, shape, LUNAR_F64, vals ? vals : (void *)&shape));
    if (dt == LUNAR_F64) c->data = t64;
    else {
        st = lunar_to_dtype(&c->data, t64, dt);
        lunar_tensor_release(t64);
        if (st != LUNAR_OK) goto done;
    }
    c->n_levels = calloc((size_t)cols, sizeof *c->n_levels);
    c->levels = calloc((size_t)cols, sizeof *c->levels);
    if (!c->n_levels || !c->levels)
        LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "read_csv: out of memory"));
    for (int64_t j = 0; j < cols; j++) {
        if (kind[j] != LUNAR_CSV_TEXT) continue;
        c->n_levels[j] = lv[j].n;
        c->levels[j] = lv[j].names; /* taken over */
        lv[j].names = NULL;
        lv[j].n = 0;
        if (!c->levels[j]) c->levels[j] = calloc(1, sizeof(char *));
        if (!c->levels[j]) LUNAR_GOTO(lunar_fail(LUNAR_ERR_MEMORY, "read_csv: out of memory"));
    }
done:
    if (lv)
        for (int64_t j = 0; c && j < c->cols; j++) levels_clear(&lv[j]);
    free(lv);
    free(kind);
    free(vals);
    free(field.p);
    free(text);
    if (st != LUNAR_OK) lunar_csv_free(c);
    else *out = c;
    return st;
}
