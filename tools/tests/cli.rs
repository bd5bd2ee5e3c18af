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
