//! The operator commands, run as processes: `listen`, `push`, `keygen`,
//! `derive`, `token`, and `--help` on each.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::*;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bm-relay"))
}

/// A child process killed and reaped on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The stdout lines of a running `listen` (as JSON) and its stderr so far.
struct Lines {
    rx: std::sync::mpsc::Receiver<Value>,
    stderr: Arc<Mutex<String>>,
}

/// Reads stdout lines of `listen` (as JSON) and its stderr, on threads.
fn lines_of(child: &mut Child) -> Lines {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let v: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("listen printed non-JSON {line:?}: {e}"));
            if tx.send(v).is_err() {
                break;
            }
        }
    });
    let stderr = Arc::new(Mutex::new(String::new()));
    let (mut err, sink) = (child.stderr.take().unwrap(), stderr.clone());
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        sink.lock().unwrap().push_str(&text);
    });
    Lines { rx, stderr }
}

/// Starts `bm-relay listen` with `args`; returns it and its output.
///
/// Give it a `--timeout` well above the test's own waits: on a machine
/// busy with benchmarks, a short one can end `listen` while the test is
/// still waiting for its next line.
fn spawn_listen(args: &[&str]) -> (Proc, Lines) {
    let mut p = Proc(
        die_with_parent(&mut bin())
            .arg("listen")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let lines = lines_of(&mut p.0);
    (p, lines)
}

/// The next line `listen` prints; panics with its stderr when it printed
/// nothing for 10 s or exited.
fn next_line(lines: &Lines) -> Value {
    match lines.rx.recv_timeout(Duration::from_secs(10)) {
        Ok(v) => v,
        Err(e) => {
            // Let the stderr reader finish if `listen` exited.
            std::thread::sleep(Duration::from_millis(200));
            panic!("listen printed no line ({e:?}); its stderr:\n{}", lines.stderr.lock().unwrap())
        }
    }
}

fn push_cmd(r: &Relay, args: &[&str]) -> Value {
    let out = bin()
        .args([
            "push",
            "--url",
            &format!("http://127.0.0.1:{}", r.port),
            "--site",
            SITE,
            "--secret",
            &r.site.secret.to_b64(),
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn listen_opens_what_push_sends() {
    let r = Relay::start("").await;
    let secret = r.site.secret.to_b64();
    let (tok, ttok) = (r.site.token(2), r.site.thread_token(2, 7));
    let (mut listen, rx) = spawn_listen(&[
        "--url",
        &r.ws_url(),
        "--token",
        &tok,
        "--thread",
        "7",
        "--thread-token",
        &ttok,
        "--secret",
        &secret,
        "--site",
        SITE,
        "--count",
        "2",
        "--timeout",
        "120",
    ]);
    assert_eq!(next_line(&rx)["op"], "ready");
    assert_eq!(next_line(&rx), json!({"op":"ok","ref":1}));
    // The relay records the subscription before it answers `ok`.
    let (_, metrics) = http_get(r.admin, "/metrics").await.unwrap();
    assert!(metrics.lines().any(|l| l == "bm_relay_subscriptions 1"), "{metrics}");
    let reply = push_cmd(&r, &["--to", "2", "--type", "message.new", "--data", "{\"text\":\"hi\"}"]);
    assert_eq!(reply, json!({"results":[{"online":[2],"sockets":1}]}));
    let ev = next_line(&rx);
    assert_eq!(ev["op"], "ev");
    assert_eq!(ev["k"], "u/2");
    assert_eq!((ev["thread"].clone(), ev["from"].clone()), (Value::Null, Value::Null));
    assert_eq!(ev["payload"], json!({"type":"message.new","data":{"text":"hi"}}));
    assert_eq!(ev["id"].as_str().unwrap().len(), 22);
    let reply = push_cmd(&r, &["--thread", "7", "--type", "typing", "--data", "[1,2]"]);
    assert_eq!(reply, json!({"results":[{"online":[],"sockets":1}]}));
    let ev = next_line(&rx);
    assert_eq!((ev["k"].as_str(), &ev["payload"]), (Some("t/7/0"), &json!({"type":"typing","data":[1,2]})));
    // --count 2 reached: exits 0.
    let status = listen.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn listen_prints_raw_frames_and_the_close() {
    let r = Relay::start("").await;
    let (mut listen, rx) = spawn_listen(&["--url", &r.ws_url(), "--token", &r.site.token(5)]);
    assert_eq!(next_line(&rx)["op"], "ready");
    let env = r.site.user_env(5, json!("sealed"));
    r.push(json!([{"to":[5],"e": env}])).await;
    let ev = next_line(&rx);
    assert_eq!(ev, json!({"op":"ev","e": env}), "without --secret: the frame as received");
    r.post("/v1/disconnect", "{\"users\":[5]}").await;
    assert_eq!(next_line(&rx), json!({"op":"close","code":4003,"reason":"revoked by the server"}));
    assert_eq!(listen.0.wait().unwrap().code(), Some(0));
    // A wrong envelope key (another site's secret): an error line, not a crash.
    let other = Site::new(SITE);
    let (tok, other_secret) = (r.site.token(6), other.secret.to_b64());
    let (mut listen, rx) = spawn_listen(&[
        "--url",
        &r.ws_url(),
        "--token",
        &tok,
        "--count",
        "1",
        "--timeout",
        "120",
        "--secret",
        &other_secret,
        "--site",
        SITE,
    ]);
    assert_eq!(next_line(&rx)["op"], "ready");
    r.push(json!([{"to":[6],"e": r.site.user_env(6, json!(1))}])).await;
    let ev = next_line(&rx);
    assert!(ev["error"].as_str().unwrap().contains("does not open"), "{ev}");
    assert!(ev.get("payload").is_none());
    assert_eq!(listen.0.wait().unwrap().code(), Some(0));
}

#[tokio::test]
async fn listen_timeout_exits_3() {
    let r = Relay::start("").await;
    let out =
        bin().args(["listen", "--url", &r.ws_url(), "--token", &r.site.token(2), "--timeout", "0.5"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3));
    let first: Value = serde_json::from_slice(out.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(first["op"], "ready");
}

#[test]
fn keygen_derive_and_token_agree() {
    let out = bin().args(["keygen", "--site", "shop.example", "--json"]).output().unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let secret = v["site_secret"].as_str().unwrap();
    let out = bin().args(["derive", "--secret", secret]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), v["relay_key"].as_str().unwrap());
    // The secret may come from stdin.
    let mut child =
        bin().args(["derive", "--secret", "-"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "{secret}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), v["relay_key"].as_str().unwrap());
    let text = String::from_utf8(bin().args(["keygen", "--site", "shop.example"]).output().unwrap().stdout).unwrap();
    assert!(
        text.contains("[sites]") && text.contains("\"shop.example\" = \"") && text.contains("bm_relay.secret"),
        "{text}"
    );
    let out = bin().args(["derive", "--secret", "short"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("short"));
    let out = bin()
        .args(["token", "--secret", secret, "--site", "shop.example", "--user", "4", "--thread", "9"])
        .output()
        .unwrap();
    let tok = String::from_utf8(out.stdout).unwrap();
    let key = bm_proto::SiteSecret::from_b64(secret).unwrap().relay_key();
    let claims = bm_proto::token::verify(tok.trim(), bm_proto::TokenKind::Thread, now(), |_| Some(&key)).unwrap();
    assert_eq!((claims.sub.get(), claims.thread.map(|t| t.get())), (4, Some(9)));
}

#[test]
fn help_and_version_on_every_command() {
    for (cmd, must) in [
        (vec!["--help"], "serve"),
        (vec!["serve", "--help"], "--admin-listen"),
        (vec!["keygen", "--help"], "--site"),
        (vec!["derive", "--help"], "--secret"),
        (vec!["token", "--help"], "--user"),
        (vec!["push", "--help"], "--thread"),
        (vec!["listen", "--help"], "--thread-token"),
    ] {
        let out = bin().args(&cmd).output().unwrap();
        assert!(out.status.success(), "{cmd:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains(must), "{cmd:?}");
    }
    let out = bin().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("bm-relay "));
}

/// `--protocol 2`: `token` mints for the pseudonym with `"v":2`, `push`
/// sends pseudonyms with `X-BM-Protocol: 2`, and `listen` (given the
/// secret) opens the envelope sealed with the pseudonymous user key. The
/// relay sees no WordPress id: the push reply names the pseudonym.
#[tokio::test]
async fn protocol_2_token_and_push() {
    let r = Relay::start("\n[protocol]\naccept_v1 = false\n").await;
    let secret = r.site.secret.to_b64();
    let out =
        bin().args(["token", "--secret", &secret, "--site", SITE, "--user", "2", "--protocol", "2"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tok = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let claims: Value =
        serde_json::from_slice(&bm_proto::b64::decode(tok.split('.').nth(1).unwrap()).unwrap()).unwrap();
    let p = r.site.secret.pseudonym_key().user(u(2)).get();
    assert_eq!((claims["sub"].clone(), claims["v"].clone()), (json!(p.to_string()), json!(2)), "{claims}");
    let (_listen, rx) = spawn_listen(&[
        "--url",
        &r.ws_url(),
        "--token",
        &tok,
        "--secret",
        &secret,
        "--site",
        SITE,
        "--count",
        "1",
        "--timeout",
        "120",
    ]);
    assert_eq!(next_line(&rx)["op"], "ready");
    let reply = push_cmd(&r, &["--to", "2", "--protocol", "2", "--data", "{\"text\":\"v2\"}"]);
    assert_eq!(reply, json!({"results":[{"online":[p],"sockets":1}]}));
    let ev = next_line(&rx);
    assert_eq!(ev["k"], format!("u/{p}"));
    assert_eq!(ev["payload"]["data"], json!({"text":"v2"}));
    let bad =
        bin().args(["token", "--secret", &secret, "--site", SITE, "--user", "2", "--protocol", "3"]).output().unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("--protocol must be 1 or 2"));
}
