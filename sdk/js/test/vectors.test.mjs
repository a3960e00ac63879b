// Checks weir.js against the canonical batches in sdk/vectors (README.md there), which
// the host writes: every operator kind decodes the input vectors and writes the output
// vectors byte for byte. Plain node, no packages:
//
//   node --test sdk/js/test/
//
// weir.js imports the host's log and clock as `weir:dataflow/...@0.2.0`, which only exist
// inside a component; a resolve hook maps them to a stub so the module loads under node
// (its clock reads globalThis.weirTestClock and, like componentize-js, returns an s64
// as its unsigned bits).

import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { register } from "node:module";
import { test } from "node:test";

const stubLog =
  "data:text/javascript," +
  encodeURIComponent(`export function log() {}
export function currentWatermark() { return BigInt.asUintN(64, globalThis.weirTestClock?.watermark ?? -(2n ** 63n)); }
export function currentProcessingTime() { return globalThis.weirTestClock?.processingTime ?? 0n; }
export function declare(v) { globalThis.weirTestDeclared = v; }
export function restored() { return globalThis.weirTestRestored; }`);
const hooks = `export async function resolve(specifier, context, next) {
  if (specifier.startsWith("weir:dataflow/")) return { url: ${JSON.stringify(stubLog)}, shortCircuit: true };
  return next(specifier, context);
}`;
register("data:text/javascript," + encodeURIComponent(hooks));
const weir = await import("../weir.js");

// ---- the vector files ----

const dir = new URL("../../vectors/", import.meta.url);
const words = (line) => line.split("#", 1)[0].split(/\s+/).filter(Boolean);
const bytes = (word) => (word === "-" ? new Uint8Array(0) : new Uint8Array(Buffer.from(word, "hex")));
const hex = (b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");

const DOMAINS = { event: 0, processing: 1 };

/** Timestamps are BigInt here: the vectors hold i64s no JS number can. */
function loadVector(name) {
  const v = { name, layout: null, records: [], keys: [], keyedRecords: [], updates: [], fired: [], changes: [], input: null };
  for (const line of readFileSync(new URL(`${name}.txt`, dir), "utf8").split("\n")) {
    const w = words(line);
    if (w.length === 0) continue;
    if (w[0] === "layout") v.layout = w[1];
    else if (w[0] === "record") v.records.push({ ts: BigInt(w[1]), key: bytes(w[2]), value: bytes(w[3]) });
    else if (w[0] === "key") v.keys.push({ key: bytes(w[1]), state: w[2] === "none" ? null : bytes(w[2]) });
    else if (w[0] === "keyed-record") v.keyedRecords.push({ index: Number(w[1]), ts: BigInt(w[2]), value: bytes(w[3]) });
    else if (w[0] === "state" && w[1] === "unchanged") v.updates.push({ kind: "unchanged" });
    else if (w[0] === "state" && w[1] === "set") v.updates.push({ kind: "set", state: bytes(w[2]) });
    else if (w[0] === "state" && w[1] === "cleared") v.updates.push({ kind: "cleared" });
    else if (w[0] === "input") v.input = Number(w[1]);
    else if (w[0] === "fired-timer") v.fired.push({ index: Number(w[1]), ts: BigInt(w[2]), domain: DOMAINS[w[3]] });
    else if (w[0] === "timer-change") v.changes.push({ set: w[1] === "set", domain: DOMAINS[w[2]], index: Number(w[3]), ts: BigInt(w[4]) });
    else throw new Error(`${name}.txt: cannot read ${JSON.stringify(line)}`);
  }
  const text = readFileSync(new URL(`${name}.hex`, dir), "utf8");
  v.bytes = bytes(text.split("\n").map((l) => words(l).join("")).join("") || "-");
  return v;
}
const vectors = readdirSync(dir)
  .filter((f) => f.endsWith(".txt"))
  .map((f) => loadVector(f.slice(0, -4)))
  .sort((a, b) => (a.name < b.name ? -1 : 1));
const ofLayout = (layout) => vectors.filter((v) => v.layout === layout);

// ---- test-side encoders (weir.js only decodes inputs and only writes outputs) ----

function u32(n) {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}
function i64(ts) {
  const b = Buffer.alloc(8);
  b.writeBigInt64LE(BigInt(ts));
  return b;
}
const lenPrefixed = (b) => Buffer.concat([u32(b.length), b]);
const record = (ts, key, value) => Buffer.concat([i64(ts), lenPrefixed(key), lenPrefixed(value)]);
const output = (records, tail = Buffer.alloc(0)) => {
  const body = Buffer.concat(records.map((r) => record(r.ts, r.key, r.value)));
  return Buffer.concat([u32(body.length), body, tail]);
};
/** A keyed batch with one key per update, each with a state no update sets and one
 * record (ts = its index), so a keyed operator can produce the updates. */
function keyedInputFor(updates) {
  const parts = [u32(updates.length)];
  updates.forEach((_, i) => parts.push(lenPrefixed(Buffer.from(`k${i}`)), lenPrefixed(Buffer.from("old state"))));
  parts.push(u32(updates.length));
  updates.forEach((_, i) => parts.push(u32(i), i64(i), u32(0)));
  return new Uint8Array(Buffer.concat(parts));
}

/** Runs `op` (a weir.js operator kind) over one batch as the component export does;
 * returns a copy (weir.js reuses its output buffer across batches). */
function run(op, batch) {
  const c = weir.component(op);
  c.open(0, { subtask: 0, parallelism: 1, maxParallelism: 128 }, []);
  return Uint8Array.from(c.process(0, batch));
}
/** A timestamp as weir.js hands it out: a number where one holds it exactly, else a BigInt. */
const jsTs = (ts) => (ts >= -(2n ** 53n) && ts < 2n ** 53n ? Number(ts) : ts);
const badInput = (e) => e && e.tag === "bad-input";

// ---- the tests ----

test("plain input vectors: every kind reads the records and passes them through unchanged", () => {
  for (const v of ofLayout("plain")) {
    const seen = [];
    const flat = weir.flatMap((k, val, ts, emit) => {
      seen.push({ ts, key: hex(k), value: hex(val) });
      emit(k, val);
    });
    const echo = hex(output(v.records));
    assert.equal(hex(run(flat, v.bytes)), echo, v.name);
    assert.deepEqual(seen, v.records.map((r) => ({ ts: jsTs(r.ts), key: hex(r.key), value: hex(r.value) })), v.name);
    const kinds = [flat, weir.mapValues((val) => val), weir.filter(() => true), weir.map((k, val, ts) => [k, val, ts])];
    for (const op of kinds.slice(1)) assert.equal(hex(run(op, v.bytes)), echo, v.name);
    // A prefix that ends inside a record is bad input in every batch loop.
    const ends = new Set([0]);
    let end = 0;
    for (const r of v.records) ends.add((end += 16 + r.key.length + r.value.length));
    for (let cut = 0; cut < v.bytes.length; cut++) {
      if (ends.has(cut)) continue;
      for (const op of kinds) assert.throws(() => run(op, v.bytes.subarray(0, cut)), badInput, `${v.name} cut at ${cut}`);
    }
  }
});

test("keyed input vectors: keys, states and records as the host grouped them", () => {
  for (const v of ofLayout("keyed")) {
    const seen = [];
    const echo = weir.keyed((k, state, val, ts, emit) => {
      seen.push({ key: hex(k), state: state === null ? null : hex(state), value: hex(val), ts });
      emit(k, val);
      return undefined;
    });
    const out = run(echo, v.bytes);
    const want = v.keyedRecords.map((r) => ({ key: v.keys[r.index].key, state: v.keys[r.index].state, value: r.value, ts: r.ts }));
    const unchanged = Buffer.alloc(v.keys.length); // tag 0 per key
    assert.equal(hex(out), hex(output(want, unchanged)), v.name);
    assert.deepEqual(
      seen,
      want.map((r) => ({ key: hex(r.key), state: r.state === null ? null : hex(r.state), value: hex(r.value), ts: jsTs(r.ts) })),
      v.name,
    );
    for (let cut = 0; cut < v.bytes.length; cut++) {
      assert.throws(() => run(echo, v.bytes.subarray(0, cut)), badInput, `${v.name} cut at ${cut}`);
    }
  }
});

test("output vectors: records written as the host reads them", () => {
  for (const v of ofLayout("output")) {
    const emitAll = weir.flatMap((k, val, ts, emit) => v.records.forEach((r) => emit(r.key, r.value, jsTs(r.ts))));
    assert.equal(hex(run(emitAll, record(0, Buffer.alloc(0), Buffer.alloc(0)))), hex(v.bytes), v.name);
  }
});

test("keyed output vectors: records, then one state update per key", () => {
  for (const v of ofLayout("keyed-output")) {
    // The first record emits the vector's records; record i gives key i its update.
    const script = weir.keyed((k, state, val, ts, emit) => {
      if (ts === 0) v.records.forEach((r) => emit(r.key, r.value, jsTs(r.ts)));
      const u = v.updates[ts];
      return u.kind === "set" ? u.state : u.kind === "cleared" ? null : undefined;
    });
    assert.equal(hex(run(script, keyedInputFor(v.updates))), hex(v.bytes), v.name);
  }
});

// ---- timers ----

/** An on-timer batch's bytes, for the test's own inputs. */
function firedBatch(keys, timers) {
  const parts = [u32(keys.length)];
  for (const k of keys) parts.push(lenPrefixed(Buffer.from(k.key)), k.state === null ? u32(0xffffffff) : lenPrefixed(Buffer.from(k.state)));
  parts.push(u32(timers.length));
  for (const t of timers) parts.push(u32(t.index), i64(t.ts), Buffer.from([t.domain]));
  return new Uint8Array(Buffer.concat(parts));
}
function keyedBatch(keys, records) {
  const parts = [u32(keys.length)];
  for (const k of keys) parts.push(lenPrefixed(Buffer.from(k.key)), k.state === null ? u32(0xffffffff) : lenPrefixed(Buffer.from(k.state)));
  parts.push(u32(records.length));
  for (const r of records) parts.push(u32(r.index), i64(r.ts), lenPrefixed(Buffer.from(r.value)));
  return new Uint8Array(Buffer.concat(parts));
}
/** Runs a keyedProcess operator's process or on-timer over one batch as the exports do. */
function runTimed(op, batch, call = "process") {
  const { operator, timers } = weir.timedComponent(op);
  operator.open(0, { subtask: 0, parallelism: 1, maxParallelism: 128 }, []);
  return Uint8Array.from(call === "process" ? operator.process(0, batch) : timers.onTimer(0, batch));
}

test("fired-timer vectors: keys, states and timers as the host sent them", () => {
  for (const v of ofLayout("fired-timers")) {
    const seen = [];
    const echo = weir.keyedProcess(
      () => {},
      (ts, domain, key, state, ctx) => {
        seen.push({ ts, domain, key: hex(key), state: state.value === null ? null : hex(state.value), ctxKey: hex(ctx.key) });
        ctx.emit(key, "");
      },
    );
    const out = runTimed(echo, v.bytes, "timers");
    const want = v.fired.map((t) => ({ ts: t.ts, key: v.keys[t.index].key, value: new Uint8Array(0) }));
    assert.equal(hex(out), hex(output(want, Buffer.alloc(v.keys.length))), v.name);
    assert.deepEqual(
      seen,
      v.fired.map((t) => {
        const k = v.keys[t.index];
        return { ts: jsTs(t.ts), domain: t.domain, key: hex(k.key), state: k.state === null ? null : hex(k.state), ctxKey: hex(k.key) };
      }),
      v.name,
    );
    for (let cut = 0; cut < v.bytes.length; cut++) {
      assert.throws(() => runTimed(echo, v.bytes.subarray(0, cut), "timers"), badInput, `${v.name} cut at ${cut}`);
    }
  }
});

test("keyed output vectors with timers: records, state updates, then the timer changes", () => {
  const setters = ["registerEventTimeTimer", "deleteEventTimeTimer", "registerProcessingTimeTimer", "deleteProcessingTimeTimer"];
  for (const v of ofLayout("keyed-output-timers")) {
    // Records with an empty value (ts i) give key i its update, the first also emits the
    // vector's records; records with value "t" (ts j) make change j on the key it names.
    const script = weir.keyedProcess((k, state, val, ts, ctx) => {
      if (val.length === 1) {
        const c = v.changes[ts];
        ctx[setters[c.domain * 2 + (c.set ? 0 : 1)]](jsTs(c.ts));
        return;
      }
      if (ts === 0) v.records.forEach((r) => ctx.emit(r.key, r.value, jsTs(r.ts)));
      const u = v.updates[ts];
      if (u.kind === "set") state.update(u.state);
      if (u.kind === "cleared") state.clear();
    });
    const keys = v.updates.map((_, i) => ({ key: `k${i}`, state: "old state" }));
    const records = v.updates.map((_, i) => ({ index: i, ts: i, value: "" })).concat(v.changes.map((c, j) => ({ index: c.index, ts: j, value: "t" })));
    assert.equal(hex(runTimed(script, keyedBatch(keys, records))), hex(v.bytes), v.name);
  }
});

test("keyedProcess: a tumbling event-time window count, with the clock and the last change per timer", () => {
  globalThis.weirTestClock = { watermark: -41n, processingTime: 1_700_000_000_000n };
  const seen = [];
  const counts = weir.keyedProcess(
    (key, state, value, ts, ctx) => {
      seen.push([ctx.currentWatermark(), ctx.currentProcessingTime(), ctx.timestamp]);
      const n = state.value === null ? 0 : Number(weir.text(state.value));
      if (n === 0) ctx.registerEventTimeTimer(ts - (ts % 60000) + 59999);
      ctx.registerProcessingTimeTimer(5);
      if (weir.text(value) === "undo") ctx.deleteProcessingTimeTimer(5);
      state.update(String(n + 1));
    },
    (ts, domain, key, state, ctx) => {
      ctx.emit(key, `${ts - 59999} ${weir.text(state.value)}`);
      state.clear();
    },
  );
  const out = runTimed(
    counts,
    keyedBatch(
      [
        { key: "a", state: null },
        { key: "b", state: "4" },
      ],
      [
        { index: 0, ts: 61000, value: "" },
        { index: 1, ts: 5, value: "" },
        { index: 0, ts: 62000, value: "undo" },
      ],
    ),
  );
  const trailer = Buffer.concat([u32(3), Buffer.from([0]), u32(0), i64(119999), Buffer.from([3]), u32(0), i64(5), Buffer.from([2]), u32(1), i64(5)]);
  const updates = Buffer.concat([Buffer.from([1]), lenPrefixed(Buffer.from("2")), Buffer.from([1]), lenPrefixed(Buffer.from("5"))]);
  assert.equal(hex(out), hex(output([], Buffer.concat([updates, trailer]))));
  assert.deepEqual(seen, [
    [-41, 1_700_000_000_000, 61000],
    [-41, 1_700_000_000_000, 5],
    [-41, 1_700_000_000_000, 62000],
  ]);
  const fired = runTimed(counts, firedBatch([{ key: "a", state: "2" }], [{ index: 0, ts: 119999, domain: 0 }]), "timers");
  const rec = [{ ts: 119999, key: Buffer.from("a"), value: Buffer.from("60000 2") }];
  assert.equal(hex(fired), hex(output(rec, Buffer.from([2]))));
  // Without timer changes the output is a plain keyed output; unknown ids are refused.
  assert.equal(hex(runTimed(weir.keyedProcess(() => {}), keyedBatch([{ key: "a", state: null }], []))), hex(output([], Buffer.alloc(1))));
  const { timers } = weir.timedComponent(counts);
  assert.throws(() => timers.onTimer(0, firedBatch([], [])), (e) => e.tag === "unknown-operator");
  delete globalThis.weirTestClock;
});

// ---- two inputs ----

test("two-input vectors: the input, keys, states and records as the host sent them", () => {
  const vs = ofLayout("two-input");
  assert.ok(vs.length > 0, "no two-input vectors");
  for (const v of vs) {
    const seen = [];
    const echo = weir.keyedCoProcess((input, k, state, val, ts, ctx) => {
      seen.push({ input, key: hex(k), state: state.value === null ? null : hex(state.value), value: hex(val), ts });
      ctx.emit(k, val);
    });
    const want = v.keyedRecords.map((r) => ({ key: v.keys[r.index].key, state: v.keys[r.index].state, value: r.value, ts: r.ts }));
    assert.equal(hex(runTimed(echo, v.bytes)), hex(output(want, Buffer.alloc(v.keys.length))), v.name);
    assert.deepEqual(
      seen,
      want.map((r) => ({ input: v.input, key: hex(r.key), state: r.state === null ? null : hex(r.state), value: hex(r.value), ts: jsTs(r.ts) })),
      v.name,
    );
    seen.length = 0;
    runTimed(echo, new Uint8Array(Buffer.concat([v.bytes.subarray(0, v.bytes.length - 4), u32(1 - v.input)])));
    assert.deepEqual([...new Set(seen.map((s) => s.input))], [1 - v.input], v.name);
    for (let cut = 0; cut < v.bytes.length; cut++) {
      assert.throws(() => runTimed(echo, v.bytes.subarray(0, cut)), badInput, `${v.name} cut at ${cut}`);
    }
  }
});

test("two-input keyed vectors: the keyed batch with the input tag behind it, from either input", () => {
  for (const v of ofLayout("keyed")) {
    const seen = [];
    const echo = weir.keyedCoProcess((input, k, state, val, ts, ctx) => {
      seen.push({ input, key: hex(k), state: state.value === null ? null : hex(state.value), value: hex(val), ts });
      ctx.emit(k, val);
    });
    const want = v.keyedRecords.map((r) => ({ key: v.keys[r.index].key, state: v.keys[r.index].state, value: r.value, ts: r.ts }));
    for (const input of [0, 1]) {
      seen.length = 0;
      const out = runTimed(echo, new Uint8Array(Buffer.concat([v.bytes, u32(input)])));
      assert.equal(hex(out), hex(output(want, Buffer.alloc(v.keys.length))), `${v.name} input ${input}`);
      assert.deepEqual(
        seen,
        want.map((r) => ({ input, key: hex(r.key), state: r.state === null ? null : hex(r.state), value: hex(r.value), ts: jsTs(r.ts) })),
        `${v.name} input ${input}`,
      );
    }
    const tagged = new Uint8Array(Buffer.concat([v.bytes, u32(1)]));
    for (let cut = 0; cut < tagged.length; cut++) {
      assert.throws(() => runTimed(echo, tagged.subarray(0, cut)), badInput, `${v.name} cut at ${cut}`);
    }
    assert.throws(() => runTimed(echo, new Uint8Array(Buffer.concat([v.bytes, u32(2)]))), badInput, `${v.name} input 2`);
  }
});

test("two-input output vectors with timers: exactly a keyed process function's output", () => {
  const setters = ["registerEventTimeTimer", "deleteEventTimeTimer", "registerProcessingTimeTimer", "deleteProcessingTimeTimer"];
  for (const v of ofLayout("keyed-output-timers")) {
    const script = weir.keyedCoProcess((input, k, state, val, ts, ctx) => {
      assert.equal(input, 1);
      if (val.length === 1) {
        const c = v.changes[ts];
        ctx[setters[c.domain * 2 + (c.set ? 0 : 1)]](jsTs(c.ts));
        return;
      }
      if (ts === 0) v.records.forEach((r) => ctx.emit(r.key, r.value, jsTs(r.ts)));
      const u = v.updates[ts];
      if (u.kind === "set") state.update(u.state);
      if (u.kind === "cleared") state.clear();
    });
    const keys = v.updates.map((_, i) => ({ key: `k${i}`, state: "old state" }));
    const records = v.updates.map((_, i) => ({ index: i, ts: i, value: "" })).concat(v.changes.map((c, j) => ({ index: c.index, ts: j, value: "t" })));
    const batch = new Uint8Array(Buffer.concat([keyedBatch(keys, records), u32(1)]));
    assert.equal(hex(runTimed(script, batch)), hex(v.bytes), v.name);
  }
});

test("keyedCoProcess: an order waits for its payment in the key's state; a timer reports it unpaid", () => {
  const join = weir.keyedCoProcess(
    (input, key, state, value, ts, ctx) => {
      if (input === 0) {
        state.update(value);
        ctx.registerEventTimeTimer(ts + 100);
      } else if (state.value !== null) {
        ctx.deleteEventTimeTimer(ts);
        ctx.emit(key, `${weir.text(state.value)}+${weir.text(value)}`);
        state.clear();
      }
    },
    (ts, domain, key, state, ctx) => {
      ctx.emit(key, `${weir.text(state.value)} unpaid`);
      state.clear();
    },
  );
  const orders = keyedBatch(
    [
      { key: "o1", state: null },
      { key: "o2", state: null },
    ],
    [
      { index: 0, ts: 10, value: "book" },
      { index: 1, ts: 20, value: "pen" },
    ],
  );
  const set = (s) => Buffer.concat([Buffer.from([1]), lenPrefixed(Buffer.from(s))]);
  const timer = (kind, index, ts) => Buffer.concat([Buffer.from([kind]), u32(index), i64(ts)]);
  const wantOrders = output([], Buffer.concat([set("book"), set("pen"), u32(2), timer(0, 0, 110), timer(0, 1, 120)]));
  assert.equal(hex(runTimed(join, new Uint8Array(Buffer.concat([orders, u32(0)])))), hex(wantOrders));
  const payments = keyedBatch([{ key: "o1", state: "book" }], [{ index: 0, ts: 110, value: "paid 5" }]);
  const rec = [{ ts: 110, key: Buffer.from("o1"), value: Buffer.from("book+paid 5") }];
  const wantPayments = output(rec, Buffer.concat([Buffer.from([2]), u32(1), timer(1, 0, 110)]));
  assert.equal(hex(runTimed(join, new Uint8Array(Buffer.concat([payments, u32(1)])))), hex(wantPayments));
  const fired = runTimed(join, firedBatch([{ key: "o2", state: "pen" }], [{ index: 0, ts: 120, domain: 0 }]), "timers");
  assert.equal(hex(fired), hex(output([{ ts: 120, key: Buffer.from("o2"), value: Buffer.from("pen unpaid") }], Buffer.from([2]))));
});

test("open declares the state version and hands over the restored one", () => {
  const seen = [];
  const operator = weir.component(weir.mapValues((v) => v), { stateVersion: 3, open: (ctx) => seen.push(ctx.restoredStateVersion) });
  const info = { subtask: 0, parallelism: 1, maxParallelism: 128 };
  globalThis.weirTestRestored = 2;
  operator.open(0, info, []);
  assert.equal(globalThis.weirTestDeclared, 3);
  assert.equal(weir.restoredStateVersion, 2);
  operator.close(0);
  // No restored state: the host's `none` arrives as undefined and reads as null.
  globalThis.weirTestRestored = undefined;
  weir.component(weir.mapValues((v) => v)).open(0, info, []);
  assert.equal(globalThis.weirTestDeclared, 0);
  assert.deepEqual([...seen, weir.restoredStateVersion], [2, null]);
});
