//! Figures of a process and of Prometheus text: CPU seconds and memory from `/proc`, counters
//! and histogram quantiles from `/metrics`. A figure that cannot be read fails the benchmark,
//! naming what is missing: it never reads as zero.

use std::process::Command;

/// A number the benchmark is configured with: the environment variable `name`, else `default`.
/// A value that is not a number fails the run naming the variable; it never runs with the default.
pub fn setting<T>(name: &str, default: T) -> T
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Err(std::env::VarError::NotPresent) => default,
        Err(e) => panic!("{name}: {e}"),
        Ok(v) => v.trim().parse().unwrap_or_else(|e| {
            panic!("{name}={v:?} is not a number ({e}); unset it for the default")
        }),
    }
}

/// CPU seconds (user + system) `pid` has used.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/stat: {e}"));
    // The command name may hold spaces; fields count from after its closing parenthesis.
    let rest = &stat[stat.rfind(')').expect("a /proc stat line") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| -> f64 {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                panic!(
                    "/proc/{pid}/stat has no CPU ticks in field {}: {stat:?}",
                    i + 3
                )
            })
    };
    (field(11) + field(12)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        let out = Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .expect("getconf runs");
        let text = String::from_utf8_lossy(&out.stdout);
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("`getconf CLK_TCK` printed {text:?}, not a number"))
    })
}

/// `VmRSS` and `VmHWM` (peak) of `pid`, in MiB.
pub fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/status: {e}"));
    let field = |name: &str| -> f64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The sum of a metric's samples whose labels contain every `label="value"` in `labels`. The
/// metric must be exported (a labelled series appears with its first count, so a family present
/// without a matching series is 0), and each of its samples must be a number.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    let mut exported = false;
    let mut sum = 0.0;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            exported |= rest.split_whitespace().next() == Some(name);
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (metric_name, rest) = series.split_once('{').unwrap_or((series, ""));
        if metric_name != name {
            continue;
        }
        exported = true;
        if labels.iter().all(|l| rest.contains(l)) {
            sum += value.parse::<f64>().unwrap_or_else(|_| {
                panic!("the metric {name} has a sample that is not a number: {line:?}")
            });
        }
    }
    assert!(
        exported,
        "the metric {name} is not exported; cannot measure without it"
    );
    sum
}

/// A histogram's cumulative buckets `(le, count)`.
pub fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let bucket = format!("{name}_bucket");
    let parse = |l: &str| -> Option<(f64, f64)> {
        let le = l.split("le=\"").nth(1)?.split('"').next()?;
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().ok()?
        };
        Some((le, l.rsplit_once(' ')?.1.parse().ok()?))
    };
    let mut out: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{bucket}{{")) || l.starts_with(&format!("{bucket} ")))
        .map(|l| {
            parse(l).unwrap_or_else(|| {
                panic!("the histogram {name} has a bucket that is not `le` and a count: {l:?}")
            })
        })
        .collect();
    assert!(!out.is_empty(), "the histogram {name} is not exported");
    out.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    out
}

/// `after - before`, bucket by bucket: the observations in between.
pub fn between(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|(le, n)| {
            let b = before
                .iter()
                .find(|(l, _)| l == le)
                .map_or(0.0, |(_, c)| *c);
            (*le, n - b)
        })
        .collect()
}

/// The `q` quantile of cumulative buckets, as the upper bound of its bucket (as Prometheus'
/// `histogram_quantile` does at a bucket edge); `None` without observations.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    buckets.iter().find(|(_, n)| *n >= rank).map(|(le, _)| *le)
}

/// A duration in seconds, readably.
pub fn secs(s: f64) -> String {
    if s.is_infinite() {
        "above the top bucket".into()
    } else if s < 0.001 {
        format!("{:.0} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.1} ms", s * 1e3)
    } else {
        format!("{s:.1} s")
    }
}

/// Percentile of plain values.
pub fn percentile(values: &mut [f64], q: f64) -> f64 {
    assert!(!values.is_empty(), "no values to take a percentile of");
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((values.len() as f64 - 1.0) * q).round() as usize;
    values[i]
}

/// How the manager under test was built (`release` from `scripts/bench`, `debug` otherwise),
/// for the conditions a figure is printed with.
pub fn build() -> &'static str {
    let path = crate::Binary::Manager.path();
    if path.components().any(|c| c.as_os_str() == "release") {
        "release"
    } else {
        "debug"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE writes counter\n\
        writes_total{kind=\"a\",result=\"ok\"} 3\n\
        writes_total{kind=\"b\",result=\"ok\"} 4\n\
        writes_total{kind=\"b\",result=\"error\"} 1\n\
        # TYPE took histogram\n\
        took_bucket{le=\"0.5\"} 2\n\
        took_bucket{le=\"+Inf\"} 5\n\
        took_sum 3.5\n\
        took_count 5\n";

    #[test]
    fn a_metric_sums_the_series_with_every_label() {
        assert_eq!(metric(TEXT, "writes_total", &["result=\"ok\""]), 7.0);
        assert_eq!(metric(TEXT, "writes_total", &["kind=\"b\""]), 5.0);
        assert_eq!(metric(TEXT, "writes_total", &["kind=\"c\""]), 0.0);
    }

    #[test]
    #[should_panic(
        expected = "the metric writes_total has a sample that is not a number: \"writes_total{kind=\\\"a\\\"} NaN?\""
    )]
    fn an_unparsable_sample_fails_naming_the_metric_and_the_text() {
        metric("writes_total{kind=\"a\"} NaN?\n", "writes_total", &[]);
    }

    #[test]
    #[should_panic(expected = "the metric absent_total is not exported")]
    fn a_missing_metric_fails() {
        metric(TEXT, "absent_total", &[]);
    }

    #[test]
    fn buckets_are_read_in_order() {
        assert_eq!(buckets(TEXT, "took"), [(0.5, 2.0), (f64::INFINITY, 5.0)]);
    }

    #[test]
    #[should_panic(
        expected = "the histogram took has a bucket that is not `le` and a count: \"took_bucket{le=\\\"1\\\"} many\""
    )]
    fn an_unparsable_bucket_fails_naming_the_histogram_and_the_text() {
        buckets("took_bucket{le=\"1\"} many\n", "took");
    }

    #[test]
    #[should_panic(expected = "KRUISE_MEASURE_TEST_SETTING=\"ten\" is not a number")]
    fn an_unparsable_setting_fails_naming_the_variable() {
        // The variable is this test's own; nothing else reads it.
        std::env::set_var("KRUISE_MEASURE_TEST_SETTING", "ten");
        setting("KRUISE_MEASURE_TEST_SETTING", 5u64);
    }
}
