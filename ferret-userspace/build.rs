//! Builds the eBPF object from `ferret-ebpf` with the nightly toolchain and
//! bpf-linker, into `OUT_DIR/ferret-ebpf`, where `probe` embeds it (`EBPF_OBJECT`).
fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("ferret-ebpf");
    let root = root.to_str().expect("utf-8 path");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "ferret-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
