//! Two Rust threads take two `std::sync::Mutex`es in opposite order and
//! deadlock, for the stall watchdog's tests. std's mutex records no owner,
//! so ferret infers the holders. `stall_deadlock_rs EXIT_AFTER_S` exits
//! with status 3 after that many seconds so nothing is left behind.
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

#[inline(never)]
fn transfer(from: &Mutex<u64>, to: &Mutex<u64>, both_hold_one: &Barrier) {
    let mut a = from.lock().unwrap();
    both_hold_one.wait();
    let mut b = to.lock().unwrap(); // BLOCKS
    *a -= 1;
    *b += 1;
}

fn main() {
    let seconds: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(20);
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(seconds));
        std::process::exit(3);
    });
    let (x, y) = (Arc::new(Mutex::new(10)), Arc::new(Mutex::new(10)));
    let barrier = Arc::new(Barrier::new(2));
    let mover = {
        let (x, y, barrier) = (x.clone(), y.clone(), barrier.clone());
        std::thread::Builder::new()
            .name("mover".into())
            .spawn(move || transfer(&y, &x, &barrier))
            .unwrap()
    };
    transfer(&x, &y, &barrier);
    mover.join().unwrap();
}
