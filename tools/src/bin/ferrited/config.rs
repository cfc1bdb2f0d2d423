//! ferrited configuration: a TOML file, or the embedded demo default.
//!
//! Every error names the file, the line and the problem.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use engine::dataset::check_name;
use ferrite_tools::duration::parse_duration;
use serde::Deserialize;
use target_iscsi::scsi::config::DEFAULT_SANITIZE_BYTES_PER_S;

/// Default iSCSI portal.
pub const DEFAULT_PORTAL: &str = "127.0.0.1:3260";
/// Prometheus endpoint of the demo configuration.
pub const DEFAULT_METRICS: &str = "127.0.0.1:9330";
/// IQN of the demo target.
pub const DEMO_IQN: &str = "iqn.2026-11.io.ferrite:demo";

/// The whole daemon configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Daemon-wide settings.
    #[serde(default)]
    pub daemon: DaemonSection,
    /// Listening portals.
    #[serde(default, rename = "portal")]
    pub portals: Vec<PortalSection>,
    /// CHAP for discovery sessions.
    #[serde(default)]
    pub discovery: DiscoverySection,
    /// Pools.
    #[serde(default, rename = "pool")]
    pub pools: Vec<PoolSection>,
    /// Targets.
    #[serde(default, rename = "target")]
    pub targets: Vec<TargetSection>,
}

/// A device of a pool: a file (created with `size` when missing) or a block device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSection {
    /// Path; relative paths are under the data directory.
    pub path: PathBuf,
    /// Size of a file to create when it does not exist.
    pub size: Option<String>,
}

/// `[[pool]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    /// Pool name (the part before `/` in volume names).
    pub name: String,
    /// Data devices, striped.
    pub devices: Vec<DeviceSection>,
    /// Separate intent-log device.
    pub log_device: Option<DeviceSection>,
    /// Percent of the pool kept free (default 10).
    pub reserve_percent: Option<u32>,
    /// Read-cache budget, shared by the shards' parts of the cache (default 256M).
    pub cache_size: Option<String>,
    /// How many times its capacity the pool's volumes may total (default 20).
    pub thin_overcommit_factor: Option<u64>,
    /// Bandwidth a scrub may take per second, e.g. `256M` (the default).
    pub scrub_rate: Option<String>,
    /// Time from the end of one scrub to the start of the next, e.g. `30d` (the default), or
    /// `off`.
    pub scrub_interval: Option<String>,
}

/// `[daemon]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DaemonSection {
    /// Shards (threads pinned to cores); default: one per CPU.
    pub shards: Option<usize>,
    /// Directory for backing files and persistent state.
    pub data_dir: Option<PathBuf>,
    /// `auto`, `uring` or `epoll`.
    pub backend: Option<String>,
    /// Prometheus endpoint, `HOST:PORT` (GET /metrics); absent or `"off"`: none.
    pub metrics: Option<String>,
    /// Hand every write to the shard that owns its partition (default false: the shard that
    /// received it applies it).
    pub write_handoff: Option<bool>,
    /// Group whose members may use the control socket besides root and the daemon's user.
    pub rpc_group: Option<String>,
    /// Connections that have not logged in yet, per portal (default sized from the open-file
    /// limit); more are closed at once.
    pub max_pending_logins_per_portal: Option<usize>,
    /// Connections that have not logged in yet, per source address (default sized from the
    /// open-file limit); more are closed at once.
    pub max_pending_logins_per_source: Option<usize>,
    /// Time a new connection has to send its first PDU (default 5000).
    pub first_pdu_timeout_ms: Option<u64>,
    /// Time a new connection has to finish its login (default 30000).
    pub login_timeout_ms: Option<u64>,
    /// Delay before the first failed authentication of an (initiator, source) is answered;
    /// it doubles with each failure in a row (default 1000).
    pub auth_failure_delay_ms: Option<u64>,
    /// Largest delay before a failed authentication is answered (default 8000).
    pub auth_failure_delay_max_ms: Option<u64>,
}

/// `[[portal]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortalSection {
    /// `HOST:PORT`.
    pub address: String,
    /// Target portal group tag (default 1).
    pub group_tag: Option<u16>,
}

/// CHAP credentials; `mutual_*` for the target's answer to the initiator.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ChapSection {
    /// Initiator's user name.
    pub user: String,
    /// Initiator's secret, 12 to 255 bytes (RFC 7143 §12.1.3: at least 96 bits).
    pub secret: String,
    /// Target's user name for mutual CHAP.
    pub mutual_user: Option<String>,
    /// Target's secret for mutual CHAP.
    pub mutual_secret: Option<String>,
}

/// `[discovery]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DiscoverySection {
    /// CHAP required for discovery sessions.
    pub chap: Option<ChapSection>,
}

/// `[[target]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetSection {
    /// iSCSI qualified name.
    pub iqn: String,
    /// TargetAlias.
    pub alias: Option<String>,
    /// Initiator names allowed to log in; absent = everyone.
    pub acl: Option<Vec<String>>,
    /// CHAP required for this target.
    pub chap: Option<ChapSection>,
    /// LUNs.
    #[serde(default, rename = "lun")]
    pub luns: Vec<LunSection>,
}

/// `[[target.lun]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LunSection {
    /// LUN number.
    pub id: u64,
    /// `volume` (a pool volume), `file` (a file or block device, 1:1) or `memory`.
    pub backend: String,
    /// Pool volume `POOL/NAME` for backend `volume`; created with `size` when missing.
    pub volume: Option<String>,
    /// Thick provisioning (space reserved at creation) for a new pool volume.
    pub thick: Option<bool>,
    /// Data block size of a new pool volume, `4K` to `128K` (default 4K). Compression saves
    /// space only on blocks larger than 4 KiB (stored sizes are whole 4 KiB sectors).
    pub volblock_size: Option<String>,
    /// Backing path for `file`; relative paths are under the data directory.
    pub path: Option<PathBuf>,
    /// Size, e.g. `1G`, `512M`; required for `memory` and to create a missing file.
    pub size: Option<String>,
    /// Logical block size: 512 (default) or 4096.
    pub block_size: Option<u32>,
    /// Physical block size (4096 over 512 logical = 512e); default = block size.
    pub physical_block_size: Option<u32>,
    /// Serial number reported in VPD 0x80.
    pub serial: Option<String>,
    /// Write-protected LU: every command that would change the medium ends in DATA PROTECT,
    /// WRITE PROTECTED, and MODE SENSE reports WP (default false).
    pub read_only: Option<bool>,
    /// Bandwidth a SANITIZE operation may take from the LU's disks, bytes per second with a
    /// size suffix (default `128M`), so that the other LUs on the same disks keep their
    /// latency while one is sanitized.
    pub sanitize_rate: Option<String>,
}

/// Checks a kernel-interface name (`--backend`, `[daemon] backend`).
///
/// # Errors
/// One line naming the value and the choices.
pub fn check_backend(name: &str) -> Result<(), String> {
    if ["auto", "uring", "epoll"].contains(&name) {
        Ok(())
    } else {
        Err(format!("backend {name:?} must be auto, uring or epoll"))
    }
}

/// Resolves `HOST:PORT` (an address or a host name such as `localhost`) to one socket
/// address, preferring IPv4 when a name has both. `what` names the setting in errors.
///
/// # Errors
/// One line naming the setting and the value.
pub fn resolve_address(what: &str, address: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = address.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let not = || format!("{what} address {address:?} is not HOST:PORT (or does not resolve)");
    let (host, port) = address.rsplit_once(':').ok_or_else(not)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(not());
    }
    let addrs: Vec<SocketAddr> =
        std::net::ToSocketAddrs::to_socket_addrs(address).map_err(|_| not())?.collect();
    addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()).copied().ok_or_else(not)
}

/// The data block size a new pool volume of `lun` gets (`volblock_size`, default 4 KiB).
///
/// # Errors
/// A one-line message when the size is not a power of two from 4 KiB to 128 KiB, or is given
/// for a LUN that is not a pool volume.
pub fn lun_volblock_bytes(lun: &LunSection) -> Result<u32, String> {
    let Some(text) = &lun.volblock_size else { return Ok(4096) };
    if lun.backend != "volume" {
        return Err(format!("LUN {}: volblock_size applies only to backend \"volume\"", lun.id));
    }
    let bytes = parse_size(text).map_err(|m| format!("LUN {}: {m}", lun.id))?;
    match u32::try_from(bytes) {
        Ok(b) if b.is_power_of_two() && (4096..=131_072).contains(&b) => Ok(b),
        _ => Err(format!(
            "LUN {}: volblock_size {text} must be a power of two from 4K to 128K",
            lun.id
        )),
    }
}

/// The bandwidth a SANITIZE operation on `lun` may take, bytes per second (`sanitize_rate`,
/// default [`DEFAULT_SANITIZE_BYTES_PER_S`]).
///
/// # Errors
/// A one-line message when the rate is not a size above zero.
pub fn lun_sanitize_bytes_per_s(lun: &LunSection) -> Result<u64, String> {
    let Some(text) = &lun.sanitize_rate else { return Ok(DEFAULT_SANITIZE_BYTES_PER_S) };
    parse_size(text).map_err(|m| format!("LUN {}: sanitize_rate: {m}", lun.id))
}

/// The bandwidth a scrub of `pool` may take, bytes per second (`scrub_rate`, default
/// [`engine::scrub::DEFAULT_SCRUB_RATE`]).
///
/// # Errors
/// A one-line message when the rate is not a size above zero.
pub fn pool_scrub_bytes_per_s(pool: &PoolSection) -> Result<u64, String> {
    let Some(text) = &pool.scrub_rate else { return Ok(engine::scrub::DEFAULT_SCRUB_RATE) };
    match parse_size(text) {
        Ok(0) => Err(format!("pool {}: scrub_rate must be above 0 (e.g. 256M)", pool.name)),
        Ok(rate) => Ok(rate),
        Err(m) => Err(format!("pool {}: scrub_rate: {m}", pool.name)),
    }
}

/// Time from the end of one scrub of `pool` to the start of the next (`scrub_interval`,
/// default [`engine::scrub::DEFAULT_SCRUB_INTERVAL`]); `None` for `off`.
///
/// # Errors
/// A one-line message when it is neither a duration nor `off`.
pub fn pool_scrub_interval(pool: &PoolSection) -> Result<Option<Duration>, String> {
    match pool.scrub_interval.as_deref().map(str::trim) {
        None => Ok(Some(engine::scrub::DEFAULT_SCRUB_INTERVAL)),
        Some("off") => Ok(None),
        Some(text) => parse_duration(text).map(Some).map_err(|m| {
            format!(
                "pool {}: scrub_interval: {m} (a duration such as 30d or 12h, or off)",
                pool.name
            )
        }),
    }
}

/// A configuration error with its location.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn line_of(text: &str, byte: usize) -> usize {
    text[..byte.min(text.len())].bytes().filter(|b| *b == b'\n').count() + 1
}

/// One step of the path to a value of the configuration: a key, or an item of an array
/// (`[[target]]` tables are items of the array `target`).
#[derive(Debug, Clone, Copy)]
enum At<'a> {
    Key(&'a str),
    Item(usize),
}
use At::{Item, Key};

/// The configuration text with the document the TOML parser made of it (the one the
/// configuration is deserialised from), whose spans let a semantic error name the line of the
/// very value it is about (not the first line with the same text).
struct Located<'i, 'd> {
    text: &'i str,
    doc: &'d toml::Spanned<toml::de::DeTable<'i>>,
}

impl Located<'_, '_> {
    /// The line of the value at `path`; when the path goes past what the text holds (a default
    /// or a missing key), the line of the deepest table or value it reached.
    fn line(&self, path: &[At<'_>]) -> usize {
        use toml::de::DeValue;
        let mut span = None;
        let mut table = Some(self.doc.get_ref());
        let mut items: Option<&[toml::Spanned<DeValue<'_>>]> = None;
        for step in path {
            let next = match (*step, table, items) {
                (Key(key), Some(t), _) => {
                    t.iter().find(|(k, _)| k.get_ref().as_ref() == key).map(|(_, v)| v)
                }
                (Item(i), _, Some(list)) => list.get(i),
                _ => None,
            };
            let Some(value) = next else { break };
            span = Some(value.span());
            (table, items) = match value.get_ref() {
                DeValue::Table(t) => (Some(t), None),
                DeValue::Array(a) => (None, Some(&a[..])),
                _ => (None, None),
            };
        }
        span.map_or(1, |s| line_of(self.text, s.start))
    }
}

pub use ferrite_tools::size::parse_size;

/// Shortest CHAP secret accepted: RFC 7143 §12.1.3 asks for at least 96 bits.
pub const MIN_CHAP_SECRET_BYTES: usize = 12;
/// Longest CHAP secret (RFC 7143 §12.1.3).
pub const MAX_CHAP_SECRET_BYTES: usize = 255;
/// Largest `auth_failure_delay_max_ms`: initiators give up on a login after tens of seconds.
pub const MAX_AUTH_FAILURE_DELAY_MS: u64 = 60_000;

/// Builds the error for the value at a path of the configuration (see [`Located::line`]).
type ErrAt<'a> = dyn Fn(&[At<'_>], String) -> ConfigError + 'a;

/// Checks one CHAP section; `owner` names where it is (`target IQN`, `discovery`) and `at` is
/// the path of its `chap` table.
fn check_chap(
    owner: &str,
    at: &[At<'_>],
    chap: &ChapSection,
    err: &ErrAt<'_>,
) -> Result<(), ConfigError> {
    let key = |k: &'static str| [at, &[Key(k)]].concat();
    let secrets = [("secret", Some(&chap.secret)), ("mutual_secret", chap.mutual_secret.as_ref())];
    for (name, secret) in secrets {
        let Some(secret) = secret else { continue };
        let bytes = secret.len();
        if !(MIN_CHAP_SECRET_BYTES..=MAX_CHAP_SECRET_BYTES).contains(&bytes) {
            let rule = if bytes < MIN_CHAP_SECRET_BYTES {
                format!("CHAP secrets must be at least {MIN_CHAP_SECRET_BYTES} bytes (RFC 7143)")
            } else {
                format!("CHAP secrets must be at most {MAX_CHAP_SECRET_BYTES} bytes (RFC 7143)")
            };
            return Err(err(&key(name), format!("{owner}: chap.{name} is {bytes} bytes; {rule}")));
        }
    }
    if chap.mutual_user.is_some() != chap.mutual_secret.is_some() {
        return Err(err(
            &key("user"),
            format!("{owner}: mutual CHAP needs both chap.mutual_user and chap.mutual_secret"),
        ));
    }
    if chap.mutual_secret.as_deref() == Some(chap.secret.as_str()) {
        return Err(err(
            &key("mutual_secret"),
            format!("{owner}: chap.mutual_secret must differ from chap.secret"),
        ));
    }
    Ok(())
}

impl DaemonSection {
    /// Checks the caps, timeouts and delays for connections that have not logged in.
    fn check_login_limits(&self, err: &ErrAt<'_>) -> Result<(), ConfigError> {
        let caps = [
            ("max_pending_logins_per_portal", self.max_pending_logins_per_portal),
            ("max_pending_logins_per_source", self.max_pending_logins_per_source),
        ];
        for (key, value) in caps {
            if value == Some(0) {
                return Err(err(
                    &[Key("daemon"), Key(key)],
                    format!("[daemon] {key} must be at least 1"),
                ));
            }
        }
        let default_login_ms =
            u64::try_from(target_iscsi::admission::LOGIN_TIMEOUT.as_millis()).unwrap_or(u64::MAX);
        let login_ms = self.login_timeout_ms.unwrap_or(default_login_ms);
        for (key, value) in [
            ("first_pdu_timeout_ms", self.first_pdu_timeout_ms),
            ("login_timeout_ms", self.login_timeout_ms),
        ] {
            if let Some(ms) = value {
                if ms == 0 || ms > login_ms {
                    return Err(err(
                        &[Key("daemon"), Key(key)],
                        format!("[daemon] {key} {ms} must be 1 to login_timeout_ms ({login_ms})"),
                    ));
                }
            }
        }
        let default = target_iscsi::login_failures::AuthDelay::default();
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let initial = self.auth_failure_delay_ms.unwrap_or(ms(default.initial));
        let max = self.auth_failure_delay_max_ms.unwrap_or(ms(default.max));
        if initial == 0 || initial > max || max > MAX_AUTH_FAILURE_DELAY_MS {
            let key = if self.auth_failure_delay_ms.is_some() {
                "auth_failure_delay_ms"
            } else {
                "auth_failure_delay_max_ms"
            };
            return Err(err(
                &[Key("daemon"), Key(key)],
                format!(
                    "[daemon] auth_failure_delay_ms ({initial}) must be at least 1 and at most auth_failure_delay_max_ms ({max}), which is at most {MAX_AUTH_FAILURE_DELAY_MS}"
                ),
            ));
        }
        Ok(())
    }
}

impl Config {
    /// Reads and validates a configuration file.
    ///
    /// # Errors
    /// `FILE:LINE: problem` for syntax and semantic errors.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses configuration text; `origin` names it in errors.
    ///
    /// # Errors
    /// `ORIGIN:LINE: problem`.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let toml_error = |e: toml::de::Error| {
            let line = e.span().map_or(1, |s| line_of(text, s.start));
            ConfigError(format!("{origin}:{line}: {}", e.message()))
        };
        // Parsed once: the configuration is deserialised from a copy of the document, and the
        // document's spans locate the semantic errors.
        let doc = toml::de::DeTable::parse(text).map_err(toml_error)?;
        let config =
            Config::deserialize(toml::de::Deserializer::from(doc.clone())).map_err(toml_error)?;
        config.validate(&Located { text, doc: &doc }, origin)?;
        Ok(config)
    }

    fn validate(&self, located: &Located<'_, '_>, origin: &str) -> Result<(), ConfigError> {
        let err = |path: &[At<'_>], msg: String| {
            ConfigError(format!("{origin}:{}: {msg}", located.line(path)))
        };
        for (i, portal) in self.portals.iter().enumerate() {
            resolve_address("portal", &portal.address)
                .map_err(|m| err(&[Key("portal"), Item(i), Key("address")], m))?;
        }
        if let Some(backend) = &self.daemon.backend {
            check_backend(backend).map_err(|m| err(&[Key("daemon"), Key("backend")], m))?;
        }
        self.check_pools(&err)?;
        self.daemon.check_login_limits(&err)?;
        if let Some(chap) = &self.discovery.chap {
            check_chap("discovery", &[Key("discovery"), Key("chap")], chap, &err)?;
        }
        let mut iqns = std::collections::HashSet::new();
        for (t, target) in self.targets.iter().enumerate() {
            let at = |key: &'static str| [Key("target"), Item(t), Key(key)];
            if !(target.iqn.starts_with("iqn.")
                || target.iqn.starts_with("eui.")
                || target.iqn.starts_with("naa."))
                || target.iqn.len() > 223
            {
                return Err(err(
                    &at("iqn"),
                    format!("target name {:?} is not an iqn./eui./naa. name", target.iqn),
                ));
            }
            if let Some(alias) = &target.alias {
                check_name("target alias", alias).map_err(|m| err(&at("alias"), m))?;
            }
            if !iqns.insert(target.iqn.to_ascii_lowercase()) {
                return Err(err(&at("iqn"), format!("target {:?} is defined twice", target.iqn)));
            }
            if let Some(chap) = &target.chap {
                check_chap(&format!("target {}", target.iqn), &at("chap"), chap, &err)?;
            }
            let mut ids = std::collections::HashSet::new();
            for (l, lun) in target.luns.iter().enumerate() {
                let path = [Key("target"), Item(t), Key("lun"), Item(l)];
                let id_at = [&path[..], &[Key("id")]].concat();
                if lun.id >= 16384 {
                    return Err(err(&id_at, format!("LUN {} out of range (0..16383)", lun.id)));
                }
                if !ids.insert(lun.id) {
                    return Err(err(
                        &id_at,
                        format!("LUN {} defined twice in {}", lun.id, target.iqn),
                    ));
                }
                self.check_lun(lun, &path, &err)?;
            }
        }
        Ok(())
    }

    /// Checks the `[[pool]]` sections.
    fn check_pools(&self, err: &ErrAt<'_>) -> Result<(), ConfigError> {
        let mut pool_names = std::collections::HashSet::new();
        for (i, pool) in self.pools.iter().enumerate() {
            let at = |key: &'static str| [Key("pool"), Item(i), Key(key)];
            check_name("pool", &pool.name).map_err(|m| err(&at("name"), m))?;
            if !pool_names.insert(pool.name.clone()) {
                return Err(err(&at("name"), format!("pool name {:?} is repeated", pool.name)));
            }
            if pool.thin_overcommit_factor == Some(0) {
                return Err(err(
                    &at("thin_overcommit_factor"),
                    format!("pool {}: thin_overcommit_factor must be at least 1", pool.name),
                ));
            }
            if pool.devices.is_empty() {
                return Err(err(
                    &at("devices"),
                    format!("pool {:?} needs at least one device", pool.name),
                ));
            }
            if let Some(size) = &pool.cache_size {
                parse_size(size).map_err(|m| {
                    err(&at("cache_size"), format!("pool {} cache_size: {m}", pool.name))
                })?;
            }
            pool_scrub_bytes_per_s(pool).map_err(|m| err(&at("scrub_rate"), m))?;
            pool_scrub_interval(pool).map_err(|m| err(&at("scrub_interval"), m))?;
            let devices = pool.devices.iter().enumerate().map(|(d, dev)| {
                (vec![Key("pool"), Item(i), Key("devices"), Item(d), Key("size")], dev)
            });
            let log = pool
                .log_device
                .iter()
                .map(|dev| (vec![Key("pool"), Item(i), Key("log_device"), Key("size")], dev));
            for (path, dev) in devices.chain(log) {
                if let Some(size) = &dev.size {
                    parse_size(size).map_err(|m| err(&path, format!("pool {}: {m}", pool.name)))?;
                }
            }
        }
        Ok(())
    }

    /// Checks one `[[target.lun]]` at `path`.
    fn check_lun(
        &self,
        lun: &LunSection,
        path: &[At<'_>],
        err: &ErrAt<'_>,
    ) -> Result<(), ConfigError> {
        let at = |key: &'static str| [path, &[Key(key)]].concat();
        match lun.backend.as_str() {
            "volume" => {
                let Some(name) = &lun.volume else {
                    return Err(err(
                        &at("backend"),
                        format!("LUN {}: backend \"volume\" needs volume = \"POOL/NAME\"", lun.id),
                    ));
                };
                let (pool, volume) = name.split_once('/').unwrap_or(("", ""));
                if !self.pools.iter().any(|p| p.name == pool) {
                    return Err(err(
                        &at("volume"),
                        format!(
                            "LUN {}: volume {name:?} must be POOL/NAME with a configured pool",
                            lun.id
                        ),
                    ));
                }
                check_name("volume", volume)
                    .map_err(|m| err(&at("volume"), format!("LUN {}: {m}", lun.id)))?;
            }
            "file" => {
                if lun.path.is_none() {
                    return Err(err(
                        &at("backend"),
                        format!("LUN {}: backend \"file\" needs path", lun.id),
                    ));
                }
            }
            "memory" => {
                if lun.size.is_none() {
                    return Err(err(
                        &at("backend"),
                        format!("LUN {}: backend \"memory\" needs size", lun.id),
                    ));
                }
            }
            other => {
                return Err(err(
                    &at("backend"),
                    format!("LUN {}: backend {other:?} must be volume, file or memory", lun.id),
                ))
            }
        }
        if let Some(size) = &lun.size {
            parse_size(size).map_err(|m| err(&at("size"), format!("LUN {}: {m}", lun.id)))?;
        }
        if lun.volblock_size.is_some() {
            lun_volblock_bytes(lun).map_err(|m| err(&at("volblock_size"), m))?;
        }
        lun_sanitize_bytes_per_s(lun).map_err(|m| err(&at("sanitize_rate"), m))?;
        let bs = lun.block_size.unwrap_or(512);
        if bs != 512 && bs != 4096 {
            return Err(err(
                &at("block_size"),
                format!("LUN {}: block_size {bs} must be 512 or 4096", lun.id),
            ));
        }
        let pbs = lun.physical_block_size.unwrap_or(bs);
        if pbs < bs || !pbs.is_multiple_of(bs) || !pbs.is_power_of_two() {
            return Err(err(
                &at("physical_block_size"),
                format!(
                    "LUN {}: physical_block_size {pbs} must be a power-of-two multiple of {bs}",
                    lun.id
                ),
            ));
        }
        Ok(())
    }

    /// The embedded demo configuration: a pool on one file in the data directory and one
    /// target with a 1 GiB thin volume of that pool as LUN 0, on the given portals.
    #[must_use]
    pub fn demo(portals: &[String]) -> Config {
        let portals =
            if portals.is_empty() { vec![DEFAULT_PORTAL.to_string()] } else { portals.to_vec() };
        Config {
            daemon: DaemonSection {
                metrics: Some(DEFAULT_METRICS.to_string()),
                ..DaemonSection::default()
            },
            portals: portals
                .into_iter()
                .map(|address| PortalSection { address, group_tag: Some(1) })
                .collect(),
            discovery: DiscoverySection::default(),
            pools: vec![PoolSection {
                name: "demo".to_string(),
                devices: vec![DeviceSection {
                    path: PathBuf::from("demo-pool.img"),
                    size: Some("2G".to_string()),
                }],
                log_device: None,
                reserve_percent: None,
                cache_size: None,
                thin_overcommit_factor: None,
                scrub_rate: None,
                scrub_interval: None,
            }],
            targets: vec![TargetSection {
                iqn: DEMO_IQN.to_string(),
                alias: Some("ferrite-demo".to_string()),
                acl: None,
                chap: None,
                luns: vec![LunSection {
                    id: 0,
                    backend: "volume".to_string(),
                    volume: Some("demo/lun0".to_string()),
                    thick: None,
                    volblock_size: None,
                    path: None,
                    size: Some("1G".to_string()),
                    block_size: Some(512),
                    physical_block_size: Some(4096),
                    serial: None,
                    read_only: None,
                    sanitize_rate: None,
                }],
            }],
        }
    }
}

#[cfg(test)]
mod tests;
