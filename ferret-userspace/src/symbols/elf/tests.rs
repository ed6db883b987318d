use super::*;
use crate::symbols::exits::ExitKind;
use crate::symbols::testutil::{compile, run};
use object::{Object as _, ObjectSection as _};

const C_PROGRAM: &str = r#"
#include <stdio.h>
#include <stdlib.h>

static __attribute__((noinline)) int work(int x) {
    int sum = 0;
    for (int i = 0; i < x * 1000; i++) sum += i ^ x;
    return sum;
}

__attribute__((noinline, cold)) void report(int x) { fprintf(stderr, "bad %d\n", x); }

__attribute__((noinline)) int checked(int x) {
    if (__builtin_expect(x < 0, 0)) { report(x); printf("again\n"); return -1; }
    return x * 2;
}

int __impl_long(int x) { return x + 1; }
extern int short_a(int) __attribute__((alias("__impl_long")));
extern int weak_b(int) __attribute__((weak, alias("__impl_long")));

int main(int argc, char **argv) {
    (void)argv;
    printf("%d\n", work(argc) + checked(argc) + short_a(argc));
    return 0;
}
"#;

const CXX_PROGRAM: &str = r#"
#include <stdexcept>
namespace ns {
struct Widget {
    __attribute__((noinline)) int run(int x) {
        if (x > 3) throw std::runtime_error("too big");
        return x * 2;
    }
};
}
int main(int argc, char **) {
    ns::Widget w;
    try { return w.run(argc); } catch (const std::exception &) { return 1; }
}
"#;

fn find<'a>(functions: &'a [Function], name: &str) -> &'a Function {
    functions
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("{name} not among {:?}", names(functions)))
}

fn names(functions: &[Function]) -> Vec<&str> {
    functions.iter().map(|f| f.name.as_str()).collect()
}

/// The bytes at `svma` as the section headers place them, independently of
/// the program headers `Module` uses.
fn bytes_via_section(data: &[u8], svma: u64, len: u64) -> Vec<u8> {
    let file = ElfFile64::<Endianness>::parse(data).expect("test binary parses");
    let section = file
        .sections()
        .find(|s| s.address() <= svma && svma < s.address() + s.size())
        .expect("a section holds the function");
    let bytes = section.data().expect("section data");
    let start = (svma - section.address()) as usize;
    bytes[start..start + len as usize].to_vec()
}

#[test]
fn c_program_functions_offsets_and_exits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = compile(dir.path(), "prog", false, C_PROGRAM, &["-O1", "-g"]);
    let data = std::fs::read(&exe).expect("read test binary");
    let module = Module::open(&exe).expect("module opens");
    assert!(!module.is_stripped());
    assert_eq!(module.needed(), vec!["libc.so.6".to_owned()]);

    let (functions, skipped) = module.functions().expect("functions");
    let main = find(&functions, "main");
    let work = find(&functions, "work");
    for f in [main, work] {
        assert_eq!(&*f.module, exe.as_path());
        assert!(f.size > 0);
        let in_file = &data[f.file_offset as usize..(f.file_offset + f.size) as usize];
        assert_eq!(
            in_file,
            bytes_via_section(&data, f.svma, f.size),
            "{}",
            f.name
        );
        assert_eq!(module.file_offset(f.svma), Some(f.file_offset));
        assert_eq!(module.svma(f.file_offset), Some(f.svma));
    }

    // Aliases collapse to one function, named by the global, non-underscore,
    // shortest name.
    let at_alias: Vec<&Function> = functions
        .iter()
        .filter(|f| f.svma == find(&functions, "short_a").svma)
        .collect();
    assert_eq!(at_alias.len(), 1, "{at_alias:?}");
    assert!(!names(&functions).contains(&"weak_b"));
    assert!(!names(&functions).contains(&"__impl_long"));

    // Imports are reported, not listed.
    assert!(!names(&functions).contains(&"printf"));
    assert!(
        skipped
            .iter()
            .any(|s| s.name == "printf" && s.reason == SkipReason::Undefined),
        "{skipped:?}"
    );

    let exits = module.exits(work).expect("exits of work");
    assert!(
        exits.points.iter().any(|p| p.kind == ExitKind::Return),
        "{exits:?}"
    );
    for point in &exits.points {
        assert!(work.file_offset <= point.file_offset);
        assert!(point.file_offset < work.file_offset + work.size);
        if point.kind == ExitKind::Return {
            let byte = data[point.file_offset as usize];
            assert!(byte == 0xc3 || byte == 0xc2 || byte == 0xf3, "{byte:#x}");
        }
    }
    assert_eq!(
        module.exit_points(work).expect("exit points"),
        exits
            .points
            .iter()
            .map(|p| p.file_offset)
            .collect::<Vec<_>>()
    );
    assert_eq!(module.unwind_policy(), UnwindPolicy::CannotUnwind);

    let inside = module
        .function_containing(work.svma + work.size - 1)
        .expect("catalog");
    assert_eq!(inside.as_ref(), Some(work));
    assert_eq!(module.function_containing(0).expect("catalog"), None);
}

#[test]
fn cold_part_belongs_to_its_function() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = compile(dir.path(), "prog", false, C_PROGRAM, &["-O2"]);
    let module = Module::open(&exe).expect("module opens");
    let (functions, skipped) = module.functions().expect("functions");
    assert!(
        skipped
            .iter()
            .any(|s| s.name.starts_with("checked.cold") && s.reason == SkipReason::Fragment),
        "gcc -O2 should have split checked.cold: {skipped:?}"
    );
    assert!(!names(&functions).iter().any(|n| n.contains(".cold")));

    let checked = find(&functions, "checked");
    let exits = module.exits(checked).expect("exits");
    // The jump into the cold part is not an exit; the cold part's `ret` is.
    assert!(
        exits.points.iter().all(|p| p.kind == ExitKind::Return),
        "{exits:?}"
    );
    let outside: Vec<_> = exits
        .points
        .iter()
        .filter(|p| !(checked.svma..checked.svma + checked.size).contains(&p.svma))
        .collect();
    assert_eq!(outside.len(), 1, "one ret in checked.cold: {exits:?}");
}

#[test]
fn cxx_program_may_unwind_and_demangles() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = compile(dir.path(), "widget", true, CXX_PROGRAM, &["-O1"]);
    let module = Module::open(&exe).expect("module opens");
    match module.unwind_policy() {
        UnwindPolicy::MayUnwind { reason } => assert!(!reason.is_empty()),
        UnwindPolicy::CannotUnwind => panic!("a C++ program that throws must be MayUnwind"),
    }
    let (functions, _) = module.functions().expect("functions");
    let run = find(&functions, "ns::Widget::run(int)");
    assert!(run.raw_name.starts_with("_ZN2ns6Widget3run"));
    assert!(!module.exit_points(run).expect("exits").is_empty());
}

#[test]
fn stripped_library_lists_exports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = r"
        static __attribute__((noinline)) int hidden(int x) { return x * 3; }
        int api_entry(int x) { return hidden(x) + 1; }
    ";
    let lib = compile(
        dir.path(),
        "libdemo.so",
        false,
        source,
        &["-O1", "-shared", "-fPIC"],
    );
    let stripped = dir.path().join("libdemo-stripped.so");
    run(std::process::Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(&lib));

    let full = Module::open(&lib).expect("library opens");
    assert!(!full.is_stripped());
    let (functions, _) = full.functions().expect("functions");
    assert!(names(&functions).contains(&"hidden"));

    let module = Module::open(&stripped).expect("stripped library opens");
    assert!(module.is_stripped());
    let (functions, _) = module.functions().expect("functions");
    let api = find(&functions, "api_entry");
    assert!(!names(&functions).contains(&"hidden"));
    assert!(!module.exit_points(api).expect("exits").is_empty());
    assert_eq!(
        api.file_offset,
        find(&full.functions().expect("f").0, "api_entry").file_offset
    );
}

#[test]
fn exits_refuse_a_function_of_another_module() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = compile(dir.path(), "prog", false, C_PROGRAM, &["-O1"]);
    let module = Module::open(&exe).expect("module opens");
    let (functions, _) = module.functions().expect("functions");
    let mut foreign = find(&functions, "main").clone();
    foreign.module = Arc::from(Path::new("/elsewhere"));
    assert!(matches!(
        module.exit_points(&foreign),
        Err(SymbolError::NoCode { .. })
    ));
    let mut beyond = find(&functions, "main").clone();
    beyond.size = u64::MAX - beyond.svma;
    assert!(module.exit_points(&beyond).is_err());
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let path: Arc<Path> = Arc::from(Path::new("/garbage"));
    let not_elf = Module::from_bytes(Arc::clone(&path), b"#!/bin/sh\necho hi\n".to_vec());
    assert!(matches!(not_elf, Err(SymbolError::NotElf { .. })));
    assert!(matches!(
        Module::from_bytes(Arc::clone(&path), Vec::new()),
        Err(SymbolError::NotElf { .. })
    ));

    let mut bytes = b"\x7fELF\x02\x01\x01".to_vec();
    bytes.resize(200, 0xab);
    assert!(Module::from_bytes(Arc::clone(&path), bytes).is_err());

    let mut i386 = b"\x7fELF\x01\x01\x01".to_vec();
    i386.resize(52, 0);
    i386[18] = 3;
    let err = Module::from_bytes(Arc::clone(&path), i386).expect_err("32-bit");
    assert!(err.to_string().contains("32-bit x86"), "{err}");
}

#[test]
fn truncated_and_corrupted_real_binaries_never_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = compile(dir.path(), "prog", false, C_PROGRAM, &["-O1"]);
    let data = std::fs::read(&exe).expect("read");
    let path: Arc<Path> = Arc::from(exe.as_path());
    let exercise = |bytes: Vec<u8>| {
        if let Ok(module) = Module::from_bytes(Arc::clone(&path), bytes)
            && let Ok((functions, _)) = module.functions()
        {
            for f in &functions {
                let _ = module.exits(f);
            }
        }
    };
    for len in (0..data.len()).step_by(97) {
        exercise(data[..len].to_vec());
    }
    let mut state = 0x9e37_79b9_u32;
    for _ in 0..200 {
        let mut bytes = data.clone();
        for _ in 0..8 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let at = state as usize % bytes.len();
            bytes[at] = (state >> 24) as u8;
        }
        exercise(bytes);
    }
}

#[test]
fn misaligned_input_is_copied_not_rejected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = compile(dir.path(), "prog", false, C_PROGRAM, &["-O1"]);
    let data = std::fs::read(&exe).expect("read");
    // The safe API cannot make a misaligned Vec, so test the copy directly.
    let mut shifted = vec![0u8];
    shifted.extend_from_slice(&data);
    let copy = Bytes::copied(&shifted[1..]);
    assert!(matches!(copy, Bytes::Copied { .. }));
    assert_eq!(copy.as_slice(), data.as_slice());
    assert!(summarize(&exe, copy.as_slice()).is_ok());
}

#[test]
fn unwind_policy_decisions() {
    let none = HashSet::new();
    assert_eq!(
        unwind_policy("prog", false, &none),
        UnwindPolicy::CannotUnwind
    );
    assert!(matches!(
        unwind_policy("prog", true, &none),
        UnwindPolicy::MayUnwind { reason } if reason == "C++ exception tables (.gcc_except_table)"
    ));
    assert!(matches!(
        unwind_policy("libstdc++.so.6", false, &none),
        UnwindPolicy::MayUnwind { reason } if reason.contains("libstdc++")
    ));
    assert!(matches!(
        unwind_policy("libgcc_s.so.1", false, &none),
        UnwindPolicy::MayUnwind { .. }
    ));
    let cancel: HashSet<_> = [UNWINDERS[4]].into_iter().collect();
    assert!(matches!(
        unwind_policy("prog", false, &cancel),
        UnwindPolicy::MayUnwind { reason } if reason.contains("pthread_cancel")
    ));
    let rust: HashSet<_> = [UNWINDERS[0]].into_iter().collect();
    assert!(matches!(
        unwind_policy("prog", true, &rust),
        UnwindPolicy::MayUnwind { reason } if reason.contains("Rust")
    ));
}

#[test]
fn name_helpers() {
    assert_eq!(unversioned("memcpy@@GLIBC_2.14"), "memcpy");
    assert_eq!(unversioned("puts@GLIBC_2.2.5"), "puts");
    assert_eq!(unversioned("plain"), "plain");
    assert_eq!(fragment_parent("main.cold"), Some("main"));
    assert_eq!(
        fragment_parent("_ZN3foo3barEv.cold.12"),
        Some("_ZN3foo3barEv")
    );
    assert_eq!(fragment_parent("work.part.0.cold"), Some("work.part.0"));
    assert_eq!(
        fragment_parent("_RNvCs1_3app3run.warm"),
        Some("_RNvCs1_3app3run")
    );
    assert_eq!(fragment_parent("coldstart"), None);
    assert_eq!(fragment_parent("foo.colder"), None);
    assert_eq!(fragment_parent("foo.cold.x"), None);
    assert_eq!(fragment_parent("foo.cold."), None);
    assert_eq!(fragment_parent(".cold"), None);
}

#[test]
fn segment_translation() {
    let text = LoadSegment {
        svma: 0x1000,
        file_offset: 0x1000,
        file_size: 0x200,
        executable: true,
    };
    assert_eq!(text.file_offset_of(0x1010, 0x10), Some(0x1010));
    assert_eq!(text.file_offset_of(0x11ff, 1), Some(0x11ff));
    assert_eq!(text.file_offset_of(0x11ff, 2), None);
    assert_eq!(text.file_offset_of(0xfff, 1), None);
    assert_eq!(text.file_offset_of(0x1200, 0), None);
    assert_eq!(text.file_offset_of(0x1000, u64::MAX), None);
    let shifted = LoadSegment {
        svma: 0x40_1000,
        file_offset: 0x1000,
        ..text
    };
    assert_eq!(shifted.file_offset_of(0x40_1134, 4), Some(0x1134));
}

/// A stripped binary reads its functions (static ones and split-off
/// parts included) from its debug file, at the full build's addresses and
/// file offsets, and its exits from its own code; without a debug file it
/// says it has no symbols anywhere.
#[test]
fn stripped_binary_takes_its_symbols_from_its_debug_file() {
    let s = crate::symbols::testutil::split(C_PROGRAM, "prog");
    let full = Module::open(&s.full).expect("full opens");
    let (full_functions, _) = full.functions().expect("functions");

    // Found by its debug link, beside it.
    let search = |dirs: Vec<PathBuf>| {
        Arc::new(DebugSearch {
            dirs,
            debuginfod: None,
        })
    };
    let seen = debuginfo::seen_from_real(&s.stripped);
    let module = Module::open_seen(&s.stripped, seen.clone(), search(Vec::new())).expect("opens");
    assert!(module.is_stripped());
    let debug = module.symbols_debug_file().expect("debug file found");
    assert_eq!(
        (debug.path.as_path(), &debug.via),
        (s.debug.as_path(), &debuginfo::Via::DebugLink)
    );
    let (functions, skipped) = module.functions().expect("functions");
    for name in ["work", "checked", "short_a", "main"] {
        let (ours, theirs) = (find(&functions, name), find(&full_functions, name));
        assert_eq!(
            (ours.svma, ours.size, ours.file_offset),
            (theirs.svma, theirs.size, theirs.file_offset),
            "{name}"
        );
        assert_eq!(
            ours.module, module.path,
            "{name} belongs to the binary, not the debug file"
        );
        assert_eq!(
            module.exit_points(ours).expect("exits"),
            full.exit_points(theirs).expect("exits"),
            "{name}: the same exits, .cold part included"
        );
    }
    let fragments = |skipped: &[Skipped]| -> Vec<String> {
        skipped
            .iter()
            .filter(|s| s.reason == SkipReason::Fragment)
            .map(|s| s.name.clone())
            .collect()
    };
    assert_eq!(
        fragments(&skipped),
        fragments(&full.functions().expect("f").1)
    );

    // Only under a build-id path in a debug dir.
    std::fs::remove_file(&s.debug).expect("rm");
    let dir = tempfile::tempdir().expect("tempdir");
    let id = full.build_id().expect("build id");
    let by_id = dir
        .path()
        .join(format!(".build-id/{}/{}.debug", &id[..2], &id[2..]));
    let _ = std::fs::create_dir_all(by_id.parent().expect("parent"));
    crate::symbols::testutil::run(
        std::process::Command::new("objcopy")
            .arg("--only-keep-debug")
            .arg(&s.full)
            .arg(&by_id),
    );
    let module = Module::open_seen(
        &s.stripped,
        seen.clone(),
        search(vec![dir.path().to_owned()]),
    )
    .expect("opens");
    assert_eq!(
        module
            .symbols_debug_file()
            .map(|d| (d.path.clone(), d.via.clone())),
        Some((by_id.clone(), debuginfo::Via::BuildId))
    );
    assert!(names(&module.functions().expect("functions").0).contains(&"work"));

    // Nowhere.
    let module = Module::open_seen(
        &s.stripped,
        seen,
        search(vec![PathBuf::from("/nonexistent")]),
    )
    .expect("opens");
    let missing = module.missing_symbols().expect("no symbols anywhere");
    assert_eq!(missing.build_id.as_deref(), Some(id.as_str()));
    assert!(!names(&module.functions().expect("functions").0).contains(&"work"));
    let message = module.stripped_error().expect("an error").to_string();
    assert_eq!(
        message,
        format!(
            "{} is stripped (no .symtab, no debug file for build id {id} in /nonexistent); \
             install its debug symbols, set DEBUGINFOD_URLS, or rebuild without strip",
            s.stripped.display()
        )
    );
}
