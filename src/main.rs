//! Thin entry point: parse, set up logging, run, map errors to exit codes.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // End quietly when the reader of stdout goes away (`kura ls latest | head`), as
    // other Unix tools do, instead of panicking in println!.
    // SAFETY: called first, before any other thread exists; SIG_DFL is a valid action.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
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
