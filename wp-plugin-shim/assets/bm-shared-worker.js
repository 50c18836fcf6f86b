// bm-shared-worker.js: the one relay connection of every tab of one browser,
// for one user on one site (docs/CLIENT.md "One socket per browser"). An ES
// module SharedWorker, started by bm-shared.js (connectShared) under a name
// holding the site and the user's wire id.
//
// It holds one BmClient in `sealed` mode: it connects, refreshes, pings,
// falls back to the stream, reconnects with backoff, but opens nothing: it
// has no key. Each tab's own BmClient talks to it through a PortSocket as if
// to the relay (auth, sub, unsub, pub, presence, ping, refresh), and the
// worker answers as the relay would: `ready` once the shared connection is
// up; `sub` by subscribing the connection to the thread if no tab had it
// (the union of the tabs' threads); pushes to every tab, a thread's hints to
// the tabs subscribed to it. A tab that closes (`pagehide` → `bye`) or falls
// silent (the heartbeat) loses its subscriptions; once no tab is left the
// connection closes after a short grace.

import { BmClient } from './bm-client.js';
import { SHARED_VERSION } from './bm-shared.js';

/** Timings (ms); a tab's `hello` may shorten them (tests). */
const timing = {
  /** the worker asks each tab to answer this often … */
  heartbeat: 10000,
  /** … and drops a tab not heard from for this long (hidden tabs answer messages: timers are throttled, ports not) */
  silent: 45000,
  /** the connection outlives its last tab by this much: a reload keeps it */
  grace: 5000,
  /** a tab asked for a token answers within this, else another tab is asked */
  token: 10000,
};

/** Close codes that make a client fetch a new connection token (PROTOCOL.md §6). */
const TOKEN_CLOSES = new Set([4001, 4003, 4009]);

/** A connection token a tab just sent (its `auth` or `refresh`) is used by the worker for this long. */
const FRESH_TOKEN_MS = 60000;

/**
 * One tab: its port, when it was last heard from, its PortSockets.
 * @typedef {{port: MessagePort, seen: number, sockets: Map<number, Sock>}} Tab
 */
/**
 * One PortSocket of a tab: authenticated or not, waiting for `ready`, and
 * its threads.
 * @typedef {{id: number, tab: Tab, authed: boolean, waiting: boolean, subs: Set<number>}} Sock
 */

/** @type {Set<Tab>} */
const tabs = new Set();
/** @type {{url?: string, urls?: string[], site: string, options?: object}|null} what the first tab said to connect with */
let config = null;
/** @type {BmClient|null} */
let client = null;
/** @type {{user: number, exp: number}|null} the shared connection's `ready` */
let ready = null;
/** the last close of the shared connection, handed to a tab that tries while it is down */
let lastClose = { code: 1006, reason: 'not connected' };
/** @type {Map<number, Set<Sock>>} thread → the sockets subscribed to it (the connection holds the union) */
const union = new Map();
/** @type {Map<number, string>} thread → the latest thread token a tab sent (the connection's `sub` uses it) */
const threadTokens = new Map();
/** @type {{value: string, at: number}|null} */
let freshToken = null;
/** @type {any} */
let graceTimer = null;
let askId = 0;
/** @type {Map<number, {resolve: Function, reject: Function, timer: any}>} */
const asks = new Map();

/** @param {Sock} s @param {object} frame a relay frame to the tab's client */
function reply(s, frame) {
  s.tab.port.postMessage({ t: 'frame', sock: s.id, text: JSON.stringify(frame) });
}

/** Every authenticated socket of every tab. */
function* authedSockets() {
  for (const tab of tabs) for (const s of tab.sockets.values()) if (s.authed) yield s;
}

/** @param {Tab} tab */
function post(tab, msg) {
  try {
    tab.port.postMessage(msg);
  } catch {
    // the tab is gone: the heartbeat drops it
  }
}

/** @param {Sock} s closes a socket as the relay would, with `code` */
function closeSocket(s, code, reason) {
  dropSocket(s);
  post(s.tab, { t: 'closed', sock: s.id, code, reason });
}

/** @param {Sock} s forgets a socket and its threads */
function dropSocket(s) {
  if (s.tab.sockets.get(s.id) !== s) return;
  s.tab.sockets.delete(s.id);
  for (const t of s.subs) unionRemove(s, t);
  s.subs.clear();
}

/** @param {Sock} s @param {number} t the thread's last socket gone: the connection unsubscribes */
function unionRemove(s, t) {
  const set = union.get(t);
  if (!set) return;
  set.delete(s);
  if (set.size) return;
  union.delete(t);
  client?.unsubscribe(t).catch(() => {});
}

/** @param {Tab} tab a tab closed or fell silent: its sockets and threads go */
function dropTab(tab) {
  for (const s of [...tab.sockets.values()]) dropSocket(s);
  tabs.delete(tab);
  try {
    tab.port.close();
  } catch {
    // already closed
  }
  if (tabs.size === 0 && !graceTimer) {
    graceTimer = setTimeout(() => {
      graceTimer = null;
      if (tabs.size) return;
      client?.close();
      client = null;
      ready = null;
    }, timing.grace);
  }
}

/**
 * A connection token for the shared connection: one a tab just sent, else
 * one asked of the tabs in turn, the one heard from last first (each asks
 * WordPress, `POST /token`).
 */
async function getToken() {
  if (freshToken && Date.now() - freshToken.at < FRESH_TOKEN_MS) {
    const v = freshToken.value;
    freshToken = null;
    return v;
  }
  let last = new Error('no tab to ask for a token');
  for (const tab of [...tabs].sort((a, b) => b.seen - a.seen)) {
    try {
      return await askToken(tab);
    } catch (e) {
      last = e;
    }
  }
  throw last;
}

/** @param {Tab} tab */
function askToken(tab) {
  return new Promise((resolve, reject) => {
    const id = ++askId;
    const timer = setTimeout(() => {
      asks.delete(id);
      reject(new Error('the tab did not answer with a token'));
    }, timing.token);
    asks.set(id, { resolve, reject, timer });
    post(tab, { t: 'token?', id });
  });
}

/** The shared connection, created (or made anew after `closed`) at the first `auth`. */
function ensureClient() {
  if (client && client.state !== 'closed') return client;
  if (graceTimer) clearTimeout(graceTimer);
  graceTimer = null;
  const c = new BmClient({
    ...(config.options || {}),
    url: config.url,
    urls: config.urls,
    site: config.site,
    sealed: true,
    getToken,
    getThreadToken: (t) => {
      const token = threadTokens.get(t);
      if (!token) throw new Error(`no thread token for ${t}`);
      return token;
    },
  });
  client = c;
  c.on('ready', (r) => {
    ready = { user: r.user, exp: r.exp };
    // Which relay node and transport the tabs are on now: before their `ready`.
    announce(c);
    for (const s of authedSockets()) if (s.waiting) sendReady(s);
    // Tabs waiting out their backoff connect now.
    for (const tab of tabs) post(tab, { t: 'up' });
  });
  c.on('state', ({ state, code, reason }) => {
    if (c !== client || (state !== 'disconnected' && state !== 'closed')) return;
    ready = null;
    lastClose = { code: code ?? 1006, reason: reason ?? '' };
    // Every tab's socket closes with the shared connection's code: each
    // client reconnects (with its backoff; `up` cuts it short), catches up,
    // and subscribes again with fresh thread tokens. 4001/4003 make the
    // tabs fetch a new token, as they did alone.
    const code2 = state === 'closed' ? 4001 : lastClose.code;
    for (const s of [...authedSockets()]) closeSocket(s, code2, lastClose.reason);
  });
  c.on('transport', () => announce(c));
  c.on('sealed', (f) => {
    if (f.from !== undefined) {
      // A member's hint: to the tabs watching its thread.
      for (const s of union.get(f.thread) ?? []) reply(s, f);
    } else {
      // A push: to every tab (user pushes reach all of a user's sockets).
      for (const s of authedSockets()) reply(s, f);
    }
  });
  c.on('unsub', ({ thread, reason }) => {
    if (reason !== 'revoked') return; // a refused `sub` is answered to the tab that sent it
    for (const s of union.get(thread) ?? []) {
      s.subs.delete(thread);
      reply(s, { op: 'unsub', thread });
    }
    union.delete(thread);
  });
  c.connect();
  return c;
}

/** @param {BmClient} c tells every tab the connection's transport and relay URL (the page shows them as its client's) */
function announce(c) {
  for (const tab of tabs) post(tab, { t: 'transport', transport: c.transport, url: c.url });
}

/** @param {Sock} s */
function sendReady(s) {
  s.waiting = false;
  reply(s, { op: 'ready', user: ready.user, exp: ready.exp });
}

/** @param {unknown} e */
const codeOf = (e) => (e && typeof e === 'object' && typeof e.code === 'string' ? e.code : 'bad_frame');
/** @param {unknown} e */
const textOf = (e) => String(e && typeof e === 'object' && 'message' in e ? e.message : e);

/** @param {Sock} s @param {any} f a frame from the tab's client, answered as the relay would */
function onFrame(s, f) {
  const ref = f.ref;
  const fail = (code, message) => reply(s, { op: 'error', ...(ref !== undefined ? { ref } : {}), code, message });
  if (!s.authed) {
    if (f.op !== 'auth' || typeof f.token !== 'string') {
      fail('bad_frame', 'the first frame must be auth');
      closeSocket(s, 4001, 'not authenticated');
      return;
    }
    s.authed = true;
    freshToken = { value: f.token, at: Date.now() };
    const c = ensureClient();
    if (c.state === 'connected' && ready) sendReady(s);
    else if (c.state === 'connecting') s.waiting = true;
    // Down and waiting out its backoff: this attempt fails as one to a
    // dead relay would (the tab counts it, and polls after a few). Not with
    // a token refusal: the tab's new token was not what the relay refused,
    // and a tab refused twice with the same token gives up for good.
    else closeSocket(s, TOKEN_CLOSES.has(lastClose.code) ? 1006 : lastClose.code, lastClose.reason);
    return;
  }
  const thread = f.thread;
  const threadOk = Number.isSafeInteger(thread) && thread > 0;
  switch (f.op) {
    case 'ping':
      reply(s, { op: 'pong', ref });
      return;
    case 'refresh':
      // The shared connection refreshes its own token; a tab's new one is
      // the next it uses.
      if (typeof f.token === 'string') freshToken = { value: f.token, at: Date.now() };
      reply(s, { op: 'ok', ref });
      return;
    case 'sub': {
      if (!threadOk || typeof f.token !== 'string') return fail('bad_frame', '`sub` needs a thread and a token');
      threadTokens.set(thread, f.token);
      s.subs.add(thread);
      if (!union.has(thread)) union.set(thread, new Set());
      union.get(thread).add(s);
      client.subscribe(thread).then(
        () => {
          if (s.subs.has(thread)) reply(s, { op: 'ok', ref });
        },
        (e) => {
          if (!s.subs.delete(thread)) return;
          unionRemove(s, thread);
          fail(codeOf(e), textOf(e));
        },
      );
      return;
    }
    case 'unsub':
      if (!threadOk) return fail('bad_frame', '`unsub` needs a thread');
      if (s.subs.delete(thread)) unionRemove(s, thread);
      reply(s, { op: 'ok', ref });
      return;
    case 'pub':
      if (!threadOk || !s.subs.has(thread)) return fail('not_subscribed', `not subscribed to thread ${thread}`);
      client.publishSealed(thread, f.e).then(
        () => {
          reply(s, { op: 'ok', ref });
          // The relay sends a `pub` to the sender's other sockets: here
          // they share one, so the worker does it for the other tabs.
          const from = ready?.user;
          for (const o of union.get(thread) ?? []) if (o !== s && from !== undefined) reply(o, { op: 'ev', thread, from, e: f.e });
        },
        (e) => fail(codeOf(e), textOf(e)),
      );
      return;
    case 'presence': {
      const asked = Array.isArray(f.threads) ? f.threads.filter((t) => Number.isSafeInteger(t) && t > 0) : [];
      if (!asked.length) return fail('bad_frame', '`presence` needs threads');
      const mine = asked.filter((t) => s.subs.has(t));
      (mine.length ? client.presence(mine) : Promise.resolve(new Map())).then(
        (m) => reply(s, { op: 'presence', ref, threads: asked.map((t) => (m.has(t) ? { thread: t, users: m.get(t) } : { thread: t, error: 'not_subscribed' })) }),
        (e) => fail(codeOf(e), textOf(e)),
      );
      return;
    }
    case 'auth':
      return fail('already_authenticated', 'already authenticated');
    default:
      fail('bad_frame', `unknown op ${String(f.op)}`);
  }
}

/** @param {Tab} tab @param {any} d a message from a tab (docs/CLIENT.md lists them) */
function onMessage(tab, d) {
  if (!d || typeof d !== 'object') return;
  tab.seen = Date.now();
  switch (d.t) {
    case 'hello': {
      const ok = d.v === SHARED_VERSION && d.config && typeof d.config.site === 'string';
      if (ok && !config) {
        config = d.config;
        const t = d.config.timing || {};
        for (const k of Object.keys(timing)) if (Number.isFinite(t[k]) && t[k] > 0) timing[k] = t[k];
        setInterval(heartbeat, timing.heartbeat);
      }
      post(tab, { t: 'hello', v: SHARED_VERSION, ok: !!ok, transport: client?.transport ?? 'websocket', url: client?.url ?? null });
      return;
    }
    case 'open':
      if (Number.isSafeInteger(d.sock)) tab.sockets.set(d.sock, { id: d.sock, tab, authed: false, waiting: false, subs: new Set() });
      return;
    case 'frame': {
      const s = tab.sockets.get(d.sock);
      // A socket the worker dropped (the tab was silent, or frozen): closed.
      if (!s) return post(tab, { t: 'closed', sock: d.sock, code: 1006, reason: 'unknown socket' });
      let f;
      try {
        f = JSON.parse(String(d.text));
      } catch {
        return;
      }
      if (f && typeof f === 'object') onFrame(s, f);
      return;
    }
    case 'close': {
      const s = tab.sockets.get(d.sock);
      if (s) dropSocket(s);
      return;
    }
    case 'token': {
      const a = asks.get(d.id);
      if (!a) return;
      asks.delete(d.id);
      clearTimeout(a.timer);
      if (typeof d.token === 'string' && d.token) a.resolve(d.token);
      else a.reject(new Error(d.error || 'no token'));
      return;
    }
    case 'bye':
      dropTab(tab);
      return;
    default:
    // `hb`: only `seen` matters
  }
}

/** Asks every tab to answer; drops the ones silent too long. */
function heartbeat() {
  const now = Date.now();
  for (const tab of [...tabs]) {
    if (now - tab.seen > timing.silent) dropTab(tab);
    else post(tab, { t: 'hb' });
  }
}

/** A tab connects: its port. */
globalThis.onconnect = (e) => {
  const port = e.ports[0];
  /** @type {Tab} */
  const tab = { port, seen: Date.now(), sockets: new Map() };
  tabs.add(tab);
  if (graceTimer) {
    clearTimeout(graceTimer);
    graceTimer = null;
  }
  port.onmessage = (m) => onMessage(tab, m.data);
  port.start();
};
