//! Markdown tables from the JSON results of several runs: absolute figures, then ratios
//! against the baselines measured in the same session.

use crate::driver::{LaunchRun, Tool};
use std::fmt::Write as _;

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.1}x", a / b)
    } else {
        "n/a".into()
    }
}

/// The absolute table and the ratio table.
pub fn markdown(runs: &[LaunchRun]) -> String {
    let mut out = String::new();
    out.push_str(
        "| tool | conc. | launches/s | login p50 / p99 ms | launch p50 / p99 ms | login+launch p99 ms | failed | CPU ms per launch: generator / tool / helpers | machine busy |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---|---:|\n");
    for r in runs {
        let helpers = r
            .cpu
            .helpers_ms
            .iter()
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect::<Vec<_>>()
            .join(", ");
        let failed = r.errors.total();
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} | {} / {} | {} / {} | {} | {} of {} | {:.2} / {} / {} | {:.0}% |",
            r.label,
            r.concurrency,
            r.launches_per_sec,
            ms(r.login.p50_ms),
            ms(r.login.p99_ms),
            ms(r.launch.p50_ms),
            ms(r.launch.p99_ms),
            ms(r.combined.p99_ms),
            failed,
            r.logins_attempted,
            r.cpu.generator_ms,
            r.cpu.tool_ms.map_or("–".into(), |v| format!("{v:.2}")),
            if helpers.is_empty() {
                "–".into()
            } else {
                helpers
            },
            r.cpu.machine_busy_pct,
        );
    }

    let mut concurrencies: Vec<usize> = runs.iter().map(|r| r.concurrency).collect();
    concurrencies.sort_unstable();
    concurrencies.dedup();
    out.push('\n');
    out.push_str("| conc. | lmsbridge run | launches/s | ÷ pylti1p3 | ÷ ltijs | generator ceiling, launches/s (GET /health req/s ÷ 2) | lmsbridge ÷ ceiling |\n");
    out.push_str("|---:|---|---:|---:|---:|---:|---:|\n");
    for c in concurrencies {
        let at = |t: Tool| {
            runs.iter()
                .find(|r| r.concurrency == c && r.tool == t)
                .map_or(0.0, |r| r.launches_per_sec)
        };
        let (py, js) = (at(Tool::Pylti1p3), at(Tool::Ltijs));
        let ceiling = runs
            .iter()
            .filter(|r| r.concurrency == c)
            .find_map(|r| r.ceiling.as_ref())
            .map_or(0.0, |x| x.requests_per_sec / 2.0);
        for r in runs
            .iter()
            .filter(|r| r.concurrency == c && r.tool == Tool::Lmsbridge)
        {
            let _ = writeln!(
                out,
                "| {c} | {} | {:.0} | {} | {} | {} | {} |",
                r.label,
                r.launches_per_sec,
                ratio(r.launches_per_sec, py),
                ratio(r.launches_per_sec, js),
                if ceiling > 0.0 {
                    format!("{ceiling:.0}")
                } else {
                    "n/a".into()
                },
                if ceiling > 0.0 {
                    format!("{:.0}%", 100.0 * r.launches_per_sec / ceiling)
                } else {
                    "n/a".into()
                },
            );
        }
    }

    let failures: Vec<&LaunchRun> = runs.iter().filter(|r| r.errors.total() > 0).collect();
    if !failures.is_empty() {
        out.push_str("\nFailures by kind (first answer seen):\n\n");
        for r in failures {
            for (kind, n) in &r.errors.counts {
                let sample = r.errors.samples.get(kind).map_or("", String::as_str);
                let _ = writeln!(
                    out,
                    "- {} at {}: {n} × `{kind}`: {}",
                    r.label,
                    r.concurrency,
                    sample.replace('`', "'")
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{Ceiling, Errors};
    use crate::stats::{CpuUse, Latency};

    fn run(label: &str, tool: Tool, c: usize, rate: f64) -> LaunchRun {
        LaunchRun {
            label: label.into(),
            tool,
            concurrency: c,
            launches_ok: 100,
            logins_attempted: 100,
            logins_ok: 100,
            launches_attempted: 100,
            rounds: 1,
            login_secs: 1.0,
            launch_secs: 1.0,
            sign_secs: 0.1,
            launches_per_sec: rate,
            login: Latency::default(),
            launch: Latency::default(),
            combined: Latency::default(),
            errors: Errors::default(),
            cpu: CpuUse::default(),
            ceiling: None,
        }
    }

    #[test]
    fn ratios_compare_runs_at_the_same_concurrency() {
        let mut lms = run("lmsbridge (SQLite)", Tool::Lmsbridge, 16, 3000.0);
        lms.ceiling = Some(Ceiling {
            url: "http://127.0.0.1:1/health".into(),
            concurrency: 16,
            requests_ok: 10,
            errors: Errors::default(),
            secs: 1.0,
            requests_per_sec: 12000.0,
            latency: Latency::default(),
            cpu: CpuUse::default(),
        });
        let runs = vec![
            lms,
            run("pylti1p3", Tool::Pylti1p3, 16, 600.0),
            run("ltijs", Tool::Ltijs, 16, 150.0),
            run("pylti1p3", Tool::Pylti1p3, 64, 1.0),
        ];
        let md = markdown(&runs);
        assert!(
            md.contains("| 16 | lmsbridge (SQLite) | 3000 | 5.0x | 20.0x | 6000 | 50% |"),
            "{md}"
        );
    }
}
