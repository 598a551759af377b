//! `kura notify test`: send a test event through the config's webhook and/or command
//! right away, without the daemon and without the outbox, and say what happened.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use chrono::Utc;
use serde::Serialize;

use super::Ctx;
use kura::notify::{self, Channel, Event, EventKind};

#[derive(clap::Subcommand)]
pub enum NotifyCommand {
    /// Send a test event (`"event":"test"`) to the configured webhook and/or command
    /// now, directly (not through the daemon or its outbox). Exit 0 when every channel
    /// accepted it, 2 when one failed (the error names the URL, secrets redacted)
    Test {
        /// The config file with the [notify] table (see docs/CONFIG.md)
        #[arg(long, default_value = "/etc/kura/kura.toml")]
        config: PathBuf,
    },
}

#[derive(Serialize)]
struct Sent {
    channel: String,
    /// The URL (redacted) or the command.
    target: String,
    ok: bool,
    error: Option<String>,
}

#[derive(Serialize)]
struct Report {
    id: String,
    ok: bool,
    channels: Vec<Sent>,
}

pub fn run(ctx: &Ctx, cmd: NotifyCommand) -> Result<ExitCode> {
    let NotifyCommand::Test { config } = cmd;
    let cfg = kura::config::load(&config)
        .map_err(|p| anyhow!("the config {} is not valid; nothing was sent:\n{p}", config.display()))?;
    let n = &cfg.notify;
    if notify::channels(n).is_empty() {
        bail!("{}: [notify] has no webhook and no command: nothing to test", config.display());
    }
    let mut ev = Event::new(EventKind::Test, Utc::now(), "kura notify test: notifications reach you".into());
    let results = notify::send_now(n, &mut ev);
    let channels: Vec<Sent> = results
        .into_iter()
        .map(|(c, r)| Sent {
            channel: c.to_string(),
            target: match c {
                Channel::Webhook => notify::redact(n.webhook.as_deref().unwrap_or_default()),
                Channel::Command => n.command.clone().unwrap_or_default(),
            },
            ok: r.is_ok(),
            error: r.err().map(|e| e.to_string()),
        })
        .collect();
    let report = Report { id: ev.id, ok: channels.iter().all(|c| c.ok), channels };
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

fn print_report(r: &Report) {
    for c in &r.channels {
        match &c.error {
            None => println!("{} {}: delivered (event {})", c.channel, c.target, r.id),
            Some(e) => eprintln!("error: {} not delivered: {e}", c.channel),
        }
    }
}
