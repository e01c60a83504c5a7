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
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd.clone())
            .section(*section)
            .render(&mut page)
            .expect("render man page");
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
