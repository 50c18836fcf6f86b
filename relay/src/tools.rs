//! The operator's commands besides `serve`: `keygen`, `derive`, `token`,
//! `push` (send one signed, sealed push) and `listen` (a debugging
//! subscriber). They use the same `bm_proto` code as WordPress and the
//! browser, so a deployment checked with them is checked for real.
//!
//! Secrets given as `-` are read from standard input, so they need not
//! appear in the process list or the shell history.

use std::io::{BufRead, Write};
use std::time::Duration;

use bm_proto::frames::ServerFrame;
use bm_proto::signing;
use bm_proto::token::Claims;
use bm_proto::{Envelope, EventId, Payload, SiteId, SiteSecret, ThreadId, UserId};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::Message;

use crate::state::unix_now;

/// A failed tool command; the message is for the operator.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ToolError(pub String);

fn fail(msg: impl Into<String>) -> ToolError {
    ToolError(msg.into())
}

/// Reads a secret argument; `-` means one line of standard input.
pub fn read_secret(arg: &str) -> Result<SiteSecret, ToolError> {
    let text = if arg == "-" {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| fail(format!("cannot read the secret from stdin: {e}")))?;
        line
    } else {
        arg.to_owned()
    };
    SiteSecret::from_b64(&text).map_err(|e| fail(e.to_string()))
}

fn site_id(s: &str) -> Result<SiteId, ToolError> {
    SiteId::new(s).map_err(|e| fail(e.to_string()))
}

/// `bm-relay keygen`: a new site secret, its relay key and config snippets.
pub fn keygen(site: &str, json: bool, relay_url: &str) -> Result<String, ToolError> {
    let site = site_id(site)?;
    let secret = SiteSecret::generate();
    let relay_key = secret.relay_key();
    if json {
        return Ok(serde_json::json!({
            "site": site.as_str(),
            "site_secret": secret.to_b64(),
            "relay_key": relay_key.to_b64(),
        })
        .to_string());
    }
    Ok(format!(
        "# Site {site}\n\
         # site_secret: WordPress side ONLY (never give it to the relay)\n\
         site_secret = {secret}\n\
         # relay_key: the only key the relay gets (derive it again with `bm-relay derive`)\n\
         relay_key   = {key}\n\
         \n\
         ; --- php.ini (WordPress side) ---\n\
         bm_relay.url = \"{relay_url}\"\n\
         bm_relay.site = \"{site}\"\n\
         ; preferred: the secret in a file only PHP can read (bm_relay.secret_file = /etc/bm-relay/{site}.secret)\n\
         bm_relay.secret = \"{secret}\"\n\
         \n\
         # --- relay TOML (add to the [sites] table) ---\n\
         [sites]\n\
         \"{site}\" = \"{key}\"\n",
        secret = secret.to_b64(),
        key = relay_key.to_b64(),
    ))
}

/// `bm-relay derive`: the relay key of a site secret.
pub fn derive(secret: &SiteSecret) -> String {
    secret.relay_key().to_b64()
}

/// Checks a `--protocol` value: 1 (WordPress ids in clear) or 2
/// (pseudonyms, docs/PROTOCOL.md §3.2).
pub fn check_protocol(protocol: u8) -> Result<u8, ToolError> {
    match protocol {
        1 | 2 => Ok(protocol),
        _ => Err(fail(format!("--protocol must be 1 or 2, got {protocol}"))),
    }
}

/// The user and thread ids as the relay sees them under `protocol`: the
/// WordPress ids themselves (1), or their pseudonyms (2), as the PHP API
/// maps them.
fn wire_ids(
    secret: &SiteSecret,
    protocol: u8,
    users: &[u64],
    thread: Option<u64>,
) -> Result<(Vec<UserId>, Option<ThreadId>), ToolError> {
    let mut to =
        users.iter().map(|u| UserId::new(*u)).collect::<Result<Vec<_>, _>>().map_err(|e| fail(e.to_string()))?;
    let mut thread = thread.map(ThreadId::new).transpose().map_err(|e| fail(e.to_string()))?;
    if check_protocol(protocol)? == 2 {
        let p = secret.pseudonym_key();
        to = to.into_iter().map(|u| p.user(u)).collect();
        thread = thread.map(|t| p.thread(t));
    }
    Ok((to, thread))
}

/// `bm-relay token`: mints a connection (or thread) token, as WordPress
/// would; with `protocol` 2, for the pseudonyms of `user` and `thread`,
/// with the claim `"v":2`.
pub fn token(
    secret: &SiteSecret,
    site: &str,
    user: u64,
    thread: Option<u64>,
    ttl: u64,
    protocol: u8,
) -> Result<String, ToolError> {
    let site = site_id(site)?;
    let (users, thread) = wire_ids(secret, protocol, &[user], thread)?;
    let user = users[0];
    let now = unix_now();
    let claims = match thread {
        Some(t) => Claims::thread(site, user, t, now, ttl),
        None => Claims::connection(site, user, now, ttl),
    };
    Ok(claims.with_protocol(protocol).mint(&secret.relay_key()))
}

/// What `bm-relay push` sends.
pub struct PushArgs {
    /// `http://HOST:PORT`.
    pub url: String,
    /// Site id.
    pub site: String,
    /// The site secret (seals and signs).
    pub secret: SiteSecret,
    /// Recipients.
    pub to: Vec<u64>,
    /// Thread (seals with its key, and routes to its subscribers).
    pub thread: Option<u64>,
    /// Thread key epoch.
    pub epoch: u32,
    /// Event type inside the envelope.
    pub kind: String,
    /// Event data (JSON text).
    pub data: String,
    /// 1, or 2: ids sent as pseudonyms, with `X-BM-Protocol: 2`.
    pub protocol: u8,
}

/// Splits `http://host:port[/...]` into `host:port`.
fn http_authority(url: &str) -> Result<String, ToolError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| fail(format!("--url must start with http:// (got `{url}`); put TLS in front with a proxy")))?;
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return Err(fail("--url has no host"));
    }
    Ok(if authority.contains(':') { authority.to_owned() } else { format!("{authority}:80") })
}

/// `bm-relay push`: seals one event and sends it signed; returns the HTTP
/// status and the relay's reply body.
pub async fn push(a: PushArgs) -> Result<(u16, String), ToolError> {
    let site = site_id(&a.site)?;
    let content = a.secret.content_key();
    let (to, thread) = wire_ids(&a.secret, a.protocol, &a.to, a.thread)?;
    let key = match (thread, to.as_slice()) {
        (Some(t), _) => content.thread_key(t, bm_proto::Epoch(a.epoch)),
        (None, [u]) => content.user_key(*u),
        (None, _) => {
            return Err(fail("without --thread, give exactly one --to (the envelope is sealed with that user's key)"))
        }
    };
    let data: serde_json::Value =
        serde_json::from_str(&a.data).map_err(|e| fail(format!("--data is not JSON: {e}")))?;
    let env = Envelope::seal_payload(&site, &key, EventId::random(), &Payload { kind: a.kind, data });
    let mut event = serde_json::json!({ "to": to, "e": env });
    if let Some(t) = thread {
        event["thread"] = serde_json::json!(t);
    }
    let body = serde_json::json!({ "events": [event] }).to_string();
    let ts = unix_now();
    let sig = signing::sign(&a.secret.relay_key(), ts, &site, "POST", bm_proto::api::PATH_PUSH, body.as_bytes());
    let authority = http_authority(&a.url)?;
    let mut headers = vec![
        (signing::HEADER_SITE, site.as_str().to_owned()),
        (signing::HEADER_TIMESTAMP, ts.to_string()),
        (signing::HEADER_SIGNATURE, sig),
    ];
    if a.protocol == 2 {
        headers.push((signing::HEADER_PROTOCOL, "2".to_owned()));
    }
    post(&authority, bm_proto::api::PATH_PUSH, &headers, body).await
}

/// A minimal HTTP/1.1 POST (one request, one connection).
pub async fn post(
    authority: &str,
    path: &str,
    headers: &[(&str, String)],
    body: String,
) -> Result<(u16, String), ToolError> {
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| fail(format!("cannot connect to {authority}: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| fail(format!("HTTP handshake with {authority} failed: {e}")))?;
    tokio::spawn(conn);
    let mut req = hyper::Request::post(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONTENT_TYPE, "application/json");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req.body(Full::new(Bytes::from(body))).map_err(|e| fail(e.to_string()))?;
    let resp = sender.send_request(req).await.map_err(|e| fail(format!("request failed: {e}")))?;
    let status = resp.status().as_u16();
    let bytes =
        resp.into_body().collect().await.map_err(|e| fail(format!("reading the reply failed: {e}")))?.to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

/// What `bm-relay listen` does.
pub struct ListenArgs {
    /// `ws://HOST:PORT/v1/ws`.
    pub url: String,
    /// Connection token.
    pub token: String,
    /// `(thread, thread token)` pairs to subscribe to.
    pub threads: Vec<(u64, String)>,
    /// With `site`: open `ev` envelopes.
    pub secret: Option<SiteSecret>,
    /// Site id (for the AAD).
    pub site: Option<String>,
    /// Exit 0 after this many `ev` frames.
    pub count: Option<u64>,
    /// Exit 3 after this many seconds.
    pub timeout: Option<f64>,
}

fn emit(line: &str) -> Result<(), ToolError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").and_then(|_| out.flush()).map_err(|e| fail(format!("stdout: {e}")))
}

/// One opened `ev` frame as `listen` prints it; fields in this order.
#[derive(serde::Serialize)]
struct OpenedEv<'a> {
    op: &'static str,
    id: Option<&'a str>,
    k: Option<String>,
    thread: Option<ThreadId>,
    from: Option<UserId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<Payload>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// The line printed for an `ev` frame when the secret is known:
/// `{"op":"ev","id","k","thread","from","payload"}`, or `error` instead of
/// `payload` when the envelope does not open.
pub fn opened_line(frame: &ServerFrame, site: &SiteId, secret: &SiteSecret) -> String {
    let mut line =
        OpenedEv { op: "ev", id: None, k: None, thread: frame.thread, from: frame.from, payload: None, error: None };
    let parsed = match &frame.e {
        Some(e) => Envelope::parse(e.get(), usize::MAX / 2).map_err(|e| e.to_string()),
        None => Err("the frame has no envelope".to_owned()),
    };
    let env;
    match parsed {
        Ok(e) => {
            env = e;
            line.id = Some(env.id.as_str());
            line.k = Some(env.k.to_string());
            let key = secret.content_key().key_for(env.k);
            match env.open_payload(site, &key, usize::MAX / 2) {
                Ok(p) => line.payload = Some(p),
                Err(err) => line.error = Some(err.to_string()),
            }
        }
        Err(err) => line.error = Some(err),
    }
    serde_json::to_string(&line).expect("the line serializes")
}

/// `bm-relay listen`; returns the process exit code.
pub async fn listen(a: ListenArgs) -> Result<i32, ToolError> {
    let opener = match (&a.secret, &a.site) {
        (Some(s), Some(site)) => Some((site_id(site)?, s.clone())),
        (None, None) => None,
        _ => return Err(fail("--secret and --site go together")),
    };
    let deadline = a.timeout.map(|t| tokio::time::Instant::now() + Duration::from_secs_f64(t.max(0.0)));
    let run = async {
        let (mut ws, _) = tokio_tungstenite::connect_async(a.url.as_str())
            .await
            .map_err(|e| fail(format!("cannot connect to {}: {e}", a.url)))?;
        eprintln!("listen: connected to {}", a.url);
        let auth = serde_json::json!({"op":"auth","token":a.token}).to_string();
        ws.send(Message::Text(auth.into())).await.map_err(|e| fail(e.to_string()))?;
        let mut subscribed = false;
        let mut evs = 0u64;
        while let Some(msg) = ws.next().await {
            let msg = msg.map_err(|e| fail(format!("connection failed: {e}")))?;
            let text = match msg {
                Message::Text(t) => t,
                Message::Close(c) => {
                    let (code, reason) =
                        c.map(|c| (u16::from(c.code), c.reason.to_string())).unwrap_or((1005, String::new()));
                    emit(&serde_json::json!({"op":"close","code":code,"reason":reason}).to_string())?;
                    return Ok(0);
                }
                _ => continue,
            };
            let frame: Option<ServerFrame> = serde_json::from_str(&text).ok();
            match (&frame, &opener) {
                (Some(f), Some((site, secret))) if f.op == "ev" => emit(&opened_line(f, site, secret))?,
                _ => emit(&text)?,
            }
            let op = frame.as_ref().map(|f| f.op.as_str()).unwrap_or("");
            if op == "ready" && !subscribed {
                subscribed = true;
                for (i, (t, tok)) in a.threads.iter().enumerate() {
                    let sub = serde_json::json!({"op":"sub","thread":t,"token":tok,"ref":i+1}).to_string();
                    ws.send(Message::Text(sub.into())).await.map_err(|e| fail(e.to_string()))?;
                }
            }
            if op == "ev" {
                evs += 1;
                if a.count.is_some_and(|n| evs >= n) {
                    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
                    return Ok(0);
                }
            }
        }
        eprintln!("listen: connection ended without a close frame");
        Ok(1)
    };
    match deadline {
        Some(d) => match tokio::time::timeout_at(d, run).await {
            Ok(r) => r,
            Err(_) => {
                eprintln!("listen: timeout");
                Ok(3)
            }
        },
        None => run.await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_authority() {
        assert_eq!(http_authority("http://127.0.0.1:8787").unwrap(), "127.0.0.1:8787");
        assert_eq!(http_authority("http://relay.example/x").unwrap(), "relay.example:80");
        assert!(http_authority("https://x").is_err());
        assert!(http_authority("http://").is_err());
    }

    #[test]
    fn keygen_snippets_hold_matching_keys() {
        let text = keygen("example.com", true, "http://127.0.0.1:8787").unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let secret = SiteSecret::from_b64(v["site_secret"].as_str().unwrap()).unwrap();
        assert_eq!(derive(&secret), v["relay_key"].as_str().unwrap());
        let human = keygen("example.com", false, "http://127.0.0.1:8787").unwrap();
        assert!(human.contains("[sites]") && human.contains("bm_relay.secret"));
        assert!(keygen("Bad Site", false, "").is_err());
    }

    #[test]
    fn opened_line_reports_payload_or_error() {
        let secret = SiteSecret::generate();
        let site = SiteId::new("s").unwrap();
        let key = secret.content_key().user_key(UserId::new(2).unwrap());
        let env = Envelope::seal_payload(
            &site,
            &key,
            EventId::new("e1").unwrap(),
            &Payload { kind: "t".into(), data: serde_json::json!(1) },
        );
        let frame: ServerFrame = serde_json::from_str(&bm_proto::frames::ev(&env.to_json())).unwrap();
        let v: serde_json::Value = serde_json::from_str(&opened_line(&frame, &site, &secret)).unwrap();
        assert_eq!(v["payload"]["type"], "t");
        assert_eq!(v["id"], "e1");
        assert_eq!(v["k"], "u/2");
        let other = SiteId::new("other").unwrap();
        let v: serde_json::Value = serde_json::from_str(&opened_line(&frame, &other, &secret)).unwrap();
        assert!(v["error"].as_str().unwrap().contains("does not open"));
        assert!(v.get("payload").is_none());
    }
}
