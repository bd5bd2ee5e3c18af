//! ustack: a user-space TCP/UDP/IP stack.
//!
//! - [`wire`]: packet formats (zero-copy views and emitters).
//! - [`iface`]: the sans-IO core ([`Stack`]): Ethernet, ARP, IPv4, ICMP, UDP demultiplexing, timers.
//! - [`socket`]: the BSD socket calls on [`Stack`], with Linux's semantics and errno values.
//! - [`runtime`]: a driver thread joining a stack to a device, and blocking socket handles.
//!
//! The core never reads a clock or touches a device; see `docs/DESIGN.md`.
//!
//! Functions on the path every segment takes (a socket call, the device batch, IP, the connection's input
//! and output, the frame template, the checksum) carry `#[link_section = ".text.hot.ustack"]`, so the linker
//! lays them out side by side; rare paths the compiler would inline into them (ARP, fragments, handshakes,
//! timers, retransmission, resets) are kept out of line with `#[inline(never)]` or `#[cold]` and a note
//! pointing here. Together they keep the ~22 KiB of code a round trip runs within a span whose 64-byte lines
//! fall at most eight to an instruction-cache set (`docs/DESIGN.md`, "Code placement"). Both decide where
//! code goes, nothing else.

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
pub use tcp::info::TcpInfo;
pub use tcp::layer::TcpMemory;
pub use time::{Duration, Instant};
