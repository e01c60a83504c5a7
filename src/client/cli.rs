//! The command line of `fortune-client`; also the source of its man page and
//! shell completions (`ClientCli::command()`), so they cannot drift from `--help`.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::cli::parse_secs;
use crate::wire::Protocol;

/// Gets fortunes from a fortune-server (or any Qt Fortune Server), the way
/// Qt's Fortune Client reads them, and benchmarks servers.
///
/// Exit status: 0 done; 1 no answer (unknown host, refused, reset, timed out;
/// for `bench`: some connections failed); 2 usage; 3 the answer is not one
/// well-formed frame.
#[derive(Debug, Parser)]
#[command(
    name = "fortune-client",
    version,
    about = "get fortunes from a fortune-server, and benchmark servers",
    long_about,
    max_term_width = 100,
    args_conflicts_with_subcommands = true
)]
pub struct ClientCli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub fetch: FetchArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Many concurrent clients, each looping connect, read one frame, check
    /// it, close, driven by a few threads; bounded by --duration and
    /// --connections. Prints connections/s, latency percentiles, errors by
    /// kind and the client's own CPU per connection.
    Bench(BenchArgs),
}

/// What every mode needs: where, which framing, how long to wait.
#[derive(Debug, Args)]
pub struct Common {
    /// Server as HOST[:PORT] (IPv6 with a port: [::1]:7017).
    // The text is clap's --help, not rustdoc's: its brackets are no links.
    #[allow(rustdoc::broken_intra_doc_links)]
    #[arg(value_name = "HOST[:PORT]", default_value = "127.0.0.1:7017", value_parser = check_target)]
    pub target: String,

    /// Framing the server speaks.
    #[arg(long, value_enum, default_value_t = Protocol::Qt)]
    pub protocol: Protocol,

    /// Seconds to wait for the connection, and for the whole answer.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub timeout: Duration,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    #[command(flatten)]
    pub common: Common,

    /// Fortunes to get, one connection each, printed separated by `%` lines.
    #[arg(long, short = 'n', value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub count: u64,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub common: Common,

    /// Concurrent clients: connections kept in flight, each replaced by the
    /// next as soon as it ends.
    #[arg(long, short = 'c', value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub clients: u32,

    /// Threads driving the clients, each many non-blocking connections
    /// (epoll) [default: 2, or 1 on a single CPU].
    #[arg(long, short = 't', value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub threads: Option<u32>,

    /// Seconds to run at most.
    #[arg(long, short = 'd', value_name = "SECS", default_value = "5", value_parser = parse_secs)]
    pub duration: Duration,

    /// Connections to make at most, across all clients.
    #[arg(long, value_name = "N", default_value_t = 10_000_000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub connections: u64,

    /// Start at most N connections a second across all clients, paced evenly (the clients
    /// still bound what is in flight): to compare servers at the same load rather than each
    /// at its own top speed. Default: as fast as the clients go.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: Option<u32>,

    /// Idle connections to open first and hold (never read) while the clients run.
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=100_000))]
    pub idle: u32,

    /// Print the result as one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,

    /// No progress line on stderr.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// The sections of fortune-client(1) beyond what clap gives, rendered by tests/docs.rs.
pub mod man {
    /// (command, what it does).
    pub const EXAMPLES: &[(&str, &str)] = &[
        (
            "fortune-client",
            "One fortune from the local fortune-server (127.0.0.1:7017).",
        ),
        (
            "fortune-client '[::1]:7017' --count 3",
            "Three fortunes over IPv6, separated by % lines.",
        ),
        (
            "fortune-client --protocol text localhost:17",
            "Quote of the Day (RFC 865), once fortune-qotd.socket is enabled.",
        ),
        (
            "fortune-client bench --clients 64 --duration 10",
            "64 clients for 10 seconds: connections per second, latency percentiles, errors by kind.",
        ),
    ];

    /// Related pages (only pages the packages ship or the system has).
    pub const SEE_ALSO: &[&str] = &["fortune-server(8)", "fortune(6)"];
}

/// Refuses what cannot be `HOST[:PORT]` at parse time (usage error, status 2).
fn check_target(s: &str) -> Result<String, String> {
    super::exchange::parse_target(s).map(|_| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definition_is_consistent() {
        ClientCli::command().debug_assert();
    }

    #[test]
    fn bench_is_a_subcommand_and_a_host_is_not() {
        let cli = ClientCli::try_parse_from(["fortune-client", "bench", "-c", "4", "[::1]:9"]).unwrap();
        match cli.command {
            Some(Command::Bench(b)) => assert_eq!((b.clients, b.common.target.as_str()), (4, "[::1]:9")),
            None => panic!("bench not parsed"),
        }
        let cli = ClientCli::try_parse_from(["fortune-client", "-n", "3", "localhost:9"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(
            (cli.fetch.count, cli.fetch.common.target.as_str()),
            (3, "localhost:9")
        );
    }
}
