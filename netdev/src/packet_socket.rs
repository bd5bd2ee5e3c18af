//! An `AF_PACKET` socket bound to one interface as a [`Device`], for running the stack on a veth pair (or any
//! interface the kernel does not otherwise use).
//!
//! The socket is promiscuous, because the stack answers with its own MAC rather than the interface's, and it
//! ignores frames the kernel reports as our own transmissions. Every read carries a `virtio_net_hdr`
//! (`PACKET_VNET_HDR`) so that frames whose checksum the kernel left for offload (`CHECKSUM_PARTIAL`, common on
//! veth) can be completed here instead of reaching the stack with a bad checksum.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::{sys, Device, FrameBatch};

use crate::vnet::{complete_checksum, Checksum, VnetHeader, LEN as VNET_HDR_LEN};

/// Frames moved per `recvmmsg`/`sendmmsg` call; the call arrays live on the stack.
const CHUNK: usize = 32;

/// Traffic counters of a [`PacketSocket`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketSocketStats {
    /// Frames handed to the caller.
    pub received: u64,
    /// Received frames whose offloaded (partial) checksum was completed.
    pub checksums_fixed: u64,
    /// Received frames marked as needing a checksum whose offsets lay outside the frame (passed on unchanged).
    pub bad_checksum_offsets: u64,
    /// Received frames larger than a batch slot (typically GSO/GRO super-frames), dropped.
    pub truncated: u64,
    /// Our own transmissions seen on the socket and skipped (only on kernels without
    /// `PACKET_IGNORE_OUTGOING`).
    pub outgoing_skipped: u64,
    /// Frames handed to the kernel.
    pub sent: u64,
    /// Frames dropped on send (queue full, interface down, or refused).
    pub tx_dropped: u64,
}

/// A promiscuous raw packet socket on one interface, moving whole Ethernet frames.
///
/// Frames larger than the batch slot size are dropped and counted (`truncated`): turn off GRO/GSO/TSO on the
/// interface (`ethtool -K IF gro off gso off tso off`) so that the kernel does not hand over super-frames.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    name: String,
    mtu: usize,
    mac: Option<[u8; 6]>,
    stats: PacketSocketStats,
}

fn setsockopt<T>(fd: &OwnedFd, level: libc::c_int, option: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live `T` of the size we pass; the kernel only reads it.
    sys::cvt(unsafe {
        libc::setsockopt(fd.as_raw_fd(), level, option, (value as *const T).cast(), size_of::<T>() as libc::socklen_t)
    })?;
    Ok(())
}

impl PacketSocket {
    /// Opens a packet socket on interface `ifname` of the calling thread's network namespace, in promiscuous
    /// mode. Needs `CAP_NET_RAW`.
    pub fn open(ifname: &str) -> io::Result<PacketSocket> {
        const WHAT: &str = "packet socket on";
        sys::check_ifname(ifname, WHAT)?;
        let ifindex = sys::interface_index(ifname, WHAT)?;
        let context = |e: io::Error, why: &str| sys::with_context(e, format!("cannot open {WHAT} {ifname:?}: {why}"));

        // Protocol 0 receives nothing until bind() names the interface; opening with ETH_P_ALL would briefly
        // receive every interface's traffic.
        // SAFETY: socket() takes no pointers; the result is checked before use.
        let raw =
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            let err = io::Error::last_os_error();
            let why = match err.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => "permission denied (needs CAP_NET_RAW, e.g. root)",
                _ => "socket(AF_PACKET) failed",
            };
            return Err(context(err, why));
        }
        // SAFETY: `raw` is a freshly created descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let on: libc::c_int = 1;
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, &on)
            .map_err(|e| context(e, "PACKET_VNET_HDR is not supported"))?;
        // Without PACKET_IGNORE_OUTGOING (Linux < 4.20) we skip PACKET_OUTGOING frames ourselves on receive.
        if let Err(err) = setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &on) {
            tracing::debug!(%err, "PACKET_IGNORE_OUTGOING unavailable; filtering by packet type");
        }
        size_queues(&fd);

        // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as libc::c_ushort;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
        addr.sll_ifindex = ifindex;
        // SAFETY: `addr` is a live sockaddr_ll and we pass its exact size.
        sys::cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })
        .map_err(|e| context(e, "bind failed"))?;

        // The membership (and the promiscuity) ends when the socket closes.
        let mreq = libc::packet_mreq {
            mr_ifindex: ifindex,
            mr_type: libc::PACKET_MR_PROMISC as libc::c_ushort,
            mr_alen: 0,
            mr_address: [0; 8],
        };
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)
            .map_err(|e| context(e, "cannot enable promiscuous mode"))?;

        let mtu = sys::interface_mtu(ifname).map_err(|e| context(e, "cannot read the MTU"))?;
        let mac = sys::interface_hwaddr(ifname).map_err(|e| context(e, "cannot read the MAC address"))?;
        tracing::debug!(name = ifname, mtu, ?mac, "packet socket opened");
        Ok(PacketSocket { fd, name: ifname.to_string(), mtu, mac, stats: PacketSocketStats::default() })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Traffic counters.
    pub fn stats(&self) -> PacketSocketStats {
        self.stats
    }

    /// One `recvmmsg` into up to [`CHUNK`] spare slots. Returns (frames kept, whether the socket may have more).
    fn recv_chunk(&mut self, batch: &mut FrameBatch) -> io::Result<(usize, bool)> {
        let mut vnet = [[0u8; VNET_HDR_LEN]; CHUNK];
        // SAFETY: iovec, sockaddr_ll and mmsghdr are plain C structs (integers and pointers); all-zero is valid.
        let (mut iovs, mut addrs, mut msgs): (
            [[libc::iovec; 2]; CHUNK],
            [libc::sockaddr_ll; CHUNK],
            [libc::mmsghdr; CHUNK],
        ) = unsafe { std::mem::zeroed() };
        let mut count = 0;
        for (i, slot) in batch.spare_slots().take(CHUNK).enumerate() {
            iovs[i][0] = libc::iovec { iov_base: vnet[i].as_mut_ptr().cast(), iov_len: VNET_HDR_LEN };
            iovs[i][1] = libc::iovec { iov_base: slot.as_mut_ptr().cast(), iov_len: slot.len() };
            let hdr = &mut msgs[i].msg_hdr;
            hdr.msg_iov = iovs[i].as_mut_ptr();
            hdr.msg_iovlen = 2;
            hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_ll).cast();
            hdr.msg_namelen = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            count = i + 1;
        }
        if count == 0 {
            return Ok((0, false));
        }
        // SAFETY: `msgs[..count]` are initialised message headers whose iovecs point into `vnet` and into the
        // batch's spare slots (each valid for its stated length, and not otherwise accessed until the call
        // returns), and whose names point into `addrs`; all of them outlive the call.
        let got = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                count as _,
                libc::MSG_DONTWAIT as _,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            return match sys::last_errno() {
                // ENETDOWN is reported once when the interface goes down; the socket works again once it is up.
                libc::EAGAIN | libc::EINTR | libc::ENETDOWN => Ok((0, false)),
                _ => Err(io::Error::last_os_error()),
            };
        }
        let got = got as usize;
        let mut kept = 0;
        for i in 0..got.min(count) {
            let len = msgs[i].msg_len as usize;
            if msgs[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0 || len < VNET_HDR_LEN {
                self.stats.truncated += 1;
                continue;
            }
            if addrs[i].sll_pkttype == libc::PACKET_OUTGOING {
                self.stats.outgoing_skipped += 1;
                continue;
            }
            if !batch.commit_spare(i - kept, len - VNET_HDR_LEN) {
                self.stats.truncated += 1;
                continue;
            }
            kept += 1;
            if let Some(frame) = batch.get_mut(batch.len() - 1) {
                match complete_checksum(&VnetHeader::parse(&vnet[i]), frame) {
                    Checksum::Untouched => {}
                    Checksum::Fixed => self.stats.checksums_fixed += 1,
                    Checksum::BadOffsets => self.stats.bad_checksum_offsets += 1,
                }
            }
        }
        Ok((kept, got == count))
    }

    /// One `sendmmsg` series for up to [`CHUNK`] frames. Returns how many the kernel took.
    fn send_chunk(&mut self, frames: &[&[u8]]) -> io::Result<usize> {
        let zero_vnet = [0u8; VNET_HDR_LEN];
        // SAFETY: iovec and mmsghdr are plain C structs (integers and pointers); all-zero is valid.
        let (mut iovs, mut msgs): ([[libc::iovec; 2]; CHUNK], [libc::mmsghdr; CHUNK]) = unsafe { std::mem::zeroed() };
        let count = frames.len().min(CHUNK);
        for (i, frame) in frames.iter().take(count).enumerate() {
            // The kernel only reads from send buffers; iovec just has no const variant.
            iovs[i][0] = libc::iovec { iov_base: zero_vnet.as_ptr() as *mut libc::c_void, iov_len: VNET_HDR_LEN };
            iovs[i][1] = libc::iovec { iov_base: frame.as_ptr() as *mut libc::c_void, iov_len: frame.len() };
            msgs[i].msg_hdr.msg_iov = iovs[i].as_mut_ptr();
            msgs[i].msg_hdr.msg_iovlen = 2;
        }
        let mut done = 0;
        let mut sent = 0;
        while done < count {
            let rest = &mut msgs[done..count];
            // SAFETY: `rest` holds initialised message headers whose iovecs point to `zero_vnet` and to the
            // caller's frames, all alive and unmodified for the duration of the call.
            let r = unsafe {
                libc::sendmmsg(self.fd.as_raw_fd(), rest.as_mut_ptr(), rest.len() as _, libc::MSG_DONTWAIT as _)
            };
            if r > 0 {
                done += r as usize;
                sent += r as usize;
                continue;
            }
            match sys::last_errno() {
                libc::EINTR => {}
                e if is_drop_error(e) => {
                    // The first remaining frame was refused: drop it, as a NIC drops on a full ring.
                    self.stats.tx_dropped += 1;
                    done += 1;
                }
                _ => return Err(io::Error::last_os_error()),
            }
        }
        Ok(sent)
    }
}

/// Socket queue size asked for, each way. The default (net.core.rmem_default, about 208 KiB of kernel memory,
/// some 90 full-sized frames once each frame's overhead counts) is smaller than the window a TCP peer of the
/// stack may fill at once: a burst at veth speed then overflows the queue, and every dropped frame costs the
/// peer a retransmission (5% of segments in a 200 MB transfer from the kernel). 8 MiB holds thousands.
const QUEUE_BYTES: libc::c_int = 8 << 20;

/// Sizes the socket's receive and send queues: with `SO_*BUFFORCE` (CAP_NET_ADMIN) past the sysctl limits,
/// else as far as `SO_*BUF` allows. A refusal only costs speed, so it is logged, not returned.
fn size_queues(fd: &OwnedFd) {
    for (force, plain) in [(libc::SO_RCVBUFFORCE, libc::SO_RCVBUF), (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)] {
        if setsockopt(fd, libc::SOL_SOCKET, force, &QUEUE_BYTES).is_err() {
            if let Err(err) = setsockopt(fd, libc::SOL_SOCKET, plain, &QUEUE_BYTES) {
                tracing::debug!(%err, "cannot size the packet socket's queues");
            }
        }
    }
}

/// Errors on which a frame is dropped rather than failing the whole batch.
fn is_drop_error(errno: i32) -> bool {
    matches!(errno, libc::EAGAIN | libc::ENOBUFS | libc::EIO | libc::EINVAL | libc::EMSGSIZE | libc::ENETDOWN)
}

impl Device for PacketSocket {
    fn mtu(&self) -> usize {
        self.mtu
    }

    fn hardware_addr(&self) -> Option<[u8; 6]> {
        self.mac
    }

    fn recv_batch(&mut self, batch: &mut FrameBatch) -> io::Result<usize> {
        let mut received = 0;
        while !batch.is_full() {
            match self.recv_chunk(batch) {
                Ok((kept, more)) => {
                    received += kept;
                    if !more {
                        break;
                    }
                }
                Err(_) if received > 0 => break,
                Err(err) => {
                    return Err(sys::with_context(err, format!("reading packet socket on {:?} failed", self.name)))
                }
            }
        }
        self.stats.received += received as u64;
        Ok(received)
    }

    fn send_batch(&mut self, batch: &mut FrameBatch) -> io::Result<usize> {
        let mut sent = 0;
        let mut frames: [&[u8]; CHUNK] = [&[]; CHUNK];
        let mut result = Ok(());
        {
            let mut iter = batch.iter();
            loop {
                // `zip` asks `frames` first, so no frame is taken from `iter` without a place to go.
                let mut n = 0;
                for (slot, frame) in frames.iter_mut().zip(iter.by_ref()) {
                    *slot = frame;
                    n += 1;
                }
                if n == 0 {
                    break;
                }
                match self.send_chunk(&frames[..n]) {
                    Ok(k) => sent += k,
                    Err(err) => {
                        result = Err(err);
                        break;
                    }
                }
            }
        }
        batch.clear();
        self.stats.sent += sent as u64;
        match result {
            Ok(()) => Ok(sent),
            Err(err) => Err(sys::with_context(err, format!("writing to packet socket on {:?} failed", self.name))),
        }
    }

    fn pollable_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{arp_reply, arp_request_for, is_root, udp_checksum_ok, wait_for_frame, NetNs};
    use std::time::Duration;

    #[test]
    fn missing_interface_is_a_clear_error() {
        let err = PacketSocket::open("ustack-none0").unwrap_err();
        assert!(err.to_string().contains("ustack-none0"), "{err}");
        assert!(err.to_string().contains("no such network interface"), "{err}");
        let err = PacketSocket::open("much-too-long-a-name").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn kernel_traffic_on_a_veth_in_a_namespace() {
        if !is_root() {
            println!("SKIPPED: packet socket test needs root");
            return;
        }
        let ns = NetNs::create().unwrap();
        ns.ip(&["link", "add", "ustA", "type", "veth", "peer", "name", "ustB"]);
        let (local, peer) = ns.subnet_addrs();
        ns.ip(&["addr", "add", &format!("{local}/24"), "dev", "ustA"]);
        ns.ip(&["link", "set", "ustA", "up"]);
        ns.ip(&["link", "set", "ustB", "up"]);
        let mut sock = ns.run(|| PacketSocket::open("ustB")).unwrap().unwrap();
        assert_eq!(sock.name(), "ustB");
        assert_eq!(sock.mtu(), 1500);
        assert!(sock.hardware_addr().is_some());

        let request = wait_for_frame(&ns, &mut sock, peer, Duration::from_secs(5), |f| arp_request_for(f, peer))
            .expect("no ARP request from the kernel");
        let kernel_mac: [u8; 6] = request[6..12].try_into().unwrap();

        // Answer as `peer` with a MAC that is not the interface's: promiscuous mode must let the reply's
        // consequences (unicast to our MAC) reach us.
        let our_mac = [0x02, 0x55, 0x53, 0, 0, 0x03];
        let mut batch = FrameBatch::new(4, 1514);
        batch.push(&arp_reply(our_mac, peer, kernel_mac, local));
        assert_eq!(sock.send_batch(&mut batch).unwrap(), 1);
        assert!(batch.is_empty());
        let udp = wait_for_frame(&ns, &mut sock, peer, Duration::from_secs(5), |f| {
            f.len() > 42 && f[0..6] == our_mac && f[12..14] == [8, 0] && f[23] == 17
        })
        .expect("no UDP datagram after our ARP reply");
        assert!(udp_checksum_ok(&udp), "UDP checksum must be complete: {:?}", sock.stats());
        let stats = sock.stats();
        println!("packet socket stats: {stats:?}");
        assert!(stats.received >= 2 && stats.sent == 1, "{stats:?}");
        assert_eq!(stats.outgoing_skipped, 0, "our ARP reply must not come back to us");
    }
}
