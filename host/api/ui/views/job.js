// A job (#/jobs/ID): header and actions (cancel, savepoint), the job graph with
// records/s and backpressure, subtasks, checkpoints, state history and events.

import { $, $$, setCrumbs, toast } from '../lib/dom.js';
import { bpBar, bpLevel, esc, fmtCompact, fmtDuration, fmtInt, fmtTime, fmtWatermark, jobName, pill, restarts, timeCell } from '../lib/format.js';
import { api, postJson } from '../lib/api.js';
import { tick } from '../lib/poll.js';
import { app, RUNNING, TERMINAL } from '../lib/state.js';
import { renderCheckpoints } from './checkpoints.js';
import { buildGraphSvg } from './graph.js';

export function jobView(root, id) {
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
        <div class="fact"><div class="k">Fuel</div><div class="v" id="f-fuel">–</div></div>
        <div class="fact hidden" id="f-deployment-fact"><div class="k">Deployment</div><div class="v" id="f-deployment">–</div></div>
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
    // The Deployment that created the job, and the spec version it ran.
    const dep = j.metadata.deployment;
    $('#f-deployment-fact', root).classList.toggle('hidden', !dep);
    if (dep) $('#f-deployment', root).innerHTML = `<a href="#/deployments/${encodeURIComponent(dep.name)}">${esc(dep.name)}</a> v${esc(dep.specVersion)}`;
    $('#cancel-job', root).disabled = TERMINAL.has(st.state) || st.state === 'TERMINATING';
    // Why the job cannot run yet (too few free slots): shown while it lasts.
    const wait = $('#job-waiting', root);
    if (st.waiting && !wait) {
      $('#job-alerts', root).insertAdjacentHTML('afterbegin', `<div class="alert warn" id="job-waiting"></div>`);
    }
    if (st.waiting) $('#job-waiting', root).textContent = st.waiting;
    else if (wait) wait.remove();
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
      // Side outputs that saw records (late data, for one), and how many were dropped.
      const side = (v.sideOutputs || []).filter((s) => s.records > 0);
      const sideText = side.map((s) => ` · ${s.name} ${fmtCompact(s.records)}${s.dropped ? ` (${fmtCompact(s.dropped)} dropped)` : ''}`).join('');
      // A Kafka source's consumer lag: what is in its partitions and not yet read.
      const lagText = v.sourceLag == null ? '' : ` · lag ${fmtCompact(v.sourceLag)}`;
      g.dataset.lag = v.sourceLag == null ? '' : String(v.sourceLag);
      $('.vtotals', g).textContent = `in ${fmtCompact(v.recordsIn)} · out ${fmtCompact(v.recordsOut)} · fuel ${fmtCompact(v.fuel)}${lagText}${sideText}`;
      // A connect counts its records in per input: under the label of each input's edges.
      const byInput = v.recordsInByInput || [];
      g.dataset.recordsInByInput = JSON.stringify(byInput);
      for (const e of $$(`.edge[data-edge$="-${CSS.escape(String(v.id))}"]`, wrap)) {
        const count = $('.ecount', e);
        const n = byInput[Number(e.dataset.input)];
        if (count && n != null) count.textContent = `${fmtCompact(n)} in`;
      }
      g.dataset.side = JSON.stringify(side.map((s) => [s.operator, s.name, s.records, s.dropped]));
      // Event time, once the vertex has a watermark (jobs without event time show none).
      $('.wmtext', g).textContent = v.watermark == null ? '' : `watermark ${fmtWatermark(v.watermark)}`;
      g.dataset.watermark = v.watermark == null ? '' : String(v.watermark);
    }
    // Fuel over all attempts; the failed attempts' share is billed work that was redone.
    const fuel = $('#f-fuel', root);
    fuel.textContent = fmtCompact(m.fuel || 0) + (m.fuelFailedAttempts ? ` (${fmtCompact(m.fuelFailedAttempts)} in failed attempts)` : '');
    fuel.dataset.fuel = String(m.fuel || 0);
    fuel.dataset.fuelFailedAttempts = String(m.fuelFailedAttempts || 0);
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
          <td>${pill(s.status, 'sstate')}</td><td class="r" data-by-input="${esc((s.recordsInByInput || []).join(','))}">${fmtInt(s.recordsIn)}${(s.recordsInByInput || []).length > 1 ? ` <span class="unit">(${s.recordsInByInput.map(fmtInt).join(' + ')})</span>` : ''}</td><td class="r">${fmtInt(s.recordsOut)}</td>
          <td>${bpBar(s.backpressure)}</td><td class="r wm">${fmtWatermark(s.watermark)}</td><td class="r">${fmtCompact(s.fuel)}</td>
          <td class="r lag" title="${esc((s.sourceLag || []).map((l) => `${l.topic}/${l.partition}: ${l.records}`).join('\n'))}">${(s.sourceLag || []).length ? fmtInt(s.sourceLag.reduce((a, l) => a + l.records, 0)) : '–'}</td></tr>`);
      }
    }
    $('#subtasks', root).innerHTML = rows.length
      ? `<table><thead><tr><th>Vertex</th><th class="r">Subtask</th><th>TaskManager</th><th>Status</th><th class="r">Records in</th><th class="r">Records out</th><th>Backpressure</th><th class="r">Watermark</th><th class="r">Fuel</th><th class="r">Kafka lag</th></tr></thead><tbody>${rows.join('')}</tbody></table>`
      : '<div class="empty">No subtasks reported.</div>';
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
      else renderCheckpoints(root, c, job);
      if (l.error) $('#events', root).innerHTML = `<div class="empty">Events unavailable: ${esc(l.error.message)}</div>`;
      else renderEvents(l);
    },
  };
}

