//! The test harness of ustack.
//!
//! - [`replay`]: pcap replay of one TCP connection through a [`ustack::Stack`], the stack playing one host of a
//!   real capture and every segment it sends compared with what that host sent.
//! - [`packetdrill`]: an interpreter for packetdrill's script language (<https://github.com/google/packetdrill>)
//!   that runs a script in-process against ustack on a virtual clock (no kernel, no TUN device, no wall clock),
//!   or against the Linux kernel in a private network namespace behind a TAP device, as packetdrill does.
//! - [`fixtures`] and [`frames`]: the captures under `pcaps/` and hand-built frames.

pub mod fixtures;
pub mod frames;
pub mod packetdrill;
pub mod replay;
