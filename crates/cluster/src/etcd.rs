//! etcd access shared by node and control: connection, leases kept alive, JSON
//! records under prefixes.

use anyhow::{Context as _, Result};
use etcd_client::{Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, Txn, TxnOp};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// Connect to etcd (`endpoints` like `http://127.0.0.1:2379`), retrying for up to
/// `wait` so that processes may start in any order.
pub async fn connect(endpoints: &[String], wait: Duration) -> Result<Client> {
    let deadline = tokio::time::Instant::now() + wait;
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(Duration::from_secs(10))
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5));
    loop {
        match Client::connect(endpoints, Some(options.clone())).await {
            Ok(mut c) => match c.status().await {
                Ok(_) => return Ok(c),
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(e).with_context(|| format!("--etcd {}: not answering", endpoints.join(",")))
                }
                Err(_) => {}
            },
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(e).with_context(|| format!("--etcd {}: cannot connect", endpoints.join(",")))
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Grant a lease of `ttl_s` seconds and keep it alive in the background until the
/// process ends. The returned receiver fires if the lease is lost (etcd
/// unreachable for longer than the TTL): a node then must stop claiming work.
pub async fn lease(client: &mut Client, ttl_s: i64) -> Result<(i64, tokio::sync::watch::Receiver<bool>)> {
    let lease = client.lease_grant(ttl_s, None).await.context("etcd: granting a lease")?;
    let id = lease.id();
    let (mut keeper, mut responses) = client.lease_keep_alive(id).await.context("etcd: keeping the lease alive")?;
    let (lost_tx, lost_rx) = tokio::sync::watch::channel(false);
    let period = Duration::from_secs((ttl_s as u64 / 3).max(1));
    tokio::spawn(async move {
        loop {
            if keeper.keep_alive().await.is_err() {
                break;
            }
            match responses.message().await {
                Ok(Some(r)) if r.ttl() > 0 => {}
                _ => break,
            }
            tokio::time::sleep(period).await;
        }
        let _ = lost_tx.send(true);
    });
    Ok((id, lost_rx))
}

/// Put `value` as JSON, attached to `lease` when given.
pub async fn put_json<T: Serialize>(client: &mut Client, key: &str, value: &T, lease: Option<i64>) -> Result<()> {
    let bytes = serde_json::to_vec(value)?;
    let options = lease.map(|l| PutOptions::new().with_lease(l));
    client.put(key, bytes, options).await.with_context(|| format!("etcd: writing {key}"))?;
    Ok(())
}

/// What an existing key must be for [`claim_json`] to take it over.
pub enum Replacing {
    /// Nothing: only a missing key is claimed.
    Nothing,
    /// A key attached to this (earlier) lease of ours.
    Lease(i64),
    /// A key holding exactly these bytes.
    Value(Vec<u8>),
}

/// Put `value` as JSON under `lease` if `key` does not exist, or if it is what
/// `replacing` says; `Ok(false)` when someone else holds it (a key on a lease
/// disappears with its holder).
pub async fn claim_json<T: Serialize>(
    client: &mut Client,
    key: &str,
    value: &T,
    lease: i64,
    replacing: Replacing,
) -> Result<bool> {
    let bytes = serde_json::to_vec(value)?;
    let put = || TxnOp::put(key, bytes.clone(), Some(PutOptions::new().with_lease(lease)));
    let mut conditions = vec![Compare::create_revision(key, CompareOp::Equal, 0)];
    match replacing {
        Replacing::Nothing => {}
        Replacing::Lease(old) => conditions.push(Compare::lease(key, CompareOp::Equal, old)),
        Replacing::Value(v) => conditions.push(Compare::value(key, CompareOp::Equal, v)),
    }
    // etcd's conditions are all-of: one transaction per alternative.
    for c in conditions {
        let txn = Txn::new().when([c]).and_then([put()]);
        if client.txn(txn).await.with_context(|| format!("etcd: claiming {key}"))?.succeeded() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Read one JSON record.
pub async fn get_json<T: DeserializeOwned>(client: &mut Client, key: &str) -> Result<Option<T>> {
    let resp = client.get(key, None).await.with_context(|| format!("etcd: reading {key}"))?;
    match resp.kvs().first() {
        None => Ok(None),
        Some(kv) => Ok(Some(serde_json::from_slice(kv.value()).with_context(|| format!("etcd: decoding {key}"))?)),
    }
}

/// Read every JSON record under `prefix` (records that do not decode are skipped:
/// they come from another version and are not ours to interpret).
pub async fn list_json<T: DeserializeOwned>(client: &mut Client, prefix: &str) -> Result<Vec<T>> {
    let resp = client
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .with_context(|| format!("etcd: listing {prefix}"))?;
    Ok(resp.kvs().iter().filter_map(|kv| serde_json::from_slice(kv.value()).ok()).collect())
}
