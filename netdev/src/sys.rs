//! Small libc helpers shared by the kernel-backed devices: interface-name checks, `ifreq` ioctls and eventfds.
//!
//! Everything `unsafe` about talking to the kernel lives here or right next to the one call that needs it, so
//! that the device modules read as plain logic.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Turns a libc return value into an `io::Result`, reading `errno` on -1.
pub(crate) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Wraps `err` with a sentence that names the device, keeping the error kind so callers can still match on it.
pub(crate) fn with_context(err: io::Error, message: String) -> io::Error {
    io::Error::new(err.kind(), format!("{message} ({err})"))
}

/// An error for an interface name the kernel would refuse, checked before any system call so that the message
/// can say exactly what is wrong.
pub(crate) fn check_ifname(name: &str, what: &str) -> io::Result<()> {
    let problem = if name.is_empty() {
        Some("is empty")
    } else if name.len() >= libc::IFNAMSIZ {
        Some("is too long (interface names have at most 15 bytes)")
    } else if name == "." || name == ".." {
        Some("is not a valid interface name")
    } else if name.bytes().any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace()) {
        Some("contains '/', ':', NUL or whitespace, which interface names cannot")
    } else {
        None
    };
    match problem {
        Some(p) => {
            Err(io::Error::new(io::ErrorKind::InvalidInput, format!("cannot open {what} {name:?}: the name {p}")))
        }
        None => Ok(()),
    }
}

/// A zeroed `ifreq` carrying `name` (which [`check_ifname`] has accepted).
pub(crate) fn ifreq_with_name(name: &str) -> libc::ifreq {
    // SAFETY: `ifreq` is a plain C struct (a name array and a union of integers, sockaddrs and a pointer) for
    // which all-zero bytes are a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(name.as_bytes().iter().take(libc::IFNAMSIZ - 1)) {
        *dst = src as libc::c_char;
    }
    req
}

/// Reads the NUL-terminated name the kernel left in `req` (TUNSETIFF may pick or normalise it).
pub(crate) fn ifreq_name(req: &libc::ifreq) -> String {
    let bytes: Vec<u8> = req.ifr_name.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// An `AF_INET` datagram socket, the conventional handle for interface ioctls (`SIOCGIFMTU` and friends). It
/// belongs to the network namespace of the calling thread.
fn ioctl_socket() -> io::Result<OwnedFd> {
    // SAFETY: socket() takes no pointers; the result is checked before use.
    let fd = cvt(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Runs one `ifreq` ioctl on a throwaway socket.
fn ifreq_ioctl(request: libc::c_ulong, req: &mut libc::ifreq) -> io::Result<()> {
    let sock = ioctl_socket()?;
    // SAFETY: the request is one of the SIOC*IF* ioctls, which read and write only the `ifreq` we pass, and
    // `req` is a valid, exclusively borrowed `ifreq` for the duration of the call.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), request as _, req as *mut libc::ifreq) })?;
    Ok(())
}

/// The MTU of interface `name` (`SIOCGIFMTU`).
pub(crate) fn interface_mtu(name: &str) -> io::Result<usize> {
    let mut req = ifreq_with_name(name);
    ifreq_ioctl(libc::SIOCGIFMTU, &mut req)?;
    // SAFETY: SIOCGIFMTU filled the `ifru_mtu` member of the union, and every bit pattern is a valid c_int.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    Ok(usize::try_from(mtu).unwrap_or(0))
}

/// The hardware address of interface `name` (`SIOCGIFHWADDR`), if it is a 6-byte (Ethernet) one.
pub(crate) fn interface_hwaddr(name: &str) -> io::Result<Option<[u8; 6]>> {
    let mut req = ifreq_with_name(name);
    ifreq_ioctl(libc::SIOCGIFHWADDR, &mut req)?;
    // SAFETY: SIOCGIFHWADDR filled the `ifru_hwaddr` sockaddr of the union; sockaddr is plain data.
    let addr = unsafe { req.ifr_ifru.ifru_hwaddr };
    if addr.sa_family != libc::ARPHRD_ETHER {
        return Ok(None);
    }
    let mut mac = [0u8; 6];
    for (dst, &src) in mac.iter_mut().zip(addr.sa_data.iter()) {
        *dst = src as u8;
    }
    Ok(Some(mac))
}

/// Sets `IFF_UP` on interface `name` (read-modify-write of the flags).
pub(crate) fn set_interface_up(name: &str) -> io::Result<()> {
    let mut req = ifreq_with_name(name);
    ifreq_ioctl(libc::SIOCGIFFLAGS, &mut req)?;
    // SAFETY: SIOCGIFFLAGS filled the `ifru_flags` member; we write the same member back.
    unsafe {
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
    }
    ifreq_ioctl(libc::SIOCSIFFLAGS, &mut req)
}

/// The index of interface `name`, or a clear error when there is no such interface.
pub(crate) fn interface_index(name: &str, what: &str) -> io::Result<libc::c_int> {
    let cname = CString::new(name).map_err(|_| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("cannot open {what} {name:?}: NUL in name"))
    })?;
    // SAFETY: `cname` is a valid NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        let err = io::Error::last_os_error();
        return Err(with_context(
            err,
            format!("cannot open {what} {name:?}: no such network interface in this network namespace"),
        ));
    }
    libc::c_int::try_from(index)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, format!("interface {name:?} has index {index}")))
}

/// A non-blocking, close-on-exec eventfd used as a readiness signal.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd() takes no pointers; the result is checked before use.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
    // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes an eventfd readable. A full counter (EAGAIN) already means "readable", so errors are ignored.
pub(crate) fn eventfd_signal(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live local u64 to a descriptor we own; failure is harmless.
    let _ = unsafe { libc::write(fd, (&one as *const u64).cast(), std::mem::size_of::<u64>()) };
}

/// Resets an eventfd to not readable. EAGAIN (already drained) is the normal outcome of a second call.
pub(crate) fn eventfd_drain(fd: RawFd) {
    let mut value: u64 = 0;
    // SAFETY: reads at most 8 bytes into a live local u64 from a descriptor we own; failure is harmless.
    let _ = unsafe { libc::read(fd, (&mut value as *mut u64).cast(), std::mem::size_of::<u64>()) };
}

/// The current `errno` as a raw number (0 when unknown).
pub(crate) fn last_errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_ifname("eth0", "TAP device").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "a:b", "0123456789abcdef"] {
            let err = check_ifname(bad, "TAP device").unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains("TAP device"), "{err}");
        }
    }

    #[test]
    fn eventfd_signals_and_drains() {
        let fd = eventfd().unwrap();
        let readable = |fd: RawFd| {
            let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd, zero timeout.
            unsafe { libc::poll(&mut p, 1, 0) == 1 }
        };
        assert!(!readable(fd.as_raw_fd()));
        eventfd_signal(fd.as_raw_fd());
        eventfd_signal(fd.as_raw_fd());
        assert!(readable(fd.as_raw_fd()));
        eventfd_drain(fd.as_raw_fd());
        assert!(!readable(fd.as_raw_fd()));
    }

    #[test]
    fn loopback_has_an_mtu() {
        // Every network namespace has `lo`.
        assert!(interface_mtu("lo").unwrap() > 0);
        assert!(interface_index("lo", "packet socket").unwrap() > 0);
        assert!(interface_index("ustack-nope0", "packet socket").is_err());
    }
}
