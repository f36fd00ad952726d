//! Exponential backoff and jitter, and a cheap random source (the workspace has no `rand`).

use std::cell::Cell;
use std::time::Duration;

thread_local! {
    /// xorshift64* state, seeded once per thread from a v4 UUID (the OS's randomness).
    static STATE: Cell<u64> = Cell::new((uuid::Uuid::new_v4().as_u128() as u64) | 1);
}

/// A random number in `[0, 1)`; not for cryptography.
pub fn random_fraction() -> f64 {
    let x = STATE.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    });
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// `d` plus a random fraction of `d * max_factor`, as apimachinery's `wait.Jitter`.
pub fn jitter(d: Duration, max_factor: f64) -> Duration {
    if max_factor <= 0.0 {
        return d;
    }
    d + d.mul_f64(max_factor * random_fraction())
}

/// Exponential backoff: `initial`, doubling up to `max`; [`Backoff::reset`] after a success.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    /// Up to this fraction of each delay is added at random.
    jitter: f64,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max, next: initial, jitter: 0.0 }
    }

    /// Adds up to `factor` times each delay at random (0.1: up to 10% longer).
    pub fn with_jitter(mut self, factor: f64) -> Self {
        self.jitter = factor;
        self
    }

    /// The delay before the next attempt; each call doubles the following one, up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        jitter(d, self.jitter).min(self.max.max(d))
    }

    /// Back to the initial delay.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
        let delays: Vec<u128> = (0..11).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn jitter_stays_in_range() {
        for _ in 0..1000 {
            let f = random_fraction();
            assert!((0.0..1.0).contains(&f));
            let d = jitter(Duration::from_secs(10), 0.5);
            assert!(d >= Duration::from_secs(10) && d < Duration::from_secs(15));
        }
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1)).with_jitter(0.1);
        let d = b.next_delay();
        assert!(d >= Duration::from_millis(100) && d < Duration::from_millis(111));
    }
}
