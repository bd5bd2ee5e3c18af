//! Scenario 2: bulk transfer over a lossy link on virtual time. The link has a rate and a delay, so the
//! goodput measured on the virtual clock says how well the protocol recovers from loss, whatever the CPU.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use ustack_netdev::fault::FaultConfig;
use ustack_netdev::pipe::PipeConfig;

use crate::link::{open_one, End, Link, PipeLink};
use crate::mem::{MAC_A, MAC_B};
use crate::node::{ConnOpts, Node, SmolNode, UstackNode};
use crate::report::{Report, Row};
use crate::Plan;

/// The link: 100 Mbit/s, 5 ms each way (10 ms round trip, 125 kB in flight fills it), with `loss` each way and
/// a share `early` of the frames each way skipping the delay (netem's `reorder`: such a frame overtakes up to
/// 5 ms of the frames sent before it, some 40 of them at this rate).
fn faults(loss: f64, early: f64) -> FaultConfig {
    FaultConfig {
        loss,
        skip_delay: early,
        delay: Duration::from_millis(5),
        rate_bytes_per_sec: Some(12_500_000),
        ..FaultConfig::default()
    }
}

/// The cases: the link clean, losing 1% each way, and reordering a tenth of the frames each way.
fn cases() -> [(String, FaultConfig); 3] {
    let case = |what: &str| format!("bulk A→B, 100 Mbit/s, 10 ms RTT, {what}");
    [
        (case("0% loss each way"), faults(0.0, 0.0)),
        (case("1% loss each way"), faults(0.01, 0.0)),
        (case("10% of frames each way skip the delay"), faults(0.0, 0.1)),
    ]
}

/// What one transfer did.
struct Transfer {
    /// Goodput, Mbit/s on the virtual clock: of the whole transfer, or of what arrived by the deadline.
    mbps: f64,
    /// Wall-clock seconds the simulation took.
    wall: f64,
    /// Frames the link lost, both ways.
    lost: u64,
    /// All bytes arrived before the deadline (an hour of virtual time).
    finished: bool,
}

/// One transfer of `bytes` from A to B. A transfer the deadline cuts short still counts, with the goodput of
/// what arrived: a stack that cannot finish on this link is a result, not a failure of the benchmark.
fn transfer<N: Node>(
    a: N,
    b: N,
    opts: ConnOpts,
    faults: &FaultConfig,
    seed: u64,
    bytes: u64,
) -> Result<Transfer, String> {
    let wall = std::time::Instant::now();
    let config = PipeConfig::symmetric(1500, faults.clone(), seed);
    let mut link = PipeLink::new(a, b, config, Duration::from_secs(3600));
    let server = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 5001);
    let (c, s) = open_one(&mut link, server, opts);
    let data = vec![0x33_u8; 64 * 1024];
    let mut buf = vec![0_u8; 64 * 1024];
    let start = link.clock();
    let (mut sent, mut received) = (0_u64, 0_u64);
    while received < bytes {
        while sent < bytes {
            let n = (bytes - sent).min(data.len() as u64) as usize;
            let k = link.node(End::A).send(c, &data[..n]);
            if k == 0 {
                break;
            }
            sent += k as u64;
        }
        if !link.step() {
            break;
        }
        loop {
            match link.node(End::B).recv(s, &mut buf) {
                Some(0) => break,
                Some(n) => received += n as u64,
                None => return Err(format!("connection ended after {received} bytes")),
            }
        }
    }
    let secs = link.clock() - start;
    let lost = link.stats(End::A).dropped_loss + link.stats(End::B).dropped_loss;
    let mbps = received as f64 * 8.0 / secs / 1e6;
    Ok(Transfer { mbps, wall: wall.elapsed().as_secs_f64(), lost, finished: received >= bytes })
}

/// The implementations compared.
#[derive(Debug, Clone, Copy)]
enum Implementation {
    Ustack,
    /// smoltcp as every other scenario builds it: without congestion control, its default.
    Smoltcp,
    /// smoltcp with its CUBIC compiled in and chosen.
    #[cfg(feature = "smoltcp-cubic")]
    SmoltcpCubic,
}

const IMPLEMENTATIONS: &[Implementation] = &[
    Implementation::Ustack,
    Implementation::Smoltcp,
    #[cfg(feature = "smoltcp-cubic")]
    Implementation::SmoltcpCubic,
];

impl Implementation {
    fn name(self) -> &'static str {
        match self {
            Implementation::Ustack => "ustack",
            Implementation::Smoltcp => "smoltcp",
            #[cfg(feature = "smoltcp-cubic")]
            Implementation::SmoltcpCubic => "smoltcp (CUBIC)",
        }
    }

    /// One transfer of `bytes` over a link with `faults`.
    fn transfer(self, faults: &FaultConfig, seed: u64, bytes: u64) -> Result<Transfer, String> {
        let smol = |smol_cubic| {
            let opts = ConnOpts { smol_cubic, ..ConnOpts::bulk() };
            let a = SmolNode::new(MAC_A, [198, 18, 0, 1], 24, 1500, seed);
            let b = SmolNode::new(MAC_B, [198, 18, 0, 2], 24, 1500, seed + 1);
            transfer(a, b, opts, faults, seed, bytes)
        };
        match self {
            Implementation::Ustack => {
                let a = UstackNode::new(MAC_A, "198.18.0.1/24", 1500, 64);
                let b = UstackNode::new(MAC_B, "198.18.0.2/24", 1500, 64);
                transfer(a, b, ConnOpts::bulk(), faults, seed, bytes)
            }
            Implementation::Smoltcp => smol(false),
            #[cfg(feature = "smoltcp-cubic")]
            Implementation::SmoltcpCubic => smol(true),
        }
    }
}

pub fn scenario(plan: &Plan, report: &mut Report) {
    for (case, faults) in cases() {
        println!("[2] lossy link: {case}");
        let mut good = Row::new("2 lossy link (virtual time)", &case, "goodput", "Mbit/s", true);
        let mut cost = Row::new("2 lossy link (virtual time)", &case, "simulation wall time", "s", false);
        let mut unfinished = vec![0; IMPLEMENTATIONS.len()];
        for rep in 0..plan.lossy_seeds {
            let seed = 1000 + rep as u64;
            let mut line = format!("    seed {seed}:");
            for (i, implementation) in IMPLEMENTATIONS.iter().enumerate() {
                let imp = implementation.name();
                match implementation.transfer(&faults, seed, plan.lossy_bytes) {
                    Ok(t) => {
                        good.series(imp).samples.push(t.mbps);
                        cost.series(imp).samples.push(t.wall);
                        let (mbps, wall, lost) = (t.mbps, t.wall, t.lost);
                        line += &format!(" {imp} {mbps:.1} Mbit/s ({wall:.2} s wall, {lost} frames lost)");
                        if !t.finished {
                            unfinished[i] += 1;
                            line += " (unfinished after an hour)";
                        }
                    }
                    Err(e) => {
                        report.fail(format!("lossy {case} seed {seed}: {imp} failed: {e}"));
                        line += &format!(" {imp} FAILED");
                    }
                }
            }
            println!("{line}");
        }
        good.series("smoltcp").note = if cfg!(feature = "smoltcp-cubic") {
            "no congestion control (its default build)".into()
        } else {
            "no congestion control (its default build; --features smoltcp-cubic adds a row with its CUBIC)".into()
        };
        for (imp, n) in IMPLEMENTATIONS.iter().map(|i| i.name()).zip(unfinished) {
            if n > 0 {
                let note = &mut good.series(imp).note;
                let sep = if note.is_empty() { "" } else { "; " };
                *note += &format!("{sep}{n} of {} runs unfinished after an hour of virtual time", plan.lossy_seeds);
            }
        }
        report.push(good);
        report.push(cost);
    }
}
