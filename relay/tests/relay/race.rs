//! Races between a token check and the socket's insertion into routing
//! (issue 11, row 6), made deterministic: the relay runs in this process
//! with a routing table that runs the "concurrent" `/v1/disconnect` or
//! reload at the worst moment, inside `register` / `subscribe`, before the
//! socket is inserted. Real sockets, the real HTTP listener and socket task.

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use bm_proto::{SiteId, ThreadId, UserId};
use bm_relay::config::{Config, Overrides};
use bm_relay::conn::{Conn, SubError};
use bm_relay::frame::Frame;
use bm_relay::router::{Caps, Counts, Delivery, Fanout, LocalRouter, RegisterError};
use bm_relay::state::App;
use serde_json::json;

use crate::common::*;

/// What the racy table does just before it inserts a socket.
type Hook = Box<dyn Fn(&App, &Conn) + Send + Sync>;

/// A [`LocalRouter`] that runs a hook just before each insert.
struct Racy {
    inner: LocalRouter,
    app: OnceLock<Weak<App>>,
    on_register: Mutex<Option<Hook>>,
    on_subscribe: Mutex<Option<Hook>>,
}

impl Racy {
    fn run(&self, hook: &Mutex<Option<Hook>>, conn: &Conn) {
        // Taken out: the hook runs once, for the first socket.
        let h = hook.lock().unwrap().take();
        if let (Some(h), Some(app)) = (h, self.app.get().and_then(Weak::upgrade)) {
            h(&app, conn);
        }
    }
}

impl Fanout for Racy {
    fn register(&self, conn: &Arc<Conn>, caps: Caps) -> Result<(), RegisterError> {
        self.run(&self.on_register, conn);
        self.inner.register(conn, caps)
    }
    fn unregister(&self, conn: &Arc<Conn>) {
        self.inner.unregister(conn)
    }
    fn subscribe(&self, conn: &Arc<Conn>, thread: ThreadId, iat: u64, max: usize) -> Result<bool, SubError> {
        self.run(&self.on_subscribe, conn);
        self.inner.subscribe(conn, thread, iat, max)
    }
    fn unsubscribe(&self, conn: &Arc<Conn>, thread: ThreadId) -> bool {
        self.inner.unsubscribe(conn, thread)
    }
    fn deliver(
        &self,
        site: &SiteId,
        to: &[UserId],
        thread: Option<ThreadId>,
        frame: &Frame,
        max_queue: usize,
    ) -> Delivery {
        self.inner.deliver(site, to, thread, frame, max_queue)
    }
    fn publish(&self, sender: &Conn, thread: ThreadId, frame: &Frame, max_queue: usize) -> Delivery {
        self.inner.publish(sender, thread, frame, max_queue)
    }
    fn presence(&self, site: &SiteId, users: &[UserId]) -> Vec<UserId> {
        self.inner.presence(site, users)
    }
    fn thread_presence(&self, site: &SiteId, thread: ThreadId, max: usize) -> (Vec<UserId>, bool) {
        self.inner.thread_presence(site, thread, max)
    }
    fn disconnect(
        &self,
        site: &SiteId,
        users: &[UserId],
        thread: Option<ThreadId>,
        at: u64,
        unsub: Option<&Frame>,
        max_queue: usize,
    ) -> u64 {
        self.inner.disconnect(site, users, thread, at, unsub, max_queue)
    }
    fn sockets(&self, site: Option<&SiteId>) -> Vec<Arc<Conn>> {
        self.inner.sockets(site)
    }
    fn counts(&self) -> Counts {
        self.inner.counts()
    }
}

struct InProcess {
    app: Arc<App>,
    router: Arc<Racy>,
    site: Site,
    url: String,
    _dir: TempDir,
}

async fn start() -> InProcess {
    let site = Site::new(SITE);
    let dir = TempDir::new();
    let path = dir.0.join("relay.toml");
    std::fs::write(&path, config_text(free_port(), free_port(), &[&site], FAST)).unwrap();
    let config = Config::load(&Overrides { config: Some(path), ..Overrides::default() }).unwrap();
    let router = Arc::new(Racy {
        inner: LocalRouter::new(),
        app: OnceLock::new(),
        on_register: Mutex::new(None),
        on_subscribe: Mutex::new(None),
    });
    let app = App::new(config, router.clone());
    let _ = router.app.set(Arc::downgrade(&app));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/v1/ws", listener.local_addr().unwrap());
    tokio::spawn(bm_relay::http::serve_client(listener, app.clone()));
    InProcess { app, router, site, url, _dir: dir }
}

/// A `/v1/disconnect` of the user lands after `auth` verified the token
/// and before the socket is inserted: it finds no socket to close, and the
/// socket must close itself (4003), not get `ready`.
#[tokio::test]
async fn a_disconnect_between_auth_and_register_is_not_missed() {
    let r = start().await;
    *r.router.on_register.lock().unwrap() = Some(Box::new(|app: &App, conn: &Conn| {
        let at = now();
        app.revoke(&conn.site, &[conn.user], None, at);
        app.router.disconnect(&conn.site, &[conn.user], None, at, None, 1 << 20);
    }));
    let mut c = Client::connect(&r.url).await;
    c.send(json!({"op":"auth","token": r.site.token(3)})).await;
    let (code, reason) = c.closed(Duration::from_secs(5)).await;
    assert_eq!((code, reason.as_str()), (4003, "token revoked"));
    assert_eq!(r.app.router.counts().sockets, 0);
}

/// A reload that re-keys the site lands between `auth` and the insert:
/// it closes the site's sockets, this one is not there yet, so it must
/// notice the new key itself.
#[tokio::test]
async fn a_rekey_between_auth_and_register_is_not_missed() {
    let r = start().await;
    *r.router.on_register.lock().unwrap() = Some(Box::new(|app: &App, _: &Conn| {
        let mut cfg = (*app.config()).clone();
        let other = Site::new(SITE);
        let mut sites = (*cfg.sites).clone();
        sites.insert(other.id.clone(), other.secret.relay_key());
        cfg.sites = Arc::new(sites);
        app.set_config(cfg);
    }));
    let mut c = Client::connect(&r.url).await;
    c.send(json!({"op":"auth","token": r.site.token(3)})).await;
    let (code, _) = c.closed(Duration::from_secs(5)).await;
    assert_eq!(code, 4003);
}

/// A thread `/v1/disconnect` lands between `sub` verifying the thread
/// token and the subscription's insert: the `sub` is refused and the
/// socket gets no event of that thread.
#[tokio::test]
async fn a_thread_disconnect_between_sub_and_insert_is_not_missed() {
    let r = start().await;
    let mut c = Client::connect(&r.url).await;
    c.send(json!({"op":"auth","token": r.site.token(3)})).await;
    assert_eq!(c.recv().await["op"], "ready");
    *r.router.on_subscribe.lock().unwrap() = Some(Box::new(|app: &App, conn: &Conn| {
        let at = now();
        let thread = ThreadId::new(9).unwrap();
        app.revoke(&conn.site, &[conn.user], Some(thread), at);
        app.router.disconnect(&conn.site, &[conn.user], Some(thread), at, None, 1 << 20);
    }));
    c.send(json!({"op":"sub","thread":9,"token": r.site.thread_token(3, 9),"ref":1})).await;
    let reply = c.recv().await;
    assert_eq!((reply["op"].as_str(), reply["code"].as_str()), (Some("error"), Some("forbidden")), "{reply}");
    let frame = Frame::from("{\"op\":\"ev\"}");
    let d = r.app.router.deliver(&r.site.id, &[], Some(ThreadId::new(9).unwrap()), &frame, 1 << 20);
    assert_eq!(d.sockets, 0);
}
