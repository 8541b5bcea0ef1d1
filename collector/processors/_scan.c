/* OTLP requests read from their bytes on the receiving thread, with no protobuf objects built: trace requests
 * checked, their spans counted, and the spans that cannot be GenAI set aside; metrics and logs requests checked
 * and their metrics or log records counted (all the collector needs of them: a count, and their bytes forwarded).
 *
 * Parsing a request with protobuf builds an object for every attribute, key and value of every span; on mixed
 * traffic (most spans ordinary, then dropped) that parse halved what a minimal OTLP server answers. This walks
 * every field of every message once, as protobuf's parser would, and checks what it checks (lengths, wire types,
 * UTF-8 in string fields), but builds nothing.
 *
 * A span may be GenAI when its scope's name starts with a convention's prefix or one of its own attributes' keys
 * is a marker: what `GenAIProcessor` reads. When some spans are set aside, the request holding the others is
 * written here, its other fields copied as they are.
 *
 * Whatever it does not read exactly as protobuf would (a field number or wire type OTLP does not give these
 * messages, a scope's name or an attribute's key given twice, values nested deeper than MAX_DEPTH, malformed
 * bytes) returns None: the caller parses the request with protobuf, which accepts it or says what is wrong. So a
 * request this accepts is one protobuf's parser accepts.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define WIRE_READER static inline __attribute__((always_inline))
#include "../engine/_wire.h"

#define MAX_DEPTH 72 /* messages nested (AnyValues in ArrayValues, KeyValueLists): protobuf's parser stops at 100 */

enum { OK = 0, OUTSIDE = 1, NO_MEMORY = -1 };

/* Strict UTF-8 (no overlong forms, surrogates or code points past U+10FFFF), as protobuf checks string fields. */
static int valid_utf8(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t chunk;
            memcpy(&chunk, s + i, 8);
            if (!(chunk & 0x8080808080808080ULL)) {
                i += 8;
                continue;
            }
        }
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint8_t lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            if (c == 0xe0) lo = 0xa0;
            if (c == 0xed) hi = 0x9f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            if (c == 0xf0) lo = 0x90;
            if (c == 0xf4) hi = 0x8f;
        } else {
            return 0;
        }
        if (n - i <= need) return 0;
        if (s[i + 1] < lo || s[i + 1] > hi) return 0;
        for (size_t k = 2; k <= need; k++)
            if ((s[i + k] & 0xc0) != 0x80) return 0;
        i += need + 1;
    }
    return 1;
}

/* The marker keys and the scope name prefixes, as bytes; `lengths`: bit n set when a key is n bytes long (n < 64),
 * so most attribute keys are told apart from every marker by their length alone. */
typedef struct {
    const uint8_t **text;
    size_t *size;
    Py_ssize_t count;
    uint64_t lengths;
} Keys;

static int equals_one(const Keys *keys, const uint8_t *s, size_t n) {
    if (n < 64 && !(keys->lengths >> n & 1)) return 0;
    for (Py_ssize_t i = 0; i < keys->count; i++)
        if (keys->size[i] == n && memcmp(keys->text[i], s, n) == 0) return 1;
    return 0;
}

static int starts_with_one(const Keys *keys, const uint8_t *s, size_t n) {
    for (Py_ssize_t i = 0; i < keys->count; i++)
        if (keys->size[i] <= n && memcmp(keys->text[i], s, keys->size[i]) == 0) return 1;
    return 0;
}

/* A growing list of bytes: one per span (may it be GenAI), one per scope (is it named by a convention). */
typedef struct {
    uint8_t *data;
    size_t len, cap;
} Flags;

static int flag(Flags *f, uint8_t value) {
    if (f->len == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 1024;
        uint8_t *data = realloc(f->data, cap);
        if (!data) return NO_MEMORY;
        f->data = data;
        f->cap = cap;
    }
    f->data[f->len++] = value;
    return OK;
}

typedef struct {
    Keys markers, scopes;
    Flags spans, named;
} Scan;

/* ---- checking each message against its fields' kinds: OK, or OUTSIDE what this reads ---- */

typedef struct Message Message;

/* What a field holds. ATTRIBUTE_FIELD: a span's attribute, whose MARKER_KEY (a string, once) is compared with the
 * markers; SCOPE_FIELD: ScopeSpans' scope (once), whose SCOPE_NAME (a string, once) is kept; SPAN_FIELD: a span,
 * flagged; ITEM: a metric or log record, counted. REPEATED_I64 and REPEATED_VARINT: repeated numbers, packed (one
 * LEN field) or not (a field each), both of which protobuf's parser accepts. */
typedef enum {
    NONE, VARINT_, I64_, I32_, BYTES, STRING, MESSAGE, ATTRIBUTE_FIELD, MARKER_KEY, SCOPE_FIELD, SCOPE_NAME, SPAN_FIELD,
    ITEM, REPEATED_I64, REPEATED_VARINT
} Kind;

typedef struct {
    Kind kind;
    const Message *message; /* MESSAGE, ATTRIBUTE_FIELD, SCOPE_FIELD, SPAN_FIELD */
} FieldKind;

struct Message {
    uint32_t count; /* fields by number, 0 unused */
    const FieldKind *fields;
};

/* What the walk notes on its way: the span's marker, the scope's name, the flags of the request, the items. */
typedef struct {
    Scan *scan;
    int marked, key_seen, scope_seen, name_seen;
    const uint8_t *name;
    size_t name_size;
    size_t items;
} Walk;

/* Packed varints: each one whole, the last ending where the field does. */
static int packed_varints(const uint8_t *bytes, size_t size) {
    Reader r = {bytes, bytes + size};
    uint64_t value;
    while (r.p < r.end)
        if (read_varint(&r, &value)) return OUTSIDE;
    return OK;
}

static int walk(Walk *w, const Message *m, const uint8_t *bytes, size_t size, int depth) {
    if (depth > MAX_DEPTH) return OUTSIDE;
    Reader r = {bytes, bytes + size};
    Field f;
    while (r.p < r.end) {
        if (next_field(&r, &f) || f.number >= m->count) return OUTSIDE;
        const FieldKind *kind = &m->fields[f.number];
        int status = OK;
        switch (kind->kind) {
        case VARINT_: status = f.wire != VARINT; break;
        case I64_: status = f.wire != I64; break;
        case I32_: status = f.wire != I32; break;
        case BYTES: status = f.wire != LEN; break;
        case STRING: status = f.wire != LEN || !valid_utf8(f.bytes, f.size); break;
        case MESSAGE: status = f.wire != LEN || walk(w, kind->message, f.bytes, f.size, depth + 1); break;
        case ATTRIBUTE_FIELD:
            w->key_seen = 0;
            status = f.wire != LEN || walk(w, kind->message, f.bytes, f.size, depth + 1);
            break;
        case MARKER_KEY: /* given twice, protobuf keeps the last: the decision would have to as well */
            status = f.wire != LEN || w->key_seen++ || !valid_utf8(f.bytes, f.size);
            if (!status && equals_one(&w->scan->markers, f.bytes, f.size)) w->marked = 1;
            break;
        case SCOPE_FIELD:
            w->name_seen = 0;
            status = f.wire != LEN || w->scope_seen++ || walk(w, kind->message, f.bytes, f.size, depth + 1);
            break;
        case SCOPE_NAME:
            status = f.wire != LEN || w->name_seen++ || !valid_utf8(f.bytes, f.size);
            w->name = f.bytes;
            w->name_size = f.size;
            break;
        case SPAN_FIELD:
            if (f.wire != LEN) return OUTSIDE;
            w->marked = 0;
            status = walk(w, kind->message, f.bytes, f.size, depth + 1);
            if (status == OK) status = flag(&w->scan->spans, (uint8_t)w->marked);
            break;
        case ITEM:
            status = f.wire != LEN || walk(w, kind->message, f.bytes, f.size, depth + 1);
            w->items++;
            break;
        case REPEATED_I64: status = f.wire != I64 && (f.wire != LEN || f.size % 8); break;
        case REPEATED_VARINT: status = f.wire != VARINT && (f.wire != LEN || packed_varints(f.bytes, f.size)); break;
        default: return OUTSIDE;
        }
        if (status) return status < 0 ? NO_MEMORY : OUTSIDE;
    }
    return OK;
}

/* OTLP's trace messages (opentelemetry/proto/trace/v1, common/v1, resource/v1), by field number. */
#define K(kind) {kind, NULL}
#define M(kind, message) {kind, &message}
static const Message ANY_VALUE, KEY_VALUE;
static const Message VALUES = {2, (const FieldKind[]){K(NONE), M(MESSAGE, ANY_VALUE)}};     /* ArrayValue */
static const Message KEY_VALUES = {2, (const FieldKind[]){K(NONE), M(MESSAGE, KEY_VALUE)}}; /* KeyValueList */
static const Message ANY_VALUE = {9, (const FieldKind[]){K(NONE), K(STRING), K(VARINT_), K(VARINT_), K(I64_),
                                                         M(MESSAGE, VALUES), M(MESSAGE, KEY_VALUES), K(BYTES),
                                                         K(VARINT_)}};
static const Message KEY_VALUE = {4, (const FieldKind[]){K(NONE), K(STRING), M(MESSAGE, ANY_VALUE), K(VARINT_)}};
static const Message SPAN_ATTRIBUTE = {4, (const FieldKind[]){K(NONE), K(MARKER_KEY), M(MESSAGE, ANY_VALUE),
                                                              K(VARINT_)}};
static const Message ENTITY_REF = {5, (const FieldKind[]){K(NONE), K(STRING), K(STRING), K(STRING), K(STRING)}};
static const Message RESOURCE = {4, (const FieldKind[]){K(NONE), M(MESSAGE, KEY_VALUE), K(VARINT_),
                                                        M(MESSAGE, ENTITY_REF)}};
static const Message INSTRUMENTATION_SCOPE = {5, (const FieldKind[]){K(NONE), K(SCOPE_NAME), K(STRING),
                                                                     M(MESSAGE, KEY_VALUE), K(VARINT_)}};
static const Message EVENT = {5, (const FieldKind[]){K(NONE), K(I64_), K(STRING), M(MESSAGE, KEY_VALUE),
                                                     K(VARINT_)}};
static const Message LINK = {7, (const FieldKind[]){K(NONE), K(BYTES), K(BYTES), K(STRING), M(MESSAGE, KEY_VALUE),
                                                    K(VARINT_), K(I32_)}};
static const Message STATUS = {4, (const FieldKind[]){K(NONE), K(NONE), K(STRING), K(VARINT_)}};
static const Message SPAN = {17, (const FieldKind[]){K(NONE), K(BYTES), K(BYTES), K(STRING), K(BYTES), K(STRING),
                                                     K(VARINT_), K(I64_), K(I64_), M(ATTRIBUTE_FIELD, SPAN_ATTRIBUTE),
                                                     K(VARINT_), M(MESSAGE, EVENT), K(VARINT_), M(MESSAGE, LINK),
                                                     K(VARINT_), M(MESSAGE, STATUS), K(I32_)}};
static const Message SCOPE_SPANS = {4, (const FieldKind[]){K(NONE), M(SCOPE_FIELD, INSTRUMENTATION_SCOPE), M(SPAN_FIELD, SPAN),
                                                           K(STRING)}};

/* OTLP's metrics and logs messages (opentelemetry/proto/metrics/v1, logs/v1), by field number: their metrics and
 * log records are ITEMs, counted. A field number a message reserves (Metric's 4, 6 and 8) is NONE: not read. */
static const Message SCOPE = {5, (const FieldKind[]){K(NONE), K(STRING), K(STRING), M(MESSAGE, KEY_VALUE),
                                                     K(VARINT_)}}; /* InstrumentationScope */
static const Message EXEMPLAR = {8, (const FieldKind[]){K(NONE), K(NONE), K(I64_), K(I64_), K(BYTES), K(BYTES),
                                                        K(I64_), M(MESSAGE, KEY_VALUE)}};
static const Message NUMBER_POINT = {9, (const FieldKind[]){K(NONE), K(NONE), K(I64_), K(I64_), K(I64_),
                                                            M(MESSAGE, EXEMPLAR), K(I64_), M(MESSAGE, KEY_VALUE),
                                                            K(VARINT_)}};
static const Message HISTOGRAM_POINT = {13, (const FieldKind[]){K(NONE), K(NONE), K(I64_), K(I64_), K(I64_), K(I64_),
                                                                K(REPEATED_I64), K(REPEATED_I64), M(MESSAGE, EXEMPLAR),
                                                                M(MESSAGE, KEY_VALUE), K(VARINT_), K(I64_), K(I64_)}};
static const Message BUCKETS = {3, (const FieldKind[]){K(NONE), K(VARINT_), K(REPEATED_VARINT)}};
static const Message EXPONENTIAL_POINT = {15, (const FieldKind[]){K(NONE), M(MESSAGE, KEY_VALUE), K(I64_), K(I64_),
                                                                  K(I64_), K(I64_), K(VARINT_), K(I64_),
                                                                  M(MESSAGE, BUCKETS), M(MESSAGE, BUCKETS), K(VARINT_),
                                                                  M(MESSAGE, EXEMPLAR), K(I64_), K(I64_), K(I64_)}};
static const Message QUANTILE = {3, (const FieldKind[]){K(NONE), K(I64_), K(I64_)}}; /* ValueAtQuantile */
static const Message SUMMARY_POINT = {9, (const FieldKind[]){K(NONE), K(NONE), K(I64_), K(I64_), K(I64_), K(I64_),
                                                             M(MESSAGE, QUANTILE), M(MESSAGE, KEY_VALUE),
                                                             K(VARINT_)}};
static const Message GAUGE = {2, (const FieldKind[]){K(NONE), M(MESSAGE, NUMBER_POINT)}};
static const Message SUM = {4, (const FieldKind[]){K(NONE), M(MESSAGE, NUMBER_POINT), K(VARINT_), K(VARINT_)}};
static const Message HISTOGRAM = {3, (const FieldKind[]){K(NONE), M(MESSAGE, HISTOGRAM_POINT), K(VARINT_)}};
static const Message EXPONENTIAL_HISTOGRAM = {3, (const FieldKind[]){K(NONE), M(MESSAGE, EXPONENTIAL_POINT),
                                                                     K(VARINT_)}};
static const Message SUMMARY = {2, (const FieldKind[]){K(NONE), M(MESSAGE, SUMMARY_POINT)}};
static const Message METRIC = {13, (const FieldKind[]){K(NONE), K(STRING), K(STRING), K(STRING), K(NONE),
                                                       M(MESSAGE, GAUGE), K(NONE), M(MESSAGE, SUM), K(NONE),
                                                       M(MESSAGE, HISTOGRAM), M(MESSAGE, EXPONENTIAL_HISTOGRAM),
                                                       M(MESSAGE, SUMMARY), M(MESSAGE, KEY_VALUE)}};
static const Message SCOPE_METRICS = {4, (const FieldKind[]){K(NONE), M(MESSAGE, SCOPE), M(ITEM, METRIC), K(STRING)}};
static const Message RESOURCE_METRICS = {4, (const FieldKind[]){K(NONE), M(MESSAGE, RESOURCE),
                                                                M(MESSAGE, SCOPE_METRICS), K(STRING)}};
static const Message METRICS_REQUEST = {2, (const FieldKind[]){K(NONE), M(MESSAGE, RESOURCE_METRICS)}};
static const Message LOG_RECORD = {13, (const FieldKind[]){K(NONE), K(I64_), K(VARINT_), K(STRING), K(NONE),
                                                           M(MESSAGE, ANY_VALUE), M(MESSAGE, KEY_VALUE), K(VARINT_),
                                                           K(I32_), K(BYTES), K(BYTES), K(I64_), K(STRING)}};
static const Message SCOPE_LOGS = {4, (const FieldKind[]){K(NONE), M(MESSAGE, SCOPE), M(ITEM, LOG_RECORD), K(STRING)}};
static const Message RESOURCE_LOGS = {4, (const FieldKind[]){K(NONE), M(MESSAGE, RESOURCE), M(MESSAGE, SCOPE_LOGS),
                                                             K(STRING)}};
static const Message LOGS_REQUEST = {2, (const FieldKind[]){K(NONE), M(MESSAGE, RESOURCE_LOGS)}};

/* A ScopeSpans: its spans flagged (kept: marked, or in a named scope), then the scope (named). */
static int scope_spans(Scan *scan, const uint8_t *bytes, size_t size) {
    size_t first = scan->spans.len;
    Walk w = {.scan = scan, .name = (const uint8_t *)""};
    int status = walk(&w, &SCOPE_SPANS, bytes, size, 3);
    if (status) return status;
    int named = starts_with_one(&scan->scopes, w.name, w.name_size);
    if (named && scan->spans.len > first) memset(scan->spans.data + first, 1, scan->spans.len - first);
    return flag(&scan->named, (uint8_t)named);
}

static int resource_spans(Scan *scan, const uint8_t *bytes, size_t size) {
    Reader r = {bytes, bytes + size};
    Field f;
    while (r.p < r.end) {
        if (next_field(&r, &f) || f.wire != LEN) return OUTSIDE;
        int status;
        Walk w = {.scan = scan};
        switch (f.number) {
        case 1: status = walk(&w, &RESOURCE, f.bytes, f.size, 3); break;
        case 2: status = scope_spans(scan, f.bytes, f.size); break;
        case 3: status = valid_utf8(f.bytes, f.size) ? OK : OUTSIDE; break;
        default: return OUTSIDE;
        }
        if (status) return status;
    }
    return OK;
}

static int request(Scan *scan, const uint8_t *bytes, size_t size) {
    Reader r = {bytes, bytes + size};
    Field f;
    while (r.p < r.end) {
        if (next_field(&r, &f) || f.number != 1 || f.wire != LEN) return OUTSIDE;
        int status = resource_spans(scan, f.bytes, f.size);
        if (status) return status;
    }
    return OK;
}

/* ---- the request holding the spans kept ---- */

/* Scopes and spans are met in the order the check met them: `span` and `scope` index the flags. */
typedef struct {
    const Scan *scan;
    size_t span, scope;
} Cursor;

static int put_field(Buf *out, uint32_t number, const Buf *payload) {
    return put_varint(out, (uint64_t)number << 3 | LEN) || put_varint(out, payload->len) ||
           put(out, payload->data, payload->len);
}

/* The ScopeSpans' kept spans and other fields into `out`; `*kept`: whether it is kept (named, or a span kept). */
static int keep_scope(Cursor *at, const uint8_t *bytes, size_t size, Buf *out, int *kept) {
    const uint8_t *flags = at->scan->spans.data;
    *kept = at->scan->named.data[at->scope++];
    Reader r = {bytes, bytes + size};
    Field f = {0}; /* the bytes were checked: next_field cannot fail here */
    while (r.p < r.end) {
        const uint8_t *start = r.p;
        next_field(&r, &f);
        if (f.number == 2 && !flags[at->span++]) continue;
        if (f.number == 2) *kept = 1;
        if (put(out, start, (size_t)(r.p - start))) return NO_MEMORY;
    }
    return OK;
}

static int keep_resource(Cursor *at, const uint8_t *bytes, size_t size, Buf *out, Buf *scope_buf, int *kept) {
    Reader r = {bytes, bytes + size};
    Field f = {0}; /* the bytes were checked: next_field cannot fail here */
    *kept = 0;
    while (r.p < r.end) {
        const uint8_t *start = r.p;
        next_field(&r, &f);
        if (f.number != 2) {
            if (put(out, start, (size_t)(r.p - start))) return NO_MEMORY;
            continue;
        }
        int scope_kept;
        scope_buf->len = 0;
        if (keep_scope(at, f.bytes, f.size, scope_buf, &scope_kept)) return NO_MEMORY;
        if (scope_kept) {
            *kept = 1;
            if (put_field(out, 2, scope_buf)) return NO_MEMORY;
        }
    }
    return OK;
}

static int keep(const Scan *scan, const uint8_t *bytes, size_t size, Buf *out) {
    Cursor at = {scan, 0, 0};
    Buf resource_buf = {0}, scope_buf = {0};
    int status = OK;
    Reader r = {bytes, bytes + size};
    Field f = {0}; /* the bytes were checked: next_field cannot fail here */
    while (r.p < r.end && status == OK) {
        next_field(&r, &f);
        int kept;
        resource_buf.len = 0;
        status = keep_resource(&at, f.bytes, f.size, &resource_buf, &scope_buf, &kept);
        if (status == OK && kept && put_field(out, 1, &resource_buf)) status = NO_MEMORY;
    }
    free(resource_buf.data);
    free(scope_buf.data);
    return status;
}

/* ---- Python ---- */

static int keys_of(PyObject *tuple, Keys *keys, const char *what) {
    if (!PyTuple_Check(tuple)) {
        PyErr_Format(PyExc_TypeError, "%s must be a tuple of bytes", what);
        return -1;
    }
    keys->count = PyTuple_GET_SIZE(tuple);
    keys->text = PyMem_Calloc((size_t)keys->count + 1, sizeof(*keys->text));
    keys->size = PyMem_Calloc((size_t)keys->count + 1, sizeof(*keys->size));
    if (!keys->text || !keys->size) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < keys->count; i++) {
        PyObject *item = PyTuple_GET_ITEM(tuple, i);
        if (!PyBytes_Check(item)) {
            PyErr_Format(PyExc_TypeError, "%s must be a tuple of bytes", what);
            return -1;
        }
        keys->text[i] = (const uint8_t *)PyBytes_AS_STRING(item);
        keys->size[i] = (size_t)PyBytes_GET_SIZE(item);
        keys->lengths |= keys->size[i] < 64 ? 1ULL << keys->size[i] : 0;
    }
    return 0;
}

PyDoc_STRVAR(split_doc,
    "split(body, markers, scopes) -> (spans, skipped, kept) | None\n\n"
    "`body`: an ExportTraceServiceRequest's protobuf encoding. `markers`: attribute keys that make a span one that\n"
    "may be GenAI; `scopes`: scope name prefixes that do. `kept`: the request of the spans that may be GenAI\n"
    "(`body` itself when that is all of them, None when there is none). None when the body is outside what this\n"
    "reads exactly as protobuf would: parse it with protobuf.");

static PyObject *split(PyObject *module, PyObject *args) {
    Py_buffer body;
    PyObject *markers, *scopes, *result = NULL;
    if (!PyArg_ParseTuple(args, "y*O!O!", &body, &PyTuple_Type, &markers, &PyTuple_Type, &scopes)) return NULL;
    Scan scan = {0};
    Buf out = {0};
    if (keys_of(markers, &scan.markers, "markers") || keys_of(scopes, &scan.scopes, "scopes")) goto done;
    const uint8_t *bytes = body.buf;
    size_t size = (size_t)body.len;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = request(&scan, bytes, size);
    Py_END_ALLOW_THREADS
    if (status == NO_MEMORY) {
        PyErr_NoMemory();
        goto done;
    }
    if (status == OUTSIDE) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    size_t spans = scan.spans.len, skipped = 0;
    for (size_t i = 0; i < spans; i++) skipped += !scan.spans.data[i];
    PyObject *kept;
    if (skipped == 0) {
        PyObject *given = PyTuple_GET_ITEM(args, 0);
        kept = PyBytes_CheckExact(given) ? Py_NewRef(given)
                                         : PyBytes_FromStringAndSize((const char *)bytes, (Py_ssize_t)size);
    } else if (skipped == spans) {
        kept = Py_NewRef(Py_None);
    } else {
        int written;
        Py_BEGIN_ALLOW_THREADS
        written = keep(&scan, bytes, size, &out);
        Py_END_ALLOW_THREADS
        if (written) {
            PyErr_NoMemory();
            goto done;
        }
        kept = PyBytes_FromStringAndSize(out.data, (Py_ssize_t)out.len);
    }
    if (kept) result = Py_BuildValue("nnN", (Py_ssize_t)spans, (Py_ssize_t)skipped, kept);
done:
    PyMem_Free(scan.markers.text);
    PyMem_Free(scan.markers.size);
    PyMem_Free(scan.scopes.text);
    PyMem_Free(scan.scopes.size);
    free(scan.spans.data);
    free(scan.named.data);
    free(out.data);
    PyBuffer_Release(&body);
    return result;
}

PyDoc_STRVAR(count_doc,
    "count(body, signal) -> int | None\n\n"
    "The metrics (`signal` \"metrics\") or log records (\"logs\") of an ExportMetricsServiceRequest's or\n"
    "ExportLogsServiceRequest's protobuf encoding. None when the body is outside what this reads exactly as protobuf\n"
    "would: parse it with protobuf.");

static PyObject *count(PyObject *module, PyObject *args) {
    Py_buffer body;
    const char *signal;
    if (!PyArg_ParseTuple(args, "y*s", &body, &signal)) return NULL;
    const Message *request = strcmp(signal, "metrics") == 0 ? &METRICS_REQUEST
                             : strcmp(signal, "logs") == 0  ? &LOGS_REQUEST
                                                            : NULL;
    if (request == NULL) {
        PyBuffer_Release(&body);
        return PyErr_Format(PyExc_ValueError, "signal must be \"metrics\" or \"logs\", got %R",
                            PyTuple_GET_ITEM(args, 1));
    }
    Walk w = {0};
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = walk(&w, request, body.buf, (size_t)body.len, 0);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&body);
    if (status) Py_RETURN_NONE;
    return PyLong_FromSize_t(w.items);
}

static PyMethodDef methods[] = {
    {"split", split, METH_VARARGS, split_doc},
    {"count", count, METH_VARARGS, count_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, .m_name = "_scan", .m_size = 0, .m_methods = methods};

PyMODINIT_FUNC PyInit__scan(void) { return PyModule_Create(&module); }
