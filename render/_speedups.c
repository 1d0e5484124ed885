/* flamed.render._speedups: the flame graph's two loops over every frame, in C.
 *
 * Optional: layout.py and svg.py are complete and are the reference; these do the
 * same arithmetic and print the same text.
 *
 * - merge_frames(entries, minimum, differential, frame_type[, check_order]) -> list of
 *   frames: the merge of sorted stacks into frames of layout.merge_frames, sorted by
 *   depth, then start. Counts are summed as C doubles, so the caller uses it only where
 *   every sum is exact (totals below 2**53). With check_order, None instead when a stack
 *   is the next one's prefix and a control character follows it there (the entries then
 *   need layout.line_order; see layout.control_follows_prefix).
 * - frame_elements(frames, start, stop, looks, describe, rows, numbers, strings) -> str:
 *   the SVG elements of frames[start:stop], as SvgWriter.frame_element writes each; what
 *   each distinct name shows (its texts, colour and --nameattr extras) comes from Python
 *   (describe), once.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* -- merge_frames ------------------------------------------------------------------ */

/* The frames of the stack being merged: where each begins and ends in its text, and for
 * each the start (in samples) of the frame open there and its delta. */
typedef struct {
    Py_ssize_t *begins, *ends;
    double *starts;
    char *start_ints; /* was the start an exact int (all counts before it ints)? */
    double *deltas;
    Py_ssize_t count, cap;
} Open;

static int
open_reserve(Open *o, Py_ssize_t n)
{
    if (n <= o->cap)
        return 0;
    Py_ssize_t cap = o->cap ? o->cap : 64;
    while (cap < n)
        cap *= 2;
    Py_ssize_t *begins = PyMem_Realloc(o->begins, cap * sizeof *begins);
    if (begins == NULL)
        goto nomem;
    o->begins = begins;
    Py_ssize_t *ends = PyMem_Realloc(o->ends, cap * sizeof *ends);
    if (ends == NULL)
        goto nomem;
    o->ends = ends;
    double *starts = PyMem_Realloc(o->starts, cap * sizeof *starts);
    if (starts == NULL)
        goto nomem;
    o->starts = starts;
    char *ints = PyMem_Realloc(o->start_ints, cap);
    if (ints == NULL)
        goto nomem;
    o->start_ints = ints;
    double *deltas = PyMem_Realloc(o->deltas, cap * sizeof *deltas);
    if (deltas == NULL)
        goto nomem;
    o->deltas = deltas;
    o->cap = cap;
    return 0;
nomem:
    PyErr_NoMemory();
    return -1;
}

static void
open_free(Open *o)
{
    PyMem_Free(o->begins);
    PyMem_Free(o->ends);
    PyMem_Free(o->starts);
    PyMem_Free(o->start_ints);
    PyMem_Free(o->deltas);
}

/* The length of a stack without its trailing ';'s: its frames are that text split on ';'
 * (Perl's split drops trailing empty fields: layout.split_frames). */
static Py_ssize_t
frames_length(PyObject *stack)
{
    int kind = PyUnicode_KIND(stack);
    const void *data = PyUnicode_DATA(stack);
    Py_ssize_t len = PyUnicode_GET_LENGTH(stack);
    while (len > 0 && PyUnicode_READ(kind, data, len - 1) == ';')
        len--;
    return len;
}

/* Where two texts first differ, comparing no more than `limit` characters. */
static Py_ssize_t
common_length(PyObject *a, PyObject *b, Py_ssize_t limit)
{
    int kind = PyUnicode_KIND(a);
    const char *da = PyUnicode_DATA(a), *db = PyUnicode_DATA(b);
    Py_ssize_t i = 0;
    if (kind != PyUnicode_KIND(b)) {
        while (i < limit && PyUnicode_READ(kind, da, i) ==
                                PyUnicode_READ(PyUnicode_KIND(b), db, i))
            i++;
        return i;
    }
    size_t bytes = (size_t)limit * (size_t)kind, at = 0;
    while (at + 8 <= bytes) {
        uint64_t x, y;
        memcpy(&x, da + at, 8);
        memcpy(&y, db + at, 8);
        if (x != y)
            break;
        at += 8;
    }
    while (at < bytes && da[at] == db[at])
        at++;
    return (Py_ssize_t)(at / (size_t)kind);
}

static int
frame_ends_at(PyObject *stack, Py_ssize_t length, Py_ssize_t at)
{
    return at == length || PyUnicode_READ_CHAR(stack, at) == ';';
}

/* How many of the open frames (of `previous`, `plen` characters of frames) the next
 * stack (`clen`) shares: those that end before the texts differ, or where they differ
 * if both have a frame ending there. */
static Py_ssize_t
shared_frames(const Open *o, PyObject *previous, Py_ssize_t plen, PyObject *stack,
              Py_ssize_t clen)
{
    if (clen == 0 || o->count == 0)
        return 0;
    Py_ssize_t limit = plen < clen ? plen : clen;
    Py_ssize_t differ = common_length(previous, stack, limit);
    Py_ssize_t same = 0;
    while (same < o->count && o->ends[same] < differ)
        same++;
    if (same < o->count && o->ends[same] == differ && frame_ends_at(previous, plen, differ) &&
        frame_ends_at(stack, clen, differ))
        same++;
    return same;
}

/* The frames of `stack` after its first `same` (known already), to `clen`. */
static int
split_rest(Open *o, PyObject *stack, Py_ssize_t clen, Py_ssize_t same)
{
    o->count = same;
    Py_ssize_t begin = same ? o->ends[same - 1] + 1 : 0;
    if (clen == 0 || (same && o->ends[same - 1] == clen))
        return 0;
    int kind = PyUnicode_KIND(stack);
    const void *data = PyUnicode_DATA(stack);
    for (;;) {
        Py_ssize_t end = begin;
        if (kind == PyUnicode_1BYTE_KIND) {
            const char *semi = memchr((const char *)data + begin, ';', clen - begin);
            end = semi ? semi - (const char *)data : clen;
        }
        else {
            while (end < clen && PyUnicode_READ(kind, data, end) != ';')
                end++;
        }
        if (open_reserve(o, o->count + 1) < 0)
            return -1;
        o->begins[o->count] = begin;
        o->ends[o->count] = end;
        o->count++;
        if (end == clen)
            return 0;
        begin = end + 1;
    }
}

static PyObject *
number_object(double value, int exact_int)
{
    return exact_int ? PyLong_FromDouble(value) : PyFloat_FromDouble(value);
}

/* A frame's name: one object for each distinct name (`known`), which keeps the graph
 * smaller and makes the SVG writer's lookups by name hit at once. */
static PyObject *
frame_name(PyObject *known, PyObject *stack, Py_ssize_t begin, Py_ssize_t end)
{
    PyObject *name = PyUnicode_Substring(stack, begin, end);
    if (name == NULL)
        return NULL;
    PyObject *same = PyDict_SetDefault(known, name, name);
    Py_XINCREF(same);
    Py_DECREF(name);
    return same;
}

/* Keep the open frames [first, count) of `stack` ending at `time` that are wide enough,
 * each in the list of its depth (out[depth - 1]): at one depth frames close in the order
 * of their starts, so the lists joined are sorted by depth, then start. */
static int
close_frames(PyObject *out, PyObject *frame_type, PyObject *known, PyObject *stack,
             const Open *o, int differential, Py_ssize_t first, double time, int time_int,
             double minimum)
{
    for (Py_ssize_t i = first; i < o->count; i++) {
        double start = o->starts[i];
        if (!(time - start >= minimum))
            break; /* starts grow with depth: the rest are narrower */
        int exact = time_int && o->start_ints[i];
        PyObject *name = frame_name(known, stack, o->begins[i], o->ends[i]);
        PyObject *depth = PyLong_FromSsize_t(i + 1);
        PyObject *begin = number_object(start, o->start_ints[i]);
        PyObject *width = number_object(time - start, exact);
        PyObject *delta = differential ? PyFloat_FromDouble(o->deltas[i]) : Py_NewRef(Py_None);
        PyObject *frame = NULL;
        if (name && depth && begin && width && delta) {
            /* tuple.__new__(Frame, (...)): what Frame(...) makes, without its Python __new__ */
            PyObject *fields = PyTuple_Pack(5, name, depth, begin, width, delta);
            PyObject *args = fields ? PyTuple_Pack(1, fields) : NULL;
            if (args != NULL)
                frame = PyTuple_Type.tp_new((PyTypeObject *)frame_type, args, NULL);
            Py_XDECREF(args);
            Py_XDECREF(fields);
        }
        Py_XDECREF(name);
        Py_XDECREF(depth);
        Py_XDECREF(begin);
        Py_XDECREF(width);
        Py_XDECREF(delta);
        while (frame != NULL && PyList_GET_SIZE(out) <= i) {
            PyObject *level = PyList_New(0);
            if (level == NULL || PyList_Append(out, level) < 0) {
                Py_XDECREF(level);
                Py_CLEAR(frame);
                break;
            }
            Py_DECREF(level);
        }
        if (frame == NULL || PyList_Append(PyList_GET_ITEM(out, i), frame) < 0) {
            Py_XDECREF(frame);
            return -1;
        }
        Py_DECREF(frame);
    }
    return 0;
}

/* The lists of each depth, joined. */
static PyObject *
joined(PyObject *levels)
{
    PyObject *all = PyList_New(0);
    for (Py_ssize_t d = 0; all != NULL && d < PyList_GET_SIZE(levels); d++) {
        PyObject *level = PyList_GET_ITEM(levels, d);
        if (PyList_SetSlice(all, PyList_GET_SIZE(all), PyList_GET_SIZE(all), level) < 0)
            Py_CLEAR(all);
    }
    return all;
}

#if defined(__GNUC__)
#define PREFETCH(address) __builtin_prefetch(address)
#else
#define PREFETCH(address) ((void)(address))
#endif

/* The entries are sorted by text, so each is somewhere else in memory: ask for the
 * next ones early (the tuple, then its text's header, then the text's ends), so that
 * the merge does not wait for memory at each stack. A macro: GCC drops a call to a
 * function that only prefetches, as one without effects. */
#define PREFETCH_ENTRIES(entries, e)                                                          \
    do {                                                                                      \
        Py_ssize_t n_ = PyList_GET_SIZE(entries);                                             \
        if ((e) + 12 < n_)                                                                    \
            PREFETCH(PyList_GET_ITEM(entries, (e) + 12));                                     \
        PyObject *ahead_ = (e) + 8 < n_ ? PyList_GET_ITEM(entries, (e) + 8) : NULL;          \
        if (ahead_ != NULL && PyTuple_Check(ahead_) && PyTuple_GET_SIZE(ahead_) == 3)         \
            PREFETCH(PyTuple_GET_ITEM(ahead_, 0));                                            \
        ahead_ = (e) + 4 < n_ ? PyList_GET_ITEM(entries, (e) + 4) : NULL;                    \
        if (ahead_ != NULL && PyTuple_Check(ahead_) && PyTuple_GET_SIZE(ahead_) == 3 &&       \
            PyUnicode_Check(PyTuple_GET_ITEM(ahead_, 0))) {                                   \
            PyObject *text_ = PyTuple_GET_ITEM(ahead_, 0);                                    \
            const char *data_ = PyUnicode_DATA(text_);                                        \
            PREFETCH(data_);                                                                  \
            PREFETCH(data_ + PyUnicode_GET_LENGTH(text_) * PyUnicode_KIND(text_) - 1);       \
        }                                                                                     \
    } while (0)

/* Is `previous` the start of `stack`, followed there by a control character? */
static int
control_follows_prefix(PyObject *previous, PyObject *stack)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(previous);
    if (n >= PyUnicode_GET_LENGTH(stack) || PyUnicode_READ_CHAR(stack, n) >= ' ')
        return 0;
    return (int)PyUnicode_Tailmatch(stack, previous, 0, n, -1);
}

/* The merge itself; `out` gets a list of frames for each depth. 0: merged; 1: stopped
 * by check_order (see merge_frames); -1: error. */
static int
merge_into(PyObject *out, PyObject *known, PyObject *entries, double minimum, int differential,
           PyObject *frame_type, int check_order)
{
    Open open = {0};
    PyObject *previous = NULL; /* the stack whose frames are open */
    Py_ssize_t plen = 0;
    double time = 0;
    int time_int = 1, status = -1;
    for (Py_ssize_t e = 0; e < PyList_GET_SIZE(entries); e++) {
        PyObject *entry = PyList_GET_ITEM(entries, e);
        PREFETCH_ENTRIES(entries, e);
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 3 ||
            !PyUnicode_Check(PyTuple_GET_ITEM(entry, 0))) {
            PyErr_SetString(PyExc_TypeError, "entries must be (str, count, delta) tuples");
            goto done;
        }
        PyObject *stack = PyTuple_GET_ITEM(entry, 0);
        if (check_order && previous != NULL) {
            int found = control_follows_prefix(previous, stack);
            if (found != 0) {
                status = found;
                goto done;
            }
        }
        PyObject *count_obj = PyTuple_GET_ITEM(entry, 1);
        PyObject *delta_obj = PyTuple_GET_ITEM(entry, 2);
        int count_int = PyLong_Check(count_obj);
        double count = PyFloat_AsDouble(count_obj);
        double delta = delta_obj == Py_None ? 0.0 : PyFloat_AsDouble(delta_obj);
        if (PyErr_Occurred())
            goto done;
        Py_ssize_t clen = frames_length(stack);
        Py_ssize_t same = previous ? shared_frames(&open, previous, plen, stack, clen) : 0;
        if (same < open.count &&
            close_frames(out, frame_type, known, previous, &open, differential, same, time,
                         time_int, minimum) < 0)
            goto done;
        if (split_rest(&open, stack, clen, same) < 0)
            goto done;
        for (Py_ssize_t i = same; i < open.count; i++) {
            open.starts[i] = time;
            open.start_ints[i] = (char)time_int;
            open.deltas[i] = 0.0;
        }
        if (open.count > same)
            open.deltas[open.count - 1] = delta;
        Py_XSETREF(previous, Py_NewRef(stack));
        plen = clen;
        time += count;
        time_int = time_int && count_int;
    }
    if (open.count > 0 && close_frames(out, frame_type, known, previous, &open, differential,
                                       0, time, time_int, minimum) < 0)
        goto done;
    status = 0;
done:
    Py_XDECREF(previous);
    open_free(&open);
    return status;
}

static PyObject *
merge_frames(PyObject *module, PyObject *args)
{
    PyObject *entries, *frame_type;
    double minimum;
    int differential, check_order = 0;
    if (!PyArg_ParseTuple(args, "O!dpO|p:merge_frames", &PyList_Type, &entries, &minimum,
                          &differential, &frame_type, &check_order))
        return NULL;
    if (!PyType_Check(frame_type) || !PyType_IsSubtype((PyTypeObject *)frame_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "frame_type must be a tuple type (a NamedTuple)");
        return NULL;
    }
    PyObject *levels = PyList_New(0), *known = PyDict_New(), *frames = NULL;
    int status = levels != NULL && known != NULL
                     ? merge_into(levels, known, entries, minimum, differential, frame_type,
                                  check_order)
                     : -1;
    if (status == 0)
        frames = joined(levels);
    else if (status == 1)
        frames = Py_NewRef(Py_None);
    Py_XDECREF(levels);
    Py_XDECREF(known);
    return frames;
}

/* -- frame_elements ------------------------------------------------------------------ */

typedef struct {
    char *data;
    size_t len, cap;
} Text;

/* Room for n more bytes (the slow path of text_add). */
static int
text_grow(Text *t, size_t n)
{
    size_t cap = t->cap ? t->cap : 4096;
    while (cap < t->len + n)
        cap *= 2;
    char *data = PyMem_Realloc(t->data, cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    t->data = data;
    t->cap = cap;
    return 0;
}

static inline int
text_add(Text *t, const char *s, size_t n)
{
    if (n == 0) /* memcpy to a buffer not yet allocated (NULL) is undefined, even of 0 */
        return 0;
    if (t->len + n > t->cap && text_grow(t, n) < 0)
        return -1;
    memcpy(t->data + t->len, s, n);
    t->len += n;
    return 0;
}

/* A string literal: its length is known when compiling. */
#define TEXT_LIT(t, literal) text_add((t), "" literal, sizeof(literal) - 1)

static int
text_cstr(Text *t, const char *s)
{
    return text_add(t, s, strlen(s));
}

static int
text_str(Text *t, PyObject *str)
{
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(str, &n);
    return s == NULL ? -1 : text_add(t, s, (size_t)n);
}

/* The decimal digits of `value`, ending at `end`, with a comma between groups of three
 * when `commas`; returns where they begin. */
static char *
decimal(char *end, unsigned long long value, int commas)
{
    int count = 0;
    do {
        if (commas && count > 0 && count % 3 == 0)
            *--end = ',';
        *--end = (char)('0' + value % 10);
        value /= 10;
        count++;
    } while (value);
    return end;
}

/* Is printf's decimal point '.'? (Python never sets LC_NUMERIC itself, but a program
 * embedding flamed could.) Checked once per frame_elements call. */
static int printf_ok;

/* Python's format(value, ".Nf") into buf. Python rounds the double's exact value
 * correctly, ties to even. So does this: with a 64-bit long double mantissa, value * 10**N
 * (N <= 2) is exact, and rint() rounds it to an integer, ties to even, as glibc's printf
 * rounds; the digits are then written here (printf costs more than the rest of a frame). */
static int
format_fixed(char *buf, size_t size, double value, int digits)
{
#if LDBL_MANT_DIG >= 64
    if (digits >= 0 && digits <= 2 && fabs(value) < 1e15 && size >= 32) {
        long double scale = digits == 0 ? 1 : digits == 1 ? 10 : 100;
        long long whole = (long long)rintl((long double)value * scale);
        unsigned long long magnitude = whole < 0 ? -(unsigned long long)whole : (unsigned long long)whole;
        int sign = whole < 0 || (whole == 0 && signbit(value));
        char digits_text[32], *end = digits_text + sizeof digits_text;
        char *start = decimal(end, magnitude, 0);
        while (end - start <= digits) /* at least one digit before the point */
            *--start = '0';
        char *out = buf;
        if (sign)
            *out++ = '-';
        size_t before = (size_t)(end - start) - (size_t)digits;
        memcpy(out, start, before);
        out += before;
        if (digits) {
            *out++ = '.';
            memcpy(out, start + before, (size_t)digits);
            out += digits;
        }
        *out = '\0';
        return 0;
    }
#endif
    if (printf_ok && isfinite(value) && fabs(value) < 1e30) {
        snprintf(buf, size, "%.*f", digits, value);
        return 0;
    }
    char *py = PyOS_double_to_string(value, 'f', digits, 0, NULL);
    if (py == NULL)
        return -1;
    snprintf(buf, size, "%s", py);
    PyMem_Free(py);
    if (strlen(buf) + 1 >= size) {
        PyErr_SetString(PyExc_OverflowError, "number too long for the C writer");
        return -1;
    }
    return 0;
}

static int
text_fixed(Text *t, double value, int digits)
{
    char s[400];
    return format_fixed(s, sizeof s, value, digits) < 0 ? -1 : text_cstr(t, s);
}

/* float(text) of what format_fixed printed: its digits over 10**places, one correctly
 * rounded division, as float() rounds the decimal correctly. */
static double
parse_fixed(const char *text, int places)
{
    long long digits = 0;
    int negative = *text == '-';
    for (const char *p = text + negative; *p; p++)
        if (*p >= '0' && *p <= '9')
            digits = digits * 10 + (*p - '0');
    double scale = 1;
    for (int i = 0; i < places; i++)
        scale *= 10;
    return (negative ? -(double)digits : (double)digits) / scale;
}

static int
text_long(Text *t, long long value, int commas)
{
    char out[48], *end = out + sizeof out;
    unsigned long long magnitude = value < 0 ? -(unsigned long long)value : (unsigned long long)value;
    char *start = decimal(end, magnitude, commas);
    if (value < 0)
        *--start = '-';
    return text_add(t, start, (size_t)(end - start));
}

/* svg.number: samples for data attributes; ints plainly, fractions as repr(float). */
static int
text_number(Text *t, PyObject *value)
{
    if (PyLong_CheckExact(value)) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (!overflow && !(v == -1 && PyErr_Occurred()))
            return text_long(t, v, 0);
        PyErr_Clear();
        PyObject *s = PyObject_Str(value);
        if (s == NULL)
            return -1;
        int status = text_str(t, s);
        Py_DECREF(s);
        return status;
    }
    double v = PyFloat_AsDouble(value);
    if (v == -1.0 && PyErr_Occurred())
        return -1;
    if (v == floor(v) && fabs(v) < 9e15)
        return text_long(t, (long long)v, 0);
    if (v == floor(v)) { /* str(int(value)) */
        PyObject *whole = PyLong_FromDouble(v);
        PyObject *s = whole ? PyObject_Str(whole) : NULL;
        Py_XDECREF(whole);
        int status = s ? text_str(t, s) : -1;
        Py_XDECREF(s);
        return status;
    }
    char *s = PyOS_double_to_string(v, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (s == NULL)
        return -1;
    int status = text_cstr(t, s);
    PyMem_Free(s);
    return status;
}

/* svg.xml_text of an already clean text: &, <, > and CR as references. */
static int
text_escaped(Text *t, const char *s, Py_ssize_t n)
{
    Py_ssize_t plain = 0; /* where the text not yet copied begins */
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *ref = NULL;
        switch (s[i]) {
        case '&': ref = "&amp;"; break;
        case '<': ref = "&lt;"; break;
        case '>': ref = "&gt;"; break;
        case '\r': ref = "&#13;"; break;
        }
        if (ref == NULL)
            continue;
        if (text_add(t, s + plain, (size_t)(i - plain)) < 0 || text_cstr(t, ref) < 0)
            return -1;
        plain = i + 1;
    }
    return text_add(t, s + plain, (size_t)(n - plain));
}

typedef struct {
    double per_sample, char_width, factor, full, max_delta;
    int negate, truncate_left;
} Numbers;

/* svg.fit_label, then escaped: the name, cut with ".." at the right (or left) end when
 * too long, or nothing. */
static int
text_label(Text *t, PyObject *clean, PyObject *escaped, double pixels, const Numbers *n)
{
    double fit = pixels / n->char_width;
    if (!(fit >= 3))
        return 0;
    Py_ssize_t len = PyUnicode_GET_LENGTH(clean);
    if (fit >= (double)len)
        return text_str(t, escaped);
    Py_ssize_t kept = (Py_ssize_t)fit - 2, from = n->truncate_left ? len - kept : 0;
    if (n->truncate_left && TEXT_LIT(t, "..") < 0)
        return -1;
    int status;
    if (PyUnicode_IS_ASCII(clean)) { /* one byte a character: cut the bytes */
        status = text_escaped(t, (const char *)PyUnicode_DATA(clean) + from, kept);
    }
    else {
        PyObject *cut = PyUnicode_Substring(clean, from, from + kept);
        Py_ssize_t size;
        const char *bytes = cut ? PyUnicode_AsUTF8AndSize(cut, &size) : NULL;
        status = bytes ? text_escaped(t, bytes, size) : -1;
        Py_XDECREF(cut);
    }
    if (status < 0 || (!n->truncate_left && TEXT_LIT(t, "..") < 0))
        return -1;
    return 0;
}

/* NAME (N samples, P%), N with thousands separators and `count_one` for one. */
static int
text_title(Text *t, const Numbers *n, Py_ssize_t depth, double width, PyObject *delta_obj,
           PyObject *escaped, PyObject *count_name, PyObject *count_one)
{
    double samples = rint(width * n->factor);
    if (!(fabs(samples) < 9e18)) {
        PyErr_SetString(PyExc_OverflowError, "count too large for the C writer");
        return -1;
    }
    if ((depth ? text_str(t, escaped) : TEXT_LIT(t, "all")) < 0 || TEXT_LIT(t, " (") < 0 ||
        text_long(t, (long long)samples, 1) < 0 || TEXT_LIT(t, " ") < 0 ||
        text_str(t, samples == 1 ? count_one : count_name) < 0)
        return -1;
    if (!depth)
        return TEXT_LIT(t, ", 100%)");
    if (TEXT_LIT(t, ", ") < 0 ||
        (n->full ? text_fixed(t, 100 * samples / n->full, 2) : TEXT_LIT(t, "0.00")) < 0)
        return -1;
    if (delta_obj == Py_None)
        return TEXT_LIT(t, "%)");
    double delta = PyFloat_AsDouble(delta_obj);
    if (delta == -1.0 && PyErr_Occurred())
        return -1;
    if (n->negate)
        delta = -delta;
    if (delta == 0)
        delta = 0.0; /* no "-0.00%" */
    if (TEXT_LIT(t, "%; ") < 0 || (delta > 0 && TEXT_LIT(t, "+") < 0) ||
        (n->full ? text_fixed(t, 100 * delta / n->full, 2) : TEXT_LIT(t, "0.00")) < 0)
        return -1;
    return TEXT_LIT(t, "%)");
}

/* palette.diff_color */
static int
text_diff_color(Text *t, double delta, double max_delta, int negate)
{
    char color[64];
    if (negate)
        delta = -delta;
    if (delta > 0)
        snprintf(color, sizeof color, "rgb(255,%d,%d)", (int)(210 * (max_delta - delta) / max_delta),
                 (int)(210 * (max_delta - delta) / max_delta));
    else if (delta < 0)
        snprintf(color, sizeof color, "rgb(%d,%d,255)", (int)(210 * (max_delta + delta) / max_delta),
                 (int)(210 * (max_delta + delta) / max_delta));
    else
        snprintf(color, sizeof color, "rgb(255,255,255)");
    return text_cstr(t, color);
}

/* What a frame shows: (clean name, escaped name, colour or None, extras or None), from
 * `looks` (keyed by the name, None for the root) or, the first time, from
 * describe(frame), then kept. Extras, from --nameattr: (group classes, group attributes,
 * title or None, the link's opening tag or ""). */
static int
valid_look(PyObject *look)
{
    if (!PyTuple_Check(look) || PyTuple_GET_SIZE(look) != 4 ||
        !PyUnicode_Check(PyTuple_GET_ITEM(look, 0)) ||
        !PyUnicode_Check(PyTuple_GET_ITEM(look, 1)))
        return 0;
    PyObject *color = PyTuple_GET_ITEM(look, 2), *extras = PyTuple_GET_ITEM(look, 3);
    if (color != Py_None && !PyUnicode_Check(color))
        return 0;
    if (extras == Py_None)
        return 1;
    if (!PyTuple_Check(extras) || PyTuple_GET_SIZE(extras) != 4)
        return 0;
    for (Py_ssize_t i = 0; i < 4; i++) {
        PyObject *item = PyTuple_GET_ITEM(extras, i);
        if (!PyUnicode_Check(item) && !(i == 2 && item == Py_None))
            return 0;
    }
    return 1;
}

static PyObject *
frame_look(PyObject *looks, PyObject *describe, PyObject *frame, PyObject *name,
           Py_ssize_t depth)
{
    PyObject *key = depth ? name : Py_None;
    PyObject *look = PyDict_GetItemWithError(looks, key);
    if (look != NULL || PyErr_Occurred())
        return look;
    look = PyObject_CallOneArg(describe, frame);
    if (look == NULL)
        return NULL;
    if (!valid_look(look)) {
        Py_DECREF(look);
        PyErr_SetString(PyExc_TypeError,
                        "describe must return (str, str, str or None, "
                        "(str, str, str or None, str) or None)");
        return NULL;
    }
    int status = PyDict_SetItem(looks, key, look);
    Py_DECREF(look); /* the dict holds it */
    return status < 0 ? NULL : look;
}

static int
frame_element(Text *t, PyObject *frame, const Numbers *n, PyObject *looks, PyObject *describe,
              PyObject *rows, PyObject *strings)
{
    if (!PyTuple_Check(frame) || PyTuple_GET_SIZE(frame) != 5) {
        PyErr_SetString(PyExc_TypeError, "frames must be Frame tuples");
        return -1;
    }
    PyObject *name = PyTuple_GET_ITEM(frame, 0);
    Py_ssize_t depth = PyLong_AsSsize_t(PyTuple_GET_ITEM(frame, 1));
    PyObject *start_obj = PyTuple_GET_ITEM(frame, 2), *width_obj = PyTuple_GET_ITEM(frame, 3);
    PyObject *delta_obj = PyTuple_GET_ITEM(frame, 4);
    double start = PyFloat_AsDouble(start_obj), width = PyFloat_AsDouble(width_obj);
    if (PyErr_Occurred())
        return -1;
    PyObject *look = frame_look(looks, describe, frame, name, depth);
    if (look == NULL)
        return -1;
    PyObject *row =
        depth >= 0 && depth < PyList_GET_SIZE(rows) ? PyList_GET_ITEM(rows, depth) : NULL;
    if (row == NULL) {
        PyErr_SetString(PyExc_IndexError, "frame deeper than its rows");
        return -1;
    }
    PyObject *clean = PyTuple_GET_ITEM(look, 0), *escaped = PyTuple_GET_ITEM(look, 1);
    PyObject *color = PyTuple_GET_ITEM(look, 2), *extras = PyTuple_GET_ITEM(look, 3);
    /* --nameattr: classes and attributes of the group, a title, a link around it */
    PyObject *classes = NULL, *group = NULL, *title = Py_None, *opening = NULL;
    if (extras != Py_None) {
        classes = PyTuple_GET_ITEM(extras, 0);
        group = PyTuple_GET_ITEM(extras, 1);
        title = PyTuple_GET_ITEM(extras, 2);
        opening = PyTuple_GET_ITEM(extras, 3);
        if (PyUnicode_GET_LENGTH(opening) == 0)
            opening = NULL;
    }
    PyObject *sep = PyTuple_GET_ITEM(strings, 0), *end_sep = PyTuple_GET_ITEM(strings, 1);
    PyObject *count_name = PyTuple_GET_ITEM(strings, 2);
    PyObject *count_one = PyTuple_GET_ITEM(strings, 3);
    PyObject *rect_height = PyTuple_GET_ITEM(strings, 4);
    double x1 = 10 + start * n->per_sample; /* XPAD */
    double x2 = 10 + (start + width) * n->per_sample;
    if (!(fabs(x1) < 1e15 && fabs(x2) < 1e15)) { /* parse_fixed's digits fit a long long */
        PyErr_SetString(PyExc_OverflowError, "coordinates out of range for the C writer");
        return -1;
    }
    char x1_text[64], x2_text[64];
    if (format_fixed(x1_text, sizeof x1_text, x1, 1) < 0 ||
        format_fixed(x2_text, sizeof x2_text, x2, 1) < 0)
        return -1;
    double rect_width = parse_fixed(x2_text, 1) - parse_fixed(x1_text, 1);
    if ((opening && text_str(t, opening) < 0) || TEXT_LIT(t, "<g class=\"fg-f") < 0 ||
        (classes && text_str(t, classes) < 0) || TEXT_LIT(t, "\" data-depth=\"") < 0 ||
        text_long(t, depth, 0) < 0 || TEXT_LIT(t, "\" data-start=\"") < 0 ||
        text_number(t, start_obj) < 0 || TEXT_LIT(t, "\" data-width=\"") < 0 ||
        text_number(t, width_obj) < 0 || TEXT_LIT(t, "\"") < 0 ||
        (group && text_str(t, group) < 0) || TEXT_LIT(t, ">") < 0 || text_str(t, sep) < 0 ||
        TEXT_LIT(t, "<title>") < 0 ||
        (title != Py_None
             ? text_str(t, title)
             : text_title(t, n, depth, width, delta_obj, escaped, count_name, count_one)) < 0 ||
        TEXT_LIT(t, "</title>") < 0 || text_str(t, sep) < 0 || TEXT_LIT(t, "<rect x=\"") < 0 ||
        text_cstr(t, x1_text) < 0 || TEXT_LIT(t, "\" y=\"") < 0 ||
        text_str(t, PyTuple_GET_ITEM(row, 0)) < 0 || TEXT_LIT(t, "\" width=\"") < 0 ||
        text_fixed(t, rect_width, 1) < 0 || TEXT_LIT(t, "\" height=\"") < 0 ||
        text_str(t, rect_height) < 0 || TEXT_LIT(t, "\" fill=\"") < 0)
        return -1;
    if (color != Py_None) {
        if (text_str(t, color) < 0)
            return -1;
    }
    else {
        double delta = delta_obj == Py_None ? 0.0 : PyFloat_AsDouble(delta_obj);
        if (PyErr_Occurred() || text_diff_color(t, delta, n->max_delta, n->negate) < 0)
            return -1;
    }
    if (TEXT_LIT(t, "\" rx=\"2\" ry=\"2\"/>") < 0 || text_str(t, sep) < 0 ||
        TEXT_LIT(t, "<text x=\"") < 0 || text_fixed(t, x1 + 3, 2) < 0 ||
        TEXT_LIT(t, "\" y=\"") < 0 || text_str(t, PyTuple_GET_ITEM(row, 1)) < 0 ||
        TEXT_LIT(t, "\">") < 0 || text_label(t, clean, escaped, x2 - x1, n) < 0 ||
        TEXT_LIT(t, "</text>") < 0 || text_str(t, end_sep) < 0 || TEXT_LIT(t, "</g>") < 0 ||
        (opening && TEXT_LIT(t, "</a>") < 0) || TEXT_LIT(t, "\n") < 0)
        return -1;
    return 0;
}

static PyObject *
frame_elements(PyObject *module, PyObject *args)
{
    PyObject *frames, *looks, *describe, *rows, *strings;
    Py_ssize_t start, stop;
    Numbers n;
    if (!PyArg_ParseTuple(args, "O!nnO!OO!(dddddpp)O!:frame_elements", &PyList_Type, &frames,
                          &start, &stop, &PyDict_Type, &looks, &describe, &PyList_Type, &rows,
                          &n.per_sample, &n.char_width, &n.factor, &n.full, &n.max_delta,
                          &n.negate, &n.truncate_left, &PyTuple_Type, &strings))
        return NULL;
    int strings_ok = PyTuple_GET_SIZE(strings) == 5;
    for (Py_ssize_t i = 0; strings_ok && i < 5; i++)
        strings_ok = PyUnicode_Check(PyTuple_GET_ITEM(strings, i));
    if (!strings_ok) {
        PyErr_SetString(PyExc_TypeError,
                        "strings: (sep, end_sep, count_name, count_one, rect_height), all str");
        return NULL;
    }
    if (start < 0)
        start = 0;
    if (stop > PyList_GET_SIZE(frames))
        stop = PyList_GET_SIZE(frames);
    printf_ok = strcmp(localeconv()->decimal_point, ".") == 0;
    Text t = {0};
    for (Py_ssize_t i = start; i < stop; i++) {
        PyObject *frame = PyList_GET_ITEM(frames, i);
        Py_INCREF(frame); /* describe() runs Python code */
        int status = frame_element(&t, frame, &n, looks, describe, rows, strings);
        Py_DECREF(frame);
        if (status < 0) {
            PyMem_Free(t.data);
            return NULL;
        }
    }
    PyObject *result = PyUnicode_DecodeUTF8(t.data ? t.data : "", (Py_ssize_t)t.len, NULL);
    PyMem_Free(t.data);
    return result;
}

static PyMethodDef methods[] = {
    {"merge_frames", merge_frames, METH_VARARGS,
     "merge_frames(entries, minimum, differential, frame_type[, check_order]) -> frames"},
    {"frame_elements", frame_elements, METH_VARARGS,
     "frame_elements(frames, start, stop, looks, describe, rows, numbers, strings) -> str"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "flamed.render._speedups",
    .m_doc = "C loops for the flame graph's layout and SVG (optional; Python is the reference).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&speedups_module);
}
