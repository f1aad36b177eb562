//! Writes each target's seed corpus under `corpus/<target>/`: the examples as
//! documents in each format, valid checkpoints and parts after a few epochs, and
//! epoch messages as a node sends them. Run from `fuzz/` (scripts/fuzz does).

use neuropil_sim::network::Exchange;
use neuropil_sim::Spike;
use prost::Message as _;
use std::path::Path;

fn put(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    std::fs::write(dir.join(name), bytes).expect("seed file");
}

fn main() {
    let examples = Path::new("../examples");
    let mut names: Vec<_> = std::fs::read_dir(examples).expect("examples/").flatten().map(|e| e.path()).collect();
    names.sort();
    for path in names.iter().filter(|p| p.extension().is_some_and(|e| e == "toml")) {
        let text = std::fs::read_to_string(path).expect("example");
        let stem = path.file_stem().unwrap_or_default().to_string_lossy().to_string();
        put("spec", &format!("{stem}.toml"), &[[0u8].as_slice(), text.as_bytes()].concat());
        let with_set = format!("{text}\nrun.duration_ms=5");
        put("spec", &format!("{stem}.set.toml"), &[[4u8].as_slice(), with_set.as_bytes()].concat());
        // The same document as JSON.
        if let Ok(json) = toml::from_str::<toml::Value>(&text).map(|doc| serde_json::to_string(&doc)) {
            let json = json.expect("JSON of a TOML document");
            put("spec", &format!("{stem}.json"), &[[1u8].as_slice(), json.as_bytes()].concat());
        }
    }
    for steps in [0, 30, 120] {
        let (cp, out) = neuropil_fuzz::valid_checkpoint(steps);
        let bytes = cp.to_bytes();
        put("checkpoint", &format!("raw-{steps}"), &[[0u8].as_slice(), &bytes].concat());
        put("checkpoint", &format!("payload-{steps}"), &[[1u8].as_slice(), &bytes[24..]].concat());
        let segments = [neuropil_runtime::part::SegmentRef {
            path: format!("exp-1/out/{steps:012}.a0.r0.bin"),
            bytes: 1234,
            digest: 0x1234_5678,
        }];
        let part = neuropil_runtime::part::encode(&cp, &segments);
        put("part", &format!("raw-{steps}"), &[[0u8].as_slice(), &part].concat());
        let segment = neuropil_runtime::part::encode_segment(&out);
        put("part", &format!("segment-{steps}"), &[[2u8].as_slice(), &segment].concat());
    }
    let x = Exchange {
        spikes: (0..40).map(|i| Spike { step: 3 + i % 7, gid: i as u32 * 5 }).collect(),
        ..Exchange::default()
    };
    for (epoch, stop) in [(0, false), (17, false), (18, true)] {
        let m = neuropil_cluster::transport::encode("exp-1.r2", 1, epoch, &x, stop);
        put("exchange", &format!("epoch-{epoch}"), &m.encode_to_vec());
    }
    println!("seed corpora written under corpus/");
}
