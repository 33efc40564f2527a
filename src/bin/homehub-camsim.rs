//! `homehub-camsim`: a simulated network camera for homehub demos and tests.
//! All the work is in [`homehub::camsim`]; this only parses flags, sets up logging and turns
//! errors (and panics) into one line on stderr with exit status 1.

use std::process::ExitCode;

use homehub::camsim;

fn main() -> ExitCode {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("homehub-camsim: internal error: {}{at}", one_line(&msg));
        std::process::exit(1);
    }));

    let args = match camsim::parse_args(std::env::args_os()) {
        Ok(args) => args,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.clap.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.clap.print();
                return ExitCode::SUCCESS;
            }
            eprintln!("homehub-camsim: {}", e.line);
            return ExitCode::FAILURE;
        }
    };

    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    match camsim::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("homehub-camsim: {}", one_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
