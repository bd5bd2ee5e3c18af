//! An in-memory pcap of every frame a run fed to the stack and every frame the stack sent, stamped with the
//! run's virtual time, written with netdev's pcap writer so that a failing input can be opened in Wireshark.

use std::io;
use std::path::Path;
use ustack::Instant;
use ustack_netdev::pcap::{LinkType, Writer};

/// Frames of one run, in order.
#[derive(Debug)]
pub struct Capture {
    writer: Writer<Vec<u8>>,
    frames: usize,
}

impl Default for Capture {
    fn default() -> Self {
        Capture::new()
    }
}

impl Capture {
    pub fn new() -> Self {
        Capture { writer: Writer::new(Vec::new(), LinkType::Ethernet).expect("writing to memory"), frames: 0 }
    }

    /// Records one frame seen at `now` (in either direction).
    pub fn record(&mut self, now: Instant, frame: &[u8]) {
        self.writer.write_packet(now.since_origin(), frame).expect("writing to memory");
        self.frames += 1;
    }

    /// Frames recorded.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The pcap file's bytes.
    pub fn bytes(&self) -> &[u8] {
        self.writer.get_ref()
    }

    /// Writes the pcap file.
    pub fn write_to(&self, path: impl AsRef<Path>) -> io::Result<()> {
        std::fs::write(path, self.bytes())
    }
}

/// Records into `cap` when there is one.
pub(crate) fn record(cap: &mut Option<&mut Capture>, now: Instant, frame: &[u8]) {
    if let Some(c) = cap.as_deref_mut() {
        c.record(now, frame);
    }
}
