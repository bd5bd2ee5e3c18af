//! Classic pcap output with nanosecond timestamps.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::Duration;

use super::LinkType;

/// Magic number of classic pcap with nanosecond timestamps.
pub(crate) const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// The largest packet a capture keeps (tcpdump's default snaplen).
pub(crate) const SNAPLEN: u32 = 262_144;

/// Writes packets to a classic pcap stream (native byte order, nanosecond timestamps, snaplen 262144).
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
    link_type: LinkType,
}

impl Writer<BufWriter<File>> {
    /// Creates (or truncates) the file at `path` and writes the pcap header.
    pub fn create(path: impl AsRef<Path>, link_type: LinkType) -> io::Result<Self> {
        let path = path.as_ref();
        let file = File::create(path)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot create capture file {}: {e}", path.display())))?;
        Writer::new(BufWriter::new(file), link_type)
    }
}

impl<W: Write> Writer<W> {
    /// Writes the pcap file header to `out` and returns a writer for the packets.
    pub fn new(mut out: W, link_type: LinkType) -> io::Result<Self> {
        let mut header = [0u8; 24];
        header[0..4].copy_from_slice(&MAGIC_NANOS.to_ne_bytes());
        header[4..6].copy_from_slice(&2u16.to_ne_bytes()); // version 2.4
        header[6..8].copy_from_slice(&4u16.to_ne_bytes());
        // 8..16: thiszone and sigfigs, always 0.
        header[16..20].copy_from_slice(&SNAPLEN.to_ne_bytes());
        header[20..24].copy_from_slice(&link_type.to_u32().to_ne_bytes());
        out.write_all(&header)?;
        Ok(Writer { out, link_type })
    }

    /// The link type given at creation.
    pub fn link_type(&self) -> LinkType {
        self.link_type
    }

    /// Appends one packet captured at `ts` (time since the UNIX epoch, or since the start of a simulation).
    /// Packets longer than the snaplen are cut, keeping their original length in the record.
    pub fn write_packet(&mut self, ts: Duration, data: &[u8]) -> io::Result<()> {
        let secs = u32::try_from(ts.as_secs()).unwrap_or(u32::MAX);
        let orig_len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let cap_len = orig_len.min(SNAPLEN);
        let mut record = [0u8; 16];
        record[0..4].copy_from_slice(&secs.to_ne_bytes());
        record[4..8].copy_from_slice(&ts.subsec_nanos().to_ne_bytes());
        record[8..12].copy_from_slice(&cap_len.to_ne_bytes());
        record[12..16].copy_from_slice(&orig_len.to_ne_bytes());
        self.out.write_all(&record)?;
        self.out.write_all(&data[..cap_len as usize])
    }

    /// Flushes buffered packets to the underlying stream.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The underlying stream (not flushed).
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// Gives back the underlying stream (not flushed).
    pub fn into_inner(self) -> W {
        self.out
    }
}
