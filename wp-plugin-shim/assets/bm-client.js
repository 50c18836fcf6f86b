// bm-client.js: the browser side of bm-relay (PROTOCOL.md §6, §7).
//
// One BmClient keeps one WebSocket to the relay for the logged-in user. It
// authenticates with a connection token, watches threads with thread
// tokens, opens every pushed envelope with WebCrypto (dropping and counting
// what fails), delivers each event id once, and after every (re)connect asks
// the page to catch up from WordPress, because delivery through the relay is
// at-most-once. When the socket cannot be had it polls WordPress instead and
// keeps trying the socket in the background.
//
// Everything secret or site-specific (URLs, tokens, keys, REST calls) comes
// from the options the page passes in; this module hard-codes none of it.
// Dependency-free ES module, modelled on centrifuge-js: a small class with
// an explicit state machine and events.

import { EnvelopeError, MAX_PUB_CIPHERTEXT, importAesKey, openEnvelope, parseKeyId, readTokenClaims, sealEnvelope } from './bm-crypto.js';

export { EnvelopeError } from './bm-crypto.js';

/**
 * Connection state. `closed` is terminal: the client was closed by the page,
 * or the relay refused the user (4001/4003) and no new token could be had.
 * @typedef {'disconnected'|'connecting'|'connected'|'closed'} BmState
 */

/**
 * An envelope as on the wire.
 * @typedef {{v: 1, id: string, k: string, n: string, c: string}} Envelope
 */

/**
 * An opened server event (a push from WordPress, or one returned by the
 * catch-up or poll callbacks). These are the only events a page may show as
 * stored.
 * @typedef {{id: string, kid: string, type: string, data: unknown, source: 'ws'|'catchup'|'poll'|'ingest'}} BmEvent
 */

/**
 * An opened client `pub` (typing, call signalling). `from` was set by the
 * relay from the sender's token; a hint is ephemeral, never a stored message.
 * @typedef {{id: string, kid: string, thread: number, from: number, type: string, data: unknown}} BmHint
 */

/**
 * Options of a BmClient. Every callback may return a value or a promise.
 * @typedef {object} BmClientOptions
 * @property {string} url relay WebSocket URL, e.g. `wss://relay.example.com/v1/ws`
 * @property {string[]} [urls] the WebSocket URLs of several relay nodes (a cluster, PROTOCOL.md §7), tried in
 *   turn: after a socket that closed or never reached `ready`, the next attempt goes to the next URL, so a page
 *   whose node died reconnects to another; `url` is not needed with it (default `[url]`)
 * @property {string} site site id, part of every envelope's AAD
 * @property {() => string|Promise<string>} getToken a fresh connection token (WordPress REST)
 * @property {(thread: number) => string|Promise<string>} [getThreadToken] a fresh thread token proving membership
 * @property {(kid: string) => (CryptoKey|Uint8Array|string|null|undefined|Promise<CryptoKey|Uint8Array|string|null|undefined>)} getKey
 *   key material for a key id (`t/{t}/{e}` or `u/{u}`): raw 32 bytes, their base64url, or a CryptoKey; null when the user does not hold it
 * @property {(thread: number) => string|Promise<string>} [threadKeyId] the key id to seal `publish` with in a thread (its current epoch)
 * @property {(info: {reconnect: boolean, since: number|null}) => unknown} [catchUp]
 *   called after every (re)connect once subscriptions are re-sent; may return envelopes (an array, or `{events: [...]}`) to open and deliver
 * @property {(info: {since: number|null}) => unknown} [poll] polling fallback (the plugin's catch-up route); same return contract as catchUp
 * @property {number} [pollInterval] ms between polls (default 5000)
 * @property {number} [fallbackAfter] failed socket attempts in a row before polling starts (default 3)
 * @property {number} [backoffBase] ms (default 500)
 * @property {number} [backoffCap] ms (default 30000)
 * @property {number} [refreshMargin] refresh the connection token this many ms before it expires, at most half its lifetime (default 60000)
 * @property {number} [requestTimeout] ms to wait for a reply to a frame, and for `ready` after connecting (default 10000)
 * @property {number} [pingInterval] ms between application pings while connected, 0 to disable (default 25000)
 * @property {number} [dedupeSize] event ids remembered for deduplication (default 4096)
 * @property {boolean} [autoConnect] connect in the constructor (default false)
 * @property {any} [WebSocket] WebSocket constructor (default globalThis.WebSocket; null forces polling)
 * @property {boolean} [stream] allow the streaming fallback (PROTOCOL.md §6.1) when WebSocket cannot get through (default true)
 * @property {string[]} [streamUrls] the stream URLs, one per entry of `urls` (default: each URL with `ws`→`http`,
 *   `wss`→`https` and a final `/ws` → `/stream`, e.g. `https://relay.example.com/v1/stream`)
 * @property {number} [streamAfter] WebSocket attempts in a row that failed to get through (no connection, upgrade
 *   refused, no `ready` in time) before the client uses the stream (default 2)
 * @property {number} [wsRetryInterval] ms between background WebSocket tries while on the stream; one that reaches
 *   `ready` moves the client back to WebSocket (default 300000, 0 never)
 * @property {number} [heartbeatInterval] ms between the relay's stream heartbeats; a stream silent for twice this
 *   counts as dead (default 25000, the relay's ping interval)
 * @property {any} [fetch] fetch function for the stream (default globalThis.fetch; null disables the stream)
 * @property {boolean} [sealed] relay mode for the tabs' SharedWorker (bm-shared-worker.js): pushes and hints are not
 *   opened but emitted as `sealed` (the raw `ev` frame), so the holder needs no key; `getKey` is then not needed
 */

/** An error with a protocol code: a refused frame, a timeout, a lost connection. */
export class BmError extends Error {
  /**
   * @param {string} code e.g. `forbidden`, `timeout`, `not_connected`
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = 'BmError';
    /** Protocol error code or a client-side one. */
    this.code = code;
  }
}

/** Close codes of PROTOCOL.md §6. */
export const CLOSE = Object.freeze({
  UNAUTHORIZED: 4001,
  REVOKED: 4003,
  SLOW_CONSUMER: 4008,
  TOKEN_EXPIRED: 4009,
  FRAME_TOO_LARGE: 4013,
  RATE_LIMITED: 4029,
  GOING_AWAY: 1001,
  POLICY: 1008,
});

/** Wait before asking WordPress again when it handed back the refused token (ms). */
const SAME_SECOND_RETRY_MS = 1100;

/** Longest reconnect delay a relay may ask for (ms); a larger hint is capped. */
const MAX_RETRY_HINT = 600000;

/**
 * The relay's reconnect delay from a close reason (`…; retry_ms=N`), or
 * null when it gave none.
 * @param {string} reason
 * @returns {number|null}
 */
function retryHint(reason) {
  const m = /(?:^|;\s*)retry_ms=(\d{1,9})\b/.exec(reason || '');
  return m ? Math.min(Number(m[1]), MAX_RETRY_HINT) : null;
}

/** Threads one `presence` frame may name (the relay's bound, PROTOCOL.md §6). */
const PRESENCE_MAX_THREADS = 16;

/** ms a connection must hold before the backoff starts over. */
const STABLE_AFTER = 5000;
/** Close code the client uses for a socket it gives up on (ping or ready timeout). */
const CLIENT_TIMEOUT = 4000;
const WS_OPEN = 1;

/** Ids remembered in insertion order, oldest forgotten first: bounded memory for dedupe. */
class IdWindow {
  /** @param {number} size */
  constructor(size) {
    this.size = Math.max(1, size);
    /** @type {Set<string>} */
    this.ids = new Set();
  }
  /** @param {string} id */
  has(id) {
    return this.ids.has(id);
  }
  /** @param {string} id */
  add(id) {
    this.ids.add(id);
    if (this.ids.size > this.size) this.ids.delete(this.ids.values().next().value);
  }
}

/**
 * The relay client. Create one per page (per user); call `connect()`.
 *
 * Events (`on(name, fn)`): `state` {state, prev, code?, reason?},
 * `ready` {user, exp, transport}, `event` BmEvent, `hint` BmHint, `unsub` {thread, reason},
 * `dropped` {id, kid, reason, source}, `polling` {active}, `transport` {transport, prev},
 * `error` {code, message, thread?}, and in `sealed` mode `sealed` (the raw `ev` frame, unopened).
 */
export class BmClient {
  /** @param {BmClientOptions} options */
  constructor(options) {
    const urls = options && Array.isArray(options.urls) && options.urls.length ? options.urls : [options && options.url];
    if (!urls.every((u) => typeof u === 'string' && u)) throw new TypeError('BmClient: `url` (or `urls`, a non-empty array of URLs) is required');
    if (typeof options.site !== 'string' || !options.site) throw new TypeError('BmClient: `site` is required');
    if (typeof options.getToken !== 'function') throw new TypeError('BmClient: `getToken` is required');
    if (!options.sealed && typeof options.getKey !== 'function') throw new TypeError('BmClient: `getKey` is required');
    /** @private */
    this.o = {
      pollInterval: 5000,
      fallbackAfter: 3,
      backoffBase: 500,
      backoffCap: 30000,
      refreshMargin: 60000,
      requestTimeout: 10000,
      pingInterval: 25000,
      dedupeSize: 4096,
      stream: true,
      streamAfter: 2,
      wsRetryInterval: 300000,
      heartbeatInterval: 25000,
      ...options,
    };
    /** @private the stream URL beside each WebSocket URL (null: none can be derived) */
    this._streamUrls = urls.map((u, i) => (Array.isArray(options.streamUrls) && options.streamUrls[i]) || streamUrlOf(u));
    /** @private */
    this.fetch = 'fetch' in options ? options.fetch : globalThis.fetch?.bind(globalThis);
    /** @private @type {'websocket'|'stream'} the transport of the connection, or of the next attempt */
    this._transport = 'websocket';
    /** @private consecutive WebSocket attempts that did not get through (not counting the relay's refusals) */
    this._wsBlocked = 0;
    /** @private a background WebSocket tried while on the stream */
    this._probe = null;
    /** @private the relay URLs, and the one the next attempt uses */
    this._urls = [...urls];
    /** @private */
    this._urlAt = 0;
    /** @private */
    this.WS = 'WebSocket' in options ? options.WebSocket : globalThis.WebSocket;
    /** @private @type {BmState} */
    this._state = 'disconnected';
    /** @private @type {Map<string, Set<Function>>} */
    this._handlers = new Map();
    /**
     * @private the live connection, socket or stream: `send(text)` (a
     * promise for the stream), `close(reason)`, `kind`
     * @type {{kind: 'websocket'|'stream', send: (text: string) => unknown, close: (reason: string) => void}|null}
     */
    this._conn = null;
    /** @private socket generation: frames and closes of older sockets are ignored */
    this._gen = 0;
    /** @private @type {{value: string, localExpiry: number, lifetime: number}|null} */
    this._token = null;
    /** @private the relay refused the current token (4001/4003): never reuse it */
    this._tokenRefused = false;
    /** @private @type {Map<number, {acked: boolean, waiters: {resolve: Function, reject: Function}[]}>} */
    this._subs = new Map();
    /** @private @type {Map<number, {resolve: Function, reject: Function, timer: any}>} */
    this._pending = new Map();
    /** @private */
    this._ref = 0;
    /** @private consecutive socket attempts that did not reach `ready` */
    this._failures = 0;
    /** @private attempts since the last `ready`, for the backoff exponent */
    this._attempt = 0;
    /** @private */
    this._timers = { reconnect: null, refresh: null, ping: null, poll: null, ready: null, stable: null, silence: null, probe: null };
    /** @private @type {Map<string, Promise<CryptoKey|null>>} */
    this._keys = new Map();
    /** @private */
    this._seen = new IdWindow(this.o.dedupeSize);
    /**
     * @private ids of client hints (`pub`), apart from server events: any
     * member picks a hint's id, so a hint must never mark a server event
     * as already seen (it would hide that event from this page).
     */
    this._seenHints = new IdWindow(this.o.dedupeSize);
    /** @private serialises frame handling so events are delivered in arrival order */
    this._chain = Promise.resolve();
    /** @private */
    this._polling = false;
    /** @private true until connect(), and again after disconnect()/close() */
    this._stopped = true;
    /** @private when the last connection was lost (ms), for catch-up */
    this._lostAt = null;
    /** @private */
    this._everConnected = false;
    /** @private */
    this._user = null;
    /** @private */
    this._exp = null;
    /** Counters for the page and for tests. */
    this.stats = { received: 0, delivered: 0, hints: 0, duplicates: 0, dropped: 0, reconnects: 0, polls: 0 };
    /** @private */
    this._onOnline = () => {
      if (this._state === 'disconnected' && this._timers.reconnect) this._reconnectNow();
    };
    if (this.o.autoConnect) this.connect();
  }

  /** The relay URL of the current (or next) socket. @returns {string} */
  get url() {
    return this._urls[this._urlAt];
  }

  /**
   * How the client reaches the relay: `websocket`, or `stream` (HTTP
   * streaming, PROTOCOL.md §6.1) once WebSocket failed to get through
   * `streamAfter` times in a row. The connection's, or the next attempt's.
   * @returns {'websocket'|'stream'}
   */
  get transport() {
    return this._transport;
  }

  /** Current connection state. @returns {BmState} */
  get state() {
    return this._state;
  }

  /** The authenticated user id (from the relay's `ready`), or null. */
  get user() {
    return this._user;
  }

  /** Whether the polling fallback is running. */
  get polling() {
    return this._polling;
  }

  /** Threads the client watches (re-sent after every reconnect). @returns {number[]} */
  get threads() {
    return [...this._subs.keys()];
  }

  /**
   * Adds a listener; returns a function that removes it.
   * @param {'state'|'ready'|'event'|'hint'|'unsub'|'dropped'|'polling'|'transport'|'error'|'sealed'} name
   * @param {(payload: any) => void} fn
   */
  on(name, fn) {
    if (!this._handlers.has(name)) this._handlers.set(name, new Set());
    this._handlers.get(name).add(fn);
    return () => this.off(name, fn);
  }

  /** Removes a listener. @param {string} name @param {Function} fn */
  off(name, fn) {
    this._handlers.get(name)?.delete(fn);
  }

  /** @private */
  _emit(name, payload) {
    for (const fn of [...(this._handlers.get(name) ?? [])]) {
      try {
        fn(payload);
      } catch (e) {
        // A page's listener must not break the client; report it instead
        // (unless it was the error listener itself that threw).
        if (name !== 'error') this._emit('error', { code: 'listener', message: String(e && e.message ? e.message : e) });
      }
    }
  }

  /** @private @param {BmState} next @param {object} [extra] */
  _setState(next, extra = {}) {
    if (this._state === next) return;
    const prev = this._state;
    this._state = next;
    this._emit('state', { state: next, prev, ...extra });
  }

  /** Starts connecting (no-op when already connecting or connected). */
  connect() {
    if (this._state === 'closed') throw new BmError('closed', 'the client is closed');
    if (this._state !== 'disconnected') return;
    if (typeof window !== 'undefined' && window.addEventListener) window.addEventListener('online', this._onOnline);
    this._stopped = false;
    this._clearTimer('reconnect');
    this._attemptConnect();
  }

  /**
   * Drops the connection and stops reconnecting and polling; `connect()`
   * resumes (subscriptions are kept and re-sent).
   */
  disconnect() {
    if (this._state === 'closed') return;
    this._stopped = true;
    this._teardown('disconnected by the page');
    this._stopPolling();
    this._setState('disconnected', { code: 1000, reason: 'disconnected by the page' });
  }

  /** Closes the client for good (terminal `closed` state). */
  close() {
    this._close('closed by the page');
  }

  /** @private */
  _close(reason) {
    if (this._state === 'closed') return;
    this._stopped = true;
    this._teardown(reason);
    this._stopPolling();
    for (const [, sub] of this._subs) this._settleSub(sub, new BmError('closed', reason));
    if (typeof window !== 'undefined' && window.removeEventListener) window.removeEventListener('online', this._onOnline);
    this._setState('closed', { reason });
  }

  // ---- connecting ------------------------------------------------------

  /** @private one attempt: token, then a socket or a stream, then auth */
  async _attemptConnect() {
    if (this._stopped || this._state === 'closed') return;
    if (typeof this.WS !== 'function') {
      // No WebSocket at all (absent or blocked): polling WordPress is all there is.
      this._startPolling();
      return;
    }
    if (this._transport === 'stream' && !this._streamUsable()) this._setTransport('websocket');
    this._setState('connecting');
    const gen = ++this._gen;
    let token;
    try {
      token = await this._connectionToken();
    } catch (e) {
      if (gen !== this._gen || this._stopped) return;
      if (this._tokenRefused) {
        this._close(`the relay refused the token and no new one could be had: ${errText(e)}`);
        return;
      }
      this._emit('error', { code: 'token_failed', message: errText(e) });
      this._attemptFailed(`no connection token: ${errText(e)}`);
      return;
    }
    if (gen !== this._gen || this._stopped) return;
    if (this._transport === 'stream') {
      this._timers.ready = setTimeout(() => this._giveUp(gen, 'no ready from the relay in time'), this.o.requestTimeout);
      this._openStream(gen, token);
      return;
    }
    let ws;
    try {
      ws = new this.WS(this.url);
    } catch (e) {
      this._nextUrl();
      this._emit('error', { code: 'socket_failed', message: errText(e) });
      this._pickTransport('websocket', 1006, false);
      this._attemptFailed(`no socket: ${errText(e)}`);
      return;
    }
    this._conn = {
      kind: 'websocket',
      send: (text) => {
        if (ws.readyState !== WS_OPEN) throw new BmError('not_connected', 'not connected to the relay');
        ws.send(text);
      },
      close: (reason) => {
        ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
        try {
          ws.close(1000, reason.slice(0, 100));
        } catch {
          // already closing
        }
      },
    };
    this._timers.ready = setTimeout(() => this._giveUp(gen, 'no ready from the relay in time'), this.o.requestTimeout);
    ws.onopen = () => {
      if (gen !== this._gen) return;
      this._send({ op: 'auth', token });
    };
    ws.onmessage = (msg) => this._onText(gen, msg.data);
    ws.onclose = (ev) => {
      if (gen !== this._gen) return;
      this._onSocketClosed(ev.code, ev.reason || '');
    };
    ws.onerror = () => {
      // Always followed by a close event, which decides what to do.
    };
  }

  /** @private one relay frame as text, from either transport: parsed, then handled in arrival order */
  _onText(gen, text) {
    if (gen !== this._gen) return;
    let frame;
    try {
      frame = JSON.parse(text);
    } catch {
      this._emit('error', { code: 'bad_frame', message: 'the relay sent a frame that is not JSON' });
      return;
    }
    this._chain = this._chain
      .then(() => (gen === this._gen ? this._onFrame(frame) : undefined))
      .catch((e) => this._emit('error', { code: 'internal', message: errText(e) }));
  }

  // ---- the stream (PROTOCOL.md §6.1) ---------------------------------------

  /** @private the stream URL of the current relay URL, or null */
  get _streamUrl() {
    return this._streamUrls[this._urlAt] || null;
  }

  /** @private whether the stream can be tried at all in this browser, with these options */
  _streamUsable() {
    return this.o.stream !== false && typeof this.fetch === 'function' && typeof ReadableStream === 'function' && !!this._streamUrl;
  }

  /** @private @param {'websocket'|'stream'} next */
  _setTransport(next) {
    if (this._transport === next) return;
    const prev = this._transport;
    this._transport = next;
    this._emit('transport', { transport: next, prev });
  }

  /**
   * @private opens the stream: POST the auth frame, then read SSE events
   * until the relay's `close` event, the body's end, or silence. Every
   * event is a frame as on a socket; ops go by POST (`_conn.send`).
   */
  async _openStream(gen, token) {
    const url = this._streamUrl;
    const ctrl = new AbortController();
    /** the stream id from `ready`: the capability to send ops on it */
    let id = null;
    /**
     * POSTs one after another (the next after the previous 204), so the
     * relay applies ops in the order they were sent, as on a socket
     * (PROTOCOL.md §6.1). Cost: a burst of ops takes one round trip each.
     */
    let queue = Promise.resolve();
    this._conn = {
      kind: 'stream',
      send: (text) => {
        if (id === null) throw new BmError('not_connected', 'the stream is not ready');
        const sent = queue.then(() => this._postOp(gen, `${url}/${id}`, text, ctrl.signal));
        queue = sent.catch(() => {});
        return sent;
      },
      close: () => ctrl.abort(),
    };
    const opened = await openStream(this.fetch, url, token, ctrl.signal);
    if (gen !== this._gen) return;
    if (opened.refused) {
      this._onSocketClosed(opened.refused.code, opened.refused.reason, opened.refused.notThrough);
      return;
    }
    this._armSilence(gen);
    const end = await readEvents(opened.response.body, (data) => {
      if (gen !== this._gen) return false;
      this._armSilence(gen);
      if (data === null) return true; // a heartbeat
      let f = null;
      try {
        f = JSON.parse(data);
      } catch {
        // reported by _onText
      }
      if (f && f.op === 'close') {
        const code = Number.isInteger(f.code) ? f.code : 1006;
        this._onSocketClosed(code, typeof f.reason === 'string' ? f.reason : '');
        return false;
      }
      if (f && f.op === 'ready' && typeof f.stream === 'string') id = f.stream;
      this._onText(gen, data);
      return true;
    });
    if (gen !== this._gen) return;
    // The body ended (or broke) without a `close` event: a lost connection.
    this._onSocketClosed(1006, `the stream ended: ${end}`);
  }

  /** @private a stream silent for two heartbeat intervals is dead */
  _armSilence(gen) {
    this._clearTimer('silence');
    this._timers.silence = setTimeout(() => this._giveUp(gen, 'the stream fell silent'), 2 * this.o.heartbeatInterval);
  }

  /**
   * @private one op of the stream, POSTed; the reply comes on the stream.
   * A refused op rejects with the relay's code; an op that cannot be
   * delivered at all means the stream is no use: it is dropped.
   */
  async _postOp(gen, url, text, signal) {
    let res;
    try {
      res = await this.fetch(url, streamRequest(text, signal));
    } catch (e) {
      this._giveUp(gen, `an op could not be sent: ${errText(e)}`);
      throw new BmError('not_connected', `op not sent: ${errText(e)}`);
    }
    if (res.ok) return;
    const { code, message } = await refusalOf(res);
    // The relay no longer knows this stream (it ended, or this node does
    // not hold it): a new one. A refusal that ends the stream (413, 429)
    // also comes as its `close` event, which decides.
    if (res.status === 404) this._giveUp(gen, `the relay answered ${res.status} ${code} to an op`);
    throw new BmError(code, message ?? `the relay refused the op: HTTP ${res.status} ${code}`);
  }

  /**
   * @private while on the stream, a WebSocket is tried now and then in the
   * background: a network that was fixed returns the page to sockets.
   */
  _scheduleWsProbe() {
    this._clearTimer('probe');
    if (!(this.o.wsRetryInterval > 0)) return;
    const gen = this._gen;
    this._timers.probe = setTimeout(async () => {
      this._timers.probe = null;
      if (gen !== this._gen || !this._token) return;
      const probe = new AbortController();
      this._probe = probe;
      const r = await probeSocket(this.url, this._token.value, { timeout: this.o.requestTimeout, WebSocket: this.WS, signal: probe.signal });
      if (this._probe === probe) this._probe = null;
      if (gen !== this._gen) return;
      if (!r.ok) {
        this._scheduleWsProbe();
        return;
      }
      // Over to WebSocket: a planned reconnect (catch-up covers the gap).
      this._wsBlocked = 0;
      this._setTransport('websocket');
      this._lostAt = Date.now();
      this._teardown('moving to WebSocket');
      this._setState('disconnected', { reason: 'moving to WebSocket' });
      this._attemptConnect();
    }, this.o.wsRetryInterval);
  }

  /**
   * A connection token fit to use: the cached one while it is not refused
   * and has more than the refresh margin left, else a fresh one.
   * @private
   */
  async _connectionToken() {
    const t = this._token;
    if (t && !this._tokenRefused && t.localExpiry - Date.now() > this._margin(t.lifetime)) return t.value;
    const previous = t ? t.value : null;
    let value = await this.o.getToken();
    if (this._tokenRefused && value === previous) {
      // A token minted in the very second of a revocation is refused
      // (PROTOCOL.md §6) and WordPress mints the same one again within
      // that second: ask once more in the next second before giving up.
      await new Promise((r) => setTimeout(r, SAME_SECOND_RETRY_MS));
      if (this._stopped) throw new BmError('closed', 'the client was stopped');
      value = await this.o.getToken();
    }
    if (typeof value !== 'string' || !value) throw new BmError('token_failed', 'getToken returned no token');
    if (this._tokenRefused && value === previous) {
      throw new BmError('token_refused', 'getToken returned the token the relay refused');
    }
    this._setToken(value);
    this._tokenRefused = false;
    return value;
  }

  /** @private remember a token and when (by the local clock) it expires */
  _setToken(value) {
    const claims = readTokenClaims(value);
    const now = Date.now();
    let lifetime = 3600000;
    if (claims && Number.isFinite(claims.exp)) {
      // The token's own lifetime (exp - iat), counted from now, does not
      // depend on the browser's clock; the absolute `exp` read with the
      // browser's clock may say less (a token issued a while ago): take the
      // smaller, unless the clock is so far off that `exp` looks past.
      const relative = Number.isFinite(claims.iat) ? (claims.exp - claims.iat) * 1000 : Infinity;
      const absolute = claims.exp * 1000 - now;
      lifetime = absolute > 0 ? Math.min(relative, absolute) : Number.isFinite(relative) ? relative : lifetime;
    }
    this._token = { value, localExpiry: now + lifetime, lifetime };
  }

  /** @private how long before expiry to refresh */
  _margin(lifetime) {
    return Math.min(this.o.refreshMargin, lifetime / 2);
  }

  /** @private an attempt that failed before a socket existed */
  _attemptFailed(reason) {
    this._failures++;
    this._setState('disconnected', { reason });
    this._scheduleReconnect();
    if (this._failures >= this.o.fallbackAfter) this._startPolling();
  }

  /** @private the socket is not worth waiting for: drop it as if closed */
  _giveUp(gen, reason) {
    if (gen !== this._gen || !this._conn) return;
    this._onSocketClosed(CLIENT_TIMEOUT, reason);
  }

  /** @private */
  _teardown(reason) {
    this._gen++;
    for (const k of Object.keys(this._timers)) if (k !== 'poll') this._clearTimer(k);
    const conn = this._conn;
    this._conn = null;
    if (conn) conn.close(reason);
    if (this._probe) this._probe.abort();
    this._probe = null;
    for (const [, p] of this._pending) {
      clearTimeout(p.timer);
      p.reject(new BmError('not_connected', `connection lost: ${reason}`));
    }
    this._pending.clear();
    for (const [, sub] of this._subs) sub.acked = false;
  }

  /**
   * @private decide what a close means (PROTOCOL.md §6 close codes; a
   * stream's `close` event and refusals carry the same codes, §6.1).
   * `notThrough`: a stream whose request got no answer from the relay at
   * all (no HTTP answer, or one that is not the relay's: 404, 502 …).
   */
  _onSocketClosed(code, reason, notThrough = false) {
    const wasConnected = this._state === 'connected';
    const kind = this._conn ? this._conn.kind : this._transport;
    this._teardown(reason || `closed with ${code}`);
    if (!wasConnected) this._pickTransport(kind, code, notThrough);
    // Whatever the cause (the node died, is going away, refused or never
    // answered), another node of the cluster may do: the next attempt goes
    // to the next URL. One URL: the same again.
    this._nextUrl();
    if (wasConnected) this._lostAt = Date.now();
    else this._failures++;
    // A relay going away (shutdown, restart, reload) may say when to come
    // back (`; retry_ms=N` in the close reason, PROTOCOL.md §6): it spreads
    // thousands of browsers over time, so a restart is no reconnect storm.
    const hint = retryHint(reason);
    this._setState('disconnected', hint === null ? { code, reason } : { code, reason, retryIn: hint });
    if (this._stopped) return;
    switch (code) {
      case CLOSE.UNAUTHORIZED:
      case CLOSE.REVOKED:
        // Never again with this token: the next attempt must get a new one,
        // and if it cannot, the client closes.
        this._tokenRefused = true;
        break;
      case CLOSE.TOKEN_EXPIRED:
        this._token = null;
        break;
      default:
      // 1001 going away, 4008 slow consumer, 4013, 4029, 1008, network
      // loss: the same token will do.
    }
    // Always with backoff and full jitter (after a connection that held,
    // the backoff has started over: the first delay is within `base`), or
    // after the relay's hint plus a little jitter of our own.
    this._scheduleReconnect(hint);
    if (this._failures >= this.o.fallbackAfter) this._startPolling();
  }

  /**
   * @private after an attempt that never reached `ready`, the transport of
   * the next one. WebSocket: `streamAfter` failures in a row to get through
   * (1006: no connection or the upgrade refused, as a proxy that blocks
   * WebSocket answers it; or no `ready` in time) move to the stream; a
   * relay's own refusal (4001, 4029, 1013 …) says the socket got through
   * and counts not. Stream: one that got no HTTP answer at all, or no
   * `ready` in time, goes back to WebSocket (the relay is down or the
   * stream is buffered: both fail alike, so they take turns); a refusal
   * by the relay keeps the stream.
   */
  _pickTransport(kind, code, notThrough) {
    if (kind === 'websocket') {
      if (code === 1006 || code === 1015 || code === CLIENT_TIMEOUT) this._wsBlocked++;
      if (this._wsBlocked >= this.o.streamAfter && this._streamUsable()) this._setTransport('stream');
    } else if (notThrough || code === CLIENT_TIMEOUT) {
      this._wsBlocked = 0;
      this._setTransport('websocket');
    }
  }

  /** @private the next relay URL, round robin */
  _nextUrl() {
    this._urlAt = (this._urlAt + 1) % this._urls.length;
  }

  /**
   * @private exponential backoff with full jitter: uniform in
   * [0, min(cap, base * 2^attempt)].
   */
  _scheduleReconnect(hint = null) {
    if (this._stopped || this._state === 'closed') return;
    const ceiling = Math.min(this.o.backoffCap, this.o.backoffBase * 2 ** Math.min(this._attempt, 30));
    this._attempt++;
    const delay = hint === null ? Math.random() * ceiling : hint + Math.random() * Math.min(ceiling, 250);
    this._clearTimer('reconnect');
    this._timers.reconnect = setTimeout(() => this._reconnectNow(), delay);
  }

  /** @private */
  _reconnectNow() {
    this._clearTimer('reconnect');
    if (this._stopped || this._state !== 'disconnected') return;
    this.stats.reconnects++;
    this._attemptConnect();
  }

  /** @private */
  _clearTimer(name) {
    if (this._timers[name]) {
      clearTimeout(this._timers[name]);
      this._timers[name] = null;
    }
  }

  // ---- frames ------------------------------------------------------------

  /** @private a frame on the connection; for the stream, a promise of the POST */
  _send(frame) {
    if (!this._conn) throw new BmError('not_connected', 'not connected to the relay');
    return this._conn.send(JSON.stringify(frame));
  }

  /**
   * Sends a frame with a fresh `ref` and resolves with the reply (`ok`,
   * `pong` or `presence`), or rejects with the relay's `error`, a timeout, or a lost
   * connection.
   * @private
   */
  _request(frame) {
    return new Promise((resolve, reject) => {
      const ref = ++this._ref;
      const timer = setTimeout(() => {
        this._pending.delete(ref);
        reject(new BmError('timeout', `no reply to ${frame.op} in ${this.o.requestTimeout} ms`));
      }, this.o.requestTimeout);
      this._pending.set(ref, { resolve, reject, timer });
      const fail = (e) => {
        if (this._pending.get(ref)?.timer !== timer) return;
        clearTimeout(timer);
        this._pending.delete(ref);
        reject(e);
      };
      try {
        // A stream's op is a POST: an HTTP refusal (429, 413 …) rejects
        // here, the relay's own answer comes on the stream as on a socket.
        Promise.resolve(this._send({ ...frame, ref })).catch(fail);
      } catch (e) {
        clearTimeout(timer);
        this._pending.delete(ref);
        reject(e);
      }
    });
  }

  /** @private one relay frame, in arrival order */
  async _onFrame(f) {
    if (!f || typeof f !== 'object') return;
    switch (f.op) {
      case 'ready':
        return this._onReady(f);
      case 'ok':
      case 'pong':
      case 'presence': {
        const p = this._pending.get(f.ref);
        if (p) {
          this._pending.delete(f.ref);
          clearTimeout(p.timer);
          p.resolve(f);
        }
        return;
      }
      case 'error': {
        const p = f.ref !== undefined ? this._pending.get(f.ref) : undefined;
        if (p) {
          this._pending.delete(f.ref);
          clearTimeout(p.timer);
          p.reject(new BmError(String(f.code), String(f.message ?? f.code)));
        } else {
          this._emit('error', { code: String(f.code), message: String(f.message ?? '') });
        }
        return;
      }
      case 'unsub': {
        const sub = this._subs.get(f.thread);
        if (sub) {
          this._subs.delete(f.thread);
          this._settleSub(sub, new BmError('revoked', 'the server revoked the subscription'));
        }
        this._emit('unsub', { thread: f.thread, reason: 'revoked' });
        return;
      }
      case 'ev':
        this.stats.received++;
        // Sealed mode (the SharedWorker): the tabs hold the keys and open it.
        if (this.o.sealed) return this._emit('sealed', f);
        if (f.from !== undefined) return this._onHint(f);
        await this.ingest(f.e, 'ws');
        return;
      default:
        // Unknown ops are ignored: a newer relay may add some.
        return;
    }
  }

  /** @private */
  async _onReady(f) {
    this._clearTimer('ready');
    this._user = f.user;
    this._exp = f.exp;
    this._failures = 0;
    const onStream = this._conn?.kind === 'stream';
    if (!onStream) this._wsBlocked = 0;
    // The backoff starts over only once the connection has held for a
    // while: a relay that accepts and then drops every socket (4008, 4029)
    // must not be hammered at the base delay.
    this._timers.stable = setTimeout(() => {
      this._timers.stable = null;
      this._attempt = 0;
    }, STABLE_AFTER);
    const reconnect = this._everConnected;
    this._everConnected = true;
    this._stopPolling();
    this._setState('connected');
    this._emit('ready', { user: f.user, exp: f.exp, transport: this._transport });
    this._scheduleRefresh();
    // On the stream the relay's heartbeats show it alive (_armSilence) and
    // every op is a request of its own: no application pings, but now and
    // then a WebSocket is tried again.
    if (onStream) this._scheduleWsProbe();
    else this._schedulePing();
    // Not awaited: the replies to these `sub` frames are frames queued
    // behind this one.
    this._resubscribeAndCatchUp(reconnect);
  }

  /** @private */
  async _resubscribeAndCatchUp(reconnect) {
    const gen = this._gen;
    // Re-send every subscription first, so that what arrives while the page
    // catches up is already live (dedupe removes the overlap).
    await Promise.allSettled([...this._subs.keys()].map((t) => this._sendSub(t)));
    if (gen !== this._gen) return;
    this._runCatchUp(reconnect, this._lostAt);
  }

  /** @private */
  async _runCatchUp(reconnect, since) {
    if (typeof this.o.catchUp !== 'function') return;
    try {
      const result = await this.o.catchUp({ reconnect, since });
      await this._ingestResult(result, 'catchup');
    } catch (e) {
      this._emit('error', { code: 'catchup_failed', message: errText(e) });
    }
  }

  /** @private envelopes returned by catchUp/poll: an array or {events: [...]} */
  async _ingestResult(result, source) {
    const list = Array.isArray(result) ? result : result && Array.isArray(result.events) ? result.events : [];
    for (const item of list) {
      // Accept bare envelopes and {e: envelope} wrappers.
      const env = item && typeof item === 'object' && 'e' in item && !('c' in item) ? item.e : item;
      await this.ingest(env, source);
    }
  }

  /**
   * Opens an envelope and delivers it as an `event` unless its id was seen
   * before or it does not open (then `dropped`). The page may call it for
   * envelopes it got from WordPress itself.
   * @param {unknown} envelope
   * @param {'ws'|'catchup'|'poll'|'ingest'} [source]
   * @returns {Promise<BmEvent|null>} the event, or null when dropped or a duplicate
   */
  async ingest(envelope, source = 'ingest') {
    const opened = await this._open(envelope, source);
    if (!opened) return null;
    const ev = { id: opened.id, kid: opened.k, type: opened.type, data: opened.data, source };
    this.stats.delivered++;
    this._emit('event', ev);
    return ev;
  }

  /** @private a client `pub` relayed with `from`: an ephemeral hint */
  async _onHint(f) {
    const kid = f.e && typeof f.e === 'object' ? f.e.k : undefined;
    const parsed = parseKeyId(kid);
    // A hint for thread t must be sealed with a key of thread t: a member of
    // two threads cannot move one thread's envelope into the other.
    if (!parsed || parsed.kind !== 'thread' || parsed.thread !== f.thread) {
      this._drop(f.e, 'wrong_key', 'ws');
      return;
    }
    const opened = await this._open(f.e, 'ws', this._seenHints);
    if (!opened) return;
    this.stats.hints++;
    this._emit('hint', { id: opened.id, kid: opened.k, thread: f.thread, from: f.from, type: opened.type, data: opened.data });
  }

  /**
   * @private open + dedupe against `seen` (server events by default, or the
   * hints' own window); null when dropped or seen
   */
  async _open(envelope, source, seen = this._seen) {
    const id = envelope && typeof envelope === 'object' ? envelope.id : undefined;
    if (typeof id === 'string' && seen.has(id)) {
      this.stats.duplicates++;
      return null;
    }
    const kid = envelope && typeof envelope === 'object' ? envelope.k : undefined;
    const parsed = parseKeyId(kid);
    if (parsed && parsed.kind === 'user' && this._user !== null && parsed.user !== this._user) {
      this._drop(envelope, 'wrong_key', source);
      return null;
    }
    const key = parsed ? await this._key(kid) : null;
    if (parsed && !key) {
      this._drop(envelope, 'no_key', source);
      return null;
    }
    try {
      const opened = await openEnvelope(envelope, key, this.o.site);
      // Re-check: the same id may have been delivered while we decrypted.
      if (seen.has(opened.id)) {
        this.stats.duplicates++;
        return null;
      }
      seen.add(opened.id);
      return opened;
    } catch (e) {
      this._drop(envelope, e instanceof EnvelopeError ? e.reason : 'malformed', source);
      return null;
    }
  }

  /** @private */
  _drop(envelope, reason, source) {
    this.stats.dropped++;
    const e = envelope && typeof envelope === 'object' ? envelope : {};
    this._emit('dropped', { id: typeof e.id === 'string' ? e.id : null, kid: typeof e.k === 'string' ? e.k : null, reason, source });
  }

  /** @private a CryptoKey for a key id, asked of the page once and cached */
  _key(kid) {
    let p = this._keys.get(kid);
    if (!p) {
      p = (async () => {
        try {
          const material = await this.o.getKey(kid);
          return material ? await importAesKey(material) : null;
        } catch (e) {
          this._emit('error', { code: 'key_failed', message: `no key for ${kid}: ${errText(e)}` });
          return null;
        }
      })();
      this._keys.set(kid, p);
      // A missing key is not cached: membership may be granted later.
      p.then((k) => {
        if (!k && this._keys.get(kid) === p) this._keys.delete(kid);
      });
    }
    return p;
  }

  /**
   * Forgets cached keys (all, or one key id), e.g. after the user left a
   * thread or its epoch changed; they are asked of `getKey` again when needed.
   * @param {string} [kid]
   */
  forgetKeys(kid) {
    if (kid === undefined) this._keys.clear();
    else this._keys.delete(kid);
  }

  // ---- token refresh and pings --------------------------------------------

  /** @private */
  _scheduleRefresh() {
    this._clearTimer('refresh');
    const t = this._token;
    if (!t) return;
    const delay = Math.max(0, t.localExpiry - this._margin(t.lifetime) - Date.now());
    this._timers.refresh = setTimeout(() => this._refresh(), delay);
  }

  /** @private send a `refresh` with a new connection token before `exp` */
  async _refresh() {
    this._timers.refresh = null;
    const gen = this._gen;
    try {
      const value = await this.o.getToken();
      if (gen !== this._gen) return;
      if (typeof value !== 'string' || !value) throw new BmError('token_failed', 'getToken returned no token');
      await this._request({ op: 'refresh', token: value });
      if (gen !== this._gen) return;
      this._setToken(value);
      this._scheduleRefresh();
    } catch (e) {
      if (gen !== this._gen) return;
      this._emit('error', { code: e instanceof BmError ? e.code : 'token_failed', message: `token refresh failed: ${errText(e)}` });
      // Try again shortly while the token is still valid; past that the
      // relay closes with 4009 and the reconnect gets a new token.
      const t = this._token;
      const left = t ? t.localExpiry - Date.now() : 0;
      if (left > 1000) this._timers.refresh = setTimeout(() => this._refresh(), Math.min(5000, left / 2));
    }
  }

  /** @private application pings find a dead socket the browser has not noticed */
  _schedulePing() {
    this._clearTimer('ping');
    if (!this.o.pingInterval) return;
    const gen = this._gen;
    this._timers.ping = setTimeout(async () => {
      this._timers.ping = null;
      try {
        await this.ping();
        if (gen === this._gen) this._schedulePing();
      } catch (e) {
        if (gen === this._gen && e instanceof BmError && e.code === 'timeout') this._giveUp(gen, 'ping timeout');
      }
    }, this.o.pingInterval);
  }

  /**
   * Application ping; resolves with the round trip in ms.
   * @returns {Promise<number>}
   */
  async ping() {
    const t0 = performance.now();
    await this._request({ op: 'ping' });
    return performance.now() - t0;
  }

  // ---- subscriptions and publishing -----------------------------------------

  /**
   * Watches a thread (pushes addressed to the thread and other members'
   * hints). Kept across reconnects, each time with a fresh thread token.
   * Resolves when the relay accepts; if not connected now, when it next
   * does. Rejects when the relay or `getThreadToken` refuses (the thread is
   * then dropped from the set and an `unsub` event fires).
   * @param {number} thread
   * @returns {Promise<void>}
   */
  subscribe(thread) {
    if (!Number.isSafeInteger(thread) || thread < 1) return Promise.reject(new TypeError('thread must be a positive integer'));
    if (this._state === 'closed') return Promise.reject(new BmError('closed', 'the client is closed'));
    if (typeof this.o.getThreadToken !== 'function') return Promise.reject(new TypeError('BmClient: `getThreadToken` is required to subscribe'));
    let sub = this._subs.get(thread);
    if (sub && sub.acked) return Promise.resolve();
    const isNew = !sub;
    if (!sub) {
      sub = { acked: false, waiters: [] };
      this._subs.set(thread, sub);
    }
    const s = sub;
    const p = new Promise((resolve, reject) => s.waiters.push({ resolve, reject }));
    // An existing, unacknowledged entry already has a `sub` in flight (or
    // gets one on the next connect).
    if (isNew && this._state === 'connected') this._sendSub(thread);
    return p;
  }

  /** @private */
  _settleSub(sub, err) {
    const waiters = sub.waiters;
    sub.waiters = [];
    for (const w of waiters) err ? w.reject(err) : w.resolve();
  }

  /** @private one `sub` frame with a fresh thread token; one retry if it expired */
  async _sendSub(thread, retried = false) {
    const gen = this._gen;
    let token;
    try {
      token = await this.o.getThreadToken(thread);
      if (typeof token !== 'string' || !token) throw new BmError('token_failed', 'getThreadToken returned no token');
    } catch (e) {
      if (gen === this._gen) this._refuseSub(thread, 'token_refused', errText(e));
      return;
    }
    if (gen !== this._gen) return;
    try {
      await this._request({ op: 'sub', thread, token });
      const sub = this._subs.get(thread);
      if (sub && gen === this._gen) {
        sub.acked = true;
        this._settleSub(sub);
      }
    } catch (e) {
      if (gen !== this._gen || !(e instanceof BmError)) return;
      if (e.code === 'token_expired' && !retried) return this._sendSub(thread, true);
      if (e.code === 'not_connected' || e.code === 'timeout') return; // re-sent on the next connect
      this._refuseSub(thread, e.code, e.message);
    }
  }

  /** @private */
  _refuseSub(thread, code, message) {
    const sub = this._subs.get(thread);
    if (!sub) return;
    this._subs.delete(thread);
    this._settleSub(sub, new BmError(code, message));
    this._emit('error', { code, message, thread });
    this._emit('unsub', { thread, reason: code });
  }

  /**
   * Stops watching a thread.
   * @param {number} thread
   * @returns {Promise<void>}
   */
  async unsubscribe(thread) {
    const sub = this._subs.get(thread);
    if (!sub) return;
    this._subs.delete(thread);
    this._settleSub(sub, new BmError('unsubscribed', 'unsubscribed by the page'));
    if (this._state === 'connected') {
      try {
        await this._request({ op: 'unsub', thread });
      } catch (e) {
        if (!(e instanceof BmError) || (e.code !== 'not_subscribed' && e.code !== 'not_connected')) throw e;
      }
    }
  }

  /**
   * Publishes an ephemeral event (typing, call signalling) to the other
   * subscribers of a thread, sealed with the thread's current key
   * (`threadKeyId`). Never use it for messages: those go through WordPress.
   * @param {number} thread
   * @param {string} type
   * @param {unknown} data
   * @returns {Promise<string>} the event id, once the relay accepted the frame
   */
  async publish(thread, type, data) {
    if (this._state !== 'connected') throw new BmError('not_connected', 'not connected to the relay');
    const sub = this._subs.get(thread);
    if (!sub || !sub.acked) throw new BmError('not_subscribed', `not subscribed to thread ${thread}`);
    if (typeof this.o.threadKeyId !== 'function') throw new TypeError('BmClient: `threadKeyId` is required to publish');
    const kid = await this.o.threadKeyId(thread);
    const parsed = parseKeyId(kid);
    if (!parsed || parsed.kind !== 'thread' || parsed.thread !== thread) {
      throw new BmError('bad_key', `threadKeyId(${thread}) returned ${JSON.stringify(kid)}, not a key of that thread`);
    }
    const key = await this._key(kid);
    if (!key) throw new BmError('no_key', `no key ${kid}`);
    const e = await sealEnvelope(key, this.o.site, kid, type, data, { maxCiphertext: MAX_PUB_CIPHERTEXT });
    // Our own hint must not come back to us as someone else's (another tab
    // of ours may still get it: that one is from us, shown as such).
    this._seenHints.add(e.id);
    return this.publishSealed(thread, e);
  }

  /**
   * Sends a `pub` of an envelope sealed elsewhere (the SharedWorker relays
   * its tabs' hints: the tabs hold the thread keys, the worker none).
   * Rejects as `publish` does.
   * @param {number} thread
   * @param {Envelope} e
   * @returns {Promise<string>} the event id, once the relay accepted the frame
   */
  async publishSealed(thread, e) {
    if (this._state !== 'connected') throw new BmError('not_connected', 'not connected to the relay');
    if (!this._subs.get(thread)?.acked) throw new BmError('not_subscribed', `not subscribed to thread ${thread}`);
    await this._request({ op: 'pub', thread, e });
    return e.id;
  }

  /**
   * Tries to connect now when waiting out a backoff delay (as the browser's
   * `online` event does): the SharedWorker's tabs call it once the shared
   * connection is back, rather than wait their own backoff.
   */
  retryNow() {
    this._onOnline();
  }

  /**
   * Who is online in threads this client watches, asked of the relay over
   * the socket (PROTOCOL.md §6 `presence`): for each thread, the users with
   * at least one socket subscribed to it (this user included), across every
   * relay node. Only threads with a live subscription are asked (the relay
   * answers nothing about others); they are absent from the result, as are
   * those the relay refused. More than 16 threads go in several frames.
   * @param {number[]} threads
   * @returns {Promise<Map<number, number[]>>} thread → user ids, ascending
   */
  async presence(threads) {
    if (!Array.isArray(threads) || !threads.every((t) => Number.isSafeInteger(t) && t >= 1)) {
      throw new TypeError('threads must be an array of positive integers');
    }
    if (this._state !== 'connected') throw new BmError('not_connected', 'not connected to the relay');
    const live = [...new Set(threads)].filter((t) => this._subs.get(t)?.acked);
    /** @type {Map<number, number[]>} */
    const out = new Map();
    const requests = [];
    for (let i = 0; i < live.length; i += PRESENCE_MAX_THREADS) {
      requests.push(this._request({ op: 'presence', threads: live.slice(i, i + PRESENCE_MAX_THREADS) }));
    }
    for (const f of await Promise.all(requests)) {
      for (const e of Array.isArray(f.threads) ? f.threads : []) {
        if (e && Number.isSafeInteger(e.thread) && Array.isArray(e.users)) out.set(e.thread, e.users.filter((u) => Number.isSafeInteger(u)));
      }
    }
    return out;
  }

  // ---- polling fallback ------------------------------------------------

  /** @private */
  _startPolling() {
    if (this._polling || this._stopped || typeof this.o.poll !== 'function') return;
    this._polling = true;
    this._emit('polling', { active: true });
    const tick = async () => {
      this._timers.poll = null;
      if (!this._polling) return;
      this.stats.polls++;
      try {
        const result = await this.o.poll({ since: this._lostAt });
        if (this._polling) await this._ingestResult(result, 'poll');
      } catch (e) {
        this._emit('error', { code: 'poll_failed', message: errText(e) });
      }
      if (this._polling) {
        // ±10% jitter so many pages do not poll in step.
        const jitter = this.o.pollInterval * (0.9 + Math.random() * 0.2);
        this._timers.poll = setTimeout(tick, jitter);
      }
    };
    tick();
  }

  /** @private */
  _stopPolling() {
    this._clearTimer('poll');
    if (!this._polling) return;
    this._polling = false;
    this._emit('polling', { active: false });
  }
}

// ---- the stream's wire (PROTOCOL.md §6.1), and probes for the connection doctor ----

/** Largest SSE event the client buffers (a relay frame is far smaller: a presence answer stays under ~140 KB). */
const MAX_STREAM_EVENT = 1 << 20;

/**
 * The stream URL beside a WebSocket URL: the same listener (`ws:` → `http:`,
 * `wss:` → `https:`) with the path's final `/ws` made `/stream`
 * (`wss://relay.example.com/v1/ws` → `https://relay.example.com/v1/stream`,
 * a proxy's prefix kept). Null when the URL does not end in `/ws`: no
 * guess at a path the relay may not serve.
 * @param {string} wsUrl
 * @returns {string|null}
 */
export function streamUrlOf(wsUrl) {
  let u;
  try {
    u = new URL(wsUrl);
  } catch {
    return null;
  }
  if ((u.protocol !== 'ws:' && u.protocol !== 'wss:') || !u.pathname.endsWith('/ws')) return null;
  u.protocol = u.protocol === 'wss:' ? 'https:' : 'http:';
  u.pathname = `${u.pathname.slice(0, -3)}/stream`;
  return u.toString();
}

/**
 * A stream request's init: a CORS "simple request" (POST, text/plain), so
 * no preflight doubles the round trips; no cookies (the relay needs none,
 * and must not see WordPress's).
 * @param {string} body
 * @param {AbortSignal} [signal]
 */
function streamRequest(body, signal) {
  return { method: 'POST', body, headers: { 'Content-Type': 'text/plain;charset=UTF-8' }, credentials: 'omit', cache: 'no-store', signal };
}

/**
 * The relay's refusal in a response (`{"error":{"code","message"}}`,
 * PROTOCOL.md §6.1), or `http_NNN` and no message for anything else (an
 * error page, an empty body).
 * @returns {Promise<{code: string, message: string|null}>}
 */
async function refusalOf(res) {
  let v = null;
  try {
    v = await res.json();
  } catch {
    // not JSON
  }
  const e = v && typeof v === 'object' ? v.error : null;
  const code = e && typeof e === 'object' && typeof e.code === 'string' ? e.code : typeof e === 'string' ? e : `http_${res.status}`;
  return { code, message: e && typeof e.message === 'string' ? e.message : null };
}

/**
 * POSTs the auth frame to open a stream. Resolves with the streaming
 * response, or with the refusal as the close a socket would have got
 * (PROTOCOL.md §6.1): the auth error codes as 4001/4003/4009, 429 as 4029
 * and 503 as 1013 (with the relay's `Retry-After` as `retry_ms`). An
 * answer that is not the relay's (none at all, 404, a proxy's 502 or
 * HTML) is `notThrough`.
 * @returns {Promise<{response: Response}|{refused: {code: number, reason: string, notThrough: boolean, status: number|null, error: string}}>}
 */
async function openStream(fetchFn, url, token, signal) {
  let res;
  try {
    res = await fetchFn(url, streamRequest(JSON.stringify({ op: 'auth', token }), signal));
  } catch (e) {
    return { refused: { code: 1006, reason: `no answer: ${errText(e)}`, notThrough: true, status: null, error: 'refused' } };
  }
  const type = res.headers.get('content-type') || '';
  if (res.status === 200 && /^text\/event-stream\b/i.test(type) && res.body) return { response: res };
  const error = res.status === 200 ? 'not_a_stream' : (await refusalOf(res)).code;
  const byError = { bad_token: CLOSE.UNAUTHORIZED, token_expired: CLOSE.TOKEN_EXPIRED, forbidden: CLOSE.REVOKED }[error];
  const byStatus = { 429: CLOSE.RATE_LIMITED, 503: 1013 }[res.status];
  const code = byError ?? byStatus ?? 1006;
  // Readable only where the relay exposes it (CORS); else the backoff decides.
  const seconds = Number(res.headers.get('retry-after'));
  const retry = seconds > 0 ? Math.round(seconds * 1000) : null;
  const reason = `HTTP ${res.status} ${error}${retry !== null ? `; retry_ms=${retry}` : ''}`;
  return { refused: { code, reason, notThrough: code === 1006, status: res.status, error } };
}

/**
 * Reads Server-Sent Events from a body: `onData(text)` for each event's
 * data (its `data:` lines joined by newlines), `onData(null)` for a comment
 * line (the relay's heartbeat). `onData` returning false stops reading.
 * Resolves with why it stopped. Lines may end in CRLF, LF or CR (the SSE
 * rule); other fields (`event`, `id`, `retry`) are ignored.
 * @param {ReadableStream<Uint8Array>} body
 * @param {(data: string|null) => boolean|void} onData
 * @returns {Promise<string>}
 */
async function readEvents(body, onData) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const eol = /\r\n|\r|\n/g;
  let buf = '';
  /** @type {string[]|null} */
  let data = null;
  let size = 0;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return 'end of body';
      buf += decoder.decode(value, { stream: true });
      let at = 0;
      eol.lastIndex = 0;
      for (let m = eol.exec(buf); m; m = eol.exec(buf)) {
        // A CR at the very end may be the first half of a CRLF: wait for more.
        if (m[0] === '\r' && m.index === buf.length - 1) break;
        const line = buf.slice(at, m.index);
        at = eol.lastIndex;
        if (line === '') {
          if (data !== null && onData(data.join('\n')) === false) return 'stopped';
          data = null;
          size = 0;
        } else if (line[0] === ':') {
          if (onData(null) === false) return 'stopped';
        } else {
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          const v = colon < 0 ? '' : line.slice(colon + 1);
          if (field === 'data') {
            (data ||= []).push(v[0] === ' ' ? v.slice(1) : v);
            size += v.length;
          }
        }
      }
      buf = buf.slice(at);
      if (buf.length + size > MAX_STREAM_EVENT) return `an event over ${MAX_STREAM_EVENT} bytes`;
    }
  } catch (e) {
    return errText(e);
  } finally {
    reader.cancel().catch(() => {});
  }
}

/**
 * @typedef {object} BmProbe what one way to the relay did (the connection doctor)
 * @property {boolean} ok it reached `ready`
 * @property {number} ms from the start to `ready`, or to the failure
 * @property {string} [reason] why not: `refused` (no connection), `blocked_upgrade` (HTTP reaches the relay's
 *   address but the WebSocket upgrade failed: a proxy or firewall in between), `timeout`, `http_NNN`, a relay
 *   error code (`bad_token`, `token_expired`, `forbidden`, `rate_limited` …), or `closed_NNNN`
 * @property {number} [status] the HTTP status of a refused stream
 */

/**
 * Tries a WebSocket to the relay once: connect, auth, `ready`, then closes
 * it. A socket that closes before opening (1006: the browser tells no
 * more) is told apart by one plain request to the same URL: answered,
 * something let HTTP through and stopped the upgrade (`blocked_upgrade`);
 * not, nothing listens or a firewall drops it (`refused`).
 * @param {string} url
 * @param {string} token a connection token
 * @param {{timeout?: number, WebSocket?: any, fetch?: any, signal?: AbortSignal}} [opts]
 * @returns {Promise<BmProbe>}
 */
export function probeSocket(url, token, opts = {}) {
  const WS = opts.WebSocket ?? globalThis.WebSocket;
  const t0 = performance.now();
  return new Promise((resolve) => {
    let ws = null;
    let opened = false;
    let timer = null;
    const done = (r) => {
      if (!ws) return;
      clearTimeout(timer);
      ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
      try {
        ws.close(1000, 'probe');
      } catch {
        // already closed
      }
      ws = null;
      opts.signal?.removeEventListener('abort', onAbort);
      resolve({ ms: Math.round(performance.now() - t0), ...r });
    };
    const onAbort = () => done({ ok: false, reason: 'aborted' });
    try {
      ws = new WS(url);
    } catch (e) {
      resolve({ ok: false, ms: 0, reason: 'refused', detail: errText(e) });
      return;
    }
    opts.signal?.addEventListener('abort', onAbort);
    timer = setTimeout(() => done({ ok: false, reason: 'timeout' }), opts.timeout ?? 10000);
    ws.onopen = () => {
      opened = true;
      ws.send(JSON.stringify({ op: 'auth', token }));
    };
    ws.onmessage = (m) => {
      let f = null;
      try {
        f = JSON.parse(m.data);
      } catch {
        // not a relay frame
      }
      if (f && f.op === 'ready') done({ ok: true });
      else if (f && f.op === 'error') done({ ok: false, reason: String(f.code) });
    };
    ws.onclose = async (ev) => {
      if (opened || ev.code !== 1006) {
        done({ ok: false, reason: `closed_${ev.code}` });
        return;
      }
      const fetchFn = opts.fetch ?? globalThis.fetch;
      let reason = 'refused';
      if (typeof fetchFn === 'function') {
        const http = url.replace(/^ws/i, 'http');
        reason = await fetchFn(http, { mode: 'no-cors', cache: 'no-store', credentials: 'omit' }).then(
          () => 'blocked_upgrade',
          () => 'refused',
        );
      }
      done({ ok: false, reason });
    };
  });
}

/**
 * Tries the stream once (PROTOCOL.md §6.1): open, `ready`, then ends it.
 * @param {string} url the stream URL (`streamUrlOf`)
 * @param {string} token a connection token
 * @param {{timeout?: number, fetch?: any}} [opts]
 * @returns {Promise<BmProbe>}
 */
export async function probeStream(url, token, opts = {}) {
  const fetchFn = opts.fetch ?? globalThis.fetch?.bind(globalThis);
  const t0 = performance.now();
  const ms = () => Math.round(performance.now() - t0);
  const ctrl = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ctrl.abort();
  }, opts.timeout ?? 10000);
  try {
    const opened = await openStream(fetchFn, url, token, ctrl.signal);
    if (opened.refused) {
      const r = opened.refused;
      return { ok: false, ms: ms(), reason: timedOut ? 'timeout' : r.error, ...(r.status ? { status: r.status } : {}) };
    }
    /** @type {BmProbe|null} */
    let result = null;
    const end = await readEvents(opened.response.body, (data) => {
      let f = null;
      try {
        f = data === null ? null : JSON.parse(data);
      } catch {
        // not a relay frame
      }
      if (f && f.op === 'ready') result = { ok: true, ms: ms() };
      else if (f && f.op === 'error') result = { ok: false, ms: ms(), reason: String(f.code) };
      else if (f && f.op === 'close') result = { ok: false, ms: ms(), reason: `closed_${f.code}` };
      return result === null;
    });
    return result ?? { ok: false, ms: ms(), reason: timedOut ? 'timeout' : `ended: ${end}` };
  } finally {
    clearTimeout(timer);
    ctrl.abort();
  }
}

/** @param {unknown} e */
function errText(e) {
  return e && typeof e === 'object' && 'message' in e ? String(/** @type {any} */ (e).message) : String(e);
}
