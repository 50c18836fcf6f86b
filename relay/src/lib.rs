//! # bm-relay: the zero-retention WebSocket fan-out relay
//!
//! The relay of `docs/PROTOCOL.md` (§1, §5, §6), built on `bm-proto`. It
//! holds routing metadata in memory only (sites, users, threads, sockets),
//! never content, never a key that opens content, and writes nothing to
//! disk: logs go to stderr, there is no offline queue, and each frame is
//! freed once its last recipient has it.
//!
//! | module | what |
//! |---|---|
//! | [`config`] | TOML file + environment + flags, every limit with its default |
//! | [`state`] | what every task shares: config (swapped on SIGHUP), router, metrics |
//! | [`frame`] | one server frame, encoded once per event and shared by every recipient |
//! | [`outbox`] | one socket's write side: the bounded queue and the direct write into the socket |
//! | [`conn`] | one socket's routing handle: site, user, token times, subscriptions, its outbox |
//! | [`cluster`] | several relays as one over core NATS: the [`router::Fanout`] of a cluster node |
//! | [`router`] | the sharded routing table behind the [`router::Fanout`] trait, with the socket caps |
//! | [`revocations`] | what `/v1/disconnect` revoked, bounded per site |
//! | [`bucket`] | the token bucket behind every rate limit |
//! | [`pacing`] | spreading the closes and reconnects of a shutdown or reload |
//! | [`http`] | client listener (upgrade + signed server API) and admin listener |
//! | [`ws`] | one socket's task: admission, auth, ops, pings, timers, close |
//! | [`metrics`] | counters rendered as Prometheus text |
//! | [`server`] | `serve`: listeners, SIGHUP reload, graceful shutdown |
//! | [`stream`] | the streaming fallback's shared part: open streams by id, their ops' session |
//! | [`sock`] | the accepted TCP socket, shared by hyper and a WebSocket's outbox |
//! | [`tools`] | `keygen`, `derive`, `token`, `push`, `listen` |

pub mod bucket;
#[warn(missing_docs)]
pub mod cluster;
pub mod config;
pub mod conn;
pub mod frame;
pub mod http;
pub mod metrics;
pub mod outbox;
pub mod pacing;
pub mod revocations;
pub mod router;
pub mod server;
pub mod sock;
pub mod state;
pub mod stream;
pub mod tools;
pub mod ws;
