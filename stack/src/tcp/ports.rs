//! Which sockets, connections and TIME-WAIT entries hold which local TCP port, and Linux's rules for who may
//! bind next to whom (`inet_csk_bind_conflict`).

use crate::socket::Fd;
use crate::storage::slab::SlabKey;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Who holds a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// A socket not connected (bound, or listening).
    Socket(Fd),
    /// A connection (connected socket, accepted connection, or orphan).
    Conn(SlabKey),
    /// A TIME-WAIT entry.
    TimeWait(SlabKey),
}

/// One holder of a port.
#[derive(Debug, Clone, Copy)]
pub struct Binding {
    pub owner: Owner,
    pub ip: Ipv4Addr,
    pub reuse_addr: bool,
    pub listening: bool,
    /// Bound by `bind()` or inherited from a listener, rather than picked by `connect()`.
    pub explicit: bool,
}

/// Bindings by port.
#[derive(Debug, Default)]
pub struct TcpPorts {
    by_port: HashMap<u16, Vec<Binding>>,
}

fn overlap(a: Ipv4Addr, b: Ipv4Addr) -> bool {
    a.is_unspecified() || b.is_unspecified() || a == b
}

impl TcpPorts {
    /// Would `bind(ip, port)` with `reuse_addr` conflict? Linux: another holder of the port with an
    /// overlapping address conflicts unless both set SO_REUSEADDR and the other is not listening.
    pub fn bind_conflicts(&self, ip: Ipv4Addr, port: u16, reuse_addr: bool, except: Option<Owner>) -> bool {
        self.by_port.get(&port).is_some_and(|v| {
            v.iter()
                .any(|b| Some(b.owner) != except && overlap(b.ip, ip) && !(reuse_addr && b.reuse_addr && !b.listening))
        })
    }

    /// Would `listen()` on `(ip, port)` conflict with another listener?
    pub fn listen_conflicts(&self, ip: Ipv4Addr, port: u16, me: Owner) -> bool {
        self.by_port.get(&port).is_some_and(|v| v.iter().any(|b| b.owner != me && b.listening && overlap(b.ip, ip)))
    }

    /// True when a port was taken by `bind()` (or a listener) on an overlapping address: `connect()` may not
    /// pick it as an ephemeral port.
    pub fn explicitly_bound(&self, ip: Ipv4Addr, port: u16) -> bool {
        self.by_port.get(&port).is_some_and(|v| v.iter().any(|b| b.explicit && overlap(b.ip, ip)))
    }

    pub fn is_free(&self, port: u16) -> bool {
        !self.by_port.contains_key(&port)
    }

    pub fn add(&mut self, port: u16, binding: Binding) {
        self.by_port.entry(port).or_default().push(binding);
    }

    pub fn remove(&mut self, port: u16, owner: Owner) {
        if let Some(v) = self.by_port.get_mut(&port) {
            if let Some(i) = v.iter().position(|b| b.owner == owner) {
                v.swap_remove(i);
            }
            if v.is_empty() {
                self.by_port.remove(&port);
            }
        }
    }

    /// Hands a binding to a new holder (a socket's port passing to its connection, a connection's to its
    /// TIME-WAIT entry).
    pub fn transfer(&mut self, port: u16, from: Owner, to: Owner) {
        if let Some(b) = self.by_port.get_mut(&port).and_then(|v| v.iter_mut().find(|b| b.owner == from)) {
            b.owner = to;
        }
    }

    pub fn update(&mut self, port: u16, owner: Owner, f: impl FnOnce(&mut Binding)) {
        if let Some(b) = self.by_port.get_mut(&port).and_then(|v| v.iter_mut().find(|b| b.owner == owner)) {
            f(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(owner: i32, ip: [u8; 4], reuse: bool, listening: bool) -> Binding {
        Binding {
            owner: Owner::Socket(Fd(owner)),
            ip: Ipv4Addr::from(ip),
            reuse_addr: reuse,
            listening,
            explicit: true,
        }
    }

    #[test]
    fn linux_bind_rules() {
        let mut p = TcpPorts::default();
        p.add(80, b(3, [0, 0, 0, 0], true, false));
        assert!(p.bind_conflicts(Ipv4Addr::new(198, 18, 0, 2), 80, false, None), "needs SO_REUSEADDR on both");
        assert!(!p.bind_conflicts(Ipv4Addr::new(198, 18, 0, 2), 80, true, None));
        p.update(80, Owner::Socket(Fd(3)), |b| b.listening = true);
        assert!(p.bind_conflicts(Ipv4Addr::new(198, 18, 0, 2), 80, true, None), "never next to a listener");
        assert!(p.listen_conflicts(Ipv4Addr::UNSPECIFIED, 80, Owner::Socket(Fd(4))));
        assert!(!p.bind_conflicts(Ipv4Addr::new(198, 18, 0, 2), 81, false, None));
        p.transfer(80, Owner::Socket(Fd(3)), Owner::Socket(Fd(9)));
        p.remove(80, Owner::Socket(Fd(9)));
        assert!(p.is_free(80));
    }
}
