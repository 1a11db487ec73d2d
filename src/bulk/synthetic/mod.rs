//! A deterministic generator of realistic leads: plausible names, companies, domains,
//! titles, phones and a spread of statuses, scores, tags and dates; `crm` writes the same kind
//! of people as a CRM's CSV export.

pub mod crm;

use crate::domain::{
    CountryCode, CustomFields, Domain, EmailAddress, Lead, LeadId, LeadStatus, LinkedInUrl, Phone, Score,
    Tags, Timestamp, WorkspaceId,
};
use chrono::Duration;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const FIRST: &[&str] = &[
    "Ava", "Liam", "Emma", "Noah", "Olivia", "Elijah", "Sophia", "Lucas", "Mia", "Mateo", "Amelia", "Hugo",
    "Léa", "Jonas", "Hannah", "Lukas", "Chloé", "Arjun", "Priya", "Wei", "Yuki", "Sofia", "Mohammed",
    "Fatima", "Diego", "Camila", "Oskar", "Freya", "Kenji", "Aisha", "Tom", "Grace", "Marta", "Pablo",
    "Nina", "Erik", "Zoe", "Ivan", "Elena", "Samuel",
];
const LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "Garcia",
    "Müller",
    "Schmidt",
    "Dubois",
    "Martin",
    "Rossi",
    "Bianchi",
    "Kowalski",
    "Nowak",
    "Silva",
    "Santos",
    "Kim",
    "Lee",
    "Park",
    "Tanaka",
    "Sato",
    "Patel",
    "Sharma",
    "Chen",
    "Wang",
    "Nguyen",
    "Andersson",
    "Johansson",
    "Hansen",
    "O'Brien",
    "Murphy",
    "Fischer",
    "Weber",
    "Lopez",
    "Gonzalez",
    "Novak",
    "Horvat",
    "Ivanova",
    "Petrov",
    "Cohen",
    "Levi",
    "Haddad",
    "Okafor",
];
const PREFIX: &[&str] = &[
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Hooli",
    "Vandelay",
    "Soylent",
    "Cyberdyne",
    "Aperture",
    "Tyrell",
    "Wonka",
    "Gringotts",
    "Oscorp",
    "Nakatomi",
    "Blue Sun",
    "Monarch",
    "Prestige",
    "Sterling",
    "Northwind",
    "Contoso",
    "Fabrikam",
    "Tailspin",
    "Litware",
    "Proseware",
    "Adatum",
    "Woodgrove",
    "Lucerne",
    "Fourth Coffee",
];
const SUFFIX: &[&str] = &[
    "Labs",
    "Systems",
    "Analytics",
    "Cloud",
    "Robotics",
    "Health",
    "Logistics",
    "Energy",
    "Software",
    "Capital",
    "Media",
    "Foods",
    "Networks",
    "Bio",
    "Security",
];
const TITLES: &[&str] = &[
    "CEO",
    "CTO",
    "CFO",
    "VP Sales",
    "VP Marketing",
    "Head of Growth",
    "Sales Director",
    "Marketing Manager",
    "Software Engineer",
    "Product Manager",
    "Account Executive",
    "Operations Manager",
    "Head of Data",
    "Procurement Lead",
    "IT Director",
];
const COUNTRIES: &[(&str, &str, &str)] = &[
    ("US", "+1", "com"),
    ("US", "+1", "io"),
    ("GB", "+44", "co.uk"),
    ("DE", "+49", "de"),
    ("FR", "+33", "fr"),
    ("NL", "+31", "nl"),
    ("ES", "+34", "es"),
    ("IT", "+39", "it"),
    ("SE", "+46", "se"),
    ("CA", "+1", "ca"),
    ("AU", "+61", "com.au"),
    ("IN", "+91", "in"),
    ("JP", "+81", "jp"),
    ("BR", "+55", "com.br"),
    ("PL", "+48", "pl"),
    ("CH", "+41", "ch"),
];
const SOURCES: &[&str] = &[
    "webinar", "website", "referral", "event", "import", "linkedin", "partner", "outbound",
];
const OWNERS: &[&str] = &[
    "ana@seller.test",
    "ben@seller.test",
    "chen@seller.test",
    "dara@seller.test",
    "eli@seller.test",
];
const TAGS: &[&str] = &[
    "enterprise",
    "smb",
    "hot",
    "trial",
    "newsletter",
    "churn-risk",
    "upsell",
    "event-2026",
    "partner",
    "priority",
];

/// Emits leads whose values vary the way real CRM data does; the same seed gives the same
/// sequence of values (ids and timestamps excepted, which are time-ordered).
pub struct Generator {
    rng: SmallRng,
    seed: u64,
    counter: u64,
}

fn ascii_slug(s: &str) -> String {
    s.chars()
        .filter_map(|c| match c {
            'é' | 'è' => Some('e'),
            'ü' => Some('u'),
            'ö' => Some('o'),
            c if c.is_ascii_alphanumeric() => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
            seed,
            counter: 0,
        }
    }

    fn pick<'a>(&mut self, list: &'a [&'a str]) -> &'a str {
        list[self.rng.random_range(0..list.len())]
    }

    /// One lead, created some time in the two years before `end`.
    pub fn lead(&mut self, workspace_id: WorkspaceId, end: Timestamp) -> Lead {
        self.counter += 1;
        let n = self.counter;
        let first = self.pick(FIRST);
        let last = self.pick(LAST);
        let company = format!("{} {}", self.pick(PREFIX), self.pick(SUFFIX));
        let (country, dial, tld) = COUNTRIES[self.rng.random_range(0..COUNTRIES.len())];
        let domain = format!("{}.{tld}", ascii_slug(&company));
        let created = end - Duration::seconds(self.rng.random_range(0..63_072_000));
        let updated = created + Duration::seconds(self.rng.random_range(0..86_400 * 30));
        let status = match self.rng.random_range(0..100) {
            0..=44 => LeadStatus::New,
            45..=69 => LeadStatus::Contacted,
            70..=84 => LeadStatus::Qualified,
            85..=94 => LeadStatus::Unqualified,
            _ => LeadStatus::Customer,
        };
        let tag_count = self.rng.random_range(0..3);
        let tags: Vec<String> = (0..tag_count).map(|_| self.pick(TAGS).to_owned()).collect();
        let has_email = self.rng.random_range(0..100) < 95;
        let email = has_email.then(|| {
            EmailAddress::from_trusted(format!(
                "{}.{}.{:x}-{n}@{domain}",
                ascii_slug(first),
                ascii_slug(last),
                self.seed
            ))
        });
        let phone = (self.rng.random_range(0..100) < 60).then(|| {
            Phone::from_trusted(format!(
                "{dial}{}",
                self.rng.random_range(200_000_000u64..999_999_999)
            ))
        });
        let mut custom = serde_json::Map::new();
        if self.rng.random_range(0..4) == 0 {
            custom.insert(
                "plan".into(),
                serde_json::json!(["free", "pro", "enterprise"][n as usize % 3]),
            );
        }
        Lead {
            id: LeadId::new(),
            workspace_id,
            email,
            first_name: Some(first.to_owned()),
            last_name: Some(last.to_owned()),
            title: Some(self.pick(TITLES).to_owned()),
            company_name: Some(company),
            company_domain: Some(Domain::from_trusted(domain)),
            phone,
            linkedin_url: Some(LinkedInUrl::from_trusted(format!(
                "https://www.linkedin.com/in/{}-{}-{n}",
                ascii_slug(first),
                ascii_slug(last)
            ))),
            country: Some(CountryCode::from_trusted(country.to_owned())),
            source: Some(self.pick(SOURCES).to_owned()),
            status,
            owner: (self.rng.random_range(0..10) < 8).then(|| self.pick(OWNERS).to_owned()),
            score: Score::from_trusted(self.rng.random_range(0..=100)),
            tags: Tags::parse("tags", &tags).unwrap_or_default(),
            custom_fields: CustomFields::from_trusted(custom),
            created_at: created,
            updated_at: updated.min(end),
            // fields the generator does not know of stay absent
            ..Lead::new(workspace_id, created)
        }
    }
}

/// The header of the files `write_import_csv` writes: twelve columns named the way CRM
/// exports name them.
pub const IMPORT_CSV_HEADER: [&str; 12] = [
    "E-mail Address",
    "First Name",
    "Last Name",
    "Company",
    "Website",
    "Job Title",
    "Phone",
    "Country",
    "Lead Source",
    "Status",
    "Score",
    "Tags",
];

/// What importing a file from `write_import_csv` must produce.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImportExpectation {
    pub rows: u64,
    /// Rows that create a lead in an empty workspace.
    pub created: u64,
    /// Rows whose email an earlier row of the file already has.
    pub duplicates_in_file: u64,
    /// `(row, columns named in its errors)` for every invalid row, in row order.
    pub invalid: Vec<(u64, Vec<&'static str>)>,
}

/// Writes a CSV file of `rows` leads, as a CRM export would, and returns what importing it into
/// an empty workspace must give. With `dirty`, the file has a byte-order mark and Windows line
/// endings, and of every 20 rows: one with a bad email, one with a bad phone, one repeating the
/// previous row's email in other letter case, one cut short after the last name, one with a
/// line break and a comma inside quoted cells, one without an email (but with a name), and one
/// with both a bad email and a bad score.
pub fn write_import_csv<W: std::io::Write>(
    out: W,
    rows: u64,
    seed: u64,
    dirty: bool,
) -> std::io::Result<ImportExpectation> {
    let mut out = out;
    if dirty {
        out.write_all("\u{feff}".as_bytes())?;
    }
    let terminator = if dirty {
        csv::Terminator::CRLF
    } else {
        csv::Terminator::Any(b'\n')
    };
    let mut writer = csv::WriterBuilder::new()
        .flexible(true)
        .terminator(terminator)
        .from_writer(out);
    writer.write_record(IMPORT_CSV_HEADER)?;
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut expect = ImportExpectation {
        rows,
        ..Default::default()
    };
    let mut previous_email = String::new();
    for i in 1..=rows {
        let (first, last, company) = person_at_company(&mut rng);
        let (country, dial, tld) = COUNTRIES[rng.random_range(0..COUNTRIES.len())];
        let domain = format!("{}.{tld}", ascii_slug(&company));
        let email = format!("{}.{}.{seed:x}-{i}@{domain}", ascii_slug(first), ascii_slug(last));
        let phone = format!(
            "{dial} {} {}",
            rng.random_range(200..999),
            rng.random_range(100_000..999_999)
        );
        let country_cell = if i % 2 == 0 {
            country.to_owned()
        } else {
            country_name(country).to_owned()
        };
        let title = TITLES[rng.random_range(0..TITLES.len())];
        let status = ["new", "Contacted", "QUALIFIED"][(i % 3) as usize];
        let score = (i % 101).to_string();
        let tags = TAGS[rng.random_range(0..TAGS.len())];
        let website = format!("https://www.{domain}/");
        let mut record: Vec<String> = vec![
            email.clone(),
            first.into(),
            last.into(),
            company.clone(),
            website,
            title.into(),
            phone,
            country_cell,
            SOURCES[rng.random_range(0..SOURCES.len())].into(),
            status.into(),
            score,
            tags.into(),
        ];
        let kind = if dirty { i % 20 } else { 0 };
        match kind {
            3 => {
                record[0] = format!("{}.{}.at.{domain}", ascii_slug(first), ascii_slug(last));
                expect.invalid.push((i, vec!["E-mail Address"]));
            }
            7 => {
                record[6] = "12".into();
                expect.invalid.push((i, vec!["Phone"]));
            }
            11 => {
                record[0] = format!("  {}  ", previous_email.to_uppercase());
                expect.duplicates_in_file += 1;
            }
            13 => {
                record.truncate(3);
                expect.created += 1;
            }
            15 => {
                record[3] = company.replacen(' ', "\n", 1);
                record[5] = format!("{title}, EMEA");
                expect.created += 1;
            }
            17 => {
                record[0] = String::new();
                expect.created += 1;
            }
            19 => {
                record[0] = "not an email".into();
                record[10] = "lots".into();
                expect.invalid.push((i, vec!["E-mail Address", "Score"]));
            }
            _ => expect.created += 1,
        }
        previous_email = email;
        writer.write_record(&record)?;
    }
    writer.flush()?;
    Ok(expect)
}

/// A first name, a last name and a company name, drawn in that order.
fn person_at_company(rng: &mut SmallRng) -> (&'static str, &'static str, String) {
    let first = FIRST[rng.random_range(0..FIRST.len())];
    let last = LAST[rng.random_range(0..LAST.len())];
    let company = format!(
        "{} {}",
        PREFIX[rng.random_range(0..PREFIX.len())],
        SUFFIX[rng.random_range(0..SUFFIX.len())]
    );
    (first, last, company)
}

/// The English name of one of the generator's countries.
fn country_name(code: &str) -> &'static str {
    match code {
        "US" => "United States",
        "GB" => "United Kingdom",
        "DE" => "Germany",
        "FR" => "France",
        "NL" => "Netherlands",
        "ES" => "Spain",
        "IT" => "Italy",
        "SE" => "Sweden",
        "CA" => "Canada",
        "AU" => "Australia",
        "IN" => "India",
        "JP" => "Japan",
        "BR" => "Brazil",
        "PL" => "Poland",
        _ => "Switzerland",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::now;

    #[test]
    fn generated_values_pass_validation() {
        let mut g = Generator::new(7);
        let ws = WorkspaceId::new();
        for _ in 0..2_000 {
            let lead = g.lead(ws, now());
            if let Some(e) = &lead.email {
                assert_eq!(EmailAddress::parse("email", e.as_str()).unwrap(), *e);
            }
            if let Some(p) = &lead.phone {
                assert_eq!(Phone::parse("phone", p.as_str()).unwrap(), *p);
            }
            let d = lead.company_domain.as_ref().unwrap();
            assert_eq!(Domain::parse("companyDomain", d.as_str()).unwrap(), *d);
            let u = lead.linkedin_url.as_ref().unwrap();
            assert_eq!(LinkedInUrl::parse("linkedinUrl", u.as_str()).unwrap(), *u);
            assert!(lead.updated_at >= lead.created_at);
        }
    }

    #[test]
    fn emails_are_unique_within_a_run() {
        let mut g = Generator::new(1);
        let ws = WorkspaceId::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..5_000 {
            if let Some(e) = g.lead(ws, now()).email {
                assert!(seen.insert(e));
            }
        }
    }
}
