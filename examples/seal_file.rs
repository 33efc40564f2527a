//! The hub's encryption path on a file, for `tests/bench/crypto.sh`: the same
//! `cloud::seal::encrypt_stream` the relay uses, to every recipient given.
//!   seal_file IN OUT age1… [age1…]

use std::fs::File;
use std::io::{BufReader, BufWriter};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: seal_file IN OUT RECIPIENT...");
        std::process::exit(2);
    }
    let run = || -> homehub::Result<u64> {
        let recipients = homehub::cloud::keys::parse_recipients(&args[2..])?;
        let input = File::open(&args[0]).map_err(|e| homehub::Error::invalid(format!("{}: {e}", args[0])))?;
        let output = File::create(&args[1]).map_err(|e| homehub::Error::invalid(format!("{}: {e}", args[1])))?;
        homehub::cloud::seal::encrypt_stream(&recipients, BufReader::new(input), BufWriter::new(output))
    };
    match run() {
        Ok(n) => eprintln!("sealed {n} bytes"),
        Err(e) => {
            eprintln!("seal_file: {e}");
            std::process::exit(1);
        }
    }
}
