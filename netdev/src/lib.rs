//! Frame devices for ustack.
//!
//! A [`Device`] moves whole Ethernet frames in batches and knows nothing of protocols. The devices here are:
//! - [`tap::Tap`]: a Linux TAP interface (`/dev/net/tun`, `IFF_TAP | IFF_NO_PI`),
//! - [`packet_socket::PacketSocket`]: an `AF_PACKET` socket bound to one interface (for example one end of a
//!   veth pair),
//! - [`pipe::Pipe`]: an in-memory link joining two endpoints, with a seeded fault layer for simulations,
//! - [`pcap::Capture`]: a wrapper that records every frame of any other device into a pcap file.
//!
//! [`pcap`] also reads captures (pcap and pcapng; Ethernet, raw IP and Linux SLL link types), [`fault`] holds the
//! seeded randomness and fault description the pipe uses, and [`netns::run_in_namespace`] opens devices inside a
//! named network namespace.

pub mod batch;
pub mod checksum;
pub mod fault;
pub mod host;
pub mod namespace;
pub mod netns;
pub mod packet_socket;
pub mod pcap;
pub mod pipe;
mod sys;
pub mod tap;
#[cfg(test)]
mod test_support;
pub mod vnet;
pub mod wait;

pub use batch::FrameBatch;

use std::io;
use std::os::fd::RawFd;

/// A link that moves Ethernet frames.
///
/// Both directions work in batches so that one wake-up of the runtime can move many frames with few system
/// calls, and neither direction allocates per frame: frames live in the caller's [`FrameBatch`].
pub trait Device: Send {
    /// The largest IP packet the link carries (the interface MTU, without the 14-byte Ethernet header).
    fn mtu(&self) -> usize;

    /// The device's own hardware address, where the device has one (a TAP's kernel side has its own MAC; the
    /// stack normally uses a different one).
    fn hardware_addr(&self) -> Option<[u8; 6]> {
        None
    }

    /// The largest frame the device exchanges: the MTU plus the Ethernet header, or more for a device with
    /// segmentation offload (a stack may then send TCP super-segments up to this size, and must accept
    /// them). Batches for the device need slots this large.
    fn max_frame_len(&self) -> usize {
        self.mtu() + 14
    }

    /// Receives as many frames as are ready, up to the batch's free slots, without blocking. Returns how many
    /// frames were appended; `Ok(0)` means nothing was ready.
    fn recv_batch(&mut self, batch: &mut FrameBatch) -> io::Result<usize>;

    /// Transmits the frames of `batch` in order and clears it. Returns how many were handed to the link; frames
    /// the link had no room for are dropped (as a NIC drops on a full ring) and not counted.
    fn send_batch(&mut self, batch: &mut FrameBatch) -> io::Result<usize>;

    /// A file descriptor that polls readable when [`Device::recv_batch`] has something to return, where the
    /// device has one.
    fn pollable_fd(&self) -> Option<RawFd>;

    /// True when the device sends a frame given in pieces without first copying them together
    /// ([`Device::send_gathered`]): a TAP hands them to the kernel in one `writev`, so a stack can send a
    /// TCP super-segment's payload from where it lies in the socket's send buffer.
    fn gathers(&self) -> bool {
        false
    }

    /// Sends one frame made of `pieces` in order, at once (not batched: the pieces are borrowed for this
    /// call only). Returns whether the link took it (false: dropped, as on a full ring). Only devices that
    /// [gather](Device::gathers) implement it; the others refuse with `Unsupported`.
    fn send_gathered(&mut self, pieces: &[&[u8]]) -> io::Result<bool> {
        let _ = pieces;
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

impl<D: Device + ?Sized> Device for Box<D> {
    fn mtu(&self) -> usize {
        (**self).mtu()
    }
    fn max_frame_len(&self) -> usize {
        (**self).max_frame_len()
    }
    fn hardware_addr(&self) -> Option<[u8; 6]> {
        (**self).hardware_addr()
    }
    fn recv_batch(&mut self, batch: &mut FrameBatch) -> io::Result<usize> {
        (**self).recv_batch(batch)
    }
    fn send_batch(&mut self, batch: &mut FrameBatch) -> io::Result<usize> {
        (**self).send_batch(batch)
    }
    fn pollable_fd(&self) -> Option<RawFd> {
        (**self).pollable_fd()
    }
    fn gathers(&self) -> bool {
        (**self).gathers()
    }
    fn send_gathered(&mut self, pieces: &[&[u8]]) -> io::Result<bool> {
        (**self).send_gathered(pieces)
    }
}
