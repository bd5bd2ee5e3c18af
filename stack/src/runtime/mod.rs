//! The runtime: one thread that joins a [`Stack`](crate::Stack) to a [`Device`](ustack_netdev::Device), and blocking socket handles shaped like
//! `std::net` that talk to it.
//!
//! # Threads and locking
//! The stack lives behind one mutex. The driver thread takes it to feed received frames in, run timers and
//! collect frames out; a socket call takes it for the duration of one non-blocking core call. The other
//! locks (the device's, the wakers', a scratch list's) are taken only after the stack's or alone, never
//! before it, so there is no deadlock.
//! A call that would block (`EAGAIN`) registers a waker on the descriptors it waits for and parks; whoever
//! changes readiness wakes exactly the wakers of those descriptors. While blocking calls have lately waited
//! only briefly (request/response traffic), a call spins, yielding, for up to twice that (at most 100 µs)
//! before it parks: waking a parked thread costs tens of microseconds. A call that queued output sends it
//! itself, writing to the device from the caller's thread, instead of waking the driver to do it; it rings
//! the driver's eventfd only when a timer it set falls before the driver's next wake-up. A syscall-like call
//! therefore costs one uncontended mutex acquisition, plus the device writes of what it sent. A driver that
//! wakes to find the stack held does not wait for the lock: it leaves the device's frames to the calls, which
//! read them as they let go of the stack (Linux's socket backlog; see `device_watch`).

mod device_watch;
mod driver;
mod readiness;
mod tcp;
#[cfg(feature = "tokio")]
pub mod tokio;
mod udp;

pub use crate::socket::epoll::{EpollEvent, PollFd, EPOLLET, EPOLLONESHOT};
pub use crate::socket::Readiness;
pub use driver::{NetStack, NetStackOptions};
pub use readiness::Epoll;
pub use tcp::{TcpListener, TcpStream};
pub use udp::UdpSocket;

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>() {}

    /// The handles cross threads as std's do: `std::net::{TcpStream, TcpListener, UdpSocket}` are Send + Sync.
    #[test]
    fn handles_are_send_and_sync() {
        send_sync::<NetStack>();
        send_sync::<UdpSocket>();
        send_sync::<TcpListener>();
        send_sync::<TcpStream>();
        send_sync::<Epoll>();
        #[cfg(feature = "tokio")]
        {
            send_sync::<tokio::TcpListener>();
            send_sync::<tokio::TcpStream>();
            send_sync::<tokio::UdpSocket>();
            send_sync::<tokio::OwnedReadHalf>();
            send_sync::<tokio::OwnedWriteHalf>();
        }
    }
}
