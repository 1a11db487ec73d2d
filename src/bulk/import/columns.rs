//! Which lead field a file's column fills: recognised from well-known header names (`Email`,
//! `E-mail Address`, `First Name`, `Company`, …), or given explicitly.

use super::ImportError;
use crate::domain::{LEAD_COLUMNS, lead_column};

/// A lead field an import column can fill.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Field {
    /// A plain text column of `domain::LEAD_COLUMNS` (by name) whose cell goes into the lead
    /// as written (`email`, `first_name`, `title`, …): every such column is importable under
    /// its own name without a line here.
    Text(&'static str),
    /// `Name` or `Full Name`: split at the last space into first and last name.
    FullName,
    /// A company website; its host becomes the company domain.
    Website,
    Phone,
    Country,
    Status,
    Score,
    Tags,
    CustomFields,
    /// One key of the custom fields (`custom.plan`).
    Custom(String),
    ArchivedAt,
    /// Columns an export writes for information only (`id`, `created_at`, `updated_at`): the
    /// store assigns them.
    Informational,
}

/// Canonical names of the fields with their own normalisation, as an export writes them and an
/// explicit mapping names them (plain text columns are found in `LEAD_COLUMNS`).
const CANONICAL: &[(&str, Field)] = &[
    ("full_name", Field::FullName),
    ("website", Field::Website),
    ("phone", Field::Phone),
    ("country", Field::Country),
    ("status", Field::Status),
    ("score", Field::Score),
    ("tags", Field::Tags),
    ("custom_fields", Field::CustomFields),
    ("archived_at", Field::ArchivedAt),
];

/// Header spellings seen in CRM and spreadsheet exports, compared after `header_key`
/// (lower-cased, everything but letters and digits removed).
const ALIASES: &[(&str, Field)] = &[
    ("email", Field::Text("email")),
    ("emailaddress", Field::Text("email")),
    ("mail", Field::Text("email")),
    ("workemail", Field::Text("email")),
    ("businessemail", Field::Text("email")),
    ("primaryemail", Field::Text("email")),
    ("contactemail", Field::Text("email")),
    ("firstname", Field::Text("first_name")),
    ("first", Field::Text("first_name")),
    ("givenname", Field::Text("first_name")),
    ("forename", Field::Text("first_name")),
    ("lastname", Field::Text("last_name")),
    ("last", Field::Text("last_name")),
    ("surname", Field::Text("last_name")),
    ("familyname", Field::Text("last_name")),
    ("name", Field::FullName),
    ("fullname", Field::FullName),
    ("contactname", Field::FullName),
    ("title", Field::Text("title")),
    ("jobtitle", Field::Text("title")),
    ("position", Field::Text("title")),
    ("role", Field::Text("title")),
    ("company", Field::Text("company_name")),
    ("companyname", Field::Text("company_name")),
    ("organization", Field::Text("company_name")),
    ("organisation", Field::Text("company_name")),
    ("organizationname", Field::Text("company_name")),
    ("account", Field::Text("company_name")),
    ("accountname", Field::Text("company_name")),
    ("employer", Field::Text("company_name")),
    ("companydomain", Field::Text("company_domain")),
    ("domain", Field::Text("company_domain")),
    ("emaildomain", Field::Text("company_domain")),
    ("website", Field::Website),
    ("companywebsite", Field::Website),
    ("websiteurl", Field::Website),
    ("web", Field::Website),
    ("url", Field::Website),
    ("homepage", Field::Website),
    ("phone", Field::Phone),
    ("phonenumber", Field::Phone),
    ("mobile", Field::Phone),
    ("mobilephone", Field::Phone),
    ("mobilenumber", Field::Phone),
    ("mobilephonenumber", Field::Phone),
    ("cellphone", Field::Phone),
    ("telephone", Field::Phone),
    ("tel", Field::Phone),
    ("workphone", Field::Phone),
    ("directphone", Field::Phone),
    ("businessphone", Field::Phone),
    ("linkedin", Field::Text("linkedin_url")),
    ("linkedinurl", Field::Text("linkedin_url")),
    ("linkedinprofile", Field::Text("linkedin_url")),
    ("linkedinprofileurl", Field::Text("linkedin_url")),
    ("personlinkedinurl", Field::Text("linkedin_url")),
    ("country", Field::Country),
    ("countrycode", Field::Country),
    ("countryregion", Field::Country),
    ("countryname", Field::Country),
    ("source", Field::Text("source")),
    ("leadsource", Field::Text("source")),
    ("originalsource", Field::Text("source")),
    ("status", Field::Status),
    ("leadstatus", Field::Status),
    ("owner", Field::Text("owner")),
    ("leadowner", Field::Text("owner")),
    ("contactowner", Field::Text("owner")),
    ("ownedby", Field::Text("owner")),
    ("owneremail", Field::Text("owner")),
    ("score", Field::Score),
    ("leadscore", Field::Score),
    ("hubspotscore", Field::Score),
    ("tags", Field::Tags),
    ("tag", Field::Tags),
    ("labels", Field::Tags),
    ("customfields", Field::CustomFields),
    ("archivedat", Field::ArchivedAt),
    ("id", Field::Informational),
    ("createdat", Field::Informational),
    ("updatedat", Field::Informational),
];

impl Field {
    /// The field an explicit mapping names: a canonical name (`first_name`), its camelCase
    /// API spelling (`firstName`), or `custom.<key>`.
    pub fn from_target(name: &str) -> Option<Self> {
        let name = name.trim();
        if let Some(key) = name.strip_prefix("custom.") {
            let key = key.trim();
            return (!key.is_empty()).then(|| Field::Custom(key.to_owned()));
        }
        let key = header_key(name);
        text_column(&key).or_else(|| {
            CANONICAL
                .iter()
                .find(|(canonical, _)| header_key(canonical) == key)
                .map(|(_, field)| field.clone())
        })
    }

    /// The field a header names, if it is a well-known spelling.
    pub fn recognise(header: &str) -> Option<Self> {
        let key = header_key(header);
        if let Some(custom) = header.trim().strip_prefix("custom.") {
            return Self::from_target(&format!("custom.{custom}"));
        }
        ALIASES
            .iter()
            .find(|(alias, _)| *alias == key)
            .map(|(_, f)| f.clone())
            .or_else(|| text_column(&key))
    }

    /// The name shown in summaries.
    pub fn name(&self) -> String {
        match self {
            Field::Custom(key) => format!("custom.{key}"),
            Field::Informational => "(informational)".to_owned(),
            Field::Text(name) => (*name).to_owned(),
            other => CANONICAL
                .iter()
                .find(|(_, f)| f == other)
                .map(|(n, _)| (*n).to_owned())
                .unwrap_or_default(),
        }
    }

    /// The lead API's name for the field, as validation errors carry it.
    pub(super) fn api_name(&self) -> &'static str {
        match self {
            Field::Text(name) => lead_column(name).map_or("", |c| c.api),
            Field::FullName => "firstName",
            Field::Website => "companyDomain",
            Field::Phone => "phone",
            Field::Country => "country",
            Field::Status => "status",
            Field::Score => "score",
            Field::Tags => "tags",
            Field::CustomFields | Field::Custom(_) => "customFields",
            Field::ArchivedAt => "archivedAt",
            Field::Informational => "",
        }
    }
}

/// The plain text column whose name or API name has this header key.
fn text_column(key: &str) -> Option<Field> {
    LEAD_COLUMNS
        .iter()
        .filter(|c| c.import.is_some())
        .find(|c| header_key(c.name) == key || header_key(c.api) == key)
        .map(|c| Field::Text(c.name))
}

/// Lower-cased, with everything but ASCII letters and digits removed: `E-mail Address` →
/// `emailaddress`.
fn header_key(header: &str) -> String {
    header
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// How a file's columns map to fields.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ColumnMapping {
    /// `(column index, header as written, field)` for every mapped column.
    pub mapped: Vec<(usize, String, Field)>,
    /// Headers no field was found for, or whose field an earlier column already fills.
    pub ignored: Vec<String>,
}

impl ColumnMapping {
    /// Maps `headers`: an explicit `(column, field)` pair wins, then well-known names; the first
    /// column for a field wins and later ones are ignored. Fails when the explicit mapping names
    /// a column the file lacks or a field that does not exist, or when nothing identifies a
    /// lead (no email, name or company column).
    pub fn resolve(headers: &[String], explicit: &[(String, String)]) -> Result<Self, ImportError> {
        let mut chosen: Vec<Option<Field>> = vec![None; headers.len()];
        for (column, target) in explicit {
            let field = Field::from_target(target).ok_or_else(|| {
                ImportError::Mapping(format!(
                    "'{target}' is not a lead field (use e.g. email, first_name, company_name, custom.<key>)"
                ))
            })?;
            let index = headers
                .iter()
                .position(|h| h.trim() == column.trim())
                .or_else(|| headers.iter().position(|h| header_key(h) == header_key(column)))
                .ok_or_else(|| ImportError::Mapping(format!("the file has no column '{column}'")))?;
            chosen[index] = Some(field);
        }
        let explicit_fields: Vec<Field> = chosen.iter().flatten().cloned().collect();
        let mut mapping = ColumnMapping::default();
        for (index, header) in headers.iter().enumerate() {
            let field = match chosen[index].take() {
                Some(f) => Some(f),
                None => Field::recognise(header).filter(|f| !explicit_fields.contains(f)),
            };
            match field {
                Some(f) if f == Field::Informational || !mapping.mapped.iter().any(|(_, _, g)| *g == f) => {
                    mapping.mapped.push((index, header.clone(), f));
                }
                _ => mapping.ignored.push(header.clone()),
            }
        }
        let identifies = mapping.mapped.iter().any(|(_, _, f)| {
            matches!(
                f,
                Field::FullName | Field::Text("email" | "first_name" | "last_name" | "company_name")
            )
        });
        if !identifies {
            return Err(ImportError::Mapping(
                "no column holds an email, a name or a company; map one with an explicit mapping".into(),
            ));
        }
        Ok(mapping)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn well_known_headers_are_recognised() {
        let m = ColumnMapping::resolve(
            &headers(&[
                "E-mail Address",
                "First Name",
                "Company",
                "Job Title",
                "Mobile Phone",
                "Notes",
            ]),
            &[],
        )
        .unwrap();
        let fields: Vec<Field> = m.mapped.iter().map(|(_, _, f)| f.clone()).collect();
        assert_eq!(
            fields,
            vec![
                Field::Text("email"),
                Field::Text("first_name"),
                Field::Text("company_name"),
                Field::Text("title"),
                Field::Phone
            ]
        );
        assert_eq!(m.ignored, vec!["Notes".to_owned()]);
    }

    #[test]
    fn the_first_column_for_a_field_wins() {
        let m = ColumnMapping::resolve(&headers(&["Email", "Work Email"]), &[]).unwrap();
        assert_eq!(m.mapped.len(), 1);
        assert_eq!(m.ignored, vec!["Work Email".to_owned()]);
    }

    #[test]
    fn explicit_mapping_wins_over_recognition() {
        let explicit = vec![
            ("Contact".to_owned(), "email".to_owned()),
            ("Plan".to_owned(), "custom.plan".to_owned()),
        ];
        let m = ColumnMapping::resolve(&headers(&["Email", "Contact", "Plan"]), &explicit).unwrap();
        assert_eq!(m.mapped[0], (1, "Contact".to_owned(), Field::Text("email")));
        assert_eq!(m.mapped[1], (2, "Plan".to_owned(), Field::Custom("plan".into())));
        assert_eq!(m.ignored, vec!["Email".to_owned()]);
    }

    #[test]
    fn bad_explicit_mappings_are_refused() {
        let unknown_field = vec![("Email".to_owned(), "favourite_colour".to_owned())];
        let err = ColumnMapping::resolve(&headers(&["Email"]), &unknown_field).unwrap_err();
        assert!(err.to_string().contains("favourite_colour"), "{err}");
        let missing_column = vec![("Mail".to_owned(), "email".to_owned())];
        let err = ColumnMapping::resolve(&headers(&["Email"]), &missing_column).unwrap_err();
        assert!(err.to_string().contains("no column 'Mail'"), "{err}");
    }

    #[test]
    fn a_file_without_identity_is_refused() {
        let err = ColumnMapping::resolve(&headers(&["Phone", "Country"]), &[]).unwrap_err();
        assert!(err.to_string().contains("no column holds"), "{err}");
    }

    #[test]
    fn camel_case_and_canonical_targets_are_accepted() {
        assert_eq!(Field::from_target("firstName"), Some(Field::Text("first_name")));
        assert_eq!(
            Field::from_target("company_domain"),
            Some(Field::Text("company_domain"))
        );
        assert_eq!(Field::from_target("custom."), None);
    }
}
