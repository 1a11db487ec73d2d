// leadgate operator console: a client of the public GraphQL API only.
// No framework and no build step. The page's Content-Security-Policy forbids inline code and
// inline styles, so every element is built with the DOM API (never innerHTML with data), and
// the credential lives in a variable for the life of the tab only.
(() => {
  'use strict';

  // ---------------------------------------------------------------------------------------
  // GraphQL documents. Each is a tagged template without interpolation, so
  // tests/console/validate.mjs can check every one against schema.graphql.

  const gql = (strings) => strings.raw.join('');

  const SIGN_IN = gql`
    query SignIn {
      viewer { subject role scopes canWriteLeads workspace { slug name } }
    }`;

  const OVERVIEW_LEADS = gql`
    query OverviewLeads {
      leads(first: 1) { totalCount totalCountIsExact }
    }`;

  const OVERVIEW_PROVIDERS = gql`
    query OverviewProviders {
      providers {
        name enabled disabledReason hasApiKey circuit dailyCreditCap
        usage { period used limit remaining resetsAt }
      }
    }`;

  const OVERVIEW_QUEUE = gql`
    query OverviewQueue {
      jobQueue { stats { kind state count oldestAgeSeconds } }
    }`;

  const OVERVIEW_METRICS = gql`
    query OverviewMetrics {
      metricsHistory(minutes: 60) {
        at requests errors p99Ms creditsSpent queueDepth oldestQueuedAgeSeconds deadJobs
      }
    }`;

  const API_KEYS = gql`
    query ApiKeys($first: Int, $after: String, $last: Int, $before: String) {
      apiKeys(first: $first, after: $after, last: $last, before: $before) {
        edges {
          cursor
          node {
            id name prefix role scopes rateLimit createdAt createdBy lastUsedAt expiresAt revokedAt
          }
        }
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      }
    }`;

  const CREATE_API_KEY = gql`
    mutation CreateApiKey($input: CreateApiKeyInput!) {
      createApiKey(input: $input) {
        apiKey { id name prefix }
        secret
        userErrors { field message code }
      }
    }`;

  const ROTATE_API_KEY = gql`
    mutation RotateApiKey($id: ID!, $gracePeriod: Int!) {
      rotateApiKey(id: $id, gracePeriod: $gracePeriod) {
        apiKey { id name prefix }
        secret
        userErrors { field message code }
      }
    }`;

  const REVOKE_API_KEY = gql`
    mutation RevokeApiKey($id: ID!) {
      revokeApiKey(id: $id) {
        apiKey { id revokedAt }
        userErrors { field message code }
      }
    }`;

  const PROVIDERS = gql`
    query Providers {
      providers {
        name enabled disabledReason hasApiKey apiKeyLast4 groups bulkGroups
        dailyCreditCap monthlyCreditCap ratePerSecond timeoutMs circuit updatedAt
        usage { period used limit remaining resetsAt }
      }
      enrichmentSettings { defaultPolicy waterfalls { group providers } }
    }`;

  const CONFIGURE_PROVIDER = gql`
    mutation ConfigureProvider($input: ConfigureProviderInput!) {
      configureProvider(input: $input) {
        provider { name enabled hasApiKey apiKeyLast4 }
        userErrors { field message code }
      }
    }`;

  const SET_WATERFALL = gql`
    mutation SetWaterfall($group: EnrichmentGroup!, $providers: [ProviderName!]!) {
      setWaterfall(group: $group, providers: $providers) {
        settings { waterfalls { group providers } }
        userErrors { field message code }
      }
    }`;

  const QUEUE = gql`
    query Queue($first: Int, $after: String, $last: Int, $before: String) {
      jobQueue {
        stats { kind state count oldestAgeSeconds }
        dead(first: $first, after: $after, last: $last, before: $before) {
          edges {
            cursor
            node {
              id kind attempts maxAttempts payload createdAt failedAt
              errors { attempt at error }
            }
          }
          pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
        }
      }
    }`;

  const QUEUE_STATS = gql`
    query QueueStats {
      jobQueue { stats { kind state count oldestAgeSeconds } }
    }`;

  const REPLAY_JOBS = gql`
    mutation ReplayJobs($ids: [ID!], $kind: String) {
      replayJobs(ids: $ids, kind: $kind) {
        count
        userErrors { field message code }
      }
    }`;

  const DISCARD_JOBS = gql`
    mutation DiscardJobs($ids: [ID!], $kind: String) {
      discardJobs(ids: $ids, kind: $kind) {
        count
        userErrors { field message code }
      }
    }`;

  const IMPORTS = gql`
    query Imports($first: Int, $after: String, $last: Int, $before: String) {
      imports(first: $first, after: $after, last: $last, before: $before) {
        edges {
          cursor
          node {
            id status format onDuplicate dryRun sourceName rowsDone createdAt startedAt finishedAt
            errorReportUrl error
            counts { created updated unchanged skippedExisting duplicatesInFile invalid blocked }
          }
        }
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      }
    }`;

  // The multipart request spec: this document goes in the `operations` part.
  const IMPORT_LEADS = gql`
    mutation Import($file: Upload!, $input: ImportLeadsInput) {
      importLeads(file: $file, input: $input) {
        import { id status sourceName dryRun rowsDone errorReportUrl error
          counts { created updated unchanged skippedExisting duplicatesInFile invalid blocked } }
      }
    }`;

  const IMPORT_PROGRESS = gql`
    subscription ImportProgress($id: ID!) {
      importProgress(id: $id) {
        id status sourceName dryRun rowsDone errorReportUrl error finishedAt
        counts { created updated unchanged skippedExisting duplicatesInFile invalid blocked }
      }
    }`;

  // Polled when the WebSocket cannot be used.
  const IMPORT_STATUS = gql`
    query ImportStatus($id: ID!) {
      node(id: $id) {
        ... on Import {
          id status sourceName dryRun rowsDone errorReportUrl error finishedAt
          counts { created updated unchanged skippedExisting duplicatesInFile invalid blocked }
        }
      }
    }`;

  const CRM_CONNECTIONS = gql`
    query CrmConnections($first: Int, $after: String, $last: Int, $before: String) {
      crmConnections(first: $first, after: $after, last: $last, before: $before) {
        edges {
          cursor
          node {
            id kind name pollInterval lastPolledAt blockedUntil webhookReceipts
            linkCounts { synced pending failed }
          }
        }
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      }
    }`;

  const CRM_SYNC_RUNS = gql`
    query CrmSyncRuns($connectionId: ID, $first: Int, $after: String, $last: Int, $before: String) {
      crmSyncRuns(connectionId: $connectionId, first: $first, after: $after, last: $last, before: $before) {
        edges {
          cursor
          node { id connectionId trigger startedAt finishedAt pushed pulled failed skipped }
        }
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      }
    }`;

  const POLL_CRM = gql`
    mutation PollCrmConnection($id: ID!) {
      pollCrmConnection(id: $id) { queued }
    }`;

  const CRM_SYNC_CHANGED = gql`
    subscription CrmSyncChanged {
      crmSyncChanged { connectionId trigger }
    }`;

  const CAMPAIGNS = gql`
    query Campaigns($first: Int, $after: String, $last: Int, $before: String) {
      campaigns(first: $first, after: $after, last: $last, before: $before) {
        edges {
          cursor
          node {
            id name state activatedAt
            steps { key type }
            stats {
              enrolled active completed exited sent delivered bounced replied unsubscribed clicked
              atStep { key count }
            }
          }
        }
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      }
    }`;

  const PAUSE_CAMPAIGN = gql`
    mutation PauseCampaign($input: CampaignIdInput!) {
      pauseCampaign(input: $input) {
        campaign { id state }
        userErrors { field message code }
      }
    }`;

  const ACTIVATE_CAMPAIGN = gql`
    mutation ActivateCampaign($input: CampaignIdInput!) {
      activateCampaign(input: $input) {
        campaign { id state }
        enrolled
        userErrors { field message code }
      }
    }`;

  // Enum values the forms offer; tests/console/validate.mjs checks them against the schema.
  const ENUMS = /* schema-enums */ {
    "Role": ["ADMIN", "MEMBER", "VIEWER", "PARTNER"],
    "ApiKeyScope": ["READ_LEADS", "WRITE_LEADS", "SUBSCRIBE", "IMPORT_EXPORT", "ADMIN"],
    "ImportOnDuplicate": ["SKIP", "UPDATE_EMPTY_FIELDS", "OVERWRITE"],
    "EnrichmentGroup": ["PERSON", "COMPANY", "EMAIL_VERIFICATION", "PHONE"],
    "ProviderName": ["SANDBOX", "HUNTER", "PEOPLE_DATA_LABS", "APOLLO", "CLEARBIT"],
    "JobStatus": ["QUEUED", "RUNNING", "SUCCEEDED", "DEAD"],
    "Circuit": ["CLOSED", "OPEN", "HALF_OPEN"],
    "ImportStatus": ["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "INTERRUPTED"],
    "CampaignState": ["DRAFT", "ACTIVE", "PAUSED", "COMPLETED", "ARCHIVED"]
  } /* /schema-enums */;

  const SCOPE_TEXT = {
    READ_LEADS: 'Read leads',
    WRITE_LEADS: 'Create, change, archive and enrich leads',
    SUBSCRIBE: 'Subscriptions and the event log',
    IMPORT_EXPORT: 'Imports and exports',
    ADMIN: 'Workspace settings (admin role only)',
  };

  const PAGE_SIZE = 20;
  const OVERVIEW_REFRESH_MS = 15000;

  // ---------------------------------------------------------------------------------------
  // Small DOM helpers.

  const $ = (sel, root = document) => root.querySelector(sel);

  function append(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child == null || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
    return el;
  }

  // Replaces the children of `el` (arrays are flattened; null and false are skipped).
  function fill(el, ...children) {
    el.replaceChildren();
    return append(el, children);
  }

  // h('button', {type: 'button', on: {click}}, 'Text'): attributes are set as attributes
  // (true: present, false/null: absent); `style` is refused (the CSP forbids it).
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    return append(el, children);
  }

  const SVG_NS = 'http://www.w3.org/2000/svg';
  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    setAttrs(el, attrs);
    return append(el, children);
  }

  function setAttrs(el, attrs) {
    if (!attrs) return;
    for (const [key, value] of Object.entries(attrs)) {
      if (value == null || value === false) continue;
      if (key === 'style') throw new Error('inline styles are not allowed');
      if (key === 'on') {
        for (const [type, fn] of Object.entries(value)) el.addEventListener(type, fn);
      } else if (key === 'class') {
        el.setAttribute('class', Array.isArray(value) ? value.filter(Boolean).join(' ') : value);
      } else {
        el.setAttribute(key, value === true ? '' : String(value));
      }
    }
  }

  let uidCounter = 0;
  const uid = (prefix) => `${prefix}-${++uidCounter}`;

  // ---------------------------------------------------------------------------------------
  // Formatting.

  const nf = new Intl.NumberFormat();
  const nf1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
  const nf2 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
  const pct = new Intl.NumberFormat(undefined, { style: 'percent', maximumFractionDigits: 1 });
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: 'auto', style: 'short' });

  const DATE_STYLE = { dateStyle: 'medium', timeStyle: 'short' };
  const fmtNum = (n) => (n == null ? '—' : nf.format(n));

  function fmtBytes(n) {
    if (n < 1024) return `${nf.format(n)} B`;
    if (n < 1024 * 1024) return `${nf1.format(n / 1024)} KB`;
    if (n < 1024 * 1024 * 1024) return `${nf1.format(n / 1024 / 1024)} MB`;
    return `${nf2.format(n / 1024 / 1024 / 1024)} GB`;
  }

  function fmtDuration(seconds) {
    if (seconds == null || !Number.isFinite(seconds)) return '—';
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return `${nf.format(s)} s`;
    if (s < 3600) return `${nf.format(Math.floor(s / 60))} min ${s % 60 ? `${s % 60} s` : ''}`.trim();
    if (s < 86400) return `${nf.format(Math.floor(s / 3600))} h ${Math.floor((s % 3600) / 60)} min`;
    return `${nf.format(Math.floor(s / 86400))} d ${Math.floor((s % 86400) / 3600)} h`;
  }

  function fmtDate(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString(undefined, DATE_STYLE);
  }

  function fmtRelative(iso) {
    const t = Date.parse(iso);
    if (Number.isNaN(t)) return '';
    const diff = (t - Date.now()) / 1000;
    const abs = Math.abs(diff);
    if (abs < 45) return rtf.format(Math.round(diff), 'second');
    if (abs < 3600) return rtf.format(Math.round(diff / 60), 'minute');
    if (abs < 86400) return rtf.format(Math.round(diff / 3600), 'hour');
    if (abs < 86400 * 60) return rtf.format(Math.round(diff / 86400), 'day');
    return rtf.format(Math.round(diff / (86400 * 30)), 'month');
  }

  // A time: the local date and time, with a relative phrase ("3 min. ago") beside it.
  function timeEl(iso, empty = '—') {
    if (!iso) return h('span', { class: 'muted' }, empty);
    return h('time', { datetime: iso, title: new Date(iso).toLocaleString() }, fmtDate(iso), h('span', { class: 'rel' }, ` (${fmtRelative(iso)})`));
  }

  const plural = (n, one, many) => `${fmtNum(n)} ${n === 1 ? one : many}`;
  const enumText = (v) => String(v).toLowerCase().replace(/_/g, ' ');

  // A status shown in words, with a colour as a second cue only.
  function chip(text, tone) {
    return h('span', { class: ['chip', tone && `chip-${tone}`] }, text);
  }

  // ---------------------------------------------------------------------------------------
  // Session and server access.

  const session = { token: null, viewer: null, scopes: new Set() };
  let signInMessage = '';

  const has = (scope) => session.scopes.has(scope);

  class ApiError extends Error {
    constructor(message, { code = null, status = 0 } = {}) {
      super(message);
      this.name = 'ApiError';
      this.code = code;
      this.status = status;
    }
  }

  class SignedOut extends Error {
    constructor(message) {
      super(message || 'Signed out');
      this.name = 'SignedOut';
    }
  }

  // Errors that need no message: the page was left, or the session ended (sign-in shows why).
  const quiet = (e) => e && (e.name === 'AbortError' || e.name === 'SignedOut');

  const opName = (doc) => {
    const m = /^\s*(?:query|mutation|subscription)\s+([_A-Za-z][_0-9A-Za-z]*)/.exec(doc);
    return m ? m[1] : undefined;
  };

  const errorCode = (e) => (e && e.extensions && e.extensions.code) || null;

  function authHeaders(token = session.token) {
    return { Authorization: `Bearer ${token}`, 'x-leadgate-csrf': '1' };
  }

  function rateLimitText(retryAfter, message) {
    const wait = retryAfter ? ` Try again in ${retryAfter} s.` : ' Try again shortly.';
    return `Too many requests.${wait}${message ? ` (${message})` : ''}`;
  }

  // POST /graphql. Resolves to `data`; rejects with ApiError (or SignedOut after a 401, which
  // sends the tab back to sign-in with the server's reason). `token` is for signing in.
  async function request(doc, variables = {}, { signal, token } = {}) {
    const bearer = token || session.token;
    if (!bearer) throw new SignedOut();
    let response;
    try {
      response = await fetch('/graphql', {
        method: 'POST',
        headers: {
          'Content-Type': 'application/json',
          Accept: 'application/graphql-response+json, application/json',
          ...authHeaders(bearer),
        },
        body: JSON.stringify({ query: doc, variables, operationName: opName(doc) }),
        credentials: 'omit',
        cache: 'no-store',
        signal,
      });
    } catch (e) {
      if (quiet(e)) throw e;
      throw new ApiError('The server could not be reached. Check the connection and try again.', { code: 'NETWORK' });
    }
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      if (quiet(e)) throw e;
    }
    const errors = body && Array.isArray(body.errors) ? body.errors : [];
    const first = errors[0] || null;
    if (response.status === 401 || errors.some((e) => errorCode(e) === 'UNAUTHENTICATED')) {
      const message = (first && first.message) || 'The server refused the credential.';
      if (token) throw new ApiError(message, { code: 'UNAUTHENTICATED', status: 401 });
      expire(message);
      throw new SignedOut(message);
    }
    if (response.status === 429 || errors.some((e) => errorCode(e) === 'RATE_LIMITED')) {
      throw new ApiError(rateLimitText(response.headers.get('retry-after'), first && first.message), {
        code: 'RATE_LIMITED',
        status: response.status,
      });
    }
    if (!body) {
      throw new ApiError(`The server answered ${response.status} without a GraphQL response.`, { status: response.status });
    }
    if (errors.length) {
      const message = [...new Set(errors.map((e) => e.message))].join(' ');
      throw new ApiError(message, { code: errorCode(first), status: response.status });
    }
    return body.data;
  }

  function expire(message) {
    if (session.token) signOut(message);
  }

  // The WebSocket of a subscription (graphql-transport-ws). Returns { close() }.
  function subscribe(doc, variables, { onNext, onError, onComplete }) {
    const url = new URL('/graphql/ws', location.href);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    const id = '1';
    let done = false;
    let closing = false;
    const ws = new WebSocket(url.href, 'graphql-transport-ws');
    const send = (msg) => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
    };
    const finish = () => {
      done = true;
      if (ws.readyState === WebSocket.OPEN) ws.close(1000);
    };
    ws.addEventListener('open', () => {
      if (closing) {
        ws.close(1000);
        return;
      }
      send({ type: 'connection_init', payload: { Authorization: `Bearer ${session.token}` } });
    });
    ws.addEventListener('message', (event) => {
      let msg;
      try {
        msg = JSON.parse(event.data);
      } catch {
        return;
      }
      if (closing || done) return;
      switch (msg.type) {
        case 'connection_ack':
          send({ id, type: 'subscribe', payload: { query: doc, variables, operationName: opName(doc) } });
          break;
        case 'ping':
          send({ type: 'pong' });
          break;
        case 'next': {
          if (msg.id !== id) break;
          const payload = msg.payload || {};
          if (payload.data) onNext(payload.data);
          else if (Array.isArray(payload.errors) && payload.errors.length) {
            finish();
            onError(new ApiError(payload.errors.map((e) => e.message).join(' '), { code: errorCode(payload.errors[0]) }));
          }
          break;
        }
        case 'error': {
          if (msg.id !== id) break;
          finish();
          const list = Array.isArray(msg.payload) ? msg.payload : [];
          onError(new ApiError(list.map((e) => e.message).join(' ') || 'The subscription failed.', { code: errorCode(list[0]) }));
          break;
        }
        case 'complete':
          if (msg.id !== id) break;
          finish();
          onComplete();
          break;
        default:
          break;
      }
    });
    ws.addEventListener('close', (event) => {
      if (done || closing) return;
      done = true;
      if (event.code === 4403 || event.code === 4401) {
        expire(event.reason || 'The server refused the credential.');
        onError(new SignedOut(event.reason));
        return;
      }
      onError(new ApiError(`The live connection closed (${event.code}${event.reason ? `: ${event.reason}` : ''}).`, { code: 'WS_CLOSED' }));
    });
    return {
      close() {
        if (closing) return;
        closing = true;
        if (ws.readyState === WebSocket.OPEN) {
          if (!done) send({ id, type: 'complete' });
          ws.close(1000);
        }
        // still connecting: closed as soon as it opens (closing earlier is logged as an error)
      },
    };
  }

  // Only paths on this server get the bearer token.
  function sameOriginUrl(path) {
    const url = new URL(path, location.href);
    if (url.origin !== location.origin) throw new ApiError('The download is not on this server; it was not fetched.');
    return url;
  }

  function filenameFrom(disposition) {
    if (!disposition) return null;
    const star = /filename\*\s*=\s*UTF-8''([^;]+)/i.exec(disposition);
    if (star) {
      try {
        return decodeURIComponent(star[1].trim());
      } catch {
        /* fall through */
      }
    }
    const plain = /filename\s*=\s*"?([^";]+)"?/i.exec(disposition);
    return plain ? plain[1].trim() : null;
  }

  async function errorTextOf(response) {
    const text = await response.text().catch(() => '');
    try {
      const body = JSON.parse(text);
      if (body && Array.isArray(body.errors) && body.errors.length) return body.errors.map((e) => e.message).join(' ');
    } catch {
      /* not JSON */
    }
    return text.trim().slice(0, 300) || response.statusText || `HTTP ${response.status}`;
  }

  // Fetches a file that needs the bearer token and hands it to the browser as a download.
  // `onProgress(text)` reports what is happening.
  async function download(path, fallbackName, onProgress) {
    const url = sameOriginUrl(path);
    onProgress('Preparing…');
    let response;
    try {
      response = await fetch(url.href, { headers: authHeaders(), credentials: 'omit', cache: 'no-store' });
    } catch (e) {
      if (quiet(e)) throw e;
      throw new ApiError('The server could not be reached. Check the connection and try again.');
    }
    if (response.status === 401) {
      const message = await errorTextOf(response);
      expire(message);
      throw new SignedOut(message);
    }
    if (response.status === 429) throw new ApiError(rateLimitText(response.headers.get('retry-after'), await errorTextOf(response)));
    if (!response.ok) throw new ApiError(`The download failed (${response.status}): ${await errorTextOf(response)}`);
    const total = Number(response.headers.get('content-length')) || 0;
    const chunks = [];
    let received = 0;
    try {
      if (response.body && response.body.getReader) {
        const reader = response.body.getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          chunks.push(value);
          received += value.length;
          onProgress(total ? `Downloading… ${fmtBytes(received)} of ${fmtBytes(total)}` : `Downloading… ${fmtBytes(received)}`);
        }
      } else {
        const buf = await response.arrayBuffer();
        chunks.push(new Uint8Array(buf));
        received = buf.byteLength;
      }
    } catch {
      throw new ApiError('The download was cut off before the end; nothing was saved. Try again.');
    }
    const blob = new Blob(chunks, { type: response.headers.get('content-type') || 'application/octet-stream' });
    const name = filenameFrom(response.headers.get('content-disposition')) || fallbackName;
    const href = URL.createObjectURL(blob);
    const a = h('a', { href, download: name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(href), 30000);
    return { name, size: received };
  }

  // ---------------------------------------------------------------------------------------
  // Shared page pieces.

  // Disables `button` and shows `text` on it while `fn` runs.
  async function withBusy(button, text, fn) {
    const label = button.textContent;
    const hadFocus = document.activeElement === button;
    button.disabled = true;
    button.setAttribute('aria-disabled', 'true');
    button.textContent = text;
    const progress = (t) => {
      button.textContent = t;
    };
    try {
      return await fn(progress);
    } finally {
      if (button.isConnected) {
        button.disabled = false;
        button.removeAttribute('aria-disabled');
        button.textContent = label;
        if (hadFocus && (document.activeElement === document.body || document.activeElement === null)) button.focus();
      }
    }
  }

  function alertBox(error, extraClass) {
    const message = error instanceof Error ? error.message : String(error);
    return h('p', { class: ['alert', extraClass], role: 'alert' }, message);
  }

  // Shows a failure in `where` (replacing an earlier one there), unless it needs no words.
  function report(where, error) {
    if (quiet(error)) return;
    const old = where.querySelector(':scope > .alert.reported');
    if (old) old.remove();
    where.prepend(alertBox(error, 'reported'));
  }

  function clearFieldErrors(form) {
    form.querySelectorAll('.field-error').forEach((el) => el.remove());
    form.querySelectorAll('[aria-invalid]').forEach((el) => {
      el.removeAttribute('aria-invalid');
      const ids = (el.getAttribute('aria-describedby') || '').split(/\s+/).filter((i) => i && !i.startsWith('fe-'));
      if (ids.length) el.setAttribute('aria-describedby', ids.join(' '));
      else el.removeAttribute('aria-describedby');
    });
  }

  // Puts each user error's message next to the control named by the last element of its
  // `field` (`data-field` on the control); the rest at `fallback`.
  function showFieldErrors(form, userErrors, fallback = form) {
    let focusTarget = null;
    for (const ue of userErrors) {
      const key = Array.isArray(ue.field) && ue.field.length ? ue.field[ue.field.length - 1] : null;
      const control = key ? form.querySelector(`[data-field="${CSS.escape(key)}"]`) : null;
      const msg = h('p', { class: 'field-error', role: 'alert', id: uid('fe') }, ue.message);
      if (control) {
        const field = control.closest('.field') || control.parentElement;
        field.append(msg);
        control.setAttribute('aria-invalid', 'true');
        const ids = (control.getAttribute('aria-describedby') || '').split(/\s+/).filter(Boolean);
        control.setAttribute('aria-describedby', [...ids, msg.id].join(' '));
        if (!focusTarget) focusTarget = control.matches('fieldset') ? control.querySelector('input') : control;
      } else {
        fallback.append(msg);
      }
    }
    if (focusTarget) focusTarget.focus();
  }

  function field(label, control, hint) {
    const id = control.id || uid('f');
    control.id = id;
    const hintEl = hint ? h('p', { class: 'hint', id: `${id}-hint` }, hint) : null;
    if (hintEl) control.setAttribute('aria-describedby', hintEl.id);
    return h('div', { class: 'field' }, h('label', { for: id }, label), control, hintEl);
  }

  function checkField(label, control) {
    const id = control.id || uid('f');
    control.id = id;
    return h('div', { class: 'field check' }, control, h('label', { for: id }, label));
  }

  function select(attrs, options, value) {
    const el = h('select', attrs, options.map((o) => (typeof o === 'string' ? h('option', { value: o }, enumText(o)) : h('option', { value: o.value }, o.label))));
    if (value != null) el.value = value;
    return el;
  }

  function tableWrap(table, label) {
    // a focusable scrolling region, so the keyboard can scroll a wide table on a phone
    return h('div', { class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': label }, table);
  }

  function emptyRow(colspan, text) {
    return h('tr', { class: 'empty' }, h('td', { colspan }, text));
  }

  // A table of one Relay connection, paged 20 at a time with Previous/Next.
  // columns: [{ key, label, cell(node) }]; rowsOf(node, tr) may return extra rows.
  function pagedTable(ctx, { id, label, columns, fetch, empty, extraRows, onRender }) {
    const host = h('div', { class: 'paged' });
    let vars = { first: PAGE_SIZE };
    let nodes = [];
    let tbody = null;

    function render(conn, focusAfter) {
      nodes = conn.edges.map((e) => e.node);
      tbody = h('tbody', null);
      if (!nodes.length) tbody.append(emptyRow(columns.length, empty));
      for (const node of nodes) {
        const tr = h('tr', { 'data-id': node.id });
        for (const col of columns) tr.append(h('td', { 'data-col': col.key, class: col.className }, col.cell(node)));
        tbody.append(tr);
        if (extraRows) append(tbody, [extraRows(node, tr)]);
      }
      const table = h(
        'table',
        { id },
        h('caption', { class: 'sr-only' }, label),
        h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col', class: c.className }, c.label)))),
        tbody,
      );
      const info = conn.pageInfo;
      const prev = h('button', { type: 'button', class: 'secondary', 'data-page': 'previous', disabled: !info.hasPreviousPage }, 'Previous');
      const next = h('button', { type: 'button', class: 'secondary', 'data-page': 'next', disabled: !info.hasNextPage }, 'Next');
      prev.addEventListener('click', () => go({ last: PAGE_SIZE, before: info.startCursor }, 'previous', prev));
      next.addEventListener('click', () => go({ first: PAGE_SIZE, after: info.endCursor }, 'next', next));
      const pager = h('div', { class: 'pager', role: 'group', 'aria-label': `${label}: pages` }, prev, next);
      host.replaceChildren(tableWrap(table, label), pager);
      if (focusAfter) {
        const target = focusAfter === 'next' ? next : prev;
        (target.disabled ? (focusAfter === 'next' ? prev : next) : target).focus();
        if (document.activeElement === document.body) host.querySelector('.table-wrap').focus();
      }
      if (onRender) onRender(nodes);
    }

    async function load(v = vars, focusAfter = null) {
      host.setAttribute('aria-busy', 'true');
      try {
        const conn = await fetch(v);
        if (!ctx.alive) return;
        vars = v;
        render(conn, focusAfter);
      } finally {
        host.removeAttribute('aria-busy');
      }
    }

    function go(v, focusAfter, button) {
      withBusy(button, 'Loading…', () => load(v, focusAfter)).catch((e) => report(host, e));
    }

    return {
      host,
      load,
      reload: () => load(vars),
      get nodes() {
        return nodes;
      },
      get tbody() {
        return tbody;
      },
      // takes a row (and its detail rows) out of the table
      remove(nodeId) {
        if (!tbody) return;
        tbody.querySelectorAll(`tr[data-id="${CSS.escape(nodeId)}"], tr[data-detail-of="${CSS.escape(nodeId)}"]`).forEach((r) => r.remove());
        nodes = nodes.filter((n) => n.id !== nodeId);
        if (!nodes.length && !tbody.querySelector('tr')) tbody.append(emptyRow(columns.length, empty));
      },
    };
  }

  const pageVars = (v) => ({ first: null, after: null, last: null, before: null, ...v });

  // The confirmation dialog (#confirm). Resolves true when confirmed.
  let closeConfirm = null;
  function confirmAction({ title, message, ok = 'Confirm', extra = null, danger = true }) {
    const dialog = $('#confirm');
    const okButton = $('#confirm-ok');
    const cancelButton = $('#confirm-cancel');
    if (closeConfirm) closeConfirm(false);
    $('#confirm-title').textContent = title;
    $('#confirm-message').textContent = message;
    $('#confirm-extra').replaceChildren(...(extra ? [extra] : []));
    okButton.textContent = ok;
    okButton.className = danger ? 'danger' : '';
    const opener = document.activeElement;
    return new Promise((resolve) => {
      const finish = (value) => {
        closeConfirm = null;
        okButton.removeEventListener('click', onOk);
        cancelButton.removeEventListener('click', onCancel);
        dialog.removeEventListener('cancel', onEscape);
        dialog.removeEventListener('close', onClose);
        if (dialog.open) dialog.close();
        if (opener && opener.isConnected && typeof opener.focus === 'function') opener.focus();
        resolve(value);
      };
      const onOk = () => finish(true);
      const onCancel = () => finish(false);
      const onEscape = (e) => {
        e.preventDefault();
        finish(false);
      };
      const onClose = () => finish(false);
      okButton.addEventListener('click', onOk);
      cancelButton.addEventListener('click', onCancel);
      dialog.addEventListener('cancel', onEscape);
      dialog.addEventListener('close', onClose);
      closeConfirm = finish;
      dialog.showModal();
      cancelButton.focus();
    });
  }

  // ---------------------------------------------------------------------------------------
  // Routing.

  const ROUTES = {
    'sign-in': { title: 'Sign in', render: renderSignIn, open: true },
    overview: { title: 'Overview', nav: 'Overview', render: renderOverview },
    keys: { title: 'API keys', nav: 'API keys', render: renderKeys, admin: true },
    providers: { title: 'Enrichment providers', nav: 'Providers', render: renderProviders, admin: true },
    queue: { title: 'Job queue', nav: 'Queue', render: renderQueue, admin: true },
    imports: { title: 'Imports and exports', nav: 'Imports', render: renderImports, scope: 'IMPORT_EXPORT' },
    crm: { title: 'CRM sync', nav: 'CRM', render: renderCrm, admin: true },
    campaigns: { title: 'Campaigns', nav: 'Campaigns', render: renderCampaigns, internal: true },
  };

  const main = $('#main');
  let current = null;

  function allowed(route) {
    if (route.internal && session.viewer && session.viewer.role === 'PARTNER') return false;
    if (route.admin) return has('ADMIN');
    if (route.scope) return has(route.scope);
    return true;
  }

  function refusal(page) {
    if (page.admin) return 'This page needs an admin key.';
    if (page.scope) return `This page needs a key with the ${page.scope} scope.`;
    return 'This page is not available to the partner role.';
  }

  function routeName() {
    const m = /^#\/([a-z-]+)/.exec(location.hash);
    return m ? m[1] : '';
  }

  function navigate(name, { replace = false } = {}) {
    const hash = `#/${name}`;
    if (location.hash === hash) route();
    else if (replace) location.replace(hash);
    else location.hash = hash;
  }

  function makeContext() {
    const controller = new AbortController();
    const cleanups = [];
    const ctx = {
      alive: true,
      signal: controller.signal,
      onLeave: (fn) => cleanups.push(fn),
      every(ms, fn) {
        const t = setInterval(fn, ms);
        cleanups.push(() => clearInterval(t));
      },
      later(ms, fn) {
        const t = setTimeout(fn, ms);
        cleanups.push(() => clearTimeout(t));
      },
      request: (doc, vars) => request(doc, vars, { signal: controller.signal }),
      leave() {
        if (!ctx.alive) return;
        ctx.alive = false;
        controller.abort();
        for (const fn of cleanups.splice(0)) {
          try {
            fn();
          } catch {
            /* a cleanup must not stop the others */
          }
        }
      },
    };
    return ctx;
  }

  async function route() {
    let name = routeName();
    if (!session.token) {
      if (name !== 'sign-in') {
        navigate('sign-in', { replace: true });
        return;
      }
    } else if (!ROUTES[name] || name === 'sign-in') {
      navigate('overview', { replace: true });
      return;
    }
    if (current) current.leave();
    if (closeConfirm) closeConfirm(false);
    const page = ROUTES[name];
    const ctx = makeContext();
    current = ctx;
    main.replaceChildren();
    main.dataset.page = name;
    main.setAttribute('aria-busy', 'true');
    document.title = `${page.title} · leadgate console`;
    updateNav(name);
    const heading = h('h1', { tabindex: '-1', id: 'page-title' }, page.title);
    main.append(heading);
    heading.focus();
    try {
      if (!page.open && !allowed(page)) {
        main.append(
          h('p', { class: 'notice', role: 'status' }, refusal(page)),
          h('p', null, h('a', { href: '#/overview' }, 'Back to the overview')),
        );
      } else {
        await page.render(ctx, main);
      }
    } catch (e) {
      if (ctx.alive && !quiet(e)) main.append(alertBox(e));
    } finally {
      if (ctx.alive) main.setAttribute('aria-busy', 'false');
    }
  }

  function updateNav(name) {
    for (const a of $('#nav').querySelectorAll('a')) {
      if (a.getAttribute('href') === `#/${name}`) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
  }

  function renderChrome() {
    const nav = $('#nav');
    const viewer = $('#viewer');
    const signOutButton = $('#sign-out');
    if (!session.token) {
      nav.replaceChildren();
      viewer.replaceChildren();
      signOutButton.hidden = true;
      return;
    }
    const links = Object.entries(ROUTES)
      .filter(([, r]) => r.nav && allowed(r))
      .map(([name, r]) => h('li', null, h('a', { href: `#/${name}` }, r.nav)));
    nav.replaceChildren(h('ul', null, links));
    const v = session.viewer;
    const ws = v.workspace;
    fill(
      viewer,
      h('span', { class: 'subject' }, v.subject),
      ' · ',
      h('span', { class: 'role' }, enumText(v.role)),
      ws ? [' · ', h('span', { class: 'workspace' }, ws.name, ' ', h('span', { class: 'muted' }, `(${ws.slug})`))] : null,
    );
    signOutButton.hidden = false;
  }

  function signOut(message = '') {
    session.token = null;
    session.viewer = null;
    session.scopes = new Set();
    cancelImport();
    signInMessage = message;
    renderChrome();
    navigate('sign-in', { replace: true });
  }

  // ---------------------------------------------------------------------------------------
  // Sign-in.

  function demoToken() {
    const meta = document.querySelector('meta[name="leadgate-demo-token"]');
    return meta ? meta.getAttribute('content') || '' : '';
  }

  async function renderSignIn(ctx, root) {
    const error = h('div', { id: 'sign-in-error', role: 'alert', class: 'alert-slot' });
    const token = h('input', {
      id: 'token', name: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true,
    });
    const submit = h('button', { id: 'sign-in', type: 'submit' }, 'Sign in');
    const form = h(
      'form',
      { id: 'sign-in-form', class: 'card narrow', novalidate: true },
      field('API key or JWT', token, 'Kept in this tab only, never stored: reloading the page signs you out.'),
      h('div', { class: 'actions' }, submit),
    );
    const demo = demoToken();
    const demoSection = demo
      ? h(
          'section',
          { class: 'card narrow demo', 'aria-labelledby': 'demo-title' },
          h('h2', { id: 'demo-title' }, 'Demo'),
          h('p', null, 'This server runs in demo mode.'),
          h('button', { id: 'demo-sign-in', type: 'button' }, 'Sign in to the demo workspace'),
        )
      : null;
    root.append(h('p', { class: 'lead' }, 'Sign in with an API key (lg_…) or a JWT of your workspace.'), error, form, demoSection);
    if (signInMessage) {
      error.append(h('p', { class: 'alert' }, signInMessage));
      signInMessage = '';
    }

    const attempt = async (candidate, button) => {
      error.replaceChildren();
      if (!candidate) {
        error.append(h('p', { class: 'alert' }, 'Enter an API key or a JWT.'));
        token.focus();
        return;
      }
      await withBusy(button, 'Signing in…', async () => {
        try {
          const data = await request(SIGN_IN, {}, { token: candidate, signal: ctx.signal });
          if (!ctx.alive) return;
          session.token = candidate;
          session.viewer = data.viewer;
          session.scopes = new Set(data.viewer.scopes || []);
          token.value = '';
          renderChrome();
          navigate('overview');
        } catch (e) {
          if (quiet(e)) return;
          error.append(h('p', { class: 'alert' }, e.message));
          token.focus();
        }
      });
    };
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      attempt(token.value.trim(), submit);
    });
    if (demoSection) {
      const button = $('#demo-sign-in', demoSection);
      button.addEventListener('click', () => attempt(demo, button));
    }
  }

  // ---------------------------------------------------------------------------------------
  // Overview.

  function card(key, title, value, ...sub) {
    return h(
      'article',
      { class: 'card stat', 'data-card': key },
      h('h2', null, title),
      h('p', { class: 'value' }, value),
      sub.length ? h('div', { class: 'sub' }, sub) : null,
    );
  }

  function lastFullMinute(history) {
    const now = Date.now();
    for (let i = history.length - 1; i >= 0; i--) {
      if (Date.parse(history[i].at) + 60000 <= now) return history[i];
    }
    return history.length > 1 ? history[history.length - 2] : history[0] || null;
  }

  // An axis-less area chart of one series (nulls leave gaps), with min/max/last in words.
  function sparkline(key, title, unit, values, format) {
    const W = 300;
    const H = 60;
    const nums = values.filter((v) => v != null && Number.isFinite(v));
    const min = nums.length ? Math.min(...nums) : null;
    const max = nums.length ? Math.max(...nums) : null;
    let last = null;
    for (let i = values.length - 1; i >= 0; i--) {
      if (values[i] != null) {
        last = values[i];
        break;
      }
    }
    const f = (v) => (v == null ? '—' : format(v));
    const summary = nums.length
      ? `${title}, ${unit}, last ${values.length} minutes: minimum ${f(min)}, maximum ${f(max)}, last ${f(last)}.`
      : `${title}: no data in the last ${values.length} minutes.`;
    const chart = s('svg', {
      viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': summary, class: 'spark', focusable: 'false',
    }, s('title', null, summary));
    if (nums.length) {
      const lo = Math.min(0, min);
      const hi = max > lo ? max : lo + 1;
      const x = (i) => (values.length > 1 ? (i * W) / (values.length - 1) : W / 2);
      const y = (v) => H - 2 - ((v - lo) / (hi - lo)) * (H - 4);
      let segment = [];
      const flush = () => {
        if (segment.length === 1) {
          const [i, v] = segment[0];
          chart.append(s('circle', { cx: x(i), cy: y(v), r: 2, class: 'dot' }));
        } else if (segment.length > 1) {
          const line = segment.map(([i, v], n) => `${n ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
          const area = `M${x(segment[0][0]).toFixed(1)},${H} ${line.replace(/^M/, 'L')} L${x(segment[segment.length - 1][0]).toFixed(1)},${H} Z`;
          chart.append(s('path', { d: area, class: 'area' }), s('path', { d: line, class: 'line', 'vector-effect': 'non-scaling-stroke' }));
        }
        segment = [];
      };
      values.forEach((v, i) => {
        if (v == null || !Number.isFinite(v)) flush();
        else segment.push([i, v]);
      });
      flush();
    }
    return h(
      'figure',
      { class: 'card chart', 'data-chart': key },
      h('figcaption', null, h('span', { class: 'chart-title' }, title), h('span', { class: 'muted' }, ` ${unit}`)),
      chart,
      h('p', { class: 'chart-stats' }, nums.length ? `min ${f(min)} · max ${f(max)} · last ${f(last)}` : 'no data'),
    );
  }

  function circuitChip(circuit) {
    const tone = { CLOSED: 'ok', HALF_OPEN: 'warn', OPEN: 'bad' }[circuit] || null;
    return chip(enumText(circuit), tone);
  }

  async function renderOverview(ctx, root) {
    const cards = h('div', { class: 'cards', id: 'overview-cards' });
    const charts = h('div', { class: 'charts', id: 'overview-charts' });
    const updated = h('p', { class: 'muted updated', id: 'overview-updated' });
    const problems = h('div', { class: 'problems' });
    root.append(updated, problems, h('section', { 'aria-label': 'Figures' }, cards));
    if (has('ADMIN')) {
      root.append(h('section', { 'aria-labelledby': 'charts-title' }, h('h2', { id: 'charts-title' }, 'The last hour'), charts));
    } else {
      root.append(h('p', { class: 'notice' }, 'Traffic, queue and metrics history need an admin key.'));
    }

    const settle = (p) => p.then((value) => ({ value }), (error) => ({ error }));

    async function load() {
      const admin = has('ADMIN');
      const [leads, providers, queue, metrics] = await Promise.all([
        has('READ_LEADS') ? settle(ctx.request(OVERVIEW_LEADS)) : null,
        settle(ctx.request(OVERVIEW_PROVIDERS)),
        admin ? settle(ctx.request(OVERVIEW_QUEUE)) : null,
        admin ? settle(ctx.request(OVERVIEW_METRICS)) : null,
      ]);
      if (!ctx.alive) return;
      const failures = [leads, providers, queue, metrics].filter((r) => r && r.error && !quiet(r.error));
      if ([leads, providers, queue, metrics].some((r) => r && r.error && r.error.name === 'SignedOut')) return;
      problems.replaceChildren(...failures.map((r) => alertBox(r.error)));

      const list = [];
      // leads
      if (!leads) list.push(card('leads', 'Leads', '—', 'Needs the READ_LEADS scope.'));
      else if (leads.value) {
        const c = leads.value.leads;
        list.push(card('leads', 'Leads', `${fmtNum(c.totalCount)}${c.totalCountIsExact ? '' : '+'}`, 'in the workspace'));
      }
      // traffic
      if (metrics && metrics.value) {
        const history = metrics.value.metricsHistory;
        const minute = lastFullMinute(history);
        const hourRequests = history.reduce((a, m) => a + m.requests, 0);
        const hourErrors = history.reduce((a, m) => a + m.errors, 0);
        if (minute) {
          list.push(card('requests', 'Requests/s', nf2.format(minute.requests / 60), `${fmtNum(minute.requests)} in the last full minute`));
          list.push(card('error-rate', 'Error rate', minute.requests ? pct.format(minute.errors / minute.requests) : '—',
            minute.requests ? `${fmtNum(minute.errors)} of ${fmtNum(minute.requests)} requests, last minute` : 'no requests in the last full minute',
            h('br'), `hour: ${hourRequests ? pct.format(hourErrors / hourRequests) : '—'}`));
          list.push(card('p99', 'p99 latency', minute.p99Ms == null ? '—' : `${nf1.format(minute.p99Ms)} ms`, 'last full minute'));
        }
      }
      // queue
      if (queue && queue.value) {
        const stats = queue.value.jobQueue.stats;
        const queued = stats.filter((st) => st.state === 'QUEUED');
        const depth = queued.reduce((a, st) => a + st.count, 0);
        const ages = queued.map((st) => st.oldestAgeSeconds).filter((a) => a != null);
        const dead = stats.filter((st) => st.state === 'DEAD').reduce((a, st) => a + st.count, 0);
        list.push(card('queue-depth', 'Queue depth', fmtNum(depth), 'jobs waiting'));
        list.push(card('oldest-queued', 'Oldest queued job', ages.length ? fmtDuration(Math.max(...ages)) : '—', ages.length ? 'waiting since due' : 'nothing waiting'));
        list.push(card('dead-letters', 'Dead letters', fmtNum(dead), dead ? chip('needs attention', 'bad') : chip('none', 'ok'), ' ', h('a', { href: '#/queue' }, 'Open the queue')));
      }
      // providers
      if (providers && providers.value) {
        const ps = providers.value.providers;
        list.push(
          h('article', { class: 'card stat wide', 'data-card': 'circuits' },
            h('h2', null, 'Provider circuits'),
            h('ul', { class: 'plain' }, ps.map((p) => h('li', null, h('span', { class: 'name' }, p.name), ' ', p.enabled ? circuitChip(p.circuit) : chip('off', null))))),
          h('article', { class: 'card stat wide', 'data-card': 'credits' },
            h('h2', null, 'Credits today'),
            h('ul', { class: 'plain' }, ps.filter((p) => p.enabled).map((p) => {
              const day = p.usage.find((u) => u.period === 'DAY');
              if (!day) return h('li', null, h('span', { class: 'name' }, p.name), ' ', h('span', { class: 'muted' }, 'no daily cap'));
              return h('li', null, h('span', { class: 'name' }, p.name), ' ',
                `${fmtNum(day.used)} / ${fmtNum(day.limit)}`, ' ',
                h('meter', { min: 0, max: Math.max(day.limit, 1), value: day.used, high: Math.max(day.limit, 1) * 0.8, 'aria-label': `${p.name} credits used today` }),
                day.remaining <= 0 ? [' ', chip('cap reached', 'bad')] : null);
            }), ps.some((p) => p.enabled) ? null : h('li', { class: 'muted' }, 'No provider is enabled.')),
            metrics && metrics.value
              ? h('p', { class: 'muted small', 'data-credits-hour': '' },
                `${fmtNum(metrics.value.metricsHistory.reduce((a, m) => a + m.creditsSpent, 0))} credits spent in the last hour (this server)`)
              : null),
        );
      }
      cards.replaceChildren(...list);

      if (metrics && metrics.value) {
        const history = metrics.value.metricsHistory;
        const col = (k) => history.map((m) => m[k]);
        charts.replaceChildren(
          sparkline('requests', 'Requests', 'per minute', col('requests'), fmtNum),
          sparkline('errors', 'Errors', 'per minute', col('errors'), fmtNum),
          sparkline('p99', 'p99 latency', 'ms', col('p99Ms'), (v) => nf1.format(v)),
          sparkline('credits', 'Credits spent', 'per minute', col('creditsSpent'), fmtNum),
          sparkline('queue-depth', 'Queue depth', 'jobs', col('queueDepth'), fmtNum),
        );
      }
      updated.textContent = `Updated ${new Date().toLocaleTimeString()} · refreshes every 15 s`;
    }

    await load();
    ctx.every(OVERVIEW_REFRESH_MS, () => {
      if (document.hidden) return;
      load().catch((e) => report(problems, e));
    });
  }

  // ---------------------------------------------------------------------------------------
  // API keys.

  function keyStatus(k) {
    if (k.revokedAt) return chip('revoked', 'bad');
    if (k.expiresAt && Date.parse(k.expiresAt) <= Date.now()) return chip('expired', 'warn');
    return chip('active', 'ok');
  }

  async function renderKeys(ctx, root) {
    const status = h('p', { id: 'keys-status', role: 'status', class: 'status' });
    const secretBox = h('div', { id: 'secret-box', class: 'secret-slot' });

    const name = h('input', { id: 'key-name', name: 'name', type: 'text', maxlength: 100, autocomplete: 'off', 'data-field': 'name', required: true });
    const role = select({ id: 'key-role', name: 'role', 'data-field': 'role' }, ENUMS.Role, 'MEMBER');
    const scopes = h(
      'fieldset',
      { class: 'field scopes', 'data-field': 'scopes' },
      h('legend', null, 'Scopes'),
      ENUMS.ApiKeyScope.map((sc) => {
        const id = `scope-${sc.toLowerCase()}`;
        return h('div', { class: 'check' },
          h('input', { type: 'checkbox', name: 'scope', value: sc, id }),
          h('label', { for: id }, h('code', null, sc), ' ', h('span', { class: 'muted' }, SCOPE_TEXT[sc] || '')));
      }),
    );
    const expires = h('input', { id: 'key-expires', name: 'expiresAt', type: 'datetime-local', 'data-field': 'expiresAt' });
    const rate = h('input', { id: 'key-rate-limit', name: 'rateLimit', type: 'text', placeholder: '600/min', autocomplete: 'off', 'data-field': 'rateLimit' });
    const submit = h('button', { id: 'create-key', type: 'submit' }, 'Create key');
    const formAlerts = h('div', { class: 'form-alerts' });
    const form = h(
      'form',
      { id: 'create-key-form', class: 'card form-grid', novalidate: true, 'aria-labelledby': 'create-key-title' },
      h('h2', { id: 'create-key-title' }, 'Create a key'),
      field('Name', name),
      field('Role', role, 'What the key may do; its scopes narrow it.'),
      scopes,
      field('Expires (optional)', expires, 'Your local time. Empty: it does not expire.'),
      field('Rate limit (optional)', rate, 'e.g. 600/min, 10/s or 5000/hour. Empty: the workspace rate.'),
      formAlerts,
      h('div', { class: 'actions' }, submit),
    );

    function showSecret(secret, keyName, what) {
      const input = h('input', { id: 'new-secret', type: 'text', readonly: true, value: secret, spellcheck: 'false', autocomplete: 'off', class: 'mono' });
      input.value = secret;
      const copyStatus = h('span', { role: 'status', class: 'copy-status' });
      const copy = h('button', { id: 'copy-secret', type: 'button' }, 'Copy');
      copy.addEventListener('click', async () => {
        try {
          if (!navigator.clipboard || !window.isSecureContext) throw new Error('no clipboard');
          await navigator.clipboard.writeText(secret);
          copyStatus.textContent = 'Copied.';
        } catch {
          input.focus();
          input.select();
          copyStatus.textContent = 'Selected: press Ctrl+C (⌘C) to copy.';
        }
      });
      const dismiss = h('button', { type: 'button', class: 'secondary' }, 'Done');
      dismiss.addEventListener('click', () => {
        secretBox.replaceChildren();
        name.focus();
      });
      secretBox.replaceChildren(
        h('section', { class: 'card secret', 'aria-labelledby': 'secret-title' },
          h('h2', { id: 'secret-title' }, `${what}: ${keyName}`),
          h('p', { class: 'warning' }, h('strong', null, 'Shown once: copy it now.'), ' It cannot be read again. Send it as ', h('code', null, 'Authorization: Bearer <secret>'), '.'),
          h('div', { class: 'field' }, h('label', { for: 'new-secret' }, 'Secret'), h('div', { class: 'inline' }, input, copy)),
          copyStatus,
          h('div', { class: 'actions' }, dismiss)),
      );
      input.focus();
      input.select();
    }

    const columns = [
      { key: 'name', label: 'Name', cell: (k) => k.name },
      { key: 'prefix', label: 'Prefix', cell: (k) => h('code', null, k.prefix) },
      { key: 'role', label: 'Role', cell: (k) => enumText(k.role) },
      { key: 'scopes', label: 'Scopes', cell: (k) => h('ul', { class: 'tags' }, k.scopes.map((sc) => h('li', null, h('code', null, sc)))) },
      { key: 'rate', label: 'Rate', cell: (k) => k.rateLimit || h('span', { class: 'muted' }, 'workspace') },
      { key: 'created', label: 'Created', cell: (k) => [timeEl(k.createdAt), h('div', { class: 'muted small' }, `by ${k.createdBy}`)] },
      { key: 'last-used', label: 'Last used', cell: (k) => timeEl(k.lastUsedAt, 'never') },
      { key: 'expires', label: 'Expires', cell: (k) => timeEl(k.expiresAt, 'never') },
      { key: 'status', label: 'Status', cell: (k) => keyStatus(k) },
      {
        key: 'actions', label: 'Actions', cell: (k) => (k.revokedAt ? h('span', { class: 'muted' }, '—') : h('div', { class: 'row-actions' },
          h('button', { type: 'button', class: 'secondary', 'data-action': 'rotate', 'aria-label': `Rotate ${k.name}`, on: { click: (e) => rotate(k, e.currentTarget) } }, 'Rotate'),
          h('button', { type: 'button', class: 'danger', 'data-action': 'revoke', 'aria-label': `Revoke ${k.name}`, on: { click: (e) => revoke(k, e.currentTarget) } }, 'Revoke'))),
      },
    ];
    const table = pagedTable(ctx, {
      id: 'keys-table', label: 'API keys', columns, empty: 'No keys yet.',
      fetch: async (v) => (await ctx.request(API_KEYS, pageVars(v))).apiKeys,
    });

    async function rotate(k, button) {
      const grace = select({ id: 'rotate-grace' }, [
        { value: '0', label: 'Stops at once' },
        { value: '3600', label: '1 hour' },
        { value: '86400', label: '24 hours' },
        { value: '604800', label: '7 days' },
      ], '86400');
      const extra = field('The old secret keeps working for', grace);
      const ok = await confirmAction({ title: `Rotate “${k.name}”?`, message: 'The key gets a new secret, shown once.', ok: 'Rotate', extra });
      if (!ok) return;
      const gracePeriod = Number(grace.value);
      status.textContent = '';
      await withBusy(button, 'Rotating…', async () => {
        const data = await ctx.request(ROTATE_API_KEY, { id: k.id, gracePeriod });
        const p = data.rotateApiKey;
        if (p.userErrors.length) throw new ApiError(p.userErrors.map((u) => u.message).join(' '));
        status.textContent = `Rotated “${k.name}”.`;
        await table.reload();
        showSecret(p.secret, k.name, 'New secret');
      }).catch((e) => report(table.host, e));
    }

    async function revoke(k, button) {
      const ok = await confirmAction({ title: `Revoke “${k.name}”?`, message: 'Every request with it is refused within a second. This cannot be undone.', ok: 'Revoke' });
      if (!ok) return;
      status.textContent = '';
      await withBusy(button, 'Revoking…', async () => {
        const data = await ctx.request(REVOKE_API_KEY, { id: k.id });
        const p = data.revokeApiKey;
        if (p.userErrors.length) throw new ApiError(p.userErrors.map((u) => u.message).join(' '));
        status.textContent = `Revoked “${k.name}”.`;
        await table.reload();
        const row = table.tbody && table.tbody.querySelector(`tr[data-id="${CSS.escape(k.id)}"]`);
        if (row) {
          const cell = row.querySelector('td[data-col="status"]');
          if (cell && !/revoked/i.test(cell.textContent)) cell.replaceChildren(chip('revoked', 'bad'));
        }
        $('#page-title').focus();
      }).catch((e) => report(table.host, e));
    }

    form.addEventListener('submit', (e) => {
      e.preventDefault();
      clearFieldErrors(form);
      formAlerts.replaceChildren();
      status.textContent = '';
      const input = {
        name: name.value.trim(),
        role: role.value,
        scopes: [...form.querySelectorAll('input[name="scope"]:checked')].map((c) => c.value),
      };
      if (expires.value) {
        const d = new Date(expires.value);
        if (Number.isNaN(d.getTime())) {
          showFieldErrors(form, [{ field: ['input', 'expiresAt'], message: 'Enter a date and time.' }], formAlerts);
          return;
        }
        input.expiresAt = d.toISOString();
      }
      if (rate.value.trim()) input.rateLimit = rate.value.trim();
      withBusy(submit, 'Creating…', async () => {
        const data = await ctx.request(CREATE_API_KEY, { input });
        const p = data.createApiKey;
        if (p.userErrors.length) {
          showFieldErrors(form, p.userErrors, formAlerts);
          return;
        }
        form.reset();
        role.value = 'MEMBER';
        status.textContent = `Created “${p.apiKey.name}”.`;
        showSecret(p.secret, p.apiKey.name, 'New key');
        await table.load({ first: PAGE_SIZE });
      }).catch((err) => report(formAlerts, err));
    });

    root.append(
      form,
      secretBox,
      status,
      h('section', { 'aria-labelledby': 'keys-title' }, h('h2', { id: 'keys-title' }, 'Keys'), table.host),
    );
    await table.load();
  }

  // ---------------------------------------------------------------------------------------
  // Providers and waterfalls.

  function providerHealth(p) {
    if (!p.enabled) return chip(p.disabledReason ? 'switched off' : 'off', p.disabledReason ? 'bad' : null);
    if (p.circuit === 'OPEN') return chip('failing', 'bad');
    if (p.circuit === 'HALF_OPEN') return chip('recovering', 'warn');
    if (p.name !== 'SANDBOX' && !p.hasApiKey) return chip('no key', 'warn');
    if (p.usage.some((u) => u.period !== 'SECOND' && u.remaining <= 0)) return chip('cap reached', 'warn');
    return chip('healthy', 'ok');
  }

  function usageList(p) {
    if (!p.usage.length) return h('span', { class: 'muted' }, 'no capped period');
    return h('ul', { class: 'plain' }, p.usage.map((u) => h('li', null,
      `${enumText(u.period)}: ${fmtNum(u.used)} / ${fmtNum(u.limit)}`, ' ',
      h('span', { class: 'muted' }, `resets ${fmtRelative(u.resetsAt)}`))));
  }

  const fact = (term, ...desc) => [h('dt', null, term), h('dd', null, desc)];

  function numberInput(attrs, value) {
    const el = h('input', { type: 'number', inputmode: 'numeric', step: 1, ...attrs });
    el.value = value == null ? '' : String(value);
    return el;
  }

  function providerCard(ctx, p, onSaved) {
    const base = `prov-${p.name.toLowerCase()}`;
    const enabled = h('input', { type: 'checkbox', id: `${base}-enabled`, name: 'enabled', 'data-field': 'enabled' });
    enabled.checked = p.enabled;
    const daily = numberInput({ id: `${base}-daily`, name: 'dailyCreditCap', min: 0, 'data-field': 'dailyCreditCap', placeholder: 'no cap' }, p.dailyCreditCap);
    const monthly = numberInput({ id: `${base}-monthly`, name: 'monthlyCreditCap', min: 0, 'data-field': 'monthlyCreditCap', placeholder: 'no cap' }, p.monthlyCreditCap);
    const rate = numberInput({ id: `${base}-rate`, name: 'ratePerSecond', min: 1, max: 10000, 'data-field': 'ratePerSecond', placeholder: 'no limit' }, p.ratePerSecond);
    const timeout = numberInput({ id: `${base}-timeout`, name: 'timeoutMs', min: 50, max: 60000, 'data-field': 'timeoutMs', placeholder: 'server default' }, p.timeoutMs);
    const needsKey = p.name !== 'SANDBOX';
    const apiKey = needsKey ? h('input', { type: 'password', id: `${base}-key`, name: 'apiKey', autocomplete: 'new-password', spellcheck: 'false', 'data-field': 'apiKey', placeholder: p.hasApiKey ? 'unchanged' : 'not set' }) : null;
    const save = h('button', { type: 'submit', 'data-action': 'save' }, 'Save');
    const removeKey = needsKey && p.hasApiKey ? h('button', { type: 'button', class: 'danger', 'data-action': 'remove-key' }, 'Remove key') : null;
    const formStatus = h('p', { role: 'status', class: 'status' });
    const alerts = h('div', { class: 'form-alerts' });
    const form = h(
      'form',
      { 'data-provider': p.name, class: 'provider-form form-grid', novalidate: true, 'aria-label': `${p.name} settings` },
      checkField('Enabled', enabled),
      field('Daily credit cap', daily, 'Empty: no cap.'),
      field('Monthly credit cap', monthly, 'Empty: no cap.'),
      field('Calls per second', rate, '1–10,000. Empty: no limit.'),
      field('Timeout (ms)', timeout, '50–60,000. Empty: the server default.'),
      needsKey ? field(p.hasApiKey ? 'New API key (rotate)' : 'API key', apiKey, 'Write-only: it is never shown. Empty leaves the stored key as it is.') : null,
      alerts,
      h('div', { class: 'actions' }, save, removeKey),
      formStatus,
    );

    const numberOf = (input) => {
      if (input.validity.badInput) return { bad: true };
      const raw = input.value.trim();
      if (raw === '') return { value: null };
      const n = Number(raw);
      return Number.isInteger(n) ? { value: n } : { bad: true };
    };

    form.addEventListener('submit', (e) => {
      e.preventDefault();
      clearFieldErrors(form);
      alerts.replaceChildren();
      formStatus.textContent = '';
      const input = { provider: p.name, enabled: enabled.checked };
      const local = [];
      for (const [key, el] of [['dailyCreditCap', daily], ['monthlyCreditCap', monthly], ['ratePerSecond', rate], ['timeoutMs', timeout]]) {
        const r = numberOf(el);
        if (r.bad) local.push({ field: ['input', key], message: 'Enter a whole number, or leave it empty.' });
        else input[key] = r.value;
      }
      if (local.length) {
        showFieldErrors(form, local, alerts);
        return;
      }
      if (apiKey && apiKey.value.trim()) input.apiKey = apiKey.value.trim();
      withBusy(save, 'Saving…', async () => {
        const data = await ctx.request(CONFIGURE_PROVIDER, { input });
        const r = data.configureProvider;
        if (r.userErrors.length) {
          showFieldErrors(form, r.userErrors, alerts);
          return;
        }
        if (apiKey) apiKey.value = '';
        onSaved(`Saved ${p.name}.`, p.name);
      }).catch((err) => report(alerts, err));
    });

    if (removeKey) {
      removeKey.addEventListener('click', async () => {
        const ok = await confirmAction({ title: `Remove the ${p.name} key?`, message: 'Calls to this provider stop until a new key is set.', ok: 'Remove key' });
        if (!ok) return;
        clearFieldErrors(form);
        alerts.replaceChildren();
        withBusy(removeKey, 'Removing…', async () => {
          const data = await ctx.request(CONFIGURE_PROVIDER, { input: { provider: p.name, apiKey: null } });
          const r = data.configureProvider;
          if (r.userErrors.length) {
            showFieldErrors(form, r.userErrors, alerts);
            return;
          }
          onSaved(`Removed the ${p.name} key.`, p.name);
        }).catch((err) => report(alerts, err));
      });
    }

    const day = p.usage.find((u) => u.period === 'DAY');
    return h(
      'section',
      { class: 'card provider', 'data-provider-card': p.name, 'aria-labelledby': `${base}-title` },
      h('h3', { id: `${base}-title` }, p.name, ' ', providerHealth(p)),
      h('dl', { class: 'facts' },
        fact('Enabled', p.enabled ? 'yes' : 'no', p.disabledReason ? h('span', { class: 'muted' }, ` — ${p.disabledReason}`) : null),
        fact('Circuit', circuitChip(p.circuit)),
        fact('API key', !needsKey ? 'not needed' : p.hasApiKey ? ['set, ends in ', h('code', null, p.apiKeyLast4 || '????')] : 'not set'),
        fact('Daily cap', p.dailyCreditCap == null ? 'none' : fmtNum(p.dailyCreditCap), day ? h('span', { class: 'muted' }, ` (${fmtNum(day.used)} used)`) : null),
        fact('Monthly cap', p.monthlyCreditCap == null ? 'none' : fmtNum(p.monthlyCreditCap)),
        fact('Rate', p.ratePerSecond == null ? 'no limit' : `${fmtNum(p.ratePerSecond)}/s`),
        fact('Timeout', p.timeoutMs == null ? 'server default' : `${fmtNum(p.timeoutMs)} ms`),
        fact('Usage', usageList(p)),
        fact('Groups', p.groups.map(enumText).join(', ') || '—'),
        fact('Updated', timeEl(p.updatedAt))),
      form,
    );
  }

  function waterfallEditor(ctx, group, saved, providers) {
    let list = [...saved];
    let savedList = [...saved];
    const offering = providers.filter((p) => p.groups.includes(group)).map((p) => p.name);
    const ol = h('ol', { class: 'waterfall', 'aria-label': `${enumText(group)} providers in order` });
    const addSelect = h('select', { id: `wf-${group.toLowerCase()}-add`, 'data-field': 'providers' });
    const addButton = h('button', { type: 'button', class: 'secondary', 'data-action': 'add' }, 'Add');
    const save = h('button', { type: 'button', 'data-action': 'save-waterfall' }, 'Save');
    const status = h('p', { role: 'status', class: 'status' });
    const alerts = h('div', { class: 'form-alerts' });
    const dirty = h('span', { class: 'muted dirty' });

    function render(focus) {
      ol.replaceChildren(...list.map((name, i) => {
        const p = providers.find((x) => x.name === name);
        const label = (what) => `${what} ${name} in ${enumText(group)}`;
        return h('li', { 'data-provider': name },
          h('span', { class: 'name' }, name), p && !p.enabled ? [' ', chip('off', null)] : null,
          h('span', { class: 'row-actions' },
            h('button', { type: 'button', class: 'secondary small', 'data-action': 'up', 'aria-label': label('Move up'), disabled: i === 0, on: { click: () => move(i, -1) } }, '↑ Up'),
            h('button', { type: 'button', class: 'secondary small', 'data-action': 'down', 'aria-label': label('Move down'), disabled: i === list.length - 1, on: { click: () => move(i, 1) } }, '↓ Down'),
            h('button', { type: 'button', class: 'secondary small', 'data-action': 'remove', 'aria-label': label('Remove'), on: { click: () => removeAt(i) } }, 'Remove')));
      }));
      if (!list.length) ol.append(h('li', { class: 'muted' }, 'No provider: enrichment of this group is off.'));
      const candidates = offering.filter((n) => !list.includes(n));
      addSelect.replaceChildren(...candidates.map((n) => h('option', { value: n }, n)));
      addSelect.disabled = !candidates.length;
      addButton.disabled = !candidates.length;
      const changed = list.join() !== savedList.join();
      dirty.textContent = changed ? 'Unsaved changes' : '';
      if (focus) {
        const target = ol.querySelector(`li[data-provider="${focus.name}"] button[data-action="${focus.action}"]`);
        if (target && !target.disabled) target.focus();
        else if (ol.querySelector(`li[data-provider="${focus.name}"] button`)) ol.querySelector(`li[data-provider="${focus.name}"] button:not([disabled])`).focus();
        else addSelect.focus();
      }
    }
    function move(i, by) {
      const j = i + by;
      if (j < 0 || j >= list.length) return;
      [list[i], list[j]] = [list[j], list[i]];
      status.textContent = `${list[j]} moved to position ${j + 1}.`;
      render({ name: list[j], action: by < 0 ? 'up' : 'down' });
    }
    function removeAt(i) {
      const [name] = list.splice(i, 1);
      status.textContent = `${name} removed (not saved yet).`;
      const next = list[Math.min(i, list.length - 1)];
      render(next ? { name: next, action: 'remove' } : null);
      if (!next) addSelect.focus();
    }
    addButton.addEventListener('click', () => {
      if (!addSelect.value) return;
      list.push(addSelect.value);
      status.textContent = `${addSelect.value} added at the end (not saved yet).`;
      render(null);
      addSelect.disabled ? save.focus() : addSelect.focus();
    });
    save.addEventListener('click', () => {
      alerts.replaceChildren();
      status.textContent = '';
      withBusy(save, 'Saving…', async () => {
        const data = await ctx.request(SET_WATERFALL, { group, providers: list });
        const r = data.setWaterfall;
        if (r.userErrors.length) {
          alerts.append(...r.userErrors.map((u) => h('p', { class: 'field-error', role: 'alert' }, u.message)));
          return;
        }
        const w = r.settings && r.settings.waterfalls.find((x) => x.group === group);
        savedList = w ? [...w.providers] : [...list];
        list = [...savedList];
        render(null);
        status.textContent = `Saved the ${enumText(group)} waterfall.`;
      }).catch((err) => report(alerts, err));
    });
    render(null);
    return h(
      'section',
      { class: 'card waterfall-card', 'data-group': group, 'aria-labelledby': `wf-${group.toLowerCase()}-title` },
      h('h3', { id: `wf-${group.toLowerCase()}-title` }, enumText(group)),
      ol,
      h('div', { class: 'inline add' }, h('label', { for: addSelect.id }, 'Add provider'), addSelect, addButton),
      alerts,
      h('div', { class: 'actions' }, save, dirty),
      status,
    );
  }

  async function renderProviders(ctx, root) {
    const status = h('p', { id: 'providers-status', role: 'status', class: 'status' });
    const list = h('div', { class: 'provider-list' });
    const waterfalls = h('div', { class: 'waterfalls' });
    root.append(
      status,
      h('section', { 'aria-labelledby': 'providers-title' }, h('h2', { id: 'providers-title' }, 'Providers'), list),
      h('section', { 'aria-labelledby': 'waterfalls-title' },
        h('h2', { id: 'waterfalls-title' }, 'Waterfalls'),
        h('p', { class: 'muted' }, 'For each group, the providers asked in order until one answers.'),
        waterfalls),
    );
    async function load(focusProvider) {
      const data = await ctx.request(PROVIDERS);
      if (!ctx.alive) return;
      const onSaved = (message, name) => {
        status.textContent = message;
        load(name).catch((e) => report(list, e));
      };
      list.replaceChildren(...data.providers.map((p) => providerCard(ctx, p, onSaved)));
      const byGroup = new Map(data.enrichmentSettings.waterfalls.map((w) => [w.group, w.providers]));
      waterfalls.replaceChildren(...ENUMS.EnrichmentGroup.map((g) => waterfallEditor(ctx, g, byGroup.get(g) || [], data.providers)));
      if (focusProvider) {
        const save = list.querySelector(`form[data-provider="${focusProvider}"] button[data-action="save"]`);
        if (save) save.focus();
      }
    }
    await load();
  }

  // ---------------------------------------------------------------------------------------
  // Job queue.

  async function renderQueue(ctx, root) {
    const status = h('p', { id: 'queue-status', role: 'status', class: 'status' });
    const statsHost = h('div', { class: 'stats-host' });
    const kindActions = h('div', { class: 'kind-actions' });
    const problems = h('div');

    function renderStats(stats) {
      const kinds = [...new Set(stats.map((st) => st.kind))].sort();
      const cellOf = (kind, state) => stats.find((st) => st.kind === kind && st.state === state);
      const table = h('table', { id: 'stats-table' },
        h('caption', { class: 'sr-only' }, 'Jobs by kind and state'),
        h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Kind'), ENUMS.JobStatus.map((st) => h('th', { scope: 'col', class: 'num' }, enumText(st))), h('th', { scope: 'col', class: 'num' }, 'Oldest queued'))),
        h('tbody', null, kinds.length ? kinds.map((kind) => h('tr', { 'data-kind': kind },
          h('th', { scope: 'row' }, h('code', null, kind)),
          ENUMS.JobStatus.map((st) => {
            const c = cellOf(kind, st);
            return h('td', { class: 'num', 'data-col': st }, c ? fmtNum(c.count) : '0');
          }),
          h('td', { class: 'num' }, fmtDuration((cellOf(kind, 'QUEUED') || {}).oldestAgeSeconds)))) : emptyRow(ENUMS.JobStatus.length + 2, 'No jobs.')));
      statsHost.replaceChildren(tableWrap(table, 'Jobs by kind and state'));
      const deadKinds = stats.filter((st) => st.state === 'DEAD' && st.count > 0);
      kindActions.replaceChildren(...deadKinds.map((st) => h('button', {
        type: 'button', class: 'secondary', 'data-action': 'replay-kind', 'data-kind': st.kind, on: { click: (e) => replayKind(st.kind, e.currentTarget) },
      }, `Replay all of ${st.kind} (${fmtNum(st.count)})`)));
      if (!deadKinds.length) kindActions.append(h('p', { class: 'muted' }, 'No dead jobs to replay.'));
    }

    async function refreshStats() {
      const data = await ctx.request(QUEUE_STATS);
      if (ctx.alive) renderStats(data.jobQueue.stats);
    }

    const lastError = (j) => (j.errors.length ? j.errors[j.errors.length - 1].error : '—');

    const columns = [
      { key: 'kind', label: 'Kind', cell: (j) => h('code', null, j.kind) },
      { key: 'attempts', label: 'Attempts', className: 'num', cell: (j) => `${fmtNum(j.attempts)} / ${fmtNum(j.maxAttempts)}` },
      { key: 'failed-at', label: 'Failed', cell: (j) => timeEl(j.failedAt) },
      { key: 'last-error', label: 'Last error', cell: (j) => h('span', { class: 'error-text' }, lastError(j)) },
      {
        key: 'actions', label: 'Actions', cell: (j) => h('div', { class: 'row-actions' },
          h('button', { type: 'button', class: 'secondary', 'data-action': 'details', 'aria-expanded': 'false', 'aria-controls': `detail-${j.id}`, on: { click: (e) => toggleDetails(j, e.currentTarget) } }, 'Details'),
          h('button', { type: 'button', 'data-action': 'replay', 'aria-label': `Replay ${j.kind} job`, on: { click: (e) => replay(j, e.currentTarget) } }, 'Replay'),
          h('button', { type: 'button', class: 'danger', 'data-action': 'discard', 'aria-label': `Discard ${j.kind} job`, on: { click: (e) => discard(j, e.currentTarget) } }, 'Discard')),
      },
    ];
    const table = pagedTable(ctx, {
      id: 'dead-table', label: 'Dead jobs', columns, empty: 'No dead jobs.',
      fetch: async (v) => {
        const data = await ctx.request(QUEUE, pageVars(v));
        if (ctx.alive) renderStats(data.jobQueue.stats);
        return data.jobQueue.dead;
      },
      extraRows: (j) => h('tr', { class: 'details', 'data-detail-of': j.id, id: `detail-${j.id}`, hidden: true },
        h('td', { colspan: columns.length },
          h('div', { class: 'detail-grid' },
            h('div', null, h('h3', null, 'Payload'), h('pre', { class: 'json', tabindex: '0' }, JSON.stringify(j.payload, null, 2))),
            h('div', null, h('h3', null, 'Errors'), h('ol', { class: 'errors' }, j.errors.map((er) => h('li', null,
              h('span', { class: 'muted' }, `Attempt ${er.attempt}, `, timeEl(er.at)), h('pre', { class: 'error-text' }, er.error)))),
            h('p', { class: 'muted small' }, `Created ${fmtDate(j.createdAt)} · id `, h('code', null, j.id)))))),
    });

    function toggleDetails(j, button) {
      const row = table.tbody.querySelector(`tr[data-detail-of="${CSS.escape(j.id)}"]`);
      if (!row) return;
      row.hidden = !row.hidden;
      button.setAttribute('aria-expanded', String(!row.hidden));
      button.textContent = row.hidden ? 'Details' : 'Hide details';
    }

    function afterRemoval() {
      if (!table.nodes.length) $('#page-title').focus();
      else {
        const next = table.tbody.querySelector('tr[data-id] button[data-action="replay"]');
        if (next) next.focus();
      }
      refreshStats().catch((e) => report(problems, e));
    }

    async function replay(j, button) {
      status.textContent = '';
      await withBusy(button, 'Replaying…', async () => {
        const data = await ctx.request(REPLAY_JOBS, { ids: [j.id] });
        const r = data.replayJobs;
        if (r.userErrors.length) throw new ApiError(r.userErrors.map((u) => u.message).join(' '));
        table.remove(j.id);
        status.textContent = `${plural(r.count, 'job', 'jobs')} queued again.`;
      }).then(afterRemoval, (e) => report(problems, e));
    }

    async function discard(j, button) {
      const ok = await confirmAction({ title: `Discard this ${j.kind} job?`, message: 'It is deleted for good with its error history.', ok: 'Discard' });
      if (!ok) return;
      status.textContent = '';
      await withBusy(button, 'Discarding…', async () => {
        const data = await ctx.request(DISCARD_JOBS, { ids: [j.id] });
        const r = data.discardJobs;
        if (r.userErrors.length) throw new ApiError(r.userErrors.map((u) => u.message).join(' '));
        table.remove(j.id);
        status.textContent = `${plural(r.count, 'job', 'jobs')} discarded.`;
      }).then(afterRemoval, (e) => report(problems, e));
    }

    async function replayKind(kind, button) {
      status.textContent = '';
      await withBusy(button, 'Replaying…', async () => {
        const data = await ctx.request(REPLAY_JOBS, { kind });
        const r = data.replayJobs;
        if (r.userErrors.length) throw new ApiError(r.userErrors.map((u) => u.message).join(' '));
        status.textContent = `${plural(r.count, 'job', 'jobs')} of ${kind} queued again.`;
        await table.load({ first: PAGE_SIZE });
      }).catch((e) => report(problems, e));
      if (!button.isConnected) $('#page-title').focus();
    }

    root.append(
      status,
      problems,
      h('section', { 'aria-labelledby': 'stats-title' }, h('h2', { id: 'stats-title' }, 'Jobs'), statsHost),
      h('section', { 'aria-labelledby': 'dead-title' }, h('h2', { id: 'dead-title' }, 'Dead letters'), kindActions, table.host),
    );
    await table.load();
  }

  // ---------------------------------------------------------------------------------------
  // Imports and exports.

  // The import in flight, kept across page changes (the upload goes on while another page is
  // shown; the live subscription runs only while this page is).
  let job = null;
  const TERMINAL = new Set(['SUCCEEDED', 'FAILED']);
  // Set by the imports page while it is shown: reloads its table when an import ends.
  let importsChanged = null;
  const importEnded = () => {
    if (importsChanged) importsChanged();
  };

  function cancelImport() {
    if (job && job.xhr) job.xhr.abort();
    job = null;
  }

  // Counts the data rows of a local file (an estimate of the total for the progress bar):
  // non-blank lines outside quotes, less the CSV header. Null when not worth it.
  async function countRows(file) {
    if (!file.stream || file.size > 256 * 1024 * 1024) return null;
    const csv = !/\.(ndjson|jsonl)$/i.test(file.name);
    const reader = file.stream().getReader();
    let rows = 0;
    let inQuote = false;
    let content = false;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      for (let i = 0; i < value.length; i++) {
        const b = value[i];
        if (csv && b === 34) inQuote = !inQuote;
        if (b === 10 && !inQuote) {
          if (content) rows++;
          content = false;
        } else if (b !== 13 && b !== 32 && b !== 9) content = true;
      }
    }
    if (content) rows++;
    return csv ? Math.max(0, rows - 1) : rows;
  }

  function countsText(c) {
    return [
      `${fmtNum(c.created)} created`,
      `${fmtNum(c.updated)} updated`,
      `${fmtNum(c.unchanged)} unchanged`,
      `${fmtNum(c.skippedExisting)} skipped (existing)`,
      `${fmtNum(c.duplicatesInFile)} duplicates in file`,
      `${fmtNum(c.invalid)} invalid`,
      `${fmtNum(c.blocked)} blocked`,
    ].join(' · ');
  }

  function importTone(st) {
    return { SUCCEEDED: 'ok', FAILED: 'bad', INTERRUPTED: 'warn', RUNNING: 'info', QUEUED: null }[st] || null;
  }

  // Brings #import-progress, #import-status, #import-errors and #start-import in line with
  // `job`; nothing to do when the imports page is not shown.
  function paintImport() {
    const progress = document.getElementById('import-progress');
    const statusEl = document.getElementById('import-status');
    const errorsSlot = document.getElementById('import-errors-slot');
    const start = document.getElementById('start-import');
    if (!progress || !statusEl) return;
    const running = job && (job.phase === 'uploading' || job.phase === 'processing');
    if (start) {
      start.disabled = !!running;
      start.textContent = !running ? 'Start import' : job.phase === 'uploading' ? 'Uploading…' : 'Importing…';
    }
    if (!job) {
      progress.value = 0;
      progress.max = 1;
      statusEl.textContent = 'No import running.';
      if (errorsSlot) errorsSlot.replaceChildren();
      return;
    }
    if (job.phase === 'uploading') {
      if (job.total) {
        progress.max = job.total;
        progress.value = job.loaded;
      } else progress.removeAttribute('value');
      const share = job.total ? ` ${pct.format(job.loaded / job.total)} (${fmtBytes(job.loaded)} of ${fmtBytes(job.total)})` : '';
      statusEl.replaceChildren(`Uploading ${job.fileName}…${share}`);
      return;
    }
    if (job.phase === 'failed' && !job.imp) {
      progress.value = 0;
      progress.max = 1;
      statusEl.replaceChildren(h('span', { class: 'alert inline-alert' }, job.error || 'The upload failed.'));
      return;
    }
    const imp = job.imp;
    if (!imp) return;
    const finished = TERMINAL.has(imp.status);
    if (finished) {
      progress.max = Math.max(imp.rowsDone, 1);
      progress.value = imp.status === 'SUCCEEDED' ? progress.max : imp.rowsDone;
    } else if (job.estimate && job.estimate >= imp.rowsDone) {
      progress.max = Math.max(job.estimate, 1);
      progress.value = imp.rowsDone;
    } else {
      progress.removeAttribute('value');
    }
    const rows = job.estimate && !finished ? `${fmtNum(imp.rowsDone)} of about ${fmtNum(job.estimate)} rows` : plural(imp.rowsDone, 'row', 'rows');
    fill(
      statusEl,
      h('strong', { class: ['chip', importTone(imp.status) && `chip-${importTone(imp.status)}`], 'data-status': imp.status }, imp.status),
      ` ${imp.sourceName || job.fileName} · ${rows}${imp.dryRun ? ' · dry run (nothing written)' : ''}`,
      h('br'),
      countsText(imp.counts),
      imp.error ? [h('br'), h('span', { class: 'error-text' }, imp.error)] : null,
      job.note ? [h('br'), h('span', { class: 'muted' }, job.note)] : null,
    );
    if (errorsSlot) {
      if (finished && imp.counts.invalid > 0 && !errorsSlot.querySelector('#import-errors')) {
        const button = h('button', { id: 'import-errors', type: 'button', class: 'secondary' }, `Download the error report (${plural(imp.counts.invalid, 'row', 'rows')})`);
        button.addEventListener('click', () => downloadErrorReport(imp, button, errorsSlot));
        errorsSlot.replaceChildren(button);
      } else if (!finished || imp.counts.invalid === 0) errorsSlot.replaceChildren();
    }
  }

  function downloadErrorReport(imp, button, where) {
    withBusy(button, 'Preparing…', (progress) => download(imp.errorReportUrl, `import-${imp.id}-errors.csv`, progress))
      .catch((e) => report(where, e));
  }

  // Follows the import in flight while the imports page (ctx) is shown: the subscription,
  // or polling when the WebSocket is not available.
  function followImport(ctx) {
    if (!job || !job.imp || TERMINAL.has(job.imp.status) || job.following === ctx) return;
    const mine = job;
    mine.following = ctx;
    let polling = false;
    const finish = () => {
      if (job !== mine || mine.phase === 'done') return;
      mine.phase = 'done';
      mine.following = null;
      paintImport();
      importEnded();
    };
    const poll = async () => {
      if (!ctx.alive || job !== mine) return;
      try {
        const data = await ctx.request(IMPORT_STATUS, { id: mine.imp.id });
        if (job !== mine || !ctx.alive) return;
        if (data.node) mine.imp = data.node;
        paintImport();
        if (TERMINAL.has(mine.imp.status)) finish();
        else ctx.later(2000, poll);
      } catch (e) {
        if (quiet(e)) return;
        mine.note = e.message;
        paintImport();
        ctx.later(5000, poll);
      }
    };
    const startPolling = (why) => {
      if (polling || !ctx.alive) return;
      polling = true;
      mine.note = `${why} Checking every 2 s instead.`;
      paintImport();
      poll();
    };
    const sub = subscribe(IMPORT_PROGRESS, { id: mine.imp.id }, {
      onNext(data) {
        if (job !== mine) return;
        mine.imp = data.importProgress;
        mine.note = null;
        paintImport();
        if (TERMINAL.has(mine.imp.status)) finish();
      },
      onError(e) {
        if (quiet(e) || job !== mine) return;
        startPolling(e.message);
      },
      onComplete() {
        if (job !== mine) return;
        if (TERMINAL.has(mine.imp.status)) finish();
        else startPolling('The live updates ended early.');
      },
    });
    ctx.onLeave(() => {
      sub.close();
      if (mine.following === ctx) mine.following = null;
    });
  }

  function startUpload(file, input) {
    const mine = { phase: 'uploading', fileName: file.name, loaded: 0, total: file.size, estimate: null, imp: null, xhr: null, following: null, note: null };
    cancelImport();
    job = mine;
    countRows(file).then((n) => {
      mine.estimate = n;
    }, () => {});
    const form = new FormData();
    form.append('operations', JSON.stringify({ query: IMPORT_LEADS, variables: { file: null, input }, operationName: 'Import' }));
    form.append('map', JSON.stringify({ 0: ['variables.file'] }));
    form.append('0', file, file.name);
    const xhr = new XMLHttpRequest();
    mine.xhr = xhr;
    xhr.open('POST', '/graphql');
    xhr.setRequestHeader('Authorization', `Bearer ${session.token}`);
    xhr.setRequestHeader('x-leadgate-csrf', '1');
    xhr.setRequestHeader('Accept', 'application/graphql-response+json, application/json');
    xhr.responseType = 'text';
    xhr.upload.addEventListener('progress', (e) => {
      if (job !== mine) return;
      mine.loaded = e.loaded;
      if (e.lengthComputable) mine.total = e.total;
      paintImport();
    });
    const fail = (message) => {
      if (job !== mine) return;
      mine.phase = 'failed';
      mine.error = message;
      mine.xhr = null;
      paintImport();
    };
    xhr.addEventListener('error', () => fail('The upload failed: the server could not be reached.'));
    xhr.addEventListener('timeout', () => fail('The upload timed out.'));
    xhr.addEventListener('load', () => {
      if (job !== mine) return;
      mine.xhr = null;
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        /* not JSON */
      }
      const errors = body && Array.isArray(body.errors) ? body.errors : [];
      if (xhr.status === 401 || errors.some((e) => errorCode(e) === 'UNAUTHENTICATED')) {
        expire((errors[0] && errors[0].message) || 'The server refused the credential.');
        return;
      }
      if (xhr.status === 413) return fail('The file is larger than this server accepts.');
      if (xhr.status === 429) return fail(rateLimitText(xhr.getResponseHeader('retry-after'), errors[0] && errors[0].message));
      if (errors.length) return fail(errors.map((e) => e.message).join(' '));
      const imp = body && body.data && body.data.importLeads && body.data.importLeads.import;
      if (!imp) return fail(`The server answered ${xhr.status} without an import.`);
      mine.imp = imp;
      mine.phase = TERMINAL.has(imp.status) ? 'done' : 'processing';
      paintImport();
      if (mine.phase === 'done') importEnded();
      else if (current && current.alive && routeName() === 'imports') followImport(current);
    });
    xhr.send(form);
    paintImport();
  }

  async function renderImports(ctx, root) {
    const file = h('input', { id: 'import-file', name: 'file', type: 'file', accept: '.csv,.ndjson,.jsonl', 'data-field': 'file' });
    const onDuplicate = select({ id: 'import-on-duplicate', name: 'onDuplicate', 'data-field': 'onDuplicate' }, ENUMS.ImportOnDuplicate.map((v) => ({
      value: v, label: { SKIP: 'Skip: leave the existing lead as it is', UPDATE_EMPTY_FIELDS: 'Update empty fields only', OVERWRITE: 'Overwrite with the file’s non-empty values' }[v] || enumText(v),
    })), 'SKIP');
    const dryRun = h('input', { id: 'import-dry-run', name: 'dryRun', type: 'checkbox', 'data-field': 'dryRun' });
    const start = h('button', { id: 'start-import', type: 'submit' }, 'Start import');
    const alerts = h('div', { class: 'form-alerts' });
    const progress = h('progress', { id: 'import-progress', max: 1, value: 0, 'aria-labelledby': 'import-progress-label' });
    const statusEl = h('p', { id: 'import-status', role: 'status', class: 'status' });
    const errorsSlot = h('div', { id: 'import-errors-slot' });
    const form = h(
      'form',
      { id: 'import-form', class: 'card form-grid', novalidate: true, 'aria-labelledby': 'import-title' },
      h('h2', { id: 'import-title' }, 'Import leads'),
      field('File (CSV or NDJSON)', file, 'Recognised headers map themselves: email, first_name, company_name, …'),
      field('When a lead with the email exists', onDuplicate),
      checkField('Dry run: check the file and write only the report', dryRun),
      alerts,
      h('div', { class: 'actions' }, start),
      h('div', { class: 'progress-block' },
        h('span', { id: 'import-progress-label', class: 'label' }, 'Progress'),
        progress),
      statusEl,
      errorsSlot,
    );

    const exportButton = h('button', { id: 'export-csv', type: 'button', class: 'secondary' }, 'Export leads as CSV');
    const exportStatus = h('p', { id: 'export-status', role: 'status', class: 'status' });
    const exportSection = h('section', { class: 'card', 'aria-labelledby': 'export-title' },
      h('h2', { id: 'export-title' }, 'Export'),
      h('p', { class: 'muted' }, 'Every lead of the workspace (archived ones excluded) as one CSV file.'),
      h('div', { class: 'actions' }, exportButton),
      exportStatus);
    exportButton.addEventListener('click', () => {
      exportStatus.textContent = '';
      withBusy(exportButton, 'Preparing…', async (progressText) => {
        const date = new Date().toISOString().slice(0, 10);
        const r = await download('/export/leads.csv', `leads-${date}.csv`, progressText);
        exportStatus.textContent = `Downloaded ${r.name} (${fmtBytes(r.size)}).`;
      }).catch((e) => report(exportSection, e));
    });

    const table = pagedTable(ctx, {
      id: 'imports-table', label: 'Imports', empty: 'No imports yet.',
      fetch: async (v) => (await ctx.request(IMPORTS, pageVars(v))).imports,
      columns: [
        { key: 'status', label: 'Status', cell: (i) => chip(i.status, importTone(i.status)) },
        { key: 'file', label: 'File', cell: (i) => [i.sourceName, i.dryRun ? h('div', { class: 'muted small' }, 'dry run') : null, i.error ? h('div', { class: 'error-text small' }, i.error) : null] },
        { key: 'format', label: 'Format', cell: (i) => (i.format ? enumText(i.format) : '—') },
        { key: 'rows', label: 'Rows', className: 'num', cell: (i) => fmtNum(i.rowsDone) },
        { key: 'counts', label: 'Counts', cell: (i) => h('span', { class: 'small' }, countsText(i.counts)) },
        { key: 'created', label: 'Created', cell: (i) => timeEl(i.createdAt) },
        { key: 'finished', label: 'Finished', cell: (i) => timeEl(i.finishedAt, 'not yet') },
        {
          key: 'report', label: 'Error report', cell: (i) => (i.counts.invalid > 0
            ? h('button', { type: 'button', class: 'secondary small', 'data-action': 'download-errors', 'aria-label': `Download the error report of ${i.sourceName}`, on: { click: (e) => downloadErrorReport(i, e.currentTarget, table.host) } }, 'Download')
            : h('span', { class: 'muted' }, 'none')),
        },
      ],
    });

    importsChanged = () => {
      if (ctx.alive) table.load({ first: PAGE_SIZE }).catch((e) => report(table.host, e));
    };
    ctx.onLeave(() => {
      importsChanged = null;
    });

    form.addEventListener('submit', (e) => {
      e.preventDefault();
      clearFieldErrors(form);
      alerts.replaceChildren();
      const chosen = file.files && file.files[0];
      if (!chosen) {
        showFieldErrors(form, [{ field: ['file'], message: 'Choose a CSV or NDJSON file.' }], alerts);
        return;
      }
      if (job && (job.phase === 'uploading' || job.phase === 'processing')) return;
      startUpload(chosen, { onDuplicate: onDuplicate.value, dryRun: dryRun.checked });
    });

    root.append(
      session.viewer.canWriteLeads
        ? form
        : h('p', { class: 'notice' }, 'Importing needs a role that may write leads (admin or member) and, for an API key, the WRITE_LEADS scope.'),
      has('READ_LEADS') ? exportSection : h('p', { class: 'notice' }, 'Exporting needs the READ_LEADS scope.'),
      h('section', { 'aria-labelledby': 'imports-title' }, h('h2', { id: 'imports-title' }, 'Recent imports'), table.host),
    );
    paintImport();
    if (job && job.phase === 'processing') followImport(ctx);
    await table.load();
  }

  // ---------------------------------------------------------------------------------------
  // CRM.

  function receiptsText(r) {
    const entries = r && typeof r === 'object' && !Array.isArray(r) ? Object.entries(r) : [];
    if (!entries.length) return h('span', { class: 'muted' }, 'none');
    return h('ul', { class: 'tags' }, entries.map(([k, v]) => h('li', null, `${k.replace(/_/g, ' ')} ${typeof v === 'number' ? fmtNum(v) : String(v)}`)));
  }

  async function renderCrm(ctx, root) {
    const status = h('p', { id: 'crm-status', role: 'status', class: 'status' });
    const names = new Map();
    const filter = h('select', { id: 'crm-runs-connection' }, h('option', { value: '' }, 'All connections'));
    let connectionId = null;

    const runs = pagedTable(ctx, {
      id: 'crm-runs-table', label: 'Sync runs', empty: 'No sync runs yet.',
      fetch: async (v) => (await ctx.request(CRM_SYNC_RUNS, { ...pageVars(v), connectionId })).crmSyncRuns,
      columns: [
        { key: 'connection', label: 'Connection', cell: (r) => names.get(r.connectionId) || h('code', null, r.connectionId) },
        { key: 'trigger', label: 'Trigger', cell: (r) => enumText(r.trigger) },
        { key: 'started', label: 'Started', cell: (r) => timeEl(r.startedAt) },
        { key: 'finished', label: 'Finished', cell: (r) => (r.finishedAt ? timeEl(r.finishedAt) : chip('running', 'info')) },
        { key: 'pushed', label: 'Pushed', className: 'num', cell: (r) => fmtNum(r.pushed) },
        { key: 'pulled', label: 'Pulled', className: 'num', cell: (r) => fmtNum(r.pulled) },
        { key: 'failed', label: 'Failed', className: 'num', cell: (r) => (r.failed ? chip(fmtNum(r.failed), 'bad') : '0') },
        { key: 'skipped', label: 'Skipped', className: 'num', cell: (r) => fmtNum(r.skipped) },
      ],
    });

    const connections = pagedTable(ctx, {
      id: 'crm-table', label: 'CRM connections', empty: 'No CRM connection.',
      fetch: async (v) => (await ctx.request(CRM_CONNECTIONS, pageVars(v))).crmConnections,
      onRender: (nodes) => {
        for (const c of nodes) names.set(c.id, c.name);
        const chosen = filter.value;
        filter.replaceChildren(h('option', { value: '' }, 'All connections'), ...[...names].map(([id, name]) => h('option', { value: id }, name)));
        filter.value = chosen;
      },
      columns: [
        { key: 'kind', label: 'Kind', cell: (c) => enumText(c.kind) },
        { key: 'name', label: 'Name', cell: (c) => c.name },
        {
          key: 'links', label: 'Links', cell: (c) => h('span', { class: 'small' },
            `${fmtNum(c.linkCounts.synced)} synced · ${fmtNum(c.linkCounts.pending)} pending · `,
            c.linkCounts.failed ? chip(`${fmtNum(c.linkCounts.failed)} failed`, 'bad') : '0 failed'),
        },
        { key: 'last-polled', label: 'Last polled', cell: (c) => timeEl(c.lastPolledAt, c.pollInterval ? 'not yet' : 'not polled') },
        { key: 'blocked', label: 'Blocked until', cell: (c) => (c.blockedUntil && Date.parse(c.blockedUntil) > Date.now() ? [chip('waiting', 'warn'), ' ', timeEl(c.blockedUntil)] : h('span', { class: 'muted' }, '—')) },
        { key: 'receipts', label: 'Webhook receipts', cell: (c) => receiptsText(c.webhookReceipts) },
        {
          key: 'actions', label: 'Actions', cell: (c) => h('button', {
            type: 'button', 'data-action': 'poll', 'aria-label': `Sync ${c.name} now`, on: { click: (e) => poll(c, e.currentTarget) },
          }, 'Sync now'),
        },
      ],
    });

    async function poll(c, button) {
      status.textContent = '';
      await withBusy(button, 'Queuing…', async () => {
        const data = await ctx.request(POLL_CRM, { id: c.id });
        status.textContent = data.pollCrmConnection.queued
          ? `A sync of ${c.name} is queued; its run appears below when it ends.`
          : `A sync of ${c.name} was already queued or running.`;
        // without the live feed below, look once a little later
        if (!live) ctx.later(3000, () => runs.reload().catch((e) => report(runs.host, e)));
      }).catch((e) => report(connections.host, e));
    }

    // Runs as they finish, over the WebSocket, while this page is shown: each one reloads the
    // runs and the connections (their counts and last poll).
    let live = false;
    if (has('SUBSCRIBE')) {
      live = true;
      const sub = subscribe(CRM_SYNC_CHANGED, {}, {
        onNext() {
          runs.reload().catch((e) => report(runs.host, e));
          connections.reload().catch((e) => report(connections.host, e));
        },
        onError() { live = false; },
        onComplete() { live = false; },
      });
      ctx.onLeave(() => sub.close());
    }

    filter.addEventListener('change', () => {
      connectionId = filter.value || null;
      runs.load({ first: PAGE_SIZE }).catch((e) => report(runs.host, e));
    });

    root.append(
      status,
      h('section', { 'aria-labelledby': 'crm-conn-title' }, h('h2', { id: 'crm-conn-title' }, 'Connections'), connections.host),
      h('section', { 'aria-labelledby': 'crm-runs-title' },
        h('h2', { id: 'crm-runs-title' }, 'Recent sync runs'),
        h('div', { class: 'inline filter' }, h('label', { for: filter.id }, 'Connection'), filter),
        runs.host),
    );
    await connections.load();
    await runs.load();
  }

  // ---------------------------------------------------------------------------------------
  // Campaigns.

  function campaignTone(st) {
    return { ACTIVE: 'ok', PAUSED: 'warn', DRAFT: null, COMPLETED: 'info', ARCHIVED: null }[st] || null;
  }

  function funnel(c) {
    const st = c.stats;
    const stepType = new Map(c.steps.map((x) => [x.key, x.type]));
    // [label, count, whether it counts leads (shown as a share of the enrolled)]
    const rows = [
      ['Enrolled', st.enrolled, false],
      ...c.steps.map((x) => {
        const at = st.atStep.find((a) => a.key === x.key);
        return [`At ${x.key} (${x.type})`, at ? at.count : 0, true];
      }),
      ...st.atStep.filter((a) => !stepType.has(a.key)).map((a) => [`At ${a.key}`, a.count, true]),
      ['Sent', st.sent, false],
      ['Delivered', st.delivered, false],
      ['Replied', st.replied, false],
      ['Clicked', st.clicked, false],
      ['Bounced', st.bounced, false],
      ['Unsubscribed', st.unsubscribed, false],
      ['Completed', st.completed, true],
      ['Exited early', st.exited, true],
    ];
    const max = Math.max(1, ...rows.map((r) => r[1]));
    return h(
      'article',
      { class: 'card funnel', 'data-id': c.id, 'aria-labelledby': `funnel-${c.id}` },
      h('h3', { id: `funnel-${c.id}` }, c.name, ' ', chip(enumText(c.state), campaignTone(c.state))),
      h('dl', { class: 'bars' }, rows.map(([label, n, leads]) => {
        const bar = h('span', { class: 'bar-fill' });
        bar.style.width = `${(n / max) * 100}%`;
        return [
          h('dt', null, label),
          h('dd', null, h('span', { class: 'bar', 'aria-hidden': 'true' }, bar), h('span', { class: 'bar-num' }, fmtNum(n),
            st.enrolled && leads ? h('span', { class: 'muted' }, ` (${pct.format(n / st.enrolled)} of enrolled)`) : null)),
        ];
      })),
    );
  }

  async function renderCampaigns(ctx, root) {
    const status = h('p', { id: 'campaigns-status', role: 'status', class: 'status' });
    const funnels = h('div', { class: 'funnels', id: 'campaign-funnels' });

    const table = pagedTable(ctx, {
      id: 'campaigns-table', label: 'Campaigns', empty: 'No campaigns yet.',
      fetch: async (v) => (await ctx.request(CAMPAIGNS, pageVars(v))).campaigns,
      onRender: (nodes) => funnels.replaceChildren(...(nodes.length ? nodes.map(funnel) : [h('p', { class: 'muted' }, 'No campaign on this page.')])),
      columns: [
        { key: 'name', label: 'Name', cell: (c) => c.name },
        { key: 'state', label: 'State', cell: (c) => chip(enumText(c.state), campaignTone(c.state)) },
        { key: 'enrolled', label: 'Enrolled', className: 'num', cell: (c) => fmtNum(c.stats.enrolled) },
        { key: 'sent', label: 'Sent', className: 'num', cell: (c) => fmtNum(c.stats.sent) },
        { key: 'delivered', label: 'Delivered', className: 'num', cell: (c) => fmtNum(c.stats.delivered) },
        { key: 'replied', label: 'Replied', className: 'num', cell: (c) => fmtNum(c.stats.replied) },
        { key: 'bounced', label: 'Bounced', className: 'num', cell: (c) => fmtNum(c.stats.bounced) },
        { key: 'unsubscribed', label: 'Unsubscribed', className: 'num', cell: (c) => fmtNum(c.stats.unsubscribed) },
        has('ADMIN') && {
          key: 'actions', label: 'Actions', cell: (c) => {
            if (c.state === 'ACTIVE') {
              return h('button', { type: 'button', class: 'secondary', 'data-action': 'pause', 'aria-label': `Pause ${c.name}`, on: { click: (e) => pause(c, e.currentTarget) } }, 'Pause');
            }
            if (c.state === 'PAUSED' || c.state === 'DRAFT') {
              return h('button', { type: 'button', 'data-action': 'activate', 'aria-label': `${c.state === 'DRAFT' ? 'Activate' : 'Resume'} ${c.name}`, on: { click: (e) => activate(c, e.currentTarget) } }, c.state === 'DRAFT' ? 'Activate' : 'Resume');
            }
            return h('span', { class: 'muted' }, '—');
          },
        },
      ].filter(Boolean),
    });

    function showRowErrors(c, userErrors) {
      const row = table.tbody.querySelector(`tr[data-id="${CSS.escape(c.id)}"] td[data-col="actions"]`);
      const where = row || status.parentElement;
      where.querySelectorAll('.field-error').forEach((x) => x.remove());
      where.append(...userErrors.map((u) => h('p', { class: 'field-error', role: 'alert' }, u.message)));
    }

    function refocus(c, action) {
      const b = table.tbody && table.tbody.querySelector(`tr[data-id="${CSS.escape(c.id)}"] button[data-action="${action}"]`);
      (b || $('#page-title')).focus();
    }

    async function pause(c, button) {
      status.textContent = '';
      await withBusy(button, 'Pausing…', async () => {
        const data = await ctx.request(PAUSE_CAMPAIGN, { input: { id: c.id } });
        const r = data.pauseCampaign;
        if (r.userErrors.length) return showRowErrors(c, r.userErrors);
        status.textContent = `Paused “${c.name}”.`;
        await table.reload();
        refocus(c, 'activate');
      }).catch((e) => report(table.host, e));
    }

    async function activate(c, button) {
      status.textContent = '';
      await withBusy(button, c.state === 'DRAFT' ? 'Activating…' : 'Resuming…', async () => {
        const data = await ctx.request(ACTIVATE_CAMPAIGN, { input: { id: c.id } });
        const r = data.activateCampaign;
        if (r.userErrors.length) return showRowErrors(c, r.userErrors);
        status.textContent = `${c.state === 'DRAFT' ? 'Activated' : 'Resumed'} “${c.name}”${r.enrolled ? `: ${plural(r.enrolled, 'lead', 'leads')} enrolled` : ''}.`;
        await table.reload();
        refocus(c, 'pause');
      }).catch((e) => report(table.host, e));
    }

    root.append(
      status,
      h('section', { 'aria-labelledby': 'campaigns-title' }, h('h2', { id: 'campaigns-title' }, 'All campaigns'), table.host),
      h('section', { 'aria-labelledby': 'funnels-title' }, h('h2', { id: 'funnels-title' }, 'Funnels'), funnels),
    );
    await table.load();
  }

  // ---------------------------------------------------------------------------------------
  // Start.

  window.addEventListener('unhandledrejection', (event) => {
    if (quiet(event.reason)) event.preventDefault();
  });
  window.addEventListener('hashchange', () => {
    // in-page anchors (the skip link) are not routes
    if (location.hash.startsWith('#/') || location.hash === '') route();
  });
  $('#skip-link').addEventListener('click', (e) => {
    e.preventDefault();
    const target = $('#page-title') || main;
    if (target === main) main.setAttribute('tabindex', '-1');
    target.focus();
  });
  $('#sign-out').addEventListener('click', () => signOut(''));
  window.addEventListener('pagehide', () => {
    if (current) current.leave();
  });
  window.addEventListener('pageshow', (event) => {
    // back from the back/forward cache: the page was left on pagehide
    if (event.persisted) route();
  });
  renderChrome();
  route();
})();
