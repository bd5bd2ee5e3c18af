//! Waiting for file descriptors: an eventfd to wake a sleeping driver, and `ppoll(2)` over a few descriptors.
//! These are the only blocking primitives the runtime needs, kept here so that `unsafe` stays in this crate.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// A Linux eventfd used as a doorbell: `notify` from any thread makes the fd readable until `drain`.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// A non-blocking, close-on-exec eventfd.
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes no pointers; a negative return is an error, anything else a new descriptor
        // that we own from here on.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a freshly created descriptor owned by nobody else.
        Ok(EventFd { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Makes the descriptor readable (adds one to the counter).
    pub fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own descriptor. A full counter (EAGAIN) already means
        // "readable", so the result can be ignored.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Resets the counter so the descriptor is no longer readable.
    pub fn drain(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64 from our own non-blocking descriptor; EAGAIN (nothing
        // to drain) is fine.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Waits until one of `fds` is readable or `timeout` passes (`None` waits indefinitely). Returns, for each fd,
/// whether it is readable. An interrupted wait returns all false.
///
/// `ppoll(2)` rather than `poll(2)`: its timeout is in nanoseconds where `poll`'s is whole milliseconds, and
/// a driver that waits for a timer or a busy poller's grace period 50 µs away must not sleep a millisecond.
/// (The kernel may still add the thread's timer slack, 50 µs by default: see [`tighten_timer_slack`].)
pub fn wait_readable(fds: &[RawFd], timeout: Option<Duration>) -> io::Result<Vec<bool>> {
    let mut pollfds: Vec<libc::pollfd> = fds.iter().map(|&fd| pollin(fd)).collect();
    if !ppoll(&mut pollfds, timeout)? {
        return Ok(vec![false; fds.len()]);
    }
    Ok(pollfds.iter().map(|p| p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0).collect())
}

/// [`wait_readable`] for a caller that only needs to wait, such as a driver that reads every descriptor
/// after each wake-up anyway: no allocation, for up to [`WAIT_MAX_FDS`] descriptors.
pub fn wait_any(fds: &[RawFd], timeout: Option<Duration>) -> io::Result<()> {
    let mut pollfds = [pollin(-1); WAIT_MAX_FDS];
    let Some(pollfds) = pollfds.get_mut(..fds.len()) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "wait_any: too many descriptors"));
    };
    for (p, &fd) in pollfds.iter_mut().zip(fds) {
        p.fd = fd;
    }
    ppoll(pollfds, timeout).map(|_| ())
}

/// The most descriptors [`wait_any`] waits on.
pub const WAIT_MAX_FDS: usize = 8;

fn pollin(fd: RawFd) -> libc::pollfd {
    libc::pollfd { fd, events: libc::POLLIN, revents: 0 }
}

/// `ppoll(2)` on `pollfds`; false when a signal interrupted it.
fn ppoll(pollfds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<bool> {
    let timespec = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(libc::time_t::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let timespec_ptr = timespec.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `pollfds` is a live, correctly sized array of pollfd for the duration of the call; `timespec_ptr`
    // is null or points at `timespec`, which outlives the call; a null signal mask leaves the mask unchanged.
    let n = unsafe { libc::ppoll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, timespec_ptr, std::ptr::null()) };
    if n < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(err);
    }
    Ok(true)
}

/// Sets the calling thread's timer slack to 1 µs (`PR_SET_TIMERSLACK`). Linux lets a sleeping thread's
/// timeouts run late by its slack, 50 µs by default, to batch wake-ups; a thread whose timeouts are tens of
/// microseconds (a driver waiting out a grace period) would sleep twice as long as it asked.
pub fn tighten_timer_slack() -> io::Result<()> {
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument by value and touches no memory of ours.
    let r = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1_000 as libc::c_ulong, 0, 0, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventfd_wakes_poll() {
        let e = EventFd::new().unwrap();
        let r = wait_readable(&[e.as_raw_fd()], Some(Duration::from_millis(1))).unwrap();
        assert_eq!(r, vec![false]);
        e.notify();
        let r = wait_readable(&[e.as_raw_fd()], Some(Duration::from_secs(5))).unwrap();
        assert_eq!(r, vec![true]);
        e.drain();
        let r = wait_readable(&[e.as_raw_fd()], Some(Duration::ZERO)).unwrap();
        assert_eq!(r, vec![false]);
    }

    #[test]
    fn wait_any_wakes_on_any_descriptor_and_refuses_too_many() {
        let (quiet, rung) = (EventFd::new().unwrap(), EventFd::new().unwrap());
        rung.notify();
        wait_any(&[quiet.as_raw_fd(), rung.as_raw_fd()], Some(Duration::from_secs(5))).unwrap();
        let too_many = [quiet.as_raw_fd(); WAIT_MAX_FDS + 1];
        assert_eq!(wait_any(&too_many, Some(Duration::ZERO)).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn the_timer_slack_is_tightened_for_this_thread_only() {
        // SAFETY: PR_GET_TIMERSLACK takes no argument and returns the slack.
        let slack = || unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) };
        let before = slack();
        let inside = std::thread::spawn(move || {
            tighten_timer_slack().unwrap();
            slack()
        })
        .join()
        .unwrap();
        assert_eq!(inside, 1_000);
        assert_eq!(slack(), before, "other threads keep theirs");
    }
}
