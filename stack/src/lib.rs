//! ustack: a user-space TCP/UDP/IP stack.
//!
//! - [`wire`]: packet formats (zero-copy views and emitters).
//! - [`iface`]: the sans-IO core ([`Stack`]): Ethernet, ARP, IPv4, ICMP, UDP demultiplexing, timers.
//! - [`socket`]: the BSD socket calls on [`Stack`], with Linux's semantics and errno values.
//! - [`runtime`]: a driver thread joining a stack to a device, and blocking socket handles.
//!
//! The core never reads a clock or touches a device; see `docs/DESIGN.md`.

pub mod errno;
pub mod iface;
pub mod rng;
pub mod runtime;
pub mod sim;
pub mod socket;
pub mod storage;
pub mod tcp;
pub mod time;
pub mod timer;
pub mod wire;

pub use errno::{Errno, SysResult};
pub use iface::{FrameSink, Stack, StackConfig};
pub use socket::{Domain, Fd, MsgFlags, Readiness, RecvMeta, Shutdown, SockOpt, SockType, SocketInfo};
pub use tcp::congestion::CongestionAlgorithm;
pub use tcp::layer::TcpMemory;
pub use time::{Duration, Instant};
