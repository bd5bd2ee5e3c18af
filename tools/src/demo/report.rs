//! The demo's narration: numbered steps, their results, and the verdict. Every check goes through here, so
//! the demo can double as a smoke test: any failed check makes the whole run fail.

use crate::cli_util::Failure;

/// Numbered steps printed to stdout, with the failures remembered for the verdict.
#[derive(Debug, Default)]
pub struct Report {
    step: usize,
    failures: Vec<String>,
}

impl Report {
    pub fn new() -> Report {
        Report::default()
    }

    /// Starts the next step: a blank line, then `[N] title`.
    pub fn step(&mut self, title: &str) {
        self.step += 1;
        println!("\n[{}] {title}", self.step);
    }

    /// An explanation or an observed fact, indented under the step.
    pub fn say(&self, line: impl AsRef<str>) {
        println!("    {}", line.as_ref());
    }

    /// A check that held.
    pub fn pass(&self, line: impl AsRef<str>) {
        println!("    ok: {}", line.as_ref());
    }

    /// A check that did not hold; the demo will exit non-zero.
    pub fn fail(&mut self, line: impl Into<String>) {
        let line = line.into();
        println!("    FAILED: {line}");
        self.failures.push(format!("step {}: {line}", self.step));
    }

    /// A check that could not run here (a missing tool), which is not the stack's fault.
    pub fn skip(&self, line: impl AsRef<str>) {
        println!("    skipped: {}", line.as_ref());
    }

    /// Records the outcome of a check that yields a description either way.
    pub fn check(&mut self, outcome: Result<String, String>) {
        match outcome {
            Ok(line) => self.pass(line),
            Err(line) => self.fail(line),
        }
    }

    /// The verdict: `Ok` when every check held, otherwise an error naming the first failure.
    pub fn finish(self) -> Result<(), Failure> {
        println!();
        match self.failures.as_slice() {
            [] => {
                println!("All checks passed.");
                Ok(())
            }
            [only] => Err(Failure::new(format!("the demo failed at {only}"))),
            [first, rest @ ..] => {
                Err(Failure::new(format!("the demo failed at {first} (and {} more check(s))", rest.len())))
            }
        }
    }
}
