//! Separate debug files: the symbols and DWARF of binaries that were
//! shipped without them.
//!
//! Distribution packages and release builds are stripped; their `.symtab`
//! and DWARF live in a separate file (Debian's `-dbg`/`-dbgsym` packages,
//! `objcopy --only-keep-debug`) or on a debuginfod server. The addresses in
//! that file are the binary's own, so ferret reads function names, sizes
//! and split-off parts from it and everything else (code bytes, file
//! offsets, segments) from the binary.
//!
//! Where a debug file is looked for, in order (the README lists the same):
//! for each root, the target's `/proc/PID/root` first when it has its own,
//! then the host's `/`:
//!  1. `<debug dir>/.build-id/xx/rest.debug`, for each debug dir;
//!  2. the name in `.gnu_debuglink`: beside the binary, in its `.debug/`
//!     folder, then under `<debug dir>/<the binary's folder>`;
//!
//! then 3. each server in `DEBUGINFOD_URLS`, by build id, through a cache.
//! Debug dirs are the `--debug-dir` options, then `FERRET_DEBUG_DIRS`
//! (colon-separated) or, without it, `/usr/lib/debug`.
//!
//! A file found is used only if it is the binary's: same build id (when
//! both have one), and for a debug link the CRC32 the link records. One
//! that is not is passed over and named in the message if nothing else is
//! found.
//!
//! The search is pure over paths ([`link::local_candidates`]); the files
//! are touched only by [`find`] and [`DebugFile::open`].

mod debuginfod;
mod link;

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use object::Endianness;
use object::Object as _;
use object::read::elf::ElfFile64;

pub use debuginfod::{DEFAULT_TIMEOUT, Debuginfod};
pub use link::{
    Candidate, DebugIds, DebugLink, Seen, Via, build_id_path, debuglink_crc, hex, local_candidates,
    parse_debuglink,
};

/// The debug directory of Debian, Fedora and most others.
pub const DEFAULT_DEBUG_DIR: &str = "/usr/lib/debug";

/// Where separate debug files are looked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DebugSearch {
    /// Debug directories, in order.
    pub dirs: Vec<PathBuf>,
    /// debuginfod servers, if `DEBUGINFOD_URLS` names any.
    pub debuginfod: Option<Debuginfod>,
}

impl Default for DebugSearch {
    fn default() -> Self {
        DebugSearch {
            dirs: vec![PathBuf::from(DEFAULT_DEBUG_DIR)],
            debuginfod: None,
        }
    }
}

/// The search every [`super::Module`] opened without an explicit one uses;
/// set once per command from its options ([`DebugSearch::install`]).
static CURRENT: RwLock<Option<Arc<DebugSearch>>> = RwLock::new(None);

impl DebugSearch {
    /// `extra_dirs` (the `--debug-dir` options) first, then
    /// `FERRET_DEBUG_DIRS` or, when it is not set, `/usr/lib/debug`; and
    /// the debuginfod variables.
    pub fn from_env(extra_dirs: &[PathBuf]) -> DebugSearch {
        DebugSearch::from_vars(extra_dirs, &|name| std::env::var(name).ok())
    }

    /// [`Self::from_env`] over any variable source, for tests.
    pub fn from_vars(extra_dirs: &[PathBuf], var: &dyn Fn(&str) -> Option<String>) -> DebugSearch {
        let mut dirs: Vec<PathBuf> = extra_dirs.to_vec();
        match var("FERRET_DEBUG_DIRS") {
            Some(list) => dirs.extend(list.split(':').filter(|d| !d.is_empty()).map(PathBuf::from)),
            None => dirs.push(PathBuf::from(DEFAULT_DEBUG_DIR)),
        }
        let mut unique: Vec<PathBuf> = Vec::with_capacity(dirs.len());
        for dir in dirs {
            if !unique.contains(&dir) {
                unique.push(dir);
            }
        }
        DebugSearch {
            dirs: unique,
            debuginfod: Debuginfod::from_vars(var),
        }
    }

    /// Makes this the search of modules opened from now on without an
    /// explicit one, including the stall watchdog's symbolizer.
    pub fn install(self) {
        *CURRENT
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(self));
    }

    /// The installed search, or the one the environment gives.
    pub fn current() -> Arc<DebugSearch> {
        if let Some(search) = CURRENT
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
        {
            return Arc::clone(search);
        }
        Arc::new(DebugSearch::from_env(&[]))
    }
}

/// A debug file found for a binary, mapped.
pub struct DebugFile {
    /// Where it is.
    pub path: PathBuf,
    /// How it was found.
    pub via: Via,
    data: memmap2::Mmap,
}

impl std::fmt::Debug for DebugFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DebugFile")
            .field("path", &self.path)
            .field("via", &self.via)
            .finish_non_exhaustive()
    }
}

impl DebugFile {
    /// Maps `path` if it is an ELF file whose build id and (for a debug
    /// link) CRC say it belongs to the binary with `ids`; `Err` says why
    /// not, for the message when nothing fits.
    pub fn open(path: &Path, via: Via, ids: &DebugIds) -> Result<DebugFile, &'static str> {
        let data = map(path).map_err(|_| "unreadable")?;
        let elf = ElfFile64::<Endianness>::parse(&*data).map_err(|_| "not an ELF file")?;
        let theirs = elf.build_id().ok().flatten();
        match (&ids.build_id, theirs) {
            (Some(ours), Some(theirs)) if ours.as_slice() != theirs => {
                return Err("its build id differs");
            }
            (Some(_), None) if via != Via::DebugLink => return Err("it has no build id"),
            _ => {}
        }
        if via == Via::DebugLink
            && let Some(link) = &ids.debuglink
            && debuglink_crc(&data) != link.crc
        {
            return Err("its CRC differs from the .gnu_debuglink's");
        }
        let sections = elf.elf_section_table();
        let endian = elf.endian();
        let has = |name: &[u8]| {
            sections
                .section_by_name(endian, name)
                .is_some_and(|(_, s)| {
                    object::read::elf::SectionHeader::sh_type(s, endian) != object::elf::SHT_NOBITS
                })
        };
        if !has(b".symtab") && !has(b".debug_info") {
            return Err("it holds neither .symtab nor DWARF");
        }
        drop(elf);
        Ok(DebugFile {
            path: path.to_owned(),
            via,
            data,
        })
    }

    /// The file's bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
}

/// Maps a file read-only.
pub(super) fn map(path: &Path) -> std::io::Result<memmap2::Mmap> {
    let file = fs::File::open(path)?;
    // SAFETY: the map is private and read-only. If another process
    // truncated the file while it is mapped, reading the lost pages would
    // raise SIGBUS: the same contract perf, gdb and blazesym accept.
    // Installers and linkers replace binaries by renaming a new file over
    // the old one, which leaves this mapping intact.
    unsafe { memmap2::Mmap::map(&file) }
}

/// Why no debug file was used, for the one-line "stripped" message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Missing {
    /// The binary's build id, in hex.
    pub build_id: Option<String>,
    /// The `.gnu_debuglink` name.
    pub debuglink: Option<PathBuf>,
    /// The debug dirs searched.
    pub dirs: Vec<PathBuf>,
    /// The debuginfod servers asked (none: `DEBUGINFOD_URLS` was not set).
    pub servers: Vec<String>,
    /// The first file that was found but is not this binary's, and why.
    pub rejected: Option<(PathBuf, &'static str)>,
}

impl Missing {
    /// `no .symtab, no debug file for build id … in /usr/lib/debug`.
    pub fn reason(&self) -> String {
        let mut out = String::from("no .symtab, ");
        match (&self.build_id, &self.debuglink) {
            (Some(id), _) => {
                let _ = write!(out, "no debug file for build id {id}");
            }
            (None, Some(link)) => {
                let _ = write!(out, "no debug file {} (its .gnu_debuglink)", link.display());
            }
            (None, None) => {
                out.push_str("no build id, no .gnu_debuglink");
                return out;
            }
        }
        let dirs: Vec<String> = self.dirs.iter().map(|d| d.display().to_string()).collect();
        if !dirs.is_empty() {
            out.push_str(" in ");
            out.push_str(&dirs.join(", "));
        }
        if !self.servers.is_empty() {
            out.push_str(if dirs.is_empty() { " on " } else { " or on " });
            out.push_str(&self.servers.join(", "));
        }
        if let Some((path, why)) = &self.rejected {
            let _ = write!(out, "; {} is not its debug file: {why}", path.display());
        }
        out
    }

    /// What the user can do about it.
    pub fn remedy(&self) -> &'static str {
        if self.build_id.is_none() && self.debuglink.is_none() {
            "rebuild without strip (with no build id and no debug link, no debug file can be matched to it)"
        } else if self.servers.is_empty() && self.build_id.is_some() {
            "install its debug symbols, set DEBUGINFOD_URLS, or rebuild without strip"
        } else {
            "install its debug symbols (or pass --debug-dir), or rebuild without strip"
        }
    }
}

/// The roots and the path as the process sees it of a file ferret reads at
/// `real`: `/proc/PID/root/usr/bin/app` is `/usr/bin/app` in the target's
/// root, then on the host; any other path is just itself.
pub fn seen_from_real(real: &Path) -> Seen {
    let host = PathBuf::from("/");
    let mut components = real.components();
    let in_proc_root = (|| {
        use std::path::Component;
        (components.next()? == Component::RootDir).then_some(())?;
        (components.next()? == Component::Normal("proc".as_ref())).then_some(())?;
        let Component::Normal(pid) = components.next()? else {
            return None;
        };
        pid.to_str()?
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then_some(())?;
        (components.next()? == Component::Normal("root".as_ref())).then_some(())?;
        Some(Path::new("/proc").join(pid).join("root"))
    })();
    if let Some(root) = in_proc_root {
        let path = Path::new("/").join(components.as_path());
        return seen_in(&root, path);
    }
    let path = std::path::absolute(real).unwrap_or_else(|_| real.to_owned());
    let canonical_dir = canonical_dir_of(&path);
    Seen {
        roots: vec![host],
        path,
        canonical_dir,
    }
}

/// A file the process under `root` (`/proc/PID/root`) sees at `path`.
pub fn seen_in(root: &Path, path: PathBuf) -> Seen {
    let host = PathBuf::from("/");
    let same_root = match (fs::metadata(root), fs::metadata(&host)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    if same_root {
        let canonical_dir = canonical_dir_of(&path);
        Seen {
            roots: vec![host],
            path,
            canonical_dir,
        }
    } else {
        // Symlinks inside the target's root cannot be resolved from here
        // without escaping it; the folder as written is used.
        Seen {
            roots: vec![root.to_owned(), host],
            path,
            canonical_dir: None,
        }
    }
}

fn canonical_dir_of(path: &Path) -> Option<PathBuf> {
    let dir = path.parent()?;
    fs::canonicalize(dir).ok().filter(|c| c != dir)
}

/// Finds the debug file of the binary with `ids`, seen as `seen`, in the
/// order the module doc gives. `module` names the binary in messages.
pub fn find(
    ids: &DebugIds,
    seen: &Seen,
    search: &DebugSearch,
    module: &str,
) -> Result<DebugFile, Box<Missing>> {
    let mut missing = Box::new(Missing {
        build_id: ids.build_id.as_deref().map(hex),
        debuglink: ids.debuglink.as_ref().map(|l| l.name.clone()),
        dirs: search.dirs.clone(),
        servers: Vec::new(),
        rejected: None,
    });
    if ids.build_id.is_none() && ids.debuglink.is_none() {
        missing.dirs.clear();
        return Err(missing);
    }
    for candidate in local_candidates(ids, seen, &search.dirs) {
        if !candidate.path.is_file() {
            continue;
        }
        match DebugFile::open(&candidate.path, candidate.via, ids) {
            Ok(file) => return Ok(file),
            Err(why) => {
                missing.rejected.get_or_insert((candidate.path, why));
            }
        }
    }
    if let (Some(server), Some(build_id)) = (&search.debuginfod, &ids.build_id) {
        missing.servers.clone_from(&server.urls);
        let valid = |path: &Path| DebugFile::open(path, Via::BuildId, ids).is_ok();
        if let debuginfod::Fetched::Found { path, server } = server.fetch(build_id, module, &valid)
        {
            return DebugFile::open(&path, Via::Debuginfod(server), ids).map_err(|why| {
                missing.rejected = Some((path, why));
                missing.clone()
            });
        }
    }
    Err(missing)
}

#[cfg(test)]
mod tests;
