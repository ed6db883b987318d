//! Go binaries: recognising them, reading their function table, and the
//! runtime facts ferret needs to trace them without harming them.
//!
//! Go's runtime walks and copies goroutine stacks (when a stack grows, when
//! the collector shrinks it, on every panic and traceback), and a uretprobe's
//! hijacked return address makes it die with `fatal error: unknown caller
//! pc`. So a Go binary's exits are always probed on their return
//! instructions, whatever `--exit-probes` says.
//!
//! Goroutines move between threads, so a Go program's calls are kept on a
//! stack per goroutine. Since Go 1.17 (the register ABI) a Go function
//! finds its goroutine's `g` in r14 at every entry and return on amd64, and
//! the probe reads `g.goid` there: its offset comes from the binary's DWARF
//! description of `runtime.g` ([`GLayout::from_dwarf`]) or, without DWARF,
//! from the layout each Go release is known to have ([`GLayout::for_version`]).
//!
//! Not every function in a Go binary can be traced that way: the runtime's
//! assembly (ABI0, no r14 contract), the functions that switch stacks or run
//! without a goroutine (`runtime.morestack`, `runtime.mcall`,
//! `runtime.systemstack`, the scheduler), and the ABI wrappers (`.abi0`)
//! between them ([`skip_reason`]). A function of the runtime run on the
//! system stack that slips through costs nothing worse than a thread-keyed
//! stack: its `g` is `g0`, whose id is 0, which the decoder treats as no
//! goroutine.
//!
//! A function's stack check (`cmp rsp, 16(r14); jbe morestack`) sends it to
//! `runtime.morestack` when its stack must grow, and the runtime then
//! restarts it from its first instruction on the new stack: an entry probe
//! there would fire twice for one call. The entry probe goes after the check
//! instead ([`entry_after_stack_check`]).
//!
//! Function names are Go's own (`main.handle`, `net/http.(*Server).Serve`,
//! `main.main.func1`): from `.symtab`, or from `.gopclntab`, the runtime's
//! own table ([`parse_pclntab`]), which a stripped binary keeps.

use std::borrow::Cow;
use std::collections::HashMap;

use ferret_common::go_sched;
use iced_x86::{
    Decoder, DecoderOptions, FlowControl, Instruction, InstructionInfoFactory, Mnemonic, OpAccess,
    OpKind, Register,
};
use object::{Object, ObjectSection, ObjectSymbol};

use super::SkipReason;

/// Sections that mark an ELF file as a Go program.
const GO_SECTIONS: [&str; 3] = [".go.buildinfo", ".note.go.buildid", ".gopclntab"];

/// Where the linker puts the function table: its own section, or inside
/// `.data.rel.ro` in position-independent executables.
const PCLNTAB_SECTIONS: [&str; 2] = [".gopclntab", ".data.rel.ro.gopclntab"];

/// What is known about a Go binary from its ELF file alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoBinary {
    /// The toolchain that built it (`go1.19.8`), from `.go.buildinfo`;
    /// `None` if it could not be read (Go before 1.18 stores a pointer).
    pub version: Option<String>,
}

impl GoBinary {
    /// Recognises a Go binary by its sections (`.go.buildinfo`, the Go
    /// build id note, `.gopclntab`) or its `runtime.text` symbol.
    pub fn detect<'d>(file: &impl Object<'d>) -> Option<GoBinary> {
        let by_section = GO_SECTIONS
            .iter()
            .chain(&PCLNTAB_SECTIONS)
            .any(|name| file.section_by_name(name).is_some());
        let by_symbol = || file.symbols().any(|s| s.name() == Ok("runtime.text"));
        if !by_section && !by_symbol() {
            return None;
        }
        let version = file
            .section_by_name(".go.buildinfo")
            .and_then(|s| s.data().ok())
            .and_then(parse_buildinfo_version);
        Some(GoBinary { version })
    }

    /// The `(major, minor)` release, `go1.19.8` → `(1, 19)`.
    pub fn release(&self) -> Option<(u32, u32)> {
        parse_release(self.version.as_deref()?)
    }

    /// Whether r14 holds the current goroutine at every Go function's entry
    /// and return (the register ABI, Go ≥ 1.17 on amd64). An unknown
    /// version is assumed recent.
    pub fn has_register_abi(&self) -> bool {
        self.release().is_none_or(|r| r >= (1, 17))
    }
}

/// `go1.19.8` or `go1.21rc2` → `(1, 19)`, `(1, 21)`; `devel …` → `None`.
pub fn parse_release(version: &str) -> Option<(u32, u32)> {
    let rest = version.strip_prefix("go")?;
    let mut parts = rest.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some((major, minor.parse().ok()?))
}

/// The Go version in a `.go.buildinfo` section: `\xff Go buildinf:`, the
/// pointer size, a flags byte, and since Go 1.18 (flag bit 2) the version
/// as a varint-prefixed string at offset 32. Older files point into data
/// instead, which is not read here.
pub fn parse_buildinfo_version(data: &[u8]) -> Option<String> {
    const MAGIC: &[u8] = b"\xff Go buildinf:";
    if !data.starts_with(MAGIC) || data.get(15)? & 2 == 0 {
        return None;
    }
    let (len, used) = uvarint(data.get(32..)?)?;
    let start = 32 + used;
    let bytes = data.get(start..start.checked_add(usize::try_from(len).ok()?)?)?;
    let version = std::str::from_utf8(bytes).ok()?;
    version.starts_with("go").then(|| version.to_owned())
}

/// Offsets of the fields of Go's `runtime.g` that ferret reads, in bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GLayout {
    /// `goid`, the goroutine's id.
    pub goid: u16,
    /// `atomicstatus` (running, runnable, waiting, …), where known.
    pub atomicstatus: Option<u16>,
    /// `waitreason` (why a waiting goroutine waits), where known.
    pub waitreason: Option<u16>,
    /// `sched`, the `gobuf` a goroutine off its thread resumes from.
    pub sched: Option<u16>,
    /// Inside `sched`, where known.
    pub gobuf: Option<GobufLayout>,
    /// Where the offsets come from, for the user: `DWARF` or the release.
    pub source: String,
}

/// Offsets of the fields of Go's `runtime.gobuf` that ferret reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GobufLayout {
    /// The saved program counter.
    pub pc: u16,
    /// The saved frame pointer.
    pub bp: u16,
}

impl GLayout {
    /// The offsets of `runtime.g`'s fields from the binary's DWARF type
    /// information, if it has some.
    pub fn from_dwarf<'d>(file: &impl Object<'d>) -> Option<GLayout> {
        let sections = gimli::DwarfSections::load(|id| -> Result<Cow<'_, [u8]>, ()> {
            Ok(section_bytes(file, id.name()).unwrap_or(Cow::Borrowed(&[])))
        })
        .ok()?;
        let dwarf = sections.borrow(|s| gimli::EndianSlice::new(s, gimli::LittleEndian));
        g_members(&dwarf).ok().flatten()
    }

    /// The layout of `runtime.g` in release `(major, minor)` on amd64, as
    /// Go's sources define it: `goid` follows the scheduling state, which
    /// gained `syscallbp` in 1.23 and lost `gobuf.ret` in 1.25. Only the id
    /// is known this way.
    pub fn for_version(release: (u32, u32)) -> Option<GLayout> {
        let goid = match release {
            (1, 17..=22 | 25..=26) => 152,
            (1, 23..=24) => 160,
            _ => return None,
        };
        Some(GLayout {
            goid,
            atomicstatus: None,
            waitreason: None,
            sched: None,
            gobuf: None,
            source: format!("the layout of Go {}.{}", release.0, release.1),
        })
    }
}

/// Finds the members of the `runtime.g` and `runtime.gobuf` structure
/// types (both in the runtime's compilation unit).
fn g_members<R: gimli::Reader>(dwarf: &gimli::Dwarf<R>) -> gimli::Result<Option<GLayout>> {
    let mut units = dwarf.units();
    while let Some(header) = units.next()? {
        let unit = dwarf.unit(header)?;
        let mut entries = unit.entries();
        // The struct being read (`g` or `gobuf`) and its depth.
        let mut inside: Option<(bool, isize)> = None;
        let mut found_g = false;
        let mut layout = GLayout {
            goid: 0,
            atomicstatus: None,
            waitreason: None,
            sched: None,
            gobuf: None,
            source: "DWARF".to_owned(),
        };
        let (mut pc, mut bp) = (None, None);
        while let Some(entry) = entries.next_dfs()? {
            let depth = entry.depth();
            if let Some((is_g, at)) = inside {
                if depth <= at {
                    inside = None;
                } else {
                    if depth != at + 1 || entry.tag() != gimli::DW_TAG_member {
                        continue;
                    }
                    let name = entry
                        .attr_value(gimli::DW_AT_name)
                        .and_then(|v| dwarf.attr_string(&unit, v).ok());
                    let offset = entry
                        .attr_value(gimli::DW_AT_data_member_location)
                        .and_then(|v| v.udata_value())
                        .and_then(|v| u16::try_from(v).ok());
                    let (Some(name), Some(offset)) = (name, offset) else {
                        continue;
                    };
                    match (is_g, &*name.to_slice()?) {
                        (true, b"goid") => layout.goid = offset,
                        (true, b"atomicstatus") => layout.atomicstatus = Some(offset),
                        (true, b"waitreason") => layout.waitreason = Some(offset),
                        (true, b"sched") => layout.sched = Some(offset),
                        (false, b"pc") => pc = Some(offset),
                        (false, b"bp") => bp = Some(offset),
                        _ => {}
                    }
                    continue;
                }
            }
            if entry.tag() == gimli::DW_TAG_structure_type
                && let Some(name) = entry.attr_value(gimli::DW_AT_name)
            {
                match dwarf.attr_string(&unit, name)?.to_slice()?.as_ref() {
                    b"runtime.g" => {
                        inside = Some((true, depth));
                        found_g = true;
                    }
                    b"runtime.gobuf" => inside = Some((false, depth)),
                    _ => {}
                }
            }
        }
        if found_g {
            layout.gobuf = pc.zip(bp).map(|(pc, bp)| GobufLayout { pc, bp });
            // `stack` is the first field, so a real goid is never at 0.
            return Ok((layout.goid != 0).then_some(layout));
        }
    }
    Ok(None)
}

/// The address in the ELF (`svma`) and the size of data symbol `name` in
/// `.symtab`.
pub fn data_symbol<'d>(file: &impl Object<'d>, name: &str) -> Option<(u64, u64)> {
    file.symbols()
        .find(|s| s.kind() == object::SymbolKind::Data && s.name() == Ok(name))
        .map(|s| (s.address(), s.size()))
}

/// What the Go runtime calls wait reason 1 (`waitReasonGCAssistMarking`),
/// in every release since 1.11 made the reasons numbers.
const WAIT_REASON_1: &[u8] = b"GC assist marking";

/// At most this many wait reasons are read (Go 1.22 has 40).
const MAX_WAIT_REASONS: usize = 128;

/// The Go runtime's names of why a goroutine waits (`runtime.waitReasonStrings`,
/// a `[N]string` indexed by `g.waitreason`; index 0 is the empty "no
/// reason"), read from the file. The numbering changes between Go releases,
/// so it is read from each binary. With a symbol table the array is found
/// by name and sized by its symbol; without (a stripped binary) it is found
/// by its entry 1, a string header pointing at "GC assist marking", and read
/// up to the first entry that is not a short string of the file.
/// Position-independent binaries hold their pointers in relocations.
pub fn wait_reasons<'d>(file: &impl Object<'d>) -> Option<Vec<String>> {
    let relocated: HashMap<u64, u64> = file
        .dynamic_relocations()
        .map(|relocations| {
            relocations
                .filter(|(_, r)| {
                    matches!(r.flags(), object::RelocationFlags::Elf { r_type }
                        if r_type == object::elf::R_X86_64_RELATIVE)
                })
                .map(|(at, r)| (at, r.addend() as u64))
                .collect()
        })
        .unwrap_or_default();
    let word = |at: u64| -> Option<u64> {
        let bytes = file
            .sections()
            .find_map(|s| s.data_range(at, 8).ok().flatten())?;
        let value = u64::from_le_bytes(bytes.try_into().ok()?);
        Some(
            relocated
                .get(&at)
                .copied()
                .filter(|_| value == 0)
                .unwrap_or(value),
        )
    };
    let text = |ptr: u64, len: u64| -> Option<String> {
        if !(1..=64).contains(&len) {
            return None;
        }
        let bytes = file
            .sections()
            .find_map(|s| s.data_range(ptr, len).ok().flatten())?;
        let text = std::str::from_utf8(bytes).ok()?;
        text.chars()
            .all(|c| c.is_ascii_graphic() || c == ' ')
            .then(|| text.to_owned())
    };
    let (table, count) = match data_symbol(file, "runtime.waitReasonStrings") {
        Some((svma, size)) => (svma, usize::try_from(size / 16).ok()?.min(MAX_WAIT_REASONS)),
        None => (find_wait_reasons(file, &word)?, MAX_WAIT_REASONS),
    };
    let mut names = vec![String::new()];
    for i in 1..count {
        let header = table + 16 * i as u64;
        match word(header)
            .zip(word(header + 8))
            .and_then(|(ptr, len)| text(ptr, len))
        {
            Some(name) => names.push(name),
            None => break,
        }
    }
    (names.len() > 1).then_some(names)
}

/// Where `runtime.waitReasonStrings` is in a binary without symbols: the
/// string header 16 bytes into it points at [`WAIT_REASON_1`].
fn find_wait_reasons<'d>(
    file: &impl Object<'d>,
    word: &impl Fn(u64) -> Option<u64>,
) -> Option<u64> {
    let mut texts = Vec::new();
    for section in file.sections() {
        let (Ok(data), address) = (section.data(), section.address()) else {
            continue;
        };
        if section.kind() != object::SectionKind::ReadOnlyData
            && section.kind() != object::SectionKind::ReadOnlyString
        {
            continue;
        }
        texts.extend(
            data.windows(WAIT_REASON_1.len())
                .enumerate()
                .filter(|(_, w)| *w == WAIT_REASON_1)
                .map(|(i, _)| address + i as u64),
        );
    }
    let len = WAIT_REASON_1.len() as u64;
    file.sections()
        .filter(|s| s.kind() == object::SectionKind::Data)
        .find_map(|section| {
            let (data, start) = (section.data().ok()?, section.address());
            // The length first, straight from the bytes; then the pointer
            // before it, through the relocations.
            (1..data.len() / 8)
                .filter(|&i| data[8 * i..8 * i + 8] == len.to_le_bytes())
                .map(|i| start + 8 * (i as u64 - 1))
                .find(|&at| word(at).is_some_and(|p| texts.contains(&p)))
                .and_then(|at| at.checked_sub(16))
        })
}

/// A section's contents, decompressed if the linker compressed it (Go
/// compresses its DWARF with zlib).
fn section_bytes<'d>(file: &impl Object<'d>, name: &str) -> Option<Cow<'d, [u8]>> {
    let section = file.section_by_name(name)?;
    let compressed = section.compressed_data().ok()?;
    match compressed.format {
        object::CompressionFormat::None => Some(Cow::Borrowed(compressed.data)),
        object::CompressionFormat::Zlib => {
            use std::io::Read as _;
            let mut out = Vec::with_capacity(usize::try_from(compressed.uncompressed_size).ok()?);
            flate2::read::ZlibDecoder::new(compressed.data)
                .read_to_end(&mut out)
                .ok()?;
            Some(Cow::Owned(out))
        }
        _ => None,
    }
}

/// One function of `.gopclntab`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoFunc {
    /// As Go writes it: `main.main.func1`, `net/http.(*Server).Serve`.
    pub name: String,
    /// Address of its first instruction.
    pub svma: u64,
    /// Bytes up to the next function (its padding included).
    pub size: u64,
    /// The source file of its first instruction (`/usr/lib/go/src/runtime/asm_amd64.s`).
    pub file: Option<String>,
}

/// Why `.gopclntab` could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PclntabError {
    /// The header's magic number is not one of Go 1.16's or later.
    #[error("unsupported .gopclntab version (magic {0:#x}; Go 1.16 or later is read)")]
    Version(u32),
    /// A table or entry points outside the section.
    #[error("truncated .gopclntab")]
    Truncated,
}

/// The layout generations of `.gopclntab` that are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pcln {
    /// Go 1.16 and 1.17: absolute entry addresses.
    Go116,
    /// Go 1.18 and 1.19: entries as offsets from the text start.
    Go118,
    /// Go 1.20 and later: `_func` gained `startLine`.
    Go120,
}

/// Reads every function of a `.gopclntab` section (`data`). `text_svma` is
/// where the text starts, used when the header does not say (Go 1.16 and
/// 1.17 give absolute addresses; later ones say unless unrelocated).
pub fn parse_pclntab(data: &[u8], text_svma: u64) -> Result<Vec<GoFunc>, PclntabError> {
    let t = Table(data);
    let magic = t.u32(0)?;
    let pcln = match magic {
        0xffff_fffa => Pcln::Go116,
        0xffff_fff0 => Pcln::Go118,
        0xffff_fff1 => Pcln::Go120,
        other => return Err(PclntabError::Version(other)),
    };
    if t.u8(7)? != 8 {
        return Err(PclntabError::Version(magic));
    }
    let word = |i: usize| t.usize_at(8 + 8 * i);
    let nfunc = word(0)?;
    // After nfunc and nfiles: [textStart,] funcname, cu, filetab, pctab, pcln.
    let skip = usize::from(pcln != Pcln::Go116);
    let text_start = match pcln {
        Pcln::Go116 => 0,
        _ => match t.u64(24)? {
            0 => text_svma,
            start => start,
        },
    };
    let [funcnames, cutab, filetab, pctab, functab] = [2, 3, 4, 5, 6].map(|i| word(i + skip));
    let (funcnames, cutab, filetab, pctab, functab) =
        (funcnames?, cutab?, filetab?, pctab?, functab?);
    let entry_size = if pcln == Pcln::Go116 { 16 } else { 8 };
    let entry = |i: usize| -> Result<(u64, usize), PclntabError> {
        let at = functab + i * entry_size;
        Ok(if pcln == Pcln::Go116 {
            (t.u64(at)?, t.usize_at(at + 8)?)
        } else {
            (text_start + u64::from(t.u32(at)?), t.u32(at + 4)? as usize)
        })
    };
    // Offsets in `_func` of nameOff, pcfile and cuOffset.
    let (name_at, pcfile_at, cu_at) = if pcln == Pcln::Go116 {
        (8, 24, 36)
    } else {
        (4, 20, 32)
    };
    let mut out = Vec::with_capacity(nfunc.min(1 << 20));
    for i in 0..nfunc {
        let (svma, func) = entry(i)?;
        let (end, _) = entry(i + 1)?;
        let func = functab + func;
        let name = t.cstr(funcnames + t.u32(func + name_at)? as usize)?;
        let file = first_file(
            &t,
            pctab,
            t.u32(func + pcfile_at)?,
            cutab,
            filetab,
            t.u32(func + cu_at)?,
        );
        out.push(GoFunc {
            name: name.to_owned(),
            svma,
            size: end.saturating_sub(svma),
            file,
        });
    }
    Ok(out)
}

/// The source file of a function's first instruction: the first value of
/// its pc-to-file table (a zigzag varint delta from -1) indexes the
/// function's compilation unit's files.
fn first_file(
    t: &Table<'_>,
    pctab: usize,
    pcfile: u32,
    cutab: usize,
    filetab: usize,
    cu: u32,
) -> Option<String> {
    if pcfile == 0 {
        return None;
    }
    let (delta, _) = uvarint(t.0.get(pctab + pcfile as usize..)?)?;
    let delta = if delta & 1 == 0 {
        (delta >> 1) as i64
    } else {
        !(delta >> 1) as i64
    };
    let index = usize::try_from(delta - 1).ok()?;
    let offset = t.u32(cutab + 4 * (cu as usize + index)).ok()?;
    if offset == u32::MAX {
        return None;
    }
    t.cstr(filetab + offset as usize).ok().map(str::to_owned)
}

/// Little-endian reads that fail instead of panicking.
struct Table<'d>(&'d [u8]);

impl Table<'_> {
    fn bytes<const N: usize>(&self, at: usize) -> Result<[u8; N], PclntabError> {
        self.0
            .get(at..at.checked_add(N).ok_or(PclntabError::Truncated)?)
            .and_then(|b| b.try_into().ok())
            .ok_or(PclntabError::Truncated)
    }

    fn u8(&self, at: usize) -> Result<u8, PclntabError> {
        self.0.get(at).copied().ok_or(PclntabError::Truncated)
    }

    fn u32(&self, at: usize) -> Result<u32, PclntabError> {
        self.bytes(at).map(u32::from_le_bytes)
    }

    fn u64(&self, at: usize) -> Result<u64, PclntabError> {
        self.bytes(at).map(u64::from_le_bytes)
    }

    fn usize_at(&self, at: usize) -> Result<usize, PclntabError> {
        usize::try_from(self.u64(at)?).map_err(|_| PclntabError::Truncated)
    }

    fn cstr(&self, at: usize) -> Result<&str, PclntabError> {
        let rest = self.0.get(at..).ok_or(PclntabError::Truncated)?;
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(PclntabError::Truncated)?;
        std::str::from_utf8(&rest[..end]).map_err(|_| PclntabError::Truncated)
    }
}

/// An unsigned LEB128 varint and the bytes it took.
fn uvarint(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in data.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// The function table of a Go ELF file, if it has one that parses.
pub fn functions<'d>(file: &impl Object<'d>) -> Option<Result<Vec<GoFunc>, PclntabError>> {
    let section = PCLNTAB_SECTIONS
        .iter()
        .find_map(|name| file.section_by_name(name))?;
    let data = section.data().ok()?;
    let text = file.section_by_name(".text").map_or(0, |s| s.address());
    Some(parse_pclntab(data, text))
}

/// Functions that switch stacks, run on the system stack (`g0`) or the
/// signal stack, or run without a goroutine at all: the stack-growth and
/// scheduling machinery. Their `g` is not the caller's goroutine, several
/// never return the ordinary way, and a probe on the ones that switch
/// stacks would see the stack change under it.
const NO_GOROUTINE: &[&str] = &[
    "runtime.abort",
    "runtime.asmcgocall",
    "runtime.asmcgocall_no_g",
    "runtime.asyncPreempt",
    "runtime.asyncPreempt2",
    "runtime.badsignal",
    "runtime.cgocallback",
    "runtime.copystack",
    "runtime.debugCallV2",
    "runtime.execute",
    "runtime.exitsyscall0",
    "runtime.findRunnable",
    "runtime.findrunnable",
    "runtime.gogo",
    "runtime.goexit",
    "runtime.goexit0",
    "runtime.goexit1",
    "runtime.gopreempt_m",
    "runtime.gosave_systemstack_switch",
    "runtime.gosched_m",
    "runtime.goschedguarded_m",
    "runtime.mcall",
    "runtime.mexit",
    "runtime.morestack",
    "runtime.morestack_noctxt",
    "runtime.morestackc",
    "runtime.mstart",
    "runtime.mstart0",
    "runtime.mstart1",
    "runtime.newstack",
    "runtime.park_m",
    "runtime.preemptPark",
    "runtime.rt0_go",
    "runtime.schedule",
    "runtime.shrinkstack",
    "runtime.sighandler",
    "runtime.sigpanic",
    "runtime.sigtramp",
    "runtime.sigtrampgo",
    "runtime.systemstack",
    "runtime.systemstack_switch",
];

/// The Go scheduler's hand-off points probed for per-goroutine accounting
/// (see [`ferret_common::GoState`]), with what each does to its first
/// argument `gp` (in RAX: Go ≥ 1.17's register ABI; `go tool objdump` of Go
/// 1.19 shows each spilling AX as `gp` first thing). All are in
/// [`NO_GOROUTINE`]: they run on `g0`, so they are never traced, only
/// marked. Every one exists in Go 1.19; one missing from another release is
/// skipped, so a switch through it shows as an inconsistency (a null
/// split), never as a wrong one.
pub const HAND_OFFS: [(&str, u32); 8] = [
    ("runtime.execute", go_sched::ON),
    ("runtime.park_m", go_sched::PARK),
    ("runtime.gosched_m", go_sched::YIELD),
    ("runtime.gopreempt_m", go_sched::YIELD),
    ("runtime.goyield_m", go_sched::YIELD),
    ("runtime.preemptPark", go_sched::YIELD),
    ("runtime.exitsyscall0", go_sched::YIELD),
    ("runtime.goexit0", go_sched::EXIT),
];

/// Why a function of a Go binary must not be probed, if it must not:
/// `name` as in the symbol table (ABI0 symbols end in `.abi0`), `file` its
/// source file from `.gopclntab`, `in_pclntab` whether the runtime's table
/// lists it at all (C code linked by cgo is not listed, and is fine).
pub fn skip_reason(name: &str, file: Option<&str>, in_pclntab: bool) -> Option<SkipReason> {
    let base = name.strip_suffix(".abi0").unwrap_or(name);
    if NO_GOROUTINE.contains(&base) || base == "go:buildid" || base == "go.buildid" {
        return Some(SkipReason::GoNoGoroutine);
    }
    // Go's assembler reads `.s` files, in lower case (`asm_amd64.s`).
    if file.is_some_and(|f| std::path::Path::new(f).extension() == Some("s".as_ref())) {
        return Some(SkipReason::GoAssembly);
    }
    if in_pclntab && base.len() < name.len() {
        return Some(SkipReason::GoAbiWrapper);
    }
    None
}

/// Offset of the first instruction after a Go function's stack check
/// (`cmp rsp, 16(r14)` or `cmp r12, 16(r14)` after `lea r12, -N(rsp)`,
/// then `jbe` to the block calling `runtime.morestack`), where its entry
/// probe goes; `None` if the function has no stack check (`NOSPLIT`) or
/// the check is not the expected straight-line code. `code` is the
/// function's bytes, at `svma`.
///
/// The check leaves the stack pointer alone, so the probe sees the entry's
/// `sp`; and since the runtime restarts a function at its first
/// instruction after growing its stack, the probe fires once per call.
pub fn entry_after_stack_check(code: &[u8], svma: u64) -> Option<u64> {
    const MAX_PROLOGUE: usize = 6;
    let end = svma + code.len() as u64;
    let mut decoder = Decoder::with_ip(64, code, svma, DecoderOptions::NONE);
    let mut info = InstructionInfoFactory::new();
    let mut insn = Instruction::default();
    // Where `g` is: r14 with the register ABI; before it, a register loaded
    // from thread-local storage (`mov rcx, fs:-8`).
    let mut g = Register::R14;
    let mut compared = false;
    for _ in 0..MAX_PROLOGUE {
        if !decoder.can_decode() {
            return None;
        }
        decoder.decode_out(&mut insn);
        if insn.is_invalid() {
            return None;
        }
        let reads_guard = insn.mnemonic() == Mnemonic::Cmp
            && (0..insn.op_count()).any(|i| insn.op_kind(i) == OpKind::Memory)
            && insn.memory_base() == g
            && insn.memory_displacement64() == 16;
        if insn.mnemonic() == Mnemonic::Mov
            && insn.segment_prefix() == Register::FS
            && insn.op0_kind() == OpKind::Register
        {
            g = insn.op0_register();
        }
        match insn.flow_control() {
            FlowControl::Next if reads_guard => compared = true,
            FlowControl::Next if !writes_sp(&mut info, &insn) => {}
            FlowControl::ConditionalBranch if compared => {
                let target = insn.near_branch_target();
                let after = insn.next_ip();
                if !(after..end).contains(&target) {
                    return None;
                }
                return no_branch_lands_in(code, svma, svma + 1..=after).then_some(after - svma);
            }
            // Huge frames first check that `sp - size` does not wrap (`jb`).
            FlowControl::ConditionalBranch => {}
            _ => return None,
        }
    }
    None
}

fn writes_sp(info: &mut InstructionInfoFactory, insn: &Instruction) -> bool {
    info.info(insn).used_registers().iter().any(|r| {
        matches!(r.register(), Register::RSP | Register::ESP | Register::SP)
            && !matches!(
                r.access(),
                OpAccess::Read | OpAccess::CondRead | OpAccess::None
            )
    })
}

/// Whether no branch of the function lands in `range` (a probe there would
/// fire without a call).
fn no_branch_lands_in(code: &[u8], svma: u64, range: std::ops::RangeInclusive<u64>) -> bool {
    let mut decoder = Decoder::with_ip(64, code, svma, DecoderOptions::NONE);
    let mut insn = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut insn);
        if matches!(
            insn.flow_control(),
            FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch
        ) && range.contains(&insn.near_branch_target())
        {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests;
