//! What each fuzz target does with its input, callable from the targets (under
//! libFuzzer) and from `seeds` (which writes valid inputs to start from).
//!
//! A target fails (panics) only where neuropil would: a parser, decoder or a
//! restored run that panics on some input, or allocates without bound (libFuzzer's
//! `-rss_limit_mb` catches that). Errors are the expected outcome for most inputs.

use neuropil_sim::embedded::{self, checksum, Checkpoint, RunConfig, RunOutput, StretchError};
use neuropil_sim::network::Exchange;
use neuropil_sim::Network;
use neuropil_spec::{Format, Limits};
use prost::Message as _;
use std::sync::atomic::AtomicBool;
use std::sync::OnceLock;

/// The network checkpoints are decoded against: dopamine-modulated STDP and a
/// cerebellar module (plastic weights, eligibility traces, module queues: the
/// richest state a checkpoint holds), 221 neurons.
pub fn network() -> &'static Network {
    static NET: OnceLock<Network> = OnceLock::new();
    NET.get_or_init(|| {
        let doc = include_str!("../../examples/cerebellar_dopamine.toml");
        let exp = neuropil_spec::parse(doc, Format::Toml, &["run.duration_ms=200".into()]).expect("example parses");
        neuropil_spec::compile(&exp, &Limits { memory_bytes: None }).expect("example compiles").network
    })
}

/// Shards the seed checkpoints have.
pub const SHARDS: usize = 2;

/// A checkpoint of [`network`] after `steps` steps, and the output so far.
pub fn valid_checkpoint(steps: u64) -> (Checkpoint, RunOutput) {
    let net = network();
    let start = embedded::build(net, SHARDS, 1);
    let cfg = RunConfig { threads: 1, shards: SHARDS, steps, count_from_step: 0 };
    let (out, cp) = embedded::run_from(net, start, cfg, &|_| {}, &AtomicBool::new(false));
    (cp, out)
}

/// The bytes of [`valid_checkpoint`]`(0)`, built once (not per fuzz input).
fn base_checkpoint() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| valid_checkpoint(0).0.to_bytes())
}

/// A checkpoint file around `payload`, with the right length and checksum (so
/// that mutations reach the decoder behind them, not only the checksum).
pub fn wrap_checkpoint(payload: &[u8]) -> Vec<u8> {
    let mut out = base_checkpoint()[..8].to_vec();
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&checksum(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Run a restored checkpoint for one epoch: state that decoded and fitted its
/// network must not make model code panic.
fn run_one_epoch(net: &Network, cp: Checkpoint) {
    let shards = cp.shards.len();
    let steps = u64::from(net.epoch_steps().max(1));
    let cfg = RunConfig { threads: 1, shards, steps, count_from_step: 0 };
    match embedded::run_part(net, cp, cfg, None, None, &|_| {}, &AtomicBool::new(false)) {
        Ok(_) => {}
        Err(e @ (StretchError::Shard { .. } | StretchError::Module { .. })) => {
            panic!("a checkpoint that decoded and fitted its network failed when run: {e}")
        }
        Err(StretchError::Transport(_)) => unreachable!("no transport"),
    }
}

/// Submit's path: an experiment document (TOML, JSON or YAML, chosen by the first
/// byte) and, when the first byte says so, its last line as a `--set` override;
/// parsed, validated and compiled as the control does before any node builds.
pub fn spec(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let format = match selector % 3 {
        0 => Format::Toml,
        1 => Format::Json,
        _ => Format::Yaml,
    };
    let (doc, set) = match (selector & 4 != 0, text.rsplit_once('\n')) {
        (true, Some((doc, last))) => (doc, vec![last.to_string()]),
        _ => (text, vec![]),
    };
    if let Ok(exp) = neuropil_spec::parse(doc, format, &set) {
        let _ = neuropil_spec::compile(&exp, &Limits { memory_bytes: Some(1 << 30) });
    }
}

/// A checkpoint file (first byte even: the bytes as they are; odd: the rest as
/// the payload of a well-formed file), decoded for [`network`]; what decodes has
/// its static connectivity rebuilt and runs one epoch.
pub fn checkpoint(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let bytes = if mode & 1 == 1 { wrap_checkpoint(rest) } else { rest.to_vec() };
    let net = network();
    if let Ok(mut cp) = Checkpoint::decode(&bytes, net) {
        if cp.rebuild_statics(net, 1).is_ok() {
            run_one_epoch(net, cp);
        }
    }
}

/// A node's checkpoint part or output segment: first byte 0 mod 3, a part as it
/// is; 1, a valid checkpoint followed by the rest as the segment list, with its
/// checksum right; 2, an output segment.
pub fn part(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 3 == 2 {
        let _ = neuropil_runtime::part::decode_segment("fuzzed segment", rest);
        return;
    }
    let _ = neuropil_runtime::part::decode_named("fuzzed part", &part_bytes(mode, rest), network());
}

/// What [`part`] decodes for `mode` 0 (the bytes as they are) or 1 (a valid
/// checkpoint and `rest` as the segment list).
fn part_bytes(mode: u8, rest: &[u8]) -> Vec<u8> {
    if mode % 3 == 1 {
        // A valid part with an empty segment list, the list (its length, checksum
        // and one postcard byte) replaced by `rest`.
        static PART: OnceLock<Vec<u8>> = OnceLock::new();
        let base = PART.get_or_init(|| {
            let cp = Checkpoint::decode(base_checkpoint(), network()).expect("valid");
            neuropil_runtime::part::encode(&cp, &[])
        });
        let mut b = base[..base.len() - 17].to_vec();
        b.extend_from_slice(&(rest.len() as u64).to_le_bytes());
        b.extend_from_slice(&checksum(rest).to_le_bytes());
        b.extend_from_slice(rest);
        b
    } else {
        rest.to_vec()
    }
}

/// An epoch message as a peer sends it (protobuf), decoded into an exchange.
pub fn exchange(data: &[u8]) {
    if let Ok(m) = neuropil_proto::v1::EpochMessage::decode(data) {
        let mut into = Exchange::default();
        let _ = neuropil_cluster::transport::decode(&m, &mut into);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_targets_take_valid_and_damaged_input() {
        let (cp, out) = valid_checkpoint(30);
        let bytes = cp.to_bytes();
        checkpoint(&[[0u8].as_slice(), &bytes].concat());
        checkpoint(&[[1u8].as_slice(), &bytes[24..]].concat());
        let encoded = neuropil_runtime::part::encode(&cp, &[]);
        assert!(neuropil_runtime::part::decode_named("p", &encoded, network()).is_ok());
        part(&[[0u8].as_slice(), &encoded].concat());
        part(&[[0u8].as_slice(), &encoded[..encoded.len() / 2]].concat());
        // Mode 1 reaches the list decoder: an empty list (postcard: one 0 byte) decodes.
        assert!(neuropil_runtime::part::decode_named("p", &part_bytes(1, &[0]), network()).is_ok());
        let segment = neuropil_runtime::part::encode_segment(&out);
        assert!(neuropil_runtime::part::decode_segment("s", &segment).is_ok());
        part(&[[2u8].as_slice(), &segment].concat());
        spec(&[[0u8].as_slice(), include_bytes!("../../examples/brunel.toml")].concat());
        exchange(b"\x0a\x03abc");
    }
}
