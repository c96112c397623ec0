//! Complete validation of a configuration file, run once at load (and by
//! `upswarm daemon --check-config`): every value the daemon will use is checked here, so
//! nothing can fail (or panic) later because of the file — no zero or absurd duration, no
//! unknown signal, time zone, day or webhook event, no URL that is not http(s), no
//! external mode without its hooks.
//!
//! Every problem is reported, each naming the file and the field.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::config::{Config, ManagedMode};
use crate::procs::parse_signal;

/// Events a webhook can subscribe to.
pub const WEBHOOK_EVENTS: [&str; 8] = [
    "update_available",
    "download_blocked",
    "applied",
    "rolled_back",
    "failed",
    "halted",
    "upgrade_required",
    "root_expiring",
];

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The field, as written in the file (`managed.health.interval`).
    pub field: String,
    pub message: String,
}

/// A configuration that cannot be used, with everything wrong in it.
#[derive(Debug, thiserror::Error)]
pub struct InvalidConfig {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: invalid configuration ({} problem{})",
            self.file.display(),
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {}: {}: {}", self.file.display(), p.field, p.message)?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            field: field.into(),
            message: message.into(),
        });
    }

    fn duration(&mut self, field: &str, d: Duration, min: Duration, max: Duration) {
        if d < min || d > max {
            self.add(
                field,
                format!(
                    "{} is out of range: it must be between {} and {}",
                    show(d),
                    show(min),
                    show(max)
                ),
            );
        }
    }

    fn argv(&mut self, field: &str, argv: &[String]) {
        if let Some(first) = argv.first()
            && first.trim().is_empty()
        {
            self.add(field, "the program (first element) is empty");
        }
        if argv.iter().any(|a| a.contains('\0')) {
            self.add(field, "contains a NUL character");
        }
    }

    fn url(&mut self, field: &str, url: &str) {
        match reqwest::Url::parse(url) {
            Err(e) => self.add(field, format!("{} is not a URL: {e}", quote(url))),
            Ok(u) if !matches!(u.scheme(), "http" | "https") => self.add(
                field,
                format!("{} is not an http:// or https:// URL", quote(url)),
            ),
            Ok(u) if u.host_str().is_none_or(str::is_empty) => {
                self.add(field, format!("{} has no host", quote(url)))
            }
            Ok(_) => {}
        }
    }

    fn name(&mut self, field: &str, value: &str) {
        if value.is_empty() || value.len() > 64 {
            self.add(field, "must be 1 to 64 characters");
        } else if !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            self.add(
                field,
                format!(
                    "{} may only hold letters, digits, '-', '_' and '.'",
                    quote(value)
                ),
            );
        }
    }
}

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86400);

fn show(d: Duration) -> String {
    if d.is_zero() {
        "0s".into()
    } else {
        humantime::format_duration(d).to_string()
    }
}

/// A value for a message: quoted, and cut short if long.
fn quote(s: &str) -> String {
    if s.chars().count() > 60 {
        let short: String = s.chars().take(60).collect();
        format!("{short:?}… ({} characters)", s.chars().count())
    } else {
        format!("{s:?}")
    }
}

/// Checks everything in `c` (read from `file`).
impl Config {
    /// Reads and checks a configuration file ([`Config::read`], then [`check`]): what the
    /// daemon, `--check-config` and `upswarm init` load.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let config = Config::read(path)?;
        check(&config, path)?;
        Ok(config)
    }
}

pub fn check(c: &Config, file: &Path) -> Result<(), InvalidConfig> {
    let mut p = Problems::default();
    p.name("network", &c.network);
    if c.channels.is_empty() {
        p.add("channels", "must list at least one channel");
    }
    for (i, ch) in c.channels.iter().enumerate() {
        p.name(&format!("channels[{i}]"), ch);
    }
    for (i, pr) in c.products.iter().enumerate() {
        if pr.is_empty() || pr.len() > 128 || pr.contains('/') {
            p.add(
                format!("products[{i}]"),
                "must be 1 to 128 characters without '/'",
            );
        }
    }
    if c.platform.is_empty() || c.platform.len() > 64 {
        p.add("platform", "must be 1 to 64 characters");
    }
    p.duration("clock_skew", c.clock_skew, Duration::ZERO, DAY);
    if let Some(ca) = &c.tls.extra_ca_file
        && let Err(e) = crate::http::load_roots(ca)
    {
        p.add("tls.extra_ca_file", e.to_string());
    }

    let n = &c.network_options;
    for (i, a) in n.listen.iter().enumerate() {
        if a.parse::<upswarm_net::Multiaddr>().is_err() {
            p.add(
                format!("network_options.listen[{i}]"),
                format!("{} is not a multiaddr", quote(a)),
            );
        }
    }
    for (i, a) in n.bootstrap.iter().enumerate() {
        if a.parse::<upswarm_net::Multiaddr>().is_err() {
            p.add(
                format!("network_options.bootstrap[{i}]"),
                format!("{} is not a multiaddr", quote(a)),
            );
        }
    }
    for (i, a) in n.denied_peers.iter().enumerate() {
        if a.parse::<upswarm_net::PeerId>().is_err() {
            p.add(
                format!("network_options.denied_peers[{i}]"),
                format!("{} is not a peer id", quote(a)),
            );
        }
    }
    for (i, a) in n.external_addresses.iter().enumerate() {
        if a.parse::<upswarm_net::Multiaddr>().is_err() {
            p.add(
                format!("network_options.external_addresses[{i}]"),
                format!("{} is not a multiaddr", quote(a)),
            );
        }
    }
    for (i, a) in n.relays.iter().enumerate() {
        match a.parse::<upswarm_net::Multiaddr>() {
            Err(_) => p.add(
                format!("network_options.relays[{i}]"),
                format!("{} is not a multiaddr", quote(a)),
            ),
            Ok(m) if !matches!(m.iter().last(), Some(upswarm_net::Protocol::P2p(_))) => p.add(
                format!("network_options.relays[{i}]"),
                format!("{} does not end in /p2p/<peer id>", quote(a)),
            ),
            Ok(_) => {}
        }
    }
    if n.relay_max_reservations == 0 {
        p.add(
            "network_options.relay_max_reservations",
            "must be at least 1",
        );
    }
    if n.relay_max_circuits == 0 {
        p.add("network_options.relay_max_circuits", "must be at least 1");
    }
    p.duration(
        "network_options.relay_max_circuit_duration",
        n.relay_max_circuit_duration,
        SEC,
        DAY,
    );
    if n.relay_max_circuit_bytes < 64 * 1024 {
        p.add(
            "network_options.relay_max_circuit_bytes",
            "must be at least 64KiB",
        );
    }
    if n.max_connections == 0 {
        p.add("network_options.max_connections", "must be at least 1");
    }
    p.duration("network_options.dht_refresh", n.dht_refresh, SEC, DAY);

    let t = &c.transfer;
    if t.max_in_flight == 0 || t.max_in_flight > 4096 {
        p.add("transfer.max_in_flight", "must be between 1 and 4096");
    }
    if t.max_in_flight_per_peer == 0 || t.max_in_flight_per_peer > 1024 {
        p.add(
            "transfer.max_in_flight_per_peer",
            "must be between 1 and 1024",
        );
    }
    if t.upload_slots > 1024 {
        p.add(
            "transfer.upload_slots",
            "must be between 0 (no limit) and 1024",
        );
    }
    if t.ban_after_faults == 0 {
        p.add("transfer.ban_after_faults", "must be at least 1");
    }
    if t.max_decode_window != 0 && !(1 << 10..=1 << 31).contains(&t.max_decode_window) {
        p.add(
            "transfer.max_decode_window",
            "must be 0 (no encoded forms) or between 1KiB and 2GiB",
        );
    }
    p.duration(
        "transfer.request_timeout",
        t.request_timeout,
        100 * MS,
        HOUR,
    );

    if let Some(m) = &c.managed {
        match &m.product {
            Some(pr) => {
                if pr.is_empty() || pr.len() > 128 || pr.contains('/') {
                    p.add("managed.product", "must be 1 to 128 characters without '/'");
                } else if !c.products.is_empty() && !c.products.contains(pr) {
                    p.add(
                        "managed.product",
                        format!(
                            "{} is not among `products`, so it would never be downloaded",
                            quote(pr)
                        ),
                    );
                }
            }
            None if c.products.len() != 1 => p.add(
                "managed.product",
                format!(
                    "is required when `products` lists {} products: name the product whose \
                     releases this program runs",
                    c.products.len()
                ),
            ),
            None => {}
        }
        if m.mode == ManagedMode::Cosmovisor {
            cosmovisor(&mut p, m);
        } else if m.cosmovisor.is_some() {
            p.add(
                "managed.cosmovisor",
                "is only used with mode = \"cosmovisor\"",
            );
        }
        if m.mode == ManagedMode::Cosmovisor {
            // The binary is <home>/cosmovisor/current/bin/<name>; `command` is not used.
            if !m.command.is_empty() {
                p.add(
                    "managed.command",
                    "is not used in cosmovisor mode (the program is \
                     <home>/cosmovisor/current/bin/<name>): leave it out",
                );
            }
        } else if m.command.trim().is_empty() {
            p.add("managed.command", "is empty: name the program to run");
        } else if m.command.contains('\0') {
            p.add("managed.command", "contains a NUL character");
        } else if m.command.contains('/') && !Path::new(&m.command).is_absolute() {
            p.add(
                "managed.command",
                format!(
                    "{} must be an artifact name (no '/') or an absolute path",
                    quote(&m.command)
                ),
            );
        }
        p.argv("managed.args", &m.args);
        for k in m.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                p.add(
                    format!("managed.env.{k}"),
                    "is not a valid environment variable name",
                );
            }
        }
        match parse_signal(&m.stop_signal) {
            None => p.add(
                "managed.stop_signal",
                format!("{} is not a signal name", quote(&m.stop_signal)),
            ),
            Some(s) => {
                use nix::sys::signal::Signal::*;
                if matches!(
                    s,
                    SIGSTOP | SIGTSTP | SIGTTIN | SIGTTOU | SIGCONT | SIGCHLD | SIGURG | SIGWINCH
                ) {
                    p.add(
                        "managed.stop_signal",
                        format!("{s} does not ask a program to stop"),
                    );
                }
            }
        }
        p.duration(
            "managed.shutdown_grace",
            m.shutdown_grace,
            Duration::ZERO,
            HOUR,
        );
        p.duration("managed.restart_backoff", m.restart_backoff, 10 * MS, HOUR);
        if m.keep_versions == 0 || m.keep_versions > 1000 {
            p.add("managed.keep_versions", "must be between 1 and 1000");
        }
        let h = &m.health;
        if let Some(u) = &h.http {
            p.url("managed.health.http", u);
        }
        p.argv("managed.health.command", &h.command);
        p.duration("managed.health.timeout", h.timeout, 10 * MS, HOUR);
        p.duration("managed.health.interval", h.interval, MS, HOUR);
        p.duration("managed.health.deadline", h.deadline, 100 * MS, DAY);
        if h.successes == 0 || h.successes > 1000 {
            p.add("managed.health.successes", "must be between 1 and 1000");
        }
        let k = &m.hooks;
        p.argv("managed.hooks.pre_upgrade", &k.pre_upgrade);
        p.argv("managed.hooks.start", &k.start);
        p.argv("managed.hooks.stop", &k.stop);
        p.duration("managed.hooks.timeout", k.timeout, 100 * MS, DAY);
        for (field, d) in [
            ("managed.hooks.pre_upgrade_timeout", k.pre_upgrade_timeout),
            ("managed.hooks.start_timeout", k.start_timeout),
            ("managed.hooks.stop_timeout", k.stop_timeout),
        ] {
            if let Some(d) = d {
                p.duration(field, d, 100 * MS, DAY);
            }
        }
        if m.mode == ManagedMode::External {
            if k.start.is_empty() {
                p.add(
                    "managed.hooks.start",
                    "external mode needs a start hook (e.g. [\"systemctl\", \"start\", \"mynode\"])",
                );
            }
            if k.stop.is_empty() {
                p.add(
                    "managed.hooks.stop",
                    "external mode needs a stop hook (e.g. [\"systemctl\", \"stop\", \"mynode\"])",
                );
            }
        }
    }

    let pol = &c.policy;
    for (i, w) in pol.windows.iter().enumerate() {
        if let Err(e) = w.check() {
            p.add(format!("policy.windows[{i}]"), e);
        }
    }
    p.duration(
        "policy.delay_after_release",
        pol.delay_after_release,
        Duration::ZERO,
        365 * DAY,
    );
    p.duration("policy.defer_period", pol.defer_period, SEC, 365 * DAY);

    p.duration("rollout.spread", c.rollout.spread, Duration::ZERO, 7 * DAY);
    p.duration(
        "rollout.resync_interval",
        c.rollout.resync_interval,
        100 * MS,
        DAY,
    );

    let r = &c.retention;
    if r.keep_releases == 0 || r.keep_releases > 1000 {
        p.add("retention.keep_releases", "must be between 1 and 1000");
    }
    if r.keep_backups == 0 || r.keep_backups > 1000 {
        p.add("retention.keep_backups", "must be between 1 and 1000");
    }
    p.duration("retention.grace", r.grace, Duration::ZERO, 3650 * DAY);
    p.duration("retention.interval", r.interval, SEC, 30 * DAY);
    p.duration(
        "alarms.root_expiry_warning",
        c.alarms.root_expiry_warning,
        Duration::ZERO,
        3650 * DAY,
    );

    for (i, w) in c.voting.withhold.iter().enumerate() {
        if w.is_empty() {
            p.add(format!("voting.withhold[{i}]"), "is empty");
        }
    }
    p.argv("voting.activation_hook", &c.voting.activation_hook);

    for (i, u) in c.webhooks.urls.iter().enumerate() {
        p.url(&format!("webhooks.urls[{i}]"), u);
    }
    for (i, e) in c.webhooks.events.iter().enumerate() {
        if !WEBHOOK_EVENTS.contains(&e.as_str()) {
            p.add(
                format!("webhooks.events[{i}]"),
                format!(
                    "{} is not an event; events are {}",
                    quote(e),
                    WEBHOOK_EVENTS.join(", ")
                ),
            );
        }
    }

    let m = &c.mirrors;
    if m.urls.len() > upswarm_proto::manifest::MAX_MIRRORS {
        p.add(
            "mirrors.urls",
            format!(
                "{} mirrors, more than the limit of {}",
                m.urls.len(),
                upswarm_proto::manifest::MAX_MIRRORS
            ),
        );
    }
    for (i, u) in m.urls.iter().enumerate() {
        if let Err(e) = upswarm_proto::manifest::check_mirror_url(u) {
            p.add(format!("mirrors.urls[{i}]"), format!("{}: {e}", quote(u)));
        } else if m.urls[..i].contains(u) {
            p.add(
                format!("mirrors.urls[{i}]"),
                format!("{} is listed twice", quote(u)),
            );
        }
    }
    p.duration("mirrors.after", m.after, Duration::ZERO, DAY);
    if m.max_in_flight == 0 || m.max_in_flight > 64 {
        p.add("mirrors.max_in_flight", "must be between 1 and 64");
    }
    p.duration("mirrors.backoff", m.backoff, SEC, DAY);
    p.duration("mirrors.timeout", m.timeout, SEC, HOUR);

    if p.0.is_empty() {
        Ok(())
    } else {
        Err(InvalidConfig {
            file: file.to_path_buf(),
            problems: p.0,
        })
    }
}

/// The `[managed.cosmovisor]` section, after the environment filled it in.
fn cosmovisor(p: &mut Problems, m: &super::config::Managed) {
    let Some(cv) = &m.cosmovisor else {
        p.add(
            "managed.cosmovisor",
            "cosmovisor mode needs the chain's home and binary name (home, name; or \
             DAEMON_HOME, DAEMON_NAME in the environment)",
        );
        return;
    };
    match &cv.home {
        None => p.add(
            "managed.cosmovisor.home",
            "is not set (nor DAEMON_HOME): name the chain's home directory",
        ),
        Some(h) if h.as_os_str().is_empty() => {
            p.add("managed.cosmovisor.home", "is empty");
        }
        Some(_) => {}
    }
    match cv.name.as_deref() {
        None => p.add(
            "managed.cosmovisor.name",
            "is not set (nor DAEMON_NAME): name the chain binary (e.g. gaiad)",
        ),
        Some(n) => {
            if let Err(e) = upswarm_proto::manifest::check_artifact_name(n) {
                p.add(
                    "managed.cosmovisor.name",
                    format!("must be a plain file name: {e}"),
                );
            }
        }
    }
    if cv.restart_after_upgrade == Some(false) {
        p.add(
            "managed.cosmovisor.restart_after_upgrade",
            "false is not supported (nor DAEMON_RESTART_AFTER_UPGRADE=false): upswarm always \
             starts the new binary after the switch and checks its health",
        );
    }
    if cv.args.iter().any(|a| a.contains('\0')) {
        p.add("managed.cosmovisor.args", "contains a NUL character");
    }
    if let Some(d) = cv.poll_interval {
        p.duration("managed.cosmovisor.poll_interval", d, 10 * MS, HOUR);
    }
    if !m.args.is_empty() {
        p.add(
            "managed.args",
            "is not used in cosmovisor mode: put the chain's arguments in \
             managed.cosmovisor.args",
        );
    }
    if m.data_dir.is_some() {
        p.add(
            "managed.data_dir",
            "is not used in cosmovisor mode: <home>/data is backed up (see \
             managed.cosmovisor.unsafe_skip_backup)",
        );
    }
    if !m.hooks.pre_upgrade.is_empty() || !m.hooks.start.is_empty() || !m.hooks.stop.is_empty() {
        p.add(
            "managed.hooks",
            "hooks are not run in cosmovisor mode: leave them out",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The problems of a configuration of one product (`app`) with `extra` appended.
    fn problems(extra: &str) -> Vec<Problem> {
        problems_of(&format!("products = [\"app\"]\n{extra}"))
    }

    fn problems_of(extra: &str) -> Vec<Problem> {
        let text = format!("data_dir = \"d\"\ntrust_root = \"r\"\n{extra}");
        let c: Config = toml::from_str(&text).unwrap();
        match check(&c, Path::new("/etc/upswarm/node.toml")) {
            Ok(()) => Vec::new(),
            Err(e) => e.problems,
        }
    }

    fn fields(extra: &str) -> Vec<String> {
        problems(extra).into_iter().map(|p| p.field).collect()
    }

    #[test]
    fn cosmovisor_mode_needs_home_and_name_and_refuses_what_it_does_not_use() {
        let cv = "[managed]\nmode = \"cosmovisor\"\n[managed.cosmovisor]\n";
        assert!(
            problems(&format!(
                "{cv}home = \"/h\"\nname = \"gaiad\"\nargs = [\"start\"]\n"
            ))
            .is_empty()
        );
        assert_eq!(
            fields(cv),
            ["managed.cosmovisor.home", "managed.cosmovisor.name"]
        );
        assert_eq!(
            fields(&format!(
                "{cv}home = \"/h\"\nname = \"../x\"\nrestart_after_upgrade = false\n"
            )),
            [
                "managed.cosmovisor.name",
                "managed.cosmovisor.restart_after_upgrade"
            ]
        );
        assert_eq!(
            fields(
                "[managed]\nmode = \"cosmovisor\"\ncommand = \"app\"\nargs = [\"x\"]\n\
                 [managed.cosmovisor]\nhome = \"/h\"\nname = \"gaiad\"\n"
            ),
            ["managed.args", "managed.command"]
        );
        assert_eq!(
            fields("[managed]\ncommand = \"app\"\n[managed.cosmovisor]\nname = \"gaiad\"\n"),
            ["managed.cosmovisor"]
        );
        // The section left out entirely.
        assert_eq!(
            fields("[managed]\nmode = \"cosmovisor\"\n"),
            ["managed.cosmovisor"]
        );
    }

    #[test]
    fn defaults_are_valid() {
        assert!(problems("").is_empty());
        assert!(problems("[managed]\ncommand = \"app\"\n").is_empty());
    }

    #[test]
    fn the_managed_program_names_its_product_unless_there_is_one() {
        let fields_of = |extra: &str| -> Vec<String> {
            problems_of(extra).into_iter().map(|p| p.field).collect()
        };
        assert_eq!(
            fields_of("[managed]\ncommand = \"app\"\n"),
            ["managed.product"]
        );
        assert_eq!(
            fields_of("products = [\"a\", \"b\"]\n[managed]\ncommand = \"app\"\n"),
            ["managed.product"]
        );
        assert!(
            fields_of("products = [\"a\", \"b\"]\n[managed]\nproduct = \"b\"\ncommand = \"app\"\n")
                .is_empty()
        );
        assert!(fields_of("products = [\"a\"]\n[managed]\ncommand = \"app\"\n").is_empty());
    }

    #[test]
    fn retention_settings_are_bounded() {
        assert!(problems("[retention]\nkeep_releases = 1\ngrace = \"0s\"\nkeep_backups = 1\ninterval = \"1m\"\n").is_empty());
        assert_eq!(
            fields(
                "[retention]\nkeep_releases = 0\nkeep_backups = 5000\ngrace = \"100y\"\ninterval = \"0s\"\n"
            ),
            [
                "retention.keep_releases",
                "retention.keep_backups",
                "retention.grace",
                "retention.interval"
            ]
        );
    }

    #[test]
    fn nat_options_are_checked() {
        assert!(
            problems(
                "[network_options]\nrelay_server = true\nupnp = true\n\
                 external_addresses = [\"/ip4/203.0.113.7/tcp/4001\"]\n\
                 relays = [\"/ip4/203.0.113.8/tcp/4001/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA\"]\n"
            )
            .is_empty()
        );
        assert_eq!(
            fields(
                "[network_options]\nexternal_addresses = [\"203.0.113.7:4001\"]\n\
                 relays = [\"/ip4/203.0.113.8/tcp/4001\"]\nrelay_max_circuits = 0\n\
                 relay_max_circuit_bytes = \"1KiB\"\nrelay_max_circuit_duration = \"0s\"\n"
            ),
            [
                "network_options.external_addresses[0]",
                "network_options.relays[0]",
                "network_options.relay_max_circuits",
                "network_options.relay_max_circuit_duration",
                "network_options.relay_max_circuit_bytes",
            ]
        );
    }

    #[test]
    fn zero_and_absurd_durations_are_named() {
        assert_eq!(
            fields("[network_options]\ndht_refresh = \"0s\"\n"),
            ["network_options.dht_refresh"]
        );
        assert_eq!(
            fields("[rollout]\nresync_interval = \"0s\"\n"),
            ["rollout.resync_interval"]
        );
        assert_eq!(fields("clock_skew = \"100000000000y\"\n"), ["clock_skew"]);
        assert_eq!(
            fields(
                "[managed]\ncommand = \"app\"\n[managed.health]\ninterval = \"0s\"\ntimeout = \"0s\"\ndeadline = \"0s\"\nsuccesses = 0\n"
            ),
            [
                "managed.health.timeout",
                "managed.health.interval",
                "managed.health.deadline",
                "managed.health.successes"
            ]
        );
    }

    #[test]
    fn windows_urls_signals_events_command_and_hooks() {
        let f = fields(
            "[[policy.windows]]\ndays = [\"funday\"]\nstart = \"02:00\"\nend = \"03:00\"\n\
             [[policy.windows]]\nstart = \"25:99\"\nend = \"03:00\"\n\
             [[policy.windows]]\nstart = \"01:00\"\nend = \"03:00\"\ntimezone = \"Mars/Olympus\"\n",
        );
        assert_eq!(
            f,
            [
                "policy.windows[0]",
                "policy.windows[1]",
                "policy.windows[2]"
            ]
        );
        assert_eq!(
            fields("[managed]\ncommand = \"app\"\n[managed.health]\nhttp = \"not a url\"\n"),
            ["managed.health.http"]
        );
        assert_eq!(
            fields("[webhooks]\nurls = [\"ftp://x/y\"]\nevents = [\"applied\", \"exploded\"]\n"),
            ["webhooks.urls[0]", "webhooks.events[1]"]
        );
        assert_eq!(
            fields(
                "[mirrors]\nurls = [\"ftp://m/x\", \"https://m/r/\", \"https://m/r\", \"https://m/r\"]\n\
                 after = \"2d\"\nmax_in_flight = 0\nbackoff = \"0s\"\ntimeout = \"0s\"\n"
            ),
            [
                "mirrors.urls[0]",
                "mirrors.urls[1]",
                "mirrors.urls[3]",
                "mirrors.after",
                "mirrors.max_in_flight",
                "mirrors.backoff",
                "mirrors.timeout"
            ]
        );
        assert!(
            problems("[mirrors]\nurls = [\"https://m.example/r\"]\nafter = \"0s\"\n").is_empty()
        );
        assert_eq!(
            fields("[managed]\ncommand = \"app\"\nstop_signal = \"SIGFOO\"\n"),
            ["managed.stop_signal"]
        );
        assert!(problems("[managed]\ncommand = \"app\"\nstop_signal = \"INT\"\n").is_empty());
        assert_eq!(fields("[managed]\ncommand = \"\"\n"), ["managed.command"]);
        assert_eq!(
            fields("[managed]\nmode = \"external\"\ncommand = \"/usr/bin/node\"\n"),
            ["managed.hooks.start", "managed.hooks.stop"]
        );
        assert_eq!(
            fields("[managed]\ncommand = \"app\"\n[managed.hooks]\ntimeout = \"0s\"\n"),
            ["managed.hooks.timeout"]
        );
    }

    #[test]
    fn the_message_names_file_and_field() {
        let c: Config = toml::from_str(
            "data_dir = \"d\"\ntrust_root = \"r\"\n[network_options]\ndht_refresh = \"0s\"\n",
        )
        .unwrap();
        let e = check(&c, Path::new("/etc/upswarm/node.toml")).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(
                "/etc/upswarm/node.toml: network_options.dht_refresh: 0s is out of range"
            ),
            "{text}"
        );
    }

    #[test]
    fn fault_injection_is_not_a_configuration_key() {
        // Misbehaviour lives in test builds (the `fault-injection` feature) and in the evil
        // peer, never in a configuration file.
        let err = toml::from_str::<Config>(
            "data_dir = \"d\"\ntrust_root = \"r\"\n[fault_injection]\napply_pause_at = \"commit\"\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("fault_injection"), "{err}");
    }
}
