//! Event webhooks and halt announcements.

use super::*;

impl Core {
    /// Announces (once each) releases whose rollout halted network-wide.
    pub(super) fn watch_halts(&mut self) {
        let now = unix_now();
        let skew = self.ctx.config.clock_skew.as_secs();
        let mut newly = Vec::new();
        for (id, k) in &self.releases {
            if !self.follows(&k.verified.manifest) || self.halted_seen.contains(id) {
                continue;
            }
            let e = self.book.evaluate(id, &k.verified.manifest, now, skew);
            if let Some(h) = &e.halted {
                newly.push((*id, k.verified.manifest.version.clone(), h.to_string()));
            }
        }
        for (id, version, reason) in newly {
            self.halted_seen.insert(id);
            warn!(release = %id, %version, "rollout {reason}");
            let details = serde_json::json!({ "release": id.to_hex(), "version": version.to_string(), "reason": reason });
            self.webhook("halted", details);
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
