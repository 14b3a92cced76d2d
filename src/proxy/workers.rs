//! Thread-per-core proxy workers: `[global] workers = N` threads, each running its own tokio
//! current-thread runtime, each with its own `SO_REUSEPORT` listening socket per bound address
//! (as HAProxy, nginx and Pingora do). The kernel spreads new connections over the workers'
//! sockets; a connection then lives on one thread from accept to close, its upstream
//! connections come from that worker's own pool, and its tasks run in one FIFO queue (fair:
//! no LIFO slot, no local-queue overflow to a rarely polled global queue, which gave the
//! multi-thread scheduler its bimodal tail at saturation; benches/README.md).
//!
//! Everything else (reload, health checks, stats, the cluster) runs on the control runtime
//! `main` builds. `install` is called once by `edgelb run`; when it was not (the library driven
//! in-process by tests), listeners accept on the caller's runtime as before.
//!
//! Must not: hold anything per request across workers (the only shared state touched per
//! request is atomics and the arc-swapped snapshot).

use std::sync::OnceLock;

use tokio::runtime::Handle;

use super::{access_log, busy_poll};

/// The proxy workers' runtime handles, set once by `install`.
static WORKERS: OnceLock<Vec<Handle>> = OnceLock::new();

thread_local! {
    /// This thread's worker index (0 on any thread that is not a proxy worker).
    static INDEX: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How often each worker runs the `tidy` hook of `install`, hands over its access-log lines (at
/// least: also whenever it goes idle) and starts its busy-polling spinner if the option is on.
const TIDY_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Starts `n` worker threads (each a current-thread runtime that runs until the process
/// exits). `tidy`, if given, runs on each worker once a second (the binary gives its allocator's
/// collection: the library has no allocator of its own). Idempotent: a second call keeps the
/// first set.
pub fn install(n: usize, tidy: Option<fn()>) -> std::io::Result<()> {
    if WORKERS.get().is_some() {
        return Ok(());
    }
    let n = n.max(1);
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(format!("edgelb-w{i}"))
            .spawn(move || {
                INDEX.with(|c| c.set(i));
                // Access-log lines go to the writer in batches, handed over when the worker
                // goes idle (and by the timer below while it is busy).
                access_log::hold_lines_on_this_thread();
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .on_thread_park(access_log::flush_this_thread)
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let _ = tx.send(Ok(rt.handle().clone()));
                // Runs the worker's tasks (accept loops, connections) for the process lifetime.
                rt.block_on(async move {
                    let mut every = tokio::time::interval(TIDY_EVERY);
                    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                    loop {
                        every.tick().await;
                        access_log::flush_this_thread();
                        busy_poll::tick();
                        if let Some(tidy) = tidy {
                            tidy();
                        }
                    }
                });
            })?;
        let handle = rx
            .recv()
            .map_err(|_| std::io::Error::other("a proxy worker thread failed to start"))??;
        handles.push(handle);
    }
    let _ = WORKERS.set(handles);
    Ok(())
}

/// The workers' runtimes, if `install` ran.
pub fn handles() -> Option<&'static [Handle]> {
    WORKERS.get().map(|v| v.as_slice())
}

/// Number of per-worker slots a per-worker structure needs (1 without workers).
pub fn count() -> usize {
    handles().map(|h| h.len()).unwrap_or(1).max(1)
}

/// This thread's worker index, `0..count()`.
pub fn index() -> usize {
    INDEX.with(|c| c.get())
}
