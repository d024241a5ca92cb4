//! The client side of the CLI: HTTP calls to a baton server, output for people.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use serde_json::Value;

pub struct Client {
    base: String,
    pub(crate) http: reqwest::Client,
}

/// Prints to stdout; a closed pipe (`baton token x | head -c0`) is not an error worth a panic.
pub(crate) fn out(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// `--addr` as a base URL: `http://` is assumed when no scheme is given.
pub(crate) fn base_url(addr: &str) -> String {
    let addr = addr.trim_end_matches('/');
    if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

/// The server a client command talks to, and the TLS files it uses to do so.
#[derive(Clone, Debug, Default)]
pub struct Remote {
    /// `--addr`: `http://…`, `https://…`, or `HOST:PORT` (plain HTTP).
    pub addr: String,
    /// PEM CA certificate(s) trusted besides the public roots.
    pub ca_cert: Option<PathBuf>,
    /// PEM client certificate and key, presented when the server asks for one.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

impl Remote {
    /// The base URL of the server.
    pub fn base_url(&self) -> String {
        base_url(&self.addr)
    }

    /// The HTTP client of every client command: the CLI's user agent, the extra CA, the
    /// client certificate, and the access token of [`access_token`] on every request.
    pub fn http_client(&self) -> anyhow::Result<reqwest::Client> {
        let mut builder =
            reqwest::Client::builder().user_agent(concat!("baton-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &self.ca_cert {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read the CA certificate {}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} is not a PEM certificate file", path.display()))?;
            anyhow::ensure!(
                !certs.is_empty(),
                "{} holds no PEM certificate",
                path.display()
            );
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
            let mut pem = std::fs::read(cert).with_context(|| {
                format!("cannot read the client certificate {}", cert.display())
            })?;
            pem.push(b'\n');
            pem.extend(
                std::fs::read(key)
                    .with_context(|| format!("cannot read the client key {}", key.display()))?,
            );
            // The parse error is not shown: it could quote part of the key.
            let identity = reqwest::Identity::from_pem(&pem).map_err(|_| {
                anyhow!(
                    "{} and {} are not a PEM certificate and its private key",
                    cert.display(),
                    key.display()
                )
            })?;
            builder = builder.identity(identity);
        }
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = access_token(&self.base_url())? {
            let mut value =
                reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose()))
                    .context("BATON_TOKEN holds characters a header cannot carry")?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        builder
            .default_headers(headers)
            .build()
            .context("cannot build the HTTP client")
    }
}

/// The token to send: `BATON_TOKEN`, else, for a server on this machine (a loopback
/// address), the root token it wrote to its data directory (`BATON_DATA_DIR`, or
/// `./baton-data`). None: send no token.
fn access_token(base: &str) -> anyhow::Result<Option<baton_core::Secret>> {
    if let Some(token) = std::env::var_os("BATON_TOKEN").filter(|t| !t.is_empty()) {
        let token = token
            .into_string()
            .map_err(|_| anyhow!("BATON_TOKEN is not valid UTF-8"))?;
        return Ok(Some(baton_core::Secret::new(token.trim())));
    }
    if !is_loopback(base) {
        return Ok(None);
    }
    let dir = std::env::var_os("BATON_DATA_DIR").map_or_else(
        || crate::config::DEFAULT_DATA_DIR.into(),
        std::path::PathBuf::from,
    );
    let file = dir.join(crate::config::ROOT_TOKEN_FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) => Ok(Some(baton_core::Secret::new(text.trim()))),
        Err(_) => Ok(None),
    }
}

/// An error and its causes on one line: a TLS failure says why the handshake failed.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let shown = cause.to_string();
        if !text.contains(&shown) {
            text.push_str(": ");
            text.push_str(&shown);
        }
        source = cause.source();
    }
    text
}

fn is_loopback(base: &str) -> bool {
    let rest = base.split_once("://").map_or(base, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl Client {
    pub fn new(remote: &Remote) -> anyhow::Result<Client> {
        Ok(Client {
            base: remote.base_url(),
            http: remote.http_client()?,
        })
    }

    /// Sends a request and returns the JSON body of a success, or the server's error message.
    pub(crate) async fn call(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp = req.send().await.map_err(|e| {
            anyhow!(
                "cannot reach baton at {}: {}\n(is `baton serve` running? set BATON_ADDR or \
                 --addr; for HTTPS, --ca-cert and, with client certificates, --client-cert)",
                self.base,
                error_chain(&e)
            )
        })?;
        let status = resp.status();
        let text = resp.text().await.context("reading the response")?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(body);
        }
        match (
            body["error"]["message"].as_str(),
            body["error"]["code"].as_str(),
        ) {
            (Some(message), Some(code)) => bail!("{message} ({code}, HTTP {})", status.as_u16()),
            _ => bail!("the server answered HTTP {status}"),
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The URL of a credential's endpoint; the name is checked first, so that it can never
    /// reach another path.
    fn credential_url(&self, name: &str, rest: &str) -> anyhow::Result<String> {
        baton_core::validate_name(name)?;
        Ok(self.url(&format!("/v1/credentials/{name}{rest}")))
    }

    pub async fn put(&self, name: &str, file: &Path) -> anyhow::Result<ExitCode> {
        let spec = if file == Path::new("-") {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("cannot read the spec from stdin")?;
            parse_stdin_spec(&text)?
        } else {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            parse_spec(file, &text)?
        };
        let req = self.http.put(self.credential_url(name, "")?).json(&spec);
        let body = self.call(req).await?;
        out(&format!(
            "credential {name} written (revision {})",
            body["revision"]
        ));
        Ok(ExitCode::SUCCESS)
    }

    pub async fn list(&self) -> anyhow::Result<ExitCode> {
        let body = self
            .call(self.http.get(self.url("/v1/credentials")))
            .await?;
        let empty = Vec::new();
        let rows = body["credentials"].as_array().unwrap_or(&empty);
        if rows.is_empty() {
            out("no credentials");
            return Ok(ExitCode::SUCCESS);
        }
        out(&format!(
            "{:<32} {:<7} {:>7}  {:<24} {:<24}",
            "NAME", "KIND", "VERSION", "EXPIRES", "NEXT ROTATION"
        ));
        for c in rows {
            let text = |v: &Value| v.as_str().map_or_else(|| "-".to_owned(), str::to_owned);
            let version = c["version"]
                .as_u64()
                .map_or_else(|| "-".to_owned(), |v| v.to_string());
            out(&format!(
                "{:<32} {:<7} {:>7}  {:<24} {:<24}",
                text(&c["name"]),
                text(&c["kind"]),
                version,
                text(&c["expires_at"]),
                text(&c["next_rotation_at"]),
            ));
        }
        Ok(ExitCode::SUCCESS)
    }

    pub async fn show(&self, name: &str) -> anyhow::Result<ExitCode> {
        let body = self
            .call(self.http.get(self.credential_url(name, "")?))
            .await?;
        out(&serde_json::to_string_pretty(&body)?);
        Ok(ExitCode::SUCCESS)
    }

    pub async fn delete(&self, name: &str) -> anyhow::Result<ExitCode> {
        self.call(self.http.delete(self.credential_url(name, "")?))
            .await?;
        out(&format!("credential {name} deleted"));
        Ok(ExitCode::SUCCESS)
    }

    pub async fn rotate(&self, name: &str) -> anyhow::Result<ExitCode> {
        let url = self.credential_url(name, "/rotate")?;
        let body = self.call(self.http.post(url)).await?;
        out(&format!(
            "credential {name} rotated: version {} valid from {} until {}",
            body["version"],
            body["not_before"].as_str().unwrap_or("?"),
            body["expires_at"].as_str().unwrap_or("?"),
        ));
        Ok(ExitCode::SUCCESS)
    }

    pub async fn token(
        &self,
        name: &str,
        json: bool,
        wait: Option<&str>,
    ) -> anyhow::Result<ExitCode> {
        let mut req = self.http.get(self.credential_url(name, "/token")?);
        if let Some(wait) = wait {
            req = req.query(&[("wait", wait)]);
        }
        let body = self.call(req).await?;
        if json {
            out(&serde_json::to_string_pretty(&body)?);
        } else {
            let token = body["token"]
                .as_str()
                .ok_or_else(|| anyhow!("the answer has no token"))?;
            out(token);
        }
        Ok(ExitCode::SUCCESS)
    }
}

impl Client {
    pub async fn token_create(
        &self,
        policy: &str,
        ttl: Option<&str>,
        name: Option<&str>,
    ) -> anyhow::Result<ExitCode> {
        let mut body = serde_json::json!({ "policy": policy });
        if let Some(ttl) = ttl {
            body["ttl"] = Value::from(ttl);
        }
        if let Some(name) = name {
            body["display_name"] = Value::from(name);
        }
        let req = self.http.post(self.url("/v1/auth/tokens")).json(&body);
        let answer = self.call(req).await?;
        let token = answer["token"]
            .as_str()
            .ok_or_else(|| anyhow!("the answer has no token"))?;
        out(&format!("token     {token}"));
        out(&format!(
            "accessor  {}",
            answer["accessor"].as_str().unwrap_or("?")
        ));
        out(&format!("policy    {policy}"));
        out(&format!(
            "expires   {}",
            answer["expires_at"].as_str().unwrap_or("never")
        ));
        Ok(ExitCode::SUCCESS)
    }

    pub async fn token_revoke(&self, accessor: &str) -> anyhow::Result<ExitCode> {
        baton_core::validate_name(accessor)?;
        let url = self.url(&format!("/v1/auth/tokens/{accessor}"));
        self.call(self.http.delete(url)).await?;
        out(&format!("token {accessor} revoked"));
        Ok(ExitCode::SUCCESS)
    }

    pub async fn token_list(&self) -> anyhow::Result<ExitCode> {
        let body = self
            .call(self.http.get(self.url("/v1/auth/tokens")))
            .await?;
        let empty = Vec::new();
        out(&format!(
            "{:<18} {:<24} {:<16} {:<24}",
            "ACCESSOR", "POLICY", "NAME", "EXPIRES"
        ));
        for t in body["tokens"].as_array().unwrap_or(&empty) {
            let text = |v: &Value| v.as_str().map_or_else(|| "-".to_owned(), str::to_owned);
            out(&format!(
                "{:<18} {:<24} {:<16} {:<24}",
                text(&t["accessor"]),
                text(&t["policy"]),
                text(&t["display_name"]),
                t["expires_at"].as_str().unwrap_or("never"),
            ));
        }
        Ok(ExitCode::SUCCESS)
    }

    fn policy_url(&self, name: &str) -> anyhow::Result<String> {
        baton_core::validate_name(name)?;
        Ok(self.url(&format!("/v1/auth/policies/{name}")))
    }

    pub async fn policy_put(&self, name: &str, file: &Path) -> anyhow::Result<ExitCode> {
        let text = if file == Path::new("-") {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("cannot read the policy from stdin")?;
            text
        } else {
            std::fs::read_to_string(file)
                .with_context(|| format!("cannot read {}", file.display()))?
        };
        let spec = if file == Path::new("-") {
            parse_stdin_spec(&text)?
        } else {
            parse_spec(file, &text)?
        };
        let req = self.http.put(self.policy_url(name)?).json(&spec);
        let body = self.call(req).await?;
        out(&format!(
            "access policy {name} written (revision {})",
            body["revision"]
        ));
        Ok(ExitCode::SUCCESS)
    }

    pub async fn policy_list(&self) -> anyhow::Result<ExitCode> {
        let body = self
            .call(self.http.get(self.url("/v1/auth/policies")))
            .await?;
        for name in body["policies"].as_array().into_iter().flatten() {
            out(name.as_str().unwrap_or("?"));
        }
        Ok(ExitCode::SUCCESS)
    }

    pub async fn policy_show(&self, name: &str) -> anyhow::Result<ExitCode> {
        let body = self.call(self.http.get(self.policy_url(name)?)).await?;
        out(&serde_json::to_string_pretty(&body)?);
        Ok(ExitCode::SUCCESS)
    }

    pub async fn policy_delete(&self, name: &str) -> anyhow::Result<ExitCode> {
        self.call(self.http.delete(self.policy_url(name)?)).await?;
        out(&format!("access policy {name} deleted"));
        Ok(ExitCode::SUCCESS)
    }
}

/// Reads a spec from stdin: JSON when it looks like JSON, TOML otherwise.
fn parse_stdin_spec(text: &str) -> anyhow::Result<Value> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).context("the spec on stdin is not valid JSON");
    }
    let value: toml::Value =
        crate::config::from_toml(text).context("the spec on stdin is not valid TOML")?;
    Ok(serde_json::to_value(value)?)
}

/// Reads a spec as TOML when the file says so by its extension, as JSON otherwise.
fn parse_spec(file: &Path, text: &str) -> anyhow::Result<Value> {
    let is_toml = file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    if is_toml {
        let value: toml::Value = crate::config::from_toml(text)
            .with_context(|| format!("{} is not valid TOML", file.display()))?;
        return Ok(serde_json::to_value(value)?);
    }
    serde_json::from_str(text).with_context(|| format!("{} is not valid JSON", file.display()))
}
