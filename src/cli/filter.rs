//! `--host`, `--tag`, `--path`: the snapshot filters every command that names or lists
//! snapshots takes. They become the store's one `Filter`; `latest` is the newest
//! snapshot that matches all of them (as restic's `latest --host H`).

use kura::repo::snapshot::Filter;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct FilterArgs {
    /// Only snapshots of this host (`latest` is then this host's newest)
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Only snapshots with this tag (repeatable: all must match)
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Only snapshots that include this backed-up path (repeatable: all must match)
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,
}

impl FilterArgs {
    pub fn filter(&self) -> Filter {
        Filter { host: self.host.clone(), tags: self.tags.clone(), paths: self.paths.clone(), ..Default::default() }
    }
}
