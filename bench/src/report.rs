//! Results: repeated samples per implementation, their median and range, ratios against ustack, a Markdown
//! table and a JSON file. Nothing here judges a number: the goals are judged by a reader of the report.

use std::fmt::Write as _;

/// Median, minimum and maximum of some samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

pub fn summarize(samples: &[f64]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    let mut s: Vec<f64> = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 };
    Some(Summary { median, min: s[0], max: s[n - 1], n })
}

/// One implementation's samples of one metric.
#[derive(Debug, Clone)]
pub struct Series {
    /// "ustack", "smoltcp", "kernel", or a variant such as "ustack (NetStack)".
    pub imp: String,
    pub samples: Vec<f64>,
    /// CPU seconds per transferred GB (10^9 bytes), one per sample where measured.
    pub cpu_s_per_gb: Vec<f64>,
    /// Anything a reader needs to interpret the number (buffer sizes, failures).
    pub note: String,
}

impl Series {
    pub fn new(imp: &str) -> Series {
        Series { imp: imp.to_string(), samples: Vec::new(), cpu_s_per_gb: Vec::new(), note: String::new() }
    }
}

/// One metric of one case, for every implementation measured.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: String,
    pub case: String,
    pub metric: String,
    pub unit: String,
    pub higher_is_better: bool,
    pub series: Vec<Series>,
}

impl Row {
    pub fn new(scenario: &str, case: &str, metric: &str, unit: &str, higher_is_better: bool) -> Row {
        Row {
            scenario: scenario.into(),
            case: case.into(),
            metric: metric.into(),
            unit: unit.into(),
            higher_is_better,
            series: Vec::new(),
        }
    }

    /// The series of `imp`, created on first use.
    pub fn series(&mut self, imp: &str) -> &mut Series {
        if let Some(i) = self.series.iter().position(|s| s.imp == imp) {
            return &mut self.series[i];
        }
        self.series.push(Series::new(imp));
        self.series.last_mut().expect("just pushed")
    }

    /// The ustack series the ratios are taken against: the first whose name starts with "ustack".
    fn ustack_median(&self) -> Option<f64> {
        self.series.iter().find(|s| s.imp.starts_with("ustack")).and_then(|s| summarize(&s.samples)).map(|s| s.median)
    }
}

/// Everything one run measured.
#[derive(Debug, Default)]
pub struct Report {
    pub rows: Vec<Row>,
    /// Lines printed under the table (skipped scenarios, link parameters, caveats).
    pub notes: Vec<String>,
    /// Measurements that could not be taken because something broke (a transfer that did not complete, a
    /// connection that failed): the run exits non-zero on any.
    pub failures: usize,
}

impl Report {
    pub fn push(&mut self, row: Row) {
        self.rows.push(row);
    }

    /// Records a measurement that failed (see [`Report::failures`]).
    pub fn fail(&mut self, line: impl Into<String>) {
        self.failures += 1;
        self.note(format!("FAILED: {}", line.into()));
    }

    pub fn note(&mut self, line: impl Into<String>) {
        let line = line.into();
        println!("note: {line}");
        self.notes.push(line);
    }

    /// The results as a Markdown table: one line per implementation, with median, range, CPU per GB and the
    /// ratio of ustack's median to this implementation's.
    pub fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(
            "| scenario | case | metric | implementation | median | min – max | n | CPU s/GB | ustack ÷ this |\n",
        );
        out.push_str("|---|---|---|---|---:|---:|---:|---:|---:|\n");
        for row in &self.rows {
            let base = row.ustack_median();
            for s in &row.series {
                let Some(sum) = summarize(&s.samples) else {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {} | – | – | 0 | – | – |",
                        row.scenario, row.case, row.metric, s.imp
                    );
                    continue;
                };
                let cpu = summarize(&s.cpu_s_per_gb).map(|c| fmt_num(c.median)).unwrap_or_else(|| "–".into());
                let ratio = match base {
                    Some(b) if !s.imp.starts_with("ustack") && sum.median != 0.0 => format!("{:.2}×", b / sum.median),
                    _ => "".into(),
                };
                let arrow = if row.higher_is_better { "↑" } else { "↓" };
                let note = if s.note.is_empty() { String::new() } else { format!(" ({})", s.note) };
                let _ = writeln!(
                    out,
                    "| {} | {} | {} {arrow} | {}{note} | {} {} | {} – {} | {} | {cpu} | {ratio} |",
                    row.scenario,
                    row.case,
                    row.metric,
                    s.imp,
                    fmt_num(sum.median),
                    row.unit,
                    fmt_num(sum.min),
                    fmt_num(sum.max),
                    sum.n
                );
            }
        }
        out
    }

    /// The results as JSON: every sample, with summaries and ratios.
    pub fn json(&self, meta: &[(&str, String)]) -> String {
        let mut out = String::from("{\n");
        for (k, v) in meta {
            let _ = writeln!(out, "  {}: {},", json_str(k), json_str(v));
        }
        out.push_str("  \"notes\": [");
        out.push_str(&self.notes.iter().map(|n| json_str(n)).collect::<Vec<_>>().join(", "));
        out.push_str("],\n  \"rows\": [\n");
        let rows: Vec<String> = self
            .rows
            .iter()
            .map(|row| {
                let base = row.ustack_median();
                let series: Vec<String> = row
                    .series
                    .iter()
                    .map(|s| {
                        let sum = summarize(&s.samples);
                        let ratio = match (base, sum) {
                            (Some(b), Some(m)) if !s.imp.starts_with("ustack") && m.median != 0.0 => {
                                json_num(b / m.median)
                            }
                            _ => "null".into(),
                        };
                        format!(
                            "{{\"implementation\": {}, \"samples\": {}, \"median\": {}, \"min\": {}, \"max\": {}, \
                             \"cpu_s_per_gb\": {}, \"ustack_over_this\": {ratio}, \"note\": {}}}",
                            json_str(&s.imp),
                            json_arr(&s.samples),
                            sum.map_or("null".into(), |m| json_num(m.median)),
                            sum.map_or("null".into(), |m| json_num(m.min)),
                            sum.map_or("null".into(), |m| json_num(m.max)),
                            json_arr(&s.cpu_s_per_gb),
                            json_str(&s.note)
                        )
                    })
                    .collect();
                format!(
                    "    {{\"scenario\": {}, \"case\": {}, \"metric\": {}, \"unit\": {}, \"higher_is_better\": {}, \
                     \"series\": [\n      {}\n    ]}}",
                    json_str(&row.scenario),
                    json_str(&row.case),
                    json_str(&row.metric),
                    json_str(&row.unit),
                    row.higher_is_better,
                    series.join(",\n      ")
                )
            })
            .collect();
        out.push_str(&rows.join(",\n"));
        out.push_str("\n  ]\n}\n");
        out
    }
}

/// Three significant digits, without exponent for everyday magnitudes.
pub fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn json_num(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        "null".into()
    }
}

fn json_arr(xs: &[f64]) -> String {
    format!("[{}]", xs.iter().map(|x| json_num(*x)).collect::<Vec<_>>().join(", "))
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(summarize(&[3.0, 1.0, 2.0]).unwrap().median, 2.0);
        assert_eq!(summarize(&[4.0, 1.0, 2.0, 3.0]).unwrap(), Summary { median: 2.5, min: 1.0, max: 4.0, n: 4 });
        assert!(summarize(&[]).is_none());
    }

    #[test]
    fn json_escapes() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        let mut r = Report::default();
        let mut row = Row::new("1", "case", "m", "u", true);
        row.series("ustack").samples = vec![2.0];
        row.series("smoltcp").samples = vec![1.0];
        r.push(row);
        let j = r.json(&[("mode", "quick".into())]);
        assert!(j.contains("\"ustack_over_this\": 2"), "{j}");
        assert!(r.table().contains("2.00×"));
    }
}
