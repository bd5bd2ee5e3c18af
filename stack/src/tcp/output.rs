//! What a connection sends: its SYN or SYN-ACK, new data within the windows, retransmissions, its FIN, and
//! acknowledgments (RFC 9293 section 3.8.6 for the window rules, RFC 896 / RFC 1122 section 4.2.3.4 for
//! Nagle's algorithm and sender-side silly window avoidance).

use super::config::TcpConfig;
use super::connection::{Connection, State};
use super::handshake::{syn_ack_options, syn_options, syn_window, TIMESTAMP_OPTION_LEN};
use super::segment::{OutSegment, SegmentOut};
use super::seq::SeqNum;
use crate::iface::counters::TcpCounters;
use crate::time::Instant;
use crate::wire::tcp::{TcpFlags, TcpHeader, TcpOptions, MAX_SACK_BLOCKS};

impl Connection {
    /// Builds every segment the connection should send now into `out`.
    #[link_section = ".text.hot.ustack"]
    pub fn transmit(&mut self, now: Instant, config: &TcpConfig, out: &mut dyn SegmentOut, counters: &mut TcpCounters) {
        match self.state {
            State::SynSent => self.send_syn(now, config, out, counters, false),
            State::SynReceived => self.send_syn(now, config, out, counters, true),
            State::Closed => {}
            State::TimeWait => {
                if self.ack_now {
                    self.send_ack(now, out, counters);
                }
            }
            _ => self.transmit_synchronized(now, config, out, counters),
        }
    }

    /// The SYN (active open) or SYN-ACK (simultaneous open), when it has not gone out since SND.NXT was last
    /// set back to ISS.
    fn send_syn(
        &mut self,
        now: Instant,
        config: &TcpConfig,
        out: &mut dyn SegmentOut,
        counters: &mut TcpCounters,
        with_ack: bool,
    ) {
        if self.snd_nxt != self.iss {
            return;
        }
        let tsval = self.ts_now(now);
        let options = if with_ack {
            syn_ack_options(&self.negotiated, tsval)
        } else {
            syn_options(config, self.negotiated.our_mss, tsval)
        };
        let mut flags = TcpFlags::SYN;
        let mut ack = SeqNum(0);
        if with_ack {
            flags |= TcpFlags::ACK;
            ack = self.rcv_nxt;
        }
        let mss = if with_ack && self.negotiated.ts.is_some() {
            self.negotiated.our_mss - super::handshake::TIMESTAMP_OPTION_LEN as u16
        } else {
            self.negotiated.our_mss
        };
        let window = syn_window(self.rx.free(), mss);
        let header = TcpHeader {
            src_port: self.local.port(),
            dst_port: self.remote.port(),
            seq: self.iss,
            ack,
            flags,
            window,
            urgent: 0,
            options,
        };
        self.push_segment(out, &header, (&[], &[]));
        if with_ack {
            self.rcv_adv = self.rcv_nxt + usize::from(window);
            self.last_ack_sent = self.rcv_nxt;
        }
        counters.out_segs += 1;
        if self.retries > 0 {
            counters.retrans_segs += 1;
        } else {
            self.rtt_probe = Some((self.iss, now));
        }
        self.snd_nxt = self.iss + 1;
        self.snd_max = self.snd_max.max(self.snd_nxt);
        self.arm_rto(now);
    }

    fn transmit_synchronized(
        &mut self,
        now: Instant,
        config: &TcpConfig,
        out: &mut dyn SegmentOut,
        counters: &mut TcpCounters,
    ) {
        let mut sent_any = false;
        if self.tlp_probe_now {
            self.tlp_probe_now = false;
            sent_any |= self.send_loss_probe(now, out, counters);
        }
        if self.retransmit_now {
            self.retransmit_now = false;
            sent_any |= self.retransmit_head(now, out, counters);
        }
        sent_any |= self.send_new_data(now, config, out, counters);
        sent_any |= self.send_fin_if_due(now, out, counters);
        if self.probe_now {
            self.probe_now = false;
            let len = self.unsent().min(self.snd_wnd).min(self.data_mss());
            if len > 0 && self.snd_nxt == self.snd_una && self.state.can_send_data() {
                // The window is open, only too small for sender SWS avoidance: the override timeout sends what
                // fits (RFC 1122 section 4.2.3.4; Linux's tcp_write_wakeup).
                let fin_here = self.fin_seq.is_some_and(|f| f == self.snd_nxt + len);
                self.emit_data(now, self.snd_nxt, len, fin_here, out, counters);
                self.snd_nxt += len + usize::from(fin_here);
                self.snd_max = self.snd_max.max(self.snd_nxt);
                self.persist_at = None;
                self.arm_rto(now);
            } else {
                self.send_probe(now, out, counters);
            }
            sent_any = true;
        }
        if !sent_any && (self.ack_now || self.window_update_due()) {
            self.send_ack(now, out, counters);
        }
        self.update_persist_timer(now);
        self.schedule_loss_probe(now);
        let _ = config;
    }

    /// True when `transmit` would send at most a bare ACK: no data, FIN, retransmission or probe is due.
    /// (Conservative: data held back by the windows still counts as data to send.)
    pub fn has_only_an_ack_to_send(&self) -> bool {
        self.state == State::Established
            && !self.tlp_probe_now
            && !self.retransmit_now
            && !self.probe_now
            && self.unsent() == 0
            && self.fin_seq.is_none()
    }

    /// Fast retransmit or a NewReno partial acknowledgment: resend one segment from SND.UNA.
    #[inline(never)] // off the per-segment path: see "Code placement" in docs/DESIGN.md
    fn retransmit_head(&mut self, now: Instant, out: &mut dyn SegmentOut, counters: &mut TcpCounters) -> bool {
        let outstanding_data = self.snd_max.since(self.snd_una).min(self.tx.len());
        let len = outstanding_data.min(self.data_mss());
        if len == 0 {
            return false;
        }
        let len = match self.sacked.next_sacked_start(self.snd_una) {
            Some(next) => len.min(next.since(self.snd_una)),
            None => len,
        };
        self.emit_data(now, self.snd_una, len, false, out, counters);
        counters.retrans_segs += 1;
        if self.cc.in_recovery() {
            self.recovery_next = self.recovery_next.max(self.snd_una + len);
            self.recovery_rexmit_bytes += len;
        }
        if self.rto_at.is_none() {
            self.arm_rto(now);
        }
        true
    }

    /// After a timeout moved SND.NXT back, skip what the peer holds already (its SACK blocks).
    fn skip_sacked(&mut self) {
        while self.snd_nxt.lt(self.snd_max) {
            match self.sacked.sacked_range_at(self.snd_nxt) {
                Some((_, end)) => self.snd_nxt = end.min(self.snd_max),
                None => break,
            }
        }
    }

    /// Sends new data (or data resent after a timeout moved SND.NXT back) while the windows allow.
    fn send_new_data(
        &mut self,
        now: Instant,
        config: &TcpConfig,
        out: &mut dyn SegmentOut,
        counters: &mut TcpCounters,
    ) -> bool {
        let mut sent = self.retransmit_lost(now, out, counters);
        if self.unsent() == 0 {
            return sent;
        }
        // RFC 5681 section 4.1 (Linux's tcp_slow_start_after_idle): a connection that sent nothing for an RTO
        // no longer knows the path; new data starts again from the restart window. With nothing outstanding,
        // the last segment received was the ACK of the last data, so it dates the idleness.
        let idle = self.snd_una == self.snd_max && self.rtt.rto_elapsed(self.last_recv, now);
        if idle && self.state.can_send_data() {
            self.cc.on_idle_restart(config.initial_window);
        }
        let mss = self.data_mss();
        // (No super-segment to size when one MSS holds everything: the common request and reply.)
        let limit = if self.unsent() <= mss { mss } else { self.segment_limit(config, mss) };
        loop {
            self.skip_sacked();
            let unsent = self.unsent();
            if unsent == 0 {
                break;
            }
            let in_flight = self.in_flight();
            let usable = self.usable_window();
            // RFC 7661: remember whether the congestion window (not the application or the peer's window) is
            // what stops us.
            self.cwnd_limited = usable < unsent.min(mss) && self.snd_wnd.saturating_sub(in_flight) >= unsent.min(mss);
            let mut len = unsent.min(limit).min(usable);
            if self.retransmitting() {
                if let Some(next) = self.sacked.next_sacked_start(self.snd_nxt) {
                    len = len.min(next.since(self.snd_nxt));
                }
            }
            if len == 0 {
                break;
            }
            if len > mss && !len.is_multiple_of(mss) {
                // A super-segment's last piece is a small segment on the wire: it goes now only if it could go
                // alone (Linux's tcp_mss_split_point); otherwise the super-segment stops at a whole MSS.
                let is_last = len == unsent;
                let fin_here = is_last && self.fin_seq.is_some_and(|f| f == self.snd_nxt + len);
                if self.holds_back_small(len % mss, is_last, fin_here, true) {
                    len -= len % mss;
                }
            }
            let is_last = len == unsent;
            let fin_here = is_last && self.fin_seq.is_some_and(|f| f == self.snd_nxt + len);
            if len < mss && self.holds_back_small(len, is_last, fin_here, in_flight > 0) {
                break;
            }
            let retransmission = self.snd_nxt.lt(self.snd_max);
            self.emit_data(now, self.snd_nxt, len, fin_here, out, counters);
            if retransmission {
                counters.retrans_segs += len.div_ceil(mss) as u64;
            } else {
                self.pto_restart = true;
                if self.rtt_probe.is_none() {
                    self.rtt_probe = Some((self.snd_nxt, now));
                }
            }
            // Minshall's "last small segment sent", a super-segment's small last piece included.
            if len < mss || !len.is_multiple_of(mss) {
                self.snd_sml = self.snd_nxt + len;
            }
            self.snd_nxt += len + usize::from(fin_here);
            self.snd_max = self.snd_max.max(self.snd_nxt);
            if self.rto_at.is_none() {
                self.arm_rto(now);
            }
            sent = true;
        }
        sent
    }

    /// Whether a segment of `len` bytes, less than an MSS, waits for more data or more window. Nagle (RFC 1122
    /// section 4.2.3.4) in Minshall's form, as Linux does it: a small segment waits while an earlier small
    /// segment is unacknowledged (`outstanding`: data is in flight) — unless TCP_NODELAY, or it carries our
    /// FIN (nothing more will come to fill it). Sender SWS avoidance (RFC 9293 section 3.8.6.2.1): a sliver
    /// the window allows waits when more data is queued behind it, unless it is at least half the largest
    /// window the peer offered. Resending after a timeout waits for neither.
    fn holds_back_small(&self, len: usize, is_last: bool, fin_here: bool, outstanding: bool) -> bool {
        if self.retransmitting() {
            return false;
        }
        let small_outstanding = self.snd_sml.gt(self.snd_una) && outstanding;
        let nagle = small_outstanding && !self.opts.nodelay && !fin_here;
        let sender_sws = !is_last && len < self.max_snd_wnd / 2;
        nagle || sender_sws
    }

    /// True after a timeout moved SND.NXT back: resending goes at the pace of the congestion window, not Nagle.
    fn retransmitting(&self) -> bool {
        self.snd_nxt.lt(self.snd_max)
    }

    /// Our FIN goes out once all data before it has been sent (RFC 9293 section 3.10.4).
    fn send_fin_if_due(&mut self, now: Instant, out: &mut dyn SegmentOut, counters: &mut TcpCounters) -> bool {
        let Some(fin_seq) = self.fin_seq else { return false };
        if self.snd_nxt != fin_seq {
            return false;
        }
        let retransmission = self.snd_nxt.lt(self.snd_max);
        self.emit_data(now, fin_seq, 0, true, out, counters);
        if retransmission {
            counters.retrans_segs += 1;
        }
        self.snd_nxt = fin_seq + 1;
        self.snd_max = self.snd_max.max(self.snd_nxt);
        if self.rto_at.is_none() {
            self.arm_rto(now);
        }
        true
    }

    /// A segment of `len` data bytes at `seq` (which must be within the send buffer), with the current ACK.
    #[link_section = ".text.hot.ustack"]
    pub(crate) fn emit_data(
        &mut self,
        now: Instant,
        seq: SeqNum,
        len: usize,
        fin: bool,
        out: &mut dyn SegmentOut,
        counters: &mut TcpCounters,
    ) {
        let offset = seq.since(self.snd_una);
        let mut flags = TcpFlags::ACK;
        if fin {
            flags |= TcpFlags::FIN;
        }
        // PSH when this segment empties what the application gave us (RFC 9293 section 3.9.1, MAY-16), and, as
        // Linux's forced push does, whenever more than half the peer's largest window went out unpushed.
        let end = seq + len;
        if len > 0 && (offset + len == self.tx.len() || end.since(self.pushed_seq.min(end)) > self.max_snd_wnd / 2) {
            flags |= TcpFlags::PSH;
            self.pushed_seq = self.pushed_seq.max(end);
        }
        let header = self.header(now, seq, flags);
        let (a, b) = self.tx.peek(offset, len);
        // Linux's OutSegs counts segments on the wire (`tcp_skb_pcount`), a super-segment as its pieces.
        counters.out_segs += self.push_segment(out, &header, (a, b)) as u64;
        self.after_ack_sent();
        let retransmission = seq.lt(self.snd_max);
        if len > 0 && self.negotiated.sack_ok {
            // A resend after a timeout may run on past SND.MAX into bytes never sent: those are new.
            let end = seq + len;
            let resent_end = if retransmission { end.min(self.snd_max) } else { seq };
            self.rack.on_sent(seq, resent_end, now, true);
            self.rack.on_sent(resent_end, end, now, false);
        }
        if self.cc.in_recovery() {
            self.prr.on_sent(len);
        }
        if retransmission && self.cc.in_recovery() {
            self.retrans_stamp = self.retrans_stamp.or(Some(self.ts_now(now)));
            self.resent.on_resent(seq, (seq + len).min(self.snd_max));
        }
    }

    /// A bare acknowledgment `<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>`. SND.NXT in the RFC's sense is the
    /// highest sequence number sent (`snd_max` here: our `snd_nxt` moves back while resending after a timeout),
    /// so that the peer never finds our ACK behind its RCV.NXT and unacceptable.
    pub fn send_ack(&mut self, now: Instant, out: &mut dyn SegmentOut, counters: &mut TcpCounters) {
        let header = self.header(now, self.snd_max, TcpFlags::ACK);
        self.push_segment(out, &header, (&[], &[]));
        counters.out_segs += 1;
        self.after_ack_sent();
    }

    /// A zero-window or keepalive probe: `<SEQ=SND.UNA-1><ACK=RCV.NXT>`, which the peer must answer.
    #[cold]
    fn send_probe(&mut self, now: Instant, out: &mut dyn SegmentOut, counters: &mut TcpCounters) {
        let header = self.header(now, self.snd_una - 1, TcpFlags::ACK);
        self.push_segment(out, &header, (&[], &[]));
        counters.out_segs += 1;
        self.after_ack_sent();
    }

    /// An abort: `<SEQ=SND.NXT><CTL=RST,ACK>` (RFC 9293 section 3.10.4 ABORT, RFC 2525 section 2.17).
    #[cold]
    pub fn send_reset(&mut self, now: Instant, out: &mut dyn SegmentOut, counters: &mut TcpCounters) {
        let mut header = self.header(now, self.snd_max, TcpFlags::RST | TcpFlags::ACK);
        header.window = 0;
        header.options = TcpOptions::default();
        self.push_segment(out, &header, (&[], &[]));
        counters.out_segs += 1;
        counters.out_rsts += 1;
    }

    /// The header every synchronized segment shares: our window (scaled), the ACK, and the options that go on
    /// every segment (timestamps, SACK blocks).
    #[link_section = ".text.hot.ustack"]
    fn header(&mut self, now: Instant, seq: SeqNum, flags: TcpFlags) -> TcpHeader {
        let field = self.window_field();
        let mut options = TcpOptions::default();
        if let Some(ts) = self.negotiated.ts {
            options.timestamps = Some((self.ts_now(now), ts.recent));
        }
        if self.negotiated.sack_ok && (!self.ooo.is_empty() || self.dsack.is_some()) {
            let mut seq_blocks = [(SeqNum(0), SeqNum(0)); MAX_SACK_BLOCKS];
            let mut n = 0;
            // RFC 2883 section 4: a D-SACK block goes first, reported once.
            if let Some(d) = self.dsack.take() {
                seq_blocks[0] = d;
                n = 1;
            }
            let mut blocks = [(0usize, 0usize); MAX_SACK_BLOCKS];
            let held = self.ooo.sack_blocks_into(&mut blocks[..MAX_SACK_BLOCKS - n]);
            for (s, e) in &blocks[..held] {
                seq_blocks[n] = (self.rcv_nxt + *s, self.rcv_nxt + *e);
                n += 1;
            }
            options.set_sack_blocks(&seq_blocks[..n]);
        }
        TcpHeader {
            src_port: self.local.port(),
            dst_port: self.remote.port(),
            seq,
            ack: self.rcv_nxt,
            flags,
            window: field as u16,
            urgent: 0,
            options,
        }
    }

    /// The window field: the window to advertise in 2^scale-byte units. RFC 7323 section 2.4: when the edge
    /// we offered last is not on a unit boundary, the field can only say "a little more" or "a little less".
    /// Like Linux's tcp_select_window we round up, so the edge does not move left (RFC 9293 section
    /// 3.8.6.2.2) — but only while the buffer holds the rounded-up window: promising space we lack would
    /// have us refuse data inside our own offer. Otherwise we round down, retracting by less than a unit,
    /// and keep honouring every segment inside the furthest edge ever offered, which is what `rcv_adv`
    /// records (it never moves left, and never past the buffer's free space).
    fn window_field(&mut self) -> usize {
        let scale = self.negotiated.rcv_wscale;
        let unit = 1usize << scale;
        let wanted = self.window_to_advertise();
        let room = self.rx.free();
        let mut field = wanted.div_ceil(unit);
        if field * unit > room {
            field = wanted / unit;
        }
        let field = field.min(u16::MAX as usize);
        let edge = self.rcv_nxt + (field << scale);
        if edge.gt(self.rcv_adv) {
            self.rcv_adv = edge;
        }
        field
    }

    /// The most payload a segment ever carries without segmentation offload: the MSS with no SACK blocks
    /// (cheaper than [`Connection::data_mss`], where only this bound matters).
    pub(crate) fn largest_segment(&self) -> usize {
        let ts_len = if self.negotiated.ts.is_some() { TIMESTAMP_OPTION_LEN } else { 0 };
        self.negotiated.send_mss + ts_len
    }

    /// The payload a segment can carry with the options it carries now (timestamps, and SACK blocks while
    /// out-of-order data is held), so that headers and data never exceed the MTU (Linux's `tcp_current_mss`).
    #[inline]
    pub(crate) fn data_mss(&self) -> usize {
        let sack_blocks_due = self.negotiated.sack_ok && (!self.ooo.is_empty() || self.dsack.is_some());
        if !sack_blocks_due {
            // The timestamps, if any, were deducted at the handshake.
            return self.negotiated.send_mss.max(1);
        }
        self.data_mss_with_sack_blocks()
    }

    /// [`Connection::data_mss`] while SACK blocks ride along.
    #[inline(never)] // off the per-segment path: see "Code placement" in docs/DESIGN.md
    fn data_mss_with_sack_blocks(&self) -> usize {
        let mut options = TcpOptions::default();
        let mut ts_len = 0;
        if self.negotiated.ts.is_some() {
            options.timestamps = Some((0, 0));
            ts_len = TIMESTAMP_OPTION_LEN; // already deducted from send_mss at the handshake
        }
        let mut blocks = [(0usize, 0usize); MAX_SACK_BLOCKS];
        let n = self.ooo.sack_blocks_into(&mut blocks) + usize::from(self.dsack.is_some());
        options.set_sack_blocks(&[(SeqNum(0), SeqNum(0)); MAX_SACK_BLOCKS][..n.min(MAX_SACK_BLOCKS)]);
        (self.negotiated.send_mss + ts_len).saturating_sub(options.len()).max(1)
    }

    /// The most payload one segment may carry now, given the MSS `mss` ([`Connection::data_mss`]): as many
    /// whole MSS as fit in one super-segment — of the device's size when it cuts segments itself
    /// (`TcpConfig::gso_max_size`), of `TcpConfig::software_gso_max_size` when the stack cuts them — or one
    /// MSS. Linux sizes its TSO and GSO bursts the same way (`tcp_tso_autosize`, without the pacing).
    /// Segments to ourselves are never super: they come straight back in through the loopback queue.
    pub(crate) fn segment_limit(&self, config: &TcpConfig, mss: usize) -> usize {
        let max_size = if config.gso_max_size > 0 { config.gso_max_size } else { config.software_gso_max_size };
        let local = self.remote.ip() == self.local.ip() || self.remote.ip().is_loopback();
        if max_size == 0 || local {
            return mss;
        }
        // Room for the IP header and the longest TCP header around the payload.
        let whole_segments = max_size.saturating_sub(20 + 60) / mss;
        whole_segments.max(1) * mss
    }

    /// Builds a segment of this connection, with its socket's IP options, and returns how many segments it
    /// makes on the wire. One larger than an MSS is a super-segment (see [`Connection::segment_limit`]),
    /// cut at the MSS of its options.
    fn push_segment(&self, out: &mut dyn SegmentOut, header: &TcpHeader, payload: (&[u8], &[u8])) -> usize {
        let mss = if payload.0.is_empty() && payload.1.is_empty() { usize::MAX } else { self.data_mss() };
        let segment = OutSegment {
            local: self.local,
            remote: self.remote,
            header,
            payload,
            mss,
            ttl: self.opts.ttl,
            tos: self.opts.tos,
        };
        out.push(&segment);
        segment.pieces()
    }

    /// Any segment with ACK settles pending acknowledgments.
    fn after_ack_sent(&mut self) {
        self.ack_now = false;
        self.delack_at = None;
        self.unacked_segments = 0;
        self.last_ack_sent = self.rcv_nxt;
    }

    /// RFC 9293 section 3.8.6.1: with data waiting and nothing in flight, but a window too small to send
    /// into — zero, or open by less than sender SWS avoidance lets out (RFC 1122 section 4.2.3.4's "override
    /// timeout") — probe periodically, backing off, so that a lost window update cannot deadlock the
    /// connection.
    fn update_persist_timer(&mut self, now: Instant) {
        let unsent = self.unsent();
        let stalled = unsent > 0
            && self.snd_nxt == self.snd_una
            && self.snd_max == self.snd_una
            && self.snd_wnd < unsent.min(self.data_mss());
        if stalled {
            if self.persist_at.is_none() {
                self.rto_at = None;
                self.persist_at = Some(now + self.rtt.rto());
            }
        } else {
            self.persist_at = None;
        }
    }
}
