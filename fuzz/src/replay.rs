//! Replaying a saved input outside libFuzzer: catches the panic, and writes every frame fed to the stack and
//! sent by it (up to the failure) as a pcap.

use crate::capture::Capture;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;

/// The fuzz targets, by name.
pub const TARGETS: [&str; 2] = ["frame_parser", "actions"];

/// Runs `data` through `target` with a capture. Returns the panic message if it failed, and the capture.
pub fn run(target: &str, data: &[u8]) -> (Result<(), String>, Capture) {
    let mut cap = Capture::new();
    let result = panic::catch_unwind(AssertUnwindSafe(|| match target {
        "frame_parser" => crate::frame_parser::run(data, Some(&mut cap)),
        "actions" => crate::actions::run(data, Some(&mut cap)),
        other => panic!("no fuzz target called {other}"),
    }));
    let result = result.map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic with a non-string payload".into())
    });
    (result, cap)
}

/// Runs `data` through `target` and writes the capture to `pcap`.
pub fn to_pcap(target: &str, data: &[u8], pcap: &Path) -> std::io::Result<Result<(), String>> {
    let (result, cap) = run(target, data);
    cap.write_to(pcap)?;
    Ok(result)
}

/// A readable account of an input: the decoded actions (for `actions`) or the fixed-up frame.
pub fn describe(target: &str, data: &[u8]) -> String {
    match target {
        "actions" => crate::actions::decode(data).iter().enumerate().map(|(i, a)| format!("{i:3}: {a:?}\n")).collect(),
        _ => match data.split_first() {
            Some((&mode, rest)) => {
                format!("mode {mode:#010b}\nframe after fix-ups: {:02x?}\n", crate::frame_parser::fix_up(mode, rest))
            }
            None => "empty input\n".into(),
        },
    }
}
