//! The real captures in `pcaps/` at the workspace root.

use std::path::PathBuf;
use ustack_netdev::pcap::{self, CaptureFile};

/// Path of a fixture under `pcaps/` (for example `"13_arp_request_reply.pcap"` or `"extras/x1_..."`).
pub fn path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("pcaps").join(name)
}

/// Reads a fixture.
pub fn load(name: &str) -> CaptureFile {
    pcap::read_file(path(name)).unwrap_or_else(|e| panic!("cannot read fixture {name}: {e}"))
}
