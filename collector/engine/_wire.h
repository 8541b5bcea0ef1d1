/* What the native OTLP readers share: a growing byte buffer, and the protobuf wire format read field by field.
 * Included by engine/_flatten.c and processors/_scan.c (each its own extension module). */
#ifndef SPANMETER_WIRE_H
#define SPANMETER_WIRE_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* How the wire readers are declared: a module reading every field of every span may force them inline. */
#ifndef WIRE_READER
#define WIRE_READER static
#endif

typedef struct {
    char *data;
    size_t len, cap;
} Buf;

static int buf_reserve(Buf *b, size_t more) {
    if (b->len + more <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more) cap *= 2;
    char *data = realloc(b->data, cap);
    if (!data) return -1;
    b->data = data;
    b->cap = cap;
    return 0;
}

static int put(Buf *b, const void *src, size_t n) {
    if (n == 0) return 0; /* src may be NULL then (a field not present), which memcpy may not be given */
    if (buf_reserve(b, n)) return -1;
    memcpy(b->data + b->len, src, n);
    b->len += n;
    return 0;
}

static int put_varint(Buf *b, uint64_t v) {
    uint8_t tmp[10];
    int n = 0;
    do {
        tmp[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    return put(b, tmp, n);
}

/* ---- the wire format ---- */

typedef struct {
    const uint8_t *p, *end;
} Reader;

WIRE_READER int read_varint(Reader *r, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64 && r->p < r->end; shift += 7) {
        uint8_t byte = *r->p++;
        v |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* The next field: its number, wire type and, for LEN fields, its bytes; for VARINT and I64, its value. */
typedef struct {
    uint32_t number;
    int wire;
    uint64_t value;
    const uint8_t *bytes;
    size_t size;
} Field;

enum { VARINT = 0, I64 = 1, LEN = 2, I32 = 5 };

WIRE_READER int next_field(Reader *r, Field *f) {
    uint64_t tag;
    if (read_varint(r, &tag)) return -1;
    f->number = (uint32_t)(tag >> 3);
    f->wire = (int)(tag & 7);
    f->bytes = NULL;
    f->size = 0;
    if (f->number == 0 || (tag >> 3) > 0x1fffffff) return -1;
    switch (f->wire) {
    case VARINT:
        return read_varint(r, &f->value);
    case I64:
        if (r->end - r->p < 8) return -1;
        memcpy(&f->value, r->p, 8);
        r->p += 8;
        return 0;
    case LEN: {
        uint64_t n;
        if (read_varint(r, &n) || n > (uint64_t)(r->end - r->p)) return -1;
        f->bytes = r->p;
        f->size = (size_t)n;
        r->p += n;
        return 0;
    }
    case I32:
        if (r->end - r->p < 4) return -1;
        r->p += 4;
        return 0;
    default:
        return -1; /* groups: not in OTLP */
    }
}

#endif
