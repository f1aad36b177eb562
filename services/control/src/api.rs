//! The ExperimentService as every replica answers it: Submit, Get, List, Cancel,
//! Checkpoint, WatchProgress and StreamSpikes (proxied from the recording node).

use super::*;

#[derive(Clone)]
pub(crate) struct ControlSvc(pub(crate) Arc<Control>);

type InfoStream = tokio_stream::wrappers::ReceiverStream<Result<ExperimentInfo, Status>>;
type SpikeStream = tokio_stream::wrappers::ReceiverStream<Result<SpikeBatch, Status>>;

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
}

impl Control {
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
