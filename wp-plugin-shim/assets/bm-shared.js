// bm-shared.js: a tab's side of the one relay connection its browser shares
// (docs/CLIENT.md "One socket per browser").
//
// The tabs of one user on one site share a SharedWorker (bm-shared-worker.js)
// that holds the only connection to the relay. Each tab keeps its own
// BmClient, which does everything it does alone (keys, opening, dedupe,
// catch-up, the page's events) but reaches the relay through a `PortSocket`:
// a WebSocket look-alike over the worker's MessagePort. The worker answers
// it as a relay would, subscribing the shared connection to the union of its
// tabs' threads. The keys never leave the tabs: the worker moves sealed
// envelopes only.

/**
 * Version of the tab ↔ worker message set (docs/CLIENT.md). It is part of
 * the worker's name, so a tab of a newer plugin never talks to an older
 * worker that another tab still runs.
 */
export const SHARED_VERSION = 1;

/** ms a tab waits for the worker's `hello` before connecting alone. */
const HELLO_TIMEOUT = 5000;

/**
 * The SharedWorker's name: one worker per message-set version, site, user
 * (wire id) and relay URLs, so another user logging in in the same browser,
 * or a site whose relay moved, never shares a socket it should not.
 * @param {{site: string, user: string|number, urls: string[]}} who
 */
export function sharedWorkerName({ site, user, urls }) {
  return `bm-relay/${SHARED_VERSION} ${site} ${user} ${urls.join(',')}`;
}

/**
 * Starts (or joins) the browser's shared connection. Resolves with a
 * SharedRelay, or null when this browser has no SharedWorker, or the worker
 * fails to start or to answer in time: the caller then connects on its own
 * (one socket per tab, as before).
 * @param {object} o
 * @param {string|URL} o.workerUrl the URL of bm-shared-worker.js (same origin)
 * @param {string} o.name the worker's name (sharedWorkerName)
 * @param {{url?: string, urls?: string[], site: string, options?: object}} o.config what the worker connects with
 *   (the first tab's wins); `options` are further BmClient options (timings)
 * @param {() => string|Promise<string>} o.getToken a fresh connection token, when the worker asks for one
 * @param {number} [o.timeout] ms to wait for the worker (default 5000)
 * @param {any} [o.SharedWorker] constructor (default globalThis.SharedWorker)
 * @returns {Promise<SharedRelay|null>}
 */
export async function connectShared({ workerUrl, name, config, getToken, timeout = HELLO_TIMEOUT, SharedWorker: SW = globalThis.SharedWorker }) {
  if (typeof SW !== 'function') return null;
  let worker;
  try {
    worker = new SW(workerUrl, { type: 'module', name });
  } catch {
    // A CSP without worker-src, a bad URL: each tab on its own then.
    return null;
  }
  const port = worker.port;
  const ok = await new Promise((resolve) => {
    const timer = setTimeout(() => done(false), timeout);
    const done = (v) => {
      clearTimeout(timer);
      worker.onerror = null;
      port.onmessage = null;
      resolve(v);
    };
    // A script that fails to load or to parse fires `error` here.
    worker.onerror = () => done(false);
    port.onmessage = (m) => {
      const d = m.data;
      if (d && d.t === 'hello') done(d.v === SHARED_VERSION && d.ok === true ? d : false);
    };
    port.start();
    port.postMessage({ t: 'hello', v: SHARED_VERSION, config });
  });
  if (!ok) {
    port.close();
    return null;
  }
  return new SharedRelay(port, getToken, ok.transport, ok.url);
}

/**
 * A tab's end of the shared connection. `WebSocket` is the constructor to
 * give the tab's BmClient (with `stream: false`: the worker picks the
 * transport); `transport` is the shared connection's.
 *
 * Events (`on(name, fn)`): `up` (the shared connection is ready again: a
 * tab waiting out its backoff may connect now), `transport` {transport, url}
 * (the connection's, at each `ready` and each change of transport).
 */
export class SharedRelay {
  /**
   * @param {MessagePort} port
   * @param {() => string|Promise<string>} getToken
   * @param {'websocket'|'stream'} [transport]
   * @param {string|null} [url]
   */
  constructor(port, getToken, transport = 'websocket', url = null) {
    /** @private */
    this.port = port;
    /** @private */
    this.getToken = getToken;
    /** The shared connection's transport (`websocket` or `stream`). */
    this.transport = transport === 'stream' ? 'stream' : 'websocket';
    /** The relay URL the shared connection uses (or tries next); null before the worker has a connection. */
    this.url = typeof url === 'string' ? url : null;
    /** @private @type {Map<number, PortSocket>} open sockets by id */
    this.sockets = new Map();
    /** @private */
    this.nextId = 0;
    /** @private @type {Map<string, Set<Function>>} */
    this.handlers = new Map();
    /** @private */
    this.gone = false;
    const relay = this;
    /**
     * A WebSocket constructor for BmClient (`new WebSocket(url)`); the URL
     * is the worker's business.
     */
    this.WebSocket = class extends PortSocket {
      constructor() {
        super(relay);
      }
    };
    port.onmessage = (m) => this.onMessage(m.data);
    if (typeof addEventListener === 'function') {
      // Ports have no close event: the worker hears of a closing tab from
      // `pagehide` (and of one that died from its silence, the heartbeat).
      addEventListener('pagehide', () => this.leave());
      // Back from the back/forward cache: the worker dropped this tab; the
      // client reconnects (and catches up) through new sockets.
      addEventListener('pageshow', (e) => {
        if (e.persisted && this.gone) {
          this.gone = false;
          this.dropAll(1006, 'back from the page cache');
        }
      });
    }
  }

  /** Listeners; returns a function that removes it. @param {'up'|'transport'} name @param {Function} fn */
  on(name, fn) {
    if (!this.handlers.has(name)) this.handlers.set(name, new Set());
    this.handlers.get(name).add(fn);
    return () => this.handlers.get(name)?.delete(fn);
  }

  /** @private */
  emit(name, payload) {
    for (const fn of [...(this.handlers.get(name) ?? [])]) fn(payload);
  }

  /** Tells the worker this tab is gone (its subscriptions are dropped at once). */
  leave() {
    this.gone = true;
    this.post({ t: 'bye' });
  }

  /** @private */
  post(msg) {
    try {
      this.port.postMessage(msg);
    } catch {
      // a closed port: the sockets time out and the client reconnects
    }
  }

  /** @private every open socket of this tab closes with `code` */
  dropAll(code, reason) {
    for (const s of [...this.sockets.values()]) s.closed(code, reason);
  }

  /** @private a message from the worker */
  async onMessage(d) {
    if (!d || typeof d !== 'object') return;
    switch (d.t) {
      case 'frame':
        this.sockets.get(d.sock)?.message(String(d.text));
        return;
      case 'closed':
        this.sockets.get(d.sock)?.closed(Number(d.code) || 1006, String(d.reason ?? ''));
        return;
      case 'hb':
        this.post({ t: 'hb' });
        return;
      case 'up':
        this.emit('up');
        return;
      case 'transport':
        this.transport = d.transport === 'stream' ? 'stream' : 'websocket';
        if (typeof d.url === 'string') this.url = d.url;
        this.emit('transport', { transport: this.transport, url: this.url });
        return;
      case 'token?': {
        // The worker needs a connection token: this tab asks WordPress.
        let token = null;
        let error = null;
        try {
          token = await this.getToken();
        } catch (e) {
          error = String(e && e.message ? e.message : e);
        }
        this.post({ t: 'token', id: d.id, token, error });
        return;
      }
      default:
      // a newer worker's message: ignored
    }
  }
}

/**
 * A WebSocket look-alike over the worker's port: what BmClient uses
 * (`readyState`, `send`, `close`, `onopen`, `onmessage`, `onclose`,
 * `onerror`). The worker answers its frames as the relay would.
 */
class PortSocket {
  /** @param {SharedRelay} relay */
  constructor(relay) {
    /** @private */
    this.relay = relay;
    /** @private */
    this.id = ++relay.nextId;
    /** 0 connecting, 1 open, 3 closed, as WebSocket's. */
    this.readyState = 0;
    this.onopen = null;
    this.onmessage = null;
    this.onclose = null;
    this.onerror = null;
    relay.sockets.set(this.id, this);
    relay.gone = false;
    relay.post({ t: 'open', sock: this.id });
    // Opened at once (the worker always answers); asynchronously, as a
    // WebSocket is, so the client has set its handlers.
    setTimeout(() => {
      if (this.readyState !== 0) return;
      this.readyState = 1;
      this.onopen?.({});
    }, 0);
  }

  /** @param {string} text a relay frame */
  send(text) {
    if (this.readyState !== 1) throw new Error('the socket is not open');
    this.relay.post({ t: 'frame', sock: this.id, text });
  }

  /** Closes this socket (the worker drops its subscriptions). */
  close() {
    if (this.readyState === 3) return;
    this.relay.post({ t: 'close', sock: this.id });
    this.closed(1000, '');
  }

  /** @private */
  message(text) {
    if (this.readyState === 1) this.onmessage?.({ data: text });
  }

  /** @private */
  closed(code, reason) {
    if (this.readyState === 3) return;
    this.readyState = 3;
    this.relay.sockets.delete(this.id);
    this.onclose?.({ code, reason });
  }
}
