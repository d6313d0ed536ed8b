// The dashboard of `dtx serve` (docs/server.md, "Dashboard"): plain DOM, no
// framework, nothing loaded from elsewhere. It reads GET /v1/overview every
// two seconds, and the selected transaction (GET /v1/transactions/:id and
// its /timeline) every three, and nothing while the tab is hidden (each read
// goes through every view the store holds); the operator's actions are the
// native API's POSTs.
// Data is only ever put in the page as text (textContent), never as markup;
// the one exception is the timeline, an SVG the server drew, parsed as SVG.

const tokenKey = 'dtx-serve-token';
const overviewEveryMs = 2000;
const detailEveryMs = 3000;

const $ = (id) => document.getElementById(id);
let selected = null;
/** The selected transaction's type: a 2PC one is resolved as committed or aborted. */
let selectedType = null;
let detailTimer = null;

class Unauthorized extends Error {}

/** fetch with the bearer token (when one was given) and JSON both ways; a problem document throws. */
async function api(method, path, body) {
  const headers = { accept: 'application/json' };
  const token = sessionStorage.getItem(tokenKey);
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, {
    method,
    headers,
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  if (res.status === 401) {
    askToken(token === null ? '' : 'that token was refused');
    throw new Unauthorized('a bearer token is needed');
  }
  const json = await res.json();
  if (!res.ok) throw new Error(`${json.code ?? res.status}: ${json.detail ?? res.statusText}`);
  return json;
}

function askToken(message) {
  $('token-form').hidden = false;
  $('token-error').textContent = message;
}

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'className') e.className = v;
    else if (k === 'text') e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

function fmtAge(ms) {
  if (ms === null || ms === undefined) return '?';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min ${Math.floor((ms % 60_000) / 1000)} s`;
  if (ms < 86_400_000) return `${Math.floor(ms / 3_600_000)} h ${Math.floor((ms % 3_600_000) / 60_000)} min`;
  return `${Math.floor(ms / 86_400_000)} d ${Math.floor((ms % 86_400_000) / 3_600_000)} h`;
}

function phaseBadge(phase) {
  return el('span', {
    className: `phase tone-${phase.tone}`,
    'data-phase': phase.key,
    title: phase.explain,
    text: phase.label,
  });
}

function idButton(id, type) {
  const b = el('button', { type: 'button', className: 'link', text: id });
  b.addEventListener('click', () => select(id, type));
  return b;
}

function fillTable(tableId, items, columns) {
  const body = $(tableId).tBodies[0];
  const rows = items.map((x) => {
    const tr = el('tr', { 'data-id': x.id, 'data-phase': x.phase.key });
    if (x.id === selected) tr.className = 'selected';
    for (const col of columns) {
      const td = el('td', col === 'reason' ? { className: 'reason' } : {});
      if (col === 'id') td.append(idButton(x.id, x.type));
      else if (col === 'type') td.textContent = x.type ?? '?';
      else if (col === 'phase') td.append(phaseBadge(x.phase));
      else if (col === 'why') td.textContent = x.phase.attention;
      else if (col === 'age') td.textContent = fmtAge(x.ageMs);
      else if (col === 'reason') td.textContent = x.reason ?? '';
      tr.append(td);
    }
    return tr;
  });
  if (rows.length === 0)
    rows.push(el('tr', {}, el('td', { className: 'empty', colspan: String(columns.length), text: 'none' })));
  body.replaceChildren(...rows);
}

async function refreshOverview() {
  const o = await api('GET', '/v1/overview');
  $('counts').replaceChildren(
    ...Object.entries(o.counts).map(([k, n]) =>
      el('span', { className: 'count', 'data-phase': k, text: `${k}: ${n}` }),
    ),
  );
  fillTable('attention', o.attention, ['id', 'type', 'why', 'phase', 'age', 'reason']);
  fillTable('live', o.live, ['id', 'type', 'phase', 'age', 'reason']);
  fillTable('recent', o.recent, ['id', 'type', 'phase', 'age', 'reason']);
  $('live-count').textContent =
    o.liveTotal > o.live.length ? `${o.live.length} of ${o.liveTotal} shown, newest first` : `${o.liveTotal}`;
  $('status').textContent = `${o.total} transactions, updated ${new Date(o.now).toLocaleTimeString()}`;
}

async function refreshDetail() {
  if (selected === null) return;
  const id = selected;
  const [view, timeline] = await Promise.all([
    api('GET', `/v1/transactions/${encodeURIComponent(id)}`),
    api('GET', `/v1/transactions/${encodeURIComponent(id)}/timeline`),
  ]);
  if (selected !== id) return;
  const phase = timeline.phase;
  $('detail').hidden = false;
  $('detail').dataset.phase = phase.key;
  $('detail-id').textContent = id;
  $('detail-phase').replaceWith(Object.assign(phaseBadge(phase), { id: 'detail-phase' }));
  $('detail-explain').textContent = phase.explain;
  $('detail-durable').textContent = phase.committed
    ? 'Outcome: success is durable.'
    : phase.ended
      ? 'Ended without committing.'
      : 'Not committed: no successful outcome is durable yet.';
  $('detail-reason').textContent = view.reason === null ? '' : `Reason: ${view.reason}`;
  for (const b of ['retry', 'resolve-open', 'abandon-open']) $(b).disabled = phase.ended;
  $('branches').tBodies[0].replaceChildren(
    ...view.branches.map((b) =>
      el(
        'tr',
        {},
        el('td', { text: b.branch }),
        el('td', { text: b.op ?? `vote: ${b.vote ?? 'none yet'}` }),
        el('td', { text: b.url }),
        el('td', { text: b.status }),
      ),
    ),
  );
  const svg = new DOMParser().parseFromString(timeline.svg, 'image/svg+xml').documentElement;
  $('timeline').replaceChildren(document.importNode(svg, true));
  $('record-count').textContent = String(view.records.length);
  $('records').textContent = view.records
    .map((r) => `${r.at ?? '?'}  ${JSON.stringify(r.record)}`)
    .join('\n');
}

function select(id, type) {
  selected = id;
  selectedType = type;
  $('action-result').textContent = '';
  clearInterval(detailTimer);
  detailTimer = setInterval(() => {
    if (!document.hidden) refreshDetail().catch(showError);
  }, detailEveryMs);
  for (const tr of document.querySelectorAll('tr[data-id]'))
    tr.classList.toggle('selected', tr.dataset.id === id);
  refreshDetail().catch(showError);
}

function showError(error) {
  if (error instanceof Unauthorized) return;
  $('status').textContent = `error: ${error.message}`;
}

async function act(action, body) {
  const id = selected;
  const path = `/v1/transactions/${encodeURIComponent(id)}/${action}`;
  const view = await api('POST', path, body);
  $('action-result').textContent = `${action}: done, now ${view.state}`;
  await Promise.all([refreshDetail(), refreshOverview()]);
}

function openForce(kind) {
  const resolve = kind === 'resolve';
  $('force-title').textContent = `${resolve ? 'Resolve' : 'Abandon'} ${selected} by hand`;
  $('force-explain').textContent = resolve
    ? 'dtx stops calling its branches and records the outcome you established by checking them yourself.'
    : 'dtx stops calling its branches and leaves them as they are: what is half done is yours to settle.';
  $('outcome-row').hidden = !resolve;
  // A 2PC transaction's outcomes are committed or aborted; the server refuses the one its log contradicts.
  const outcomes =
    selectedType === '2pc'
      ? [
          ['committed', 'committed (its commit is durable; I committed the branches left)'],
          ['aborted', 'aborted (no commit is durable: dtx rolls back every branch)'],
        ]
      : [
          ['completed', 'completed (every step is done)'],
          ['compensated', 'compensated (every step is undone)'],
        ];
  $('force-outcome').replaceChildren(
    ...outcomes.map(([value, text]) => Object.assign(document.createElement('option'), { value, text })),
  );
  $('force-reason').value = '';
  $('force-confirm').checked = false;
  $('force-error').textContent = '';
  $('force-dialog').dataset.kind = kind;
  $('force-dialog').showModal();
}

function setup() {
  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    sessionStorage.setItem(tokenKey, $('token-input').value);
    $('token-input').value = '';
    $('token-form').hidden = true;
    tick();
  });
  $('detail-close').addEventListener('click', () => {
    selected = null;
    clearInterval(detailTimer);
    $('detail').hidden = true;
  });
  $('retry').addEventListener('click', () =>
    act('retry').catch((e) => ($('action-result').textContent = e.message)),
  );
  $('resolve-open').addEventListener('click', () => openForce('resolve'));
  $('abandon-open').addEventListener('click', () => openForce('abandon'));
  $('force-cancel').addEventListener('click', () => $('force-dialog').close());
  $('force-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const reason = $('force-reason').value.trim();
    if (reason === '' || !$('force-confirm').checked) {
      $('force-error').textContent = 'a reason and the confirmation are required';
      return;
    }
    const kind = $('force-dialog').dataset.kind;
    const body =
      kind === 'resolve'
        ? { outcome: $('force-outcome').value, force: true, reason }
        : { force: true, reason };
    act(kind, body)
      .then(() => $('force-dialog').close())
      .catch((err) => ($('force-error').textContent = err.message));
  });
  tick();
  setInterval(tick, overviewEveryMs);
  document.addEventListener('visibilitychange', tick);
}

function tick() {
  if (!document.hidden) refreshOverview().catch(showError);
}

setup();
