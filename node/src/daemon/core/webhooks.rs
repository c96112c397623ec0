//! Event webhooks and halt announcements.

use super::*;

impl Core {
    /// Announces (once each) releases whose rollout halted network-wide.
    pub(super) fn watch_halts(&mut self) {
        let now = self.now();
        let skew = self.ctx.config.clock_skew.as_secs();
        let followed = self
            .releases
            .iter()
            .filter(|(_, k)| self.follows(&k.verified.manifest))
            .map(|(id, k)| Self::release_facts(id, k));
        let newly = decide::new_halts(&self.book, followed, &self.halted_seen, now, skew);
        for h in newly {
            self.halted_seen.insert(h.release);
            warn!(release = %h.release, version = %h.version, "rollout {}", h.reason);
            let details = serde_json::json!({ "release": h.release.to_hex(), "version": h.version.to_string(), "reason": h.reason });
            self.webhook("halted", details);
        }
        // The gauge counts the current rollouts only — the newest followed release of each
        // product and channel — so that a fixed release published after a halt clears it.
        let halted_now = self
            .latest
            .values()
            .filter_map(|(_, id)| self.releases.get(id).map(|k| (id, k)))
            .filter(|(_, k)| self.follows(&k.verified.manifest))
            .filter(|(id, k)| {
                self.book
                    .evaluate(id, &k.verified.manifest, now, skew)
                    .halted
                    .is_some()
            })
            .count();
        self.ctx
            .metrics
            .rollouts_halted
            .store(halted_now as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// The trust root's expiry: sets its metric, and raises the `root_expiring` alarm (in
    /// `status`; in the log and the webhooks once per root version and kind) when the pinned root
    /// expires within `alarms.root_expiry_warning`, or has expired.
    pub(super) fn watch_root(&mut self) {
        let root = self.chain.current().root();
        let (version, expires_at) = (root.version, root.expires_at);
        self.ctx
            .metrics
            .root_expiry_timestamp_seconds
            .store(expires_at, std::sync::atomic::Ordering::Relaxed);
        let now = self.now();
        let alarm = root_alarm(
            version,
            expires_at,
            now,
            self.ctx.config.alarms.root_expiry_warning,
        );
        // Announced once per root version and kind (expiring soon, expired): the text
        // itself changes every day with the days left.
        let announced = |a: &Option<String>| {
            a.as_ref()
                .map(|a| (version, a.starts_with("trust root expired")))
        };
        if let Some(a) = &alarm
            && announced(&alarm) != self.root_alarm_announced
        {
            warn!("{a}");
            let details = serde_json::json!({ "alarm": a, "root_version": version, "expires_at": expires_at });
            self.webhook("root_expiring", details);
        }
        self.root_alarm_announced = announced(&alarm);
        self.root_alarm = alarm;
    }

    /// Sends an event to the operator's webhooks (fire and forget, 5 s timeout, logged).
    pub(super) fn webhook(&self, event: &str, details: serde_json::Value) {
        let hooks = &self.ctx.config.webhooks;
        if hooks.urls.is_empty()
            || !(hooks.events.is_empty() || hooks.events.iter().any(|e| e == event))
        {
            return;
        }
        let mut body = serde_json::json!({ "event": event, "at": self.now(), "node_id": self.ctx.node_key.key_id().to_hex() });
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

/// The alarm about a trust root that expires at `expires_at`, if it is due at `now`.
pub(super) fn root_alarm(
    version: u64,
    expires_at: u64,
    now: u64,
    warn_ahead: std::time::Duration,
) -> Option<String> {
    // Past 9999-12-31 RFC 3339 has no form: such a root never comes near its expiry.
    let at = if expires_at > 253_402_300_799 {
        return None;
    } else {
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(expires_at),
        )
    };
    if expires_at <= now {
        return Some(format!(
            "trust root expired: version {version} expired at {at}; nodes refuse what it signs — hand a newer root to a node (upswarm root rotate, root sign, root publish)"
        ));
    }
    let left = expires_at - now;
    (left <= warn_ahead.as_secs()).then(|| {
        format!(
            "trust root expires soon: version {version} expires at {at}, in {} days — rotate it before then (upswarm root rotate, root sign, root publish)",
            left.div_ceil(86400)
        )
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::root_alarm;

    #[test]
    fn root_alarm_is_raised_inside_the_warning_period_only() {
        let day = 86400;
        let warn = Duration::from_secs(30 * day);
        let now = 1_800_000_000;
        assert_eq!(root_alarm(3, now + 31 * day, now, warn), None);
        let a = root_alarm(3, now + 10 * day, now, warn).unwrap();
        assert!(a.contains("version 3") && a.contains("in 10 days"), "{a}");
        let a = root_alarm(3, now - 1, now, warn).unwrap();
        assert!(a.starts_with("trust root expired"), "{a}");
    }
}
