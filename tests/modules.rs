//! The module graph of `src/`: no file uses another that uses it back,
//! directly or through others, and the top-level modules use each other
//! exactly as the map in docs/development.md says. Reads the sources as text
//! (no build of them): `use` trees and `crate::`/`super::`/`self::`/child
//! paths, outside comments, strings and `#[cfg(test)] mod` blocks. A parent
//! (`lib.rs`, `mod.rs`) re-exporting a child's items with `pub use` is its
//! interface, not a use of the child.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// A module path: `[]` is the crate root (`src/lib.rs`).
type Module = Vec<String>;

/// A module's file (`src/...`, for messages) and its text.
struct File {
    path: String,
    source: String,
}

/// Every module file of the library (not `main.rs` or `src/bin/`: they are
/// crates of their own that only use the library).
fn module_files(root: &Path) -> BTreeMap<Module, File> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src/") {
            let path = entry.expect("a directory entry").path();
            let rel = path.strip_prefix(root).expect("under src/").to_path_buf();
            if path.is_dir() {
                if rel != Path::new("bin") {
                    dirs.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || rel == Path::new("main.rs") {
                continue;
            }
            let mut parts: Vec<String> = rel
                .with_extension("")
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
                parts.pop();
            }
            let source = std::fs::read_to_string(&path).expect("read a source file");
            let path = format!("src/{}", rel.display());
            out.insert(parts, File { path, source });
        }
    }
    out
}

/// The code only: comments, string and char literals blanked, `#[cfg(test)]
/// mod NAME { .. }` blocks dropped.
fn code_of(source: &str) -> String {
    let b: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !ident_char(b.get(i.wrapping_sub(1)))
        {
            // A raw string: r"..", r#".."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            while j < b.len() && !(b[j] == '"' && (1..=hashes).all(|k| b.get(j + k) == Some(&'#'))) {
                j += 1;
            }
            i = j + 1 + hashes;
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                i += if b[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && (b.get(i + 2) == Some(&'\'') || next == Some('\\')) {
            // A char literal ('x', '\n', '\u{..}'); a lifetime has no closing quote.
            i += 1;
            while i < b.len() && b[i] != '\'' {
                i += if b[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    drop_test_modules(&out)
}

fn ident_char(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || *c == '_')
}

fn drop_test_modules(code: &str) -> String {
    let mut out = code.to_string();
    while let Some(at) = out.find("#[cfg(test)]") {
        let after = &out[at + "#[cfg(test)]".len()..];
        let rest = after.trim_start();
        let Some(body) = rest.strip_prefix("mod ") else {
            out.replace_range(at..at + "#[cfg(test)]".len(), "");
            continue;
        };
        let open = body.find(['{', ';']).expect("a module body or `;`");
        let start = at + "#[cfg(test)]".len() + (after.len() - rest.len()) + 4 + open;
        if out.as_bytes()[start] == b';' {
            // A test-only file module: its file is read on its own.
            out.replace_range(at..=start, "");
            continue;
        }
        let mut depth = 0;
        let mut end = start;
        for (k, ch) in out[start..].char_indices() {
            match ch {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = start + k;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.replace_range(at..=end, "");
    }
    out
}

#[derive(Debug, PartialEq)]
enum Tok {
    Ident(String),
    Path, // ::
    Punct(char),
}

fn tokens(code: &str) -> Vec<Tok> {
    let b: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_alphabetic() || c == '_' {
            let start = i;
            while ident_char(b.get(i)) {
                i += 1;
            }
            out.push(Tok::Ident(b[start..i].iter().collect()));
        } else if c == ':' && b.get(i + 1) == Some(&':') {
            out.push(Tok::Path);
            i += 2;
        } else if c.is_numeric() {
            while ident_char(b.get(i)) {
                i += 1;
            }
        } else {
            if !c.is_whitespace() {
                out.push(Tok::Punct(c));
            }
            i += 1;
        }
    }
    out
}

/// The paths one file names, each with whether a `pub use` names it.
fn paths(code: &str) -> Vec<(Vec<String>, bool)> {
    let toks = tokens(code);
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if toks[i] == Tok::Ident("use".into()) {
            let public = i > 0 && toks[i - 1] == Tok::Ident("pub".into());
            i += 1;
            let mut leaves = Vec::new();
            use_tree(&toks, &mut i, Vec::new(), &mut leaves);
            out.extend(leaves.into_iter().map(|p| (p, public)));
            continue;
        }
        let starts_path = matches!(toks.get(i + 1), Some(Tok::Path)) && (i == 0 || toks[i - 1] != Tok::Path);
        if let (Tok::Ident(first), true) = (&toks[i], starts_path) {
            let mut path = vec![first.clone()];
            let mut j = i + 1;
            while toks.get(j) == Some(&Tok::Path) {
                match toks.get(j + 1) {
                    Some(Tok::Ident(s)) => path.push(s.clone()),
                    _ => break,
                }
                j += 2;
            }
            out.push((path, false));
            i = j;
            continue;
        }
        i += 1;
    }
    out
}

/// Flattens one `use` tree (`a::b::{c, d::{self, e}}`) from `toks[*i]`.
fn use_tree(toks: &[Tok], i: &mut usize, mut prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    loop {
        match toks.get(*i) {
            Some(Tok::Ident(s)) if s == "as" => {
                *i += 2;
            }
            Some(Tok::Ident(s)) => {
                if s != "self" || prefix.is_empty() {
                    prefix.push(s.clone());
                }
                *i += 1;
            }
            Some(Tok::Path) => *i += 1,
            Some(Tok::Punct('{')) => {
                *i += 1;
                while !matches!(toks.get(*i), Some(Tok::Punct('}')) | None) {
                    use_tree(toks, i, prefix.clone(), out);
                    if toks.get(*i) == Some(&Tok::Punct(',')) {
                        *i += 1;
                    }
                }
                *i += 1;
                return;
            }
            Some(Tok::Punct('*')) => *i += 1,
            _ => {
                out.push(prefix);
                // `;` ends the item; `,`/`}` are the caller's.
                if toks.get(*i) == Some(&Tok::Punct(';')) {
                    *i += 1;
                }
                return;
            }
        }
    }
}

/// The module of `modules` that `path`, named in module `at`, points into.
fn resolve(at: &Module, path: &[String], modules: &BTreeSet<Module>) -> Option<Module> {
    let (mut base, mut rest) = match path.first()?.as_str() {
        "crate" => (Vec::new(), &path[1..]),
        "self" => (at.clone(), &path[1..]),
        "super" => {
            let mut base = at.clone();
            let mut rest = path;
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
            (base, rest)
        }
        first => {
            let child: Module = at.iter().cloned().chain([first.to_string()]).collect();
            if !modules.contains(&child) {
                return None;
            }
            (at.clone(), path)
        }
    };
    while let Some(seg) = rest.first() {
        let deeper: Module = base.iter().cloned().chain([seg.clone()]).collect();
        if !modules.contains(&deeper) {
            break;
        }
        base = deeper;
        rest = &rest[1..];
    }
    Some(base)
}

/// Which module uses which, file by file.
fn graph(files: &BTreeMap<Module, File>) -> BTreeMap<Module, BTreeSet<Module>> {
    let modules: BTreeSet<Module> = files.keys().cloned().collect();
    let mut out = BTreeMap::new();
    for (m, file) in files {
        let code = code_of(&file.source);
        let mut uses = BTreeSet::new();
        for (path, public) in paths(&code) {
            let Some(target) = resolve(m, &path, &modules) else {
                continue;
            };
            let reexport = public && target.len() > m.len() && target.starts_with(m);
            if target != *m && !reexport {
                uses.insert(target);
            }
        }
        out.insert(m.clone(), uses);
    }
    out
}

/// A circle, if there is one: its modules in order, the first again at the end.
fn circle(graph: &BTreeMap<Module, BTreeSet<Module>>) -> Option<Vec<Module>> {
    // Depth-first; a module met again while still on the stack closes a circle.
    fn visit(
        m: &Module,
        graph: &BTreeMap<Module, BTreeSet<Module>>,
        stack: &mut Vec<Module>,
        done: &mut BTreeSet<Module>,
    ) -> Option<Vec<Module>> {
        if let Some(at) = stack.iter().position(|s| s == m) {
            let mut found = stack[at..].to_vec();
            found.push(m.clone());
            return Some(found);
        }
        if done.contains(m) {
            return None;
        }
        stack.push(m.clone());
        for next in graph.get(m).into_iter().flatten() {
            if let Some(found) = visit(next, graph, stack, done) {
                return Some(found);
            }
        }
        stack.pop();
        done.insert(m.clone());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|m| visit(m, graph, &mut Vec::new(), &mut done))
}

fn src() -> BTreeMap<Module, File> {
    module_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

#[test]
fn no_file_of_src_uses_itself_through_others() {
    let files = src();
    if let Some(found) = circle(&graph(&files)) {
        let shown: Vec<&str> = found.iter().map(|m| files[m].path.as_str()).collect();
        panic!(
            "a circle of imports: {}. Each file of src/ may use only files that do not use it back, \
             directly or through others: move what both need into a module of its own (see the module \
             map in docs/development.md)",
            shown.join(" -> ")
        );
    }
}

/// The map in docs/development.md: one line per top-level module, `name
/// uses...`, each using only modules on lines below it.
fn map() -> Vec<(String, Vec<String>)> {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/development.md"))
        .expect("read docs/development.md");
    let (_, after) = doc
        .split_once("<!-- module map -->")
        .expect("docs/development.md has a `<!-- module map -->` block");
    let block = after
        .split("```")
        .nth(1)
        .expect("a fenced block after the module map marker");
    block
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut words = l.split_whitespace().map(|w| w.trim_end_matches(',').to_string());
            let module = words.next().unwrap_or_default();
            (module, words.filter(|w| w != "->").collect())
        })
        .collect()
}

#[test]
fn the_module_map_in_development_md_is_the_code() {
    let files = src();
    let graph = graph(&files);
    let top = |m: &Module| m.first().cloned().unwrap_or_else(|| "lib".into());
    let mut code: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, uses) in &graph {
        let entry = code.entry(top(m)).or_default();
        entry.extend(uses.iter().map(top).filter(|u| *u != top(m)));
    }
    let map = map();
    let mut problems = Vec::new();
    for (at, (module, uses)) in map.iter().enumerate() {
        let below: BTreeSet<&String> = map[at + 1..].iter().map(|(m, _)| m).collect();
        for u in uses {
            if !below.contains(u) {
                problems.push(format!(
                    "the map has {module} use {u}, which is not on a line below it (the map must stay a \
                     ladder: each module uses only modules below it, so no circle can form)"
                ));
            }
        }
        match code.get(module) {
            None => problems.push(format!(
                "the map names {module}, which src/ does not have: remove its line"
            )),
            Some(real) => {
                let listed: BTreeSet<String> = uses.iter().cloned().collect();
                for u in real.difference(&listed) {
                    problems.push(format!(
                        "src/ has {module} use {u}, which the map does not list: add it to {module}'s line \
                         (if {u} is below it) or take the use out"
                    ));
                }
                for u in listed.difference(real) {
                    problems.push(format!(
                        "the map has {module} use {u}, which it does not: remove it"
                    ));
                }
            }
        }
    }
    for module in code.keys() {
        if !map.iter().any(|(m, _)| m == module) {
            problems.push(format!(
                "src/ has a module {module} that the map does not: add a line for it, below every \
                 module that uses it"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/development.md's module map and src/ disagree:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_reader_sees_what_rust_sees() {
    let code = code_of(
        "use crate::a::{self, b::C, d as e};\n// use crate::x;\nlet s = \"crate::y\";\n\
         pub use child::Thing;\nfn f() { super::g(); '\\''; }\n#[cfg(test)]\nmod tests { use crate::z; }\n",
    );
    let got: Vec<(String, bool)> = paths(&code)
        .into_iter()
        .map(|(p, public)| (p.join("::"), public))
        .collect();
    let want = [
        ("crate::a", false),
        ("crate::a::b::C", false),
        ("crate::a::d", false),
        ("child::Thing", true),
        ("super::g", false),
    ];
    let want: Vec<(String, bool)> = want.iter().map(|(p, public)| (p.to_string(), *public)).collect();
    assert_eq!(got, want);
    let modules: BTreeSet<Module> = [
        vec![],
        vec!["a".into()],
        vec!["a".into(), "b".into()],
        vec!["c".into()],
    ]
    .into_iter()
    .collect();
    let at: Module = vec!["a".into(), "b".into()];
    let r = |p: &str| {
        resolve(
            &at,
            &p.split("::").map(String::from).collect::<Vec<_>>(),
            &modules,
        )
    };
    assert_eq!(r("crate::c::X"), Some(vec!["c".into()]));
    assert_eq!(r("super::Y"), Some(vec!["a".into()]));
    assert_eq!(r("super::super::c"), Some(vec!["c".into()]));
    assert_eq!(r("std::fmt"), None);
}
