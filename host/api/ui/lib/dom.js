// DOM helpers shared by every view: queries, toasts, the breadcrumbs.

import { esc } from './format.js';

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

export function toast(msg, kind = '') {
  const t = document.createElement('div');
  t.className = 'toast ' + kind;
  t.textContent = msg;
  $('#toasts').appendChild(t);
  setTimeout(() => t.remove(), 5000);
}
export function setCrumbs(parts) {
  $('#crumbs').innerHTML = parts
    .map((p, i) => (i < parts.length - 1 && p.href ? `<a href="${esc(p.href)}">${esc(p.text)}</a><span class="sep">/</span>` : `<span>${esc(p.text)}</span>`))
    .join('');
  document.title = parts.map((p) => p.text).reverse().concat(['Weir']).filter((v, i, a) => a.indexOf(v) === i).join(' · ');
}
