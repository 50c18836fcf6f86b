#!/usr/bin/env python3
"""Generates testdata/multisite-v1.json: the per-blog site secrets of a
WordPress network (docs/PROTOCOL.md §3.1) and the keys they lead to.

Independent of every implementation in the repository: HKDF-SHA256 is
written out here from RFC 5869 with Python's hmac/hashlib, and the network
secrets are fixed bytes, so running it again gives the same file.

    python3 scripts/gen-multisite-vectors.py > testdata/multisite-v1.json
"""
import base64
import hashlib
import hmac
import json

SALT = b"bm-relay/v1"


def hkdf32(ikm: bytes, info: bytes) -> bytes:
    prk = hmac.new(SALT, ikm, hashlib.sha256).digest()           # extract
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()  # expand, one block = 32 bytes


def b64u(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


NETWORKS = [
    ("network-a", bytes(range(32))),
    ("network-b", hashlib.sha256(b"bm-relay multisite vectors, network b").digest()),
]
BLOGS = [1, 2, 3, 10, 424242, 2**53 - 1]

out = {
    "version": 1,
    "salt": SALT.decode(),
    "derivation": "blog_secret = HKDF-SHA256(network_secret, salt 'bm-relay/v1', info 'blog/{blog_id}', 32 bytes); "
                  "then relay_key, content_key, thread and user keys from blog_secret as in §3",
    "networks": [],
}
for name, secret in NETWORKS:
    blogs = []
    for blog in BLOGS:
        bs = hkdf32(secret, f"blog/{blog}".encode())
        content = hkdf32(bs, b"content")
        blogs.append({
            "blog": blog,
            "info": f"blog/{blog}",
            "blog_secret": b64u(bs),
            "relay_key": b64u(hkdf32(bs, b"relay")),
            "content_key": b64u(content),
            "thread_key": {"kid": "t/1/0", "key": b64u(hkdf32(content, b"thread/1/0"))},
            "user_key": {"kid": "u/1", "key": b64u(hkdf32(content, b"user/1"))},
        })
    out["networks"].append({"name": name, "network_secret": b64u(secret), "blogs": blogs})

# RFC 5869 appendix A.1 (test case 1) with this extract/expand, trimmed to
# the first 32 bytes of its 42-byte OKM: proves the HKDF above is HKDF.
_prk = hmac.new(bytes.fromhex("000102030405060708090a0b0c"), b"\x0b" * 22, hashlib.sha256).digest()
assert hmac.new(_prk, bytes.fromhex("f0f1f2f3f4f5f6f7f8f9") + b"\x01", hashlib.sha256).digest().hex() == \
    "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
print(json.dumps(out, indent=1))
