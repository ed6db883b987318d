//! The `-s`/`-x` pattern language: `[LIB:]GLOB` over demangled names.
//!
//! Globs are hand-written rather than borrowed from a path-glob crate because
//! symbol names are not paths: `*` must cross `::` (and `/`), and nothing is
//! special about a leading dot.

use std::fmt;
use std::str::FromStr;

use super::SymbolError;

/// A whole-string, case-sensitive wildcard pattern.
///
/// `*` matches any run of characters (including `::`), `?` one character,
/// `[abc]`, `[a-z]` and `[!x]` (or `[^x]`) one character of a class; `\`
/// makes the next character literal (for `operator*` and the like).
#[derive(Clone, PartialEq, Eq)]
pub struct Glob {
    text: String,
    tokens: Vec<Token>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyChar,
    AnyRun,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Token {
    fn matches(&self, c: char) -> bool {
        match self {
            Token::Literal(l) => *l == c,
            Token::AnyChar => true,
            Token::AnyRun => unreachable!("`*` is handled by the matcher"),
            Token::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

impl Glob {
    /// Parses a glob; an unclosed `[`, an empty class or a trailing `\` is an error.
    pub fn new(text: &str) -> Result<Glob, SymbolError> {
        let bad = |reason: &str| SymbolError::BadPattern {
            pattern: text.to_owned(),
            reason: reason.to_owned(),
        };
        let mut tokens = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            let token = match c {
                // Runs of `*` are one token: keeps the matcher's backtracking
                // bound at one position per star.
                '*' if tokens.last() == Some(&Token::AnyRun) => continue,
                '*' => Token::AnyRun,
                '?' => Token::AnyChar,
                '\\' => Token::Literal(chars.next().ok_or_else(|| bad("trailing `\\`"))?),
                '[' => {
                    let negated = chars.next_if(|&c| c == '!' || c == '^').is_some();
                    let mut ranges = Vec::new();
                    let mut first = true;
                    loop {
                        let c = chars.next().ok_or_else(|| bad("unclosed `[`"))?;
                        // A `]` right after `[` or `[!` is a member, as in shells.
                        if c == ']' && !first {
                            break;
                        }
                        first = false;
                        let lo = if c == '\\' {
                            chars.next().ok_or_else(|| bad("unclosed `[`"))?
                        } else {
                            c
                        };
                        let is_range = chars.peek() == Some(&'-')
                            && chars.clone().nth(1).is_some_and(|next| next != ']');
                        if is_range {
                            chars.next();
                            let hi = chars.next().ok_or_else(|| bad("unclosed `[`"))?;
                            if hi < lo {
                                return Err(bad(&format!("reversed range `{lo}-{hi}`")));
                            }
                            ranges.push((lo, hi));
                        } else {
                            ranges.push((lo, lo));
                        }
                    }
                    Token::Class { negated, ranges }
                }
                c => Token::Literal(c),
            };
            tokens.push(token);
        }
        Ok(Glob {
            text: text.to_owned(),
            tokens,
        })
    }

    /// The pattern as the user wrote it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True if the glob has no wildcard, so it names exactly one string.
    pub fn is_literal(&self) -> bool {
        self.tokens.iter().all(|t| matches!(t, Token::Literal(_)))
    }

    /// Whole-string match.
    ///
    /// Greedy with backtracking to the most recent `*` only: a later star can
    /// absorb anything an earlier one could, so earlier choices never need
    /// revisiting. That bounds the work at O(pattern × subject) even for
    /// `*a*a*a*a*b` against a long run of `a`s.
    pub fn matches(&self, s: &str) -> bool {
        let tokens = &self.tokens;
        let (mut t, mut i) = (0usize, 0usize);
        // Token index after the last star, and the subject position that star
        // currently stops at.
        let mut resume: Option<(usize, usize)> = None;
        loop {
            if t < tokens.len() {
                if tokens[t] == Token::AnyRun {
                    resume = Some((t + 1, i));
                    t += 1;
                    continue;
                }
                if let Some(c) = s[i..].chars().next()
                    && tokens[t].matches(c)
                {
                    t += 1;
                    i += c.len_utf8();
                    continue;
                }
            } else if i == s.len() {
                return true;
            }
            // Mismatch: let the last star swallow one more character.
            match resume {
                Some((after_star, star_end)) => match s[star_end..].chars().next() {
                    Some(c) => {
                        let next = star_end + c.len_utf8();
                        resume = Some((after_star, next));
                        t = after_star;
                        i = next;
                    }
                    None => return false,
                },
                None => return false,
            }
        }
    }

    /// The literal characters of the glob, for ranking suggestions.
    fn literal_text(&self) -> String {
        self.tokens
            .iter()
            .filter_map(|t| match t {
                Token::Literal(c) => Some(*c),
                _ => None,
            })
            .collect()
    }
}

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.text)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Glob {
    type Err = SymbolError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Glob::new(s)
    }
}

/// One `-s`/`-x` argument: an optional library glob and a function-name glob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    /// Matches a shared library's file name (`libc.so.6`), or its whole path
    /// if the glob contains a `/`. `None`: the main executable.
    pub library: Option<Glob>,
    /// Matches demangled function names.
    pub name: Glob,
}

impl Pattern {
    /// True if `path` is one of the libraries this pattern addresses.
    pub fn matches_library(&self, path: &std::path::Path) -> bool {
        let Some(library) = &self.library else {
            return false;
        };
        if library.as_str().contains('/') {
            return library.matches(&path.to_string_lossy());
        }
        path.file_name()
            .is_some_and(|name| library.matches(&name.to_string_lossy()))
    }
}

/// Position of the `LIB:` separator: the first `:` with no `:` on either side,
/// so `a::b` has none and `libfoo.so:ns::f` has one.
fn library_separator(s: &str) -> Option<usize> {
    let bytes = s.as_bytes();
    (0..bytes.len()).find(|&i| {
        bytes[i] == b':' && (i == 0 || bytes[i - 1] != b':') && bytes.get(i + 1) != Some(&b':')
    })
}

impl FromStr for Pattern {
    type Err = SymbolError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| SymbolError::BadPattern {
            pattern: s.to_owned(),
            reason: reason.to_owned(),
        };
        // Errors name the whole argument, not the half that failed.
        let glob = |part: &str| {
            Glob::new(part).map_err(|e| match e {
                SymbolError::BadPattern { reason, .. } => bad(&reason),
                other => other,
            })
        };
        if s.is_empty() {
            return Err(bad("empty pattern"));
        }
        match library_separator(s) {
            None => Ok(Pattern {
                library: None,
                name: glob(s)?,
            }),
            Some(at) => {
                let (library, name) = (&s[..at], &s[at + 1..]);
                if library.is_empty() {
                    return Err(bad("empty library part before `:`"));
                }
                if name.is_empty() {
                    return Err(bad("empty function part after `:` (use `LIB:*` for all)"));
                }
                Ok(Pattern {
                    library: Some(glob(library)?),
                    name: glob(name)?,
                })
            }
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.library {
            Some(library) => write!(f, "{library}:{}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

/// Up to `n` names that look like what `pattern` meant, best first, for a
/// pattern that matched nothing.
///
/// Names that contain the pattern's literal text (ignoring case) rank first,
/// shorter ones before longer; the rest rank by Jaro-Winkler similarity
/// against both the whole name and its last `::` component, since users
/// often type only the function's own name. Weak matches are dropped rather
/// than padding the list with noise.
pub fn closest_names<'a>(
    pattern: &str,
    names: impl Iterator<Item = &'a str>,
    n: usize,
) -> Vec<&'a str> {
    const WEAKEST: f64 = 0.75;
    let wanted = Glob::new(pattern).map_or_else(
        |_| pattern.chars().filter(|c| !"*?[]".contains(*c)).collect(),
        |g| g.literal_text(),
    );
    let wanted_lower = wanted.to_lowercase();
    let mut scored: Vec<(bool, f64, &'a str)> = Vec::new();
    for name in names {
        let lower = name.to_lowercase();
        let contains = !wanted_lower.is_empty() && lower.contains(&wanted_lower);
        let score = strsim::jaro_winkler(&wanted_lower, &lower)
            .max(strsim::jaro_winkler(&wanted_lower, &last_component(&lower)));
        if contains || score >= WEAKEST {
            scored.push((contains, score, name));
        }
    }
    scored.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then_with(|| {
                if a.0 {
                    a.2.len().cmp(&b.2.len())
                } else {
                    b.1.total_cmp(&a.1)
                }
            })
            .then_with(|| a.2.cmp(b.2))
    });
    let mut out: Vec<&'a str> = Vec::with_capacity(n);
    for (_, _, name) in scored {
        if out.len() == n {
            break;
        }
        if !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// `ns::Widget::run(int)` -> `run`: the part a user remembers.
fn last_component(name: &str) -> String {
    let without_params = name.split('(').next().unwrap_or(name);
    without_params
        .rsplit("::")
        .next()
        .unwrap_or(without_params)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(s: &str) -> Glob {
        Glob::new(s).expect("valid glob")
    }

    #[test]
    fn star_crosses_path_separators() {
        assert!(glob("myapp::*").matches("myapp::server::handle"));
        assert!(glob("*::handle").matches("myapp::server::handle"));
        assert!(glob("*").matches(""));
        assert!(glob("*").matches("a::b/c"));
        assert!(glob("my*handle").matches("myapp::server::handle"));
    }

    #[test]
    fn matches_whole_string_only() {
        assert!(!glob("myapp").matches("myapp::main"));
        assert!(!glob("main").matches("domain"));
        assert!(glob("main").matches("main"));
        assert!(!glob("main*").matches("xmain"));
    }

    #[test]
    fn case_sensitive() {
        assert!(!glob("Main").matches("main"));
    }

    #[test]
    fn question_mark_is_one_character() {
        assert!(glob("f?o").matches("foo"));
        assert!(!glob("f?o").matches("fo"));
        assert!(!glob("f?o").matches("fooo"));
        assert!(glob("f?").matches("fé"));
    }

    #[test]
    fn classes() {
        assert!(glob("[abc]x").matches("bx"));
        assert!(!glob("[abc]x").matches("dx"));
        assert!(glob("v[0-9]").matches("v7"));
        assert!(!glob("v[0-9]").matches("vx"));
        assert!(glob("[!x]y").matches("ay"));
        assert!(!glob("[!x]y").matches("xy"));
        assert!(glob("[^x]y").matches("ay"));
        assert!(glob("[]]").matches("]"));
        assert!(glob("[a-]").matches("-"));
        assert!(glob("[a-]").matches("a"));
    }

    #[test]
    fn escapes() {
        assert!(glob(r"operator\*").matches("operator*"));
        assert!(!glob(r"operator\*").matches("operator+"));
        assert!(glob(r"\?").matches("?"));
    }

    #[test]
    fn bad_globs_are_errors() {
        assert!(Glob::new("[abc").is_err());
        assert!(Glob::new("[").is_err());
        assert!(Glob::new("x\\").is_err());
        assert!(Glob::new("[z-a]").is_err());
    }

    #[test]
    fn pathological_backtracking_is_fast() {
        let subject = "a".repeat(100_000);
        let started = std::time::Instant::now();
        assert!(!glob("*a*a*a*a*b").matches(&subject));
        assert!(!glob("*a*a*a*a*a*a*a*a*a*a*b").matches(&subject));
        assert!(glob("*a*a*a*a*").matches(&subject));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn star_backtracks_correctly() {
        assert!(glob("*ab*ab").matches("xabyabab"));
        assert!(glob("a*b*c").matches("abbbcbc"));
        assert!(!glob("a*b*c").matches("abbbcb"));
        assert!(glob("**x").matches("yyx"));
    }

    #[test]
    fn pattern_without_library() {
        let p: Pattern = "myapp::*".parse().expect("valid");
        assert_eq!(p.library, None);
        assert_eq!(p.name.as_str(), "myapp::*");
        let p: Pattern = "std::vector<int>::push_back*".parse().expect("valid");
        assert_eq!(p.library, None);
    }

    #[test]
    fn pattern_with_library() {
        let p: Pattern = "libc.so.6:malloc".parse().expect("valid");
        assert_eq!(p.library.as_ref().map(Glob::as_str), Some("libc.so.6"));
        assert_eq!(p.name.as_str(), "malloc");
        let p: Pattern = "libfoo.so:ns::f*".parse().expect("valid");
        assert_eq!(p.library.as_ref().map(Glob::as_str), Some("libfoo.so"));
        assert_eq!(p.name.as_str(), "ns::f*");
        let p: Pattern = "libm*:cos".parse().expect("valid");
        assert!(p.matches_library(std::path::Path::new("/lib/x86_64-linux-gnu/libm.so.6")));
        assert!(!p.matches_library(std::path::Path::new("/lib/libc.so.6")));
        assert_eq!(p.to_string(), "libm*:cos");
    }

    #[test]
    fn library_glob_with_slash_matches_whole_path() {
        let p: Pattern = "/opt/*/libx.so:f".parse().expect("valid");
        assert!(p.matches_library(std::path::Path::new("/opt/app/libx.so")));
        assert!(!p.matches_library(std::path::Path::new("/usr/lib/libx.so")));
    }

    #[test]
    fn empty_parts_are_errors() {
        assert!("".parse::<Pattern>().is_err());
        assert!(":malloc".parse::<Pattern>().is_err());
        assert!("libc.so.6:".parse::<Pattern>().is_err());
        let err = "libc[:f".parse::<Pattern>().expect_err("unclosed class");
        assert!(err.to_string().contains("`libc[:f`"), "{err}");
    }

    #[test]
    fn closest_names_prefers_substring_then_similarity() {
        let names = [
            "myapp::server::process_request",
            "myapp::server::process_request",
            "myapp::server::start",
            "myapp::process",
            "completely_unrelated",
            "core::fmt::write",
        ];
        let got = closest_names("proces*", names.iter().copied(), 3);
        assert_eq!(
            got,
            vec!["myapp::process", "myapp::server::process_request"]
        );

        let got = closest_names("procss_request", names.iter().copied(), 2);
        assert_eq!(got.first(), Some(&"myapp::server::process_request"));
        assert!(!got.contains(&"completely_unrelated"));
    }

    #[test]
    fn closest_names_respects_n_and_empty_input() {
        let names = ["alpha", "alphabet", "alpine"];
        assert_eq!(
            closest_names("alp*", names.iter().copied(), 1),
            vec!["alpha"]
        );
        assert!(closest_names("x", std::iter::empty(), 5).is_empty());
        assert!(closest_names("alpha", names.iter().copied(), 0).is_empty());
    }
}
