//! Every input a fuzzer ever crashed on, replayed as a plain test on stable Rust (no libFuzzer):
//! `cargo test --manifest-path fuzz/Cargo.toml`.
//!
//! Each crash is saved as `regressions/<target>/<name>.bin`, with `<name>.txt` (what the input decodes to
//! and the panic it caused) and `<name>.pcap` (every frame in and out, up to the failure). A named test below
//! pins each one; `every_saved_input_passes` also replays whatever else is in `regressions/` and `seeds/`.
//!
//! Bugs found in the stack and not fixed yet are numbered ("known bug N", see `README.md`): the harness steers
//! around them while fuzzing (`ustack_fuzz::actions::avoid_known_bug`), and their tests are `#[ignore]`d, so
//! `cargo test -- --ignored` shows them failing. Whoever fixes bug N removes the `#[ignore]` here and the
//! `avoid_known_bug(N)` guard in `src/actions.rs`.

use std::path::{Path, PathBuf};
use ustack_fuzz::replay;

fn dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(sub)
}

/// Runs one saved input; on failure writes its pcap next to the test binary's output and panics.
fn replay_file(target: &str, path: &Path) {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (result, cap) = replay::run(target, &data);
    if let Err(msg) = result {
        let out = std::env::temp_dir()
            .join(format!("ustack-fuzz-{}.pcap", path.file_stem().and_then(|s| s.to_str()).unwrap_or("input")));
        let _ = cap.write_to(&out);
        panic!("{target} fails on {}: {msg}\n(capture of {} frames: {})", path.display(), cap.frames(), out.display());
    }
}

fn inputs(sub: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir(sub)).map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    files.retain(|p| p.is_file() && !matches!(p.extension().and_then(|e| e.to_str()), Some("txt" | "pcap" | "md")));
    // The committed seed corpus of `actions` is large: CI's fuzzing run replays all of it; here a sample.
    if sub.starts_with("seeds/") && files.len() > 400 {
        let step = files.len() / 400 + 1;
        files = files.into_iter().step_by(step).collect();
    }
    files.sort();
    files
}

/// Replays `regressions/<target>/<name>.bin` with the harness no longer steering around known bug `bug`.
fn known_bug(target: &str, name: &str, bug: u32) {
    ustack_fuzz::actions::set_unguarded_bugs(1 << bug);
    replay_file(target, &dir(&format!("regressions/{target}/{name}.bin")));
}

/// Fixed bug 1 (`Stack::epoll_wait`, stack/src/socket/epoll_calls.rs): `epoll_wait` on a descriptor that is
/// not an epoll instance takes the socket out of the table and drops it: the descriptor answers EBADF
/// from then on, yet stays counted as open (and its port stays bound).
#[test]
fn epoll_wait_on_udp_socket_drops_it() {
    known_bug("actions", "epoll-wait-on-udp-socket-drops-it", 1);
}

/// Fixed bug 2 (`Stack::tcp_disconnect`, stack/src/socket/tcp_calls.rs): `connect(AF_UNSPEC)` on a listening
/// socket turns the descriptor into a fresh socket but leaves the listener in the TCP layer: it goes on
/// answering SYNs, and connections in its accept queue can never be accepted or closed (here one sits in
/// CLOSE-WAIT forever).
#[test]
fn disconnect_listener_leaks_it() {
    known_bug("actions", "disconnect-listener-leaks-it", 2);
}

/// Fixed bug 3 (`Connection::on_timer`, stack/src/tcp/connection.rs): the persist timer probes a zero window
/// forever; it never gives up on a peer that does not answer (Linux aborts after tcp_retries2 probes, or
/// tcp_orphan_retries for an orphan), so a closed socket's connection outlives a day of silence.
#[test]
fn persist_timer_never_gives_up() {
    known_bug("actions", "persist-timer-never-gives-up", 3);
}

/// Fixed bug 4 (`Stack::tcp_connect`, stack/src/socket/tcp_calls.rs): a TCP socket bound to 127.0.0.1 that
/// connects to a non-loopback address sends its SYN from the interface address with a checksum computed
/// over 127.0.0.1 (a corrupt segment; Linux refuses the connect with EINVAL).
#[test]
fn connect_from_loopback_bound_socket() {
    known_bug("actions", "connect-from-loopback-bound-socket", 4);
}

/// Fixed bug 5 (`Stack::poll`, stack/src/iface/mod.rs, with `Connection::on_segment`, stack/src/tcp/input.rs):
/// a socket connected to itself (bound to 198.18.0.1:80 after the listener closed, then connected to
/// 198.18.0.1:80: a simultaneous open with itself, as Linux allows) that sends more than it reads ends up
/// answering its own out-of-window ACKs with ACKs, forever; `poll` drains the loopback queue including what
/// it queued itself, so it never returns (and memory grows without bound). Replayed on a thread with a
/// deadline, since the call does not return.
#[test]
fn self_connected_socket_ack_loop() {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        known_bug("actions", "self-connected-socket-ack-loop", 5);
        let _ = done_tx.send(());
    });
    match done_rx.recv_timeout(std::time::Duration::from_secs(10)) {
        Ok(()) => {}
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("Stack::poll did not return within 10 s"),
        Err(e) => panic!("the replay failed: {e}"),
    }
}

/// A harness bug, kept as a regression: once bug 2 was fixed, the listener's descriptor could become a client
/// (`connect(AF_UNSPEC)`, then `connect()`), and the harness had no stream record for the descriptors it opened
/// during setup, so it mistook its own second `send()` for data the stack had garbled.
#[test]
fn listener_fd_reused_for_connect() {
    replay_file("actions", &dir("regressions/actions/listener-fd-reused-for-connect.bin"));
}

/// A harness limit, kept as a regression: a bulk transfer between two local sockets moves one round per poll,
/// so it takes more polls at one instant than the harness first allowed before calling it a spin.
#[test]
fn loopback_transfer_takes_many_polls() {
    replay_file("actions", &dir("regressions/actions/loopback-transfer-takes-many-polls.bin"));
}

#[test]
fn every_saved_input_passes() {
    let mut n = 0;
    for target in replay::TARGETS {
        for sub in [format!("regressions/{target}"), format!("seeds/{target}")] {
            for path in inputs(&sub) {
                replay_file(target, &path);
                n += 1;
            }
        }
    }
    eprintln!("replayed {n} saved inputs");
}

#[test]
fn empty_inputs_pass() {
    for target in replay::TARGETS {
        let (result, _) = replay::run(target, &[]);
        result.unwrap();
    }
}

#[test]
fn setup_establishes_a_connection() {
    let mut w = ustack_fuzz::actions::World::new(None);
    let rows = w.d.stack.sockets_snapshot(w.now());
    assert!(rows.iter().any(|r| r.state == "ESTAB" && r.proto == "tcp"), "{rows:#?}");
    assert!(rows.iter().any(|r| r.state == "LISTEN"), "{rows:#?}");
    w.check();
}
