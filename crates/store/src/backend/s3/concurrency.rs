//! How many requests one backend keeps in flight: adapted to the server. Each
//! request that succeeds lets the window grow (by about one request per window of
//! successes), each that fails as transient (a timeout, a reset, 503 Slow Down,
//! a 5xx) halves it, between 1 and the location's `connections=` ceiling. A busy
//! or slow server thus sees fewer connections, a fast one more, whatever the number
//! of threads asking (restore workers, copy jobs, metadata fetches).

use std::sync::Mutex;

use tokio::sync::Notify;

/// The window arithmetic (pure): additive increase, multiplicative decrease.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Window {
    limit: f64,
    ceiling: f64,
}

impl Window {
    pub(super) fn new(ceiling: usize) -> Self {
        let ceiling = ceiling.max(1) as f64;
        Window { limit: ceiling.min(8.0), ceiling }
    }

    /// Requests that may be in flight now.
    pub(super) fn allowed(&self) -> usize {
        self.limit.floor() as usize
    }

    pub(super) fn success(&mut self) {
        self.limit = (self.limit + 1.0 / self.limit).min(self.ceiling);
    }

    pub(super) fn congestion(&mut self) {
        self.limit = (self.limit / 2.0).max(1.0);
    }
}

/// The window shared by every request of one backend.
pub(super) struct Gate {
    state: Mutex<(Window, usize)>,
    freed: Notify,
}

/// A request's place in the window; given back on drop.
pub(super) struct Slot<'a>(&'a Gate);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner()).1 -= 1;
        self.0.freed.notify_waiters();
    }
}

impl Gate {
    pub(super) fn new(ceiling: usize) -> Self {
        Gate { state: Mutex::new((Window::new(ceiling), 0)), freed: Notify::new() }
    }

    /// Waits for a place in the window.
    pub(super) async fn enter(&self) -> Slot<'_> {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if st.1 < st.0.allowed() {
                    st.1 += 1;
                    return Slot(self);
                }
            }
            freed.await;
        }
    }

    /// What the request that held a slot found out about the server.
    pub(super) fn outcome(&self, congested: bool) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if congested {
            st.0.congestion();
            tracing::debug!(allowed = st.0.allowed(), "S3 server slow or refusing: fewer requests in flight");
        } else {
            st.0.success();
        }
        drop(st);
        self.freed.notify_waiters();
    }

    /// Requests allowed in flight now.
    #[cfg(test)]
    pub(super) fn allowed(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0.allowed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_grows_on_success_halves_on_congestion_and_stays_in_bounds() {
        let mut w = Window::new(32);
        assert_eq!(w.allowed(), 8);
        for _ in 0..1000 {
            w.success();
        }
        assert_eq!(w.allowed(), 32, "capped at the ceiling");
        w.congestion();
        assert_eq!(w.allowed(), 16);
        for _ in 0..20 {
            w.congestion();
        }
        assert_eq!(w.allowed(), 1, "never below one request");
        // Growth is additive: about one more request per window of successes.
        let mut w = Window::new(32);
        for _ in 0..10 {
            w.success();
        }
        assert_eq!(w.allowed(), 9);
        assert_eq!(Window::new(2).allowed(), 2);
    }

    #[test]
    fn the_gate_holds_requests_beyond_the_window() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let gate = std::sync::Arc::new(Gate::new(2));
            let a = gate.enter().await;
            let _b = gate.enter().await;
            let g = gate.clone();
            let third = tokio::spawn(async move {
                let _c = g.enter().await;
            });
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            assert!(!third.is_finished(), "a third request entered a window of two");
            drop(a);
            tokio::time::timeout(std::time::Duration::from_secs(5), third).await.unwrap().unwrap();
            gate.outcome(true);
            assert_eq!(gate.allowed(), 1);
        });
    }
}
