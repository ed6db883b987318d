//! `ferret-demo`: a small, deterministic workload that gives a profiler something
//! to show.
//!
//! It runs until killed (or for `--seconds N`) and prints one line at start.
//! Every function worth tracing is `#[inline(never)]` and lives in this crate,
//! so `ferret ... -s 'ferret_demo::*'` finds them by their demangled names
//! (`ferret_demo::handle_request`, `ferret_demo::pool::health_check`, ...).
//!
//! What it does, thread by thread:
//!
//! - `http-worker-0` .. `http-worker-3`: a stream of requests,
//!   `handle_request -> parse_request -> checksum`, `authorize -> check_token`,
//!   `query_db -> pool::acquire_connection / fetch_rows -> decode_row*`,
//!   `render_response -> checksum`. About one request in 50 has a slow
//!   `query_db` (300-800 ms); about one in 1000 has a `check_token` that panics,
//!   caught by `catch_unwind` in `authorize` (the panic is not printed).
//! - `db-pool`: `pool::health_check -> pool::ping` every 20 ms, and a slower
//!   `pool::reconnect` every 5 s, which takes the pool's lock.
//! - `scheduler`: `run_timers` every 100 ms, `rebuild_index -> walk_tree`
//!   (recursive, depth 6-24) every 500 ms, and `gc_sweep` every 3 s, which
//!   allocates and touches 40-160 MiB, holds it briefly and frees it, so the
//!   resident set size rises and falls. 10 s in, and every minute after,
//!   `pool::compact` holds the pool's lock for 15 s: the scheduler sleeps
//!   inside it and the next `pool::reconnect` waits for the lock, so both
//!   stall (past `--stall`'s default 5 s) and show in ferret's Stalls pane.
//!
//! Randomness comes from a seeded xorshift generator per thread, so runs are
//! repeatable in shape (timing still depends on the machine).

use std::fmt::Write as _;
use std::hint::black_box;
use std::panic;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Set when the run is over; every loop checks it.
static STOP: AtomicBool = AtomicBool::new(false);
/// Requests handled so far, across all workers.
static REQUESTS: AtomicU64 = AtomicU64::new(0);

const WORKERS: u64 = 4;
const USAGE: &str = "usage: ferret-demo [--seconds N]\n\
    Runs a multi-threaded demo workload until killed, or for N seconds.";

fn main() {
    let seconds = match parse_args(std::env::args().skip(1)) {
        Ok(Args::Run { seconds }) => seconds,
        Ok(Args::Help) => {
            println!("{USAGE}");
            return;
        }
        Err(message) => {
            eprintln!("error: {message}\n{USAGE}");
            std::process::exit(2);
        }
    };
    quiet_injected_panics();

    let how_long = seconds.map_or_else(
        || "until killed".to_owned(),
        |s| format!("for {}", format_seconds(s)),
    );
    println!(
        "ferret-demo: pid {}, threads http-worker-0..{}, db-pool, scheduler; running {how_long}",
        std::process::id(),
        WORKERS - 1
    );

    let mut threads = Vec::new();
    for index in 0..WORKERS {
        threads.push(spawn(&format!("http-worker-{index}"), move || {
            http_worker(index);
        }));
    }
    threads.push(spawn("db-pool", pool::run));
    threads.push(spawn("scheduler", scheduler));

    if let Some(seconds) = seconds {
        let deadline = Instant::now() + seconds;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            thread::sleep(left.min(Duration::from_millis(100)));
        }
        STOP.store(true, Ordering::Relaxed);
    }
    for handle in threads {
        handle.join().expect("demo thread panicked");
    }
}

#[derive(Debug, PartialEq)]
enum Args {
    Help,
    /// Run until killed (`None`) or for this long.
    Run {
        seconds: Option<Duration>,
    },
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut seconds = None;
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "-h" | "--help" => return Ok(Args::Help),
            "--seconds" => args.next().ok_or("--seconds needs a value")?,
            other => match other.strip_prefix("--seconds=") {
                Some(value) => value.to_owned(),
                None => return Err(format!("unexpected argument `{other}`")),
            },
        };
        let parsed: f64 = value
            .parse()
            .map_err(|_| format!("`{value}` is not a number of seconds"))?;
        if !parsed.is_finite() || parsed < 0.0 {
            return Err(format!("`{value}` is not a number of seconds"));
        }
        seconds = Some(Duration::from_secs_f64(parsed));
    }
    Ok(Args::Run { seconds })
}

fn format_seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s} s")
    }
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> thread::JoinHandle<()> {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
        .expect("spawn demo thread")
}

/// The payload of the panic `check_token` raises on purpose.
struct InjectedPanic;

/// Keeps the deliberate panics off stderr; any other panic is reported as usual.
fn quiet_injected_panics() {
    let default = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if !info.payload().is::<InjectedPanic>() {
            default(info);
        }
    }));
}

// --- helpers that must not show up as traced calls -------------------------
// They are tiny and called very often, so they are forced inline: a probe on
// each would only add noise (and about 10 µs per call on a VM).

/// Seeded xorshift64 generator.
struct Rng(u64);

#[allow(clippy::inline_always)] // keep these out of the traced symbol set
impl Rng {
    #[inline(always)]
    fn new(seed: u64) -> Self {
        // Spread small seeds over the state; the state must not be zero.
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    #[inline(always)]
    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform-enough value in `lo..=hi`.
    #[inline(always)]
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability 1/n.
    #[inline(always)]
    fn one_in(&mut self, n: u64) -> bool {
        self.next_u64().is_multiple_of(n)
    }
}

#[allow(clippy::inline_always)] // keep it out of the traced symbol set
#[inline(always)]
fn stopping() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// Sleeps for `ms` milliseconds, waking early when the run stops.
#[allow(clippy::inline_always)] // keep it out of the traced symbol set
#[inline(always)]
fn nap(ms: u64) {
    let deadline = Instant::now() + Duration::from_millis(ms);
    while !stopping() {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return;
        };
        thread::sleep(left.min(Duration::from_millis(50)));
    }
}

// --- http workers ----------------------------------------------------------

struct Request {
    id: u64,
    route: u64,
    rows: u64,
    token: u64,
}

#[inline(never)]
fn http_worker(index: u64) {
    let mut rng = Rng::new(index + 1);
    while !stopping() {
        let id = REQUESTS.fetch_add(1, Ordering::Relaxed);
        black_box(handle_request(&mut rng, id));
        nap(rng.range(1, 15));
    }
}

#[inline(never)]
fn handle_request(rng: &mut Rng, id: u64) -> u64 {
    let request = parse_request(rng, id);
    if !authorize(&request) {
        return 401;
    }
    let rows = query_db(rng, &request);
    render_response(&request, &rows)
}

#[inline(never)]
fn parse_request(rng: &mut Rng, id: u64) -> Request {
    let route = rng.range(0, 7);
    let header = format!("GET /api/v1/items/{route}?page={id} HTTP/1.1\r\nHost: demo\r\n\r\n");
    let digest = checksum(header.as_bytes());
    // About one token in 1000 is "malformed" and makes check_token panic.
    let token = if rng.one_in(1000) { 0 } else { digest | 1 };
    Request {
        id,
        route,
        rows: rng.range(3, 12),
        token,
    }
}

/// Runs the token check, turning its panic into a rejected request.
#[inline(never)]
fn authorize(request: &Request) -> bool {
    let token = request.token;
    panic::catch_unwind(move || check_token(token)).unwrap_or(false)
}

#[inline(never)]
fn check_token(token: u64) -> bool {
    if token == 0 {
        panic::panic_any(InjectedPanic);
    }
    black_box(token.count_ones()) > 0
}

#[inline(never)]
fn query_db(rng: &mut Rng, request: &Request) -> Vec<Row> {
    let connection = pool::acquire_connection(request.id);
    if rng.one_in(50) {
        // A slow query: waits on a lock held elsewhere.
        thread::sleep(Duration::from_millis(rng.range(300, 800)));
    }
    fetch_rows(rng, connection, request.rows)
}

struct Row {
    key: u64,
    value: u64,
}

#[inline(never)]
fn fetch_rows(rng: &mut Rng, connection: u64, count: u64) -> Vec<Row> {
    (0..count)
        .map(|_| decode_row(rng.next_u64() ^ connection))
        .collect()
}

/// A few microseconds of arithmetic: the steady stream of short calls.
#[inline(never)]
fn decode_row(raw: u64) -> Row {
    let mut value = raw;
    for round in 0..400u64 {
        value = value.rotate_left(5) ^ round.wrapping_mul(0x0100_0000_01B3);
        value = black_box(value);
    }
    Row { key: raw, value }
}

#[inline(never)]
fn render_response(request: &Request, rows: &[Row]) -> u64 {
    let mut body = format!("{{\"route\":{},\"items\":[", request.route);
    for row in rows {
        // Writing to a String cannot fail.
        let _ = write!(body, "{{\"k\":{},\"v\":{}}},", row.key, row.value);
    }
    body.push_str("]}");
    checksum(body.as_bytes())
}

/// FNV-1a over the bytes.
#[inline(never)]
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

// --- connection pool -------------------------------------------------------

mod pool {
    use std::hint::black_box;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::{Rng, nap, stopping};

    const CONNECTIONS: u64 = 4;
    static CHECKOUTS: AtomicU64 = AtomicU64::new(0);
    /// Held by `reconnect` for a moment, by `compact` for seconds.
    static POOL_LOCK: Mutex<u64> = Mutex::new(0);
    /// How long `compact` holds the lock.
    pub(super) const COMPACT_MS: u64 = 15_000;

    #[inline(never)]
    pub(super) fn acquire_connection(request: u64) -> u64 {
        CHECKOUTS.fetch_add(1, Ordering::Relaxed);
        request % CONNECTIONS
    }

    /// The `db-pool` thread.
    #[inline(never)]
    pub(super) fn run() {
        let mut rng = Rng::new(101);
        let mut rounds = 0u64;
        while !stopping() {
            health_check(&mut rng);
            rounds += 1;
            if rounds.is_multiple_of(250) {
                reconnect(&mut rng);
            }
            nap(20);
        }
    }

    #[inline(never)]
    fn health_check(rng: &mut Rng) -> bool {
        (0..CONNECTIONS).all(|connection| ping(connection, rng.next_u64()))
    }

    #[inline(never)]
    fn ping(connection: u64, nonce: u64) -> bool {
        black_box(connection ^ nonce ^ CHECKOUTS.load(Ordering::Relaxed)) != u64::MAX
    }

    #[inline(never)]
    fn reconnect(rng: &mut Rng) {
        let mut generation = POOL_LOCK
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *generation += 1;
        std::thread::sleep(Duration::from_millis(rng.range(20, 80)));
    }

    /// Maintenance on the scheduler thread: holds the pool's lock for
    /// [`COMPACT_MS`] (sleeping), so a `reconnect` meanwhile has to wait.
    #[inline(never)]
    pub(super) fn compact() {
        let generation = POOL_LOCK
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        nap(COMPACT_MS);
        drop(generation);
    }
}

// --- scheduler -------------------------------------------------------------

#[inline(never)]
fn scheduler() {
    let mut rng = Rng::new(202);
    let mut ticks = 0u64;
    while !stopping() {
        run_timers(ticks);
        if ticks.is_multiple_of(5) {
            black_box(rebuild_index(rng.range(6, 24)));
        }
        if ticks % 30 == 29 {
            gc_sweep(&mut rng);
        }
        // 10 s in, then every minute (ticks are 100 ms apart).
        if ticks % 600 == 100 {
            pool::compact();
        }
        ticks += 1;
        nap(100);
    }
}

#[inline(never)]
fn run_timers(tick: u64) -> u64 {
    black_box(tick.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

#[inline(never)]
fn rebuild_index(depth: u64) -> u64 {
    walk_tree(depth)
}

/// Recursive walk; every fourth level also visits a small side subtree.
#[inline(never)]
fn walk_tree(depth: u64) -> u64 {
    if depth == 0 {
        return 1;
    }
    // black_box keeps the recursion a real call chain, not a loop.
    let mut nodes = black_box(walk_tree(black_box(depth - 1)));
    if depth.is_multiple_of(4) {
        nodes += black_box(walk_tree(2));
    }
    nodes + 1
}

/// Allocates and touches 40-160 MiB, holds it briefly and frees it.
///
/// Each block is larger than glibc's largest mmap threshold, so it is mapped
/// and unmapped on its own and the process's resident set really moves.
#[inline(never)]
fn gc_sweep(rng: &mut Rng) -> u64 {
    const BLOCK: usize = 40 << 20;
    let blocks = rng.range(1, 4);
    let mut live: Vec<Vec<u8>> = Vec::new();
    for index in 0..blocks {
        let mut block = Vec::with_capacity(BLOCK);
        block.resize(BLOCK, index as u8 | 1);
        live.push(block);
    }
    nap(300);
    let sum = live.iter().map(|b| u64::from(b[b.len() / 2])).sum();
    drop(black_box(live));
    sum
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> impl Iterator<Item = String> {
        list.iter()
            .map(|s| (*s).to_owned())
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn parses_seconds() {
        let run = |seconds| Ok(Args::Run { seconds });
        assert_eq!(parse_args(args(&[])), run(None));
        assert_eq!(
            parse_args(args(&["--seconds", "3"])),
            run(Some(Duration::from_secs(3)))
        );
        assert_eq!(
            parse_args(args(&["--seconds=0.5"])),
            run(Some(Duration::from_millis(500)))
        );
        assert_eq!(parse_args(args(&["--help"])), Ok(Args::Help));
        assert!(parse_args(args(&["--seconds"])).is_err());
        assert!(parse_args(args(&["--seconds", "x"])).is_err());
        assert!(parse_args(args(&["--fast"])).is_err());
    }

    #[test]
    fn walk_tree_counts_nodes() {
        assert_eq!(walk_tree(0), 1);
        assert_eq!(walk_tree(3), 4);
        // depth 4 adds a side walk of depth 2 (3 nodes) to the 5-node chain.
        assert_eq!(walk_tree(4), 5 + walk_tree(2));
    }

    #[test]
    fn caught_panic_rejects_the_request() {
        quiet_injected_panics();
        assert!(!authorize(&Request {
            id: 0,
            route: 0,
            rows: 0,
            token: 0
        }));
        assert!(authorize(&Request {
            id: 0,
            route: 0,
            rows: 0,
            token: 7
        }));
    }

    #[test]
    fn rng_is_deterministic_and_in_range() {
        let (mut a, mut b) = (Rng::new(1), Rng::new(1));
        for _ in 0..1000 {
            let x = a.range(3, 12);
            assert_eq!(x, b.range(3, 12));
            assert!((3..=12).contains(&x));
        }
    }
}
