// The hookrelay inspector: sign in, the team's channels, and a channel's
// events live (Server-Sent Events from /api/v1/channels/:id/stream), with
// the event view, replay and copy-as-curl. Plain DOM, no framework; every
// piece of data goes into the page as text (textContent), never as HTML.
import {
  bodyBytes, bodyKind, curlCommand, formatBytes, formatDuration, headerText, headerValue, hexDump,
  parseForm, prettyJSON, prettyXML, segmentsText, timeKey,
} from './format.js';

const $ = (sel, root = document) => root.querySelector(sel);
const enc = encodeURIComponent;

/** el('a', {href, class, onclick}, ...children) builds an element. */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

/** fill replaces node's children with those given, skipping null and false as el does (replaceChildren would print "null"). */
function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c != null && c !== false));
}

function debounce(fn, ms) {
  let t;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}

// ---------------------------------------------------------------- API

class APIError extends Error {
  constructor(status, body) {
    super((body && body.error) || `the relay answered ${status}`);
    this.status = status;
    this.code = body && body.code;
  }
}

async function api(method, path, body) {
  const opts = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, opts);
  } catch {
    throw new APIError(0, { error: 'the relay cannot be reached; check your connection' });
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { error: text };
    }
  }
  if (!res.ok) {
    if (res.status === 401 && path !== '/ui/login' && path !== '/ui/session') sessionEnded();
    throw new APIError(res.status, data);
  }
  return data;
}

// -------------------------------------------------------------- shell

const state = { session: null, page: null };

function toast(msg) {
  const t = $('#toast');
  t.textContent = msg;
  t.classList.add('show');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => t.classList.remove('show'), 2800);
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    // Not a secure context, or no permission: the old way.
  }
  const ta = el('textarea', { class: 'offscreen', 'aria-hidden': 'true', tabindex: '-1' });
  ta.value = text;
  document.body.append(ta);
  ta.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch {
    ok = false;
  }
  ta.remove();
  return ok;
}

function copyButton(text, label) {
  return el('button', {
    class: 'btn small', type: 'button', 'aria-label': label,
    onclick: async () => toast((await copyText(text)) ? 'Copied' : 'Copy failed: select the text and copy it'),
  }, 'Copy');
}

function crumbs(items) {
  $('#crumbs').replaceChildren(...items.map((it, i) => el('li', {},
    it.href && i < items.length - 1
      ? el('a', { href: it.href }, it.text)
      : el('span', { 'aria-current': i === items.length - 1 ? 'page' : null }, it.text))));
}

/** groupLabel shortens the default groups' names ("default:TOKEN:HOST"). */
// pausedText says when a paused group (its target refuses connections)
// sends its next probe: "target down, next try in 4 s".
function pausedText(agent) {
  const left = agent.next_try_at ? Math.max(0, Math.round((Date.parse(agent.next_try_at) - Date.now()) / 1000)) : 0;
  return `target down, next try in ${left} s`;
}

function groupLabel(name) {
  return name.startsWith('default:') ? `default (${name.slice(name.lastIndexOf(':') + 1)})` : name;
}

function fmtTime(iso, withDate = false) {
  const d = new Date(iso);
  const time = d.toLocaleTimeString(undefined, { hour12: false });
  if (!withDate && d.toDateString() === new Date().toDateString()) return time;
  return `${d.toLocaleDateString()} ${time}`;
}

function timeEl(iso, withDate) {
  return el('time', { datetime: iso, title: iso }, fmtTime(iso, withDate));
}

function ago(iso) {
  const s = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86400) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

function confirmDialog(text, okLabel) {
  const d = $('#confirm');
  $('#confirm-text').textContent = text;
  $('#confirm-ok').textContent = okLabel;
  d.returnValue = '';
  d.showModal();
  return new Promise((resolve) => d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true }));
}

function renderWho() {
  const s = state.session;
  $('#who').hidden = !s;
  if (!s) return;
  let label;
  if (s.admin) label = 'relay admin';
  else if (s.role === 'reader') label = `read key for ${s.channel}`;
  else label = `${s.team_name || s.team_id} · ${s.role}`;
  $('#who-label').textContent = label;
}

/** go navigates to hash, routing again when it is the current one. */
function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function sessionEnded() {
  if (!state.session) return;
  state.session = null;
  renderWho();
  go('#/signin/ended');
}

async function signOut() {
  try {
    await api('POST', '/ui/logout');
  } catch {
    // Signed out locally either way.
  }
  state.session = null;
  renderWho();
  go('#/signin');
}

function setPage(page, ...args) {
  if (state.page) state.page.unmount();
  state.page = page;
  const main = $('#main');
  main.replaceChildren();
  page.mount(main, ...args);
}

function parseHash() {
  const parts = location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 'signin') return { view: 'signin', reason: parts[1] || '' };
  if (parts[0] === 'c' && parts[1]) return { view: 'channel', channel: parts[1], event: parts[2] || null };
  return { view: 'channels' };
}

function route() {
  const r = parseHash();
  if (!state.session) {
    setPage(new SignInPage(), r.reason);
    return;
  }
  if (r.view === 'signin') {
    go('#/');
  } else if (r.view === 'channel') {
    if (state.page instanceof ChannelPage && state.page.id === r.channel) state.page.show(r.event);
    else setPage(new ChannelPage(r.channel), r.event);
  } else if (state.session.role === 'reader') {
    go(`#/c/${enc(state.session.channel)}`);
  } else {
    setPage(new ChannelsPage());
  }
}

function onKey(e) {
  if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return;
  if (document.querySelector('dialog[open]')) return;
  const t = e.target;
  if (t.closest && t.closest('input, textarea, select, [contenteditable]')) {
    if (e.key === 'Escape') t.blur();
    return;
  }
  if (e.key === '?' && state.session) {
    e.preventDefault();
    $('#help').showModal();
    return;
  }
  if (state.page && state.page.onKey) state.page.onKey(e);
}

// ------------------------------------------------------------ sign in

const signInReasons = {
  rejected: 'That token or read key was rejected. Check that you copied all of it and that it was not revoked.',
  unavailable: 'The relay could not check the token just now. Try again in a moment.',
  ended: 'Your session ended. Sign in again.',
};

class SignInPage {
  mount(main, reason) {
    crumbs([]);
    const input = el('input', {
      id: 'token', name: 'token', type: 'password', required: true, autocomplete: 'current-password',
      spellcheck: 'false', autocapitalize: 'off', placeholder: 'hr_… or rk_…',
    });
    const error = el('p', { id: 'signin-error', class: 'error', role: 'alert' }, signInReasons[reason] || '');
    error.hidden = !signInReasons[reason];
    const button = el('button', { class: 'btn primary', type: 'submit' }, 'Sign in');
    const form = el('form', { method: 'post', action: '/ui/login' },
      el('label', { for: 'token' }, 'Token or read key'), input, error, button);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      button.disabled = true;
      try {
        state.session = await api('POST', '/ui/login', { token: input.value.trim() });
        input.value = '';
        renderWho();
        go(location.hash.startsWith('#/signin') || !location.hash ? '#/' : location.hash);
      } catch (ex) {
        error.textContent = ex.status === 401 ? signInReasons.rejected : ex.message;
        error.hidden = false;
        input.select();
      } finally {
        button.disabled = false;
      }
    });
    main.append(el('section', { class: 'signin card', 'aria-labelledby': 'signin-title' },
      el('h1', { id: 'signin-title' }, 'Sign in to the inspector'),
      el('p', { class: 'muted' }, 'Use a hookrelay token, or the read key of one channel. The relay keeps your session for 12 hours in a cookie that scripts cannot read.'),
      form));
    input.focus();
  }

  unmount() {}
}

// ----------------------------------------------------------- channels

class ChannelsPage {
  mount(main) {
    crumbs([{ text: 'Channels' }]);
    const s = state.session;
    this.tbody = el('tbody', {}, el('tr', {}, el('td', { colspan: 5, class: 'empty' }, 'Loading…')));
    this.created = el('div', { class: 'card created', role: 'region', 'aria-label': 'New channel', tabindex: '-1' });
    this.created.hidden = true;
    main.append(el('section', { 'aria-labelledby': 'channels-title' },
      el('div', { class: 'page-head' },
        el('h1', { id: 'channels-title' }, 'Channels'),
        el('span', { class: 'muted' }, s.admin ? 'every team' : `team ${s.team_name || s.team_id}`)),
      s.can_manage ? this.createForm() : null,
      this.created,
      el('div', { class: 'card' },
        el('table', { class: 'channels', 'aria-labelledby': 'channels-title' },
          el('thead', {}, el('tr', {},
            el('th', { scope: 'col' }, 'Channel'), el('th', { scope: 'col' }, 'Ingress URL'),
            el('th', { scope: 'col' }, 'Agents'), el('th', { scope: 'col' }, 'Created'),
            el('th', { scope: 'col' }, el('span', { class: 'offscreen' }, 'Actions')))),
          this.tbody))));
    this.load();
  }

  unmount() {}

  createForm() {
    const name = el('input', { id: 'new-id', name: 'id', placeholder: 'random when empty', pattern: '[a-z0-9][a-z0-9_\\-]{2,63}', title: '3-64 of a-z, 0-9, - and _' });
    const ttl = el('input', { id: 'new-ttl', name: 'ttl', placeholder: 'never, or 1h, 30m' });
    const async = el('input', { id: 'new-async', name: 'async', type: 'checkbox' });
    const error = el('p', { class: 'error', role: 'alert' });
    error.hidden = true;
    const button = el('button', { class: 'btn primary', type: 'submit' }, 'Create channel');
    const form = el('form', { class: 'card create', 'aria-labelledby': 'create-title' },
      el('h2', { id: 'create-title' }, 'New channel'),
      el('div', { class: 'row' },
        el('label', { for: 'new-id' }, 'Name (optional)', name),
        el('label', { for: 'new-ttl' }, 'Deleted after (optional)', ttl),
        el('label', { class: 'check', for: 'new-async' }, async, 'Answer senders 202 at once'),
        button),
      error);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      error.hidden = true;
      button.disabled = true;
      const body = { async: async.checked };
      if (name.value.trim()) body.id = name.value.trim();
      if (ttl.value.trim()) body.ttl = ttl.value.trim();
      try {
        const ch = await api('POST', '/api/v1/channels', body);
        form.reset();
        this.showCreated(ch);
        this.load();
      } catch (ex) {
        error.textContent = ex.message;
        error.hidden = false;
      } finally {
        button.disabled = false;
      }
    });
    return form;
  }

  showCreated(ch) {
    fill(this.created,
      el('p', {}, 'Channel ', el('a', { href: `#/c/${enc(ch.id)}` }, el('strong', {}, ch.id)), ' is ready. Send webhooks to:'),
      el('div', { class: 'copyline' }, el('code', { id: 'created-url' }, ch.url), copyButton(ch.url, 'Copy the new ingress URL')),
      ch.read_key ? el('p', {}, 'Its read key opens this channel alone (for a teammate or a CI job). It is shown once:') : null,
      ch.read_key ? el('div', { class: 'copyline' }, el('code', { id: 'created-read-key' }, ch.read_key), copyButton(ch.read_key, 'Copy the read key')) : null,
      el('p', { class: 'muted' }, 'Forward them to your app with ', el('code', {}, `hookrelay connect ${ch.id} --to http://localhost:3000/webhooks`)));
    this.created.hidden = false;
    this.created.focus();
  }

  async load() {
    let channels;
    try {
      ({ channels } = await api('GET', '/api/v1/channels'));
    } catch (ex) {
      this.tbody.replaceChildren(el('tr', {}, el('td', { colspan: 5, class: 'empty' }, ex.message)));
      return;
    }
    if (!channels.length) {
      this.tbody.replaceChildren(el('tr', {}, el('td', { colspan: 5, class: 'empty' }, 'No channels yet.')));
      return;
    }
    channels.sort((a, b) => b.created_at.localeCompare(a.created_at));
    this.tbody.replaceChildren(...channels.map((ch) => el('tr', { 'data-channel': ch.id },
      el('td', {}, el('a', { href: `#/c/${enc(ch.id)}` }, ch.id), ch.async ? el('span', { class: 'muted' }, ' · async') : null),
      el('td', { class: 'url' }, el('div', { class: 'copyline' }, el('code', {}, ch.url), copyButton(ch.url, `Copy the ingress URL of ${ch.id}`))),
      el('td', {}, String(ch.agents)),
      el('td', {}, timeEl(ch.created_at, true)),
      el('td', {}, state.session.can_manage ? el('button', {
        class: 'btn small danger', type: 'button', 'aria-label': `Delete channel ${ch.id}`,
        onclick: () => this.remove(ch.id),
      }, 'Delete') : null))));
  }

  async remove(id) {
    const ok = await confirmDialog(`Delete channel ${id}? Its events and delivery history are deleted and its agents disconnected. Senders get 404 afterwards.`, 'Delete channel');
    if (!ok) return;
    try {
      await api('DELETE', `/api/v1/channels/${enc(id)}`);
      toast(`Deleted ${id}`);
    } catch (ex) {
      toast(ex.message);
    }
    this.load();
  }
}

// ------------------------------------------------------ channel page

const pageSize = 50;
const methods = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];

function statusOf(row) {
  const ev = row.ev;
  const ld = row.summary && row.summary.last_delivery;
  if (ev.state === 'rejected') return { text: 'rejected', cls: 's-err', title: ev.reject_reason || 'rejected at ingress' };
  if (ld && ld.status) return { text: String(ld.status), cls: `s-${Math.floor(ld.status / 100)}xx`, title: `${ld.status} from ${ld.group}` };
  if (ld && ld.error) return { text: 'failed', cls: 's-err', title: ld.error };
  if (ev.last_status) return { text: String(ev.last_status), cls: `s-${Math.floor(ev.last_status / 100)}xx`, title: '' };
  return { text: 'queued', cls: 's-none', title: 'not delivered yet' };
}

class ChannelPage {
  constructor(id) {
    this.id = id;
    this.rows = new Map(); // event id → {ev, summary, li}
    this.nextCursor = null;
    this.newest = null; // cursor of the newest event the API listed: sync reads after it
    this.selected = null;
    this.openId = null;
    this.groups = [];
    this.gen = 0; // list generation: a reload makes older answers stale
    this.detailGen = 0;
    this.timers = [];
    this.alive = true;
    this.filters = { q: '', method: '', status: '' };
  }

  async mount(main, eventId) {
    crumbs([{ text: 'Channels', href: '#/' }, { text: this.id }]);
    main.append(el('p', { class: 'muted' }, 'Loading…'));
    try {
      this.channel = await api('GET', `/api/v1/channels/${enc(this.id)}`);
    } catch (ex) {
      if (!this.alive) return;
      main.replaceChildren(el('section', { class: 'card', role: 'alert' },
        el('h1', {}, ex.status === 404 ? 'Channel not found' : 'Cannot load the channel'),
        el('p', {}, ex.status === 404 ? 'It does not exist, or it belongs to another team.' : ex.message),
        el('p', {}, el('a', { href: '#/' }, 'Back to the channels'))));
      return;
    }
    if (!this.alive) return;
    this.live = el('span', { class: 'live off', role: 'status' }, 'connecting…');
    this.agentsList = el('ul', { 'aria-label': 'Connected agents' });
    this.list = el('ul', { id: 'events', class: 'events', role: 'listbox', 'aria-label': 'Events, newest first' });
    this.more = el('div', { class: 'more' });
    this.detail = el('div', { class: 'detail-pane', id: 'detail', role: 'region', 'aria-label': 'Event details' });
    this.split = el('div', { class: 'split' },
      el('div', { class: 'list-pane' },
        el('div', { class: 'ev-head', 'aria-hidden': 'true' },
          el('span', {}, 'Time'), el('span', {}, 'Method'), el('span', {}, 'Path'), el('span', {}, 'Event'),
          el('span', {}, 'Status'), el('span', { class: 'c-dur' }, 'Took'), el('span', { class: 'c-size' }, 'Size')),
        this.list, this.more),
      this.detail);
    main.replaceChildren(el('section', { class: 'channel', 'aria-labelledby': 'channel-title' },
      el('div', { class: 'page-head' },
        el('h1', { id: 'channel-title' }, this.channel.id),
        this.live,
        el('div', { class: 'copyline' }, el('code', { id: 'ingress-url' }, this.channel.url), copyButton(this.channel.url, 'Copy the ingress URL'))),
      el('section', { class: 'agents', 'aria-labelledby': 'agents-title' },
        el('h2', { id: 'agents-title' }, 'Agents'), this.agentsList),
      this.filterForm(),
      this.split));
    this.list.addEventListener('click', (e) => {
      const li = e.target.closest('li[data-id]');
      if (li) this.open(li.dataset.id);
    });
    this.observer = new IntersectionObserver((entries) => {
      if (entries.some((x) => x.isIntersecting)) this.loadOlder();
    });
    this.observer.observe(this.more);
    this.connect();
    this.loaded = this.reload();
    this.pollAgents();
    this.show(eventId);
  }

  unmount() {
    this.alive = false;
    if (this.es) this.es.close();
    if (this.observer) this.observer.disconnect();
    for (const t of this.timers) clearTimeout(t);
  }

  later(fn, ms) {
    this.timers.push(setTimeout(() => {
      if (this.alive) fn();
    }, ms));
  }

  // -- filters and loading

  filterForm() {
    const q = el('input', { type: 'search', id: 'filter-q', placeholder: 'text in headers or body', 'aria-keyshortcuts': '/' });
    const method = el('select', { id: 'filter-method' }, el('option', { value: '' }, 'any'), methods.map((m) => el('option', { value: m }, m)));
    const status = el('input', { type: 'number', id: 'filter-status', min: 100, max: 599, placeholder: 'any' });
    const clear = el('button', { class: 'btn', type: 'reset' }, 'Clear');
    const form = el('form', { class: 'filters', role: 'search', 'aria-label': 'Filter events' },
      el('label', { for: 'filter-q' }, 'Search', q),
      el('label', { for: 'filter-method' }, 'Method', method),
      el('label', { for: 'filter-status' }, 'Status', status),
      clear);
    const apply = () => {
      const f = { q: q.value.trim(), method: method.value, status: status.value.trim() };
      if (f.q === this.filters.q && f.method === this.filters.method && f.status === this.filters.status) return;
      this.filters = f;
      this.loaded = this.reload();
    };
    const later = debounce(apply, 300);
    form.addEventListener('input', later);
    form.addEventListener('change', later);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      apply();
    });
    form.addEventListener('reset', () => setTimeout(apply, 0));
    this.filterInput = q;
    return form;
  }

  filtered() {
    return Boolean(this.filters.q || this.filters.method || this.filters.status);
  }

  query(extra) {
    const p = new URLSearchParams(extra);
    if (this.filters.q) p.set('q', this.filters.q);
    if (this.filters.method) p.set('method', this.filters.method);
    if (this.filters.status) p.set('status', this.filters.status);
    return `/api/v1/channels/${enc(this.id)}/events?${p}`;
  }

  async reload() {
    const gen = ++this.gen;
    this.nextCursor = null;
    this.more.replaceChildren('Loading…');
    let page;
    try {
      page = await api('GET', this.query({ limit: pageSize }));
    } catch (ex) {
      if (gen === this.gen) this.more.replaceChildren(ex.message);
      return;
    }
    if (gen !== this.gen || !this.alive) return;
    this.rows.clear();
    this.list.replaceChildren();
    this.add(page.events, false);
    this.newest = page.events.length ? page.events[0].cursor : null;
    this.nextCursor = page.next_cursor || null;
    this.renderMore();
    if (this.openId) this.select(this.openId, false);
    await this.summaries(page.events.map((e) => e.id));
  }

  async loadOlder() {
    if (!this.nextCursor || this.loadingOlder) return;
    this.loadingOlder = true;
    const gen = this.gen;
    try {
      const page = await api('GET', this.query({ limit: pageSize, before: this.nextCursor }));
      if (gen !== this.gen) return;
      this.add(page.events, false);
      this.nextCursor = page.next_cursor || null;
      this.renderMore();
      this.summaries(page.events.map((e) => e.id));
    } catch (ex) {
      toast(ex.message);
    } finally {
      this.loadingOlder = false;
    }
  }

  renderMore() {
    // Observing again reports whether the end of the list is in view now:
    // a short page on a tall screen loads the next one at once.
    if (this.observer) {
      this.observer.unobserve(this.more);
      this.observer.observe(this.more);
    }
    if (!this.rows.size) {
      this.more.replaceChildren(this.filtered() ? 'No event matches these filters.' : 'No events yet. Send a webhook to the ingress URL above; it shows up here at once.');
    } else if (this.nextCursor) {
      this.more.replaceChildren(el('button', { class: 'btn small', type: 'button', onclick: () => this.loadOlder() }, 'Load older events'));
    } else {
      this.more.replaceChildren('No older events.');
    }
  }

  /** sync reads the events newer than the newest shown (after a reconnect or a dropped message). */
  async sync() {
    if (this.syncing) {
      this.syncAgain = true;
      return;
    }
    this.syncing = true;
    try {
      do {
        this.syncAgain = false;
        const gen = this.gen;
        // Cursors are opaque: the newest one the API gave is the mark, and
        // events already shown live come again and are skipped.
        const after = this.newest;
        const page = await api('GET', this.query(after ? { after, limit: 200 } : { limit: 200 }));
        if (gen !== this.gen || !this.alive) return;
        if (after && page.events.length === 200) {
          this.loaded = this.reload(); // too many to fill the gap: start over
          return;
        }
        if (page.events.length) this.newest = page.events[0].cursor;
        this.add(page.events, true);
        this.renderMore();
        await this.summaries(page.events.map((e) => e.id));
      } while (this.syncAgain && this.alive);
    } catch (ex) {
      if (ex.status !== 401) toast(`Could not refresh the events: ${ex.message}`);
    } finally {
      this.syncing = false;
    }
  }

  async summaries(ids) {
    for (let i = 0; i < ids.length; i += 100) {
      const chunk = ids.slice(i, i + 100);
      if (!chunk.length) continue;
      let res;
      try {
        res = await api('GET', `/api/v1/channels/${enc(this.id)}/event-summaries?ids=${chunk.map(enc).join(',')}`);
      } catch {
        return; // the rows keep what the list said
      }
      for (const s of res.summaries) {
        const row = this.rows.get(s.id);
        if (row) {
          row.summary = s;
          this.renderRow(row);
        }
      }
    }
  }

  // -- rows

  /** add inserts events (any order) by the time they were received, newest first, skipping known ones. */
  add(events, fresh) {
    for (const ev of events) {
      if (this.rows.has(ev.id)) continue;
      const row = { ev, summary: null, li: null, key: '' };
      row.li = el('li', { role: 'option', id: `ev-${ev.id}`, 'data-id': ev.id, 'aria-selected': 'false', tabindex: '-1', class: fresh ? 'ev fresh' : 'ev' },
        el('span', { class: 'c-time' }, timeEl(ev.received_at)),
        el('span', { class: `c-method method m-${ev.method}` }, ev.method),
        el('span', { class: 'c-path', title: ev.path + (ev.query ? `?${ev.query}` : '') }, ev.path + (ev.query ? `?${ev.query}` : '')),
        el('span', { class: 'c-name' }),
        el('span', { class: 'c-status status' }),
        el('span', { class: 'c-dur' }),
        el('span', { class: 'c-size' }, formatBytes(ev.size)));
      if (ev.event_name) row.summary = { id: ev.id, event_name: ev.event_name, deliveries: 0 };
      this.rows.set(ev.id, row);
      row.key = timeKey(ev.received_at);
      let before = null;
      const last = this.list.lastElementChild;
      const older = !last || this.rows.get(last.dataset.id).key > row.key;
      for (const li of older ? [] : this.list.children) {
        if (this.rows.get(li.dataset.id).key < row.key) {
          before = li;
          break;
        }
      }
      this.list.insertBefore(row.li, before);
      this.renderRow(row);
    }
    this.fixTabStop();
  }

  renderRow(row) {
    const [, , , name, status, dur] = row.li.children;
    const st = statusOf(row);
    const ld = row.summary && row.summary.last_delivery;
    const eventName = (row.summary && row.summary.event_name) || '';
    name.textContent = eventName;
    name.title = eventName;
    status.textContent = st.text;
    status.className = `c-status status ${st.cls}`;
    status.title = st.title;
    dur.textContent = ld ? formatDuration(ld.duration_ms) : '';
    const ev = row.ev;
    if (ev.replay_of) {
      row.li.classList.add('replay');
      row.li.title = `edited replay of ${ev.replay_of}`;
    }
    row.li.setAttribute('aria-label', [
      `${ev.method} ${ev.path}${ev.query ? `?${ev.query}` : ''}`, eventName, ev.replay_of ? 'edited replay' : '', `status ${st.text}`,
      ld ? `took ${formatDuration(ld.duration_ms)}` : '', formatBytes(ev.size), `received ${fmtTime(ev.received_at)}`,
    ].filter(Boolean).join(', '));
  }

  fixTabStop() {
    const first = this.list.firstElementChild;
    const sel = this.selected && this.rows.get(this.selected);
    for (const li of this.list.children) li.tabIndex = -1;
    if (sel) sel.li.tabIndex = 0;
    else if (first) first.tabIndex = 0;
  }

  select(id, focus) {
    const prev = this.selected && this.rows.get(this.selected);
    if (prev) prev.li.setAttribute('aria-selected', 'false');
    this.selected = id;
    const row = this.rows.get(id);
    this.fixTabStop();
    if (!row) return;
    row.li.setAttribute('aria-selected', 'true');
    row.li.scrollIntoView({ block: 'nearest' });
    if (focus) row.li.focus({ preventScroll: true });
  }

  move(delta) {
    const lis = [...this.list.children];
    if (!lis.length) return;
    let i = lis.findIndex((li) => li.dataset.id === this.selected);
    i = i < 0 ? 0 : Math.min(lis.length - 1, Math.max(0, i + delta));
    this.select(lis[i].dataset.id, true);
    if (i >= lis.length - 3 && delta > 0) this.loadOlder();
  }

  open(id) {
    go(`#/c/${enc(this.id)}/${enc(id)}`);
  }

  show(eventId) {
    if (!this.detail) return; // still loading the channel: mount shows it
    if (!eventId) {
      this.openId = null;
      this.detailGen++;
      this.openEvent = null;
      this.detail.replaceChildren();
      this.split.classList.remove('open');
      const row = this.selected && this.rows.get(this.selected);
      if (row) row.li.focus({ preventScroll: true });
      return;
    }
    this.split.classList.add('open');
    this.select(eventId, false);
    this.renderDetail(eventId);
  }

  onKey(e) {
    const onRow = e.target.closest && e.target.closest('li[data-id]');
    switch (e.key) {
      case 'j':
      case 'ArrowDown':
        if (e.key === 'ArrowDown' && !onRow) return;
        e.preventDefault();
        this.move(1);
        break;
      case 'k':
      case 'ArrowUp':
        if (e.key === 'ArrowUp' && !onRow) return;
        e.preventDefault();
        this.move(-1);
        break;
      case 'Enter':
        if (this.selected && (onRow || e.target === document.body || e.target.id === 'main')) {
          e.preventDefault();
          this.open(this.selected);
        }
        break;
      case 'r':
        e.preventDefault();
        this.replay();
        break;
      case 'c':
        e.preventDefault();
        this.copyCurl();
        break;
      case 'e':
        if (!this.openId || !state.session.can_manage) return;
        e.preventDefault();
        this.toggleEditor();
        break;
      case '/':
        e.preventDefault();
        if (this.filterInput) this.filterInput.focus();
        break;
      case 'Escape':
        if (this.openId) go(`#/c/${enc(this.id)}`);
        break;
      default:
    }
  }

  // -- live stream

  setLive(on, text) {
    if (!this.live) return;
    this.live.className = `live ${on ? 'on' : 'off'}`;
    this.live.textContent = text;
  }

  connect() {
    const es = new EventSource(`/api/v1/channels/${enc(this.id)}/stream`);
    this.es = es;
    es.addEventListener('ready', async () => {
      this.setLive(true, 'live');
      await this.loaded;
      this.sync();
    });
    es.addEventListener('event', (m) => this.onLiveEvent(JSON.parse(m.data)));
    es.addEventListener('delivery', (m) => this.onLiveDelivery(JSON.parse(m.data)));
    es.addEventListener('resync', () => {
      this.sync();
      this.summaries([...this.rows.keys()].slice(0, 100));
    });
    es.addEventListener('end', (m) => {
      es.close();
      let reason = '';
      try {
        reason = JSON.parse(m.data).reason;
      } catch {
        reason = '';
      }
      this.setLive(false, reason || 'stream ended');
      this.reconnectLater(3000);
    });
    es.onerror = () => {
      this.setLive(false, 'reconnecting…');
      if (es.readyState === EventSource.CLOSED) this.reconnectLater(3000);
    };
  }

  /** reconnectLater checks the session (a 401 ends it) and opens the stream again. */
  reconnectLater(ms) {
    this.later(async () => {
      try {
        if (!(await api('GET', '/ui/session')).signed_in) {
          sessionEnded();
          return;
        }
      } catch (ex) {
        if (ex.status === 401) {
          sessionEnded();
          return;
        }
      }
      if (this.alive) this.connect();
    }, ms);
  }

  onLiveEvent(le) {
    if (this.filtered()) {
      this.syncSoon = this.syncSoon || debounce(() => this.sync(), 200);
      this.syncSoon();
      return;
    }
    this.add([{ ...le, attempts: 0, last_status: 0, delivered: false }], true);
    this.renderMore();
    if (le.replay_of && le.replay_of === this.openId) this.renderReplays();
  }

  onLiveDelivery(d) {
    const row = this.rows.get(d.event_id);
    if (row) {
      const s = row.summary || { id: d.event_id, deliveries: 0 };
      const last = s.last_delivery;
      if (!last || d.started_at >= last.started_at) s.last_delivery = d;
      s.deliveries = (s.deliveries || 0) + 1;
      row.summary = s;
      this.renderRow(row);
    }
    if (d.event_id === this.openId) {
      this.refreshSoon = this.refreshSoon || debounce(() => this.refreshDeliveries(), 150);
      this.refreshSoon();
    }
  }

  // -- agents

  async pollAgents() {
    if (!this.alive) return;
    if (!document.hidden) {
      try {
        const { agents } = await api('GET', `/api/v1/channels/${enc(this.id)}/agents`);
        this.renderAgents(agents);
      } catch (ex) {
        if (ex.status === 404) {
          this.setLive(false, 'channel deleted');
          return;
        }
      }
    }
    this.later(() => this.pollAgents(), 3000);
  }

  renderAgents(agents) {
    agents.sort((a, b) => a.group.localeCompare(b.group) || a.since.localeCompare(b.since));
    if (!agents.length) {
      this.agentsList.replaceChildren(el('li', { class: 'muted' }, 'none connected. Run ',
        el('code', {}, `hookrelay connect ${this.id} --to http://localhost:3000/webhooks`)));
    } else {
      this.agentsList.replaceChildren(...agents.map((a) => {
        const busy = a.in_flight > 0;
        const down = (a.targets || []).filter((t) => !t.up);
        const failing = down.map((t) => `target ${t.url} down: ${t.error || 'no answer'}`).join('; ');
        const seen = a.last_seen ? `, last seen ${ago(a.last_seen)} ago` : '';
        const paused = a.group_state === 'paused' ? pausedText(a) : '';
        const node = a.node ? `, on relay node ${a.node}` : '';
        const label = `${a.host || 'unknown host'}, group ${a.group}, version ${a.version || '?'}, connected since ${fmtTime(a.since, true)}${seen}${node}, ${busy ? `busy with ${a.in_flight}` : 'idle'}${failing ? `, ${failing}` : ''}${paused ? `, ${paused}: ${a.group_error || ''}` : ''}`;
        const cls = ['agent', busy && 'busy', (down.length || paused) && 'failing'].filter(Boolean).join(' ');
        return el('li', { class: cls, 'aria-label': label, title: label },
          el('strong', {}, a.host || '?'), ` · ${groupLabel(a.group)} · ${a.version || '?'} · ${ago(a.since)} · `,
          el('span', { class: 'state' }, busy ? `busy (${a.in_flight})` : 'idle'),
          a.last_seen ? ` · seen ${ago(a.last_seen)} ago` : '',
          a.node ? ` · node ${a.node}` : '',
          down.length ? el('span', { class: 'target-down' }, ` · target down: ${down.map((t) => t.url).join(', ')}`) : '',
          paused ? el('span', { class: 'target-down group-paused', title: a.group_error || '' }, ` · ${paused}`) : '');
      }));
    }
    const groups = [...new Set(agents.map((a) => a.group))].sort();
    if (groups.join('\n') !== this.groups.join('\n')) {
      this.groups = groups;
      this.fillGroups();
    }
  }

  fillGroups() {
    if (!this.groupSelect) return;
    const keep = this.groupSelect.value;
    this.groupSelect.replaceChildren(el('option', { value: '' }, 'all connected groups'),
      this.groups.map((g) => el('option', { value: g }, groupLabel(g))));
    if (this.groups.includes(keep)) this.groupSelect.value = keep;
  }

  // -- event view

  async renderDetail(id) {
    this.openId = id;
    const gen = ++this.detailGen;
    this.openEvent = null;
    this.detail.replaceChildren(el('p', { class: 'muted' }, 'Loading the event…'));
    let ev;
    let deliveries;
    let summary;
    try {
      [ev, { deliveries }, { summaries: [summary] }] = await Promise.all([
        api('GET', `/api/v1/events/${enc(id)}`),
        api('GET', `/api/v1/events/${enc(id)}/deliveries`),
        api('GET', `/api/v1/channels/${enc(this.id)}/event-summaries?ids=${enc(id)}`),
      ]);
    } catch (ex) {
      if (gen !== this.detailGen) return;
      this.detail.replaceChildren(el('div', { class: 'card', role: 'alert' },
        ex.status === 404 ? 'This event does not exist any more (retention may have deleted it).' : ex.message));
      return;
    }
    if (gen !== this.detailGen || !this.alive) return;
    this.openEvent = ev;
    const target = ev.path + (ev.query ? `?${ev.query}` : '');
    const name = summary && summary.event_name;
    this.groupSelect = el('select', { id: 'replay-group' });
    this.fillGroups();
    this.curlOut = el('pre', { class: 'code', id: 'curl-out', tabindex: '0', 'aria-label': 'curl command' });
    this.curlBox = el('details', { class: 'curl', open: true }, el('summary', {}, 'curl command'), this.curlOut);
    this.curlBox.hidden = true;
    this.deliveriesBox = el('section', { 'aria-labelledby': 'deliveries-title' });
    this.renderDeliveries(deliveries);
    this.editorBox = el('div', { class: 'editor', id: 'editor' });
    this.editorBox.hidden = true;
    this.replaysLine = el('p', { class: 'replays', id: 'edited-replays' });
    this.renderReplays();
    this.detail.replaceChildren(el('article', { class: 'event', 'aria-labelledby': 'event-title' },
      el('header', {},
        el('a', { class: 'back', href: `#/c/${enc(this.id)}` }, '← Events'),
        el('h2', { id: 'event-title', 'aria-label': `Request line: ${ev.method} ${target} HTTP/1.1` },
          el('span', { class: `method m-${ev.method}` }, ev.method), el('code', { class: 'reqline' }, `${target} HTTP/1.1`)),
        el('p', { class: 'meta' },
          timeEl(ev.received_at, true),
          el('span', {}, `from ${ev.remote_addr}`),
          el('span', {}, formatBytes(ev.size)),
          name ? el('span', { class: 'c-name', id: 'event-name' }, name) : null,
          ev.state === 'rejected' ? el('span', { class: 's-err' }, `rejected: ${ev.reject_reason}`) : null,
          ev.replay_of ? el('span', { id: 'replay-of' }, 'edited replay of ',
            el('a', { class: 'mono', href: `#/c/${enc(this.id)}/${enc(ev.replay_of)}` }, ev.replay_of)) : null,
          el('span', { class: 'mono' }, ev.id)),
        el('div', { class: 'actions' },
          el('label', { for: 'replay-group' }, 'Replay to', this.groupSelect),
          el('button', { class: 'btn primary', type: 'button', id: 'replay', 'aria-keyshortcuts': 'r', onclick: () => this.replay() }, 'Replay'),
          state.session.can_manage ? el('button', {
            class: 'btn', type: 'button', id: 'edit-replay', 'aria-keyshortcuts': 'e', 'aria-expanded': 'false', onclick: () => this.toggleEditor(),
          }, 'Edit and replay') : null,
          el('button', { class: 'btn', type: 'button', id: 'copy-curl', 'aria-keyshortcuts': 'c', onclick: () => this.copyCurl() }, 'Copy as curl'),
          ev.size ? el('a', { class: 'btn', href: `/api/v1/events/${enc(ev.id)}/body`, download: `${ev.id}.body` }, 'Download body') : null),
        this.replaysLine,
        this.curlBox,
        this.editorBox),
      el('section', { 'aria-labelledby': 'headers-title' },
        el('h3', { id: 'headers-title' }, `Headers (${ev.headers.length})`),
        kvTable(ev.headers.map((h) => [h.name, headerCell(h)]), 'Request headers', 'headers')),
      ev.query ? el('section', { 'aria-labelledby': 'query-title' },
        el('h3', { id: 'query-title' }, 'Query'),
        kvTable(parseForm(ev.query), 'Query parameters', 'query')) : null,
      bodySection(ev),
      this.deliveriesBox));
  }

  renderDeliveries(ds) {
    const items = ds.slice().reverse().map((d) => deliveryItem(d));
    let empty = null;
    if (!ds.length) {
      empty = el('p', { class: 'muted' }, this.openEvent && this.openEvent.state === 'rejected'
        ? 'Rejected at ingress: never delivered.'
        : 'Not delivered yet: no agent of this channel has taken it.');
    }
    fill(this.deliveriesBox,
      el('h3', { id: 'deliveries-title' }, `Deliveries (${ds.length})`),
      empty,
      items.length ? el('ol', { class: 'deliveries', id: 'deliveries', 'aria-label': 'Delivery attempts, newest first' }, items) : null);
  }

  async refreshDeliveries() {
    const id = this.openId;
    if (!id || !this.deliveriesBox) return;
    try {
      const { deliveries } = await api('GET', `/api/v1/events/${enc(id)}/deliveries`);
      if (id === this.openId) this.renderDeliveries(deliveries);
    } catch {
      // The next delivery message tries again.
    }
  }

  async replay() {
    const id = this.openId || this.selected;
    if (!id) return;
    const group = this.openId && this.groupSelect ? this.groupSelect.value : '';
    try {
      const res = await api('POST', `/api/v1/events/${enc(id)}/replay`, group ? { group } : {});
      toast(`Replaying to ${res.groups.length} group${res.groups.length === 1 ? '' : 's'}`);
    } catch (ex) {
      toast(ex.message);
    }
  }

  /** renderReplays links the open event to its edited replays among the loaded rows. */
  renderReplays() {
    if (!this.replaysLine || !this.openId) return;
    const replays = [...this.rows.values()].filter((r) => r.ev.replay_of === this.openId).map((r) => r.ev.id);
    this.replaysLine.hidden = !replays.length;
    this.replaysLine.replaceChildren(replays.length ? 'Edited replays: ' : '',
      ...replays.flatMap((id, i) => [i ? ', ' : '', el('a', { class: 'mono', href: `#/c/${enc(this.id)}/${enc(id)}` }, id)]));
  }

  toggleEditor() {
    const ev = this.openEvent;
    const button = $('#edit-replay');
    if (!ev || !this.editorBox || !button) return;
    if (!this.editorBox.hidden) {
      this.editorBox.hidden = true;
      button.setAttribute('aria-expanded', 'false');
      return;
    }
    this.renderEditor(ev);
    this.editorBox.hidden = false;
    button.setAttribute('aria-expanded', 'true');
    $('#edit-headers').focus();
  }

  /** renderEditor shows the request's headers and body for editing, with the replay options. */
  renderEditor(ev) {
    const headers = el('textarea', { id: 'edit-headers', rows: Math.min(16, ev.headers.length + 2), spellcheck: 'false', wrap: 'off', class: 'code' });
    headers.value = ev.headers.map((h) => `${h.name}: ${h.value}`).join('\n');
    const binary = ev.body_encoding === 'base64';
    const text = binary ? '' : (ev.body || '');
    const bodyRows = Math.min(16, Math.max(4, text.split('\n').length + 1));
    const body = el('textarea', { id: 'edit-body', rows: bodyRows, spellcheck: 'false', class: 'code', disabled: binary });
    body.value = text;
    const original = body.value; // as the browser holds it (line ends become \n)
    const resign = el('input', { id: 'edit-resign', type: 'checkbox' });
    const resignNote = el('span', { class: 'note', id: 'edit-resign-note' }, 'Checking the channel’s signing secret…');
    const error = el('p', { class: 'error', role: 'alert', id: 'edit-error' });
    error.hidden = true;
    const result = el('p', { id: 'edit-result', role: 'status' });
    const send = el('button', { class: 'btn primary', type: 'submit', id: 'edit-send' }, 'Replay edited');
    const form = el('form', { class: 'edit-form', 'aria-labelledby': 'edit-title' },
      el('h3', { id: 'edit-title' }, 'Edit and replay'),
      el('p', { class: 'note' }, 'The edited request is stored as a new event, linked to this one, and delivered to every group of the channel. Method, path and query stay as they are.'),
      el('label', { for: 'edit-headers' }, 'Headers, one per line as Name: value, in the order they are sent', headers),
      el('label', { for: 'edit-body' }, binary ? `Body (binary, ${formatBytes(ev.size)}: sent as it is)` : 'Body (sent byte for byte as typed; left alone, it is the original)', body),
      el('label', { class: 'check', for: 'edit-resign' }, resign, 'Re-sign with the channel’s signing secret (now)'),
      resignNote,
      el('div', { class: 'actions' }, send,
        el('button', { class: 'btn', type: 'button', onclick: () => this.toggleEditor() }, 'Cancel')),
      error, result);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.submitEdit(ev, { headers, body, original, resign, error, result, send });
    });
    this.editorBox.replaceChildren(form);
    resign.disabled = true;
    api('GET', `/api/v1/channels/${enc(this.id)}`).then((ch) => {
      resign.disabled = !ch.verify;
      resignNote.textContent = ch.verify
        ? `Signs like ${ch.verify} does, so the app’s verification accepts the edited body.`
        : 'This channel verifies no signature, so there is no secret to sign with.';
    }, (ex) => { resignNote.textContent = ex.message; });
  }

  async submitEdit(ev, f) {
    f.error.hidden = true;
    const headers = [];
    const lines = f.headers.value.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i].replace(/\r$/, '');
      if (!line.trim()) continue;
      const colon = line.indexOf(':');
      if (colon <= 0) {
        f.error.textContent = `Header line ${i + 1} is not Name: value: ${line}`;
        f.error.hidden = false;
        f.headers.focus();
        return;
      }
      headers.push({ name: line.slice(0, colon).trim(), value: line.slice(colon + 1).trim() });
    }
    const edits = { headers, resign: f.resign.checked };
    if (!f.body.disabled && f.body.value !== f.original) edits.body = f.body.value;
    f.send.disabled = true;
    try {
      const res = await api('POST', `/api/v1/events/${enc(ev.id)}/replay`, edits);
      const to = res.groups.length ? `delivering it to ${res.groups.length} group${res.groups.length === 1 ? '' : 's'}` : 'queued until an agent connects';
      f.result.replaceChildren('Sent as event ', el('a', { class: 'mono', id: 'edit-result-link', href: `#/c/${enc(this.id)}/${enc(res.event_id)}` }, res.event_id), `, ${to}.`);
      toast(`Replayed as ${res.event_id}`);
    } catch (ex) {
      f.error.textContent = ex.message;
      f.error.hidden = false;
    } finally {
      f.send.disabled = false;
    }
  }

  async copyCurl() {
    const ev = this.openEvent;
    if (!ev) return;
    const cmd = curlCommand(ev, this.channel.url);
    this.curlOut.textContent = cmd;
    this.curlBox.hidden = false;
    this.curlBox.open = true;
    const ok = await copyText(cmd);
    toast(ok ? 'Copied the curl command' : 'Select the command below and copy it');
  }
}

// headerCell shows a header value; one that is not UTF-8 is escaped
// (headerText) and marked, since what is shown is not the bytes themselves.
function headerCell(h) {
  if (!h.value_base64) return h.value;
  return el('span', {
    class: 'raw-bytes',
    title: 'Not UTF-8: bytes shown as \\xHH. The API gives the exact bytes in value_base64.',
  }, headerText(h));
}

function kvTable(pairs, label, id) {
  return el('table', { class: 'kv', 'aria-label': label, id },
    el('tbody', {}, pairs.map(([k, v]) => el('tr', {}, el('th', { scope: 'row' }, k), el('td', {}, v)))));
}

const maxPretty = 1 << 20; // larger bodies are shown raw, cut
const maxShown = 256 << 10;

function jsonNode(segs) {
  const pre = el('pre', { class: 'code json', id: 'body-pretty', tabindex: '0', 'aria-label': 'Body, formatted JSON' });
  if (segs.length > 50000) {
    pre.textContent = segmentsText(segs);
    return pre;
  }
  const frag = document.createDocumentFragment();
  for (const s of segs) {
    if (s.t === 'ws' || s.t === 'punct') frag.append(s.s);
    else frag.append(el('span', { class: `j-${s.t}` }, s.s));
  }
  pre.append(frag);
  return pre;
}

function bodyViews(ev) {
  const kind = bodyKind(ev);
  const raw = () => {
    if (kind === 'binary') return el('pre', { class: 'code hex', id: 'body-raw', tabindex: '0', 'aria-label': 'Body as a hex dump' }, hexDump(bodyBytes(ev)));
    const text = ev.body || '';
    const cut = text.length > maxShown;
    return el('div', {},
      el('pre', { class: 'code', id: 'body-raw', tabindex: '0', 'aria-label': 'Body as received' }, cut ? text.slice(0, maxShown) : text),
      cut ? el('p', { class: 'note' }, `Showing the first ${formatBytes(maxShown)}; download the body for all of it.`) : null);
  };
  let pretty = null;
  if (ev.size <= maxPretty) {
    if (kind === 'json') pretty = () => jsonNode(prettyJSON(ev.body));
    if (kind === 'form') pretty = () => kvTable(parseForm(ev.body), 'Form fields', 'body-pretty');
    if (kind === 'xml') pretty = () => el('pre', { class: 'code', id: 'body-pretty', tabindex: '0', 'aria-label': 'Body, indented XML' }, prettyXML(ev.body));
  }
  return { kind, raw, pretty };
}

function bodySection(ev) {
  const ctype = headerValue(ev.headers, 'Content-Type');
  const sec = el('section', { 'aria-labelledby': 'body-title' });
  const head = el('div', { class: 'body-head' },
    el('h3', { id: 'body-title' }, 'Body'),
    el('span', { class: 'muted' }, [ctype || 'no content type', formatBytes(ev.size)].join(' · ')));
  if (!ev.size) {
    sec.append(head, el('p', { class: 'muted' }, 'No body.'));
    return sec;
  }
  const { kind, raw, pretty } = bodyViews(ev);
  const box = el('div', {});
  sec.append(head, box);
  if (!pretty) {
    box.append(raw());
    if (kind === 'binary') box.append(el('p', { class: 'note' }, 'Binary body, shown as hex. Download it for the bytes.'));
    return sec;
  }
  const bPretty = el('button', { class: 'btn small', type: 'button', 'aria-pressed': 'true' }, `Pretty ${kind.toUpperCase()}`);
  const bRaw = el('button', { class: 'btn small', type: 'button', 'aria-pressed': 'false' }, 'Raw');
  const showView = (isPretty) => {
    bPretty.setAttribute('aria-pressed', String(isPretty));
    bRaw.setAttribute('aria-pressed', String(!isPretty));
    box.replaceChildren(isPretty ? pretty() : raw());
  };
  bPretty.addEventListener('click', () => showView(true));
  bRaw.addEventListener('click', () => showView(false));
  head.append(el('div', { class: 'actions', role: 'group', 'aria-label': 'Body view' }, bPretty, bRaw));
  showView(true);
  return sec;
}

function deliveryItem(d) {
  let status;
  if (d.status) status = el('span', { class: `status s-${Math.floor(d.status / 100)}xx` }, String(d.status));
  else if (d.error) status = el('span', { class: 'status s-err' }, 'failed');
  else status = el('span', { class: 'status s-none' }, 'no answer');
  const body = d.response_body || '';
  let bodyNode = null;
  if (body) {
    let node;
    if (d.response_body_encoding === 'base64') {
      node = el('pre', { class: 'code hex' }, hexDump(bodyBytes({ body, body_encoding: 'base64' })));
    } else {
      const segs = body.length <= maxPretty ? prettyJSON(body) : null;
      node = segs ? jsonNode(segs) : el('pre', { class: 'code' }, body);
      node.removeAttribute('id');
      node.setAttribute('aria-label', 'Response body');
    }
    bodyNode = el('details', { open: true }, el('summary', {}, `Response body (${formatBytes(bodyBytes({ body, body_encoding: d.response_body_encoding }).length)})`), node);
  }
  return el('li', { class: 'delivery', 'data-attempt': d.attempt },
    el('div', { class: 'line' },
      el('strong', {}, `Attempt ${d.attempt}`),
      status,
      el('span', {}, formatDuration(d.duration_ms)),
      el('span', { class: 'muted', title: d.group }, `group ${groupLabel(d.group)}`),
      el('span', { class: 'muted mono' }, `agent ${d.agent}`),
      timeEl(d.started_at, true)),
    d.error ? el('p', { class: 'error' }, d.error) : null,
    d.response_headers && d.response_headers.length
      ? el('details', {}, el('summary', {}, `Response headers (${d.response_headers.length})`),
        kvTable(d.response_headers.map((h) => [h.name, headerCell(h)]), 'Response headers'))
      : null,
    bodyNode);
}

// --------------------------------------------------------------- boot

async function boot() {
  $('#signout').addEventListener('click', signOut);
  $('#help-button').addEventListener('click', () => $('#help').showModal());
  window.addEventListener('hashchange', route);
  document.addEventListener('keydown', onKey);
  try {
    const s = await api('GET', '/ui/session');
    state.session = s.signed_in ? s : null;
  } catch (ex) {
    state.session = null;
    if (ex.status && ex.status !== 401) toast(ex.message);
  }
  renderWho();
  route();
}

boot();
