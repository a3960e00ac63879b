// The router: the URL fragment picks the view (#/overview, #/jobs, #/jobs/ID,
// #/deployments, #/deployments/NAME, #/taskmanagers, #/submit).

import { $, $$ } from './lib/dom.js';
import { tick } from './lib/poll.js';
import { app } from './lib/state.js';
import { deploymentView, deploymentsView } from './views/deployments.js';
import { jobView } from './views/job.js';
import { jobsView } from './views/jobs.js';
import { overviewView } from './views/overview.js';
import { submitView } from './views/submit.js';
import { taskmanagersView } from './views/taskmanagers.js';

export function route() {
  const h = location.hash.replace(/^#\/?/, '');
  const parts = h.split('/').filter(Boolean).map(decodeURIComponent);
  const name = parts[0] || 'overview';
  const view = $('#view');
  view.innerHTML = '';
  app.selectedVertex = null;
  $$('#nav a').forEach((a) => a.classList.toggle('active', a.dataset.nav === name));
  if (name === 'jobs' && parts[1]) app.view = jobView(view, parts[1]);
  else if (name === 'jobs') app.view = jobsView(view);
  else if (name === 'deployments' && parts[1]) app.view = deploymentView(view, parts[1]);
  else if (name === 'deployments') app.view = deploymentsView(view);
  else if (name === 'taskmanagers') app.view = taskmanagersView(view);
  else if (name === 'submit') app.view = submitView(view);
  else app.view = overviewView(view);
  view.dataset.view = app.view.name;
  tick();
}
