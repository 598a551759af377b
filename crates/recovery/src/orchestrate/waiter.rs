//! One waiter per process and state database for dispatched tasks: a single
//! thread reads the rows of every task someone waits for, in one query per round,
//! and wakes the callers. Before it, each caller (a recovery's worker, a
//! daemon's backup job) polled the table on its own connection: a thousand
//! systems were a thousand connections and five thousand queries a second.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::state::fleet::TaskRecord;
use crate::state::State;

/// How often the waiter reads the task table.
pub const ROUND: Duration = Duration::from_millis(200);

#[derive(Default)]
struct Board {
    /// Waited task ids, with how many callers wait for each.
    wanted: BTreeMap<i64, usize>,
    /// The rows of the last round.
    rows: HashMap<i64, TaskRecord>,
    /// Why the last round could not read the table.
    error: Option<String>,
    round: u64,
}

/// The task waiter of one state database.
pub struct Waiter {
    path: PathBuf,
    board: Mutex<Board>,
    cv: Condvar,
}

static WAITERS: OnceLock<Mutex<HashMap<PathBuf, Arc<Waiter>>>> = OnceLock::new();

impl Waiter {
    /// The waiter of `state` in this process; its thread starts on first use.
    pub fn of(state: &Path) -> Arc<Waiter> {
        let all = WAITERS.get_or_init(Default::default);
        let mut all = all.lock().unwrap_or_else(|e| e.into_inner());
        all.entry(state.to_path_buf())
            .or_insert_with(|| {
                let w = Arc::new(Waiter { path: state.to_path_buf(), board: Mutex::default(), cv: Condvar::new() });
                let t = w.clone();
                std::thread::Builder::new()
                    .name("task-waiter".into())
                    .spawn(move || t.run())
                    .expect("spawning the task waiter");
                w
            })
            .clone()
    }

    fn lock(&self) -> MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self, st: &mut Option<State>, ids: &[i64]) -> Result<Vec<TaskRecord>> {
        if st.is_none() {
            *st = Some(State::open(&self.path)?);
        }
        match st {
            Some(s) => s.fleet_tasks_by_id(ids),
            None => Ok(vec![]),
        }
    }

    fn run(&self) {
        let mut st = None;
        loop {
            std::thread::sleep(ROUND);
            let ids: Vec<i64> = self.lock().wanted.keys().copied().collect();
            if ids.is_empty() {
                continue;
            }
            let res = self.read(&mut st, &ids);
            let mut b = self.lock();
            match res {
                Ok(rows) => {
                    b.rows = rows.into_iter().map(|r| (r.id, r)).collect();
                    b.error = None;
                }
                Err(e) => {
                    b.error = Some(e.to_string());
                    // Opened again next round.
                    st = None;
                }
            }
            b.round += 1;
            drop(b);
            self.cv.notify_all();
        }
    }

    /// Starts waiting for task `id`; the ticket reads its row each round.
    pub fn watch(self: &Arc<Self>, id: i64) -> Ticket {
        let mut b = self.lock();
        *b.wanted.entry(id).or_default() += 1;
        Ticket { waiter: self.clone(), id, seen: b.round }
    }
}

/// One caller's wait for one task; dropping it ends the wait.
pub struct Ticket {
    waiter: Arc<Waiter>,
    id: i64,
    seen: u64,
}

impl Ticket {
    /// Waits for the next round and returns the task's row then (`None`: the
    /// task is not in the table).
    pub fn next(&mut self) -> Result<Option<TaskRecord>> {
        let w = &self.waiter;
        let mut b = w.lock();
        while b.round == self.seen {
            b = w.cv.wait(b).unwrap_or_else(|e| e.into_inner());
        }
        self.seen = b.round;
        if let Some(e) = &b.error {
            return Err(Error::invalid(format!("fleet task {}", self.id), format!("the task table: {e}")));
        }
        Ok(b.rows.get(&self.id).cloned())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut b = self.waiter.lock();
        if let Some(n) = b.wanted.get_mut(&self.id) {
            *n -= 1;
            if *n == 0 {
                b.wanted.remove(&self.id);
                b.rows.remove(&self.id);
            }
        }
    }
}
