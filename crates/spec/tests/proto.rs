//! The experiment files and the proto schema are one schema: every message of
//! proto/neuropil/v1/experiment.proto has exactly the fields of its Rust mirror.

use neuropil_spec::dist::DistFields;
use neuropil_spec::schema::*;
use std::collections::{BTreeMap, BTreeSet};

fn proto_messages() -> BTreeMap<String, BTreeSet<String>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto/neuropil/v1/experiment.proto");
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.split("//").next().unwrap().trim();
        if let Some(rest) = line.strip_prefix("message ") {
            current = Some(rest.trim_end_matches('{').trim().to_string());
            out.insert(current.clone().unwrap(), BTreeSet::new());
        } else if line == "}" {
            current = None;
        } else if let (Some(m), Some((lhs, _))) = (&current, line.split_once('=')) {
            let name = lhs.split_whitespace().last().unwrap().to_string();
            out.get_mut(m).unwrap().insert(name);
        }
    }
    out
}

fn fields<T: serde::Serialize>(v: &T) -> BTreeSet<String> {
    match serde_json::to_value(v).unwrap() {
        serde_json::Value::Object(m) => m.keys().cloned().collect(),
        other => panic!("not a struct: {other}"),
    }
}

#[test]
fn rust_schema_mirrors_the_proto() {
    let proto = proto_messages();
    let rust: Vec<(&str, BTreeSet<String>)> = vec![
        ("Experiment", fields(&Experiment::default())),
        ("RunSpec", fields(&RunSpec::default())),
        ("ScalingSpec", fields(&ScalingSpec::default())),
        ("PopulationSpec", fields(&PopulationSpec::default())),
        ("StimulusSpec", fields(&StimulusSpec::default())),
        ("ProjectionSpec", fields(&ProjectionSpec::default())),
        ("ThirdSpec", fields(&ThirdSpec::default())),
        ("HomeostasisSpec", fields(&HomeostasisSpec::default())),
        ("ConnSpec", fields(&ConnSpec::default())),
        ("SynSpec", fields(&SynSpec::default())),
        ("Distribution", fields(&DistFields::default())),
        ("RecorderSpec", fields(&RecorderSpec::default())),
        ("HardwareSpec", fields(&HardwareSpec::default())),
        ("CerebellumSpec", fields(&CerebellumSpec::default())),
    ];
    for (name, rust_fields) in rust {
        let p = proto.get(name).unwrap_or_else(|| panic!("proto lacks message {name}"));
        assert_eq!(p, &rust_fields, "message {name}");
    }
}
