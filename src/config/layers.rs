//! Where settings come from and how they are merged: the defaults, the TOML file, the
//! `LEADGATE_*` environment and the command line's flags, each a figment provider, merged in
//! that order by `Settings::load`. figment remembers which layer gave each value, so an error
//! names the variable, the flag, or the file and key at fault.
//!
//! Written here rather than taken from figment: the environment layer, because figment's `Env`
//! guesses a value's type from its look ("2024" becomes a number even for a string setting, and
//! the type error would then repeat the value, secrets included), while this one parses a
//! variable as the type of the setting's default; the file layer, because figment's `Toml`
//! reports a syntax error with the offending line, which may hold a secret, while this one gives
//! the line number and toml's message only; and `fields`, which reads the field list serde
//! derives for `Settings` (serde offers no other reflection).

use super::{ConfigError, DEFAULT_FILE, Settings};
use figment::error::{Actual, Kind};
use figment::value::{Dict, Map, Num, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::Serialize;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

/// What every setting's environment variable starts with.
pub const ENV_PREFIX: &str = "LEADGATE_";

/// Other variables read for a setting, below its own `LEADGATE_*` one.
const ENV_ALIASES: &[(&str, &str)] = &[("log", "RUST_LOG")];

/// The names of the layers, as figment's metadata carries them.
const DEFAULTS: &str = "defaults";
const FILE: &str = "config file";
const ENV: &str = "environment";
const FLAGS: &str = "command line";

/// The environment variable of a setting: `LEADGATE_` and its name in upper case.
pub fn env_var(field: &str) -> String {
    format!("{ENV_PREFIX}{}", field.to_ascii_uppercase())
}

/// Settings whose flag is not their name with hyphens: a table given one entry per flag.
const FLAG_NAMES: &[(&str, &str)] = &[
    ("provider_urls", "--provider-url"),
    ("rate_limit_roles", "--rate-limit-role"),
];

/// The command-line flag of a setting: its name with hyphens (`provider_urls`, a table, is
/// `--provider-url`, given once per entry).
pub fn flag(field: &str) -> String {
    match FLAG_NAMES.iter().find(|(f, _)| *f == field) {
        Some((_, flag)) => (*flag).to_owned(),
        None => format!("--{}", field.replace('_', "-")),
    }
}

/// The name of every setting, in declaration order.
pub fn fields() -> &'static [&'static str] {
    static FIELDS: LazyLock<&'static [&'static str]> = LazyLock::new(serde_fields::<Settings>);
    &FIELDS
}

/// Settings given on the command line, by setting name; flags that were not given are absent.
#[derive(Clone, Default)]
pub struct Flags(Dict);

impl std::fmt::Debug for Flags {
    // names only: the values may be secrets
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Flags {
    /// Adds a group of flags: a struct whose fields are named like the `Settings` fields they
    /// set, each `None` unless given. Later groups win.
    pub fn add(&mut self, group: &impl Serialize) -> Result<&mut Self, ConfigError> {
        let bad = |message: String| ConfigError::Value {
            whence: FLAGS.into(),
            message,
        };
        match Value::serialize(group).map_err(|e| bad(e.to_string()))? {
            Value::Dict(_, dict) => {
                let given = dict.into_iter().filter(|(_, v)| !matches!(v, Value::Empty(..)));
                self.0.extend(given);
                Ok(self)
            }
            _ => Err(bad("a group of flags must be a struct".into())),
        }
    }
}

/// One layer: its values and where they came from.
struct Layer {
    metadata: Metadata,
    dict: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// Merges the layers, extracts the settings and checks them.
pub(super) fn load(
    config_file: Option<&Path>,
    flags: &Flags,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<Settings, ConfigError> {
    let defaults = match Value::serialize(Settings::default()) {
        Ok(Value::Dict(_, dict)) => dict,
        _ => Dict::new(),
    };
    let mut figment = Figment::from(Layer {
        metadata: Metadata::named(DEFAULTS),
        dict: defaults.clone(),
    });
    if let Some((path, dict)) = read_file(config_file)? {
        figment = figment.merge(Layer {
            metadata: Metadata::named(FILE).source(figment::Source::File(path)),
            dict,
        });
    }
    let (dict, vars) = read_env(&defaults, env)?;
    let vars = Arc::new(vars);
    figment = figment.merge(Layer {
        metadata: Metadata::named(ENV).interpolater(move |_, keys| {
            let key = keys.first().copied().unwrap_or_default();
            vars.get(key).cloned().unwrap_or_else(|| env_var(key))
        }),
        dict,
    });
    figment = figment.merge(Layer {
        metadata: Metadata::named(FLAGS)
            .interpolater(|_, keys| flag(keys.first().copied().unwrap_or_default())),
        dict: flags.0.clone(),
    });
    let settings: Settings = figment.extract().map_err(|e| describe(&figment, &e))?;
    settings.validate().map_err(|e| match e {
        ConfigError::Invalid { setting, message, .. } => ConfigError::Invalid {
            setting,
            message,
            from: origin(&figment, setting),
        },
        other => other,
    })?;
    Ok(settings)
}

/// The config file's values: the explicit file (which must exist) or `leadgate.toml` in the
/// working directory when present.
fn read_file(explicit: Option<&Path>) -> Result<Option<(PathBuf, Dict)>, ConfigError> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => match PathBuf::from(DEFAULT_FILE) {
            p if p.exists() => p,
            _ => return Ok(None),
        },
    };
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.clone(),
        message: match e.span() {
            Some(span) => {
                let line = text[..span.start.min(text.len())].lines().count().max(1);
                format!("line {line}: {}", e.message())
            }
            None => e.message().to_owned(),
        },
    })?;
    match Value::serialize(&table) {
        Ok(Value::Dict(_, dict)) => Ok(Some((path, dict))),
        _ => Err(ConfigError::Parse {
            path,
            message: "not a table of settings".into(),
        }),
    }
}

/// The environment's values: `LEADGATE_<NAME>` for every setting (or an alias below it), each
/// parsed as the type of the setting's default. Empty variables count as unset; variables that
/// name no setting are ignored. Also returns which variable gave each setting.
fn read_env(
    defaults: &Dict,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<(Dict, BTreeMap<String, String>), ConfigError> {
    let mut dict = Dict::new();
    let mut vars = BTreeMap::new();
    for field in fields() {
        let own = env_var(field);
        let aliases = ENV_ALIASES
            .iter()
            .filter(|(f, _)| f == field)
            .map(|(_, var)| (*var).to_owned());
        let Some((var, raw)) = std::iter::once(own)
            .chain(aliases)
            .find_map(|var| env(&var).filter(|v| !v.is_empty()).map(|raw| (var, raw)))
        else {
            continue;
        };
        let bad = |message: String| ConfigError::Value {
            whence: var.clone(),
            message,
        };
        let raw = raw.into_string().map_err(|_| bad("not valid UTF-8".into()))?;
        let value = typed(&raw, defaults.get(*field)).map_err(bad)?;
        dict.insert((*field).to_owned(), value);
        vars.insert((*field).to_owned(), var);
    }
    Ok((dict, vars))
}

/// A variable's text as a value of the default's type: numbers and booleans parsed, lists and
/// tables as JSON or TOML (a list may also be comma-separated, a table `name=value` pairs
/// separated by commas), anything else the text as it is.
fn typed(raw: &str, default: Option<&Value>) -> Result<Value, String> {
    let text = raw.trim();
    match default {
        Some(Value::Num(_, n)) => match n {
            Num::F32(_) | Num::F64(_) => text.parse::<f64>().map(Value::from).map_err(|e| e.to_string()),
            Num::I8(_) | Num::I16(_) | Num::I32(_) | Num::I64(_) | Num::I128(_) | Num::ISize(_) => {
                text.parse::<i64>().map(Value::from).map_err(|e| e.to_string())
            }
            _ => text.parse::<u64>().map(Value::from).map_err(|e| e.to_string()),
        },
        Some(Value::Bool(..)) => match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Value::from(true)),
            "false" | "0" | "no" | "off" => Ok(Value::from(false)),
            _ => Err("expected true or false".into()),
        },
        Some(Value::Array(..)) if !text.starts_with('[') => Ok(Value::from(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(Value::from)
                .collect::<Vec<_>>(),
        )),
        Some(Value::Dict(..)) if !text.starts_with('{') => pairs(text),
        Some(Value::Array(..) | Value::Dict(..)) => structured(text),
        _ => Ok(Value::from(raw)),
    }
}

/// A table given as `name=value` pairs separated by commas (`hunter=http://…,pdl=http://…`);
/// each value runs to the next comma.
fn pairs(text: &str) -> Result<Value, String> {
    let mut table = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => {
                table.insert(name.trim().to_owned(), value.trim().to_owned());
            }
            // the pair is not repeated: it may hold a secret
            _ => {
                return Err(
                    "expected name=value pairs separated by commas, JSON or a TOML inline table".into(),
                );
            }
        }
    }
    Value::serialize(table).map_err(|e| e.to_string())
}

/// JSON, or else a TOML value (`[{kid = "a", …}]`).
fn structured(text: &str) -> Result<Value, String> {
    let json = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => return Value::serialize(v).map_err(|e| e.to_string()),
        Err(e) => e,
    };
    match toml::from_str::<toml::Table>(&format!("value = {text}")) {
        Ok(mut table) => Value::serialize(table.remove("value")).map_err(|e| e.to_string()),
        Err(_) => Err(format!("neither JSON nor TOML: {json}")),
    }
}

/// Where a setting's value came from, when not from the defaults: the variable, the flag or
/// the file.
fn origin(figment: &Figment, key: &str) -> Option<String> {
    let metadata = figment.find_metadata(key)?;
    match metadata.name.as_ref() {
        ENV | FLAGS => Some(metadata.interpolate(&Profile::Default, &[key])),
        FILE => Some(match metadata.source.as_ref().and_then(|s| s.file_path()) {
            Some(path) => format!("config file {}", path.display()),
            None => FILE.into(),
        }),
        _ => None,
    }
}

/// An extraction error as the variable, flag or file key at fault and what is wrong, without
/// the value (it may be a secret).
fn describe(figment: &Figment, e: &figment::Error) -> ConfigError {
    let mut path = e.path.clone();
    if let Kind::UnknownField(name, _) = &e.kind
        && path.last() != Some(name)
    {
        path.push(name.clone());
    }
    let key = path.join(".");
    let top = path.first().map(String::as_str).unwrap_or_default();
    let whence = match figment.find_metadata(top) {
        Some(m) if m.name == ENV || m.name == FLAGS => m.interpolate(&Profile::Default, &[top]),
        Some(m) if m.name == FILE => match m.source.as_ref().and_then(|s| s.file_path()) {
            Some(file) => format!("config file {}: setting `{key}`", file.display()),
            None => format!("config file: setting `{key}`"),
        },
        _ => format!("setting `{key}`"),
    };
    ConfigError::Value {
        whence,
        message: reason(&e.kind),
    }
}

/// What is wrong, naming types but never values.
fn reason(kind: &Kind) -> String {
    match kind {
        Kind::Message(m) => m.clone(),
        Kind::InvalidType(actual, expected) => format!("expected {expected}, found {}", what(actual)),
        Kind::InvalidValue(actual, expected) => format!("invalid {}: expected {expected}", what(actual)),
        Kind::InvalidLength(n, expected) => format!("{n} items: expected {expected}"),
        Kind::UnknownVariant(given, expected) => {
            format!(
                "unknown value `{given}`; expected one of: {}",
                expected.join(", ")
            )
        }
        Kind::UnknownField(_, _) => "no such setting (leadgate.example.toml lists them all)".into(),
        Kind::MissingField(name) => format!("missing `{name}`"),
        Kind::DuplicateField(name) => format!("`{name}` is given twice"),
        Kind::ISizeOutOfRange(_) | Kind::USizeOutOfRange(_) => "number out of range".into(),
        Kind::Unsupported(actual) => format!("{} is not supported here", what(actual)),
        Kind::UnsupportedKey(actual, expected) => {
            format!("a key of {} is not supported: expected {expected}", what(actual))
        }
    }
}

/// The kind of a value, without the value.
fn what(actual: &Actual) -> &'static str {
    match actual {
        Actual::Bool(_) => "a boolean",
        Actual::Unsigned(_) | Actual::Signed(_) => "an integer",
        Actual::Float(_) => "a number",
        Actual::Char(_) => "a character",
        Actual::Str(_) => "a string",
        Actual::Bytes(_) => "bytes",
        Actual::Unit => "nothing",
        Actual::Option => "an optional value",
        Actual::Seq => "a list",
        Actual::Map => "a table",
        Actual::Enum
        | Actual::UnitVariant
        | Actual::NewtypeVariant
        | Actual::TupleVariant
        | Actual::StructVariant => "a variant",
        Actual::NewtypeStruct | Actual::Other(_) => "a value",
    }
}

/// The field names serde derives for a struct: a deserializer that only records what
/// `deserialize_struct` is given.
fn serde_fields<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    use serde::de::{self, Deserializer, Visitor};
    struct Probe<'a>(&'a mut &'static [&'static str]);
    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields recorded"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }
    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}
