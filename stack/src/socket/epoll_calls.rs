//! `epoll_create`, `epoll_ctl`, `epoll_wait` and `poll` on the stack's descriptors, and the routing of
//! readiness changes to the epoll instances that watch them.

use super::epoll::{Epoll, EpollEvent, EpollOp, PollFd, POLLNVAL};
use super::{Fd, Readiness, Socket};
use crate::errno::{Errno, SysResult};
use crate::iface::Stack;

impl Stack {
    /// `epoll_create1(0)`: a new epoll instance, itself a descriptor.
    pub fn epoll_create(&mut self) -> SysResult<Fd> {
        self.sockets.insert(Socket::Epoll(Box::default()))
    }

    fn epoll_mut(&mut self, epfd: Fd) -> SysResult<&mut Epoll> {
        match self.sockets.get_mut(epfd)? {
            Socket::Epoll(e) => Ok(e),
            _ => Err(Errno::EINVAL),
        }
    }

    /// `epoll_ctl(epfd, op, fd, event)`: EBADF for a closed descriptor, EINVAL when `epfd` is not an epoll
    /// instance or is `fd` itself, EEXIST/ENOENT as Linux reports them.
    pub fn epoll_ctl(&mut self, epfd: Fd, op: EpollOp, fd: Fd, event: EpollEvent) -> SysResult<()> {
        self.route_events();
        if epfd == fd {
            return Err(Errno::EINVAL);
        }
        if matches!(self.sockets.get(fd)?, Socket::Epoll(_)) {
            // Nested epoll sets are not supported here.
            return Err(Errno::EINVAL);
        }
        let current = self.readiness(fd)?;
        self.epoll_mut(epfd)?.control(op, fd, event, current)?;
        let watchers = self.epoll_watchers.entry(fd).or_default();
        match op {
            EpollOp::Add => watchers.push(epfd),
            EpollOp::Delete => watchers.retain(|&e| e != epfd),
            EpollOp::Modify => {}
        }
        if watchers.is_empty() {
            self.epoll_watchers.remove(&fd);
        }
        self.notify.push(epfd);
        Ok(())
    }

    /// `epoll_wait(epfd, events, maxevents, 0)`: the ready interests now, at most `out.len()`; 0 when none.
    /// Never blocks: a runtime waits for the epoll descriptor's readiness and calls again.
    pub fn epoll_wait(&mut self, epfd: Fd, out: &mut [EpollEvent]) -> SysResult<usize> {
        self.route_events();
        if !matches!(self.sockets.get(epfd)?, Socket::Epoll(_)) {
            return Err(Errno::EINVAL);
        }
        let Ok(Socket::Epoll(mut ep)) = self.sockets.remove_for_update(epfd) else { return Err(Errno::EINVAL) };
        let n = ep.wait(out, |fd| self.readiness(fd).ok());
        self.sockets.restore(epfd, Socket::Epoll(ep));
        Ok(n)
    }

    /// `poll(fds, nfds, 0)`: fills each entry's `revents` (ERR and HUP always count; POLLNVAL for a closed
    /// descriptor) and returns how many entries have something. O(number of entries), as poll(2) is.
    pub fn poll_fds(&mut self, fds: &mut [PollFd]) -> usize {
        let mut n = 0;
        for p in fds.iter_mut() {
            p.revents = match self.readiness(p.fd) {
                Ok(r) => Readiness(r.0 & (p.events.0 | Readiness::ERR.0 | Readiness::HUP.0)),
                Err(_) => POLLNVAL,
            };
            if !p.revents.is_empty() {
                n += 1;
            }
        }
        n
    }

    /// Moves readiness changes from the protocols to the epoll instances watching them, and on to the list
    /// the driver reads ([`Stack::take_events`]). Each change costs O(instances watching that socket).
    pub(crate) fn route_events(&mut self) {
        let mut changed = std::mem::take(&mut self.events);
        changed.append(&mut self.tcp.events);
        for &fd in &changed {
            let Some(epfds) = self.epoll_watchers.get(&fd) else { continue };
            let Ok(now) = self.readiness(fd) else { continue };
            for &epfd in epfds.clone().iter() {
                if let Ok(Socket::Epoll(ep)) = self.sockets.get_mut(epfd) {
                    let was_ready = ep.has_ready();
                    ep.notify(fd, now);
                    if !was_ready && ep.has_ready() {
                        self.notify.push(epfd);
                    }
                }
            }
        }
        self.notify.append(&mut changed);
    }

    /// Drops a closed descriptor from every epoll set that watched it.
    pub(crate) fn epoll_forget(&mut self, fd: Fd) {
        if let Some(epfds) = self.epoll_watchers.remove(&fd) {
            for epfd in epfds {
                if let Ok(Socket::Epoll(ep)) = self.sockets.get_mut(epfd) {
                    ep.forget(fd);
                }
            }
        }
    }

    /// Closes an epoll instance: the sockets it watched no longer report to it.
    pub(crate) fn epoll_close(&mut self, epfd: Fd) -> SysResult<()> {
        let Ok(Socket::Epoll(ep)) = self.sockets.remove(epfd) else { return Err(Errno::EBADF) };
        for fd in ep.watched() {
            if let Some(w) = self.epoll_watchers.get_mut(&fd) {
                w.retain(|&e| e != epfd);
                if w.is_empty() {
                    self.epoll_watchers.remove(&fd);
                }
            }
        }
        Ok(())
    }
}
