//! The node's NodeService: WatchRun streams a run's progress (with its actors),
//! live spikes and result to the control.

use super::*;

/// The handle of run `id` on this node, waiting up to `within` for it to start
/// (a watcher may come before the assignment).
async fn find_run(node: &ActorRef<NodeMsg>, id: &str, within: Duration) -> Option<Arc<RunHandle>> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Ok(Some(h)) = ractor::call!(node, NodeMsg::Find, id.to_string()) {
            return Some(h);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[derive(Clone)]
pub(crate) struct NodeSvc {
    pub(crate) id: String,
    pub(crate) node: ActorRef<NodeMsg>,
}

#[tonic::async_trait]
impl NodeService for NodeSvc {
    type WatchRunStream = tokio_stream::wrappers::ReceiverStream<Result<RunEvent, Status>>;

    async fn watch_run(&self, req: Request<WatchRunRequest>) -> Result<Response<Self::WatchRunStream>, Status> {
        let run = req.into_inner().run;
        if run.is_empty() || run.len() > 128 {
            return Err(NodeError::InvalidArgument("run: give the experiment id (1 to 128 characters)".into()).into());
        }
        let Some(handle) = find_run(&self.node, &run, Duration::from_secs(30)).await else {
            return Err(NodeError::NotFound(format!("run {run:?} is not on this node")).into());
        };
        let node = self.id.clone();
        let with_actors = move |mut p: NodeProgress, census: &Census| {
            p.actors = census
                .snapshot()
                .into_iter()
                .map(|a| neuropil_proto::v1::Actor {
                    kind: a.kind.label().into(),
                    name: a.name,
                    node: node.clone(),
                    state: a.state.label().into(),
                })
                .collect();
            p
        };
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut progress = handle.progress.subscribe();
            let mut spikes = handle.spikes.subscribe();
            let mut result = handle.result.subscribe();
            loop {
                let done = result.borrow_and_update().clone();
                if let Some(done) = done {
                    // Spikes still queued go first, then the result.
                    while let Ok(b) = spikes.try_recv() {
                        let _ = tx.send(Ok(RunEvent { event: Some(run_event::Event::Spikes(b)) })).await;
                    }
                    let p = with_actors(progress.borrow().clone(), &handle.census);
                    let _ = tx.send(Ok(RunEvent { event: Some(run_event::Event::Progress(p)) })).await;
                    let event = match done {
                        Ok(bytes) => run_event::Event::Result(bytes.as_ref().clone()),
                        Err(e) => run_event::Event::Error(e),
                    };
                    let _ = tx.send(Ok(RunEvent { event: Some(event) })).await;
                    return;
                }
                let event = tokio::select! {
                    r = progress.changed() => match r {
                        Ok(()) => {
                            let p = progress.borrow_and_update().clone();
                            run_event::Event::Progress(with_actors(p, &handle.census))
                        }
                        Err(_) => continue,
                    },
                    s = spikes.recv() => match s {
                        Ok(b) => run_event::Event::Spikes(b),
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => continue,
                    },
                    _ = result.changed() => continue,
                };
                if tx.send(Ok(RunEvent { event: Some(event) })).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }
}
