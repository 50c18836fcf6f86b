// The global unread count, live: every element marked `data-bm-unread`
// (the admin bar item and `[bm_unread]`, BM_Relay_Notify) shows what
// `GET /bm/v1/unread` says, read again shortly after any event for the
// user. All the live-count code is here, so it can move onto a shared
// connection (one socket per browser) without touching the pages:
//
// - UnreadCounter: the debounced re-read and the rendering; the chat page
//   (notify.js) feeds it the events of its own connection;
// - on any other page (no `#bm-chat`), this module opens the relay client
//   itself with the user's connection token (`POST /token`) and holds no
//   keys: an event it cannot open (`dropped`) is still an event for this
//   user, and that is all the count needs to know.
//
// No static imports: a page without the chat has no import map, so the
// client comes by the versioned URL in the page's config.

/** Wait this long after an event before reading the count (ms): a burst costs one request. */
const DEBOUNCE_MS = 300;

/** Re-reads and shows the unread count. */
export class UnreadCounter {
  /** @param {() => Promise<{total:number, mentions:number, label:string}>} fetchUnread */
  constructor(fetchUnread) {
    this.fetchUnread = fetchUnread;
    this.timer = null;
    this.inFlight = null;
    this.again = false;
    /** The last answer (tests and add-ons read it). */
    this.last = null;
  }

  /** Reads the count again in DEBOUNCE_MS (once for a burst of calls). */
  soon() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh(), DEBOUNCE_MS);
  }

  /** Reads the count now (one request at a time; a call meanwhile reads once more after it). */
  async refresh() {
    if (this.inFlight) {
      this.again = true;
      return this.inFlight;
    }
    this.inFlight = (async () => {
      try {
        this.render(await this.fetchUnread());
      } catch {
        // A failed read leaves the last count shown; the next event retries.
      } finally {
        this.inFlight = null;
      }
      if (this.again) {
        this.again = false;
        await this.refresh();
      }
    })();
    return this.inFlight;
  }

  /** Shows an answer of GET /unread in every counter element of the page. */
  render(u) {
    if (!u || typeof u.total !== 'number') return;
    this.last = u;
    for (const node of document.querySelectorAll('[data-bm-unread]')) {
      node.dataset.count = String(u.total);
      node.dataset.mentions = String(u.mentions || 0);
      const count = node.querySelector('.bm-unread-count');
      if (count) count.textContent = String(u.total);
      const label = node.querySelector('.bm-unread-label');
      if (label && u.label) label.textContent = u.label;
      const link = node.closest('a');
      if (link && u.label && link.hasAttribute('title')) link.title = u.label;
    }
    document.dispatchEvent(new CustomEvent('bm-unread', { detail: u }));
  }
}

/** REST error codes of a stale nonce (WordPress's cookie check, the plugin's own). */
const NONCE_CODES = new Set(['rest_cookie_invalid_nonce', 'bm_relay_bad_nonce']);

/** One bm/v1 call with the page's nonce, as it is. */
async function callOnce(cfg, method, route) {
  const res = await fetch(cfg.rest.replace(/\/$/, '') + route, { method, credentials: 'same-origin', headers: { 'X-WP-Nonce': cfg.nonce, Accept: 'application/json' } });
  const json = await res.json().catch(() => null);
  if (!res.ok) throw Object.assign(new Error(`bm/v1${route}: HTTP ${res.status}`), { status: res.status, code: json && json.code });
  return json;
}

/** A nonce refresh under way, per page config: one request at a time. */
const refreshing = new WeakMap();

/**
 * A fresh `wp_rest` nonce from WordPress (admin-ajax `rest-nonce`, by the
 * login cookie) into `cfg.nonce`; true when there is one. One request at
 * a time, and none again for 5 s. The chat page's REST calls (rest.js)
 * use it too: it lives here because this module also runs on pages
 * without the chat, which have no import map to version a second module.
 */
export function refreshNonce(cfg) {
  if (!cfg.nonce_url) return Promise.resolve(false);
  let p = refreshing.get(cfg);
  if (!p) {
    p = (async () => {
      try {
        const res = await fetch(cfg.nonce_url, { credentials: 'same-origin' });
        const text = (await res.text()).trim();
        if (!res.ok || !/^[0-9a-f]{10}$/.test(text)) return false;
        cfg.nonce = text;
        return true;
      } catch {
        return false;
      } finally {
        setTimeout(() => refreshing.delete(cfg), 5000);
      }
    })();
    refreshing.set(cfg, p);
  }
  return p;
}

/**
 * Runs a bm/v1 call (`once`: a function that throws an error with the
 * HTTP `status` and the plugin's `code`) and, when WordPress refused the
 * nonce of a tab left open past its life (12-24 h), runs it once more
 * with a fresh one. Without it the count would freeze, and the socket
 * would die at its next token; the chat page's rest.js goes through it
 * too.
 */
export async function withFreshNonce(cfg, once) {
  try {
    return await once();
  } catch (e) {
    if (e && e.status === 403 && NONCE_CODES.has(e.code) && (await refreshNonce(cfg))) return once();
    throw e;
  }
}

/** A bm/v1 call with the page's nonce (the chat page has its own, rest.js). */
const call = (cfg, method, route) => withFreshNonce(cfg, () => callOnce(cfg, method, route));

/**
 * Keeps the count live on a page without the chat: the relay client with
 * the user's connection token, no keys, no subscriptions (WordPress
 * pushes every thread event to each member). Without a relay the count
 * is re-read when the tab comes back into view.
 */
export async function startStandalone(cfg) {
  const counter = new UnreadCounter(() => call(cfg, 'GET', '/unread'));
  // The page's config (its nonce): tests and add-ons read it.
  counter.cfg = cfg;
  window.bmUnread = counter;
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) counter.soon();
  });
  let bundle;
  try {
    bundle = await call(cfg, 'POST', '/token');
  } catch {
    return counter;
  }
  if (!bundle.url || !bundle.site || !cfg.client) return counter;
  const { BmClient } = await import(cfg.client);
  let first = bundle;
  const client = new BmClient({
    url: bundle.url,
    urls: Array.isArray(bundle.urls) && bundle.urls.length ? bundle.urls : undefined,
    site: bundle.site,
    getToken: async () => {
      const b = first || (await call(cfg, 'POST', '/token'));
      first = null;
      return b.token;
    },
    // Keys are not needed to know that something happened.
    getKey: () => null,
  });
  counter.client = client;
  client.on('event', () => counter.soon());
  client.on('dropped', () => counter.soon());
  // After a (re)connect: what happened while the socket was down.
  client.on('state', ({ state }) => {
    if (state === 'connected') counter.soon();
  });
  client.connect();
  return counter;
}

if (typeof document !== 'undefined') {
  const go = () => {
    const node = document.getElementById('bm-relay-unread-config');
    // The chat page keeps the count through its own connection (notify.js).
    if (!node || document.getElementById('bm-chat') || window.bmUnread) return;
    let cfg;
    try {
      cfg = JSON.parse(node.textContent || '{}');
    } catch {
      return;
    }
    if (cfg.rest && cfg.nonce) startStandalone(cfg).catch(() => {});
  };
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', go);
  else go();
}
