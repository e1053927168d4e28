//! Start-up checks that only a connection can make.
//!
//! A server certificate the recorder refuses (signed by another CA, or for another name) is a
//! configuration error like a bad URL: retrying cannot fix it. So, when TLS is verified, the
//! recorder connects once to each side before it starts and stops (exit 2, one line naming the
//! variable and the fix) if the certificate is refused. Any other failure (the server is down,
//! refuses the password, ...) is left to the recorder's own retries.

use std::{error::Error, io, time::Duration};

use sqlx::{
    ConnectOptions, Connection as _,
    postgres::{PgConnectOptions, PgSslMode},
};

use crate::{broker, config::Config, store::db};

/// How long one check may take; past that it says nothing and the recorder starts as usual.
const CHECK_FOR: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{var}: the server's certificate was refused ({reason}); {fix}")]
pub struct CertificateRefused {
    pub var: &'static str,
    pub reason: String,
    pub fix: &'static str,
}

/// Connects once to each side whose TLS certificate is verified, and reports a refused one.
pub async fn check_certificates(config: &Config) -> Result<(), CertificateRefused> {
    if let Ok(options) = db::connect_options(config)
        && matches!(
            options.get_ssl_mode(),
            PgSslMode::VerifyCa | PgSslMode::VerifyFull
        )
        && let Some(reason) = database_certificate(options).await
    {
        return Err(CertificateRefused {
            var: "DATABASE_URL",
            reason,
            fix: "set sslrootcert to the CA that signed the server's certificate, and name the host as the certificate does (verify-full)",
        });
    }
    if config.rabbitmq_url.starts_with("amqps://")
        && let Some(reason) = broker_certificate(&config.rabbitmq_url).await
    {
        return Err(CertificateRefused {
            var: "RABBITMQ_URL",
            reason,
            fix: "set ?cacertfile= to the CA that signed the broker's certificate, and name the host as the certificate does",
        });
    }
    Ok(())
}

async fn database_certificate(options: PgConnectOptions) -> Option<String> {
    match tokio::time::timeout(CHECK_FOR, options.connect()).await {
        Ok(Ok(connection)) => {
            let _ = connection.close().await;
            None
        }
        Ok(Err(error)) => refused_certificate(&error),
        Err(_) => None,
    }
}

async fn broker_certificate(url: &str) -> Option<String> {
    match tokio::time::timeout(CHECK_FOR, broker::connect(url, "start-up check")).await {
        Ok(Ok(connection)) => {
            broker::close(&connection, "start-up check").await;
            None
        }
        Ok(Err(error)) => refused_certificate(&error),
        Err(_) => None,
    }
}

/// rustls' reason when `error` (or what it wraps) is a refused peer certificate.
pub fn refused_certificate(error: &(dyn Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(refused @ rustls::Error::InvalidCertificate(_)) = error.downcast_ref() {
            return Some(refused.to_string());
        }
        // `io::Error::source` skips the error it wraps: look inside explicitly.
        if let Some(inner) = error
            .downcast_ref::<io::Error>()
            .and_then(io::Error::get_ref)
            && let Some(reason) = refused_certificate(inner)
        {
            return Some(reason);
        }
        next = error.source();
    }
    None
}
