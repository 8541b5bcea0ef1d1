/* A batch's rows admitted against the remembered calls, in order, one hash table lookup a key (dedupe.py).
 *
 * dedupe._admit finds the same answers with numpy: it sorts the remembered keys, the rows' keys and their lookups
 * together to find the keys met more than once, then resolves rows in order only where a lookup finds an earlier
 * row. That sort, and the passes over its runs, took ~60 % of the duplicates' CPU a batch. Here every row is taken
 * in order as `filter` takes them: a lookup finds a key in one open-addressing table holding both the remembered
 * keys and those the batch's kept rows wrote so far.
 *
 * The table is the caller's (a uint64 array it keeps between batches: fresh memory is dear on the VMs this runs
 * on), two words a slot: the key, then its places (remembered index + 1 in the high half, index among the batch's
 * written keys + 1 in the low half; 0: an empty slot). Keys are 64-bit hashes already mixed: their low bits index
 * the table.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum { KINDS = 4 }; /* span, response, as span, as parent: dedupe._row_keys' columns */

typedef struct {
    uint64_t *slots;
    uint64_t mask; /* slots - 1 */
} Table;

/* The slot holding `key`, or the empty one where it would go. */
static uint64_t *find(const Table *t, uint64_t key) {
    for (uint64_t i = key & t->mask;; i = (i + 1) & t->mask) {
        uint64_t *slot = t->slots + 2 * i;
        if (slot[1] == 0 || slot[0] == key) return slot;
    }
}

static int overlaps(int64_t start, int64_t end, int64_t other_start, int64_t other_end) {
    return start <= other_end && other_start <= end;
}

enum { SEEN, SEEN_STARTS, SEEN_ENDS, KEYS, HOLDS, LOOKUPS, LOOKS, STARTS, ENDS, KEPT, OUT_KEYS, OUT_STARTS,
       OUT_ENDS, REPLACED, TABLE, BUFFERS };

/* A buffer's length must be `count` elements of `size` bytes. */
static int sized(const Py_buffer *b, Py_ssize_t size, Py_ssize_t count, const char *name) {
    if (b->len != size * count) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes, %zd expected", name, b->len, size * count);
        return -1;
    }
    return 0;
}

/* Rows in order: a row is kept unless a lookup it makes finds a key whose span overlaps its own (a remembered
 * key's span when it is remembered, else the span of the last kept row of the batch that wrote it); a kept row
 * writes the keys it holds. Returns how many distinct keys the kept rows wrote, in the order first written, each
 * with the last writer's span; `replaced`: the remembered keys among them. */
static Py_ssize_t admit_rows(Py_buffer *b, Table *t, Py_ssize_t remembered, Py_ssize_t rows) {
    const uint64_t *seen = b[SEEN].buf, *keys = b[KEYS].buf, *lookups = b[LOOKUPS].buf;
    const int64_t *seen_starts = b[SEEN_STARTS].buf, *seen_ends = b[SEEN_ENDS].buf;
    const int64_t *starts = b[STARTS].buf, *ends = b[ENDS].buf;
    const uint8_t *holds = b[HOLDS].buf, *looks = b[LOOKS].buf;
    uint8_t *kept = b[KEPT].buf, *replaced = b[REPLACED].buf;
    uint64_t *out_keys = b[OUT_KEYS].buf;
    int64_t *out_starts = b[OUT_STARTS].buf, *out_ends = b[OUT_ENDS].buf;
    Py_ssize_t written = 0;
    for (Py_ssize_t i = 0; i < remembered; i++) { /* remembered keys are distinct */
        uint64_t *slot = find(t, seen[i]);
        slot[0] = seen[i];
        slot[1] = (uint64_t)(i + 1) << 32;
    }
    for (Py_ssize_t row = 0; row < rows; row++) {
        int duplicate = 0;
        for (int kind = 0; kind < KINDS && !duplicate; kind++) {
            Py_ssize_t at = row * KINDS + kind;
            if (!looks[at]) continue;
            const uint64_t *slot = find(t, lookups[at]);
            uint64_t in_seen = slot[1] >> 32, in_batch = slot[1] & 0xffffffffu;
            if (in_seen)
                duplicate = overlaps(starts[row], ends[row], seen_starts[in_seen - 1], seen_ends[in_seen - 1]);
            else if (in_batch)
                duplicate = overlaps(starts[row], ends[row], out_starts[in_batch - 1], out_ends[in_batch - 1]);
        }
        kept[row] = !duplicate;
        if (duplicate) continue;
        for (int kind = 0; kind < KINDS; kind++) {
            Py_ssize_t at = row * KINDS + kind;
            if (!holds[at]) continue;
            uint64_t *slot = find(t, keys[at]);
            uint64_t in_seen = slot[1] >> 32, in_batch = slot[1] & 0xffffffffu;
            if (!in_batch) {
                in_batch = (uint64_t)++written;
                out_keys[in_batch - 1] = keys[at];
                slot[0] = keys[at];
                slot[1] |= in_batch;
                if (in_seen) replaced[in_seen - 1] = 1;
            }
            out_starts[in_batch - 1] = starts[row];
            out_ends[in_batch - 1] = ends[row];
        }
    }
    return written;
}

static PyObject *admit(PyObject *self, PyObject *args) {
    Py_buffer b[BUFFERS];
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*y*y*w*w*w*w*w*w*", &b[SEEN], &b[SEEN_STARTS], &b[SEEN_ENDS],
                          &b[KEYS], &b[HOLDS], &b[LOOKUPS], &b[LOOKS], &b[STARTS], &b[ENDS], &b[KEPT], &b[OUT_KEYS],
                          &b[OUT_STARTS], &b[OUT_ENDS], &b[REPLACED], &b[TABLE]))
        return NULL;
    Py_ssize_t remembered = b[SEEN].len / 8, rows = b[STARTS].len / 8, places = rows * KINDS;
    Py_ssize_t slots = b[TABLE].len / 16;
    Py_ssize_t written = -1;
    if (!sized(&b[SEEN_STARTS], 8, remembered, "seen_starts") && !sized(&b[SEEN_ENDS], 8, remembered, "seen_ends") &&
        !sized(&b[KEYS], 8, places, "keys") && !sized(&b[HOLDS], 1, places, "holds") &&
        !sized(&b[LOOKUPS], 8, places, "lookups") && !sized(&b[LOOKS], 1, places, "looks") &&
        !sized(&b[ENDS], 8, rows, "ends") && !sized(&b[KEPT], 1, rows, "kept") &&
        !sized(&b[OUT_KEYS], 8, places, "out_keys") && !sized(&b[OUT_STARTS], 8, places, "out_starts") &&
        !sized(&b[OUT_ENDS], 8, places, "out_ends") && !sized(&b[REPLACED], 1, remembered, "replaced")) {
        if (slots < 2 * (remembered + places) || (slots & (slots - 1)) || remembered >= INT32_MAX ||
            places >= INT32_MAX) {
            PyErr_SetString(PyExc_ValueError, "table: a power of two of slots, at least twice the keys");
        } else {
            Table t = {b[TABLE].buf, (uint64_t)slots - 1};
            Py_BEGIN_ALLOW_THREADS
            memset(t.slots, 0, (size_t)slots * 16);
            written = admit_rows(b, &t, remembered, rows);
            Py_END_ALLOW_THREADS
        }
    }
    for (int i = 0; i < BUFFERS; i++) PyBuffer_Release(&b[i]);
    return written < 0 ? NULL : PyLong_FromSsize_t(written);
}

static PyMethodDef methods[] = {
    {"admit", admit, METH_VARARGS,
     "admit(seen, seen_starts, seen_ends, keys, holds, lookups, looks, starts, ends, kept, out_keys, out_starts,\n"
     "      out_ends, replaced, table) -> written\n\n"
     "dedupe._admit's answer, in the buffers given: rows (`starts`, `ends`, and four keys a row, held where `holds`\n"
     "and looked up where `looks`) kept or not against the `seen` keys and each other; the keys the kept rows\n"
     "wrote (the first `written` of `out_keys`), each with its last writer's span; the remembered keys they\n"
     "replace. `table`: scratch, 16 bytes a slot, a power of two of slots at least twice the keys."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, .m_name = "_dedupe", .m_size = 0, .m_methods = methods};

PyMODINIT_FUNC PyInit__dedupe(void) { return PyModule_Create(&module); }
