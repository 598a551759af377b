//! A scoped parallel map for I/O-bound work (fetching objects), on plain threads.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::error::Result;

/// `f` over every item on up to `threads` threads; results in the items' order.
/// The first error wins, and no new item is started after it.
pub fn map<I: Sync, T: Send>(items: &[I], threads: usize, f: impl Fn(&I) -> Result<T> + Sync) -> Result<Vec<T>> {
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let out: Mutex<Vec<Option<T>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    let failed = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                if failed.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
                    return;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { return };
                match f(item) {
                    Ok(v) => out.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(v),
                    Err(e) => {
                        failed.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    Ok(out.into_inner().unwrap_or_else(|e| e.into_inner()).into_iter().map(|v| v.expect("every item ran")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    #[test]
    fn keeps_order_and_reports_an_error() {
        let items: Vec<u32> = (0..100).collect();
        assert_eq!(map(&items, 8, |&i| Ok(i * 2)).unwrap(), (0..100).map(|i| i * 2).collect::<Vec<_>>());
        let e = map(&items, 8, |&i| if i == 57 { Err(Error::invalid("item", "57")) } else { Ok(i) });
        assert!(e.unwrap_err().to_string().contains("57"));
        assert!(map(&Vec::<u32>::new(), 8, |&i| Ok(i)).unwrap().is_empty());
    }
}
