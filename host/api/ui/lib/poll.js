// Polling: once a second (and after every action) the cluster is read and the current
// view updates itself; the connection indicator says how that went.

import { api } from './api.js';
import { $ } from './dom.js';
import { app } from './state.js';

export function setConn(kind, text) {
  const c = $('#conn');
  c.dataset.conn = kind;
  $('#conn-text').textContent = text;
}

export async function tick() {
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
