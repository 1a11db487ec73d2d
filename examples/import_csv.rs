//! Writes the synthetic CSV files the import benchmarks load (`bench/import.sh`,
//! `bench/import_floor.sh`) and prints, as JSON, what importing them must give.
//!
//!     cargo run --release --example import_csv -- OUT.csv ROWS [--dirty] [--seed N]
//!     cargo run --release --example import_csv -- OUT.csv ROWS --crm hubspot|salesforce
//!         [--seed N] [--updates-of SEED]
//!
//! Without `--crm`: 12 columns under fixed CRM-style headers (`--dirty` adds a byte-order mark,
//! CRLF and faulty rows). With `--crm`: a CRM's export shape with national phone formats,
//! country names, blank lines, quoted line breaks and one invalid row in twenty;
//! `--updates-of SEED` makes every third row name the lead of the same row of the file written
//! with SEED.

use leadgate::bulk::synthetic::crm::{CrmCsv, CrmShape, write_crm_csv};
use std::io::BufWriter;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: import_csv OUT.csv ROWS [--dirty] [--seed N] [--crm hubspot|salesforce] [--updates-of SEED]";
    let out = args.first().ok_or_else(|| anyhow::anyhow!(usage))?;
    let rows: u64 = args.get(1).ok_or_else(|| anyhow::anyhow!(usage))?.parse()?;
    let value = |flag: &str| -> anyhow::Result<Option<&String>> {
        match args.iter().position(|a| a == flag) {
            Some(i) => Ok(Some(args.get(i + 1).ok_or_else(|| anyhow::anyhow!(usage))?)),
            None => Ok(None),
        }
    };
    let seed = value("--seed")?.map(|s| s.parse()).transpose()?.unwrap_or(42);
    let file = BufWriter::with_capacity(1 << 20, std::fs::File::create(out)?);
    if let Some(shape) = value("--crm")? {
        let shape = match shape.as_str() {
            "hubspot" => CrmShape::HubSpot,
            "salesforce" => CrmShape::Salesforce,
            _ => anyhow::bail!(usage),
        };
        let updates_of = value("--updates-of")?.map(|s| s.parse()).transpose()?;
        let spec = CrmCsv {
            rows,
            seed,
            shape,
            updates_of,
        };
        let e = write_crm_csv(file, &spec)?;
        println!(
            "{{\"rows\": {}, \"created\": {}, \"updated\": {}, \"invalid\": {}, \"blankLines\": {}}}",
            e.rows, e.created, e.updated, e.invalid, e.blank_lines
        );
        return Ok(());
    }
    let dirty = args.iter().any(|a| a == "--dirty");
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
