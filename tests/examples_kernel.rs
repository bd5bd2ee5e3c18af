//! The examples of `stack/examples/` run as programs against the Linux kernel, as a user would run them: each
//! test makes a private namespace with a TAP device `tap0` (kernel 198.18.0.1/24), starts the example's binary
//! on it (`--netns NS --tap tap0 --ip 198.18.0.2/24`), and plays the kernel's side:
//!
//! - `epoll_echo`: a thousand concurrent kernel clients (`USTACK_EXAMPLE_CONNS`), each echoing some KB
//!   (`USTACK_EXAMPLE_BYTES`), verified byte for byte;
//! - `blocking_echo` and `tokio_echo`: kernel clients likewise;
//! - `tokio_http_get`: `python3 -m http.server` in the namespace serves a file of known SHA-256;
//! - `tokio_udp`: a kernel UDP requester for the server mode and a kernel responder for the client mode.
//!
//! The binaries are not built here (no cargo inside a test). `cargo test --workspace` builds every example
//! before it runs any test, and `.ci/run` builds them explicitly first with
//! `cargo build --workspace --examples --profile test` (the same artifacts, so no second build); by hand,
//! `cargo build -p ustack --examples --features tokio` does too. They are looked for in
//! `target/<profile>/examples/` next to this test's binary (or in `USTACK_EXAMPLES_DIR`), and a binary older
//! than any of its sources is refused rather than run.
//!
//! Needs root and `/dev/net/tun` and skips otherwise. Every child process is killed and every namespace removed
//! on every path (guards); every wait has a deadline; no assertion is about how long something took.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use ustack_netdev::namespace::{kernel_peer_available, Namespace};
use ustack_tests::kernel_tcp_util::{env_usize, PatternStream};
use ustack_tests::poll_conns::{connect_many, run_echo_clients};

const KERNEL_IP: &str = "198.18.0.1";
const STACK_CIDR: &str = "198.18.0.2/24";
const STACK_IP: &str = "198.18.0.2";
/// How long an example may take to open its TAP and say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an example may take to exit once its work is done.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

fn skip(test: &str) -> bool {
    if kernel_peer_available() {
        return false;
    }
    println!("SKIPPED: {test} needs root and /dev/net/tun");
    true
}

/// Where the example binaries are: `USTACK_EXAMPLES_DIR`, or `examples/` beside the `deps/` holding this test.
fn examples_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("USTACK_EXAMPLES_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/examples_kernel-HASH -> target/<profile>/examples
    exe.parent().and_then(Path::parent).map(|p| p.join("examples")).expect("the test binary is in target/*/deps")
}

/// The example's binary; panics with what to run when it has not been built, or was built before one of its
/// sources last changed (a stale binary would test old code). The sources are those cargo's dep-info file
/// beside the binary lists, so the check agrees with cargo's own idea of what needs rebuilding.
fn example_binary(name: &str) -> PathBuf {
    let path = examples_dir().join(name);
    let rebuild = "cargo build -p ustack --examples --features tokio";
    let built = std::fs::metadata(&path).and_then(|m| m.modified()).unwrap_or_else(|e| {
        panic!("example binary {} is missing ({e}); build the examples first: {rebuild}", path.display())
    });
    let dep_info = std::fs::read_to_string(path.with_extension("d")).unwrap_or_default();
    // `TARGET: SOURCE SOURCE ...` (paths with spaces are escaped; ours have none).
    let sources = dep_info.lines().next().and_then(|l| l.split_once(": ")).map_or("", |(_, s)| s);
    for source in sources.split_whitespace().map(Path::new) {
        if let Ok(changed) = std::fs::metadata(source).and_then(|m| m.modified()) {
            assert!(
                changed <= built,
                "example binary {} is older than {}; rebuild: {rebuild}",
                path.display(),
                source.display()
            );
        }
    }
    path
}

/// A namespace with `tap0` (kernel 198.18.0.1/24), removed when dropped.
fn namespace() -> Namespace {
    let ns = Namespace::create("ustk-ex").unwrap_or_else(|e| panic!("cannot create a namespace: {e}"));
    ns.add_tap("tap0", &format!("{KERNEL_IP}/24")).unwrap_or_else(|e| panic!("cannot add tap0: {e}"));
    ns
}

/// A running child process whose output is collected line by line; killed and reaped when dropped.
struct Proc {
    what: String,
    child: Child,
    lines: Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn spawn(what: &str, mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let (tx, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>);
        let stderr = child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>);
        for (pipe, prefix) in [(stdout, ""), (stderr, "stderr: ")] {
            let Some(pipe) = pipe else { continue };
            let (tx, log) = (tx.clone(), Arc::clone(&log));
            // Ends when the pipe closes, that is when the child is gone.
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    log.lock().unwrap_or_else(|p| p.into_inner()).push(format!("{prefix}{line}"));
                    let _ = tx.send(line);
                }
            });
        }
        Proc { what: what.to_string(), child, lines, log }
    }

    /// Starts the example `name` on the namespace's `tap0` with `args` after the stack options.
    fn example(name: &str, ns: &Namespace, args: &[&str]) -> Proc {
        let mut cmd = Command::new(example_binary(name));
        cmd.args(args).args(["--netns", ns.name(), "--tap", "tap0", "--ip", STACK_CIDR]);
        Proc::spawn(name, cmd)
    }

    /// Waits for an output line containing `needle`; panics with the output so far after `timeout`.
    fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{} printed no line with {needle:?} in {timeout:?}:\n{}", self.what, self.output())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_millis(50));
                    panic!("{} ended without printing {needle:?}:\n{}", self.what, self.output())
                }
            }
        }
    }

    /// Waits for the process to exit by itself; `None` after `timeout`.
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        for _ in 0..(timeout.as_millis() / 20 + 2) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Waits for a clean exit and returns the whole output; panics with the output otherwise.
    fn expect_success(&mut self, timeout: Duration) -> String {
        let status = self.wait_exit(timeout);
        // Let the reader threads take the last lines.
        std::thread::sleep(Duration::from_millis(100));
        let output = self.output();
        match status {
            Some(s) if s.success() => output,
            Some(s) => panic!("{} failed ({s}):\n{output}", self.what),
            None => panic!("{} did not exit within {timeout:?}:\n{output}", self.what),
        }
    }

    fn output(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last output line containing `needle`.
fn line_with<'a>(output: &'a str, needle: &str) -> &'a str {
    output.lines().rev().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("no line with {needle:?} in:\n{output}"))
}

/// The kernel's view of the link, for the log: tap0's packet and drop counts, and the kernel's TCP counters
/// that tell how losses were recovered (`nstat` from iproute2, when present).
fn kernel_link_report(ns: &Namespace) -> String {
    let mut report = String::new();
    if let Ok(out) = ns.exec("ip", &["-s", "link", "show", "dev", "tap0"]) {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        // The lines after "RX:" and "TX:" headers hold bytes, packets, errors, dropped, ...
        let mut lines = text.lines().map(str::trim);
        while let Some(line) = lines.next() {
            if let Some(dir) = ["RX:", "TX:"].iter().find(|d| line.starts_with(**d)) {
                let values: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
                if values.len() >= 4 {
                    report += &format!("kernel tap0 {} packets {} dropped {}; ", &dir[..2], values[1], values[3]);
                }
            }
        }
    }
    let names = [
        "TcpRetransSegs",
        "TcpExtTCPTimeouts",
        "TcpExtTCPLossProbes",
        "TcpExtTCPFastRetrans",
        "TcpExtTCPOFOQueue",
        "TcpExtTCPRcvQDrop",
    ];
    if let Ok(out) = ns.exec("nstat", &["-a", "-s", "-z"]) {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if let (Some(name), Some(value)) = (words.next(), words.next()) {
                if names.contains(&name) {
                    report += &format!("{name} {value}, ");
                }
            }
        }
    }
    report.trim_end_matches([',', ';', ' ']).to_string()
}

/// Runs kernel echo clients against the echo example `name` and checks what it reports.
fn echo_example_with_kernel_clients(name: &str, conns: usize, bytes: usize) {
    let ns = namespace();
    let port = "7007";
    let exit_after = conns.to_string();
    let mut server = Proc::example(name, &ns, &["--port", port, "--exit-after", &exit_after]);
    server.wait_for("listening on", READY_TIMEOUT);
    let addr: SocketAddr = format!("{STACK_IP}:{port}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120 + (conns * bytes / 100_000) as u64);

    let streams = connect_many(&ns, addr, conns, Duration::from_secs(20), deadline)
        .unwrap_or_else(|e| panic!("{e}\n{name} output:\n{}", server.output()));
    println!("{name}: {conns} kernel connections open at once");
    let stats = run_echo_clients(streams, bytes, 0x5eed, deadline)
        .unwrap_or_else(|e| panic!("{e}\n{}\n{name} output:\n{}", kernel_link_report(&ns), server.output()));
    println!("{name}: {}", kernel_link_report(&ns));
    let output = server.expect_success(EXIT_TIMEOUT);
    let summary = line_with(&output, "served ");
    println!("{name}: {summary}");
    println!("{name}: {}", line_with(&output, "counters: "));
    println!("{name}: {} connections x {bytes} bytes echoed and verified in {:.1} s", stats.connections, stats.seconds);
    assert!(summary.starts_with(&format!("served {conns} connections (0 failed)")), "{output}");
    assert!(summary.contains(&format!("echoed {} bytes", stats.bytes)), "{output}");
}

#[test]
fn epoll_echo_serves_a_thousand_concurrent_kernel_clients() {
    if skip("epoll_echo_serves_a_thousand_concurrent_kernel_clients") {
        return;
    }
    let conns = env_usize("USTACK_EXAMPLE_CONNS", 1000);
    let bytes = env_usize("USTACK_EXAMPLE_BYTES", 16 * 1024);
    echo_example_with_kernel_clients("epoll_echo", conns, bytes);
}

#[test]
fn blocking_echo_serves_kernel_clients() {
    if skip("blocking_echo_serves_kernel_clients") {
        return;
    }
    echo_example_with_kernel_clients("blocking_echo", 50, 64 * 1024);
}

#[test]
fn tokio_echo_serves_kernel_clients() {
    if skip("tokio_echo_serves_kernel_clients") {
        return;
    }
    let conns = env_usize("USTACK_EXAMPLE_CONNS", 1000);
    let bytes = env_usize("USTACK_EXAMPLE_BYTES", 16 * 1024);
    echo_example_with_kernel_clients("tokio_echo", conns, bytes);
}

/// `python3 -m http.server` in the namespace, killed when dropped.
fn python_http_server(ns: &Namespace, port: u16, dir: &Path) -> Option<Proc> {
    let works = Command::new("python3").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !works.is_ok_and(|s| s.success()) {
        return None;
    }
    let mut cmd = Command::new("ip");
    let port = port.to_string();
    cmd.args(["netns", "exec", ns.name(), "python3", "-u", "-m", "http.server", &port, "--bind", KERNEL_IP]);
    cmd.arg("--directory").arg(dir);
    Some(Proc::spawn("python3 -m http.server", cmd))
}

/// Waits until something accepts TCP connections on `addr` inside `ns`.
fn wait_for_kernel_listener(ns: &Namespace, addr: SocketAddr, server: &Proc) {
    let deadline = Instant::now() + READY_TIMEOUT;
    for _ in 0..(READY_TIMEOUT.as_millis() / 50) {
        let up = ns.enter(|| std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok());
        if up.unwrap_or(false) {
            return;
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("nothing listens on {addr}:\n{}", server.output());
}

/// A temporary directory, removed with its contents when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(stem: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("ustack-{stem}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn tokio_http_get_fetches_from_a_kernel_http_server() {
    if skip("tokio_http_get_fetches_from_a_kernel_http_server") {
        return;
    }
    let size = env_usize("USTACK_EXAMPLE_HTTP_BYTES", 3_000_017);
    let dir = TempDir::new("http");
    std::fs::create_dir_all(dir.0.join("bytes")).unwrap();
    let mut body = vec![0u8; size];
    PatternStream::new(0x4854_5450).fill(&mut body);
    std::fs::write(dir.0.join("bytes").join(size.to_string()), &body).unwrap();
    let expected: String = Sha256::digest(&body).iter().map(|b| format!("{b:02x}")).collect();

    let ns = namespace();
    let port = 8000;
    let Some(server) = python_http_server(&ns, port, &dir.0) else {
        println!("SKIPPED: tokio_http_get_fetches_from_a_kernel_http_server needs python3");
        return;
    };
    wait_for_kernel_listener(&ns, format!("{KERNEL_IP}:{port}").parse().unwrap(), &server);

    let url = format!("http://{KERNEL_IP}:{port}/bytes/{size}");
    let mut client = Proc::example("tokio_http_get", &ns, &[&url, "--timeout", "120"]);
    let output = client.expect_success(Duration::from_secs(150));
    println!("{output}");
    assert_eq!(line_with(&output, "sha256 "), format!("sha256 {expected}"), "{output}");
    assert_eq!(line_with(&output, "Content-Length: "), format!("Content-Length: {size}"), "{output}");
    assert!(line_with(&output, "received ").starts_with(&format!("received {size} bytes of body")), "{output}");
    drop(server);
}

fn answer(request: &[u8]) -> Vec<u8> {
    [b"re: ".as_slice(), request].concat()
}

#[test]
fn tokio_udp_server_answers_kernel_requests() {
    if skip("tokio_udp_server_answers_kernel_requests") {
        return;
    }
    let count = 100;
    let ns = namespace();
    let mut server = Proc::example("tokio_udp", &ns, &["server", "--port", "5353", "--exit-after", &count.to_string()]);
    server.wait_for("answering on", READY_TIMEOUT);
    let sock = ns.enter(|| UdpSocket::bind(format!("{KERNEL_IP}:0"))).unwrap().unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let to: SocketAddr = format!("{STACK_IP}:5353").parse().unwrap();
    let mut buf = [0u8; 2048];
    let mut sent = 0;
    for i in 0..count {
        let request = format!("kernel request {i}");
        let mut got = false;
        for _ in 0..3 {
            sock.send_to(request.as_bytes(), to).unwrap();
            sent += 1;
            let deadline = Instant::now() + Duration::from_secs(2);
            while !got && Instant::now() < deadline {
                match sock.recv_from(&mut buf) {
                    Ok((n, from)) => got = from == to && buf[..n] == answer(request.as_bytes())[..],
                    Err(_) => break,
                }
            }
            if got {
                break;
            }
        }
        assert!(got, "no answer to {request:?} (after {sent} datagrams sent):\n{}", server.output());
    }
    if sent > count {
        // A request was sent again, so the server counted it twice and stopped early; the answers were all
        // seen, which is what matters. (It is killed on drop.)
        println!("tokio_udp server: all {count} requests answered ({sent} datagrams sent)");
        return;
    }
    let output = server.expect_success(EXIT_TIMEOUT);
    println!("tokio_udp server: {}", line_with(&output, "answered "));
    assert_eq!(line_with(&output, "answered "), format!("answered {count} requests"), "{output}");
}

#[test]
fn tokio_udp_client_gets_kernel_answers() {
    if skip("tokio_udp_client_gets_kernel_answers") {
        return;
    }
    let count = 100;
    let ns = namespace();
    let sock = ns.enter(|| UdpSocket::bind(format!("{KERNEL_IP}:5300"))).unwrap().unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    // The kernel responder, on a thread that stops when the flag is set (or after two minutes).
    let stop = Arc::new(AtomicBool::new(false));
    let responder = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut answered = 0usize;
            let deadline = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                if let Ok((n, from)) = sock.recv_from(&mut buf) {
                    if sock.send_to(&answer(&buf[..n]), from).is_ok() {
                        answered += 1;
                    }
                }
            }
            answered
        })
    };
    struct StopOnDrop(Arc<AtomicBool>);
    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let guard = StopOnDrop(Arc::clone(&stop));
    let server = format!("{KERNEL_IP}:5300");
    let count_s = count.to_string();
    let mut client = Proc::example("tokio_udp", &ns, &["client", "--server", &server, "--count", &count_s]);
    let output = client.expect_success(Duration::from_secs(120));
    drop(guard);
    let answered = responder.join().expect("the responder thread");
    println!(
        "tokio_udp client: {} (the kernel answered {answered} datagrams)",
        line_with(&output, "requests answered")
    );
    if answered > count {
        // Some request was sent again: show why (the client says what it waited for or skipped).
        let noted: Vec<&str> = output.lines().filter(|l| l.contains("try") || l.contains("skipping")).collect();
        println!("tokio_udp client: requests sent again:\n{}", noted.join("\n"));
    }
    assert_eq!(line_with(&output, "requests answered"), format!("{count} of {count} requests answered"), "{output}");
    assert!(answered >= count, "the kernel answered only {answered} datagrams");
}
