//! The request path's clock: within one poll of a connection's task, time stands still.
//!
//! HAProxy reads the clock once per turn of its event loop (`now_ms`). edgelb reads it at most
//! once per poll of a connection task, on first use, instead of at each of the places one request
//! asks (the head's start and date, its deadlines, the server's response time, the pool's ages):
//! about 10 reads per request become 2 or 3. A poll never blocks, so whatever two reads inside one
//! poll would tell apart is far below the millisecond the log and the timeouts count in.
//! Outside a connection task's poll (health checks, the stats server, tests) each call reads the
//! clock.
//!
//! The request path keeps its times as [`Tick`]s, nanoseconds after the process's first
//! reading: a deadline or an age is one `u64` addition or subtraction, where each `Instant`
//! one normalised seconds and nanoseconds (callgrind: ten per request became four, one per
//! reading). A tick is 8 bytes, an `Instant` 16: an idle connection keeps its deadline as one.

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime};

thread_local! {
    /// `None` outside a poll; `Some(None)` in a poll before its first read; then the reading.
    static NOW: Cell<Option<Option<Tick>>> = const { Cell::new(None) };
    static WALL: Cell<Option<Option<SystemTime>>> = const { Cell::new(None) };
}

/// The instant [`Tick`]s count from: the first reading of the clock in this process.
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// A time on the request path's clock: nanoseconds after [`epoch`] (8 bytes; an `Instant` is
/// 16). Ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Tick(u64);

impl Tick {
    /// The time of this poll.
    pub fn now() -> Tick {
        read(&NOW, || Tick::of(Instant::now()))
    }

    fn of(t: Instant) -> Tick {
        Tick(u64::try_from(t.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX))
    }

    /// `d` after this time (the last tick, later than any reading, if that overflows).
    pub fn after(self, d: Duration) -> Tick {
        Tick(
            self.0
                .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        )
    }

    /// Time from this tick to this poll's (zero if this tick is later).
    pub fn elapsed(self) -> Duration {
        Duration::from_nanos(Tick::now().0.saturating_sub(self.0))
    }

    /// Time from `earlier` to this tick (zero if `earlier` is later).
    pub fn since(self, earlier: Tick) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// Nanoseconds after the epoch, for keeping a tick in an atomic.
    pub fn as_nanos(self) -> u64 {
        self.0
    }

    /// The tick [`Tick::as_nanos`] gave.
    pub fn from_nanos(n: u64) -> Tick {
        Tick(n)
    }

    /// The same time for tokio's timers (one too far to represent: 30 years on, tokio's own
    /// "far future").
    pub fn instant(self) -> tokio::time::Instant {
        let e = tokio::time::Instant::from_std(epoch());
        e.checked_add(Duration::from_nanos(self.0))
            .unwrap_or_else(|| e + Duration::from_secs(86_400 * 365 * 30))
    }
}

/// Reads `cell`'s clock once per poll (every time outside one).
fn read<T: Copy>(
    cell: &'static std::thread::LocalKey<Cell<Option<Option<T>>>>,
    f: impl Fn() -> T,
) -> T {
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

/// The wall-clock time of this poll (the access log's date).
pub fn wall() -> SystemTime {
    read(&WALL, SystemTime::now)
}

/// Holds the clock still on this thread until dropped; the state before comes back then, so
/// polls may nest.
pub struct Still(Option<Option<Tick>>, Option<Option<SystemTime>>);

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
        let outside = Tick::now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(
            Tick::now() > outside,
            "outside a hold each call reads the clock"
        );
        {
            let _still = hold_still();
            let (t, w) = (Tick::now(), wall());
            std::thread::sleep(Duration::from_millis(2));
            assert_eq!(Tick::now(), t);
            assert_eq!(wall(), w);
            assert!(t > outside);
            {
                // A nested hold reads afresh and gives the outer one back.
                let _inner = hold_still();
                assert!(Tick::now() > t);
            }
            assert_eq!(Tick::now(), t);
            assert_eq!(t.elapsed(), Duration::ZERO);
        }
        let after = Tick::now();
        std::thread::sleep(Duration::from_millis(2));
        assert!(Tick::now() > after, "the hold ended");
    }

    /// Ticks add and subtract as the instants they stand for, saturating at both ends.
    #[test]
    fn ticks_count_nanoseconds_like_the_instants_they_stand_for() {
        let t = Tick::now();
        let later = t.after(Duration::from_millis(1500));
        assert_eq!(later.since(t), Duration::from_millis(1500));
        assert_eq!(t.since(later), Duration::ZERO);
        assert_eq!(later.instant() - t.instant(), Duration::from_millis(1500));
        let before = Instant::now();
        let read = Tick::now().instant().into_std();
        let after = Instant::now();
        assert!(
            before <= read && read <= after,
            "{before:?} {read:?} {after:?}"
        );
        let last = Tick(u64::MAX);
        assert_eq!(t.after(Duration::MAX), last);
        assert!(last > later);
        assert!(later.elapsed() == Duration::ZERO, "not yet");
        let _ = last.instant();
    }
}
