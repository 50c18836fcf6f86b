// The chat page behind `[bm_chat]`: thread list, conversation, composer.
//
// WordPress (the plugin's REST API bm/v1) is the only store: every write is
// a REST call, and the page shows what WordPress says. The relay (through
// BmClient) only makes it immediate: pushed events are applied as they
// arrive, typing hints travel by `pub` and are never stored, and after
// every (re)connect the page catches up over REST, so nothing pushed while
// the socket was down is missed.
//
// User content is always set with textContent, never as HTML.

import { BmClient } from './bm-client.js';
import { WireIds } from './bm-wire.js';

/** Default strings; the shortcode passes translated ones in `config.strings`. */
const DEFAULT_STRINGS = {
  title: 'Messages',
  conversations: 'Conversations',
  newConversation: 'New conversation',
  searchPeople: 'Search people',
  searchHint: 'Type at least two letters of a name.',
  noPeople: 'Nobody found.',
  add: 'Add %s',
  removeChosen: 'Remove %s',
  subject: 'Subject (optional)',
  firstMessage: 'First message (optional)',
  create: 'Start conversation',
  cancel: 'Cancel',
  noThreads: 'No conversations yet.',
  pickThread: 'Choose a conversation, or start a new one.',
  // Count-dependent strings: `forms` and, per count, which form
  // (`index`, from WordPress's _n(): see BM_Relay_Shortcode::plural());
  // without an index, English (one form for 1, the other for the rest).
  unread: { forms: ['%d unread message', '%d unread messages'] },
  online: 'online',
  offline: 'offline',
  back: 'Back to conversations',
  loadEarlier: 'Load earlier messages',
  message: 'Message',
  send: 'Send',
  sending: 'Sending…',
  sent: 'Sent',
  delivered: 'Delivered',
  read: 'Read',
  failed: 'Not sent',
  retry: 'Retry',
  edit: 'Edit',
  save: 'Save',
  del: 'Delete',
  confirmDelete: 'Delete this message?',
  deleted: 'Message deleted',
  edited: 'edited',
  react: 'React with %s',
  reactions: 'Reactions',
  typing: '%s is typing…',
  typingTwo: '%1$s and %2$s are typing…',
  typingMany: { forms: ['%d person is typing…', '%d people are typing…'] },
  newMessageFrom: 'New message from %1$s: %2$s',
  connecting: 'Connecting…',
  connected: 'Connected',
  connectedStream: 'Connected (streaming: WebSocket is blocked on this network)',
  offlinePolling: 'Offline — checking for messages every few seconds',
  offlineReconnecting: 'Offline — reconnecting',
  closed: 'Disconnected — reload the page',
  noRelay: 'Live updates are not available — checking for messages every few seconds',
  removed: 'You are no longer a member of “%s”.',
  error: 'Something went wrong: %s',
  you: 'You',
  someone: 'Someone',
  members: 'Members: %s',
};

/** Quick reactions offered on every message. */
const QUICK_REACTIONS = ['👍', '❤️', '😂', '😮'];
/** How long a typing hint is shown without a new one (ms). */
const TYPING_SHOW_MS = 5000;
/** At most one typing hint per this many ms. */
const TYPING_SEND_MS = 2500;
/** Polling interval when there is no relay at all (ms). */
const NO_RELAY_POLL_MS = 5000;
/**
 * An envelope sealed with a key we do not hold makes the page ask WordPress
 * (POST /token, then a resync) — but anyone in a thread can send hints
 * sealed with any epoch of it. So a thread's key is fetched again only for
 * an epoch newer than the one we know and at most this far ahead …
 */
const KEY_EPOCH_AHEAD = 16;
/** … and at most once per thread in this many ms (the resync likewise). */
const KEY_REFETCH_MS = 30000;
/** REST error codes of a stale nonce (WordPress's cookie check, the plugin's own). */
const NONCE_CODES = new Set(['rest_cookie_invalid_nonce', 'bm_relay_bad_nonce']);
/** Threads the page subscribes to on the relay at most (besides the open one). */
const MAX_LIVE_THREADS = 50;
/** Pages of 100 threads the list loads at most (10 000 threads). */
const MAX_THREAD_PAGES = 100;
/** Presence is asked this often while the tab is visible (ms). */
const PRESENCE_EVERY_MS = 30000;
/** Presence asks for the open thread and this many of the most recent (two relay frames at most). */
const PRESENCE_THREADS = 31;
/** Reasons to ask presence that arrive within this many ms are one ask. */
const PRESENCE_SOON_MS = 100;
/** Largest thread id we accept (JSON-safe ids, as the plugin). */
const MAX_ID = Number.MAX_SAFE_INTEGER;

/** sprintf for `%s` / `%d` (in order) and `%1$s` (numbered, for translations that reorder). */
function fmt(s, ...args) {
  let i = 0;
  return String(s).replace(/%(?:(\d+)\$)?[sd]/g, (_, n) => String((n ? args[Number(n) - 1] : args[i++]) ?? ''));
}

/**
 * The form of a count-dependent string for `n`, formatted with `n`: the
 * page's table from WordPress's _n() for counts below 200, 100 + n % 100
 * above (PHP's BM_Relay_Shortcode::plural() says why that is exact).
 * A plain string (an older or filtered config) is used as it is.
 */
function plural(p, n) {
  if (typeof p === 'string') return fmt(p, n);
  const forms = p && Array.isArray(p.forms) && p.forms.length ? p.forms : ['%d'];
  const i = Array.isArray(p.index) && p.index.length === 200 ? p.index[n < 200 ? n : 100 + (n % 100)] : n === 1 ? 0 : 1;
  return fmt(forms[Math.min(Number(i) || 0, forms.length - 1)], n);
}

/**
 * Creates an element: el('button', {class: 'x', onclick: f}, 'text', child).
 * Strings become text nodes; never HTML.
 */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (v === true) e.setAttribute(k, '');
    else e.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

/** A REST error with the plugin's code and HTTP status. */
class RestError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

/**
 * One chat page. `root` is the `#bm-chat` mount element; its `data-config`
 * holds `{rest, nonce, user, strings?}`.
 */
export class BmChat {
  /** @param {HTMLElement} root */
  constructor(root, config) {
    this.root = root;
    this.cfg = config;
    this.me = Number(config.user);
    /** What the relay calls our users and threads (pseudonyms in protocol 2; bm-wire.js). */
    this.wire = new WireIds();
    this.t = { ...DEFAULT_STRINGS, ...(config.strings || {}) };
    /** A count-dependent string of the page for `n` (for tests and add-ons too). */
    this.plural = (key, n) => plural(this.t[key], n);
    /** @type {Map<number, any>} thread id → thread state */
    this.threads = new Map();
    /** @type {Map<number, string>} user id → display name */
    this.names = new Map([[this.me, this.t.you]]);
    this.current = null;
    this.bundleCache = null;
    /** @type {Map<string, number>} thread → when its keys were last fetched for an unknown key id */
    this.keyFetchedAt = new Map();
    /** @type {Map<string, number>} thread → when it was last resynced for an unopenable event */
    this.resyncedAt = new Map();
    this.bundlePromise = null;
    this.client = null;
    this.typingSentAt = 0;
    this.readTimer = null;
    this.connState = 'connecting';
    this.polling = false;
    this.loadingThreads = null;
    this.build();
  }

  // ---- REST -------------------------------------------------------------

  /** One bm/v1 call with the page's nonce; throws RestError on non-2xx. */
  async rest(method, route, body) {
    try {
      return await this.restOnce(method, route, body);
    } catch (e) {
      // A tab left open past the nonce's life (12-24 h): WordPress refuses
      // it. Get a fresh one for the same login and try once more.
      if (e instanceof RestError && e.status === 403 && NONCE_CODES.has(e.code) && (await this.refreshNonce())) {
        return this.restOnce(method, route, body);
      }
      throw e;
    }
  }

  /**
   * A new `wp_rest` nonce from WordPress (admin-ajax `rest-nonce`, by the
   * login cookie); true when there is one. One request at a time.
   */
  refreshNonce() {
    if (!this.cfg.nonce_url) return Promise.resolve(false);
    if (!this.noncePromise) {
      this.noncePromise = (async () => {
        try {
          const res = await fetch(this.cfg.nonce_url, { credentials: 'same-origin' });
          const text = (await res.text()).trim();
          if (!res.ok || !/^[0-9a-f]{10}$/.test(text)) return false;
          this.cfg.nonce = text;
          return true;
        } catch {
          return false;
        } finally {
          setTimeout(() => {
            this.noncePromise = null;
          }, 5000);
        }
      })();
    }
    return this.noncePromise;
  }

  /** One bm/v1 call as it is, no retry. */
  async restOnce(method, route, body) {
    const url = this.cfg.rest.replace(/\/$/, '') + route;
    const init = { method, credentials: 'same-origin', headers: { 'X-WP-Nonce': this.cfg.nonce, Accept: 'application/json' } };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(url, init);
    } catch (e) {
      throw new RestError(0, 'network', String(e && e.message ? e.message : e));
    }
    let json;
    try {
      json = await res.json();
    } catch {
      json = null;
    }
    if (!res.ok) throw new RestError(res.status, json && json.code, json && json.message);
    return json;
  }

  /**
   * The `POST /token` bundle, cached; `force` fetches a new one. Threads are
   * indexed by id and keys by key id.
   */
  async bundle(force = false) {
    if (!force && this.bundleCache && Date.now() - this.bundleCache.at < this.bundleCache.freshFor) return this.bundleCache;
    if (this.bundlePromise) return this.bundlePromise;
    this.bundlePromise = (async () => {
      try {
        const b = await this.rest('POST', '/token');
        this.wire.learnBundle(b, this.me);
        const threads = new Map();
        const keys = new Map();
        if (b.user_key) keys.set(b.user_key.kid, b.user_key.key);
        for (const k of b.threads || []) {
          threads.set(Number(k.thread), k);
          keys.set(k.kid, k.key);
        }
        const life = Math.max(10, Number(b.exp) - Math.floor(Date.now() / 1000));
        // Thread tokens share the bundle's lifetime: use a cached bundle for
        // at most half of it.
        this.bundleCache = { raw: b, threads, keys, at: Date.now(), freshFor: (life * 1000) / 2 };
        // Keys of earlier bundles stay usable (messages of older epochs).
        if (this.oldKeys) for (const [kid, key] of this.oldKeys) if (!keys.has(kid)) keys.set(kid, key);
        this.oldKeys = keys;
        return this.bundleCache;
      } finally {
        this.bundlePromise = null;
      }
    })();
    return this.bundlePromise;
  }

  // ---- start --------------------------------------------------------------

  /** Loads the threads, opens one, connects to the relay. */
  async start() {
    this.setConn('connecting');
    try {
      await this.loadThreads();
    } catch (e) {
      this.showError(e);
    }
    const wanted = Number((/^#thread-(\d+)$/.exec(location.hash) || [])[1]);
    const first = this.threads.has(wanted) ? wanted : this.sortedThreads()[0]?.id;
    if (first) await this.openThread(first, { focus: false });
    let b;
    try {
      b = await this.bundle(true);
    } catch (e) {
      b = null;
    }
    if (!b || !b.raw.url || !b.raw.site) {
      // No relay configured (or /token refused): WordPress alone, polled.
      this.setConn('no-relay');
      this.noRelayTimer = setInterval(() => this.catchUp({ reconnect: true }).catch(() => {}), NO_RELAY_POLL_MS);
      return;
    }
    this.startClient(b.raw);
    this.presenceTimerWhileVisible();
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && this.current) this.scheduleRead(this.current);
      if (!document.hidden) this.refreshPresence();
      this.presenceTimerWhileVisible();
    });
  }

  /**
   * Presence is asked every PRESENCE_EVERY_MS while the tab is visible
   * only: a hidden tab shows nobody anything, so it sends nothing (the
   * timer stops, and showing the tab again asks at once).
   */
  presenceTimerWhileVisible() {
    clearInterval(this.presenceTimer);
    this.presenceTimer = document.hidden ? null : setInterval(() => this.refreshPresence(), PRESENCE_EVERY_MS);
  }

  /** Creates the relay client with callbacks onto the plugin's REST routes. */
  startClient(b) {
    const client = new BmClient({
      url: b.url,
      // Every relay node the site lists (a cluster), its own first.
      urls: Array.isArray(b.urls) && b.urls.length ? b.urls : undefined,
      site: b.site,
      getToken: async () => (await this.bundle(true)).raw.token,
      // The client speaks wire ids (what the relay calls a thread); the
      // bundle is indexed by WordPress ids.
      getThreadToken: async (wt) => {
        const t = this.wire.threads.real(wt);
        if (t == null) throw new Error(`no thread is ${wt} on the relay`);
        let cache = await this.bundle();
        if (!cache.threads.has(t)) cache = await this.bundle(true);
        // The bundle holds the 500 most active threads; an older one's
        // keys come with the thread itself.
        const k = cache.threads.get(t) || (await this.threadKeys(t, cache));
        if (!k) throw new Error(`not a member of thread ${t}`);
        return k.token;
      },
      getKey: async (kid) => {
        let cache = await this.bundle();
        if (!cache.keys.has(kid)) {
          // A key we do not hold yet (a new thread, a new epoch): wait for
          // the bundle being fetched, or fetch one — only for a plausible
          // key (see keyWorthAsking) and at most once per thread per
          // KEY_REFETCH_MS, so envelopes with made-up key ids cannot make
          // every member's page hammer WordPress.
          if (this.bundlePromise) cache = await this.bundlePromise;
          else if (this.keyWorthAsking(kid, cache) && this.rateOk(this.keyFetchedAt, kid)) {
            cache = await this.bundle(true);
            const t = this.kidThread(kid);
            if (!cache.keys.has(kid) && t != null && this.threads.has(t)) await this.threadKeys(t, cache);
          }
        }
        return cache.keys.get(kid) ?? null;
      },
      threadKeyId: async (wt) => {
        const t = this.wire.threads.real(wt);
        const k = t == null ? null : (await this.bundle()).threads.get(t);
        if (!k) throw new Error(`no key for thread ${t}`);
        return k.kid;
      },
      catchUp: async ({ reconnect }) => {
        // Run once the subscriptions are re-sent: the relay answers
        // presence for subscribed threads only.
        this.refreshPresenceSoon();
        await this.catchUp({ reconnect });
      },
      poll: async () => {
        await this.catchUp({ reconnect: true });
      },
    });
    this.client = client;
    client.on('state', ({ state }) => this.onClientState(state));
    // WebSocket, or the relay's stream when a proxy blocks WebSocket: shown
    // on the connection line (data-transport), nothing else changes.
    client.on('transport', () => this.onClientState(client.state));
    client.on('polling', ({ active }) => {
      this.polling = active;
      this.onClientState(client.state);
    });
    client.on('event', (ev) => this.onEvent(ev));
    client.on('dropped', ({ kid, reason }) => {
      // An event of one of our threads we could not open (its key arrived
      // later than the event): WordPress has it, read it from there.
      const t = this.kidThread(kid);
      if (reason === 'no_key' && t != null && this.threads.has(t) && this.keyWorthAsking(kid, this.bundleCache) && this.rateOk(this.resyncedAt, kid)) {
        this.resync(t);
      }
    });
    client.on('hint', (h) => this.onHint(h));
    client.on('unsub', ({ thread, reason }) => {
      const t = this.wire.threads.real(thread);
      if (t != null && (reason === 'revoked' || reason === 'forbidden')) this.verifyMembership(t);
    });
    client.connect();
    // Live subscriptions (typing hints, thread pushes) for the most active
    // threads only: the relay allows 256 per socket and limits frames per
    // second. Every member still gets each event of every thread through
    // `to`; the open thread is always subscribed (openThread).
    for (const t of this.sortedThreads().slice(0, MAX_LIVE_THREADS)) this.subscribe(t.id);
    if (this.current) this.subscribe(this.current);
  }

  /**
   * Whether a key id we lack is worth asking WordPress for: our own user
   * key, or a thread key of the newest epoch we know for that thread or at
   * most KEY_EPOCH_AHEAD past it (an unknown thread: a small epoch, as a
   * thread we were just added to has).
   */
  keyWorthAsking(kid, cache) {
    if (kid === `u/${this.wire.users.wire(this.me) ?? this.me}`) return true;
    const m = /^t\/(\d{1,16})\/(\d{1,10})$/.exec(kid || '');
    const thread = m && this.wire.threads.real(Number(m[1]));
    if (thread == null) return false;
    const epoch = Number(m[2]);
    const known = Math.max(this.threads.get(thread)?.epoch ?? -1, cache?.threads?.get(thread)?.epoch ?? -1);
    if (known < 0) return epoch <= KEY_EPOCH_AHEAD;
    // The known epoch itself too: a thread too old for the /token bundle
    // has its current key fetched on its own (threadKeys).
    return epoch >= known && epoch <= known + KEY_EPOCH_AHEAD;
  }

  /** True (and remembered) when `kid`'s thread was not asked about within KEY_REFETCH_MS. */
  rateOk(map, kid) {
    const thread = (/^t\/(\d+)\//.exec(kid || '') || [])[1] || kid;
    const now = Date.now();
    if (now - (map.get(thread) ?? -Infinity) < KEY_REFETCH_MS) return false;
    map.set(thread, now);
    return true;
  }

  /**
   * Keys of one thread from `GET /threads/{id}` (a thread too old to be in
   * the /token bundle), added to the bundle; null when not a member.
   */
  async threadKeys(t, cache) {
    try {
      const r = await this.rest('GET', `/threads/${t}`);
      const k = r.thread && r.thread.keys;
      if (!k) return null;
      this.wire.learnThread(r.thread);
      cache.threads.set(Number(k.thread), k);
      cache.keys.set(k.kid, k.key);
      if (this.oldKeys) this.oldKeys.set(k.kid, k.key);
      return k;
    } catch (e) {
      if (e instanceof RestError && (e.status === 403 || e.status === 404)) return null;
      throw e;
    }
  }

  /**
   * Subscribes to a thread's live events (errors are shown by `unsub`);
   * once subscribed, the thread's presence can be asked of the relay.
   */
  subscribe(t) {
    if (!this.client) return;
    const wt = this.wire.threads.wire(t);
    if (wt == null) {
      // Not in the bundle nor loaded with its keys yet: they name it.
      this.bundle()
        .then((cache) => this.threadKeys(t, cache))
        .then((k) => k && this.wire.threads.wire(t) != null && this.subscribe(t))
        .catch(() => {});
      return;
    }
    this.client.subscribe(wt).then(
      () => this.refreshPresenceSoon(),
      () => {},
    );
  }

  /** The WordPress id of the thread of key id `kid` (`t/{wire}/{epoch}`), or null. */
  kidThread(kid) {
    const m = /^t\/(\d{1,16})\//.exec(kid || '');
    return m ? this.wire.threads.real(Number(m[1])) : null;
  }

  /** Maps the client's state and polling onto the visible connection state. */
  onClientState(state) {
    if (state === 'connected') this.setConn('connected');
    else if (state === 'closed') this.setConn('closed');
    else if (state === 'connecting' && !this.everConnected) this.setConn('connecting');
    else this.setConn(this.polling ? 'offline-polling' : state === 'connecting' ? 'connecting' : 'offline');
    if (state === 'connected') this.everConnected = true;
  }

  // ---- catch-up ---------------------------------------------------------

  /**
   * Brings the page up to date from WordPress: the thread list (unread
   * counts, new threads) and, for the open thread, every message after the
   * oldest one shown (so edits, deletions and reactions missed while
   * offline are refreshed too). Runs after every (re)connect and on polls.
   */
  async catchUp({ reconnect }) {
    await this.loadThreads();
    const t = this.current && this.threads.get(this.current);
    if (t && t.loaded) {
      // After a reconnect, re-read everything shown (edits, deletions and
      // reactions missed while offline); at the first connect, only what
      // came after the initial load.
      const ids = [...t.messages.keys()];
      const from = !ids.length ? 0 : reconnect ? Math.min(...ids) - 1 : Math.max(...ids);
      await this.fetchAfter(t, from);
    }
  }

  /** Catch-up of one thread soon (debounced): the list, and its messages when it is open. */
  resync(id) {
    clearTimeout(this.resyncTimer);
    this.resyncTimer = setTimeout(async () => {
      try {
        await this.loadThreads();
        const t = this.threads.get(id);
        if (t && t.loaded && this.current === id) {
          const ids = [...t.messages.keys()];
          await this.fetchAfter(t, ids.length ? Math.max(...ids) : 0);
        }
      } catch (e) {
        this.showError(e);
      }
    }, 500);
  }

  /** GET messages after `after` until has_more is false (bounded). */
  async fetchAfter(t, after) {
    for (let page = 0; page < 20; page++) {
      const r = await this.rest('GET', `/threads/${t.id}/messages?after=${after}&limit=200`);
      for (const m of r.messages) this.applyMessage(t, m, { live: false });
      if (!r.has_more || !r.messages.length) break;
      after = r.messages[r.messages.length - 1].id;
    }
    if (this.current === t.id) this.scheduleRead(t.id);
  }

  /** GET /threads; merges into the list and subscribes to new ones. */
  async loadThreads() {
    if (this.loadingThreads) return this.loadingThreads;
    this.loadingThreads = (async () => {
      try {
        const seen = new Set();
        let complete = false;
        for (let page = 1; page <= MAX_THREAD_PAGES; page++) {
          const r = await this.rest('GET', `/threads?page=${page}&per_page=100`);
          for (const th of r.threads) {
            seen.add(th.id);
            this.mergeThread(th);
          }
          if (!r.has_more || r.threads.length < 100) {
            complete = true;
            break;
          }
        }
        // Threads that are gone from the whole list: we were removed while
        // away. (Had the list been cut short, an unseen thread may just be
        // older: it is kept.)
        if (complete) for (const id of [...this.threads.keys()]) if (!seen.has(id)) this.dropThread(id, true);
        this.renderThreadList();
      } finally {
        this.loadingThreads = null;
      }
    })();
    return this.loadingThreads;
  }

  /** Adds or updates a thread from its REST shape. */
  mergeThread(th) {
    let t = this.threads.get(th.id);
    const isNew = !t;
    if (!t) {
      t = { id: th.id, messages: new Map(), loaded: false, hasMore: false, online: new Set(), readBy: new Map(), deliveredTo: new Map(), typing: new Map() };
      this.threads.set(th.id, t);
    }
    t.subject = th.subject;
    t.createdBy = th.created_by;
    t.participants = th.participants.map((p) => p.id);
    this.wire.learnThread(th);
    for (const p of th.participants) if (p.id !== this.me) this.names.set(p.id, p.name);
    t.unread = this.current === th.id && !document.hidden ? 0 : th.unread;
    t.lastReadId = th.last_read_id;
    t.updated = th.updated;
    t.lastMessage = th.last_message;
    t.epoch = th.epoch;
    // The number of the thread's last event as WordPress had it: the next
    // pushed event should be one more (PROTOCOL.md §4.1).
    t.seq = Math.max(t.seq || 0, Number(th.seq) || 0);
    if (isNew && this.client && this.threads.size <= MAX_LIVE_THREADS) this.subscribe(th.id);
    return t;
  }

  /** Forgets a thread (removed, or left). */
  dropThread(id, notify) {
    const t = this.threads.get(id);
    if (!t) return;
    this.threads.delete(id);
    const wt = this.wire.threads.wire(id);
    if (this.client && wt != null) this.client.unsubscribe(wt).catch(() => {});
    if (notify) this.notice(fmt(this.t.removed, this.threadTitle(t)));
    if (this.current === id) {
      this.current = null;
      this.renderConversation();
    }
    this.renderThreadList();
  }

  /** After a revoked subscription: is the user still a member? */
  async verifyMembership(id) {
    try {
      await this.rest('GET', `/threads/${id}`);
      this.subscribe(id);
    } catch (e) {
      if (e instanceof RestError && (e.status === 403 || e.status === 404)) this.dropThread(id, true);
    }
  }

  // ---- pushed events ----------------------------------------------------------

  /** A stored event from the relay (or catch-up envelopes): apply it. */
  onEvent(ev) {
    const d = ev.data || {};
    if (d.seq != null && d.thread != null) this.noteSeq(Number(d.thread), Number(d.seq));
    switch (ev.type) {
      case 'message.new':
      case 'message.edit': {
        const t = this.threads.get(Number(d.thread));
        if (!t) {
          this.loadThreads().catch(() => {});
          return;
        }
        const { client_id: clientId, ...msg } = d;
        this.applyMessage(t, msg, { live: ev.type === 'message.new', clientId });
        t.typing.delete(d.sender);
        this.renderTyping();
        return;
      }
      case 'message.delete': {
        const t = this.threads.get(Number(d.thread));
        const m = t && t.messages.get(Number(d.id));
        if (m) this.applyMessage(t, { ...m, text: null, deleted: true, reactions: [] }, { live: false });
        return;
      }
      case 'reaction': {
        const t = this.threads.get(Number(d.thread));
        const m = t && t.messages.get(Number(d.id));
        if (m) this.applyMessage(t, { ...m, reactions: d.reactions }, { live: false });
        return;
      }
      case 'read': {
        const t = this.threads.get(Number(d.thread));
        if (!t) return;
        if (Number(d.user) === this.me) {
          // Another tab of ours read it.
          t.lastReadId = Math.max(t.lastReadId || 0, Number(d.message_id));
          t.unread = 0;
          this.renderThreadList();
          return;
        }
        const prev = t.readBy.get(Number(d.user)) || 0;
        t.readBy.set(Number(d.user), Math.max(prev, Number(d.message_id)));
        t.online.add(Number(d.user));
        if (this.current === t.id) this.renderMarks(t);
        this.renderThreadList();
        return;
      }
      case 'participant.added':
      case 'thread.added':
      case 'thread.key': {
        const id = Number(d.thread && typeof d.thread === 'object' ? d.thread.id : d.keys ? d.keys.thread : d.thread);
        // New keys and thread tokens come with a new bundle.
        this.bundle(true)
          .catch(() => null)
          .then(() => this.rest('GET', `/threads/${id}`))
          .then((r) => {
            this.mergeThread(r.thread);
            this.subscribe(id);
            this.renderThreadList();
            if (this.current === id) this.renderHeader();
          })
          .catch(() => {});
        return;
      }
      case 'thread.removed':
        this.dropThread(Number(d.thread), true);
        if (this.client) this.client.forgetKeys();
        this.bundle(true).catch(() => {});
        return;
      default:
    }
  }

  /**
   * A thread event's number (PROTOCOL.md §4.1). One more than the last seen
   * is the normal case; more than one more means events were lost between
   * WordPress and this page (a failed push, a frame lost on the way): the
   * thread is re-read from WordPress at once, not at the next reconnect.
   */
  noteSeq(id, seq) {
    const t = this.threads.get(id);
    if (!t || !Number.isSafeInteger(seq)) return;
    const known = t.seq || 0;
    t.seq = Math.max(known, seq);
    if (seq > known + 1) this.fillGap(t);
  }

  /**
   * Re-reads one thread after a gap: the list (unread count, last message)
   * and, when it is loaded, every message shown (a lost edit, deletion or
   * reaction is refreshed too). One at a time per thread; a gap seen while
   * one is being filled runs once more afterwards.
   */
  async fillGap(t) {
    this.gapsFilled = (this.gapsFilled || 0) + 1;
    if (t.filling) {
      t.fillAgain = true;
      return;
    }
    t.filling = true;
    try {
      do {
        t.fillAgain = false;
        await this.loadThreads();
        if (t.loaded && this.threads.get(t.id) === t) {
          const ids = [...t.messages.keys()];
          await this.fetchAfter(t, ids.length ? Math.min(...ids) - 1 : 0);
        }
      } while (t.fillAgain);
    } catch (e) {
      this.showError(e);
    } finally {
      t.filling = false;
    }
  }

  /** A typing hint from another member. */
  onHint(h) {
    const from = this.wire.users.real(Number(h.from));
    if (h.type !== 'typing' || from == null || from === this.me) return;
    const t = this.threads.get(this.wire.threads.real(Number(h.thread)));
    if (!t) return;
    t.online.add(from);
    t.typing.set(from, Date.now() + TYPING_SHOW_MS);
    this.renderTyping();
    this.renderThreadList();
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => this.renderTyping(), TYPING_SHOW_MS + 50);
  }

  /**
   * Stores a message in its thread and updates the page. `live`: it just
   * arrived (unread count, announcement, read mark).
   */
  applyMessage(t, m, { live, clientId } = {}) {
    const known = t.messages.get(m.id);
    if (clientId && t.pending && t.pending.has(clientId)) {
      // Our own message, pushed back before the POST replied.
      const p = t.pending.get(clientId);
      t.pending.delete(clientId);
      if (p.node) p.node.remove();
    }
    const same = known && JSON.stringify(known) === JSON.stringify(m);
    t.messages.set(m.id, m);
    if (known && !same && t.lastMessage && t.lastMessage.id === m.id) {
      // The list's preview follows edits and deletions of the last message.
      t.lastMessage = m;
      this.renderThreadList();
    }
    if (!known) {
      if (m.sender !== this.me) t.online.add(m.sender);
      if (!t.lastMessage || m.id >= t.lastMessage.id) t.lastMessage = m;
      if (live && m.sender !== this.me) {
        const visible = this.current === t.id && !document.hidden;
        if (visible) this.scheduleRead(t.id);
        else t.unread = (t.unread || 0) + 1;
        this.announce(fmt(this.t.newMessageFrom, this.name(m.sender), m.deleted ? this.t.deleted : m.text));
      }
      this.renderThreadList();
    }
    if (this.current === t.id && !same) this.renderMessage(t, m);
  }

  // ---- actions ------------------------------------------------------------

  /** Opens a thread: latest 50 messages, read mark, focus the composer. */
  async openThread(id, { focus = true } = {}) {
    const t = this.threads.get(id);
    if (!t) return;
    this.current = id;
    this.subscribe(id);
    // Phone width shows one pane: the conversation once the person picks one.
    if (focus) this.root.classList.add('bmc-show-conv');
    if (location.hash !== `#thread-${id}`) history.replaceState(null, '', `#thread-${id}`);
    this.renderThreadList();
    this.renderConversation();
    if (!t.loaded) {
      try {
        const r = await this.rest('GET', `/threads/${id}/messages?before=${MAX_ID}&limit=50`);
        t.hasMore = r.has_more;
        t.loaded = true;
        for (const m of r.messages) t.messages.set(m.id, m);
      } catch (e) {
        this.showError(e);
      }
      if (this.current === id) this.renderConversation();
    }
    t.unread = 0;
    this.renderThreadList();
    this.scheduleRead(id);
    this.refreshPresenceSoon();
    if (focus && this.current === id) this.els.input.focus();
  }

  /** Loads the 50 messages before the oldest one shown. */
  async loadEarlier() {
    const t = this.threads.get(this.current);
    if (!t) return;
    const oldest = Math.min(...[...t.messages.keys()]);
    const r = await this.rest('GET', `/threads/${t.id}/messages?before=${oldest}&limit=50`);
    t.hasMore = r.has_more;
    for (const m of r.messages) t.messages.set(m.id, m);
    this.renderConversation({ keepScroll: true });
  }

  /** Marks the open thread read up to its newest message (debounced). */
  scheduleRead(id) {
    clearTimeout(this.readTimer);
    this.readTimer = setTimeout(async () => {
      const t = this.threads.get(id);
      if (!t || this.current !== id || document.hidden) return;
      const ids = [...t.messages.values()].filter((m) => m.sender !== this.me).map((m) => m.id);
      const newest = ids.length ? Math.max(...ids) : 0;
      if (!newest || newest <= (t.lastReadId || 0)) return;
      try {
        const r = await this.rest('POST', `/threads/${id}/read`, { message_id: newest });
        t.lastReadId = r.last_read_id;
        t.unread = r.unread;
        this.renderThreadList();
      } catch {
        // The next open or new message tries again.
      }
    }, 300);
  }

  /** Sends the composer's text as a new message. */
  async send(text, retryOf) {
    const t = this.threads.get(this.current);
    if (!t || !text.trim()) return;
    // The next keystroke announces typing again at once.
    this.typingSentAt = 0;
    const clientId = 'c' + Math.random().toString(36).slice(2) + Date.now().toString(36);
    t.pending ??= new Map();
    const pending = { clientId, text, node: null, thread: t.id };
    t.pending.set(clientId, pending);
    if (retryOf && retryOf.node) retryOf.node.remove();
    pending.node = this.pendingNode(pending, 'sending');
    this.els.list.append(pending.node);
    this.scrollToEnd();
    try {
      const r = await this.rest('POST', `/threads/${t.id}/messages`, { text, client_id: clientId });
      if (t.pending.has(clientId)) {
        t.pending.delete(clientId);
        pending.node.remove();
      }
      const set = t.deliveredTo.get(r.message.id) || new Set();
      for (const u of r.delivered_to || []) set.add(u);
      t.deliveredTo.set(r.message.id, set);
      this.applyMessage(t, r.message, { live: false });
      this.renderMarks(t);
    } catch (e) {
      if (pending.node.isConnected) pending.node.replaceWith((pending.node = this.pendingNode(pending, 'failed')));
      this.showError(e);
    }
  }

  /** Sends a typing hint (at most every TYPING_SEND_MS). */
  typing() {
    const t = this.current;
    const wt = t && this.wire.threads.wire(t);
    if (!wt || !this.client || this.client.state !== 'connected') return;
    if (Date.now() - this.typingSentAt < TYPING_SEND_MS) return;
    this.typingSentAt = Date.now();
    this.client.publish(wt, 'typing', { thread: t }).catch(() => {});
  }

  /** Toggles one reaction of ours. */
  async react(t, m, emoji) {
    const mine = (m.reactions || []).some((r) => r.emoji === emoji && r.users.includes(this.me));
    try {
      const r = await this.rest('POST', `/messages/${m.id}/reactions`, { emoji, remove: mine });
      const cur = t.messages.get(m.id);
      if (cur) this.applyMessage(t, { ...cur, reactions: r.reactions }, { live: false });
    } catch (e) {
      this.showError(e);
    }
  }

  /** Deletes one of our messages (after a confirmation). */
  async remove(t, m) {
    if (!window.confirm(this.t.confirmDelete)) return;
    try {
      await this.rest('DELETE', `/messages/${m.id}`);
      const cur = t.messages.get(m.id);
      if (cur) this.applyMessage(t, { ...cur, text: null, deleted: true, reactions: [] }, { live: false });
      this.els.input.focus();
    } catch (e) {
      this.showError(e);
    }
  }

  /** Saves an edit of one of our messages. */
  async saveEdit(t, m, text) {
    try {
      const r = await this.rest('PATCH', `/messages/${m.id}`, { text });
      this.applyMessage(t, r.message, { live: false });
    } catch (e) {
      this.showError(e);
      this.renderMessage(t, t.messages.get(m.id));
    }
  }

  /** Creates a thread with the chosen people. */
  async createThread(people, subject, text) {
    const body = { participants: people.map((p) => p.id) };
    if (subject) body.subject = subject;
    if (text) body.text = text;
    const r = await this.rest('POST', '/threads', body);
    this.mergeThread(r.thread);
    await this.bundle(true).catch(() => null);
    this.subscribe(r.thread.id);
    this.renderThreadList();
    await this.openThread(r.thread.id);
  }

  /** One refreshPresence for every reason that arrives within PRESENCE_SOON_MS (a burst of subscriptions, a connect). */
  refreshPresenceSoon() {
    if (this.presenceSoon) return;
    this.presenceSoon = setTimeout(() => {
      this.presenceSoon = null;
      this.refreshPresence();
    }, PRESENCE_SOON_MS);
  }

  /**
   * Asks the relay, over the page's socket, who is online in the threads
   * shown (the open one and the most recent): the members with a tab
   * subscribed to the thread, on whichever relay node. No request to
   * WordPress (its REST /presence stays for clients without a socket).
   * The relay answers for threads this socket watches only; the page
   * watches the MAX_LIVE_THREADS most active and the open one.
   */
  async refreshPresence() {
    // A hidden tab shows nobody anything: it does not ask.
    if (!this.client || this.client.state !== 'connected' || document.hidden) return;
    const ids = [...new Set([this.current, ...this.sortedThreads().slice(0, PRESENCE_THREADS).map((t) => t.id)])].filter(Boolean);
    if (!ids.length) return;
    try {
      const wires = ids.map((id) => this.wire.threads.wire(id)).filter((w) => w != null);
      const online = await this.client.presence(wires);
      for (const [wt, users] of online) {
        const t = this.threads.get(this.wire.threads.real(wt));
        if (!t) continue;
        const real = users.map((u) => this.wire.users.real(u));
        t.online = new Set(real.filter((u) => u != null && u !== this.me));
      }
    } catch {
      // Not connected right now, or rate limited: keep what we know.
    }
    this.renderThreadList();
    if (this.current) this.renderHeader();
  }

  // ---- rendering ----------------------------------------------------------

  name(u) {
    return this.names.get(u) || this.t.someone;
  }

  threadTitle(t) {
    if (t.subject) return t.subject;
    const others = (t.participants || []).filter((u) => u !== this.me).map((u) => this.name(u));
    return others.join(', ') || this.t.someone;
  }

  sortedThreads() {
    return [...this.threads.values()].sort((a, b) => (b.lastMessage?.id || 0) - (a.lastMessage?.id || 0) || (b.updated || 0) - (a.updated || 0) || b.id - a.id);
  }

  /** Builds the static frame of the page. */
  build() {
    const t = this.t;
    const uid = `bmc-${Math.random().toString(36).slice(2, 8)}`;
    this.els = {};
    const E = this.els;
    E.conn = el('span', { class: 'bmc-conn', role: 'status', 'data-state': 'connecting' }, t.connecting);
    E.notice = el('div', { class: 'bmc-notice', role: 'alert', hidden: true });
    E.announce = el('div', { class: 'bmc-sr', 'aria-live': 'polite', 'aria-atomic': 'true' });
    E.threadList = el('ul', { class: 'bmc-thread-list' });
    E.newBtn = el('button', { type: 'button', class: 'bmc-new', 'aria-expanded': 'false', onclick: () => this.toggleNewForm() }, t.newConversation);
    E.newForm = this.buildNewForm(uid);
    E.title = el('h3', { class: 'bmc-conv-title', id: `${uid}-title`, tabindex: '-1' });
    E.members = el('p', { class: 'bmc-members' });
    E.back = el('button', { type: 'button', class: 'bmc-back', onclick: () => this.showList() }, '‹ ', t.back);
    E.earlier = el('button', { type: 'button', class: 'bmc-earlier', hidden: true, onclick: () => this.loadEarlier().catch((e) => this.showError(e)) }, t.loadEarlier);
    E.list = el('ol', { class: 'bmc-messages', 'aria-labelledby': `${uid}-title` });
    E.scroller = el('div', { class: 'bmc-scroll' }, E.earlier, E.list);
    E.typing = el('p', { class: 'bmc-typing', 'aria-live': 'polite' });
    E.input = el('textarea', { id: `${uid}-input`, class: 'bmc-input', rows: '2', maxlength: '5000', required: true });
    E.sendBtn = el('button', { type: 'submit', class: 'bmc-send' }, t.send);
    E.composer = el(
      'form',
      { class: 'bmc-composer', onsubmit: (ev) => this.onSubmit(ev) },
      el('label', { for: `${uid}-input`, class: 'bmc-sr' }, t.message),
      E.input,
      E.sendBtn,
    );
    E.input.addEventListener('input', () => this.typing());
    E.input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        E.composer.requestSubmit();
      }
    });
    E.empty = el('p', { class: 'bmc-empty' }, t.pickThread);
    E.conv = el(
      'section',
      { class: 'bmc-conv', 'aria-labelledby': `${uid}-title` },
      el('header', { class: 'bmc-conv-head' }, E.back, el('div', {}, E.title, E.members)),
      E.empty,
      E.scroller,
      E.typing,
      E.composer,
    );
    const nav = el('nav', { class: 'bmc-side', 'aria-label': t.conversations }, E.newBtn, E.newForm, E.threadList);
    this.root.replaceChildren(
      el('div', { class: 'bmc' }, el('header', { class: 'bmc-bar' }, el('h2', {}, t.title), E.conn), E.notice, el('div', { class: 'bmc-body' }, nav, E.conv), E.announce),
    );
    this.renderConversation();
  }

  /** The "new conversation" form: user search, chosen people, subject. */
  buildNewForm(uid) {
    const t = this.t;
    const chosen = [];
    const search = el('input', { id: `${uid}-search`, type: 'search', autocomplete: 'off', 'aria-describedby': `${uid}-search-hint` });
    const results = el('ul', { class: 'bmc-results', 'aria-live': 'polite' });
    const chosenList = el('ul', { class: 'bmc-chosen' });
    const subject = el('input', { id: `${uid}-subject`, type: 'text', maxlength: '200' });
    const first = el('textarea', { id: `${uid}-first`, rows: '2', maxlength: '5000' });
    const createBtn = el('button', { type: 'submit', class: 'bmc-create', disabled: true }, t.create);
    const renderChosen = () => {
      chosenList.replaceChildren(
        ...chosen.map((p) =>
          el(
            'li',
            {},
            el(
              'button',
              {
                type: 'button',
                class: 'bmc-chip',
                'aria-label': fmt(t.removeChosen, p.name),
                onclick: () => {
                  chosen.splice(chosen.indexOf(p), 1);
                  renderChosen();
                  search.focus();
                },
              },
              p.name,
              ' ×',
            ),
          ),
        ),
      );
      createBtn.disabled = chosen.length === 0;
    };
    let seq = 0;
    const doSearch = async () => {
      const q = search.value.trim();
      const my = ++seq;
      if (q.length < 2) {
        results.replaceChildren();
        return;
      }
      try {
        const r = await this.rest('GET', `/users?search=${encodeURIComponent(q)}`);
        if (my !== seq) return;
        const users = r.users.filter((u) => !chosen.some((c) => c.id === u.id));
        results.replaceChildren(
          ...(users.length
            ? users.map((u) => {
                this.names.set(u.id, u.name);
                return el(
                  'li',
                  {},
                  el(
                    'button',
                    {
                      type: 'button',
                      class: 'bmc-person',
                      'aria-label': fmt(t.add, u.name),
                      onclick: () => {
                        chosen.push(u);
                        renderChosen();
                        search.value = '';
                        results.replaceChildren();
                        search.focus();
                      },
                    },
                    el('span', { class: 'bmc-avatar', 'aria-hidden': 'true' }, initials(u.name)),
                    u.name,
                  ),
                );
              })
            : [el('li', { class: 'bmc-none' }, t.noPeople)]),
        );
      } catch (e) {
        this.showError(e);
      }
    };
    let timer = null;
    search.addEventListener('input', () => {
      clearTimeout(timer);
      timer = setTimeout(doSearch, 250);
    });
    const form = el(
      'form',
      {
        class: 'bmc-newform',
        hidden: true,
        onsubmit: async (ev) => {
          ev.preventDefault();
          if (!chosen.length) return;
          createBtn.disabled = true;
          try {
            await this.createThread(chosen.slice(), subject.value.trim(), first.value.trim());
            chosen.length = 0;
            renderChosen();
            subject.value = first.value = search.value = '';
            results.replaceChildren();
            this.toggleNewForm(false);
          } catch (e) {
            this.showError(e);
          } finally {
            createBtn.disabled = chosen.length === 0;
          }
        },
      },
      el('label', { for: `${uid}-search` }, t.searchPeople),
      search,
      el('p', { id: `${uid}-search-hint`, class: 'bmc-hint' }, t.searchHint),
      results,
      chosenList,
      el('label', { for: `${uid}-subject` }, t.subject),
      subject,
      el('label', { for: `${uid}-first` }, t.firstMessage),
      first,
      el('div', { class: 'bmc-row' }, createBtn, el('button', { type: 'button', onclick: () => this.toggleNewForm(false) }, t.cancel)),
    );
    form.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape') {
        ev.preventDefault();
        this.toggleNewForm(false);
      }
    });
    form.focusFirst = () => search.focus();
    return form;
  }

  toggleNewForm(show) {
    const f = this.els.newForm;
    const open = show ?? f.hidden;
    f.hidden = !open;
    this.els.newBtn.setAttribute('aria-expanded', String(open));
    if (open) f.focusFirst();
    else this.els.newBtn.focus();
  }

  /** Phone width: back from the conversation to the list. */
  showList() {
    this.root.classList.remove('bmc-show-conv');
    const cur = this.els.threadList.querySelector('[aria-current="true"]');
    (cur || this.els.newBtn).focus();
  }

  onSubmit(ev) {
    ev.preventDefault();
    const text = this.els.input.value;
    if (!text.trim()) return;
    this.els.input.value = '';
    this.send(text);
  }

  /** Visible connection state; `data-state` is what tests read. */
  setConn(state) {
    this.connState = state;
    const streaming = this.client?.transport === 'stream';
    const label = {
      connecting: this.t.connecting,
      connected: streaming ? this.t.connectedStream : this.t.connected,
      'offline-polling': this.t.offlinePolling,
      offline: this.t.offlineReconnecting,
      closed: this.t.closed,
      'no-relay': this.t.noRelay,
    }[state];
    this.els.conn.dataset.state = state;
    this.els.conn.dataset.transport = this.client ? this.client.transport : '';
    this.els.conn.textContent = label || state;
  }

  notice(text) {
    this.els.notice.textContent = text;
    this.els.notice.hidden = false;
    clearTimeout(this.noticeTimer);
    this.noticeTimer = setTimeout(() => (this.els.notice.hidden = true), 8000);
  }

  showError(e) {
    const msg = e instanceof RestError ? e.message : String(e && e.message ? e.message : e);
    this.notice(fmt(this.t.error, msg));
  }

  announce(text) {
    this.els.announce.textContent = text;
  }

  renderThreadList() {
    const list = this.sortedThreads();
    if (!list.length) {
      this.threadListSig = null;
      this.threadItems = new Map();
      this.els.threadList.replaceChildren(el('li', { class: 'bmc-none' }, this.t.noThreads));
      return;
    }
    const rows = list.map((t) => {
      const others = (t.participants || []).filter((u) => u !== this.me);
      const last = t.lastMessage;
      return {
        t,
        title: this.threadTitle(t),
        online: others.some((u) => t.online.has(u)),
        preview: last ? (last.deleted ? this.t.deleted : `${this.name(last.sender)}: ${last.text}`) : '',
      };
    });
    // Touch the DOM only when something visible changed.
    const sig = JSON.stringify(rows.map((r) => [r.t.id, r.title, r.online, r.preview, r.t.unread, this.current === r.t.id]));
    if (sig === this.threadListSig) return;
    this.threadListSig = sig;
    // Buttons are kept (keyed by thread) and updated in place: a click
    // whose mousedown and mouseup straddle an update still lands, and the
    // keyboard focus stays where it was.
    this.threadItems ??= new Map();
    const list_ = this.els.threadList;
    const none = list_.querySelector('.bmc-none');
    if (none) none.remove();
    const keep = new Set();
    rows.forEach(({ t, title, online, preview }, i) => {
      keep.add(t.id);
      let li = this.threadItems.get(t.id);
      if (!li) {
        const btn = el('button', { type: 'button', class: 'bmc-thread', dataset: { thread: String(t.id) }, onclick: () => this.openThread(t.id) });
        li = el('li', {}, btn);
        this.threadItems.set(t.id, li);
      }
      const btn = li.firstChild;
      btn.setAttribute('aria-current', this.current === t.id ? 'true' : 'false');
      btn.replaceChildren(
        el('span', { class: 'bmc-dot', dataset: { online: String(online) }, title: online ? this.t.online : this.t.offline }),
        el('span', { class: 'bmc-sr' }, online ? this.t.online : this.t.offline),
        el('span', { class: 'bmc-thread-main' }, el('span', { class: 'bmc-thread-title' }, title), el('span', { class: 'bmc-preview' }, preview)),
        // replaceChildren() would print a null as the text "null": no badge is no node.
        ...(t.unread > 0 ? [el('span', { class: 'bmc-unread', 'aria-label': plural(this.t.unread, t.unread) }, String(t.unread))] : []),
      );
      if (list_.children[i] !== li) {
        const hadFocus = li.contains(document.activeElement);
        list_.insertBefore(li, list_.children[i] || null);
        if (hadFocus) btn.focus();
      }
    });
    for (const [id, li] of this.threadItems) {
      if (!keep.has(id)) {
        li.remove();
        this.threadItems.delete(id);
      }
    }
  }

  renderHeader() {
    const t = this.threads.get(this.current);
    if (!t) return;
    this.els.title.textContent = this.threadTitle(t);
    const people = (t.participants || []).map((u) => (u === this.me ? this.t.you : this.name(u) + (t.online.has(u) ? ` (${this.t.online})` : '')));
    this.els.members.textContent = fmt(this.t.members, people.join(', '));
  }

  /** Renders the open thread from scratch. */
  renderConversation({ keepScroll = false } = {}) {
    const E = this.els;
    const t = this.threads.get(this.current);
    E.empty.hidden = !!t;
    E.scroller.hidden = E.composer.hidden = !t;
    E.conv.dataset.thread = t ? String(t.id) : '';
    if (!t) {
      E.title.textContent = this.t.title;
      E.members.textContent = '';
      E.list.replaceChildren();
      E.typing.textContent = '';
      return;
    }
    this.renderHeader();
    const before = E.scroller.scrollHeight - E.scroller.scrollTop;
    E.list.replaceChildren(...[...t.messages.values()].sort((a, b) => a.id - b.id).map((m) => this.messageNode(t, m)));
    for (const p of t.pending ? t.pending.values() : []) if (p.node) E.list.append(p.node);
    E.earlier.hidden = !t.hasMore;
    this.renderTyping();
    if (keepScroll) E.scroller.scrollTop = E.scroller.scrollHeight - before;
    else this.scrollToEnd();
  }

  /** Inserts or replaces one message in the open thread, in id order. */
  renderMessage(t, m) {
    const list = this.els.list;
    const node = this.messageNode(t, m);
    const old = list.querySelector(`li[data-id="${m.id}"]`);
    if (old) {
      const hadFocus = old.contains(document.activeElement);
      old.replaceWith(node);
      if (hadFocus) node.querySelector('.bmc-actions button')?.focus();
      return;
    }
    const nearEnd = this.els.scroller.scrollHeight - this.els.scroller.scrollTop - this.els.scroller.clientHeight < 80;
    const after = [...list.querySelectorAll('li.bmc-msg[data-id]')].find((li) => Number(li.dataset.id) > m.id);
    if (after) list.insertBefore(node, after);
    else {
      const firstPending = list.querySelector('li.bmc-pending');
      list.insertBefore(node, firstPending);
    }
    if (nearEnd || m.sender === this.me) this.scrollToEnd();
  }

  scrollToEnd() {
    const s = this.els.scroller;
    s.scrollTop = s.scrollHeight;
  }

  /** Status of one of our messages for the others: sent, delivered, read. */
  status(t, m) {
    for (const [u, upto] of t.readBy) if (u !== this.me && upto >= m.id) return 'read';
    const d = t.deliveredTo.get(m.id);
    if (d && d.size) return 'delivered';
    // A later delivery or read implies this one arrived too.
    for (const [id, set] of t.deliveredTo) if (id > m.id && set.size) return 'delivered';
    return 'sent';
  }

  renderMarks(t) {
    if (this.current !== t.id) return;
    for (const li of this.els.list.querySelectorAll('li.bmc-msg.bmc-own[data-id]')) {
      const m = t.messages.get(Number(li.dataset.id));
      const mark = li.querySelector('.bmc-mark');
      if (!m || !mark || m.deleted) continue;
      const s = this.status(t, m);
      if (mark.dataset.status !== s) {
        mark.dataset.status = s;
        mark.textContent = this.t[s];
      }
    }
  }

  /** The list item of one message (text as text). */
  messageNode(t, m) {
    const own = m.sender === this.me;
    const time = new Date(m.created * 1000);
    const head = el(
      'p',
      { class: 'bmc-meta' },
      el('span', { class: 'bmc-author' }, own ? this.t.you : this.name(m.sender)),
      ' ',
      el('time', { datetime: time.toISOString() }, time.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })),
      m.edited && !m.deleted ? el('span', { class: 'bmc-edited' }, ` (${this.t.edited})`) : null,
    );
    const li = el('li', { class: `bmc-msg${own ? ' bmc-own' : ''}${m.deleted ? ' bmc-deleted' : ''}`, dataset: { id: String(m.id), sender: String(m.sender) } }, head);
    if (m.deleted) {
      li.append(el('p', { class: 'bmc-text bmc-tombstone' }, this.t.deleted));
      return li;
    }
    li.append(el('p', { class: 'bmc-text' }, m.text));
    const reactions = (m.reactions || []).filter((r) => r.users.length);
    if (reactions.length) {
      li.append(
        el(
          'ul',
          { class: 'bmc-reactions', 'aria-label': this.t.reactions },
          ...reactions.map((r) => {
            const names = r.users.map((u) => (u === this.me ? this.t.you : this.name(u))).join(', ');
            return el(
              'li',
              {},
              el(
                'button',
                {
                  type: 'button',
                  class: 'bmc-reaction',
                  'aria-pressed': String(r.users.includes(this.me)),
                  title: names,
                  'aria-label': `${r.emoji} ${r.users.length}: ${names}`,
                  dataset: { emoji: r.emoji },
                  onclick: () => this.react(t, m, r.emoji),
                },
                `${r.emoji} ${r.users.length}`,
              ),
            );
          }),
        ),
      );
    }
    const actions = el('div', { class: 'bmc-actions' });
    for (const emoji of QUICK_REACTIONS) {
      actions.append(el('button', { type: 'button', class: 'bmc-quick', 'aria-label': fmt(this.t.react, emoji), dataset: { emoji }, onclick: () => this.react(t, m, emoji) }, emoji));
    }
    if (own) {
      actions.append(el('button', { type: 'button', class: 'bmc-edit', onclick: () => this.editNode(t, m, li) }, this.t.edit));
      actions.append(el('button', { type: 'button', class: 'bmc-delete', onclick: () => this.remove(t, m) }, this.t.del));
      const s = this.status(t, m);
      head.append(' ', el('span', { class: 'bmc-mark', dataset: { status: s } }, this.t[s]));
    }
    li.append(actions);
    return li;
  }

  /** Replaces a message's text with an edit form. */
  editNode(t, m, li) {
    const id = `bmc-edit-${m.id}`;
    const area = el('textarea', { id, rows: '2', maxlength: '5000' });
    area.value = m.text;
    const form = el(
      'form',
      {
        class: 'bmc-editform',
        onsubmit: (ev) => {
          ev.preventDefault();
          if (area.value.trim() && area.value !== m.text) this.saveEdit(t, m, area.value);
          else this.renderMessage(t, t.messages.get(m.id));
        },
      },
      el('label', { for: id, class: 'bmc-sr' }, this.t.edit),
      area,
      el('div', { class: 'bmc-row' }, el('button', { type: 'submit' }, this.t.save), el('button', { type: 'button', onclick: () => this.renderMessage(t, t.messages.get(m.id)) }, this.t.cancel)),
    );
    area.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape') this.renderMessage(t, t.messages.get(m.id));
    });
    li.querySelector('.bmc-text').replaceWith(form);
    li.querySelector('.bmc-actions').hidden = true;
    area.focus();
  }

  /** A message of ours not stored yet: sending, or failed with a retry button. */
  pendingNode(p, state) {
    const li = el('li', { class: 'bmc-msg bmc-own bmc-pending', dataset: { client: p.clientId, state } }, el('p', { class: 'bmc-meta' }, el('span', { class: 'bmc-author' }, this.t.you), ' ', el('span', { class: 'bmc-mark', dataset: { status: state } }, state === 'failed' ? this.t.failed : this.t.sending)), el('p', { class: 'bmc-text' }, p.text));
    if (state === 'failed') {
      li.append(
        el(
          'div',
          { class: 'bmc-actions' },
          el(
            'button',
            {
              type: 'button',
              onclick: () => {
                const t = this.threads.get(p.thread);
                if (t && t.pending) t.pending.delete(p.clientId);
                if (this.current === p.thread) this.send(p.text, p);
              },
            },
            this.t.retry,
          ),
        ),
      );
    }
    return li;
  }

  renderTyping() {
    const t = this.threads.get(this.current);
    if (!t) return;
    const now = Date.now();
    for (const [u, until] of t.typing) if (until < now) t.typing.delete(u);
    const who = [...t.typing.keys()];
    const text =
      who.length === 0
        ? ''
        : who.length === 1
          ? fmt(this.t.typing, this.name(who[0]))
          : who.length === 2
            ? fmt(this.t.typingTwo, this.name(who[0]), this.name(who[1]))
            : plural(this.t.typingMany, who.length);
    if (this.els.typing.textContent !== text) this.els.typing.textContent = text;
  }
}

function initials(name) {
  return String(name)
    .split(/\s+/)
    .filter(Boolean)
    .slice(0, 2)
    .map((w) => w[0].toUpperCase())
    .join('');
}

/** Mounts the chat on `#bm-chat` (the `[bm_chat]` shortcode's element). */
function mount() {
  const root = document.getElementById('bm-chat');
  if (!root || root.dataset.mounted) return;
  root.dataset.mounted = '1';
  let config;
  try {
    config = JSON.parse(root.dataset.config || '{}');
  } catch {
    config = {};
  }
  if (!config.rest || !config.nonce || !config.user) {
    root.textContent = 'bm-chat: missing configuration';
    return;
  }
  const chat = new BmChat(root, config);
  // A handle for the site's own scripts and for tests (e.g. to read state).
  window.bmChat = chat;
  chat.start();
}

if (typeof document !== 'undefined') {
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', mount);
  else mount();
}
