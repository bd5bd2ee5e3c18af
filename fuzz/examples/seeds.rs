//! Writes the hand-made seed inputs of `frame_parser` (the frames a peer sends: a SYN, data, UDP to an open
//! and a closed port, a ping, ARP, a fragment) to `seeds/frame_parser/`.
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example seeds`

use std::path::Path;

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds").join("frame_parser");
    std::fs::create_dir_all(&dir).expect("seeds dir");
    let seeds = ustack_fuzz::frame_parser::seeds();
    for (i, s) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:02}")), s).expect("writing a seed");
    }
    println!("wrote {} seeds to {}", seeds.len(), dir.display());
}
