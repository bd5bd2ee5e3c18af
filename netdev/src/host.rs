//! Small calls on the host's own kernel objects that tests and tools need and that std does not offer. They sit
//! here, with the crate's other FFI, so that no other crate needs `unsafe`.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

/// Raises this process's open-file limit to its hard limit (a thousand kernel sockets need more than the
/// common soft limit of 1,024). Best effort: failures are ignored.
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct we pass, which lives across the calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Calls `listen()` again on a listening socket, which only changes its backlog (std listens with 128).
pub fn set_listen_backlog(socket: &impl AsRawFd, backlog: i32) -> io::Result<()> {
    // SAFETY: listen() takes a descriptor the caller owns (borrowed for the call) and an integer.
    if unsafe { libc::listen(socket.as_raw_fd(), backlog) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `poll(2)` over `fds` for at most `timeout`; an interrupted call reports nothing ready. Returns how many
/// entries have events in `revents`.
pub fn poll(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<usize> {
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd of the length passed.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(0);
        }
        return Err(e);
    }
    Ok(r as usize)
}
