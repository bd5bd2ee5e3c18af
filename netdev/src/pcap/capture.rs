//! Recording every frame a device moves, for debugging with Wireshark.

use std::fs::File;
use std::io::{self, BufWriter};
use std::os::fd::RawFd;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{LinkType, Writer};
use crate::{Device, FrameBatch};

/// A clock giving capture timestamps.
pub type Clock = Box<dyn FnMut() -> Duration + Send>;

/// A device wrapper that writes every received and every sent frame to a pcap file (Ethernet link type).
///
/// Frames are written after the inner device received them and before it sends them, so a capture also shows
/// frames the link then dropped. A failing capture file never disturbs the traffic: write errors are logged once
/// and counted, and [`Capture::flush`] reports the state of the file.
pub struct Capture<D: Device> {
    inner: D,
    recorder: Recorder,
}

/// The writing half, separate so that it can flush on drop while [`Capture::into_inner`] still moves the
/// device out.
struct Recorder {
    writer: Writer<BufWriter<File>>,
    clock: Clock,
    write_errors: u64,
}

impl Recorder {
    fn record(&mut self, frame: &[u8]) {
        let ts = (self.clock)();
        if let Err(err) = self.writer.write_packet(ts, frame) {
            if self.write_errors == 0 {
                tracing::warn!(%err, "pcap capture write failed; the capture file is incomplete");
            }
            self.write_errors += 1;
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Err(err) = self.writer.flush() {
            tracing::warn!(%err, "pcap capture flush failed on close");
        }
    }
}

impl<D: Device> Capture<D> {
    /// Wraps `dev`, writing frames to `writer` with timestamps from `clock` (for example a simulation's
    /// virtual clock).
    pub fn new(dev: D, writer: Writer<BufWriter<File>>, clock: Clock) -> Self {
        Capture { inner: dev, recorder: Recorder { writer, clock, write_errors: 0 } }
    }

    /// Wraps `dev`, writing to a new file at `path` with wall-clock timestamps.
    pub fn with_wall_clock(dev: D, path: impl AsRef<Path>) -> io::Result<Self> {
        let writer = Writer::create(path, LinkType::Ethernet)?;
        let clock: Clock = Box::new(|| SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default());
        Ok(Capture::new(dev, writer, clock))
    }

    /// Flushes buffered packets to the file.
    pub fn flush(&mut self) -> io::Result<()> {
        self.recorder.writer.flush()
    }

    /// How many frames could not be written.
    pub fn write_errors(&self) -> u64 {
        self.recorder.write_errors
    }

    /// The wrapped device.
    pub fn get_ref(&self) -> &D {
        &self.inner
    }

    /// The wrapped device, mutable (frames moved through it directly are not captured).
    pub fn get_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    /// Flushes and closes the capture, giving back the device.
    pub fn into_inner(self) -> D {
        let Capture { inner, recorder } = self;
        drop(recorder);
        inner
    }
}

impl<D: Device> Device for Capture<D> {
    fn mtu(&self) -> usize {
        self.inner.mtu()
    }

    fn max_frame_len(&self) -> usize {
        self.inner.max_frame_len()
    }

    fn hardware_addr(&self) -> Option<[u8; 6]> {
        self.inner.hardware_addr()
    }

    fn recv_batch(&mut self, batch: &mut FrameBatch) -> io::Result<usize> {
        let before = batch.len();
        let received = self.inner.recv_batch(batch)?;
        for frame in batch.iter().skip(before) {
            self.recorder.record(frame);
        }
        Ok(received)
    }

    fn send_batch(&mut self, batch: &mut FrameBatch) -> io::Result<usize> {
        for frame in batch.iter() {
            self.recorder.record(frame);
        }
        self.inner.send_batch(batch)
    }

    fn pollable_fd(&self) -> Option<RawFd> {
        self.inner.pollable_fd()
    }
}

impl<D: Device + std::fmt::Debug> std::fmt::Debug for Capture<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("inner", &self.inner)
            .field("link_type", &self.recorder.writer.link_type())
            .field("write_errors", &self.recorder.write_errors)
            .finish()
    }
}
