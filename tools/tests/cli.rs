//! The `ustack` binary as a user runs it: exit statuses, one-sentence errors, the demo as a smoke test, and
//! (as root) `serve` answering the kernel (UDP echo, HTTP, TCP echo), `ss` reading its sockets through the
//! control socket, and stopping cleanly on Ctrl-C.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
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
    assert!(stdout.contains("returned EINPROGRESS"), "the TCP part ran with a non-blocking connect:\n{stdout}");
    assert!(stdout.contains("all 100000 bytes arrived and every byte i is i % 251"), "{stdout}");
    assert!(stdout.contains("50000 bytes") && stdout.contains("echoed back byte for byte"), "{stdout}");
    assert!(stdout.contains("TIME-WAIT") && stdout.contains("timer:(timewait,"), "{stdout}");
    assert!(stdout.contains("TcpPassiveOpens"), "{stdout}");
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

    let out = ustack(&["serve", "--af-packet", "y", "--offload", "--ip", "198.18.0.2/24"]);
    assert_eq!(out.status.code(), Some(2), "--offload is for a TAP: {}", text(&out.stderr));
    // With a TAP it is accepted: parsing gets as far as checking the gateway.
    let out = ustack(&["serve", "--tap", "x", "--offload", "--ip", "198.18.0.2/24", "--gateway", "198.19.0.1"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));

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

#[test]
fn ss_without_a_control_socket_is_one_sentence() {
    let dir = TempDir::new("no-control");
    let path = dir.file("nothing.sock");
    let out = ustack(&["ss", "--control", &path]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with(&format!("ustack: there is no control socket at {path}")), "{stderr}");
    assert!(out.stdout.is_empty());

    std::fs::write(&path, "a regular file").unwrap();
    let out = ustack(&["ss", "--control", &path, "--counters"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr).trim(), format!("ustack: {path} is not a control socket (not a socket at all)"));
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
    assert!(stdout.contains("all 100000 bytes arrived and every byte i is i % 251"), "{stdout}");
    assert!(stdout.contains("TIME-WAIT") && stdout.contains("timer:(timewait,"), "{stdout}");
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

/// `ustack serve ARGS` in the background, returned once it logged that it is ready. Its stderr is drained by
/// a thread from then on, so that logging can never block it.
fn spawn_serve(args: &[&str]) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ustack"))
        .arg("serve")
        .args(args)
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
    if !line.contains("ready") {
        let _ = child.kill();
        panic!("serve did not start: {line}");
    }
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    child
}

/// Ctrl-C for `child`, and what it printed until it exited.
fn interrupt(child: Child) -> Output {
    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(killed.success());
    child.wait_with_output().unwrap()
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
    let child = spawn_serve(&[
        "--netns",
        ns.name(),
        "--tap",
        "ustcli0",
        "--ip",
        "198.18.5.2/24",
        "--udp-echo",
        "7",
        "--pcap",
        &pcap,
    ]);

    let echoed = udp_echo_from_kernel(&ns, "198.18.5.2:7", b"ping over UDP");
    let out = interrupt(child);
    assert_eq!(echoed.as_deref(), Ok(&b"ping over UDP"[..]));
    assert!(out.status.success(), "serve exited with {:?}", out.status);
    assert!(text(&out.stdout).contains("UdpInDatagrams"), "{}", text(&out.stdout));
    assert!(captured_frames(&pcap) >= 4, "the capture was flushed on exit");
}

/// A kernel TCP socket connected to `to` from inside `ns`.
fn kernel_tcp(ns: &Namespace, to: &str) -> TcpStream {
    let to: SocketAddr = to.parse().unwrap();
    let stream = ns.enter(|| TcpStream::connect_timeout(&to, Duration::from_secs(5))).unwrap().unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    stream
}

/// One response read off a persistent connection: the head up to the empty line, then Content-Length bytes.
fn read_response(reader: &mut BufReader<&TcpStream>) -> (String, Vec<u8>) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the connection closed inside a response head: {head}");
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("no Content-Length in {head}"));
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).unwrap();
    (head, body)
}

fn assert_pattern(body: &[u8], n: usize) {
    assert_eq!(body.len(), n);
    if let Some(at) = body.iter().enumerate().position(|(i, &b)| b != (i % 251) as u8) {
        panic!("byte {at} of /bytes/{n} is {}, expected {}", body[at], at % 251);
    }
}

/// `ustack ss --control PATH [--counters]`'s stdout, after checking that it succeeded.
fn ss(control: &str, extra: &[&str]) -> String {
    let out = ustack(&[&["ss", "--control", control][..], extra].concat());
    assert!(out.status.success(), "ss failed: {}", text(&out.stderr));
    text(&out.stdout)
}

#[test]
fn serve_http_keep_alive_echo_and_ss() {
    if !namespace::kernel_peer_available() {
        println!("SKIPPED: serving on a TAP needs root, /dev/net/tun and iproute2");
        return;
    }
    let dir = TempDir::new("serve-tcp");
    let control = dir.file("control.sock");
    let ns = Namespace::create("ustcli").unwrap();
    ns.add_tap("ustcli1", "198.18.6.1/24").unwrap();
    let child = spawn_serve(&[
        "--netns",
        ns.name(),
        "--tap",
        "ustcli1",
        "--ip",
        "198.18.6.2/24",
        "--http",
        "80",
        "--echo",
        "7",
        "--discard",
        "9",
        "--msl",
        "1",
        "--control",
        &control,
    ]);
    // Whatever fails below, Ctrl-C the server first so that it removes its control socket and the namespace
    // can go.
    let checks = std::panic::catch_unwind(|| {
        // The listeners, each with its SYN and accept queues.
        let table = ss(&control, &[]);
        let header = table.lines().next().unwrap_or_default();
        assert!(header.starts_with("Netid State") && header.contains("Local Address:Port"), "{table}");
        let listen = table.lines().find(|l| l.contains("LISTEN") && l.contains("0.0.0.0:80")).expect("LISTEN :80");
        assert!(listen.starts_with("tcp") && listen.contains("synq:0 acceptq:0/128"), "{table}");

        // Two requests on one connection (keep-alive), then a third that asks the server to close.
        let stream = kernel_tcp(&ns, "198.18.6.2:80");
        let mut reader = BufReader::new(&stream);
        (&stream).write_all(b"GET /bytes/1000 HTTP/1.1\r\nHost: 198.18.6.2\r\n\r\n").unwrap();
        let (head, body) = read_response(&mut reader);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.contains("Connection: keep-alive"), "{head}");
        assert_pattern(&body, 1000);
        (&stream).write_all(b"GET /bytes/300000 HTTP/1.1\r\nHost: 198.18.6.2\r\n\r\n").unwrap();
        let (head, body) = read_response(&mut reader);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert_pattern(&body, 300_000);
        let table = ss(&control, &[]);
        assert!(table.lines().any(|l| l.contains("ESTAB") && l.contains("198.18.6.2:80")), "{table}");
        (&stream).write_all(b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let (head, _) = read_response(&mut reader);
        assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n") && head.contains("Connection: close"), "{head}");
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "the server closed after the response");
        drop(reader);
        drop(stream);

        // The server closed first, so the connection waits in TIME-WAIT on its side, with its timer.
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut table = ss(&control, &[]);
        while !table.contains("TIME-WAIT") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            table = ss(&control, &[]);
        }
        let tw = table.lines().find(|l| l.contains("TIME-WAIT")).unwrap_or_else(|| panic!("no TIME-WAIT:\n{table}"));
        assert!(tw.contains("198.18.6.2:80") && tw.contains("198.18.6.1:"), "{tw}");
        assert!(tw.contains("timer:(timewait,") && (tw.contains("sec)") || tw.contains("ms)")), "{tw}");
        // With --msl 1 the entry lives 2 s: it must then be gone from the table.
        let deadline = Instant::now() + Duration::from_secs(6);
        while ss(&control, &[]).contains("TIME-WAIT") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let table = ss(&control, &[]);
        assert!(!table.contains("TIME-WAIT"), "TIME-WAIT still there after 2*MSL:\n{table}");
        assert!(ss(&control, &["--counters"]).contains("TcpExtTW"), "counted when it ended");

        // A malformed request: 400 and a close.
        let bad = kernel_tcp(&ns, "198.18.6.2:80");
        (&bad).write_all(b"NONSENSE\r\n\r\n").unwrap();
        let mut answer = String::new();
        (&bad).read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{answer}");

        // TCP echo: bytes out and back, then end of file after our FIN.
        let echo = kernel_tcp(&ns, "198.18.6.2:7");
        let payload: Vec<u8> = (0..20_000u32).map(|i| (i % 253) as u8).collect();
        (&echo).write_all(&payload).unwrap();
        let mut back = vec![0u8; payload.len()];
        (&echo).read_exact(&mut back).unwrap();
        assert!(back == payload, "the echo differs from what was sent");
        echo.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!((&echo).read(&mut [0u8; 8]).unwrap(), 0, "the echo service closed after our FIN");

        // Discard: everything is taken, nothing comes back.
        let discard = kernel_tcp(&ns, "198.18.6.2:9");
        (&discard).write_all(&payload).unwrap();
        discard.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!((&discard).read(&mut [0u8; 8]).unwrap(), 0);

        let counters = ss(&control, &["--counters"]);
        let passive = counters.lines().find(|l| l.starts_with("TcpPassiveOpens")).expect("TcpPassiveOpens");
        assert_eq!(passive.split_whitespace().nth(1), Some("4"), "{counters}");
        assert!(!counters.lines().any(|l| l.split_whitespace().nth(1) == Some("0")), "zeros are left out");
    });
    let out = interrupt(child);
    if let Err(panic) = checks {
        std::panic::resume_unwind(panic);
    }
    assert!(out.status.success(), "serve exited with {:?}", out.status);
    assert!(text(&out.stdout).contains("TcpPassiveOpens"), "{}", text(&out.stdout));
    assert!(!std::path::Path::new(&control).exists(), "the control socket was removed on exit");
    let gone = ustack(&["ss", "--control", &control]);
    assert_eq!(gone.status.code(), Some(1));
}

// -------------------------------------------------------------------------------------------------------------
// `ustack script` and `ustack replay`: in-process, virtual time, no privileges needed.

/// A file of the workspace (scripts and captures).
fn workspace_file(relative: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(relative).display().to_string()
}

/// A passive open with one exchange of data, as a script; `ack` is what the stack's data segment must
/// acknowledge (2 is wrong: the peer sent nothing but its SYN).
fn handshake_script(ack: u32) -> String {
    format!(
        "\
0     socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
+0    setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
+0    bind(3, ..., ...) = 0
+0    listen(3, 1) = 0
+0    < S 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 7>
+0    > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale 7>
+.1   < . 1:1(0) ack 1 win 257
+0    accept(3, ..., ...) = 4
+0    write(4, ..., 10) = 10
+0    > P. 1:11(10) ack {ack}
"
    )
}

#[test]
fn script_passes_quietly_and_prints_the_trace_with_v() {
    let dir = TempDir::new("script-pass");
    let path = dir.file("pass.pkt");
    std::fs::write(&path, handshake_script(1)).unwrap();
    let out = ustack(&["script", &path]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", text(&out.stderr));
    assert!(stdout.starts_with("PASS pass.pkt (0.100 s of virtual time)"), "{stdout}");
    assert_eq!(stdout.lines().count(), 1, "no trace without -v:\n{stdout}");

    let out = ustack(&["script", "-v", &path, &workspace_file("tests/scripts/handshake-active.pkt")]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("S. 0:0(0) ack 1 win 64240"), "the trace, tcpdump-style:\n{stdout}");
    assert!(stdout.contains("PASS handshake-active.pkt"), "{stdout}");
    assert!(stdout.contains("2 scripts: 2 passed, 0 failed, 0 skipped"), "{stdout}");
}

#[test]
fn script_failure_names_the_line_expected_and_actual() {
    let dir = TempDir::new("script-fail");
    let (good, bad) = (dir.file("good.pkt"), dir.file("bad.pkt"));
    std::fs::write(&good, handshake_script(1)).unwrap();
    std::fs::write(&bad, handshake_script(2)).unwrap();
    let out = ustack(&["script", &good, &bad]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "stdout:\n{stdout}");
    assert_eq!(text(&out.stderr).trim(), "ustack: 1 of 2 scripts failed");
    assert!(stdout.contains("PASS good.pkt"), "{stdout}");
    assert!(stdout.contains("FAIL bad.pkt at line 10"), "{stdout}");
    assert!(stdout.contains("  line 10: ") && stdout.contains("tcp_ack_seq"), "{stdout}");
    assert!(stdout.contains("  expected: +0    > P. 1:11(10) ack 2"), "{stdout}");
    assert!(stdout.contains("  actual:   ") && stdout.contains("P. 1:11(10) ack 1"), "{stdout}");
    assert!(stdout.contains("trace (") && stdout.contains("line 9: write(4, ..., 10) = 10"), "{stdout}");
    assert!(stdout.contains("2 scripts: 1 passed, 1 failed, 0 skipped"), "{stdout}");

    // Options of the interpreter: a tolerance, an address.
    let out = ustack(&["script", "--tolerance-usecs", "1000", "--local-ip", "10.0.0.9", &good]);
    assert!(out.status.success(), "{}", text(&out.stdout));
    assert!(text(&ustack(&["script", "-v", "--local-ip", "10.0.0.9", &good]).stdout).contains("10.0.0.9:8080"));

    let out = ustack(&["script", &dir.file("missing.pkt")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("cannot read"), "{}", text(&out.stdout));
    assert_eq!(text(&out.stderr).lines().count(), 1);
}

/// `ustack replay CAPTURE ARGS --output DIR/out.pcap`: the status, stdout and the capture written.
fn replay(capture: &str, args: &[&str], dir: &TempDir) -> (Option<i32>, String, String, String) {
    let output = dir.file("out.pcap");
    let capture = workspace_file(&format!("pcaps/{capture}"));
    let out = ustack(&[&["replay", &capture][..], args, &["--output", &output]].concat());
    (out.status.code(), text(&out.stdout), text(&out.stderr), output)
}

/// `tshark -r FILE` when tshark is installed (nothing when it is not).
fn tshark(path: &str) -> Option<String> {
    let out = Command::new("tshark").args(["-n", "-r", path]).stderr(Stdio::null()).output().ok()?;
    assert!(out.status.success(), "tshark could not read {path}");
    Some(text(&out.stdout))
}

#[test]
fn replay_03_as_the_client_matches_every_segment_and_writes_a_conversation() {
    let dir = TempDir::new("replay-03");
    let (code, stdout, stderr, output) = replay("03_dns_over_tcp_full_lifecycle.pcap", &["--as", "192.168.1.11"], &dir);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("ustack plays 192.168.1.11:33779, the peer is 209.87.249.18:53"), "{stdout}");
    assert!(stdout.contains("connect() from the host's address just before #1"), "{stdout}");
    assert!(stdout.contains("app: send() 58 bytes") && stdout.contains("app: recv() 226 bytes"), "{stdout}");
    assert!(stdout.contains("app: shutdown(SHUT_WR)"), "{stdout}");
    // Side by side: each host segment next to the stack's, identical or differing by design only.
    let row =
        |frame: &str| stdout.lines().find(|l| l.starts_with(frame)).unwrap_or_else(|| panic!("{frame}: {stdout}"));
    assert!(row("#1 ").contains("> S   seq 0 win 64240") && row("#1 ").contains("~ TS val"), "{stdout}");
    assert!(row("#2 ").contains("< S.  seq 0 ack 1") && row("#2 ").contains("injected"), "{stdout}");
    assert!(row("#3 ").ends_with("= same"), "{stdout}");
    assert!(row("#4 ").contains("P.  seq 1 ack 1 win 64240 len 58") && row("#4 ").ends_with("= same"), "{stdout}");
    assert!(row("#8 ").contains("F.  seq 59 ack 227") && row("#8 ").contains("~ win 65535 ["), "{stdout}");
    assert!(stdout.contains("by design: TSval comes from our own clock"), "{stdout}");
    assert!(stdout.contains("6 frames of the host: 2 identical, 4 differ only by design, 0 differ, 0 missing"));
    assert!(stdout.contains("verdict: faithful"), "{stdout}");
    assert!(stdout.contains(&format!("wrote 13 frames (into and out of ustack) to {output}")), "{stdout}");

    // Both directions, on the capture's own clock: the priming ARP, then the 11 segments.
    let written = ustack_netdev::pcap::read_file(&output).unwrap();
    assert_eq!(written.packets.len(), 13);
    let original = ustack_netdev::pcap::read_file(workspace_file("pcaps/03_dns_over_tcp_full_lifecycle.pcap")).unwrap();
    assert_eq!(written.packets[2].ts, original.packets[0].ts, "our SYN at the time of the captured SYN");
    if let Some(list) = tshark(&output) {
        assert_eq!(list.lines().count(), 13, "{list}");
        assert!(list.contains("Standard query 0x4319 A www.tcpdump.org"), "{list}");
        assert!(list.contains("Standard query response 0x4319"), "{list}");
        assert!(list.contains("33779 → 53 [FIN, ACK]") || list.contains("33779 > 53 [FIN, ACK]"), "{list}");
    }
}

#[test]
fn replay_05_as_the_server_without_listener_sends_the_captured_reset() {
    let dir = TempDir::new("replay-05");
    let (code, stdout, stderr, output) = replay("05_tcp_syn_refused_rst.pcapng", &["--as", "192.168.100.1"], &dir);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("nothing listens (the capture's host did not accept the SYN)"), "{stdout}");
    let rst = stdout.lines().find(|l| l.starts_with("#2 ")).unwrap();
    assert!(rst.contains("> R.  seq 0 ack 1 win 0 len 0") && rst.contains("= same"), "{stdout}");
    assert!(stdout.contains("1 frame of the host: 1 identical"), "{stdout}");
    assert_eq!(captured_frames(&output), 4, "the priming ARP exchange, the SYN and the reset");
}

#[test]
fn replay_14_answers_the_echo_requests() {
    let dir = TempDir::new("replay-14");
    let (code, stdout, stderr, output) = replay("14_icmpv4_echo.pcap", &["--as", "74.125.225.99"], &dir);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("gateway at 74.125.225.1 with the capture's router MAC c8:bc:c8:00:00:00"), "{stdout}");
    for (frame, seq) in [("#2 ", 0), ("#4 ", 1)] {
        let row = stdout.lines().find(|l| l.starts_with(frame)).unwrap();
        assert!(row.contains(&format!("ICMP echo reply, id 34844, seq {seq}, length 64")), "{row}");
        assert!(row.contains("~ ttl 64 [") && row.contains("id "), "TTL and IP ID differ, by design: {row}");
    }
    assert!(stdout.contains("the capture shows 56"), "{stdout}");
    assert!(stdout.contains("2 frames of the host: 0 identical, 2 differ only by design, 0 differ, 0 missing"));
    if let Some(list) = tshark(&output) {
        assert_eq!(list.matches("Echo (ping) reply").count(), 2, "{list}");
    }

    // The pinging side: no application can make ustack send an echo request, which the report says.
    let (code, stdout, _, _) = replay("14_icmpv4_echo.pcap", &["--as", "10.0.0.1"], &dir);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("not reproducible") && stdout.contains("no ICMP (ping) sockets"), "{stdout}");
}

#[test]
fn replay_01_both_ends_of_the_handshake() {
    let dir = TempDir::new("replay-01");
    let (code, stdout, _, _) = replay("01_tcp_handshake.pcapng", &["--as", "172.16.16.128"], &dir);
    assert_eq!(code, Some(0), "{stdout}");
    let syn = stdout.lines().find(|l| l.starts_with("#1 ")).unwrap();
    assert!(syn.contains("~ win 64240 [") && syn.contains("wscale 7 [") && syn.contains("TS yes ["), "{syn}");
    assert!(stdout.contains("we offer window shift 7"), "{stdout}");

    let (code, stdout, _, _) = replay("01_tcp_handshake.pcapng", &["--as", "212.58.226.142:80", "--full"], &dir);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("app: listen() on 212.58.226.142:80"), "{stdout}");
    assert!(stdout.contains("app: accept() = the connection from 172.16.16.128:2826"), "{stdout}");
    let syn_ack = stdout.lines().find(|l| l.starts_with("#2 ")).unwrap();
    assert!(syn_ack.contains("~ S.  seq 0 ack 1 win 64240 <mss 1460,sackOK,wscale 7> len 0"), "{syn_ack}");
    assert!(syn_ack.contains("mss 1460 ["), "{syn_ack}");
}

#[test]
fn replay_checksums_addresses_and_bad_arguments() {
    let dir = TempDir::new("replay-misc");
    // Fixture 02's server frames carry offloaded checksums: as captured, the stack drops them.
    let (code, stdout, stderr, _) = replay("02_http_ipv4_ipv6_full_lifecycle.pcapng", &["--as", "172.16.16.140"], &dir);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("checksum wrong as captured: injected so, the stack drops it"), "{stdout}");
    assert!(stdout.contains("--fix-checksums"), "{stdout}");
    assert!(stderr.starts_with("ustack: ustack differs from the capture's host in 5 ways"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1);
    let (code, stdout, _, _) =
        replay("02_http_ipv4_ipv6_full_lifecycle.pcapng", &["--as", "172.16.16.140", "--fix-checksums"], &dir);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("checksum wrong as captured: repaired"), "{stdout}");
    assert!(stdout.contains("#11-#20 (IPv6: ustack is IPv4-only)"), "{stdout}");

    // The stack at another address: the capture's is rewritten in every frame.
    let (code, stdout, _, output) = replay("16_udp_dns_query_response.pcap", &["--local", "10.1.2.3"], &dir);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("the capture's 209.87.249.18 is rewritten to 10.1.2.3"), "{stdout}");
    assert!(stdout.contains("app: sendto() 224 bytes from :53 to 192.168.1.11:43966"), "{stdout}");
    if let Some(list) = tshark(&output) {
        assert!(list.contains("10.1.2.3 → 192.168.1.11") || list.contains("10.1.2.3 -> 192.168.1.11"), "{list}");
        assert!(list.contains("Standard query response 0x5934"), "{list}");
    }

    let out = ustack(&["replay", &workspace_file("pcaps/03_dns_over_tcp_full_lifecycle.pcap")]);
    assert_eq!(out.status.code(), Some(2), "--as or --local is required");
    let out = ustack(&["replay", &workspace_file("pcaps/03_dns_over_tcp_full_lifecycle.pcap"), "--as", "10.9.9.9"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("10.9.9.9 does not appear in") && stderr.contains("192.168.1.11, 209.87.249.18"));
    let missing = dir.file("nothing.pcap");
    let out = ustack(&["replay", &missing, "--as", "10.0.0.1"]);
    assert_eq!(text(&out.stderr).trim(), format!("ustack: there is no capture file at {missing}"));
    let out = ustack(&["replay", &workspace_file("pcaps/03_dns_over_tcp_full_lifecycle.pcap"), "--as", "1.2.3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is not an IPv4 address"), "{}", text(&out.stderr));
}
