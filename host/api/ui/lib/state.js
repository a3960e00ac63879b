// Constants and the dashboard's one piece of shared, mutable state.

export const TOKEN_KEY = 'weir.token';
export const POLL_MS = 1000;
export const RUNNING = new Set(['STARTING', 'STARTED', 'TERMINATING']);
export const TERMINAL = new Set(['TERMINATED', 'FAILED', 'FINISHED']);

export const app = {
  token: null,
  view: null, // { name, update(), params }
  inflight: false,
  lastOk: 0,
  authFailed: false,
  selectedVertex: null,
  jobsFilter: 'all',
};
