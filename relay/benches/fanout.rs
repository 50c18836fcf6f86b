//! Criterion benchmark of the relay's fan-out path: building an `ev` frame
//! once and queuing it on every recipient socket through the routing table
//! (what one event of `POST /v1/push` costs besides HTTP and validation),
//! then draining the queues as the socket tasks would.
//!
//! Also the teardown of a big thread (every subscriber leaving).
//!
//! Run with `make bench-relay` (not part of `make test`).

use std::hint::black_box;
use std::sync::Arc;

use bm_proto::frames;
use bm_proto::{SiteId, ThreadId, UserId};
use bm_relay::conn::Conn;
use bm_relay::frame::Frame;
use bm_relay::router::{Caps, Fanout, LocalRouter};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const ENVELOPE: &str = r#"{"v":1,"id":"OMJ180rtBWrW6o7spBkvoQ","k":"t/12/0","n":"AAAAAAAAAAAAAAAA","c":"QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"}"#;

fn setup(users: u64, tabs: u64, subscribers: u64) -> (LocalRouter, Vec<Arc<Conn>>, SiteId) {
    let site = SiteId::new("bench.example").unwrap();
    let router = LocalRouter::new();
    let mut conns = Vec::new();
    for u in 1..=users {
        for _ in 0..tabs {
            let c = Arc::new(Conn::new(site.clone(), UserId::new(u).unwrap()));
            router.register(&c, Caps::default()).unwrap();
            if u <= subscribers {
                router.subscribe(&c, ThreadId::new(12).unwrap(), 0, 16).unwrap();
            }
            conns.push(c);
        }
    }
    (router, conns, site)
}

fn drain(conns: &[Arc<Conn>]) {
    for c in conns {
        while c.pop().is_some() {}
    }
}

fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout");
    for &(users, tabs) in &[(10u64, 2u64), (1_000, 1), (10_000, 1)] {
        let (router, conns, site) = setup(users, tabs, 0);
        let to: Vec<UserId> = (1..=users).map(|u| UserId::new(u).unwrap()).collect();
        g.throughput(Throughput::Elements(users * tabs));
        g.bench_with_input(BenchmarkId::new("push_to_users", format!("{users}x{tabs}")), &to, |b, to| {
            b.iter(|| {
                let frame = Frame::from(frames::ev(ENVELOPE));
                let d = router.deliver(&site, black_box(to), None, &frame, 1 << 20);
                drain(&conns);
                d.sockets
            })
        });
    }
    for &subs in &[100u64, 5_000] {
        let (router, conns, site) = setup(subs, 1, subs);
        let to: Vec<UserId> = (1..=10).map(|u| UserId::new(u).unwrap()).collect();
        g.throughput(Throughput::Elements(subs));
        g.bench_with_input(BenchmarkId::new("push_to_thread", subs), &to, |b, to| {
            b.iter(|| {
                let frame = Frame::from(frames::ev(ENVELOPE));
                let d = router.deliver(&site, black_box(to), Some(ThreadId::new(12).unwrap()), &frame, 1 << 20);
                drain(&conns);
                d.sockets
            })
        });
        let sender = conns[0].clone();
        g.bench_with_input(BenchmarkId::new("client_pub", subs), &sender, |b, sender| {
            b.iter(|| {
                let frame = Frame::from(frames::ev_from(ThreadId::new(12).unwrap(), sender.user, ENVELOPE));
                let d = router.publish(sender, ThreadId::new(12).unwrap(), &frame, 1 << 20);
                drain(&conns);
                d.sockets
            })
        });
    }
    // Teardown of a big thread: every subscriber leaves (was O(n²) with
    // a linear scan per removal; O(n) with the indexed list).
    for &subs in &[10_000u64, 50_000] {
        g.throughput(Throughput::Elements(subs));
        g.bench_function(BenchmarkId::new("thread_teardown", subs), |b| {
            b.iter_batched(
                || setup(subs, 1, subs),
                |(router, conns, _)| {
                    for c in &conns {
                        router.unregister(c);
                    }
                },
                criterion::BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
