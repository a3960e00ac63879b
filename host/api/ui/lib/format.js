// Formatting shared by every view: escaping, numbers, sizes, durations, times,
// watermarks, state pills, backpressure levels and job names.

export function esc(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

const intFmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
export function fmtInt(n) {
  return n == null || Number.isNaN(Number(n)) ? '–' : intFmt.format(Math.round(Number(n)));
}
export function fmtCompact(n) {
  n = Number(n || 0);
  const abs = Math.abs(n);
  if (abs >= 1e9) return (n / 1e9).toFixed(abs >= 1e10 ? 1 : 2) + 'G';
  if (abs >= 1e6) return (n / 1e6).toFixed(abs >= 1e7 ? 1 : 2) + 'M';
  if (abs >= 1e4) return (n / 1e3).toFixed(abs >= 1e5 ? 0 : 1) + 'k';
  return intFmt.format(Math.round(n));
}
export function fmtBytes(b) {
  if (b == null) return '–';
  const u = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = Number(b);
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return (i === 0 ? v : v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)) + ' ' + u[i];
}
export function fmtDuration(ms) {
  if (ms == null) return '–';
  ms = Math.max(0, Number(ms));
  if (ms < 1000) return Math.round(ms) + ' ms';
  const s = ms / 1000;
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + ' s';
  const m = Math.floor(s / 60);
  const h = Math.floor(m / 60);
  const d = Math.floor(h / 24);
  if (d > 0) return `${d}d ${h % 24}h`;
  if (h > 0) return `${h}h ${String(m % 60).padStart(2, '0')}m`;
  return `${m}m ${String(Math.floor(s % 60)).padStart(2, '0')}s`;
}
export function fmtTime(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return esc(iso);
  const now = new Date();
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  if (d.toDateString() === now.toDateString()) return time;
  return d.toLocaleDateString([], { month: 'short', day: 'numeric' }) + ' ' + time;
}
/**
 * A watermark (ms of event time): "–" before the first, "end" once the input ended
 * (i64::MAX, which JSON numbers round), a UTC time for epoch-like values and the plain
 * number of ms for small synthetic clocks.
 */
export function fmtWatermark(ms) {
  if (ms == null) return '–';
  const n = Number(ms);
  if (n >= 9.2e18) return 'end';
  if (Math.abs(n) < 1e11) return intFmt.format(n) + ' ms';
  const d = new Date(n);
  return Number.isNaN(d.getTime()) ? String(ms) : d.toISOString().replace('T', ' ').replace('Z', '');
}
export function timeCell(iso) {
  return `<span title="${esc(iso)}">${fmtTime(iso)}</span>`;
}
export function pill(state, extraClass = 'state') {
  return `<span class="pill ${extraClass} s-${esc(state)}" data-state="${esc(state)}">${esc(state)}</span>`;
}
/** Flink's thresholds: OK up to 10 %, LOW up to 50 %, HIGH above. */
export function bpLevel(bp, running = true) {
  if (!running) return 'idle';
  if (bp > 0.5) return 'high';
  if (bp > 0.1) return 'low';
  return 'ok';
}
export function bpBar(bp) {
  const pct = Math.round((bp || 0) * 100);
  return `<span class="bar bp inline"><span class="${bpLevel(bp)}" style="width:${pct}%"></span></span><span class="num">${pct}%</span>`;
}
export function jobName(j) {
  return j?.metadata?.name || j?.metadata?.id || '?';
}
export function restarts(j) {
  return j?.status?.started?.observedJobRestarts ?? 0;
}
