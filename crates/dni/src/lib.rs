//! The cortico-cerebellar decoupled-neural-interface experiment of Pemberton,
//! Boven, Apps & Costa (NeurIPS 2021), in Rust: a recurrent cortex (LSTM + linear
//! readout) learns the line-drawing task by truncated backpropagation through
//! time; a cerebellar module ([`neuropil_sim::cerebellum::CerebellarModule`], the
//! same code the spiking simulator runs) reads the cortical state and predicts the
//! gradient that truncation cuts off, and learns from the bootstrapped true
//! gradient when it arrives. Facts and hyperparameters:
//! `../shared/reference/cerebellar_dni.md`.

pub mod lstm;
pub mod task;
pub mod train;

pub use train::{draw, train, train_model, Config, Epoch, Lesion, LesionKind};
