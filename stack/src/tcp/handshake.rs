//! Opening a connection: the options of SYN and SYN-ACK (RFC 9293 section 3.7.1 for MSS, RFC 7323 for window
//! scale and timestamps, RFC 2018 for SACK-permitted) and the TCB each side starts with.

use super::assembler::Assembler;
use super::config::TcpConfig;
use super::congestion::CongestionControl;
use super::connection::{ConnOptions, Connection, Negotiated, State, Timestamps};
use super::idle_rings::Listed;
use super::rcv_autotune::RcvAutotune;
use super::resent::ResentBytes;
use super::rtt::RttEstimator;
use super::seq::SeqNum;
use crate::storage::ring_buffer::{RingBuffer, PAGE};
use crate::time::Instant;
use crate::wire::tcp::{TcpOptions, MAX_WINDOW_SCALE};
use std::net::SocketAddrV4;

/// RFC 9293 section 3.7.1 (MUST-15): without an MSS option the send MSS is 536 for IPv4.
pub const DEFAULT_IPV4_MSS: u16 = 536;

/// Bytes of the timestamp option in every segment once negotiated (NOP, NOP, kind, length, two values).
pub const TIMESTAMP_OPTION_LEN: usize = 12;

/// The options of a SYN we send.
pub fn syn_options(config: &TcpConfig, our_mss: u16, tsval: u32) -> TcpOptions {
    TcpOptions {
        mss: Some(our_mss),
        window_scale: (config.window_scale > 0).then_some(config.window_scale.min(MAX_WINDOW_SCALE)),
        sack_permitted: config.sack,
        timestamps: config.timestamps.then_some((tsval, 0)),
        ..TcpOptions::default()
    }
}

/// The options of a SYN-ACK: only those the peer's SYN offered (RFC 7323 sections 2.2 and 3.2, RFC 2018
/// section 2).
pub fn syn_ack_options(negotiated: &Negotiated, tsval: u32) -> TcpOptions {
    TcpOptions {
        mss: Some(negotiated.our_mss),
        window_scale: (negotiated.snd_wscale_offered()).then_some(negotiated.rcv_wscale),
        sack_permitted: negotiated.sack_ok,
        timestamps: negotiated.ts.map(|ts| (tsval, ts.recent)),
        ..TcpOptions::default()
    }
}

impl Negotiated {
    /// True when window scaling is in use (both sides sent the option).
    pub fn snd_wscale_offered(&self) -> bool {
        self.scaling
    }
}

/// Settles the options from the peer's SYN (or SYN-ACK) and what we offered.
pub fn negotiate(
    config: &TcpConfig,
    our_mss: u16,
    peer: &TcpOptions,
    now: Instant,
    ts_offset: u32,
    we_offered: &TcpOptions,
) -> Negotiated {
    let ts = match (peer.timestamps, we_offered.timestamps.is_some() || config.timestamps) {
        (Some((tsval, _)), true) => Some(Timestamps { recent: tsval, recent_at: now, offset: ts_offset }),
        _ => None,
    };
    let scaling = peer.window_scale.is_some() && we_offered.window_scale.is_some();
    let peer_mss = peer.mss.unwrap_or(DEFAULT_IPV4_MSS).max(64);
    let mut send_mss = usize::from(peer_mss.min(our_mss));
    if ts.is_some() {
        send_mss -= TIMESTAMP_OPTION_LEN;
    }
    Negotiated {
        send_mss,
        our_mss,
        snd_wscale: if scaling { peer.window_scale.unwrap_or(0).min(MAX_WINDOW_SCALE) } else { 0 },
        rcv_wscale: if scaling { we_offered.window_scale.unwrap_or(0) } else { 0 },
        scaling,
        ts,
        sack_ok: peer.sack_permitted && we_offered.sack_permitted,
    }
}

/// The window carried by our SYN or SYN-ACK: never scaled (RFC 7323 section 2.2), and like Linux a whole
/// number of segments. (A SYN-ACK agreeing to timestamps counts segments of MSS less the option: pass that.)
pub fn syn_window(rcvbuf: usize, our_mss: u16) -> u16 {
    let mss = usize::from(our_mss.max(1));
    let window = rcvbuf.min(u16::MAX as usize);
    ((window / mss) * mss).max(mss.min(u16::MAX as usize)) as u16
}

/// Buffers and sizes a new connection starts with.
#[derive(Debug, Clone, Copy)]
pub struct Buffers {
    pub rcvbuf: usize,
    pub sndbuf: usize,
}

/// Where a new connection's send ring starts in its storage: a cache line picked by the initial sequence
/// number, which is random (RFC 6528), so that connections, and the two ends of one connection, hold their
/// stream bytes at different offsets modulo 4 KiB (see the note on 4K aliasing in `storage::ring_buffer`).
/// The receive ring starts [`HALF_PAGE`] further: one pooled buffer serves both rings in turn, and two
/// positions a multiple of 4 KiB apart would alias.
fn ring_start(iss: SeqNum) -> usize {
    (iss.0 as usize % 64) * 64
}

/// Half of a 4 KiB page.
const HALF_PAGE: usize = PAGE / 2;

impl Connection {
    /// A TCB with every variable at its starting value, before either side's options are known.
    #[allow(clippy::too_many_arguments)]
    fn blank(
        now: Instant,
        config: &TcpConfig,
        state: State,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: SeqNum,
        negotiated: Negotiated,
        opts: ConnOptions,
        buffers: Buffers,
    ) -> Connection {
        Connection {
            state,
            local,
            remote,
            fd: None,
            listener: None,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            snd_wl1: SeqNum(0),
            snd_wl2: iss,
            max_snd_wnd: 0,
            irs: SeqNum(0),
            rcv_nxt: SeqNum(0),
            rcv_adv: SeqNum(0),
            last_ack_sent: SeqNum(0),
            rcv_ssthresh: usize::from(syn_window(buffers.rcvbuf, negotiated.our_mss)),
            pushed_seq: iss,
            negotiated,
            tx: RingBuffer::with_start(buffers.sndbuf, ring_start(iss)),
            rx: RingBuffer::with_start(buffers.rcvbuf, ring_start(iss) + HALF_PAGE),
            ooo: Assembler::new(config.max_ooo_ranges),
            rcv_tune: RcvAutotune::new(now, SeqNum(0), usize::from(negotiated.our_mss), buffers.rcvbuf),
            ooo_fin: None,
            idle_listed: Listed::default(),
            dsack: None,
            last_oow_ack: None,
            fin_seq: None,
            peer_fin: false,
            rto_at: None,
            persist_at: None,
            delack_at: None,
            keepalive_at: None,
            linger_at: None,
            timer: None,
            rtt: RttEstimator::new(config.initial_rto, config.min_rto, config.max_rto),
            rtt_probe: None,
            retries: 0,
            probes: 0,
            cc: CongestionControl::for_connection(
                opts.congestion,
                negotiated.send_mss,
                config.initial_window,
                config.hystart,
            ),
            retransmit_now: false,
            snd_sml: iss,
            cwnd_limited: false,
            sacked: Default::default(),
            recovery_next: iss,
            recovery_rexmit_bytes: 0,
            rack: Default::default(),
            prr: Default::default(),
            rack_at: None,
            pto_at: None,
            tlp_probe_now: false,
            tlp_end: None,
            tlp_retrans: false,
            pto_restart: false,
            retrans_stamp: None,
            resent: ResentBytes::default(),
            ack_now: false,
            probe_now: false,
            unacked_segments: 0,
            quick_acks: config.quick_acks.min(u32::from(u16::MAX)) as u16,
            autotuned: 0,
            last_recv: now,
            error: None,
            soft_error: None,
            opts,
            shut_rd: false,
        }
    }

    /// An active open (RFC 9293 section 3.10.1): a TCB in SYN-SENT whose SYN goes out on the next transmit.
    #[allow(clippy::too_many_arguments)]
    pub fn new_active(
        now: Instant,
        config: &TcpConfig,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: SeqNum,
        our_mss: u16,
        ts_offset: u32,
        opts: ConnOptions,
        buffers: Buffers,
    ) -> Connection {
        // Until the SYN-ACK arrives, only what we offer is known.
        let offered = syn_options(config, our_mss, 0);
        let negotiated = Negotiated {
            send_mss: usize::from(DEFAULT_IPV4_MSS.min(our_mss)),
            our_mss,
            snd_wscale: 0,
            rcv_wscale: offered.window_scale.unwrap_or(0),
            scaling: false,
            ts: offered.timestamps.map(|_| Timestamps { recent: 0, recent_at: now, offset: ts_offset }),
            sack_ok: offered.sack_permitted,
        };
        Connection::blank(now, config, State::SynSent, local, remote, iss, negotiated, opts, buffers)
    }

    /// A passive open completed by the final ACK of the handshake (RFC 9293 section 3.10.7.4, SYN-RECEIVED
    /// "If SND.UNA < SEG.ACK =< SND.NXT, then enter ESTABLISHED state"). The SYN-queue entry held the rest.
    #[allow(clippy::too_many_arguments)]
    pub fn new_passive(
        now: Instant,
        config: &TcpConfig,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        iss: SeqNum,
        irs: SeqNum,
        negotiated: Negotiated,
        syn_window: u16,
        peer_window: u16,
        ack_seq: SeqNum,
        opts: ConnOptions,
        buffers: Buffers,
    ) -> Connection {
        let mut c = Connection::blank(now, config, State::Established, local, remote, iss, negotiated, opts, buffers);
        c.snd_una = iss + 1;
        c.snd_nxt = iss + 1;
        c.snd_max = iss + 1;
        c.irs = irs;
        c.rcv_nxt = irs + 1;
        c.rcv_adv = c.rcv_nxt + usize::from(syn_window);
        c.rcv_ssthresh = usize::from(syn_window);
        c.start_receive_autotuning(now);
        c.pushed_seq = c.snd_nxt;
        c.last_ack_sent = c.rcv_nxt;
        c.snd_wnd = usize::from(peer_window) << c.negotiated.snd_wscale;
        c.max_snd_wnd = c.snd_wnd;
        c.snd_wl1 = ack_seq;
        c.snd_wl2 = iss + 1;
        c.arm_keepalive();
        c
    }
}
