/* flamed.collapse._speedups: the hot loops of the perf and DTrace collapsers in C.
 *
 * Optional: the pure-Python collapsers in perf.py and dtrace.py are complete and are
 * the reference. This module folds only what it can fold exactly as they do, and hands
 * everything else back to them:
 *
 * - PerfFolder.fold(data) walks `perf script` output record by record (records are
 *   separated by empty lines). A record of the common shape (an event line ending in
 *   `PERIOD EVENT:`, then indented frame lines) is folded here, through two bounded
 *   caches: record -> stack and frame line -> frames. A frame line with anything
 *   unusual (non-ASCII bytes, argument lists, Rust escapes, inlined frames, parentheses
 *   in the module) is folded by the Python reference (`fold_line`), once, and cached;
 *   a record of another shape goes, in its place in the input, to `fold_other`.
 * - RunFolder.fold(text, carry) counts the runs of DTrace output (text between empty
 *   lines) through a bounded cache of run -> (stack, count). A new run of the common
 *   shape (frame lines, a count line) is folded here, each frame line once through
 *   Python (`fold_line`) and then from a cache; any other run, or one that continues a
 *   stack, goes to the Python reference (`fold_run`), which says what to cache, or that
 *   the next run continues the stack.
 *
 * - folded_bytes(counts) writes folded text, sorted, for Folded.to_bytes (ASCII stacks and
 *   int counts; None for Python to write the others).
 * - fold_folded(text, counts, in_order, other) adds folded lines (`stack count`) whose
 *   count is plain digits; other lines go to the Python reference (`other`).
 * - perf_cut_runs(text, ...) cuts the daemon's perf script stream into runs of records
 *   of one bucket by each record's time, as flamed.collector.records.cut_runs does.
 *
 * Keys are hashed and compared as bytes, so no Python object is made for a record,
 * run or line that is already known. Each distinct stack text has one str (`names`), and
 * both folders add up a fold's counts in C before they go to the counts dict (Tally).
 * The caches' keys live in blocks freed together; large blocks and slot arrays are
 * offered to the kernel for transparent huge pages.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#endif

/* Caches are emptied when they reach this many entries or this many bytes of keys. */
#define CACHE_ENTRIES 200000
#define CACHE_BYTES ((size_t)64 << 20)
/* Periods with more digits than this go to Python (its ints do not overflow). */
#define MAX_PERIOD_DIGITS 18
/* The record cache pays where records repeat, as most do in continuous profiling. Where
 * few do (a short recording of deep, varied stacks, such as example-perf-stacks), storing
 * each new record cost more than folding it afresh (3.9 of 9 ms). So the perf folder
 * counts, in each window of RECORD_WINDOW records looked up, those found: with fewer than
 * 1 in RECORD_MIN_HITS, it folds the next RECORD_PAUSE records afresh, neither looking
 * them up nor storing them (what the cache holds is kept), then tries it again. */
#define RECORD_WINDOW 256
#define RECORD_MIN_HITS 4
#define RECORD_PAUSE 1024

/* -- hashing ------------------------------------------------------------------------ */

static inline uint64_t
load64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t
mix(uint64_t h, uint64_t v)
{
    h ^= v * 0x9E3779B97F4A7C15ULL;
    h = (h << 31) | (h >> 33);
    return h * 0xBF58476D1CE4E5B9ULL;
}

static uint64_t
hash_bytes(const char *data, size_t len, uint64_t seed)
{
    const unsigned char *p = (const unsigned char *)data;
    uint64_t h = seed ^ (len * 0x94D049BB133111EBULL);
    while (len >= 8) {
        h = mix(h, load64(p));
        p += 8;
        len -= 8;
    }
    uint64_t tail = 0;
    memcpy(&tail, p, len);
    h = mix(h, tail ^ ((uint64_t)len << 56));
    h ^= h >> 29;
    return h * 0x94D049BB133111EBULL ^ (h >> 32);
}

/* -- memory for large caches -------------------------------------------------------- */

/* Allocations of HUGE_BYTES and more (a large cache's slot array, its later key blocks) are
 * mapped and offered to the kernel for transparent huge pages: in 4 KiB pages the caches
 * of a 31 MB recording took ~16k page faults, which cost about a fifth of the fold. Under
 * AddressSanitizer every allocation is the allocator's, so that it sees each one's bounds. */
#define HUGE_BYTES ((size_t)2 << 20)
#if defined(MAP_ANONYMOUS) && !defined(__SANITIZE_ADDRESS__)
#define MAP_LARGE 1
#else
#define MAP_LARGE 0
#endif

/* `size` bytes, zeroed if `zero` (mapped memory always is); NULL with MemoryError set. */
static void *
large_alloc(size_t size, int zero)
{
#if MAP_LARGE
    if (size >= HUGE_BYTES) {
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            PyErr_NoMemory();
            return NULL;
        }
#ifdef MADV_HUGEPAGE
        (void)madvise(p, size, MADV_HUGEPAGE); /* a hint: without it, 4 KiB pages */
#endif
        return p;
    }
#endif
    void *p = zero ? PyMem_Calloc(1, size) : PyMem_Malloc(size);
    if (p == NULL)
        PyErr_NoMemory();
    return p;
}

static void
large_free(void *p, size_t size)
{
#if MAP_LARGE
    if (size >= HUGE_BYTES) {
        munmap(p, size);
        return;
    }
#endif
    (void)size;
    PyMem_Free(p);
}

/* Keys are stored one after another in blocks, freed together when their table empties
 * (keys are never freed one by one). Blocks double from BLOCK_FIRST to BLOCK_MAX bytes;
 * under AddressSanitizer each key has a block of its own. */
#ifdef __SANITIZE_ADDRESS__
#define BLOCK_FIRST 0
#define BLOCK_MAX 0
#else
#define BLOCK_FIRST ((size_t)64 << 10)
#define BLOCK_MAX ((size_t)4 << 20)
#endif

typedef struct Block {
    struct Block *next; /* the block filled before this one */
    size_t size;        /* of the whole block, this header included */
    size_t used;        /* bytes used, this header included */
} Block;

/* -- a bounded hash table of byte keys ---------------------------------------------- */

typedef struct {
    uint64_t hash;
    char *key;          /* in the table's blocks; NULL: empty slot. For lines, the frames
                           follow the key. */
    size_t klen;
    size_t vlen;        /* lines: length of the frames text after the key */
    PyObject *first;    /* records: the stack (NULL: another event); runs, names: the stack */
    PyObject *second;   /* runs: the count */
} Entry;

typedef struct {
    Entry *slots;
    size_t mask;        /* capacity - 1; capacity is a power of two */
    size_t used;
    size_t bytes;
    Block *blocks;      /* where the keys are: the last block filled first */
} Table;

static int
table_init(Table *t)
{
    t->slots = large_alloc(1024 * sizeof(Entry), 1);
    if (t->slots == NULL)
        return -1;
    t->mask = 1023;
    t->used = 0;
    t->bytes = 0;
    t->blocks = NULL;
    return 0;
}

/* Room for `n` bytes of a key in the table's blocks; NULL with MemoryError set. */
static char *
table_store(Table *t, size_t n)
{
    Block *last = t->blocks;
    if (last == NULL || last->size - last->used < n) {
        size_t size = last == NULL ? BLOCK_FIRST : last->size * 2;
        if (size > BLOCK_MAX)
            size = BLOCK_MAX;
        if (size < sizeof(Block) + n)
            size = sizeof(Block) + n;
        Block *block = large_alloc(size, 0);
        if (block == NULL)
            return NULL;
        block->next = last;
        block->size = size;
        block->used = sizeof(Block);
        t->blocks = last = block;
    }
    char *room = (char *)last + last->used;
    last->used += n;
    return room;
}

static void
table_clear(Table *t)
{
    if (t->slots == NULL)
        return;
    for (size_t i = 0; i <= t->mask; i++) {
        Entry *e = &t->slots[i];
        if (e->key != NULL) {
            Py_CLEAR(e->first);
            Py_CLEAR(e->second);
            e->key = NULL;
        }
    }
    while (t->blocks != NULL) {
        Block *block = t->blocks;
        t->blocks = block->next;
        large_free(block, block->size);
    }
    t->used = 0;
    t->bytes = 0;
}

static void
table_free(Table *t)
{
    table_clear(t);
    if (t->slots != NULL)
        large_free(t->slots, (t->mask + 1) * sizeof(Entry));
    t->slots = NULL;
}

/* The slot of a key given in two parts, `a` then `b`, compared as if joined (a record's
 * event line fields and its frame lines, read where they lie): its entry, else the empty
 * slot where it would go. */
static Entry *
table_find_parts(Table *t, const char *a, size_t alen, const char *b, size_t blen,
                 uint64_t hash)
{
    size_t klen = alen + blen;
    size_t i = (size_t)hash & t->mask;
    for (;;) {
        Entry *e = &t->slots[i];
        if (e->key == NULL)
            return e;
        if (e->hash == hash && e->klen == klen && memcmp(e->key, a, alen) == 0 &&
            memcmp(e->key + alen, b, blen) == 0)
            return e;
        i = (i + 1) & t->mask;
    }
}

static Entry *
table_find(Table *t, const char *key, size_t klen, uint64_t hash)
{
    return table_find_parts(t, key, klen, "", 0, hash);
}

static int
table_grow(Table *t)
{
    size_t capacity = (t->mask + 1) * 2;
    Entry *slots = large_alloc(capacity * sizeof(Entry), 1);
    if (slots == NULL)
        return -1;
    for (size_t i = 0; i <= t->mask; i++) {
        Entry *old = &t->slots[i];
        if (old->key == NULL)
            continue;
        size_t j = (size_t)old->hash & (capacity - 1);
        while (slots[j].key != NULL)
            j = (j + 1) & (capacity - 1);
        slots[j] = *old;
    }
    large_free(t->slots, (t->mask + 1) * sizeof(Entry));
    t->slots = slots;
    t->mask = capacity - 1;
    return 0;
}

/* A new entry for a key (in two parts, as table_find_parts takes it) that was not found:
 * the table is emptied first when it is at its bounds. `extra` bytes are reserved after
 * the key. Returns NULL on error. */
static Entry *
table_add_parts(Table *t, const char *a, size_t alen, const char *b, size_t blen,
                uint64_t hash, size_t extra)
{
    size_t klen = alen + blen;
    if (t->used >= CACHE_ENTRIES || t->bytes + klen + extra > CACHE_BYTES)
        table_clear(t);
    if ((t->used + 1) * 4 > (t->mask + 1) * 3 && table_grow(t) < 0)
        return NULL;
    Entry *e = table_find_parts(t, a, alen, b, blen, hash);
    char *copy = table_store(t, klen + extra + 1);
    if (copy == NULL)
        return NULL;
    memcpy(copy, a, alen);
    memcpy(copy + alen, b, blen);
    e->hash = hash;
    e->key = copy;
    e->klen = klen;
    e->vlen = 0;
    e->first = NULL;
    e->second = NULL;
    t->used++;
    t->bytes += klen + extra;
    return e;
}

static Entry *
table_add(Table *t, const char *key, size_t klen, uint64_t hash, size_t extra)
{
    return table_add_parts(t, key, klen, "", 0, hash, extra);
}

/* The str of a stack's text (UTF-8, surrogateescape), one object for each distinct text
 * while `names` holds it: records and runs that fold alike share it, so the counts dict
 * finds it by identity instead of comparing its text, and it is decoded once. New
 * reference; NULL on error. */
static PyObject *
stack_name(Table *names, const char *text, size_t len)
{
    uint64_t hash = hash_bytes(text, len, 0x737461636b);
    Entry *e = table_find(names, text, len, hash);
    if (e->key != NULL)
        return Py_NewRef(e->first);
    PyObject *name = PyUnicode_DecodeUTF8(text, len, "surrogateescape");
    if (name == NULL)
        return NULL;
    e = table_add(names, text, len, hash, 0);
    if (e == NULL) {
        Py_DECREF(name);
        return NULL;
    }
    e->first = Py_NewRef(name);
    return name;
}

/* -- a growable byte buffer --------------------------------------------------------- */

typedef struct {
    char *data;
    size_t len;
    size_t cap;
} Buffer;

/* Room for `more` bytes; allocated even for none, so data is never NULL after it. */
static int
buffer_reserve(Buffer *b, size_t more)
{
    if (b->len + more <= b->cap && b->data != NULL)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more)
        cap *= 2;
    char *data = PyMem_Realloc(b->data, cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static int
buffer_add(Buffer *b, const char *data, size_t len)
{
    if (len == 0) /* memcpy to a buffer not yet allocated (NULL) is undefined, even of 0 */
        return 0;
    if (buffer_reserve(b, len) < 0)
        return -1;
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

static void
buffer_free(Buffer *b)
{
    PyMem_Free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* -- each frame line's frames, leaf first, joined root first ------------------------ */

typedef struct {
    Buffer parts;   /* the frames of each line, one after another */
    size_t *starts; /* where each line's start */
    size_t *lens;   /* and how long they are */
    size_t count, cap;
} Groups;

static int
groups_add(Groups *g, const char *frames, size_t len)
{
    if (g->count == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 64;
        size_t *starts = PyMem_Realloc(g->starts, cap * sizeof *starts);
        if (starts != NULL)
            g->starts = starts;
        size_t *lens = starts ? PyMem_Realloc(g->lens, cap * sizeof *lens) : NULL;
        if (lens == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        g->lens = lens;
        g->cap = cap;
    }
    g->starts[g->count] = g->parts.len;
    g->lens[g->count] = len;
    g->count++;
    return buffer_add(&g->parts, frames, len);
}

/* Append the lines' frames to out, last line first, the empty ones left out, each after
 * a ';' when out already holds something. */
static int
groups_join_reversed(const Groups *g, Buffer *out)
{
    for (size_t i = g->count; i > 0; i--) {
        size_t len = g->lens[i - 1];
        if (!len)
            continue;
        if ((out->len && buffer_add(out, ";", 1) < 0) ||
            buffer_add(out, g->parts.data + g->starts[i - 1], len) < 0)
            return -1;
    }
    return 0;
}

static void
groups_free(Groups *g)
{
    buffer_free(&g->parts);
    PyMem_Free(g->starts);
    PyMem_Free(g->lens);
    g->starts = g->lens = NULL;
    g->count = g->cap = 0;
}

/* -- character classes, as Python's re with re.ASCII sees bytes ---------------------- */

static inline int
is_space(unsigned char c) /* \s */
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static inline int
is_line_space(unsigned char c) /* [^\S\n] */
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

static inline int
is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static inline int
is_word(unsigned char c) /* \w */
{
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static inline int
is_hex_lower(unsigned char c) /* [\da-f] */
{
    return is_digit(c) || (c >= 'a' && c <= 'f');
}

static const char *
find_bytes(const char *hay, size_t n, const char *needle, size_t m)
{
    if (m > n)
        return NULL;
    return memmem(hay, n, needle, m);
}

/* The first "\n\n" in s[0:n], or NULL (memchr is faster than memmem for this). */
static const char *
find_blank_line(const char *s, size_t n)
{
    const char *end = s + n;
    while (s < end) {
        const char *nl = memchr(s, '\n', end - s);
        if (nl == NULL || nl + 1 >= end)
            return NULL;
        if (nl[1] == '\n')
            return nl;
        s = nl + 2;
    }
    return NULL;
}

static int
contains(const char *s, size_t n, const char *needle)
{
    return find_bytes(s, n, needle, strlen(needle)) != NULL;
}

static int
ends_with(const char *s, size_t n, const char *suffix)
{
    size_t m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

/* -- perf: module kinds ------------------------------------------------------------- */

/* KERNEL_MODULE of perf.py: (^\[|vmlinux$|/vmlinux-[^/]*$|\.ko(\.[a-z]+)?$) */
static int
is_kernel_module(const char *m, size_t n)
{
    if (n && m[0] == '[')
        return 1;
    if (ends_with(m, n, "vmlinux") || ends_with(m, n, ".ko"))
        return 1;
    const char *slash = NULL;
    for (size_t i = n; i > 0; i--) {
        if (m[i - 1] == '/') {
            slash = m + i - 1;
            break;
        }
    }
    if (slash && (size_t)(m + n - slash) >= 9 && memcmp(slash, "/vmlinux-", 9) == 0)
        return 1;
    size_t dot = n;
    while (dot > 0 && m[dot - 1] >= 'a' && m[dot - 1] <= 'z')
        dot--;
    /* m[dot..n) is [a-z]*; it must be non-empty and follow ".ko." */
    return dot < n && dot >= 4 && memcmp(m + dot - 4, ".ko.", 4) == 0;
}

static size_t
digits_at(const char *s, size_t n, size_t i)
{
    size_t j = i;
    while (j < n && is_digit((unsigned char)s[j]))
        j++;
    return j - i;
}

/* PERF_MAP_MODULE of perf.py, whole: /tmp/perf-\d+\.map */
static int
is_perf_map_module(const char *m, size_t n)
{
    if (n < 10 || memcmp(m, "/tmp/perf-", 10) != 0)
        return 0;
    size_t d = digits_at(m, n, 10);
    return d && n == 10 + d + 4 && memcmp(m + 10 + d, ".map", 4) == 0;
}

/* JIT_MODULE of perf.py, searched: (/tmp/perf-\d+\.map|(?:^|/)jitted-\d+-\d+\.so) */
static int
is_jit_module(const char *m, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (n - i >= 5 && memcmp(m + i, "/tmp/", 5) == 0 && n - (i + 5) >= 5 &&
            memcmp(m + i + 5, "perf-", 5) == 0) {
            size_t j = i + 10, d = digits_at(m, n, j);
            if (d && n - (j + d) >= 4 && memcmp(m + j + d, ".map", 4) == 0)
                return 1;
        }
        if ((i == 0 || m[i - 1] == '/') && n - i >= 7 && memcmp(m + i, "jitted-", 7) == 0) {
            size_t k = i + 7, d = digits_at(m, n, k);
            if (d && k + d < n && m[k + d] == '-') {
                size_t e = digits_at(m, n, k + d + 1);
                size_t end = k + d + 1 + e;
                if (e && n - end >= 3 && memcmp(m + end, ".so", 3) == 0)
                    return 1;
            }
        }
    }
    return 0;
}

/* -- counts added up in C ------------------------------------------------------------ */

/* What records count for during one fold() call, added up here and into the counts dict
 * at its end, in order of first count (the dict's order is as if counted one by one):
 * adding each record's weight to the dict made two Python ints and two lookups a record. */
typedef struct {
    PyObject *stack;  /* a reference held until the sum goes to the dict */
    long long sum;
} Pending;

typedef struct {
    Pending *items;   /* in order of first count */
    size_t count, capacity;
    size_t *index;    /* open addressing on the stack's address: item number + 1; 0: empty */
    size_t mask;      /* index size - 1 (a power of two), or 0 before the first */
} Tally;

static void
tally_free(Tally *t)
{
    for (size_t k = 0; k < t->count; k++)
        Py_DECREF(t->items[k].stack);
    PyMem_Free(t->items);
    PyMem_Free(t->index);
    memset(t, 0, sizeof *t);
}

/* -- perf: the folder --------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *keep_event;   /* (str) -> bool: does this event count? */
    PyObject *fold_line;    /* (str, java: bool) -> str: one frame line's frames */
    PyObject *fold_other;   /* (bytes) -> None: fold records of another shape */
    PyObject *stacks;       /* dict: stack -> count, added to */
    int include_pid, include_tid, kernel, jit, addrs, weights;
    int maps; /* perf-map frames are named by Python (the caller's map resolver) */
    Table records;
    Table lines;
    Table names;            /* stack text -> its str (stack_name) */
    PyObject *events;       /* dict: event bytes -> bool */
    Buffer key;             /* scratch: a record's key */
    Buffer stack;           /* scratch: a record's stack */
    Buffer frame;           /* scratch: one line's frames */
    Groups groups;          /* scratch: a record's frame lines' frames */
    size_t window_records;  /* records looked up in this window of the record cache */
    size_t window_hits;     /* and found */
    size_t paused;          /* records still to fold without the record cache */
    Entry fresh;            /* what the last record folded without the cache counts for */
    Tally tally;            /* this fold's counts, not yet in stacks */
} PerfFolder;

static int
PerfFolder_traverse(PerfFolder *self, visitproc visit, void *arg)
{
    Py_VISIT(self->keep_event);
    Py_VISIT(self->fold_line);
    Py_VISIT(self->fold_other);
    Py_VISIT(self->stacks);
    Py_VISIT(self->events);
    return 0;
}

static int
PerfFolder_clear(PerfFolder *self)
{
    Py_CLEAR(self->keep_event);
    Py_CLEAR(self->fold_line);
    Py_CLEAR(self->fold_other);
    Py_CLEAR(self->stacks);
    Py_CLEAR(self->events);
    Py_CLEAR(self->fresh.first);
    Py_CLEAR(self->fresh.second);
    return 0;
}

static void
PerfFolder_dealloc(PerfFolder *self)
{
    PyObject_GC_UnTrack(self);
    PerfFolder_clear(self);
    table_free(&self->records);
    table_free(&self->lines);
    table_free(&self->names);
    buffer_free(&self->key);
    buffer_free(&self->stack);
    buffer_free(&self->frame);
    groups_free(&self->groups);
    tally_free(&self->tally);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
PerfFolder_init(PerfFolder *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"keep_event", "fold_line", "fold_other", "stacks", "include_pid",
                             "include_tid", "kernel", "jit", "addrs", "weights", "maps", NULL};
    PyObject *keep_event, *fold_line, *fold_other, *stacks;
    int pid, tid, kernel, jit, addrs, weights, maps = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOO!pppppp|p", kwlist, &keep_event,
                                     &fold_line, &fold_other, &PyDict_Type, &stacks, &pid, &tid,
                                     &kernel, &jit, &addrs, &weights, &maps))
        return -1;
    if (self->records.slots != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "PerfFolder is initialised once");
        return -1;
    }
    Py_INCREF(keep_event);
    self->keep_event = keep_event;
    Py_INCREF(fold_line);
    self->fold_line = fold_line;
    Py_INCREF(fold_other);
    self->fold_other = fold_other;
    Py_INCREF(stacks);
    self->stacks = stacks;
    self->include_pid = pid;
    self->include_tid = tid;
    self->kernel = kernel;
    self->jit = jit;
    self->addrs = addrs;
    self->weights = weights;
    self->maps = maps;
    self->events = PyDict_New();
    if (self->events == NULL || table_init(&self->records) < 0 || table_init(&self->lines) < 0 ||
        table_init(&self->names) < 0)
        return -1;
    return 0;
}

/* GO_METHOD of perf.py, searched: \.\(.*\)\. (a Go method's receiver, not arguments) */
static int
is_go_method(const char *f, size_t n)
{
    const char *open = find_bytes(f, n, ".(", 2);
    if (open == NULL)
        return 0;
    size_t from = (size_t)(open - f) + 2;
    return find_bytes(f + from, n - from, ").", 2) != NULL;
}

/* Where perf.py's strip_arguments cuts a C++/Java argument list: the first `(` (but not
 * `(anonymous namespace)`) with no more `<` than `>` before it; failing that, where the
 * brackets do not balance, the first such `(`; else n (nothing is cut). */
static size_t
arguments_start(const char *f, size_t n)
{
    static const char anonymous[] = "anonymous namespace)";
    const size_t anonymous_len = sizeof anonymous - 1;
    size_t first = n, opens = 0, closes = 0;
    for (size_t i = 0; i < n; i++) {
        char c = f[i];
        if (c == '<')
            opens++;
        else if (c == '>')
            closes++;
        else if (c == '(' &&
                 !(n - i - 1 >= anonymous_len && memcmp(f + i + 1, anonymous, anonymous_len) == 0)) {
            if (opens <= closes)
                return i;
            if (first == n)
                first = i;
        }
    }
    return opens != closes ? first : n;
}

/* Does the name hold one of Rust's `$..$` escapes (RUST_ESCAPE of symbols.py)? */
static int
has_rust_escape(const char *f, size_t n)
{
    static const char *const named[] = {"LT", "GT", "C", "RF", "BP", "LP", "RP", "SP"};
    const char *end = f + n;
    for (const char *p = memchr(f, '$', n); p != NULL; p = memchr(p + 1, '$', end - p - 1)) {
        const char *s = p + 1;
        size_t rest = end - s;
        for (size_t k = 0; k < sizeof named / sizeof *named; k++) {
            size_t len = strlen(named[k]);
            if (rest > len && memcmp(s, named[k], len) == 0 && s[len] == '$')
                return 1;
        }
        if (rest && s[0] == 'u') { /* u[0-9a-f]{1,6} */
            size_t d = 0;
            while (1 + d < rest && d < 7 && is_hex_lower((unsigned char)s[1 + d]))
                d++;
            if (d >= 1 && d <= 6 && 1 + d < rest && s[1 + d] == '$')
                return 1;
        }
    }
    return 0;
}

/* Does the name hold `::h` once each ';' is a ':' (where tidy_rust looks for a hash)? */
static int
has_hash_marker(const char *f, size_t n)
{
    for (const char *p = f, *end = f + n; end - p >= 3; p++) {
        const char *h = memchr(p + 2, 'h', end - p - 2);
        if (h == NULL)
            return 0;
        if ((h[-1] == ':' || h[-1] == ';') && (h[-2] == ':' || h[-2] == ';'))
            return 1;
        p = h - 2;
    }
    return 0;
}

/* One frame name, tidied as PerfCollapser._tidy does, appended to `out`; 0 when the
 * name needs the Python reference, -1 on error. In Python's order: an argument list
 * is cut (not a Go method's receiver), ';' becomes ':', quotes go, then a Java name
 * loses the 'L' it then starts with. A name tidy_rust would change (a `::h` hash, a
 * `$..$` escape; `;` could make a `::`) goes to Python. */
static int
tidy_simple(Buffer *out, const char *f, size_t n, int java)
{
    if (has_hash_marker(f, n))
        return 0;
    if (memchr(f, '$', n) && has_rust_escape(f, n))
        return 0;
    if (memchr(f, '(', n) && !is_go_method(f, n))
        n = arguments_start(f, n);
    if (buffer_reserve(out, n) < 0)
        return -1;
    size_t start = out->len;
    for (size_t i = 0; i < n; i++) {
        char c = f[i];
        if (c == '"' || c == '\'')
            continue;
        out->data[out->len++] = c == ';' ? ':' : c;
    }
    char *tidied = out->data + start;
    size_t len = out->len - start;
    if (java && len && tidied[0] == 'L' && memchr(tidied, '/', len)) {
        memmove(tidied, tidied + 1, len - 1);
        out->len--;
    }
    return 1;
}

/* The frames of one indented frame line (`ip symbol+off (module)`), joined by ';', into
 * self->frame. 1: done; 0: the line needs the Python reference; -1: error. */
static int
fold_line_simple(PerfFolder *self, const char *line, size_t n, int java)
{
    Buffer *out = &self->frame;
    out->len = 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)line[i] >= 0x80)
            return 0;
    const char *close = NULL;
    for (size_t i = n; i > 0; i--)
        if (line[i - 1] == ')') {
            close = line + i - 1;
            break;
        }
    if (close == NULL)
        return 0;
    size_t end = close - line; /* the module ends here */
    size_t i = 0;
    while (i < end && is_space((unsigned char)line[i]))
        i++;
    size_t pc = i;
    while (i < end && is_word((unsigned char)line[i]))
        i++;
    size_t pc_len = i - pc;
    if (!pc_len || i >= end || !is_space((unsigned char)line[i]))
        return 0;
    while (i < end && is_space((unsigned char)line[i]))
        i++;
    size_t raw = i;
    size_t open = 0; /* the last " (" */
    for (size_t k = end; k > raw + 1; k--)
        if (line[k - 1] == '(' && line[k - 2] == ' ') {
            open = k - 2;
            break;
        }
    if (open <= raw)
        return 0;
    const char *module = line + open + 2;
    size_t module_len = end - (open + 2);
    if (memchr(module, '(', module_len) || memchr(module, ')', module_len))
        return 0;
    if (self->maps && is_perf_map_module(module, module_len))
        return 0; /* named by the caller's map resolver, in Python */
    size_t raw_len = open - raw;
    const char *name = line + raw;
    /* OFFSET: a trailing +0x<hex> goes */
    size_t h = raw_len;
    while (h > 0 && is_hex_lower((unsigned char)name[h - 1]))
        h--;
    if (h < raw_len && h >= 3 && memcmp(name + h - 3, "+0x", 3) == 0)
        raw_len = h - 3;
    if (raw_len && name[0] == '(')
        return 1; /* no frame */
    if (contains(name, raw_len, "->"))
        return 0;
    int done;
    if (raw_len == 9 && memcmp(name, "[unknown]", 9) == 0) {
        char unknown[512];
        const char *base = "unknown";
        size_t base_len = 7;
        if (!(module_len == 9 && memcmp(module, "[unknown]", 9) == 0)) {
            base = module;
            base_len = module_len;
            for (size_t k = module_len; k > 0; k--)
                if (module[k - 1] == '/') {
                    base = module + k;
                    base_len = module_len - k;
                    break;
                }
        }
        if (base_len + pc_len + 8 > sizeof(unknown))
            return 0;
        size_t u = 0;
        unknown[u++] = '[';
        memcpy(unknown + u, base, base_len);
        u += base_len;
        if (self->addrs) {
            memcpy(unknown + u, " <", 2);
            u += 2;
            memcpy(unknown + u, line + pc, pc_len);
            u += pc_len;
            unknown[u++] = '>';
        }
        unknown[u++] = ']';
        done = tidy_simple(out, unknown, u, java);
    }
    else {
        done = tidy_simple(out, name, raw_len, java);
    }
    if (done <= 0)
        return done;
    const char *suffix = NULL;
    if (self->kernel && is_kernel_module(module, module_len) &&
        !contains(module, module_len, "unknown"))
        suffix = "_[k]";
    else if (self->jit && is_jit_module(module, module_len) &&
             !contains(out->data, out->len, "_[j]"))
        suffix = "_[j]";
    if (suffix && buffer_add(out, suffix, 4) < 0)
        return -1;
    return 1;
}

/* The cached frames of a frame line: found, else folded here or by Python and cached. */
static Entry *
line_frames(PerfFolder *self, const char *line, size_t n, int java)
{
    uint64_t hash = hash_bytes(line, n, java ? 0x6a617661 : 0);
    Entry *e = table_find(&self->lines, line, n, hash);
    if (e->key != NULL)
        return e;
    int done = fold_line_simple(self, line, n, java);
    if (done < 0)
        return NULL;
    PyObject *encoded = NULL;
    const char *frames = self->frame.data;
    size_t len = self->frame.len;
    if (!done) {
        PyObject *text = PyUnicode_DecodeUTF8(line, n, "surrogateescape");
        if (text == NULL)
            return NULL;
        PyObject *result =
            PyObject_CallFunctionObjArgs(self->fold_line, text, java ? Py_True : Py_False, NULL);
        Py_DECREF(text);
        if (result == NULL)
            return NULL;
        if (!PyUnicode_Check(result)) {
            Py_DECREF(result);
            PyErr_SetString(PyExc_TypeError, "fold_line must return str");
            return NULL;
        }
        encoded = PyUnicode_AsEncodedString(result, "utf-8", "surrogateescape");
        Py_DECREF(result);
        if (encoded == NULL)
            return NULL;
        frames = PyBytes_AS_STRING(encoded);
        len = (size_t)PyBytes_GET_SIZE(encoded);
    }
    e = table_add(&self->lines, line, n, hash, len);
    if (e != NULL) {
        if (len) /* frames is NULL when no line has given a frame yet */
            memcpy(e->key + n, frames, len);
        e->vlen = len;
    }
    Py_XDECREF(encoded);
    return e;
}

/* Does this event count? Asked of Python once per distinct event. -1 on error. */
static int
keep_event(PerfFolder *self, const char *event, size_t n)
{
    PyObject *key = PyBytes_FromStringAndSize(event, n);
    if (key == NULL)
        return -1;
    PyObject *known = PyDict_GetItemWithError(self->events, key);
    if (known == NULL) {
        if (PyErr_Occurred()) {
            Py_DECREF(key);
            return -1;
        }
        PyObject *text = PyUnicode_DecodeUTF8(event, n, "surrogateescape");
        if (text == NULL) {
            Py_DECREF(key);
            return -1;
        }
        known = PyObject_CallOneArg(self->keep_event, text);
        Py_DECREF(text);
        if (known == NULL || PyDict_SetItem(self->events, key, known) < 0) {
            Py_XDECREF(known);
            Py_DECREF(key);
            return -1;
        }
        Py_DECREF(known); /* the dict holds it */
    }
    Py_DECREF(key);
    return PyObject_IsTrue(known);
}

/* A record's event line, parsed as perf.py's RECORD parses the common shape. */
typedef struct {
    const char *comm, *pid, *tid, *period, *event;
    size_t comm_len, pid_len, tid_len, period_len, event_len;
} EventLine;

/* 1: parsed; 0: not of the common shape (Python reads it). Records of a thread perf
 * has no name for (command `:-1`, pid or tid -1) are left to Python, which folds them
 * under `[unknown pid]`: a pid or tid must be digits here, and `:-1` is no command. */
static int
parse_event_line(const char *s, size_t n, EventLine *ev)
{
    size_t i = 0;
    while (i < n && !is_space((unsigned char)s[i]))
        i++;
    if (i < 2 || i >= n || !is_line_space((unsigned char)s[i]))
        return 0;
    if (i == 3 && memcmp(s, ":-1", 3) == 0)
        return 0;
    ev->comm = s;
    ev->comm_len = i;
    while (i < n && is_line_space((unsigned char)s[i]))
        i++;
    size_t d = digits_at(s, n, i);
    if (!d)
        return 0;
    ev->pid = s + i;
    ev->pid_len = d;
    i += d;
    while (i < n && s[i] == '/')
        i++;
    d = digits_at(s, n, i);
    ev->tid = d ? s + i : NULL;
    ev->tid_len = d;
    i += d;
    if (i >= n || !is_line_space((unsigned char)s[i]))
        return 0;
    i++;
    const char *colon = memchr(s + i, ':', n - i);
    if (colon == NULL)
        return 0;
    i = colon - s + 1;
    size_t after = i;
    while (i < n && is_line_space((unsigned char)s[i]))
        i++;
    d = digits_at(s, n, i);
    if (d > MAX_PERIOD_DIGITS)
        return 0;
    if (d) {
        ev->period = s + i;
        ev->period_len = d;
        i += d;
    }
    else {
        ev->period = NULL;
        ev->period_len = 0;
        i = after;
    }
    size_t spaces = i;
    while (i < n && is_line_space((unsigned char)s[i]))
        i++;
    if (i == spaces)
        return 0;
    size_t end = n;
    while (end > i && is_line_space((unsigned char)s[end - 1]))
        end--;
    if (end <= i + 1 || s[end - 1] != ':')
        return 0;
    for (size_t k = i; k < end - 1; k++)
        if (is_space((unsigned char)s[k]))
            return 0;
    ev->event = s + i;
    ev->event_len = end - 1 - i;
    return 1;
}

static int
key_add_part(Buffer *key, const char *part, size_t len)
{
    uint32_t n = part == NULL ? UINT32_MAX : (uint32_t)len;
    if (buffer_add(key, (const char *)&n, sizeof n) < 0)
        return -1;
    return part == NULL ? 0 : buffer_add(key, part, len);
}

/* The first part of a record's key, into self->key: the fields of its event line that its
 * stack depends on; the second part is its frame lines, hashed and compared where they
 * lie (copied only into the cache). Not its period, which is read
 * from each record's event line: in perf's frequency mode (`-F` with cycles) samples of
 * one stack come with ever other periods, and a key with the period made each a record
 * to fold afresh. (cpu-clock's periods hardly vary: the same 32k distinct records either
 * way on the 40 s whole-machine recording.) */
static int
record_key(PerfFolder *self, const EventLine *ev)
{
    Buffer *key = &self->key;
    int ids = self->include_pid || self->include_tid;
    key->len = 0;
    if (key_add_part(key, ev->comm, ev->comm_len) < 0 ||
        key_add_part(key, ids ? ev->pid : NULL, ev->pid_len) < 0 ||
        key_add_part(key, ids ? ev->tid : NULL, ev->tid_len) < 0)
        return -1;
    return key_add_part(key, ev->event, ev->event_len);
}

/* The process name a stack starts with: comm, comm-PID or comm-PID/TID (perf.py _pname). */
static int
add_pname(PerfFolder *self, Buffer *out, const EventLine *ev)
{
    size_t start = out->len;
    if (buffer_add(out, ev->comm, ev->comm_len) < 0)
        return -1;
    if (self->include_pid || self->include_tid) {
        const char *pid = ev->pid, *tid = ev->tid;
        size_t pid_len = ev->pid_len, tid_len = ev->tid_len;
        if (tid == NULL) {
            tid = pid;
            tid_len = pid_len;
            pid = "?";
            pid_len = 1;
        }
        if (buffer_add(out, "-", 1) < 0 || buffer_add(out, pid, pid_len) < 0)
            return -1;
        if (self->include_tid &&
            (buffer_add(out, "/", 1) < 0 || buffer_add(out, tid, tid_len) < 0))
            return -1;
    }
    for (size_t i = start; i < out->len; i++)
        if (out->data[i] == ' ')
            out->data[i] = '_';
    return 0;
}

/* The stack of a new record: its process name, then its frames root first. Each frame
 * line's frames are copied out of the line cache, which may be emptied meanwhile. */
static PyObject *
record_stack(PerfFolder *self, const EventLine *ev, const char *body, size_t body_len)
{
    int java = ev->comm_len >= 4 && memcmp(ev->comm, "java", 4) == 0;
    Groups *groups = &self->groups;
    const char *p = body, *end = body + body_len;
    groups->count = groups->parts.len = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', end - p);
        const char *stop = nl ? nl : end;
        Entry *e = line_frames(self, p, stop - p, java);
        if (e == NULL || groups_add(groups, e->key + e->klen, e->vlen) < 0)
            return NULL;
        p = stop + 1;
    }
    Buffer *out = &self->stack;
    out->len = 0;
    if (add_pname(self, out, ev) < 0 || groups_join_reversed(groups, out) < 0)
        return NULL;
    return stack_name(&self->names, out->data, out->len);
}

/* What a new record counts for: its stack, or NULL for another event. -1 on error. */
static int
record_result(PerfFolder *self, const EventLine *ev, const char *body, size_t body_len,
              PyObject **stack)
{
    *stack = NULL;
    int keep = keep_event(self, ev->event, ev->event_len);
    if (keep <= 0)
        return keep;
    *stack = record_stack(self, ev, body, body_len);
    return *stack == NULL ? -1 : 0;
}

/* A record folded without the cache: kept in self->fresh until the next one. */
static Entry *
fresh_entry(PerfFolder *self, const EventLine *ev, const char *body, size_t body_len)
{
    PyObject *stack;
    if (record_result(self, ev, body, body_len, &stack) < 0)
        return NULL;
    Py_XSETREF(self->fresh.first, stack);
    return &self->fresh;
}

/* Count a lookup in the record cache's window; at the window's end, pause the cache if it
 * found too few. */
static void
count_lookup(PerfFolder *self, int found)
{
    self->window_hits += found;
    if (++self->window_records < RECORD_WINDOW)
        return;
    if (self->window_hits * RECORD_MIN_HITS < RECORD_WINDOW)
        self->paused = RECORD_PAUSE;
    self->window_records = self->window_hits = 0;
}

/* What a record counts for, from the cache or worked out now. NULL on error. */
static Entry *
record_entry(PerfFolder *self, const EventLine *ev, const char *body, size_t body_len)
{
    if (self->paused) {
        self->paused--;
        return fresh_entry(self, ev, body, body_len);
    }
    if (record_key(self, ev) < 0)
        return NULL;
    const char *fields = self->key.data; /* the key: these, then the frame lines */
    size_t fields_len = self->key.len;
    uint64_t hash = hash_bytes(body, body_len, hash_bytes(fields, fields_len, 0));
    Entry *e = table_find_parts(&self->records, fields, fields_len, body, body_len, hash);
    count_lookup(self, e->key != NULL);
    if (e->key != NULL)
        return e;
    PyObject *stack;
    if (record_result(self, ev, body, body_len, &stack) < 0)
        return NULL;
    /* line_frames may have emptied nothing here: the key buffer is still this record's */
    e = table_add_parts(&self->records, fields, fields_len, body, body_len, hash, 0);
    if (e == NULL) {
        Py_XDECREF(stack);
        return NULL;
    }
    e->first = stack;
    return e;
}

/* counts[stack] += count */
static int
count_stack(PyObject *counts, PyObject *stack, PyObject *count)
{
    PyObject *old = PyDict_GetItemWithError(counts, stack);
    if (old == NULL) {
        if (PyErr_Occurred())
            return -1;
        return PyDict_SetItem(counts, stack, count);
    }
    PyObject *sum = PyNumber_Add(old, count);
    if (sum == NULL)
        return -1;
    int status = PyDict_SetItem(counts, stack, sum);
    Py_DECREF(sum);
    return status;
}

/* Add what the tally holds to `counts` and empty it; 0, or -1 on error (all the same
 * emptied, its references dropped). */
static int
tally_flush(Tally *t, PyObject *counts)
{
    int status = 0;
    for (size_t k = 0; k < t->count; k++) {
        Pending *item = &t->items[k];
        if (status == 0) {
            PyObject *sum = PyLong_FromLongLong(item->sum);
            status = sum == NULL ? -1 : count_stack(counts, item->stack, sum);
            Py_XDECREF(sum);
        }
        Py_DECREF(item->stack);
    }
    t->count = 0;
    if (t->mask)
        memset(t->index, 0, (t->mask + 1) * sizeof *t->index);
    return status;
}

static inline size_t
tally_slot(const Tally *t, PyObject *stack)
{
    uint64_t h = (uint64_t)(uintptr_t)stack * 0x9E3779B97F4A7C15ULL;
    return (size_t)(h >> 32) & t->mask;
}

/* Room for one more item, the index at most half full; -1 on error. */
static int
tally_reserve(Tally *t)
{
    if (t->count == t->capacity) {
        size_t capacity = t->capacity ? t->capacity * 2 : 256;
        Pending *items = PyMem_Realloc(t->items, capacity * sizeof *items);
        if (items == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        t->items = items;
        t->capacity = capacity;
    }
    if ((t->count + 1) * 2 <= t->mask + 1 && t->mask)
        return 0;
    size_t size = t->mask ? (t->mask + 1) * 2 : 512;
    size_t *index = PyMem_Calloc(size, sizeof *index);
    if (index == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    PyMem_Free(t->index);
    t->index = index;
    t->mask = size - 1;
    for (size_t k = 0; k < t->count; k++) {
        size_t i = tally_slot(t, t->items[k].stack);
        while (t->index[i])
            i = (i + 1) & t->mask;
        t->index[i] = k + 1;
    }
    return 0;
}

/* tally[stack] += weight; a sum that would overflow sends the tally to `counts` first. */
static int
tally_add(Tally *t, PyObject *stack, long long weight, PyObject *counts)
{
    if (t->mask) {
        size_t i = tally_slot(t, stack);
        for (; t->index[i]; i = (i + 1) & t->mask) {
            Pending *item = &t->items[t->index[i] - 1];
            if (item->stack != stack)
                continue;
            long long sum;
            if (!__builtin_add_overflow(item->sum, weight, &sum)) {
                item->sum = sum;
                return 0;
            }
            if (tally_flush(t, counts) < 0)
                return -1;
            break;
        }
    }
    if (tally_reserve(t) < 0)
        return -1;
    size_t i = tally_slot(t, stack);
    while (t->index[i])
        i = (i + 1) & t->mask;
    t->items[t->count] = (Pending){Py_NewRef(stack), weight};
    t->index[i] = ++t->count;
    return 0;
}

/* On an error: what was counted still counts, and the error is the one raised. */
static void
tally_flush_after_error(Tally *t, PyObject *counts)
{
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    (void)tally_flush(t, counts);
    PyErr_Clear();
    PyErr_Restore(type, value, traceback);
}

/* tally[stack] += count, an int; one too large for a long long goes to `counts` at once,
 * after what the tally holds. */
static int
tally_add_int(Tally *t, PyObject *stack, PyObject *count, PyObject *counts)
{
    int overflow = 1;
    long long value = PyLong_CheckExact(count) ? PyLong_AsLongLongAndOverflow(count, &overflow)
                                               : 0;
    if (value == -1 && PyErr_Occurred())
        return -1;
    if (!overflow)
        return tally_add(t, stack, value, counts);
    return tally_flush(t, counts) < 0 ? -1 : count_stack(counts, stack, count);
}

/* The weight of a record: its period (at most MAX_PERIOD_DIGITS digits), or 1. */
static long long
record_weight(PerfFolder *self, const EventLine *ev)
{
    if (!self->weights || ev->period == NULL)
        return 1;
    long long value = 0;
    for (size_t i = 0; i < ev->period_len; i++)
        value = value * 10 + (ev->period[i] - '0');
    return value;
}

/* Hand text of other shapes to Python, in its place in the input. */
static int
fold_other(PerfFolder *self, const char *start, const char *end)
{
    if (start == NULL || end <= start)
        return 0;
    PyObject *text = PyBytes_FromStringAndSize(start, end - start);
    if (text == NULL)
        return -1;
    PyObject *result = PyObject_CallOneArg(self->fold_other, text);
    Py_DECREF(text);
    if (result == NULL)
        return -1;
    Py_DECREF(result);
    return 0;
}

/* Could this comment line (`#...`, as `perf script --header` writes before the first
 * record) be read as an event line by perf.py's RECORD? Only if it ends in `:` (spaces
 * aside). The others the Python reference skips, as the line-by-line reader skips any
 * `#` line. */
static int
comment_may_be_event(const char *line, const char *nl)
{
    while (nl > line && is_line_space((unsigned char)nl[-1]))
        nl--;
    return nl > line && nl[-1] == ':';
}

/* Where a record ends (before the empty line after it, or at the end), and whether it is
 * of the common shape: 1 and *ev, *body and *body_len set; 0 when Python must read it.
 * Comment lines before its event line are skipped where Python would skip them. */
static int
scan_record(const char *p, const char *end, const char **next, EventLine *ev,
            const char **body, size_t *body_len)
{
    int comments_ok = 1;
    while (*p == '#' && comments_ok) {
        const char *nl = memchr(p, '\n', end - p);
        comments_ok = nl != NULL && nl + 1 < end && nl[1] != '\n' && !comment_may_be_event(p, nl);
        if (comments_ok)
            p = nl + 1;
    }
    const char *nl = memchr(p, '\n', end - p);
    const char *line_end = nl ? nl : end;
    const char *q = nl ? nl + 1 : end;
    int frames_ok = 1;
    *body = q;
    while (q < end && *q != '\n') {
        if (*q != ' ' && *q != '\t')
            frames_ok = 0;
        const char *e = memchr(q, '\n', end - q);
        q = e ? e + 1 : end;
    }
    *next = q;
    *body_len = q > *body ? (size_t)(q - *body - (q[-1] == '\n')) : 0;
    return comments_ok && frames_ok && parse_event_line(p, line_end - p, ev);
}

static PyObject *
PerfFolder_fold(PerfFolder *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const char *p = view.buf, *end = p + view.len;
    const char *other = NULL; /* start of text of other shapes not yet handed over */
    Py_ssize_t samples = 0;
    while (p < end) {
        if (*p == '\n') {
            p++;
            continue;
        }
        const char *next, *body;
        size_t body_len;
        EventLine ev;
        if (!scan_record(p, end, &next, &ev, &body, &body_len)) {
            if (other == NULL)
                other = p;
            p = next;
            continue;
        }
        /* in input order: the first event seen is the one kept by default */
        if (fold_other(self, other, p) < 0)
            goto error;
        other = NULL;
        Entry *e = record_entry(self, &ev, body, body_len);
        if (e == NULL || (e->first != NULL && tally_add(&self->tally, e->first,
                                                        record_weight(self, &ev),
                                                        self->stacks) < 0))
            goto error;
        samples += e->first != NULL;
        p = next;
    }
    if (fold_other(self, other, end) < 0)
        goto error;
    PyBuffer_Release(&view);
    if (tally_flush(&self->tally, self->stacks) < 0)
        return NULL;
    return PyLong_FromSsize_t(samples);
error:
    PyBuffer_Release(&view);
    tally_flush_after_error(&self->tally, self->stacks);
    return NULL;
}

static PyMethodDef PerfFolder_methods[] = {
    {"fold", (PyCFunction)PerfFolder_fold, METH_O,
     "fold(data) -> samples: fold the complete lines of `perf script` output"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PerfFolderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "flamed.collapse._speedups.PerfFolder",
    .tp_doc = "Folds records of the common shape; hands the rest to Python.",
    .tp_basicsize = sizeof(PerfFolder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)PerfFolder_init,
    .tp_dealloc = (destructor)PerfFolder_dealloc,
    .tp_traverse = (traverseproc)PerfFolder_traverse,
    .tp_clear = (inquiry)PerfFolder_clear,
    .tp_methods = PerfFolder_methods,
};

/* -- DTrace: runs --------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    PyObject *fold_run;     /* (bytes) -> (stack, count) to cache, or carry: bool */
    PyObject *fold_line;    /* (bytes, leaf: bool) -> tuple of str: one frame line's frames */
    PyObject *counts;       /* dict: stack -> count, added to */
    int include_offset;     /* the leaf line folds differently from the same line above it */
    Table runs;
    Table lines, leaves;
    Table names;            /* stack text -> its str (stack_name) */
    Tally tally;            /* this fold's counts, not yet in counts */
    Groups groups;          /* scratch: a run's frame lines' frames */
    Buffer stack;
} RunFolder;

static int
RunFolder_traverse(RunFolder *self, visitproc visit, void *arg)
{
    Py_VISIT(self->fold_run);
    Py_VISIT(self->fold_line);
    Py_VISIT(self->counts);
    return 0;
}

static int
RunFolder_clear(RunFolder *self)
{
    Py_CLEAR(self->fold_run);
    Py_CLEAR(self->fold_line);
    Py_CLEAR(self->counts);
    return 0;
}

static void
RunFolder_dealloc(RunFolder *self)
{
    PyObject_GC_UnTrack(self);
    RunFolder_clear(self);
    table_free(&self->runs);
    table_free(&self->lines);
    table_free(&self->leaves);
    table_free(&self->names);
    tally_free(&self->tally);
    groups_free(&self->groups);
    buffer_free(&self->stack);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
RunFolder_init(RunFolder *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fold_run", "fold_line", "counts", "include_offset", NULL};
    PyObject *fold_run, *fold_line, *counts;
    int include_offset;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO!p", kwlist, &fold_run, &fold_line,
                                     &PyDict_Type, &counts, &include_offset))
        return -1;
    if (self->runs.slots != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "RunFolder is initialised once");
        return -1;
    }
    self->fold_run = Py_NewRef(fold_run);
    self->fold_line = Py_NewRef(fold_line);
    self->counts = Py_NewRef(counts);
    self->include_offset = include_offset;
    if (table_init(&self->runs) < 0 || table_init(&self->lines) < 0 ||
        table_init(&self->names) < 0)
        return -1;
    return table_init(&self->leaves);
}

static inline int
is_dtrace_space(unsigned char c) /* [ \t\r\f\v] of dtrace.py's COUNT_LINE */
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/* COUNT_LINE of dtrace.py: digits alone on a line. The count, -1 if it is not one, -2 if
 * it has too many digits for a long long (Python reads it). */
static long long
count_line(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && is_dtrace_space((unsigned char)s[i]))
        i++;
    size_t d = digits_at(s, n, i);
    size_t j = i + d;
    while (j < n && is_dtrace_space((unsigned char)s[j]))
        j++;
    if (!d || j != n)
        return -1;
    if (d > MAX_PERIOD_DIGITS)
        return -2;
    long long value = 0;
    for (size_t k = i; k < i + d; k++)
        value = value * 10 + (s[k] - '0');
    return value;
}

/* A frame line with nothing to tidy (printable ASCII, no C++ scope, inlining, ';', Java
 * 'L' or Rust escape): its frame is the line without its indent and, unless kept, its
 * offset (from the last '+', as stackcollapse.pl cuts it). NULL: Python folds it. */
static const char *
dtrace_simple_frame(const char *line, size_t n, int keep_offset, size_t *len)
{
    size_t i = 0;
    while (i < n && is_dtrace_space((unsigned char)line[i]))
        i++;
    const char *frame = line + i;
    size_t size = n - i, cut = size;
    if (size == 0 || frame[0] == 'L')
        return NULL;
    for (size_t k = 0; k < size; k++) {
        unsigned char c = (unsigned char)frame[k];
        if (c < 0x20 || c > 0x7e || c == ';' || c == '$')
            return NULL;
        if (c == '+')
            cut = k;
    }
    if (contains(frame, size, "::") || contains(frame, size, "->"))
        return NULL;
    *len = keep_offset ? size : cut;
    return *len ? frame : NULL;
}

/* The frames of one frame line, joined by ';', from the cache (leaves apart: with
 * include_offset the leaf keeps no offset) or from Python. NULL on error. */
static Entry *
dtrace_line(RunFolder *self, const char *line, size_t n, int leaf)
{
    Table *table = leaf ? &self->leaves : &self->lines;
    uint64_t hash = hash_bytes(line, n, 0);
    Entry *e = table_find(table, line, n, hash);
    if (e->key != NULL)
        return e;
    size_t len;
    const char *frame = dtrace_simple_frame(line, n, self->include_offset && !leaf, &len);
    if (frame != NULL) {
        e = table_add(table, line, n, hash, len);
        if (e != NULL) {
            memcpy(e->key + n, frame, len);
            e->vlen = len;
        }
        return e;
    }
    PyObject *text = PyBytes_FromStringAndSize(line, n);
    PyObject *frames = text ? PyObject_CallFunctionObjArgs(self->fold_line, text,
                                                           leaf ? Py_True : Py_False, NULL)
                            : NULL;
    Py_XDECREF(text);
    if (frames == NULL)
        return NULL;
    PyObject *joined = NULL, *encoded = NULL, *sep = PyUnicode_FromString(";");
    if (sep != NULL && PyTuple_Check(frames))
        joined = PyUnicode_Join(sep, frames);
    Py_XDECREF(sep);
    Py_DECREF(frames);
    if (joined != NULL)
        encoded = PyUnicode_AsEncodedString(joined, "utf-8", "surrogateescape");
    Py_XDECREF(joined);
    if (encoded == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "fold_line must return a tuple of str");
        return NULL;
    }
    len = (size_t)PyBytes_GET_SIZE(encoded);
    e = table_add(table, line, n, hash, len);
    if (e != NULL) {
        memcpy(e->key + n, PyBytes_AS_STRING(encoded), len);
        e->vlen = len;
    }
    Py_DECREF(encoded);
    return e;
}

/* A run of the common shape (frame lines, then a count line) folded here, as
 * DTraceCollapser._fold_run folds it: 1 and *stack, *count set; 0: Python folds it. */
static int
fold_simple_run(RunFolder *self, const char *run, size_t n, PyObject **stack,
                PyObject **count)
{
    const char *last = run + n;
    while (last > run && last[-1] != '\n')
        last--;
    if (last == run) /* one line: no frames */
        return 0;
    long long number = count_line(last, run + n - last);
    if (number < 0)
        return 0;
    const char *end = last - 1; /* the body: the frame lines, without the last newline */
    Groups *groups = &self->groups;
    groups->count = groups->parts.len = 0;
    for (const char *p = run; p <= end;) {
        const char *nl = memchr(p, '\n', end - p);
        const char *stop = nl ? nl : end;
        size_t len = stop - p, i = 0;
        while (i < len && is_dtrace_space((unsigned char)p[i]))
            i++;
        if (i == len || count_line(p, len) != -1) /* NOT_A_FRAME: blank or a count */
            return 0;
        Entry *e = dtrace_line(self, p, len, self->include_offset && groups->count == 0);
        if (e == NULL || groups_add(groups, e->key + e->klen, e->vlen) < 0)
            return -1;
        p = stop + 1;
    }
    Buffer *out = &self->stack;
    out->len = 0;
    if (groups_join_reversed(groups, out) < 0)
        return -1;
    if (out->len == 0) /* no frames at all: Python says what that is */
        return 0;
    *stack = stack_name(&self->names, out->data, out->len);
    *count = *stack ? PyLong_FromLongLong(number) : NULL;
    if (*count == NULL) {
        Py_CLEAR(*stack);
        return -1;
    }
    return 1;
}

/* One run, counted from the cache (1: a hit), or by Python (0), which gives what to
 * cache for it, or says whether its frames go on into the next run (*carry). */
static int
fold_run(RunFolder *self, const char *run, size_t n, int *carry)
{
    uint64_t hash = hash_bytes(run, n, 0);
    Entry *e = NULL;
    if (!*carry) {
        e = table_find(&self->runs, run, n, hash);
        if (e->key != NULL)
            return tally_add_int(&self->tally, e->first, e->second, self->counts) < 0 ? -1 : 1;
    }
    PyObject *stack = NULL, *count = NULL;
    int simple = *carry ? 0 : fold_simple_run(self, run, n, &stack, &count);
    if (simple < 0)
        return -1;
    if (simple) {
        e = table_add(&self->runs, run, n, hash, 0);
        if (e == NULL || tally_add_int(&self->tally, stack, count, self->counts) < 0) {
            Py_DECREF(stack);
            Py_DECREF(count);
            return -1;
        }
        e->first = stack;
        e->second = count;
        return 1; /* counted here: as a hit */
    }
    /* Python counts this run itself: what was counted before it goes first */
    if (tally_flush(&self->tally, self->counts) < 0)
        return -1;
    PyObject *text = PyBytes_FromStringAndSize(run, n);
    if (text == NULL)
        return -1;
    PyObject *result = PyObject_CallOneArg(self->fold_run, text);
    Py_DECREF(text);
    if (result == NULL)
        return -1;
    *carry = result == Py_True;
    if (PyBool_Check(result)) {
        Py_DECREF(result);
        return 0;
    }
    if (!PyTuple_Check(result) || PyTuple_GET_SIZE(result) != 2) {
        Py_DECREF(result);
        PyErr_SetString(PyExc_TypeError, "fold_run must return (stack, count) or a bool");
        return -1;
    }
    e = table_add(&self->runs, run, n, hash, 0);
    if (e != NULL) {
        e->first = Py_NewRef(PyTuple_GET_ITEM(result, 0));
        e->second = Py_NewRef(PyTuple_GET_ITEM(result, 1));
    }
    Py_DECREF(result);
    return e == NULL ? -1 : 0;
}

static PyObject *
RunFolder_fold(RunFolder *self, PyObject *args)
{
    Py_buffer view;
    int carry;
    if (!PyArg_ParseTuple(args, "y*p:fold", &view, &carry))
        return NULL;
    const char *p = view.buf, *end = p + view.len;
    Py_ssize_t hits = 0;
    for (;;) {
        const char *sep = find_blank_line(p, end - p);
        const char *stop = sep ? sep : end;
        int hit = fold_run(self, p, stop - p, &carry);
        if (hit < 0) {
            PyBuffer_Release(&view);
            tally_flush_after_error(&self->tally, self->counts);
            return NULL;
        }
        hits += hit;
        if (sep == NULL)
            break;
        p = sep + 2;
    }
    PyBuffer_Release(&view);
    if (tally_flush(&self->tally, self->counts) < 0)
        return NULL;
    return PyLong_FromSsize_t(hits);
}

static PyMethodDef RunFolder_methods[] = {
    {"fold", (PyCFunction)RunFolder_fold, METH_VARARGS,
     "fold(text, carry) -> hits: count the runs of text split at empty lines; carry: the\n"
     "first run continues a stack, so Python folds it"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject RunFolderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "flamed.collapse._speedups.RunFolder",
    .tp_doc = "Counts DTrace runs through a cache; hands new ones to Python.",
    .tp_basicsize = sizeof(RunFolder),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)RunFolder_init,
    .tp_dealloc = (destructor)RunFolder_dealloc,
    .tp_traverse = (traverseproc)RunFolder_traverse,
    .tp_clear = (inquiry)RunFolder_clear,
    .tp_methods = RunFolder_methods,
};

/* -- folded text ------------------------------------------------------------------------- */

/* One `stack count` line (trailing CRs dropped) whose count is plain digits: the stack
 * counted here. 1: done; 0: Python reads it (no stack, another count); -1: error. */
static int
fold_folded_line(const char *line, size_t n, PyObject *counts, PyObject *in_order)
{
    while (n > 0 && line[n - 1] == '\r')
        n--;
    size_t cut = n;
    while (cut > 0 && line[cut - 1] != ' ' && line[cut - 1] != '\t')
        cut--;
    if (cut < 2) /* no separator, or nothing before it */
        return 0;
    size_t digits = n - cut;
    if (digits == 0 || digits > MAX_PERIOD_DIGITS)
        return 0;
    long long value = 0;
    for (size_t i = cut; i < n; i++) {
        if (!is_digit((unsigned char)line[i]))
            return 0;
        value = value * 10 + (line[i] - '0');
    }
    PyObject *stack = PyUnicode_DecodeUTF8(line, (Py_ssize_t)(cut - 1), "surrogateescape");
    PyObject *count = stack ? PyLong_FromLongLong(value) : NULL;
    int status = count ? count_stack(counts, stack, count) : -1;
    if (status == 0 && in_order != Py_None) {
        PyObject *pair = PyTuple_Pack(2, stack, count);
        status = pair ? PyList_Append(in_order, pair) : -1;
        Py_XDECREF(pair);
    }
    Py_XDECREF(stack);
    Py_XDECREF(count);
    return status < 0 ? -1 : 1;
}

static PyObject *
fold_folded(PyObject *module, PyObject *args)
{
    Py_buffer view;
    PyObject *counts, *in_order, *other;
    if (!PyArg_ParseTuple(args, "y*O!OO:fold_folded", &view, &PyDict_Type, &counts, &in_order,
                          &other))
        return NULL;
    if (in_order != Py_None && !PyList_Check(in_order)) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_TypeError, "in_order must be a list or None");
        return NULL;
    }
    const char *p = view.buf, *end = p + view.len;
    for (;;) {
        const char *nl = memchr(p, '\n', end - p);
        const char *stop = nl ? nl : end;
        int done = fold_folded_line(p, stop - p, counts, in_order);
        if (done == 0) {
            PyObject *line = PyBytes_FromStringAndSize(p, stop - p);
            PyObject *result = line ? PyObject_CallOneArg(other, line) : NULL;
            Py_XDECREF(line);
            done = result ? 1 : -1;
            Py_XDECREF(result);
        }
        if (done < 0) {
            PyBuffer_Release(&view);
            return NULL;
        }
        if (nl == NULL)
            break;
        p = nl + 1;
    }
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

/* -- folded text out: Folded.to_bytes ------------------------------------------------ */

typedef struct {
    const char *stack;
    Py_ssize_t len;
    long long count;
} FoldedLine;

/* Bytewise, as folded.py sorts encoded stacks (a prefix first). */
static int
folded_line_order(const void *a, const void *b)
{
    const FoldedLine *x = a, *y = b;
    int order = memcmp(x->stack, y->stack, (size_t)(x->len < y->len ? x->len : y->len));
    return order ? order : (x->len > y->len) - (x->len < y->len);
}

/* `count` in decimal at p; how many bytes. */
static size_t
write_count(char *p, long long count)
{
    char digits[24];
    size_t n = 0;
    unsigned long long value = count < 0 ? 0ULL - (unsigned long long)count : (unsigned long long)count;
    do {
        digits[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    size_t written = 0;
    if (count < 0)
        p[written++] = '-';
    while (n)
        p[written++] = digits[--n];
    return written;
}

/* The stacks of `counts` that folded_bytes can write: all ASCII str, all int counts that
 * fit a long long. 1: lines filled, *total their size bound; 0: Python must write them. */
static int
folded_lines(PyObject *counts, FoldedLine *lines, size_t *total)
{
    Py_ssize_t pos = 0, i = 0;
    PyObject *stack, *count;
    *total = 0;
    while (PyDict_Next(counts, &pos, &stack, &count)) {
        if (!PyUnicode_CheckExact(stack) || PyUnicode_READY(stack) < 0 ||
            !PyUnicode_IS_ASCII(stack) || !PyLong_CheckExact(count))
            return 0;
        int overflow;
        long long value = PyLong_AsLongLongAndOverflow(count, &overflow);
        if (overflow || (value == -1 && PyErr_Occurred()))
            return 0;
        lines[i].stack = (const char *)PyUnicode_DATA(stack);
        lines[i].len = PyUnicode_GET_LENGTH(stack);
        lines[i].count = value;
        *total += (size_t)lines[i].len + 24;
        i++;
    }
    return 1;
}

static PyObject *
folded_bytes(PyObject *module, PyObject *counts)
{
    if (!PyDict_CheckExact(counts)) {
        PyErr_SetString(PyExc_TypeError, "folded_bytes takes a dict");
        return NULL;
    }
    Py_ssize_t n = PyDict_GET_SIZE(counts);
    FoldedLine *lines = PyMem_Malloc((size_t)(n ? n : 1) * sizeof *lines);
    if (lines == NULL)
        return PyErr_NoMemory();
    size_t total;
    if (!folded_lines(counts, lines, &total)) {
        PyMem_Free(lines);
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    qsort(lines, (size_t)n, sizeof *lines, folded_line_order);
    PyObject *out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (out != NULL) {
        char *start = PyBytes_AS_STRING(out), *p = start;
        for (Py_ssize_t i = 0; i < n; i++) {
            memcpy(p, lines[i].stack, (size_t)lines[i].len);
            p += lines[i].len;
            *p++ = ' ';
            p += write_count(p, lines[i].count);
            *p++ = '\n';
        }
        _PyBytes_Resize(&out, p - start);
    }
    PyMem_Free(lines);
    return out;
}

/* -- perf_cut_runs: perf script's stream cut into runs of one bucket ------------------ */

#define LOST_TEXT "PERF_RECORD_LOST lost "

/* Does " PID/TID +SECS.FRAC: " start at s (a space) before end? Then the time's digits
 * are [*time, *time_end) and the match ends at *after. */
static int
head_at(const char *s, const char *end, const char **time, const char **time_end,
        const char **after)
{
    size_t n = (size_t)(end - s), i = 1, d = digits_at(s, n, i);
    if (!d || i + d == n || s[i + d] != '/')
        return 0;
    i += d + 1; /* the tid */
    d = digits_at(s, n, i);
    if (!d || i + d == n || s[i + d] != ' ')
        return 0;
    for (i += d; i < n && s[i] == ' '; i++)
        ;
    size_t seconds = i;
    d = digits_at(s, n, i);
    if (!d || i + d == n || s[i + d] != '.')
        return 0;
    i += d + 1; /* the fraction */
    d = digits_at(s, n, i);
    if (!d || n - (i + d) < 2 || s[i + d] != ':' || s[i + d + 1] != ' ')
        return 0;
    *time = s + seconds;
    *time_end = s + i + d;
    *after = s + i + d + 2;
    return 1;
}

/* records.HEAD on the line [line, end): a first byte that is not \s, then the LAST place
 * where head_at matches (the regular expression's greedy [^\n]* backtracks to it). */
static int
line_head(const char *line, const char *end, const char **time, const char **time_end,
          const char **after)
{
    if (line == end || is_space((unsigned char)*line))
        return 0;
    for (const char *s = end - 1; s > line; s--)
        if (*s == ' ' && head_at(s, end, time, time_end, after))
            return 1;
    return 0;
}

/* float(digits), as Python parses it; -1 with an exception set on failure. */
static int
parse_time(const char *s, const char *end, double *when)
{
    char small[64];
    size_t n = (size_t)(end - s);
    char *text = n < sizeof small ? small : PyMem_Malloc(n + 1);
    if (text == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(text, s, n);
    text[n] = '\0';
    *when = PyOS_string_to_double(text, NULL, NULL);
    if (text != small)
        PyMem_Free(text);
    return *when == -1.0 && PyErr_Occurred() ? -1 : 0;
}

/* A LOST line's number after `at`: appended to `lost` when it is one (strip(), isdigit()). */
static int
lost_count(const char *at, const char *end, PyObject *lost)
{
    while (at < end && is_space((unsigned char)*at))
        at++;
    while (end > at && is_space((unsigned char)end[-1]))
        end--;
    if (at == end)
        return 0;
    for (const char *p = at; p < end; p++)
        if (!is_digit((unsigned char)*p))
            return 0;
    PyObject *digits = PyBytes_FromStringAndSize(at, end - at);
    PyObject *count = digits ? PyNumber_Long(digits) : NULL;
    int status = count ? PyList_Append(lost, count) : -1;
    Py_XDECREF(digits);
    Py_XDECREF(count);
    return status;
}

typedef struct {
    double now, size, offset, max_late, since, until;
} CutWindow;

/* BucketCutter.index(when, now): the bucket of a time, that of `now` when it is absurd. */
static double
bucket_of(const CutWindow *w, double when)
{
    if (!(w->now - w->max_late <= when && when <= w->now + w->size))
        when = w->now;
    return floor((when + w->offset) / w->size);
}

/* records._add: a run that is not empty and not left out. */
static int
add_run(PyObject *runs, Py_ssize_t start, Py_ssize_t end, int kept, double index)
{
    if (end <= start || !kept)
        return 0;
    PyObject *bucket = PyLong_FromDouble(index);
    PyObject *run = bucket ? Py_BuildValue("(nnN)", start, end, bucket) : NULL;
    int status = run ? PyList_Append(runs, run) : -1;
    Py_XDECREF(run);
    return status;
}

static int
cut_runs(const char *text, Py_ssize_t length, const CutWindow *w, PyObject *runs,
         PyObject *lost)
{
    const char *end = text + length, *line = text;
    double moment = bucket_of(w, w->now), index = moment;
    Py_ssize_t start = 0;
    int kept = 1;
    while (line < end) {
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        const char *stop = nl ? nl : end, *time, *time_end, *after;
        Py_ssize_t at = line - text;
        if (line_head(line, stop, &time, &time_end, &after)) {
            if ((size_t)(stop - after) >= sizeof LOST_TEXT - 1 &&
                memcmp(after, LOST_TEXT, sizeof LOST_TEXT - 1) == 0) {
                if (add_run(runs, start, at, kept, index) < 0 ||
                    lost_count(after + sizeof LOST_TEXT - 1, stop, lost) < 0)
                    return -1;
                start = (nl ? nl + 1 : end) - text;
                index = moment;
                kept = 1;
            } else {
                double when;
                if (parse_time(time, time_end, &when) < 0)
                    return -1;
                int this_kept = w->since <= when && when < w->until;
                double this = this_kept ? bucket_of(w, when) : 0.0;
                if (this_kept != kept || this != index) {
                    if (add_run(runs, start, at, kept, index) < 0)
                        return -1;
                    start = at;
                    index = this;
                    kept = this_kept;
                }
            }
        }
        if (nl == NULL)
            break;
        line = nl + 1;
    }
    return add_run(runs, start, length, kept, index);
}

static PyObject *
perf_cut_runs(PyObject *module, PyObject *args)
{
    Py_buffer view;
    CutWindow w;
    if (!PyArg_ParseTuple(args, "y*dddddd:perf_cut_runs", &view, &w.now, &w.size, &w.offset,
                          &w.max_late, &w.since, &w.until))
        return NULL;
    PyObject *runs = PyList_New(0), *lost = PyList_New(0), *result = NULL;
    if (runs && lost && cut_runs(view.buf, view.len, &w, runs, lost) == 0)
        result = PyTuple_Pack(2, runs, lost);
    Py_XDECREF(runs);
    Py_XDECREF(lost);
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef module_methods[] = {
    {"fold_folded", fold_folded, METH_VARARGS,
     "fold_folded(text, counts, in_order, other): add `stack count` lines split at \\n to\n"
     "counts (and in_order, a list, unless None); lines of another shape go to other(line)"},
    {"folded_bytes", folded_bytes, METH_O,
     "folded_bytes(counts) -> bytes | None: `stack count` lines sorted bytewise, as\n"
     "Folded.to_bytes writes them; None unless every stack is ASCII and every count an int"},
    {"perf_cut_runs", perf_cut_runs, METH_VARARGS,
     "perf_cut_runs(text, now, size, offset, max_late, since, until): perf script's complete\n"
     "lines cut into runs of one bucket, ([(start, end, index)], [lost counts]); as\n"
     "flamed.collector.records.cut_runs"},
    {NULL, NULL, 0, NULL},
};

/* -- the module ------------------------------------------------------------------------ */

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "flamed.collapse._speedups",
    .m_doc = "C loops for the perf, DTrace and folded collapsers (optional; Python is the "
             "reference).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    if (PyType_Ready(&PerfFolderType) < 0 || PyType_Ready(&RunFolderType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "PerfFolder", (PyObject *)&PerfFolderType) < 0 ||
        PyModule_AddObjectRef(module, "RunFolder", (PyObject *)&RunFolderType) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
