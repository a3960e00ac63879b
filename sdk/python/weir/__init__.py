"""weir: write one Weir operator in Python (a component of world `operator-component`).

    import weir

    @weir.map_values
    def tag(value: bytes) -> bytes:
        return b"v:" + value

    Operator = weir.component(tag)   # the export componentize-py looks for

Records are (key: bytes, value: bytes, ts: int); keys and values are opaque bytes (text
sinks print them as UTF-8). Kinds of operators:

  @weir.map_values  f(value) -> value                      (fastest: same key and ts)
  @weir.map         f(key, value, ts) -> (key, value[, ts])
  @weir.filter      f(key, value, ts) -> bool
  @weir.flat_map    f(key, value, ts) -> iterable of (key, value[, ts]) or None
  @weir.keyed       f(key, state, value, ts) -> (state, iterable of records or None)
                    (state: bytes or None; the input edge must be key-by)
  @weir.keyed_process  f(key, state, value, ts, ctx) -> iterable of records or None
  @f.on_timer          g(ts, domain, key, state, ctx) -> iterable of records or None
                    Flink's KeyedProcessFunction: `state` is a weir.State (`.value`
                    bytes or None, `.update(b)`, `.clear()`), `ctx` a weir.TimerContext
                    (`register_event_time_timer(t)`, `delete_event_time_timer(t)`, the
                    same for processing time, `current_watermark()`,
                    `current_processing_time()`) for the current key. `domain` is
                    weir.EVENT_TIME or weir.PROCESSING_TIME; records emitted in g carry
                    the timer's time unless they name one. (Or subclass
                    weir.KeyedProcessFunction: process_element / on_timer.)
  @weir.keyed_co_process  f(input, key, state, value, ts, ctx) -> records or None
  @f.on_timer             g(ts, domain, key, state, ctx) as above
                    Flink's KeyedCoProcessFunction (a manifest node with `inputs2`):
                    `input` is 0 for records of `inputs`, 1 for those of `inputs2`;
                    both inputs share the key's state and timers. (Or subclass
                    weir.KeyedCoProcessFunction: process_element1 / process_element2 /
                    on_timer, each without `input`.)
  class X(weir.Operator): override `process_batch(self, batch) -> bytes` (or `process`)

`weir.args` (dict) and `weir.task` (subtask, parallelism, max_parallelism) are set by
`open`; an operator object's `open(ctx)` hook is called too.

State versions: an operator's `state_version` (class attribute of an Operator subclass,
or set on a decorated operator: `tag.state_version = 2`; default 0) is the format of the
state it writes, declared at open and recorded with every snapshot of it.
`weir.restored_state_version` (also `ctx.restored_state_version`) is set by open: the
version declared by the code whose state the operator starts from (a restore from a
checkpoint or savepoint, or the code a live swap replaced), None without restored
state. Raise `weir.BadInput` or
any exception to fail the operator with a message.

Build: componentize-py -d WIT -w operator-component componentize app -p . -p SDK -o x.wasm

An operator that sets timers is a component of world `timed-operator-component`; its app
module also exports the timers:

    Operator = weir.component(window)
    Timers = weir.timers(window)
"""

from .codec import (  # noqa: F401
    EVENT_TIME,
    PROCESSING_TIME,
    BadInput,
    State,
    TimerContext,
    decode_keyed,
    decode_output,
    decode_records,
    decode_fired,
    decode_output_timers,
    encode_fired,
    encode_keyed,
    encode_record,
    postcard_str,
    split_input,
    postcard_string,
    postcard_u64,
    postcard_varint,
    varint,
)
from . import codec as _codec

args: dict = {}
task = None
restored_state_version = None


def text(b: bytes) -> str:
    """Bytes as UTF-8 text."""
    return b.decode("utf-8")


def utf8(s: str) -> bytes:
    """Text as UTF-8 bytes."""
    return s.encode("utf-8")


class Context:
    """What `open` is told."""

    def __init__(self, subtask, parallelism, max_parallelism, args, restored_state_version=None):
        self.subtask = subtask
        self.parallelism = parallelism
        self.max_parallelism = max_parallelism
        self.args = args
        self.restored_state_version = restored_state_version

    def arg(self, name, default=None):
        return self.args.get(name, default)


class Operator:
    """Base class: override `process_batch` for full control over the batch bytes, or
    `process(key, value, ts)` returning an iterable of records (flat-map semantics).
    Set `keyed = True` and override `process_keyed(key, state, value, ts)` for a keyed
    operator (returns (state, records))."""

    keyed = False
    # The format version of the state it writes (see the module docs).
    state_version = 0

    def open(self, ctx: Context) -> None:
        pass

    def close(self) -> None:
        pass

    def process(self, key, value, ts):
        raise NotImplementedError

    def process_keyed(self, key, state, value, ts):
        raise NotImplementedError

    def process_batch(self, batch: bytes) -> bytes:
        if self.keyed:
            return _codec.keyed_batch(self.process_keyed, batch)
        return _codec.flat_map_batch(self.process, batch)


class _Fn(Operator):
    def __init__(self, f, batch, keyed=False):
        self.f = f
        self._batch = batch
        self.keyed = keyed
        self.__name__ = getattr(f, "__name__", "operator")
        self.__doc__ = getattr(f, "__doc__", None)

    def __call__(self, *a):
        return self.f(*a)

    def process_batch(self, batch):
        return self._batch(self.f, batch)


def map_values(f):
    """value -> f(value); key and ts unchanged."""
    return _Fn(f, _codec.map_values_batch)


def map(f):  # noqa: A001
    """(key, value, ts) -> (key, value) or (key, value, ts)."""
    return _Fn(f, _codec.map_batch)


def filter(f):  # noqa: A001
    """Keeps the records for which f(key, value, ts) is true."""
    return _Fn(f, _codec.filter_batch)


def flat_map(f):
    """(key, value, ts) -> iterable of (key, value[, ts]), or None."""
    return _Fn(f, _codec.flat_map_batch)


def keyed(f):
    """Keyed: (key, state, value, ts) -> (new state or None, records or None)."""
    return _Fn(f, _codec.keyed_batch, keyed=True)


class _NoClock:
    """Until `component()` binds the host's clock import (the bindings exist only inside
    the component; tests assign `weir.clock`)."""

    def current_watermark(self):
        raise RuntimeError("no clock: weir.component(op) binds the host's, tests assign weir.clock")

    current_processing_time = current_watermark


clock = _NoClock()


class KeyedProcessFunction(Operator):
    """Flink's KeyedProcessFunction: override `process_element(key, state, value, ts,
    ctx)` and `on_timer(ts, domain, key, state, ctx)`; both return records (an iterable
    of (key, value) or (key, value, ts)) or None. See the module docs."""

    keyed = True

    def process_element(self, key, state, value, ts, ctx):
        raise NotImplementedError

    def on_timer(self, ts, domain, key, state, ctx):
        return None

    def process_batch(self, batch):
        return _codec.keyed_process_batch(self.process_element, batch, clock)

    def on_timer_batch(self, batch):
        return _codec.on_timer_batch(self.on_timer, batch, clock)


class KeyedCoProcessFunction(KeyedProcessFunction):
    """Flink's KeyedCoProcessFunction, for a two-input operator (manifest `inputs2`):
    override `process_element1(key, state, value, ts, ctx)` for input 0,
    `process_element2(...)` for input 1, and `on_timer` as in KeyedProcessFunction.
    Both inputs share the key's state and timers."""

    def process_element1(self, key, state, value, ts, ctx):
        raise NotImplementedError

    def process_element2(self, key, state, value, ts, ctx):
        raise NotImplementedError

    def process_batch(self, batch):
        body, inp = _codec.split_input(batch)
        f = self.process_element2 if inp else self.process_element1
        return _codec.keyed_process_batch(f, body, clock)


class _KeyedProcess(Operator):
    keyed = True
    _batch = staticmethod(_codec.keyed_process_batch)

    def __init__(self, f):
        self.f = f
        self._on_timer = None
        self.__name__ = getattr(f, "__name__", "operator")
        self.__doc__ = getattr(f, "__doc__", None)

    def __call__(self, *a):
        return self.f(*a)

    def on_timer(self, g):
        """Decorator: g(ts, domain, key, state, ctx) runs when a timer of a key fires."""
        self._on_timer = g
        return g

    def process_batch(self, batch):
        return self._batch(self.f, batch, clock)

    def on_timer_batch(self, batch):
        if self._on_timer is None:
            raise RuntimeError(f"a timer fired but {self.__name__} has no on_timer")
        return _codec.on_timer_batch(self._on_timer, batch, clock)


def keyed_process(f=None, *, on_timer=None):
    """Keyed with timers: f(key, state, value, ts, ctx) -> records or None; the timer
    callback comes from `on_timer=` or the `@f.on_timer` decorator."""

    def make(f):
        op = _KeyedProcess(f)
        if on_timer is not None:
            op.on_timer(on_timer)
        return op

    return make if f is None else make(f)


class _KeyedCoProcess(_KeyedProcess):
    _batch = staticmethod(_codec.keyed_co_process_batch)


def keyed_co_process(f=None, *, on_timer=None):
    """Two inputs (Flink's KeyedCoProcessFunction): f(input, key, state, value, ts, ctx)
    -> records or None, `input` 0 or 1; the timer callback as for `keyed_process`."""

    def make(f):
        op = _KeyedCoProcess(f)
        if on_timer is not None:
            op.on_timer(on_timer)
        return op

    return make if f is None else make(f)


class log:
    """Messages to the host's log."""

    # The host's log import, bound by `component()` at build time (see component.py).
    _host = None

    @staticmethod
    def _log(level, msg):
        _l = log._host
        if _l is None:
            from wit_world.imports import log as _l
        _l.log(getattr(_l.Level, level), str(msg))

    @staticmethod
    def debug(msg):
        log._log("DEBUG", msg)

    @staticmethod
    def info(msg):
        log._log("INFO", msg)

    @staticmethod
    def warn(msg):
        log._log("WARN", msg)

    @staticmethod
    def error(msg):
        log._log("ERROR", msg)


def component(op):
    """The class that implements the generated `exports.Operator` protocol for `op` (an
    operator object from a decorator, an `Operator` instance, or an `Operator`
    subclass, instantiated at open). Assign it to `Operator` in the app module."""
    from .component import make

    return make(op)


def timers(op):
    """The class that implements the generated `exports.Timers` protocol (world
    `timed-operator-component`) for the same `op` as `component(op)`: it calls the
    `on_timer_batch` of the instance `open` made. Assign it to `Timers`."""
    from .component import make_timers

    return make_timers(op)
