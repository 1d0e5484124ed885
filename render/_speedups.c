/* flamed.render._speedups: the flame graph's two loops over every frame, in C.
 *
 * Optional: layout.py and svg.py are complete and are the reference; these do the
 * same arithmetic and print the same text.
 *
 * - merge_frames(entries, minimum, differential, frame_type) -> list of frames: the
 *   merge of sorted stacks into frames of layout.merge_frames, sorted by depth, then
 *   start. Counts are summed as C doubles, so the caller uses it only where every sum
 *   is exact (totals below 2**53).
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

typedef struct {
    Py_ssize_t *ends;  /* where each frame of the current stack ends (index of ';' or len) */
    Py_ssize_t *begins;
    Py_ssize_t count;
    Py_ssize_t cap;
} Split;

static int
split_reserve(Split *s, Py_ssize_t n)
{
    if (n <= s->cap)
        return 0;
    Py_ssize_t cap = s->cap ? s->cap : 64;
    while (cap < n)
        cap *= 2;
    Py_ssize_t *ends = PyMem_Realloc(s->ends, cap * sizeof *ends);
    if (ends == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    s->ends = ends;
    Py_ssize_t *begins = PyMem_Realloc(s->begins, cap * sizeof *begins);
    if (begins == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    s->begins = begins;
    s->cap = cap;
    return 0;
}

/* The frames of a stack: split on ';', empty trailing frames dropped (layout.split_frames). */
static int
split_stack(PyObject *stack, Split *s)
{
    int kind = PyUnicode_KIND(stack);
    const void *data = PyUnicode_DATA(stack);
    Py_ssize_t len = PyUnicode_GET_LENGTH(stack);
    s->count = 0;
    Py_ssize_t begin = 0;
    if (kind == PyUnicode_1BYTE_KIND) {
        const char *text = data;
        for (;;) {
            const char *semi = memchr(text + begin, ';', len - begin);
            Py_ssize_t end = semi ? semi - text : len;
            if (split_reserve(s, s->count + 1) < 0)
                return -1;
            s->begins[s->count] = begin;
            s->ends[s->count] = end;
            s->count++;
            if (semi == NULL)
                break;
            begin = end + 1;
        }
        begin = len + 1; /* skip the loop below */
    }
    for (Py_ssize_t i = begin; i <= len; i++) {
        if (i < len && PyUnicode_READ(kind, data, i) != ';')
            continue;
        if (split_reserve(s, s->count + 1) < 0)
            return -1;
        s->begins[s->count] = begin;
        s->ends[s->count] = i;
        s->count++;
        begin = i + 1;
    }
    while (s->count > 0 && s->ends[s->count - 1] == s->begins[s->count - 1])
        s->count--;
    return 0;
}

/* How many leading frames two stacks share (same text up to the end of each frame). */
static Py_ssize_t
shared_frames(PyObject *a, const Split *sa, PyObject *b, const Split *sb)
{
    Py_ssize_t limit = sa->count < sb->count ? sa->count : sb->count;
    if (limit == 0)
        return 0;
    int ka = PyUnicode_KIND(a), kb = PyUnicode_KIND(b);
    const void *da = PyUnicode_DATA(a), *db = PyUnicode_DATA(b);
    Py_ssize_t same = 0;
    for (Py_ssize_t f = 0; f < limit; f++) {
        if (sa->ends[f] != sb->ends[f])
            break;
        Py_ssize_t i = sa->begins[f], end = sa->ends[f];
        if (ka == kb && ka == PyUnicode_1BYTE_KIND) {
            if (memcmp((const char *)da + i, (const char *)db + i, end - i) != 0)
                break;
        }
        else {
            for (; i < end; i++)
                if (PyUnicode_READ(ka, da, i) != PyUnicode_READ(kb, db, i))
                    break;
            if (i < end)
                break;
        }
        same++;
    }
    return same;
}

typedef struct {
    double *starts;
    char *start_ints;  /* was the start an exact int (all counts before it ints)? */
    double *deltas;
    Py_ssize_t cap;
} Open;

static int
open_reserve(Open *o, Py_ssize_t n)
{
    if (n <= o->cap)
        return 0;
    Py_ssize_t cap = o->cap ? o->cap : 64;
    while (cap < n)
        cap *= 2;
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

static PyObject *
number_object(double value, int exact_int)
{
    return exact_int ? PyLong_FromDouble(value) : PyFloat_FromDouble(value);
}

/* Keep the frames [first, depth) of `stack` ending at `time` that are wide enough, each
 * in the list of its depth (out[depth - 1]): at one depth frames close in the order of
 * their starts, so the lists joined are sorted by depth, then start. */
static int
close_frames(PyObject *out, PyObject *frame_type, PyObject *stack, const Split *s,
             const Open *o, int differential, Py_ssize_t first, double time, int time_int,
             double minimum)
{
    for (Py_ssize_t i = first; i < s->count; i++) {
        double start = o->starts[i];
        if (!(time - start >= minimum))
            break; /* starts grow with depth: the rest are narrower */
        int exact = time_int && o->start_ints[i];
        PyObject *name = PyUnicode_Substring(stack, s->begins[i], s->ends[i]);
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

static PyObject *
merge_frames(PyObject *module, PyObject *args)
{
    PyObject *entries, *frame_type;
    double minimum;
    int differential;
    if (!PyArg_ParseTuple(args, "O!dpO:merge_frames", &PyList_Type, &entries, &minimum,
                          &differential, &frame_type))
        return NULL;
    if (!PyType_Check(frame_type) || !PyType_IsSubtype((PyTypeObject *)frame_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "frame_type must be a tuple type (a NamedTuple)");
        return NULL;
    }
    PyObject *out = PyList_New(0);
    Split splits[2] = {{0}, {0}};
    Open open = {0};
    PyObject *names = NULL; /* the previous stack */
    int cur = 0;
    double time = 0;
    int time_int = 1;
    if (out == NULL)
        return NULL;
    for (Py_ssize_t e = 0; e < PyList_GET_SIZE(entries); e++) {
        PyObject *entry = PyList_GET_ITEM(entries, e);
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 3 ||
            !PyUnicode_Check(PyTuple_GET_ITEM(entry, 0))) {
            PyErr_SetString(PyExc_TypeError, "entries must be (str, count, delta) tuples");
            goto error;
        }
        PyObject *stack = PyTuple_GET_ITEM(entry, 0);
        PyObject *count_obj = PyTuple_GET_ITEM(entry, 1);
        PyObject *delta_obj = PyTuple_GET_ITEM(entry, 2);
        int count_int = PyLong_Check(count_obj);
        double count = PyFloat_AsDouble(count_obj);
        double delta = delta_obj == Py_None ? 0.0 : PyFloat_AsDouble(delta_obj);
        if (PyErr_Occurred())
            goto error;
        Split *frames = &splits[cur], *previous = &splits[1 - cur];
        if (split_stack(stack, frames) < 0)
            goto error;
        Py_ssize_t same = names ? shared_frames(names, previous, stack, frames) : 0;
        if (names && same < previous->count &&
            close_frames(out, frame_type, names, previous, &open, differential, same, time,
                         time_int, minimum) < 0)
            goto error;
        if (open_reserve(&open, frames->count) < 0)
            goto error;
        for (Py_ssize_t i = same; i < frames->count; i++) {
            open.starts[i] = time;
            open.start_ints[i] = (char)time_int;
            open.deltas[i] = 0.0;
        }
        if (frames->count > same)
            open.deltas[frames->count - 1] = delta;
        Py_XSETREF(names, Py_NewRef(stack));
        cur = 1 - cur;
        time += count;
        time_int = time_int && count_int;
    }
    if (names && close_frames(out, frame_type, names, &splits[1 - cur], &open, differential, 0,
                              time, time_int, minimum) < 0)
        goto error;
    Py_XDECREF(names);
    for (int i = 0; i < 2; i++) {
        PyMem_Free(splits[i].ends);
        PyMem_Free(splits[i].begins);
    }
    PyMem_Free(open.starts);
    PyMem_Free(open.start_ints);
    PyMem_Free(open.deltas);
    PyObject *sorted = PyList_New(0);
    for (Py_ssize_t d = 0; sorted != NULL && d < PyList_GET_SIZE(out); d++) {
        PyObject *level = PyList_GET_ITEM(out, d);
        if (PyList_SetSlice(sorted, PyList_GET_SIZE(sorted), PyList_GET_SIZE(sorted), level) < 0)
            Py_CLEAR(sorted);
    }
    Py_DECREF(out);
    return sorted;
error:
    Py_XDECREF(names);
    Py_DECREF(out);
    for (int i = 0; i < 2; i++) {
        PyMem_Free(splits[i].ends);
        PyMem_Free(splits[i].begins);
    }
    PyMem_Free(open.starts);
    PyMem_Free(open.start_ints);
    PyMem_Free(open.deltas);
    return NULL;
}

/* -- frame_elements ------------------------------------------------------------------ */

typedef struct {
    char *data;
    size_t len, cap;
} Text;

static int
text_add(Text *t, const char *s, size_t n)
{
    if (n == 0) /* memcpy to a buffer not yet allocated (NULL) is undefined, even of 0 */
        return 0;
    if (t->len + n > t->cap) {
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
    }
    memcpy(t->data + t->len, s, n);
    t->len += n;
    return 0;
}

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

/* Is printf's decimal point '.'? (Python never sets LC_NUMERIC itself, but a program
 * embedding flamed could.) Checked once per frame_elements call. */
static int printf_ok;

/* Python's format(value, ".Nf") into buf. Python rounds the double's exact value
 * correctly, ties to even. So does this: with a 64-bit long double mantissa, value * 10**N
 * (N <= 2) is exact, and rint() rounds it to an integer, ties to even; glibc's printf
 * rounds the same way. */
static int
format_fixed(char *buf, size_t size, double value, int digits)
{
#if LDBL_MANT_DIG >= 64
    if (digits >= 0 && digits <= 2 && fabs(value) < 1e15) {
        long double scale = digits == 0 ? 1 : digits == 1 ? 10 : 100;
        long long whole = (long long)rintl((long double)value * scale);
        long long magnitude = whole < 0 ? -whole : whole;
        long long unit = (long long)scale;
        int sign = whole < 0 || (whole == 0 && signbit(value));
        if (digits == 0)
            snprintf(buf, size, "%s%lld", sign ? "-" : "", magnitude);
        else
            snprintf(buf, size, "%s%lld.%0*lld", sign ? "-" : "", magnitude / unit, digits,
                     magnitude % unit);
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
    char digits[32], out[48];
    int n = snprintf(digits, sizeof digits, "%lld", value < 0 ? -value : value);
    int o = 0;
    if (value < 0)
        out[o++] = '-';
    for (int i = 0; i < n; i++) {
        if (commas && i > 0 && (n - i) % 3 == 0)
            out[o++] = ',';
        out[o++] = digits[i];
    }
    return text_add(t, out, (size_t)o);
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
text_escaped(Text *t, PyObject *str)
{
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(str, &n);
    if (s == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *ref = NULL;
        switch (s[i]) {
        case '&': ref = "&amp;"; break;
        case '<': ref = "&lt;"; break;
        case '>': ref = "&gt;"; break;
        case '\r': ref = "&#13;"; break;
        }
        if (ref ? text_cstr(t, ref) < 0 : text_add(t, s + i, 1) < 0)
            return -1;
    }
    return 0;
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
    Py_ssize_t kept = (Py_ssize_t)fit - 2;
    PyObject *cut = n->truncate_left ? PyUnicode_Substring(clean, len - kept, len)
                                     : PyUnicode_Substring(clean, 0, kept);
    if (cut == NULL)
        return -1;
    int status = (n->truncate_left && text_cstr(t, "..") < 0) || text_escaped(t, cut) < 0 ||
                 (!n->truncate_left && text_cstr(t, "..") < 0);
    Py_DECREF(cut);
    return status ? -1 : 0;
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
    if ((depth ? text_str(t, escaped) : text_cstr(t, "all")) < 0 || text_cstr(t, " (") < 0 ||
        text_long(t, (long long)samples, 1) < 0 || text_cstr(t, " ") < 0 ||
        text_str(t, samples == 1 ? count_one : count_name) < 0)
        return -1;
    if (!depth)
        return text_cstr(t, ", 100%)");
    if (text_cstr(t, ", ") < 0 ||
        (n->full ? text_fixed(t, 100 * samples / n->full, 2) : text_cstr(t, "0.00")) < 0)
        return -1;
    if (delta_obj == Py_None)
        return text_cstr(t, "%)");
    double delta = PyFloat_AsDouble(delta_obj);
    if (delta == -1.0 && PyErr_Occurred())
        return -1;
    if (n->negate)
        delta = -delta;
    if (delta == 0)
        delta = 0.0; /* no "-0.00%" */
    if (text_cstr(t, "%; ") < 0 || (delta > 0 && text_cstr(t, "+") < 0) ||
        (n->full ? text_fixed(t, 100 * delta / n->full, 2) : text_cstr(t, "0.00")) < 0)
        return -1;
    return text_cstr(t, "%)");
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
    char depth_text[32];
    snprintf(depth_text, sizeof depth_text, "%zd", depth);
    if ((opening && text_str(t, opening) < 0) || text_cstr(t, "<g class=\"fg-f") < 0 ||
        (classes && text_str(t, classes) < 0) || text_cstr(t, "\" data-depth=\"") < 0 ||
        text_cstr(t, depth_text) < 0 || text_cstr(t, "\" data-start=\"") < 0 ||
        text_number(t, start_obj) < 0 || text_cstr(t, "\" data-width=\"") < 0 ||
        text_number(t, width_obj) < 0 || text_cstr(t, "\"") < 0 ||
        (group && text_str(t, group) < 0) || text_cstr(t, ">") < 0 || text_str(t, sep) < 0 ||
        text_cstr(t, "<title>") < 0 ||
        (title != Py_None
             ? text_str(t, title)
             : text_title(t, n, depth, width, delta_obj, escaped, count_name, count_one)) < 0 ||
        text_cstr(t, "</title>") < 0 || text_str(t, sep) < 0 || text_cstr(t, "<rect x=\"") < 0 ||
        text_cstr(t, x1_text) < 0 || text_cstr(t, "\" y=\"") < 0 ||
        text_str(t, PyTuple_GET_ITEM(row, 0)) < 0 || text_cstr(t, "\" width=\"") < 0 ||
        text_fixed(t, rect_width, 1) < 0 || text_cstr(t, "\" height=\"") < 0 ||
        text_str(t, rect_height) < 0 || text_cstr(t, "\" fill=\"") < 0)
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
    if (text_cstr(t, "\" rx=\"2\" ry=\"2\"/>") < 0 || text_str(t, sep) < 0 ||
        text_cstr(t, "<text x=\"") < 0 || text_fixed(t, x1 + 3, 2) < 0 ||
        text_cstr(t, "\" y=\"") < 0 || text_str(t, PyTuple_GET_ITEM(row, 1)) < 0 ||
        text_cstr(t, "\">") < 0 || text_label(t, clean, escaped, x2 - x1, n) < 0 ||
        text_cstr(t, "</text>") < 0 || text_str(t, end_sep) < 0 || text_cstr(t, "</g>") < 0 ||
        (opening && text_cstr(t, "</a>") < 0) || text_cstr(t, "\n") < 0)
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
     "merge_frames(entries, minimum, differential, frame_type) -> frames"},
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
