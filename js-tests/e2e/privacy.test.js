// End to end, what the relay can give away (issue #15; docs/PROTOCOL.md
// §1, §3.2): two people with distinctive ids, logins, names, a subject and
// messages chat through the real relay; then everything the relay holds or
// wrote is searched: its whole readable memory (/proc/PID/mem), its log at
// trace level, its /metrics, and every byte WordPress sent it (through a
// recording proxy in front of it).
//
// Asserted: no login, display name, subject or message text is anywhere
// in there — the relay only ever gets ciphertext and numbers — and, in
// protocol 2 (§3.2, a new site's default), no WordPress user or thread id
// either (decimal, or as the relay would hold a number: u64 little-endian),
// with the relay deployed as docs/DEPLOY.md §5 says (a host name of its
// own, so browsers send it none of the site's cookies).
// The control that proves the scan sees what the relay holds: the
// pseudonyms it routes by are found, in its memory and in the pushes.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { ROOT, cleanup, freePort, person, shot, startSite } from './site.js';
import { connected, msg, open, send, startConversation } from './ui.js';

const EXT = process.env.BM_EXT_SO || path.join(ROOT, 'target/release/bm_relay.so');

/** The people and what they say: every string distinctive enough to search for. */
const ZOYA = { login: 'zoyaprivate', name: 'Zoyaprivate', id: 73100017 };
const YURI = { login: 'yurisecret', name: 'Yurisecret', id: 73100041 };
const THREAD_ID = 91400023;
const SUBJECT = 'Subject Quokka 5521';
const TEXTS = ['Message Narwhal 8842', 'Reply Axolotl 3307'];

/** @type {any} */ let site;
/** @type {any} */ let zoya;
/** @type {any} */ let yuri;
/** What the relay calls Zoya, Yuri and the thread (their pseudonyms). */
const WIRE = { zoya: 0, yuri: 0, thread: 0 };
/** @type {http.Server|null} */ let proxy = null;
/** Every request body WordPress sent the relay, as received by the proxy. */
const sent = [];

/** An HTTP proxy to 127.0.0.1:`to` that keeps a copy of every request (head and body). */
function recordingProxy(port, to) {
  const srv = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      sent.push(Buffer.concat([Buffer.from(`${req.method} ${req.url}\n${JSON.stringify(req.headers)}\n`), body]));
      const up = http.request({ host: '127.0.0.1', port: to, method: req.method, path: req.url, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode || 502, r.headers);
        r.pipe(res);
      });
      up.on('error', () => {
        res.writeHead(502);
        res.end();
      });
      up.end(body);
    });
  });
  return new Promise((resolve) => srv.listen(port, '127.0.0.1', () => resolve(srv)));
}

/**
 * How often each needle occurs in the readable memory of process `pid`
 * (every mapping in /proc/PID/maps but the kernel's vvar/vsyscall pages),
 * read through /proc/PID/mem in 1 MiB slices with an overlap so a needle
 * across two slices is found once.
 */
function scanMemory(pid, needles) {
  const counts = new Map(needles.map((n) => [n.label, 0]));
  const longest = Math.max(...needles.map((n) => n.bytes.length));
  const fd = fs.openSync(`/proc/${pid}/mem`, 'r');
  let scanned = 0;
  try {
    for (const line of fs.readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
      const m = /^([0-9a-f]+)-([0-9a-f]+) (r)/.exec(line);
      if (!m || /\[(vvar|vsyscall|vvar_vclock)\]/.test(line)) continue;
      const [start, end] = [parseInt(m[1], 16), parseInt(m[2], 16)];
      const slice = 1 << 20;
      const buf = Buffer.alloc(slice + longest);
      for (let at = start; at < end; at += slice) {
        const want = Math.min(slice + longest, end - at);
        let got = 0;
        try {
          got = fs.readSync(fd, buf, 0, want, at);
        } catch {
          break; // a mapping with nothing behind it (guard pages)
        }
        scanned += Math.min(got, slice);
        const view = buf.subarray(0, got);
        for (const n of needles) {
          // Count starts within this slice only (the overlap is the next one's).
          for (let i = view.indexOf(n.bytes); i !== -1 && i < slice; i = view.indexOf(n.bytes, i + 1)) counts.set(n.label, counts.get(n.label) + 1);
        }
      }
    }
  } finally {
    fs.closeSync(fd);
  }
  return { counts, scanned };
}

/** How often each needle occurs in a buffer. */
function scanBuffer(buf, needles) {
  const counts = new Map();
  for (const n of needles) {
    let c = 0;
    for (let i = buf.indexOf(n.bytes); i !== -1; i = buf.indexOf(n.bytes, i + 1)) c++;
    counts.set(n.label, c);
  }
  return counts;
}

const text = (label, s) => ({ label, bytes: Buffer.from(s) });
/** A u64 as the relay holds it in memory (little-endian). */
const u64le = (label, v) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return { label, bytes: b };
};

before(async () => {
  assert.ok(fs.existsSync(EXT), `${EXT} is missing: run \`make ext\``);
  const [relayPort, proxyPort] = [await freePort(), await freePort()];
  proxy = await recordingProxy(proxyPort, relayPort);
  site = await startSite({
    ext: EXT,
    // The browsers reach the relay as `localhost`, the site is `127.0.0.1`:
    // two host names, as a relay on a host of its own (docs/DEPLOY.md §5).
    // Under the site's own host name the browsers would hand the relay
    // WordPress's login cookie, and this test finds the login in its memory.
    env: { BM_RELAY_PORT: String(relayPort), BM_PUSH_URL: `http://127.0.0.1:${proxyPort}`, BM_WS_HOST: 'localhost', RUST_LOG: 'trace' },
  });
  for (const [p, next] of [[ZOYA, THREAD_ID], [YURI, null]]) {
    const r = await site.command(`user ${p.login} ${p.id}${next ? ` ${next}` : ''}`);
    assert.equal(r.id, p.id, `${p.login} has the distinctive id`);
    assert.equal(r.protocol, 2, 'a new site speaks protocol 2');
    WIRE[p === ZOYA ? 'zoya' : 'yuri'] = r.wire;
    if (next) WIRE.thread = r.thread_wire;
  }
  site.users[ZOYA.login] = ZOYA.id;
  site.users[YURI.login] = YURI.id;
  [zoya, yuri] = await Promise.all([person(site, ZOYA.login), person(site, YURI.login)]);
});

after(async () => {
  for (const p of [zoya, yuri]) {
    if (p) await shot(p.page, `privacy-final-${p.login}`).catch(() => {});
  }
  await cleanup();
  if (site) await site.stop();
  if (proxy) proxy.close();
});

test('the relay holds, logs and receives no WordPress id, login, name, subject or message text (protocol 2)', async (t) => {
  await Promise.all([connected(zoya), connected(yuri)]);
  const thread = await startConversation(zoya, 'yuri', YURI.name, SUBJECT);
  assert.equal(thread, THREAD_ID, 'the thread has the distinctive id');
  await yuri.page.locator('#bm-chat .bmc-thread', { hasText: SUBJECT }).waitFor({ timeout: 10000 });
  await open(yuri, SUBJECT);
  await send(zoya, TEXTS[0]);
  await msg(yuri, TEXTS[0]).waitFor({ timeout: 10000 });
  await send(yuri, TEXTS[1]);
  await msg(zoya, TEXTS[1]).waitFor({ timeout: 10000 });
  // Typing hints go browser → relay → browser: sealed too.
  await zoya.page.getByLabel('Message', { exact: true }).pressSequentially('typing Pangolin', { delay: 20 });

  const secrets = [
    ...[ZOYA, YURI].flatMap((p) => [text(`login ${p.login}`, p.login), text(`name ${p.name}`, p.name)]),
    text('subject', SUBJECT),
    text('subject word', 'Quokka'),
    ...TEXTS.map((s, i) => text(`text ${i}`, s.split(' ')[1])),
    text('typed text', 'Pangolin'),
  ];
  const ids = [
    text(`user id ${ZOYA.id} (decimal)`, String(ZOYA.id)),
    text(`user id ${YURI.id} (decimal)`, String(YURI.id)),
    text(`thread id ${THREAD_ID} (decimal)`, String(THREAD_ID)),
    u64le(`user id ${ZOYA.id} (u64)`, ZOYA.id),
    u64le(`user id ${YURI.id} (u64)`, YURI.id),
    u64le(`thread id ${THREAD_ID} (u64)`, THREAD_ID),
  ];
  for (const [who, w] of Object.entries(WIRE)) assert.ok(Number.isSafeInteger(w) && w > 0 && ![ZOYA.id, YURI.id, THREAD_ID].includes(w), `${who}'s pseudonym ${w}`);
  const wires = [
    text(`Zoya's pseudonym ${WIRE.zoya} (decimal)`, String(WIRE.zoya)),
    text(`thread pseudonym ${WIRE.thread} (decimal)`, String(WIRE.thread)),
    u64le(`Zoya's pseudonym (u64)`, WIRE.zoya),
    u64le(`thread pseudonym (u64)`, WIRE.thread),
  ];
  const hidden = [...secrets, ...ids];
  const all = [...hidden, ...wires];

  const { pid } = await site.command('relay-pid');
  assert.ok(pid > 0 && fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('serve'), `relay pid ${pid}`);
  const { counts: memory, scanned } = scanMemory(pid, all);
  const log = scanBuffer(fs.readFileSync(path.join(site.run, 'relay.log')), all);
  const metricsText = Buffer.from(await (await fetch(`http://127.0.0.1:${site.admin_port}/metrics`)).text());
  const metrics = scanBuffer(metricsText, all);
  const traffic = scanBuffer(Buffer.concat(sent), all);
  t.diagnostic(`scanned ${(scanned / 1048576).toFixed(1)} MiB of relay memory, ${fs.statSync(path.join(site.run, 'relay.log')).size} bytes of trace log, ${sent.length} requests from WordPress`);
  for (const n of all) t.diagnostic(`${n.label}: memory ${memory.get(n.label)}, log ${log.get(n.label)}, metrics ${metrics.get(n.label)}, WordPress → relay ${traffic.get(n.label)}`);

  assert.ok(sent.length >= 4, 'WordPress pushed through the recording proxy');
  assert.ok(scanned > 1 << 20, 'the relay\'s memory was read');
  for (const n of hidden) {
    assert.equal(memory.get(n.label), 0, `${n.label} in the relay's memory`);
    assert.equal(log.get(n.label), 0, `${n.label} in the relay's log`);
    assert.equal(metrics.get(n.label), 0, `${n.label} in /metrics`);
    assert.equal(traffic.get(n.label), 0, `${n.label} in what WordPress sent the relay`);
  }
  // The control: the scan finds the relay's routing ids where they are, so
  // its zeros above mean something.
  assert.ok(traffic.get(wires[0].label) > 0, 'Zoya\'s pseudonym in the pushes');
  assert.ok(traffic.get(wires[1].label) > 0, 'the thread\'s pseudonym in the pushes');
  assert.ok(memory.get(wires[2].label) > 0, 'Zoya\'s pseudonym (u64) in the relay\'s routing memory');
  assert.ok(memory.get(wires[3].label) > 0, 'the thread\'s pseudonym (u64) in the relay\'s routing memory');
});
