//! `kura agent`: enrol hosts on the coordinator (enroll, list, revoke) and run the
//! agent on a host (join, run). docs/FLEET.md.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use clap::{Args as ClapArgs, Subcommand, ValueEnum};

use super::{output, Ctx};
use kura::fleet::role::RoleKind;
use kura::fleet::token::Token;
use kura::fleet_dir::FleetDir;

#[derive(Subcommand)]
pub enum AgentCommand {
    /// On the coordinator: print a one-time enrolment token for HOST (or an operator or viewer)
    Enroll(EnrollArgs),
    /// On a host: get a certificate from the coordinator with a token (the key is made here)
    Join(JoinArgs),
    /// On a host: connect to the coordinator and do this host's work until stopped
    Run(RunArgs),
    /// On the coordinator: the enrolled certificates, their role, last contact, revocation
    List,
    /// On the coordinator: revoke every certificate of NAME, at once
    Revoke(RevokeArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    Agent,
    Operator,
    Viewer,
}

#[derive(ClapArgs)]
pub struct EnrollArgs {
    /// The host name (agents: the `host` of its systems in kura.toml) or the person's name
    pub name: String,
    #[arg(long, value_enum, default_value = "agent")]
    pub role: RoleArg,
    /// How long the token stays valid (e.g. 30m, 1h, 1d)
    #[arg(long, default_value = "1h")]
    pub ttl: String,
    /// The coordinator's URL, carried in the token (e.g. https://coord.example:9443)
    #[arg(long)]
    pub url: Option<String>,
}

#[derive(ClapArgs)]
pub struct JoinArgs {
    /// The coordinator's URL (https://HOST:PORT); default: the one in the token
    pub url: Option<String>,
    /// The token `kura agent enroll` printed on the coordinator
    #[arg(long, env = "KURA_AGENT_TOKEN")]
    pub token: String,
    /// The agent's directory (key, certificate, held tasks)
    #[arg(long, env = "KURA_AGENT_DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(ClapArgs)]
pub struct RunArgs {
    /// The agent's directory (as given to `join`)
    #[arg(long, env = "KURA_AGENT_DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(ClapArgs)]
pub struct RevokeArgs {
    /// The name the certificate was enrolled for
    pub name: String,
}

/// `/var/lib/kura/agent` for root, else `~/.local/state/kura/agent`.
fn default_dir() -> PathBuf {
    kura::state::default_path().parent().map(|p| p.join("agent")).unwrap_or_else(|| PathBuf::from("agent"))
}

fn state_path(ctx: &Ctx) -> Result<PathBuf> {
    let st = ctx.state()?;
    Ok(st.path().to_path_buf())
}

pub fn run(ctx: &Ctx, c: AgentCommand) -> Result<ExitCode> {
    match c {
        AgentCommand::Enroll(a) => enroll(ctx, a),
        AgentCommand::Join(a) => join(ctx, a),
        AgentCommand::Run(a) => {
            let dir = a.dir.unwrap_or_else(default_dir);
            kura::agent::run::run(&dir, &AtomicBool::new(false))?;
            Ok(ExitCode::SUCCESS)
        }
        AgentCommand::List => list(ctx),
        AgentCommand::Revoke(a) => revoke(ctx, a),
    }
}

fn enroll(ctx: &Ctx, a: EnrollArgs) -> Result<ExitCode> {
    if !kura::config::valid_system_name(&a.name) {
        bail!("{:?} is not a valid name: use lower-case letters, digits, '.', '_' and '-'", a.name);
    }
    let ttl = kura::config::parse_duration(&a.ttl).with_context(|| format!("--ttl {:?}", a.ttl))?;
    if ttl.is_zero() {
        bail!("--ttl 0 would expire at once: give e.g. 30m or 1h");
    }
    if let Some(u) = &a.url {
        if !u.starts_with("https://") {
            bail!("--url {u:?} is not an https:// URL");
        }
    }
    let mut state = ctx.state()?;
    let ca = FleetDir::for_state(state.path()).ca()?;
    let token = Token::new(ca.fingerprint(), a.url.clone());
    let role = match a.role {
        RoleArg::Agent => RoleKind::Agent,
        RoleArg::Operator => RoleKind::Operator,
        RoleArg::Viewer => RoleKind::Viewer,
    };
    let now = Utc::now();
    let expires = now + chrono::Duration::from_std(ttl)?;
    state.fleet_add_token(&token.secret_hash(), &a.name, role, now, expires)?;
    if ctx.json {
        output::print_json(&serde_json::json!({
            "token": token.encode(), "name": a.name, "role": role, "expires_at": expires,
            "ca_fingerprint": hex_fp(&token.ca_fingerprint),
        }))?;
    } else {
        println!("{}", token.encode());
        eprintln!(
            "one-time token for {} ({role}), valid until {}; on that host run:\n  kura agent join {} --token TOKEN",
            a.name,
            expires.format("%Y-%m-%d %H:%M UTC"),
            a.url.as_deref().unwrap_or("https://COORDINATOR:9443"),
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn hex_fp(fp: &[u8; 32]) -> String {
    fp.iter().map(|b| format!("{b:02x}")).collect()
}

fn join(ctx: &Ctx, a: JoinArgs) -> Result<ExitCode> {
    let dir = a.dir.unwrap_or_else(default_dir);
    let reply = kura::agent::join::join(a.url.as_deref(), &a.token, &dir)?;
    if ctx.json {
        output::print_json(&serde_json::json!({ "name": reply.name, "role": reply.role, "dir": dir }))?;
    } else {
        println!("joined as {} ({}); identity in {}", reply.name, reply.role, dir.display());
        if reply.role == RoleKind::Agent {
            println!("start the agent with: kura agent run --dir {}", dir.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list(ctx: &Ctx) -> Result<ExitCode> {
    let _ = state_path(ctx)?;
    let state = ctx.state_read_only()?;
    let agents = state.fleet_agents()?;
    if ctx.json {
        output::print_json(&agents)?;
        return Ok(ExitCode::SUCCESS);
    }
    if agents.is_empty() {
        println!("nothing enrolled yet: `kura agent enroll HOST` prints a token");
    }
    for a in agents {
        let seen = a.last_seen.map_or("never".to_string(), |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string());
        let revoked = a.revoked_at.map(|t| format!(", REVOKED {}", t.format("%Y-%m-%d %H:%M UTC"))).unwrap_or_default();
        println!("{:<20} {:<9} last seen {seen}{revoked}  cert {}", a.name, a.role, &a.fingerprint[..16]);
    }
    Ok(ExitCode::SUCCESS)
}

fn revoke(ctx: &Ctx, a: RevokeArgs) -> Result<ExitCode> {
    let mut state = ctx.state()?;
    let n = state.fleet_revoke(&a.name, Utc::now())?;
    if n == 0 {
        bail!("{} has no valid certificate (see `kura agent list`)", a.name);
    }
    println!("revoked {n} certificate(s) of {}: refused from the next request on", a.name);
    Ok(ExitCode::SUCCESS)
}
