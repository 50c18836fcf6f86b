#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into fuzz/corpus/<target>/.

Seeds come from the protocol vectors (testdata/crypto-v1.json) and from
hand-made samples of each input form, valid and broken. File names are the
SHA-1 of the content (as libFuzzer names its own), so running this again
adds nothing twice. Run from the repository root:  python3 fuzz/seed.py
"""
import base64
import hashlib
import hmac
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
V = json.load(open(os.path.join(ROOT, "testdata", "crypto-v1.json")))
RELAY_KEY_B64 = V["sites"][0]["relay_key"]  # example.com, the harness's site


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def key():
    return base64.urlsafe_b64decode(RELAY_KEY_B64 + "=")


def write(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(ROOT, "fuzz", "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def compact(o):
    return json.dumps(o, separators=(",", ":"), ensure_ascii=False)


envs = [e["envelope"] for e in V["envelopes"]]
ENV = envs[0]

# envelope
for e in envs:
    write("envelope", compact(e))
write("envelope", json.dumps(ENV, indent=1))
for k, bad in [("v", 2), ("v", 1.0), ("id", "a b"), ("k", "t/01/0"), ("k", "u/0"), ("k", "t/1/4294967296"),
               ("n", "AAAA"), ("c", ""), ("c", "A"), ("c", "AAAAAAAAAAAAAAAAAAAAA="), ("id", "x" * 65)]:
    write("envelope", compact({**ENV, k: bad}))
write("envelope", compact({**ENV, "x": 1}))
write("envelope", compact({k: v for k, v in ENV.items() if k != "c"}))
write("envelope", '{"v":1,"id":"a","k":"t/1/0","n":"AAAAAAAAAAAAAAAA","c":"AAAAAAAAAAAAAAAAAAAAAA"}')
write("envelope", '{"v":1,"id":"\\u0061","k":"u/9007199254740991","n":"AAAAAAAAAAAAAAAA","c":"AAAAAAAAAAAAAAAAAAAAAA"}')

# token: raw tokens, {claims} (signed by the harness), header\nclaims
for t in V["tokens"]:
    write("token", t["token"])
    write("token", compact(t["claims"]))
    write("token", '{"alg":"HS256","typ":"JWT"}\n' + compact(t["claims"]))
c = V["tokens"][0]["claims"]
for claims in [
    {**c, "exp": c["iat"]}, {**c, "iat": c["iat"] + 200}, {**c, "exp": 1764000050}, {**c, "sub": "02"},
    {**c, "sub": 2}, {**c, "thread": 0}, {**c, "thread": 9007199254740991}, {**c, "exp": 18446744073709551615},
    {**c, "site": "Example.com"}, {"site": "example.com", "sub": "2", "iat": 1764000000},
]:
    write("token", compact(claims))
for header in ['{"alg":"HS256"}', '{"alg":"none","typ":"JWT"}', '{"alg":"HS256","typ":"jwt"}',
               '{"alg":"HS256","crit":["b64"]}', '{"alg":"HS512","typ":"JWT"}', '[]']:
    write("token", header + "\n" + compact(c))
for raw in ["", "a.b.c", "...", "a.b.c.d", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9..", "x" * 4097]:
    write("token", raw)

# client_frame
tok = V["tokens"][0]["token"]
ttok = V["tokens"][1]["token"]
for f in [
    {"op": "auth", "token": tok}, {"op": "auth", "token": tok, "ref": 1},
    {"op": "sub", "thread": 12, "token": ttok, "ref": 2}, {"op": "unsub", "thread": 12},
    {"op": "pub", "thread": 12, "e": ENV, "ref": -3}, {"op": "refresh", "token": tok, "ref": 9223372036854775807},
    {"op": "ping"}, {"op": "ping", "ref": -9223372036854775808}, {"op": "nope", "ref": 4},
    {"op": "sub", "thread": 0, "token": "t"}, {"op": "sub", "thread": 1.5, "token": "t"},
    {"op": "sub", "thread": 9007199254740992, "token": "t"}, {"op": "pub", "thread": 1},
    {"ref": 5}, {"op": 1}, {"op": "auth", "token": 5},
]:
    write("client_frame", compact(f))
for raw in ["", "null", "[]", "not json", '{"op":"auth","token":"\\ud800"}', '{"op":"ping","ref":1e3}',
            '{"op":"ping","op":"auth"}', '{"op":"auth","token":"a\\u0041"}']:
    write("client_frame", raw)

# push_body
for s in V["push_signatures"]:
    write("push_body", s["body"])
uenv = next(e for e in envs if e["k"] == "u/2")
for body in [
    {"events": []}, {"events": [{"to": [1, 2, 1], "thread": 12, "e": ENV}]},
    {"events": [{"to": [], "thread": 12, "e": ENV}]}, {"events": [{"to": [2], "e": uenv}]},
    {"events": [{"to": [2, 3], "e": uenv}]}, {"events": [{"to": [2], "thread": 1, "e": uenv}]},
    {"events": [{"to": [1], "e": ENV}] * 3}, {"events": [{"to": [1, 2, 3, 4], "e": ENV}]},
    {"events": [{"to": [0], "e": ENV}]}, {"events": [{"to": ["1"], "e": ENV}]},
    {"events": [{"to": [1], "x": 1, "e": ENV}]}, {"events": [{"to": [1]}]}, {"events": {}}, {},
    {"events": [{"to": [1], "e": "not an envelope"}]},
]:
    write("push_body", compact(body))

# users_body
for body in ['{"users":[1,2]}', '{"users":[1],"thread":4}', '{"users":[]}', '{"users":[0]}', '{"users":[1,2,3,4]}',
             '{"users":[1],"thread":0}', '{"users":[1],"x":1}', '{"users":"1"}', '{}', '[]', '{"users":[9007199254740992]}']:
    write("users_body", body)

# signing: timestamp \n signature \n method \n path \n body
for s in V["push_signatures"]:
    ts, body = str(s["timestamp"]), s["body"]
    write("signing", "\n".join([ts, s["header"], s["method"], s["path"], body]))
    mac = hmac.new(key(), f"{ts}\n{s['site']}\n{s['method']} {s['path']}\n".encode() + body.encode(), hashlib.sha256)
    write("signing", "\n".join([ts, "v1=" + mac.hexdigest().upper(), s["method"], s["path"], body]))
for ts in ["", "abc", "-1", "01764000000", "1.5", " 1764000000 ", "1764000061", "1763999939", "18446744073709551616"]:
    write("signing", "\n".join([ts, "v1=" + "00" * 32, "POST", "/v1/push", "{}"]))
for sig in ["", "v1=", "v2=00", "v1=zz", "v1=" + "0" * 63]:
    write("signing", "\n".join(["1764000000", sig, "POST", "/v1/presence", '{"users":[1]}']))

# config
sample = open(os.path.join(ROOT, "relay", "deploy", "relay.toml")).read()
write("config", sample)
write("config", sample.replace('# "example.com"', '"example.com"'))
k = RELAY_KEY_B64
for cfg in [
    "", 'listen = "127.0.0.1:9000"\n', 'listen = "x"\n', "bogus = 1\n",
    f'[sites]\n"example.com" = "{k}"\n', f'[sites]\n"Bad Site" = "{k}"\n', '[sites]\n"a" = "short"\n',
    f'[sites]\n"a" = 5\n"b" = "{k}"\n', f'[sites]\n"a" = "{k}="\n',
    "[limits]\nping_interval_secs = 1.5\nidle_timeout_secs = 4\n", "[limits]\nping_interval_secs = 0\n",
    "[limits]\nidle_timeout_secs = 1e300\n", "[limits]\nauth_timeout_secs = nan\n", "[limits]\nmax_frame_bytes = 255\n",
    "[limits]\nmax_events = -1\n", "[limits]\nmax_evnts = 5\n", '[log]\nformat = "xml"\n', '[log]\nfilter = "debug"\n',
    "[limits]\nmax_token_ttl_secs = 18446744073709551615\n", "[[sites]]\n", 'listen = "[::1]:1"\nadmin_listen = "0.0.0.0:0"\n',
]:
    write("config", cfg)

counts = {t: len(os.listdir(os.path.join(ROOT, "fuzz", "corpus", t))) for t in sorted(os.listdir(os.path.join(ROOT, "fuzz", "corpus")))}
print("seeds:", counts, file=sys.stderr)
