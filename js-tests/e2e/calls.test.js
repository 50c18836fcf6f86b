// End to end, voice and video calls (issue #17; docs/CALLS.md): Alice and
// Bob in Debian's headless Chromium with fake media devices (a test
// pattern and a beep: `--use-fake-device-for-media-stream`, permission
// granted by `--use-fake-ui-for-media-stream`), the real site and relay.
//
// - Alice video-calls Bob, who has two tabs open: both ring, he answers on
//   one, the other stops; media flow both ways (getStats: bytes received
//   grow on both sides); Alice hangs up and both call logs show the call
//   with its duration.
// - Bob declines a call; a call nobody answers is given up after the
//   ringing time and recorded as missed on both sides; a call to Carol,
//   who has no page open, says at once that she is offline.
// - Carol's browser has a camera but no permission to use it: her call
//   says so and nobody is called.
// - Through a real coturn on loopback (use-auth-secret, credentials minted
//   by WordPress, the site set to TURN only): the selected candidate pair
//   is a relayed one and media flow.
// - Afterwards the relay's memory (/proc/PID/mem) and its trace log hold
//   none of the calls' SDP secrets (ICE passwords, DTLS fingerprints): the
//   negotiation crossed it sealed.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, cleanup, freePort, person, shot, sleep, startSite, until } from './site.js';
import { connected, open, startConversation } from './ui.js';

const EXT = process.env.BM_EXT_SO || path.join(ROOT, 'target/release/bm_relay.so');
const TURNSERVER = process.env.BM_TURNSERVER || '/usr/bin/turnserver';
/** Chromium switches of a person with a (fake) camera and microphone they allowed. */
const MEDIA = ['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'];
/** The ringing time of this site (filter bm_relay_call_ring_seconds): short, for the missed call. */
const RING_S = 8;
const TURN_SECRET = 'calls-test-' + Math.random().toString(36).slice(2);

/** @type {any} */ let site;
/** @type {any} */ let alice;
/** @type {any} */ let bob;
/** Bob's second tab (same browser, same login). */
/** @type {any} */ let bob2;
let thread = 0;
/** SDP secrets of every call, to look for in the relay afterwards. */
const secrets = new Set();
/** @type {{proc: import('node:child_process').ChildProcess, dir: string, port: number}|null} */
let turn = null;

/** How many times callSettings() wrote the settings. */
let settingsVersion = 0;

/**
 * Writes the site's call settings as a must-use plugin (read on every
 * request), each time under a new name: PHP's opcache may serve a file
 * rewritten in place as it was for up to `opcache.revalidate_freq` seconds.
 */
function callSettings(opts = {}) {
  const dir = path.join(site.run, 'site/wp-content/mu-plugins');
  fs.mkdirSync(dir, { recursive: true });
  if (settingsVersion) fs.rmSync(path.join(dir, `bm-calls-test-${settingsVersion}.php`), { force: true });
  settingsVersion++;
  const lines = [`add_filter('bm_relay_call_ring_seconds', static fn() => ${RING_S});`];
  for (const [k, v] of Object.entries(opts)) lines.push(`add_filter('pre_option_${k}', static fn() => ${JSON.stringify(v)});`);
  fs.writeFileSync(path.join(dir, `bm-calls-test-${settingsVersion}.php`), `<?php\n${lines.join('\n')}\n`);
}

/** The call panel's state on a page (idle when no call). */
const panel = (page) => page.getAttribute('#bm-chat .bmc-call', 'data-state');

/** Total RTP bytes received by the page's call so far, and the selected pair's local candidate type. */
async function stats(page) {
  return page.evaluate(async () => {
    const pc = window.bmChat.call && window.bmChat.call.pc;
    if (!pc) return { bytes: 0, local: null };
    const report = await pc.getStats();
    let bytes = 0;
    let pair = null;
    report.forEach((s) => {
      if (s.type === 'inbound-rtp') bytes += s.bytesReceived || 0;
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
    });
    const local = pair && report.get(pair.localCandidateId);
    return { bytes, local: local ? local.candidateType : null };
  });
}

/** Remembers the ICE password and DTLS fingerprint of both ends of the page's call; returns the local SDP's length. */
async function keepSecrets(page) {
  const sdps = await page.evaluate(() => {
    const pc = window.bmChat.call.pc;
    return [pc.localDescription.sdp, pc.remoteDescription.sdp];
  });
  for (const sdp of sdps) {
    for (const m of sdp.matchAll(/^a=(ice-pwd:\S+|fingerprint:\S+ \S+)$/gm)) secrets.add(m[1]);
  }
  return sdps[0].length;
}

/** Waits for media to flow both ways: bytes received grow on both pages; returns the figures. */
async function mediaFlows(t) {
  await until(async () => (await panel(alice.page)) === 'active' && (await panel(bob.page)) === 'active', 20000, 'both panels active');
  // Connected is not yet a packet: wait for the first bytes, then measure.
  await until(async () => (await stats(alice.page)).bytes > 0 && (await stats(bob.page)).bytes > 0, 10000, 'the first media bytes');
  const first = await Promise.all([stats(alice.page), stats(bob.page)]);
  await sleep(1500);
  const second = await Promise.all([stats(alice.page), stats(bob.page)]);
  t.diagnostic(`bytes received in 1.5 s: Alice ${second[0].bytes - first[0].bytes}, Bob ${second[1].bytes - first[1].bytes}; candidates ${second[0].local}/${second[1].local}`);
  assert.ok(second[0].bytes > first[0].bytes, `Alice receives media (${first[0].bytes} → ${second[0].bytes})`);
  assert.ok(second[1].bytes > first[1].bytes, `Bob receives media (${first[1].bytes} → ${second[1].bytes})`);
  return second;
}

/** The page's call log entries, as data-state values, newest first. */
const logStates = (page) => page.$$eval('#bm-chat .bmc-call-log-list > li', (els) => els.map((e) => e.dataset.state));

/** Starts coturn on loopback with a private config: shared secret, no TLS, no CLI. */
async function startTurn() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bm-coturn-'));
  const port = await freePort();
  const conf = [
    `listening-port=${port}`,
    'listening-ip=127.0.0.1',
    'relay-ip=127.0.0.1',
    `min-port=${port + 1}`,
    `max-port=${port + 60}`,
    'use-auth-secret',
    `static-auth-secret=${TURN_SECRET}`,
    'realm=bm-calls.test',
    'allow-loopback-peers',
    'no-tls',
    'no-dtls',
    'no-cli',
    'no-multicast-peers',
    'fingerprint',
    `pidfile=${dir}/turnserver.pid`,
    `userdb=${dir}/turndb`,
    `log-file=${dir}/turnserver.log`,
    'simple-log',
    'verbose',
  ];
  fs.writeFileSync(path.join(dir, 'turnserver.conf'), conf.join('\n') + '\n');
  const proc = spawn(TURNSERVER, ['-c', path.join(dir, 'turnserver.conf'), '--no-stdout-log'], { stdio: 'ignore' });
  turn = { proc, dir, port };
  const log = () => (fs.existsSync(`${dir}/turnserver.log`) ? fs.readFileSync(`${dir}/turnserver.log`, 'utf8') : '');
  await until(async () => /Total General servers|IPv4. UDP listener opened on : 127\.0\.0\.1/.test(log()), 10000, 'coturn to listen');
  return turn;
}

before(async () => {
  assert.ok(fs.existsSync(EXT), `${EXT} is missing: run \`make ext\``);
  assert.ok(fs.existsSync(TURNSERVER), `${TURNSERVER} is missing: scripts/install-deps.sh browser (Debian package coturn)`);
  site = await startSite({ ext: EXT, env: { RUST_LOG: 'trace' } });
  callSettings();
  [alice, bob] = await Promise.all([person(site, 'alice', { args: MEDIA }), person(site, 'bob', { args: MEDIA })]);
});

after(async () => {
  for (const p of [alice, bob]) {
    if (p) await shot(p.page, `calls-final-${p.login}`).catch(() => {});
  }
  if (turn) {
    turn.proc.kill('SIGTERM');
    fs.rmSync(turn.dir, { recursive: true, force: true });
  }
  await cleanup();
  if (site) await site.stop();
});

test('Alice video-calls Bob: both his tabs ring, one answers, media flow both ways, the hang-up records the duration', async (t) => {
  await Promise.all([connected(alice), connected(bob)]);
  thread = await startConversation(alice, 'bo', 'Bob', 'Calls');
  assert.ok(thread > 0);
  await bob.page.locator('#bm-chat .bmc-thread', { hasText: 'Calls' }).waitFor({ timeout: 5000 });
  await open(bob, 'Calls');
  bob2 = { login: 'bob', page: await bob.context.newPage() };
  await bob2.page.goto(site.chat_url);
  await connected(bob2);

  await alice.page.getByRole('button', { name: 'Video call' }).click();
  for (const p of [bob, bob2]) await p.page.locator('#bm-chat .bmc-call-banner', { hasText: 'Alice is calling you (video)' }).waitFor({ timeout: 10000 });
  await shot(bob.page, 'calls-01-bob-ringing');
  await bob.page.getByRole('button', { name: 'Answer' }).click();
  await bob2.page.locator('#bm-chat .bmc-call-banner').waitFor({ state: 'hidden', timeout: 5000 });
  assert.equal(await panel(bob2.page), null, "Bob's other tab stopped ringing and holds no call");

  await mediaFlows(t);
  await alice.page.locator('#bm-chat .bmc-call-timer', { hasText: /^0:(0[1-9]|[1-5]\d)/ }).waitFor({ timeout: 5000 });
  const [offer, answer] = await Promise.all([keepSecrets(alice.page), keepSecrets(bob.page)]);
  // Parts of 3,000 characters (calls.js SDP_PART; candidates trickle apart).
  t.diagnostic(`video offer ${offer} characters (${Math.ceil(offer / 3000)} pub parts at most), answer ${answer}`);
  await shot(alice.page, 'calls-02-alice-in-call');
  await shot(bob.page, 'calls-03-bob-in-call');

  // Mute and camera off: the tracks stay in the call, disabled (silence, black).
  const enabled = () => bob.page.evaluate(() => window.bmChat.call.local.getTracks().map((tr) => `${tr.kind}:${tr.enabled}`).sort());
  assert.deepEqual(await enabled(), ['audio:true', 'video:true']);
  await bob.page.getByRole('button', { name: 'Mute' }).click();
  await bob.page.getByRole('button', { name: 'Camera off' }).click();
  assert.deepEqual(await enabled(), ['audio:false', 'video:false']);
  assert.equal(await bob.page.getByRole('button', { name: 'Mute' }).getAttribute('aria-pressed'), 'true');
  await bob.page.getByRole('button', { name: 'Mute' }).click();
  assert.deepEqual(await enabled(), ['audio:true', 'video:false'], 'unmuted, camera still off');

  await alice.page.getByRole('button', { name: 'Hang up' }).click();
  // A duration of a second or more (under load the steps above have
  // taken past 0:09: a CI run saw the notice say 0:10).
  await bob.page.locator('#bm-chat .bmc-notice', { hasText: /^Call ended \(0:(0[1-9]|[1-5]\d)\)\.$/ }).waitFor({ timeout: 5000 });
  await until(async () => (await panel(bob.page)) === 'idle', 5000, "Bob's call to end");
  for (const p of [alice, bob]) {
    await until(async () => (await logStates(p.page))[0] === 'ended', 5000, `${p.login}'s call log`);
  }
  const entry = await bob.page.locator('#bm-chat .bmc-call-log-list > li').first().textContent();
  assert.match(entry, /^Alice called \(video\), .+: 0:(0[1-9]|[1-5]\d)$/, 'who, what and how long');
});

test('Bob declines; a call nobody answers is missed on both sides; a call to someone offline says so at once', async () => {
  await alice.page.getByRole('button', { name: 'Voice call' }).click();
  await bob.page.locator('#bm-chat .bmc-call-banner', { hasText: 'Alice is calling you' }).waitFor({ timeout: 10000 });
  await bob.page.getByRole('button', { name: 'Decline' }).click();
  await alice.page.locator('#bm-chat .bmc-notice', { hasText: 'Bob declined the call.' }).waitFor({ timeout: 5000 });
  await until(async () => (await logStates(alice.page))[0] === 'declined', 5000, 'declined in the log');

  const t0 = Date.now();
  await alice.page.getByRole('button', { name: 'Voice call' }).click();
  await bob.page.locator('#bm-chat .bmc-call-banner').waitFor({ timeout: 10000 });
  // A reload while it rings: the page finds the ringing call in WordPress.
  await bob.page.reload();
  await bob.page.locator('#bm-chat .bmc-call-banner', { hasText: 'Alice is calling you' }).waitFor({ timeout: 5000 });
  await alice.page.locator('#bm-chat .bmc-notice', { hasText: 'Bob did not answer.' }).waitFor({ timeout: (RING_S + 5) * 1000 });
  assert.ok(Date.now() - t0 >= (RING_S - 1) * 1000, 'given up after the ringing time');
  await bob.page.locator('#bm-chat .bmc-call-banner').waitFor({ state: 'hidden', timeout: 5000 });
  for (const p of [alice, bob]) await until(async () => (await logStates(p.page))[0] === 'missed', 5000, `missed in ${p.login}'s log`);
  await shot(bob.page, 'calls-04-bob-missed');

  // Carol has no page open: the invite's push says she is offline.
  await startConversation(alice, 'ca', 'Carol', 'Carol call');
  await alice.page.getByRole('button', { name: 'Voice call' }).click();
  await alice.page.locator('#bm-chat .bmc-notice', { hasText: 'Carol is not online right now; they will see a missed call.' }).waitFor({ timeout: 5000 });
  await until(async () => (await logStates(alice.page))[0] === 'missed', 5000, 'missed in the log');
  assert.equal(await panel(alice.page), 'idle');
});

test('a browser that may not use the camera says so, and calls nobody', async () => {
  // Carol's browser has the fake devices but denies the permission, as a
  // person who blocks the prompt (no fake UI: the real permission path).
  const carol = await person(site, 'carol', { args: ['--use-fake-device-for-media-stream', '--deny-permission-prompts'] });
  await connected(carol);
  await open(carol, 'Carol call');
  await carol.page.getByRole('button', { name: 'Video call' }).click();
  await carol.page.locator('#bm-chat .bmc-notice', { hasText: 'A video call needs your microphone and camera' }).waitFor({ timeout: 10000 });
  await shot(carol.page, 'calls-05-carol-denied');
  assert.equal(await alice.page.locator('#bm-chat .bmc-call-banner').isVisible(), false, 'Alice was not called');
  await carol.context.close();
});

test('through coturn only (relay candidates, WordPress-minted credentials), then the relay holds no SDP', async (t) => {
  const tr = await startTurn();
  callSettings({ bmr_turn_urls: `turn:127.0.0.1:${tr.port}?transport=udp`, bmr_turn_secret: TURN_SECRET, bmr_turn_only: 1 });
  await open(alice, 'Calls');
  await alice.page.getByRole('button', { name: 'Voice call' }).click();
  await bob.page.locator('#bm-chat .bmc-call-banner', { hasText: 'Alice is calling you' }).waitFor({ timeout: 10000 });
  await bob.page.getByRole('button', { name: 'Answer' }).click();
  const s = await mediaFlows(t);
  assert.deepEqual([s[0].local, s[1].local], ['relay', 'relay'], 'both ends send through TURN');
  await Promise.all([keepSecrets(alice.page), keepSecrets(bob.page)]);
  const log = fs.readFileSync(path.join(tr.dir, 'turnserver.log'), 'utf8');
  assert.match(log, /user <\d+:\d+>/, 'coturn authenticated expiry:user credentials');
  await bob.page.getByRole('button', { name: 'Hang up' }).click();
  await until(async () => (await panel(alice.page)) === 'idle', 5000, "Alice's call to end");

  // The relay carried every SDP part and candidate, sealed: none of the
  // calls' secrets is in its memory or its trace log.
  assert.ok(secrets.size >= 4, `secrets collected: ${secrets.size}`);
  const { pid } = await site.command('relay-pid');
  const needles = [...secrets].map((s) => Buffer.from(s));
  // The control: Alice's pseudonym, as the relay holds it to route her
  // (u64 little-endian), is found — the scan sees the relay's memory.
  const wire = Buffer.alloc(8);
  wire.writeBigUInt64LE(BigInt(alice.wire));
  const found = scanMemory(pid, [...needles, wire]);
  assert.ok(found.hits.has(needles.length), "control: Alice's pseudonym is in the relay's routing memory");
  found.hits.delete(needles.length);
  const relayLog = fs.readFileSync(path.join(site.run, 'relay.log'));
  t.diagnostic(`scanned ${(found.scanned / 1048576).toFixed(1)} MiB of relay memory and ${relayLog.length} bytes of trace log for ${needles.length} SDP secrets`);
  assert.ok(found.scanned > 1 << 20, "the relay's memory was read");
  assert.deepEqual([...found.hits].map((i) => String(needles[i])), [], "no SDP secret in the relay's memory");
  assert.deepEqual(needles.filter((n) => relayLog.includes(n)).map(String), [], 'no SDP secret in the relay\'s log');
});

/** Indexes of the needles found anywhere in the readable mappings of process `pid` (each mapping read whole, at most 256 MiB). */
function scanMemory(pid, needles) {
  const fd = fs.openSync(`/proc/${pid}/mem`, 'r');
  const hits = new Set();
  let scanned = 0;
  try {
    for (const line of fs.readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
      const m = /^([0-9a-f]+)-([0-9a-f]+) r/.exec(line);
      if (!m || /\[(vvar|vsyscall|vvar_vclock)\]/.test(line)) continue;
      const start = parseInt(m[1], 16);
      const size = Math.min(parseInt(m[2], 16) - start, 256 << 20);
      const buf = Buffer.alloc(size);
      let got = 0;
      try {
        got = fs.readSync(fd, buf, 0, size, start);
      } catch {
        continue;
      }
      scanned += got;
      const view = buf.subarray(0, got);
      needles.forEach((n, i) => view.includes(n) && hits.add(i));
    }
  } finally {
    fs.closeSync(fd);
  }
  return { hits, scanned };
}
