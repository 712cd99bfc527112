/* streamdrift.core._speedups: a poll of prediction (or feedback) messages parsed straight into columns.
 *
 * An accelerator, never the only way: decode.py runs without it, and whatever
 * this module is not sure of it hands back (returns None) for orjson and the
 * Python checks to decide. So it only ever accepts, and what it accepts it
 * must read exactly as orjson does. It accepts a message when the value is a
 * JSON object of the prediction contract's shape, in UTF-8, with:
 *   - no escape in a string it returns (any escape: None) and no \u escape at all;
 *   - no key twice, in the message or in its features;
 *   - features with the first message's names, in the same order;
 *   - integers of at most 18 digits; numbers that are finite and, unless zero
 *     is written, not rounded to zero;
 *   - nesting at most 64 deep.
 * The contract's value checks (lengths, model id pattern, score range, time
 * range, keys) stay in decode.py, which applies them to these columns as it
 * does to orjson's.
 *
 * Numbers: a decimal of at most 19 digits whose value is below 2**53 and
 * whose power of ten is within 22 is exact as one double multiplication or
 * division (Clinger's fast path); any other goes to CPython's correctly
 * rounded PyOS_string_to_double. orjson rounds correctly too, so both give
 * the same double.
 *
 * Memory: every read is bounded by the end of the buffer; every object made is
 * owned by a list or released before returning.
 *
 * Also here: ``arrays``, the walk that puts a loaded snapshot skeleton's arrays
 * in place (state.py's ``_walk`` in C; state.py checks each placeholder);
 * and a warm-up column's row loops (``count_numbers``, ``add_floats``,
 * ``add_categories``: warmup.py's plain loops in C, each tested equal to them), and what a state writes of
 * its distinct-number table (``table_parts``: warmup_tables.py's, tested equal to it) and the counting of its
 * pending numbers into its histogram (``merge_buckets``: warmup.compact's numpy calls, tested equal to them).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 64
#define MAX_COLUMNS 1000
#define STRING_CACHE 8
#define NUMBER_TEXT 400

typedef struct {
    const unsigned char *p;
    const unsigned char *end;
} Cursor;

/* ------------------------------------------------------------------ lexing */

static inline void skip_ws(Cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\n' || *c->p == '\r' || *c->p == '\t'))
        c->p++;
}

static inline int take(Cursor *c, unsigned char ch) {
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* Strict UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF), as orjson requires
 * of the whole document. */
static int valid_utf8(const unsigned char *s, Py_ssize_t n) {
    const unsigned char *end = s + n;
    while (s < end) {
        if (end - s >= 8) {
            uint64_t w;
            memcpy(&w, s, 8);
            if (!(w & 0x8080808080808080ULL)) {
                s += 8;
                continue;
            }
        }
        unsigned char b = *s;
        if (b < 0x80) {
            s++;
            continue;
        }
        Py_ssize_t need;
        unsigned char lo = 0x80, hi = 0xBF;
        if (b >= 0xC2 && b <= 0xDF) {
            need = 1;
        } else if (b >= 0xE0 && b <= 0xEF) {
            need = 2;
            if (b == 0xE0) lo = 0xA0;
            if (b == 0xED) hi = 0x9F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            need = 3;
            if (b == 0xF0) lo = 0x90;
            if (b == 0xF4) hi = 0x8F;
        } else {
            return 0;
        }
        if (end - s <= need) return 0;
        if (s[1] < lo || s[1] > hi) return 0;
        for (Py_ssize_t i = 2; i <= need; i++)
            if (s[i] < 0x80 || s[i] > 0xBF) return 0;
        s += need + 1;
    }
    return 1;
}

/* A string at the cursor (which must be at its opening quote): its bytes between the quotes,
 * and whether it holds an escape. No \u escape (a lone surrogate is orjson's to refuse), no
 * control character. */
/* The bytes that end a run of plain string bytes: the quote, the backslash, control characters. */
static unsigned char STRING_STOP[256];

static void init_tables(void) {
    for (int ch = 0; ch < 0x20; ch++) STRING_STOP[ch] = 1;
    STRING_STOP['"'] = STRING_STOP['\\'] = 1;
}

static int scan_string(Cursor *c, const unsigned char **start, Py_ssize_t *len, int *escaped) {
    if (c->p >= c->end || *c->p != '"') return 0;
    const unsigned char *s = ++c->p;
    *escaped = 0;
    while (c->p < c->end) {
        while (c->p < c->end && !STRING_STOP[*c->p]) c->p++; /* one lookup a byte */
        if (c->p >= c->end) return 0;
        unsigned char ch = *c->p;
        if (ch == '"') {
            *start = s;
            *len = c->p - s;
            c->p++;
            return 1;
        }
        if (ch < 0x20) return 0;
        if (ch == '\\') {
            if (c->end - c->p < 2) return 0;
            unsigned char e = c->p[1];
            if (!(e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't'))
                return 0;
            *escaped = 1;
            c->p += 2;
            continue;
        }
    }
    return 0;
}

typedef struct {
    int is_int;
    long long integer;
    double real;
} Number;

static const double POW10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* A JSON number at the cursor: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int scan_number(Cursor *c, Number *out) {
    const unsigned char *s = c->p, *end = c->end, *p = s;
    int negative = 0;
    if (p < end && *p == '-') {
        negative = 1;
        p++;
    }
    if (p >= end || *p < '0' || *p > '9') return 0;
    uint64_t mantissa = 0;
    int digits = 0;    /* significant digits in mantissa */
    int dropped = 0;   /* digits past the 19th: the slow path */
    int exp10 = 0;
    int int_digits = 0;
    if (*p == '0') {
        p++;
        int_digits = 1;
    } else {
        while (p < end && *p >= '0' && *p <= '9') {
            if (digits < 19) {
                mantissa = mantissa * 10 + (uint64_t)(*p - '0');
                digits++;
            } else {
                dropped = 1;
            }
            int_digits++;
            p++;
        }
    }
    int fraction = 0, exponent = 0;
    if (p < end && *p == '.') {
        fraction = 1;
        p++;
        if (p >= end || *p < '0' || *p > '9') return 0;
        while (p < end && *p >= '0' && *p <= '9') {
            if (mantissa == 0 && *p == '0') {
                exp10--; /* a leading zero of the fraction: not a significant digit */
            } else if (digits < 19) {
                mantissa = mantissa * 10 + (uint64_t)(*p - '0');
                digits++;
                exp10--;
            } else {
                dropped = 1;
            }
            p++;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        exponent = 1;
        p++;
        int exp_negative = 0;
        if (p < end && (*p == '+' || *p == '-')) {
            exp_negative = *p == '-';
            p++;
        }
        if (p >= end || *p < '0' || *p > '9') return 0;
        int e = 0;
        while (p < end && *p >= '0' && *p <= '9') {
            if (e < 100000) e = e * 10 + (*p - '0');
            p++;
        }
        exp10 += exp_negative ? -e : e;
    }
    c->p = p;
    if (!fraction && !exponent) {
        if (int_digits > 18) return 0; /* orjson's 64-bit and larger integers: its call */
        out->is_int = 1;
        out->integer = negative ? -(long long)mantissa : (long long)mantissa;
        return 1;
    }
    out->is_int = 0;
    if (!dropped && mantissa <= (1ULL << 53) && exp10 >= -22 && exp10 <= 22) {
        double v = (double)mantissa;
        v = exp10 < 0 ? v / POW10[-exp10] : v * POW10[exp10];
        out->real = negative ? -v : v;
        return 1;
    }
    Py_ssize_t n = p - s;
    if (n >= NUMBER_TEXT) return 0;
    char text[NUMBER_TEXT];
    memcpy(text, s, (size_t)n);
    text[n] = '\0';
    char *stop = NULL;
    double v = PyOS_string_to_double(text, &stop, NULL);
    if (v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (stop != text + n || !isfinite(v)) return 0;
    if (v == 0.0 && mantissa != 0) return 0; /* rounded to zero: orjson's call */
    out->real = v;
    return 1;
}

static int skip_value(Cursor *c, int depth);

static int skip_members(Cursor *c, unsigned char close, int depth) {
    if (depth > MAX_DEPTH) return 0;
    if (take(c, close)) return 1;
    for (;;) {
        skip_ws(c);
        if (close == '}') {
            const unsigned char *k;
            Py_ssize_t kn;
            int esc;
            if (!scan_string(c, &k, &kn, &esc) || !take(c, ':')) return 0;
        }
        if (!skip_value(c, depth + 1)) return 0;
        if (take(c, ',')) continue;
        return take(c, close);
    }
}

/* Any JSON value, checked and passed over. */
static int skip_value(Cursor *c, int depth) {
    skip_ws(c);
    if (c->p >= c->end) return 0;
    const unsigned char *s = c->p;
    Py_ssize_t left = c->end - s;
    const unsigned char *k;
    Py_ssize_t kn;
    int esc;
    Number num;
    switch (*s) {
    case '{':
        c->p++;
        return skip_members(c, '}', depth);
    case '[':
        c->p++;
        return skip_members(c, ']', depth);
    case '"':
        return scan_string(c, &k, &kn, &esc);
    case 't':
        if (left >= 4 && !memcmp(s, "true", 4)) { c->p += 4; return 1; }
        return 0;
    case 'f':
        if (left >= 5 && !memcmp(s, "false", 5)) { c->p += 5; return 1; }
        return 0;
    case 'n':
        if (left >= 4 && !memcmp(s, "null", 4)) { c->p += 4; return 1; }
        return 0;
    default:
        return scan_number(c, &num);
    }
}

static int field(const unsigned char *k, Py_ssize_t kn, const char *name) {
    return (size_t)kn == strlen(name) && !memcmp(k, name, (size_t)kn);
}

/* ----------------------------------------------------------- Python values */

typedef struct {
    Py_ssize_t len;
    const unsigned char *bytes; /* the cached string's UTF-8 (owned by the object) */
    PyObject *object;
} CachedString;

typedef struct {
    CachedString entries[STRING_CACHE];
    int used, next;
} StringCache;

static void cache_clear(StringCache *cache) {
    for (int i = 0; i < cache->used; i++) Py_DECREF(cache->entries[i].object);
    cache->used = cache->next = 0;
}

/* A new reference to the str of these UTF-8 bytes; repeated values share one object. */
static PyObject *cached_string(StringCache *cache, const unsigned char *s, Py_ssize_t n) {
    for (int i = 0; i < cache->used; i++) {
        CachedString *e = &cache->entries[i];
        if (e->len == n && !memcmp(e->bytes, s, (size_t)n)) {
            Py_INCREF(e->object);
            return e->object;
        }
    }
    PyObject *str = PyUnicode_DecodeUTF8((const char *)s, n, NULL);
    if (str == NULL) return NULL;
    Py_ssize_t size;
    const char *utf8 = PyUnicode_AsUTF8AndSize(str, &size);
    if (utf8 == NULL) {
        Py_DECREF(str);
        return NULL;
    }
    int at;
    if (cache->used < STRING_CACHE) {
        at = cache->used++;
    } else {
        at = cache->next;
        cache->next = (cache->next + 1) % STRING_CACHE;
        Py_DECREF(cache->entries[at].object);
    }
    cache->entries[at].len = size;
    cache->entries[at].bytes = (const unsigned char *)utf8;
    cache->entries[at].object = str;
    Py_INCREF(str);
    return str;
}

/* A new reference to the value at the cursor if it is a string, number or boolean (what a
 * prediction, a label, a segment value or a category may be) or null when ``null_ok``; NULL
 * otherwise, with no exception set. */
static PyObject *scalar(Cursor *c, StringCache *cache, int null_ok) {
    skip_ws(c);
    if (c->p >= c->end) return NULL;
    const unsigned char *s = c->p;
    Py_ssize_t left = c->end - s;
    if (*s == '"') {
        const unsigned char *k;
        Py_ssize_t kn;
        int esc;
        if (!scan_string(c, &k, &kn, &esc) || esc) return NULL;
        PyObject *out = cache ? cached_string(cache, k, kn) : PyUnicode_DecodeUTF8((const char *)k, kn, NULL);
        if (out == NULL) PyErr_Clear();
        return out;
    }
    if (*s == 't' && left >= 4 && !memcmp(s, "true", 4)) {
        c->p += 4;
        Py_RETURN_TRUE;
    }
    if (*s == 'f' && left >= 5 && !memcmp(s, "false", 5)) {
        c->p += 5;
        Py_RETURN_FALSE;
    }
    if (*s == 'n' && left >= 4 && !memcmp(s, "null", 4)) {
        if (!null_ok) return NULL;
        c->p += 4;
        Py_RETURN_NONE;
    }
    if (*s == '-' || (*s >= '0' && *s <= '9')) {
        Number num;
        if (!scan_number(c, &num)) return NULL;
        PyObject *out = num.is_int ? PyLong_FromLongLong(num.integer) : PyFloat_FromDouble(num.real);
        if (out == NULL) PyErr_Clear();
        return out;
    }
    return NULL;
}

/* A new reference to a dict of the object at the cursor, each value a scalar (``scores``,
 * ``segment``); NULL, with no exception set, for anything else or a key twice. */
static PyObject *flat_object(Cursor *c) {
    if (!take(c, '{')) return NULL;
    PyObject *d = PyDict_New();
    if (d == NULL) {
        PyErr_Clear();
        return NULL;
    }
    if (take(c, '}')) return d;
    for (;;) {
        const unsigned char *k;
        Py_ssize_t kn;
        int esc;
        skip_ws(c);
        if (!scan_string(c, &k, &kn, &esc) || esc || !take(c, ':')) goto fail;
        PyObject *key = PyUnicode_DecodeUTF8((const char *)k, kn, NULL);
        if (key == NULL) goto fail;
        PyObject *value = scalar(c, NULL, 1);
        int fresh = value != NULL && PyDict_Contains(d, key) == 0;
        int ok = fresh && PyDict_SetItem(d, key, value) == 0;
        Py_DECREF(key);
        Py_XDECREF(value);
        if (!ok) goto fail;
        if (take(c, ',')) continue;
        if (take(c, '}')) return d;
        goto fail;
    }
fail:
    PyErr_Clear();
    Py_DECREF(d);
    return NULL;
}

/* --------------------------------------------------------------- features */

typedef struct {
    const unsigned char *name;
    Py_ssize_t name_len;
    PyObject *values; /* a list once the column holds anything but floats and nulls */
    StringCache strings;
} Column;

typedef struct {
    Py_ssize_t n;        /* rows in the poll */
    Py_ssize_t k;        /* columns: the first message's features */
    Py_ssize_t capacity; /* of columns: grown as names come, up to MAX_COLUMNS */
    Column *columns;
    double *block;       /* k rows of n: column-major by feature */
} Features;

/* The column's values as a list from now on: rows before ``row`` from the block. */
static int to_list(Features *f, Py_ssize_t i, Py_ssize_t row) {
    Column *col = &f->columns[i];
    col->values = PyList_New(f->n);
    if (col->values == NULL) return 0;
    for (Py_ssize_t r = 0; r < f->n; r++) { /* the list is complete at every step: None where not yet read */
        Py_INCREF(Py_None);
        PyList_SET_ITEM(col->values, r, Py_None);
    }
    double *x = f->block + i * f->n;
    for (Py_ssize_t r = 0; r < row; r++) {
        if (isnan(x[r])) continue;
        PyObject *v = PyFloat_FromDouble(x[r]);
        if (v == NULL) return 0;
        PyObject *old = PyList_GET_ITEM(col->values, r);
        PyList_SET_ITEM(col->values, r, v);
        Py_DECREF(old);
    }
    return 1;
}

static int put(Features *f, Py_ssize_t i, Py_ssize_t row, PyObject *v) { /* steals v */
    if (v == NULL) return 0;
    Column *col = &f->columns[i];
    if (col->values == NULL && !to_list(f, i, row)) {
        Py_DECREF(v);
        return 0;
    }
    PyObject *old = PyList_GET_ITEM(col->values, row);
    PyList_SET_ITEM(col->values, row, v);
    Py_DECREF(old);
    return 1;
}

/* One feature value into column ``i`` at ``row``: floats and nulls into the block while the
 * column is all floats and nulls; anything else makes it a list. */
static int feature_value(Cursor *c, Features *f, Py_ssize_t i, Py_ssize_t row) {
    skip_ws(c);
    if (c->p >= c->end) return 0;
    Column *col = &f->columns[i];
    unsigned char ch = *c->p;
    if (ch == '-' || (ch >= '0' && ch <= '9')) {
        Number num;
        if (!scan_number(c, &num)) return 0;
        if (!num.is_int && col->values == NULL) {
            f->block[i * f->n + row] = num.real;
            return 1;
        }
        return put(f, i, row, num.is_int ? PyLong_FromLongLong(num.integer) : PyFloat_FromDouble(num.real));
    }
    if (ch == 'n') {
        if (c->end - c->p < 4 || memcmp(c->p, "null", 4)) return 0;
        c->p += 4;
        if (col->values == NULL) f->block[i * f->n + row] = NAN;
        return 1; /* a list column holds None already */
    }
    return put(f, i, row, scalar(c, &col->strings, 0));
}

/* The features of one message into the columns: the names of the first message, in order. */
static int features(Cursor *c, Features *f, Py_ssize_t row) {
    if (!take(c, '{')) return 0;
    Py_ssize_t i = 0;
    if (take(c, '}')) return f->k == 0;
    for (;;) {
        const unsigned char *k;
        Py_ssize_t kn;
        int esc;
        skip_ws(c);
        if (!scan_string(c, &k, &kn, &esc) || esc || !take(c, ':')) return 0;
        if (i >= f->k || f->columns[i].name_len != kn || memcmp(f->columns[i].name, k, (size_t)kn)) return 0;
        if (!feature_value(c, f, i, row)) return 0;
        i++;
        if (take(c, ',')) continue;
        if (take(c, '}')) break;
        return 0;
    }
    return i == f->k;
}

static int grow(Features *f) {
    if (f->capacity >= MAX_COLUMNS) return 0;
    Py_ssize_t capacity = f->capacity * 2 < MAX_COLUMNS ? f->capacity * 2 : MAX_COLUMNS;
    Column *columns = PyMem_Realloc(f->columns, (size_t)capacity * sizeof(Column));
    if (columns == NULL) return 0; /* unsure: the orjson path meets the same shortage, and says so */
    memset(columns + f->capacity, 0, (size_t)(capacity - f->capacity) * sizeof(Column));
    f->columns = columns;
    f->capacity = capacity;
    return 1;
}

/* The feature names of the first message (which ``event`` then reads as any other): no name
 * twice (orjson would keep one), at most MAX_COLUMNS. */
static int feature_names(const unsigned char *s, Py_ssize_t n, Features *f) {
    Cursor cur = {s, s + n}, *c = &cur;
    if (!take(c, '{')) return 0;
    for (;;) {
        const unsigned char *k;
        Py_ssize_t kn;
        int esc;
        skip_ws(c);
        if (!scan_string(c, &k, &kn, &esc) || esc || !take(c, ':')) return 0;
        if (!field(k, kn, "features")) {
            if (!skip_value(c, 1)) return 0;
        } else {
            if (!take(c, '{')) return 0;
            if (take(c, '}')) return 1;
            for (;;) {
                skip_ws(c);
                if (!scan_string(c, &k, &kn, &esc) || esc || !take(c, ':')) return 0;
                if (f->k == f->capacity && !grow(f)) return 0;
                for (Py_ssize_t j = 0; j < f->k; j++)
                    if (f->columns[j].name_len == kn && !memcmp(f->columns[j].name, k, (size_t)kn)) return 0;
                f->columns[f->k].name = k;
                f->columns[f->k].name_len = kn;
                f->k++;
                if (!skip_value(c, 2)) return 0;
                if (take(c, ',')) continue;
                if (take(c, '}')) return 1;
                return 0;
            }
        }
        if (take(c, ',')) continue;
        return 0; /* the end, or worse, without features */
    }
}

/* -------------------------------------------------------------- the event */

enum { F_EVENT_ID = 1, F_MODEL_ID = 2, F_VERSION = 4, F_TIMESTAMP = 8, F_FEATURES = 16,
       F_PREDICTION = 32, F_SCORE = 64, F_SCORES = 128, F_SEGMENT = 256, F_LABEL = 512, F_VALUE = 1024 };
#define REQUIRED (F_EVENT_ID | F_MODEL_ID | F_TIMESTAMP | F_FEATURES | F_PREDICTION)
#define REQUIRED_FEEDBACK (F_EVENT_ID | F_MODEL_ID | F_TIMESTAMP | F_LABEL)

typedef struct {
    int feedback; /* a poll of the feedback topic: labels, and a prediction only if carried */
    PyObject *event_ids, *model_ids, *versions, *written, *outputs, *class_scores, *segments, *labels;
    double *scores, *values; /* values: the feedback's business values (feedback polls only) */
    int any_score, any_value;
    StringCache model_cache, version_cache, output_cache, label_cache;
    Features f;
} Poll;

static int set_row(PyObject *list, Py_ssize_t row, PyObject *v) { /* steals v; the slot holds None */
    if (v == NULL) return 0;
    PyObject *old = PyList_GET_ITEM(list, row);
    PyList_SET_ITEM(list, row, v);
    Py_DECREF(old);
    return 1;
}

/* A list of n Nones, made the first time an optional field is seen. */
static PyObject *nones(Py_ssize_t n) {
    PyObject *list = PyList_New(n);
    if (list == NULL) return NULL;
    for (Py_ssize_t r = 0; r < n; r++) {
        Py_INCREF(Py_None);
        PyList_SET_ITEM(list, r, Py_None);
    }
    return list;
}

static int event(Poll *poll, const unsigned char *s, Py_ssize_t n, Py_ssize_t row) {
    if (!valid_utf8(s, n)) return 0;
    Cursor cur = {s, s + n}, *c = &cur;
    int seen = 0;
    if (!take(c, '{')) return 0;
    if (take(c, '}')) return 0;
    for (;;) {
        const unsigned char *k;
        Py_ssize_t kn;
        int esc, flag = 0, ok;
        skip_ws(c);
        if (!scan_string(c, &k, &kn, &esc) || esc || !take(c, ':')) return 0;
        if (field(k, kn, "event_id")) {
            flag = F_EVENT_ID;
            skip_ws(c);
            const unsigned char *v;
            Py_ssize_t vn;
            int vesc;
            ok = c->p < c->end && *c->p == '"' && scan_string(c, &v, &vn, &vesc) && !vesc
                 && set_row(poll->event_ids, row, PyUnicode_DecodeUTF8((const char *)v, vn, NULL));
        } else if (field(k, kn, "model_id")) {
            flag = F_MODEL_ID;
            skip_ws(c);
            ok = c->p < c->end && *c->p == '"' && set_row(poll->model_ids, row, scalar(c, &poll->model_cache, 0));
        } else if (field(k, kn, "model_version")) {
            flag = F_VERSION;
            skip_ws(c);
            ok = c->p < c->end && (*c->p == '"' || *c->p == 'n')
                 && set_row(poll->versions, row, scalar(c, &poll->version_cache, 1));
        } else if (field(k, kn, "timestamp")) {
            flag = F_TIMESTAMP;
            skip_ws(c);
            ok = c->p < c->end && *c->p != 't' && *c->p != 'f' && *c->p != 'n'
                 && set_row(poll->written, row, scalar(c, NULL, 0));
        } else if (field(k, kn, "features") && !poll->feedback) {
            flag = F_FEATURES;
            ok = features(c, &poll->f, row);
        } else if (field(k, kn, "prediction")) {
            flag = F_PREDICTION;
            if (poll->outputs == NULL && (poll->outputs = nones(poll->f.n)) == NULL) return 0;
            ok = set_row(poll->outputs, row, scalar(c, &poll->output_cache, 0));
        } else if (field(k, kn, "label") && poll->feedback) {
            flag = F_LABEL;
            ok = set_row(poll->labels, row, scalar(c, &poll->label_cache, 0));
        } else if (field(k, kn, "score")) {
            flag = F_SCORE;
            skip_ws(c);
            Number num;
            ok = c->p < c->end && (*c->p == '-' || (*c->p >= '0' && *c->p <= '9')) && scan_number(c, &num);
            if (ok) poll->scores[row] = num.is_int ? (double)num.integer : num.real;
            poll->any_score = 1;
        } else if (field(k, kn, "value") && poll->feedback) {
            flag = F_VALUE; /* a number (its bound is checked in Python); anything else: the reference path */
            skip_ws(c);
            Number num;
            ok = c->p < c->end && (*c->p == '-' || (*c->p >= '0' && *c->p <= '9')) && scan_number(c, &num);
            if (ok) poll->values[row] = num.is_int ? (double)num.integer : num.real;
            poll->any_value = 1;
        } else if (field(k, kn, "attributions") && !poll->feedback) {
            ok = 0; /* attributions (issue 23, item 7) are read by the reference path */
        } else if ((field(k, kn, "scores") || field(k, kn, "segment")) && !poll->feedback) {
            int scores = kn == 6;
            flag = scores ? F_SCORES : F_SEGMENT;
            PyObject **list = scores ? &poll->class_scores : &poll->segments;
            if (*list == NULL && (*list = nones(poll->f.n)) == NULL) return 0;
            ok = set_row(*list, row, flat_object(c));
        } else {
            ok = skip_value(c, 1);
        }
        if (!ok || (seen & flag)) return 0;
        seen |= flag;
        if (take(c, ',')) continue;
        if (take(c, '}')) break;
        return 0;
    }
    skip_ws(c);
    int required = poll->feedback ? REQUIRED_FEEDBACK : REQUIRED;
    return c->p == c->end && (seen & required) == required;
}

static void poll_clear(Poll *poll) {
    Py_CLEAR(poll->event_ids);
    Py_CLEAR(poll->model_ids);
    Py_CLEAR(poll->versions);
    Py_CLEAR(poll->written);
    Py_CLEAR(poll->outputs);
    Py_CLEAR(poll->class_scores);
    Py_CLEAR(poll->segments);
    Py_CLEAR(poll->labels);
    cache_clear(&poll->label_cache);
    cache_clear(&poll->model_cache);
    cache_clear(&poll->version_cache);
    cache_clear(&poll->output_cache);
    if (poll->f.columns != NULL) {
        for (Py_ssize_t i = 0; i < poll->f.k; i++) {
            Py_CLEAR(poll->f.columns[i].values);
            cache_clear(&poll->f.columns[i].strings);
        }
    }
    PyMem_Free(poll->f.columns);
    PyMem_Free(poll->f.block);
    PyMem_Free(poll->scores);
    PyMem_Free(poll->values);
}

/* The columns of a poll of n values, each row None (NaN for scores) until read; 0 with an exception
 * set when memory runs out (poll_clear releases what was made either way). */
static int poll_start(Poll *poll, Py_ssize_t n, int feedback) {
    memset(poll, 0, sizeof *poll);
    poll->feedback = feedback;
    poll->f.n = n;
    if (!(poll->event_ids = nones(n)) || !(poll->model_ids = nones(n)) || !(poll->versions = nones(n))
        || !(poll->written = nones(n)))
        return 0;
    if (feedback ? !(poll->labels = nones(n)) : !(poll->outputs = nones(n))) return 0;
    poll->scores = PyMem_Malloc((size_t)n * sizeof(double));
    if (feedback && (poll->values = PyMem_Malloc((size_t)n * sizeof(double))) == NULL) {
        PyErr_NoMemory();
        return 0;
    }
    if (!feedback) {
        poll->f.capacity = 32;
        poll->f.columns = PyMem_Calloc((size_t)poll->f.capacity, sizeof(Column));
    }
    if (poll->scores == NULL || (!feedback && poll->f.columns == NULL)) {
        PyErr_NoMemory();
        return 0;
    }
    for (Py_ssize_t r = 0; r < n; r++) poll->scores[r] = NAN;
    if (feedback)
        for (Py_ssize_t r = 0; r < n; r++) poll->values[r] = NAN;
    return 1;
}

PyDoc_STRVAR(predictions_doc,
"predictions(values, /)\n--\n\n"
"A poll of prediction message values (a list of bytes) as columns, or None when any value is\n"
"not one this module is sure to read as orjson does (then decode.py decides).\n\n"
"Returns ``(event_ids, model_ids, versions, written, outputs, scores, class_scores, segments,\n"
"names, block, columns)``: lists of n values each (``versions`` None where absent; ``written``\n"
"the timestamps as written), ``scores`` the bytes of n doubles (NaN where absent) or None when\n"
"no value has one, ``class_scores`` and ``segments`` lists of dicts (None where absent) or None\n"
"when no value has one; the features' ``names`` (a tuple, in the first value's order), ``block``\n"
"the bytes of a len(names) x n array of doubles in which each column that held only floats and\n"
"nulls is its row (NaN for null), and ``columns``, per name, None for such a column, else the\n"
"list of its values (None for null).");

static PyObject *predictions(PyObject *module, PyObject *values) {
    if (!PyList_CheckExact(values)) {
        PyErr_SetString(PyExc_TypeError, "predictions() takes a list of bytes");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(values);
    if (n == 0) Py_RETURN_NONE;
    Poll poll;
    PyObject *result = NULL;
    if (!poll_start(&poll, n, 0)) goto error;
    for (Py_ssize_t row = 0; row < n; row++) {
        PyObject *value = PyList_GET_ITEM(values, row);
        if (!PyBytes_CheckExact(value)) goto unsure;
        const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(value);
        Py_ssize_t len = PyBytes_GET_SIZE(value);
        if (row == 0) { /* the first message names the columns, so the block can be laid out */
            if (!valid_utf8(s, len) || !feature_names(s, len, &poll.f)) goto unsure;
            Py_ssize_t cells = poll.f.k * n;
            poll.f.block = PyMem_Malloc((size_t)(cells ? cells : 1) * sizeof(double));
            if (poll.f.block == NULL) {
                PyErr_NoMemory();
                goto error;
            }
            for (Py_ssize_t i = 0; i < cells; i++) poll.f.block[i] = NAN;
        }
        if (!event(&poll, s, len, row)) goto unsure;
    }
    {
        PyObject *names = PyTuple_New(poll.f.k);
        PyObject *columns = PyList_New(poll.f.k);
        PyObject *block = PyBytes_FromStringAndSize((const char *)poll.f.block,
                                                    (Py_ssize_t)(poll.f.k * n * sizeof(double)));
        PyObject *scores = poll.any_score ? PyBytes_FromStringAndSize((const char *)poll.scores,
                                                                      (Py_ssize_t)(n * sizeof(double)))
                                          : (Py_INCREF(Py_None), Py_None);
        if (names == NULL || columns == NULL || block == NULL || scores == NULL) {
            Py_XDECREF(names);
            Py_XDECREF(columns);
            Py_XDECREF(block);
            Py_XDECREF(scores);
            goto error;
        }
        for (Py_ssize_t i = 0; i < poll.f.k; i++) {
            Column *col = &poll.f.columns[i];
            PyObject *name = PyUnicode_DecodeUTF8((const char *)col->name, col->name_len, NULL);
            if (name == NULL) {
                Py_DECREF(names);
                Py_DECREF(columns);
                Py_DECREF(block);
                Py_DECREF(scores);
                goto error;
            }
            PyTuple_SET_ITEM(names, i, name);
            PyObject *list = col->values ? col->values : Py_None;
            Py_INCREF(list);
            PyList_SET_ITEM(columns, i, list);
        }
        result = Py_BuildValue("(OOOOONOONNN)", poll.event_ids, poll.model_ids, poll.versions, poll.written,
                               poll.outputs, scores, poll.class_scores ? poll.class_scores : Py_None,
                               poll.segments ? poll.segments : Py_None, names, block, columns);
    }
    poll_clear(&poll);
    return result;
unsure:
    poll_clear(&poll);
    Py_RETURN_NONE;
error:
    poll_clear(&poll);
    return NULL;
}

PyDoc_STRVAR(feedback_doc,
"feedback(values, /)\n--\n\n"
"A poll of feedback message values (a list of bytes) as columns, or None as for predictions().\n\n"
"Returns ``(event_ids, model_ids, versions, written, labels, carried, scores, values)``: lists of n\n"
"values each, ``carried`` the predictions the events carry (None where absent) or None when no\n"
"value has one, ``scores`` and ``values`` (the business values) the bytes of n doubles (NaN where\n"
"absent) or None when none has one.");

static PyObject *feedback(PyObject *module, PyObject *values) {
    if (!PyList_CheckExact(values)) {
        PyErr_SetString(PyExc_TypeError, "feedback() takes a list of bytes");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(values);
    if (n == 0) Py_RETURN_NONE;
    Poll poll;
    PyObject *result = NULL;
    if (!poll_start(&poll, n, 1)) goto error;
    for (Py_ssize_t row = 0; row < n; row++) {
        PyObject *value = PyList_GET_ITEM(values, row);
        if (!PyBytes_CheckExact(value)) goto unsure;
        if (!event(&poll, (const unsigned char *)PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value), row))
            goto unsure;
    }
    {
        PyObject *scores = poll.any_score ? PyBytes_FromStringAndSize((const char *)poll.scores,
                                                                      (Py_ssize_t)(n * sizeof(double)))
                                          : (Py_INCREF(Py_None), Py_None);
        if (scores == NULL) goto error;
        PyObject *values_read = poll.any_value ? PyBytes_FromStringAndSize((const char *)poll.values,
                                                                           (Py_ssize_t)(n * sizeof(double)))
                                               : (Py_INCREF(Py_None), Py_None);
        if (values_read == NULL) {
            Py_DECREF(scores);
            goto error;
        }
        result = Py_BuildValue("(OOOOOONN)", poll.event_ids, poll.model_ids, poll.versions, poll.written,
                               poll.labels, poll.outputs ? poll.outputs : Py_None, scores, values_read);
    }
    poll_clear(&poll);
    return result;
unsure:
    poll_clear(&poll);
    Py_RETURN_NONE;
error:
    poll_clear(&poll);
    return NULL;
}

/* -- snapshots: the arrays of a loaded skeleton ----------------------------------------------- */

PyDoc_STRVAR(arrays_doc,
"arrays(tree, marker, make, /)\n--\n\n"
"Replace, in the dicts of ``tree`` (a loaded snapshot skeleton: dicts are walked, lists are not),\n"
"every value that is a dict with a non-null ``marker`` key by ``make(value[marker])``; return\n"
"how many were replaced. The order is snapshot._walk's; ``make`` checks the placeholder.");

static PyObject *arrays(PyObject *module, PyObject *args) {
    PyObject *tree, *marker, *make;
    if (!PyArg_ParseTuple(args, "O!UO:arrays", &PyDict_Type, &tree, &marker, &make)) return NULL;
    PyObject *stack = PyList_New(0); /* owns the dicts still to walk */
    if (stack == NULL || PyList_Append(stack, tree) < 0) goto error;
    Py_ssize_t found = 0;
    while (PyList_GET_SIZE(stack)) {
        Py_ssize_t last = PyList_GET_SIZE(stack) - 1;
        PyObject *node = PyList_GET_ITEM(stack, last);
        Py_INCREF(node);
        if (PyList_SetSlice(stack, last, last + 1, NULL) < 0) {
            Py_DECREF(node);
            goto error;
        }
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        /* replacing the value of a key it is at keeps the iteration valid (the keys stay the same) */
        while (PyDict_Next(node, &pos, &key, &value)) {
            if (!PyDict_CheckExact(value)) continue;
            PyObject *spec = PyDict_GetItemWithError(value, marker); /* borrowed */
            if (spec == NULL && PyErr_Occurred()) {
                Py_DECREF(node);
                goto error;
            }
            if (spec == NULL || spec == Py_None) {
                if (PyList_Append(stack, value) < 0) {
                    Py_DECREF(node);
                    goto error;
                }
                continue;
            }
            PyObject *array = PyObject_CallOneArg(make, spec);
            if (array == NULL || PyDict_SetItem(node, key, array) < 0) {
                Py_XDECREF(array);
                Py_DECREF(node);
                goto error;
            }
            Py_DECREF(array);
            found++;
        }
        Py_DECREF(node);
    }
    Py_DECREF(stack);
    return PyLong_FromSsize_t(found);
error:
    Py_XDECREF(stack);
    return NULL;
}

static PyObject *zero_int, *one_int; /* 0 and 1, made once (PyInit__speedups) */

/* -- warm-up columns: the distinct numbers' table ------------------------------------------- */

PyDoc_STRVAR(count_numbers_doc,
"count_numbers(distinct, scored, sums, numbers, scores, limit, /)\n--\n\n"
"warmup.WarmupColumn._add_distinct's row loop: each of ``numbers`` (a list) counted by its key\n"
"(``warmup._key``: a float equal to an integer by its text ``str``, any other number itself) in\n"
"``distinct``, and, where ``scores`` (a list of ints, one per number, or None) holds a score of at\n"
"least 0, in ``scored`` (one) and ``sums`` (the score); stops and returns False at the first number\n"
"after which ``distinct`` holds more than ``limit`` keys (its row's scores not counted), else returns\n"
"True. The same dicts, in the same order, as the loop (tests/unit/test_warmup.py).");

/* dict[key] = dict.get(key, 0) + amount */
static int add_to(PyObject *dict, PyObject *key, PyObject *amount) {
    PyObject *old = PyDict_GetItemWithError(dict, key); /* borrowed */
    PyObject *sum;
    if (old == NULL) {
        if (PyErr_Occurred()) return -1;
        sum = PyNumber_Add(zero_int, amount); /* 0 + amount, as the loop computes it */
    } else {
        sum = PyNumber_Add(old, amount);
    }
    if (sum == NULL) return -1;
    int failed = PyDict_SetItem(dict, key, sum);
    Py_DECREF(sum);
    return failed;
}

/* warmup._key: a float equal to an integer (3.0, 0.0, -0.0) by its text, any other number itself (new reference) */
static PyObject *number_key(PyObject *number) {
    if (PyFloat_Check(number)) {
        double d = PyFloat_AS_DOUBLE(number);
        if (isfinite(d) && floor(d) == d) return PyObject_Str(number);
    }
    Py_INCREF(number);
    return number;
}

static PyObject *count_numbers(PyObject *module, PyObject *args) {
    PyObject *distinct, *scored, *sums, *numbers, *scores;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "O!O!O!O!On:count_numbers", &PyDict_Type, &distinct, &PyDict_Type, &scored,
                          &PyDict_Type, &sums, &PyList_Type, &numbers, &scores, &limit))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(numbers);
    if (scores != Py_None && (!PyList_Check(scores) || PyList_GET_SIZE(scores) != n)) {
        PyErr_SetString(PyExc_ValueError, "count_numbers: scores must be None or a list as long as numbers");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = number_key(PyList_GET_ITEM(numbers, i));
        if (key == NULL) return NULL;
        if (add_to(distinct, key, one_int) < 0) goto error;
        if (PyDict_GET_SIZE(distinct) > limit) {
            Py_DECREF(key);
            Py_RETURN_FALSE;
        }
        if (scores != Py_None) {
            PyObject *score = PyList_GET_ITEM(scores, i);
            int counted = PyObject_RichCompareBool(score, zero_int, Py_GE);
            if (counted < 0) goto error;
            if (counted && (add_to(scored, key, one_int) < 0 || add_to(sums, key, score) < 0)) goto error;
        }
        Py_DECREF(key);
        continue;
    error:
        Py_DECREF(key);
        return NULL;
    }
    Py_RETURN_TRUE;
}

PyDoc_STRVAR(add_floats_doc,
"add_floats(values, scores, distinct, scored, sums, pending, pending_scores, limit, /)\n--\n\n"
"warmup.WarmupColumn.add's plain path for an array of floats (``values``, any object with a buffer of\n"
"doubles, one dimension, strides allowed): each value not NaN appended to ``pending`` as a Python float (as\n"
"``values.tolist()`` makes it) and, where ``scores`` (a list of ints, one per value, or None) is given, its\n"
"row's score appended to ``pending_scores``; and, unless ``distinct`` is None, counted as ``count_numbers``\n"
"counts it, until ``distinct`` holds more than ``limit`` keys (the numbers after that one are not counted;\n"
"none where the values alone hold more than ``limit`` distinct numbers).\n"
"Returns ``(added, kept)``: the numbers appended, and False where ``distinct`` went over ``limit`` (the\n"
"caller drops the tables), else True. The same lists and dicts as the plain path\n"
"(tests/unit/test_warmup_c_paths.py).");

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Whether the n doubles from ``at`` (``stride`` apart) hold more than ``limit`` distinct numbers, NaN left out
 * (-0.0 and 0.0 one number: their keys are two, so the keys are at least as many); -1 on error. The plain
 * path's ``len(set(numbers)) > limit``: a table that many numbers would overflow is dropped without counting
 * them, one dict update after another, to the first number over the limit. */
static int too_many_numbers(const char *at, Py_ssize_t n, Py_ssize_t stride, Py_ssize_t limit) {
    if (n <= limit) return 0;
    double *sorted = PyMem_Malloc((size_t)n * sizeof(double));
    if (sorted == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t m = 0;
    for (Py_ssize_t i = 0; i < n; i++, at += stride) {
        double d;
        memcpy(&d, at, sizeof d);
        if (d == d) sorted[m++] = d;
    }
    Py_ssize_t distinct = 0;
    if (m > limit) {
        qsort(sorted, (size_t)m, sizeof(double), compare_doubles);
        for (Py_ssize_t i = 0; i < m && distinct <= limit; i++) distinct += i == 0 || sorted[i] != sorted[i - 1];
    }
    PyMem_Free(sorted);
    return distinct > limit;
}

static PyObject *add_floats(PyObject *module, PyObject *args) {
    PyObject *values, *scores, *distinct, *scored, *sums, *pending, *pending_scores;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "OOOO!O!O!O!n:add_floats", &values, &scores, &distinct, &PyDict_Type, &scored,
                          &PyDict_Type, &sums, &PyList_Type, &pending, &PyList_Type, &pending_scores, &limit))
        return NULL;
    if (distinct != Py_None && !PyDict_Check(distinct)) {
        PyErr_SetString(PyExc_TypeError, "add_floats: distinct must be a dict or None");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(values, &view, PyBUF_STRIDES | PyBUF_FORMAT) < 0) return NULL;
    if (view.ndim != 1 || view.itemsize != sizeof(double) || view.format == NULL || strcmp(view.format, "d") != 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_TypeError, "add_floats: values must be a one-dimensional buffer of doubles");
        return NULL;
    }
    Py_ssize_t n = view.shape[0], stride = view.strides[0];
    if (scores != Py_None && (!PyList_Check(scores) || PyList_GET_SIZE(scores) != n)) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "add_floats: scores must be None or a list as long as values");
        return NULL;
    }
    const char *at = (const char *)view.buf;
    Py_ssize_t added = 0;
    int kept = 1;
    if (distinct != Py_None) {
        int too_many = too_many_numbers(at, n, stride, limit);
        if (too_many < 0) goto error;
        kept = !too_many; /* dropped: none counted (the caller drops the tables) */
    }
    for (Py_ssize_t i = 0; i < n; i++, at += stride) {
        double d;
        memcpy(&d, at, sizeof d);
        if (d != d) continue; /* NaN: missing */
        PyObject *number = PyFloat_FromDouble(d);
        if (number == NULL) goto error;
        PyObject *score = scores == Py_None ? NULL : PyList_GET_ITEM(scores, i); /* borrowed */
        if (PyList_Append(pending, number) < 0 || (score != NULL && PyList_Append(pending_scores, score) < 0)) {
            Py_DECREF(number);
            goto error;
        }
        added++;
        if (distinct != Py_None && kept) {
            PyObject *key = number_key(number);
            Py_DECREF(number);
            if (key == NULL) goto error;
            if (add_to(distinct, key, one_int) < 0) {
                Py_DECREF(key);
                goto error;
            }
            if (PyDict_GET_SIZE(distinct) > limit) {
                kept = 0;
            } else if (score != NULL) {
                int counted = PyObject_RichCompareBool(score, zero_int, Py_GE);
                if (counted < 0 || (counted && (add_to(scored, key, one_int) < 0 || add_to(sums, key, score) < 0))) {
                    Py_DECREF(key);
                    goto error;
                }
            }
            Py_DECREF(key);
        } else {
            Py_DECREF(number);
        }
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(nO)", added, kept ? Py_True : Py_False);
error:
    PyBuffer_Release(&view);
    return NULL;
}

PyDoc_STRVAR(add_categories_doc,
"add_categories(values, scores, kept, scored, sums, max_kept, /)\n--\n\n"
"warmup.WarmupColumn._add_categories' row loop for a list of strings and None (missing): each string\n"
"counted in ``kept`` if it is there or there is room (fewer than ``max_kept`` keys), else as other; with\n"
"``scores`` (a list of ints, one per value, or None), a score of at least 0 counted with it, in ``scored``\n"
"(one) and ``sums`` (the score) for a category kept, in the other's for the others. Returns ``(other,\n"
"other_scored, other_sum)``, what the rows added to the other's counts; or None, having changed nothing,\n"
"where a value is neither a str nor None (the plain path decides). The same dicts as the plain path\n"
"(tests/unit/test_warmup_c_paths.py).");

static PyObject *add_categories(PyObject *module, PyObject *args) {
    PyObject *values, *scores, *kept, *scored, *sums;
    Py_ssize_t max_kept;
    if (!PyArg_ParseTuple(args, "O!OO!O!O!n:add_categories", &PyList_Type, &values, &scores, &PyDict_Type, &kept,
                          &PyDict_Type, &scored, &PyDict_Type, &sums, &max_kept))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(values);
    if (scores != Py_None && (!PyList_Check(scores) || PyList_GET_SIZE(scores) != n)) {
        PyErr_SetString(PyExc_ValueError, "add_categories: scores must be None or a list as long as values");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyList_GET_ITEM(values, i);
        if (v != Py_None && !PyUnicode_CheckExact(v)) Py_RETURN_NONE;
    }
    Py_ssize_t other = 0, other_scored = 0;
    PyObject *other_sum = zero_int;
    Py_INCREF(other_sum);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyList_GET_ITEM(values, i); /* borrowed; the list is not changed below */
        if (v == Py_None) continue;
        PyObject *score = scores == Py_None ? NULL : PyList_GET_ITEM(scores, i);
        int in_kept = PyDict_Contains(kept, v);
        if (in_kept < 0) goto error;
        in_kept = in_kept || PyDict_GET_SIZE(kept) < max_kept; /* there, or room for it at its first row */
        if (in_kept) {
            if (add_to(kept, v, one_int) < 0) goto error;
        } else {
            other++;
        }
        if (score == NULL) continue;
        int counted = PyObject_RichCompareBool(score, zero_int, Py_GE);
        if (counted < 0) goto error;
        if (!counted) continue;
        if (in_kept) {
            if (add_to(scored, v, one_int) < 0 || add_to(sums, v, score) < 0) goto error;
        } else {
            PyObject *sum = PyNumber_Add(other_sum, score);
            if (sum == NULL) goto error;
            Py_DECREF(other_sum);
            other_sum = sum;
            other_scored++;
        }
    }
    return Py_BuildValue("(nnN)", other, other_scored, other_sum);
error:
    Py_DECREF(other_sum);
    return NULL;
}

/* -- warm-up columns: what a state writes of a distinct-number table ------------------------- */

PyDoc_STRVAR(table_parts_doc,
"table_parts(table, scored, sums, /)\n--\n\n"
"warmup_tables.table_parts in C: what a warm-up state writes of a distinct-number table (a dict of\n"
"``warmup._key`` -> count, not empty; ``scored`` and ``sums`` a scored column's dicts by the same keys, or\n"
"None) as the tuple of ``TableParts``' fields: ``(decimals, texts, counted, scored, sums, first, steps,\n"
"counts_by_number)``. The same values as the plain path (tests/unit/test_warmup_tables.py).");

#define TABLE_LARGEST (1LL << 50) /* warmup_tables.LARGEST */
#define TABLE_MOST_DECIMALS 22    /* warmup_tables.MOST_DECIMALS */

typedef struct {
    PyObject *key;   /* owned */
    PyObject *count; /* owned */
    PyObject *text;  /* owned: str(key) */
    long long number;
} TableEntry;

static int compare_texts(const void *a, const void *b) {
    /* texts are str and distinct: PyUnicode_Compare neither fails nor ties */
    return PyUnicode_Compare(((const TableEntry *)a)->text, ((const TableEntry *)b)->text);
}

static int compare_numbers(const void *a, const void *b) {
    long long x = ((const TableEntry *)a)->number, y = ((const TableEntry *)b)->number;
    return (x > y) - (x < y);
}

/* warmup_tables.decimal_table of the entries' texts: their integers set in ``number``; returns the decimals
 * (-1: ints), -2 where the texts make no integers, -3 on error. The integer of a text is its digits (its dot
 * left out) times ten for each decimal it has fewer than the most; each step only makes it larger, so one
 * past LARGEST already is past it at the end. */
static int table_integers(TableEntry *entries, Py_ssize_t n) {
    Py_ssize_t dots = 0, most = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t size;
        const char *text = PyUnicode_AsUTF8AndSize(entries[i].text, &size);
        if (text == NULL) return -3;
        if (size == 4 && memcmp(text, "-0.0", 4) == 0) return -2; /* its integer would have no sign */
        Py_ssize_t dot = -1;
        for (Py_ssize_t j = 0; j < size; j++) {
            if (text[j] == 'e' || text[j] == 'n') return -2; /* an exponent, inf or nan */
            if (text[j] == '.') {
                if (dot >= 0) return -2;
                dot = j;
            }
        }
        if (dot >= 0) {
            dots++;
            if (size - dot - 1 > most) most = size - dot - 1;
        }
    }
    if (dots != 0 && dots != n) return -2; /* ints and floats */
    if (most > TABLE_MOST_DECIMALS) return -2;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t size;
        const char *text = PyUnicode_AsUTF8AndSize(entries[i].text, &size);
        if (text == NULL) return -3;
        Py_ssize_t j = 0, places = 0;
        int negative = size > 0 && text[0] == '-', after_dot = 0;
        long long m = 0;
        if (negative) j++;
        if (j == size) return -2;
        for (; j < size; j++) {
            char c = text[j];
            if (c == '.') {
                after_dot = 1;
                continue;
            }
            if (c < '0' || c > '9') return -2;
            m = m * 10 + (c - '0');
            places += after_dot;
            if (m >= TABLE_LARGEST) return -2;
        }
        for (; places < most; places++) {
            m *= 10;
            if (m >= TABLE_LARGEST) return -2;
        }
        entries[i].number = negative ? -m : m;
    }
    return dots == 0 ? -1 : (int)most;
}

static PyObject *table_parts(PyObject *module, PyObject *args) {
    PyObject *table, *scored, *sums;
    if (!PyArg_ParseTuple(args, "O!OO:table_parts", &PyDict_Type, &table, &scored, &sums)) return NULL;
    if ((scored != Py_None && !PyDict_Check(scored)) || (sums != Py_None && !PyDict_Check(sums))) {
        PyErr_SetString(PyExc_TypeError, "table_parts: scored and sums must be dicts or None");
        return NULL;
    }
    Py_ssize_t n = PyDict_GET_SIZE(table);
    if (n == 0) {
        PyErr_SetString(PyExc_ValueError, "table_parts: an empty table");
        return NULL;
    }
    TableEntry *entries = PyMem_Calloc((size_t)n, sizeof(TableEntry));
    if (entries == NULL) return PyErr_NoMemory();
    PyObject *result = NULL, *texts = NULL, *counted = NULL, *scored_rows = NULL, *score_sums = NULL;
    PyObject *first = NULL, *steps = NULL, *by_number = NULL, *decimals = NULL;
    Py_ssize_t at = 0, filled = 0;
    PyObject *key, *count;
    while (PyDict_Next(table, &at, &key, &count) && filled < n) {
        Py_INCREF(key);
        Py_INCREF(count);
        entries[filled].key = key;
        entries[filled].count = count;
        filled++;
    }
    for (Py_ssize_t i = 0; i < filled; i++) {
        entries[i].text = PyObject_Str(entries[i].key); /* a str key is its own text */
        if (entries[i].text == NULL) goto done;
    }
    if (filled != n) {
        PyErr_SetString(PyExc_RuntimeError, "table_parts: the table changed size");
        goto done;
    }
    qsort(entries, (size_t)n, sizeof(TableEntry), compare_texts);
    counted = PyList_New(n);
    if (counted == NULL) goto done;
    if (scored != Py_None && (scored_rows = PyList_New(n)) == NULL) goto done;
    if (sums != Py_None && (score_sums = PyList_New(n)) == NULL) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_INCREF(entries[i].count);
        PyList_SET_ITEM(counted, i, entries[i].count);
        PyObject *pairs[2][2] = {{scored, scored_rows}, {sums, score_sums}};
        for (int k = 0; k < 2; k++) {
            if (pairs[k][1] == NULL) continue;
            PyObject *value = PyDict_GetItemWithError(pairs[k][0], entries[i].key); /* borrowed */
            if (value == NULL) {
                if (PyErr_Occurred()) goto done;
                value = zero_int; /* .get(key, 0) */
            }
            Py_INCREF(value);
            PyList_SET_ITEM(pairs[k][1], i, value);
        }
    }
    int scale = table_integers(entries, n);
    if (scale == -3) goto done;
    if (scale == -2) { /* written by text */
        texts = PyList_New(n);
        if (texts == NULL) goto done;
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_INCREF(entries[i].text);
            PyList_SET_ITEM(texts, i, entries[i].text);
        }
        decimals = Py_NewRef(Py_None);
        first = PyLong_FromLong(0);
        steps = PyList_New(0);
        by_number = PyList_New(0);
    } else {
        qsort(entries, (size_t)n, sizeof(TableEntry), compare_numbers); /* distinct: each gives its text back */
        texts = PyList_New(0);
        decimals = PyLong_FromLong(scale);
        first = PyLong_FromLongLong(entries[0].number);
        steps = PyList_New(n - 1);
        by_number = PyList_New(n);
        if (steps == NULL || by_number == NULL) goto done;
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_INCREF(entries[i].count);
            PyList_SET_ITEM(by_number, i, entries[i].count);
            if (i == 0) continue;
            PyObject *step = PyLong_FromLongLong(entries[i].number - entries[i - 1].number);
            if (step == NULL) goto done;
            PyList_SET_ITEM(steps, i - 1, step);
        }
    }
    if (texts == NULL || decimals == NULL || first == NULL || steps == NULL || by_number == NULL) goto done;
    result = PyTuple_Pack(8, decimals, texts, counted, scored_rows ? scored_rows : Py_None,
                          score_sums ? score_sums : Py_None, first, steps, by_number);
done:
    for (Py_ssize_t i = 0; i < filled; i++) {
        Py_DECREF(entries[i].key);
        Py_DECREF(entries[i].count);
        Py_XDECREF(entries[i].text);
    }
    PyMem_Free(entries);
    Py_XDECREF(texts);
    Py_XDECREF(counted);
    Py_XDECREF(scored_rows);
    Py_XDECREF(score_sums);
    Py_XDECREF(first);
    Py_XDECREF(steps);
    Py_XDECREF(by_number);
    Py_XDECREF(decimals);
    return result;
}

/* -- warm-up columns: pending numbers counted into their histograms ---------------------------- */

PyDoc_STRVAR(merge_buckets_doc,
"merge_buckets(new_keys, new_sizes, new_scores, old_keys, old_counts, old_scores, old_sizes, out_keys,\n"
"              out_counts, out_scores, /)\n--\n\n"
"warmup.compact's counting in C, for the columns it compacts, in order: column i's new numbers' bucket keys\n"
"are the next ``new_sizes[i]`` of ``new_keys``, its histogram the next ``old_sizes[i]`` of ``old_keys``\n"
"(sorted) and ``old_counts``, with their rows of ``old_scores`` (scored rows and score sum; zeros for an\n"
"unscored column); ``new_scores[i]`` a scored column's list of ints, one per new number (-1 where the row had\n"
"no score), None for an unscored column. Arrays are int64, ``old_scores`` and ``out_scores`` of two columns.\n"
"Each column's merged histogram is written to ``out_keys`` and ``out_counts`` (writable, room for every old\n"
"key and new number), and a scored column's score rows to ``out_scores``, from where the column before it\n"
"ends. Returns the bounds of each column's rows (``len(new_sizes) + 1`` ints). The same histograms as the\n"
"numpy path (tests/unit/test_warmup_c_paths.py).");

typedef struct {
    long long key, count, scored, sum;
} BucketRow;

static int compare_bucket_rows(const void *a, const void *b) {
    long long x = ((const BucketRow *)a)->key, y = ((const BucketRow *)b)->key;
    return (x > y) - (x < y);
}

/* rows sorted by key: by insertion where they are few (a column's new numbers and old buckets, a few dozen at
 * a checkpoint), where qsort's call per comparison was most of the time; by qsort past that */
static void sort_bucket_rows(BucketRow *rows, Py_ssize_t n) {
    if (n > 64) {
        qsort(rows, (size_t)n, sizeof(BucketRow), compare_bucket_rows);
        return;
    }
    for (Py_ssize_t i = 1; i < n; i++) {
        BucketRow row = rows[i];
        Py_ssize_t j = i;
        for (; j > 0 && rows[j - 1].key > row.key; j--) rows[j] = rows[j - 1];
        rows[j] = row;
    }
}

/* a buffer of int64 (numpy's "l" or "q"), one dimension or two (rows of ``width``), strides allowed */
static int int64_view(PyObject *object, Py_buffer *view, int width, int writable, const char *what) {
    if (PyObject_GetBuffer(object, view, (writable ? PyBUF_WRITABLE : 0) | PyBUF_STRIDES | PyBUF_FORMAT) < 0) return -1;
    const char *f = view->format;
    if (f != NULL && (f[0] == '<' || f[0] == '=' || f[0] == '@')) f++; /* the byte order: the machine's */
    int ok = view->itemsize == 8 && f != NULL && (f[0] == 'l' || f[0] == 'q') && f[1] == '\0';
    ok = ok && ((width == 1 && view->ndim == 1) || (width > 1 && view->ndim == 2 && view->shape[1] == width));
    if (!ok) {
        PyBuffer_Release(view);
        PyErr_Format(PyExc_TypeError, "merge_buckets: %s must be int64 of %d column(s)", what, width);
        return -1;
    }
    return 0;
}

static inline long long *int64_at(Py_buffer *view, Py_ssize_t row, Py_ssize_t column) {
    char *at = (char *)view->buf + row * view->strides[0];
    if (view->ndim == 2) at += column * view->strides[1];
    return (long long *)at;
}

enum { NEW_KEYS, OLD_KEYS, OLD_COUNTS, OLD_SCORES, OUT_KEYS, OUT_COUNTS, OUT_SCORES, VIEWS };

static PyObject *merge_buckets(PyObject *module, PyObject *args) {
    PyObject *objects[VIEWS], *new_sizes, *new_scores, *old_sizes;
    if (!PyArg_ParseTuple(args, "OO!O!OOOO!OOO:merge_buckets", &objects[NEW_KEYS], &PyList_Type, &new_sizes,
                          &PyList_Type, &new_scores, &objects[OLD_KEYS], &objects[OLD_COUNTS], &objects[OLD_SCORES],
                          &PyList_Type, &old_sizes, &objects[OUT_KEYS], &objects[OUT_COUNTS], &objects[OUT_SCORES]))
        return NULL;
    static const char *names[VIEWS] = {"new_keys", "old_keys", "old_counts", "old_scores",
                                       "out_keys", "out_counts", "out_scores"};
    Py_buffer views[VIEWS];
    int held = 0;
    for (; held < VIEWS; held++) {
        int width = held == OLD_SCORES || held == OUT_SCORES ? 2 : 1;
        if (int64_view(objects[held], &views[held], width, held >= OUT_KEYS, names[held]) < 0) break;
    }
    Py_ssize_t columns = PyList_GET_SIZE(new_sizes);
    PyObject *bounds = NULL, *result = NULL;
    BucketRow *rows = NULL;
    Py_ssize_t capacity = 0, at_new = 0, at_old = 0, written = 0;
    if (held < VIEWS) goto release;
    Py_buffer *new_keys = &views[NEW_KEYS], *old_keys = &views[OLD_KEYS], *old_counts = &views[OLD_COUNTS],
              *old_scores = &views[OLD_SCORES], *out_keys = &views[OUT_KEYS], *out_counts = &views[OUT_COUNTS],
              *out_scores = &views[OUT_SCORES];
    Py_ssize_t room = out_keys->shape[0];
    if (PyList_GET_SIZE(new_scores) != columns || PyList_GET_SIZE(old_sizes) != columns ||
        old_counts->shape[0] != old_keys->shape[0] || old_scores->shape[0] != old_keys->shape[0] ||
        out_counts->shape[0] < room || out_scores->shape[0] < room) {
        PyErr_SetString(PyExc_ValueError, "merge_buckets: arrays or lists of different lengths");
        goto release;
    }
    if ((bounds = PyList_New(columns + 1)) == NULL) goto release;
    PyObject *zero = PyLong_FromSsize_t(0);
    if (zero == NULL) goto release;
    PyList_SET_ITEM(bounds, 0, zero);
    for (Py_ssize_t i = 0; i < columns; i++) {
        Py_ssize_t added = PyLong_AsSsize_t(PyList_GET_ITEM(new_sizes, i));
        Py_ssize_t old = PyLong_AsSsize_t(PyList_GET_ITEM(old_sizes, i));
        if (PyErr_Occurred()) goto release;
        PyObject *pending = PyList_GET_ITEM(new_scores, i);
        int scored = pending != Py_None;
        if (added < 0 || old < 0 || added > new_keys->shape[0] - at_new || old > old_keys->shape[0] - at_old ||
            (scored && (!PyList_Check(pending) || PyList_GET_SIZE(pending) != added))) {
            PyErr_SetString(PyExc_ValueError, "merge_buckets: sizes past the arrays, or scores not one per number");
            goto release;
        }
        Py_ssize_t n = old + added;
        if (n > room - written) {
            PyErr_SetString(PyExc_ValueError, "merge_buckets: no room out");
            goto release;
        }
        if (n > capacity) {
            BucketRow *grown = PyMem_Realloc(rows, (size_t)n * sizeof(BucketRow));
            if (grown == NULL) {
                PyErr_NoMemory();
                goto release;
            }
            rows = grown;
            capacity = n;
        }
        for (Py_ssize_t j = 0; j < old; j++) {
            rows[j].key = *int64_at(old_keys, at_old + j, 0);
            rows[j].count = *int64_at(old_counts, at_old + j, 0);
            rows[j].scored = *int64_at(old_scores, at_old + j, 0);
            rows[j].sum = *int64_at(old_scores, at_old + j, 1);
        }
        for (Py_ssize_t j = 0; j < added; j++) {
            BucketRow *row = &rows[old + j];
            row->key = *int64_at(new_keys, at_new + j, 0);
            row->count = 1;
            row->scored = row->sum = 0;
            if (scored) {
                long long score = PyLong_AsLongLong(PyList_GET_ITEM(pending, j));
                if (score == -1 && PyErr_Occurred()) goto release;
                if (score >= 0) { /* -1: the row had no score */
                    row->scored = 1;
                    row->sum = score;
                }
            }
        }
        sort_bucket_rows(rows, n);
        Py_ssize_t out = written - 1;
        for (Py_ssize_t j = 0; j < n; j++) {
            if (j == 0 || rows[j].key != rows[j - 1].key) {
                out++;
                *int64_at(out_keys, out, 0) = rows[j].key;
                *int64_at(out_counts, out, 0) = 0;
                *int64_at(out_scores, out, 0) = *int64_at(out_scores, out, 1) = 0;
            }
            *int64_at(out_counts, out, 0) += rows[j].count;
            *int64_at(out_scores, out, 0) += rows[j].scored;
            *int64_at(out_scores, out, 1) += rows[j].sum;
        }
        written = out + 1;
        at_new += added;
        at_old += old;
        PyObject *bound = PyLong_FromSsize_t(written);
        if (bound == NULL) goto release;
        PyList_SET_ITEM(bounds, i + 1, bound);
    }
    if (at_new != new_keys->shape[0] || at_old != old_keys->shape[0]) {
        PyErr_SetString(PyExc_ValueError, "merge_buckets: arrays past the sizes");
        goto release;
    }
    result = bounds;
    bounds = NULL;
release:
    Py_XDECREF(bounds);
    PyMem_Free(rows);
    for (int k = 0; k < held; k++) PyBuffer_Release(&views[k]);
    return result;
}

static PyMethodDef methods[] = {
    {"predictions", (PyCFunction)predictions, METH_O, predictions_doc},
    {"feedback", (PyCFunction)feedback, METH_O, feedback_doc},
    {"arrays", (PyCFunction)arrays, METH_VARARGS, arrays_doc},
    {"count_numbers", (PyCFunction)count_numbers, METH_VARARGS, count_numbers_doc},
    {"add_floats", (PyCFunction)add_floats, METH_VARARGS, add_floats_doc},
    {"add_categories", (PyCFunction)add_categories, METH_VARARGS, add_categories_doc},
    {"table_parts", (PyCFunction)table_parts, METH_VARARGS, table_parts_doc},
    {"merge_buckets", (PyCFunction)merge_buckets, METH_VARARGS, merge_buckets_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "streamdrift.core._speedups",
    "A poll of prediction messages parsed into columns in C (see decode.py, which works without it); "
    "the arrays of a snapshot's skeleton put in place (see snapshot.py, likewise); a warm-up column's distinct "
    "numbers counted (see warmup.py, likewise).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void) {
    init_tables();
    zero_int = PyLong_FromLong(0);
    one_int = PyLong_FromLong(1);
    if (zero_int == NULL || one_int == NULL) return NULL;
    return PyModule_Create(&module);
}
