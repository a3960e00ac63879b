// The JobManager's REST API: every call carries the token; a 401 brings up the token
// form.

import { app } from './state.js';
import { showTokenForm } from './token.js';

const API = '/api/v1';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export async function api(path, opts = {}) {
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

export const postJson = (path, body) => api(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
