// docker-cd dashboard: live updates from /api/events, the grid's filter, the refresh and
// drift-acknowledge buttons, the operator's buttons of the stack page (sync now, rollback,
// suspend, resume, unpin, check images), its live deployment history and its diff. Plain
// JavaScript served from the binary; no build step.
//
// Safety: values from the server are written with textContent and attributes only, never
// parsed as HTML, except the stack page, which is fetched again whole from the server (where
// askama escaped it) and swapped in. No inline handlers: the page's CSP allows this file only.
//
// fillCard() is the twin of CardView in src/http/dashboard/mod.rs: both render a stack record into
// the same card markup; fillDeployment() is the twin of DeploymentRow. Change them together.
'use strict';

(() => {
  const body = document.body;
  const page = body.dataset.page;
  const tokenRequired = body.dataset.tokenRequired === 'true';
  const TOKEN_KEY = 'docker-cd.apiToken';
  const SHORT_REVISION = 12;
  const PIN_REVISION = 7;

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

  /** `850 ms`, `4.2 s`, `3 min 5 s`: format_duration on the server. */
  function durationText(ms) {
    if (ms < 1000) return `${ms} ms`;
    if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
    const secs = Math.floor(ms / 1000);
    return `${Math.floor(secs / 60)} min ${secs % 60} s`;
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
    // A diff refused for want of the token is asked for again once there is one.
    if (token && document.getElementById('stack-diff')) loadDiff();
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

  // The operator's buttons of the stack page: POST /api/stacks/{path}/{action}, the answer or
  // the error in the notice. The page follows the change through the event stream.
  const operations = {
    sync: (path) => `Sync of ${path} queued: it is re-applied now, even if in sync.`,
    rollback: (path, answer) => `Rollback of ${path} to ${shortRevision(answer.revision, '?')} queued; `
      + 'the stack is pinned there until it is unpinned.',
    unpin: (path) => `${path} unpinned: it follows Git again.`,
    suspend: (path) => `${path} suspended: it is never synced, reverted or removed until resumed.`,
    resume: (path) => `${path} resumed: the next sync applies what differs.`,
  };

  document.addEventListener('click', (event) => {
    const button = event.target.closest('[data-action]');
    if (!button || !Object.hasOwn(operations, button.dataset.action)) return;
    const action = button.dataset.action;
    const path = button.dataset.path || body.dataset.stackPath;
    const payload = action === 'rollback' ? { revision: button.dataset.revision } : null;
    send(`/api/stacks/${encodeURIComponent(path)}/${action}`, payload, button,
      (answer) => operations[action](path, answer));
  });

  // The stack page's "Check images now": every stack's images, not only this one's. What the
  // registries say arrives as stack.upsert, and the page follows.
  document.addEventListener('click', (event) => {
    const button = event.target.closest('[data-action="check-images"]');
    if (!button) return;
    send('/api/image-updates', null, button,
      () => 'Image check started: the registries are asked now; this page shows what they say.');
  });

  // ---------------------------------------------------------------------------------------
  // The grid

  const grid = document.getElementById('grid');
  const cardTemplate = document.getElementById('card-template');
  const records = new Map();
  const cards = new Map();
  const filter = { status: '', health: '', control: '', q: '' };

  /** `after db, cache` for a dependsOn (after_text on the server); empty without one. */
  function afterText(dependsOn) {
    return dependsOn && dependsOn.length ? `after ${dependsOn.join(', ')}` : '';
  }

  /** `web: nginx:1.27, worker: redis:7 (update failed)`: updates_text on the server. */
  function updatesText(images) {
    return (images || []).filter((i) => i.updateAvailable)
      .map((i) => `${i.service}: ${i.image}${i.updateFailed ? ' (update failed)' : ''}`)
      .join(', ');
  }

  /** One line per service whose registry could not be asked: image_errors_text on the server. */
  function imageErrorsText(images) {
    return (images || []).filter((i) => i.error).map((i) => `${i.service}: ${i.error}`).join('\n');
  }

  /** The same as control_name on the server: what holds the stack, for the filter. */
  function controlName(rec) {
    if (rec.suspended) return 'suspended';
    return rec.pinnedRevision ? 'pinned' : '';
  }

  function fillCard(card, rec) {
    const field = (name) => card.querySelector(`[data-field="${name}"]`);
    card.dataset.path = rec.path;
    card.dataset.status = rec.status;
    card.dataset.health = rec.health || '';
    card.dataset.control = controlName(rec);
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
    const pinned = field('pinned');
    optional(pinned, rec.pinnedRevision ? `pinned ${rec.pinnedRevision.slice(0, PIN_REVISION)}` : '');
    pinned.title = rec.pinnedRevision || '';
    field('suspended').hidden = !rec.suspended;
    field('suspended-in-git').hidden = !rec.suspendedInGit;
    const blocked = field('blocked-by');
    optional(blocked, rec.blockedBy || '');
    blocked.title = rec.blockedBy || '';
    optional(field('depends-on'), afterText((rec.settings || {}).dependsOn));
    const updates = field('updates');
    updates.title = updatesText(rec.images);
    updates.hidden = !updates.title;
    const imageErrors = field('image-errors');
    imageErrors.title = imageErrorsText(rec.images);
    imageErrors.hidden = !imageErrors.title;
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
      && (!filter.control || card.dataset.control === filter.control)
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
    const controlCounts = new Map();
    let running = 0;
    let total = 0;
    for (const rec of records.values()) {
      counts.set(rec.status, (counts.get(rec.status) || 0) + 1);
      healthCounts.set(rec.health, (healthCounts.get(rec.health) || 0) + 1);
      const control = controlName(rec);
      controlCounts.set(control, (controlCounts.get(control) || 0) + 1);
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
    for (const count of document.querySelectorAll('[data-control-count]')) {
      const control = count.dataset.controlCount;
      count.textContent = String(control ? (controlCounts.get(control) || 0) : records.size);
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
    for (const chip of document.querySelectorAll('[data-filter-control]')) {
      chip.setAttribute('aria-pressed', String(chip.dataset.filterControl === filter.control));
    }
    const params = new URLSearchParams();
    if (filter.status) params.set('status', filter.status);
    if (filter.health) params.set('health', filter.health);
    if (filter.control) params.set('control', filter.control);
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
    const controls = [...document.querySelectorAll('[data-filter-control]')]
      .map((chip) => chip.dataset.filterControl);
    const control = params.get('control') || '';
    filter.control = controls.includes(control) ? control : '';
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
      if (event.submitter && event.submitter.dataset.filterControl !== undefined) {
        filter.control = event.submitter.dataset.filterControl;
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
  // The stack page: fetched again from the server whenever its stack changes; deployments the
  // event stream announces are prepended to its history at once; the diff is read from the API.

  const stackPath = body.dataset.stackPath;
  let reloading = false;
  let reloadAgain = false;
  let firstSnapshot = true;
  /** Deployments announced since the page loaded, by id: put back after a swap of the page. */
  const liveDeployments = new Map();
  const MAX_LIVE_DEPLOYMENTS = 50;

  function markRemoved() {
    const removed = document.getElementById('removed');
    if (removed) removed.hidden = false;
  }

  /** `web: nginx:1.27 (sha256:0123456789ab)`: image_text on the server. */
  function imageText(image) {
    const id = (image.imageId || '').slice(0, 7 + SHORT_REVISION);
    return id ? `${image.service}: ${image.image} (${id})` : `${image.service}: ${image.image}`;
  }

  /** `exit 0`, or why there is none: HookRunView on the server. */
  function exitText(exitCode) {
    return exitCode == null ? 'no exit code (timed out or did not start)' : `exit ${exitCode}`;
  }

  /** One hook of a deployment, as the hook_run macro renders it. */
  function hookItem(hook) {
    const item = document.createElement('li');
    item.dataset.phase = hook.phase;
    item.dataset.failed = String(hook.exitCode !== 0);
    const phase = document.createElement('span');
    phase.className = 'phase';
    phase.textContent = hook.phase;
    const service = document.createElement('code');
    service.textContent = hook.service;
    const exit = document.createElement('span');
    exit.className = 'exit';
    exit.textContent = exitText(hook.exitCode);
    item.append(phase, ' ', service, ' ', exit);
    if (hook.output) {
      const details = document.createElement('details');
      const summary = document.createElement('summary');
      summary.textContent = 'output';
      const pre = document.createElement('pre');
      pre.textContent = hook.output;
      details.append(summary, pre);
      item.append(details);
    } else {
      const none = document.createElement('span');
      none.className = 'meta';
      none.textContent = 'no output';
      item.append(' ', none);
    }
    return item;
  }

  /** The twin of DeploymentRow: a history record into a row of the history table. */
  function fillDeployment(row, d, running, controls) {
    const field = (name) => row.querySelector(`[data-field="${name}"]`);
    row.dataset.deployment = String(d.id);
    row.dataset.outcome = d.outcome;
    field('id').textContent = String(d.id);
    setTime(field('started-at'), d.startedAt, '');
    const took = Date.parse(d.finishedAt) - Date.parse(d.startedAt);
    field('duration').textContent = durationText(Number.isFinite(took) && took > 0 ? took : 0);
    field('trigger').textContent = d.trigger;
    const revision = field('revision');
    revision.textContent = shortRevision(d.revision, '—');
    revision.title = d.revision || '';
    field('commit-message').textContent = firstLine(d.commitMessage);
    const outcome = field('outcome');
    outcome.textContent = d.outcome;
    outcome.dataset.outcome = d.outcome;
    field('reason').textContent = d.reason || '';
    field('images').replaceChildren(...(d.images || []).map((image) => {
      const item = document.createElement('li');
      const code = document.createElement('code');
      code.textContent = imageText(image);
      item.append(code);
      return item;
    }));
    field('hooks').replaceChildren(...(d.hooks || []).map(hookItem));
    const rollback = row.querySelector('[data-action="rollback"]');
    rollback.dataset.revision = d.revision;
    rollback.hidden = !(controls && d.outcome === 'succeeded' && d.revision !== running);
  }

  /** Puts a deployment in the history table, newest first, unless it is there already. */
  function showDeployment(d) {
    const table = document.getElementById('history');
    const template = document.getElementById('deployment-template');
    const detail = document.getElementById('stack-detail');
    if (!table || !template || !detail) return;
    const rows = table.tBodies[0];
    const id = Number(d.id);
    if ([...rows.rows].some((r) => Number(r.dataset.deployment) === id)) return;
    const row = template.content.firstElementChild.cloneNode(true);
    fillDeployment(row, d, detail.dataset.running || '', detail.dataset.controls === 'true');
    const next = [...rows.rows].find((r) => Number(r.dataset.deployment) < id) || null;
    rows.insertBefore(row, next);
    document.getElementById('history-wrap').hidden = false;
    document.getElementById('no-history').hidden = true;
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
        // A deployment announced while the page was being rendered is not in it yet.
        for (const d of liveDeployments.values()) showDeployment(d);
      } while (reloadAgain);
    } catch {
      // The connection banner tells about network trouble.
    } finally {
      reloading = false;
    }
    loadDiff();
  }

  // The diff: GET /api/stacks/{path}/diff, shown with textContent only.
  let diffLoading = false;
  let diffAgain = false;

  function diffError(text) {
    const section = document.getElementById('stack-diff');
    section.dataset.state = 'error';
    document.getElementById('diff-status').textContent = '';
    optional(document.getElementById('diff-error'), `Cannot show the diff: ${text}`);
    document.getElementById('diff-body').hidden = true;
  }

  /** One file of the diff: a collapsible block with its unified diff, lines marked +/-. */
  function diffFile(file) {
    const details = document.createElement('details');
    details.className = 'file';
    details.dataset.change = file.change;
    details.dataset.path = file.path;
    const summary = document.createElement('summary');
    const badge = document.createElement('span');
    badge.className = 'badge';
    badge.dataset.change = file.change;
    badge.textContent = file.change;
    const path = document.createElement('code');
    path.textContent = file.path;
    summary.append(badge, ' ', path);
    for (const [flag, label] of [['binary', 'binary'], ['truncated', 'cut at 64 KiB']]) {
      if (!file[flag]) continue;
      const tag = document.createElement('span');
      tag.className = 'tag warn';
      tag.dataset.flag = flag;
      tag.textContent = label;
      summary.append(' ', tag);
    }
    details.append(summary);
    if (file.binary || file.diff == null) {
      const note = document.createElement('p');
      note.className = 'meta';
      note.textContent = 'Binary file: no text diff.';
      details.append(note);
    } else {
      const pre = document.createElement('pre');
      pre.className = 'diff';
      for (const line of file.diff.split('\n')) {
        const span = document.createElement('span');
        if (line.startsWith('+') && !line.startsWith('+++')) span.className = 'add';
        else if (line.startsWith('-') && !line.startsWith('---')) span.className = 'del';
        else if (line.startsWith('@@')) span.className = 'hunk';
        span.textContent = `${line}\n`;
        pre.append(span);
      }
      details.append(pre);
    }
    return details;
  }

  function fillDiff(diff) {
    const section = document.getElementById('stack-diff');
    section.dataset.state = 'loaded';
    section.dataset.inSync = String(Boolean(diff.inSync));
    optional(document.getElementById('diff-error'), '');
    const from = diff.from ? shortRevision(diff.from, '') : 'nothing deployed';
    document.getElementById('diff-status').textContent = diff.inSync
      ? `In sync: nothing to do (${from}).`
      : `Changes pending: ${from} → ${shortRevision(diff.to, '?')}.`;
    const files = diff.files || [];
    document.getElementById('diff-files').replaceChildren(...files.map(diffFile));
    document.getElementById('diff-no-files').hidden = files.length > 0;
    const services = diff.services || [];
    document.querySelector('#diff-services tbody').replaceChildren(...services.map((service) => {
      const row = document.createElement('tr');
      row.dataset.service = service.name;
      row.dataset.action = service.action;
      const name = document.createElement('td');
      const code = document.createElement('code');
      code.textContent = service.name;
      name.append(code);
      const action = document.createElement('td');
      const badge = document.createElement('span');
      badge.className = 'badge';
      badge.dataset.planAction = service.action;
      badge.textContent = service.action;
      action.append(badge);
      const reason = document.createElement('td');
      reason.className = 'message';
      reason.textContent = service.reason || '';
      row.append(name, action, reason);
      return row;
    }));
    document.getElementById('diff-no-services').hidden = services.length > 0;
    document.getElementById('diff-body').hidden = false;
  }

  async function loadDiff() {
    if (!document.getElementById('stack-diff')) return;
    if (diffLoading) {
      diffAgain = true;
      return;
    }
    diffLoading = true;
    try {
      do {
        diffAgain = false;
        // The diff shows file contents: with API_TOKEN set it needs the token, like a button.
        const headers = { Accept: 'application/json' };
        const token = storedToken();
        if (token) headers.Authorization = `Bearer ${token}`;
        const response = await fetch(`/api/stacks/${encodeURIComponent(stackPath)}/diff`, {
          headers,
          cache: 'no-store',
        });
        if (response.status === 401 && tokenRequired) {
          diffError('the diff shows file contents and needs the API token: give it with any button of this page, and the diff follows');
          break;
        }
        let answer = null;
        try {
          answer = await response.json();
        } catch {
          // not JSON: the status line says enough
        }
        if (response.ok && answer) fillDiff(answer);
        else diffError((answer && answer.error) || `${response.status} ${response.statusText}`);
      } while (diffAgain);
    } catch (error) {
      diffError(`request failed: ${error.message}`);
    } finally {
      diffLoading = false;
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
    history(data) {
      if (data.path !== stackPath || !data.deployment) return;
      liveDeployments.set(Number(data.deployment.id), data.deployment);
      if (liveDeployments.size > MAX_LIVE_DEPLOYMENTS) {
        liveDeployments.delete(liveDeployments.keys().next().value);
      }
      showDeployment(data.deployment);
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
    on('stack.history', (data) => { if (handlers && handlers.history) handlers.history(data); });
    on('refresh.status', fillRefresh);
  }

  if (page === 'grid') {
    setupGrid();
    handlers = gridEvents;
  } else if (page === 'stack') {
    handlers = stackEvents;
    loadDiff();
  }
  connect();
})();
