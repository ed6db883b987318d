//! The pure half of finding a debug file: what a binary offers to find it
//! by (its build id, its `.gnu_debuglink`), the checksum that proves a
//! linked file is the right one, and the candidate paths in the order they
//! are tried. Nothing here touches the file system.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

/// What a binary offers to find its separate debug file by.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DebugIds {
    /// The `NT_GNU_BUILD_ID` note's bytes.
    pub build_id: Option<Vec<u8>>,
    /// `.gnu_debuglink`: the debug file's name and the CRC32 of its contents.
    pub debuglink: Option<DebugLink>,
}

/// The contents of a `.gnu_debuglink` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebugLink {
    /// A file name without directories, e.g. `app.debug`.
    pub name: PathBuf,
    /// CRC32 (IEEE, as zlib's `crc32`) of the whole debug file.
    pub crc: u32,
}

/// How a debug file was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// `<debug dir>/.build-id/xx/rest.debug`.
    BuildId,
    /// The name in `.gnu_debuglink`, beside the binary or under a debug dir.
    DebugLink,
    /// Downloaded from this debuginfod server (or found in its cache).
    Debuginfod(String),
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Via::BuildId => f.write_str("by build id"),
            Via::DebugLink => f.write_str("by .gnu_debuglink"),
            Via::Debuginfod(url) => write!(f, "from debuginfod {url}"),
        }
    }
}

/// A place a debug file may be, and how it would have been found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// Where to look.
    pub path: PathBuf,
    /// What led there (decides what is checked: build id, or CRC).
    pub via: Via,
}

/// Where a binary sits as its process sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The file systems to look in, in order: the target's
    /// `/proc/PID/root` first when it has its own, then the host's `/`.
    pub roots: Vec<PathBuf>,
    /// The binary's absolute path as its process sees it.
    pub path: PathBuf,
    /// The binary's folder with symlinks resolved, when that differs from
    /// `path`'s folder (`/lib` → `/usr/lib` on merged-/usr systems): gdb
    /// looks up debug links through the canonical folder.
    pub canonical_dir: Option<PathBuf>,
}

/// Parses a `.gnu_debuglink` section: a file name, a NUL, padding to a
/// multiple of four bytes, then the CRC32 in the file's byte order.
/// `None` for a malformed section, or a name that is not a plain file name
/// (a `/` in it would let a crafted binary point ferret anywhere).
pub fn parse_debuglink(section: &[u8], big_endian: bool) -> Option<DebugLink> {
    let nul = section.iter().position(|&b| b == 0)?;
    let name = &section[..nul];
    if name.is_empty() || name.contains(&b'/') || name == b"." || name == b".." {
        return None;
    }
    let crc_at = (nul + 1).next_multiple_of(4);
    let crc: [u8; 4] = section.get(crc_at..crc_at + 4)?.try_into().ok()?;
    Some(DebugLink {
        name: PathBuf::from(OsStr::from_bytes(name)),
        crc: if big_endian {
            u32::from_be_bytes(crc)
        } else {
            u32::from_le_bytes(crc)
        },
    })
}

/// The checksum `.gnu_debuglink` records: CRC32 (IEEE) of the whole file.
pub fn debuglink_crc(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// Lower-case hex, as build ids are written in paths and URLs.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// `<dir>/.build-id/xx/rest.debug` for build id `xxrest…`; `None` for a
/// build id too short to name a file by.
pub fn build_id_path(dir: &Path, build_id: &[u8]) -> Option<PathBuf> {
    let (first, rest) = build_id.split_first()?;
    if rest.is_empty() {
        return None;
    }
    Some(
        dir.join(".build-id")
            .join(format!("{first:02x}"))
            .join(format!("{}.debug", hex(rest))),
    )
}

/// `path` inside `root` (`/proc/PID/root` + `/usr/bin/app`).
fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// Every place a debug file is looked for on disk, in order. For each root
/// (the target's, then the host's): `<debug dir>/.build-id/xx/rest.debug`
/// for each debug dir, then for the `.gnu_debuglink` name, in the
/// binary's folder, its `.debug/` subfolder, and `<debug dir>/<folder>`
/// for each debug dir (the folder as written, then its canonical form).
/// The same order as gdb's; the debuginfod servers come after all of these.
pub fn local_candidates(ids: &DebugIds, seen: &Seen, dirs: &[PathBuf]) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    let mut push = |path: PathBuf, via: Via| {
        if path != seen.path && !out.iter().any(|c| c.path == path) {
            out.push(Candidate { path, via });
        }
    };
    let folders: Vec<&Path> = seen
        .path
        .parent()
        .into_iter()
        .chain(seen.canonical_dir.as_deref())
        .collect();
    for root in &seen.roots {
        if let Some(build_id) = &ids.build_id {
            for dir in dirs {
                if let Some(path) = build_id_path(&under(root, dir), build_id) {
                    push(path, Via::BuildId);
                }
            }
        }
        if let Some(link) = &ids.debuglink {
            for folder in &folders {
                let folder = under(root, folder);
                push(folder.join(&link.name), Via::DebugLink);
                push(folder.join(".debug").join(&link.name), Via::DebugLink);
            }
            for dir in dirs {
                for folder in &folders {
                    push(
                        under(&under(root, dir), folder).join(&link.name),
                        Via::DebugLink,
                    );
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debuglink_section_is_name_padding_and_crc() {
        // "app.debug\0" is 10 bytes, padded to 12; the CRC follows.
        let mut section = b"app.debug\0\0\0".to_vec();
        section.extend_from_slice(&0x1234_5678_u32.to_le_bytes());
        assert_eq!(
            parse_debuglink(&section, false),
            Some(DebugLink {
                name: PathBuf::from("app.debug"),
                crc: 0x1234_5678
            })
        );
        let mut big = b"abc\0".to_vec();
        big.extend_from_slice(&0xdead_beef_u32.to_be_bytes());
        assert_eq!(
            parse_debuglink(&big, true).map(|l| l.crc),
            Some(0xdead_beef)
        );
    }

    #[test]
    fn malformed_or_escaping_debuglinks_are_refused() {
        let crc = [1, 2, 3, 4];
        for bad in [
            &b""[..],
            b"no-nul-at-all",
            b"\0\0\0\0",
            b"short\0\0\0", // no room for the CRC
        ] {
            assert_eq!(parse_debuglink(bad, false), None, "{bad:?}");
        }
        for name in [&b"../../etc/passwd"[..], b"/abs/path", b"..", b"."] {
            let mut section = name.to_vec();
            section.push(0);
            section.resize(section.len().next_multiple_of(4), 0);
            section.extend_from_slice(&crc);
            assert_eq!(parse_debuglink(&section, false), None, "{name:?}");
        }
    }

    #[test]
    fn crc_is_the_ieee_crc32() {
        // The standard check value of CRC-32/ISO-HDLC, which zlib and
        // binutils' `--add-gnu-debuglink` compute.
        assert_eq!(debuglink_crc(b"123456789"), 0xcbf4_3926);
        assert_eq!(debuglink_crc(b""), 0);
    }

    #[test]
    fn build_id_paths_split_the_first_byte() {
        let id = [0x93, 0xac, 0x61, 0xec, 0x5a];
        assert_eq!(
            build_id_path(Path::new("/usr/lib/debug"), &id),
            Some(PathBuf::from("/usr/lib/debug/.build-id/93/ac61ec5a.debug"))
        );
        assert_eq!(build_id_path(Path::new("/d"), &[0x93]), None);
        assert_eq!(build_id_path(Path::new("/d"), &[]), None);
        assert_eq!(hex(&[0x00, 0x0f, 0xff]), "000fff");
    }

    #[test]
    fn candidates_follow_gdbs_order_target_root_first() {
        let ids = DebugIds {
            build_id: Some(vec![0xab, 0xcd, 0xef]),
            debuglink: Some(DebugLink {
                name: PathBuf::from("app.debug"),
                crc: 7,
            }),
        };
        let seen = Seen {
            roots: vec![PathBuf::from("/proc/42/root"), PathBuf::from("/")],
            path: PathBuf::from("/bin/app"),
            canonical_dir: Some(PathBuf::from("/usr/bin")),
        };
        let dirs = [PathBuf::from("/usr/lib/debug"), PathBuf::from("/opt/dbg")];
        let got: Vec<(String, Via)> = local_candidates(&ids, &seen, &dirs)
            .into_iter()
            .map(|c| (c.path.display().to_string(), c.via))
            .collect();
        let b = Via::BuildId;
        let l = Via::DebugLink;
        let want: Vec<(&str, &Via)> = vec![
            ("/proc/42/root/usr/lib/debug/.build-id/ab/cdef.debug", &b),
            ("/proc/42/root/opt/dbg/.build-id/ab/cdef.debug", &b),
            ("/proc/42/root/bin/app.debug", &l),
            ("/proc/42/root/bin/.debug/app.debug", &l),
            ("/proc/42/root/usr/bin/app.debug", &l),
            ("/proc/42/root/usr/bin/.debug/app.debug", &l),
            ("/proc/42/root/usr/lib/debug/bin/app.debug", &l),
            ("/proc/42/root/usr/lib/debug/usr/bin/app.debug", &l),
            ("/proc/42/root/opt/dbg/bin/app.debug", &l),
            ("/proc/42/root/opt/dbg/usr/bin/app.debug", &l),
            ("/usr/lib/debug/.build-id/ab/cdef.debug", &b),
            ("/opt/dbg/.build-id/ab/cdef.debug", &b),
            ("/bin/app.debug", &l),
            ("/bin/.debug/app.debug", &l),
            ("/usr/bin/app.debug", &l),
            ("/usr/bin/.debug/app.debug", &l),
            ("/usr/lib/debug/bin/app.debug", &l),
            ("/usr/lib/debug/usr/bin/app.debug", &l),
            ("/opt/dbg/bin/app.debug", &l),
            ("/opt/dbg/usr/bin/app.debug", &l),
        ];
        let got_ref: Vec<(&str, &Via)> = got.iter().map(|(p, v)| (p.as_str(), v)).collect();
        assert_eq!(got_ref, want);
    }

    #[test]
    fn a_debuglink_naming_the_binary_itself_is_not_a_candidate() {
        let ids = DebugIds {
            build_id: None,
            debuglink: Some(DebugLink {
                name: PathBuf::from("app"),
                crc: 0,
            }),
        };
        let seen = Seen {
            roots: vec![PathBuf::from("/")],
            path: PathBuf::from("/srv/app"),
            canonical_dir: None,
        };
        let got = local_candidates(&ids, &seen, &[PathBuf::from("/usr/lib/debug")]);
        let paths: Vec<&Path> = got.iter().map(|c| c.path.as_path()).collect();
        assert_eq!(
            paths,
            [
                Path::new("/srv/.debug/app"),
                Path::new("/usr/lib/debug/srv/app")
            ]
        );
        assert!(local_candidates(&DebugIds::default(), &seen, &[]).is_empty());
    }
}
