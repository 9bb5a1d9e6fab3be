//! HTTP API errors: a status and a plain-text message, like Pusher's (spec §8.1).

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::edge::{Limited, retry_after_secs};

/// A failed API request. The SDKs read only the status; the text is for humans.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 429 with `Retry-After` (whole seconds).
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after: Duration,
    },
}

impl From<Limited> for ApiError {
    fn from(limited: Limited) -> Self {
        match limited {
            Limited::Rate { retry_after, .. } | Limited::DailyQuota { retry_after, .. } => {
                Self::TooManyRequests {
                    message: limited.message(),
                    retry_after,
                }
            }
            // Waiting does not help: only a smaller request can pass.
            Limited::TooLarge { .. } => Self::BadRequest(limited.message()),
        }
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), format!("{self}\n")).into_response();
        if let Self::TooManyRequests { retry_after, .. } = self {
            let seconds = HeaderValue::from(retry_after_secs(retry_after));
            response.headers_mut().insert(header::RETRY_AFTER, seconds);
        }
        response
    }
}
