//! `kura init` and `kura key add|list|remove|passwd`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Subcommand;
use kura::backend::Kind;
use kura::crypto::Cipher;
use kura::repo::keys;
use kura::repo::Repository;
use serde::Serialize;

use super::{output, prompt, Ctx};

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Add a passphrase that also opens the repository
    Add(NewPass),
    /// List the keys (passphrases) of the repository
    List,
    /// Remove a key; the key in use and the last key cannot be removed
    Remove {
        /// Key id or unique prefix, as shown by `kura key list`
        id: String,
    },
    /// Change the passphrase in use: adds the new key, then removes the old one
    Passwd(NewPass),
}

#[derive(clap::Args)]
pub struct NewPass {
    /// File with the new passphrase (else KURA_NEW_PASSWORD, else a prompt)
    #[arg(long, env = "KURA_NEW_PASSWORD_FILE")]
    new_password_file: Option<PathBuf>,
}

impl NewPass {
    fn read(&self) -> Result<Vec<u8>> {
        let pass = if let Ok(p) = std::env::var("KURA_NEW_PASSWORD") {
            p.into_bytes()
        } else if let Some(f) = &self.new_password_file {
            super::read_password_file(f)?
        } else {
            prompt("new passphrase", true)?
        };
        if pass.is_empty() {
            bail!("an empty passphrase is not allowed");
        }
        Ok(pass)
    }
}

#[derive(clap::Args)]
pub struct InitArgs {
    /// Cipher for the repository's objects: aes256gcm or xchacha20. Default: aes256gcm
    /// when the CPU has AES instructions (AES-NI and PCLMULQDQ, or ARMv8 AES and
    /// PMULL), else xchacha20. It is recorded in the repository and never changes.
    #[arg(long, value_parser = parse_cipher)]
    cipher: Option<Cipher>,
}

fn parse_cipher(s: &str) -> Result<Cipher, String> {
    s.parse().map_err(|e: kura::Error| e.to_string())
}

pub fn init(ctx: &Ctx, args: InitArgs) -> Result<ExitCode> {
    let backend = ctx.backend()?;
    let pass = ctx.passphrase(true)?;
    if pass.is_empty() {
        bail!("an empty passphrase is not allowed");
    }
    let cipher = args.cipher.unwrap_or_else(Cipher::for_this_cpu);
    let repo = Repository::init_with_cipher(backend, &pass, cipher)?;
    if ctx.json {
        output::print_json(&serde_json::json!({
            "repository": repo.location(),
            "id": repo.config().id,
            "cipher": cipher,
        }))?;
    } else {
        println!("created repository {} at {} (cipher {cipher})", &repo.config().id[..8], repo.location());
        println!("keep the passphrase safe: without it the data cannot be read");
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct KeyRow {
    id: String,
    current: bool,
    created: String,
    host: String,
    username: String,
}

pub fn run(ctx: &Ctx, cmd: KeyCommand) -> Result<ExitCode> {
    let repo = ctx.open()?;
    let b = repo.backend().as_ref();
    match cmd {
        KeyCommand::Add(np) => {
            let name = keys::add_key(b, repo.key(), &np.read()?)?;
            report(ctx, "added", &name)?;
        }
        KeyCommand::List => {
            let mut rows = Vec::new();
            for (name, _) in b.list(Kind::Key)? {
                let k = keys::load_key(b, &name)?;
                rows.push(KeyRow {
                    current: name == repo.key_name(),
                    id: name,
                    created: k.created.format("%Y-%m-%d %H:%M:%S").to_string(),
                    host: k.host,
                    username: k.username,
                });
            }
            if ctx.json {
                output::print_json(&rows)?;
            } else {
                println!("  {:<10} {:<20} {:<12} HOST", "ID", "CREATED", "USER");
                for r in rows {
                    let mark = if r.current { "*" } else { " " };
                    println!("{mark} {:<10} {:<20} {:<12} {}", &r.id[..8], r.created, r.username, r.host);
                }
            }
        }
        KeyCommand::Remove { id } => {
            let all = b.list(Kind::Key)?;
            let matches: Vec<_> = all.iter().filter(|(n, _)| n.starts_with(&id.to_ascii_lowercase())).collect();
            let name = match matches.as_slice() {
                [(n, _)] => n.clone(),
                [] => bail!("no key matches {id:?}: see `kura key list`"),
                _ => bail!("key prefix {id:?} is ambiguous: give more digits"),
            };
            if name == repo.key_name() {
                bail!("key {} is the one in use; open the repository with another passphrase to remove it", &name[..8]);
            }
            b.delete(Kind::Key, &name)?;
            report(ctx, "removed", &name)?;
        }
        KeyCommand::Passwd(np) => {
            let name = keys::add_key(b, repo.key(), &np.read()?)?;
            b.delete(Kind::Key, repo.key_name())?;
            report(ctx, "changed passphrase; new key", &name)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn report(ctx: &Ctx, what: &str, name: &str) -> Result<()> {
    if ctx.json {
        output::print_json(&serde_json::json!({"action": what, "key": name}))
    } else {
        println!("{what} key {}", &name[..8]);
        Ok(())
    }
}
