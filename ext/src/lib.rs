//! # bm_relay: the PHP extension
//!
//! `bm_push()` seals an event (AES-256-GCM, keys derived from the site
//! secret by `bm-proto`) and hands it to a per-process background sender
//! that batches events into signed `/v1/push` requests, so the request path
//! costs microseconds. Sync mode waits for the relay's answer instead.
//!
//! | module | what it holds |
//! |---|---|
//! | [`api`] | the `bm_*` PHP functions |
//! | [`lifecycle`] | MINIT, RSHUTDOWN, MSHUTDOWN, phpinfo() |
//! | [`errlog`] | delivery failures in the PHP error log, rate-limited |
//! | [`error`] | `BmRelayException` and the error type that becomes it |
//! | [`ini`] | the `bm_relay.*` INI entries |
//! | [`config`] | settings parsing, secret loading, per-request resolution |
//! | [`request`] | per-request `bm_configure()` overrides |
//! | [`values`] | PHP values → protocol ids, errors naming the field |
//! | [`json`] | `json_encode` / `json_decode` through PHP itself |
//! | [`event`] | checking and sealing one event |
//! | [`random`] | fork-safe CSPRNG for nonces and event ids |
//! | [`worker`] | the process's sender: runtime, fork handling |
//! | [`queue`] | the async queue, its pending count and batching |
//! | [`sender`] | the background task that sends the batches |
//! | [`calls`] | calls PHP waits for (sync push, presence, disconnect) |
//! | [`failover`] | several relay URLs: order, cooldown, one deadline |
//! | [`stats`] | counters and latency percentiles for `bm_stats()` |
//! | [`relay`] | signed HTTP requests and the relay's replies |
//! | [`direct`] | blocking keep-alive HTTP/1.1 for sync calls to an http relay |
//! | [`transport`] | http (direct) or https (reqwest), decided once per target |
//! | [`sync`] | poison-tolerant mutex locking |
//!
//! The PHP API is documented in `docs/PHP-API.md`; IDE stubs are in
//! `ext/bm_relay.stub.php`.

#![cfg_attr(windows, feature(abi_vectorcall))]

pub mod api;
pub mod calls;
pub mod config;
pub mod direct;
pub mod errlog;
pub mod error;
pub mod event;
pub mod failover;
pub mod ini;
pub mod json;
pub mod lifecycle;
pub mod pseudonyms;
pub mod queue;
pub mod random;
pub mod relay;
pub mod request;
pub mod sender;
pub mod stats;
pub mod sync;
pub mod transport;
pub mod values;
pub mod worker;

use ext_php_rs::prelude::*;

use crate::error::BmRelayException;
use crate::lifecycle::{module_info, module_shutdown, request_shutdown, startup};

/// The extension's version, shown by phpinfo() and `phpversion('bm_relay')`.
pub use crate::lifecycle::VERSION;

/// The module: functions, the exception class, INI, lifecycle hooks.
#[php_module]
#[php(startup = startup)]
pub fn get_module(module: ModuleBuilder) -> ModuleBuilder {
    api::register_functions(module)
        .name("bm_relay")
        .version(VERSION)
        .class::<BmRelayException>()
        .request_shutdown_function(request_shutdown)
        .shutdown_function(module_shutdown)
        .info_function(module_info)
}
