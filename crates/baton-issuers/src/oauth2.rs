//! The `oauth2` issuer: the client-credentials grant (RFC 6749 §4.4).
//!
//! One rotation is one POST to the token endpoint. The client authenticates with HTTP Basic
//! (`client_secret_basic`, the default) or in the form body (`client_secret_post`); the secret
//! is read from its reference at each call. What can go wrong is kept apart, because the
//! engine handles each differently: nothing sent (unreachable), an error answer (with its
//! `Retry-After`), an unusable answer, and no answer at all (the outcome is unknown: the
//! endpoint may have issued a token).

use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use baton_core::{AuthMethod, OAuth2Spec, Secret, Secs};
use serde_json::Value;

use crate::expiry::Said;
use crate::request::OAuth2Request;
use crate::source::{describe_ref, resolve_ref};
use crate::{IssueError, PrepareError};

/// A token endpoint's answer is at most this large.
const MAX_ANSWER: usize = 1 << 20;
/// Form parameters baton sets itself.
const RESERVED: [&str; 6] = [
    "grant_type",
    "client_id",
    "client_secret",
    "scope",
    "client_assertion",
    "client_assertion_type",
];
const DEFAULT_TIMEOUT: Secs = Secs(10);

pub(crate) fn prepare(req: OAuth2Request) -> Result<OAuth2Spec, PrepareError> {
    let invalid = |field, reason: &str| PrepareError::invalid("oauth2", field, reason);
    let url = reqwest::Url::parse(&req.token_url)
        .map_err(|e| invalid("token_url", &format!("not a URL ({e})")))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err(invalid("token_url", "must be an http:// or https:// URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "token_url",
            "must not hold credentials; give them as client_id and client_secret",
        ));
    }
    if req.client_id.is_empty() {
        return Err(invalid("client_id", "must not be empty"));
    }
    let reserved = |k: &String| RESERVED.iter().any(|r| r.eq_ignore_ascii_case(k));
    if let Some(param) = req.params.keys().find(|k| reserved(k)) {
        return Err(invalid(
            "params",
            &format!("`{param}` is set by baton, not in params"),
        ));
    }
    let timeout = crate::error::call_timeout("oauth2", req.timeout, DEFAULT_TIMEOUT)?;
    // Resolve once now, so that a missing variable or file is reported when the credential
    // is written; the reference itself is what is stored and read at each call.
    let client_secret = req.client_secret.into();
    if resolve_ref(&client_secret)?.is_empty() {
        return Err(invalid("client_secret", "is empty"));
    }
    Ok(OAuth2Spec {
        token_url: req.token_url,
        client_id: req.client_id,
        client_secret,
        auth_method: req.auth_method.unwrap_or_default(),
        scope: req.scope.filter(|s| !s.is_empty()),
        params: req.params,
        timeout,
    })
}

pub(crate) fn describe(spec: &OAuth2Spec) -> Value {
    serde_json::json!({
        "kind": "oauth2",
        "token_url": shown_url(&spec.token_url),
        "client_id": spec.client_id,
        "client_secret": describe_ref(&spec.client_secret),
        "auth_method": spec.auth_method,
        "scope": spec.scope,
        "params": spec.params,
        "timeout": spec.timeout,
    })
}

/// The token URL without the values of its query, which may carry a secret.
fn shown_url(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return String::from("(invalid)");
    };
    if parsed.query().is_some() {
        let names: Vec<String> = parsed
            .query_pairs()
            .map(|(k, _)| format!("{k}=***"))
            .collect();
        parsed.set_query(Some(&names.join("&")));
    }
    parsed.to_string()
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .user_agent(concat!("baton/", env!("CARGO_PKG_VERSION")))
            // A redirect would resend the client's secret somewhere else: never follow one.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    })
}

/// Requests one token.
pub(crate) async fn issue(spec: &OAuth2Spec) -> Result<(Secret, Said), IssueError> {
    let secret = resolve_ref(&spec.client_secret)?;
    // Every form the secret is sent in, to cut out of what the endpoint answers.
    let mut sent = vec![secret.clone(), Secret::new(encode(secret.expose()))];
    let mut request = client()
        .post(&spec.token_url)
        .timeout(spec.timeout.as_std())
        .header("accept", "application/json")
        .header("content-type", "application/x-www-form-urlencoded");
    if spec.auth_method == AuthMethod::Basic {
        // RFC 6749 §2.3.1: both parts are form-encoded before they are joined.
        let pair = zeroize::Zeroizing::new(format!(
            "{}:{}",
            encode(&spec.client_id),
            encode(secret.expose())
        ));
        let basic = Secret::new(base64::engine::general_purpose::STANDARD.encode(pair.as_bytes()));
        request = request.header("authorization", format!("Basic {}", basic.expose()));
        sent.push(basic);
    }
    let body = form_body(spec, &secret);

    let unknown = || IssueError::OutcomeUnknown {
        kind: "oauth2",
        timeout: spec.timeout.as_std(),
    };
    let response = match request.body(body.to_string()).send().await {
        Ok(response) => response,
        Err(e) if e.is_connect() => {
            return Err(IssueError::Unreachable {
                reason: error_chain(&e.without_url()),
            })
        }
        // Sent, but no answer: the endpoint may have issued a token.
        Err(_) => return Err(unknown()),
    };
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let answer = read_limited(response).await.map_err(|()| unknown())?;

    let detail = oauth_error(&answer, &sent);
    if status.is_redirection() {
        return Err(IssueError::Status {
            status: status.as_u16(),
            detail: ": a redirect, which baton does not follow; use the final URL".into(),
            retry_after: None,
        });
    }
    if !status.is_success() {
        let honoured = matches!(status.as_u16(), 429 | 503);
        return Err(IssueError::Status {
            status: status.as_u16(),
            detail,
            retry_after: retry_after.filter(|_| honoured),
        });
    }
    let bad = |reason: &str| IssueError::BadAnswer {
        kind: "oauth2",
        reason: reason.to_owned(),
    };
    let json: Value = serde_json::from_slice(&answer)
        .map_err(|_| bad("the token endpoint's answer is not JSON"))?;
    let token = match json.get("access_token") {
        Some(Value::String(t)) if !t.is_empty() => Secret::new(t.as_str()),
        _ => return Err(bad("the answer has no access_token")),
    };
    let said = Said {
        expires_in: json.get("expires_in").cloned(),
        expires_at: None,
    };
    Ok((token, said))
}

/// The form of the grant; with `auth_method = "post"`, the client's credentials too.
fn form_body(spec: &OAuth2Spec, secret: &Secret) -> zeroize::Zeroizing<String> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials");
    if let Some(scope) = &spec.scope {
        form.append_pair("scope", scope);
    }
    for (key, value) in &spec.params {
        form.append_pair(key, value);
    }
    if spec.auth_method == AuthMethod::Post {
        form.append_pair("client_id", &spec.client_id);
        form.append_pair("client_secret", secret.expose());
    }
    zeroize::Zeroizing::new(form.finish())
}

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Reads at most [`MAX_ANSWER`] bytes of the body; `Err` when the body cannot be read.
async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, ()> {
    let mut answer = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|_| ())? {
        let room = MAX_ANSWER.saturating_sub(answer.len());
        answer.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room <= chunk.len() {
            break;
        }
    }
    Ok(answer)
}

/// `Retry-After`: delta-seconds or an HTTP date.
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(3600)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let wait = at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    Some(wait.min(Duration::from_secs(3600)))
}

/// `: invalid_client (bad secret)` from an RFC 6749 §5.2 error answer; empty otherwise. Only
/// these two fields are shown, cleaned and shortened, never the rest of the body.
fn oauth_error(answer: &[u8], secrets: &[Secret]) -> String {
    let Ok(json) = serde_json::from_slice::<Value>(answer) else {
        return String::new();
    };
    // The secrets are cut out before anything is shortened, so that no part of one is left.
    let clean = |v: &Value| -> Option<String> {
        let text = crate::source::redact(v.as_str()?, secrets);
        Some(text.chars().filter(|c| !c.is_control()).take(200).collect())
    };
    match (clean(&json["error"]), clean(&json["error_description"])) {
        (Some(code), Some(description)) => format!(": {code} ({description})"),
        (Some(code), None) => format!(": {code}"),
        _ => String::new(),
    }
}

/// An error and its causes, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn the_shown_url_keeps_query_names_but_not_values() {
        assert_eq!(
            shown_url("https://auth.example/token?key=s3cr3t&x=1"),
            "https://auth.example/token?key=***&x=***"
        );
        assert_eq!(
            shown_url("https://auth.example/token"),
            "https://auth.example/token"
        );
    }

    #[test]
    fn only_the_oauth_error_fields_are_shown() {
        let body = br#"{"error":"invalid_client","error_description":"bad\nsecret","x":"s3cr3t"}"#;
        assert_eq!(oauth_error(body, &[]), ": invalid_client (badsecret)");
        assert_eq!(oauth_error(b"<html>s3cr3t</html>", &[]), "");
        let echo =
            br#"{"error":"invalid_client","error_description":"got Basic ZmxlZXQ6czNjcjN0"}"#;
        let sent = [Secret::new("ZmxlZXQ6czNjcjN0")];
        assert_eq!(
            oauth_error(echo, &sent),
            ": invalid_client (got Basic [redacted])"
        );
    }
}
