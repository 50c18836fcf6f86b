#!/usr/bin/env python3
"""Generates testdata/pseudonyms-v2.json: the pseudonyms of protocol v2
(docs/PROTOCOL.md §3.2) for fixed site secrets, with the key ids and keys
they lead to, and, per site, what a v2 sender puts on the wire: connection
and thread tokens for the pseudonyms (claim "v":2, fixed iat/exp) and
envelopes sealed under pseudonymous thread and user keys (fixed ids and
nonces).

Independent of every implementation in the repository: HKDF-SHA256 is
written out here from RFC 5869, HMAC-SHA256 comes from Python's
hmac/hashlib, AES-256-GCM from the `cryptography` package (Debian's
python3-cryptography: run it with /usr/bin/python3); the secrets, ids and
nonces are fixed bytes, so running it again gives the same file.

The wire vectors live in this file rather than a crypto-v2.json beside
crypto-v1.json: v2 changes nothing in how tokens and envelopes are built,
only which ids go in them, so each vector is tied to the pseudonyms above
it, and one file (one generator) keeps the ids and what they lead to from
drifting apart.

    /usr/bin/python3 scripts/gen-pseudonym-vectors.py > testdata/pseudonyms-v2.json
"""
import base64
import hashlib
import hmac
import json

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SALT = b"bm-relay/v1"
MAX_ID = 2**53 - 1


def hkdf32(ikm: bytes, info: bytes) -> bytes:
    prk = hmac.new(SALT, ikm, hashlib.sha256).digest()           # extract
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()  # expand, one block = 32 bytes


def b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def pseudonym(pkey: bytes, kind: str, ident: int) -> int:
    """1 + (first 8 bytes of HMAC-SHA256(pkey, "{kind}/{id}"), big-endian, mod 2^53-1)."""
    mac = hmac.new(pkey, f"{kind}/{ident}".encode(), hashlib.sha256).digest()
    return 1 + int.from_bytes(mac[:8], "big") % MAX_ID


SITES = [
    ("site-a", "example.com", bytes(range(32))),
    ("site-b", "blog.example.org", hashlib.sha256(b"bm-relay pseudonym vectors, site b").digest()),
]
USERS = [1, 2, 3, 42, 1000000, MAX_ID]
THREADS = [(1, 0), (7, 0), (7, 3), (123456789, 4294967295)]
IAT = 1764000000
JWT_HEADER = b'{"alg":"HS256","typ":"JWT"}'

out = {
    "version": 2,
    "salt": SALT.decode(),
    "derivation": "pseudonym_key = HKDF-SHA256(site_secret, salt 'bm-relay/v1', info 'pseudonym', 32 bytes); "
                  "pseudonym(kind, id) = 1 + (uint64 big-endian of the first 8 bytes of "
                  "HMAC-SHA256(pseudonym_key, '{kind}/{id}')) mod (2^53 - 1), kind 'user' or 'thread'; "
                  "key ids and keys as in §3 with each id replaced by its pseudonym",
    "sites": [],
}
for name, site, secret in SITES:
    pkey = hkdf32(secret, b"pseudonym")
    content = hkdf32(secret, b"content")
    users, threads = [], []
    for u in USERS:
        p = pseudonym(pkey, "user", u)
        users.append({"user": u, "pseudonym": p, "kid": f"u/{p}", "key": b64u(hkdf32(content, f"user/{p}".encode()))})
    for t, e in THREADS:
        p = pseudonym(pkey, "thread", t)
        threads.append({"thread": t, "epoch": e, "pseudonym": p, "kid": f"t/{p}/{e}",
                        "key": b64u(hkdf32(content, f"thread/{p}/{e}".encode()))})
    relay = hkdf32(secret, b"relay")
    pu, pt = pseudonym(pkey, "user", 42), pseudonym(pkey, "thread", 7)
    tokens = []
    for thread in (None, 7):
        # Claim order site, sub, thread, v, iat, exp (§6); compact JSON.
        claims = {"site": site, "sub": str(pu)}
        if thread is not None:
            claims["thread"] = pt
        claims.update({"v": 2, "iat": IAT, "exp": IAT + 3600})
        signing_input = b64u(JWT_HEADER) + "." + b64u(json.dumps(claims, separators=(",", ":")).encode())
        sig = hmac.new(relay, signing_input.encode(), hashlib.sha256).digest()
        tokens.append({"user": 42, "thread": thread, "ttl": 3600, "claims": claims,
                       "token": signing_input + "." + b64u(sig)})
    envelopes = []
    for n, (kid, wp) in enumerate([(f"t/{pt}/3", {"thread": 7, "epoch": 3}), (f"u/{pu}", {"user": 42})]):
        info = ("thread/" + kid[2:] if kid.startswith("t/") else "user/" + kid[2:]).encode()
        key = hkdf32(content, info)
        ev_id = f"v2-vector-{name}-{n}"
        nonce = hashlib.sha256(f"bm-relay v2 nonce {name} {n}".encode()).digest()[:12]
        plaintext = json.dumps({"type": "message.new", "data": {"thread": 7, "sender": 42, "text": "Hello, v2"}},
                               separators=(",", ":"))
        aad = f"bm1|{site}|{ev_id}|{kid}"
        c = AESGCM(key).encrypt(nonce, plaintext.encode(), aad.encode())
        envelopes.append({**wp, "kid": kid, "key": b64u(key), "aad": aad, "plaintext": plaintext,
                          "envelope": {"v": 1, "id": ev_id, "k": kid, "n": b64u(nonce), "c": b64u(c)}})
    out["sites"].append({"name": name, "site": site, "site_secret": b64u(secret), "pseudonym_key": b64u(pkey),
                         "relay_key": b64u(relay), "users": users, "threads": threads,
                         "tokens": tokens, "envelopes": envelopes})

# RFC 5869 appendix A.1 (test case 1) with this extract/expand, trimmed to
# the first 32 bytes of its 42-byte OKM: proves the HKDF above is HKDF.
_prk = hmac.new(bytes.fromhex("000102030405060708090a0b0c"), b"\x0b" * 22, hashlib.sha256).digest()
assert hmac.new(_prk, bytes.fromhex("f0f1f2f3f4f5f6f7f8f9") + b"\x01", hashlib.sha256).digest().hex() == \
    "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
# The GCM paper's (McGrew & Viega) test case 14, AES-256, zero key and IV,
# one zero block: proves AESGCM above is AES-256-GCM.
assert AESGCM(bytes(32)).encrypt(bytes(12), bytes(16), None).hex() == \
    "cea7403d4d606b6e074ec5d3baf39d18" "d0d1c8a799996bf0265b98b5d48ab919"
# RFC 4231 test case 2: the HMAC-SHA256 above is HMAC-SHA256.
assert hmac.new(b"Jefe", b"what do ya want for nothing?", hashlib.sha256).hexdigest() == \
    "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
print(json.dumps(out, indent=1))
