//! Reading experiment files (TOML, JSON or YAML) and applying `--set path=value` overrides.

use crate::error::{FieldError, SpecError};
use crate::schema::Experiment;
use std::path::Path;

/// Largest experiment file accepted; anything bigger is not a hand-written spec.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// File format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// TOML.
    Toml,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

impl Format {
    /// Format from a file name's extension.
    pub fn from_path(path: &Path) -> Result<Format, SpecError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => Ok(Format::Toml),
            Some("json") => Ok(Format::Json),
            Some("yaml") | Some("yml") => Ok(Format::Yaml),
            other => Err(SpecError::Io {
                path: path.display().to_string(),
                message: format!(
                    "unknown experiment file extension {:?}; use .toml, .json or .yaml",
                    other.unwrap_or("(none)")
                ),
            }),
        }
    }
}

/// Read, override and parse an experiment file (not yet validated).
pub fn load(path: &Path, overrides: &[String]) -> Result<Experiment, SpecError> {
    let format = Format::from_path(path)?;
    let io = |message: String| SpecError::Io { path: path.display().to_string(), message };
    let meta = std::fs::metadata(path).map_err(|e| io(e.to_string()))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(io(format!(
            "file is {} bytes; experiment files are limited to {} bytes",
            meta.len(),
            MAX_FILE_BYTES
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| io(e.to_string()))?;
    parse(&text, format, overrides)
}

/// Parse experiment text, applying overrides first.
pub fn parse(text: &str, format: Format, overrides: &[String]) -> Result<Experiment, SpecError> {
    let mut doc = to_document(text, format)?;
    for o in overrides {
        apply_override(&mut doc, o)?;
    }
    from_document(doc)
}

fn syntax(path: &str, message: impl Into<String>) -> SpecError {
    SpecError::Syntax(FieldError { path: path.into(), message: message.into() })
}

/// Parse text into a generic document (TOML's data model; JSON nulls are refused).
pub fn to_document(text: &str, format: Format) -> Result<toml::Value, SpecError> {
    match format {
        Format::Toml => toml::from_str::<toml::Table>(text)
            .map(toml::Value::Table)
            .map_err(|e| syntax("(file)", format!("invalid TOML: {}", e.message().trim_end_matches('\n')))),
        Format::Json => {
            let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
                syntax("(file)", format!("invalid JSON at line {} column {}: {e}", e.line(), e.column()))
            })?;
            json_to_document(v)
        }
        Format::Yaml => {
            let v: serde_json::Value =
                serde_yaml::from_str(text).map_err(|e| syntax("(file)", format!("invalid YAML: {e}")))?;
            json_to_document(v)
        }
    }
}

fn json_to_document(v: serde_json::Value) -> Result<toml::Value, SpecError> {
    toml::Value::try_from(v).map_err(|e| {
        syntax("(file)", format!("{e}; null (and NaN in JSON/YAML) is not allowed, leave the field out instead"))
    })
}

/// Deserialize a document, reporting the path of a wrong type or unknown field.
pub fn from_document(doc: toml::Value) -> Result<Experiment, SpecError> {
    serde_path_to_error::deserialize::<_, Experiment>(doc).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { "(file)".to_string() } else { path };
        syntax(&path, e.into_inner().to_string())
    })
}

/// Apply `path=value`: `path` is dot-separated, with `[i]` for list indices or a
/// population/element name for lists of named tables (`populations.L23E.size`);
/// `value` is a TOML value (`0.1`, `true`, `"text"`, `[1, 2]`) or a bare string.
pub fn apply_override(doc: &mut toml::Value, assignment: &str) -> Result<(), SpecError> {
    let (path, raw) = assignment
        .split_once('=')
        .ok_or_else(|| SpecError::Override(format!("{assignment}: expected path=value, e.g. scaling.neurons=0.1")))?;
    let (path, raw) = (path.trim(), raw.trim());
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.into()),
    };
    let mut segments = Vec::new();
    for part in path.split('.') {
        let (name, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            segments.push(Seg::Key(name.to_string()));
        }
        for idx in rest.split('[').filter(|s| !s.is_empty()) {
            let i = idx
                .trim_end_matches(']')
                .parse::<usize>()
                .map_err(|_| SpecError::Override(format!("{path}: bad index [{idx}")))?;
            segments.push(Seg::Index(i));
        }
    }
    if segments.is_empty() {
        return Err(SpecError::Override(format!("{assignment}: empty path")));
    }
    let mut cur = doc;
    let last = segments.len() - 1;
    for (k, seg) in segments.iter().enumerate() {
        let is_last = k == last;
        cur = match (seg, cur) {
            (Seg::Key(key), toml::Value::Table(t)) => {
                if is_last {
                    t.insert(key.clone(), value);
                    return Ok(());
                }
                t.entry(key.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()))
            }
            (Seg::Key(name), toml::Value::Array(a)) => {
                let found = a.iter_mut().find(|e| e.get("name").and_then(|n| n.as_str()) == Some(name.as_str()));
                match found {
                    Some(e) if !is_last => e,
                    _ => return Err(SpecError::Override(format!("{path}: no element named \"{name}\""))),
                }
            }
            (Seg::Index(i), toml::Value::Array(a)) => {
                let len = a.len();
                let e = a
                    .get_mut(*i)
                    .ok_or_else(|| SpecError::Override(format!("{path}: index {i} out of range (list has {len})")))?;
                if is_last {
                    *e = value;
                    return Ok(());
                }
                e
            }
            (_, _) => return Err(SpecError::Override(format!("{path}: cannot descend into a value"))),
        };
    }
    Ok(())
}

enum Seg {
    Key(String),
    Index(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINI: &str = r#"
        [run]
        duration_ms = 10.0
        [[populations]]
        name = "E"
        size = 10
        model = "iaf_psc_exp"
    "#;

    #[test]
    fn overrides_reach_tables_lists_and_names() {
        let sets = [
            "run.seed=7".to_string(),
            "scaling.neurons=0.5".to_string(),
            "populations.E.size=20".to_string(),
            "populations[0].params.I_e=376.0".to_string(),
        ];
        let e = parse(MINI, Format::Toml, &sets).unwrap();
        assert_eq!(e.run.seed, 7);
        assert_eq!(e.scaling.neurons, 0.5);
        assert_eq!(e.populations[0].size, 20);
        assert_eq!(e.populations[0].params["I_e"], 376.0);
        let err = parse(MINI, Format::Toml, &["populations.X.size=1".to_string()]).unwrap_err();
        assert!(err.to_string().contains("no element named \"X\""), "{err}");
    }

    #[test]
    fn unknown_fields_name_their_path() {
        let text = MINI.replace("model = ", "modle = ");
        let err = parse(&text, Format::Toml, &[]).unwrap_err();
        let s = err.to_string();
        assert!(s.starts_with("populations[0]"), "{s}");
        assert!(s.contains("modle"), "{s}");
    }

    #[test]
    fn json_is_the_same_schema() {
        let json =
            r#"{"run": {"duration_ms": 10.0}, "populations": [{"name": "E", "size": 10, "model": "iaf_psc_exp"}]}"#;
        assert_eq!(parse(json, Format::Json, &[]).unwrap(), parse(MINI, Format::Toml, &[]).unwrap());
        let err = parse(r#"{"run": null}"#, Format::Json, &[]).unwrap_err();
        assert!(err.to_string().contains("null"), "{err}");
        let yaml = "run:\n  duration_ms: 10.0\npopulations:\n  - name: E\n    size: 10\n    model: iaf_psc_exp\n";
        assert_eq!(parse(yaml, Format::Yaml, &[]).unwrap(), parse(MINI, Format::Toml, &[]).unwrap());
    }
}
