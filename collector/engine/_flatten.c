/* OTLP trace requests flattened to one row per span, written as a ClickHouse `Native` block.
 *
 * The engine's query used to read the requests with ClickHouse's `Protobuf` format and flatten them with three
 * ARRAY JOINs; that parse and the joins were a third of the query's CPU. This module walks the protobuf wire
 * format of the fields `otlp_traces.proto` names (nothing else is read) and writes each column's data as the
 * Native format lays it out, so ClickHouse reads the rows with no conversion.
 *
 * A request it cannot read exactly as the Python reader would (malformed bytes, a singular field given twice, an
 * AnyValue with two members set, a wire type other than the field's) becomes one row with `decode_bad` = 1:
 * the engine then leaves the whole request to the Python reader, which produces its rows or its rejection.
 *
 * It also reads what the query would otherwise compute per attribute with lambdas (the costliest part of its
 * analysis, which every batch pays): each attribute's value as a token count (`attribute_counts`, -1 where the
 * engine does not read it as Python does, as sql.count_ok), whether a span's or its resource's attributes are
 * all spelled by the engine as Python spells them (`unread`, `resource_unread`: sql.readable, and keys a dict
 * would merge), each attribute's text as the query reads fields from it (`attribute_texts`: sql.as_text), and
 * what its key is to the query (`attribute_kinds`: read by a convention, content, or other, from a hash table of
 * the known keys: the query tested every key against two lists and seven prefixes).
 * A resource is read once, and its columns (its attributes as the row keeps them, cut; the texts of the keys the
 * query asks for) go on each scope's first row only: the reader copies what the query makes of them into the
 * other rows after the query, and the query needs no join.
 *
 * Column buffers are kept between calls, a set per thread flattening at once (new memory is costly to touch on
 * the VMs this runs on).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "_wire.h"

/* A singular field seen twice: protobuf would merge or replace, which the engine does not do. */
static int seen_once(uint32_t *seen, uint32_t number) {
    uint32_t bit = 1u << (number & 31);
    if (*seen & bit) return -1;
    *seen |= bit;
    return 0;
}

static int put_u8(Buf *b, uint8_t v) { return put(b, &v, 1); }
static int put_u64(Buf *b, uint64_t v) { return put(b, &v, 8); }

/* A Native String value: its length as a varint, then its bytes. */
static int put_str(Buf *b, const uint8_t *s, size_t n) {
    return put_varint(b, n) || put(b, s, n);
}

/* A message's singular field `number` (of wire type `wire`) into `out`: 1 when present, 0 when absent, -1 when
 * the message does not parse or holds it twice or with another wire type. */
static int singular(const uint8_t *bytes, size_t size, uint32_t number, int wire, Field *out) {
    Reader r = {bytes, bytes + size};
    Field f;
    int found = 0;
    while (r.p < r.end) {
        if (next_field(&r, &f)) return -1;
        if (f.number != number) continue;
        if (f.wire != wire || found) return -1;
        *out = f;
        found = 1;
    }
    return found;
}

/* ---- what the engine reads as Python does ---- */

/* A double Python prints without an exponent, and finite: the ones the engine spells (sql._double_ok). */
static int double_plain(double d) { return isfinite(d) && (d == 0 || (fabs(d) >= 1e-4 && fabs(d) < 1e16)); }

/* A string json.dumps writes without escapes (sql._JSON_UNSAFE). */
static int json_plain(const uint8_t *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x20 || s[i] == '"' || s[i] == '\\') return 0;
    return 1;
}

/* An AnyValue's members as parsed (the scalar ones), and whether the engine spells it as Python does. */
typedef struct {
    uint8_t kind;
    uint64_t integer;
    double dbl;
    const uint8_t *str;
    size_t str_size;
    int unread;
    const uint8_t *text; /* depth 0: as_text, before it is cut */
    size_t text_size;
    const uint8_t *string; /* depth 0: as_str */
    size_t string_size;
} Parsed;

/* The value as a token count where the engine reads it as Python does (sql.count_ok, sql.as_count), else -1. */
static int64_t count_of(const Parsed *v) {
    switch (v->kind) {
    case 3:
        return (int64_t)v->integer >= 0 ? (int64_t)v->integer : -1;
    case 4:
        return v->dbl >= 0 && v->dbl < 1e18 && v->dbl == trunc(v->dbl) ? (int64_t)v->dbl : -1;
    case 1: {
        if (v->str_size < 1 || v->str_size > 18) return -1;
        int64_t n = 0;
        for (size_t i = 0; i < v->str_size; i++) {
            if (v->str[i] < '0' || v->str[i] > '9') return -1;
            n = n * 10 + (v->str[i] - '0');
        }
        return n;
    }
    default:
        return -1;
    }
}

/* An integer in decimal (printf's is several times slower, and counts are most of an attribute's numbers). */
static int put_integer_text(Buf *b, int64_t value) {
    char text[24];
    int n = sizeof text;
    uint64_t magnitude = value < 0 ? 0 - (uint64_t)value : (uint64_t)value;
    do {
        text[--n] = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    if (value < 0) text[--n] = '-';
    return put(b, text + n, sizeof text - (size_t)n);
}

/* A plain double (double_plain) as Python's repr spells it: the fewest digits that read back as the same double
 * (as printf rounds them), laid out without an exponent, ".0" on whole numbers. */
static int put_double_text(Buf *b, double d) {
    if (d == 0) return signbit(d) ? put(b, "-0.0", 4) : put(b, "0.0", 3);
    if (d == trunc(d)) /* below 1e16: exact as an integer, which is its shortest spelling */
        return put_integer_text(b, (int64_t)d) || put(b, ".0", 2);
    char sci[40], out[64], digits[24];
    for (int precision = 1; precision <= 17; precision++) {
        snprintf(sci, sizeof sci, "%.*e", precision - 1, d);
        if (strtod(sci, NULL) == d) break;
    }
    const char *c = sci;
    int n = 0, count = 0;
    if (*c == '-') out[n++] = *c++;
    for (; *c && *c != 'e'; c++)
        if (*c >= '0' && *c <= '9') digits[count++] = *c; /* not the decimal point, whatever the locale's */
    int exponent = atoi(c + 1); /* -4..15: double_plain */
    if (exponent >= 0) {
        for (int i = 0; i <= exponent; i++) out[n++] = i < count ? digits[i] : '0';
        out[n++] = '.';
        if (count <= exponent + 1) out[n++] = '0';
        for (int i = exponent + 1; i < count; i++) out[n++] = digits[i];
    } else {
        out[n++] = '0';
        out[n++] = '.';
        for (int i = 0; i < -exponent - 1; i++) out[n++] = '0';
        for (int i = 0; i < count; i++) out[n++] = digits[i];
    }
    return put(b, out, (size_t)n);
}

/* A scalar as otlp_values.as_str spells it (sql.as_str): what the engine does not spell (unread) as "". */
static int put_scalar_text(Buf *b, const Parsed *v) {
    switch (v->kind) {
    case 1: return put(b, v->str, v->str_size);
    case 2: return v->integer ? put(b, "true", 4) : put(b, "false", 5);
    case 3: return put_integer_text(b, (int64_t)v->integer);
    case 4: return double_plain(v->dbl) ? put_double_text(b, v->dbl) : 0;
    default: return 0;
    }
}

/* An array's element as json.dumps writes it (strings that need no escape: others are unread). */
static int put_json(Buf *b, const Parsed *v) {
    if (v->kind == 1) return put_u8(b, '"') || put(b, v->str, v->str_size) || put_u8(b, '"');
    if (v->kind == 0) return put(b, "null", 4);
    return put_scalar_text(b, v);
}

typedef struct {
    const uint8_t *p;
    size_t n;
} Key;

static int key_order(const void *a, const void *b) {
    const Key *x = a, *y = b;
    if (x->n != y->n) return x->n < y->n ? -1 : 1;
    return memcmp(x->p, y->p, x->n);
}

/* One span's (or resource's) keys, to find what Python's dicts would merge: a repeated key, or two keys of 1024
 * bytes or more (Python cuts them to one length). Scratch, not a column. */
typedef struct {
    Key *keys;
    size_t count, cap;
} Keys;

static int keys_add(Keys *k, const uint8_t *p, size_t n) {
    if (k->count == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 64;
        Key *keys = realloc(k->keys, cap * sizeof(Key));
        if (!keys) return -1;
        k->keys = keys;
        k->cap = cap;
    }
    k->keys[k->count++] = (Key){p, n};
    return 0;
}

static int keys_merge(Keys *k) {
    size_t long_keys = 0;
    for (size_t i = 0; i < k->count; i++) long_keys += k->keys[i].n >= 1024;
    if (long_keys > 1) return 1;
    if (k->count <= 32) {
        for (size_t i = 0; i < k->count; i++)
            for (size_t j = i + 1; j < k->count; j++)
                if (key_order(&k->keys[i], &k->keys[j]) == 0) return 1;
        return 0;
    }
    qsort(k->keys, k->count, sizeof(Key), key_order);
    for (size_t i = 1; i < k->count; i++)
        if (key_order(&k->keys[i - 1], &k->keys[i]) == 0) return 1;
    return 0;
}

/* ---- columns ---- */

/* An AnyValue's columns (sql.VALUE): at depth 0 and 1 every member, at depth 2 only its kind. */
typedef struct Values {
    Buf kind, str, boolean, integer, dbl, bytes, offsets;
    Buf text, single; /* scratch: an array's text before it is written; a one-element array's as_text */
    struct Values *elements;
    size_t count; /* elements written into `elements`: the array offsets are cumulative */
} Values;

typedef struct {
    Buf offsets, keys;
    Values values;
    size_t count;
} Attributes;

enum { MAX_RESOURCE_FIELDS = 8, MAX_NAMES = 256, MAX_KNOWN = 512, KNOWN_SLOTS = 2048 };
enum { KIND_OTHER = 2, KIND_CONTENT = 3 };

/* A resource's columns as its spans' rows carry them, each a run of Native strings. */
typedef struct {
    Buf keys, values; /* its first `most` attributes: keys cut at 1024 characters, as_str texts at `limit` */
    size_t entries;
    Buf field[MAX_RESOURCE_FIELDS]; /* scratch: the as_text of each key asked for, as found */
    Buf fields;                     /* then all of them in order ("" for a key not there) */
    uint8_t unread;
} Resource;

typedef struct {
    Buf request, resource_index, scope_index, span_index;
    Buf trace_id, span_id, trace_state, parent_span_id, name, start, end, status;
    Attributes attributes;
    Buf scope_name, marked, scope_unmarked, decode_bad, counts, unread, texts, kinds;
    Buf resource_offsets, resource_keys, resource_values, field_offsets, resource_fields, resource_unread;
    size_t resource_entries, field_entries; /* the resource columns' offsets: cumulative in a block */
    Values depth1, depth2;
    Attributes resource_attributes; /* scratch: a resource's attributes as they are read */
    Values rdepth1, rdepth2;
    Resource resource; /* the current resource's columns */
    PyObject *resource_keys_asked; /* bytes: the keys whose texts `fields` holds */
    size_t most, limit;
    Keys keys;
    size_t rows;
    /* The conventions found (bit i: the i-th of the caller's): those of the known keys that are markers among
     * spans' keys (`known_masks`), and of the prefixes scopes' names start with. */
    uint64_t known_masks[MAX_KNOWN], scope_masks[MAX_NAMES], found;
    PyObject *scope_prefixes; /* bytes */
    /* The keys whose kind is known (`attribute_kinds`), markers among them, by hash (open addressing: key index
     * + 1, 0 empty): one lookup a key. A key not among them is content when it starts with one of
     * `content_prefixes`, else other. */
    uint16_t known_slots[KNOWN_SLOTS];
    /* The span (numbered from 1 in a call) each known key was last seen in: a known key seen twice in one span is
     * a repeated key, found without comparing it to the span's other keys (`keys` holds only the unknown ones). */
    uint32_t known_seen[MAX_KNOWN], span_serial;
    PyObject *known; /* bytes */
    const char *known_kinds;
    PyObject *content_prefixes; /* bytes */
} Columns;

/* Every buffer of the spans' block, for truncating back to a request's start. */
static void all_bufs(Columns *c, Buf **out) {
    int n = 0;
    Buf *spans[] = {&c->request, &c->resource_index, &c->scope_index, &c->span_index, &c->trace_id, &c->span_id,
                    &c->trace_state, &c->parent_span_id, &c->name, &c->start, &c->end, &c->status,
                    &c->scope_name, &c->marked, &c->scope_unmarked, &c->decode_bad, &c->counts, &c->unread, &c->texts,
                    &c->kinds,
                    &c->resource_offsets, &c->resource_keys, &c->resource_values, &c->field_offsets,
                    &c->resource_fields, &c->resource_unread, &c->attributes.offsets, &c->attributes.keys};
    for (size_t i = 0; i < sizeof spans / sizeof *spans; i++) out[n++] = spans[i];
    for (Values *v = &c->attributes.values; v; v = v->elements) {
        Buf *members[] = {&v->kind, &v->str, &v->boolean, &v->integer, &v->dbl, &v->bytes, &v->offsets};
        for (int m = 0; m < 7; m++) out[n++] = members[m];
    }
    out[n] = NULL;
}

/* Every scratch buffer (not a column): a resource's as it is read, and the values' texts (to empty or free). */
static int scratch_bufs(Columns *c, Buf **out) {
    int n = 0;
    out[n++] = &c->resource_attributes.offsets;
    out[n++] = &c->resource_attributes.keys;
    for (Values *v = &c->resource_attributes.values; v; v = v->elements) {
        Buf *members[] = {&v->kind, &v->str, &v->boolean, &v->integer, &v->dbl, &v->bytes, &v->offsets,
                          &v->text, &v->single};
        for (int m = 0; m < 9; m++) out[n++] = members[m];
    }
    Values *spans[] = {&c->attributes.values, &c->depth1};
    for (int i = 0; i < 2; i++) out[n++] = &spans[i]->text, out[n++] = &spans[i]->single;
    out[n++] = &c->resource.keys;
    out[n++] = &c->resource.values;
    out[n++] = &c->resource.fields;
    for (int i = 0; i < MAX_RESOURCE_FIELDS; i++) out[n++] = &c->resource.field[i];
    out[n] = NULL;
    return n;
}

#define MAX_BUFS 80

typedef struct {
    size_t lens[MAX_BUFS];
    size_t counts[6];
    size_t rows;
} Mark;

static void counters(Columns *c, size_t **out) {
    out[0] = &c->attributes.count;
    out[1] = &c->attributes.values.count;
    out[2] = &c->depth1.count;
    out[3] = &c->depth2.count;
    out[4] = &c->resource_entries;
    out[5] = &c->field_entries;
}

static void mark(Columns *c, Mark *m) {
    Buf *bufs[MAX_BUFS + 1];
    size_t *counts[6];
    all_bufs(c, bufs);
    for (int i = 0; bufs[i]; i++) m->lens[i] = bufs[i]->len;
    counters(c, counts);
    for (int i = 0; i < 6; i++) m->counts[i] = *counts[i];
    m->rows = c->rows;
}

static void rewind_to(Columns *c, const Mark *m) {
    Buf *bufs[MAX_BUFS + 1];
    size_t *counts[6];
    all_bufs(c, bufs);
    for (int i = 0; bufs[i]; i++) bufs[i]->len = m->lens[i];
    counters(c, counts);
    for (int i = 0; i < 6; i++) *counts[i] = m->counts[i];
    c->rows = m->rows;
}

/* Empty buffers for the next spans' block: offsets start again at 0. */
static void reset(Columns *c) {
    Buf *bufs[MAX_BUFS + 1];
    size_t *counts[6];
    all_bufs(c, bufs);
    for (int i = 0; bufs[i]; i++) bufs[i]->len = 0;
    counters(c, counts);
    for (int i = 0; i < 6; i++) *counts[i] = 0;
    c->rows = 0;
}

static void link_levels(Columns *c) {
    c->attributes.values.elements = &c->depth1;
    c->depth1.elements = &c->depth2;
    c->depth2.elements = NULL;
    c->resource_attributes.values.elements = &c->rdepth1;
    c->rdepth1.elements = &c->rdepth2;
    c->rdepth2.elements = NULL;
}

/* One AnyValue into `v` (`depth` 2: its kind only); at depth 0 and 1 its scalar members and whether the engine
 * spells it as Python does into `out`. At depth 0 its `string_value` column holds its as_str text, whatever its
 * kind (the query's expressions read a string only where the kind is one): an attribute's text is then the
 * column itself, with no expression per attribute. */
static int add_value(Values *v, const uint8_t *bytes, size_t size, int depth, Parsed *out) {
    Reader r = {bytes, bytes + size};
    Field f;
    uint8_t kind = 0;
    const uint8_t *str = NULL, *raw = NULL, *array = NULL;
    size_t str_size = 0, raw_size = 0, array_size = 0;
    uint64_t integer = 0, dbl = 0;
    uint8_t boolean = 0;
    while (r.p < r.end) {
        if (next_field(&r, &f)) return -1;
        if (f.number < 1 || f.number > 7) continue;
        static const int wires[8] = {-1, LEN, VARINT, VARINT, I64, LEN, LEN, LEN};
        if (f.wire != wires[f.number] || kind) return -1; /* a second member (or the same again) */
        kind = (uint8_t)f.number;
        switch (f.number) {
        case 1: str = f.bytes; str_size = f.size; break;
        case 2: boolean = f.value != 0; break;
        case 3: integer = f.value; break;
        case 4: dbl = f.value; break;
        case 5: array = f.bytes; array_size = f.size; break;
        case 7: raw = f.bytes; raw_size = f.size; break;
        default: break; /* kvlist_value: only its kind is read */
        }
    }
    if (put_u8(&v->kind, kind)) return -1;
    if (depth == 2) return 0;
    if (put_u8(&v->boolean, boolean) || put(&v->integer, &integer, 8) || put(&v->dbl, &dbl, 8) ||
        put_str(&v->bytes, raw, raw_size))
        return -1;
    out->kind = kind;
    out->integer = kind == 2 ? boolean : integer;
    memcpy(&out->dbl, &dbl, 8);
    out->str = str;
    out->str_size = str_size;
    /* sql.readable: a map or bytes is not spelled, a nested array neither; doubles without an exponent; in an
     * array, strings json.dumps writes as they are */
    out->unread = kind >= 6 || (kind == 4 && !double_plain(out->dbl)) || (depth == 1 && kind == 5) ||
                  (depth == 1 && kind == 1 && !json_plain(str, str_size));
    Buf *text = &v->text;
    text->len = 0;
    if (array) {
        Reader a = {array, array + array_size};
        if (put_u8(text, '[')) return -1;
        size_t n = 0;
        Parsed first = {0};
        while (a.p < a.end) {
            if (next_field(&a, &f)) return -1;
            if (f.number != 1) continue;
            Parsed element = {0};
            if (f.wire != LEN || add_value(v->elements, f.bytes, f.size, depth + 1, &element)) return -1;
            out->unread |= element.unread;
            v->count++;
            if (!n) first = element;
            if (depth == 0 && ((n++ && put_u8(text, ',')) || put_json(text, &element))) return -1;
        }
        if (put_u8(text, ']')) return -1;
        if (depth == 0 && n == 1) { /* as_text: a one-element array reads as its element */
            v->single.len = 0;
            if (put_scalar_text(&v->single, &first)) return -1;
        }
        out->text = (const uint8_t *)(depth == 0 && n == 1 ? v->single.data : text->data);
        out->text_size = depth == 0 && n == 1 ? v->single.len : text->len;
    } else if (depth == 0 && kind != 1 && put_scalar_text(text, out)) {
        return -1;
    }
    int own = depth == 1 || kind == 1; /* the string itself */
    if (!array) {
        out->text = own ? str : (const uint8_t *)text->data;
        out->text_size = own ? str_size : text->len;
    }
    out->string = own ? str : (const uint8_t *)text->data;
    out->string_size = own ? str_size : text->len;
    if (put_str(&v->str, out->string, out->string_size)) return -1;
    return put_u64(&v->offsets, v->count);
}

/* The bytes of the first `chars` characters of UTF-8 text (Python's `text[:chars]`, sql.cut). */
static size_t utf8_prefix(const uint8_t *s, size_t size, size_t chars) {
    size_t count = 0;
    for (size_t i = 0; i < size; i++)
        if ((s[i] & 0xc0) != 0x80 && count++ == chars) return i;
    return size;
}

/* One KeyValue into `list` and its key into `keys` (unless NULL); the key and the parsed value into `key`,
 * `value` (pointers valid until the next attribute of `list`). */
static int add_attribute(Attributes *list, Keys *keys, const uint8_t *bytes, size_t size, Key *key, Parsed *value) {
    Reader r = {bytes, bytes + size};
    Field f;
    uint32_t seen = 0;
    const uint8_t *value_bytes = NULL;
    size_t value_size = 0;
    *key = (Key){NULL, 0};
    while (r.p < r.end) {
        if (next_field(&r, &f)) return -1;
        if (f.number != 1 && f.number != 2) continue;
        if (f.wire != LEN || seen_once(&seen, f.number)) return -1;
        if (f.number == 1) {
            *key = (Key){f.bytes, f.size};
        } else {
            value_bytes = f.bytes;
            value_size = f.size;
        }
    }
    if (put_str(&list->keys, key->p, key->n) || add_value(&list->values, value_bytes, value_size, 0, value) ||
        (keys && keys_add(keys, key->p, key->n)))
        return -1;
    list->count++;
    return 0;
}

/* The position of `key` in a tuple of bytes, or -1. */
static Py_ssize_t position(PyObject *names, const Key *key) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(names); i++) {
        PyObject *name = PyTuple_GET_ITEM(names, i);
        if ((size_t)PyBytes_GET_SIZE(name) == key->n && memcmp(PyBytes_AS_STRING(name), key->p, key->n) == 0)
            return i;
    }
    return -1;
}

/* A key's hash from its length and three of its 8-byte words (first, middle, last): known keys differ there, and
 * a collision costs one more comparison. */
static uint64_t key_hash(const uint8_t *p, size_t n) {
    uint64_t words[3] = {0, 0, 0};
    if (n >= 8) {
        memcpy(&words[0], p, 8);
        memcpy(&words[1], p + n / 2 - 4, 8);
        memcpy(&words[2], p + n - 8, 8);
    } else if (n) {
        memcpy(&words[0], p, n);
    }
    uint64_t h = (uint64_t)n * 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < 3; i++) {
        h ^= words[i];
        h *= 0xBF58476D1CE4E5B9ULL;
        h ^= h >> 31;
    }
    return h;
}

static void index_known(Columns *c, PyObject *known, const char *kinds, PyObject *content_prefixes) {
    memset(c->known_slots, 0, sizeof c->known_slots);
    memset(c->known_seen, 0, sizeof c->known_seen);
    c->span_serial = 0;
    c->known = known;
    c->known_kinds = kinds;
    c->content_prefixes = content_prefixes;
    for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(known); j++) {
        PyObject *name = PyTuple_GET_ITEM(known, j);
        size_t slot = key_hash((const uint8_t *)PyBytes_AS_STRING(name), (size_t)PyBytes_GET_SIZE(name));
        for (slot &= KNOWN_SLOTS - 1; c->known_slots[slot]; slot = (slot + 1) & (KNOWN_SLOTS - 1)) {
        }
        c->known_slots[slot] = (uint16_t)(j + 1);
    }
}

/* The position of `key` among the known keys, or -1. */
static Py_ssize_t known_index(const Columns *c, const Key *key) {
    for (size_t slot = key_hash(key->p, key->n) & (KNOWN_SLOTS - 1); c->known_slots[slot];
         slot = (slot + 1) & (KNOWN_SLOTS - 1)) {
        Py_ssize_t j = c->known_slots[slot] - 1;
        PyObject *name = PyTuple_GET_ITEM(c->known, j);
        size_t n = (size_t)PyBytes_GET_SIZE(name);
        if (n == key->n && (!n || memcmp(PyBytes_AS_STRING(name), key->p, n) == 0)) return j;
    }
    return -1;
}

/* What the query makes of an unknown key (sql: rest_class, for a key with no tag prefix). */
static uint8_t unknown_kind(const Columns *c, const Key *key) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(c->content_prefixes); i++) {
        PyObject *prefix = PyTuple_GET_ITEM(c->content_prefixes, i);
        size_t n = (size_t)PyBytes_GET_SIZE(prefix);
        if (n <= key->n && (!n || memcmp(PyBytes_AS_STRING(prefix), key->p, n) == 0)) return KIND_CONTENT;
    }
    return KIND_OTHER;
}

/* A span's attribute: its columns, its count and text, whether it is a marker and what the engine cannot spell. */
static int add_span_attribute(Columns *c, const uint8_t *bytes, size_t size, int *is_marker, int *unread) {
    Key key;
    Parsed value;
    if (add_attribute(&c->attributes, NULL, bytes, size, &key, &value)) return -1;
    int64_t count = count_of(&value);
    Py_ssize_t known = known_index(c, &key);
    if (known >= 0 && key.n < 1024) { /* a long key also counts among the long ones (keys_merge) */
        *unread |= c->known_seen[known] == c->span_serial;
        c->known_seen[known] = c->span_serial;
    } else if (keys_add(&c->keys, key.p, key.n)) {
        return -1;
    }
    uint8_t kind = known >= 0 ? (uint8_t)c->known_kinds[known] : unknown_kind(c, &key);
    if (put(&c->counts, &count, 8) || put_str(&c->texts, value.text, utf8_prefix(value.text, value.text_size, 1024)) ||
        put_u8(&c->kinds, kind))
        return -1;
    *unread |= value.unread;
    if (known >= 0 && c->known_masks[known]) {
        *is_marker = 1;
        c->found |= c->known_masks[known];
    }
    return 0;
}

/* A Resource message read into `c->resource`, the columns each of its spans' rows carry (the query's
 * resource_attributes, and the texts it reads fields from). */
static int add_resource(Columns *c, const uint8_t *bytes, size_t size) {
    Resource *res = &c->resource;
    Attributes *scratch = &c->resource_attributes;
    Buf *bufs[MAX_BUFS + 1];
    scratch_bufs(c, bufs);
    for (int i = 0; bufs[i]; i++) bufs[i]->len = 0;
    scratch->count = scratch->values.count = c->rdepth1.count = c->rdepth2.count = 0;
    res->entries = 0;
    c->keys.count = 0;
    Py_ssize_t asked = PyTuple_GET_SIZE(c->resource_keys_asked);
    int found[MAX_RESOURCE_FIELDS] = {0}, unread = 0;
    Reader r = {bytes, bytes + size};
    Field f;
    while (r.p < r.end) {
        if (next_field(&r, &f)) return -1;
        if (f.number != 1) continue;
        Key key;
        Parsed value;
        if (f.wire != LEN || add_attribute(scratch, &c->keys, f.bytes, f.size, &key, &value)) return -1;
        unread |= value.unread;
        if (res->entries < c->most) {
            res->entries++;
            if (put_str(&res->keys, key.p, utf8_prefix(key.p, key.n, 1024)) ||
                put_str(&res->values, value.string, utf8_prefix(value.string, value.string_size, c->limit)))
                return -1;
        }
        Py_ssize_t i = position(c->resource_keys_asked, &key);
        if (i >= 0 && !found[i]) { /* the first: with a repeated key the resource is unread anyway */
            found[i] = 1;
            if (put(&res->field[i], value.text, utf8_prefix(value.text, value.text_size, 1024))) return -1;
        }
    }
    for (Py_ssize_t i = 0; i < asked; i++)
        if (put_str(&res->fields, (const uint8_t *)res->field[i].data, res->field[i].len)) return -1;
    res->unread = (uint8_t)(unread | keys_merge(&c->keys));
    return 0;
}

/* A row's resource columns: its resource's, or none (a request not read). Its attributes and texts only on a
 * scope's first row (`whole`), which the query always keeps: the reader gives what the query makes of them to
 * the scope's other rows, so neither this file nor the query's result holds a copy per span. Whether the engine
 * reads the resource as Python does is on every row (a span that falls back names its request). */
static int put_resource(Columns *c, const Resource *res, int whole) {
    whole = whole && res;
    Py_ssize_t fields = whole ? PyTuple_GET_SIZE(c->resource_keys_asked) : 0;
    c->resource_entries += whole ? res->entries : 0;
    c->field_entries += (size_t)fields;
    return put_u64(&c->resource_offsets, c->resource_entries) || put_u64(&c->field_offsets, c->field_entries) ||
           (whole && (put(&c->resource_keys, res->keys.data, res->keys.len) ||
                      put(&c->resource_values, res->values.data, res->values.len) ||
                      put(&c->resource_fields, res->fields.data, res->fields.len))) ||
           put_u8(&c->resource_unread, res ? res->unread : 0);
}

typedef struct {
    uint64_t request, resource_index, scope_index;
    const uint8_t *scope_name;
    size_t scope_name_size;
} Place;

/* A row's columns but the span's attributes (added before it) and `scope_unmarked` (after its scope). `strings`:
 * the span's string fields by field number (1-5). */
static int put_row(Columns *c, const Place *at, uint64_t span_index, const uint8_t *const strings[6],
                   const size_t sizes[6], uint64_t start, uint64_t end, int32_t status, uint8_t marked, uint8_t bad,
                   uint8_t unread) {
    Buf *by_number[6] = {NULL, &c->trace_id, &c->span_id, &c->trace_state, &c->parent_span_id, &c->name};
    for (int i = 1; i <= 5; i++)
        if (put_str(by_number[i], strings[i], sizes[i])) return -1;
    c->rows++;
    return put_u64(&c->attributes.offsets, c->attributes.count) || put(&c->start, &start, 8) ||
           put(&c->end, &end, 8) || put(&c->status, &status, 4) || put_u8(&c->marked, marked) ||
           put_u64(&c->request, at->request) || put_u64(&c->resource_index, at->resource_index) ||
           put_u64(&c->scope_index, at->scope_index) || put_u64(&c->span_index, span_index) ||
           put_str(&c->scope_name, at->scope_name, at->scope_name_size) || put_u8(&c->decode_bad, bad) ||
           put_u8(&c->unread, unread) || put_resource(c, bad ? NULL : &c->resource, span_index <= 1);
}

static int add_span(Columns *c, const Place *at, uint64_t span_index, const uint8_t *bytes, size_t size,
                    int *is_marked) {
    Reader r = {bytes, bytes + size};
    Field f;
    uint32_t seen = 0;
    const uint8_t *strings[6] = {0};
    size_t sizes[6] = {0};
    uint64_t start = 0, end = 0;
    int32_t status = 0;
    int unread = 0;
    *is_marked = 0;
    c->keys.count = 0;
    if (++c->span_serial == 0) { /* after 2^32 spans in one call: no known key seen yet in any span */
        memset(c->known_seen, 0, sizeof c->known_seen);
        c->span_serial = 1;
    }
    while (r.p < r.end) {
        if (next_field(&r, &f)) return -1;
        switch (f.number) {
        case 1: case 2: case 3: case 4: case 5:
            if (f.wire != LEN || seen_once(&seen, f.number)) return -1;
            strings[f.number] = f.bytes;
            sizes[f.number] = f.size;
            break;
        case 7: case 8:
            if (f.wire != I64 || seen_once(&seen, f.number)) return -1;
            if (f.number == 7) start = f.value; else end = f.value;
            break;
        case 9:
            if (f.wire != LEN || add_span_attribute(c, f.bytes, f.size, is_marked, &unread)) return -1;
            break;
        case 15: {
            Field code;
            int found;
            if (f.wire != LEN || seen_once(&seen, f.number) || (found = singular(f.bytes, f.size, 3, VARINT, &code)) < 0)
                return -1;
            if (found) status = (int32_t)(uint32_t)code.value;
            break;
        }
        default:
            break;
        }
    }
    unread |= keys_merge(&c->keys);
    return put_row(c, at, span_index, strings, sizes, start, end, status, (uint8_t)*is_marked, 0, (uint8_t)unread);
}

/* A span-less row: a scope without spans, as LEFT ARRAY JOIN gives it, or a request not read (`bad`). */
static int add_empty_row(Columns *c, const Place *at, int bad) {
    const uint8_t *strings[6] = {0};
    size_t sizes[6] = {0};
    return put_row(c, at, 0, strings, sizes, 0, 0, 0, 0, (uint8_t)bad, 0);
}

static int add_scope(Columns *c, Place *at, const uint8_t *bytes, size_t size) {
    Field scope, name;
    int found = singular(bytes, size, 1, LEN, &scope); /* first: the fields may come in any order */
    if (found < 0 || (found && (found = singular(scope.bytes, scope.size, 1, LEN, &name)) < 0)) return -1;
    at->scope_name = found ? name.bytes : NULL;
    at->scope_name_size = found ? name.size : 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(c->scope_prefixes); i++) {
        PyObject *prefix = PyTuple_GET_ITEM(c->scope_prefixes, i);
        size_t n = (size_t)PyBytes_GET_SIZE(prefix);
        if (n == 0 || (at->scope_name_size >= n && memcmp(at->scope_name, PyBytes_AS_STRING(prefix), n) == 0))
            c->found |= c->scope_masks[i]; /* as startsWith: every name starts with '' (a nameless scope's too) */
    }
    Reader r = {bytes, bytes + size};
    Field f;
    size_t first_row = c->rows;
    uint64_t spans = 0, unmarked = 0;
    while (r.p < r.end) {
        if (next_field(&r, &f)) return -1;
        if (f.number != 2) continue;
        int is_marked;
        if (f.wire != LEN || add_span(c, at, ++spans, f.bytes, f.size, &is_marked)) return -1;
        unmarked += !is_marked;
    }
    if (!spans && add_empty_row(c, at, 0)) return -1;
    for (size_t row = first_row; row < c->rows; row++)
        if (put_u64(&c->scope_unmarked, unmarked)) return -1;
    return 0;
}

static int add_resource_spans(Columns *c, Place *at, const uint8_t *bytes, size_t size) {
    Field resource;
    int found = singular(bytes, size, 1, LEN, &resource);
    if (found < 0 || add_resource(c, found ? resource.bytes : NULL, found ? resource.size : 0)) return -1;
    Reader r = {bytes, bytes + size};
    Field f;
    at->scope_index = 0;
    while (r.p < r.end) {
        if (next_field(&r, &f)) return -1;
        if (f.number != 2) continue;
        at->scope_index++;
        if (f.wire != LEN || add_scope(c, at, f.bytes, f.size)) return -1;
    }
    return 0;
}

static int add_request(Columns *c, uint64_t request, const uint8_t *bytes, size_t size) {
    Reader r = {bytes, bytes + size};
    Field f;
    Place at = {.request = request};
    while (r.p < r.end) {
        if (next_field(&r, &f)) return -1;
        if (f.number != 1) continue;
        at.resource_index++;
        if (f.wire != LEN || add_resource_spans(c, &at, f.bytes, f.size)) return -1;
    }
    return 0;
}

/* ---- the Native block ---- */

static int write_all(int fd, const void *data, size_t size) {
    const char *p = data;
    while (size) {
        ssize_t n = write(fd, p, size);
        if (n < 0) return -1;
        p += n;
        size -= (size_t)n;
    }
    return 0;
}

static int write_values(int fd, Values *v, int depth) {
    if (write_all(fd, v->kind.data, v->kind.len)) return -1;
    if (depth == 2) return 0;
    Buf *members[] = {&v->str, &v->boolean, &v->integer, &v->dbl, &v->bytes, &v->offsets};
    for (int i = 0; i < 6; i++)
        if (write_all(fd, members[i]->data, members[i]->len)) return -1;
    return write_values(fd, v->elements, depth + 1);
}

static int write_attributes(int fd, Attributes *a) {
    return write_all(fd, a->offsets.data, a->offsets.len) || write_all(fd, a->keys.data, a->keys.len) ||
           write_values(fd, &a->values, 0);
}

static int write_header(int fd, PyObject *column) {
    /* (name, type) as bytes: each a Native String */
    Buf head = {0};
    for (int i = 0; i < 2; i++) {
        PyObject *s = PyTuple_GET_ITEM(column, i);
        if (put_str(&head, (const uint8_t *)PyBytes_AS_STRING(s), (size_t)PyBytes_GET_SIZE(s))) {
            free(head.data);
            return -1;
        }
    }
    int failed = write_all(fd, head.data, head.len);
    free(head.data);
    return failed;
}

enum { SPAN_COLUMNS = 17 };

/* Rows a spans' block holds at most: ClickHouse processes a block at a time, and blocks of a few MiB cost it
 * less than larger ones; the buffers stay as small. */
enum { BLOCK_ROWS = 4096 };

static int write_count(int fd, uint64_t columns, uint64_t rows) {
    Buf head = {0};
    int failed = put_varint(&head, columns) || put_varint(&head, rows) || write_all(fd, head.data, head.len);
    free(head.data);
    return failed;
}

/* The spans' block: SPAN_COLUMNS in their order. */
static int write_spans(int fd, Columns *c, PyObject *columns) {
    if (write_count(fd, SPAN_COLUMNS, c->rows)) return -1;
    Buf *before_span[] = {&c->request, &c->resource_index, &c->scope_index, &c->span_index};
    for (int i = 0; i < 4; i++)
        if (write_header(fd, PyTuple_GET_ITEM(columns, i)) || write_all(fd, before_span[i]->data, before_span[i]->len))
            return -1;
    Buf *span_fields[] = {&c->trace_id, &c->span_id, &c->trace_state, &c->parent_span_id, &c->name, &c->start, &c->end};
    if (write_header(fd, PyTuple_GET_ITEM(columns, 4))) return -1;
    for (int i = 0; i < 7; i++)
        if (write_all(fd, span_fields[i]->data, span_fields[i]->len)) return -1;
    if (write_attributes(fd, &c->attributes) || write_all(fd, c->status.data, c->status.len)) return -1;
    Buf *after[] = {&c->scope_name, &c->marked, &c->scope_unmarked, &c->decode_bad};
    for (int i = 0; i < 4; i++)
        if (write_header(fd, PyTuple_GET_ITEM(columns, 5 + i)) || write_all(fd, after[i]->data, after[i]->len))
            return -1;
    /* attribute_counts, _texts and _kinds: one per attribute, so the attributes' offsets are theirs; the
     * resource's keys and values share theirs too */
    Buf *arrays[][2] = {{&c->attributes.offsets, &c->counts},       {NULL, &c->unread},
                        {&c->attributes.offsets, &c->texts},        {&c->resource_offsets, &c->resource_keys},
                        {&c->resource_offsets, &c->resource_values}, {&c->field_offsets, &c->resource_fields},
                        {NULL, &c->resource_unread},                {&c->attributes.offsets, &c->kinds}};
    for (int i = 0; i < 8; i++)
        if (write_header(fd, PyTuple_GET_ITEM(columns, 9 + i)) ||
            (arrays[i][0] && write_all(fd, arrays[i][0]->data, arrays[i][0]->len)) ||
            write_all(fd, arrays[i][1]->data, arrays[i][1]->len))
            return -1;
    return 0;
}

/* A file written over from its start (not truncated first: pages it has in the page cache are reused). */
static int open_over(const char *path) { return open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600); }

/* The file cut to what was written, and closed. */
static int finish_file(int fd, int failed) {
    off_t size = lseek(fd, 0, SEEK_CUR);
    failed = failed || size < 0 || ftruncate(fd, size) != 0;
    return close(fd) != 0 || failed;
}

/* ---- the module ---- */

#define MAX_SPARES 8
/* Calls' buffers kept for the next calls, one set per thread flattening at once (taken and given back under the
   GIL): fresh memory faults in page by page, at a cost on virtual machines. */
static Columns *spares[MAX_SPARES];
static int spare_count;

static int check_columns(PyObject *columns, Py_ssize_t count, const char *what) {
    if (PyTuple_GET_SIZE(columns) != count) {
        PyErr_Format(PyExc_ValueError, "%s: %zd (name, type) pairs expected", what, count);
        return -1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *column = PyTuple_GET_ITEM(columns, i);
        if (!PyTuple_Check(column) || PyTuple_GET_SIZE(column) != 2 || !PyBytes_Check(PyTuple_GET_ITEM(column, 0)) ||
            !PyBytes_Check(PyTuple_GET_ITEM(column, 1))) {
            PyErr_Format(PyExc_TypeError, "%s: (name, type) pairs of bytes expected", what);
            return -1;
        }
    }
    return 0;
}

static int check_names(PyObject *names, const char *what) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(names); i++)
        if (!PyBytes_Check(PyTuple_GET_ITEM(names, i))) {
            PyErr_Format(PyExc_TypeError, "%s: bytes expected", what);
            return -1;
        }
    return 0;
}

/* Masks (unsigned 64-bit ints), one per name, at most `most` names. */
static int read_masks(PyObject *masks, PyObject *names, uint64_t *out, Py_ssize_t most, const char *what) {
    if (PyTuple_GET_SIZE(masks) != PyTuple_GET_SIZE(names) || PyTuple_GET_SIZE(names) > most) {
        PyErr_Format(PyExc_ValueError, "%s: one mask per name, at most %zd", what, most);
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(masks); i++) {
        out[i] = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(masks, i));
        if (PyErr_Occurred()) return -1;
    }
    return 0;
}

static PyObject *flatten(PyObject *self, PyObject *args) {
    PyObject *bodies, *scopes, *scope_masks, *resource_keys, *known, *known_masks, *content_prefixes, *columns;
    const char *known_kinds;
    Py_ssize_t known_kinds_size;
    unsigned long long first;
    Py_ssize_t most, limit;
    const char *path;
    uint64_t masks_of_known[MAX_KNOWN], masks_of_scopes[MAX_NAMES];
    if (!PyArg_ParseTuple(args, "OKO!O!O!nnO!y#O!O!O!s", &bodies, &first, &PyTuple_Type, &scopes, &PyTuple_Type,
                          &scope_masks, &PyTuple_Type, &resource_keys, &most, &limit, &PyTuple_Type, &known,
                          &known_kinds, &known_kinds_size, &PyTuple_Type, &known_masks, &PyTuple_Type,
                          &content_prefixes, &PyTuple_Type, &columns, &path))
        return NULL;
    if (check_columns(columns, SPAN_COLUMNS, "columns") || check_names(scopes, "scopes") ||
        check_names(resource_keys, "resource_keys") || check_names(known, "known") ||
        check_names(content_prefixes, "content_prefixes") ||
        read_masks(scope_masks, scopes, masks_of_scopes, MAX_NAMES, "scope_masks") ||
        read_masks(known_masks, known, masks_of_known, MAX_KNOWN, "known_masks"))
        return NULL;
    if (known_kinds_size != PyTuple_GET_SIZE(known)) {
        PyErr_Format(PyExc_ValueError, "known_kinds: one byte per known key");
        return NULL;
    }
    if (PyTuple_GET_SIZE(resource_keys) > MAX_RESOURCE_FIELDS || most < 0 || limit < 0) {
        PyErr_Format(PyExc_ValueError, "resource_keys: at most %d; most, limit: not negative", MAX_RESOURCE_FIELDS);
        return NULL;
    }
    PyObject *seq = PySequence_Fast(bodies, "bodies: a sequence of buffers expected");
    if (!seq) return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    Py_buffer *views = PyMem_Calloc((size_t)count + 1, sizeof(Py_buffer));
    if (!views) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    Py_ssize_t taken = 0;
    for (; taken < count; taken++)
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, taken), &views[taken], PyBUF_SIMPLE)) break;
    Columns *c = spare_count ? spares[--spare_count] : NULL;
    if (!c && taken == count) {
        c = calloc(1, sizeof(Columns));
        if (!c) PyErr_NoMemory();
    }
    int failed = taken < count || !c, io_error = 0;
    size_t rows = 0;
    uint64_t found = 0;
    if (!failed) {
        Py_BEGIN_ALLOW_THREADS
        link_levels(c);
        reset(c);
        memcpy(c->known_masks, masks_of_known, sizeof masks_of_known);
        memcpy(c->scope_masks, masks_of_scopes, sizeof masks_of_scopes);
        c->scope_prefixes = scopes;
        index_known(c, known, known_kinds, content_prefixes);
        c->found = 0;
        c->resource_keys_asked = resource_keys;
        c->most = (size_t)most;
        c->limit = (size_t)limit;
        int spans_fd = open_over(path);
        if (spans_fd < 0) io_error = 1;
        Mark at;
        for (Py_ssize_t i = 0; i < count && !failed && !io_error; i++) {
            mark(c, &at);
            if (add_request(c, first + (uint64_t)i, views[i].buf, (size_t)views[i].len)) {
                rewind_to(c, &at);
                Place place = {.request = first + (uint64_t)i};
                if (add_empty_row(c, &place, 1) || put_u64(&c->scope_unmarked, 0)) failed = 1;
            }
            if (c->rows >= BLOCK_ROWS || (i == count - 1 && (c->rows || !rows))) {
                /* the last block even if empty: the file names its columns for ClickHouse */
                rows += c->rows;
                io_error = write_spans(spans_fd, c, columns);
                reset(c);
            }
        }
        if (spans_fd >= 0) io_error = finish_file(spans_fd, io_error) || io_error;
        found = c->found;
        Py_END_ALLOW_THREADS
    }
    for (Py_ssize_t i = 0; i < taken; i++) PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    Py_DECREF(seq);
    if (c) {
        if (spare_count == MAX_SPARES) {
            /* more threads than kept sets: this one is not kept */
            Buf *bufs[MAX_BUFS + 1];
            all_bufs(c, bufs);
            for (int i = 0; bufs[i]; i++) free(bufs[i]->data);
            scratch_bufs(c, bufs);
            for (int i = 0; bufs[i]; i++) free(bufs[i]->data);
            free(c->keys.keys);
            free(c);
        } else {
            spares[spare_count++] = c;
        }
    }
    if (taken < count) return NULL;
    if (failed) return PyErr_NoMemory();
    if (io_error) return PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
    return Py_BuildValue("nK", (Py_ssize_t)rows, (unsigned long long)found);
}

static PyMethodDef methods[] = {
    {"flatten", flatten, METH_VARARGS,
     "flatten(bodies, first, scopes, scope_masks, resource_keys, most, limit, known, known_kinds, known_masks,\n"
     "        content_prefixes, columns, path) -> (rows, found)\n\n"
     "Writes the spans of `bodies` (OTLP ExportTraceServiceRequest messages, the first numbered `first`) to\n"
     "`path` as ClickHouse Native blocks, one row per span, with its resource's first `most` attributes (values\n"
     "cut at `limit` characters) and the texts of its `resource_keys`; `columns`: (name, type) pairs, as bytes.\n"
     "An attribute's kind: known_kinds[i] for the key known[i], else 3 where the key starts with one of\n"
     "`content_prefixes`, else 2. `found`: the OR of the `known_masks` of the known keys among spans' attribute\n"
     "keys (a span with one whose mask is not 0 is `marked`) and of the `scope_masks` of the `scopes` prefixes\n"
     "scopes' names start with."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_flatten", .m_size = -1, .m_methods = methods};

PyMODINIT_FUNC PyInit__flatten(void) { return PyModule_Create(&module); }
