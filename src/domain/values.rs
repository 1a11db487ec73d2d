//! Validated value types. Each `parse` trims, normalises and checks once; the field name it is
//! given is only used to label the error.

use super::error::{FieldError, FieldErrorCode};
use std::fmt;

macro_rules! string_value {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
            /// Wraps a value read back from storage, where it was validated on the way in.
            pub fn from_trusted(value: String) -> Self {
                Self(value)
            }
            pub fn into_inner(self) -> String {
                self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// An email address, trimmed and lower-cased so that it can be compared and deduplicated.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct EmailAddress(String);
string_value!(EmailAddress);

impl EmailAddress {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let value = raw.trim().to_lowercase();
        let invalid = |why: &str| FieldError::invalid(field, format!("not a valid email address: {why}"));
        if value.is_empty() {
            return Err(FieldError::new(
                field,
                FieldErrorCode::Required,
                "email must not be blank",
            ));
        }
        if value.len() > 254 {
            return Err(FieldError::new(
                field,
                FieldErrorCode::TooLong,
                "email is longer than 254 characters",
            ));
        }
        let Some((local, domain)) = value.rsplit_once('@') else {
            return Err(invalid("no @"));
        };
        if local.is_empty() || local.len() > 64 {
            return Err(invalid("the part before @ must have 1 to 64 characters"));
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(invalid("misplaced dot before @"));
        }
        let local_ok = local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
        if !local_ok {
            return Err(invalid("unexpected character before @"));
        }
        let domain = Domain::parse_host(domain).map_err(|why| invalid(&why))?;
        Ok(Self(format!("{local}@{domain}")))
    }

    /// The domain part, e.g. `acme.com` for `ann@acme.com`.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }
}

/// An internet domain name such as `acme.com`, lower-cased, without scheme, `www.` or path.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Domain(String);
string_value!(Domain);

impl Domain {
    /// Accepts a bare domain or a website URL (`https://www.acme.com/about` → `acme.com`).
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let mut value = raw.trim().to_lowercase();
        if value.is_empty() {
            return Err(FieldError::new(
                field,
                FieldErrorCode::Required,
                "domain must not be blank",
            ));
        }
        for scheme in ["https://", "http://"] {
            if let Some(rest) = value.strip_prefix(scheme) {
                value = rest.to_owned();
            }
        }
        if let Some(end) = value.find(['/', '?', '#']) {
            value.truncate(end);
        }
        let host = value.strip_prefix("www.").unwrap_or(&value);
        Self::parse_host(host)
            .map(Self)
            .map_err(|why| FieldError::invalid(field, format!("not a valid domain: {why}")))
    }

    fn parse_host(host: &str) -> Result<String, String> {
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.len() > 253 {
            return Err("longer than 253 characters".into());
        }
        let labels: Vec<&str> = host.split('.').collect();
        if labels.len() < 2 {
            return Err("needs a top-level domain such as .com".into());
        }
        for label in &labels {
            if label.is_empty() || label.len() > 63 {
                return Err("each label must have 1 to 63 characters".into());
            }
            if !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                return Err("only letters, digits and hyphens are allowed".into());
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err("a label cannot start or end with a hyphen".into());
            }
        }
        let tld = labels[labels.len() - 1];
        if !(tld.starts_with("xn--") || tld.chars().all(|c| c.is_ascii_alphabetic())) || tld.len() < 2 {
            return Err("the top-level domain must be letters".into());
        }
        Ok(host.to_owned())
    }
}

/// A phone number in E.164 form: `+` and 8 to 15 digits, the first not zero.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Phone(String);
string_value!(Phone);

impl Phone {
    /// Accepts common punctuation (`+1 (415) 555-0100`) and a `00` international prefix.
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let compact: String = raw
            .trim()
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\u{a0}'))
            .collect();
        let digits = if let Some(d) = compact.strip_prefix('+') {
            d
        } else if let Some(d) = compact.strip_prefix("00") {
            d
        } else {
            return Err(FieldError::invalid(
                field,
                "phone must be in international form, starting with + and the country code",
            ));
        };
        let ok = (8..=15).contains(&digits.len())
            && digits.chars().all(|c| c.is_ascii_digit())
            && !digits.starts_with('0');
        if !ok {
            return Err(FieldError::invalid(
                field,
                "phone must be E.164: + then 8 to 15 digits, the first not 0",
            ));
        }
        Ok(Self(format!("+{digits}")))
    }
}

const ISO_3166_ALPHA2: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ \
BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM \
DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK \
HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK \
LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI \
NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI \
SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ \
VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW";

/// An ISO 3166-1 alpha-2 country code, upper-cased (`de` → `DE`).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct CountryCode(String);
string_value!(CountryCode);

impl CountryCode {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let value = raw.trim().to_ascii_uppercase();
        if value.len() == 2 && ISO_3166_ALPHA2.split(' ').any(|c| c == value) {
            Ok(Self(value))
        } else {
            Err(FieldError::invalid(
                field,
                format!("'{}' is not an ISO 3166-1 alpha-2 country code", raw.trim()),
            ))
        }
    }

    pub fn all() -> impl Iterator<Item = &'static str> {
        ISO_3166_ALPHA2.split(' ')
    }
}

/// An IANA time zone name (`Europe/Berlin`), as the tz database spells it.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct TimeZone(String);
string_value!(TimeZone);

impl TimeZone {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let trimmed = raw.trim();
        match trimmed.parse::<chrono_tz::Tz>() {
            Ok(tz) => Ok(Self(tz.name().to_owned())),
            Err(_) => Err(FieldError::invalid(
                field,
                format!("'{trimmed}' is not an IANA time zone name (e.g. Europe/Berlin)"),
            )),
        }
    }

    /// The zone itself.
    pub fn tz(&self) -> Option<chrono_tz::Tz> {
        self.0.parse().ok()
    }
}

/// A LinkedIn profile or company URL on `linkedin.com`, normalised to `https`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct LinkedInUrl(String);
string_value!(LinkedInUrl);

impl LinkedInUrl {
    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let trimmed = raw.trim();
        let with_scheme = if trimmed.contains("://") {
            trimmed.to_owned()
        } else {
            format!("https://{trimmed}")
        };
        let invalid = || FieldError::invalid(field, "not a LinkedIn URL (https://www.linkedin.com/in/…)");
        let mut url = url::Url::parse(&with_scheme).map_err(|_| invalid())?;
        let host = url.host_str().ok_or_else(invalid)?.to_ascii_lowercase();
        let on_linkedin = host == "linkedin.com" || host.ends_with(".linkedin.com");
        if !matches!(url.scheme(), "http" | "https") || !on_linkedin || url.path().len() < 2 {
            return Err(invalid());
        }
        url.set_scheme("https").map_err(|_| invalid())?;
        url.set_fragment(None);
        Ok(Self(url.to_string()))
    }
}

/// A lead score from 0 to 100.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Score(u8);

impl Score {
    pub fn parse(field: &str, raw: i64) -> Result<Self, FieldError> {
        u8::try_from(raw)
            .ok()
            .filter(|v| *v <= 100)
            .map(Self)
            .ok_or_else(|| FieldError::invalid(field, format!("score must be between 0 and 100, got {raw}")))
    }
    pub fn from_trusted(v: i64) -> Self {
        Self(v.clamp(0, 100) as u8)
    }
    pub fn value(self) -> u8 {
        self.0
    }
}

/// A tag: 1 to 64 printable characters, trimmed.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Tag(String);
string_value!(Tag);

impl Tag {
    pub const MAX_LEN: usize = 64;

    pub fn parse(field: &str, raw: &str) -> Result<Self, FieldError> {
        let value = raw.trim();
        if value.is_empty() {
            return Err(FieldError::new(
                field,
                FieldErrorCode::Required,
                "a tag must not be blank",
            ));
        }
        if value.chars().count() > Self::MAX_LEN {
            return Err(FieldError::new(
                field,
                FieldErrorCode::TooLong,
                "a tag has at most 64 characters",
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(FieldError::invalid(
                field,
                "a tag cannot contain control characters",
            ));
        }
        Ok(Self(value.to_owned()))
    }
}

/// A lead's tags: distinct, in the order given, at most 50.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Tags(Vec<Tag>);

impl Tags {
    pub const MAX: usize = 50;

    pub fn parse<S: AsRef<str>>(field: &str, raw: &[S]) -> Result<Self, FieldError> {
        if raw.len() > Self::MAX {
            return Err(FieldError::new(
                field,
                FieldErrorCode::TooLong,
                "a lead has at most 50 tags",
            ));
        }
        let mut tags: Vec<Tag> = Vec::with_capacity(raw.len());
        for (i, r) in raw.iter().enumerate() {
            let tag = Tag::parse(field, r.as_ref()).map_err(|e| FieldError {
                message: format!("tag {i}: {}", e.message),
                ..e
            })?;
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        Ok(Self(tags))
    }

    pub fn from_trusted(tags: Vec<String>) -> Self {
        Self(tags.into_iter().map(Tag).collect())
    }

    pub fn iter(&self) -> impl Iterator<Item = &Tag> {
        self.0.iter()
    }

    pub fn as_strs(&self) -> Vec<&str> {
        self.0.iter().map(Tag::as_str).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// Free-form custom fields: a JSON object of at most 100 keys and 16 KiB.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct CustomFields(serde_json::Map<String, serde_json::Value>);

impl CustomFields {
    pub const MAX_KEYS: usize = 100;
    pub const MAX_BYTES: usize = 16 * 1024;

    pub fn parse(field: &str, raw: serde_json::Value) -> Result<Self, FieldError> {
        let serde_json::Value::Object(map) = raw else {
            return Err(FieldError::invalid(field, "custom fields must be a JSON object"));
        };
        if map.len() > Self::MAX_KEYS {
            return Err(FieldError::new(
                field,
                FieldErrorCode::TooLong,
                "at most 100 custom fields",
            ));
        }
        if let Some(k) = map.keys().find(|k| k.trim().is_empty() || k.len() > 64) {
            return Err(FieldError::invalid(
                field,
                format!("custom field name '{k}' must have 1 to 64 characters"),
            ));
        }
        let size = serde_json::to_vec(&map).map(|v| v.len()).unwrap_or(usize::MAX);
        if size > Self::MAX_BYTES {
            return Err(FieldError::new(
                field,
                FieldErrorCode::TooLong,
                "custom fields exceed 16 KiB",
            ));
        }
        Ok(Self(map))
    }

    pub fn from_trusted(map: serde_json::Map<String, serde_json::Value>) -> Self {
        Self(map)
    }

    pub fn as_map(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.0
    }

    pub fn to_json_string(&self) -> String {
        serde_json::Value::Object(self.0.clone()).to_string()
    }
}

/// Trims free text (names, titles) and bounds its length; blank means absent.
pub(crate) fn text(field: &str, raw: &str, max: usize) -> Result<Option<String>, FieldError> {
    let value = raw.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.chars().count() > max {
        return Err(FieldError::new(
            field,
            FieldErrorCode::TooLong,
            format!("{field} has at most {max} characters"),
        ));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(FieldError::invalid(
            field,
            format!("{field} cannot contain control characters"),
        ));
    }
    Ok(Some(value.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_is_trimmed_and_lowercased() {
        let e = EmailAddress::parse("email", "  Ann.Lee@Acme.COM ").unwrap();
        assert_eq!(e.as_str(), "ann.lee@acme.com");
        assert_eq!(e.domain(), "acme.com");
    }

    #[test]
    fn email_without_at_is_rejected() {
        assert!(EmailAddress::parse("email", "ann.acme.com").is_err());
    }

    #[test]
    fn email_with_bare_domain_is_rejected() {
        assert!(EmailAddress::parse("email", "ann@localhost").is_err());
    }

    #[test]
    fn email_with_double_dot_is_rejected() {
        assert!(EmailAddress::parse("email", "ann..lee@acme.com").is_err());
    }

    #[test]
    fn email_with_space_is_rejected() {
        assert!(EmailAddress::parse("email", "ann lee@acme.com").is_err());
    }

    #[test]
    fn blank_email_is_required_error() {
        let e = EmailAddress::parse("email", "  ").unwrap_err();
        assert_eq!(e.code, FieldErrorCode::Required);
    }

    #[test]
    fn overlong_email_is_rejected() {
        let raw = format!("{}@acme.com", "a".repeat(250));
        assert_eq!(
            EmailAddress::parse("email", &raw).unwrap_err().code,
            FieldErrorCode::TooLong
        );
    }

    #[test]
    fn domain_is_extracted_from_website_url() {
        let d = Domain::parse("companyDomain", "https://www.Acme.com/about?x=1").unwrap();
        assert_eq!(d.as_str(), "acme.com");
    }

    #[test]
    fn domain_without_tld_is_rejected() {
        assert!(Domain::parse("companyDomain", "acme").is_err());
    }

    #[test]
    fn domain_with_underscore_is_rejected() {
        assert!(Domain::parse("companyDomain", "ac_me.com").is_err());
    }

    #[test]
    fn domain_with_leading_hyphen_label_is_rejected() {
        assert!(Domain::parse("companyDomain", "-acme.com").is_err());
    }

    #[test]
    fn phone_punctuation_is_removed() {
        assert_eq!(
            Phone::parse("phone", "+1 (415) 555-0100").unwrap().as_str(),
            "+14155550100"
        );
    }

    #[test]
    fn phone_00_prefix_becomes_plus() {
        assert_eq!(
            Phone::parse("phone", "0049 30 1234567").unwrap().as_str(),
            "+49301234567"
        );
    }

    #[test]
    fn phone_without_country_code_is_rejected() {
        assert!(Phone::parse("phone", "415 555 0100").is_err());
    }

    #[test]
    fn phone_with_letters_is_rejected() {
        assert!(Phone::parse("phone", "+1 415 CALL NOW").is_err());
    }

    #[test]
    fn phone_too_long_is_rejected() {
        assert!(Phone::parse("phone", "+1234567890123456").is_err());
    }

    #[test]
    fn country_is_uppercased() {
        assert_eq!(CountryCode::parse("country", "de").unwrap().as_str(), "DE");
    }

    #[test]
    fn unknown_country_is_rejected() {
        assert!(CountryCode::parse("country", "XX").is_err());
        assert!(CountryCode::parse("country", "Germany").is_err());
    }

    #[test]
    fn country_list_is_complete() {
        assert_eq!(CountryCode::all().count(), 249);
    }

    #[test]
    fn linkedin_url_is_normalised_to_https() {
        let u = LinkedInUrl::parse("linkedinUrl", "http://www.linkedin.com/in/ann-lee").unwrap();
        assert_eq!(u.as_str(), "https://www.linkedin.com/in/ann-lee");
    }

    #[test]
    fn linkedin_url_without_scheme_is_accepted() {
        assert!(LinkedInUrl::parse("linkedinUrl", "linkedin.com/in/ann").is_ok());
    }

    #[test]
    fn non_linkedin_url_is_rejected() {
        assert!(LinkedInUrl::parse("linkedinUrl", "https://evil.com/linkedin.com/in/ann").is_err());
        assert!(LinkedInUrl::parse("linkedinUrl", "https://notlinkedin.com/in/ann").is_err());
        assert!(LinkedInUrl::parse("linkedinUrl", "ftp://www.linkedin.com/in/ann").is_err());
    }

    #[test]
    fn score_out_of_range_is_rejected() {
        assert!(Score::parse("score", 101).is_err());
        assert!(Score::parse("score", -1).is_err());
        assert_eq!(Score::parse("score", 100).unwrap().value(), 100);
    }

    #[test]
    fn tags_are_deduplicated_in_order() {
        let t = Tags::parse("tags", &["b", " a ", "b"]).unwrap();
        assert_eq!(t.as_strs(), vec!["b", "a"]);
    }

    #[test]
    fn blank_tag_is_rejected() {
        assert!(Tags::parse("tags", &["ok", " "]).is_err());
    }

    #[test]
    fn too_many_tags_are_rejected() {
        let many: Vec<String> = (0..51).map(|i| format!("t{i}")).collect();
        assert_eq!(
            Tags::parse("tags", &many).unwrap_err().code,
            FieldErrorCode::TooLong
        );
    }

    #[test]
    fn custom_fields_must_be_an_object() {
        assert!(CustomFields::parse("customFields", serde_json::json!([1, 2])).is_err());
        assert!(CustomFields::parse("customFields", serde_json::json!({"plan": "pro"})).is_ok());
    }

    #[test]
    fn oversized_custom_fields_are_rejected() {
        let big = serde_json::json!({ "blob": "x".repeat(20_000) });
        assert_eq!(
            CustomFields::parse("customFields", big).unwrap_err().code,
            FieldErrorCode::TooLong
        );
    }

    #[test]
    fn text_blank_means_absent_and_is_bounded() {
        assert_eq!(text("title", "  ", 10).unwrap(), None);
        assert!(text("title", "x".repeat(11).as_str(), 10).is_err());
    }
}
