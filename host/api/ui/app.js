// Weir dashboard: vanilla JS, no build step, no network but the JobManager's REST API.
// Routes live in the URL fragment (#/overview, #/jobs, #/jobs/ID, #/taskmanagers,
// #/submit); `#token=...` anywhere in the fragment is taken as the API token, stored in
// localStorage and removed from the address bar. Every view polls the API once a second.
'use strict';

const API = '/api/v1';
const TOKEN_KEY = 'weir.token';
const POLL_MS = 1000;
const RUNNING = new Set(['STARTING', 'STARTED', 'TERMINATING']);
const TERMINAL = new Set(['TERMINATED', 'FAILED', 'FINISHED']);

const app = {
  token: null,
  view: null, // { name, update(), params }
  inflight: false,
  lastOk: 0,
  authFailed: false,
  selectedVertex: null,
  jobsFilter: 'all',
};

// ---------------------------------------------------------------- helpers

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

function esc(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

const intFmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
function fmtInt(n) {
  return n == null || Number.isNaN(Number(n)) ? '–' : intFmt.format(Math.round(Number(n)));
}
function fmtCompact(n) {
  n = Number(n || 0);
  const abs = Math.abs(n);
  if (abs >= 1e9) return (n / 1e9).toFixed(abs >= 1e10 ? 1 : 2) + 'G';
  if (abs >= 1e6) return (n / 1e6).toFixed(abs >= 1e7 ? 1 : 2) + 'M';
  if (abs >= 1e4) return (n / 1e3).toFixed(abs >= 1e5 ? 0 : 1) + 'k';
  return intFmt.format(Math.round(n));
}
function fmtBytes(b) {
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
function fmtDuration(ms) {
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
function fmtTime(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return esc(iso);
  const now = new Date();
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false });
  if (d.toDateString() === now.toDateString()) return time;
  return d.toLocaleDateString([], { month: 'short', day: 'numeric' }) + ' ' + time;
}
function timeCell(iso) {
  return `<span title="${esc(iso)}">${fmtTime(iso)}</span>`;
}
function pill(state, extraClass = 'state') {
  return `<span class="pill ${extraClass} s-${esc(state)}" data-state="${esc(state)}">${esc(state)}</span>`;
}
/** Flink's thresholds: OK up to 10 %, LOW up to 50 %, HIGH above. */
function bpLevel(bp, running = true) {
  if (!running) return 'idle';
  if (bp > 0.5) return 'high';
  if (bp > 0.1) return 'low';
  return 'ok';
}
function bpBar(bp) {
  const pct = Math.round((bp || 0) * 100);
  return `<span class="bar bp inline"><span class="${bpLevel(bp)}" style="width:${pct}%"></span></span><span class="num">${pct}%</span>`;
}
function toast(msg, kind = '') {
  const t = document.createElement('div');
  t.className = 'toast ' + kind;
  t.textContent = msg;
  $('#toasts').appendChild(t);
  setTimeout(() => t.remove(), 5000);
}
function setCrumbs(parts) {
  $('#crumbs').innerHTML = parts
    .map((p, i) => (i < parts.length - 1 && p.href ? `<a href="${esc(p.href)}">${esc(p.text)}</a><span class="sep">/</span>` : `<span>${esc(p.text)}</span>`))
    .join('');
  document.title = parts.map((p) => p.text).reverse().concat(['Weir']).filter((v, i, a) => a.indexOf(v) === i).join(' · ');
}
function jobName(j) {
  return j?.metadata?.name || j?.metadata?.id || '?';
}
function restarts(j) {
  return j?.status?.started?.observedJobRestarts ?? 0;
}

// ---------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path, opts = {}) {
  if (!app.token) {
    showTokenForm('');
    throw new ApiError(401, 'unauthorized', 'no API token');
  }
  const headers = Object.assign({ Authorization: 'Bearer ' + app.token }, opts.headers || {});
  let res;
  try {
    res = await fetch(API + path, Object.assign({}, opts, { headers, cache: 'no-store' }));
  } catch (e) {
    throw new ApiError(0, 'network', 'cannot reach the JobManager: ' + e.message);
  }
  const text = await res.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (_) {
    body = null;
  }
  if (!res.ok) {
    const err = body && body.error ? body.error : { code: 'http_' + res.status, message: text.trim().slice(0, 200) || res.statusText };
    if (res.status === 401) {
      app.authFailed = true;
      showTokenForm(err.message || 'unauthorized');
    }
    throw new ApiError(res.status, err.code, err.message);
  }
  return body;
}

const postJson = (path, body) => api(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });

// ---------------------------------------------------------------- token

function readTokenFromFragment() {
  const h = location.hash.replace(/^#/, '');
  const m = h.match(/(?:^|[&?/])token=([^&]*)/);
  if (!m) return;
  const token = decodeURIComponent(m[1]);
  if (token) localStorage.setItem(TOKEN_KEY, token);
  let rest = h.replace(m[0], '').replace(/[&?]$/, '');
  if (!rest.startsWith('/')) rest = '/overview';
  history.replaceState(null, '', location.pathname + location.search + '#' + rest);
}

function showTokenForm(message) {
  const dlg = $('#token-dialog');
  const err = $('#token-error');
  err.textContent = message || '';
  err.classList.toggle('hidden', !message);
  if (dlg.classList.contains('hidden')) {
    dlg.classList.remove('hidden');
    $('#token-input').value = '';
    setTimeout(() => $('#token-input').focus(), 0);
  }
}

function hideTokenForm() {
  $('#token-dialog').classList.add('hidden');
}

// ---------------------------------------------------------------- polling

function setConn(kind, text) {
  const c = $('#conn');
  c.dataset.conn = kind;
  $('#conn-text').textContent = text;
}

async function tick() {
  if (!app.token || app.authFailed) return;
  if (app.inflight) {
    app.again = true;
    return;
  }
  app.inflight = true;
  const view = app.view;
  try {
    const cluster = await api('/cluster');
    $('#version').textContent = 'Weir ' + (cluster.version || '');
    $('#nav-running').textContent = cluster.jobs && cluster.jobs.running ? String(cluster.jobs.running) : '';
    if (app.view && app.view.update) await app.view.update(cluster);
    app.lastOk = Date.now();
    setConn('live', 'live');
  } catch (e) {
    if (view !== app.view) return; // the view changed under this poll: its elements are gone
    if (e.status === 401) setConn('error', 'unauthorized');
    else setConn('error', e.message);
  } finally {
    app.inflight = false;
    if (app.again) {
      app.again = false;
      tick();
    }
  }
}

// ---------------------------------------------------------------- router

function route() {
  const h = location.hash.replace(/^#\/?/, '');
  const parts = h.split('/').filter(Boolean).map(decodeURIComponent);
  const name = parts[0] || 'overview';
  const view = $('#view');
  view.innerHTML = '';
  app.selectedVertex = null;
  $$('#nav a').forEach((a) => a.classList.toggle('active', a.dataset.nav === name));
  if (name === 'jobs' && parts[1]) app.view = jobView(view, parts[1]);
  else if (name === 'jobs') app.view = jobsView(view);
  else if (name === 'taskmanagers') app.view = taskmanagersView(view);
  else if (name === 'submit') app.view = submitView(view);
  else app.view = overviewView(view);
  view.dataset.view = app.view.name;
  tick();
}

// ---------------------------------------------------------------- jobs tables

function jobRow(j) {
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

function jobsTable(jobs, empty) {
  if (!jobs.length) return `<div class="empty">${esc(empty)}</div>`;
  return `<table class="jobs-table"><thead><tr><th>Job</th><th>State</th><th>Engine</th><th>Submitted</th><th class="r">Duration</th>
    <th class="r">Restarts</th><th class="r">Parallelism</th><th class="r">Last checkpoint</th></tr></thead>
    <tbody>${jobs.map(jobRow).join('')}</tbody></table>`;
}

// ---------------------------------------------------------------- overview

function overviewView(root) {
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

// ---------------------------------------------------------------- jobs list

function jobsView(root) {
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

// ---------------------------------------------------------------- job detail

function jobView(root, id) {
  setCrumbs([{ text: 'Jobs', href: '#/jobs' }, { text: id }]);
  root.innerHTML = `
    <div class="card" id="job-header" data-job="${esc(id)}">
      <div class="job-head">
        <div><div class="job-title"><h1 id="job-name">${esc(id)}</h1><span id="job-state"></span><span id="job-engine"></span></div>
          <div class="job-id">${esc(id)}</div></div>
        <div class="job-actions">
          <button class="btn danger" id="cancel-job" type="button" disabled>Cancel job</button>
          <form class="inline-form" id="savepoint-form">
            <input type="text" id="savepoint-dir" name="dir" placeholder="/absolute/savepoint/dir" required>
            <label class="check"><input type="checkbox" id="savepoint-stop" name="stop"> stop</label>
            <button class="btn" type="submit" id="savepoint-submit">Savepoint</button>
          </form>
        </div>
      </div>
      <div class="facts">
        <div class="fact"><div class="k">Duration</div><div class="v" id="f-duration">–</div></div>
        <div class="fact"><div class="k">Submitted</div><div class="v" id="f-created">–</div></div>
        <div class="fact"><div class="k">Parallelism</div><div class="v" id="f-parallelism">–</div></div>
        <div class="fact"><div class="k">Restarts</div><div class="v" id="f-restarts">–</div></div>
        <div class="fact"><div class="k">Last checkpoint</div><div class="v" id="f-checkpoint">–</div></div>
        <div class="fact"><div class="k">Records in/s</div><div class="v" id="f-rate">–</div></div>
        <div class="fact"><div class="k">Artifact</div><div class="v mono" id="f-artifact" style="font-size:12.5px;font-weight:500">–</div></div>
      </div>
      <div id="job-alerts" style="padding:0 18px"></div>
    </div>
    <div class="card"><div class="card-head"><h2>Job graph <span class="sub" id="graph-sub"></span></h2>
      <div class="legend"><span><i style="background:var(--green)"></i>OK ≤ 10%</span><span><i style="background:var(--amber)"></i>Low ≤ 50%</span><span><i style="background:var(--red)"></i>High backpressure</span></div></div>
      <div class="graph-wrap" id="graph"><div class="empty">Waiting for metrics…</div></div></div>
    <div class="card"><div class="card-head"><h2>Subtasks <span class="sub" id="subtasks-sub"></span></h2><button class="btn small ghost hidden" id="show-all-subtasks" type="button">Show all vertices</button></div>
      <div class="card-body flush" id="subtasks"></div></div>
    <div class="grid two">
      <div class="card"><div class="card-head"><h2>Checkpoints <span class="sub" id="cp-sub"></span></h2></div><div class="card-body flush" id="checkpoints" style="max-height:360px;overflow:auto"></div></div>
      <div class="card"><div class="card-head"><h2>State history</h2></div><div id="history"></div></div>
    </div>
    <div class="card" style="margin-top:20px"><div class="card-head"><h2>Events</h2><span class="sub" id="events-sub"></span></div><div class="events" id="events"></div></div>`;

  let job = null;
  let graphSig = '';

  $('#cancel-job', root).addEventListener('click', async () => {
    if (!confirm(`Cancel job ${jobName(job)} (${id})?`)) return;
    const b = $('#cancel-job', root);
    b.disabled = true;
    try {
      await api(`/jobs/${encodeURIComponent(id)}/cancel`, { method: 'POST' });
      toast('Cancelling ' + jobName(job));
    } catch (e) {
      toast(`Cancel failed: ${e.message}`, 'error');
    }
    tick();
  });
  $('#savepoint-form', root).addEventListener('submit', async (e) => {
    e.preventDefault();
    const btn = $('#savepoint-submit', root);
    const alerts = $('#job-alerts', root);
    btn.disabled = true;
    btn.textContent = 'Taking savepoint…';
    try {
      const r = await postJson(`/jobs/${encodeURIComponent(id)}/savepoints`, { dir: $('#savepoint-dir', root).value.trim(), stop: $('#savepoint-stop', root).checked });
      alerts.innerHTML = `<div class="alert ok" id="savepoint-result">Savepoint of checkpoint ${esc(r.checkpoint)} written to <code>${esc(r.dir)}</code></div>`;
    } catch (err) {
      alerts.innerHTML = `<div class="alert error" id="savepoint-result">Savepoint failed: ${esc(err.message)}</div>`;
    } finally {
      btn.disabled = false;
      btn.textContent = 'Savepoint';
    }
  });
  $('#show-all-subtasks', root).addEventListener('click', () => {
    app.selectedVertex = null;
    tick();
  });

  function renderHeader(j) {
    const st = j.status;
    $('#job-name', root).textContent = jobName(j);
    setCrumbs([{ text: 'Jobs', href: '#/jobs' }, { text: jobName(j) }]);
    $('#job-state', root).innerHTML = pill(st.state);
    $('#job-engine', root).innerHTML = st.started ? pill(st.started.observedJobStatus, 'engine') : '';
    $('#f-duration', root).textContent = fmtDuration(st.durationMs);
    $('#f-created', root).innerHTML = timeCell(j.metadata.createdAt);
    $('#f-parallelism', root).textContent = String(j.spec?.parallelism ?? 1);
    $('#f-restarts', root).textContent = String(restarts(j));
    $('#f-checkpoint', root).textContent = st.lastCheckpoint != null ? '#' + st.lastCheckpoint : '–';
    // A job is one component (artifact) or a manifest naming one component per operator.
    const spec = j.spec || {};
    const parts = Object.entries(spec.components || {});
    $('#f-artifact', root).textContent = spec.artifact ? spec.artifact.slice(0, 16) + '…'
      : spec.manifest ? `manifest, ${parts.length} component${parts.length === 1 ? '' : 's'}` : '–';
    $('#f-artifact', root).title = spec.artifact || parts.map(([name, id]) => `${name}: ${id}`).join('\n');
    $('#cancel-job', root).disabled = TERMINAL.has(st.state) || st.state === 'TERMINATING';
    const fail = $('#job-failure', root);
    if (st.failure && !fail) {
      $('#job-alerts', root).insertAdjacentHTML('afterbegin', `<div class="alert error" id="job-failure"><strong>${esc(st.failure.reason)}</strong>: ${esc(st.failure.message)}</div>`);
    }
    // History
    const tr = st.transitions || [];
    $('#history', root).innerHTML = `<ol class="timeline">${tr
      .map((t, i) => {
        const next = tr[i + 1];
        const dur = next ? new Date(next.time) - new Date(t.time) : RUNNING.has(t.state) ? Date.now() - new Date(t.time) : null;
        return `<li data-transition="${esc(t.state)}">${pill(t.state, 'tstate')}<span class="t" title="${esc(t.time)}">${fmtTime(t.time)}</span>
          ${dur != null ? `<span class="d">${next ? 'for' : 'since'} ${fmtDuration(dur)}</span>` : ''}</li>`;
      })
      .join('')}</ol>`;
  }

  function renderGraph(m, running) {
    const vs = m.vertices || [];
    const es = m.edges || [];
    const wrap = $('#graph', root);
    $('#graph-sub', root).textContent = `${vs.length} vertices · ${es.length} edges`;
    if (!vs.length) {
      wrap.innerHTML = '<div class="empty">No vertices reported.</div>';
      graphSig = '';
      return;
    }
    const sig = vs.map((v) => `${v.id}:${v.name}:${v.parallelism}`).join('|') + '#' + es.map((e) => `${e.source}>${e.target}:${e.partitioning}`).join('|');
    if (sig !== graphSig) {
      wrap.innerHTML = buildGraphSvg(vs, es);
      graphSig = sig;
      $$('.vertex', wrap).forEach((g) =>
        g.addEventListener('click', () => {
          app.selectedVertex = app.selectedVertex === g.dataset.vertex ? null : g.dataset.vertex;
          tick();
        }),
      );
    }
    const hasInput = new Set(es.map((e) => String(e.target)));
    for (const v of vs) {
      const g = $(`.vertex[data-vertex="${CSS.escape(String(v.id))}"]`, wrap);
      if (!g) continue;
      const isSource = !hasInput.has(String(v.id));
      const rate = isSource ? v.recordsOutPerSecond : v.recordsInPerSecond;
      const lvl = bpLevel(v.backpressure, running);
      g.setAttribute('class', `vertex ${lvl}${app.selectedVertex === String(v.id) ? ' selected' : ''}`);
      g.dataset.backpressure = String(v.backpressure);
      g.dataset.level = lvl;
      $('.rate', g).textContent = fmtInt(rate);
      $('.rate', g).dataset.value = String(rate);
      $('.unit', g).textContent = isSource ? 'records out/s' : 'records in/s';
      $('.bpfill', g).setAttribute('width', String(Math.round(Math.min(1, Math.max(0, v.backpressure || 0)) * 90)));
      $('.bptext', g).textContent = `backpressure ${Math.round((v.backpressure || 0) * 100)}%`;
      $('.vtotals', g).textContent = `in ${fmtCompact(v.recordsIn)} · out ${fmtCompact(v.recordsOut)}`;
    }
    const srcRate = vs.filter((v) => !hasInput.has(String(v.id))).reduce((a, v) => a + (v.recordsOutPerSecond || 0), 0);
    $('#f-rate', root).textContent = fmtCompact(vs.filter((v) => hasInput.has(String(v.id))).reduce((a, v) => a + (v.recordsInPerSecond || 0), 0) || srcRate);
  }

  function renderSubtasks(m) {
    const vs = m.vertices || [];
    const sel = app.selectedVertex;
    const shown = sel == null ? vs : vs.filter((v) => String(v.id) === sel);
    $('#show-all-subtasks', root).classList.toggle('hidden', sel == null);
    $('#subtasks-sub', root).textContent = sel == null ? 'click a vertex to filter' : 'of ' + (shown[0]?.name ?? '?');
    const rows = [];
    for (const v of shown) {
      for (const s of v.subtasks || []) {
        rows.push(`<tr data-vertex="${esc(v.id)}" data-subtask="${esc(s.subtask)}">
          <td><span class="name">${esc(v.name)}</span></td><td class="r">${esc(s.subtask)}</td><td>${esc(s.taskmanager)}</td>
          <td>${pill(s.status, 'sstate')}</td><td class="r">${fmtInt(s.recordsIn)}</td><td class="r">${fmtInt(s.recordsOut)}</td>
          <td>${bpBar(s.backpressure)}</td><td class="r">${fmtCompact(s.fuel)}</td></tr>`);
      }
    }
    $('#subtasks', root).innerHTML = rows.length
      ? `<table><thead><tr><th>Vertex</th><th class="r">Subtask</th><th>TaskManager</th><th>Status</th><th class="r">Records in</th><th class="r">Records out</th><th>Backpressure</th><th class="r">Fuel</th></tr></thead><tbody>${rows.join('')}</tbody></table>`
      : '<div class="empty">No subtasks reported.</div>';
  }

  function renderCheckpoints(c) {
    const cps = c.checkpoints || [];
    $('#cp-sub', root).textContent = c.lastCompleted != null ? `last completed #${c.lastCompleted}` : '';
    $('#checkpoints', root).innerHTML = cps.length
      ? `<table><thead><tr><th class="r">ID</th><th>Status</th><th>Triggered</th><th class="r">Duration</th><th class="r">Size</th></tr></thead><tbody>${cps
          .map(
            (cp) => `<tr data-checkpoint="${esc(cp.id)}"><td class="r">#${esc(cp.id)}</td><td${cp.failure ? ` title="${esc(cp.failure)}"` : ''}>${pill(cp.status, 'cpstate')}${cp.failure ? `<span class="cp-failure" title="${esc(cp.failure)}">${esc(cp.failure)}</span>` : ''}</td><td>${timeCell(cp.triggeredAt)}</td>
            <td class="r">${fmtDuration(cp.durationMs)}</td><td class="r">${fmtBytes(cp.sizeBytes)}</td></tr>`,
          )
          .join('')}</tbody></table>`
      : `<div class="empty">${job && job.spec && job.spec.checkpointIntervalMs ? 'No checkpoint yet.' : 'Checkpoints are off for this job.'}</div>`;
  }

  function renderEvents(l) {
    const ev = l.events || [];
    const box = $('#events', root);
    const atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
    $('#events-sub', root).textContent = `${ev.length} events`;
    box.innerHTML = ev.length
      ? ev.map((e) => `<div class="ev ${esc(e.level)}"><span class="t" title="${esc(e.time)}">${fmtTime(e.time)}</span><span class="lvl">${esc(e.level)}</span><span class="msg">${esc(e.message)}</span></div>`).join('')
      : '<div class="empty">No events.</div>';
    if (atBottom) box.scrollTop = box.scrollHeight;
  }

  return {
    name: 'job',
    async update() {
      const enc = encodeURIComponent(id);
      try {
        job = await api(`/jobs/${enc}`);
      } catch (e) {
        if (e.status === 404) {
          root.innerHTML = `<div class="card"><div class="card-body"><div class="alert error" id="job-missing">${esc(e.message)}</div><a href="#/jobs">← All jobs</a></div></div>`;
          app.view = { name: 'job', update: null };
          return;
        }
        throw e;
      }
      renderHeader(job);
      const running = RUNNING.has(job.status.state);
      const soft = (p) => p.catch((e) => (e.status === 401 ? Promise.reject(e) : { error: e }));
      const [m, c, l] = await Promise.all([soft(api(`/jobs/${enc}/metrics`)), soft(api(`/jobs/${enc}/checkpoints`)), soft(api(`/jobs/${enc}/logs`))]);
      if (m.error) $('#graph', root).innerHTML = `<div class="empty">Metrics unavailable: ${esc(m.error.message)}</div>`, (graphSig = '');
      else {
        renderGraph(m, running);
        renderSubtasks(m);
      }
      if (c.error) $('#checkpoints', root).innerHTML = `<div class="empty">Checkpoints unavailable: ${esc(c.error.message)}</div>`;
      else renderCheckpoints(c);
      if (l.error) $('#events', root).innerHTML = `<div class="empty">Events unavailable: ${esc(l.error.message)}</div>`;
      else renderEvents(l);
    },
  };
}

/** The execution graph as SVG: vertices left to right by topological depth. */
function buildGraphSvg(vs, es) {
  const W = 240;
  const H = 104;
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
      const text = label(e.partitioning);
      const tw = text.length * 7 + 14;
      return `<g class="edge" data-edge="${esc(e.source)}-${esc(e.target)}" data-partitioning="${esc(e.partitioning)}">
        <path d="M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}" marker-end="url(#arrow)"/>
        <g class="elabel"><rect x="${mx - tw / 2}" y="${my - 10}" width="${tw}" height="20" rx="10"/><text x="${mx}" y="${my + 4}" text-anchor="middle">${esc(text)}</text></g></g>`;
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
        <text class="rate" x="18" y="54">–</text>
        <text class="unit" x="18" y="70">records/s</text>
        <text class="vtotals unit" x="${W - 12}" y="70" text-anchor="end"></text>
        <rect class="bptrack" x="18" y="82" width="90" height="6" rx="3"/>
        <rect class="bpfill" x="18" y="82" width="0" height="6" rx="3"/>
        <text class="bptext" x="${W - 12}" y="89" text-anchor="end">backpressure –</text>
      </g>`;
    })
    .join('');
  return `<svg class="graph" xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="job graph">
    <defs><marker id="arrow" viewBox="0 0 10 10" refX="8" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#94a3b8"/></marker></defs>
    ${edges}${nodes}</svg>`;
}

// ---------------------------------------------------------------- TaskManagers

function tmTable(tms, compact) {
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

function taskmanagersView(root) {
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

// ---------------------------------------------------------------- submit

function submitView(root) {
  setCrumbs([{ text: 'Submit job' }]);
  root.innerHTML = `<div class="card" style="max-width:900px"><div class="card-head"><h2>Submit a job</h2><span class="sub">upload a component, then run it</span></div>
    <form class="card-body" id="submit-form" novalidate>
      <div id="submit-result"></div>
      <div class="form-grid">
        <div class="full">
          <div class="drop" id="drop"><strong>Drop a .wasm component here</strong> or <label style="display:inline;color:var(--accent);cursor:pointer">choose a file<input type="file" id="submit-file" accept=".wasm,application/wasm" hidden></label>
            <div class="help" id="submit-file-name">A WebAssembly component built against weir:dataflow.</div></div>
        </div>
        <label class="full">…or an uploaded artifact
          <select id="submit-artifact"><option value="">— upload the file above —</option></select></label>
        <label>Parallelism <input id="submit-parallelism" type="number" min="1" max="1024" value="1" required><span class="help">1 to 1024; a job needs as many slots as its widest vertex.</span></label>
        <label>Checkpoint interval (ms) <input id="submit-checkpoint" type="number" min="1" placeholder="off"><span class="help">Empty: no checkpoints.</span></label>
        <label class="full">Arguments <textarea id="submit-args" placeholder="n=1000000&#10;work=20000" spellcheck="false"></textarea><span class="help">One <code>key=value</code> per line, as <code>--arg</code>.</span></label>
      </div>
      <details class="adv"><summary>Advanced</summary>
        <div class="form-grid">
          <label>Restart strategy <input id="submit-restart" type="text" placeholder="fixed-delay:3:1000"><span class="help">none, fixed-delay:N:MS, exponential:MS:MS, failure-rate:N:MS:MS</span></label>
          <label>From savepoint <input id="submit-savepoint" type="text" placeholder="/absolute/savepoint/dir"></label>
          <label>Input <input id="submit-input" type="text" placeholder="/absolute/input/path"></label>
          <label>Output <input id="submit-output" type="text" placeholder="/absolute/output/path"></label>
        </div>
      </details>
      <div class="actions"><button class="btn primary" id="submit-button" type="submit">Submit job</button><span class="muted" id="submit-progress"></span></div>
    </form></div>`;
  let file = null;
  const fileName = $('#submit-file-name', root);
  const setFile = (f) => {
    file = f;
    fileName.textContent = f ? `${f.name} · ${fmtBytes(f.size)}` : 'A WebAssembly component built against weir:dataflow.';
    if (f) $('#submit-artifact', root).value = '';
  };
  $('#submit-file', root).addEventListener('change', (e) => setFile(e.target.files[0] || null));
  const drop = $('#drop', root);
  drop.addEventListener('dragover', (e) => {
    e.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    if (e.dataTransfer.files[0]) setFile(e.dataTransfer.files[0]);
  });
  api('/artifacts')
    .then((r) => {
      const sel = $('#submit-artifact', root);
      for (const a of (r.artifacts || []).slice().reverse()) {
        const o = document.createElement('option');
        o.value = a.id;
        o.textContent = `${a.id.slice(0, 16)}… · ${fmtBytes(a.size)} · ${fmtTime(a.uploadedAt)}`;
        sel.appendChild(o);
      }
    })
    .catch(() => {});
  $('#submit-form', root).addEventListener('submit', async (e) => {
    e.preventDefault();
    const result = $('#submit-result', root);
    const progress = $('#submit-progress', root);
    const btn = $('#submit-button', root);
    result.innerHTML = '';
    const fail = (msg) => {
      result.innerHTML = `<div class="alert error" id="submit-error">${esc(msg)}</div>`;
    };
    const args = {};
    const lines = $('#submit-args', root).value.split('\n').map((l) => l.trim()).filter(Boolean);
    for (const l of lines) {
      const i = l.indexOf('=');
      if (i <= 0) return fail(`argument line "${l}" is not key=value`);
      args[l.slice(0, i).trim()] = l.slice(i + 1).trim();
    }
    const p = Number($('#submit-parallelism', root).value);
    if (!Number.isInteger(p) || p < 1 || p > 1024) return fail('parallelism must be a whole number from 1 to 1024');
    let artifact = $('#submit-artifact', root).value;
    if (!artifact && !file) return fail('choose a .wasm file or an uploaded artifact');
    btn.disabled = true;
    try {
      if (!artifact) {
        progress.textContent = `Uploading ${file.name} (${fmtBytes(file.size)})…`;
        const up = await api('/artifacts', { method: 'POST', headers: { 'Content-Type': 'application/wasm' }, body: file });
        artifact = up.id;
      }
      const spec = { artifact, parallelism: p, args };
      const opt = (id) => $(id, root).value.trim() || null;
      const cp = opt('#submit-checkpoint');
      if (cp) spec.checkpointIntervalMs = Number(cp);
      if (opt('#submit-restart')) spec.restartStrategy = opt('#submit-restart');
      if (opt('#submit-savepoint')) spec.fromSavepoint = opt('#submit-savepoint');
      if (opt('#submit-input')) spec.input = opt('#submit-input');
      if (opt('#submit-output')) spec.output = opt('#submit-output');
      progress.textContent = 'Submitting…';
      const job = await postJson('/jobs', spec);
      toast(`Submitted ${jobName(job)} (${job.metadata.id})`);
      location.hash = '#/jobs/' + encodeURIComponent(job.metadata.id);
    } catch (err) {
      if (err.status !== 401) fail(`${err.code ? err.code + ': ' : ''}${err.message}`);
    } finally {
      btn.disabled = false;
      progress.textContent = '';
    }
  });
  return { name: 'submit', update: null };
}

// ---------------------------------------------------------------- start

function start() {
  readTokenFromFragment();
  app.token = localStorage.getItem(TOKEN_KEY);
  $('#token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const t = $('#token-input').value.trim();
    if (!t) return;
    localStorage.setItem(TOKEN_KEY, t);
    app.token = t;
    app.authFailed = false;
    hideTokenForm();
    route();
  });
  $('#signout').addEventListener('click', () => {
    localStorage.removeItem(TOKEN_KEY);
    app.token = null;
    app.authFailed = true;
    setConn('error', 'signed out');
    showTokenForm('');
  });
  window.addEventListener('hashchange', () => {
    if (/token=/.test(location.hash)) {
      readTokenFromFragment();
      app.token = localStorage.getItem(TOKEN_KEY);
      app.authFailed = false;
      hideTokenForm();
    }
    route();
  });
  if (!app.token) showTokenForm('');
  route();
  setInterval(tick, POLL_MS);
}

start();
