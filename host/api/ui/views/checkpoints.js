// A job's checkpoints card: id, status (with the failure), trigger time, duration, size.

import { $ } from '../lib/dom.js';
import { esc, fmtBytes, fmtDuration, pill, timeCell } from '../lib/format.js';

/** Fills `#checkpoints` in `root` from the checkpoints document `c` of `job`. */
export function renderCheckpoints(root, c, job) {
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
