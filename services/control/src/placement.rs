//! Where a run goes: its shards on the live nodes (by threads, within each node's
//! memory), and its single instances — each cerebellar module and the
//! co-simulated fabric — on one member each ([`neuropil_cluster::Placement`]).

use crate::error::ControlError;
use crate::gib;
use neuropil_cluster::{Member, NodeRecord, Placement};
use std::collections::{BTreeMap, HashMap};

/// Place `shards` shards (about equal in estimated memory) on `nodes`: each to
/// the node with the least shards per thread among those with memory left for
/// it. Nodes that get none are left out; no room anywhere is an error naming the
/// sizes and what each node offers.
pub(crate) fn place(nodes: &[NodeRecord], shards: u32, estimated_bytes: u64) -> Result<Vec<Member>, String> {
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
    let per_shard = estimated_bytes as f64 / shards.max(1) as f64;
    let fits = |m: &Member, n: &NodeRecord| (m.shards.len() + 1) as f64 * per_shard <= n.memory_bytes as f64;
    let load = |m: &Member| (m.shards.len() + 1) as f64 / m.threads as f64;
    for s in 0..shards {
        let best = (0..members.len())
            .filter(|&i| fits(&members[i], &nodes[i]))
            .min_by(|&a, &b| load(&members[a]).total_cmp(&load(&members[b])).then(a.cmp(&b)));
        let Some(best) = best else {
            let offers: Vec<String> = nodes
                .iter()
                .zip(&members)
                .map(|(n, m)| format!("{} {:.2} GiB ({} placed)", n.id, gib(n.memory_bytes), m.shards.len()))
                .collect();
            return Err(format!(
                "no node has memory left for shard {s} of {shards} (about {:.2} GiB each, {:.2} GiB in all); \
                 nodes offer: {}; add nodes or memory, or scale the network down",
                gib(per_shard as u64),
                gib(estimated_bytes),
                offers.join(", ")
            ));
        };
        members[best].shards.push(s);
    }
    members.retain(|m| !m.shards.is_empty());
    Ok(members)
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
        let m = place(&nodes, 3, 300 << 20).unwrap();
        assert_eq!(placed(&m), [("a", vec![0, 1]), ("b", vec![2])]);
        // 100 MiB per shard: a node offering 64 MiB gets none and is left out.
        let nodes = [node("small", 1, 64), node("big", 1, 4096)];
        assert_eq!(placed(&place(&nodes, 2, 200 << 20).unwrap()), [("big", vec![0, 1])]);
        // The 4-thread node would take both but has memory for one; the other takes the rest.
        let nodes = [node("a", 1, 150), node("b", 4, 150)];
        assert_eq!(placed(&place(&nodes, 2, 200 << 20).unwrap()), [("a", vec![1]), ("b", vec![0])]);
    }

    #[test]
    fn no_room_for_a_shard_is_an_error_with_the_sizes() {
        let nodes = [node("small", 1, 100), node("big", 1, 160)];
        let e = place(&nodes, 2, 214 << 20).unwrap_err();
        assert!(e.contains("shard 1 of 2"), "{e}");
        assert!(e.contains("small 0.10 GiB (0 placed)") && e.contains("big 0.16 GiB (1 placed)"), "{e}");
        assert!(e.contains("scale the network down"), "{e}");
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
