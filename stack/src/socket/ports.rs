//! Which sockets hold which local port: the table that both demultiplexes incoming datagrams and decides
//! whether a `bind()` may take a port. Keyed by port, so a lookup never scans unrelated sockets.

use super::Fd;
use std::collections::HashMap;

/// Sockets by local port, for one transport protocol.
#[derive(Debug, Default)]
pub(crate) struct PortTable {
    by_port: HashMap<u16, Vec<Fd>>,
}

impl PortTable {
    /// The sockets bound to `port` (usually one).
    pub fn on_port(&self, port: u16) -> &[Fd] {
        self.by_port.get(&port).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn insert(&mut self, port: u16, fd: Fd) {
        self.by_port.entry(port).or_default().push(fd);
    }

    pub fn remove(&mut self, port: u16, fd: Fd) {
        if let Some(fds) = self.by_port.get_mut(&port) {
            fds.retain(|&f| f != fd);
            if fds.is_empty() {
                self.by_port.remove(&port);
            }
        }
    }

    /// A free port from `first..=last`, starting the search at a random offset and walking from there, so that
    /// successive choices are hard to guess and never collide (RFC 6056 section 3.3.1, Algorithm 1).
    pub fn pick_ephemeral(&self, first: u16, last: u16, random: u32) -> Option<u16> {
        if first > last {
            return None;
        }
        let count = u32::from(last - first) + 1;
        let offset = random % count;
        (0..count).map(|i| first + ((offset + i) % count) as u16).find(|port| !self.by_port.contains_key(port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_and_ephemeral() {
        let mut t = PortTable::default();
        t.insert(53, Fd(3));
        t.insert(53, Fd(4));
        assert_eq!(t.on_port(53), &[Fd(3), Fd(4)]);
        t.remove(53, Fd(3));
        assert_eq!(t.on_port(53), &[Fd(4)]);
        t.remove(53, Fd(4));
        assert!(t.on_port(53).is_empty());
        t.insert(100, Fd(5));
        t.insert(101, Fd(6));
        assert_eq!(t.pick_ephemeral(100, 102, 0), Some(102));
        t.insert(102, Fd(7));
        assert_eq!(t.pick_ephemeral(100, 102, 7), None);
    }
}
