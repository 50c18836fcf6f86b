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

/** A bm/v1 call with the page's nonce (the chat page has its own, rest.js). */
async function call(cfg, method, route) {
  const res = await fetch(cfg.rest.replace(/\/$/, '') + route, { method, credentials: 'same-origin', headers: { 'X-WP-Nonce': cfg.nonce, Accept: 'application/json' } });
  if (!res.ok) throw new Error(`bm/v1${route}: HTTP ${res.status}`);
  return res.json();
}

/**
 * Keeps the count live on a page without the chat: the relay client with
 * the user's connection token, no keys, no subscriptions (WordPress
 * pushes every thread event to each member). Without a relay the count
 * is re-read when the tab comes back into view.
 */
export async function startStandalone(cfg) {
  const counter = new UnreadCounter(() => call(cfg, 'GET', '/unread'));
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
