// The job graph as SVG.

import { esc } from '../lib/format.js';

/** The execution graph as SVG: vertices left to right by topological depth. */
export function buildGraphSvg(vs, es) {
  const W = 240;
  const H = 118;
  const GX = 100;
  const GY = 34;
  const PAD = 16;
  const ids = vs.map((v) => String(v.id));
  const preds = new Map(ids.map((i) => [i, []]));
  const succs = new Map(ids.map((i) => [i, []]));
  for (const e of es) {
    const s = String(e.source);
    const t = String(e.target);
    if (preds.has(t) && succs.has(s)) {
      preds.get(t).push(s);
      succs.get(s).push(t);
    }
  }
  // Longest path from a source (Kahn's order); anything left over (a cycle) goes last.
  const depth = new Map(ids.map((i) => [i, 0]));
  const indeg = new Map(ids.map((i) => [i, preds.get(i).length]));
  const queue = ids.filter((i) => indeg.get(i) === 0);
  const seen = new Set();
  while (queue.length) {
    const n = queue.shift();
    seen.add(n);
    for (const s of succs.get(n)) {
      depth.set(s, Math.max(depth.get(s), depth.get(n) + 1));
      indeg.set(s, indeg.get(s) - 1);
      if (indeg.get(s) === 0) queue.push(s);
    }
  }
  const maxDepth = Math.max(0, ...Array.from(depth.values()));
  for (const i of ids) if (!seen.has(i)) depth.set(i, maxDepth + 1);
  const cols = [];
  for (const i of ids) (cols[depth.get(i)] ||= []).push(i);
  // Order each column by the mean row of its predecessors to keep edges straight.
  const row = new Map();
  cols.forEach((col, d) => {
    if (!col) return;
    if (d > 0) {
      const key = (i) => {
        const p = preds.get(i).filter((x) => row.has(x));
        return p.length ? p.reduce((a, x) => a + row.get(x), 0) / p.length : 1e9;
      };
      col.sort((a, b) => key(a) - key(b));
    }
    col.forEach((i, r) => row.set(i, r));
  });
  const tallest = Math.max(...cols.map((c) => (c ? c.length : 0)));
  const height = PAD * 2 + tallest * H + (tallest - 1) * GY;
  const width = PAD * 2 + cols.length * W + (cols.length - 1) * GX;
  const pos = new Map();
  cols.forEach((col, d) => {
    if (!col) return;
    const colH = col.length * H + (col.length - 1) * GY;
    const y0 = (height - colH) / 2;
    col.forEach((i, r) => pos.set(i, { x: PAD + d * (W + GX), y: y0 + r * (H + GY) }));
  });
  const byId = new Map(vs.map((v) => [String(v.id), v]));
  const label = (p) => String(p || '').replace(/_/g, '-').toLowerCase();
  const edges = es
    .filter((e) => pos.has(String(e.source)) && pos.has(String(e.target)))
    .map((e) => {
      const a = pos.get(String(e.source));
      const b = pos.get(String(e.target));
      const x1 = a.x + W;
      const y1 = a.y + H / 2;
      const x2 = b.x - 6;
      const y2 = b.y + H / 2;
      const dx = Math.max(40, (x2 - x1) / 2);
      const mx = (x1 + x2) / 2;
      const my = (y1 + y2) / 2;
      // An edge into a connect's two-input operator names the input it feeds.
      const text = label(e.partitioning) + (e.input == null ? '' : ` → in ${e.input + 1}`);
      const tw = text.length * 7 + 14;
      return `<g class="edge" data-edge="${esc(e.source)}-${esc(e.target)}" data-partitioning="${esc(e.partitioning)}" data-input="${esc(e.input ?? '')}">
        <path d="M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}" marker-end="url(#arrow)"/>
        <g class="elabel"><rect x="${mx - tw / 2}" y="${my - 10}" width="${tw}" height="20" rx="10"/><text x="${mx}" y="${my + 4}" text-anchor="middle">${esc(text)}</text></g>${
          e.input == null ? '' : `<text class="ecount unit" x="${mx}" y="${my + 24}" text-anchor="middle"></text>`
        }</g>`;
    })
    .join('');
  const nodes = ids
    .map((i) => {
      const v = byId.get(i);
      const p = pos.get(i);
      const name = String(v.name || i);
      const short = name.length > 28 ? name.slice(0, 27) + '…' : name;
      return `<g class="vertex idle" data-vertex="${esc(i)}" transform="translate(${p.x},${p.y})">
        <title>${esc(name)} (vertex ${esc(i)}, parallelism ${esc(v.parallelism)})</title>
        <rect class="box" width="${W}" height="${H}" rx="10"/>
        <rect class="band" x="1" y="1" width="6" height="${H - 2}" rx="3"/>
        <text class="vname" x="18" y="24">${esc(short)}</text>
        <text class="vpar" x="${W - 12}" y="24" text-anchor="end">p=${esc(v.parallelism)}</text>
        <text class="wmtext unit" x="${W - 12}" y="40" text-anchor="end"></text>
        <text class="rate" x="18" y="54">–</text>
        <text class="unit" x="18" y="70">records/s</text>
        <text class="vtotals unit" x="18" y="86"></text>
        <rect class="bptrack" x="18" y="96" width="90" height="6" rx="3"/>
        <rect class="bpfill" x="18" y="96" width="0" height="6" rx="3"/>
        <text class="bptext" x="${W - 12}" y="103" text-anchor="end">backpressure –</text>
      </g>`;
    })
    .join('');
  return `<svg class="graph" xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="job graph">
    <defs><marker id="arrow" viewBox="0 0 10 10" refX="8" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#94a3b8"/></marker></defs>
    ${edges}${nodes}</svg>`;
}
