//! The descriptor table: small integers, lowest free first, as `open(2)` and `socket(2)` hand them out.

use super::epoll::Epoll;
use super::tcp::TcpSocket;
use super::udp::UdpSocket;
use crate::errno::{Errno, SysResult};
use core::fmt;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// A socket descriptor. The first one handed out is 3, as in a fresh process whose 0, 1 and 2 are taken,
/// so that scripts written against Linux see the same numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fd(pub i32);

impl fmt::Display for Fd {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The first descriptor number.
pub const FIRST_FD: i32 = 3;

/// A socket of any protocol.
#[derive(Debug)]
pub(crate) enum Socket {
    Udp(Box<UdpSocket>),
    Tcp(Box<TcpSocket>),
    Epoll(Box<Epoll>),
}

/// A slab of sockets indexed by descriptor.
#[derive(Debug)]
pub(crate) struct SocketTable {
    slots: Vec<Option<Socket>>,
    free: BinaryHeap<Reverse<usize>>,
    open: usize,
    limit: usize,
}

impl SocketTable {
    /// A table that refuses a socket beyond `limit` open ones with `EMFILE`.
    pub fn new(limit: usize) -> Self {
        SocketTable { slots: Vec::new(), free: BinaryHeap::new(), open: 0, limit }
    }

    /// Stores `socket` under the lowest free descriptor.
    pub fn insert(&mut self, socket: Socket) -> SysResult<Fd> {
        if self.open >= self.limit {
            return Err(Errno::EMFILE);
        }
        let index = match self.free.pop() {
            Some(Reverse(i)) => i,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        self.slots[index] = Some(socket);
        self.open += 1;
        Ok(Fd(index as i32 + FIRST_FD))
    }

    fn index(fd: Fd) -> Option<usize> {
        usize::try_from(fd.0.checked_sub(FIRST_FD)?).ok()
    }

    pub fn get(&self, fd: Fd) -> SysResult<&Socket> {
        Self::index(fd).and_then(|i| self.slots.get(i)?.as_ref()).ok_or(Errno::EBADF)
    }

    pub fn get_mut(&mut self, fd: Fd) -> SysResult<&mut Socket> {
        Self::index(fd).and_then(|i| self.slots.get_mut(i)?.as_mut()).ok_or(Errno::EBADF)
    }

    /// Takes the socket out for a moment without freeing its descriptor; [`SocketTable::restore`] puts it
    /// back. For calls that need the socket and the rest of the table at once (an epoll instance asking
    /// other sockets' readiness).
    pub fn remove_for_update(&mut self, fd: Fd) -> SysResult<Socket> {
        let i = Self::index(fd).ok_or(Errno::EBADF)?;
        self.slots.get_mut(i).and_then(Option::take).ok_or(Errno::EBADF)
    }

    /// Puts back a socket taken with [`SocketTable::remove_for_update`].
    pub fn restore(&mut self, fd: Fd, socket: Socket) {
        if let Some(slot) = Self::index(fd).and_then(|i| self.slots.get_mut(i)) {
            *slot = Some(socket);
        }
    }

    /// Takes the socket out and frees its descriptor for reuse.
    pub fn remove(&mut self, fd: Fd) -> SysResult<Socket> {
        let i = Self::index(fd).ok_or(Errno::EBADF)?;
        let socket = self.slots.get_mut(i).and_then(Option::take).ok_or(Errno::EBADF)?;
        self.free.push(Reverse(i));
        self.open -= 1;
        Ok(socket)
    }

    /// True when another descriptor can be opened.
    pub fn has_room(&self) -> bool {
        self.open < self.limit
    }

    /// Every open descriptor with its socket, in descriptor order.
    pub fn iter(&self) -> impl Iterator<Item = (Fd, &Socket)> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| s.as_ref().map(|s| (Fd(i as i32 + FIRST_FD), s)))
    }

    pub fn len(&self) -> usize {
        self.open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp() -> Socket {
        Socket::Udp(Box::new(UdpSocket::new(1000, 1000)))
    }

    #[test]
    fn lowest_free_first_and_emfile() {
        let mut t = SocketTable::new(3);
        assert_eq!(t.insert(udp()), Ok(Fd(3)));
        assert_eq!(t.insert(udp()), Ok(Fd(4)));
        assert_eq!(t.insert(udp()), Ok(Fd(5)));
        assert_eq!(t.insert(udp()).unwrap_err(), Errno::EMFILE);
        t.remove(Fd(4)).unwrap();
        t.remove(Fd(3)).unwrap();
        assert_eq!(t.insert(udp()), Ok(Fd(3)));
        assert_eq!(t.insert(udp()), Ok(Fd(4)));
        assert_eq!(t.get(Fd(99)).unwrap_err(), Errno::EBADF);
        assert_eq!(t.get(Fd(-1)).unwrap_err(), Errno::EBADF);
        assert_eq!(t.remove(Fd(7)).unwrap_err(), Errno::EBADF);
        assert_eq!(t.iter().count(), 3);
    }
}
