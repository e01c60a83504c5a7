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
/// each option's argument, then EXIT STATUS, ENVIRONMENT, FILES and SEE ALSO
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

    let mut extra = Roff::new();
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
    for (vars, meaning) in man::ENVIRONMENT {
        extra
            .control("TP", [])
            .text([bold(*vars)])
            .text([roman(*meaning)]);
    }
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
