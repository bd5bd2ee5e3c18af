//! A Linux TAP interface as a [`Device`]: the kernel on one side, the stack on the other.
//!
//! We talk to `/dev/net/tun` with direct ioctls rather than through a crate because we need the descriptor
//! non-blocking and read in batches until `EAGAIN`, which the available wrappers do not offer.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::vnet::{self, VnetHeader};
use crate::{sys, Device, FrameBatch};

/// Traffic counters of a [`Tap`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TapStats {
    /// Frames read from the kernel.
    pub received: u64,
    /// Frames written to the kernel.
    pub sent: u64,
    /// Frames dropped on send (the kernel's queue was full, the interface was down, or it refused the frame).
    pub tx_dropped: u64,
    /// With offloads: frames read whose checksum the kernel left undone, passed on as trusted.
    pub checksums_trusted: u64,
    /// With offloads: super-segments read (the kernel merged or never cut them) and written (for the kernel
    /// to cut).
    pub super_segments_received: u64,
    pub super_segments_sent: u64,
}

/// An open TAP interface (`IFF_TAP | IFF_NO_PI`): every read and write is exactly one Ethernet frame.
///
/// A non-persistent TAP created by [`Tap::open`] disappears when the `Tap` is dropped. The descriptor stays
/// bound to the network namespace the TAP was opened in, whichever thread uses it later.
#[derive(Debug)]
pub struct Tap {
    fd: OwnedFd,
    name: String,
    mtu: usize,
    mac: Option<[u8; 6]>,
    stats: TapStats,
    /// Opened with `IFF_VNET_HDR` and checksum and TCP segmentation offload: every frame carries a virtio-net
    /// header, and frames of up to 64 KiB pass.
    offloads: bool,
}

impl Tap {
    /// Attaches to the TAP interface `name` in the calling thread's network namespace, creating it when it does
    /// not exist. The interface is not brought up; see [`Tap::set_up`].
    pub fn open(name: &str) -> io::Result<Tap> {
        Tap::open_with(name, false)
    }

    /// Like [`Tap::open`], with checksum and TCP segmentation offload (`IFF_VNET_HDR`, `TUNSETOFFLOAD` with
    /// `TUN_F_CSUM | TUN_F_TSO4`): the kernel then hands over TCP super-segments of up to 64 KiB, leaving
    /// their checksums for us to complete, and takes super-segments from us to cut itself (see
    /// [`VnetHeader::for_sending`]). A stack on such a device may send TCP segments up to
    /// [`Device::max_frame_len`], as Linux does over a virtio NIC. Frames whose checksum the kernel left undone
    /// are passed on unchanged and marked trusted ([`FrameBatch::mark_checksum_trusted`]), so a capture of them
    /// shows partial checksums, as tcpdump does on a host with offloads.
    pub fn open_with_offloads(name: &str) -> io::Result<Tap> {
        Tap::open_with(name, true)
    }

    fn open_with(name: &str, offloads: bool) -> io::Result<Tap> {
        sys::check_ifname(name, "TAP device")?;
        // SAFETY: the path is a valid NUL-terminated string literal; open() keeps no pointer to it.
        let raw = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if raw < 0 {
            return Err(open_error(io::Error::last_os_error(), name));
        }
        // SAFETY: `raw` is a freshly opened descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let mut req = sys::ifreq_with_name(name);
        let vnet_flag = if offloads { libc::IFF_VNET_HDR } else { 0 };
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | vnet_flag) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes only the `ifreq` we pass, which is valid and exclusively borrowed for
        // the duration of the call.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF as _, &mut req as *mut libc::ifreq) } < 0 {
            return Err(attach_error(io::Error::last_os_error(), name));
        }
        let name = sys::ifreq_name(&req);
        if offloads {
            let features = libc::TUN_F_CSUM | libc::TUN_F_TSO4;
            // SAFETY: TUNSETOFFLOAD takes its argument by value (an unsigned int of feature bits); no memory is
            // passed.
            if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD as _, features as libc::c_ulong) } < 0 {
                let err = io::Error::last_os_error();
                return Err(sys::with_context(err, format!("cannot enable offloads on TAP device {name:?}")));
            }
        }
        let mtu = sys::interface_mtu(&name)
            .map_err(|e| sys::with_context(e, format!("cannot read the MTU of TAP device {name:?}")))?;
        let mac = sys::interface_hwaddr(&name)
            .map_err(|e| sys::with_context(e, format!("cannot read the MAC address of TAP device {name:?}")))?;
        tracing::debug!(%name, mtu, ?mac, "TAP device opened");
        Ok(Tap { fd, name, mtu, mac, stats: TapStats::default(), offloads })
    }

    /// Brings the interface up (sets `IFF_UP`), as `ip link set NAME up` does.
    pub fn set_up(&self) -> io::Result<()> {
        sys::set_interface_up(&self.name)
            .map_err(|e| sys::with_context(e, format!("cannot bring TAP device {:?} up", self.name)))
    }

    /// The interface name (as the kernel reports it).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Traffic counters.
    pub fn stats(&self) -> TapStats {
        self.stats
    }
}

impl Tap {
    /// Writes one frame, given as `pieces` (the first holding at least its headers), with one `writev`
    /// behind the vnet header when offloads are on. Returns false when the kernel dropped it (a full queue, the
    /// interface down).
    fn write_frame(&mut self, pieces: &[&[u8]]) -> io::Result<bool> {
        const MAX_PIECES: usize = 4;
        let frame_len: usize = pieces.iter().map(|p| p.len()).sum();
        let (Some(head), true) = (pieces.first(), pieces.len() <= MAX_PIECES) else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "a frame is 1 to 4 pieces"));
        };
        let header =
            if self.offloads { VnetHeader::for_sending_head(head, frame_len, self.mtu) } else { VnetHeader::default() };
        let header = header.to_bytes();
        let header_len = if self.offloads { vnet::LEN } else { 0 };
        // The kernel only reads from these; iovec just has no const variant.
        let iovec = |piece: &[u8]| libc::iovec { iov_base: piece.as_ptr() as *mut libc::c_void, iov_len: piece.len() };
        let mut iov = [iovec(&header[..header_len]); MAX_PIECES + 1];
        for (slot, piece) in iov[1..].iter_mut().zip(pieces) {
            *slot = iovec(piece);
        }
        if frame_len > self.mtu + 14 {
            self.stats.super_segments_sent += 1;
        }
        loop {
            // SAFETY: writev reads each of the first `1 + pieces.len()` iovecs' length from the header array or a
            // piece, all alive and unmodified for the call.
            let n = unsafe { libc::writev(self.fd.as_raw_fd(), iov.as_ptr(), 1 + pieces.len() as libc::c_int) };
            if n >= 0 {
                self.stats.sent += 1;
                return Ok(true);
            }
            match sys::last_errno() {
                libc::EINTR => continue,
                e if is_drop_error(e) => {
                    self.stats.tx_dropped += 1;
                    return Ok(false);
                }
                _ => {
                    let err = io::Error::last_os_error();
                    return Err(sys::with_context(err, format!("writing to TAP device {:?} failed", self.name)));
                }
            }
        }
    }

    /// Notes what the kernel left undone in the frame just received (the batch's last). A checksum left for
    /// offload is not computed here: the bytes come from the kernel's memory, never from a wire, so the frame is
    /// marked trusted and the stack skips verifying it ([`FrameBatch::mark_checksum_trusted`]) — one pass over
    /// up to 64 KiB saved twice. A super-segment needs nothing else: its IP header already counts all of its
    /// bytes.
    fn note_offloads(&mut self, header: &VnetHeader, batch: &mut FrameBatch) {
        let Some(last) = batch.len().checked_sub(1) else { return };
        if header.gso_type != vnet::GSO_NONE {
            self.stats.super_segments_received += 1;
        }
        if header.flags & vnet::F_NEEDS_CSUM != 0 {
            batch.mark_checksum_trusted(last);
            self.stats.checksums_trusted += 1;
        }
    }
}

fn open_error(err: io::Error, name: &str) -> io::Error {
    let why = match err.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => {
            "/dev/net/tun does not exist (load the tun kernel module)"
        }
        Some(libc::EPERM) | Some(libc::EACCES) => "permission denied on /dev/net/tun (needs CAP_NET_ADMIN, e.g. root)",
        _ => "opening /dev/net/tun failed",
    };
    sys::with_context(err, format!("cannot open TAP device {name:?}: {why}"))
}

fn attach_error(err: io::Error, name: &str) -> io::Error {
    let why = match err.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => "permission denied (needs CAP_NET_ADMIN, e.g. root)",
        Some(libc::EBUSY) => "it is held by another process or was created with different flags",
        Some(libc::EINVAL) => "the name is taken by an interface that is not a TAP device",
        _ => "TUNSETIFF failed",
    };
    sys::with_context(err, format!("cannot create or attach TAP device {name:?}: {why}"))
}

/// Errors on which a frame is dropped, as a NIC drops on a full ring, rather than failing the whole batch.
fn is_drop_error(errno: i32) -> bool {
    matches!(errno, libc::EAGAIN | libc::ENOBUFS | libc::EIO | libc::EINVAL | libc::EMSGSIZE | libc::ENETDOWN)
}

impl Device for Tap {
    fn mtu(&self) -> usize {
        self.mtu
    }

    fn hardware_addr(&self) -> Option<[u8; 6]> {
        self.mac
    }

    fn max_frame_len(&self) -> usize {
        if self.offloads {
            vnet::MAX_OFFLOAD_FRAME
        } else {
            self.mtu + 14
        }
    }

    fn recv_batch(&mut self, batch: &mut FrameBatch) -> io::Result<usize> {
        let mut received = 0;
        let mut header = [0u8; vnet::LEN];
        let header_len = if self.offloads { vnet::LEN } else { 0 };
        while let Some(slot) = batch.spare_slot() {
            let iov = [
                libc::iovec { iov_base: header.as_mut_ptr().cast(), iov_len: header_len },
                libc::iovec { iov_base: slot.as_mut_ptr().cast(), iov_len: slot.len() },
            ];
            // SAFETY: readv writes at most each iovec's length into the header array and the exclusively borrowed
            // slot, both alive for the call.
            let n = unsafe { libc::readv(self.fd.as_raw_fd(), iov.as_ptr(), 2) };
            if n < 0 {
                match sys::last_errno() {
                    libc::EINTR => continue,
                    // Nothing queued, or the interface is down (the kernel then has nothing for us either).
                    libc::EAGAIN | libc::EIO => break,
                    _ if received > 0 => break,
                    _ => {
                        let err = io::Error::last_os_error();
                        return Err(sys::with_context(err, format!("reading TAP device {:?} failed", self.name)));
                    }
                }
            }
            let Some(len) = (n as usize).checked_sub(header_len).filter(|&len| len > 0) else { break };
            batch.commit(len);
            received += 1;
            if self.offloads {
                self.note_offloads(&VnetHeader::parse(&header), batch);
            }
        }
        self.stats.received += received as u64;
        Ok(received)
    }

    fn send_batch(&mut self, batch: &mut FrameBatch) -> io::Result<usize> {
        let mut sent = 0;
        let mut failure = None;
        for frame in batch.iter() {
            match self.write_frame(&[frame]) {
                Ok(true) => sent += 1,
                Ok(false) => {}
                Err(err) => {
                    failure = Some(err);
                    break;
                }
            }
        }
        batch.clear();
        failure.map_or(Ok(sent), Err)
    }

    fn gathers(&self) -> bool {
        true
    }

    fn send_gathered(&mut self, pieces: &[&[u8]]) -> io::Result<bool> {
        self.write_frame(pieces)
    }

    fn pollable_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{arp_request_for, is_root, wait_for_frame, NetNs};
    use std::time::Duration;

    #[test]
    fn bad_names_are_refused_clearly() {
        let err = Tap::open("a-name-that-is-much-too-long").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("a-name-that-is-much-too-long"), "{err}");
        assert!(err.to_string().contains("too long"), "{err}");
        assert!(Tap::open("bad/name").unwrap_err().to_string().contains("TAP device"));
    }

    #[test]
    fn kernel_arp_request_arrives_on_a_tap_in_a_namespace() {
        if !is_root() {
            println!("SKIPPED: TAP test needs root");
            return;
        }
        let ns = NetNs::create().unwrap();
        let mut tap = ns.run(|| Tap::open("ustt0")).unwrap().unwrap();
        assert_eq!(tap.name(), "ustt0");
        assert_eq!(tap.mtu(), 1500);
        let mac = tap.hardware_addr().unwrap();
        assert_ne!(mac, [0; 6]);
        // While the interface is down, reads find nothing and writes are dropped, not errors.
        let mut batch = FrameBatch::new(4, 1514);
        assert_eq!(tap.recv_batch(&mut batch).unwrap(), 0);
        batch.push(&[0xff; 60]);
        assert_eq!(tap.send_batch(&mut batch).unwrap(), 0);
        assert_eq!(tap.stats().tx_dropped, 1);
        ns.run(|| tap.set_up()).unwrap().unwrap();
        // A second open of a held, single-queue TAP is refused with a clear message.
        let err = ns.run(|| Tap::open("ustt0")).unwrap().unwrap_err();
        assert!(err.to_string().contains("ustt0"), "{err}");

        let (local, peer) = ns.subnet_addrs();
        ns.ip(&["addr", "add", &format!("{local}/24"), "dev", "ustt0"]);
        // The kernel must resolve `peer` before it can send the datagram: it asks on the TAP.
        let frame = wait_for_frame(&ns, &mut tap, peer, Duration::from_secs(5), |f| arp_request_for(f, peer));
        assert!(frame.is_some(), "no ARP request for {peer} on the TAP");
        assert!(tap.stats().received > 0);

        // Frames we write reach the kernel, in pieces too: an ARP reply sent as three makes it send the queued
        // datagram.
        let our_mac = [0x02, 0x55, 0x53, 0, 0, 0x02];
        let reply = crate::test_support::arp_reply(our_mac, peer, mac, local);
        let (head, rest) = reply.split_at(14);
        let (middle, tail) = rest.split_at(9);
        assert!(tap.gathers());
        let too_many = [head, middle, tail, tail, tail];
        assert_eq!(tap.send_gathered(&too_many).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(tap.send_gathered(&[]).unwrap_err().kind(), io::ErrorKind::InvalidInput);
        let sent = tap.stats().sent;
        assert!(tap.send_gathered(&[head, middle, tail]).unwrap());
        assert_eq!(tap.stats().sent, sent + 1);
        let udp = wait_for_frame(&ns, &mut tap, peer, Duration::from_secs(5), |f| {
            f.len() > 34 && f[12..14] == [8, 0] && f[0..6] == our_mac && f[23] == 17
        });
        assert!(udp.is_some(), "no UDP datagram after our ARP reply");
    }
}
