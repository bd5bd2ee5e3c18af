//! Replays a fuzz input outside libFuzzer, prints what it decodes to and whether it fails, and writes the
//! frames of the run as a pcap. With `--save NAME` it also files the input as a regression:
//! `regressions/<target>/NAME.bin`, `NAME.txt` (decoded input and panic message) and `NAME.pcap`.
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example replay -- actions fuzz/artifacts/actions/crash-... \
//!     [--pcap out.pcap] [--save epoll-wait-on-udp]
//! ```

use std::path::{Path, PathBuf};
use ustack_fuzz::replay;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: replay TARGET INPUT [--pcap FILE] [--save NAME] [--quiet]";
    let (Some(target), Some(input)) = (args.first(), args.get(1)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let flag = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let data = std::fs::read(input).unwrap_or_else(|e| panic!("{input}: {e}"));
    let quiet = args.iter().any(|a| a == "--quiet");
    // The panic message is reported below; the default hook's copy would only repeat it.
    std::panic::set_hook(Box::new(|_| {}));
    let (result, cap) = replay::run(target, &data);
    let description = replay::describe(target, &data);
    if !quiet {
        print!("{description}");
    }
    match &result {
        Ok(()) => println!("{target}: passes ({} frames)", cap.frames()),
        Err(msg) => println!("{target}: FAILS after {} frames:\n{msg}", cap.frames()),
    }
    if let Some(pcap) = flag("--pcap") {
        cap.write_to(&pcap).expect("writing the pcap");
        println!("wrote {pcap}");
    }
    if let Some(name) = flag("--save") {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions").join(target);
        std::fs::create_dir_all(&dir).expect("regressions dir");
        let base: PathBuf = dir.join(&name);
        std::fs::write(base.with_extension("bin"), &data).expect("saving the input");
        cap.write_to(base.with_extension("pcap")).expect("saving the pcap");
        let outcome = match &result {
            Ok(()) => "passes".to_string(),
            Err(m) => format!("panicked with:\n{m}"),
        };
        std::fs::write(base.with_extension("txt"), format!("{target} input {name}\n{outcome}\n\n{description}"))
            .expect("saving the description");
        println!("saved {}.{{bin,txt,pcap}}", base.display());
    }
    if result.is_err() {
        std::process::exit(1);
    }
}
