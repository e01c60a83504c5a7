//! The command line of `fortune-server`; also the source of its man page and
//! shell completions, so they cannot drift from `--help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};

use crate::cidr::Cidr;
use crate::fortunes::Selection;
use crate::fortunes::select::{self, Choice, Length, Named};
use crate::wire::Protocol;

/// Default address when systemd passes no socket.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7017";

/// Serves a random fortune per connection, as Qt's Threaded Fortune Server
/// does (`QDataStream << QString`), adopting the sockets systemd passes.
///
/// With sockets from systemd (LISTEN_FDS), each is asked what it is:
/// listening sockets (Accept=no) are served by worker threads that each serve
/// many connections, one more only while every worker waits for a slow reader
/// (up to --max-connections); a connected socket (Accept=yes) is served once,
/// then the process exits. Without them it listens on --listen.
#[derive(Debug, Parser)]
#[command(name = "fortune-server", version, about, long_about, max_term_width = 100)]
pub struct Cli {
    /// Address to listen on when systemd passes no socket (repeatable). Under systemd
    /// (INVOCATION_ID set), only if given: a unit started without its socket is an error.
    #[arg(
        long,
        value_name = "ADDR",
        env = "FORTUNE_LISTEN",
        value_delimiter = ',',
        default_value = DEFAULT_LISTEN
    )]
    pub listen: Vec<SocketAddr>,

    /// Framing, unless a listening socket's systemd name (FileDescriptorName=) is qt, qt4 or
    /// text: the name wins (with a warning when this is set and differs). Under Accept=yes
    /// systemd names the connection "connection": this option decides.
    #[arg(long, value_enum, env = "FORTUNE_PROTOCOL", default_value_t = Protocol::Qt)]
    pub protocol: Protocol,

    /// Fortune file (fortune-mod's `%` lines with its strfile index NAME.dat if any, or one
    /// fortune per line) or directory (every file with a NAME.dat, e.g. /usr/share/games/fortunes);
    /// repeatable. A leading `-` makes a PATH optional: left out while missing or without fortune
    /// files. `N% PATH` (fortune's `N% PATH`) gives PATH N percent of the picks; paths without one
    /// share the rest; together at most 100. Default (or nothing left): the built-in seven.
    #[arg(long, value_name = "[N%] PATH", env = "FORTUNE_FORTUNES", value_delimiter = ':',
          value_parser = select::parse_named)]
    pub fortunes: Vec<Named>,

    /// Each file (each member of a directory) equally likely, then an entry in it, whatever
    /// their sizes; percentages apply first (fortune's -e). Default: each entry equally likely.
    #[arg(long, env = "FORTUNE_EQUAL")]
    pub equal: bool,

    /// Serve only short fortunes, of at most --short-max bytes (fortune's -s).
    #[arg(long, env = "FORTUNE_SHORT", conflicts_with = "long")]
    pub short: bool,

    /// Serve only long fortunes, of more than --short-max bytes (fortune's -l).
    #[arg(long, env = "FORTUNE_LONG")]
    pub long: bool,

    /// The longest fortune counted as short, in bytes as strfile(1) counts them: its lines
    /// with their newlines (fortune's -n).
    #[arg(long, value_name = "BYTES", env = "FORTUNE_SHORT_MAX", default_value_t = select::SHORT_MAX as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub short_max: u32,

    /// Directory for the cache of the fortune directories' lists, read and written by
    /// one-connection processes (Accept=yes, --inetd) so each need not list them again.
    /// Default: systemd's CacheDirectory= ($CACHE_DIRECTORY), else none.
    #[arg(long, value_name = "DIR", env = "FORTUNE_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Longest fortune served, in bytes of UTF-8: longer entries are left out, with one
    /// warning per file at load. Each connection in flight holds at most twice this.
    #[arg(long, value_name = "BYTES", env = "FORTUNE_MAX_ENTRY", default_value_t = 8192,
          value_parser = clap::value_parser!(u32).range(64..=16 << 20))]
    pub max_entry: u32,

    /// Also serve offensive collections (rot13 index, off/ directory), decoded.
    #[arg(long, env = "FORTUNE_OFFENSIVE", value_parser = parse_bool)]
    pub offensive: bool,

    /// The same fortune all day for everyone (from the date in the local time zone). Qt's
    /// Fortune Client asks again at once when a fortune repeats: it reconnects in a loop.
    #[arg(long, env = "FORTUNE_DAILY", value_parser = parse_bool)]
    pub daily: bool,

    /// Seconds any one wait may take: writing to a client, waiting for it to close, stopping.
    #[arg(long, value_name = "SECS", env = "FORTUNE_TIMEOUT", default_value = "10", value_parser = parse_secs)]
    pub timeout: Duration,

    /// Exit (status 0) after this many seconds with no client: none being served, none
    /// lingering, none served. For socket activation: systemd keeps the socket and starts
    /// the service again for the next client. Default: never.
    #[arg(long, value_name = "SECS", env = "FORTUNE_IDLE_EXIT", value_parser = parse_secs)]
    pub idle_exit: Option<Duration>,

    /// Serve the connection on standard input (inetd, or systemd's StandardInput=socket).
    #[arg(long, env = "FORTUNE_INETD", value_parser = parse_bool)]
    pub inetd: bool,

    /// Connections being written at once, across all sockets (a worker thread each while its
    /// client is slow to read); more wait in the kernel's backlog. Clients whose fortune is
    /// written and who have yet to close do not count.
    #[arg(long, value_name = "N", env = "FORTUNE_MAX_CONNECTIONS", default_value_t = 512,
          value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub max_connections: u32,

    /// Connections (and descriptors) one source may hold at once, being served or waiting for
    /// the client to close; a source is a /24 (IPv4) or a /48 (IPv6). More are closed at once,
    /// without a fortune. Of them, at most 1/8 of --max-connections may be slow readers being
    /// written; more are reset. 0: no cap, no share (e.g. behind a NAT; behind a load balancer
    /// see --proxy-from). Default: 1/8 of the descriptor limit.
    #[arg(long, value_name = "N", env = "FORTUNE_MAX_PER_SOURCE")]
    pub max_per_source: Option<u32>,

    /// Load balancers (ADDR/BITS, or an address; comma-separated): their TCP connections must
    /// begin with a PROXY protocol header (v2, or v1 text), and are served as the client it
    /// names: per-source caps, logs and PEER= see that client. A missing or malformed header
    /// (or none within --timeout) closes the connection. Other peers are served as themselves,
    /// whatever they send. Health checks (LOCAL) are served without a source. UDP is not proxied.
    #[arg(long, value_name = "CIDR", env = "FORTUNE_PROXY_FROM", value_delimiter = ',')]
    pub proxy_from: Vec<Cidr>,

    /// UDP replies a second per source (a /24 for IPv4, a /48 for IPv6), after a burst of
    /// --udp-burst; all sources together get at most 4096 times this, sources seen asking
    /// in the last 1 to 2 s first; more datagrams go unanswered. 0: no limit.
    #[arg(long, value_name = "N", env = "FORTUNE_UDP_RATE", default_value_t = 5)]
    pub udp_rate: u32,

    /// UDP replies one source may get at once before --udp-rate applies.
    #[arg(long, value_name = "N", env = "FORTUNE_UDP_BURST", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub udp_burst: u32,

    /// Log level: off, error, warn, info, debug or trace.
    #[arg(long, value_name = "LEVEL", env = "FORTUNE_LOG_LEVEL", default_value = "info",
          ignore_case = true, value_parser = log_levels())]
    pub log_level: log::LevelFilter,

    /// Hold the TCP addresses of socket unit UNIT while systemd restarts it, so none of its
    /// connections is refused or reset (docs/admin.md, "Changing the socket"); then exit. Run
    /// by the units' ExecStopPre= through systemd-run, as root; no variable sets it.
    #[arg(long, value_name = "UNIT", exclusive = true)]
    pub hand_over: Option<String>,

    /// Which options were given (command line or variable) rather than defaulted.
    #[arg(skip)]
    pub given: Given,
}

/// Options whose meaning depends on whether the admin set them.
#[derive(Debug, Default, Clone, Copy)]
pub struct Given {
    /// `--listen` or `FORTUNE_LISTEN`: binding is wanted even under systemd.
    pub listen: bool,
    /// `--protocol` or `FORTUNE_PROTOCOL`: a socket's name overriding it is worth a warning.
    pub protocol: bool,
}

/// The spellings of a boolean variable (`FORTUNE_DAILY=yes`), as systemd takes them.
pub const BOOLEANS: &str = "1/0, yes/no, on/off or true/false";

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "on" | "true" | "t" => Ok(true),
        "0" | "no" | "n" | "off" | "false" | "f" | "" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean: use {BOOLEANS}")),
    }
}

/// `--log-level`'s values, listed so that the completions offer them.
fn log_levels() -> impl clap::builder::TypedValueParser<Value = log::LevelFilter> {
    use clap::builder::{PossibleValuesParser, TypedValueParser};
    PossibleValuesParser::new(["off", "error", "warn", "info", "debug", "trace"])
        .try_map(|level| level.parse::<log::LevelFilter>())
}

/// The sections of fortune-server(8) beyond the options, rendered by
/// tests/docs.rs next to what clap gives (the `FORTUNE_*` variables come
/// from the options themselves).
pub mod man {
    /// How the fortune served is chosen, with fortune-mod's names beside
    /// ours (docs/collections.md says the same at length).
    pub const CHOOSING: &[(&str, &str)] = &[
        (
            "--fortunes 'N% PATH'  (fortune: N% PATH)",
            "PATH gets N percent of the picks (a whole number from 1 to 100; 'N%PATH' too). \
             Paths without a percentage share the rest, in proportion to their entries. As \
             fortune-mod: the percentages add up to at most 100; below 100 some path without one \
             takes the rest; at 100 none is left without one; otherwise the service stops with \
             status 2 and one line naming the values. A percentage on a path that is missing or \
             has no fortune to serve stops it with status 1, unless the path is optional ('N% -PATH'): \
             then its share goes to the others, in proportion.",
        ),
        (
            "--equal  (fortune -e)",
            "Each file (each member of a directory) is equally likely, then an entry in it; \
             within a percentage, its files share it equally; the files without one share the rest.",
        ),
        (
            "--short, --long, --short-max N  (fortune -s, -l, -n N)",
            "Only fortunes of at most N bytes (default 160), or of more, as strfile(1) counts them: \
             their lines with the newlines. Nothing of that length left to serve stops the service \
             with status 1. Over UDP (RFC 865) only fortunes that fit 512 bytes are drawn, whatever \
             is chosen.",
        ),
        (
            "--daily",
            "Composes with all of the above: the day's fortune is drawn by the same shares.",
        ),
    ];

    /// Variables set by systemd (or by hand) that the binary reads.
    pub const ENVIRONMENT: &[(&str, &str)] = &[
        (
            "LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID",
            "Sockets passed by systemd (sd_listen_fds(3)): descriptors 3 and up, their \
             FileDescriptorName= (qt, qt4 or text choose a listening socket's framing; under \
             Accept=yes systemd names the connection \"connection\" and --protocol applies), and \
             the process they are for \
             (another PID: ignored, and --listen is bound). Unset once read.",
        ),
        (
            "NOTIFY_SOCKET",
            "Where to send READY=1, RELOADING=1, STOPPING=1, STATUS= and the watchdog pings \
             (Type=notify, WatchdogSec=). Without it nothing is sent.",
        ),
        (
            "WATCHDOG_USEC, WATCHDOG_PID",
            "The watchdog interval (WatchdogSec=): pinged every half of it.",
        ),
        (
            "INVOCATION_ID",
            "Set by systemd for every unit: with no socket passed and no --listen given, the \
             process exits (status 3) naming the cause (its socket stopped, or Accept=yes) instead \
             of binding --listen's default in a sandbox without network.",
        ),
        (
            "CACHE_DIRECTORY",
            "systemd's CacheDirectory=: the default of --cache-dir (its first directory).",
        ),
        (
            "JOURNAL_STREAM",
            "When it names standard error (StandardError=journal), logs go to the journal with \
             their fields (MESSAGE_ID, CODE_FILE, PEER); fatal errors too, usage errors included.",
        ),
    ];

    /// Paths of the packaged install.
    pub const FILES: &[(&str, &str)] = &[
        (
            "/usr/lib/systemd/system/fortune.socket, fortune.service",
            "TCP port 7017 (Accept=no), and the one service process serving it.",
        ),
        (
            "/usr/lib/systemd/system/fortune@.service",
            "One process per connection, when fortune.socket has Accept=yes.",
        ),
        (
            "/usr/lib/systemd/system/fortune-qotd.socket, fortune-qotd.service",
            "RFC 865 Quote of the Day, TCP and UDP port 17, and the process of its own serving it; \
             not enabled.",
        ),
        (
            "/usr/lib/systemd/system/fortune.service.d/fortune-mod.conf",
            "Serves the fortune-mod collections: FORTUNE_FORTUNES=-/usr/share/games/fortunes \
             (the same for fortune@.service and fortune-qotd.service).",
        ),
        (
            "/etc/systemd/system/fortune.service.d/override.conf",
            "The admin's drop-in (systemctl edit fortune.service), e.g. Environment=FORTUNE_FORTUNES=...; \
             fortune@.service, fortune-qotd.service and the sockets take their own.",
        ),
        (
            "/usr/share/games/fortunes",
            "The fortune-mod collections: files in fortune's % format with a strfile(1) index NAME.dat.",
        ),
        (
            "/var/cache/fortune-server",
            "The fortune directories' lists cached by Accept=yes processes (CacheDirectory=; with \
             DynamicUser= in /var/cache/private/fortune-server). Removed on purge.",
        ),
    ];

    /// (command, what it does).
    pub const EXAMPLES: &[(&str, &str)] = &[
        (
            "systemctl status fortune.socket fortune.service",
            "What is served, the counters, and a reload that failed.",
        ),
        (
            "systemctl edit fortune.service",
            "A drop-in with Environment=FORTUNE_FORTUNES=/srv/fortunes/ours, then systemctl restart \
             fortune.service: serve your own fortunes.",
        ),
        (
            "systemctl enable --now fortune-qotd.socket",
            "Quote of the Day on TCP and UDP port 17, served by fortune-qotd.service.",
        ),
        (
            "systemd-socket-activate -l 7017 fortune-server",
            "Socket activation by hand (Accept=no), with the built-in fortunes.",
        ),
        (
            "fortune-server --fortunes /usr/share/games/fortunes --listen '[::]:7017'",
            "Standalone, on every address, with the fortune-mod collections.",
        ),
    ];

    /// The admin guide, as the .deb installs it.
    pub const ADMIN_GUIDE: &str = "/usr/share/doc/fortune-server/docs/admin.md";

    /// Related pages.
    pub const SEE_ALSO: &[&str] = &[
        "fortune-client(1)",
        "systemd.socket(5)",
        "systemd.service(5)",
        "fortune(6)",
        "strfile(1)",
        "journalctl(1)",
    ];
}

impl Cli {
    /// What clap cannot check value by value: fortune-mod's rules for the
    /// percentages of all `--fortunes` values together. The error is the
    /// one line to report, as [`parse`] gives it.
    pub fn check(self) -> Result<Cli, String> {
        match select::check_shares(&self.fortunes) {
            Ok(()) => Ok(self),
            Err(e) => Err(format!("error: {e} (see --help)")),
        }
    }

    /// What to serve and how to choose.
    pub fn selection(&self) -> Selection {
        let max = self.short_max as usize;
        let length = match (self.short, self.long) {
            (true, _) => Length::Short(max),
            (_, true) => Length::Long(max),
            _ => Length::Any,
        };
        Selection {
            paths: self.fortunes.iter().map(|n| n.path.clone()).collect(),
            offensive: self.offensive,
            max_entry: self.max_entry as usize,
            choice: Choice {
                percents: self.fortunes.iter().map(|n| n.percent).collect(),
                equal: self.equal,
                length,
            },
        }
    }

    /// `--cache-dir`, else the first directory of systemd's `CacheDirectory=`.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        self.cache_dir.clone().or_else(|| {
            let systemd = std::env::var_os("CACHE_DIRECTORY")?;
            let first = std::env::split_paths(&systemd).next()?;
            (!first.as_os_str().is_empty()).then_some(first)
        })
    }
}

/// Parses the command line of either binary. `--help` and `--version` are
/// printed and end the process with status 0; a usage error is handed to
/// `report` as one line (clap's own rendering spans several) and ends it with
/// `usage_status`. The `Err` is the status for `main` to exit with.
pub fn parse<T: clap::Parser>(usage_status: u8, report: impl FnOnce(&str)) -> Result<T, ExitCode> {
    parse_matches::<T>(usage_status, report).map(|(parsed, _)| parsed)
}

/// [`parse`] for `fortune-server`, noting which options were [`Given`].
pub fn parse_server(usage_status: u8, report: impl FnOnce(&str)) -> Result<Cli, ExitCode> {
    use clap::parser::ValueSource;
    let (mut cli, matches) = parse_matches::<Cli>(usage_status, report)?;
    let given = |id: &str| {
        matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    cli.given = Given {
        listen: given("listen"),
        protocol: given("protocol"),
    };
    Ok(cli)
}

fn parse_matches<T: clap::Parser>(
    usage_status: u8,
    report: impl FnOnce(&str),
) -> Result<(T, clap::ArgMatches), ExitCode> {
    let fail = |e: clap::Error| {
        if !e.use_stderr() {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        let text = e.to_string();
        let first = text.lines().next().unwrap_or("error: invalid command line");
        report(&format!("{first} (see --help)"));
        ExitCode::from(usage_status)
    };
    T::command()
        .try_get_matches()
        .and_then(|matches| {
            let parsed = T::from_arg_matches(&matches).map_err(|e| e.format(&mut T::command()))?;
            Ok((parsed, matches))
        })
        .map_err(fail)
}

/// One line for each `FORTUNE_*` variable in `vars` that no option reads,
/// naming the closest one that does (a misspelt variable is otherwise
/// silently ignored).
pub fn unknown_variables(vars: impl IntoIterator<Item = String>) -> Vec<String> {
    let command = Cli::command();
    let known: Vec<String> = command
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|var| var.to_string_lossy().into_owned())
        .collect();
    vars.into_iter()
        .filter(|var| var.starts_with("FORTUNE_") && !known.contains(var))
        .map(|var| {
            let closest = known
                .iter()
                .min_by_key(|k| edit_distance(&var, k))
                .map_or("", String::as_str);
            format!("{var} is not a variable fortune-server reads (ignored); did you mean {closest}?")
        })
        .collect()
}

/// Levenshtein distance, in bytes (the names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, &ca) in a.as_bytes().iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

pub(crate) fn parse_secs(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err(format!(
            "{s} is out of range (more than 0, at most 86400 seconds)"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn booleans_take_the_usual_spellings() {
        for yes in ["1", "yes", "YES", "on", "true", "True", "y"] {
            assert_eq!(parse_bool(yes), Ok(true), "{yes}");
        }
        for no in ["0", "no", "off", "false", "n", ""] {
            assert_eq!(parse_bool(no), Ok(false), "{no}");
        }
        let e = parse_bool("maybe").unwrap_err();
        assert!(e.contains("1/0, yes/no, on/off or true/false"), "{e}");
    }

    #[test]
    fn an_unknown_variable_names_the_closest_known_one() {
        let vars = [
            "FORTUNE_FORTUNE",
            "FORTUNE_FORTUNES",
            "PATH",
            "FORTUNE_IDLEEXIT",
            "FORTUNE_PROTOCL",
        ];
        assert_eq!(
            unknown_variables(vars.map(String::from)),
            [
                "FORTUNE_FORTUNE is not a variable fortune-server reads (ignored); did you mean FORTUNE_FORTUNES?",
                "FORTUNE_IDLEEXIT is not a variable fortune-server reads (ignored); did you mean FORTUNE_IDLE_EXIT?",
                "FORTUNE_PROTOCL is not a variable fortune-server reads (ignored); did you mean FORTUNE_PROTOCOL?",
            ]
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn log_levels_are_listed_for_completion() {
        let command = Cli::command();
        let arg = command
            .get_arguments()
            .find(|a| a.get_id() == "log_level")
            .expect("--log-level");
        let values: Vec<String> = arg
            .get_possible_values()
            .iter()
            .map(|v| v.get_name().to_string())
            .collect();
        assert_eq!(values, ["off", "error", "warn", "info", "debug", "trace"]);
    }

    #[test]
    fn seconds_parse() {
        assert_eq!(parse_secs("2.5"), Ok(Duration::from_millis(2500)));
        assert!(parse_secs("0").is_err());
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("soon").is_err());
    }
}
