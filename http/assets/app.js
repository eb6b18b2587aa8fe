// The durable dashboard: a plain JavaScript module over the HTTP API.
// Routes live in the URL's hash, filters included, so a view can be
// bookmarked and shared: #/?status=running, #/instances/<id>,
// #/entities/<type>/<key>, #/diff?a=<id>&b=<id>.

const base = location.pathname.replace(/\/ui\/?[^/]*$/, '');
const ROW = 28;
// An instance's history comes in pages: a first one of FIRST events shows
// the first screen (and tells the total) at once; the rest follows in the
// background PAGE events at a time (the route's largest page), and the
// rows scrolled to before then are fetched on their own, NEAR at a time.
// A history of 50,000 events is thus shown in one round trip, not six.
const FIRST = 1000;
const PAGE = 10000;
const NEAR = 500;
const STATUSES = ['pending', 'running', 'suspended', 'stuck', 'completed', 'failed', 'terminated'];
let token = sessionStorage.getItem('durable-token');
let leave = () => {};

// ---- DOM and API helpers -------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'style') Object.assign(el.style, v); // CSSOM: allowed by the CSP, unlike style=".."
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

function main(...children) {
  const m = document.getElementById('main');
  m.replaceChildren(...children);
  return m;
}

function askToken() {
  const dialog = document.getElementById('token');
  const input = document.getElementById('token-input');
  input.value = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      token = input.value;
      sessionStorage.setItem('durable-token', token);
      resolve();
    }, { once: true });
    dialog.showModal();
  });
}

async function api(path, opts = {}) {
  const headers = { ...(opts.headers || {}) };
  if (token) headers.Authorization = `Bearer ${token}`;
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(base + path, { ...opts, headers });
  if (res.status === 401) {
    await askToken();
    return api(path, opts);
  }
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = text; }
  if (!res.ok) {
    const e = new Error((body && body.message) || `${res.status} ${res.statusText}`);
    e.status = res.status;
    throw e;
  }
  return body;
}

const enc = encodeURIComponent;
const statusBadge = (s) => h('span', { class: `status ${s}`, dataset: { status: s } }, s);

function time(micros) {
  const d = new Date(Math.floor(micros / 1000));
  return d.toISOString().replace('T', ' ').replace('Z', '');
}

function shortTime(micros) {
  return new Date(Math.floor(micros / 1000)).toISOString().slice(11, 23);
}

function json(v) {
  return JSON.stringify(v, null, 2);
}

function brief(v, n = 120) {
  const s = typeof v === 'string' ? JSON.stringify(v) : JSON.stringify(v);
  return s === undefined ? '' : (s.length > n ? `${s.slice(0, n)}…` : s);
}

function failure(e) {
  return h('div', { class: 'error', role: 'alert' }, e.message || String(e));
}

function query() {
  const i = location.hash.indexOf('?');
  return new URLSearchParams(i < 0 ? '' : location.hash.slice(i + 1));
}

function go(path, params) {
  const q = params ? new URLSearchParams(Object.entries(params).filter(([, v]) => v)).toString() : '';
  location.hash = q ? `${path}?${q}` : path;
}

// ---- The confirmation dialog ---------------------------------------------

function confirmAction({ title, text, fields = [], reason = true }) {
  const dialog = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = text;
  const holder = document.getElementById('confirm-fields');
  const inputs = fields.map((f) => {
    const input = f.multiline
      ? h('textarea', { id: `field-${f.name}`, name: f.name, placeholder: f.placeholder || '' })
      : h('input', { id: `field-${f.name}`, name: f.name, placeholder: f.placeholder || '', required: f.required });
    input.value = f.value || '';
    return [f.name, input, h('label', {}, f.label, input)];
  });
  holder.replaceChildren(...inputs.map(([, , l]) => l));
  const reasonInput = document.getElementById('confirm-reason');
  reasonInput.value = '';
  reasonInput.required = reason;
  reasonInput.parentElement.hidden = !reason;
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      if (dialog.returnValue !== 'ok') return resolve(null);
      const values = Object.fromEntries(inputs.map(([name, input]) => [name, input.value]));
      values.reason = reasonInput.value;
      resolve(values);
    }, { once: true });
    dialog.returnValue = '';
    dialog.showModal();
  });
}

// ---- Server-sent events over fetch (so the token goes in a header) --------

async function follow(path, onEvent, signal) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  let last = null;
  while (!signal.aborted) {
    const h2 = { ...headers };
    if (last !== null) h2['Last-Event-ID'] = last;
    let ended = false;
    try {
      // A function gives the path as it is now, for each reconnect.
      const res = await fetch(base + (typeof path === 'function' ? path() : path), { headers: h2, signal });
      if (!res.ok) throw new Error(`stream: ${res.status}`);
      setLive(true);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const chunk = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const ev = { event: 'message', data: '', id: null };
          for (const line of chunk.split('\n')) {
            if (line.startsWith(':')) continue;
            const i = line.indexOf(':');
            const field = i < 0 ? line : line.slice(0, i);
            const val = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
            if (field === 'event') ev.event = val;
            else if (field === 'data') ev.data += (ev.data ? '\n' : '') + val;
            else if (field === 'id') ev.id = val;
          }
          if (ev.id !== null) last = ev.id;
          if (ev.event === 'end') ended = true;
          onEvent(ev);
        }
      }
    } catch (e) {
      if (signal.aborted) break;
    } finally {
      setLive(false);
    }
    if (ended) break;
    await new Promise((r) => setTimeout(r, 1000));
  }
}

function setLive(on) {
  document.getElementById('live').classList.toggle('on', on);
  document.body.dataset.live = on ? 'on' : 'off';
}

// ---- The instance list ---------------------------------------------------

let orchestratorNames = null;
let entityTypes = null;
async function names() {
  if (!orchestratorNames) {
    const doc = await api('/openapi.json');
    orchestratorNames = (doc.info['x-orchestrators'] || []).map((o) => o.name);
    entityTypes = doc.info['x-entity-types'] || [];
  }
  return { orchestrators: orchestratorNames, entities: entityTypes };
}

async function listPage() {
  const q = query();
  const filters = { status: q.get('status') || '', orchestrator: q.get('orchestrator') || '', prefix: q.get('prefix') || '' };
  const after = q.get('after') || '';
  const chips = h('div', { class: 'chips', id: 'counts' });
  const table = h('tbody');
  const pager = h('div', { class: 'pager' });
  const note = h('div');
  const { orchestrators } = await names().catch(() => ({ orchestrators: [] }));

  const status = h('select', { id: 'filter-status' }, h('option', { value: '' }, 'any status'),
    STATUSES.map((s) => h('option', { value: s, selected: s === filters.status }, s)));
  const orch = h('select', { id: 'filter-orchestrator' }, h('option', { value: '' }, 'any orchestrator'),
    orchestrators.map((n) => h('option', { value: n, selected: n === filters.orchestrator }, n)));
  const prefix = h('input', { id: 'filter-prefix', placeholder: 'id starts with', value: filters.prefix });
  const form = h('form', { class: 'row', onsubmit: (e) => {
    e.preventDefault();
    go('#/', { status: status.value, orchestrator: orch.value, prefix: prefix.value });
  } },
  h('label', {}, 'Status', status), h('label', {}, 'Orchestrator', orch), h('label', {}, 'Id prefix', prefix),
  h('button', { class: 'primary', type: 'submit' }, 'Apply'),
  h('button', { type: 'button', onclick: () => go('#/') }, 'Clear'));

  main(
    h('h1', {}, 'Instances'),
    h('div', { class: 'panel' }, chips),
    h('div', { class: 'panel' }, form),
    note,
    h('div', { class: 'panel' },
      h('table', { id: 'instances' },
        h('thead', {}, h('tr', {}, ['Id', 'Orchestrator', 'Status', 'Created', 'Updated', 'Events'].map((t) => h('th', {}, t)))),
        table),
      pager),
  );

  async function refresh() {
    try {
      const counts = await api(`/counts${filters.orchestrator ? `?orchestrator=${enc(filters.orchestrator)}` : ''}`);
      const chip = (s, n) => h('a', {
        class: `chip${filters.status === s ? ' active' : ''}`,
        href: `#/?${new URLSearchParams({ ...filters, status: s })}`,
        dataset: { statusCount: s || 'all' },
      }, s || 'all', h('b', {}, n));
      chips.replaceChildren(chip('', counts.total), ...STATUSES.filter((s) => counts.counts[s]).map((s) => chip(s, counts.counts[s])));
      const params = new URLSearchParams({ page_size: '50' });
      for (const [k, v] of Object.entries(filters)) if (v) params.set(k, v);
      if (after) params.set('after', after);
      const page = await api(`/instances?${params}`);
      table.replaceChildren(...page.instances.map((i) => h('tr', { dataset: { id: i.id } },
        h('td', { class: 'id' }, h('a', { href: `#/instances/${enc(i.id)}` }, i.id)),
        h('td', {}, i.orchestrator),
        h('td', {}, statusBadge(i.status)),
        h('td', { class: 'mono' }, i.created_at.replace('T', ' ').replace('Z', '')),
        h('td', { class: 'mono' }, i.updated_at.replace('T', ' ').replace('Z', '')),
        h('td', {}, i.history_len))));
      if (!page.instances.length) table.replaceChildren(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No instances match.')));
      pager.replaceChildren(
        after ? h('button', { onclick: () => history.back() }, '← Previous') : '',
        page.next ? h('button', { id: 'next-page', onclick: () => go('#/', { ...filters, after: page.next }) }, 'Next →') : '');
      note.replaceChildren();
    } catch (e) {
      note.replaceChildren(failure(e));
    }
  }
  await refresh();
  const timer = setInterval(refresh, 3000);
  leave = () => clearInterval(timer);
}

// ---- One instance --------------------------------------------------------

function kindOf(rec) {
  return Object.keys(rec.event)[0];
}

function detail(kind, f) {
  switch (kind) {
    case 'Started': return `${f.name}(${brief(f.input)})`;
    case 'ActivityScheduled': return `#${f.seq} ${f.name}(${brief(f.input)})`;
    case 'ActivityCompleted': case 'ChildCompleted': case 'EntityCompleted': return `#${f.seq} → ${brief(f.output)}`;
    case 'ActivityFailed': case 'ChildFailed': case 'EntityFailed': return `#${f.seq} ✗ ${brief(f.failure)}`;
    case 'ChildScheduled': return `#${f.seq} ${f.name} as ${f.id}`;
    case 'TimerCreated': return `#${f.seq} fires ${time(f.fire_at)}`;
    case 'TimerFired': case 'TimerCancelled': return `#${f.seq}`;
    case 'EventRaised': return `${f.name} = ${brief(f.data)}`;
    case 'Completed': return `${f.failed ? '✗ ' : ''}${brief(f.output)}`;
    case 'Failed': return brief(f.failure);
    case 'Suspended': case 'Resumed': case 'Terminated': return f.reason;
    case 'EntityCalled': return `#${f.seq} ${f.entity}.${f.op}(${brief(f.input)})`;
    default: return brief(f);
  }
}

function siteOf(f) {
  // `file:line:col` → `file:line`
  return f && f.site ? f.site.replace(/:(\d+):\d+$/, ':$1') : '';
}

function spans(events, now) {
  const open = new Map();
  const out = [];
  for (const rec of events) {
    const kind = kindOf(rec);
    const f = rec.event[kind];
    const start = (type, label) => { const s = { type, label, site: siteOf(f), from: rec.at, to: null, failed: false }; open.set(f.seq, s); out.push(s); };
    const end = (failed) => { const s = open.get(f.seq); if (s) { s.to = rec.at; s.failed = failed; open.delete(f.seq); } };
    switch (kind) {
      case 'ActivityScheduled': start('activity', `${f.name} #${f.seq}`); break;
      case 'TimerCreated': start('timer', `timer #${f.seq}`); open.get(f.seq).due = f.fire_at; break;
      case 'ChildScheduled': start('child', `${f.name} #${f.seq}`); break;
      case 'EntityCalled': start('entity', `${f.entity}.${f.op} #${f.seq}`); break;
      case 'ActivityCompleted': case 'TimerFired': case 'ChildCompleted': case 'EntityCompleted': end(false); break;
      case 'ActivityFailed': case 'ChildFailed': case 'EntityFailed': case 'TimerCancelled': end(true); break;
      default: break;
    }
  }
  for (const s of out) if (s.to === null) s.open = true, s.to = s.due && s.due < now ? s.due : now;
  return out;
}

async function instancePage(id) {
  const path = `/instances/${enc(id)}`;
  let status;
  try {
    status = await api(path);
  } catch (e) {
    main(h('h1', {}, id), failure(e), h('p', {}, h('a', { href: '#/' }, '← All instances')));
    return;
  }
  // Sparse while it loads: `events[i]` is the event of index i once
  // fetched; `events.length` is the history's length as far as known.
  const events = [];
  let known = 0; // events fetched
  let prefix = 0; // events[0..prefix] are all fetched
  let loading = true;
  const stop = new AbortController();
  const head = h('div');
  const summary = h('div', { class: 'panel' });
  const waits = h('div', { class: 'panel', id: 'waiting' });
  const note = h('div');
  const tabs = h('div', { class: 'tabs' });
  const body = h('div');
  let tab = 'history';

  const count = h('p', { class: 'muted hcount', id: 'history-count' });
  const viewport = h('div', { class: 'viewport', id: 'history' });
  const spacer = h('div', { class: 'spacer' });
  const header = h('div', { class: 'hrow head' }, h('span', {}, 'Index'), h('span', {}, 'Turn'), h('span', {}, 'Time'), h('span', {}, 'Event'), h('span', {}, 'Detail'), h('span', {}, 'Source'));
  viewport.append(header, spacer);
  viewport.addEventListener('scroll', () => requestAnimationFrame(renderRows));

  function renderCount() {
    const n = events.length.toLocaleString('en-US');
    count.dataset.total = events.length;
    count.dataset.loaded = known;
    count.dataset.state = loading ? 'loading' : 'idle';
    count.textContent = loading ? `${n} events (${known.toLocaleString('en-US')} loaded)` : `${n} events`;
  }

  function renderRows() {
    renderCount();
    spacer.style.height = `${events.length * ROW}px`;
    const first = Math.max(0, Math.floor(viewport.scrollTop / ROW) - 10);
    const last = Math.min(events.length, first + Math.ceil(viewport.clientHeight / ROW) + 20);
    const rows = [];
    let missing = -1;
    for (let i = first; i < last; i++) {
      const rec = events[i];
      if (!rec) {
        if (missing < 0) missing = i;
        rows.push(h('div', { class: 'hrow pending', style: { top: `${i * ROW}px` }, dataset: { pending: i } },
          h('span', {}, i), h('span', { class: 'muted' }, 'loading…')));
        continue;
      }
      const kind = kindOf(rec);
      const f = rec.event[kind];
      rows.push(h('div', { class: 'hrow', style: { top: `${i * ROW}px` }, dataset: { index: rec.index, kind } },
        h('span', {}, rec.index), h('span', {}, rec.turn), h('span', { class: 'mono' }, shortTime(rec.at)),
        h('span', { class: 'kind' }, kind), h('span', { title: detail(kind, f) }, detail(kind, f)),
        h('span', { class: 'site', title: f && f.site || '' }, siteOf(f))));
    }
    spacer.replaceChildren(...rows);
    if (missing >= 0) fetchNear(missing);
  }

  // Keeps what a page brings; whoever asked for it renders.
  function keep(page) {
    for (const rec of page.events) {
      if (rec.index < events.length && !events[rec.index]) {
        events[rec.index] = rec;
        known += 1;
      }
    }
    while (prefix < events.length && events[prefix]) prefix += 1;
  }

  // The rows scrolled to before the background reached them, one request
  // at a time (a newer scroll asks again once it is back).
  let near = null;
  let failedAt = null;
  function fetchNear(from) {
    if (near !== null || failedAt === from || stop.signal.aborted) return;
    near = from;
    api(`${path}/history?from=${from}&limit=${NEAR}`, { signal: stop.signal })
      .then((page) => {
        if (near !== from) return;
        keep(page);
        // Nothing there (the history is shorter than believed: a purge, a
        // restart on its way): not asked for again in a loop.
        if (page.events.length === 0) failedAt = from;
      })
      .catch((e) => {
        if (stop.signal.aborted) return;
        note.replaceChildren(failure(e));
        failedAt = from; // not asked again in a loop; a scroll elsewhere asks anew
      })
      .finally(() => {
        if (near !== from || stop.signal.aborted) return;
        near = null;
        if (tab === 'history' && failedAt !== from) requestAnimationFrame(renderRows);
      });
  }

  // The rest of the history, after the first screen, oldest first.
  async function loadRest() {
    try {
      while (prefix < events.length && !stop.signal.aborted) {
        const page = await api(`${path}/history?from=${prefix}&limit=${PAGE}`, { signal: stop.signal });
        keep(page);
        if (page.events.length === 0) break;
        if (tab === 'history') renderRows();
      }
    } catch (e) {
      if (!stop.signal.aborted) note.replaceChildren(failure(e));
    }
    loading = false;
    // Rows only on the history tab: putting its viewport in again would
    // lose where it is scrolled to.
    if (stop.signal.aborted) return;
    if (tab === 'history') renderRows(); else renderTab();
  }

  function renderTimeline() {
    const now = Date.now() * 1000;
    // Only what has loaded, while the rest loads.
    const have = prefix < events.length ? events.slice(0, prefix) : events;
    const all = spans(have, now);
    const t0 = have.length ? have[0].at : now;
    const t1 = Math.max(now, ...all.map((s) => s.to), t0 + 1);
    const shown = all.slice(0, 2000);
    return h('div', { class: 'timeline', id: 'timeline' },
      have.length < events.length ? h('p', { class: 'muted' }, `The first ${have.length} of ${events.length} events, while the rest loads.`) : '',
      shown.length ? '' : h('p', { class: 'muted' }, 'No activities, timers or children yet.'),
      shown.map((s) => h('div', { class: 'tl-row' },
        h('span', { class: 'label', title: `${s.label} ${s.site}` }, `${s.label} `, h('span', { class: 'site' }, s.site)),
        h('div', { class: 'tl-track' }, h('div', {
          class: `tl-bar ${s.type}${s.open ? ' open' : ''}${s.failed ? ' failed' : ''}`,
          dataset: { type: s.type },
          title: `${time(s.from)} → ${s.open ? 'open' : time(s.to)}`,
          style: { left: `${((s.from - t0) / (t1 - t0)) * 100}%`, width: `${Math.max(0.3, ((s.to - s.from) / (t1 - t0)) * 100)}%` },
        })))),
      all.length > shown.length ? h('p', { class: 'muted' }, `First ${shown.length} of ${all.length} shown.`) : '');
  }

  function renderTab() {
    for (const b of tabs.children) b.classList.toggle('on', b.dataset.tab === tab);
    if (tab === 'history') { body.replaceChildren(count, viewport); renderRows(); }
    else if (tab === 'timeline') body.replaceChildren(renderTimeline());
    else body.replaceChildren(h('pre', { id: 'raw' }, json({ status, history: events.length > 2000 ? `${events.length} events: read them at ${base}${path}/history` : events.filter(Boolean) })));
  }
  tabs.append(...[['history', 'History'], ['timeline', 'Timeline'], ['raw', 'Raw JSON']].map(([k, label]) =>
    h('button', { dataset: { tab: k }, onclick: () => { tab = k; renderTab(); } }, label)));

  function renderSummary() {
    const field = (label, value, attrs = {}) => h('div', attrs, h('span', {}, label), value);
    head.replaceChildren(
      h('p', { class: 'muted' }, h('a', { href: '#/' }, '← All instances')),
      h('h1', {}, id, ' ', h('span', { id: 'summary-status' }, statusBadge(status.status))));
    summary.replaceChildren(
      h('div', { class: 'summary' },
        field('Orchestrator', status.orchestrator),
        field('Created', status.created_at),
        field('Updated', status.updated_at),
        field('Events', status.history_len, { id: 'summary-len' }),
        status.terminated ? field('Terminated', status.terminated) : ''),
      status.failure ? h('div', { class: 'error' }, `${status.failure.kind}: ${status.failure.message}`) : '',
      status.output !== null ? h('div', {}, h('h2', {}, 'Output'), h('pre', { id: 'output' }, json(status.output))) : '',
      status.custom_status !== null ? h('div', {}, h('h2', {}, 'Custom status'), h('pre', {}, json(status.custom_status))) : '',
      h('div', { class: 'actions' }, actionButtons()));
  }

  async function renderWaits() {
    try {
      const w = await api(`${path}/waiting`);
      waits.replaceChildren(h('h2', {}, 'Waiting on'),
        w.waiting_on.length
          ? h('ul', { class: 'waits' }, w.waiting_on.map((b) => h('li', { dataset: { kind: b.kind } }, h('span', { class: 'kind' }, b.kind), b.text)))
          : h('p', { class: 'muted' }, status.status === 'completed' || status.status === 'failed' || status.status === 'terminated' ? 'Nothing: it has finished.' : 'Nothing known.'));
    } catch (e) {
      waits.replaceChildren(failure(e));
    }
  }

  function actionButtons() {
    const s = status.status;
    const finished = ['completed', 'failed', 'terminated'].includes(s);
    const act = async (run) => {
      try { await run(); note.replaceChildren(); await refresh(); } catch (e) { note.replaceChildren(failure(e)); }
    };
    return [
      h('button', { id: 'act-raise', disabled: finished, onclick: async () => {
        const v = await confirmAction({ title: 'Raise an event', text: `Deliver an event to ${id}.`, reason: false,
          fields: [{ name: 'event', label: 'Event name', required: true }, { name: 'data', label: 'Data (JSON)', multiline: true, value: 'null' }] });
        if (v) await act(() => api(`${path}/events/${enc(v.event)}`, { method: 'POST', body: v.data || 'null' }));
      } }, 'Raise event'),
      h('button', { id: 'act-suspend', disabled: !['pending', 'running', 'stuck'].includes(s), onclick: async () => {
        const v = await confirmAction({ title: 'Suspend', text: `${id} will run no turn until resumed.` });
        if (v) await act(() => api(`${path}/suspend`, { method: 'POST', body: JSON.stringify({ reason: v.reason }) }));
      } }, 'Suspend'),
      h('button', { id: 'act-resume', disabled: s !== 'suspended', onclick: async () => {
        const v = await confirmAction({ title: 'Resume', text: `${id} goes on.` });
        if (v) await act(() => api(`${path}/resume`, { method: 'POST', body: JSON.stringify({ reason: v.reason }) }));
      } }, 'Resume'),
      h('button', { id: 'act-terminate', class: 'danger', disabled: finished, onclick: async () => {
        const v = await confirmAction({ title: 'Terminate', text: `${id} and its children end now, for good.` });
        if (v) await act(() => api(`${path}/terminate`, { method: 'POST', body: JSON.stringify({ reason: v.reason }) }));
      } }, 'Terminate'),
      h('button', { id: 'act-purge', class: 'danger', disabled: !finished, onclick: async () => {
        const v = await confirmAction({ title: 'Purge', text: `${id} and its history are deleted, for good.`, reason: false });
        if (v) { try { await api(path, { method: 'DELETE' }); location.hash = '#/'; } catch (e) { note.replaceChildren(failure(e)); } }
      } }, 'Purge'),
      h('a', { class: 'chip', href: `#/diff?a=${enc(id)}` }, 'Compare…'),
    ];
  }

  async function refresh() {
    status = await api(path);
    renderSummary();
    renderWaits();
  }

  main(head, summary, waits, note, h('div', { class: 'panel' }, tabs, body));
  renderSummary();
  renderWaits();
  // The first page, which tells the total; then the rest in the
  // background, and what is new live.
  try {
    const page = await api(`${path}/history?from=0&limit=${FIRST}`, { signal: stop.signal });
    events.length = page.total;
    keep(page);
  } catch (e) {
    note.replaceChildren(failure(e));
  }
  renderTab();
  loadRest();

  let pending = null;
  const changed = () => {
    if (pending) return;
    pending = setTimeout(async () => {
      pending = null;
      try { await refresh(); } catch (e) { note.replaceChildren(failure(e)); }
      if (tab !== 'history') renderTab(); else renderRows();
    }, 150);
  };
  // The execution followed (its `Started`'s first sequence number): a
  // reconnect names it, so a continue-as-new meanwhile is told.
  const executionOf = (rec) => (rec && rec.event && rec.event.Started ? rec.event.Started.first_seq || 0 : null);
  let execution = executionOf(events[0]);
  const streamPath = () => `${path}/stream?from=${events.length}${execution === null ? '' : `&execution=${execution}`}`;
  follow(streamPath, (ev) => {
    if (ev.event === 'history') {
      const rec = JSON.parse(ev.data);
      if (rec.index === 0 && executionOf(rec) !== null) execution = executionOf(rec);
      if (rec.index === events.length) { events.push(rec); known += 1; if (prefix === rec.index) prefix += 1; }
      changed();
    } else if (ev.event === 'restarted') {
      // Continued as new: the new execution's events all come here, from
      // index 0; what the background still fetches is the old one's.
      events.length = 0;
      known = 0;
      prefix = 0;
      near = null;
      loading = false;
      changed();
    } else if (ev.event === 'end') {
      changed();
    }
  }, stop.signal);
  leave = () => { stop.abort(); setLive(false); };
}

// ---- Entities --------------------------------------------------------------

async function entitiesPage(type, key) {
  const { entities } = await names().catch(() => ({ entities: [] }));
  const typeSel = h('select', { id: 'entity-type' }, entities.map((t) => h('option', { value: t, selected: t === type }, t)));
  const keyIn = h('input', { id: 'entity-key', placeholder: 'key', value: key || '', required: true });
  const form = h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); location.hash = `#/entities/${enc(typeSel.value)}/${enc(keyIn.value)}`; } },
    h('label', {}, 'Entity type', typeSel), h('label', {}, 'Key', keyIn), h('button', { class: 'primary' }, 'Open'));
  const state = h('div', { class: 'panel', id: 'entity-state' });
  const note = h('div');
  main(h('h1', {}, type && key ? `${type} ${key}` : 'Entities'), h('div', { class: 'panel' }, form), note, type && key ? state : '');
  if (!(type && key)) { leave = () => {}; return; }
  const path = `/entities/${enc(type)}/${enc(key)}`;
  const op = h('input', { id: 'signal-op', placeholder: 'operation', required: true });
  const args = h('textarea', { id: 'signal-args' });
  args.value = 'null';
  const signal = h('form', { class: 'row', onsubmit: async (e) => {
    e.preventDefault();
    try { await api(`${path}/${enc(op.value)}`, { method: 'POST', body: args.value || 'null' }); note.replaceChildren(h('p', { class: 'muted' }, `Signalled ${op.value}.`)); }
    catch (err) { note.replaceChildren(failure(err)); }
  } }, h('label', {}, 'Operation', op), h('label', {}, 'Arguments (JSON array, or null)', args), h('button', { class: 'primary' }, 'Signal'));
  const pre = h('pre', { id: 'entity-json' });
  async function refresh() {
    try {
      const s = await api(path);
      pre.textContent = json(s.state);
    } catch (e) {
      pre.textContent = e.status === 404 ? 'No state (never written, or deleted).' : e.message;
    }
  }
  state.append(h('h2', {}, 'State'), pre, h('h2', {}, 'Signal an operation'), signal);
  await refresh();
  const timer = setInterval(refresh, 2000);
  leave = () => clearInterval(timer);
}

// ---- Comparing two instances ------------------------------------------------

const DECISIONS = ['ActivityScheduled', 'TimerCreated', 'ChildScheduled', 'EntityCalled', 'EntitySignaled', 'SideEffect', 'LockRequested', 'Patched'];

function decisions(history) {
  const bySeq = new Map();
  for (const rec of history) {
    const kind = kindOf(rec);
    const f = rec.event[kind];
    if (DECISIONS.includes(kind)) bySeq.set(f.seq, { kind, name: f.name || f.op || f.id || '', site: siteOf(f), input: f.input });
  }
  return bySeq;
}

async function diffPage() {
  const q = query();
  const a = h('input', { id: 'diff-a', placeholder: 'instance id', value: q.get('a') || '', required: true });
  const b = h('input', { id: 'diff-b', placeholder: 'instance id', value: q.get('b') || '', required: true });
  const out = h('div');
  main(h('h1', {}, 'Compare two instances'),
    h('div', { class: 'panel' }, h('form', { class: 'row', onsubmit: (e) => { e.preventDefault(); go('#/diff', { a: a.value, b: b.value }); } },
      h('label', {}, 'First', a), h('label', {}, 'Second', b), h('button', { class: 'primary' }, 'Compare'))),
    out);
  leave = () => {};
  if (!q.get('a') || !q.get('b')) return;
  try {
    const all = async (id) => {
      const evs = [];
      let from = 0;
      for (;;) {
        const p = await api(`/instances/${enc(id)}/history?from=${from}&limit=10000`);
        evs.push(...p.events);
        if (p.next === null) return evs;
        from = p.next;
      }
    };
    const [ha, hb] = await Promise.all([all(q.get('a')), all(q.get('b'))]);
    const da = decisions(ha);
    const db = decisions(hb);
    const seqs = [...new Set([...da.keys(), ...db.keys()])].sort((x, y) => x - y);
    const same = (x, y) => x && y && x.kind === y.kind && x.name === y.name && x.site === y.site;
    const first = seqs.find((s) => !same(da.get(s), db.get(s)));
    const cell = (d) => (d ? [h('td', {}, `${d.kind} ${d.name}`), h('td', { class: 'site' }, d.site)] : [h('td', { class: 'muted' }, '—'), h('td', {}, '')]);
    out.replaceChildren(h('div', { class: 'panel' },
      h('p', { id: 'diff-summary' }, first === undefined ? 'They took the same path (by sequence number).' : `They part at #${first}.`),
      h('table', { class: 'diff', id: 'diff' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Seq'), h('th', {}, q.get('a')), h('th', {}, 'Source'), h('th', {}, q.get('b')), h('th', {}, 'Source'))),
        h('tbody', {}, seqs.map((s) => h('tr', { class: same(da.get(s), db.get(s)) ? '' : 'differs', dataset: { seq: s } },
          h('td', {}, `#${s}`), cell(da.get(s)), cell(db.get(s))))))));
  } catch (e) {
    out.replaceChildren(failure(e));
  }
}

// ---- Routing ------------------------------------------------------------------

async function route() {
  leave();
  leave = () => {};
  const hash = location.hash.replace(/^#/, '') || '/';
  const path = hash.split('?')[0];
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  try {
    if (parts[0] === 'instances' && parts.length >= 2) await instancePage(parts.slice(1).join('/'));
    else if (parts[0] === 'entities') await entitiesPage(parts[1], parts[2]);
    else if (parts[0] === 'diff') await diffPage();
    else await listPage();
  } catch (e) {
    main(failure(e));
  }
  document.body.dataset.ready = 'yes';
}

window.addEventListener('hashchange', route);
route();
