//! Client commands against a control address: submit, status, cancel, spikes.

use anyhow::{bail, Context as _, Result};
use neuropil_proto::v1::experiment_service_client::ExperimentServiceClient;
use neuropil_proto::v1::{
    CancelRequest, ExperimentInfo, ExperimentState, GetRequest, GetResultsRequest, ListRequest, StreamSpikesRequest,
    SubmitRequest, WatchRequest,
};
use std::io::Write as _;
use std::path::Path;
use tonic::transport::Channel;

/// Where the control is and how to authenticate.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://host:port`.
    pub control: String,
    /// Bearer token, if the control requires one.
    pub token: Option<String>,
    /// CA for `https` control addresses.
    pub tls: neuropil_cluster::tls::Tls,
    /// How long to keep trying a control that refuses connections.
    pub connect_timeout: std::time::Duration,
}

type Client = ExperimentServiceClient<tonic::service::interceptor::InterceptedService<Channel, AddToken>>;

/// Adds the bearer token to every request.
pub struct AddToken(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for AddToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

async fn connect(t: &Target) -> Result<Client> {
    let endpoint = t.tls.endpoint(&t.control).with_context(|| format!("--control {}", t.control))?;
    // A control just started (the README's cluster, a pod restarting) may not
    // listen yet: try again for a while, saying so.
    let start = std::time::Instant::now();
    let mut said = false;
    let channel = loop {
        match endpoint.connect().await {
            Ok(c) => break c,
            Err(e) if start.elapsed() < t.connect_timeout => {
                if !said && start.elapsed() > std::time::Duration::from_secs(1) {
                    eprintln!("waiting for the control at {} ({e})", t.control);
                    said = true;
                }
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "--control {}: cannot connect (tried for {:.0} s; --connect-timeout-s)",
                    t.control,
                    t.connect_timeout.as_secs_f64()
                )))
            }
        }
    };
    let token = match &t.token {
        Some(tok) => Some(format!("Bearer {tok}").parse().context("--token-file: the token is not printable ASCII")?),
        None => None,
    };
    Ok(ExperimentServiceClient::with_interceptor(channel, AddToken(token))
        .max_decoding_message_size(neuropil_cluster::MAX_REQUEST_BYTES)
        .max_encoding_message_size(neuropil_cluster::MAX_REQUEST_BYTES))
}

fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}

fn state_name(i: i32) -> &'static str {
    match ExperimentState::try_from(i).unwrap_or(ExperimentState::Unspecified) {
        ExperimentState::Unspecified => "unknown",
        ExperimentState::Pending => "pending",
        ExperimentState::Running => "running",
        ExperimentState::Recovering => "recovering",
        ExperimentState::Succeeded => "succeeded",
        ExperimentState::Failed => "failed",
        ExperimentState::Cancelled => "cancelled",
    }
}

fn is_terminal(i: i32) -> bool {
    matches!(
        ExperimentState::try_from(i),
        Ok(ExperimentState::Succeeded) | Ok(ExperimentState::Failed) | Ok(ExperimentState::Cancelled)
    )
}

/// `neuropil submit`: send the file; with `wait`, follow it to the end. Returns
/// whether it succeeded (always true without `wait`).
/// How to submit: overrides, shards, placement, and whether to follow the run.
pub struct Submission {
    /// `path=value` overrides.
    pub set: Vec<String>,
    /// Shards (0: one per node thread).
    pub shards: u32,
    /// `WHAT=NODE` placements (`cerebellum.NAME` or `hardware`).
    pub place: Vec<String>,
    /// Follow the run to its end.
    pub wait: bool,
    /// No progress bar.
    pub quiet: bool,
}

/// Submit `file`; with `wait`, follow it and say whether it succeeded.
pub async fn submit(t: &Target, file: &Path, how: &Submission) -> Result<bool> {
    let Submission { set, shards, place, wait, quiet } = how;
    let (shards, wait, quiet) = (*shards, *wait, *quiet);
    let mut placement = std::collections::HashMap::new();
    for p in place {
        let Some((what, node)) = p.split_once('=') else {
            bail!("--place {p:?}: expected WHAT=NODE, e.g. --place cerebellum.cb=node-2 or --place hardware=node-1");
        };
        placement.insert(what.to_string(), node.to_string());
    }
    let meta = std::fs::metadata(file).with_context(|| format!("{}", file.display()))?;
    if meta.len() > neuropil_cluster::MAX_DOCUMENT_BYTES as u64 {
        bail!(
            "{}: {} bytes; an experiment file has at most {}",
            file.display(),
            meta.len(),
            neuropil_cluster::MAX_DOCUMENT_BYTES
        );
    }
    let document = std::fs::read_to_string(file).with_context(|| format!("{}", file.display()))?;
    let format = match file.extension().and_then(|e| e.to_str()) {
        Some("json") => "json",
        Some("yaml") | Some("yml") => "yaml",
        _ => "toml",
    };
    let mut c = connect(t).await?;
    let resp = c
        .submit(SubmitRequest { document, format: format.into(), set: set.to_vec(), shards, placement })
        .await
        .map_err(status_error)?
        .into_inner();
    println!("{}", resp.id);
    if !wait {
        return Ok(true);
    }
    let mut stream = c.watch_progress(WatchRequest { id: resp.id.clone() }).await.map_err(status_error)?.into_inner();
    let mut last: Option<ExperimentInfo> = None;
    let bar = neuropil_runtime::progress::ProgressBar::new(0.1, !quiet);
    while let Some(info) = stream.message().await.map_err(status_error)? {
        if info.duration_ms > 0.0 {
            let steps = (info.bio_time_ms * 10.0) as u64;
            bar.update(steps, (info.duration_ms * 10.0) as u64, info.spikes);
        }
        let end = is_terminal(info.state);
        last = Some(info);
        if end {
            break;
        }
    }
    let Some(info) = last else { bail!("the control ended the progress stream without a final state") };
    print_info(&info);
    Ok(info.state == ExperimentState::Succeeded as i32)
}

fn print_info(i: &ExperimentInfo) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "id          {}", i.id);
    let _ = writeln!(out, "name        {}", i.name);
    let _ = writeln!(
        out,
        "state       {}{}",
        state_name(i.state),
        if i.message.is_empty() { String::new() } else { format!(" ({})", i.message) }
    );
    let _ = writeln!(
        out,
        "progress    {:.1} / {:.1} ms, RTF {:.2}, {} spikes",
        i.bio_time_ms, i.duration_ms, i.rtf, i.spikes
    );
    let _ = writeln!(
        out,
        "network     {} neurons, {} synapses, {} shards on {}",
        i.neurons,
        i.synapses,
        i.shards,
        i.nodes.join(", ")
    );
    for p in &i.populations {
        let _ = writeln!(out, "  {:<12} {:>9} spikes {:>8.3} Hz", p.population, p.spikes, p.rate_hz);
    }
    if !i.spike_hash.is_empty() {
        let _ = writeln!(out, "spike_hash  {}", i.spike_hash);
    }
    if !i.output_dir.is_empty() {
        let _ = writeln!(out, "results     {}", i.output_dir);
    }
    if i.checkpoint_ms > 0.0 || i.recoveries > 0 {
        let _ = writeln!(out, "checkpoint  {:.1} ms, {} recoveries", i.checkpoint_ms, i.recoveries);
    }
    if !i.events.is_empty() {
        let _ = writeln!(out, "events");
        let first = i.events[0].unix_ms;
        for e in &i.events {
            let _ = writeln!(out, "  {:>+9.3} s  {}", e.unix_ms.saturating_sub(first) as f64 / 1000.0, e.what);
        }
    }
}

/// `neuropil status [ID]`.
pub async fn status(t: &Target, id: Option<&str>, json: bool) -> Result<()> {
    let mut c = connect(t).await?;
    let infos = match id {
        Some(id) => vec![c.get(GetRequest { id: id.into() }).await.map_err(status_error)?.into_inner()],
        None => c.list(ListRequest {}).await.map_err(status_error)?.into_inner().experiments,
    };
    if json {
        for i in &infos {
            println!("{}", info_json(i));
        }
    } else if id.is_some() {
        infos.iter().for_each(print_info);
    } else {
        println!("{:<24} {:<22} {:<10} {:>10} {:>10}", "ID", "NAME", "STATE", "BIO_MS", "SPIKES");
        for i in &infos {
            println!(
                "{:<24} {:<22} {:<10} {:>10.1} {:>10}",
                i.id,
                i.name,
                state_name(i.state),
                i.bio_time_ms,
                i.spikes
            );
        }
    }
    Ok(())
}

/// One experiment as a JSON line (for scripts and tests).
pub fn info_json(i: &ExperimentInfo) -> String {
    serde_json::json!({
        "id": i.id, "name": i.name, "state": state_name(i.state), "message": i.message,
        "bio_time_ms": i.bio_time_ms, "duration_ms": i.duration_ms, "rtf": i.rtf, "spikes": i.spikes,
        "neurons": i.neurons, "synapses": i.synapses, "shards": i.shards, "nodes": i.nodes,
        "spike_hash": i.spike_hash, "output_dir": i.output_dir,
        "checkpoint_ms": i.checkpoint_ms, "recoveries": i.recoveries,
        "events": i.events.iter().map(|e| serde_json::json!({"unix_ms": e.unix_ms, "what": e.what}))
            .collect::<Vec<_>>(),
        "actors": i.actors.iter().map(|a| serde_json::json!({
            "kind": a.kind, "name": a.name, "node": a.node, "state": a.state,
        })).collect::<Vec<_>>(),
    })
    .to_string()
}

/// `neuropil cancel ID`.
pub async fn cancel(t: &Target, id: &str) -> Result<()> {
    let mut c = connect(t).await?;
    let info = c.cancel(CancelRequest { id: id.into() }).await.map_err(status_error)?.into_inner();
    println!("cancelling {} (was {})", info.id, state_name(info.state));
    Ok(())
}

/// `neuropil checkpoint ID`.
pub async fn checkpoint(t: &Target, id: &str) -> Result<()> {
    let mut c = connect(t).await?;
    let req = neuropil_proto::v1::CheckpointRequest { id: id.into() };
    let info = c.checkpoint(req).await.map_err(status_error)?.into_inner();
    println!(
        "checkpoint of {} asked for at {:.1} ms (the last complete one: {:.1} ms)",
        info.id, info.bio_time_ms, info.checkpoint_ms
    );
    Ok(())
}

/// `neuropil spikes ID`: print `time_ms population neuron` lines while the run goes.
pub async fn spikes(t: &Target, id: &str, populations: &[String]) -> Result<()> {
    let mut c = connect(t).await?;
    let mut stream = c
        .stream_spikes(StreamSpikesRequest { id: id.into(), populations: populations.to_vec() })
        .await
        .map_err(status_error)?
        .into_inner();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(out, "time_ms\tpopulation\tneuron")?;
    while let Some(b) = stream.message().await.map_err(status_error)? {
        for i in 0..b.time_ms.len() {
            let name = b.populations.get(b.population[i] as usize).map_or("?", |s| s.as_str());
            writeln!(out, "{:.1}\t{}\t{}", b.time_ms[i], name, b.neuron[i])?;
        }
        out.flush()?;
    }
    Ok(())
}

/// Write the result files of a finished run into `out` (`neuropil results`).
pub async fn results(t: &Target, id: &str, out: &Path, files: &[String]) -> Result<()> {
    let mut c = connect(t).await?;
    let mut stream = c
        .get_results(GetResultsRequest { id: id.into(), files: files.to_vec() })
        .await
        .map_err(status_error)?
        .into_inner();
    std::fs::create_dir_all(out).with_context(|| format!("--out {}", out.display()))?;
    // (name, file, bytes written, size announced)
    let mut current: Option<(String, std::fs::File, u64, u64)> = None;
    let complete = |c: &Option<(String, std::fs::File, u64, u64)>| match c {
        Some((name, _, at, size)) if at != size => bail!("{name}: the stream ended at byte {at} of {size}"),
        _ => Ok(()),
    };
    let mut written = Vec::new();
    while let Some(chunk) = stream.message().await.map_err(status_error)? {
        let name = Path::new(&chunk.file);
        if name.file_name().map(|n| n != name.as_os_str()).unwrap_or(true) {
            bail!("the control sent a file named {:?}, which is not a plain file name", chunk.file);
        }
        if current.as_ref().map(|c| &c.0) != Some(&chunk.file) {
            complete(&current)?;
            let path = out.join(&chunk.file);
            let f = std::fs::File::create(&path).with_context(|| format!("{}", path.display()))?;
            written.push(path);
            current = Some((chunk.file.clone(), f, 0, chunk.size));
        }
        let (name, f, at, _) = current.as_mut().expect("set above");
        anyhow::ensure!(*at == chunk.offset, "{name}: a chunk at byte {} where {at} was next", chunk.offset);
        f.write_all(&chunk.data)?;
        *at += chunk.data.len() as u64;
    }
    complete(&current)?;
    for p in written {
        println!("wrote {}", p.display());
    }
    Ok(())
}
