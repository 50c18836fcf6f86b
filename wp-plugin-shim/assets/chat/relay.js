// The relay connection glue: the `POST /token` bundle (connection token,
// user key, per-thread keys and tokens, cached for half its life), the
// BmClient with its callbacks onto WordPress, wire ids (what the relay
// calls our users and threads, bm-wire.js), which key ids are worth asking
// WordPress for (and how often), and the relay subscriptions of threads.
// What arrives over the connection is handled in events.js (stored events)
// and presence.js (typing hints, who is online).

import { BmClient } from '../bm-client.js';
import { parseKeyId } from '../bm-crypto.js';
import { RestError } from './rest.js';
import { shared } from './shared.js';

/**
 * An envelope sealed with a key we do not hold makes the page ask WordPress
 * (POST /token, then a resync) — but anyone in a thread can send hints
 * sealed with any epoch of it. So a thread's key is fetched again only for
 * an epoch newer than the one we know and at most this far ahead …
 */
const KEY_EPOCH_AHEAD = 16;
/** … and at most once per thread in this many ms (the resync likewise). */
const KEY_REFETCH_MS = 30000;
/** Threads the page subscribes to on the relay at most (besides the open one). */
export const MAX_LIVE_THREADS = 50;

/** Methods of BmChat (installed by bm-chat.js): the relay connection. */
export const relay = {
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
  },

  /** Creates the relay client with callbacks onto the plugin's REST routes. */
  async startClient(b) {
    // One socket per browser: through the tabs' SharedWorker (chat/shared.js), else alone.
    const link = await shared.openShared(this, b);
    const client = new BmClient({
      // Shared: the worker reaches the relay (and picks the transport).
      ...(link ? { WebSocket: link.WebSocket, stream: false } : {}),
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
    if (link) shared.useShared(this, client, link);
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
  },

  /**
   * Whether a key id we lack is worth asking WordPress for: our own user
   * key, or a thread key of the newest epoch we know for that thread or at
   * most KEY_EPOCH_AHEAD past it (an unknown thread: a small epoch, as a
   * thread we were just added to has).
   */
  keyWorthAsking(kid, cache) {
    if (kid === `u/${this.wire.users.wire(this.me) ?? this.me}`) return true;
    const k = parseKeyId(kid);
    const thread = k?.kind === 'thread' ? this.wire.threads.real(k.thread) : null;
    if (thread == null) return false;
    const epoch = k.epoch;
    const known = Math.max(this.threads.get(thread)?.epoch ?? -1, cache?.threads?.get(thread)?.epoch ?? -1);
    if (known < 0) return epoch <= KEY_EPOCH_AHEAD;
    // The known epoch itself too: a thread too old for the /token bundle
    // has its current key fetched on its own (threadKeys).
    return epoch >= known && epoch <= known + KEY_EPOCH_AHEAD;
  },

  /** True (and remembered) when `kid`'s thread was not asked about within KEY_REFETCH_MS. */
  rateOk(map, kid) {
    const thread = (/^t\/(\d+)\//.exec(kid || '') || [])[1] || kid;
    const now = Date.now();
    if (now - (map.get(thread) ?? -Infinity) < KEY_REFETCH_MS) return false;
    map.set(thread, now);
    return true;
  },

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
  },

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
  },

  /** The WordPress id of the thread of key id `kid` (`t/{wire}/{epoch}`), or null. */
  kidThread(kid) {
    const k = parseKeyId(kid);
    return k?.kind === 'thread' ? this.wire.threads.real(k.thread) : null;
  },

  /** Maps the client's state and polling onto the visible connection state. */
  onClientState(state) {
    if (state === 'connected') this.setConn('connected');
    else if (state === 'closed') this.setConn('closed');
    else if (state === 'connecting' && !this.everConnected) this.setConn('connecting');
    else this.setConn(this.polling ? 'offline-polling' : state === 'connecting' ? 'connecting' : 'offline');
    if (state === 'connected') this.everConnected = true;
  },
};
