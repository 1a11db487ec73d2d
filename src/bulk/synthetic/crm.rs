//! A CRM-shaped CSV export, as the import benchmark and its database floors load it: header names
//! as HubSpot or Salesforce write them, names and domains in their own letter case, national
//! phone formats, country names, blank lines, line breaks and commas inside quoted cells, and one
//! invalid row in twenty. Every row is drawn from its own generator seeded by `(seed, row)`, so a
//! second file can name the leads of a first one (`CrmCsv::updates_of`) without storing them.

use super::{COUNTRIES, SOURCES, TAGS, TITLES, ascii_slug, country_name, person_at_company};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::io::Write;

/// Which CRM's export the file imitates; only the header names differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrmShape {
    HubSpot,
    Salesforce,
}

impl CrmShape {
    pub fn header(self) -> [&'static str; 12] {
        match self {
            CrmShape::HubSpot => [
                "First Name",
                "Last Name",
                "Email",
                "Company Name",
                "Phone Number",
                "Country/Region",
                "Job Title",
                "Website URL",
                "Lead Status",
                "Original Source",
                "HubSpot Score",
                "Tags",
            ],
            CrmShape::Salesforce => [
                "First Name",
                "Last Name",
                "Email",
                "Company",
                "Phone",
                "Country",
                "Title",
                "Website",
                "Lead Status",
                "Lead Source",
                "Lead Score",
                "Tags",
            ],
        }
    }
}

/// What to write.
#[derive(Clone, Debug)]
pub struct CrmCsv {
    pub rows: u64,
    pub seed: u64,
    pub shape: CrmShape,
    /// Every third row (rows 3, 6, 9, …) names the lead of the same row of the file written
    /// with this seed, its email in upper case and its other values changed: imported into a
    /// workspace that holds that file, a third of the rows update existing leads.
    pub updates_of: Option<u64>,
}

impl CrmCsv {
    /// An export of `rows` leads.
    pub fn export(rows: u64, seed: u64, shape: CrmShape) -> Self {
        Self {
            rows,
            seed,
            shape,
            updates_of: None,
        }
    }

    /// A file of as many rows, drawn with `seed`, every third of which names a lead of this one.
    pub fn updating(&self, seed: u64, shape: CrmShape) -> Self {
        Self {
            seed,
            shape,
            updates_of: Some(self.seed),
            ..self.clone()
        }
    }
}

/// What importing the file must give: into an empty workspace, or with `updates_of`, into a
/// workspace holding exactly the file it names.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CrmExpectation {
    pub rows: u64,
    pub created: u64,
    /// Rows naming a lead of the `updates_of` file by email.
    pub updated: u64,
    /// Rows refused (one in twenty): a bad email, score or status.
    pub invalid: u64,
    /// Empty lines between rows, which are not rows.
    pub blank_lines: u64,
}

/// How row `i` is special: one in twenty invalid (rotating through three faults), one in
/// ninety-seven without an email (still a lead: it has a name and company).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    BadEmail,
    BadScore,
    BadStatus,
    NoEmail,
    Plain,
}

fn kind(i: u64) -> Kind {
    if i % 20 == 7 {
        match (i / 20) % 3 {
            0 => Kind::BadEmail,
            1 => Kind::BadScore,
            _ => Kind::BadStatus,
        }
    } else if i.is_multiple_of(97) {
        Kind::NoEmail
    } else {
        Kind::Plain
    }
}

/// The person behind row `i` of the file written with `seed`.
struct Person {
    first: &'static str,
    last: &'static str,
    company: String,
    country: usize,
    email: String,
}

fn person(seed: u64, i: u64) -> (Person, SmallRng) {
    let mut rng = SmallRng::seed_from_u64(seed.rotate_left(32) ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let (first, last, company) = person_at_company(&mut rng);
    let country = rng.random_range(0..COUNTRIES.len());
    let domain = format!("{}.{}", ascii_slug(&company), COUNTRIES[country].2);
    // the names' own letter case and a capitalised domain, as people type them
    let mut host = domain;
    host[..1].make_ascii_uppercase();
    let email = format!("{}.{}.{seed:x}-{i}@{host}", capitalised(first), capitalised(last));
    (
        Person {
            first,
            last,
            company,
            country,
            email,
        },
        rng,
    )
}

/// The ASCII letters of a name, first one in upper case.
fn capitalised(name: &str) -> String {
    let mut s = ascii_slug(name);
    if let Some(first) = s.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    s
}

/// A phone number the way people in `code` write it at home, or (one in four) internationally.
fn phone(rng: &mut SmallRng, code: &str, dial: &str) -> String {
    let n = |rng: &mut SmallRng, lo: u64, hi: u64| rng.random_range(lo..hi);
    if rng.random_range(0..4) == 0 {
        return format!("{dial} {} {}", n(rng, 20, 99), n(rng, 1_000_000, 9_999_999));
    }
    match code {
        "US" | "CA" => format!(
            "({}) {}-{:04}",
            n(rng, 201, 989),
            n(rng, 200, 999),
            n(rng, 0, 10_000)
        ),
        "GB" => format!("020 {} {:04}", n(rng, 7000, 8999), n(rng, 0, 10_000)),
        "DE" => format!("030 {}", n(rng, 1_000_000, 99_999_999)),
        "FR" => format!(
            "0{} {:02} {:02} {:02} {:02}",
            n(rng, 1, 6),
            n(rng, 0, 100),
            n(rng, 0, 100),
            n(rng, 0, 100),
            n(rng, 0, 100)
        ),
        "NL" | "SE" | "ES" | "PL" | "CH" | "AU" => {
            format!("0{}-{}", n(rng, 10, 99), n(rng, 1_000_000, 9_999_999))
        }
        "IT" => format!("06 {}", n(rng, 1_000_000, 99_999_999)),
        _ => format!("0{} {}", n(rng, 10, 99), n(rng, 10_000_000, 99_999_999)),
    }
}

/// Writes the file and returns what importing it must give.
pub fn write_crm_csv<W: Write>(mut out: W, spec: &CrmCsv) -> std::io::Result<CrmExpectation> {
    // rows go through a buffer so that blank lines can be put between them
    let mut writer = csv::Writer::from_writer(Vec::with_capacity(1 << 16));
    writer.write_record(spec.shape.header())?;
    let mut expect = CrmExpectation {
        rows: spec.rows,
        ..Default::default()
    };
    for i in 1..=spec.rows {
        let (own, mut rng) = person(spec.seed, i);
        let updates = spec.updates_of.filter(|_| i.is_multiple_of(3));
        let (who, email) = match updates {
            Some(base) => {
                let (p, _) = person(base, i);
                let email = p.email.to_uppercase();
                (p, email)
            }
            None => {
                let email = own.email.clone();
                (own, email)
            }
        };
        let (code, dial, _) = COUNTRIES[who.country];
        let country_cell = if rng.random_range(0..10) < 7 {
            country_name(code).to_owned()
        } else {
            code.to_ascii_lowercase()
        };
        let mut company = who.company.clone();
        if i % 50 == 25 {
            company = company.replacen(' ', "\n", 1);
        }
        let mut title = TITLES[rng.random_range(0..TITLES.len())].to_owned();
        if i % 50 == 26 {
            title.push_str(", EMEA");
        }
        let website = format!(
            "https://www.{}/",
            who.email
                .rsplit('@')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase()
        );
        let mut record = vec![
            who.first.to_owned(),
            who.last.to_owned(),
            email,
            company,
            phone(&mut rng, code, dial),
            country_cell,
            title,
            website,
            ["New", "contacted", "QUALIFIED", "Unqualified"][rng.random_range(0..4)].to_owned(),
            SOURCES[rng.random_range(0..SOURCES.len())].to_owned(),
            rng.random_range(0..=100u32).to_string(),
            format!(
                "{};{}",
                TAGS[rng.random_range(0..TAGS.len())],
                TAGS[rng.random_range(0..TAGS.len())]
            ),
        ];
        let k = kind(i);
        match k {
            Kind::BadEmail => record[2] = format!("{} at {}", who.first, who.company),
            Kind::BadScore => record[10] = "n/a".into(),
            Kind::BadStatus => record[8] = "Hot lead".into(),
            Kind::NoEmail if updates.is_none() => record[2].clear(),
            _ => {}
        }
        if matches!(k, Kind::BadEmail | Kind::BadScore | Kind::BadStatus) {
            expect.invalid += 1;
        } else if updates.is_some() && k == Kind::Plain {
            expect.updated += 1;
        } else {
            expect.created += 1;
        }
        writer.write_record(&record)?;
        if i.is_multiple_of(100) {
            let mut buf = writer.into_inner().map_err(|e| e.into_error())?;
            buf.push(b'\n');
            expect.blank_lines += 1;
            out.write_all(&buf)?;
            buf.clear();
            writer = csv::Writer::from_writer(buf);
        }
    }
    out.write_all(&writer.into_inner().map_err(|e| e.into_error())?)?;
    out.flush()?;
    Ok(expect)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bulk::import::{Format, ParseOptions, Rows};

    fn parse(spec: &CrmCsv) -> (CrmExpectation, Vec<crate::bulk::import::ParsedRow>) {
        let mut data = Vec::new();
        let expect = write_crm_csv(&mut data, spec).unwrap();
        let options = ParseOptions {
            format: Format::Csv,
            mapping: Vec::new(),
            default_region: None,
        };
        let rows = Rows::new(data.as_slice(), &options)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        (expect, rows)
    }

    #[test]
    fn every_row_parses_as_the_expectation_says() {
        for shape in [CrmShape::HubSpot, CrmShape::Salesforce] {
            let spec = CrmCsv::export(2_000, 42, shape);
            let (expect, rows) = parse(&spec);
            assert_eq!(rows.len() as u64, expect.rows);
            let invalid = rows.iter().filter(|r| r.result.is_err()).count() as u64;
            assert_eq!(invalid, expect.invalid);
            assert_eq!(expect.invalid, 100, "one row in twenty");
            assert_eq!(expect.created, 1_900);
            for row in rows.iter().filter(|r| kind(r.row) == Kind::Plain) {
                let data = row
                    .result
                    .as_ref()
                    .unwrap_or_else(|e| panic!("row {}: {e:?}", row.row));
                let email = data.email.as_ref().unwrap().as_str();
                assert_eq!(email, email.to_lowercase());
                assert!(
                    data.patch.phone.is_set() && data.patch.country.is_set(),
                    "row {}",
                    row.row
                );
            }
        }
    }

    #[test]
    fn an_update_file_names_the_base_files_leads() {
        let base = CrmCsv::export(600, 1, CrmShape::HubSpot);
        let update = base.updating(2, CrmShape::HubSpot);
        let (_, base_rows) = parse(&base);
        let (expect, rows) = parse(&update);
        let stored: std::collections::HashSet<String> = base_rows
            .iter()
            .filter_map(|r| Some(r.result.as_ref().ok()?.email.as_ref()?.as_str().to_owned()))
            .collect();
        let named = rows
            .iter()
            .filter_map(|r| r.result.as_ref().ok()?.email.as_ref())
            .filter(|e| stored.contains(e.as_str()))
            .count() as u64;
        assert_eq!(named, expect.updated);
        assert!(expect.updated > 150, "{expect:?}");
        assert_eq!(expect.created + expect.updated + expect.invalid, 600);
    }
}
