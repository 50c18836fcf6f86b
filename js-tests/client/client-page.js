// Test page glue: builds a BmClient whose callbacks call the harness's
// stand-in WordPress routes (/wp/*), the way the chat page will call the
// plugin's REST routes, and records what the client reports. It renders
// every delivered event as a list item, so tests can check what a person
// would see (each message shown once).

import { BmClient } from '/assets/bm-client.js';
import { connectShared, sharedWorkerName } from '/assets/bm-shared.js';

/** Counts WebSocket constructions, to prove when the client (re)tries. */
class CountingWebSocket extends WebSocket {
  constructor(url) {
    super(url);
    window.bmSockets = (window.bmSockets || 0) + 1;
    (window.bmSocketTimes ||= []).push(Date.now());
  }
}

async function json(path) {
  const r = await fetch(path);
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return r.json();
}

/**
 * @param {{user: number, url: string, site: string, opts?: object, websocket?: boolean, poll?: boolean}} cfg
 */
window.setupClient = (cfg) => {
  const u = cfg.user;
  const log = { states: [], ready: [], events: [], hints: [], dropped: [], errors: [], unsubs: [], catchups: [], polling: [], retries: [], transports: [] };
  window.bmLog = log;
  window.bmSockets = 0;
  const client = new BmClient({
    url: cfg.url,
    site: cfg.site,
    getToken: async () => (await json(`/wp/token?user=${u}`)).token,
    getThreadToken: async (t) => (await json(`/wp/thread-token?user=${u}&thread=${t}`)).token,
    getKey: async (kid) => (await json(`/wp/key?user=${u}&kid=${encodeURIComponent(kid)}`)).key,
    threadKeyId: (t) => `t/${t}/0`,
    catchUp: async (info) => {
      log.catchups.push(info);
      return (await json(`/wp/catchup?user=${u}`)).events;
    },
    poll: cfg.poll === false ? undefined : async () => (await json(`/wp/catchup?user=${u}&poll=1`)).events,
    WebSocket: cfg.websocket === false ? null : CountingWebSocket,
    ...(cfg.opts || {}),
  });
  const list = document.getElementById('log');
  client.on('state', (s) => {
    log.states.push(s.state + (s.code ? `:${s.code}` : ''));
    if (s.retryIn !== undefined) log.retries.push({ at: Date.now(), retryIn: s.retryIn, reason: s.reason });
  });
  client.on('ready', (r) => log.ready.push(r));
  client.on('event', (e) => {
    log.events.push(e);
    const li = document.createElement('li');
    li.dataset.id = e.id;
    li.textContent = `${e.type}: ${JSON.stringify(e.data)}`;
    list.append(li);
  });
  client.on('hint', (h) => log.hints.push(h));
  client.on('dropped', (d) => log.dropped.push(d));
  client.on('error', (e) => log.errors.push(e));
  client.on('unsub', (e) => log.unsubs.push(e));
  client.on('polling', (p) => log.polling.push(p.active));
  client.on('transport', (t) => log.transports.push(t.transport));
  window.client = client;
  return true;
};

/**
 * setupClient through the browser's shared connection (bm-shared.js), as the
 * chat page does; where it cannot be had (no SharedWorker), alone.
 * `window.bmShared` says which.
 * @param {{user: number, url: string, site: string, opts?: object, timing?: object}} cfg
 */
window.setupSharedClient = async (cfg) => {
  const link = await connectShared({
    workerUrl: '/assets/bm-shared-worker.js',
    name: sharedWorkerName({ site: cfg.site, user: cfg.user, urls: [cfg.url] }),
    config: { url: cfg.url, site: cfg.site, timing: cfg.timing },
    getToken: async () => (await json(`/wp/token?user=${cfg.user}`)).token,
  });
  window.bmShared = !!link;
  window.bmLink = link;
  window.setupClient({ ...cfg, opts: { ...(link ? { WebSocket: link.WebSocket, stream: false } : {}), ...(cfg.opts || {}) } });
  if (link) link.on('up', () => window.client.retryNow());
  return window.bmShared;
};
