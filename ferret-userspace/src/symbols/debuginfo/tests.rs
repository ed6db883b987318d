use std::collections::HashMap;

use super::*;
use crate::symbols::testutil::split;

const PROGRAM: &str = r"
    __attribute__((noinline)) int hidden_work(int x) { return x * 3 + 1; }
    int main(int argc, char **argv) { (void)argv; return hidden_work(argc); }
";

fn ids_of(path: &Path) -> DebugIds {
    let data = std::fs::read(path).expect("read");
    let elf = ElfFile64::<Endianness>::parse(&*data).expect("elf");
    DebugIds {
        build_id: elf.build_id().expect("notes").map(<[u8]>::to_vec),
        debuglink: elf
            .gnu_debuglink()
            .expect("debuglink")
            .map(|(name, crc)| DebugLink {
                name: PathBuf::from(std::str::from_utf8(name).expect("utf-8")),
                crc,
            }),
    }
}

fn place(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
    std::fs::copy(from, to).expect("copy");
}

#[test]
fn objcopy_link_records_the_crc_we_compute() {
    let s = split(PROGRAM, "prog");
    let ids = ids_of(&s.stripped);
    let link = ids
        .debuglink
        .expect("strip + --add-gnu-debuglink made a link");
    assert_eq!(link.name, Path::new("prog.debug"));
    let data = std::fs::read(&s.debug).expect("read");
    assert_eq!(debuglink_crc(&data), link.crc, "binutils' CRC is ours");
    // Our own section parser agrees with object's.
    let bytes = std::fs::read(&s.stripped).expect("read");
    let elf = ElfFile64::<Endianness>::parse(&*bytes).expect("elf");
    let section = object::ObjectSection::data(
        &object::Object::section_by_name(&elf, ".gnu_debuglink").expect("section"),
    )
    .expect("data");
    assert_eq!(
        parse_debuglink(section, false).map(|l| l.crc),
        Some(link.crc)
    );
    assert_eq!(ids.build_id, ids_of(&s.full).build_id, "strip keeps the id");
    assert!(ids.build_id.is_some_and(|id| id.len() == 20));
}

/// The whole order over a fake tree: the target's root before the
/// host's, build id before debug link, and a file that is not the
/// binary's (another build id, or a CRC that differs) passed over.
#[test]
fn lookup_order_over_a_fake_directory_tree() {
    let s = split(PROGRAM, "prog");
    let other = split(
        "int main(void) { return 42; }",
        "other", // another program: another build id
    );
    let ids = ids_of(&s.stripped);
    let build_id = ids.build_id.clone().expect("build id");
    let tree = tempfile::tempdir().expect("tempdir");
    let container = tree.path().join("container");
    let host = tree.path().join("host");
    let seen = Seen {
        roots: vec![container.clone(), host.clone()],
        path: PathBuf::from("/app/prog"),
        canonical_dir: None,
    };
    let search = DebugSearch {
        dirs: vec![PathBuf::from("/dbg")],
        debuginfod: None,
    };
    let in_root = |root: &Path, p: &str| root.join(p.trim_start_matches('/'));
    let container_id = build_id_path(&in_root(&container, "/dbg"), &build_id).expect("path");
    let host_id = build_id_path(&in_root(&host, "/dbg"), &build_id).expect("path");
    let container_link = in_root(&container, "/app/.debug/prog.debug");
    place(&s.debug, &container_id);
    place(&s.debug, &container_link);
    place(&s.debug, &host_id);

    let found = |label: &str| {
        find(&ids, &seen, &search, "prog").unwrap_or_else(|m| panic!("{label}: {}", m.reason()))
    };
    let f = found("all three");
    assert_eq!(
        (f.path.as_path(), &f.via),
        (container_id.as_path(), &Via::BuildId)
    );

    std::fs::remove_file(&container_id).expect("rm");
    let f = found("link and host");
    assert_eq!(
        (f.path.as_path(), &f.via),
        (container_link.as_path(), &Via::DebugLink)
    );

    // Same build id, one byte more: only the CRC tells it apart.
    let mut altered = std::fs::read(&s.debug).expect("read");
    altered.push(0);
    std::fs::write(&container_link, &altered).expect("write");
    let f = found("host");
    assert_eq!(
        (f.path.as_path(), &f.via),
        (host_id.as_path(), &Via::BuildId)
    );

    // Another program's debug file under this build id's path.
    std::fs::copy(&other.debug, &host_id).expect("copy");
    let missing = find(&ids, &seen, &search, "prog").expect_err("nothing fits");
    assert_eq!(
        missing.rejected,
        Some((
            container_link.clone(),
            "its CRC differs from the .gnu_debuglink's"
        ))
    );
    assert_eq!(missing.build_id.as_deref(), Some(hex(&build_id).as_str()));
    std::fs::remove_file(&container_link).expect("rm");
    let missing = find(&ids, &seen, &search, "prog").expect_err("nothing fits");
    assert_eq!(
        missing.rejected,
        Some((host_id.clone(), "its build id differs"))
    );
    assert!(
        missing
            .reason()
            .contains("is not its debug file: its build id differs"),
        "{}",
        missing.reason()
    );

    // Beside the binary (no `.debug/`), on the host.
    std::fs::remove_file(&host_id).expect("rm");
    let beside = in_root(&host, "/app/prog.debug");
    place(&s.debug, &beside);
    let f = found("beside");
    assert_eq!(
        (f.path.as_path(), &f.via),
        (beside.as_path(), &Via::DebugLink)
    );
}

#[test]
fn a_binary_with_nothing_to_find_by_is_missing_at_once() {
    let seen = Seen {
        roots: vec![PathBuf::from("/")],
        path: PathBuf::from("/x"),
        canonical_dir: None,
    };
    let missing =
        find(&DebugIds::default(), &seen, &DebugSearch::default(), "/x").expect_err("missing");
    assert_eq!(
        missing.reason(),
        "no .symtab, no build id, no .gnu_debuglink"
    );
    assert!(missing.remedy().starts_with("rebuild without strip"));
}

#[test]
fn stripped_message_names_what_was_searched_and_the_remedy() {
    let missing = Missing {
        build_id: Some("93ac61ec".to_owned()),
        debuglink: Some(PathBuf::from("libc.so.6.debug")),
        dirs: vec![PathBuf::from("/usr/lib/debug")],
        servers: Vec::new(),
        rejected: None,
    };
    assert_eq!(
        missing.reason(),
        "no .symtab, no debug file for build id 93ac61ec in /usr/lib/debug"
    );
    assert_eq!(
        missing.remedy(),
        "install its debug symbols, set DEBUGINFOD_URLS, or rebuild without strip"
    );
    let asked = Missing {
        servers: vec!["http://127.0.0.1:9".to_owned()],
        ..missing.clone()
    };
    assert_eq!(
        asked.reason(),
        "no .symtab, no debug file for build id 93ac61ec in /usr/lib/debug or on http://127.0.0.1:9"
    );
    assert!(!asked.remedy().contains("DEBUGINFOD_URLS"), "it is set");
    let link_only = Missing {
        build_id: None,
        ..missing
    };
    assert_eq!(
        link_only.reason(),
        "no .symtab, no debug file libc.so.6.debug (its .gnu_debuglink) in /usr/lib/debug"
    );
}

#[test]
fn debug_dirs_come_from_options_then_the_environment() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        let map: HashMap<&str, &str> = pairs.iter().copied().collect();
        move |k: &str| map.get(k).map(|v| (*v).to_owned())
    };
    let opt = [PathBuf::from("/opt/dbg")];
    assert_eq!(
        DebugSearch::from_vars(&opt, &env(&[])).dirs,
        [Path::new("/opt/dbg"), Path::new(DEFAULT_DEBUG_DIR)]
    );
    // FERRET_DEBUG_DIRS replaces the default; options still come first.
    assert_eq!(
        DebugSearch::from_vars(&opt, &env(&[("FERRET_DEBUG_DIRS", "/a::/b:/opt/dbg")])).dirs,
        [Path::new("/opt/dbg"), Path::new("/a"), Path::new("/b")]
    );
    assert!(
        DebugSearch::from_vars(&[], &env(&[("FERRET_DEBUG_DIRS", "")]))
            .dirs
            .is_empty()
    );
    let search = DebugSearch::from_vars(&[], &env(&[("DEBUGINFOD_URLS", "http://127.0.0.1:1")]));
    assert_eq!(
        search.debuginfod.map(|d| d.urls),
        Some(vec!["http://127.0.0.1:1".to_owned()])
    );
}

#[test]
fn proc_root_paths_are_seen_inside_the_target() {
    let me = std::process::id();
    let seen = seen_from_real(Path::new(&format!("/proc/{me}/root/usr/bin/true")));
    // ferret's own root is the host's: no second pass over the same files.
    assert_eq!(seen.roots, [PathBuf::from("/")]);
    assert_eq!(seen.path, Path::new("/usr/bin/true"));
    let plain = seen_from_real(Path::new("/proc/12x/root/bin/sh"));
    assert_eq!(plain.path, Path::new("/proc/12x/root/bin/sh"));

    let other = tempfile::tempdir().expect("tempdir");
    let seen = seen_in(other.path(), PathBuf::from("/srv/app"));
    assert_eq!(seen.roots, [other.path().to_owned(), PathBuf::from("/")]);
    assert_eq!(seen.canonical_dir, None);
}
