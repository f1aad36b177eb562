//! Where a run goes: its shards on the live nodes (by threads, within each node's
//! memory), and its single instances — each cerebellar module and the
//! co-simulated fabric — on one member each ([`neuropil_cluster::Placement`]).

use crate::error::ControlError;
use crate::gib;
use neuropil_cluster::{Member, NodeRecord, Placement};
use std::collections::{BTreeMap, HashMap};

/// Place shards of `shard_bytes` estimated memory each on `nodes`: each, in
/// index order, to the node with the least shards per thread among those with
/// memory left for it. Nodes that get none are left out; no room anywhere is an
/// error naming the sizes and what each node offers.
pub(crate) fn place(nodes: &[NodeRecord], shard_bytes: &[u64]) -> Result<Vec<Member>, String> {
    let mut members: Vec<Member> = nodes
        .iter()
        .map(|n| Member {
            node: n.id.clone(),
            addr: n.addr.clone(),
            exchange_addr: n.exchange_addr.clone(),
            exchange_socket: n.exchange_socket.clone(),
            host: n.host.clone(),
            shards: vec![],
            threads: n.threads.max(1),
        })
        .collect();
    let shards = shard_bytes.len();
    let total: u64 = shard_bytes.iter().sum();
    let mut used = vec![0u64; members.len()];
    let load = |m: &Member| (m.shards.len() + 1) as f64 / m.threads as f64;
    for (s, &bytes) in shard_bytes.iter().enumerate() {
        let best = (0..members.len())
            .filter(|&i| used[i] + bytes <= nodes[i].memory_bytes)
            .min_by(|&a, &b| load(&members[a]).total_cmp(&load(&members[b])).then(a.cmp(&b)));
        let Some(best) = best else {
            let offers: Vec<String> = nodes
                .iter()
                .zip(&members)
                .map(|(n, m)| format!("{} {:.2} GiB ({} placed)", n.id, gib(n.memory_bytes), m.shards.len()))
                .collect();
            return Err(format!(
                "no node has memory left for shard {s} of {shards} (about {:.2} GiB, {:.2} GiB in all); \
                 nodes offer: {}; add nodes or memory, or scale the network down",
                gib(bytes),
                gib(total),
                offers.join(", ")
            ));
        };
        used[best] += bytes;
        members[best].shards.push(s as u32);
    }
    members.retain(|m| !m.shards.is_empty());
    Ok(members)
}

/// The shards' estimated bytes an assignment carries, or equal shares of
/// `total` (an assignment of an older control).
pub(crate) fn shard_bytes_of(a: &neuropil_cluster::Assignment, total: u64) -> Vec<u64> {
    if a.shard_bytes.len() == a.shards as usize {
        a.shard_bytes.clone()
    } else {
        equal(total, a.shards)
    }
}

/// `total` in `shards` equal parts.
pub(crate) fn equal(total: u64, shards: u32) -> Vec<u64> {
    vec![total / shards.max(1) as u64; shards.max(1) as usize]
}

/// With population groups (`run.layout = "groups"`), a shard that no live node
/// could hold: an error naming the groups on it (an area whole on one shard).
pub(crate) fn groups_too_large(
    exp: &neuropil_spec::Experiment,
    net: &neuropil_sim::Network,
    shard_bytes: &[u64],
    nodes: &[NodeRecord],
) -> Option<String> {
    net.groups.as_ref()?;
    let largest = nodes.iter().map(|n| n.memory_bytes).max()?;
    let (s, &bytes) = shard_bytes.iter().enumerate().find(|(_, &b)| b > largest)?;
    let layout = neuropil_sim::connectivity::Layout::of(net, s as u32, shard_bytes.len() as u32);
    let mut names: Vec<&str> = Vec::new();
    for (spec, pop) in exp.populations.iter().zip(&net.populations) {
        let g = spec.group.as_deref().unwrap_or("");
        if !layout.local_range(pop.first_gid, pop.size).is_empty() && !names.contains(&g) {
            names.push(g);
        }
    }
    Some(format!(
        "run.layout = \"groups\": shard {s} of {} holds group {} (about {:.2} GiB) but the largest live node offers \
         {:.2} GiB; a group stays whole on one shard while there are no more shards than groups: ask for more \
         shards than groups (Submit shards) so that groups spread over several, add memory, or scale the network down",
        shard_bytes.len(),
        names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", "),
        gib(bytes),
        gib(largest)
    ))
}

/// Check the nodes a submission asks for its modules and fabric: keys name a
/// module of the experiment (`cerebellum.NAME`) or its `[hardware]` section
/// (`hardware`), values are node ids. The nodes need not be live yet.
pub(crate) fn wanted_places(
    asked: HashMap<String, String>,
    net: &neuropil_sim::Network,
    fabric: bool,
) -> Result<BTreeMap<String, String>, ControlError> {
    if asked.len() > 1024 {
        return Err(ControlError::InvalidArgument("placement: at most 1024 entries".into()));
    }
    let mut known: Vec<String> = net.cerebella.iter().map(|c| Placement::module_key(&c.name)).collect();
    if fabric {
        known.push(Placement::FABRIC_KEY.to_string());
    }
    for (key, node) in &asked {
        if !known.contains(key) {
            let what = if known.is_empty() {
                "the experiment has no cerebellar module and no [hardware] section".to_string()
            } else {
                format!("it has {}", known.join(", "))
            };
            return Err(ControlError::InvalidArgument(format!(
                "placement[{key:?}]: not a module or fabric of this experiment ({what})"
            )));
        }
        if node.is_empty() || node.len() > 253 || node.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(ControlError::InvalidArgument(format!(
                "placement[{key:?}]: {node:?} is not a node id (1 to 253 characters, no spaces)"
            )));
        }
    }
    Ok(asked.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, threads: u32, mib: u64) -> NodeRecord {
        NodeRecord {
            id: id.into(),
            addr: format!("http://{id}:1"),
            exchange_addr: format!("http://{id}:2"),
            exchange_socket: None,
            host: String::new(),
            threads,
            memory_bytes: mib << 20,
            draining: false,
        }
    }

    fn placed(m: &[Member]) -> Vec<(&str, Vec<u32>)> {
        m.iter().map(|m| (m.node.as_str(), m.shards.clone())).collect()
    }

    #[test]
    fn shards_follow_threads_within_each_nodes_memory() {
        // Plenty of memory: by shards per thread after placing (ties to the first node).
        let nodes = [node("a", 2, 4096), node("b", 1, 4096)];
        let m = place(&nodes, &equal(300 << 20, 3)).unwrap();
        assert_eq!(placed(&m), [("a", vec![0, 1]), ("b", vec![2])]);
        // 100 MiB per shard: a node offering 64 MiB gets none and is left out.
        let nodes = [node("small", 1, 64), node("big", 1, 4096)];
        assert_eq!(placed(&place(&nodes, &equal(200 << 20, 2)).unwrap()), [("big", vec![0, 1])]);
        // The 4-thread node would take both but has memory for one; the other takes the rest.
        let nodes = [node("a", 1, 150), node("b", 4, 150)];
        assert_eq!(placed(&place(&nodes, &equal(200 << 20, 2)).unwrap()), [("a", vec![1]), ("b", vec![0])]);
    }

    #[test]
    fn no_room_for_a_shard_is_an_error_with_the_sizes() {
        let nodes = [node("small", 1, 100), node("big", 1, 160)];
        let e = place(&nodes, &equal(214 << 20, 2)).unwrap_err();
        assert!(e.contains("shard 1 of 2"), "{e}");
        assert!(e.contains("small 0.10 GiB (0 placed)") && e.contains("big 0.16 GiB (1 placed)"), "{e}");
        assert!(e.contains("scale the network down"), "{e}");
        // Unequal shards (an area each): the big one goes where it fits.
        let nodes = [node("small", 1, 100), node("big", 1, 400)];
        let m = place(&nodes, &[300 << 20, 50 << 20]).unwrap();
        assert_eq!(placed(&m), [("small", vec![1]), ("big", vec![0])]);
    }

    /// Areas whole on one shard each: a shard larger than every node is refused
    /// with the areas on it named; spread over more shards, or round-robin, the
    /// same network fits.
    #[test]
    fn an_area_larger_than_every_node_is_refused_with_its_name() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/multi_area/ground.toml");
        let compiled = |layout: &str| {
            let set: Vec<String> =
                ["scaling.neurons=0.01", "scaling.synapses=0.01", layout].iter().map(|s| s.to_string()).collect();
            let exp = neuropil_spec::load(&path, &set).unwrap();
            let c = neuropil_spec::compile(&exp, &neuropil_spec::Limits::default()).unwrap();
            (exp, c)
        };
        let (exp, c) = compiled("run.layout=groups");
        let two = neuropil_spec::compile::shard_bytes(&c.network, 2, c.estimated_bytes);
        assert_eq!(two.len(), 2);
        let biggest = *two.iter().max().unwrap();
        let mib = (biggest >> 20) - 1;
        let nodes = [node("a", 1, mib), node("b", 1, mib), node("c", 1, mib)];
        let e = groups_too_large(&exp, &c.network, &two, &nodes).expect("refused");
        assert!(e.contains("holds group \"V1\"") || e.contains("\"V1\""), "{e}");
        assert!(e.contains("more shards than groups"), "{e}");
        assert!(place(&nodes, &two).is_err());
        // 8 shards: the same areas fit those nodes.
        let eight = neuropil_spec::compile::shard_bytes(&c.network, 8, c.estimated_bytes);
        assert!(groups_too_large(&exp, &c.network, &eight, &nodes).is_none());
        assert!(place(&nodes, &eight).is_ok());
        // Round-robin shards are equal parts and never name a group.
        let (exp, c) = compiled("run.layout=round_robin");
        let rr = neuropil_spec::compile::shard_bytes(&c.network, 2, c.estimated_bytes);
        assert_eq!(rr[0], rr[1]);
        assert!(groups_too_large(&exp, &c.network, &rr, &nodes).is_none());
    }

    fn member(id: &str) -> Member {
        let n = node(id, 1, 1024);
        Member {
            node: n.id,
            addr: n.addr,
            exchange_addr: n.exchange_addr,
            exchange_socket: None,
            host: String::new(),
            shards: vec![0],
            threads: 1,
        }
    }

    #[test]
    fn modules_and_the_fabric_go_where_asked_or_spread_from_rank_1() {
        let members = [member("a"), member("b"), member("c")];
        let names = ["m0".to_string(), "m1".into(), "m2".into()];
        let (p, said) = Placement::new(&members, &names, true, BTreeMap::new());
        let ranks: Vec<u32> = p.modules.iter().map(|m| m.rank).collect();
        assert_eq!((ranks, p.fabric), (vec![1, 2, 0], Some(2)));
        assert!(said.contains(&"cerebellum.m0 on b".to_string()), "{said:?}");
        let wanted: BTreeMap<String, String> =
            [("cerebellum.m1".into(), "a".into()), ("hardware".into(), "b".into())].into();
        let (p, _) = Placement::new(&members, &names, true, wanted.clone());
        let ranks: Vec<u32> = p.modules.iter().map(|m| m.rank).collect();
        assert_eq!((ranks, p.fabric), (vec![1, 0, 0], Some(1)));
        // A recovery without node b: its wish falls back to the rule, and says so.
        let (p, said) = p.again(&[member("a"), member("c")]);
        assert_eq!((p.modules[0].rank, p.modules[1].rank, p.fabric), (1, 0, Some(1)));
        assert!(said.iter().any(|s| s == "hardware on c (b is not a member of this attempt)"), "{said:?}");
        assert_eq!(p.wanted, wanted);
        // One node runs everything.
        let (p, _) = Placement::new(&[member("a")], &names, true, BTreeMap::new());
        assert!(p.modules.iter().all(|m| m.rank == 0) && p.fabric == Some(0));
    }
}
