//! A debuginfod client: `GET <server>/buildid/<hex>/debuginfo`, as gdb,
//! perf and systemd-coredump do, for the servers in `DEBUGINFOD_URLS`.
//!
//! Downloads land in the cache elfutils' own client uses
//! (`<cache>/<hex>/debuginfo`), so a file gdb fetched is not fetched again.
//! The network must never hang ferret: every phase of a request (name
//! lookup, connect, waiting for the answer, each read of the body) has
//! a timeout of a few seconds (`DEBUGINFOD_TIMEOUT`), and a server that
//! fails that way is warned about once, in one line, and not asked again
//! by this process.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use super::link::hex;

/// Waiting longer than this for any step of a request (connect, first
/// answer, a read of the body) means the server is unreachable.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The servers and how to talk to them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Debuginfod {
    /// Server base URLs, in the order they are asked.
    pub urls: Vec<String>,
    /// The download cache (`<cache>/<hex>/debuginfo`).
    pub cache: PathBuf,
    /// The limit on each step of a request.
    pub timeout: Duration,
    /// The limit on a whole download, if any (`DEBUGINFOD_MAXTIME`).
    pub max_time: Option<Duration>,
}

/// What a server said about one build id.
#[derive(Debug)]
pub(super) enum Fetched {
    /// The debug file, in the cache.
    Found {
        /// Where it is.
        path: PathBuf,
        /// The server it came from, or `cache` when it was there already.
        server: String,
    },
    /// No server had it (or none could be reached).
    NotFound,
}

/// Servers this process gave up on (warned about once), and build ids a
/// server said it does not have: a module may be opened several times in
/// one session, and it must not cost the timeout again each time.
static GIVEN_UP: Mutex<Option<HashSet<String>>> = Mutex::new(None);
static NOT_THERE: Mutex<Option<HashSet<(String, String)>>> = Mutex::new(None);

fn remember(set: &Mutex<Option<HashSet<String>>>, key: &str) -> bool {
    let mut guard = set
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    guard
        .get_or_insert_with(HashSet::new)
        .insert(key.to_owned())
}

fn known(set: &Mutex<Option<HashSet<String>>>, key: &str) -> bool {
    let guard = set
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    guard.as_ref().is_some_and(|s| s.contains(key))
}

impl Debuginfod {
    /// From `DEBUGINFOD_URLS` (space-separated; unset or blank: no
    /// debuginfod), `DEBUGINFOD_CACHE_PATH` (else
    /// `$XDG_CACHE_HOME/debuginfod_client`, else
    /// `$HOME/.cache/debuginfod_client`), `DEBUGINFOD_TIMEOUT` and
    /// `DEBUGINFOD_MAXTIME` (seconds), as elfutils reads them.
    pub fn from_vars(var: &dyn Fn(&str) -> Option<String>) -> Option<Debuginfod> {
        let urls: Vec<String> = var("DEBUGINFOD_URLS")?
            .split_whitespace()
            .map(|u| u.trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty())
            .collect();
        if urls.is_empty() {
            return None;
        }
        let nonempty = |name: &str| var(name).filter(|v| !v.is_empty());
        let cache = nonempty("DEBUGINFOD_CACHE_PATH")
            .map(PathBuf::from)
            .or_else(|| nonempty("XDG_CACHE_HOME").map(|d| Path::new(&d).join("debuginfod_client")))
            .or_else(|| nonempty("HOME").map(|h| Path::new(&h).join(".cache/debuginfod_client")))
            .unwrap_or_else(|| std::env::temp_dir().join("debuginfod_client"));
        let seconds = |name: &str| {
            nonempty(name)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s > 0.0)
                .map(Duration::from_secs_f64)
        };
        Some(Debuginfod {
            urls,
            cache,
            timeout: seconds("DEBUGINFOD_TIMEOUT").unwrap_or(DEFAULT_TIMEOUT),
            max_time: seconds("DEBUGINFOD_MAXTIME"),
        })
    }

    /// The URL of the debug file of `build_id` on `server`.
    pub fn url(server: &str, build_id: &[u8]) -> String {
        format!(
            "{}/buildid/{}/debuginfo",
            server.trim_end_matches('/'),
            hex(build_id)
        )
    }

    /// Where the debug file of `build_id` is cached.
    pub fn cache_file(&self, build_id: &[u8]) -> PathBuf {
        self.cache.join(hex(build_id)).join("debuginfo")
    }

    /// The debug file of `build_id`, from the cache or the first server
    /// that has one that `valid` accepts (its build id is the binary's).
    /// `module` names the binary in messages.
    pub(super) fn fetch(
        &self,
        build_id: &[u8],
        module: &str,
        valid: &dyn Fn(&Path) -> bool,
    ) -> Fetched {
        let cached = self.cache_file(build_id);
        if cached.is_file() && valid(&cached) {
            return Fetched::Found {
                path: cached,
                server: "cache".to_owned(),
            };
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_resolve(Some(self.timeout))
            .timeout_connect(Some(self.timeout))
            .timeout_send_request(Some(self.timeout))
            .timeout_recv_response(Some(self.timeout))
            .timeout_per_read(Some(self.timeout))
            .timeout_global(self.max_time)
            .http_status_as_error(false)
            .build()
            .into();
        let id = hex(build_id);
        for server in &self.urls {
            let not_there = (server.clone(), id.clone());
            if known(&GIVEN_UP, server)
                || NOT_THERE
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .as_ref()
                    .is_some_and(|s| s.contains(&not_there))
            {
                continue;
            }
            match self.download(&agent, server, build_id, module, &cached, valid) {
                Ok(true) => {
                    return Fetched::Found {
                        path: cached,
                        server: server.clone(),
                    };
                }
                Ok(false) => {
                    NOT_THERE
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .get_or_insert_with(HashSet::new)
                        .insert(not_there);
                }
                Err(why) => {
                    if remember(&GIVEN_UP, server) {
                        eprintln!(
                            "ferret: warning: debuginfod server {server} {why}; going on without it"
                        );
                    }
                }
            }
        }
        Fetched::NotFound
    }

    /// `Ok(true)`: the file is at `dest`; `Ok(false)`: the server does not
    /// have it; `Err`: the server is not usable (the warning's wording).
    fn download(
        &self,
        agent: &ureq::Agent,
        server: &str,
        build_id: &[u8],
        module: &str,
        dest: &Path,
        valid: &dyn Fn(&Path) -> bool,
    ) -> Result<bool, String> {
        let url = Debuginfod::url(server, build_id);
        let unreachable = |e: &ureq::Error| match e {
            ureq::Error::Timeout(_) => format!(
                "is unreachable (no answer within {})",
                seconds(self.timeout)
            ),
            other => format!("is unreachable ({other})"),
        };
        let response = agent.get(&url).call().map_err(|e| unreachable(&e))?;
        match response.status().as_u16() {
            200 => {}
            404 => return Ok(false),
            status => return Err(format!("answered HTTP {status} for {url}")),
        }
        let size = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .map_or_else(String::new, |n| format!(", {:.1} MB", n as f64 / 1e6));
        eprintln!(
            "ferret: fetching the debug file of {module} from {server} (build id {}{size})",
            hex(build_id)
        );
        let folder = dest.parent().unwrap_or(Path::new("."));
        let io_error = |e: &io::Error| format!("could not be cached in {}: {e}", folder.display());
        fs::create_dir_all(folder).map_err(|e| io_error(&e))?;
        let partial = folder.join(format!(".debuginfo.{}.part", std::process::id()));
        let written = fs::File::create(&partial).and_then(|mut file| {
            io::copy(&mut response.into_body().into_reader(), &mut file)?;
            file.sync_all()
        });
        if let Err(e) = written {
            let _ = fs::remove_file(&partial);
            // A body that stops coming is a timeout too.
            return Err(
                if e.kind() == io::ErrorKind::TimedOut
                    || e.get_ref()
                        .is_some_and(|inner| inner.to_string().contains("timeout"))
                {
                    format!(
                        "stopped sending {url} (nothing for {})",
                        seconds(self.timeout)
                    )
                } else {
                    format!("failed while sending {url}: {e}")
                },
            );
        }
        if !valid(&partial) {
            let _ = fs::remove_file(&partial);
            return Err(format!(
                "sent a file for {url} that is not the debug file of build id {}",
                hex(build_id)
            ));
        }
        fs::rename(&partial, dest).map_err(|e| io_error(&e))?;
        Ok(true)
    }
}

fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn servers_cache_and_timeouts_come_from_the_elfutils_variables() {
        assert_eq!(Debuginfod::from_vars(&vars(&[])), None);
        assert_eq!(
            Debuginfod::from_vars(&vars(&[("DEBUGINFOD_URLS", "  ")])),
            None
        );
        let d = Debuginfod::from_vars(&vars(&[
            (
                "DEBUGINFOD_URLS",
                "https://a.example/ http://b.example:8002",
            ),
            ("HOME", "/home/u"),
        ]))
        .expect("configured");
        assert_eq!(d.urls, ["https://a.example", "http://b.example:8002"]);
        assert_eq!(d.cache, Path::new("/home/u/.cache/debuginfod_client"));
        assert_eq!(d.timeout, DEFAULT_TIMEOUT);
        assert_eq!(d.max_time, None);

        let d = Debuginfod::from_vars(&vars(&[
            ("DEBUGINFOD_URLS", "http://x"),
            ("DEBUGINFOD_CACHE_PATH", "/var/cache/d"),
            ("XDG_CACHE_HOME", "/xdg"),
            ("DEBUGINFOD_TIMEOUT", "1.5"),
            ("DEBUGINFOD_MAXTIME", "nonsense"),
        ]))
        .expect("configured");
        assert_eq!(d.cache, Path::new("/var/cache/d"));
        assert_eq!(d.timeout, Duration::from_millis(1500));
        assert_eq!(d.max_time, None, "an unparsable limit is no limit");
        assert_eq!(
            d.cache_file(&[0xab, 0x01]),
            Path::new("/var/cache/d/ab01/debuginfo")
        );
        let d = Debuginfod::from_vars(&vars(&[
            ("DEBUGINFOD_URLS", "http://x"),
            ("XDG_CACHE_HOME", "/xdg"),
        ]))
        .expect("configured");
        assert_eq!(d.cache, Path::new("/xdg/debuginfod_client"));
    }

    #[test]
    fn url_names_the_build_id_in_hex() {
        assert_eq!(
            Debuginfod::url("http://127.0.0.1:8002/", &[0x93, 0xac, 0x01]),
            "http://127.0.0.1:8002/buildid/93ac01/debuginfo"
        );
    }
}
