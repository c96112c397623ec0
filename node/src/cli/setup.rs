//! Setting a node up: `upswarm init` (a commented, valid configuration from a few answers),
//! and the shell completions and man pages generated from the command-line definition
//! (`upswarm completions SHELL`, `upswarm man`), which the package installs.
//!
//! Of the daemon it uses only `Config`, to check the file it writes exactly as `--check-config`
//! would; it must not import other daemon internals. `init` never replaces a file without
//! `--force`, and never leaves one that fails that check.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::{Args, CommandFactory, ValueEnum};

use crate::daemon::Config;

/// Shells `upswarm completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
    Elvish,
    Powershell,
}

/// Prints the completion script for `shell` on stdout.
pub(super) fn completions(shell: Shell) -> anyhow::Result<()> {
    use clap_complete::Shell as S;
    let s = match shell {
        Shell::Bash => S::Bash,
        Shell::Zsh => S::Zsh,
        Shell::Fish => S::Fish,
        Shell::Elvish => S::Elvish,
        Shell::Powershell => S::PowerShell,
    };
    let mut cmd = super::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(s, &mut cmd, "upswarm", &mut out);
    stdout(&out)
}

/// `upswarm man`: the page of `upswarm` on stdout, or with `--out DIR` one page per command
/// (`upswarm.1`, `upswarm-daemon.1`, `upswarm-release-create.1`, …) written to DIR.
pub(super) fn man(out: Option<&Path>) -> anyhow::Result<()> {
    let cmd = super::Cli::command();
    let Some(dir) = out else {
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut page)?;
        return stdout(&page);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let mut written = 0;
    write_pages(cmd, "upswarm", dir, &mut written)?;
    println!("wrote {written} man page(s) to {}", dir.display());
    Ok(())
}

/// Writes `bytes` to stdout; a reader that went away ends the command quietly.
fn stdout(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

fn write_pages(
    cmd: clap::Command,
    name: &str,
    dir: &Path,
    written: &mut usize,
) -> anyhow::Result<()> {
    let cmd = cmd.name(name.to_string());
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page).with_context(|| format!("{}: cannot write", path.display()))?;
    *written += 1;
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let sub_name = format!("{name}-{}", sub.get_name());
        write_pages(sub.clone(), &sub_name, dir, written)?;
    }
    Ok(())
}

/// `upswarm init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write the configuration.
    #[arg(long, value_name = "FILE", default_value = "upswarm.toml")]
    pub out: PathBuf,
    /// Network name (every node of the fleet uses the same).
    #[arg(long)]
    pub network: Option<String>,
    /// The daemon's data directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The trust root your signers gave you (`root.cbor`).
    #[arg(long, value_name = "FILE")]
    pub trust_root: Option<PathBuf>,
    /// A bootstrap peer (`/ip4/…/tcp/4001/p2p/…` or `/dns4/…`); repeat for several.
    #[arg(long, value_name = "MULTIADDR")]
    pub bootstrap: Vec<String>,
    /// A release channel to follow; repeat for several (default: stable).
    #[arg(long)]
    pub channel: Vec<String>,
    /// The product whose releases this node runs (with --command).
    #[arg(long)]
    pub product: Option<String>,
    /// The managed program: an artifact name of the product's releases, or an absolute
    /// path. Without it, the node only distributes releases.
    #[arg(long, value_name = "COMMAND")]
    pub command: Option<String>,
    /// The managed program's health URL (http or https).
    #[arg(long, value_name = "URL")]
    pub health_url: Option<String>,
    /// Never ask; use the defaults for what is not given.
    #[arg(long)]
    pub yes: bool,
    /// Replace an existing file.
    #[arg(long)]
    pub force: bool,
}

/// The answers `init` works from.
#[derive(Debug, Clone)]
struct Answers {
    network: String,
    data_dir: PathBuf,
    trust_root: PathBuf,
    bootstrap: Vec<String>,
    channels: Vec<String>,
    product: Option<String>,
    command: Option<String>,
    health_url: Option<String>,
}

/// Writes a commented configuration from the flags (asking on a terminal for what is
/// missing), checks it exactly as the daemon would, and prints the next steps.
pub(super) fn init(a: &InitArgs) -> anyhow::Result<()> {
    if a.out.exists() && !a.force {
        bail!(
            "{}: already exists; pass --force to replace it",
            a.out.display()
        );
    }
    let interactive = !a.yes && std::io::stdin().is_terminal();
    let mut ask = Asker {
        interactive,
        input: std::io::stdin().lock(),
    };
    let answers = Answers {
        network: match &a.network {
            Some(n) => n.clone(),
            None => ask.text("Network name", "upswarm")?,
        },
        data_dir: match &a.data_dir {
            Some(d) => d.clone(),
            None => ask.text("Data directory", "/var/lib/upswarm")?.into(),
        },
        trust_root: match &a.trust_root {
            Some(t) => t.clone(),
            None => ask
                .text("Trust root file (root.cbor)", "/etc/upswarm/root.cbor")?
                .into(),
        },
        bootstrap: if a.bootstrap.is_empty() {
            ask.list("Bootstrap peers (multiaddrs, comma separated)")?
        } else {
            a.bootstrap.clone()
        },
        channels: if a.channel.is_empty() {
            vec!["stable".into()]
        } else {
            a.channel.clone()
        },
        product: None,
        command: match &a.command {
            Some(c) => Some(c.clone()),
            None => ask.optional("Managed program (empty: only distribute releases)")?,
        },
        health_url: a.health_url.clone(),
    };
    let mut answers = answers;
    answers.product = match (&a.product, &answers.command) {
        (Some(p), _) => Some(p.clone()),
        (None, None) => None,
        (None, Some(_)) if interactive => {
            Some(ask.text("Product whose releases it runs", "")?).filter(|p| !p.is_empty())
        }
        (None, Some(_)) => bail!(
            "--product is needed with --command: name the product whose releases the program runs"
        ),
    };
    if answers.command.is_some() && answers.product.is_none() {
        bail!("a managed program needs the product whose releases it runs");
    }
    let text = render(&answers);
    // Check the result exactly as `upswarm daemon --check-config` would, before it is
    // written where the operator expects it.
    let dir = a
        .out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.init.{}",
        a.out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    std::fs::write(&tmp, &text).with_context(|| format!("{}: cannot write", tmp.display()))?;
    if let Err(e) = Config::load(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.context("the answers do not make a valid configuration"));
    }
    std::fs::rename(&tmp, &a.out).with_context(|| format!("{}: cannot write", a.out.display()))?;
    println!("wrote {}", a.out.display());
    println!("next steps:");
    if !answers.trust_root.exists() {
        println!(
            "  1. put the trust root from your signers at {}",
            answers.trust_root.display()
        );
    }
    println!(
        "  2. upswarm daemon --config {} --check-config",
        a.out.display()
    );
    println!(
        "  3. upswarm daemon --config {}   (or: systemctl enable --now upswarm)",
        a.out.display()
    );
    println!("  4. upswarm status   (from another terminal)");
    Ok(())
}

struct Asker<R> {
    interactive: bool,
    input: R,
}

impl<R: BufRead> Asker<R> {
    fn line(&mut self, prompt: &str) -> anyhow::Result<String> {
        print!("{prompt}: ");
        std::io::stdout().flush()?;
        let mut s = String::new();
        self.input.read_line(&mut s)?;
        Ok(s.trim().to_string())
    }

    fn text(&mut self, prompt: &str, default: &str) -> anyhow::Result<String> {
        if !self.interactive {
            return Ok(default.to_string());
        }
        let s = self.line(&format!("{prompt} [{default}]"))?;
        Ok(if s.is_empty() { default.to_string() } else { s })
    }

    fn optional(&mut self, prompt: &str) -> anyhow::Result<Option<String>> {
        if !self.interactive {
            return Ok(None);
        }
        let s = self.line(prompt)?;
        Ok((!s.is_empty()).then_some(s))
    }

    fn list(&mut self, prompt: &str) -> anyhow::Result<Vec<String>> {
        if !self.interactive {
            return Ok(Vec::new());
        }
        Ok(self
            .line(prompt)?
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect())
    }
}

/// A TOML string literal.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn q_list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", inner.join(", "))
}

/// The commented configuration. Values not asked for are the defaults, written out (and
/// marked "default") so that the operator sees what they can change.
fn render(a: &Answers) -> String {
    let mut s = format!(
        "# upswarm daemon configuration, written by `upswarm init`.
# Every field is described in docs/operator-guide.md. Fields marked (default) can be left
# out; check a change with: upswarm daemon --config THIS_FILE --check-config

# Every node of the fleet uses the same network name.
network = {network}
data_dir = {data_dir}
# The pinned trust root from your signers.
trust_root = {trust_root}
channels = {channels}
# Products this node follows; empty: every product.
products = {products}
# Tolerated clock skew (default).
clock_skew = \"5m\"

[network_options]
# TCP and QUIC on every IPv4 address; open these ports (TCP and UDP) in the firewall.
listen = [\"/ip4/0.0.0.0/tcp/4001\", \"/ip4/0.0.0.0/udp/4001/quic-v1\"]
bootstrap = {bootstrap}
# Both directions; a node full up refuses newcomers (default).
max_connections = 512
# (default)
dht_refresh = \"30s\"

[transfer]
# Bytes per second, 0 = unlimited (default).
max_download_rate = \"0\"
max_upload_rate = \"0\"
# (default)
ban_after_faults = 3
ban_duration = \"1h\"

[api]
# Keep it on loopback (default).
listen = \"127.0.0.1:7780\"

[retention]
# Garbage collection of the data directory (defaults): the newest releases kept per
# (product, channel) besides those installed, the age below which none is removed, the
# data backups kept, and how often the daemon collects (`upswarm gc --dry-run` shows it).
keep_releases = 3
grace = \"7d\"
keep_backups = 3
interval = \"1h\"
",
        network = q(&a.network),
        data_dir = q(&a.data_dir.to_string_lossy()),
        trust_root = q(&a.trust_root.to_string_lossy()),
        channels = q_list(&a.channels),
        products = q_list(&a.product.iter().cloned().collect::<Vec<_>>()),
        bootstrap = q_list(&a.bootstrap),
    );
    match &a.command {
        Some(command) => {
            let health = match &a.health_url {
                Some(u) => format!("http = {}\n", q(u)),
                None => "# http = \"http://127.0.0.1:8080/health\"   (or command = [...]; none: running = healthy)\n"
                    .to_string(),
            };
            s.push_str(&format!(
                "
[managed]
# \"supervise\" (default): the daemon runs the program; or \"external\" with start/stop hooks;
# or \"cosmovisor\" for a Cosmos chain (docs/operator-guide.md, \"Cosmos chains\").
mode = \"supervise\"
# An artifact name of the releases, or an absolute path.
command = {command}
# (default)
keep_versions = 3

[managed.health]
{health}# (defaults)
timeout = \"2s\"
successes = 3
deadline = \"60s\"

[policy]
# Update types applied automatically (default); others wait for `upswarm apply`.
auto = [\"hotfix\", \"patch\", \"minor\", \"config\"]
",
                command = q(command),
            ));
        }
        None => s.push_str("\n# [managed]   (add it to have this node run and update a program)\n"),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_configurations_parse_and_quote_what_they_are_given() {
        let a = Answers {
            network: "net\"work".into(),
            data_dir: "/var/lib/upswarm".into(),
            trust_root: "/etc/upswarm/root.cbor".into(),
            bootstrap: vec!["/dns4/seed.example/tcp/4001/p2p/x".into()],
            channels: vec!["stable".into(), "beta".into()],
            product: Some("mynode".into()),
            command: Some("mynode".into()),
            health_url: Some("https://127.0.0.1:8080/health".into()),
        };
        let text = render(&a);
        let c: Config = toml::from_str(&text).unwrap();
        assert_eq!(c.network, "net\"work");
        assert_eq!(c.channels, ["stable", "beta"]);
        assert!(c.managed.is_some());
        let bare = Answers {
            command: None,
            health_url: None,
            product: None,
            ..a
        };
        let c: Config = toml::from_str(&render(&bare)).unwrap();
        assert!(c.managed.is_none());
    }
}
