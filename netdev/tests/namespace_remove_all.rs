//! `namespace::remove_all`, for a process about to end on a signal. In its own test binary: afterwards the
//! process may create no namespace, which would break the other tests of a shared one.

use std::process::Command;
use ustack_netdev::namespace::{self, kernel_peer_available, Namespace};

fn listed(name: &str) -> bool {
    let out = Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    String::from_utf8_lossy(&out.stdout).lines().any(|l| l.split_whitespace().next() == Some(name))
}

/// Whatever fails below, nothing this test made outlives it (the leaked namespace included).
struct RemoveAllOnExit;

impl Drop for RemoveAllOnExit {
    fn drop(&mut self) {
        namespace::remove_all();
    }
}

#[test]
fn removes_every_namespace_still_held_and_refuses_new_ones() {
    if !kernel_peer_available() {
        eprintln!("skipped: needs root, /dev/net/tun and iproute2");
        return;
    }
    let _cleanup = RemoveAllOnExit;
    let dropped = Namespace::create("nd-ra").expect("create");
    let dropped_name = dropped.name().to_string();
    drop(dropped);
    let held = Namespace::create("nd-ra").expect("create");
    let leaked = Namespace::create("nd-ra").expect("create");
    let (held_name, leaked_name) = (held.name().to_string(), leaked.name().to_string());
    // As a signal would: the value is never dropped.
    std::mem::forget(leaked);
    assert!(listed(&held_name) && listed(&leaked_name) && !listed(&dropped_name));

    assert_eq!(namespace::remove_all(), 2, "the two still held, not the dropped one");
    assert!(!listed(&held_name) && !listed(&leaked_name));
    let refused = Namespace::create("nd-ra").expect_err("no namespace after remove_all");
    assert_eq!(refused.kind(), std::io::ErrorKind::Interrupted);
    drop(held); // its namespace is gone already: dropping is harmless
    assert_eq!(namespace::remove_all(), 0);
}
