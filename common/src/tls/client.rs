//! The client side: tonic channels, with TLS (and a client certificate) when the settings say
//! so.

use std::{path::Path, time::Duration};

use http::uri::{Scheme, Uri};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::{ClientTlsSettings, HANDSHAKE_TIMEOUT, TlsError, parse_certs, parse_key, read};

/// How long the TCP connection may take (as the bridge's plaintext channels).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// An endpoint for `url` (`http://` or `https://`, host and port): TLS when `tls.enabled`,
/// whatever the scheme says, trusting `tls.ca_file`, presenting `tls.cert_file`/`key_file` when
/// set, and verifying the server's certificate for `tls.domain` (or the URL's host). Connect
/// timeout 2 s, TLS handshake timeout 10 s, `TCP_NODELAY`. Callers may add their own options.
///
/// The files are read and checked here, so a missing or malformed file is reported by name
/// at start-up rather than on the first call.
pub fn endpoint(url: &str, tls: &ClientTlsSettings) -> Result<Endpoint, TlsError> {
    let url_error = |reason: &str| TlsError::Url {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| url_error(&e.to_string()))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(_) => return Err(url_error("the scheme must be http or https")),
        None => return Err(url_error("no scheme (http:// or https://)")),
    }
    let host = uri
        .host()
        .ok_or_else(|| url_error("no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    // tonic speaks TLS to `https` URLs only: the settings decide, so the scheme follows them.
    let mut parts = uri.into_parts();
    parts.scheme = Some(if tls.enabled {
        Scheme::HTTPS
    } else {
        Scheme::HTTP
    });
    let uri = Uri::from_parts(parts).map_err(|e| url_error(&e.to_string()))?;
    let endpoint = Endpoint::from(uri)
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    if !tls.enabled {
        return Ok(endpoint);
    }
    endpoint
        .tls_config(client_config(tls, host)?)
        .map_err(|source| TlsError::ClientConfig {
            url: url.to_owned(),
            source,
        })
}

fn client_config(tls: &ClientTlsSettings, host: String) -> Result<ClientTlsConfig, TlsError> {
    if tls.ca_file.is_empty() {
        return Err(TlsError::Settings(
            "ca_file is not set (the CA the server's certificate chains to)".to_owned(),
        ));
    }
    let ca_path = Path::new(&tls.ca_file);
    let ca = read(ca_path)?;
    parse_certs(ca_path, &ca)?;
    let domain = if tls.domain.is_empty() {
        host
    } else {
        tls.domain.clone()
    };
    let config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name(domain)
        .timeout(HANDSHAKE_TIMEOUT);
    match (tls.cert_file.is_empty(), tls.key_file.is_empty()) {
        (true, true) => Ok(config),
        (false, false) => {
            let (cert_path, key_path) = (Path::new(&tls.cert_file), Path::new(&tls.key_file));
            let (cert, key) = (read(cert_path)?, read(key_path)?);
            parse_certs(cert_path, &cert)?;
            parse_key(key_path, &key)?;
            Ok(config.identity(Identity::from_pem(cert, key)))
        }
        _ => Err(TlsError::Settings(
            "cert_file and key_file are set together or not at all".to_owned(),
        )),
    }
}

/// A channel to `url`, connected now (see [`endpoint`] for the settings).
pub async fn channel(url: &str, tls: &ClientTlsSettings) -> Result<Channel, TlsError> {
    endpoint(url, tls)?
        .connect()
        .await
        .map_err(|source| TlsError::Connect {
            url: url.to_owned(),
            source,
        })
}

/// A channel to `url` that connects on first use and reconnects as needed, so a process can
/// start while its peer is down (see [`endpoint`] for the settings). Must be called within a
/// Tokio runtime.
pub fn lazy_channel(url: &str, tls: &ClientTlsSettings) -> Result<Channel, TlsError> {
    Ok(endpoint(url, tls)?.connect_lazy())
}
