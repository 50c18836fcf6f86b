//! Integration tests of the real `bm-relay` binary over real sockets on
//! 127.0.0.1 (one test binary, so the suite links once).

mod admission;
mod auth;
mod cli;
mod cluster;
mod common;
mod delivery;
mod documented;
mod hardening;
mod lifecycle;
mod limits;
mod presence;
mod protocol;
mod race;
mod storm;
mod stream;
