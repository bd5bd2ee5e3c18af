//! RACK-TLP (RFC 8985) on a connection: RACK finds losses by time from what SACK says was delivered
//! ([`super::rack`] keeps the log), and a tail loss probe (TLP) makes the peer reveal a loss at the end of a
//! flight — where no later segment would — within two round trips instead of a retransmission timeout.
//!
//! Both need SACK; without it the connection keeps to duplicate ACKs, NewReno and the timer.

use super::connection::Connection;
use super::rack::Echo;
use super::segment::SegmentOut;
use super::seq::SeqNum;
use crate::iface::counters::TcpCounters;
use crate::time::{Duration, Instant};
use crate::wire::tcp::TcpHeader;

/// WCDelAckT of RFC 8985 section 7.2: the longest a peer may delay its ACK of a lone segment. (The PTO is
/// computed on every transmission, in nanoseconds: see [`Instant::nanos_since`].)
const WORST_CASE_DELAYED_ACK: u64 = nanos(Duration::from_millis(200));
/// The PTO before any RTT is measured (RFC 8985 section 7.2: one second).
const INITIAL_PTO: u64 = nanos(Duration::from_secs(1));
/// The shortest PTO, Linux's floor: a probe sooner than this after a microsecond RTT is only noise.
const MIN_PTO: u64 = nanos(Duration::from_millis(10));

/// A constant duration in nanoseconds.
const fn nanos(d: Duration) -> u64 {
    d.as_nanos() as u64
}

impl Connection {
    /// RACK and TLP after an acceptable ACK `seg` (`advanced`: it moved SND.UNA; `dsack`: its first SACK block
    /// reports a duplicate). RFC 8985 section 6.2 steps 1 to 5, then section 7.4's check of the probe in flight.
    pub(crate) fn rack_on_ack(
        &mut self,
        now: Instant,
        seg: &TcpHeader,
        advanced: bool,
        dsack: bool,
        counters: &mut TcpCounters,
    ) {
        if !self.negotiated.sack_ok {
            return;
        }
        let echo = Echo::new(&seg.options.timestamps, &self.negotiated.ts);
        self.rack.on_ack(now, self.snd_una, &self.sacked, echo);
        if dsack {
            self.rack.on_dsack(self.snd_una, self.snd_nxt);
        }
        self.tlp_on_ack(seg.ack, advanced, dsack, counters);
        if advanced {
            self.pto_restart = true;
        }
        self.detect_losses(now, counters);
    }

    /// RACK's loss detection (RFC 8985 section 6.2 step 5), on an ACK or when the reordering timer fires.
    /// Newly lost bytes start fast recovery if it is not running (section 6.3: RACK decides when, not only
    /// duplicate ACKs); the lost bytes are resent by [`Connection::retransmit_lost`].
    #[inline]
    pub(crate) fn detect_losses(&mut self, now: Instant, counters: &mut TcpCounters) {
        // After a timeout SND.NXT went back and everything from SND.UNA is being resent anyway: marks would only
        // count the same bytes out of the pipe twice.
        if !self.negotiated.sack_ok || self.snd_una == self.snd_max || self.snd_nxt.lt(self.snd_max) {
            self.rack_at = None;
            return;
        }
        self.detect_losses_in_flight(now, counters);
    }

    /// [`Connection::detect_losses`] with data in flight to look at.
    #[inline(never)] // off the per-segment path: see "Code placement" in docs/DESIGN.md
    fn detect_losses_in_flight(&mut self, now: Instant, counters: &mut TcpCounters) {
        let recovering = self.cc.in_recovery();
        self.rack_at = self.rack.detect_losses(now, &self.rtt, recovering, self.sacked_segments());
        if self.rack.lost_bytes() > 0 && !recovering {
            let flight = self.snd_max.since(self.snd_una);
            if self.cc.enter_recovery(flight, self.snd_max, self.snd_una) {
                counters.fast_retrans += 1;
                self.on_recovery_start();
                // The fast retransmit may go at once, before the next ACK (this may be a timer).
                self.prr.start(flight);
                self.prr.on_ack(0, self.pipe(), self.cc.ssthresh(), self.data_mss());
                self.rtt_probe = None;
                self.recovery_next = self.snd_una;
                self.recovery_rexmit_bytes = 0;
                self.pto_at = None;
            }
        }
    }

    /// Segments' worth of bytes the peer has SACKed (what three duplicate ACKs would count, for RACK's
    /// reordering window).
    pub(crate) fn sacked_segments(&self) -> usize {
        if self.sacked.is_empty() {
            0
        } else {
            self.sacked.sacked_bytes() / self.data_mss().max(1)
        }
    }

    /// During recovery, resends the bytes RACK marked lost, in sequence order, while the window allows (RFC
    /// 8985 section 6.3 with RFC 6675 section 5's pacing by the pipe).
    #[inline]
    pub(crate) fn retransmit_lost(
        &mut self,
        now: Instant,
        out: &mut dyn SegmentOut,
        counters: &mut TcpCounters,
    ) -> bool {
        self.cc.in_recovery() && self.retransmit_lost_in_recovery(now, out, counters)
    }

    /// [`Connection::retransmit_lost`] in recovery.
    #[inline(never)] // off the per-segment path: see "Code placement" in docs/DESIGN.md
    fn retransmit_lost_in_recovery(
        &mut self,
        now: Instant,
        out: &mut dyn SegmentOut,
        counters: &mut TcpCounters,
    ) -> bool {
        let mss = self.data_mss();
        let mut sent = false;
        while let Some((start, end)) = self.rack.next_lost(self.snd_una) {
            if !start.lt(self.snd_nxt) {
                break;
            }
            let offset = start.since(self.snd_una);
            if offset >= self.tx.len() {
                break;
            }
            let len = end.since(start).min(mss).min(self.tx.len() - offset);
            // The congestion window paces resending (RFC 6675 section 5: cwnd - pipe); the peer's window
            // already took these bytes once, so only their end must lie within it (as Linux's
            // tcp_retransmit_skb checks).
            let within_peer_window = (start + len).le(self.snd_una + self.snd_wnd);
            if self.congestion_room() < len || !within_peer_window {
                break;
            }
            // Resent, the bytes lose their lost mark and count in the pipe again, and the copy counts too: a
            // mark may be premature (the original only reordered, still on its way), so until an ACK or SACK
            // settles them both are taken as in flight. That keeps recovery within ssthresh when reordering
            // fooled RACK; measured against the kernel through a reordering link, counting once sent faster
            // into more losses and timeouts.
            self.emit_data(now, start, len, false, out, counters);
            counters.retrans_segs += 1;
            self.recovery_next = self.recovery_next.max(start + len);
            self.recovery_rexmit_bytes += len;
            sent = true;
        }
        sent
    }

    /// RFC 8985 section 7.2: with data in flight and no probe, recovery or timeout under way, a probe is due
    /// two round trips after the last new data or new acknowledgment — plus the worst delayed ACK when a lone
    /// segment is out — unless the retransmission timer would fire first.
    pub(crate) fn schedule_loss_probe(&mut self, now: Instant) {
        let eligible = self.negotiated.sack_ok
            && self.state.is_synchronized()
            && !self.cc.in_recovery()
            && self.tlp_end.is_none()
            && self.retries == 0
            && self.snd_max.gt(self.snd_una)
            && self.snd_nxt == self.snd_max;
        if !eligible {
            self.pto_at = None;
            self.pto_restart = false;
            return;
        }
        if self.pto_at.is_some() && !self.pto_restart {
            return;
        }
        self.pto_restart = false;
        let pto = match self.rtt.srtt_nanos() {
            Some(srtt) if self.in_flight() <= self.largest_segment() => {
                srtt.saturating_mul(2).saturating_add(WORST_CASE_DELAYED_ACK)
            }
            Some(srtt) => srtt.saturating_mul(2),
            None => INITIAL_PTO,
        };
        let at = now.plus_nanos(pto.max(MIN_PTO));
        self.pto_at = if self.rto_at.is_some_and(|rto| rto <= at) { None } else { Some(at) };
    }

    /// The probe itself (RFC 8985 section 7.3): one segment of new data if the peer's window takes it (the
    /// congestion window does not apply), else the last segment sent again. The retransmission timer then
    /// restarts, and no other probe goes out until this one is answered.
    #[inline(never)] // off the per-segment path: see "Code placement" in docs/DESIGN.md
    pub(crate) fn send_loss_probe(
        &mut self,
        now: Instant,
        out: &mut dyn SegmentOut,
        counters: &mut TcpCounters,
    ) -> bool {
        let mss = self.data_mss();
        let unsent = self.unsent();
        let by_flow = self.snd_wnd.saturating_sub(self.in_flight());
        let resent = if unsent > 0 && by_flow >= unsent.min(mss) && self.state.can_send_data() {
            let len = unsent.min(mss);
            let fin_here = self.fin_seq.is_some_and(|f| f == self.snd_nxt + len);
            self.emit_data(now, self.snd_nxt, len, fin_here, out, counters);
            self.snd_nxt += len + usize::from(fin_here);
            self.snd_max = self.snd_max.max(self.snd_nxt);
            self.tlp_retrans = false;
            None
        } else {
            let Some((first, end)) = self.rack.last_sent() else { return false };
            let start = first.max(self.snd_una).max(end - mss.min(end.since(first)));
            let offset = start.since(self.snd_una);
            if !start.lt(end) || offset + end.since(start) > self.tx.len() {
                return false;
            }
            let fin = self.fin_seq.is_some_and(|f| f == end && self.snd_max == f + 1);
            self.emit_data(now, start, end.since(start), fin, out, counters);
            counters.retrans_segs += 1;
            self.tlp_retrans = true;
            Some((start, end))
        };
        counters.loss_probes += 1;
        // A DSACK of this probe must not complete the undo of an older recovery; a recovery starting before
        // the probe is answered counts the probe as its own retransmission.
        self.resent.clear();
        if let Some((start, end)) = resent {
            self.resent.on_resent(start, end);
        }
        self.cc.forget_undo();
        self.tlp_end = Some(self.snd_max);
        self.arm_rto(now);
        true
    }

    /// RFC 8985 section 7.4: what the ACK of a probe says. A probe of new data needs nothing. For a resent
    /// segment, a DSACK of it says the original arrived too (no loss); an ACK beyond the probe, or a duplicate
    /// ACK at its end, says the probe repaired a loss the congestion window must answer for.
    fn tlp_on_ack(&mut self, ack: SeqNum, advanced: bool, dsack: bool, counters: &mut TcpCounters) {
        // `advanced` false here means a duplicate ACK; a data segment or window update is not one.
        let Some(end) = self.tlp_end else { return };
        if ack.lt(end) {
            return;
        }
        if !self.tlp_retrans || (dsack && ack == end) {
            self.tlp_end = None;
            return;
        }
        if ack.gt(end) {
            self.tlp_end = None;
            let flight = self.snd_max.since(self.snd_una);
            self.cc.on_loss_repaired(flight);
            counters.loss_probe_recoveries += 1;
        } else if !advanced {
            // A duplicate ACK at the probe's end: both the original and the probe arrived (Linux's
            // tcp_process_tlp_ack), no loss.
            self.tlp_end = None;
        }
    }
}

impl Connection {
    /// A fast recovery begins: nothing resent in it yet, except a resent tail probe still unanswered, which a
    /// DSACK must also report before the recovery can be undone (Linux counts it the same way). The probe's
    /// episode ends here: the recovery answers for its loss.
    pub(crate) fn on_recovery_start(&mut self) {
        self.retrans_stamp = None;
        if !(self.tlp_end.is_some() && self.tlp_retrans) {
            self.resent.clear();
        }
        self.tlp_end = None;
    }

    /// Undoes the window reduction of a recovery that retransmitted only what had arrived after all (Linux's
    /// `tcp_try_undo_recovery` and `tcp_try_undo_dsack`): when the recovery ends with an ACK echoing a
    /// timestamp older than its first retransmission (RFC 3522 section 3.2: the ACK answers an original), or
    /// when DSACKs have reported every byte it resent as received twice (RFC 2883 section 5; see
    /// [`super::resent`]). A DSACK may come after the recovery ended, as long as no other began.
    pub(crate) fn undo_if_spurious(
        &mut self,
        seg: &TcpHeader,
        was_recovering: bool,
        dsack: bool,
        counters: &mut TcpCounters,
    ) {
        // Only from a peer that agreed to SACK.
        let report = seg.options.sack_blocks().first().copied().filter(|_| dsack && self.negotiated.sack_ok);
        if let Some((start, end)) = report {
            if self.resent.on_reported_twice(start, end) && self.resent.all_reported() && self.cc.undo() {
                counters.dsack_undos += 1;
            }
        }
        if was_recovering && !self.cc.in_recovery() {
            let echoed = seg.options.timestamps.filter(|_| self.negotiated.ts.is_some()).map(|(_, ecr)| ecr);
            if let (Some(stamp), Some(ecr)) = (self.retrans_stamp, echoed) {
                if ecr != 0 && (ecr.wrapping_sub(stamp) as i32) < 0 && self.cc.undo() {
                    counters.full_undos += 1;
                }
            }
            self.retrans_stamp = None;
        }
    }
}

/// An ACK whose first SACK block reports a duplicate (RFC 2883 section 4): it lies below the cumulative ACK,
/// or inside the second block.
pub(crate) fn carries_dsack(seg: &TcpHeader) -> bool {
    let blocks = seg.options.sack_blocks();
    let Some(&(start, end)) = blocks.first() else { return false };
    if !seg.ack.lt(end) {
        return true;
    }
    blocks.get(1).is_some_and(|&(s2, e2)| !start.lt(s2) && !e2.lt(end))
}
