"""Folded stacks to a gzip-compressed pprof profile (the public ``profile.proto``).

pprof is what Grafana Pyroscope, Parca and ``go tool pprof`` all read. The
protobuf wire format this needs is two things, varints and length-delimited
fields, so it is written here by hand rather than through the ``protobuf``
runtime: no generated code to keep in step, no dependency for a daemon that
otherwise needs none, and the encoder stays one short, readable module. The
tests decode the output with two independent decoders (Python ``protobuf``
with the schema compiled at test time, and the npm ``pprof-format``).

The profile, for one target and one time range:

* ``string_table[0]`` is ``""``;
* ``sample_type`` is ``[samples/count, cpu/nanoseconds]``, ``period_type`` is
  ``cpu/nanoseconds`` and ``period`` is ``1e9 / frequency``; an off-CPU profile
  (counts in microseconds blocked) has the one ``off_cpu/nanoseconds`` (Pyroscope's
  name for it), ``period_type`` the same and ``period`` 1;
* one ``Function`` and one ``Location`` per distinct frame name, ids 1..n in
  the order the frames are first met (Parca refuses gaps), all on one
  ``Mapping`` (id 1) that says its functions are already known. A Function
  has a ``name`` and no ``system_name``: the frames are already demangled,
  and a ``system_name`` equal to the name makes ``go tool pprof`` "simplify"
  C++ names (dropping parameters and template arguments);
* one ``Sample`` per stack, its ``location_id`` list leaf first (folded stacks
  are root first), values ``[count, count * period]``;
* ``time_nanos`` / ``duration_nanos`` the range, and ``labels`` as string
  labels on every sample.

Counts are rounded to integers (pprof values are int64); a stack whose count
rounds to zero is left out. Frame names that are not valid UTF-8 (kept by the
folded reader as lone surrogates) have the bad bytes replaced by U+FFFD, since
protobuf strings must be UTF-8.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from dataclasses import dataclass

from flamed.collapse.folded import OTHER, Folded, top

NANOS = 1_000_000_000
CPU_TYPES = (("samples", "count"), ("cpu", "nanoseconds"))
PYROSCOPE_MAX_SAMPLES = 16_000
"""Pyroscope's default ``max_profile_stacktrace_samples``."""
PYROSCOPE_MAX_BYTES = 4 << 20
"""Pyroscope's default ``max_profile_size_bytes`` (4 MiB)."""

# profile.proto field numbers (public spec, perftools.profiles).
PROFILE_SAMPLE_TYPE = 1
PROFILE_SAMPLE = 2
PROFILE_MAPPING = 3
PROFILE_LOCATION = 4
PROFILE_FUNCTION = 5
PROFILE_STRING_TABLE = 6
PROFILE_TIME_NANOS = 9
PROFILE_DURATION_NANOS = 10
PROFILE_PERIOD_TYPE = 11
PROFILE_PERIOD = 12
VALUE_TYPE_TYPE, VALUE_TYPE_UNIT = 1, 2
SAMPLE_LOCATION_ID, SAMPLE_VALUE, SAMPLE_LABEL = 1, 2, 3
LABEL_KEY, LABEL_STR = 1, 2
MAPPING_ID, MAPPING_HAS_FUNCTIONS = 1, 7
LOCATION_ID, LOCATION_MAPPING_ID, LOCATION_LINE = 1, 2, 4
LINE_FUNCTION_ID = 1
FUNCTION_ID, FUNCTION_NAME = 1, 2

VARINT, LENGTH_DELIMITED = 0, 2
INT64_WRAP = 1 << 64
INT64_MAX, INT64_MIN = (1 << 63) - 1, -(1 << 63)


@dataclass(frozen=True)
class PprofOptions:
    """What the folded stacks cannot say about themselves."""

    frequency: float = 99.0
    """Sampling frequency in Hz; ``period`` is 1e9 / frequency nanoseconds."""
    start_ns: int = 0
    """``time_nanos``: when the range began (0: not given)."""
    duration_ns: int = 0
    """``duration_nanos``: the range's length (0: not given)."""
    labels: tuple[tuple[str, str], ...] = ()
    """String labels put on every sample, e.g. ``(("target", "web"),)``."""
    kind: str = "cpu"
    """``cpu`` (counts are samples) or ``offcpu`` (counts are microseconds off CPU)."""

    @property
    def period(self) -> int:
        if self.kind == "offcpu":
            return 1
        return max(1, round(NANOS / self.frequency))

    def values(self, count: int) -> tuple[int, ...]:
        """A sample's values, one per sample type."""
        if self.kind == "offcpu":
            return (count * 1000,)
        return (count, count * self.period)


# -- the wire format -----------------------------------------------------------------------


def varint(value: int) -> bytes:
    """A base-128 varint; negative int64 values as their 64-bit two's complement."""
    if value < 0:
        value += INT64_WRAP
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def key(field: int, wire_type: int) -> bytes:
    return varint((field << 3) | wire_type)


def int_field(field: int, value: int) -> bytes:
    """A varint field; proto3 leaves zero out."""
    return key(field, VARINT) + varint(value) if value else b""


def bytes_field(field: int, payload: bytes) -> bytes:
    return key(field, LENGTH_DELIMITED) + varint(len(payload)) + payload


# -- the profile ---------------------------------------------------------------------------


class StringTable:
    """Strings to indices, ``""`` first."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {"": 0}

    def __call__(self, text: str) -> int:
        found = self.index.get(text)
        if found is None:
            found = self.index[text] = len(self.index)
        return found

    def encode(self) -> bytes:
        return b"".join(bytes_field(PROFILE_STRING_TABLE, utf8(text)) for text in self.index)


def utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from undecodable input bytes
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace").encode("utf-8")


def value_type(kind: int, unit: int) -> bytes:
    return int_field(VALUE_TYPE_TYPE, kind) + int_field(VALUE_TYPE_UNIT, unit)


def function_message(ident: int, name: int) -> bytes:
    """A Function with only its name: no ``system_name``, see the module's notes."""
    return bytes_field(
        PROFILE_FUNCTION, int_field(FUNCTION_ID, ident) + int_field(FUNCTION_NAME, name)
    )


def location_message(ident: int) -> bytes:
    """Location ``ident`` on mapping 1, with one line in function ``ident``."""
    line = bytes_field(LOCATION_LINE, int_field(LINE_FUNCTION_ID, ident))
    body = int_field(LOCATION_ID, ident) + int_field(LOCATION_MAPPING_ID, 1) + line
    return bytes_field(PROFILE_LOCATION, body)


def mapping_message() -> bytes:
    body = int_field(MAPPING_ID, 1) + int_field(MAPPING_HAS_FUNCTIONS, 1)
    return bytes_field(PROFILE_MAPPING, body)


class Frames:
    """Frame names to location ids (1..n, first met first); the function has the same id.

    Each id is kept as its encoded varint, since stacks are encoded far more
    often than frames are added.
    """

    def __init__(self) -> None:
        self.ids: dict[str, bytes] = {}

    def locations(self, stack: str) -> bytes:
        """The stack's location ids, leaf first, as the payload of a packed field."""
        ids = self.ids
        frames = stack.split(";")
        frames.reverse()
        try:
            return b"".join([ids[frame] for frame in frames])
        except KeyError:
            for frame in frames:
                if frame not in ids:
                    ids[frame] = varint(len(ids) + 1)
            return b"".join([ids[frame] for frame in frames])

    def encode(self, strings: StringTable) -> bytes:
        parts = [mapping_message()]
        parts.extend(location_message(ident) for ident in range(1, len(self.ids) + 1))
        parts.extend(
            function_message(ident, strings(name)) for ident, name in enumerate(self.ids, 1)
        )
        return b"".join(parts)


def int64(value: int) -> int:
    """Clamped to int64, so an absurd count cannot make an invalid varint."""
    return max(INT64_MIN, min(INT64_MAX, value))


SAMPLE_LOCATIONS_KEY = key(SAMPLE_LOCATION_ID, LENGTH_DELIMITED)
SAMPLE_VALUES_KEY = key(SAMPLE_VALUE, LENGTH_DELIMITED)
PROFILE_SAMPLE_KEY = key(PROFILE_SAMPLE, LENGTH_DELIMITED)


def sample_message(locations: bytes, numbers: tuple[int, ...], labels: bytes) -> bytes:
    """A Sample: packed location ids (already encoded), its values."""
    values = b"".join(varint(int64(number)) for number in numbers)
    body = b"".join(
        (
            SAMPLE_LOCATIONS_KEY,
            varint(len(locations)),
            locations,
            SAMPLE_VALUES_KEY,
            varint(len(values)),
            values,
            labels,
        )
    )
    return PROFILE_SAMPLE_KEY + varint(len(body)) + body


def label_messages(labels: tuple[tuple[str, str], ...], strings: StringTable) -> bytes:
    return b"".join(
        bytes_field(
            SAMPLE_LABEL, int_field(LABEL_KEY, strings(name)) + int_field(LABEL_STR, strings(value))
        )
        for name, value in labels
    )


def encode_profile(folded: Folded, options: PprofOptions = PprofOptions()) -> bytes:
    """The uncompressed ``Profile`` message."""
    strings, frames, period = StringTable(), Frames(), options.period
    if options.kind == "offcpu":
        types = [value_type(strings("off_cpu"), strings("nanoseconds"))]
    else:
        types = [value_type(strings(name), strings(unit)) for name, unit in CPU_TYPES]
    labels = label_messages(options.labels, strings)
    samples = []
    for stack, raw in sorted(folded.counts.items()):  # a fixed order: same input, same bytes
        count = round(raw)
        if count:
            values = options.values(count)
            samples.append(sample_message(frames.locations(stack), values, labels))
    return b"".join(
        (
            *(bytes_field(PROFILE_SAMPLE_TYPE, kind) for kind in types),
            *samples,
            frames.encode(strings),
            strings.encode(),
            int_field(PROFILE_TIME_NANOS, options.start_ns),
            int_field(PROFILE_DURATION_NANOS, options.duration_ns),
            bytes_field(PROFILE_PERIOD_TYPE, types[-1]),
            int_field(PROFILE_PERIOD, period),
        )
    )


def gzipped(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6, mtime=0)


def encode_pprof(
    folded: Folded,
    *,
    frequency: float = 99.0,
    start_ns: int = 0,
    duration_ns: int = 0,
    labels: Mapping[str, str] | None = None,
    kind: str = "cpu",
) -> bytes:
    """Folded stacks to a gzip-compressed pprof profile (what ``go tool pprof`` reads)."""
    labelled = tuple((labels or {}).items())
    options = PprofOptions(frequency, start_ns, duration_ns, labelled, kind)
    return gzipped(encode_profile(folded, options))


# -- receivers' limits ---------------------------------------------------------------------


@dataclass(frozen=True)
class Fitted:
    """A profile encoded within limits, and how many stacks went into ``[other]``."""

    data: bytes
    """gzip-compressed pprof."""
    stacks: int
    folded_into_other: int


def encode_within(
    folded: Folded,
    options: PprofOptions = PprofOptions(),
    *,
    max_samples: int = PYROSCOPE_MAX_SAMPLES,
    max_bytes: int = PYROSCOPE_MAX_BYTES,
) -> Fitted:
    """Encode, keeping at most ``max_samples`` samples and ``max_bytes`` (uncompressed).

    The heaviest stacks are kept and the rest summed into the ``[other]`` stack
    (``flamed.collapse.folded.top``), so the total stays right. The byte limit
    is checked on the uncompressed message, which is what Pyroscope measures.
    """
    if max_samples < 1:
        raise ValueError(f"max_samples must be at least 1, not {max_samples}")
    keep = len(folded) if len(folded) <= max_samples else max_samples - 1
    while True:
        reduced = folded if keep >= len(folded) else top(folded, keep, OTHER)
        message = encode_profile(reduced, options)
        if len(message) <= max_bytes or keep == 0:
            break
        keep = min(keep - 1, int(keep * max_bytes / len(message) * 0.95))
        keep = max(keep, 0)
    into_other = sum(1 for stack in folded.counts if stack not in reduced.counts)
    return Fitted(gzipped(message), len(reduced), into_other)
