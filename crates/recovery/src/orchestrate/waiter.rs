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
    /// The number of the last round that began (took the wanted ids).
    started: u64,
    /// The number of the last round whose rows are on the board.
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
            let (this, ids) = {
                let mut b = self.lock();
                if b.wanted.is_empty() {
                    continue;
                }
                b.started += 1;
                (b.started, b.wanted.keys().copied().collect::<Vec<i64>>())
            };
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
            b.round = this;
            drop(b);
            self.cv.notify_all();
        }
    }

    /// Starts waiting for task `id`; the ticket reads its row each round.
    pub fn watch(self: &Arc<Self>, id: i64) -> Ticket {
        let mut b = self.lock();
        *b.wanted.entry(id).or_default() += 1;
        // Only a round that begins after this one took the ids knows of `id`.
        Ticket { waiter: self.clone(), id, seen: b.started }
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
    pub fn next_round(&mut self) -> Result<Option<TaskRecord>> {
        let w = &self.waiter;
        let mut b = w.lock();
        while b.round <= self.seen {
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

#[cfg(test)]
mod tests {
    use super::*;
    use kura_fleet::proto::{HookStage, TaskSpec};

    #[test]
    fn every_waiter_sees_its_task_from_its_first_round_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut st = State::open(&path).unwrap();
        let spec = |i: usize| TaskSpec::Hook {
            system: format!("s{i}"),
            stage: HookStage::Pre,
            command: "true".into(),
            env: vec![],
            timeout_ms: 1,
            run: None,
        };
        let waiter = Waiter::of(&path);
        // Tickets taken while rounds run: none may miss its row.
        let threads: Vec<_> = (0..40)
            .map(|i| {
                let id = st.fleet_insert_task("h", &spec(i), chrono::Utc::now()).unwrap();
                let w = waiter.clone();
                std::thread::sleep(Duration::from_millis(13));
                std::thread::spawn(move || {
                    let mut t = w.watch(id);
                    (t.next_round().unwrap().map(|r| r.id), t.next_round().unwrap().map(|r| r.id))
                })
            })
            .collect();
        let ids: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(ids.iter().all(|(a, b)| a.is_some() && a == b), "{ids:?}");
        assert!(waiter.lock().wanted.is_empty(), "tickets dropped: nobody waits");
    }
}
