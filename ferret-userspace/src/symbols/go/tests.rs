use super::*;
use crate::symbols::testutil::{compile, go_build};
use crate::symbols::{Module, SkipReason};

/// A Go program with the shapes ferret must name: a method on a pointer,
/// a closure, recursion deep enough to grow the stack, a leaf without a
/// stack check.
const GO_PROGRAM: &str = r#"package main

import (
	"fmt"
	"runtime"
)

//go:noinline
func leaf(n int) int { return n * 2 }

//go:noinline
func recurse(n int) int {
	var buf [64]byte
	buf[n%64] = byte(n)
	if n == 0 {
		return int(buf[0])
	}
	return recurse(n-1) + int(buf[n%64])
}

type Server struct{ hits int }

//go:noinline
func (s *Server) Serve(x int) int { s.hits++; return leaf(x) }

//go:noinline
func call(f func()) { f() }

func main() {
	s := &Server{}
	call(func() { runtime.Gosched() })
	fmt.Println(recurse(1000), s.Serve(3))
}
"#;

fn built(flags: &[&str], name: &str) -> (tempfile::TempDir, Module) {
    let dir = tempfile::tempdir().unwrap();
    let bin = go_build(dir.path(), name, GO_PROGRAM, flags);
    let module = Module::open(&bin).unwrap();
    (dir, module)
}

fn function<'a>(
    functions: &'a [crate::symbols::Function],
    name: &str,
) -> &'a crate::symbols::Function {
    functions
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no {name}"))
}

/// What `go version` says, e.g. `go1.19.8`.
fn toolchain_version() -> String {
    let out = std::process::Command::new("go")
        .arg("version")
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace().nth(2).unwrap().to_owned()
}

#[test]
fn go_binaries_are_recognised_and_c_ones_are_not() {
    let (_dir, module) = built(&[], "detect");
    let go = module.go().expect("a Go binary");
    assert_eq!(go.version.as_deref(), Some(toolchain_version().as_str()));
    assert!(go.has_register_abi());

    let dir = tempfile::tempdir().unwrap();
    let c = compile(dir.path(), "c", false, "int main(void) { return 0; }", &[]);
    assert_eq!(Module::open(&c).unwrap().go(), None);
}

#[test]
fn function_names_are_go_s_own_and_the_pclntab_agrees_with_the_symbol_table() {
    let (_dir, module) = built(&[], "names");
    let (functions, _) = module.functions().unwrap();
    for name in [
        "main.leaf",
        "main.recurse",
        "main.(*Server).Serve",
        "main.main",
        "main.main.func1",
    ] {
        let f = function(&functions, name);
        assert!(module.is_go_function(f), "{name} is Go code");
    }
    let bytes = std::fs::read(&*module.path).unwrap();
    let elf = object::File::parse(&*bytes).unwrap();
    let table = functions_of(&elf);
    let from_symtab = function(&functions, "main.recurse");
    let from_pclntab = table.iter().find(|f| f.name == "main.recurse").unwrap();
    assert_eq!(from_pclntab.svma, from_symtab.svma);
    assert!(from_pclntab.size >= from_symtab.size, "padding included");
    assert!(
        from_pclntab
            .file
            .as_deref()
            .is_some_and(|f| f.ends_with("/main.go")),
        "{from_pclntab:?}"
    );
    let morestack = table
        .iter()
        .find(|f| f.name == "runtime.morestack")
        .unwrap();
    assert!(
        morestack
            .file
            .as_deref()
            .is_some_and(|f| f.ends_with("asm_amd64.s")),
        "{morestack:?}"
    );
}

fn functions_of(elf: &object::File<'_>) -> Vec<GoFunc> {
    super::functions(elf)
        .expect("a .gopclntab")
        .expect("it parses")
}

#[test]
fn a_stripped_go_binary_is_read_from_its_pclntab() {
    let (_dir, full) = built(&[], "full");
    for (flags, name) in [
        (&["-ldflags=-s -w"][..], "stripped"),
        (&["-ldflags=-s -w", "-buildmode=pie"][..], "stripped-pie"),
    ] {
        let (_dir, stripped) = built(flags, name);
        assert!(stripped.is_stripped(), "{name}");
        let (functions, skipped) = stripped.functions().unwrap();
        for wanted in ["main.recurse", "main.(*Server).Serve", "main.main.func1"] {
            let f = function(&functions, wanted);
            assert!(stripped.is_go_function(f), "{name}: {wanted}");
            assert!(f.size > 0);
        }
        let (unstripped, _) = full.functions().unwrap();
        if name == "stripped" {
            // The same link, so the same addresses.
            assert_eq!(
                function(&functions, "main.recurse").svma,
                function(&unstripped, "main.recurse").svma
            );
        }
        assert!(
            skipped
                .iter()
                .any(|s| s.name == "runtime.morestack" && s.reason == SkipReason::GoNoGoroutine),
            "{name}"
        );
    }
}

#[test]
fn assembly_and_stack_switching_functions_are_skipped_with_a_reason() {
    let (_dir, module) = built(&[], "skips");
    let (functions, skipped) = module.functions().unwrap();
    let reason = |name: &str| skipped.iter().find(|s| s.name == name).map(|s| s.reason);
    assert_eq!(reason("runtime.memmove"), Some(SkipReason::GoAssembly));
    assert_eq!(
        reason("runtime.morestack.abi0"),
        Some(SkipReason::GoNoGoroutine)
    );
    assert_eq!(reason("runtime.mcall"), Some(SkipReason::GoNoGoroutine));
    assert_eq!(
        reason("runtime.systemstack.abi0"),
        Some(SkipReason::GoNoGoroutine)
    );
    assert_eq!(reason("runtime.newstack"), Some(SkipReason::GoNoGoroutine));
    for gone in ["runtime.memmove", "runtime.mcall", "runtime.newstack"] {
        assert!(functions.iter().all(|f| f.name != gone), "{gone} listed");
    }
    // Ordinary runtime code runs on the goroutine and may be traced.
    assert!(functions.iter().any(|f| f.name == "runtime.mallocgc"));
    assert_eq!(reason("main.leaf"), None);
}

#[test]
fn the_goroutine_id_offset_from_dwarf_matches_the_release_table() {
    let (_dir, module) = built(&[], "dwarf");
    let bytes = std::fs::read(&*module.path).unwrap();
    let elf = object::File::parse(&*bytes).unwrap();
    let dwarf = GLayout::from_dwarf(&elf).expect("DWARF describes runtime.g");
    let release = module.go().unwrap().release().unwrap();
    let table = GLayout::for_version(release).expect("a known release");
    assert_eq!(dwarf.goid, table.goid, "{dwarf:?} vs {table:?}");
    assert!(
        dwarf.atomicstatus.is_some() && dwarf.waitreason.is_some(),
        "{dwarf:?}"
    );
    assert!(dwarf.sched.is_some() && dwarf.gobuf.is_some(), "{dwarf:?}");
    assert_eq!(module.go_layout().unwrap().source, "DWARF");
    // Without DWARF the release's layout stands in.
    let (_dir, bare) = built(&["-ldflags=-w"], "nodwarf");
    let layout = bare.go_layout().unwrap();
    assert_eq!(
        (layout.goid, layout.source.starts_with("the layout of Go")),
        (table.goid, true)
    );
}

#[test]
fn the_entry_probe_goes_after_the_stack_check() {
    let (_dir, module) = built(&[], "entry");
    let (functions, _) = module.functions().unwrap();
    let recurse = function(&functions, "main.recurse");
    // cmp rsp, 16(r14) (4 bytes); jbe morestack (6 bytes).
    assert_eq!(
        module.entry_probe(recurse).unwrap(),
        recurse.file_offset + 10
    );
    let leaf = function(&functions, "main.leaf");
    assert_eq!(
        module.entry_probe(leaf).unwrap(),
        leaf.file_offset,
        "no stack check"
    );
}

#[test]
fn stack_checks_are_found_in_their_three_shapes() {
    // cmp rsp, [r14+0x10]; jbe +0x20; sub rsp, 0x18
    let small = [
        0x49, 0x3b, 0x66, 0x10, 0x76, 0x20, 0x48, 0x83, 0xec, 0x18, 0x90, 0x90, 0x90, 0x90, 0x90,
        0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90,
        0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0xc3,
    ];
    assert_eq!(entry_after_stack_check(&small, 0x1000), Some(6));
    // lea r12, [rsp-0x100]; cmp r12, [r14+0x10]; jbe +0x10
    let mut large = vec![
        0x4c, 0x8d, 0xa4, 0x24, 0x00, 0xff, 0xff, 0xff, 0x4d, 0x3b, 0x66, 0x10, 0x76, 0x10,
    ];
    large.extend([0x90; 0x20]);
    assert_eq!(entry_after_stack_check(&large, 0x1000), Some(14));
    // Before the register ABI: mov rcx, fs:[-8]; cmp rsp, [rcx+0x10]; jbe +0x10
    let mut tls = vec![
        0x64, 0x48, 0x8b, 0x0c, 0x25, 0xf8, 0xff, 0xff, 0xff, 0x48, 0x3b, 0x61, 0x10, 0x76, 0x10,
    ];
    tls.extend([0x90; 0x20]);
    assert_eq!(entry_after_stack_check(&tls, 0x1000), Some(15));
    // No check (a leaf): shl rax; ret
    assert_eq!(
        entry_after_stack_check(&[0x48, 0xd1, 0xe0, 0xc3], 0x1000),
        None
    );
    // A branch back into the checked range would fire the probe twice.
    let mut looping = small.to_vec();
    looping.extend([0xeb, 0xdb]); // jmp to +0x4, the jbe
    assert_eq!(entry_after_stack_check(&looping, 0x1000), None);
}

#[test]
fn versions_are_read_from_buildinfo_and_releases_parsed() {
    let mut data = b"\xff Go buildinf:\x08\x02".to_vec();
    data.resize(32, 0);
    data.push(8);
    data.extend(b"go1.21.3");
    assert_eq!(parse_buildinfo_version(&data).as_deref(), Some("go1.21.3"));
    // Before Go 1.18 (no inline strings): not read.
    data[15] = 0;
    assert_eq!(parse_buildinfo_version(&data), None);
    assert_eq!(parse_buildinfo_version(b"garbage"), None);
    assert_eq!(parse_release("go1.19.8"), Some((1, 19)));
    assert_eq!(parse_release("go1.21rc2"), Some((1, 21)));
    assert_eq!(parse_release("devel +abc"), None);
    let goid = |minor| GLayout::for_version((1, minor)).map(|l| l.goid);
    assert_eq!(
        [16, 17, 22, 23, 24, 25, 27].map(goid),
        [
            None,
            Some(152),
            Some(152),
            Some(160),
            Some(160),
            Some(152),
            None
        ]
    );
}

#[test]
fn a_truncated_or_foreign_pclntab_is_an_error_not_a_panic() {
    assert_eq!(parse_pclntab(&[], 0), Err(PclntabError::Truncated));
    assert_eq!(
        parse_pclntab(&[0xfb, 0xff, 0xff, 0xff, 0, 0, 1, 8], 0),
        Err(PclntabError::Version(0xffff_fffb))
    );
    let mut header = vec![0xf0, 0xff, 0xff, 0xff, 0, 0, 1, 8];
    header.extend(1000u64.to_le_bytes());
    header.resize(72, 0xff);
    assert_eq!(parse_pclntab(&header, 0), Err(PclntabError::Truncated));
}

#[test]
fn skip_reasons_by_name_and_file() {
    assert_eq!(
        skip_reason("runtime.morestack.abi0", None, true),
        Some(SkipReason::GoNoGoroutine)
    );
    assert_eq!(
        skip_reason("go:buildid", None, false),
        Some(SkipReason::GoNoGoroutine)
    );
    assert_eq!(
        skip_reason(
            "runtime.memmove",
            Some("/usr/lib/go/src/runtime/memmove_amd64.s"),
            true
        ),
        Some(SkipReason::GoAssembly)
    );
    assert_eq!(
        skip_reason("main.work.abi0", Some("<autogenerated>"), true),
        Some(SkipReason::GoAbiWrapper)
    );
    assert_eq!(skip_reason("main.work", Some("/src/main.go"), true), None);
    // C linked by cgo is not in the table and is traced like C.
    assert_eq!(skip_reason("x_cgo_init", None, false), None);
}

#[test]
fn wait_reasons_are_read_by_symbol_and_found_without_one() {
    let (_dir, full) = built(&[], "full");
    let reasons = full.go_wait_reasons().expect("the table, by its symbol");
    assert_eq!(reasons[0], "", "reason 0 is none");
    assert_eq!(reasons[1], "GC assist marking");
    for wanted in ["chan receive", "sleep", "select", "semacquire"] {
        assert!(reasons.iter().any(|r| r == wanted), "{wanted}: {reasons:?}");
    }
    for (flags, name) in [
        (&["-buildmode=pie"][..], "pie"),
        (&["-ldflags=-s -w"][..], "stripped"),
        (&["-ldflags=-s -w", "-buildmode=pie"][..], "stripped-pie"),
    ] {
        let (_dir, module) = built(flags, name);
        let found = module
            .go_wait_reasons()
            .unwrap_or_else(|| panic!("{name}: no wait reasons"));
        // Without the symbol's size the table is read up to the first entry
        // that is not a name: the same names, and at most a few after them.
        assert_eq!(found[..reasons.len()], reasons[..], "{name}");
        assert!(found.len() <= reasons.len() + 8, "{name}: {found:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let c = compile(dir.path(), "c", false, "int main(void) { return 0; }", &[]);
    assert_eq!(Module::open(&c).unwrap().go_wait_reasons(), None);
}
