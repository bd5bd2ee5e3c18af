//! A snapshot of every socket, as `ss -tuan` shows them: protocol, state, queues, addresses, the running
//! timer, and for listeners the SYN and accept queue lengths — and for connections what `ss -i` adds
//! ([`TcpInfo`]).

use super::tcp::TcpSocketKind;
use super::Socket;
use crate::iface::Stack;
use crate::tcp::connection::{Connection, State};
use crate::tcp::info::TcpInfo;
use crate::time::{Duration, Instant};
use std::net::{SocketAddr, SocketAddrV4};

/// One row of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketInfo {
    /// `"tcp"` or `"udp"`.
    pub proto: &'static str,
    /// The state as `ss` names it (`LISTEN`, `ESTAB`, `TIME-WAIT`, `UNCONN`, ...).
    pub state: &'static str,
    /// Bytes received and not read (for a listener: connections waiting in the accept queue).
    pub recv_q: usize,
    /// Bytes not yet acknowledged by the peer (for a listener: the backlog).
    pub send_q: usize,
    pub local: SocketAddr,
    pub peer: Option<SocketAddr>,
    /// The running timer, as `ss -o` names it (`on` for retransmission, `persist`, `keepalive`,
    /// `timewait`, `delack`), and how long until it fires.
    pub timer: Option<(&'static str, Duration)>,
    /// The descriptor, if an application holds one.
    pub fd: Option<i32>,
    /// Listeners: half-open connections in the SYN queue.
    pub syn_queue: Option<usize>,
    /// Connections (not CLOSED): the sender's state and estimates, as `ss -i` shows them.
    pub tcp: Option<TcpInfo>,
}

fn v4(a: SocketAddrV4) -> SocketAddr {
    SocketAddr::V4(a)
}

fn connection_timer(c: &Connection, now: Instant) -> Option<(&'static str, Duration)> {
    let left = |t: Instant| t.saturating_since(now);
    if let Some(t) = c.rto_at {
        return Some(("on", left(t)));
    }
    if let Some(t) = c.persist_at {
        return Some(("persist", left(t)));
    }
    if let Some(t) = c.linger_at {
        return Some(("timewait", left(t)));
    }
    if let Some(t) = c.keepalive_at {
        return Some(("keepalive", left(t)));
    }
    c.delack_at.map(|t| ("delack", left(t)))
}

impl Stack {
    /// Every socket and connection of the stack at `now`, in a stable order: UDP, listeners, connections,
    /// half-open and TIME-WAIT entries.
    pub fn sockets_snapshot(&self, now: Instant) -> Vec<SocketInfo> {
        let mut rows = Vec::new();
        let blank = |proto, state, local| SocketInfo {
            proto,
            state,
            recv_q: 0,
            send_q: 0,
            local,
            peer: None,
            timer: None,
            fd: None,
            syn_queue: None,
            tcp: None,
        };
        for (fd, sock) in self.sockets.iter() {
            match sock {
                Socket::Udp(u) => {
                    let Some(local) = u.local else { continue };
                    let mut row = blank("udp", if u.remote.is_some() { "ESTAB" } else { "UNCONN" }, v4(local));
                    row.recv_q = u.rx.charged();
                    row.send_q = u.tx.charged();
                    row.peer = u.remote.map(v4);
                    row.fd = Some(fd.0);
                    rows.push(row);
                }
                Socket::Tcp(t) => match t.kind {
                    TcpSocketKind::Fresh { local: Some(local) } => {
                        let mut row = blank("tcp", "CLOSE", v4(local));
                        row.fd = Some(fd.0);
                        rows.push(row);
                    }
                    TcpSocketKind::Listener(lk) => {
                        let Some(l) = self.tcp.listeners.get(lk) else { continue };
                        let mut row = blank("tcp", "LISTEN", v4(l.local));
                        row.recv_q = l.accept_queue.len();
                        row.send_q = l.backlog;
                        row.fd = Some(fd.0);
                        row.syn_queue = Some(l.syn_queue_len);
                        rows.push(row);
                    }
                    TcpSocketKind::Fresh { local: None } | TcpSocketKind::Conn(_) => {}
                },
                Socket::Epoll(_) => {}
            }
        }
        for (_, c) in self.tcp.conns.iter() {
            let mut row = blank("tcp", c.state.name(), v4(c.local));
            row.recv_q = c.rx.len();
            // Everything written and not yet acknowledged (Linux's write_seq - snd_una): sent or not. Counting
            // the sent bytes and then those past SND.NXT counted twice what a timeout had moved SND.NXT back over.
            row.send_q = c.tx.len();
            row.peer = Some(v4(c.remote));
            row.timer = connection_timer(c, now);
            row.fd = c.fd.map(|f| f.0);
            if c.state != State::Closed {
                row.tcp = Some(c.info());
            }
            rows.push(row);
        }
        for (_, h) in self.tcp.half_open.iter() {
            let mut row = blank("tcp", "SYN-RECV", v4(h.local));
            row.peer = Some(v4(h.remote));
            row.timer = Some(("on", h.deadline.saturating_since(now)));
            rows.push(row);
        }
        for (_, tw) in self.tcp.time_wait.iter() {
            let mut row = blank("tcp", "TIME-WAIT", v4(tw.local));
            row.peer = Some(v4(tw.remote));
            row.timer = Some(("timewait", tw.deadline.saturating_since(now)));
            rows.push(row);
        }
        rows
    }
}

impl SocketInfo {
    /// The row as `ss -tuano` prints it: `Netid State Recv-Q Send-Q Local Peer Timer`.
    pub fn to_ss_line(&self) -> String {
        let peer = self.peer.map_or_else(|| "*:*".to_string(), |p| p.to_string());
        let mut line = format!(
            "{:<5} {:<10} {:>6} {:>6} {:<21} {:<21}",
            self.proto, self.state, self.recv_q, self.send_q, self.local, peer
        );
        if let Some((name, left)) = self.timer {
            line.push_str(&format!(" timer:({name},{})", format_duration(left)));
        }
        if let Some(q) = self.syn_queue {
            line.push_str(&format!(" synq:{q} acceptq:{}/{}", self.recv_q, self.send_q));
        }
        if let Some(info) = &self.tcp {
            line.push(' ');
            line.push_str(&info.to_ss_fields());
        }
        line
    }
}

impl TcpInfo {
    /// The fields `ss -i` prints, in its names and units: milliseconds, and windows in segments (the send
    /// MSS) — `cubic rto:204 rtt:2.100/0.500 mss:1448 cwnd:10 ssthresh:7 unacked:3`. Counts that are zero are
    /// left out, as `ss` does; `reo_wnd` (ustack's, in milliseconds) once RACK has seen reordering.
    pub fn to_ss_fields(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let segs = |bytes: usize| bytes.div_ceil(self.send_mss.max(1));
        let mut out = format!("{} rto:{:.0}", self.congestion, ms(self.rto));
        if let Some(srtt) = self.srtt {
            out.push_str(&format!(" rtt:{:.3}/{:.3}", ms(srtt), ms(self.rttvar)));
        }
        out.push_str(&format!(" mss:{} cwnd:{}", self.send_mss, self.cwnd / self.send_mss.max(1)));
        if let Some(ssthresh) = self.ssthresh {
            out.push_str(&format!(" ssthresh:{}", ssthresh / self.send_mss.max(1)));
        }
        for (name, bytes) in [("unacked", self.unacked), ("sacked", self.sacked), ("lost", self.lost)] {
            if bytes > 0 {
                out.push_str(&format!(" {name}:{}", segs(bytes)));
            }
        }
        if self.timeouts > 0 {
            out.push_str(&format!(" retrans:{}", self.timeouts));
        }
        if self.reordering_seen {
            out.push_str(&format!(" reo_wnd:{:.3}", ms(self.reo_wnd)));
        }
        if let Some(min_rtt) = self.min_rtt {
            out.push_str(&format!(" minrtt:{:.3}", ms(min_rtt)));
        }
        if self.ca_state != "open" {
            out.push_str(&format!(" ca:{}", self.ca_state));
        }
        out
    }
}

/// `ss` style: `43sec`, `200ms`, `1min3sec`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{}sec", ms / 1000)
    } else {
        format!("{}min{}sec", ms / 60_000, (ms % 60_000) / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_like_ss() {
        assert_eq!(format_duration(Duration::from_millis(200)), "200ms");
        assert_eq!(format_duration(Duration::from_secs(43)), "43sec");
        assert_eq!(format_duration(Duration::from_secs(63)), "1min3sec");
    }
}
