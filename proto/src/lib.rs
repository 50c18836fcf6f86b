//! # bm-proto: the bm-relay protocol, version 1, as data and functions
//!
//! This crate is the single Rust statement of `docs/PROTOCOL.md`. The relay,
//! the PHP extension and the load generator all link it, so a rule written
//! here is the same rule everywhere. It performs no I/O, spawns nothing and
//! depends on no runtime: every function is a pure transformation (apart
//! from drawing random nonces and event ids from the OS), which keeps it
//! usable inside a PHP request as well as inside a tokio task.
//!
//! | module | protocol section | what it holds |
//! |---|---|---|
//! | [`b64`] | §4 | base64url without padding, strict: every value has one spelling |
//! | [`ids`] | §2 | site, user, thread, epoch, event and key identifiers |
//! | [`keys`] | §3 | the HKDF key hierarchy; secrets zeroized, never printed |
//! | [`pseudonym`] | §3.2 | the user and thread pseudonyms of protocol v2 |
//! | [`envelope`] | §4 | AES-256-GCM seal / open with the routing AAD |
//! | [`signing`] | §5 | `X-BM-*` request signatures for the server API |
//! | [`api`] | §5 | server API bodies (push, presence, disconnect, errors) |
//! | [`token`] | §6 | HS256 connection and thread tokens |
//! | [`frames`] | §6 | WebSocket frames and close codes |

pub mod api;
pub mod b64;
pub mod envelope;
pub mod frames;
pub mod ids;
pub mod keys;
pub mod pseudonym;
pub mod signing;
pub mod token;

pub use envelope::{Envelope, EnvelopeError, Payload};
pub use ids::{Epoch, EventId, IdError, KeyId, SiteId, ThreadId, UserId};
pub use keys::{ContentKey, EnvelopeKey, KeyError, RelayKey, SiteSecret};
pub use token::{Claims, TokenError, TokenKind};

/// The protocol version this crate speaks (the `v` of every envelope).
pub const PROTOCOL_VERSION: u8 = 1;
