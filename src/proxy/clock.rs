//! The request path's clock: within one poll of a connection's task, time stands still.
//!
//! HAProxy reads the clock once per turn of its event loop (`now_ms`). edgelb reads it at most
//! once per poll of a connection task, on first use, instead of at each of the places one request
//! asks (the head's start and date, its deadlines, the server's response time, the pool's ages):
//! about 10 reads per request become 2 or 3. A poll never blocks, so whatever two reads inside one
//! poll would tell apart is far below the millisecond the log and the timeouts count in.
//! Outside a connection task's poll (health checks, the stats server, tests) each call reads the
//! clock.

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime};

thread_local! {
    /// `None` outside a poll; `Some(None)` in a poll before its first read; then the reading.
    static NOW: Cell<Option<Option<Instant>>> = const { Cell::new(None) };
    static WALL: Cell<Option<Option<SystemTime>>> = const { Cell::new(None) };
}

/// Reads `cell`'s clock once per poll (every time outside one).
fn read<T: Copy>(cell: &'static std::thread::LocalKey<Cell<Option<Option<T>>>>, f: fn() -> T) -> T {
    cell.with(|c| match c.get() {
        Some(Some(t)) => t,
        Some(None) => {
            let t = f();
            c.set(Some(Some(t)));
            t
        }
        None => f(),
    })
}

/// The monotonic time of this poll.
pub fn now() -> Instant {
    read(&NOW, Instant::now)
}

/// [`now`] for tokio's timers.
pub fn tokio_now() -> tokio::time::Instant {
    tokio::time::Instant::from_std(now())
}

/// Time since `start`, as of this poll (zero if `start` is later).
pub fn since(start: Instant) -> Duration {
    now().saturating_duration_since(start)
}

/// The wall-clock time of this poll (the access log's date).
pub fn wall() -> SystemTime {
    read(&WALL, SystemTime::now)
}

/// Holds the clock still on this thread until dropped; the state before comes back then, so
/// polls may nest.
pub struct Still(Option<Option<Instant>>, Option<Option<SystemTime>>);

pub fn hold_still() -> Still {
    Still(
        NOW.with(|c| c.replace(Some(None))),
        WALL.with(|c| c.replace(Some(None))),
    )
}

impl Drop for Still {
    fn drop(&mut self) {
        NOW.with(|c| c.set(self.0));
        WALL.with(|c| c.set(self.1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_stands_still_within_a_hold_and_moves_outside() {
        let outside = now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(now() > outside, "outside a hold each call reads the clock");
        {
            let _still = hold_still();
            let (t, w) = (now(), wall());
            std::thread::sleep(Duration::from_millis(2));
            assert_eq!(now(), t);
            assert_eq!(wall(), w);
            assert!(t > outside);
            {
                // A nested hold reads afresh and gives the outer one back.
                let _inner = hold_still();
                assert!(now() > t);
            }
            assert_eq!(now(), t);
            assert_eq!(since(t), Duration::ZERO);
        }
        let after = now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(now() > after, "the hold ended");
    }
}
