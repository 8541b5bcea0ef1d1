/* Rows written as a ClickHouse `Native` file, for an embedded store's insert (native.py).
 *
 * An insert read from Arrow costs the engine ~1.5 µs a row more than the same rows read from Native: Arrow's
 * columns are converted one value at a time (every LowCardinality value hashed into a new dictionary, every
 * decimal narrowed). native.py lays the columns out as Native does, from Arrow's buffers and dictionaries Arrow
 * computes; what it cannot hand over as a buffer is a String column (each value's length as a varint, then its
 * bytes), which this module writes from the Arrow array's offsets and data, with the rest, in one pass.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WIRE_READER static inline /* only the buffer is used here, not the wire readers */
#include "engine/_wire.h"

#define OUT_SIZE (1 << 20)

/* The file being written, through a buffer of OUT_SIZE bytes. */
typedef struct {
    int fd;
    Buf buf;
    int failed;    /* an I/O error (errno says which) */
    int no_memory; /* the buffer could not be allocated */
} Out;

static void write_out(Out *o, const char *p, size_t size) {
    while (size && !o->failed) {
        ssize_t n = write(o->fd, p, size);
        if (n < 0) {
            o->failed = 1;
            return;
        }
        p += n;
        size -= (size_t)n;
    }
}

static void flush_out(Out *o) {
    write_out(o, o->buf.data, o->buf.len);
    o->buf.len = 0;
}

static void put_bytes(Out *o, const void *src, size_t n) {
    if (o->buf.len + n > OUT_SIZE) flush_out(o);
    if (n > OUT_SIZE) { /* a large piece goes straight to the file */
        write_out(o, src, n);
        return;
    }
    if (put(&o->buf, src, n)) o->no_memory = 1;
}

static void put_length(Out *o, uint64_t n) {
    if (o->buf.len + 10 > OUT_SIZE) flush_out(o);
    if (put_varint(&o->buf, n)) o->no_memory = 1;
}

/* A part of the file: bytes written as they are, or the values `first` to `first + count` of an Arrow string
 * array (offsets of `width` bytes, data) written as a Native String column. */
typedef struct {
    Py_buffer raw, offsets, data;
    int strings;
    Py_ssize_t first, count;
    int width;
} Part;

static int read_part(PyObject *item, Part *part) {
    memset(part, 0, sizeof *part);
    if (!PyTuple_Check(item)) {
        if (PyObject_GetBuffer(item, &part->raw, PyBUF_SIMPLE)) return -1;
        return 0;
    }
    PyObject *offsets, *data;
    if (!PyArg_ParseTuple(item, "OOnni", &offsets, &data, &part->first, &part->count, &part->width)) return -1;
    part->strings = 1;
    if (part->width != 4 && part->width != 8) {
        PyErr_SetString(PyExc_ValueError, "string offsets are 4 or 8 bytes wide");
        return -1;
    }
    if (PyObject_GetBuffer(offsets, &part->offsets, PyBUF_SIMPLE)) return -1;
    if (PyObject_GetBuffer(data, &part->data, PyBUF_SIMPLE)) {
        PyBuffer_Release(&part->offsets);
        return -1;
    }
    if (part->first < 0 || part->count < 0 ||
        (part->first + part->count + 1) * part->width > part->offsets.len) {
        PyErr_SetString(PyExc_ValueError, "string values past their offsets buffer");
        PyBuffer_Release(&part->offsets);
        PyBuffer_Release(&part->data);
        return -1;
    }
    return 0;
}

static void release_part(Part *part) {
    if (part->strings) {
        PyBuffer_Release(&part->offsets);
        PyBuffer_Release(&part->data);
    } else {
        PyBuffer_Release(&part->raw);
    }
}

static inline int64_t offset_at(const Part *part, Py_ssize_t i) {
    if (part->width == 4) {
        int32_t v;
        memcpy(&v, (const char *)part->offsets.buf + i * 4, 4);
        return v;
    }
    int64_t v;
    memcpy(&v, (const char *)part->offsets.buf + i * 8, 8);
    return v;
}

/* 0, or -1 when an offset points outside the data (the array is not what it says). */
static int write_strings(Out *o, const Part *part) {
    const char *data = part->data.buf;
    int64_t size = (int64_t)part->data.len;
    int64_t start = offset_at(part, part->first);
    for (Py_ssize_t i = 0; i < part->count && !o->failed && !o->no_memory; i++) {
        int64_t end = offset_at(part, part->first + i + 1);
        if (start < 0 || end < start || end > size) return -1;
        put_length(o, (uint64_t)(end - start));
        put_bytes(o, data + start, (size_t)(end - start));
        start = end;
    }
    return 0;
}

static PyObject *write_file(PyObject *self, PyObject *args) {
    const char *path;
    PyObject *items;
    if (!PyArg_ParseTuple(args, "sO", &path, &items)) return NULL;
    PyObject *seq = PySequence_Fast(items, "parts must be a sequence");
    if (!seq) return NULL;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    Part *parts = PyMem_Calloc(count ? (size_t)count : 1, sizeof(Part));
    if (!parts) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    Py_ssize_t taken = 0;
    for (; taken < count; taken++)
        if (read_part(PySequence_Fast_GET_ITEM(seq, taken), &parts[taken])) break;
    int bad = 0, no_memory = 0, saved_errno = 0;
    off_t written = 0;
    if (taken == count) {
        Py_BEGIN_ALLOW_THREADS
        /* Written over the file in place, then cut to size: its pages in the page cache are reused. */
        Out out = {.fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600)};
        out.no_memory = buf_reserve(&out.buf, OUT_SIZE) != 0;
        if (out.fd < 0) out.failed = 1;
        for (Py_ssize_t i = 0; i < count && !out.failed && !out.no_memory && !bad; i++) {
            if (parts[i].strings)
                bad = write_strings(&out, &parts[i]);
            else
                put_bytes(&out, parts[i].raw.buf, (size_t)parts[i].raw.len);
        }
        no_memory = out.no_memory;
        if (!no_memory) flush_out(&out);
        if (out.fd >= 0) {
            written = lseek(out.fd, 0, SEEK_CUR);
            if (written < 0 || ftruncate(out.fd, written) != 0) out.failed = 1;
            if (close(out.fd) != 0) out.failed = 1;
        }
        if (out.failed) saved_errno = errno ? errno : EIO;
        if (out.failed && !no_memory && !bad) bad = -2;
        free(out.buf.data);
        Py_END_ALLOW_THREADS
        if (saved_errno) errno = saved_errno;
    }
    for (Py_ssize_t i = 0; i < taken; i++) release_part(&parts[i]);
    PyMem_Free(parts);
    Py_DECREF(seq);
    if (taken < count) return NULL;
    if (no_memory) return PyErr_NoMemory();
    if (bad == -2) return PyErr_SetFromErrnoWithFilename(PyExc_OSError, path);
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "a string array's offsets point outside its data");
        return NULL;
    }
    return PyLong_FromLongLong((long long)written);
}

static PyMethodDef methods[] = {
    {"write_file", write_file, METH_VARARGS,
     "write_file(path, parts) -> bytes written\n\n"
     "Writes `parts` one after another over the file at `path` (created if need be, cut to what was written):\n"
     "each a bytes-like object written as it is, or (offsets, data, first, count, width): the values `first`\n"
     "to `first + count` of an Arrow string array (offsets `width` bytes wide) as a Native String column."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, .m_name = "_native", .m_size = -1, .m_methods = methods};

PyMODINIT_FUNC PyInit__native(void) { return PyModule_Create(&module); }
