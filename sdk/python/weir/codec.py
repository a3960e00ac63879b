"""Weir batch layouts (see wit/dataflow.wit, `operator.process`), in pure Python.

This module does not import the generated bindings, so it can be tested with a plain
`python3`. All integers are little-endian.

  record          = ts: s64, key-len: u32, key, value-len: u32, value
  plain input     = record*
  keyed input     = key-count: u32, (key-len: u32, key, state-len: u32, state)*,
                    record-count: u32, (key-index: u32, ts: s64, value-len: u32, value)*
                    (state-len 0xFFFFFFFF: the key has no state)
  output          = records-len: u32, record* [, one state update per input key:
                    0u8 unchanged | 1u8, len: u32, bytes | 2u8 cleared
                    [, change-count: u32, (kind: u8, key-index: u32, ts: s64)*]]
                    (timer change kind: 0 set event time, 1 delete event time,
                    2 set processing time, 3 delete processing time)
  on-timer input  = key table as in a keyed input, timer-count: u32,
                    (key-index: u32, ts: s64, domain: u8)*   (domain 0 event, 1 processing)
  two-input keyed input (a connect) = keyed input, input: u32 (0 or 1: the input every
                    record of the batch came through)
"""

import struct

_U32 = struct.Struct("<I")
_Q = struct.Struct("<q")
_QI = struct.Struct("<qI")
_IQI = struct.Struct("<IqI")
_IQB = struct.Struct("<IqB")
_BIQ = struct.Struct("<BIq")
_NO_STATE = 0xFFFFFFFF

EVENT_TIME = 0
PROCESSING_TIME = 1


class BadInput(Exception):
    """A batch or record could not be decoded (becomes operator-error bad-input)."""


def _rec(ts, key, value):
    return b"".join((_QI.pack(ts, len(key)), key, _U32.pack(len(value)), value))


def encode_record(ts: int, key: bytes, value: bytes) -> bytes:
    """One record in the batch layout."""
    return _rec(ts, key, value)


def decode_records(buf: bytes):
    """Records of a plain (not keyed) batch as a list of (key, value, ts)."""
    out = []
    ap = out.append
    n = len(buf)
    pos = 0
    u32 = _U32.unpack_from
    qi = _QI.unpack_from
    try:
        while pos < n:
            ts, klen = qi(buf, pos)
            ks = pos + 12
            vs = ks + klen + 4
            end = vs + u32(buf, vs - 4)[0]
            if end > n:
                raise BadInput(f"record at byte {pos} ends after the batch")
            ap((buf[ks:vs - 4], buf[vs:end], ts))
            pos = end
    except struct.error:
        raise BadInput(f"batch ends inside the record at byte {pos}") from None
    return out


def finish(parts: list) -> bytes:
    """Output batch from a list of already encoded record byte strings."""
    body = b"".join(parts)
    return _U32.pack(len(body)) + body


def map_values_batch(f, buf: bytes) -> bytes:
    """Fast path: value -> f(value), same ts and key; one join for the whole batch."""
    parts = []
    ap = parts.append
    n = len(buf)
    pos = 0
    u32 = _U32.unpack_from
    p32 = _U32.pack
    try:
        while pos < n:
            vs = pos + 16 + u32(buf, pos + 8)[0]
            end = vs + u32(buf, vs - 4)[0]
            v = f(buf[vs:end])
            ap(buf[pos:vs - 4])
            ap(p32(len(v)))
            ap(v)
            pos = end
    except struct.error:
        raise BadInput(f"batch ends inside the record at byte {pos}") from None
    if pos != n:
        raise BadInput("last record ends after the batch")
    body = b"".join(parts)
    return p32(len(body)) + body


def filter_batch(f, buf: bytes) -> bytes:
    """Fast path: keep the records for which f(key, value, ts) is true, copied as is."""
    parts = []
    ap = parts.append
    n = len(buf)
    pos = 0
    u32 = _U32.unpack_from
    qi = _QI.unpack_from
    try:
        while pos < n:
            ts, klen = qi(buf, pos)
            vs = pos + 16 + klen
            end = vs + u32(buf, vs - 4)[0]
            if f(buf[pos + 12:vs - 4], buf[vs:end], ts):
                ap(buf[pos:end])
            pos = end
    except struct.error:
        raise BadInput(f"batch ends inside the record at byte {pos}") from None
    if pos != n:
        raise BadInput("last record ends after the batch")
    return finish(parts)


def _emit_all(ap, outs, ts):
    for r in outs:
        ap(_rec(r[2] if len(r) > 2 else ts, r[0], r[1]))


def map_batch(f, buf: bytes) -> bytes:
    """f(key, value, ts) -> (key, value) or (key, value, ts)."""
    parts = []
    ap = parts.append
    for key, value, ts in decode_records(buf):
        r = f(key, value, ts)
        ap(_rec(r[2] if len(r) > 2 else ts, r[0], r[1]))
    return finish(parts)


def flat_map_batch(f, buf: bytes) -> bytes:
    """f(key, value, ts) -> iterable of (key, value) or (key, value, ts), or None."""
    parts = []
    ap = parts.append
    for key, value, ts in decode_records(buf):
        outs = f(key, value, ts)
        if outs is not None:
            _emit_all(ap, outs, ts)
    return finish(parts)


def _key_table(buf: bytes):
    """The key table a keyed and an on-timer batch start with: (keys, states, position
    after it). Raises struct.error when the batch ends inside it."""
    u32 = _U32.unpack_from
    n = len(buf)
    keys = []
    states = []
    (kc,) = u32(buf, 0)
    pos = 4
    for _ in range(kc):
        (kl,) = u32(buf, pos)
        pos += 4
        keys.append(buf[pos:pos + kl])
        pos += kl
        (sl,) = u32(buf, pos)
        pos += 4
        if sl == _NO_STATE:
            states.append(None)
        else:
            states.append(buf[pos:pos + sl])
            pos += sl
        if pos > n:
            raise BadInput("key table ends after the batch")
    return keys, states, pos


def decode_keyed(buf: bytes):
    """A keyed batch as (keys, states, records): keys a list of bytes, states a list of
    bytes or None, records a list of (key-index, value, ts)."""
    n = len(buf)
    recs = []
    pos = 0
    try:
        keys, states, pos = _key_table(buf)
        kc = len(keys)
        (rc,) = _U32.unpack_from(buf, pos)
        pos += 4
        iqi = _IQI.unpack_from
        ap = recs.append
        for _ in range(rc):
            ki, ts, vl = iqi(buf, pos)
            pos += 16
            if ki >= kc:
                raise BadInput(f"key index {ki} of {kc} keys")
            ap((ki, buf[pos:pos + vl], ts))
            pos += vl
    except struct.error:
        raise BadInput(f"batch ends inside a field at byte {pos}") from None
    if pos != n:
        raise BadInput(f"keyed batch is {n} bytes but its contents end at {pos}")
    return keys, states, recs


def decode_fired(buf: bytes):
    """An on-timer batch as (keys, states, timers): keys and states as in `decode_keyed`,
    timers a list of (key-index, ts, domain) in firing order."""
    n = len(buf)
    timers = []
    pos = 0
    try:
        keys, states, pos = _key_table(buf)
        kc = len(keys)
        (tc,) = _U32.unpack_from(buf, pos)
        pos += 4
        iqb = _IQB.unpack_from
        for _ in range(tc):
            ki, ts, domain = iqb(buf, pos)
            pos += 13
            if ki >= kc:
                raise BadInput(f"timer key index {ki} of {kc} keys")
            if domain > PROCESSING_TIME:
                raise BadInput(f"timer domain {domain} (0 event time, 1 processing time)")
            timers.append((ki, ts, domain))
    except struct.error:
        raise BadInput(f"batch ends inside a field at byte {pos}") from None
    if pos != n:
        raise BadInput(f"on-timer batch is {n} bytes but its contents end at {pos}")
    return keys, states, timers


def state_updates(old: list, new: list) -> bytes:
    """State-update section: per key, unchanged / set / cleared."""
    out = []
    ap = out.append
    p32 = _U32.pack
    for o, s in zip(old, new):
        if s is o or s == o:
            ap(b"\x00")
        elif s is None:
            ap(b"\x02")
        else:
            s = bytes(s)
            ap(b"\x01" + p32(len(s)) + s)
    return b"".join(out)


def keyed_batch(f, buf: bytes) -> bytes:
    """f(key, state, value, ts) -> (new_state, outputs) per record, state as bytes or
    None; outputs an iterable of (key, value) or (key, value, ts), or None."""
    keys, states, recs = decode_keyed(buf)
    cur = list(states)
    parts = []
    ap = parts.append
    for ki, value, ts in recs:
        s, outs = f(keys[ki], cur[ki], value, ts)
        cur[ki] = s
        if outs is not None:
            _emit_all(ap, outs, ts)
    return finish(parts) + state_updates(states, cur)


class State:
    """The value state of one key during a call: `value` is its bytes (None: no state);
    `update(b)` replaces it and `clear()` removes it. Written back once per call."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value

    def update(self, value):
        if value is None:
            raise TypeError("State.update needs bytes; use clear() to remove the state")
        self.value = bytes(value)

    def clear(self):
        self.value = None


class TimerContext:
    """Time and timers of the key being processed (Flink's KeyedProcessFunction context
    with its TimerService). Valid during the callback it is passed to.

    `key`, `timestamp` (the record's, or the firing timer's time), `timer_domain` (None
    while a record is processed). A key has at most one timer per time and domain:
    registering it again does nothing."""

    __slots__ = ("key", "timestamp", "timer_domain", "_ki", "_changes", "_clock", "_wm", "_pt")

    def __init__(self, changes, clock):
        self._changes = changes
        self._clock = clock
        self._wm = None
        self._pt = None
        self.key = b""
        self.timestamp = 0
        self.timer_domain = None
        self._ki = 0

    def _change(self, kind, ts):
        # The last change of a timer in this call decides it (a set then a delete is a
        # delete), so only that one is written, at the place of the first.
        ts = int(ts)
        if not -(1 << 63) <= ts < (1 << 63):
            raise ValueError(f"timer time {ts} is not an i64")
        self._changes[(self._ki, kind >> 1, ts)] = kind

    def register_event_time_timer(self, ts):
        """Fires on_timer for this key once the watermark reaches ts."""
        self._change(0, ts)

    def delete_event_time_timer(self, ts):
        self._change(1, ts)

    def register_processing_time_timer(self, ts):
        """Fires on_timer for this key once processing time (ms since the epoch) reaches ts."""
        self._change(2, ts)

    def delete_processing_time_timer(self, ts):
        self._change(3, ts)

    def current_watermark(self) -> int:
        """The watermark of this operator's input (-2**63 before the first one); read from
        the host once per call, as it does not change during one."""
        if self._wm is None:
            self._wm = self._clock.current_watermark()
        return self._wm

    def current_processing_time(self) -> int:
        """Processing time (ms since the Unix epoch), read once per call."""
        if self._pt is None:
            self._pt = self._clock.current_processing_time()
        return self._pt


def timer_changes(changes: dict) -> bytes:
    """The timer-change trailer of a keyed output; nothing when there are no changes, so
    such an output is byte for byte a plain keyed output."""
    if not changes:
        return b""
    pack = _BIQ.pack
    return _U32.pack(len(changes)) + b"".join(pack(kind, ki, ts) for (ki, _, ts), kind in changes.items())


def keyed_process_batch(f, buf: bytes, clock) -> bytes:
    """f(key, state: State, value, ts, ctx: TimerContext) -> outputs (iterable of (key,
    value) or (key, value, ts), or None) per record; then state updates and timer changes."""
    keys, states, recs = decode_keyed(buf)
    cur = [State(s) for s in states]
    changes = {}
    ctx = TimerContext(changes, clock)
    parts = []
    ap = parts.append
    for ki, value, ts in recs:
        key = keys[ki]
        ctx._ki = ki
        ctx.key = key
        ctx.timestamp = ts
        outs = f(key, cur[ki], value, ts, ctx)
        if outs is not None:
            _emit_all(ap, outs, ts)
    return finish(parts) + state_updates(states, [s.value for s in cur]) + timer_changes(changes)


def split_input(buf: bytes):
    """The keyed batch of a two-input (connect) operator and the input (0 or 1) its
    records came through, which the host appends last."""
    if len(buf) < 4:
        raise BadInput(f"a two-input batch of {len(buf)} bytes has no input tag")
    (inp,) = _U32.unpack_from(buf, len(buf) - 4)
    if inp > 1:
        raise BadInput(f"input tag {inp} (a two-input operator has inputs 0 and 1)")
    return buf[:-4], inp


def keyed_co_process_batch(f, buf: bytes, clock) -> bytes:
    """Two inputs (Flink's KeyedCoProcessFunction): f(input, key, state: State, value, ts,
    ctx: TimerContext) -> outputs per record, input 0 or 1; state and timers are the
    key's, shared by both inputs. The output is a keyed process function's."""
    body, inp = split_input(buf)
    return keyed_process_batch(lambda key, state, value, ts, ctx: f(inp, key, state, value, ts, ctx), body, clock)


def on_timer_batch(f, buf: bytes, clock) -> bytes:
    """f(ts, domain, key, state: State, ctx: TimerContext) -> outputs per fired timer
    (records default to the timer's time); then state updates and timer changes."""
    keys, states, timers = decode_fired(buf)
    cur = [State(s) for s in states]
    changes = {}
    ctx = TimerContext(changes, clock)
    parts = []
    ap = parts.append
    for ki, ts, domain in timers:
        key = keys[ki]
        ctx._ki = ki
        ctx.key = key
        ctx.timestamp = ts
        ctx.timer_domain = domain
        outs = f(ts, domain, key, cur[ki], ctx)
        if outs is not None:
            _emit_all(ap, outs, ts)
    return finish(parts) + state_updates(states, [s.value for s in cur]) + timer_changes(changes)


def encode_fired(keys_states, timers) -> bytes:
    """Builds an on-timer input batch (for tests): keys_states as in `encode_keyed`,
    timers a list of (key-index, ts, domain)."""
    p32 = _U32.pack
    out = [p32(len(keys_states))]
    for k, s in keys_states:
        out.append(p32(len(k)) + k)
        out.append(p32(_NO_STATE) if s is None else p32(len(s)) + s)
    out.append(p32(len(timers)))
    for ki, ts, domain in timers:
        out.append(_IQB.pack(ki, ts, domain))
    return b"".join(out)


def encode_keyed(keys_states, records) -> bytes:
    """Builds a keyed input batch (for tests): keys_states a list of (key, state or
    None), records a list of (key-index, value, ts)."""
    p32 = _U32.pack
    out = [p32(len(keys_states))]
    for k, s in keys_states:
        out.append(p32(len(k)) + k)
        out.append(p32(_NO_STATE) if s is None else p32(len(s)) + s)
    out.append(p32(len(records)))
    for ki, v, ts in records:
        out.append(_IQI.pack(ki, ts, len(v)) + v)
    return b"".join(out)


def decode_output(buf: bytes, key_count: int = 0):
    """Splits an output batch into (records as (key, value, ts), state updates as
    None (unchanged) / ("set", bytes) / ("clear",)); for tests."""
    recs, ups, changes = decode_output_timers(buf, key_count)
    if changes:
        raise BadInput("timer changes in an output read without them")
    return recs, ups


def decode_output_timers(buf: bytes, key_count: int):
    """As `decode_output`, plus the timer changes as (kind, key-index, ts); for tests."""
    (rl,) = _U32.unpack_from(buf, 0)
    recs = decode_records(buf[4:4 + rl])
    pos = 4 + rl
    ups = []
    for _ in range(key_count):
        tag = buf[pos]
        pos += 1
        if tag == 0:
            ups.append(None)
        elif tag == 2:
            ups.append(("clear",))
        else:
            (l,) = _U32.unpack_from(buf, pos)
            ups.append(("set", buf[pos + 4:pos + 4 + l]))
            pos += 4 + l
    changes = []
    if key_count and pos < len(buf):
        (cc,) = _U32.unpack_from(buf, pos)
        pos += 4
        for _ in range(cc):
            changes.append(_BIQ.unpack_from(buf, pos))
            pos += 13
    if pos != len(buf):
        raise BadInput("trailing bytes in output")
    return recs, ups, changes


def postcard_varint(b: bytes, pos: int = 0):
    """Decodes a postcard varint (LEB128 u64) at `pos`; returns (value, next position)."""
    v = 0
    shift = 0
    while True:
        if pos >= len(b) or shift > 63:
            raise BadInput("bad postcard varint")
        c = b[pos]
        pos += 1
        v |= (c & 0x7F) << shift
        if c < 0x80:
            return v, pos
        shift += 7


def postcard_str(b: bytes) -> str:
    """Decodes a postcard string (varint length + UTF-8), as the file-lines source
    writes each line."""
    n, pos = postcard_varint(b)
    if pos + n > len(b):
        raise BadInput("postcard string is truncated")
    return b[pos:pos + n].decode("utf-8")


def postcard_u64(b: bytes) -> int:
    """Decodes a postcard varint value, as the generator source writes each number."""
    return postcard_varint(b)[0]


def varint(v: int) -> bytes:
    """Encodes a postcard varint."""
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def postcard_string(s: str) -> bytes:
    """Encodes a postcard string."""
    b = s.encode("utf-8")
    return varint(len(b)) + b
