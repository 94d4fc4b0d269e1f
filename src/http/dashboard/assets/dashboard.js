// docker-cd dashboard: live updates from /api/events, the grid's filter, and the refresh and
// drift-acknowledge buttons. Plain JavaScript served from the binary; no build step.
//
// Safety: values from the server are written with textContent and attributes only, never
// parsed as HTML, except the stack page, which is fetched again whole from the server (where
// askama escaped it) and swapped in. No inline handlers: the page's CSP allows this file only.
//
// fillCard() is the twin of CardView in src/http/dashboard/mod.rs: both render a stack record into
// the same card markup. Change them together.
'use strict';

(() => {
  const body = document.body;
  const page = body.dataset.page;
  const tokenRequired = body.dataset.tokenRequired === 'true';
  const TOKEN_KEY = 'docker-cd.apiToken';
  const SHORT_REVISION = 12;

  // ---------------------------------------------------------------------------------------
  // Formatting (the same rules as the server's)

  /** `2026-11-28T16:22:37Z` → `2026-11-28 16:22:37 UTC`. */
  function stampText(iso, absent) {
    return iso ? iso.replace('T', ' ').replace('Z', ' UTC') : absent;
  }

  function shortRevision(revision, absent) {
    return revision ? revision.slice(0, SHORT_REVISION) : absent;
  }

  function firstLine(message) {
    return message ? message.split(/\r?\n/)[0].trim() : '';
  }

  /** `refresh started` → `Refresh started.` */
  function sentence(text) {
    return `${text.charAt(0).toUpperCase()}${text.slice(1)}.`;
  }

  /** Sets an element's text and hides it when there is none. */
  function optional(element, text) {
    element.textContent = text;
    element.hidden = !text;
  }

  function setTime(element, iso, absent) {
    element.dateTime = iso || '';
    element.textContent = stampText(iso, absent);
  }

  // ---------------------------------------------------------------------------------------
  // The header: refresh status

  function fillRefresh(r) {
    const field = (name) => document.querySelector(`[data-refresh-field="${name}"]`);
    const badge = field('status');
    badge.textContent = r.refreshStatus;
    badge.dataset.status = r.refreshStatus;
    const revision = field('revision');
    revision.textContent = shortRevision(r.revision, 'not read yet');
    revision.title = r.revision || '';
    field('commit-message').textContent = firstLine(r.commitMessage);
    field('trigger').textContent = r.trigger ? `${r.trigger} refresh` : '';
    setTime(field('refreshed-at'), r.refreshedAt, '');
    optional(field('error'), r.refreshError || '');
    const warnings = r.warnings || [];
    const list = field('warnings');
    list.replaceChildren(...warnings.map((w) => {
      const item = document.createElement('li');
      item.textContent = w;
      return item;
    }));
    list.hidden = warnings.length === 0;
  }

  // ---------------------------------------------------------------------------------------
  // Notices and the API token

  const notice = document.getElementById('notice');
  let noticeTimer = null;

  function showNotice(kind, text) {
    notice.dataset.kind = kind;
    notice.textContent = text;
    notice.hidden = false;
    clearTimeout(noticeTimer);
    if (kind !== 'error') {
      noticeTimer = setTimeout(() => { notice.hidden = true; }, 8000);
    }
  }

  // The token lives in sessionStorage: it survives reloads of this tab, is not shared with
  // other tabs, and is gone when the tab closes. If storage is unavailable, in memory only.
  let memoryToken = '';

  function storedToken() {
    try {
      return sessionStorage.getItem(TOKEN_KEY) || '';
    } catch {
      return memoryToken;
    }
  }

  function storeToken(token) {
    memoryToken = token;
    try {
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      else sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      // in memory only
    }
    document.getElementById('forget-token').hidden = !token;
  }

  /** Asks the operator for the token; resolves to true when one was entered. */
  function askToken(message) {
    const dialog = document.getElementById('token-dialog');
    const input = document.getElementById('token-input');
    optional(document.getElementById('token-error'), message);
    input.value = '';
    dialog.returnValue = '';
    return new Promise((resolve) => {
      dialog.addEventListener('close', () => {
        const token = input.value.trim();
        input.value = '';
        if (dialog.returnValue === 'save' && token) {
          storeToken(token);
          resolve(true);
        } else {
          resolve(false);
        }
      }, { once: true });
      dialog.showModal();
      input.focus();
    });
  }

  /** POSTs to the API with the bearer token when there is one; asks for it on 401. */
  async function send(url, payload, button, describe) {
    if (tokenRequired && !storedToken() && !(await askToken(''))) {
      showNotice('error', 'Not sent: this instance needs its API token.');
      return;
    }
    button.disabled = true;
    try {
      for (;;) {
        const headers = { Accept: 'application/json' };
        const token = storedToken();
        if (token) headers.Authorization = `Bearer ${token}`;
        const init = { method: 'POST', headers, cache: 'no-store' };
        if (payload) {
          headers['Content-Type'] = 'application/json';
          init.body = JSON.stringify(payload);
        }
        const response = await fetch(url, init);
        let answer = {};
        try {
          answer = await response.json();
        } catch {
          // not JSON: the status line says enough
        }
        if (response.status === 401) {
          storeToken('');
          if (await askToken('The API token was rejected. Enter it again.')) continue;
          showNotice('error', 'Not sent: this instance needs its API token.');
          return;
        }
        if (!response.ok) {
          showNotice('error', answer.error || `${response.status} ${response.statusText}`);
          return;
        }
        showNotice('ok', describe(answer));
        return;
      }
    } catch (error) {
      showNotice('error', `Request failed: ${error.message}`);
    } finally {
      button.disabled = false;
    }
  }

  document.getElementById('refresh-button').addEventListener('click', (event) => {
    send('/api/refresh', null, event.currentTarget,
      (answer) => sentence(answer.message || 'refresh requested'));
  });

  document.getElementById('forget-token').addEventListener('click', () => {
    storeToken('');
    showNotice('ok', 'The API token was forgotten.');
  });
  document.getElementById('forget-token').hidden = !storedToken();

  // Acknowledge buttons exist on cards and on the stack page, and are re-created as those
  // change: one delegated listener.
  document.addEventListener('click', (event) => {
    const button = event.target.closest('[data-action="ack"]');
    if (!button) return;
    const path = button.dataset.path;
    send('/api/reconcile/ack', { path }, button,
      () => `Drift of ${path} acknowledged: it is re-applied from Git.`);
  });

  // ---------------------------------------------------------------------------------------
  // The grid

  const grid = document.getElementById('grid');
  const cardTemplate = document.getElementById('card-template');
  const records = new Map();
  const cards = new Map();
  const filter = { status: '', health: '', q: '' };

  function fillCard(card, rec) {
    const field = (name) => card.querySelector(`[data-field="${name}"]`);
    card.dataset.path = rec.path;
    card.dataset.status = rec.status;
    card.dataset.health = rec.health || '';
    const link = field('path');
    link.textContent = rec.path;
    link.setAttribute('href', `/stacks/${encodeURIComponent(rec.path)}`);
    const badge = field('status');
    badge.textContent = rec.status;
    badge.dataset.status = rec.status;
    const health = field('health');
    health.textContent = rec.health || '';
    health.dataset.health = rec.health || '';
    health.title = rec.healthMessage || '';
    optional(field('project'),
      rec.projectName && rec.projectName !== rec.path ? `project ${rec.projectName}` : '');
    field('not-in-git').hidden = rec.inGit;
    const running = rec.containersRunning || 0;
    const total = rec.containersTotal || 0;
    field('containers').textContent = `${running}/${total}`;
    const meter = field('containers-meter');
    meter.max = Math.max(total, 1);
    meter.value = running;
    const revision = field('revision');
    revision.textContent = shortRevision(rec.syncedRevision, '—');
    revision.title = rec.syncedRevision || '';
    field('commit-message').textContent = firstLine(rec.syncedCommitMessage);
    setTime(field('synced-at'), rec.syncedAt, 'never');
    const drifted = rec.status === 'drifted';
    optional(field('drift'), drifted ? (rec.drift || '') : '');
    optional(field('error'), rec.error || rec.lastSyncError || '');
    optional(field('warnings'), (rec.warnings || []).join('; '));
    const ack = card.querySelector('[data-action="ack"]');
    ack.dataset.path = rec.path;
    ack.hidden = !drifted;
  }

  /** The same test as GridQuery::matches on the server. */
  function matches(card) {
    const q = filter.q.trim().toLowerCase();
    return (!filter.status || card.dataset.status === filter.status)
      && (!filter.health || card.dataset.health === filter.health)
      && (!q || card.dataset.path.toLowerCase().includes(q));
  }

  /** Updates or creates a card; returns true when it is new (and not yet in the grid). */
  function upsertCard(rec) {
    records.set(rec.path, rec);
    let card = cards.get(rec.path);
    const created = !card;
    if (created) {
      card = cardTemplate.content.firstElementChild.cloneNode(true);
      cards.set(rec.path, card);
    }
    fillCard(card, rec);
    card.hidden = !matches(card);
    return created;
  }

  /** Puts a new card in its place: the server's order, by path. */
  function placeCard(path) {
    let next = null;
    for (const other of grid.children) {
      if (other.dataset.path > path) {
        next = other;
        break;
      }
    }
    grid.insertBefore(cards.get(path), next);
  }

  function removeCard(path) {
    records.delete(path);
    const card = cards.get(path);
    if (card) card.remove();
    cards.delete(path);
  }

  /** Chip counts, container totals and the empty-grid message. */
  function updateSummary() {
    const counts = new Map();
    const healthCounts = new Map();
    let running = 0;
    let total = 0;
    for (const rec of records.values()) {
      counts.set(rec.status, (counts.get(rec.status) || 0) + 1);
      healthCounts.set(rec.health, (healthCounts.get(rec.health) || 0) + 1);
      running += rec.containersRunning || 0;
      total += rec.containersTotal || 0;
    }
    for (const count of document.querySelectorAll('[data-count]')) {
      const status = count.dataset.count;
      count.textContent = String(status ? (counts.get(status) || 0) : records.size);
    }
    for (const count of document.querySelectorAll('[data-health-count]')) {
      const health = count.dataset.healthCount;
      count.textContent = String(health ? (healthCounts.get(health) || 0) : records.size);
    }
    document.getElementById('containers-total').textContent = `${running}/${total}`;
    const empty = document.getElementById('empty');
    const visible = [...cards.values()].some((card) => !card.hidden);
    const reason = cards.size === 0 ? 'none' : (visible ? '' : 'filter');
    empty.dataset.reason = reason;
    optional(empty, reason === 'none'
      ? 'No stacks: the deploy dir holds none, or the first refresh has not finished.'
      : (reason === 'filter' ? 'No stack matches the filter.' : ''));
  }

  function applyFilter() {
    for (const card of cards.values()) card.hidden = !matches(card);
    for (const chip of document.querySelectorAll('[data-filter-status]')) {
      chip.setAttribute('aria-pressed', String(chip.dataset.filterStatus === filter.status));
    }
    for (const chip of document.querySelectorAll('[data-filter-health]')) {
      chip.setAttribute('aria-pressed', String(chip.dataset.filterHealth === filter.health));
    }
    const params = new URLSearchParams();
    if (filter.status) params.set('status', filter.status);
    if (filter.health) params.set('health', filter.health);
    if (filter.q) params.set('q', filter.q);
    const query = params.toString();
    history.replaceState(null, '', query ? `/?${query}` : '/');
    updateSummary();
  }

  function setupGrid() {
    for (const card of grid.querySelectorAll('.card')) cards.set(card.dataset.path, card);
    const params = new URLSearchParams(location.search);
    const statuses = [...document.querySelectorAll('[data-filter-status]')]
      .map((chip) => chip.dataset.filterStatus);
    const status = params.get('status') || '';
    filter.status = statuses.includes(status) ? status : '';
    const healths = [...document.querySelectorAll('[data-filter-health]')]
      .map((chip) => chip.dataset.filterHealth);
    const health = params.get('health') || '';
    filter.health = healths.includes(health) ? health : '';
    filter.q = params.get('q') || '';
    const search = document.getElementById('search');
    search.value = filter.q;
    search.addEventListener('input', () => {
      filter.q = search.value;
      applyFilter();
    });
    document.getElementById('filters').addEventListener('submit', (event) => {
      event.preventDefault();
      if (event.submitter && event.submitter.dataset.filterStatus !== undefined) {
        filter.status = event.submitter.dataset.filterStatus;
      }
      if (event.submitter && event.submitter.dataset.filterHealth !== undefined) {
        filter.health = event.submitter.dataset.filterHealth;
      }
      applyFilter();
    });
  }

  const gridEvents = {
    snapshot(list) {
      const paths = new Set(list.map((rec) => rec.path));
      for (const path of [...cards.keys()]) {
        if (!paths.has(path)) removeCard(path);
      }
      let created = 0;
      for (const rec of list) created += upsertCard(rec) ? 1 : 0;
      // New cards (after a reconnect): order the whole grid once.
      if (created > 0) grid.append(...[...cards.keys()].sort().map((path) => cards.get(path)));
      updateSummary();
    },
    upsert(rec) {
      if (upsertCard(rec)) placeCard(rec.path);
      updateSummary();
    },
    remove(path) {
      removeCard(path);
      updateSummary();
    },
  };

  // ---------------------------------------------------------------------------------------
  // The stack page: fetched again from the server whenever its stack changes.

  const stackPath = body.dataset.stackPath;
  let reloading = false;
  let reloadAgain = false;
  let firstSnapshot = true;

  function markRemoved() {
    const removed = document.getElementById('removed');
    if (removed) removed.hidden = false;
  }

  async function reloadDetail() {
    if (reloading) {
      reloadAgain = true;
      return;
    }
    reloading = true;
    try {
      do {
        reloadAgain = false;
        const response = await fetch(location.pathname, {
          headers: { Accept: 'text/html' },
          cache: 'no-store',
        });
        if (response.status === 404) {
          markRemoved();
          return;
        }
        if (!response.ok) return;
        const doc = new DOMParser().parseFromString(await response.text(), 'text/html');
        const fresh = doc.getElementById('stack-detail');
        const current = document.getElementById('stack-detail');
        if (fresh && current) current.replaceWith(document.adoptNode(fresh));
      } while (reloadAgain);
    } catch {
      // The connection banner tells about network trouble.
    } finally {
      reloading = false;
    }
  }

  const stackEvents = {
    snapshot(list) {
      // The page was rendered just before the first snapshot; later ones follow a reconnect.
      const first = firstSnapshot;
      firstSnapshot = false;
      if (!list.some((rec) => rec.path === stackPath)) markRemoved();
      else if (!first) reloadDetail();
    },
    upsert(rec) {
      if (rec.path === stackPath) reloadDetail();
    },
    remove(path) {
      if (path === stackPath) markRemoved();
    },
  };

  // ---------------------------------------------------------------------------------------
  // The event stream, with a banner while it is down

  const banner = document.getElementById('connection');
  let handlers = null;
  let lost = false;
  let lastUpdate = null;
  let retryDelay = 1000;
  let retryTimer = null;
  let restoredTimer = null;

  function setBanner(state, text) {
    banner.dataset.state = state;
    banner.textContent = text;
    banner.hidden = state === 'connected' || state === 'connecting';
    body.classList.toggle('stale', state === 'lost');
  }

  function connect() {
    const source = new EventSource('/api/events');
    source.addEventListener('open', () => { retryDelay = 1000; });
    source.addEventListener('error', () => {
      if (!lost) {
        lost = true;
        clearTimeout(restoredTimer);
        const since = lastUpdate ? ` The page shows the state of ${lastUpdate.toLocaleTimeString()}.` : '';
        setBanner('lost', `Live updates lost: reconnecting…${since}`);
      }
      // The browser retries by itself unless the stream failed for good (CLOSED).
      if (source.readyState === EventSource.CLOSED) {
        source.close();
        clearTimeout(retryTimer);
        retryTimer = setTimeout(connect, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 30000);
      }
    });
    const on = (name, handle) => source.addEventListener(name, (event) => {
      lastUpdate = new Date();
      handle(JSON.parse(event.data));
    });
    // The first event of every connection: the page is up to date again.
    on('stack.snapshot', (list) => {
      if (handlers) handlers.snapshot(list);
      if (lost) {
        lost = false;
        setBanner('restored', 'Live updates restored.');
        clearTimeout(restoredTimer);
        restoredTimer = setTimeout(() => setBanner('connected', ''), 4000);
      } else if (banner.dataset.state !== 'restored') {
        setBanner('connected', '');
      }
    });
    on('stack.upsert', (rec) => { if (handlers) handlers.upsert(rec); });
    on('stack.delete', (data) => { if (handlers) handlers.remove(data.path); });
    on('refresh.status', fillRefresh);
  }

  if (page === 'grid') {
    setupGrid();
    handlers = gridEvents;
  } else if (page === 'stack') {
    handlers = stackEvents;
  }
  connect();
})();
