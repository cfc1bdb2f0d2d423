//! What a connection needs from the daemon: the targets, the login configuration, the portals,
//! the session table. Shared read-mostly by every shard.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::admission::{Admission, AdmissionLimits};
use crate::ffp::Keepalive;
use crate::login::{send_targets, LoginConfig, Portal as LoginPortal, SendTargetsScope};
use crate::login_failures::{AuthDelay, LoginFailures};
use crate::scsi::target::ScsiTarget;
use crate::session::SessionTable;
use crate::stats::Stats;
use crate::text::{parse_pairs, TextBuilder};

/// An iSCSI target node: its name and its SCSI target (LUNs).
pub struct TargetNode {
    /// IQN as configured.
    pub name: String,
    /// The SCSI side: LUNs, reservations, unit attentions.
    pub scsi: Arc<ScsiTarget>,
}

/// A listening portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Portal {
    /// Address the portal listens on.
    pub address: SocketAddr,
    /// Target portal group tag.
    pub group_tag: u16,
}

/// Daemon-wide state every connection reads.
pub struct Server {
    /// Login rules: targets, CHAP, ACLs, limits.
    pub login: LoginConfig,
    /// Target nodes by lower-cased name.
    pub targets: HashMap<String, Arc<TargetNode>>,
    /// Listening portals (for SendTargets).
    pub portals: Vec<Portal>,
    /// Live sessions.
    pub sessions: SessionTable,
    /// Keepalive timing.
    pub keepalive: Keepalive,
    /// Source of I_T nexus identifiers.
    next_nexus: AtomicU64,
    /// Connections per shard, for placement.
    pub connections_per_shard: Vec<AtomicUsize>,
    /// I/O statistics per LUN, shard and connection.
    pub stats: Arc<Stats>,
    /// Connections that have not logged in yet: caps and timeouts.
    pub admission: Arc<Admission>,
    /// Failed logins: delays, counts, log.
    pub login_failures: LoginFailures,
}

impl Server {
    /// Builds the server state.
    #[must_use]
    pub fn new(
        login: LoginConfig,
        targets: Vec<Arc<TargetNode>>,
        portals: Vec<Portal>,
        keepalive: Keepalive,
        shards: usize,
    ) -> Server {
        let luns: Vec<(String, u64)> = targets
            .iter()
            .flat_map(|t| t.scsi.lun_numbers().map(|lun| (t.name.clone(), lun)))
            .collect();
        Server {
            stats: Arc::new(Stats::new(shards, luns)),
            login,
            targets: targets.into_iter().map(|t| (t.name.to_ascii_lowercase(), t)).collect(),
            portals,
            sessions: SessionTable::default(),
            keepalive,
            next_nexus: AtomicU64::new(1),
            connections_per_shard: (0..shards.max(1)).map(|_| AtomicUsize::new(0)).collect(),
            admission: Admission::new(AdmissionLimits::default()),
            login_failures: LoginFailures::new(AuthDelay::default()),
        }
    }

    /// The server with these limits on connections that have not logged in and this delay
    /// for failed authentications, instead of the defaults.
    #[must_use]
    pub fn with_login_limits(mut self, admission: AdmissionLimits, delay: AuthDelay) -> Server {
        self.admission = Admission::new(admission);
        self.login_failures = LoginFailures::new(delay);
        self
    }

    /// Default keepalive: a NOP-In after 30 s idle, dropped after 30 s more.
    #[must_use]
    pub fn default_keepalive() -> Keepalive {
        Keepalive { interval: Duration::from_secs(30), timeout: Duration::from_secs(30) }
    }

    /// A new I_T nexus identifier.
    pub fn next_nexus_id(&self) -> u64 {
        self.next_nexus.fetch_add(1, Ordering::Relaxed)
    }

    /// Finds a target by name (case-insensitive, as iSCSI names are).
    #[must_use]
    pub fn target(&self, name: &str) -> Option<&Arc<TargetNode>> {
        self.targets.get(&name.to_ascii_lowercase())
    }

    /// The shard with the fewest connections (placement is per connection, DESIGN §2).
    #[must_use]
    pub fn least_loaded_shard(&self) -> usize {
        self.connections_per_shard
            .iter()
            .enumerate()
            .min_by_key(|(_, n)| n.load(Ordering::Relaxed))
            .map_or(0, |(i, _)| i)
    }

    /// Answers a Text Request in the full-feature phase: SendTargets; any other key is
    /// answered NotUnderstood.
    #[must_use]
    pub fn text_request(
        &self,
        initiator_name: &str,
        target: Option<&TargetNode>,
        data: &[u8],
    ) -> Vec<u8> {
        let Ok(pairs) = parse_pairs(data) else { return Vec::new() };
        let mut out = TextBuilder::new();
        let mut answer = Vec::new();
        for pair in pairs {
            if pair.key == "SendTargets" {
                let own = target.map(|t| t.name.as_str());
                if let Some(scope) = SendTargetsScope::parse(pair.value, own) {
                    answer.extend(send_targets(
                        &self.login,
                        &self.portal_list(),
                        initiator_name,
                        scope,
                    ));
                } else {
                    out.push(pair.key, "Reject");
                }
            } else {
                out.push(pair.key, "NotUnderstood");
            }
        }
        answer.extend_from_slice(out.as_bytes());
        answer
    }

    fn portal_list(&self) -> Vec<LoginPortal> {
        self.portals
            .iter()
            .map(|p| LoginPortal { host: p.address.ip().to_string(), port: p.address.port() })
            .collect()
    }
}
