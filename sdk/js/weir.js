// weir.js: write one Weir operator in JavaScript (a component of world
// `operator-component`, built with componentize-js).
//
//   import * as weir from "./weir.js";     // build.sh copies weir.js next to app.js
//   export const operator = weir.component(weir.mapValues((v) => [TAG, v]));
//
// Records are (key: Uint8Array, value: Uint8Array, ts: number); keys and values are
// opaque bytes (text sinks print them as UTF-8). ts is a BigInt beyond +-2^53, where a
// number cannot hold it exactly; either kind may be emitted. Kinds of operators:
//   mapValues(f)  f(value) -> bytes | string | [bytes, ...] (parts, written without
//                 concatenating); same key and ts (fastest)
//   map(f)        f(key, value, ts) -> [key, value] or [key, value, ts]
//   filter(f)     f(key, value, ts) -> boolean        records kept byte for byte
//   flatMap(f)    f(key, value, ts, emit) where emit(key, value, ts = same ts)
//   keyed(f)      f(key, state, value, ts, emit) -> new state (bytes), null to clear,
//                 undefined to keep; `state` is bytes or null (input edge: key-by)
//   keyedProcess(process, onTimer)   Flink's KeyedProcessFunction (keyed, with timers):
//                 process(key, state, value, ts, ctx) per record and
//                 onTimer(ts, domain, key, state, ctx) per fired timer (domain
//                 EVENT_TIME or PROCESSING_TIME). `state`: { value (bytes or null),
//                 update(bytes | string), clear() }. `ctx`, for the current key:
//                 emit(key, value, ts = the record's or timer's time),
//                 registerEventTimeTimer(t), deleteEventTimeTimer(t),
//                 registerProcessingTimeTimer(t), deleteProcessingTimeTimer(t),
//                 currentWatermark(), currentProcessingTime(), key, timestamp.
//                 Export with `export const { operator, timers } = weir.timedComponent(op)`
//                 and build for world `timed-operator-component`.
//   keyedCoProcess(process, onTimer)   Flink's KeyedCoProcessFunction (a manifest node
//                 with `inputs2`): process(input, key, state, value, ts, ctx), input 0
//                 (`inputs`) or 1 (`inputs2`); onTimer, state and ctx as for
//                 keyedProcess. Both inputs share the key's state and timers.
// State versions: `component(o, { stateVersion: 2 })` declares the format of the state
// the operator writes (recorded with every snapshot of it; default 0); open sets
// `weir.restoredStateVersion` (also `ctx.restoredStateVersion` in hooks.open): the
// version declared by the code whose state it starts from (a restore from a checkpoint
// or savepoint, or the code a live swap replaced), null without restored state.
// `weir.args` (an object) and `weir.task` are set by open. Throw weir.badInput(msg) or
// weir.failed(msg) (or any Error) to fail the operator with a message.
//
// Batch layouts: see wit/dataflow.wit (`operator.process`); all little-endian.

import { log as hostLog } from "weir:dataflow/log@0.2.0";
import { currentWatermark as hostWatermark, currentProcessingTime as hostProcessingTime } from "weir:dataflow/clock@0.2.0";
import { declare as hostDeclareStateVersion, restored as hostRestoredStateVersion } from "weir:dataflow/state-version@0.2.0";

export let args = {};
export let task = null;
export let restoredStateVersion = null;

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8");

/** UTF-8 bytes as a string. */
export function text(b) {
  return dec.decode(b);
}
/** A string as UTF-8 bytes. */
export function utf8(s) {
  return enc.encode(s);
}
/** Concatenation of byte arrays. */
export function concat(...parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
const asBytes = (x) => (typeof x === "string" ? enc.encode(x) : x);

/** Decodes a postcard varint at `pos`: [value (Number), next position]. */
export function postcardVarint(b, pos = 0) {
  let v = 0;
  let mul = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= b.length) break;
    const c = b[pos++];
    v += (c & 0x7f) * mul;
    if (c < 0x80) return [v, pos];
    mul *= 128;
  }
  throw badInput("bad postcard varint");
}
/** A postcard string (the file-lines source's line encoding) as a JS string. */
export function postcardStr(b) {
  const [n, p] = postcardVarint(b, 0);
  if (p + n > b.length) throw badInput("postcard string is truncated");
  return dec.decode(b.subarray(p, p + n));
}
/** A postcard varint value (the generator source's number encoding). */
export function postcardU64(b) {
  return postcardVarint(b, 0)[0];
}

export function badInput(msg) {
  return { tag: "bad-input", val: String(msg) };
}
export function failed(msg) {
  return { tag: "failed", val: String(msg) };
}

export const log = {
  debug: (m) => hostLog("debug", String(m)),
  info: (m) => hostLog("info", String(m)),
  warn: (m) => hostLog("warn", String(m)),
  error: (m) => hostLog("error", String(m)),
};

// ---- output buffer: one Uint8Array, grown by doubling, reused across batches ----
let out = new Uint8Array(1 << 16);
let ov = new DataView(out.buffer);
let op = 0;

function ensure(n) {
  if (op + n <= out.length) return;
  let cap = out.length * 2;
  while (cap < op + n) cap *= 2;
  const b = new Uint8Array(cap);
  b.set(out.subarray(0, op));
  out = b;
  ov = new DataView(out.buffer);
}
function beginOutput() {
  op = 4;
}
function endRecords() {
  ov.setUint32(0, op - 4, true);
}
// Timestamps are i64. A number holds them exactly in [-2^53, 2^53), which every real
// timestamp is; outside that they are BigInts, so none is silently rounded (i64::MAX as
// a double would come back as i64::MIN). Both kinds are accepted when writing.
function writeTs(ts) {
  if (typeof ts === "bigint") {
    ov.setBigInt64(op, ts, true);
    return;
  }
  ov.setUint32(op, ts >>> 0, true);
  ov.setInt32(op + 4, Math.floor(ts / 4294967296), true);
}
function readTs(dv, pos) {
  const hi = dv.getInt32(pos + 4, true);
  if (hi < -0x200000 || hi >= 0x200000) return dv.getBigInt64(pos, true);
  return dv.getUint32(pos, true) + hi * 4294967296;
}
function writeRecord(ts, key, value) {
  key = asBytes(key);
  value = asBytes(value);
  ensure(16 + key.length + value.length);
  writeTs(ts);
  ov.setUint32(op + 8, key.length, true);
  out.set(key, op + 12);
  op += 12 + key.length;
  ov.setUint32(op, value.length, true);
  out.set(value, op + 4);
  op += 4 + value.length;
}
function result() {
  return out.subarray(0, op);
}
function check(cond, what) {
  if (!cond) throw badInput(what);
}

// ---- batch loops ----
function forRecords(b, fn) {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const n = b.length;
  let pos = 0;
  while (pos < n) {
    check(pos + 16 <= n, `batch ends inside the record at byte ${pos}`);
    const klen = dv.getUint32(pos + 8, true);
    const vs = pos + 16 + klen;
    check(vs <= n, `batch ends inside the record at byte ${pos}`);
    const end = vs + dv.getUint32(vs - 4, true);
    check(end <= n, `batch ends inside the record at byte ${pos}`);
    fn(dv, pos, vs, end);
    pos = end;
  }
}

function mapValuesBatch(f, b) {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const n = b.length;
  let pos = 0;
  op = 4;
  while (pos < n) {
    if (pos + 16 > n) throw badInput(`batch ends inside the record at byte ${pos}`);
    const vs = pos + 16 + dv.getUint32(pos + 8, true);
    if (vs > n) throw badInput(`batch ends inside the record at byte ${pos}`);
    const end = vs + dv.getUint32(vs - 4, true);
    if (end > n) throw badInput(`batch ends inside the record at byte ${pos}`);
    let v = f(b.subarray(vs, end));
    const head = vs - 4 - pos;
    if (Array.isArray(v)) {
      // parts, written one after the other (no intermediate concatenation)
      let len = 0;
      for (let i = 0; i < v.length; i++) len += v[i].length;
      if (op + head + 4 + len > out.length) ensure(head + 4 + len);
      out.set(b.subarray(pos, vs - 4), op);
      op += head;
      ov.setUint32(op, len, true);
      op += 4;
      for (let i = 0; i < v.length; i++) {
        out.set(v[i], op);
        op += v[i].length;
      }
    } else {
      if (typeof v === "string") v = enc.encode(v);
      if (op + head + 4 + v.length > out.length) ensure(head + 4 + v.length);
      out.set(b.subarray(pos, vs - 4), op);
      op += head;
      ov.setUint32(op, v.length, true);
      out.set(v, op + 4);
      op += 4 + v.length;
    }
    pos = end;
  }
  ov.setUint32(0, op - 4, true);
  return out.subarray(0, op);
}

function filterBatch(f, b) {
  beginOutput();
  forRecords(b, (dv, pos, vs, end) => {
    if (f(b.subarray(pos + 12, vs - 4), b.subarray(vs, end), readTs(dv, pos))) {
      ensure(end - pos);
      out.set(b.subarray(pos, end), op);
      op += end - pos;
    }
  });
  endRecords();
  return result();
}

function mapBatch(f, b) {
  beginOutput();
  forRecords(b, (dv, pos, vs, end) => {
    const ts = readTs(dv, pos);
    const r = f(b.subarray(pos + 12, vs - 4), b.subarray(vs, end), ts);
    writeRecord(r.length > 2 ? r[2] : ts, r[0], r[1]);
  });
  endRecords();
  return result();
}

function flatMapBatch(f, b) {
  beginOutput();
  forRecords(b, (dv, pos, vs, end) => {
    const ts = readTs(dv, pos);
    f(b.subarray(pos + 12, vs - 4), b.subarray(vs, end), ts, (k, v, t = ts) => writeRecord(t, k, v));
  });
  endRecords();
  return result();
}

const NO_STATE = 0xffffffff;

/** The key table a keyed and an on-timer batch start with. */
function readKeyTable(b, dv) {
  const n = b.length;
  check(n >= 4, "keyed batch shorter than its key count");
  const kc = dv.getUint32(0, true);
  let pos = 4;
  const keys = new Array(kc);
  const states = new Array(kc);
  for (let i = 0; i < kc; i++) {
    check(pos + 4 <= n, "batch ends inside the key table");
    const kl = dv.getUint32(pos, true);
    pos += 4;
    check(pos + kl + 4 <= n, "batch ends inside the key table");
    keys[i] = b.subarray(pos, pos + kl);
    pos += kl;
    const sl = dv.getUint32(pos, true);
    pos += 4;
    if (sl === NO_STATE) states[i] = null;
    else {
      check(pos + sl <= n, "batch ends inside a state");
      states[i] = b.subarray(pos, pos + sl);
      pos += sl;
    }
  }
  return { kc, keys, states, pos };
}

/** Appends one state update per key: `cur[i]` is the new state, `changed[i]` whether it was written. */
function writeStateUpdates(states, cur, changed) {
  for (let i = 0; i < states.length; i++) {
    const s = cur[i];
    if (!changed[i]) {
      ensure(1);
      out[op++] = 0;
    } else if (s === null) {
      ensure(1);
      out[op++] = states[i] === null ? 0 : 2;
    } else {
      ensure(5 + s.length);
      out[op] = 1;
      ov.setUint32(op + 1, s.length, true);
      out.set(s, op + 5);
      op += 5 + s.length;
    }
  }
}

function keyedBatch(f, b) {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const n = b.length;
  const t = readKeyTable(b, dv);
  const { kc, keys, states } = t;
  let pos = t.pos;
  const cur = states.slice();
  const changed = new Uint8Array(kc);
  check(pos + 4 <= n, "batch ends before the record count");
  const rc = dv.getUint32(pos, true);
  pos += 4;
  beginOutput();
  for (let r = 0; r < rc; r++) {
    check(pos + 16 <= n, "batch ends inside a record");
    const ki = dv.getUint32(pos, true);
    check(ki < kc, `key index ${ki} of ${kc} keys`);
    const ts = readTs(dv, pos + 4);
    const vl = dv.getUint32(pos + 12, true);
    check(pos + 16 + vl <= n, "batch ends inside a value");
    const value = b.subarray(pos + 16, pos + 16 + vl);
    pos += 16 + vl;
    const s = f(keys[ki], cur[ki], value, ts, (k, v, t = ts) => writeRecord(t, k, v));
    if (s !== undefined) {
      cur[ki] = s === null ? null : asBytes(s);
      changed[ki] = 1;
    }
  }
  check(pos === n, "bytes after the last record");
  endRecords();
  writeStateUpdates(states, cur, changed);
  return result();
}

// ---- keyed process functions: value state, timers, clock ----

export const EVENT_TIME = 0;
export const PROCESSING_TIME = 1;

/** i64 bounds a timer time must stay in. */
const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;
/** A BigInt from the host as weir.js hands out timestamps (see writeTs). */
const fromBig = (t) => (t >= -(2n ** 53n) && t < 2n ** 53n ? Number(t) : t);

/** An s64 the host returned. componentize-js 0.23 hands an import's s64 result over as
 * its unsigned bits (i64::MIN, the watermark before the first, arrives as 2^63), so the
 * bits are read back as signed. */
const fromHost = (x) => fromBig(BigInt.asIntN(64, BigInt(x)));

/** The value state of one key during a call; written back once at the end. */
class KeyState {
  constructor(value) {
    this.value = value;
    this.changed = false;
  }
  update(bytes) {
    if (bytes === null || bytes === undefined) throw failed("state.update needs bytes; use state.clear() to remove it");
    this.value = asBytes(bytes);
    this.changed = true;
  }
  clear() {
    this.value = null;
    this.changed = true;
  }
}

/** Time and timers of the key being processed, Flink's KeyedProcessFunction.Context with its TimerService. */
class TimerContext {
  constructor() {
    // The last change of a timer in a call decides it (set then delete is a delete),
    // so one change per timer is written, at the place of its first.
    this.changes = new Map();
    this.wm = undefined;
    this.pt = undefined;
    this.ki = 0;
    this.key = null;
    this.timestamp = 0;
    this.timerDomain = null;
    this.emit = (k, v, t = this.timestamp) => writeRecord(t, k, v);
  }
  change(kind, ts) {
    const big = BigInt(ts);
    if (big < I64_MIN || big > I64_MAX) throw failed(`timer time ${ts} is not an i64`);
    this.changes.set(`${this.ki}/${kind >> 1}/${big}`, { kind, ki: this.ki, ts: big });
  }
  registerEventTimeTimer(ts) {
    this.change(0, ts);
  }
  deleteEventTimeTimer(ts) {
    this.change(1, ts);
  }
  registerProcessingTimeTimer(ts) {
    this.change(2, ts);
  }
  deleteProcessingTimeTimer(ts) {
    this.change(3, ts);
  }
  /** The watermark of this operator's input (-2^63 as a BigInt before the first); read once per call. */
  currentWatermark() {
    if (this.wm === undefined) this.wm = fromHost(hostWatermark());
    return this.wm;
  }
  /** Processing time, ms since the Unix epoch; read once per call. */
  currentProcessingTime() {
    if (this.pt === undefined) this.pt = fromHost(hostProcessingTime());
    return this.pt;
  }
  /** Appends the timer-change trailer; nothing without changes (a plain keyed output then). */
  write() {
    if (this.changes.size === 0) return;
    ensure(4 + 13 * this.changes.size);
    ov.setUint32(op, this.changes.size, true);
    op += 4;
    for (const c of this.changes.values()) {
      out[op] = c.kind;
      ov.setUint32(op + 1, c.ki, true);
      ov.setBigInt64(op + 5, c.ts, true);
      op += 13;
    }
  }
}

function keyedProcessBatch(o, b) {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const n = b.length;
  const t = readKeyTable(b, dv);
  const { kc, keys } = t;
  let pos = t.pos;
  const cur = t.states.map((s) => new KeyState(s));
  const ctx = new TimerContext();
  check(pos + 4 <= n, "batch ends before the record count");
  const rc = dv.getUint32(pos, true);
  pos += 4;
  beginOutput();
  for (let r = 0; r < rc; r++) {
    check(pos + 16 <= n, "batch ends inside a record");
    const ki = dv.getUint32(pos, true);
    check(ki < kc, `key index ${ki} of ${kc} keys`);
    const ts = readTs(dv, pos + 4);
    const vl = dv.getUint32(pos + 12, true);
    check(pos + 16 + vl <= n, "batch ends inside a value");
    const value = b.subarray(pos + 16, pos + 16 + vl);
    pos += 16 + vl;
    ctx.ki = ki;
    ctx.key = keys[ki];
    ctx.timestamp = ts;
    o.f(keys[ki], cur[ki], value, ts, ctx);
  }
  check(pos === n, "bytes after the last record");
  return finishTimed(t.states, cur, ctx);
}

/** A two-input operator's batch: the keyed batch and the input (0 or 1) its records came through, which the host appends last. */
function splitInput(b) {
  check(b.length >= 4, "two-input batch shorter than its input tag");
  const input = new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(b.length - 4, true);
  check(input <= 1, `input tag ${input} (a two-input operator has inputs 0 and 1)`);
  return [b.subarray(0, b.length - 4), input];
}

function keyedCoProcessBatch(o, b) {
  const [body, input] = splitInput(b);
  return keyedProcessBatch({ f: (key, state, value, ts, ctx) => o.f(input, key, state, value, ts, ctx) }, body);
}

function onTimerBatch(o, b) {
  if (!o.onTimer) throw failed("a timer fired but the operator has no onTimer");
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const n = b.length;
  const t = readKeyTable(b, dv);
  const { kc, keys } = t;
  let pos = t.pos;
  const cur = t.states.map((s) => new KeyState(s));
  const ctx = new TimerContext();
  check(pos + 4 <= n, "batch ends before the timer count");
  const tc = dv.getUint32(pos, true);
  pos += 4;
  beginOutput();
  for (let i = 0; i < tc; i++) {
    check(pos + 13 <= n, "batch ends inside a timer");
    const ki = dv.getUint32(pos, true);
    check(ki < kc, `timer key index ${ki} of ${kc} keys`);
    const ts = readTs(dv, pos + 4);
    const domain = b[pos + 12];
    check(domain <= PROCESSING_TIME, `timer domain ${domain} (0 event time, 1 processing time)`);
    pos += 13;
    ctx.ki = ki;
    ctx.key = keys[ki];
    ctx.timestamp = ts;
    ctx.timerDomain = domain;
    o.onTimer(ts, domain, keys[ki], cur[ki], ctx);
  }
  check(pos === n, "bytes after the last timer");
  return finishTimed(t.states, cur, ctx);
}

function finishTimed(states, cur, ctx) {
  endRecords();
  writeStateUpdates(
    states,
    cur.map((s) => s.value),
    cur.map((s) => s.changed),
  );
  ctx.write();
  return result();
}

const op_ = (batch, f) => ({ batch, f });
export const mapValues = (f) => op_(mapValuesBatch, f);
export const map = (f) => op_(mapBatch, f);
export const filter = (f) => op_(filterBatch, f);
export const flatMap = (f) => op_(flatMapBatch, f);
export const keyed = (f) => op_(keyedBatch, f);
/** A keyed operator with timers (see the top of this file); export it with timedComponent. */
export const keyedProcess = (process, onTimer) => ({ batch: (o, b) => keyedProcessBatch(o, b), f: process, onTimer, self: true });
/** A two-input keyed operator with timers (see the top of this file); export it with timedComponent. */
export const keyedCoProcess = (process, onTimer) => ({ batch: (o, b) => keyedCoProcessBatch(o, b), f: process, onTimer, self: true });

/**
 * The `operator` export for `o` (from mapValues/map/filter/flatMap/keyed), operator id
 * 0. `hooks.open(ctx)` / `hooks.close()` are optional; `hooks.stateVersion` (default 0) is
 * the state format version it declares at open.
 */
function errorOf(e) {
  if (e && typeof e === "object" && typeof e.tag === "string") return e;
  return failed(e && e.message ? e.message : String(e));
}

export function component(o, hooks = {}) {
  return makeOperator(o, hooks).operator;
}

/** The operator export and the id check the timers export shares with it. */
function makeOperator(o, hooks) {
  let isOpen = false;
  const known = (id) => {
    if (id !== 0 || !isOpen) throw { tag: "unknown-operator", val: id };
  };
  const wrap = errorOf;
  const operator = {
    open(id, info, argList) {
      if (id !== 0) throw { tag: "unknown-operator", val: id };
      args = Object.fromEntries(argList);
      task = info;
      hostDeclareStateVersion(hooks.stateVersion ?? 0);
      // An absent option arrives as undefined.
      restoredStateVersion = hostRestoredStateVersion() ?? null;
      try {
        if (hooks.open) hooks.open({ args, task: info, restoredStateVersion });
      } catch (e) {
        throw wrap(e);
      }
      isOpen = true;
    },
    process(id, batch) {
      known(id);
      try {
        return o.self ? o.batch(o, batch) : o.batch(o.f, batch);
      } catch (e) {
        throw wrap(e);
      }
    },
    close(id) {
      known(id);
      isOpen = false;
      try {
        if (hooks.close) hooks.close();
      } catch (e) {
        throw wrap(e);
      }
    },
  };
  return { operator, known };
}

/**
 * The `operator` and `timers` exports (world `timed-operator-component`) for `o` from
 * keyedProcess: `export const { operator, timers } = weir.timedComponent(o, hooks)`.
 */
export function timedComponent(o, hooks = {}) {
  const { operator, known } = makeOperator(o, hooks);
  const timers = {
    onTimer(id, batch) {
      known(id);
      try {
        return onTimerBatch(o, batch);
      } catch (e) {
        throw errorOf(e);
      }
    },
  };
  return { operator, timers };
}
