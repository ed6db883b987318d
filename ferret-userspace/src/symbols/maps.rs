//! `/proc/PID/maps` parsing: which files a running process executes code
//! from, and where they are mapped (`avma` <-> `file_offset`).

use std::ops::Range;
use std::path::PathBuf;

/// One line of `/proc/PID/maps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MapsEntry {
    /// Address range in the process.
    pub avma: Range<u64>,
    /// Permissions as the kernel prints them, e.g. `r-xp`.
    pub perms: [u8; 4],
    /// Offset in the backing file of `avma.start`.
    pub file_offset: u64,
    /// Inode of the backing file; 0 for anonymous memory.
    pub inode: u64,
    /// The backing file, without a ` (deleted)` suffix. `None` for anonymous
    /// memory and pseudo entries such as `[heap]`, `[stack]` and `[vdso]`.
    pub path: Option<PathBuf>,
    /// The file was deleted or replaced after it was mapped: its path now
    /// names nothing, or a different file.
    pub deleted: bool,
}

impl MapsEntry {
    /// True if code may run from this mapping.
    pub fn executable(&self) -> bool {
        self.perms[2] == b'x'
    }

    /// The file offset mapped at `avma`, if this entry covers it.
    pub fn file_offset_of(&self, avma: u64) -> Option<u64> {
        self.avma
            .contains(&avma)
            .then(|| self.file_offset.checked_add(avma - self.avma.start))
            .flatten()
    }

    /// Where `file_offset` is mapped, if this entry covers it.
    pub fn avma_of(&self, file_offset: u64) -> Option<u64> {
        let within = file_offset.checked_sub(self.file_offset)?;
        (within < self.avma.end.saturating_sub(self.avma.start)).then(|| self.avma.start + within)
    }
}

/// Parses `/proc/PID/maps` text; lines that do not parse are skipped (the
/// format is the kernel's, but a truncated read can cut the last line).
pub fn parse_maps(maps: &str) -> Vec<MapsEntry> {
    maps.lines().filter_map(parse_line).collect()
}

/// The distinct files the process has executable mappings of, in order of
/// first appearance (the main executable first, as the kernel maps it first).
///
/// Deleted files are left out: their path now names nothing or a different
/// file (a rebuilt binary), and probes attached by path would watch the
/// wrong inode. A caller that wants to warn finds them with [`parse_maps`].
pub fn parse_maps_executables(maps: &str) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = Vec::new();
    for entry in parse_maps(maps) {
        if !entry.executable() || entry.deleted {
            continue;
        }
        if let Some(path) = entry.path
            && !paths.contains(&path)
        {
            paths.push(path);
        }
    }
    paths
}

fn parse_line(line: &str) -> Option<MapsEntry> {
    let mut rest = line;
    let mut field = || {
        rest = rest.trim_start_matches(' ');
        let end = rest.find(' ').unwrap_or(rest.len());
        let (value, tail) = rest.split_at(end);
        rest = tail;
        (!value.is_empty()).then_some(value)
    };
    let (range, perms, offset, _device, inode) = (field()?, field()?, field()?, field()?, field()?);
    let (start, end) = range.split_once('-')?;
    let avma = u64::from_str_radix(start, 16).ok()?..u64::from_str_radix(end, 16).ok()?;
    let perms: [u8; 4] = perms.as_bytes().try_into().ok()?;
    let file_offset = u64::from_str_radix(offset, 16).ok()?;
    let inode = inode.parse().ok()?;

    // The path is the rest of the line and may itself contain spaces.
    let name = rest.trim_start_matches(' ');
    let (name, deleted) = match name.strip_suffix(" (deleted)") {
        Some(name) => (name, true),
        None => (name, false),
    };
    let path = name.starts_with('/').then(|| PathBuf::from(name));
    Some(MapsEntry {
        avma,
        perms,
        file_offset,
        inode,
        path,
        deleted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
5581c7a00000-5581c7a02000 r--p 00000000 08:01 1311234                    /usr/bin/my app
5581c7a02000-5581c7a07000 r-xp 00002000 08:01 1311234                    /usr/bin/my app
5581c7a07000-5581c7a09000 r--p 00007000 08:01 1311234                    /usr/bin/my app
5581c8b3e000-5581c8b5f000 rw-p 00000000 00:00 0                          [heap]
7f3a1c000000-7f3a1c021000 rw-p 00000000 00:00 0 
7f3a1d028000-7f3a1d04e000 r--p 00000000 08:01 1318400                    /usr/lib/x86_64-linux-gnu/libc.so.6
7f3a1d04e000-7f3a1d1a3000 r-xp 00026000 08:01 1318400                    /usr/lib/x86_64-linux-gnu/libc.so.6
7f3a1d1a3000-7f3a1d1f6000 r--p 0017b000 08:01 1318400                    /usr/lib/x86_64-linux-gnu/libc.so.6
7f3a1d200000-7f3a1d210000 r-xp 00001000 08:01 1318999                    /opt/old/libplugin.so (deleted)
7f3a1d210000-7f3a1d211000 r-xp 00000000 00:01 2048                       /memfd:jit (deleted)
7f3a1d220000-7f3a1d230000 r-xp 00000000 08:01 1318401                    /usr/lib/x86_64-linux-gnu/libm.so.6
7f3a1d240000-7f3a1d250000 r-xp 00002000 08:01 1318400                    /usr/lib/x86_64-linux-gnu/libc.so.6
7f3a1d26a000-7f3a1d26c000 r--p 00000000 08:01 1318390                    /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
7f3a1d26c000-7f3a1d296000 r-xp 00002000 08:01 1318390                    /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
7ffd4e5e0000-7ffd4e601000 rw-p 00000000 00:00 0                          [stack]
7ffd4e7d4000-7ffd4e7d8000 r--p 00000000 00:00 0                          [vvar]
7ffd4e7d8000-7ffd4e7da000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
garbage line
";

    #[test]
    fn executables_in_first_appearance_order() {
        assert_eq!(
            parse_maps_executables(MAPS),
            vec![
                PathBuf::from("/usr/bin/my app"),
                PathBuf::from("/usr/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/usr/lib/x86_64-linux-gnu/libm.so.6"),
                PathBuf::from("/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
            ]
        );
    }

    #[test]
    fn entries_carry_addresses_and_flags() {
        let entries = parse_maps(MAPS);
        assert_eq!(entries.len(), 18, "the garbage line is skipped");
        let text = &entries[1];
        assert_eq!(text.avma, 0x5581_c7a0_2000..0x5581_c7a0_7000);
        assert_eq!(&text.perms, b"r-xp");
        assert!(text.executable());
        assert!(!entries[0].executable());
        assert_eq!(text.file_offset, 0x2000);
        assert_eq!(text.inode, 1_311_234);
        assert_eq!(text.file_offset_of(0x5581_c7a0_2010), Some(0x2010));
        assert_eq!(text.file_offset_of(0x5581_c7a0_7000), None);
        assert_eq!(text.avma_of(0x2010), Some(0x5581_c7a0_2010));
        assert_eq!(text.avma_of(0x1fff), None);
        assert_eq!(text.avma_of(0x7000), None);

        let anonymous = &entries[4];
        assert_eq!(anonymous.path, None);
        assert_eq!(anonymous.inode, 0);
        assert_eq!(entries[3].path, None, "[heap] is not a file");

        let deleted = &entries[8];
        assert!(deleted.deleted);
        assert_eq!(deleted.path, Some(PathBuf::from("/opt/old/libplugin.so")));
    }

    #[test]
    fn empty_input() {
        assert!(parse_maps("").is_empty());
        assert!(parse_maps_executables("\n\n").is_empty());
    }
}
