//! The runtime: one thread that joins a [`Stack`] to a [`Device`], and blocking socket handles shaped like
//! `std::net` that talk to it.
//!
//! # Threads and locking
//! The stack lives behind one mutex. The driver thread takes it to feed received frames in, run timers and
//! collect frames out; a socket call takes it for the duration of one non-blocking core call. Nothing is
//! called with the lock held that takes another lock, so there is no lock order to get wrong and no deadlock.
//! A call that would block (`EAGAIN`) waits on a condition variable that the driver signals whenever some
//! socket's readiness changed; a call that queued output rings the driver's eventfd so it transmits at once.
//! A syscall-like call therefore costs one uncontended mutex acquisition, plus one `write(2)` to the eventfd
//! when it produced output.

mod driver;
mod readiness;
mod tcp;
#[cfg(feature = "tokio")]
pub mod tokio;
mod udp;

pub use driver::{NetStack, NetStackOptions};
pub use readiness::Epoll;
pub use tcp::{TcpListener, TcpStream};
pub use udp::UdpSocket;
