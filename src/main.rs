//! Thin entry point: parse, set up logging, run, map errors to exit codes.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let args = cli::Cli::parse();
    let (json, level) = args.log_setup();
    let filter = tracing_subscriber::EnvFilter::try_from_env("KURA_LOG")
        .unwrap_or_else(|_| format!("{level},aws_config=error").into());
    if json {
        tracing_subscriber::fmt().json().with_env_filter(filter).with_writer(std::io::stderr).init();
    } else {
        // No colors unless stderr is a terminal (journald, log files).
        use std::io::IsTerminal;
        let ansi = std::io::stderr().is_terminal();
        tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
    }
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// SIGPIPE stays ignored (Rust's default), so that a peer hanging up a socket (an S3
/// server mid-upload, a webhook receiver) is an I/O error the caller retries and
/// reports, not a silent death. Only stdout keeps the Unix convention: when its reader
/// goes away (`kura ls latest | head`), `println!` panics with EPIPE, and this hook
/// turns exactly that panic into a quiet exit with the status a SIGPIPE death gives.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("os error 32") {
            std::process::exit(128 + libc::SIGPIPE);
        }
        default(info)
    }));
}
