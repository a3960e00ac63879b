// Deployments (#/deployments, #/deployments/NAME): each one's desired and observed
// state, its spec version and strategies, and its Jobs newest first (the history
// seed 002 keeps), with suspend and resume. Deployments are the admin's: a tenant's
// token is answered "no such route", shown as such.

import { $, setCrumbs, toast } from '../lib/dom.js';
import { esc, pill } from '../lib/format.js';
import { api } from '../lib/api.js';
import { tick } from '../lib/poll.js';

function runningCell(d) {
  const r = d.status.running;
  if (!r || !r.jobId) return '<span class="muted">–</span>';
  return `<a class="mono" href="#/jobs/${esc(r.jobId)}">${esc(r.jobId)}</a>`;
}

function deploymentRow(d) {
  const name = d.metadata.name;
  return `<tr class="link" data-deployment="${esc(name)}" onclick="location.hash='#/deployments/${encodeURIComponent(name)}'">
    <td><a class="name" href="#/deployments/${encodeURIComponent(name)}">${esc(name)}</a></td>
    <td>${pill(d.status.state)}</td><td>${esc(d.spec.state || 'RUNNING')}</td>
    <td class="r">v${esc(d.status.specVersion)}</td><td>${esc(d.spec.upgradeStrategy || 'STATEFUL')}</td>
    <td>${runningCell(d)}</td><td class="r">${esc((d.status.jobs || []).length)}</td>
    <td class="msg">${d.status.message ? esc(d.status.message) : '<span class="muted">–</span>'}</td></tr>`;
}

/** What the caller may not see (a tenant) or what failed, in place of the view. */
function unavailable(e) {
  const why = e.status === 404 ? 'Deployments are managed with the cluster’s admin token.' : e.message;
  return `<div class="empty">${esc(why)}</div>`;
}

export function deploymentsView(root) {
  setCrumbs([{ text: 'Deployments' }]);
  root.innerHTML = `<div class="card"><div class="card-head"><h2>Deployments <span class="sub">desired state, upgrades and their Jobs</span></h2>
    <span class="sub">create or change one with <code>weir deploy apply -f FILE</code></span></div>
    <div class="card-body flush" id="deployments-list"></div></div>`;
  return {
    name: 'deployments',
    async update() {
      let list;
      try {
        list = (await api('/deployments')).deployments || [];
      } catch (e) {
        $('#deployments-list', root).innerHTML = unavailable(e);
        return;
      }
      $('#deployments-list', root).innerHTML = list.length
        ? `<table class="deployments-table"><thead><tr><th>Deployment</th><th>State</th><th>Desired</th><th class="r">Spec</th><th>Upgrade</th>
            <th>Running job</th><th class="r">Jobs</th><th>Message</th></tr></thead><tbody>${list.map(deploymentRow).join('')}</tbody></table>`
        : '<div class="empty">No deployment yet.</div>';
    },
  };
}

export function deploymentView(root, name) {
  const path = `/deployments/${encodeURIComponent(name)}`;
  setCrumbs([{ text: 'Deployments', href: '#/deployments' }, { text: name }]);
  root.innerHTML = `<div class="card" id="deployment-header" data-deployment="${esc(name)}">
      <div class="job-head">
        <div><div class="job-title"><h1>${esc(name)}</h1><span id="d-state"></span></div><div class="job-id" id="d-id"></div></div>
        <div class="job-actions">
          <button class="btn" id="d-suspend" type="button">Suspend</button>
          <button class="btn" id="d-resume" type="button">Resume</button>
        </div>
      </div>
      <div class="facts">
        <div class="fact"><div class="k">Desired</div><div class="v" id="d-desired">–</div></div>
        <div class="fact"><div class="k">Spec version</div><div class="v" id="d-version">–</div></div>
        <div class="fact"><div class="k">Last good</div><div class="v" id="d-good">–</div></div>
        <div class="fact"><div class="k">Upgrade</div><div class="v" id="d-upgrade">–</div></div>
        <div class="fact"><div class="k">Restore</div><div class="v" id="d-restore">–</div></div>
        <div class="fact"><div class="k">Parallelism</div><div class="v" id="d-parallelism">–</div></div>
        <div class="fact"><div class="k">Latest state</div><div class="v mono" id="d-savepoint" style="font-size:12.5px;font-weight:500">–</div></div>
      </div>
      <div id="d-alerts" style="padding:0 18px"></div>
    </div>
    <div class="card"><div class="card-head"><h2>Jobs <span class="sub">newest first</span></h2></div><div class="card-body flush" id="d-jobs"></div></div>`;
  const act = (what) => async () => {
    try {
      await api(`${path}/${what}`, { method: 'POST' });
      toast(`${what === 'suspend' ? 'Suspending' : 'Resuming'} ${name}`);
      tick();
    } catch (e) {
      toast(e.message, 'error');
    }
  };
  $('#d-suspend', root).addEventListener('click', act('suspend'));
  $('#d-resume', root).addEventListener('click', act('resume'));
  return {
    name: 'deployment',
    async update() {
      let d;
      try {
        d = await api(path);
      } catch (e) {
        $('#d-jobs', root).innerHTML = unavailable(e);
        return;
      }
      const st = d.status;
      $('#d-state', root).innerHTML = pill(st.state);
      $('#d-id', root).textContent = d.metadata.id;
      $('#d-desired', root).textContent = d.spec.state || 'RUNNING';
      $('#d-version', root).textContent = 'v' + st.specVersion;
      $('#d-good', root).textContent = st.lastGoodSpecVersion != null ? 'v' + st.lastGoodSpecVersion : '–';
      $('#d-upgrade', root).textContent = d.spec.upgradeStrategy || 'STATEFUL';
      $('#d-restore', root).textContent = d.spec.restoreStrategy || 'LATEST_STATE';
      $('#d-parallelism', root).textContent = String(d.spec.template?.parallelism ?? 1);
      // A failed Job's retained checkpoint is newer than the savepoint (LATEST_STATE).
      $('#d-savepoint', root).textContent = st.latestCheckpointOf ? 'checkpoint of job ' + st.latestCheckpointOf : st.latestSavepoint || '–';
      $('#d-suspend', root).disabled = d.spec.state === 'SUSPENDED';
      $('#d-resume', root).disabled = d.spec.state === 'RUNNING';
      $('#d-alerts', root).innerHTML = st.message ? `<div class="alert warn" id="d-message">${esc(st.message)}</div>` : '';
      const jobs = st.jobs || [];
      $('#d-jobs', root).innerHTML = jobs.length
        ? `<table><thead><tr><th>Job</th><th class="r">Spec version</th><th>Started from</th></tr></thead><tbody>${jobs
            .map((j) => `<tr class="link" data-job="${esc(j.jobId)}" onclick="location.hash='#/jobs/${esc(j.jobId)}'">
              <td><a class="mono" href="#/jobs/${esc(j.jobId)}">${esc(j.jobId)}</a></td><td class="r">v${esc(j.specVersion)}</td>
              <td class="mono">${j.fromSavepoint ? esc(j.fromSavepoint) : j.fromCheckpointOf ? 'checkpoint of job ' + esc(j.fromCheckpointOf) : '<span class="muted">–</span>'}</td></tr>`)
            .join('')}</tbody></table>`
        : '<div class="empty">No job yet.</div>';
    },
  };
}
