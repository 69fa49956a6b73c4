//! The spec's `notify:` list: typed, checked before anything is stored, and redacted wherever a
//! spec is shown. Secrets may be inline (local use; then the store holds them), or named by an
//! environment variable or a file (`…_env`, `…_file`), read only when a message is sent.

use serde::{Deserialize, Serialize};

/// What is shown in place of an inline secret.
pub const REDACTED: &str = "[redacted]";

/// Most targets one analysis may name.
pub const MAX_TARGETS: usize = 20;

/// An event a target may be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// Final verdict Fail.
    Fail,
    /// Final verdict Marginal.
    Marginal,
    /// Final verdict Pass.
    Pass,
    /// Final verdict Inconclusive.
    Inconclusive,
    /// Final verdict Error.
    Error,
    /// The analysis was created.
    Started,
    /// The analysis was cancelled.
    Cancelled,
    /// A rollback completed or failed.
    Rollback,
    /// A promotion completed or failed.
    Promote,
    /// An interval's verdict differs from the one before (noisy: only when asked).
    Interim,
}

impl Event {
    /// The name used in the spec, in keys and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Fail => "fail",
            Event::Marginal => "marginal",
            Event::Pass => "pass",
            Event::Inconclusive => "inconclusive",
            Event::Error => "error",
            Event::Started => "started",
            Event::Cancelled => "cancelled",
            Event::Rollback => "rollback",
            Event::Promote => "promote",
            Event::Interim => "interim",
        }
    }

    /// The event of a final verdict (`Pass`, `Fail` … as stored).
    pub fn of_verdict(verdict: Option<&str>) -> Event {
        match verdict {
            Some("Pass") => Event::Pass,
            Some("Fail") => Event::Fail,
            Some("Marginal") => Event::Marginal,
            Some("Inconclusive") => Event::Inconclusive,
            _ => Event::Error,
        }
    }
}

/// The default `on:` — what needs a person: a bad verdict, and an action taken.
pub fn default_on() -> Vec<Event> {
    vec![
        Event::Fail,
        Event::Marginal,
        Event::Rollback,
        Event::Promote,
    ]
}

/// One entry of `notify:`: exactly one channel, and the events it wants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// A Slack incoming webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<Slack>,
    /// Email over SMTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    /// A signed JSON POST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
    /// Events to send (default fail, marginal, rollback, promote).
    #[serde(default = "default_on")]
    pub on: Vec<Event>,
}

impl Target {
    /// `slack`, `email` or `webhook`.
    pub fn channel(&self) -> &'static str {
        if self.slack.is_some() {
            "slack"
        } else if self.email.is_some() {
            "email"
        } else {
            "webhook"
        }
    }
}

/// A Slack incoming webhook; the URL is the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slack {
    /// Inline (stored; redacted when shown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url: Option<String>,
    /// The environment variable holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url_env: Option<String>,
    /// The file holding it (surrounding whitespace ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_url_file: Option<String>,
}

/// Email recipients and the SMTP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Email {
    /// Recipients (at least one).
    pub to: Vec<String>,
    /// Sender (default `vigil@localhost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The server.
    pub smtp: Smtp,
}

fn default_port() -> u16 {
    587
}

fn yes() -> bool {
    true
}

/// An SMTP submission server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smtp {
    /// Host name (also the name its certificate must carry).
    pub host: String,
    /// Port (default 587).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Require STARTTLS (default true; false sends in clear text, for a local relay only).
    #[serde(default = "yes")]
    pub starttls: bool,
    /// PEM file of a private CA that signed the server's certificate (added to the web roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// AUTH user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// AUTH password, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// AUTH password from this environment variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    /// AUTH password from this file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
}

/// A JSON POST signed with HMAC-SHA256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// Where to POST (http or https).
    pub url: String,
    /// The HMAC key, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The HMAC key from this environment variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_env: Option<String>,
    /// The HMAC key from this file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<String>,
}

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef<'a> {
    /// Given in the spec.
    Inline(&'a str),
    /// An environment variable of the service.
    Env(&'a str),
    /// A file the service can read.
    File(&'a str),
}

/// Why a secret cannot be read (names the variable or file, never the value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Not set.
    #[error("environment variable {0} is not set or not UTF-8")]
    Env(String),
    /// Unreadable.
    #[error("cannot read secret file {0}: {1}")]
    File(String, String),
    /// Empty.
    #[error("{0} holds an empty secret")]
    Empty(String),
}

impl SecretRef<'_> {
    /// The secret's value now (an environment variable or file is read at each send, so a rotated
    /// secret takes effect without a restart).
    pub fn resolve(&self) -> Result<String, SecretError> {
        let (v, what) = match self {
            SecretRef::Inline(s) => ((*s).to_owned(), "the inline value".to_owned()),
            SecretRef::Env(n) => (
                std::env::var(n).map_err(|_| SecretError::Env((*n).to_owned()))?,
                format!("environment variable {n}"),
            ),
            SecretRef::File(p) => (
                std::fs::read_to_string(p)
                    .map_err(|e| SecretError::File((*p).to_owned(), e.to_string()))?,
                format!("file {p}"),
            ),
        };
        let v = v.trim().to_owned();
        if v.is_empty() {
            return Err(SecretError::Empty(what));
        }
        Ok(v)
    }
}

fn one_of<'a>(
    field: &str,
    name: &str,
    inline: &'a Option<String>,
    env: &'a Option<String>,
    file: &'a Option<String>,
) -> Result<Option<SecretRef<'a>>, (String, String)> {
    let given: Vec<SecretRef<'a>> = [
        inline.as_deref().map(SecretRef::Inline),
        env.as_deref().map(SecretRef::Env),
        file.as_deref().map(SecretRef::File),
    ]
    .into_iter()
    .flatten()
    .collect();
    if given.len() > 1 {
        return Err((
            field.to_owned(),
            format!("give one of {name}, {name}_env, {name}_file, not several"),
        ));
    }
    for (suffix, v) in [("", inline), ("_env", env), ("_file", file)] {
        if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err((
                format!("{field}.{name}{suffix}"),
                "must not be empty".into(),
            ));
        }
    }
    Ok(given.into_iter().next())
}

impl Slack {
    /// The webhook URL's source.
    pub fn url(&self) -> Option<SecretRef<'_>> {
        one_of(
            "",
            "webhook_url",
            &self.webhook_url,
            &self.webhook_url_env,
            &self.webhook_url_file,
        )
        .ok()
        .flatten()
    }
}

impl Smtp {
    /// The password's source, if AUTH is configured.
    pub fn password(&self) -> Option<SecretRef<'_>> {
        one_of(
            "",
            "password",
            &self.password,
            &self.password_env,
            &self.password_file,
        )
        .ok()
        .flatten()
    }
}

impl Webhook {
    /// The HMAC key's source.
    pub fn secret(&self) -> Option<SecretRef<'_>> {
        one_of(
            "",
            "secret",
            &self.secret,
            &self.secret_env,
            &self.secret_file,
        )
        .ok()
        .flatten()
    }
}

fn http_url(field: &str, url: &str) -> Result<(), (String, String)> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        // The URL may be a secret (Slack's is): the message never repeats it.
        Ok(_) => Err((field.to_owned(), "not an http(s) URL with a host".into())),
        Err(e) => Err((field.to_owned(), format!("not a URL ({e})"))),
    }
}

/// Every constraint of `notify:` serde cannot express; the error is (field path, message).
pub fn check(targets: &[Target]) -> Result<(), (String, String)> {
    if targets.len() > MAX_TARGETS {
        return Err((
            "notify".into(),
            format!("{} targets; at most {MAX_TARGETS}", targets.len()),
        ));
    }
    for (i, t) in targets.iter().enumerate() {
        let f = format!("notify[{i}]");
        let n = [t.slack.is_some(), t.email.is_some(), t.webhook.is_some()]
            .iter()
            .filter(|b| **b)
            .count();
        if n != 1 {
            return Err((
                f,
                format!(
                    "give exactly one of slack, email, webhook per target (found {n}); \
                     list several targets for several channels"
                ),
            ));
        }
        if t.on.is_empty() {
            return Err((
                format!("{f}.on"),
                "empty: name at least one event, or leave `on` out for the default (fail, \
                 marginal, rollback, promote)"
                    .into(),
            ));
        }
        let mut seen = Vec::new();
        for (j, e) in t.on.iter().enumerate() {
            if seen.contains(e) {
                return Err((
                    format!("{f}.on[{j}]"),
                    format!("`{}` is listed twice", e.as_str()),
                ));
            }
            seen.push(*e);
        }
        if let Some(s) = &t.slack {
            let f = format!("{f}.slack");
            let url = one_of(
                &f,
                "webhook_url",
                &s.webhook_url,
                &s.webhook_url_env,
                &s.webhook_url_file,
            )?;
            match url {
                None => {
                    return Err((
                        f,
                        "give webhook_url, webhook_url_env or webhook_url_file".into(),
                    ))
                }
                Some(SecretRef::Inline(u)) => http_url(&format!("{f}.webhook_url"), u)?,
                Some(_) => {}
            }
        }
        if let Some(e) = &t.email {
            let f = format!("{f}.email");
            if e.to.is_empty() {
                return Err((format!("{f}.to"), "give at least one recipient".into()));
            }
            for (j, a) in e.to.iter().enumerate() {
                a.parse::<lettre::message::Mailbox>().map_err(|err| {
                    (
                        format!("{f}.to[{j}]"),
                        format!("`{a}` is not an email address ({err})"),
                    )
                })?;
            }
            if let Some(a) = &e.from {
                a.parse::<lettre::message::Mailbox>().map_err(|err| {
                    (
                        format!("{f}.from"),
                        format!("`{a}` is not an email address ({err})"),
                    )
                })?;
            }
            let s = &e.smtp;
            if s.host.trim().is_empty() {
                return Err((format!("{f}.smtp.host"), "must not be empty".into()));
            }
            if s.port == 0 {
                return Err((format!("{f}.smtp.port"), "must be 1-65535".into()));
            }
            if s.ca_file.as_deref().is_some_and(|c| c.trim().is_empty()) {
                return Err((format!("{f}.smtp.ca_file"), "must not be empty".into()));
            }
            let pw = one_of(
                &format!("{f}.smtp"),
                "password",
                &s.password,
                &s.password_env,
                &s.password_file,
            )?;
            match (&s.username, pw) {
                (Some(u), _) if u.is_empty() => {
                    return Err((format!("{f}.smtp.username"), "must not be empty".into()))
                }
                (Some(_), None) => {
                    return Err((
                        format!("{f}.smtp"),
                        "username without a password (give password, password_env or \
                         password_file)"
                            .into(),
                    ))
                }
                (None, Some(_)) => {
                    return Err((format!("{f}.smtp"), "a password without a username".into()))
                }
                _ => {}
            }
            if s.username.is_some() && !s.starttls {
                return Err((
                    format!("{f}.smtp.starttls"),
                    "AUTH over a clear-text connection would send the password in the clear; \
                     keep starttls: true"
                        .into(),
                ));
            }
        }
        if let Some(w) = &t.webhook {
            let f = format!("{f}.webhook");
            http_url(&format!("{f}.url"), &w.url)?;
            if one_of(&f, "secret", &w.secret, &w.secret_env, &w.secret_file)?.is_none() {
                return Err((
                    f,
                    "give secret, secret_env or secret_file (the HMAC key that signs each \
                     delivery)"
                        .into(),
                ));
            }
        }
    }
    Ok(())
}

/// A spec's canonical JSON with every inline secret replaced by [`REDACTED`] (and a webhook URL's
/// credentials and query dropped): what `GetAnalysis`, the page and logs show. Text that is not a
/// JSON object comes back unchanged (it holds no `notify:` this module wrote).
pub fn redact_spec_json(json: &str) -> String {
    let Ok(mut v) = serde_json::from_str::<serde_json::Value>(json) else {
        return json.to_owned();
    };
    let Some(list) = v.get_mut("notify").and_then(|n| n.as_array_mut()) else {
        return json.to_owned();
    };
    let hide = |o: Option<&mut serde_json::Value>, key: &str| {
        if let Some(slot) = o.and_then(|o| o.get_mut(key)) {
            if slot.is_string() {
                *slot = serde_json::Value::String(REDACTED.into());
            }
        }
    };
    for t in list.iter_mut() {
        hide(t.get_mut("slack"), "webhook_url");
        hide(
            t.get_mut("email").and_then(|e| e.get_mut("smtp")),
            "password",
        );
        hide(t.get_mut("webhook"), "secret");
        if let Some(url) = t
            .get_mut("webhook")
            .and_then(|w| w.get_mut("url"))
            .filter(|u| u.is_string())
        {
            let shown = url.as_str().map(redact_url).unwrap_or_default();
            *url = serde_json::Value::String(shown);
        }
    }
    serde_json::to_string(&v).unwrap_or_else(|_| json.to_owned())
}

/// A URL without user info and query (either may carry a token), for display.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            if u.query().is_some() {
                u.set_query(Some(REDACTED));
            }
            u.to_string()
        }
        Err(_) => REDACTED.to_owned(),
    }
}
