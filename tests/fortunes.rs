//! Fortune collections end to end: Debian's fortune-mod files through the
//! real Qt reader, directories, offensive ones, broken files and indexes,
//! live reload, `--daily`.

mod util;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use fortune_server::fortunes::lists;

use util::serving as listen;
use util::{
    Cmd, Running, Scratch, dir_with, fetch, fifo, figure, file_with, free_port, indexed_file, loopback,
    qt_read, require, strfile,
};

const DEBIAN: &str = "/usr/share/games/fortunes";

/// Entries as the test reads them, independently of the server: split at
/// lines holding only `%`, trailing white space dropped, blank ones skipped.
fn split_entries(text: &str) -> Vec<String> {
    let mut entries = Vec::new();
    let mut current = String::new();
    for line in text.split_inclusive('\n') {
        if line.trim_end_matches(['\n', '\r']) == "%" {
            entries.push(std::mem::take(&mut current));
        } else {
            current.push_str(line);
        }
    }
    entries.push(current);
    entries
        .into_iter()
        .map(|e| e.trim_end().to_string())
        .filter(|e| !e.trim().is_empty())
        .collect()
}

/// Every entry of every file with a `.dat` index in `dir`.
fn indexed_entries(dir: &Path) -> HashSet<String> {
    let mut all = HashSet::new();
    for entry in std::fs::read_dir(dir).expect("read the collection") {
        let path = entry.expect("a directory entry").path();
        let mut dat = path.clone().into_os_string();
        dat.push(".dat");
        if path.is_file() && Path::new(&dat).exists() && path.extension().is_none_or(|e| e != "dat") {
            all.extend(split_entries(
                &std::fs::read_to_string(&path).expect("UTF-8 fortunes"),
            ));
        }
    }
    all
}

/// `systemd-socket-activate --accept`: one server process per connection.
fn accept_yes(args: &[&str]) -> (Running, SocketAddr) {
    accept_yes_with(&[], args)
}

/// [`accept_yes`] with more options for systemd-socket-activate (`-E VAR=VALUE`).
fn accept_yes_with(activator: &[&str], args: &[&str]) -> (Running, SocketAddr) {
    let addr = loopback(free_port());
    let listen = addr.to_string();
    let activator = Cmd::socket_activate(&[&["--accept", "-l", &listen], activator].concat())
        .args(args)
        .spawn();
    (activator, addr)
}

/// Runs the server on `path`, expecting it to stop at start.
fn refused(path: &Path) -> util::Finished {
    Cmd::server()
        .args(["--listen", "127.0.0.1:0", "--fortunes"])
        .arg(path)
        .run(Duration::from_secs(10))
}

/// Fetches `count` fortunes, each one of `entries`, and returns them.
fn serves_only(addr: SocketAddr, count: usize, entries: &HashSet<String>, what: &str) -> Vec<String> {
    let served: Vec<String> = (0..count).map(|_| fetch(addr)).collect();
    assert_all_in(&served, entries, what);
    served
}

fn assert_all_in(served: &[String], entries: &HashSet<String>, what: &str) {
    for fortune in served {
        assert!(
            entries.contains(fortune),
            "served a fortune that is not {what}: {fortune:?}"
        );
    }
}

#[test]
fn debian_collection_through_qt() {
    if !require("/usr/bin/python3") || !require(&format!("{DEBIAN}/fortunes.dat")) {
        return;
    }
    let entries = indexed_entries(Path::new(DEBIAN));
    assert!(
        entries.len() > 10_000,
        "Debian's fortunes + fortunes-min hold some 15000 entries"
    );
    let (server, addr) = listen(&["--fortunes", DEBIAN]);
    let served = qt_read(addr, "qt", 200);
    assert_all_in(&served, &entries, "an entry of the Debian collection");
    assert!(
        served.iter().collect::<HashSet<_>>().len() > 150,
        "picks are not spread: {served:?}"
    );
    server.stop().assert_code(0);

    if !require("systemd-socket-activate") {
        return;
    }
    let (activator, addr) = accept_yes(&["--fortunes", DEBIAN]);
    assert_all_in(
        &qt_read(addr, "qt", 30),
        &entries,
        "an entry of the Debian collection",
    );
    drop(activator);
}

#[test]
fn every_debian_entry_read_through_its_index_is_an_entry_of_its_file() {
    use fortune_server::fortunes::{Opening, Selection, Store};
    if !require(&format!("{DEBIAN}/fortunes.dat")) {
        return;
    }
    let entries = indexed_entries(Path::new(DEBIAN));
    let selection = Selection {
        paths: vec![PathBuf::from(DEBIAN)],
        ..Selection::default()
    };
    for opening in [Opening::Eager, Opening::Lazy] {
        let store = Store::load(&selection, opening).expect("Debian's collection loads");
        let read: HashSet<String> = (0..store.len())
            .map(|n| store.entry(n).expect("a servable entry").into_owned())
            .collect();
        assert_eq!(read, entries, "{opening:?}");
    }
}

/// A directory like fortune-mod's: two indexed files, one without an index,
/// a `.u8` link, an offensive (rot13) file and an `off/` directory.
fn mixed_directory() -> Scratch {
    let clean = "one\n%\ntwo\n%\nthree\n%\nfour\n%\nfive\n%\nsix\n";
    let dir = dir_with(&[
        ("clean", clean.as_bytes()),
        ("more", b"seven\nlines\n%\neight\n"),
        ("unindexed", b"never served\n%\n"),
        // rot13 of "rude one" and "rude two"
        ("rude", b"ehqr bar\n%\nehqr gjb\n"),
        ("off/worse", b"jbefr bar\n%\njbefr gjb\n"),
    ]);
    strfile(&dir.join("clean"), &["-s"]);
    strfile(&dir.join("more"), &["-s"]);
    strfile(&dir.join("rude"), &["-s", "-x"]);
    strfile(&dir.join("off/worse"), &["-s", "-x"]);
    std::os::unix::fs::symlink("clean", dir.join("clean.u8")).expect("symlink");
    dir
}

fn clean_entries() -> HashSet<String> {
    [
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven\nlines",
        "eight",
    ]
    .map(String::from)
    .into()
}

#[test]
fn directory_serves_indexed_files_never_offensive_ones() {
    if !require("strfile") || !require("systemd-socket-activate") {
        return;
    }
    let dir = mixed_directory();
    let dir = dir.to_str().expect("UTF-8 scratch path");
    let (server, addr) = listen(&["--fortunes", dir]);
    serves_only(addr, 60, &clean_entries(), "a clean indexed entry");
    let log = server.stop().assert_code(0).stderr.clone();
    assert!(log.contains("Serving 8 fortunes"), "{log}");

    // One process per connection opens only the file it picks.
    let (activator, addr) = accept_yes(&["--fortunes", dir]);
    serves_only(addr, 20, &clean_entries(), "a clean indexed entry");
    drop(activator);
}

#[test]
fn offensive_ones_only_when_asked_and_decoded() {
    if !require("strfile") {
        return;
    }
    let dir = mixed_directory();
    let mut allowed = clean_entries();
    allowed.extend(["rude one", "rude two", "worse one", "worse two"].map(String::from));
    let (server, addr) = listen(&["--offensive", "--fortunes", dir.to_str().expect("UTF-8")]);
    let served = serves_only(addr, 120, &allowed, "an entry, decoded");
    assert!(served.iter().any(|f| f.starts_with("rude")), "{served:?}");
    assert!(served.iter().any(|f| f.starts_with("worse")), "{served:?}");
    drop(server);

    // Named on its own, an offensive file is refused without --offensive.
    let rude = dir.join("rude");
    let done = refused(&rude);
    done.assert_code(1).assert_stderr_has("add --offensive");
    assert!(
        done.stderr.contains(rude.to_str().expect("UTF-8")),
        "{}",
        done.report()
    );
}

/// Spoils an index (its bytes) or the file it indexes.
type Corruption = fn(&mut Vec<u8>, &Path);

#[test]
fn corrupt_index_is_detected_and_the_file_read_without_it() {
    if !require("strfile") {
        return;
    }
    let entries: HashSet<String> = ["alpha", "beta", "gamma"].map(String::from).into();
    let corruptions: [(&str, Corruption); 4] = [
        ("truncated", |dat, _| dat.truncate(dat.len() - 3)),
        ("wrong version", |dat, _| dat[3] = 7),
        ("offset past the end", |dat, _| {
            let n = dat.len();
            dat[n - 1] = 0xff;
        }),
        ("file changed since strfile ran", |_, file| {
            std::fs::write(file, "alpha\n%\nbeta\n%\ngamma\n").expect("rewrite")
        }),
    ];
    for (what, corrupt) in corruptions {
        let file = file_with(b"alpha\n%\nbeta\n%\n");
        strfile(&file, &["-s"]);
        let dat_path = PathBuf::from(format!("{}.dat", file.display()));
        let mut dat = std::fs::read(&dat_path).expect("the index");
        corrupt(&mut dat, &file);
        std::fs::write(&dat_path, &dat).expect("write the index");
        let (server, addr) = listen(&["--fortunes", file.to_str().expect("UTF-8")]);
        let served: Vec<String> = (0..10).map(|_| fetch(addr)).collect();
        assert_all_in(&served, &entries, what);
        let log = server.stop().stderr;
        assert!(
            log.contains(&format!("{}: ", dat_path.display()))
                && log.contains("reading")
                && log.contains("without it"),
            "{what}: no warning about the index\n{log}"
        );
    }
}

#[test]
fn non_utf8_entry() {
    if !require("strfile") {
        return;
    }
    // Without an index the file is read whole at start: refused, naming the line.
    let file = file_with(b"fine\n%\ncaf\xe9\n%\n");
    let done = refused(&file);
    done.assert_code(1)
        .assert_stderr_has("is not UTF-8 text (line 3)");
    assert!(
        done.stderr.contains(file.to_str().expect("UTF-8")),
        "{}",
        done.report()
    );

    // With one, entries are read when picked: the bad one is skipped and logged.
    strfile(&file, &["-s"]);
    let (server, addr) = listen(&["--fortunes", file.to_str().expect("UTF-8")]);
    for _ in 0..30 {
        assert_eq!(fetch(addr), "fine");
    }
    let log = server.stop().stderr;
    assert!(log.contains("is not UTF-8, skipped"), "{log}");
}

#[test]
fn empty_files_and_directories_are_refused() {
    let empty_dir = dir_with(&[("notes.txt", b"not a fortune file")]);
    let (empty, blank) = (file_with(b""), file_with(b"%\n  \n%\n"));
    let cases = [
        (empty.path(), "holds no fortunes"),
        (blank.path(), "holds no fortunes"),
        (empty_dir.path(), "holds no fortune file"),
        (
            Path::new("/nonexistent/fortunes"),
            "cannot read fortune file /nonexistent/fortunes",
        ),
    ];
    for (path, message) in cases {
        let done = refused(path);
        done.assert_code(1).assert_stderr_has(message);
    }
}

#[test]
fn reload_under_load_loses_no_connection() {
    let file = file_with(b"old one\nold two\nold three\n");
    let (server, addr) = listen(&["--fortunes", file.to_str().expect("UTF-8")]);
    let known: HashSet<String> = [
        "old one",
        "old two",
        "old three",
        "new one",
        "new two",
        "new three",
    ]
    .map(String::from)
    .into();
    let stop = Arc::new(AtomicBool::new(false));
    // Fortunes of the old version served, and of the new.
    let versions = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, versions) = (Arc::clone(&stop), Arc::clone(&versions));
            std::thread::spawn(move || {
                let mut served = Vec::new();
                // Bounded in count and (through `stop`) in time.
                while !stop.load(Ordering::Relaxed) && served.len() < 3000 {
                    let fortune = fetch(addr);
                    versions[usize::from(fortune.starts_with("new"))].fetch_add(1, Ordering::Relaxed);
                    served.push(fortune);
                }
                served
            })
        })
        .collect();
    // Reload until 10 reloads are logged and each version was served 100
    // times (a bound only a hang reaches).
    let enough = || {
        versions.iter().all(|v| v.load(Ordering::Relaxed) >= 100)
            && server.log_count("reloaded 3 fortunes") >= 10
    };
    let started = Instant::now();
    let end = started + Duration::from_secs(120);
    let mut reloads = 0;
    while !enough() && Instant::now() < end {
        let contents: &[u8] = if reloads % 2 == 0 {
            b"new one\nnew two\nnew three\n"
        } else {
            b"old one\nold two\nold three\n"
        };
        let tmp = PathBuf::from(format!("{}.tmp", file.display()));
        std::fs::write(&tmp, contents).expect("write");
        std::fs::rename(&tmp, &file).expect("rename");
        server.signal("HUP");
        reloads += 1;
        std::thread::sleep(Duration::from_millis(25));
    }
    stop.store(true, Ordering::Relaxed);
    let served: Vec<String> = clients
        .into_iter()
        .flat_map(|c| c.join().expect("a client thread"))
        .collect();
    figure(
        "reload_under_load",
        &format!(
            "{} fortunes served in {:?}, {reloads} reloads sent",
            served.len(),
            started.elapsed()
        ),
    );
    assert!(
        enough(),
        "not 10 reloads, or a version not served 100 times: {versions:?}"
    );
    assert_all_in(&served, &known, "an entry of either version");
    assert!(served.iter().any(|f| f.starts_with("new")) && served.iter().any(|f| f.starts_with("old")));
    let log = server.stop().assert_code(0).stderr.clone();
    assert!(
        log.matches("reloaded 3 fortunes").count() >= 10,
        "{reloads} reloads sent\n{log}"
    );
}

#[test]
fn failed_reload_keeps_serving_the_old_collection() {
    let dir = dir_with(&[("lines", b"kept one\nkept two\n")]);
    let file = dir.join("lines");
    let (server, addr) = listen(&["--fortunes", file.to_str().expect("UTF-8")]);
    std::fs::remove_file(&file).expect("remove the file");
    server.signal("HUP");
    server.wait_for_log("reload failed");
    let log = server.stderr();
    assert!(
        log.contains(&format!(
            "still serving the previous fortunes: cannot read fortune file {}",
            file.display()
        )) && log.contains("No such file"),
        "{log}"
    );
    for _ in 0..5 {
        let fortune = fetch(addr);
        assert!(fortune == "kept one" || fortune == "kept two", "{fortune:?}");
    }
    server.stop().assert_code(0);
}

#[test]
fn reload_keeps_the_percentages() {
    let ours = file_with(b"ours\n");
    let theirs = file_with(b"t0\nt1\nt2\nt3\nt4\nt5\nt6\nt7\nt8\nt9\n");
    let (server, addr) = listen(&[
        "--fortunes",
        &format!("80% {}", ours.display()),
        "--fortunes",
        &format!("20% {}", theirs.display()),
    ]);
    // Theirs grows to 40 entries: by entries, ours would get 1 pick in 41.
    let forty: String = (0..40).map(|i| format!("t{i}\n")).collect();
    std::fs::write(&theirs, forty).expect("rewrite the file");
    server.signal("HUP");
    server.wait_for_log("reloaded 41 fortunes");
    let picks = 2_000;
    let served: Vec<String> = (0..picks).map(|_| fetch(addr)).collect();
    let share = served.iter().filter(|f| *f == "ours").count() as f64 / picks as f64;
    util::figure(
        "reload_keeps_the_percentages",
        &format!("share of the 80% path after a reload: {share:.3} of {picks} picks"),
    );
    assert!((share - 0.8).abs() < 0.04, "{share}");
    assert!(
        served.iter().any(|f| f == "t39"),
        "the reloaded entries are served"
    );
    server.stop().assert_code(0);
}

#[test]
fn equal_and_short_through_the_environment() {
    let one = file_with(b"one\n");
    let long = "x".repeat(40);
    let many = file_with(format!("m0\nm1\nm2\nm3\nm4\nm5\nm6\nm7\nm8\n{long}\n").as_bytes());
    let addr = loopback(free_port());
    let server = Cmd::server()
        .args(["--listen", &addr.to_string()])
        .env(
            "FORTUNE_FORTUNES",
            format!("{}:{}", one.display(), many.display()),
        )
        .env("FORTUNE_EQUAL", "true")
        .env("FORTUNE_SHORT", "true")
        .env("FORTUNE_SHORT_MAX", "10")
        .spawn();
    // The long one is not counted: 1 + 9 may be served.
    server.wait_for_log("Serving 10 fortunes");
    let picks = 600;
    let served: Vec<String> = (0..picks).map(|_| fetch(addr)).collect();
    assert!(!served.contains(&long), "a long fortune was served");
    let share = served.iter().filter(|f| *f == "one").count() as f64 / picks as f64;
    util::figure(
        "equal_and_short_through_the_environment",
        &format!("share of the one-fortune file with --equal: {share:.3} of {picks} picks"),
    );
    // 0.5 each file (by entries it would be 0.1); 0.1 is over 4 standard deviations.
    assert!((share - 0.5).abs() < 0.1, "{share}");
    server.stop().assert_code(0);
}

#[test]
fn daily_is_the_same_across_processes() {
    if !require("systemd-socket-activate") || !require(&format!("{DEBIAN}/fortunes.dat")) {
        return;
    }
    let (activator, addr) = accept_yes(&["--daily", "--fortunes", DEBIAN]);
    let first = fetch(addr);
    for _ in 0..3 {
        assert_eq!(
            fetch(addr),
            first,
            "another Accept=yes process chose another fortune"
        );
    }
    drop(activator);
    let (server, addr) = listen(&["--daily", "--fortunes", DEBIAN]);
    assert_eq!(
        fetch(addr),
        first,
        "the long-running service chose another fortune"
    );
    assert_eq!(fetch(addr), first);
    server.stop().assert_code(0);
}

/// Waits until a directory just written is older than what the list cache
/// records (it leaves out directories changed within the last second).
fn let_settle() {
    std::thread::sleep(Duration::from_millis(1100));
}

fn cache_text(cache: &Path) -> String {
    std::fs::read_to_string(lists::file_in(cache)).unwrap_or_default()
}

#[test]
fn accept_yes_with_the_systemd_cache_directory() {
    if !require("systemd-socket-activate") || !require(&format!("{DEBIAN}/fortunes.dat")) {
        return;
    }
    let entries = indexed_entries(Path::new(DEBIAN));
    let cache = dir_with(&[]);
    // As systemd sets it for CacheDirectory= (a list; the first one is used).
    let env = format!("CACHE_DIRECTORY={}:/nonexistent", cache.display());
    let (activator, addr) = accept_yes_with(&["-E", &env], &["--fortunes", DEBIAN]);
    let served = qt_read(addr, "qt", 20);
    assert_all_in(&served, &entries, "an entry of the Debian collection");
    let text = cache_text(&cache);
    let listed = lists::Lists::parse(text.as_bytes()).unwrap_or_else(|| panic!("no list cache: {text:?}"));
    assert_eq!(listed.dirs.len(), 1, "{text}");
    assert_eq!(listed.dirs[0].path, DEBIAN);
    let cached: usize = listed.dirs[0].files.iter().map(|(_, n)| n).sum();
    assert!(cached > 10_000, "{text}");
    assert!(
        listed.dirs[0].files.iter().any(|(name, _)| name == "fortunes"),
        "{text}"
    );
    drop(activator);
}

#[test]
fn accept_yes_list_cache_is_used_and_checked() {
    if !require("strfile") || !require("systemd-socket-activate") {
        return;
    }
    let dir = mixed_directory();
    let cache = dir_with(&[]);
    let_settle();
    let dir_arg = dir.to_str().expect("UTF-8 scratch path");
    let cache_arg = cache.to_str().expect("UTF-8 scratch path");
    let (activator, addr) = accept_yes(&[
        "--fortunes",
        dir_arg,
        "--cache-dir",
        cache_arg,
        "--log-level",
        "debug",
    ]);
    serves_only(addr, 20, &clean_entries(), "a clean indexed entry");
    let text = cache_text(&cache);
    assert!(
        text.contains("\n6 clean\n2 more\n") && !text.contains("unindexed"),
        "{text:?}\n{}",
        activator.stderr()
    );

    // Used: a cache that lists only `more` (with the directory's stamp) serves only it.
    let only_more = text.replace("6 clean\n", "").replace("2 rude\n", "");
    std::fs::write(lists::file_in(&cache), &only_more).expect("write the cache");
    let more: HashSet<String> = ["seven\nlines", "eight"].map(String::from).into();
    serves_only(addr, 10, &more, "an entry of `more`, the only file cached");

    // A count that the file's index contradicts: the entry served is still one
    // of the file, and the cache is removed for the next process to list again.
    std::fs::write(lists::file_in(&cache), only_more.replace("2 more", "5 more")).expect("write");
    let fortune = fetch(addr);
    assert!(more.contains(&fortune), "{fortune:?}");
    activator.wait_for_log("was stale (a file changed in place); removed");
    let text = cache_text(&cache);
    assert!(!text.contains("5 more"), "{text:?}");

    // A file added: the directory's stamp changes, the cache is not trusted.
    std::fs::write(lists::file_in(&cache), &only_more).expect("write the cache");
    let extra: String = (0..30).map(|i| format!("extra {i}\n%\n")).collect();
    std::fs::write(dir.join("extra"), extra).expect("write");
    strfile(&dir.join("extra"), &["-s"]);
    let served: Vec<String> = (0..20).map(|_| fetch(addr)).collect();
    assert!(served.iter().any(|f| f.starts_with("extra")), "{served:?}");
    let_settle();
    fetch(addr);
    assert!(
        cache_text(&cache).contains("\n30 extra\n"),
        "{}",
        cache_text(&cache)
    );

    // A file removed: listed again.
    std::fs::remove_file(dir.join("extra")).expect("remove");
    std::fs::remove_file(dir.join("extra.dat")).expect("remove");
    let_settle();
    serves_only(addr, 20, &clean_entries(), "a clean indexed entry");
    assert!(!cache_text(&cache).contains("extra"), "{}", cache_text(&cache));
    drop(activator);
}

#[test]
fn accept_yes_survives_a_corrupt_or_unwritable_cache() {
    if !require("strfile") || !require("systemd-socket-activate") {
        return;
    }
    let dir = mixed_directory();
    let dir_arg = dir.to_str().expect("UTF-8 scratch path");
    let cache = dir_with(&[]);
    let_settle();
    let garbage: [&[u8]; 3] = [
        b"\xff\xfe not text",
        b"fortune-server lists 1\noffensive 0\ndir 1 2 3 4 5 6 /x\n9 ../../etc/passwd\nend\n",
        b"fortune-server lists 1\noffensive 0\n",
    ];
    // Through the variable, as a unit's Environment= would set it.
    let env = format!("FORTUNE_CACHE_DIR={}", cache.display());
    let (activator, addr) = accept_yes_with(&["-E", &env], &["--fortunes", dir_arg, "--log-level", "debug"]);
    for bytes in garbage {
        std::fs::write(lists::file_in(&cache), bytes).expect("write the cache");
        serves_only(addr, 5, &clean_entries(), "a clean indexed entry");
        // Listed again and rewritten whole.
        assert!(
            cache_text(&cache).contains("\n6 clean\n"),
            "{}",
            cache_text(&cache)
        );
    }
    assert!(
        activator.log_count("not a list cache of this version") >= 3,
        "{}",
        activator.stderr()
    );
    drop(activator);

    // A cache directory that cannot be written (here: not a directory) only costs the listing.
    let unwritable_file = file_with(b"");
    for unwritable in [unwritable_file.path(), Path::new("/nonexistent/cache")] {
        let (activator, addr) = accept_yes(&[
            "--fortunes",
            dir_arg,
            "--cache-dir",
            unwritable.to_str().expect("UTF-8"),
            "--log-level",
            "debug",
        ]);
        serves_only(addr, 5, &clean_entries(), "a clean indexed entry");
        assert!(
            activator.log_count("cannot write the list cache") >= 5,
            "{}",
            activator.stderr()
        );
        drop(activator);
    }
}

/// A directory with one good indexed file, `good`, of three entries.
fn good_directory() -> Scratch {
    let dir = dir_with(&[]);
    indexed_file(&dir, "good", &["good one", "good two", "good three"]);
    dir
}

fn good_entries() -> HashSet<String> {
    ["good one", "good two", "good three"].map(String::from).into()
}

/// `dir/name` as a copy of `good.dat`: an index that looks right for `name`.
fn copy_index(dir: &Path, name: &str) {
    std::fs::copy(dir.join("good.dat"), dir.join(format!("{name}.dat"))).expect("copy the index");
}

#[test]
fn a_fifo_as_file_or_index_is_refused_never_waited_on() {
    // Named on its own: refused at start, exit 1, one line.
    let dir = good_directory();
    fifo(&dir.join("pipe"));
    let done = refused(&dir.join("pipe"));
    done.assert_code(1)
        .assert_stderr_has("is a FIFO, not a regular file");
    // A file whose index is a FIFO.
    fifo(&dir.join("plain.dat"));
    std::fs::write(dir.join("plain"), "plain one\n%\n").expect("write");
    let done = refused(&dir.join("plain"));
    done.assert_code(1)
        .assert_stderr_has(&format!("{} is a FIFO", dir.join("plain.dat").display()));

    // In a directory: each left out with a warning, the rest served.
    copy_index(&dir, "pipe");
    let (server, addr) = listen(&["--fortunes", dir.to_str().expect("UTF-8")]);
    serves_only(addr, 10, &good_entries(), "an entry of the regular file");
    let log = server.stop().assert_code(0).stderr.clone();
    for left_out in ["pipe is a FIFO", "plain.dat is a FIFO"] {
        assert!(
            log.contains(left_out) && log.contains("left out"),
            "{left_out}\n{log}"
        );
    }
}

#[test]
fn a_fifo_created_before_a_reload_leaves_sigterm_working() {
    let dir = good_directory();
    let (server, addr) = listen(&["--fortunes", dir.to_str().expect("UTF-8")]);
    // A member whose index is a FIFO: the old code waited on it in the main thread.
    std::fs::write(dir.join("late"), "late one\n%\n").expect("write");
    fifo(&dir.join("late.dat"));
    server.signal("HUP");
    server.wait_for_log("reloaded 3 fortunes");
    assert!(good_entries().contains(&fetch(addr)));
    let log = server.stderr();
    assert!(log.contains("late.dat is a FIFO"), "{log}");
    // SIGTERM is still answered (stop() waits 15 s at most).
    server.stop().assert_code(0);
}

#[test]
fn a_fifo_member_in_one_process_per_connection() {
    // --inetd (Accept=yes): the process exits within --timeout, having served
    // a regular file's entry. The FIFO holds most of the entries its index claims.
    let dir = good_directory();
    fifo(&dir.join("pipe"));
    let many: Vec<String> = (0..500).map(|i| format!("entry {i}")).collect();
    let scratch = dir_with(&[]);
    indexed_file(
        &scratch,
        "many",
        &many.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    std::fs::copy(scratch.join("many.dat"), dir.join("pipe.dat")).expect("copy the index");
    for _ in 0..3 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server_end, _) = listener.accept().expect("accept");
        let done = Cmd::server()
            .args(["--inetd", "--timeout", "2", "--fortunes"])
            .arg(dir.path())
            .stdin(std::os::fd::OwnedFd::from(server_end))
            .run(Duration::from_secs(10));
        done.assert_code(0);
        let mut bytes = Vec::new();
        let mut client = client;
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        std::io::Read::read_to_end(&mut client, &mut bytes).expect("read");
        let fortune =
            fortune_server::wire::decode(fortune_server::wire::Protocol::Qt, &bytes).expect("a frame");
        assert!(
            good_entries().contains(&fortune),
            "{fortune:?}\n{}",
            done.report()
        );
    }
}

#[test]
fn dev_zero_is_refused_and_a_member_linked_to_it_left_out() {
    let done = refused(Path::new("/dev/zero"));
    done.assert_code(1)
        .assert_stderr_has("fortune file /dev/zero is a device, not a regular file");
    let dir = good_directory();
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero")).expect("symlink");
    copy_index(&dir, "zero");
    let dir_arg = dir.to_str().expect("UTF-8");
    let (server, addr) = listen(&["--fortunes", dir_arg]);
    serves_only(addr, 10, &good_entries(), "an entry of the regular file");
    let rss = server.rss_kib();
    let log = server.stop().assert_code(0).stderr.clone();
    assert!(
        log.contains("zero is a device") && log.contains("left out"),
        "{log}"
    );
    assert!(rss < 100 * 1024, "{rss} KiB resident");
    if !require("systemd-socket-activate") {
        return;
    }
    let (activator, addr) = accept_yes(&["--fortunes", dir_arg]);
    serves_only(addr, 10, &good_entries(), "an entry of the regular file");
    drop(activator);
}

#[test]
fn a_long_entry_is_left_out_once_and_picks_read_their_own_entry() {
    if !require("strfile") {
        return;
    }
    // 1,000 short entries and one of 20 MB.
    let mut text = String::new();
    for i in 0..1000 {
        text += &format!("short {i}\n%\n");
        if i == 500 {
            text += &"y".repeat(20 << 20);
            text += "\n%\n";
        }
    }
    let file = file_with(text.as_bytes());
    // Without an index it is too large to read whole.
    refused(&file)
        .assert_code(1)
        .assert_stderr_has("index it with strfile");
    strfile(&file, &["-s"]);
    let (server, addr) = listen(&["--fortunes", file.to_str().expect("UTF-8")]);
    let before = server.read_bytes();
    let picks = 300;
    for _ in 0..picks {
        let fortune = fetch(addr);
        assert!(
            fortune.starts_with("short ") && fortune.len() < 10,
            "{} bytes",
            fortune.len()
        );
    }
    // Each pick reads its own entry (and the byte before it), nothing more.
    let read = server.read_bytes() - before;
    util::figure(
        "long entry",
        &format!("{picks} picks read {read} bytes of fortune files"),
    );
    assert!(read < picks * 64, "{picks} picks read {read} bytes");
    let warned = server.log_count("entries longer than 8192 bytes left out");
    let log = server.stop().assert_code(0).stderr.clone();
    assert_eq!(warned, 1, "{log}");
    assert!(log.contains("Serving 1000 fortunes"), "{log}");
    // --max-entry raises the cap (FORTUNE_MAX_ENTRY too); below 64 is a usage error.
    let long = "z".repeat(10_000);
    let file = file_with(format!("short\n%\n{long}\n%\n").as_bytes());
    strfile(&file, &["-s"]);
    let (server, addr) = listen(&[
        "--max-entry",
        "16384",
        "--fortunes",
        file.to_str().expect("UTF-8"),
    ]);
    let served: HashSet<String> = (0..10).map(|_| fetch(addr)).collect();
    assert_eq!(served, ["short".to_string(), long].into());
    server.stop().assert_code(0);
    Cmd::server()
        .env("FORTUNE_MAX_ENTRY", "63")
        .run(Duration::from_secs(10))
        .assert_code(2);
}

#[test]
fn the_list_cache_never_follows_a_planted_symlink() {
    if !require("strfile") || !require("systemd-socket-activate") {
        return;
    }
    let dir = mixed_directory();
    let cache = dir_with(&[]);
    let victim = file_with(b"precious\n");
    // At the cache's name, and at every temporary name the next few thousand
    // processes would have used (the old code named it after its PID).
    std::os::unix::fs::symlink(&victim, lists::file_in(&cache)).expect("symlink");
    let last_pid: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(0);
    for pid in last_pid..last_pid + 5000 {
        let _ = std::os::unix::fs::symlink(&victim, cache.join(format!(".{}.{pid}", lists::FILE_NAME)));
    }
    let_settle();
    let (activator, addr) = accept_yes(&[
        "--fortunes",
        dir.to_str().expect("UTF-8"),
        "--cache-dir",
        cache.to_str().expect("UTF-8"),
    ]);
    serves_only(addr, 5, &clean_entries(), "a clean indexed entry");
    drop(activator);
    assert_eq!(std::fs::read(&victim).expect("the victim"), b"precious\n");
    let written = std::fs::symlink_metadata(lists::file_in(&cache)).expect("the cache");
    assert!(written.is_file(), "the cache is not a regular file: {written:?}");
    assert!(
        cache_text(&cache).contains("\n6 clean\n"),
        "{}",
        cache_text(&cache)
    );
}

#[test]
fn what_the_list_cache_names_is_checked_as_a_listing_would() {
    if !require("strfile") || !require("systemd-socket-activate") {
        return;
    }
    let dir = mixed_directory();
    // Fortune files a listing leaves out: offensive by name, a FIFO with an index.
    std::fs::copy(dir.join("more"), dir.join("named-o")).expect("copy");
    std::fs::copy(dir.join("more.dat"), dir.join("named-o.dat")).expect("copy");
    fifo(&dir.join("pipe"));
    std::fs::copy(dir.join("more.dat"), dir.join("pipe.dat")).expect("copy");
    let cache = dir_with(&[]);
    let_settle();
    let (activator, addr) = accept_yes(&[
        "--fortunes",
        dir.to_str().expect("UTF-8"),
        "--cache-dir",
        cache.to_str().expect("UTF-8"),
        "--log-level",
        "debug",
    ]);
    // A cache that names them (with the directory's stamp, so it is used)
    // beside `more`: never served, never waited on.
    let stamp = lists::Stamp::of(&std::fs::metadata(&dir).expect("the directory"));
    let files = ["unindexed", "named-o", "pipe"].map(|name| (name.to_string(), 3));
    let planted = lists::Lists {
        offensive: false,
        dirs: vec![lists::Dir {
            path: dir.to_str().expect("UTF-8").to_string(),
            stamp,
            files: [&files[..], &[("more".to_string(), 2)]].concat(),
        }],
    };
    let planted = planted.to_bytes().expect("plain names");
    let more: HashSet<String> = ["seven\nlines", "eight"].map(String::from).into();
    for _ in 0..8 {
        std::fs::write(lists::file_in(&cache), &planted).expect("write the cache");
        let fortune = fetch(addr);
        assert!(more.contains(&fortune), "{fortune:?}\n{}", activator.stderr());
    }
    assert!(
        activator.log_count("was stale") >= 1,
        "the cache was not dropped\n{}",
        activator.stderr()
    );
    drop(activator);
}

#[test]
fn reload_into_a_smaller_collection_under_load() {
    let dir = dir_with(&[]);
    let large: Vec<String> = (0..200).map(|i| format!("large {i}")).collect();
    let large: Vec<&str> = large.iter().map(String::as_str).collect();
    indexed_file(&dir, "f", &large);
    let (server, addr) = listen(&["--fortunes", dir.join("f").to_str().expect("UTF-8")]);
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, count) = (Arc::clone(&stop), Arc::clone(&count));
            std::thread::spawn(move || {
                let mut served = 0;
                // Bounded in count and (through `stop`) in time.
                while !stop.load(Ordering::Relaxed) && served < 5000 {
                    // A connection closed without a fortune is allowed while the
                    // small collection's entry is unservable; an error is not.
                    util::read_all(addr).expect("a connection served");
                    served += 1;
                    count.fetch_add(1, Ordering::Relaxed);
                }
                served
            })
        })
        .collect();
    // Reload until 100 connections and 10 reloads are done (a bound only a hang reaches).
    let enough = || count.load(Ordering::Relaxed) > 100 && server.log_count("reloaded") >= 10;
    let started = Instant::now();
    let end = started + Duration::from_secs(120);
    let mut reloads = 0;
    while !enough() && Instant::now() < end {
        let scratch = dir_with(&[]);
        if reloads % 2 == 0 {
            // One entry, not UTF-8: every draw fails, the last resort is the previous pick.
            indexed_file(&scratch, "f", &["\u{0}"]);
            let mut bytes = std::fs::read(scratch.join("f")).expect("read");
            bytes[0] = 0xff;
            std::fs::write(scratch.join("f"), bytes).expect("write");
        } else {
            indexed_file(&scratch, "f", &large);
        }
        for name in ["f", "f.dat"] {
            std::fs::rename(scratch.join(name), dir.join(name)).expect("rename");
        }
        server.signal("HUP");
        reloads += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let served: usize = clients
        .into_iter()
        .map(|c| c.join().expect("a client thread"))
        .sum();
    figure(
        "reload_smaller",
        &format!(
            "{served} connections served in {:?}, {reloads} reloads sent",
            started.elapsed()
        ),
    );
    assert!(
        enough(),
        "only {served} connections and fewer than 10 reloads in 120 s"
    );
    assert!(good_or_large(&fetch_after_reload(&server, &dir, &large, addr)));
    let log = server.stop().assert_code(0).stderr.clone();
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        log.matches("reloaded").count() >= 10,
        "{reloads} reloads sent\n{log}"
    );
}

/// Reloads into the large collection and fetches one fortune.
fn fetch_after_reload(server: &Running, dir: &Path, large: &[&str], addr: SocketAddr) -> String {
    let scratch = dir_with(&[]);
    indexed_file(&scratch, "f", large);
    for name in ["f", "f.dat"] {
        std::fs::rename(scratch.join(name), dir.join(name)).expect("rename");
    }
    let before = server.log_count("reloaded 200 fortunes");
    server.signal("HUP");
    let end = Instant::now() + Duration::from_secs(60);
    while server.log_count("reloaded 200 fortunes") == before && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    fetch(addr)
}

fn good_or_large(fortune: &str) -> bool {
    fortune.starts_with("large ")
}

#[test]
fn six_hundred_files_under_a_small_descriptor_limit() {
    let dir = dir_with(&[]);
    for i in 0..600 {
        indexed_file(&dir, &format!("f{i:03}"), &[&format!("fortune {i}")]);
    }
    // Soft limit 256 (raised to the hard one before loading), and both at 256.
    for (soft, hard) in [(256, 2048), (256, 256)] {
        let addr = loopback(free_port());
        let server = Cmd::server()
            // At 256 descriptors the per-source cap is 32, which 100 quick
            // fetches whose close is noticed late can reach: not this test's subject.
            .args([
                "--listen",
                &addr.to_string(),
                "--max-per-source",
                "0",
                "--fortunes",
            ])
            .arg(dir.path())
            .with_fd_limits(soft, hard)
            .spawn();
        server.wait_for_log("Serving 600 fortunes");
        for reload in 1..=3 {
            server.signal("HUP");
            let end = Instant::now() + Duration::from_secs(60);
            while server.log_count("reloaded 600 fortunes") < reload {
                if Instant::now() > end {
                    server.fail(&format!("reload {reload} did not complete"));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let served: HashSet<String> = (0..100).map(|_| fetch(addr)).collect();
        assert!(served.iter().all(|f| f.starts_with("fortune ")), "{served:?}");
        // Files held open and files opened on each pick both serve.
        assert!(served.len() > 50, "{served:?}");
        let log = server.stop().assert_code(0).stderr.clone();
        assert!(!log.contains("reload failed"), "{log}");
    }
}

#[test]
fn a_file_whose_entries_are_all_broken_is_warned_about_once() {
    if !require("strfile") {
        return;
    }
    let file = file_with(b"caf\xe9 one\n%\ncaf\xe9 two\n%\ncaf\xe9 three\n%\n");
    strfile(&file, &["-s"]);
    let (server, addr) = listen(&["--fortunes", file.to_str().expect("UTF-8")]);
    for _ in 0..20 {
        // Closed without a fortune: there is none to serve.
        assert_eq!(util::read_all(addr).expect("a connection"), b"");
    }
    let log = server.stop().assert_code(0).stderr.clone();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("warn")).collect();
    assert!(
        warnings.len() == 2
            && warnings[0].contains("is not UTF-8, skipped")
            && warnings[1].contains("no servable fortune"),
        "{warnings:#?}"
    );
}
