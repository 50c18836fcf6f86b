// The end-to-end test's site: runs site.php (a private MariaDB, Debian's
// WordPress with the plugin, the relay, `php -S`, the [bm_chat] page) as a
// child in its own process group and talks to it over stdin/stdout (one
// command, one JSON line back). Closing its stdin stops every server; the
// process group is killed if this test process dies first.
//
// Also: one Chromium per person (js-tests/client/harness.js's launcher), logged in
// through wp-login.php.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { freePort, launchBrowser, track, until } from '../client/harness.js';

export { cleanup, freePort, relayPost, sleep, until } from '../client/harness.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
/** The repository root. */
export const ROOT = path.resolve(HERE, '../..');
/** Screenshots go here (run/ is git-ignored). */
export const ARTIFACTS = process.env.BM_E2E_ARTIFACTS || path.join(ROOT, 'run/e2e-artifacts');

/** Process groups to kill if the test process exits before cleaning up. */
const groups = new Set();
process.on('exit', () => {
  for (const pid of groups) {
    try {
      // TERM, not KILL: site.php then stops its own servers (each in its
      // own group) and removes its temp directory.
      process.kill(-pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
});

/**
 * Starts the site; resolves with its description ({url, chat_url, users,
 * password, relay_port, site, relay_key, impl, …}) plus `command(line)`
 * and `stop()`.
 * @param {{ext?: string|null, tokenTtl?: number|null, timeout?: number, env?: Record<string,string>}} opts ext: the extension .so
 *   to load into PHP; tokenTtl: lifetime (s) of the tokens WordPress gives browsers; env: more
 *   of site.php's settings (its header lists them, e.g. BM_CLUSTER_NATS)
 */
export async function startSite({ ext = null, tokenTtl = null, timeout = 120000, env: more = {} } = {}) {
  const env = { ...process.env, ...more };
  delete env.BM_EXT_SO;
  if (ext) env.BM_EXT_SO = ext;
  if (tokenTtl) env.BM_TOKEN_TTL = String(tokenTtl);
  const child = spawn('php', [path.join(HERE, 'site.php')], {
    cwd: ROOT,
    env,
    detached: true,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const { exited, dead, stderr } = track(child, groups, 6000);
  const lines = [];
  const waiters = [];
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    const w = waiters.shift();
    if (w) w(line);
    else lines.push(line);
  });
  const nextLine = (ms, what) =>
    new Promise((resolve, reject) => {
      if (lines.length) return resolve(lines.shift());
      const timer = setTimeout(() => reject(new Error(`site: no answer to ${what} within ${ms} ms\n${stderr()}`)), ms);
      exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`site.php exited (${code ?? signal}) during ${what}:\n${stderr()}`));
      });
      waiters.push((l) => {
        clearTimeout(timer);
        resolve(l);
      });
    });
  const stop = async () => {
    if (dead()) return;
    child.stdin.end();
    const t = setTimeout(() => {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }, 30000);
    await exited;
    clearTimeout(t);
  };
  let info;
  try {
    info = JSON.parse(await nextLine(timeout, 'start'));
  } catch (e) {
    await stop();
    throw e;
  }
  /** Sends one command; resolves with its JSON answer (throws on {error}). */
  let queue = Promise.resolve();
  const command = (line, ms = 60000) => {
    const p = queue.then(async () => {
      child.stdin.write(line + '\n');
      const out = JSON.parse(await nextLine(ms, line));
      if (out.error) throw new Error(`site: ${line}: ${out.error}`);
      return out;
    });
    queue = p.catch(() => {});
    return p;
  };
  return { ...info, command, stop, stderr };
}

/**
 * A person: their own Chromium (the client tests' launcher: Debian's
 * binary, headless, a fresh profile, closed by `cleanup()`), logged in
 * through wp-login.php, on the chat page. Page errors are collected in
 * `page.errors`.
 */
export async function person(site, login, { viewport = { width: 1100, height: 800 }, args = [] } = {}) {
  const context = await launchBrowser({ args });
  const page = context.pages()[0] || (await context.newPage());
  await page.setViewportSize(viewport);
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') page.errors.push(m.text());
  });
  // Two tries: a login on the busy 2-core CI machine twice (in ~15 runs,
  // both on WordPress latest) did not leave wp-login.php within 60 s; the
  // first failure is reported with what the login page said, then retried.
  for (let attempt = 1; ; attempt++) {
    await page.goto(`${site.url}/wp-login.php?redirect_to=${encodeURIComponent(site.chat_url)}`);
    await page.fill('#user_login', login);
    await page.fill('#user_pass', site.password);
    // Wait for the redirect away from wp-login.php to be committed, not for
    // the next page's `load` (its scripts and styles): that page is left at
    // once for the chat page. A refusal shows #login_error at once.
    const left = page.waitForURL((u) => !u.pathname.endsWith('/wp-login.php'), { waitUntil: 'commit', timeout: 45000 });
    const refused = page.locator('#login_error').waitFor({ timeout: 45000 });
    left.catch(() => {});
    refused.catch(() => {});
    await Promise.all([Promise.any([left, refused]).catch(() => {}), page.click('#wp-submit')]);
    if (!page.url().includes('wp-login.php')) break;
    const said = await page
      .locator('#login_error')
      .innerText({ timeout: 1000 })
      .catch(() => '(no error shown)');
    const why = `login as ${login} failed (try ${attempt}): still at ${page.url()}; the page says: ${said.trim()}`;
    if (attempt >= 2) throw new Error(why);
    console.error(`# ${why}; trying once more`);
  }
  await page.goto(site.chat_url);
  await page.locator('#bm-chat .bmc').waitFor({ timeout: 10000 });
  // wire: what the relay calls them (their pseudonym in protocol 2), for
  // tests that speak to the relay themselves.
  return { login, id: site.users[login], wire: site.wires?.[login] ?? site.users[login], context, page };
}

/** Saves a screenshot of the chat on a page under run/e2e-artifacts/ (the whole page when there is no chat). */
export async function shot(page, name) {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${name}.png`);
  const chat = page.locator('#bm-chat');
  if (await chat.count()) await chat.screenshot({ path: file });
  else await page.screenshot({ path: file, fullPage: true });
}

/** Debian's nats-server, or BM_NATS_SERVER. */
export const NATS_BIN = process.env.BM_NATS_SERVER || ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'].find((p) => fs.existsSync(p));

/**
 * A private nats-server on a free loopback port (no config file), in its
 * own process group; resolves once it accepts connections with its `url`
 * and `stop()`.
 */
export async function startNats() {
  if (!NATS_BIN) throw new Error('nats-server is not installed: make test-e2e installs it (scripts/install-deps.sh broker)');
  const port = await freePort();
  const child = spawn(NATS_BIN, ['-a', '127.0.0.1', '-p', String(port)], { detached: true, stdio: 'ignore' });
  groups.add(child.pid);
  await until(
    () =>
      new Promise((resolve) => {
        const s = net.connect(port, '127.0.0.1', () => {
          s.destroy();
          resolve(true);
        });
        s.on('error', () => resolve(false));
      }),
    10000,
    'nats-server to listen',
  );
  const stop = () => {
    groups.delete(child.pid);
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // gone
    }
  };
  return { url: `nats://127.0.0.1:${port}`, stop };
}
