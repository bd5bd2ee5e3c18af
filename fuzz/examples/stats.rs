//! What a corpus reaches: runs every input of a directory through a target and prints, for each stack
//! counter, how many inputs made it non-zero (a cheap map of which paths the fuzzer gets to).
//!
//! `cargo run --release --manifest-path fuzz/Cargo.toml --example stats -- actions fuzz/corpus/actions`

use std::collections::BTreeMap;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(target), Some(dir)) = (args.first(), args.get(1)) else {
        eprintln!("usage: stats TARGET DIR");
        std::process::exit(2);
    };
    std::panic::set_hook(Box::new(|_| {}));
    let mut hits: BTreeMap<String, usize> = BTreeMap::new();
    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    let (mut n, mut failed) = (0, 0);
    for entry in std::fs::read_dir(dir).expect("corpus dir") {
        let path = entry.expect("dir entry").path();
        let data = std::fs::read(&path).expect("input");
        n += 1;
        let result = std::panic::catch_unwind(|| {
            if target == "actions" {
                let mut w = ustack_fuzz::actions::World::new(None);
                for a in ustack_fuzz::actions::decode(&data) {
                    w.step(&a);
                }
                let rows = w.d.stack.sockets_snapshot(w.now());
                (w.d.stack.counters().rows(), rows.iter().map(|r| format!("{} {}", r.proto, r.state)).collect())
            } else {
                ustack_fuzz::frame_parser::run(&data, None);
                (Vec::new(), Vec::<String>::new())
            }
        });
        match result {
            Ok((rows, st)) => {
                for (name, v) in rows {
                    if v > 0 {
                        *hits.entry(name).or_default() += 1;
                    }
                }
                let mut st = st;
                st.sort();
                st.dedup();
                for s in st {
                    *states.entry(s).or_default() += 1;
                }
            }
            Err(_) => failed += 1,
        }
    }
    println!("{n} inputs, {failed} failing");
    for (name, count) in hits {
        println!("{count:6}  {name}");
    }
    println!("final socket states (inputs ending with at least one):");
    for (s, count) in states {
        println!("{count:6}  {s}");
    }
}
