//! `iaf_psc_exp` against NEST 3.10 (../shared/reference/iaf_psc_exp_single):
//! spike times exactly, V_m within 1e-9 mV at every recorded step.

mod common;
use common::*;

#[test]
fn iaf_psc_exp_reproduces_nest_exactly() {
    let c = compile_example("single_neuron.toml", &[]);
    for shards in [1, 3] {
        let out = run(&c, 1, shards);
        let ref_spikes: Vec<f64> =
            numbers(&reference("iaf_psc_exp_single/spikes_nest3.10.txt")).into_iter().map(|r| r[0]).collect();
        assert_eq!(ref_spikes.len(), 63);
        let ours: Vec<f64> = out.spikes.iter().map(|s| (s.step + 1) as f64 * c.network.dt_ms).collect();
        assert_eq!(ours.len(), ref_spikes.len(), "spike count");
        for (k, (a, b)) in ours.iter().zip(&ref_spikes).enumerate() {
            assert!((a - b).abs() < 1e-9, "spike {k}: {a} vs NEST {b}");
            assert!((a - (13.9 + k as f64 * 15.9)).abs() < 1e-9, "spike {k} at {a}");
        }
        let vm = numbers(&reference("iaf_psc_exp_single/vm_nest3.10.txt"));
        assert_eq!(vm.len(), 9990);
        let by_step: std::collections::HashMap<u64, f64> = out.samples.iter().map(|s| (s.step, s.value)).collect();
        let mut worst = 0.0f64;
        for row in &vm {
            let step = (row[0] / 0.1).round() as u64 - 1;
            let v = by_step.get(&step).unwrap_or_else(|| panic!("no sample at {} ms", row[0]));
            worst = worst.max((v - row[1]).abs());
        }
        // The reference is printed with 12 decimals: 1e-9 leaves room only for rounding.
        assert!(worst < 1e-9, "max |V_m - NEST| = {worst} mV");
    }
}
