//! Symbol demangling: the names users write patterns against.
//!
//! Rust comes first because a legacy Rust symbol (`_ZN…17h<hash>E`) is also a
//! valid Itanium C++ name, and the C++ demangler would keep the hash as a
//! path component.

use cpp_demangle::{DemangleOptions, Symbol};

/// The readable name of a symbol: Rust legacy and v0 names without their hash
/// or crate disambiguators, C++ names with their parameter lists
/// (`ns::Widget::run(int)`), anything else unchanged.
pub fn demangle(raw: &str) -> String {
    demangle_with(raw, DemangleOptions::default())
}

/// Like [`demangle`], but a C++ name loses its parameter list
/// (`ns::Widget::run`), so a pattern need not end in `*` to pick one
/// overload set. Identical to [`demangle`] for everything else.
pub fn demangle_without_params(raw: &str) -> String {
    demangle_with(raw, DemangleOptions::default().no_params())
}

fn demangle_with(raw: &str, cpp_options: DemangleOptions) -> String {
    if let Ok(rust) = rustc_demangle::try_demangle(raw) {
        // `{:#}` drops the `::h0123…` hash of legacy names and the crate
        // disambiguators of v0 names: neither is something a user would type.
        return format!("{rust:#}");
    }
    if raw.starts_with("_Z")
        && let Ok(symbol) = Symbol::new(raw)
        && let Ok(text) = symbol.demangle_with_options(&cpp_options)
    {
        return text;
    }
    raw.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_legacy_loses_its_hash() {
        assert_eq!(
            demangle("_ZN4core3fmt5write17h0123456789abcdefE"),
            "core::fmt::write"
        );
    }

    #[test]
    fn rust_legacy_with_llvm_suffix() {
        assert_eq!(
            demangle("_ZN5myapp6server7process17h0123456789abcdefE.llvm.12345678"),
            "myapp::server::process"
        );
    }

    #[test]
    fn rust_v0_loses_disambiguators() {
        // `<mycrate::Foo as core::clone::Clone>::clone`-style v0 names carry
        // crate hashes (`Cs…_`) that `{:#}` hides.
        assert_eq!(
            demangle("_RNvNtCs1234_7mycrate3foo3bar"),
            "mycrate::foo::bar"
        );
        assert_eq!(
            demangle("_RNvMNtCs1234_7mycrate3fooNtB2_6Widget3run"),
            "<mycrate::foo::Widget>::run"
        );
    }

    #[test]
    fn cpp_keeps_parameters() {
        assert_eq!(demangle("_ZN3foo3barEv"), "foo::bar()");
        assert_eq!(demangle("_ZN2ns6Widget3runEi"), "ns::Widget::run(int)");
        assert_eq!(demangle("_Z4workPKc"), "work(char const*)");
    }

    #[test]
    fn cpp_without_params() {
        assert_eq!(
            demangle_without_params("_ZN2ns6Widget3runEi"),
            "ns::Widget::run"
        );
        assert_eq!(
            demangle_without_params("_ZN4core3fmt5write17h0123456789abcdefE"),
            "core::fmt::write"
        );
    }

    #[test]
    fn cpp_clone_suffix_is_readable() {
        let name = demangle("_ZN3foo3barEv.cold");
        assert!(name.starts_with("foo::bar()"), "{name}");
    }

    #[test]
    fn plain_c_and_garbage_stay_raw() {
        assert_eq!(demangle("malloc"), "malloc");
        assert_eq!(demangle("_Z"), "_Z");
        assert_eq!(demangle("_ZZZZ"), "_ZZZZ");
        assert_eq!(demangle(""), "");
        assert_eq!(demangle("_R"), "_R");
    }
}
