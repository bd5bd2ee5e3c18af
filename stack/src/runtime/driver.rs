//! The driver thread and the shared handle to a running stack.

use super::device_watch::DeviceWatch;
use crate::errno::Errno;
use crate::iface::counters::Counters;
use crate::iface::{FrameSink, Stack, StackConfig};
use crate::socket::Fd;
use crate::time::Instant;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;
use ustack_netdev::wait::{wait_any, EventFd};
use ustack_netdev::{Device, FrameBatch};

/// Tunables of the driver.
#[derive(Debug, Clone)]
pub struct NetStackOptions {
    /// Frames moved per device call.
    pub batch_size: usize,
    /// Receive batches processed per wake-up before timers and output get a turn (bounds latency under load).
    pub max_batches_per_wake: usize,
    /// Keep the configuration's seed (the same choices every run, for debugging); by default the runtime mixes in
    /// OS randomness.
    pub reproducible: bool,
    /// While a blocking call busy-polls the device, the driver stops watching it (Linux's
    /// `SO_PREFER_BUSY_POLL`; see `runtime/device_watch.rs`). Off by default, as in Linux: it can make a receiver
    /// that keeps up with a fast sender cheaper for the sender (measured here: kernel→stack bulk with TAP
    /// offloads, median 40 against 30 Gbit/s over 16 alternating repetitions, though it spreads widely), but on
    /// a two-CPU virtual machine it made 64-byte request/response 3–4× slower: with the driver asleep, the idle
    /// CPU halts, and the scheduler then runs the peer's thread on the spinning thread's CPU.
    pub prefer_busy_poll: bool,
    /// The driver thread's name, as `top -H` and `/proc/PID/task/*/comm` show it (Linux keeps 15 bytes).
    pub thread_name: String,
}

impl Default for NetStackOptions {
    fn default() -> Self {
        NetStackOptions {
            batch_size: 64,
            max_batches_per_wake: 8,
            reproducible: false,
            prefer_busy_poll: false,
            thread_name: "ustack-driver".into(),
        }
    }
}

pub(crate) struct Shared {
    pub(crate) stack: Mutex<Stack>,
    /// The device and its transmit batch. Taken only after the stack lock: by the driver, and by a socket
    /// call that queued output, which sends it itself instead of waking the driver for it.
    io: Mutex<DeviceIo>,
    /// When the sleeping driver will wake on its own, in nanoseconds of the stack's clock (`u64::MAX`: only
    /// when a frame arrives or it is rung). Written under the stack lock, or moved earlier without it by a
    /// driver deferring to calls. A call whose output sets a timer before it rings the driver, which would
    /// otherwise sleep through the timer.
    driver_wakes_at: AtomicU64,
    /// Scratch space for the descriptors whose readiness changed, reused by every call (under the stack lock).
    changed: Mutex<Vec<Fd>>,
    /// Rung by socket calls that queued output, and by `shutdown`.
    doorbell: EventFd,
    stop: AtomicBool,
    origin: std::time::Instant,
    /// Async tasks waiting on a descriptor, woken when its readiness may have changed. Taken only after the
    /// stack lock (never the other way round), so the two locks cannot deadlock.
    pub(crate) wakers: Mutex<std::collections::HashMap<Fd, Vec<std::task::Waker>>>,
    /// Whether the driver or the calls watch the device.
    watch: DeviceWatch,
    /// [`NetStackOptions::prefer_busy_poll`].
    prefer_busy_poll: bool,
}

impl Shared {
    /// The state a stack on `device` shares between its driver and the calls of its handles.
    fn new<D: Device + 'static>(device: D, config: StackConfig, options: &NetStackOptions) -> io::Result<Shared> {
        let slot = device.max_frame_len().max(device.mtu() + 14) + 4;
        let tx = FrameBatch::new(options.batch_size, slot);
        let rx = FrameBatch::new(options.batch_size, slot);
        Ok(Shared {
            stack: Mutex::new(Stack::new(config)),
            io: Mutex::new(DeviceIo { device: Box::new(device), tx, rx }),
            driver_wakes_at: AtomicU64::new(u64::MAX),
            changed: Mutex::new(Vec::new()),
            doorbell: EventFd::new()?,
            stop: AtomicBool::new(false),
            origin: std::time::Instant::now(),
            wakers: Mutex::new(std::collections::HashMap::new()),
            watch: DeviceWatch::default(),
            prefer_busy_poll: options.prefer_busy_poll,
        })
    }

    pub(crate) fn now(&self) -> Instant {
        Instant::from_duration(self.origin.elapsed())
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Stack> {
        // A panic on another thread while it held the lock leaves the stack as it was between two calls; carry on.
        self.stack.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn ring(&self) {
        self.doorbell.notify();
    }
}

/// A stack running on a device, driven by its own thread. Cloning gives another handle to the same stack; the
/// thread stops when [`NetStack::shutdown`] is called or the last handle is dropped.
#[derive(Clone)]
pub struct NetStack {
    pub(crate) shared: Arc<Shared>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for NetStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetStack").finish_non_exhaustive()
    }
}

impl NetStack {
    /// Starts a stack with `config` on `device`.
    pub fn spawn<D: Device + 'static>(device: D, config: StackConfig) -> io::Result<NetStack> {
        Self::spawn_with(device, config, NetStackOptions::default())
    }

    /// Starts a stack with explicit driver options.
    pub fn spawn_with<D: Device + 'static>(
        device: D,
        mut config: StackConfig,
        options: NetStackOptions,
    ) -> io::Result<NetStack> {
        if options.thread_name.contains('\0') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the driver's thread name contains a NUL byte"));
        }
        config.mtu = config.mtu.min(device.mtu());
        // A device with segmentation offload takes TCP super-segments up to its largest frame. It cuts them at
        // what fits its own MTU, so only a stack using that same MTU may hand it any.
        if device.max_frame_len() > device.mtu() + 14 && config.mtu == device.mtu() {
            config.tcp.gso_max_size = device.max_frame_len() - 14;
        }
        if !options.reproducible {
            // A running stack's secrets must not be guessable (RFC 6528 section 3: the ISN key, and with it the
            // ephemeral port and timestamp offsets) and must differ between runs, or a rerun picks the same
            // first ports and collides with its predecessor's TIME-WAIT entries at the peer: mix in the OS's
            // randomness (std's RandomState is seeded from it).
            use std::hash::{BuildHasher, Hasher};
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u64(config.seed);
            config.seed = hasher.finish();
        }
        let device_fd = device.pollable_fd();
        let shared = Arc::new(Shared::new(device, config, &options)?);
        let driver_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(options.thread_name.clone())
            .spawn(move || drive(driver_shared, device_fd, options))?;
        Ok(NetStack { shared, thread: Arc::new(Mutex::new(Some(thread))) })
    }

    /// Runs `f` on the stack under its lock, then sends whatever `f` queued. For socket calls that the
    /// handles here do not cover.
    pub fn with_stack<R>(&self, f: impl FnOnce(&mut Stack) -> R) -> R {
        let mut stack = self.shared.lock();
        let result = f(&mut stack);
        self.shared.transmit(&mut stack);
        self.shared.release(stack);
        result
    }

    /// A copy of the stack's counters.
    pub fn counters(&self) -> Counters {
        let stack = self.shared.lock();
        let counters = stack.counters().clone();
        self.shared.release(stack);
        counters
    }

    /// Every socket of the stack, as `ss` shows them.
    pub fn sockets_snapshot(&self) -> Vec<crate::socket::SocketInfo> {
        let now = self.shared.now();
        let stack = self.shared.lock();
        let sockets = stack.sockets_snapshot(now);
        self.shared.release(stack);
        sockets
    }

    /// Time on the stack's clock.
    pub fn now(&self) -> Instant {
        self.shared.now()
    }

    /// Stops the driver thread and waits for it. Sockets stop working; calls return errors.
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.ring();
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
        // Everyone still waiting must notice that the stack is gone.
        let all: Vec<std::task::Waker> =
            self.shared.wakers.lock().unwrap_or_else(|p| p.into_inner()).drain().flat_map(|(_, w)| w).collect();
        all.into_iter().for_each(std::task::Waker::wake);
    }

    /// Runs a non-blocking core call; with `Wait::On`, while it says `EAGAIN`, sleeps until one of the given
    /// descriptors may have changed readiness (or the timeout passes) and tries again. Rings the driver
    /// afterwards when `rings` (the call may have queued output).
    pub(crate) fn call<T>(
        &self,
        wait: Wait<'_>,
        rings: bool,
        mut op: impl FnMut(&mut Stack) -> Result<T, Errno>,
    ) -> io::Result<T> {
        let (fds, deadline) = match wait {
            Wait::Never => (&[][..], None),
            Wait::On { fds, timeout } => (fds, timeout.map(|t| std::time::Instant::now() + t)),
        };
        let woken = Arc::new(AtomicBool::new(false));
        let waker = std::task::Waker::from(Arc::new(ThreadWaker(std::thread::current(), Arc::clone(&woken))));
        let mut stack = self.shared.lock();
        loop {
            match op(&mut stack) {
                Err(Errno::EAGAIN) if matches!(wait, Wait::On { .. }) => {}
                result => {
                    if rings {
                        self.shared.transmit(&mut stack);
                    }
                    self.shared.release(stack);
                    return result.map_err(io::Error::from);
                }
            }
            if self.shared.stop.load(Ordering::SeqCst) {
                return Err(io::Error::new(io::ErrorKind::NotConnected, "the stack has been shut down"));
            }
            // Registered under the stack lock, so no readiness change can slip in before we sleep; the driver
            // wakes only the threads waiting on descriptors whose readiness may have changed.
            woken.store(false, Ordering::SeqCst);
            for &fd in fds {
                self.shared.register_waker(fd, &waker);
            }
            // After registering: should sending change what we wait for, we are woken, not left asleep.
            if rings {
                self.shared.transmit(&mut stack);
            }
            self.shared.release(stack);
            let waiting_since = std::time::Instant::now();
            self.shared.spin_until_woken(&woken, waiting_since);
            if !woken.load(Ordering::SeqCst) && self.shared.watch.call_parks() {
                // The driver leaves the device to calls, and this one is going to sleep.
                self.shared.ring();
            }
            match deadline {
                _ if woken.load(Ordering::SeqCst) => {}
                None => std::thread::park(),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        // std::net on Unix reports an expired read timeout as WouldBlock.
                        return Err(io::Error::from(Errno::EAGAIN));
                    }
                    std::thread::park_timeout(left);
                }
            }
            record_wait(waiting_since.elapsed());
            stack = self.shared.lock();
        }
    }

    /// Waits until `fd`'s readiness intersects `interest`, or `timeout` passes (then `WouldBlock`).
    pub(crate) fn wait_ready(
        &self,
        fd: Fd,
        interest: crate::socket::Readiness,
        timeout: Option<Duration>,
    ) -> io::Result<crate::socket::Readiness> {
        self.call(Wait::On { fds: &[fd], timeout }, false, |s| {
            let r = s.readiness(fd)?;
            if r.intersects(interest) {
                Ok(r)
            } else {
                Err(Errno::EAGAIN)
            }
        })
    }

    /// Closes `fd`, ignoring errors (for `Drop`).
    pub(crate) fn close_quietly(&self, fd: Fd) {
        let mut stack = self.shared.lock();
        let _ = stack.close(fd);
        // Waiters on this descriptor must not be woken for whatever reuses the number.
        self.shared.wakers.lock().unwrap_or_else(|p| p.into_inner()).remove(&fd);
        self.shared.transmit(&mut stack);
        self.shared.release(stack);
    }

    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    /// One attempt at a non-blocking core call for an async task: `Pending` (with the task's waker registered
    /// for `fd`) when it would block.
    pub(crate) fn poll_call<T>(
        &self,
        cx: &mut std::task::Context<'_>,
        fd: Fd,
        rings: bool,
        op: impl FnOnce(&mut Stack) -> Result<T, Errno>,
    ) -> std::task::Poll<io::Result<T>> {
        let mut stack = self.shared.lock();
        let result = op(&mut stack);
        let pending = matches!(result, Err(Errno::EAGAIN));
        if pending {
            if self.shared.stop.load(Ordering::SeqCst) {
                return std::task::Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::NotConnected,
                    "the stack has been shut down",
                )));
            }
            self.shared.register_waker(fd, cx.waker());
        }
        if rings {
            self.shared.transmit(&mut stack);
        }
        self.shared.release(stack);
        if pending {
            // The task now waits for the driver, like a call that parks.
            if self.shared.watch.call_parks() {
                self.shared.ring();
            }
            return std::task::Poll::Pending;
        }
        std::task::Poll::Ready(result.map_err(io::Error::from))
    }
}

impl Drop for NetStack {
    fn drop(&mut self) {
        // The driver holds its own Arc<Shared>; when only it and this handle remain, stop it.
        if Arc::strong_count(&self.thread) == 1 {
            self.shutdown();
        }
    }
}

/// How a runtime call may wait.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait<'a> {
    /// One attempt; `EAGAIN` is returned as is (non-blocking calls and calls that never block).
    Never,
    /// Retry until done, sleeping until one of `fds` may have changed readiness, at most `timeout`.
    On { fds: &'a [Fd], timeout: Option<Duration> },
}

impl<'a> Wait<'a> {
    /// Waits on `fds` unless the handle is non-blocking.
    pub(crate) fn on(fds: &'a [Fd], nonblocking: bool, timeout: Option<Duration>) -> Wait<'a> {
        if nonblocking {
            Wait::Never
        } else {
            Wait::On { fds, timeout }
        }
    }
}

/// Wakes a thread waiting in [`NetStack::call`]: raises its flag (seen at once if it spins) and unparks it.
struct ThreadWaker(std::thread::Thread, Arc<AtomicBool>);

impl std::task::Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.1.store(true, Ordering::SeqCst);
        self.0.unpark();
    }
}

/// The longest a blocking call spins before it parks. Linux suggests 50 µs for `net.core.busy_read`; waking
/// a parked thread costs tens of microseconds on the machines measured, so a request/response partner
/// that answers within this is caught without that cost.
pub(super) const MAX_SPIN: Duration = Duration::from_micros(100);

thread_local! {
    /// The moving average of how long this thread's blocking calls waited, in nanoseconds: it decides whether
    /// they spin. Kept per thread, not per stack: a thread blocked for seconds in `accept` must not stop the
    /// thread reading a busy connection from spinning (a per-stack average did, whenever the two shared a
    /// stack). `u64::MAX` until the thread's first wait, which then sets it (as the first RTT sample sets
    /// SRTT, RFC 6298 section 2.2).
    static WAIT_EWMA_NS: std::cell::Cell<u64> = const { std::cell::Cell::new(u64::MAX) };
}

/// This thread's typical wait in a blocking call (very long until it has waited at all).
fn typical_wait() -> Duration {
    Duration::from_nanos(WAIT_EWMA_NS.with(std::cell::Cell::get))
}

/// Folds a blocking call's wait into this thread's moving average (weight 1/8, like SRTT).
fn record_wait(waited: Duration) {
    let sample = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX - 1);
    WAIT_EWMA_NS.with(|ewma| {
        let old = ewma.get();
        ewma.set(if old == u64::MAX { sample } else { (old - old / 8).saturating_add(sample / 8) });
    });
}

/// How long to spin when blocking calls typically wait `typical`: twice that while it is short, else not at
/// all. Spinning yields the CPU on each turn, so on a busy machine the threads that will wake us still run.
fn spin_budget(typical: Duration) -> Duration {
    if typical > MAX_SPIN {
        Duration::ZERO
    } else {
        (typical * 2).min(MAX_SPIN)
    }
}

/// The device, the batch frames are built in before they go out, and the batch they are read into.
struct DeviceIo {
    device: Box<dyn Device>,
    tx: FrameBatch,
    rx: FrameBatch,
}

impl DeviceIo {
    /// Reads up to `max_batches` batches from the device into the stack, its replies going to the
    /// transmit batch. Returns the frames read.
    fn receive(&mut self, stack: &mut Stack, now: Instant, max_batches: usize) -> usize {
        let DeviceIo { device, tx, rx } = self;
        let mut sink = FlushingSink { device: &mut **device, batch: tx };
        let mut total = 0;
        for _ in 0..max_batches {
            rx.clear();
            let received = match sink.device.recv_batch(rx) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!("device receive failed: {e}");
                    0
                }
            };
            stack.receive_device_batch(now, rx, &mut sink);
            total += received;
            if received < rx.capacity() {
                break;
            }
        }
        total
    }

    /// Runs the stack's timers and output, then sends the transmit batch.
    fn poll_and_flush(&mut self, stack: &mut Stack, now: Instant) {
        let mut sink = FlushingSink::new(self);
        stack.poll(now, &mut sink);
        sink.flush();
    }
}

/// A [`FrameSink`] over a device's transmit batch that sends the batch whenever it fills.
struct FlushingSink<'a> {
    device: &'a mut dyn Device,
    batch: &'a mut FrameBatch,
}

impl<'a> FlushingSink<'a> {
    fn new(io: &'a mut DeviceIo) -> Self {
        FlushingSink { device: &mut *io.device, batch: &mut io.tx }
    }

    fn flush(&mut self) {
        if !self.batch.is_empty() {
            if let Err(e) = self.device.send_batch(self.batch) {
                tracing::warn!("device send failed: {e}");
            }
            self.batch.clear();
        }
    }
}

impl FrameSink for FlushingSink<'_> {
    fn frame(&mut self, len: usize) -> Option<&mut [u8]> {
        if self.batch.is_full() {
            self.flush();
        }
        self.batch.push_with_len(len)
    }

    /// To a device that gathers, the frame goes at once, after the frames batched before it, its tail sent
    /// from where it lies.
    fn frame_with_tail(
        &mut self,
        head_len: usize,
        tail: (&[u8], &[u8]),
        write_head: &mut dyn FnMut(&mut [u8]),
    ) -> bool {
        if !self.device.gathers() || head_len > MAX_GATHERED_HEAD {
            return crate::iface::copy_frame_with_tail(self, head_len, tail, write_head);
        }
        self.flush();
        let mut head = [0u8; MAX_GATHERED_HEAD];
        write_head(&mut head[..head_len]);
        match self.device.send_gathered(&[&head[..head_len], tail.0, tail.1]) {
            Ok(sent) => sent,
            Err(e) => {
                tracing::warn!("device send failed: {e}");
                false
            }
        }
    }
}

/// The longest headers a gathered frame may have: Ethernet, IPv4 and TCP, each with the most options.
const MAX_GATHERED_HEAD: usize = 14 + 60 + 60;

/// How many times in a row the driver leaves the device to calls (each time up to
/// [`DEFERRAL_LIMIT`](super::device_watch::DEFERRAL_LIMIT)) before it waits for the stack lock instead.
const MAX_DEFERRALS_IN_A_ROW: u32 = 8;

fn drive(shared: Arc<Shared>, device_fd: Option<std::os::fd::RawFd>, options: NetStackOptions) {
    // The driver's sleeps are often tens of microseconds (a deferral, a grace period): without this, Linux
    // may stretch each by 50 µs.
    if let Err(e) = ustack_netdev::wait::tighten_timer_slack() {
        tracing::warn!("cannot tighten the driver's timer slack: {e}");
    }
    let mut fds = vec![shared.doorbell_fd()];
    fds.extend(device_fd);
    let mut timeout = shared.note_driver_wake(&shared.lock());
    let mut deferrals_in_a_row = 0;
    while !shared.stop.load(Ordering::SeqCst) {
        // Without a pollable device fall back to a short tick rather than sleeping through its frames.
        if device_fd.is_none() {
            timeout = Some(timeout.unwrap_or(Duration::from_millis(1)).min(Duration::from_millis(1)));
        }
        // While calls take the device's frames themselves, sleep on the doorbell and the timers only.
        let (watched, wait_for) = match shared.watch.driver_sleeps(shared.now().as_nanos()) {
            Some(away) => (&fds[..1], Some(timeout.map_or(away, |t| t.min(away)))),
            None => (&fds[..], timeout),
        };
        let waited = wait_any(watched, wait_for);
        shared.watch.driver_woke();
        if let Err(e) = waited {
            tracing::error!("driver wait failed: {e}");
            break;
        }
        shared.doorbell.drain();
        let mut stack = match try_lock(&shared.stack) {
            Some(stack) => stack,
            // Calls that never let the stack go for long enough would starve the timers, which only the
            // driver and sending calls run: after a few deferrals in a row, wait for the lock.
            None if deferrals_in_a_row >= MAX_DEFERRALS_IN_A_ROW => shared.lock(),
            None => {
                // A call holds the stack: rather than sleep on the lock, leave the frames to the calls, which
                // read the device as they let go of the stack (see `device_watch` and `Shared::release`).
                shared.watch.defer_to_calls();
                std::sync::atomic::fence(Ordering::SeqCst);
                match try_lock(&shared.stack) {
                    // Let go meanwhile, perhaps before it saw the deferral: take the frames after all.
                    Some(stack) => stack,
                    None => {
                        deferrals_in_a_row += 1;
                        timeout = Some(shared.defer_timers());
                        continue;
                    }
                }
            }
        };
        deferrals_in_a_row = 0;
        shared.watch.driver_holds_stack();
        // Awake: whatever calls do now, the driver looks at the timers again before it sleeps.
        shared.driver_wakes_at.store(u64::MAX, Ordering::SeqCst);
        let now = shared.now();
        let mut io = shared.io.lock().unwrap_or_else(|p| p.into_inner());
        io.receive(&mut stack, now, options.max_batches_per_wake);
        io.poll_and_flush(&mut stack, now);
        drop(io);
        shared.wake_changed(&mut stack);
        timeout = shared.note_driver_wake(&stack);
    }
    // Output queued after the last pass (a close just before shutdown) still goes out: a FIN or RST the
    // application asked for must not be lost.
    let mut stack = shared.lock();
    let mut io = shared.io.lock().unwrap_or_else(|p| p.into_inner());
    io.poll_and_flush(&mut stack, shared.now());
}

/// `Mutex::try_lock` that, like [`Shared::lock`], carries on past a poisoned lock; `None` only when another
/// thread holds it.
fn try_lock<T>(mutex: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match mutex.try_lock() {
        Ok(guard) => Some(guard),
        Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

impl Shared {
    /// Records, under the stack lock, when the driver will wake on its own (a call that comes after sees it,
    /// and rings if it needs the driver sooner), and returns how long from now that is.
    fn note_driver_wake(&self, stack: &Stack) -> Option<Duration> {
        let wakes_at = stack.poll_at();
        self.driver_wakes_at.store(wakes_at.map_or(u64::MAX, Instant::as_nanos), Ordering::SeqCst);
        wakes_at.map(|at| at.saturating_since(self.now()))
    }

    /// The driver defers to calls: it looks again within [`DEFERRAL_LIMIT`](super::device_watch::DEFERRAL_LIMIT),
    /// or sooner if a timer falls due before. Returns how long from now. `driver_wakes_at` only moves earlier
    /// here, so a call that read it before (without the lock) rings at worst when it need not.
    fn defer_timers(&self) -> Duration {
        let now = self.now().as_nanos();
        let limit = now.saturating_add(super::device_watch::DEFERRAL_LIMIT.as_nanos() as u64);
        let wakes_at = self.driver_wakes_at.load(Ordering::SeqCst).min(limit);
        self.driver_wakes_at.store(wakes_at, Ordering::SeqCst);
        Duration::from_nanos(wakes_at.saturating_sub(now))
    }

    /// A call lets go of the stack. If the driver found the stack held and left the device to the calls, this
    /// one first takes what the device holds (as Linux's `release_sock` processes the socket's backlog).
    ///
    /// The driver may leave the device to the calls just as this one lets go, after it looked: it looks once
    /// more after letting go, and the driver tries the lock once more after deferring (both behind a fence),
    /// so one of the two takes the frames.
    pub(crate) fn release(&self, mut stack: MutexGuard<'_, Stack>) {
        if self.watch.deferred_to_calls() {
            self.take_input(&mut stack);
        }
        drop(stack);
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.watch.deferred_to_calls() {
            // Held again already: whoever holds it reads the device as it lets go, or is the driver.
            if let Some(mut stack) = try_lock(&self.stack) {
                self.take_input(&mut stack);
            }
        }
    }

    /// Reads one batch from the device into the stack, sends the replies and wakes whom they concern, from a
    /// call that holds the stack: one that lets go of it while the driver leaves the device to the calls, or
    /// one that busy-polls. Gives way (returns false) when someone else holds the device, or when nothing
    /// arrived.
    fn take_input(&self, stack: &mut Stack) -> bool {
        let Some(mut io) = try_lock(&self.io) else { return false };
        let now = self.now();
        if io.receive(stack, now, 1) == 0 {
            return false;
        }
        io.poll_and_flush(stack, now);
        drop(io);
        self.after_output(stack);
        true
    }

    /// Sends what a socket call queued, from the calling thread (which holds the stack lock), rather than
    /// waking the driver to do it: a send costs one thread hop less. The driver is rung only when it cannot be
    /// done here (the driver holds the device) or when a timer the output set falls before the driver's
    /// wake-up.
    pub(crate) fn transmit(&self, stack: &mut Stack) {
        let Ok(mut io) = self.io.try_lock() else {
            return self.ring();
        };
        io.poll_and_flush(stack, self.now());
        drop(io);
        self.after_output(stack);
    }

    /// After a call or a busy poll ran the stack: the driver must wake sooner if a timer now falls due before
    /// it would, and the threads whose descriptors changed are woken.
    fn after_output(&self, stack: &mut Stack) {
        if stack.poll_at().is_some_and(|at| at.as_nanos() < self.driver_wakes_at.load(Ordering::SeqCst)) {
            self.ring();
        }
        self.wake_changed(stack);
    }

    /// Spin-then-sleep, adaptively: while recent waits of blocking calls were short (a request/response
    /// exchange), a call about to park first spins for up to twice the typical wait, bounded by
    /// [`MAX_SPIN`], watching its wake flag; waits longer than that (an idle connection) turn spinning off,
    /// so an idle application burns no CPU.
    ///
    /// While it spins it also polls the device itself, as Linux's busy polling (`SO_BUSY_POLL`) does: the
    /// frame it waits for is then processed on its own thread, without waiting for the driver thread to wake,
    /// take it and wake this one — two thread hops fewer, which on two cores shared with the peer is most of a
    /// round trip.
    ///
    /// With [`NetStackOptions::prefer_busy_poll`] the driver leaves the device to it while it spins
    /// ([`DeviceWatch`]); a call that gives up and parks hands the device back.
    fn spin_until_woken(&self, woken: &AtomicBool, since: std::time::Instant) {
        let budget = spin_budget(typical_wait());
        if budget.is_zero() {
            return;
        }
        if self.prefer_busy_poll {
            self.watch.start_polling();
        }
        while !woken.load(Ordering::SeqCst) && since.elapsed() < budget {
            if !self.busy_poll() {
                std::thread::yield_now();
            }
        }
        if self.prefer_busy_poll && self.watch.stop_polling(self.now().as_nanos(), woken.load(Ordering::SeqCst)) {
            self.ring();
        }
    }

    /// One non-blocking pass over the device from a spinning call: receive what is there, send the replies,
    /// wake who it concerns. Gives way (returns false) when the driver or another call holds the stack or
    /// the device, or when nothing arrived.
    fn busy_poll(&self) -> bool {
        try_lock(&self.stack).is_some_and(|mut stack| self.take_input(&mut stack))
    }

    /// Wakes the threads and tasks waiting on descriptors whose readiness may have changed.
    fn wake_changed(&self, stack: &mut Stack) {
        if !stack.has_events() {
            return;
        }
        let mut changed = self.changed.lock().unwrap_or_else(|p| p.into_inner());
        changed.clear();
        stack.take_events(&mut changed);
        self.wake_tasks(&changed);
    }
}

impl Shared {
    /// Wakes the async tasks waiting on any of `fds`.
    pub(crate) fn wake_tasks(&self, fds: &[Fd]) {
        let mut wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        if wakers.is_empty() {
            return;
        }
        for fd in fds {
            if let Some(list) = wakers.remove(fd) {
                list.into_iter().for_each(std::task::Waker::wake);
            }
        }
    }

    /// Registers `waker` to be woken when `fd`'s readiness may change. Called with the stack lock held, so no
    /// change can slip between the caller's failed attempt and this registration.
    pub(crate) fn register_waker(&self, fd: Fd, waker: &std::task::Waker) {
        let mut wakers = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        let list = wakers.entry(fd).or_default();
        if !list.iter().any(|w| w.will_wake(waker)) {
            list.push(waker.clone());
        }
    }
}

impl Shared {
    fn doorbell_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.doorbell.as_raw_fd()
    }
}

#[cfg(test)]
mod spin_tests {
    use super::*;

    #[test]
    fn only_short_typical_waits_are_spun_for() {
        assert_eq!(spin_budget(Duration::from_micros(20)), Duration::from_micros(40));
        assert_eq!(spin_budget(Duration::from_micros(80)), MAX_SPIN);
        assert_eq!(spin_budget(Duration::from_millis(5)), Duration::ZERO, "an idle connection does not spin");
        assert_eq!(spin_budget(Duration::from_nanos(u64::MAX)), Duration::ZERO, "nor a thread that never waited");
    }

    #[test]
    fn each_thread_spins_by_its_own_waits() {
        assert_eq!(spin_budget(typical_wait()), Duration::ZERO, "a thread that never waited does not spin");
        record_wait(Duration::from_micros(10));
        assert_eq!(typical_wait(), Duration::from_micros(10), "the first wait sets the average");
        assert!(spin_budget(typical_wait()) > Duration::ZERO, "short waits: this thread spins");
        let other = std::thread::spawn(|| {
            for _ in 0..64 {
                record_wait(Duration::from_secs(2));
            }
            spin_budget(typical_wait())
        });
        assert_eq!(other.join().unwrap(), Duration::ZERO, "an idle acceptor does not spin");
        assert!(spin_budget(typical_wait()) > Duration::ZERO, "nor does it stop this thread spinning");
    }
}

#[cfg(test)]
mod busy_poll_tests {
    use super::*;
    use crate::wire::arp::{ArpOp, ArpPacket};
    use crate::wire::ethernet::{ethertype, MacAddr};
    use std::net::Ipv4Addr;
    use ustack_netdev::fault::FaultConfig;
    use ustack_netdev::pipe::{Pipe, PipeConfig};

    const OURS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const PEER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    /// An ARP request from the peer for our address, as a frame.
    fn who_has_ours() -> Vec<u8> {
        let mut frame = vec![0u8; 14 + 28];
        frame[0..6].copy_from_slice(&MacAddr::BROADCAST.0);
        frame[6..12].copy_from_slice(&PEER_MAC.0);
        frame[12..14].copy_from_slice(&ethertype::ARP.to_be_bytes());
        let request = ArpPacket {
            op: ArpOp::Request,
            sender_mac: PEER_MAC,
            sender_ip: PEER,
            target_mac: MacAddr::ZERO,
            target_ip: OURS,
        };
        request.emit(&mut frame[14..]);
        frame
    }

    /// A spinning call that finds a frame waiting processes it on its own thread — here there is no driver
    /// thread at all — and sends the reply; with nothing waiting it reports no progress.
    #[test]
    fn a_spinning_call_takes_frames_from_the_device_itself() {
        let (ours, mut peer) = Pipe::pair(PipeConfig::symmetric(1500, FaultConfig::default(), 1));
        let config = StackConfig::new(MacAddr([2, 0, 0, 0, 0, 1]), "198.18.0.1/24".parse().unwrap());
        let shared = Shared::new(ours, config, &NetStackOptions::default()).unwrap();
        assert!(!shared.busy_poll(), "nothing has arrived yet");

        let mut out = FrameBatch::new(4, 1518);
        out.push(&who_has_ours());
        assert_eq!(peer.send_batch(&mut out).unwrap(), 1);
        assert!(shared.busy_poll(), "the request was waiting");
        assert!(!shared.busy_poll(), "and nothing after it");

        let mut replies = FrameBatch::new(4, 1518);
        assert_eq!(peer.recv_batch(&mut replies).unwrap(), 1, "the ARP reply went out from the spinning call");
        let reply = ArpPacket::parse(&replies.get(0).unwrap()[14..]).unwrap();
        assert_eq!((reply.op, reply.sender_ip, reply.target_mac), (ArpOp::Reply, OURS, PEER_MAC));
    }

    /// A call lets go of the stack: it reads the device only when the driver, finding the stack held, left
    /// the device's frames to the calls — and then answers what it read from its own thread.
    #[test]
    fn a_call_letting_go_of_the_stack_takes_the_frames_the_driver_left_to_it() {
        let (ours, mut peer) = Pipe::pair(PipeConfig::symmetric(1500, FaultConfig::default(), 1));
        let config = StackConfig::new(MacAddr([2, 0, 0, 0, 0, 1]), "198.18.0.1/24".parse().unwrap());
        let shared = Shared::new(ours, config, &NetStackOptions::default()).unwrap();
        let mut out = FrameBatch::new(4, 1518);
        let mut replies = FrameBatch::new(4, 1518);

        out.push(&who_has_ours());
        assert_eq!(peer.send_batch(&mut out).unwrap(), 1);
        shared.release(shared.lock());
        assert_eq!(peer.recv_batch(&mut replies).unwrap(), 0, "the driver watches the device: calls leave it");

        shared.watch.defer_to_calls();
        shared.release(shared.lock());
        assert_eq!(peer.recv_batch(&mut replies).unwrap(), 1, "deferred to calls: the call answered");
        let reply = ArpPacket::parse(&replies.get(0).unwrap()[14..]).unwrap();
        assert_eq!((reply.op, reply.target_ip), (ArpOp::Reply, PEER));
    }
}
