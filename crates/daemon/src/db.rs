//! The one thread that owns the state database. SQLite commits fsync; running them
//! on the async runtime would stall timers and the control socket, so every state
//! call is sent here and awaited. Calls run one at a time, in the order sent.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;

use tokio::sync::oneshot;

use crate::error::{DaemonError, Result};
use kura_recovery::state::State;

type Call = Box<dyn FnOnce(&mut State) + Send>;

pub(crate) struct Db {
    tx: mpsc::Sender<Call>,
}

impl Db {
    /// Starts the thread; it ends when the last `Db` handle is dropped.
    pub fn start(mut state: State) -> Result<Db> {
        let (tx, rx) = mpsc::channel::<Call>();
        std::thread::Builder::new()
            .name("kura-state".into())
            .spawn(move || {
                for call in rx {
                    // A panicking call loses its answer (its caller sees StateGone),
                    // not the thread.
                    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| call(&mut state)));
                }
            })
            .map_err(|e| DaemonError::StateThread(e.into()))?;
        Ok(Db { tx })
    }

    /// Runs `f` on the state thread and returns its answer.
    pub async fn call<R: Send + 'static>(&self, f: impl FnOnce(&mut State) -> R + Send + 'static) -> Result<R> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Box::new(move |st| {
                let _ = tx.send(f(st));
            }))
            .map_err(|_| DaemonError::StateGone)?;
        rx.await.map_err(|_| DaemonError::StateGone)
    }

    /// `call` for the state's own fallible operations.
    pub async fn query<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut State) -> kura_recovery::error::Result<R> + Send + 'static,
    ) -> Result<R> {
        Ok(self.call(f).await??)
    }
}
