// TaskManagers (#/taskmanagers) and the TaskManager table the overview shares.

import { $, setCrumbs } from '../lib/dom.js';
import { esc, fmtDuration } from '../lib/format.js';
import { api } from '../lib/api.js';

export function tmTable(tms, compact) {
  if (!tms.length) return '<div class="empty">No TaskManager has registered.</div>';
  const slots = (t) => {
    const n = Math.min(t.slots, 32);
    let s = '<span class="slots">';
    for (let i = 0; i < n; i++) s += `<i class="${i < t.usedSlots ? 'used' : ''}"></i>`;
    return s + `</span><span class="num">${esc(t.usedSlots)} / ${esc(t.slots)}</span>`;
  };
  const alive = (t) => `<span class="pill tmstate s-${t.alive ? 'alive' : 'lost'}">${t.alive ? 'ALIVE' : 'LOST'}</span>`;
  if (compact) {
    return `<table><thead><tr><th>Name</th><th>Status</th><th>Slots used</th><th class="r">Heartbeat</th></tr></thead><tbody>${tms
      .map((t) => `<tr data-taskmanager="${esc(t.name)}"><td><span class="name">${esc(t.name)}</span><span class="id">${esc(t.addr)}</span></td><td>${alive(t)}</td><td>${slots(t)}</td><td class="r">${fmtDuration(t.lastHeartbeatMs)} ago</td></tr>`)
      .join('')}</tbody></table>`;
  }
  return `<table><thead><tr><th class="r">ID</th><th>Name</th><th>Status</th><th>Control address</th><th>Data address</th><th>Slots used</th><th class="r">Last heartbeat</th></tr></thead><tbody>${tms
    .map(
      (t) => `<tr data-taskmanager="${esc(t.name)}"><td class="r">${esc(t.id)}</td><td><span class="name">${esc(t.name)}</span></td><td>${alive(t)}</td>
      <td class="mono">${esc(t.addr)}</td><td class="mono">${esc(t.dataAddr)}</td><td>${slots(t)}</td><td class="r">${fmtDuration(t.lastHeartbeatMs)} ago</td></tr>`,
    )
    .join('')}</tbody></table>`;
}

export function taskmanagersView(root) {
  setCrumbs([{ text: 'TaskManagers' }]);
  root.innerHTML = `<div class="stats">
      <div class="stat blue" data-stat="alive"><div class="label">Alive</div><div class="value">–</div></div>
      <div class="stat red" data-stat="lost"><div class="label">Lost</div><div class="value">–</div></div>
      <div class="stat violet" data-stat="slots"><div class="label">Slots in use</div><div class="value">–</div><div class="bar"><span style="width:0"></span></div></div>
      <div class="stat green" data-stat="free"><div class="label">Free slots</div><div class="value">–</div></div>
    </div>
    <div class="card"><div class="card-head"><h2>TaskManagers and slots</h2></div><div class="card-body flush" id="tm-list"></div></div>`;
  return {
    name: 'taskmanagers',
    async update(cluster) {
      const tms = (await api('/taskmanagers')).taskmanagers || [];
      const alive = tms.filter((t) => t.alive).length;
      $('[data-stat="alive"] .value', root).textContent = String(alive);
      $('[data-stat="lost"] .value', root).textContent = String(tms.length - alive);
      const used = cluster.slotsTotal - cluster.slotsFree;
      $('[data-stat="slots"] .value', root).innerHTML = `${esc(used)}<small> / ${esc(cluster.slotsTotal)}</small>`;
      $('[data-stat="slots"] .bar span', root).style.width = (cluster.slotsTotal ? Math.min(100, (100 * used) / cluster.slotsTotal) : 0) + '%';
      $('[data-stat="free"] .value', root).textContent = String(cluster.slotsFree);
      $('#tm-list', root).innerHTML = tmTable(tms, false);
    },
  };
}
