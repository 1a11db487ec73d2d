use super::*;
use crate::bulk::synthetic::write_import_csv;
use crate::domain::{CountryCode, LeadStatus, Patch};

fn csv_options() -> ParseOptions {
    ParseOptions {
        format: Format::Csv,
        mapping: Vec::new(),
        default_region: None,
    }
}

fn ndjson_options() -> ParseOptions {
    ParseOptions {
        format: Format::Ndjson,
        ..csv_options()
    }
}

fn parse_all(input: &str, options: &ParseOptions) -> Vec<ParsedRow> {
    Rows::new(input.as_bytes(), options)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn valid(row: &ParsedRow) -> &RowData {
    row.result
        .as_ref()
        .unwrap_or_else(|e| panic!("row {} invalid: {e:?}", row.row))
}

fn set<T: Clone + std::fmt::Debug>(patch: &Patch<T>) -> T {
    match patch {
        Patch::Set(v) => v.clone(),
        other => panic!("expected a value, got {other:?}"),
    }
}

#[test]
fn bom_crlf_and_quoted_newlines_are_read() {
    let input = "\u{feff}Email,First Name,Company\r\nANN@Acme.io ,Ann,\"Acme\r\nLabs\"\r\nbo@beta.io,Bo,\"Beta, Inc\"\r\n";
    let rows = parse_all(input, &csv_options());
    assert_eq!(rows.len(), 2);
    let ann = valid(&rows[0]);
    assert_eq!(ann.email.as_ref().unwrap().as_str(), "ann@acme.io");
    assert_eq!(set(&ann.patch.company_name), "Acme Labs");
    assert_eq!(set(&valid(&rows[1]).patch.company_name), "Beta, Inc");
    assert_eq!((rows[0].row, rows[1].row), (1, 2));
}

#[test]
fn the_byte_offset_ends_at_the_last_row_read() {
    let input = "Email,Company\nann@acme.io,Acme\nbo@beta.io,Beta\n";
    let mut rows = Rows::new(input.as_bytes(), &csv_options()).unwrap();
    assert_eq!(rows.byte_offset(), "Email,Company\n".len() as u64);
    rows.next().unwrap().unwrap();
    assert_eq!(
        rows.byte_offset(),
        "Email,Company\nann@acme.io,Acme\n".len() as u64
    );
    rows.next().unwrap().unwrap();
    assert_eq!(rows.byte_offset(), input.len() as u64);
    assert!(rows.next().is_none());
}

#[test]
fn every_problem_in_a_row_is_reported_with_its_column() {
    let input = "E-mail Address,Phone,Score,Status,Country\nnope,12,lots,WON,Atlantis\n";
    let rows = parse_all(input, &csv_options());
    let errors = rows[0].result.as_ref().unwrap_err();
    let columns: Vec<&str> = errors.iter().map(|e| e.column.as_deref().unwrap()).collect();
    assert_eq!(
        columns,
        vec!["Country", "E-mail Address", "Phone", "Score", "Status"]
    );
    assert!(errors.iter().all(|e| e.row == 1));
    assert!(errors.iter().all(|e| !e.reason.contains("nope")), "{errors:?}");
}

#[test]
fn values_are_normalised() {
    let options = ParseOptions {
        default_region: Some(CountryCode::parse("country", "DE").unwrap()),
        ..csv_options()
    };
    let input = "Email,Website,Phone,Country,Status,Score,Tags\n\
                 ann@gmail.com,https://www.acme.io/about,030 1234567,Germany,qualified,85.0,hot; trial\n";
    let rows = parse_all(input, &options);
    let row = valid(&rows[0]);
    assert_eq!(set(&row.patch.company_domain).as_str(), "acme.io");
    assert_eq!(set(&row.patch.phone).as_str(), "+49301234567");
    assert_eq!(set(&row.patch.country).as_str(), "DE");
    assert_eq!(row.patch.status, Some(LeadStatus::Qualified));
    assert_eq!(row.patch.score.unwrap().value(), 85);
    assert_eq!(row.patch.tags.as_ref().unwrap().as_strs(), vec!["hot", "trial"]);
}

#[test]
fn a_national_phone_number_takes_the_rows_own_country_before_the_default_region() {
    let options = ParseOptions {
        default_region: Some(CountryCode::parse("country", "DE").unwrap()),
        ..csv_options()
    };
    let input = "Phone Number,Email,Country/Region\n\
                 (415) 555-0134,ann@acme.io,United States\n\
                 020 7946 0958,bo@beta.io,gb\n\
                 030 1234567,cy@gamma.io,\n";
    let rows = parse_all(input, &options);
    let phones: Vec<String> = rows
        .iter()
        .map(|r| set(&valid(r).patch.phone).as_str().to_owned())
        .collect();
    assert_eq!(phones, ["+14155550134", "+442079460958", "+49301234567"]);
    // without a default region, a row without a country of its own cannot be placed
    let rows = parse_all("Phone,Email\n030 1234567,cy@gamma.io\n", &csv_options());
    let errors = rows[0].result.as_ref().unwrap_err();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].column.as_deref(), Some("Phone"));
    assert!(errors[0].reason.contains("no country code"), "{errors:?}");
}

#[test]
fn empty_cells_leave_fields_alone() {
    let rows = parse_all("Email,First Name,Title\nann@acme.io,,\n", &csv_options());
    let row = valid(&rows[0]);
    assert_eq!(row.patch.first_name, Patch::Keep);
    assert_eq!(row.patch.title, Patch::Keep);
}

#[test]
fn a_full_name_is_split_and_short_rows_are_padded() {
    let rows = parse_all("Name,Company,Email\nAnn Marie Lee,Acme\n", &csv_options());
    let row = valid(&rows[0]);
    assert_eq!(set(&row.patch.first_name), "Ann Marie");
    assert_eq!(set(&row.patch.last_name), "Lee");
    assert!(row.email.is_none());
}

#[test]
fn a_row_without_identity_is_invalid() {
    let rows = parse_all("Email,Company,Country\n,,DE\n", &csv_options());
    let errors = rows[0].result.as_ref().unwrap_err();
    assert_eq!(errors[0].column, None);
    assert!(errors[0].reason.contains("no email, name or company"));
}

#[test]
fn export_columns_round_trip() {
    let input = "id,email,first_name,tags,custom_fields,archived_at,created_at\n\
                 0190a0b0-0000-7000-8000-000000000000,ann@acme.io,Ann,\"[\"\"a;b\"\",\"\"c\"\"]\",\"{\"\"plan\"\":\"\"pro\"\",\"\"seats\"\":3}\",2026-01-02T03:04:05.123456Z,2025-01-01T00:00:00Z\n";
    let rows = parse_all(input, &csv_options());
    let row = valid(&rows[0]);
    assert_eq!(row.patch.tags.as_ref().unwrap().as_strs(), vec!["a;b", "c"]);
    let custom = row.patch.custom_fields.as_ref().unwrap().as_map();
    assert_eq!(custom["seats"], serde_json::json!(3));
    assert_eq!(
        row.archived_at.unwrap().to_rfc3339(),
        "2026-01-02T03:04:05.123456+00:00"
    );
}

#[test]
fn explicit_mapping_and_custom_columns() {
    let options = ParseOptions {
        mapping: vec![
            ("Contact".into(), "email".into()),
            ("Plan".into(), "custom.plan".into()),
        ],
        ..csv_options()
    };
    let rows = parse_all("Contact,Plan,custom.region\nann@acme.io,pro,emea\n", &options);
    let row = valid(&rows[0]);
    assert_eq!(row.email.as_ref().unwrap().as_str(), "ann@acme.io");
    let custom = row.patch.custom_fields.as_ref().unwrap().as_map();
    assert_eq!(custom["plan"], serde_json::json!("pro"));
    assert_eq!(custom["region"], serde_json::json!("emea"));
}

#[test]
fn malformed_headers_are_refused() {
    for (input, needle) in [("", "empty"), ("Notes,Phone\nx,y\n", "no column holds")] {
        let err = Rows::new(input.as_bytes(), &csv_options()).err().expect(input);
        assert!(err.to_string().contains(needle), "{err}");
    }
}

#[test]
fn invalid_utf8_spoils_only_its_row() {
    let mut input = b"Email,Company\nann@acme.io,Acme\nbo@beta.io,".to_vec();
    input.extend_from_slice(&[0xff, 0xfe, b'\n']);
    input.extend_from_slice(b"cy@gamma.io,Gamma\n");
    let rows: Vec<ParsedRow> = Rows::new(input.as_slice(), &csv_options())
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows[0].result.is_ok() && rows[2].result.is_ok());
    let errors = rows[1].result.as_ref().unwrap_err();
    assert_eq!(errors[0].column.as_deref(), Some("Company"));
}

#[test]
fn ndjson_rows_keep_json_types() {
    let input = "{\"email\":\"Ann@Acme.io\",\"tags\":[\"a\",\"b\"],\"score\":40,\"custom_fields\":{\"seats\":3}}\n\
                 \n\
                 [1,2]\n\
                 {\"email\": \"bo@beta.io\", \"notes\": \"x\"\n\
                 {\"E-mail Address\":\"cy@gamma.io\",\"Company\":null,\"colour\":\"red\"}\n";
    let rows = parse_all(input, &ndjson_options());
    assert_eq!(rows.len(), 4);
    let ann = valid(&rows[0]);
    assert_eq!(ann.email.as_ref().unwrap().as_str(), "ann@acme.io");
    assert_eq!(ann.patch.tags.as_ref().unwrap().as_strs(), vec!["a", "b"]);
    assert_eq!(ann.patch.score.unwrap().value(), 40);
    assert!(
        rows[1].result.as_ref().unwrap_err()[0]
            .reason
            .contains("not a JSON object")
    );
    assert!(
        rows[2].result.as_ref().unwrap_err()[0]
            .reason
            .contains("not valid JSON")
    );
    assert_eq!(rows[3].row, 4);
    assert_eq!(valid(&rows[3]).email.as_ref().unwrap().as_str(), "cy@gamma.io");
}

#[test]
fn ndjson_byte_offset_counts_blank_lines() {
    let input = "{\"email\":\"ann@acme.io\"}\n\n{\"email\":\"bo@beta.io\"}\n";
    let mut rows = Rows::new(input.as_bytes(), &ndjson_options()).unwrap();
    rows.next().unwrap().unwrap();
    assert_eq!(rows.byte_offset(), "{\"email\":\"ann@acme.io\"}\n".len() as u64);
    rows.next().unwrap().unwrap();
    assert_eq!(rows.byte_offset(), input.len() as u64);
}

#[test]
fn the_dirty_generator_matches_what_the_parser_finds() {
    let mut file = Vec::new();
    let expect = write_import_csv(&mut file, 400, 9, true).unwrap();
    assert!(file.starts_with("\u{feff}".as_bytes()));
    let mut rows = Rows::new(file.as_slice(), &csv_options()).unwrap();
    let mut invalid = Vec::new();
    let mut emails = std::collections::HashSet::new();
    let (mut created, mut duplicates) = (0, 0);
    for row in rows.by_ref() {
        let row = row.unwrap();
        match row.result {
            Ok(data) => match data.email {
                Some(e) if emails.contains(&e) => duplicates += 1,
                Some(e) => {
                    emails.insert(e);
                    created += 1;
                }
                None => created += 1,
            },
            Err(errors) => {
                let mut columns: Vec<&str> = errors
                    .iter()
                    .map(|e| match e.column.as_deref() {
                        Some("E-mail Address") => "E-mail Address",
                        Some("Phone") => "Phone",
                        Some("Score") => "Score",
                        other => panic!("unexpected column {other:?}: {errors:?}"),
                    })
                    .collect();
                columns.sort();
                invalid.push((row.row, columns));
            }
        }
    }
    // With CRLF endings the reader stops between the last row's \r and \n.
    assert_eq!(
        file.len() as u64 - rows.byte_offset(),
        1,
        "rows {}",
        rows.rows_read()
    );
    assert_eq!(expect.rows, 400);
    assert_eq!((created, duplicates), (expect.created, expect.duplicates_in_file));
    assert_eq!(invalid, expect.invalid);
}
