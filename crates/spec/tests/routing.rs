//! Targeted spike routing beyond plain projections: a node that holds only
//! astrocytes needs the spikes of the neurons whose synapses its astrocytes join
//! (the tripartite legs), or their currents go wrong and with them the spikes.

mod common;
use common::*;

#[test]
fn a_node_of_astrocytes_gets_the_spikes_of_the_synapses_they_join() {
    let set = [
        "run.duration_ms=60",
        "run.transient_ms=0",
        "run.layout=groups",
        "populations.E.group=neurons",
        "populations.I.group=neurons",
        "populations.A.group=astrocytes",
    ];
    let c = compile_example("astrocyte_brunel.toml", &set);
    // Two groups of 10,000 on 2 shards: neurons on shard 0 (rank 0), astrocytes on
    // shard 1 (rank 1).
    let layout = neuropil_sim::connectivity::Layout::of(&c.network, 1, 2);
    let a = &c.network.populations[2];
    assert_eq!(layout.local_range(a.first_gid, a.size).len(), a.size as usize);
    let one = run(&c, 1, 1);
    assert!(one.spikes.len() > 100, "{} spikes", one.spikes.len());
    let (routed, received) = run_split_with(&c, 2, 2, &[], true);
    assert_eq!(routed.spike_hash, one.spike_hash);
    // Rank 1 needs E (the legs) and gets every E spike, no I spike; astrocytes
    // do not spike, so rank 0 receives nothing (their currents travel as values).
    let e = &c.network.populations[0];
    let from_e = one.spikes.iter().filter(|s| s.gid >= e.first_gid && s.gid < e.end_gid()).count() as u64;
    assert!(from_e > 0 && (from_e as usize) < one.spikes.len());
    assert_eq!(received, [0, from_e]);
    let routes = neuropil_sim::routing::Routes::new(&c.network, &[vec![0], vec![1]], 2, &[true, false]);
    assert!(routes.needs(1, 0) && !routes.needs(1, 1) && !routes.needs(1, 2), "rank 1 needs E only");
}
