// bm-crypto.js: the protocol's cryptography (PROTOCOL.md §3, §4, §6) on
// WebCrypto, for the browser client and its tests.
//
// Why a module of its own: the chat page and the test pages need the same
// primitives as the client (opening and sealing envelopes, strict
// base64url), and keeping them free of any connection state makes them easy
// to check against testdata/crypto-v1.json in a real browser.
//
// Dependency-free ES module; every function works in any context that has
// `crypto.subtle` (a secure context: https, or http://127.0.0.1).

/** HKDF salt of protocol version 1 (PROTOCOL.md §3). */
export const HKDF_SALT = 'bm-relay/v1';
/** AES-GCM nonce length in bytes. */
export const NONCE_LEN = 12;
/** AES-GCM tag length in bytes (appended to the ciphertext in `c`). */
export const TAG_LEN = 16;
/** Largest decoded `c` of a pushed envelope the client opens (64 KiB). */
export const MAX_CIPHERTEXT = 64 * 1024;
/** Largest decoded `c` of an envelope the client publishes (16 KiB, `pub` limit). */
export const MAX_PUB_CIPHERTEXT = 16 * 1024;

const ENCODER = new TextEncoder();
const DECODER = new TextDecoder('utf-8', { fatal: true });
const B64U_RE = /^[A-Za-z0-9_-]*$/;
const EVENT_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;
const THREAD_KID_RE = /^t\/([1-9][0-9]{0,15})\/(0|[1-9][0-9]{0,9})$/;
const USER_KID_RE = /^u\/([1-9][0-9]{0,15})$/;
const ENVELOPE_FIELDS = ['v', 'id', 'k', 'n', 'c'];

/**
 * Why an envelope was refused. `reason` is a short stable code that the
 * client reports in its `dropped` event; the message never contains key
 * material or plaintext.
 */
export class EnvelopeError extends Error {
  /**
   * @param {'malformed'|'no_key'|'wrong_key'|'open_failed'|'payload'|'too_large'} reason
   * @param {string} message
   */
  constructor(reason, message) {
    super(message);
    this.name = 'EnvelopeError';
    /** Short stable code of the failure. */
    this.reason = reason;
  }
}

/**
 * Encodes bytes as base64url without padding (RFC 4648 §5), the protocol's
 * only binary-to-text form.
 * @param {Uint8Array|ArrayBuffer} bytes
 * @returns {string}
 */
export function b64uEncode(bytes) {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let bin = '';
  for (let i = 0; i < u8.length; i += 0x8000) {
    bin += String.fromCharCode.apply(null, /** @type {any} */ (u8.subarray(i, i + 0x8000)));
  }
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/**
 * Decodes base64url without padding, strictly: padding, characters outside
 * the url-safe alphabet and non-canonical trailing bits are refused, so each
 * value has one spelling (as in the Rust core).
 * @param {string} text
 * @returns {Uint8Array}
 * @throws {TypeError} when the text is not canonical base64url
 */
export function b64uDecode(text) {
  if (typeof text !== 'string' || !B64U_RE.test(text) || text.length % 4 === 1) {
    throw new TypeError('not valid base64url without padding');
  }
  const std = text.replace(/-/g, '+').replace(/_/g, '/');
  const bin = atob(std + '='.repeat((4 - (std.length % 4)) % 4));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  if (b64uEncode(out) !== text) throw new TypeError('not canonical base64url');
  return out;
}

/**
 * Length a canonical unpadded base64url text decodes to, without decoding
 * (so an oversized `c` is refused before any work).
 * @param {number} chars
 */
function decodedLen(chars) {
  return Math.floor((chars * 3) / 4);
}

/**
 * HKDF-SHA256 (RFC 5869) with the protocol salt, 32 bytes out.
 * @param {Uint8Array} ikm input key material
 * @param {string} info context string, e.g. `relay` or `thread/12/0`
 * @returns {Promise<Uint8Array>}
 */
export async function hkdf32(ikm, info) {
  const base = await crypto.subtle.importKey('raw', ikm, 'HKDF', false, ['deriveBits']);
  const bits = await crypto.subtle.deriveBits(
    { name: 'HKDF', hash: 'SHA-256', salt: ENCODER.encode(HKDF_SALT), info: ENCODER.encode(info) },
    base,
    256,
  );
  return new Uint8Array(bits);
}

/**
 * Derives the relay key and the content key from a site secret. Browsers
 * never hold a site secret; this exists so tests can check the derivation
 * chain against the vectors in a real browser.
 * @param {string} secretB64u the 32-byte site secret, base64url
 * @returns {Promise<{relayKey: Uint8Array, contentKey: Uint8Array}>}
 */
export async function deriveSiteKeys(secretB64u) {
  const secret = b64uDecode(secretB64u.trim());
  if (secret.length !== 32) throw new TypeError('site secret must be 32 bytes');
  return { relayKey: await hkdf32(secret, 'relay'), contentKey: await hkdf32(secret, 'content') };
}

/**
 * Thread key `t/{thread}/{epoch}` from the content key.
 * @param {Uint8Array} contentKey
 * @param {number} thread
 * @param {number} epoch
 */
export function deriveThreadKey(contentKey, thread, epoch) {
  return hkdf32(contentKey, `thread/${thread}/${epoch}`);
}

/**
 * User key `u/{user}` from the content key.
 * @param {Uint8Array} contentKey
 * @param {number} user
 */
export function deriveUserKey(contentKey, user) {
  return hkdf32(contentKey, `user/${user}`);
}

/**
 * Reads a key id, accepting only the canonical form (no leading zeros, ids
 * within range), so one key has one AAD.
 * @param {string} kid
 * @returns {{kind: 'thread', thread: number, epoch: number} | {kind: 'user', user: number} | null}
 */
export function parseKeyId(kid) {
  if (typeof kid !== 'string') return null;
  let m = THREAD_KID_RE.exec(kid);
  if (m) {
    const thread = Number(m[1]);
    const epoch = Number(m[2]);
    if (!Number.isSafeInteger(thread) || epoch > 0xffffffff) return null;
    return { kind: 'thread', thread, epoch };
  }
  m = USER_KID_RE.exec(kid);
  if (m) {
    const user = Number(m[1]);
    if (!Number.isSafeInteger(user)) return null;
    return { kind: 'user', user };
  }
  return null;
}

/**
 * The AAD of an envelope: the UTF-8 bytes of `bm1|{site}|{id}|{k}`. Binding
 * site, event id and key id means a relay that moves an envelope makes it
 * fail to open.
 * @param {string} site
 * @param {string} id
 * @param {string} kid
 */
export function envelopeAad(site, id, kid) {
  return ENCODER.encode(`bm1|${site}|${id}|${kid}`);
}

/**
 * Turns key material into a non-extractable AES-GCM CryptoKey.
 * @param {CryptoKey|Uint8Array|ArrayBuffer|string} key raw 32 bytes, their base64url, or a CryptoKey
 * @returns {Promise<CryptoKey>}
 */
export async function importAesKey(key) {
  if (typeof CryptoKey !== 'undefined' && key instanceof CryptoKey) return key;
  const raw = typeof key === 'string' ? b64uDecode(key) : key instanceof Uint8Array ? key : new Uint8Array(key);
  if (raw.length !== 32) throw new TypeError('an envelope key must be 32 bytes');
  return crypto.subtle.importKey('raw', raw, { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
}

/**
 * Checks that a value has the exact shape of a version-1 envelope (five
 * fields, valid ids, 12-byte nonce, ciphertext at least a tag and at most
 * `maxCiphertext`).
 * @param {unknown} e
 * @param {number} [maxCiphertext]
 * @returns {{v: 1, id: string, k: string, n: string, c: string}}
 * @throws {EnvelopeError}
 */
export function checkEnvelope(e, maxCiphertext = MAX_CIPHERTEXT) {
  if (e === null || typeof e !== 'object' || Array.isArray(e)) {
    throw new EnvelopeError('malformed', 'envelope is not an object');
  }
  const env = /** @type {Record<string, unknown>} */ (e);
  const keys = Object.keys(env);
  if (keys.length !== ENVELOPE_FIELDS.length || !ENVELOPE_FIELDS.every((f) => keys.includes(f))) {
    throw new EnvelopeError('malformed', 'envelope must have exactly the fields v, id, k, n, c');
  }
  if (env.v !== 1) throw new EnvelopeError('malformed', 'envelope version is not 1');
  if (typeof env.id !== 'string' || !EVENT_ID_RE.test(env.id)) {
    throw new EnvelopeError('malformed', 'envelope id is not a valid event id');
  }
  if (!parseKeyId(/** @type {string} */ (env.k))) throw new EnvelopeError('malformed', 'envelope key id is not valid');
  if (typeof env.n !== 'string' || env.n.length !== 16) {
    throw new EnvelopeError('malformed', 'envelope nonce must be 12 bytes of base64url');
  }
  if (typeof env.c !== 'string') throw new EnvelopeError('malformed', 'envelope ciphertext is not a string');
  if (decodedLen(env.c.length) > maxCiphertext) {
    throw new EnvelopeError('too_large', `envelope ciphertext is over the limit of ${maxCiphertext} bytes`);
  }
  return /** @type {any} */ (env);
}

/**
 * Opens an envelope: checks its shape, decrypts with AES-256-GCM under the
 * AAD `bm1|{site}|{id}|{k}`, and parses the `{"type","data"}` payload.
 * @param {unknown} envelope the parsed envelope object
 * @param {CryptoKey|Uint8Array|string} key the key named by the envelope's `k`
 * @param {string} site the site id
 * @param {{maxCiphertext?: number}} [opts]
 * @returns {Promise<{id: string, k: string, type: string, data: unknown}>}
 * @throws {EnvelopeError}
 */
export async function openEnvelope(envelope, key, site, opts = {}) {
  const env = checkEnvelope(envelope, opts.maxCiphertext ?? MAX_CIPHERTEXT);
  let nonce;
  let ct;
  try {
    nonce = b64uDecode(env.n);
    ct = b64uDecode(env.c);
  } catch {
    throw new EnvelopeError('malformed', 'envelope nonce or ciphertext is not base64url');
  }
  if (nonce.length !== NONCE_LEN) throw new EnvelopeError('malformed', 'envelope nonce must be 12 bytes');
  if (ct.length < TAG_LEN) throw new EnvelopeError('malformed', 'envelope ciphertext is shorter than a tag');
  const cryptoKey = await importAesKey(key);
  let plain;
  try {
    plain = await crypto.subtle.decrypt(
      { name: 'AES-GCM', iv: nonce, additionalData: envelopeAad(site, env.id, env.k), tagLength: 128 },
      cryptoKey,
      ct,
    );
  } catch {
    throw new EnvelopeError('open_failed', 'envelope does not open (tampered, wrong site or wrong key)');
  }
  let payload;
  try {
    payload = JSON.parse(DECODER.decode(plain));
  } catch {
    throw new EnvelopeError('payload', 'envelope payload is not UTF-8 JSON');
  }
  if (payload === null || typeof payload !== 'object' || Array.isArray(payload) || typeof payload.type !== 'string' || !('data' in payload)) {
    throw new EnvelopeError('payload', 'envelope payload is not a {"type","data"} object');
  }
  return { id: env.id, k: env.k, type: payload.type, data: payload.data };
}

/**
 * A fresh event id: 16 random bytes, base64url (22 characters).
 * @returns {string}
 */
export function newEventId() {
  return b64uEncode(crypto.getRandomValues(new Uint8Array(16)));
}

/**
 * Seals `{"type","data"}` into an envelope with a fresh random nonce.
 * @param {CryptoKey|Uint8Array|string} key the key named by `kid`
 * @param {string} site
 * @param {string} kid `t/{thread}/{epoch}` or `u/{user}`
 * @param {string} type event type (inside the ciphertext: the relay never sees it)
 * @param {unknown} data any JSON value
 * @param {{id?: string, maxCiphertext?: number}} [opts]
 * @returns {Promise<{v: 1, id: string, k: string, n: string, c: string}>}
 */
export async function sealEnvelope(key, site, kid, type, data, opts = {}) {
  if (!parseKeyId(kid)) throw new EnvelopeError('malformed', 'key id is not valid');
  if (typeof type !== 'string') throw new TypeError('event type must be a string');
  const id = opts.id ?? newEventId();
  if (!EVENT_ID_RE.test(id)) throw new EnvelopeError('malformed', 'event id is not valid');
  const plain = ENCODER.encode(JSON.stringify({ type, data: data === undefined ? null : data }));
  const max = opts.maxCiphertext ?? MAX_CIPHERTEXT;
  if (plain.length + TAG_LEN > max) throw new EnvelopeError('too_large', `payload is over the limit of ${max} bytes`);
  const nonce = crypto.getRandomValues(new Uint8Array(NONCE_LEN));
  const ct = await crypto.subtle.encrypt(
    { name: 'AES-GCM', iv: nonce, additionalData: envelopeAad(site, id, kid), tagLength: 128 },
    await importAesKey(key),
    plain,
  );
  return { v: 1, id, k: kid, n: b64uEncode(nonce), c: b64uEncode(ct) };
}

/**
 * HMAC-SHA256 of `data` under `key` (tokens and push signatures use it).
 * @param {Uint8Array} key
 * @param {Uint8Array|string} data
 * @returns {Promise<Uint8Array>}
 */
export async function hmacSha256(key, data) {
  const k = await crypto.subtle.importKey('raw', key, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await crypto.subtle.sign('HMAC', k, typeof data === 'string' ? ENCODER.encode(data) : data));
}

/**
 * Reads a JWT's claims WITHOUT verifying it: the browser cannot verify (it
 * does not hold the relay key) and needs only `iat`/`exp` to plan refreshes.
 * @param {string} token
 * @returns {{site?: string, sub?: string, thread?: number, iat?: number, exp?: number} | null}
 */
export function readTokenClaims(token) {
  if (typeof token !== 'string') return null;
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const claims = JSON.parse(DECODER.decode(b64uDecode(parts[1])));
    return claims !== null && typeof claims === 'object' && !Array.isArray(claims) ? claims : null;
  } catch {
    return null;
  }
}
