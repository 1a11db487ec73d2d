//! Turns the spellings found in real files into the forms the lead API validates: national
//! phone numbers into E.164 with the row's country or a default region, country names into ISO 3166-1 alpha-2 codes.

use crate::domain::CountryCode;
use std::collections::HashMap;
use std::sync::OnceLock;

/// Country calling codes by ISO code. Countries that share a plan (`+1`, `+7`, `+44`, …) each
/// list it.
const CALLING_CODES: &str = "AD376 AE971 AF93 AG1 AI1 AL355 AM374 AO244 AR54 AS1 AT43 AU61 AW297 AX358 \
AZ994 BA387 BB1 BD880 BE32 BF226 BG359 BH973 BI257 BJ229 BL590 BM1 BN673 BO591 BQ599 BR55 BS1 BT975 \
BW267 BY375 BZ501 CA1 CC61 CD243 CF236 CG242 CH41 CI225 CK682 CL56 CM237 CN86 CO57 CR506 CU53 CV238 \
CW599 CX61 CY357 CZ420 DE49 DJ253 DK45 DM1 DO1 DZ213 EC593 EE372 EG20 EH212 ER291 ES34 ET251 FI358 \
FJ679 FK500 FM691 FO298 FR33 GA241 GB44 GD1 GE995 GF594 GG44 GH233 GI350 GL299 GM220 GN224 GP590 \
GQ240 GR30 GT502 GU1 GW245 GY592 HK852 HN504 HR385 HT509 HU36 ID62 IE353 IL972 IM44 IN91 IO246 IQ964 \
IR98 IS354 IT39 JE44 JM1 JO962 JP81 KE254 KG996 KH855 KI686 KM269 KN1 KP850 KR82 KW965 KY1 KZ7 LA856 \
LB961 LC1 LI423 LK94 LR231 LS266 LT370 LU352 LV371 LY218 MA212 MC377 MD373 ME382 MF590 MG261 MH692 \
MK389 ML223 MM95 MN976 MO853 MP1 MQ596 MR222 MS1 MT356 MU230 MV960 MW265 MX52 MY60 MZ258 NA264 NC687 \
NE227 NF672 NG234 NI505 NL31 NO47 NP977 NR674 NU683 NZ64 OM968 PA507 PE51 PF689 PG675 PH63 PK92 PL48 \
PM508 PR1 PS970 PT351 PW680 PY595 QA974 RE262 RO40 RS381 RU7 RW250 SA966 SB677 SC248 SD249 SE46 SG65 \
SH290 SI386 SJ47 SK421 SL232 SM378 SN221 SO252 SR597 SS211 ST239 SV503 SX1 SY963 SZ268 TC1 TD235 TG228 \
TH66 TJ992 TK690 TL670 TM993 TN216 TO676 TR90 TT1 TV688 TW886 TZ255 UA380 UG256 US1 UY598 UZ998 VA39 \
VC1 VE58 VG1 VI1 VN84 VU678 WF681 WS685 YE967 YT262 ZA27 ZM260 ZW263";

/// Regions whose national numbers keep their leading 0 after the country code.
const KEEPS_LEADING_ZERO: &[&str] = &["IT", "SM", "VA"];

fn calling_code(region: &str) -> Option<&'static str> {
    CALLING_CODES
        .split(' ')
        .find(|entry| entry.starts_with(region) && entry.len() > 2)
        .map(|entry| &entry[2..])
}

/// A phone number as written in a file, made international: numbers starting with `+` or `00`
/// are kept; a national number gets the default region's calling code, after dropping its
/// trunk prefix (`0`, or `1` in the North American plan). `None` when the number is national
/// and there is no default region; the lead API validates the result.
pub fn phone(raw: &str, default_region: Option<&CountryCode>) -> Option<String> {
    let compact: String = raw
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '/' | '\u{a0}'))
        .collect();
    if compact.starts_with('+') || compact.starts_with("00") {
        return Some(compact);
    }
    let region = default_region?.as_str();
    let code = calling_code(region)?;
    let national = if code == "1" {
        match compact.strip_prefix('1') {
            Some(rest) if compact.len() == 11 => rest,
            _ => &compact,
        }
    } else if KEEPS_LEADING_ZERO.contains(&region) {
        &compact
    } else {
        compact.strip_prefix('0').unwrap_or(&compact)
    };
    Some(format!("+{code}{national}"))
}

/// English names, common alternatives and a few native names, by ISO code. Alpha-3 codes are
/// in `ALPHA3`.
const NAMES: &str = "AD:Andorra|AE:United Arab Emirates;UAE;Emirates|AF:Afghanistan|AG:Antigua and Barbuda|\
AI:Anguilla|AL:Albania|AM:Armenia|AO:Angola|AQ:Antarctica|AR:Argentina|AS:American Samoa|AT:Austria;Österreich|\
AU:Australia|AW:Aruba|AX:Åland Islands;Aland Islands|AZ:Azerbaijan|BA:Bosnia and Herzegovina;Bosnia|\
BB:Barbados|BD:Bangladesh|BE:Belgium;Belgique;België|BF:Burkina Faso|BG:Bulgaria|BH:Bahrain|BI:Burundi|\
BJ:Benin|BL:Saint Barthélemy;Saint Barthelemy|BM:Bermuda|BN:Brunei;Brunei Darussalam|BO:Bolivia|\
BQ:Caribbean Netherlands;Bonaire|BR:Brazil;Brasil|BS:Bahamas;The Bahamas|BT:Bhutan|BV:Bouvet Island|\
BW:Botswana|BY:Belarus|BZ:Belize|CA:Canada|CC:Cocos Islands;Cocos (Keeling) Islands|\
CD:Democratic Republic of the Congo;DR Congo;Congo-Kinshasa;DRC|CF:Central African Republic|\
CG:Republic of the Congo;Congo;Congo-Brazzaville|CH:Switzerland;Schweiz;Suisse;Svizzera|\
CI:Côte d'Ivoire;Cote d'Ivoire;Ivory Coast|CK:Cook Islands|CL:Chile|CM:Cameroon|CN:China;People's Republic of China;PRC|\
CO:Colombia|CR:Costa Rica|CU:Cuba|CV:Cape Verde;Cabo Verde|CW:Curaçao;Curacao|CX:Christmas Island|CY:Cyprus|\
CZ:Czech Republic;Czechia|DE:Germany;Deutschland|DJ:Djibouti|DK:Denmark;Danmark|DM:Dominica|\
DO:Dominican Republic|DZ:Algeria|EC:Ecuador|EE:Estonia|EG:Egypt|EH:Western Sahara|ER:Eritrea|ES:Spain;España;Espana|\
ET:Ethiopia|FI:Finland;Suomi|FJ:Fiji|FK:Falkland Islands|FM:Micronesia|FO:Faroe Islands|FR:France|GA:Gabon|\
GB:United Kingdom;UK;U.K.;Great Britain;Britain;England;Scotland;Wales;Northern Ireland|GD:Grenada|GE:Georgia|\
GF:French Guiana|GG:Guernsey|GH:Ghana|GI:Gibraltar|GL:Greenland|GM:Gambia;The Gambia|GN:Guinea|GP:Guadeloupe|\
GQ:Equatorial Guinea|GR:Greece|GS:South Georgia and the South Sandwich Islands|GT:Guatemala|GU:Guam|\
GW:Guinea-Bissau|GY:Guyana|HK:Hong Kong|HM:Heard Island and McDonald Islands|HN:Honduras|HR:Croatia;Hrvatska|\
HT:Haiti|HU:Hungary;Magyarország|ID:Indonesia|IE:Ireland;Republic of Ireland;Éire|IL:Israel|IM:Isle of Man|\
IN:India|IO:British Indian Ocean Territory|IQ:Iraq|IR:Iran|IS:Iceland|IT:Italy;Italia|JE:Jersey|JM:Jamaica|\
JO:Jordan|JP:Japan|KE:Kenya|KG:Kyrgyzstan|KH:Cambodia|KI:Kiribati|KM:Comoros|KN:Saint Kitts and Nevis|\
KP:North Korea;DPRK|KR:South Korea;Korea;Republic of Korea|KW:Kuwait|KY:Cayman Islands|KZ:Kazakhstan|LA:Laos|\
LB:Lebanon|LC:Saint Lucia|LI:Liechtenstein|LK:Sri Lanka|LR:Liberia|LS:Lesotho|LT:Lithuania|LU:Luxembourg|\
LV:Latvia|LY:Libya|MA:Morocco|MC:Monaco|MD:Moldova|ME:Montenegro|MF:Saint Martin|MG:Madagascar|\
MH:Marshall Islands|MK:North Macedonia;Macedonia|ML:Mali|MM:Myanmar;Burma|MN:Mongolia|MO:Macau;Macao|\
MP:Northern Mariana Islands|MQ:Martinique|MR:Mauritania|MS:Montserrat|MT:Malta|MU:Mauritius|MV:Maldives|\
MW:Malawi|MX:Mexico;México|MY:Malaysia|MZ:Mozambique|NA:Namibia|NC:New Caledonia|NE:Niger|NF:Norfolk Island|\
NG:Nigeria|NI:Nicaragua|NL:Netherlands;The Netherlands;Holland;Nederland|NO:Norway;Norge|NP:Nepal|NR:Nauru|\
NU:Niue|NZ:New Zealand|OM:Oman|PA:Panama|PE:Peru|PF:French Polynesia|PG:Papua New Guinea|PH:Philippines|\
PK:Pakistan|PL:Poland;Polska|PM:Saint Pierre and Miquelon|PN:Pitcairn Islands|PR:Puerto Rico|PS:Palestine|\
PT:Portugal|PW:Palau|PY:Paraguay|QA:Qatar|RE:Réunion;Reunion|RO:Romania|RS:Serbia|RU:Russia;Russian Federation|\
RW:Rwanda|SA:Saudi Arabia|SB:Solomon Islands|SC:Seychelles|SD:Sudan|SE:Sweden;Sverige|SG:Singapore|\
SH:Saint Helena|SI:Slovenia|SJ:Svalbard and Jan Mayen|SK:Slovakia|SL:Sierra Leone|SM:San Marino|SN:Senegal|\
SO:Somalia|SR:Suriname|SS:South Sudan|ST:São Tomé and Príncipe;Sao Tome and Principe|SV:El Salvador|\
SX:Sint Maarten|SY:Syria|SZ:Eswatini;Swaziland|TC:Turks and Caicos Islands|TD:Chad|\
TF:French Southern Territories|TG:Togo|TH:Thailand|TJ:Tajikistan|TK:Tokelau|TL:Timor-Leste;East Timor|\
TM:Turkmenistan|TN:Tunisia|TO:Tonga|TR:Turkey;Türkiye;Turkiye|TT:Trinidad and Tobago|TV:Tuvalu|TW:Taiwan|\
TZ:Tanzania|UA:Ukraine|UG:Uganda|UM:United States Minor Outlying Islands|\
US:United States;United States of America;USA;U.S.A.;U.S.;America|UY:Uruguay|UZ:Uzbekistan|\
VA:Vatican City;Holy See|VC:Saint Vincent and the Grenadines|VE:Venezuela|VG:British Virgin Islands|\
VI:U.S. Virgin Islands;US Virgin Islands|VN:Vietnam;Viet Nam|VU:Vanuatu|WF:Wallis and Futuna|WS:Samoa|\
YE:Yemen|YT:Mayotte|ZA:South Africa|ZM:Zambia|ZW:Zimbabwe";

/// ISO 3166-1 alpha-3 codes of the countries leads most often come from, by alpha-2 code.
const ALPHA3: &str = "ARG:AR AUS:AU AUT:AT BEL:BE BRA:BR CAN:CA CHE:CH CHL:CL CHN:CN COL:CO CZE:CZ DEU:DE \
DNK:DK EGY:EG ESP:ES FIN:FI FRA:FR GBR:GB GRC:GR HKG:HK HUN:HU IDN:ID IND:IN IRL:IE ISR:IL ITA:IT JPN:JP \
KOR:KR MEX:MX MYS:MY NGA:NG NLD:NL NOR:NO NZL:NZ PAK:PK PER:PE PHL:PH POL:PL PRT:PT ROU:RO RUS:RU SAU:SA \
SGP:SG SWE:SE THA:TH TUR:TR TWN:TW UKR:UA USA:US VNM:VN ZAF:ZA ARE:AE";

/// Lower-cased letters only, so `U.S.A.` and `usa` compare equal; a few accented letters are
/// folded to ASCII so `España` and `Espana` do too.
fn name_key(raw: &str) -> String {
    raw.chars()
        .flat_map(char::to_lowercase)
        .filter_map(|c| match c {
            'á' | 'à' | 'â' | 'ä' | 'ã' | 'å' => Some('a'),
            'é' | 'è' | 'ê' | 'ë' => Some('e'),
            'í' | 'ì' | 'î' | 'ï' => Some('i'),
            'ó' | 'ò' | 'ô' | 'ö' | 'õ' => Some('o'),
            'ú' | 'ù' | 'û' | 'ü' => Some('u'),
            'ç' => Some('c'),
            'ñ' => Some('n'),
            c if c.is_ascii_alphanumeric() => Some(c),
            _ => None,
        })
        .collect()
}

fn country_names() -> &'static HashMap<String, &'static str> {
    static NAMES_BY_KEY: OnceLock<HashMap<String, &'static str>> = OnceLock::new();
    NAMES_BY_KEY.get_or_init(|| {
        let mut map = HashMap::new();
        for entry in NAMES.split('|') {
            let (code, names) = entry.split_once(':').expect("NAMES entries are CODE:names");
            for name in names.split(';') {
                map.insert(name_key(name), code);
            }
        }
        for entry in ALPHA3.split(' ') {
            let (alpha3, code) = entry.split_once(':').expect("ALPHA3 entries are XXX:YY");
            map.entry(name_key(alpha3)).or_insert(code);
        }
        map
    })
}

/// A country as written in a file, as an alpha-2 code where it is a known name or code;
/// otherwise the input, for the lead API to reject with its own message.
pub fn country(raw: &str) -> String {
    let trimmed = raw.trim();
    if trimmed.len() == 2 && CountryCode::parse("country", trimmed).is_ok() {
        return trimmed.to_ascii_uppercase();
    }
    match country_names().get(&name_key(trimmed)) {
        Some(code) => (*code).to_owned(),
        None => trimmed.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(code: &str) -> CountryCode {
        CountryCode::parse("country", code).unwrap()
    }

    #[test]
    fn international_numbers_are_kept() {
        assert_eq!(phone("+44 20 7946 0958", None).as_deref(), Some("+442079460958"));
        assert_eq!(
            phone("0049 30 1234567", Some(&region("US"))).as_deref(),
            Some("0049301234567")
        );
    }

    #[test]
    fn national_numbers_take_the_default_region() {
        assert_eq!(
            phone("030 1234567", Some(&region("DE"))).as_deref(),
            Some("+49301234567")
        );
        assert_eq!(
            phone("(415) 555-0100", Some(&region("US"))).as_deref(),
            Some("+14155550100")
        );
        assert_eq!(
            phone("1-415-555-0100", Some(&region("CA"))).as_deref(),
            Some("+14155550100")
        );
        assert_eq!(
            phone("06 1234 5678", Some(&region("IT"))).as_deref(),
            Some("+390612345678")
        );
        assert_eq!(
            phone("020 7946 0958", Some(&region("GB"))).as_deref(),
            Some("+442079460958")
        );
    }

    #[test]
    fn national_numbers_without_a_region_are_left_to_validation() {
        assert_eq!(phone("030 1234567", None), None);
    }

    #[test]
    fn every_region_with_a_calling_code_is_a_country_code() {
        for entry in CALLING_CODES.split(' ') {
            let (code, digits) = entry.split_at(2);
            assert!(CountryCode::parse("country", code).is_ok(), "{entry}");
            assert!(
                !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()),
                "{entry}"
            );
        }
    }

    #[test]
    fn country_names_become_codes() {
        for (raw, code) in [
            ("Germany", "DE"),
            ("deutschland", "DE"),
            ("United States", "US"),
            ("U.S.A.", "US"),
            ("United Kingdom", "GB"),
            ("UK", "GB"),
            ("España", "ES"),
            ("Cote d'Ivoire", "CI"),
            ("DEU", "DE"),
            ("fr", "FR"),
            ("  netherlands ", "NL"),
        ] {
            assert_eq!(country(raw), code, "{raw}");
        }
        assert_eq!(country("Atlantis"), "Atlantis");
    }

    #[test]
    fn every_named_country_is_a_country_code() {
        for entry in NAMES.split('|') {
            let code = entry.split(':').next().unwrap();
            assert!(CountryCode::parse("country", code).is_ok(), "{entry}");
        }
    }
}
