//! The `ustack` binary as a user runs it: exit statuses, one-sentence errors, the demo as a smoke test, and
//! (as root) `serve` answering the kernel and stopping cleanly on Ctrl-C.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use ustack_netdev::namespace::{self, Namespace};

fn ustack(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ustack")).args(args).stdin(Stdio::null()).output().unwrap()
}

/// A directory of its own for one test's files, removed at the end.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("ustack-cli-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn file(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn captured_frames(path: &str) -> usize {
    ustack_netdev::pcap::read_file(path).unwrap().packets.len()
}

#[test]
fn simulated_demo_passes_and_writes_a_capture() {
    let dir = TempDir::new("sim");
    let pcap = dir.file("demo.pcap");
    let out = ustack(&["demo", "--simulated", "--pcap", &pcap]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", text(&out.stderr));
    assert!(stdout.contains("two ustack stacks over the in-memory link"), "{stdout}");
    assert!(stdout.contains("6000 bytes") && stdout.contains("ECONNREFUSED"), "{stdout}");
    assert!(stdout.contains("All checks passed."), "{stdout}");
    assert!(!stdout.contains("FAILED"), "{stdout}");
    assert!(captured_frames(&pcap) >= 10);
}

#[test]
fn bad_arguments_are_refused_with_the_reason() {
    let out = ustack(&["serve", "--tap", "x", "--ip", "198.18.0.2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("prefix length"), "{}", text(&out.stderr));

    let out = ustack(&["serve", "--tap", "x", "--ip", "198.18.0.2/24", "--mac", "ff:ff:ff:ff:ff:ff"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unicast"), "{}", text(&out.stderr));

    let out = ustack(&["serve", "--tap", "x", "--af-packet", "y", "--ip", "198.18.0.2/24"]);
    assert_eq!(out.status.code(), Some(2));

    let out = ustack(&["serve", "--tap", "x", "--ip", "198.18.0.2/24", "--gateway", "198.19.0.1"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        "ustack: the gateway 198.19.0.1 must be another host on the stack's subnet 198.18.0.2/24"
    );
}

#[test]
fn a_missing_namespace_is_one_sentence() {
    let out = ustack(&["serve", "--netns", "ustack-no-such-namespace", "--tap", "t0", "--ip", "198.18.0.2/24"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("ustack: cannot enter network namespace \"ustack-no-such-namespace\""), "{stderr}");
}

/// Namespaces the demo run by process `pid` would have created.
fn demo_namespaces_of(pid: u32) -> Vec<String> {
    let list = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let prefix = format!("ustdemo-{pid}-");
    text(&list.stdout).lines().filter(|l| l.starts_with(&prefix)).map(str::to_string).collect()
}

#[test]
fn kernel_demo_passes_and_cleans_up() {
    if !namespace::kernel_peer_available() {
        println!("SKIPPED: the kernel demo needs root, /dev/net/tun and iproute2");
        return;
    }
    let dir = TempDir::new("kernel");
    let pcap = dir.file("demo.pcap");
    let child =
        Command::new(env!("CARGO_BIN_EXE_ustack")).args(["demo", "--pcap", &pcap]).stdout(Stdio::piped()).spawn();
    let child = child.unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stdout:\n{stdout}");
    assert!(stdout.contains("private network namespace"), "the kernel peer was used:\n{stdout}");
    assert!(stdout.contains("All checks passed."), "{stdout}");
    assert!(demo_namespaces_of(pid).is_empty(), "the demo left its namespace behind");
    assert!(captured_frames(&pcap) >= 20);
}

/// Sends `payload` from a kernel UDP socket inside `ns` and returns what comes back (ARP included, this is
/// the same path a ping takes, without needing the ping program).
fn udp_echo_from_kernel(ns: &Namespace, to: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
    let socket = ns.enter(|| std::net::UdpSocket::bind("0.0.0.0:0")).unwrap().map_err(|e| e.to_string())?;
    socket.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    socket.send_to(payload, to).map_err(|e| e.to_string())?;
    let mut buf = [0u8; 1500];
    let (n, _) = socket.recv_from(&mut buf).map_err(|e| e.to_string())?;
    Ok(buf[..n].to_vec())
}

#[test]
fn serve_echoes_and_stops_cleanly_on_ctrl_c() {
    if !namespace::kernel_peer_available() {
        println!("SKIPPED: serving on a TAP needs root, /dev/net/tun and iproute2");
        return;
    }
    let dir = TempDir::new("serve");
    let pcap = dir.file("serve.pcap");
    let ns = Namespace::create("ustcli").unwrap();
    ns.add_tap("ustcli0", "198.18.5.1/24").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ustack"))
        .args(["serve", "--netns", ns.name(), "--tap", "ustcli0", "--ip", "198.18.5.2/24", "--udp-echo", "7"])
        .args(["--pcap", &pcap])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut line = String::new();
    while !line.contains("ready") && Instant::now() < deadline {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
    }
    assert!(line.contains("ready"), "serve did not start: {line}");

    let echoed = udp_echo_from_kernel(&ns, "198.18.5.2:7", b"ping over UDP");
    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(killed.success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(echoed.as_deref(), Ok(&b"ping over UDP"[..]));
    assert!(out.status.success(), "serve exited with {:?}", out.status);
    assert!(text(&out.stdout).contains("UdpInDatagrams"), "{}", text(&out.stdout));
    assert!(captured_frames(&pcap) >= 4, "the capture was flushed on exit");
}
