//! `neuropil bench --exchange`: what one epoch's exchange costs between two
//! threads of this machine, from bare sockets up to the node's gRPC transport.
//! Each layer is measured the same way: both sides send one message and then
//! busy-poll for the other's, `epochs` times; the figure is wall time per epoch
//! (the slower side). It bounds what a cluster of co-located nodes can reach: a
//! network whose smallest delay is one 0.1 ms step exchanges 10,000 times per
//! biological second.

use crate::telemetry::ExchangeMetrics;
use crate::tls::Tls;
use crate::transport::{ExchangePort, GrpcTransport, Peer};
use anyhow::{anyhow, Context as _, Result};
use bytes::Bytes;
use neuropil_sim::embedded::Transport;
use neuropil_sim::network::Exchange;
use neuropil_sim::Spike;
use std::io::{Read, Write};
use std::task::Poll;
use std::time::{Duration, Instant};

/// Bytes of the bare-socket and HTTP/2 messages (about an empty epoch message).
const MESSAGE: usize = 64;

/// Run `side(0)` and `side(1)` on two threads; seconds per epoch of the slower.
fn pair<F>(epochs: usize, side: F) -> Result<f64>
where
    F: Fn(usize) -> Result<f64> + Sync,
{
    let times = std::thread::scope(|s| {
        let a = s.spawn(|| side(0));
        let b = s.spawn(|| side(1));
        [a.join(), b.join()]
    });
    let mut worst: f64 = 0.0;
    for t in times {
        worst = worst.max(t.map_err(|_| anyhow!("a side panicked"))??);
    }
    Ok(worst / epochs as f64)
}

/// Send a message, then spin until the other side's has been read, `epochs` times.
fn bare<S: Read + Write>(mut s: S, epochs: usize) -> Result<f64> {
    let msg = [7u8; MESSAGE];
    let mut buf = [0u8; MESSAGE];
    let start = Instant::now();
    for _ in 0..epochs {
        s.write_all(&msg)?;
        let mut got = 0;
        while got < MESSAGE {
            match s.read(&mut buf[got..]) {
                Ok(0) => return Err(anyhow!("the other side closed")),
                Ok(k) => got += k,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::hint::spin_loop(),
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(start.elapsed().as_secs_f64())
}

fn tcp(epochs: usize) -> Result<f64> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let client = std::net::TcpStream::connect(addr)?;
    let (server, _) = listener.accept()?;
    let sides = [client, server];
    pair(epochs, |i| {
        let s = sides[i].try_clone()?;
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        bare(s, epochs)
    })
}

fn unix(epochs: usize) -> Result<f64> {
    let (a, b) = std::os::unix::net::UnixStream::pair()?;
    let sides = [a, b];
    pair(epochs, |i| {
        let s = sides[i].try_clone()?;
        s.set_nonblocking(true)?;
        bare(s, epochs)
    })
}

/// One HTTP/2 stream (h2, the layer under tonic) over a Unix socket pair; each
/// side drives its connection from its own single-threaded runtime.
fn http2(epochs: usize) -> Result<f64> {
    let (a, b) = std::os::unix::net::UnixStream::pair()?;
    let sides = [a, b];
    pair(epochs, |i| {
        let std_stream = sides[i].try_clone()?;
        std_stream.set_nonblocking(true)?;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let msg = Bytes::from(vec![7u8; MESSAGE]);
        let (mut send, mut recv) = rt.block_on(async {
            let io = tokio::net::UnixStream::from_std(std_stream)?;
            if i == 0 {
                let (client, conn) = h2::client::handshake(io).await?;
                tokio::spawn(conn);
                let mut client = client.ready().await?;
                let req = http::Request::builder().method("POST").uri("http://floor/exchange").body(())?;
                let (response, mut send) = client.send_request(req, false)?;
                // The first message opens the stream on the other side.
                send.send_data(msg.clone(), false)?;
                Ok::<_, anyhow::Error>((send, response.await?.into_body()))
            } else {
                let mut conn = h2::server::handshake(io).await?;
                let (req, mut respond) = conn.accept().await.ok_or_else(|| anyhow!("no stream"))??;
                tokio::spawn(async move { while conn.accept().await.is_some() {} });
                let send = respond.send_response(http::Response::new(()), false)?;
                Ok((send, req.into_body()))
            }
        })?;
        let start = Instant::now();
        for _ in 0..epochs {
            rt.block_on(async {
                send.send_data(msg.clone(), false)?;
                tokio::task::yield_now().await;
                loop {
                    match std::future::poll_fn(|cx| Poll::Ready(recv.poll_data(cx))).await {
                        Poll::Ready(Some(Ok(b))) => {
                            let _ = recv.flow_control().release_capacity(b.len());
                            return Ok::<_, anyhow::Error>(());
                        }
                        Poll::Ready(Some(Err(e))) => return Err(e.into()),
                        Poll::Ready(None) => return Err(anyhow!("the other side closed")),
                        Poll::Pending => tokio::task::yield_now().await,
                    }
                }
            })?;
        }
        Ok(start.elapsed().as_secs_f64())
    })
}

/// The node's transport (gRPC bidirectional stream), one spike per message, with
/// an emulated one-way link latency (zero: none).
fn grpc(epochs: usize, socket: bool, latency: Duration) -> Result<f64> {
    let dir = std::env::temp_dir().join(format!("neuropil-floor-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("{}", dir.display()))?;
    let mut ports = Vec::new();
    let mut peers = Vec::new();
    for r in 0..2 {
        let mut port = ExchangePort::bind("127.0.0.1:0".parse()?)?;
        let path = dir.join(format!("rank-{r}.sock"));
        if socket {
            port.bind_socket(&path).map_err(|e| anyhow!(e))?;
        }
        peers.push(Peer {
            node: String::new(),
            addr: format!("http://{}", port.local_addr()?),
            socket: socket.then_some(path),
        });
        ports.push(port);
    }
    let t = pair(epochs, |r| {
        let metrics = ExchangeMetrics::new()?;
        let timeout = Duration::from_secs(30);
        // The benchmark pays for the token check as a cluster run does.
        let token = crate::auth::ClusterToken::new("floor-benchmark-token", "floor")?;
        let mut tr =
            GrpcTransport::start("floor", r as u32, &peers, &ports[r], &Tls::default(), &token, timeout, metrics)
                .map_err(|e| anyhow!(e))?;
        tr.emulate_latency(latency);
        let mut local = Exchange::default();
        let mut into = Exchange::default();
        // One untimed epoch opens the streams.
        let mut start = Instant::now();
        for e in 0..=epochs {
            if e == 1 {
                start = Instant::now();
            }
            local.spikes = vec![Spike { step: e as u64, gid: r as u32 }];
            tr.send(&local, false).map_err(|e| anyhow!(e))?;
            into.spikes.clear();
            tr.receive(&mut into).map_err(|e| anyhow!(e))?;
        }
        let t = start.elapsed().as_secs_f64();
        tr.finish();
        Ok(t)
    });
    drop(ports);
    let _ = std::fs::remove_dir_all(&dir);
    t
}

/// Measure every layer and print a table.
pub fn run(epochs: usize) -> Result<()> {
    let epochs = epochs.max(1);
    println!("one message each way per epoch between two threads, {epochs} epochs, busy polling:");
    let none = Duration::ZERO;
    let rows: [(&str, &dyn Fn() -> Result<f64>); 5] = [
        ("TCP loopback, bare sockets", &|| tcp(epochs)),
        ("Unix socket, bare", &|| unix(epochs)),
        ("HTTP/2 (h2) over a Unix socket", &|| http2(epochs)),
        ("gRPC exchange (node transport), TCP", &|| grpc(epochs, false, none)),
        ("gRPC exchange (node transport), Unix socket", &|| grpc(epochs, true, none)),
    ];
    let mut grpc_tcp = 0.0;
    for (name, f) in rows {
        let t = f().with_context(|| name.to_string())?;
        println!("  {name:<46} {:>7.2} µs per epoch", t * 1e6);
        if name.ends_with("TCP") {
            grpc_tcp = t;
        }
    }
    println!(
        "with one-step (0.1 ms) epochs a node exchanges 10,000 times per biological second: \
         over TCP the gRPC exchange alone costs {:.0} ms of it (before any cache misses a run adds)",
        grpc_tcp * 1e4 * 1e3
    );
    // The emulated latency of runs across hosts (`--emulate-link-latency-us`):
    // both sides send at once, so an epoch should take the latency plus what the
    // exchange costs without it.
    println!("emulated one-way link latency L (gRPC, TCP): per epoch, and above the exchange without it");
    for us in [50u64, 100, 200, 500] {
        let t = grpc(epochs, false, Duration::from_micros(us)).with_context(|| format!("latency {us} µs"))?;
        let above = (t - grpc_tcp) * 1e6;
        println!("  L = {us:>3} µs  {:>7.2} µs per epoch, {above:>7.2} µs above ({:.2} L)", t * 1e6, above / us as f64);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No message is taken in before its emulated latency has passed (a lower
    /// bound, whatever the machine's speed).
    #[test]
    fn an_emulated_latency_holds_every_message() {
        let (epochs, latency) = (5, Duration::from_millis(4));
        let per_epoch = grpc(epochs, false, latency).unwrap();
        assert!(per_epoch >= latency.as_secs_f64(), "{per_epoch} s per epoch with a latency of {latency:?}");
    }
}
