//! Login with Amazon access tokens: refreshed ahead of expiry, shared by
//! every concurrent request, dropped and fetched again after a 401. A
//! refused refresh token is remembered, so it is not tried again and again.
//!
//! Owns the refresh token exchange only; API calls live in `client`.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::retry::retry_after;
use crate::amc::ApiError;

/// Refresh this long before the token says it expires, so a request that
/// starts with a token never arrives with an expired one.
const EARLY_REFRESH: Duration = Duration::from_secs(60);

/// Login with Amazon issues tokens for an hour; a longer `expires_in` (up
/// to 1.8e19 from a broken or hostile endpoint) is kept this long at most,
/// and never overflows the clock.
const MAX_LIFETIME: Duration = Duration::from_secs(12 * 3600);

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    /// Seconds, as an integer or (from some gateways) a float.
    expires_in: serde_json::Number,
}

/// How long a token with this `expires_in` is used: negative, not a number
/// or absurd values are clamped to `0..=MAX_LIFETIME`.
fn lifetime(expires_in: &serde_json::Number) -> Duration {
    let seconds = expires_in.as_f64().unwrap_or(0.0);
    if seconds.is_nan() || seconds <= 0.0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(seconds.min(MAX_LIFETIME.as_secs_f64()))
}

struct Cached {
    token: SecretString,
    refresh_at: Instant,
}

pub struct TokenSource {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    client_secret: SecretString,
    refresh_token: SecretString,
    /// Held across a refresh so concurrent callers wait for one exchange
    /// instead of each starting their own.
    cached: Mutex<Option<Cached>>,
    /// Set once Login with Amazon refuses the credentials: they will not
    /// get better by asking again, so every later call fails at once
    /// instead of sending a storm of doomed refreshes.
    refused: Mutex<Option<ApiError>>,
}

impl TokenSource {
    pub fn new(
        http: reqwest::Client,
        token_url: String,
        client_id: String,
        client_secret: SecretString,
        refresh_token: SecretString,
    ) -> TokenSource {
        TokenSource {
            http,
            token_url,
            client_id,
            client_secret,
            refresh_token,
            cached: Mutex::new(None),
            refused: Mutex::new(None),
        }
    }

    pub async fn access_token(&self) -> Result<SecretString, ApiError> {
        let mut cached = self.cached.lock().await;
        if let Some(current) = cached.as_ref().filter(|c| Instant::now() < c.refresh_at) {
            return Ok(current.token.clone());
        }
        let mut refused = self.refused.lock().await;
        if let Some(error) = refused.as_ref() {
            return Err(error.clone());
        }
        let fresh = match self.exchange().await {
            Err(error @ ApiError::Auth(_)) => {
                *refused = Some(error.clone());
                return Err(error);
            }
            other => other?,
        };
        let token = fresh.token.clone();
        *cached = Some(fresh);
        Ok(token)
    }

    /// Forgets `stale` after AMC refused it, unless another caller already
    /// replaced it.
    pub async fn invalidate(&self, stale: &SecretString) {
        let mut cached = self.cached.lock().await;
        if cached
            .as_ref()
            .is_some_and(|c| c.token.expose_secret() == stale.expose_secret())
        {
            *cached = None;
        }
    }

    async fn exchange(&self) -> Result<Cached, ApiError> {
        let form = [
            ("grant_type", "refresh_token"),
            ("refresh_token", self.refresh_token.expose_secret()),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.client_secret.expose_secret()),
        ];
        let response = self
            .http
            .post(&self.token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                ApiError::Unreachable(format!(
                    "token endpoint {}: {}",
                    self.token_url,
                    e.without_url()
                ))
            })?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = response
            .bytes()
            .await
            .map_err(|e| ApiError::Unreachable(format!("token endpoint: {}", e.without_url())))?;
        // Throttling says nothing about the credentials: retried like any 429.
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(ApiError::Refused {
                status: 429,
                message: "the token endpoint is throttling".into(),
                retry_after,
            });
        }
        if status.is_client_error() {
            // A proxy's error page may echo the form it was sent: the
            // credentials are cut out before the text can reach an error.
            let mut said = String::from_utf8_lossy(&body).into_owned();
            for secret in [&self.refresh_token, &self.client_secret] {
                let secret = secret.expose_secret();
                if !secret.is_empty() {
                    said = said.replace(secret, "[redacted]");
                }
            }
            return Err(ApiError::Auth(format!(
                "HTTP {}: {}",
                status.as_u16(),
                said.chars().take(300).collect::<String>()
            )));
        }
        if !status.is_success() {
            return Err(ApiError::Refused {
                status: status.as_u16(),
                message: "the token endpoint failed".into(),
                retry_after: None,
            });
        }
        // Only the position: serde's text could quote a token's value.
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|e| {
            ApiError::Malformed(format!(
                "token answer is not {{\"access_token\":..,\"expires_in\":..}} ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        let lifetime = lifetime(&answer.expires_in);
        let refresh_in = lifetime.saturating_sub(EARLY_REFRESH.min(lifetime / 2));
        let now = Instant::now();
        Ok(Cached {
            token: SecretString::from(answer.access_token),
            refresh_at: now.checked_add(refresh_in).unwrap_or(now),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_expires_in_is_clamped_to_hours() {
        let number = |text: &str| serde_json::from_str::<serde_json::Number>(text).unwrap();
        assert_eq!(lifetime(&number("3600")), Duration::from_secs(3600));
        assert_eq!(lifetime(&number("1.8e19")), MAX_LIFETIME);
        assert_eq!(lifetime(&number("18446744073709551615")), MAX_LIFETIME);
        assert_eq!(lifetime(&number("-5")), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_refusal_that_echoes_the_form_names_no_credential() {
        // A gateway in front of Login with Amazon that quotes what it got.
        let echo = axum::Router::new().route(
            "/token",
            axum::routing::post(|body: String| async move {
                (
                    axum::http::StatusCode::BAD_REQUEST,
                    format!("refused: {body}"),
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, echo).await });
        let source = TokenSource::new(
            crate::amc::client::http_client(),
            format!("http://{address}/token"),
            "client-1".into(),
            SecretString::from("CS-secret-4711"),
            SecretString::from("RT-secret-0815"),
        );
        let error = source.access_token().await.unwrap_err().to_string();
        assert!(error.contains("grant_type=refresh_token"), "{error}");
        assert!(error.contains("[redacted]"), "{error}");
        assert!(!error.contains("CS-secret-4711"), "{error}");
        assert!(!error.contains("RT-secret-0815"), "{error}");
    }
}
