//! Threads that serve until told to stop, all at once: the shape shared by the UDP echo and TCP services.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Service threads sharing one stop flag. Dropping the group stops and joins them too, so that an early
/// return (a failed step after the services started) never leaves threads holding the stack.
pub struct ServiceThreads {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl ServiceThreads {
    pub fn new() -> ServiceThreads {
        ServiceThreads { stop: Arc::new(AtomicBool::new(false)), threads: Vec::new() }
    }

    /// Starts a thread named `name` that runs `serve` with the group's stop flag, which it must watch.
    pub fn spawn(&mut self, name: String, serve: impl FnOnce(&Arc<AtomicBool>) + Send + 'static) -> io::Result<()> {
        let stop = Arc::clone(&self.stop);
        let thread = std::thread::Builder::new().name(name).spawn(move || serve(&stop))?;
        self.threads.push(thread);
        Ok(())
    }

    /// Raises the stop flag and waits for every thread.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl Drop for ServiceThreads {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}
