// The overview (#/overview): cluster numbers, running and recently ended jobs,
// TaskManagers.

import { $, setCrumbs } from '../lib/dom.js';
import { esc, fmtDuration, jobName, pill, timeCell } from '../lib/format.js';
import { api } from '../lib/api.js';
import { RUNNING } from '../lib/state.js';
import { jobsTable } from './jobs.js';
import { tmTable } from './taskmanagers.js';

export function overviewView(root) {
  setCrumbs([{ text: 'Overview' }]);
  root.innerHTML = `
    <div class="stats">
      <div class="stat blue" data-stat="taskmanagers"><div class="label">TaskManagers</div><div class="value">–</div><div class="hint">alive</div></div>
      <div class="stat violet" data-stat="slots"><div class="label">Slots in use</div><div class="value">–</div><div class="bar"><span style="width:0"></span></div></div>
      <div class="stat green" data-stat="running"><div class="label">Running jobs</div><div class="value">–</div><div class="hint">starting, started or terminating</div></div>
      <div class="stat" data-stat="finished"><div class="label">Finished</div><div class="value">–</div><div class="hint">completed normally</div></div>
      <div class="stat red" data-stat="failed"><div class="label">Failed</div><div class="value">–</div><div class="hint">gave up restarting</div></div>
      <div class="stat gray" data-stat="terminated"><div class="label">Cancelled</div><div class="value">–</div><div class="hint">terminated on request</div></div>
    </div>
    <div class="card"><div class="card-head"><h2>Running jobs</h2><a href="#/jobs" class="sub">All jobs →</a></div><div class="card-body flush" id="ov-running"></div></div>
    <div class="grid two">
      <div class="card"><div class="card-head"><h2>Recently ended</h2></div><div class="card-body flush" id="ov-history"></div></div>
      <div class="card"><div class="card-head"><h2>TaskManagers</h2><a href="#/taskmanagers" class="sub">Details →</a></div><div class="card-body flush" id="ov-tms"></div></div>
    </div>`;
  const setStat = (k, html) => {
    $(`[data-stat="${k}"] .value`, root).innerHTML = html;
  };
  return {
    name: 'overview',
    async update(cluster) {
      const [jobs, tms] = await Promise.all([api('/jobs'), api('/taskmanagers')]);
      const used = cluster.slotsTotal - cluster.slotsFree;
      setStat('taskmanagers', esc(cluster.taskmanagers));
      setStat('slots', `${esc(used)}<small> / ${esc(cluster.slotsTotal)}</small>`);
      $('[data-stat="slots"] .bar span', root).style.width = (cluster.slotsTotal ? Math.min(100, (100 * used) / cluster.slotsTotal) : 0) + '%';
      for (const k of ['running', 'finished', 'failed', 'terminated']) setStat(k, esc(cluster.jobs?.[k] ?? 0));
      const all = jobs.jobs || [];
      $('#ov-running').innerHTML = jobsTable(all.filter((j) => RUNNING.has(j.status.state)), 'No job is running. Submit one from “Submit job”.');
      const ended = all.filter((j) => !RUNNING.has(j.status.state)).slice(0, 8);
      $('#ov-history').innerHTML = ended.length
        ? `<table><thead><tr><th>Job</th><th>State</th><th>Ended</th><th class="r">Duration</th></tr></thead><tbody>${ended
            .map((j) => {
              const tr = j.status.transitions || [];
              return `<tr class="link" data-job="${esc(j.metadata.id)}" onclick="location.hash='#/jobs/${esc(j.metadata.id)}'">
                <td><a class="name" href="#/jobs/${esc(j.metadata.id)}">${esc(jobName(j))}</a><span class="id">${esc(j.metadata.id)}</span></td>
                <td>${pill(j.status.state)}</td><td>${timeCell(tr.length ? tr[tr.length - 1].time : null)}</td>
                <td class="r">${fmtDuration(j.status.durationMs)}</td></tr>`;
            })
            .join('')}</tbody></table>`
        : '<div class="empty">No job has ended yet.</div>';
      $('#ov-tms').innerHTML = tmTable(tms.taskmanagers || [], true);
    },
  };
}
