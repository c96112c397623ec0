//! `upswarm daemon`, `status`, `releases`.

use std::path::Path;

use super::client::{ApiArgs, ApiClient, block_on};
use crate::daemon::core::{ReleaseView, StatusView};
use crate::daemon::state::DownloadState;
use crate::daemon::{self, Config};

pub(super) fn daemon(config: &Path) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    block_on(daemon::run(config))
}

pub(super) fn status(api: &ApiArgs, json: bool) -> anyhow::Result<()> {
    block_on(async {
        let s: StatusView = ApiClient::new(api)?.get("/v1/status").await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&s)?);
            return Ok(());
        }
        println!("node      {} (peer {})", &s.node_id[..16], s.peer_id);
        println!(
            "network   {}, trust root version {}",
            s.network, s.root_version
        );
        println!("peers     {}", s.peers.len());
        println!("releases  {}", s.releases.len());
        for r in &s.releases {
            print_release(r);
        }
        let c = &s.counters;
        println!(
            "transfer  fetched {} chunks ({} bytes), served {}, reused {}, bad received {}, peers banned {}",
            c.chunks_fetched,
            c.bytes_fetched,
            c.blobs_served,
            c.chunks_reused,
            c.bad_chunks_received,
            c.peers_banned
        );
        Ok(())
    })
}

pub(super) fn releases(api: &ApiArgs, json: bool) -> anyhow::Result<()> {
    block_on(async {
        let list: Vec<ReleaseView> = ApiClient::new(api)?.get("/v1/releases").await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&list)?);
        } else if list.is_empty() {
            println!("no releases known yet");
        } else {
            for r in &list {
                print_release(r);
            }
        }
        Ok(())
    })
}

fn print_release(r: &ReleaseView) {
    let state = match &r.download {
        DownloadState::NotFollowed => "not followed".to_string(),
        DownloadState::Downloading => match &r.progress {
            Some(p) if p.chunks_total > 0 => format!(
                "downloading {}/{} chunks ({}%)",
                p.chunks_held,
                p.chunks_total,
                p.chunks_held * 100 / p.chunks_total
            ),
            _ => "downloading (looking for peers)".to_string(),
        },
        DownloadState::Complete { .. } => "complete, seeding".to_string(),
        DownloadState::Failed { reason } => format!("FAILED: {reason}"),
    };
    println!(
        "  {} {} [{}] {} — {}",
        r.name,
        r.version,
        r.channel,
        &r.id[..16],
        state
    );
}
