//! Property-based fuzzing of everything that parses untrusted input: ELF
//! and symbol reading on malformed binaries, BTF, the /proc parsers, the
//! ring-buffer decoder, patterns, and the recording readers used by
//! `analyze` and `export`. The only property: no panic, whatever the input
//! (errors are fine). Needs no privilege.
//!
//! A binary of its own, not a module of `e2e`: its cases are CPU-bound, and
//! in the e2e binary they would run beside the timing-sensitive end-to-end
//! tests on the same cores.

#[path = "e2e/support.rs"]
mod support;

use std::{path::Path, sync::Arc, sync::OnceLock};

use ferret::{
    analyze,
    metrics::{parse_io, parse_stat, parse_status},
    probe::{btf, decode::Decoder},
    sink::read_all,
    symbols::{Glob, Module, Pattern, demangle, parse_ld_so_conf, parse_maps},
};
use proptest::prelude::*;

/// A real ELF (a test program built with debug info), read once.
fn real_elf() -> &'static [u8] {
    static ELF: OnceLock<Vec<u8>> = OnceLock::new();
    ELF.get_or_init(|| std::fs::read(support::build("nested.c", &[])).unwrap())
}

/// A real recording, written once with ferret's own writer.
fn real_recording() -> &'static [u8] {
    static FILE: OnceLock<Vec<u8>> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = support::tempdir();
        let path = dir.path().join("r.parquet");
        let spec = analyze::synthetic::Spec {
            rows: 2_000,
            threads: 3,
            functions: 20,
            seed: 7,
        };
        analyze::synthetic::write(&path, &spec).unwrap();
        std::fs::read(&path).unwrap()
    })
}

/// Flips `flips` (position, xor) pairs in a copy of `data`.
fn mutate(data: &[u8], flips: &[(usize, u8)]) -> Vec<u8> {
    let mut out = data.to_vec();
    for &(at, x) in flips {
        if !out.is_empty() {
            let i = at % out.len();
            out[i] ^= x.max(1);
        }
    }
    out
}

/// Everything ferret does with a module, on whatever `bytes` are.
fn exercise_module(bytes: Vec<u8>) {
    let Ok(module) = Module::from_bytes(Arc::from(Path::new("/fuzz")), bytes) else {
        return;
    };
    let _ = module.is_stripped();
    let _ = module.unwind_policy();
    let _ = module.needed();
    let _ = module.run_paths();
    if let Ok((functions, _skipped)) = module.functions() {
        for f in functions.iter().take(200) {
            let _ = module.exit_points(f);
            let _ = module.entry_probe(f);
            let _ = module.calls_itself(f);
        }
    }
}

/// Everything analyze and export do with a recording, on whatever `bytes` are.
fn exercise_recording(bytes: &[u8]) {
    let dir = support::tempdir();
    let path = dir.path().join("f.parquet");
    std::fs::write(&path, bytes).unwrap();
    let _ = read_all(&path);
    if let Ok(recording) = analyze::Recording::open(&path) {
        let query = analyze::Query {
            thread: None,
            function: None,
            sort: analyze::SortBy::Total,
            top: 5,
        };
        let mut progress = analyze::Progress::hidden();
        let _ = analyze::functions(&recording, &query, &mut progress);
        let _ = analyze::trees(&recording, &query, &mut progress);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn elf_reading_survives_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        exercise_module(bytes);
    }

    #[test]
    fn elf_reading_survives_a_corrupted_real_binary(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..32)
    ) {
        exercise_module(mutate(real_elf(), &flips));
    }

    #[test]
    fn elf_reading_survives_corrupted_headers(
        head in proptest::collection::vec((0usize..1024, any::<u8>()), 1..8),
        tail in proptest::collection::vec((0usize..2048, any::<u8>()), 0..8),
    ) {
        // The ELF header and program headers sit at the start, the section
        // headers at the end: where a flip changes the most.
        let elf = real_elf();
        let len = elf.len();
        let flips: Vec<(usize, u8)> = head
            .into_iter()
            .chain(tail.into_iter().map(|(back, x)| (len.saturating_sub(1 + back), x)))
            .collect();
        exercise_module(mutate(elf, &flips));
    }

    #[test]
    fn btf_reading_survives_garbage(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        magic in any::<bool>(),
    ) {
        let mut bytes = bytes;
        if magic && bytes.len() >= 2 {
            bytes[0] = 0x9f;
            bytes[1] = 0xeb;
        }
        let _ = btf::member_offset(&bytes, "task_struct", "tgid");
    }

    #[test]
    fn recording_readers_survive_a_corrupted_file(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..16)
    ) {
        exercise_recording(&mutate(real_recording(), &flips));
    }

    #[test]
    fn recording_readers_survive_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        exercise_recording(&bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn proc_parsers_survive_any_text(text in ".{0,400}") {
        let _ = parse_stat(&text);
        let _ = parse_status(&text);
        let _ = parse_io(&text);
        let _ = parse_maps(&text);
        let _ = parse_ld_so_conf(&text);
        let _ = ferret::stall::procfs::parse_stat(&text);
        let _ = ferret::stall::procfs::parse_syscall(&text);
        let _ = ferret::stall::procfs::parse_wchan(&text);
    }

    #[test]
    fn proc_parsers_survive_plausible_stat_lines(
        pid in any::<u32>(),
        comm in "[ -~]{0,20}",
        fields in proptest::collection::vec("-?[0-9]{0,25}|[A-Z]", 0..60),
    ) {
        let line = format!("{pid} ({comm}) {}", fields.join(" "));
        let _ = parse_stat(&line);
        let _ = ferret::stall::procfs::parse_stat(&line);
    }

    #[test]
    fn patterns_and_demangling_survive_any_text(text in ".{0,200}", subject in ".{0,200}") {
        if let Ok(glob) = text.parse::<Glob>() {
            let _ = glob.matches(&subject);
        }
        let _ = text.parse::<Pattern>();
        let _ = demangle(&text);
    }

    #[test]
    fn ring_decoder_survives_any_record(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
        let _ = Decoder::new().decode_bytes(&bytes);
    }
}
