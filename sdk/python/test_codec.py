"""Tests of weir's batch codec and operator kinds, without the generated bindings:
    python3 -m unittest discover -s sdk/python
"""

import unittest

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

    def test_postcard(self):
        self.assertEqual(weir.postcard_str(weir.postcard_string("héllo")), "héllo")
        self.assertEqual(weir.postcard_u64(weir.varint(300)), 300)
        with self.assertRaises(weir.BadInput):
            weir.postcard_str(b"\x05ab")


if __name__ == "__main__":
    unittest.main()
