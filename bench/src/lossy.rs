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

/// The link: 100 Mbit/s, 5 ms each way (10 ms round trip, 125 kB in flight fills it), the given loss each way.
pub fn faults(loss: f64) -> FaultConfig {
    FaultConfig {
        loss,
        delay: Duration::from_millis(5),
        rate_bytes_per_sec: Some(12_500_000),
        ..FaultConfig::default()
    }
}

/// Goodput (Mbit/s on the virtual clock), wall seconds and frames the link lost (both ways) of one transfer of
/// `bytes` from A to B.
fn transfer<N: Node>(a: N, b: N, loss: f64, seed: u64, bytes: u64) -> Result<(f64, f64, u64), String> {
    let wall = std::time::Instant::now();
    let config = PipeConfig::symmetric(1500, faults(loss), seed);
    let mut link = PipeLink::new(a, b, config, Duration::from_secs(3600));
    let server = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 5001);
    let (c, s) = open_one(&mut link, server, ConnOpts::bulk());
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
            return Err(format!("not finished: {received} of {bytes} bytes by the deadline"));
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
    Ok((bytes as f64 * 8.0 / secs / 1e6, wall.elapsed().as_secs_f64(), lost))
}

pub fn scenario(plan: &Plan, report: &mut Report) {
    for &loss in &[0.0, 0.01] {
        let case = format!("bulk A→B, 100 Mbit/s, 10 ms RTT, {}% loss each way", loss * 100.0);
        println!("[2] lossy link: {case}");
        let mut good = Row::new("2 lossy link (virtual time)", &case, "goodput", "Mbit/s", true);
        let mut cost = Row::new("2 lossy link (virtual time)", &case, "simulation wall time", "s", false);
        for rep in 0..plan.lossy_seeds {
            let seed = 1000 + rep as u64;
            let u = transfer(
                UstackNode::new(MAC_A, "198.18.0.1/24", 1500, 64),
                UstackNode::new(MAC_B, "198.18.0.2/24", 1500, 64),
                loss,
                seed,
                plan.lossy_bytes,
            );
            let s = transfer(
                SmolNode::new(MAC_A, [198, 18, 0, 1], 24, 1500, seed),
                SmolNode::new(MAC_B, [198, 18, 0, 2], 24, 1500, seed + 1),
                loss,
                seed,
                plan.lossy_bytes,
            );
            let mut line = format!("    seed {seed}:");
            for (imp, r) in [("ustack", u), ("smoltcp", s)] {
                match r {
                    Ok((mbps, wall, lost)) => {
                        good.series(imp).samples.push(mbps);
                        cost.series(imp).samples.push(wall);
                        line += &format!(" {imp} {mbps:.1} Mbit/s ({wall:.2} s wall, {lost} frames lost)");
                    }
                    Err(e) => {
                        report.fail(format!("lossy {case} seed {seed}: {imp} failed: {e}"));
                        line += &format!(" {imp} FAILED");
                    }
                }
            }
            println!("{line}");
        }
        good.series("smoltcp").note = "no congestion control (built without reno/cubic)".into();
        report.push(good);
        report.push(cost);
    }
}
