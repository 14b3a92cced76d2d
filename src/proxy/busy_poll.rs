//! Busy polling (`[global] busy_polling`, HAProxy's `busy-polling`): a proxy worker that has
//! just had work polls its sockets without sleeping for a short, adaptive window before it
//! blocks in the kernel.
//!
//! Why: a worker asleep in `epoll_wait` must be woken by whoever delivers its next packet. On
//! the sender's CPU that wake-up (`sock_def_readable` -> `try_to_wake_up`, with interrupts off)
//! cost 9.6 % of the load core's time with edgelb against 5.6 % with HAProxy in the node.js
//! bench (`perf record -C 0 -g`; benches/README.md, sixteenth pass): edgelb does less per
//! request, so it is asleep more often when an answer arrives. A worker that is still polling
//! is not woken: the kernel only queues the event. HAProxy's remedy is the same option; its
//! poller then never sleeps, whatever the load.
//!
//! How: each worker runs one spinner task while the option is on. It yields to the runtime in
//! a loop; each yield makes the current-thread scheduler poll the I/O driver with a zero
//! timeout and run whatever became ready. Connection tasks count their polls (`note`, one
//! thread-local increment). When nothing has happened for the window, the spinner parks and
//! the worker sleeps as usual; the next connection poll wakes the spinner again.
//!
//! The window adapts as the kernel's `haltpoll` idle governor does for a guest's CPUs: it
//! starts at [`GROW_START`]; a sleep shorter than [`MAX_WINDOW`] (work came back soon after the
//! window ended) doubles it, up to [`MAX_WINDOW`]; a longer sleep halves it, and below
//! `GROW_START` it is zero. So an idle or lightly loaded worker (work further apart than
//! `MAX_WINDOW`) soon does not spin at all, and the CPU a busy one spends spinning is its
//! idle time between events less than `MAX_WINDOW` apart. Off by default: with it on, a busy
//! worker shows as 100 % busy, which misleads CPU-based autoscaling and burstable instances'
//! credits.
//!
//! Must not: spin while the option is off, spin longer than the window after the last
//! connection poll, or cost a connection poll more than a thread-local increment and check.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// Longest window a worker polls for after its last work.
pub const MAX_WINDOW: Duration = Duration::from_micros(200);
/// The window a worker starts with, and the least it grows to from zero.
pub const GROW_START: Duration = Duration::from_micros(50);

/// The option, as the running configuration has it (set on start and on each reload).
static ENABLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Polls of connection tasks on this thread (wrapping).
    static ACTIVITY: Cell<u64> = const { Cell::new(0) };
    /// The parked spinner's waker, if this thread's spinner is parked.
    static PARKED: Cell<Option<Waker>> = const { Cell::new(None) };
    /// Whether this thread's spinner is running (spawned and not yet ended).
    static RUNNING: Cell<bool> = const { Cell::new(false) };
}

/// Turns busy polling on or off for every worker (applied within a second: `tick`).
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether busy polling is on.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Called on each poll of a connection task: counts it, and wakes this thread's parked spinner.
#[inline]
pub fn note() {
    ACTIVITY.with(|a| a.set(a.get().wrapping_add(1)));
    if let Some(w) = PARKED.take() {
        w.wake();
    }
}

fn activity() -> u64 {
    ACTIVITY.with(|a| a.get())
}

/// Called on each worker once a second: starts this worker's spinner when the option is on and
/// none runs (a spinner ends by itself when the option goes off).
pub fn tick() {
    start_while(enabled);
}

/// Starts this thread's spinner, if none runs, to spin while `on` says so.
fn start_while(on: fn() -> bool) {
    if on() && !RUNNING.with(|r| r.get()) {
        RUNNING.with(|r| r.set(true));
        tokio::spawn(spin(on, Window::default()));
    }
}

/// The poll window, sans-io: how long to poll after the last work, from how long the worker
/// slept the last times it stopped polling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window(Duration);

impl Default for Window {
    fn default() -> Self {
        Window(GROW_START)
    }
}

impl Window {
    /// How long to poll after the last work.
    pub fn get(self) -> Duration {
        self.0
    }

    /// The worker stopped polling and slept for `slept` before work came again.
    pub fn slept(&mut self, slept: Duration) {
        self.0 = if slept < MAX_WINDOW {
            (self.0 * 2).clamp(GROW_START, MAX_WINDOW)
        } else if self.0 / 2 < GROW_START {
            Duration::ZERO
        } else {
            self.0 / 2
        };
    }
}

/// Clears `RUNNING` however the spinner ends (the option went off, or the runtime dropped it).
struct Running;

impl Drop for Running {
    fn drop(&mut self) {
        let _ = RUNNING.try_with(|r| r.set(false));
        let _ = PARKED.try_with(|p| p.take());
    }
}

/// This worker's spinner: polls while work came within the window, then parks until the next
/// connection poll. Ends when `on` turns false.
async fn spin(on: fn() -> bool, mut window: Window) {
    let _running = Running;
    let mut seen = activity();
    let mut last_work = Instant::now();
    while on() {
        // Back after the runtime has polled the driver without blocking and run what was ready.
        tokio::task::yield_now().await;
        let now = activity();
        if now != seen {
            seen = now;
            last_work = Instant::now();
            continue;
        }
        if last_work.elapsed() < window.get() {
            continue;
        }
        // Quiet for the window: sleep until a connection task is polled again. What the
        // worker's park hook would do, since the runtime has not parked while this ran.
        super::access_log::flush_this_thread();
        let parked_at = Instant::now();
        std::future::poll_fn(|cx| {
            if activity() != seen || !on() {
                Poll::Ready(())
            } else {
                PARKED.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await;
        window.slept(parked_at.elapsed());
        seen = activity();
        last_work = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn short_sleeps_grow_the_window_to_its_cap() {
        let mut w = Window::default();
        assert_eq!(w.get(), GROW_START);
        w.slept(us(80));
        assert_eq!(w.get(), us(100));
        w.slept(us(150));
        assert_eq!(w.get(), MAX_WINDOW);
        w.slept(us(10));
        assert_eq!(w.get(), MAX_WINDOW);
    }

    #[test]
    fn long_sleeps_shrink_it_to_zero_and_a_short_one_starts_it_again() {
        let mut w = Window(MAX_WINDOW);
        w.slept(Duration::from_millis(5));
        assert_eq!(w.get(), us(100));
        w.slept(Duration::from_millis(5));
        assert_eq!(w.get(), GROW_START);
        w.slept(MAX_WINDOW);
        assert_eq!(w.get(), Duration::ZERO);
        w.slept(Duration::from_secs(1));
        assert_eq!(w.get(), Duration::ZERO);
        w.slept(us(30));
        assert_eq!(w.get(), GROW_START);
    }

    /// With the option on, the spinner runs, is woken by `note`, and ends when the option goes
    /// off; with it off, `tick` starts nothing.
    /// The option for this test alone (the process-wide one is set by every snapshot that
    /// other tests activate).
    static TEST_ON: AtomicBool = AtomicBool::new(false);

    fn test_on() -> bool {
        TEST_ON.load(Ordering::Relaxed)
    }

    fn parked() -> bool {
        PARKED.with(|p| {
            let w = p.take();
            let some = w.is_some();
            p.set(w);
            some
        })
    }

    /// Within the window after work the worker's runtime never sleeps in the kernel (it polls
    /// the driver without blocking); once the window has passed with no work, it sleeps.
    #[test]
    fn within_the_window_the_worker_polls_without_sleeping() {
        use std::sync::atomic::AtomicUsize;
        use std::sync::Arc;
        for (window, sleeps) in [(Duration::from_secs(5), false), (us(100), true)] {
            let parks = Arc::new(AtomicUsize::new(0));
            let p = parks.clone();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .on_thread_park(move || {
                    p.fetch_add(1, Ordering::Relaxed);
                })
                .build()
                .unwrap();
            rt.block_on(async {
                RUNNING.with(|r| r.set(true));
                let spinner = tokio::spawn(spin(|| true, Window(window)));
                note();
                let before = parks.load(Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
                let parked = parks.load(Ordering::Relaxed) - before;
                assert_eq!(parked > 0, sleeps, "window {window:?}: {parked} sleeps");
                spinner.abort();
            });
        }
    }

    #[test]
    fn the_spinner_follows_the_option() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            start_while(test_on);
            assert!(!RUNNING.with(|r| r.get()));
            TEST_ON.store(true, Ordering::Relaxed);
            start_while(test_on);
            assert!(RUNNING.with(|r| r.get()));
            // Nothing happens: the window runs out and the spinner parks.
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(parked());
            // A connection poll wakes it; it polls again, then parks again.
            note();
            assert!(!parked());
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(parked());
            assert!(RUNNING.with(|r| r.get()));
            // Off: the next wake-up ends it.
            TEST_ON.store(false, Ordering::Relaxed);
            note();
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(!RUNNING.with(|r| r.get()));
            assert!(!parked());
        });
    }
}
