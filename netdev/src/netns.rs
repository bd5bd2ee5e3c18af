//! Running code inside a named network namespace (the ones `ip netns add` creates).
//!
//! A network namespace is a property of a thread, and file descriptors keep the namespace they were created in.
//! So a short-lived thread can enter a namespace, open a TAP, a packet socket or a kernel socket there, and hand
//! the descriptor back to a thread that never left the original namespace.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

/// Where iproute2 keeps named network namespaces.
const NETNS_DIR: &str = "/var/run/netns";

/// Runs `f` on a new (scoped) thread that has first entered the network namespace `/var/run/netns/NAME`, and
/// returns its result. The calling thread's namespace is unchanged. A panic in `f` is passed on to the caller.
pub fn run_in_namespace<R: Send>(name: &str, f: impl FnOnce() -> R + Send) -> io::Result<R> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cannot enter network namespace {name:?}: not a valid namespace name"),
        ));
    }
    let path: PathBuf = [NETNS_DIR, name].iter().collect();
    let ns = File::open(&path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot enter network namespace {name:?}: cannot open {}: {e}", path.display()),
        )
    })?;
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new().name(format!("netns-{name}")).spawn_scoped(scope, move || {
            // SAFETY: setns() takes a descriptor we own (kept open by `ns` for the call) and a constant; it only
            // changes the calling thread's network namespace.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
                let err = io::Error::last_os_error();
                let hint = match err.raw_os_error() {
                    Some(libc::EPERM) => " (needs CAP_SYS_ADMIN, e.g. root)",
                    _ => "",
                };
                return Err(io::Error::new(
                    err.kind(),
                    format!("cannot enter network namespace {name:?}: setns failed{hint}: {err}"),
                ));
            }
            drop(ns);
            Ok(f())
        })?;
        match thread.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{is_root, NetNs};

    fn current_netns() -> String {
        std::fs::read_link("/proc/thread-self/ns/net").map(|p| p.display().to_string()).unwrap_or_default()
    }

    #[test]
    fn missing_namespace_is_a_clear_error() {
        let err = run_in_namespace("ustack-no-such-ns", || ()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("ustack-no-such-ns"), "{err}");
        assert_eq!(run_in_namespace("../etc", || ()).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn runs_inside_and_sockets_stay_there() {
        if !is_root() {
            println!("SKIPPED: netns test needs root");
            return;
        }
        let ns = NetNs::create().unwrap();
        let outside = current_netns();
        let (inside, socket) = run_in_namespace(ns.name(), || {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            (current_netns(), socket)
        })
        .unwrap();
        assert_ne!(inside, outside);
        assert_eq!(current_netns(), outside, "the caller's namespace is unchanged");
        // The socket still lives in the namespace: it can talk to itself over the namespace's loopback.
        let addr = socket.local_addr().unwrap();
        socket.send_to(b"ping", addr).unwrap();
        let mut buf = [0u8; 8];
        socket.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
        assert_eq!(socket.recv_from(&mut buf).unwrap().0, 4);
        // A panic inside is passed on.
        let caught = std::panic::catch_unwind(|| {
            run_in_namespace(ns.name(), || panic!("deliberate panic inside the namespace (this test expects it)"))
        });
        assert!(caught.is_err());
    }
}
