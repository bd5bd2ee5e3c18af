//! Counters with the names Linux gives them in `/proc/net/snmp` and `nstat`, so that a reader can compare
//! ustack with the kernel line by line.

macro_rules! counter_group {
    ($(#[$doc:meta])* $name:ident, $prefix:literal { $($field:ident => $label:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct $name {
            $(pub $field: u64,)*
        }

        impl $name {
            /// `(name, value)` pairs, named as `nstat` names them.
            pub fn rows(&self) -> Vec<(String, u64)> {
                vec![$((format!("{}{}", $prefix, $label), self.$field)),*]
            }
        }
    };
}

counter_group!(
    /// Link layer (no Linux equivalent in /proc/net/snmp; named after `ip -s link`).
    LinkCounters, "Link" {
        in_frames => "InFrames",
        in_malformed => "InMalformed",
        in_not_for_us => "InOtherHost",
        in_unknown_ethertype => "InUnknownProto",
        out_frames => "OutFrames",
        out_dropped => "OutDropped",
    }
);

counter_group!(
    /// ARP (named after the kernel's neighbour-table statistics).
    ArpCounters, "Arp" {
        in_requests => "InRequests",
        in_replies => "InReplies",
        in_malformed => "InMalformed",
        out_requests => "OutRequests",
        out_replies => "OutReplies",
        resolution_failures => "ResFailed",
        queue_drops => "UnresolvedDiscards",
    }
);

counter_group!(
    /// IPv4, as in the `Ip:` lines of /proc/net/snmp.
    IpCounters, "Ip" {
        in_receives => "InReceives",
        in_hdr_errors => "InHdrErrors",
        in_csum_errors => "InCsumErrors",
        in_addr_errors => "InAddrErrors",
        in_unknown_protos => "InUnknownProtos",
        in_discards => "InDiscards",
        in_delivers => "InDelivers",
        out_requests => "OutRequests",
        out_discards => "OutDiscards",
        out_no_routes => "OutNoRoutes",
        reasm_timeout => "ReasmTimeout",
        reasm_reqds => "ReasmReqds",
        reasm_oks => "ReasmOKs",
        reasm_fails => "ReasmFails",
        frag_oks => "FragOKs",
        frag_fails => "FragFails",
        frag_creates => "FragCreates",
    }
);

counter_group!(
    /// ICMPv4, as in the `Icmp:` lines of /proc/net/snmp.
    IcmpCounters, "Icmp" {
        in_msgs => "InMsgs",
        in_errors => "InErrors",
        in_csum_errors => "InCsumErrors",
        in_dest_unreachs => "InDestUnreachs",
        in_time_excds => "InTimeExcds",
        in_echos => "InEchos",
        in_echo_reps => "InEchoReps",
        out_msgs => "OutMsgs",
        out_dest_unreachs => "OutDestUnreachs",
        out_time_excds => "OutTimeExcds",
        out_echo_reps => "OutEchoReps",
        out_rate_limited => "OutRateLimitGlobal",
    }
);

counter_group!(
    /// UDP, as in the `Udp:` lines of /proc/net/snmp.
    UdpCounters, "Udp" {
        in_datagrams => "InDatagrams",
        no_ports => "NoPorts",
        in_errors => "InErrors",
        out_datagrams => "OutDatagrams",
        rcvbuf_errors => "RcvbufErrors",
        sndbuf_errors => "SndbufErrors",
        in_csum_errors => "InCsumErrors",
    }
);

counter_group!(
    /// TCP, as in the `Tcp:` lines of /proc/net/snmp and the `TcpExt:` lines of /proc/net/netstat.
    TcpCounters, "" {
        active_opens => "TcpActiveOpens",
        passive_opens => "TcpPassiveOpens",
        attempt_fails => "TcpAttemptFails",
        estab_resets => "TcpEstabResets",
        in_segs => "TcpInSegs",
        out_segs => "TcpOutSegs",
        retrans_segs => "TcpRetransSegs",
        in_errs => "TcpInErrs",
        out_rsts => "TcpOutRsts",
        in_csum_errors => "TcpInCsumErrors",
        listen_overflows => "TcpExtListenOverflows",
        listen_drops => "TcpExtListenDrops",
        challenge_acks => "TcpExtTCPChallengeACK",
        syn_challenges => "TcpExtTCPSYNChallenge",
        delayed_acks => "TcpExtDelayedACKs",
        timeouts => "TcpExtTCPTimeouts",
        fast_retrans => "TcpExtTCPFastRetrans",
        loss_probes => "TcpExtTCPLossProbes",
        loss_probe_recoveries => "TcpExtTCPLossProbeRecovery",
        full_undos => "TcpExtTCPFullUndo",
        dsack_undos => "TcpExtTCPDSACKUndo",
        header_prediction_hits => "TcpExtTCPHPHits",
        aborts_on_data => "TcpExtTCPAbortOnData",
        aborts_on_close => "TcpExtTCPAbortOnClose",
        aborts_on_linger => "TcpExtTCPAbortOnLinger",
        aborts_on_timeout => "TcpExtTCPAbortOnTimeout",
        paws_estab => "TcpExtPAWSEstab",
        time_waits => "TcpExtTW",
        time_wait_overflow => "TcpExtTCPTimeWaitOverflow",
        time_wait_recycled => "TcpExtTWRecycled",
        window_probes => "TcpExtTCPWinProbe",
        keepalive_probes => "TcpExtTCPKeepAlive",
        ofo_queue => "TcpExtTCPOFOQueue",
        ofo_drop => "TcpExtTCPOFODrop",
        syn_queue_drops => "TcpExtTCPReqQFullDrop",
    }
);

/// Every counter of the stack.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub link: LinkCounters,
    pub arp: ArpCounters,
    pub ip: IpCounters,
    pub icmp: IcmpCounters,
    pub udp: UdpCounters,
    pub tcp: TcpCounters,
}

impl Counters {
    /// Counts an IP packet handed to the link in a frame of its own, or dropped for want of one (a full
    /// transmit ring).
    #[inline(always)]
    pub(crate) fn count_frame_out(&mut self, sent: bool) {
        if sent {
            self.link.out_frames += 1;
        } else {
            self.link.out_dropped += 1;
            self.ip.out_discards += 1;
        }
    }

    /// Every counter as `(name, value)`, in a stable order.
    pub fn rows(&self) -> Vec<(String, u64)> {
        let mut rows = self.link.rows();
        rows.extend(self.arp.rows());
        rows.extend(self.ip.rows());
        rows.extend(self.icmp.rows());
        rows.extend(self.udp.rows());
        rows.extend(self.tcp.rows());
        rows
    }

    /// The value of the counter called `name` (for example `"UdpNoPorts"`).
    pub fn get(&self, name: &str) -> Option<u64> {
        self.rows().into_iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_linux() {
        let mut c = Counters::default();
        c.udp.no_ports = 3;
        assert_eq!(c.get("UdpNoPorts"), Some(3));
        assert_eq!(c.get("IpReasmOKs"), Some(0));
        assert_eq!(c.get("NoSuchCounter"), None);
    }
}
