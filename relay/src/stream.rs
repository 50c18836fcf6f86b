//! The streaming fallback's shared part (`/v1/stream`, protocol §6.1): the
//! open streams by id, and what a stream's ops need between requests.
//!
//! A stream is a socket to the router (its [`Conn`] is registered like a
//! WebSocket's, with an SSE [`crate::outbox::Outbox`]); what differs is
//! that its client frames arrive as separate POSTs, each on whatever
//! connection the browser picks. So the per-socket state that a WebSocket
//! keeps in its task (token expiry, rate buckets, the cluster's held
//! `ok`) lives here, in the same [`Session`] type, behind an async mutex
//! that the ops of one stream take in turn: they are applied one at a
//! time, in the order they arrive (tokio's mutex is fair).
//!
//! The id is the only thing that lets a request act on a stream: 128 bits
//! from the OS's randomness (no fallback: without randomness no stream
//! opens), never logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::time::Instant;

use crate::conn::Conn;
use crate::ws::session::Session;

/// A stream's id: 16 random bytes (22 characters of base64url on the wire).
pub type StreamId = [u8; 16];

/// One open stream, as its ops see it.
pub struct Stream {
    /// The routing handle (registered in the router while the stream is open).
    pub conn: Arc<Conn>,
    /// The socket state its ops apply client frames with, one op at a time.
    pub(crate) session: tokio::sync::Mutex<Session>,
    /// When the connection token in force expires, copied from the session
    /// after every op: the stream's own task ends the stream then (4009)
    /// and reads it without waiting for an op's turn at the session.
    exp_at: Mutex<Instant>,
}

impl Stream {
    /// A stream for `session`.
    pub(crate) fn new(session: Session) -> Stream {
        let exp_at = Mutex::new(session.exp_at);
        Stream { conn: session.conn.clone(), session: tokio::sync::Mutex::new(session), exp_at }
    }

    /// When the token in force expires.
    pub fn exp_at(&self) -> Instant {
        *self.exp_at.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the session's expiry after an op (a `refresh` moves it) and
    /// wakes the stream's task to re-arm its timer.
    pub fn note_exp(&self, at: Instant) {
        *self.exp_at.lock().unwrap_or_else(|p| p.into_inner()) = at;
        self.conn.out.wake.notify_one();
    }
}

/// The open streams of this relay, by id.
#[derive(Default)]
pub struct Streams {
    map: Mutex<HashMap<StreamId, Arc<Stream>>>,
}

impl Streams {
    fn lock(&self) -> MutexGuard<'_, HashMap<StreamId, Arc<Stream>>> {
        // A plain map: consistent even after a panic elsewhere.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a stream under a fresh id; `None` when the OS gives no
    /// randomness (then no stream can open: a guessable id would let
    /// anyone act on it).
    pub fn insert(&self, stream: Arc<Stream>) -> Option<StreamId> {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).ok()?;
        // 2^-128 per pair: a collision is not worth a branch, but an
        // overwrite would hand one stream's ops to another, so refuse.
        let mut map = self.lock();
        if map.contains_key(&id) {
            return None;
        }
        map.insert(id, stream);
        Some(id)
    }

    /// The open stream `id` names, if any.
    pub fn get(&self, id: &StreamId) -> Option<Arc<Stream>> {
        self.lock().get(id).cloned()
    }

    /// Forgets a stream (it ended): later ops on its id get 404.
    pub fn remove(&self, id: &StreamId) {
        self.lock().remove(id);
    }

    /// Streams open now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no stream is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The id as it appears in `ready` and in op URLs.
pub fn id_text(id: &StreamId) -> String {
    bm_proto::b64::encode(id)
}

/// An id from an op URL; `None` for anything that is not exactly one.
pub fn parse_id(text: &str) -> Option<StreamId> {
    if text.len() != 22 {
        return None;
    }
    bm_proto::b64::decode_array::<16>(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_refuse_anything_else() {
        let id = [7u8; 16];
        let t = id_text(&id);
        assert_eq!(t.len(), 22);
        assert_eq!(parse_id(&t), Some(id));
        for bad in ["", "AAAA", &format!("{t}A"), &t.replace('B', "+"), "../../../../../../../..x"] {
            assert_eq!(parse_id(bad), None, "{bad:?}");
        }
    }
}
