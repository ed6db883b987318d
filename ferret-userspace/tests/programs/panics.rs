// Test target: Rust panics unwinding through traced frames, caught by
// catch_unwind. may_panic() panics on odd i; middle() does not catch.
use std::hint::black_box;
use std::panic;

#[inline(never)]
fn may_panic(i: u32) -> u32 {
    if black_box(i) % 2 == 1 {
        panic!("odd {i}");
    }
    i
}

#[inline(never)]
fn middle(i: u32) -> u32 {
    black_box(may_panic(i)) + 1
}

fn main() {
    panic::set_hook(Box::new(|_| {}));
    let mut returned = 0;
    let mut caught = 0;
    for i in 0..10 {
        match panic::catch_unwind(|| middle(i)) {
            Ok(_) => returned += 1,
            Err(_) => caught += 1,
        }
    }
    println!("returned={returned} caught={caught}");
    std::process::exit(4);
}
