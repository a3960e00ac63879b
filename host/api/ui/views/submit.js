// Submitting a job (#/submit): upload a component or pick an uploaded one, then run it.

import { $, setCrumbs, toast } from '../lib/dom.js';
import { esc, fmtBytes, fmtTime, jobName } from '../lib/format.js';
import { api, postJson } from '../lib/api.js';

export function submitView(root) {
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
