//! TCP tunables, with the Linux kernel's defaults (the sysctl each mirrors is named).

use super::congestion::CongestionAlgorithm;
use crate::time::Duration;

/// Tunables shared by every TCP connection of a stack.
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// RTO before any RTT sample (RFC 6298 section 2.1: 1 s; Linux TCP_TIMEOUT_INIT).
    pub initial_rto: Duration,
    /// Floor of the RTO (Linux TCP_RTO_MIN, 200 ms; RFC 6298 says 1 s, Linux and most stacks use less).
    pub min_rto: Duration,
    /// Ceiling of the RTO (Linux TCP_RTO_MAX, 120 s).
    pub max_rto: Duration,
    /// SYN retransmissions before `connect()` fails with ETIMEDOUT (net.ipv4.tcp_syn_retries).
    pub syn_retries: u32,
    /// SYN-ACK retransmissions before a half-open connection is dropped (net.ipv4.tcp_synack_retries).
    pub synack_retries: u32,
    /// Retransmissions of data before the connection is aborted (net.ipv4.tcp_retries2).
    pub retries2: u32,
    /// Longest an acknowledgment is delayed (RFC 9293 section 3.8.6.3 allows up to 500 ms; Linux's floor is 40 ms).
    pub delayed_ack: Duration,
    /// Segments acknowledged at once at the start of a connection, to speed up the peer's slow start (Linux
    /// TCP_MAX_QUICKACKS).
    pub quick_acks: u32,
    /// Maximum segment lifetime; TIME_WAIT lasts 2*MSL (Linux: a fixed 60 s TCP_TIMEWAIT_LEN).
    pub msl: Duration,
    /// How long an orphaned connection may sit in FIN_WAIT_2 (net.ipv4.tcp_fin_timeout, TCP_LINGER2).
    pub fin_timeout: Duration,
    /// Keepalive: idle time, probe interval and probe count (net.ipv4.tcp_keepalive_time/intvl/probes).
    pub keepalive_idle: Duration,
    pub keepalive_interval: Duration,
    pub keepalive_probes: u32,
    /// TIME_WAIT entries kept at most; beyond, a closing connection skips TIME_WAIT and the overflow is
    /// counted (net.ipv4.tcp_max_tw_buckets).
    pub max_time_wait: usize,
    /// Default receive and send buffer sizes of a new socket.
    pub rcvbuf_default: usize,
    pub sndbuf_default: usize,
    /// The largest a send buffer grows to by itself, following the congestion window, unless the application
    /// set `SO_SNDBUF` (net.ipv4.tcp_wmem's maximum).
    pub sndbuf_autotune_max: usize,
    /// The largest a receive buffer grows to by itself, following what the application reads per round trip,
    /// unless the application set `SO_RCVBUF` (net.ipv4.tcp_rmem's maximum).
    pub rcvbuf_autotune_max: usize,
    /// The most that autotuning may grow all connections' buffers by, together (Linux bounds TCP's memory
    /// with net.ipv4.tcp_mem): past it, buffers keep their size until connections end and give it back.
    pub autotune_total_max: usize,
    /// Largest sizes `setsockopt` accepts before doubling (net.core.rmem_max / wmem_max).
    pub rmem_max: usize,
    pub wmem_max: usize,
    /// Window scale shift we offer (Linux's choice for its default buffers is 7).
    pub window_scale: u8,
    /// Offer RFC 7323 timestamps and RFC 2018 SACK (net.ipv4.tcp_timestamps, tcp_sack).
    pub timestamps: bool,
    pub sack: bool,
    /// Initial congestion window in segments (RFC 6928; 10 applies its byte cap of max(2*MSS, 14600)).
    pub initial_window: usize,
    /// Congestion control of a new socket, changed per socket with `TCP_CONGESTION`
    /// (net.ipv4.tcp_congestion_control; Linux's default is CUBIC).
    pub congestion: CongestionAlgorithm,
    /// Challenge ACKs sent per second, at most (RFC 5961 section 7; net.ipv4.tcp_challenge_ack_limit).
    pub challenge_ack_limit: u32,
    /// Out-of-order ranges held per connection, at most.
    pub max_ooo_ranges: usize,
    /// Upper bound of `listen()`'s backlog (net.core.somaxconn).
    pub somaxconn: usize,
    /// Largest TCP packet (IP header included) the device cuts into MTU-sized segments for us, or 0 when it
    /// has no segmentation offload (Linux's per-device `gso_max_size`). The runtime sets it from the device.
    pub gso_max_size: usize,
    /// Largest TCP packet (IP header included) TCP builds when the device cannot cut it: the stack then
    /// cuts it into segments itself, at the last moment, while writing the frames (Linux's generic
    /// segmentation offload, GSO, which its TCP uses whatever the device). TCP's per-segment work — the
    /// windows, the timers, the loss-detection log, the header — is then done once per super-segment.
    /// 0 turns it off.
    pub software_gso_max_size: usize,
    /// Header prediction: a segment that is the next data in order and changes nothing else takes a short
    /// path (`Connection::is_predicted`). On by default; off, every segment takes the general path — for
    /// tests that check the two agree.
    pub header_prediction: bool,
    /// HyStart++ (RFC 9406): the first slow start ends when the round trip rises, before the window overruns
    /// the path's queue. On by default, as Linux's CUBIC runs its HyStart; off, slow start runs to the first
    /// loss.
    pub hystart: bool,
    /// How many emptied rings keep their storage, and how many bytes of it between them, for their
    /// connections' next bytes (see `tcp/idle_rings.rs`); beyond, the ring idle longest gives its storage back
    /// to the stack's pool. 0 gives every ring's storage back the moment it empties. The defaults (8 rings,
    /// 2 MiB) keep four busy request/response connections' rings at the default size.
    pub idle_rings_kept: usize,
    pub idle_ring_bytes_kept: usize,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(120),
            syn_retries: 6,
            synack_retries: 5,
            retries2: 15,
            delayed_ack: Duration::from_millis(40),
            quick_acks: 16,
            msl: Duration::from_secs(30),
            fin_timeout: Duration::from_secs(60),
            keepalive_idle: Duration::from_secs(7200),
            keepalive_interval: Duration::from_secs(75),
            keepalive_probes: 9,
            max_time_wait: 262_144,
            rcvbuf_default: 262_144,
            sndbuf_default: 262_144,
            sndbuf_autotune_max: 4 << 20,
            rcvbuf_autotune_max: 6 << 20,
            autotune_total_max: 1 << 30,
            rmem_max: 4 << 20,
            wmem_max: 4 << 20,
            window_scale: 7,
            timestamps: true,
            sack: true,
            initial_window: 10,
            congestion: CongestionAlgorithm::Cubic,
            challenge_ack_limit: 1000,
            max_ooo_ranges: 64,
            somaxconn: 4096,
            gso_max_size: 0,
            software_gso_max_size: 65_535,
            header_prediction: true,
            hystart: true,
            idle_rings_kept: 8,
            idle_ring_bytes_kept: 2 << 20,
        }
    }
}
