use std::sync::Arc;

use super::*;
use crate::repo::tree::RawName;

fn file(name: &str, content: u8) -> Node {
    Node { content: vec![BlobId([content; 32])], size: 10, ..Node::new(RawName::from(name), NodeType::File) }
}

fn dir(name: &str, id: u8) -> Node {
    Node { subtree: Some(BlobId([id; 32])), ..Node::new(RawName::from(name), NodeType::Dir) }
}

fn counter() -> Counter {
    Counter::new(Arc::new(NamePatterns::builtin()), true)
}

#[test]
fn counts_changes_renames_and_extension_changes() {
    let parent = Tree {
        nodes: vec![
            file("a.doc", 1),
            file("b.txt", 2),
            file("c.txt", 3),
            file("d.txt", 4),
            file("e.txt", 5),
            dir("gone", 9),
        ],
    };
    let nodes = vec![
        file("a.doc.locked", 11),      // extension appended, new content
        file("b.txt", 2),              // unchanged
        file("c.txt", 33),             // modified
        file("moved.txt", 4),          // d.txt renamed
        file("new.rs", 7),             // added
        file("HOW_TO_DECRYPT.txt", 8), // added, a note
    ];
    let mut c = counter();
    c.dir_done("/x", &nodes, Some(&parent), &mut |_| 3);
    let s = c.finish(100, 90);
    assert_eq!(
        (s.files, s.parent_files, s.added, s.modified, s.deleted, s.renamed, s.ext_changed),
        (6, 5 + 3, 2, 1, 1 + 3, 1, 1),
        "{s:?}"
    );
    assert_eq!((s.note_names, s.suspicious_ext), (1, 1));
    assert_eq!(s.examples, vec!["/x/a.doc.locked".to_string(), "/x/HOW_TO_DECRYPT.txt".to_string()]);
    assert_eq!(s.bytes_changed, 50, "modified and new names");
    assert!((s.incompressible_share() - 0.9).abs() < 1e-9);
    assert!((s.change_rate() - 9.0 / 8.0).abs() < 1e-9, "2 added, 1 modified, 4 deleted, 2 renamed over 8");
}

#[test]
fn a_new_directory_is_all_added() {
    let mut c = counter();
    c.dir_done("/", &[file("a", 1), file("b", 2), dir("d", 3)], None, &mut |_| unreachable!());
    let s = c.finish(0, 0);
    assert_eq!((s.files, s.added, s.deleted, s.parent_files), (2, 2, 0, 0));
    assert_eq!(s.incompressible_share(), 0.0);
}

#[test]
fn snapshots_written_before_signals_still_load() {
    let old = r#"{"time":"2026-01-01T00:00:00Z","host":"h","paths":["/x"],"tree":"0000000000000000000000000000000000000000000000000000000000000000","program_version":"kura 0.1.0"}"#;
    let s: crate::repo::snapshot::Snapshot = serde_json::from_str(old).unwrap();
    assert_eq!(s.signals, None);
    let back = serde_json::to_string(&s).unwrap();
    assert!(!back.contains("signals"), "absent stays absent: {back}");
}
