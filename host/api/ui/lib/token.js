// The API token: taken from `#token=...` in the fragment, or asked for in a form.

import { $ } from './dom.js';
import { TOKEN_KEY } from './state.js';

export function readTokenFromFragment() {
  const h = location.hash.replace(/^#/, '');
  const m = h.match(/(?:^|[&?/])token=([^&]*)/);
  if (!m) return;
  const token = decodeURIComponent(m[1]);
  if (token) localStorage.setItem(TOKEN_KEY, token);
  let rest = h.replace(m[0], '').replace(/[&?]$/, '');
  if (!rest.startsWith('/')) rest = '/overview';
  history.replaceState(null, '', location.pathname + location.search + '#' + rest);
}

export function showTokenForm(message) {
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

export function hideTokenForm() {
  $('#token-dialog').classList.add('hidden');
}
