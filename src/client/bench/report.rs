//! What a bench run is asked ([`Options`]) and what it measured
//! ([`Report`]: the rate, latency percentiles, failures by kind, the
//! client's CPU per connection), printed as a table or as JSON.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use crate::client::exchange::Failure;
use crate::wire::Protocol;

/// What to run; `duration` and `connections` both bound it.
#[derive(Clone, Debug)]
pub struct Options {
    pub addr: SocketAddr,
    pub protocol: Protocol,
    pub clients: usize,
    /// Threads driving the clients (at most one per client).
    pub threads: usize,
    pub duration: Duration,
    pub connections: u64,
    /// Connections started a second at most, paced evenly (None: as fast
    /// as the clients go).
    pub rate: Option<u32>,
    pub timeout: Duration,
    /// Connections opened first and held, unread, until the end.
    pub idle: usize,
    pub progress: bool,
}

/// Latency percentiles of the successful connections, connect to close.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Latency {
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latency {
    /// From latencies in microseconds, sorted in place.
    pub(super) fn of(micros: &mut [u32]) -> Latency {
        micros.sort_unstable();
        let at = |q: f64| match micros.len() {
            0 => Duration::ZERO,
            n => Duration::from_micros(micros[((n - 1) as f64 * q).round() as usize].into()),
        };
        Latency {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            max: at(1.0),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Report {
    pub options: Options,
    pub elapsed: Duration,
    pub ok: u64,
    /// Failed connections, by kind, in [`Failure::ALL`] order.
    pub errors: [u64; Failure::ALL.len()],
    pub first_error: Option<String>,
    pub latency: Latency,
    /// CPU time (user + system) this process spent on the run.
    pub cpu: Duration,
}

impl Report {
    pub fn failed(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// This client's CPU time per connection made (ok or failed).
    pub fn cpu_per_connection(&self) -> Duration {
        self.cpu
            .checked_div(u32::try_from(self.ok + self.failed()).unwrap_or(u32::MAX))
            .unwrap_or_default()
    }

    /// Successful connections per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn table(&self) -> String {
        let o = &self.options;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let l = &self.latency;
        let mut s = format!(
            "fortune-client bench: {} ({}), {} clients, {} idle, {:.2} s\n",
            o.addr,
            o.protocol,
            o.clients,
            o.idle,
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(
            s,
            "connections  {} ok, {} failed, {:.0}/s",
            self.ok,
            self.failed(),
            self.rate()
        );
        let _ = writeln!(
            s,
            "latency      p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            ms(l.p50),
            ms(l.p90),
            ms(l.p99),
            ms(l.max)
        );
        let errors: Vec<String> = Failure::ALL
            .iter()
            .zip(self.errors)
            .map(|(f, n)| format!("{} {n}", f.name()))
            .collect();
        let _ = writeln!(s, "errors       {}", errors.join(", "));
        let _ = writeln!(
            s,
            "client CPU   {:.1} us per connection ({} threads, {:.2} s user+system)",
            self.cpu_per_connection().as_secs_f64() * 1e6,
            o.threads,
            self.cpu.as_secs_f64()
        );
        if let Some(e) = &self.first_error {
            let _ = writeln!(s, "first error  {e}");
        }
        s
    }

    pub fn json(&self) -> String {
        let o = &self.options;
        let us = |d: Duration| d.as_micros();
        let l = &self.latency;
        let errors: Vec<String> = Failure::ALL
            .iter()
            .zip(self.errors)
            .map(|(f, n)| format!("\"{}\":{n}", f.name()))
            .collect();
        format!(
            concat!(
                "{{\"target\":\"{}\",\"protocol\":\"{}\",\"clients\":{},\"idle\":{},\"seconds\":{:.3},",
                "\"ok\":{},\"failed\":{},\"per_second\":{:.1},",
                "\"latency_us\":{{\"p50\":{},\"p90\":{},\"p99\":{},\"max\":{}}},",
                "\"errors\":{{{}}},\"first_error\":{},",
                "\"threads\":{},\"client_cpu_us\":{}}}"
            ),
            o.addr,
            o.protocol,
            o.clients,
            o.idle,
            self.elapsed.as_secs_f64(),
            self.ok,
            self.failed(),
            self.rate(),
            us(l.p50),
            us(l.p90),
            us(l.p99),
            us(l.max),
            errors.join(","),
            self.first_error
                .as_deref()
                .map_or_else(|| "null".to_string(), json_string),
            o.threads,
            self.cpu.as_micros()
        )
    }
}

/// A JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
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
    fn percentiles_pick_the_nearest_rank() {
        let mut v: Vec<u32> = (1..=100).rev().collect();
        let l = Latency::of(&mut v);
        assert_eq!(
            [l.p50, l.p90, l.p99, l.max].map(|d| d.as_micros()),
            [51, 90, 99, 100]
        );
        assert_eq!(Latency::of(&mut []), Latency::default());
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\nd"), r#""a\"b\\c\u000ad""#);
    }
}
