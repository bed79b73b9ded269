//! The Moodle plugin `local_lmsbridge` as an installable zip (`lmsbridge moodle-plugin --out DIR`).
//!
//! The plugin's files are embedded at compile time, so the binary alone can hand an admin the
//! plugin that matches its wire contract. Moodle's "Install plugins" page expects a zip with one
//! top-level folder named after the plugin (the part of `local_lmsbridge` after `local_`); the
//! zip is written with stored (uncompressed) entries, which every unzip, PHP's `ZipArchive`
//! included, reads.

use std::path::{Path, PathBuf};

/// The folder the zip holds the plugin in, and the folder it lives in under Moodle's `local/`.
pub const PLUGIN_FOLDER: &str = "lmsbridge";

/// The file name `moodle-plugin --out` writes.
pub const ZIP_NAME: &str = "local_lmsbridge.zip";

macro_rules! plugin_files {
    ($($path:literal),* $(,)?) => {
        &[$(
            ($path, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/moodle/local_lmsbridge/", $path)) as &[u8]),
        )*]
    };
}

/// Every file of `moodle/local_lmsbridge`, by its path inside the plugin. A test compares this
/// list with the folder, so a file added there and forgotten here fails the build's tests.
pub const FILES: &[(&str, &[u8])] = plugin_files![
    "classes/external/get_activity_completions.php",
    "classes/external/get_course_completions.php",
    "classes/external/get_enrolments.php",
    "classes/external/get_grade_items.php",
    "classes/local/batcher.php",
    "classes/local/db_outbox.php",
    "classes/local/http/curl_transport.php",
    "classes/local/http/moodle_curl_transport.php",
    "classes/local/http/response.php",
    "classes/local/http/transport.php",
    "classes/local/outbox.php",
    "classes/local/outbox_cap.php",
    "classes/local/payload_builder.php",
    "classes/local/response_handler.php",
    "classes/local/retry_policy.php",
    "classes/local/sender.php",
    "classes/local/sender_config.php",
    "classes/local/signer.php",
    "classes/local/uuid.php",
    "classes/observer.php",
    "classes/privacy/provider.php",
    "classes/task/send_events.php",
    "db/access.php",
    "db/events.php",
    "db/install.php",
    "db/install.xml",
    "db/services.php",
    "db/tasks.php",
    "db/upgrade.php",
    "externalcompat.php",
    "index.php",
    "lang/en/local_lmsbridge.php",
    "settings.php",
    "version.php",
];

/// The plugin as a zip: `lmsbridge/` and below, directories before their files.
pub fn zip() -> Vec<u8> {
    let mut files: Vec<(&str, &[u8])> = FILES.to_vec();
    files.sort_by_key(|(path, _)| *path);
    let mut zip = StoredZip::default();
    let mut made = std::collections::BTreeSet::new();
    zip.directory(&format!("{PLUGIN_FOLDER}/"));
    for (path, bytes) in files {
        let mut prefix = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for dir in &parts[..parts.len() - 1] {
            prefix.push_str(dir);
            prefix.push('/');
            if made.insert(prefix.clone()) {
                zip.directory(&format!("{PLUGIN_FOLDER}/{prefix}"));
            }
        }
        zip.file(&format!("{PLUGIN_FOLDER}/{path}"), bytes);
    }
    zip.finish()
}

/// Writes `DIR/local_lmsbridge.zip`, creating DIR if needed, and returns its path.
pub fn write_zip(dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(ZIP_NAME);
    // Written beside and renamed, so a reader never sees half a zip.
    let partial = dir.join(format!(".{ZIP_NAME}.partial"));
    std::fs::write(&partial, zip())?;
    std::fs::rename(&partial, &path)?;
    Ok(path)
}

/// A zip archive of stored entries (APPNOTE.TXT 6.3: local headers, central directory, end
/// record; no compression, no ZIP64). Entries carry Unix modes so unzip restores 0644/0755.
#[derive(Debug, Default)]
struct StoredZip {
    out: Vec<u8>,
    central: Vec<u8>,
    entries: u16,
}

/// 2026-11-28 00:00:00 in MS-DOS form: a fixed time keeps the zip byte-for-byte reproducible.
const DOS_TIME: u16 = 0;
const DOS_DATE: u16 = ((2026 - 1980) << 9) | (11 << 5) | 28;

impl StoredZip {
    fn directory(&mut self, name: &str) {
        debug_assert!(name.ends_with('/'));
        // 0o040755 plus the MS-DOS directory attribute.
        self.entry(name, &[], (0o040_755 << 16) | 0x10);
    }

    fn file(&mut self, name: &str, data: &[u8]) {
        self.entry(name, data, 0o100_644 << 16);
    }

    fn entry(&mut self, name: &str, data: &[u8], external_attributes: u32) {
        let offset = u32::try_from(self.out.len()).expect("the plugin zip stays under 4 GiB");
        let size = u32::try_from(data.len()).expect("a plugin file stays under 4 GiB");
        let name_len = u16::try_from(name.len()).expect("path fits a zip header");
        let crc = crc32(data);

        let out = &mut self.out;
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&10u16.to_le_bytes()); // version needed: 1.0, stored
        out.extend_from_slice(&0u16.to_le_bytes()); // flags
        out.extend_from_slice(&0u16.to_le_bytes()); // method: stored
        out.extend_from_slice(&DOS_TIME.to_le_bytes());
        out.extend_from_slice(&DOS_DATE.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes()); // compressed
        out.extend_from_slice(&size.to_le_bytes()); // uncompressed
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // extra field length
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);

        let c = &mut self.central;
        c.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        c.extend_from_slice(&((3u16 << 8) | 20).to_le_bytes()); // made by: Unix, 2.0
        c.extend_from_slice(&10u16.to_le_bytes());
        c.extend_from_slice(&0u16.to_le_bytes());
        c.extend_from_slice(&0u16.to_le_bytes());
        c.extend_from_slice(&DOS_TIME.to_le_bytes());
        c.extend_from_slice(&DOS_DATE.to_le_bytes());
        c.extend_from_slice(&crc.to_le_bytes());
        c.extend_from_slice(&size.to_le_bytes());
        c.extend_from_slice(&size.to_le_bytes());
        c.extend_from_slice(&name_len.to_le_bytes());
        c.extend_from_slice(&0u16.to_le_bytes()); // extra
        c.extend_from_slice(&0u16.to_le_bytes()); // comment
        c.extend_from_slice(&0u16.to_le_bytes()); // disk number start
        c.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        c.extend_from_slice(&external_attributes.to_le_bytes());
        c.extend_from_slice(&offset.to_le_bytes());
        c.extend_from_slice(name.as_bytes());

        self.entries = self
            .entries
            .checked_add(1)
            .expect("fewer than 65,535 entries");
    }

    fn finish(mut self) -> Vec<u8> {
        let cd_offset = u32::try_from(self.out.len()).expect("under 4 GiB");
        let cd_size = u32::try_from(self.central.len()).expect("under 4 GiB");
        self.out.append(&mut self.central);
        let out = &mut self.out;
        out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // this disk
        out.extend_from_slice(&0u16.to_le_bytes()); // disk with the central directory
        out.extend_from_slice(&self.entries.to_le_bytes());
        out.extend_from_slice(&self.entries.to_le_bytes());
        out.extend_from_slice(&cd_size.to_le_bytes());
        out.extend_from_slice(&cd_offset.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // comment length
        self.out
    }
}

/// CRC-32 as zip uses it (IEEE 802.3, reflected, polynomial 0xEDB88320).
pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc = CRC_TABLE[((crc ^ u32::from(byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[n] = c;
        n += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_values() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
    }

    #[test]
    fn the_zip_is_reproducible() {
        assert_eq!(zip(), zip());
    }
}
