//! Writes the synthetic CSV the import benchmark loads (`bench/import.sh`): 12 columns, as a
//! CRM export would, and prints what importing it into an empty workspace must give.
//!
//!     cargo run --release --example import_csv -- OUT.csv ROWS [--dirty] [--seed N]

use std::io::BufWriter;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: import_csv OUT.csv ROWS [--dirty] [--seed N]";
    let out = args.first().ok_or_else(|| anyhow::anyhow!(usage))?;
    let rows: u64 = args.get(1).ok_or_else(|| anyhow::anyhow!(usage))?.parse()?;
    let dirty = args.iter().any(|a| a == "--dirty");
    let seed = match args.iter().position(|a| a == "--seed") {
        Some(i) => args.get(i + 1).ok_or_else(|| anyhow::anyhow!(usage))?.parse()?,
        None => 42,
    };
    let file = BufWriter::with_capacity(1 << 20, std::fs::File::create(out)?);
    let expect = leadgate::bulk::synthetic::write_import_csv(file, rows, seed, dirty)?;
    println!(
        "{{\"rows\": {}, \"created\": {}, \"duplicatesInFile\": {}, \"invalid\": {}}}",
        expect.rows,
        expect.created,
        expect.duplicates_in_file,
        expect.invalid.len()
    );
    Ok(())
}
