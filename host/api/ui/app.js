// Weir dashboard: vanilla JS, no build step, no network but the JobManager's REST API.
// Routes live in the URL fragment (#/overview, #/jobs, #/jobs/ID, #/taskmanagers,
// #/submit); `#token=...` anywhere in the fragment is taken as the API token, stored in
// localStorage and removed from the address bar. Every view polls the API once a second.
//
// This module starts the dashboard; lib/ holds the shared state, API client, token
// handling, polling and formatting, views/ one module per view, router.js picks one.

import { $ } from './lib/dom.js';
import { setConn, tick } from './lib/poll.js';
import { app, POLL_MS, TOKEN_KEY } from './lib/state.js';
import { hideTokenForm, readTokenFromFragment, showTokenForm } from './lib/token.js';
import { route } from './router.js';

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
