//! What every gRPC service of the cluster does the same way at start and stop.

/// SIGTERM (Kubernetes) or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Health and reflection for a gRPC server that serves `services` (fully qualified
/// names, e.g. `<NodeServiceServer<_> as NamedService>::NAME`): the health service
/// reports each as SERVING, and reflection (v1 and v1alpha, which older grpcurl
/// builds ask for) lists exactly these, health and reflection — not every service
/// of the schema.
pub async fn introspection(
    mut builder: tonic::transport::Server,
    services: &[&str],
) -> anyhow::Result<tonic::transport::server::Router> {
    let (health, health_svc) = tonic_health::server::health_reporter();
    for name in services {
        health.set_service_status(*name, tonic_health::ServingStatus::Serving).await;
    }
    let configure = || {
        let mut b = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(neuropil_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health");
        for name in services {
            b = b.with_service_name(*name);
        }
        b
    };
    let v1 = configure().with_service_name("grpc.reflection.v1.ServerReflection").build_v1()?;
    let v1alpha = configure().with_service_name("grpc.reflection.v1alpha.ServerReflection").build_v1alpha()?;
    Ok(builder.add_service(health_svc).add_service(v1).add_service(v1alpha))
}
