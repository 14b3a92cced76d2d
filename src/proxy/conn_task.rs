//! A client connection's task: the slot it holds from accept to close (`ConnSlot`: every
//! counter it took, released on drop), the hand-written task future (`ConnTask`), and the panic
//! containment around it (`catch_panic`): a panic in a connection task is caught, logged once
//! with its location, counted (`conn_panics`), and costs that one connection only.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use super::session::{ClientIo, Conn};
use crate::runtime::{ListenRt, Runtime};

/// Everything one client connection holds from accept to close. Dropping it gives all of it
/// back; it lives in the connection's task, so a panic that unwinds the task drops it too.
pub struct ConnSlot {
    rt: Arc<Runtime>,
    listen: Arc<ListenRt>,
    _permit: OwnedSemaphorePermit,
}

impl ConnSlot {
    /// Counts the connection in (`actconn`, cumulative connections, frontend session).
    pub fn take(rt: Arc<Runtime>, listen: Arc<ListenRt>, permit: OwnedSemaphorePermit) -> Self {
        rt.process.actconn.fetch_add(1, Ordering::Relaxed);
        rt.process.cum_conns.fetch_add(1, Ordering::Relaxed);
        listen.shared.frontend.session_start();
        ConnSlot {
            rt,
            listen,
            _permit: permit,
        }
    }
}

impl ConnSlot {
    pub fn rt(&self) -> &Arc<Runtime> {
        &self.rt
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.listen.shared.frontend.session_end();
        self.rt.process.actconn.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `stream` on its own task. The slot is released when the task ends, and a panic in it
/// is contained: logged once with its location, counted, and only this connection is closed.
pub fn spawn<S: ClientIo>(conn: Conn, stream: S, slot: ConnSlot) {
    tokio::spawn(task(conn, stream, slot));
}

/// The future of a connection's task: while the connection is idle it is this large (plus
/// tokio's task header and the socket's registration), whatever a request needs.
pub(super) fn task<S: ClientIo>(
    conn: Conn,
    stream: S,
    slot: ConnSlot,
) -> ConnTask<impl std::future::Future<Output = ()> + Send> {
    let peer = conn.peer;
    ConnTask {
        fut: catch_panic(conn.serve(stream)),
        slot: Some(slot),
        peer,
    }
}

pin_project_lite::pin_project! {
    /// A connection's task, written out by hand: an `async` block would keep room for its
    /// captured connection and stream beside the future that took them.
    pub(super) struct ConnTask<F> {
        #[pin]
        fut: CatchPanic<F>,
        slot: Option<ConnSlot>,
        peer: SocketAddr,
    }
}

impl<F: std::future::Future<Output = ()>> std::future::Future for ConnTask<F> {
    type Output = ();

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        let this = self.project();
        let r = std::task::ready!(this.fut.poll(cx));
        // Released before anything is logged, whatever ended the connection.
        if let Some(slot) = this.slot.take() {
            if let Err(p) = r {
                slot.rt.process.conn_panics.fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    listen = %slot.listen.name,
                    client = %this.peer,
                    location = %p.location,
                    "connection task panicked ({}); that connection was closed",
                    p.message
                );
            }
        }
        std::task::Poll::Ready(())
    }
}

/// A panic caught in a connection task.
#[derive(Debug)]
pub struct Caught {
    pub message: String,
    /// `file:line:column` of the panic.
    pub location: String,
}

thread_local! {
    /// Set while a connection future is being polled: the panic hook records the location for
    /// `catch_panic` instead of printing it, so each panic is reported once.
    static IN_CONN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static LOCATION: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_CONN.with(|c| c.get()) {
                let loc = info.location().map(|l| l.to_string());
                LOCATION.with(|l| *l.borrow_mut() = loc);
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `fut`, turning a panic in any of its polls into `Err` (the future is dropped at once, so
/// everything it owns is released). A struct rather than an `async fn`: an `async fn` that pins
/// its argument stores the future twice (the argument and the pinned local), which doubled every
/// connection task.
pub fn catch_panic<F: std::future::Future<Output = ()>>(fut: F) -> CatchPanic<F> {
    install_panic_hook();
    CatchPanic { fut: Some(fut) }
}

pin_project_lite::pin_project! {
    /// The future of [`catch_panic`].
    pub struct CatchPanic<F> {
        #[pin]
        fut: Option<F>,
    }
}

impl<F: std::future::Future<Output = ()>> std::future::Future for CatchPanic<F> {
    type Output = Result<(), Caught>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let mut fut = self.project().fut;
        let Some(inner) = fut.as_mut().as_pin_mut() else {
            return std::task::Poll::Ready(Ok(()));
        };
        IN_CONN.with(|c| c.set(true));
        super::busy_poll::note();
        let still = super::clock::hold_still();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx)));
        drop(still);
        IN_CONN.with(|c| c.set(false));
        match r {
            Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
            Ok(std::task::Poll::Ready(())) => {
                fut.set(None);
                std::task::Poll::Ready(Ok(()))
            }
            Err(payload) => {
                // Dropped here, so what it held is released before the panic is reported.
                fut.set(None);
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".into());
                let location = LOCATION
                    .with(|l| l.borrow_mut().take())
                    .unwrap_or_else(|| "unknown".into());
                std::task::Poll::Ready(Err(Caught { message, location }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpStream;

    /// Size of what `f` returns, without calling it.
    fn returned_size<A, B, C, R, F: FnOnce(A, B, C) -> R>(_: &F) -> usize {
        std::mem::size_of::<R>()
    }

    /// What an idle keep-alive connection costs in task state (issue 16: <= 1 KiB per idle
    /// connection, everything included). The request's own state is boxed per request, so the
    /// task future is the idle wait (`idle::wait_request`) plus the connection's identity and
    /// slot. tokio's task cell adds its header and trailer and rounds to 128 bytes: a future
    /// of at most 280 bytes makes a 384-byte cell, 288 already a 512-byte one (measured with
    /// tokio 1.54 by spawning 200 000 futures of each size). The binary's allocator serves a
    /// 384-byte cell from a 384-byte block, where `mi_malloc_aligned` alone took a 512-byte
    /// one (src/allocator.rs, `task_cells_take_blocks_of_their_own_size`). The socket's
    /// registration (`ScheduledIo`) is another 256.
    #[test]
    fn an_idle_connection_task_stays_small() {
        let n = returned_size(&task::<TcpStream>);
        eprintln!("connection task future: {n} bytes");
        assert!(n <= 280, "connection task future is {n} bytes");
    }

    struct Flag(Arc<std::sync::atomic::AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test]
    async fn a_panic_is_caught_with_its_location_and_what_the_future_held_is_released() {
        let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let held = Flag(released.clone());
        let r = catch_panic(async move {
            let _held = held;
            tokio::task::yield_now().await;
            let v: Vec<u8> = Vec::new();
            let _ = v[std::hint::black_box(3)];
        })
        .await;
        let caught = r.expect_err("the panic is caught");
        assert!(caught.location.contains("conn_task.rs"), "{caught:?}");
        assert!(caught.message.contains("index out of bounds"), "{caught:?}");
        assert!(released.load(Ordering::SeqCst));
        assert!(catch_panic(async {}).await.is_ok());
    }
}
