//! The deployer's config file (YAML, like the manifests it sits next to): where the app lives,
//! how traffic reaches it, the strategy, rollback timing and deployment windows.
//!
//! ```yaml
//! namespace: shop
//! cluster: shop                  # server groups are shop-v000, shop-v001, ...
//! traffic:
//!   type: http_route             # or: {type: service, service: shop}
//!   route: shop
//!   port: 80
//! strategy:
//!   type: rolling_red_black      # red_black | rolling_red_black | highlander
//!   steps: [25, 50, 75, 100]
//!   max_history: 2               # disabled server groups kept scaled for instant rollback
//! config_history: 3              # versioned ConfigMaps/Secrets kept per name
//! rollback:
//!   drain_seconds: 30
//!   retention_seconds: 0
//!   ready_timeout_seconds: 300
//!   traffic_steps: [50, 100]     # optional, HTTPRoute only: move the canary's share in steps
//! windows:                       # absent = always allowed; rollback is always allowed
//!   time_zone: Europe/Berlin
//!   outside: refuse              # or: wait
//!   allowed:
//!     - days: [mon, tue, wed, thu]
//!       from: "09:00"
//!       to: "16:00"
//! ```
//!
//! Time zones are IANA names resolved with jiff's bundled tz database, so daylight saving time is
//! right without depending on the host's zoneinfo.

use std::time::Duration;

use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Deserialize;

use crate::rollback::RollbackOptions;
use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployerConfig {
    pub namespace: String,
    pub cluster: String,
    pub traffic: TrafficConfig,
    #[serde(default)]
    pub strategy: StrategyConfig,
    #[serde(default = "default_config_history")]
    pub config_history: usize,
    #[serde(default)]
    pub rollback: RollbackConfig,
    #[serde(default)]
    pub windows: Option<WindowsConfig>,
}

fn default_config_history() -> usize {
    3
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TrafficConfig {
    /// One Service; the serving group is the one its selector names.
    Service { service: String },
    /// An HTTPRoute whose first rule's backendRefs are one Service per server group, named
    /// after the group (the deployer creates them).
    HttpRoute {
        route: String,
        #[serde(default = "default_port")]
        port: i32,
    },
}

fn default_port() -> i32 {
    80
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum StrategyConfig {
    RedBlack {
        #[serde(default = "default_history")]
        max_history: usize,
    },
    RollingRedBlack {
        #[serde(default = "default_steps")]
        steps: Vec<u32>,
        #[serde(default = "default_history")]
        max_history: usize,
    },
    Highlander,
}

impl Default for StrategyConfig {
    fn default() -> Self {
        StrategyConfig::RedBlack {
            max_history: default_history(),
        }
    }
}

fn default_history() -> usize {
    2
}

fn default_steps() -> Vec<u32> {
    vec![25, 50, 75, 100]
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackConfig {
    #[serde(default = "default_drain")]
    pub drain_seconds: u64,
    #[serde(default)]
    pub retention_seconds: u64,
    #[serde(default = "default_ready_timeout")]
    pub ready_timeout_seconds: u64,
    /// Percent steps of the canary's share moved to the baseline (HTTPRoute only); empty = one step.
    #[serde(default)]
    pub traffic_steps: Vec<u32>,
}

impl Default for RollbackConfig {
    fn default() -> Self {
        RollbackConfig {
            drain_seconds: default_drain(),
            retention_seconds: 0,
            ready_timeout_seconds: default_ready_timeout(),
            traffic_steps: Vec::new(),
        }
    }
}

fn default_drain() -> u64 {
    30
}

fn default_ready_timeout() -> u64 {
    300
}

impl RollbackConfig {
    pub fn options(&self) -> RollbackOptions {
        RollbackOptions {
            drain: Duration::from_secs(self.drain_seconds),
            retention: Duration::from_secs(self.retention_seconds),
            ready_timeout: Duration::from_secs(self.ready_timeout_seconds),
            traffic_steps: self.traffic_steps.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutsideWindow {
    Refuse,
    Wait,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowsConfig {
    pub time_zone: String,
    #[serde(default = "default_outside")]
    pub outside: OutsideWindow,
    pub allowed: Vec<WindowConfig>,
}

fn default_outside() -> OutsideWindow {
    OutsideWindow::Refuse
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    pub days: Vec<String>,
    pub from: String,
    pub to: String,
}

/// Parses and validates a config file's text; errors name the field.
pub fn parse(text: &str) -> Result<DeployerConfig> {
    let cfg: DeployerConfig = serde_saphyr::from_str(text).map_err(|e| Error::Invalid {
        field: "config file".into(),
        message: e.to_string(),
    })?;
    if let StrategyConfig::RollingRedBlack { steps, .. } = &cfg.strategy {
        if steps.is_empty()
            || steps.windows(2).any(|w| w[0] >= w[1])
            || steps.iter().any(|s| *s == 0 || *s > 100)
            || steps.last() != Some(&100)
        {
            return Err(Error::Invalid {
                field: "strategy.steps".into(),
                message: format!(
                    "expected increasing percentages in 1..=100 ending at 100, got {steps:?}"
                ),
            });
        }
        if matches!(cfg.traffic, TrafficConfig::Service { .. }) {
            return Err(Error::Invalid {
                field: "strategy".into(),
                message:
                    "rolling_red_black shifts traffic by weight and needs traffic.type http_route"
                        .into(),
            });
        }
    }
    if let Some(w) = &cfg.windows {
        Windows::from_config(w)?;
    }
    Ok(cfg)
}

/// Reads a Deployment manifest (YAML or JSON) for `vigil deploy`.
pub fn parse_manifest(text: &str) -> Result<k8s_openapi::api::apps::v1::Deployment> {
    let d: k8s_openapi::api::apps::v1::Deployment =
        serde_saphyr::from_str(text).map_err(|e| Error::Invalid {
            field: "manifest".into(),
            message: format!("expected an apps/v1 Deployment: {e}"),
        })?;
    if d.spec.is_none() {
        return Err(Error::Invalid {
            field: "manifest.spec".into(),
            message: "a Deployment needs a spec with selector and template".into(),
        });
    }
    Ok(d)
}

/// Deployment windows, resolved.
#[derive(Debug, Clone)]
pub struct Windows {
    tz: TimeZone,
    tz_name: String,
    pub outside: OutsideWindow,
    ranges: Vec<(Vec<Weekday>, u32, u32)>,
}

fn weekday(s: &str) -> Option<Weekday> {
    Some(match s.to_ascii_lowercase().get(..3)? {
        "mon" => Weekday::Monday,
        "tue" => Weekday::Tuesday,
        "wed" => Weekday::Wednesday,
        "thu" => Weekday::Thursday,
        "fri" => Weekday::Friday,
        "sat" => Weekday::Saturday,
        "sun" => Weekday::Sunday,
        _ => return None,
    })
}

fn minutes(field: &str, s: &str) -> Result<u32> {
    let bad = || Error::Invalid {
        field: field.into(),
        message: format!("expected HH:MM (24 h), got {s:?}"),
    };
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 24 || m > 59 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl Windows {
    pub fn from_config(c: &WindowsConfig) -> Result<Self> {
        let tz = TimeZone::get(&c.time_zone).map_err(|e| Error::Invalid {
            field: "windows.time_zone".into(),
            message: format!("unknown IANA time zone {:?}: {e}", c.time_zone),
        })?;
        let mut ranges = Vec::new();
        for (i, w) in c.allowed.iter().enumerate() {
            let days = w
                .days
                .iter()
                .map(|d| {
                    weekday(d).ok_or_else(|| Error::Invalid {
                        field: format!("windows.allowed[{i}].days"),
                        message: format!("expected mon..sun, got {d:?}"),
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let from = minutes(&format!("windows.allowed[{i}].from"), &w.from)?;
            let to = minutes(&format!("windows.allowed[{i}].to"), &w.to)?;
            if to <= from {
                return Err(Error::Invalid {
                    field: format!("windows.allowed[{i}]"),
                    message: format!("'to' ({}) must be after 'from' ({})", w.to, w.from),
                });
            }
            ranges.push((days, from, to));
        }
        if ranges.is_empty() {
            return Err(Error::Invalid {
                field: "windows.allowed".into(),
                message: "at least one window is needed (omit `windows` to allow any time)".into(),
            });
        }
        Ok(Windows {
            tz,
            tz_name: c.time_zone.clone(),
            outside: c.outside,
            ranges,
        })
    }

    pub fn is_open(&self, at: Timestamp) -> bool {
        let z = at.to_zoned(self.tz.clone());
        let m = z.hour() as u32 * 60 + z.minute() as u32;
        self.ranges
            .iter()
            .any(|(days, from, to)| days.contains(&z.weekday()) && m >= *from && m < *to)
    }

    /// The next moment a window is open (`at` itself if open now), within 8 days.
    pub fn next_open(&self, at: Timestamp) -> Option<Timestamp> {
        if self.is_open(at) {
            return Some(at);
        }
        let today = at.to_zoned(self.tz.clone()).date();
        let mut best: Option<Timestamp> = None;
        for d in 0..8 {
            let Ok(date) = today.checked_add(jiff::Span::new().days(d)) else {
                continue;
            };
            for (days, from, _) in &self.ranges {
                if !days.contains(&date.weekday()) {
                    continue;
                }
                // A start inside a DST gap resolves to the first instant after it.
                let start = date.at((from / 60) as i8, (from % 60) as i8, 0, 0);
                let Ok(z) = start.to_zoned(self.tz.clone()) else {
                    continue;
                };
                let t = z.timestamp();
                if t >= at && best.is_none_or(|b| t < b) {
                    best = Some(t);
                }
            }
        }
        best
    }

    /// `Ok` if a deploy may start at `at`; otherwise a message naming the next window.
    pub fn check(&self, at: Timestamp) -> std::result::Result<(), String> {
        if self.is_open(at) {
            return Ok(());
        }
        let next = self
            .next_open(at)
            .map(|t| {
                format!(
                    "the next window opens at {} ({})",
                    t.to_zoned(self.tz.clone()).strftime("%a %Y-%m-%d %H:%M %Z"),
                    self.tz_name
                )
            })
            .unwrap_or_else(|| "no window opens within 8 days".into());
        Err(format!(
            "{} is outside the allowed deployment windows; {next}",
            at.to_zoned(self.tz.clone())
                .strftime("%a %Y-%m-%d %H:%M %Z")
        ))
    }

    /// Refuses, or waits for the next window, per `outside`. Rollbacks never call this.
    pub async fn enforce(&self) -> Result<()> {
        self.enforce_with(Timestamp::now, tokio::time::sleep).await
    }

    /// [`Windows::enforce`] with the clock and the sleep supplied (tests run days in no time).
    /// Sleeps at most a minute at a time, so a changed clock (suspend, NTP step) is noticed.
    pub async fn enforce_with<N, S, F>(&self, mut now: N, mut sleep: S) -> Result<()>
    where
        N: FnMut() -> Timestamp,
        S: FnMut(Duration) -> F,
        F: std::future::Future<Output = ()>,
    {
        loop {
            let at = now();
            match self.check(at) {
                Ok(()) => return Ok(()),
                Err(msg) if self.outside == OutsideWindow::Refuse => {
                    return Err(Error::OutsideWindow(msg))
                }
                Err(msg) => {
                    tracing::info!(%msg, "waiting for the deployment window");
                    let next = self
                        .next_open(at)
                        .ok_or_else(|| Error::OutsideWindow(msg.clone()))?;
                    let secs = (next.as_second() - at.as_second()).max(1) as u64;
                    sleep(Duration::from_secs(secs.min(60))).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
namespace: shop
cluster: shop
traffic: {type: http_route, route: shop}
strategy: {type: rolling_red_black, steps: [10, 50, 100]}
rollback: {drain_seconds: 0}
windows:
  time_zone: Europe/Berlin
  allowed:
    - days: [mon, tue, wed, thu]
      from: "09:00"
      to: "16:00"
"#;

    #[test]
    fn parses_and_defaults() {
        let c = parse(FULL).unwrap();
        assert_eq!(
            c.strategy,
            StrategyConfig::RollingRedBlack {
                steps: vec![10, 50, 100],
                max_history: 2
            }
        );
        assert_eq!(c.rollback.options().drain, Duration::ZERO);
        assert_eq!(c.rollback.options().ready_timeout, Duration::from_secs(300));
        assert_eq!(
            c.traffic,
            TrafficConfig::HttpRoute {
                route: "shop".into(),
                port: 80
            }
        );
    }

    #[test]
    fn bad_input_names_the_field() {
        let e = parse(&FULL.replace("[10, 50, 100]", "[50, 10, 100]"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("strategy.steps"), "{e}");
        let e = parse(&FULL.replace("Europe/Berlin", "Mars/Olympus"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("windows.time_zone"), "{e}");
        let e = parse(&FULL.replace("\"16:00\"", "\"16h\""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("windows.allowed[0].to"), "{e}");
        let e = parse(&FULL.replace("[mon, tue", "[funday, tue"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("windows.allowed[0].days"), "{e}");
        assert!(parse(&FULL.replace("cluster: shop", "clusterr: shop")).is_err());
        let e = parse(&FULL.replace("route: shop", "rout: shop"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("rout"), "{e}");
        let e = parse(&FULL.replace("type: http_route", "type: ingress"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ingress"), "{e}");
    }

    #[test]
    fn windows_follow_the_time_zone_including_dst() {
        let w = Windows::from_config(parse(FULL).unwrap().windows.as_ref().unwrap()).unwrap();
        // Thursday 2026-07-02 07:30 UTC = 09:30 CEST (UTC+2): open.
        assert!(w.is_open("2026-07-02T07:30:00Z".parse().unwrap()));
        // Thursday 2026-01-08 07:30 UTC = 08:30 CET (UTC+1): closed; opens 08:00 UTC.
        let at: Timestamp = "2026-01-08T07:30:00Z".parse().unwrap();
        assert!(!w.is_open(at));
        assert_eq!(
            w.next_open(at),
            Some("2026-01-08T08:00:00Z".parse().unwrap())
        );
        // Friday: closed until Monday 09:00 CET = 08:00 UTC.
        let fri: Timestamp = "2026-01-09T10:00:00Z".parse().unwrap();
        let msg = w.check(fri).unwrap_err();
        assert!(msg.contains("Mon 2026-01-12 09:00"), "{msg}");
        // 16:00 itself is outside (ranges are half-open).
        assert!(!w.is_open("2026-01-08T15:00:00Z".parse().unwrap()));
    }

    #[tokio::test]
    async fn wait_mode_sleeps_until_the_window_opens() {
        let mut cfg = parse(FULL).unwrap().windows.unwrap();
        cfg.outside = OutsideWindow::Wait;
        let w = Windows::from_config(&cfg).unwrap();
        // Friday 11:00 CET; the window opens Monday 09:00 CET = 2026-01-12T08:00:00Z.
        let clock = std::cell::Cell::new("2026-01-09T10:00:00Z".parse::<Timestamp>().unwrap());
        let slept = std::cell::Cell::new(0u64);
        w.enforce_with(
            || clock.get(),
            |d| {
                clock.set(clock.get() + jiff::SignedDuration::from_secs(d.as_secs() as i64));
                slept.set(slept.get() + 1);
                std::future::ready(())
            },
        )
        .await
        .unwrap();
        assert_eq!(
            clock.get(),
            "2026-01-12T08:00:00Z".parse::<Timestamp>().unwrap()
        );
        // 2 days 22 hours in one-minute sleeps.
        assert_eq!(slept.get(), (2 * 24 + 22) * 60);
        cfg.outside = OutsideWindow::Refuse;
        let w = Windows::from_config(&cfg).unwrap();
        let at = "2026-01-09T10:00:00Z".parse::<Timestamp>().unwrap();
        let e = w
            .enforce_with(|| at, |_| std::future::ready(()))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::OutsideWindow(_)));
    }
}
