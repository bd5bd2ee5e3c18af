//! A network namespace that lives as long as a value: created with a unique name, removed on drop (panics
//! included). Tests and the demo build their private kernel peers in one.

use std::io;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The namespaces this process holds, for [`remove_all`]: a process stopped by a signal runs no destructor.
static LIVE: Mutex<Live> = Mutex::new(Live { names: Vec::new(), closed: false });

struct Live {
    names: Vec<String>,
    /// Set by [`remove_all`]: no namespace may be created after it.
    closed: bool,
}

fn live() -> MutexGuard<'static, Live> {
    // The list stays consistent whatever panicked while holding it (each step is one push or one removal).
    LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes every namespace this process holds and refuses to create more: for a signal handler that is
/// about to end the process (Ctrl-C in the middle of a benchmark would otherwise leave its namespaces, and
/// the TAP devices and veth pairs in them, behind). Returns how many it removed.
pub fn remove_all() -> usize {
    let mut live = live();
    live.closed = true;
    let names = std::mem::take(&mut live.names);
    for name in &names {
        delete(name);
    }
    names.len()
}

fn delete(name: &str) {
    let _ = Command::new("ip").args(["netns", "del", name]).stdout(Stdio::null()).stderr(Stdio::null()).status();
}

/// True when this process runs as root (needed for namespaces, TAP devices and packet sockets).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// True when namespaces with TAP devices can be made here: root, `/dev/net/tun`, and iproute2's `ip`.
pub fn kernel_peer_available() -> bool {
    is_root()
        && std::path::Path::new("/dev/net/tun").exists()
        && Command::new("ip").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// A named network namespace owned by this value (and listed for [`remove_all`] while it lives).
#[derive(Debug)]
pub struct Namespace {
    name: String,
}

impl Namespace {
    /// Creates `PREFIX-PID-N` (unique across the parallel tests of one process and across processes) with its
    /// loopback up.
    pub fn create(prefix: &str) -> io::Result<Namespace> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        {
            // Held across the creation, so that `remove_all` sees every namespace or forbids it.
            let mut live = live();
            if live.closed {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "the process is removing its namespaces"));
            }
            run_checked(Command::new("ip").args(["netns", "add", &name]))?;
            live.names.push(name.clone());
        }
        let ns = Namespace { name };
        ns.run("ip", &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Creates a TAP device inside the namespace with `cidr` (for example `198.18.0.1/24`) as the kernel's
    /// address, and brings it up. The kernel sees carrier only while a process holds the TAP open.
    pub fn add_tap(&self, dev: &str, cidr: &str) -> io::Result<()> {
        self.run("ip", &["tuntap", "add", "dev", dev, "mode", "tap"])?;
        // The default queue of 1000 frames towards the reader drops bursts from many kernel sockets at once.
        self.run("ip", &["link", "set", dev, "txqueuelen", "10000"])?;
        self.run("ip", &["addr", "add", cidr, "dev", dev])?;
        self.run("ip", &["link", "set", dev, "up"])
    }

    /// Creates a veth pair inside the namespace: `kernel_end` gets `cidr`, `stack_end` no address (for a packet
    /// socket). Offloads are turned off on both ends when ethtool is present, so frames carry full checksums.
    pub fn add_veth(&self, kernel_end: &str, stack_end: &str, cidr: &str) -> io::Result<()> {
        self.run("ip", &["link", "add", kernel_end, "type", "veth", "peer", "name", stack_end])?;
        self.run("ip", &["addr", "add", cidr, "dev", kernel_end])?;
        for dev in [kernel_end, stack_end] {
            let _ =
                self.exec("ethtool", &["-K", dev, "tx", "off", "rx", "off", "gso", "off", "tso", "off", "gro", "off"]);
            self.run("ip", &["link", "set", dev, "up"])?;
        }
        Ok(())
    }

    /// Runs `program args...` inside the namespace and returns its output, whatever its exit status.
    pub fn exec(&self, program: &str, args: &[&str]) -> io::Result<Output> {
        Command::new("ip").args(["netns", "exec", &self.name, program]).args(args).stdin(Stdio::null()).output()
    }

    /// Runs `program args...` inside the namespace; a non-zero exit becomes an error carrying its stderr.
    pub fn run(&self, program: &str, args: &[&str]) -> io::Result<()> {
        run_checked(Command::new("ip").args(["netns", "exec", &self.name, program]).args(args))
    }

    /// Starts `program args...` inside the namespace in the background. The caller owns the child (kill it).
    pub fn spawn(&self, program: &str, args: &[&str]) -> io::Result<Child> {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
    }

    /// Runs `f` on a thread inside the namespace (see [`crate::netns::run_in_namespace`]).
    pub fn enter<R: Send>(&self, f: impl FnOnce() -> R + Send) -> io::Result<R> {
        crate::netns::run_in_namespace(&self.name, f)
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        live().names.retain(|n| *n != self.name);
        delete(&self.name);
    }
}

fn run_checked(cmd: &mut Command) -> io::Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if out.status.success() {
        return Ok(());
    }
    Err(io::Error::other(format!("{:?} failed: {}", cmd, String::from_utf8_lossy(&out.stderr).trim())))
}
