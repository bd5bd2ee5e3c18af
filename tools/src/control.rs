//! The control socket of `ustack serve --control PATH`, and `ustack ss`, which reads the running stack's
//! socket table (or its counters) through it.
//!
//! The protocol is one line each way: the client sends `ss\n` or `counters\n` and half-closes; the server
//! answers with text lines (the table as `ss -tuan` prints it, or the non-zero counters as `nstat` does, or a
//! single `error: ...` line) and closes.

use crate::cli_util::Failure;
use clap::Args;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use ustack::runtime::NetStack;
use ustack::SocketInfo;

/// How often the idle control thread looks for a client or the stop flag.
const ACCEPT_POLL: Duration = Duration::from_millis(50);
/// How long either side waits for the other before giving up.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest request line read.
const MAX_REQUEST: u64 = 256;
/// What an answer that is an error starts with.
const ERROR_PREFIX: &str = "error: ";

/// The table's header, in the columns [`SocketInfo::to_ss_line`] uses.
pub fn ss_header() -> String {
    format!(
        "{:<5} {:<10} {:>6} {:>6} {:<21} {:<21}",
        "Netid", "State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port"
    )
    .trim_end()
    .to_string()
}

/// The header and one line per socket, as `ss -tuan` (with `-o` timers and listener queues) shows them.
pub fn ss_lines(rows: &[SocketInfo]) -> Vec<String> {
    std::iter::once(ss_header()).chain(rows.iter().map(|r| r.to_ss_line().trim_end().to_string())).collect()
}

/// The counters that are not zero, one per line as `nstat` prints them.
pub fn nstat_lines(rows: &[(String, u64)]) -> Vec<String> {
    let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(0).max(24);
    std::iter::once("#ustack".to_string())
        .chain(rows.iter().filter(|(_, v)| *v != 0).map(|(n, v)| format!("{n:<width$} {v:>12}")))
        .collect()
}

/// The control socket: a Unix stream socket answered by a thread, and its file, removed on drop.
pub struct ControlServer {
    path: PathBuf,
    /// Device and inode of the socket file we made, so that drop never removes a file someone else put there.
    identity: Option<(u64, u64)>,
    /// Bound and waiting for [`ControlServer::start`].
    listener: Option<UnixListener>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// Binds the socket at `path`, replacing a stale one left by a process that died. Done before anything
    /// else starts, so that a path that cannot be used is reported at once.
    pub fn bind(path: &Path) -> Result<ControlServer, Failure> {
        let shown = path.display();
        remove_stale(path)?;
        let listener = UnixListener::bind(path)
            .map_err(|e| Failure::new(format!("cannot create the control socket {shown}: {e}")))?;
        let identity = fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()));
        // Owned from here on: a failure drops it, which removes the file again.
        let mut server = ControlServer {
            path: path.to_path_buf(),
            identity,
            listener: None,
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        };
        listener.set_nonblocking(true)?;
        server.listener = Some(listener);
        Ok(server)
    }

    /// Starts answering requests about `net`.
    pub fn start(&mut self, net: &NetStack) -> io::Result<()> {
        let Some(listener) = self.listener.take() else { return Ok(()) };
        let (net, stop) = (net.clone(), Arc::clone(&self.stop));
        let thread = std::thread::Builder::new().name("control".into()).spawn(move || serve(&listener, &net, &stop))?;
        self.thread = Some(thread);
        Ok(())
    }

    /// Stops answering and removes the socket file.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let ours = fs::symlink_metadata(&self.path).ok().map(|m| (m.dev(), m.ino()));
        if ours.is_some() && ours == self.identity {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Makes room for the socket: nothing there is fine, a socket nobody answers on is removed, anything else
/// (a live server, a regular file) is refused.
fn remove_stale(path: &Path) -> Result<(), Failure> {
    let shown = path.display();
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Failure::new(format!("cannot look at the control socket path {shown}: {e}"))),
        Ok(meta) if !meta.file_type().is_socket() => Err(Failure::new(format!(
            "{shown} exists and is not a socket; refusing to replace it with the control socket"
        ))),
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => Err(Failure::new(format!("another process already answers on the control socket {shown}"))),
            Err(_) => {
                tracing::debug!(path = %shown, "removing a stale control socket");
                fs::remove_file(path)
                    .map_err(|e| Failure::new(format!("cannot remove the stale control socket {shown}: {e}")))
            }
        },
    }
}

/// The control thread: one client at a time (each answer is a few kilobytes), until stopped.
fn serve(listener: &UnixListener, net: &NetStack, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Err(e) = answer(stream, net) {
                    tracing::debug!(err = %e, "control client went away");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_POLL),
            Err(e) => {
                tracing::warn!(err = %e, "control socket accept failed");
                std::thread::sleep(ACCEPT_POLL);
            }
        }
    }
}

/// Reads one request line and writes the answer.
fn answer(stream: UnixStream, net: &NetStack) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new((&stream).take(MAX_REQUEST)).read_line(&mut line)?;
    let lines = match line.trim() {
        "ss" => ss_lines(&net.sockets_snapshot()),
        "counters" => nstat_lines(&net.counters().rows()),
        other => vec![format!("{ERROR_PREFIX}unknown request {other:?} (expected `ss` or `counters`)")],
    };
    tracing::debug!(request = line.trim(), lines = lines.len(), "control request");
    let mut text = lines.join("\n");
    text.push('\n');
    (&stream).write_all(text.as_bytes())
}

/// Arguments of `ustack ss`.
#[derive(Debug, Args)]
pub struct SsArgs {
    /// The control socket of a running `ustack serve --control PATH`.
    #[arg(long, value_name = "PATH")]
    control: PathBuf,
    /// Print the counters that are not zero (like nstat) instead of the sockets.
    #[arg(long)]
    counters: bool,
}

/// `ustack ss`: asks the running stack and prints its answer.
pub fn run_ss(args: SsArgs) -> Result<(), Failure> {
    let text = request(&args.control, if args.counters { "counters" } else { "ss" })?;
    print!("{text}");
    Ok(())
}

/// Sends `request` to the control socket at `path` and returns the answer.
pub fn request(path: &Path, request: &str) -> Result<String, Failure> {
    let shown = path.display();
    let stream = UnixStream::connect(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            Failure::new(format!("there is no control socket at {shown}; start `ustack serve --control {shown}` first"))
        }
        io::ErrorKind::ConnectionRefused if !is_socket(path) => {
            Failure::new(format!("{shown} is not a control socket (not a socket at all)"))
        }
        io::ErrorKind::ConnectionRefused => Failure::new(format!(
            "nothing answers on the control socket {shown}; the ustack serve that made it has stopped"
        )),
        _ => Failure::new(format!("cannot connect to the control socket {shown}: {e}")),
    })?;
    let failed = |e: io::Error| Failure::new(format!("the control socket {shown} did not answer: {e}"));
    stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(failed)?;
    stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(failed)?;
    (&stream).write_all(format!("{request}\n").as_bytes()).map_err(failed)?;
    stream.shutdown(std::net::Shutdown::Write).map_err(failed)?;
    let mut text = String::new();
    (&stream).read_to_string(&mut text).map_err(failed)?;
    if text.is_empty() {
        return Err(Failure::new(format!("the control socket {shown} closed without answering")));
    }
    if let Some(message) = text.strip_prefix(ERROR_PREFIX) {
        return Err(Failure::new(format!("the server refused the request: {}", message.trim())));
    }
    Ok(text)
}

fn is_socket(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[test]
    fn the_header_lines_up_with_the_rows() {
        let row = SocketInfo {
            proto: "tcp",
            state: "LISTEN",
            recv_q: 0,
            send_q: 128,
            local: "0.0.0.0:80".parse::<SocketAddr>().unwrap(),
            peer: None,
            timer: None,
            fd: Some(3),
            syn_queue: Some(0),
            tcp: None,
        };
        let lines = ss_lines(&[row]);
        assert!(lines[0].starts_with("Netid State      Recv-Q Send-Q Local Address:Port    Peer Address:Port"));
        let end = |s: &str, pat: &str| s.find(pat).map(|i| i + pat.len());
        assert_eq!(end(&lines[0], "Send-Q"), end(&lines[1], "128"));
        assert_eq!(lines[0].find("Local"), lines[1].find("0.0.0.0:80"));
        assert!(lines[1].contains("synq:0 acceptq:0/128"), "{}", lines[1]);
    }

    #[test]
    fn counters_skip_zeros() {
        let lines = nstat_lines(&[("TcpActiveOpens".into(), 0), ("TcpPassiveOpens".into(), 2)]);
        assert_eq!(lines.len(), 2);
        assert!(lines[1].starts_with("TcpPassiveOpens ") && lines[1].ends_with(" 2"));
    }

    #[test]
    fn a_missing_socket_is_one_sentence() {
        let path = std::env::temp_dir().join(format!("ustack-no-control-{}", std::process::id()));
        let err = request(&path, "ss").unwrap_err().to_string();
        assert!(err.starts_with("there is no control socket at "), "{err}");
        fs::write(&path, b"not a socket").unwrap();
        let err = request(&path, "ss").unwrap_err().to_string();
        assert!(err.contains("not a socket"), "{err}");
        let refused = remove_stale(&path).unwrap_err().to_string();
        assert!(refused.contains("exists and is not a socket"), "{refused}");
        fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_stale_socket_is_replaced() {
        let path = std::env::temp_dir().join(format!("ustack-stale-control-{}", std::process::id()));
        let _ = fs::remove_file(&path);
        drop(UnixListener::bind(&path).unwrap());
        assert!(is_socket(&path));
        let err = request(&path, "ss").unwrap_err().to_string();
        assert!(err.contains("nothing answers"), "{err}");
        remove_stale(&path).unwrap();
        assert!(!path.exists());
    }
}
