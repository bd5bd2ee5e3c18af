//! TCP (RFC 9293), with the extensions a modern peer expects: window scaling and timestamps (RFC 7323),
//! selective acknowledgments (RFC 2018), RFC 6298 retransmission timing, CUBIC (RFC 9438, the default) or NewReno
//! (RFC 5681, RFC 6582) congestion control, RFC 6528 initial sequence numbers and RFC 5961 protection against
//! blind attacks.

pub mod assembler;
pub mod config;
pub mod congestion;
pub mod connection;
pub mod demux;
pub mod handshake;
pub mod idle_rings;
pub mod info;
pub mod input;
pub mod isn;
pub mod layer;
pub mod listener;
pub mod loss_detection;
pub mod output;
pub mod ports;
pub mod prr;
pub mod rack;
pub mod rcv_autotune;
pub mod resent;
pub mod rtt;
pub mod sack_scoreboard;
pub mod segment;
pub mod seq;
pub mod time_wait;

pub use seq::SeqNum;
