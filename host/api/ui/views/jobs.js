// The jobs list (#/jobs) and the jobs table the overview shares.

import { $, $$, setCrumbs } from '../lib/dom.js';
import { esc, fmtDuration, jobName, pill, restarts, timeCell } from '../lib/format.js';
import { api } from '../lib/api.js';
import { app, RUNNING } from '../lib/state.js';

export function jobRow(j) {
  const id = j.metadata.id;
  const st = j.status || {};
  const eng = st.started ? st.started.observedJobStatus : null;
  return `<tr class="link" data-job="${esc(id)}" data-state="${esc(st.state)}" onclick="location.hash='#/jobs/${esc(id)}'">
    <td><a class="name" href="#/jobs/${esc(id)}">${esc(jobName(j))}</a><span class="id">${esc(id)}</span></td>
    <td>${pill(st.state)}</td>
    <td>${eng ? pill(eng, 'engine') : '<span class="muted">–</span>'}</td>
    <td>${timeCell(j.metadata.createdAt)}</td>
    <td class="r duration">${fmtDuration(st.durationMs)}</td>
    <td class="r restarts">${esc(restarts(j))}</td>
    <td class="r">${esc(j.spec?.parallelism ?? 1)}</td>
    <td class="r">${st.lastCheckpoint != null ? '#' + esc(st.lastCheckpoint) : '<span class="muted">–</span>'}</td>
  </tr>`;
}

export function jobsTable(jobs, empty) {
  if (!jobs.length) return `<div class="empty">${esc(empty)}</div>`;
  return `<table class="jobs-table"><thead><tr><th>Job</th><th>State</th><th>Engine</th><th>Submitted</th><th class="r">Duration</th>
    <th class="r">Restarts</th><th class="r">Parallelism</th><th class="r">Last checkpoint</th></tr></thead>
    <tbody>${jobs.map(jobRow).join('')}</tbody></table>`;
}

export function jobsView(root) {
  setCrumbs([{ text: 'Jobs' }]);
  const filters = [
    ['all', 'All', () => true],
    ['running', 'Running', (j) => RUNNING.has(j.status.state)],
    ['finished', 'Finished', (j) => j.status.state === 'FINISHED'],
    ['failed', 'Failed', (j) => j.status.state === 'FAILED'],
    ['terminated', 'Cancelled', (j) => j.status.state === 'TERMINATED'],
  ];
  root.innerHTML = `<div class="card"><div class="card-head"><h2>Jobs <span class="sub">running and history, newest first</span></h2>
    <div class="chips" id="job-filters">${filters.map(([k, label]) => `<button class="chip" type="button" data-filter="${k}">${label}<span class="n"></span></button>`).join('')}</div>
    </div><div class="card-body flush" id="jobs-list"></div></div>`;
  let last = [];
  const render = () => {
    const f = filters.find((x) => x[0] === app.jobsFilter) || filters[0];
    $$('#job-filters .chip', root).forEach((c) => {
      const ff = filters.find((x) => x[0] === c.dataset.filter);
      c.classList.toggle('active', c.dataset.filter === f[0]);
      $('.n', c).textContent = String(last.filter(ff[2]).length);
    });
    $('#jobs-list', root).innerHTML = jobsTable(last.filter(f[2]), app.jobsFilter === 'all' ? 'No jobs yet. Submit one from “Submit job”.' : 'No job in this state.');
  };
  $('#job-filters', root).addEventListener('click', (e) => {
    const b = e.target.closest('[data-filter]');
    if (!b) return;
    app.jobsFilter = b.dataset.filter;
    render();
  });
  return {
    name: 'jobs',
    async update() {
      last = (await api('/jobs')).jobs || [];
      render();
    },
  };
}
