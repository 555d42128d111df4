//! `mutual_tls` over CoAP, for `probe --matrix`: a child of `coap.rs`. EnOS's CoAP is DTLS-PSK
//! (the comparison table: not applicable), and a PSK handshake carries no certificate; what
//! can be measured is whether the endpoint accepts a DTLS handshake that authenticates the
//! client by its certificate (`--cert`/`--key`, ECDHE-ECDSA or ECDHE-RSA suites only). A
//! refused handshake is a refusal; one that goes through is reported as it is.

use std::sync::Arc;
use std::time::Instant;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use webrtc_dtls::cipher_suite::CipherSuiteId;
use webrtc_dtls::config::{Config as DtlsConfig, ExtendedMasterSecretType};
use webrtc_dtls::conn::DTLSConn;
use webrtc_dtls::crypto::{Certificate, CryptoPrivateKey};

use super::{Watched, connect_udp};
use crate::measurement::{ErrorKind, ProbeReport};
use crate::probe::{Failure, ProbeOptions, Recorder, Target, resolve, time_left};

/// The handshake offering the client certificate, as a probe report of its own.
pub(crate) async fn certificate_login(target: &Target, opts: &ProbeOptions) -> ProbeReport {
    let mut rec = Recorder::new(opts.verbose);
    let deadline = Instant::now() + opts.timeout;
    let result = match tokio::time::timeout(opts.timeout, handshake(target, opts, &mut rec, deadline)).await {
        Ok(r) => r,
        Err(_) => Err(Failure::new(
            ErrorKind::Timeout,
            "no DTLS handshake with the client certificate before the timeout",
        )),
    };
    rec.finish(&target.protocol, &target.url(), result)
}

fn config(target: &Target, opts: &ProbeOptions) -> Result<DtlsConfig, Failure> {
    let bad = |what: &str, e: String| Failure::new(ErrorKind::Tls, format!("{what}: {e}"));
    let (Some(cert), Some(key)) = (&opts.tls.cert, &opts.tls.key) else {
        return Err(Failure::new(ErrorKind::Tls, "no --cert and --key to offer"));
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|c| c.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(&format!("--cert {}", cert.display()), e.to_string()))?;
    let pem = zeroize::Zeroizing::new(
        std::fs::read_to_string(key).map_err(|e| bad(&format!("--key {}", key.display()), e.to_string()))?,
    );
    let pair = rcgen_dtls::KeyPair::from_pem(&pem)
        .map_err(|e| bad(&format!("--key {}", key.display()), e.to_string()))?;
    let private_key = CryptoPrivateKey::from_key_pair(&pair)
        .map_err(|e| bad(&format!("--key {}", key.display()), e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    match &opts.tls.ca {
        Some(ca) => {
            let cas = CertificateDer::pem_file_iter(ca)
                .and_then(|c| c.collect::<Result<Vec<_>, _>>())
                .map_err(|e| bad(&format!("--ca {}", ca.display()), e.to_string()))?;
            for c in cas {
                let _ = roots.add(c);
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    Ok(DtlsConfig {
        certificates: vec![Certificate {
            certificate: chain,
            private_key,
        }],
        cipher_suites: vec![
            CipherSuiteId::Tls_Ecdhe_Ecdsa_With_Aes_128_Gcm_Sha256,
            CipherSuiteId::Tls_Ecdhe_Rsa_With_Aes_128_Gcm_Sha256,
        ],
        roots_cas: roots,
        server_name: target.host.clone(),
        insecure_skip_verify: opts.tls.insecure,
        extended_master_secret: ExtendedMasterSecretType::Request,
        ..Default::default()
    })
}

async fn handshake(
    target: &Target,
    opts: &ProbeOptions,
    rec: &mut Recorder,
    deadline: Instant,
) -> Result<(), Failure> {
    let config = config(target, opts)?;
    let addrs = resolve(rec, target).await?;
    rec.begin("connect");
    let sock = connect_udp(rec, &addrs).await?;
    rec.end();
    rec.begin("tls");
    rec.detail("client_certificate", "offered (certificate suites only, no PSK)");
    let refused = Arc::new(tokio::sync::Notify::new());
    let watched = Watched {
        sock,
        refused: refused.clone(),
    };
    let handshake = DTLSConn::new(Arc::new(watched), config, true, None);
    let conn = tokio::select! {
        conn = tokio::time::timeout(time_left(deadline)?, handshake) => conn,
        () = refused.notified() => {
            return Err(Failure::new(ErrorKind::Refused, "port unreachable: nothing listens on that UDP port"));
        }
    };
    match conn {
        Ok(Ok(c)) => {
            let _ = c.close().await;
            rec.end();
            Ok(())
        }
        Ok(Err(e)) => Err(Failure::new(
            ErrorKind::Tls,
            format!("the DTLS handshake with a client certificate was refused: {e}"),
        )),
        Err(_) => Err(Failure::new(
            ErrorKind::Timeout,
            "no answer to a DTLS handshake offering a client certificate",
        )),
    }
}
