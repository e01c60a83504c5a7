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
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd.clone())
                .section(*section)
                .render(&mut page)
                .expect("render man page");
            page
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
    extra.control("SH", ["SEE ALSO"]);
    let mut see_also = Vec::new();
    for (i, page) in man::SEE_ALSO.iter().enumerate() {
        let (name, section) = page.split_once('(').expect("NAME(SECTION)");
        if i > 0 {
            see_also.push(roman(", "));
        }
        see_also.extend([bold(name), roman(format!("({section}"))]);
    }
    extra.text(see_also);

    // Each piece renders roff's two-line preamble: keep only the first.
    let mut page = Vec::new();
    man.render_title(&mut page).expect("render title");
    let preamble_len = page
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(1)
        .map_or(0, |(i, _)| i + 1);
    let mut piece = |render: &dyn Fn(&mut Vec<u8>) -> std::io::Result<()>| {
        let mut out = Vec::new();
        render(&mut out).expect("render man page");
        page.extend_from_slice(&out[preamble_len..]);
    };
    piece(&|w| man.render_name_section(w));
    piece(&|w| synopsis.to_writer(w));
    piece(&|w| man.render_description_section(w));
    piece(&|w| man.render_options_section(w));
    piece(&|w| extra.to_writer(w));
    piece(&|w| man.render_version_section(w));
    page
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
