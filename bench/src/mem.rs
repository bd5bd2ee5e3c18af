//! Scenario 1 (in memory, one thread, wall clock: what the protocol code costs) and the memory half of
//! scenario 4 (resident memory per idle established connection).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use crate::link::{open_connections, open_one, Link, MemLink};
use crate::node::{ConnOpts, Node, SmolNode, UstackNode};
use crate::procfs::{rss_bytes, Stopwatch};
use crate::report::{Report, Row};
use crate::Plan;

pub const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
pub const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
const IP_A: [u8; 4] = [198, 18, 0, 1];
const IP_B: [u8; 4] = [198, 18, 0, 2];
const BULK_PORT: u16 = 5001;
const RPC_PORT: u16 = 5002;
const IDLE_PORT: u16 = 6000;

fn server(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::from(IP_B), port)
}

/// What one timed run did.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    /// Bytes delivered (bulk) or round trips completed (ping-pong).
    pub amount: u64,
    pub wall: f64,
    pub cpu: Option<f64>,
    /// Frames that crossed the link, both directions.
    pub frames: u64,
    /// Times the loop went round (each: A sends, B receives and answers, A receives).
    pub rounds: u64,
}

impl Run {
    pub fn gbit_per_s(&self) -> f64 {
        self.amount as f64 * 8.0 / self.wall / 1e9
    }

    pub fn cpu_per_gb(&self) -> Option<f64> {
        self.cpu.map(|c| c / (self.amount as f64 / 1e9))
    }

    pub fn ns_per_frame(&self) -> f64 {
        self.wall * 1e9 / self.frames.max(1) as f64
    }
}

/// Sends up to `bytes` from A to B on connection `c` (A's id, B's id), stopping early after `cap`.
pub fn bulk<N: Node>(link: &mut MemLink<N>, c: (usize, usize), bytes: u64, cap: Duration) -> Run {
    let data = vec![0x5a_u8; 64 * 1024];
    let mut buf = vec![0_u8; 64 * 1024];
    let frames0 = link.frames;
    let watch = Stopwatch::start();
    let started = std::time::Instant::now();
    let (mut sent, mut received) = (0_u64, 0_u64);
    let mut rounds = 0_u64;
    while received < bytes {
        link.tick();
        while sent < bytes {
            let n = (bytes - sent).min(data.len() as u64) as usize;
            let k = link.a.send(c.0, &data[..n]);
            if k == 0 {
                break;
            }
            sent += k as u64;
        }
        link.out_a();
        link.in_b();
        loop {
            match link.b.recv(c.1, &mut buf) {
                Some(0) => break,
                Some(n) => received += n as u64,
                None => panic!("bulk connection ended early after {received} bytes"),
            }
        }
        link.out_b();
        link.in_a();
        rounds += 1;
        if rounds & 15 == 0 && started.elapsed() > cap {
            break;
        }
    }
    let (wall, cpu) = watch.stop();
    Run { amount: received, wall, cpu, frames: link.frames - frames0, rounds }
}

/// Round trips of a 64-byte request from A answered by a 64-byte response from B, up to `count` of them or
/// until `cap` has passed.
pub fn pingpong<N: Node>(link: &mut MemLink<N>, c: (usize, usize), count: u64, cap: Duration) -> Run {
    let msg = [0x42_u8; 64];
    let mut buf = [0_u8; 64];
    let frames0 = link.frames;
    let watch = Stopwatch::start();
    let started = std::time::Instant::now();
    let mut done = 0;
    while done < count {
        link.tick();
        assert_eq!(link.a.send(c.0, &msg), 64, "request did not fit");
        link.out_a();
        link.in_b();
        let mut got = 0;
        let mut spins = 0;
        while got < 64 {
            got += link.b.recv(c.1, &mut buf[got..]).expect("rpc connection ended");
            if got < 64 {
                // Not there yet (should not happen on this link): let the stacks run.
                link.tick();
                link.out_a();
                link.in_b();
                spins += 1;
                assert!(spins < 1_000_000, "request never arrived");
            }
        }
        assert_eq!(link.b.send(c.1, &msg), 64, "response did not fit");
        link.out_b();
        link.in_a();
        let mut got = 0;
        while got < 64 {
            got += link.a.recv(c.0, &mut buf[got..]).expect("rpc connection ended");
            if got < 64 {
                link.tick();
                link.out_b();
                link.in_a();
                spins += 1;
                assert!(spins < 1_000_000, "response never arrived");
            }
        }
        done += 1;
        if done & 255 == 0 && started.elapsed() > cap {
            break;
        }
    }
    let (wall, cpu) = watch.stop();
    Run { amount: done, wall, cpu, frames: link.frames - frames0, rounds: done }
}

/// A ustack pair on the in-memory link with `idle` idle established connections.
fn ustack_link(mtu: usize, idle: usize) -> MemLink<UstackNode> {
    let a = UstackNode::new(MAC_A, "198.18.0.1/24", mtu, idle + 64);
    let b = UstackNode::new(MAC_B, "198.18.0.2/24", mtu, idle + 64);
    MemLink::new(a, b, mtu)
}

fn smol_link(mtu: usize) -> MemLink<SmolNode> {
    let a = SmolNode::new(MAC_A, IP_A, 24, mtu, 1);
    let b = SmolNode::new(MAC_B, IP_B, 24, mtu, 2);
    MemLink::new(a, b, mtu)
}

/// The idle connections, then one bulk and one request/response connection.
fn prepare<N: Node>(link: &mut MemLink<N>, idle: usize) -> ((usize, usize), (usize, usize)) {
    if idle > 0 {
        open_connections(link, server(IDLE_PORT), idle, 512, ConnOpts::idle());
    }
    let bulk = open_one(link, server(BULK_PORT), ConnOpts::bulk());
    let rpc = open_one(link, server(RPC_PORT), ConnOpts::rpc());
    assert_eq!(link.drops(), 0, "frames dropped while opening connections");
    (bulk, rpc)
}

/// Scenario 1.
pub fn scenario(plan: &Plan, report: &mut Report) {
    let cap = plan.cap;
    for &(mtu, idle, with_rpc) in &plan.mem_cases {
        let label = format!("MTU {mtu}, {idle} idle conns");
        println!("[1] in memory: {label}");
        let t = std::time::Instant::now();
        let mut u = ustack_link(mtu, idle);
        let (ub, ur) = prepare(&mut u, idle);
        let u_setup = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let mut s = smol_link(mtu);
        let (sb, sr) = prepare(&mut s, idle);
        let s_setup = t.elapsed().as_secs_f64();
        println!("    set up in {u_setup:.2} s (ustack) and {s_setup:.2} s (smoltcp)");

        // Warm up: open the congestion windows, fault in the buffers.
        bulk(&mut u, ub, plan.bulk_bytes / 4, cap);
        bulk(&mut s, sb, plan.bulk_bytes / 4, cap);
        if with_rpc {
            pingpong(&mut u, ur, plan.rtts / 10, cap);
            pingpong(&mut s, sr, plan.rtts / 10, cap);
        }

        let mut thr = Row::new("1 in memory", &format!("bulk A→B, {label}"), "throughput", "Gbit/s", true);
        let mut bpp = Row::new("1 in memory", &format!("bulk A→B, {label}"), "time per frame", "ns", false);
        let mut fpm = Row::new("1 in memory", &format!("bulk A→B, {label}"), "frames (data + ACK) per MB", "", false);
        let mut rtt = Row::new("1 in memory", &format!("64 B ping-pong, {label}"), "round trip", "ns", false);
        let mut rpp = Row::new("1 in memory", &format!("64 B ping-pong, {label}"), "time per frame", "ns", false);
        for rep in 0..plan.reps {
            let ur_ = bulk(&mut u, ub, plan.bulk_bytes, cap);
            let sr_ = bulk(&mut s, sb, plan.bulk_bytes, cap);
            for (imp, r) in [("ustack", ur_), ("smoltcp", sr_)] {
                let se = thr.series(imp);
                se.samples.push(r.gbit_per_s());
                se.cpu_s_per_gb.extend(r.cpu_per_gb());
                bpp.series(imp).samples.push(r.ns_per_frame());
            }
            for (imp, r) in [("ustack", ur_), ("smoltcp", sr_)] {
                fpm.series(imp).samples.push(r.frames as f64 / (r.amount as f64 / 1e6));
            }
            let mb = |r: Run| r.amount as f64 / 1e6;
            let mut line = format!(
                "    rep {rep}: bulk ustack {:.2} Gbit/s ({:.0} ns/frame, {:.0} frames/MB, {:.1} rounds/MB), smoltcp \
                 {:.2} Gbit/s ({:.0} ns/frame, {:.0} frames/MB, {:.1} rounds/MB)",
                ur_.gbit_per_s(),
                ur_.ns_per_frame(),
                ur_.frames as f64 / mb(ur_),
                ur_.rounds as f64 / mb(ur_),
                sr_.gbit_per_s(),
                sr_.ns_per_frame(),
                sr_.frames as f64 / mb(sr_),
                sr_.rounds as f64 / mb(sr_),
            );
            if with_rpc {
                let up = pingpong(&mut u, ur, plan.rtts, cap);
                let sp = pingpong(&mut s, sr, plan.rtts, cap);
                for (imp, r) in [("ustack", up), ("smoltcp", sp)] {
                    rtt.series(imp).samples.push(r.wall * 1e9 / r.amount.max(1) as f64);
                    rpp.series(imp).samples.push(r.ns_per_frame());
                }
                line += &format!(
                    "; rtt ustack {:.0} ns, smoltcp {:.0} ns",
                    up.wall * 1e9 / up.amount.max(1) as f64,
                    sp.wall * 1e9 / sp.amount.max(1) as f64
                );
            }
            println!("{line}");
        }
        assert_eq!(u.drops() + s.drops(), 0, "frames dropped by the in-memory link's batches");
        if idle > 0 {
            thr.series("smoltcp").note = "4 KiB buffers on idle sockets".into();
        }
        report.push(thr);
        report.push(bpp);
        report.push(fpm);
        if with_rpc {
            report.push(rtt);
            report.push(rpp);
        }
    }
    idle_ratios(plan, report);
}

/// Per-frame cost with idle connections relative to none, per implementation (a note under the table).
fn idle_ratios(plan: &Plan, report: &mut Report) {
    let median_of = |report: &Report, case: &str, imp: &str| -> Option<f64> {
        let row = report.rows.iter().find(|r| r.case == case && r.metric == "time per frame")?;
        let series = row.series.iter().find(|s| s.imp == imp)?;
        crate::report::summarize(&series.samples).map(|s| s.median)
    };
    let mut lines = Vec::new();
    for &(mtu, idle, _) in &plan.mem_cases {
        if idle == 0 {
            continue;
        }
        for kind in ["bulk A→B", "64 B ping-pong"] {
            let base = format!("{kind}, MTU {mtu}, 0 idle conns");
            let case = format!("{kind}, MTU {mtu}, {idle} idle conns");
            let mut parts = Vec::new();
            for imp in ["ustack", "smoltcp"] {
                if let (Some(b), Some(x)) = (median_of(report, &base, imp), median_of(report, &case, imp)) {
                    parts.push(format!("{imp} {:.2}×", x / b));
                }
            }
            if !parts.is_empty() {
                lines.push(format!("time per frame with {idle} idle conns ÷ with none, {kind}: {}", parts.join(", ")));
            }
        }
    }
    for l in lines {
        report.note(l);
    }
}

/// One workload alone, for a profiler.
pub fn solo(workload: &str, secs: Duration) {
    let (name, idle) = match workload.split_once(':') {
        Some((name, idle)) => (name, idle.parse().unwrap_or(usize::MAX)),
        None => (workload, 0),
    };
    let (imp, kind) = name.split_once('-').unwrap_or((name, "bulk"));
    let run = match imp {
        _ if idle > 100_000 => usage(workload),
        "ustack" => solo_on(ustack_link(1500, idle), kind, idle, secs),
        "smoltcp" => solo_on(smol_link(1500), kind, idle, secs),
        _ => usage(workload),
    };
    match kind {
        "rtt" => println!("{workload}: {:.0} ns per round trip", run.wall * 1e9 / run.amount.max(1) as f64),
        _ => println!("{workload}: {:.2} Gbit/s, {:.0} ns per frame", run.gbit_per_s(), run.ns_per_frame()),
    }
}

fn usage(workload: &str) -> ! {
    eprintln!(
        "unknown workload {workload}: use ustack-bulk, smoltcp-bulk, ustack-rtt or smoltcp-rtt, optionally \
         followed by :N for N idle connections (at most 100000)"
    );
    std::process::exit(2);
}

fn solo_on<N: Node>(mut link: MemLink<N>, kind: &str, idle: usize, secs: Duration) -> Run {
    let (b, r) = prepare(&mut link, idle);
    match kind {
        "rtt" => pingpong(&mut link, r, u64::MAX, secs),
        _ => bulk(&mut link, b, u64::MAX, secs),
    }
}

/// Runs in a child process (a fresh heap): opens `n` connections between two ustack stacks, prints the
/// resident memory per connection endpoint, then has `used` of them exchange 64 bytes, one connection after
/// the other (so that the heap's high-water mark is one exchange's buffers, not hundreds'), and prints again,
/// with the buffer bytes the stacks still hold where they can tell.
pub fn memory_child(imp: &str, n: usize, used: usize) {
    match imp {
        "ustack" => memory_child_on(ustack_link(1500, n), n, used),
        _ => memory_child_on(smol_link(1500), n, used),
    }
}

fn memory_child_on<N: Node>(mut link: MemLink<N>, n: usize, used: usize) {
    // Let the link's batches and the stacks' tables settle first.
    let before = rss_bytes().unwrap_or(0);
    // One client address has 64,512 ephemeral ports per server port: spread the connections over ports.
    let (mut clients, mut servers) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut port = IDLE_PORT;
    while clients.len() < n {
        let k = (n - clients.len()).min(50_000);
        let (c, s) = open_connections(&mut link, server(port), k, 512, ConnOpts::idle());
        clients.extend(c);
        servers.extend(s);
        port += 1;
    }
    let established = rss_bytes().unwrap_or(0);
    println!("fresh {n} {before} {established}");
    let msg = [7_u8; 64];
    let mut buf = [0_u8; 64];
    let used = used.min(clients.len()).min(servers.len());
    for i in 0..used {
        link.a.send(clients[i], &msg);
        link.b.send(servers[i], &msg);
        for _ in 0..4 {
            link.step();
        }
        let _ = link.a.recv(clients[i], &mut buf);
        let _ = link.b.recv(servers[i], &mut buf);
    }
    for _ in 0..4 {
        link.step();
    }
    let after = rss_bytes().unwrap_or(0);
    println!("used {used} {established} {after}");
    if let (Some((ring_a, spare_a)), Some((ring_b, spare_b))) = (link.a.buffer_bytes(), link.b.buffer_bytes()) {
        println!("held {used} 0 {}", ring_a + ring_b);
        println!("spare {used} 0 {}", spare_a + spare_b);
    }
}

/// Scenario 4, memory: runs the child for each implementation and reports bytes per endpoint.
pub fn memory_scenario(plan: &Plan, report: &mut Report) {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            report.note(format!("memory per connection not measured: cannot find own executable: {e}"));
            return;
        }
    };
    for &n in &plan.mem_conns {
        let used = n.min(plan.mem_used_limit);
        let case = format!("{n} idle established conns");
        let mut fresh = Row::new("4 connections", &case, "RSS per endpoint, never used", "KiB", false);
        let mut worn = Row::new(
            "4 connections",
            &format!("{used} of the {n} after 64 B each way"),
            "RSS per endpoint, after use",
            "KiB",
            false,
        );
        let mut held = Row::new(
            "4 connections",
            &format!("{used} of the {n} after 64 B each way"),
            "socket buffers still held per used endpoint",
            "KiB",
            false,
        );
        for rep in 0..plan.mem_reps {
            for imp in ["ustack", "smoltcp"] {
                if imp == "smoltcp" && n > 20_000 {
                    continue;
                }
                let out = std::process::Command::new(&exe)
                    .args(["--memory-child", imp, &n.to_string(), &used.to_string()])
                    .output();
                let out = match out {
                    Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
                    Ok(o) => {
                        report.fail(format!(
                            "memory child for {imp} with {n} conns failed: {}",
                            String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("")
                        ));
                        continue;
                    }
                    Err(e) => {
                        report.fail(format!("memory child for {imp} could not run: {e}"));
                        continue;
                    }
                };
                for line in out.lines() {
                    let f: Vec<&str> = line.split_whitespace().collect();
                    if f.len() != 4 {
                        continue;
                    }
                    let (Ok(k), Ok(a), Ok(b)) = (f[1].parse::<f64>(), f[2].parse::<f64>(), f[3].parse::<f64>()) else {
                        continue;
                    };
                    let per = (b - a) / (2.0 * k.max(1.0)) / 1024.0;
                    match f[0] {
                        "fresh" => fresh.series(imp).samples.push(per),
                        "used" => worn.series(imp).samples.push(per),
                        "held" => held.series(imp).samples.push(per),
                        _ => {}
                    }
                }
                println!("[4] memory rep {rep} {imp} {n}: {}", out.trim().replace('\n', "; "));
            }
        }
        for (row, note) in
            [(&mut fresh, "4+4 KiB buffers, chosen by the app"), (&mut worn, "preallocated: counted above")]
        {
            if let Some(s) = row.series.iter_mut().find(|s| s.imp == "smoltcp") {
                s.note = note.into();
            }
        }
        report.push(fresh);
        report.push(worn);
        report.push(held);
    }
}
