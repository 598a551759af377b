//! Trees: one per directory, listing its entries with their metadata. Stored as
//! JSON blobs (in tree packs), so that identical directories deduplicate.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::types::BlobId;

/// Deepest directory nesting that restore and `ls` follow below the path they start
/// from. Trees are walked recursively; this bounds the stack and the length of paths.
pub const MAX_DEPTH: usize = 1024;

/// Most tree entries one restore plans or one `ls` lists. A subtree may appear in
/// many places (identical directories share one tree), so a few small trees can
/// describe 2^30 paths: this bounds the memory a crafted tree graph can take.
pub const MAX_ENTRIES: u64 = 10_000_000;

/// A file name or symlink target as raw bytes (Unix names need not be UTF-8).
/// Stored as a JSON string when it is UTF-8, otherwise as `{"hex": "..."}`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RawName(pub Vec<u8>);

impl RawName {
    pub fn lossy(&self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
    #[cfg(unix)]
    pub fn as_os_str(&self) -> &std::ffi::OsStr {
        use std::os::unix::ffi::OsStrExt;
        std::ffi::OsStr::from_bytes(&self.0)
    }
    /// A name that is safe to join to a directory: one component, never `.`/`..`.
    pub fn check_component(&self) -> Result<()> {
        let n = &self.0;
        if n.is_empty() || n == b"." || n == b".." || n.contains(&b'/') || n.contains(&0) {
            return Err(Error::UnsafePath(format!("entry name {:?} is not a plain file name", self.lossy())));
        }
        Ok(())
    }
}

impl From<&str> for RawName {
    fn from(s: &str) -> Self {
        RawName(s.as_bytes().to_vec())
    }
}

impl Serialize for RawName {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => s.serialize_str(text),
            Err(_) => {
                use serde::ser::SerializeMap;
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("hex", &hex::encode(&self.0))?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for RawName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Text(String),
            Hex { hex: String },
        }
        match Repr::deserialize(d)? {
            Repr::Text(t) => Ok(RawName(t.into_bytes())),
            Repr::Hex { hex } => hex::decode(hex).map(RawName).map_err(serde::de::Error::custom),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeType {
    File,
    Dir,
    Symlink,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// One directory entry. Field names are the on-disk format (docs/FORMAT.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub name: RawName,
    #[serde(rename = "type")]
    pub node_type: NodeType,
    /// Permission bits including setuid/setgid/sticky (st_mode & 0o7777).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Status change time; used only to detect changed files.
    pub ctime_ns: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inode: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub device: u64,
    /// Hard link count; with `inode` and `device` it lets restore re-link files.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub links: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<RawName>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub content: Vec<BlobId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtree: Option<BlobId>,
}

impl Node {
    /// A node with every metadata field zero and no content, to fill in with
    /// struct-update syntax.
    pub fn new(name: RawName, node_type: NodeType) -> Node {
        Node {
            name,
            node_type,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            inode: 0,
            device: 0,
            links: 0,
            size: 0,
            target: None,
            content: Vec::new(),
            subtree: None,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tree {
    /// Sorted by name bytes; names are unique.
    pub nodes: Vec<Node>,
}

impl Tree {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("trees always serialize")
    }

    /// Decodes and validates: names are safe, unique, and sorted. A tree that fails
    /// this was crafted or damaged, and restore refuses it.
    pub fn decode(bytes: &[u8], id: &BlobId) -> Result<Tree> {
        let tree: Tree = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt(format!("tree {id}"), format!("not a valid tree: {e}")))?;
        for n in &tree.nodes {
            n.name.check_component()?;
        }
        if tree.nodes.windows(2).any(|w| w[0].name >= w[1].name) {
            return Err(Error::UnsafePath(format!("tree {id} has duplicate or unsorted names")));
        }
        Ok(tree)
    }

    pub fn find(&self, name: &[u8]) -> Option<&Node> {
        self.nodes.binary_search_by(|n| n.name.0.as_slice().cmp(name)).ok().map(|i| &self.nodes[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node_strategy() -> impl Strategy<Value = Node> {
        (
            proptest::collection::vec(1u8..=255, 1..20),
            0u8..3,
            any::<u32>(),
            any::<i64>(),
            any::<u64>(),
            proptest::collection::vec(any::<[u8; 32]>(), 0..3),
        )
            .prop_map(|(name, t, mode, mtime, size, content)| Node {
                name: RawName(name.into_iter().map(|b| if b == b'/' { b'x' } else { b }).collect()),
                node_type: [NodeType::File, NodeType::Dir, NodeType::Symlink][t as usize],
                mode: mode & 0o7777,
                uid: mode,
                gid: 7,
                mtime_ns: mtime,
                ctime_ns: mtime / 2,
                inode: size / 3,
                device: 1,
                links: 1,
                size,
                target: (t == 2).then(|| RawName(vec![0xff, b'a'])),
                content: content.into_iter().map(BlobId).collect(),
                subtree: (t == 1).then_some(BlobId([1; 32])),
            })
    }

    proptest! {
        #[test]
        fn tree_round_trip(mut nodes in proptest::collection::vec(node_strategy(), 0..10)) {
            nodes.sort_by(|a, b| a.name.cmp(&b.name));
            nodes.dedup_by(|a, b| a.name == b.name);
            nodes.retain(|n| n.name.check_component().is_ok());
            let t = Tree { nodes };
            let back = Tree::decode(&t.encode(), &BlobId([0; 32])).unwrap();
            prop_assert_eq!(back, t);
        }
    }

    #[test]
    fn rejects_traversal_names() {
        for bad in [r#"".." "#, r#""a/b""#, r#""""#, r#"".""#] {
            let json = format!(
                r#"{{"nodes":[{{"name":{bad},"type":"file","mode":420,"uid":0,"gid":0,"mtime_ns":0,"ctime_ns":0}}]}}"#
            );
            assert!(matches!(Tree::decode(json.as_bytes(), &BlobId([0; 32])), Err(Error::UnsafePath(_))), "{bad}");
        }
    }
}
