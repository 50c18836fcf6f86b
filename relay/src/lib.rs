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
//! | [`conn`] | one socket's shared half: pre-encoded frames, the bounded outbox that writes them, subscriptions |
//! | [`router`] | the sharded routing table behind the [`router::Fanout`] trait |
//! | [`http`] | client listener (upgrade + signed server API) and admin listener |
//! | [`ws`] | one socket's task: auth, ops, pings, timers, writes |
//! | [`metrics`] | counters rendered as Prometheus text |
//! | [`server`] | `serve`: listeners, SIGHUP reload, graceful shutdown |
//! | [`sock`] | the accepted TCP socket, shared by hyper and a WebSocket's outbox |
//! | [`tools`] | `keygen`, `derive`, `token`, `push`, `listen` |

pub mod config;
pub mod conn;
pub mod http;
pub mod metrics;
pub mod revocations;
pub mod router;
pub mod server;
pub mod sock;
pub mod state;
pub mod tools;
pub mod ws;
