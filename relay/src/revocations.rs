//! Revocations: what `/v1/disconnect` took away, remembered in memory so
//! that a token issued *before* it cannot simply be used again.
//!
//! Tokens are stateless: without this, a member removed from a thread could
//! re-`sub` with the thread token WordPress gave them an hour ago, and a
//! user whose sockets were closed could reconnect with their old connection
//! token. The relay therefore records, per site, user and (optionally)
//! thread, the second of the revocation, and refuses any token of that
//! scope whose `iat` is earlier. WordPress mints fresh tokens only for users
//! it still allows, so a legitimate client recovers by asking for a new one
//! (which a 4003 close tells it to do anyway).
//!
//! Only ids and times are kept (routing metadata, never content), for
//! `max_token_ttl_secs`: every token is refused when its lifetime exceeds
//! that bound, so an entry older than it can no longer match a live token
//! and is dropped. Granularity is the second of `iat`: a token minted in the
//! same second as the revocation is accepted, so a member removed and
//! re-added at once is not locked out.
//!
//! Single node only: a cluster broker must share these records (later issue).

use std::collections::HashMap;
use std::sync::Mutex;

use bm_proto::{SiteId, ThreadId, UserId};

/// Whose access was revoked: a user's connections, or one thread membership.
type Scope = (SiteId, UserId, Option<ThreadId>);

/// The revocation records of a running relay.
#[derive(Default)]
pub struct Revocations {
    at: Mutex<HashMap<Scope, u64>>,
}

impl Revocations {
    /// Records that `users` lost access (to `thread`, or altogether) at
    /// `now`, and forgets records older than `retain_secs`.
    pub fn revoke(&self, site: &SiteId, users: &[UserId], thread: Option<ThreadId>, now: u64, retain_secs: u64) {
        let mut at = self.at.lock().unwrap_or_else(|p| p.into_inner());
        at.retain(|_, t| t.saturating_add(retain_secs) > now);
        for user in users {
            at.insert((site.clone(), *user, thread), now);
        }
    }

    /// True when a token of `user` (for `thread`, or a connection token)
    /// issued at `iat` predates a revocation of that scope. A connection
    /// revocation also covers every thread token of the user.
    pub fn is_revoked(&self, site: &SiteId, user: UserId, thread: Option<ThreadId>, iat: u64) -> bool {
        let at = self.at.lock().unwrap_or_else(|p| p.into_inner());
        if at.is_empty() {
            return false;
        }
        let before = |scope: Scope| at.get(&scope).is_some_and(|t| iat < *t);
        before((site.clone(), user, None)) || (thread.is_some() && before((site.clone(), user, thread)))
    }

    /// Records held (for `/metrics`).
    pub fn len(&self) -> usize {
        self.at.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (SiteId, UserId, ThreadId) {
        (SiteId::new("a").unwrap(), UserId::new(3).unwrap(), ThreadId::new(7).unwrap())
    }

    #[test]
    fn thread_revocation_covers_older_thread_tokens_only() {
        let (site, user, thread) = ids();
        let r = Revocations::default();
        r.revoke(&site, &[user], Some(thread), 1000, 3600);
        assert!(r.is_revoked(&site, user, Some(thread), 999));
        assert!(!r.is_revoked(&site, user, Some(thread), 1000), "same second is a fresh token");
        assert!(!r.is_revoked(&site, user, None, 999), "connection tokens are not affected");
        assert!(!r.is_revoked(&site, user, Some(ThreadId::new(8).unwrap()), 999));
        assert!(!r.is_revoked(&SiteId::new("b").unwrap(), user, Some(thread), 999));
    }

    #[test]
    fn user_revocation_covers_connection_and_thread_tokens() {
        let (site, user, thread) = ids();
        let r = Revocations::default();
        r.revoke(&site, &[user], None, 1000, 3600);
        assert!(r.is_revoked(&site, user, None, 999));
        assert!(r.is_revoked(&site, user, Some(thread), 999));
        assert!(!r.is_revoked(&site, UserId::new(4).unwrap(), None, 999));
    }

    #[test]
    fn old_records_are_forgotten() {
        let (site, user, thread) = ids();
        let r = Revocations::default();
        r.revoke(&site, &[user], Some(thread), 1000, 3600);
        r.revoke(&site, &[UserId::new(9).unwrap()], None, 4600, 3600);
        assert_eq!(r.len(), 1);
        assert!(!r.is_revoked(&site, user, Some(thread), 999));
    }
}
