//! The man pages and shell completions the packages ship (packaging/generated/)
//! are made from the clap definitions, so they cannot drift from `--help`:
//! this test generates them again and fails when a committed copy differs.
//! `REGENERATE=1 cargo test --release --test docs` rewrites them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

/// Every binary the crate installs, with its man page section (8: a daemon
/// an admin runs, 1: a user command). A new binary is one more line here.
const COMMANDS: &[(CommandFn, &str)] = &[
    (fortune_server::cli::Cli::command, "8"),
    (fortune_server::client::cli::ClientCli::command, "1"),
];

type CommandFn = fn() -> clap::Command;

const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

fn generated_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/generated")
}

/// (path under packaging/generated/, contents) of every generated file.
fn generate() -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for (command, section) in COMMANDS {
        let cmd = command();
        let name = cmd.get_name().to_string();
        let page = if name == "fortune-server" {
            server_page(cmd.clone())
        } else {
            client_page(cmd.clone(), section)
        };
        files.push((format!("man/man{section}/{name}.{section}"), page));
        for shell in SHELLS {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), &name, &mut script);
            // The names bash-completion, zsh's fpath and fish look up.
            let file = match shell {
                Shell::Bash => format!("completions/bash/{name}"),
                Shell::Zsh => format!("completions/zsh/_{name}"),
                _ => format!("completions/fish/{name}.fish"),
            };
            files.push((file, script));
        }
    }
    files
}

/// fortune-server(8): clap_mangen's sections, with a SYNOPSIS that names
/// each option's argument, then CHOOSING FORTUNES, EXIT STATUS, ENVIRONMENT, FILES and SEE ALSO
/// from `fortune_server::exit::MEANINGS`, the options' variables and
/// `fortune_server::cli::man`.
fn server_page(mut cmd: clap::Command) -> Vec<u8> {
    use clap::ArgAction;
    use fortune_server::cli::man;
    use roff::{Roff, bold, italic, roman};

    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone()).section("8");
    let mut synopsis = Roff::new();
    synopsis.control("SH", ["SYNOPSIS"]);
    let mut line = vec![bold(cmd.get_name()), roman(" ")];
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        let Some(long) = arg.get_long() else { continue };
        line.push(roman("["));
        if let Some(short) = arg.get_short() {
            line.extend([bold(format!("-{short}")), roman("|")]);
        }
        line.push(bold(format!("--{long}")));
        if matches!(arg.get_action(), ArgAction::Set | ArgAction::Append) {
            let value = arg
                .get_value_names()
                .and_then(|v| v.first())
                .map_or(long.to_uppercase(), |v| v.to_string());
            line.extend([roman(" "), italic(value)]);
        }
        line.push(roman("] "));
    }
    synopsis.text(line);

    // A tagged paragraph per (term, meaning), the term in bold.
    let tagged = |roff: &mut Roff, list: &[(&str, &str)]| {
        for (term, meaning) in list {
            roff.control("TP", []).text([bold(*term)]).text([roman(*meaning)]);
        }
    };
    let mut extra = Roff::new();
    extra.control("SH", ["CHOOSING FORTUNES"]);
    tagged(&mut extra, man::CHOOSING);
    extra.control("SH", ["EXIT STATUS"]);
    for (status, meaning) in fortune_server::exit::MEANINGS {
        extra
            .control("TP", [])
            .text([bold(status.to_string())])
            .text([roman(meaning)]);
    }
    extra.control("PP", []).text([roman(
        "Every fatal error is one line naming what to fix: on standard error, or in the journal \
         (priority err) under systemd, where the service never writes to a client's socket. \
         fortune.service does not restart on statuses 1 to 4 (RestartPreventExitStatus=).",
    )]);
    extra.control("SH", ["ENVIRONMENT"]);
    for arg in cmd.get_arguments() {
        let (Some(var), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        extra
            .control("TP", [])
            .text([bold(var.to_string_lossy())])
            .text(match arg.get_value_delimiter() {
                Some(sep) => vec![
                    roman("As "),
                    bold(format!("--{long}")),
                    roman(format!(", values separated by '{sep}'.")),
                ],
                None if matches!(arg.get_action(), ArgAction::SetTrue) => vec![
                    roman("As "),
                    bold(format!("--{long}")),
                    roman(format!(": {}.", fortune_server::cli::BOOLEANS)),
                ],
                None => vec![roman("As "), bold(format!("--{long}")), roman(".")],
            });
    }
    tagged(&mut extra, man::ENVIRONMENT);
    extra.control("SH", ["FILES"]);
    for (path, meaning) in man::FILES {
        extra
            .control("TP", [])
            .text([italic(*path)])
            .text([roman(*meaning)]);
    }
    examples_and_see_also(&mut extra, man::EXAMPLES, man::SEE_ALSO);

    let mut page = Pieces::new(&man);
    page.add(&|w| man.render_name_section(w));
    page.add(&|w| synopsis.to_writer(w));
    page.add(&|w| man.render_description_section(w));
    page.add(&|w| man.render_options_section(w));
    page.add(&|w| extra.to_writer(w));
    page.add(&|w| man.render_version_section(w));
    page.0
}

/// fortune-client(1): clap_mangen's sections, `bench` with its options
/// (instead of clap_mangen's list of per-subcommand pages, which are not
/// shipped), EXAMPLES and SEE ALSO from `fortune_server::client::cli::man`.
fn client_page(mut cmd: clap::Command, section: &str) -> Vec<u8> {
    use fortune_server::client::cli::man;
    use roff::{Roff, bold, roman};

    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone()).section(section);
    let mut page = Pieces::new(&man);
    page.add(&|w| man.render_name_section(w));
    page.add(&|w| man.render_synopsis_section(w));
    page.add(&|w| man.render_description_section(w));
    page.add(&|w| man.render_options_section(w));
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("{} {}", cmd.get_name(), sub.get_name());
        let mut heading = Roff::new();
        heading.control(
            "SH",
            [format!("{} COMMAND", sub.get_name().to_uppercase()).as_str()],
        );
        heading.text([bold(name.as_str()), roman(" [OPTIONS] [HOST[:PORT]]")]);
        heading.control("PP", []);
        heading.text([roman(
            sub.get_long_about()
                .or(sub.get_about())
                .map(|a| a.to_string())
                .unwrap_or_default(),
        )]);
        page.add(&|w| heading.to_writer(w));
        let sub_man = clap_mangen::Man::new(sub.clone()).section(section);
        let mut options = Vec::new();
        sub_man
            .render_options_section(&mut options)
            .expect("render options");
        let options = String::from_utf8(options).expect("roff is UTF-8");
        let options = options.replace(
            ".SH OPTIONS",
            &format!(".SH {} OPTIONS", sub.get_name().to_uppercase()),
        );
        page.add(&|w| w.write_all(options.as_bytes()));
    }
    let mut extra = Roff::new();
    examples_and_see_also(&mut extra, man::EXAMPLES, man::SEE_ALSO);
    page.add(&|w| extra.to_writer(w));
    page.add(&|w| man.render_version_section(w));
    page.0
}

/// EXAMPLES (command, what it does), then SEE ALSO: the pages and the admin guide.
fn examples_and_see_also(roff: &mut roff::Roff, examples: &[(&str, &str)], pages: &[&str]) {
    use roff::{bold, italic, roman};
    roff.control("SH", ["EXAMPLES"]);
    for (command, meaning) in examples {
        roff.control("TP", [])
            .text([bold(*command)])
            .text([roman(*meaning)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    let mut see_also = Vec::new();
    for (i, page) in pages.iter().enumerate() {
        let (name, section) = page.split_once('(').expect("NAME(SECTION)");
        if i > 0 {
            see_also.push(roman(", "));
        }
        see_also.extend([bold(name), roman(format!("({section}"))]);
    }
    see_also.push(roman(
        ". The admin guide (the units, every recipe, troubleshooting): ",
    ));
    see_also.push(italic(fortune_server::cli::man::ADMIN_GUIDE));
    see_also.push(roman(", with the other guides beside it."));
    roff.text(see_also);
}

/// A page put together from clap_mangen's and our own sections: each
/// renders roff's two-line preamble, and only the first is kept.
struct Pieces(Vec<u8>, usize);

impl Pieces {
    fn new(man: &clap_mangen::Man) -> Pieces {
        let mut page = Vec::new();
        man.render_title(&mut page).expect("render title");
        let preamble_len = page
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(1)
            .map_or(0, |(i, _)| i + 1);
        Pieces(page, preamble_len)
    }

    fn add(&mut self, render: &dyn Fn(&mut dyn std::io::Write) -> std::io::Result<()>) {
        let mut out = Vec::new();
        render(&mut out).expect("render man page");
        self.0.extend_from_slice(&out[self.1..]);
    }
}

/// fortune-client(1): its own NAME, and SEE ALSO names only pages that ship.
#[test]
fn client_page_names_itself_and_only_shipped_pages() {
    let page = String::from_utf8(client_page(
        fortune_server::client::cli::ClientCli::command(),
        "1",
    ))
    .expect("UTF-8");
    let name = page
        .split(".SH NAME\n")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .expect("a NAME line");
    assert!(name.starts_with("fortune\\-client \\- get fortunes"), "{name}");
    for absent in [
        "fortune\\-client\\-bench(1)",
        "fortune\\-client\\-help(1)",
        ".SH SUBCOMMANDS",
    ] {
        assert!(!page.contains(absent), "fortune-client(1) names {absent}");
    }
    for section in [".SH EXAMPLES", "SEE ALSO", "BENCH COMMAND", ".SH BENCH OPTIONS"] {
        assert!(page.contains(section), "fortune-client(1) lacks {section}");
    }
    assert!(page.contains("\\-\\-clients"), "bench's options are missing");
}

/// Compares (or, with REGENERATE=1, rewrites) every generated file, and
/// finds files no listed command generates any more (REGENERATE=1 removes them).
#[test]
fn man_pages_and_completions_are_current() {
    let dir = generated_dir();
    let regenerate = std::env::var_os("REGENERATE").is_some_and(|v| v == "1");
    let generated = generate();
    let mut stale = Vec::new();
    for (file, contents) in &generated {
        let path = dir.join(file);
        if regenerate {
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("create packaging/generated");
            std::fs::write(&path, contents).expect("write generated file");
        } else if std::fs::read(&path).ok().as_deref() != Some(contents.as_slice()) {
            stale.push(file.clone());
        }
    }
    let expected: BTreeSet<&String> = generated.iter().map(|(file, _)| file).collect();
    for file in files_under(&dir) {
        if !expected.contains(&file) {
            if regenerate {
                std::fs::remove_file(dir.join(&file)).expect("remove a stale generated file");
            } else {
                stale.push(file);
            }
        }
    }
    assert!(
        stale.is_empty(),
        "packaging/generated/ is not what the clap definitions give for {stale:?}: \
         run `REGENERATE=1 cargo test --release --test docs` and commit the result"
    );
}

/// Paths of the files under `root`, relative to it.
fn files_under(root: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read packaging/generated") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let rel = path.strip_prefix(root).expect("under packaging/generated");
                files.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    files
}

/// Each binary target (src/main.rs and src/bin/*.rs) has its line in COMMANDS.
#[test]
fn every_binary_has_docs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut binaries = BTreeSet::from([env!("CARGO_PKG_NAME").to_string()]);
    if let Ok(entries) = std::fs::read_dir(root.join("src/bin")) {
        for entry in entries {
            let path = entry.expect("directory entry").path();
            // src/bin/NAME.rs or src/bin/NAME/main.rs
            binaries.insert(
                path.file_stem()
                    .expect("a file name")
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    let documented: BTreeSet<String> = COMMANDS
        .iter()
        .map(|(command, _)| command().get_name().to_string())
        .collect();
    assert_eq!(
        documented, binaries,
        "add the missing binary's clap command to COMMANDS in tests/docs.rs"
    );
}

/// docs/reference.md lists every journal MESSAGE_ID the service logs with.
#[test]
fn message_ids_are_documented() {
    let reference = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reference.md"))
        .expect("read docs/reference.md");
    for (name, id) in fortune_server::logging::id::ALL {
        assert!(
            reference.contains(&format!("| `{id}` |")),
            "docs/reference.md's journal table lacks {name} ({id})"
        );
    }
}

fn read_doc(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// docs/reference.md's row for `--long` in the table after `section`, its
/// cells without backticks.
fn reference_row(reference: &str, section: &str, long: &str) -> Option<Vec<String>> {
    let table = reference.split(section).nth(1)?.split("\n## ").next()?;
    table
        .lines()
        .find(|l| l.starts_with(&format!("| `--{long} ")) || l.starts_with(&format!("| `--{long}`")))
        .map(|l| {
            l.replace('`', "")
                .split(" | ")
                .map(|c| c.trim_matches([' ', '|']).to_string())
                .collect()
        })
}

/// Every option of fortune-server has its row in docs/reference.md, with
/// clap's variable and default, and every row is an option.
#[test]
fn reference_lists_every_option_as_clap_defines_it() {
    let reference = read_doc("docs/reference.md");
    let mut cmd = fortune_server::cli::Cli::command();
    cmd.build();
    let mut problems = Vec::new();
    let mut longs = BTreeSet::new();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        longs.insert(long.to_string());
        let Some(row) = reference_row(&reference, "## Command line", long) else {
            problems.push(format!("--{long} has no row"));
            continue;
        };
        let var = arg
            .get_env()
            .map(|v| v.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !row[1].starts_with(&var) {
            problems.push(format!("--{long}: variable {:?}, clap says {var}", row[1]));
        }
        let default = match arg.get_action() {
            clap::ArgAction::SetTrue => Some("off".to_string()),
            _ => arg
                .get_default_values()
                .first()
                .map(|d| d.to_string_lossy().into_owned()),
        };
        if let Some(default) = default.filter(|d| row[2] != *d) {
            problems.push(format!("--{long}: default {:?}, clap says {default}", row[2]));
        }
    }
    let section = reference.split("## Command line").nth(1).unwrap_or_default();
    for line in section.split("\n## ").next().unwrap_or_default().lines() {
        let Some(rest) = line.strip_prefix("| `--") else {
            continue;
        };
        let long: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        if !longs.contains(&long) {
            problems.push(format!("a row for --{long}, which fortune-server does not have"));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/reference.md's option table and the clap definitions (src/cli.rs) disagree:\n  {}",
        problems.join("\n  ")
    );
}

/// Where a fact is said.
enum Place {
    /// `fortune-server --help`, the text above the options.
    About,
    /// The help of one option of fortune-server (also its man page entry).
    Help(&'static str),
    /// The option's row in docs/reference.md.
    Row(&'static str),
    /// fortune-server(8)'s ENVIRONMENT entry that names this variable.
    Environment(&'static str),
    /// A whole file.
    Doc(&'static str),
}

/// Facts said in several places: each must say it (in these words,
/// backticks aside), so a correction in one place cannot leave another behind.
const SAID: &[(&str, &[Place])] = &[
    (
        "being written at once",
        &[Place::Help("max-connections"), Place::Row("max-connections")],
    ),
    (
        "do not count",
        &[Place::Help("max-connections"), Place::Row("max-connections")],
    ),
    (
        "each serve many connections",
        &[Place::About, Place::Doc("docs/admin.md")],
    ),
    (
        "names the connection",
        &[
            Place::Help("protocol"),
            Place::Row("protocol"),
            Place::Environment("LISTEN_FDNAMES"),
        ],
    ),
];

/// Claims the code no longer bears out: said nowhere.
const RETRACTED: &[&str] = &[
    "one per connection",
    "a thread each",
    "within 2x",
    "Connections served at once",
    "--max-connections (512) served at once",
    "do not slow anyone",
];

fn said_in(place: &Place, reference: &str) -> String {
    let mut cmd = fortune_server::cli::Cli::command();
    cmd.build();
    let help = |long: &str| {
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(long))
            .unwrap_or_else(|| panic!("no option --{long}"));
        arg.get_long_help()
            .or(arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default()
    };
    let text = match place {
        Place::About => cmd.get_long_about().map(|h| h.to_string()).unwrap_or_default(),
        Place::Help(long) => help(long),
        Place::Row(long) => reference_row(reference, "## Command line", long)
            .unwrap_or_else(|| panic!("docs/reference.md has no row for --{long}"))
            .join(" | "),
        Place::Environment(var) => fortune_server::cli::man::ENVIRONMENT
            .iter()
            .find(|(vars, _)| vars.contains(var))
            .map(|(_, meaning)| meaning.to_string())
            .unwrap_or_else(|| panic!("no ENVIRONMENT entry for {var}")),
        Place::Doc(path) => read_doc(path),
    };
    text.replace('`', "")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn facts_said_twice_agree_and_retracted_ones_are_gone() {
    let reference = read_doc("docs/reference.md");
    let mut problems = Vec::new();
    for (fact, places) in SAID {
        for place in *places {
            if !said_in(place, &reference).contains(fact) {
                let name = match place {
                    Place::About => "fortune-server --help (above the options)".to_string(),
                    Place::Help(long) => format!("--{long}'s help (src/cli.rs)"),
                    Place::Row(long) => format!("docs/reference.md's row for --{long}"),
                    Place::Environment(var) => format!("the man page's {var} (src/cli.rs, man)"),
                    Place::Doc(path) => path.to_string(),
                };
                problems.push(format!("{name} does not say {fact:?}"));
            }
        }
    }
    let mut texts: Vec<(String, String)> = Vec::new();
    for (command, _) in COMMANDS {
        let mut cmd = command();
        texts.push((
            format!("{} --help", cmd.get_name()),
            cmd.render_long_help().to_string(),
        ));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["docs", "."] {
        for entry in std::fs::read_dir(root.join(dir)).expect("read a docs directory") {
            let path = entry.expect("a directory entry").path();
            if path.extension().is_some_and(|e| e == "md") {
                let text = std::fs::read_to_string(&path).expect("read a document");
                texts.push((
                    path.strip_prefix(root).unwrap_or(&path).display().to_string(),
                    text,
                ));
            }
        }
    }
    texts.push(("tests/abuse.rs".into(), read_doc("tests/abuse.rs")));
    for (name, text) in &texts {
        let flat = text
            .replace('`', "")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        for claim in RETRACTED {
            if flat.contains(claim) {
                problems.push(format!(
                    "{name} says {claim:?}, which the code no longer bears out"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "the docs and the code disagree:\n  {}",
        problems.join("\n  ")
    );
}
