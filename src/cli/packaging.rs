//! What a package installs beside the binary, generated from the clap definitions so
//! that it never drifts from them: shell completion scripts and man pages.
//! `scripts/deb.sh` runs both with the release binary before cargo-deb.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;

#[derive(clap::Args)]
#[command(after_help = "Install (bash): kura completions bash > /usr/share/bash-completion/completions/kura\n\
    zsh: a directory on $fpath, as _kura; fish: ~/.config/fish/completions/kura.fish")]
pub struct CompletionsArgs {
    /// The shell to write the script for
    #[arg(value_enum)]
    shell: Shell,
}

#[derive(clap::Args)]
#[command(after_help = "View one without installing: man -l DIR/kura-backup.1")]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing)
    dir: PathBuf,
}

/// Prints the completion script for one shell to stdout.
pub fn completions(a: CompletionsArgs) -> Result<ExitCode> {
    let mut cmd = Cli::command();
    // Into a buffer first: clap_complete panics on a write error, and print! hands a
    // closed stdout (`kura completions bash | head`) to main's quiet exit.
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "kura", &mut script);
    print!("{}", String::from_utf8(script).context("the completion script is not UTF-8")?);
    Ok(ExitCode::SUCCESS)
}

/// Writes `kura.1` and one page per subcommand, at every level (`kura-backup.1`,
/// `kura-repair-index.1`, ...), and prints the path of each page written.
pub fn man(ctx: &super::Ctx, a: ManArgs) -> Result<ExitCode> {
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    // The help subcommand has no page of its own: `kura help X` is `kura X --help`.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let date = page_date()?;
    let mut written = Vec::new();
    write_pages(&cmd, &date, &a.dir, &mut written)?;
    if ctx.json {
        println!("{}", serde_json::json!({ "pages": written }));
    } else {
        for p in &written {
            println!("{}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One page for `cmd`, then one for each visible subcommand below it. clap names a
/// built subcommand `kura-backup`, `kura-repair-index`: that is the page's title and
/// file name.
fn write_pages(cmd: &clap::Command, date: &str, dir: &Path, written: &mut Vec<PathBuf>) -> Result<()> {
    // Every field of the .TH line is set: an empty one would shift the others.
    let page = clap_mangen::Man::new(cmd.clone())
        .date(date)
        .source(concat!("kura ", env!("CARGO_PKG_VERSION")))
        .manual("kura manual");
    let path = page.generate_to(dir).with_context(|| format!("writing the man page {}", page.get_filename()))?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, date, dir, written)?;
    }
    Ok(())
}

/// The pages' date: SOURCE_DATE_EPOCH when set (reproducible builds; scripts/deb.sh
/// sets it to the commit's time), else today.
fn page_date() -> Result<String> {
    let when = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => {
            let secs: i64 = s.trim().parse().with_context(|| format!("SOURCE_DATE_EPOCH={s:?} is not a number"))?;
            chrono::DateTime::from_timestamp(secs, 0)
                .with_context(|| format!("SOURCE_DATE_EPOCH={s} is out of range"))?
        }
        Err(_) => chrono::Utc::now(),
    };
    Ok(when.format("%Y-%m-%d").to_string())
}
