//! SEGMENT ARRIVES (RFC 9293 section 3.10.7) for a connection that has a TCB: SYN-SENT (3.10.7.3) and the
//! synchronized states (3.10.7.4), checked in the RFC's order — sequence number, RST, SYN, ACK, text, FIN —
//! with RFC 5961's defences against blind in-window attacks and RFC 7323's PAWS.

use super::config::TcpConfig;
use super::congestion::{AckAction, AckRtt, CongestionControl, DupAckAction};
use super::connection::{Connection, Outcome, State, Timestamps};
use super::handshake::{negotiate, syn_options};
use super::rcv_autotune::RcvAutotune;
use super::seq::SeqNum;
use crate::errno::Errno;
use crate::iface::counters::TcpCounters;
use crate::iface::rate_limit::TokenBucket;
use crate::time::{Duration, Instant};
use crate::wire::tcp::{TcpFlags, TcpHeader, MAX_OPTIONS_LEN};

/// RFC 7323 section 5.5: a TS.Recent older than 24 days is too old to judge by.
const PAWS_IDLE_LIMIT: Duration = Duration::from_secs(24 * 24 * 3600);

/// The least time between two answers to out-of-window segments without data (Linux's tcp_invalid_ratelimit).
const OOW_ACK_INTERVAL: Duration = Duration::from_millis(500);

/// How soon a SYN is resent after an unacceptable ACK in SYN-SENT (Linux's TCP_TIMEOUT_MIN, two jiffies).
const QUICK_SYN_RETRY: Duration = Duration::from_millis(8);

/// Ticks a timestamp may lag TS.Recent before PAWS discards the segment (Linux's TCP_PAWS_WINDOW).
const PAWS_WINDOW: i32 = 1;

/// What the layer around a connection lends it while a segment is processed.
pub struct InputContext<'a> {
    pub config: &'a TcpConfig,
    pub counters: &'a mut TcpCounters,
    /// RFC 5961 section 7: challenge ACKs are rate-limited.
    pub challenge_acks: &'a mut TokenBucket,
    /// Our MSS for this path (from the interface MTU).
    pub our_mss: u16,
    /// What autotuning has grown all connections' buffers by (against `TcpConfig::autotune_total_max`).
    pub autotuned_total: &'a mut usize,
}

/// The result of processing one segment: what became of the connection, and whether a RST must answer it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Processed {
    pub outcome: Outcome,
    /// Send `<SEQ=seq><CTL=RST>` (RFC 9293's reply to an unacceptable ACK in a non-synchronized state).
    pub reset_reply: Option<SeqNum>,
}

impl Processed {
    fn alive() -> Self {
        Processed { outcome: Outcome::Alive, reset_reply: None }
    }
    fn outcome(outcome: Outcome) -> Self {
        Processed { outcome, reset_reply: None }
    }
}

impl Connection {
    /// Processes one segment addressed to this connection.
    pub fn on_segment(&mut self, now: Instant, seg: &TcpHeader, payload: &[u8], ctx: &mut InputContext) -> Processed {
        self.last_recv = now;
        self.probes = 0;
        let result = match self.state {
            State::SynSent => self.on_segment_syn_sent(now, seg, payload, ctx),
            _ => self.on_segment_synchronized(now, seg, payload, ctx),
        };
        if self.opts.keepalive && self.state.is_synchronized() {
            self.arm_keepalive();
        }
        result
    }

    /// RFC 9293 section 3.10.7.3, SYN-SENT.
    #[inline(never)] // off the per-segment path: see "Code placement" in docs/DESIGN.md
    fn on_segment_syn_sent(
        &mut self,
        now: Instant,
        seg: &TcpHeader,
        payload: &[u8],
        ctx: &mut InputContext,
    ) -> Processed {
        let flags = seg.flags;
        // First, check the ACK bit: an ACK of something we never sent gets a reset, unless it is one.
        if flags.contains(TcpFlags::ACK) && (seg.ack.le(self.iss) || seg.ack.gt(self.snd_max)) {
            // Linux (tcp_rcv_synsent_state_process): whatever answered with a wrong ACK may have flushed a stale
            // connection; if our first SYN is still unanswered, resend it soon instead of after the full RTO.
            if self.retries == 0 {
                self.rto_at = Some(now + QUICK_SYN_RETRY);
            }
            if flags.contains(TcpFlags::RST) {
                return Processed::alive();
            }
            return Processed { outcome: Outcome::Alive, reset_reply: Some(seg.ack) };
        }
        let ack_ok = flags.contains(TcpFlags::ACK);
        // Second, the RST bit: with an acceptable ACK the connection is refused (RFC 5961 section 3.2 keeps this
        // for SYN-SENT, where the ACK check is the defence).
        if flags.contains(TcpFlags::RST) {
            if ack_ok {
                ctx.counters.attempt_fails += 1;
                return Processed::outcome(Outcome::Gone(Some(Errno::ECONNREFUSED)));
            }
            return Processed::alive();
        }
        // Fourth, the SYN bit.
        if !flags.contains(TcpFlags::SYN) {
            return Processed::alive();
        }
        self.irs = seg.seq;
        self.rcv_nxt = seg.seq + 1;
        let offered = syn_options(ctx.config, self.negotiated.our_mss, 0);
        let ts_offset = self.negotiated.ts.map_or(0, |t| t.offset);
        self.negotiated = negotiate(ctx.config, self.negotiated.our_mss, &seg.options, now, ts_offset, &offered);
        self.cc = CongestionControl::for_connection(
            self.opts.congestion,
            self.negotiated.send_mss,
            ctx.config.initial_window,
            ctx.config.hystart,
        );
        if ack_ok {
            // Our SYN is acknowledged: ESTABLISHED, and ACK the peer's SYN at once.
            self.snd_una = seg.ack;
            if let Some(ts) = seg.options.timestamps.filter(|_| self.negotiated.ts.is_some()) {
                self.sample_rtt_from_timestamp(now, ts.1);
            } else if self.retries == 0 {
                if let Some((_, sent_at)) = self.rtt_probe {
                    self.rtt.sample(now.saturating_since(sent_at));
                }
            }
            self.rtt_probe = None;
            self.retries = 0;
            self.rtt.reset_backoff();
            self.rto_at = None;
            // RFC 7323 section 2.2: the window of a SYN is never scaled.
            self.snd_wnd = usize::from(seg.window);
            self.max_snd_wnd = self.snd_wnd;
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = seg.ack;
            self.state = State::Established;
            self.rcv_adv = self.rcv_nxt;
            self.rcv_ssthresh = usize::from(super::handshake::syn_window(self.rx.capacity(), self.negotiated.our_mss));
            self.start_receive_autotuning(now);
            self.pushed_seq = self.snd_una;
            self.ack_now = true;
            ctx.counters.active_opens += 1;
            self.arm_keepalive();
            if !payload.is_empty() {
                self.accept_text(now, self.rcv_nxt, payload, ctx);
            }
            return Processed::outcome(Outcome::Established);
        }
        // A SYN without ACK: simultaneous open (RFC 9293 section 3.5, figure 8). Send SYN-ACK from SYN-RECEIVED.
        self.state = State::SynReceived;
        self.snd_wnd = usize::from(seg.window);
        self.snd_wl1 = seg.seq;
        self.snd_nxt = self.iss; // resend our SYN, now with ACK
        self.rcv_adv = self.rcv_nxt;
        Processed::alive()
    }

    /// RFC 9293 section 3.10.7.4, every state after SYN-SENT.
    fn on_segment_synchronized(
        &mut self,
        now: Instant,
        seg: &TcpHeader,
        payload: &[u8],
        ctx: &mut InputContext,
    ) -> Processed {
        if ctx.config.header_prediction && self.is_predicted(seg, payload) {
            ctx.counters.header_prediction_hits += 1;
            return self.receive_predicted(now, seg, payload, ctx);
        }
        let flags = seg.flags;
        let seg_len =
            payload.len() + usize::from(flags.contains(TcpFlags::SYN)) + usize::from(flags.contains(TcpFlags::FIN));

        // RFC 7323 section 5.3, PAWS: a segment whose timestamp is older than TS.Recent is a stale duplicate.
        // As Linux does (tcp_paws_discard), a timestamp one tick old is tolerated, and so is a reordered pure
        // duplicate ACK (tcp_disordered_ack): discarding those only forces needless ACKs.
        if let (Some(ts), Some((tsval, _))) = (self.negotiated.ts, seg.options.timestamps) {
            let behind = ts.recent.wrapping_sub(tsval) as i32;
            let disordered_ack = payload.is_empty()
                && flags == TcpFlags::ACK
                && seg.seq == self.rcv_nxt
                && seg.ack == self.snd_una
                && u64::try_from(behind).unwrap_or(0) <= self.rtt.rto().as_millis() as u64;
            if !flags.contains(TcpFlags::RST)
                && behind > PAWS_WINDOW
                && !disordered_ack
                && now.saturating_since(ts.recent_at) < PAWS_IDLE_LIMIT
            {
                ctx.counters.paws_estab += 1;
                self.ack_now = true;
                return Processed::alive();
            }
        }

        // Simultaneous open (RFC 9293 section 3.5, figure 8, line 6): in SYN-RECEIVED the peer's SYN-ACK —
        // its SYN again, now acknowledging ours — completes the handshake. Its sequence number is RCV.NXT-1, so
        // the acceptability test below would refuse it.
        if self.state == State::SynReceived
            && flags.contains(TcpFlags::SYN | TcpFlags::ACK)
            && seg.seq == self.irs
            && seg.ack == self.snd_max
        {
            return self.complete_simultaneous_open(now, seg, ctx);
        }

        // First, check the sequence number (RFC 9293 section 3.10.7.4, the four cases of acceptability).
        let window = self.receive_window() as u32;
        let acceptable = match (seg_len, window) {
            (0, 0) => seg.seq == self.rcv_nxt,
            (0, _) => seg.seq.in_window(self.rcv_nxt, window),
            (_, 0) => false,
            (_, _) => {
                seg.seq.in_window(self.rcv_nxt, window) || (seg.seq + (seg_len - 1)).in_window(self.rcv_nxt, window)
            }
        };
        // "If the RCV.WND is zero ... special allowance should be made to accept valid ACKs, URGs, and RSTs":
        // a segment at exactly RCV.NXT is processed for its control bits, its text dropped.
        let zero_window_probe = !acceptable && window == 0 && seg.seq == self.rcv_nxt;
        if !acceptable && !zero_window_probe {
            return self.refuse_unacceptable(now, seg, payload);
        }

        self.update_ts_recent(now, seg);

        // Second, check the RST bit.
        if flags.contains(TcpFlags::RST) {
            return self.on_reset(seg, ctx);
        }

        // Fourth, check the SYN bit (RFC 5961 section 4.2): any SYN in a synchronized state gets a challenge ACK.
        if flags.contains(TcpFlags::SYN) {
            return self.on_synchronized_syn(seg, ctx);
        }

        // Fifth, check the ACK field.
        if !flags.contains(TcpFlags::ACK) {
            return Processed::alive();
        }
        let mut outcome = Outcome::Alive;
        if self.state == State::SynReceived {
            if seg.ack.le(self.snd_una) || seg.ack.gt(self.snd_max) {
                return Processed { outcome: Outcome::Alive, reset_reply: Some(seg.ack) };
            }
            self.state = State::Established;
            self.start_receive_autotuning(now);
            self.snd_wnd = usize::from(seg.window) << self.negotiated.snd_wscale;
            self.max_snd_wnd = self.snd_wnd;
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = seg.ack;
            ctx.counters.active_opens += 1;
            outcome = Outcome::Established;
        }
        if let Some(early) = self.process_ack(now, seg, payload, ctx) {
            return early;
        }

        if self.fin_seq.is_some_and(|f| self.snd_una.gt(f)) {
            if let Some(done) = self.after_our_fin_acked(now, ctx) {
                return done;
            }
        }

        // Seventh, process the segment text (URG, the sixth step, is not supported: urgent data is ordinary
        // data here, as RFC 6093 recommends new applications treat it).
        let mut data = payload;
        let mut seq = seg.seq;
        if zero_window_probe {
            data = &[];
            // RFC 9293 section 3.8.6.1: a probe into a zero window is answered with the next expected sequence
            // number and the (still zero) window.
            if !payload.is_empty() {
                self.ack_now = true;
            }
        }
        if !data.is_empty() {
            if !self.state.can_receive() {
                // Text after the peer's FIN (CLOSE-WAIT, CLOSING, LAST-ACK) is ignored.
            } else if self.fd.is_none() && self.fin_seq.is_some() {
                // RFC 9293 section 3.10.4 / Linux: new data for an application that closed is answered with RST.
                ctx.counters.aborts_on_data += 1;
                return Processed::outcome(Outcome::Abort(None));
            } else {
                // Trim what we already have (RFC 9293 section 3.10.7.4: "segments with higher beginning sequence
                // numbers may be held"; earlier bytes are duplicates).
                if seq.lt(self.rcv_nxt) {
                    let dup = self.rcv_nxt.since(seq).min(data.len());
                    // RFC 2883: report the duplicate in the first SACK block (a D-SACK), so the sender can tell
                    // a spurious retransmission from a loss.
                    self.note_duplicate(seq, seq + dup);
                    data = &data[dup..];
                    seq = self.rcv_nxt;
                }
                let in_order = seq == self.rcv_nxt;
                self.accept_text(now, seq, data, ctx);
                if in_order {
                    self.autotune_receive_buffer(now, seg, data.len(), ctx);
                }
            }
        }

        // Eighth, check the FIN bit.
        if flags.contains(TcpFlags::FIN) {
            return self.on_fin_bit(now, seg, payload, ctx, outcome);
        }
        Processed::outcome(outcome)
    }

    /// Our FIN acknowledged: the closing states move on. `Some` when processing ends here.
    #[cold]
    #[inline(never)]
    fn after_our_fin_acked(&mut self, now: Instant, ctx: &mut InputContext) -> Option<Processed> {
        match self.state {
            State::FinWait1 => {
                self.state = State::FinWait2;
                if self.fd.is_none() {
                    self.linger_at = Some(now + self.opts.linger2.unwrap_or(ctx.config.fin_timeout));
                }
                None
            }
            State::Closing => Some(Processed::outcome(Outcome::TimeWait)),
            State::LastAck => Some(Processed::outcome(Outcome::Gone(None))),
            _ => None,
        }
    }

    /// The eighth step, a segment with FIN: the FIN at RCV.NXT closes our receiving side; one beyond it waits
    /// for the gap to fill; one already taken is acknowledged again.
    #[cold]
    #[inline(never)]
    fn on_fin_bit(
        &mut self,
        now: Instant,
        seg: &TcpHeader,
        payload: &[u8],
        ctx: &mut InputContext,
        outcome: Outcome,
    ) -> Processed {
        let fin_at = seg.seq + payload.len();
        if fin_at == self.rcv_nxt {
            return self.accept_fin(now, ctx, outcome);
        } else if fin_at.gt(self.rcv_nxt) && self.state.can_receive() {
            self.ooo_fin = Some(fin_at);
            self.ack_now = true;
        } else if self.state == State::TimeWait || !self.state.can_receive() {
            // A retransmitted FIN: acknowledge it again.
            self.ack_now = true;
        }
        Processed::outcome(outcome)
    }

    /// The peer's SYN-ACK in SYN-RECEIVED completes a simultaneous open. (Rare paths like this one are kept out
    /// of line: the common path through SEGMENT ARRIVES stays short in the instruction cache.)
    #[cold]
    #[inline(never)]
    fn complete_simultaneous_open(&mut self, now: Instant, seg: &TcpHeader, ctx: &mut InputContext) -> Processed {
        self.snd_una = seg.ack;
        self.snd_wnd = usize::from(seg.window); // a SYN's window is never scaled (RFC 7323 section 2.2)
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl1 = seg.seq;
        self.snd_wl2 = seg.ack;
        self.rto_at = None;
        self.retries = 0;
        self.rtt.reset_backoff();
        self.state = State::Established;
        self.start_receive_autotuning(now);
        self.ack_now = true;
        ctx.counters.active_opens += 1;
        Processed::outcome(Outcome::Established)
    }

    /// A segment outside the receive window (RFC 9293 section 3.10.7.4, first check): dropped, and answered
    /// with an ACK unless it is a RST.
    #[cold]
    #[inline(never)]
    fn refuse_unacceptable(&mut self, now: Instant, seg: &TcpHeader, payload: &[u8]) -> Processed {
        // Linux's tcp_oow_rate_limited: an out-of-window segment without data is answered at most once per
        // 500 ms, so two ends that each find the other's ACKs unacceptable cannot trade ACKs forever.
        let pure_ack = payload.is_empty() && !seg.flags.contains(TcpFlags::SYN);
        if pure_ack {
            if self.last_oow_ack.is_some_and(|t| now.saturating_since(t) < OOW_ACK_INTERVAL) {
                return Processed::alive();
            }
            self.last_oow_ack = Some(now);
        }
        if !seg.flags.contains(TcpFlags::RST) {
            self.ack_now = true;
            // A whole segment we already have: tell the sender with a D-SACK (RFC 2883 section 4).
            if !payload.is_empty() && (seg.seq + payload.len()).le(self.rcv_nxt) {
                self.note_duplicate(seg.seq, seg.seq + payload.len());
            }
        }
        Processed::alive()
    }

    /// An acceptable RST (RFC 5961 section 3.2): only one at exactly RCV.NXT resets; one merely in the window
    /// draws a challenge ACK, so a blind attacker must guess the exact number.
    #[cold]
    #[inline(never)]
    fn on_reset(&mut self, seg: &TcpHeader, ctx: &mut InputContext) -> Processed {
        if seg.seq != self.rcv_nxt {
            self.challenge_ack(ctx);
            return Processed::alive();
        }
        Processed::outcome(match self.state {
            State::SynReceived => Outcome::Gone(Some(Errno::ECONNREFUSED)),
            State::Established | State::FinWait1 | State::FinWait2 | State::CloseWait => {
                ctx.counters.estab_resets += 1;
                Outcome::Gone(Some(if self.state == State::CloseWait { Errno::EPIPE } else { Errno::ECONNRESET }))
            }
            _ => Outcome::Gone(None),
        })
    }

    /// A SYN in a synchronized state (RFC 5961 section 4.2): a challenge ACK — unless it is the peer's SYN
    /// again in a simultaneous open, whose SYN-ACK the retransmission timer resends.
    #[cold]
    #[inline(never)]
    fn on_synchronized_syn(&mut self, seg: &TcpHeader, ctx: &mut InputContext) -> Processed {
        if self.state == State::SynReceived && seg.seq == self.irs {
            self.snd_nxt = self.iss;
            return Processed::alive();
        }
        ctx.counters.syn_challenges += 1;
        self.challenge_ack(ctx);
        Processed::alive()
    }

    /// Header prediction (Van Jacobson's, as in 4.4BSD's `tcp_input` and Linux's `tcp_rcv_established`): in
    /// a one-way transfer nearly every segment the receiver gets is the next data in order, acknowledges
    /// nothing new, leaves the window as it was and carries a timestamp no older than the last. True for such
    /// a segment when nothing of ours is in flight, nothing is held out of order and it fits the window —
    /// then every check of RFC 9293 section 3.10.7.4 would pass and every step but the text's would do
    /// nothing, so [`Connection::receive_predicted`] does only what those steps would change.
    fn is_predicted(&self, seg: &TcpHeader, payload: &[u8]) -> bool {
        let timestamps_in_order = match (self.negotiated.ts, seg.options.timestamps) {
            (Some(ts), Some((tsval, _))) => tsval.wrapping_sub(ts.recent) as i32 >= 0,
            (None, None) => true,
            _ => false,
        };
        let window = self.receive_window();
        self.state == State::Established
            && (seg.flags == TcpFlags::ACK || seg.flags == TcpFlags::ACK | TcpFlags::PSH)
            && seg.seq == self.rcv_nxt
            && seg.ack == self.snd_una
            && self.snd_una == self.snd_max
            && !payload.is_empty()
            && payload.len() <= window
            && usize::from(seg.window) << self.negotiated.snd_wscale == self.snd_wnd
            && seg.options.sack_blocks().is_empty()
            && timestamps_in_order
            && self.ooo.is_empty()
            && self.tlp_end.is_none()
            && !self.cc.in_recovery()
    }

    /// A predicted segment ([`Connection::is_predicted`]): what the general path would do for it.
    fn receive_predicted(
        &mut self,
        now: Instant,
        seg: &TcpHeader,
        payload: &[u8],
        ctx: &mut InputContext,
    ) -> Processed {
        self.update_ts_recent(now, seg);
        // The segment is the newest to set the (unchanged) send window: SND.WL1 and SND.WL2 move on.
        self.snd_wl1 = seg.seq;
        self.snd_wl2 = seg.ack;
        self.accept_text(now, seg.seq, payload, ctx);
        self.autotune_receive_buffer(now, seg, payload.len(), ctx);
        Processed::alive()
    }

    /// RFC 7323 section 4.3: remember the timestamp of a segment that covers Last.ACK.sent, to echo.
    fn update_ts_recent(&mut self, now: Instant, seg: &TcpHeader) {
        if let (Some(ts), Some((tsval, _))) = (self.negotiated.ts.as_mut(), seg.options.timestamps) {
            if seg.seq.le(self.last_ack_sent) {
                *ts = Timestamps { recent: tsval, recent_at: now, offset: ts.offset };
            }
        }
    }

    /// The ACK field of a segment in a synchronized state: RFC 9293 section 3.10.7.4 "fifth", with the
    /// acceptability test of RFC 5961 section 5.2. Returns `Some` when processing must stop here.
    fn process_ack(
        &mut self,
        now: Instant,
        seg: &TcpHeader,
        payload: &[u8],
        ctx: &mut InputContext,
    ) -> Option<Processed> {
        // RFC 5961 section 5.2: an ACK beyond anything we sent, or too far behind, is answered and dropped.
        if seg.ack.gt(self.snd_max) {
            self.ack_now = true;
            return Some(Processed::alive());
        }
        let oldest_acceptable = self.snd_una - self.max_snd_wnd.max(1);
        if seg.ack.lt(oldest_acceptable) {
            self.challenge_ack(ctx);
            return Some(Processed::alive());
        }
        let window = usize::from(seg.window) << self.negotiated.snd_wscale;
        // RFC 6937's DeliveredData: the advance of SND.UNA plus the change in SACKed bytes.
        let (una_before, sacked_before) = (self.snd_una, self.sacked.sacked_bytes());
        if self.negotiated.sack_ok && !seg.options.sack_blocks().is_empty() {
            self.sacked.update(seg.ack.max(self.snd_una), self.snd_max, seg.options.sack_blocks());
        }
        let advanced = seg.ack.gt(self.snd_una);
        let was_recovering = self.cc.in_recovery();
        if advanced {
            self.on_new_ack(now, seg);
        } else if !self.negotiated.sack_ok
            && seg.ack == self.snd_una
            && payload.is_empty()
            && !seg.flags.intersects(TcpFlags::SYN | TcpFlags::FIN)
            && window == self.snd_wnd
            && self.snd_max.gt(self.snd_una)
        {
            // RFC 5681 section 2's duplicate acknowledgment. With SACK, RACK decides instead (RFC 8985 section
            // 6.2, as Linux does once RACK is on): counting duplicates takes reordering for loss.
            self.on_duplicate_ack(ctx);
        }
        if advanced {
            self.expand_send_buffer(ctx);
        }
        let dsack = super::loss_detection::carries_dsack(seg);
        self.rack_on_ack(now, seg, advanced, dsack, ctx.counters);
        self.undo_if_spurious(seg, was_recovering, dsack, ctx.counters);
        if self.in_sack_recovery() {
            let delivered = (self.snd_una.since(una_before) + self.sacked.sacked_bytes()).saturating_sub(sacked_before);
            self.prr.on_ack(delivered, self.pipe(), self.cc.ssthresh(), self.data_mss());
        }
        // Update the send window if this segment is newer than the one that last set it (SND.WL1/SND.WL2, RFC
        // 9293 section 3.10.7.4). A segment no newer by sequence or acknowledgment may only grow the window (or
        // close it): a reordered older duplicate must not shrink it (Linux's tcp_may_update_window).
        let newer = self.snd_wl1.lt(seg.seq) || seg.ack.gt(self.snd_wl2);
        let same = self.snd_wl1 == seg.seq && self.snd_wl2 == seg.ack;
        if newer || (same && (window > self.snd_wnd || window == 0)) {
            let was_zero = self.snd_wnd == 0;
            self.snd_wnd = window;
            self.snd_wl1 = seg.seq;
            self.snd_wl2 = seg.ack;
            self.max_snd_wnd = self.max_snd_wnd.max(window);
            if was_zero && window > 0 {
                self.persist_at = None;
                self.rtt.reset_backoff();
            }
        }
        None
    }

    /// A duplicate acknowledgment without SACK: the third starts fast retransmit (RFC 5681 section 3.2).
    #[cold]
    #[inline(never)]
    fn on_duplicate_ack(&mut self, ctx: &mut InputContext) {
        let flight = self.snd_max.since(self.snd_una);
        if self.cc.on_dup_ack(flight, self.snd_max, self.snd_una) == DupAckAction::FastRetransmit {
            ctx.counters.fast_retrans += 1;
            self.on_recovery_start();
            self.retransmit_now = true;
            self.rtt_probe = None;
            self.recovery_next = self.snd_una;
            self.recovery_rexmit_bytes = 0;
        }
    }

    /// Send-buffer autotuning, as Linux's `tcp_sndbuf_expand`: unless the application fixed `SO_SNDBUF`, the
    /// buffer holds at least twice the congestion window (up to `max`), so that a full window can be in
    /// flight — held until acknowledged — with as much again queued behind it. A fixed buffer caps a flow at
    /// one buffer per round trip; during loss recovery, with the buffer filled by data the peer has SACKed,
    /// nothing new could be sent, and only new data reveals a lost retransmission to RACK. It grows at least
    /// twofold each time (the growth copies the queued bytes) and never shrinks.
    fn expand_send_buffer(&mut self, ctx: &mut InputContext) {
        let max = ctx.config.sndbuf_autotune_max;
        let want = self.cc.cwnd().saturating_mul(2).min(max);
        if self.opts.sndbuf_locked || want <= self.tx.capacity() {
            return;
        }
        let grown = want.max(self.tx.capacity().saturating_mul(2)).min(max);
        let Some(grown) = self.charge_growth(self.tx.capacity(), grown, ctx) else { return };
        self.tx.set_capacity(grown);
    }

    /// Charges growing a buffer from `from` to `to` bytes to the stack-wide autotuning budget. Returns the
    /// size to grow to — less than `to` where the budget is nearly spent — or `None` when it is spent.
    fn charge_growth(&mut self, from: usize, to: usize, ctx: &mut InputContext) -> Option<usize> {
        let room = ctx.config.autotune_total_max.saturating_sub(*ctx.autotuned_total);
        let to = to.min(from.saturating_add(room));
        let added = to.checked_sub(from).filter(|&n| n > 0)?;
        *ctx.autotuned_total += added;
        self.autotuned = self.autotuned.saturating_add(u32::try_from(added).unwrap_or(u32::MAX));
        Some(to)
    }

    /// Starts receive-buffer autotuning's measurements as the connection becomes established (RCV.NXT is
    /// known from then on).
    pub(super) fn start_receive_autotuning(&mut self, now: Instant) {
        let mss = usize::from(self.negotiated.our_mss);
        self.rcv_tune = RcvAutotune::new(now, self.rcv_nxt, mss, self.rx.capacity());
    }

    /// Receive-buffer autotuning (see [`RcvAutotune`]), after a segment's new data was taken: time the
    /// timestamp it echoes and, once a round trip, grow the buffer to what the application's reading needs,
    /// up to `TcpConfig::rcvbuf_autotune_max`, the largest window the negotiated scale can offer, and the
    /// stack-wide budget.
    #[link_section = ".text.hot.ustack"]
    fn autotune_receive_buffer(&mut self, now: Instant, seg: &TcpHeader, data_len: usize, ctx: &mut InputContext) {
        if self.opts.rcvbuf_locked {
            return;
        }
        let mss = usize::from(self.negotiated.our_mss);
        if let (Some(_), Some((_, tsecr))) = (self.negotiated.ts, seg.options.timestamps) {
            // Full-sized segments only, as Linux: a small one may have waited for its application, and its
            // echo would time that wait too.
            if data_len + MAX_OPTIONS_LEN >= mss {
                self.rcv_tune.on_echo(tsecr, self.ts_now(now).wrapping_sub(tsecr));
            }
        }
        let read_upto = self.rcv_nxt - self.rx.len();
        let fallback_rtt = self.rtt.srtt().unwrap_or(Duration::ZERO);
        let Some(want) = self.rcv_tune.on_data(now, read_upto, mss, fallback_rtt) else { return };
        let largest_window = usize::from(u16::MAX) << self.negotiated.rcv_wscale;
        let grown = want.min(ctx.config.rcvbuf_autotune_max).min(largest_window);
        if grown > self.rx.capacity() {
            let Some(grown) = self.charge_growth(self.rx.capacity(), grown, ctx) else { return };
            // Out-of-order bytes parked in the free space move with the queued ones.
            self.rx.set_capacity(grown);
        }
    }

    /// SND.UNA < SEG.ACK =< SND.MAX: data (and maybe our FIN) acknowledged.
    fn on_new_ack(&mut self, now: Instant, seg: &TcpHeader) {
        let acked = seg.ack.since(self.snd_una);
        let flight = self.snd_max.since(self.snd_una);
        self.tx.discard(acked.min(self.tx.len()));
        // RTT: from the echoed timestamp when there is one (RFC 7323 section 4.1), else from the timed segment
        // if it was not retransmitted (Karn's algorithm, RFC 6298 section 3).
        let rtt_sample = match seg.options.timestamps.filter(|_| self.negotiated.ts.is_some()) {
            Some((_, tsecr)) if tsecr != 0 => self.sample_rtt_from_timestamp(now, tsecr),
            _ => match self.rtt_probe {
                Some((probe_seq, sent_at)) if seg.ack.gt(probe_seq) => {
                    let rtt = now.nanos_since(sent_at);
                    self.rtt.sample_nanos(rtt);
                    self.rtt_probe = None;
                    Some(rtt)
                }
                _ => None,
            },
        };
        self.rtt.reset_backoff();
        self.retries = 0;
        self.snd_una = seg.ack;
        if self.snd_nxt.lt(self.snd_una) {
            self.snd_nxt = self.snd_una;
        }
        self.sacked.advance(self.snd_una);
        self.recovery_rexmit_bytes = self.recovery_rexmit_bytes.saturating_sub(acked);
        // A partial ACK (RFC 6582) retransmits the next hole, unless SACK recovery already resent it.
        let srtt = self.rtt.srtt();
        let was_recovering = self.cc.in_recovery();
        let rtt = AckRtt { srtt, sample_nanos: rtt_sample };
        if self.cc.on_ack(now, rtt, seg.ack, acked, flight, self.cwnd_limited) == AckAction::RetransmitNext
            && self.snd_una.lt(self.snd_max)
            && !self.recovery_next.gt(self.snd_una)
        {
            self.retransmit_now = true;
        }
        if !self.cc.in_recovery() {
            self.recovery_rexmit_bytes = 0;
            if was_recovering {
                self.rack.on_recovery_end();
            }
        }
        // RFC 6298 section 5.2 and 5.3: stop the timer when everything is acknowledged, else restart it.
        if self.snd_una == self.snd_max {
            self.rto_at = None;
        } else {
            self.arm_rto(now);
        }
    }

    /// An RTT sample from an echoed timestamp (RFC 7323 section 4.1), in nanoseconds, if it is one.
    fn sample_rtt_from_timestamp(&mut self, now: Instant, tsecr: u32) -> Option<u64> {
        let elapsed = self.ts_now(now).wrapping_sub(tsecr);
        // An echo from the future or from hours ago is not a measurement.
        if elapsed >= 3_600_000 {
            return None;
        }
        let rtt = u64::from(elapsed) * 1_000_000;
        self.rtt.sample_nanos(rtt);
        Some(rtt)
    }

    /// Takes in-window text at `seq` (not before RCV.NXT): in order it joins the receive buffer, beyond RCV.NXT
    /// it is held out of order and reported by SACK.
    #[link_section = ".text.hot.ustack"]
    fn accept_text(&mut self, now: Instant, seq: SeqNum, data: &[u8], ctx: &mut InputContext) {
        if data.is_empty() || self.shut_rd_discards(data.len()) {
            return;
        }
        let offset = seq.since(self.rcv_nxt);
        if offset == 0 {
            let taken = self.rx.push(data);
            self.rcv_nxt += taken;
            self.grow_receive_window();
            // Data that filled a hole may join bytes held beyond it.
            self.ooo.shift(taken);
            let joined = self.ooo.pop_front();
            if joined > 0 {
                self.rx.commit(joined);
                self.rcv_nxt += joined;
                self.ack_now = true; // RFC 9293 section 3.8.6.3: ACK at once when a gap fills
            }
            if let Some(fin) = self.ooo_fin.filter(|f| *f == self.rcv_nxt) {
                let _ = fin; // the FIN is processed by the caller's eighth step through `ooo_fin`
            }
            self.schedule_ack(now, taken, ctx.config);
        } else {
            // Out of order: park it in the free space past RCV.NXT and ACK at once with SACK (RFC 5681 section
            // 4.2: "an immediate ACK SHOULD be generated when an out-of-order segment arrives"). Bytes held
            // already are a duplicate to report as a D-SACK (RFC 2883 section 4).
            let already_held = self.ooo.ranges().any(|(s, e)| s <= offset && offset + data.len() <= e);
            if already_held {
                self.note_duplicate(seq, seq + data.len());
            }
            let written = self.rx.write_at(offset, data);
            if written > 0 && self.ooo.add(offset, written).is_ok() {
                ctx.counters.ofo_queue += 1;
            } else {
                ctx.counters.ofo_drop += 1;
            }
            self.ack_now = true;
        }
    }

    /// Remembers a duplicate range for the next ACK's D-SACK block, when SACK is in use.
    fn note_duplicate(&mut self, start: SeqNum, end: SeqNum) {
        if self.negotiated.sack_ok && start.lt(end) {
            self.dsack = Some((start, end));
            self.ack_now = true;
        }
    }

    /// After `shutdown(SHUT_RD)` Linux keeps accepting data; we do too, so nothing is discarded here.
    fn shut_rd_discards(&self, _len: usize) -> bool {
        false
    }

    /// RFC 9293 section 3.8.6.3 and RFC 1122 section 4.2.3.2: acknowledge at least every second full-sized
    /// segment, and otherwise within the delayed-ACK timeout; at the start of a connection acknowledge every
    /// segment (quick-ack) so the peer's slow start is not slowed by our delay.
    fn schedule_ack(&mut self, now: Instant, len: usize, config: &TcpConfig) {
        if self.quick_acks > 0 {
            self.quick_acks -= 1;
            self.ack_now = true;
            return;
        }
        if len >= self.negotiated.send_mss.min(usize::from(self.negotiated.our_mss)) {
            self.unacked_segments += 1;
        }
        if self.unacked_segments >= 2 {
            self.ack_now = true;
        } else if self.delack_at.is_none() {
            self.delack_at = Some(now + config.delayed_ack);
        }
    }

    /// The peer's FIN is in order: RCV.NXT covers it, ACK it at once, and move on (RFC 9293 section
    /// 3.10.7.4 "eighth").
    fn accept_fin(&mut self, now: Instant, ctx: &mut InputContext, outcome: Outcome) -> Processed {
        let _ = ctx;
        self.rcv_nxt += 1;
        self.peer_fin = true;
        self.ooo_fin = None;
        self.ack_now = true;
        match self.state {
            State::SynReceived | State::Established => self.state = State::CloseWait,
            State::FinWait1 => {
                // Our FIN is not yet acknowledged (else we would be in FIN-WAIT-2): simultaneous close.
                self.state = State::Closing;
            }
            State::FinWait2 => return Processed::outcome(Outcome::TimeWait),
            _ => {}
        }
        let _ = now;
        Processed::outcome(outcome)
    }

    /// Completes a FIN that arrived before data that has now filled in behind it.
    pub fn take_pending_fin(&mut self, now: Instant, ctx: &mut InputContext) -> Option<Processed> {
        if self.ooo_fin == Some(self.rcv_nxt) {
            return Some(self.accept_fin(now, ctx, Outcome::Alive));
        }
        None
    }

    /// RFC 5961 section 7: send `<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>`, unless over the rate limit.
    #[cold]
    fn challenge_ack(&mut self, ctx: &mut InputContext) {
        if ctx.challenge_acks.try_take(self.last_recv) {
            ctx.counters.challenge_acks += 1;
            self.ack_now = true;
        }
    }
}
