// Test harness for the browser client: Debian's headless Chromium driven by
// playwright-core, a tiny HTTP server on 127.0.0.1 serving the modules and
// playing the WordPress side (tokens, keys, catch-up), and the real relay
// binary. Everything started here is stopped by `cleanup()`.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** the repository root */
export const ROOT = path.resolve(HERE, '../..');
/** wp-plugin-shim/ (the plugin: what ships) */
export const SHIM = path.join(ROOT, 'wp-plugin-shim');
/** js-tests/ (these tests, outside the plugin) */
export const TESTS = path.join(ROOT, 'js-tests');
export const CHROMIUM = process.env.BM_CHROMIUM || '/usr/bin/chromium';
export const RELAY_BIN = process.env.BM_RELAY_BIN || path.join(ROOT, 'target/release/bm-relay');
export const VECTORS = JSON.parse(fs.readFileSync(path.join(ROOT, 'testdata/crypto-v1.json'), 'utf8'));

const cleanups = [];
/** Process groups started here, killed even when the test process dies early. */
const groups = new Set();
const killGroups = () => {
  for (const pid of groups) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
};
process.on('exit', killGroups);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => {
    killGroups();
    process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1));
  });
}
/** Registers something to stop at the end, run in reverse order. */
export function onCleanup(fn) {
  cleanups.push(fn);
}
/** Stops everything this harness started. */
export async function cleanup() {
  while (cleanups.length) {
    const fn = cleanups.pop();
    try {
      await fn();
    } catch (e) {
      console.error('cleanup:', e);
    }
  }
}

// ---- protocol crypto in node (the "WordPress side" of the tests) ----------

export const b64u = (buf) => Buffer.from(buf).toString('base64url');
export const unb64u = (s) => Buffer.from(s, 'base64url');

/** HKDF-SHA256 with the protocol salt, 32 bytes. */
export function hkdf(ikm, info) {
  return Buffer.from(crypto.hkdfSync('sha256', ikm, Buffer.from('bm-relay/v1'), Buffer.from(info), 32));
}

/** A test site: random secret and its derived keys. */
export function makeSite(site = 'test.local') {
  const secret = crypto.randomBytes(32);
  const relayKey = hkdf(secret, 'relay');
  const contentKey = hkdf(secret, 'content');
  return {
    site,
    secret: b64u(secret),
    relayKey,
    contentKey,
    threadKey: (t, e = 0) => hkdf(contentKey, `thread/${t}/${e}`),
    userKey: (u) => hkdf(contentKey, `user/${u}`),
    /** key bytes for a key id */
    keyFor(kid) {
      let m = /^t\/(\d+)\/(\d+)$/.exec(kid);
      if (m) return hkdf(contentKey, `thread/${m[1]}/${m[2]}`);
      m = /^u\/(\d+)$/.exec(kid);
      if (m) return hkdf(contentKey, `user/${m[1]}`);
      return null;
    },
  };
}

/** HS256 JWT with the relay key, claims in the protocol's order. */
export function mintToken(relayKey, { site, sub, thread, iat, exp }) {
  const header = b64u(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const claims = { site, sub: String(sub) };
  if (thread !== undefined) claims.thread = thread;
  claims.iat = iat;
  claims.exp = exp;
  const payload = b64u(JSON.stringify(claims));
  const sig = crypto.createHmac('sha256', relayKey).update(`${header}.${payload}`).digest();
  return `${header}.${payload}.${b64u(sig)}`;
}

/** Seals {type, data} with AES-256-GCM and the AAD rule. */
export function seal(site, key, kid, type, data, id = b64u(crypto.randomBytes(16))) {
  const nonce = crypto.randomBytes(12);
  const c = crypto.createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(Buffer.from(`bm1|${site}|${id}|${kid}`));
  const ct = Buffer.concat([c.update(JSON.stringify({ type, data })), c.final(), c.getAuthTag()]);
  return { v: 1, id, k: kid, n: b64u(nonce), c: b64u(ct) };
}

/** Signs and sends a relay server-API request; resolves with {status, body}. */
export function relayPost(port, site, relayKey, reqPath, bodyObj) {
  const body = JSON.stringify(bodyObj);
  const ts = Math.floor(Date.now() / 1000);
  const sig = crypto.createHmac('sha256', relayKey).update(`${ts}\n${site}\nPOST ${reqPath}\n${body}`).digest('hex');
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path: reqPath,
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          'x-bm-site': site,
          'x-bm-timestamp': String(ts),
          'x-bm-signature': `v1=${sig}`,
        },
        timeout: 5000,
      },
      (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => {
          let parsed;
          try {
            parsed = JSON.parse(text);
          } catch {
            parsed = text;
          }
          resolve({ status: res.statusCode, body: parsed });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${reqPath}: timeout`)));
    req.on('error', reject);
    req.end(body);
  });
}

// ---- processes and ports ------------------------------------------------

/** A loopback port free now, from 20000-32767 (below the kernel's ephemeral range, as php-tests/lib/free-port.php explains; the e2e suite uses it too). */
export async function freePort() {
  for (let i = 0; i < 1000; i++) {
    const port = 20000 + Math.floor(Math.random() * 12768);
    if (handedOut.has(port)) continue; // given out already, maybe not bound yet
    const free = await new Promise((resolve) => {
      const srv = net.createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
    });
    if (free) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('no free loopback port in 20000-32767 after 1000 tries');
}
const handedOut = new Set();

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns truthy, at most `timeout` ms. */
export async function until(fn, timeout = 5000, what = 'condition') {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/**
 * Follows a spawned server (started with `detached: true`, so it leads its
 * own process group): its group stays in `groups` (killed if the test
 * process dies early) until it exits, and the last `tail` characters of its
 * stderr are kept for error messages. Shared by the relay here and the
 * end-to-end site runner.
 * @param {import('node:child_process').ChildProcess} child
 * @param {Set<number>} groups
 * @param {number} tail
 */
export function track(child, groups, tail) {
  groups.add(child.pid);
  let text = '';
  child.stderr.on('data', (d) => {
    text = (text + d).slice(-tail);
  });
  let gone = false;
  const exited = new Promise((r) =>
    child.on('exit', (code, signal) => {
      groups.delete(child.pid);
      gone = true;
      r({ code, signal });
    }),
  );
  return { exited, dead: () => gone, stderr: () => text };
}

/**
 * Starts the relay in its own process group on fixed ports; resolves when
 * /healthz answers 200. `stop()` kills the group and waits for the exit.
 * `config`: TOML text for `--config` (e.g. shorter `[limits]` intervals).
 */
export async function startRelay({ site, relayKey, port, adminPort, config }) {
  if (!fs.existsSync(RELAY_BIN)) throw new Error(`${RELAY_BIN} is missing: run \`cargo build --release -p bm-relay\``);
  port ??= await freePort();
  adminPort ??= await freePort();
  const extra = [];
  if (config) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-client-relay-'));
    onCleanup(() => fs.rmSync(dir, { recursive: true, force: true }));
    fs.writeFileSync(path.join(dir, 'relay.toml'), config);
    extra.push('--config', path.join(dir, 'relay.toml'));
  }
  const child = spawn(
    RELAY_BIN,
    ['serve', ...extra, '--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${adminPort}`, '--site', `${site}=${b64u(relayKey)}`],
    { detached: true, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, RUST_LOG: 'warn' } },
  );
  const { exited, dead, stderr } = track(child, groups, 4000);
  const stop = async () => {
    if (dead()) return;
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    await exited;
  };
  onCleanup(stop);
  const end = Date.now() + 10000;
  for (;;) {
    if (dead()) throw new Error(`bm-relay exited at start: ${stderr()}`);
    const ok = await new Promise((r) => {
      const req = http.get({ host: '127.0.0.1', port: adminPort, path: '/healthz', timeout: 1000 }, (res) => {
        res.resume();
        r(res.statusCode === 200);
      });
      req.on('error', () => r(false));
      req.on('timeout', () => req.destroy());
    });
    if (ok) break;
    if (Date.now() > end) {
      await stop();
      throw new Error(`bm-relay did not become healthy: ${stderr()}`);
    }
    await sleep(50);
  }
  return { port, adminPort, child, stop, wsUrl: `ws://127.0.0.1:${port}/v1/ws`, stderr };
}

// ---- a proxy that blocks WebSocket ------------------------------------------

/**
 * Starts `server` on 127.0.0.1 (`port`, or one the kernel picks) and
 * returns its stop function, registered for cleanup: it destroys every open
 * connection first (a browser's keep-alive or stream would hold close() up).
 * @param {http.Server} server
 * @param {number} [port]
 */
async function listenLoopback(server, port = 0) {
  const sockets = new Set();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const stop = () =>
    new Promise((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    });
  onCleanup(stop);
  return stop;
}

/**
 * An HTTP proxy on 127.0.0.1 in front of the relay, like a corporate proxy
 * that refuses WebSocket: every request with `Upgrade: websocket` gets
 * `403 Forbidden` while `block` is true (the browser sees close 1006, as
 * behind such a proxy); other requests are passed through with their
 * bodies streamed both ways, unbuffered (a stream must flow event by
 * event). With `block` false upgrades are passed through too: a network
 * that was fixed. Counts what it saw: `upgrades`, `blocked`, `requests`.
 * @param {number} to the relay's client port
 * @param {{port?: number}} [opts]
 */
export async function startWsBlockingProxy(to, { port } = {}) {
  const state = { block: true, upgrades: 0, blocked: 0, requests: 0 };
  const server = http.createServer((req, res) => {
    state.requests++;
    const up = http.request({ host: '127.0.0.1', port: to, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode || 502, r.headers);
      r.pipe(res);
    });
    up.on('error', () => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end('bad gateway');
    });
    // The browser ending its request (e.g. a stream it no longer wants) ends the relay's.
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  server.on('upgrade', (req, socket, head) => {
    state.upgrades++;
    if (state.block) {
      state.blocked++;
      socket.end('HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: 24\r\nconnection: close\r\n\r\nWebSocket is not allowed');
      return;
    }
    const relay = net.connect(to, '127.0.0.1', () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      relay.write(`${lines.join('\r\n')}\r\n\r\n`);
      relay.write(head);
      socket.pipe(relay).pipe(socket);
    });
    const drop = () => {
      relay.destroy();
      socket.destroy();
    };
    relay.on('error', drop);
    socket.on('error', drop);
  });
  const stop = await listenLoopback(server, port ?? (await freePort()));
  const at = server.address().port;
  return Object.assign(state, { port: at, wsUrl: `ws://127.0.0.1:${at}/v1/ws`, stop });
}

// ---- the page server --------------------------------------------------------

const TYPES = { '.js': 'text/javascript; charset=utf-8', '.html': 'text/html; charset=utf-8', '.json': 'application/json' };

/**
 * Serves /assets/* (the client modules) from wp-plugin-shim/assets and
 * /tests/* (test pages) from js-tests/, plus the JSON routes in `routes` (path → handler(url) →
 * object, or throws {status}). Plays the WordPress side of the tests.
 */
export async function startPageServer(routes = {}) {
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://127.0.0.1');
    try {
      if (routes[url.pathname]) {
        const out = await routes[url.pathname](url);
        res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        res.end(JSON.stringify(out));
        return;
      }
      if (url.pathname === '/favicon.ico') {
        res.writeHead(204).end();
        return;
      }
      const m = /^\/(assets|tests)\/([A-Za-z0-9_./-]+)$/.exec(url.pathname);
      const file = m && !m[2].includes('..') ? path.join(m[1] === 'assets' ? path.join(SHIM, 'assets') : TESTS, m[2]) : null;
      if (!file || !fs.existsSync(file)) {
        console.error(`page server: 404 ${url.pathname}`);
        res.writeHead(404).end('not found');
        return;
      }
      res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream', 'cache-control': 'no-store' });
      res.end(fs.readFileSync(file));
    } catch (e) {
      res.writeHead(e && e.status ? e.status : 500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: String(e && e.message ? e.message : e) }));
    }
  });
  const stop = await listenLoopback(server);
  return { origin: `http://127.0.0.1:${server.address().port}`, stop };
}

// ---- the browser --------------------------------------------------------------

/**
 * Launches Debian's Chromium headless with a fresh profile directory;
 * `args`: more command-line switches for one test (e.g. fake media devices).
 */
export async function launchBrowser({ args = [] } = {}) {
  const { chromium } = await import('playwright-core');
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-client-chromium-'));
  onCleanup(() => fs.rmSync(profile, { recursive: true, force: true }));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      ...args,
    ],
    timeout: 30000,
  });
  onCleanup(() => context.close());
  return context;
}

/** A new page of `context` at `url`, with console errors collected. */
export async function openPage(context, url) {
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(m.text());
  });
  await page.goto(url);
  page.errors = errors;
  return page;
}
