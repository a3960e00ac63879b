"""Tests of weir's batch codec and operator kinds, without the generated bindings:
    python3 -m unittest discover -s sdk/python

`Vectors` checks the codec against the canonical batches in sdk/vectors (README.md
there), which the host writes.
"""

import unittest
from pathlib import Path
from types import SimpleNamespace

import weir
from weir import codec


def plain(*recs):
    return b"".join(codec.encode_record(ts, k, v) for k, v, ts in recs)


class Codec(unittest.TestCase):
    def test_map_values(self):
        out = weir.map_values(lambda v: b"v:" + v).process_batch(plain((b"k", b"1", -3), (b"", b"", 9)))
        self.assertEqual(codec.decode_output(out)[0], [(b"k", b"v:1", -3), (b"", b"v:", 9)])

    def test_filter_map_flat_map(self):
        batch = plain((b"a", b"1", 1), (b"b", b"22", 2))
        keep = weir.filter(lambda k, v, ts: len(v) > 1).process_batch(batch)
        self.assertEqual(codec.decode_output(keep)[0], [(b"b", b"22", 2)])
        m = weir.map(lambda k, v, ts: (v, k, ts + 1)).process_batch(batch)
        self.assertEqual(codec.decode_output(m)[0], [(b"1", b"a", 2), (b"22", b"b", 3)])
        fm = weir.flat_map(lambda k, v, ts: [(k, c.to_bytes(1, "little")) for c in v]).process_batch(batch)
        self.assertEqual(len(codec.decode_output(fm)[0]), 3)

    def test_keyed_count(self):
        @weir.keyed
        def count(key, state, value, ts):
            n = int.from_bytes(state or b"\0" * 8, "little") + 1
            return n.to_bytes(8, "little"), [(key, str(n).encode())]

        batch = codec.encode_keyed([(b"x", (5).to_bytes(8, "little")), (b"y", None), (b"z", b"keep")], [(0, b"", 1), (1, b"", 2), (0, b"", 3)])
        recs, ups = codec.decode_output(count.process_batch(batch), 3)
        self.assertEqual(recs, [(b"x", b"6", 1), (b"y", b"1", 2), (b"x", b"7", 3)])
        self.assertEqual(ups, [("set", (7).to_bytes(8, "little")), ("set", (1).to_bytes(8, "little")), None])

    def test_bad_input(self):
        with self.assertRaises(weir.BadInput):
            weir.map_values(lambda v: v).process_batch(plain((b"k", b"value", 0))[:-2])
        with self.assertRaises(weir.BadInput):
            codec.decode_keyed(b"\x01\x00\x00\x00")

    def test_keyed_process_window(self):
        """A per-key count over 60 s tumbling windows, the shape of the polyglot example."""
        clock = SimpleNamespace(current_watermark=lambda: 42, current_processing_time=lambda: 7)

        @weir.keyed_process
        def window(key, state, value, ts, ctx):
            start = ts - ts % 60_000
            counts = dict(p.split(b"=") for p in state.value.split(b",")) if state.value else {}
            n = int(counts.get(b"%d" % start, b"0")) + 1
            if n == 1:
                ctx.register_event_time_timer(start + 59_999)
            counts[b"%d" % start] = b"%d" % n
            state.update(b",".join(k + b"=" + c for k, c in sorted(counts.items())))
            assert (ctx.current_watermark(), ctx.current_processing_time(), ctx.key, ctx.timestamp) == (42, 7, key, ts)

        @window.on_timer
        def fire(ts, domain, key, state, ctx):
            counts = dict(p.split(b"=") for p in state.value.split(b","))
            start = b"%d" % (ts - 59_999)
            n = counts.pop(start)
            if counts:
                state.update(b",".join(k + b"=" + c for k, c in sorted(counts.items())))
            else:
                state.clear()
            ctx.register_processing_time_timer(1000)
            return [(key, start + b" " + n)]

        batch = codec.encode_keyed([(b"x", None), (b"y", b"60000=4")], [(0, b"", 5), (1, b"", 61_000), (0, b"", 7), (0, b"", 60_001)])
        recs, ups, changes = codec.decode_output_timers(codec.keyed_process_batch(window.f, batch, clock), 2)
        self.assertEqual(recs, [])
        self.assertEqual(ups, [("set", b"0=2,60000=1"), ("set", b"60000=5")])
        self.assertEqual(changes, [(0, 0, 59_999), (0, 0, 119_999)])
        fired = codec.encode_fired([(b"x", b"0=2,60000=1"), (b"y", b"60000=5")], [(0, 59_999, weir.EVENT_TIME), (1, 119_999, weir.EVENT_TIME)])
        out = codec.on_timer_batch(window._on_timer, fired, clock)
        recs, ups, changes = codec.decode_output_timers(out, 2)
        self.assertEqual(recs, [(b"x", b"0 2", 59_999), (b"y", b"60000 5", 119_999)])
        self.assertEqual(ups, [("set", b"60000=1"), ("clear",)])
        self.assertEqual(changes, [(2, 0, 1000), (2, 1, 1000)])

    def test_timer_changes_keep_the_last_action(self):
        @weir.keyed_process
        def flip(key, state, value, ts, ctx):
            ctx.register_event_time_timer(10)
            ctx.register_event_time_timer(10)
            ctx.delete_event_time_timer(10) if value == b"d" else None

        batch = codec.encode_keyed([(b"k", None)], [(0, b"", 1), (0, b"d", 2)])
        out = codec.keyed_process_batch(flip.f, batch, None)
        self.assertEqual(codec.decode_output_timers(out, 1), ([], [None], [(1, 0, 10)]))
        # No timer changes: the bytes of a plain keyed output.
        quiet = weir.keyed_process(lambda k, s, v, ts, ctx: None)
        self.assertEqual(quiet.process_batch(batch), codec.finish([]) + b"\x00")
        with self.assertRaises(RuntimeError):
            quiet.on_timer_batch(codec.encode_fired([], []))

    def test_postcard(self):
        self.assertEqual(weir.postcard_str(weir.postcard_string("héllo")), "héllo")
        self.assertEqual(weir.postcard_u64(weir.varint(300)), 300)
        with self.assertRaises(weir.BadInput):
            weir.postcard_str(b"\x05ab")


VECTORS = Path(__file__).resolve().parent.parent / "vectors"
DOMAINS = {"event": weir.EVENT_TIME, "processing": weir.PROCESSING_TIME}
ACTIONS = {"set": 0, "delete": 1}


def _bytes(word):
    return b"" if word == "-" else bytes.fromhex(word)


def _words(line):
    return line.split("#", 1)[0].split()


def load_vector(txt: Path):
    """One vector: `NAME.txt` (what it encodes) and `NAME.hex` (the bytes)."""
    v = SimpleNamespace(name=txt.stem, layout=None, records=[], keys=[], keyed_records=[], updates=[], fired=[], changes=[], input=None)
    for line in txt.read_text().splitlines():
        w = _words(line)
        if not w:
            continue
        if w[0] == "layout":
            v.layout = w[1]
        elif w[0] == "record":  # kept as the SDK's (key, value, ts)
            v.records.append((_bytes(w[2]), _bytes(w[3]), int(w[1])))
        elif w[0] == "key":
            v.keys.append((_bytes(w[1]), None if w[2] == "none" else _bytes(w[2])))
        elif w[0] == "keyed-record":
            v.keyed_records.append((int(w[1]), _bytes(w[3]), int(w[2])))
        elif w == ["state", "unchanged"]:
            v.updates.append(None)
        elif w[:2] == ["state", "set"]:
            v.updates.append(("set", _bytes(w[2])))
        elif w == ["state", "cleared"]:
            v.updates.append(("clear",))
        elif w[0] == "input":  # two-input batch: the input its records came through
            v.input = int(w[1])
        elif w[0] == "fired-timer":  # (key-index, ts, domain) as decode_fired
            v.fired.append((int(w[1]), int(w[2]), DOMAINS[w[3]]))
        elif w[0] == "timer-change":  # (kind, key-index, ts) as decode_output_timers
            v.changes.append((DOMAINS[w[2]] * 2 + ACTIONS[w[1]], int(w[3]), int(w[4])))
        else:
            raise ValueError(f"{txt}: cannot read {line!r}")
    hex_text = txt.with_suffix(".hex").read_text()
    v.bytes = bytes.fromhex("".join("".join(_words(line)) for line in hex_text.splitlines()))
    return v


def load_vectors(layout):
    vs = [load_vector(t) for t in sorted(VECTORS.glob("*.txt"))]
    assert vs, f"no vectors in {VECTORS}"
    return [v for v in vs if v.layout == layout]


def keyed_input_for(updates):
    """A keyed batch with one key per state update, each holding a state no update sets
    and one record, so a keyed operator can produce `updates` (one per record)."""
    return codec.encode_keyed([(b"k%d" % i, b"old state") for i in range(len(updates))], [(i, b"", i) for i in range(len(updates))])


class Vectors(unittest.TestCase):
    """Decodes and encodes the host-written vectors through the codec and the operator
    kinds, so Python agrees with the host byte for byte."""

    def test_plain_inputs(self):
        for v in load_vectors("plain"):
            with self.subTest(v.name):
                self.assertEqual(codec.decode_records(v.bytes), v.records)
                self.assertEqual(b"".join(codec.encode_record(ts, k, val) for k, val, ts in v.records), v.bytes)
                # Each kind has its own batch loop; passing every record through
                # unchanged must give back the input bytes behind records-len.
                echo = codec.finish([v.bytes])
                ops = (
                    weir.map_values(lambda val: val),
                    weir.filter(lambda k, val, ts: True),
                    weir.map(lambda k, val, ts: (k, val, ts)),
                    weir.flat_map(lambda k, val, ts: [(k, val)]),
                )
                for op in ops:
                    self.assertEqual(op.process_batch(v.bytes), echo)
                # A prefix that ends inside a record is bad input in every loop.
                ends = {0}
                for k, val, ts in v.records:
                    ends.add(max(ends) + 16 + len(k) + len(val))
                for cut in set(range(len(v.bytes))) - ends:
                    for op in ops:
                        with self.assertRaises(weir.BadInput, msg=f"cut at {cut}"):
                            op.process_batch(v.bytes[:cut])

    def test_keyed_inputs(self):
        for v in load_vectors("keyed"):
            with self.subTest(v.name):
                keys = [k for k, _ in v.keys]
                states = [s for _, s in v.keys]
                self.assertEqual(codec.decode_keyed(v.bytes), (keys, states, v.keyed_records))
                self.assertEqual(codec.encode_keyed(v.keys, v.keyed_records), v.bytes)
                seen = []

                @weir.keyed
                def echo(key, state, value, ts):
                    seen.append((key, state, value, ts))
                    return state, [(key, value)]

                out = echo.process_batch(v.bytes)
                self.assertEqual(seen, [(keys[i], states[i], val, ts) for i, val, ts in v.keyed_records])
                self.assertEqual(codec.decode_output(out, len(keys)), ([(keys[i], val, ts) for i, val, ts in v.keyed_records], [None] * len(keys)))
                for cut in range(len(v.bytes)):
                    with self.assertRaises(weir.BadInput, msg=f"cut at {cut}"):
                        echo.process_batch(v.bytes[:cut])

    def test_outputs(self):
        for v in load_vectors("output"):
            with self.subTest(v.name):
                self.assertEqual(codec.decode_output(v.bytes), (v.records, []))
                emit_all = weir.flat_map(lambda k, val, ts: v.records)
                self.assertEqual(emit_all.process_batch(codec.encode_record(0, b"", b"")), v.bytes)

    def test_keyed_outputs(self):
        for v in load_vectors("keyed-output"):
            with self.subTest(v.name):
                self.assertEqual(codec.decode_output(v.bytes, len(v.updates)), (v.records, v.updates))

                # The first record emits the vector's records; record i gives key i its update.
                @weir.keyed
                def script(key, state, value, ts):
                    u = v.updates[ts]
                    new = state if u is None else (u[1] if u[0] == "set" else None)
                    return new, v.records if ts == 0 else None

                self.assertEqual(script.process_batch(keyed_input_for(v.updates)), v.bytes)

    def test_fired_timers(self):
        for v in load_vectors("fired-timers"):
            with self.subTest(v.name):
                keys = [k for k, _ in v.keys]
                states = [s for _, s in v.keys]
                self.assertEqual(codec.decode_fired(v.bytes), (keys, states, v.fired))
                self.assertEqual(codec.encode_fired(v.keys, v.fired), v.bytes)
                seen = []

                class Echo(weir.KeyedProcessFunction):
                    def on_timer(self, ts, domain, key, state, ctx):
                        seen.append((key, state.value, ts, domain, ctx.timer_domain))
                        return [(key, b"")]

                out = Echo().on_timer_batch(v.bytes)
                self.assertEqual(seen, [(keys[i], states[i], ts, d, d) for i, ts, d in v.fired])
                want = ([(keys[i], b"", ts) for i, ts, _ in v.fired], [None] * len(keys))
                self.assertEqual(codec.decode_output(out, len(keys)), want)
                for cut in range(len(v.bytes)):
                    with self.assertRaises(weir.BadInput, msg=f"cut at {cut}"):
                        Echo().on_timer_batch(v.bytes[:cut])

    def test_keyed_outputs_with_timers(self):
        for v in load_vectors("keyed-output-timers"):
            with self.subTest(v.name):
                self.assertEqual(codec.decode_output_timers(v.bytes, len(v.updates)), (v.records, v.updates, v.changes))
                setters = {0: "register_event_time_timer", 1: "delete_event_time_timer", 2: "register_processing_time_timer", 3: "delete_processing_time_timer"}

                # Records with value b"" (ts i) give key i its update, the first also emits
                # the vector's records; records with value b"t" (ts j) make change j, on the
                # key it names.
                @weir.keyed_process
                def script(key, state, value, ts, ctx):
                    if value == b"t":
                        kind, _, at = v.changes[ts]
                        getattr(ctx, setters[kind])(at)
                        return None
                    u = v.updates[ts]
                    if u is not None:
                        state.update(u[1]) if u[0] == "set" else state.clear()
                    return v.records if ts == 0 else None

                keys = [(b"k%d" % i, b"old state") for i in range(len(v.updates))]
                recs = [(i, b"", i) for i in range(len(v.updates))] + [(ki, b"t", j) for j, (_, ki, _) in enumerate(v.changes)]
                self.assertEqual(script.process_batch(codec.encode_keyed(keys, recs)), v.bytes)


    def test_two_input_vectors(self):
        """The host's two-input batch: the callback sees the vector's input, keys, states
        and records; with the other input's tag, the other input; any cut is bad input."""
        vs = load_vectors("two-input")
        self.assertTrue(vs)
        for v in vs:
            with self.subTest(v.name):
                keys = [k for k, _ in v.keys]
                states = [s for _, s in v.keys]
                self.assertEqual(codec.split_input(v.bytes), (codec.encode_keyed(v.keys, v.keyed_records), v.input))
                seen = []

                @weir.keyed_co_process
                def echo(inp, key, state, value, ts, ctx):
                    seen.append((inp, key, state.value, value, ts))
                    return [(key, value)]

                out = echo.process_batch(v.bytes)
                self.assertEqual(seen, [(v.input, keys[i], states[i], val, ts) for i, val, ts in v.keyed_records])
                self.assertEqual(codec.decode_output(out, len(keys)), ([(keys[i], val, ts) for i, val, ts in v.keyed_records], [None] * len(keys)))
                seen.clear()
                echo.process_batch(v.bytes[:-4] + (1 - v.input).to_bytes(4, "little"))
                self.assertEqual({s[0] for s in seen}, {1 - v.input})
                for cut in range(len(v.bytes)):
                    with self.assertRaises(weir.BadInput, msg=f"cut at {cut}"):
                        echo.process_batch(v.bytes[:cut])

    def test_two_input_keyed_inputs(self):
        """A two-input batch is a keyed vector with the input tag behind it (what the
        host's `weir_batch::split_input` reads): both inputs decode like a keyed batch,
        the callback is told which, and a bad tag or any cut is bad input."""
        for v in load_vectors("keyed"):
            with self.subTest(v.name):
                keys = [k for k, _ in v.keys]
                states = [s for _, s in v.keys]
                seen = []

                @weir.keyed_co_process
                def echo(inp, key, state, value, ts, ctx):
                    seen.append((inp, key, state.value, value, ts))
                    return [(key, value)]

                class Sides(weir.KeyedCoProcessFunction):
                    def process_element1(self, key, state, value, ts, ctx):
                        seen.append((0, key, state.value, value, ts))
                        return [(key, value)]

                    def process_element2(self, key, state, value, ts, ctx):
                        seen.append((1, key, state.value, value, ts))
                        return [(key, value)]

                want_out = ([(keys[i], val, ts) for i, val, ts in v.keyed_records], [None] * len(keys))
                for op in (echo, Sides()):
                    for inp in (0, 1):
                        seen.clear()
                        out = op.process_batch(v.bytes + inp.to_bytes(4, "little"))
                        self.assertEqual(seen, [(inp, keys[i], states[i], val, ts) for i, val, ts in v.keyed_records])
                        self.assertEqual(codec.decode_output(out, len(keys)), want_out)
                    tagged = v.bytes + (1).to_bytes(4, "little")
                    for cut in range(len(tagged)):
                        with self.assertRaises(weir.BadInput, msg=f"cut at {cut}"):
                            op.process_batch(tagged[:cut])
                    with self.assertRaises(weir.BadInput):
                        op.process_batch(v.bytes + (2).to_bytes(4, "little"))

    def test_two_input_outputs_with_timers(self):
        """A two-input operator writes exactly a keyed process function's output: state
        updates and timer changes made from input 1 give the vector's bytes."""
        setters = {0: "register_event_time_timer", 1: "delete_event_time_timer", 2: "register_processing_time_timer", 3: "delete_processing_time_timer"}
        for v in load_vectors("keyed-output-timers"):
            with self.subTest(v.name):

                @weir.keyed_co_process
                def script(inp, key, state, value, ts, ctx):
                    self.assertEqual(inp, 1)
                    if value == b"t":
                        kind, _, at = v.changes[ts]
                        getattr(ctx, setters[kind])(at)
                        return None
                    u = v.updates[ts]
                    if u is not None:
                        state.update(u[1]) if u[0] == "set" else state.clear()
                    return v.records if ts == 0 else None

                keys = [(b"k%d" % i, b"old state") for i in range(len(v.updates))]
                recs = [(i, b"", i) for i in range(len(v.updates))] + [(ki, b"t", j) for j, (_, ki, _) in enumerate(v.changes)]
                self.assertEqual(script.process_batch(codec.encode_keyed(keys, recs) + (1).to_bytes(4, "little")), v.bytes)

    def test_two_inputs_share_the_keys_state_and_timers(self):
        """An order (input 0) waits in its key's state; the payment (input 1) finds it,
        emits the pair, clears the state and deletes the order's timer; an order never
        paid is reported by its timer."""

        class Join(weir.KeyedCoProcessFunction):
            def process_element1(self, key, state, value, ts, ctx):
                state.update(value)
                ctx.register_event_time_timer(ts + 100)

            def process_element2(self, key, state, value, ts, ctx):
                if state.value is not None:
                    ctx.delete_event_time_timer(ts)
                    order = state.value
                    state.clear()
                    return [(key, order + b"+" + value)]

            def on_timer(self, ts, domain, key, state, ctx):
                order = state.value
                state.clear()
                return [(key, order + b" unpaid")]

        j = Join()
        orders = codec.encode_keyed([(b"o1", None), (b"o2", None)], [(0, b"book", 10), (1, b"pen", 20)]) + b"\0\0\0\0"
        recs, ups, changes = codec.decode_output_timers(j.process_batch(orders), 2)
        self.assertEqual((recs, ups, changes), ([], [("set", b"book"), ("set", b"pen")], [(0, 0, 110), (0, 1, 120)]))
        payments = codec.encode_keyed([(b"o1", b"book")], [(0, b"paid 5", 110)]) + b"\1\0\0\0"
        recs, ups, changes = codec.decode_output_timers(j.process_batch(payments), 1)
        self.assertEqual((recs, ups, changes), ([(b"o1", b"book+paid 5", 110)], [("clear",)], [(1, 0, 110)]))
        fired = codec.encode_fired([(b"o2", b"pen")], [(0, 120, weir.EVENT_TIME)])
        self.assertEqual(codec.decode_output(j.on_timer_batch(fired), 1), ([(b"o2", b"pen unpaid", 120)], [("clear",)]))


class StateVersions(unittest.TestCase):
    """`weir.component`'s open over stand-ins for the bindings componentize-py generates."""

    def test_open_declares_the_version_and_hands_over_the_restored_one(self):
        import sys
        from unittest import mock

        host = SimpleNamespace(declared=[], restored=4)

        class Err(Exception):
            pass

        state_version = SimpleNamespace(declare=host.declared.append, restored=lambda: host.restored)
        imports = SimpleNamespace(clock=SimpleNamespace(), log=SimpleNamespace(), state_version=state_version)
        operator = SimpleNamespace(OperatorError_UnknownOperator=Err, OperatorError_BadInput=Err, OperatorError_Failed=Err)
        exports = SimpleNamespace(Operator=object, operator=operator)
        stubs = {
            "componentize_py_types": SimpleNamespace(Err=Err),
            "wit_world": SimpleNamespace(exports=exports, imports=imports),
            "wit_world.exports": exports,
            "wit_world.imports": imports,
        }
        seen = []

        class Versioned(weir.Operator):
            state_version = 2

            def open(self, ctx):
                seen.append(ctx.restored_state_version)

        @weir.map_values
        def plain(v):
            return v

        info = SimpleNamespace(subtask=0, parallelism=1, max_parallelism=128)
        # patch.dict restores sys.modules, dropping the weir.component imported here;
        # importing that submodule also shadows the function of its name in weir.
        component = weir.component
        with mock.patch.dict(sys.modules, stubs), mock.patch.object(weir, "component", component), mock.patch.object(weir.log, "_host"):
            sys.modules.pop("weir.component", None)
            component(Versioned)().open(0, info, [])
            self.assertEqual((host.declared, seen, weir.restored_state_version), ([2], [4], 4))
            host.restored = None
            plain.state_version = 5
            component(plain)().open(0, info, [])
            self.assertEqual((host.declared, weir.restored_state_version), ([2, 5], None))


if __name__ == "__main__":
    unittest.main()
