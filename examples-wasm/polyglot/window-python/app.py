"""Event-time tumbling window (Python, keyed process with timers): per key, the number of
records in each 60 s window [start, start + 60000) of their timestamps.

On the first record of a window for a key, an event-time timer is set at the window's
end - 1 (the watermark that promises no more of its records); when it fires, the
window's `<start> <count>` is emitted and the window forgotten. A key's open windows (more
than one when records arrive out of order) are its value state: `start:count` pairs
joined by `;`. Records behind the watermark belong to windows that already fired and are
dropped, as Flink's windows drop late records.
"""

import weir

SIZE = 60_000


def load(state):
    if state.value is None:
        return {}
    return {int(s): int(c) for s, c in (w.split(b":") for w in state.value.split(b";"))}


def store(state, windows):
    if windows:
        state.update(b";".join(b"%d:%d" % (s, c) for s, c in sorted(windows.items())))
    else:
        state.clear()


@weir.keyed_process
def window(key, state, value, ts, ctx):
    start = ts - ts % SIZE
    end = start + SIZE - 1
    if end <= ctx.current_watermark():
        return None
    windows = load(state)
    n = windows.get(start, 0)
    if n == 0:
        ctx.register_event_time_timer(end)
    windows[start] = n + 1
    store(state, windows)
    return None


@window.on_timer
def fire(ts, domain, key, state, ctx):
    windows = load(state)
    start = ts - SIZE + 1
    n = windows.pop(start, None)
    store(state, windows)
    if n is None:
        raise weir.BadInput(f"a timer at {ts} fired for key {key!r} without its window")
    return [(key, b"%d %d" % (start, n))]


Operator = weir.component(window)
Timers = weir.timers(window)
