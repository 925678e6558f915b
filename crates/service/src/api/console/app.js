// The hoist console: sign in with an API key, submit functions and
// release builds, follow builds live, invoke functions. Everything shown
// that comes from the server or a user goes in as text, never as HTML.
import { api, ApiError, clearKey, getKey, setKey } from './api.js';
import { BuildMonitor } from './monitor.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
let leave = null; // the current view's clean-up (a monitor to close)
// Bumped by each navigation: a view whose data arrives after the user
// went elsewhere must not draw over the new page.
let generation = 0;
let uid = 0;

// An element: h('tag', {attr: value, onclick: fn}, child, ...).
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else if (name === 'text') el.textContent = value;
    else el.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// A labelled control with a place for its problems.
function field(label, control, hint) {
  const id = control.id || `f${++uid}`;
  control.id = id;
  const problem = h('div', { class: 'problem', id: `${id}-problem`, role: 'alert' });
  const described = [`${id}-problem`];
  let hintEl = null;
  if (hint) {
    hintEl = h('div', { class: 'hint', id: `${id}-hint`, text: hint });
    described.push(`${id}-hint`);
  }
  control.setAttribute('aria-describedby', described.join(' '));
  const wrap = h('div', { class: 'field' }, h('label', { for: id, text: label }), control, hintEl, problem);
  wrap.control = control;
  wrap.problem = (text) => {
    problem.textContent = text || '';
    if (text) control.setAttribute('aria-invalid', 'true');
    else control.removeAttribute('aria-invalid');
  };
  return wrap;
}

function show(...nodes) {
  main.replaceChildren(...nodes);
  main.focus({ preventScroll: true });
}

function errorBox(text) {
  return h('div', { class: 'error-box', role: 'alert', text });
}

function badge(status) {
  return h('span', { class: `badge ${status}`, text: status });
}

function bytes(n) {
  if (n === null || n === undefined) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

// ---- routing ----

function route() {
  generation += 1;
  if (leave) {
    leave();
    leave = null;
  }
  const [path, query] = (location.hash.slice(1) || '/functions').split('?');
  const params = new URLSearchParams(query || '');
  if (!getKey()) {
    nav.hidden = true;
    signIn();
    return;
  }
  nav.hidden = false;
  for (const a of nav.querySelectorAll('a')) {
    if (a.getAttribute('href') === `#${path}`) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  let m;
  if (path === '/functions') functionsList(params);
  else if (path === '/functions/new') newFunction();
  else if (path === '/releases/new') newRelease();
  else if (path === '/builds') buildsList(params);
  else if ((m = path.match(/^\/builds\/([0-9a-f-]{36})$/))) buildMonitor(m[1]);
  else show(h('h1', { text: 'Not found' }), h('p', {}, h('a', { href: '#/functions', text: 'Functions' })));
}

window.addEventListener('hashchange', route);
window.addEventListener('hoist-unauthorized', () => {
  clearKey();
  route();
});
document.getElementById('sign-out').addEventListener('click', () => {
  clearKey();
  location.hash = '#/functions';
  route();
});

// ---- sign in ----

function signIn() {
  const key = h('input', { type: 'password', autocomplete: 'off', required: true, spellcheck: 'false' });
  const keyField = field('API key', key, 'Kept in this tab only (session storage), sent as a bearer token.');
  const form = h('form', { 'aria-label': 'Sign in' },
    keyField,
    h('button', { class: 'primary', type: 'submit', text: 'Sign in' }));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    keyField.problem('');
    setKey(key.value.trim());
    try {
      await api('GET', '/v1/builds?limit=1', undefined, { trying: true });
      route();
    } catch (err) {
      clearKey();
      keyField.problem(err.status === 401 ? 'This key is not valid.' : err.message);
      key.focus();
    }
  });
  show(h('h1', { text: 'Sign in' }), form);
  key.focus();
}

// ---- functions ----

async function functionsList(params) {
  const offset = Number(params.get('offset') || 0);
  const limit = 20;
  show(h('h1', { text: 'Functions' }), h('p', { text: 'Loading…' }));
  const gen = generation;
  let page;
  try {
    page = (await api('GET', `/v1/functions?limit=${limit}&offset=${offset}`)).body;
  } catch (err) {
    if (gen === generation) show(h('h1', { text: 'Functions' }), errorBox(err.message));
    return;
  }
  if (gen !== generation) return;
  const rows = page.functions.map((f) => {
    const panel = h('tr', { hidden: true }, h('td', { colspan: 5 }, invokePanel(f)));
    const toggle = h('button', {
      type: 'button',
      'aria-expanded': 'false',
      'aria-label': `Invoke ${f.name} ${f.version}`,
      text: 'Invoke',
      disabled: !f.image,
    });
    toggle.addEventListener('click', () => {
      panel.hidden = !panel.hidden;
      toggle.setAttribute('aria-expanded', String(!panel.hidden));
      if (!panel.hidden) panel.querySelector('textarea').focus();
    });
    return [
      h('tr', {},
        h('td', {}, f.name),
        h('td', {}, f.version),
        h('td', { class: 'mono hide-narrow' }, f.image || 'not built yet'),
        h('td', {}, f.build_id ? h('a', { href: `#/builds/${f.build_id}`, text: 'build' }) : ''),
        h('td', {}, toggle)),
      panel,
    ];
  });
  const table = page.functions.length
    ? h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, h('th', { text: 'Name' }), h('th', { text: 'Version' }),
        h('th', { class: 'hide-narrow', text: 'Image' }), h('th', { text: 'Build' }), h('th', { text: 'Invoke' }))),
      h('tbody', {}, rows.flat())))
    : h('p', {}, 'No functions yet. ', h('a', { href: '#/functions/new', text: 'Submit one.' }));
  show(h('h1', { text: 'Functions' }), table, pager('#/functions', params, offset, limit, page.total));
}

function invokePanel(f) {
  const inputs = h('textarea', { class: 'code', rows: 4, spellcheck: 'false' });
  inputs.value = '{}';
  const inputsField = field(`Inputs of ${f.name} (JSON)`, inputs);
  const out = h('div', { 'aria-live': 'polite' });
  const run = h('button', { class: 'primary', type: 'submit', text: 'Run' });
  const form = h('form', { 'aria-label': `Invoke ${f.name}` }, inputsField, run, out);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    inputsField.problem('');
    let value;
    try {
      value = JSON.parse(inputs.value);
    } catch (err) {
      inputsField.problem(`Not JSON: ${err.message}`);
      inputs.focus();
      return;
    }
    run.disabled = true;
    out.replaceChildren(h('p', { class: 'status-line', text: 'Running…' }));
    try {
      let task = (await api('POST', `/v1/functions/${f.id}/invoke?wait=60`, { inputs: value })).body;
      while (task.status !== 'completed' && task.status !== 'failed') {
        await new Promise((r) => setTimeout(r, 500));
        task = (await api('GET', `/v1/tasks/${task.task_id}`)).body;
      }
      out.replaceChildren(taskResult(task));
    } catch (err) {
      out.replaceChildren(errorBox(err.message));
    } finally {
      run.disabled = false;
    }
  });
  return form;
}

function taskResult(task) {
  if (task.status === 'completed') {
    return h('div', { class: 'card' },
      h('h2', { text: `Output${task.cached ? ' (from the result cache)' : ''}` }),
      h('pre', { class: 'output', text: JSON.stringify(task.output, null, 2) }));
  }
  const error = task.error || {};
  return h('div', { class: 'error-box', role: 'alert' },
    h('h2', { text: `${error.type || 'Error'}: ${error.message || 'the task failed'}` }),
    error.traceback ? h('pre', { class: 'traceback', text: error.traceback }) : null);
}

function newFunction() {
  const name = h('input', { required: true, autocomplete: 'off', spellcheck: 'false' });
  const version = h('input', { required: true, autocomplete: 'off', spellcheck: 'false' });
  version.value = '1.0.0';
  const upload = h('input', { type: 'file', accept: '.py,text/x-python,text/plain' });
  const code = h('textarea', { class: 'code', required: true, spellcheck: 'false', rows: 16 });
  code.value = 'def handler(inputs):\n    return {"hello": inputs.get("name", "world")}\n';
  const requirements = h('textarea', { class: 'code', spellcheck: 'false', rows: 4 });
  const fields = {
    name: field('Name', name),
    version: field('Version', version),
    upload: field('Code file', upload, 'Optional: loads a .py file into the editor below.'),
    code: field('Code (user_function.py)', code, 'A module with def handler(inputs) returning JSON.'),
    requirements: field('Requirements (requirements.txt)', requirements, 'One requirement per line; may be empty.'),
  };
  upload.addEventListener('change', async () => {
    const file = upload.files[0];
    if (file) code.value = await file.text();
  });
  const problems = h('div', { id: 'problems' });
  const submit = h('button', { class: 'primary', type: 'submit', text: 'Submit function' });
  const form = h('form', { 'aria-label': 'New function' },
    h('div', { class: 'row' }, fields.name, fields.version),
    fields.upload, fields.code, fields.requirements, submit, problems);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    problems.replaceChildren();
    for (const f of Object.values(fields)) f.problem('');
    submit.disabled = true;
    try {
      const body = { name: name.value.trim(), version: version.value.trim(), code: code.value };
      if (requirements.value.trim()) body.requirements = requirements.value;
      const created = (await api('POST', '/v1/functions', body)).body;
      location.hash = `#/builds/${created.build_id}`;
    } catch (err) {
      showProblems(err, problems, { 'user_function.py': code.value, 'requirements.txt': requirements.value }, fields);
    } finally {
      submit.disabled = false;
    }
  });
  show(h('h1', { text: 'New function' }), form);
  name.focus();
}

// Problems `file:line:col: message` beside the lines they are about;
// `field: message` under their field; anything else on its own.
function showProblems(err, box, sources, fields) {
  const list = err instanceof ApiError ? err.problems : [];
  if (!list.length) {
    box.replaceChildren(errorBox(err.message));
    return;
  }
  const byFile = new Map();
  const other = [];
  for (const p of list) {
    const m = p.match(/^([^:\s]+):(\d+):(\d+): (.*)$/s);
    const f = p.match(/^([a-z_]+): (.*)$/s);
    if (m && sources[m[1]] !== undefined) {
      if (!byFile.has(m[1])) byFile.set(m[1], []);
      byFile.get(m[1]).push({ line: Number(m[2]), col: Number(m[3]), message: m[4] });
    } else if (f && fields[f[1]]) {
      const prev = fields[f[1]].querySelector('.problem').textContent;
      fields[f[1]].problem(prev ? `${prev} ${f[2]}` : f[2]);
    } else {
      other.push(p);
    }
  }
  const parts = [h('div', { class: 'error-box', role: 'alert' },
    h('strong', { text: err.message }),
    other.length ? h('ul', {}, other.map((p) => h('li', { text: p }))) : null)];
  for (const [file, problems] of byFile) {
    const lines = sources[file].split('\n');
    const view = h('div', { class: 'annotated', role: 'list', 'aria-label': `Problems in ${file}` });
    lines.forEach((text, i) => {
      const here = problems.filter((p) => p.line === i + 1);
      const line = h('div', { class: `line${here.length ? ' bad' : ''}`, role: 'listitem' },
        h('span', { class: 'no', text: String(i + 1) }), h('span', { text: text || ' ' }));
      view.append(line);
      for (const p of here) {
        view.append(h('div', { class: 'msg', role: 'listitem', text: `${file}:${p.line}:${p.col}: ${p.message}` }));
      }
    });
    // Problems past the end (a missing handler is reported at line 1).
    for (const p of problems.filter((q) => q.line > lines.length || q.line < 1)) {
      view.append(h('div', { class: 'msg', role: 'listitem', text: `${file}:${p.line}:${p.col}: ${p.message}` }));
    }
    parts.push(h('h2', { text: file }), view);
  }
  box.replaceChildren(...parts);
  box.querySelector('[role=alert]').scrollIntoView({ block: 'nearest' });
}

// ---- releases ----

const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const NAME = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;
const ARG = /^[A-Za-z_][A-Za-z0-9_]*$/;

async function newRelease() {
  show(h('h1', { text: 'New release' }), h('p', { text: 'Loading…' }));
  const gen = generation;
  let options;
  try {
    options = (await api('GET', '/v1/releases/options')).body;
  } catch (err) {
    if (gen === generation) show(h('h1', { text: 'New release' }), errorBox(err.message));
    return;
  }
  if (gen !== generation) return;
  if (!options.registries.length) {
    show(h('h1', { text: 'New release' }),
      errorBox('This server allows no release registry: its operator must name one (hoist-api --release-registry HOST).'));
    return;
  }
  const upload = h('input', { type: 'file' });
  const dockerfile = h('textarea', { class: 'code', required: true, spellcheck: 'false', rows: 12 });
  const registry = h('select', {}, options.registries.map((r) => h('option', { value: r, text: r })));
  const image = h('input', { required: true, autocomplete: 'off', spellcheck: 'false', placeholder: 'team/app' });
  const tag = h('input', { required: true, autocomplete: 'off', spellcheck: 'false', placeholder: '1.0.0' });
  const platform = h('select', {}, options.platforms.map((p) => h('option', { value: p, text: p })));
  const artifacts = h('input', { type: 'file', multiple: true });
  const network = options.network ? h('input', { type: 'checkbox' }) : null;
  const fields = {
    upload: field('Dockerfile file', upload, 'Optional: loads a file into the editor below.'),
    dockerfile: field('Dockerfile', dockerfile),
    target_registry: field('Target registry', registry, 'The registries this server allows.'),
    image_name: field('Image name', image, 'Lowercase path components, e.g. team/app.'),
    image_tag: field('Tag', tag, 'A version or a commit; never latest.'),
    platform: field('Platform', platform),
    artifact_ids: field('Build context files', artifacts,
      `Optional: uploaded first, then copied into the build context (each at most ${bytes(options.max_artifact_bytes)}).`),
  };
  if (network) {
    network.id = `f${++uid}`;
    fields.network = h('div', { class: 'field' },
      h('label', {}, network, ' Let RUN use the network'));
  }
  upload.addEventListener('change', async () => {
    const file = upload.files[0];
    if (file) dockerfile.value = await file.text();
  });
  // Build arguments: a key/value editor.
  const args = h('div', { id: 'build-args' });
  const addArg = (k = '', v = '') => {
    const n = ++uid;
    const key = h('input', { id: `arg-key-${n}`, autocomplete: 'off', spellcheck: 'false', 'aria-label': `Build argument ${n} name` });
    const value = h('input', { id: `arg-value-${n}`, autocomplete: 'off', spellcheck: 'false', 'aria-label': `Build argument ${n} value` });
    key.value = k;
    value.value = v;
    const remove = h('button', { type: 'button', 'aria-label': `Remove build argument ${n}`, text: 'Remove' });
    const row = h('div', { class: 'arg' },
      h('div', { class: 'field' }, key), h('div', { class: 'field' }, value), remove);
    remove.addEventListener('click', () => {
      row.remove();
      addButton.focus();
    });
    args.append(row);
    return key;
  };
  const addButton = h('button', { type: 'button', id: 'add-build-arg', text: 'Add build argument' });
  addButton.addEventListener('click', () => addArg().focus());
  const argsProblem = h('div', { class: 'problem', role: 'alert' });
  fields.build_args = h('fieldset', {}, h('legend', { text: 'Build arguments' }), args, addButton, argsProblem);
  fields.build_args.problem = (text) => {
    argsProblem.textContent = text || '';
  };
  fields.build_args.control = addButton;

  const check = () => {
    let ok = true;
    const set = (f, text) => {
      fields[f].problem(text);
      if (text) ok = false;
    };
    set('dockerfile', dockerfile.value.trim() ? '' : 'A Dockerfile is needed.');
    set('image_name', NAME.test(image.value) ? '' : 'Lowercase letters and digits in path components separated by ., _, __ or -, joined by /.');
    set('image_tag', !TAG.test(tag.value)
      ? 'Letters, digits, _ . - (at most 128), not starting with . or -.'
      : tag.value === 'latest' ? 'latest is refused: tag releases with a version or a commit.' : '');
    const bad = [...args.querySelectorAll('.arg')]
      .map((row) => row.querySelectorAll('input')[0].value)
      .filter((k) => k !== '' && !ARG.test(k));
    fields.build_args.problem(bad.length ? `Not variable names: ${bad.join(', ')}` : '');
    if (bad.length) ok = false;
    return ok;
  };
  image.addEventListener('input', () => fields.image_name.problem(''));
  tag.addEventListener('input', () => fields.image_tag.problem(''));

  const problems = h('div', {});
  const status = h('p', { class: 'status-line', 'aria-live': 'polite' });
  const submit = h('button', { class: 'primary', type: 'submit', text: 'Start release build' });
  const form = h('form', { 'aria-label': 'New release', novalidate: true },
    fields.upload, fields.dockerfile,
    h('div', { class: 'row' }, fields.target_registry, fields.platform),
    h('div', { class: 'row' }, fields.image_name, fields.image_tag),
    fields.build_args, fields.artifact_ids, fields.network || null,
    submit, status, problems);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    problems.replaceChildren();
    if (!check()) {
      const first = form.querySelector('[aria-invalid="true"]');
      if (first) first.focus();
      return;
    }
    submit.disabled = true;
    try {
      const ids = [];
      for (const file of artifacts.files) {
        status.textContent = `Uploading ${file.name}…`;
        const up = await api('POST', `/v1/artifacts?name=${encodeURIComponent(file.name)}`, file, { raw: true });
        ids.push(up.body.id);
      }
      status.textContent = 'Submitting…';
      const buildArgs = {};
      for (const row of args.querySelectorAll('.arg')) {
        const [k, v] = row.querySelectorAll('input');
        if (k.value) buildArgs[k.value] = v.value;
      }
      const body = {
        dockerfile: base64(dockerfile.value),
        target_registry: registry.value,
        image_name: image.value,
        image_tag: tag.value,
        build_args: buildArgs,
        platform: platform.value,
        artifact_ids: ids,
      };
      if (network && network.checked) body.network = 'host';
      const created = (await api('POST', '/v1/releases/build', body)).body;
      location.hash = `#/builds/${created.job_id}`;
    } catch (err) {
      status.textContent = '';
      showProblems(err, problems, { Dockerfile: dockerfile.value }, fields);
    } finally {
      submit.disabled = false;
    }
  });
  show(h('h1', { text: 'New release' }), form);
  dockerfile.focus();
}

function base64(text) {
  const data = new TextEncoder().encode(text);
  let binary = '';
  for (let i = 0; i < data.length; i += 0x8000) {
    binary += String.fromCharCode(...data.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

// ---- builds ----

const STATUSES = ['pending', 'downloading_artifacts', 'building', 'pushing', 'completed', 'failed', 'cancelled'];

function pager(base, params, offset, limit, total) {
  const go = (o) => {
    const p = new URLSearchParams(params);
    p.set('offset', String(o));
    return `${base}?${p}`;
  };
  return h('nav', { class: 'pager', 'aria-label': 'Pages' },
    offset > 0 ? h('a', { href: go(Math.max(0, offset - limit)), text: 'Previous' }) : null,
    h('span', { text: total ? `${offset + 1}–${Math.min(offset + limit, total)} of ${total}` : '0 of 0' }),
    offset + limit < total ? h('a', { href: go(offset + limit), text: 'Next' }) : null);
}

async function buildsList(params) {
  const offset = Number(params.get('offset') || 0);
  const limit = Math.min(100, Math.max(1, Number(params.get('limit') || 20)));
  const status = params.get('status') || '';
  const fn = params.get('function_id') || '';
  show(h('h1', { text: 'Builds' }), h('p', { text: 'Loading…' }));
  const gen = generation;
  let page;
  let functions;
  try {
    const q = new URLSearchParams({ limit: String(limit), offset: String(offset) });
    if (status) q.set('status', status);
    if (fn) q.set('function_id', fn);
    [page, functions] = await Promise.all([
      api('GET', `/v1/builds?${q}`).then((r) => r.body),
      api('GET', '/v1/functions?limit=100').then((r) => r.body.functions),
    ]);
  } catch (err) {
    if (gen === generation) show(h('h1', { text: 'Builds' }), errorBox(err.message));
    return;
  }
  if (gen !== generation) return;
  const statusSelect = h('select', { name: 'status' },
    h('option', { value: '', text: 'any' }), STATUSES.map((s) => h('option', { value: s, text: s, selected: s === status })));
  const fnSelect = h('select', { name: 'function_id' },
    h('option', { value: '', text: 'any' }),
    functions.map((f) => h('option', { value: f.id, text: `${f.name} ${f.version}`, selected: f.id === fn })));
  const filters = h('form', { 'aria-label': 'Filter builds', class: 'row' },
    field('Status', statusSelect), field('Function', fnSelect),
    h('button', { type: 'submit', text: 'Filter' }));
  filters.addEventListener('submit', (e) => {
    e.preventDefault();
    const p = new URLSearchParams();
    if (statusSelect.value) p.set('status', statusSelect.value);
    if (fnSelect.value) p.set('function_id', fnSelect.value);
    location.hash = `#/builds?${p}`;
  });
  const names = new Map(functions.map((f) => [f.id, `${f.name} ${f.version}`]));
  const table = page.builds.length
    ? h('div', { class: 'table-wrap' }, h('table', {},
      h('thead', {}, h('tr', {}, h('th', { text: 'Build' }), h('th', { text: 'Kind' }),
        h('th', { text: 'Status' }), h('th', { text: 'Progress' }), h('th', { class: 'hide-narrow', text: 'Created' }))),
      h('tbody', {}, page.builds.map((b) => h('tr', {},
        h('td', {}, h('a', { href: `#/builds/${b.id}`, class: 'mono', text: b.id.slice(0, 8) })),
        h('td', {}, b.kind === 'function' && names.get(b.function_id) ? names.get(b.function_id) : b.kind),
        h('td', {}, badge(b.status)),
        h('td', {}, `${b.progress} %`),
        h('td', { class: 'hide-narrow', text: new Date(b.created_at).toLocaleString() }))))))
    : h('p', { text: 'No builds match.' });
  show(h('h1', { text: 'Builds' }), filters, table, pager('#/builds', params, offset, limit, page.total));
}

function buildMonitor(id) {
  const statusBadge = h('span', { id: 'build-status' }, badge('pending'));
  const connection = h('span', { class: 'status-line', id: 'connection' });
  const bar = h('progress', { id: 'build-progress', max: 100, value: 0, 'aria-label': 'Build progress' });
  const percent = h('span', { id: 'build-percent', text: '0 %' });
  const step = h('p', { id: 'build-step', class: 'mono' });
  const log = h('pre', { class: 'log', id: 'build-log', tabindex: 0, role: 'log', 'aria-label': 'Build log' });
  const follow = h('button', { type: 'button', hidden: true, text: 'Follow the log' });
  const cancel = h('button', { type: 'button', class: 'danger', text: 'Cancel build' });
  const result = h('div', { id: 'build-result', 'aria-live': 'polite' });
  let stick = true;
  let view = null;
  log.addEventListener('scroll', () => {
    stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    follow.hidden = stick;
  });
  follow.addEventListener('click', () => {
    stick = true;
    follow.hidden = true;
    log.scrollTop = log.scrollHeight;
  });
  const line = (text, cls) => {
    log.append(h('span', { class: cls || null, text: `${text}\n` }));
    if (stick) log.scrollTop = log.scrollHeight;
  };
  const setStatus = (s) => {
    statusBadge.replaceChildren(badge(s));
    cancel.disabled = !['pending', 'downloading_artifacts', 'building', 'pushing'].includes(s);
  };
  const setProgress = (p) => {
    bar.value = p;
    percent.textContent = `${p} %`;
  };
  const finished = (v) => {
    cancel.disabled = true;
    if (v.status === 'completed') {
      const pull = (v.image_url || '').startsWith('oci:')
        ? v.image_url
        : `docker pull ${v.image_url}`;
      const copy = h('button', { type: 'button', text: 'Copy pull command' });
      const copied = h('span', { class: 'status-line', 'aria-live': 'polite' });
      copy.addEventListener('click', async () => {
        try {
          await navigator.clipboard.writeText(pull);
          copied.textContent = 'Copied.';
        } catch {
          copied.textContent = 'Select the command and copy it.';
        }
      });
      result.replaceChildren(h('div', { class: 'card result' },
        h('h2', { text: 'Image' }),
        h('dl', {},
          h('dt', { text: 'Image' }), h('dd', { class: 'mono', id: 'image-url', text: v.image_url }),
          h('dt', { text: 'Digest' }), h('dd', { class: 'mono', id: 'image-digest', text: v.image_digest }),
          h('dt', { text: 'Size' }), h('dd', { id: 'image-size', text: bytes(v.size_bytes) }),
          h('dt', { text: 'Pull' }), h('dd', { class: 'mono', id: 'pull-command', text: pull })),
        copy, ' ', copied));
    } else if (v.status === 'failed' || v.status === 'cancelled') {
      result.replaceChildren(h('div', { class: 'error-box', role: 'alert', id: 'build-error' },
        h('h2', { text: v.status === 'cancelled' ? 'Cancelled' : 'Failed' }),
        v.error_step ? h('p', {}, 'In step ', h('code', { id: 'error-step', text: v.error_step })) : null,
        v.error_message ? h('pre', { text: v.error_message }) : null));
    }
  };
  cancel.addEventListener('click', async () => {
    cancel.disabled = true;
    try {
      const r = (await api('DELETE', `/v1/builds/${id}`)).body;
      line(`-- ${r.message}`, 'note');
    } catch (err) {
      line(`-- cancel failed: ${err.message}`, 'note');
      cancel.disabled = false;
    }
  });
  const monitor = new BuildMonitor(id, {
    build(v) {
      view = v;
      setStatus(v.status);
      setProgress(v.progress);
      step.textContent = v.current_step || '';
    },
    state(s) {
      connection.textContent = {
        connecting: 'Connecting…',
        reconnecting: 'Connection lost: reconnecting…',
        live: 'Live',
        ended: '',
        refused: '',
      }[s];
      connection.dataset.state = s;
    },
    event(ev) {
      if (ev.type === 'progress') {
        setStatus(ev.status);
        setProgress(ev.progress);
        if (ev.message) step.textContent = ev.message;
      } else if (ev.type === 'log') {
        line(ev.line);
      } else if (ev.type === 'cancel_requested') {
        line('-- cancel requested', 'note');
        cancel.disabled = true;
      } else if (ev.type === 'complete') {
        setStatus('completed');
        setProgress(100);
        step.textContent = 'done';
        finished({ ...(view || {}), ...ev, status: 'completed' });
      } else if (ev.type === 'error') {
        setStatus(ev.status || 'failed');
        finished({ ...(view || {}), status: ev.status || 'failed', error_message: ev.error, error_step: ev.step });
      }
    },
    done() {},
  });
  leave = () => monitor.close();
  show(
    h('h1', {}, 'Build ', h('span', { class: 'mono', text: id })),
    h('div', { class: 'card' },
      h('p', {}, statusBadge, ' ', connection),
      h('div', { class: 'row' }, bar, percent),
      step,
      cancel),
    result,
    h('h2', { text: 'Log' }), log, follow);
}

route();
