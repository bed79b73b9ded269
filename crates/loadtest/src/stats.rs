//! Latency percentiles and CPU accounting read from `/proc` (Linux only; elsewhere the CPU
//! figures are simply absent).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Percentiles of one kind of request, in milliseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    pub count: usize,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// Summarises samples in microseconds (nearest-rank percentiles).
    pub fn from_micros(mut samples: Vec<u32>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let n = samples.len();
        let rank = |q: f64| {
            let idx = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
            f64::from(samples[idx]) / 1000.0
        };
        let sum: u64 = samples.iter().map(|&s| u64::from(s)).sum();
        Self {
            count: n,
            mean_ms: sum as f64 / n as f64 / 1000.0,
            p50_ms: rank(0.50),
            p90_ms: rank(0.90),
            p99_ms: rank(0.99),
            max_ms: f64::from(samples[n - 1]) / 1000.0,
        }
    }
}

/// Clock ticks per second of `/proc/*/stat` times. Linux has used 100 on every common
/// architecture for decades; `getconf CLK_TCK` tells.
const CLK_TCK: f64 = 100.0;

/// Which processes to account CPU time for, besides the generator itself.
#[derive(Debug, Clone, Default)]
pub struct CpuProbe {
    /// The tool's processes (lmsbridge, gunicorn workers, node).
    pub pids: Vec<u32>,
    /// Helper processes counted by command name (`postgres`, `redis-server`).
    pub comms: Vec<String>,
}

/// CPU counters at one instant, in clock ticks.
#[derive(Debug, Clone, Default)]
pub struct CpuSnapshot {
    machine_busy: u64,
    machine_total: u64,
    own: u64,
    tool: u64,
    comms: Vec<u64>,
}

/// CPU used between snapshots, accumulated over the timed phases.
#[derive(Debug, Clone, Default)]
pub struct CpuTotals {
    machine_busy: u64,
    machine_total: u64,
    own: u64,
    tool: u64,
    comms: Vec<u64>,
}

/// CPU use per unit of work, as reported.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CpuUse {
    /// Share of all cores busy during the timed phases.
    pub machine_busy_pct: f64,
    /// CPU milliseconds the generator spent per unit (launch or request).
    pub generator_ms: f64,
    /// CPU milliseconds the tool's own processes spent per unit.
    pub tool_ms: Option<f64>,
    /// CPU milliseconds per unit of each named helper (the database, the cache).
    pub helpers_ms: BTreeMap<String, f64>,
}

impl CpuProbe {
    pub fn snapshot(&self) -> CpuSnapshot {
        let (machine_busy, machine_total) = machine_ticks().unwrap_or_default();
        let own = process_ticks("self").unwrap_or_default();
        let tool = self
            .pids
            .iter()
            .filter_map(|p| process_ticks(&p.to_string()))
            .sum();
        let comms = if self.comms.is_empty() {
            Vec::new()
        } else {
            ticks_by_comm(&self.comms)
        };
        CpuSnapshot {
            machine_busy,
            machine_total,
            own,
            tool,
            comms,
        }
    }
}

impl CpuTotals {
    pub fn add(&mut self, before: &CpuSnapshot, after: &CpuSnapshot) {
        self.machine_busy += after.machine_busy.saturating_sub(before.machine_busy);
        self.machine_total += after.machine_total.saturating_sub(before.machine_total);
        self.own += after.own.saturating_sub(before.own);
        self.tool += after.tool.saturating_sub(before.tool);
        if self.comms.len() < after.comms.len() {
            self.comms.resize(after.comms.len(), 0);
        }
        for (i, (a, b)) in after.comms.iter().zip(&before.comms).enumerate() {
            self.comms[i] += a.saturating_sub(*b);
        }
    }

    /// CPU per unit of work (`units` launches or requests).
    pub fn per_unit(&self, probe: &CpuProbe, units: u64) -> CpuUse {
        let per = |ticks: u64| {
            if units == 0 {
                0.0
            } else {
                ticks as f64 / CLK_TCK * 1000.0 / units as f64
            }
        };
        CpuUse {
            machine_busy_pct: if self.machine_total == 0 {
                0.0
            } else {
                100.0 * self.machine_busy as f64 / self.machine_total as f64
            },
            generator_ms: per(self.own),
            tool_ms: (!probe.pids.is_empty()).then(|| per(self.tool)),
            helpers_ms: probe
                .comms
                .iter()
                .zip(self.comms.iter().chain(std::iter::repeat(&0)))
                .map(|(name, &t)| (name.clone(), per(t)))
                .collect(),
        }
    }
}

/// (busy, total) ticks over all cores, from the first line of `/proc/stat`.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

/// (comm, utime + stime) of one process.
fn parse_stat(stat: &str) -> Option<(&str, u64)> {
    // The command name is in parentheses and may itself contain spaces or parentheses.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = &stat[open + 1..close];
    let rest: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // After the comm: state(0) ppid(1) ... utime(11) stime(12).
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((comm, utime + stime))
}

fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat).map(|(_, t)| t)
}

fn ticks_by_comm(names: &[String]) -> Vec<u64> {
    let mut out = vec![0; names.len()];
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((comm, ticks)) = parse_stat(&stat)
            && let Some(i) = names.iter().position(|n| n == comm)
        {
            out[i] += ticks;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let l = Latency::from_micros((1..=100).map(|v| v * 1000).collect());
        assert_eq!(l.count, 100);
        assert_eq!(l.p50_ms, 50.0);
        assert_eq!(l.p90_ms, 90.0);
        assert_eq!(l.p99_ms, 99.0);
        assert_eq!(l.max_ms, 100.0);
        assert_eq!(Latency::from_micros(vec![]).count, 0);
        assert_eq!(Latency::from_micros(vec![7000]).p99_ms, 7.0);
    }

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let line = "42 (my (odd) prog) S 1 42 42 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 1 0";
        assert_eq!(parse_stat(line), Some(("my (odd) prog", 300)));
    }
}
