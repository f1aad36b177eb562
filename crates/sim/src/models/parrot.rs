//! `parrot_neuron`: emits a spike in every step in which it received one.
//!
//! Connections into parrots must carry weight 1 (validated by the spec); a step
//! with several arriving spikes emits one (NEST would emit one event of that
//! multiplicity; the kernel has no spike multiplicity).

use super::StepInput;

/// Parrots of one population on one shard.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Parrot {
    n: usize,
}

impl Parrot {
    /// `n` parrots.
    pub fn new(n: usize) -> Self {
        Parrot { n }
    }

    /// One step.
    #[inline]
    pub fn update(&mut self, input: StepInput<'_>, spikes: &mut Vec<u32>) {
        for i in 0..self.n {
            if input.syn[2 * i] > 0.0 {
                spikes.push(i as u32);
            }
            input.syn[2 * i] = 0.0;
            input.syn[2 * i + 1] = 0.0;
        }
    }
}
