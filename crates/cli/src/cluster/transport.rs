//! The per-epoch spike exchange between nodes over gRPC: one client stream per
//! ordered pair of nodes (NodeService.Exchange), one message per epoch.
//!
//! The simulation thread calls [`GrpcTransport::exchange`] (the kernel's blocking
//! `Transport`): it hands its message to every outbound stream task and then
//! waits for the peers' messages of the same epoch, which the node's Exchange
//! handler forwards into a channel. Streams keep their order, so the k-th message
//! of a peer is its epoch k; a peer is never more than one epoch ahead.

use super::metrics::NodeMetrics;
use neuropil_proto::v1::node_service_client::NodeServiceClient;
use neuropil_proto::v1::EpochMessage;
use neuropil_sim::embedded::Transport;
use neuropil_sim::network::{Exchange, StateValue, ValueKind};
use neuropil_sim::Spike;
use std::collections::VecDeque;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// gRPC metadata naming the run of an Exchange stream.
pub const RUN_HEADER: &str = "x-neuropil-run";
/// gRPC metadata naming the sender's rank.
pub const RANK_HEADER: &str = "x-neuropil-rank";

/// What the Exchange handler forwards to a run.
#[derive(Debug)]
pub enum Inbound {
    /// One epoch message from a peer.
    Message(u32, EpochMessage),
    /// A peer's stream ended (with the error, if it broke).
    Ended(u32, Option<String>),
}

/// Encode a shard output for the wire (steps relative to the first one).
pub fn encode(run: &str, sender: u32, epoch: u64, x: &Exchange, stop: bool) -> EpochMessage {
    let first_step = x.spikes.iter().map(|s| s.step).chain(x.values.iter().map(|v| v.step)).min().unwrap_or(0);
    EpochMessage {
        run: run.to_string(),
        sender,
        epoch,
        first_step,
        spike_gid: x.spikes.iter().map(|s| s.gid).collect(),
        spike_step: x.spikes.iter().map(|s| (s.step - first_step) as u32).collect(),
        value_gid: x.values.iter().map(|v| v.gid).collect(),
        value_step: x.values.iter().map(|v| (v.step - first_step) as u32).collect(),
        value_kind: x.values.iter().map(|v| v.kind as u32).collect(),
        value: x.values.iter().map(|v| v.value).collect(),
        stop,
    }
}

/// Decode a peer's message into `into` (appending); a malformed message is an error.
pub fn decode(m: &EpochMessage, into: &mut Exchange) -> Result<(), String> {
    if m.spike_gid.len() != m.spike_step.len() {
        return Err(format!("peer {}: {} spike ids but {} steps", m.sender, m.spike_gid.len(), m.spike_step.len()));
    }
    let n = m.value_gid.len();
    if m.value_step.len() != n || m.value_kind.len() != n || m.value.len() != n {
        return Err(format!("peer {}: state value columns of different lengths", m.sender));
    }
    into.spikes.extend(
        m.spike_gid.iter().zip(&m.spike_step).map(|(&gid, &off)| Spike { step: m.first_step + off as u64, gid }),
    );
    for i in 0..n {
        let kind = ValueKind::from_u32(m.value_kind[i])
            .ok_or_else(|| format!("peer {}: unknown state value kind {}", m.sender, m.value_kind[i]))?;
        into.values.push(StateValue {
            step: m.first_step + m.value_step[i] as u64,
            gid: m.value_gid[i],
            kind,
            value: m.value[i],
        });
    }
    Ok(())
}

/// Open the outbound stream of `run` to a peer at `addr`: connects (retrying until
/// `connect_within`), then forwards everything sent on the returned channel. A
/// failure is reported on `inbound` as the peer's end, so the run stops instead of
/// waiting.
pub fn open_outbound(
    run: &str,
    my_rank: u32,
    peer_rank: u32,
    addr: String,
    connect_within: Duration,
    inbound: mpsc::Sender<Inbound>,
) -> tokio::sync::mpsc::Sender<EpochMessage> {
    let (tx, rx) = tokio::sync::mpsc::channel::<EpochMessage>(16);
    let run = run.to_string();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + connect_within;
        let channel = loop {
            let endpoint = match tonic::transport::Endpoint::from_shared(addr.clone()) {
                Ok(e) => e
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(5))
                    .keep_alive_timeout(Duration::from_secs(10)),
                Err(e) => {
                    let _ = inbound.send(Inbound::Ended(peer_rank, Some(format!("peer address {addr}: {e}"))));
                    return;
                }
            };
            match endpoint.connect().await {
                Ok(c) => break c,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    let _ = inbound.send(Inbound::Ended(peer_rank, Some(format!("cannot reach peer at {addr}: {e}"))));
                    return;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let mut client = NodeServiceClient::new(channel);
        let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        if let (Ok(r), Ok(k)) = (run.parse(), my_rank.to_string().parse()) {
            req.metadata_mut().insert(RUN_HEADER, r);
            req.metadata_mut().insert(RANK_HEADER, k);
        }
        if let Err(status) = client.exchange(req).await {
            let _ = inbound
                .send(Inbound::Ended(peer_rank, Some(format!("stream to peer at {addr}: {}", status.message()))));
        }
    });
    tx
}

/// The kernel's [`Transport`] over gRPC streams.
pub struct GrpcTransport {
    run: String,
    rank: u32,
    /// Outbound stream per peer rank (None for this node).
    peers: Vec<Option<tokio::sync::mpsc::Sender<EpochMessage>>>,
    inbound: mpsc::Receiver<Inbound>,
    queues: Vec<VecDeque<EpochMessage>>,
    ended: Vec<Option<String>>,
    seq: u64,
    timeout: Duration,
    metrics: NodeMetrics,
}

impl GrpcTransport {
    /// A transport for `run` at `rank` with `peers[r]` the outbound stream to rank r.
    pub fn new(
        run: &str,
        rank: u32,
        peers: Vec<Option<tokio::sync::mpsc::Sender<EpochMessage>>>,
        inbound: mpsc::Receiver<Inbound>,
        timeout: Duration,
        metrics: NodeMetrics,
    ) -> GrpcTransport {
        let n = peers.len();
        GrpcTransport {
            run: run.to_string(),
            rank,
            peers,
            inbound,
            queues: (0..n).map(|_| VecDeque::new()).collect(),
            ended: vec![None; n],
            seq: 0,
            timeout,
            metrics,
        }
    }

    fn take(&mut self, m: Inbound) -> Result<(), String> {
        match m {
            Inbound::Message(r, msg) if (r as usize) < self.queues.len() && r != self.rank => {
                self.metrics
                    .exchange_bytes
                    .with_label_values(&["received"])
                    .inc_by(prost::Message::encoded_len(&msg) as u64);
                self.queues[r as usize].push_back(msg);
                Ok(())
            }
            Inbound::Message(r, _) => Err(format!("a message from rank {r}, which is not a peer of this run")),
            Inbound::Ended(r, why) => {
                if let Some(slot) = self.ended.get_mut(r as usize) {
                    *slot = Some(why.unwrap_or_else(|| "ended its stream".into()));
                }
                Ok(())
            }
        }
    }
}

impl Transport for GrpcTransport {
    fn exchange(&mut self, _epoch: u64, local: &Exchange, stop: bool, into: &mut Exchange) -> Result<bool, String> {
        let start = Instant::now();
        let msg = encode(&self.run, self.rank, self.seq, local, stop);
        let bytes = prost::Message::encoded_len(&msg) as u64;
        for (r, peer) in self.peers.iter().enumerate() {
            if let Some(tx) = peer {
                if tx.blocking_send(msg.clone()).is_err() {
                    let why = self.ended[r].clone().unwrap_or_else(|| "stream closed".into());
                    return Err(format!("rank {r}: {why}"));
                }
                self.metrics.exchange_bytes.with_label_values(&["sent"]).inc_by(bytes);
            }
        }
        let wait_start = Instant::now();
        let mut any_stop = stop;
        for r in 0..self.peers.len() {
            if r as u32 == self.rank {
                continue;
            }
            while self.queues[r].is_empty() {
                if let Some(why) = &self.ended[r] {
                    return Err(format!("rank {r} stopped sending at epoch {}: {why}", self.seq));
                }
                match self.inbound.recv_timeout(self.timeout) {
                    Ok(m) => self.take(m)?,
                    Err(_) => {
                        return Err(format!(
                            "rank {r} sent nothing for {} s at epoch {}",
                            self.timeout.as_secs(),
                            self.seq
                        ))
                    }
                }
            }
            let m = self.queues[r].pop_front().unwrap_or_default();
            if m.epoch != self.seq {
                return Err(format!("rank {r} is at epoch {} but this node is at {}", m.epoch, self.seq));
            }
            any_stop |= m.stop;
            decode(&m, into)?;
        }
        self.metrics.exchange_wait.observe(wait_start.elapsed().as_secs_f64());
        self.metrics.epoch_exchange.observe(start.elapsed().as_secs_f64());
        self.seq += 1;
        Ok(any_stop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_messages_round_trip() {
        let x = Exchange {
            spikes: vec![Spike { step: 100, gid: 3 }, Spike { step: 101, gid: 1 }],
            values: vec![StateValue { step: 100, gid: 7, kind: ValueKind::Sic, value: 0.25 }],
        };
        let m = encode("exp", 1, 9, &x, true);
        assert_eq!((m.first_step, m.stop, m.epoch), (100, true, 9));
        let mut back = Exchange::default();
        decode(&m, &mut back).unwrap();
        assert_eq!(back, x);
        let mut bad = m.clone();
        bad.spike_step.pop();
        assert!(decode(&bad, &mut Exchange::default()).unwrap_err().contains("spike ids"));
    }
}
