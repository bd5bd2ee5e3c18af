//! Ctrl-C (SIGINT) and SIGTERM as an ordinary event the commands can wait for or check between steps.
//!
//! Dying on the signal would skip every destructor: the pcap would lose its buffered tail and the demo's
//! namespace would outlive the process. So the signal only raises a flag, and the command unwinds by itself.

use crate::cli_util::Failure;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;

/// The process-wide interruption flag, raised by SIGINT or SIGTERM.
pub struct Interrupt {
    raised: Arc<AtomicBool>,
    events: Receiver<()>,
}

impl Interrupt {
    /// Installs the handler (once per process; `ctrlc` refuses a second one).
    pub fn install() -> Result<Interrupt, Failure> {
        let raised = Arc::new(AtomicBool::new(false));
        let (tx, events) = channel();
        let flag = Arc::clone(&raised);
        ctrlc::set_handler(move || {
            flag.store(true, Ordering::SeqCst);
            // The receiver lives as long as the command; a send after it is gone has nobody left to tell.
            let _ = tx.send(());
        })
        .map_err(|e| Failure::new(format!("cannot install the Ctrl-C/SIGTERM handler: {e}")))?;
        Ok(Interrupt { raised, events })
    }

    /// True once a signal has arrived.
    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::SeqCst)
    }

    /// `Err(Interrupted)` once a signal has arrived: for `?` between the steps of a long command.
    pub fn check(&self) -> Result<(), Failure> {
        if self.is_raised() {
            Err(Failure::Interrupted)
        } else {
            Ok(())
        }
    }

    /// Blocks until a signal arrives (returns at once if one already has).
    pub fn wait(&self) {
        if !self.is_raised() {
            // An error means the handler (and with it the sender) is gone, which cannot happen while we run;
            // returning is the safe answer either way.
            let _ = self.events.recv();
        }
    }
}
