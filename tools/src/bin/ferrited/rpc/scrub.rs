//! `pool_scrub` (`{"name", "action": "start" | "pause" | "resume" | "stop"}`) and the `scan`
//! entry of `pool_list`.
//!
//! A scrub runs as a task on this shard (shard 0, where the pools' txg coordinators run):
//! the request returns at once and the scrub paces itself to the pool's `scrub_rate`.

use std::sync::Arc;

use drivers::executor;
use engine::scrub::{ScrubStatus, POOL_METADATA};
use engine::{Pool, PoolError};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{invalid, params, RpcError};
use crate::daemon::State;

#[derive(Debug, Deserialize)]
struct ScrubParams {
    name: String,
    action: Option<String>,
}

/// The `pool_scrub` method.
pub(super) fn pool_scrub(p: &Value, state: &State) -> Result<Value, RpcError> {
    let ScrubParams { name, action } = params(p)?;
    let pool = state
        .pools
        .get(&name)
        .ok_or_else(|| RpcError(-32001, format!("no pool named {name:?}")))?;
    let res = match action.as_deref().unwrap_or("start") {
        "start" => pool.start_scrub().map(|job| {
            let pool = Arc::clone(pool);
            // Dropping the handle detaches the task: it ends with the scrub.
            drop(executor::spawn(async move { job.run(&pool).await }));
        }),
        "pause" => pool.pause_scrub(),
        "resume" => pool.resume_scrub(),
        "stop" => pool.stop_scrub(),
        other => {
            return Err(invalid(format!(
                "action {other:?} is not one of start, pause, resume, stop"
            )))
        }
    };
    res.map_err(|e| {
        RpcError(
            -32000,
            match e {
                PoolError::Busy(line) => line,
                e => format!("pool {name}: {e}"),
            },
        )
    })?;
    Ok(json!({"name": name, "scan": scan_json(pool)}))
}

/// The pool's current or last scrub, `null` when none ran since import.
pub(super) fn scan_json(pool: &Pool) -> Value {
    pool.scrub_status().map_or(Value::Null, |s| status_json(pool.name(), &s))
}

fn status_json(pool: &str, s: &ScrubStatus) -> Value {
    let bad: Vec<Value> = s
        .bad_blocks
        .iter()
        .map(|b| {
            let dataset = if b.dataset == POOL_METADATA {
                format!("{pool} (pool metadata)")
            } else {
                format!("{pool}/{}", b.dataset)
            };
            json!({
                "dataset": dataset,
                "location": b.location,
                "device": b.device,
                "offset_bytes": b.offset_bytes,
                "reason": b.reason,
            })
        })
        .collect();
    json!({
        "function": "scrub",
        "state": s.state.name(),
        "start_unix_s": s.start_unix_s,
        "end_unix_s": s.end_unix_s,
        "examined_bytes": s.examined_bytes,
        "to_examine_bytes": s.to_examine_bytes,
        "blocks": s.blocks,
        "errors": s.errors,
        "repaired_bytes": s.repaired_bytes,
        "rate_bytes_per_s": s.rate_bytes_per_s,
        "eta_s": s.eta_s,
        "bad_blocks": bad,
        "bad_blocks_not_listed": s.errors.saturating_sub(s.bad_blocks.len() as u64),
    })
}
