//! In-process links between the processes of a distributed run: each "process"
//! is a thread calling [`crate::embedded::run_part`] with its share of the shards,
//! and the links carry the epoch messages through channels. For tests of the
//! split (placement of modules and fabrics, stops, second rounds) without sockets;
//! the cluster's transport is `neuropil_cluster::transport::GrpcTransport`.

use crate::embedded::Transport;
use crate::network::Exchange;
use crate::routing::Routes;
use std::sync::mpsc::{channel, Receiver, Sender};

/// One process's end of the links to all the others.
pub struct LocalLink {
    rank: usize,
    to: Vec<Option<Sender<(Exchange, bool)>>>,
    from: Vec<Option<Receiver<(Exchange, bool)>>>,
    /// Targeted routing: each peer gets the spikes it needs (`None`: all).
    routes: Option<Routes>,
    /// Spikes received from the peers so far.
    received: u64,
    /// Exchanges (calls to `send`) so far.
    exchanges: u64,
}

/// Links for `n` processes, by rank.
pub fn links(n: usize) -> Vec<LocalLink> {
    let mut ends: Vec<LocalLink> = (0..n)
        .map(|rank| LocalLink {
            rank,
            to: (0..n).map(|_| None).collect(),
            from: (0..n).map(|_| None).collect(),
            routes: None,
            received: 0,
            exchanges: 0,
        })
        .collect();
    for a in 0..n {
        for b in (0..n).filter(|&b| b != a) {
            let (tx, rx) = channel();
            ends[a].to[b] = Some(tx);
            ends[b].from[a] = Some(rx);
        }
    }
    ends
}

impl LocalLink {
    /// This end's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Send each peer only the spikes it needs.
    pub fn set_routes(&mut self, routes: Routes) {
        self.routes = Some(routes);
    }

    /// Spikes this end has received from its peers.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Exchanges this end has taken part in (messages sent to each peer).
    pub fn exchanges(&self) -> u64 {
        self.exchanges
    }
}

impl Transport for LocalLink {
    fn send(&mut self, local: &Exchange, stop: bool) -> Result<(), String> {
        self.exchanges += 1;
        for (r, tx) in self.to.iter().enumerate() {
            if let Some(tx) = tx {
                let mut x = Exchange::default();
                match &self.routes {
                    Some(routes) => routes.select(r, local, &mut x),
                    None => x.clone_from(local),
                }
                tx.send((x, stop)).map_err(|_| format!("rank {r} has gone"))?;
            }
        }
        Ok(())
    }

    fn receive(&mut self, into: &mut Exchange) -> Result<bool, String> {
        let mut any_stop = false;
        for (r, rx) in self.from.iter().enumerate() {
            if let Some(rx) = rx {
                let (x, stop) = rx.recv().map_err(|_| format!("rank {r} stopped sending"))?;
                self.received += x.spikes.len() as u64;
                into.spikes.extend_from_slice(&x.spikes);
                into.values.extend_from_slice(&x.values);
                into.delays.extend_from_slice(&x.delays);
                any_stop |= stop;
            }
        }
        Ok(any_stop)
    }
}
