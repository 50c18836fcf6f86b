//! Revocations: what `/v1/disconnect` took away, remembered in memory so
//! that a token issued *before* it cannot simply be used again.
//!
//! Tokens are stateless: without this, a member removed from a thread could
//! re-`sub` with the thread token WordPress gave them an hour ago, and a
//! user whose sockets were closed could reconnect with their old connection
//! token. The relay therefore records, per site, user and (optionally)
//! thread, the time of the revocation, and refuses any token of that scope
//! whose `iat` is not later (protocol §6).
//!
//! The time is the request's signed `X-BM-Timestamp`, WordPress's clock, the
//! clock that also stamps `iat`: the relay's own clock may differ by up to
//! `max_skew_secs`, which would let a token minted just before the removal
//! through. A token from the same second is refused (`iat <= t`): WordPress
//! mints a re-added member's tokens with `iat` after the removal's second
//! (docs/PROTOCOL.md §6). A record only moves forward, so a replayed signed
//! request cannot move it back.
//!
//! Only ids and times are kept (routing metadata, never content), for
//! `max_token_ttl_secs`: every token is refused when its lifetime exceeds
//! that bound, so an entry older than it can no longer match a live token
//! and is dropped. Each site holds at most `max_revocations_per_site`
//! records; past that the oldest record is folded into the site's *floor*:
//! every token of the site issued at or before it is refused. Memory stays
//! bounded and no revoked token is ever let through again; the cost of a
//! site that revokes that much is that its other users fetch fresh tokens
//! once (the close code 4003 tells their clients to).
//!
//! Each site has its own lock, taken for reading by every `auth`, `sub` and
//! `refresh` of that site only; a site that has never revoked anything is
//! answered from one read of the site map.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, RwLock};

use bm_proto::{SiteId, ThreadId, UserId};

/// Whose access was revoked: a user's connections, or one thread membership.
type Scope = (UserId, Option<ThreadId>);

#[derive(Default)]
struct SiteRecords {
    at: HashMap<Scope, u64>,
    /// Scopes in the order they were recorded, with the time recorded then,
    /// oldest first: expiry and eviction pop from the front. A scope
    /// revoked again appears twice; the stale entry is skipped.
    order: VecDeque<(u64, Scope)>,
    /// Every token of the site issued at or before this is refused.
    floor: u64,
}

impl SiteRecords {
    /// Drops the front entry; true if it removed a live record, whose time
    /// is returned through `evicted`.
    fn pop_front(&mut self) -> Option<u64> {
        let (t, scope) = self.order.pop_front()?;
        match self.at.get(&scope) {
            Some(&cur) if cur == t => {
                self.at.remove(&scope);
                Some(t)
            }
            _ => None,
        }
    }
}

/// One site's revocations as [`Revocations::export`] gives them: the site,
/// its floor, and (user, thread, time) records.
pub type SiteExport = (SiteId, u64, Vec<(UserId, Option<ThreadId>, u64)>);

/// The revocation records of a running relay.
#[derive(Default)]
pub struct Revocations {
    sites: RwLock<HashMap<SiteId, Arc<RwLock<SiteRecords>>>>,
}

/// What one [`Revocations::revoke`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Revoked {
    /// Records folded into the site's floor because the site was full.
    pub evicted: u64,
}

impl Revocations {
    fn site(&self, site: &SiteId) -> Option<Arc<RwLock<SiteRecords>>> {
        self.sites.read().unwrap_or_else(|p| p.into_inner()).get(site).cloned()
    }

    /// Records that `users` lost access (to `thread`, or altogether) at
    /// `at` (the signed request time), keeping at most `max_records` for
    /// the site, and forgets records older than `retain_secs` before `at`.
    pub fn revoke(
        &self,
        site: &SiteId,
        users: &[UserId],
        thread: Option<ThreadId>,
        at: u64,
        retain_secs: u64,
        max_records: usize,
    ) -> Revoked {
        let records = match self.site(site) {
            Some(r) => r,
            None => self.sites.write().unwrap_or_else(|p| p.into_inner()).entry(site.clone()).or_default().clone(),
        };
        let mut r = records.write().unwrap_or_else(|p| p.into_inner());
        let mut out = Revoked::default();
        // Expired records leave from the front (amortised O(1) per record).
        while r.order.front().is_some_and(|(t, _)| t.saturating_add(retain_secs) < at) {
            r.pop_front();
        }
        if r.floor.saturating_add(retain_secs) < at {
            r.floor = 0;
        }
        for user in users {
            let scope = (*user, thread);
            let t = match r.at.get(&scope) {
                Some(&cur) if cur >= at => continue,
                _ => at,
            };
            r.at.insert(scope, t);
            r.order.push_back((t, scope));
            while r.at.len() > max_records.max(1) {
                if let Some(t) = r.pop_front() {
                    r.floor = r.floor.max(t);
                    out.evicted += 1;
                }
            }
            // Stale duplicates must not grow the queue without bound.
            if r.order.len() > 2 * max_records.max(1) + 16 {
                let at = &r.at;
                let live: VecDeque<(u64, Scope)> =
                    r.order.iter().copied().filter(|(t, s)| at.get(s) == Some(t)).collect();
                r.order = live;
            }
        }
        out
    }

    /// True when a token of `user` (for `thread`, or a connection token)
    /// issued at `iat` does not postdate a revocation of that scope. A
    /// connection revocation also covers every thread token of the user.
    pub fn is_revoked(&self, site: &SiteId, user: UserId, thread: Option<ThreadId>, iat: u64) -> bool {
        let Some(records) = self.site(site) else { return false };
        let r = records.read().unwrap_or_else(|p| p.into_inner());
        if iat <= r.floor {
            return true;
        }
        let covers = |scope: Scope| r.at.get(&scope).is_some_and(|t| iat <= *t);
        covers((user, None)) || (thread.is_some() && covers((user, thread)))
    }

    /// Every record and each site's floor: what a node joining a cluster
    /// copies before it reports ready (ids and times only).
    pub fn export(&self) -> Vec<SiteExport> {
        let sites: Vec<_> =
            self.sites.read().unwrap_or_else(|p| p.into_inner()).iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        sites
            .into_iter()
            .map(|(site, r)| {
                let r = r.read().unwrap_or_else(|p| p.into_inner());
                (site, r.floor, r.at.iter().map(|((u, t), at)| (*u, *t, *at)).collect())
            })
            .collect()
    }

    /// Raises a site's floor (copied from a peer); never lowers it.
    pub fn raise_floor(&self, site: &SiteId, floor: u64) {
        if floor == 0 {
            return;
        }
        let records = self.sites.write().unwrap_or_else(|p| p.into_inner()).entry(site.clone()).or_default().clone();
        let mut r = records.write().unwrap_or_else(|p| p.into_inner());
        r.floor = r.floor.max(floor);
    }

    /// Records held, over all sites (for `/metrics`).
    pub fn len(&self) -> usize {
        let sites: Vec<_> = self.sites.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        sites.iter().map(|r| r.read().unwrap_or_else(|p| p.into_inner()).at.len()).sum()
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

    const DAY: u64 = 86_400;

    #[test]
    fn thread_revocation_covers_tokens_up_to_its_second() {
        let (site, user, thread) = ids();
        let r = Revocations::default();
        r.revoke(&site, &[user], Some(thread), 1000, 3600, 100);
        assert!(r.is_revoked(&site, user, Some(thread), 999));
        assert!(r.is_revoked(&site, user, Some(thread), 1000), "a token of the same second may predate the removal");
        assert!(!r.is_revoked(&site, user, Some(thread), 1001));
        assert!(!r.is_revoked(&site, user, None, 999), "connection tokens are not affected");
        assert!(!r.is_revoked(&site, user, Some(ThreadId::new(8).unwrap()), 999));
        assert!(!r.is_revoked(&SiteId::new("b").unwrap(), user, Some(thread), 999));
    }

    #[test]
    fn user_revocation_covers_connection_and_thread_tokens() {
        let (site, user, thread) = ids();
        let r = Revocations::default();
        r.revoke(&site, &[user], None, 1000, 3600, 100);
        assert!(r.is_revoked(&site, user, None, 999));
        assert!(r.is_revoked(&site, user, Some(thread), 999));
        assert!(!r.is_revoked(&site, UserId::new(4).unwrap(), None, 999));
    }

    #[test]
    fn a_replay_does_not_move_a_record_back() {
        let (site, user, _) = ids();
        let r = Revocations::default();
        r.revoke(&site, &[user], None, 2000, DAY, 100);
        r.revoke(&site, &[user], None, 1000, DAY, 100);
        assert!(r.is_revoked(&site, user, None, 1500));
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn old_records_are_forgotten() {
        let (site, user, thread) = ids();
        let r = Revocations::default();
        r.revoke(&site, &[user], Some(thread), 1000, 3600, 100);
        r.revoke(&site, &[UserId::new(9).unwrap()], None, 4601, 3600, 100);
        assert_eq!(r.len(), 1);
        assert!(!r.is_revoked(&site, user, Some(thread), 999));
    }

    /// Past the cap the oldest records fold into the site's floor: memory
    /// stays bounded and every token they covered is still refused.
    #[test]
    fn full_site_folds_into_floor_and_refuses_everything_it_covered() {
        let (site, _, _) = ids();
        let r = Revocations::default();
        let users: Vec<UserId> = (1..=300).map(|u| UserId::new(u).unwrap()).collect();
        let mut evicted = 0;
        for (i, chunk) in users.chunks(10).enumerate() {
            evicted += r.revoke(&site, chunk, None, 1000 + i as u64, DAY, 100).evicted;
        }
        assert_eq!(r.len(), 100);
        assert_eq!(evicted, 200);
        for (i, u) in users.iter().enumerate() {
            let t = 1000 + (i / 10) as u64;
            assert!(r.is_revoked(&site, *u, None, t), "user {u} at its revocation second");
            assert!(!r.is_revoked(&site, *u, None, 1030), "later tokens pass");
        }
        let other = SiteId::new("b").unwrap();
        assert!(!r.is_revoked(&other, users[0], None, 0), "other sites keep their own floor");
    }

    #[test]
    fn repeated_revocations_of_one_scope_stay_bounded() {
        let (site, user, _) = ids();
        let r = Revocations::default();
        for t in 0..10_000 {
            r.revoke(&site, &[user], None, 1000 + t, DAY, 10);
        }
        let rec = r.site(&site).unwrap();
        let rec = rec.read().unwrap();
        assert_eq!(rec.at.len(), 1);
        assert!(rec.order.len() <= 2 * 10 + 16 + 1);
        assert_eq!(rec.floor, 0, "re-revoking one scope evicts nothing");
    }
}
