//! Readiness notification: `poll(2)` over a set of descriptors, and an epoll-style registry whose `wait`
//! costs O(ready), not O(registered).
//!
//! An epoll instance is itself a descriptor (as on Linux). The stack pushes every socket whose readiness may
//! have changed to the instances watching it; each instance keeps a ready list. Level-triggered interests
//! stay on the list while the socket is ready; edge-triggered ones are reported once per readiness event in
//! which the watched condition holds (as Linux: an event is data arriving, room appearing, a state change,
//! or the application consuming what made the socket ready), and not again until the next event;
//! one-shot ones are disarmed after one report until `modify` re-arms them.

use super::{Fd, Readiness};
use std::collections::{HashMap, HashSet, VecDeque};

/// `EPOLLET`: report changes, not states.
pub const EPOLLET: u32 = 1 << 31;
/// `EPOLLONESHOT`: report once, then disarm.
pub const EPOLLONESHOT: u32 = 1 << 30;

/// `epoll_ctl` operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpollOp {
    Add,
    Modify,
    Delete,
}

/// What to watch and the value to report with it (`struct epoll_event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpollEvent {
    /// Readiness bits of interest (on input) or that are set (on output), plus EPOLLET/EPOLLONESHOT on input.
    pub events: u32,
    pub data: u64,
}

/// One entry of `poll(2)`'s array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollFd {
    pub fd: Fd,
    pub events: Readiness,
    pub revents: Readiness,
}

/// `POLLNVAL`: the descriptor is not open.
pub const POLLNVAL: Readiness = Readiness(0x020);

#[derive(Debug, Clone, Copy)]
struct Interest {
    events: Readiness,
    data: u64,
    edge: bool,
    oneshot: bool,
    /// Disarmed one-shot interest.
    disarmed: bool,
    /// Readiness at the last event (for diagnostics).
    last: Readiness,
}

/// An epoll instance.
#[derive(Debug, Default)]
pub(crate) struct Epoll {
    interests: HashMap<Fd, Interest>,
    ready: VecDeque<Fd>,
    queued: HashSet<Fd>,
}

/// Error and hang-up are always reported, whether asked for or not (epoll_ctl(2)).
fn always() -> Readiness {
    Readiness::ERR | Readiness::HUP
}

impl Epoll {
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.interests.is_empty()
    }

    /// Registers, changes or removes an interest; `current` is the socket's readiness now.
    pub fn control(&mut self, op: EpollOp, fd: Fd, event: EpollEvent, current: Readiness) -> Result<(), crate::Errno> {
        use crate::Errno;
        let interest = |last| Interest {
            events: Readiness((event.events & 0xffff) as u16) | always(),
            data: event.data,
            edge: event.events & EPOLLET != 0,
            oneshot: event.events & EPOLLONESHOT != 0,
            disarmed: false,
            last,
        };
        match op {
            EpollOp::Add => {
                if self.interests.contains_key(&fd) {
                    return Err(Errno::EEXIST);
                }
                self.interests.insert(fd, interest(Readiness::default()));
            }
            EpollOp::Modify => {
                if !self.interests.contains_key(&fd) {
                    return Err(Errno::ENOENT);
                }
                self.interests.insert(fd, interest(Readiness::default()));
            }
            EpollOp::Delete => {
                if self.interests.remove(&fd).is_none() {
                    return Err(Errno::ENOENT);
                }
                self.queued.remove(&fd);
                return Ok(());
            }
        }
        self.notify(fd, current);
        Ok(())
    }

    /// The socket `fd` may have changed readiness to `now`.
    pub fn notify(&mut self, fd: Fd, now: Readiness) {
        let Some(i) = self.interests.get_mut(&fd) else { return };
        if i.disarmed {
            i.last = now;
            return;
        }
        let wanted = Readiness(now.0 & i.events.0);
        let fire = !wanted.is_empty();
        i.last = now;
        if fire && self.queued.insert(fd) {
            self.ready.push_back(fd);
        }
    }

    /// True when `wait` would report something (without re-checking level-triggered entries).
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Reports up to `out.len()` ready interests, re-checking each with `readiness` (so a socket that stopped
    /// being ready meanwhile is not reported). Level-triggered entries that are still ready go back on the
    /// list, so a later `wait` reports them again, as Linux does.
    pub fn wait(&mut self, out: &mut [EpollEvent], mut readiness: impl FnMut(Fd) -> Option<Readiness>) -> usize {
        let mut n = 0;
        let mut requeue = Vec::new();
        while n < out.len() {
            let Some(fd) = self.ready.pop_front() else { break };
            self.queued.remove(&fd);
            let Some(i) = self.interests.get_mut(&fd) else { continue };
            let Some(now) = readiness(fd) else {
                // The descriptor was closed: Linux drops it from every epoll set.
                self.interests.remove(&fd);
                continue;
            };
            let wanted = Readiness(now.0 & i.events.0);
            if wanted.is_empty() || i.disarmed {
                continue;
            }
            out[n] = EpollEvent { events: u32::from(wanted.0), data: i.data };
            n += 1;
            if i.oneshot {
                i.disarmed = true;
            } else if !i.edge {
                requeue.push(fd);
            }
        }
        for fd in requeue {
            if self.queued.insert(fd) {
                self.ready.push_back(fd);
            }
        }
        n
    }

    /// Every descriptor this instance watches.
    pub fn watched(&self) -> impl Iterator<Item = Fd> + '_ {
        self.interests.keys().copied()
    }

    /// Forgets a descriptor that was closed.
    pub fn forget(&mut self, fd: Fd) {
        self.interests.remove(&fd);
        self.queued.remove(&fd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IN: u32 = Readiness::IN.0 as u32;

    fn ev(events: u32, data: u64) -> EpollEvent {
        EpollEvent { events, data }
    }

    #[test]
    fn level_triggered_reports_while_ready() {
        let mut ep = Epoll::default();
        ep.control(EpollOp::Add, Fd(3), ev(IN, 7), Readiness::default()).unwrap();
        let mut out = [ev(0, 0); 4];
        assert_eq!(ep.wait(&mut out, |_| Some(Readiness::default())), 0);
        ep.notify(Fd(3), Readiness::IN);
        assert_eq!(ep.wait(&mut out, |_| Some(Readiness::IN)), 1);
        assert_eq!(out[0], ev(IN, 7));
        assert_eq!(ep.wait(&mut out, |_| Some(Readiness::IN)), 1, "still ready: reported again");
        assert_eq!(ep.wait(&mut out, |_| Some(Readiness::default())), 0, "drained: not reported");
    }

    #[test]
    fn edge_triggered_reports_each_change_once() {
        let mut ep = Epoll::default();
        ep.control(EpollOp::Add, Fd(3), ev(IN | EPOLLET, 1), Readiness::default()).unwrap();
        let mut out = [ev(0, 0); 4];
        ep.notify(Fd(3), Readiness::IN);
        ep.notify(Fd(3), Readiness::IN);
        assert_eq!(ep.wait(&mut out, |_| Some(Readiness::IN)), 1);
        assert_eq!(ep.wait(&mut out, |_| Some(Readiness::IN)), 0, "no change since");
        ep.notify(Fd(3), Readiness::default());
        assert_eq!(ep.wait(&mut out, |_| Some(Readiness::default())), 0);
        ep.notify(Fd(3), Readiness::IN);
        assert_eq!(ep.wait(&mut out, |_| Some(Readiness::IN)), 1, "a new event");
    }

    #[test]
    fn oneshot_disarms_until_modified_and_errors_are_always_reported() {
        let mut ep = Epoll::default();
        ep.control(EpollOp::Add, Fd(3), ev(IN | EPOLLONESHOT, 1), Readiness::IN).unwrap();
        let mut out = [ev(0, 0); 4];
        assert_eq!(ep.wait(&mut out, |_| Some(Readiness::IN)), 1);
        ep.notify(Fd(3), Readiness::IN);
        assert_eq!(ep.wait(&mut out, |_| Some(Readiness::IN)), 0);
        ep.control(EpollOp::Modify, Fd(3), ev(Readiness::OUT.0 as u32, 2), Readiness::ERR).unwrap();
        assert_eq!(ep.wait(&mut out, |_| Some(Readiness::ERR)), 1);
        assert_eq!(out[0].events, Readiness::ERR.0 as u32, "ERR reported though not asked for");
        assert_eq!(ep.control(EpollOp::Add, Fd(3), ev(IN, 0), Readiness::IN), Err(crate::Errno::EEXIST));
        assert_eq!(ep.control(EpollOp::Delete, Fd(4), ev(IN, 0), Readiness::IN), Err(crate::Errno::ENOENT));
    }

    #[test]
    fn closed_descriptors_drop_out() {
        let mut ep = Epoll::default();
        ep.control(EpollOp::Add, Fd(3), ev(IN, 0), Readiness::IN).unwrap();
        let mut out = [ev(0, 0); 4];
        assert_eq!(ep.wait(&mut out, |_| None), 0);
        assert!(ep.is_empty());
    }
}
