//! The hub's encryption path on a file, for `tests/bench/crypto.sh`: the same
//! `cloud::seal::encrypt_stream` the relay uses (age v1 written by `cloud::agefmt` on
//! `ring`, chunks sealed on every core), to every recipient given.
//!   seal_file IN OUT age1… [age1…]
//!   seal_file --threads        prints how many threads seal chunks on this machine

use std::fs::File;
use std::io::{BufReader, BufWriter};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--threads") {
        // The same count `encrypt_stream` uses.
        println!("{}", std::thread::available_parallelism().map_or(1, |n| n.get()));
        return;
    }
    if args.len() < 3 {
        eprintln!("usage: seal_file IN OUT RECIPIENT... | seal_file --threads");
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
