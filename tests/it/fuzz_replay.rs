//! CI's share of the fuzzing (docs/FUZZING.md): every committed corpus input and
//! every regression case goes through the same functions the fuzz targets call, on
//! stable Rust and without a fuzzer. A crash the fuzzer found is saved under
//! fuzz/regressions/TARGET/ with the fix, and stays fixed here.

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn inputs(target: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in ["corpus", "regressions"] {
        let Ok(rd) = std::fs::read_dir(fuzz_dir().join(sub).join(target)) else { continue };
        out.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_file()));
    }
    out.sort();
    out
}

#[test]
fn committed_fuzz_inputs_replay_without_a_panic() {
    for (target, run) in kura::fuzzing::TARGETS {
        let files = inputs(target);
        assert!(!files.is_empty(), "no corpus for fuzz target {target} under {}", fuzz_dir().display());
        for f in files {
            let data = std::fs::read(&f).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "fuzz target {target} panics on {}", f.display());
        }
    }
}

/// `scripts/fuzz.sh seed` runs this to (re)write the seed corpus from real objects.
#[test]
#[ignore = "writes fuzz/corpus; run by scripts/fuzz.sh seed"]
fn write_fuzz_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (target, bytes) in kura::fuzzing::seeds(root) {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        let name = format!("seed-{}", &blake3::hash(&bytes).to_hex()[..16]);
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}
