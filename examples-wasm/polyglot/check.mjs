// Runs the polyglot example components outside Weir's host, to check them: each
// component is transpiled with jco (JS + core Wasm, WASI from preview2-shim) and called
// the way the host calls it (open / process / close with batch bytes).
//
//   node check.mjs OUT_DIR            (after build.sh OUT_DIR)
//
// Checks the tag-* map in every language (output bytes, and records/s over 200K
// records in batches of 10K) and the 4-language pipeline over sample/orders.csv against
// sample/expected.txt (lines in batches of at most 1000, at least two, so count's state
// crosses batches). POLYGLOT_INPUT and POLYGLOT_EXPECTED name other files (expected:
// the sorted `key<TAB>value` lines a text sink would print). Needs node and the jco npm package
// (WEIR_JS_TOOLS=dir holding node_modules; default: the tools cache of
// .ci/install-toolchains).
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, statSync } from "node:fs";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { homedir } from "node:os";

// componentize-py's core module uses extended constant expressions, which Node 20 only
// validates with a flag: re-run under it when needed.
const extendedConst = new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0, 6, 9, 1, 0x7f, 0, 0x41, 1, 0x41, 2, 0x6a, 0x0b]);
if (!WebAssembly.validate(extendedConst)) {
  const r = spawnSync(process.execPath, ["--experimental-wasm-extended-const", ...process.argv.slice(1)], { stdio: "inherit" });
  process.exit(r.status ?? 1);
}

const here = dirname(fileURLToPath(import.meta.url));
const outDir = resolve(process.argv[2] ?? "target/polyglot");
const only = process.argv.slice(3);
const input = process.env.POLYGLOT_INPUT ?? join(here, "sample/orders.csv");
const expected = process.env.POLYGLOT_EXPECTED ?? join(here, "sample/expected.txt");
const tools = resolve(process.env.WEIR_JS_TOOLS ?? join(process.env.WEIR_TOOLS_DIR ?? join(homedir(), ".cache/weir-tools"), "js"));
const jco = join(tools, "node_modules/.bin/jco");
if (!existsSync(jco)) throw new Error(`jco not found at ${jco}; set WEIR_JS_TOOLS or run .ci/install-toolchains`);

const work = join(outDir, ".check");
mkdirSync(work, { recursive: true });
if (!existsSync(join(work, "node_modules"))) symlinkSync(join(tools, "node_modules"), join(work, "node_modules"));
writeFileSync(
  join(work, "weir-host.mjs"),
  `export const logged = [];
export function log(level, message) { logged.push([level, message]); process.stderr.write(\`  [guest \${level}] \${message}\\n\`); }
const refuse = () => { throw { tag: "not-keyed" }; };
export const mapGet = refuse, mapPut = refuse, mapRemove = refuse, mapEntries = refuse, mapClear = refuse;
export function currentWatermark() { return -(2n ** 63n); }
export function currentProcessingTime() { return BigInt(Date.now()); }
`,
);

async function load(name) {
  const wasm = join(outDir, `${name}.wasm`);
  const dir = join(work, name);
  const stamp = join(dir, ".stamp");
  if (!existsSync(stamp) || statSync(stamp).mtimeMs < statSync(wasm).mtimeMs) {
    rmSync(dir, { recursive: true, force: true });
    execFileSync(jco, ["transpile", wasm, "-o", dir, "-q", "--no-typescript", "--map", "weir:dataflow/log=../weir-host.mjs", "--map", "weir:dataflow/keyed-state=../weir-host.mjs", "--map", "weir:dataflow/clock=../weir-host.mjs"], { stdio: "inherit" });
    writeFileSync(stamp, "");
  }
  const mod = await import(pathToFileURL(join(dir, `${name}.js`)).href);
  const opExport = mod.operator ?? mod["weir:dataflow/operator@0.2.0"];
  if (!opExport) throw new Error(`${name}: no operator export (exports: ${Object.keys(mod)})`);
  return opExport;
}

// ---- batch codec (host side) ----
const enc = new TextEncoder();
const dec = new TextDecoder();
function record(ts, key, value) {
  const b = new Uint8Array(16 + key.length + value.length);
  const dv = new DataView(b.buffer);
  dv.setBigInt64(0, BigInt(ts), true);
  dv.setUint32(8, key.length, true);
  b.set(key, 12);
  dv.setUint32(12 + key.length, value.length, true);
  b.set(value, 16 + key.length);
  return b;
}
function cat(parts) {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const b = new Uint8Array(n);
  let o = 0;
  for (const p of parts) { b.set(p, o); o += p.length; }
  return b;
}
const u32 = (v) => { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, v, true); return b; };
function decodeRecords(b) {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out = [];
  let p = 0;
  while (p < b.length) {
    const ts = Number(dv.getBigInt64(p, true));
    const kl = dv.getUint32(p + 8, true);
    const key = b.slice(p + 12, p + 12 + kl);
    const vl = dv.getUint32(p + 12 + kl, true);
    const value = b.slice(p + 16 + kl, p + 16 + kl + vl);
    out.push({ ts, key, value });
    p += 16 + kl + vl;
  }
  if (p !== b.length) throw new Error("records overrun");
  return out;
}
// Output of process: records and (keyed) state updates for `keyCount` keys.
function decodeOutput(b, keyCount = 0) {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const rl = dv.getUint32(0, true);
  const recs = decodeRecords(b.subarray(4, 4 + rl));
  let p = 4 + rl;
  const ups = [];
  for (let i = 0; i < keyCount; i++) {
    const t = b[p++];
    if (t === 0) ups.push(null);
    else if (t === 2) ups.push({ clear: true });
    else if (t === 1) { const l = dv.getUint32(p, true); ups.push({ set: b.slice(p + 4, p + 4 + l) }); p += 4 + l; }
    else throw new Error(`bad state tag ${t}`);
  }
  if (p !== b.length) throw new Error(`output has ${b.length - p} trailing bytes`);
  return { recs, ups };
}
function postcardString(s) {
  const b = enc.encode(s);
  const len = [];
  let n = b.length;
  while (n >= 0x80) { len.push((n & 0x7f) | 0x80); n >>>= 7; }
  len.push(n);
  return cat([Uint8Array.from(len), b]);
}
const info = (p = 1) => ({ subtask: 0, parallelism: p, maxParallelism: 128 });
let failures = 0;
function fail(msg) { failures++; console.log(`FAIL ${msg}`); }

// ---- tag ----
async function checkTag(name) {
  const op = await load(name);
  op.open(0, info(), []);
  const N = 10000;
  const batch = cat(Array.from({ length: N }, (_, i) => record(i - 5, enc.encode(i % 3 ? "k" : ""), enc.encode(String(i)))));
  const { recs } = decodeOutput(op.process(0, batch));
  let ok = recs.length === N;
  for (let i = 0; ok && i < N; i++) {
    const r = recs[i];
    ok = r.ts === i - 5 && dec.decode(r.key) === (i % 3 ? "k" : "") && dec.decode(r.value) === `v:${i}`;
    if (!ok) fail(`${name}: record ${i} is ${JSON.stringify({ ts: r.ts, key: dec.decode(r.key), value: dec.decode(r.value) })}`);
  }
  if (recs.length !== N) fail(`${name}: ${recs.length} records out of ${N}`);
  // empty batch and a truncated batch
  if (decodeOutput(op.process(0, new Uint8Array(0))).recs.length !== 0) fail(`${name}: empty batch`);
  try { op.process(0, batch.subarray(0, 10)); fail(`${name}: truncated batch accepted`); } catch (e) {
    const p = e.payload ?? e;
    if (p?.tag !== "bad-input") fail(`${name}: truncated batch gave ${JSON.stringify(p)} instead of bad-input`);
  }
  try { op.process(3, batch); fail(`${name}: operator 3 accepted`); } catch (e) {
    const p = e.payload ?? e;
    if (p?.tag !== "unknown-operator") fail(`${name}: operator 3 gave ${JSON.stringify(p)}`);
  }
  const rounds = 20;
  const t0 = performance.now();
  for (let i = 0; i < rounds; i++) op.process(0, batch);
  const dt = (performance.now() - t0) / 1000;
  op.close(0);
  console.log(`${name.padEnd(11)} ok: ${Math.round((rounds * N) / dt / 1000)}K records/s (batches of ${N}, jco/V8)`);
}

// ---- pipeline ----
function keyedBatch(groups, state) {
  // groups: Map key(string) -> [{ts, value}]; state: Map key -> Uint8Array
  const keys = [...groups.keys()];
  const parts = [u32(keys.length)];
  for (const k of keys) {
    const kb = enc.encode(k);
    parts.push(u32(kb.length), kb);
    const s = state.get(k);
    if (s === undefined) parts.push(u32(0xffffffff));
    else parts.push(u32(s.length), s);
  }
  const recs = [];
  keys.forEach((k, i) => { for (const r of groups.get(k)) recs.push([i, r]); });
  parts.push(u32(recs.length));
  for (const [i, r] of recs) {
    const b = new Uint8Array(16 + r.value.length);
    const dv = new DataView(b.buffer);
    dv.setUint32(0, i, true);
    dv.setBigInt64(4, BigInt(r.ts), true);
    dv.setUint32(12, r.value.length, true);
    b.set(r.value, 16);
    parts.push(b);
  }
  return { batch: cat(parts), keys };
}

async function checkPipeline() {
  const [parse, enrich, filter, count] = [await load("parse"), await load("enrich"), await load("filter"), await load("count")];
  parse.open(0, info(), []);
  enrich.open(0, info(), []);
  filter.open(0, info(), [["min-amount", "10"]]);
  count.open(0, info(), []);
  const lines = readFileSync(input, "utf8").split("\n");
  if (lines.at(-1) === "") lines.pop();
  const state = new Map();
  const printed = [];
  const size = Math.min(1000, Math.ceil(lines.length / 2));
  const chunks = [];
  for (let i = 0; i < lines.length; i += size) chunks.push(lines.slice(i, i + size));
  for (const chunk of chunks) {
    const src = cat(chunk.map((l, i) => record(i, new Uint8Array(0), postcardString(l))));
    const r1 = decodeOutput(parse.process(0, src)).recs;
    const r2 = decodeOutput(enrich.process(0, cat(r1.map((r) => record(r.ts, r.key, r.value))))).recs;
    const r3 = decodeOutput(filter.process(0, cat(r2.map((r) => record(r.ts, r.key, r.value))))).recs;
    const groups = new Map();
    for (const r of r3) {
      const k = dec.decode(r.key);
      if (!groups.has(k)) groups.set(k, []);
      groups.get(k).push(r);
    }
    const { batch, keys } = keyedBatch(groups, state);
    const { recs, ups } = decodeOutput(count.process(0, batch), keys.length);
    keys.forEach((k, i) => {
      const u = ups[i];
      if (u?.set) state.set(k, u.set);
      else if (u?.clear) state.delete(k);
    });
    for (const r of recs) printed.push(`${dec.decode(r.key)}\t${dec.decode(r.value)}`);
  }
  for (const op of [parse, enrich, filter, count]) op.close(0);
  const got = printed.sort().join("\n") + "\n";
  const want = readFileSync(expected, "utf8");
  if (got !== want) fail(`pipeline output differs:\n--- got\n${got.slice(0, 2000)}--- want\n${want.slice(0, 2000)}`);
  else console.log(`pipeline    ok: ${printed.length} lines in ${chunks.length} batches match ${expected}`);
  const finalState = [...state].map(([k, v]) => `${k}=${new DataView(v.buffer, v.byteOffset).getBigUint64(0, true)}`).sort();
  console.log(`            count state: ${finalState.join(" ")}`);
}

const want = (n) => only.length === 0 || only.includes(n);
for (const n of ["tag-rust", "tag-c", "tag-python", "tag-js"]) {
  if (!want(n)) continue;
  if (!existsSync(join(outDir, `${n}.wasm`))) { fail(`${n}.wasm is missing in ${outDir}`); continue; }
  try { await checkTag(n); } catch (e) { fail(`${n}: ${e?.stack ?? JSON.stringify(e)}`); }
}
if (want("pipeline")) {
  try { await checkPipeline(); } catch (e) { fail(`pipeline: ${e?.stack ?? JSON.stringify(e?.payload ?? e)}`); }
}
if (failures) { console.log(`${failures} check(s) failed`); process.exit(1); }
