//! TLS for the probe (rustls with the ring provider): a private CA, a client certificate for
//! two-way authentication, or `--insecure`; failures explained in plain words.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{ErrorKind, Failure, Recorder};

#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub insecure: bool,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Build the client configuration; file problems are input errors reported before any
/// network traffic.
pub fn client_config(opts: &TlsOptions, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, String> {
    client_config_asked(opts, alpn).map(|(config, _)| config)
}

/// [`client_config`], and with a client certificate a flag that turns true when the server
/// asks for one (its CertificateRequest): a login with `--cert` proves two-way TLS only then.
pub fn client_config_asked(
    opts: &TlsOptions,
    alpn: &[&[u8]],
) -> Result<(Arc<ClientConfig>, Option<Arc<AtomicBool>>), String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let builder = if opts.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
    } else {
        let mut roots = RootCertStore::empty();
        match &opts.ca {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("--ca {}: {e}", path.display()))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("--ca {}: {e}", path.display()))?;
                if certs.is_empty() {
                    return Err(format!("--ca {}: no PEM certificate in the file", path.display()));
                }
                for c in certs {
                    roots
                        .add(c)
                        .map_err(|e| format!("--ca {}: {e}", path.display()))?;
                }
            }
            None => {
                for c in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(c);
                }
            }
        }
        builder.with_root_certificates(roots)
    };
    let (mut config, asked) = match (&opts.cert, &opts.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .map_err(|e| format!("--cert {}: {e}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("--cert {}: {e}", cert.display()))?;
            if chain.is_empty() {
                return Err(format!(
                    "--cert {}: no PEM certificate in the file",
                    cert.display()
                ));
            }
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| format!("--key {}: {e}", key.display()))?;
            let certified =
                CertifiedKey::from_der(chain, key, &provider()).map_err(|e| refused_cert(&e, cert))?;
            let asked = Arc::new(AtomicBool::new(false));
            let resolver = Asked {
                key: Arc::new(certified),
                asked: asked.clone(),
            };
            (builder.with_client_cert_resolver(Arc::new(resolver)), Some(asked))
        }
        (None, None) => (builder.with_no_client_auth(), None),
        _ => return Err("--cert and --key go together (two-way TLS needs both)".into()),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok((Arc::new(config), asked))
}

/// Why rustls refused the client certificate `cert` (or its key), in words that name the file
/// and what to do.
fn refused_cert(e: &rustls::Error, cert: &std::path::Path) -> String {
    let file = cert.display();
    let webpki = match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o)) => {
            o.0.downcast_ref::<webpki::Error>()
        }
        _ => None,
    };
    match (e, webpki) {
        (_, Some(webpki::Error::UnsupportedCertVersion)) => format!(
            "{file} is an X.509 v1 certificate; make a v3 one (openssl x509 -req ... -extfile FILE \
             with extendedKeyUsage=clientAuth in FILE)"
        ),
        (_, Some(webpki::Error::BadDer | webpki::Error::BadDerTime | webpki::Error::TrailingData(_))) => {
            format!("{file} is not a well-formed DER X.509 certificate inside its PEM")
        }
        (_, Some(other)) => format!("{file}: rustls refuses this certificate ({other})"),
        (rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch), _) => {
            format!("--key is not the private key of the certificate in {file}")
        }
        _ => format!("--cert {file}/--key: {e}"),
    }
}

/// The client certificate, given whenever the server asks for one; `asked` records that it did.
#[derive(Debug)]
struct Asked {
    key: Arc<CertifiedKey>,
    asked: Arc<AtomicBool>,
}

impl ResolvesClientCert for Asked {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.asked.store(true, Ordering::Relaxed);
        Some(self.key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

pub async fn handshake(
    rec: &mut Recorder,
    config: Arc<ClientConfig>,
    host: &str,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, Failure> {
    rec.begin("tls");
    let stream = connect(config, host, tcp).await?;
    let (_, conn) = stream.get_ref();
    if let Some(v) = conn.protocol_version() {
        rec.detail("tls_version", format!("{v:?}"));
    }
    rec.end();
    Ok(stream)
}

/// TLS over `tcp` to `host`, untimed.
pub async fn connect(
    config: Arc<ClientConfig>,
    host: &str,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, Failure> {
    let name = ServerName::try_from(host.to_string()).map_err(|e| {
        Failure::new(
            ErrorKind::Tls,
            format!("`{host}` cannot be checked against a certificate: {e}"),
        )
    })?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| explain(&e))
}

/// Turn a rustls failure into a sentence that says what to do.
pub(crate) fn explain(e: &std::io::Error) -> Failure {
    let text = e.to_string();
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    use rustls::CertificateError as C;
    let message = match inner {
        Some(rustls::Error::InvalidCertificate(c)) => match c {
            C::UnknownIssuer => "the server certificate is not signed by a trusted CA (pass --ca FILE with the CA, or --insecure to skip the check)".to_string(),
            C::NotValidForName | C::NotValidForNameContext { .. } => format!("the server certificate does not match the host name ({text})"),
            C::Expired | C::ExpiredContext { .. } => "the server certificate has expired".to_string(),
            C::NotValidYet | C::NotValidYetContext { .. } => "the server certificate is not valid yet (check the clocks)".to_string(),
            C::Revoked => "the server certificate is revoked".to_string(),
            _ => format!("the server certificate was rejected: {text}"),
        },
        Some(rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired)) => {
            "the server requires a client certificate: pass --cert and --key".to_string()
        }
        Some(rustls::Error::AlertReceived(alert)) => {
            format!("the server ended TLS with alert {alert:?} (if it wants a client certificate: --cert and --key)")
        }
        Some(other) => format!("TLS failed: {other}"),
        None if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "the server closed the connection during the TLS handshake (is this a TLS port? does it want a client certificate?)".to_string()
        }
        None => format!("TLS failed: {text}"),
    };
    Failure::new(ErrorKind::Tls, message)
}

/// `--insecure`: accept any server certificate (still encrypted, not authenticated).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
