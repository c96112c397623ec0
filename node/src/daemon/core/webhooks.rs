//! Event webhooks and halt announcements.

use super::*;

impl Core {
    /// Announces (once each) releases whose rollout halted network-wide.
    pub(super) fn watch_halts(&self) {
        let now = unix_now();
        let skew = self.ctx.config.clock_skew.as_secs();
        for (id, k) in &self.releases {
            if !self.follows(&k.verified.manifest) {
                continue;
            }
            let e = self.book.evaluate(id, &k.verified.manifest, now, skew);
            if let Some(h) = &e.halted
                && self.halted_seen.lock().is_ok_and(|mut s| s.insert(*id))
            {
                warn!(release = %id, version = %k.verified.manifest.version, "rollout {h}");
                let details = serde_json::json!({ "release": id.to_hex(), "version": k.verified.manifest.version.to_string(), "reason": h.to_string() });
                self.webhook("halted", details);
            }
        }
    }

    /// Sends an event to the operator's webhooks (fire and forget, 5 s timeout, logged).
    pub(super) fn webhook(&self, event: &str, details: serde_json::Value) {
        let hooks = &self.ctx.config.webhooks;
        if hooks.urls.is_empty()
            || !(hooks.events.is_empty() || hooks.events.iter().any(|e| e == event))
        {
            return;
        }
        let mut body = serde_json::json!({ "event": event, "at": unix_now(), "node_id": self.ctx.node_key.key_id().to_hex() });
        if let (Some(b), serde_json::Value::Object(d)) = (body.as_object_mut(), details) {
            b.extend(d);
        }
        for url in hooks.urls.clone() {
            let body = body.clone();
            tokio::spawn(async move {
                let client = match crate::http::client(Duration::from_secs(5)) {
                    Ok(c) => c,
                    Err(e) => return warn!("webhook client: {e}"),
                };
                match client.post(&url).json(&body).send().await {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => warn!(%url, "webhook answered HTTP {}", r.status()),
                    Err(e) => warn!(%url, "webhook failed: {e}"),
                }
            });
        }
    }
}
