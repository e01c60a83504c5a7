//! Hostile fortune directories (issue 19): what a collection may hold in
//! memory, which members are read at all, a broken member among good ones,
//! and `--max-entry` at its exact length. Each test runs the service on
//! files it makes, with the caps of `src/fortunes/limits.rs`.

mod util;

use std::collections::HashSet;
use std::path::Path;

use util::{Cmd, Running, Scratch, dir_with, fetch, figure, file_with, indexed_file, serving, serving_from};

fn utf8(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 scratch path")
}

/// The "Serving N fortunes" count of the log's last such line.
fn served_count(log: &str, prefix: &str) -> usize {
    log.lines()
        .rev()
        .filter_map(|l| l.split(prefix).nth(1))
        .find_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix:?} in the log:\n{log}"))
}

/// Reloads (SIGHUP) and waits for the `n`th "reloaded" line.
fn reload(server: &Running, n: usize) {
    server.signal("HUP");
    let end = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while server.log_count("reloaded") < n && server.log_count("reload failed") == 0 {
        if std::time::Instant::now() > end {
            server.fail("no reload within 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A directory `c` of 200 members, `m000` written by `write(dir, name)`
/// and 199 links to it and its index, and one good file of three entries.
fn two_hundred_members(write: impl Fn(&Path, &str)) -> Scratch {
    let dir = dir_with(&[]);
    let c = dir.join("c");
    std::fs::create_dir(&c).expect("mkdir");
    write(&c, "m000");
    for i in 1..200 {
        for ext in ["", ".dat"] {
            std::os::unix::fs::symlink(format!("m000{ext}"), c.join(format!("m{i:03}{ext}")))
                .expect("symlink");
        }
    }
    indexed_file(&c, "zgood", &["good one", "good two", "good three"]);
    dir
}

/// Starts on `dir/c`, reloads twice, and returns the log and the peak RSS in MiB.
fn load_and_reload(dir: &Path, test: &str) -> (String, u64) {
    let (server, addr) = serving(&["--fortunes", utf8(&dir.join("c"))]);
    let served = fetch(addr);
    assert!(
        ["a", "good one", "good two", "good three"].contains(&served.as_str()),
        "{served:?}"
    );
    reload(&server, 1);
    reload(&server, 2);
    let peak = server.peak_rss_kib() / 1024;
    figure(
        test,
        &format!("peak RSS {peak} MiB after a start and two reloads (cap 128 MiB)"),
    );
    let log = server.stop().assert_code(0).stderr.clone();
    (log, peak)
}

#[test]
fn a_directory_of_empty_megabyte_indexes_stays_small_and_counts_what_it_serves() {
    // The case: a 2-byte file and an index of 262,137 zero offsets
    // (then the end, 2): 52 million entries of one, and all the same.
    let dir = two_hundred_members(|dir, name| {
        let count: u32 = 262_137;
        let mut dat = Vec::new();
        for word in [2, count, 2, 2, 0] {
            dat.extend_from_slice(&u32::to_be_bytes(word));
        }
        dat.extend_from_slice(&[b'%', 0, 0, 0]);
        dat.resize(24 + 4 * count as usize, 0);
        dat.extend_from_slice(&2u32.to_be_bytes());
        std::fs::write(dir.join(name), b"a\n").expect("write");
        std::fs::write(dir.join(format!("{name}.dat")), dat).expect("write");
    });
    let (log, peak) = load_and_reload(&dir, "200 empty 1 MiB indexes");
    assert!(peak < 128, "peak RSS {peak} MiB:\n{log}");
    // One entry in each member ("a"), the good file's three.
    assert_eq!(served_count(&log, "Serving "), 203, "{log}");
    assert_eq!(served_count(&log, "reloaded "), 203, "{log}");
}

#[test]
fn a_directory_of_full_megabyte_indexes_stops_at_the_collection_cap() {
    // 262,137 real one-letter entries in each member: 2 MiB of table each.
    let dir = two_hundred_members(|dir, name| indexed_file(dir, name, &vec!["a"; 262_137]));
    let (log, peak) = load_and_reload(&dir, "200 full 1 MiB indexes");
    assert!(peak < 128, "peak RSS {peak} MiB:\n{log}");
    let count = served_count(&log, "Serving ");
    assert!(
        count < 20 * 262_137,
        "{count} entries served: the cap did not hold\n{log}"
    );
    // One warning a load for all that the cap left out.
    assert_eq!(log.matches("reached their cap of 32 MiB").count(), 3, "{log}");
    assert_eq!(log.matches("; left out").count(), 0, "{log}");
}

#[test]
fn members_are_read_only_inside_their_directory() {
    let dir = dir_with(&[("secret/s", b"sibling secret\n%\n")]);
    let top = dir.join("top");
    std::fs::create_dir(&top).expect("mkdir");
    indexed_file(&top, "good", &["good one", "good two"]);
    indexed_file(&dir.join("secret"), "s", &["sibling secret"]);
    let link =
        |target: &str, name: &str| std::os::unix::fs::symlink(target, top.join(name)).expect("symlink");
    // The service's environment and memory map, each with any index beside it.
    link("/proc/self/environ", "environ");
    link("good.dat", "environ.dat");
    link("/proc/self/maps", "maps");
    link("good.dat", "maps.dat");
    link("../secret/s", "sibling");
    link("../secret/s.dat", "sibling.dat");
    // off/ leading back to the directory: a loop.
    link(".", "off");
    let (server, addr) = serving_from(Cmd::server().env("FORTUNE_SECRET_TOKEN", "hunter2").args([
        "--offensive",
        "--fortunes",
        utf8(&top),
    ]));
    let good: HashSet<String> = ["good one", "good two"].map(String::from).into();
    for _ in 0..20 {
        let fortune = fetch(addr);
        assert!(good.contains(&fortune), "served {fortune:?}\n{}", server.stderr());
    }
    let log = server.stop().assert_code(0).stderr.clone();
    assert_eq!(served_count(&log, "Serving "), 2, "{log}");
    assert_eq!(log.matches("a file of the kernel").count(), 2, "{log}");
    assert_eq!(log.matches("outside the fortune directory").count(), 1, "{log}");
    assert_eq!(log.matches("a symlink loop").count(), 1, "{log}");
    // off -> .. would list the siblings: left out too.
    std::fs::remove_file(top.join("off")).expect("rm");
    link("..", "off");
    let (server, addr) = serving(&["--offensive", "--fortunes", utf8(&top)]);
    for _ in 0..10 {
        assert!(good.contains(&fetch(addr)), "{}", server.stderr());
    }
    let log = server.stop().assert_code(0).stderr.clone();
    assert_eq!(log.matches("outside the fortune directory").count(), 2, "{log}");
    // Named on its own, a file of the kernel is refused all the same.
    let done = Cmd::server()
        .args(["--listen", "127.0.0.1:0", "--fortunes", "/proc/self/environ"])
        .run(std::time::Duration::from_secs(10));
    done.assert_code(1).assert_stderr_has("a file of the kernel");
}

#[test]
fn one_broken_member_is_left_out_and_the_rest_served() {
    let dir = dir_with(&[
        // Not UTF-8, with an index that does not fit it.
        ("latin1", b"caf\xe9\n%\n"),
        ("latin1.dat", b"not an index"),
    ]);
    indexed_file(&dir, "good", &["good one", "good two"]);
    // A member that is a link to itself.
    std::os::unix::fs::symlink("loop", dir.join("loop")).expect("symlink");
    std::fs::copy(dir.join("good.dat"), dir.join("loop.dat")).expect("copy");
    let (server, addr) = serving(&["--fortunes", utf8(&dir)]);
    let good: HashSet<String> = ["good one", "good two"].map(String::from).into();
    assert!(good.contains(&fetch(addr)));
    let log = server.stop().assert_code(0).stderr.clone();
    assert_eq!(served_count(&log, "Serving "), 2, "{log}");
    assert_eq!(log.matches("; left out").count(), 2, "one warning each:\n{log}");
    // With nothing servable left, the start fails and says why.
    for name in ["good", "good.dat"] {
        std::fs::remove_file(dir.join(name)).expect("rm");
    }
    let done = Cmd::server()
        .args(["--listen", "127.0.0.1:0", "--fortunes", utf8(&dir)])
        .run(std::time::Duration::from_secs(10));
    done.assert_code(1)
        .assert_stderr_has("holds no servable fortune file (2 left out");
}

#[test]
fn max_entry_admits_exactly_its_length_indexed_or_not() {
    for max in [8192, 100] {
        let exact = "x".repeat(max);
        let over = "y".repeat(max + 1);
        let entries = ["short", exact.as_str(), over.as_str()];
        let dir = dir_with(&[]);
        indexed_file(&dir, "indexed", &entries);
        let plain = file_with(entries.join("\n%\n").as_bytes());
        let max_arg = max.to_string();
        for path in [dir.join("indexed"), plain.to_path_buf()] {
            let (server, addr) = serving(&["--max-entry", &max_arg, "--fortunes", utf8(&path)]);
            // Two servable entries, never the same twice in a row: they alternate.
            let served: HashSet<usize> = (0..4).map(|_| fetch(addr).len()).collect();
            assert_eq!(served, [5, max].into(), "{}: --max-entry {max}", path.display());
            let log = server.stop().assert_code(0).stderr.clone();
            assert!(log.contains("1 entries longer than"), "{log}");
        }
    }
}

#[test]
fn a_member_the_service_cannot_read_is_left_out() {
    // The service as nobody; the member root's and 0600.
    if !util::require_root() || !util::require("setpriv") {
        return;
    }
    let dir = dir_with(&[]);
    indexed_file(&dir, "good", &["good one", "good two"]);
    indexed_file(&dir, "private", &["private one"]);
    std::fs::set_permissions(
        dir.join("private"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    let (server, addr) = serving_from(
        Cmd::new("setpriv")
            .args([
                "--reuid",
                "65534",
                "--regid",
                "65534",
                "--clear-groups",
                util::SERVER,
            ])
            .args(["--fortunes", utf8(&dir)]),
    );
    let good: HashSet<String> = ["good one", "good two"].map(String::from).into();
    assert!(good.contains(&fetch(addr)), "{}", server.stderr());
    let log = server.stop().assert_code(0).stderr.clone();
    assert_eq!(served_count(&log, "Serving "), 2, "{log}");
    assert_eq!(log.matches("Permission denied").count(), 1, "{log}");
}

#[test]
fn three_hundred_broken_members_log_a_dozen_lines() {
    let dir = dir_with(&[("b000", b"caf\xe9\n%\n"), ("b000.dat", b"not an index")]);
    for i in 1..300 {
        for ext in ["", ".dat"] {
            std::os::unix::fs::symlink(format!("b000{ext}"), dir.join(format!("b{i:03}{ext}")))
                .expect("symlink");
        }
    }
    indexed_file(&dir, "good", &["good one", "good two"]);
    let (server, addr) = serving(&["--fortunes", utf8(&dir)]);
    fetch(addr);
    let log = server.stop().assert_code(0).stderr.clone();
    // Two problems each (the index, then the text): 10 lines and one count.
    let warnings = log.lines().filter(|l| l.contains(": warn:")).count();
    assert_eq!(warnings, 11, "{log}");
    assert!(
        log.contains("590 more warnings about fortune files (logged at debug level)"),
        "{log}"
    );
}
