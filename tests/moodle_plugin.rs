//! The Moodle plugin: every PHP file parses, its PHPUnit suite passes, and
//! `lmsbridge moodle-plugin --out DIR` writes a zip Moodle's installer takes (one top-level
//! `lmsbridge/` folder holding exactly the files of `moodle/local_lmsbridge`).
//!
//! PHP is Debian's `php-cli` and `phpunit`; without them these tests say SKIPPED, unless
//! `LMSBRIDGE_PHP_TESTS=1` (set by `.ci/run`) makes a missing PHP a failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn plugin_dir() -> PathBuf {
    root().join("moodle/local_lmsbridge")
}

/// Whether `program` runs; when it does not, fail under CI and skip otherwise.
fn available(program: &str) -> bool {
    let found = Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("LMSBRIDGE_PHP_TESTS").is_none(),
            "LMSBRIDGE_PHP_TESTS is set but `{program}` does not run (apt-get install php-cli phpunit php-curl php-mbstring php-xml)"
        );
        eprintln!("SKIPPED ({program} not installed: apt-get install php-cli phpunit)");
    }
    found
}

/// Runs a command with a time limit and returns (success, stdout + stderr).
fn run_bounded(cmd: &mut Command, limit: Duration) -> (bool, String) {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawns");
    let started = std::time::Instant::now();
    loop {
        if child.try_wait().expect("waits").is_some() {
            break;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("{cmd:?} ran longer than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn files_under(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(
                    path.strip_prefix(base)
                        .unwrap()
                        .to_string_lossy()
                        .replace('\\', "/"),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn the_embedded_file_list_is_exactly_the_plugin_folder_with_the_same_bytes() {
    let on_disk = files_under(&plugin_dir());
    let mut embedded: Vec<String> = lmsbridge::moodle_plugin::FILES
        .iter()
        .map(|(p, _)| (*p).to_owned())
        .collect();
    embedded.sort();
    assert_eq!(
        embedded, on_disk,
        "src/moodle_plugin.rs FILES must list every file of moodle/local_lmsbridge"
    );
    for (path, bytes) in lmsbridge::moodle_plugin::FILES {
        assert_eq!(
            *bytes,
            std::fs::read(plugin_dir().join(path)).unwrap().as_slice(),
            "{path}"
        );
    }
}

#[test]
fn every_php_file_passes_php_lint() {
    if !available("php") {
        return;
    }
    let php_files: Vec<PathBuf> = files_under(&root().join("moodle"))
        .into_iter()
        .filter(|f| f.ends_with(".php"))
        .map(|f| root().join("moodle").join(f))
        .collect();
    assert!(php_files.len() > 40, "found {}", php_files.len());
    for file in php_files {
        let (ok, text) = run_bounded(
            Command::new("php").arg("-l").arg(&file),
            Duration::from_secs(30),
        );
        assert!(ok, "php -l {}: {text}", file.display());
    }
}

#[test]
fn the_plugins_phpunit_suite_passes() {
    if !available("php") || !available("phpunit") {
        return;
    }
    let (ok, text) = run_bounded(
        Command::new("phpunit")
            .arg("-c")
            .arg(root().join("moodle/phpunit.xml"))
            .arg("--do-not-cache-result"),
        Duration::from_secs(120),
    );
    assert!(ok, "phpunit failed:\n{text}");
    let tests: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("OK ("))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no OK line in:\n{text}"));
    assert!(tests >= 60, "only {tests} PHPUnit tests ran:\n{text}");
}

/// One entry of a zip as its central directory and local header describe it.
#[derive(Debug)]
struct Entry {
    data: Vec<u8>,
    external_mode: u32,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Reads a zip of stored entries from its end record, checking that the central directory
/// and every local header agree and that each CRC matches the data.
fn parse_zip(zip: &[u8]) -> BTreeMap<String, Entry> {
    let eocd = zip.len() - 22;
    assert_eq!(u32_at(zip, eocd), 0x0605_4b50, "end record at the very end");
    assert_eq!(u16_at(zip, eocd + 20), 0, "no archive comment");
    let count = usize::from(u16_at(zip, eocd + 10));
    assert_eq!(count, usize::from(u16_at(zip, eocd + 8)));
    let cd_size = u32_at(zip, eocd + 12) as usize;
    let cd_offset = u32_at(zip, eocd + 16) as usize;
    assert_eq!(
        cd_offset + cd_size,
        eocd,
        "central directory right before the end record"
    );

    let mut entries = BTreeMap::new();
    let mut at = cd_offset;
    let mut next_local = 0;
    for _ in 0..count {
        assert_eq!(u32_at(zip, at), 0x0201_4b50);
        assert_eq!(u16_at(zip, at + 4) >> 8, 3, "made on Unix (modes are kept)");
        let method = u16_at(zip, at + 10);
        let crc = u32_at(zip, at + 16);
        let csize = u32_at(zip, at + 20) as usize;
        let usize_ = u32_at(zip, at + 24) as usize;
        let name_len = usize::from(u16_at(zip, at + 28));
        let extra_len = usize::from(u16_at(zip, at + 30));
        let comment_len = usize::from(u16_at(zip, at + 32));
        let external = u32_at(zip, at + 38);
        let local = u32_at(zip, at + 42) as usize;
        let name = std::str::from_utf8(&zip[at + 46..at + 46 + name_len])
            .unwrap()
            .to_owned();
        assert_eq!(method, 0, "{name}: stored");
        assert_eq!(csize, usize_, "{name}: stored sizes agree");
        assert_eq!(
            local, next_local,
            "{name}: local entries are back to back in order"
        );

        assert_eq!(u32_at(zip, local), 0x0403_4b50, "{name}: local header");
        assert_eq!(u16_at(zip, local + 8), 0, "{name}: local method");
        assert_eq!(u32_at(zip, local + 14), crc, "{name}: local CRC");
        assert_eq!(u32_at(zip, local + 18) as usize, csize);
        let lname_len = usize::from(u16_at(zip, local + 26));
        let lextra_len = usize::from(u16_at(zip, local + 28));
        assert_eq!(&zip[local + 30..local + 30 + lname_len], name.as_bytes());
        let start = local + 30 + lname_len + lextra_len;
        let data = zip[start..start + csize].to_vec();
        assert_eq!(
            lmsbridge::moodle_plugin::crc32(&data),
            crc,
            "{name}: CRC of the data"
        );
        next_local = start + csize;

        entries.insert(
            name,
            Entry {
                data,
                external_mode: external >> 16,
            },
        );
        at += 46 + name_len + extra_len + comment_len;
    }
    assert_eq!(at, eocd);
    assert_eq!(
        next_local, cd_offset,
        "nothing between the entries and the directory"
    );
    entries
}

#[test]
fn moodle_plugin_writes_a_zip_with_one_lmsbridge_folder_holding_the_plugin() {
    let out = std::env::temp_dir().join(format!("lmsbridge-plugin-{}", uuid::Uuid::new_v4()));
    let run = Command::new(env!("CARGO_BIN_EXE_lmsbridge"))
        .args(["moodle-plugin", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let zip_path = out.join("local_lmsbridge.zip");
    assert_eq!(printed["path"], zip_path.to_string_lossy().as_ref());
    assert_eq!(printed["folder"], "lmsbridge");

    let zip = std::fs::read(&zip_path).unwrap();
    assert_eq!(
        zip,
        lmsbridge::moodle_plugin::zip(),
        "the written zip is the library's"
    );
    let entries = parse_zip(&zip);

    // Moodle's installer wants a single top-level folder named after the plugin.
    let tops: std::collections::BTreeSet<&str> = entries
        .keys()
        .map(|n| n.split('/').next().unwrap())
        .collect();
    assert_eq!(tops.into_iter().collect::<Vec<_>>(), ["lmsbridge"]);
    assert!(entries.contains_key("lmsbridge/version.php"));
    assert!(entries.contains_key("lmsbridge/db/install.xml"));

    let on_disk = files_under(&plugin_dir());
    let files: Vec<&String> = entries.keys().filter(|n| !n.ends_with('/')).collect();
    assert_eq!(
        files
            .iter()
            .map(|n| n.strip_prefix("lmsbridge/").unwrap())
            .collect::<Vec<_>>(),
        on_disk,
        "the zip holds exactly the plugin's files"
    );
    for name in &files {
        let rel = name.strip_prefix("lmsbridge/").unwrap();
        let entry = &entries[*name];
        assert_eq!(
            entry.data,
            std::fs::read(plugin_dir().join(rel)).unwrap(),
            "{name}"
        );
        assert_eq!(entry.external_mode, 0o100_644, "{name}");
    }
    for (name, entry) in entries.iter().filter(|(n, _)| n.ends_with('/')) {
        assert!(entry.data.is_empty(), "{name}");
        assert_eq!(entry.external_mode, 0o040_755, "{name}");
        // Every directory comes before the files inside it.
        let first_inside = entries
            .keys()
            .position(|n| n.starts_with(name.as_str()) && n != name);
        let own = entries.keys().position(|n| n == name);
        assert!(own < first_inside, "{name}");
    }

    // Other readers agree, where they are installed.
    if Command::new("unzip").arg("-v").output().is_ok() {
        let (ok, text) = run_bounded(
            Command::new("unzip").arg("-t").arg(&zip_path),
            Duration::from_secs(30),
        );
        assert!(ok && text.contains("No errors detected"), "{text}");
        let extract = out.join("extracted");
        let (ok, text) = run_bounded(
            Command::new("unzip")
                .arg("-q")
                .arg(&zip_path)
                .arg("-d")
                .arg(&extract),
            Duration::from_secs(30),
        );
        assert!(ok, "{text}");
        assert_eq!(files_under(&extract.join("lmsbridge")), on_disk);
    } else {
        eprintln!("SKIPPED (unzip not installed: only our own reader checked the zip)");
    }
    // PHP's ZipArchive is what Moodle's installer opens the upload with.
    let has_ziparchive = Command::new("php")
        .args(["-r", "exit(class_exists('ZipArchive') ? 0 : 1);"])
        .output()
        .is_ok_and(|o| o.status.success());
    if has_ziparchive {
        let script = r#"
            $zip = new ZipArchive();
            if ($zip->open($argv[1], ZipArchive::CHECKCONS) !== true) { exit(3); }
            $roots = [];
            for ($i = 0; $i < $zip->numFiles; $i++) {
                $name = $zip->getNameIndex($i);
                $roots[explode('/', $name)[0]] = true;
            }
            $dest = $argv[2];
            if (!$zip->extractTo($dest)) { exit(4); }
            echo json_encode(['entries' => $zip->numFiles, 'roots' => array_keys($roots),
                'version' => file_get_contents($dest . '/lmsbridge/version.php')]);
        "#;
        let dest = out.join("ziparchive");
        let (ok, text) = run_bounded(
            Command::new("php")
                .args(["-r", script])
                .arg(&zip_path)
                .arg(&dest),
            Duration::from_secs(30),
        );
        assert!(ok, "ZipArchive: {text}");
        let read: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(read["entries"], entries.len());
        assert_eq!(read["roots"], serde_json::json!(["lmsbridge"]));
        assert_eq!(
            read["version"].as_str().unwrap().as_bytes(),
            std::fs::read(plugin_dir().join("version.php")).unwrap()
        );
        assert_eq!(files_under(&dest.join("lmsbridge")), on_disk);
    } else {
        assert!(
            std::env::var_os("LMSBRIDGE_PHP_TESTS").is_none(),
            "LMSBRIDGE_PHP_TESTS is set but PHP has no ZipArchive (apt-get install php-zip)"
        );
        eprintln!("SKIPPED (php-zip not installed: PHP's ZipArchive did not read the zip)");
    }
    if Command::new("python3").arg("--version").output().is_ok() {
        let (ok, text) = run_bounded(
            Command::new("python3")
                .args(["-m", "zipfile", "-t"])
                .arg(&zip_path),
            Duration::from_secs(30),
        );
        assert!(ok && text.contains("Done testing"), "{text}");
    }
    let _ = std::fs::remove_dir_all(&out);
}
