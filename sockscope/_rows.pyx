# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""JSON rows straight from Arrow columns: ``{"key":cell,...}`` objects, one per line.

One pass over the columns' buffers writes every cell's text into one output buffer:
integers and nanosecond timestamps are formatted here, floats by CPython's shortest
round-trip repr (the text ``json.dumps`` gives), texts are copied between quotes unless they
need escaping (then Python's C escaper does it). Arrow's compute kernels did the same a
column at a time, through an intermediate text array per conversion step: that was a fifth
of a ``requests --json`` run.

Columns of a type without a fast path here arrive already rendered (``binary`` arrays of
JSON text, see ``sockscope.output``).
"""

from cpython.buffer cimport PyBUF_READ
from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.mem cimport PyMem_Free
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport (int8_t, int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t,
                          uintptr_t)
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy, memset
from libc.math cimport fabs, isfinite, llround, signbit

cimport cython

from json.encoder import encode_basestring_ascii as _jstr

import pyarrow as pa


cdef extern from "Python.h":
    char* PyOS_double_to_string(double val, char format_code, int precision, int flags, int* ptype) except NULL
    int Py_DTSF_ADD_DOT_0


cdef enum:
    K_NULL = 0      # every cell missing
    K_INT = 1       # int64
    K_TS = 2        # int64 nanoseconds since the epoch, UTC
    K_FLOAT = 3     # float64; NaN and infinities are missing
    K_BOOL = 4      # bits
    K_DICT = 5      # int32 codes into texts rendered once per category
    K_STR = 6       # UTF-8 text, quoted (escaped where needed)
    K_RAW = 7       # JSON text already


cdef struct Col:
    int kind
    int width               # bytes per value (K_INT: 1, 2, 4 or 8; K_DICT codes likewise)
    bint signed
    const uint8_t* valid    # validity bits (NULL: no missing cells)
    Py_ssize_t voff         # bit offset of row 0 in ``valid`` (and in bool ``vals``)
    const uint8_t* vals     # fixed-width values of row 0, or the bool bits
    const int32_t* offs     # text offsets of row 0 (K_STR, K_RAW), category offsets (K_DICT)
    const char* data        # text bytes (K_STR, K_RAW), rendered categories (K_DICT)
    const char* key         # '{"name":' or ',"name":'
    Py_ssize_t klen


cdef const char* _EMPTY = ""


cdef inline const uint8_t* _addr(buf):
    if buf is None:
        return <const uint8_t*>_EMPTY
    return <const uint8_t*><uintptr_t>buf.address


def prepare(arr):
    """An Arrow array -> (kind, arrays to keep alive), for :func:`render_rows`.

    Returns None for a type without a fast path (the caller renders those cells itself).
    Common types are used as they are (no cast: Arrow's cast would load pyarrow.compute,
    a tenth of a second of start-up for the JSON commands).
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if pa.types.is_null(t):
        return K_NULL, (arr,)
    if pa.types.is_timestamp(t):
        return (K_TS, (arr.view(pa.int64()),)) if t.unit == "ns" else None
    if pa.types.is_integer(t):
        return None if pa.types.is_uint64(t) else (K_INT, (arr,))      # uint64 may not fit int64
    if pa.types.is_float64(t):
        return K_FLOAT, (arr,)
    if pa.types.is_floating(t):
        return K_FLOAT, (arr.cast(pa.float64()),)
    if pa.types.is_boolean(t):
        return K_BOOL, (arr,)
    if pa.types.is_dictionary(t):
        if not pa.types.is_integer(t.index_type) or pa.types.is_uint64(t.index_type):
            return None
        cats = pa.array([_jstr(str(c)) for c in arr.dictionary.to_pylist()], type=pa.string())
        return K_DICT, (arr.indices, cats)
    if pa.types.is_string(t):
        return K_STR, (arr,)
    if pa.types.is_large_string(t):
        return K_STR, (arr.cast(pa.string()),)
    if pa.types.is_binary(t):
        return K_RAW, (arr,)
    return None


cdef inline int64_t _int_at(const Col* c, Py_ssize_t i) noexcept nogil:
    """Value i of a K_INT column, or code i of a K_DICT column, whatever its width."""
    # one branch per type: a conditional mixing int32 and uint32 would be unsigned in C
    if c.width == 8:
        return (<const int64_t*>c.vals)[i]
    if c.width == 4:
        if c.signed:
            return <int64_t>(<const int32_t*>c.vals)[i]
        return <int64_t>(<const uint32_t*>c.vals)[i]
    if c.width == 2:
        if c.signed:
            return <int64_t>(<const int16_t*>c.vals)[i]
        return <int64_t>(<const uint16_t*>c.vals)[i]
    if c.signed:
        return <int64_t>(<const int8_t*>c.vals)[i]
    return <int64_t>c.vals[i]


cdef inline bint _bit(const uint8_t* bits, Py_ssize_t b) noexcept nogil:
    """Bit b of an Arrow bitmap (validity or bool values: least significant bit first)."""
    return (bits[b >> 3] >> (b & 7)) & 1


def gather_texts(texts, codes):
    """A string array whose row i is ``texts[codes[i]]`` (missing where the code is < 0 or
    that text is missing).

    ``texts``: a string array; ``codes``: an int32 numpy array. What ``texts.take(codes)``
    does, without loading pyarrow.compute.
    """
    import numpy as np

    cdef const int32_t[:] cv = np.ascontiguousarray(codes, dtype=np.int32)
    cdef Py_ssize_t n = cv.shape[0], i, total = 0, pos = 0, a, b, ntexts = len(texts)
    cdef Py_ssize_t toff = texts.offset
    cdef int32_t c
    if not pa.types.is_string(texts.type):
        raise ValueError("texts must be a string array")
    tb = texts.buffers()
    cdef const uint8_t* tvalid = NULL if texts.null_count == 0 else _addr(tb[0])
    cdef const int32_t* to = (<const int32_t*>_addr(tb[1])) + toff
    cdef const char* td = <const char*>_addr(tb[2])
    valid = np.empty(n, dtype=np.bool_)
    cdef uint8_t[:] vv = valid
    for i in range(n):
        c = cv[i]
        if c >= ntexts:
            raise IndexError("code out of range")
        vv[i] = c >= 0 and (tvalid == NULL or _bit(tvalid, toff + c))
        if vv[i]:
            total += to[c + 1] - to[c]
    if total >= 2 ** 31:
        raise OverflowError("more than 2 GiB of text in one column")
    offsets = np.empty(n + 1, dtype=np.int32)
    data = np.empty(max(total, 1), dtype=np.uint8)
    cdef int32_t[:] ov = offsets
    cdef uintptr_t daddr = data.ctypes.data
    cdef char* dv = <char*>daddr
    ov[0] = 0
    for i in range(n):
        if vv[i]:
            c = cv[i]
            a = to[c]
            b = to[c + 1]
            memcpy(dv + pos, td + a, b - a)
            pos += b - a
        ov[i + 1] = <int32_t>pos
    nulls = n - int(valid.sum())
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    return pa.Array.from_buffers(pa.string(), n, [bitmap, pa.py_buffer(offsets), pa.py_buffer(data)],
                                 null_count=nulls)


def take(arr, rows):
    """``arr.take(rows)`` without loading pyarrow.compute (0.07 s of a command's start).

    ``arr``: an array or chunked array of a type the engine's tables use (null, integers,
    floats, timestamps, durations, bools, strings, dictionaries of strings; missing cells
    anywhere); ``rows``: an integer numpy array of row numbers, each ``0 <= r < len(arr)``.
    """
    import numpy as np

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    rows = np.asarray(rows, dtype=np.int64)
    n, typ = len(rows), arr.type
    if n and (int(rows.min()) < 0 or int(rows.max()) >= len(arr)):
        raise IndexError("row number out of range")
    if not n:
        return arr.slice(0, 0)
    if pa.types.is_null(typ):
        return pa.nulls(n)
    if pa.types.is_dictionary(typ):
        return pa.DictionaryArray.from_arrays(take(arr.indices, rows), arr.dictionary)
    if pa.types.is_string(typ):
        return gather_texts(arr, rows.astype(np.int32))
    bufs, off = arr.buffers(), arr.offset

    def taken_bits(buf):        # a bitmap's bits at ``rows`` (validity, or bool values)
        bits = np.unpackbits(np.frombuffer(buf, dtype=np.uint8), bitorder="little", count=off + len(arr))
        return bits[off:][rows]

    valid = taken_bits(bufs[0]).astype(np.bool_) if arr.null_count else None
    bitmap = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
    nulls = 0 if valid is None else n - int(valid.sum())
    if pa.types.is_boolean(typ):
        data = np.packbits(taken_bits(bufs[1]), bitorder="little")
    else:
        width = typ.bit_width // 8      # fixed width: only the bits matter, whatever they mean
        if width not in (1, 2, 4, 8) or len(bufs) != 2:
            raise TypeError(f"take: no path for {typ}")
        data = np.frombuffer(bufs[1], dtype=f"<u{width}")[off:off + len(arr)][rows]
    return pa.Array.from_buffers(typ, n, [bitmap, pa.py_buffer(data)], null_count=nulls)


def take_table(table, rows):
    """``table.take(rows)`` column by column through :func:`take`."""
    return pa.Table.from_arrays([take(c, rows) for c in table.columns], schema=table.schema)



cdef inline bint _missing(const Col* c, Py_ssize_t i) noexcept nogil:
    if c.kind == K_NULL:
        return True
    if c.valid == NULL:
        return False
    return not _bit(c.valid, c.voff + i)


# "00" "01" ... "99": decimal text two digits per division
cdef char _PAIRS[200]
for _b in range(100):
    _PAIRS[2 * _b] = 48 + _b // 10
    _PAIRS[2 * _b + 1] = 48 + _b % 10


cdef inline Py_ssize_t _put_int(char* p, int64_t v) noexcept nogil:
    cdef char tmp[24]
    cdef int i = 24, r
    cdef uint64_t u = <uint64_t>v
    cdef Py_ssize_t w = 0
    if v < 0:
        p[0] = 45       # '-'
        w = 1
        u = (~u) + 1    # two's complement magnitude (INT64_MIN included)
    while u >= 100:
        r = <int>(u % 100)
        u //= 100
        i -= 2
        tmp[i] = _PAIRS[2 * r]
        tmp[i + 1] = _PAIRS[2 * r + 1]
    if u >= 10:
        i -= 2
        tmp[i] = _PAIRS[2 * u]
        tmp[i + 1] = _PAIRS[2 * u + 1]
    else:
        i -= 1
        tmp[i] = <char>(48 + u)
    memcpy(p + w, tmp + i, 24 - i)
    return w + 24 - i


cdef inline void _two(char* p, int v) noexcept nogil:
    p[0] = _PAIRS[2 * v]
    p[1] = _PAIRS[2 * v + 1]


# The date text of the last day formatted: timestamps of one table mostly share a day.
cdef int64_t _last_day = -(2 ** 62)
cdef char _last_date[10]


cdef inline void _put_date(char* p, int64_t days) noexcept nogil:
    """"YYYY-MM-DD" of a day count since 1970-01-01 (proleptic Gregorian, 400-year eras of
    146097 days counted from 0000-03-01)."""
    global _last_day
    if days == _last_day:
        memcpy(p, _last_date, 10)
        return
    cdef int64_t z = days + 719468
    cdef int64_t era = (z if z >= 0 else z - 146096) // 146097
    cdef int64_t doe = z - era * 146097
    cdef int64_t yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    cdef int64_t y = yoe + era * 400
    cdef int64_t doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    cdef int64_t mp = (5 * doy + 2) // 153
    cdef int64_t d = doy - (153 * mp + 2) // 5 + 1
    cdef int64_t m = mp + 3 if mp < 10 else mp - 9
    if m <= 2:
        y += 1
    _two(p, <int>(y // 100))
    _two(p + 2, <int>(y % 100))
    p[4] = 45
    _two(p + 5, <int>m)
    p[7] = 45
    _two(p + 8, <int>d)
    memcpy(_last_date, p, 10)
    _last_day = days


cdef inline Py_ssize_t _put_ts(char* p, int64_t ns) noexcept nogil:
    # "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ" between quotes: 32 bytes
    cdef int64_t day_ns = 86400000000000
    cdef int64_t days = ns // day_ns
    cdef int64_t rem = ns % day_ns
    if rem < 0:
        rem += day_ns
        days -= 1
    cdef int secs = <int>(rem // 1000000000)
    cdef int frac = <int>(rem % 1000000000)
    p[0] = 34
    _put_date(p + 1, days)
    p[11] = 84      # 'T'
    _two(p + 12, secs // 3600)
    p[14] = 58
    _two(p + 15, (secs // 60) % 60)
    p[17] = 58
    _two(p + 18, secs % 60)
    p[20] = 46
    p[21] = <char>(48 + frac // 100000000)
    frac %= 100000000
    _two(p + 22, frac // 1000000)
    _two(p + 24, (frac // 10000) % 100)
    _two(p + 26, (frac // 100) % 100)
    _two(p + 28, frac % 100)
    p[30] = 90      # 'Z'
    p[31] = 34
    return 32


cdef inline Py_ssize_t _put_secs(char* p, double x) noexcept nogil:
    """``repr(x)`` when x is a whole number of nanoseconds in seconds (ns / 1e9, correctly
    rounded: every duration the engine makes), else -1 (the caller uses CPython's dtoa).

    Below 2**23 s a double's spacing is finer than 1e-9, so the nanosecond decimal with
    trailing zeros dropped is the one shortest text that reads back as x: exactly what
    repr's shortest round-trip search returns, at a twentieth of its cost. Formatted by
    repr's rules: exponent form below 1e-4 ("5.4e-05"), else fixed with at least ".0".
    """
    cdef int64_t ns
    cdef uint64_t u
    cdef char dig[24]
    cdef int nd = 0, t = 0, decpt, k, e
    cdef Py_ssize_t w = 0
    if not fabs(x) < 8388608.0:
        return -1
    ns = llround(x * 1e9)
    if <double>ns / 1e9 != x:
        return -1
    if signbit(x):
        p[0] = 45
        w = 1
    u = <uint64_t>(-ns if ns < 0 else ns)
    if u == 0:
        memcpy(p + w, b"0.0", 3)
        return w + 3
    while u % 10 == 0:
        u //= 10
        t += 1
    while u:
        dig[nd] = <char>(48 + u % 10)
        nd += 1
        u //= 10
    # digits are reversed in dig; value = 0.d1d2... * 10**decpt
    decpt = nd + t - 9
    if decpt <= -4:
        p[w] = dig[nd - 1]
        w += 1
        if nd > 1:
            p[w] = 46
            w += 1
            for k in range(nd - 2, -1, -1):
                p[w] = dig[k]
                w += 1
        e = decpt - 1           # negative here
        p[w] = 101              # 'e'
        p[w + 1] = 45
        e = -e
        if e >= 100:
            p[w + 2] = <char>(48 + e // 100)
            w += 1
            e %= 100
        p[w + 2] = <char>(48 + e // 10)
        p[w + 3] = <char>(48 + e % 10)
        return w + 4
    if decpt <= 0:
        p[w] = 48
        p[w + 1] = 46
        w += 2
        for k in range(-decpt):
            p[w] = 48
            w += 1
        for k in range(nd - 1, -1, -1):
            p[w] = dig[k]
            w += 1
        return w
    for k in range(nd):
        if k == decpt:
            p[w] = 46
            w += 1
        p[w] = dig[nd - 1 - k]
        w += 1
    if decpt >= nd:
        for k in range(decpt - nd):
            p[w] = 48
            w += 1
        p[w] = 46
        p[w + 1] = 48
        w += 2
    return w


# 1: the byte can go between JSON quotes as it is (printable ASCII other than '"' and '\\')
cdef uint8_t _PLAIN[256]
for _b in range(256):
    _PLAIN[_b] = 1 if 32 <= _b <= 126 and _b != 34 and _b != 92 else 0


cdef inline Py_ssize_t _copy_plain(char* dst, const char* s, Py_ssize_t n) noexcept nogil:
    """Copy ``s`` to ``dst`` up to the first byte that needs escaping; returns how many
    bytes were plain (n: all of them)."""
    cdef Py_ssize_t i
    cdef uint8_t ch
    for i in range(n):
        ch = <uint8_t>s[i]
        if not _PLAIN[ch]:
            return i
        dst[i] = <char>ch
    return n


@cython.final
cdef class _Out:
    cdef char* buf
    cdef Py_ssize_t cap
    cdef Py_ssize_t pos

    def __cinit__(self, Py_ssize_t cap):
        self.cap = max(cap, 64)
        self.buf = <char*>malloc(self.cap)
        self.pos = 0
        if self.buf == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.buf)

    cdef inline char* room(self, Py_ssize_t n) except NULL:
        cdef Py_ssize_t want
        cdef char* nb
        if self.pos + n > self.cap:
            want = max(self.cap * 2, self.pos + n)
            nb = <char*>realloc(self.buf, want)
            if nb == NULL:
                raise MemoryError()
            self.buf = nb
            self.cap = want
        return self.buf + self.pos


def render_rows(list keys, list cols, Py_ssize_t start, Py_ssize_t nrows, bint first):
    """Bytes of rows ``start`` .. ``start + nrows`` as JSON objects separated by ",\\n"
    (and preceded by one unless ``first``; nothing at all for no rows).

    ``keys`` are bytes (each key's text with its leading "{" or "," and trailing ":");
    ``cols`` are :func:`prepare` results, as long as the table.
    """
    writer = RowWriter()    # the view below points into its buffer: keep it alive for the copy
    return bytes(writer.render(keys, cols, start, nrows, first))


cdef class RowWriter:
    """:func:`render_rows` into one buffer reused from call to call: a long table is
    written in batches without allocating (and page-faulting) a fresh MB per batch."""

    cdef _Out out

    def __cinit__(self):
        self.out = _Out(1 << 16)

    def render(self, list keys, list cols, Py_ssize_t start, Py_ssize_t nrows, bint first):
        """The rows' text as a memoryview of the writer's buffer, valid until the next call."""
        return self._render(keys, cols, start, nrows, first)

    cdef object _render(self, list keys, list cols, Py_ssize_t start, Py_ssize_t nrows, bint first):
        cdef _Out out
        cdef Py_ssize_t ncols = len(cols)
        cdef Py_ssize_t c, i, a, b, n, est, off, coff
        cdef Col* C
        cdef Col* col
        cdef char* p
        cdef char* rep
        cdef int64_t code
        cdef double f
        if len(keys) != ncols:
            raise ValueError("one key per column")
        if nrows <= 0:
            return memoryview(b"")
        held = []
        C = <Col*>malloc(ncols * sizeof(Col))
        if C == NULL:
            raise MemoryError()
        memset(C, 0, ncols * sizeof(Col))
        try:
            est = 3 * nrows
            for c in range(ncols):
                kind, arrs = cols[c]
                key = keys[c]
                if not isinstance(key, bytes):
                    raise TypeError("keys must be bytes")
                held.append((arrs, key))
                col = &C[c]
                col.kind = kind
                col.key = key
                col.klen = len(<bytes>key)
                est += col.klen * nrows
                arr = arrs[0]
                if len(arr) < start + nrows:
                    raise ValueError("a column is shorter than the rows asked for")
                if kind == K_NULL:
                    est += 4 * nrows
                    continue
                bufs = arr.buffers()
                off = arr.offset
                col.valid = _addr(bufs[0]) if arr.null_count else NULL
                col.voff = off + start
                if kind == K_INT or kind == K_DICT:
                    col.width = arr.type.bit_width // 8
                    col.signed = pa.types.is_signed_integer(arr.type)
                if kind == K_INT or kind == K_TS or kind == K_FLOAT:
                    col.vals = _addr(bufs[1]) + (col.width if kind == K_INT else 8) * (off + start)
                    est += 32 * nrows
                elif kind == K_BOOL:
                    col.vals = _addr(bufs[1])
                    est += 5 * nrows
                elif kind == K_DICT:
                    col.vals = _addr(bufs[1]) + col.width * (off + start)
                    cats = arrs[1]
                    cb = cats.buffers()
                    coff = cats.offset
                    col.offs = (<const int32_t*>_addr(cb[1])) + coff
                    col.data = <const char*>_addr(cb[2])
                    est += 16 * nrows
                else:       # K_STR, K_RAW
                    col.offs = (<const int32_t*>_addr(bufs[1])) + off + start
                    col.data = <const char*>_addr(bufs[2])
                    est += (col.offs[nrows] - col.offs[0]) + 2 * nrows
            out = self.out
            out.pos = 0
            out.room(est)
            if not first:
                p = out.room(2)
                p[0] = 44
                p[1] = 10
                out.pos += 2
            for i in range(nrows):
                if i:
                    p = out.room(2)
                    p[0] = 44
                    p[1] = 10
                    out.pos += 2
                for c in range(ncols):
                    col = &C[c]
                    p = out.room(col.klen + 32)
                    memcpy(p, col.key, col.klen)
                    out.pos += col.klen
                    p += col.klen
                    if _missing(col, i):
                        memcpy(p, b"null", 4)
                        out.pos += 4
                        continue
                    if col.kind == K_INT:
                        out.pos += _put_int(p, _int_at(col, i))
                    elif col.kind == K_TS:
                        out.pos += _put_ts(p, (<const int64_t*>col.vals)[i])
                    elif col.kind == K_FLOAT:
                        f = (<const double*>col.vals)[i]
                        if not isfinite(f):
                            memcpy(p, b"null", 4)
                            out.pos += 4
                            continue
                        n = _put_secs(p, f)
                        if n >= 0:
                            out.pos += n
                            continue
                        rep = PyOS_double_to_string(f, 114, 0, Py_DTSF_ADD_DOT_0, NULL)
                        n = 0
                        while rep[n]:
                            n += 1
                        p = out.room(n)
                        memcpy(p, rep, n)
                        out.pos += n
                        PyMem_Free(rep)
                    elif col.kind == K_BOOL:
                        if _bit(col.vals, col.voff + i):
                            memcpy(p, b"true", 4)
                            out.pos += 4
                        else:
                            memcpy(p, b"false", 5)
                            out.pos += 5
                    elif col.kind == K_DICT:
                        code = _int_at(col, i)
                        a = col.offs[code]
                        n = col.offs[code + 1] - a
                        p = out.room(n)
                        memcpy(p, col.data + a, n)
                        out.pos += n
                    else:
                        a = col.offs[i]
                        n = col.offs[i + 1] - a
                        if col.kind == K_RAW:
                            p = out.room(n)
                            memcpy(p, col.data + a, n)
                            out.pos += n
                        else:
                            p = out.room(n + 2)
                            p[0] = 34
                            if _copy_plain(p + 1, col.data + a, n) == n:
                                p[n + 1] = 34
                                out.pos += n + 2
                                continue
                            esc = _jstr(PyUnicode_DecodeUTF8(col.data + a, n, "replace")).encode("ascii")
                            n = len(<bytes>esc)
                            p = out.room(n)
                            memcpy(p, <const char*>esc, n)
                            out.pos += n
                p = out.room(1)
                p[0] = 125
                out.pos += 1
            return PyMemoryView_FromMemory(out.buf, out.pos, PyBUF_READ)
        finally:
            free(C)
