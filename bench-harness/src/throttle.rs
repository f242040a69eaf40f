//! Kafka's `ThroughputThrottler`, ported: keeps the average rate since the start at or under a
//! target by sleeping in slices of at least 2 ms, carrying the deficit between calls.
//! Unlike Kafka's, the sleep is delegated to a callback so the producer can keep serving
//! delivery reports while it waits.

use std::time::{Duration, Instant};

/// Sleeps shorter than this are accumulated rather than taken (Kafka: MIN_SLEEP_NS = 2 ms).
const SLEEP_MIN: Duration = Duration::from_millis(2);

pub struct ThroughputThrottler {
    /// Target per second; negative means unlimited, 0 means stop forever (as in Kafka).
    target_per_second: f64,
    sleep_per_item: Duration,
    sleep_deficit: Duration,
    start: Instant,
}

impl ThroughputThrottler {
    pub fn new(target_per_second: f64, start: Instant) -> Self {
        let sleep_per_item = if target_per_second > 0.0 {
            Duration::from_secs_f64(1.0 / target_per_second)
        } else {
            Duration::ZERO
        };
        Self {
            target_per_second,
            sleep_per_item,
            sleep_deficit: Duration::ZERO,
            start,
        }
    }

    /// True when `amount_so_far` items since `start` run ahead of the target rate.
    pub fn should_throttle(&self, amount_so_far: u64, now: Instant) -> bool {
        if self.target_per_second < 0.0 {
            return false;
        }
        let elapsed = now.duration_since(self.start).as_secs_f64();
        elapsed <= 0.0 || amount_so_far as f64 / elapsed > self.target_per_second
    }

    /// Waits roughly one item's worth of time, via `sleep` (which may return early; the
    /// shortfall stays in the deficit).
    pub fn throttle(&mut self, mut sleep: impl FnMut(Duration)) {
        if self.target_per_second == 0.0 {
            loop {
                sleep(Duration::from_secs(3600));
            }
        }
        self.sleep_deficit += self.sleep_per_item;
        if self.sleep_deficit >= SLEEP_MIN {
            let before = Instant::now();
            sleep(self.sleep_deficit);
            self.sleep_deficit = self.sleep_deficit.saturating_sub(before.elapsed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_never_throttles() {
        let start = Instant::now();
        let throttler = ThroughputThrottler::new(-1.0, start);
        assert!(!throttler.should_throttle(u64::MAX, start + Duration::from_millis(1)));
    }

    #[test]
    fn throttles_only_when_ahead_of_target() {
        let start = Instant::now();
        let throttler = ThroughputThrottler::new(100.0, start);
        let one_second = start + Duration::from_secs(1);
        assert!(throttler.should_throttle(101, one_second));
        assert!(!throttler.should_throttle(99, one_second));
    }

    #[test]
    fn deficit_accumulates_until_sleep_minimum() {
        let mut throttler = ThroughputThrottler::new(1000.0, Instant::now());
        let mut slept = Vec::new();
        throttler.throttle(|d| slept.push(d)); // 1 ms owed: not yet
        assert!(slept.is_empty());
        throttler.throttle(|d| slept.push(d)); // 2 ms owed: sleep
        assert_eq!(slept, vec![Duration::from_millis(2)]);
    }
}
