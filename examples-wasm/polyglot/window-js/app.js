// Event-time tumbling window (JavaScript, keyed process with timers): per key, the
// number of records in each 60 s window of their timestamps, emitted as
// `<start> <count>` when the watermark passes the window's end. The first record of a
// window sets an event-time timer at end - 1; a key's open windows are its value state
// (`start:count` pairs joined by `;`); records behind the watermark are late and dropped.
import * as weir from "./weir.js";

const SIZE = 60000;

function load(state) {
  const windows = new Map();
  if (state.value === null) return windows;
  for (const w of weir.text(state.value).split(";")) {
    const [s, c] = w.split(":");
    windows.set(Number(s), Number(c));
  }
  return windows;
}

function store(state, windows) {
  if (windows.size === 0) return state.clear();
  state.update([...windows].map(([s, c]) => `${s}:${c}`).join(";"));
}

const window = weir.keyedProcess(
  (key, state, value, ts, ctx) => {
    const t = Number(ts);
    const start = t - (t % SIZE);
    const end = start + SIZE - 1;
    if (end <= Number(ctx.currentWatermark())) return;
    const windows = load(state);
    const n = windows.get(start) ?? 0;
    if (n === 0) ctx.registerEventTimeTimer(end);
    windows.set(start, n + 1);
    store(state, windows);
  },
  (ts, domain, key, state, ctx) => {
    const start = Number(ts) - SIZE + 1;
    const windows = load(state);
    const n = windows.get(start);
    if (n === undefined) throw weir.badInput(`a timer at ${ts} fired without its window`);
    windows.delete(start);
    store(state, windows);
    ctx.emit(key, `${start} ${n}`);
  },
);

export const { operator, timers } = weir.timedComponent(window);
