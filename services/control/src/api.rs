//! The ExperimentService as every replica answers it: Submit, Get, List, Cancel,
//! Checkpoint, WatchProgress, StreamSpikes (proxied from the recording node) and
//! GetResults (the files of a finished run, from this replica's data directory).

use super::*;

#[derive(Clone)]
pub(crate) struct ControlSvc(pub(crate) Arc<Control>);

type InfoStream = tokio_stream::wrappers::ReceiverStream<Result<ExperimentInfo, Status>>;
type SpikeStream = tokio_stream::wrappers::ReceiverStream<Result<SpikeBatch, Status>>;
type ChunkStream = tokio_stream::wrappers::ReceiverStream<Result<ResultChunk, Status>>;

/// The most bytes of a file one ResultChunk carries.
const CHUNK_BYTES: usize = 1 << 20;

#[tonic::async_trait]
impl ExperimentService for ControlSvc {
    async fn submit(&self, req: Request<SubmitRequest>) -> Result<Response<SubmitResponse>, Status> {
        let r = self.0.submit(req.into_inner()).await;
        self.0.count("Submit", &r);
        r.map(Response::new).map_err(Status::from)
    }

    async fn get(&self, req: Request<GetRequest>) -> Result<Response<ExperimentInfo>, Status> {
        let r = self.0.record(&req.into_inner().id).await.map(|r| r.to_proto());
        self.0.count("Get", &r);
        r.map(Response::new).map_err(Status::from)
    }

    async fn list(&self, _req: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let mut c = self.0.etcd.clone();
        let r = etcd::list_json::<ExperimentRecord>(&mut c, &format!("{PREFIX}experiments/"))
            .await
            .map_err(ControlError::etcd);
        let r = r.map(|mut v| {
            v.sort_by(|a, b| (a.submitted_unix_ms, &a.id).cmp(&(b.submitted_unix_ms, &b.id)));
            ListResponse { experiments: v.iter().map(|r| r.to_proto()).collect() }
        });
        self.0.count("List", &r);
        r.map(Response::new).map_err(Status::from)
    }

    async fn cancel(&self, req: Request<CancelRequest>) -> Result<Response<ExperimentInfo>, Status> {
        let id = req.into_inner().id;
        let r = async {
            let rec = self.0.record(&id).await?;
            if rec.state.is_terminal() {
                return Err(ControlError::WrongState(format!("id: experiment {id} has already {}", rec.state.name())));
            }
            let mut c = self.0.etcd.clone();
            c.put(cancel_key(&id), now_unix_ms().to_string(), None).await.map_err(ControlError::etcd)?;
            Ok(rec.to_proto())
        }
        .await;
        self.0.count("Cancel", &r);
        r.map(Response::new).map_err(Status::from)
    }

    async fn checkpoint(&self, req: Request<CheckpointRequest>) -> Result<Response<ExperimentInfo>, Status> {
        let id = req.into_inner().id;
        let r = async {
            let rec = self.0.record(&id).await?;
            if !matches!(rec.state, State::Running | State::Recovering) {
                return Err(ControlError::WrongState(format!(
                    "id: experiment {id} is {}; only a running experiment can be checkpointed",
                    rec.state.name()
                )));
            }
            let mut c = self.0.etcd.clone();
            let key = neuropil_cluster::checkpoint_request_key(&id);
            c.put(key, now_unix_ms().to_string(), None).await.map_err(ControlError::etcd)?;
            Ok(rec.to_proto())
        }
        .await;
        self.0.count("Checkpoint", &r);
        r.map(Response::new).map_err(Status::from)
    }

    type WatchProgressStream = InfoStream;

    async fn watch_progress(&self, req: Request<WatchRequest>) -> Result<Response<InfoStream>, Status> {
        let id = req.into_inner().id;
        let first = self.0.record(&id).await;
        self.0.count("WatchProgress", &first);
        let first = first?;
        let mut c = self.0.etcd.clone();
        let mut watch = c.watch(experiment_key(&id), None).await.map_err(ControlError::etcd)?;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let terminal = first.state.is_terminal();
            if tx.send(Ok(first.to_proto())).await.is_err() || terminal {
                return;
            }
            while let Ok(Some(resp)) = watch.message().await {
                for ev in resp.events() {
                    let (EventType::Put, Some(kv)) = (ev.event_type(), ev.kv()) else { continue };
                    let Ok(rec) = serde_json::from_slice::<ExperimentRecord>(kv.value()) else { continue };
                    if tx.send(Ok(rec.to_proto())).await.is_err() || rec.state.is_terminal() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    type StreamSpikesStream = SpikeStream;

    async fn stream_spikes(&self, req: Request<StreamSpikesRequest>) -> Result<Response<SpikeStream>, Status> {
        let req = req.into_inner();
        let r = self.0.spike_source(&req).await;
        self.0.count("StreamSpikes", &r);
        let (addr, id, wanted) = r?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let (tls, token) = (self.0.node_tls.clone(), self.0.cluster_token.clone());
        tokio::spawn(async move {
            let channel = match tls.endpoint(&addr) {
                Ok(e) => e.connect().await.map_err(anyhow::Error::from),
                Err(e) => Err(e),
            };
            let mut client = match channel {
                Ok(c) => NodeServiceClient::new(c).max_decoding_message_size(usize::MAX),
                Err(e) => {
                    let _ = tx
                        .send(Err(ControlError::NodeUnreachable(format!("recording node at {addr}: {e}")).into()))
                        .await;
                    return;
                }
            };
            let mut events = match client.watch_run(token.request(WatchRunRequest { run: id })).await {
                Ok(s) => s.into_inner(),
                Err(s) => {
                    let _ = tx.send(Err(s)).await;
                    return;
                }
            };
            while let Ok(Some(ev)) = events.message().await {
                match ev.event {
                    Some(run_event::Event::Spikes(b)) => {
                        let b = filter_batch(b, &wanted);
                        if !b.time_ms.is_empty() && tx.send(Ok(b)).await.is_err() {
                            return;
                        }
                    }
                    Some(run_event::Event::Result(_)) | Some(run_event::Event::Error(_)) => return,
                    _ => {}
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    type GetResultsStream = ChunkStream;

    async fn get_results(&self, req: Request<GetResultsRequest>) -> Result<Response<ChunkStream>, Status> {
        let r = self.0.result_files(req.into_inner()).await;
        self.0.count("GetResults", &r);
        let files = r?;
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            for (name, path) in files {
                if let Err(e) = send_file(&name, &path, CHUNK_BYTES, &tx) {
                    let _ = tx.blocking_send(Err(Status::internal(format!("{}: {e}", path.display()))));
                    return;
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}

/// One file as chunks (a file of no bytes: one empty chunk). Stops quietly when
/// the caller has gone.
fn send_file(
    name: &str,
    path: &std::path::Path,
    chunk_bytes: usize,
    tx: &tokio::sync::mpsc::Sender<Result<ResultChunk, Status>>,
) -> std::io::Result<()> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    let size = f.metadata()?.len();
    let mut f = f.take(size); // a file that grows meanwhile: what its size said
    let mut offset = 0u64;
    let mut buf = vec![0u8; chunk_bytes];
    loop {
        let n = read_full(&mut f, &mut buf)?;
        if n == 0 && offset > 0 {
            return Ok(());
        }
        let chunk = ResultChunk { file: name.to_string(), size, offset, data: buf[..n].to_vec() };
        if tx.blocking_send(Ok(chunk)).is_err() || n == 0 {
            return Ok(());
        }
        offset += n as u64;
    }
}

/// Fill `buf` unless the reader ends first; the bytes read.
fn read_full(r: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl Control {
    /// The result files asked for: plain files of `<data_dir>/<id>/`, by name.
    pub(crate) async fn result_files(
        &self,
        req: GetResultsRequest,
    ) -> Result<Vec<(String, std::path::PathBuf)>, ControlError> {
        if req.files.len() > 64 {
            return Err(ControlError::InvalidArgument(format!(
                "files: {} names is more than the 64 a request may give; leave it empty for every file",
                req.files.len()
            )));
        }
        let rec = self.record(&req.id).await?;
        if rec.state != State::Succeeded {
            return Err(ControlError::WrongState(format!(
                "id: experiment {} is {}; results exist once it has succeeded",
                req.id,
                rec.state.name()
            )));
        }
        let dir = self.data_dir.join(&rec.id);
        let listing = std::fs::read_dir(&dir).map_err(|e| {
            ControlError::WrongState(format!(
                "id: the results of {} are not in this replica's data directory ({}: {e}); they were written to \
                 {} by the replica that collected the run: give the replicas one data volume, or ask that one",
                rec.id,
                dir.display(),
                rec.output_dir
            ))
        })?;
        let mut present: Vec<String> = listing
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        present.sort();
        let names = if req.files.is_empty() {
            present
        } else {
            for f in &req.files {
                if !present.contains(f) {
                    let f: String = f.chars().take(128).collect();
                    return Err(ControlError::InvalidArgument(format!(
                        "files: no {f:?} in the results of {}; there are {}",
                        rec.id,
                        present.join(", ")
                    )));
                }
            }
            let mut seen = std::collections::BTreeSet::new();
            req.files.into_iter().filter(|f| seen.insert(f.clone())).collect() // each file once
        };
        Ok(names.into_iter().map(|n| (n.clone(), dir.join(n))).collect())
    }

    /// The recording node of a running experiment and the population indexes wanted.
    pub(crate) async fn spike_source(
        &self,
        req: &StreamSpikesRequest,
    ) -> Result<(String, String, Vec<bool>), ControlError> {
        // Wait while the experiment is queued.
        loop {
            let rec = self.record(&req.id).await?;
            if rec.state.is_terminal() {
                return Err(ControlError::WrongState(format!(
                    "id: experiment {} has already {}; its spikes are in {}/spikes.parquet",
                    req.id,
                    rec.state.name(),
                    rec.output_dir
                )));
            }
            let mut c = self.etcd.clone();
            if let Some(a) =
                etcd::get_json::<Assignment>(&mut c, &run_key(&req.id)).await.map_err(ControlError::etcd)?
            {
                let exp = neuropil_spec::parse(
                    &a.document,
                    neuropil_cluster::format_of(&a.format).map_err(ControlError::Internal)?,
                    &a.set,
                )
                .map_err(|e| ControlError::Internal(e.to_string()))?;
                let names: Vec<&str> = exp.populations.iter().map(|p| p.name.as_str()).collect();
                let mut wanted = vec![req.populations.is_empty(); names.len()];
                for p in &req.populations {
                    let i = names.iter().position(|n| n == p).ok_or_else(|| {
                        ControlError::InvalidArgument(format!(
                            "populations: no population {p:?}; the experiment has {}",
                            names.join(", ")
                        ))
                    })?;
                    wanted[i] = true;
                }
                let addr = a.members.first().map(|m| m.addr.clone()).unwrap_or_default();
                return Ok((addr, a.run_id(), wanted));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub(crate) fn filter_batch(b: SpikeBatch, wanted: &[bool]) -> SpikeBatch {
    let mut out = SpikeBatch { populations: b.populations, ..Default::default() };
    for i in 0..b.population.len() {
        if wanted.get(b.population[i] as usize).copied().unwrap_or(false) {
            out.population.push(b.population[i]);
            out.neuron.push(b.neuron[i]);
            out.time_ms.push(b.time_ms[i]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks_of(bytes: &[u8], chunk: usize) -> Vec<ResultChunk> {
        let dir = std::env::temp_dir().join(format!("neuropil-chunks-{}-{}", std::process::id(), bytes.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.bin");
        std::fs::write(&path, bytes).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        send_file("f.bin", &path, chunk, &tx).unwrap();
        drop(tx);
        let _ = std::fs::remove_dir_all(&dir);
        std::iter::from_fn(|| rx.try_recv().ok()).map(|c| c.unwrap()).collect()
    }

    #[test]
    fn a_file_goes_in_whole_chunks_that_add_up_to_it() {
        let bytes: Vec<u8> = (0..2500u32).map(|i| (i * 7 % 251) as u8).collect();
        let chunks = chunks_of(&bytes, 1000);
        assert_eq!(
            chunks.iter().map(|c| (c.offset, c.data.len())).collect::<Vec<_>>(),
            [(0, 1000), (1000, 1000), (2000, 500)]
        );
        assert!(chunks.iter().all(|c| c.size == 2500 && c.file == "f.bin"));
        assert_eq!(chunks.iter().flat_map(|c| c.data.clone()).collect::<Vec<_>>(), bytes);
        // A multiple of the chunk size: no empty chunk after it; an empty file: one.
        assert_eq!(chunks_of(&bytes[..2000], 1000).len(), 2);
        let empty = chunks_of(&[], 1000);
        assert_eq!((empty.len(), empty[0].size, empty[0].data.len()), (1, 0, 0));
    }
}
