//! What a checkpoint leaves out of a shard: its static connectivity (rows, delay
//! sections, targets, static weights, SIC and astrocyte links, spike-generator
//! events). It is a pure function of the network and the shard's layout, so a
//! restored shard builds it again; only the dynamic state travels (neuron state,
//! pending deliveries, random-stream positions, plastic weights and histories).
//! Static weights travel only when homeostatic scaling has changed them.

use super::Shard;
use crate::connectivity::Layout;
use crate::network::Network;

/// A shard's static weights, and whether they have changed since the build.
#[derive(Debug, Clone, Default)]
pub(super) struct Weights {
    /// Set by homeostatic synaptic scaling: the weights are then dynamic state.
    pub scaled: bool,
    w: Vec<f32>,
}

impl Weights {
    pub fn new(w: Vec<f32>) -> Weights {
        Weights { scaled: false, w }
    }
}

impl std::ops::Deref for Weights {
    type Target = Vec<f32>;
    fn deref(&self) -> &Vec<f32> {
        &self.w
    }
}

impl std::ops::DerefMut for Weights {
    fn deref_mut(&mut self) -> &mut Vec<f32> {
        &mut self.w
    }
}

impl serde::Serialize for Weights {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.scaled.then_some(&self.w).serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Weights {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Weights, D::Error> {
        let w: Option<Vec<f32>> = serde::Deserialize::deserialize(d)?;
        Ok(Weights { scaled: w.is_some(), w: w.unwrap_or_default() })
    }
}

/// Why a restored shard does not fit the network it is restored into.
#[derive(Debug, thiserror::Error)]
#[error("shard {shard}: {what} differs from the network's ({got} in the checkpoint, {want} built)")]
pub struct Mismatch {
    shard: u32,
    what: &'static str,
    got: usize,
    want: usize,
}

impl Shard {
    /// After restoring from a checkpoint: build this shard's static connectivity
    /// again from `net` (checking that the dynamic state fits it).
    pub fn rebuild_static(&mut self, net: &Network) -> Result<(), Mismatch> {
        let shard = self.layout.index;
        if self.layout.count == 0 || shard >= self.layout.count || self.layout.count > 1 << 20 {
            let (got, want) = (shard as usize, self.layout.count as usize);
            return Err(Mismatch { shard, what: "shard index (of the shard count)", got, want });
        }
        // The layout comes from the network, never from the checkpoint's bytes.
        let layout = Layout::of(net, shard, self.layout.count);
        if layout != self.layout {
            let (got, want) = (self.layout.grouped() as usize, layout.grouped() as usize);
            return Err(Mismatch { shard, what: "population layout (grouped 1, round-robin 0)", got, want });
        }
        let fresh = Shard::build(net, layout);
        let check = |what, got: usize, want: usize| {
            if got == want {
                Ok(())
            } else {
                Err(Mismatch { shard, what, got, want })
            }
        };
        check("neurons", self.n_local, fresh.n_local)?;
        check("plastic projections", self.plastic.len(), fresh.plastic.len())?;
        for (mine, built) in self.plastic.iter().zip(&fresh.plastic) {
            check("plastic synapses", mine.weight.len(), built.weight.len())?;
        }
        if self.syn_weight.scaled {
            check("static synapses", self.syn_weight.len(), fresh.syn_weight.len())?;
        }
        let Shard { row_sec, sec_delay, sec_start, syn_target, syn_weight, sic_row, sic_syn, trains, plastic, .. } =
            fresh;
        (self.row_sec, self.sec_delay, self.sec_start, self.syn_target) = (row_sec, sec_delay, sec_start, syn_target);
        (self.sic_row, self.sic_syn, self.trains) = (sic_row, sic_syn, trains);
        if !self.syn_weight.scaled {
            self.syn_weight = syn_weight;
        }
        for (mine, built) in self.plastic.iter_mut().zip(plastic) {
            (mine.row_sec, mine.sec_delay, mine.sec_start, mine.target, mine.astro) =
                (built.row_sec, built.sec_delay, built.sec_start, built.target, built.astro);
        }
        Ok(())
    }
}
